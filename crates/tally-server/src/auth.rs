//! API keys and who may do what.
//!
//! A key is `tly_` and 64 hex digits: 256 random bits from the operating system. Only its
//! SHA-256 is stored. Every request but `/healthz` carries `Authorization: Bearer <key>`; the
//! key's name becomes the principal, and the audit trail records `key:<name>`: never a field the
//! caller typed. Verified keys are cached for `key_cache_ttl`, so a revoked key stops working
//! within that time.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tally_core::LedgerId;
use tally_store::{ApiKeyRecord, Role};
use uuid::Uuid;

/// What every key starts with, so that secret scanners can recognise one.
pub const KEY_PREFIX: &str = "tly_";
/// Random bytes per key.
pub const KEY_BYTES: usize = 32;
/// Characters of a key shown in listings.
pub const KEY_SHOWN_LEN: usize = 12;
/// The most verified keys kept in memory; the cache is cleared when full.
pub const KEY_CACHE_MAX: usize = 10_000;

const _: () = assert!(KEY_BYTES * 8 >= 256);

/// A new key: the secret, shown once, and what is stored.
pub struct GeneratedKey {
    pub key: String,
    pub hash: [u8; 32],
    pub prefix: String,
}

pub fn generate_key() -> GeneratedKey {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    let key = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    GeneratedKey { hash: hash_key(&key), prefix: key[..KEY_SHOWN_LEN].to_owned(), key }
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub key_id: Uuid,
    pub name: String,
    pub role: Role,
    /// A reader's accounts.
    pub accounts: Vec<Uuid>,
    /// The ledgers the key is scoped to (empty: every ledger).
    pub ledgers: Vec<LedgerId>,
}

impl Principal {
    /// The actor recorded in the audit trail.
    pub fn actor(&self) -> String {
        format!("key:{}", self.name)
    }

    pub fn require(&self, allowed: &[Role]) -> Result<(), ApiError> {
        if allowed.contains(&self.role) {
            return Ok(());
        }
        Err(ApiError::forbidden(format!("a {} key may not do this", self.role.as_str())))
    }

    /// May this caller read this account?
    pub fn may_read_account(&self, account: Uuid) -> bool {
        self.role != Role::Reader || self.accounts.contains(&account)
    }

    pub fn require_account(&self, account: Uuid) -> Result<(), ApiError> {
        if self.may_read_account(account) {
            return Ok(());
        }
        // Not 404: a reader learns nothing about accounts it was not given, but is told why.
        Err(ApiError::forbidden("this key may not read that account"))
    }

    /// May this caller read or write in this ledger?
    pub fn may_use_ledger(&self, ledger: LedgerId) -> bool {
        self.ledgers.is_empty() || self.ledgers.contains(&ledger)
    }

    /// `ledger_forbidden` (403) unless the key may use this ledger.
    pub fn require_ledger(&self, ledger: LedgerId) -> Result<(), ApiError> {
        if self.may_use_ledger(ledger) {
            return Ok(());
        }
        Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "ledger_forbidden",
            format!("this key is scoped to other ledgers than ledger {ledger}"),
        ))
    }

    /// The ledgers a listing may show: the one asked for (which the key must be allowed), else
    /// the key's scope (`None`: every ledger).
    pub fn ledger_scope(&self, asked: Option<LedgerId>) -> Result<Option<Vec<LedgerId>>, ApiError> {
        match asked {
            Some(ledger) => {
                self.require_ledger(ledger)?;
                Ok(Some(vec![ledger]))
            }
            None if self.ledgers.is_empty() => Ok(None),
            None => Ok(Some(self.ledgers.clone())),
        }
    }
}

/// Roles that change accounts and keys.
pub const ADMINS: &[Role] = &[Role::Admin];
/// Roles that move money.
pub const MOVERS: &[Role] = &[Role::Admin, Role::Operator];
/// Roles that read accounts and transfers (a reader only its own accounts).
pub const READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Auditor, Role::Reader];
/// Roles that read the audit log.
pub const AUDITORS: &[Role] = &[Role::Admin, Role::Auditor];
/// Roles that read the event feed (what integrations consume): not readers, who see only
/// their own accounts.
pub const EVENT_READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Auditor];
/// Roles that read the server's own state (metrics, readiness, the API description).
pub const OPERATORS: &[Role] = &[Role::Admin, Role::Operator, Role::Auditor];

/// Verified keys, by hash.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

impl KeyCache {
    fn get(&self, hash: &[u8; 32], ttl: Duration) -> Option<Principal> {
        let entries = self.entries.lock().expect("key cache poisoned");
        entries.get(hash).filter(|(_, at)| at.elapsed() < ttl).map(|(principal, _)| principal.clone())
    }

    fn put(&self, hash: [u8; 32], principal: Principal) {
        let mut entries = self.entries.lock().expect("key cache poisoned");
        if entries.len() >= KEY_CACHE_MAX {
            entries.clear();
        }
        entries.insert(hash, (principal, Instant::now()));
    }
}

fn principal_of(key: &ApiKeyRecord) -> Principal {
    Principal {
        key_id: key.id,
        name: key.name.clone(),
        role: key.role,
        accounts: key.accounts.clone(),
        ledgers: key.ledgers.clone(),
    }
}

/// Middleware: authenticates the request, applies the per-key rate limit, and puts the
/// `Principal` into the request's extensions.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthenticated("send Authorization: Bearer <key>"))?;
    let key = header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|key| key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 2 * KEY_BYTES)
        .ok_or_else(|| ApiError::unauthenticated("the Authorization header must be Bearer and a Tally key"))?;
    let hash = hash_key(key);
    let ttl = state.config.key_cache_ttl;
    let principal = match state.keys.get(&hash, ttl) {
        Some(principal) => principal,
        None => {
            let record = state.store.api_key_by_hash(&hash).await?;
            let record = record
                .filter(|record| record.revoked_at.is_none())
                .ok_or_else(|| ApiError::unauthenticated("unknown or revoked key"))?;
            let principal = principal_of(&record);
            if !ttl.is_zero() {
                state.keys.put(hash, principal.clone());
            }
            principal
        }
    };
    state.limits.check_rate(principal.key_id)?;
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_only_their_hash_matches() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with(KEY_PREFIX));
        assert_eq!(a.key.len(), KEY_PREFIX.len() + 64);
        assert_eq!(a.hash, hash_key(&a.key));
        assert_ne!(a.hash, hash_key(&b.key));
        assert!(a.key.starts_with(&a.prefix));
    }

    #[test]
    fn readers_read_only_their_accounts() {
        let mine = Uuid::now_v7();
        let reader = Principal {
            key_id: Uuid::now_v7(),
            name: "r".into(),
            role: Role::Reader,
            accounts: vec![mine],
            ledgers: vec![],
        };
        assert!(reader.may_read_account(mine));
        assert!(!reader.may_read_account(Uuid::now_v7()));
        assert!(reader.require(MOVERS).is_err());
        let operator = Principal { role: Role::Operator, accounts: vec![], ..reader };
        assert!(operator.may_read_account(Uuid::now_v7()));
        assert!(operator.require(AUDITORS).is_err());
        assert!(operator.require(MOVERS).is_ok());
    }
}
