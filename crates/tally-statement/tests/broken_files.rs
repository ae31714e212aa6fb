//! Broken variants of the fixtures: each is refused with the right code, and the message names
//! the line or element where the problem is.

mod common;

use tally_statement::{
    BalancePoint, CsvLayout, CsvStatementInfo, FIELD_LEN_MAX, ParseOptions, STATEMENT_BYTES_MAX, Statement,
    StatementError, parse_camt, parse_csv, parse_mt940,
};
use time::macros::date;

const CAMT: &str = include_str!("fixtures/camt053_multi.xml");
const MT940: &str = include_str!("fixtures/mt940_multi.sta");
const CSV: &str = include_str!("fixtures/statement.csv");

/// The fixture with the first occurrence of `from` replaced; panics if `from` is missing so that a
/// fixture change cannot silently turn a test into a no-op.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the fixture no longer contains {from:?}");
    text.replacen(from, to, 1)
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, StatementError>, code: &str, needles: &[&str]) {
    let error = result.expect_err("the broken file must be refused");
    assert_eq!(error.code(), code, "{error}");
    let message = error.to_string();
    for needle in needles {
        assert!(message.contains(needle), "{message:?} does not contain {needle:?}");
    }
}

fn options() -> ParseOptions<'static> {
    ParseOptions::with_scale(2)
}

fn camt(text: &str) -> Result<Vec<Statement>, StatementError> {
    parse_camt(text.as_bytes(), &options()).map(|file| file.statements)
}

fn mt940(text: &str) -> Result<Vec<Statement>, StatementError> {
    parse_mt940(text.as_bytes(), &options()).map(|file| file.statements)
}

fn csv_layout() -> CsvLayout {
    common::fixture_layout()
}

fn csv_info(closing_amount: i128) -> CsvStatementInfo {
    CsvStatementInfo {
        statement_id: "2026-03".to_owned(),
        account: "DE89370400440532013000".to_owned(),
        currency: Some("EUR".to_owned()),
        opening: Some(BalancePoint { date: date!(2026 - 03 - 02), amount: 1_250_000 }),
        closing: Some(BalancePoint { date: date!(2026 - 03 - 06), amount: closing_amount }),
    }
}

// --- Statements that do not add up ---

#[test]
fn bank_statements_that_do_not_add_up_are_read_with_their_difference() {
    // The user cannot correct the bank's file: it is read, and the difference is the importer's
    // to report.
    let broken = edit(CAMT, "<Amt Ccy=\"EUR\">14502.25</Amt>", "<Amt Ccy=\"EUR\">14502.52</Amt>");
    let statements = camt(&broken).expect("read despite the difference");
    assert_eq!(statements[0].balance_difference(), Some(27));
    let error = tally_statement::check_arithmetic(&statements[0]).expect_err("check_arithmetic still says so");
    assert_eq!(error.code(), "statement_balance_mismatch");

    let broken = edit(MT940, ":62F:C260306EUR14502,25", ":62F:C260306EUR14502,52");
    let statements = mt940(&broken).expect("read despite the difference");
    assert_eq!((statements[0].balance_difference(), statements[0].entries.len()), (Some(27), 7));
}

#[test]
fn csv_wrong_closing_balance() {
    let result = parse_csv(CSV.as_bytes(), 2, &csv_layout(), &csv_info(1_450_000));
    assert_refused(result, "statement_balance_mismatch", &["closing balance", "1450225"]);
    assert!(parse_csv(CSV.as_bytes(), 2, &csv_layout(), &csv_info(1_450_225)).is_ok());
}

#[test]
fn camt_batch_details_that_do_not_add_up() {
    let broken = edit(CAMT, "<Amt Ccy=\"EUR\">99.90</Amt>", "<Amt Ccy=\"EUR\">99.00</Amt>");
    assert_refused(camt(&broken), "statement_balance_mismatch", &["Ntry[3]/NtryDtls", "52425", "52515"]);
}

// --- MT940 ---

#[test]
fn mt940_missing_closing_balance() {
    let broken = edit(MT940, ":62F:C260306EUR14502,25\r\n", "");
    assert_refused(mt940(&broken), "statement_malformed", &["line 32:", "missing :62F:", "found :64:"]);
    let broken = edit(&broken, ":64:C260306EUR14502,25\r\n", "");
    assert_refused(mt940(&broken), "statement_malformed", &["line 32:", "missing :62F:", "message ends"]);
    // Bare, the message ends at its last line.
    let bare = MT940.split_once("{4:\r\n").expect("block 4").1.replace("-}{5:{CHK:5A3C9E1F04B2}}", "");
    let bare = edit(&bare, ":62F:C260306EUR14502,25\r\n", "");
    let bare = edit(&bare, ":64:C260306EUR14502,25\r\n", "");
    assert_refused(mt940(&bare), "statement_malformed", &["line 30:", "missing :62F:", "message ends"]);
}

#[test]
fn mt940_missing_required_tags() {
    assert_refused(
        mt940(&edit(MT940, ":20:STARTUMS260306\r\n", "")),
        "statement_malformed",
        &["line 2:", "missing :20:"],
    );
    assert_refused(mt940(&edit(MT940, ":25:37040044/0532013000\r\n", "")), "statement_malformed", &["missing :25:"]);
    assert_refused(mt940(&edit(MT940, ":60F:C260302EUR12500,00\r\n", "")), "statement_malformed", &["missing :60F:"]);
}

#[test]
fn mt940_bad_date() {
    let broken = edit(MT940, ":61:2603030303DR845,50", ":61:2613450303DR845,50");
    assert_refused(mt940(&broken), "statement_date_invalid", &["line 10:", "261345"]);
    let no_date = edit(MT940, ":61:2603030303DR845,50", ":61:DR845,50");
    assert_refused(mt940(&no_date), "statement_date_invalid", &["line 10:"]);
    let bad_booking_date = edit(MT940, ":61:2603030303DR845,50", ":61:2603031332DR845,50");
    assert_refused(mt940(&bad_booking_date), "statement_date_invalid", &["line 10:", "1332"]);
    let bad_balance_date = edit(MT940, ":60F:C260302EUR", ":60F:C260230EUR");
    assert_refused(mt940(&bad_balance_date), "statement_date_invalid", &["line 5:"]);
}

#[test]
fn mt940_bad_amount() {
    let broken = edit(MT940, "DR845,50NTRF", "DR12,3,4NTRF");
    assert_refused(mt940(&broken), "statement_amount_invalid", &["line 10:", "12,3,4"]);
    let too_precise = edit(MT940, "DR845,50NTRF", "DR845,505NTRF");
    assert_refused(mt940(&too_precise), "statement_amount_invalid", &["line 10:"]);
    let zero = edit(MT940, "DR845,50NTRF", "DR0,NTRF");
    assert_refused(mt940(&zero), "statement_amount_invalid", &["line 10:"]);
}

#[test]
fn mt940_currency_must_agree() {
    let broken = edit(MT940, ":62F:C260306EUR", ":62F:C260306USD");
    assert_refused(mt940(&broken), "statement_unsupported", &["line 32:", "USD", "EUR"]);
    // Another statement of the file may be in another currency.
    let other = MT940.replace("EUR", "INR").replacen(":20:STARTUMS260306", ":20:OTHER", 1);
    assert_eq!(mt940(&format!("{MT940}{other}")).expect("two currencies").len(), 2);
}

#[test]
fn mt940_not_utf8() {
    let mut latin1 = edit(MT940, "Hoffmann und", "Hoffmann \u{0}und").into_bytes();
    let at = latin1.iter().position(|byte| *byte == 0).expect("marker");
    latin1[at] = 0xFC; // a Latin-1 "ü"
    // Undeclared, it is detected and read, with a note.
    let file = parse_mt940(&latin1, &options()).expect("Latin-1 is read");
    assert_eq!(file.encoding, "ISO-8859-1");
    assert_eq!((file.notes[0].code, file.notes[0].location.as_str()), ("encoding_detected", "line 30"));
    assert_eq!(file.statements[0].entries[6].counterparty.as_deref(), Some("Hoffmann üund Soehne OHG"));
    // Declared as UTF-8, it is refused with its line.
    let declared = ParseOptions { encoding: Some("utf-8"), ..options() };
    let error = parse_mt940(&latin1, &declared).expect_err("not UTF-8");
    assert_eq!(error.code(), "statement_malformed");
    assert!(error.to_string().starts_with("line 30:"), "{error}");
}

#[test]
fn mt940_several_messages_are_several_statements() {
    let twice = format!("{MT940}{MT940}");
    let statements = mt940(&twice).expect("two messages");
    assert_eq!(statements.len(), 2);
    assert_eq!(statements[1].entries[0].location, "line 40");
}

#[test]
fn mt940_tags_out_of_order() {
    let broken = edit(MT940, ":28C:00045/001\r\n:60F:C260302EUR12500,00", ":60F:C260302EUR12500,00\r\n:28C:00045/001");
    assert_refused(mt940(&broken), "statement_malformed", &["line 5:", ":28C:"]);
}

// --- camt.053 ---

#[test]
fn camt_unknown_credit_debit_indicator() {
    let broken = edit(CAMT, "<CdtDbtInd>DBIT</CdtDbtInd>", "<CdtDbtInd>DEBIT</CdtDbtInd>");
    assert_refused(
        camt(&broken),
        "statement_malformed",
        &["Document/BkToCstmrStmt/Stmt/Ntry[2]/CdtDbtInd (line 161)", "DEBIT"],
    );
}

#[test]
fn camt_bad_amounts() {
    let negative = edit(CAMT, "<Amt Ccy=\"EUR\">845.50</Amt>", "<Amt Ccy=\"EUR\">-845.50</Amt>");
    assert_refused(camt(&negative), "statement_amount_invalid", &["Ntry[2]/Amt"]);
    let zero = edit(CAMT, "<Amt Ccy=\"EUR\">12.90</Amt>", "<Amt Ccy=\"EUR\">0.00</Amt>");
    assert_refused(camt(&zero), "statement_amount_invalid", &["Ntry[6]/Amt"]);
    let comma = edit(CAMT, "<Amt Ccy=\"EUR\">12.90</Amt>", "<Amt Ccy=\"EUR\">12,90</Amt>");
    assert_refused(camt(&comma), "statement_amount_invalid", &["Ntry[6]/Amt", "12,90"]);
}

#[test]
fn camt_bad_date() {
    let broken = edit(CAMT, "<Dt>2026-03-04</Dt>", "<Dt>2026-02-30</Dt>");
    assert_refused(camt(&broken), "statement_date_invalid", &["Ntry[3]/BookgDt/Dt", "2026-02-30"]);
}

#[test]
fn camt_truncated() {
    let cut = CAMT.find("<EndToEndId>SUB-1002").expect("marker");
    assert_refused(camt(&CAMT[..cut]), "statement_malformed", &["Ntry[3]", "truncated"]);
    let mid_tag = CAMT.find("<CdtDbtInd>CRDT</CdtDbtInd>\n        <Sts>").expect("marker") + 4;
    assert_refused(camt(&CAMT[..mid_tag]), "statement_malformed", &["Ntry[1]"]);
    assert_refused(camt(&CAMT[..100]), "statement_malformed", &["line"]);
}

#[test]
fn camt_doctype_is_refused() {
    let with_dtd = edit(
        CAMT,
        "<Document ",
        "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]>\n<Document ",
    );
    assert_refused(camt(&with_dtd), "statement_unsupported", &["line 2", "DOCTYPE"]);
    let external = edit(CAMT, "<Document ", "<!DOCTYPE Document SYSTEM \"file:///etc/passwd\">\n<Document ");
    assert_refused(camt(&external), "statement_unsupported", &["DOCTYPE"]);
}

#[test]
fn camt_currency_must_agree() {
    let broken = edit(CAMT, "<Amt Ccy=\"EUR\">1200.00</Amt>", "<Amt Ccy=\"CHF\">1200.00</Amt>");
    assert_refused(camt(&broken), "statement_unsupported", &["Ntry[4]/Amt", "CHF", "EUR"]);
    let balance = edit(CAMT, "<Amt Ccy=\"EUR\">12500.00</Amt>", "<Amt Ccy=\"USD\">12500.00</Amt>");
    assert_refused(camt(&balance), "statement_unsupported", &["Bal[1]/Amt"]);
}

#[test]
fn camt_not_utf8() {
    let mut broken = CAMT.replacen("Lena Fischer", "Lena Fischer\u{0}", 1).into_bytes();
    let at = broken.iter().position(|byte| *byte == 0).expect("marker");
    broken[at] = 0xE9;
    // The declaration says UTF-8: bytes that are not are refused with their line.
    let error = parse_camt(&broken, &options()).expect_err("not the UTF-8 it declares");
    assert_eq!(error.code(), "statement_malformed");
    let line = 1 + CAMT[..CAMT.find("Lena Fischer").expect("marker")].matches('\n').count();
    assert!(error.to_string().starts_with(&format!("line {line}:")), "{error}");
}

#[test]
fn camt_other_messages_and_several_statements() {
    let mixed = CAMT.replace("camt.053.001.08", "camt.052.001.08");
    assert_refused(camt(&mixed), "statement_unsupported", &["camt052", "BkToCstmrStmt"]);
    let pain = CAMT.replace("camt.053.001.08", "pain.002.001.10");
    assert_refused(camt(&pain), "statement_unsupported", &["pain.002"]);
    let start = CAMT.find("<Stmt>").expect("marker");
    let end = CAMT.find("</Stmt>").expect("marker") + "</Stmt>".len();
    let twice = format!("{}{}{}", &CAMT[..end], &CAMT[start..end], &CAMT[end..]);
    assert_eq!(camt(&twice).expect("two statements").len(), 2);
    assert_refused(camt(MT940), "statement_malformed", &["line 1"]);
}

#[test]
fn camt_missing_required_elements() {
    let no_id = edit(CAMT, "<Id>0532013000-2026-00045</Id>", "");
    assert_refused(
        camt(&no_id),
        "statement_malformed",
        &["Document/BkToCstmrStmt/Stmt (line 12)", "missing element Id"],
    );
    let no_indicator = edit(CAMT, "<CdtDbtInd>DBIT</CdtDbtInd>", "");
    assert_refused(camt(&no_indicator), "statement_malformed", &["Ntry[2] (line", "CdtDbtInd"]);
    let no_closing = edit(CAMT, "<Cd>CLBD</Cd>", "<Cd>ITBD</Cd>");
    assert_refused(camt(&no_closing), "statement_malformed", &["CLBD"]);
}

// --- CSV ---

#[test]
fn csv_non_numeric_amount() {
    let broken = edit(CSV, ",-845.50,", ",-84S.50,");
    let result = parse_csv(broken.as_bytes(), 2, &csv_layout(), &csv_info(1_450_225));
    assert_refused(result, "statement_amount_invalid", &["line 3:", "84S.50"]);
}

#[test]
fn csv_bad_date() {
    let broken = edit(CSV, "2026-03-05,2026-03-03", "2026-03-05,03/03/2026");
    let result = parse_csv(broken.as_bytes(), 2, &csv_layout(), &csv_info(1_450_225));
    assert_refused(result, "statement_date_invalid", &["line 6:", "03/03/2026"]);
}

// --- Limits ---

#[test]
fn inputs_over_the_size_limit_are_refused_before_parsing() {
    let huge = vec![b' '; STATEMENT_BYTES_MAX + 1];
    assert_eq!(parse_camt(&huge, &options()).map_err(|e| e.code()), Err("statement_too_large"));
    assert_eq!(parse_mt940(&huge, &options()).map_err(|e| e.code()), Err("statement_too_large"));
    let result = parse_csv(&huge, 2, &CsvLayout::default(), &csv_info(0));
    assert_eq!(result.map_err(|e| e.code()), Err("statement_too_large"));
}

#[test]
fn overlong_text_fields_are_refused_not_truncated() {
    let long = "x".repeat(FIELD_LEN_MAX + 1);
    let broken = edit(CAMT, "<Ustrd>Rechnung 2026-77</Ustrd>", &format!("<Ustrd>{long}</Ustrd>"));
    assert_refused(camt(&broken), "statement_too_large", &["Ntry[7]/NtryDtls[1]/TxDtls[1]/RmtInf"]);
    let broken = edit(MT940, ":20:STARTUMS260306", &format!(":20:{long}"));
    assert_refused(mt940(&broken), "statement_too_large", &["line 2:"]);
}
