//! Versioned migrations, embedded in the binary and applied in order, once.
//!
//! All pending migrations run in one SQL transaction under an advisory lock, so concurrent
//! starters (several Tally processes, parallel tests) apply each exactly once and a failed
//! migration leaves nothing behind. An applied migration whose text later changed is an error:
//! history is never rewritten. The ISO 4217 currency list from `tally_core` is upserted last.

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
];

/// An arbitrary, fixed key for `pg_advisory_xact_lock`: "tally" in ASCII.
const MIGRATION_LOCK_KEY: i64 = 0x74_61_6c_6c_79;

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<i32>,
    pub current: i32,
}

pub async fn migrate(client: &mut Client) -> Result<MigrationReport, StoreError> {
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
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    for row in &rows {
        let version: i32 = row.get(0);
        let Some(migration) = MIGRATIONS.iter().find(|m| m.version == version) else {
            return Err(StoreError::SchemaTooNew { found: version, known });
        };
        if row.get::<_, String>(2) != checksum(migration.sql) {
            return Err(StoreError::MigrationChanged { version, name: row.get(1) });
        }
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| !rows.iter().any(|r| r.get::<_, i32>(0) == m.version)) {
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
    Ok(MigrationReport { applied, current: known })
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
        assert_ne!(checksum("a"), checksum("b"));
        assert_eq!(checksum(""), "cbf29ce484222325");
    }
}
