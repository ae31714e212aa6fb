//! Prometheus metrics: requests, latencies, results by code, and the engine's batches and queue.
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
    engine_mean_batch: Gauge,
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
            "engine_mean_batch_size",
            "Transfers per committed batch, on average",
            engine_mean_batch.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            transfer_results,
            engine_batches,
            engine_transfers,
            engine_queue,
            engine_reruns,
            engine_mean_batch,
        }
    }

    pub fn count_result(&self, result: tally_core::TransferResult) {
        self.transfer_results[result as usize].inc();
    }

    /// The OpenMetrics text exposition (`CONTENT_TYPE`), with the engine's figures read now.
    pub fn render(&self, engine: &tally_engine::Engine) -> String {
        let stats = engine.stats();
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.engine_batches.set(gauge(stats.batches));
        self.engine_transfers.set(gauge(stats.transfers));
        self.engine_queue.set(gauge(stats.queued_transfers));
        self.engine_reruns.set(gauge(stats.reruns));
        self.engine_mean_batch.set(gauge(stats.transfers.checked_div(stats.batches).unwrap_or(0)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }
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
