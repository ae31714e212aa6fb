//! The JSON shapes in which Tally shows ledger objects to the outside: the HTTP API's answers,
//! and every event that leaves Tally (`GET /v1/events`, the server-sent event stream, NATS
//! JetStream and webhooks), so that all of them show an object the same way. Amounts are decimal
//! strings in the currency's scale, times RFC 3339 with microseconds, ids UUID strings.
//!
//! Pure: no I/O. It turns the store's typed records into views.

pub mod events;

pub use events::{EventPayload, EventView};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_core::{Timestamp, Transfer, format_amount};
use tally_store::AccountRecord;
use utoipa::ToSchema;
use uuid::Uuid;

/// A time as RFC 3339 in UTC with microseconds.
pub fn time(at: Timestamp) -> String {
    humantime::format_rfc3339_micros(tally_store::convert::to_system_time(at)).to_string()
}

/// An account and its balances: every answer that shows an account (open, look up, list,
/// status changes, account events) shows it as this, with its fields in this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    pub id: Uuid,
    /// The ledger's id (`GET /v1/ledgers`); 1 is `default`.
    pub ledger: i32,
    /// An external code, unique within the ledger.
    pub code: Option<String>,
    pub currency: String,
    /// `active`, `frozen` or `closed`.
    pub status: String,
    /// Posted credits minus posted debits.
    #[schema(example = "125.50")]
    pub balance: String,
    /// The balance less the debits held by pending transfers.
    pub available: String,
    pub debits_posted: String,
    pub credits_posted: String,
    pub debits_pending: String,
    pub credits_pending: String,
    /// How far below zero `available` may go; absent when `unrestricted`.
    pub overdraft_limit: Option<String>,
    pub unrestricted: bool,
    /// Grows with every change; send it as `If-Match` or `expected_*_version`.
    pub version: i64,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
}

impl AccountView {
    pub fn new(record: &AccountRecord) -> AccountView {
        let a = &record.account;
        let money = |value| format_amount(value, record.scale);
        let limit = a.rule.limit();
        AccountView {
            id: a.id.0,
            ledger: a.ledger.0,
            code: record.code.clone(),
            currency: a.currency.clone(),
            status: a.status.as_str().to_owned(),
            balance: money(a.balance()),
            available: money(a.available()),
            debits_posted: money(a.debits_posted),
            credits_posted: money(a.credits_posted),
            debits_pending: money(a.debits_pending),
            credits_pending: money(a.credits_pending),
            overdraft_limit: limit.map(money),
            unrestricted: limit.is_none(),
            version: a.version,
            metadata: record.metadata.clone(),
            created_at: time(record.created_at),
            updated_at: time(record.updated_at),
        }
    }
}

/// A transfer in the journal.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TransferView {
    pub id: Uuid,
    /// The ledger of its two accounts.
    pub ledger: i32,
    /// `posted`, `pending`, `post_pending`, `void_pending` or `reversal`.
    pub kind: String,
    /// `posted`, `pending`, `voided` or `expired`.
    pub status: String,
    /// The debit account.
    pub from: Uuid,
    /// The credit account.
    pub to: Uuid,
    #[schema(example = "12.34")]
    pub amount: String,
    pub currency: String,
    /// The transfer this one posts, voids or reverses.
    pub related_id: Option<Uuid>,
    pub timeout_seconds: Option<u32>,
    pub expires_at: Option<String>,
    pub reference: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    pub created_at: String,
    pub completed_at: Option<String>,
}

impl TransferView {
    pub fn new(transfer: &Transfer, scale: u8) -> TransferView {
        TransferView {
            id: transfer.id.0,
            ledger: transfer.ledger.0,
            kind: transfer.kind.as_str().to_owned(),
            status: transfer.status.as_str().to_owned(),
            from: transfer.debit_account_id.0,
            to: transfer.credit_account_id.0,
            amount: format_amount(transfer.amount, scale),
            currency: transfer.currency.clone(),
            related_id: transfer.related_id.map(|id| id.0),
            timeout_seconds: transfer.timeout_seconds,
            expires_at: transfer.expires_at.map(time),
            reference: transfer.reference.clone(),
            metadata: transfer.metadata.clone(),
            created_at: time(transfer.created_at),
            completed_at: transfer.completed_at.map(time),
        }
    }
}
