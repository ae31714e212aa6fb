//! Versioned migrations, embedded in the binary and applied in order, once.
//!
//! All pending migrations run in one SQL transaction under an advisory lock, so concurrent
//! starters (several Tally processes, parallel tests) apply each exactly once and a failed
//! migration leaves nothing behind. An applied migration whose text later changed is an error:
//! history is never rewritten. The ISO 4217 currency list from `tally_core` is upserted last.
//!
//! [`migrate`] brings a database to the newest version; [`migrate_through`] stops at an older
//! one, for upgrade tests and tools that need a database as an earlier release left it.

use crate::StoreError;
use tally_core::currency::ISO_CURRENCIES;
use tokio_postgres::Client;

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "ledger", sql: include_str!("../migrations/0001_ledger.sql") },
    Migration { version: 2, name: "compat", sql: include_str!("../migrations/0002_compat.sql") },
    Migration { version: 3, name: "batch_writes", sql: include_str!("../migrations/0003_batch_writes.sql") },
    Migration {
        version: 4,
        name: "account_check_by_key_range",
        sql: include_str!("../migrations/0004_account_check_by_key_range.sql"),
    },
    Migration { version: 5, name: "api", sql: include_str!("../migrations/0005_api.sql") },
    Migration { version: 6, name: "reconciliation", sql: include_str!("../migrations/0006_reconciliation.sql") },
    Migration { version: 7, name: "one_write_rule", sql: include_str!("../migrations/0007_one_write_rule.sql") },
    Migration { version: 8, name: "lean_writes", sql: include_str!("../migrations/0008_lean_writes.sql") },
    Migration { version: 9, name: "events_at_commit", sql: include_str!("../migrations/0009_events_at_commit.sql") },
    Migration { version: 10, name: "statement_files", sql: include_str!("../migrations/0010_statement_files.sql") },
    Migration { version: 11, name: "events_out", sql: include_str!("../migrations/0011_events_out.sql") },
    Migration { version: 12, name: "ledgers", sql: include_str!("../migrations/0012_ledgers.sql") },
    Migration {
        version: 13,
        name: "events_ledger_backfill",
        sql: include_str!("../migrations/0013_events_ledger_backfill.sql"),
    },
];

/// An arbitrary, fixed key for `pg_advisory_xact_lock`: "tally" in ASCII.
const MIGRATION_LOCK_KEY: i64 = 0x74_61_6c_6c_79;

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The versions this call applied, in order (empty when the database was up to date).
    pub applied: Vec<i32>,
    /// The version the database is at now.
    pub current: i32,
}

/// The newest schema version this build knows.
pub const LATEST_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Applies every pending migration (idempotent). This is what Tally runs on start and what
/// `tally migrate` runs.
pub async fn migrate(client: &mut Client) -> Result<MigrationReport, StoreError> {
    migrate_through(client, LATEST_VERSION).await
}

/// Applies the pending migrations up to and including `version`, and no later one, under the
/// same rules as [`migrate`]: one SQL transaction under the advisory lock, applied migrations
/// checked against their text, the ISO currencies upserted. For upgrade tests and tools that
/// need a database at the schema an earlier release left (load its data, then run `migrate`);
/// Tally itself always migrates to the newest version.
///
/// Refused when `version` is not a migration of this build, and when the database is already
/// past `version`: migrations are never undone.
///
/// The currency upsert runs at every version, so it must work on the `currencies` table of
/// every version (it does since 0001: `code`, `scale` and `iso` are all it names).
pub async fn migrate_through(client: &mut Client, version: i32) -> Result<MigrationReport, StoreError> {
    if !MIGRATIONS.iter().any(|m| m.version == version) {
        return Err(StoreError::Invalid(format!(
            "there is no migration {version}: versions run from 1 to {LATEST_VERSION}"
        )));
    }
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS tally_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             checksum   text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let rows = tx.query("SELECT version, name, checksum FROM tally_migrations ORDER BY version", &[]).await?;
    for row in &rows {
        let found: i32 = row.get(0);
        let Some(migration) = MIGRATIONS.iter().find(|m| m.version == found) else {
            return Err(StoreError::SchemaTooNew { found, known: LATEST_VERSION });
        };
        if row.get::<_, String>(2) != checksum(migration.sql) {
            return Err(StoreError::MigrationChanged { version: found, name: row.get(1) });
        }
        if found > version {
            return Err(StoreError::Invalid(format!(
                "the database schema is at version {found}, past version {version}; migrations are never undone"
            )));
        }
    }
    let mut applied = Vec::new();
    let pending =
        MIGRATIONS.iter().filter(|m| m.version <= version && !rows.iter().any(|r| r.get::<_, i32>(0) == m.version));
    for migration in pending {
        tx.batch_execute(migration.sql).await?;
        tx.execute(
            "INSERT INTO tally_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&migration.version, &migration.name, &checksum(migration.sql)],
        )
        .await?;
        applied.push(migration.version);
    }
    let (codes, scales): (Vec<&str>, Vec<i16>) = ISO_CURRENCIES.iter().map(|(c, s)| (*c, i16::from(*s))).unzip();
    tx.execute(
        "INSERT INTO currencies (code, scale, iso) SELECT code, scale, true FROM unnest($1::text[], $2::int2[]) AS c(code, scale)
         ON CONFLICT (code) DO NOTHING",
        &[&codes, &scales],
    )
    .await?;
    tx.commit().await?;
    Ok(MigrationReport { applied, current: version })
}

/// FNV-1a over the migration text: stable across Rust versions, enough to notice an edit.
fn checksum(sql: &str) -> String {
    let hash = sql
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_dense_and_ordered() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, i32::try_from(index).unwrap() + 1);
            assert!(!migration.sql.trim().is_empty());
        }
        assert_eq!(LATEST_VERSION, i32::try_from(MIGRATIONS.len()).unwrap());
        assert_ne!(checksum("a"), checksum("b"));
        assert_eq!(checksum(""), "cbf29ce484222325");
    }
}
