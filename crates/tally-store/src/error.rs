//! Store errors: operating errors with stable codes. Programmer errors are assertions instead.

use thiserror::Error;
use tokio_postgres::error::SqlState;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("account {0} not found")]
    AccountNotFound(String),
    #[error("transfer {0} not found")]
    TransferNotFound(String),
    #[error("currency {0} is not registered")]
    CurrencyNotFound(String),
    #[error("currency {0} already exists with a different scale")]
    CurrencyExistsWithDifferentScale(String),
    #[error("account {0} already exists with different fields")]
    AccountExistsWithDifferentFields(String),
    #[error("account code {0} is already taken by another account")]
    AccountCodeTaken(String),
    #[error("account version is {actual}, not the expected {expected}")]
    VersionConflict { expected: i64, actual: i64 },
    #[error("account {0} still has a balance or open holds and cannot be closed")]
    AccountNotEmpty(String),
    #[error("account {id} cannot go from {from} to {to}")]
    StatusTransitionInvalid { id: String, from: &'static str, to: &'static str },
    #[error("an API key named {0} already exists")]
    KeyNameTaken(String),
    #[error("API key {0} not found")]
    KeyNotFound(String),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("the batch was decided on state that moved on: {0}")]
    Conflict(String),
    #[error("migration {version} ({name}) was changed after it was applied")]
    MigrationChanged { version: i32, name: String },
    #[error("the database schema is at version {found}, newer than this Tally ({known})")]
    SchemaTooNew { found: i32, known: i32 },
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {}", describe(.0))]
    Db(#[from] tokio_postgres::Error),
}

impl StoreError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::AccountNotFound(_) => "account_not_found",
            StoreError::TransferNotFound(_) => "transfer_not_found",
            StoreError::CurrencyNotFound(_) => "currency_not_found",
            StoreError::CurrencyExistsWithDifferentScale(_) => "currency_exists_with_different_scale",
            StoreError::AccountExistsWithDifferentFields(_) => "account_exists_with_different_fields",
            StoreError::AccountCodeTaken(_) => "account_code_taken",
            StoreError::VersionConflict { .. } => "version_conflict",
            StoreError::AccountNotEmpty(_) => "account_not_empty",
            StoreError::StatusTransitionInvalid { .. } => "account_status_transition_invalid",
            StoreError::KeyNameTaken(_) => "key_name_taken",
            StoreError::KeyNotFound(_) => "key_not_found",
            StoreError::Invalid(_) => "invalid_input",
            StoreError::Conflict(_) => "conflict",
            StoreError::MigrationChanged { .. } => "migration_changed",
            StoreError::SchemaTooNew { .. } => "schema_too_new",
            StoreError::Pool(_) => "database_unavailable",
            StoreError::Db(_) => "database_error",
        }
    }

    /// True when the same work may succeed if simply tried again: serialization failures,
    /// deadlocks, a concurrent insert of the same transfer id, lost connections.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Pool(_) | StoreError::Conflict(_) => true,
            StoreError::Db(error) => match error.code() {
                Some(state) => {
                    *state == SqlState::T_R_SERIALIZATION_FAILURE
                        || *state == SqlState::T_R_DEADLOCK_DETECTED
                        || *state == SqlState::UNIQUE_VIOLATION && concurrent_decision(constraint(error))
                        || *state == SqlState::ADMIN_SHUTDOWN
                        || *state == SqlState::CANNOT_CONNECT_NOW
                }
                None => error.is_closed(),
            },
            _ => false,
        }
    }
}

/// Unique indexes that a concurrent batch can trip by deciding the same id, or resolving or
/// reversing the same transfer, between our read and our write; a retry reads its decision.
fn concurrent_decision(constraint: Option<&str>) -> bool {
    matches!(constraint, Some("transfers_pkey" | "transfers_one_resolution" | "transfers_one_reversal"))
}

/// PostgreSQL's own message (code, message, detail) where there is one.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} {}: {} ({detail})", db.severity(), db.code().code(), db.message()),
            None => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        },
        None => error.to_string(),
    }
}

/// The name of the constraint a database error is about, if any.
pub(crate) fn constraint(error: &tokio_postgres::Error) -> Option<&str> {
    error.as_db_error().and_then(|db| db.constraint())
}
