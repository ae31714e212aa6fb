//! Store errors: operating errors with stable codes. Programmer errors are assertions instead.
//!
//! Three kinds of database failure are told apart, because they tell a caller different things:
//! - the database could not be reached, or the connection was lost before a COMMIT was sent, or
//!   the server refused a write as read-only, not being the primary (`is_connection_lost`, code
//!   `database_unavailable`): nothing was written, since PostgreSQL rolls back a transaction
//!   whose connection ends before its COMMIT;
//! - the connection was lost after a COMMIT was sent and before its answer arrived
//!   (`CommitUnanswered`, code `outcome_unknown`): the change may or may not have been made;
//! - PostgreSQL answered with an error (code `database_error`, unless it is one of the decisions
//!   mapped to codes of their own): the statement, and its transaction, wrote nothing.

use crate::posting::UnansweredBatch;
use thiserror::Error;
use tokio_postgres::error::{Severity, SqlState};

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
    #[error("account code {0} names accounts in several ledgers: name the account by its id, or name the ledger")]
    AccountCodeAmbiguous(String),
    #[error("ledger {0} not found")]
    LedgerNotFound(String),
    #[error("ledger {0} already exists with different fields")]
    LedgerExistsWithDifferentFields(String),
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
    /// A COMMIT was sent and its answer never came (the connection closed, an I/O error, the
    /// server ended the session): the transaction may or may not have committed. For a batch of
    /// the engine, `batch` says what it wrote, so that `Store::batch_outcome` can find out later.
    #[error(
        "the connection was lost after COMMIT was sent, so the change may or may not have been made: {}",
        describe(.cause)
    )]
    CommitUnanswered { cause: tokio_postgres::Error, batch: Option<Box<UnansweredBatch>> },
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
            StoreError::AccountCodeAmbiguous(_) => "account_code_ambiguous",
            StoreError::LedgerNotFound(_) => "ledger_not_found",
            StoreError::LedgerExistsWithDifferentFields(_) => "ledger_exists_with_different_fields",
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
            StoreError::Db(error) if is_connection_lost(error) => "database_unavailable",
            StoreError::Db(_) => "database_error",
            StoreError::CommitUnanswered { .. } => "outcome_unknown",
        }
    }

    /// True when the database could not be reached or the connection to it was lost, before any
    /// COMMIT was sent: nothing was written, and the same work may succeed once the database is
    /// back (`database_unavailable`). A connection lost after a COMMIT was sent is
    /// `CommitUnanswered` instead.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Db(error) => is_connection_lost(error),
            _ => false,
        }
    }

    /// True when the server refused a write because it is read-only (SQLSTATE 25006): a standby,
    /// or a primary fenced after a failover. Nothing was written; the connection string's other
    /// hosts may hold the primary now, so the store stops handing out the connections it has.
    pub fn is_read_only(&self) -> bool {
        let db = match self {
            StoreError::Db(error) => error.as_db_error(),
            _ => None,
        };
        db.is_some_and(|db| *db.code() == SqlState::READ_ONLY_SQL_TRANSACTION)
    }

    /// True when the same work may succeed if simply tried again, having written nothing:
    /// serialization failures, deadlocks, a concurrent insert of the same transfer id, lost
    /// connections (`is_connection_lost`). Never `CommitUnanswered`: work whose
    /// COMMIT may have committed is found out about first, not repeated blindly.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Conflict(_) => true,
            StoreError::Db(error) => {
                is_connection_lost(error)
                    || error.code().is_some_and(|state| {
                        *state == SqlState::T_R_SERIALIZATION_FAILURE
                            || *state == SqlState::T_R_DEADLOCK_DETECTED
                            || *state == SqlState::UNIQUE_VIOLATION && concurrent_decision(constraint(error))
                    })
            }
            other => other.is_connection_lost(),
        }
    }
}

/// Whether a database client error means that the server could not be reached or the session
/// ended: SQLSTATE class 08 (connection exception), 57P01 to 57P03 (the server shut down, or
/// is starting up), 53300 (no connection slot free), a closed connection, or an I/O error
/// talking to the server (which includes a connection string's hosts all refusing
/// `target_session_attrs=read-write`). Errors of encoding or decoding a message, which are the
/// client's, are not. So is 25006, a write refused because the server is read-only: it is
/// not the primary (any more), and the same work may succeed on the one that is
/// (`StoreError::is_read_only`).
pub fn is_connection_lost(error: &tokio_postgres::Error) -> bool {
    if let Some(db) = error.as_db_error() {
        let state = db.code();
        return state.code().starts_with("08")
            || *state == SqlState::ADMIN_SHUTDOWN
            || *state == SqlState::CRASH_SHUTDOWN
            || *state == SqlState::CANNOT_CONNECT_NOW
            || *state == SqlState::TOO_MANY_CONNECTIONS
            || *state == SqlState::READ_ONLY_SQL_TRANSACTION;
    }
    if error.is_closed() {
        return true;
    }
    let io = std::error::Error::source(error).and_then(|source| source.downcast_ref::<std::io::Error>());
    io.is_some_and(|io| !matches!(io.kind(), std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData))
}

/// The error of a COMMIT that did not succeed. An error PostgreSQL answered with severity
/// ERROR (a deferred constraint, a serialization failure) means that the transaction rolled
/// back; anything else (the connection closed, an I/O error, a FATAL that ended the session,
/// possibly after the commit) leaves the outcome unknown.
pub(crate) fn commit_error(cause: tokio_postgres::Error, batch: Option<UnansweredBatch>) -> StoreError {
    let refused = cause.as_db_error().is_some_and(|db| db.parsed_severity() == Some(Severity::Error));
    if refused { StoreError::Db(cause) } else { StoreError::CommitUnanswered { cause, batch: batch.map(Box::new) } }
}

/// Commits a write transaction, telling a COMMIT that went unanswered (`CommitUnanswered`: the
/// change may or may not have been made) from one that was refused (nothing was written).
pub async fn commit_transaction(transaction: deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    transaction.commit().await.map_err(|cause| commit_error(cause, None))
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
