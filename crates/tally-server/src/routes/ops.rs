//! Liveness, readiness, metrics and the API description.

use crate::auth::{OPERATORS, Principal};
use crate::error::ApiError;
use crate::state::AppState;
use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up (no key needed)")))]
pub async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "The database answers and the server takes requests"),
              (status = 503, description = "Not ready")), security(("bearer" = [])))]
pub async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    if *state.shutdown.borrow() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down"));
    }
    state.store.last_event_seq().await?;
    Ok(axum::Json(json!({"status": "ready"})))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "application/openmetrics-text",
               description = "OpenMetrics text (what Prometheus scrapes): a counter family `x` has `x_total` samples")),
    security(("bearer" = [])))]
pub async fn metrics(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(OPERATORS)?;
    // The relays' positions come from the database; without it, the rest is still reported.
    let positions = match tokio::time::timeout(crate::metrics::POSITIONS_WAIT, state.outbox.positions()).await {
        Ok(Ok(positions)) => Some(positions),
        Ok(Err(error)) => {
            tracing::warn!(code = error.code(), %error, "/metrics: the relays' positions could not be read");
            None
        }
        Err(_) => {
            tracing::warn!(wait = ?crate::metrics::POSITIONS_WAIT, "/metrics: the relays' positions took too long");
            None
        }
    };
    let replica = state.replica.as_ref().map(|replica| replica.position());
    let body = state.metrics.render(&state.engine, state.outbox.stats(), positions.as_ref(), replica);
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body))
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This API's OpenAPI 3.1 description")), security(("bearer" = [])))]
pub async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(crate::openapi())
}

/// The caller as the API sees it: what the console shows follows its role.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WhoAmIView {
    /// The key's name.
    pub name: String,
    /// `admin`, `operator`, `auditor` or `reader`.
    pub role: String,
    /// What the audit trail records for this caller's changes.
    pub actor: String,
    /// The ledgers the key is scoped to, by id (empty: every ledger).
    pub ledgers: Vec<i32>,
    /// A reader's accounts (empty for the other roles).
    pub accounts: Vec<uuid::Uuid>,
}

#[utoipa::path(get, path = "/v1/whoami", tag = "operations",
    responses((status = 200, body = WhoAmIView, description = "The authenticated caller")), security(("bearer" = [])))]
pub async fn whoami(Extension(principal): Extension<Principal>) -> axum::Json<WhoAmIView> {
    axum::Json(WhoAmIView {
        name: principal.name.clone(),
        role: principal.role.as_str().to_owned(),
        actor: principal.actor(),
        ledgers: principal.ledgers.iter().map(|ledger| ledger.0).collect(),
        accounts: principal.accounts.clone(),
    })
}
