//! A run's report: what ran, how fast, and each check with whether it passed and why not. A
//! value (serde-serializable for `--json`), rendered as a table for people.

use crate::config::{LoadConfig, Scenario, Workload};
use crate::fleet::ProcessExit;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use std::collections::BTreeMap;
use tally_recon::Finding;
use tally_store::queries::SessionActivity;

/// Examples listed per check before the rest are only counted.
pub const EXAMPLES_MAX: usize = 20;

/// How the load phase ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Ending {
    /// Every transfer was decided or given up before the deadline.
    Finished,
    /// The deadline passed with transfers still in flight.
    DeadlineExceeded { in_flight: i64 },
    /// No transfer was decided for the stall timeout while some were in flight: a hang.
    Stalled { in_flight: i64, quiet_seconds: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpSummary {
    /// Operations started by the HTTP clients: a single transfer, or a linked pair (a bank
    /// payment and its fee) sent in one request.
    pub transfers: u64,
    /// Decided by an answer: applied (`ok`/`exists`), or refused by a rule.
    pub applied: u64,
    pub rejected: BTreeMap<String, u64>,
    /// Operations given up after the most attempts, or cut off by the deadline, without an answer.
    pub undecided: u64,
    pub requests: u64,
    /// Transfers sent again (same id and fields) to another process.
    pub resubmissions: u64,
    /// Transfers whose first try went to two processes at once.
    pub hedged: u64,
    pub timeouts: u64,
    pub connection_errors: u64,
    /// 408, 429 and 5xx answers, by status.
    pub retry_statuses: BTreeMap<String, u64>,
    /// Acknowledged transfers (applied or refused by a rule) per second of the load phase.
    pub acknowledged_per_second: f64,
    /// Decided operations (a single transfer, or a linked pair in one request) per second.
    pub operations_per_second: f64,
    /// Applied and refused, by what the transfer was (`transfer`; or `payment`, `fee`,
    /// `deposit`, `withdrawal` in the bank scenario).
    pub by_kind: BTreeMap<String, KindCounts>,
}

/// One kind of transfer's acknowledgements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    pub applied: u64,
    pub rejected: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SqlSummary {
    pub writers: usize,
    /// Calls of the seed's `transfer` (each up to three tries).
    pub transfers: u64,
    /// Applied: `transfer_money` returned an id and COMMIT succeeded.
    pub applied: u64,
    /// Refused by a rule (nothing written; the seed's client raises).
    pub rejected: BTreeMap<String, u64>,
    /// Failed otherwise, by SQLSTATE (the seed's client raises these too).
    pub errors: BTreeMap<String, u64>,
    pub version_conflict_retries: u64,
    pub reconnects: u64,
    pub acknowledged_per_second: f64,
}

/// Decision latency: from a transfer's first try to its answer, retries included.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub samples: u64,
}

/// Acknowledged transfers against the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JournalCheck {
    pub acknowledged: u64,
    pub found: u64,
    pub missing: u64,
    /// In the journal with another result, other accounts or another amount.
    pub mismatched: u64,
    pub examples: Vec<String>,
}

/// The answers each HTTP transfer got, against each other.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AnswerCheck {
    pub transfers: u64,
    pub answers: u64,
    pub inconsistent: u64,
    pub examples: Vec<String>,
}

/// The bank scenario's accounts after the run against what the clients were told.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BalanceCheck {
    /// Accounts of the run compared (customers, house accounts).
    pub accounts: u64,
    /// Whether every transfer's outcome is known, so that balances can be compared exactly;
    /// when not, only what needs no comparison is checked (found, nothing pending, not negative).
    pub comparable: bool,
    /// Accounts whose balance is not its opening balance plus the acknowledged applied
    /// transfers (or that are missing, or hold pending amounts).
    pub mismatched: u64,
    pub negative_customers: u64,
    /// What the fees account gained during the load, in minor units.
    pub fees_collected_minor: i128,
    pub examples: Vec<String>,
}

/// `tally_recon::check_ledger` after the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerCheck {
    pub accounts: i64,
    pub transfers: i64,
    pub events: i64,
    pub findings: Vec<Finding>,
}

/// One check and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name: `acknowledged_in_journal`, `answers_consistent`, `balances_as_acknowledged`
    /// (bank scenario), `ledger_consistent`, `live`, `processes_stopped`.
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    pub config: LoadConfig,
    /// The run's id: its accounts are `loadcheck-<id>-hot-<n>`, its key `loadcheck-<id>`.
    pub run_id: String,
    pub addrs: Vec<String>,
    /// The load phase: from the first client's start until the last transfer's answer.
    pub load_seconds: f64,
    /// Everything: setup, load, stopping the processes and the checks.
    pub total_seconds: f64,
    pub deadline_seconds: f64,
    pub ending: Ending,
    pub http: HttpSummary,
    pub sql: SqlSummary,
    pub latency: Latency,
    pub journal: JournalCheck,
    pub answers: AnswerCheck,
    /// The bank scenario's balances; `None` for hot accounts.
    pub balances: Option<BalanceCheck>,
    pub ledger: LedgerCheck,
    /// Each process's exit and its engine's figures, read from its `/metrics` just before it
    /// was stopped.
    pub processes: Vec<ProcessExit>,
    /// When the run hung: the database sessions inside a transaction at that moment, and whom
    /// each waited for. A session `idle in transaction` that blocks others waits for its Tally
    /// process, an edge PostgreSQL's deadlock detector cannot see.
    pub sessions_when_cut_short: Vec<SessionActivity>,
    pub checks: Vec<Check>,
}

impl LoadReport {
    /// Every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.passed)
    }

    /// The checks that failed.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|check| !check.passed).collect()
    }

    /// Engine batches and re-runs over every process whose `/metrics` could be read.
    pub fn engine_totals(&self) -> (u64, u64) {
        let figures = self.processes.iter().filter_map(|p| p.engine);
        figures.fold((0, 0), |(batches, reruns), f| (batches + f.batches, reruns + f.reruns))
    }

    /// One line: the verdict, the workload, throughput, the engines' fallbacks and the failed
    /// checks.
    pub fn summary(&self) -> String {
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let failed: Vec<&str> = self.failures().iter().map(|c| c.name).collect();
        let (batches, reruns) = self.engine_totals();
        let per_process: Vec<String> = self
            .processes
            .iter()
            .map(|p| p.engine.map_or("?".into(), |f| format!("{}/{}", f.reruns, f.batches)))
            .collect();
        format!(
            "{verdict} in {:.1} s (load {:.1} s): {} HTTP + {} SQL acknowledged, {:.0}/s; \
             engine re-runs/batches {reruns}/{batches} ({}; per process {}){}",
            self.total_seconds,
            self.load_seconds,
            self.http.applied + self.http.rejected.values().sum::<u64>(),
            self.sql.applied + self.sql.rejected.values().sum::<u64>(),
            self.http.acknowledged_per_second + self.sql.acknowledged_per_second,
            percent(reruns, batches),
            per_process.join(" "),
            if failed.is_empty() { String::new() } else { format!("; failed: {}", failed.join(", ")) }
        )
    }

    /// The checks, the figures, and the details of whatever failed, as tables.
    pub fn table(&self) -> String {
        let mut checks = Table::new();
        checks.load_preset(UTF8_FULL_CONDENSED).set_header(["check", "result", "detail"]);
        for check in &self.checks {
            checks.add_row([check.name, if check.passed { "pass" } else { "FAIL" }, &check.detail]);
        }
        let mut figures = Table::new();
        figures.load_preset(UTF8_FULL_CONDENSED).set_header(["", "HTTP", "SQL"]);
        let c = &self.config;
        let workload = match c.workload {
            Workload::Transfers(count) => format!("{count} transfers"),
            Workload::Duration(duration) => format!("{:.0} s", duration.as_secs_f64()),
        };
        figures.add_row([
            "writers".into(),
            format!("{} processes x {} clients", c.processes, c.clients_per_process),
            format!("{} connections", c.sql_writers),
        ]);
        figures.add_row(["transfers started".into(), self.http.transfers.to_string(), self.sql.transfers.to_string()]);
        figures.add_row(["applied".into(), self.http.applied.to_string(), self.sql.applied.to_string()]);
        figures.add_row(["refused by a rule".into(), counts(&self.http.rejected), counts(&self.sql.rejected)]);
        figures.add_row(["undecided / errors".into(), self.http.undecided.to_string(), counts(&self.sql.errors)]);
        figures.add_row([
            "acknowledged/s".into(),
            format!("{:.0}", self.http.acknowledged_per_second),
            format!("{:.0}", self.sql.acknowledged_per_second),
        ]);
        figures.add_row([
            "requests / resubmitted / hedged".into(),
            format!("{} / {} / {}", self.http.requests, self.http.resubmissions, self.http.hedged),
            format!("{} 版本冲突 retries", self.sql.version_conflict_retries),
        ]);
        figures.add_row([
            "timeouts / connection errors / 408-429-5xx".into(),
            format!("{} / {} / {}", self.http.timeouts, self.http.connection_errors, counts(&self.http.retry_statuses)),
            format!("{} reconnects", self.sql.reconnects),
        ]);
        figures.add_row([
            "decision latency p50 / p99 / max".into(),
            format!("{:.1} / {:.1} / {:.1} ms", self.latency.p50_ms, self.latency.p99_ms, self.latency.max_ms),
            "(both)".into(),
        ]);
        if self.http.by_kind.len() > 1 {
            for (kind, counts) in &self.http.by_kind {
                figures.add_row([
                    format!("{kind}s applied / refused"),
                    format!("{} / {}", counts.applied, self::counts(&counts.rejected)),
                    String::new(),
                ]);
            }
            figures.add_row([
                "operations/s (a payment and its fee: one)".into(),
                format!("{:.0}", self.http.operations_per_second),
                String::new(),
            ]);
        }
        if let Some(balances) = &self.balances {
            figures.add_row([
                "fees collected".into(),
                tally_core::format_amount(balances.fees_collected_minor, crate::setup::SCALE),
                String::new(),
            ]);
        }
        let mut engines = Table::new();
        engines.load_preset(UTF8_FULL_CONDENSED).set_header([
            "process",
            "engine batches",
            "re-runs (locking fallback)",
            "re-run share",
            "exit",
        ]);
        for process in &self.processes {
            let (batches, reruns, share) = match process.engine {
                Some(f) => (f.batches.to_string(), f.reruns.to_string(), percent(f.reruns, f.batches)),
                None => ("?".into(), "?".into(), "metrics not read".into()),
            };
            engines.add_row([
                format!("{} {}", process.index, process.addr),
                batches,
                reruns,
                share,
                process.status.clone(),
            ]);
        }
        let (batches, reruns) = self.engine_totals();
        engines.add_row([
            "all".into(),
            batches.to_string(),
            reruns.to_string(),
            percent(reruns, batches),
            String::new(),
        ]);
        let accounts = match c.scenario {
            Scenario::HotAccounts => format!("{} hot accounts", c.accounts),
            Scenario::Bank => format!("a bank of {} customers and {} house accounts", c.customers, c.house_accounts),
        };
        let mut text = format!(
            "load check {}: {workload} on {accounts} (Zipf {}), client timeout {:.0} ms, hedge {:.0}%, seed {}\n{checks}\n{figures}\n{engines}",
            self.run_id,
            c.zipf_exponent,
            c.client_timeout.as_secs_f64() * 1_000.0,
            c.hedge_fraction * 100.0,
            c.seed
        );
        let balance_examples = self.balances.iter().flat_map(|b| &b.examples);
        for example in self.journal.examples.iter().chain(&self.answers.examples).chain(balance_examples) {
            text.push_str(&format!("\n  {example}"));
        }
        for finding in self.ledger.findings.iter().take(EXAMPLES_MAX) {
            text.push_str(&format!("\n  {}: {} {}", finding.check, finding.subject, finding.detail));
        }
        for session in &self.sessions_when_cut_short {
            text.push_str(&format!(
                "\n  pid {} ({}) {} for {} ms, waits for {}, blocked by {:?}: {}",
                session.pid,
                session.application_name,
                session.state,
                session.transaction_ms,
                session.wait.as_deref().unwrap_or("nothing"),
                session.blocked_by,
                session.query.replace('\n', " ")
            ));
        }
        for process in self.processes.iter().filter(|p| !p.graceful) {
            text.push_str(&format!(
                "\n  tally serve {} ({}) {}; stderr ends:\n{}",
                process.index, process.addr, process.status, process.stderr_tail
            ));
        }
        text.push_str(&format!("\n{}", self.summary()));
        text
    }
}

/// `part` as a percentage of `whole`, one decimal.
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

/// `code: n` pairs, or `0`.
fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "0".into();
    }
    map.iter().map(|(code, n)| format!("{code}: {n}")).collect::<Vec<_>>().join(", ")
}
