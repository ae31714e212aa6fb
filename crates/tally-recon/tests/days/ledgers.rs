//! Two ledgers in one deployment: a day closes for both at once, every snapshot, total and
//! statement is of its ledger, each ledger balances on its own, and a report shows one ledger's
//! part when asked. Rows written behind Tally's back (triggers off) show that the per-ledger
//! checks find what the whole-ledger ones cannot.

use crate::statements::{assert_outcome, books_in, dutch_books_in, dutch_mapping, fixture, only};
use crate::support::*;
use tally_core::{AccountId, LedgerId, TransferId, TransferKind};
use tally_recon::report::{DayReport, LedgerRef, RunStatus};
use tally_recon::statement::{StatementFilter, import_file, import_statement, list_statements};
use time::macros::datetime;

struct TwoLedgers {
    eu: LedgerId,
    bank: AccountId,
    alice: AccountId,
    eu_alice: AccountId,
    /// The first transfer of the day, bank -> alice 100.00 in `default`.
    first: TransferId,
}

/// `default`: bank and alice in USD. `eu`: a USD and a EUR pair, one of them with a hold open
/// at the end of the day. On 2026-03-10: two transfers in `default`, three in `eu`.
async fn two_ledgers(ledger: &Ledger) -> TwoLedgers {
    let eu = ledger.new_ledger("eu").await;
    assert_eq!(eu, LedgerId(2));
    let bank = ledger.open_in("bank", "USD").await;
    let alice = ledger.open_in("alice", "USD").await;
    let eu_bank = ledger.open_in_ledger(eu, "eu-bank", "USD").await;
    let eu_alice = ledger.open_in_ledger(eu, "eu-alice", "USD").await;
    let eu_bank_eur = ledger.open_in_ledger(eu, "eu-bank-eur", "EUR").await;
    let eu_bob = ledger.open_in_ledger(eu, "eu-bob", "EUR").await;
    let first = ledger.post_at(datetime!(2026-03-10 08:00 UTC), posted(bank, alice, 100_00)).await;
    ledger.post_at(datetime!(2026-03-10 09:00 UTC), posted(eu_bank, eu_alice, 40_00)).await;
    ledger.post_at(datetime!(2026-03-10 10:00 UTC), posted(eu_bank_eur, eu_bob, 7_00)).await;
    ledger.post_at(datetime!(2026-03-10 11:00 UTC), pending(eu_alice, eu_bank, 5_00, None)).await;
    ledger.post_at(datetime!(2026-03-10 12:00 UTC), posted(alice, bank, 10_00)).await;
    TwoLedgers { eu, bank, alice, eu_alice, first }
}

/// (ledger, currency, transfers, posted volume, closing debits posted, credits posted, debits
/// pending, credits pending) of one line of a report's totals.
type TotalsLine<'a> = (i32, &'a str, i64, &'a str, &'a str, &'a str, &'a str, &'a str);

/// A report's totals, line by line.
fn totals(report: &DayReport) -> Vec<TotalsLine<'_>> {
    report
        .currencies
        .iter()
        .map(|c| {
            (
                c.ledger,
                c.currency.as_str(),
                c.transfers,
                c.posted_volume.as_str(),
                c.closing_debits_posted.as_str(),
                c.closing_credits_posted.as_str(),
                c.closing_debits_pending.as_str(),
                c.closing_credits_pending.as_str(),
            )
        })
        .collect()
}

/// The checks of a report that found something, with their counts.
fn failed(report: &DayReport) -> Vec<(&str, i64)> {
    report.checks.iter().filter(|c| c.findings > 0).map(|c| (c.check.as_str(), c.findings)).collect()
}

fn eu_ref() -> LedgerRef {
    LedgerRef { id: 2, code: "eu".to_owned() }
}

fn default_ref() -> LedgerRef {
    LedgerRef { id: 1, code: "default".to_owned() }
}

#[tokio::test]
async fn a_day_of_two_ledgers_closes_with_totals_and_figures_per_ledger_and_each_ledger_balances() {
    let ledger = ledger().await;
    let books = two_ledgers(&ledger).await;
    let report = ledger.end_of_day(datetime!(2026-03-11 09:00 UTC), "2026-03-10").await;
    assert_eq!(report.status, RunStatus::Clean, "{:#?}", report.findings);
    assert!(report.per_ledger);
    assert_eq!((report.transfers, report.accounts_touched, report.events), (5, 6, 5));
    assert_eq!(
        totals(&report),
        [
            (1, "USD", 2, "110.00", "110.00", "110.00", "0.00", "0.00"),
            (2, "EUR", 1, "7.00", "7.00", "7.00", "0.00", "0.00"),
            (2, "USD", 2, "40.00", "40.00", "40.00", "5.00", "5.00"),
        ]
    );
    // Per ledger: figures that add up to the day's.
    let figures: Vec<(i32, &str, i64, i64, i64, i64)> = report
        .ledgers
        .iter()
        .map(|l| (l.ledger, l.code.as_str(), l.transfers, l.accounts_touched, l.events, l.batches))
        .collect();
    assert_eq!(figures, [(1, "default", 2, 2, 2, 2), (2, "eu", 3, 4, 3, 3)]);
    assert_eq!(report.batches, 5);
    let eu_hours: Vec<u32> =
        report.ledgers[1].hourly.iter().filter(|h| h.transfers > 0).map(|h| h.hour).collect::<Vec<_>>();
    assert_eq!(eu_hours, [9, 10, 11]);
    // The new checks ran, and found nothing.
    for check in ["ledger_trial_balance", "transfer_ledger_mismatch"] {
        assert_eq!(count(&report, check), 0, "{check}");
    }

    // Stored per ledger: every snapshot in its account's ledger, the totals per ledger and currency.
    let client = ledger.db.connect().await;
    let rows = client
        .query(
            "SELECT s.ledger_id, a.ledger_id FROM balance_snapshots s JOIN accounts a ON a.id = s.account_id ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let ledgers: Vec<(i32, i32)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(ledgers, [(1, 1), (1, 1), (2, 2), (2, 2), (2, 2), (2, 2)]);
    let keys: Vec<(i32, String)> = client
        .query("SELECT ledger_id, currency FROM ledger_day_totals ORDER BY 1, 2", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(keys, [(1, "USD".to_owned()), (2, "EUR".to_owned()), (2, "USD".to_owned())]);

    // The whole-ledger check: clean, totals per ledger.
    let whole = tally_recon::check_ledger(&ledger.recon).await.expect("check the ledger");
    assert!(whole.is_clean(), "{:#?}", whole.findings);
    let whole_totals: Vec<(i32, &str, &str, &str)> = whole
        .totals
        .iter()
        .map(|t| (t.ledger, t.ledger_code.as_str(), t.currency.as_str(), t.debits_posted.as_str()))
        .collect();
    assert_eq!(whole_totals, [(1, "default", "USD", "110.00"), (2, "eu", "EUR", "7.00"), (2, "eu", "USD", "40.00")]);

    // One ledger's part of the report.
    let eu = report.filtered(&[eu_ref()]);
    assert_eq!((eu.transfers, eu.accounts_touched, eu.events, eu.batches), (3, 4, 3, 3));
    assert_eq!(totals(&eu).iter().map(|t| (t.0, t.1)).collect::<Vec<_>>(), [(2, "EUR"), (2, "USD")]);
    assert_eq!(eu.hourly.iter().map(|h| h.transfers).sum::<i64>(), 3);
    assert!(eu.filter.is_some());

    // The next day: the totals of both ledgers carry over, and a point-in-time balance in `eu`
    // starts from the day's snapshot.
    let hold = ledger.db.connect().await;
    let hold: uuid::Uuid =
        hold.query_one("SELECT id FROM transfers WHERE kind = 'pending' AND ledger_id = 2", &[]).await.unwrap().get(0);
    ledger
        .post_at(datetime!(2026-03-11 09:00 UTC), acting(TransferKind::PostPending, TransferId(hold), Some(3_00)))
        .await;
    let next = ledger.end_of_day(datetime!(2026-03-12 09:00 UTC), "2026-03-11").await;
    assert_eq!(next.status, RunStatus::Clean, "{:#?}", next.findings);
    assert_eq!(
        totals(&next),
        [
            (1, "USD", 0, "0.00", "110.00", "110.00", "0.00", "0.00"),
            (2, "EUR", 0, "0.00", "7.00", "7.00", "0.00", "0.00"),
            (2, "USD", 1, "3.00", "43.00", "43.00", "0.00", "0.00"),
        ]
    );
    let point =
        tally_recon::balance::balance_as_of(&ledger.recon, books.eu_alice.0, at(datetime!(2026-03-12 08:00 UTC)))
            .await
            .expect("balance as of");
    assert_eq!((point.balance(), point.snapshot_day.as_deref()), (37_00, Some("2026-03-11")));
    let again = ledger.end_of_day(datetime!(2026-03-12 09:05 UTC), "2026-03-10").await;
    assert_eq!((again.status, again.snapshot.as_str()), (RunStatus::Clean, "verified"), "{:#?}", again.findings);
}

/// An account moved to another ledger behind Tally's back: every ledger's books break, while
/// the books of the whole deployment still balance per currency.
#[tokio::test]
async fn an_account_moved_to_another_ledger_breaks_double_entry_in_both_ledgers() {
    let ledger = ledger().await;
    let books = two_ledgers(&ledger).await;
    assert_eq!(ledger.end_of_day(datetime!(2026-03-11 09:00 UTC), "2026-03-10").await.status, RunStatus::Clean);
    ledger.tamper(&format!("UPDATE accounts SET ledger_id = {} WHERE id = '{}'", books.eu.0, books.alice)).await;

    let whole = tally_recon::check_ledger(&ledger.recon).await.expect("check the ledger");
    let mut found: Vec<(&str, Option<i32>)> = whole.findings.iter().map(|f| (f.check, f.ledger)).collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("ledger_trial_balance", Some(1)),
            ("ledger_trial_balance", Some(2)),
            ("transfer_ledger_mismatch", Some(1)),
            ("transfer_ledger_mismatch", Some(1)),
        ],
        "{:#?}",
        whole.findings
    );
    // Both of alice's transfers, each saying where the account is now.
    let mismatch = whole.findings.iter().find(|f| f.subject == books.first.0.to_string()).expect("the first transfer");
    assert_eq!(mismatch.check, "transfer_ledger_mismatch");
    assert!(mismatch.detail.contains(&format!("credit account {} (in ledger 2)", books.alice)), "{}", mismatch.detail);
    let usd = whole.findings.iter().find(|f| f.check == "ledger_trial_balance" && f.ledger == Some(1)).unwrap();
    assert_eq!(usd.subject, "USD");
    assert!(usd.detail.starts_with("ledger default (1)"), "{}", usd.detail);

    // The next end of day finds it in the account rows of both ledgers, and the account no
    // longer agrees with the snapshot of its (old) ledger.
    let report = ledger.end_of_day(datetime!(2026-03-12 09:00 UTC), "2026-03-11").await;
    assert_eq!(report.status, RunStatus::Findings);
    assert_eq!(
        failed(&report),
        [("account_balance_mismatch", 1), ("ledger_trial_balance", 2)],
        "{:#?}",
        report.findings
    );
    let trial: Vec<Option<i32>> =
        findings(&report, "ledger_trial_balance").iter().map(|f| f.ledger).collect::<Vec<_>>();
    assert_eq!(trial, [Some(1), Some(2)]);
    let moved = findings(&report, "account_balance_mismatch");
    assert_eq!((moved[0].account_id.as_deref(), moved[0].ledger), (Some(books.alice.to_string().as_str()), Some(2)));
    // Per ledger, with the counts of each.
    let by_ledger = &report.checks.iter().find(|c| c.check == "ledger_trial_balance").unwrap().by_ledger;
    assert_eq!(by_ledger.iter().map(|c| (c.ledger, c.findings)).collect::<Vec<_>>(), [(Some(1), 1), (Some(2), 1)]);
    let default = report.filtered(&[default_ref()]);
    assert_eq!(failed(&default), [("ledger_trial_balance", 1)]);
    assert!(default.findings.iter().all(|f| f.ledger == Some(1)));
}

/// A journal row moved to another ledger: its accounts are not of its ledger. The account rows
/// still balance in every ledger, so only the ledger check of the journal finds it.
#[tokio::test]
async fn a_journal_row_naming_accounts_of_another_ledger_is_found() {
    let ledger = ledger().await;
    let books = two_ledgers(&ledger).await;
    ledger.tamper(&format!("UPDATE transfers SET ledger_id = {} WHERE id = '{}'", books.eu.0, books.first.0)).await;

    let whole = tally_recon::check_ledger(&ledger.recon).await.expect("check the ledger");
    let [finding] = whole.findings.as_slice() else { panic!("{:#?}", whole.findings) };
    assert_eq!(
        (finding.check, finding.subject.as_str(), finding.ledger),
        ("transfer_ledger_mismatch", books.first.0.to_string().as_str(), Some(2))
    );
    assert!(
        finding
            .detail
            .contains(&format!("posted transfer of ledger 2 names debit account {} (in ledger 1)", books.bank)),
        "{}",
        finding.detail
    );

    // The day closes from its journal: the row moves its accounts in ledger 2, where they are
    // not, and their rows no longer agree with their own ledger's snapshots.
    let report = ledger.end_of_day(datetime!(2026-03-11 09:00 UTC), "2026-03-10").await;
    assert_eq!(report.status, RunStatus::Findings);
    assert_eq!(
        failed(&report),
        [("account_balance_mismatch", 2), ("transfer_ledger_mismatch", 2)],
        "{:#?}",
        report.findings
    );
    let moved = findings(&report, "transfer_ledger_mismatch");
    assert!(moved.iter().all(|f| f.ledger == Some(2)), "{moved:#?}");
    let mut accounts: Vec<&str> = moved.iter().filter_map(|f| f.account_id.as_deref()).collect();
    accounts.sort();
    let mut expected = [books.bank.to_string(), books.alice.to_string()];
    expected.sort();
    assert_eq!(accounts, expected);
    assert!(moved[0].detail.contains("journal of ledger 2 moves money on account"), "{}", moved[0].detail);
    // Each ledger sees its part.
    assert_eq!(failed(&report.filtered(&[default_ref()])), [("account_balance_mismatch", 2)]);
    assert_eq!(failed(&report.filtered(&[eu_ref()])), [("transfer_ledger_mismatch", 2)]);
}

/// A statement belongs to its account's ledger: its rows, its entries, its events, its report
/// and its findings; listings filter by ledger.
#[tokio::test]
async fn statements_belong_to_the_ledger_of_their_account() {
    let ledger = ledger().await;
    let eu = ledger.new_ledger("eu").await;
    let books = books_in(&ledger, eu).await;
    let outcome =
        import_statement(&ledger.recon, "bank-eur", &fixture("camt053_multi.xml"), &Default::default(), ACTOR)
            .await
            .expect("import");
    let report = only(&outcome.report);
    assert_outcome(report, &books);
    assert_eq!((report.ledger, report.ledger_code.as_str()), (2, "eu"));
    assert!(report.findings.iter().all(|f| f.ledger == Some(2)), "{:#?}", report.findings);
    assert_eq!(outcome.report.statements[0].ledger, Some(2));

    let client = ledger.db.connect().await;
    let row = client
        .query_one(
            "SELECT (SELECT array_agg(DISTINCT ledger_id) FROM statements), (SELECT array_agg(DISTINCT ledger_id) FROM statement_entries),
                    (SELECT array_agg(ledger_id ORDER BY type) FROM events WHERE type IN ('statement.imported', 'reconciliation.finished'))",
            &[],
        )
        .await
        .unwrap();
    let (statements, entries, events): (Vec<i32>, Vec<i32>, Vec<i32>) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((statements, entries, events), (vec![2], vec![2], vec![2, 2]));

    let listed = async |ledgers: Option<&[LedgerId]>| {
        let filter = StatementFilter { ledgers, ..StatementFilter::default() };
        list_statements(&ledger.recon, &filter, 10).await.expect("list statements")
    };
    let all = listed(None).await;
    assert_eq!(all.len(), 1);
    let listed_one = &all[0];
    assert_eq!(listed_one.id.to_string(), report.statement);
    assert_eq!((listed_one.ledger, listed_one.account_code.as_deref()), (2, Some("bank-eur")));
    assert_eq!((listed_one.opening.as_deref(), listed_one.closing.as_deref()), (Some("12500.00"), Some("14502.25")));
    assert_eq!((listed_one.status.as_deref(), listed_one.findings), (Some("findings"), Some(2)));
    assert_eq!(listed(Some(&[eu])).await, all);
    assert!(listed(Some(&[LedgerId::DEFAULT])).await.is_empty());
}

/// One file, statements of accounts in two ledgers: each statement is recorded in its
/// account's ledger, and each ledger's view of the file holds its statements.
#[tokio::test]
async fn a_file_mapped_to_accounts_of_two_ledgers_records_each_statement_in_its_ledger() {
    let ledger = ledger().await;
    let eu = ledger.new_ledger("eu").await;
    dutch_books_in(&ledger, eu).await;
    let outcome =
        import_file(&ledger.recon, &fixture("mt940_dutch.sta"), &dutch_mapping(), ACTOR).await.expect("import");
    let report = &outcome.report;
    let ledgers: Vec<(&str, Option<i32>)> = report.statements.iter().map(|s| (s.outcome.as_str(), s.ledger)).collect();
    assert_eq!(ledgers, [("imported", Some(1)), ("imported", Some(1)), ("imported", Some(2)), ("unmapped", None)]);
    let savings = report.statements[2].report.as_ref().expect("matched");
    assert_eq!((savings.ledger, savings.unmatched_statement, savings.unmatched_ledger), (2, 0, 0));

    let client = ledger.db.connect().await;
    let rows: Vec<(i32, i64)> = client
        .query("SELECT ledger_id, count(*) FROM statements GROUP BY 1 ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(rows, [(1, 2), (2, 1)]);

    let eu_view = report.filtered(&[eu_ref()]);
    let shown: Vec<&str> = eu_view.statements.iter().map(|s| s.outcome.as_str()).collect();
    assert_eq!(shown, ["imported", "unmapped"]);
    assert_eq!((eu_view.imported, eu_view.unmapped), (1, 1));
    let default_view = report.filtered(&[default_ref()]);
    assert_eq!((default_view.imported, default_view.unmapped), (2, 1));
    let in_default = list_statements(
        &ledger.recon,
        &StatementFilter { ledgers: Some(&[LedgerId::DEFAULT]), ..Default::default() },
        10,
    )
    .await
    .unwrap();
    assert_eq!(in_default.len(), 2);
    assert!(in_default[0].id > in_default[1].id, "newest first");
    let page = StatementFilter { before: Some(in_default[0].id), ..Default::default() };
    let rest = list_statements(&ledger.recon, &page, 10).await.unwrap();
    // Recorded in file order: the savings statement (the newest) is not older than the first page's.
    assert_eq!(rest.iter().map(|s| s.id).collect::<Vec<_>>(), [in_default[1].id]);
}
