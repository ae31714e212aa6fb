//! Tally's benchmarks, as a library the `tally` binary calls.
//!
//! - [`run_bench`] (`tally bench`): opens and funds accounts on a fresh database, runs clients
//!   against the posting engine (or one SQL transaction per transfer, or the HTTP API) for a
//!   fixed time, and reports throughput, latency, batch sizes, WAL and CPU per transfer, memory,
//!   where each batch commit spends its time, and whether the books still balance. With events
//!   out ([`EventsOutConfig`]), the NATS relay and the webhook dispatcher run beside the load, and
//!   the report says how far behind the relay fell and how long it took to catch up.
//! - [`run_eod`] (`tally bench-eod`): generates a ledger of many transfers a day through the
//!   engine, then times the end of day of each day.
//!
//! The crate holds no database client and no SQL (the relay's tables are `tally_relay`'s): what it reads of the server (settings, the WAL
//! position, the server process behind a connection, row counts) and the maintenance it needs
//! are `tally_store` functions, the checks are `tally_recon`'s, and every transfer, generated or
//! benchmarked, goes through `tally_engine` (or the HTTP API in front of it) with every trigger
//! and constraint of the schema on.

mod eod;
mod error;
mod events_out;
mod generate;
mod http;
mod replica_lag;
mod report;
mod system;
mod throughput;
mod workload;

pub use eod::{ACCOUNTS_MAX as EOD_ACCOUNTS_MAX, TRANSFERS_PER_DAY_MAX};
pub use eod::{DAYS_MAX, DayTiming, EOD_BENCH_DB, EodBenchReport, EodConfig, run_eod};
pub use error::BenchError;
pub use events_out::{
    DRAIN_TIMEOUT_MAX, EventsOutConfig, EventsOutReport, LAG_SAMPLE_INTERVAL, LagSummary, NatsReport, WebhooksReport,
};
pub use replica_lag::ReplicaLagReport;
pub use report::{BenchReport, Latency, cpu_us_per_transfer, wal_per_transfer};
pub use throughput::{BENCH_DB, BenchConfig, BenchMode, CONCURRENCY_MAX, Distribution, run_bench};

use indicatif::ProgressBar;
use tally_core::{AccountId, BalanceRule};
use tally_pg::{EmbeddedPg, StartOutcome};
use tally_store::{NewAccount, Store};
use uuid::Uuid;

/// The embedded server's maintenance database, where the benchmarks' databases are created.
const ADMIN_DB: &str = "postgres";
/// The actor the benchmarks' transfers, accounts and reports are recorded under.
pub const BENCH_ACTOR: &str = "bench";
/// Accounts are opened this many per SQL transaction.
const ACCOUNT_CHUNK: usize = 5_000;

/// Where a benchmark runs.
pub enum Database {
    /// A database named by a connection string (`--database-url`), used as it is.
    Url(String),
    /// The embedded PostgreSQL (`--data-dir`): started if it is not running, with the
    /// benchmark's own database created on it.
    Embedded(EmbeddedPg),
}

impl Database {
    /// The connection string of the database to run in: the given one, or `name` on the
    /// embedded server, started if needed and created (dropped first when `fresh`). Also
    /// whether this call started the embedded server.
    async fn prepare(&self, name: &str, fresh: bool) -> Result<(String, bool), BenchError> {
        match self {
            Database::Url(url) => Ok((url.clone(), false)),
            Database::Embedded(pg) => {
                let started = pg.start()? == StartOutcome::Started;
                let admin = pg.connection_string(ADMIN_DB);
                if fresh {
                    tally_store::drop_database_if_exists(&admin, name).await?;
                }
                tally_store::create_database_if_missing(&admin, name).await?;
                Ok((pg.connection_string(name), started))
            }
        }
    }

    /// Stops the embedded server if `prepare` started it.
    fn stop_if_started(&self, started: bool) -> Result<(), BenchError> {
        if let (Database::Embedded(pg), true) = (self, started) {
            pg.stop()?;
        }
        Ok(())
    }
}

/// Opens `count` USD accounts under `rule` (ids UUIDv7), `ACCOUNT_CHUNK` per SQL transaction,
/// each with its audit row and event; moves `bar` by the accounts opened.
async fn open_accounts(
    store: &Store,
    count: usize,
    rule: BalanceRule,
    bar: &ProgressBar,
) -> Result<Vec<AccountId>, BenchError> {
    let ids: Vec<AccountId> = (0..count).map(|_| AccountId(Uuid::now_v7())).collect();
    for chunk in ids.chunks(ACCOUNT_CHUNK) {
        let news: Vec<NewAccount> = chunk
            .iter()
            .map(|id| NewAccount {
                ledger: tally_core::LedgerId::DEFAULT,
                id: Some(*id),
                code: None,
                currency: "USD".into(),
                rule,
                metadata: None,
            })
            .collect();
        store.create_accounts(&news, BENCH_ACTOR).await?;
        bar.inc(chunk.len() as u64);
    }
    Ok(ids)
}
