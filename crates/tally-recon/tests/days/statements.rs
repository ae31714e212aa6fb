//! Bank statements imported for an account that mirrors the bank account in Tally, matched
//! against its journal: the fixtures of `tally-statement` (camt.053, MT940, CSV: the same seven
//! entries, with a batched collection, a reversal and a bank charge).

use crate::support::*;
use tally_core::{AccountId, TransferId, TransferKind, TransferRequest};
use tally_recon::report::{RunStatus, StatementReport};
use tally_recon::statement::{ImportOptions, import_statement};
use tally_statement::{BalancePoint, CsvLayout, CsvStatementInfo, Format};
use time::OffsetDateTime;
use time::macros::{date, datetime};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../tally-statement/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Books {
    bank: AccountId,
    lost: TransferId,
}

fn with(request: TransferRequest, reference: Option<&str>, counterparty: Option<&str>) -> TransferRequest {
    TransferRequest {
        reference: reference.map(str::to_owned),
        metadata: counterparty.map(|c| serde_json::json!({"counterparty": c})),
        ..request
    }
}

/// The bank account's side in Tally for the statement's week, plus one transfer the bank never
/// saw (50.00 on the 5th).
async fn books(ledger: &Ledger) -> Books {
    let bank = ledger.open_in("bank-eur", "EUR").await;
    let equity = ledger.open_in("equity", "EUR").await;
    let receivables = ledger.open_in("receivables", "EUR").await;
    let payables = ledger.open_in("payables", "EUR").await;
    let fees = ledger.open_in("bank-fees", "EUR").await;
    let at = |when: OffsetDateTime, r: TransferRequest| async move { ledger.post_at(when, r).await };
    at(datetime!(2026-03-01 12:00 UTC), posted(equity, bank, 12_500_00)).await;
    at(datetime!(2026-03-02 09:00 UTC), with(posted(receivables, bank, 2_380_00), Some("INV-2026-0142"), None)).await;
    let order = at(datetime!(2026-03-03 09:00 UTC), with(posted(bank, payables, 845_50), Some("PO-88123"), None)).await;
    for (reference, amount) in [("SUB-1001", 150_00), ("SUB-1002", 275_25), ("SUB-1003", 99_90)] {
        at(datetime!(2026-03-04 06:00 UTC), with(posted(receivables, bank, amount), Some(reference), None)).await;
    }
    let rent = posted(bank, payables, 1_200_00);
    at(datetime!(2026-03-04 08:00 UTC), with(rent, None, Some("Immobilien Verwaltung Nord GmbH"))).await;
    let undo = acting(TransferKind::Reversal, order, None);
    at(datetime!(2026-03-05 10:00 UTC), with(undo, Some("PO-88123"), None)).await;
    at(datetime!(2026-03-05 23:00 UTC), posted(bank, fees, 12_90)).await;
    let lost =
        at(datetime!(2026-03-05 12:00 UTC), with(posted(receivables, bank, 50_00), Some("INV-LOST"), None)).await;
    // The customer paid 310.00 in two parts that the bank booked as one.
    at(datetime!(2026-03-06 08:00 UTC), posted(receivables, bank, 200_00)).await;
    at(datetime!(2026-03-06 08:01 UTC), posted(receivables, bank, 110_00)).await;
    ledger.clock(datetime!(2026-03-09 09:00 UTC));
    Books { bank, lost }
}

async fn import(ledger: &Ledger, bytes: &[u8], options: &ImportOptions) -> tally_recon::statement::ImportOutcome {
    import_statement(&ledger.recon, "bank-eur", bytes, options, ACTOR).await.expect("import")
}

/// What every format of the fixture must come to against `books`.
fn assert_outcome(report: &StatementReport, books: &Books) {
    assert_eq!(report.account_id, books.bank.to_string());
    assert_eq!((report.statement_entries, report.matched, report.unmatched_statement), (7, 7, 0), "{report:#?}");
    assert_eq!(report.unmatched_ledger, 1);
    assert_eq!(report.status, RunStatus::Findings);
    let checks: Vec<&str> = report.findings.iter().map(|f| f.check.as_str()).collect();
    assert_eq!(checks, ["unmatched_in_tally", "balance_break"], "{:#?}", report.findings);
    let lost = &report.findings[0];
    assert_eq!(lost.transfer_id.as_deref(), Some(books.lost.0.to_string().as_str()));
    assert_eq!(lost.found.as_deref(), Some("50.00"));
    // The opening agrees; the closing is 50.00 short of Tally's, by the transfer the bank never saw.
    let balances: Vec<(&str, &str, &str, &str, &str)> = report
        .balances
        .iter()
        .map(|b| (b.which.as_str(), b.date.as_str(), b.statement.as_str(), b.tally.as_str(), b.difference.as_str()))
        .collect();
    assert_eq!(
        balances,
        [
            ("opening", "2026-03-02", "12500.00", "12500.00", "0.00"),
            ("closing", "2026-03-06", "14502.25", "14552.25", "-50.00")
        ]
    );
    // The two-part payment is one bank entry: one statement entry, two transfers.
    let split = report.matches.iter().find(|m| m.amount == "310.00").expect("the 310.00 entry matched");
    assert_eq!((split.rule.as_str(), split.transfer_ids.len()), ("one_to_many", 2));
    let collection = report.matches.iter().find(|m| m.amount == "525.15").expect("the collection matched");
    assert_eq!((collection.rule.as_str(), collection.transfer_ids.len()), ("one_to_many", 3));
    let reversal = report.matches.iter().filter(|m| m.amount.ends_with("845.50")).count();
    assert_eq!(reversal, 2, "the order and its reversal, by reference and sign");
    assert!(report.matches.iter().any(|m| m.amount == "-12.90" && m.rule == "amount_date_counterparty"));
}

#[tokio::test]
async fn a_camt053_statement_imports_and_matches_and_a_second_import_changes_nothing() {
    let ledger = ledger().await;
    let books = books(&ledger).await;
    let bytes = fixture("camt053_multi.xml");
    let first = import(&ledger, &bytes, &ImportOptions::default()).await;
    assert!(first.created);
    assert_eq!(first.report.format, "camt053");
    assert_outcome(&first.report, &books);
    assert!(first.report.matches.iter().any(|m| m.amount == "-1200.00" && m.rule == "amount_date_counterparty"));

    let counts = ledger.db.row_counts().await;
    let runs = async |client: &tokio_postgres::Client| {
        let row = client
            .query_one("SELECT (SELECT count(*) FROM statements), (SELECT count(*) FROM statement_entries), (SELECT count(*) FROM reconciliation_runs)", &[])
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, i64>(2))
    };
    let client = ledger.db.connect().await;
    assert_eq!(runs(&client).await, (1, 7, 1));
    let again = import(&ledger, &bytes, &ImportOptions::default()).await;
    assert!(!again.created);
    assert_eq!((again.statement_id, &again.report), (first.statement_id, &first.report));
    assert_eq!(ledger.db.row_counts().await, counts);
    assert_eq!(runs(&client).await, (1, 7, 1));

    // Another file under the same statement id is refused, and writes nothing.
    let text = String::from_utf8(bytes).unwrap().replace("Kontoführungsgebühr", "Kontogebühr");
    let refused = import_statement(&ledger.recon, "bank-eur", text.as_bytes(), &ImportOptions::default(), ACTOR)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "statement_exists_with_different_content");
    assert_eq!(runs(&client).await, (1, 7, 1));
}

#[tokio::test]
async fn an_mt940_statement_imports_and_matches() {
    let ledger = ledger().await;
    let books = books(&ledger).await;
    let outcome = import(&ledger, &fixture("mt940_multi.sta"), &ImportOptions::default()).await;
    assert_eq!(outcome.report.format, "mt940");
    assert_eq!(outcome.report.statement_ref, "STARTUMS260306/00045/001");
    assert_outcome(&outcome.report, &books);
}

#[tokio::test]
async fn a_csv_export_imports_with_its_column_layout() {
    let ledger = ledger().await;
    let books = books(&ledger).await;
    let layout = CsvLayout {
        date: "Booking Date".into(),
        value_date: Some("Value Date".into()),
        amount: "Amount (EUR)".into(),
        reference: Some("End-to-End Reference".into()),
        counterparty: Some("Counterparty".into()),
        description: Some("Payment Details".into()),
        ..CsvLayout::default()
    };
    let info = CsvStatementInfo {
        statement_id: "export-2026-w10".into(),
        account: "DE89370400440532013000".into(),
        currency: Some("EUR".into()),
        opening: Some(BalancePoint { date: date!(2026 - 03 - 02), amount: 12_500_00 }),
        closing: Some(BalancePoint { date: date!(2026 - 03 - 06), amount: 14_502_25 }),
    };
    let options = ImportOptions { format: Some(Format::Csv), csv: Some((layout, info)), ..ImportOptions::default() };
    let outcome = import(&ledger, &fixture("statement.csv"), &options).await;
    assert_eq!(outcome.report.format, "csv");
    assert_outcome(&outcome.report, &books);
}

#[tokio::test]
async fn broken_or_foreign_statements_are_refused_with_their_place_and_write_nothing() {
    let ledger = ledger().await;
    books(&ledger).await;
    ledger.open_in("bank-usd", "USD").await;
    let camt = String::from_utf8(fixture("camt053_multi.xml")).unwrap();
    let mt940 = String::from_utf8(fixture("mt940_multi.sta")).unwrap();
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "bank-eur",
            camt.replacen("<Amt Ccy=\"EUR\">845.50</Amt>", "<Amt Ccy=\"EUR\">84x.50</Amt>", 1),
            "statement_amount_invalid",
            "Ntry[2]",
        ),
        ("bank-eur", camt[..camt.len() / 2].to_owned(), "statement_malformed", ""),
        (
            "bank-eur",
            mt940.replace(":62F:C260306EUR14502,25", ":62F:C260306EUR14502,26"),
            "statement_balance_mismatch",
            "line",
        ),
        ("bank-eur", mt940.replace(":61:2603050305DR12,90", ":61:2613050305DR12,90"), "statement_date_invalid", "line"),
        ("bank-eur", "Booking Date,Amount\n2026-03-02,12\n".to_owned(), "statement_format_unknown", ""),
        ("bank-usd", camt.clone(), "statement_currency_mismatch", ""),
    ];
    let before = ledger.db.row_counts().await;
    for (account, text, code, place) in cases {
        let error = import_statement(&ledger.recon, account, text.as_bytes(), &ImportOptions::default(), ACTOR)
            .await
            .unwrap_err();
        assert_eq!(error.code(), code, "{error}");
        assert!(error.to_string().contains(place), "{code}: {error} names {place}");
    }
    let missing =
        import_statement(&ledger.recon, "nobody", camt.as_bytes(), &ImportOptions::default(), ACTOR).await.unwrap_err();
    assert_eq!(missing.code(), "account_not_found");
    assert_eq!(ledger.db.row_counts().await, before);
    let client = ledger.db.connect().await;
    let written: i64 = client
        .query_one("SELECT (SELECT count(*) FROM statements) + (SELECT count(*) FROM reconciliation_runs)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 0);
}
