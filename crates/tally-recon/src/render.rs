//! Rendering of reconciliation reports ([`DayReport`], [`StatementReport`], [`FileReport`]) as
//! JSON, CSV or HTML.
//!
//! - **JSON** is the report itself, pretty-printed: the exact value that is stored, for machines
//!   and for diffing two runs. It deserializes back into the same type.
//! - **CSV** is the findings table and nothing else: one header line, then one row per finding
//!   (for a statement, one row per match and then one row per finding; for a file, the same rows
//!   of each statement it imported, led by the statement's reference, then a row per statement
//!   it did not import and per file-level finding and note). People open a CSV in a
//!   spreadsheet to work through the findings, sort and filter them and add their own notes; a
//!   summary block above the table would break the column layout and the import, and the
//!   summary is in the JSON and HTML anyway. Quoting is done by the `csv` crate. Because these
//!   files are opened in spreadsheets and findings carry text from bank files, a text cell that
//!   starts with `=`, `+`, `-`, `@`, tab or carriage return is prefixed with `'` so that it is not
//!   evaluated as a formula; plain decimal numbers such as `-12.50` are left as they are.
//! - **HTML** is one self-contained page for people: inline `<style>`, an inline SVG chart, no
//!   scripts and no external resources (it works offline, from an e-mail attachment, and
//!   prints). A restrictive Content-Security-Policy is set as a second line of defence, but the
//!   first is that every piece of text from the report goes through [`escape`] before it enters
//!   markup: findings carry references and counterparty names from bank files.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::report::{
    BalanceComparison, CheckSummary, CurrencyTotals, DayReport, FileReport, Finding, HourVolume, LedgerDay, MatchLine,
    NoteLine, ReportFilter, RunStatus, StatementReport,
};

/// An output format of the reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Json,
    Csv,
    Html,
}

impl ReportFormat {
    /// `json`, `csv` or `html` (ASCII case-insensitive, surrounding whitespace ignored).
    pub fn parse(text: &str) -> Option<ReportFormat> {
        let text = text.trim();
        [ReportFormat::Json, ReportFormat::Csv, ReportFormat::Html]
            .into_iter()
            .find(|format| format.extension().eq_ignore_ascii_case(text))
    }

    /// The HTTP `Content-Type` of a rendered report.
    pub fn content_type(self) -> &'static str {
        match self {
            ReportFormat::Json => "application/json",
            ReportFormat::Csv => "text/csv; charset=utf-8",
            ReportFormat::Html => "text/html; charset=utf-8",
        }
    }

    /// The file name extension, without the dot; also the name `parse` accepts.
    pub fn extension(self) -> &'static str {
        match self {
            ReportFormat::Json => "json",
            ReportFormat::Csv => "csv",
            ReportFormat::Html => "html",
        }
    }
}

/// Renders an end-of-day report.
pub fn render_day(report: &DayReport, format: ReportFormat) -> String {
    match format {
        ReportFormat::Json => json(report),
        ReportFormat::Csv => day_csv(report),
        ReportFormat::Html => day_html(report),
    }
}

/// Renders a statement matching report.
pub fn render_statement(report: &StatementReport, format: ReportFormat) -> String {
    match format {
        ReportFormat::Json => json(report),
        ReportFormat::Csv => statement_csv(report),
        ReportFormat::Html => statement_html(report),
    }
}

/// Renders the report of an imported statement file.
pub fn render_file(report: &FileReport, format: ReportFormat) -> String {
    match format {
        ReportFormat::Json => json(report),
        ReportFormat::Csv => file_csv(report),
        ReportFormat::Html => file_html(report),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

fn json<T: serde::Serialize>(report: &T) -> String {
    // The report types are plain structs of strings and numbers: serializing cannot fail.
    serde_json::to_string_pretty(report).expect("reports serialize to JSON")
}

// ---------------------------------------------------------------------------------------------
// CSV

const DAY_CSV_HEADER: [&str; 10] = [
    "check",
    "subject",
    "account_id",
    "transfer_id",
    "ledger",
    "currency",
    "expected",
    "found",
    "difference",
    "detail",
];

const STATEMENT_CSV_HEADER: [&str; 7] =
    ["outcome", "rule", "statement_entries", "transfer_ids", "amount", "difference", "detail"];

fn day_csv(report: &DayReport) -> String {
    let mut rows = Vec::with_capacity(report.findings.len());
    for finding in &report.findings {
        rows.push(vec![
            finding.check.clone(),
            finding.subject.clone(),
            optional(&finding.account_id),
            optional(&finding.transfer_id),
            finding.ledger.map(|ledger| report.ledger_label(ledger)).unwrap_or_default(),
            optional(&finding.currency),
            optional(&finding.expected),
            optional(&finding.found),
            optional(&finding.difference),
            finding.detail.clone(),
        ]);
    }
    csv_table(&DAY_CSV_HEADER, rows)
}

fn statement_csv(report: &StatementReport) -> String {
    csv_table(&STATEMENT_CSV_HEADER, statement_rows(report))
}

const FILE_CSV_HEADER: [&str; 8] =
    ["statement", "outcome", "rule", "statement_entries", "transfer_ids", "amount", "difference", "detail"];

fn file_csv(report: &FileReport) -> String {
    let mut rows = Vec::new();
    for statement in &report.statements {
        match &statement.report {
            Some(statement_report) => {
                for row in statement_rows(statement_report) {
                    rows.push(std::iter::once(statement.statement_ref.clone()).chain(row).collect());
                }
            }
            None => rows.push(vec![
                statement.statement_ref.clone(),
                statement.outcome.clone(),
                String::new(),
                String::new(),
                optional(&statement.statement),
                optional(&statement.closing),
                optional(&statement.balance_difference),
                format!("bank account {}", statement.bank_account),
            ]),
        }
    }
    for finding in &report.findings {
        let empty = String::new;
        rows.push(vec![
            finding.subject.clone(),
            finding.check.clone(),
            empty(),
            empty(),
            empty(),
            empty(),
            empty(),
            finding.detail.clone(),
        ]);
    }
    for note in &report.notes {
        let empty = String::new;
        rows.push(vec![
            note.location.clone(),
            note.code.clone(),
            empty(),
            empty(),
            empty(),
            optional(&note.amount),
            empty(),
            note.detail.clone(),
        ]);
    }
    csv_table(&FILE_CSV_HEADER, rows)
}

/// The rows of a statement's CSV: its matches, then its findings.
fn statement_rows(report: &StatementReport) -> Vec<Vec<String>> {
    let mut rows = Vec::with_capacity(report.matches.len() + report.findings.len());
    for line in &report.matches {
        rows.push(vec![
            "matched".to_owned(),
            line.rule.clone(),
            line.statement_entries.join(";"),
            line.transfer_ids.join(";"),
            line.amount.clone(),
            line.difference.clone(),
            String::new(),
        ]);
    }
    for finding in &report.findings {
        // A finding about a journal entry names the transfer as its subject; any other subject
        // (a statement entry, a balance) goes to the statement side so that it is not lost.
        let about_transfer = finding.transfer_id.as_deref() == Some(finding.subject.as_str());
        rows.push(vec![
            finding.check.clone(),
            String::new(),
            if about_transfer { String::new() } else { finding.subject.clone() },
            optional(&finding.transfer_id),
            finding.found.clone().or_else(|| finding.expected.clone()).unwrap_or_default(),
            optional(&finding.difference),
            finding.detail.clone(),
        ]);
    }
    rows
}

fn optional(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

fn csv_table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    // Writing to a Vec cannot fail, and every row has the header's length.
    writer.write_record(header).expect("CSV header is written");
    for row in rows {
        assert_eq!(row.len(), header.len());
        let cells: Vec<std::borrow::Cow<'_, str>> = row.iter().map(|cell| defuse_formula(cell)).collect();
        writer.write_record(cells.iter().map(|cell| cell.as_bytes())).expect("CSV row is written");
    }
    let bytes = writer.into_inner().expect("CSV is flushed into memory");
    String::from_utf8(bytes).expect("CSV of UTF-8 strings is UTF-8")
}

/// Prefixes `'` to a cell a spreadsheet would evaluate as a formula, unless it is a plain
/// decimal number (amounts and differences are often negative).
fn defuse_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && !is_decimal(cell) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// `[+-]digits[.digits]`.
fn is_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    !whole.is_empty()
        && !fraction.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a decimal string is zero (`0`, `0.00`, `-0.00`); anything unparseable is not.
fn is_zero(text: &str) -> bool {
    let text = text.trim();
    is_decimal(text) && text.bytes().all(|b| matches!(b, b'0' | b'.' | b'+' | b'-'))
}

// ---------------------------------------------------------------------------------------------
// HTML

/// HTML-escapes text for element content and for (double- or single-quoted) attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escaped text, or a muted dash for a missing value.
fn escape_opt(value: &Option<String>) -> String {
    match value {
        Some(text) => escape(text),
        None => "<span class=\"muted\">—</span>".to_owned(),
    }
}

/// `write!` into a `String`, which cannot fail.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

const MONO: &str = "ui-monospace, SFMono-Regular, Menlo, Consolas, \"Liberation Mono\", monospace";

fn style() -> String {
    format!(
        r#":root {{ color-scheme: light; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --zebra: #f6f8fa;
  --head: #eef1f4; --ok: #1a7f37; --ok-bg: #dafbe1; --bad: #cf222e; --bad-bg: #ffebe9; }}
* {{ box-sizing: border-box; }}
body {{ margin: 0; color: var(--fg); background: #fff; line-height: 1.45;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif; }}
main {{ max-width: 1200px; margin: 0 auto; padding: 24px; }}
header h1 {{ font-size: 1.5rem; margin: 0 0 4px; display: flex; flex-wrap: wrap; align-items: center; gap: 12px; }}
header p {{ margin: 0; color: var(--muted); }}
h2 {{ font-size: 1.15rem; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }}
.badge {{ display: inline-block; padding: 2px 12px; border: 1px solid; border-radius: 999px; font-size: .85rem;
  font-weight: 600; letter-spacing: .04em; text-transform: uppercase; }}
.badge.clean {{ color: var(--ok); background: var(--ok-bg); }}
.badge.findings {{ color: var(--bad); background: var(--bad-bg); }}
dl.summary {{ display: grid; grid-template-columns: max-content 1fr; gap: 4px 24px; margin: 0; }}
dl.summary dt {{ color: var(--muted); }}
dl.summary dd {{ margin: 0; overflow-wrap: anywhere; }}
table {{ width: 100%; border-collapse: collapse; font-size: .9rem; }}
th, td {{ padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top;
  overflow-wrap: anywhere; }}
thead th {{ position: sticky; top: 0; z-index: 1; background: var(--head); white-space: nowrap; }}
tbody tr:nth-child(even) {{ background: var(--zebra); }}
tr.group th {{ background: #fff; padding-top: 16px; font-size: .95rem; }}
tr.break td {{ background: var(--bad-bg); }}
.num {{ text-align: right; white-space: nowrap; font-family: {MONO}; font-variant-numeric: tabular-nums; }}
.mono {{ font-family: {MONO}; font-size: .85rem; }}
.detail {{ white-space: pre-wrap; }}
.ok {{ color: var(--ok); font-weight: 600; }}
.failed {{ color: var(--bad); font-weight: 600; }}
.muted {{ color: var(--muted); }}
p.none {{ color: var(--muted); font-style: italic; }}
p.filter {{ margin: 16px 0 0; padding: 8px 12px; border: 1px solid var(--line); border-radius: 6px; background: var(--zebra); }}
svg.chart {{ display: block; width: 100%; max-width: 760px; height: auto; }}
footer {{ margin-top: 40px; color: var(--muted); font-size: .8rem; }}
@media print {{
  main {{ max-width: none; padding: 0; }}
  thead th {{ position: static; }}
  tr {{ break-inside: avoid; }}
  h2 {{ break-after: avoid; }}
  * {{ -webkit-print-color-adjust: exact; print-color-adjust: exact; }}
}}
"#
    )
}

/// The page around the sections; `title` and `heading` are plain text (escaped here).
fn page(title: &str, heading: &str, status: RunStatus, subtitle: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 4096);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
    );
    put!(out, "<title>{} — {}</title>\n", escape(title), escape(status.as_str()));
    put!(out, "<style>\n{}</style>\n</head>\n<body>\n<main>\n", style());
    put!(out, "<header>\n<h1>{} {}</h1>\n<p>{}</p>\n</header>\n", escape(heading), badge(status), escape(subtitle));
    out.push_str(body);
    out.push_str("<footer>Rendered by Tally reconciliation. Amounts are decimal strings in the currency's scale; times are UTC.</footer>\n");
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

fn badge(status: RunStatus) -> String {
    let name = escape(status.as_str());
    format!("<span class=\"badge {name}\">{name}</span>")
}

/// A `<dl>` of label/value pairs; values are plain text.
fn summary(items: &[(&str, String)]) -> String {
    let mut out = String::from("<section>\n<h2>Summary</h2>\n<dl class=\"summary\">\n");
    for (label, value) in items {
        put!(out, "<dt>{}</dt><dd>{}</dd>\n", escape(label), escape(value));
    }
    out.push_str("</dl>\n</section>\n");
    out
}

fn currency_table(currencies: &[CurrencyTotals], label: &dyn Fn(i32) -> String) -> String {
    let mut out = String::from("<section>\n<h2>Totals by ledger and currency</h2>\n");
    if currencies.is_empty() {
        out.push_str("<p class=\"none\">No currencies.</p>\n</section>\n");
        return out;
    }
    out.push_str(
        "<table>\n<thead><tr><th>Ledger</th><th>Currency</th><th class=\"num\">Scale</th><th class=\"num\">Transfers</th>\
         <th class=\"num\">Posted volume</th><th class=\"num\">Debits posted</th><th class=\"num\">Credits posted</th>\
         <th class=\"num\">Debits pending</th><th class=\"num\">Credits pending</th></tr></thead>\n<tbody>\n",
    );
    for totals in currencies {
        put!(
            out,
            "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
            escape(&label(totals.ledger)),
            escape(&totals.currency),
            totals.scale,
            totals.transfers,
            escape(&totals.posted_volume),
            escape(&totals.closing_debits_posted),
            escape(&totals.closing_credits_posted),
            escape(&totals.closing_debits_pending),
            escape(&totals.closing_credits_pending),
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
    out
}

/// The day's figures per ledger; nothing for a report that has none (stored before ledgers).
fn ledgers_table(ledgers: &[LedgerDay]) -> String {
    if ledgers.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<section>\n<h2>Ledgers</h2>\n<table>\n<thead><tr><th>Ledger</th><th class=\"num\">Id</th>\
         <th class=\"num\">Transfers</th><th class=\"num\">Rejected</th><th class=\"num\">Accounts touched</th>\
         <th class=\"num\">Events</th><th class=\"num\">Batches</th></tr></thead>\n<tbody>\n",
    );
    for ledger in ledgers {
        put!(
            out,
            "<tr><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
            escape(&ledger.code),
            ledger.ledger,
            ledger.transfers,
            ledger.rejected,
            ledger.accounts_touched,
            ledger.events,
            ledger.batches,
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
    out
}

/// A notice that the report is restricted to some ledgers; nothing when it is whole.
fn filter_notice(filter: &Option<ReportFilter>) -> String {
    match filter {
        Some(filter) => format!("<p class=\"filter\"><strong>Filtered:</strong> {}</p>\n", escape(&filter.note)),
        None => String::new(),
    }
}

/// Chooses a "nice" step (1, 2 or 5 times a power of ten) giving at most five intervals up to
/// `max`, and returns `(step, top)` with `top` the first multiple of `step` at or above `max`.
fn axis_scale(max: i64) -> (i64, i64) {
    let max = max.max(1);
    let intervals = |step: i64| max / step + i64::from(max % step != 0);
    let mut magnitude: i64 = 1;
    loop {
        for factor in [1, 2, 5] {
            let step = magnitude.saturating_mul(factor);
            if intervals(step) <= 5 {
                return (step, intervals(step).saturating_mul(step));
            }
        }
        magnitude = magnitude.saturating_mul(10);
    }
}

/// The day's transfers per hour as an inline SVG bar chart: one `<rect class="bar">` per hour,
/// a y axis of transfer counts with grid lines, and an x axis with a tick and label per hour.
///
/// Hours are slots `0..n` from the day's start, `n` being the number of entries in `hourly`
/// (23, 24 or 25), or more if an hour beyond that is listed; hours not listed count 0.
fn hourly_chart(hourly: &[HourVolume], time_zone: &str, day: &str) -> String {
    const WIDTH: f64 = 760.0;
    const HEIGHT: f64 = 260.0;
    const LEFT: f64 = 56.0;
    const RIGHT: f64 = 12.0;
    const TOP: f64 = 14.0;
    const BOTTOM: f64 = 48.0;
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let base = TOP + plot_height;

    // A day has at most 25 hours; anything past two days is a producer bug, not worth a chart.
    const MAX_SLOTS: usize = 48;
    let slots =
        hourly.iter().map(|volume| volume.hour as usize + 1).max().unwrap_or(0).max(hourly.len()).min(MAX_SLOTS);
    let mut counts = vec![0_i64; slots];
    for volume in hourly {
        if let Some(count) = counts.get_mut(volume.hour as usize) {
            *count = count.saturating_add(volume.transfers);
        }
    }
    let max = counts.iter().copied().max().unwrap_or(0);
    let (step, top) = axis_scale(max);
    let y = |value: i64| base - plot_height * (value as f64 / top as f64);

    let label = format!("Transfers per hour on {day} ({time_zone})");
    let mut out = String::new();
    put!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"{}\" \
         font-family=\"system-ui, sans-serif\" font-size=\"11\">\n<title>{}</title>\n",
        escape(&label),
        escape(&label)
    );
    // Y grid lines and labels.
    let mut value = 0;
    while value <= top {
        let at = y(value);
        put!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{at:.1}\" x2=\"{:.1}\" y2=\"{at:.1}\" stroke=\"#d1d9e0\" stroke-width=\"1\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#59636e\">{value}</text>\n",
            LEFT + plot_width,
            LEFT - 6.0,
            at + 4.0
        );
        value += step;
    }
    // Bars, hour ticks and hour labels.
    if slots == 0 {
        put!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#59636e\">No hourly figures</text>\n",
            LEFT + plot_width / 2.0,
            TOP + plot_height / 2.0
        );
    } else {
        let band = plot_width / slots as f64;
        let bar_width = (band * 0.7).max(1.0);
        let label_every = if band >= 18.0 { 1 } else { 2 };
        for (hour, &count) in counts.iter().enumerate() {
            let x = LEFT + band * hour as f64;
            let bar_top = y(count.max(0));
            let height = base - bar_top;
            let noun = if count == 1 { "transfer" } else { "transfers" };
            put!(
                out,
                "<rect class=\"bar\" x=\"{:.1}\" y=\"{bar_top:.1}\" width=\"{bar_width:.1}\" height=\"{height:.1}\" fill=\"#0969da\">\
                 <title>hour {hour}: {count} {noun}</title></rect>\n",
                x + (band - bar_width) / 2.0
            );
            let center = x + band / 2.0;
            put!(
                out,
                "<line class=\"tick\" x1=\"{center:.1}\" y1=\"{base:.1}\" x2=\"{center:.1}\" y2=\"{:.1}\" stroke=\"#1f2328\" stroke-width=\"1\"/>\n",
                base + 4.0
            );
            if hour % label_every == 0 {
                put!(
                    out,
                    "<text x=\"{center:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#59636e\">{hour:02}</text>\n",
                    base + 16.0
                );
            }
        }
    }
    // Axes and axis titles.
    put!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{base:.1}\" stroke=\"#1f2328\" stroke-width=\"1\"/>\n\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{base:.1}\" x2=\"{:.1}\" y2=\"{base:.1}\" stroke=\"#1f2328\" stroke-width=\"1\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#1f2328\">{}</text>\n\
         <text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\" fill=\"#1f2328\">transfers</text>\n</svg>\n",
        LEFT + plot_width,
        LEFT + plot_width / 2.0,
        HEIGHT - 8.0,
        escape(&format!("hour from start of day ({time_zone})")),
        TOP + plot_height / 2.0
    );
    out
}

fn checks_table(checks: &[CheckSummary], findings: &[Finding]) -> String {
    let mut out = String::from("<section>\n<h2>Checks</h2>\n");
    if checks.is_empty() {
        out.push_str("<p class=\"none\">No checks recorded.</p>\n</section>\n");
        return out;
    }
    out.push_str(
        "<table>\n<thead><tr><th>Check</th><th>Description</th><th class=\"num\">Findings</th><th>Result</th></tr></thead>\n<tbody>\n",
    );
    for check in checks {
        let listed = findings.iter().filter(|f| f.check == check.check).count() as i64;
        let count = if listed < check.findings {
            format!("{} ({listed} listed)", check.findings)
        } else {
            check.findings.to_string()
        };
        let result = if check.findings == 0 {
            "<span class=\"ok\">✓ ok</span>"
        } else {
            "<span class=\"failed\">✗ failed</span>"
        };
        put!(
            out,
            "<tr><td class=\"mono\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{result}</td></tr>\n",
            escape(&check.check),
            escape(&check.description),
            escape(&count)
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
    out
}

/// The findings, grouped by check: in the order of `check_order`, then by first appearance.
fn findings_table(findings: &[Finding], check_order: &[&str], label: &dyn Fn(i32) -> String) -> String {
    let mut out = String::from("<section>\n<h2>Findings</h2>\n");
    if findings.is_empty() {
        out.push_str("<p class=\"none\">No findings.</p>\n</section>\n");
        return out;
    }
    let mut groups: Vec<(&str, Vec<&Finding>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for check in check_order {
        if findings.iter().any(|f| f.check == *check) && !index.contains_key(check) {
            index.insert(check, groups.len());
            groups.push((check, Vec::new()));
        }
    }
    for finding in findings {
        let slot = *index.entry(finding.check.as_str()).or_insert_with(|| {
            groups.push((finding.check.as_str(), Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(finding);
    }

    out.push_str(
        "<table>\n<thead><tr><th>Check</th><th>Subject</th><th>Account</th><th>Transfer</th><th>Ledger</th><th>Currency</th>\
         <th class=\"num\">Expected</th><th class=\"num\">Found</th><th class=\"num\">Difference</th><th>Detail</th></tr></thead>\n",
    );
    for (check, group) in groups {
        let noun = if group.len() == 1 { "finding" } else { "findings" };
        put!(
            out,
            "<tbody>\n<tr class=\"group\"><th colspan=\"10\">{} · {} {noun}</th></tr>\n",
            escape(check),
            group.len()
        );
        for finding in group {
            put!(
                out,
                "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td>\
                 <td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"detail\">{}</td></tr>\n",
                escape(&finding.check),
                escape(&finding.subject),
                escape_opt(&finding.account_id),
                escape_opt(&finding.transfer_id),
                escape_opt(&finding.ledger.map(label)),
                escape_opt(&finding.currency),
                escape_opt(&finding.expected),
                escape_opt(&finding.found),
                escape_opt(&finding.difference),
                escape(&finding.detail),
            );
        }
        out.push_str("</tbody>\n");
    }
    out.push_str("</table>\n</section>\n");
    out
}

fn balances_table(balances: &[BalanceComparison]) -> String {
    let mut out = String::from("<section>\n<h2>Balances</h2>\n");
    if balances.is_empty() {
        out.push_str("<p class=\"none\">The statement carries no balances.</p>\n</section>\n");
        return out;
    }
    out.push_str(
        "<table>\n<thead><tr><th>Balance</th><th>Date</th><th class=\"num\">Statement</th><th class=\"num\">Tally</th>\
         <th class=\"num\">Difference</th><th>Result</th></tr></thead>\n<tbody>\n",
    );
    for balance in balances {
        let agrees = is_zero(&balance.difference);
        let (class, result) = if agrees {
            ("", "<span class=\"ok\">✓ agrees</span>")
        } else {
            (" class=\"break\"", "<span class=\"failed\">✗ break</span>")
        };
        put!(
            out,
            "<tr{class}><td>{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{result}</td></tr>\n",
            escape(&balance.which),
            escape(&balance.date),
            escape(&balance.statement),
            escape(&balance.tally),
            escape(&balance.difference),
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
    out
}

fn matches_table(matches: &[MatchLine]) -> String {
    let mut out = String::from("<section>\n<h2>Matches</h2>\n");
    if matches.is_empty() {
        out.push_str("<p class=\"none\">No matches.</p>\n</section>\n");
        return out;
    }
    out.push_str(
        "<table>\n<thead><tr><th>Rule</th><th>Statement entries</th><th>Transfers</th><th class=\"num\">Amount</th>\
         <th class=\"num\">Difference</th></tr></thead>\n<tbody>\n",
    );
    let list = |items: &[String]| items.iter().map(|item| escape(item)).collect::<Vec<_>>().join("<br>");
    for line in matches {
        put!(
            out,
            "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr>\n",
            escape(&line.rule),
            list(&line.statement_entries),
            list(&line.transfer_ids),
            escape(&line.amount),
            escape(&line.difference),
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
    out
}

fn day_html(report: &DayReport) -> String {
    let mut body = summary(&[
        ("Day", report.day.clone()),
        ("Time zone", report.time_zone.clone()),
        ("Day bounds (UTC)", format!("[{}, {})", report.starts_at, report.ends_at)),
        ("Run", report.run_id.clone()),
        ("Actor", report.actor.clone()),
        ("Started", report.started_at.clone()),
        ("Finished", report.finished_at.clone()),
        ("Snapshot", report.snapshot.clone()),
        ("Transfers", report.transfers.to_string()),
        ("Rejected", report.rejected.to_string()),
        ("Accounts touched", report.accounts_touched.to_string()),
        ("Events", report.events.to_string()),
        ("Batches", report.batches.to_string()),
        ("Findings listed", report.findings.len().to_string()),
    ]);
    let label = |ledger: i32| report.ledger_label(ledger);
    body.insert_str(0, &filter_notice(&report.filter));
    body.push_str(&currency_table(&report.currencies, &label));
    body.push_str(&ledgers_table(&report.ledgers));
    body.push_str("<section>\n<h2>Transfers by hour</h2>\n");
    body.push_str(&hourly_chart(&report.hourly, &report.time_zone, &report.day));
    body.push_str("</section>\n");
    body.push_str(&checks_table(&report.checks, &report.findings));
    let order: Vec<&str> = report.checks.iter().map(|check| check.check.as_str()).collect();
    body.push_str(&findings_table(&report.findings, &order, &label));
    page(
        &format!("Tally end-of-day report {}", report.day),
        &format!("End of day {}", report.day),
        report.status,
        &format!("Reconciliation of the ledger day {} ({})", report.day, report.time_zone),
        &body,
    )
}

/// What the parser noted, as a table; nothing when there is nothing.
fn notes_table(notes: &[NoteLine], heading: &str) -> String {
    if notes.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "<section>\n<h2>{}</h2>\n<table>\n<thead><tr><th>Note</th><th>Where</th><th class=\"num\">Amount</th><th>Detail</th></tr></thead>\n<tbody>\n",
        escape(heading)
    );
    for note in notes {
        put!(
            out,
            "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"detail\">{}</td></tr>\n",
            escape(&note.code),
            escape(&note.location),
            escape_opt(&note.amount),
            escape(&note.detail),
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
    out
}

fn file_html(report: &FileReport) -> String {
    let mut body = summary(&[
        ("File", report.file.clone()),
        ("Format", report.message.clone().unwrap_or_else(|| report.format.clone())),
        ("Character set", report.encoding.clone()),
        ("SHA-256", report.sha256.clone()),
        ("Run", report.run_id.clone()),
        ("Actor", report.actor.clone()),
        ("Started", report.started_at.clone()),
        ("Finished", report.finished_at.clone()),
        ("Statements imported", report.imported.to_string()),
        ("Imported before", report.already_imported.to_string()),
        ("Unmapped", report.unmapped.to_string()),
    ]);
    body.insert_str(0, &filter_notice(&report.filter));
    let label = file_ledger_label(report);
    body.push_str(
        "<section>\n<h2>Statements</h2>\n<table>\n<thead><tr><th>#</th><th>Statement</th><th>Bank account</th><th>Outcome</th>\
         <th>Tally account</th><th>Ledger</th><th class=\"num\">Entries</th><th class=\"num\">Pages</th><th>Period</th>\
         <th class=\"num\">Opening</th><th class=\"num\">Closing</th><th class=\"num\">Does not add up by</th></tr></thead>\n<tbody>\n",
    );
    for statement in &report.statements {
        let account = statement.account_code.clone().or_else(|| statement.account_id.clone());
        let period = format!(
            "{} – {}",
            statement.period_from.as_deref().unwrap_or("?"),
            statement.period_to.as_deref().unwrap_or("?")
        );
        let off = statement.balance_difference.as_deref().is_some_and(|difference| !is_zero(difference));
        put!(
            body,
            "<tr{}><td class=\"num\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td><td class=\"mono\">{}</td>\
             <td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
            if off || statement.outcome == "unmapped" { " class=\"break\"" } else { "" },
            statement.ord,
            escape(&statement.statement_ref),
            escape(&statement.bank_account),
            escape(&statement.outcome),
            escape_opt(&account),
            escape_opt(&statement.ledger_of().map(&label)),
            statement.entries,
            statement.pages,
            escape(&period),
            escape_opt(&statement.opening),
            escape_opt(&statement.closing),
            escape_opt(&statement.balance_difference),
        );
    }
    body.push_str("</tbody>\n</table>\n</section>\n");
    body.push_str(&findings_table(&report.findings, &[], &label));
    body.push_str(&notes_table(&report.notes, "Notes on the file"));
    for statement in &report.statements {
        let Some(statement_report) = &statement.report else { continue };
        put!(
            body,
            "<section>\n<h2>Statement {} {}</h2>\n</section>\n",
            escape(&statement.statement_ref),
            badge(statement_report.status)
        );
        body.push_str(&balances_table(&statement_report.balances));
        body.push_str(&matches_table(&statement_report.matches));
        body.push_str(&findings_table(&statement_report.findings, &[], &label));
        body.push_str(&notes_table(&statement_report.notes, "Notes"));
    }
    page(
        &format!("Tally statement file report {}", report.file),
        &format!("Statement file {}", report.file),
        report.status,
        &format!("{} statement(s) in one {} file", report.statements.len(), report.format),
        &body,
    )
}

/// Names the ledgers of a file's statements by the codes their reports carry.
fn file_ledger_label(report: &FileReport) -> impl Fn(i32) -> String + '_ {
    move |ledger: i32| {
        let reports = report.statements.iter().filter_map(|s| s.report.as_ref());
        crate::report::ledger_label(reports.map(|r| (r.ledger, r.ledger_code.as_str())), ledger)
    }
}

fn statement_html(report: &StatementReport) -> String {
    let account = match &report.account_code {
        Some(code) => format!("{code} ({})", report.account_id),
        None => report.account_id.clone(),
    };
    let period =
        format!("{} – {}", report.period_from.as_deref().unwrap_or("?"), report.period_to.as_deref().unwrap_or("?"));
    let mut body = summary(&[
        ("Statement", report.statement_ref.clone()),
        ("Format", report.format.clone()),
        ("Imported statement", report.statement.clone()),
        ("Account", account),
        ("Ledger", format!("{} ({})", report.ledger_code, report.ledger)),
        ("Currency", report.currency.clone()),
        ("Period", period.clone()),
        ("Run", report.run_id.clone()),
        ("Actor", report.actor.clone()),
        ("Started", report.started_at.clone()),
        ("Finished", report.finished_at.clone()),
        ("Statement entries", report.statement_entries.to_string()),
        ("Ledger entries", report.ledger_entries.to_string()),
        ("Matched", report.matched.to_string()),
        ("Unmatched in statement", report.unmatched_statement.to_string()),
        ("Unmatched in Tally", report.unmatched_ledger.to_string()),
        ("Bank account", report.bank_account.clone().unwrap_or_else(|| "—".to_owned())),
        ("Pages", report.pages.to_string()),
        ("Does not add up by", report.balance_difference.clone().unwrap_or_else(|| "—".to_owned())),
        ("File", report.file.clone().unwrap_or_else(|| "—".to_owned())),
    ]);
    body.push_str(&balances_table(&report.balances));
    body.push_str(&matches_table(&report.matches));
    let code = |ledger: i32| if ledger == report.ledger { report.ledger_code.clone() } else { ledger.to_string() };
    body.push_str(&findings_table(&report.findings, &[], &code));
    body.push_str(&notes_table(&report.notes, "Notes"));
    page(
        &format!("Tally statement report {}", report.statement_ref),
        &format!("Statement {}", report.statement_ref),
        report.status,
        &format!("{} statement for {}, {}", report.format, report.currency, period),
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_replaces_the_five_characters() {
        assert_eq!(escape("&<>\"'"), "&amp;&lt;&gt;&quot;&#39;");
        assert_eq!(escape("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
        assert_eq!(escape("a=\"b\" onload='x'"), "a=&quot;b&quot; onload=&#39;x&#39;");
    }

    #[test]
    fn escape_leaves_other_text_alone() {
        assert_eq!(escape(""), "");
        assert_eq!(escape("Müller GmbH, 12.50 EUR\nline 2"), "Müller GmbH, 12.50 EUR\nline 2");
        // Already escaped text is escaped again: the input is text, not markup.
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn format_names() {
        for format in [ReportFormat::Json, ReportFormat::Csv, ReportFormat::Html] {
            assert_eq!(ReportFormat::parse(format.extension()), Some(format));
        }
        assert_eq!(ReportFormat::parse(" HTML "), Some(ReportFormat::Html));
        assert_eq!(ReportFormat::parse("xml"), None);
        assert_eq!(ReportFormat::parse(""), None);
    }

    #[test]
    fn decimals_and_formulas() {
        assert!(is_decimal("-12.50") && is_decimal("0") && is_decimal("+3"));
        assert!(!is_decimal("-") && !is_decimal("1.") && !is_decimal(".5") && !is_decimal("-1+1"));
        assert!(is_zero("0") && is_zero("-0.00") && !is_zero("0.01") && !is_zero("") && !is_zero("abc"));
        assert_eq!(defuse_formula("-12.50"), "-12.50");
        assert_eq!(defuse_formula("=1+1"), "'=1+1");
        assert_eq!(defuse_formula("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(defuse_formula("plain"), "plain");
    }

    #[test]
    fn axis_scale_is_nice() {
        assert_eq!(axis_scale(0), (1, 1));
        assert_eq!(axis_scale(5), (1, 5));
        assert_eq!(axis_scale(7), (2, 8));
        assert_eq!(axis_scale(42), (10, 50));
        assert_eq!(axis_scale(1234), (500, 1500));
    }
}
