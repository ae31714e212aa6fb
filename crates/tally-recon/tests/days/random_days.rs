//! Random journals over several days: every point-in-time balance equals the journal summed up
//! to that instant (computed by brute force over the whole journal), before and after the days
//! are closed, and the end of day finds nothing.

use crate::support::*;
use rust_decimal::Decimal;
use tally_core::{AccountId, BalanceRule, TransferId, TransferKind, TransferResult};
use tally_engine::Submission;
use tally_recon::balance::balance_as_of;
use tally_recon::report::RunStatus;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// The four totals of `account` at `at`, summed over the whole journal.
async fn brute_force(ledger: &Ledger, account: AccountId, at: OffsetDateTime) -> [i128; 4] {
    let client = ledger.db.connect().await;
    let when = tally_store::convert::to_system_time(crate::support::at(at));
    let row = client
        .query_one(
            "SELECT coalesce(sum(amount) FILTER (WHERE debit_account_id = $1 AND kind IN ('posted', 'post_pending', 'reversal')), 0),
                    coalesce(sum(amount) FILTER (WHERE credit_account_id = $1 AND kind IN ('posted', 'post_pending', 'reversal')), 0),
                    coalesce(sum(amount) FILTER (WHERE debit_account_id = $1 AND kind = 'pending'
                                                 AND (completed_at IS NULL OR completed_at > $2)), 0),
                    coalesce(sum(amount) FILTER (WHERE credit_account_id = $1 AND kind = 'pending'
                                                 AND (completed_at IS NULL OR completed_at > $2)), 0)
             FROM transfers WHERE status <> 'rejected' AND created_at <= $2",
            &[&account.0, &when],
        )
        .await
        .unwrap();
    [0, 1, 2, 3].map(|i| row.get::<_, Decimal>(i).mantissa())
}

async fn check_every_instant(ledger: &Ledger, accounts: &[AccountId], instants: &[OffsetDateTime], closed: &str) {
    for &instant in instants {
        for &account in accounts {
            let point = balance_as_of(&ledger.recon, account.0, at(instant)).await.expect("as of");
            let found = [point.debits_posted, point.credits_posted, point.debits_pending, point.credits_pending];
            assert_eq!(
                found,
                brute_force(ledger, account, instant).await,
                "{account} as of {instant}, {closed} closed"
            );
        }
    }
}

#[tokio::test]
async fn point_in_time_balances_equal_the_journal_at_random_instants_across_random_days() {
    for seed in [1_u64, 2] {
        let ledger = ledger().await;
        let mut rng = fastrand::Rng::with_seed(seed);
        let bank = ledger.open(&format!("bank-{seed}"), BalanceRule::Unrestricted).await;
        let mut accounts = vec![bank];
        for name in ["a", "b", "c"] {
            accounts.push(ledger.open(&format!("{name}-{seed}"), BalanceRule::OverdraftLimit(50_000)).await);
        }
        let start = datetime!(2026-03-10 00:00 UTC);
        let mut now = start;
        let (mut holds, mut payments): (Vec<TransferId>, Vec<TransferId>) = (Vec::new(), Vec::new());
        // Like the sweeper: every hold expires within a second of its timeout.
        let mut expiries: Vec<OffsetDateTime> = Vec::new();
        for _ in 0..80 {
            let next = now + Duration::seconds(rng.i64(60..6 * 3600));
            expiries.sort_unstable();
            while expiries.first().is_some_and(|due| *due < next) {
                ledger.clock(expiries.remove(0) + Duration::seconds(1));
                ledger.engine.expire_due(ledger.db.store.now()).await.expect("expire");
            }
            now = next;
            let from = accounts[rng.usize(..accounts.len())];
            let to = accounts
                [(accounts.iter().position(|a| *a == from).unwrap() + rng.usize(1..accounts.len())) % accounts.len()];
            let amount = rng.i128(1..20_000);
            let timeout = rng.bool().then(|| rng.u32(60..20_000));
            let request = match rng.u8(..10) {
                0..=3 => posted(from, to, amount),
                4..=5 => pending(from, to, amount, timeout),
                6 if !holds.is_empty() => acting(TransferKind::PostPending, holds[rng.usize(..holds.len())], None),
                7 if !holds.is_empty() => acting(TransferKind::VoidPending, holds[rng.usize(..holds.len())], None),
                8 if !payments.is_empty() => {
                    acting(TransferKind::Reversal, payments[rng.usize(..payments.len())], None)
                }
                _ => continue,
            };
            ledger.clock(now);
            let (kind, id) = (request.kind, request.id);
            let outcome = ledger.engine.submit_one(Submission { request, actor: ACTOR.into() }).await.expect("submit");
            if outcome.result == TransferResult::Ok {
                match kind {
                    TransferKind::Pending => {
                        holds.push(id);
                        expiries.extend(timeout.map(|t| now + Duration::seconds(i64::from(t))));
                    }
                    TransferKind::Posted => payments.push(id),
                    _ => {}
                }
            }
        }
        expiries.sort_unstable();
        for due in expiries {
            ledger.clock(due + Duration::seconds(1));
            ledger.engine.expire_due(ledger.db.store.now()).await.expect("expire");
        }
        let end = now;
        ledger.clock(end + Duration::days(1));
        let mut instants: Vec<OffsetDateTime> = (0..25)
            .map(|_| {
                start - Duration::hours(2) + Duration::seconds(rng.i64(0..(end - start).whole_seconds() + 4 * 3600))
            })
            .collect();
        instants.extend([
            start,
            datetime!(2026-03-11 00:00 UTC),
            datetime!(2026-03-11 00:00 UTC) - Duration::microseconds(1),
        ]);

        check_every_instant(&ledger, &accounts, &instants, "no day").await;
        let last_day = tally_recon::days::format_day(end.date() - Duration::days(1));
        let report = ledger.end_of_day(end + Duration::days(1), &last_day).await;
        assert_eq!(report.status, RunStatus::Clean, "seed {seed}: {:#?}", report.findings);
        check_every_instant(&ledger, &accounts, &instants, "all but the last day").await;
    }
}
