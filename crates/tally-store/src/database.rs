//! The database server and this session, as far as Tally needs them: creating the ledger
//! database, the role Tally logged in as, and the figures benchmarks read (the server process,
//! the WAL position, settings).

use crate::{CONNECT_TIMEOUT, Store, StoreError};
use std::str::FromStr;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

/// The longest database name PostgreSQL keeps (NAMEDATALEN - 1).
pub const DATABASE_NAME_LEN_MAX: usize = 63;

/// Checks a database name that will be written into SQL text (an identifier cannot be a bind
/// parameter): 1 to 63 lower-case ASCII letters, digits and `_`, not starting with a digit.
fn validate_database_name(name: &str) -> Result<(), StoreError> {
    let valid = (1..=DATABASE_NAME_LEN_MAX).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !valid {
        return Err(StoreError::Invalid(format!(
            "a database name is 1 to {DATABASE_NAME_LEN_MAX} lower-case letters, digits or _, not starting with a digit"
        )));
    }
    Ok(())
}

/// Creates the database `name` on the server `admin_conninfo` connects to (a role that may
/// create databases, on a database that exists, such as `postgres`), unless it exists. A
/// database created meanwhile by someone else counts as existing.
pub async fn create_database_if_missing(admin_conninfo: &str, name: &str) -> Result<(), StoreError> {
    validate_database_name(name)?;
    let mut config = tokio_postgres::Config::from_str(admin_conninfo)?;
    config.application_name("tally").connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = config.connect(NoTls).await?;
    let connection = tokio::spawn(connection);
    let exists = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await?.is_some();
    if !exists {
        // The name was checked above: letters, digits and underscores only.
        match client.batch_execute(&format!("CREATE DATABASE {name}")).await {
            Err(error) if error.code() != Some(&SqlState::DUPLICATE_DATABASE) => return Err(error.into()),
            _ => {}
        }
    }
    drop(client);
    let _ = connection.await;
    Ok(())
}

impl Store {
    /// The PostgreSQL role this store logged in as.
    pub async fn session_user(&self) -> Result<String, StoreError> {
        Ok(self.client().await?.query_one("SELECT session_user::text", &[]).await?.get(0))
    }

    /// The process id of one of this store's server processes (its connections are children of
    /// the same postmaster, which is how a benchmark finds the server to measure).
    pub async fn backend_pid(&self) -> Result<i32, StoreError> {
        Ok(self.client().await?.query_one("SELECT pg_backend_pid()", &[]).await?.get(0))
    }

    /// The server's current WAL write position, as PostgreSQL prints it (`0/1A2B3C4`).
    pub async fn wal_lsn(&self) -> Result<String, StoreError> {
        Ok(self.client().await?.query_one("SELECT pg_current_wal_lsn()::text", &[]).await?.get(0))
    }

    /// Bytes of WAL between two positions `wal_lsn` returned.
    pub async fn wal_bytes_between(&self, before: &str, after: &str) -> Result<f64, StoreError> {
        let row = self
            .client()
            .await?
            .query_one("SELECT pg_wal_lsn_diff($2::text::pg_lsn, $1::text::pg_lsn)::float8", &[&before, &after])
            .await?;
        Ok(row.get(0))
    }

    /// The value of a server setting (`current_setting`), e.g. `fsync` or `shared_buffers`.
    pub async fn server_setting(&self, name: &str) -> Result<String, StoreError> {
        Ok(self.client().await?.query_one("SELECT current_setting($1)", &[&name]).await?.get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::validate_database_name;

    #[test]
    fn database_names_are_plain_identifiers() {
        for good in ["tally", "tally_bench", "t", "tally_tpl_0123abcd", &"a".repeat(63)] {
            assert!(validate_database_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Tally", "1tally", "tally-bench", "tally; DROP DATABASE x", "tally bench", "é", &"a".repeat(64)]
        {
            assert_eq!(validate_database_name(bad).unwrap_err().code(), "invalid_input", "{bad:?}");
        }
    }
}
