//! Positions in PostgreSQL's write-ahead log, for reading from a streaming replica: where the
//! primary has written to (`wal_position`, after a write), how far a replica has replayed
//! (`replay_position`), and how long ago the primary was where the replica is now
//! (`LagClock`, from samples of the primary's position: it needs no privileges, unlike
//! `pg_stat_replication`, and reads zero on an idle primary, unlike
//! `now() - pg_last_xact_replay_timestamp()`).

use crate::{Store, StoreError};
use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};
use thiserror::Error;

/// A write-ahead log position (`pg_lsn`): a byte offset, written `X/Y` in hexadecimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("not a log position (expected two hexadecimal numbers as in 0/16B3748): {0:?}")]
pub struct LsnInvalid(pub String);

impl LsnInvalid {
    pub fn code(&self) -> &'static str {
        "lsn_invalid"
    }
}

impl FromStr for Lsn {
    type Err = LsnInvalid;

    fn from_str(text: &str) -> Result<Lsn, LsnInvalid> {
        let invalid = || LsnInvalid(text.chars().take(40).collect());
        let (high, low) = text.trim().split_once('/').ok_or_else(invalid)?;
        let part = |digits: &str| {
            if digits.is_empty() || digits.len() > 8 {
                return Err(invalid());
            }
            u32::from_str_radix(digits, 16).map_err(|_| invalid())
        };
        Ok(Lsn((u64::from(part(high)?) << 32) | u64::from(part(low)?)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// How far a server has replayed the log, or that it is not replaying (not a standby).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// A standby that has replayed up to here.
    At(Lsn),
    /// Not in recovery: a primary (a promoted standby, say), whose data is current.
    NotInRecovery(Lsn),
}

impl Store {
    /// Where the server has written its log up to (`pg_current_wal_lsn()`): asked after a write
    /// committed, a position at or past that write's commit record, so that a replica that has
    /// replayed up to it holds the write.
    pub async fn wal_position(&self) -> Result<Lsn, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint").await?;
        Ok(offset(client.query_one(&statement, &[]).await?.get(0)))
    }

    /// How far this server (a replica) has replayed the primary's log.
    pub async fn replay_position(&self) -> Result<Replay, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT pg_is_in_recovery(), \
                        (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END \
                         - '0/0'::pg_lsn)::bigint",
            )
            .await?;
        let row = client.query_one(&statement, &[]).await?;
        let in_recovery: bool = row.get(0);
        // A standby that has not replayed anything yet has no position.
        let lsn = row.get::<_, Option<i64>>(1).map(offset).unwrap_or_default();
        Ok(if in_recovery { Replay::At(lsn) } else { Replay::NotInRecovery(lsn) })
    }
}

/// A position as PostgreSQL's `pg_lsn - '0/0'` gives it (below 2^63 bytes of log in practice).
fn offset(bytes: i64) -> Lsn {
    Lsn(u64::try_from(bytes).expect("a log position is not negative"))
}

/// Samples of the primary's log position kept at most (at one sample per 10 ms, ten seconds).
pub const LAG_SAMPLES_MAX: usize = 1_000;

/// How long ago the primary was where a replica is now: a bounded history of the primary's
/// position, `(when, where)`, oldest first.
#[derive(Debug, Default)]
pub struct LagClock {
    samples: VecDeque<(Instant, Lsn)>,
}

impl LagClock {
    /// Records that the primary had written up to `at` at `when` (samples come in time order).
    pub fn primary_at(&mut self, when: Instant, at: Lsn) {
        if let Some(&(_, last)) = self.samples.back() {
            if at == last {
                return; // Idle: the earliest sample at this position is the one that counts.
            }
            if at < last {
                // Another server is the primary now (a promoted standby that had not received
                // everything): positions before it say nothing about it.
                self.samples.clear();
            }
        }
        if self.samples.len() == LAG_SAMPLES_MAX {
            self.samples.pop_front();
        }
        self.samples.push_back((when, at));
    }

    /// The replica's lag at `now` when it has replayed up to `replayed`: zero when it has the
    /// primary's newest sampled position, else the time since the first sample it has not
    /// replayed (at least that long: samples are taken at intervals), and the bytes behind.
    pub fn lag(&self, now: Instant, replayed: Lsn) -> (Duration, u64) {
        let Some(&(_, newest)) = self.samples.back() else { return (Duration::ZERO, 0) };
        if replayed >= newest {
            return (Duration::ZERO, 0);
        }
        let first_missing = self.samples.iter().find(|(_, at)| *at > replayed).map(|(when, _)| *when);
        let since = first_missing.map_or(Duration::ZERO, |when| now.saturating_duration_since(when));
        (since, newest.0 - replayed.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_and_print_as_postgresql_writes_them() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.0, (0x16 << 32) | 0xB374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn(0));
        assert_eq!(Lsn(u64::MAX).to_string().parse::<Lsn>().unwrap(), Lsn(u64::MAX));
        assert!("0/1" > "0/0");
        for bad in ["", "16", "/1", "1/", "g/1", "1/2/3", "123456789/0", "-1/0", "1 /2x"] {
            assert_eq!(bad.parse::<Lsn>().unwrap_err().code(), "lsn_invalid", "{bad:?}");
        }
    }

    #[test]
    fn lag_is_the_time_since_the_first_position_the_replica_lacks() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut clock = LagClock::default();
        assert_eq!(clock.lag(at(0), Lsn(0)), (Duration::ZERO, 0));
        clock.primary_at(at(0), Lsn(100));
        clock.primary_at(at(10), Lsn(100)); // idle: not a new sample
        clock.primary_at(at(20), Lsn(200));
        clock.primary_at(at(30), Lsn(300));
        assert_eq!(clock.lag(at(50), Lsn(300)), (Duration::ZERO, 0));
        assert_eq!(clock.lag(at(50), Lsn(400)), (Duration::ZERO, 0));
        assert_eq!(clock.lag(at(50), Lsn(250)), (Duration::from_millis(20), 50));
        assert_eq!(clock.lag(at(50), Lsn(150)), (Duration::from_millis(30), 150));
        assert_eq!(clock.lag(at(50), Lsn(50)), (Duration::from_millis(50), 250));
    }

    #[test]
    fn the_history_is_bounded() {
        let start = Instant::now();
        let mut clock = LagClock::default();
        for i in 0..(LAG_SAMPLES_MAX as u64 * 2) {
            clock.primary_at(start + Duration::from_millis(i), Lsn(i + 1));
        }
        assert_eq!(clock.samples.len(), LAG_SAMPLES_MAX);
        // Behind every kept sample: at least as old as the oldest one kept.
        let now = start + Duration::from_millis(LAG_SAMPLES_MAX as u64 * 2);
        assert_eq!(clock.lag(now, Lsn(0)).0, Duration::from_millis(LAG_SAMPLES_MAX as u64));
    }

    #[test]
    fn a_new_primary_behind_the_old_one_starts_a_new_history() {
        let start = Instant::now();
        let mut clock = LagClock::default();
        clock.primary_at(start, Lsn(10));
        clock.primary_at(start + Duration::from_millis(5), Lsn(5));
        assert_eq!(clock.samples.len(), 1);
        assert_eq!(clock.lag(start + Duration::from_millis(9), Lsn(4)), (Duration::from_millis(4), 1));
    }
}
