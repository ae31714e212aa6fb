//! A load check for Tally: the ledger under the concurrency real deployments have, then proof
//! that it kept every promise.
//!
//! [`run`] opens hot accounts, or a bank's customers and house accounts (`bank`), on a database, starts `tally serve` processes on it (children of
//! this process, killed whenever the check ends), and drives them with HTTP clients that time
//! out quickly and resubmit the same transfer to another process, hedging some transfers on two
//! processes at once, while SQL-native writers call the seed's `compat.transfer_money` on the
//! same accounts. Then it stops the processes with SIGTERM and checks:
//!
//! 1. every acknowledged transfer (HTTP and SQL) is in the journal exactly once with the
//!    acknowledged result, and the answers each transfer got agree (`verify`);
//!    in the bank scenario, every account's balance is its opening balance plus the
//!    acknowledged transfers, and no customer is negative (`verify::balances`);
//! 2. the books reconcile: the ledger agrees with itself (`tally_recon::check_ledger`: trial balance, every account
//!    against its journal, audit and event completeness);
//! 3. the run was live: it ended within its deadline, never went the stall timeout without
//!    deciding a transfer, and decided every transfer it started;
//! 4. every process exited by itself on SIGTERM.
//!
//! Just before the processes are stopped, each one's engine figures are read from its
//! `/metrics`: batches committed, and batches re-run through the locking path because another
//! writer changed their accounts (the fallbacks that several processes on shared accounts cause).
//!
//! A hang never stalls the check: the load phase has a hard deadline and a stall detector, and
//! what the database sessions were waiting for at that moment goes into the report. Every other
//! phase is bounded too: setup by `SETUP_TIMEOUT`, stopping by the stop timeout (then SIGKILL),
//! the checks by `VERIFY_TIMEOUT`.
//!
//! Assumptions: the database is reachable from this process and from the `tally serve`
//! children with the same connection string; the ledger is consistent before the run (checked
//! first); the children listen on loopback. Everything the run writes carries its run id, so
//! several runs may share a database.

pub mod bank;
pub mod config;
mod fleet;
mod http;
pub mod report;
mod setup;
mod shared;
mod sql;
mod verify;

pub use config::{LoadConfig, Scenario, Workload};
pub use fleet::{EngineFigures, ProcessExit};
pub use report::{Check, Ending, LoadReport};

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tally_recon::ReconError;
use tally_store::{Store, StoreError};
use thiserror::Error;
use tokio::task::JoinSet;

/// Connections the check itself uses (setup, diagnostics, verification).
const STORE_POOL_SIZE: usize = 4;
/// How long opening the accounts and starting the processes may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the checks after the load may take.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(600);
/// How long reading the database sessions of a hung run may take.
const DIAGNOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the watchdog looks at the run (and the progress bar moves).
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// Operating errors: the check could not run, or not finish its checks. A ledger that fails a
/// check is not an error; it is a report that did not pass.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("invalid load check settings: {0}")]
    ConfigInvalid(String),
    #[error("the ledger is inconsistent before the load ({0} findings): the run could prove nothing")]
    LedgerNotClean(usize),
    #[error("setting up the load: {0}")]
    Setup(String),
    #[error("starting tally serve {index}: {source}")]
    Spawn { index: usize, source: std::io::Error },
    #[error("tally serve {index} did not start: {detail}")]
    ServeStartFailed { index: usize, detail: String },
    #[error("connecting SQL writer {index}: {source}")]
    SqlConnect { index: usize, source: tokio_postgres::Error },
    #[error("{what} took longer than {limit:?}")]
    Timeout { what: &'static str, limit: Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Recon(#[from] ReconError),
}

impl LoadError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            LoadError::ConfigInvalid(_) => "config_invalid",
            LoadError::LedgerNotClean(_) => "ledger_not_clean",
            LoadError::Setup(_) => "setup_failed",
            LoadError::Spawn { .. } => "spawn_failed",
            LoadError::ServeStartFailed { .. } => "serve_start_failed",
            LoadError::SqlConnect { .. } => "sql_connect_failed",
            LoadError::Timeout { .. } => "timeout",
            LoadError::Store(error) => error.code(),
            LoadError::Recon(error) => error.code(),
        }
    }
}

/// Runs one load check on `config.database_url` and reports. Errors only when the check itself
/// could not run; a ledger that broke a promise comes back as a report that did not pass.
pub async fn run(config: &LoadConfig) -> Result<LoadReport, LoadError> {
    config.validate()?;
    let started = Instant::now();
    let store = Store::connect(&config.database_url, STORE_POOL_SIZE)?;
    let recon = tally_recon::Recon::new(&store, tally_recon::POOL_SIZE_MIN);
    let (prepared, fleet) = tokio::time::timeout(SETUP_TIMEOUT, async {
        store.migrate().await?;
        let before = tally_recon::check_ledger(&recon).await?;
        if !before.is_clean() {
            return Err(LoadError::LedgerNotClean(before.findings.len()));
        }
        let prepared = setup::prepare(&store, config).await?;
        let fleet = fleet::Fleet::start(&config.tally_bin, &config.database_url, config.processes).await?;
        Ok((prepared, fleet))
    })
    .await
    .map_err(|_| LoadError::Timeout { what: "setting up (accounts, key, processes)", limit: SETUP_TIMEOUT })??;
    let addrs = fleet.addrs();

    let picker = shared::AccountPicker::new(prepared.accounts.clone(), config.zipf_exponent);
    let mut writers = Vec::with_capacity(config.sql_writers);
    for index in 0..config.sql_writers {
        let seed = config.seed.wrapping_add(1_000_000 + index as u64);
        let writer = sql::SqlWriter::connect(index, &config.database_url, picker.clone(), seed)
            .await
            .map_err(|source| LoadError::SqlConnect { index, source })?;
        writers.push(writer);
    }
    let mix = match config.scenario {
        Scenario::HotAccounts => shared::Mix::HotAccounts(picker),
        Scenario::Bank => shared::Mix::Bank(bank::BankMix::new(picker, &prepared.house)),
    };
    let targets = Arc::new(http::Targets {
        addrs: addrs.clone(),
        authorization: prepared.authorization.clone(),
        mix,
        client_timeout: config.client_timeout,
        hedge_fraction: config.hedge_fraction,
    });

    let deadline = config.effective_deadline();
    let shared = Arc::new(shared::Shared::new(config.workload));
    let (ending, sessions) = drive(config, &store, &shared, targets, writers, deadline).await;
    let load_seconds = shared.started_at.elapsed().as_secs_f64();
    let mut engines = Vec::with_capacity(addrs.len());
    for addr in &addrs {
        engines.push(http::engine_figures(*addr, &prepared.authorization).await);
    }
    let mut processes = fleet.stop(config.stop_timeout).await;
    for (process, engine) in processes.iter_mut().zip(engines) {
        process.engine = engine;
    }

    let http_records = std::mem::take(&mut *shared.http_records.lock().expect("records lock"));
    let sql_records = std::mem::take(&mut *shared.sql_records.lock().expect("records lock"));
    let http = http_summary(&shared, &http_records, load_seconds);
    let sql = sql_summary(&shared, config.sql_writers, sql_records.len() as u64, load_seconds);
    let (journal, answers, balances, ledger) = tokio::time::timeout(VERIFY_TIMEOUT, async {
        let journal = verify::journal(&store, &http_records, &sql_records).await?;
        let answers = verify::answers(&http_records);
        let balances = match config.scenario {
            Scenario::HotAccounts => None,
            Scenario::Bank => {
                // A transfer no client heard about, or a SQL call that failed (maybe at COMMIT),
                // may or may not have moved money: then balances cannot be compared exactly.
                let comparable = http.undecided == 0 && sql.errors.is_empty() && ending == Ending::Finished;
                let fees = prepared.house[bank::FEES_HOUSE_INDEX];
                let check = verify::balances(
                    &store,
                    &prepared.opening_minor,
                    &prepared.accounts,
                    fees,
                    &http_records,
                    &sql_records,
                    comparable,
                );
                Some(check.await?)
            }
        };
        let ledger = tally_recon::check_ledger(&recon).await?;
        Ok::<_, LoadError>((journal, answers, balances, ledger))
    })
    .await
    .map_err(|_| LoadError::Timeout { what: "checking the ledger after the load", limit: VERIFY_TIMEOUT })??;

    let mut report = report::LoadReport {
        config: config.clone(),
        run_id: prepared.run_id,
        addrs: addrs.iter().map(ToString::to_string).collect(),
        load_seconds,
        total_seconds: 0.0,
        deadline_seconds: deadline.as_secs_f64(),
        ending,
        http,
        sql,
        latency: latency(&shared),
        journal,
        answers,
        balances,
        ledger: report::LedgerCheck {
            accounts: ledger.accounts,
            transfers: ledger.transfers,
            events: ledger.events,
            findings: ledger.findings,
        },
        processes,
        sessions_when_cut_short: sessions,
        checks: Vec::new(),
    };
    report.checks = checks(&report);
    report.total_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Runs the writers until the workload is done, the deadline passes or the run stalls. When
/// cut short, reads what the database sessions wait for before the writers are stopped.
async fn drive(
    config: &LoadConfig,
    store: &Store,
    shared: &Arc<shared::Shared>,
    targets: Arc<http::Targets>,
    writers: Vec<sql::SqlWriter>,
    deadline: Duration,
) -> (Ending, Vec<tally_store::queries::SessionActivity>) {
    let mut tasks = JoinSet::new();
    for process in 0..config.processes {
        for client in 0..config.clients_per_process {
            let seed = config.seed.wrapping_add((process * config.clients_per_process + client) as u64);
            tasks.spawn(http::HttpClient::new(process, seed, targets.clone(), shared.clone()).run());
        }
    }
    for writer in writers {
        tasks.spawn(writer.run(shared.clone()));
    }
    let progress = progress_bar(config);
    let mut watch = tokio::time::interval(WATCH_INTERVAL);
    let ending = loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break Ending::Finished,
                Some(Err(error)) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Some(_) => {}
            },
            _ = watch.tick() => {
                progress.set_position(shared.decided_count());
                progress.set_message(format!("{} in flight", shared.in_flight()));
                let in_flight = shared.in_flight();
                if shared.started_at.elapsed() >= deadline {
                    break Ending::DeadlineExceeded { in_flight };
                }
                let quiet = shared.since_last_decision();
                if in_flight > 0 && quiet >= config.stall_timeout {
                    break Ending::Stalled { in_flight, quiet_seconds: quiet.as_secs_f64() };
                }
            }
        }
    };
    progress.finish_and_clear();
    let mut sessions = Vec::new();
    if ending != Ending::Finished {
        if let Ok(Ok(found)) = tokio::time::timeout(DIAGNOSE_TIMEOUT, store.sessions_in_transaction()).await {
            sessions = found;
        }
        shared.abort();
        tasks.shutdown().await;
    }
    (ending, sessions)
}

fn progress_bar(config: &LoadConfig) -> ProgressBar {
    if !config.progress {
        return ProgressBar::hidden();
    }
    match config.workload {
        Workload::Transfers(count) => ProgressBar::new(count).with_style(
            ProgressStyle::with_template("{elapsed:>4} [{bar:40}] {pos}/{len} decided ({per_sec}), {msg}")
                .expect("a valid template"),
        ),
        Workload::Duration(duration) => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} {{elapsed:>4}} of {:.0} s: {{pos}} decided ({{per_sec}}), {{msg}}",
                duration.as_secs_f64()
            ))
            .expect("a valid template"),
        ),
    }
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 { count as f64 / seconds } else { 0.0 }
}

fn http_summary(shared: &shared::Shared, records: &[shared::HttpRecord], load_seconds: f64) -> report::HttpSummary {
    let counters = &shared.http;
    let transfers = counters.started.load(Ordering::Relaxed);
    let mut applied = 0;
    let mut rejected = std::collections::BTreeMap::new();
    let mut by_kind: std::collections::BTreeMap<String, report::KindCounts> = std::collections::BTreeMap::new();
    for record in records {
        let kind = by_kind.entry(record.kind.as_str().to_owned()).or_default();
        match record.ack() {
            Some(shared::Ack::Applied) => {
                applied += 1;
                kind.applied += 1;
            }
            Some(shared::Ack::Rejected(result)) => {
                *rejected.entry(result.code().to_owned()).or_default() += 1;
                *kind.rejected.entry(result.code().to_owned()).or_default() += 1;
            }
            None => {}
        }
    }
    let acknowledged = applied + rejected.values().sum::<u64>();
    // A linked pair is one operation with two records.
    let paired = records.iter().filter(|r| r.linked_with.is_some()).count() as u64;
    let operations = records.len() as u64 - paired / 2;
    report::HttpSummary {
        transfers,
        applied,
        rejected,
        undecided: transfers - operations,
        requests: counters.requests.load(Ordering::Relaxed),
        resubmissions: counters.resubmissions.load(Ordering::Relaxed),
        hedged: counters.hedged.load(Ordering::Relaxed),
        timeouts: counters.timeouts.load(Ordering::Relaxed),
        connection_errors: counters.connection_errors.load(Ordering::Relaxed),
        retry_statuses: counters.retry_statuses.lock().expect("counter lock").clone(),
        acknowledged_per_second: per_second(acknowledged, load_seconds),
        operations_per_second: per_second(operations, load_seconds),
        by_kind,
    }
}

fn sql_summary(shared: &shared::Shared, writers: usize, applied: u64, load_seconds: f64) -> report::SqlSummary {
    let counters = &shared.sql;
    let rejected = counters.rejected.lock().expect("counter lock").clone();
    let acknowledged = applied + rejected.values().sum::<u64>();
    report::SqlSummary {
        writers,
        transfers: counters.started.load(Ordering::Relaxed),
        applied,
        rejected,
        errors: counters.errors.lock().expect("counter lock").clone(),
        version_conflict_retries: counters.version_conflict_retries.load(Ordering::Relaxed),
        reconnects: counters.reconnects.load(Ordering::Relaxed),
        acknowledged_per_second: per_second(acknowledged, load_seconds),
    }
}

fn latency(shared: &shared::Shared) -> report::Latency {
    let (p50_ms, p99_ms, max_ms, samples) = shared.latency_ms();
    report::Latency { p50_ms, p99_ms, max_ms, samples }
}

/// The verdicts, from the figures the report already holds.
fn checks(report: &LoadReport) -> Vec<Check> {
    let journal = &report.journal;
    let acknowledged_in_journal = Check {
        name: "acknowledged_in_journal",
        passed: journal.missing == 0 && journal.mismatched == 0,
        detail: format!(
            "{} acknowledged, {} found, {} missing, {} with another result or fields",
            journal.acknowledged, journal.found, journal.missing, journal.mismatched
        ),
    };
    let answers = &report.answers;
    let answers_consistent = Check {
        name: "answers_consistent",
        passed: answers.inconsistent == 0,
        detail: format!(
            "{} answers to {} HTTP transfers, {} transfers with answers that disagree or cannot be",
            answers.answers, answers.transfers, answers.inconsistent
        ),
    };
    let balances = report.balances.as_ref().map(|balances| Check {
        name: "balances_as_acknowledged",
        passed: balances.comparable && balances.mismatched == 0 && balances.negative_customers == 0,
        detail: format!(
            "{} accounts{}: {} with another balance than the acknowledged transfers make, {} customers negative",
            balances.accounts,
            if balances.comparable { "" } else { " (NOT COMPARABLE: some transfer's outcome is unknown)" },
            balances.mismatched,
            balances.negative_customers
        ),
    });
    let findings = &report.ledger.findings;
    let mut by_check: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for finding in findings {
        *by_check.entry(finding.check).or_default() += 1;
    }
    let ledger_consistent = Check {
        name: "ledger_consistent",
        passed: findings.is_empty(),
        detail: if findings.is_empty() {
            format!(
                "clean: {} accounts, {} journal rows, {} events",
                report.ledger.accounts, report.ledger.transfers, report.ledger.events
            )
        } else {
            let kinds: Vec<String> = by_check.iter().map(|(check, n)| format!("{check} x{n}")).collect();
            format!("{} findings: {}", findings.len(), kinds.join(", "))
        },
    };
    let undecided = report.http.undecided;
    let live = Check {
        name: "live",
        passed: report.ending == Ending::Finished && undecided == 0,
        detail: match &report.ending {
            Ending::Finished if undecided == 0 => {
                format!("finished in {:.1} s (deadline {:.0} s)", report.load_seconds, report.deadline_seconds)
            }
            Ending::Finished => format!("{undecided} HTTP transfers were given up after {} tries", http::ATTEMPTS_MAX),
            Ending::DeadlineExceeded { in_flight } => format!(
                "HUNG OR TOO SLOW: the deadline of {:.0} s passed with {in_flight} transfers in flight",
                report.deadline_seconds
            ),
            Ending::Stalled { in_flight, quiet_seconds } => format!(
                "HUNG: no transfer decided for {quiet_seconds:.1} s with {in_flight} in flight, after {:.1} s of load \
                 ({} database sessions inside a transaction at that moment)",
                report.load_seconds,
                report.sessions_when_cut_short.len()
            ),
        },
    };
    let rough: Vec<String> =
        report.processes.iter().filter(|p| !p.graceful).map(|p| format!("{} ({})", p.index, p.status)).collect();
    let processes_stopped = Check {
        name: "processes_stopped",
        passed: rough.is_empty(),
        detail: if rough.is_empty() {
            format!("{} processes exited on SIGTERM", report.processes.len())
        } else {
            format!(
                "not exited within {:.0} s of SIGTERM, killed: {}",
                report.config.stop_timeout.as_secs_f64(),
                rough.join(", ")
            )
        },
    };
    let mut checks = vec![acknowledged_in_journal, answers_consistent];
    checks.extend(balances);
    checks.extend([ledger_consistent, live, processes_stopped]);
    checks
}
