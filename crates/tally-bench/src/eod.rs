//! `tally bench-eod`: the end-of-day run on a generated ledger of many transfers a day.
//!
//! The ledger is written by SQL inside PostgreSQL (a million accounts, ten million transfers a
//! day take minutes through any client): accounts, journal rows spread evenly over each day with
//! time-ordered ids in batches of 8,000 (as the engine writes them), one event per transfer, one
//! audit row per batch, and account totals equal to the journal. Then the days are reconciled in
//! order, each timed step by step: the cost of a day should follow its own transfers, not the
//! history before it.

use crate::args::BenchEodArgs;
use crate::connect;
use crate::render::table;
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tally_store::Store;

/// The database the embedded server generates the ledger in.
const BENCH_DB: &str = "tally_bench_eod";
/// Journal rows per generating statement.
const ROWS_PER_STATEMENT: i64 = 1_000_000;
/// Transfers per generated batch (one audit row each).
const BATCH_ROWS: i64 = 8_000;
/// Bounds on what can be asked for.
pub const ACCOUNTS_MAX: i64 = 10_000_000;
pub const TRANSFERS_PER_DAY_MAX: i64 = 50_000_000;
pub const DAYS_MAX: usize = 10;

#[derive(Debug, Serialize)]
pub struct EodBenchReport {
    pub accounts: i64,
    pub generate_seconds: f64,
    pub days: Vec<DayTiming>,
}

#[derive(Debug, Serialize)]
pub struct DayTiming {
    pub day: String,
    pub transfers: i64,
    pub history_before: i64,
    pub accounts_touched: i64,
    pub status: String,
    pub findings: i64,
    pub seconds: f64,
    /// Each step of the run and the seconds until the next step started. The checks run on
    /// `tally_recon::eod::CHECK_LANES` connections at once, so while they run a step's figure is
    /// not its own duration; the sum over the steps is the run's.
    pub steps: Vec<(String, f64)>,
}

impl EodBenchReport {
    pub fn table(&self) -> String {
        let mut t = table(&["day", "transfers", "history before", "accounts touched", "status", "findings", "seconds"]);
        for d in &self.days {
            t.add_row(vec![
                d.day.clone(),
                d.transfers.to_string(),
                d.history_before.to_string(),
                d.accounts_touched.to_string(),
                d.status.clone(),
                d.findings.to_string(),
                format!("{:.1}", d.seconds),
            ]);
        }
        let mut steps = table(&["day", "step", "seconds until the next step started"]);
        for d in &self.days {
            for (step, seconds) in &d.steps {
                steps.add_row(vec![d.day.clone(), step.clone(), format!("{seconds:.2}")]);
            }
        }
        format!("{} accounts, generated in {:.0} s\n{t}\n{steps}", self.accounts, self.generate_seconds)
    }
}

/// Records when each step starts, to time the steps of a run.
struct StepClock {
    bar: ProgressBar,
    marks: Mutex<Vec<(String, Instant)>>,
}

impl tally_recon::Progress for StepClock {
    fn add_steps(&self, steps: usize) {
        self.bar.inc_length(steps as u64);
    }
    fn step(&self, what: &str) {
        self.bar.inc(1);
        self.bar.set_message(what.to_owned());
        self.marks.lock().expect("marks lock").push((what.to_owned(), Instant::now()));
    }
}

pub async fn run(cli: &crate::args::Cli, args: &BenchEodArgs) -> Result<EodBenchReport> {
    let sizes: Vec<i64> = args
        .day_sizes
        .split(',')
        .map(|s| s.trim().replace('_', "").parse::<i64>().context("--day-sizes: comma-separated numbers"))
        .collect::<Result<_>>()?;
    if sizes.is_empty() || sizes.len() > DAYS_MAX || sizes.iter().any(|s| !(0..=TRANSFERS_PER_DAY_MAX).contains(s)) {
        bail!("--day-sizes: 1 to {DAYS_MAX} days of 0 to {TRANSFERS_PER_DAY_MAX} transfers each");
    }
    if !(2..=ACCOUNTS_MAX).contains(&args.accounts) {
        bail!("--accounts must be 2 to {ACCOUNTS_MAX}");
    }
    let conninfo = match &cli.database_url {
        Some(url) => url.clone(),
        None => {
            let pg = connect::embedded(cli)?;
            connect::start_embedded(&pg).await?;
            if !args.reuse {
                let (client, connection) =
                    tokio_postgres::connect(&pg.connection_string("postgres"), tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute(&format!("DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")).await?;
                client.batch_execute(&format!("CREATE DATABASE {BENCH_DB}")).await?;
            }
            pg.connection_string(BENCH_DB)
        }
    };
    let store = Store::connect(&conninfo, 4)?;
    store.migrate().await?;
    let today = tally_recon::days::last_closable(&store).await?;
    let first = today - time::Duration::days(i64::try_from(sizes.len()).expect("few days") - 1);
    let started = Instant::now();
    let generated: i64 = store.client().await?.query_one("SELECT count(*) FROM accounts", &[]).await?.get(0);
    if generated == 0 {
        generate(&store, args.accounts, first, &sizes).await?;
    } else if !args.reuse {
        bail!("the benchmark database is not empty");
    } else {
        // Reopen the generated days, so that every run closes them again. Only ever done to the
        // benchmark's own database.
        let client = store.client().await?;
        client
            .batch_execute(
                "DELETE FROM balance_snapshots; DELETE FROM ledger_day_totals; DELETE FROM ledger_days;
                 DELETE FROM reconciliation_runs;",
            )
            .await?;
        client.batch_execute("VACUUM balance_snapshots, ledger_day_totals, ledger_days").await?;
    }
    let generate_seconds = started.elapsed().as_secs_f64();

    let mut days = Vec::new();
    let mut history_before = 0;
    for (offset, size) in sizes.iter().enumerate() {
        let day = first + time::Duration::days(i64::try_from(offset).expect("few days"));
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{spinner} end of day {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(tally_recon::days::format_day(day));
        bar.enable_steady_tick(Duration::from_millis(200));
        let clock = StepClock { bar: bar.clone(), marks: Mutex::new(Vec::new()) };
        let start = Instant::now();
        let report = tally_recon::eod::run_end_of_day(&store, day, "bench", &clock).await?;
        let end = Instant::now();
        bar.finish_and_clear();
        let marks = clock.marks.into_inner().expect("marks lock");
        let mut steps: Vec<(String, f64)> = Vec::new();
        let mut previous = ("starting (settings, run row)".to_owned(), start);
        for (what, at) in marks.into_iter().chain(std::iter::once(("storing the report".to_owned(), end))) {
            steps.push((previous.0.clone(), at.duration_since(previous.1).as_secs_f64()));
            previous = (what, at);
        }
        days.push(DayTiming {
            day: report.day.clone(),
            transfers: report.transfers,
            history_before,
            accounts_touched: report.accounts_touched,
            status: report.status.as_str().to_owned(),
            findings: report.checks.iter().map(|c| c.findings).sum(),
            seconds: end.duration_since(start).as_secs_f64(),
            steps,
        });
        history_before += size;
    }
    Ok(EodBenchReport { accounts: args.accounts, generate_seconds, days })
}

/// Writes the ledger: accounts, then each day's journal rows, events and batch audit rows, then
/// account totals equal to the journal.
async fn generate(store: &Store, accounts: i64, first: time::Date, sizes: &[i64]) -> Result<()> {
    let total: i64 = sizes.iter().sum();
    let bar = ProgressBar::new(u64::try_from(total + accounts).expect("positive")).with_style(
        ProgressStyle::with_template("{msg:>28} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let client = store.client().await?;
    bar.set_message("opening accounts");
    client
        .batch_execute(&format!(
            "CREATE TABLE bench_accounts (i int8 PRIMARY KEY, id uuid NOT NULL);
             INSERT INTO bench_accounts SELECT i, uuid_generate_v7_like FROM (
                 SELECT i, ('1' || lpad(to_hex(i), 31, '0'))::uuid AS uuid_generate_v7_like FROM generate_series(0, {accounts} - 1) i) a;
             INSERT INTO accounts (id, currency, unrestricted, created_at, updated_at)
                 SELECT id, 'USD', true, now(), now() FROM bench_accounts ORDER BY id;"
        ))
        .await?;
    bar.inc(u64::try_from(accounts).expect("positive"));
    // Bulk load: the per-account history indexes are built once at the end (sorting beats a
    // random insert per row), and the account check trigger is off (every account exists).
    client
        .batch_execute(
            "DROP INDEX transfers_debit_history, transfers_credit_history;
             ALTER TABLE transfers DISABLE TRIGGER transfers_accounts_exist;",
        )
        .await?;
    let mut row = 0_i64;
    for (offset, size) in sizes.iter().enumerate() {
        let day = first + time::Duration::days(i64::try_from(offset).expect("few days"));
        let bounds = tally_recon::days::bounds(&client, day).await?;
        let length = bounds.ends_at.duration_since(bounds.starts_at).expect("days end after they start");
        let micros_per_row = (length.as_micros() as f64 / (*size).max(1) as f64).max(0.0);
        bar.set_message(format!("journal of {}", tally_recon::days::format_day(day)));
        let day_first = row;
        let mut done = 0;
        while done < *size {
            let count = ROWS_PER_STATEMENT.min(size - done);
            let (lo, hi) = (row + done, row + done + count - 1);
            // Rows g of the day: time-ordered ids, an even spread over the day, uniformly random
            // distinct accounts (hashint8 is PostgreSQL's own integer hash).
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
                    &[&lo, &hi, &day_first, &bounds.starts_at, &micros_per_row, &BATCH_ROWS, &accounts],
                )
                .await?;
            done += count;
            bar.inc(u64::try_from(count).expect("positive"));
        }
        bar.set_message(format!("events and audit of {}", tally_recon::days::format_day(day)));
        client
            .execute(
                "WITH base AS (SELECT last_seq FROM event_sequence)
                 INSERT INTO events (seq, at, type, entity_id)
                 SELECT base.last_seq + row_number() OVER (ORDER BY t.seq), t.created_at, 'transfer.posted', t.id::text
                 FROM transfers t, base WHERE t.created_at >= $1 AND t.created_at < $2",
                &[&bounds.starts_at, &bounds.ends_at],
            )
            .await?;
        client.execute("UPDATE event_sequence SET last_seq = (SELECT coalesce(max(seq), 0) FROM events)", &[]).await?;
        client
            .execute(
                "INSERT INTO audit_log (at, actor, action, entity_type, entity_id, after)
                 SELECT min(created_at), 'bench', 'transfer.batch', 'batch', batch_id::text,
                        jsonb_build_object('applied', count(*), 'rejected', 0, 'resolved', 0, 'actors', jsonb_build_array('bench'))
                 FROM transfers WHERE created_at >= $1 AND created_at < $2 GROUP BY batch_id",
                &[&bounds.starts_at, &bounds.ends_at],
            )
            .await?;
        row += size;
    }
    bar.set_message("history indexes");
    client
        .batch_execute(
            "ALTER TABLE transfers ENABLE TRIGGER transfers_accounts_exist;
             SET maintenance_work_mem = '1GB';
             CREATE INDEX transfers_debit_history ON transfers (debit_account_id, seq);
             CREATE INDEX transfers_credit_history ON transfers (credit_account_id, seq);",
        )
        .await?;
    bar.set_message("account totals");
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
    bar.set_message("vacuum analyze");
    client.batch_execute("VACUUM (ANALYZE) accounts, transfers, events, audit_log").await?;
    bar.finish_and_clear();
    Ok(())
}
