//! What the API returns and accepts: amounts as decimal strings in the currency's scale,
//! times as RFC 3339, ids as UUID strings.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_core::{Timestamp, Transfer, format_amount};
use tally_store::{AccountRecord, AuditRecord, EventRecord, EventSubject};
use utoipa::ToSchema;
use uuid::Uuid;

pub fn time(at: Timestamp) -> String {
    humantime::format_rfc3339_micros(tally_store::convert::to_system_time(at)).to_string()
}

/// An account and its balances: every answer that shows an account (open, look up, list,
/// status changes, account events) shows it as this, with its fields in this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    pub id: Uuid,
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

/// A balance, and the version it was read at; or, with `as_of`, the balance at that time.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BalanceView {
    pub account_id: Uuid,
    pub currency: String,
    pub balance: String,
    pub available: String,
    pub debits_pending: String,
    pub credits_pending: String,
    /// The account's version now (absent for a balance as of a past time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// The time the balance is as of (only when asked with `as_of`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    /// The closed day whose snapshot the balance as of a past time started from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_day: Option<String>,
}

/// A transfer in the journal.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TransferView {
    pub id: Uuid,
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

/// One item of a batch's answer, or of a listing that includes recorded rejections.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TransferOutcome {
    pub id: Uuid,
    /// `ok`, `exists`, or the code of the rule that refused it.
    pub result: String,
    /// The HTTP status this item would have had alone.
    pub status: u16,
    pub transfer: Option<TransferView>,
}

/// The answer to a batch.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BatchView {
    pub results: Vec<TransferOutcome>,
    /// How many transfers were applied by this request (not replays).
    pub applied: usize,
}

/// A page with the cursor for the next one (absent on the last page).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// One line of an account's history.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HistoryView {
    /// `debit` (money left the account) or `credit`.
    pub direction: String,
    pub other_account_id: Uuid,
    pub actor: String,
    pub transfer: TransferView,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub db_user: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

impl From<AuditRecord> for AuditView {
    fn from(r: AuditRecord) -> AuditView {
        AuditView {
            id: r.id,
            at: time(r.at),
            actor: r.actor,
            db_user: r.db_user,
            action: r.action,
            entity_type: r.entity_type,
            entity_id: r.entity_id,
            before: r.before,
            after: r.after,
        }
    }
}

/// One event of the outbox, in commit order.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EventView {
    /// The event's position: gap-free, in commit order.
    pub seq: i64,
    pub at: String,
    /// `transfer.<kind>` (`transfer.posted`, `transfer.pending`, ...), `transfer.expired`,
    /// `account.created|frozen|unfrozen|closed`, `currency.created`, `ledger_day.closed`,
    /// `reconciliation.finished`, `statement.imported`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub entity_id: String,
    /// Transfer events: the transfer as `GET /v1/transfers/{id}` shows it (its `transfer`), as the event left it
    /// (a hold's `transfer.pending` shows it pending). Account events: the account as
    /// `GET /v1/accounts/{id}` shows it, as the change left it. Other events: counts, days and
    /// ids (no amounts, no times).
    #[schema(value_type = Option<Object>)]
    pub payload: EventPayload,
}

/// An event's payload, in the API's own form: amounts as decimal strings, times as RFC 3339.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventPayload {
    Transfer(TransferView),
    Account(AccountView),
    Other(Option<Value>),
}

impl EventView {
    /// An event as the API (and anything that relays events) presents it: the store's typed
    /// subject (`Store::events_with_subjects`) in the views the rest of the API uses.
    pub fn new(event: EventRecord, subject: EventSubject) -> EventView {
        let payload = match subject {
            EventSubject::Transfer { transfer, scale } => EventPayload::Transfer(TransferView::new(&transfer, scale)),
            EventSubject::Account(record) => EventPayload::Account(AccountView::new(&record)),
            EventSubject::Stored(payload) => EventPayload::Other(payload),
        };
        EventView {
            seq: event.seq,
            at: time(event.at),
            event_type: event.event_type,
            entity_id: event.entity_id,
            payload,
        }
    }
}

/// `POST /v1/accounts`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccountBody {
    /// A UUID; one is generated when absent.
    pub id: Option<Uuid>,
    /// A unique external code such as `wallet:alice`.
    pub code: Option<String>,
    pub currency: String,
    /// How far below zero the account may go, as a decimal string; 0 when absent.
    #[schema(pattern = r"^[0-9]{1,40}(\.[0-9]{1,18})?$", example = "50.00")]
    pub overdraft_limit: Option<String>,
    /// No balance rule at all (for funding and settlement accounts).
    #[serde(default)]
    pub unrestricted: bool,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// `POST /v1/accounts/{id}/freeze|unfreeze|close`: optional body.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    pub expected_version: Option<i64>,
}

/// `POST /v1/transfers` and each item of a batch.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    /// The client's id for this transfer: retrying with the same id never moves money twice.
    pub id: Uuid,
    /// Debit account: an id or a code.
    pub from: String,
    /// Credit account: an id or a code.
    pub to: String,
    /// A positive decimal string in the currency's scale, e.g. `"12.34"`.
    #[schema(pattern = r"^[0-9]{1,40}(\.[0-9]{1,18})?$", example = "12.34")]
    pub amount: String,
    pub currency: String,
    /// Hold the amount instead of moving it; post or void it later.
    #[serde(default)]
    pub pending: bool,
    /// For a pending transfer: expire it after this many seconds.
    pub timeout_seconds: Option<u32>,
    pub expected_from_version: Option<i64>,
    pub expected_to_version: Option<i64>,
    pub reference: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// `POST /v1/transfers/batch`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    #[schema(min_items = 1, max_items = 8190)]
    pub transfers: Vec<TransferBody>,
    /// All or nothing: if one transfer fails, none is applied.
    #[serde(default)]
    pub atomic: bool,
}

/// `POST /v1/transfers/{id}/void|reverse`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// The id of the new transfer that voids or reverses; derived from the target's id and the
    /// action when absent, so that a retry is recognised either way.
    pub id: Option<Uuid>,
}

/// `POST /v1/transfers/{id}/post`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// The id of the new transfer that posts, voids or reverses; derived from the target's id
    /// and the action when absent, so that a retry is recognised either way.
    pub id: Option<Uuid>,
    /// Post only: the amount to capture (at most the held amount); all of it when absent.
    #[schema(pattern = r"^[0-9]{1,40}(\.[0-9]{1,18})?$", example = "25.00")]
    pub amount: Option<String>,
}
