//! Ledger days and balance snapshots.
//!
//! A ledger day `D` ends at the configured cut-off on `D` in the configured time zone (24:00, the
//! default, is midnight at the end of `D`) and starts where `D - 1` ended. PostgreSQL's time-zone
//! database turns local times into instants, so daylight-saving days simply have 23 or 25 hours.
//!
//! Closing a day writes, for every account the day touched, its balances at the day's start and
//! end, and per currency the totals over all accounts. The closing balances are the opening ones
//! plus the day's journal: the cost follows the day's transfers, never the history or the
//! number of accounts. Days close in order with no gap; the first day closed is the day of the
//! ledger's first journal row. Days before it never close: they hold nothing, and a closed day
//! fixes what a day is (`set_settings`), so closing them would fix the settings of a ledger that
//! has not begun.
//!
//! A day closes only `CLOSE_DELAY` after it ended: a batch stamps its time before it commits,
//! and the delay is far longer than any batch may take, so every transfer of the day is in.

use crate::Recon;
use crate::{Progress, ReconError};
use deadpool_postgres::GenericClient;
use std::time::{Duration, SystemTime};
use tally_store::journal::{AuditEntry, append};
use time::Date;

/// How long after its end a day may be closed.
pub const CLOSE_DELAY: Duration = Duration::from_secs(60);
/// The most days one run closes (ten years): a first close of a long history is done in steps.
pub const DAYS_PER_RUN_MAX: usize = 3660;
/// Key of the advisory lock that serializes closers ("tallyday" in ASCII).
const CLOSE_LOCK_KEY: i64 = 0x74_61_6c_6c_79_64_61_79;

/// What a ledger day is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DaySettings {
    pub time_zone: String,
    /// `HH:MM:SS`; `24:00:00` is midnight at the end of the day.
    pub cutoff: String,
}

/// One day's bounds: `[starts_at, ends_at)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayBounds {
    pub day: Date,
    pub starts_at: SystemTime,
    pub ends_at: SystemTime,
}

pub const DATE_FORMAT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// Parses `YYYY-MM-DD`.
pub fn parse_day(text: &str) -> Result<Date, ReconError> {
    Date::parse(text, DATE_FORMAT).map_err(|_| ReconError::DayInvalid(text.chars().take(32).collect()))
}

pub fn format_day(day: Date) -> String {
    day.format(DATE_FORMAT).expect("dates format")
}

/// What a ledger day is now.
pub async fn settings(recon: &Recon) -> Result<DaySettings, ReconError> {
    settings_in(&recon.client().await?).await
}

pub(crate) async fn settings_in(client: &impl GenericClient) -> Result<DaySettings, ReconError> {
    let row = client.query_one("SELECT time_zone, cutoff::text FROM ledger_day_settings", &[]).await?;
    Ok(DaySettings { time_zone: row.get(0), cutoff: row.get(1) })
}

/// Changes what a day is. Refused once a day is closed: the snapshots would no longer mean
/// what they say. Days before the ledger's first journal row never close, so the settings stay
/// open until a day that holds transfers has closed.
pub async fn set_settings(
    recon: &Recon,
    time_zone: &str,
    cutoff: &str,
    actor: &str,
) -> Result<DaySettings, ReconError> {
    let mut client = recon.client().await?;
    let db_tx = client.transaction().await?;
    db_tx.query_one("SELECT pg_advisory_xact_lock($1)", &[&CLOSE_LOCK_KEY]).await?;
    let valid_zone: bool =
        db_tx.query_one("SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)", &[&time_zone]).await?.get(0);
    if !valid_zone {
        return Err(ReconError::TimeZoneInvalid(time_zone.chars().take(64).collect()));
    }
    let hour_minute = time::macros::format_description!("[hour]:[minute]");
    let cutoff_ok =
        cutoff == "24:00" || time::Time::parse(cutoff, hour_minute).is_ok_and(|t| t != time::Time::MIDNIGHT);
    if !cutoff_ok {
        return Err(ReconError::CutoffInvalid(cutoff.chars().take(16).collect()));
    }
    let closed: bool = db_tx.query_one("SELECT EXISTS (SELECT 1 FROM ledger_days)", &[]).await?.get(0);
    let before = settings_in(&db_tx).await?;
    if closed {
        return Err(ReconError::DayDefinitionLocked);
    }
    db_tx
        .execute(
            "UPDATE ledger_day_settings SET time_zone = $1, cutoff = $2::text::time, updated_at = now(), updated_by = $3",
            &[&time_zone, &cutoff, &actor],
        )
        .await?;
    let after = settings_in(&db_tx).await?;
    let entry = AuditEntry {
        actor,
        action: "ledger_day.settings",
        event_type: None,
        entity_type: "ledger_day",
        ledger: None,
        entity_id: "settings".into(),
        before: Some(serde_json::to_value(&before).expect("serializes")),
        after: serde_json::to_value(&after).expect("serializes"),
    };
    append(&db_tx, &[entry]).await?;
    tally_store::commit_transaction(db_tx).await?;
    Ok(after)
}

/// The bounds of `day` under the current settings.
pub async fn bounds(recon: &Recon, day: Date) -> Result<DayBounds, ReconError> {
    bounds_in(&recon.client().await?, day).await
}

/// `bounds`, read on the caller's connection (inside its snapshot, if it has one).
pub(crate) async fn bounds_in(client: &impl GenericClient, day: Date) -> Result<DayBounds, ReconError> {
    let text = format_day(day);
    let row = client
        .query_one(
            "SELECT ($1::text::date - 1 + s.cutoff) AT TIME ZONE s.time_zone, ($1::text::date + s.cutoff) AT TIME ZONE s.time_zone
             FROM ledger_day_settings s",
            &[&text],
        )
        .await?;
    Ok(DayBounds { day, starts_at: row.get(0), ends_at: row.get(1) })
}

/// The ledger day an instant belongs to.
pub(crate) async fn day_of(client: &impl GenericClient, at: SystemTime) -> Result<Date, ReconError> {
    let row = client
        .query_one(
            "SELECT ((($1::timestamptz AT TIME ZONE s.time_zone) - s.cutoff::interval)::date + 1)::text FROM ledger_day_settings s",
            &[&at],
        )
        .await?;
    parse_day(row.get(0))
}

/// The newest closed day, if any.
pub(crate) async fn last_closed(client: &impl GenericClient) -> Result<Option<Date>, ReconError> {
    let row = client.query_one("SELECT max(day)::text FROM ledger_days", &[]).await?;
    row.get::<_, Option<String>>(0).map(|d| parse_day(&d)).transpose()
}

/// The newest day that may be closed now.
pub async fn last_closable(recon: &Recon) -> Result<Date, ReconError> {
    last_ended(recon, CLOSE_DELAY).await
}

/// The newest day that ended at least `ago` before now.
pub async fn last_ended(recon: &Recon, ago: Duration) -> Result<Date, ReconError> {
    let client = recon.client().await?;
    let now = tally_store::convert::to_system_time(recon.store().now());
    let day = day_of(&client, now - ago).await?;
    Ok(day.previous_day().expect("dates after year -9999"))
}

/// A closed day as `tally days` lists it: bounds as PostgreSQL prints them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClosedDay {
    pub day: String,
    pub starts_at: String,
    pub ends_at: String,
    pub transfers: i64,
    pub accounts: i64,
}

/// The most closed days `recent_closed_days` lists.
pub const CLOSED_DAYS_LISTED_MAX: i64 = 1_000;

/// The newest `limit` closed days (1 to `CLOSED_DAYS_LISTED_MAX`), newest first.
pub async fn recent_closed_days(recon: &Recon, limit: i64) -> Result<Vec<ClosedDay>, ReconError> {
    let limit = limit.clamp(1, CLOSED_DAYS_LISTED_MAX);
    let client = recon.client().await?;
    let rows = client
        .query(
            "SELECT day::text, starts_at::text, ends_at::text, transfers, accounts FROM ledger_days ORDER BY day DESC LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ClosedDay {
            day: r.get(0),
            starts_at: r.get(1),
            ends_at: r.get(2),
            transfers: r.get(3),
            accounts: r.get(4),
        })
        .collect())
}

/// Forgets every closed day: deletes all snapshots, day totals, closed days and reconciliation
/// runs, so that the days close again. For a benchmark's own generated ledger only (it writes no
/// audit row); never call it on a ledger that matters.
pub async fn reopen_all_days(recon: &Recon) -> Result<(), ReconError> {
    let client = recon.client().await?;
    client
        .batch_execute(
            "DELETE FROM balance_snapshots; DELETE FROM ledger_day_totals; DELETE FROM ledger_days;
             DELETE FROM reconciliation_runs;",
        )
        .await?;
    client.batch_execute("VACUUM balance_snapshots, ledger_day_totals, ledger_days").await?;
    Ok(())
}

/// Closes every day up to and including `through` that is not closed yet, in order. Returns the
/// days it closed (none when `through` was already closed).
pub async fn close_through(
    recon: &Recon,
    through: Date,
    actor: &str,
    progress: &dyn Progress,
) -> Result<Vec<Date>, ReconError> {
    let closable = last_closable(recon).await?;
    if through > closable {
        return Err(ReconError::DayNotClosed { day: format_day(through), closable: format_day(closable) });
    }
    let client = recon.client().await?;
    let first = match last_closed(&client).await? {
        Some(last) if last >= through => return Ok(Vec::new()),
        Some(last) => last.next_day().expect("dates before year 9999"),
        None => match first_entry_day(&client).await? {
            Some(first) if first <= through => first,
            // `through` precedes the ledger's first journal row (or there is none): nothing to close.
            _ => return Ok(Vec::new()),
        },
    };
    drop(client);
    let count = usize::try_from((through - first).whole_days() + 1).expect("first <= through");
    if count > DAYS_PER_RUN_MAX {
        return Err(ReconError::TooManyDays { first: format_day(first), through: format_day(through) });
    }
    progress.add_steps(count);
    let mut closed = Vec::with_capacity(count);
    let mut day = first;
    while day <= through {
        progress.step(&format!("closing {}", format_day(day)));
        close_day(recon, day, actor).await?;
        closed.push(day);
        day = day.next_day().expect("dates before year 9999");
    }
    Ok(closed)
}

/// The day of the ledger's first journal row (`None` on an empty journal): the first day to
/// close on a ledger with no closed day.
async fn first_entry_day(client: &impl GenericClient) -> Result<Option<Date>, ReconError> {
    let first: Option<SystemTime> = client.query_one("SELECT min(created_at) FROM transfers", &[]).await?.get(0);
    match first {
        Some(at) => Ok(Some(day_of(client, at).await?)),
        None => Ok(None),
    }
}

/// Whether closing every day through `day` would close nothing: no day is closed yet and `day`
/// ends before the ledger's first journal row (or the journal is empty). With a day closed the
/// ledger has begun, and the journal is not read.
pub async fn precedes_ledger(recon: &Recon, day: Date) -> Result<bool, ReconError> {
    let client = recon.client().await?;
    if last_closed(&client).await?.is_some() {
        return Ok(false);
    }
    Ok(first_entry_day(&client).await?.is_none_or(|first| day < first))
}

/// Whether `day` is closed.
pub(crate) async fn is_closed(client: &impl GenericClient, day: Date) -> Result<bool, ReconError> {
    let text = format_day(day);
    Ok(client.query_one("SELECT EXISTS (SELECT 1 FROM ledger_days WHERE day = $1::text::date)", &[&text]).await?.get(0))
}

/// The per-account movement of the journal in `[$1, $2)`: posted amounts and holds placed by
/// rows created then, holds released by resolutions then. One row per (account, currency,
/// ledger), the ledger being the journal rows' (a transfer stays inside the ledger of its
/// accounts, so it is the account's; a row that says otherwise is a finding of the end of day,
/// `transfer_ledger_mismatch`); `transfers` counts journal rows on their debit side, so that its
/// sum is the rows' count.
///
/// The debit and credit sides are aggregated separately and joined: one hash aggregation per
/// side over the day's rows costs half of aggregating two entries per row (measured on a day of
/// ten million transfers: 22 s against 50 s).
pub(crate) const DELTA_SQL: &str = "
    SELECT coalesce(j.account_id, r.account_id) AS account_id, coalesce(j.currency, r.currency) AS currency,
           coalesce(j.ledger_id, r.ledger_id) AS ledger_id,
           coalesce(j.transfers, 0)::int8 AS transfers,
           coalesce(j.debits_posted, 0) AS debits_posted, coalesce(j.credits_posted, 0) AS credits_posted,
           coalesce(j.debits_pending, 0) - coalesce(r.debits_released, 0) AS debits_pending,
           coalesce(j.credits_pending, 0) - coalesce(r.credits_released, 0) AS credits_pending
    FROM (
        SELECT coalesce(d.account_id, c.account_id) AS account_id, coalesce(d.currency, c.currency) AS currency,
               coalesce(d.ledger_id, c.ledger_id) AS ledger_id,
               d.transfers, d.posted AS debits_posted, c.posted AS credits_posted, d.held AS debits_pending, c.held AS credits_pending
        FROM (SELECT debit_account_id AS account_id, currency, ledger_id, count(*) AS transfers,
                     sum(amount) FILTER (WHERE kind IN ('posted', 'post_pending', 'reversal')) AS posted,
                     sum(amount) FILTER (WHERE kind = 'pending') AS held
              FROM transfers WHERE created_at >= $1 AND created_at < $2 AND status <> 'rejected' GROUP BY 1, 2, 3) d
        FULL JOIN (SELECT credit_account_id AS account_id, currency, ledger_id,
                          sum(amount) FILTER (WHERE kind IN ('posted', 'post_pending', 'reversal')) AS posted,
                          sum(amount) FILTER (WHERE kind = 'pending') AS held
                   FROM transfers WHERE created_at >= $1 AND created_at < $2 AND status <> 'rejected' GROUP BY 1, 2, 3) c
            ON c.account_id = d.account_id AND c.currency = d.currency AND c.ledger_id = d.ledger_id
    ) j
    FULL JOIN (
        SELECT e.account_id, t.currency, t.ledger_id, sum(e.debits) AS debits_released, sum(e.credits) AS credits_released
        FROM transfers t
        CROSS JOIN LATERAL (VALUES (t.debit_account_id, t.amount, 0::numeric), (t.credit_account_id, 0::numeric, t.amount))
            AS e(account_id, debits, credits)
        WHERE t.kind = 'pending' AND t.status IN ('posted', 'voided', 'expired') AND t.completed_at >= $1 AND t.completed_at < $2
        GROUP BY 1, 2, 3
    ) r ON r.account_id = j.account_id AND r.currency = j.currency AND r.ledger_id = j.ledger_id";

/// Closes one day in one SQL transaction: its snapshots, its totals, its row in `ledger_days`,
/// an audit row and a `ledger_day.closed` event.
async fn close_day(recon: &Recon, day: Date, actor: &str) -> Result<(), ReconError> {
    let mut client = recon.client().await?;
    let db_tx = client.transaction().await?;
    db_tx.query_one("SELECT pg_advisory_xact_lock($1)", &[&CLOSE_LOCK_KEY]).await?;
    let last = last_closed(&db_tx).await?;
    if last.is_some_and(|last| last >= day) {
        // Another closer got here first; closing is idempotent.
        return Ok(());
    }
    assert!(last.is_none_or(|last| last.next_day() == Some(day)), "days close in order");
    let bounds = bounds_in(&db_tx, day).await?;
    let text = format_day(day);
    db_tx.batch_execute("SET LOCAL enable_nestloop = off; SET LOCAL work_mem = '1GB'").await?;
    db_tx
        .batch_execute(
            "CREATE TEMP TABLE day_delta (account_id uuid, currency text, ledger_id int4, transfers int8, debits_posted numeric,
                 credits_posted numeric, debits_pending numeric, credits_pending numeric) ON COMMIT DROP",
        )
        .await?;
    db_tx.execute(&format!("INSERT INTO day_delta {DELTA_SQL}"), &[&bounds.starts_at, &bounds.ends_at]).await?;
    // The snapshot insert below looks up each account's previous row: a nested loop.
    db_tx.batch_execute("ANALYZE day_delta; SET LOCAL enable_nestloop = on").await?;
    let row = db_tx
        .query_one(
            "INSERT INTO ledger_days (day, starts_at, ends_at, seq_low, seq_high, transfers, accounts, closed_at, closed_by)
             SELECT $1::text::date, $2, $3,
                    coalesce(s.seq_min, p.seq_low, 1), greatest(s.seq_max, p.seq_high, 0),
                    coalesce((SELECT sum(transfers) FROM day_delta), 0), (SELECT count(*) FROM day_delta), now(), $4
             FROM (SELECT min(seq) AS seq_min, max(seq) AS seq_max FROM transfers WHERE created_at >= $2 AND created_at < $3) s
             LEFT JOIN ledger_days p ON p.day = $1::text::date - 1
             RETURNING transfers, accounts",
            &[&text, &bounds.starts_at, &bounds.ends_at, &actor],
        )
        .await?;
    let (transfers, accounts): (i64, i64) = (row.get(0), row.get(1));
    db_tx
        .execute(
            "INSERT INTO balance_snapshots (account_id, day, currency, opening_debits_posted, opening_credits_posted,
                                            opening_debits_pending, opening_credits_pending, closing_debits_posted,
                                            closing_credits_posted, closing_debits_pending, closing_credits_pending, ledger_id)
             SELECT d.account_id, $1::text::date, d.currency,
                    coalesce(p.closing_debits_posted, 0), coalesce(p.closing_credits_posted, 0),
                    coalesce(p.closing_debits_pending, 0), coalesce(p.closing_credits_pending, 0),
                    coalesce(p.closing_debits_posted, 0) + d.debits_posted, coalesce(p.closing_credits_posted, 0) + d.credits_posted,
                    coalesce(p.closing_debits_pending, 0) + d.debits_pending, coalesce(p.closing_credits_pending, 0) + d.credits_pending,
                    d.ledger_id
             FROM day_delta d
             LEFT JOIN LATERAL (SELECT * FROM balance_snapshots b
                                WHERE b.account_id = d.account_id AND b.ledger_id = d.ledger_id AND b.day < $1::text::date
                                ORDER BY b.day DESC LIMIT 1) p ON true
             ORDER BY d.account_id",
            &[&text],
        )
        .await?;
    db_tx
        .execute(
            "INSERT INTO ledger_day_totals (day, currency, transfers, posted_volume, debits_posted, credits_posted,
                                            debits_pending, credits_pending, ledger_id)
             SELECT $1::text::date, coalesce(d.currency, p.currency), coalesce(d.transfers, 0), coalesce(d.debits_posted, 0),
                    coalesce(p.debits_posted, 0) + coalesce(d.debits_posted, 0),
                    coalesce(p.credits_posted, 0) + coalesce(d.credits_posted, 0),
                    coalesce(p.debits_pending, 0) + coalesce(d.debits_pending, 0),
                    coalesce(p.credits_pending, 0) + coalesce(d.credits_pending, 0),
                    coalesce(d.ledger_id, p.ledger_id)
             FROM (SELECT ledger_id, currency, sum(transfers)::int8 AS transfers, sum(debits_posted) AS debits_posted,
                          sum(credits_posted) AS credits_posted, sum(debits_pending) AS debits_pending,
                          sum(credits_pending) AS credits_pending
                   FROM day_delta GROUP BY ledger_id, currency) d
             FULL JOIN (SELECT * FROM ledger_day_totals WHERE day = $1::text::date - 1) p
                 ON p.currency = d.currency AND p.ledger_id = d.ledger_id",
            &[&text],
        )
        .await?;
    let entry = AuditEntry {
        actor,
        action: "ledger_day.close",
        event_type: Some("ledger_day.closed".into()),
        entity_type: "ledger_day",
        ledger: None,
        entity_id: text.clone(),
        before: None,
        after: serde_json::json!({"day": text, "transfers": transfers, "accounts": accounts}),
    };
    append(&db_tx, &[entry]).await?;
    tally_store::commit_transaction(db_tx).await?;
    Ok(())
}
