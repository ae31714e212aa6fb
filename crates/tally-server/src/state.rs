//! The server's configuration and the state every handler shares.

use crate::auth::KeyCache;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::replica::{Fallback, Reads, Replica, ReplicaConfig, Served, Source};
use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tally_engine::Engine;
use tally_recon::Recon;
use tally_store::{Store, StoreError};
use tokio::sync::{Semaphore, watch};

/// Bounds on the configuration.
pub const BODY_LIMIT_MAX: usize = 256 << 20;
pub const CONNECTIONS_MAX: usize = 100_000;
pub const IN_FLIGHT_MAX: usize = 100_000;
pub const REQUEST_TIMEOUT_MAX: Duration = Duration::from_secs(600);
/// Bounds on how long a shutdown may take.
pub const SHUTDOWN_TIMEOUT_MIN: Duration = Duration::from_secs(1);
pub const SHUTDOWN_TIMEOUT_MAX: Duration = tally_engine::SHUTDOWN_BOUND_MAX;
/// The longest an events long-poll (`wait=`) may wait.
pub const EVENTS_WAIT_MAX: Duration = Duration::from_secs(30);
/// How often the server looks for new events to wake long-polls and streams.
pub const EVENTS_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The most currencies whose scale is cached.
pub const SCALE_CACHE_MAX: usize = 10_000;
/// Connections reconciliation (end-of-day runs, statements, balances as of a time) opens at
/// most, beside the store's pool.
pub const RECON_POOL_SIZE: usize = 8;
/// Connections the relay's handle (webhook registrations, delivery log, `/metrics` positions, the
/// webhook dispatcher and the NATS relay) opens at most, beside the store's pool; each lease
/// holds one more connection of its own.
pub const RELAY_POOL_SIZE: usize = 4;

const _: () = assert!(RELAY_POOL_SIZE >= tally_relay::POOL_SIZE_MIN && RELAY_POOL_SIZE <= tally_relay::POOL_SIZE_MAX);

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request body, except on the batch endpoint.
    pub body_limit: usize,
    /// Largest body of `POST /v1/transfers/batch`.
    pub batch_body_limit: usize,
    /// Open connections at most; further connections wait to be accepted.
    pub max_connections: usize,
    /// Requests being handled at most; further requests get 503 `overloaded`.
    pub max_in_flight: usize,
    /// Requests per second per key (with an equal burst); 0 turns the limit off.
    pub rate_limit_per_key: u32,
    /// A request still running after this gets 408 (a transfer it submitted may still commit;
    /// retrying with the same id is safe).
    pub request_timeout: Duration,
    /// How long a verified key is trusted without asking the database again.
    pub key_cache_ttl: Duration,
    /// Reconcile each ledger day this long after it ended (plus a minute); `None`: no scheduled
    /// reconciliation.
    pub reconcile_after: Option<Duration>,
    /// The longest a shutdown takes, from the stop signal to the return of `serve`. Batches
    /// still unfinished shortly before it are abandoned (rolled back) and their callers are
    /// told the outcome is unknown.
    pub shutdown_timeout: Duration,
    /// Dispatch webhooks (`None`: not in this process). The dispatcher takes a lease, so that of
    /// several processes on one database only one dispatches; the others stand by.
    pub webhooks: Option<tally_relay::WebhookConfig>,
    /// Relay every event to NATS JetStream (`None`: no relay in this process). A lease per
    /// stream, as for webhooks.
    pub nats: Option<tally_relay::NatsConfig>,
    /// Send read-only endpoints to a streaming replica (`None`: every read on the primary).
    pub replica: Option<ReplicaConfig>,
    /// Serve the console from this directory instead of the copy built into the binary.
    pub console_dir: Option<std::path::PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit: 1 << 20,
            batch_body_limit: 16 << 20,
            max_connections: 10_000,
            max_in_flight: 20_000,
            rate_limit_per_key: 100_000,
            request_timeout: Duration::from_secs(30),
            key_cache_ttl: Duration::from_secs(1),
            reconcile_after: None,
            shutdown_timeout: Duration::from_secs(30),
            webhooks: Some(tally_relay::WebhookConfig::default()),
            nats: None,
            replica: None,
            console_dir: None,
        }
    }
}

impl ServerConfig {
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            ((1024..=BODY_LIMIT_MAX).contains(&self.body_limit), "body limit must be 1 KiB to 256 MiB"),
            (
                (self.body_limit..=BODY_LIMIT_MAX).contains(&self.batch_body_limit),
                "batch body limit must be at least the body limit and at most 256 MiB",
            ),
            ((1..=CONNECTIONS_MAX).contains(&self.max_connections), "max connections must be 1 to 100,000"),
            ((1..=IN_FLIGHT_MAX).contains(&self.max_in_flight), "max in-flight requests must be 1 to 100,000"),
            (
                (Duration::from_millis(100)..=REQUEST_TIMEOUT_MAX).contains(&self.request_timeout),
                "request timeout must be 100 ms to 10 min",
            ),
            (self.key_cache_ttl <= Duration::from_secs(60), "key cache TTL must be at most 60 s"),
            (
                (SHUTDOWN_TIMEOUT_MIN..=SHUTDOWN_TIMEOUT_MAX).contains(&self.shutdown_timeout),
                "shutdown timeout must be 1 s to 10 min",
            ),
        ];
        if let Some((_, message)) = checks.iter().find(|(ok, _)| !ok) {
            return Err((*message).to_owned());
        }
        if let Some(webhooks) = &self.webhooks {
            webhooks.validate().map_err(|error| error.to_string())?;
        }
        if let Some(nats) = &self.nats {
            nats.validate().map_err(|error| error.to_string())?;
        }
        if let Some(replica) = &self.replica {
            replica.validate()?;
            tally_store::check_conninfo(&replica.url)
                .map_err(|error| format!("the replica URL is not a connection string: {error}"))?;
        }
        Ok(())
    }
}

/// Request admission: the per-key rate limit and the in-flight bound.
pub struct Limits {
    /// Keyed by the API key's id (a `Copy` value: checking allocates nothing).
    rate: Option<DefaultKeyedRateLimiter<uuid::Uuid>>,
    pub in_flight: Arc<Semaphore>,
}

impl Limits {
    fn new(config: &ServerConfig) -> Limits {
        let rate = NonZeroU32::new(config.rate_limit_per_key)
            .map(|per_second| RateLimiter::keyed(Quota::per_second(per_second)));
        Limits { rate, in_flight: Arc::new(Semaphore::new(config.max_in_flight)) }
    }

    pub fn check_rate(&self, key: uuid::Uuid) -> Result<(), ApiError> {
        let Some(rate) = &self.rate else { return Ok(()) };
        rate.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut error = ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "this key sent more requests than its rate limit allows",
            );
            error.retry_after = Some(wait.as_secs().max(1));
            error
        })
    }
}

/// Currency scales, which never change once registered.
#[derive(Default)]
pub struct ScaleCache {
    scales: RwLock<HashMap<String, u8>>,
}

impl ScaleCache {
    pub async fn scale(&self, store: &Store, currency: &str) -> Result<u8, StoreError> {
        if let Some(scale) = self.scales.read().expect("scale cache poisoned").get(currency) {
            return Ok(*scale);
        }
        let scale = store.currency_scale(currency).await?;
        let mut scales = self.scales.write().expect("scale cache poisoned");
        if scales.len() >= SCALE_CACHE_MAX {
            scales.clear();
        }
        scales.insert(currency.to_owned(), scale);
        Ok(scale)
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Reads on the primary: the store and reconciliation.
    pub primary: Reads,
    /// The replica read-only endpoints go to, when configured (see `read`).
    pub replica: Option<Arc<Replica>>,
    pub engine: Engine,
    /// Reconciliation, on its own connections to the store's database.
    pub recon: Recon,
    /// Events out: webhook endpoints, their delivery log and the relays' positions, on
    /// `RELAY_POOL_SIZE` connections of its own.
    pub outbox: tally_relay::Outbox,
    pub config: Arc<ServerConfig>,
    pub keys: Arc<KeyCache>,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    pub scales: Arc<ScaleCache>,
    /// The newest committed event's sequence number, refreshed every `EVENTS_POLL_INTERVAL`.
    pub last_event: watch::Receiver<i64>,
    /// Turns true when the server begins to shut down: long-polls and streams end.
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// Builds the state and starts the events watcher; `shutdown` ends it.
    pub fn new(store: Store, engine: Engine, config: ServerConfig, shutdown: watch::Receiver<bool>) -> AppState {
        config.validate().expect("a valid server configuration");
        let (sender, last_event) = watch::channel(0);
        tokio::spawn(watch_events(store.clone(), sender, shutdown.clone()));
        let recon = Recon::new(&store, RECON_POOL_SIZE);
        let replica = config.replica.clone().map(|replica| {
            Replica::start(replica, store.clone(), shutdown.clone()).expect("a validated replica configuration")
        });
        AppState {
            primary: Reads { store: store.clone(), recon: recon.clone() },
            replica,
            recon,
            outbox: tally_relay::Outbox::new(&store, RELAY_POOL_SIZE),
            store,
            engine,
            limits: Arc::new(Limits::new(&config)),
            config: Arc::new(config),
            keys: Arc::default(),
            metrics: Arc::new(Metrics::new()),
            scales: Arc::default(),
            last_event,
            shutdown,
        }
    }
}

impl AppState {
    /// Runs a read-only request's `work` on the replica when it is fresh enough for the request
    /// (see `crate::replica`), else on the primary, and says where it ran. A read the replica
    /// fails with a server error, or answers not found or forbidden (perhaps only not replayed
    /// yet), is run again on the primary: a replica's lag never makes a read fail or miss a row.
    pub async fn read<T, F, Fut>(&self, headers: &HeaderMap, work: F) -> Result<(Served, T), ApiError>
    where
        F: Fn(Reads) -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>> + Send,
    {
        let min = crate::replica::min_lsn(headers)?;
        let Some(replica) = &self.replica else {
            let served = Served { source: Source::Primary, fallback: None, configured: false };
            return Ok((served, work(self.primary.clone()).await?));
        };
        let fallback = match replica.route(min).await {
            Ok(()) => match work(replica.reads.clone()).await {
                Ok(value) => {
                    self.metrics.count_read(Source::Replica, None);
                    return Ok((Served { source: Source::Replica, fallback: None, configured: true }, value));
                }
                Err(error) if error.status.is_server_error() => {
                    tracing::warn!(code = error.code, message = %error.message, "a read failed on the replica; reading from the primary");
                    Fallback::Failed
                }
                // Not found, or forbidden (a reader key is told 403 for an account that does
                // not exist): perhaps only not replayed yet.
                Err(error)
                    if matches!(
                        error.status,
                        axum::http::StatusCode::NOT_FOUND | axum::http::StatusCode::FORBIDDEN
                    ) =>
                {
                    Fallback::Missing
                }
                Err(error) => {
                    self.metrics.count_read(Source::Replica, None);
                    return Err(error);
                }
            },
            Err(fallback) => fallback,
        };
        self.metrics.count_read(Source::Primary, Some(fallback));
        let value = work(self.primary.clone()).await?;
        Ok((Served { source: Source::Primary, fallback: Some(fallback), configured: true }, value))
    }
}

async fn watch_events(store: Store, sender: watch::Sender<i64>, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(EVENTS_POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        match store.last_event_seq().await {
            Ok(seq) => {
                sender.send_if_modified(|last| {
                    let newer = seq > *last;
                    if newer {
                        *last = seq;
                    }
                    newer
                });
            }
            Err(error) => tracing::warn!(code = error.code(), %error, "reading the newest event failed"),
        }
    }
}
