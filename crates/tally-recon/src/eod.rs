//! The end-of-day run: close the day (and any day before it that is still open), check it, and
//! store the report.
//!
//! The checks, each with a stable code:
//! - (a) `closing_balance_mismatch`: an account's closing balance for the day is not its opening
//!   balance plus the day's journal (a snapshot written earlier no longer agrees with the
//!   journal: a transfer was deleted or changed since). Skipped, and said so, when this run wrote
//!   the snapshot from the journal itself.
//! - (a) `account_balance_mismatch`: an account row is not its latest snapshot plus the journal
//!   since (a balance changed behind Tally's back).
//! - (b) `trial_balance`: per currency, debits and credits differ over every ledger, over the
//!   account rows or over the day's closing totals; `ledger_trial_balance`: the same per ledger
//!   and currency (a transfer never leaves its ledger, so each ledger balances on its own);
//!   `open_holds_mismatch`: per ledger and currency, the accounts' pending totals are not the sum
//!   of the open holds.
//! - (c) `pending_past_timeout`: a hold was still pending at the end of the day although its
//!   timeout had passed; `transfer_without_audit`; `transfer_without_event`;
//!   `event_sequence_gap`; `transfer_account_missing`; `transfer_ledger_mismatch`: the day's
//!   journal of one ledger moves money on an account of another.
//! - (d) `batch_audit_mismatch`: a batch's audit row counts other transfers than the journal
//!   holds for it; `event_without_transfer`: a transfer event names no journal row of the day.
//! - `balance_rule_broken`: an account is past its overdraft rule.
//!
//! Every finding names the account or transfer, its currency, its ledger and the amounts. A day
//! is closed for every ledger at once and its report is whole: the closing totals per ledger and
//! currency, the day's figures per ledger, every check's count per ledger
//! (`DayReport::filtered` shows one ledger's part). A day before the
//! ledger's first journal row is never closed (see `days`): its run checks the account rows
//! against the whole journal and reports no snapshot (`none`). The checks run in
//! one REPEATABLE READ snapshot, after the day is closed; all but the account-row checks read
//! only the day's rows (through BRIN indexes on creation time), so the run's cost follows the
//! day's transfers.

use crate::Recon;
use crate::days::{self, format_day};
use crate::report::{CheckSummary, CurrencyTotals, DayReport, Finding, HourVolume, LedgerCount, LedgerDay, RunStatus};
use crate::{Progress, ReconError};
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tally_core::format_amount;
use tally_store::convert::{from_system_time, to_system_time};
use tally_store::journal::{AuditEntry, append};
use time::Date;
use uuid::Uuid;

/// How many findings of one check a report lists per ledger (and of no one ledger); the rest are
/// counted. Per ledger, so that a report filtered to one ledger lists its findings however many
/// other ledgers have.
pub const FINDINGS_PER_CHECK_MAX: i64 = 100;
/// How many findings of one check a report lists over all ledgers: the first of every ledger
/// before the second of any.
pub const FINDINGS_LISTED_PER_CHECK_MAX: i64 = 1_000;
const _: () = assert!(FINDINGS_PER_CHECK_MAX <= FINDINGS_LISTED_PER_CHECK_MAX);
/// How long past its timeout a hold may stay pending before it is a finding: the sweeper runs
/// every second, and a sweep may wait for busy accounts.
pub const EXPIRY_GRACE: Duration = Duration::from_secs(60);
/// A run that has been running this long is taken for abandoned (its process died) and no
/// longer blocks a new run of the same day.
pub const RUN_ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// Every check: its code and what it verifies, in report order.
pub const CHECKS: &[(&str, &str)] = &[
    ("closing_balance_mismatch", "Each account's closing balance equals its opening balance plus the day's transfers"),
    ("account_balance_mismatch", "Each account row equals its latest snapshot plus the journal since"),
    (
        "trial_balance",
        "Per currency, debits equal credits over every ledger (account rows and the day's closing totals)",
    ),
    (
        "ledger_trial_balance",
        "Per ledger and currency, debits equal credits: each ledger balances on its own (account rows and the day's closing totals)",
    ),
    ("open_holds_mismatch", "Per ledger and currency, the accounts' pending totals equal the open holds"),
    ("pending_past_timeout", "No hold is still pending at the end of the day past its timeout"),
    ("transfer_without_audit", "Every transfer of the day has its audit row"),
    ("batch_audit_mismatch", "Every batch's audit row counts the transfers the journal holds for it"),
    ("transfer_without_event", "Every applied transfer and expired hold of the day has its event"),
    ("event_without_transfer", "Every transfer event of the day names a journal row of the day"),
    ("event_sequence_gap", "The day's events have no gap in their sequence numbers"),
    ("transfer_account_missing", "Every account the day's journal names exists, in the transfer's currency"),
    ("transfer_ledger_mismatch", "Every account the day's journal names is in the transfer's ledger"),
    ("balance_rule_broken", "No account is past its overdraft limit"),
];

/// The newest instant PostgreSQL and `SystemTime` both hold comfortably: "no upper bound".
fn far_future() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(253_402_300_799)
}

/// 0001-01-01T00:00:00Z: "no lower bound", older than any journal row.
fn far_past() -> SystemTime {
    UNIX_EPOCH - Duration::from_secs(62_135_596_800)
}

pub(crate) fn rfc3339(at: SystemTime) -> String {
    let micros = from_system_time(at).0;
    let nanos = i128::from(micros) * 1000;
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).expect("timestamps in range");
    at.format(&time::format_description::well_known::Rfc3339).expect("formats")
}

/// Runs the end of day for `day`: closes it if needed, checks it, stores and returns the report.
pub async fn run_end_of_day(
    recon: &Recon,
    day: Date,
    actor: &str,
    progress: &dyn Progress,
) -> Result<DayReport, ReconError> {
    run_end_of_day_as(recon, Uuid::now_v7(), day, actor, progress).await
}

/// `run_end_of_day` under a run id the caller chose (to report it before the run ends).
pub async fn run_end_of_day_as(
    recon: &Recon,
    run_id: Uuid,
    day: Date,
    actor: &str,
    progress: &dyn Progress,
) -> Result<DayReport, ReconError> {
    let closable = days::last_closable(recon).await?;
    if day > closable {
        return Err(ReconError::DayNotClosed { day: format_day(day), closable: format_day(closable) });
    }
    let started_at = to_system_time(recon.store().now());
    begin_run(recon, run_id, day, actor, started_at).await?;
    let result = async {
        let closed = days::close_through(recon, day, actor, progress).await?;
        check_day(recon, run_id, day, actor, started_at, closed.contains(&day), progress).await
    }
    .await;
    match result {
        Ok(report) => {
            finish_run(recon, &report).await?;
            Ok(report)
        }
        Err(error) => {
            let client = recon.client().await?;
            client
                .execute(
                    "UPDATE reconciliation_runs SET status = 'failed', finished_at = now(), error = $2 WHERE id = $1",
                    &[&run_id, &error.to_string()],
                )
                .await?;
            Err(error)
        }
    }
}

async fn begin_run(
    recon: &Recon,
    run_id: Uuid,
    day: Date,
    actor: &str,
    started_at: SystemTime,
) -> Result<(), ReconError> {
    let client = recon.client().await?;
    let text = format_day(day);
    let abandoned = started_at - RUN_ABANDONED_AFTER;
    client
        .execute(
            "UPDATE reconciliation_runs SET status = 'failed', finished_at = now(), error = 'abandoned: the run never finished'
             WHERE status = 'running' AND day = $1::text::date AND started_at < $2",
            &[&text, &abandoned],
        )
        .await?;
    let inserted = client
        .execute(
            "INSERT INTO reconciliation_runs (id, kind, day, status, started_at, actor)
             VALUES ($1, 'end_of_day', $2::text::date, 'running', $3, $4) ON CONFLICT DO NOTHING",
            &[&run_id, &text, &started_at, &actor],
        )
        .await?;
    if inserted == 0 {
        return Err(ReconError::RunInProgress(text));
    }
    Ok(())
}

async fn finish_run(recon: &Recon, report: &DayReport) -> Result<(), ReconError> {
    let mut client = recon.client().await?;
    let db_tx = client.transaction().await?;
    let run_id = Uuid::parse_str(&report.run_id).expect("run ids are uuids");
    let findings = i64::try_from(report.findings.len()).expect("bounded findings");
    let total: i64 = report.checks.iter().map(|c| c.findings).sum();
    db_tx
        .execute(
            "UPDATE reconciliation_runs SET status = $2, finished_at = $3::text::timestamptz, findings = $4, report = $5
             WHERE id = $1",
            &[&run_id, &report.status.as_str(), &report.finished_at, &total, &serde_json::to_value(report).expect("serializes")],
        )
        .await?;
    let entry = AuditEntry {
        actor: &report.actor,
        action: "reconciliation.run",
        event_type: Some("reconciliation.finished".into()),
        entity_type: "reconciliation",
        ledger: None,
        entity_id: report.run_id.clone(),
        before: None,
        after: json!({"day": report.day, "status": report.status.as_str(), "findings": total, "listed": findings}),
    };
    append(&db_tx, &[entry]).await?;
    tally_store::commit_transaction(db_tx).await?;
    Ok(())
}

/// Which values a check's SQL takes, in order.
#[derive(Clone, Copy)]
enum Param {
    Start,
    End,
    Day,
    LastEnd,
    ExpiryLimit,
    FarFuture,
}

/// A check's SQL returns rows of (check, subject, account_id, transfer_id, currency, expected,
/// found, detail); `fast` (if any) returns one boolean, true when the day is certainly clean for
/// this check, so that the detailed query runs only when something is wrong.
struct Check {
    codes: &'static [&'static str],
    fast: Option<&'static str>,
    sql: &'static str,
    params: &'static [Param],
    /// Only when the day's snapshot was written by an earlier run.
    earlier_snapshot_only: bool,
}

const BALANCE_DETAIL: &str = "format('debits %s / credits %s posted, %s / %s pending', ";

static CHECK_QUERIES: std::sync::LazyLock<Vec<Check>> = std::sync::LazyLock::new(|| {
    let delta = days::DELTA_SQL;
    let queries = vec![
        Check {
            codes: &["closing_balance_mismatch"],
            fast: None,
            sql: leak(format!(
                "WITH d AS ({delta}), s AS (SELECT * FROM balance_snapshots WHERE day = $3::text::date)
                 SELECT 'closing_balance_mismatch', coalesce(s.account_id, d.account_id)::text,
                        coalesce(s.account_id, d.account_id)::text, NULL, coalesce(s.currency, d.currency),
                        coalesce(s.opening_credits_posted - s.opening_debits_posted, 0) + coalesce(d.credits_posted - d.debits_posted, 0),
                        coalesce(s.closing_credits_posted - s.closing_debits_posted, 0),
                        'the snapshot closes at ' || {BALANCE_DETAIL} s.closing_debits_posted, s.closing_credits_posted,
                            s.closing_debits_pending, s.closing_credits_pending)
                        || ' from an opening of ' || {BALANCE_DETAIL} s.opening_debits_posted, s.opening_credits_posted,
                            s.opening_debits_pending, s.opening_credits_pending)
                        || ', but the day''s journal moves ' || {BALANCE_DETAIL} coalesce(d.debits_posted, 0),
                            coalesce(d.credits_posted, 0), coalesce(d.debits_pending, 0), coalesce(d.credits_pending, 0)),
                        coalesce(s.ledger_id, d.ledger_id)
                 FROM d FULL JOIN s ON s.account_id = d.account_id AND s.ledger_id = d.ledger_id
                 WHERE (coalesce(s.closing_debits_posted - s.opening_debits_posted, 0), coalesce(s.closing_credits_posted - s.opening_credits_posted, 0),
                        coalesce(s.closing_debits_pending - s.opening_debits_pending, 0), coalesce(s.closing_credits_pending - s.opening_credits_pending, 0))
                       <> (coalesce(d.debits_posted, 0), coalesce(d.credits_posted, 0), coalesce(d.debits_pending, 0), coalesce(d.credits_pending, 0))"
            )),
            params: &[Param::Start, Param::End, Param::Day],
            earlier_snapshot_only: true,
        },
        Check {
            codes: &["account_balance_mismatch"],
            fast: None,
            sql: leak(format!(
                "WITH tail AS ({delta}),
                 expected AS (
                     SELECT a.*, coalesce(s.closing_debits_posted, 0) + coalesce(t.debits_posted, 0) AS e_dp,
                            coalesce(s.closing_credits_posted, 0) + coalesce(t.credits_posted, 0) AS e_cp,
                            coalesce(s.closing_debits_pending, 0) + coalesce(t.debits_pending, 0) AS e_dh,
                            coalesce(s.closing_credits_pending, 0) + coalesce(t.credits_pending, 0) AS e_ch
                     FROM accounts a
                     LEFT JOIN LATERAL (SELECT * FROM balance_snapshots b WHERE b.account_id = a.id AND b.ledger_id = a.ledger_id
                                        ORDER BY b.day DESC LIMIT 1) s ON true
                     LEFT JOIN tail t ON t.account_id = a.id AND t.ledger_id = a.ledger_id)
                 SELECT 'account_balance_mismatch', id::text, id::text, NULL, currency, e_cp - e_dp, credits_posted - debits_posted,
                        'the account row has ' || {BALANCE_DETAIL} debits_posted, credits_posted, debits_pending, credits_pending)
                        || ', the journal says ' || {BALANCE_DETAIL} e_dp, e_cp, e_dh, e_ch),
                        ledger_id
                 FROM expected
                 WHERE (debits_posted, credits_posted, debits_pending, credits_pending) <> (e_dp, e_cp, e_dh, e_ch)"
            )),
            params: &[Param::LastEnd, Param::FarFuture],
            earlier_snapshot_only: false,
        },
        Check {
            // One scan of the accounts and of the day's totals for both: per currency over every
            // ledger, and per ledger and currency.
            codes: &["trial_balance", "ledger_trial_balance"],
            fast: None,
            sql: "SELECT CASE WHEN GROUPING(ledger_id) = 1 THEN 'trial_balance' ELSE 'ledger_trial_balance' END, currency,
                         NULL, NULL, currency, sum(debits_posted), sum(credits_posted),
                         format('over the account rows%s: debits %s / credits %s posted, %s / %s pending',
                                CASE WHEN GROUPING(ledger_id) = 0 THEN ' of ledger ' || ledger_id ELSE '' END,
                                sum(debits_posted), sum(credits_posted), sum(debits_pending), sum(credits_pending)),
                         ledger_id
                  FROM accounts GROUP BY GROUPING SETS ((currency), (ledger_id, currency))
                  HAVING sum(debits_posted) <> sum(credits_posted) OR sum(debits_pending) <> sum(credits_pending)
                  UNION ALL
                  SELECT CASE WHEN GROUPING(ledger_id) = 1 THEN 'trial_balance' ELSE 'ledger_trial_balance' END, currency,
                         NULL, NULL, currency, sum(debits_posted), sum(credits_posted),
                         format('in the day''s closing totals%s: debits %s / credits %s posted, %s / %s pending',
                                CASE WHEN GROUPING(ledger_id) = 0 THEN ' of ledger ' || ledger_id ELSE '' END,
                                sum(debits_posted), sum(credits_posted), sum(debits_pending), sum(credits_pending)),
                         ledger_id
                  FROM ledger_day_totals WHERE day = $1::text::date
                  GROUP BY GROUPING SETS ((currency), (ledger_id, currency))
                  HAVING sum(debits_posted) <> sum(credits_posted) OR sum(debits_pending) <> sum(credits_pending)",
            params: &[Param::Day],
            earlier_snapshot_only: false,
        },
        Check {
            codes: &["open_holds_mismatch"],
            fast: None,
            sql: "WITH a AS (SELECT ledger_id, currency, sum(debits_pending) AS dh, sum(credits_pending) AS ch
                             FROM accounts GROUP BY ledger_id, currency),
                       h AS (SELECT ledger_id, currency, sum(amount) AS held, count(*) AS holds
                             FROM transfers WHERE status = 'pending' GROUP BY ledger_id, currency)
                  SELECT 'open_holds_mismatch', coalesce(a.currency, h.currency), NULL, NULL, coalesce(a.currency, h.currency),
                         coalesce(h.held, 0), coalesce(a.dh, 0),
                         format('%s open holds total %s; the accounts hold %s debits / %s credits pending',
                                coalesce(h.holds, 0), coalesce(h.held, 0), coalesce(a.dh, 0), coalesce(a.ch, 0)),
                         coalesce(a.ledger_id, h.ledger_id)
                  FROM a FULL JOIN h ON h.currency = a.currency AND h.ledger_id = a.ledger_id
                  WHERE coalesce(a.dh, 0) <> coalesce(h.held, 0) OR coalesce(a.ch, 0) <> coalesce(h.held, 0)",
            params: &[],
            earlier_snapshot_only: false,
        },
        Check {
            codes: &["pending_past_timeout"],
            fast: None,
            sql: "SELECT 'pending_past_timeout', id::text, debit_account_id::text, id::text, currency, NULL::numeric, amount,
                         format('hold from %s to %s expired at %s and was still pending at the end of the day (%s)',
                                debit_account_id, credit_account_id, expires_at,
                                CASE WHEN status = 'pending' THEN 'it still is' ELSE 'it became ' || status || ' at ' || completed_at END),
                         ledger_id
                  FROM transfers WHERE status = 'pending' AND expires_at < $2 AND created_at < $1
                  UNION ALL
                  SELECT 'pending_past_timeout', id::text, debit_account_id::text, id::text, currency, NULL, amount,
                         format('hold from %s to %s expired at %s and was still pending at the end of the day (it became %s at %s)',
                                debit_account_id, credit_account_id, expires_at, status, completed_at),
                         ledger_id
                  FROM transfers
                  WHERE kind = 'pending' AND status IN ('posted', 'voided', 'expired') AND completed_at >= $1 AND completed_at < $1 + interval '1 day'
                    AND expires_at < $2 AND created_at < $1",
            params: &[Param::End, Param::ExpiryLimit],
            earlier_snapshot_only: false,
        },
        Check {
            // A batch's finding is of its ledger when all its rows are of one, else of none.
            codes: &["transfer_without_audit", "batch_audit_mismatch"],
            fast: None,
            sql: "WITH b AS (
                      SELECT batch_id, count(*) FILTER (WHERE status <> 'rejected') AS applied,
                             count(*) FILTER (WHERE status = 'rejected') AS rejected, min(id::text) AS sample,
                             CASE WHEN min(ledger_id) = max(ledger_id) THEN min(ledger_id) END AS ledger_id
                      FROM transfers WHERE created_at >= $1 AND created_at < $2 AND batch_id IS NOT NULL GROUP BY batch_id),
                  l AS (
                      SELECT id, entity_id, (after->>'applied')::int8 AS applied, (after->>'rejected')::int8 AS rejected
                      FROM audit_log WHERE entity_type = 'batch' AND at >= $1 AND at < $2)
                  SELECT CASE WHEN l.id IS NULL THEN 'transfer_without_audit' ELSE 'batch_audit_mismatch' END,
                         coalesce(b.batch_id::text, l.entity_id), NULL, b.sample, NULL, NULL, NULL,
                         CASE WHEN l.id IS NULL
                              THEN format('batch %s wrote %s applied and %s rejected transfers (e.g. %s) and has no audit row',
                                          b.batch_id, b.applied, b.rejected, b.sample)
                              ELSE format('the audit row of batch %s counts %s applied and %s rejected; the journal holds %s and %s',
                                          l.entity_id, l.applied, l.rejected, coalesce(b.applied, 0), coalesce(b.rejected, 0)) END,
                         b.ledger_id
                  FROM b FULL JOIN l ON l.entity_id = b.batch_id::text
                  WHERE l.id IS NULL OR b.batch_id IS NULL OR l.applied <> b.applied OR l.rejected <> b.rejected
                  UNION ALL
                  SELECT 'transfer_without_audit', t.id::text, t.debit_account_id::text, t.id::text, t.currency, NULL, t.amount,
                         format('%s transfer written outside a batch has no audit row', t.kind), t.ledger_id
                  FROM transfers t
                  WHERE t.created_at >= $1 AND t.created_at < $2 AND t.batch_id IS NULL
                    AND NOT EXISTS (SELECT 1 FROM audit_log l WHERE l.entity_id = t.id::text
                                    AND l.action IN ('transfer.create', 'transfer.reject'))",
            params: &[Param::Start, Param::End],
            earlier_snapshot_only: false,
        },
        Check {
            codes: &["transfer_without_event", "event_without_transfer"],
            fast: Some(
                "WITH j AS (
                      SELECT count(*) AS n, coalesce(bit_xor(hashtextextended(id::text || ' transfer.' || kind, 0)), 0) AS h
                      FROM transfers WHERE created_at >= $1 AND created_at < $2 AND status <> 'rejected'),
                  x AS (
                      SELECT count(*) AS n, coalesce(bit_xor(hashtextextended(id::text || ' transfer.expired', 0)), 0) AS h
                      FROM transfers WHERE kind = 'pending' AND status = 'expired' AND completed_at >= $1 AND completed_at < $2),
                  e AS (
                      SELECT count(*) AS n, coalesce(bit_xor(hashtextextended(entity_id || ' ' || type, 0)), 0) AS h
                      FROM events WHERE at >= $1 AND at < $2 AND type LIKE 'transfer.%')
                  SELECT j.n + x.n = e.n AND (j.h # x.h) = e.h FROM j, x, e",
            ),
            sql: "WITH j AS (
                      SELECT id::text AS entity_id, 'transfer.' || kind AS type, debit_account_id, currency, amount, ledger_id
                      FROM transfers WHERE created_at >= $1 AND created_at < $2 AND status <> 'rejected'
                      UNION ALL
                      SELECT id::text, 'transfer.expired', debit_account_id, currency, amount, ledger_id
                      FROM transfers WHERE kind = 'pending' AND status = 'expired' AND completed_at >= $1 AND completed_at < $2),
                  e AS (SELECT seq, entity_id, type, ledger_id FROM events WHERE at >= $1 AND at < $2 AND type LIKE 'transfer.%')
                  SELECT 'transfer_without_event', j.entity_id, j.debit_account_id::text, j.entity_id, j.currency, NULL::numeric, j.amount,
                         format('no %s event for this transfer of the day', j.type), j.ledger_id
                  FROM j WHERE NOT EXISTS (SELECT 1 FROM e WHERE e.entity_id = j.entity_id AND e.type = j.type)
                  UNION ALL
                  SELECT 'event_without_transfer', e.seq::text, NULL, e.entity_id, NULL, NULL, NULL,
                         format('event %s (%s) names %s, which is not a journal row of the day', e.seq, e.type, e.entity_id),
                         e.ledger_id
                  FROM e WHERE NOT EXISTS (SELECT 1 FROM j WHERE j.entity_id = e.entity_id AND j.type = e.type)",
            params: &[Param::Start, Param::End],
            earlier_snapshot_only: false,
        },
        Check {
            codes: &["event_sequence_gap"],
            fast: Some(
                "WITH r AS (SELECT min(seq + 0) AS lo, max(seq + 0) AS hi FROM events WHERE at >= $1 AND at < $2)
                 SELECT r.lo IS NULL OR (SELECT count(*) FROM events WHERE seq BETWEEN greatest(r.lo - 1, 1) AND r.hi)
                                        = r.hi - greatest(r.lo - 1, 1) + 1
                 FROM r",
            ),
            // `seq + 0`: a plain min(seq) is planned as a walk of the primary key from its start,
            // filtering on the time, which reads every event before the day. The sequence is the
            // deployment's, of no one ledger.
            sql: "WITH r AS (SELECT min(seq + 0) AS lo, max(seq + 0) AS hi FROM events WHERE at >= $1 AND at < $2)
                  SELECT 'event_sequence_gap', g.seq::text, NULL, NULL, NULL, NULL, NULL,
                         format('event %s is missing (the day''s events run from %s to %s)', g.seq, r.lo, r.hi), NULL::int4
                  FROM r CROSS JOIN LATERAL generate_series(greatest(r.lo - 1, 1), r.hi) AS g(seq)
                  WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.seq = g.seq)",
            params: &[Param::Start, Param::End],
            earlier_snapshot_only: false,
        },
        Check {
            // The day's snapshot rows are per account and the ledger of the journal rows that
            // moved it: one whose account is not in that ledger (in that currency) is a journal
            // row that names an account of another ledger, or none. Which ledger the account is
            // in is looked up only for the rows found.
            codes: &["transfer_account_missing", "transfer_ledger_mismatch"],
            fast: None,
            sql: "SELECT CASE WHEN m.other IS NULL THEN 'transfer_account_missing' ELSE 'transfer_ledger_mismatch' END,
                         m.account_id::text, m.account_id::text, NULL, m.currency,
                         NULL, m.closing_credits_posted - m.closing_debits_posted,
                         CASE WHEN m.other IS NULL
                              THEN format('the day''s journal moves money on account %s in %s, which does not exist (closing %s / %s posted)',
                                          m.account_id, m.currency, m.closing_debits_posted, m.closing_credits_posted)
                              ELSE format('the day''s journal of ledger %s moves money on account %s, which is in ledger %s (closing %s / %s posted)',
                                          m.ledger_id, m.account_id, m.other, m.closing_debits_posted, m.closing_credits_posted) END,
                         m.ledger_id
                  FROM (SELECT s.*, (SELECT min(a.ledger_id) FROM accounts a WHERE a.id = s.account_id AND a.currency = s.currency) AS other
                        FROM balance_snapshots s
                        WHERE s.day = $1::text::date
                          AND NOT EXISTS (SELECT 1 FROM accounts a
                                          WHERE a.id = s.account_id AND a.currency = s.currency AND a.ledger_id = s.ledger_id)) m",
            params: &[Param::Day],
            earlier_snapshot_only: false,
        },
        Check {
            codes: &["balance_rule_broken"],
            fast: None,
            sql: "SELECT 'balance_rule_broken', id::text, id::text, NULL, currency, -overdraft_limit,
                         credits_posted - debits_posted - debits_pending,
                         format('available %s is below the overdraft limit -%s',
                                credits_posted - debits_posted - debits_pending, overdraft_limit),
                         ledger_id
                  FROM accounts WHERE NOT unrestricted AND credits_posted - debits_posted - debits_pending < -overdraft_limit",
            params: &[],
            earlier_snapshot_only: false,
        },
    ];
    assert_checks_agree(&queries);
    queries
});

/// Every code a check query reports is one of `CHECKS`, and every one of `CHECKS` has a query.
fn assert_checks_agree(queries: &[Check]) {
    let reported: Vec<&str> = queries.iter().flat_map(|q| q.codes.iter().copied()).collect();
    for code in &reported {
        assert!(CHECKS.iter().any(|(c, _)| c == code), "check {code} is not in CHECKS");
    }
    for (code, _) in CHECKS {
        assert!(reported.contains(code), "CHECKS lists {code}, which no query reports");
    }
}

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// Formats a NUMERIC amount (any sign) with the currency's scale.
fn amount_text(value: Decimal, scale: u8) -> String {
    assert_eq!(value.scale(), 0, "amounts are whole minor units");
    format_amount(value.mantissa(), scale)
}

/// The values a check's SQL may take (see `Param`).
struct DayParams {
    starts_at: SystemTime,
    ends_at: SystemTime,
    day: String,
    last_end: SystemTime,
    expiry_limit: SystemTime,
    far: SystemTime,
}

/// What one check found: its listed findings, and its counts per code, in total and per ledger.
#[derive(Default)]
struct CheckResult {
    findings: Vec<Finding>,
    counts: HashMap<String, i64>,
    by_ledger: HashMap<String, Vec<LedgerCount>>,
}

/// The check's findings (at most `FINDINGS_PER_CHECK_MAX` per code and ledger, and
/// `FINDINGS_LISTED_PER_CHECK_MAX` per code) and its counts per code and ledger.
async fn run_check(
    db_tx: &deadpool_postgres::Transaction<'_>,
    check: &Check,
    p: &DayParams,
    scales: &HashMap<String, u8>,
) -> Result<CheckResult, ReconError> {
    let values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = check
        .params
        .iter()
        .map(|param| -> &(dyn tokio_postgres::types::ToSql + Sync) {
            match param {
                Param::Start => &p.starts_at,
                Param::End => &p.ends_at,
                Param::Day => &p.day,
                Param::LastEnd => &p.last_end,
                Param::ExpiryLimit => &p.expiry_limit,
                Param::FarFuture => &p.far,
            }
        })
        .collect();
    let mut result = CheckResult::default();
    if let Some(fast) = check.fast
        && db_tx.query_one(fast, &values).await?.get::<_, bool>(0)
    {
        return Ok(result);
    }
    // Every (code, ledger) keeps its first row, listed or not, for its count.
    let limited = format!(
        "SELECT c, subject, account_id, transfer_id, currency, expected, found, detail, ledger, total, in_ledger,
                row_number() OVER (PARTITION BY c ORDER BY rank, ledger NULLS FIRST) <= {FINDINGS_LISTED_PER_CHECK_MAX} AS listed
         FROM (
             SELECT c, subject, account_id, transfer_id, currency, expected::numeric, found::numeric, detail, ledger::int4,
                    count(*) OVER (PARTITION BY c) AS total, count(*) OVER (PARTITION BY c, ledger) AS in_ledger,
                    row_number() OVER (PARTITION BY c, ledger ORDER BY subject) AS rank
             FROM ({sql}) f(c, subject, account_id, transfer_id, currency, expected, found, detail, ledger)) x
         WHERE rank <= {FINDINGS_PER_CHECK_MAX} ORDER BY c, rank, ledger NULLS FIRST",
        sql = check.sql
    );
    let mut counted: std::collections::HashSet<(String, Option<i32>)> = std::collections::HashSet::new();
    for row in db_tx.query(&limited, &values).await? {
        let (code, ledger): (String, Option<i32>) = (row.get(0), row.get(8));
        result.counts.insert(code.clone(), row.get(9));
        if counted.insert((code.clone(), ledger)) {
            result.by_ledger.entry(code).or_default().push(LedgerCount { ledger, findings: row.get(10) });
        }
        if row.get::<_, bool>(11) {
            result.findings.push(finding_from_row(&row, scales));
        }
    }
    for counts in result.by_ledger.values_mut() {
        counts.sort_by_key(|count| count.ledger);
    }
    Ok(result)
}

/// Connections the checks of a day run on at once, all in one snapshot (the first exports it).
/// Each check is a scan of the day or of the accounts, bound by one core.
pub const CHECK_LANES: usize = 2;

#[allow(clippy::too_many_arguments)]
async fn check_day(
    recon: &Recon,
    run_id: Uuid,
    day: Date,
    actor: &str,
    started_at: SystemTime,
    snapshot_written: bool,
    progress: &dyn Progress,
) -> Result<DayReport, ReconError> {
    // Aggregations over a day's rows: hash joins are right, and a ledger fresh from a load may
    // have no statistics yet to tell the planner so.
    const SETTINGS: &str = "SET LOCAL enable_nestloop = off; SET LOCAL work_mem = '1GB'";
    let mut clients = Vec::with_capacity(CHECK_LANES);
    for _ in 0..CHECK_LANES {
        clients.push(recon.client().await?);
    }
    let mut lanes = Vec::with_capacity(CHECK_LANES);
    let mut snapshot: Option<String> = None;
    for client in clients.iter_mut() {
        let db_tx = crate::read_snapshot(client).await?;
        match &snapshot {
            None => {
                let id: String = db_tx.query_one("SELECT pg_export_snapshot()", &[]).await?.get(0);
                assert!(id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'), "snapshot ids are hex and dashes");
                snapshot = Some(id);
                db_tx.batch_execute(SETTINGS).await?;
            }
            // The exported id is PostgreSQL's, never user input; SET TRANSACTION SNAPSHOT takes
            // no parameter, and must come first.
            Some(id) => db_tx.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{id}'; {SETTINGS}")).await?,
        }
        lanes.push(db_tx);
    }
    let db_tx = &lanes[0];
    let bounds = days::bounds_in(db_tx, day).await?;
    let settings = days::settings_in(db_tx).await?;
    // A day before the ledger's first journal row is never closed: it has no snapshot, and
    // without a closed day the account rows are checked against the whole journal.
    let snapshot = match (snapshot_written, days::is_closed(db_tx, day).await?) {
        (true, _) => Snapshot::Written,
        (false, true) => Snapshot::Verified,
        (false, false) => Snapshot::None,
    };
    let last_end = match days::last_closed(db_tx).await? {
        Some(last) => days::bounds_in(db_tx, last).await?.ends_at,
        None => far_past(),
    };
    let params = DayParams {
        starts_at: bounds.starts_at,
        ends_at: bounds.ends_at,
        day: format_day(day),
        last_end,
        expiry_limit: bounds.ends_at - EXPIRY_GRACE,
        far: far_future(),
    };
    let scales: HashMap<String, u8> = db_tx
        .query("SELECT code, scale FROM currencies", &[])
        .await?
        .iter()
        .map(|row| (row.get(0), u8::try_from(row.get::<_, i16>(1)).expect("scale constrained")))
        .collect();

    // The checks, and the day's figures last, taken from one queue by every lane.
    let work: Vec<Option<&Check>> = CHECK_QUERIES
        .iter()
        .filter(|check| !(check.earlier_snapshot_only && snapshot_written))
        .map(Some)
        .chain(std::iter::once(None))
        .collect();
    progress.add_steps(work.len());
    let queue = std::sync::Mutex::new(work.into_iter().enumerate().collect::<std::collections::VecDeque<_>>());
    let lane = async |db_tx: &deadpool_postgres::Transaction<'_>| {
        let mut done = Vec::new();
        loop {
            let Some((index, item)) = queue.lock().expect("queue lock").pop_front() else { return Ok(done) };
            match item {
                Some(check) => {
                    progress.step(&format!("checking {}", check.codes.join(", ")));
                    done.push((index, run_check(db_tx, check, &params, &scales).await?, None));
                }
                None => {
                    progress.step("summing up the day");
                    let figures = summarize(db_tx, &bounds, &params.day, &scales).await?;
                    done.push((index, Default::default(), Some(figures)));
                }
            }
        }
    };
    let results: Vec<Result<Vec<_>, ReconError>> = futures_util::future::join_all(lanes.iter().map(lane)).await;
    let mut results: Vec<_> = results.into_iter().collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect();
    results.sort_by_key(|(index, _, _)| *index);
    let mut findings: Vec<Finding> = Vec::new();
    let mut counts: HashMap<String, i64> = HashMap::new();
    let mut by_ledger: HashMap<String, Vec<LedgerCount>> = HashMap::new();
    let mut figures = None;
    for (_, found, summary) in results {
        findings.extend(found.findings);
        counts.extend(found.counts);
        by_ledger.extend(found.by_ledger);
        figures = figures.or(summary);
    }
    let mut figures: DayFigures = figures.expect("the day's figures were taken");
    // Every ledger the day's figures or findings name, with its code.
    let named = by_ledger.values().flatten().filter_map(|count| count.ledger);
    let ids: Vec<i32> = figures.ledgers.keys().copied().chain(named).collect();
    let hours = u32::try_from(figures.hourly.len()).expect("a few hours");
    for ledger in &ids {
        ledger_day(&mut figures.ledgers, *ledger, hours);
    }
    for row in lanes[0].query("SELECT id, code FROM ledgers WHERE id = ANY($1)", &[&ids]).await? {
        if let Some(ledger) = figures.ledgers.get_mut(&row.get::<_, i32>(0)) {
            ledger.code = row.get(1);
        }
    }
    for db_tx in lanes {
        db_tx.commit().await?;
    }
    let text = params.day;

    let checks: Vec<CheckSummary> = CHECKS
        .iter()
        .map(|(code, description)| CheckSummary {
            check: (*code).to_owned(),
            description: match (*code, snapshot) {
                ("closing_balance_mismatch", Snapshot::Written) => {
                    format!("{description} (the snapshot was written by this run from the journal: nothing to compare)")
                }
                ("closing_balance_mismatch", Snapshot::None) => {
                    format!("{description} (the day precedes the ledger's first journal row: it was not closed)")
                }
                _ => (*description).to_owned(),
            },
            findings: counts.get(*code).copied().unwrap_or(0),
            by_ledger: by_ledger.remove(*code).unwrap_or_default(),
        })
        .collect();
    let status = if checks.iter().all(|c| c.findings == 0) { RunStatus::Clean } else { RunStatus::Findings };
    Ok(DayReport {
        run_id: run_id.to_string(),
        day: text,
        time_zone: settings.time_zone,
        starts_at: rfc3339(bounds.starts_at),
        ends_at: rfc3339(bounds.ends_at),
        started_at: rfc3339(started_at),
        finished_at: rfc3339(to_system_time(recon.store().now())),
        actor: actor.to_owned(),
        status,
        snapshot: snapshot.as_str().to_owned(),
        transfers: figures.transfers,
        rejected: figures.rejected,
        accounts_touched: figures.accounts_touched,
        events: figures.events,
        batches: figures.batches,
        currencies: figures.currencies,
        hourly: figures.hourly,
        checks,
        findings,
        per_ledger: true,
        ledgers: figures.ledgers.into_values().collect(),
        filter: None,
    })
}

fn finding_from_row(row: &tokio_postgres::Row, scales: &HashMap<String, u8>) -> Finding {
    let currency: Option<String> = row.get(4);
    let scale = currency.as_ref().and_then(|c| scales.get(c)).copied().unwrap_or(0);
    let expected: Option<Decimal> = row.get(5);
    let found: Option<Decimal> = row.get(6);
    let difference = match (expected, found) {
        (Some(e), Some(f)) => Some(amount_text(f - e, scale)),
        _ => None,
    };
    Finding {
        check: row.get(0),
        subject: row.get(1),
        account_id: row.get(2),
        transfer_id: row.get(3),
        currency,
        expected: expected.map(|v| amount_text(v, scale)),
        found: found.map(|v| amount_text(v, scale)),
        difference,
        detail: row.get(7),
        ledger: row.get(8),
    }
}

/// What a run found of the day's balance snapshot (the report's `snapshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Snapshot {
    /// This run closed the day and wrote the snapshot from the journal.
    Written,
    /// The day was closed before; its snapshot is checked against the journal.
    Verified,
    /// The day precedes the ledger's first journal row: it is never closed and has no snapshot.
    None,
}

impl Snapshot {
    fn as_str(self) -> &'static str {
        match self {
            Snapshot::Written => "written",
            Snapshot::Verified => "verified",
            Snapshot::None => "none",
        }
    }
}

/// The day's figures for its report.
#[derive(Debug, Default)]
struct DayFigures {
    transfers: i64,
    rejected: i64,
    accounts_touched: i64,
    events: i64,
    batches: i64,
    currencies: Vec<CurrencyTotals>,
    hourly: Vec<HourVolume>,
    /// Per ledger, by id (codes filled in later).
    ledgers: BTreeMap<i32, LedgerDay>,
}

/// `hours` hours of no transfers.
fn empty_hours(hours: u32) -> Vec<HourVolume> {
    (0..hours).map(|hour| HourVolume { hour, transfers: 0 }).collect()
}

/// A ledger's figures of the day, made empty when it has none yet.
fn ledger_day(ledgers: &mut BTreeMap<i32, LedgerDay>, ledger: i32, hours: u32) -> &mut LedgerDay {
    ledgers.entry(ledger).or_insert_with(|| LedgerDay {
        ledger,
        code: String::new(),
        transfers: 0,
        rejected: 0,
        accounts_touched: 0,
        events: 0,
        batches: 0,
        hourly: empty_hours(hours),
    })
}

/// The day's figures, whole and per ledger: volume by hour, batches, events, accounts touched
/// and per-ledger, per-currency totals.
async fn summarize(
    db_tx: &deadpool_postgres::Transaction<'_>,
    bounds: &days::DayBounds,
    day: &str,
    scales: &HashMap<String, u8>,
) -> Result<DayFigures, ReconError> {
    let hours = u32::try_from(
        bounds.ends_at.duration_since(bounds.starts_at).expect("days end after they start").as_secs().div_ceil(3600),
    )
    .expect("a day has a few hours");
    let mut ledgers: BTreeMap<i32, LedgerDay> = BTreeMap::new();
    // date_bin, not extract(epoch ...): extract computes in NUMERIC, which doubled this scan's time.
    let rows = db_tx
        .query(
            "SELECT GROUPING(hour) = 0, ledger_id, hour, batch_id, count(*) FILTER (WHERE status <> 'rejected'),
                    count(*) FILTER (WHERE status = 'rejected')
             FROM (SELECT date_bin('1 hour', created_at, $1) AS hour, batch_id, status, ledger_id
                   FROM transfers WHERE created_at >= $1 AND created_at < $2) t
             GROUP BY GROUPING SETS ((ledger_id, hour), (ledger_id, batch_id))",
            &[&bounds.starts_at, &bounds.ends_at],
        )
        .await?;
    let mut hourly = empty_hours(hours);
    let mut batches: std::collections::HashSet<Uuid> = std::collections::HashSet::new();
    let mut rejected = 0;
    for row in &rows {
        let of = ledger_day(&mut ledgers, row.get(1), hours);
        if row.get::<_, bool>(0) {
            let start: SystemTime = row.get(2);
            let offset = start.duration_since(bounds.starts_at).expect("rows of the day").as_secs() / 3600;
            let offset = usize::try_from(offset).expect("a few hours");
            let (applied, refused): (i64, i64) = (row.get(4), row.get(5));
            of.hourly[offset].transfers += applied;
            of.rejected += refused;
            hourly[offset].transfers += applied;
            rejected += refused;
        } else if let Some(batch) = row.get::<_, Option<Uuid>>(3) {
            of.batches += 1;
            batches.insert(batch);
        }
    }
    let mut events = 0;
    for row in db_tx
        .query(
            "SELECT ledger_id, count(*) FROM events WHERE at >= $1 AND at < $2 GROUP BY ledger_id",
            &[&bounds.starts_at, &bounds.ends_at],
        )
        .await?
    {
        let count: i64 = row.get(1);
        events += count;
        // Events of no one ledger (a closed day, a finished run) count only in the whole.
        if let Some(id) = row.get::<_, Option<i32>>(0) {
            ledger_day(&mut ledgers, id, hours).events += count;
        }
    }
    // A day before the ledger's first journal row has no row here: nothing was closed.
    let stats =
        db_tx.query_opt("SELECT transfers, accounts FROM ledger_days WHERE day = $1::text::date", &[&day]).await?;
    let (transfers, accounts_touched) = stats.map_or((0, 0), |row| (row.get(0), row.get(1)));
    for row in db_tx
        .query(
            "SELECT ledger_id, count(*) FROM balance_snapshots WHERE day = $1::text::date GROUP BY ledger_id",
            &[&day],
        )
        .await?
    {
        ledger_day(&mut ledgers, row.get(0), hours).accounts_touched = row.get(1);
    }
    let mut currencies = Vec::new();
    for row in db_tx
        .query(
            "SELECT ledger_id, currency, transfers, posted_volume, debits_posted, credits_posted, debits_pending, credits_pending
             FROM ledger_day_totals WHERE day = $1::text::date ORDER BY ledger_id, currency",
            &[&day],
        )
        .await?
    {
        let currency: String = row.get(1);
        let scale = scales.get(&currency).copied().unwrap_or(0);
        let amount = |i: usize| amount_text(row.get(i), scale);
        let totals = CurrencyTotals {
            ledger: row.get(0),
            transfers: row.get(2),
            posted_volume: amount(3),
            closing_debits_posted: amount(4),
            closing_credits_posted: amount(5),
            closing_debits_pending: amount(6),
            closing_credits_pending: amount(7),
            currency,
            scale,
        };
        ledger_day(&mut ledgers, totals.ledger, hours).transfers += totals.transfers;
        currencies.push(totals);
    }
    let batches = i64::try_from(batches.len()).expect("bounded");
    Ok(DayFigures { transfers, rejected, accounts_touched, events, batches, currencies, hourly, ledgers })
}

/// Whether `day` has an end-of-day run that is running or finished, or one that failed after
/// `failed_since`: a day with none of these is due for a (new) run.
pub async fn has_current_run(recon: &Recon, day: Date, failed_since: SystemTime) -> Result<bool, ReconError> {
    let client = recon.client().await?;
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM reconciliation_runs WHERE kind = 'end_of_day' AND day = $1::text::date
                            AND (status <> 'failed' OR started_at > $2))",
            &[&format_day(day), &failed_since],
        )
        .await?
        .get(0))
}

/// The latest finished (or failed) run of a day, as stored.
pub async fn latest_report(recon: &Recon, day: Date) -> Result<Option<StoredRun>, ReconError> {
    let client = recon.client().await?;
    let row = client
        .query_opt(
            "SELECT id, status, report, error FROM reconciliation_runs
             WHERE kind = 'end_of_day' AND day = $1::text::date ORDER BY started_at DESC LIMIT 1",
            &[&format_day(day)],
        )
        .await?;
    Ok(row.map(|row| StoredRun {
        run_id: row.get(0),
        status: row.get(1),
        report: row
            .get::<_, Option<serde_json::Value>>(2)
            .map(|v| serde_json::from_value(v).expect("reports we wrote parse")),
        error: row.get(3),
    }))
}

/// The most runs `recent_runs` lists at once.
pub const RUNS_PAGE_MAX: i64 = 200;

/// One end-of-day run as listed, newest first.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: Uuid,
    /// The ledger day, `YYYY-MM-DD`.
    pub day: String,
    /// `running`, `clean`, `findings` or `failed`.
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Findings in the whole report (every ledger).
    pub findings: Option<i64>,
    pub actor: String,
    /// The report, when asked for.
    pub report: Option<DayReport>,
}

/// End-of-day runs, newest first, started before run `before` (run ids are UUIDv7, ordered by
/// their start), at most `limit` (1 to `RUNS_PAGE_MAX`); with their reports when
/// `with_reports`.
pub async fn recent_runs(
    recon: &Recon,
    before: Option<Uuid>,
    limit: i64,
    with_reports: bool,
) -> Result<Vec<RunSummary>, ReconError> {
    let limit = limit.clamp(1, RUNS_PAGE_MAX);
    let client = recon.client().await?;
    let rows = client
        .query(
            "SELECT id, day::text, status, started_at, finished_at, findings, actor, CASE WHEN $3 THEN report END
             FROM reconciliation_runs
             WHERE kind = 'end_of_day' AND ($1::uuid IS NULL OR id < $1)
             ORDER BY id DESC LIMIT $2",
            &[&before, &limit, &with_reports],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| RunSummary {
            run_id: row.get(0),
            day: row.get(1),
            status: row.get(2),
            started_at: rfc3339(row.get(3)),
            finished_at: row.get::<_, Option<SystemTime>>(4).map(rfc3339),
            findings: row.get(5),
            actor: row.get(6),
            report: row
                .get::<_, Option<serde_json::Value>>(7)
                .map(|v| serde_json::from_value(v).expect("reports we wrote parse")),
        })
        .collect())
}

/// A stored run: running, finished with its report, or failed with its error.
#[derive(Debug, Clone)]
pub struct StoredRun {
    pub run_id: Uuid,
    pub status: String,
    pub report: Option<DayReport>,
    pub error: Option<String>,
}
