//! Tally's HTTP API: REST v1 over the engine (every transfer write) and the store (reads,
//! accounts, keys).
//!
//! Layers, outermost first: connection limit (in `serve`), metrics, request timeout, in-flight
//! bound (503 `overloaded` beyond it), body size limit, authentication and per-key rate limit,
//! then the handler, which checks the caller's role. Every error is
//! `{"error": {"code", "message", "details"}}` with a code from `error::CODES` or a transfer
//! result code.
//!
//! Architecture invariant: handlers never write SQL and never decide a transfer; they translate
//! between JSON and the engine and store APIs, with the authenticated principal as the actor.

pub mod auth;
pub mod body;
pub mod console;
pub mod error;
pub mod idempotency;
pub mod metrics;
pub mod replica;
pub mod routes;
pub mod scheduler;
pub mod state;
pub mod tls;
pub mod views;

pub use auth::{GeneratedKey, Principal, generate_key, hash_key};
pub use error::ApiError;
pub use state::{AppState, ServerConfig};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use routes::{accounts, feed, ledgers, ops, reconciliations, statements, transfers, webhooks};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Tally", description = "A double-entry ledger on PostgreSQL. Amounts are decimal strings in the currency's scale."),
    paths(
        ledgers::create, ledgers::list, ledgers::show,
        accounts::create, accounts::show, accounts::list, accounts::freeze, accounts::unfreeze, accounts::close,
        accounts::balance, accounts::history,
        transfers::create, transfers::batch, transfers::post_pending, transfers::void_pending, transfers::reverse,
        transfers::show, transfers::list,
        feed::audit, feed::events, feed::stream, reconciliations::run, reconciliations::list, reconciliations::show,
        statements::import, statements::show, statements::list,
        webhooks::create, webhooks::list, webhooks::show, webhooks::delete, webhooks::disable, webhooks::enable,
        webhooks::deliveries, webhooks::delivery, webhooks::redeliver,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi, ops::whoami,
    ),
    components(schemas(views::AccountView, views::BalanceView, views::TransferView, views::TransferOutcome,
        views::BatchView, views::HistoryView, views::AuditView, views::EventView, views::NewAccountBody,
        views::StatusBody, views::TransferBody, views::BatchBody, views::ActionBody, views::ResolveBody, ErrorBody,
        reconciliations::ReconciliationBody, reconciliations::ReconciliationView, statements::StatementView,
        statements::StatementListView, reconciliations::RunSummaryView, ops::WhoAmIView,
        views::NewLedgerBody, views::LedgerView, views::NewWebhookBody, views::WebhookView, views::CreatedWebhookView, views::DeliveryView, views::AttemptView)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// The error shape every failure answers with.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorBody {
    /// `{"code": "insufficient_funds", "message": "...", "details": {...}}`
    #[schema(value_type = Object)]
    error: serde_json::Value,
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("tly_<64 hex>").build(),
            ),
        );
        // Every operation may answer with the error shape: list the statuses any request can
        // meet (an operation's own, more specific entries are kept).
        use utoipa::openapi::{Ref, RefOr, ResponseBuilder, content::ContentBuilder};
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                    )
                    .build(),
            )
        };
        let common = [
            (
                "400",
                "Malformed: invalid_body, malformed_json, invalid_query, invalid_input, invalid_amount, invalid_header",
            ),
            ("401", "unauthenticated"),
            ("403", "forbidden"),
            (
                "404",
                "Not found: not_found, account_not_found, transfer_not_found, currency_not_found, webhook_not_found, \
                 delivery_not_found",
            ),
            ("408", "request_timeout"),
            ("409", "A conflict: version_conflict, exists_with_different_fields, ..."),
            ("413", "body_too_large"),
            ("415", "unsupported_media_type"),
            ("422", "Refused by a rule"),
            ("429", "rate_limited"),
            ("500", "internal_error, database_error"),
            (
                "503",
                "Retry-After. overloaded, shutting_down, database_unavailable: nothing was written; outcome_unknown: \
                 a change was sent to be committed and its answer lost, so it may or may not have been made",
            ),
        ];
        for (path, item) in openapi.paths.paths.iter_mut() {
            let public = path == "/healthz";
            for operation in [&mut item.get, &mut item.post, &mut item.delete].into_iter().flatten() {
                for (status, description) in common {
                    if public && status != "503" {
                        continue;
                    }
                    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| error(description));
                }
            }
        }
    }
}

/// The API description, generated from the handlers and views.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Middleware: at most `max_in_flight` requests are handled at once; beyond, 503 at once.
async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Ok(_permit) = state.limits.in_flight.clone().try_acquire_owned() else {
        return ApiError::overloaded("too many requests in flight; retry shortly").into_response();
    };
    next.run(request).await
}

/// Middleware: a request still running after `request_timeout` is answered 408
/// `request_timeout` (in the API's error shape). A response that streams (server-sent events)
/// is bounded only until its headers are sent.
async fn time_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(state.config.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request took too long; a transfer it submitted may still commit: retry it with the same id",
        )
        .into_response(),
    }
}

async fn fallback() -> ApiError {
    ApiError::not_found("route")
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let batch_limit = state.config.batch_body_limit;
    let body_limit = state.config.body_limit;
    let authenticated = Router::new()
        .route("/v1/ledgers", post(ledgers::create).get(ledgers::list))
        .route("/v1/ledgers/{id_or_code}", get(ledgers::show))
        .route("/v1/accounts", post(accounts::create).get(accounts::list))
        .route("/v1/accounts/{id_or_code}", get(accounts::show))
        .route("/v1/accounts/{id_or_code}/freeze", post(accounts::freeze))
        .route("/v1/accounts/{id_or_code}/unfreeze", post(accounts::unfreeze))
        .route("/v1/accounts/{id_or_code}/close", post(accounts::close))
        .route("/v1/accounts/{id_or_code}/balance", get(accounts::balance))
        .route("/v1/accounts/{id_or_code}/transfers", get(accounts::history))
        .route("/v1/transfers", post(transfers::create).get(transfers::list))
        .route("/v1/transfers/batch", post(transfers::batch).layer(DefaultBodyLimit::max(batch_limit)))
        .route("/v1/transfers/{id}", get(transfers::show))
        .route("/v1/transfers/{id}/post", post(transfers::post_pending))
        .route("/v1/transfers/{id}/void", post(transfers::void_pending))
        .route("/v1/transfers/{id}/reverse", post(transfers::reverse))
        .route("/v1/audit", get(feed::audit))
        .route("/v1/events", get(feed::events))
        .route("/v1/events/stream", get(feed::stream))
        .route("/v1/reconciliations", post(reconciliations::run).get(reconciliations::list))
        .route("/v1/reconciliations/{date}", get(reconciliations::show))
        .route(
            "/v1/statements",
            post(statements::import)
                .layer(DefaultBodyLimit::max(tally_statement::STATEMENT_BYTES_MAX))
                .get(statements::list),
        )
        .route("/v1/statements/{id}", get(statements::show))
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/v1/webhooks/{id}", get(webhooks::show).delete(webhooks::delete))
        .route("/v1/webhooks/{id}/disable", post(webhooks::disable))
        .route("/v1/webhooks/{id}/enable", post(webhooks::enable))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/webhooks/{id}/deliveries/{seq}", get(webhooks::delivery))
        .route("/v1/webhooks/{id}/deliveries/{seq}/redeliver", post(webhooks::redeliver))
        .route("/v1/whoami", get(ops::whoami))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route_layer(middleware::from_fn_with_state(state.clone(), replica::commit_lsn))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/console", get(console::root))
        .route("/console/", get(console::index))
        .route("/console/{*path}", get(console::file))
        .merge(authenticated)
        .fallback(fallback)
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), admit))
        .layer(middleware::from_fn_with_state(state.clone(), time_limit))
        .layer(middleware::from_fn_with_state(state.clone(), metrics::track))
        .with_state(state)
}

/// A TCP listener that holds one permit per open connection: beyond `max_connections`,
/// further connections wait in the kernel's backlog until one closes.
struct LimitedListener {
    inner: TcpListener,
    connections: Arc<Semaphore>,
}

struct LimitedStream {
    stream: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for LimitedStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = self.connections.clone().acquire_owned().await.expect("never closed");
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (LimitedStream { stream, _permit: permit }, addr);
                }
                // Out of file descriptors and the like: wait a moment rather than spin.
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Every request in flight was answered and everything the engine accepted was decided.
    Complete,
    /// The shutdown timeout came first: requests still open were cut off, and batches still in
    /// flight were abandoned (rolled back unless their COMMIT was already on its way) and their
    /// callers answered `outcome_unknown`, with a retry by the same id safe.
    Abandoned,
}

/// Starts the relays `config` asks for (webhooks, NATS) on `outbox`; each runs until `shutdown`
/// turns true, and logs if it stops with an error.
fn spawn_relays(
    outbox: &tally_relay::Outbox,
    config: &ServerConfig,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut relays = Vec::new();
    if let Some(webhooks) = config.webhooks.clone() {
        let run = tally_relay::run_webhooks(outbox.clone(), webhooks, shutdown.clone());
        relays.push(tokio::spawn(async move {
            if let Err(error) = run.await {
                tracing::error!(code = error.code(), %error, "the webhook dispatcher stopped");
            }
        }));
    }
    if let Some(nats) = config.nats.clone() {
        let run = tally_relay::run_nats(outbox.clone(), nats, shutdown.clone());
        relays.push(tokio::spawn(async move {
            if let Err(error) = run.await {
                tracing::error!(code = error.code(), %error, "the NATS relay stopped");
            }
        }));
    }
    relays
}

/// Serves the API on `listener` until `stop` resolves; then stops accepting, tells long-polls
/// and streams to end, answers every request in flight, and shuts the engine down (committing
/// whatever it accepted). Returns once all of that is done, or once `config.shutdown_timeout`
/// has passed since `stop`, whichever comes first. With `tls`, every connection is TLS.
///
/// It also runs the relays of `config.webhooks` and `config.nats` until `stop`, and waits for
/// them within the same bound (what they had not delivered is delivered by the next relay to
/// take the lease: their positions are in the database).
pub async fn serve(
    listener: TcpListener,
    store: tally_store::Store,
    engine: tally_engine::Engine,
    config: ServerConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Shutdown> {
    let (shutdown_sender, shutdown) = watch::channel(false);
    let connections = Arc::new(Semaphore::new(config.max_connections));
    let reconcile_after = config.reconcile_after;
    let bound = config.shutdown_timeout;
    let mut stopping = shutdown.clone();
    let state = AppState::new(store, engine.clone(), config, shutdown.clone());
    let relays = spawn_relays(&state.outbox, &state.config, &shutdown);
    let outbox = state.outbox.clone();
    if let Some(after) = reconcile_after {
        tokio::spawn(scheduler::run(state.recon.clone(), after, shutdown));
    }
    let app = router(state);
    let listener = LimitedListener { inner: listener, connections };
    let stopped_at = Arc::new(std::sync::OnceLock::new());
    let signal = {
        let stopped_at = stopped_at.clone();
        async move {
            stop.await;
            stopped_at.get_or_init(tokio::time::Instant::now);
            tracing::info!(?bound, "shutting down: no new connections; finishing requests in flight");
            let _ = shutdown_sender.send(true);
        }
    };
    let served = async move {
        match tls {
            None => axum::serve(listener, app).with_graceful_shutdown(signal).await,
            Some(acceptor) => {
                let listener = tls::TlsListener::new(listener, acceptor)?;
                axum::serve(listener, app).with_graceful_shutdown(signal).await
            }
        }
    };
    // A tenth of the bound is left for writing the answers of abandoned batches.
    let abandon_after = bound - bound / 10;
    let deadline = {
        let engine = engine.clone();
        async move {
            let _ = stopping.wait_for(|stopped| *stopped).await;
            let start = tokio::time::Instant::now();
            tokio::time::sleep_until(start + abandon_after).await;
            engine.shutdown_within(Duration::ZERO).await;
            tokio::time::sleep_until(start + bound).await;
        }
    };
    let answered_in_time = tokio::select! {
        served = served => {
            served?;
            true
        }
        () = deadline => false,
    };
    let start = stopped_at.get().copied().unwrap_or_else(tokio::time::Instant::now);
    let left = (start + bound).saturating_duration_since(tokio::time::Instant::now());
    let engine_in_time = engine.shutdown_within(left).await;
    let left = (start + bound).saturating_duration_since(tokio::time::Instant::now());
    // A relay cut off at the bound loses nothing (its position is in the database), so it does
    // not make the shutdown `Abandoned`.
    stop_relays(relays, left).await;
    outbox.close();
    if answered_in_time && engine_in_time {
        tracing::info!("shut down: every accepted transfer was answered");
        Ok(Shutdown::Complete)
    } else {
        tracing::warn!(?bound, "shut down at the bound: open requests cut off, batches in flight (if any) abandoned");
        Ok(Shutdown::Abandoned)
    }
}

/// Waits for the relays to stop (they were told to) for at most `bound`; aborts the rest, which
/// is safe: delivery is at least once, and whatever they had not recorded is sent again.
async fn stop_relays(relays: Vec<JoinHandle<()>>, bound: Duration) {
    let deadline = tokio::time::Instant::now() + bound;
    let mut in_time = true;
    for relay in relays {
        let abort = relay.abort_handle();
        if tokio::time::timeout_at(deadline, relay).await.is_err() {
            abort.abort();
            in_time = false;
        }
    }
    if !in_time {
        tracing::warn!(
            ?bound,
            "relays still delivering at the shutdown bound were stopped; they resume from the database"
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_documents_the_error_statuses() {
        let openapi = serde_json::to_value(super::openapi()).unwrap();
        for (path, item) in openapi["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                let expected: &[&str] =
                    if path == "/healthz" { &["503"] } else { &["400", "401", "403", "429", "503"] };
                for status in expected {
                    assert!(responses.contains_key(*status), "{method} {path} documents {status}: {responses:?}");
                }
            }
        }
    }
}
