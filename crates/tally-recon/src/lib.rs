//! Reconciliation: does the ledger agree with itself, day by day, and with the bank?
//!
//! - [`days`]: ledger days (cut-off, time zone) and the per-account balance snapshots that close
//!   them, written from each day's journal.
//! - [`balance`]: point-in-time balances from the nearest snapshot plus the journal since.
//! - [`eod`]: the end-of-day run: close the day, check it, store the report.
//! - [`report`] and [`render`]: reports as values, and as JSON, CSV and HTML.
//! - [`check_ledger`] (below): the whole-ledger check, for `tally reconcile` without a date and
//!   for tests.
//!
//! Every function takes a [`Recon`]: reconciliation's own connection pool, on which it reads the
//! ledger and writes its own tables (ledger days, snapshots, day totals, runs, statements), and
//! the store, for the clock and account lookups. Audit rows and events go through the store's
//! journal writer (`tally_store::journal`), in recon's SQL transaction.
//!
//! `check_ledger` recomputes everything that is stored twice and reports every disagreement,
//! naming the accounts, transfers and amounts involved:
//! - **trial balance**: per currency, total debits equal total credits (posted and pending);
//! - **double entry per ledger**: per ledger and currency, the same over the ledger's accounts
//!   (`ledger_trial_balance`: a transfer never leaves the ledger of its accounts, so every ledger
//!   balances on its own), and no applied journal row names an account outside its own ledger
//!   (`transfer_ledger_mismatch`);
//! - **journal vs accounts**: each account's posted totals equal the sums of its posted journal
//!   entries, and its pending totals equal its open holds;
//! - **balance rules**: no account is past its rule;
//! - **completeness**: every journal entry has its audit row (the audit row of the batch that
//!   wrote it, or its own for entries written through the SQL interface), every applied entry
//!   its event, and the event sequence has no gap.
//!
//! The checks run in one REPEATABLE READ snapshot, so a ledger under load is checked at one
//! consistent point in time. Findings are values, each with the ledger it concerns; only
//! database failures are errors.

pub mod balance;
pub mod days;
pub mod eod;
pub mod render;
pub mod report;
pub mod statement;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::Serialize;
use tally_store::{Store, StoreError};
use thiserror::Error;
use tokio_postgres::NoTls;

/// The fewest connections a `Recon` may have: an end-of-day run checks on `CHECK_LANES` at once.
pub const POOL_SIZE_MIN: usize = eod::CHECK_LANES;

/// Reconciliation's handle on the ledger database: a connection pool of its own (reads of the
/// ledger, writes to reconciliation's tables) and the store (the clock, account lookups). Cheap
/// to clone; clones share the pool.
#[derive(Clone)]
pub struct Recon {
    pool: Pool,
    store: Store,
}

impl Recon {
    /// Builds a pool of at most `pool_size` connections to the database `store` connects to.
    /// Connects lazily: a `Recon` that is never used opens nothing.
    pub fn new(store: &Store, pool_size: usize) -> Recon {
        assert!(
            (POOL_SIZE_MIN..=tally_store::POOL_SIZE_MAX).contains(&pool_size),
            "recon pool size {pool_size} outside {POOL_SIZE_MIN}..={}",
            tally_store::POOL_SIZE_MAX
        );
        let mut config = store.connection_config();
        config.application_name("tally-recon");
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(tally_store::POOL_WAIT_TIMEOUT))
            .create_timeout(Some(tally_store::CONNECT_TIMEOUT))
            .pre_recycle(store.stale_connection_hook())
            .build()
            .expect("the tokio runtime is configured for the timeouts");
        Recon { pool, store: store.clone() }
    }

    /// Closes reconciliation's pool (see `Store::close`).
    pub fn close(&self) {
        self.pool.close();
    }

    /// The store this reconciles: its clock and its account lookups.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A connection of reconciliation's own pool. A pool that cannot give one fails as the
    /// store's does (`database_unavailable`).
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, ReconError> {
        Ok(self.pool.get().await.map_err(StoreError::Pool)?)
    }
}

/// Parses an RFC 3339 time (any offset) into Tally's microsecond timestamp.
pub fn parse_time(text: &str) -> Result<tally_core::Timestamp, ReconError> {
    let invalid = || ReconError::TimeInvalid(text.chars().take(64).collect());
    if text.len() > 64 {
        return Err(invalid());
    }
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|_| invalid())?;
    let micros = i64::try_from(at.unix_timestamp_nanos() / 1000).map_err(|_| invalid())?;
    if micros < 0 {
        return Err(invalid());
    }
    Ok(tally_core::Timestamp(micros))
}

/// A read-only SQL transaction on one consistent snapshot (REPEATABLE READ), so that a ledger
/// under load is read at one point in time.
pub(crate) async fn read_snapshot(
    client: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>, ReconError> {
    Ok(client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

/// Where a long run is, for a progress bar: told how many steps lie ahead as the run learns
/// it, then called once per step as it starts.
pub trait Progress: Send + Sync {
    fn add_steps(&self, steps: usize);
    fn step(&self, what: &str);
}

/// No progress display.
pub struct Quiet;

impl Progress for Quiet {
    fn add_steps(&self, _steps: usize) {}
    fn step(&self, _what: &str) {}
}

/// How many findings of one kind are listed before the rest are only counted.
pub const FINDINGS_PER_CHECK_MAX: i64 = 100;

#[derive(Debug, Error)]
pub enum ReconError {
    #[error("{0:?} is not a date (YYYY-MM-DD)")]
    DayInvalid(String),
    #[error(
        "day {day} cannot be reconciled yet: the newest day that has ended (plus a minute for late batches) is {closable}"
    )]
    DayNotClosed { day: String, closable: String },
    #[error("{0:?} is not a time zone PostgreSQL knows (an IANA name such as Europe/Berlin)")]
    TimeZoneInvalid(String),
    #[error("{0:?} is not a cut-off: give HH:MM after 00:00, or 24:00 for midnight")]
    CutoffInvalid(String),
    #[error("days are already closed under the current time zone and cut-off; they cannot change")]
    DayDefinitionLocked,
    #[error("closing {first} through {through} is more than {max} days in one run", max = days::DAYS_PER_RUN_MAX)]
    TooManyDays { first: String, through: String },
    #[error("a reconciliation of {0} is already running")]
    RunInProgress(String),
    #[error("account {0} not found")]
    AccountNotFound(String),
    #[error("a balance as of a time in the future could still change")]
    AsOfInFuture,
    #[error("{0:?} is not a time: give RFC 3339, e.g. 2026-03-10T17:00:00Z or 2026-03-10T18:00:00+01:00")]
    TimeInvalid(String),
    // The parser's error is part of this message, and deliberately not its `source`: a report
    // of the chain (`anyhow`'s `{:#}`) would otherwise say it twice.
    #[error("statement refused: {0}")]
    Statement(tally_statement::StatementError),
    #[error("the file is neither camt (053, 052, 054) nor MT940; name the format (CSV needs its column layout)")]
    StatementFormatUnknown,
    #[error("the statement is in {statement}, the account in {account}")]
    StatementCurrencyMismatch { statement: String, account: String },
    #[error("statement {0} was imported for this account before, from a different file")]
    StatementExistsWithDifferentContent(String),
    #[error("statement {0} not found")]
    StatementNotFound(String),
    #[error("matching rules: {0}")]
    StatementRulesInvalid(String),
    #[error("account mapping: {0}")]
    StatementMappingInvalid(String),
    #[error("{0}")]
    StatementMappingAmbiguous(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    // As for `Statement`: the message carries the cause, so it is not also the `source`.
    #[error("database error: {0}")]
    Db(tokio_postgres::Error),
}

impl From<tally_statement::StatementError> for ReconError {
    fn from(error: tally_statement::StatementError) -> Self {
        ReconError::Statement(error)
    }
}

impl From<tokio_postgres::Error> for ReconError {
    fn from(error: tokio_postgres::Error) -> Self {
        ReconError::Db(error)
    }
}

impl ReconError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ReconError::DayInvalid(_) => "day_invalid",
            ReconError::DayNotClosed { .. } => "day_not_closed",
            ReconError::TimeZoneInvalid(_) => "time_zone_invalid",
            ReconError::CutoffInvalid(_) => "cutoff_invalid",
            ReconError::DayDefinitionLocked => "day_definition_locked",
            ReconError::TooManyDays { .. } => "too_many_days",
            ReconError::RunInProgress(_) => "reconciliation_running",
            ReconError::AccountNotFound(_) => "account_not_found",
            ReconError::AsOfInFuture => "as_of_in_future",
            ReconError::TimeInvalid(_) => "time_invalid",
            ReconError::Statement(error) => error.code(),
            ReconError::StatementFormatUnknown => "statement_format_unknown",
            ReconError::StatementCurrencyMismatch { .. } => "statement_currency_mismatch",
            ReconError::StatementExistsWithDifferentContent(_) => "statement_exists_with_different_content",
            ReconError::StatementNotFound(_) => "statement_not_found",
            ReconError::StatementRulesInvalid(_) => "statement_rules_invalid",
            ReconError::StatementMappingInvalid(_) => "statement_mapping_invalid",
            ReconError::StatementMappingAmbiguous(_) => "statement_mapping_ambiguous",
            ReconError::Store(error) => error.code(),
            ReconError::Db(error) if tally_store::error::is_connection_lost(error) => "database_unavailable",
            ReconError::Db(_) => "database_error",
        }
    }
}

/// One disagreement, with what is needed to investigate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable code of the check, e.g. `account_totals_mismatch`.
    pub check: &'static str,
    /// The account, transfer, currency or event the finding is about.
    pub subject: String,
    /// What was expected and what was found, in minor units where amounts are involved.
    pub detail: String,
    /// The ledger of the account or transfer (by id); `None` for what is of no one ledger (a
    /// currency over every ledger, the event sequence).
    pub ledger: Option<i32>,
}

/// One ledger's totals in one currency, over its accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerTotals {
    pub ledger: i32,
    pub ledger_code: String,
    pub currency: String,
    /// Decimal strings in the currency's scale.
    pub debits_posted: String,
    pub credits_posted: String,
}

/// The result of a reconciliation run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub accounts: i64,
    pub transfers: i64,
    pub events: i64,
    /// Per ledger and currency, by ledger id and currency.
    pub totals: Vec<LedgerTotals>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Each check: a stable code and a query returning `(subject, detail, ledger)` rows for every
/// finding.
const CHECKS: &[(&str, &str)] = &[
    (
        "trial_balance",
        "SELECT currency, format('debits posted %s, credits posted %s, debits pending %s, credits pending %s',
                                 sum(debits_posted), sum(credits_posted), sum(debits_pending), sum(credits_pending)),
                NULL::int4
         FROM accounts GROUP BY currency
         HAVING sum(debits_posted) <> sum(credits_posted) OR sum(debits_pending) <> sum(credits_pending)",
    ),
    (
        "ledger_trial_balance",
        "SELECT a.currency,
                format('ledger %s (%s): debits posted %s, credits posted %s, debits pending %s, credits pending %s',
                       l.code, a.ledger_id, sum(a.debits_posted), sum(a.credits_posted), sum(a.debits_pending),
                       sum(a.credits_pending)),
                a.ledger_id
         FROM accounts a LEFT JOIN ledgers l ON l.id = a.ledger_id GROUP BY a.ledger_id, l.code, a.currency
         HAVING sum(a.debits_posted) <> sum(a.credits_posted) OR sum(a.debits_pending) <> sum(a.credits_pending)",
    ),
    (
        "account_totals_mismatch",
        "WITH j AS (
             SELECT account_id,
                    sum(amount) FILTER (WHERE side = 'D' AND posted) AS debits_posted,
                    sum(amount) FILTER (WHERE side = 'C' AND posted) AS credits_posted,
                    sum(amount) FILTER (WHERE side = 'D' AND held) AS debits_pending,
                    sum(amount) FILTER (WHERE side = 'C' AND held) AS credits_pending
             FROM (SELECT debit_account_id AS account_id, 'D' AS side, amount,
                          kind IN ('posted', 'post_pending', 'reversal') AS posted,
                          kind = 'pending' AND status = 'pending' AS held
                   FROM transfers WHERE status <> 'rejected'
                   UNION ALL
                   SELECT credit_account_id, 'C', amount,
                          kind IN ('posted', 'post_pending', 'reversal'),
                          kind = 'pending' AND status = 'pending'
                   FROM transfers WHERE status <> 'rejected') entries
             GROUP BY account_id)
         SELECT a.id::text,
                format('account has debits %s / credits %s posted, %s / %s pending; journal says %s / %s posted, %s / %s pending',
                       a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending,
                       coalesce(j.debits_posted, 0), coalesce(j.credits_posted, 0),
                       coalesce(j.debits_pending, 0), coalesce(j.credits_pending, 0)),
                a.ledger_id
         FROM accounts a LEFT JOIN j ON j.account_id = a.id
         WHERE (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending)
               IS DISTINCT FROM (coalesce(j.debits_posted, 0), coalesce(j.credits_posted, 0),
                                 coalesce(j.debits_pending, 0), coalesce(j.credits_pending, 0))",
    ),
    (
        // Anti-joins on (id, ledger): an account of the row's ledger must exist for both sides.
        // Where the account is instead is looked up only for the rows found.
        "transfer_ledger_mismatch",
        "SELECT t.id::text,
                format('%s transfer of ledger %s names debit account %s (in %s) and credit account %s (in %s)',
                       t.kind, t.ledger_id,
                       t.debit_account_id, coalesce((SELECT 'ledger ' || string_agg(a.ledger_id::text, ', ')
                                                     FROM accounts a WHERE a.id = t.debit_account_id), 'no ledger'),
                       t.credit_account_id, coalesce((SELECT 'ledger ' || string_agg(a.ledger_id::text, ', ')
                                                      FROM accounts a WHERE a.id = t.credit_account_id), 'no ledger')),
                t.ledger_id
         FROM transfers t
         WHERE t.status <> 'rejected'
           AND (NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = t.debit_account_id AND a.ledger_id = t.ledger_id)
                OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = t.credit_account_id AND a.ledger_id = t.ledger_id))",
    ),
    (
        "balance_rule_broken",
        "SELECT id::text, format('available %s is below the overdraft limit -%s',
                                 credits_posted - debits_posted - debits_pending, overdraft_limit),
                ledger_id
         FROM accounts
         WHERE NOT unrestricted AND credits_posted - debits_posted - debits_pending < -overdraft_limit",
    ),
    (
        "transfer_without_audit",
        "SELECT t.id::text, format('%s transfer has no audit row (batch %s)', t.kind, t.batch_id), t.ledger_id FROM transfers t
         WHERE NOT EXISTS (SELECT 1 FROM audit_log l WHERE l.entity_id = t.batch_id::text AND l.entity_type = 'batch')
           AND NOT EXISTS (SELECT 1 FROM audit_log l WHERE l.entity_id = t.id::text
                           AND l.action IN ('transfer.create', 'transfer.reject'))",
    ),
    (
        "transfer_without_event",
        "SELECT t.id::text, format('%s transfer has no event', t.kind), t.ledger_id FROM transfers t
         WHERE t.status <> 'rejected'
           AND NOT EXISTS (SELECT 1 FROM events e WHERE e.entity_id = t.id::text AND e.type = 'transfer.' || t.kind)",
    ),
    (
        "event_sequence_gap",
        "SELECT 'events', format('%s events but sequence numbers run from %s to %s (counter at %s)',
                                 count(*), min(seq), max(seq), (SELECT last_seq FROM event_sequence)),
                NULL::int4
         FROM events
         HAVING count(*) <> coalesce(max(seq), 0) OR coalesce(min(seq), 1) <> 1
             OR coalesce(max(seq), 0) <> (SELECT last_seq FROM event_sequence)",
    ),
];

/// Runs every check in one consistent snapshot.
pub async fn check_ledger(recon: &Recon) -> Result<Report, ReconError> {
    let mut client = recon.client().await?;
    let tx = crate::read_snapshot(&mut client).await?;
    // Whole-table aggregations: hash joins are always right, and a ledger fresh from a restart
    // may have no statistics yet to tell the planner so.
    tx.batch_execute("SET LOCAL enable_nestloop = off").await?;
    let mut findings = Vec::new();
    for (check, sql) in CHECKS {
        let limited = format!("{sql} LIMIT {FINDINGS_PER_CHECK_MAX}");
        for row in tx.query(&limited, &[]).await? {
            findings.push(Finding { check, subject: row.get(0), detail: row.get(1), ledger: row.get(2) });
        }
    }
    let count = |table: &'static str| format!("SELECT count(*) FROM {table}");
    let accounts: i64 = tx.query_one(&count("accounts"), &[]).await?.get(0);
    let transfers: i64 = tx.query_one(&count("transfers"), &[]).await?.get(0);
    let events: i64 = tx.query_one(&count("events"), &[]).await?.get(0);
    let totals = tx
        .query(
            "SELECT a.ledger_id, l.code, a.currency, tally_major(sum(a.debits_posted), c.scale)::text,
                    tally_major(sum(a.credits_posted), c.scale)::text
             FROM accounts a JOIN currencies c ON c.code = a.currency JOIN ledgers l ON l.id = a.ledger_id
             GROUP BY a.ledger_id, l.code, a.currency, c.scale ORDER BY 1, 3",
            &[],
        )
        .await?
        .iter()
        .map(|row| LedgerTotals {
            ledger: row.get(0),
            ledger_code: row.get(1),
            currency: row.get(2),
            debits_posted: row.get(3),
            credits_posted: row.get(4),
        })
        .collect();
    tx.commit().await?;
    Ok(Report { accounts, transfers, events, totals, findings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_refused_statement_says_why_once_in_its_chain() {
        let parser = tally_statement::StatementError::Malformed {
            location: "line 21".to_owned(),
            reason: "missing :25:".to_owned(),
        };
        let error = ReconError::from(parser);
        assert_eq!(error.to_string(), "statement refused: line 21: malformed statement: missing :25:");
        // Walking the chain, as a command-line edge does, adds nothing the message already says.
        assert!(error.source().is_none());
        assert_eq!(error.code(), "statement_malformed");
    }
}
