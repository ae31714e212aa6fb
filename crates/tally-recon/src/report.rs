//! The reports reconciliation produces, as plain values: what the end-of-day run, the statement
//! matching and a statement file's import found, ready to store (JSON) and to render (JSON, CSV,
//! HTML).
//!
//! Amounts are decimal strings in the currency's scale (never floats); times are RFC 3339 in UTC;
//! days are `YYYY-MM-DD` in the ledger's time zone. Ledgers are named by id (`1` is `default`,
//! as in the API) wherever a figure or a finding belongs to one.
//!
//! A day is closed for every ledger at once, and its stored report is whole: totals per ledger
//! and currency, figures per ledger, findings with their ledger. [`DayReport::filtered`] and
//! [`FileReport::filtered`] show it restricted to some ledgers (what `?ledger=`, `--ledger` and
//! a key scoped to ledgers see), and say so in the report.

use serde::{Deserialize, Serialize};

/// The id of the ledger `default`: the one every row written before ledgers existed belongs to.
/// Ledgers are never changed or deleted, so id 1 is always `default`.
pub const DEFAULT_LEDGER: i32 = 1;
/// The code of ledger 1.
pub const DEFAULT_LEDGER_CODE: &str = "default";

fn default_ledger() -> i32 {
    DEFAULT_LEDGER
}

/// A ledger as a report names it: its id and its code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRef {
    pub id: i32,
    pub code: String,
}

/// What a report restricted to some ledgers says of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportFilter {
    /// The ledgers shown, by id.
    pub ledgers: Vec<LedgerRef>,
    /// One sentence for people: what is shown and what is left out.
    pub note: String,
}

impl ReportFilter {
    fn new(ledgers: &[LedgerRef], left_out: &str) -> ReportFilter {
        let names: Vec<String> = ledgers.iter().map(|l| format!("{} ({})", l.code, l.id)).collect();
        let noun = if ledgers.len() == 1 { "ledger" } else { "ledgers" };
        ReportFilter {
            ledgers: ledgers.to_vec(),
            note: format!(
                "filtered to {noun} {}: {left_out}; the stored report is whole",
                if names.is_empty() { "(none)".to_owned() } else { names.join(", ") }
            ),
        }
    }

    fn shows(&self, ledger: i32) -> bool {
        self.ledgers.iter().any(|l| l.id == ledger)
    }
}

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
    /// The ledger of the account or transfer the finding is about; `None` for what is of no one
    /// ledger (the event sequence, a batch that wrote to several ledgers, an unmapped statement).
    /// Reports stored before ledgers have none (everything was in ledger 1 then).
    #[serde(default)]
    pub ledger: Option<i32>,
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
    /// The findings per ledger (`ledger: None`: of no one ledger), for the ledgers that have any.
    #[serde(default)]
    pub by_ledger: Vec<LedgerCount>,
}

/// How many findings of one check belong to one ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerCount {
    pub ledger: Option<i32>,
    pub findings: i64,
}

/// Per ledger and currency: the day's movement and the closing totals over the ledger's
/// accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrencyTotals {
    /// The ledger (reports stored before ledgers: 1, `default`).
    #[serde(default = "default_ledger")]
    pub ledger: i32,
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

/// One ledger's figures of the day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerDay {
    pub ledger: i32,
    pub code: String,
    /// Applied journal rows of the ledger created on the day.
    pub transfers: i64,
    pub rejected: i64,
    /// Accounts of the ledger with a balance snapshot for the day.
    pub accounts_touched: i64,
    /// Events of the day that name the ledger.
    pub events: i64,
    /// Batches that wrote journal rows of the ledger.
    pub batches: i64,
    pub hourly: Vec<HourVolume>,
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
    /// True for reports written since ledgers exist: figures, totals, counts and findings carry
    /// their ledger. A report stored before (false) was all of ledger 1.
    #[serde(default)]
    pub per_ledger: bool,
    /// Per ledger with totals or rows on the day, by id: its figures (the figures above are the
    /// sums over every ledger, plus the events of no one ledger).
    #[serde(default)]
    pub ledgers: Vec<LedgerDay>,
    /// Present when the report is shown restricted to some ledgers (never in the stored report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<ReportFilter>,
}

impl DayReport {
    /// The code of a ledger the report names (its id as text when it names none).
    pub fn ledger_label(&self, ledger: i32) -> String {
        ledger_label(self.ledgers.iter().map(|l| (l.ledger, l.code.as_str())), ledger)
    }

    /// The report as a caller restricted to `ledgers` sees it: the totals, figures, check counts
    /// and findings of those ledgers only (findings of no one ledger, such as a gap in the event
    /// sequence, are left out), its status from what is shown, and a `filter` that says so. The
    /// day's bounds, run and actor stay.
    pub fn filtered(&self, ledgers: &[LedgerRef]) -> DayReport {
        let filter = ReportFilter::new(
            ledgers,
            "the totals, figures and findings of other ledgers, and findings of no one ledger, are not shown",
        );
        let mut report = self.clone();
        if !self.per_ledger {
            // Stored before ledgers: all of it was ledger 1's.
            if !filter.shows(DEFAULT_LEDGER) {
                report.transfers = 0;
                report.rejected = 0;
                report.accounts_touched = 0;
                report.events = 0;
                report.batches = 0;
                report.currencies.clear();
                report.hourly.iter_mut().for_each(|hour| hour.transfers = 0);
                report.checks.iter_mut().for_each(|check| check.findings = 0);
                report.findings.clear();
            }
        } else {
            let shown: Vec<&LedgerDay> = self.ledgers.iter().filter(|l| filter.shows(l.ledger)).collect();
            report.transfers = shown.iter().map(|l| l.transfers).sum();
            report.rejected = shown.iter().map(|l| l.rejected).sum();
            report.accounts_touched = shown.iter().map(|l| l.accounts_touched).sum();
            report.events = shown.iter().map(|l| l.events).sum();
            report.batches = shown.iter().map(|l| l.batches).sum();
            for hour in &mut report.hourly {
                hour.transfers = shown
                    .iter()
                    .flat_map(|l| l.hourly.iter())
                    .filter(|h| h.hour == hour.hour)
                    .map(|h| h.transfers)
                    .sum();
            }
            report.currencies.retain(|c| filter.shows(c.ledger));
            for check in &mut report.checks {
                check.by_ledger.retain(|count| count.ledger.is_some_and(|l| filter.shows(l)));
                check.findings = check.by_ledger.iter().map(|count| count.findings).sum();
            }
            report.findings.retain(|f| f.ledger.is_some_and(|l| filter.shows(l)));
            report.ledgers.retain(|l| filter.shows(l.ledger));
        }
        report.status =
            if report.checks.iter().all(|c| c.findings == 0) { RunStatus::Clean } else { RunStatus::Findings };
        report.filter = Some(filter);
        report
    }
}

pub(crate) fn ledger_label<'a>(known: impl Iterator<Item = (i32, &'a str)>, ledger: i32) -> String {
    let mut known = known;
    match known.find(|(id, _)| *id == ledger) {
        Some((_, code)) => code.to_owned(),
        None if ledger == DEFAULT_LEDGER => DEFAULT_LEDGER_CODE.to_owned(),
        None => ledger.to_string(),
    }
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
    /// The ledger of the account (and so of the statement); reports stored before ledgers: 1.
    #[serde(default = "default_ledger")]
    pub ledger: i32,
    #[serde(default = "default_ledger_code")]
    pub ledger_code: String,
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

fn default_ledger_code() -> String {
    DEFAULT_LEDGER_CODE.to_owned()
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
    /// Present when the report is shown restricted to some ledgers (never in the stored report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<ReportFilter>,
}

impl FileReport {
    /// Whether a statement of the file belongs to one of `ledgers`.
    pub fn touches(&self, ledgers: &[LedgerRef]) -> bool {
        self.statements.iter().any(|s| s.ledger_of().is_some_and(|l| ledgers.iter().any(|r| r.id == l)))
    }

    /// The report as a caller restricted to `ledgers` sees it: the statements of those ledgers,
    /// and the file's own content (its unmapped statements, notes and file-level findings), not
    /// the statements of other ledgers nor their matching; counts and status from what is shown.
    pub fn filtered(&self, ledgers: &[LedgerRef]) -> FileReport {
        let filter = ReportFilter::new(ledgers, "statements of other ledgers are not shown");
        let mut report = self.clone();
        report.statements.retain(|s| s.ledger_of().is_none_or(|l| filter.shows(l)));
        let count = |outcome: &str| report.statements.iter().filter(|s| s.outcome == outcome).count() as i64;
        (report.imported, report.already_imported, report.unmapped) =
            (count("imported"), count("already_imported"), count("unmapped"));
        let statement_findings =
            report.statements.iter().filter_map(|s| s.report.as_ref()).any(|r| !r.findings.is_empty());
        report.status =
            if report.findings.is_empty() && !statement_findings { RunStatus::Clean } else { RunStatus::Findings };
        report.filter = Some(filter);
        report
    }
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
    /// The ledger of the Tally account (none when unmapped; see `ledger_of` for files stored
    /// before ledgers).
    #[serde(default)]
    pub ledger: Option<i32>,
    /// The matching report of a statement this import recorded.
    pub report: Option<StatementReport>,
}

impl FileStatement {
    /// The statement's ledger: its account's, none when unmapped (a file stored before ledgers
    /// names none: a mapped statement of it was in ledger 1).
    pub fn ledger_of(&self) -> Option<i32> {
        self.ledger.or(self.account_id.as_ref().map(|_| DEFAULT_LEDGER))
    }
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
