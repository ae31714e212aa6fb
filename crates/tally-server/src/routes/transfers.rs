//! `/v1/transfers`: one, a batch, post/void/reverse, look up, list. Every write goes through the
//! engine, so concurrent single-transfer requests are committed together in batches.

use crate::auth::{MOVERS, Principal, READERS};
use crate::body::{Json, Path, Query, RawBody};
use crate::error::ApiError;
use crate::replica::Served;
use crate::routes::accounts::{limit_of, optional_body};
use crate::state::AppState;
use crate::views::{ActionBody, BatchBody, BatchView, Page, ResolveBody, TransferBody, TransferOutcome, TransferView};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tally_core::{
    AccountId, BATCH_SIZE_MAX, Transfer, TransferId, TransferKind, TransferRequest, TransferResult,
    parse_positive_amount,
};
use tally_engine::{Outcome, Submission};
use tally_store::{JournalRow, Role, TransferFilter};
use utoipa::IntoParams;
use uuid::Uuid;

/// Namespace of the ids derived for post, void and reverse requests sent without an id.
const ACTION_ID_NAMESPACE: Uuid = Uuid::from_u128(0x7a11_7a11_0000_4000_8000_0000_0000_0001);

/// An account named by id or code, as an id. A code that names no account is 404 here; an id
/// that names no account goes to the engine, which records `account_not_found`.
async fn account_id(state: &AppState, id_or_code: &str) -> Result<AccountId, ApiError> {
    if let Ok(id) = Uuid::parse_str(id_or_code) {
        return Ok(AccountId(id));
    }
    Ok(state.store.require_account(id_or_code).await?.account.id)
}

async fn request_of(state: &AppState, body: &TransferBody) -> Result<TransferRequest, ApiError> {
    let scale = state.scales.scale(&state.store, &body.currency).await?;
    let amount = parse_positive_amount(&body.amount, scale)
        .map_err(|e| ApiError::bad_request("invalid_amount", format!("amount: {e}")))?;
    Ok(TransferRequest {
        id: TransferId(body.id),
        kind: if body.pending { TransferKind::Pending } else { TransferKind::Posted },
        debit_account_id: Some(account_id(state, &body.from).await?),
        credit_account_id: Some(account_id(state, &body.to).await?),
        amount: Some(amount),
        currency: Some(body.currency.clone()),
        related_id: None,
        timeout_seconds: body.timeout_seconds,
        expected_debit_version: body.expected_from_version,
        expected_credit_version: body.expected_to_version,
        reference: body.reference.clone(),
        metadata: body.metadata.clone(),
        linked: false,
    })
}

async fn view_of(state: &AppState, transfer: &Transfer) -> Result<TransferView, ApiError> {
    let scale = state.scales.scale(&state.store, &transfer.currency).await?;
    Ok(TransferView::new(transfer, scale))
}

/// One transfer's answer: 201 applied, 200 replayed (`Idempotent-Replayed: true`), or the error
/// of the rule that refused it.
async fn respond(state: &AppState, id: Uuid, outcome: Outcome) -> Result<Response, ApiError> {
    state.metrics.count_result(outcome.result);
    if !outcome.result.is_success() {
        return Err(ApiError::from_result(outcome.result, id));
    }
    let transfer = outcome.transfer.as_ref().expect("an applied transfer comes with its journal entry");
    let mut response =
        (ApiError::status_of(outcome.result), axum::Json(view_of(state, transfer).await?)).into_response();
    if outcome.result == TransferResult::Exists {
        response.headers_mut().insert(crate::idempotency::REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[utoipa::path(operation_id = "create_transfer", post, path = "/v1/transfers", tag = "transfers", request_body = TransferBody,
    responses((status = 201, body = TransferView, description = "Applied"),
              (status = 200, body = TransferView, description = "Already applied under this id (Idempotent-Replayed: true)"),
              (status = 400, description = "A malformed transfer; nothing written, the id stays free"),
              (status = 404, description = "currency_not_found (no such currency), account_not_found (a code that names no account); nothing written"),
              (status = 409, description = "version_conflict, exists_with_different_fields"),
              (status = 422, description = "Refused by a rule (insufficient_funds, account_frozen, currency_mismatch with the currencies in its details, ...); recorded under its id"),
              (status = 503, description = "Retry-After. overloaded, shutting_down, database_unavailable: not applied, nothing written; \
                  outcome_unknown: may or may not have been applied. A retry with the same id is safe after each")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(body): Json<TransferBody>,
) -> Result<Response, ApiError> {
    principal.require(MOVERS)?;
    let request = request_of(&state, &body).await?;
    check_ledgers(&state, &principal, std::slice::from_ref(&request)).await?;
    let accounts = (request.debit_account_id, request.credit_account_id);
    let outcome = state.engine.submit_one(Submission { request, actor: principal.actor() }).await?;
    if outcome.result == TransferResult::CurrencyMismatch {
        state.metrics.count_result(outcome.result);
        return Err(currency_mismatch(&state, body.id, &body.currency, accounts).await?);
    }
    respond(&state, body.id, outcome).await
}

/// For a key scoped to ledgers, before anything is submitted: every account a request names and
/// every transfer it acts on must exist in one of the key's ledgers (`account_not_found`,
/// `transfer_not_found`, `ledger_forbidden`; nothing is written). Without this, a scoped key
/// could record a rejection under an id in a ledger it may not use.
async fn check_ledgers(state: &AppState, principal: &Principal, requests: &[TransferRequest]) -> Result<(), ApiError> {
    if principal.ledgers.is_empty() {
        return Ok(());
    }
    let bound = tally_store::accounts::ACCOUNT_CODES_IDS_MAX;
    for chunk in requests.chunks(bound / 2) {
        let accounts: Vec<AccountId> =
            chunk.iter().flat_map(|r| [r.debit_account_id, r.credit_account_id]).flatten().collect();
        let related: Vec<TransferId> = chunk.iter().filter_map(|r| r.related_id).collect();
        let account_ledgers = state.store.account_ledgers(&accounts).await?;
        let transfer_ledgers = state.store.transfer_ledgers(&related).await?;
        for account in &accounts {
            let ledger = account_ledgers
                .get(account)
                .ok_or_else(|| tally_store::StoreError::AccountNotFound(account.to_string()))?;
            principal.require_ledger(*ledger)?;
        }
        for transfer in &related {
            let ledger = transfer_ledgers
                .get(transfer)
                .ok_or_else(|| tally_store::StoreError::TransferNotFound(transfer.to_string()))?;
            principal.require_ledger(*ledger)?;
        }
    }
    Ok(())
}

/// A `currency_mismatch` that says which currency the transfer names and which each account
/// holds (in its message and as `currency`, `from_currency` and `to_currency` in its details).
async fn currency_mismatch(
    state: &AppState,
    id: Uuid,
    currency: &str,
    accounts: (Option<AccountId>, Option<AccountId>),
) -> Result<ApiError, ApiError> {
    let error = ApiError::from_result(TransferResult::CurrencyMismatch, id);
    let (Some(debit), Some(credit)) = accounts else { return Ok(error) };
    let debit = state.store.account(&debit.0.to_string()).await?;
    let credit = state.store.account(&credit.0.to_string()).await?;
    let Some((debit, credit)) = debit.zip(credit) else { return Ok(error) };
    let (debit, credit) = (debit.account.currency, credit.account.currency);
    let mut details = error.details.clone();
    details["currency"] = json!(currency);
    details["from_currency"] = json!(debit);
    details["to_currency"] = json!(credit);
    let message = crate::error::currency_mismatch_message(Some(currency), &debit, &credit);
    Ok(ApiError { message, ..error.with_details(details) })
}

#[utoipa::path(operation_id = "create_transfer_batch", post, path = "/v1/transfers/batch", tag = "transfers", request_body = BatchBody,
    responses((status = 200, body = BatchView, description = "One result per transfer, in order"),
              (status = 400, description = "A malformed item: nothing written (details.index names it)"),
              (status = 413, description = "More than 8,190 transfers, or a body over the batch limit"),
              (status = 503, description = "Retry-After. overloaded, shutting_down, database_unavailable: none applied, nothing written; \
                  outcome_unknown: each may or may not have been applied. A retry with the same ids is safe after each")),
    security(("bearer" = [])))]
pub async fn batch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(body): Json<BatchBody>,
) -> Result<axum::Json<BatchView>, ApiError> {
    principal.require(MOVERS)?;
    let count = body.transfers.len();
    if count == 0 {
        return Err(ApiError::bad_request("invalid_body", "a batch holds at least one transfer"));
    }
    if count > BATCH_SIZE_MAX {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("a batch holds at most {BATCH_SIZE_MAX} transfers, got {count}"),
        ));
    }
    let actor = principal.actor();
    let mut submissions = Vec::with_capacity(count);
    for (index, item) in body.transfers.iter().enumerate() {
        let mut request = request_of(&state, item).await.map_err(|error| {
            let mut details = error.details.clone();
            details["index"] = json!(index);
            details["transfer_id"] = json!(item.id);
            error.with_details(details)
        })?;
        // An atomic batch is one linked chain: the last transfer closes it.
        request.linked = body.atomic && index + 1 < count;
        submissions.push(Submission { request, actor: actor.clone() });
    }
    if !principal.ledgers.is_empty() {
        let requests: Vec<TransferRequest> = submissions.iter().map(|s| s.request.clone()).collect();
        check_ledgers(&state, &principal, &requests).await?;
    }
    let outcomes = state.engine.submit(submissions).await?;
    let mut results = Vec::with_capacity(count);
    let mut applied = 0;
    for (item, outcome) in body.transfers.iter().zip(outcomes) {
        state.metrics.count_result(outcome.result);
        applied += usize::from(outcome.result == TransferResult::Ok);
        let transfer = match &outcome.transfer {
            Some(transfer) => Some(view_of(&state, transfer).await?),
            None => None,
        };
        results.push(TransferOutcome {
            id: item.id,
            result: outcome.result.code().to_owned(),
            status: ApiError::status_of(outcome.result).as_u16(),
            transfer,
        });
    }
    Ok(axum::Json(BatchView { results, applied }))
}

async fn act(
    state: AppState,
    principal: Principal,
    target: Uuid,
    bytes: Bytes,
    kind: TransferKind,
) -> Result<Response, ApiError> {
    principal.require(MOVERS)?;
    let body: ActionBody = optional_body(&bytes)?;
    let amount = match (&body.amount, kind) {
        (None, _) => None,
        (Some(text), TransferKind::PostPending) => {
            let pending = state
                .store
                .transfer(target)
                .await?
                .ok_or_else(|| tally_store::StoreError::TransferNotFound(target.to_string()))?;
            let scale = state.scales.scale(&state.store, &pending.currency).await?;
            Some(
                parse_positive_amount(text, scale)
                    .map_err(|e| ApiError::bad_request("invalid_amount", format!("amount: {e}")))?,
            )
        }
        (Some(_), _) => return Err(ApiError::bad_request("invalid_body", "only a post takes an amount")),
    };
    let id =
        body.id.unwrap_or_else(|| Uuid::new_v5(&ACTION_ID_NAMESPACE, format!("{}:{target}", kind.as_str()).as_bytes()));
    let request = TransferRequest::acting_on(TransferId(id), kind, TransferId(target), amount);
    check_ledgers(&state, &principal, std::slice::from_ref(&request)).await?;
    let outcome = state.engine.submit_one(Submission { request, actor: principal.actor() }).await?;
    respond(&state, id, outcome).await
}

macro_rules! action_route {
    ($name:ident, $path:literal, $kind:expr, $body:ty, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "transfers",
            params(("id" = Uuid, Path, description = "The transfer acted on")),
            request_body(content = Option<$body>, description = "Optional: the new transfer's id; for a post, the amount"),
            responses((status = 201, body = TransferView), (status = 200, body = TransferView, description = "Replayed"),
                      (status = 422, description = "pending_not_found, pending_already_posted, already_reversed, ..."),
                      (status = 503, description = "Retry-After. overloaded, shutting_down, database_unavailable: not applied, nothing written; \
                          outcome_unknown: may or may not have been applied. A retry with the same id is safe after each")),
            security(("bearer" = [])))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(principal): Extension<Principal>,
            Path(id): Path<Uuid>,
            RawBody(bytes): RawBody,
        ) -> Result<Response, ApiError> {
            act(state, principal, id, bytes, $kind).await
        }
    };
}

action_route!(
    post_pending,
    "/v1/transfers/{id}/post",
    TransferKind::PostPending,
    ActionBody,
    "Posts a pending transfer (all of it, or `amount`)."
);
action_route!(
    void_pending,
    "/v1/transfers/{id}/void",
    TransferKind::VoidPending,
    ResolveBody,
    "Voids a pending transfer."
);
action_route!(
    reverse,
    "/v1/transfers/{id}/reverse",
    TransferKind::Reversal,
    ResolveBody,
    "Reverses a posted transfer with a new transfer the other way."
);

async fn outcome_of_row(state: &AppState, row: &JournalRow) -> Result<TransferOutcome, ApiError> {
    Ok(match row {
        JournalRow::Applied { transfer, .. } => TransferOutcome {
            id: transfer.id.0,
            result: "ok".into(),
            status: StatusCode::OK.as_u16(),
            transfer: Some(view_of(state, transfer).await?),
        },
        JournalRow::Rejected { rejection, .. } => TransferOutcome {
            id: rejection.request.id.0,
            result: rejection.result.code().into(),
            status: ApiError::status_of(rejection.result).as_u16(),
            transfer: None,
        },
    })
}

fn readable_row(principal: &Principal, row: &JournalRow) -> bool {
    match row {
        JournalRow::Applied { transfer, .. } => {
            principal.may_use_ledger(transfer.ledger)
                && (principal.may_read_account(transfer.debit_account_id.0)
                    || principal.may_read_account(transfer.credit_account_id.0))
        }
        JournalRow::Rejected { rejection, .. } => {
            principal.role != Role::Reader && principal.may_use_ledger(rejection.ledger)
        }
    }
}

#[utoipa::path(operation_id = "get_transfer", get, path = "/v1/transfers/{id}", tag = "transfers",
    params(("id" = Uuid, Path, description = "A transfer id")),
    responses((status = 200, body = TransferOutcome, description = "An applied transfer, or the rule that refused the id"),
              (status = 404, description = "transfer_not_found: the id was never decided")),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<(Served, axum::Json<TransferOutcome>), ApiError> {
    principal.require(READERS)?;
    let (served, row) = state
        .read(&headers, |reads| async move {
            Ok(reads
                .store
                .journal_row(id)
                .await?
                .ok_or_else(|| tally_store::StoreError::TransferNotFound(id.to_string()))?)
        })
        .await?;
    if !readable_row(&principal, &row) {
        return Err(ApiError::forbidden("this key may not read that transfer"));
    }
    Ok((served, axum::Json(outcome_of_row(&state, &row).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// An account id or code: its transfers only.
    pub account: Option<String>,
    /// A ledger id or code: its transfers only.
    pub ledger: Option<String>,
    /// `posted`, `pending`, `voided`, `expired` or `rejected` (default: all applied).
    pub status: Option<String>,
    /// RFC 3339: created at or after.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339: created before.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// 1 to 1,000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(minimum = 1)]
    pub cursor: Option<i64>,
    /// A transfer id: the transfers that act on it (the post or void of a hold, a reversal),
    /// oldest first, in one page. It takes no other filter.
    pub related: Option<Uuid>,
}

/// `GET /v1/transfers?related=ID`: the transfers a caller may read that act on transfer `id`.
async fn list_related(
    state: &AppState,
    principal: &Principal,
    query: &ListQuery,
    id: Uuid,
    headers: &HeaderMap,
) -> Result<(Served, axum::Json<Page<TransferOutcome>>), ApiError> {
    let alone = query.account.is_none()
        && query.ledger.is_none()
        && query.status.is_none()
        && query.since.is_none()
        && query.until.is_none()
        && query.cursor.is_none();
    if !alone {
        return Err(ApiError::bad_request("invalid_query", "related= takes no other filter (limit aside)"));
    }
    let limit = limit_of(query.limit)?;
    let (served, rows) =
        state.read(headers, |reads| async move { Ok(reads.store.related_transfers(id).await?) }).await?;
    let mut data = Vec::with_capacity(rows.len());
    for row in rows.iter().filter(|row| readable_row(principal, row)).take(usize::try_from(limit).unwrap_or(0)) {
        data.push(outcome_of_row(state, row).await?);
    }
    Ok((served, axum::Json(Page { data, next_cursor: None })))
}

fn timestamp(name: &str, text: Option<&str>) -> Result<Option<tally_core::Timestamp>, ApiError> {
    text.map(|text| {
        humantime::parse_rfc3339_weak(text)
            .map(tally_store::convert::from_system_time)
            .map_err(|_| ApiError::bad_request("invalid_query", format!("{name} must be an RFC 3339 time")))
    })
    .transpose()
}

#[utoipa::path(operation_id = "list_transfers", get, path = "/v1/transfers", tag = "transfers", params(ListQuery),
    responses((status = 200, body = Page<TransferOutcome>, description = "Newest first")), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<(Served, axum::Json<Page<TransferOutcome>>), ApiError> {
    principal.require(READERS)?;
    if let Some(related) = query.related {
        return list_related(&state, &principal, &query, related, &headers).await;
    }
    let account = match query.account.as_deref() {
        Some(id_or_code) => {
            let record = crate::routes::accounts::readable(&state.store, &principal, id_or_code).await?;
            Some(record.account.id)
        }
        None if principal.role == Role::Reader => {
            return Err(ApiError::forbidden("a reader key lists the transfers of one of its accounts: add account="));
        }
        None => None,
    };
    const STATUSES: [&str; 5] = ["posted", "pending", "voided", "expired", "rejected"];
    if let Some(status) = query.status.as_deref()
        && !STATUSES.contains(&status)
    {
        return Err(ApiError::bad_request("invalid_query", "status is posted, pending, voided, expired or rejected"));
    }
    let ledgers = crate::routes::ledgers::scope(&state, &principal, query.ledger.as_deref()).await?;
    let filter = &TransferFilter {
        account,
        ledgers,
        status: query.status.clone(),
        since: timestamp("since", query.since.as_deref())?,
        until: timestamp("until", query.until.as_deref())?,
        before: query.cursor,
        limit: limit_of(query.limit)?,
    };
    let (served, (rows, next)) =
        state.read(&headers, |reads| async move { Ok(reads.store.list_transfers(filter).await?) }).await?;
    let mut data = Vec::with_capacity(rows.len());
    for row in &rows {
        data.push(outcome_of_row(&state, row).await?);
    }
    Ok((served, axum::Json(Page { data, next_cursor: next.map(|seq| seq.to_string()) })))
}
