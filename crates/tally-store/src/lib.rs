//! Tally's storage on PostgreSQL: migrations, the batch commit, account operations, queries,
//! and the audit log and event outbox written in the same SQL transaction as every change.
//!
//! Architecture invariants:
//! - Decisions are made by `tally_core`; this crate only prefetches, locks and writes. It never
//!   decides whether a transfer is allowed (the schema's constraints double-check it).
//! - Nothing user-supplied is ever formatted into SQL text: every value is a bind parameter.
//! - Every change and its audit row and event commit together or not at all.

pub mod accounts;
pub mod api;
pub mod convert;
pub mod error;
pub mod journal;
pub mod ledgers;
pub mod migrate;
pub mod posting;
pub mod queries;
pub mod replica;
pub mod server;
pub mod timing;

pub use accounts::{AccountFilter, AccountRecord, NewAccount, StatusChange};
pub use api::{ApiKeyRecord, IdempotencyBegin, NewApiKey, Role};
pub use error::{StoreError, commit_transaction};
pub use ledgers::{LedgerRecord, NewLedger};
pub use migrate::{MigrationReport, migrate, migrate_through};
pub use posting::{AccountOrder, BatchConn, BatchOutcome, BatchToken, EXPIRY_ACTOR, JournalRow, UnansweredBatch};
pub use queries::{AuditRecord, Direction, EventRecord, EventSubject, HistoryEntry, TransferFilter};
pub use replica::{LagClock, Lsn, Replay};
pub use server::{create_database_if_missing, drop_database_if_exists};

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

/// The most connections one Tally process opens.
pub const POOL_SIZE_MAX: usize = 64;
/// How long a caller waits for a free pooled connection before `database_unavailable`.
pub const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long opening a connection to one host may take, unless the connection string sets
/// `connect_timeout` (with several hosts, a host that does not answer costs this much of every
/// new connection before the next host is tried).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keepalives, unless the connection string sets them: an idle connection is probed after
/// `KEEPALIVE_IDLE`, then every `KEEPALIVE_INTERVAL`, and closed after `KEEPALIVE_RETRIES`
/// unanswered probes, so that a pooled connection to a machine that vanished (a primary lost in
/// a failover) is found closed and replaced instead of being handed out.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
pub const KEEPALIVE_RETRIES: u32 = 3;
/// How long data sent on a TCP connection may go unacknowledged before the connection is
/// closed, unless the connection string sets `tcp_user_timeout`: a statement sent to a machine
/// that vanished fails after this (as a lost connection) instead of hanging for the kernel's
/// retransmission limit, many minutes.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// tokio-postgres's keepalive idle time when the connection string names none.
const LIBRARY_KEEPALIVE_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

/// A handle to the ledger database: a bounded connection pool, which never leaves this crate.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// How the pool connects, for other owners of tables on the same database (reconciliation)
    /// to open pools of their own.
    config: tokio_postgres::Config,
    /// Time spent per stage of the batch commit, for benchmarks and metrics.
    stage_times: std::sync::Arc<timing::StageTimes>,
    /// Microseconds added to the system clock for the times Tally stamps on transfers. Zero in
    /// production; tests set it to write a ledger day in the past and then close it.
    clock_offset_micros: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// Which pooled connections may still be handed out.
    staleness: Arc<Staleness>,
}

/// Pooled connections opened before a server refused a write as read-only are not handed out
/// again: that server is no longer the primary (a standby, or a primary fenced with
/// `default_transaction_read_only`), and a new connection, opened through the connection
/// string's hosts (`target_session_attrs=read-write`), finds the one that is. Connections to a
/// server that went away are found closed and replaced by the pool itself.
#[derive(Debug, Default)]
pub(crate) struct Staleness {
    opened_before: std::sync::Mutex<Option<Instant>>,
}

impl Staleness {
    /// Called with an error a connection met: a refused write marks every connection opened
    /// until now stale.
    pub(crate) fn note(&self, error: &StoreError) {
        if error.is_read_only() {
            tracing::warn!(
                %error,
                "the database refused a write as read-only: it is not the primary (any more); \
                 opening new connections to find the one that is"
            );
            *self.opened_before.lock().expect("staleness lock") = Some(Instant::now());
        }
    }

    fn is_stale(&self, opened: Instant) -> bool {
        self.opened_before.lock().expect("staleness lock").is_some_and(|before| opened <= before)
    }
}

/// Refuses a pooled connection opened before its server refused a write as read-only.
fn stale_connection_hook(staleness: Arc<Staleness>) -> Hook {
    Hook::sync_fn(move |_, metrics| {
        if staleness.is_stale(metrics.created) {
            return Err(HookError::message("opened before its server refused a write as read-only"));
        }
        Ok(())
    })
}

/// The connection settings Tally adds to what the connection string says: its
/// `application_name`, and timeouts and keepalives where the string names none.
fn with_defaults(mut config: tokio_postgres::Config) -> tokio_postgres::Config {
    config.application_name("tally");
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_keepalives_idle() == LIBRARY_KEEPALIVE_IDLE {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(KEEPALIVE_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(KEEPALIVE_RETRIES);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    config
}

/// Checks that `conninfo` is a libpq connection string or URL, without connecting.
pub fn check_conninfo(conninfo: &str) -> Result<(), StoreError> {
    tokio_postgres::Config::from_str(conninfo).map(drop).map_err(StoreError::from)
}

impl Store {
    /// Builds a pool for a libpq connection string or URL. Connects lazily.
    ///
    /// Several hosts (`host=a,b`, `postgresql://a:5432,b:5432/db`) with
    /// `target_session_attrs=read-write` make a connection go to whichever of them is the
    /// primary: after a failover, connections to the old primary end (it went away, or refuses
    /// writes) and new ones find the new primary, without a restart.
    pub fn connect(conninfo: &str, pool_size: usize) -> Result<Store, StoreError> {
        assert!((1..=POOL_SIZE_MAX).contains(&pool_size), "pool size {pool_size} outside 1..={POOL_SIZE_MAX}");
        let config = with_defaults(tokio_postgres::Config::from_str(conninfo)?);
        // Opening a connection tries the hosts one after the other.
        let hosts = u32::try_from(config.get_hosts().len().max(config.get_hostaddrs().len()).max(1)).unwrap_or(1);
        let per_host = config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT);
        let staleness = Arc::new(Staleness::default());
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .create_timeout(Some((per_host * hosts).max(CONNECT_TIMEOUT)))
            .pre_recycle(stale_connection_hook(staleness.clone()))
            .build()
            .expect("the tokio runtime is configured for the timeouts");
        Ok(Store { pool, config, stage_times: Default::default(), clock_offset_micros: Default::default(), staleness })
    }

    /// How this store connects (host, database, user, timeouts): a configuration, not a
    /// connection, for a crate that owns tables of its own to build its own pool.
    pub fn connection_config(&self) -> tokio_postgres::Config {
        self.config.clone()
    }

    /// A `pre_recycle` hook for a pool built from `connection_config` (reconciliation's, the
    /// relay's): it refuses connections opened before a server refused one of this store's
    /// writes as read-only (no longer the primary), as the store's own pool does, so that such
    /// a pool follows a failover too.
    pub fn stale_connection_hook(&self) -> Hook {
        stale_connection_hook(self.staleness.clone())
    }

    /// Closes the pool: idle connections close now, busy ones when they come back; no new ones
    /// open. For a process about to end, or to stop the server it started.
    pub fn close(&self) {
        self.pool.close();
    }

    /// The time Tally stamps on what it writes now: the system clock, plus the offset a test set.
    pub fn now(&self) -> tally_core::Timestamp {
        let offset = self.clock_offset_micros.load(std::sync::atomic::Ordering::Relaxed);
        tally_core::Timestamp(convert::now().0 + offset)
    }

    /// Moves this store's clock (and every clone's) so that `now()` reads `at` at this moment and
    /// runs on from there. For tests, which need transfers on past days, and the end-of-day
    /// benchmark's generator, which writes past days through a store of its own; the ledger
    /// never calls it.
    pub fn set_clock(&self, at: tally_core::Timestamp) {
        let offset = at.0 - convert::now().0;
        self.clock_offset_micros.store(offset, std::sync::atomic::Ordering::Relaxed);
    }

    /// Applies pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let mut client = self.client().await?;
        migrate::migrate(&mut client).await
    }

    /// Applies pending migrations up to and including `version` only: for upgrade tests and
    /// tools that need a database at an earlier release's schema (see [`migrate::migrate_through`]).
    pub async fn migrate_through(&self, version: i32) -> Result<MigrationReport, StoreError> {
        let mut client = self.client().await?;
        migrate::migrate_through(&mut client, version).await
    }

    /// Seconds spent per stage of the batch commit since this store was created.
    pub fn stage_times(&self) -> Vec<(&'static str, f64)> {
        self.stage_times.snapshot()
    }

    /// The stage totals, for code that times stages of its own (the engine's decisions).
    pub fn stage_timer(&self) -> std::sync::Arc<timing::StageTimes> {
        self.stage_times.clone()
    }

    /// A pooled connection. Never exported: every SQL statement on the ledger's tables is
    /// written in this crate.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// The scale of a registered currency.
    pub async fn currency_scale(&self, code: &str) -> Result<u8, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT scale FROM currencies WHERE code = $1", &[&code])
            .await?
            .ok_or_else(|| StoreError::CurrencyNotFound(code.to_owned()))?;
        Ok(u8::try_from(row.get::<_, i16>(0)).expect("scale constrained by the schema"))
    }

    /// Registers a user-defined asset. Idempotent for the same scale.
    pub async fn register_currency(&self, currency: &tally_core::Currency, actor: &str) -> Result<bool, StoreError> {
        let checked = tally_core::Currency::custom(&currency.code, currency.scale)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let scale = i16::from(checked.scale);
        let inserted = tx
            .execute(
                "INSERT INTO currencies (code, scale, iso) VALUES ($1, $2, false) ON CONFLICT DO NOTHING",
                &[&checked.code, &scale],
            )
            .await?;
        if inserted == 0 {
            let existing: i16 =
                tx.query_one("SELECT scale FROM currencies WHERE code = $1", &[&checked.code]).await?.get(0);
            return if existing == scale {
                Ok(false)
            } else {
                Err(StoreError::CurrencyExistsWithDifferentScale(checked.code))
            };
        }
        let entry = journal::AuditEntry {
            actor,
            action: "currency.create",
            event_type: Some("currency.created".into()),
            entity_type: "currency",
            ledger: None,
            entity_id: checked.code.clone(),
            before: None,
            after: serde_json::to_value(&checked).expect("serializes"),
        };
        journal::append(&tx, &[entry]).await?;
        crate::commit_transaction(tx).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_keepalives_are_added_where_the_connection_string_names_none() {
        let config = with_defaults(tokio_postgres::Config::from_str("host=/a,/b dbname=tally").unwrap());
        assert_eq!(config.get_application_name(), Some("tally"));
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(config.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(config.get_keepalives_interval(), Some(KEEPALIVE_INTERVAL));
        assert_eq!(config.get_keepalives_retries(), Some(KEEPALIVE_RETRIES));
        assert_eq!(config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert_eq!(config.get_hosts().len(), 2);
    }

    #[test]
    fn the_connection_string_s_own_timeouts_are_kept() {
        let url = "postgresql://h1:5432,h2:5433/tally?target_session_attrs=read-write&connect_timeout=2\
                   &keepalives_idle=30&keepalives_interval=7&keepalives_retries=9&tcp_user_timeout=5";
        let config = with_defaults(tokio_postgres::Config::from_str(url).unwrap());
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(30));
        assert_eq!(config.get_keepalives_interval(), Some(Duration::from_secs(7)));
        assert_eq!(config.get_keepalives_retries(), Some(9));
        // In seconds, as tokio-postgres reads it (libpq reads milliseconds).
        assert_eq!(config.get_tcp_user_timeout(), Some(&Duration::from_secs(5)));
        assert_eq!(config.get_target_session_attrs(), tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    }

    #[test]
    fn connections_opened_before_a_refused_write_are_stale() {
        let staleness = Staleness::default();
        let opened = Instant::now();
        assert!(!staleness.is_stale(opened), "nothing is stale before a write was refused");
        staleness.note(&StoreError::Invalid("not a database error".into()));
        assert!(!staleness.is_stale(opened), "only a refused write makes connections stale");
        *staleness.opened_before.lock().unwrap() = Some(Instant::now());
        assert!(staleness.is_stale(opened));
        assert!(!staleness.is_stale(Instant::now() + Duration::from_millis(1)));
    }
}
