//! Bank statements: parsing external statement files and matching their entries against the
//! ledger.
//!
//! This crate is pure: no I/O, no async, no database. It turns the bytes of a statement file into
//! a [`StatementFile`] (every statement the file holds, with what the parser skipped or assumed)
//! and pairs statement entries with ledger entries ([`match_entries`]). Importing into the
//! database, the account mapping, the CLI and the reports are built on top of it elsewhere.
//!
//! # Sign convention
//!
//! Every amount is an `i128` count of minor units of the statement currency, signed from the
//! point of view of the account the statement is about: a credit (money in) is positive, a debit
//! (money out) is negative. Balances use the same sign (a debit balance is negative). A reversal
//! is signed by what it does, not by what it reverses: the reversal of a debit is a credit (+),
//! the reversal of a credit a debit (-). Entry amounts are never zero. Each statement's amounts
//! are read at the scale of its own currency ([`ParseOptions::scales`]), so one file may hold
//! statements in EUR, JPY and KWD.
//!
//! # Formats
//!
//! - **camt.053** (statement), **camt.052** (intraday account report) and **camt.054**
//!   (debit/credit notification), ISO 20022, any `camt.05x.001.xx` version (namespaces and the
//!   small differences between versions, such as `Sts` as text or as `Sts/Cd`, or the party name
//!   directly under `Dbtr` or under `Dbtr/Pty`, are handled). Every `Stmt`, `Rpt` or `Ntfctn` of
//!   the document is one [`Statement`]. Entries that are not booked (`PDNG`, `INFO`, `FUTR`) are
//!   skipped with a note. camt.053 needs an opening (`OPBD`, or `PRCD`) and a closing (`CLBD`)
//!   balance; camt.052 and camt.054 may have none.
//! - **MT940** (SWIFT customer statement): any number of messages, bare or each wrapped in
//!   `{1:}{2:}{3:}{4:` … `-}` blocks, separated by `-` lines or not at all, with the envelopes
//!   bank tools put around them (blank lines, `:940:` lines, header records such as
//!   `0000 01<BIC>…` and `940 00` before a message), each skipped with a note. A statement split
//!   into pages (`:62M:` intermediate closing, continued by a message opening with `:60M:` for the
//!   same account) is joined into one [`Statement`]; a page whose opening differs from the
//!   previous page's closing is noted (`page_chain_break`). `:61:` with or without the funds code
//!   and entry date, `//bank reference` and supplementary details; `:86:` as free text, German
//!   `?00`–`?63` subfields with SEPA keywords (`EREF+`, `KREF+`, `MREF+`, `SVWZ+`, …), the same
//!   layout with `~`, `^`, `>` or `<` as the subfield mark (Polish and Dutch banks), or
//!   `/TAG/value/` codes (`/EREF/`, `/NAME/`, `/IBAN/`, `/OCMT/`, `/CHGS/`, …). Non-standard
//!   tags (`:NS:`, `:34F:`, …) are skipped with a note.
//! - **CSV** with a header row, described by a [`CsvLayout`]; account, statement id and balances
//!   come from the caller ([`CsvStatementInfo`]). CSV is never guessed by [`Format::detect`].
//!
//! Text is UTF-8 (with or without a byte order mark), or the character set the caller declares
//! ([`ParseOptions::encoding`]) or an XML declaration names; otherwise a file that is not valid
//! UTF-8 is read as ISO-8859-2 when it holds letters only that set has, else as ISO-8859-1
//! (Windows-1250/1252 when it uses their extra range), with a note saying so.
//!
//! # What is refused, and what is only noted
//!
//! Every error names where (line number, or the XML element path such as
//! `Document/BkToCstmrStmt/Stmt/Ntry[3]/Amt` plus its line) and what, and has a stable code
//! ([`StatementError::code`]). Refused are, among others: an entry whose batch details do not add
//! up to it; unknown credit/debit indicators; zero, negative or over-precise amounts; impossible
//! dates; XML with a `DOCTYPE`; currencies that differ inside one statement; tags out of order.
//! A bank statement whose opening balance plus its entries differs from its closing balance is
//! **not** refused (the user cannot fix the bank's file): [`Statement::balance_difference`]
//! says by how much, and the importer reports it. A CSV statement, whose balances the caller
//! typed, is refused when they do not add up ([`check_arithmetic`]).
//!
//! # Limits
//!
//! - [`STATEMENT_BYTES_MAX`]: the largest input accepted (32 MiB).
//! - [`STATEMENT_ENTRIES_MAX`]: the most entries in one statement, and in one file (100 000).
//! - [`STATEMENTS_PER_FILE_MAX`]: the most statements (and MT940 messages) in one file.
//! - [`FIELD_LEN_MAX`]: the longest text field in characters (1024). Longer text is an error
//!   (`statement_too_large`), never silently truncated, so that what is imported is what the bank
//!   sent. [`LINE_LEN_MAX`]: the longest MT940 line.
//! - [`NOTES_MAX`]: the most notes kept per statement and per file; the rest are counted.
//! - XML nesting is limited to [`XML_DEPTH_MAX`] levels.
//!
//! Text fields are trimmed; empty text is `None`.
//!
//! # Matching
//!
//! [`match_entries`] pairs statement entries with ledger entries by reference (the entry's
//! reference, end-to-end id or bank reference), then by amount, date and counterparty (name or
//! IBAN), then by sums (one statement entry to several ledger entries and the reverse). An entry
//! whose bank deducted or added charges also matches on its amount before charges. Every entry
//! ends up in exactly one match or in the unmatched lists; group searches are bounded
//! ([`GROUP_CANDIDATES_MAX`], [`GROUP_SEARCH_NODES_MAX`], [`GROUP_WORK_TOTAL_MAX`]). The rules are
//! described in full on [`match_entries`].

mod account_id;
mod camt;
mod csv_import;
mod encoding;
mod error;
mod matching;
mod mt940;
mod narrative;
mod text;

use serde::Serialize;
use time::Date;

pub use account_id::{iban_is_valid, normalize_account};
pub use camt::parse_camt;
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

/// The most entries one statement may carry, and one file altogether.
pub const STATEMENT_ENTRIES_MAX: usize = 100_000;

/// The most statements one file may hold (and MT940 messages: pages count one each). A year of
/// daily statements for a few dozen accounts fits.
pub const STATEMENTS_PER_FILE_MAX: usize = 20_000;

/// The longest text field (reference, name, description, account, id), in characters.
pub const FIELD_LEN_MAX: usize = 1024;

/// The longest MT940 line, in bytes. SWIFT lines have at most 65 characters; exports of some
/// banks put a whole `:86:` on one line, which stays far below this.
pub const LINE_LEN_MAX: usize = 4096;

/// The most notes kept for one statement and for the file; further notes are counted in a last
/// note, so that a file of ten thousand skipped tags cannot make a report huge.
pub const NOTES_MAX: usize = 100;

/// The deepest XML nesting accepted. camt.053 needs about 12 levels; the bound stops a hostile
/// file from exhausting the stack or memory with nesting alone.
pub const XML_DEPTH_MAX: usize = 48;

const _: () = assert!(STATEMENT_BYTES_MAX > 0 && STATEMENT_BYTES_MAX <= 256 * 1024 * 1024);
const _: () = assert!(STATEMENT_ENTRIES_MAX > 0 && STATEMENT_ENTRIES_MAX <= 10_000_000);
const _: () = assert!(STATEMENTS_PER_FILE_MAX > 0 && STATEMENTS_PER_FILE_MAX <= STATEMENT_BYTES_MAX / 32);
// Entries are summed in i128: STATEMENT_ENTRIES_MAX amounts of at most 2^96 each stay far below
// i128::MAX, so checking the arithmetic of a statement cannot overflow.
const _: () = assert!((STATEMENT_ENTRIES_MAX as i128 + 2) < i128::MAX / tally_core::AMOUNT_MAX);
const _: () = assert!(FIELD_LEN_MAX >= 140 && FIELD_LEN_MAX <= 64 * 1024);
const _: () = assert!(LINE_LEN_MAX >= 65 * 4 && LINE_LEN_MAX <= FIELD_LEN_MAX * 16);
const _: () = assert!(NOTES_MAX >= 10 && NOTES_MAX <= 10_000);
const _: () = assert!(XML_DEPTH_MAX >= 16 && XML_DEPTH_MAX <= 256);

/// The kind of statement file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    /// ISO 20022 BankToCustomerStatement.
    Camt053,
    /// ISO 20022 BankToCustomerAccountReport (intraday).
    Camt052,
    /// ISO 20022 BankToCustomerDebitCreditNotification.
    Camt054,
    Mt940,
}

impl Format {
    /// The stable name used in serialization and reports: `csv`, `camt053`, `camt052`,
    /// `camt054` or `mt940`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Camt053 => "camt053",
            Format::Camt052 => "camt052",
            Format::Camt054 => "camt054",
            Format::Mt940 => "mt940",
        }
    }

    /// The format named by [`Format::as_str`].
    pub fn parse(name: &str) -> Option<Format> {
        [Format::Csv, Format::Camt053, Format::Camt052, Format::Camt054, Format::Mt940]
            .into_iter()
            .find(|format| format.as_str() == name)
    }

    /// Whether this is one of the ISO 20022 camt messages.
    pub fn is_camt(self) -> bool {
        matches!(self, Format::Camt053 | Format::Camt052 | Format::Camt054)
    }

    /// Recognises camt and MT940 from the first bytes of a file.
    ///
    /// XML whose head names a camt namespace (`camt.053`, `camt.052`, `camt.054`) or its root
    /// child (`BkToCstmrStmt`, `BkToCstmrAcctRpt`, `BkToCstmrDbtCdtNtfctn`) is that camt message.
    /// Text is MT940 when, after optional SWIFT block headers, bank header records and blank
    /// lines, a line starts with `:20:` and a later one with `:25:`. CSV is never guessed: a CSV
    /// file has no signature, so the caller says so.
    pub fn detect(bytes: &[u8]) -> Option<Format> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
        let rest = &bytes[start..];
        let head = &rest[..rest.len().min(DETECT_HEAD_BYTES)];
        if rest.starts_with(b"<") {
            // The namespace and root element sit in the first few hundred bytes of a real file;
            // looking further would only cost time on large inputs.
            let kinds = [
                (Format::Camt053, b"camt.053".as_slice(), b"BkToCstmrStmt".as_slice()),
                (Format::Camt052, b"camt.052", b"BkToCstmrAcctRpt"),
                (Format::Camt054, b"camt.054", b"BkToCstmrDbtCdtNtfctn"),
            ];
            return kinds
                .iter()
                .find(|(_, namespace, root)| contains(head, namespace) || contains(head, root))
                .map(|(format, _, _)| *format);
        }
        let twenty = head.split(|b| *b == b'\n').position(|line| trim_ascii(line).starts_with(b":20:"))?;
        let is_mt940 = head.split(|b| *b == b'\n').skip(twenty + 1).any(|line| trim_ascii(line).starts_with(b":25:"));
        is_mt940.then_some(Format::Mt940)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of a file [`Format::detect`] looks at.
const DETECT_HEAD_BYTES: usize = 4096;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

fn trim_ascii(line: &[u8]) -> &[u8] {
    let start = line.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(line.len());
    let line = &line[start..];
    // SWIFT block headers may sit on the same line as the first tag: `{1:…}{2:…}{4::20:X`.
    let line = match line.windows(3).position(|window| window == b"{4:") {
        Some(at) if line.starts_with(b"{") => &line[at + 3..],
        _ => line,
    };
    let start = line.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(line.len());
    &line[start..]
}

/// The number of decimals of each currency's minor unit, as the ledger knows them.
#[derive(Clone, Copy)]
pub enum Scales<'a> {
    /// Every currency has this scale (for a caller that knows the file's only currency).
    Fixed(u8),
    /// A lookup; `None` refuses the currency as unknown.
    Lookup(&'a (dyn Fn(&str) -> Option<u8> + Sync)),
}

impl Scales<'_> {
    /// The scale of `currency`, or `statement_unsupported` at `location`.
    pub(crate) fn of(&self, currency: &str, location: &str) -> Result<u8, StatementError> {
        let scale = match self {
            Scales::Fixed(scale) => Some(*scale),
            Scales::Lookup(lookup) => lookup(currency),
        };
        let scale = scale.ok_or_else(|| {
            StatementError::unsupported(
                location,
                format!("currency {} is not known to the ledger", text::clip(currency)),
            )
        })?;
        if scale > tally_core::amount::SCALE_MAX {
            return Err(StatementError::unsupported(
                "scale argument",
                format!("scale {scale} is above the largest supported scale {}", tally_core::amount::SCALE_MAX),
            ));
        }
        Ok(scale)
    }
}

impl std::fmt::Debug for Scales<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scales::Fixed(scale) => write!(f, "Fixed({scale})"),
            Scales::Lookup(_) => f.write_str("Lookup"),
        }
    }
}

/// How to read a file.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions<'a> {
    pub scales: Scales<'a>,
    /// The character set the caller declares, as a label (`iso-8859-2`, `windows-1250`,
    /// `utf-8`); `None`: UTF-8 when the bytes are valid UTF-8, else detected.
    pub encoding: Option<&'a str>,
}

impl ParseOptions<'_> {
    /// Every currency at `scale`, the encoding detected.
    pub fn with_scale(scale: u8) -> ParseOptions<'static> {
        ParseOptions { scales: Scales::Fixed(scale), encoding: None }
    }
}

/// Everything one file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementFile {
    pub format: Format,
    /// The camt message and version from its namespace, such as `camt.053.001.08`; `None` for
    /// MT940, CSV and camt without a namespace.
    pub message: Option<String>,
    /// The character set the text was read in: `UTF-8`, `ISO-8859-2`, `windows-1252`, ….
    pub encoding: String,
    /// In file order; pages of one MT940 statement are joined into one.
    pub statements: Vec<Statement>,
    /// What the parser skipped or assumed outside any statement: envelopes, header records, the
    /// character set.
    pub notes: Vec<Note>,
}

/// Something the parser skipped or assumed, so that nothing is dropped silently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    /// Stable code: `encoding_detected`, `envelope_skipped`, `header_skipped`, `tag_skipped`,
    /// `entry_not_booked`, `page_chain_break`, `page_sequence_gap`, `statement_incomplete`,
    /// `notes_omitted`.
    pub code: &'static str,
    /// Where: `line 14`, or an XML element path with its line.
    pub location: String,
    /// One sentence a person can act on.
    pub detail: String,
    /// For `page_chain_break`: the page's opening balance minus the previous page's closing
    /// balance, in minor units.
    pub amount: Option<i128>,
}

impl Note {
    pub(crate) fn new(code: &'static str, location: impl Into<String>, detail: impl Into<String>) -> Note {
        Note { code, location: location.into(), detail: detail.into(), amount: None }
    }
}

/// Appends a note, keeping at most [`NOTES_MAX`]: the last kept note counts the rest.
pub(crate) fn push_note(notes: &mut Vec<Note>, note: Note) {
    match notes.len() {
        len if len + 1 < NOTES_MAX => notes.push(note),
        len if len + 1 == NOTES_MAX => {
            notes.push(Note::new("notes_omitted", note.location, "further notes are omitted: 1 more"));
        }
        _ => {
            let last = notes.last_mut().expect("NOTES_MAX notes are kept");
            let omitted = last
                .detail
                .trim_end_matches(" more")
                .rsplit(' ')
                .next()
                .and_then(|count| count.parse::<u64>().ok())
                .unwrap_or(0);
            last.detail = format!("further notes are omitted: {} more", omitted + 1);
        }
    }
}

/// One bank statement: one account over one period, with its own balances and entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub format: Format,
    /// camt `Stmt/Id` (`Rpt/Id`, `Ntfctn/Id`), MT940 `:20:` of the first page, CSV: from the
    /// caller.
    pub statement_id: String,
    /// The bank account as the file writes it: camt `Acct/Id/IBAN` (or `Othr/Id`), MT940
    /// `:25:`, CSV: from the caller. [`Statement::bank_account_keys`] gives the forms an account
    /// mapping is looked up by.
    pub account: String,
    /// ISO 4217 code: camt `Acct/Ccy` (else the amounts' `Ccy`), MT940 `:60F:` currency.
    pub currency: Option<String>,
    /// MT940 `:28C:` of the first page, camt `ElctrncSeqNb` (else `LglSeqNb`).
    pub sequence: Option<String>,
    pub opening: Option<BalancePoint>,
    pub closing: Option<BalancePoint>,
    pub entries: Vec<Entry>,
    /// MT940 messages joined into this statement (1 for a statement on one page; camt and CSV 1).
    pub pages: u32,
    /// What was skipped or assumed inside this statement.
    pub notes: Vec<Note>,
}

impl Statement {
    /// Closing balance minus (opening balance + entries), in minor units: `Some(0)` when the
    /// statement adds up, `None` when it lacks one of the balances.
    pub fn balance_difference(&self) -> Option<i128> {
        let (opening, closing) = (self.opening?, self.closing?);
        Some(closing.amount.saturating_sub(opening.amount.saturating_add(self.entries_total())))
    }

    /// The sum of the entries, in minor units.
    pub fn entries_total(&self) -> i128 {
        // Entries built by a parser are bounded (see the const assertion above); saturating only
        // matters for a hand-built statement, which then fails a comparison instead of
        // overflowing.
        self.entries.iter().fold(0i128, |total, entry| total.saturating_add(entry.amount))
    }

    /// The forms of [`Statement::account`] a mapping from bank accounts to ledger accounts is
    /// looked up by: the account normalised ([`normalize_account`]), and the IBAN inside it when
    /// it holds one (`NL91ABNA0417164300EUR`, `/PL61109010140000071219812874`).
    pub fn bank_account_keys(&self) -> Vec<String> {
        account_id::keys(&self.account)
    }
}

/// A balance on a day, in signed minor units (credit +, debit -).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BalancePoint {
    #[serde(serialize_with = "serialize_date")]
    pub date: Date,
    pub amount: i128,
}

/// An amount the bank states beside the booked one, in a currency that may not be the
/// statement's (an original amount before conversion or charges, or the charges).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtherAmount {
    /// ISO 4217 code.
    pub currency: String,
    /// Unsigned decimal text with a decimal point, as the bank wrote it (`525.15`).
    pub amount: String,
    /// Unsigned minor units when the currency is the statement's; `None` otherwise.
    pub minor: Option<i128>,
}

/// One booked line of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Where in the file: `line 14` (CSV, MT940) or `Ntry[3]` (camt, 1-based within its
    /// statement).
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
    /// The end-to-end reference the payer gave, where the dialect names it: camt
    /// `Refs/EndToEndId`, MT940 `:86:` `EREF+` or `/EREF/`.
    pub end_to_end_id: Option<String>,
    /// The other party's name.
    pub counterparty: Option<String>,
    /// The other party's IBAN: camt `RltdPties/DbtrAcct` or `CdtrAcct`, MT940 `:86:` `?31`,
    /// `~38`, `/IBAN/`, `/CNTP/`, or the supplementary details of `:61:`; only an IBAN whose
    /// check digits hold.
    pub counterparty_iban: Option<String>,
    pub description: Option<String>,
    /// camt `Domn/Fmly/SubFmly` codes joined by `/` (or `Prtry/Cd`), MT940 `:61:` type (`NTRF`).
    pub bank_code: Option<String>,
    /// The amount the payment was instructed with, before charges or conversion: camt
    /// `AmtDtls/InstdAmt`, MT940 `/OCMT/` or `OAMT+`.
    pub original_amount: Option<OtherAmount>,
    /// The charges the bank took or added: camt `Chrgs`, MT940 `/CHGS/` or `COAM+`.
    pub charges: Option<OtherAmount>,
    /// The transactions of a batched entry (two or more); empty otherwise. They sum to `amount`.
    pub details: Vec<EntryDetail>,
}

impl Entry {
    /// An entry of `amount` booked on `booking_date`, found at `location`, with nothing else
    /// known yet.
    pub fn booked(location: impl Into<String>, booking_date: Date, amount: i128) -> Entry {
        Entry {
            location: location.into(),
            booking_date,
            value_date: None,
            amount,
            reversal: false,
            reference: None,
            bank_reference: None,
            end_to_end_id: None,
            counterparty: None,
            counterparty_iban: None,
            description: None,
            bank_code: None,
            original_amount: None,
            charges: None,
            details: Vec::new(),
        }
    }

    /// The entry's amount before the bank's charges, signed like `amount`, when the statement
    /// says so in its own currency: the original amount, else the amount plus the charges. For
    /// money in, charges were deducted (98.50 booked, 1.50 charges: 100.00); for money out they
    /// were added (-101.50 booked, 1.50 charges: -100.00). `None` when it would equal the amount,
    /// be zero or change sign.
    pub fn amount_before_charges(&self) -> Option<i128> {
        let sign = self.amount.signum();
        let gross = match (&self.original_amount, &self.charges) {
            (Some(OtherAmount { minor: Some(original), .. }), _) => sign * original,
            (_, Some(OtherAmount { minor: Some(charges), .. })) => self.amount.checked_add(*charges)?,
            _ => return None,
        };
        (gross != self.amount && gross.signum() == sign && gross != 0).then_some(gross)
    }
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

/// Parses a statement file of the given format. CSV needs its layout and the statement facts the
/// file does not carry (its amounts are read at the scale of `CsvStatementInfo::currency`); for
/// camt and MT940 `csv` is ignored.
pub fn parse(
    format: Format,
    bytes: &[u8],
    options: &ParseOptions<'_>,
    csv: Option<(&CsvLayout, &CsvStatementInfo)>,
) -> Result<StatementFile, StatementError> {
    match format {
        Format::Camt053 | Format::Camt052 | Format::Camt054 => {
            let file = parse_camt(bytes, options)?;
            if file.format != format {
                return Err(StatementError::unsupported(
                    "input",
                    format!("the file is {}, not {}", file.format, format),
                ));
            }
            Ok(file)
        }
        Format::Mt940 => parse_mt940(bytes, options),
        Format::Csv => {
            let Some((layout, info)) = csv else {
                return Err(StatementError::unsupported(
                    "input",
                    "a CSV statement needs a layout and statement info from the caller",
                ));
            };
            let scale = match (&info.currency, options.scales) {
                (Some(currency), scales) => scales.of(currency, "CsvStatementInfo.currency")?,
                (None, Scales::Fixed(scale)) => scale,
                (None, Scales::Lookup(_)) => {
                    return Err(StatementError::unsupported(
                        "CsvStatementInfo.currency",
                        "a CSV statement needs its currency",
                    ));
                }
            };
            let statement = parse_csv(bytes, scale, layout, info)?;
            Ok(StatementFile {
                format: Format::Csv,
                message: None,
                encoding: "UTF-8".to_owned(),
                statements: vec![statement],
                notes: Vec::new(),
            })
        }
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
    let entries_total = statement.entries_total();
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
        let camt052 = b"<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.052.001.08\"/>";
        assert_eq!(Format::detect(camt052), Some(Format::Camt052));
        assert_eq!(Format::detect(b"<Document><BkToCstmrDbtCdtNtfctn>"), Some(Format::Camt054));
        assert_eq!(Format::detect(b"<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:pain.001.001.09\"/>"), None);
        assert_eq!(Format::detect(b"\r\n:20:STARTUMS\r\n:25:X"), Some(Format::Mt940));
        assert_eq!(Format::detect(b"\n0000 01BPKOPLPWXXXX\n940 00\n:20:X\n:25:Y"), Some(Format::Mt940));
        assert_eq!(Format::detect(b"{1:F01BANK}{2:O940}{3:{108:ABC}}{4:\r\n:20:X\r\n:25:Y"), Some(Format::Mt940));
        assert_eq!(Format::detect(b"{1:F01BANK}{2:O940}{4::20:X\n:25:Y"), Some(Format::Mt940));
        assert_eq!(Format::detect(b"{1:F01BANK}{2:O940"), None);
        assert_eq!(Format::detect(b"{1:F01BANK}{4:\n:25:X"), None);
        assert_eq!(Format::detect(b":20:X\n"), None);
        assert_eq!(Format::detect(b"date,amount\n2026-01-01,1.00\n"), None);
        assert_eq!(Format::detect(b""), None);
        assert_eq!(Format::detect(b"  \n "), None);
    }

    #[test]
    fn format_serializes_lowercase() {
        assert_eq!(Format::Camt053.as_str(), "camt053");
        assert_eq!(Format::Mt940.to_string(), "mt940");
        assert_eq!(Format::Csv.as_str(), "csv");
        for format in [Format::Csv, Format::Camt053, Format::Camt052, Format::Camt054, Format::Mt940] {
            assert_eq!(Format::parse(format.as_str()), Some(format));
            assert_eq!(format.is_camt(), format.as_str().starts_with("camt"));
        }
        assert_eq!(Format::parse("camt"), None);
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
            entries: amounts.iter().map(|amount| entry(*amount)).collect(),
            pages: 1,
            notes: Vec::new(),
        }
    }

    fn entry(amount: i128) -> Entry {
        Entry::booked("line 2", date!(2026 - 03 - 02), amount)
    }

    #[test]
    fn balance_difference_and_amount_before_charges() {
        assert_eq!(statement(1000, &[250, -50], 1200).balance_difference(), Some(0));
        assert_eq!(statement(1000, &[250, -50], 1227).balance_difference(), Some(27));
        let mut open_ended = statement(0, &[5], 7);
        open_ended.opening = None;
        assert_eq!(open_ended.balance_difference(), None);

        let other =
            |minor: i128| Some(OtherAmount { currency: "EUR".into(), amount: String::new(), minor: Some(minor) });
        let foreign = Some(OtherAmount { currency: "USD".into(), amount: "1.00".into(), minor: None });
        let with = |amount: i128, original: Option<OtherAmount>, charges: Option<OtherAmount>| Entry {
            original_amount: original,
            charges,
            ..entry(amount)
        };
        assert_eq!(with(9_850, None, other(150)).amount_before_charges(), Some(10_000));
        assert_eq!(with(-10_150, None, other(150)).amount_before_charges(), Some(-10_000));
        assert_eq!(with(-10_150, other(10_000), other(150)).amount_before_charges(), Some(-10_000));
        assert_eq!(with(100, other(100), None).amount_before_charges(), None);
        assert_eq!(with(100, foreign.clone(), foreign).amount_before_charges(), None);
        assert_eq!(with(-100, None, other(100)).amount_before_charges(), None);
        assert_eq!(with(-100, None, other(300)).amount_before_charges(), None);
    }

    #[test]
    fn notes_are_capped_and_counted() {
        let mut notes = Vec::new();
        for line in 0..NOTES_MAX + 5 {
            push_note(&mut notes, Note::new("tag_skipped", format!("line {line}"), "x"));
        }
        assert_eq!(notes.len(), NOTES_MAX);
        let last = notes.last().unwrap();
        assert_eq!((last.code, last.detail.as_str()), ("notes_omitted", "further notes are omitted: 6 more"));
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
        let error = parse(Format::Csv, b"date,amount\n", &ParseOptions::with_scale(2), None).unwrap_err();
        assert_eq!(error.code(), "statement_unsupported");
    }
}
