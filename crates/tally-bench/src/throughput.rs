//! `tally bench`: opens N funded accounts, runs clients against the engine (or one SQL
//! transaction per transfer, `BenchMode::Direct`, or the HTTP API) for a fixed time, and reports
//! throughput, latency, batch sizes, WAL volume, CPU split, memory, and whether the books still
//! balance.
//!
//! Every generated transfer is valid (accounts are funded far beyond what a run can spend), so
//! any refusal is counted as `refused_valid` and is a defect.

use crate::events_out::{EventsOut, EventsOutConfig};
use crate::replica_lag::LagSampler;
use crate::report::{self, BenchReport};
use crate::workload::{AccountPicker, Client};
use crate::{BENCH_ACTOR, BenchError, Database, http, system};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tally_core::{AccountId, BATCH_SIZE_MAX, BalanceRule, TransferId, TransferRequest, TransferResult};
use tally_engine::{Engine, Submission};
use tally_store::{NewAccount, Store};
use uuid::Uuid;

/// The database the embedded server runs benchmarks in, recreated on every run.
pub const BENCH_DB: &str = "tally_bench";
/// Each account starts with this many minor units, far beyond what a run can spend.
const FUNDING_PER_ACCOUNT: i128 = 1_000_000_000_000_000;
/// Clients at most; each is a tokio task.
pub const CONCURRENCY_MAX: usize = 100_000;
/// The server settings the report records.
const SETTINGS: [&str; 9] = [
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "shared_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "wal_compression",
];

/// How clients reach the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchMode {
    /// Batched through the posting engine.
    Engine,
    /// One SQL transaction per transfer, through the same store code.
    Direct,
    /// Through the HTTP API, served in this process on a loopback port (posted transfers only).
    Http,
}

/// How clients pick accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    Uniform,
    Zipf,
}

/// What to run: the flags of `tally bench`.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub mode: BenchMode,
    /// Accounts to open and fund before the run.
    pub accounts: usize,
    pub duration: Duration,
    pub distribution: Distribution,
    pub zipf_exponent: f64,
    /// Concurrent clients; each sends a request and waits for its answer before the next.
    pub concurrency: usize,
    /// Transfers per client request.
    pub batch_size: usize,
    /// Share of transfers that are holds; each is posted or voided in the client's next request.
    pub pending_percent: u8,
    /// Batches the engine commits at once.
    pub committers: usize,
    /// The engine's speculative pipelining (off: lock accounts for the whole batch).
    pub speculative: bool,
    /// How long the engine lets a batch fill.
    pub linger: Duration,
    /// Seed for the clients' random choices (random when absent).
    pub seed: Option<u64>,
    /// Events pushed out during the run: the NATS relay, webhooks (issue 13).
    pub events_out: EventsOutConfig,
    /// A streaming replica of the benchmark's database, whose lag is sampled during the load
    /// (issue 14).
    pub replica_url: Option<String>,
    /// Where the API server of `BenchMode::Http` listens (`None`: a free loopback port). Its
    /// address, operator console and key are printed when it starts, so the run can be
    /// watched live in the console.
    pub http_listen: Option<std::net::SocketAddr>,
}

impl BenchConfig {
    /// Checks every setting against its bounds.
    pub fn validate(&self) -> Result<(), BenchError> {
        let invalid = |message: String| Err(BenchError::Invalid(message));
        if self.committers == 0 || self.committers > tally_engine::COMMITTERS_MAX {
            return invalid(format!("--committers must be 1 to {}", tally_engine::COMMITTERS_MAX));
        }
        if self.linger > tally_engine::BATCH_LINGER_MAX {
            return invalid(format!("--linger-us must be at most {}", tally_engine::BATCH_LINGER_MAX.as_micros()));
        }
        if self.accounts < 2 {
            return invalid("--accounts must be at least 2".into());
        }
        if self.batch_size == 0 || self.batch_size > BATCH_SIZE_MAX {
            return invalid(format!("--batch-size must be 1 to {BATCH_SIZE_MAX}"));
        }
        if self.concurrency == 0 || self.concurrency > CONCURRENCY_MAX {
            return invalid(format!("--concurrency must be 1 to {CONCURRENCY_MAX}"));
        }
        if self.pending_percent > 100 {
            return invalid("--pending-percent must be 0 to 100".into());
        }
        if self.mode == BenchMode::Http && self.pending_percent > 0 {
            return invalid("--mode http sends posted transfers only: --pending-percent must be 0".into());
        }
        if self.http_listen.is_some() && self.mode != BenchMode::Http {
            return invalid("--listen is where the API server of --mode http listens: add --mode http".into());
        }
        if !(self.zipf_exponent > 0.0 && self.zipf_exponent <= 5.0) {
            return invalid("--zipf-exponent must be in (0, 5]".into());
        }
        self.events_out.validate()
    }

    fn engine_config(&self) -> tally_engine::EngineConfig {
        tally_engine::EngineConfig {
            committers: self.committers,
            batch_linger: self.linger,
            speculative: self.speculative,
            expiry_sweep_interval: None,
            ..tally_engine::EngineConfig::default()
        }
    }
}

/// Runs `tally bench` in `database` (on the embedded server: a fresh database `tally_bench`,
/// and the server stopped again if this run started it).
pub async fn run_bench(database: &Database, config: &BenchConfig) -> Result<BenchReport, BenchError> {
    config.validate()?;
    let (conninfo, started) = database.prepare(BENCH_DB, true).await?;
    let report = measure(&conninfo, config).await;
    database.stop_if_started(started)?;
    report
}

async fn measure(conninfo: &str, config: &BenchConfig) -> Result<BenchReport, BenchError> {
    let pool_size = config.concurrency.clamp(4, tally_store::POOL_SIZE_MAX);
    let store = Store::connect(conninfo, pool_size)?;
    store.migrate().await?;
    let engine = Engine::start(store.clone(), config.engine_config());
    let mut db = Handles { store: store.clone(), engine, http: None };

    let accounts = open_accounts(&db, config.accounts).await?;
    let server = match config.mode {
        BenchMode::Http => {
            let listen = config.http_listen.unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
            let server = http::start(&store, &db.engine, config.concurrency, listen).await?;
            db.http = Some(server.target.clone());
            Some(server)
        }
        _ => None,
    };
    let picker = match config.distribution {
        Distribution::Uniform => AccountPicker::uniform(accounts),
        Distribution::Zipf => AccountPicker::zipf(accounts, config.zipf_exponent),
    };
    // The relay and the dispatcher start now, and the relay publishes the setup's events before
    // the load starts.
    let mut events_out = EventsOut::start(conninfo, &config.events_out).await?;
    let settings = store.server_settings(&SETTINGS).await?;
    let backend_pid = store.backend_pid().await?;
    let pg_server = system::PgServer::from_backend(u32::try_from(backend_pid).unwrap_or(0));

    let wal_before = store.wal_lsn().await?;
    let cpu_before = (system::own_cpu_seconds(), pg_server.as_ref().map(system::PgServer::cpu_seconds));
    let stats_before = db.engine.stats();
    let stages_before = store.stage_times();
    if let Some(events_out) = &mut events_out {
        events_out.load_starting().await?;
    }
    let lag = match &config.replica_url {
        Some(url) => Some(LagSampler::start(&store, url).await?),
        None => None,
    };
    let measured = drive(&db, config, Arc::new(picker), pg_server.as_ref()).await?;
    let replica_lag = match lag {
        Some(lag) => {
            let progress = ProgressBar::new_spinner().with_message("waiting for the replica to catch up");
            progress.enable_steady_tick(Duration::from_millis(200));
            let report = lag.finish().await?;
            progress.finish_and_clear();
            Some(report)
        }
        None => None,
    };
    if let Some(events_out) = &mut events_out {
        events_out.load_ended().await?;
    }
    let elapsed = measured.elapsed;
    let cpu_after = (system::own_cpu_seconds(), pg_server.as_ref().map(system::PgServer::cpu_seconds));
    if let Some(server) = server {
        server.stop().await?;
    }
    let events_out = match events_out {
        Some(mut events_out) => {
            let progress = ProgressBar::new_spinner().with_message("waiting for the relay to publish every event");
            progress.enable_steady_tick(Duration::from_millis(200));
            events_out.drain().await?;
            progress.finish_and_clear();
            Some(events_out.finish().await?)
        }
        None => None,
    };
    let wal_after = store.wal_lsn().await?;
    let stats_after = db.engine.stats();
    let commit_stages_seconds = store
        .stage_times()
        .into_iter()
        .zip(stages_before)
        .map(|((name, after), (_, before))| (name.to_owned(), after - before))
        .collect();

    let progress = ProgressBar::new_spinner().with_message("checking conservation and balance rules");
    progress.enable_steady_tick(Duration::from_millis(200));
    let recon = tally_recon::check_ledger(&tally_recon::Recon::new(&store, tally_recon::POOL_SIZE_MIN)).await?;
    progress.finish_and_clear();

    let batches = stats_after.batches - stats_before.batches;
    let batched = stats_after.transfers - stats_before.transfers;
    let committed = measured.committed;
    let cpu_seconds_tally = cpu_after.0 - cpu_before.0;
    let cpu_seconds_postgres = cpu_after.1.zip(cpu_before.1).map(|(a, b)| a - b);
    let report = BenchReport {
        mode: format!("{:?}", config.mode).to_lowercase(),
        accounts: config.accounts,
        distribution: format!("{:?}", config.distribution).to_lowercase(),
        zipf_exponent: config.zipf_exponent,
        hottest_account_share: measured.hottest_share,
        concurrency: config.concurrency,
        batch_size: config.batch_size,
        pending_percent: config.pending_percent,
        duration_seconds: elapsed.as_secs_f64(),
        transfers_per_second: committed as f64 / elapsed.as_secs_f64(),
        committed,
        refused_valid: measured.refused,
        overloaded: measured.overloaded,
        requests: measured.requests,
        latency_ms: report::Latency::from_histogram(&measured.latency_us),
        mean_batch_size: if batches == 0 { 0.0 } else { batched as f64 / batches as f64 },
        speculation_reruns: stats_after.reruns - stats_before.reruns,
        wal_bytes_per_transfer: report::wal_per_transfer(&wal_before, &wal_after, committed),
        cpu_seconds_tally,
        cpu_seconds_postgres,
        tally_cpu_us_per_transfer: report::cpu_us_per_transfer(Some(cpu_seconds_tally), committed),
        postgres_cpu_us_per_transfer: report::cpu_us_per_transfer(cpu_seconds_postgres, committed),
        peak_rss_mib_tally: system::own_rss_mib().1,
        peak_rss_mib_postgres: measured.peak_pg_rss_mib,
        commit_stages_seconds,
        conservation_ok: recon.is_clean(),
        findings: recon.findings.iter().map(|f| format!("{}: {} {}", f.check, f.subject, f.detail)).collect(),
        throughput_per_second: measured.per_second,
        tally_rss_mib_per_second: measured.tally_rss_mib,
        latency_distribution_ms: report::distribution(&measured.latency_us),
        events_out,
        replica_lag,
        postgres_settings: settings,
        machine: report::machine(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    db.engine.shutdown().await;
    Ok(report)
}

/// Where the benchmark's clients send their transfers.
#[derive(Clone)]
struct Handles {
    store: Store,
    engine: Engine,
    /// The API server, in `BenchMode::Http`.
    http: Option<http::HttpTarget>,
}

/// Opens the accounts and funds each from an unrestricted bank account, through the engine.
async fn open_accounts(db: &Handles, count: usize) -> Result<Vec<AccountId>, BenchError> {
    let progress = ProgressBar::new(count as u64 * 2).with_style(
        ProgressStyle::with_template("{msg:>22} [{bar:40}] {pos}/{len} ({per_sec})").expect("valid template"),
    );
    progress.set_message("opening accounts");
    let bank = NewAccount {
        ledger: tally_core::LedgerId::DEFAULT,
        id: None,
        code: None,
        currency: "USD".into(),
        rule: BalanceRule::Unrestricted,
        metadata: None,
    };
    let bank_id = db.store.create_account(&bank, BENCH_ACTOR).await?.0.account.id;
    let ids = crate::open_accounts(&db.store, count, BalanceRule::NoOverdraft, &progress).await?;
    progress.set_message("funding accounts");
    for chunk in ids.chunks(BATCH_SIZE_MAX) {
        let submissions: Vec<Submission> = chunk
            .iter()
            .map(|id| Submission {
                request: TransferRequest::posted(TransferId(Uuid::now_v7()), bank_id, *id, FUNDING_PER_ACCOUNT),
                actor: BENCH_ACTOR.into(),
            })
            .collect();
        let outcomes = db.engine.submit(submissions).await?;
        if let Some(bad) = outcomes.iter().find(|o| o.result != TransferResult::Ok) {
            return Err(BenchError::FundingFailed(bad.result.code()));
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    Ok(ids)
}

struct Measured {
    elapsed: Duration,
    committed: u64,
    refused: u64,
    overloaded: u64,
    requests: u64,
    latency_us: Histogram<u64>,
    per_second: Vec<f64>,
    tally_rss_mib: Vec<f64>,
    peak_pg_rss_mib: Option<f64>,
    hottest_share: f64,
}

/// Runs the clients until the deadline and gathers what they saw.
async fn drive(
    db: &Handles,
    config: &BenchConfig,
    picker: Arc<AccountPicker>,
    pg_server: Option<&system::PgServer>,
) -> Result<Measured, BenchError> {
    let committed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let seed = config.seed.unwrap_or_else(|| fastrand::u64(..));
    let mut clients = tokio::task::JoinSet::new();
    let start = Instant::now();
    for index in 0..config.concurrency {
        let client = Client::new(seed.wrapping_add(index as u64), config.pending_percent);
        clients.spawn(run_client(
            db.clone(),
            config.mode,
            config.batch_size,
            client,
            picker.clone(),
            committed.clone(),
            stop.clone(),
        ));
    }
    let sampled = sample(pg_server, &committed, config.duration, &stop).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = ClientTotals::new();
    while let Some(joined) = clients.join_next().await {
        total.merge(joined.map_err(|e| BenchError::ClientPanicked(e.to_string()))??);
    }
    Ok(Measured {
        elapsed: start.elapsed(),
        committed: total.committed,
        refused: total.refused,
        overloaded: total.overloaded,
        requests: total.requests,
        latency_us: total.latency_us,
        per_second: sampled.per_second,
        tally_rss_mib: sampled.tally_rss_mib,
        peak_pg_rss_mib: sampled.peak_pg_rss_mib,
        hottest_share: picker.hottest_share(),
    })
}

struct Sampled {
    per_second: Vec<f64>,
    tally_rss_mib: Vec<f64>,
    peak_pg_rss_mib: Option<f64>,
}

/// Once a second: record throughput and PostgreSQL's memory, and move the progress bar.
async fn sample(
    server: Option<&system::PgServer>,
    committed: &AtomicU64,
    duration: Duration,
    stop: &AtomicBool,
) -> Sampled {
    let progress = ProgressBar::new(duration.as_secs()).with_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:40}] {pos}/{len}s {msg}").expect("valid template"),
    );
    let mut per_second = Vec::new();
    let mut tally_rss_mib = Vec::new();
    let mut peak_pg_rss_mib: Option<f64> = None;
    let mut last = 0;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    for _ in 0..duration.as_secs().max(1) {
        ticker.tick().await;
        let now = committed.load(Ordering::Relaxed);
        let rate = (now - last) as f64;
        last = now;
        per_second.push(rate);
        if let Some(server) = server {
            let rss = server.rss_mib();
            peak_pg_rss_mib = Some(peak_pg_rss_mib.map_or(rss, |p: f64| p.max(rss)));
        }
        let rss = system::own_rss_mib().0;
        tally_rss_mib.push(rss);
        progress.set_message(format!("{rate:>9.0} transfers/s, tally RSS {rss:.0} MiB"));
        progress.inc(1);
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    progress.finish_and_clear();
    Sampled { per_second, tally_rss_mib, peak_pg_rss_mib }
}

struct ClientTotals {
    committed: u64,
    refused: u64,
    overloaded: u64,
    requests: u64,
    latency_us: Histogram<u64>,
}

impl ClientTotals {
    fn new() -> ClientTotals {
        ClientTotals {
            committed: 0,
            refused: 0,
            overloaded: 0,
            requests: 0,
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"),
        }
    }

    fn merge(&mut self, other: ClientTotals) {
        self.committed += other.committed;
        self.refused += other.refused;
        self.overloaded += other.overloaded;
        self.requests += other.requests;
        self.latency_us.add(&other.latency_us).expect("same bounds");
    }
}

async fn run_client(
    db: Handles,
    mode: BenchMode,
    batch_size: usize,
    mut client: Client,
    picker: Arc<AccountPicker>,
    committed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<ClientTotals, BenchError> {
    let mut totals = ClientTotals::new();
    let http = db.http.as_ref().map(http::HttpTarget::client);
    while !stop.load(Ordering::Relaxed) {
        let requests = client.next_request(&picker, batch_size);
        let started = Instant::now();
        // `None`: the engine or server answered `overloaded`.
        let answer: Option<Vec<TransferResult>> = match mode {
            BenchMode::Http => http.as_ref().expect("http mode starts a server").submit(&requests).await?,
            BenchMode::Engine | BenchMode::Direct => {
                let submissions: Vec<Submission> =
                    requests.into_iter().map(|request| Submission { request, actor: BENCH_ACTOR.into() }).collect();
                let results = match mode {
                    BenchMode::Engine => {
                        db.engine.submit(submissions).await.map(|o| o.into_iter().map(|o| o.result).collect())
                    }
                    _ => direct(&db, submissions).await,
                };
                match results {
                    Ok(results) => Some(results),
                    Err(error) if error.code() == "overloaded" => None,
                    Err(error) => return Err(error.into()),
                }
            }
        };
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
        totals.requests += 1;
        match answer {
            Some(results) => {
                totals.latency_us.saturating_record(micros);
                let ok = results.iter().filter(|r| r.is_success()).count() as u64;
                totals.committed += ok;
                totals.refused += results.len() as u64 - ok;
                committed.fetch_add(ok, Ordering::Relaxed);
            }
            None => totals.overloaded += 1,
        }
    }
    Ok(totals)
}

/// One SQL transaction per transfer through the same store code, for comparison.
async fn direct(db: &Handles, submissions: Vec<Submission>) -> Result<Vec<TransferResult>, tally_engine::EngineError> {
    let mut results = Vec::with_capacity(submissions.len());
    for submission in submissions {
        let outcome = db.engine.submit_direct(submission).await?;
        results.push(outcome.result);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BenchConfig {
        BenchConfig {
            mode: BenchMode::Engine,
            accounts: 100,
            duration: Duration::from_secs(1),
            distribution: Distribution::Zipf,
            zipf_exponent: 1.0,
            concurrency: 4,
            batch_size: 1,
            pending_percent: 0,
            committers: 3,
            speculative: true,
            linger: Duration::from_millis(1),
            seed: Some(1),
            events_out: EventsOutConfig::default(),
            replica_url: None,
            http_listen: None,
        }
    }

    #[test]
    fn settings_out_of_bounds_are_refused() {
        assert!(config().validate().is_ok());
        let bad = [
            BenchConfig { committers: 0, ..config() },
            BenchConfig { accounts: 1, ..config() },
            BenchConfig { batch_size: BATCH_SIZE_MAX + 1, ..config() },
            BenchConfig { concurrency: 0, ..config() },
            BenchConfig { pending_percent: 101, ..config() },
            BenchConfig { mode: BenchMode::Http, pending_percent: 10, ..config() },
            BenchConfig { http_listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))), ..config() },
            BenchConfig { zipf_exponent: 0.0, ..config() },
            BenchConfig { linger: tally_engine::BATCH_LINGER_MAX + Duration::from_micros(1), ..config() },
            BenchConfig {
                events_out: EventsOutConfig { webhooks_dead: 101, ..EventsOutConfig::default() },
                ..config()
            },
        ];
        for config in bad {
            let error = config.validate().expect_err("refused");
            assert_eq!(error.code(), "bench_settings_invalid", "{config:?}");
        }
    }
}
