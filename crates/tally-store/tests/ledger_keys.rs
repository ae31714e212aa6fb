//! The schema's distribution rules, asserted against PostgreSQL's catalog on a freshly migrated
//! database (issue 14, docs/scaling.md): a later migration cannot break them silently.
//!
//! 1. Every table is classified: ledger-scoped (its rows belong to one ledger, and it would be
//!    distributed by `ledger_id`) or global (small, or one row per deployment-wide thing: a
//!    reference table, or local to the coordinator). A new table fails this test until it is
//!    classified here, with the reason in docs/scaling.md.
//! 2. A ledger-scoped table has `ledger_id integer NOT NULL`, and its primary key and every
//!    unique index include `ledger_id`: no uniqueness check crosses ledgers.
//! 3. A foreign key between two ledger-scoped tables includes `ledger_id` on both sides, in the
//!    same position: no foreign key crosses ledgers. A ledger-scoped table may refer to a global
//!    table (a distributed table may refer to a reference table); a global table never refers to
//!    a ledger-scoped one.

use std::collections::{BTreeMap, BTreeSet};

/// Tables whose rows each belong to one ledger.
const LEDGER_SCOPED: &[&str] =
    &["accounts", "transfers", "balance_snapshots", "ledger_day_totals", "statements", "statement_entries"];

/// Tables of the whole deployment. The reasons are in docs/scaling.md, "Reference and
/// coordinator tables".
const GLOBAL: &[&str] = &[
    "ledgers",
    "currencies",
    "api_keys",
    "idempotency_keys",
    "tally_migrations",
    // The outbox: one gap-free sequence for the deployment (events carry `ledger_id`).
    "events",
    "event_sequence",
    "audit_log",
    "ledger_day_settings",
    "ledger_days",
    "reconciliation_runs",
    "statement_files",
    "relay_cursors",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_attempts",
];

#[tokio::test]
async fn every_table_is_classified_and_ledger_scoped_keys_never_cross_ledgers() {
    let db = tally_testkit::fresh_database().await;
    let client = db.connect().await;
    let found = violations(&client).await;
    assert!(found.is_empty(), "the schema breaks the distribution rules:\n{}", found.join("\n"));
}

/// The rules bite: a unique key without the ledger, a foreign key across ledgers and an
/// unclassified table are each found.
#[tokio::test]
async fn keys_that_cross_ledgers_and_unclassified_tables_are_found() {
    let db = tally_testkit::fresh_database().await;
    let client = db.connect().await;
    client.batch_execute("CREATE UNIQUE INDEX accounts_id_alone ON accounts (id)").await.unwrap();
    client
        .batch_execute(
            "ALTER TABLE statements ADD CONSTRAINT statements_any_account FOREIGN KEY (account_id) REFERENCES accounts (id);
             CREATE TABLE holds_by_account (account_id uuid, ledger_id integer NOT NULL, PRIMARY KEY (account_id, ledger_id));",
        )
        .await
        .unwrap();
    let found = violations(&client).await;
    let expected = [
        "tables neither ledger-scoped nor global: [\"holds_by_account\"]",
        "unique index accounts_id_alone of accounts must include ledger_id",
        "foreign key statements_any_account (statements -> accounts) must match ledger_id to ledger_id: [\"account_id\"] -> [\"id\"]",
    ];
    assert_eq!(found, expected);
}

/// Every way the schema breaks the rules, as messages.
async fn violations(client: &tokio_postgres::Client) -> Vec<String> {
    let mut found = Vec::new();

    // 1. Classification.
    let tables: BTreeSet<String> = client
        .query(
            "SELECT relname::text FROM pg_class WHERE relkind IN ('r', 'p') AND relnamespace = 'public'::regnamespace",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let classified: BTreeSet<String> = LEDGER_SCOPED.iter().chain(GLOBAL).map(|t| t.to_string()).collect();
    let unclassified: Vec<&String> = tables.difference(&classified).collect();
    if !unclassified.is_empty() {
        found.push(format!("tables neither ledger-scoped nor global: {unclassified:?}"));
    }
    let missing: Vec<&String> = classified.difference(&tables).collect();
    if !missing.is_empty() {
        found.push(format!("classified tables that do not exist: {missing:?}"));
    }

    // 2. ledger_id, and unique indexes.
    for table in LEDGER_SCOPED {
        let column = client
            .query_opt(
                "SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
                 WHERE attrelid = ('public.' || $1)::regclass AND attname = 'ledger_id' AND NOT attisdropped",
                &[table],
            )
            .await
            .unwrap();
        let (kind, not_null): (String, bool) = column.map(|row| (row.get(0), row.get(1))).unwrap_or_default();
        if (kind.as_str(), not_null) != ("integer", true) {
            found.push(format!("{table}.ledger_id must be integer NOT NULL"));
        }
        let unique = client
            .query(
                "SELECT i.indexrelid::regclass::text, i.indisprimary,
                        EXISTS (SELECT 1 FROM unnest(i.indkey) k JOIN pg_attribute a
                                ON a.attrelid = i.indrelid AND a.attnum = k WHERE a.attname = 'ledger_id')
                 FROM pg_index i WHERE i.indrelid = ('public.' || $1)::regclass AND i.indisunique
                 ORDER BY 1",
                &[table],
            )
            .await
            .unwrap();
        if !unique.iter().any(|row| row.get::<_, bool>(1)) {
            found.push(format!("{table} has no primary key"));
        }
        for row in &unique {
            let (index, has_ledger): (String, bool) = (row.get(0), row.get(2));
            if !has_ledger {
                found.push(format!("unique index {index} of {table} must include ledger_id"));
            }
        }
    }

    // 3. Foreign keys.
    let foreign_keys = client
        .query(
            "SELECT c.conname::text, c.conrelid::regclass::text, c.confrelid::regclass::text,
                    ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
                    ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                          JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)
             FROM pg_constraint c WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let scoped: BTreeSet<&str> = LEDGER_SCOPED.iter().copied().collect();
    let mut names = BTreeMap::new();
    for row in &foreign_keys {
        let (name, from, to): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let (from_columns, to_columns): (Vec<String>, Vec<String>) = (row.get(3), row.get(4));
        match (scoped.contains(from.as_str()), scoped.contains(to.as_str())) {
            (true, true) => {
                let position = from_columns.iter().position(|c| c == "ledger_id");
                if position.is_none() || position != to_columns.iter().position(|c| c == "ledger_id") {
                    found.push(format!(
                        "foreign key {name} ({from} -> {to}) must match ledger_id to ledger_id: {from_columns:?} -> {to_columns:?}"
                    ));
                }
            }
            (false, true) => found.push(format!("global table {from} refers to ledger-scoped {to} ({name})")),
            _ => {}
        }
        names.insert(name, (from, to));
    }
    // The ledger-scoped foreign keys the rules are about exist to be checked.
    for name in ["transfers_related", "statements_account", "statement_entries_statement"] {
        if !names.contains_key(name) {
            found.push(format!("foreign key {name} is missing"));
        }
    }
    found
}
