//! Accounts: create (idempotent), look up by id or code, list, freeze, unfreeze, close.
//!
//! Every change writes its audit row and its event in the same SQL transaction as the change.

use crate::convert::{from_numeric, from_system_time, to_numeric};
use crate::journal::append_audit_and_events;
use crate::{Store, StoreError};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tally_core::transfer::METADATA_BYTES_MAX;
use tally_core::{Account, AccountId, AccountStatus, BalanceRule, LedgerId, Timestamp};
use tokio_postgres::Row;
use uuid::Uuid;

/// The longest account code.
pub const ACCOUNT_CODE_LEN_MAX: usize = 128;
/// The most accounts one page of `list_accounts` returns.
pub const ACCOUNT_PAGE_SIZE_MAX: i64 = 1_000;
/// The most ids one `account_codes` call looks up: both sides of a full page of history.
pub const ACCOUNT_CODES_IDS_MAX: usize = 2 * crate::queries::HISTORY_PAGE_SIZE_MAX as usize;

/// What a client asks for when it opens an account.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAccount {
    /// Client-supplied id; a UUIDv7 is generated when absent.
    pub id: Option<AccountId>,
    /// The ledger the account belongs to (`LedgerId::DEFAULT` when the client names none).
    pub ledger: LedgerId,
    /// Optional external code, unique within the ledger, e.g. `"wallet:alice"`.
    pub code: Option<String>,
    pub currency: String,
    pub rule: BalanceRule,
    pub metadata: Option<serde_json::Value>,
}

/// An account with its descriptive fields (also the payload of account events and audit rows,
/// which is why it reads back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountRecord {
    #[serde(flatten)]
    pub account: Account,
    pub code: Option<String>,
    /// Decimal places of the account's currency.
    pub scale: u8,
    pub metadata: Option<serde_json::Value>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Which accounts `list_accounts` returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountFilter<'a> {
    pub currency: Option<&'a str>,
    pub status: Option<AccountStatus>,
    /// Only accounts of these ledgers (`None`: every ledger).
    pub ledgers: Option<&'a [LedgerId]>,
}

/// Status changes a client may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Freeze,
    Unfreeze,
    Close,
}

impl StatusChange {
    pub fn target(self) -> AccountStatus {
        match self {
            StatusChange::Freeze => AccountStatus::Frozen,
            StatusChange::Unfreeze => AccountStatus::Active,
            StatusChange::Close => AccountStatus::Closed,
        }
    }

    fn action(self) -> &'static str {
        match self {
            StatusChange::Freeze => "account.freeze",
            StatusChange::Unfreeze => "account.unfreeze",
            StatusChange::Close => "account.close",
        }
    }

    fn event_type(self) -> &'static str {
        match self {
            StatusChange::Freeze => "account.frozen",
            StatusChange::Unfreeze => "account.unfrozen",
            StatusChange::Close => "account.closed",
        }
    }
}

/// The columns `account_from_row` reads, in order.
pub(crate) const ACCOUNT_COLUMNS: &str = "a.id, a.currency, a.status, a.unrestricted, a.overdraft_limit, \
     a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending, a.version, a.ledger_id";
const RECORD_COLUMNS: &str = "a.id, a.currency, a.status, a.unrestricted, a.overdraft_limit, \
     a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending, a.version, a.ledger_id, \
     a.code, c.scale, a.metadata, a.created_at, a.updated_at";

pub(crate) fn account_from_row(row: &Row) -> Account {
    let status: &str = row.get(2);
    Account {
        id: AccountId(row.get(0)),
        currency: row.get(1),
        status: AccountStatus::parse(status).expect("status constrained by the schema"),
        rule: BalanceRule::from_parts(row.get(3), from_numeric(row.get(4))),
        debits_posted: from_numeric(row.get(5)),
        credits_posted: from_numeric(row.get(6)),
        debits_pending: from_numeric(row.get(7)),
        credits_pending: from_numeric(row.get(8)),
        version: row.get(9),
        ledger: LedgerId(row.get(10)),
    }
}

fn record_from_row(row: &Row) -> AccountRecord {
    let scale: i16 = row.get(12);
    AccountRecord {
        account: account_from_row(row),
        code: row.get(11),
        scale: u8::try_from(scale).expect("scale constrained by the schema"),
        metadata: row.get(13),
        created_at: from_system_time(row.get(14)),
        updated_at: from_system_time(row.get(15)),
    }
}

/// Checks a new account's fields before anything touches the database.
pub fn validate_new_account(new: &NewAccount) -> Result<(), StoreError> {
    if let Some(code) = &new.code {
        validate_code(code)?;
    }
    tally_core::currency::validate_code(&new.currency).map_err(|e| StoreError::Invalid(e.to_string()))?;
    if new.metadata.as_ref().is_some_and(|m| m.to_string().len() > METADATA_BYTES_MAX) {
        return Err(StoreError::Invalid(format!("metadata is larger than {METADATA_BYTES_MAX} bytes")));
    }
    if new.id.is_some_and(|id| id.0.is_nil()) {
        return Err(StoreError::Invalid("account id must not be the nil UUID".into()));
    }
    Ok(())
}

/// An account code: 1 to 128 characters of letters, digits and `_.:@/-`, not a UUID (so that
/// "id or code" is never ambiguous).
pub fn validate_code(code: &str) -> Result<(), StoreError> {
    let mut chars = code.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.:@/-".contains(c));
    if !first_ok || !rest_ok || code.len() > ACCOUNT_CODE_LEN_MAX || Uuid::parse_str(code).is_ok() {
        return Err(StoreError::Invalid(format!(
            "account code must be 1 to {ACCOUNT_CODE_LEN_MAX} letters, digits or _.:@/- starting with a letter or digit, and not a UUID"
        )));
    }
    Ok(())
}

impl Store {
    /// Opens an account. Idempotent: repeating the same request (same id, or same code when no
    /// id is given) returns the existing account with `created == false`.
    pub async fn create_account(&self, new: &NewAccount, actor: &str) -> Result<(AccountRecord, bool), StoreError> {
        validate_new_account(new)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if tx.query_opt("SELECT 1 FROM currencies WHERE code = $1", &[&new.currency]).await?.is_none() {
            return Err(StoreError::CurrencyNotFound(new.currency.clone()));
        }
        let id = new.id.map_or_else(Uuid::now_v7, |id| id.0);
        let (unrestricted, limit) = match new.rule {
            BalanceRule::Unrestricted => (true, 0),
            rule => (false, rule.limit().expect("restricted")),
        };
        // The key is (id, ledger_id), so that no uniqueness check crosses ledgers; an id stays
        // one account's all the same: under a lock on the id, an id another ledger uses is refused.
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))", &[&id]).await?;
        if tx
            .query_opt("SELECT 1 FROM accounts WHERE id = $1 AND ledger_id <> $2", &[&id, &new.ledger.0])
            .await?
            .is_some()
        {
            return Err(StoreError::AccountExistsWithDifferentFields(id.to_string()));
        }
        let inserted = tx
            .query_opt(
                "INSERT INTO accounts (id, code, currency, unrestricted, overdraft_limit, metadata, ledger_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING id",
                &[&id, &new.code, &new.currency, &unrestricted, &to_numeric(limit), &new.metadata, &new.ledger.0],
            )
            .await
            .map_err(|e| match crate::error::constraint(&e) {
                Some("accounts_ledger_id_fkey") => StoreError::LedgerNotFound(new.ledger.to_string()),
                _ => StoreError::Db(e),
            })?;
        if inserted.is_none() {
            drop(tx);
            return self.existing_account_for(new, id).await.map(|record| (record, false));
        }
        let record = fetch_account(&tx, &id.to_string()).await?.expect("just inserted");
        let after = serde_json::to_value(&record).expect("account serializes");
        append_audit_and_events(
            &tx,
            actor,
            new.ledger,
            &[("account.create", "account.created", id.to_string(), None, after)],
        )
        .await?;
        crate::commit_transaction(tx).await?;
        Ok((record, true))
    }

    /// After a conflicting insert: the same account again (an idempotent retry), or an error.
    async fn existing_account_for(&self, new: &NewAccount, id: Uuid) -> Result<AccountRecord, StoreError> {
        let by_id = match new.id {
            Some(_) => self.account(&id.to_string()).await?,
            None => None,
        };
        let by_code = match &new.code {
            Some(code) => {
                let client = self.client().await?;
                fetch_account_by_code(&client, code, Some(new.ledger)).await?
            }
            None => None,
        };
        let existing = by_id.clone().or(by_code.clone()).expect("a conflict has a conflicting row");
        let same = existing.code == new.code
            && existing.account.ledger == new.ledger
            && existing.account.currency == new.currency
            && existing.account.rule == new.rule
            && existing.metadata == new.metadata
            && new.id.is_none_or(|id| id == existing.account.id);
        match (same, by_id) {
            (true, _) => Ok(existing),
            (false, Some(_)) => Err(StoreError::AccountExistsWithDifferentFields(id.to_string())),
            (false, None) => Err(StoreError::AccountCodeTaken(new.code.clone().unwrap_or_default())),
        }
    }

    /// An account by id or by code.
    pub async fn account(&self, id_or_code: &str) -> Result<Option<AccountRecord>, StoreError> {
        let client = self.client().await?;
        fetch_account(&client, id_or_code).await
    }

    /// Like `account`, but a missing account is an error.
    pub async fn require_account(&self, id_or_code: &str) -> Result<AccountRecord, StoreError> {
        self.account(id_or_code).await?.ok_or_else(|| StoreError::AccountNotFound(id_or_code.to_owned()))
    }

    /// The codes of these accounts (at most `ACCOUNT_CODES_IDS_MAX` ids), for showing a code
    /// where an id would be; accounts without a code, or that do not exist, are absent.
    pub async fn account_codes(&self, ids: &[AccountId]) -> Result<HashMap<AccountId, String>, StoreError> {
        assert!(ids.len() <= ACCOUNT_CODES_IDS_MAX, "{} ids above ACCOUNT_CODES_IDS_MAX", ids.len());
        let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        let client = self.client().await?;
        let rows =
            client.query("SELECT id, code FROM accounts WHERE id = ANY($1) AND code IS NOT NULL", &[&ids]).await?;
        Ok(rows.iter().map(|row| (AccountId(row.get(0)), row.get(1))).collect())
    }

    /// A page of accounts ordered by id, after the cursor (an id), optionally filtered.
    pub async fn list_accounts(
        &self,
        filter: &AccountFilter<'_>,
        after: Option<AccountId>,
        limit: i64,
    ) -> Result<Vec<AccountRecord>, StoreError> {
        let limit = limit.clamp(1, ACCOUNT_PAGE_SIZE_MAX);
        let client = self.client().await?;
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM accounts a JOIN currencies c ON c.code = a.currency
             WHERE ($1::text IS NULL OR a.currency = $1) AND ($2::text IS NULL OR a.status = $2)
               AND ($3::uuid IS NULL OR a.id > $3) AND ($5::int4[] IS NULL OR a.ledger_id = ANY($5))
             ORDER BY a.id LIMIT $4"
        );
        let status = filter.status.map(AccountStatus::as_str);
        let ledgers = filter.ledgers.map(crate::ledgers::ledger_ids);
        let rows = client.query(&sql, &[&filter.currency, &status, &after.map(|a| a.0), &limit, &ledgers]).await?;
        Ok(rows.iter().map(record_from_row).collect())
    }

    /// Freezes, unfreezes or closes an account. Idempotent: asking for the status the account
    /// already has changes nothing. `expected_version` is an optimistic precondition.
    pub async fn change_account_status(
        &self,
        id_or_code: &str,
        change: StatusChange,
        expected_version: Option<i64>,
        actor: &str,
    ) -> Result<AccountRecord, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = resolve_account_id(&tx, id_or_code).await?;
        let row =
            tx.query_one(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE id = $1 FOR UPDATE"), &[&id]).await?;
        let account = account_from_row(&row);
        if let Some(expected) = expected_version.filter(|v| *v != account.version) {
            return Err(StoreError::VersionConflict { expected, actual: account.version });
        }
        let target = change.target();
        if account.status == target {
            drop(tx);
            return self.require_account(&id.to_string()).await;
        }
        if account.status == AccountStatus::Closed
            || (change == StatusChange::Unfreeze && account.status != AccountStatus::Frozen)
        {
            return Err(StoreError::StatusTransitionInvalid {
                id: id.to_string(),
                from: account.status.as_str(),
                to: target.as_str(),
            });
        }
        if change == StatusChange::Close && !account.is_empty() {
            return Err(StoreError::AccountNotEmpty(id.to_string()));
        }
        let before = serde_json::to_value(fetch_account(&tx, &id.to_string()).await?).expect("serializes");
        // Written at the version the decision was made on, like every writer of an account row
        // (the row lock above makes the check a formality, and asserts it).
        let updated = tx
            .execute(
                "UPDATE accounts SET status = $2, version = version + 1, updated_at = now() WHERE id = $1 AND version = $3",
                &[&id, &target.as_str(), &account.version],
            )
            .await?;
        assert_eq!(updated, 1, "a locked account stays at the version read under its lock");
        let record = fetch_account(&tx, &id.to_string()).await?.expect("locked row exists");
        let after = serde_json::to_value(&record).expect("serializes");
        let change_row = (change.action(), change.event_type(), id.to_string(), Some(before), after);
        append_audit_and_events(&tx, actor, record.account.ledger, &[change_row]).await?;
        crate::commit_transaction(tx).await?;
        Ok(record)
    }
}

/// The id of the account named by id or code.
pub(crate) async fn resolve_account_id(client: &impl GenericClient, id_or_code: &str) -> Result<Uuid, StoreError> {
    fetch_account(client, id_or_code)
        .await?
        .map(|record| record.account.id.0)
        .ok_or_else(|| StoreError::AccountNotFound(id_or_code.to_owned()))
}

/// An account by id, or by code: a code names an account within its ledger, so a code that
/// accounts of several ledgers use is ambiguous unless the ledger is named.
async fn fetch_account(client: &impl GenericClient, id_or_code: &str) -> Result<Option<AccountRecord>, StoreError> {
    match Uuid::parse_str(id_or_code) {
        Ok(id) => {
            let select = format!("SELECT {RECORD_COLUMNS} FROM accounts a JOIN currencies c ON c.code = a.currency");
            let row = client.query_opt(&format!("{select} WHERE a.id = $1"), &[&id]).await?;
            Ok(row.as_ref().map(record_from_row))
        }
        Err(_) => fetch_account_by_code(client, id_or_code, None).await,
    }
}

/// An account by its code, in `ledger` or, when none is named, in whichever ledger has it.
pub(crate) async fn fetch_account_by_code(
    client: &impl GenericClient,
    code: &str,
    ledger: Option<LedgerId>,
) -> Result<Option<AccountRecord>, StoreError> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM accounts a JOIN currencies c ON c.code = a.currency
         WHERE a.code = $1 AND ($2::int4 IS NULL OR a.ledger_id = $2) LIMIT 2"
    );
    let rows = client.query(&sql, &[&code, &ledger.map(|l| l.0)]).await?;
    match rows.as_slice() {
        [] => Ok(None),
        [row] => Ok(Some(record_from_row(row))),
        _ => Err(StoreError::AccountCodeAmbiguous(code.to_owned())),
    }
}

/// The most accounts one `create_accounts` call opens.
pub const ACCOUNT_BULK_MAX: usize = 10_000;

impl Store {
    /// Opens many accounts in one SQL transaction, each with its audit row and event. Accounts
    /// whose id or code already exists are skipped (idempotent); returns how many were created.
    pub async fn create_accounts(&self, accounts: &[NewAccount], actor: &str) -> Result<usize, StoreError> {
        assert!(accounts.len() <= ACCOUNT_BULK_MAX, "at most {ACCOUNT_BULK_MAX} accounts per call");
        for new in accounts {
            validate_new_account(new)?;
        }
        let ids: Vec<Uuid> = accounts.iter().map(|a| a.id.map_or_else(Uuid::now_v7, |id| id.0)).collect();
        let codes: Vec<Option<&str>> = accounts.iter().map(|a| a.code.as_deref()).collect();
        let currencies: Vec<&str> = accounts.iter().map(|a| a.currency.as_str()).collect();
        let unrestricted: Vec<bool> = accounts.iter().map(|a| a.rule == BalanceRule::Unrestricted).collect();
        let limits: Vec<rust_decimal::Decimal> =
            accounts.iter().map(|a| to_numeric(a.rule.limit().unwrap_or(0))).collect();
        let metadata: Vec<Option<&serde_json::Value>> = accounts.iter().map(|a| a.metadata.as_ref()).collect();
        let ledgers: Vec<i32> = accounts.iter().map(|a| a.ledger.0).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // An id that another ledger already uses is refused (see `create_account`).
        if let Some(row) = tx
            .query_opt(
                "SELECT a.id FROM accounts a JOIN unnest($1::uuid[], $2::int4[]) AS n(id, ledger_id) ON a.id = n.id
                 WHERE a.ledger_id <> n.ledger_id LIMIT 1",
                &[&ids, &ledgers],
            )
            .await?
        {
            return Err(StoreError::AccountExistsWithDifferentFields(row.get::<_, Uuid>(0).to_string()));
        }
        let inserted = tx
            .query(
                "INSERT INTO accounts (id, code, currency, unrestricted, overdraft_limit, metadata, ledger_id)
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bool[], $5::numeric[], $6::jsonb[], $7::int4[])
                 ON CONFLICT DO NOTHING RETURNING id",
                &[&ids, &codes, &currencies, &unrestricted, &limits, &metadata, &ledgers],
            )
            .await
            .map_err(|e| match crate::error::constraint(&e) {
                Some("accounts_currency_fkey") => StoreError::CurrencyNotFound(currencies.join(",")),
                Some("accounts_ledger_id_fkey") => StoreError::LedgerNotFound(ledgers.iter().map(i32::to_string).collect::<Vec<_>>().join(",")),
                _ => StoreError::Db(e),
            })?;
        let created: Vec<Uuid> = inserted.iter().map(|row| row.get(0)).collect();
        let rows = tx
            .query(
                &format!("SELECT {RECORD_COLUMNS} FROM accounts a JOIN currencies c ON c.code = a.currency WHERE a.id = ANY($1) ORDER BY a.id"),
                &[&created],
            )
            .await?;
        let entries: Vec<crate::journal::AuditEntry> = rows
            .iter()
            .map(|row| {
                let record = record_from_row(row);
                crate::journal::AuditEntry {
                    actor,
                    action: "account.create",
                    event_type: Some("account.created".to_owned()),
                    entity_type: "account",
                    ledger: Some(record.account.ledger),
                    entity_id: record.account.id.to_string(),
                    before: None,
                    after: serde_json::to_value(&record).expect("account serializes"),
                }
            })
            .collect();
        crate::journal::append(&tx, &entries).await?;
        crate::commit_transaction(tx).await?;
        Ok(created.len())
    }
}
