//! `tally balance --as-of`, `tally reconcile --date`, `tally statement` and `tally days`:
//! reconciliation at the command line, with a progress bar for long runs and reports as tables,
//! JSON, CSV or HTML, whole or restricted to one ledger (`--ledger`).

use crate::args::{
    DaysCommand, ReconcileArgs, ReportFormatArg, StatementCommand, StatementFormatArg, StatementImportArgs,
};
use crate::connect::Database;
use crate::render::{Output, table};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tally_core::format_amount;
use tally_recon::days::{self, format_day};
use tally_recon::render::{ReportFormat, render_day, render_file, render_statement};
use tally_recon::report::{DayReport, FileReport, LedgerRef, NoteLine, RunStatus, StatementReport};
use tally_server::views::time;
use tally_statement::{BalancePoint, CsvLayout, CsvStatementInfo, Format, MatchRules};

/// Exit status when a reconciliation has findings (as `tally reconcile` without a date).
pub const EXIT_FINDINGS: i32 = 4;
/// How many of the newest closed days `tally days` lists.
const CLOSED_DAYS_LISTED: i64 = 10;

pub async fn balance_as_of(db: &Database, out: &Output, account: &str, as_of: &str) -> Result<()> {
    let at = tally_recon::parse_time(as_of)?;
    let record = db.store.require_account(account).await?;
    let point = tally_recon::balance::balance_as_of(&db.recon, record.account.id.0, at).await?;
    let s = point.scale;
    let value = json!({
        "account_id": point.account_id, "code": record.code, "currency": point.currency, "as_of": time(point.as_of),
        "balance": format_amount(point.balance(), s), "available": format_amount(point.available(), s),
        "debits_posted": format_amount(point.debits_posted, s), "credits_posted": format_amount(point.credits_posted, s),
        "debits_pending": format_amount(point.debits_pending, s), "credits_pending": format_amount(point.credits_pending, s),
        "snapshot_day": point.snapshot_day,
    });
    out.value(&value, || {
        let mut t =
            table(&["account", "as of", "balance", "available", "pending out", "pending in", "from snapshot of"]);
        t.add_row(vec![
            record.code.clone().unwrap_or_else(|| point.account_id.to_string()),
            time(point.as_of),
            format!("{} {}", format_amount(point.balance(), s), point.currency),
            format_amount(point.available(), s),
            format_amount(point.debits_pending, s),
            format_amount(point.credits_pending, s),
            point.snapshot_day.clone().unwrap_or_else(|| "(no closed day yet)".into()),
        ]);
        t.to_string()
    });
    Ok(())
}

/// A progress bar whose length grows as the run learns how many steps it has.
struct Bar(ProgressBar);

impl tally_recon::Progress for Bar {
    fn add_steps(&self, steps: usize) {
        self.0.inc_length(steps as u64);
    }
    fn step(&self, what: &str) {
        self.0.inc(1);
        self.0.set_message(what.to_owned());
    }
}

/// The ledger a `--ledger` names (id or code), as reports name it.
async fn ledger_ref(db: &Database, named: Option<&str>) -> Result<Option<LedgerRef>> {
    match named {
        Some(text) => {
            let record = db.store.require_ledger(text).await?;
            Ok(Some(LedgerRef { id: record.id.0, code: record.code }))
        }
        None => Ok(None),
    }
}

pub async fn end_of_day(db: &Database, out: &Output, args: &ReconcileArgs) -> Result<()> {
    let text = args.date.as_deref().expect("dispatched with a date");
    // An unknown ledger is refused before anything runs.
    let ledger = ledger_ref(db, args.ledger.as_deref()).await?;
    let day = if text == "yesterday" { days::last_closable(&db.recon).await? } else { days::parse_day(text)? };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{spinner} reconciling {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format_day(day));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let report = tally_recon::eod::run_end_of_day(&db.recon, day, &db.actor, &Bar(bar.clone())).await;
    bar.finish_and_clear();
    let report = match ledger {
        Some(ledger) => report?.filtered(&[ledger]),
        None => report?,
    };
    let rendered = match report_format(args.format, out) {
        None => day_table(&report),
        Some(format) => render_day(&report, format),
    };
    let findings = report.checks.iter().map(|c| c.findings).sum::<i64>();
    emit(&rendered, args.output.as_deref(), &format!("{}: {findings} finding(s)", report.day))?;
    if report.status == RunStatus::Findings {
        std::process::exit(EXIT_FINDINGS);
    }
    Ok(())
}

/// The renderer for a `--format`, or `None` for a table on the terminal.
fn report_format(format: ReportFormatArg, out: &Output) -> Option<ReportFormat> {
    match (format, out.json) {
        (ReportFormatArg::Table, false) => None,
        (ReportFormatArg::Table, true) | (ReportFormatArg::Json, _) => Some(ReportFormat::Json),
        (ReportFormatArg::Csv, _) => Some(ReportFormat::Csv),
        (ReportFormatArg::Html, _) => Some(ReportFormat::Html),
    }
}

/// Prints a report, or writes it to `output` and says so on stderr.
fn emit(rendered: &str, output: Option<&std::path::Path>, summary: &str) -> Result<()> {
    match output {
        Some(path) => {
            std::fs::write(path, rendered).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("{summary}; report written to {}", path.display());
        }
        None => crate::render::say(rendered),
    }
    Ok(())
}

pub async fn statement(db: &Database, out: &Output, command: StatementCommand) -> Result<()> {
    let (report, format, output) = match command {
        StatementCommand::Import(args) => {
            let outcome = import(db, &args).await?;
            (Shown::File(outcome.report, Some(outcome.created)), args.report, args.output)
        }
        StatementCommand::Show { id, ledger, format, output } => {
            let ledger = ledger_ref(db, ledger.as_deref()).await?;
            let not_here = |ledger: &LedgerRef| {
                tally_recon::ReconError::StatementNotFound(format!("{id} in ledger {} ({})", ledger.code, ledger.id))
            };
            let report = match tally_recon::statement::statement_report(&db.recon, id).await {
                Ok(report) => match &ledger {
                    Some(ledger) if report.ledger != ledger.id => return Err(not_here(ledger).into()),
                    _ => Shown::Statement(report),
                },
                Err(tally_recon::ReconError::StatementNotFound(_)) => {
                    let file = tally_recon::statement::file_report(&db.recon, id).await?;
                    match ledger {
                        Some(ledger) if !file.touches(std::slice::from_ref(&ledger)) => {
                            return Err(not_here(&ledger).into());
                        }
                        Some(ledger) => Shown::File(file.filtered(&[ledger]), None),
                        None => Shown::File(file, None),
                    }
                }
                Err(error) => return Err(error.into()),
            };
            (report, format, output)
        }
        StatementCommand::List { ledger, account, limit, before } => {
            return list_statements(db, out, ledger.as_deref(), account.as_deref(), limit, before).await;
        }
    };
    let (rendered, summary, status) = match &report {
        Shown::Statement(report) => {
            let rendered = match report_format(format, out) {
                None => statement_table(report, None),
                Some(format) => render_statement(report, format),
            };
            (rendered, statement_summary(report), report.status)
        }
        Shown::File(report, created) => {
            let rendered = match report_format(format, out) {
                None => file_table(report, *created),
                Some(format) => render_file(report, format),
            };
            let summary = format!(
                "file {}: {} statement(s) imported, {} imported before, {} unmapped, {} finding(s)",
                report.file,
                report.imported,
                report.already_imported,
                report.unmapped,
                report.findings.len()
                    + report
                        .statements
                        .iter()
                        .filter_map(|s| s.report.as_ref())
                        .map(|r| r.findings.len())
                        .sum::<usize>()
            );
            (rendered, summary, report.status)
        }
    };
    emit(&rendered, output.as_deref(), &summary)?;
    if status == RunStatus::Findings {
        std::process::exit(EXIT_FINDINGS);
    }
    Ok(())
}

/// `tally statement list`: imported statements, newest first.
async fn list_statements(
    db: &Database,
    out: &Output,
    ledger: Option<&str>,
    account: Option<&str>,
    limit: i64,
    before: Option<uuid::Uuid>,
) -> Result<()> {
    let ledger = ledger_ref(db, ledger).await?;
    let account = match account {
        Some(named) => Some(db.store.require_account(named).await?.account.id.0),
        None => None,
    };
    let ledgers = ledger.as_ref().map(|l| vec![tally_core::LedgerId(l.id)]);
    let filter = tally_recon::statement::StatementFilter { ledgers: ledgers.as_deref(), account, before };
    let statements = tally_recon::statement::list_statements(&db.recon, &filter, limit).await?;
    let next = statements.last().map(|s| s.id).filter(|_| statements.len() as i64 == limit);
    let codes: std::collections::HashMap<i32, String> =
        db.store.ledgers().await?.into_iter().map(|l| (l.id.0, l.code)).collect();
    out.value(&json!({"statements": statements, "next_before": next}), || {
        let mut t = table(&[
            "statement",
            "ledger",
            "account",
            "format",
            "reference",
            "period",
            "closing",
            "entries",
            "matching",
        ]);
        for s in &statements {
            t.add_row(vec![
                s.id.to_string(),
                codes.get(&s.ledger).cloned().unwrap_or_else(|| s.ledger.to_string()),
                s.account_code.clone().unwrap_or_else(|| s.account_id.to_string()),
                s.format.clone(),
                s.statement_ref.clone(),
                format!("{} .. {}", s.opening_date.as_deref().unwrap_or("?"), s.closing_date.as_deref().unwrap_or("?")),
                s.closing.as_ref().map(|c| format!("{c} {}", s.currency)).unwrap_or_default(),
                s.entries.to_string(),
                match (&s.status, s.findings) {
                    (Some(status), Some(findings)) => format!("{status} ({findings})"),
                    _ => String::new(),
                },
            ]);
        }
        match next {
            Some(id) => format!("{t}\nolder statements: --before {id}"),
            None => t.to_string(),
        }
    });
    Ok(())
}

/// A report `tally statement` shows.
enum Shown {
    Statement(StatementReport),
    /// With whether the import wrote anything (`None` when shown again).
    File(FileReport, Option<bool>),
}

fn statement_summary(report: &StatementReport) -> String {
    format!(
        "statement {} ({}): {} matched, {} unmatched on the statement, {} in Tally, {} finding(s)",
        report.statement,
        report.statement_ref,
        report.matched,
        report.unmatched_statement,
        report.unmatched_ledger,
        report.findings.len()
    )
}

/// `YYYY-MM-DD:AMOUNT`, the amount signed, in the account's scale.
fn balance_point(text: &str, scale: u8) -> Result<BalancePoint> {
    let (day, amount) = text.split_once(':').context("a balance is YYYY-MM-DD:AMOUNT")?;
    let (negative, digits) = match amount.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, amount),
    };
    let minor = tally_core::parse_amount(digits, scale).map_err(|e| anyhow::anyhow!("balance {amount}: {e}"))?;
    Ok(BalancePoint { date: days::parse_day(day)?, amount: if negative { -minor } else { minor } })
}

async fn import(db: &Database, args: &StatementImportArgs) -> Result<tally_recon::statement::ImportOutcome> {
    let size = std::fs::metadata(&args.file).with_context(|| format!("reading {}", args.file.display()))?.len();
    if size > tally_statement::STATEMENT_BYTES_MAX as u64 {
        anyhow::bail!("{} is larger than {} bytes", args.file.display(), tally_statement::STATEMENT_BYTES_MAX);
    }
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let mut mapping = Vec::with_capacity(args.map.len());
    for entry in &args.map {
        mapping.push(tally_recon::statement::parse_mapping_entry(entry).context("--map")?);
    }
    if let Some(path) = &args.map_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let entries = tally_recon::statement::parse_mapping_text(&text)
            .with_context(|| format!("--map-file {}", path.display()))?;
        mapping.extend(entries);
    }
    // The tolerance is written in the currency of the account named first.
    let first_account = args.account.as_deref().or(mapping.first().map(|(_, tally)| tally.as_str()));
    let record = match first_account {
        Some(account) => Some(db.store.require_account(account).await?),
        None => None,
    };
    let scale = record.as_ref().map_or(2, |record| record.scale);
    let rules = MatchRules {
        amount_tolerance: tally_core::parse_amount(&args.tolerance, scale)
            .map_err(|e| anyhow::anyhow!("--tolerance: {e}"))?,
        date_window_days: args.date_window_days,
        ..MatchRules::default()
    };
    let format = match args.format {
        StatementFormatArg::Auto => None,
        StatementFormatArg::Camt053 => Some(Format::Camt053),
        StatementFormatArg::Camt052 => Some(Format::Camt052),
        StatementFormatArg::Camt054 => Some(Format::Camt054),
        StatementFormatArg::Mt940 => Some(Format::Mt940),
        StatementFormatArg::Csv => Some(Format::Csv),
    };
    let csv = if format == Some(Format::Csv) {
        let (Some(account), Some(record)) = (&args.account, &record) else {
            anyhow::bail!("a CSV statement needs --account: the file does not name its bank account");
        };
        let layout = CsvLayout {
            date: args.csv_date.clone(),
            amount: args.csv_amount.clone(),
            reference: Some(args.csv_reference.clone()),
            counterparty: Some(args.csv_counterparty.clone()),
            description: args.csv_description.clone(),
            value_date: args.csv_value_date.clone(),
            credit_debit: args.csv_credit_debit.clone(),
            delimiter: u8::try_from(args.csv_delimiter).context("--csv-delimiter must be one ASCII character")?,
            date_format: args.csv_date_format.clone(),
            decimal_comma: args.csv_decimal_comma,
        };
        let info = CsvStatementInfo {
            statement_id: args.statement_id.clone().context("a CSV statement needs --statement-id")?,
            account: account.clone(),
            currency: Some(record.account.currency.clone()),
            opening: args.opening_balance.as_deref().map(|t| balance_point(t, scale)).transpose()?,
            closing: args.closing_balance.as_deref().map(|t| balance_point(t, scale)).transpose()?,
        };
        Some((layout, info))
    } else {
        None
    };
    let options = tally_recon::statement::ImportOptions {
        format,
        csv,
        rules,
        account: args.account.clone(),
        mapping,
        encoding: args.encoding.clone(),
    };
    Ok(tally_recon::statement::import_file(&db.recon, &bytes, &options, &db.actor).await?)
}

fn file_table(report: &FileReport, created: Option<bool>) -> String {
    let imported = match created {
        Some(true) => "imported",
        Some(false) => "already imported (nothing written): its report",
        None => "report",
    };
    let mut summary = table(&["file", "format", "character set", "imported", "imported before", "unmapped"]);
    summary.add_row(vec![
        report.file.clone(),
        report.message.clone().unwrap_or_else(|| report.format.clone()),
        report.encoding.clone(),
        report.imported.to_string(),
        report.already_imported.to_string(),
        report.unmapped.to_string(),
    ]);
    let mut statements = table(&[
        "#",
        "statement",
        "bank account",
        "outcome",
        "Tally account",
        "ledger",
        "entries",
        "pages",
        "period",
        "closing",
        "does not add up by",
    ]);
    for s in &report.statements {
        statements.add_row(vec![
            s.ord.to_string(),
            s.statement_ref.clone(),
            s.bank_account.clone(),
            s.outcome.clone(),
            s.account_code.clone().or_else(|| s.account_id.clone()).unwrap_or_default(),
            match (&s.report, s.ledger_of()) {
                (Some(r), _) => r.ledger_code.clone(),
                (None, Some(ledger)) => ledger.to_string(),
                (None, None) => String::new(),
            },
            s.entries.to_string(),
            s.pages.to_string(),
            format!("{} .. {}", s.period_from.as_deref().unwrap_or("?"), s.period_to.as_deref().unwrap_or("?")),
            s.closing.clone().unwrap_or_default(),
            s.balance_difference.clone().unwrap_or_default(),
        ]);
    }
    let mut text = format!("{}{imported}\n{summary}\n{statements}", filter_line(&report.filter));
    for s in &report.statements {
        if let Some(statement_report) = &s.report {
            text.push_str(&format!("\n\nstatement {} ({})\n", s.statement_ref, s.bank_account));
            text.push_str(&statement_table(statement_report, None));
        }
    }
    if !report.findings.is_empty() {
        let mut findings = table(&["finding", "subject", "detail"]);
        for f in &report.findings {
            findings.add_row(vec![f.check.clone(), f.subject.clone(), f.detail.clone()]);
        }
        text.push_str(&format!("\n\nFILE FINDINGS:\n{findings}"));
    }
    if !report.notes.is_empty() {
        text.push_str(&format!("\n\nNOTES:\n{}", notes_table(&report.notes)));
    }
    text
}

fn notes_table(notes: &[NoteLine]) -> String {
    let mut rows = table(&["note", "where", "amount", "detail"]);
    for note in notes {
        rows.add_row(vec![
            note.code.clone(),
            note.location.clone(),
            note.amount.clone().unwrap_or_default(),
            note.detail.clone(),
        ]);
    }
    rows.to_string()
}

fn statement_table(report: &StatementReport, created: Option<bool>) -> String {
    let mut summary = table(&[
        "statement",
        "reference",
        "format",
        "account",
        "ledger",
        "period",
        "entries",
        "matched",
        "unmatched: statement / Tally",
    ]);
    summary.add_row(vec![
        report.statement.clone(),
        report.statement_ref.clone(),
        report.format.clone(),
        report.account_code.clone().unwrap_or_else(|| report.account_id.clone()),
        report.ledger_code.clone(),
        format!("{} .. {}", report.period_from.as_deref().unwrap_or("?"), report.period_to.as_deref().unwrap_or("?")),
        report.statement_entries.to_string(),
        report.matched.to_string(),
        format!("{} / {}", report.unmatched_statement, report.unmatched_ledger),
    ]);
    let mut balances = table(&["balance", "date", "statement", "Tally", "difference"]);
    for b in &report.balances {
        balances.add_row(vec![
            b.which.clone(),
            b.date.clone(),
            b.statement.clone(),
            b.tally.clone(),
            b.difference.clone(),
        ]);
    }
    let mut matches = table(&["rule", "statement entries", "transfers", "amount", "difference"]);
    for m in &report.matches {
        matches.add_row(vec![
            m.rule.clone(),
            m.statement_entries.join(", "),
            m.transfer_ids.join("\n"),
            m.amount.clone(),
            m.difference.clone(),
        ]);
    }
    let imported = match created {
        Some(true) => "imported",
        Some(false) => "already imported (nothing written): its report",
        None => "report",
    };
    let mut text = format!("{imported}\n{summary}\n{balances}\n{matches}");
    if !report.notes.is_empty() {
        text.push_str(&format!("\nNOTES:\n{}", notes_table(&report.notes)));
    }
    if report.findings.is_empty() {
        text.push_str("\nCLEAN: every entry matched and the balances agree");
    } else {
        let mut findings = table(&["finding", "subject", "amount", "difference", "detail"]);
        for f in &report.findings {
            findings.add_row(vec![
                f.check.clone(),
                f.subject.clone(),
                f.found.clone().unwrap_or_default(),
                f.difference.clone().unwrap_or_default(),
                f.detail.clone(),
            ]);
        }
        text.push_str(&format!("\nFINDINGS:\n{findings}"));
    }
    text
}

fn day_table(report: &DayReport) -> String {
    let mut summary = table(&[
        "day",
        "time zone",
        "bounds (UTC)",
        "transfers",
        "rejected",
        "accounts",
        "batches",
        "events",
        "snapshot",
    ]);
    summary.add_row(vec![
        report.day.clone(),
        report.time_zone.clone(),
        format!("{} .. {}", report.starts_at, report.ends_at),
        report.transfers.to_string(),
        report.rejected.to_string(),
        report.accounts_touched.to_string(),
        report.batches.to_string(),
        report.events.to_string(),
        report.snapshot.clone(),
    ]);
    let mut totals = table(&[
        "ledger",
        "currency",
        "transfers",
        "posted volume",
        "debits posted",
        "credits posted",
        "debits pending",
        "credits pending",
    ]);
    for c in &report.currencies {
        totals.add_row(vec![
            report.ledger_label(c.ledger),
            c.currency.clone(),
            c.transfers.to_string(),
            c.posted_volume.clone(),
            c.closing_debits_posted.clone(),
            c.closing_credits_posted.clone(),
            c.closing_debits_pending.clone(),
            c.closing_credits_pending.clone(),
        ]);
    }
    let mut ledgers = table(&["ledger", "id", "transfers", "rejected", "accounts", "batches", "events"]);
    for l in &report.ledgers {
        ledgers.add_row(vec![
            l.code.clone(),
            l.ledger.to_string(),
            l.transfers.to_string(),
            l.rejected.to_string(),
            l.accounts_touched.to_string(),
            l.batches.to_string(),
            l.events.to_string(),
        ]);
    }
    let mut checks = table(&["check", "findings", "what it verifies"]);
    for c in &report.checks {
        checks.add_row(vec![c.check.clone(), c.findings.to_string(), c.description.clone()]);
    }
    let verdict = match report.status {
        RunStatus::Clean => format!("CLEAN: {} reconciles (run {})", report.day, report.run_id),
        RunStatus::Findings => format!("FINDINGS: {} does not reconcile (run {})", report.day, report.run_id),
    };
    let ledgers = if report.ledgers.is_empty() { String::new() } else { format!("{ledgers}\n") };
    let mut text = format!("{}{summary}\n{totals}\n{ledgers}{checks}\n{verdict}", filter_line(&report.filter));
    if !report.findings.is_empty() {
        let mut findings =
            table(&["check", "subject", "ledger", "currency", "expected", "found", "difference", "detail"]);
        for f in &report.findings {
            findings.add_row(vec![
                f.check.clone(),
                f.subject.clone(),
                f.ledger.map(|l| report.ledger_label(l)).unwrap_or_default(),
                f.currency.clone().unwrap_or_default(),
                f.expected.clone().unwrap_or_default(),
                f.found.clone().unwrap_or_default(),
                f.difference.clone().unwrap_or_default(),
                f.detail.clone(),
            ]);
        }
        text.push_str(&format!("\n{findings}"));
    }
    text
}

/// `FILTERED: ...` and a line break for a report restricted to some ledgers; nothing otherwise.
fn filter_line(filter: &Option<tally_recon::report::ReportFilter>) -> String {
    filter.as_ref().map(|f| format!("FILTERED: {}\n", f.note)).unwrap_or_default()
}

pub async fn days(db: &Database, out: &Output, command: DaysCommand) -> Result<()> {
    let settings = match command {
        DaysCommand::Set { time_zone, cutoff } => days::set_settings(&db.recon, &time_zone, &cutoff, &db.actor).await?,
        DaysCommand::Show => days::settings(&db.recon).await?,
    };
    let closed = days::recent_closed_days(&db.recon, CLOSED_DAYS_LISTED).await?;
    let value = json!({"time_zone": settings.time_zone, "cutoff": settings.cutoff, "closed_days": closed});
    out.value(&value, || {
        let mut t = table(&["closed day", "starts", "ends", "transfers", "accounts"]);
        for d in &closed {
            t.add_row(vec![
                d.day.clone(),
                d.starts_at.clone(),
                d.ends_at.clone(),
                d.transfers.to_string(),
                d.accounts.to_string(),
            ]);
        }
        format!("a ledger day ends at {} in {}\n{t}", settings.cutoff, settings.time_zone)
    });
    Ok(())
}
