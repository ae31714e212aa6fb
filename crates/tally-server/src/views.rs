//! What the API returns and accepts: amounts as decimal strings in the currency's scale,
//! times as RFC 3339, ids as UUID strings.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_store::AuditRecord;
pub use tally_views::{AccountView, EventPayload, EventView, TransferView, time};
use utoipa::ToSchema;
use uuid::Uuid;

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

/// `POST /v1/accounts`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccountBody {
    /// A UUID; one is generated when absent.
    pub id: Option<Uuid>,
    /// An external code such as `wallet:alice`, unique within the ledger.
    pub code: Option<String>,
    /// The ledger, by id or code; `default` when absent.
    #[schema(example = "eu-wallets")]
    pub ledger: Option<String>,
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

/// `POST /v1/ledgers`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLedgerBody {
    /// 1 to 63 lower-case letters, digits, `_` or `-`, starting with a letter: `eu-wallets`.
    #[schema(example = "eu-wallets")]
    pub code: String,
    /// For people: `EU wallets`.
    pub name: String,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// A ledger: a set of books. Every account belongs to one; a transfer stays inside one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LedgerView {
    /// What accounts, transfers and events carry as `ledger`; 1 is `default`.
    pub id: i32,
    pub code: String,
    pub name: String,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    pub created_at: String,
    pub created_by: String,
}

impl LedgerView {
    pub fn new(record: &tally_store::LedgerRecord) -> LedgerView {
        LedgerView {
            id: record.id.0,
            code: record.code.clone(),
            name: record.name.clone(),
            metadata: record.metadata.clone(),
            created_at: time(record.created_at),
            created_by: record.created_by.clone(),
        }
    }
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

/// `POST /v1/webhooks`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookBody {
    /// Where deliveries are POSTed: `http://` or `https://`, no credentials, no fragment.
    #[schema(example = "https://hooks.example.com/tally")]
    pub url: String,
    /// Event types (`transfer.posted`), families (`transfer.*`) or everything (`*`); each must
    /// select a type Tally writes.
    #[schema(min_items = 1, max_items = 32, example = json!(["transfer.*", "account.frozen"]))]
    pub event_types: Vec<String>,
    /// At most 256 characters.
    pub description: Option<String>,
    /// Deliver the events after this sequence number (0: every event in the outbox); only events
    /// to come when absent.
    #[schema(minimum = 0)]
    pub after_seq: Option<i64>,
}

impl From<NewWebhookBody> for tally_relay::NewWebhook {
    fn from(body: NewWebhookBody) -> tally_relay::NewWebhook {
        tally_relay::NewWebhook {
            url: body.url,
            event_types: body.event_types,
            description: body.description,
            after_seq: body.after_seq,
        }
    }
}

/// A webhook endpoint (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: Uuid,
    pub url: String,
    pub description: Option<String>,
    /// The event-type filter, sorted.
    pub event_types: Vec<String>,
    /// `active` or `disabled`.
    pub status: String,
    /// Every event up to this sequence number was delivered to the endpoint or did not match
    /// its filter.
    pub delivered_seq: i64,
    /// The parked delivery that stops the endpoint until it is redelivered, if any.
    pub parked_seq: Option<i64>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

impl WebhookView {
    pub fn new(record: &tally_relay::WebhookRecord) -> WebhookView {
        WebhookView {
            id: record.id,
            url: record.url.clone(),
            description: record.description.clone(),
            event_types: record.event_types.clone(),
            status: record.status.clone(),
            delivered_seq: record.delivered_seq,
            parked_seq: record.parked_seq,
            created_by: record.created_by.clone(),
            created_at: time(record.created_at),
            updated_at: time(record.updated_at),
        }
    }
}

/// A webhook just registered, with its secret: the only answer that shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CreatedWebhookView {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// Keys the HMAC-SHA256 of every delivery's `Tally-Signature` header
    /// (`t=<unix seconds>,v1=<hex of HMAC(secret, "<t>.<body>")>`). Shown only here.
    #[schema(example = "whsec_5f0c...")]
    pub secret: String,
}

/// One attempt to deliver an event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AttemptView {
    /// 1 for the first attempt.
    pub attempt: i32,
    pub at: String,
    /// The endpoint's HTTP status, when it answered.
    pub status_code: Option<i32>,
    /// Why the attempt failed (no answer in time, refused, or a non-2xx answer's first bytes).
    pub error: Option<String>,
    pub duration_ms: i32,
}

/// The delivery of one event to one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeliveryView {
    pub webhook_id: Uuid,
    /// The event's sequence number.
    pub seq: i64,
    pub event_type: String,
    /// `pending` (tried again at `next_attempt_at`), `delivered` (answered 2xx) or `parked` (out
    /// of attempts; the endpoint gets nothing more until it is redelivered).
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    /// The newest attempts (at most 50), oldest first.
    pub attempt_log: Vec<AttemptView>,
}

impl DeliveryView {
    pub fn new(record: &tally_relay::DeliveryRecord) -> DeliveryView {
        DeliveryView {
            webhook_id: record.endpoint_id,
            seq: record.seq,
            event_type: record.event_type.clone(),
            status: record.status.as_str().to_owned(),
            attempts: record.attempts,
            next_attempt_at: record.next_attempt_at.map(time),
            last_status_code: record.last_status_code,
            last_error: record.last_error.clone(),
            created_at: time(record.created_at),
            delivered_at: record.delivered_at.map(time),
            attempt_log: record
                .attempt_log
                .iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    at: time(a.at),
                    status_code: a.status_code,
                    error: a.error.clone(),
                    duration_ms: a.duration_ms,
                })
                .collect(),
        }
    }
}
