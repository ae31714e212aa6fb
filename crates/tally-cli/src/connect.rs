//! Where the ledger lives: a given PostgreSQL (`--database-url` / `DATABASE_URL`), or the
//! embedded PostgreSQL 18 in `--data-dir`, started on demand.
//!
//! A command that had to start the embedded server stops it again when it is done, so a
//! one-off command leaves nothing running; `tally pg start` starts it for good, and every
//! command then reuses it.

use crate::args::Cli;
use anyhow::{Context, Result};
use tally_engine::{Engine, EngineConfig};
use tally_pg::{EmbeddedPg, StartOutcome};
use tally_recon::Recon;
use tally_store::Store;

/// The database the embedded server keeps the ledger in.
pub const LEDGER_DB: &str = "tally";
/// Connections a one-off command opens at most.
const CLI_POOL_SIZE: usize = 4;
/// Connections `tally serve` opens at most: the engine's committers plus concurrent reads.
pub const SERVER_POOL_SIZE: usize = 32;
/// Connections reconciliation opens at most in a one-off command (`tally serve` has its own).
const CLI_RECON_POOL_SIZE: usize = tally_recon::POOL_SIZE_MIN;

/// An open, migrated ledger.
/// How long `Database::close` lets the command's connections close before stopping the server
/// anyway.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Database {
    pub store: Store,
    pub engine: Engine,
    /// Reconciliation, on its own connections to the same database.
    pub recon: Recon,
    /// The authenticated caller recorded in the audit log: the PostgreSQL role we logged in as.
    pub actor: String,
    /// What opening the ledger migrated (`tally migrate` reports it).
    pub migrations: tally_store::MigrationReport,
    embedded: Option<(EmbeddedPg, StartOutcome)>,
}

/// The embedded server for `--data-dir` (not started).
pub fn embedded(cli: &Cli) -> Result<EmbeddedPg> {
    let bins = tally_pg::find_binaries()?;
    Ok(EmbeddedPg::new(cli.data_dir.join("pg"), bins))
}

/// Starts the embedded server if needed and makes sure the ledger database exists. A standby
/// starts as a standby: its ledger database is its primary's, as replication brings it.
pub async fn start_embedded(pg: &EmbeddedPg) -> Result<StartOutcome> {
    let outcome = pg.start().context("starting the embedded PostgreSQL")?;
    if !pg.is_standby() {
        tally_store::create_database_if_missing(&pg.connection_string("postgres"), LEDGER_DB)
            .await
            .context("creating the ledger database")?;
    }
    Ok(outcome)
}

impl Database {
    pub async fn open(cli: &Cli) -> Result<Database> {
        Database::open_with(cli, CLI_POOL_SIZE, EngineConfig::default()).await
    }

    pub async fn open_with(cli: &Cli, pool_size: usize, engine: EngineConfig) -> Result<Database> {
        let (conninfo, embedded) = match &cli.database_url {
            Some(url) => (url.clone(), None),
            None => {
                let pg = embedded(cli)?;
                anyhow::ensure!(
                    !pg.is_standby(),
                    "the embedded PostgreSQL in {} is a standby (read-only, following its primary): use the primary's \
                     --data-dir, or promote this one with `tally pg promote`",
                    pg.data_dir().display()
                );
                let outcome = start_embedded(&pg).await?;
                (pg.connection_string(LEDGER_DB), Some((pg, outcome)))
            }
        };
        let store = Store::connect(&conninfo, pool_size)?;
        let migrations = store.migrate().await.context("migrating the ledger database")?;
        let role = store.session_user().await?;
        Ok(Database {
            engine: Engine::start(store.clone(), engine),
            recon: Recon::new(&store, CLI_RECON_POOL_SIZE),
            store,
            actor: format!("cli:{role}"),
            migrations,
            embedded,
        })
    }

    /// Stops the embedded server if this command started it, after closing this command's own
    /// connections, so that none is cut by the server's shutdown.
    pub async fn close(self) -> Result<()> {
        self.engine.shutdown().await;
        self.recon.close();
        self.store.close();
        drop((self.engine, self.recon, self.store));
        if let Some((pg, StartOutcome::Started)) = self.embedded {
            pg.stop_when_clients_leave(CLOSE_WAIT).context("stopping the embedded PostgreSQL")?;
        }
        Ok(())
    }
}
