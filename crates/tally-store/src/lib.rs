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
pub mod server;
pub mod timing;

pub use accounts::{AccountFilter, AccountRecord, NewAccount, StatusChange};
pub use api::{ApiKeyRecord, IdempotencyBegin, NewApiKey, Role};
pub use error::{StoreError, commit_transaction};
pub use ledgers::{LedgerRecord, NewLedger};
pub use migrate::{MigrationReport, migrate, migrate_through};
pub use posting::{AccountOrder, BatchConn, BatchOutcome, BatchToken, EXPIRY_ACTOR, JournalRow, UnansweredBatch};
pub use queries::{AuditRecord, Direction, EventRecord, EventSubject, HistoryEntry, TransferFilter};
pub use server::{create_database_if_missing, drop_database_if_exists};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::NoTls;

/// The most connections one Tally process opens.
pub const POOL_SIZE_MAX: usize = 64;
/// How long a caller waits for a free pooled connection before `database_unavailable`.
pub const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long opening a new connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
}

impl Store {
    /// Builds a pool for a libpq connection string or URL. Connects lazily.
    pub fn connect(conninfo: &str, pool_size: usize) -> Result<Store, StoreError> {
        assert!((1..=POOL_SIZE_MAX).contains(&pool_size), "pool size {pool_size} outside 1..={POOL_SIZE_MAX}");
        let mut config = tokio_postgres::Config::from_str(conninfo)?;
        config.application_name("tally").connect_timeout(CONNECT_TIMEOUT);
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .expect("the tokio runtime is configured for the timeouts");
        Ok(Store { pool, config, stage_times: Default::default(), clock_offset_micros: Default::default() })
    }

    /// How this store connects (host, database, user, timeouts): a configuration, not a
    /// connection, for a crate that owns tables of its own to build its own pool.
    pub fn connection_config(&self) -> tokio_postgres::Config {
        self.config.clone()
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
