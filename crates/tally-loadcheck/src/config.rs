//! What a load check runs: how many `tally serve` processes and SQL-native writers, which
//! scenario (a few hot accounts, or a bank's customers and house accounts), for how long, and how
//! impatient the HTTP clients are. Every knob is bounded.

use crate::LoadError;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// `tally serve` processes at most.
pub const PROCESSES_MAX: usize = 16;
/// SQL-native writers (connections calling `compat.transfer_money`) at most.
pub const SQL_WRITERS_MAX: usize = 64;
/// Hot accounts: at least two (a transfer needs two accounts), at most this many.
pub const ACCOUNTS_MIN: usize = 2;
pub const ACCOUNTS_MAX: usize = 10_000;
/// Customers of the bank scenario: at least two (a payment needs a payer and a payee).
pub const CUSTOMERS_MIN: usize = 2;
pub const CUSTOMERS_MAX: usize = 100_000;
/// House accounts of the bank scenario: the fees account and at least one settlement account.
pub const HOUSE_ACCOUNTS_MIN: usize = 2;
pub const HOUSE_ACCOUNTS_MAX: usize = 16;
/// The steepest account distribution (at 10, the first account takes 99.9% of 4).
pub const ZIPF_EXPONENT_MAX: f64 = 10.0;
/// HTTP clients per process at most; each is a task with connections of its own.
pub const CLIENTS_PER_PROCESS_MAX: usize = 1_000;
/// Transfers of one run at most (every one is remembered until the journal is checked).
pub const TRANSFERS_MAX: u64 = 10_000_000;
/// The longest run.
pub const DURATION_MAX: Duration = Duration::from_secs(24 * 3_600);
/// Bounds on how long an HTTP client waits for an answer before it resubmits elsewhere.
pub const CLIENT_TIMEOUT_MIN: Duration = Duration::from_millis(10);
pub const CLIENT_TIMEOUT_MAX: Duration = Duration::from_secs(120);
/// Bounds on how long a run may go without a single transfer being decided before it is
/// declared hung.
pub const STALL_TIMEOUT_MIN: Duration = Duration::from_secs(1);
pub const STALL_TIMEOUT_MAX: Duration = Duration::from_secs(3_600);
/// Bounds on how long a process may take to exit after SIGTERM before it gets SIGKILL.
pub const STOP_TIMEOUT_MIN: Duration = Duration::from_millis(100);
pub const STOP_TIMEOUT_MAX: Duration = Duration::from_secs(600);
/// The deadline when none is given: the duration plus this slack, or this for a fixed count.
pub const DEADLINE_SLACK_DEFAULT: Duration = Duration::from_secs(60);
pub const DEADLINE_FOR_TRANSFERS_DEFAULT: Duration = Duration::from_secs(300);

const _: () = assert!(CLIENT_TIMEOUT_MIN.as_millis() < CLIENT_TIMEOUT_MAX.as_millis());
const _: () = assert!(STALL_TIMEOUT_MIN.as_millis() < STALL_TIMEOUT_MAX.as_millis());
const _: () = assert!(PROCESSES_MAX * CLIENTS_PER_PROCESS_MAX <= 100_000, "client tasks stay countable");

/// What the writers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Single transfers among `accounts` hot accounts (a quarter of them small, see `setup`).
    HotAccounts,
    /// A bank (`bank`): `customers` customer accounts that may not go negative and
    /// `house_accounts` bank-owned ones (fees, settlement). Customer-to-customer payments, each
    /// with its fee to the fees account as one atomic request (a linked pair), and deposits and
    /// withdrawals between settlement and customers.
    Bank,
}

/// How much work a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// This many transfers in all, HTTP and SQL together, drawn from one pool (in the bank
    /// scenario a payment and its fee, sent together, count as one).
    Transfers(u64),
    /// New transfers for this long; transfers already started are then decided.
    #[serde(serialize_with = "serialize_seconds")]
    Duration(Duration),
}

fn serialize_seconds<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value.as_secs_f64())
}

/// A load check's settings. Build with `LoadConfig::new` and change the fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadConfig {
    /// The `tally` binary to run `tally serve` from.
    pub tally_bin: PathBuf,
    /// libpq connection string or URL of the ledger database (migrated if needed).
    #[serde(skip)]
    pub database_url: String,
    /// `tally serve` processes on the database.
    pub processes: usize,
    /// Connections that call `compat.transfer_money` as the seed's client does.
    pub sql_writers: usize,
    /// Hot accounts every writer moves money among.
    pub accounts: usize,
    pub scenario: Scenario,
    /// Customers of the bank scenario.
    pub customers: usize,
    /// House accounts of the bank scenario: the fees account, then settlement accounts.
    pub house_accounts: usize,
    /// How the writers pick accounts (hot accounts, or customers in the bank scenario): account
    /// `i` (from 0) with weight `1 / (i + 1)^s`. 0 is uniform; 2 sends about 70% of the money
    /// through the first of 4 accounts.
    pub zipf_exponent: f64,
    /// HTTP clients per process. A client's first try goes to its own process; every
    /// resubmission goes to another one.
    pub clients_per_process: usize,
    pub workload: Workload,
    /// How long an HTTP client waits for an answer before it resubmits the same transfer (same
    /// id and fields) to another process.
    #[serde(serialize_with = "serialize_seconds")]
    pub client_timeout: Duration,
    /// The share of HTTP transfers (0 to 1) whose first try goes to two processes at once.
    pub hedge_fraction: f64,
    /// The whole load phase (from the first client's start until every transfer is decided)
    /// must end by then; `None` picks a default from the workload.
    #[serde(serialize_with = "serialize_optional_seconds")]
    pub deadline: Option<Duration>,
    /// No transfer decided for this long while some are in flight: the run is hung.
    #[serde(serialize_with = "serialize_seconds")]
    pub stall_timeout: Duration,
    /// How long each process may take to exit after SIGTERM before it gets SIGKILL.
    #[serde(serialize_with = "serialize_seconds")]
    pub stop_timeout: Duration,
    /// Seed of the workload's random choices (accounts, amounts, hedging); printed in the report.
    pub seed: u64,
    /// Show a progress bar on the terminal.
    #[serde(skip)]
    pub progress: bool,
}

fn serialize_optional_seconds<S: serde::Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.serialize_some(&value.as_secs_f64()),
        None => serializer.serialize_none(),
    }
}

impl LoadConfig {
    /// One process, 24 clients, no SQL writers, 8 hot accounts picked uniformly, 30 seconds, a 200 ms client
    /// timeout and a tenth of the transfers hedged.
    pub fn new(tally_bin: impl Into<PathBuf>, database_url: impl Into<String>) -> LoadConfig {
        LoadConfig {
            tally_bin: tally_bin.into(),
            database_url: database_url.into(),
            processes: 1,
            sql_writers: 0,
            accounts: 8,
            scenario: Scenario::HotAccounts,
            customers: 1_000,
            house_accounts: 4,
            zipf_exponent: 0.0,
            clients_per_process: 24,
            workload: Workload::Duration(Duration::from_secs(30)),
            client_timeout: Duration::from_millis(200),
            hedge_fraction: 0.1,
            deadline: None,
            stall_timeout: Duration::from_secs(15),
            stop_timeout: Duration::from_secs(10),
            seed: fastrand::u64(..),
            progress: false,
        }
    }

    /// The deadline of the load phase: the one given, or one derived from the workload.
    pub fn effective_deadline(&self) -> Duration {
        self.deadline.unwrap_or(match self.workload {
            Workload::Duration(duration) => duration + DEADLINE_SLACK_DEFAULT,
            Workload::Transfers(_) => DEADLINE_FOR_TRANSFERS_DEFAULT,
        })
    }

    /// Refuses settings outside their bounds, naming the setting.
    pub fn validate(&self) -> Result<(), LoadError> {
        let invalid = |message: String| Err(LoadError::ConfigInvalid(message));
        if !(1..=PROCESSES_MAX).contains(&self.processes) {
            return invalid(format!("processes must be 1 to {PROCESSES_MAX}, got {}", self.processes));
        }
        if self.sql_writers > SQL_WRITERS_MAX {
            return invalid(format!("sql writers must be at most {SQL_WRITERS_MAX}, got {}", self.sql_writers));
        }
        if !(ACCOUNTS_MIN..=ACCOUNTS_MAX).contains(&self.accounts) {
            return invalid(format!("accounts must be {ACCOUNTS_MIN} to {ACCOUNTS_MAX}, got {}", self.accounts));
        }
        if !(CUSTOMERS_MIN..=CUSTOMERS_MAX).contains(&self.customers) {
            return invalid(format!("customers must be {CUSTOMERS_MIN} to {CUSTOMERS_MAX}, got {}", self.customers));
        }
        if !(HOUSE_ACCOUNTS_MIN..=HOUSE_ACCOUNTS_MAX).contains(&self.house_accounts) {
            return invalid(format!(
                "house accounts must be {HOUSE_ACCOUNTS_MIN} to {HOUSE_ACCOUNTS_MAX}, got {}",
                self.house_accounts
            ));
        }
        if !(0.0..=ZIPF_EXPONENT_MAX).contains(&self.zipf_exponent) {
            return invalid(format!("zipf exponent must be 0 to {ZIPF_EXPONENT_MAX}, got {}", self.zipf_exponent));
        }
        if self.clients_per_process > CLIENTS_PER_PROCESS_MAX {
            return invalid(format!(
                "clients per process must be at most {CLIENTS_PER_PROCESS_MAX}, got {}",
                self.clients_per_process
            ));
        }
        if self.clients_per_process == 0 && self.sql_writers == 0 {
            return invalid("there must be HTTP clients or SQL writers".into());
        }
        match self.workload {
            Workload::Transfers(count) if !(1..=TRANSFERS_MAX).contains(&count) => {
                return invalid(format!("transfers must be 1 to {TRANSFERS_MAX}, got {count}"));
            }
            Workload::Duration(duration) if duration.is_zero() || duration > DURATION_MAX => {
                return invalid(format!("duration must be above zero and at most {DURATION_MAX:?}"));
            }
            _ => {}
        }
        if !(CLIENT_TIMEOUT_MIN..=CLIENT_TIMEOUT_MAX).contains(&self.client_timeout) {
            return invalid(format!(
                "client timeout must be {CLIENT_TIMEOUT_MIN:?} to {CLIENT_TIMEOUT_MAX:?}, got {:?}",
                self.client_timeout
            ));
        }
        if !(0.0..=1.0).contains(&self.hedge_fraction) {
            return invalid(format!("hedge fraction must be 0 to 1, got {}", self.hedge_fraction));
        }
        if let Some(deadline) = self.deadline
            && (deadline.is_zero() || deadline > DURATION_MAX * 2)
        {
            return invalid(format!("deadline must be above zero and at most {:?}", DURATION_MAX * 2));
        }
        if let (Some(deadline), Workload::Duration(duration)) = (self.deadline, self.workload)
            && deadline <= duration
        {
            return invalid(format!("the deadline ({deadline:?}) must be longer than the duration ({duration:?})"));
        }
        if !(STALL_TIMEOUT_MIN..=STALL_TIMEOUT_MAX).contains(&self.stall_timeout) {
            return invalid(format!(
                "stall timeout must be {STALL_TIMEOUT_MIN:?} to {STALL_TIMEOUT_MAX:?}, got {:?}",
                self.stall_timeout
            ));
        }
        if !(STOP_TIMEOUT_MIN..=STOP_TIMEOUT_MAX).contains(&self.stop_timeout) {
            return invalid(format!(
                "stop timeout must be {STOP_TIMEOUT_MIN:?} to {STOP_TIMEOUT_MAX:?}, got {:?}",
                self.stop_timeout
            ));
        }
        if self.database_url.is_empty() {
            return invalid("a database URL is required".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LoadConfig {
        LoadConfig::new("/bin/tally", "host=/tmp dbname=x")
    }

    #[test]
    fn defaults_are_valid() {
        config().validate().unwrap();
        assert_eq!(config().effective_deadline(), Duration::from_secs(30) + DEADLINE_SLACK_DEFAULT);
    }

    #[test]
    fn each_bound_is_enforced_and_named() {
        type Change = Box<dyn Fn(&mut LoadConfig)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.processes = 0), "processes"),
            (Box::new(|c| c.processes = PROCESSES_MAX + 1), "processes"),
            (Box::new(|c| c.sql_writers = SQL_WRITERS_MAX + 1), "sql writers"),
            (Box::new(|c| c.accounts = 1), "accounts"),
            (Box::new(|c| c.customers = 1), "customers"),
            (Box::new(|c| c.customers = CUSTOMERS_MAX + 1), "customers"),
            (Box::new(|c| c.house_accounts = 1), "house accounts"),
            (Box::new(|c| c.house_accounts = HOUSE_ACCOUNTS_MAX + 1), "house accounts"),
            (Box::new(|c| c.zipf_exponent = -1.0), "zipf"),
            (Box::new(|c| c.zipf_exponent = f64::INFINITY), "zipf"),
            (Box::new(|c| c.clients_per_process = CLIENTS_PER_PROCESS_MAX + 1), "clients"),
            (Box::new(|c| c.clients_per_process = 0), "HTTP clients or SQL writers"),
            (Box::new(|c| c.workload = Workload::Transfers(0)), "transfers"),
            (Box::new(|c| c.workload = Workload::Duration(Duration::ZERO)), "duration"),
            (Box::new(|c| c.client_timeout = Duration::from_millis(1)), "client timeout"),
            (Box::new(|c| c.hedge_fraction = 1.5), "hedge"),
            (Box::new(|c| c.hedge_fraction = f64::NAN), "hedge"),
            (Box::new(|c| c.deadline = Some(Duration::from_secs(10))), "deadline"),
            (Box::new(|c| c.stall_timeout = Duration::ZERO), "stall"),
            (Box::new(|c| c.stop_timeout = Duration::ZERO), "stop"),
            (Box::new(|c| c.database_url.clear()), "database"),
        ];
        for (change, named) in cases {
            let mut config = config();
            change(&mut config);
            let error = config.validate().expect_err(named);
            assert_eq!(error.code(), "config_invalid");
            assert!(error.to_string().contains(named), "{error} does not name {named}");
        }
    }
}
