//! Where the ledger lives: a given PostgreSQL (`--database-url` / `DATABASE_URL`), or the
//! embedded PostgreSQL 18 in `--data-dir`, started on demand.
//!
//! A command that had to start the embedded server stops it again when it is done, so a
//! one-off command leaves nothing running; `tally pg start` starts it for good, and every
//! command then reuses it.

use crate::args::Cli;
use anyhow::{Context, Result};
use tally_engine::Engine;
use tally_pg::{EmbeddedPg, StartOutcome};
use tally_store::Store;
use tokio_postgres::NoTls;

/// The database the embedded server keeps the ledger in.
pub const LEDGER_DB: &str = "tally";
/// Connections a one-off command opens at most.
const CLI_POOL_SIZE: usize = 4;
/// Connections `tally serve` opens at most: the engine's committers plus concurrent reads.
pub const SERVER_POOL_SIZE: usize = 32;

/// An open, migrated ledger.
pub struct Database {
    pub store: Store,
    pub engine: Engine,
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

/// Starts the embedded server if needed and makes sure the ledger database exists.
pub async fn start_embedded(pg: &EmbeddedPg) -> Result<StartOutcome> {
    let outcome = pg.start().context("starting the embedded PostgreSQL")?;
    let (client, connection) = tokio_postgres::connect(&pg.connection_string("postgres"), NoTls).await?;
    tokio::spawn(connection);
    if client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&LEDGER_DB]).await?.is_none() {
        client.batch_execute(&format!("CREATE DATABASE {LEDGER_DB}")).await?;
    }
    Ok(outcome)
}

impl Database {
    pub async fn open(cli: &Cli) -> Result<Database> {
        Database::open_with_pool(cli, CLI_POOL_SIZE).await
    }

    pub async fn open_with_pool(cli: &Cli, pool_size: usize) -> Result<Database> {
        let (conninfo, embedded) = match &cli.database_url {
            Some(url) => (url.clone(), None),
            None => {
                let pg = embedded(cli)?;
                let outcome = start_embedded(&pg).await?;
                (pg.connection_string(LEDGER_DB), Some((pg, outcome)))
            }
        };
        let store = Store::connect(&conninfo, pool_size)?;
        let migrations = store.migrate().await.context("migrating the ledger database")?;
        let role: String = store.client().await?.query_one("SELECT session_user::text", &[]).await?.get(0);
        Ok(Database { engine: Engine::new(store.clone()), store, actor: format!("cli:{role}"), migrations, embedded })
    }

    /// Stops the embedded server if this command started it.
    pub fn close(self) -> Result<()> {
        drop(self.engine);
        drop(self.store);
        if let Some((pg, StartOutcome::Started)) = self.embedded {
            pg.stop().context("stopping the embedded PostgreSQL")?;
        }
        Ok(())
    }
}
