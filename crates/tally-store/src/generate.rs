//! A generated ledger for benchmarks (`tally bench-eod`), written by SQL inside PostgreSQL: a
//! million accounts and ten million transfers a day take minutes through any client.
//!
//! Accounts, then per day journal rows spread evenly over the day with time-ordered ids in
//! batches of `BATCH_ROWS` (as the engine writes them), one event per transfer and one audit
//! row per batch, then account totals equal to the journal. For a benchmark's own, empty
//! database only: it bypasses the engine, and while it runs it drops the per-account history
//! indexes (rebuilt at the end) and turns the account check trigger off.

use crate::{Store, StoreError};
use std::time::SystemTime;

/// Journal rows per generating statement.
pub const ROWS_PER_STATEMENT: i64 = 1_000_000;
/// Transfers per generated batch (one audit row each).
pub const BATCH_ROWS: i64 = 8_000;

/// One day of the generated ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedDay {
    /// What progress messages call the day (`2026-03-10`).
    pub label: String,
    /// The day's bounds, `[starts_at, ends_at)`: its transfers are spread evenly over them.
    pub starts_at: SystemTime,
    pub ends_at: SystemTime,
    pub transfers: i64,
}

/// Where the generator is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerateProgress<'a> {
    /// A new stage begins (`opening accounts`, `journal of 2026-03-10`, ...).
    Stage(&'a str),
    /// This many more accounts or journal rows were written.
    Rows(u64),
}

impl Store {
    /// Generates a ledger of `accounts` USD accounts (unrestricted) and `days` of transfers
    /// between uniformly random distinct accounts, on an empty database.
    pub async fn generate_bench_ledger(
        &self,
        accounts: i64,
        days: &[GeneratedDay],
        progress: &(dyn Fn(GenerateProgress<'_>) + Sync),
    ) -> Result<(), StoreError> {
        assert!(accounts >= 2, "transfers need two distinct accounts");
        assert!(days.iter().all(|d| d.transfers >= 0), "a day holds no negative number of transfers");
        let client = self.client().await?;
        progress(GenerateProgress::Stage("opening accounts"));
        client.batch_execute("CREATE TABLE bench_accounts (i int8 PRIMARY KEY, id uuid NOT NULL)").await?;
        client
            .execute(
                "INSERT INTO bench_accounts SELECT i, uuid_generate_v7_like FROM (
                     SELECT i, ('1' || lpad(to_hex(i), 31, '0'))::uuid AS uuid_generate_v7_like
                     FROM generate_series(0, $1::int8 - 1) i) a",
                &[&accounts],
            )
            .await?;
        client
            .batch_execute(
                "INSERT INTO accounts (id, currency, unrestricted, created_at, updated_at)
                 SELECT id, 'USD', true, now(), now() FROM bench_accounts ORDER BY id",
            )
            .await?;
        progress(GenerateProgress::Rows(u64::try_from(accounts).expect("positive")));
        // Bulk load: the per-account history indexes are built once at the end (sorting beats a
        // random insert per row), and the account check trigger is off (every account exists).
        client
            .batch_execute(
                "DROP INDEX transfers_debit_history, transfers_credit_history;
                 ALTER TABLE transfers DISABLE TRIGGER transfers_accounts_exist;",
            )
            .await?;
        let mut row = 0_i64;
        for day in days {
            let size = day.transfers;
            let length = day.ends_at.duration_since(day.starts_at).expect("days end after they start");
            let micros_per_row = (length.as_micros() as f64 / size.max(1) as f64).max(0.0);
            progress(GenerateProgress::Stage(&format!("journal of {}", day.label)));
            let day_first = row;
            let mut done = 0;
            while done < size {
                let count = ROWS_PER_STATEMENT.min(size - done);
                let (lo, hi) = (row + done, row + done + count - 1);
                // Rows g of the day: time-ordered ids, an even spread over the day, uniformly
                // random distinct accounts (hashint8 is PostgreSQL's own integer hash).
                client
                    .execute(
                        "INSERT INTO transfers (id, kind, status, debit_account_id, credit_account_id, amount, currency, actor,
                                                created_at, completed_at, batch_id)
                         SELECT lpad(to_hex(g), 32, '0')::uuid, 'posted', 'posted', d.id, c.id, 1 + abs(hashint8(g)::int8) % 100000, 'USD', 'bench',
                                $4::timestamptz + make_interval(secs => (g - $3::int8) * $5::float8 / 1e6), $4::timestamptz + make_interval(secs => (g - $3::int8) * $5::float8 / 1e6),
                                ('2' || lpad(to_hex(g / $6), 31, '0'))::uuid
                         FROM generate_series($1::int8, $2::int8) g
                         JOIN bench_accounts d ON d.i = abs(hashint8(g)::int8) % $7
                         JOIN bench_accounts c ON c.i = (abs(hashint8(g)::int8) % $7 + 1 + abs(hashint8(-g)::int8) % ($7 - 1)) % $7",
                        &[&lo, &hi, &day_first, &day.starts_at, &micros_per_row, &BATCH_ROWS, &accounts],
                    )
                    .await?;
                done += count;
                progress(GenerateProgress::Rows(u64::try_from(count).expect("positive")));
            }
            progress(GenerateProgress::Stage(&format!("events and audit of {}", day.label)));
            client
                .execute(
                    "WITH base AS (SELECT last_seq FROM event_sequence)
                     INSERT INTO events (seq, at, type, entity_id)
                     SELECT base.last_seq + row_number() OVER (ORDER BY t.seq), t.created_at, 'transfer.posted', t.id::text
                     FROM transfers t, base WHERE t.created_at >= $1 AND t.created_at < $2",
                    &[&day.starts_at, &day.ends_at],
                )
                .await?;
            client
                .execute("UPDATE event_sequence SET last_seq = (SELECT coalesce(max(seq), 0) FROM events)", &[])
                .await?;
            client
                .execute(
                    "INSERT INTO audit_log (at, actor, action, entity_type, entity_id, after)
                     SELECT min(created_at), 'bench', 'transfer.batch', 'batch', batch_id::text,
                            jsonb_build_object('applied', count(*), 'rejected', 0, 'resolved', 0, 'actors', jsonb_build_array('bench'))
                     FROM transfers WHERE created_at >= $1 AND created_at < $2 GROUP BY batch_id",
                    &[&day.starts_at, &day.ends_at],
                )
                .await?;
            row += size;
        }
        progress(GenerateProgress::Stage("history indexes"));
        client
            .batch_execute(
                "ALTER TABLE transfers ENABLE TRIGGER transfers_accounts_exist;
                 SET maintenance_work_mem = '1GB';
                 CREATE INDEX transfers_debit_history ON transfers (debit_account_id, seq);
                 CREATE INDEX transfers_credit_history ON transfers (credit_account_id, seq);
                 RESET maintenance_work_mem;",
            )
            .await?;
        progress(GenerateProgress::Stage("account totals"));
        client
            .batch_execute(
                "UPDATE accounts a SET debits_posted = coalesce(d.amount, 0), credits_posted = coalesce(c.amount, 0), version = 2
                 FROM bench_accounts b
                 LEFT JOIN (SELECT debit_account_id AS id, sum(amount) AS amount FROM transfers GROUP BY 1) d ON d.id = b.id
                 LEFT JOIN (SELECT credit_account_id AS id, sum(amount) AS amount FROM transfers GROUP BY 1) c ON c.id = b.id
                 WHERE a.id = b.id;
                 DROP TABLE bench_accounts;",
            )
            .await?;
        progress(GenerateProgress::Stage("vacuum analyze"));
        client.batch_execute("VACUUM (ANALYZE) accounts, transfers, events, audit_log").await?;
        Ok(())
    }
}
