//! Malformed and hostile input: refused with its exact code, and nothing written.

use crate::support::*;
use serde_json::json;
use tally_core::transfer::{METADATA_BYTES_MAX, REFERENCE_LEN_MAX, TIMEOUT_SECONDS_MAX};
use tally_core::{AMOUNT_MAX, AccountId, BalanceRule, TransferId, TransferKind, TransferRequest, TransferResult};
use tally_store::NewAccount;
use uuid::Uuid;

const SQL: &str = "'; DROP TABLE accounts; --";

/// A ledger with a funded wallet and an empty shop.
async fn wallet_and_shop() -> (Ledger, AccountId, AccountId) {
    let ledger = ledger().await;
    let (_bank, wallet) = ledger.funded_wallet("alice", 10_000).await;
    let shop = ledger.open("shop", "USD", BalanceRule::NoOverdraft).await;
    (ledger, wallet, shop)
}

/// Submits `request` alone, expects `expected`, and checks that no row was written and the id
/// stayed unused.
async fn refused(ledger: &Ledger, request: TransferRequest, expected: TransferResult) {
    let counts = ledger.db.row_counts().await;
    let accounts = ledger.all_accounts().await;
    let outcome = ledger.post(request.clone()).await;
    assert_eq!(outcome.result, expected, "{request:?}");
    assert_eq!(outcome.transfer, None);
    assert_eq!(ledger.db.row_counts().await, counts, "{} wrote rows", expected.code());
    assert_eq!(ledger.all_accounts().await, accounts);
    if !request.id.0.is_nil() {
        assert_eq!(ledger.db.store.journal_row(request.id.0).await.unwrap(), None, "the id stays unused");
    }
}

/// An error with its causes, e.g. the database's message behind "database error: db error".
fn explain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// JSON metadata whose compact serialization is exactly `bytes` long.
fn metadata_of(bytes: usize) -> serde_json::Value {
    let overhead = json!({ "blob": "" }).to_string().len();
    let metadata = json!({ "blob": "m".repeat(bytes - overhead) });
    assert_eq!(metadata.to_string().len(), bytes);
    metadata
}

#[tokio::test]
async fn nil_id_is_refused_with_id_invalid() {
    let (ledger, wallet, shop) = wallet_and_shop().await;
    let request = TransferRequest { id: TransferId(Uuid::nil()), ..posted(wallet, shop, 100) };
    refused(&ledger, request, TransferResult::IdInvalid).await;
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn zero_and_too_large_amounts_are_refused_with_amount_invalid() {
    let (ledger, wallet, shop) = wallet_and_shop().await;
    refused(&ledger, posted(wallet, shop, 0), TransferResult::AmountInvalid).await;
    refused(&ledger, posted(wallet, shop, AMOUNT_MAX + 1), TransferResult::AmountInvalid).await;
    refused(&ledger, posted(wallet, shop, -5), TransferResult::AmountInvalid).await;
    refused(&ledger, TransferRequest { amount: None, ..posted(wallet, shop, 1) }, TransferResult::AmountInvalid).await;
    let hold = pending(wallet, shop, 0, Some(60));
    refused(&ledger, hold, TransferResult::AmountInvalid).await;
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn same_account_on_both_sides_is_refused() {
    let (ledger, wallet, _shop) = wallet_and_shop().await;
    refused(&ledger, posted(wallet, wallet, 100), TransferResult::SameAccount).await;
    refused(&ledger, pending(wallet, wallet, 100, None), TransferResult::SameAccount).await;
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn missing_or_extra_accounts_are_refused() {
    let (ledger, wallet, shop) = wallet_and_shop().await;
    let no_credit = TransferRequest { credit_account_id: None, ..posted(wallet, shop, 100) };
    refused(&ledger, no_credit, TransferResult::AccountsRequired).await;
    let no_debit = TransferRequest { debit_account_id: None, ..pending(wallet, shop, 100, None) };
    refused(&ledger, no_debit, TransferResult::AccountsRequired).await;
    let neither = TransferRequest { debit_account_id: None, credit_account_id: None, ..posted(wallet, shop, 100) };
    refused(&ledger, neither, TransferResult::AccountsRequired).await;

    let hold = ledger.post(pending(wallet, shop, 100, None)).await.transfer.expect("hold");
    for kind in [TransferKind::PostPending, TransferKind::VoidPending] {
        let with_accounts = TransferRequest {
            debit_account_id: Some(wallet),
            credit_account_id: Some(shop),
            ..acting(kind, hold.id, None)
        };
        refused(&ledger, with_accounts, TransferResult::AccountsNotAllowed).await;
        let with_credit = TransferRequest { credit_account_id: Some(shop), ..acting(kind, hold.id, None) };
        refused(&ledger, with_credit, TransferResult::AccountsNotAllowed).await;
    }
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn timeouts_outside_a_pending_transfer_or_its_range_are_refused() {
    let (ledger, wallet, shop) = wallet_and_shop().await;
    let on_posted = TransferRequest { timeout_seconds: Some(60), ..posted(wallet, shop, 100) };
    refused(&ledger, on_posted, TransferResult::TimeoutInvalid).await;
    refused(&ledger, pending(wallet, shop, 100, Some(0)), TransferResult::TimeoutInvalid).await;
    refused(&ledger, pending(wallet, shop, 100, Some(TIMEOUT_SECONDS_MAX + 1)), TransferResult::TimeoutInvalid).await;
    refused(&ledger, pending(wallet, shop, 100, Some(u32::MAX)), TransferResult::TimeoutInvalid).await;
    // The bounds themselves are fine.
    for timeout in [1, TIMEOUT_SECONDS_MAX] {
        let outcome = ledger.post(pending(wallet, shop, 100, Some(timeout))).await;
        assert_eq!(outcome.result, TransferResult::Ok, "timeout {timeout}");
        assert_eq!(outcome.transfer.unwrap().timeout_seconds, Some(timeout));
    }
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn reference_longer_than_256_bytes_is_refused() {
    let (ledger, wallet, shop) = wallet_and_shop().await;
    let long = TransferRequest { reference: Some("r".repeat(REFERENCE_LEN_MAX + 1)), ..posted(wallet, shop, 100) };
    refused(&ledger, long, TransferResult::ReferenceTooLong).await;
    // Bytes, not characters: 129 two-byte characters are 258 bytes.
    let wide = TransferRequest { reference: Some("é".repeat(129)), ..posted(wallet, shop, 100) };
    refused(&ledger, wide, TransferResult::ReferenceTooLong).await;
    let exact = Some("r".repeat(REFERENCE_LEN_MAX));
    let outcome = ledger.post(TransferRequest { reference: exact.clone(), ..posted(wallet, shop, 100) }).await;
    assert_eq!(outcome.result, TransferResult::Ok);
    assert_eq!(outcome.transfer.unwrap().reference, exact);
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn metadata_larger_than_4096_bytes_is_refused() {
    let (ledger, wallet, shop) = wallet_and_shop().await;
    let large = TransferRequest { metadata: Some(metadata_of(METADATA_BYTES_MAX + 1)), ..posted(wallet, shop, 100) };
    refused(&ledger, large, TransferResult::MetadataTooLarge).await;
    let huge = TransferRequest { metadata: Some(json!({ "a": "x".repeat(100_000) })), ..posted(wallet, shop, 100) };
    refused(&ledger, huge, TransferResult::MetadataTooLarge).await;
    ledger.assert_consistent().await;
}

/// The limit is on the serialized metadata: an object of exactly the maximum is accepted.
#[tokio::test]
async fn metadata_of_exactly_4096_bytes_is_accepted() {
    let (ledger, wallet, shop) = wallet_and_shop().await;
    let metadata = Some(metadata_of(METADATA_BYTES_MAX));
    let request = TransferRequest { metadata: metadata.clone(), ..posted(wallet, shop, 100) };
    let outcome = ledger.try_post(request.clone()).await.map(|o| o.result);
    assert_eq!(outcome.map_err(|e| explain(&e)), Ok(TransferResult::Ok), "valid metadata of 4096 bytes");
    assert_eq!(ledger.db.store.transfer(request.id.0).await.unwrap().unwrap().metadata, metadata);
    ledger.assert_consistent().await;
}

/// Small metadata with many keys: far below the limit as compact JSON.
#[tokio::test]
async fn metadata_with_many_short_keys_below_the_limit_is_accepted() {
    let (ledger, wallet, shop) = wallet_and_shop().await;
    let object: serde_json::Map<String, serde_json::Value> = (0..360).map(|i| (format!("k{i:03}"), json!(i))).collect();
    let metadata = serde_json::Value::Object(object);
    let size = metadata.to_string().len();
    assert!(size < METADATA_BYTES_MAX - 200, "{size} bytes");
    let request = TransferRequest { metadata: Some(metadata.clone()), ..posted(wallet, shop, 100) };
    let outcome = ledger.try_post(request.clone()).await.map(|o| o.result);
    assert_eq!(outcome.map_err(|e| explain(&e)), Ok(TransferResult::Ok), "valid metadata of {size} bytes");
    assert_eq!(ledger.db.store.transfer(request.id.0).await.unwrap().unwrap().metadata, Some(metadata));
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn linked_chain_left_open_is_refused_and_writes_nothing() {
    let (ledger, wallet, shop) = wallet_and_shop().await;
    refused(&ledger, linked(posted(wallet, shop, 100)), TransferResult::LinkedChainOpen).await;
    let counts = ledger.db.row_counts().await;
    let (a, b) = (linked(posted(wallet, shop, 1)), linked(posted(wallet, shop, 2)));
    let results = ledger.post_all(vec![a.clone(), b.clone()]).await;
    assert_eq!(results, [TransferResult::LinkedChainFailed, TransferResult::LinkedChainOpen]);
    assert_eq!(ledger.db.row_counts().await, counts);
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn a_refused_id_can_be_reused_by_the_corrected_request() {
    let (ledger, wallet, shop) = wallet_and_shop().await;
    let request = posted(wallet, shop, 0);
    refused(&ledger, request.clone(), TransferResult::AmountInvalid).await;
    let corrected = TransferRequest { amount: Some(100), ..request };
    assert_eq!(ledger.post(corrected).await.result, TransferResult::Ok);
    assert_eq!(ledger.balance(shop).await, 100);
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn sql_looking_reference_and_metadata_are_stored_verbatim() {
    let (ledger, wallet, shop) = wallet_and_shop().await;
    let reference = format!("{SQL} \" \\ $1 %s {{}} ' OR 1=1; --");
    let metadata = json!({
        "note": "'); DELETE FROM transfers; --",
        SQL: [SQL, "\"; TRUNCATE events CASCADE; --", "$$ LANGUAGE plpgsql $$"],
        "nested": { "x' OR '1'='1": "1; SELECT pg_sleep(10)" },
    });
    let request = TransferRequest {
        reference: Some(reference.clone()),
        metadata: Some(metadata.clone()),
        ..posted(wallet, shop, 100)
    };
    let outcome = ledger.post(request.clone()).await;
    assert_eq!(outcome.result, TransferResult::Ok);
    let stored = ledger.db.store.transfer(request.id.0).await.unwrap().unwrap();
    assert_eq!((stored.reference.as_ref(), stored.metadata.as_ref()), (Some(&reference), Some(&metadata)));
    let client = ledger.db.connect().await;
    let row =
        client.query_one("SELECT reference, metadata FROM transfers WHERE id = $1", &[&request.id.0]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), reference, "verbatim in the database");
    assert_eq!(row.get::<_, serde_json::Value>(1), metadata);
    assert_tables_exist(&ledger).await;
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn sql_looking_currency_is_a_recorded_currency_mismatch() {
    let (ledger, wallet, shop) = wallet_and_shop().await;
    let currency = format!("USD{SQL}");
    let request = TransferRequest { currency: Some(currency.clone()), ..posted(wallet, shop, 100) };
    let accounts = ledger.all_accounts().await;
    assert_eq!(ledger.post(request.clone()).await.result, TransferResult::CurrencyMismatch);
    assert_eq!(ledger.all_accounts().await, accounts);
    let client = ledger.db.connect().await;
    let row = client
        .query_one("SELECT status, result, request->>'currency' FROM transfers WHERE id = $1", &[&request.id.0])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "rejected");
    assert_eq!(row.get::<_, String>(1), "currency_mismatch");
    assert_eq!(row.get::<_, String>(2), currency, "the request is recorded verbatim");
    // Neither a currency lookup nor an account lookup by code is an injection point.
    assert_eq!(ledger.db.store.currency_scale(SQL).await.unwrap_err().code(), "currency_not_found");
    assert_eq!(ledger.db.store.account(SQL).await.unwrap(), None);
    assert_eq!(ledger.db.store.history(SQL, None, 10).await.unwrap_err().code(), "account_not_found");
    assert_tables_exist(&ledger).await;
    ledger.assert_consistent().await;
}

async fn assert_tables_exist(ledger: &Ledger) {
    let client = ledger.db.connect().await;
    for table in ["accounts", "transfers", "audit_log", "events", "event_sequence", "currencies"] {
        let exists: bool =
            client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("public.{table}")]).await.unwrap().get(0);
        assert!(exists, "table {table} is gone");
    }
    // The ledger tables still hold their rows (the API's key tables are empty in these tests).
    let counts = ledger.db.row_counts().await;
    let ledger_tables = counts.iter().filter(|(table, _)| !matches!(table.as_str(), "api_keys" | "idempotency_keys"));
    assert!(ledger_tables.clone().count() == 5 && ledger_tables.clone().all(|(_, n)| *n > 0), "{counts:?}");
}

// ---------------------------------------------------------------------------------------------
// Accounts.
// ---------------------------------------------------------------------------------------------

fn account(code: Option<&str>, currency: &str) -> NewAccount {
    NewAccount {
        ledger: tally_core::LedgerId::DEFAULT,
        id: None,
        code: code.map(str::to_owned),
        currency: currency.into(),
        rule: BalanceRule::NoOverdraft,
        metadata: None,
    }
}

/// Expects `new` to be refused with `code`, and nothing written.
async fn account_refused(ledger: &Ledger, new: NewAccount, code: &str) {
    let counts = ledger.db.row_counts().await;
    let error = ledger.db.store.create_account(&new, ACTOR).await.expect_err("refused");
    assert_eq!(error.code(), code, "{new:?}: {error}");
    assert_eq!(ledger.db.row_counts().await, counts, "{new:?} wrote rows");
}

#[tokio::test]
async fn malformed_account_codes_are_refused() {
    let ledger = ledger().await;
    let uuid = Uuid::new_v4();
    let codes = [
        "alice smith".to_owned(),
        " alice".to_owned(),
        "alice'".to_owned(),
        "\"alice\"".to_owned(),
        SQL.to_owned(),
        "a".repeat(129),
        String::new(),
        "-alice".to_owned(),
        "ålice".to_owned(),
        "alice\n".to_owned(),
        uuid.to_string(),
        uuid.simple().to_string(),
        uuid.to_string().to_uppercase(),
        uuid.urn().to_string(),
    ];
    for code in codes {
        account_refused(&ledger, account(Some(&code), "USD"), "invalid_input").await;
        assert_eq!(ledger.db.store.account(&code).await.unwrap(), None);
    }
    // The longest code is fine.
    let longest = "a".repeat(128);
    let (record, created) = ledger.db.store.create_account(&account(Some(&longest), "USD"), ACTOR).await.unwrap();
    assert!(created);
    assert_eq!(record.code, Some(longest));
}

#[tokio::test]
async fn malformed_account_currencies_are_refused() {
    let ledger = ledger().await;
    for currency in ["usd", "US", "Usd", "", "USD ", "U$D", SQL] {
        account_refused(&ledger, account(Some("alice"), currency), "invalid_input").await;
    }
    // Well formed but not registered.
    account_refused(&ledger, account(Some("alice"), "ABC"), "currency_not_found").await;
}

#[tokio::test]
async fn oversized_account_metadata_and_nil_id_are_refused() {
    let ledger = ledger().await;
    let large = NewAccount {
        ledger: tally_core::LedgerId::DEFAULT,
        metadata: Some(metadata_of(METADATA_BYTES_MAX + 1)),
        ..account(Some("alice"), "USD")
    };
    account_refused(&ledger, large, "invalid_input").await;
    let nil = NewAccount {
        ledger: tally_core::LedgerId::DEFAULT,
        id: Some(AccountId(Uuid::nil())),
        ..account(Some("alice"), "USD")
    };
    account_refused(&ledger, nil, "invalid_input").await;
    let overdraft = NewAccount {
        ledger: tally_core::LedgerId::DEFAULT,
        rule: BalanceRule::OverdraftLimit(AMOUNT_MAX),
        ..account(Some("alice"), "USD")
    };
    let (record, _) = ledger.db.store.create_account(&overdraft, ACTOR).await.expect("the largest limit is fine");
    assert_eq!(record.account.rule, BalanceRule::OverdraftLimit(AMOUNT_MAX));
}

#[tokio::test]
async fn account_metadata_of_exactly_4096_bytes_is_accepted() {
    let ledger = ledger().await;
    let metadata = Some(metadata_of(METADATA_BYTES_MAX));
    let new = NewAccount {
        ledger: tally_core::LedgerId::DEFAULT,
        metadata: metadata.clone(),
        ..account(Some("alice"), "USD")
    };
    let created = ledger.db.store.create_account(&new, ACTOR).await.map(|(record, _)| record.metadata);
    let created = created.map(|m| m == metadata).map_err(|e| explain(&e));
    assert_eq!(created, Ok(true), "valid account metadata of 4096 bytes, stored verbatim");
}

// ---------------------------------------------------------------------------------------------
// Amount strings.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn over_precise_amount_for_jpy_is_refused_before_the_engine() {
    let ledger = ledger().await;
    let counts = ledger.db.row_counts().await;
    let scale = ledger.db.store.currency_scale("JPY").await.unwrap();
    assert_eq!(scale, 0);
    let error = tally_core::parse_amount("1.5", scale).unwrap_err();
    assert_eq!(error.code(), "amount_too_many_decimals");
    assert_eq!(tally_core::parse_amount("15", scale), Ok(15));
    assert_eq!(tally_core::parse_amount("1.5", ledger.db.store.currency_scale("USD").await.unwrap()), Ok(150));
    assert_eq!(ledger.db.row_counts().await, counts);
}
