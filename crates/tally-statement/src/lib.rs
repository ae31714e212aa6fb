//! Bank statements: parsing external statement files and matching their entries against the
//! ledger.
//!
//! This crate is pure: no I/O, no async, no database. It turns the bytes of a statement file into
//! a [`Statement`] and pairs statement entries with ledger entries ([`match_entries`]). Importing
//! into the database, the CLI and the reports are built on top of it elsewhere.
//!
//! # Sign convention
//!
//! Every amount is an `i128` count of minor units of the statement currency, signed from the
//! point of view of the account the statement is about: a credit (money in) is positive, a debit
//! (money out) is negative. Balances use the same sign (a debit balance is negative). A reversal
//! is signed by what it does, not by what it reverses: the reversal of a debit is a credit (+),
//! the reversal of a credit a debit (-). Entry amounts are never zero.
//!
//! # Formats
//!
//! - **camt.053** (ISO 20022 bank-to-customer statement, any `camt.053.001.xx` version), UTF-8.
//!   One `Stmt` per file: a file with several is refused (`statement_unsupported`) because a
//!   [`Statement`] describes one account over one period. Only booked entries (`Sts` `BOOK` or
//!   absent) are accepted; pending or informational entries are refused. Both an opening (`OPBD`,
//!   or `PRCD` when there is no `OPBD`) and a closing (`CLBD`) balance are required.
//! - **MT940** (SWIFT customer statement), bare or wrapped in `{1:}{2:}{3:}{4:` … `-}` blocks. One
//!   message per file: a second message is refused (`statement_unsupported`). `:20:`, `:25:`,
//!   `:60F:`/`:60M:` and `:62F:`/`:62M:` are required and must come in the standard order.
//!   `:86:` is read as free text, as German structured text (`?20`…`?29` purpose, `?32`/`?33`
//!   name) or as SWIFT-style codes (`/NAME/`, `/REMI/`, `/EREF/`, `/CNTP/`).
//! - **CSV** with a header row, described by a [`CsvLayout`]; account, statement id and balances
//!   come from the caller ([`CsvStatementInfo`]). CSV is never guessed by [`Format::detect`].
//!
//! # What is refused
//!
//! Every error names where (line number, or the XML element path such as
//! `Document/BkToCstmrStmt/Stmt/Ntry[3]/Amt` plus its line) and what, and has a stable code
//! ([`StatementError::code`]). Refused are, among others: a statement whose own opening balance
//! plus its entries does not equal its closing balance; an entry whose batch details do not add up
//! to it; unknown credit/debit indicators; zero, negative or over-precise amounts; impossible
//! dates; text that is not UTF-8; XML with a `DOCTYPE` (no DTDs, no custom entities); XML that
//! declares an encoding other than UTF-8; currencies that differ between balances and entries.
//!
//! # Limits
//!
//! - [`STATEMENT_BYTES_MAX`]: the largest input accepted (32 MiB).
//! - [`STATEMENT_ENTRIES_MAX`]: the most entries in one statement (100 000).
//! - [`FIELD_LEN_MAX`]: the longest text field in characters (1024). Longer text is an error
//!   (`statement_too_large`), never silently truncated, so that what is imported is what the bank
//!   sent.
//! - XML nesting is limited to [`XML_DEPTH_MAX`] levels.
//!
//! Text fields are trimmed; empty text is `None`.
//!
//! # Matching
//!
//! [`match_entries`] pairs statement entries with ledger entries by reference, then by amount,
//! date and counterparty, then by sums (one statement entry to several ledger entries and the
//! reverse). Every entry ends up in exactly one match or in the unmatched lists; group searches
//! are bounded ([`GROUP_CANDIDATES_MAX`], [`GROUP_SEARCH_NODES_MAX`], [`GROUP_WORK_TOTAL_MAX`]).
//! The rules are described in full on [`match_entries`].

mod camt;
mod csv_import;
mod error;
mod matching;
mod mt940;
mod text;

use serde::Serialize;
use time::Date;

pub use camt::parse_camt053;
pub use csv_import::{CsvLayout, CsvStatementInfo, parse_csv};
pub use error::StatementError;
pub use matching::{
    GROUP_CANDIDATES_MAX, GROUP_SEARCH_NODES_MAX, GROUP_WORK_TOTAL_MAX, LedgerEntry, Match, MatchOutcome, MatchRule,
    MatchRules, match_entries,
};
pub use mt940::parse_mt940;

/// The largest statement file accepted, in bytes. Real daily or monthly statements are far
/// smaller; the bound keeps memory use of one parse predictable.
pub const STATEMENT_BYTES_MAX: usize = 32 * 1024 * 1024;

/// The most entries one statement may carry.
pub const STATEMENT_ENTRIES_MAX: usize = 100_000;

/// The longest text field (reference, name, description, account, id), in characters.
pub const FIELD_LEN_MAX: usize = 1024;

/// The deepest XML nesting accepted. camt.053 needs about 12 levels; the bound stops a hostile
/// file from exhausting the stack or memory with nesting alone.
pub const XML_DEPTH_MAX: usize = 48;

const _: () = assert!(STATEMENT_BYTES_MAX > 0 && STATEMENT_BYTES_MAX <= 256 * 1024 * 1024);
const _: () = assert!(STATEMENT_ENTRIES_MAX > 0 && STATEMENT_ENTRIES_MAX <= 10_000_000);
// Entries are summed in i128: STATEMENT_ENTRIES_MAX amounts of at most 2^96 each stay far below
// i128::MAX, so checking the arithmetic of a statement cannot overflow.
const _: () = assert!((STATEMENT_ENTRIES_MAX as i128 + 2) < i128::MAX / tally_core::AMOUNT_MAX);
const _: () = assert!(FIELD_LEN_MAX >= 140 && FIELD_LEN_MAX <= 64 * 1024);
const _: () = assert!(XML_DEPTH_MAX >= 16 && XML_DEPTH_MAX <= 256);

/// The kind of statement file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Camt053,
    Mt940,
}

impl Format {
    /// The stable name used in serialization and reports: `csv`, `camt053` or `mt940`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Camt053 => "camt053",
            Format::Mt940 => "mt940",
        }
    }

    /// Recognises camt.053 and MT940 from the first bytes of a file.
    ///
    /// XML whose prolog names the camt.053 namespace or a `BkToCstmrStmt` element is camt.053;
    /// text that starts (after whitespace and optional `{1:…}{2:…}{3:…}{4:` block headers) with
    /// `:20:` is MT940. CSV is never guessed: a CSV file has no signature, so the caller says so.
    pub fn detect(bytes: &[u8]) -> Option<Format> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
        let rest = &bytes[start..];
        if rest.starts_with(b"<") {
            // The namespace and root element sit in the first few hundred bytes of a real file;
            // looking further would only cost time on large inputs.
            let head = &rest[..rest.len().min(DETECT_XML_HEAD_BYTES)];
            let is_camt = contains(head, b"camt.053") || contains(head, b"BkToCstmrStmt");
            return is_camt.then_some(Format::Camt053);
        }
        let body = skip_swift_headers(rest)?;
        let body_start = body.iter().position(|b| !b.is_ascii_whitespace())?;
        body[body_start..].starts_with(b":20:").then_some(Format::Mt940)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of an XML file [`Format::detect`] looks at.
const DETECT_XML_HEAD_BYTES: usize = 4096;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Skips `{1:…}{2:…}{3:{…}}` blocks and returns what follows `{4:`; input without blocks is
/// returned as is. `None` when the blocks are unterminated or block 4 never starts.
fn skip_swift_headers(bytes: &[u8]) -> Option<&[u8]> {
    let mut rest = bytes;
    if !rest.starts_with(b"{") {
        return Some(rest);
    }
    loop {
        rest = rest.strip_prefix(b"{")?;
        if let Some(body) = rest.strip_prefix(b"4:") {
            return Some(body);
        }
        let mut depth = 1usize;
        let mut end = None;
        for (index, byte) in rest.iter().enumerate() {
            match byte {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(index);
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &rest[end? + 1..];
        let next = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        rest = &rest[next..];
        if !rest.starts_with(b"{") {
            return None;
        }
    }
}

/// One bank statement: one account over one period, with its own balances and entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub format: Format,
    /// camt `Stmt/Id`, MT940 `:20:`, CSV: from the caller.
    pub statement_id: String,
    /// camt `Acct/Id/IBAN` (or `Othr/Id`), MT940 `:25:`, CSV: from the caller.
    pub account: String,
    /// ISO 4217 code: camt `Acct/Ccy` (else the balances' `Ccy`), MT940 `:60F:` currency.
    pub currency: Option<String>,
    /// MT940 `:28C:`, camt `ElctrncSeqNb` (else `LglSeqNb`).
    pub sequence: Option<String>,
    pub opening: Option<BalancePoint>,
    pub closing: Option<BalancePoint>,
    pub entries: Vec<Entry>,
}

/// A balance on a day, in signed minor units (credit +, debit -).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BalancePoint {
    #[serde(serialize_with = "serialize_date")]
    pub date: Date,
    pub amount: i128,
}

/// One booked line of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Where in the file: `line 14` (CSV, MT940) or `Ntry[3]` (camt, 1-based).
    pub location: String,
    #[serde(serialize_with = "serialize_date")]
    pub booking_date: Date,
    #[serde(serialize_with = "serialize_date_option")]
    pub value_date: Option<Date>,
    /// Signed minor units: credit (money in) +, debit (money out) -; never 0.
    pub amount: i128,
    /// camt `RvslInd` true, MT940 `RC`/`RD`.
    pub reversal: bool,
    /// The payer's reference: camt end-to-end id (else `AcctSvcrRef`, else `NtryRef`; for a
    /// batch its `PmtInfId` first), MT940 `:61:` customer reference (else the `:86:` end-to-end
    /// id), CSV column. `NONREF` and `NOTPROVIDED` are `None`.
    pub reference: Option<String>,
    /// The bank's own reference: camt `AcctSvcrRef`, MT940 `:61:` reference after `//`.
    pub bank_reference: Option<String>,
    /// The other party's name.
    pub counterparty: Option<String>,
    pub description: Option<String>,
    /// camt `Domn/Fmly/SubFmly` codes joined by `/` (or `Prtry/Cd`), MT940 `:61:` type (`NTRF`).
    pub bank_code: Option<String>,
    /// The transactions of a batched entry (two or more); empty otherwise. They sum to `amount`.
    pub details: Vec<EntryDetail>,
}

/// One transaction inside a batched statement entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryDetail {
    /// Signed like an entry: credit +, debit -.
    pub amount: i128,
    pub reference: Option<String>,
    pub counterparty: Option<String>,
}

fn serialize_date<S: serde::Serializer>(date: &Date, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&text::format_date(*date))
}

fn serialize_date_option<S: serde::Serializer>(date: &Option<Date>, serializer: S) -> Result<S::Ok, S::Error> {
    match date {
        Some(date) => serializer.serialize_some(&text::format_date(*date)),
        None => serializer.serialize_none(),
    }
}

/// Parses a statement of the given format. CSV needs its layout and the statement facts the file
/// does not carry; for camt.053 and MT940 `csv` is ignored.
pub fn parse(
    format: Format,
    bytes: &[u8],
    scale: u8,
    csv: Option<(&CsvLayout, &CsvStatementInfo)>,
) -> Result<Statement, StatementError> {
    match format {
        Format::Camt053 => parse_camt053(bytes, scale),
        Format::Mt940 => parse_mt940(bytes, scale),
        Format::Csv => match csv {
            Some((layout, info)) => parse_csv(bytes, scale, layout, info),
            None => Err(StatementError::Unsupported {
                location: "input".to_owned(),
                reason: "a CSV statement needs a layout and statement info from the caller".to_owned(),
            }),
        },
    }
}

/// Checks that the statement adds up: opening balance plus the sum of the entries equals the
/// closing balance. A statement without one of the two balances has nothing to check.
pub fn check_arithmetic(statement: &Statement) -> Result<(), StatementError> {
    check_arithmetic_at(statement, "closing balance")
}

/// [`check_arithmetic`] with the location of the closing balance in the file, for the parsers.
pub(crate) fn check_arithmetic_at(statement: &Statement, closing_location: &str) -> Result<(), StatementError> {
    let (Some(opening), Some(closing)) = (statement.opening, statement.closing) else {
        return Ok(());
    };
    let mut entries_total: i128 = 0;
    for entry in &statement.entries {
        // Entries built by a parser are bounded (see the const assertion above); saturating only
        // matters for a hand-built statement, which then fails the comparison instead of
        // overflowing.
        entries_total = entries_total.saturating_add(entry.amount);
    }
    let computed = opening.amount.saturating_add(entries_total);
    if computed == closing.amount {
        return Ok(());
    }
    Err(StatementError::BalanceMismatch {
        location: closing_location.to_owned(),
        opening: opening.amount,
        entries_total,
        computed,
        closing: closing.amount,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn detect_recognises_camt_and_mt940_and_never_csv() {
        let camt = br#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt/></Document>"#;
        assert_eq!(Format::detect(camt), Some(Format::Camt053));
        assert_eq!(Format::detect(b"<Document><BkToCstmrStmt>"), Some(Format::Camt053));
        assert_eq!(Format::detect(b"<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.052.001.08\"/>"), None);
        assert_eq!(Format::detect(b"\r\n:20:STARTUMS\r\n:25:X"), Some(Format::Mt940));
        assert_eq!(Format::detect(b"{1:F01BANK}{2:O940}{3:{108:ABC}}{4:\r\n:20:X\r\n"), Some(Format::Mt940));
        assert_eq!(Format::detect(b"{1:F01BANK}{2:O940"), None);
        assert_eq!(Format::detect(b"{1:F01BANK}{4:\n:25:X"), None);
        assert_eq!(Format::detect(b"date,amount\n2026-01-01,1.00\n"), None);
        assert_eq!(Format::detect(b""), None);
        assert_eq!(Format::detect(b"  \n "), None);
    }

    #[test]
    fn format_serializes_lowercase() {
        assert_eq!(Format::Camt053.as_str(), "camt053");
        assert_eq!(Format::Mt940.to_string(), "mt940");
        assert_eq!(Format::Csv.as_str(), "csv");
    }

    fn statement(opening: i128, amounts: &[i128], closing: i128) -> Statement {
        let day = date!(2026 - 03 - 02);
        Statement {
            format: Format::Csv,
            statement_id: "s".to_owned(),
            account: "a".to_owned(),
            currency: None,
            sequence: None,
            opening: Some(BalancePoint { date: day, amount: opening }),
            closing: Some(BalancePoint { date: day, amount: closing }),
            entries: amounts
                .iter()
                .map(|amount| Entry {
                    location: "line 2".to_owned(),
                    booking_date: day,
                    value_date: None,
                    amount: *amount,
                    reversal: false,
                    reference: None,
                    bank_reference: None,
                    counterparty: None,
                    description: None,
                    bank_code: None,
                    details: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn arithmetic_holds_or_names_the_numbers() {
        assert_eq!(check_arithmetic(&statement(1000, &[250, -50], 1200)), Ok(()));
        assert_eq!(check_arithmetic(&statement(-100, &[], -100)), Ok(()));
        let error = check_arithmetic(&statement(1000, &[250, -50], 1201)).unwrap_err();
        assert_eq!(error.code(), "statement_balance_mismatch");
        let message = error.to_string();
        assert!(message.contains("1200") && message.contains("1201"), "{message}");
        let mut open_ended = statement(0, &[5], 7);
        open_ended.closing = None;
        assert_eq!(check_arithmetic(&open_ended), Ok(()));
        // Extreme hand-built values saturate instead of overflowing.
        assert!(check_arithmetic(&statement(i128::MAX, &[i128::MAX], 0)).is_err());
    }

    #[test]
    fn csv_without_layout_is_unsupported() {
        let error = parse(Format::Csv, b"date,amount\n", 2, None).unwrap_err();
        assert_eq!(error.code(), "statement_unsupported");
    }
}
