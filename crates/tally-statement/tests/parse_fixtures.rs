//! Each fixture parses into exactly the statement a person reading the file would write down.

mod common;

use tally_statement::{
    BalancePoint, CsvLayout, CsvStatementInfo, Entry, EntryDetail, Format, OtherAmount, ParseOptions, Statement,
    StatementFile, check_arithmetic, parse, parse_camt, parse_csv, parse_mt940,
};
use time::Date;
use time::macros::date;

const CAMT: &[u8] = include_bytes!("fixtures/camt053_multi.xml");
const MT940: &[u8] = include_bytes!("fixtures/mt940_multi.sta");
const CSV: &[u8] = include_bytes!("fixtures/statement.csv");

/// An entry with the fields every format has; the rest is filled in per test.
fn entry(location: &str, booking_date: Date, value_date: Date, amount: i128) -> Entry {
    Entry { value_date: Some(value_date), ..Entry::booked(location, booking_date, amount) }
}

fn options() -> ParseOptions<'static> {
    ParseOptions::with_scale(2)
}

/// The file as the importer reads it: format detected, every currency at scale 2.
fn read(bytes: &[u8]) -> StatementFile {
    let format = Format::detect(bytes).expect("the format is recognised");
    parse(format, bytes, &options(), None).unwrap_or_else(|error| panic!("{error}"))
}

/// The one statement of a file.
fn only(file: StatementFile) -> Statement {
    assert_eq!(file.statements.len(), 1, "{:?}", file.statements);
    file.statements.into_iter().next().expect("one statement")
}

fn amount(currency: &str, amount: &str, minor: Option<i128>) -> Option<OtherAmount> {
    Some(OtherAmount { currency: currency.to_owned(), amount: amount.to_owned(), minor })
}

fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

fn assert_entries(actual: &[Entry], expected: &[Entry]) {
    assert_eq!(actual.len(), expected.len());
    for (actual, expected) in actual.iter().zip(expected) {
        assert_eq!(actual, expected, "entry at {}", expected.location);
    }
}

#[test]
fn camt053_fixture() {
    assert_eq!(Format::detect(CAMT), Some(Format::Camt053));
    let file = read(CAMT);
    assert_eq!((file.message.as_deref(), file.encoding.as_str()), (Some("camt.053.001.08"), "UTF-8"));
    assert!(file.notes.is_empty());
    let statement = only(file);
    assert_eq!(statement.format, Format::Camt053);
    assert_eq!(statement.statement_id, "0532013000-2026-00045");
    assert_eq!(statement.account, "DE89370400440532013000");
    assert_eq!(statement.currency.as_deref(), Some("EUR"));
    assert_eq!(statement.sequence.as_deref(), Some("45"));
    assert_eq!(statement.opening, Some(BalancePoint { date: date!(2026 - 03 - 02), amount: 1_250_000 }));
    assert_eq!(statement.closing, Some(BalancePoint { date: date!(2026 - 03 - 06), amount: 1_450_225 }));

    let expected = [
        Entry {
            reference: some("INV-2026-0142"),
            bank_reference: some("2026030200012345"),
            end_to_end_id: some("INV-2026-0142"),
            counterparty: some("Müller Maschinenbau GmbH"),
            counterparty_iban: some("DE44500105175407324931"),
            description: some("Rechnung INV-2026-0142"),
            bank_code: some("PMNT/RCDT/ESCT"),
            ..entry("Ntry[1]", date!(2026 - 03 - 02), date!(2026 - 03 - 02), 238_000)
        },
        Entry {
            reference: some("PO-88123"),
            bank_reference: some("2026030300023456"),
            end_to_end_id: some("PO-88123"),
            counterparty: some("Bürobedarf Schmidt KG"),
            counterparty_iban: some("DE02120300000000202051"),
            description: some("Bestellung PO-88123 Büromaterial März"),
            bank_code: some("PMNT/ICDT/ESCT"),
            ..entry("Ntry[2]", date!(2026 - 03 - 03), date!(2026 - 03 - 03), -84_550)
        },
        Entry {
            reference: some("COLL-2026-03-A"),
            bank_reference: some("2026030400034567"),
            counterparty: None,
            description: some("SEPA-Lastschrift Sammler COLL-2026-03-A"),
            bank_code: some("PMNT/IDDT/ESDD"),
            details: vec![
                EntryDetail { amount: 15_000, reference: some("SUB-1001"), counterparty: some("Anna Becker") },
                EntryDetail { amount: 27_525, reference: some("SUB-1002"), counterparty: some("Jonas Weber") },
                EntryDetail { amount: 9_990, reference: some("SUB-1003"), counterparty: some("Lena Fischer") },
            ],
            ..entry("Ntry[3]", date!(2026 - 03 - 04), date!(2026 - 03 - 04), 52_515)
        },
        Entry {
            reference: some("RENT-2026-03"),
            bank_reference: some("2026030400034999"),
            end_to_end_id: some("RENT-2026-03"),
            counterparty: some("Immobilien Verwaltung Nord GmbH"),
            description: some("Miete März 2026 Büro"),
            bank_code: some("PMNT/ICDT/STDO"),
            ..entry("Ntry[4]", date!(2026 - 03 - 04), date!(2026 - 03 - 04), -120_000)
        },
        Entry {
            reversal: true,
            reference: some("PO-88123"),
            bank_reference: some("2026030500045678"),
            end_to_end_id: some("PO-88123"),
            // A reversal keeps the parties of the payment it reverses: the creditor of the
            // original debit is the other party.
            counterparty: some("Bürobedarf Schmidt KG"),
            description: some("Rücküberweisung: Konto erloschen (AC04)"),
            bank_code: some("PMNT/ICDT/RRTN"),
            ..entry("Ntry[5]", date!(2026 - 03 - 05), date!(2026 - 03 - 03), 84_550)
        },
        Entry {
            reference: some("2026030500099881"),
            bank_reference: some("2026030500099881"),
            description: some("Kontoführungsgebühr 02/2026"),
            bank_code: some("ACMT/MDOP/CHRG"),
            ..entry("Ntry[6]", date!(2026 - 03 - 05), date!(2026 - 03 - 05), -1_290)
        },
        Entry {
            // NOTPROVIDED is no reference: the bank's reference stands in.
            reference: some("2026030600056789"),
            bank_reference: some("2026030600056789"),
            counterparty: some("Hoffmann & Söhne OHG"),
            description: some("Rechnung 2026-77"),
            bank_code: some("PMNT/RCDT/ESCT"),
            ..entry("Ntry[7]", date!(2026 - 03 - 06), date!(2026 - 03 - 05), 31_000)
        },
    ];
    assert_entries(&statement.entries, &expected);
    assert_eq!(check_arithmetic(&statement), Ok(()));
    assert_eq!(parse_camt(CAMT, &options()).map(only).as_ref(), Ok(&statement));
}

#[test]
fn mt940_fixture() {
    assert_eq!(Format::detect(MT940), Some(Format::Mt940));
    let statement = only(read(MT940));
    assert_eq!(statement.format, Format::Mt940);
    assert_eq!(statement.statement_id, "STARTUMS260306");
    assert_eq!(statement.account, "37040044/0532013000");
    assert_eq!(statement.currency.as_deref(), Some("EUR"));
    assert_eq!(statement.sequence.as_deref(), Some("00045/001"));
    assert_eq!(statement.opening, Some(BalancePoint { date: date!(2026 - 03 - 02), amount: 1_250_000 }));
    assert_eq!(statement.closing, Some(BalancePoint { date: date!(2026 - 03 - 06), amount: 1_450_225 }));

    let expected = [
        Entry {
            reference: some("INV-2026-0142"),
            bank_reference: some("2026030200012345"),
            end_to_end_id: some("INV-2026-0142"),
            counterparty: some("Mueller Maschinenbau GmbH"),
            counterparty_iban: some("DE44500105175407324931"),
            description: some("Rechnung INV-2026-0142"),
            bank_code: some("NTRF"),
            ..entry("line 6", date!(2026 - 03 - 02), date!(2026 - 03 - 02), 238_000)
        },
        Entry {
            reference: some("PO-88123"),
            bank_reference: some("2026030300023456"),
            end_to_end_id: some("PO-88123"),
            counterparty: some("Buerobedarf Schmidt KG"),
            counterparty_iban: some("DE02120300000000202051"),
            description: some("Bestellung PO-88123 Bueromaterial Maerz"),
            bank_code: some("NTRF"),
            ..entry("line 10", date!(2026 - 03 - 03), date!(2026 - 03 - 03), -84_550)
        },
        Entry {
            reference: some("COLL-2026-03-A"),
            bank_reference: some("2026030400034567"),
            description: some("Sammler COLL-2026-03-A, 3 Lastschriften Abo Maerz 2026"),
            bank_code: some("NDDT"),
            // The supplementary details of :61: carry the original amount.
            original_amount: amount("EUR", "525.15", Some(52_515)),
            ..entry("line 14", date!(2026 - 03 - 04), date!(2026 - 03 - 04), 52_515)
        },
        Entry {
            reference: some("RENT-2026-03"),
            bank_reference: some("2026030400034999"),
            end_to_end_id: some("RENT-2026-03"),
            counterparty: some("Immobilien Verwaltung Nord GmbH"),
            counterparty_iban: some("DE75512108001245126199"),
            description: some("Miete Maerz 2026 Buero"),
            bank_code: some("NSTO"),
            ..entry("line 18", date!(2026 - 03 - 04), date!(2026 - 03 - 04), -120_000)
        },
        Entry {
            // RD: the reversal of a debit puts the money back (+).
            reversal: true,
            reference: some("PO-88123"),
            bank_reference: some("2026030500045678"),
            end_to_end_id: some("PO-88123"),
            counterparty: some("Buerobedarf Schmidt KG"),
            counterparty_iban: some("DE02120300000000202051"),
            description: some("Rueckueberweisung AC04 Konto erloschen"),
            bank_code: some("NRTI"),
            ..entry("line 22", date!(2026 - 03 - 05), date!(2026 - 03 - 03), 84_550)
        },
        Entry {
            bank_reference: some("2026030500099881"),
            description: some("Kontofuehrungsgebuehr 02/2026"),
            bank_code: some("NCHG"),
            ..entry("line 26", date!(2026 - 03 - 05), date!(2026 - 03 - 05), -1_290)
        },
        Entry {
            bank_reference: some("2026030600056789"),
            counterparty: some("Hoffmann und Soehne OHG"),
            counterparty_iban: some("DE91100000000123456789"),
            description: some("Rechnung 2026-77"),
            bank_code: some("NTRF"),
            ..entry("line 28", date!(2026 - 03 - 06), date!(2026 - 03 - 05), 31_000)
        },
    ];
    assert_entries(&statement.entries, &expected);
    assert_eq!(parse_mt940(MT940, &options()).map(only).as_ref(), Ok(&statement));
}

/// The layout of the fixture's bank export.
pub fn fixture_layout() -> CsvLayout {
    common::fixture_layout()
}

fn fixture_info() -> CsvStatementInfo {
    CsvStatementInfo {
        statement_id: "2026-03-02..2026-03-06".to_owned(),
        account: "DE89370400440532013000".to_owned(),
        currency: Some("EUR".to_owned()),
        opening: Some(BalancePoint { date: date!(2026 - 03 - 02), amount: 1_250_000 }),
        closing: Some(BalancePoint { date: date!(2026 - 03 - 06), amount: 1_450_225 }),
    }
}

#[test]
fn csv_fixture() {
    assert_eq!(Format::detect(CSV), None, "CSV is never guessed");
    let layout = fixture_layout();
    let info = fixture_info();
    let statement = parse_csv(CSV, 2, &layout, &info).expect("the CSV fixture parses");
    assert_eq!(statement.format, Format::Csv);
    assert_eq!(statement.statement_id, info.statement_id);
    assert_eq!(statement.account, info.account);
    assert_eq!(statement.currency, info.currency);
    assert_eq!(statement.sequence, None);
    assert_eq!((statement.opening, statement.closing), (info.opening, info.closing));

    let expected = [
        Entry {
            reference: some("INV-2026-0142"),
            counterparty: some("Müller Maschinenbau GmbH"),
            description: some("Rechnung INV-2026-0142"),
            ..entry("line 2", date!(2026 - 03 - 02), date!(2026 - 03 - 02), 238_000)
        },
        Entry {
            reference: some("PO-88123"),
            counterparty: some("Bürobedarf Schmidt KG"),
            description: some("Bestellung PO-88123, Büromaterial März"),
            ..entry("line 3", date!(2026 - 03 - 03), date!(2026 - 03 - 03), -84_550)
        },
        Entry {
            reference: some("COLL-2026-03-A"),
            description: some("Sammler COLL-2026-03-A (3 Lastschriften)"),
            ..entry("line 4", date!(2026 - 03 - 04), date!(2026 - 03 - 04), 52_515)
        },
        Entry {
            reference: some("RENT-2026-03"),
            counterparty: some("Immobilien Verwaltung Nord GmbH"),
            description: some("Miete März 2026 Büro"),
            ..entry("line 5", date!(2026 - 03 - 04), date!(2026 - 03 - 04), -120_000)
        },
        Entry {
            reference: some("PO-88123"),
            counterparty: some("Bürobedarf Schmidt KG"),
            description: some("Rücküberweisung: Konto erloschen (AC04)"),
            ..entry("line 6", date!(2026 - 03 - 05), date!(2026 - 03 - 03), 84_550)
        },
        Entry {
            description: some("Kontoführungsgebühr 02/2026"),
            ..entry("line 7", date!(2026 - 03 - 05), date!(2026 - 03 - 05), -1_290)
        },
        Entry {
            counterparty: some("Hoffmann & Söhne OHG"),
            description: some("Rechnung 2026-77"),
            ..entry("line 8", date!(2026 - 03 - 06), date!(2026 - 03 - 05), 31_000)
        },
    ];
    assert_entries(&statement.entries, &expected);
    let file = parse(Format::Csv, CSV, &options(), Some((&layout, &info))).expect("the CSV fixture parses");
    assert_eq!(only(file), statement);
}

#[test]
fn the_three_formats_agree_on_amounts_and_dates() {
    let camt = only(read(CAMT));
    let mt940 = only(read(MT940));
    let csv = parse_csv(CSV, 2, &fixture_layout(), &fixture_info()).expect("CSV parses");
    let key = |statement: &Statement| -> Vec<(Date, Option<Date>, i128)> {
        statement.entries.iter().map(|entry| (entry.booking_date, entry.value_date, entry.amount)).collect()
    };
    assert_eq!(key(&camt), key(&mt940));
    assert_eq!(key(&camt), key(&csv));
}

#[test]
fn statements_serialize_with_iso_dates_and_lowercase_formats() {
    let statement = only(read(CAMT));
    let json = serde_json::to_value(&statement).expect("serializes");
    assert_eq!(json["format"], "camt053");
    assert_eq!(json["opening"]["date"], "2026-03-02");
    assert_eq!(json["entries"][0]["booking_date"], "2026-03-02");
    assert_eq!(json["entries"][5]["value_date"], "2026-03-05");
    assert_eq!(json["entries"][2]["details"][1]["reference"], "SUB-1002");
    let mt940 = serde_json::to_value(only(read(MT940))).expect("serializes");
    assert_eq!(mt940["format"], "mt940");
}

#[test]
fn a_larger_scale_reads_the_same_amounts_in_smaller_units() {
    // Fewer decimals than the scale are fine: "2380.00" at scale 3 is 2 380 000.
    let statement = parse_camt(CAMT, &ParseOptions::with_scale(3)).map(only).expect("camt parses at scale 3");
    assert_eq!(statement.entries[0].amount, 2_380_000);
    // More decimals than the scale are not: JPY-like scale 0 refuses "2380.00".
    let error = parse_camt(CAMT, &ParseOptions::with_scale(0)).expect_err("scale 0 refuses cents");
    assert_eq!(error.code(), "statement_amount_invalid");
}

// --- Files of several statements, one per dialect ---

const MT940_DAILY: &[u8] = include_bytes!("fixtures/mt940_daily.sta");
const MT940_PAGED: &[u8] = include_bytes!("fixtures/mt940_paged.sta");
const MT940_GERMAN: &[u8] = include_bytes!("fixtures/mt940_german.sta");
const MT940_SWIFT: &[u8] = include_bytes!("fixtures/mt940_swift_blocks.sta");
const MT940_POLISH: &[u8] = include_bytes!("fixtures/mt940_polish_iso8859-2.sta");
const MT940_DUTCH: &[u8] = include_bytes!("fixtures/mt940_dutch.sta");
const CAMT053_V02: &[u8] = include_bytes!("fixtures/camt053_v02_two_accounts.xml");
const CAMT053_V13: &[u8] = include_bytes!("fixtures/camt053_v13_two_days.xml");
const CAMT052: &[u8] = include_bytes!("fixtures/camt052_intraday.xml");
const CAMT054: &[u8] = include_bytes!("fixtures/camt054_notifications.xml");

/// (statement id, account, opening, closing, entries, pages) of every statement.
type Summary = (String, String, Option<i128>, Option<i128>, usize, u32);

fn summary(file: &StatementFile) -> Vec<Summary> {
    file.statements
        .iter()
        .map(|s| {
            (
                s.statement_id.clone(),
                s.account.clone(),
                s.opening.map(|b| b.amount),
                s.closing.map(|b| b.amount),
                s.entries.len(),
                s.pages,
            )
        })
        .collect()
}

fn row(id: &str, account: &str, opening: Option<i128>, closing: Option<i128>, entries: usize, pages: u32) -> Summary {
    (id.to_owned(), account.to_owned(), opening, closing, entries, pages)
}

fn notes(notes: &[tally_statement::Note]) -> Vec<(&str, &str)> {
    notes.iter().map(|note| (note.code, note.location.as_str())).collect()
}

/// Every statement of every fixture adds up, except where a test says otherwise.
fn assert_all_add_up(file: &StatementFile) {
    for statement in &file.statements {
        assert!(matches!(statement.balance_difference(), Some(0) | None), "{} does not add up", statement.statement_id);
        assert!(statement.entries.iter().all(|entry| entry.amount != 0));
    }
}

#[test]
fn mt940_one_message_per_day() {
    let file = read(MT940_DAILY);
    assert_eq!(file.format, Format::Mt940);
    let account = "GB82WEST12345698765432";
    assert_eq!(
        summary(&file),
        [
            row("DAY260309", account, Some(100_000), Some(117_450), 2, 1),
            row("DAY260310", account, Some(117_450), Some(-2_550), 1, 1),
            row("DAY260311", account, Some(-2_550), Some(47_450), 1, 1),
        ]
    );
    assert_all_add_up(&file);
    assert!(file.notes.is_empty(), "{:?}", file.notes);
    // Without the entry date, the entry is booked on its value date.
    let gas = &file.statements[0].entries[1];
    assert_eq!(
        (gas.location.as_str(), gas.booking_date, gas.reference.as_deref()),
        ("line 7", date!(2026 - 03 - 09), Some("DD-GAS-03"))
    );
    assert_eq!(file.statements[1].entries[0].description.as_deref(), Some("Rent April Office Park Ltd"));
    assert_eq!(file.statements[0].sequence.as_deref(), Some("68/1"));
}

#[test]
fn mt940_pages_are_joined_into_their_statement() {
    let file = read(MT940_PAGED);
    let account = "DE89370400440532013000";
    assert_eq!(
        summary(&file),
        [
            row("PG260312", account, Some(500_000), Some(554_000), 5, 3),
            row("PG260313", account, Some(554_000), Some(600_000), 1, 1)
        ]
    );
    assert_all_add_up(&file);
    let joined = &file.statements[0];
    assert!(joined.notes.is_empty(), "{:?}", joined.notes);
    assert_eq!(joined.sequence.as_deref(), Some("00012/001"));
    let locations: Vec<&str> = joined.entries.iter().map(|e| e.location.as_str()).collect();
    assert_eq!(locations, ["line 5", "line 7", "line 15", "line 17", "line 25"]);

    // A page that does not continue where the previous one closed is noted, with the amount.
    let text = String::from_utf8(MT940_PAGED.to_vec()).expect("ASCII");
    let broken = text.replacen(":60M:C260312EUR5550,00", ":60M:C260312EUR5550,10", 1);
    let file = parse_mt940(broken.as_bytes(), &options()).expect("still parses");
    let joined = &file.statements[0];
    let found: Vec<(&str, &str, Option<i128>)> =
        joined.notes.iter().map(|n| (n.code, n.location.as_str(), n.amount)).collect();
    assert_eq!(found, [("page_chain_break", "line 24", Some(10)), ("page_does_not_add_up", "line 24", Some(-10))]);
    assert_eq!(joined.balance_difference(), Some(0), "the pages add up as a whole when only the chain breaks");
}

#[test]
fn mt940_german_subfields_and_sepa_keywords() {
    let file = read(MT940_GERMAN);
    let account = "37040044/0532013000";
    assert_eq!(
        summary(&file),
        [
            row("STARTUMS", account, Some(200_000), Some(308_760), 3, 1),
            row("STARTUMS", account, Some(308_760), Some(58_760), 1, 1)
        ]
    );
    assert_all_add_up(&file);
    let [credit, direct_debit, charge] = file.statements[0].entries.as_slice() else { panic!("three entries") };
    assert_eq!(
        (credit.end_to_end_id.as_deref(), credit.reference.as_deref(), credit.bank_reference.as_deref()),
        (Some("RE-2026-118"), Some("RE-2026-118"), Some("0316A1"))
    );
    assert_eq!(credit.description.as_deref(), Some("Rechnung RE-2026-118 vom 02.03.2026"));
    assert_eq!(credit.counterparty.as_deref(), Some("Fischer Elektrotechnik GmbH"));
    assert_eq!(credit.counterparty_iban.as_deref(), Some("DE44500105175407324931"));
    assert_eq!(credit.amount, 119_000, "CR: a credit, with the funds code R of EUR");
    assert_eq!(direct_debit.end_to_end_id.as_deref(), Some("STROM-2026-03"));
    assert_eq!(direct_debit.description.as_deref(), Some("Abschlag Strom Maerz"));
    assert_eq!(direct_debit.counterparty.as_deref(), Some("Stadtwerke Musterstadt"));
    assert_eq!(direct_debit.counterparty_iban.as_deref(), Some("DE02700202700015512345"));
    assert_eq!(charge.booking_date, date!(2026 - 03 - 17));
    assert_eq!(charge.description.as_deref(), Some("Kontofuehrung FebruarBuchungsposten 25 x 0,50"));
    let salary = &file.statements[1].entries[0];
    assert_eq!(
        (salary.counterparty.as_deref(), salary.end_to_end_id.as_deref()),
        (Some("Weber, Jonas"), Some("LOHN-2026-03-07"))
    );
    // :NS: fields are skipped with a note in the statement they belong to.
    assert_eq!(notes(&file.statements[0].notes), [("tag_skipped", "line 14")]);
    assert_eq!(notes(&file.statements[1].notes), [("tag_skipped", "line 28")]);
}

#[test]
fn mt940_in_swift_blocks_message_after_message() {
    let file = read(MT940_SWIFT);
    assert_eq!(
        summary(&file),
        [
            row("CHASE260319", "000123456789", Some(1_500_000), Some(1_918_500), 2, 1),
            row("CHASE260320", "000123456789", Some(1_918_500), Some(1_600_000), 1, 1),
        ]
    );
    assert_all_add_up(&file);
    assert!(file.notes.is_empty(), "{:?}", file.notes);
    let wire = &file.statements[0].entries[0];
    assert_eq!(
        (
            wire.reference.as_deref(),
            wire.end_to_end_id.as_deref(),
            wire.counterparty.as_deref(),
            wire.description.as_deref()
        ),
        (Some("WIRE-8812"), Some("E2E-US-8812"), Some("Northwind Traders Inc"), Some("Invoice 8812"))
    );
    assert_eq!(file.statements[1].entries[0].counterparty.as_deref(), Some("Contoso Supplies LLC"));
    assert_eq!(file.statements[0].currency.as_deref(), Some("USD"));
}

#[test]
fn mt940_polish_in_iso_8859_2_with_header_records() {
    let file = read(MT940_POLISH);
    assert_eq!(file.encoding, "ISO-8859-2");
    assert_eq!(
        notes(&file.notes),
        [
            ("encoding_detected", "line 9"),
            ("header_skipped", "line 2"),
            ("header_skipped", "line 3"),
            ("header_skipped", "line 18"),
            ("header_skipped", "line 19"),
        ]
    );
    assert_eq!(
        summary(&file),
        [
            row("MT940", "/PL61109010140000071219812874", Some(1_000_000), Some(1_078_000), 2, 1),
            row("MT940", "/PL92105000990000123456789012", Some(50_000), Some(48_001), 1, 1),
        ]
    );
    assert_all_add_up(&file);
    let [incoming, rent] = file.statements[0].entries.as_slice() else { panic!("two entries") };
    assert_eq!(incoming.description.as_deref(), Some("FV/2026/03/045 zapłata za fakturę"));
    assert_eq!(incoming.counterparty.as_deref(), Some("Hurtownia Wisła Sp. z o.o."));
    assert_eq!(incoming.counterparty_iban.as_deref(), Some("PL27114020040000300201355387"));
    assert_eq!(incoming.bank_code.as_deref(), Some("N152"));
    assert_eq!(rent.counterparty.as_deref(), Some("Spółdzielnia Mieszkaniowa Śródmieście"));
    assert_eq!(file.statements[1].entries[0].description.as_deref(), Some("Opłata za prowadzenie rachunku - marzec"));
    assert_eq!(file.statements[0].bank_account_keys(), ["PL61109010140000071219812874"]);

    // Declared, the character set is used as given and nothing is detected.
    let declared = ParseOptions { encoding: Some("iso-8859-2"), ..options() };
    let file = parse_mt940(MT940_POLISH, &declared).expect("parses");
    assert!(file.notes.iter().all(|note| note.code != "encoding_detected"));
    assert_eq!(file.statements[0].entries[0].counterparty.as_deref(), Some("Hurtownia Wisła Sp. z o.o."));
}

#[test]
fn mt940_dutch_codes_several_accounts_and_a_statement_that_does_not_add_up() {
    let file = read(MT940_DUTCH);
    assert_eq!(
        summary(&file),
        [
            row("ABN260302A", "NL91ABNA0417164300EUR", Some(1_000_000), Some(1_074_850), 3, 1),
            row("ABN260303A", "NL91ABNA0417164300EUR", Some(1_074_850), Some(1_072_350), 1, 1),
            row("ABN260303B", "NL02ABNA0123456789", Some(5_000_000), Some(6_001_000), 1, 1),
            row("ABN260303C", "NL75ABNA0555555555", Some(25_000), Some(20_000), 1, 1),
        ]
    );
    // ABNANL2A / 940 / ABNANL2A before every message.
    assert_eq!(file.notes.len(), 12);
    assert!(file.notes.iter().all(|note| note.code == "header_skipped"));
    let differences: Vec<Option<i128>> = file.statements.iter().map(Statement::balance_difference).collect();
    assert_eq!(differences, [Some(0), Some(0), Some(1_000), Some(0)]);
    assert_eq!(file.statements[0].bank_account_keys(), ["NL91ABNA0417164300EUR", "NL91ABNA0417164300"]);

    let [transfer, order, charged] = file.statements[0].entries.as_slice() else { panic!("three entries") };
    // `EREF` in :61: points to :86:, where the end-to-end id is.
    assert_eq!(
        (transfer.reference.as_deref(), transfer.end_to_end_id.as_deref()),
        (Some("E2E-NL-0117"), Some("E2E-NL-0117"))
    );
    assert_eq!(transfer.counterparty.as_deref(), Some("Jansen Bouw BV"));
    assert_eq!(transfer.counterparty_iban.as_deref(), Some("NL39RABO0300065264"));
    assert_eq!(transfer.description.as_deref(), Some("Factuur 2026-0117"));
    assert_eq!((order.reference.as_deref(), order.end_to_end_id.as_deref()), (None, None));
    assert_eq!(order.counterparty_iban.as_deref(), Some("NL20INGB0001234567"));
    assert_eq!(order.booking_date, date!(2026 - 03 - 02));
    assert_eq!(charged.reference.as_deref(), Some("2026-INV-77"));
    assert_eq!(charged.original_amount, amount("EUR", "100.00", Some(10_000)));
    assert_eq!(charged.charges, amount("EUR", "1.50", Some(150)));
    assert_eq!(charged.amount_before_charges(), Some(10_000));
    assert_eq!(charged.description.as_deref(), Some("Invoice 2026-INV-77"));
}

#[test]
fn camt053_version_02_with_two_accounts() {
    let file = read(CAMT053_V02);
    assert_eq!((file.format, file.message.as_deref()), (Format::Camt053, Some("camt.053.001.02")));
    assert_eq!(
        summary(&file),
        [
            row("RABO-0300065264-20260323", "NL39RABO0300065264", Some(200_000), Some(234_567), 2, 1),
            row("RABO-0123456789-20260323", "NL02ABNA0123456789", Some(-10_000), Some(90_000), 1, 1),
        ]
    );
    assert_all_add_up(&file);
    let currencies: Vec<Option<&str>> = file.statements.iter().map(|s| s.currency.as_deref()).collect();
    assert_eq!(currencies, [Some("EUR"), Some("USD")]);
    let [credit, debit] = file.statements[0].entries.as_slice() else { panic!("two entries") };
    assert_eq!(
        (credit.counterparty.as_deref(), credit.counterparty_iban.as_deref()),
        (Some("Van den Berg Logistiek BV"), Some("NL20INGB0001234567"))
    );
    assert_eq!(credit.end_to_end_id.as_deref(), Some("E2E-VDB-2026-31"));
    assert_eq!((debit.end_to_end_id.as_deref(), debit.reference.as_deref()), (None, Some("RABO-23-0002")));
    assert_eq!(debit.counterparty_iban.as_deref(), Some("NL75ABNA0555555555"));
    // The opening balance without OPBD is the previous closing (PRCD).
    assert_eq!(file.statements[0].opening.map(|b| b.date), Some(date!(2026 - 03 - 20)));
}

#[test]
fn camt053_version_13_two_days_of_one_account() {
    let file = read(CAMT053_V13);
    assert_eq!(file.message.as_deref(), Some("camt.053.001.13"));
    let account = "DE02700202700015512345";
    assert_eq!(
        summary(&file),
        [
            row("DE02-2026-03-24", account, Some(80_000), Some(104_650), 1, 1),
            row("DE02-2026-03-25", account, Some(104_650), Some(94_650), 2, 1),
        ]
    );
    assert_all_add_up(&file);
    let foreign = &file.statements[0].entries[0];
    assert_eq!(foreign.counterparty.as_deref(), Some("Harbour & Sons Ltd"));
    assert_eq!(foreign.counterparty_iban.as_deref(), Some("GB82WEST12345698765432"));
    assert_eq!(foreign.original_amount, amount("GBP", "215.00", None));
    assert_eq!(foreign.charges, amount("EUR", "3.50", Some(350)));
    let [rent, reversal] = file.statements[1].entries.as_slice() else { panic!("two entries") };
    assert_eq!((rent.booking_date, rent.end_to_end_id.as_deref()), (date!(2026 - 03 - 25), Some("RENT-2026-04")));
    assert_eq!(
        (reversal.reversal, reversal.amount, reversal.counterparty.as_deref()),
        (true, 2_000, Some("Stadtwerke Musterstadt"))
    );
    assert_eq!(reversal.value_date, None);
}

#[test]
fn camt052_intraday_reports() {
    let file = read(CAMT052);
    assert_eq!((file.format, file.message.as_deref()), (Format::Camt052, Some("camt.052.001.08")));
    assert_eq!(
        summary(&file),
        [
            row("IDR-DE89-20260327-1400", "DE89370400440532013000", Some(30_000), None, 2, 1),
            row("IDR-DE02-20260327-1400", "DE02700202700015512345", None, None, 1, 1),
        ]
    );
    // The pending entry is not imported, and not silently either.
    assert_eq!(
        notes(&file.statements[0].notes),
        [("entry_not_booked", "Document/BkToCstmrAcctRpt/Rpt/Ntry[3] (line 49)")]
    );
    assert_eq!(file.statements[1].currency.as_deref(), Some("EUR"), "from the amounts when Acct has no Ccy");
    assert_eq!(file.statements[0].balance_difference(), None);
    assert_eq!(file.statements[0].entries[1].description.as_deref(), Some("Kartengebuehr"));
}

#[test]
fn camt054_notifications() {
    let file = read(CAMT054);
    assert_eq!((file.format, file.message.as_deref()), (Format::Camt054, Some("camt.054.001.04")));
    let account = "DE89370400440532013000";
    assert_eq!(
        summary(&file),
        [row("NTF-DE89-0330-1", account, None, None, 1, 1), row("NTF-DE89-0330-2", account, None, None, 1, 1)]
    );
    let batch = &file.statements[0].entries[0];
    assert_eq!(batch.reference.as_deref(), Some("COLL-2026-03-B"));
    let details: Vec<(i128, Option<&str>)> = batch.details.iter().map(|d| (d.amount, d.reference.as_deref())).collect();
    assert_eq!(details, [(12_000, Some("SUB-2001")), (18_000, Some("SUB-2002"))]);
    let refund = &file.statements[1].entries[0];
    assert_eq!((refund.amount, refund.amount_before_charges()), (-4_200, Some(-4_000)));
    // Asked for as camt.053, a camt.054 file is refused rather than read as something else.
    let error = parse(Format::Camt053, CAMT054, &options(), None).expect_err("not a statement");
    assert_eq!(error.code(), "statement_unsupported");
}

#[test]
fn each_fixture_is_recognised_as_its_format() {
    let expected = [
        (MT940_DAILY, Format::Mt940),
        (MT940_PAGED, Format::Mt940),
        (MT940_GERMAN, Format::Mt940),
        (MT940_SWIFT, Format::Mt940),
        (MT940_POLISH, Format::Mt940),
        (MT940_DUTCH, Format::Mt940),
        (CAMT053_V02, Format::Camt053),
        (CAMT053_V13, Format::Camt053),
        (CAMT052, Format::Camt052),
        (CAMT054, Format::Camt054),
    ];
    for (bytes, format) in expected {
        assert_eq!(Format::detect(bytes), Some(format));
    }
}
