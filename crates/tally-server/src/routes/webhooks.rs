//! `/v1/webhooks`: register endpoints (the answer carries the signing secret, once), list, show,
//! disable, enable and delete them, read each one's delivery log, and redeliver a parked
//! delivery. Deliveries themselves are made by `tally_relay::run_webhooks`, which `serve` runs.
//!
//! Who may: registering and changing endpoints, and redelivering, is for admin keys; reading
//! endpoints and their delivery logs for the roles that read the event feed (admin, operator,
//! auditor), since a delivery log says which events went where. Reader keys, which see only
//! their own accounts, may not. The secret is never listed.

use crate::auth::{ADMINS, EVENT_READERS, Principal};
use crate::body::{Json, Path, Query};
use crate::error::ApiError;
use crate::routes::accounts::limit_of;
use crate::state::AppState;
use crate::views::{CreatedWebhookView, DeliveryView, NewWebhookBody, Page, WebhookView};
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use tally_relay::webhooks::DELIVERIES_PAGE_MAX;
use tally_relay::{DeliveryQuery, DeliveryStatus};
use utoipa::IntoParams;
use uuid::Uuid;

const _: () = assert!(tally_store::queries::PAGE_SIZE_MAX <= DELIVERIES_PAGE_MAX);
const _: () = assert!(tally_relay::webhooks::EVENT_TYPES_PER_WEBHOOK_MAX == 32, "NewWebhookBody's schema says 32");

#[utoipa::path(operation_id = "create_webhook", post, path = "/v1/webhooks", tag = "webhooks", request_body = NewWebhookBody,
    responses((status = 201, body = CreatedWebhookView,
               description = "Registered. The answer carries the endpoint's signing secret: the only time it is shown \
                              (so no Idempotency-Key: a stored answer would keep the secret; after a lost answer, list \
                              the endpoints and delete a second registration)"),
              (status = 400, description = "webhook_url_invalid, event_type_invalid, webhook_invalid, invalid_body, malformed_json"),
              (status = 409, description = "webhook_limit_reached (at most 100 endpoints)")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(body): Json<NewWebhookBody>,
) -> Result<(StatusCode, axum::Json<CreatedWebhookView>), ApiError> {
    principal.require(ADMINS)?;
    let (record, secret) = state.outbox.create_webhook(&principal.actor(), body.into()).await?;
    Ok((StatusCode::CREATED, axum::Json(CreatedWebhookView { webhook: WebhookView::new(&record), secret })))
}

#[utoipa::path(operation_id = "list_webhooks", get, path = "/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = Vec<WebhookView>, description = "Every endpoint, oldest first; never a secret")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<Vec<WebhookView>>, ApiError> {
    principal.require(EVENT_READERS)?;
    let records = state.outbox.webhooks().await?;
    Ok(axum::Json(records.iter().map(WebhookView::new).collect()))
}

#[utoipa::path(operation_id = "get_webhook", get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses((status = 200, body = WebhookView), (status = 404, description = "webhook_not_found")),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<WebhookView>, ApiError> {
    principal.require(EVENT_READERS)?;
    Ok(axum::Json(WebhookView::new(&state.outbox.webhook(id).await?)))
}

#[utoipa::path(operation_id = "delete_webhook", delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses((status = 204, description = "Deleted, with its delivery log (the audit log keeps that it existed)"),
              (status = 404, description = "webhook_not_found")),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    principal.require(ADMINS)?;
    state.outbox.delete_webhook(&principal.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_active(
    state: AppState,
    principal: Principal,
    id: Uuid,
    active: bool,
) -> Result<axum::Json<WebhookView>, ApiError> {
    principal.require(ADMINS)?;
    let record = state.outbox.set_webhook_active(&principal.actor(), id, active).await?;
    Ok(axum::Json(WebhookView::new(&record)))
}

#[utoipa::path(operation_id = "disable_webhook", post, path = "/v1/webhooks/{id}/disable", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses((status = 200, body = WebhookView, description = "Disabled (or already): it gets nothing until enabled"),
              (status = 404, description = "webhook_not_found")),
    security(("bearer" = [])))]
pub async fn disable(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<WebhookView>, ApiError> {
    set_active(state, principal, id, false).await
}

#[utoipa::path(operation_id = "enable_webhook", post, path = "/v1/webhooks/{id}/enable", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses((status = 200, body = WebhookView,
               description = "Enabled (or already): it resumes where it stopped and misses no event"),
              (status = 404, description = "webhook_not_found")),
    security(("bearer" = [])))]
pub async fn enable(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<WebhookView>, ApiError> {
    set_active(state, principal, id, true).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// `pending`, `delivered` or `parked`; every delivery when absent.
    pub status: Option<String>,
    /// Deliveries of events before this sequence number: the previous page's `next_cursor`.
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// 1 to 1,000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[utoipa::path(operation_id = "list_webhook_deliveries", get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id"), DeliveriesQuery),
    responses((status = 200, body = Page<DeliveryView>,
               description = "Newest first, each with its attempts. next_cursor (the page's last seq, present when the \
                              page is full) is the `before` of the next page"),
              (status = 404, description = "webhook_not_found")),
    security(("bearer" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<Uuid>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<axum::Json<Page<DeliveryView>>, ApiError> {
    principal.require(EVENT_READERS)?;
    let limit = limit_of(query.limit)?;
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(
            DeliveryStatus::parse(text)
                .ok_or_else(|| ApiError::bad_request("invalid_query", "status is pending, delivered or parked"))?,
        ),
    };
    if query.before.is_some_and(|before| before < 1) {
        return Err(ApiError::bad_request("invalid_query", "before is a sequence number, at least 1"));
    }
    let page = state.outbox.deliveries(id, &DeliveryQuery { status, before_seq: query.before, limit }).await?;
    let full = i64::try_from(page.len()).is_ok_and(|n| n >= limit);
    let next_cursor = page.last().filter(|_| full).map(|d| d.seq.to_string());
    Ok(axum::Json(Page { data: page.iter().map(DeliveryView::new).collect(), next_cursor }))
}

#[utoipa::path(operation_id = "get_webhook_delivery", get, path = "/v1/webhooks/{id}/deliveries/{seq}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id"),
           ("seq" = i64, Path, description = "The event's sequence number")),
    responses((status = 200, body = DeliveryView), (status = 404, description = "webhook_not_found, delivery_not_found")),
    security(("bearer" = [])))]
pub async fn delivery(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((id, seq)): Path<(Uuid, i64)>,
) -> Result<axum::Json<DeliveryView>, ApiError> {
    principal.require(EVENT_READERS)?;
    Ok(axum::Json(DeliveryView::new(&state.outbox.delivery(id, seq).await?)))
}

#[utoipa::path(operation_id = "redeliver_webhook_delivery", post, path = "/v1/webhooks/{id}/deliveries/{seq}/redeliver",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id"),
           ("seq" = i64, Path, description = "The parked delivery's event sequence number")),
    responses((status = 200, body = DeliveryView,
               description = "Pending again: sent at once, with as many attempts as a new delivery; the endpoint's later \
                              events follow it in order"),
              (status = 404, description = "webhook_not_found, delivery_not_found"),
              (status = 409, description = "delivery_not_parked")),
    security(("bearer" = [])))]
pub async fn redeliver(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((id, seq)): Path<(Uuid, i64)>,
) -> Result<axum::Json<DeliveryView>, ApiError> {
    principal.require(ADMINS)?;
    Ok(axum::Json(DeliveryView::new(&state.outbox.redeliver(&principal.actor(), id, seq).await?)))
}
