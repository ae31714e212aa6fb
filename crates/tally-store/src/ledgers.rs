//! Ledgers: sets of books. Create (idempotent by code), look up by id or code, list.
//!
//! A ledger is never changed or deleted once made (a trigger refuses it): its accounts and
//! journal name it for ever. Creating one writes its audit row and its event in the same SQL
//! transaction.

use crate::convert::from_system_time;
use crate::{Store, StoreError};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use tally_core::transfer::METADATA_BYTES_MAX;
use tally_core::{LedgerId, Timestamp};
use tokio_postgres::Row;

/// The most ledgers a deployment may have (and `ledgers` lists): ledgers are few and large.
pub const LEDGERS_MAX: i64 = 10_000;
/// The longest ledger code.
pub const LEDGER_CODE_LEN_MAX: usize = 63;
/// The longest ledger name.
pub const LEDGER_NAME_LEN_MAX: usize = 256;

/// What a client asks for when it makes a ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLedger {
    /// Lower-case letters, digits, `_` and `-`, starting with a letter: `eu-wallets`.
    pub code: String,
    /// For people: `EU wallets`.
    pub name: String,
    pub metadata: Option<serde_json::Value>,
}

/// A ledger as stored (also the payload of its audit row and event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerRecord {
    pub id: LedgerId,
    pub code: String,
    pub name: String,
    pub metadata: Option<serde_json::Value>,
    pub created_at: Timestamp,
    pub created_by: String,
}

const LEDGER_COLUMNS: &str = "id, code, name, metadata, created_at, created_by";

fn ledger_from_row(row: &Row) -> LedgerRecord {
    LedgerRecord {
        id: LedgerId(row.get(0)),
        code: row.get(1),
        name: row.get(2),
        metadata: row.get(3),
        created_at: from_system_time(row.get(4)),
        created_by: row.get(5),
    }
}

/// The ids as the schema stores them.
pub(crate) fn ledger_ids(ledgers: &[LedgerId]) -> Vec<i32> {
    ledgers.iter().map(|l| l.0).collect()
}

/// Checks a ledger code: 1 to 63 lower-case letters, digits, `_` or `-`, starting with a letter
/// (so that it is never mistaken for a ledger id).
pub fn validate_ledger_code(code: &str) -> Result<(), StoreError> {
    let mut chars = code.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !first_ok || !rest_ok || code.len() > LEDGER_CODE_LEN_MAX {
        return Err(StoreError::Invalid(format!(
            "ledger code must be 1 to {LEDGER_CODE_LEN_MAX} lower-case letters, digits, _ or -, starting with a letter"
        )));
    }
    Ok(())
}

/// Checks a new ledger's fields before anything touches the database.
pub fn validate_new_ledger(new: &NewLedger) -> Result<(), StoreError> {
    validate_ledger_code(&new.code)?;
    if new.name.trim().is_empty() || new.name.len() > LEDGER_NAME_LEN_MAX || new.name.contains('\0') {
        return Err(StoreError::Invalid(format!("ledger name must be 1 to {LEDGER_NAME_LEN_MAX} bytes")));
    }
    if new.metadata.as_ref().is_some_and(|m| m.to_string().len() > METADATA_BYTES_MAX) {
        return Err(StoreError::Invalid(format!("metadata is larger than {METADATA_BYTES_MAX} bytes")));
    }
    Ok(())
}

impl Store {
    /// Makes a ledger. Idempotent: the same code with the same name and metadata returns the
    /// existing ledger with `created == false`; the same code with other fields is refused.
    pub async fn create_ledger(&self, new: &NewLedger, actor: &str) -> Result<(LedgerRecord, bool), StoreError> {
        validate_new_ledger(new)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Serialises makers of ledgers, so that the count below stays true.
        tx.execute("LOCK TABLE ledgers IN SHARE ROW EXCLUSIVE MODE", &[]).await?;
        if let Some(existing) = fetch_ledger(&tx, &new.code).await? {
            return if existing.name == new.name && existing.metadata == new.metadata {
                Ok((existing, false))
            } else {
                Err(StoreError::LedgerExistsWithDifferentFields(new.code.clone()))
            };
        }
        let count: i64 = tx.query_one("SELECT count(*) FROM ledgers", &[]).await?.get(0);
        if count >= LEDGERS_MAX {
            return Err(StoreError::Invalid(format!("a deployment has at most {LEDGERS_MAX} ledgers")));
        }
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO ledgers (code, name, metadata, created_at, created_by) VALUES ($1, $2, $3, now(), $4)
                     RETURNING {LEDGER_COLUMNS}"
                ),
                &[&new.code, &new.name, &new.metadata, &actor],
            )
            .await?;
        let record = ledger_from_row(&row);
        let entry = crate::journal::AuditEntry {
            actor,
            action: "ledger.create",
            event_type: Some("ledger.created".into()),
            entity_type: "ledger",
            ledger: Some(record.id),
            entity_id: record.id.to_string(),
            before: None,
            // The audit row has the actor and the time; the event's payload has no time.
            after: serde_json::json!({"id": record.id, "code": record.code, "name": record.name,
                                      "metadata": record.metadata}),
        };
        crate::journal::append(&tx, &[entry]).await?;
        crate::commit_transaction(tx).await?;
        Ok((record, true))
    }

    /// A ledger by id (digits) or by code.
    pub async fn ledger(&self, id_or_code: &str) -> Result<Option<LedgerRecord>, StoreError> {
        let client = self.client().await?;
        fetch_ledger(&client, id_or_code).await
    }

    /// Like `ledger`, but a missing ledger is an error.
    pub async fn require_ledger(&self, id_or_code: &str) -> Result<LedgerRecord, StoreError> {
        self.ledger(id_or_code).await?.ok_or_else(|| StoreError::LedgerNotFound(id_or_code.to_owned()))
    }

    /// Every ledger, by id (at most `LEDGERS_MAX`).
    pub async fn ledgers(&self) -> Result<Vec<LedgerRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(&format!("SELECT {LEDGER_COLUMNS} FROM ledgers ORDER BY id LIMIT $1"), &[&LEDGERS_MAX])
            .await?;
        Ok(rows.iter().map(ledger_from_row).collect())
    }

    /// The ledger of each of these accounts that exists (for checking a scoped key's rights
    /// before anything is submitted). At most `ACCOUNT_CODES_IDS_MAX` ids.
    pub async fn account_ledgers(
        &self,
        ids: &[tally_core::AccountId],
    ) -> Result<std::collections::HashMap<tally_core::AccountId, LedgerId>, StoreError> {
        assert!(ids.len() <= crate::accounts::ACCOUNT_CODES_IDS_MAX, "{} ids above the bound", ids.len());
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
        let client = self.client().await?;
        let rows = client.query("SELECT id, ledger_id FROM accounts WHERE id = ANY($1)", &[&ids]).await?;
        Ok(rows.iter().map(|row| (tally_core::AccountId(row.get(0)), LedgerId(row.get(1)))).collect())
    }

    /// The ledger of each of these transfers that exists (the journal's rows, applied or
    /// rejected). At most `ACCOUNT_CODES_IDS_MAX` ids.
    pub async fn transfer_ledgers(
        &self,
        ids: &[tally_core::transfer::TransferId],
    ) -> Result<std::collections::HashMap<tally_core::transfer::TransferId, LedgerId>, StoreError> {
        assert!(ids.len() <= crate::accounts::ACCOUNT_CODES_IDS_MAX, "{} ids above the bound", ids.len());
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
        let client = self.client().await?;
        let rows = client.query("SELECT id, ledger_id FROM transfers WHERE id = ANY($1)", &[&ids]).await?;
        Ok(rows.iter().map(|row| (tally_core::transfer::TransferId(row.get(0)), LedgerId(row.get(1)))).collect())
    }
}

async fn fetch_ledger(client: &impl GenericClient, id_or_code: &str) -> Result<Option<LedgerRecord>, StoreError> {
    let row = match id_or_code.parse::<i32>() {
        Ok(id) => client.query_opt(&format!("SELECT {LEDGER_COLUMNS} FROM ledgers WHERE id = $1"), &[&id]).await?,
        Err(_) => {
            client.query_opt(&format!("SELECT {LEDGER_COLUMNS} FROM ledgers WHERE code = $1"), &[&id_or_code]).await?
        }
    };
    Ok(row.as_ref().map(ledger_from_row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_codes() {
        for good in ["default", "eu-wallets", "a", "cards_2026"] {
            assert!(validate_ledger_code(good).is_ok(), "{good}");
        }
        for bad in ["", "1eu", "EU", "eu wallets", "eu/wallets", &"a".repeat(64), "-x"] {
            assert!(validate_ledger_code(bad).is_err(), "{bad}");
        }
    }
}
