//! Webhook endpoints and their delivery log: registration, listing, disabling, deleting, the
//! log, and redelivery of a parked delivery. Every change is audited with its actor.

use crate::{Outbox, RelayError, signature};
use serde::Serialize;
use serde_json::json;
use tally_core::Timestamp;
use tally_store::convert::from_system_time;
use tally_store::journal::{AuditEntry, append};
use tally_views::events::{EVENT_TYPES, type_matches};
use tokio_postgres::Row;
use uuid::Uuid;

/// Limits.
pub const WEBHOOKS_MAX: i64 = 100;
pub const EVENT_TYPES_PER_WEBHOOK_MAX: usize = 32;
pub const URL_LEN_MAX: usize = 2048;
pub const DESCRIPTION_LEN_MAX: usize = 256;
pub const DELIVERIES_PAGE_MAX: i64 = 1000;
/// Attempts listed per delivery at most (the newest).
pub const ATTEMPTS_LISTED_MAX: i64 = 50;
/// The longest error text kept for an attempt.
pub const ERROR_LEN_MAX: usize = 512;

/// What `POST /v1/webhooks` takes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhook {
    /// `http://` or `https://`, up to 2,048 characters.
    pub url: String,
    /// Event types (`transfer.posted`), families (`transfer.*`) or everything (`*`).
    pub event_types: Vec<String>,
    pub description: Option<String>,
    /// Deliver the events after this sequence number; the newest event's (only events to come)
    /// when absent.
    pub after_seq: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookRecord {
    pub id: Uuid,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    /// `active` or `disabled`.
    pub status: String,
    /// Every event up to this one was delivered to the endpoint or did not match its filter.
    pub delivered_seq: i64,
    /// The parked delivery that stops this endpoint, if any.
    pub parked_seq: Option<i64>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet answered 2xx; tried again at `next_attempt_at`.
    Pending,
    Delivered,
    /// Out of attempts: the endpoint gets nothing more until it is redelivered.
    Parked,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Parked => "parked",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        match text {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "parked" => Some(DeliveryStatus::Parked),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRecord {
    pub endpoint_id: Uuid,
    /// The event's sequence number.
    pub seq: i64,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: Option<Timestamp>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    /// The newest attempts, oldest first.
    pub attempt_log: Vec<AttemptRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptRecord {
    pub attempt: i32,
    pub at: Timestamp,
    /// The endpoint's HTTP status, when it answered.
    pub status_code: Option<i32>,
    /// Why the attempt failed (no answer, a non-2xx answer's first bytes).
    pub error: Option<String>,
    pub duration_ms: i32,
}

/// A page of the delivery log, newest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeliveryQuery {
    pub status: Option<DeliveryStatus>,
    /// Deliveries of events before this sequence number (the previous page's last).
    pub before_seq: Option<i64>,
    pub limit: i64,
}

/// Checks an event-type filter: each entry names a type, a family (`transfer.*`) or `*`, and
/// selects at least one type Tally writes (so that a misspelt filter is refused, not silent).
pub fn check_event_types(patterns: &[String]) -> Result<(), RelayError> {
    if patterns.is_empty() || patterns.len() > EVENT_TYPES_PER_WEBHOOK_MAX {
        return Err(RelayError::EventTypeInvalid(format!("1 to {EVENT_TYPES_PER_WEBHOOK_MAX} event types")));
    }
    for pattern in patterns {
        let shaped = pattern.len() <= 64
            && pattern.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.' || b == b'*')
            && (pattern == "*"
                || !pattern.contains('*')
                || (pattern.ends_with(".*") && pattern.matches('*').count() == 1));
        if !shaped || !EVENT_TYPES.iter().any(|t| type_matches(pattern, t)) {
            let shown: String = pattern.chars().take(64).collect();
            return Err(RelayError::EventTypeInvalid(format!(
                "{shown:?} selects no event type (types are {}; families as transfer.*; all as *)",
                EVENT_TYPES.join(", ")
            )));
        }
    }
    Ok(())
}

/// Checks a webhook URL: absolute `http` or `https` with a host, no credentials, no fragment.
pub fn check_url(text: &str) -> Result<(), RelayError> {
    let invalid = |why: &str| RelayError::WebhookUrlInvalid(why.to_owned());
    if text.len() > URL_LEN_MAX {
        return Err(invalid("longer than 2,048 characters"));
    }
    let url = url::Url::parse(text).map_err(|error| invalid(&error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials do not belong in the URL; verify the signature instead"));
    }
    if url.fragment().is_some() {
        return Err(invalid("the URL has a fragment"));
    }
    Ok(())
}

const ENDPOINT_COLUMNS: &str = "e.id, e.url, e.description, e.event_types, e.status, e.delivered_seq, e.created_by,
     e.created_at, e.updated_at,
     (SELECT d.seq FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'parked')";

fn endpoint_from_row(row: &Row) -> WebhookRecord {
    WebhookRecord {
        id: row.get(0),
        url: row.get(1),
        description: row.get(2),
        event_types: row.get(3),
        status: row.get(4),
        delivered_seq: row.get(5),
        created_by: row.get(6),
        created_at: from_system_time(row.get(7)),
        updated_at: from_system_time(row.get(8)),
        parked_seq: row.get(9),
    }
}

const DELIVERY_COLUMNS: &str = "endpoint_id, seq, event_type, status, attempts, next_attempt_at, last_status_code,
     last_error, created_at, delivered_at";

fn delivery_from_row(row: &Row) -> DeliveryRecord {
    DeliveryRecord {
        endpoint_id: row.get(0),
        seq: row.get(1),
        event_type: row.get(2),
        status: DeliveryStatus::parse(row.get(3)).expect("the schema allows only these"),
        attempts: row.get(4),
        next_attempt_at: row.get::<_, Option<std::time::SystemTime>>(5).map(from_system_time),
        last_status_code: row.get(6),
        last_error: row.get(7),
        created_at: from_system_time(row.get(8)),
        delivered_at: row.get::<_, Option<std::time::SystemTime>>(9).map(from_system_time),
        attempt_log: Vec::new(),
    }
}

fn audit_after(record: &WebhookRecord) -> serde_json::Value {
    // Never the secret.
    json!({"id": record.id, "url": record.url, "description": record.description,
           "event_types": record.event_types, "status": record.status, "delivered_seq": record.delivered_seq})
}

impl Outbox {
    /// Registers an endpoint; returns it with its secret, which is shown only here.
    pub async fn create_webhook(&self, actor: &str, new: NewWebhook) -> Result<(WebhookRecord, String), RelayError> {
        check_url(&new.url)?;
        check_event_types(&new.event_types)?;
        if let Some(description) = &new.description
            && (description.chars().count() > DESCRIPTION_LEN_MAX || description.contains('\0'))
        {
            return Err(RelayError::WebhookInvalid(format!("description: at most {DESCRIPTION_LEN_MAX} characters")));
        }
        let mut types = new.event_types.clone();
        types.sort();
        types.dedup();
        let secret = signature::new_secret();
        let id = Uuid::now_v7();
        let mut client = self.client().await?;
        let db_tx = client.transaction().await?;
        // One registration at a time, so that the count below holds.
        db_tx.execute("SELECT pg_advisory_xact_lock(hashtextextended('tally.webhooks', 0))", &[]).await?;
        let count: i64 = db_tx.query_one("SELECT count(*) FROM webhook_endpoints", &[]).await?.get(0);
        if count >= WEBHOOKS_MAX {
            return Err(RelayError::WebhookLimitReached(WEBHOOKS_MAX));
        }
        let newest: i64 = db_tx.query_one("SELECT last_seq FROM event_sequence", &[]).await?.get(0);
        let after = match new.after_seq {
            None => newest,
            Some(seq) if (0..=newest).contains(&seq) => seq,
            Some(seq) => {
                return Err(RelayError::WebhookInvalid(format!(
                    "after_seq {seq} is not between 0 and the newest event, {newest}"
                )));
            }
        };
        let row = db_tx
            .query_one(
                &format!(
                    "WITH e AS (
                         INSERT INTO webhook_endpoints (id, url, description, event_types, secret, status, delivered_seq, created_by)
                         VALUES ($1, $2, $3, $4, $5, 'active', $6, $7) RETURNING *
                     ) SELECT {ENDPOINT_COLUMNS} FROM e"
                ),
                &[&id, &new.url, &new.description, &types, &secret, &after, &actor],
            )
            .await?;
        let record = endpoint_from_row(&row);
        let entry = AuditEntry {
            actor,
            action: "webhook.create",
            event_type: None,
            entity_type: "webhook",
            ledger: None,
            entity_id: id.to_string(),
            before: None,
            after: audit_after(&record),
        };
        append(&db_tx, &[entry]).await?;
        tally_store::commit_transaction(db_tx).await?;
        Ok((record, secret))
    }

    /// Every endpoint, oldest first.
    pub async fn webhooks(&self) -> Result<Vec<WebhookRecord>, RelayError> {
        let client = self.client().await?;
        let rows =
            client.query(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints e ORDER BY e.id"), &[]).await?;
        Ok(rows.iter().map(endpoint_from_row).collect())
    }

    pub async fn webhook(&self, id: Uuid) -> Result<WebhookRecord, RelayError> {
        let client = self.client().await?;
        let row = client
            .query_opt(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints e WHERE e.id = $1"), &[&id])
            .await?;
        row.as_ref().map(endpoint_from_row).ok_or(RelayError::WebhookNotFound(id))
    }

    /// The secret that signs the endpoint's deliveries, and the endpoint's position (for the
    /// dispatcher).
    pub(crate) async fn webhook_secret(&self, id: Uuid) -> Result<(String, i64), RelayError> {
        let client = self.client().await?;
        let row = client.query_opt("SELECT secret, delivered_seq FROM webhook_endpoints WHERE id = $1", &[&id]).await?;
        row.map(|row| (row.get(0), row.get(1))).ok_or(RelayError::WebhookNotFound(id))
    }

    /// Enables or disables an endpoint. A disabled endpoint gets nothing; enabled again, it
    /// resumes where it stopped, so it misses no event.
    pub async fn set_webhook_active(&self, actor: &str, id: Uuid, active: bool) -> Result<WebhookRecord, RelayError> {
        let status = if active { "active" } else { "disabled" };
        let mut client = self.client().await?;
        let db_tx = client.transaction().await?;
        let before = db_tx
            .query_opt(
                &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints e WHERE e.id = $1 FOR UPDATE"),
                &[&id],
            )
            .await?
            .as_ref()
            .map(endpoint_from_row)
            .ok_or(RelayError::WebhookNotFound(id))?;
        if before.status == status {
            return Ok(before);
        }
        let row = db_tx
            .query_one(
                &format!(
                    "WITH e AS (UPDATE webhook_endpoints SET status = $2, updated_at = now() WHERE id = $1 RETURNING *)
                     SELECT {ENDPOINT_COLUMNS} FROM e"
                ),
                &[&id, &status],
            )
            .await?;
        let after = endpoint_from_row(&row);
        let entry = AuditEntry {
            actor,
            action: if active { "webhook.enable" } else { "webhook.disable" },
            event_type: None,
            entity_type: "webhook",
            ledger: None,
            entity_id: id.to_string(),
            before: Some(audit_after(&before)),
            after: audit_after(&after),
        };
        append(&db_tx, &[entry]).await?;
        tally_store::commit_transaction(db_tx).await?;
        Ok(after)
    }

    /// Deletes an endpoint and its delivery log (the audit log keeps that it existed).
    pub async fn delete_webhook(&self, actor: &str, id: Uuid) -> Result<(), RelayError> {
        let mut client = self.client().await?;
        let db_tx = client.transaction().await?;
        let before = db_tx
            .query_opt(
                &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints e WHERE e.id = $1 FOR UPDATE"),
                &[&id],
            )
            .await?
            .as_ref()
            .map(endpoint_from_row)
            .ok_or(RelayError::WebhookNotFound(id))?;
        db_tx.execute("DELETE FROM webhook_endpoints WHERE id = $1", &[&id]).await?;
        let entry = AuditEntry {
            actor,
            action: "webhook.delete",
            event_type: None,
            entity_type: "webhook",
            ledger: None,
            entity_id: id.to_string(),
            before: Some(audit_after(&before)),
            after: json!({"deleted": true}),
        };
        append(&db_tx, &[entry]).await?;
        tally_store::commit_transaction(db_tx).await?;
        Ok(())
    }

    /// The delivery log of an endpoint, newest first, each with its newest attempts.
    pub async fn deliveries(&self, id: Uuid, query: &DeliveryQuery) -> Result<Vec<DeliveryRecord>, RelayError> {
        let limit = query.limit.clamp(1, DELIVERIES_PAGE_MAX);
        self.webhook(id).await?;
        let client = self.client().await?;
        let status = query.status.map(DeliveryStatus::as_str);
        let before = query.before_seq.unwrap_or(i64::MAX);
        let rows = client
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                     WHERE endpoint_id = $1 AND seq < $2 AND ($3::text IS NULL OR status = $3)
                     ORDER BY seq DESC LIMIT $4"
                ),
                &[&id, &before, &status, &limit],
            )
            .await?;
        let mut deliveries: Vec<DeliveryRecord> = rows.iter().map(delivery_from_row).collect();
        let seqs: Vec<i64> = deliveries.iter().map(|d| d.seq).collect();
        let attempts = client
            .query(
                "SELECT seq, attempt, at, status_code, error, duration_ms FROM (
                     SELECT a.*, row_number() OVER (PARTITION BY seq ORDER BY attempt DESC) AS newest
                     FROM webhook_attempts a WHERE endpoint_id = $1 AND seq = ANY($2)) a
                 WHERE newest <= $3 ORDER BY seq, attempt",
                &[&id, &seqs, &ATTEMPTS_LISTED_MAX],
            )
            .await?;
        for row in &attempts {
            let seq: i64 = row.get(0);
            let delivery = deliveries.iter_mut().find(|d| d.seq == seq).expect("attempts of listed deliveries");
            delivery.attempt_log.push(AttemptRecord {
                attempt: row.get(1),
                at: from_system_time(row.get(2)),
                status_code: row.get(3),
                error: row.get(4),
                duration_ms: row.get(5),
            });
        }
        Ok(deliveries)
    }

    /// One delivery, with its newest attempts.
    pub async fn delivery(&self, id: Uuid, seq: i64) -> Result<DeliveryRecord, RelayError> {
        let query = DeliveryQuery { status: None, before_seq: Some(seq.saturating_add(1)), limit: 1 };
        let found = self.deliveries(id, &query).await?.into_iter().next();
        found.filter(|d| d.seq == seq).ok_or(RelayError::DeliveryNotFound { id, seq })
    }

    /// Sends a parked delivery again now; the endpoint resumes, in order, once it is answered.
    /// It may take as many attempts as a new delivery before it parks again.
    pub async fn redeliver(&self, actor: &str, id: Uuid, seq: i64) -> Result<DeliveryRecord, RelayError> {
        let mut client = self.client().await?;
        let db_tx = client.transaction().await?;
        let row = db_tx
            .query_opt(
                "SELECT status FROM webhook_deliveries WHERE endpoint_id = $1 AND seq = $2 FOR UPDATE",
                &[&id, &seq],
            )
            .await?;
        let Some(row) = row else {
            // Give the connection back before taking another: a pool of one must not wait on itself.
            drop(db_tx);
            drop(client);
            self.webhook(id).await?;
            return Err(RelayError::DeliveryNotFound { id, seq });
        };
        let status: String = row.get(0);
        if status != "parked" {
            return Err(RelayError::DeliveryNotParked { id, seq, status });
        }
        db_tx
            .execute(
                "UPDATE webhook_deliveries SET status = 'pending', round_start = attempts, next_attempt_at = now(),
                        updated_at = now()
                 WHERE endpoint_id = $1 AND seq = $2",
                &[&id, &seq],
            )
            .await?;
        let entry = AuditEntry {
            actor,
            action: "webhook.redeliver",
            event_type: None,
            entity_type: "webhook",
            ledger: None,
            entity_id: id.to_string(),
            before: Some(json!({"seq": seq, "status": "parked"})),
            after: json!({"seq": seq, "status": "pending"}),
        };
        append(&db_tx, &[entry]).await?;
        tally_store::commit_transaction(db_tx).await?;
        drop(client);
        self.delivery(id, seq).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        for good in ["http://127.0.0.1:9000/hook", "https://example.com/tally?x=1"] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        for bad in ["ftp://x/y", "not a url", "https://user:pw@example.com/", "http://x/#f", "mailto:a@b"] {
            assert_eq!(check_url(bad).unwrap_err().code(), "webhook_url_invalid", "{bad}");
        }
        assert!(check_url(&format!("https://x/{}", "a".repeat(URL_LEN_MAX))).is_err());
    }

    #[test]
    fn event_type_filters_are_checked() {
        let ok = |p: &[&str]| check_event_types(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(ok(&["*"]).is_ok());
        assert!(ok(&["transfer.*", "account.frozen"]).is_ok());
        for bad in
            [&["transfers.*"][..], &["transfer.*.x"], &["trans*"], &["Transfer.posted"], &["transfer.postedx"], &[]]
        {
            assert_eq!(ok(bad).unwrap_err().code(), "event_type_invalid", "{bad:?}");
        }
    }
}
