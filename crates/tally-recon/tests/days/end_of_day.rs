use crate::support::*;
use tally_core::{BalanceRule, TransferKind};
use tally_recon::ReconError;
use tally_recon::report::RunStatus;
use time::macros::datetime;

/// A day with every kind of journal row: posted, a hold posted in part, a hold voided, a hold
/// that expires, and a reversal.
async fn busy_day(ledger: &Ledger) -> (tally_core::AccountId, tally_core::AccountId, tally_core::AccountId) {
    let bank = ledger.open("bank", BalanceRule::Unrestricted).await;
    let alice = ledger.open("alice", BalanceRule::NoOverdraft).await;
    let bob = ledger.open("bob", BalanceRule::NoOverdraft).await;
    ledger.post_at(datetime!(2026-03-10 08:00 UTC), posted(bank, alice, 100_00)).await;
    let hold = ledger.post_at(datetime!(2026-03-10 09:00 UTC), pending(alice, bob, 30_00, None)).await;
    ledger.post_at(datetime!(2026-03-10 09:30 UTC), acting(TransferKind::PostPending, hold, Some(20_00))).await;
    let void = ledger.post_at(datetime!(2026-03-10 10:00 UTC), pending(alice, bob, 5_00, None)).await;
    ledger.post_at(datetime!(2026-03-10 10:05 UTC), acting(TransferKind::VoidPending, void, None)).await;
    ledger.post_at(datetime!(2026-03-10 11:00 UTC), pending(alice, bob, 7_00, Some(60))).await;
    ledger.clock(datetime!(2026-03-10 11:05 UTC));
    assert_eq!(ledger.engine.expire_due(ledger.db.store.now()).await.expect("expire"), 1);
    let paid = ledger.post_at(datetime!(2026-03-10 12:00 UTC), posted(bob, alice, 3_00)).await;
    ledger.post_at(datetime!(2026-03-10 23:59:59 UTC), acting(TransferKind::Reversal, paid, None)).await;
    (bank, alice, bob)
}

#[tokio::test]
async fn a_clean_day_reconciles_and_its_report_is_stored() {
    let ledger = ledger().await;
    busy_day(&ledger).await;
    // The next day's first transfer is not the closed day's.
    let bank = ledger.open("bank2", BalanceRule::Unrestricted).await;
    let carol = ledger.open("carol", BalanceRule::NoOverdraft).await;
    ledger.post_at(datetime!(2026-03-11 00:00 UTC), posted(bank, carol, 1_00)).await;

    let report = ledger.end_of_day(datetime!(2026-03-11 12:00 UTC), "2026-03-10").await;
    assert_eq!(report.status, RunStatus::Clean, "{:#?}", report.findings);
    assert_eq!(report.snapshot, "written");
    assert_eq!(report.starts_at, "2026-03-10T00:00:00Z");
    assert_eq!(report.ends_at, "2026-03-11T00:00:00Z");
    // posted, pending, post_pending, pending, void_pending, pending, posted, reversal
    assert_eq!(report.transfers, 8);
    assert_eq!(report.accounts_touched, 3);
    assert_eq!(report.hourly.len(), 24);
    assert_eq!(report.hourly[9].transfers, 2);
    assert_eq!(report.hourly[23].transfers, 1);
    assert_eq!(report.hourly.iter().map(|h| h.transfers).sum::<i64>(), 8);
    let usd = &report.currencies[0];
    assert_eq!((usd.currency.as_str(), usd.transfers), ("USD", 8));
    // 100.00 + 20.00 + 3.00 + 3.00 posted on the day; nothing left pending.
    assert_eq!(usd.posted_volume, "126.00");
    assert_eq!(usd.closing_debits_posted, usd.closing_credits_posted);
    assert_eq!(usd.closing_debits_posted, "126.00");
    assert_eq!((usd.closing_debits_pending.as_str(), usd.closing_credits_pending.as_str()), ("0.00", "0.00"));

    // Stored, and found again by day.
    let stored = tally_recon::eod::latest_report(&ledger.recon, day("2026-03-10")).await.unwrap().unwrap();
    assert_eq!(stored.status, "clean");
    assert_eq!(stored.report.as_ref(), Some(&report));

    // A second run verifies the snapshot the first one wrote, and still finds nothing.
    let again = ledger.end_of_day(datetime!(2026-03-11 12:05 UTC), "2026-03-10").await;
    assert_eq!(again.status, RunStatus::Clean, "{:#?}", again.findings);
    assert_eq!(again.snapshot, "verified");
    assert_ne!(again.run_id, report.run_id);
}

#[tokio::test]
async fn a_day_that_has_not_ended_cannot_be_reconciled() {
    let ledger = ledger().await;
    ledger.clock(datetime!(2026-03-11 00:00:30 UTC));
    let refused = tally_recon::eod::run_end_of_day(&ledger.recon, day("2026-03-10"), ACTOR, &tally_recon::Quiet).await;
    assert!(matches!(refused, Err(ReconError::DayNotClosed { .. })), "{refused:?}");
    assert_eq!(refused.unwrap_err().code(), "day_not_closed");
    // A minute later it can.
    let report = ledger.end_of_day(datetime!(2026-03-11 00:01:01 UTC), "2026-03-10").await;
    assert_eq!(report.status, RunStatus::Clean);
}

#[tokio::test]
async fn a_balance_changed_behind_tallys_back_is_reported_with_its_account_and_amount() {
    let ledger = ledger().await;
    let (_, alice, _) = busy_day(&ledger).await;
    assert_eq!(ledger.end_of_day(datetime!(2026-03-11 09:00 UTC), "2026-03-10").await.status, RunStatus::Clean);

    ledger
        .tamper(&format!(
            "UPDATE accounts SET credits_posted = credits_posted + 500, version = version + 1 WHERE id = '{alice}'"
        ))
        .await;
    let report = ledger.end_of_day(datetime!(2026-03-12 09:00 UTC), "2026-03-11").await;
    assert_eq!(report.status, RunStatus::Findings);
    let found = findings(&report, "account_balance_mismatch");
    assert_eq!(found.len(), 1, "{:#?}", report.findings);
    assert_eq!(found[0].account_id.as_deref(), Some(alice.to_string().as_str()));
    assert_eq!(found[0].currency.as_deref(), Some("USD"));
    assert_eq!(found[0].difference.as_deref(), Some("5.00"));
    // alice: 100.00 in, 20.00 out to bob, 3.00 back and reversed: 80.00.
    assert_eq!(found[0].expected.as_deref(), Some("80.00"));
    assert_eq!(found[0].found.as_deref(), Some("85.00"));
    // The account rows no longer balance either.
    assert_eq!(count(&report, "trial_balance"), 1);
    assert_eq!(findings(&report, "trial_balance")[0].subject, "USD");
}

#[tokio::test]
async fn a_deleted_transfer_is_reported_with_its_accounts_and_amount() {
    let ledger = ledger().await;
    let bank = ledger.open("bank", BalanceRule::Unrestricted).await;
    let alice = ledger.open("alice", BalanceRule::NoOverdraft).await;
    ledger.post_at(datetime!(2026-03-10 08:00 UTC), posted(bank, alice, 100_00)).await;
    let gone = ledger.post_at(datetime!(2026-03-10 09:00 UTC), posted(bank, alice, 42_50)).await;
    assert_eq!(ledger.end_of_day(datetime!(2026-03-11 09:00 UTC), "2026-03-10").await.status, RunStatus::Clean);

    ledger.tamper(&format!("DELETE FROM transfers WHERE id = '{}'", gone.0)).await;
    let report = ledger.end_of_day(datetime!(2026-03-11 09:05 UTC), "2026-03-10").await;
    assert_eq!(report.status, RunStatus::Findings);
    assert_eq!(report.snapshot, "verified");

    // The snapshot closed with the transfer; the journal no longer has it: both accounts, 42.50.
    let closing = findings(&report, "closing_balance_mismatch");
    assert_eq!(closing.len(), 2, "{:#?}", report.findings);
    let of = |account: tally_core::AccountId| {
        closing.iter().find(|f| f.account_id.as_deref() == Some(account.to_string().as_str())).expect("finding")
    };
    assert_eq!(of(alice).difference.as_deref(), Some("42.50"));
    assert_eq!(of(bank).difference.as_deref(), Some("-42.50"));
    // The account rows still agree with the snapshot, which was written before the deletion.
    assert_eq!(count(&report, "account_balance_mismatch"), 0);
    // Its event names a transfer that is gone, and its batch's audit row counts one more.
    let orphan = findings(&report, "event_without_transfer");
    assert_eq!(orphan.len(), 1);
    assert_eq!(orphan[0].transfer_id.as_deref(), Some(gone.0.to_string().as_str()));
    assert_eq!(count(&report, "batch_audit_mismatch"), 1);
    assert_eq!(count(&report, "transfer_without_event"), 0);
}

#[tokio::test]
async fn a_hold_stuck_past_its_timeout_is_reported() {
    let ledger = ledger().await;
    let bank = ledger.open("bank", BalanceRule::Unrestricted).await;
    let alice = ledger.open("alice", BalanceRule::NoOverdraft).await;
    ledger.post_at(datetime!(2026-03-10 08:00 UTC), posted(bank, alice, 100_00)).await;
    let stuck = ledger.post_at(datetime!(2026-03-10 10:00 UTC), pending(alice, bank, 12_34, Some(600))).await;
    // A hold still inside its timeout at the end of the day is fine.
    ledger.post_at(datetime!(2026-03-10 23:59 UTC), pending(alice, bank, 1_00, Some(3600))).await;

    let report = ledger.end_of_day(datetime!(2026-03-11 09:00 UTC), "2026-03-10").await;
    let found = findings(&report, "pending_past_timeout");
    assert_eq!(found.len(), 1, "{:#?}", report.findings);
    assert_eq!(found[0].transfer_id.as_deref(), Some(stuck.0.to_string().as_str()));
    assert_eq!(found[0].account_id.as_deref(), Some(alice.to_string().as_str()));
    assert_eq!(found[0].found.as_deref(), Some("12.34"));
    // Everything else agrees: the hold is in the balances and the totals.
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    assert_eq!(report.currencies[0].closing_debits_pending, "13.34");
}

#[tokio::test]
async fn a_missing_event_is_reported_with_its_transfer_and_sequence_number() {
    let ledger = ledger().await;
    let bank = ledger.open("bank", BalanceRule::Unrestricted).await;
    let alice = ledger.open("alice", BalanceRule::NoOverdraft).await;
    ledger.post_at(datetime!(2026-03-10 08:00 UTC), posted(bank, alice, 100_00)).await;
    let lost = ledger.post_at(datetime!(2026-03-10 09:00 UTC), posted(bank, alice, 7_77)).await;
    ledger.post_at(datetime!(2026-03-10 10:00 UTC), posted(alice, bank, 1_00)).await;
    let client = ledger.db.connect().await;
    let seq: i64 =
        client.query_one("SELECT seq FROM events WHERE entity_id = $1", &[&lost.0.to_string()]).await.unwrap().get(0);
    ledger.tamper(&format!("DELETE FROM events WHERE seq = {seq}")).await;

    let report = ledger.end_of_day(datetime!(2026-03-11 09:00 UTC), "2026-03-10").await;
    let missing = findings(&report, "transfer_without_event");
    assert_eq!(missing.len(), 1, "{:#?}", report.findings);
    assert_eq!(missing[0].transfer_id.as_deref(), Some(lost.0.to_string().as_str()));
    assert_eq!(missing[0].found.as_deref(), Some("7.77"));
    let gap = findings(&report, "event_sequence_gap");
    assert_eq!(gap.len(), 1);
    assert_eq!(gap[0].subject, seq.to_string());
    assert_eq!(report.findings.len(), 2, "{:#?}", report.findings);
}

#[tokio::test]
async fn days_follow_the_time_zone_and_cut_off_and_cannot_change_once_closed() {
    let ledger = ledger().await;
    let recon = &ledger.recon;
    for (zone, cutoff, code) in [
        ("Mars/Olympus", "17:00", "time_zone_invalid"),
        ("Asia/Tokyo", "25:00", "cutoff_invalid"),
        ("Asia/Tokyo", "00:00", "cutoff_invalid"),
    ] {
        let refused = tally_recon::days::set_settings(recon, zone, cutoff, ACTOR).await.unwrap_err();
        assert_eq!(refused.code(), code);
    }
    tally_recon::days::set_settings(recon, "Asia/Tokyo", "17:00", ACTOR).await.expect("settings");
    let bank = ledger.open("bank", BalanceRule::Unrestricted).await;
    let alice = ledger.open("alice", BalanceRule::NoOverdraft).await;
    // 16:59 in Tokyo on the 10th is the 10th; 17:00 is the 11th.
    ledger.post_at(datetime!(2026-03-10 07:59 UTC), posted(bank, alice, 1_00)).await;
    ledger.post_at(datetime!(2026-03-10 08:00 UTC), posted(bank, alice, 2_00)).await;

    let report = ledger.end_of_day(datetime!(2026-03-10 08:01:01 UTC), "2026-03-10").await;
    assert_eq!((report.starts_at.as_str(), report.ends_at.as_str()), ("2026-03-09T08:00:00Z", "2026-03-10T08:00:00Z"));
    assert_eq!(report.time_zone, "Asia/Tokyo");
    assert_eq!(report.transfers, 1);
    assert_eq!(report.status, RunStatus::Clean, "{:#?}", report.findings);
    let next = ledger.end_of_day(datetime!(2026-03-11 08:01:01 UTC), "2026-03-11").await;
    assert_eq!(next.transfers, 1);
    assert_eq!(next.currencies[0].closing_credits_posted, "3.00");

    let locked = tally_recon::days::set_settings(recon, "UTC", "24:00", ACTOR).await.unwrap_err();
    assert_eq!(locked.code(), "day_definition_locked");
}

#[tokio::test]
async fn closing_skips_no_day_and_an_empty_day_closes_with_the_balances_it_inherits() {
    let ledger = ledger().await;
    let bank = ledger.open("bank", BalanceRule::Unrestricted).await;
    let alice = ledger.open("alice", BalanceRule::NoOverdraft).await;
    ledger.post_at(datetime!(2026-03-08 12:00 UTC), posted(bank, alice, 10_00)).await;
    // Reconciling the 10th closes the 8th, 9th (empty) and 10th.
    let report = ledger.end_of_day(datetime!(2026-03-11 12:00 UTC), "2026-03-10").await;
    assert_eq!(report.status, RunStatus::Clean, "{:#?}", report.findings);
    assert_eq!(report.transfers, 0);
    assert_eq!(report.currencies[0].closing_credits_posted, "10.00");
    let client = ledger.db.connect().await;
    let days: Vec<String> = client
        .query("SELECT day::text FROM ledger_days ORDER BY day", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(days, ["2026-03-08", "2026-03-09", "2026-03-10"]);
    // Only the day that moved the accounts has snapshot rows for them.
    let rows: i64 = client.query_one("SELECT count(*) FROM balance_snapshots", &[]).await.unwrap().get(0);
    assert_eq!(rows, 2);
}

#[tokio::test]
async fn days_before_the_first_transfer_never_close_so_the_day_settings_stay_open_until_a_day_with_transfers_closes() {
    let ledger = ledger().await;
    let recon = &ledger.recon;
    let closed_days = async || -> Vec<String> {
        let client = ledger.db.connect().await;
        let rows = client.query("SELECT day::text FROM ledger_days ORDER BY day", &[]).await.unwrap();
        rows.iter().map(|row| row.get(0)).collect()
    };
    // An empty journal: the day is checked, and nothing closes.
    let empty = ledger.end_of_day(datetime!(2026-03-09 12:00 UTC), "2026-03-07").await;
    assert_eq!((empty.snapshot.as_str(), empty.transfers, empty.status), ("none", 0, RunStatus::Clean));
    let bank = ledger.open("bank", BalanceRule::Unrestricted).await;
    let alice = ledger.open("alice", BalanceRule::NoOverdraft).await;
    ledger.post_at(datetime!(2026-03-10 12:00 UTC), posted(bank, alice, 10_00)).await;

    // A day before the first transfer: nothing closes, and the report says so.
    let before = ledger.end_of_day(datetime!(2026-03-11 12:00 UTC), "2026-03-09").await;
    assert_eq!((before.snapshot.as_str(), before.transfers, before.status), ("none", 0, RunStatus::Clean));
    assert!(before.currencies.is_empty(), "{:?}", before.currencies);
    assert_eq!(closed_days().await, Vec::<String>::new());
    assert!(!tally_recon::days::precedes_ledger(recon, day("2026-03-10")).await.unwrap());
    assert!(tally_recon::days::precedes_ledger(recon, day("2026-03-09")).await.unwrap());
    // So the settings may still change (and change back).
    tally_recon::days::set_settings(recon, "Asia/Tokyo", "17:00", ACTOR).await.expect("open before any day closed");
    tally_recon::days::set_settings(recon, "UTC", "24:00", ACTOR).await.expect("still open");

    // The first day to close is the first transfer's; from then on the settings are fixed.
    let first = ledger.end_of_day(datetime!(2026-03-11 12:00 UTC), "2026-03-10").await;
    assert_eq!((first.snapshot.as_str(), first.transfers, first.status), ("written", 1, RunStatus::Clean));
    assert_eq!(closed_days().await, ["2026-03-10"]);
    let again = ledger.end_of_day(datetime!(2026-03-11 12:00 UTC), "2026-03-10").await;
    assert_eq!(again.snapshot, "verified");
    let locked = tally_recon::days::set_settings(recon, "Asia/Tokyo", "17:00", ACTOR).await.unwrap_err();
    assert_eq!(locked.code(), "day_definition_locked");
    // A day before the closed ones is still only checked.
    assert_eq!(ledger.end_of_day(datetime!(2026-03-11 12:00 UTC), "2026-03-08").await.snapshot, "none");
    assert_eq!(closed_days().await, ["2026-03-10"]);
}

#[tokio::test]
async fn a_daylight_saving_day_has_twenty_three_hours_and_the_next_one_starts_where_it_ended() {
    let ledger = ledger().await;
    tally_recon::days::set_settings(&ledger.recon, "Europe/Berlin", "24:00", ACTOR).await.expect("settings");
    let bank = ledger.open("bank", BalanceRule::Unrestricted).await;
    let alice = ledger.open("alice", BalanceRule::NoOverdraft).await;
    // 01:30 and 03:30 Berlin time on the 29th: one hour apart, two hour buckets apart on the clock.
    ledger.post_at(datetime!(2026-03-29 00:30 UTC), posted(bank, alice, 1_00)).await;
    ledger.post_at(datetime!(2026-03-29 01:30 UTC), posted(bank, alice, 2_00)).await;
    let report = ledger.end_of_day(datetime!(2026-03-30 12:00 UTC), "2026-03-29").await;
    assert_eq!((report.starts_at.as_str(), report.ends_at.as_str()), ("2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"));
    assert_eq!(report.hourly.len(), 23);
    assert_eq!((report.hourly[1].transfers, report.hourly[2].transfers), (1, 1));
    assert_eq!(report.status, RunStatus::Clean, "{:#?}", report.findings);
    let next = ledger.end_of_day(datetime!(2026-03-31 12:00 UTC), "2026-03-30").await;
    assert_eq!(next.starts_at, "2026-03-29T22:00:00Z");
    assert_eq!(next.hourly.len(), 24);
}
