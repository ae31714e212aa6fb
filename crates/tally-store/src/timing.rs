//! Where a batch commit spends its time, stage by stage, summed over every batch since start.
//! Wall-clock time seen from Tally, so database stages include the round trip.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The stages of a batch commit, in order.
pub const STAGES: [&str; 10] = [
    "begin",
    "prefetch transfers",
    "lock (or read) accounts",
    "apply (core)",
    "copy journal rows",
    "update accounts",
    "audit rows",
    "await predecessor",
    "events",
    "commit",
];

#[derive(Default)]
pub struct StageTimes {
    nanos: [AtomicU64; STAGES.len()],
}

impl StageTimes {
    /// Per stage: (name, total seconds).
    pub fn snapshot(&self) -> Vec<(&'static str, f64)> {
        STAGES.iter().zip(&self.nanos).map(|(name, n)| (*name, n.load(Ordering::Relaxed) as f64 / 1e9)).collect()
    }
}

/// Measures consecutive stages of one commit.
pub struct Stopwatch<'a> {
    times: &'a StageTimes,
    last: Instant,
}

impl<'a> Stopwatch<'a> {
    pub fn start(times: &'a StageTimes) -> Stopwatch<'a> {
        Stopwatch { times, last: Instant::now() }
    }

    /// Ends the stage `index` of `STAGES` (a stage may be lapped several times).
    pub fn lap(&mut self, index: usize) {
        let now = Instant::now();
        let nanos = u64::try_from((now - self.last).as_nanos()).unwrap_or(u64::MAX);
        self.times.nanos[index].fetch_add(nanos, Ordering::Relaxed);
        self.last = now;
    }
}
