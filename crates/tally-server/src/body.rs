//! Request bodies and query strings, with the API's own error codes instead of axum's plain text.

use crate::error::ApiError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// Deepest nesting accepted in a JSON body (metadata included).
pub const JSON_DEPTH_MAX: usize = 32;

/// A JSON body. Malformed JSON is 400 `malformed_json`; well-formed JSON of the wrong shape
/// (unknown fields, wrong types, missing fields) is 400 `invalid_body`; a body over the limit
/// is 413 `body_too_large`; another content type is 415.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = match axum::Json::<serde_json::Value>::from_request(request, state).await {
            Ok(axum::Json(value)) => value,
            Err(rejection) => return Err(json_rejection(rejection)),
        };
        check_value(&bytes)?;
        serde_json::from_value(bytes)
            .map(Json)
            .map_err(|error| ApiError::bad_request("invalid_body", error.to_string()))
    }
}

/// Refuses what no handler should see: nesting deeper than `JSON_DEPTH_MAX`, and NUL (U+0000)
/// in any string or key, which PostgreSQL cannot store in text or jsonb. Refused here, a bad
/// value is the sender's 400 instead of a database error in a batch shared with others.
pub fn check_value(value: &serde_json::Value) -> Result<(), ApiError> {
    if depth(value) > JSON_DEPTH_MAX {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("the body nests deeper than {JSON_DEPTH_MAX} levels"),
        ));
    }
    if has_nul(value) {
        return Err(ApiError::bad_request("invalid_body", "strings may not contain NUL (U+0000)"));
    }
    Ok(())
}

fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => text.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(fields) => fields.iter().any(|(key, value)| key.contains('\0') || has_nul(value)),
        _ => false,
    }
}

/// A raw body (for routes whose body is optional), with the API's error for one too large.
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::body::Bytes::from_request(request, state).await.map(RawBody).map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is larger than allowed",
                )
            } else {
                ApiError::bad_request("malformed_json", rejection.body_text())
            }
        })
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the request body is larger than allowed")
        }
        JsonRejection::JsonSyntaxError(error) => ApiError::bad_request("malformed_json", error.body_text()),
        JsonRejection::JsonDataError(error) => ApiError::bad_request("invalid_body", error.body_text()),
        other => ApiError::bad_request("malformed_json", other.body_text()),
    }
}

fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A query string; a bad one is 400 `invalid_query`.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|rejection: QueryRejection| ApiError::bad_request("invalid_query", rejection.body_text()))
            .and_then(|axum::extract::Query(value)| {
                if parts.uri.query().is_some_and(|q| q.contains("%00") || q.contains('\0')) {
                    return Err(ApiError::bad_request("invalid_query", "the query may not contain NUL (%00)"));
                }
                Ok(Query(value))
            })
    }
}

/// A path parameter; a bad one is 400 `invalid_input` or 404 for an id that cannot exist.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.path().contains("%00") {
            return Err(ApiError::bad_request("invalid_input", "the path may not contain NUL (%00)"));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| ApiError::bad_request("invalid_input", rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depth_counts_nesting() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({"a": [1, {"b": 2}]})), 3);
    }
}
