//! Transfers end to end: posting, every result code, replays, holds, reversals, chains.

use crate::support::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;
use tally_core::{
    AMOUNT_MAX, AccountId, BalanceRule, TransferId, TransferKind, TransferRequest, TransferResult, TransferStatus,
};
use tally_engine::EngineConfig;
use tally_store::{Direction, JournalRow, StatusChange};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

#[tokio::test]
async fn posts_a_transfer_and_writes_journal_audit_and_event() {
    let ledger = ledger().await;
    let (bank, wallet) = ledger.funded_wallet("alice", 10_000).await;
    let shop = ledger.open("shop", "USD", BalanceRule::NoOverdraft).await;
    let outcome = ledger.post(posted(wallet, shop, 1_234)).await;
    assert_eq!(outcome.result, TransferResult::Ok);
    let transfer = outcome.transfer.expect("applied transfer is returned");
    assert_eq!(transfer.status, TransferStatus::Posted);
    assert_eq!(ledger.balance(wallet).await, 10_000 - 1_234);
    assert_eq!(ledger.balance(shop).await, 1_234);
    assert_eq!(ledger.balance(bank).await, -10_000);
    let client = ledger.db.connect().await;
    // The journal row is the transfer's own audit record; its batch has one audit row.
    let row =
        client.query_one("SELECT actor, batch_id::text FROM transfers WHERE id = $1", &[&transfer.id.0]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), ACTOR);
    let batch_id: String = row.get(1);
    let audit = client
        .query_one(
            "SELECT actor, action, after FROM audit_log WHERE entity_type = 'batch' AND entity_id = $1",
            &[&batch_id],
        )
        .await
        .unwrap();
    assert_eq!((audit.get::<_, String>(0), audit.get::<_, String>(1)), (ACTOR.to_owned(), "transfer.batch".to_owned()));
    assert_eq!(audit.get::<_, serde_json::Value>(2)["applied"], 1);
    let event = client
        .query_one("SELECT type, payload IS NULL FROM events WHERE entity_id = $1", &[&transfer.id.to_string()])
        .await
        .unwrap();
    assert_eq!((event.get::<_, String>(0), event.get::<_, bool>(1)), ("transfer.posted".to_owned(), true));
    ledger.assert_consistent().await;
}

// ---------------------------------------------------------------------------------------------
// Every result code, produced through the engine.
// ---------------------------------------------------------------------------------------------

/// The accounts every result-code scenario starts with.
struct Fixture {
    bank: AccountId,
    /// No overdraft, funded with 1,000 from `bank`.
    wallet: AccountId,
    /// No overdraft, empty.
    shop: AccountId,
    /// No overdraft, EUR, empty.
    euro: AccountId,
    /// Overdraft limit 500, empty.
    line: AccountId,
}

async fn fixture(ledger: &Ledger) -> Fixture {
    let (bank, wallet) = ledger.funded_wallet("wallet", 1_000).await;
    Fixture {
        bank,
        wallet,
        shop: ledger.open("shop", "USD", BalanceRule::NoOverdraft).await,
        euro: ledger.open("euro", "EUR", BalanceRule::NoOverdraft).await,
        line: ledger.open("line", "USD", BalanceRule::OverdraftLimit(500)).await,
    }
}

async fn ok(ledger: &Ledger, request: TransferRequest) -> tally_core::Transfer {
    let outcome = ledger.post(request).await;
    assert_eq!(outcome.result, TransferResult::Ok, "setup transfer refused");
    outcome.transfer.expect("an applied transfer is returned")
}

async fn change_status(ledger: &Ledger, account: AccountId, change: StatusChange) {
    ledger.db.store.change_account_status(&account.to_string(), change, None, ACTOR).await.expect("status change");
}

/// Sets up a ledger in which `batch` produces `code` (among the expected results).
async fn scenario(code: TransferResult) -> (Ledger, Fixture, Vec<TransferRequest>, Vec<TransferResult>) {
    use TransferResult as R;
    let ledger = ledger().await;
    let f = fixture(&ledger).await;
    let (wallet, shop) = (f.wallet, f.shop);
    let (batch, expected) = match code {
        R::Ok => (vec![posted(wallet, shop, 100)], vec![R::Ok]),
        R::LinkedChainFailed => {
            // The second member needs the first member's money, which is rolled back with it.
            (vec![linked(posted(wallet, shop, 100)), posted(shop, f.bank, 101)], vec![code, R::InsufficientFunds])
        }
        R::LinkedChainOpen => (vec![linked(posted(wallet, shop, 100))], vec![code]),
        R::IdInvalid => {
            (vec![TransferRequest { id: TransferId(Uuid::nil()), ..posted(wallet, shop, 100) }], vec![code])
        }
        R::AccountsRequired => {
            (vec![TransferRequest { credit_account_id: None, ..posted(wallet, shop, 100) }], vec![code])
        }
        R::AccountsNotAllowed => {
            let hold = ok(&ledger, pending(wallet, shop, 100, None)).await;
            let request = acting(TransferKind::PostPending, hold.id, None);
            (vec![TransferRequest { debit_account_id: Some(wallet), ..request }], vec![code])
        }
        R::RelatedIdRequired => {
            let request = acting(TransferKind::PostPending, new_id(), None);
            (vec![TransferRequest { related_id: None, ..request }], vec![code])
        }
        R::RelatedIdNotAllowed => {
            let earlier = ok(&ledger, posted(wallet, shop, 10)).await;
            (vec![TransferRequest { related_id: Some(earlier.id), ..posted(wallet, shop, 100) }], vec![code])
        }
        R::TimeoutInvalid => {
            (vec![TransferRequest { timeout_seconds: Some(60), ..posted(wallet, shop, 100) }], vec![code])
        }
        R::AmountInvalid => (vec![posted(wallet, shop, 0)], vec![code]),
        R::SameAccount => (vec![posted(wallet, wallet, 100)], vec![code]),
        R::ReferenceTooLong => {
            let reference = Some("r".repeat(tally_core::transfer::REFERENCE_LEN_MAX + 1));
            (vec![TransferRequest { reference, ..posted(wallet, shop, 100) }], vec![code])
        }
        R::MetadataTooLarge => {
            let metadata = Some(json!({ "blob": "m".repeat(tally_core::transfer::METADATA_BYTES_MAX) }));
            (vec![TransferRequest { metadata, ..posted(wallet, shop, 100) }], vec![code])
        }
        R::ExistsWithDifferentFields => {
            let request = posted(wallet, shop, 100);
            ok(&ledger, request.clone()).await;
            (vec![TransferRequest { amount: Some(101), ..request }], vec![code])
        }
        R::Exists => {
            let request = posted(wallet, shop, 100);
            ok(&ledger, request.clone()).await;
            (vec![request], vec![code])
        }
        R::AccountNotFound => (vec![posted(wallet, AccountId(Uuid::now_v7()), 100)], vec![code]),
        R::CurrencyMismatch => {
            // Accounts in two currencies; and a request currency other than the accounts'.
            let eur_request = TransferRequest { currency: Some("EUR".into()), ..posted(wallet, shop, 100) };
            (vec![posted(wallet, f.euro, 100), eur_request], vec![code, code])
        }
        R::LedgerMismatch => {
            // Same currency, other ledger: the ledger is checked first.
            let other = ledger.make_ledger("other").await;
            let elsewhere = ledger.open_in(other, "elsewhere", "USD", BalanceRule::NoOverdraft).await;
            let elsewhere_euro = ledger.open_in(other, "elsewhere-euro", "EUR", BalanceRule::NoOverdraft).await;
            (vec![posted(wallet, elsewhere, 100), posted(wallet, elsewhere_euro, 100)], vec![code, code])
        }
        R::PendingNotFound => (vec![acting(TransferKind::PostPending, new_id(), None)], vec![code]),
        R::NotPending => {
            let plain = ok(&ledger, posted(wallet, shop, 100)).await;
            (vec![acting(TransferKind::PostPending, plain.id, None)], vec![code])
        }
        R::PendingAlreadyPosted => {
            let hold = ok(&ledger, pending(wallet, shop, 100, None)).await;
            ok(&ledger, acting(TransferKind::PostPending, hold.id, None)).await;
            (vec![acting(TransferKind::VoidPending, hold.id, None)], vec![code])
        }
        R::PendingAlreadyVoided => {
            let hold = ok(&ledger, pending(wallet, shop, 100, None)).await;
            ok(&ledger, acting(TransferKind::VoidPending, hold.id, None)).await;
            (vec![acting(TransferKind::PostPending, hold.id, None)], vec![code])
        }
        R::PendingExpired => {
            let hold = ok(&ledger, pending(wallet, shop, 100, Some(1))).await;
            tokio::time::sleep(Duration::from_millis(1_100)).await;
            (vec![acting(TransferKind::PostPending, hold.id, None)], vec![code])
        }
        R::AmountExceedsPending => {
            let hold = ok(&ledger, pending(wallet, shop, 300, None)).await;
            (vec![acting(TransferKind::PostPending, hold.id, Some(301))], vec![code])
        }
        R::TransferNotFound => (vec![acting(TransferKind::Reversal, new_id(), None)], vec![code]),
        R::ReversalNotAllowed => {
            let hold = ok(&ledger, pending(wallet, shop, 100, None)).await;
            (vec![acting(TransferKind::Reversal, hold.id, None)], vec![code])
        }
        R::AlreadyReversed => {
            let original = ok(&ledger, posted(wallet, shop, 100)).await;
            ok(&ledger, acting(TransferKind::Reversal, original.id, None)).await;
            (vec![acting(TransferKind::Reversal, original.id, None)], vec![code])
        }
        R::AccountClosed => {
            let closed = ledger.open("closed", "USD", BalanceRule::NoOverdraft).await;
            change_status(&ledger, closed, StatusChange::Close).await;
            (vec![posted(wallet, closed, 100)], vec![code])
        }
        R::AccountFrozen => {
            change_status(&ledger, shop, StatusChange::Freeze).await;
            (vec![posted(wallet, shop, 100)], vec![code])
        }
        R::VersionConflict => {
            let version = ledger.account(wallet).await.version;
            let request = posted(wallet, shop, 100);
            (vec![TransferRequest { expected_debit_version: Some(version + 1), ..request }], vec![code])
        }
        R::Overflow => {
            let half = AMOUNT_MAX / 2 + 1;
            let first = ledger.open("source-1", "USD", BalanceRule::Unrestricted).await;
            let second = ledger.open("source-2", "USD", BalanceRule::Unrestricted).await;
            let sink = ledger.open("sink", "USD", BalanceRule::Unrestricted).await;
            ok(&ledger, posted(first, sink, half)).await;
            (vec![posted(second, sink, half)], vec![code])
        }
        R::InsufficientFunds => (vec![posted(wallet, shop, 1_001)], vec![code]),
        R::OverdraftLimitExceeded => (vec![posted(f.line, shop, 501)], vec![code]),
    };
    assert!(expected.contains(&code), "the scenario for {} does not expect it", code.code());
    (ledger, f, batch, expected)
}

/// Produces `code` through the engine and checks what was (not) written.
async fn produces(code: TransferResult) {
    let (ledger, f, batch, expected) = scenario(code).await;
    let accounts_before = ledger.all_accounts().await;
    let counts_before = ledger.db.row_counts().await;
    let outcomes = ledger.post_batch(batch.clone()).await;
    let results: Vec<TransferResult> = outcomes.iter().map(|o| o.result).collect();
    assert_eq!(results, expected, "results for the {} scenario", code.code());
    let accounts_after = ledger.all_accounts().await;
    let counts_after = ledger.db.row_counts().await;

    if code == TransferResult::Ok {
        let transfer = outcomes[0].transfer.clone().expect("an applied transfer is returned");
        assert_eq!(ledger.db.store.transfer(transfer.id.0).await.unwrap(), Some(transfer.clone()));
        let (wallet, shop) = (ledger.account(f.wallet).await, ledger.account(f.shop).await);
        assert_eq!((wallet.balance(), wallet.version), (900, 3));
        assert_eq!((shop.balance(), shop.version), (100, 2));
        let changed = accounts_before.iter().zip(&accounts_after).filter(|(b, a)| b != a).count();
        assert_eq!(changed, 2, "exactly the two accounts of the transfer changed");
        ledger.assert_consistent().await;
        return;
    }

    assert_eq!(accounts_after, accounts_before, "{} moved money or changed a version", code.code());
    let mut recorded = 0;
    for (request, outcome) in batch.iter().zip(&outcomes) {
        let row = ledger.db.store.journal_row(request.id.0).await.unwrap();
        match outcome.result {
            result if result.is_validation() => {
                assert_eq!(row, None, "{}: a validation failure leaves the id unused", result.code());
                assert_eq!(outcome.transfer, None);
            }
            TransferResult::Exists => {
                let Some(JournalRow::Applied { transfer, .. }) = row else { panic!("exists without a transfer") };
                assert_eq!(outcome.transfer.as_ref(), Some(&transfer));
            }
            TransferResult::ExistsWithDifferentFields => {
                let Some(JournalRow::Applied { transfer, .. }) = row else { panic!("no transfer under the id") };
                assert_ne!(transfer.amount, request.amount.unwrap(), "the stored transfer was not replaced");
                assert_eq!(outcome.transfer, None);
            }
            result => {
                assert!(result.is_recorded_rejection(), "{}", result.code());
                let Some(JournalRow::Rejected { rejection, actor, .. }) = row else {
                    panic!("{}: the rejection was not recorded", result.code())
                };
                assert_eq!((rejection.result, &rejection.request, actor.as_str()), (result, request, ACTOR));
                assert_eq!(outcome.transfer, None);
                recorded += 1;
            }
        }
    }
    let grown = |table: &str| -> i64 {
        let count = |counts: &[(String, i64)]| counts.iter().find(|(t, _)| t == table).unwrap().1;
        count(&counts_after) - count(&counts_before)
    };
    // A recorded rejection is a journal row (its own audit record, with the actor) plus the one
    // audit row of its batch, never an event.
    assert_eq!(grown("transfers"), recorded, "journal rows written for {}", code.code());
    assert_eq!(grown("audit_log"), i64::from(recorded > 0), "batch audit rows written for {}", code.code());
    assert_eq!((grown("events"), grown("accounts"), grown("currencies")), (0, 0, 0));
    ledger.assert_consistent().await;
}

macro_rules! result_code_tests {
    ($($name:ident => $code:ident,)*) => {
        /// Every code some test below produces through the engine.
        const COVERED: &[TransferResult] = &[$(TransferResult::$code),*];
        $(
            #[tokio::test]
            async fn $name() {
                produces(TransferResult::$code).await;
            }
        )*
    };
}

result_code_tests! {
    result_ok_moves_money_between_the_two_accounts => Ok,
    result_linked_chain_failed_rolls_back_the_chain => LinkedChainFailed,
    result_linked_chain_open_writes_nothing => LinkedChainOpen,
    result_id_invalid_for_a_nil_id_writes_nothing => IdInvalid,
    result_accounts_required_writes_nothing => AccountsRequired,
    result_accounts_not_allowed_writes_nothing => AccountsNotAllowed,
    result_related_id_required_writes_nothing => RelatedIdRequired,
    result_related_id_not_allowed_writes_nothing => RelatedIdNotAllowed,
    result_timeout_invalid_writes_nothing => TimeoutInvalid,
    result_amount_invalid_writes_nothing => AmountInvalid,
    result_same_account_writes_nothing => SameAccount,
    result_reference_too_long_writes_nothing => ReferenceTooLong,
    result_metadata_too_large_writes_nothing => MetadataTooLarge,
    result_exists_with_different_fields_moves_nothing => ExistsWithDifferentFields,
    result_exists_moves_nothing => Exists,
    result_account_not_found_is_recorded_and_moves_nothing => AccountNotFound,
    result_currency_mismatch_is_recorded_and_moves_nothing => CurrencyMismatch,
    result_ledger_mismatch_is_recorded_and_moves_nothing => LedgerMismatch,
    result_pending_not_found_is_recorded_and_moves_nothing => PendingNotFound,
    result_not_pending_is_recorded_and_moves_nothing => NotPending,
    result_pending_already_posted_is_recorded_and_moves_nothing => PendingAlreadyPosted,
    result_pending_already_voided_is_recorded_and_moves_nothing => PendingAlreadyVoided,
    result_pending_expired_is_recorded_and_moves_nothing => PendingExpired,
    result_amount_exceeds_pending_is_recorded_and_moves_nothing => AmountExceedsPending,
    result_transfer_not_found_is_recorded_and_moves_nothing => TransferNotFound,
    result_reversal_not_allowed_is_recorded_and_moves_nothing => ReversalNotAllowed,
    result_already_reversed_is_recorded_and_moves_nothing => AlreadyReversed,
    result_account_closed_is_recorded_and_moves_nothing => AccountClosed,
    result_account_frozen_is_recorded_and_moves_nothing => AccountFrozen,
    result_version_conflict_is_recorded_and_moves_nothing => VersionConflict,
    result_overflow_is_recorded_and_moves_nothing => Overflow,
    result_insufficient_funds_is_recorded_and_moves_nothing => InsufficientFunds,
    result_overdraft_limit_exceeded_is_recorded_and_moves_nothing => OverdraftLimitExceeded,
}

#[test]
fn every_result_code_has_a_test_that_produces_it() {
    let covered: BTreeSet<TransferResult> = COVERED.iter().copied().collect();
    assert_eq!(covered.len(), COVERED.len(), "a code is listed twice");
    let all: BTreeSet<TransferResult> = TransferResult::ALL.iter().copied().collect();
    let missing: Vec<&str> = all.difference(&covered).map(|r| r.code()).collect();
    assert!(missing.is_empty(), "result codes without a test: {missing:?}");
    assert_eq!(covered, all);
}

// ---------------------------------------------------------------------------------------------
// Idempotent replays.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn replay_with_same_fields_returns_exists_and_writes_nothing() {
    let ledger = ledger().await;
    let (_bank, wallet) = ledger.funded_wallet("alice", 10_000).await;
    let shop = ledger.open("shop", "USD", BalanceRule::NoOverdraft).await;
    let request = TransferRequest {
        reference: Some("order-17".into()),
        metadata: Some(json!({"order": 17, "lines": [1.5, 2], "note": "first"})),
        currency: Some("USD".into()),
        ..posted(wallet, shop, 250)
    };
    let first = ledger.post(request.clone()).await;
    assert_eq!(first.result, TransferResult::Ok);
    let original = first.transfer.expect("applied");
    let counts = ledger.db.row_counts().await;
    let accounts = ledger.all_accounts().await;

    let replay = ledger.post(request.clone()).await;
    assert_eq!(replay.result, TransferResult::Exists);
    assert_eq!(replay.transfer.as_ref(), Some(&original), "the replay returns the original transfer");
    // A replay inside a batch, next to a new transfer, is also only a replay.
    let outcomes = ledger.post_batch(vec![request.clone(), request.clone()]).await;
    assert!(outcomes.iter().all(|o| o.result == TransferResult::Exists && o.transfer.as_ref() == Some(&original)));
    assert_eq!(ledger.db.row_counts().await, counts, "a replay writes no journal, audit or event row");
    assert_eq!(ledger.all_accounts().await, accounts, "a replay changes no balance or version");
    assert_eq!(ledger.balance(wallet).await, 10_000 - 250);
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn replay_with_another_amount_returns_exists_with_different_fields_and_writes_nothing() {
    let ledger = ledger().await;
    let (_bank, wallet) = ledger.funded_wallet("alice", 10_000).await;
    let shop = ledger.open("shop", "USD", BalanceRule::NoOverdraft).await;
    let request = posted(wallet, shop, 250);
    let original = ok(&ledger, request.clone()).await;
    let counts = ledger.db.row_counts().await;
    let accounts = ledger.all_accounts().await;

    let variants = [
        TransferRequest { amount: Some(251), ..request.clone() },
        TransferRequest { reference: Some("other".into()), ..request.clone() },
        TransferRequest { credit_account_id: Some(wallet), debit_account_id: Some(shop), ..request.clone() },
        TransferRequest { kind: TransferKind::Pending, ..request.clone() },
    ];
    for variant in variants {
        let outcome = ledger.post(variant.clone()).await;
        assert_eq!(outcome.result, TransferResult::ExistsWithDifferentFields, "{variant:?}");
        assert_eq!(outcome.transfer, None);
    }
    assert_eq!(ledger.db.row_counts().await, counts);
    assert_eq!(ledger.all_accounts().await, accounts);
    assert_eq!(ledger.db.store.transfer(request.id.0).await.unwrap(), Some(original));
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn recorded_insufficient_funds_is_replayed_after_funding_and_moves_nothing() {
    let ledger = ledger().await;
    let (bank, wallet) = ledger.funded_wallet("alice", 100).await;
    let shop = ledger.open("shop", "USD", BalanceRule::NoOverdraft).await;
    let request = posted(wallet, shop, 500);
    assert_eq!(ledger.post(request.clone()).await.result, TransferResult::InsufficientFunds);
    let client = ledger.db.connect().await;
    let row = client
        .query_one("SELECT status, result, amount IS NULL, actor FROM transfers WHERE id = $1", &[&request.id.0])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "rejected");
    assert_eq!(row.get::<_, String>(1), "insufficient_funds");
    assert!(row.get::<_, bool>(2), "a rejection carries no amount");
    assert_eq!(row.get::<_, String>(3), ACTOR);

    // Now the money is there, but the id was decided: the replay answers as before.
    ok(&ledger, posted(bank, wallet, 1_000)).await;
    let counts = ledger.db.row_counts().await;
    let accounts = ledger.all_accounts().await;
    let replay = ledger.post(request.clone()).await;
    assert_eq!((replay.result, replay.transfer), (TransferResult::InsufficientFunds, None));
    assert_eq!(ledger.db.row_counts().await, counts);
    assert_eq!(ledger.all_accounts().await, accounts);
    assert_eq!((ledger.balance(wallet).await, ledger.balance(shop).await), (1_100, 0));
    // The same id with other fields is a different request.
    let other = ledger.post(TransferRequest { amount: Some(400), ..request }).await;
    assert_eq!(other.result, TransferResult::ExistsWithDifferentFields);
    assert_eq!(ledger.db.row_counts().await, counts);
    ledger.assert_consistent().await;
}

// ---------------------------------------------------------------------------------------------
// Holds: pending, post, void, expiry.
// ---------------------------------------------------------------------------------------------

/// A wallet funded with 1,000, a shop, and a hold of 300 from the wallet to the shop.
async fn held(ledger: &Ledger) -> (AccountId, AccountId, tally_core::Transfer) {
    let (_bank, wallet) = ledger.funded_wallet("alice", 1_000).await;
    let shop = ledger.open("shop", "USD", BalanceRule::NoOverdraft).await;
    let hold = ok(ledger, pending(wallet, shop, 300, None)).await;
    (wallet, shop, hold)
}

async fn status_in_db(ledger: &Ledger, id: TransferId) -> String {
    let client = ledger.db.connect().await;
    client.query_one("SELECT status FROM transfers WHERE id = $1", &[&id.0]).await.unwrap().get(0)
}

#[tokio::test]
async fn hold_reduces_available_but_not_balance() {
    let ledger = ledger().await;
    let (wallet, shop, hold) = held(&ledger).await;
    assert_eq!((hold.status, hold.completed_at, hold.expires_at), (TransferStatus::Pending, None, None));
    let w = ledger.account(wallet).await;
    assert_eq!((w.balance(), w.available(), w.debits_pending), (1_000, 700, 300));
    let s = ledger.account(shop).await;
    assert_eq!((s.balance(), s.available(), s.credits_pending), (0, 0, 300));
    // The hold is reserved: only the rest can be spent.
    assert_eq!(ledger.post(posted(wallet, shop, 701)).await.result, TransferResult::InsufficientFunds);
    assert_eq!(ledger.post(pending(wallet, shop, 701, None)).await.result, TransferResult::InsufficientFunds);
    assert_eq!(ledger.post(posted(wallet, shop, 700)).await.result, TransferResult::Ok);
    assert_eq!(status_in_db(&ledger, hold.id).await, "pending");
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn full_post_moves_the_held_amount() {
    let ledger = ledger().await;
    let (wallet, shop, hold) = held(&ledger).await;
    let post = ok(&ledger, acting(TransferKind::PostPending, hold.id, None)).await;
    assert_eq!((post.amount, post.debit_account_id, post.credit_account_id), (300, wallet, shop));
    assert_eq!(post.related_id, Some(hold.id));
    let w = ledger.account(wallet).await;
    assert_eq!((w.balance(), w.available(), w.debits_pending), (700, 700, 0));
    let s = ledger.account(shop).await;
    assert_eq!((s.balance(), s.credits_pending), (300, 0));
    assert_eq!(status_in_db(&ledger, hold.id).await, "posted");
    let stored = ledger.db.store.transfer(hold.id.0).await.unwrap().unwrap();
    assert_eq!(stored.status, TransferStatus::Posted);
    assert!(stored.completed_at.is_some());
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn partial_post_releases_the_rest_of_the_hold() {
    let ledger = ledger().await;
    let (wallet, shop, hold) = held(&ledger).await;
    let post = ok(&ledger, acting(TransferKind::PostPending, hold.id, Some(120))).await;
    assert_eq!(post.amount, 120);
    let w = ledger.account(wallet).await;
    assert_eq!((w.balance(), w.available(), w.debits_pending), (880, 880, 0));
    let s = ledger.account(shop).await;
    assert_eq!((s.balance(), s.credits_pending), (120, 0));
    assert_eq!(status_in_db(&ledger, hold.id).await, "posted");
    // The hold is resolved: the released rest cannot be captured later.
    let again = ledger.post(acting(TransferKind::PostPending, hold.id, Some(180))).await;
    assert_eq!(again.result, TransferResult::PendingAlreadyPosted);
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn void_releases_the_whole_hold() {
    let ledger = ledger().await;
    let (wallet, shop, hold) = held(&ledger).await;
    let void = ok(&ledger, acting(TransferKind::VoidPending, hold.id, None)).await;
    assert_eq!((void.status, void.amount), (TransferStatus::Voided, 300));
    let w = ledger.account(wallet).await;
    assert_eq!((w.balance(), w.available(), w.debits_pending), (1_000, 1_000, 0));
    let s = ledger.account(shop).await;
    assert_eq!((s.balance(), s.credits_pending), (0, 0));
    assert_eq!(status_in_db(&ledger, hold.id).await, "voided");
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn post_after_void_returns_pending_already_voided() {
    let ledger = ledger().await;
    let (wallet, shop, hold) = held(&ledger).await;
    ok(&ledger, acting(TransferKind::VoidPending, hold.id, None)).await;
    let accounts = ledger.all_accounts().await;
    let post = ledger.post(acting(TransferKind::PostPending, hold.id, None)).await;
    assert_eq!(post.result, TransferResult::PendingAlreadyVoided);
    assert_eq!(ledger.all_accounts().await, accounts);
    assert_eq!((ledger.balance(wallet).await, ledger.balance(shop).await), (1_000, 0));
    assert_eq!(status_in_db(&ledger, hold.id).await, "voided");
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn expired_hold_cannot_be_posted_and_the_sweeper_releases_it() {
    let ledger = ledger().await;
    let (_bank, wallet) = ledger.funded_wallet("alice", 1_000).await;
    let shop = ledger.open("shop", "USD", BalanceRule::NoOverdraft).await;
    let hold = ok(&ledger, pending(wallet, shop, 300, Some(1))).await;
    assert_eq!(hold.expires_at, Some(hold.created_at.plus_seconds(1)));
    let lasting = ok(&ledger, pending(wallet, shop, 50, None)).await;
    assert_eq!(ledger.account(wallet).await.available(), 650);
    // Not due yet.
    assert_eq!(ledger.engine.expire_due(tally_store::convert::now()).await.unwrap(), 0);

    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let post = ledger.post(acting(TransferKind::PostPending, hold.id, None)).await;
    assert_eq!(post.result, TransferResult::PendingExpired);
    let w = ledger.account(wallet).await;
    assert_eq!((w.balance(), w.debits_pending), (1_000, 350), "the post moved nothing");

    let expired = ledger.engine.expire_due(tally_store::convert::now()).await.unwrap();
    assert_eq!(expired, 1);
    assert_eq!(status_in_db(&ledger, hold.id).await, "expired");
    assert_eq!(status_in_db(&ledger, lasting.id).await, "pending");
    let w = ledger.account(wallet).await;
    assert_eq!((w.balance(), w.available(), w.debits_pending), (1_000, 950, 50));
    let s = ledger.account(shop).await;
    assert_eq!((s.balance(), s.credits_pending), (0, 50));
    let client = ledger.db.connect().await;
    let events: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE type = 'transfer.expired' AND entity_id = $1",
            &[&hold.id.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 1);
    let audit = client
        .query_one(
            "SELECT actor, after->>'status' FROM audit_log WHERE entity_id = $1 AND action = 'transfer.resolve'",
            &[&hold.id.to_string()],
        )
        .await
        .unwrap();
    assert_eq!(audit.get::<_, String>(0), "system:expiry");
    assert_eq!(audit.get::<_, String>(1), "expired");
    // Nothing is due twice, and an expired hold stays expired.
    assert_eq!(ledger.engine.expire_due(tally_store::convert::now()).await.unwrap(), 0);
    let void = ledger.post(acting(TransferKind::VoidPending, hold.id, None)).await;
    assert_eq!(void.result, TransferResult::PendingExpired);
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn the_engine_sweeper_expires_holds_past_their_timeout_unasked() {
    let config = EngineConfig { expiry_sweep_interval: Some(Duration::from_millis(100)), ..EngineConfig::default() };
    let ledger = ledger_with(config).await;
    let (_bank, wallet) = ledger.funded_wallet("alice", 1_000).await;
    let shop = ledger.open("shop", "USD", BalanceRule::NoOverdraft).await;
    let hold = ok(&ledger, pending(wallet, shop, 300, Some(1))).await;
    let lasting = ok(&ledger, pending(wallet, shop, 50, Some(3_600))).await;
    assert_eq!(status_in_db(&ledger, hold.id).await, "pending");
    // The timeout is 1 s; the sweeper looks every 100 ms. Give it ample time on a busy machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while status_in_db(&ledger, hold.id).await == "pending" {
        assert!(std::time::Instant::now() < deadline, "the sweeper did not expire the hold");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status_in_db(&ledger, hold.id).await, "expired");
    assert_eq!(status_in_db(&ledger, lasting.id).await, "pending");
    let w = ledger.account(wallet).await;
    assert_eq!((w.balance(), w.available(), w.debits_pending), (1_000, 950, 50));
    // Shutting down stops the sweeper with the engine.
    ledger.engine.shutdown().await;
    ledger.assert_consistent().await;
}

// ---------------------------------------------------------------------------------------------
// Reversals.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn reversal_restores_balances_and_points_to_the_original() {
    let ledger = ledger().await;
    let (bank, wallet) = ledger.funded_wallet("alice", 1_000).await;
    let shop = ledger.open("shop", "USD", BalanceRule::NoOverdraft).await;
    let original = ok(&ledger, posted(wallet, shop, 400)).await;
    let reversal = ok(&ledger, acting(TransferKind::Reversal, original.id, None)).await;
    assert_eq!(reversal.kind, TransferKind::Reversal);
    assert_eq!((reversal.debit_account_id, reversal.credit_account_id), (shop, wallet));
    assert_eq!((reversal.amount, reversal.related_id), (400, Some(original.id)));
    assert_eq!(
        (ledger.balance(wallet).await, ledger.balance(shop).await, ledger.balance(bank).await),
        (1_000, 0, -1_000)
    );
    let client = ledger.db.connect().await;
    let row = client
        .query_one("SELECT related_id, kind, status FROM transfers WHERE id = $1", &[&reversal.id.0])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<Uuid>>(0), Some(original.id.0));
    assert_eq!((row.get::<_, String>(1), row.get::<_, String>(2)), ("reversal".into(), "posted".into()));
    assert_eq!(ledger.db.store.transfer(original.id.0).await.unwrap(), Some(original.clone()), "original unchanged");

    let accounts = ledger.all_accounts().await;
    let again = ledger.post(acting(TransferKind::Reversal, original.id, None)).await;
    assert_eq!(again.result, TransferResult::AlreadyReversed);
    assert_eq!(ledger.all_accounts().await, accounts);
    // A reversal is not itself reversible.
    let undo = ledger.post(acting(TransferKind::Reversal, reversal.id, None)).await;
    assert_eq!(undo.result, TransferResult::ReversalNotAllowed);
    assert_eq!(ledger.all_accounts().await, accounts);
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn reversing_a_hold_or_a_void_is_not_allowed() {
    let ledger = ledger().await;
    let (wallet, shop, hold) = held(&ledger).await;
    let accounts = ledger.all_accounts().await;
    let reverse = ledger.post(acting(TransferKind::Reversal, hold.id, None)).await;
    assert_eq!(reverse.result, TransferResult::ReversalNotAllowed);
    assert_eq!(ledger.all_accounts().await, accounts);
    let void = ok(&ledger, acting(TransferKind::VoidPending, hold.id, None)).await;
    assert_eq!(
        ledger.post(acting(TransferKind::Reversal, void.id, None)).await.result,
        TransferResult::ReversalNotAllowed
    );
    // A captured hold moved posted money and can be reversed.
    let hold = ok(&ledger, pending(wallet, shop, 200, None)).await;
    let capture = ok(&ledger, acting(TransferKind::PostPending, hold.id, Some(150))).await;
    ok(&ledger, acting(TransferKind::Reversal, capture.id, None)).await;
    assert_eq!((ledger.balance(wallet).await, ledger.balance(shop).await), (1_000, 0));
    ledger.assert_consistent().await;
}

// ---------------------------------------------------------------------------------------------
// Linked chains.
// ---------------------------------------------------------------------------------------------

/// A chain wallet -> shop -> cafe -> wallet; the last member asks for more than cafe can have.
async fn failing_chain(ledger: &Ledger) -> Vec<TransferRequest> {
    let (_bank, wallet) = ledger.funded_wallet("alice", 1_000).await;
    let shop = ledger.open("shop", "USD", BalanceRule::NoOverdraft).await;
    let cafe = ledger.open("cafe", "USD", BalanceRule::NoOverdraft).await;
    vec![linked(posted(wallet, shop, 500)), linked(posted(shop, cafe, 200)), posted(cafe, wallet, 201)]
}

#[tokio::test]
async fn linked_chain_whose_last_member_fails_applies_nothing() {
    use TransferResult as R;
    let ledger = ledger().await;
    let chain = failing_chain(&ledger).await;
    let accounts = ledger.all_accounts().await;
    let results: Vec<_> = ledger.post_batch(chain.clone()).await.iter().map(|o| o.result).collect();
    assert_eq!(results, [R::LinkedChainFailed, R::LinkedChainFailed, R::InsufficientFunds]);
    assert_eq!(ledger.all_accounts().await, accounts, "no member of a failed chain is applied");
    for (request, result) in chain.iter().zip(&results) {
        match ledger.db.store.journal_row(request.id.0).await.unwrap() {
            Some(JournalRow::Rejected { rejection, .. }) => assert_eq!(rejection.result, *result),
            other => panic!("expected a recorded rejection, found {other:?}"),
        }
    }
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn replaying_a_failed_linked_chain_returns_the_original_codes() {
    use TransferResult as R;
    let ledger = ledger().await;
    let chain = failing_chain(&ledger).await;
    let first: Vec<_> = ledger.post_batch(chain.clone()).await.iter().map(|o| o.result).collect();
    assert_eq!(first, [R::LinkedChainFailed, R::LinkedChainFailed, R::InsufficientFunds]);
    let counts = ledger.db.row_counts().await;
    let accounts = ledger.all_accounts().await;
    let replay: Vec<_> = ledger.post_batch(chain.clone()).await.iter().map(|o| o.result).collect();
    assert_eq!(replay, first, "a replayed chain answers as it did the first time");
    assert_eq!(ledger.db.row_counts().await, counts);
    assert_eq!(ledger.all_accounts().await, accounts);
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn linked_chain_that_succeeds_applies_every_member() {
    let ledger = ledger().await;
    let mut chain = failing_chain(&ledger).await;
    let (wallet, shop, cafe) =
        (chain[0].debit_account_id.unwrap(), chain[0].credit_account_id.unwrap(), chain[1].credit_account_id.unwrap());
    chain[2].amount = Some(50);
    let outcomes = ledger.post_batch(chain.clone()).await;
    assert!(outcomes.iter().all(|o| o.result == TransferResult::Ok), "{outcomes:?}");
    assert_eq!(
        (ledger.balance(wallet).await, ledger.balance(shop).await, ledger.balance(cafe).await),
        (1_000 - 500 + 50, 500 - 200, 200 - 50)
    );
    for request in &chain {
        assert!(matches!(ledger.db.store.journal_row(request.id.0).await.unwrap(), Some(JournalRow::Applied { .. })));
    }
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn linked_chain_left_open_at_batch_end_writes_nothing_for_the_chain() {
    use TransferResult as R;
    let ledger = ledger().await;
    let (_bank, wallet) = ledger.funded_wallet("alice", 1_000).await;
    let shop = ledger.open("shop", "USD", BalanceRule::NoOverdraft).await;
    let single = posted(wallet, shop, 1);
    let (a, b) = (linked(posted(wallet, shop, 10)), linked(posted(shop, wallet, 5)));
    let results: Vec<_> =
        ledger.post_batch(vec![single, a.clone(), b.clone()]).await.iter().map(|o| o.result).collect();
    assert_eq!(results, [R::Ok, R::LinkedChainFailed, R::LinkedChainOpen]);
    assert_eq!((ledger.balance(wallet).await, ledger.balance(shop).await), (999, 1));
    for request in [&a, &b] {
        assert_eq!(ledger.db.store.journal_row(request.id.0).await.unwrap(), None, "an open chain is malformed");
    }
    // The ids stayed unused: the closed chain goes through.
    let closed = TransferRequest { linked: false, ..b };
    let results: Vec<_> = ledger.post_batch(vec![a, closed]).await.iter().map(|o| o.result).collect();
    assert_eq!(results, [R::Ok, R::Ok]);
    assert_eq!((ledger.balance(wallet).await, ledger.balance(shop).await), (994, 6));
    ledger.assert_consistent().await;
}

// ---------------------------------------------------------------------------------------------
// History and versions.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn history_pages_newest_first_without_overlap_or_gap() {
    let ledger = ledger().await;
    let bank = ledger.open("bank", "USD", BalanceRule::Unrestricted).await;
    let wallet = ledger.open("alice", "USD", BalanceRule::NoOverdraft).await;
    let shop = ledger.open("shop", "USD", BalanceRule::NoOverdraft).await;
    let funding = ok(&ledger, posted(bank, wallet, 100_000)).await;
    // Oldest first: (transfer id, direction for the wallet, other account, amount).
    let mut expected = vec![(funding.id, Direction::Credit, bank, 100_000)];
    for round in 0..5_i128 {
        let mut batch = Vec::new();
        for i in 0..5 {
            let n = round * 5 + i;
            let amount = 10 + n;
            let (request, direction, other) = if n % 3 == 0 {
                (posted(bank, wallet, amount), Direction::Credit, bank)
            } else {
                (posted(wallet, shop, amount), Direction::Debit, shop)
            };
            expected.push((request.id, direction, other, amount));
            batch.push(request);
        }
        // Neither a transfer between others nor a rejection is part of the wallet's history.
        batch.push(posted(bank, shop, 1));
        batch.push(posted(wallet, shop, 10_000_000));
        let results: Vec<_> = ledger.post_batch(batch).await.iter().map(|o| o.result).collect();
        assert_eq!(results[..6], [TransferResult::Ok; 6]);
        assert_eq!(results[6], TransferResult::InsufficientFunds);
    }
    assert_eq!(expected.len(), 26);

    let mut seen = Vec::new();
    let mut before = None;
    let mut sizes = Vec::new();
    loop {
        let page = ledger.db.store.history(&wallet.to_string(), before, 10).await.unwrap();
        sizes.push(page.len());
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        seen.extend(page);
    }
    assert_eq!(sizes, [10, 10, 6, 0]);
    assert!(seen.windows(2).all(|w| w[0].seq > w[1].seq), "newest first, strictly");
    let got: Vec<_> =
        seen.iter().map(|e| (e.transfer.id, e.direction, e.other_account_id, e.transfer.amount)).collect();
    let want: Vec<_> = expected.iter().rev().map(|(id, d, o, a)| (*id, *d, *o, *a)).collect();
    assert_eq!(got, want, "every transfer of the wallet exactly once, newest first");
    assert!(seen.iter().all(|e| e.actor == ACTOR));
    // By code, the same first page.
    let by_code = ledger.db.store.history("alice", None, 10).await.unwrap();
    assert_eq!(by_code, seen[..10]);
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn every_transfer_raises_each_account_version_by_exactly_one() {
    let ledger = ledger().await;
    let (bank, wallet) = ledger.funded_wallet("alice", 10_000).await;
    let shop = ledger.open("shop", "USD", BalanceRule::NoOverdraft).await;
    assert_eq!(ledger.account(wallet).await.version, 2, "created at 1, funded once");
    let n: i64 = 7;
    let batch: Vec<_> = (1..=n).map(|i| posted(wallet, shop, i128::from(i))).collect();
    let outcomes = ledger.post_batch(batch).await;
    assert!(outcomes.iter().all(|o| o.result == TransferResult::Ok));
    assert_eq!(ledger.account(wallet).await.version, 1 + 1 + n, "1 + funding + {n} transfers");
    assert_eq!(ledger.account(shop).await.version, 1 + n);
    assert_eq!(ledger.account(bank).await.version, 2);
    // A rejection changes no version; a hold and its capture count once each.
    assert_eq!(ledger.post(posted(wallet, shop, 1_000_000)).await.result, TransferResult::InsufficientFunds);
    assert_eq!(ledger.account(wallet).await.version, 1 + 1 + n);
    let hold = ok(&ledger, pending(wallet, shop, 5, None)).await;
    ok(&ledger, acting(TransferKind::PostPending, hold.id, None)).await;
    assert_eq!(ledger.account(wallet).await.version, 1 + 1 + n + 2);
    assert_eq!(ledger.account(shop).await.version, 1 + n + 2);
    ledger.assert_consistent().await;
}

// ---------------------------------------------------------------------------------------------
// The journal cannot be edited behind Tally's back.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn journal_audit_log_and_events_refuse_changes_through_sql() {
    let ledger = ledger().await;
    let (_bank, wallet) = ledger.funded_wallet("alice", 1_000).await;
    let empty = ledger.open("empty", "USD", BalanceRule::NoOverdraft).await;
    let transfer = ok(&ledger, posted(wallet, empty, 100)).await;
    ok(&ledger, posted(empty, wallet, 100)).await;
    let hold = ok(&ledger, pending(wallet, empty, 10, None)).await;
    let counts = ledger.db.row_counts().await;
    let accounts = ledger.all_accounts().await;
    let client = ledger.db.connect().await;

    let refused = [
        "UPDATE transfers SET amount = 1",
        "DELETE FROM transfers",
        "TRUNCATE transfers CASCADE",
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
        "DELETE FROM events",
        "UPDATE events SET type = 'x'",
        "DELETE FROM accounts",
    ];
    for sql in refused {
        let error = client.execute(sql, &[]).await.expect_err(sql);
        assert_eq!(error.code(), Some(&SqlState::INTEGRITY_CONSTRAINT_VIOLATION), "{sql}: {error}");
    }
    let currency = client.execute("UPDATE accounts SET currency = 'EUR' WHERE id = $1", &[&wallet.0]).await;
    assert_eq!(currency.expect_err("currency change").code(), Some(&SqlState::INTEGRITY_CONSTRAINT_VIOLATION));
    // A hold cannot be resolved with other fields changed either.
    let sneaky = "UPDATE transfers SET status = 'posted', completed_at = now(), amount = 1 WHERE id = $1";
    assert!(client.execute(sneaky, &[&hold.id.0]).await.is_err());

    let overdraw = "UPDATE accounts SET debits_posted = debits_posted + 1 WHERE id = $1";
    assert!(client.execute(overdraw, &[&empty.0]).await.is_err(), "an empty wallet cannot be overdrawn");
    // Even with the version raised as the guard demands, the balance rule itself refuses.
    let overdraw = "UPDATE accounts SET debits_posted = debits_posted + 1, version = version + 1 WHERE id = $1";
    let error = client.execute(overdraw, &[&empty.0]).await.expect_err("balance rule");
    assert_eq!(error.code(), Some(&SqlState::CHECK_VIOLATION));
    assert_eq!(error.as_db_error().and_then(|e| e.constraint()), Some("accounts_balance_rule"));

    assert_eq!(ledger.db.row_counts().await, counts);
    assert_eq!(ledger.all_accounts().await, accounts);
    assert_eq!(ledger.db.store.transfer(transfer.id.0).await.unwrap(), Some(transfer));
    assert_eq!(ledger.account(empty).await.balance(), 0);
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn a_journal_row_naming_a_missing_account_or_another_currency_is_refused_by_the_database() {
    let ledger = ledger().await;
    let (_bank, wallet) = ledger.funded_wallet("alice", 1_000).await;
    let shop = ledger.open("shop", "USD", BalanceRule::NoOverdraft).await;
    let counts = ledger.db.row_counts().await;
    let mut client = ledger.db.connect().await;
    let insert = "INSERT INTO transfers (id, kind, status, debit_account_id, credit_account_id, amount, currency, \
                  actor, created_at, completed_at) \
                  VALUES ($1, 'posted', 'posted', $2, $3, 1, $4, 'sql:test', now(), now())";
    let missing = Uuid::now_v7();
    for (debit, credit, currency) in [(wallet.0, missing, "USD"), (missing, shop.0, "USD"), (wallet.0, shop.0, "EUR")] {
        let error = client
            .execute(insert, &[&Uuid::now_v7(), &debit, &credit, &currency])
            .await
            .expect_err("a transfer naming a missing account");
        assert_eq!(error.code(), Some(&SqlState::FOREIGN_KEY_VIOLATION), "{error}");
        assert_eq!(error.as_db_error().and_then(|e| e.constraint()), Some("transfers_accounts_exist"));
    }
    // One statement, two rows: the accounts exist in USD, the second row names them in EUR.
    let two_rows = "INSERT INTO transfers (id, kind, status, debit_account_id, credit_account_id, amount, currency, \
                    actor, created_at, completed_at) \
                    SELECT gen_random_uuid(), 'posted', 'posted', $1, $2, 1, c, 'sql:test', now(), now() \
                    FROM unnest(ARRAY['USD', 'EUR']) AS c";
    let error = client.execute(two_rows, &[&wallet.0, &shop.0]).await.expect_err("one pair in another currency");
    assert_eq!(error.code(), Some(&SqlState::FOREIGN_KEY_VIOLATION), "{error}");
    assert_eq!(ledger.db.row_counts().await, counts, "nothing was written");
    // Accounts of another ledger, and a row that names no ledger (so `default`), or the wrong one.
    let other = ledger.make_ledger("other").await;
    let (there, also_there) = (
        ledger.open_in(other, "there", "USD", BalanceRule::Unrestricted).await,
        ledger.open_in(other, "also-there", "USD", BalanceRule::NoOverdraft).await,
    );
    let counts = ledger.db.row_counts().await;
    let error = client.execute(insert, &[&Uuid::now_v7(), &there.0, &also_there.0, &"USD"]).await.expect_err("ledger");
    assert_eq!(error.as_db_error().and_then(|e| e.constraint()), Some("transfers_accounts_exist"), "{error}");
    let across = "INSERT INTO transfers (id, kind, status, debit_account_id, credit_account_id, amount, currency, \
                  actor, created_at, completed_at, ledger_id) \
                  VALUES ($1, 'posted', 'posted', $2, $3, 1, 'USD', 'sql:test', now(), now(), $4)";
    for ledger_id in [1, other.0] {
        let error =
            client.execute(across, &[&Uuid::now_v7(), &wallet.0, &there.0, &ledger_id]).await.expect_err("across");
        assert_eq!(error.as_db_error().and_then(|e| e.constraint()), Some("transfers_accounts_exist"), "{error}");
    }
    assert_eq!(ledger.db.row_counts().await, counts, "nothing was written");
    // The same statement with accounts that exist in that currency passes the check (and is then
    // caught by reconciliation, having moved no balance: that is not this test's concern).
    let transaction = client.transaction().await.unwrap();
    transaction.execute(insert, &[&Uuid::now_v7(), &wallet.0, &shop.0, &"USD"]).await.expect("accounts exist");
    transaction.rollback().await.unwrap();
}
