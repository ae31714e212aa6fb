//! `tally bench --replica-url`: how far a streaming replica of the benchmark's database trails
//! the primary while the load runs. Every `SAMPLE_INTERVAL` the sampler reads the primary's log
//! position, then the replica's replay position, and records the replica's lag in time
//! (`tally_store::LagClock`: how long ago the primary was first past what the replica has
//! replayed) and in bytes. When the load ends, it measures how long the replica takes to replay
//! everything the primary wrote (the catch-up).

use crate::BenchError;
use comfy_table::Table;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tally_store::{LagClock, Replay, Store};
use tokio::task::JoinHandle;

/// How often the sampler reads both positions.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(10);
/// The longest the replica may take to catch up after the load before the run says it did not.
pub const CATCH_UP_MAX: Duration = Duration::from_secs(120);
/// Lag above this is recorded as this (an hour: a replica that far behind is broken).
const LAG_RECORDED_MAX_US: u64 = 3_600_000_000;

/// The replica's lag during the load.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaLagReport {
    pub samples: u64,
    /// Polls the replica did not answer.
    pub unanswered: u64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    pub lag_max_bytes: u64,
    /// Share of samples at which the replica had replayed everything the primary had written.
    pub caught_up_share: f64,
    /// From the end of the load until the replica had replayed everything the primary wrote;
    /// null if that took longer than `CATCH_UP_MAX`.
    pub catch_up_ms: Option<f64>,
}

impl ReplicaLagReport {
    pub fn table(&self) -> String {
        let mut table = Table::new();
        table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        table.set_header(vec!["replica lag", "value"]);
        let rows = [
            ("samples (every 10 ms)", format!("{} ({} unanswered)", self.samples, self.unanswered)),
            (
                "lag p50 / p99 / max",
                format!("{:.1} / {:.1} / {:.1} ms", self.lag_p50_ms, self.lag_p99_ms, self.lag_max_ms),
            ),
            ("lag max, bytes of WAL", self.lag_max_bytes.to_string()),
            ("samples fully caught up", format!("{:.0}%", self.caught_up_share * 100.0)),
            (
                "catch-up after the load",
                self.catch_up_ms.map_or_else(|| format!("over {CATCH_UP_MAX:?}"), |ms| format!("{ms:.0} ms")),
            ),
        ];
        for (name, value) in rows {
            table.add_row(vec![name.to_owned(), value]);
        }
        table.to_string()
    }
}

struct Samples {
    lag_us: Histogram<u64>,
    max_bytes: u64,
    caught_up: u64,
    unanswered: u64,
}

/// A running sampler: `finish` stops it and measures the catch-up.
pub struct LagSampler {
    primary: Store,
    replica: Store,
    stop: Arc<AtomicBool>,
    task: JoinHandle<Samples>,
}

impl LagSampler {
    /// Connects to the replica, checks that it is a standby, and starts sampling.
    pub async fn start(primary: &Store, replica_url: &str) -> Result<LagSampler, BenchError> {
        let replica = Store::connect(replica_url, 1)?;
        if let Replay::NotInRecovery(_) = replica.replay_position().await? {
            return Err(BenchError::Invalid("--replica-url names a server that is not a standby".into()));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(sample(primary.clone(), replica.clone(), stop.clone()));
        Ok(LagSampler { primary: primary.clone(), replica, stop, task })
    }

    /// Stops sampling; then waits for the replica to replay everything the primary wrote.
    pub async fn finish(self) -> Result<ReplicaLagReport, BenchError> {
        let ended = Instant::now();
        self.stop.store(true, Ordering::SeqCst);
        let samples = self.task.await.map_err(|error| BenchError::Task(error.to_string()))?;
        let target = self.primary.wal_position().await?;
        let mut catch_up_ms = None;
        while ended.elapsed() < CATCH_UP_MAX {
            if let Ok(Replay::At(at)) = self.replica.replay_position().await
                && at >= target
            {
                catch_up_ms = Some(ended.elapsed().as_secs_f64() * 1e3);
                break;
            }
            tokio::time::sleep(SAMPLE_INTERVAL).await;
        }
        self.replica.close();
        let h = &samples.lag_us;
        let count = h.len();
        let ms = |us: u64| us as f64 / 1e3;
        Ok(ReplicaLagReport {
            samples: count,
            unanswered: samples.unanswered,
            lag_p50_ms: ms(h.value_at_quantile(0.5)),
            lag_p99_ms: ms(h.value_at_quantile(0.99)),
            lag_max_ms: ms(h.max()),
            lag_max_bytes: samples.max_bytes,
            caught_up_share: if count == 0 { 0.0 } else { samples.caught_up as f64 / count as f64 },
            catch_up_ms,
        })
    }
}

async fn sample(primary: Store, replica: Store, stop: Arc<AtomicBool>) -> Samples {
    let mut clock = LagClock::default();
    let mut samples = Samples {
        lag_us: Histogram::new_with_bounds(1, LAG_RECORDED_MAX_US, 3).expect("valid histogram bounds"),
        max_bytes: 0,
        caught_up: 0,
        unanswered: 0,
    };
    let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::SeqCst) {
        ticks.tick().await;
        if let Ok(at) = primary.wal_position().await {
            clock.primary_at(Instant::now(), at);
        }
        match replica.replay_position().await {
            Ok(Replay::At(replayed)) => {
                let (lag, bytes) = clock.lag(Instant::now(), replayed);
                let us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX).clamp(1, LAG_RECORDED_MAX_US);
                samples.lag_us.record(us).expect("within the histogram's bounds");
                samples.max_bytes = samples.max_bytes.max(bytes);
                samples.caught_up += u64::from(bytes == 0);
            }
            _ => samples.unanswered += 1,
        }
    }
    samples
}
