//! What the HTTP API keeps in the database: API keys (only their hashes) and idempotency keys.
//!
//! Key generation and hashing belong to the server; this module stores and finds what it is
//! given. Creating and revoking a key writes an audit row in the same SQL transaction.

use crate::convert::from_system_time;
use crate::journal::{AuditEntry, append};
use crate::{Store, StoreError};
use serde::Serialize;
use serde_json::{Value, json};
use tally_core::{LedgerId, Timestamp};
use tokio_postgres::Row;
use uuid::Uuid;

/// The most accounts one reader key may be limited to.
pub const KEY_ACCOUNTS_MAX: usize = 1_000;
/// The most ledgers one key may be scoped to.
pub const KEY_LEDGERS_MAX: usize = 100;
/// The longest key name.
pub const KEY_NAME_LEN_MAX: usize = 64;
/// The longest `Idempotency-Key` header value.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;

/// What a key may do. Each role includes nothing implicitly; the server maps routes to roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages keys and accounts, moves money, reads everything.
    Admin,
    /// Moves money and reads accounts and transfers.
    Operator,
    /// Reads everything, including the audit log and events; changes nothing.
    Auditor,
    /// Reads only the accounts named on the key, and their transfers.
    Reader,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Auditor, Role::Reader];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Reader => "reader",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

/// An API key as stored: never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    /// The key's first characters, to tell keys apart in listings.
    pub prefix: String,
    /// For a reader: the only accounts it may read.
    pub accounts: Vec<Uuid>,
    /// The only ledgers the key may read or write (empty: every ledger).
    pub ledgers: Vec<LedgerId>,
    pub created_at: Timestamp,
    pub created_by: String,
    pub revoked_at: Option<Timestamp>,
}

/// A key to store: its hash, never the key.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub role: Role,
    pub key_hash: [u8; 32],
    pub prefix: String,
    pub accounts: Vec<Uuid>,
    /// Ledgers the key is scoped to (empty: every ledger).
    pub ledgers: Vec<LedgerId>,
}

const KEY_COLUMNS: &str = "id, name, role, prefix, accounts, created_at, created_by, revoked_at, ledgers";

fn key_from_row(row: &Row) -> ApiKeyRecord {
    let role: &str = row.get(2);
    ApiKeyRecord {
        id: row.get(0),
        name: row.get(1),
        role: Role::parse(role).expect("role constrained by the schema"),
        prefix: row.get(3),
        accounts: row.get(4),
        created_at: from_system_time(row.get(5)),
        created_by: row.get(6),
        revoked_at: row.get::<_, Option<std::time::SystemTime>>(7).map(from_system_time),
        ledgers: row.get::<_, Vec<i32>>(8).into_iter().map(LedgerId).collect(),
    }
}

fn key_audit_view(key: &ApiKeyRecord) -> Value {
    json!({"name": key.name, "role": key.role.as_str(), "prefix": key.prefix, "accounts": key.accounts,
           "ledgers": key.ledgers, "revoked": key.revoked_at.is_some()})
}

/// Checks a key name: 1 to 64 of letters, digits and `._:@-`.
pub fn validate_key_name(name: &str) -> Result<(), StoreError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._:@-".contains(c);
    if name.is_empty() || name.len() > KEY_NAME_LEN_MAX || !name.chars().all(allowed) {
        return Err(StoreError::Invalid(format!(
            "a key name is 1 to {KEY_NAME_LEN_MAX} letters, digits or ._:@- characters"
        )));
    }
    Ok(())
}

/// How an idempotency key stands when a request arrives with it.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyBegin {
    /// First use: the caller runs the request and then calls `idempotency_finish`.
    Started,
    /// Done before with the same body: here is the stored response.
    Replay { status: u16, response: Value },
    /// Used before with another body.
    Mismatch,
    /// The first request with this key is still running.
    InProgress,
}

impl Store {
    /// Stores a new key. A name already in use is `key_name_taken`.
    pub async fn create_api_key(&self, new: &NewApiKey, actor: &str) -> Result<ApiKeyRecord, StoreError> {
        validate_key_name(&new.name)?;
        if new.accounts.len() > KEY_ACCOUNTS_MAX {
            return Err(StoreError::Invalid(format!("a key names at most {KEY_ACCOUNTS_MAX} accounts")));
        }
        if new.role != Role::Reader && !new.accounts.is_empty() {
            return Err(StoreError::Invalid("only a reader key is limited to accounts".into()));
        }
        if new.ledgers.len() > KEY_LEDGERS_MAX {
            return Err(StoreError::Invalid(format!("a key is scoped to at most {KEY_LEDGERS_MAX} ledgers")));
        }
        let ledgers = crate::ledgers::ledger_ids(&new.ledgers);
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        if !ledgers.is_empty() {
            let found: i64 =
                transaction.query_one("SELECT count(*) FROM ledgers WHERE id = ANY($1)", &[&ledgers]).await?.get(0);
            let distinct: std::collections::BTreeSet<&i32> = ledgers.iter().collect();
            if usize::try_from(found).expect("a count") != distinct.len() {
                return Err(StoreError::LedgerNotFound("one of the key's ledgers".into()));
            }
        }
        if !new.accounts.is_empty() {
            let found: i64 = transaction
                .query_one("SELECT count(*) FROM accounts WHERE id = ANY($1)", &[&new.accounts])
                .await?
                .get(0);
            let distinct: std::collections::BTreeSet<&Uuid> = new.accounts.iter().collect();
            if usize::try_from(found).expect("a count") != distinct.len() {
                return Err(StoreError::AccountNotFound("one of the key's accounts".into()));
            }
        }
        let sql = format!(
            "INSERT INTO api_keys (id, name, role, key_hash, prefix, accounts, created_at, created_by, ledgers)
             VALUES ($1, $2, $3, $4, $5, $6, now(), $7, $8) ON CONFLICT (name) DO NOTHING RETURNING {KEY_COLUMNS}"
        );
        let hash: &[u8] = &new.key_hash;
        let row = transaction
            .query_opt(
                &sql,
                &[&Uuid::now_v7(), &new.name, &new.role.as_str(), &hash, &new.prefix, &new.accounts, &actor, &ledgers],
            )
            .await?;
        let Some(row) = row else {
            return Err(StoreError::KeyNameTaken(new.name.clone()));
        };
        let key = key_from_row(&row);
        let entry = AuditEntry {
            actor,
            action: "api_key.create",
            event_type: None,
            entity_type: "api_key",
            ledger: None,
            entity_id: key.id.to_string(),
            before: None,
            after: key_audit_view(&key),
        };
        append(&transaction, &[entry]).await?;
        crate::commit_transaction(transaction).await?;
        Ok(key)
    }

    /// The key with this hash, revoked or not.
    pub async fn api_key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError> {
        let client = self.client().await?;
        let statement =
            client.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1")).await?;
        let hash: &[u8] = hash;
        Ok(client.query_opt(&statement, &[&hash]).await?.as_ref().map(key_from_row))
    }

    /// Every key, oldest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client.query(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"), &[]).await?;
        Ok(rows.iter().map(key_from_row).collect())
    }

    /// How many keys are not revoked.
    pub async fn active_api_keys(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        Ok(client.query_one("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL", &[]).await?.get(0))
    }

    /// Revokes a key by name. Revoking a revoked key changes nothing.
    pub async fn revoke_api_key(&self, name: &str, actor: &str) -> Result<ApiKeyRecord, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let sql = format!(
            "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL RETURNING {KEY_COLUMNS}"
        );
        let Some(row) = transaction.query_opt(&sql, &[&name]).await? else {
            let existing =
                transaction.query_opt(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE name = $1"), &[&name]).await?;
            return existing.as_ref().map(key_from_row).ok_or_else(|| StoreError::KeyNotFound(name.to_owned()));
        };
        let key = key_from_row(&row);
        let mut before = key_audit_view(&key);
        before["revoked"] = json!(false);
        let entry = AuditEntry {
            actor,
            action: "api_key.revoke",
            event_type: None,
            entity_type: "api_key",
            ledger: None,
            entity_id: key.id.to_string(),
            before: Some(before),
            after: key_audit_view(&key),
        };
        append(&transaction, &[entry]).await?;
        crate::commit_transaction(transaction).await?;
        Ok(key)
    }

    /// Claims an idempotency key for a request whose body hashes to `request_hash`.
    pub async fn idempotency_begin(
        &self,
        principal: &str,
        key: &str,
        request_hash: &[u8; 32],
        stale_after: std::time::Duration,
    ) -> Result<IdempotencyBegin, StoreError> {
        if key.is_empty() || key.len() > IDEMPOTENCY_KEY_LEN_MAX {
            return Err(StoreError::Invalid(format!("Idempotency-Key is 1 to {IDEMPOTENCY_KEY_LEN_MAX} characters")));
        }
        let client = self.client().await?;
        let hash: &[u8] = request_hash;
        // A claim whose request never finished (the server died meanwhile) is taken over once
        // it is older than `stale_after`: the request wrote nothing it could be replayed from.
        let stale_after = stale_after.as_secs_f64();
        let inserted = client
            .execute(
                "INSERT INTO idempotency_keys (principal, key, request_hash, created_at) VALUES ($1, $2, $3, now())
                 ON CONFLICT (principal, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, created_at = now()
                 WHERE idempotency_keys.status IS NULL
                   AND idempotency_keys.created_at < now() - make_interval(secs => $4)",
                &[&principal, &key, &hash, &stale_after],
            )
            .await?;
        if inserted == 1 {
            return Ok(IdempotencyBegin::Started);
        }
        let row = client
            .query_one(
                "SELECT request_hash, status, response FROM idempotency_keys WHERE principal = $1 AND key = $2",
                &[&principal, &key],
            )
            .await?;
        let stored: Vec<u8> = row.get(0);
        if stored.as_slice() != hash {
            return Ok(IdempotencyBegin::Mismatch);
        }
        Ok(match (row.get::<_, Option<i16>>(1), row.get::<_, Option<Value>>(2)) {
            (Some(status), Some(response)) => {
                IdempotencyBegin::Replay { status: u16::try_from(status).expect("constrained"), response }
            }
            _ => IdempotencyBegin::InProgress,
        })
    }

    /// Stores the response of the request that claimed the key.
    pub async fn idempotency_finish(
        &self,
        principal: &str,
        key: &str,
        status: u16,
        response: &Value,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let status = i16::try_from(status).expect("an HTTP status");
        client
            .execute(
                "UPDATE idempotency_keys SET status = $3, response = $4
                 WHERE principal = $1 AND key = $2 AND status IS NULL",
                &[&principal, &key, &status, response],
            )
            .await?;
        Ok(())
    }

    /// Frees a claimed key whose request failed without an answer worth replaying (a server
    /// error: nothing was written), so that a retry runs again.
    pub async fn idempotency_release(&self, principal: &str, key: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND status IS NULL",
                &[&principal, &key],
            )
            .await?;
        Ok(())
    }
}
