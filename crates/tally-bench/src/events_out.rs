//! Events out during `tally bench` (issue 13): the NATS JetStream relay and the webhook
//! dispatcher of `tally-relay`, run in the benchmark process on the benchmark's database beside
//! the load, so that the report says what pushing events out costs the posting path and how far
//! behind the relay falls.
//!
//! - `--nats-url`: the relay publishes to a stream of its own, `BENCH_<unix time>_<pid>_<n>`,
//!   subjects `bench_<unix time>_<pid>_<n>.<type>`, so that runs never share a stream or
//!   subjects with each other or with anything else on the server; the stream is deleted at the
//!   end unless kept. The relay starts once the accounts are opened and funded, and publishes
//!   that backlog before the load starts (timed: a catch-up from a standing start). During the
//!   load, lag (newest event minus the relay's cursor) is sampled every 100 ms, in events and as
//!   the age of the oldest unpublished event; after it, the time until the lag is 0. With
//!   `nats_after_load`, the relay is stopped while the load runs and started again when it
//!   stops: it then drains the load's events as a backlog, from its cursor in PostgreSQL.
//! - `--webhooks-dead N`: N endpoints at a port that refuses connections, filter `*`, with the
//!   dispatcher running its retries (default backoff) during the load.
//! - `--webhook-sink`: an HTTP receiver in this process that answers 200, with one endpoint.
//!
//! Relay and dispatcher read the ledger through a `Store` of their own (a small pool apart from
//! the engine's), as a separate `tally relay` process would. No SQL here: what is read of the
//! ledger goes through `tally_store` and `tally_relay`.

use crate::{BENCH_ACTOR, BenchError};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tally_relay::{NatsConfig, NewWebhook, Outbox, RelayError, Stats, WebhookConfig};
use tally_store::Store;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How often lag is sampled during the load.
pub const LAG_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// The longest wait for the relay to catch up before the load or drain after it.
pub const DRAIN_TIMEOUT_MAX: Duration = Duration::from_secs(3600);
/// How often the catch-up and drain waits look at the relay's cursor (an atomic, no query).
const DRAIN_POLL: Duration = Duration::from_millis(10);
/// Connections of the relay's and dispatcher's own store and outbox pools.
const RELAY_POOL_SIZE: usize = 4;

/// What to push out during the run.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsOutConfig {
    /// Relay every event to this NATS server's JetStream (`nats://host:port`).
    pub nats_url: Option<String>,
    /// Keep the relay stopped during the load; start it when the load stops and time the drain.
    pub nats_after_load: bool,
    /// Keep the run's stream instead of deleting it at the end.
    pub nats_keep_stream: bool,
    /// How long to wait for the relay to catch up before the load, and to drain after it.
    pub drain_timeout: Duration,
    /// Webhook endpoints at a port that refuses connections.
    pub webhooks_dead: usize,
    /// An HTTP receiver in this process answering 200, with one endpoint registered at it.
    pub webhook_sink: bool,
}

impl Default for EventsOutConfig {
    fn default() -> EventsOutConfig {
        EventsOutConfig {
            nats_url: None,
            nats_after_load: false,
            nats_keep_stream: false,
            drain_timeout: Duration::from_secs(300),
            webhooks_dead: 0,
            webhook_sink: false,
        }
    }
}

impl EventsOutConfig {
    /// Whether anything is pushed out at all.
    pub fn is_active(&self) -> bool {
        self.nats_url.is_some() || self.webhooks_dead > 0 || self.webhook_sink
    }

    pub fn validate(&self) -> Result<(), BenchError> {
        let invalid = |message: String| Err(BenchError::Invalid(message));
        match &self.nats_url {
            Some(url) => {
                if let Err(error) = NatsConfig::new(url).validate() {
                    return invalid(format!("--nats-url: {error}"));
                }
            }
            None if self.nats_after_load || self.nats_keep_stream => {
                return invalid("--nats-after and --nats-keep-stream need --nats-url".into());
            }
            None => {}
        }
        if self.drain_timeout.is_zero() || self.drain_timeout > DRAIN_TIMEOUT_MAX {
            return invalid(format!("--nats-drain-timeout must be more than 0 and at most {DRAIN_TIMEOUT_MAX:?}"));
        }
        let endpoints = self.webhooks_dead + usize::from(self.webhook_sink);
        if endpoints as i64 > tally_relay::webhooks::WEBHOOKS_MAX {
            return invalid(format!(
                "--webhooks-dead and --webhook-sink: at most {} endpoints together",
                tally_relay::webhooks::WEBHOOKS_MAX
            ));
        }
        Ok(())
    }
}

/// Max, median and 99th percentile of the lag samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LagSummary {
    pub max: f64,
    pub p50: f64,
    pub p99: f64,
}

impl LagSummary {
    fn of(values: &[f64]) -> Option<LagSummary> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        // Nearest rank.
        let at = |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        Some(LagSummary { max: at(1.0), p50: at(0.5), p99: at(0.99) })
    }
}

/// What the NATS relay did during the run.
#[derive(Debug, Clone, Serialize)]
pub struct NatsReport {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
    /// False with `--nats-after`: the relay was stopped during the load.
    pub relay_during_load: bool,
    pub stream_kept: bool,
    /// Events written before the load (accounts opened and funded), published by the relay
    /// started after them, before the load.
    pub setup_events: i64,
    /// How long that took; null when it did not finish within the drain timeout.
    pub setup_catch_up_seconds: Option<f64>,
    pub setup_catch_up_events_per_second: Option<f64>,
    /// Events the load wrote (one per transfer).
    pub events_written_during_load: i64,
    pub events_written_per_second: f64,
    /// Events the relay published (JetStream acknowledged, cursor moved) while the load ran.
    pub events_published_during_load: i64,
    pub relay_events_per_second_under_load: f64,
    /// Lag sampled every 100 ms during the load: events written and not yet acknowledged.
    pub lag_events: Option<LagSummary>,
    /// The same samples as the age of the oldest unpublished event (its time is stamped when
    /// its batch is decided, just before COMMIT), 0 when nothing is unpublished.
    pub lag_ms: Option<LagSummary>,
    pub lag_samples_events: Vec<i64>,
    /// Lag when the load stopped.
    pub backlog_at_load_end: i64,
    /// From the load's end (with `--nats-after`: the relay's restart then) until the lag was 0;
    /// null when it was not 0 within the drain timeout.
    pub drain_seconds: Option<f64>,
    pub drain_events_per_second: Option<f64>,
    /// Newest event minus the relay's cursor in PostgreSQL, at the end.
    pub final_lag_events: i64,
    /// The newest event's sequence number at the end: every event of the database.
    pub events_total: i64,
    /// Messages JetStream acknowledged to the relay (re-sends included), and of those, the
    /// ones it dropped as duplicates.
    pub published: u64,
    pub duplicates: u64,
    /// JetStream's own count of the stream's messages and bytes at the end.
    pub stream_messages: u64,
    pub stream_bytes: u64,
}

/// What the webhook dispatcher did during the run.
#[derive(Debug, Clone, Serialize)]
pub struct WebhooksReport {
    pub dead_endpoints: usize,
    /// The refused address the dead endpoints point at.
    pub dead_url: Option<String>,
    /// Events delivered to the dead endpoints (0: they refuse every connection).
    pub dead_delivered: i64,
    /// Failed attempts, scheduled to be tried again (the dead endpoints' retries).
    pub failed_attempts: u64,
    pub parked: u64,
    pub sink: bool,
    /// Deliveries the sink endpoint had while the load ran, and per second.
    pub sink_delivered_during_load: u64,
    pub sink_deliveries_per_second: Option<f64>,
    /// Requests the receiver answered over the whole run.
    pub sink_received: u64,
    /// Events written and not yet delivered to the sink when the load stopped.
    pub sink_lag_at_load_end: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventsOutReport {
    pub nats: Option<NatsReport>,
    pub webhooks: Option<WebhooksReport>,
}

/// A running relay task and the switch that stops it.
struct RelayTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), RelayError>>,
}

impl RelayTask {
    async fn stop(self) -> Result<(), BenchError> {
        let _ = self.stop.send(true);
        self.task.await.map_err(|error| BenchError::Task(format!("the relay task: {error}")))??;
        Ok(())
    }
}

struct Nats {
    config: NatsConfig,
    keep: bool,
    after_load: bool,
    /// The benchmark's own connection, to count and delete the stream.
    jetstream: async_nats::jetstream::Context,
    relay: Option<RelayTask>,
    setup_events: i64,
    setup_catch_up: Option<Duration>,
    load_start_newest: i64,
    load_start_delivered: i64,
    load_end_newest: i64,
    load_end_delivered: i64,
    sampler: Option<(Arc<AtomicBool>, JoinHandle<Vec<LagSample>>)>,
    samples: Vec<LagSample>,
    drain: Option<Duration>,
}

/// One lag sample: events not yet published, and the age of the oldest of them in ms.
type LagSample = (i64, f64);

struct Sink {
    received: Arc<AtomicU64>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    id: Uuid,
}

struct Webhooks {
    dispatcher: Option<RelayTask>,
    dead: Vec<Uuid>,
    dead_url: Option<String>,
    /// The newest event when the endpoints were registered: what each had been delivered.
    registered_at: i64,
    sink: Option<Sink>,
    delivered_at_load_start: u64,
    delivered_at_load_end: u64,
    sink_lag_at_load_end: Option<i64>,
}

/// Events out during one run, in its phases: `start` (after the accounts are funded),
/// `load_starting`, `load_ended`, `drain`, `finish`.
pub(crate) struct EventsOut {
    config: EventsOutConfig,
    store: Store,
    outbox: Outbox,
    nats: Option<Nats>,
    webhooks: Option<Webhooks>,
    load_start: Option<Instant>,
    load_end: Option<Instant>,
}

/// `BENCH_<unix time>_<pid>_<n>`: a stream name no other run (nor another bench of this
/// process) uses.
fn run_name() -> String {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    format!("{unix}_{}_{}", std::process::id(), RUNS.fetch_add(1, Ordering::Relaxed))
}

fn nats_error(context: &str, error: impl std::fmt::Display) -> BenchError {
    BenchError::Nats(format!("{context}: {error}"))
}

fn spawn_nats_relay(outbox: &Outbox, config: &NatsConfig) -> RelayTask {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(tally_relay::run_nats(outbox.clone(), config.clone(), stopped));
    RelayTask { stop, task }
}

impl EventsOut {
    /// Registers the webhook endpoints, starts the dispatcher and the relay, and waits (up to
    /// the drain timeout) for the relay to publish what the setup wrote. `None` when nothing is
    /// to be pushed out.
    pub(crate) async fn start(conninfo: &str, config: &EventsOutConfig) -> Result<Option<EventsOut>, BenchError> {
        if !config.is_active() {
            return Ok(None);
        }
        let store = Store::connect(conninfo, RELAY_POOL_SIZE)?;
        let outbox = Outbox::new(&store, RELAY_POOL_SIZE);
        let mut out = EventsOut {
            config: config.clone(),
            store,
            outbox,
            nats: None,
            webhooks: None,
            load_start: None,
            load_end: None,
        };
        if config.webhooks_dead > 0 || config.webhook_sink {
            out.webhooks = Some(out.start_webhooks().await?);
        }
        if let Some(url) = &config.nats_url {
            out.nats = Some(out.start_nats(url).await?);
        }
        Ok(Some(out))
    }

    async fn start_webhooks(&self) -> Result<Webhooks, BenchError> {
        let registered_at = self.store.last_event_seq().await?;
        let mut dead = Vec::new();
        let mut dead_url = None;
        if self.config.webhooks_dead > 0 {
            // A port bound and closed again: nothing listens there, connections are refused.
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let url = format!("http://127.0.0.1:{port}/dead");
            for index in 0..self.config.webhooks_dead {
                let new = NewWebhook {
                    url: url.clone(),
                    event_types: vec!["*".into()],
                    description: Some(format!("tally bench: dead endpoint {index}")),
                    after_seq: Some(registered_at),
                };
                dead.push(self.outbox.create_webhook(BENCH_ACTOR, new).await?.0.id);
            }
            dead_url = Some(url);
        }
        let sink = match self.config.webhook_sink {
            true => Some(self.start_sink(registered_at).await?),
            false => None,
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(tally_relay::run_webhooks(self.outbox.clone(), WebhookConfig::default(), stopped));
        Ok(Webhooks {
            dispatcher: Some(RelayTask { stop, task }),
            dead,
            dead_url,
            registered_at,
            sink,
            delivered_at_load_start: 0,
            delivered_at_load_end: 0,
            sink_lag_at_load_end: None,
        })
    }

    async fn start_sink(&self, after_seq: i64) -> Result<Sink, BenchError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let app = axum::Router::new().route(
            "/sink",
            axum::routing::post(move |_body: axum::body::Bytes| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                eprintln!("tally bench: the webhook sink stopped: {error}");
            }
        });
        let new = NewWebhook {
            url: format!("http://{addr}/sink"),
            event_types: vec!["*".into()],
            description: Some("tally bench: sink".into()),
            after_seq: Some(after_seq),
        };
        let id = self.outbox.create_webhook(BENCH_ACTOR, new).await?.0.id;
        Ok(Sink { received, stop, task, id })
    }

    async fn start_nats(&self, url: &str) -> Result<Nats, BenchError> {
        let name = run_name();
        let config = NatsConfig {
            stream: format!("BENCH_{name}"),
            subject_prefix: format!("bench_{name}"),
            ..NatsConfig::new(url)
        };
        config.validate()?;
        let client = async_nats::ConnectOptions::new()
            .name("tally-bench")
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|error| nats_error(&format!("cannot reach NATS at {url}"), error))?;
        let jetstream = async_nats::jetstream::new(client);
        let setup_events = self.store.last_event_seq().await?;
        let started = Instant::now();
        let relay = spawn_nats_relay(&self.outbox, &config);
        let deadline = started + self.config.drain_timeout;
        let caught_up = self.wait_for_relay(setup_events, deadline).await.then(|| started.elapsed());
        let mut nats = Nats {
            config,
            keep: self.config.nats_keep_stream,
            after_load: self.config.nats_after_load,
            jetstream,
            relay: Some(relay),
            setup_events,
            setup_catch_up: caught_up,
            load_start_newest: 0,
            load_start_delivered: 0,
            load_end_newest: 0,
            load_end_delivered: 0,
            sampler: None,
            samples: Vec::new(),
            drain: None,
        };
        if nats.after_load {
            nats.relay.take().expect("started").stop().await?;
        }
        Ok(nats)
    }

    /// The relay's cursor as this process last moved it.
    fn delivered(&self) -> i64 {
        self.outbox.stats().nats_delivered_seq.load(Ordering::Relaxed)
    }

    /// Waits until the relay's cursor reaches `seq`, or `deadline`; says whether it did.
    async fn wait_for_relay(&self, seq: i64, deadline: Instant) -> bool {
        loop {
            if self.delivered() >= seq {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }

    /// Just before the clients start: the positions the load's figures start from, and the
    /// lag sampler.
    pub(crate) async fn load_starting(&mut self) -> Result<(), BenchError> {
        let delivered = self.delivered();
        let newest = self.store.last_event_seq().await?;
        if let Some(webhooks) = &mut self.webhooks {
            webhooks.delivered_at_load_start = Stats::get(&self.outbox.stats().webhook_delivered);
        }
        if let Some(nats) = &mut self.nats {
            nats.load_start_newest = newest;
            nats.load_start_delivered = delivered;
            if nats.relay.is_some() {
                let stop = Arc::new(AtomicBool::new(false));
                let task = tokio::spawn(sample_lag(self.store.clone(), self.outbox.stats().clone(), stop.clone()));
                nats.sampler = Some((stop, task));
            }
        }
        self.load_start = Some(Instant::now());
        Ok(())
    }

    /// Right after the clients stopped: the positions the load's figures end at.
    pub(crate) async fn load_ended(&mut self) -> Result<(), BenchError> {
        self.load_end = Some(Instant::now());
        let delivered = self.delivered();
        let newest = self.store.last_event_seq().await?;
        if let Some(webhooks) = &mut self.webhooks {
            webhooks.delivered_at_load_end = Stats::get(&self.outbox.stats().webhook_delivered);
            if let Some(sink) = &webhooks.sink {
                let positions = self.outbox.positions().await?;
                let position = positions.endpoints.iter().find(|(id, _)| *id == sink.id).map(|(_, seq)| *seq);
                webhooks.sink_lag_at_load_end = position.map(|seq| newest - seq);
            }
        }
        if let Some(nats) = &mut self.nats {
            nats.load_end_newest = newest;
            nats.load_end_delivered = delivered;
            if let Some((stop, task)) = nats.sampler.take() {
                stop.store(true, Ordering::Relaxed);
                nats.samples = task.await.map_err(|error| BenchError::Task(format!("the lag sampler: {error}")))?;
            }
        }
        Ok(())
    }

    /// Waits (up to the drain timeout) until the relay has published every event; with
    /// `nats_after_load`, starts it first.
    pub(crate) async fn drain(&mut self) -> Result<(), BenchError> {
        let Some(nats) = &self.nats else { return Ok(()) };
        let newest = self.store.last_event_seq().await?;
        let started = match nats.after_load {
            true => Instant::now(),
            false => self.load_end.expect("after the load"),
        };
        let relay = match nats.after_load {
            true => Some(spawn_nats_relay(&self.outbox, &nats.config)),
            false => None,
        };
        let drained = self.wait_for_relay(newest, started + self.config.drain_timeout).await.then(|| started.elapsed());
        let nats = self.nats.as_mut().expect("checked");
        if relay.is_some() {
            nats.relay = relay;
        }
        nats.drain = drained;
        Ok(())
    }

    /// Stops the relay and the dispatcher, reads where they stand, counts and deletes the
    /// stream, stops the sink.
    pub(crate) async fn finish(mut self) -> Result<EventsOutReport, BenchError> {
        if let Some(relay) = self.nats.as_mut().and_then(|nats| nats.relay.take()) {
            relay.stop().await?;
        }
        if let Some(dispatcher) = self.webhooks.as_mut().and_then(|webhooks| webhooks.dispatcher.take()) {
            dispatcher.stop().await?;
        }
        let positions = self.outbox.positions().await?;
        let stats = self.outbox.stats().clone();
        let load = self.load_end.zip(self.load_start).map(|(end, start)| end - start).unwrap_or_default();
        let per_second = |count: f64| if load.is_zero() { 0.0 } else { count / load.as_secs_f64() };

        let nats = match self.nats.take() {
            None => None,
            Some(nats) => {
                let cursor = positions
                    .relays
                    .iter()
                    .find(|relay| relay.name == nats.config.cursor_name())
                    .map_or(0, |relay| relay.delivered_seq);
                let mut stream = nats
                    .jetstream
                    .get_stream(&nats.config.stream)
                    .await
                    .map_err(|error| nats_error("reading the stream", error))?;
                let state = stream.info().await.map_err(|error| nats_error("reading the stream", error))?.state.clone();
                if !nats.keep {
                    nats.jetstream
                        .delete_stream(&nats.config.stream)
                        .await
                        .map_err(|error| nats_error("deleting the stream", error))?;
                }
                let written = nats.load_end_newest - nats.load_start_newest;
                let published = nats.load_end_delivered - nats.load_start_delivered;
                let backlog = nats.load_end_newest - nats.load_end_delivered;
                let events: Vec<f64> = nats.samples.iter().map(|(events, _)| *events as f64).collect();
                let ages: Vec<f64> = nats.samples.iter().map(|(_, ms)| *ms).collect();
                let rate = |events: i64, took: Option<Duration>| {
                    took.filter(|t| !t.is_zero()).map(|t| events as f64 / t.as_secs_f64())
                };
                Some(NatsReport {
                    url: nats.config.url.clone(),
                    stream: nats.config.stream.clone(),
                    subject_prefix: nats.config.subject_prefix.clone(),
                    relay_during_load: !nats.after_load,
                    stream_kept: nats.keep,
                    setup_events: nats.setup_events,
                    setup_catch_up_seconds: nats.setup_catch_up.map(|t| t.as_secs_f64()),
                    setup_catch_up_events_per_second: rate(nats.setup_events, nats.setup_catch_up),
                    events_written_during_load: written,
                    events_written_per_second: per_second(written as f64),
                    events_published_during_load: published,
                    relay_events_per_second_under_load: per_second(published as f64),
                    lag_events: LagSummary::of(&events),
                    lag_ms: LagSummary::of(&ages),
                    lag_samples_events: nats.samples.iter().map(|(events, _)| *events).collect(),
                    backlog_at_load_end: backlog,
                    drain_seconds: nats.drain.map(|t| t.as_secs_f64()),
                    drain_events_per_second: rate(backlog, nats.drain),
                    final_lag_events: positions.newest - cursor,
                    events_total: positions.newest,
                    published: Stats::get(&stats.nats_published),
                    duplicates: Stats::get(&stats.nats_duplicates),
                    stream_messages: state.messages,
                    stream_bytes: state.bytes,
                })
            }
        };

        let webhooks = match self.webhooks.take() {
            None => None,
            Some(webhooks) => {
                let dead_delivered = positions
                    .endpoints
                    .iter()
                    .filter(|(id, _)| webhooks.dead.contains(id))
                    .map(|(_, seq)| seq - webhooks.registered_at)
                    .sum();
                let sink_delivered = webhooks.delivered_at_load_end - webhooks.delivered_at_load_start;
                let sink_received = match webhooks.sink {
                    Some(sink) => {
                        let _ = sink.stop.send(());
                        let _ = sink.task.await;
                        sink.received.load(Ordering::Relaxed)
                    }
                    None => 0,
                };
                Some(WebhooksReport {
                    dead_endpoints: webhooks.dead.len(),
                    dead_url: webhooks.dead_url,
                    dead_delivered,
                    failed_attempts: Stats::get(&stats.webhook_failed),
                    parked: Stats::get(&stats.webhook_parked),
                    sink: self.config.webhook_sink,
                    sink_delivered_during_load: sink_delivered,
                    sink_deliveries_per_second: self.config.webhook_sink.then(|| per_second(sink_delivered as f64)),
                    sink_received,
                    sink_lag_at_load_end: webhooks.sink_lag_at_load_end,
                })
            }
        };
        self.outbox.close();
        Ok(EventsOutReport { nats, webhooks })
    }
}

/// Every 100 ms until `stop`: the relay's lag in events, and the age of the oldest unpublished
/// event in ms (0 when there is none). Two indexed reads per sample on the relay's own pool.
async fn sample_lag(store: Store, stats: Arc<Stats>, stop: Arc<AtomicBool>) -> Vec<LagSample> {
    let mut samples = Vec::new();
    let mut ticker = tokio::time::interval(LAG_SAMPLE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if stop.load(Ordering::Relaxed) {
            return samples;
        }
        // The cursor first: the newest event read after it is never older.
        let delivered = stats.nats_delivered_seq.load(Ordering::Relaxed);
        let Ok(newest) = store.last_event_seq().await else { continue };
        let lag = (newest - delivered).max(0);
        let age_ms = if lag == 0 {
            0.0
        } else {
            match store.events_page(delivered, 1).await {
                Ok(page) => page.first().map_or(0.0, |event| {
                    let now = tally_store::convert::now().0;
                    (now - event.at.0).max(0) as f64 / 1000.0
                }),
                Err(_) => continue,
            }
        };
        samples.push((lag, age_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_summaries_take_nearest_ranks() {
        assert_eq!(LagSummary::of(&[]), None);
        assert_eq!(LagSummary::of(&[5.0]), Some(LagSummary { max: 5.0, p50: 5.0, p99: 5.0 }));
        let values: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        assert_eq!(LagSummary::of(&values), Some(LagSummary { max: 200.0, p50: 100.0, p99: 198.0 }));
    }

    #[test]
    fn settings_are_checked() {
        assert!(EventsOutConfig::default().validate().is_ok());
        let nats = EventsOutConfig { nats_url: Some("nats://127.0.0.1:4222".into()), ..EventsOutConfig::default() };
        assert!(nats.validate().is_ok());
        let bad = [
            EventsOutConfig { nats_after_load: true, ..EventsOutConfig::default() },
            EventsOutConfig { nats_keep_stream: true, ..EventsOutConfig::default() },
            EventsOutConfig { nats_url: Some("http://127.0.0.1:4222".into()), ..EventsOutConfig::default() },
            EventsOutConfig { drain_timeout: Duration::ZERO, ..nats.clone() },
            EventsOutConfig { webhooks_dead: 100, webhook_sink: true, ..EventsOutConfig::default() },
        ];
        for config in bad {
            assert_eq!(config.validate().expect_err("refused").code(), "bench_settings_invalid", "{config:?}");
        }
        assert_ne!(run_name(), run_name(), "every run has a stream of its own");
    }
}
