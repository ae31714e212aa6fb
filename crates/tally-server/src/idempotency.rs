//! `Idempotency-Key` for POSTs that are not transfers (transfers are idempotent by their id).
//!
//! The first request with a key stores its response; the same key with the same method, path
//! and body gets that response again with `Idempotent-Replayed: true`; with anything else,
//! 422 `idempotency_key_reused`; while the first still runs, 409 `request_in_progress`. Server
//! errors (5xx) and rate limiting (429) are not stored, so a retry runs again. Keys are per
//! principal: two callers never see each other's responses.
//!
//! A stored answer is read back through its view type before it is sent again: PostgreSQL's
//! `jsonb` keeps no key order, and a replay must look like the first answer (and like a `GET` of
//! the same thing), field for field and in the same order.

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::future::Future;
use tally_store::IdempotencyBegin;

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Runs `run` once per idempotency key (when the request has one); `T` is the view it answers
/// with.
pub async fn once<T, F, Fut>(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    request_line: &str,
    body: &impl Serialize,
    run: F,
) -> Result<Response, ApiError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(StatusCode, T), ApiError>>,
{
    let Some(key) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        let (status, view) = run().await?;
        return Ok((status, axum::Json(view)).into_response());
    };
    let key = key
        .to_str()
        .ok()
        .filter(|key| !key.is_empty() && key.len() <= tally_store::api::IDEMPOTENCY_KEY_LEN_MAX)
        .ok_or_else(|| {
            ApiError::bad_request("invalid_header", "Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?;
    let mut hasher = Sha256::new();
    hasher.update(request_line.as_bytes());
    hasher.update(b"\n");
    hasher.update(serde_json::to_vec(body).expect("bodies serialize"));
    let hash: [u8; 32] = hasher.finalize().into();
    let stale_after = state.config.request_timeout * 2;
    match state.store.idempotency_begin(&principal.name, key, &hash, stale_after).await? {
        IdempotencyBegin::Started => {}
        IdempotencyBegin::Replay { status, response } => {
            let status = StatusCode::from_u16(status).expect("a stored HTTP status");
            // An error body, or an answer stored by a release whose view differed, goes as stored.
            let mut response = match T::deserialize(&response) {
                Ok(view) if status.is_success() => (status, axum::Json(view)).into_response(),
                _ => (status, axum::Json(response)).into_response(),
            };
            response.headers_mut().insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            return Ok(response);
        }
        IdempotencyBegin::Mismatch => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with another request",
            ));
        }
        IdempotencyBegin::InProgress => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "request_in_progress",
                "a request with this Idempotency-Key is still running",
            ));
        }
    }
    let (status, view) = match run().await {
        Ok(answer) => answer,
        Err(error) => {
            if error.status.is_server_error() || error.status == StatusCode::TOO_MANY_REQUESTS {
                state.store.idempotency_release(&principal.name, key).await?;
            } else {
                state.store.idempotency_finish(&principal.name, key, error.status.as_u16(), &error.body()).await?;
            }
            return Err(error);
        }
    };
    let value = serde_json::to_value(&view).expect("views serialize");
    state.store.idempotency_finish(&principal.name, key, status.as_u16(), &value).await?;
    Ok((status, axum::Json(view)).into_response())
}
