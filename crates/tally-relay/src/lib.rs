//! Events out of Tally: the outbox (`events`, gap-free and in commit order) pushed to the
//! systems around the ledger, at least once and in order, with nothing lost.
//!
//! - [`nats`]: a relay that publishes every event to a NATS JetStream stream, subject
//!   `<prefix>.<type>`, with `Nats-Msg-Id` set to the event's sequence number so that
//!   JetStream's duplicate window drops what a restarted relay sends again. Its cursor advances
//!   only after JetStream acknowledged.
//! - [`webhooks`] and [`dispatch`]: endpoints registered with an event-type filter, each
//!   delivery signed ([`signature`], HMAC-SHA256 over the timestamp and the body, as Stripe
//!   does), retried with exponential backoff and jitter, then parked; each endpoint in order,
//!   each on a task of its own, so that a dead endpoint delays nobody else.
//! - [`lease`]: one active relay per name on a database. The lease is a session advisory lock
//!   on a connection of its own, and the cursor moves only through that connection, so a relay
//!   that lost its lease cannot move it; a second relay stands by until the lock is free.
//!
//! Every payload is `tally_views::EventView`: the shape of `GET /v1/events`.
//!
//! It owns the SQL on `relay_cursors`, `webhook_endpoints`, `webhook_deliveries` and
//! `webhook_attempts` (their schema is in tally-store's migrations, with every table's), reads
//! events through `Store::events_with_subjects`, and writes its audit rows through
//! `tally_store::journal`.

pub mod dispatch;
mod http;
pub mod lease;
pub mod nats;
pub mod signature;
pub mod stats;
pub mod webhooks;

pub use dispatch::{WebhookConfig, run_webhooks};
pub use nats::{NatsConfig, run_nats};
pub use stats::Stats;
pub use webhooks::{AttemptRecord, DeliveryQuery, DeliveryRecord, DeliveryStatus, NewWebhook, WebhookRecord};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::sync::Arc;
use std::time::Duration;
use tally_store::{Store, StoreError};
use thiserror::Error;
use tokio::sync::watch;
use tokio_postgres::NoTls;

/// The fewest and most connections an `Outbox` pool may have.
pub const POOL_SIZE_MIN: usize = 1;
pub const POOL_SIZE_MAX: usize = 16;
/// Events read from the outbox at a time.
pub const PAGE_EVENTS_MAX: i64 = 1000;
/// How long a failed relay or dispatcher waits at most before it tries again.
pub const RESTART_DELAY_MAX: Duration = Duration::from_secs(5);

/// The relay's handle on the ledger database: a small pool of its own for its tables and the
/// store for reading events. Cheap to clone; clones share the pool and the counters.
#[derive(Clone)]
pub struct Outbox {
    pool: Pool,
    store: Store,
    stats: Arc<Stats>,
}

impl Outbox {
    /// Builds a pool of at most `pool_size` connections to the database `store` connects to.
    /// Connects lazily.
    pub fn new(store: &Store, pool_size: usize) -> Outbox {
        assert!((POOL_SIZE_MIN..=POOL_SIZE_MAX).contains(&pool_size), "relay pool size {pool_size} out of bounds");
        let mut config = store.connection_config();
        config.application_name("tally-relay");
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(tally_store::POOL_WAIT_TIMEOUT))
            .create_timeout(Some(tally_store::CONNECT_TIMEOUT))
            .pre_recycle(store.stale_connection_hook())
            .build()
            .expect("the tokio runtime is configured for the timeouts");
        Outbox { pool, store: store.clone(), stats: Arc::default() }
    }

    /// The store events are read from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What this process's relay and dispatcher have done (for `/metrics`).
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Closes the pool.
    pub fn close(&self) {
        self.pool.close();
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, RelayError> {
        Ok(self.pool.get().await.map_err(StoreError::Pool)?)
    }

    /// Where every relay and the webhook dispatcher stand: their cursors and the newest event,
    /// read from the database (so any process can report on a relay that runs elsewhere).
    pub async fn positions(&self) -> Result<Positions, RelayError> {
        let client = self.client().await?;
        let newest: i64 = client.query_one("SELECT last_seq FROM event_sequence", &[]).await?.get(0);
        let relays = client
            .query("SELECT name, delivered_seq, holder FROM relay_cursors ORDER BY name", &[])
            .await?
            .iter()
            .map(|row| RelayPosition { name: row.get(0), delivered_seq: row.get(1), holder: row.get(2) })
            .collect();
        let endpoints = client
            .query("SELECT id, delivered_seq FROM webhook_endpoints WHERE status = 'active' ORDER BY id", &[])
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let parked: i64 =
            client.query_one("SELECT count(*) FROM webhook_deliveries WHERE status = 'parked'", &[]).await?.get(0);
        Ok(Positions { newest, relays, endpoints, parked })
    }
}

/// Where the relays stand.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Positions {
    /// The newest event's sequence number.
    pub newest: i64,
    pub relays: Vec<RelayPosition>,
    /// Active webhook endpoints and the sequence number each has been delivered up to.
    pub endpoints: Vec<(uuid::Uuid, i64)>,
    /// Deliveries parked, waiting for an operator.
    pub parked: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RelayPosition {
    /// `nats:<stream>` or `webhooks`.
    pub name: String,
    /// Every event up to this one has been acknowledged.
    pub delivered_seq: i64,
    /// The process that holds (or last held) the lease.
    pub holder: Option<String>,
}

#[derive(Debug, Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("the lease on {0} was lost")]
    LeaseLost(String),
    #[error("the delivery of event {seq} to webhook {id} was changed by someone else; starting over from the database")]
    DeliveryChanged { id: uuid::Uuid, seq: i64 },
    #[error("webhook {0} not found")]
    WebhookNotFound(uuid::Uuid),
    #[error("invalid webhook URL: {0}")]
    WebhookUrlInvalid(String),
    #[error("invalid event type filter: {0}")]
    EventTypeInvalid(String),
    #[error("invalid webhook: {0}")]
    WebhookInvalid(String),
    #[error("at most {0} webhooks may be registered")]
    WebhookLimitReached(i64),
    #[error("webhook {id} has no delivery of event {seq}")]
    DeliveryNotFound { id: uuid::Uuid, seq: i64 },
    #[error(
        "the delivery of event {seq} to webhook {id} is {status}, not parked: only a parked delivery can be redelivered"
    )]
    DeliveryNotParked { id: uuid::Uuid, seq: i64, status: String },
    #[error("invalid relay configuration: {0}")]
    Config(String),
}

impl From<tokio_postgres::Error> for RelayError {
    fn from(error: tokio_postgres::Error) -> RelayError {
        RelayError::Store(StoreError::from(error))
    }
}

impl RelayError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RelayError::Store(error) => error.code(),
            RelayError::Nats(_) => "nats_unavailable",
            RelayError::LeaseLost(_) => "lease_lost",
            RelayError::DeliveryChanged { .. } => "delivery_changed",
            RelayError::WebhookNotFound(_) => "webhook_not_found",
            RelayError::WebhookUrlInvalid(_) => "webhook_url_invalid",
            RelayError::EventTypeInvalid(_) => "event_type_invalid",
            RelayError::WebhookInvalid(_) => "webhook_invalid",
            RelayError::WebhookLimitReached(_) => "webhook_limit_reached",
            RelayError::DeliveryNotFound { .. } => "delivery_not_found",
            RelayError::DeliveryNotParked { .. } => "delivery_not_parked",
            RelayError::Config(_) => "relay_config_invalid",
        }
    }
}

/// The name a relay gives itself in `relay_cursors.holder`: host and process id.
pub fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}

/// Waits `delay`, or less if `shutdown` turns true; says whether it did.
pub(crate) async fn sleep_or_shutdown(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => *shutdown.borrow(),
        changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
    }
}

/// The delay before the `failures`-th retry: exponential from `base`, at most `max`, with
/// jitter (uniformly between half and all of it), so that retries of many relays spread out.
pub fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    assert!(failures >= 1, "a backoff follows a failure");
    let exponent = (failures - 1).min(30);
    let full = base.saturating_mul(1u32 << exponent).min(max);
    let half = full / 2;
    half + full.saturating_sub(half).mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        for failures in 1..=40 {
            let delay = backoff(base, max, failures);
            let full = base.saturating_mul(1u32 << (failures - 1).min(30)).min(max);
            assert!(delay >= full / 2 && delay <= full, "{failures}: {delay:?} outside {:?}..={full:?}", full / 2);
        }
        assert_eq!(backoff(Duration::ZERO, max, 3), Duration::ZERO);
    }
}
