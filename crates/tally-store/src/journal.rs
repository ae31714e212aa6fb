//! Audit rows and outbox events, written in the caller's SQL transaction.
//!
//! One statement writes both: every entry gets an audit row, and entries with an event type
//! also get an event whose `seq` continues the gap-free sequence in `event_sequence`.

use crate::StoreError;
use deadpool_postgres::GenericClient;
use serde_json::Value;

/// One change: who did it, what it was, and what it looked like before and after.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub actor: &'a str,
    /// Audit action, e.g. `transfer.create`.
    pub action: &'static str,
    /// Event type for the outbox, e.g. `transfer.posted`; `None` writes no event.
    pub event_type: Option<String>,
    pub entity_type: &'static str,
    /// The ledger of the changed entity, for its event (`None`: not of one ledger).
    pub ledger: Option<tally_core::LedgerId>,
    pub entity_id: String,
    pub before: Option<Value>,
    pub after: Value,
}

/// Writes the audit rows and events of `entries`, in order, with `now()` as their time.
pub async fn append(client: &impl GenericClient, entries: &[AuditEntry<'_>]) -> Result<(), StoreError> {
    append_at(client, entries, None).await
}

/// `append` with the time the caller stamped on the change itself (a batch's time), so that
/// the audit row and the journal rows it covers fall on the same ledger day.
pub async fn append_at(
    client: &impl GenericClient,
    entries: &[AuditEntry<'_>],
    at: Option<std::time::SystemTime>,
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let actors: Vec<&str> = entries.iter().map(|e| e.actor).collect();
    let actions: Vec<&str> = entries.iter().map(|e| e.action).collect();
    let event_types: Vec<Option<&str>> = entries.iter().map(|e| e.event_type.as_deref()).collect();
    let entity_types: Vec<&str> = entries.iter().map(|e| e.entity_type).collect();
    let entity_ids: Vec<&str> = entries.iter().map(|e| e.entity_id.as_str()).collect();
    let befores: Vec<Option<&Value>> = entries.iter().map(|e| e.before.as_ref()).collect();
    let afters: Vec<&Value> = entries.iter().map(|e| &e.after).collect();
    let ledgers: Vec<Option<i32>> = entries.iter().map(|e| e.ledger.map(|l| l.0)).collect();
    let event_count = i64::try_from(event_types.iter().flatten().count()).expect("bounded batch");
    client
        .execute(
            &client.prepare_cached("WITH e AS (
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $10::int4[])
                     WITH ORDINALITY AS e(actor, action, event_type, entity_type, entity_id, before, after, ledger_id, ord)
             ), audit AS (
                 INSERT INTO audit_log (at, actor, action, entity_type, entity_id, before, after)
                 SELECT coalesce($9::timestamptz, now()), actor, action, entity_type, entity_id, before, after FROM e ORDER BY ord
             ), s AS (
                 UPDATE event_sequence SET last_seq = last_seq + $8::int8 WHERE $8::int8 > 0 RETURNING last_seq - $8::int8 AS base
             )
             INSERT INTO events (seq, at, type, entity_id, payload, ledger_id)
             SELECT s.base + row_number() OVER (ORDER BY e.ord), coalesce($9::timestamptz, now()), e.event_type, e.entity_id, e.after,
                    e.ledger_id
             FROM s, e WHERE e.event_type IS NOT NULL").await?,
            &[&actors, &actions, &event_types, &entity_types, &entity_ids, &befores, &afters, &event_count, &at, &ledgers],
        )
        .await?;
    Ok(())
}

/// Shorthand for changes of accounts of `ledger`: `(action, event type, entity id, before, after)`.
pub async fn append_audit_and_events(
    client: &impl GenericClient,
    actor: &str,
    ledger: tally_core::LedgerId,
    changes: &[(&'static str, &str, String, Option<Value>, Value)],
) -> Result<(), StoreError> {
    let entries: Vec<AuditEntry> = changes
        .iter()
        .map(|(action, event_type, entity_id, before, after)| AuditEntry {
            actor,
            action,
            event_type: Some((*event_type).to_owned()),
            entity_type: "account",
            ledger: Some(ledger),
            entity_id: entity_id.clone(),
            before: before.clone(),
            after: after.clone(),
        })
        .collect();
    append(client, &entries).await
}
