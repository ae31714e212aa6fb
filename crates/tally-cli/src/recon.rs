//! `tally balance --as-of`, `tally reconcile --date` and `tally days`: reconciliation at the
//! command line, with a progress bar for long runs and reports as tables, JSON, CSV or HTML.

use crate::args::{DaysCommand, ReconcileArgs, ReportFormatArg};
use crate::connect::Database;
use crate::render::{Output, table};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tally_core::format_amount;
use tally_recon::days::{self, format_day};
use tally_recon::render::{ReportFormat, render_day};
use tally_recon::report::{DayReport, RunStatus};
use tally_server::views::time;

/// Exit status when a reconciliation has findings (as `tally reconcile` without a date).
pub const EXIT_FINDINGS: i32 = 4;

pub async fn balance_as_of(db: &Database, out: &Output, account: &str, as_of: &str) -> Result<()> {
    let at = tally_recon::parse_time(as_of)?;
    let record = db.store.require_account(account).await?;
    let point = tally_recon::balance::balance_as_of(&db.store, record.account.id.0, at).await?;
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

pub async fn end_of_day(db: &Database, out: &Output, args: &ReconcileArgs) -> Result<()> {
    let text = args.date.as_deref().expect("dispatched with a date");
    let day = if text == "yesterday" { days::last_closable(&db.store).await? } else { days::parse_day(text)? };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{spinner} reconciling {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format_day(day));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let report = tally_recon::eod::run_end_of_day(&db.store, day, &db.actor, &Bar(bar.clone())).await;
    bar.finish_and_clear();
    let report = report?;
    let rendered = match (args.format, out.json) {
        (ReportFormatArg::Table, false) => day_table(&report),
        (ReportFormatArg::Table, true) | (ReportFormatArg::Json, _) => render_day(&report, ReportFormat::Json),
        (ReportFormatArg::Csv, _) => render_day(&report, ReportFormat::Csv),
        (ReportFormatArg::Html, _) => render_day(&report, ReportFormat::Html),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, rendered).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "{}: {} finding(s); report written to {}",
                report.day,
                report.checks.iter().map(|c| c.findings).sum::<i64>(),
                path.display()
            );
        }
        None => println!("{rendered}"),
    }
    if report.status == RunStatus::Findings {
        std::process::exit(EXIT_FINDINGS);
    }
    Ok(())
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
            c.currency.clone(),
            c.transfers.to_string(),
            c.posted_volume.clone(),
            c.closing_debits_posted.clone(),
            c.closing_credits_posted.clone(),
            c.closing_debits_pending.clone(),
            c.closing_credits_pending.clone(),
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
    let mut text = format!("{summary}\n{totals}\n{checks}\n{verdict}");
    if !report.findings.is_empty() {
        let mut findings = table(&["check", "subject", "currency", "expected", "found", "difference", "detail"]);
        for f in &report.findings {
            findings.add_row(vec![
                f.check.clone(),
                f.subject.clone(),
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

pub async fn days(db: &Database, out: &Output, command: DaysCommand) -> Result<()> {
    let settings = match command {
        DaysCommand::Set { time_zone, cutoff } => days::set_settings(&db.store, &time_zone, &cutoff, &db.actor).await?,
        DaysCommand::Show => days::settings(&db.store.client().await?).await?,
    };
    let client = db.store.client().await?;
    let closed: Vec<(String, String, String, i64, i64)> = client
        .query(
            "SELECT day::text, starts_at::text, ends_at::text, transfers, accounts FROM ledger_days ORDER BY day DESC LIMIT 10",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let value = json!({"time_zone": settings.time_zone, "cutoff": settings.cutoff,
                       "closed_days": closed.iter().map(|(d, s, e, t, a)| json!({"day": d, "starts_at": s, "ends_at": e, "transfers": t, "accounts": a})).collect::<Vec<_>>()});
    out.value(&value, || {
        let mut t = table(&["closed day", "starts", "ends", "transfers", "accounts"]);
        for (d, s, e, transfers, accounts) in &closed {
            t.add_row(vec![d.clone(), s.clone(), e.clone(), transfers.to_string(), accounts.to_string()]);
        }
        format!("a ledger day ends at {} in {}\n{t}", settings.cutoff, settings.time_zone)
    });
    Ok(())
}
