//! Events as they leave Tally: one JSON shape per event type, the same over `GET /v1/events`,
//! the server-sent event stream, NATS JetStream and webhooks.
//!
//! Every event is `{seq, at, type, entity_id, payload}`. `seq` is its position in the outbox
//! (gap-free, in commit order): a consumer resumes from any sequence number, and uses it to
//! drop a message it has already seen (delivery is at least once). The payload depends on the
//! type; OpenAPI describes each shape (`TransferEvent`, `AccountEvent`, ...), and `EventView`
//! is one of them.

use crate::{AccountView, TransferView, time};
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use tally_store::{EventRecord, EventSubject};
use utoipa::openapi::schema::{OneOfBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// One event of the outbox, in commit order.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// The ledger of the event's subject (a transfer's, an account's, a new ledger's own id);
    /// `null` for events of no one ledger (currencies, days, reconciliations).
    pub ledger: Option<i32>,
    /// Transfer events: the transfer as `GET /v1/transfers/{id}` shows it, as the event left it
    /// (a hold's `transfer.pending` shows it pending). Account events: the account as
    /// `GET /v1/accounts/{id}` shows it, as the change left it. Other events: counts, days and
    /// ids (no amounts, no times).
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
    /// An event as Tally presents it: the store's typed subject (`Store::events_with_subjects`)
    /// in the views the rest of the API uses.
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
            ledger: event.ledger.map(|l| l.0),
            payload,
        }
    }

    /// The event as JSON bytes: the body of a webhook delivery and of a NATS message.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event view serializes")
    }
}

/// Every event type Tally writes, with the shape of its payload (for documentation and for
/// validating subscriptions).
pub const EVENT_TYPES: &[&str] = &[
    "transfer.posted",
    "transfer.pending",
    "transfer.post_pending",
    "transfer.void_pending",
    "transfer.reversal",
    "transfer.expired",
    "account.created",
    "account.frozen",
    "account.unfrozen",
    "account.closed",
    "currency.created",
    "ledger.created",
    "ledger_day.closed",
    "reconciliation.finished",
    "statement.imported",
];

// The shapes below exist for OpenAPI: `EventView` serializes into exactly one of them.

/// A transfer was applied (`transfer.posted`, `transfer.pending`, `transfer.post_pending`,
/// `transfer.void_pending`, `transfer.reversal`) or a hold expired (`transfer.expired`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TransferEvent {
    seq: i64,
    at: String,
    #[schema(rename = "type", pattern = r"^transfer\.(posted|pending|post_pending|void_pending|reversal|expired)$")]
    event_type: String,
    /// The transfer's id.
    entity_id: String,
    /// The ledger of the subject; `null` when it is of no one ledger.
    ledger: Option<i32>,
    payload: TransferView,
}

/// An account was opened, frozen, unfrozen or closed (`account.created`, `account.frozen`,
/// `account.unfrozen`, `account.closed`): the account as the change left it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AccountEvent {
    seq: i64,
    at: String,
    #[schema(rename = "type", pattern = r"^account\.(created|frozen|unfrozen|closed)$")]
    event_type: String,
    /// The account's id.
    entity_id: String,
    /// The ledger of the subject; `null` when it is of no one ledger.
    ledger: Option<i32>,
    payload: AccountView,
}

/// `currency.created`: a currency or asset was added.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CurrencyCreatedEvent {
    seq: i64,
    at: String,
    #[schema(rename = "type", pattern = r"^currency\.created$")]
    event_type: String,
    /// The currency's code.
    entity_id: String,
    /// The ledger of the subject; `null` when it is of no one ledger.
    ledger: Option<i32>,
    payload: CurrencyPayload,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CurrencyPayload {
    code: String,
    /// Digits after the decimal point.
    scale: u8,
}

/// `ledger.created`: a ledger was made.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LedgerCreatedEvent {
    seq: i64,
    at: String,
    #[schema(rename = "type", pattern = r"^ledger\.created$")]
    event_type: String,
    /// The ledger's id.
    entity_id: String,
    /// The ledger's id.
    ledger: Option<i32>,
    payload: LedgerPayload,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LedgerPayload {
    id: i32,
    code: String,
    name: String,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// `ledger_day.closed`: a ledger day was closed (its balances snapshotted).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LedgerDayClosedEvent {
    seq: i64,
    at: String,
    #[schema(rename = "type", pattern = r"^ledger_day\.closed$")]
    event_type: String,
    /// The day, `YYYY-MM-DD`.
    entity_id: String,
    /// The ledger of the subject; `null` when it is of no one ledger.
    ledger: Option<i32>,
    payload: LedgerDayPayload,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LedgerDayPayload {
    day: String,
    transfers: i64,
    accounts: i64,
}

/// `reconciliation.finished`: an end-of-day run (payload `day`, `status`, `findings`, `listed`)
/// or a statement's reconciliation (payload `statement_id`, `status`, `matched`,
/// `unmatched_statement`, `unmatched_ledger`) finished.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReconciliationFinishedEvent {
    seq: i64,
    at: String,
    #[schema(rename = "type", pattern = r"^reconciliation\.finished$")]
    event_type: String,
    /// The run's id.
    entity_id: String,
    /// `status` is `clean` or `findings`.
    #[schema(value_type = Object)]
    payload: Value,
}

/// `statement.imported`: a bank statement was recorded.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StatementImportedEvent {
    seq: i64,
    at: String,
    #[schema(rename = "type", pattern = r"^statement\.imported$")]
    event_type: String,
    /// The statement's id.
    entity_id: String,
    /// The ledger of the subject; `null` when it is of no one ledger.
    ledger: Option<i32>,
    payload: StatementPayload,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StatementPayload {
    account_id: uuid::Uuid,
    /// `mt940`, `camt053`, `camt052`, `camt054` or `csv`.
    format: String,
    statement_ref: String,
    entries: i64,
    /// SHA-256 of the statement's content, hex.
    sha256: String,
    file_id: uuid::Uuid,
}

impl PartialSchema for EventView {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .description(Some(
                "One event of the outbox: `seq` (gap-free, commit order), `at`, `type`, `entity_id` and a payload \
                 whose shape the type decides.",
            ))
            .item(Ref::from_schema_name("TransferEvent"))
            .item(Ref::from_schema_name("AccountEvent"))
            .item(Ref::from_schema_name("CurrencyCreatedEvent"))
            .item(Ref::from_schema_name("LedgerCreatedEvent"))
            .item(Ref::from_schema_name("LedgerDayClosedEvent"))
            .item(Ref::from_schema_name("ReconciliationFinishedEvent"))
            .item(Ref::from_schema_name("StatementImportedEvent"))
            .into()
    }
}

impl ToSchema for EventView {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EventView")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        fn add<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
            schemas.push((T::name().into_owned(), T::schema()));
            T::schemas(schemas);
        }
        add::<TransferEvent>(schemas);
        add::<AccountEvent>(schemas);
        add::<CurrencyCreatedEvent>(schemas);
        add::<LedgerCreatedEvent>(schemas);
        add::<LedgerDayClosedEvent>(schemas);
        add::<ReconciliationFinishedEvent>(schemas);
        add::<StatementImportedEvent>(schemas);
    }
}

/// Does `pattern` (an event type, `prefix.*`, or `*`) select `event_type`?
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_select_types() {
        assert!(type_matches("*", "transfer.posted"));
        assert!(type_matches("transfer.*", "transfer.posted"));
        assert!(!type_matches("transfer.*", "account.created"));
        assert!(type_matches("account.frozen", "account.frozen"));
        assert!(!type_matches("account.frozen", "account.frozen2"));
        assert!(!type_matches("account.frozen", "account.unfrozen"));
    }

    #[test]
    fn every_type_has_a_documented_shape() {
        let mut schemas = Vec::new();
        EventView::schemas(&mut schemas);
        let names: Vec<&str> = schemas.iter().map(|(name, _)| name.as_str()).collect();
        for name in [
            "TransferEvent",
            "AccountEvent",
            "CurrencyCreatedEvent",
            "LedgerCreatedEvent",
            "LedgerDayClosedEvent",
            "ReconciliationFinishedEvent",
            "StatementImportedEvent",
            "TransferView",
            "AccountView",
        ] {
            assert!(names.contains(&name), "{name} is missing from {names:?}");
        }
        for event_type in EVENT_TYPES {
            let prefix = event_type.split('.').next().unwrap();
            assert!(
                ["transfer", "account", "currency", "ledger", "ledger_day", "reconciliation", "statement"]
                    .contains(&prefix)
            );
        }
    }
}
