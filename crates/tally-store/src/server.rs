//! The PostgreSQL server around the ledger, for the tools that set a database up or measure it
//! (the CLI, the benchmarks, the load check): databases by name, server settings, the WAL
//! position, the server process behind a pooled connection, row counts, and the maintenance a
//! benchmark's own database needs. Nothing here touches money.

use crate::{CONNECT_TIMEOUT, Store, StoreError};
use std::str::FromStr;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

/// The longest database name PostgreSQL keeps (NAMEDATALEN - 1).
pub const DATABASE_NAME_LEN_MAX: usize = 63;

/// Creates the database `name` on the server `admin_conninfo` reaches (as a role that may create
/// databases), unless it exists. `name` must be a plain identifier (lower-case ASCII letters,
/// digits and `_`, not starting with a digit): identifiers cannot be bind parameters, so it is
/// checked and quoted here before it is written into the statement.
pub async fn create_database_if_missing(admin_conninfo: &str, name: &str) -> Result<(), StoreError> {
    let identifier = database_identifier(name)?;
    let client = admin_client(admin_conninfo).await?;
    if client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await?.is_some() {
        return Ok(());
    }
    match client.batch_execute(&format!("CREATE DATABASE {identifier}")).await {
        // Someone else created it between the look-up and here.
        Err(error) if error.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(()),
        other => Ok(other?),
    }
}

/// Drops the database `name` on the server `admin_conninfo` reaches, if it exists, closing
/// every session on it first (`WITH (FORCE)`). For databases a tool owns (the benchmarks' and
/// the load check's), which it recreates on every run. `name` is checked as in
/// `create_database_if_missing`.
pub async fn drop_database_if_exists(admin_conninfo: &str, name: &str) -> Result<(), StoreError> {
    let identifier = database_identifier(name)?;
    let client = admin_client(admin_conninfo).await?;
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {identifier} WITH (FORCE)")).await?;
    Ok(())
}

/// `name` quoted as an identifier, if it is a plain one.
fn database_identifier(name: &str) -> Result<String, StoreError> {
    let plain = !name.is_empty()
        && name.len() <= DATABASE_NAME_LEN_MAX
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain {
        return Err(StoreError::Invalid(format!(
            "database name {:?}: use 1 to {DATABASE_NAME_LEN_MAX} lower-case ASCII letters, digits and _",
            name.chars().take(80).collect::<String>()
        )));
    }
    Ok(format!("\"{name}\""))
}

/// A connection of its own (outside any pool) to the server's maintenance database.
async fn admin_client(conninfo: &str) -> Result<tokio_postgres::Client, StoreError> {
    let mut config = tokio_postgres::Config::from_str(conninfo)?;
    config.application_name("tally").connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "admin connection ended");
        }
    });
    Ok(client)
}

impl Store {
    /// The PostgreSQL role this store logged in as.
    pub async fn session_user(&self) -> Result<String, StoreError> {
        Ok(self.client().await?.query_one("SELECT session_user::text", &[]).await?.get(0))
    }

    /// The process id of the server process behind one pooled connection
    /// (`pg_backend_pid()`): its parent is the postmaster, which is how a benchmark on the same
    /// machine finds the server's processes to measure their CPU and memory.
    pub async fn backend_pid(&self) -> Result<i32, StoreError> {
        Ok(self.client().await?.query_one("SELECT pg_backend_pid()", &[]).await?.get(0))
    }

    /// The server's current WAL write position, as PostgreSQL prints an LSN (`16/B374D848`).
    pub async fn wal_lsn(&self) -> Result<String, StoreError> {
        Ok(self.client().await?.query_one("SELECT pg_current_wal_lsn()::text", &[]).await?.get(0))
    }

    /// How many accounts the ledger holds.
    pub async fn account_count(&self) -> Result<i64, StoreError> {
        Ok(self.client().await?.query_one("SELECT count(*) FROM accounts", &[]).await?.get(0))
    }

    /// The current values of the named server settings (`current_setting`), in the order asked.
    /// An unknown name is an error.
    pub async fn server_settings(&self, names: &[&str]) -> Result<Vec<(String, String)>, StoreError> {
        let client = self.client().await?;
        let mut settings = Vec::with_capacity(names.len());
        for name in names {
            let value: String = client.query_one("SELECT current_setting($1)", &[name]).await?.get(0);
            settings.push(((*name).to_owned(), value));
        }
        Ok(settings)
    }

    /// `VACUUM (ANALYZE)` of the ledger's large tables (accounts, journal, events, audit log):
    /// after a bulk load, so that what runs next reads the visibility map and fresh statistics
    /// instead of waiting for autovacuum.
    pub async fn vacuum_analyze(&self) -> Result<(), StoreError> {
        self.client().await?.batch_execute("VACUUM (ANALYZE) accounts, transfers, events, audit_log").await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_database_names_are_written_into_sql() {
        assert_eq!(database_identifier("tally_bench").unwrap(), "\"tally_bench\"");
        assert_eq!(database_identifier("db2").unwrap(), "\"db2\"");
        for bad in ["", "2db", "Tally", "a-b", "a\"b", "x; DROP DATABASE tally", "ä", &"a".repeat(64)] {
            let error = database_identifier(bad).unwrap_err();
            assert_eq!(error.code(), "invalid_input", "{bad:?}");
        }
        assert!(database_identifier(&"a".repeat(63)).is_ok());
    }
}
