//! Each fixture parses into exactly the statement a person reading the file would write down.

mod common;

use tally_statement::{
    BalancePoint, CsvLayout, CsvStatementInfo, Entry, EntryDetail, Format, Statement, check_arithmetic, parse,
    parse_camt053, parse_csv, parse_mt940,
};
use time::Date;
use time::macros::date;

const CAMT: &[u8] = include_bytes!("fixtures/camt053_multi.xml");
const MT940: &[u8] = include_bytes!("fixtures/mt940_multi.sta");
const CSV: &[u8] = include_bytes!("fixtures/statement.csv");

/// An entry with the fields every format has; the rest is filled in per test.
fn entry(location: &str, booking_date: Date, value_date: Date, amount: i128) -> Entry {
    Entry {
        location: location.to_owned(),
        booking_date,
        value_date: Some(value_date),
        amount,
        reversal: false,
        reference: None,
        bank_reference: None,
        counterparty: None,
        description: None,
        bank_code: None,
        details: Vec::new(),
    }
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
    let statement = parse_camt053(CAMT, 2).expect("the camt.053 fixture parses");
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
            counterparty: some("Müller Maschinenbau GmbH"),
            description: some("Rechnung INV-2026-0142"),
            bank_code: some("PMNT/RCDT/ESCT"),
            ..entry("Ntry[1]", date!(2026 - 03 - 02), date!(2026 - 03 - 02), 238_000)
        },
        Entry {
            reference: some("PO-88123"),
            bank_reference: some("2026030300023456"),
            counterparty: some("Bürobedarf Schmidt KG"),
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
            counterparty: some("Immobilien Verwaltung Nord GmbH"),
            description: some("Miete März 2026 Büro"),
            bank_code: some("PMNT/ICDT/STDO"),
            ..entry("Ntry[4]", date!(2026 - 03 - 04), date!(2026 - 03 - 04), -120_000)
        },
        Entry {
            reversal: true,
            reference: some("PO-88123"),
            bank_reference: some("2026030500045678"),
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
    assert_eq!(parse(Format::Camt053, CAMT, 2, None).as_ref(), Ok(&statement));
}

#[test]
fn mt940_fixture() {
    assert_eq!(Format::detect(MT940), Some(Format::Mt940));
    let statement = parse_mt940(MT940, 2).expect("the MT940 fixture parses");
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
            counterparty: some("Mueller Maschinenbau GmbH"),
            description: some("Rechnung INV-2026-0142"),
            bank_code: some("NTRF"),
            ..entry("line 6", date!(2026 - 03 - 02), date!(2026 - 03 - 02), 238_000)
        },
        Entry {
            reference: some("PO-88123"),
            bank_reference: some("2026030300023456"),
            counterparty: some("Buerobedarf Schmidt KG"),
            description: some("Bestellung PO-88123 Bueromaterial Maerz"),
            bank_code: some("NTRF"),
            ..entry("line 10", date!(2026 - 03 - 03), date!(2026 - 03 - 03), -84_550)
        },
        Entry {
            reference: some("COLL-2026-03-A"),
            bank_reference: some("2026030400034567"),
            description: some("Sammler COLL-2026-03-A, 3 Lastschriften Abo Maerz 2026"),
            bank_code: some("NDDT"),
            ..entry("line 14", date!(2026 - 03 - 04), date!(2026 - 03 - 04), 52_515)
        },
        Entry {
            reference: some("RENT-2026-03"),
            bank_reference: some("2026030400034999"),
            counterparty: some("Immobilien Verwaltung Nord GmbH"),
            description: some("Miete Maerz 2026 Buero"),
            bank_code: some("NSTO"),
            ..entry("line 18", date!(2026 - 03 - 04), date!(2026 - 03 - 04), -120_000)
        },
        Entry {
            // RD: the reversal of a debit puts the money back (+).
            reversal: true,
            reference: some("PO-88123"),
            bank_reference: some("2026030500045678"),
            counterparty: some("Buerobedarf Schmidt KG"),
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
            description: some("Rechnung 2026-77"),
            bank_code: some("NTRF"),
            ..entry("line 28", date!(2026 - 03 - 06), date!(2026 - 03 - 05), 31_000)
        },
    ];
    assert_entries(&statement.entries, &expected);
    assert_eq!(parse(Format::Mt940, MT940, 2, None).as_ref(), Ok(&statement));
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
    assert_eq!(parse(Format::Csv, CSV, 2, Some((&layout, &info))).as_ref(), Ok(&statement));
}

#[test]
fn the_three_formats_agree_on_amounts_and_dates() {
    let camt = parse_camt053(CAMT, 2).expect("camt parses");
    let mt940 = parse_mt940(MT940, 2).expect("MT940 parses");
    let csv = parse_csv(CSV, 2, &fixture_layout(), &fixture_info()).expect("CSV parses");
    let key = |statement: &Statement| -> Vec<(Date, Option<Date>, i128)> {
        statement.entries.iter().map(|entry| (entry.booking_date, entry.value_date, entry.amount)).collect()
    };
    assert_eq!(key(&camt), key(&mt940));
    assert_eq!(key(&camt), key(&csv));
}

#[test]
fn statements_serialize_with_iso_dates_and_lowercase_formats() {
    let statement = parse_camt053(CAMT, 2).expect("camt parses");
    let json = serde_json::to_value(&statement).expect("serializes");
    assert_eq!(json["format"], "camt053");
    assert_eq!(json["opening"]["date"], "2026-03-02");
    assert_eq!(json["entries"][0]["booking_date"], "2026-03-02");
    assert_eq!(json["entries"][5]["value_date"], "2026-03-05");
    assert_eq!(json["entries"][2]["details"][1]["reference"], "SUB-1002");
    let mt940 = serde_json::to_value(parse_mt940(MT940, 2).expect("MT940 parses")).expect("serializes");
    assert_eq!(mt940["format"], "mt940");
}

#[test]
fn a_larger_scale_reads_the_same_amounts_in_smaller_units() {
    // Fewer decimals than the scale are fine: "2380.00" at scale 3 is 2 380 000.
    let statement = parse_camt053(CAMT, 3).expect("camt parses at scale 3");
    assert_eq!(statement.entries[0].amount, 2_380_000);
    // More decimals than the scale are not: JPY-like scale 0 refuses "2380.00".
    let error = parse_camt053(CAMT, 0).expect_err("scale 0 refuses cents");
    assert_eq!(error.code(), "statement_amount_invalid");
}
