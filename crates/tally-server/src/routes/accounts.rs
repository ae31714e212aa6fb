//! `/v1/accounts`: open, look up, list, freeze, unfreeze, close, balance, history.

use crate::auth::{ADMINS, Principal, READERS};
use crate::body::RawBody;
use crate::body::{Json, Path, Query};
use crate::error::ApiError;
use crate::idempotency;
use crate::replica::Served;
use crate::state::AppState;
use crate::views::{AccountView, BalanceView, HistoryView, NewAccountBody, Page, StatusBody, TransferView};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tally_core::{AccountStatus, BalanceRule, parse_amount};
use tally_store::accounts::ACCOUNT_PAGE_SIZE_MAX;
use tally_store::{AccountRecord, NewAccount, StatusChange, Store};
use utoipa::IntoParams;
use uuid::Uuid;

/// Default page size of listings.
pub const PAGE_SIZE_DEFAULT: i64 = 100;

fn with_etag(status: StatusCode, record: &AccountRecord) -> Response {
    let mut response = (status, axum::Json(AccountView::new(record))).into_response();
    let etag = HeaderValue::from_str(&format!("\"{}\"", record.account.version)).expect("digits");
    response.headers_mut().insert(header::ETAG, etag);
    response
}

/// Looks an account up by id or code, for a caller allowed to read it.
/// A reader gets the same 403 for an account that does not exist as for one it may not read,
/// so that it cannot probe which codes exist.
pub async fn readable(store: &Store, principal: &Principal, id_or_code: &str) -> Result<AccountRecord, ApiError> {
    principal.require(READERS)?;
    let record = match store.require_account(id_or_code).await {
        Err(tally_store::StoreError::AccountNotFound(_)) if principal.role == tally_store::Role::Reader => {
            return Err(ApiError::forbidden("this key may not read that account"));
        }
        other => other?,
    };
    principal.require_account(record.account.id.0)?;
    principal.require_ledger(record.account.ledger)?;
    Ok(record)
}

#[utoipa::path(operation_id = "create_account", post, path = "/v1/accounts", tag = "accounts", request_body = NewAccountBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the stored response for the same key and body")),
    responses((status = 201, body = AccountView, description = "Opened"),
              (status = 200, body = AccountView, description = "Already open with these fields"),
              (status = 403, description = "ledger_forbidden: the key is scoped to other ledgers"),
              (status = 404, description = "ledger_not_found, currency_not_found"),
              (status = 409, description = "account_exists_with_different_fields (also: the id is another ledger's account's), account_code_taken")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Json(body): Json<NewAccountBody>,
) -> Result<Response, ApiError> {
    principal.require(ADMINS)?;
    let run = || async {
        let scale = state.scales.scale(&state.store, &body.currency).await?;
        let rule = match (body.unrestricted, &body.overdraft_limit) {
            (true, Some(_)) => {
                return Err(ApiError::bad_request("invalid_input", "an unrestricted account has no overdraft limit"));
            }
            (true, None) => BalanceRule::Unrestricted,
            (false, None) => BalanceRule::NoOverdraft,
            (false, Some(text)) => {
                let limit = parse_amount(text, scale)
                    .map_err(|e| ApiError::bad_request("invalid_amount", format!("overdraft_limit: {e}")))?;
                if limit < 0 {
                    return Err(ApiError::bad_request("invalid_amount", "overdraft_limit must not be negative"));
                }
                BalanceRule::from_parts(false, limit)
            }
        };
        let ledger = match body.ledger.as_deref() {
            Some(text) => crate::routes::ledgers::resolve(&state, text).await?,
            None => tally_core::LedgerId::DEFAULT,
        };
        principal.require_ledger(ledger)?;
        let new = NewAccount {
            id: body.id.map(tally_core::AccountId),
            ledger,
            code: body.code.clone(),
            currency: body.currency.clone(),
            rule,
            metadata: body.metadata.clone(),
        };
        let (record, created) = state.store.create_account(&new, &principal.actor()).await?;
        let status = if created { StatusCode::CREATED } else { StatusCode::OK };
        Ok((status, AccountView::new(&record)))
    };
    idempotency::once(&state, &principal, &headers, "POST /v1/accounts", &body, run).await
}

#[utoipa::path(operation_id = "get_account", get, path = "/v1/accounts/{id_or_code}", tag = "accounts",
    params(("id_or_code" = String, Path, description = "An account id or code")),
    responses((status = 200, body = AccountView, headers(("ETag" = String, description = "The account's version"))),
              (status = 404, description = "account_not_found")),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id_or_code): Path<String>,
    headers: HeaderMap,
) -> Result<(Served, Response), ApiError> {
    let (principal, id_or_code) = (&principal, id_or_code.as_str());
    let (served, record) =
        state.read(&headers, move |reads| async move { readable(&reads.store, principal, id_or_code).await }).await?;
    Ok((served, with_etag(StatusCode::OK, &record)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// A ledger id or code: its accounts only.
    pub ledger: Option<String>,
    pub currency: Option<String>,
    /// `active`, `frozen` or `closed`.
    pub status: Option<String>,
    /// 1 to 1,000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

pub fn page_limit(limit: Option<i64>, max: i64) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(PAGE_SIZE_DEFAULT);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", format!("limit must be 1 to {max}")));
    }
    Ok(limit)
}

pub fn limit_of(limit: Option<i64>) -> Result<i64, ApiError> {
    page_limit(limit, tally_store::queries::PAGE_SIZE_MAX)
}

#[utoipa::path(operation_id = "list_accounts", get, path = "/v1/accounts", tag = "accounts", params(ListQuery),
    responses((status = 200, body = Page<AccountView>)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<(Served, axum::Json<Page<AccountView>>), ApiError> {
    principal.require(READERS)?;
    if principal.role == tally_store::Role::Reader {
        return Err(ApiError::forbidden("a reader key reads its own accounts by id; it cannot list accounts"));
    }
    let limit = page_limit(query.limit, ACCOUNT_PAGE_SIZE_MAX)?;
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(
            AccountStatus::parse(text)
                .ok_or_else(|| ApiError::bad_request("invalid_query", "status is active, frozen or closed"))?,
        ),
    };
    let ledgers = crate::routes::ledgers::scope(&state, &principal, query.ledger.as_deref()).await?;
    let filter =
        &tally_store::AccountFilter { currency: query.currency.as_deref(), status, ledgers: ledgers.as_deref() };
    let cursor = query.cursor.map(tally_core::AccountId);
    let (served, page) = state
        .read(&headers, |reads| async move { Ok(reads.store.list_accounts(filter, cursor, limit).await?) })
        .await?;
    let next_cursor = (page.len() as i64 == limit).then(|| page.last().expect("full").account.id.0.to_string());
    Ok((served, axum::Json(Page { data: page.iter().map(AccountView::new).collect(), next_cursor })))
}

/// The version an `If-Match` header names, if any.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().map_err(|_| ApiError::bad_request("invalid_header", "If-Match is not ASCII"))?;
    let version = text
        .trim()
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| {
        ApiError::bad_request("invalid_header", "If-Match takes an account version in quotes: \"3\"")
    })?;
    Ok(Some(version))
}

/// An optional JSON body: empty means the defaults.
pub fn optional_body<T: serde::de::DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|error| {
        let code = if error.is_data() { "invalid_body" } else { "malformed_json" };
        ApiError::bad_request(code, error.to_string())
    })?;
    // JSON `null` means no body.
    if value.is_null() {
        return Ok(T::default());
    }
    crate::body::check_value(&value)?;
    serde_json::from_value(value).map_err(|error| ApiError::bad_request("invalid_body", error.to_string()))
}

async fn change_status(
    state: AppState,
    principal: Principal,
    id_or_code: String,
    headers: HeaderMap,
    bytes: Bytes,
    change: StatusChange,
) -> Result<Response, ApiError> {
    principal.require(ADMINS)?;
    let body: StatusBody = optional_body(&bytes)?;
    let precondition = if_match(&headers)?;
    let result = match (precondition, body.expected_version) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::bad_request("invalid_input", "If-Match and expected_version disagree"));
        }
        (Some(version), _) => {
            state.store.change_account_status(&id_or_code, change, Some(version), &principal.actor()).await.map_err(
                |error| match error {
                    tally_store::StoreError::VersionConflict { expected, actual } => ApiError::new(
                        StatusCode::PRECONDITION_FAILED,
                        "precondition_failed",
                        format!("If-Match names version {expected}; the account is at {actual}"),
                    )
                    .with_details(serde_json::json!({"expected": expected, "actual": actual})),
                    other => other.into(),
                },
            )?
        }
        (None, expected) => {
            state.store.change_account_status(&id_or_code, change, expected, &principal.actor()).await?
        }
    };
    Ok(with_etag(StatusCode::OK, &result))
}

macro_rules! status_route {
    ($name:ident, $path:literal, $change:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "accounts",
            params(("id_or_code" = String, Path, description = "An account id or code"),
                   ("If-Match" = Option<String>, Header, description = "The account's version in quotes; 412 if it moved on")),
            request_body(content = Option<StatusBody>, description = "Optional: {\"expected_version\": N}"),
            responses((status = 200, body = AccountView),
                      (status = 409, description = "version_conflict"), (status = 412, description = "precondition_failed"),
                      (status = 422, description = "account_not_empty, account_status_transition_invalid")),
            security(("bearer" = [])))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(principal): Extension<Principal>,
            Path(id_or_code): Path<String>,
            headers: HeaderMap,
            RawBody(bytes): RawBody,
        ) -> Result<Response, ApiError> {
            change_status(state, principal, id_or_code, headers, bytes, $change).await
        }
    };
}

status_route!(
    freeze,
    "/v1/accounts/{id_or_code}/freeze",
    StatusChange::Freeze,
    "Freezes an account: it refuses transfers until unfrozen."
);
status_route!(unfreeze, "/v1/accounts/{id_or_code}/unfreeze", StatusChange::Unfreeze, "Unfreezes an account.");
status_route!(close, "/v1/accounts/{id_or_code}/close", StatusChange::Close, "Closes an empty account for good.");

#[utoipa::path(operation_id = "get_balance", get, path = "/v1/accounts/{id_or_code}/balance", tag = "accounts",
    params(("id_or_code" = String, Path, description = "An account id or code"), BalanceQuery),
    responses((status = 200, body = BalanceView)), security(("bearer" = [])))]
pub async fn balance(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id_or_code): Path<String>,
    Query(query): Query<BalanceQuery>,
    headers: HeaderMap,
) -> Result<(Served, axum::Json<BalanceView>), ApiError> {
    if let Some(as_of) = query.as_of {
        // A balance as of a time is history: the replica may answer it.
        let at = tally_recon::parse_time(&as_of)?;
        let (principal, id_or_code) = (&principal, id_or_code.as_str());
        let (served, point) = state
            .read(&headers, |reads| async move {
                let record = readable(&reads.store, principal, id_or_code).await?;
                Ok(tally_recon::balance::balance_as_of(&reads.recon, record.account.id.0, at).await?)
            })
            .await?;
        let s = point.scale;
        return Ok((
            served,
            axum::Json(BalanceView {
                account_id: point.account_id,
                currency: point.currency.clone(),
                balance: tally_core::format_amount(point.balance(), s),
                available: tally_core::format_amount(point.available(), s),
                debits_pending: tally_core::format_amount(point.debits_pending, s),
                credits_pending: tally_core::format_amount(point.credits_pending, s),
                version: None,
                as_of: Some(crate::views::time(point.as_of)),
                snapshot_day: point.snapshot_day,
            }),
        ));
    }
    // The current balance is what a client acts on: always the primary's.
    let record = readable(&state.store, &principal, &id_or_code).await?;
    let view = AccountView::new(&record);
    let balance = BalanceView {
        account_id: view.id,
        currency: view.currency,
        balance: view.balance,
        available: view.available,
        debits_pending: view.debits_pending,
        credits_pending: view.credits_pending,
        version: Some(view.version),
        as_of: None,
        snapshot_day: None,
    };
    Ok((Served::primary(state.replica.is_some()), axum::Json(balance)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BalanceQuery {
    /// The balance as of this time (RFC 3339), from the nearest closed day's snapshot plus the
    /// journal since; the current balance when absent.
    pub as_of: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// 1 to 1,000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(minimum = 1)]
    pub cursor: Option<i64>,
}

#[utoipa::path(operation_id = "list_account_transfers", get, path = "/v1/accounts/{id_or_code}/transfers", tag = "accounts",
    params(("id_or_code" = String, Path, description = "An account id or code"), HistoryQuery),
    responses((status = 200, body = Page<HistoryView>, description = "Newest first")), security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id_or_code): Path<String>,
    Query(query): Query<HistoryQuery>,
    headers: HeaderMap,
) -> Result<(Served, axum::Json<Page<HistoryView>>), ApiError> {
    let limit = page_limit(query.limit, tally_store::queries::HISTORY_PAGE_SIZE_MAX)?;
    let (principal, id_or_code, cursor) = (&principal, id_or_code.as_str(), query.cursor);
    let (served, (record, entries)) = state
        .read(&headers, |reads| async move {
            let record = readable(&reads.store, principal, id_or_code).await?;
            let entries = reads.store.history(&record.account.id.0.to_string(), cursor, limit).await?;
            Ok((record, entries))
        })
        .await?;
    let next_cursor = (entries.len() as i64 == limit).then(|| entries.last().expect("full").seq.to_string());
    let data = entries
        .into_iter()
        .map(|entry| HistoryView {
            direction: match entry.direction {
                tally_store::Direction::Debit => "debit".into(),
                tally_store::Direction::Credit => "credit".into(),
            },
            other_account_id: entry.other_account_id.0,
            actor: entry.actor,
            transfer: TransferView::new(&entry.transfer, record.scale),
        })
        .collect();
    Ok((served, axum::Json(Page { data, next_cursor })))
}
