//! Accounts end to end: create (idempotent), look up, list, freeze, unfreeze, close.

use crate::support::*;
use serde_json::{Value, json};
use tally_core::{AccountId, AccountStatus, BalanceRule, Currency, TransferResult};
use tally_store::AccountFilter;
use tally_store::{AccountRecord, NewAccount, StatusChange, StoreError};
use uuid::Uuid;

fn new_account(id: Option<Uuid>, code: Option<&str>, currency: &str) -> NewAccount {
    NewAccount {
        ledger: tally_core::LedgerId::DEFAULT,
        id: id.map(AccountId),
        code: code.map(str::to_owned),
        currency: currency.into(),
        rule: BalanceRule::NoOverdraft,
        metadata: None,
    }
}

async fn create(ledger: &Ledger, new: &NewAccount) -> Result<(AccountRecord, bool), StoreError> {
    ledger.db.store.create_account(new, ACTOR).await
}

async fn change(
    ledger: &Ledger,
    account: AccountId,
    change: StatusChange,
    expected_version: Option<i64>,
) -> Result<AccountRecord, StoreError> {
    ledger.db.store.change_account_status(&account.to_string(), change, expected_version, ACTOR).await
}

#[tokio::test]
async fn creates_an_account_with_a_generated_uuid_v7_id() {
    let ledger = ledger().await;
    let (record, created) = create(&ledger, &new_account(None, None, "USD")).await.unwrap();
    assert!(created);
    assert_eq!(record.account.id.0.get_version_num(), 7, "generated ids are UUIDv7");
    let a = &record.account;
    assert_eq!(
        (a.status, a.rule, a.version, a.balance(), a.available()),
        (AccountStatus::Active, BalanceRule::NoOverdraft, 1, 0, 0)
    );
    assert_eq!((record.scale, record.code.as_deref()), (2, None));
    assert_eq!(ledger.db.store.account(&a.id.to_string()).await.unwrap(), Some(record.clone()));
    // Without an id or a code, a second request is a second account.
    let (other, created) = create(&ledger, &new_account(None, None, "USD")).await.unwrap();
    assert!(created);
    assert_ne!(other.account.id, record.account.id);
}

#[tokio::test]
async fn creates_an_account_with_a_client_id_and_code_and_finds_it_by_either() {
    let ledger = ledger().await;
    let id = Uuid::new_v4();
    let new = NewAccount {
        ledger: tally_core::LedgerId::DEFAULT,
        rule: BalanceRule::OverdraftLimit(5_000),
        metadata: Some(json!({"owner": "alice", "tier": 2})),
        ..new_account(Some(id), Some("wallet:alice"), "JPY")
    };
    let (record, created) = create(&ledger, &new).await.unwrap();
    assert!(created);
    assert_eq!(record.account.id, AccountId(id), "the client's id is kept");
    assert_eq!((record.code.as_deref(), record.scale), (Some("wallet:alice"), 0));
    assert_eq!((record.account.currency.as_str(), record.account.rule), ("JPY", BalanceRule::OverdraftLimit(5_000)));
    assert_eq!(record.metadata, new.metadata);
    let by_id = ledger.db.store.account(&id.to_string()).await.unwrap();
    let by_code = ledger.db.store.account("wallet:alice").await.unwrap();
    assert_eq!(by_id, Some(record.clone()));
    assert_eq!(by_code, Some(record));
    assert_eq!(ledger.db.store.account("wallet:bob").await.unwrap(), None);
    assert_eq!(ledger.db.store.account(&Uuid::new_v4().to_string()).await.unwrap(), None);
    let missing = ledger.db.store.require_account("wallet:bob").await.unwrap_err();
    assert_eq!(missing.code(), "account_not_found");
}

#[tokio::test]
async fn repeating_the_same_create_returns_the_same_account_and_writes_nothing() {
    let ledger = ledger().await;
    let with_id = new_account(Some(Uuid::new_v4()), Some("alice"), "USD");
    let with_code_only = new_account(None, Some("bob"), "USD");
    let (first, created) = create(&ledger, &with_id).await.unwrap();
    assert!(created);
    let (first_bob, created) = create(&ledger, &with_code_only).await.unwrap();
    assert!(created);
    let counts = ledger.db.row_counts().await;

    let (again, created) = create(&ledger, &with_id).await.unwrap();
    assert!(!created, "a repeated create reports that nothing was created");
    assert_eq!(again, first);
    let (again_bob, created) = create(&ledger, &with_code_only).await.unwrap();
    assert!(!created);
    assert_eq!(again_bob, first_bob, "without an id, the code makes the request idempotent");
    assert_eq!(ledger.db.row_counts().await, counts, "no account, audit row or event was written");
}

#[tokio::test]
async fn same_id_with_another_currency_is_refused() {
    let ledger = ledger().await;
    let id = Uuid::new_v4();
    let (original, _) = create(&ledger, &new_account(Some(id), Some("alice"), "USD")).await.unwrap();
    let counts = ledger.db.row_counts().await;
    let error = create(&ledger, &new_account(Some(id), Some("alice"), "EUR")).await.unwrap_err();
    assert!(matches!(error, StoreError::AccountExistsWithDifferentFields(_)), "{error:?}");
    assert_eq!(error.code(), "account_exists_with_different_fields");
    // Other rule or other metadata under the same id: the same refusal.
    let other_rule = NewAccount {
        ledger: tally_core::LedgerId::DEFAULT,
        rule: BalanceRule::Unrestricted,
        ..new_account(Some(id), Some("alice"), "USD")
    };
    assert_eq!(create(&ledger, &other_rule).await.unwrap_err().code(), "account_exists_with_different_fields");
    let other_code = new_account(Some(id), Some("alice-2"), "USD");
    assert_eq!(create(&ledger, &other_code).await.unwrap_err().code(), "account_exists_with_different_fields");
    assert_eq!(ledger.db.row_counts().await, counts);
    assert_eq!(ledger.db.store.account(&id.to_string()).await.unwrap(), Some(original));
}

#[tokio::test]
async fn same_code_for_another_id_is_refused() {
    let ledger = ledger().await;
    let (original, _) = create(&ledger, &new_account(Some(Uuid::new_v4()), Some("alice"), "USD")).await.unwrap();
    let counts = ledger.db.row_counts().await;
    let intruder = Uuid::new_v4();
    let error = create(&ledger, &new_account(Some(intruder), Some("alice"), "USD")).await.unwrap_err();
    assert!(matches!(&error, StoreError::AccountCodeTaken(code) if code == "alice"), "{error:?}");
    assert_eq!(error.code(), "account_code_taken");
    // Without an id but with other fields, the code is taken too.
    let error = create(&ledger, &new_account(None, Some("alice"), "EUR")).await.unwrap_err();
    assert_eq!(error.code(), "account_code_taken");
    assert_eq!(ledger.db.row_counts().await, counts);
    assert_eq!(ledger.db.store.account(&intruder.to_string()).await.unwrap(), None);
    assert_eq!(ledger.db.store.account("alice").await.unwrap(), Some(original));
}

#[tokio::test]
async fn unknown_currency_is_refused() {
    let ledger = ledger().await;
    let counts = ledger.db.row_counts().await;
    let error = create(&ledger, &new_account(None, Some("alice"), "XYZ")).await.unwrap_err();
    assert!(matches!(&error, StoreError::CurrencyNotFound(code) if code == "XYZ"), "{error:?}");
    assert_eq!(error.code(), "currency_not_found");
    assert_eq!(ledger.db.row_counts().await, counts);
    assert_eq!(ledger.db.store.account("alice").await.unwrap(), None);
}

#[tokio::test]
async fn custom_asset_can_be_registered_and_used() {
    let ledger = ledger().await;
    let points = Currency::custom("POINTS", 0).unwrap();
    assert!(ledger.db.store.register_currency(&points, ACTOR).await.unwrap(), "registered");
    assert!(!ledger.db.store.register_currency(&points, ACTOR).await.unwrap(), "idempotent");
    let other_scale = Currency { code: "POINTS".into(), scale: 2 };
    let error = ledger.db.store.register_currency(&other_scale, ACTOR).await.unwrap_err();
    assert_eq!(error.code(), "currency_exists_with_different_scale");
    let iso = Currency { code: "USD".into(), scale: 4 };
    assert_eq!(ledger.db.store.register_currency(&iso, ACTOR).await.unwrap_err().code(), "invalid_input");
    assert_eq!(ledger.db.store.currency_scale("POINTS").await.unwrap(), 0);

    let issuer = ledger.open("points:issuer", "POINTS", BalanceRule::Unrestricted).await;
    let member = ledger.open("points:alice", "POINTS", BalanceRule::NoOverdraft).await;
    let record = ledger.db.store.require_account("points:alice").await.unwrap();
    assert_eq!((record.account.currency.as_str(), record.scale), ("POINTS", 0));
    assert_eq!(ledger.post(posted(issuer, member, 250)).await.result, TransferResult::Ok);
    assert_eq!(ledger.balance(member).await, 250);
    let usd = ledger.open("usd", "USD", BalanceRule::Unrestricted).await;
    assert_eq!(ledger.post(posted(usd, member, 1)).await.result, TransferResult::CurrencyMismatch);
    let client = ledger.db.connect().await;
    let audit: i64 = client
        .query_one("SELECT count(*) FROM audit_log WHERE action = 'currency.create' AND entity_id = 'POINTS'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(audit, 1);
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn list_accounts_filters_by_currency_and_status_and_pages_by_cursor() {
    let ledger = ledger().await;
    let mut usd = Vec::new();
    for i in 0..7 {
        usd.push(ledger.open(&format!("usd-{i}"), "USD", BalanceRule::NoOverdraft).await);
    }
    let mut eur = Vec::new();
    for i in 0..3 {
        eur.push(ledger.open(&format!("eur-{i}"), "EUR", BalanceRule::NoOverdraft).await);
    }
    let mut frozen = vec![usd[1], usd[4]];
    for id in &frozen {
        change(&ledger, *id, StatusChange::Freeze, None).await.unwrap();
    }
    frozen.sort();
    usd.sort();
    eur.sort();
    let store = &ledger.db.store;

    let mut paged = Vec::new();
    let mut after = None;
    let mut sizes = Vec::new();
    loop {
        let page = store
            .list_accounts(&AccountFilter { currency: Some("USD"), ..Default::default() }, after, 3)
            .await
            .unwrap();
        sizes.push(page.len());
        let Some(last) = page.last() else { break };
        after = Some(last.account.id);
        paged.extend(page.iter().map(|r| r.account.id));
    }
    assert_eq!(sizes, [3, 3, 1, 0]);
    assert_eq!(paged, usd, "every USD account once, in id order");

    let ids = |records: Vec<AccountRecord>| records.into_iter().map(|r| r.account.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .list_accounts(&AccountFilter { currency: Some("EUR"), ..Default::default() }, None, 100)
            .await
            .unwrap()),
        eur
    );
    assert_eq!(
        ids(store
            .list_accounts(&AccountFilter { status: Some(AccountStatus::Frozen), ..Default::default() }, None, 100)
            .await
            .unwrap()),
        frozen
    );
    assert_eq!(
        ids(store
            .list_accounts(
                &AccountFilter { currency: Some("EUR"), status: Some(AccountStatus::Frozen), ..Default::default() },
                None,
                100
            )
            .await
            .unwrap()),
        []
    );
    let active_usd = ids(store
        .list_accounts(
            &AccountFilter { currency: Some("USD"), status: Some(AccountStatus::Active), ..Default::default() },
            None,
            100,
        )
        .await
        .unwrap());
    assert_eq!(active_usd.len(), 5);
    assert!(active_usd.iter().all(|id| usd.contains(id) && !frozen.contains(id)));
    assert!(
        store
            .list_accounts(&AccountFilter { currency: Some("JPY"), ..Default::default() }, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.list_accounts(&Default::default(), None, 100).await.unwrap().len(), 10);
}

#[tokio::test]
async fn frozen_account_refuses_transfers_until_unfrozen() {
    let ledger = ledger().await;
    let (bank, wallet) = ledger.funded_wallet("alice", 1_000).await;
    let record = change(&ledger, wallet, StatusChange::Freeze, None).await.unwrap();
    assert_eq!((record.account.status, record.account.version), (AccountStatus::Frozen, 3));
    let accounts = ledger.all_accounts().await;
    assert_eq!(ledger.post(posted(wallet, bank, 1)).await.result, TransferResult::AccountFrozen, "no money out");
    assert_eq!(ledger.post(posted(bank, wallet, 1)).await.result, TransferResult::AccountFrozen, "no money in");
    assert_eq!(ledger.post(pending(wallet, bank, 1, None)).await.result, TransferResult::AccountFrozen);
    assert_eq!(ledger.all_accounts().await, accounts);

    let record = change(&ledger, wallet, StatusChange::Unfreeze, None).await.unwrap();
    assert_eq!((record.account.status, record.account.version), (AccountStatus::Active, 4));
    assert_eq!(ledger.post(posted(wallet, bank, 1)).await.result, TransferResult::Ok);
    assert_eq!(ledger.balance(wallet).await, 999);
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn freezing_twice_is_a_no_op() {
    let ledger = ledger().await;
    let (_bank, wallet) = ledger.funded_wallet("alice", 1_000).await;
    let first = change(&ledger, wallet, StatusChange::Freeze, None).await.unwrap();
    let counts = ledger.db.row_counts().await;
    let second = change(&ledger, wallet, StatusChange::Freeze, None).await.unwrap();
    assert_eq!(second.account, first.account, "same status, same version");
    assert_eq!(second.account.version, 3);
    assert_eq!(ledger.db.row_counts().await, counts, "no audit row or event for a no-op");
    // Unfreezing an active account is a no-op too.
    change(&ledger, wallet, StatusChange::Unfreeze, None).await.unwrap();
    let counts = ledger.db.row_counts().await;
    let again = change(&ledger, wallet, StatusChange::Unfreeze, None).await.unwrap();
    assert_eq!((again.account.status, again.account.version), (AccountStatus::Active, 4));
    assert_eq!(ledger.db.row_counts().await, counts);
}

#[tokio::test]
async fn closing_an_account_with_a_balance_or_a_hold_is_refused() {
    let ledger = ledger().await;
    let (bank, wallet) = ledger.funded_wallet("alice", 1_000).await;
    let counts = ledger.db.row_counts().await;
    let error = change(&ledger, wallet, StatusChange::Close, None).await.unwrap_err();
    assert!(matches!(error, StoreError::AccountNotEmpty(_)), "{error:?}");
    assert_eq!(error.code(), "account_not_empty");
    assert_eq!(ledger.db.row_counts().await, counts);
    assert_eq!((ledger.account(wallet).await.status, ledger.account(wallet).await.version), (AccountStatus::Active, 2));

    // Balance zero, but money is on its way in: still not empty.
    let shop = ledger.open("shop", "USD", BalanceRule::NoOverdraft).await;
    assert_eq!(ledger.post(pending(wallet, shop, 10, None)).await.result, TransferResult::Ok);
    assert_eq!(change(&ledger, shop, StatusChange::Close, None).await.unwrap_err().code(), "account_not_empty");
    // An unrestricted account that owes money is not empty either.
    assert_eq!(change(&ledger, bank, StatusChange::Close, None).await.unwrap_err().code(), "account_not_empty");
    assert_eq!(ledger.account(shop).await.status, AccountStatus::Active);
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn closed_account_refuses_transfers_and_cannot_be_reopened() {
    let ledger = ledger().await;
    let (bank, wallet) = ledger.funded_wallet("alice", 1_000).await;
    // Spend it all, then close.
    assert_eq!(ledger.post(posted(wallet, bank, 1_000)).await.result, TransferResult::Ok);
    let record = change(&ledger, wallet, StatusChange::Close, None).await.unwrap();
    assert_eq!((record.account.status, record.account.version), (AccountStatus::Closed, 4));
    let accounts = ledger.all_accounts().await;
    assert_eq!(ledger.post(posted(bank, wallet, 1)).await.result, TransferResult::AccountClosed);
    assert_eq!(ledger.post(posted(wallet, bank, 1)).await.result, TransferResult::AccountClosed);
    assert_eq!(ledger.all_accounts().await, accounts);

    let counts = ledger.db.row_counts().await;
    for (attempt, to) in [(StatusChange::Unfreeze, "active"), (StatusChange::Freeze, "frozen")] {
        let error = change(&ledger, wallet, attempt, None).await.unwrap_err();
        assert!(
            matches!(error, StoreError::StatusTransitionInvalid { from: "closed", to: t, .. } if t == to),
            "{error:?}"
        );
        assert_eq!(error.code(), "account_status_transition_invalid");
    }
    // Closing again is a no-op.
    assert_eq!(change(&ledger, wallet, StatusChange::Close, None).await.unwrap().account, record.account);
    assert_eq!(ledger.db.row_counts().await, counts);
    assert_eq!(ledger.account(wallet).await, record.account);
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn status_change_with_a_stale_expected_version_is_refused() {
    let ledger = ledger().await;
    let (_bank, wallet) = ledger.funded_wallet("alice", 1_000).await;
    let version = ledger.account(wallet).await.version;
    let counts = ledger.db.row_counts().await;
    let error = change(&ledger, wallet, StatusChange::Freeze, Some(version - 1)).await.unwrap_err();
    assert!(
        matches!(error, StoreError::VersionConflict { expected, actual } if expected == version - 1 && actual == version),
        "{error:?}"
    );
    assert_eq!(error.code(), "version_conflict");
    assert_eq!(ledger.db.row_counts().await, counts);
    assert_eq!(ledger.account(wallet).await.status, AccountStatus::Active);
    let record = change(&ledger, wallet, StatusChange::Freeze, Some(version)).await.unwrap();
    assert_eq!((record.account.status, record.account.version), (AccountStatus::Frozen, version + 1));
}

#[tokio::test]
async fn status_changes_write_audit_rows_and_events_with_the_actor() {
    let ledger = ledger().await;
    let wallet = ledger.open("alice", "USD", BalanceRule::NoOverdraft).await;
    let store = &ledger.db.store;
    let id = wallet.to_string();
    store.change_account_status(&id, StatusChange::Freeze, None, "ops:bob").await.unwrap();
    store.change_account_status("alice", StatusChange::Unfreeze, None, "ops:carol").await.unwrap();
    store.change_account_status(&id, StatusChange::Close, Some(3), "ops:dave").await.unwrap();

    let client = ledger.db.connect().await;
    let audit = client
        .query(
            "SELECT actor, action, entity_type, before->>'status', after->>'status', (after->>'version')::int8
             FROM audit_log WHERE entity_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .unwrap();
    let audit: Vec<(String, String, String, Option<String>, String, i64)> =
        audit.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))).collect();
    let row = |actor: &str, action: &str, before: Option<&str>, after: &str, version: i64| {
        (
            actor.to_owned(),
            action.to_owned(),
            "account".to_owned(),
            before.map(str::to_owned),
            after.to_owned(),
            version,
        )
    };
    assert_eq!(
        audit,
        [
            row(ACTOR, "account.create", None, "active", 1),
            row("ops:bob", "account.freeze", Some("active"), "frozen", 2),
            row("ops:carol", "account.unfreeze", Some("frozen"), "active", 3),
            row("ops:dave", "account.close", Some("active"), "closed", 4),
        ]
    );

    let events =
        client.query("SELECT seq, type, payload FROM events WHERE entity_id = $1 ORDER BY seq", &[&id]).await.unwrap();
    let types: Vec<String> = events.iter().map(|r| r.get(1)).collect();
    assert_eq!(types, ["account.created", "account.frozen", "account.unfrozen", "account.closed"]);
    let payloads: Vec<Value> = events.iter().map(|r| r.get(2)).collect();
    let afters: Vec<Value> = client
        .query("SELECT after FROM audit_log WHERE entity_id = $1 ORDER BY id", &[&id])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(payloads, afters, "each event carries the account as it is after the change");
    let seqs: Vec<i64> = events.iter().map(|r| r.get(0)).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "gap-free");
}
