//! What the writers of a run share: the pool of transfers still to start, progress counters
//! for the watchdog and the progress bar, and every decision, recorded as it arrives so that
//! a run cut short by its deadline can still check what was acknowledged.

use crate::config::Workload;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tally_core::{AccountId, TransferResult};
use uuid::Uuid;

/// The slowest decision the latency histogram records (longer ones count as this).
const LATENCY_US_MAX: u64 = 3_600_000_000;

/// One transfer as a writer sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferSpec {
    pub id: Uuid,
    pub debit: AccountId,
    pub credit: AccountId,
    pub amount_minor: i128,
}

impl TransferSpec {
    /// A new transfer between two different hot accounts.
    pub fn random(rng: &mut fastrand::Rng, picker: &AccountPicker) -> TransferSpec {
        let (debit, credit) = picker.pair(rng);
        TransferSpec {
            id: Uuid::now_v7(),
            debit,
            credit,
            amount_minor: rng.i128(crate::setup::AMOUNT_MINOR_MIN..=crate::setup::AMOUNT_MINOR_MAX),
        }
    }
}

/// Picks the accounts of a transfer: account `i` (from 0) with weight `1 / (i + 1)^s`, so `s`
/// = 0 is uniform and a larger `s` concentrates the load on the first few accounts, as a
/// settlement account or a big merchant does.
#[derive(Debug, Clone)]
pub struct AccountPicker {
    accounts: Vec<AccountId>,
    /// Cumulative weights, normalised: the last is 1.
    cumulative: Vec<f64>,
}

impl AccountPicker {
    pub fn new(accounts: Vec<AccountId>, zipf_exponent: f64) -> AccountPicker {
        assert!(accounts.len() >= 2, "a transfer needs two accounts");
        assert!(zipf_exponent.is_finite() && zipf_exponent >= 0.0, "a Zipf exponent is finite and not negative");
        let weights: Vec<f64> = (1..=accounts.len()).map(|rank| (rank as f64).powf(-zipf_exponent)).collect();
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        let mut cumulative: Vec<f64> = weights
            .iter()
            .map(|w| {
                sum += w / total;
                sum
            })
            .collect();
        *cumulative.last_mut().expect("two accounts or more") = 1.0;
        AccountPicker { accounts, cumulative }
    }

    fn index(&self, rng: &mut fastrand::Rng) -> usize {
        let draw = rng.f64();
        self.cumulative.partition_point(|&c| c <= draw).min(self.accounts.len() - 1)
    }

    /// One account.
    pub fn pick(&self, rng: &mut fastrand::Rng) -> AccountId {
        self.accounts[self.index(rng)]
    }

    /// A debit and a different credit account.
    pub fn pair(&self, rng: &mut fastrand::Rng) -> (AccountId, AccountId) {
        let debit = self.index(rng);
        let mut credit = self.index(rng);
        while credit == debit {
            credit = self.index(rng);
        }
        (self.accounts[debit], self.accounts[credit])
    }
}

/// What the HTTP clients send: the scenario's operations.
#[derive(Debug, Clone)]
pub enum Mix {
    /// Single transfers between two hot accounts.
    HotAccounts(AccountPicker),
    Bank(crate::bank::BankMix),
}

impl Mix {
    pub fn next(&self, rng: &mut fastrand::Rng) -> crate::bank::Operation {
        match self {
            Mix::HotAccounts(picker) => {
                crate::bank::Operation::single(crate::bank::Kind::Transfer, TransferSpec::random(rng, picker))
            }
            Mix::Bank(bank) => bank.next(rng),
        }
    }
}

/// What a client was told about a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// `ok` or `exists`: the transfer is in the journal, applied.
    Applied,
    /// A rule refused it; the refusal is recorded under its id.
    Rejected(TransferResult),
}

/// One decisive answer over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 201 (`created`: applied by this very request) or 200 (`exists`).
    Applied {
        created: bool,
    },
    Rejected(TransferResult),
    /// Anything a correct server never answers to a valid, resubmitted transfer.
    Unexpected(String),
}

impl Answer {
    pub fn ack(&self) -> Option<Ack> {
        match self {
            Answer::Applied { .. } => Some(Ack::Applied),
            Answer::Rejected(result) => Some(Ack::Rejected(*result)),
            Answer::Unexpected(_) => None,
        }
    }
}

/// An HTTP transfer and every decisive answer it got (two for a hedge that both processes
/// answered).
#[derive(Debug, Clone)]
pub struct HttpRecord {
    pub spec: TransferSpec,
    pub kind: crate::bank::Kind,
    /// The other transfer of its linked pair (a payment's fee, a fee's payment): sent in one
    /// atomic request, so both are applied or neither.
    pub linked_with: Option<Uuid>,
    pub answers: Vec<Answer>,
}

impl HttpRecord {
    /// What the client took as the answer: the first decisive one.
    pub fn ack(&self) -> Option<Ack> {
        self.answers.iter().find_map(Answer::ack)
    }
}

/// Counters of the HTTP clients.
#[derive(Debug, Default)]
pub struct HttpCounters {
    pub started: AtomicU64,
    pub requests: AtomicU64,
    pub resubmissions: AtomicU64,
    pub hedged: AtomicU64,
    pub timeouts: AtomicU64,
    pub connection_errors: AtomicU64,
    /// Transfers given up after the most attempts, never decided.
    pub abandoned: AtomicU64,
    /// Answers with a retryable status (408, 429, 5xx), by status.
    pub retry_statuses: Mutex<BTreeMap<String, u64>>,
}

/// Counters of the SQL-native writers.
#[derive(Debug, Default)]
pub struct SqlCounters {
    pub started: AtomicU64,
    /// Refusals by rule (the code the function raised), which write nothing.
    pub rejected: Mutex<BTreeMap<String, u64>>,
    /// Other failures, by SQLSTATE (or `connection_lost`): the seed's client raises them.
    pub errors: Mutex<BTreeMap<String, u64>>,
    /// `版本冲突` errors retried, as the seed does.
    pub version_conflict_retries: AtomicU64,
    pub reconnects: AtomicU64,
}

pub struct Shared {
    pub started_at: Instant,
    workload: Workload,
    remaining: AtomicU64,
    /// Set when the run is cut short: no new transfers, and retry loops end.
    aborted: AtomicBool,
    in_flight: AtomicI64,
    decided: AtomicU64,
    last_decided_ms: AtomicU64,
    pub http: HttpCounters,
    pub sql: SqlCounters,
    pub http_records: Mutex<Vec<HttpRecord>>,
    /// Transfers `compat.transfer_money` applied, under the id it returned.
    pub sql_records: Mutex<Vec<TransferSpec>>,
    latency_us: Mutex<Histogram<u64>>,
}

impl Shared {
    pub fn new(workload: Workload) -> Shared {
        let remaining = match workload {
            Workload::Transfers(count) => count,
            Workload::Duration(_) => u64::MAX,
        };
        Shared {
            started_at: Instant::now(),
            workload,
            remaining: AtomicU64::new(remaining),
            aborted: AtomicBool::new(false),
            in_flight: AtomicI64::new(0),
            decided: AtomicU64::new(0),
            last_decided_ms: AtomicU64::new(0),
            http: HttpCounters::default(),
            sql: SqlCounters::default(),
            http_records: Mutex::new(Vec::new()),
            sql_records: Mutex::new(Vec::new()),
            latency_us: Mutex::new(Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds")),
        }
    }

    /// Takes the next transfer to start, if the workload has one left; counts it in flight.
    pub fn take(&self) -> bool {
        if self.is_aborted() {
            return false;
        }
        let more = match self.workload {
            Workload::Transfers(_) => {
                self.remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
            }
            Workload::Duration(duration) => self.started_at.elapsed() < duration,
        };
        if more {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        more
    }

    /// A transfer taken with `take` got its answer after `latency`.
    pub fn decided(&self, latency: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.decided.fetch_add(1, Ordering::Relaxed);
        let now_ms = u64::try_from(self.started_at.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_decided_ms.fetch_max(now_ms, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, LATENCY_US_MAX);
        self.latency_us.lock().expect("latency lock").record(micros).expect("within bounds");
    }

    /// A transfer taken with `take` was given up without an answer.
    pub fn abandoned(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn abort(&self) {
        self.aborted.store(true, Ordering::Relaxed);
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn decided_count(&self) -> u64 {
        self.decided.load(Ordering::Relaxed)
    }

    /// How long no transfer has been decided.
    pub fn since_last_decision(&self) -> Duration {
        let last = Duration::from_millis(self.last_decided_ms.load(Ordering::Relaxed));
        self.started_at.elapsed().saturating_sub(last)
    }

    /// Latency percentiles in milliseconds: (p50, p99, max, samples).
    pub fn latency_ms(&self) -> (f64, f64, f64, u64) {
        let histogram = self.latency_us.lock().expect("latency lock");
        let ms = |us: u64| us as f64 / 1_000.0;
        (
            ms(histogram.value_at_quantile(0.50)),
            ms(histogram.value_at_quantile(0.99)),
            ms(histogram.max()),
            histogram.len(),
        )
    }
}

/// Adds one to a counter keyed by name.
pub fn count(map: &Mutex<BTreeMap<String, u64>>, key: &str) {
    *map.lock().expect("counter lock").entry(key.to_owned()).or_default() += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_workload_hands_out_exactly_its_transfers() {
        let shared = Shared::new(Workload::Transfers(3));
        assert_eq!((0..10).filter(|_| shared.take()).count(), 3);
        assert_eq!(shared.in_flight(), 3);
        shared.decided(Duration::from_millis(5));
        shared.abandoned();
        assert_eq!((shared.in_flight(), shared.decided_count()), (1, 1));
    }

    #[test]
    fn an_aborted_run_starts_nothing() {
        let shared = Shared::new(Workload::Duration(Duration::from_secs(60)));
        assert!(shared.take());
        shared.abort();
        assert!(!shared.take());
    }

    #[test]
    fn random_transfers_name_two_different_accounts() {
        let accounts: Vec<AccountId> = (0..3).map(|_| AccountId(Uuid::now_v7())).collect();
        let picker = AccountPicker::new(accounts, 0.0);
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..1_000 {
            let spec = TransferSpec::random(&mut rng, &picker);
            assert_ne!(spec.debit, spec.credit);
            assert!((crate::setup::AMOUNT_MINOR_MIN..=crate::setup::AMOUNT_MINOR_MAX).contains(&spec.amount_minor));
        }
    }

    /// How often each account is drawn, per 10,000 draws.
    fn shares(exponent: f64) -> Vec<usize> {
        let accounts: Vec<AccountId> = (0..4).map(|_| AccountId(Uuid::now_v7())).collect();
        let picker = AccountPicker::new(accounts, exponent);
        let mut rng = fastrand::Rng::with_seed(11);
        let mut counts = vec![0; 4];
        for _ in 0..10_000 {
            counts[picker.index(&mut rng)] += 1;
        }
        counts
    }

    #[test]
    fn the_zipf_exponent_concentrates_the_load_on_the_first_accounts() {
        let uniform = shares(0.0);
        assert!(uniform.iter().all(|&n| (2_200..2_800).contains(&n)), "{uniform:?}");
        // Weights 1, 1/4, 1/9, 1/16: the first account gets about 70%.
        let skewed = shares(2.0);
        assert!((6_700..7_300).contains(&skewed[0]), "{skewed:?}");
        assert!(skewed.windows(2).all(|pair| pair[0] > pair[1]), "{skewed:?}");
    }
}
