// A tiny typed client of the Tally API: adds the key, maps the API's JSON errors
// (`{"code","message"}`) to ApiError, and names the shapes the console reads.

import { storedKey } from './session';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** What to do when the server says the key is no good (set by the app). */
let onUnauthenticated: () => void = () => {};
export function setUnauthenticatedHandler(handler: () => void): void {
  onUnauthenticated = handler;
}

export function authHeaders(key: string | null = storedKey()): Record<string, string> {
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function errorOf(response: Response): Promise<ApiError> {
  let code = `http_${response.status}`;
  let message = response.statusText || 'request failed';
  try {
    const body: unknown = await response.json();
    if (body && typeof body === 'object') {
      const b = body as Record<string, unknown>;
      const inner = (b.error && typeof b.error === 'object' ? b.error : b) as Record<string, unknown>;
      if (typeof inner.code === 'string') code = inner.code;
      if (typeof inner.message === 'string') message = inner.message;
    }
  } catch {
    // Not JSON: keep the status.
  }
  return new ApiError(response.status, code, message);
}

export async function request(path: string, init: RequestInit = {}, key?: string): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(path, {
      ...init,
      headers: { ...authHeaders(key ?? storedKey()), ...(init.headers as Record<string, string> | undefined) },
      cache: 'no-store',
    });
  } catch (error) {
    throw new ApiError(0, 'network_error', error instanceof Error ? error.message : String(error));
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && key === undefined) onUnauthenticated();
    throw error;
  }
  return response;
}

export async function getJson<T>(path: string, key?: string): Promise<T> {
  return (await (await request(path, {}, key)).json()) as T;
}

export async function postJson<T>(path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method: 'POST' };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { 'Content-Type': 'application/json' };
  }
  return (await (await request(path, init)).json()) as T;
}

export async function getText(path: string): Promise<string> {
  return (await request(path)).text();
}

/** `/v1/x?a=1&b=2`, leaving out absent values. */
export function withQuery(path: string, query: Record<string, string | number | null | undefined>): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== '') params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

export const seg = encodeURIComponent;

// The shapes read (crates/tally-views, crates/tally-server/src/views.rs, tally-recon's report.rs).

export type Role = 'admin' | 'operator' | 'auditor' | 'reader';

export interface WhoAmI {
  name: string;
  role: Role;
  actor: string;
  ledgers: number[];
  accounts: string[];
}

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

export interface Account {
  id: string;
  ledger: number;
  code: string | null;
  currency: string;
  status: string;
  balance: string;
  available: string;
  debits_posted: string;
  credits_posted: string;
  debits_pending: string;
  credits_pending: string;
  overdraft_limit: string | null;
  unrestricted: boolean;
  version: number;
  metadata: unknown;
  created_at: string;
  updated_at: string;
}

export interface Balance {
  account_id: string;
  currency: string;
  balance: string;
  available: string;
  debits_pending: string;
  credits_pending: string;
  version?: number;
}

export interface Transfer {
  id: string;
  ledger: number;
  kind: string;
  status: string;
  from: string;
  to: string;
  amount: string;
  currency: string;
  related_id: string | null;
  timeout_seconds: number | null;
  expires_at: string | null;
  reference: string | null;
  metadata: unknown;
  created_at: string;
  completed_at: string | null;
}

export interface TransferOutcome {
  id: string;
  result: string;
  status: number;
  transfer: Transfer | null;
}

export interface HistoryLine {
  direction: 'debit' | 'credit';
  other_account_id: string;
  actor: string;
  transfer: Transfer;
}

export interface AuditRecord {
  id: number;
  at: string;
  actor: string;
  db_user: string;
  action: string;
  entity_type: string;
  entity_id: string;
  before: unknown;
  after: unknown;
}

export interface EventRecord {
  seq: number;
  at: string;
  type: string;
  entity_id: string;
  ledger: number | null;
  payload: unknown;
}

export interface RunSummary {
  run_id: string;
  day: string;
  status: string;
  started_at: string;
  finished_at: string | null;
  findings: number | null;
  actor: string;
}

export interface Finding {
  check: string;
  subject: string;
  account_id: string | null;
  transfer_id: string | null;
  currency: string | null;
  ledger?: number | null;
  expected: string | null;
  found: string | null;
  difference: string | null;
  detail: string;
}

export interface CurrencyTotals {
  ledger: number;
  currency: string;
  scale: number;
  transfers: number;
  posted_volume: string;
  closing_debits_posted: string;
  closing_credits_posted: string;
  closing_debits_pending: string;
  closing_credits_pending: string;
}

export interface CheckSummary {
  check: string;
  description: string;
  findings: number;
}

export interface DayReport {
  run_id: string;
  day: string;
  time_zone: string;
  starts_at: string;
  ends_at: string;
  started_at: string;
  finished_at: string;
  actor: string;
  status: string;
  snapshot: string;
  transfers: number;
  rejected: number;
  accounts_touched: number;
  events: number;
  batches: number;
  currencies: CurrencyTotals[];
  hourly: { hour: number; transfers: number }[];
  checks: CheckSummary[];
  findings: Finding[];
  filter?: { note: string };
}

/** `GET /v1/reconciliations/{day}`: a run, with its report once finished. */
export interface Reconciliation {
  run_id: string;
  day: string;
  status: string;
  report: DayReport | null;
  error: string | null;
}

export interface StatementSummary {
  id: string;
  ledger: number;
  account_id: string;
  account_code: string | null;
  format: string;
  statement_ref: string;
  bank_account: string;
  currency: string;
  opening_date: string | null;
  opening: string | null;
  closing_date: string | null;
  closing: string | null;
  entries: number;
  file_id: string | null;
  imported_at: string;
  imported_by: string;
  status: string | null;
  findings: number | null;
}

export interface MatchLine {
  rule: string;
  statement_entries: string[];
  transfer_ids: string[];
  amount: string;
  difference: string;
}

export interface BalanceComparison {
  which: string;
  date: string;
  statement: string;
  tally: string;
  difference: string;
}

export interface StatementReport {
  run_id: string;
  statement: string;
  statement_ref: string;
  format: string;
  account_id: string;
  account_code: string | null;
  currency: string;
  period_from: string | null;
  period_to: string | null;
  status: string;
  statement_entries: number;
  ledger_entries: number;
  matched: number;
  unmatched_statement: number;
  unmatched_ledger: number;
  balances: BalanceComparison[];
  matches: MatchLine[];
  findings: Finding[];
  actor: string;
  finished_at: string;
}
