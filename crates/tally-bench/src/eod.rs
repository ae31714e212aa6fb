//! `tally bench-eod`: the end-of-day run on a generated ledger of many transfers a day.
//!
//! The ledger is generated through the posting engine (`generate`), then the days are
//! reconciled in order, each timed step by step: the cost of a day should follow its own
//! transfers, not the history before it.

use crate::{BENCH_ACTOR, BenchError, Database, generate};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tally_recon::Recon;
use tally_store::Store;

/// The database the embedded server generates the ledger in.
pub const EOD_BENCH_DB: &str = "tally_bench_eod";
/// Bounds on what can be asked for.
pub const ACCOUNTS_MAX: i64 = 10_000_000;
pub const TRANSFERS_PER_DAY_MAX: i64 = 50_000_000;
pub const DAYS_MAX: usize = 10;

/// What to run: the flags of `tally bench-eod`.
#[derive(Debug, Clone)]
pub struct EodConfig {
    /// Accounts of the generated ledger.
    pub accounts: i64,
    /// Transfers on each generated day, oldest first; the days end with the newest day that may
    /// be closed.
    pub day_sizes: Vec<i64>,
    /// Reconcile the ledger an earlier run generated (reopening its days) instead of generating
    /// a new one.
    pub reuse: bool,
}

impl EodConfig {
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.day_sizes.is_empty()
            || self.day_sizes.len() > DAYS_MAX
            || self.day_sizes.iter().any(|s| !(0..=TRANSFERS_PER_DAY_MAX).contains(s))
        {
            return Err(BenchError::Invalid(format!(
                "--day-sizes: 1 to {DAYS_MAX} days of 0 to {TRANSFERS_PER_DAY_MAX} transfers each"
            )));
        }
        if !(2..=ACCOUNTS_MAX).contains(&self.accounts) {
            return Err(BenchError::Invalid(format!("--accounts must be 2 to {ACCOUNTS_MAX}")));
        }
        Ok(())
    }
}

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

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(header.iter().copied());
    table
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

/// Runs `tally bench-eod` in `database` (on the embedded server: the database
/// `tally_bench_eod`, recreated unless `reuse`; the server is left running, so that a `--reuse`
/// run after it finds it up).
pub async fn run_eod(database: &Database, config: &EodConfig) -> Result<EodBenchReport, BenchError> {
    config.validate()?;
    let (conninfo, _started) = database.prepare(EOD_BENCH_DB, !config.reuse).await?;
    let store = Store::connect(&conninfo, 4)?;
    store.migrate().await?;
    let recon = Recon::new(&store, tally_recon::POOL_SIZE_MIN);
    let today = tally_recon::days::last_closable(&recon).await?;
    let first = today - time::Duration::days(i64::try_from(config.day_sizes.len()).expect("few days") - 1);
    let started = Instant::now();
    if store.account_count().await? == 0 {
        generate::ledger(&store, &conninfo, config.accounts, first, &config.day_sizes).await?;
    } else if !config.reuse {
        return Err(BenchError::DatabaseNotEmpty);
    } else {
        // Reopen the generated days, so that every run closes them again. Only ever done to the
        // benchmark's own database.
        tally_recon::days::reopen_all_days(&recon).await?;
    }
    let generate_seconds = started.elapsed().as_secs_f64();

    let mut days = Vec::new();
    let mut history_before = 0;
    for (offset, size) in config.day_sizes.iter().enumerate() {
        let day = first + time::Duration::days(i64::try_from(offset).expect("few days"));
        days.push(end_of_day(&recon, day, history_before).await?);
        history_before += size;
    }
    Ok(EodBenchReport { accounts: config.accounts, generate_seconds, days })
}

/// Runs and times the end of day of `day`, exactly as `tally reconcile --date` does.
async fn end_of_day(recon: &Recon, day: time::Date, history_before: i64) -> Result<DayTiming, BenchError> {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{spinner} end of day {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(tally_recon::days::format_day(day));
    bar.enable_steady_tick(Duration::from_millis(200));
    let clock = StepClock { bar: bar.clone(), marks: Mutex::new(Vec::new()) };
    let start = Instant::now();
    let report = tally_recon::eod::run_end_of_day(recon, day, BENCH_ACTOR, &clock).await?;
    let end = Instant::now();
    bar.finish_and_clear();
    let marks = clock.marks.into_inner().expect("marks lock");
    let mut steps: Vec<(String, f64)> = Vec::new();
    let mut previous = ("starting (settings, run row)".to_owned(), start);
    for (what, at) in marks.into_iter().chain(std::iter::once(("storing the report".to_owned(), end))) {
        steps.push((previous.0.clone(), at.duration_since(previous.1).as_secs_f64()));
        previous = (what, at);
    }
    Ok(DayTiming {
        day: report.day.clone(),
        transfers: report.transfers,
        history_before,
        accounts_touched: report.accounts_touched,
        status: report.status.as_str().to_owned(),
        findings: report.checks.iter().map(|c| c.findings).sum(),
        seconds: end.duration_since(start).as_secs_f64(),
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_out_of_bounds_are_refused() {
        let config = EodConfig { accounts: 1_000, day_sizes: vec![100, 0, 5], reuse: false };
        assert!(config.validate().is_ok());
        let bad = [
            EodConfig { day_sizes: vec![], ..config.clone() },
            EodConfig { day_sizes: vec![1; DAYS_MAX + 1], ..config.clone() },
            EodConfig { day_sizes: vec![-1], ..config.clone() },
            EodConfig { day_sizes: vec![TRANSFERS_PER_DAY_MAX + 1], ..config.clone() },
            EodConfig { accounts: 1, ..config.clone() },
            EodConfig { accounts: ACCOUNTS_MAX + 1, ..config.clone() },
        ];
        for config in bad {
            assert_eq!(config.validate().expect_err("refused").code(), "bench_settings_invalid", "{config:?}");
        }
    }
}
