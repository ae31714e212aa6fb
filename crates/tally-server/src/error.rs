//! API errors: one JSON shape, a stable machine-readable code, the right HTTP status.
//!
//! `{"error": {"code": "insufficient_funds", "message": "...", "details": {...}}}`. Every code is
//! listed in `CODES` with its status; `codes_are_documented` checks that README.md lists them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tally_core::TransferResult;
use tally_engine::EngineError;
use tally_store::StoreError;

/// Every error code the API answers with, beside the transfer result codes (`TransferResult`).
pub const CODES: &[(&str, u16)] = &[
    ("malformed_json", 400),
    ("invalid_body", 400),
    ("invalid_query", 400),
    ("invalid_input", 400),
    ("invalid_amount", 400),
    ("invalid_header", 400),
    ("day_invalid", 400),
    ("time_invalid", 400),
    ("time_zone_invalid", 400),
    ("cutoff_invalid", 400),
    ("day_definition_locked", 400),
    ("webhook_url_invalid", 400),
    ("event_type_invalid", 400),
    ("webhook_invalid", 400),
    ("unauthenticated", 401),
    ("forbidden", 403),
    ("ledger_forbidden", 403),
    ("not_found", 404),
    ("account_not_found", 404),
    ("transfer_not_found", 404),
    ("currency_not_found", 404),
    ("ledger_not_found", 404),
    ("key_not_found", 404),
    ("reconciliation_not_found", 404),
    ("statement_not_found", 404),
    ("webhook_not_found", 404),
    ("delivery_not_found", 404),
    ("method_not_allowed", 405),
    ("request_timeout", 408),
    ("version_conflict", 409),
    ("exists_with_different_fields", 409),
    ("account_exists_with_different_fields", 409),
    ("currency_exists_with_different_scale", 409),
    ("account_code_taken", 409),
    ("account_code_ambiguous", 409),
    ("ledger_exists_with_different_fields", 409),
    ("key_name_taken", 409),
    ("request_in_progress", 409),
    ("day_not_closed", 409),
    ("reconciliation_running", 409),
    ("statement_exists_with_different_content", 409),
    ("webhook_limit_reached", 409),
    ("delivery_not_parked", 409),
    ("precondition_failed", 412),
    ("body_too_large", 413),
    ("unsupported_media_type", 415),
    ("idempotency_key_reused", 422),
    ("account_not_empty", 422),
    ("account_status_transition_invalid", 422),
    ("as_of_in_future", 422),
    ("too_many_days", 422),
    ("statement_malformed", 422),
    ("statement_amount_invalid", 422),
    ("statement_date_invalid", 422),
    ("statement_balance_mismatch", 422),
    ("statement_unsupported", 422),
    ("statement_too_large", 422),
    ("statement_currency_mismatch", 422),
    ("statement_format_unknown", 422),
    ("statement_rules_invalid", 422),
    ("statement_mapping_invalid", 422),
    ("statement_mapping_ambiguous", 422),
    ("rate_limited", 429),
    ("internal_error", 500),
    ("database_error", 500),
    ("overloaded", 503),
    ("shutting_down", 503),
    ("outcome_unknown", 503),
    ("database_unavailable", 503),
];

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        assert!(
            CODES.iter().any(|(c, s)| *c == code && *s == status.as_u16()) || TransferResult::from_code(code).is_some(),
            "undocumented error code {code} ({status})"
        );
        ApiError { status, code, message: message.into(), details: json!({}), retry_after: None }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn overloaded(message: impl Into<String>) -> ApiError {
        let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message);
        error.retry_after = Some(1);
        error
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    /// 503 `database_unavailable`: the database could not be reached, or the connection to it was
    /// lost before anything was committed.
    pub fn database_unavailable() -> ApiError {
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is unavailable; nothing was written; retry shortly (a transfer with the same id)",
        );
        error.retry_after = Some(1);
        error
    }

    /// 503 `outcome_unknown`: a COMMIT was sent and its answer lost.
    pub fn outcome_unknown(message: impl Into<String>) -> ApiError {
        let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown", message);
        error.retry_after = Some(1);
        error
    }

    /// The HTTP status a transfer result answers with.
    pub fn status_of(result: TransferResult) -> StatusCode {
        match result {
            TransferResult::Ok => StatusCode::CREATED,
            TransferResult::Exists => StatusCode::OK,
            TransferResult::ExistsWithDifferentFields | TransferResult::VersionConflict => StatusCode::CONFLICT,
            result if result.is_validation() => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// A transfer that was not applied, as an error.
    pub fn from_result(result: TransferResult, transfer_id: uuid::Uuid) -> ApiError {
        assert!(!result.is_success());
        ApiError {
            status: ApiError::status_of(result),
            code: result.code(),
            message: describe(result).to_owned(),
            details: json!({"transfer_id": transfer_id, "result": result.code(), "transient": result.transient()}),
            retry_after: None,
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message, "details": self.details}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<tally_recon::ReconError> for ApiError {
    fn from(error: tally_recon::ReconError) -> ApiError {
        use tally_recon::ReconError as E;
        let status = match &error {
            // Classified like every database error of the store: a lost connection is
            // `database_unavailable`, a refusal `database_error`.
            E::Store(_) | E::Db(_) => {
                return match error {
                    E::Store(store) => ApiError::from(store),
                    E::Db(db) => ApiError::from(StoreError::Db(db)),
                    _ => unreachable!("matched above"),
                };
            }
            E::DayInvalid(_) | E::TimeInvalid(_) => StatusCode::BAD_REQUEST,
            E::AccountNotFound(_) => StatusCode::NOT_FOUND,
            E::DayNotClosed { .. } | E::RunInProgress(_) => StatusCode::CONFLICT,
            E::AsOfInFuture | E::TooManyDays { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            E::StatementNotFound(_) => StatusCode::NOT_FOUND,
            E::StatementExistsWithDifferentContent(_) => StatusCode::CONFLICT,
            E::Statement(_)
            | E::StatementFormatUnknown
            | E::StatementCurrencyMismatch { .. }
            | E::StatementRulesInvalid(_)
            | E::StatementMappingInvalid(_)
            | E::StatementMappingAmbiguous(_) => StatusCode::UNPROCESSABLE_ENTITY,
            // Settings are changed at the command line only.
            E::TimeZoneInvalid(_) | E::CutoffInvalid(_) | E::DayDefinitionLocked => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, error.code(), error.to_string())
    }
}

impl From<tally_relay::RelayError> for ApiError {
    fn from(error: tally_relay::RelayError) -> ApiError {
        use tally_relay::RelayError as E;
        let error = match error {
            // Classified like every database error of the store.
            E::Store(store) => return ApiError::from(store),
            other => other,
        };
        let status = match &error {
            E::Store(_) => unreachable!("answered above"),
            E::WebhookUrlInvalid(_) | E::EventTypeInvalid(_) | E::WebhookInvalid(_) => StatusCode::BAD_REQUEST,
            E::WebhookNotFound(_) | E::DeliveryNotFound { .. } => StatusCode::NOT_FOUND,
            E::WebhookLimitReached(_) | E::DeliveryNotParked { .. } => StatusCode::CONFLICT,
            // What only the relays meet, never a request: a bug if it reaches one.
            E::Nats(_) | E::LeaseLost(_) | E::DeliveryChanged { .. } | E::Config(_) => {
                tracing::error!(code = error.code(), %error, "relay error in a request");
                return ApiError::internal("an unexpected relay error; see the server log");
            }
        };
        let details = match &error {
            E::WebhookNotFound(id) => json!({"webhook_id": id}),
            E::DeliveryNotFound { id, seq } => json!({"webhook_id": id, "seq": seq}),
            E::DeliveryNotParked { id, seq, status } => json!({"webhook_id": id, "seq": seq, "status": status}),
            E::WebhookLimitReached(limit) => json!({"limit": limit}),
            _ => json!({}),
        };
        ApiError::new(status, error.code(), error.to_string()).with_details(details)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        if error.is_connection_lost() {
            tracing::warn!(code = error.code(), %error, "the database is unavailable");
            return ApiError::database_unavailable();
        }
        let status = match &error {
            StoreError::AccountNotFound(_)
            | StoreError::TransferNotFound(_)
            | StoreError::CurrencyNotFound(_)
            | StoreError::LedgerNotFound(_)
            | StoreError::KeyNotFound(_) => StatusCode::NOT_FOUND,
            StoreError::CurrencyExistsWithDifferentScale(_)
            | StoreError::AccountExistsWithDifferentFields(_)
            | StoreError::AccountCodeTaken(_)
            | StoreError::AccountCodeAmbiguous(_)
            | StoreError::LedgerExistsWithDifferentFields(_)
            | StoreError::KeyNameTaken(_)
            | StoreError::VersionConflict { .. } => StatusCode::CONFLICT,
            StoreError::AccountNotEmpty(_) | StoreError::StatusTransitionInvalid { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            StoreError::Conflict(_) | StoreError::Pool(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::CommitUnanswered { .. } => {
                tracing::warn!(code = error.code(), %error, "a change's COMMIT went unanswered");
                return ApiError::outcome_unknown(
                    "the connection to the database was lost after the change was sent to be committed: it may or \
                     may not have been made; read it back, or repeat the request with the same id or Idempotency-Key",
                );
            }
            StoreError::MigrationChanged { .. } | StoreError::SchemaTooNew { .. } | StoreError::Db(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            // The database's words stay in the log: they may name tables and constraints.
            tracing::error!(code = error.code(), %error, "store error");
            return ApiError::new(status, "database_error", "the database refused the operation; see the server log");
        }
        let details = match &error {
            StoreError::VersionConflict { expected, actual } => json!({"expected": expected, "actual": actual}),
            _ => json!({}),
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // A conflict with a concurrent writer: the operation rolled back.
            return ApiError::overloaded("the operation met a concurrent change and wrote nothing; retry it");
        }
        ApiError::new(status, error.code(), error.to_string()).with_details(details)
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> ApiError {
        match error {
            EngineError::Store(store) => store.into(),
            EngineError::ShuttingDown => {
                let mut api = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", error.to_string());
                api.retry_after = Some(1);
                api
            }
            EngineError::OutcomeUnknown => ApiError::outcome_unknown(error.to_string()),
            EngineError::BatchSizeInvalid(_) => ApiError::bad_request("invalid_body", error.to_string()),
            EngineError::Overloaded => ApiError::overloaded(error.to_string()),
            // A batch that failed wrote nothing (an unknown outcome is `outcome_unknown`). The
            // database's words stay in the log (they may name tables and constraints).
            EngineError::RetriesExhausted { .. } | EngineError::BatchFailed { .. } => {
                let code = error.code();
                tracing::error!(code, %error, "a batch could not be committed");
                match code {
                    "outcome_unknown" => ApiError::outcome_unknown(EngineError::OutcomeUnknown.to_string()),
                    "database_unavailable" => ApiError::database_unavailable(),
                    "overloaded" => ApiError::overloaded(
                        "the transfer was not applied (it met concurrent changes too often); nothing was written; \
                         retry it with the same id",
                    ),
                    _ => ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "database_error",
                        "the database refused the transfer; nothing was written; see the server log",
                    ),
                }
            }
        }
    }
}

/// A sentence for each transfer result.
pub fn describe(result: TransferResult) -> &'static str {
    use TransferResult::*;
    match result {
        Ok => "the transfer was applied",
        Exists => "the transfer was already applied with these fields",
        LinkedChainFailed => "another transfer of the atomic batch failed, so this one was not applied",
        LinkedChainOpen => "the last transfer of a linked chain must close it",
        IdInvalid => "the transfer id is invalid",
        AccountsRequired => "this kind of transfer needs both accounts",
        AccountsNotAllowed => "this kind of transfer takes its accounts from the transfer it acts on",
        RelatedIdRequired => "this kind of transfer needs the id of the transfer it acts on",
        RelatedIdNotAllowed => "only post, void and reversal transfers act on another transfer",
        TimeoutInvalid => "a timeout is allowed only on a pending transfer, within the allowed range",
        AmountInvalid => "the amount must be positive and within range",
        SameAccount => "a transfer needs two different accounts",
        ReferenceTooLong => "the reference is too long",
        MetadataTooLarge => "the metadata is too large",
        ExistsWithDifferentFields => "a transfer with this id exists with different fields",
        AccountNotFound => "an account of the transfer does not exist",
        CurrencyMismatch => "the currency does not match the accounts",
        LedgerMismatch => "the two accounts belong to different ledgers; a transfer stays inside one ledger",
        PendingNotFound => "the pending transfer does not exist",
        NotPending => "the transfer acted on is not a pending transfer",
        PendingAlreadyPosted => "the pending transfer was already posted",
        PendingAlreadyVoided => "the pending transfer was already voided",
        PendingExpired => "the pending transfer expired",
        AmountExceedsPending => "the amount exceeds the pending amount",
        TransferNotFound => "the transfer to reverse does not exist",
        ReversalNotAllowed => "only a posted transfer can be reversed",
        AlreadyReversed => "the transfer was already reversed",
        AccountClosed => "an account of the transfer is closed",
        AccountFrozen => "an account of the transfer is frozen",
        VersionConflict => "an account is not at the expected version",
        Overflow => "an account total would overflow",
        InsufficientFunds => "the debit account has insufficient funds",
        OverdraftLimitExceeded => "the debit account's overdraft limit would be exceeded",
    }
}

/// What a `currency_mismatch` refusal of a new transfer means here: the currency the transfer
/// names (if it names one) and the currency each account holds.
pub fn currency_mismatch_message(transfer: Option<&str>, debit: &str, credit: &str) -> String {
    let accounts = if debit == credit {
        format!("both accounts hold {debit}")
    } else {
        format!("the debit account holds {debit}, the credit account {credit}")
    };
    match transfer {
        Some(currency) => format!("the transfer is in {currency}; {accounts}"),
        None => format!("the accounts' currencies differ: {accounts}"),
    }
}
