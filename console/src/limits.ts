// The console's limits, in one place.

/** Lines of an account's history per page. */
export const HISTORY_PAGE_SIZE = 20;
/** Accounts per page of the list. */
export const ACCOUNTS_PAGE_SIZE = 50;
/** Holds (pending transfers) shown for an account. */
export const HOLDS_SHOWN = 100;
/** Transfers that name a transfer as their related one, shown on its page. */
export const RELATED_SHOWN = 100;
/** Audit records shown for one transfer. */
export const AUDIT_SHOWN = 100;
/** End-of-day runs listed. */
export const RUNS_SHOWN = 60;
/** Statements per page. */
export const STATEMENTS_PAGE_SIZE = 50;
/** Events kept in the live tail. */
export const EVENTS_KEPT = 50;
/** Points kept in the live charts (one a second). */
export const CHART_POINTS = 300;
/** How often the live page scrapes /metrics. */
export const SCRAPE_INTERVAL_MS = 1000;
/** How long the live tail waits before reconnecting to the event stream. */
export const STREAM_RETRY_MS = 2000;
