//! The reports reconciliation produces, as plain values: what the end-of-day run, the statement
//! matching and a statement file's import found, ready to store (JSON) and to render (JSON, CSV,
//! HTML).
//!
//! Amounts are decimal strings in the currency's scale (never floats); times are RFC 3339 in UTC;
//! days are `YYYY-MM-DD` in the ledger's time zone.

use serde::{Deserialize, Serialize};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every check passed.
    Clean,
    /// At least one finding.
    Findings,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Clean => "clean",
            RunStatus::Findings => "findings",
        }
    }
}

/// One disagreement, with what is needed to investigate it: the accounts or transfers and the
/// amounts involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable code of the check, e.g. `closing_balance_mismatch`.
    pub check: String,
    /// What the finding is about: an account id, a transfer id, a currency, a batch, an event
    /// sequence number, a statement entry.
    pub subject: String,
    pub account_id: Option<String>,
    pub transfer_id: Option<String>,
    pub currency: Option<String>,
    /// What the check expected and what it found, as decimal amounts where amounts are involved.
    pub expected: Option<String>,
    pub found: Option<String>,
    /// `found - expected` for amounts.
    pub difference: Option<String>,
    /// One sentence a person can act on.
    pub detail: String,
}

/// One check of the run and how many findings it had (the report lists at most
/// `FINDINGS_PER_CHECK_MAX` of them per check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSummary {
    pub check: String,
    pub description: String,
    pub findings: i64,
}

/// Per currency: the day's movement and the closing totals over all accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrencyTotals {
    pub currency: String,
    pub scale: u8,
    /// Applied journal entries of the day in this currency.
    pub transfers: i64,
    /// Sum of the day's posted amounts (each posted entry counted once).
    pub posted_volume: String,
    pub closing_debits_posted: String,
    pub closing_credits_posted: String,
    pub closing_debits_pending: String,
    pub closing_credits_pending: String,
}

/// Transfers per hour of the day (hour 0 starts at the day's start; a daylight-saving day has 23
/// or 25 hours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourVolume {
    pub hour: u32,
    pub transfers: i64,
}

/// The end-of-day report for one ledger day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayReport {
    pub run_id: String,
    pub day: String,
    pub time_zone: String,
    /// The day's bounds (UTC): `[starts_at, ends_at)`.
    pub starts_at: String,
    pub ends_at: String,
    pub started_at: String,
    pub finished_at: String,
    /// Who ran it: the authenticated caller, the CLI's operator, or `scheduler`.
    pub actor: String,
    pub status: RunStatus,
    /// `written` when this run wrote the day's balance snapshot, `verified` when it checked a
    /// snapshot written earlier against the journal, `none` for a day before the ledger's first
    /// journal row, which is never closed.
    pub snapshot: String,
    pub transfers: i64,
    pub rejected: i64,
    pub accounts_touched: i64,
    pub events: i64,
    pub batches: i64,
    pub currencies: Vec<CurrencyTotals>,
    pub hourly: Vec<HourVolume>,
    pub checks: Vec<CheckSummary>,
    pub findings: Vec<Finding>,
}

/// The result of matching one imported statement against the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementReport {
    pub run_id: String,
    /// Tally's id of the imported statement.
    pub statement: String,
    /// The statement's own id (`:20:`, `Stmt/Id`) and format.
    pub statement_ref: String,
    pub format: String,
    pub account_id: String,
    pub account_code: Option<String>,
    pub currency: String,
    pub period_from: Option<String>,
    pub period_to: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    pub actor: String,
    pub status: RunStatus,
    pub statement_entries: i64,
    pub ledger_entries: i64,
    pub matched: i64,
    pub unmatched_statement: i64,
    pub unmatched_ledger: i64,
    /// Opening and closing balances on the statement against Tally's for the same dates.
    pub balances: Vec<BalanceComparison>,
    pub matches: Vec<MatchLine>,
    pub findings: Vec<Finding>,
    /// The file the statement came in (reports written before files were recorded have none).
    #[serde(default)]
    pub file: Option<String>,
    /// The bank account as the file names it.
    #[serde(default)]
    pub bank_account: Option<String>,
    /// MT940 messages joined into this statement.
    #[serde(default = "one")]
    pub pages: i64,
    /// Closing balance minus (opening balance + entries) as the bank's file has it: `0.00`
    /// when the statement adds up.
    #[serde(default)]
    pub balance_difference: Option<String>,
    /// What the parser skipped or assumed inside the statement.
    #[serde(default)]
    pub notes: Vec<NoteLine>,
}

fn one() -> i64 {
    1
}

/// Something the parser skipped or assumed (a tag, an envelope, a pending entry, the character
/// set), so that nothing of the file is dropped silently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteLine {
    /// Stable code: `tag_skipped`, `header_skipped`, `envelope_skipped`, `encoding_detected`,
    /// `entry_not_booked`, `page_chain_break`, `page_does_not_add_up`, `page_sequence_gap`,
    /// `statement_incomplete`, `amount_unreadable`, `notes_omitted`, `mapping_unused`.
    pub code: String,
    pub location: String,
    pub detail: String,
    /// A decimal amount where the note is about one.
    pub amount: Option<String>,
}

/// What one import did with a whole file, and every statement in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReport {
    pub run_id: String,
    /// Tally's id of the imported file.
    pub file: String,
    pub sha256: String,
    pub format: String,
    /// The camt message and version (`camt.053.001.08`).
    pub message: Option<String>,
    /// The character set the file was read in.
    pub encoding: String,
    pub started_at: String,
    pub finished_at: String,
    pub actor: String,
    /// `findings` when the file or any statement imported by this run has a finding (an
    /// unmapped statement is one).
    pub status: RunStatus,
    /// Statements recorded by this import, recorded before (the same content), and of bank
    /// accounts no Tally account is mapped to.
    pub imported: i64,
    pub already_imported: i64,
    pub unmapped: i64,
    /// In file order.
    pub statements: Vec<FileStatement>,
    pub notes: Vec<NoteLine>,
    /// File-level findings: `unmapped_statement`.
    pub findings: Vec<Finding>,
}

/// One statement of a file: what it is and what the import did with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStatement {
    /// 1-based position in the file.
    pub ord: i64,
    /// `imported`, `already_imported` or `unmapped`.
    pub outcome: String,
    pub statement_ref: String,
    pub bank_account: String,
    pub currency: Option<String>,
    pub pages: i64,
    pub entries: i64,
    pub period_from: Option<String>,
    pub period_to: Option<String>,
    pub opening: Option<String>,
    pub closing: Option<String>,
    pub balance_difference: Option<String>,
    /// Tally's id of the statement (imported now or before).
    pub statement: Option<String>,
    pub account_id: Option<String>,
    pub account_code: Option<String>,
    /// The matching report of a statement this import recorded.
    pub report: Option<StatementReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceComparison {
    /// `opening` or `closing`.
    pub which: String,
    pub date: String,
    pub statement: String,
    pub tally: String,
    pub difference: String,
}

/// One match: the statement entries and journal entries it pairs, and by which rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchLine {
    pub rule: String,
    /// Where each statement entry is in the file (`line 14`, `Ntry[3]`).
    pub statement_entries: Vec<String>,
    pub transfer_ids: Vec<String>,
    pub amount: String,
    pub difference: String,
}
