//! Reads from a streaming replica (`tally serve --replica-url`).
//!
//! Read-only endpoints (history, transfer lookups, listings, statements, reports, balances as of
//! a time) run on the replica when it is fresh enough, so that they do not compete with posting;
//! everything else runs on the primary. The engine holds only the primary's store: no balance a
//! transfer is decided on is ever read from a replica, and `GET .../balance` without `as_of`
//! (the balance a client acts on) stays on the primary too.
//!
//! Freshness. A watcher samples the primary's log position and the replica's replay position
//! every `POLL_INTERVAL` (every `POLL_INTERVAL_WAITING` while a request waits), and keeps the
//! replica's lag (`tally_store::LagClock`). A read goes to the replica when:
//! - the request names no `Tally-Min-Lsn` and the lag is at most `max_lag`; or
//! - it names one (the `Tally-Commit-Lsn` of the caller's last write: read-your-writes) and
//!   the replica has replayed past it, waiting for that at most `wait`.
//!
//! Otherwise, or when the replica is down, is not a standby, or fails the read, the read runs
//! on the primary. Every answer says where it was read (`Tally-Read-From`) and, for a fallback,
//! why (`Tally-Read-Fallback`); `/metrics` counts both and shows the lag.

use crate::error::ApiError;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponseParts, ResponseParts};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tally_recon::Recon;
use tally_store::{LagClock, Lsn, Replay, Store};
use tokio::sync::{Notify, watch};

/// The request header naming the log position a read must see (read-your-writes).
pub const MIN_LSN: HeaderName = HeaderName::from_static("tally-min-lsn");
/// The response header of a write: where the primary's log was once it committed.
pub const COMMIT_LSN: HeaderName = HeaderName::from_static("tally-commit-lsn");
/// The response header of a read: `replica` or `primary`.
pub const READ_FROM: HeaderName = HeaderName::from_static("tally-read-from");
/// The response header of a read that could have gone to the replica and did not: why.
pub const READ_FALLBACK: HeaderName = HeaderName::from_static("tally-read-fallback");

/// How often the watcher samples both positions.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// ... and while a request waits for the replica to catch up.
pub const POLL_INTERVAL_WAITING: Duration = Duration::from_millis(5);
/// A position query that takes longer than this marks the replica down.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(1);
/// Bounds on the freshness settings.
pub const MAX_LAG_MAX: Duration = Duration::from_secs(3_600);
pub const WAIT_MAX: Duration = Duration::from_secs(10);
/// Connections to the replica at most (the store's reads and reconciliation's, each).
pub const REPLICA_POOL_SIZE: usize = 16;

const _: () = assert!(POLL_INTERVAL_WAITING.as_millis() < POLL_INTERVAL.as_millis());
const _: () = assert!(POLL_TIMEOUT.as_millis() < WAIT_MAX.as_millis());
const _: () = assert!(REPLICA_POOL_SIZE <= tally_store::POOL_SIZE_MAX);

#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaConfig {
    /// libpq connection string or URL of a streaming replica of the primary's database.
    pub url: String,
    /// Reads without `Tally-Min-Lsn` go to the primary while the replica lags more than this.
    pub max_lag: Duration,
    /// How long a read with `Tally-Min-Lsn` waits for the replica before it goes to the primary.
    pub wait: Duration,
}

impl ReplicaConfig {
    pub fn new(url: impl Into<String>) -> ReplicaConfig {
        ReplicaConfig { url: url.into(), max_lag: Duration::from_secs(1), wait: Duration::from_millis(500) }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.url.trim().is_empty() {
            return Err("the replica URL is empty".into());
        }
        if self.max_lag > MAX_LAG_MAX {
            return Err(format!("replica max lag must be at most {MAX_LAG_MAX:?}"));
        }
        if self.wait > WAIT_MAX {
            return Err(format!("replica wait must be at most {WAIT_MAX:?}"));
        }
        Ok(())
    }
}

/// What reads run on: one server's store and reconciliation handles.
#[derive(Clone)]
pub struct Reads {
    pub store: Store,
    pub recon: Recon,
}

/// Where a read ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Replica,
    Primary,
}

/// Why a read that could have gone to the replica ran on the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The replica did not answer the watcher.
    Unavailable,
    /// The server at the replica URL is not replaying a primary's log (not a standby).
    NotStandby,
    /// Lagging more than `max_lag`.
    Lagging,
    /// Not past the request's `Tally-Min-Lsn` within `wait`.
    Behind,
    /// The read failed on the replica (and was run again on the primary).
    Failed,
    /// The replica answered not found (or forbidden, which a reader key is told for an account
    /// that does not exist): perhaps not replayed yet, so the primary was asked.
    Missing,
}

impl Fallback {
    pub const ALL: [Fallback; 6] = [
        Fallback::Unavailable,
        Fallback::NotStandby,
        Fallback::Lagging,
        Fallback::Behind,
        Fallback::Failed,
        Fallback::Missing,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Fallback::Unavailable => "replica_unavailable",
            Fallback::NotStandby => "replica_not_standby",
            Fallback::Lagging => "replica_lagging",
            Fallback::Behind => "replica_behind",
            Fallback::Failed => "replica_failed",
            Fallback::Missing => "replica_missing",
        }
    }
}

/// Where a read ran and why, as response headers. Without a replica configured, nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub source: Source,
    pub fallback: Option<Fallback>,
    /// Whether a replica is configured at all (else the headers are left out).
    pub configured: bool,
}

impl Served {
    /// A read that only the primary may answer.
    pub fn primary(configured: bool) -> Served {
        Served { source: Source::Primary, fallback: None, configured }
    }
}

impl IntoResponseParts for Served {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut parts: ResponseParts) -> Result<ResponseParts, Self::Error> {
        if self.configured {
            let source = match self.source {
                Source::Replica => "replica",
                Source::Primary => "primary",
            };
            parts.headers_mut().insert(READ_FROM, HeaderValue::from_static(source));
            if let Some(fallback) = self.fallback {
                parts.headers_mut().insert(READ_FALLBACK, HeaderValue::from_static(fallback.code()));
            }
        }
        Ok(parts)
    }
}

/// What the watcher last saw of the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Answered the last poll.
    pub up: bool,
    /// In recovery (a standby).
    pub standby: bool,
    pub replayed: Lsn,
    pub lag: Duration,
    pub lag_bytes: u64,
}

impl Position {
    const UNKNOWN: Position =
        Position { up: false, standby: false, replayed: Lsn(0), lag: Duration::ZERO, lag_bytes: 0 };
}

/// The replica's handles and the watcher's view of it.
pub struct Replica {
    pub reads: Reads,
    pub config: ReplicaConfig,
    position: watch::Receiver<Position>,
    /// Requests waiting for the replica to catch up: the watcher polls faster while any do.
    waiting: AtomicUsize,
    hurry: Notify,
}

impl Replica {
    /// Connects (lazily) to the replica and starts the watcher, which ends on `shutdown`.
    pub fn start(
        config: ReplicaConfig,
        primary: Store,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Replica>, tally_store::StoreError> {
        config.validate().map_err(tally_store::StoreError::Invalid)?;
        let store = Store::connect(&config.url, REPLICA_POOL_SIZE)?;
        let recon = Recon::new(&store, REPLICA_POOL_SIZE.max(tally_recon::POOL_SIZE_MIN));
        let (sender, position) = watch::channel(Position::UNKNOWN);
        let replica = Arc::new(Replica {
            reads: Reads { store, recon },
            config,
            position,
            waiting: AtomicUsize::new(0),
            hurry: Notify::new(),
        });
        tokio::spawn(watch_replica(replica.clone(), primary, sender, shutdown));
        Ok(replica)
    }

    pub fn position(&self) -> Position {
        *self.position.borrow()
    }

    /// Where a read goes: the replica if it is fresh enough for `min` (see the module's docs),
    /// waiting for it at most `config.wait`.
    pub async fn route(&self, min: Option<Lsn>) -> Result<(), Fallback> {
        let usable = |position: &Position| {
            if !position.up {
                Err(Fallback::Unavailable)
            } else if !position.standby {
                Err(Fallback::NotStandby)
            } else {
                Ok(())
            }
        };
        let now = self.position();
        usable(&now)?;
        let Some(min) = min else {
            return if now.lag <= self.config.max_lag { Ok(()) } else { Err(Fallback::Lagging) };
        };
        if now.replayed >= min {
            return Ok(());
        }
        if self.config.wait.is_zero() {
            return Err(Fallback::Behind);
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.hurry.notify_one();
        let mut position = self.position.clone();
        let caught_up = tokio::time::timeout(self.config.wait, position.wait_for(|p| p.replayed >= min || !p.up)).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match caught_up {
            Ok(Ok(seen)) if seen.replayed >= min => usable(&seen),
            Ok(Ok(_)) => Err(Fallback::Unavailable),
            Ok(Err(_)) | Err(_) => Err(Fallback::Behind),
        }
    }
}

/// The `Tally-Min-Lsn` of a request, if any: 400 `invalid_header` when it is not a position.
pub fn min_lsn(headers: &HeaderMap) -> Result<Option<Lsn>, ApiError> {
    let Some(value) = headers.get(MIN_LSN) else { return Ok(None) };
    let invalid = || ApiError::bad_request("invalid_header", "Tally-Min-Lsn takes a log position such as 0/16B3748");
    let text = value.to_str().map_err(|_| invalid())?;
    text.parse::<Lsn>().map(Some).map_err(|_| invalid())
}

/// Middleware, with a replica configured: a write's answer says where the primary's log was once
/// the request was done (`Tally-Commit-Lsn`), at or past its commit, for the caller to read its
/// own writes with `Tally-Min-Lsn`. A write may have changed the ledger even when answered with an
/// error (a refused transfer is recorded), so every answer below 500 to a write carries it; an
/// answer whose position could not be read carries none.
pub async fn commit_lsn(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let write = !matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    let mut response = next.run(request).await;
    if state.replica.is_none() || !write || response.status().is_server_error() {
        return response;
    }
    match state.store.wal_position().await {
        Ok(at) => {
            let value = HeaderValue::from_str(&at.to_string()).expect("a log position is ASCII");
            response.headers_mut().insert(COMMIT_LSN, value);
        }
        Err(error) => tracing::warn!(code = error.code(), %error, "the primary's log position could not be read"),
    }
    response
}

async fn watch_replica(
    replica: Arc<Replica>,
    primary: Store,
    sender: watch::Sender<Position>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut clock = LagClock::default();
    let mut was_up = None;
    loop {
        let interval = if replica.waiting.load(Ordering::SeqCst) > 0 { POLL_INTERVAL_WAITING } else { POLL_INTERVAL };
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = replica.hurry.notified() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        // The primary's position first: a replica position read after it is compared with a
        // primary that was at least there.
        if let Ok(Ok(at)) = tokio::time::timeout(POLL_TIMEOUT, primary.wal_position()).await {
            clock.primary_at(Instant::now(), at);
        }
        let position = match tokio::time::timeout(POLL_TIMEOUT, replica.reads.store.replay_position()).await {
            Ok(Ok(Replay::At(replayed))) => {
                let (lag, lag_bytes) = clock.lag(Instant::now(), replayed);
                Position { up: true, standby: true, replayed, lag, lag_bytes }
            }
            Ok(Ok(Replay::NotInRecovery(at))) => {
                Position { standby: false, up: true, replayed: at, ..Position::UNKNOWN }
            }
            Ok(Err(error)) => {
                if was_up != Some(false) {
                    tracing::warn!(code = error.code(), %error, "the replica does not answer: reads go to the primary");
                }
                Position::UNKNOWN
            }
            Err(_) => {
                if was_up != Some(false) {
                    tracing::warn!("the replica did not answer within {POLL_TIMEOUT:?}: reads go to the primary");
                }
                Position::UNKNOWN
            }
        };
        if position.up && was_up == Some(false) {
            tracing::info!("the replica answers again");
        }
        if position.up && !position.standby && was_up != Some(true) {
            tracing::warn!("the server at the replica URL is not a standby: reads go to the primary");
        }
        was_up = Some(position.up);
        sender.send_replace(position);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_lsn_is_read_from_its_header_or_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(min_lsn(&headers).unwrap(), None);
        headers.insert(MIN_LSN, HeaderValue::from_static("1/A0"));
        assert_eq!(min_lsn(&headers).unwrap(), Some(Lsn((1 << 32) | 0xA0)));
        headers.insert(MIN_LSN, HeaderValue::from_static("yesterday"));
        assert_eq!(min_lsn(&headers).unwrap_err().code, "invalid_header");
    }

    #[test]
    fn fallback_codes_are_distinct() {
        let codes: std::collections::BTreeSet<_> = Fallback::ALL.iter().map(|f| f.code()).collect();
        assert_eq!(codes.len(), Fallback::ALL.len());
    }

    #[test]
    fn config_bounds_are_checked() {
        assert!(ReplicaConfig::new("host=replica").validate().is_ok());
        assert!(ReplicaConfig::new(" ").validate().is_err());
        let mut config = ReplicaConfig::new("host=replica");
        config.wait = WAIT_MAX + Duration::from_millis(1);
        assert!(config.validate().is_err());
        config.wait = WAIT_MAX;
        config.max_lag = MAX_LAG_MAX + Duration::from_secs(1);
        assert!(config.validate().is_err());
    }
}
