//! Bank statements imported for an account that mirrors the bank account in Tally, matched
//! against its journal: the fixtures of `tally-statement` (camt.053, MT940, CSV: the same seven
//! entries, with a batched collection, a reversal and a bank charge), and files of several
//! statements for several bank accounts, mapped to their Tally accounts.

use crate::support::*;
use tally_core::{AccountId, TransferId, TransferKind, TransferRequest};
use tally_recon::report::{FileReport, RunStatus, StatementReport};
use tally_recon::statement::{ImportOptions, import_file, import_statement};
use tally_statement::{BalancePoint, CsvLayout, CsvStatementInfo, Format};
use time::OffsetDateTime;
use time::macros::{date, datetime};

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../tally-statement/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub(crate) struct Books {
    pub bank: AccountId,
    pub lost: TransferId,
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
    books_in(ledger, tally_core::LedgerId::DEFAULT).await
}

/// `books`, every account in `in_ledger`.
pub(crate) async fn books_in(ledger: &Ledger, in_ledger: tally_core::LedgerId) -> Books {
    let bank = ledger.open_in_ledger(in_ledger, "bank-eur", "EUR").await;
    let equity = ledger.open_in_ledger(in_ledger, "equity", "EUR").await;
    let receivables = ledger.open_in_ledger(in_ledger, "receivables", "EUR").await;
    let payables = ledger.open_in_ledger(in_ledger, "payables", "EUR").await;
    let fees = ledger.open_in_ledger(in_ledger, "bank-fees", "EUR").await;
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

/// The report of the file's one statement.
pub(crate) fn only(report: &FileReport) -> &StatementReport {
    assert_eq!(report.statements.len(), 1, "{report:#?}");
    report.statements[0].report.as_ref().expect("the statement was imported")
}

/// What every format of the fixture must come to against `books`.
pub(crate) fn assert_outcome(report: &StatementReport, books: &Books) {
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
    assert_eq!((first.report.imported, first.report.already_imported, first.report.unmapped), (1, 0, 0));
    let statement = only(&first.report);
    assert_outcome(statement, &books);
    assert_eq!(first.only_statement().map(|id| id.to_string()).as_deref(), Some(statement.statement.as_str()));
    assert!(statement.matches.iter().any(|m| m.amount == "-1200.00" && m.rule == "amount_date_counterparty"));

    let counts = ledger.db.row_counts().await;
    let runs = async |client: &tokio_postgres::Client| {
        let row = client
            .query_one("SELECT (SELECT count(*) FROM statements), (SELECT count(*) FROM statement_entries), (SELECT count(*) FROM reconciliation_runs)", &[])
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, i64>(2))
    };
    let client = ledger.db.connect().await;
    // One run for the statement, one for the file.
    assert_eq!(runs(&client).await, (1, 7, 2));
    let again = import(&ledger, &bytes, &ImportOptions::default()).await;
    assert!(!again.created);
    assert_eq!((again.file_id, &again.report), (first.file_id, &first.report));
    assert_eq!(ledger.db.row_counts().await, counts);
    assert_eq!(runs(&client).await, (1, 7, 2));

    // Another file under the same statement id is refused, and writes nothing.
    let text = String::from_utf8(bytes).unwrap().replace("Kontoführungsgebühr", "Kontogebühr");
    let refused = import_statement(&ledger.recon, "bank-eur", text.as_bytes(), &ImportOptions::default(), ACTOR)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "statement_exists_with_different_content");
    assert_eq!(runs(&client).await, (1, 7, 2));
}

#[tokio::test]
async fn an_mt940_statement_imports_and_matches() {
    let ledger = ledger().await;
    let books = books(&ledger).await;
    let outcome = import(&ledger, &fixture("mt940_multi.sta"), &ImportOptions::default()).await;
    assert_eq!(outcome.report.format, "mt940");
    let statement = only(&outcome.report);
    // :20: and :28C: with the closing day: banks repeat the first two every day.
    assert_eq!(statement.statement_ref, "STARTUMS260306/00045/001/2026-03-06");
    assert_outcome(statement, &books);
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
    assert_outcome(only(&outcome.report), &books);
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

/// The Tally side of the Dutch fixture's bank accounts: a current account and a savings account
/// (the file's third bank account is not kept in Tally).
pub(crate) struct DutchBooks {
    pub jansen: TransferId,
    pub order: TransferId,
    pub invoice: TransferId,
    pub fee: TransferId,
    pub saving: TransferId,
}

async fn dutch_books(ledger: &Ledger) -> DutchBooks {
    dutch_books_in(ledger, tally_core::LedgerId::DEFAULT).await
}

/// `dutch_books` with the savings account, and the equity that pays into it, in
/// `savings_ledger` (a transfer stays inside one ledger).
pub(crate) async fn dutch_books_in(ledger: &Ledger, savings_ledger: tally_core::LedgerId) -> DutchBooks {
    let main = ledger.open_in("bank-nl-main", "EUR").await;
    let savings = ledger.open_in_ledger(savings_ledger, "bank-nl-savings", "EUR").await;
    let equity = ledger.open_in("equity", "EUR").await;
    let savings_equity = match savings_ledger {
        tally_core::LedgerId::DEFAULT => equity,
        other => ledger.open_in_ledger(other, "savings-equity", "EUR").await,
    };
    let receivables = ledger.open_in("receivables", "EUR").await;
    let payables = ledger.open_in("payables", "EUR").await;
    let fees = ledger.open_in("bank-fees", "EUR").await;
    let at = |when: OffsetDateTime, r: TransferRequest| async move { ledger.post_at(when, r).await };
    at(datetime!(2026-03-01 12:00 UTC), posted(equity, main, 10_000_00)).await;
    at(datetime!(2026-03-01 12:00 UTC), posted(savings_equity, savings, 50_000_00)).await;
    // By the end-to-end id the customer gave.
    let jansen =
        at(datetime!(2026-03-02 09:00 UTC), with(posted(receivables, main, 1_500_00), Some("E2E-NL-0117"), None)).await;
    // Booked under another name, but the bank and Tally agree on the IBAN.
    let order = posted(main, payables, 850_00);
    let order = TransferRequest {
        metadata: Some(serde_json::json!({"counterparty": "DV Office", "counterparty_iban": "NL20 INGB 0001 2345 67"})),
        ..order
    };
    let order = at(datetime!(2026-03-02 10:00 UTC), order).await;
    // The invoice amount; the bank booked it less 1.50 of charges.
    let invoice =
        at(datetime!(2026-03-02 11:00 UTC), with(posted(receivables, main, 100_00), Some("2026-INV-77"), None)).await;
    let fee = at(datetime!(2026-03-03 08:00 UTC), posted(main, fees, 25_00)).await;
    let saving = at(
        datetime!(2026-03-03 09:00 UTC),
        with(posted(savings_equity, savings, 10_000_00), Some("SAV-2026-03"), None),
    )
    .await;
    ledger.clock(datetime!(2026-03-09 09:00 UTC));
    DutchBooks { jansen, order, invoice, fee, saving }
}

pub(crate) fn dutch_mapping() -> ImportOptions {
    ImportOptions {
        mapping: vec![
            ("NL91 ABNA 0417 1643 00".to_owned(), "bank-nl-main".to_owned()),
            ("NL02ABNA0123456789".to_owned(), "bank-nl-savings".to_owned()),
        ],
        ..ImportOptions::default()
    }
}

/// (rule, transfer ids, amount, difference) of a report's matches.
fn matches_of(report: &StatementReport) -> Vec<(&str, Vec<&str>, &str, &str)> {
    report
        .matches
        .iter()
        .map(|m| {
            (
                m.rule.as_str(),
                m.transfer_ids.iter().map(String::as_str).collect(),
                m.amount.as_str(),
                m.difference.as_str(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_file_for_several_bank_accounts_is_mapped_matched_and_reported_whole() {
    let ledger = ledger().await;
    let books = dutch_books(&ledger).await;
    let bytes = fixture("mt940_dutch.sta");
    let outcome = import_file(&ledger.recon, &bytes, &dutch_mapping(), ACTOR).await.expect("import");
    assert!(outcome.created);
    let report = &outcome.report;
    assert_eq!((report.format.as_str(), report.imported, report.already_imported, report.unmapped), ("mt940", 3, 0, 1));
    assert_eq!(report.status, RunStatus::Findings);
    let summary: Vec<(&str, &str, Option<&str>)> = report
        .statements
        .iter()
        .map(|s| (s.statement_ref.as_str(), s.outcome.as_str(), s.account_code.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("ABN260302A/00031/1/2026-03-02", "imported", Some("bank-nl-main")),
            ("ABN260303A/00032/1/2026-03-03", "imported", Some("bank-nl-main")),
            ("ABN260303B/00007/1/2026-03-03", "imported", Some("bank-nl-savings")),
            ("ABN260303C/00003/1/2026-03-03", "unmapped", None),
        ]
    );
    // The unmapped statement is reported, never dropped silently.
    let [unmapped] = report.findings.as_slice() else { panic!("{:#?}", report.findings) };
    assert_eq!((unmapped.check.as_str(), unmapped.subject.as_str()), ("unmapped_statement", "NL75ABNA0555555555"));
    assert!(unmapped.detail.contains("--map NL75ABNA0555555555=ACCOUNT"), "{}", unmapped.detail);
    let left_out = &report.statements[3];
    assert_eq!(
        (left_out.closing.as_deref(), left_out.entries, left_out.statement.as_deref()),
        (Some("200.00"), 1, None)
    );
    let header_notes = report.notes.iter().filter(|n| n.code == "header_skipped").count();
    assert_eq!(header_notes, 12);

    let id = |t: TransferId| t.0.to_string();
    let day_one = report.statements[0].report.as_ref().expect("matched");
    let (jansen, order, invoice) = (id(books.jansen), id(books.order), id(books.invoice));
    assert_eq!(
        matches_of(day_one),
        [
            ("reference", vec![jansen.as_str()], "1500.00", "0.00"),
            // The bank deducted 1.50: matched on the amount before charges, the charges the difference.
            ("reference", vec![invoice.as_str()], "98.50", "-1.50"),
            ("amount_date_counterparty", vec![order.as_str()], "-850.00", "0.00"),
        ]
    );
    assert_eq!((day_one.unmatched_statement, day_one.unmatched_ledger), (0, 0));
    assert_eq!(day_one.balance_difference.as_deref(), Some("0.00"));
    // Tally booked the invoice's full 100.00: its balance is 1.50 above the bank's.
    let checks: Vec<(&str, Option<&str>)> =
        day_one.findings.iter().map(|f| (f.check.as_str(), f.difference.as_deref())).collect();
    assert_eq!(checks, [("balance_break", Some("-1.50"))]);

    let day_two = report.statements[1].report.as_ref().expect("matched");
    let fee = id(books.fee);
    assert_eq!(matches_of(day_two), [("amount_date_counterparty", vec![fee.as_str()], "-25.00", "0.00")]);

    // The savings statement does not add up: imported, matched, and the difference reported.
    let savings = report.statements[2].report.as_ref().expect("matched");
    let saving = id(books.saving);
    assert_eq!(matches_of(savings), [("reference", vec![saving.as_str()], "10000.00", "0.00")]);
    assert_eq!(savings.balance_difference.as_deref(), Some("10.00"));
    let difference = savings.findings.iter().find(|f| f.check == "statement_balance_difference").expect("reported");
    assert_eq!(
        (difference.expected.as_deref(), difference.found.as_deref(), difference.difference.as_deref()),
        (Some("60000.00"), Some("60010.00"), Some("10.00"))
    );
    assert_eq!(report.statements[2].balance_difference.as_deref(), Some("10.00"));

    // Stored: the statements, their entries with what the dialect carried, and the file's report.
    let client = ledger.db.connect().await;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM statements WHERE file_id = $1), (SELECT count(*) FROM statement_files),
                    (SELECT balance_difference::text FROM statements WHERE statement_ref LIKE 'ABN260303B%'),
                    (SELECT charges->>'amount' FROM statement_entries WHERE end_to_end_id IS NULL AND charges IS NOT NULL),
                    (SELECT count(*) FROM statement_entries WHERE counterparty_iban IS NOT NULL)",
            &[&outcome.file_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
    assert_eq!(row.get::<_, i64>(1), 1);
    assert_eq!(row.get::<_, String>(2), "1000");
    assert_eq!(row.get::<_, String>(3), "1.50");
    assert_eq!(row.get::<_, i64>(4), 3);
    assert_eq!(tally_recon::statement::file_report(&ledger.recon, outcome.file_id).await.unwrap(), *report);
    let shown =
        tally_recon::statement::statement_report(&ledger.recon, savings.statement.parse().unwrap()).await.unwrap();
    assert_eq!(&shown, savings);

    // The same file again writes nothing and answers its report.
    let counts = ledger.db.row_counts().await;
    let again = import_file(&ledger.recon, &bytes, &dutch_mapping(), ACTOR).await.expect("again");
    assert!(!again.created);
    assert_eq!((again.file_id, &again.report), (outcome.file_id, report));
    assert_eq!(ledger.db.row_counts().await, counts);

    // Mapped now, the statement left out is imported; the others were imported before.
    ledger.open_in("club", "EUR").await;
    let mut options = dutch_mapping();
    options.mapping.push(("NL75ABNA0555555555".to_owned(), "club".to_owned()));
    let third = import_file(&ledger.recon, &bytes, &options, ACTOR).await.expect("with the club");
    assert!(third.created);
    assert_eq!(third.file_id, outcome.file_id);
    assert_eq!((third.report.imported, third.report.already_imported, third.report.unmapped), (1, 3, 0));
    let outcomes: Vec<&str> = third.report.statements.iter().map(|s| s.outcome.as_str()).collect();
    assert_eq!(outcomes, ["already_imported", "already_imported", "already_imported", "imported"]);
    assert_eq!(third.report.statements[0].statement, report.statements[0].statement);
}

#[tokio::test]
async fn mappings_that_cannot_work_are_refused_and_write_nothing() {
    let ledger = ledger().await;
    dutch_books(&ledger).await;
    ledger.open_in("bank-usd", "USD").await;
    let bytes = fixture("mt940_dutch.sta");
    let map = |entries: &[(&str, &str)]| ImportOptions {
        mapping: entries.iter().map(|(bank, tally)| ((*bank).to_owned(), (*tally).to_owned())).collect(),
        ..ImportOptions::default()
    };
    let cases: Vec<(ImportOptions, &str, &str)> = vec![
        (ImportOptions::default(), "statement_mapping_invalid", "--account"),
        // One account for a file of three bank accounts: which one is it?
        (
            ImportOptions { account: Some("bank-nl-main".into()), ..ImportOptions::default() },
            "statement_mapping_ambiguous",
            "3 bank accounts",
        ),
        (map(&[("DE89370400440532013000", "bank-nl-main")]), "statement_mapping_invalid", "no statement"),
        (map(&[("NL91ABNA0417164300", "bank-usd")]), "statement_currency_mismatch", "EUR"),
        (map(&[("NL91ABNA0417164300", "nobody")]), "account_not_found", "nobody"),
        (
            map(&[("NL91ABNA0417164300", "bank-nl-main"), ("NL91ABNA0417164300EUR", "bank-nl-savings")]),
            "statement_mapping_invalid",
            "two Tally accounts",
        ),
    ];
    let before = ledger.db.row_counts().await;
    for (options, code, needle) in cases {
        let error = import_file(&ledger.recon, &bytes, &options, ACTOR).await.unwrap_err();
        assert_eq!(error.code(), code, "{error}");
        assert!(error.to_string().contains(needle), "{error}");
    }
    assert_eq!(ledger.db.row_counts().await, before);
    let client = ledger.db.connect().await;
    let written: i64 = client
        .query_one("SELECT (SELECT count(*) FROM statement_files) + (SELECT count(*) FROM statements)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 0);

    // --account with --map: the account serves the one bank account the mapping leaves.
    let options = ImportOptions {
        account: Some("bank-nl-main".into()),
        ..map(&[("NL02ABNA0123456789", "bank-nl-savings"), ("NL75ABNA0555555555", "equity")])
    };
    let outcome = import_file(&ledger.recon, &bytes, &options, ACTOR).await.expect("mapped");
    assert_eq!((outcome.report.imported, outcome.report.unmapped), (4, 0));
}

#[tokio::test]
async fn pages_and_days_of_one_account_with_one_account_named() {
    let ledger = ledger().await;
    ledger.open_in("bank-eur", "EUR").await;
    ledger.clock(datetime!(2026-03-20 09:00 UTC));
    let outcome = import(&ledger, &fixture("mt940_paged.sta"), &ImportOptions::default()).await;
    let pages: Vec<(i64, i64, &str)> =
        outcome.report.statements.iter().map(|s| (s.pages, s.entries, s.outcome.as_str())).collect();
    assert_eq!(pages, [(3, 5, "imported"), (1, 1, "imported")]);
    assert_eq!(outcome.only_statement(), None);
    let first = outcome.report.statements[0].report.as_ref().expect("matched");
    assert_eq!((first.pages, first.unmatched_statement), (3, 5));
}

#[tokio::test]
async fn the_same_file_imported_twice_at_once_is_recorded_once() {
    let ledger = ledger().await;
    dutch_books(&ledger).await;
    let bytes = fixture("mt940_dutch.sta");
    let options = dutch_mapping();
    let (first, second) = tokio::join!(
        import_file(&ledger.recon, &bytes, &options, ACTOR),
        import_file(&ledger.recon, &bytes, &options, ACTOR)
    );
    let (first, second) = (first.expect("first"), second.expect("second"));
    assert_eq!(first.file_id, second.file_id);
    assert_eq!([first.created, second.created].iter().filter(|created| **created).count(), 1);
    assert_eq!(first.report, second.report);
    let client = ledger.db.connect().await;
    let row = client
        .query_one("SELECT (SELECT count(*) FROM statements), (SELECT count(*) FROM statement_files)", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (3, 1));
}
