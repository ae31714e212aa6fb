//! Prometheus metrics: requests, latencies, results by code, the engine's batches and queue, and
//! events out (relay and webhook positions read from the database at each scrape, so that a relay
//! running in another process is reported too; this process's relay counters).
//!
//! `prometheus-client` writes the OpenMetrics text format, where a counter family `x` is
//! described by `# HELP x` and `# TYPE x counter` and its samples are `x_total`; the answer says
//! so in its content type (`CONTENT_TYPE`), since the older Prometheus text format (`text/plain;
//! version=0.0.4`) names a family by its samples and would leave every counter undescribed.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Instant;

/// The content type of `Metrics::render`'s text: OpenMetrics 1.0.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RelayLabels {
    pub relay: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub webhook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadLabels {
    /// `replica` or `primary`.
    pub from: String,
    /// Why a read went to the primary (`none` when it went to the replica).
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

/// How long a scrape waits for the relays' positions from the database before it answers
/// without them.
pub const POSITIONS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    /// One counter per transfer result, indexed by its number: counting allocates nothing.
    transfer_results: Vec<Counter>,
    engine_batches: Gauge,
    engine_transfers: Gauge,
    engine_queue: Gauge,
    engine_reruns: Gauge,
    engine_cooldown_batches: Gauge,
    engine_mean_batch: Gauge,
    /// Read-only requests by where they ran, when a replica is configured.
    reads: Family<ReadLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tally");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        let transfer_results = Family::<CodeLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by method, route and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency by route", latency.clone());
        registry.register("transfer_results", "Transfers answered, by result code", transfer_results.clone());
        let transfer_results = tally_core::TransferResult::ALL
            .iter()
            .map(|result| transfer_results.get_or_create(&CodeLabels { code: result.code().to_owned() }).clone())
            .collect();
        let engine_batches = Gauge::default();
        let engine_transfers = Gauge::default();
        let engine_queue = Gauge::default();
        let engine_reruns = Gauge::default();
        let engine_cooldown_batches = Gauge::default();
        let engine_mean_batch = Gauge::default();
        registry.register(
            "engine_batches_committed",
            "Batches the engine committed since start",
            engine_batches.clone(),
        );
        registry.register("engine_transfers_committed", "Transfers in those batches", engine_transfers.clone());
        registry.register("engine_queue_depth", "Transfers accepted and not yet answered", engine_queue.clone());
        registry.register("engine_reruns", "Batches re-run through the locking path", engine_reruns.clone());
        registry.register(
            "engine_cooldown_batches",
            "Batches decided through the locking path because a batch was re-run shortly before (the cool-down)",
            engine_cooldown_batches.clone(),
        );
        registry.register(
            "engine_mean_batch_size",
            "Transfers per committed batch, on average",
            engine_mean_batch.clone(),
        );
        let reads = Family::<ReadLabels, Counter>::default();
        registry.register(
            "replica_reads",
            "Read-only requests with a replica configured, by where they ran (replica or primary) and why a read \
             went to the primary (replica_unavailable, replica_not_standby, replica_lagging, replica_behind, \
             replica_failed, replica_missing)",
            reads.clone(),
        );
        Metrics {
            registry,
            reads,
            requests,
            latency,
            transfer_results,
            engine_batches,
            engine_transfers,
            engine_queue,
            engine_reruns,
            engine_cooldown_batches,
            engine_mean_batch,
        }
    }

    /// Counts a read-only request that ran on `source`, sent there for `fallback`'s reason.
    pub fn count_read(&self, source: crate::replica::Source, fallback: Option<crate::replica::Fallback>) {
        let from = match source {
            crate::replica::Source::Replica => "replica",
            crate::replica::Source::Primary => "primary",
        };
        let reason = fallback.map_or("none", crate::replica::Fallback::code);
        self.reads.get_or_create(&ReadLabels { from: from.to_owned(), reason: reason.to_owned() }).inc();
    }

    pub fn count_result(&self, result: tally_core::TransferResult) {
        self.transfer_results[result as usize].inc();
    }

    /// The OpenMetrics text exposition (`CONTENT_TYPE`), with the engine's figures read now, this
    /// process's relay counters (`relays`), and the relays' positions (`None` when they could not
    /// be read: the rest is reported all the same).
    pub fn render(
        &self,
        engine: &tally_engine::Engine,
        relays: &tally_relay::Stats,
        positions: Option<&tally_relay::Positions>,
        replica: Option<crate::replica::Position>,
    ) -> String {
        let stats = engine.stats();
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.engine_batches.set(gauge(stats.batches));
        self.engine_transfers.set(gauge(stats.transfers));
        self.engine_queue.set(gauge(stats.queued_transfers));
        self.engine_reruns.set(gauge(stats.reruns));
        self.engine_cooldown_batches.set(gauge(stats.cooldown_batches));
        self.engine_mean_batch.set(gauge(stats.transfers.checked_div(stats.batches).unwrap_or(0)));
        let mut text = String::new();
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        encode_registry(&mut text, &self.registry).expect("writing to a String");
        encode_registry(&mut text, &relay_registry(relays, positions)).expect("writing to a String");
        if let Some(replica) = replica {
            encode_registry(&mut text, &replica_registry(replica)).expect("writing to a String");
        }
        encode_eof(&mut text).expect("writing to a String");
        text
    }
}

fn gauge(value: i64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(value);
    gauge
}

fn counter(value: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(value);
    counter
}

/// The replica's state as the watcher last saw it.
fn replica_registry(position: crate::replica::Position) -> Registry {
    use prometheus_client::metrics::gauge::Gauge as FloatGauge;
    let mut registry = Registry::with_prefix("tally");
    registry.register(
        "replica_up",
        "1 if the replica answered the last poll and is a standby (reads may go to it), else 0",
        gauge(i64::from(position.up && position.standby)),
    );
    let seconds = FloatGauge::<f64, std::sync::atomic::AtomicU64>::default();
    seconds.set(position.lag.as_secs_f64());
    registry.register(
        "replica_lag_seconds",
        "How long ago the primary had written the first log position the replica has not replayed (0: caught up)",
        seconds,
    );
    registry.register(
        "replica_lag_bytes",
        "Bytes of log the primary had written and the replica had not replayed, at the last poll",
        gauge(i64::try_from(position.lag_bytes).unwrap_or(i64::MAX)),
    );
    registry
}

/// The relay families, made afresh at each scrape: webhooks and relays come and go, and a
/// family kept across scrapes would go on reporting the ones that went.
fn relay_registry(stats: &tally_relay::Stats, positions: Option<&tally_relay::Positions>) -> Registry {
    use std::sync::atomic::Ordering;
    use tally_relay::Stats;
    let mut registry = Registry::with_prefix("tally");
    registry.register(
        "relay_published",
        "Events JetStream acknowledged to this process's NATS relay (re-sends included)",
        counter(Stats::get(&stats.nats_published)),
    );
    registry.register(
        "relay_duplicates",
        "Of those, events JetStream already had (re-sends after a restart, dropped by message id)",
        counter(Stats::get(&stats.nats_duplicates)),
    );
    let deliveries = Family::<OutcomeLabels, Counter>::default();
    for (outcome, value) in
        [("delivered", &stats.webhook_delivered), ("failed", &stats.webhook_failed), ("parked", &stats.webhook_parked)]
    {
        deliveries.get_or_create(&OutcomeLabels { outcome: outcome.to_owned() }).inc_by(Stats::get(value));
    }
    registry.register(
        "webhook_deliveries",
        "Webhook delivery attempts by this process, by outcome: delivered (2xx), failed (retried later), parked \
         (out of attempts)",
        deliveries,
    );
    let active = Family::<RelayLabels, Gauge>::default();
    for (relay, flag) in [("nats", &stats.nats_active), ("webhooks", &stats.webhooks_active)] {
        active.get_or_create(&RelayLabels { relay: relay.to_owned() }).set(i64::from(flag.load(Ordering::Relaxed)));
    }
    registry.register("relay_active", "1 while this process holds the relay's lease and relays", active);
    registry.register(
        "relay_positions_read",
        "1 if the relays' positions below were read from the database at this scrape, 0 if it could not be read",
        gauge(i64::from(positions.is_some())),
    );
    let Some(positions) = positions else { return registry };
    registry.register("events_newest_seq", "The newest event's sequence number", gauge(positions.newest));
    let delivered = Family::<RelayLabels, Gauge>::default();
    let lag = Family::<RelayLabels, Gauge>::default();
    // The webhook dispatcher's lease row carries no position: each endpoint has its own.
    for relay in positions.relays.iter().filter(|r| r.name != tally_relay::dispatch::LEASE_NAME) {
        let labels = RelayLabels { relay: relay.name.clone() };
        delivered.get_or_create(&labels).set(relay.delivered_seq);
        lag.get_or_create(&labels).set(positions.newest.saturating_sub(relay.delivered_seq).max(0));
    }
    registry.register(
        "relay_delivered_seq",
        "Every event up to this sequence number was acknowledged by the relay's destination (any process's relay)",
        delivered,
    );
    registry.register("relay_lag_events", "Events committed and not yet acknowledged, by relay", lag);
    let webhook_lag = Family::<WebhookLabels, Gauge>::default();
    for (id, delivered_seq) in &positions.endpoints {
        webhook_lag
            .get_or_create(&WebhookLabels { webhook: id.to_string() })
            .set(positions.newest.saturating_sub(*delivered_seq).max(0));
    }
    registry.register(
        "webhook_lag_events",
        "Events after the active endpoint's position (delivered or not matching its filter), by endpoint",
        webhook_lag,
    );
    registry.register(
        "webhook_deliveries_parked",
        "Webhook deliveries parked, waiting to be redelivered by hand",
        gauge(positions.parked),
    );
    registry
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// Middleware: counts every request and times it, labelled by route template (not raw path,
/// so that ids do not explode the label space).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.latency.get_or_create(&RouteLabels { route: route.clone() }).observe(started.elapsed().as_secs_f64());
    state.metrics.requests.get_or_create(&RequestLabels { method, route, status }).inc();
    response
}
