//! `/v1/ledgers`: make, list and look up ledgers; and the `ledger` parameter every listing takes.
//!
//! A ledger is a set of books: every account belongs to one, and a transfer stays inside the
//! ledger of its two accounts. A key may be scoped to ledgers; such a key sees and changes only
//! what belongs to them.

use crate::auth::{ADMINS, Principal, READERS};
use crate::body::{Json, Path};
use crate::error::ApiError;
use crate::idempotency;
use crate::state::AppState;
use crate::views::{LedgerView, NewLedgerBody, Page};
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tally_core::LedgerId;
use tally_store::NewLedger;

/// The ledger a parameter or field names, by id (`2`) or code (`eu-wallets`).
pub async fn resolve(state: &AppState, id_or_code: &str) -> Result<LedgerId, ApiError> {
    Ok(state.store.require_ledger(id_or_code).await?.id)
}

/// What a listing's `ledger` parameter selects for this caller: the ledger named (which the key
/// must be allowed), else the key's ledgers (`None`: every ledger).
pub async fn scope(
    state: &AppState,
    principal: &Principal,
    asked: Option<&str>,
) -> Result<Option<Vec<LedgerId>>, ApiError> {
    let asked = match asked {
        Some(text) => Some(resolve(state, text).await?),
        None => None,
    };
    principal.ledger_scope(asked)
}

#[utoipa::path(operation_id = "create_ledger", post, path = "/v1/ledgers", tag = "ledgers", request_body = NewLedgerBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the stored response for the same key and body")),
    responses((status = 201, body = LedgerView, description = "Made"),
              (status = 200, body = LedgerView, description = "Already made with these fields"),
              (status = 400, description = "invalid_input: a code that is not 1 to 63 lower-case letters, digits, _ or -"),
              (status = 403, description = "Not an admin key, or a key scoped to ledgers"),
              (status = 409, description = "ledger_exists_with_different_fields")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Json(body): Json<NewLedgerBody>,
) -> Result<Response, ApiError> {
    principal.require(ADMINS)?;
    if !principal.ledgers.is_empty() {
        return Err(ApiError::forbidden("a key scoped to ledgers may not make ledgers"));
    }
    let run = || async {
        let new = NewLedger { code: body.code.clone(), name: body.name.clone(), metadata: body.metadata.clone() };
        let (record, created) = state.store.create_ledger(&new, &principal.actor()).await?;
        let status = if created { StatusCode::CREATED } else { StatusCode::OK };
        Ok((status, LedgerView::new(&record)))
    };
    idempotency::once(&state, &principal, &headers, "POST /v1/ledgers", &body, run).await
}

#[utoipa::path(operation_id = "list_ledgers", get, path = "/v1/ledgers", tag = "ledgers",
    responses((status = 200, body = Page<LedgerView>, description = "Every ledger the key may use, by id")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<Page<LedgerView>>, ApiError> {
    principal.require(READERS)?;
    let ledgers = state.store.ledgers().await?;
    let data = ledgers.iter().filter(|l| principal.may_use_ledger(l.id)).map(LedgerView::new).collect();
    Ok(axum::Json(Page { data, next_cursor: None }))
}

#[utoipa::path(operation_id = "get_ledger", get, path = "/v1/ledgers/{id_or_code}", tag = "ledgers",
    params(("id_or_code" = String, Path, description = "A ledger id or code")),
    responses((status = 200, body = LedgerView), (status = 403, description = "ledger_forbidden"),
              (status = 404, description = "ledger_not_found")),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id_or_code): Path<String>,
) -> Result<axum::Json<LedgerView>, ApiError> {
    principal.require(READERS)?;
    let record = state.store.require_ledger(&id_or_code).await?;
    principal.require_ledger(record.id)?;
    Ok(axum::Json(LedgerView::new(&record)))
}
