//! Transfers end to end: posting, every result code, replays, holds, reversals, chains.

use crate::support::*;
use tally_core::{BalanceRule, TransferKind, TransferRequest, TransferResult, TransferStatus};

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
    let audit = client
        .query_one("SELECT actor, action FROM audit_log WHERE entity_id = $1", &[&transfer.id.to_string()])
        .await
        .unwrap();
    assert_eq!(
        (audit.get::<_, String>(0), audit.get::<_, String>(1)),
        (ACTOR.to_owned(), "transfer.create".to_owned())
    );
    let event = client
        .query_one("SELECT type, payload FROM events WHERE entity_id = $1", &[&transfer.id.to_string()])
        .await
        .unwrap();
    assert_eq!(event.get::<_, String>(0), "transfer.posted");
    assert_eq!(event.get::<_, serde_json::Value>(1)["amount"], "1234");
    ledger.assert_consistent().await;
}
