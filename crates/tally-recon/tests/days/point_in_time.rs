use crate::support::*;
use tally_core::{BalanceRule, TransferKind};
use tally_recon::balance::balance_as_of;
use time::OffsetDateTime;
use time::macros::datetime;

async fn balances(
    ledger: &Ledger,
    account: tally_core::AccountId,
    when: OffsetDateTime,
) -> (i128, i128, Option<String>) {
    let point = balance_as_of(&ledger.recon, account.0, at(when)).await.expect("balance as of");
    (point.balance(), point.debits_pending, point.snapshot_day)
}

#[tokio::test]
async fn a_balance_as_of_any_time_is_the_journal_up_to_that_time_before_and_after_days_close() {
    let ledger = ledger().await;
    let bank = ledger.open("bank", BalanceRule::Unrestricted).await;
    let alice = ledger.open("alice", BalanceRule::NoOverdraft).await;
    let bob = ledger.open("bob", BalanceRule::NoOverdraft).await;
    ledger.post_at(datetime!(2026-03-10 08:00 UTC), posted(bank, alice, 100_00)).await;
    let hold = ledger.post_at(datetime!(2026-03-10 20:00 UTC), pending(alice, bob, 30_00, None)).await;
    ledger.post_at(datetime!(2026-03-11 06:00 UTC), acting(TransferKind::PostPending, hold, Some(25_00))).await;
    ledger.post_at(datetime!(2026-03-12 10:00 UTC), posted(alice, bob, 5_00)).await;
    ledger.clock(datetime!(2026-03-13 12:00 UTC));

    // (time, alice's balance, alice's outgoing holds)
    let expected = [
        (datetime!(2026-03-10 07:59:59 UTC), 0, 0),
        // (The clock stamps a transfer a moment after the test sets it.)
        (datetime!(2026-03-10 08:00:01 UTC), 100_00, 0),
        (datetime!(2026-03-10 23:59:59 UTC), 100_00, 30_00),
        (datetime!(2026-03-11 00:00 UTC), 100_00, 30_00),
        (datetime!(2026-03-11 06:00:01 UTC), 75_00, 0),
        (datetime!(2026-03-12 09:59 UTC), 75_00, 0),
        (datetime!(2026-03-12 10:00:01 UTC), 70_00, 0),
        (datetime!(2026-03-13 11:00 UTC), 70_00, 0),
    ];
    let check = async |closed: &str| {
        for (when, balance, held) in expected {
            let (found_balance, found_held, _) = balances(&ledger, alice, when).await;
            assert_eq!((found_balance, found_held), (balance, held), "alice as of {when} with {closed} closed");
        }
    };
    check("no day").await;
    ledger.end_of_day(datetime!(2026-03-13 12:00 UTC), "2026-03-11").await;
    check("10th and 11th").await;
    ledger.end_of_day(datetime!(2026-03-13 12:00 UTC), "2026-03-12").await;
    check("10th to 12th").await;

    // The answers come from the snapshots: as of the 12th at noon, the base is the 11th.
    let (_, _, base) = balances(&ledger, alice, datetime!(2026-03-12 12:00 UTC)).await;
    assert_eq!(base.as_deref(), Some("2026-03-11"));
    let (balance, _, base) = balances(&ledger, bob, datetime!(2026-03-13 00:00 UTC)).await;
    assert_eq!((balance, base.as_deref()), (30_00, Some("2026-03-12")));
    // The account row agrees with "now".
    let now = ledger.db.store.require_account(&alice.to_string()).await.unwrap().account;
    assert_eq!(balances(&ledger, alice, datetime!(2026-03-13 12:00 UTC)).await.0, now.balance());
}

#[tokio::test]
async fn a_balance_as_of_the_future_or_of_a_missing_account_is_refused() {
    let ledger = ledger().await;
    let alice = ledger.open("alice", BalanceRule::NoOverdraft).await;
    ledger.clock(datetime!(2026-03-13 12:00 UTC));
    let future = balance_as_of(&ledger.recon, alice.0, at(datetime!(2026-03-13 12:10 UTC))).await.unwrap_err();
    assert_eq!(future.code(), "as_of_in_future");
    let missing =
        balance_as_of(&ledger.recon, uuid::Uuid::now_v7(), at(datetime!(2026-03-13 11:00 UTC))).await.unwrap_err();
    assert_eq!(missing.code(), "account_not_found");
}
