//! Rendering of the reconciliation reports through the crate's public API: JSON round-trips,
//! CSV is the findings table and survives any text, HTML is escaped, self-contained and charts
//! one bar per hour.

use tally_recon::render::*;
use tally_recon::report::*;

const SCRIPT: &str = "<script>alert(1)</script>";
const SCRIPT_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";

fn finding(check: &str, subject: &str, detail: &str) -> Finding {
    Finding {
        check: check.to_owned(),
        subject: subject.to_owned(),
        account_id: None,
        transfer_id: None,
        currency: None,
        ledger: None,
        expected: None,
        found: None,
        difference: None,
        detail: detail.to_owned(),
    }
}

fn hours(counts: &[i64]) -> Vec<HourVolume> {
    counts.iter().enumerate().map(|(hour, &transfers)| HourVolume { hour: hour as u32, transfers }).collect()
}

fn day_report() -> DayReport {
    let mismatch = Finding {
        account_id: Some("0190f3a4-5c1e-7b2a-9d3e-1f2a3b4c5d6e".to_owned()),
        currency: Some("EUR".to_owned()),
        ledger: Some(2),
        expected: Some("1200.00".to_owned()),
        found: Some("1150.50".to_owned()),
        difference: Some("-49.50".to_owned()),
        ..finding(
            "closing_balance_mismatch",
            "0190f3a4-5c1e-7b2a-9d3e-1f2a3b4c5d6e",
            "Snapshot says 1200.00, journal sums to 1150.50, counterparty \"Smith & Sons\", ref 'X<1>'",
        )
    };
    let missing_event = Finding {
        transfer_id: Some("0190f3a4-0000-7000-8000-000000000042".to_owned()),
        ledger: Some(1),
        ..finding(
            "missing_event",
            "0190f3a4-0000-7000-8000-000000000042",
            &format!("reference {SCRIPT}, a, b\nsecond line"),
        )
    };
    let formula = finding("missing_event", "=HYPERLINK(\"x\")", "@SUM(A1:A9)");
    DayReport {
        run_id: "run-1".to_owned(),
        day: "2025-03-14".to_owned(),
        time_zone: "Europe/Berlin".to_owned(),
        starts_at: "2025-03-13T23:00:00Z".to_owned(),
        ends_at: "2025-03-14T23:00:00Z".to_owned(),
        started_at: "2025-03-15T00:05:00Z".to_owned(),
        finished_at: "2025-03-15T00:05:07Z".to_owned(),
        actor: format!("operator {SCRIPT}"),
        status: RunStatus::Findings,
        snapshot: "written".to_owned(),
        transfers: 1234,
        rejected: 5,
        accounts_touched: 77,
        events: 1300,
        batches: 12,
        currencies: vec![
            CurrencyTotals {
                ledger: 1,
                currency: "EUR".to_owned(),
                scale: 2,
                transfers: 1000,
                posted_volume: "90000.00".to_owned(),
                closing_debits_posted: "900000.00".to_owned(),
                closing_credits_posted: "900000.00".to_owned(),
                closing_debits_pending: "0.00".to_owned(),
                closing_credits_pending: "0.00".to_owned(),
            },
            CurrencyTotals {
                ledger: 2,
                currency: "EUR".to_owned(),
                scale: 2,
                transfers: 234,
                posted_volume: "8765.43".to_owned(),
                closing_debits_posted: "100000.00".to_owned(),
                closing_credits_posted: "100000.00".to_owned(),
                closing_debits_pending: "0.00".to_owned(),
                closing_credits_pending: "0.00".to_owned(),
            },
        ],
        hourly: hours(&[0, 0, 1, 3, 5, 8, 13, 21, 34, 55, 89, 144, 100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 5, 1]),
        checks: vec![
            CheckSummary {
                check: "missing_event".to_owned(),
                description: format!("Every applied entry has its event {SCRIPT}"),
                findings: 2,
                by_ledger: vec![
                    LedgerCount { ledger: None, findings: 1 },
                    LedgerCount { ledger: Some(1), findings: 1 },
                ],
            },
            CheckSummary {
                check: "closing_balance_mismatch".to_owned(),
                description: "Snapshot balances equal the journal's".to_owned(),
                findings: 1,
                by_ledger: vec![LedgerCount { ledger: Some(2), findings: 1 }],
            },
            CheckSummary {
                check: "trial_balance".to_owned(),
                description: "Debits equal credits per currency".to_owned(),
                findings: 0,
                by_ledger: Vec::new(),
            },
        ],
        findings: vec![mismatch, missing_event, formula],
        per_ledger: true,
        ledgers: vec![
            LedgerDay {
                ledger: 1,
                code: "default".to_owned(),
                transfers: 1000,
                rejected: 5,
                accounts_touched: 70,
                events: 1000,
                batches: 12,
                hourly: hours(&[
                    0, 0, 1, 3, 5, 8, 13, 21, 34, 55, 89, 144, 100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 5, 1,
                ])
                .into_iter()
                .map(|h| HourVolume { transfers: h.transfers - if h.hour == 11 { 144 - 60 } else { 0 }, ..h })
                .collect(),
            },
            LedgerDay {
                ledger: 2,
                code: format!("eu{SCRIPT}"),
                transfers: 234,
                rejected: 0,
                accounts_touched: 7,
                events: 234,
                batches: 3,
                hourly: hours(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 84]),
            },
        ],
        filter: None,
    }
}

fn clean_day(hourly: Vec<HourVolume>) -> DayReport {
    DayReport {
        status: RunStatus::Clean,
        hourly,
        checks: vec![CheckSummary {
            check: "trial_balance".to_owned(),
            description: "Debits equal credits per currency".to_owned(),
            findings: 0,
            by_ledger: Vec::new(),
        }],
        findings: Vec::new(),
        ..day_report()
    }
}

fn statement_report() -> StatementReport {
    StatementReport {
        run_id: "run-2".to_owned(),
        statement: "0190f3a4-aaaa-7000-8000-000000000001".to_owned(),
        statement_ref: "STMT-2025-03-14 <b>&\"'".to_owned(),
        format: "camt.053".to_owned(),
        account_id: "0190f3a4-bbbb-7000-8000-000000000002".to_owned(),
        account_code: Some("bank:main".to_owned()),
        ledger: 2,
        ledger_code: "eu".to_owned(),
        currency: "EUR".to_owned(),
        period_from: Some("2025-03-14".to_owned()),
        period_to: Some("2025-03-14".to_owned()),
        started_at: "2025-03-15T01:00:00Z".to_owned(),
        finished_at: "2025-03-15T01:00:02Z".to_owned(),
        actor: "scheduler".to_owned(),
        status: RunStatus::Findings,
        statement_entries: 4,
        ledger_entries: 4,
        matched: 2,
        unmatched_statement: 1,
        unmatched_ledger: 1,
        balances: vec![
            BalanceComparison {
                which: "opening".to_owned(),
                date: "2025-03-13".to_owned(),
                statement: "500.00".to_owned(),
                tally: "500.00".to_owned(),
                difference: "0.00".to_owned(),
            },
            BalanceComparison {
                which: "closing".to_owned(),
                date: "2025-03-14".to_owned(),
                statement: "610.00".to_owned(),
                tally: "600.00".to_owned(),
                difference: "-10.00".to_owned(),
            },
        ],
        matches: vec![
            MatchLine {
                rule: "end_to_end_id".to_owned(),
                statement_entries: vec!["Ntry[1]".to_owned()],
                transfer_ids: vec!["t-1".to_owned()],
                amount: "100.00".to_owned(),
                difference: "0.00".to_owned(),
            },
            MatchLine {
                rule: "amount_date_many".to_owned(),
                statement_entries: vec!["Ntry[2]".to_owned(), "Ntry[3]".to_owned()],
                transfer_ids: vec!["t-2".to_owned(), "t-3".to_owned()],
                amount: "40.00".to_owned(),
                difference: "0.00".to_owned(),
            },
        ],
        findings: vec![
            Finding {
                currency: Some("EUR".to_owned()),
                found: Some("10.00".to_owned()),
                ..finding(
                    "unmatched_in_statement",
                    "Ntry[4]",
                    &format!("Counterparty \"Evil, Inc.\" {SCRIPT}\nref O'Brien & Co"),
                )
            },
            Finding {
                transfer_id: Some("t-9".to_owned()),
                expected: Some("25.00".to_owned()),
                ..finding("unmatched_in_tally", "t-9", "Transfer not on the statement")
            },
            Finding {
                expected: Some("610.00".to_owned()),
                found: Some("600.00".to_owned()),
                difference: Some("-10.00".to_owned()),
                ..finding("balance_break", "closing 2025-03-14", "Closing balance differs by -10.00")
            },
        ],
        file: Some("0190f3a4-cccc-7000-8000-000000000003".to_owned()),
        bank_account: Some("DE89370400440532013000".to_owned()),
        pages: 2,
        balance_difference: Some("0.00".to_owned()),
        notes: vec![NoteLine {
            code: "tag_skipped".to_owned(),
            location: "line 14".to_owned(),
            detail: format!(":NS: is not an MT940 field: skipped {SCRIPT}"),
            amount: None,
        }],
    }
}

fn file_report() -> FileReport {
    let statement = statement_report();
    let imported = FileStatement {
        ord: 1,
        outcome: "imported".to_owned(),
        statement_ref: statement.statement_ref.clone(),
        bank_account: "DE89370400440532013000".to_owned(),
        currency: Some("EUR".to_owned()),
        pages: 2,
        entries: 4,
        period_from: Some("2025-03-14".to_owned()),
        period_to: Some("2025-03-14".to_owned()),
        opening: Some("500.00".to_owned()),
        closing: Some("610.00".to_owned()),
        balance_difference: Some("0.00".to_owned()),
        statement: Some(statement.statement.clone()),
        account_id: Some(statement.account_id.clone()),
        account_code: statement.account_code.clone(),
        ledger: Some(statement.ledger),
        report: Some(statement),
    };
    let unmapped = FileStatement {
        ord: 2,
        outcome: "unmapped".to_owned(),
        statement_ref: "OTHER/2025-03-14".to_owned(),
        bank_account: "NL75ABNA0555555555 <i>".to_owned(),
        currency: Some("EUR".to_owned()),
        pages: 1,
        entries: 1,
        opening: None,
        closing: None,
        balance_difference: None,
        statement: None,
        account_id: None,
        account_code: None,
        ledger: None,
        report: None,
        ..imported.clone()
    };
    FileReport {
        run_id: "run-3".to_owned(),
        file: "0190f3a4-cccc-7000-8000-000000000003".to_owned(),
        sha256: "ab".repeat(32),
        format: "mt940".to_owned(),
        message: None,
        encoding: "ISO-8859-2".to_owned(),
        started_at: "2025-03-15T01:00:00Z".to_owned(),
        finished_at: "2025-03-15T01:00:03Z".to_owned(),
        actor: "cli:tally".to_owned(),
        status: RunStatus::Findings,
        imported: 1,
        already_imported: 0,
        unmapped: 1,
        statements: vec![imported, unmapped],
        notes: vec![NoteLine {
            code: "encoding_detected".to_owned(),
            location: "line 9".to_owned(),
            detail: "read as ISO-8859-2".to_owned(),
            amount: None,
        }],
        findings: vec![finding("unmapped_statement", "NL75ABNA0555555555 <i>", "=map it with --map")],
        filter: None,
    }
}

fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = reader.records().map(|record| record.unwrap().iter().map(str::to_owned).collect()).collect();
    (header, rows)
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|cell| (*cell).to_owned()).collect()
}

fn bars(html: &str) -> usize {
    html.matches("<rect class=\"bar\"").count()
}

/// No reference to anything outside the page: no URLs, no scripts, no external stylesheets.
fn assert_self_contained(html: &str) {
    assert!(!html.contains("http://"), "http:// in page");
    assert!(!html.contains("https://"), "https:// in page");
    assert!(!html.contains("<script"), "script element in page");
    assert!(!html.contains("<link"), "link element in page");
    assert!(!html.contains("<img"), "img element in page");
    assert!(!html.contains("@import"), "@import in page");
    assert!(!html.contains("url("), "url() in page");
}

#[test]
fn formats_parse_and_name_themselves() {
    assert_eq!(ReportFormat::parse("json"), Some(ReportFormat::Json));
    assert_eq!(ReportFormat::parse("csv"), Some(ReportFormat::Csv));
    assert_eq!(ReportFormat::parse("html"), Some(ReportFormat::Html));
    assert_eq!(ReportFormat::parse("pdf"), None);
    assert_eq!(ReportFormat::Json.content_type(), "application/json");
    assert_eq!(ReportFormat::Csv.content_type(), "text/csv; charset=utf-8");
    assert_eq!(ReportFormat::Html.content_type(), "text/html; charset=utf-8");
    assert_eq!(ReportFormat::Html.extension(), "html");
}

#[test]
fn day_json_round_trips() {
    let report = day_report();
    let json = render_day(&report, ReportFormat::Json);
    let back: DayReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    assert!(json.contains('\n'), "pretty-printed");
}

#[test]
fn file_reports_render_every_statement() {
    let report = file_report();
    let json = render_file(&report, ReportFormat::Json);
    assert_eq!(serde_json::from_str::<FileReport>(&json).unwrap(), report);

    let (header, rows) = parse_csv(&render_file(&report, ReportFormat::Csv));
    assert_eq!(
        header,
        ["statement", "outcome", "rule", "statement_entries", "transfer_ids", "amount", "difference", "detail"]
    );
    let reference = "STMT-2025-03-14 <b>&\"'";
    // The imported statement's matches and findings, led by its reference; then the unmapped
    // statement, the file's finding and its note.
    let outcomes: Vec<(&str, &str)> = rows.iter().map(|row| (row[0].as_str(), row[1].as_str())).collect();
    assert_eq!(
        outcomes,
        [
            (reference, "matched"),
            (reference, "matched"),
            (reference, "unmatched_in_statement"),
            (reference, "unmatched_in_tally"),
            (reference, "balance_break"),
            ("OTHER/2025-03-14", "unmapped"),
            ("NL75ABNA0555555555 <i>", "unmapped_statement"),
            ("line 9", "encoding_detected"),
        ]
    );
    assert_eq!(rows[6][7], "'=map it with --map", "a formula from a file is defused");

    let html = render_file(&report, ReportFormat::Html);
    assert_self_contained(&html);
    assert!(!html.contains("<i>") && html.contains("NL75ABNA0555555555 &lt;i&gt;"), "escaped");
    assert!(!html.contains(SCRIPT), "notes are escaped too");
    for needle in
        ["Statements imported", "unmapped", "Notes on the file", "encoding_detected", "tag_skipped", "ISO-8859-2"]
    {
        assert!(html.contains(needle), "{needle}");
    }
}

#[test]
fn statement_reports_stored_before_files_still_read() {
    let mut json = serde_json::to_value(statement_report()).unwrap();
    for key in ["file", "bank_account", "pages", "balance_difference", "notes"] {
        json.as_object_mut().unwrap().remove(key);
    }
    let old: StatementReport = serde_json::from_value(json).unwrap();
    assert_eq!((old.file, old.pages, old.notes.len(), old.balance_difference), (None, 1, 0, None));
}

#[test]
fn statement_json_round_trips() {
    let report = statement_report();
    let json = render_statement(&report, ReportFormat::Json);
    let back: StatementReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn day_csv_is_the_findings_table() {
    let csv = render_day(&day_report(), ReportFormat::Csv);
    assert!(csv.starts_with("check,subject,account_id,transfer_id,ledger,currency,expected,found,difference,detail\n"));
    let (header, rows) = parse_csv(&csv);
    assert_eq!(
        header,
        row(&[
            "check",
            "subject",
            "account_id",
            "transfer_id",
            "ledger",
            "currency",
            "expected",
            "found",
            "difference",
            "detail"
        ])
    );
    assert_eq!(
        rows,
        vec![
            row(&[
                "closing_balance_mismatch",
                "0190f3a4-5c1e-7b2a-9d3e-1f2a3b4c5d6e",
                "0190f3a4-5c1e-7b2a-9d3e-1f2a3b4c5d6e",
                "",
                "eu<script>alert(1)</script>",
                "EUR",
                "1200.00",
                "1150.50",
                "-49.50",
                "Snapshot says 1200.00, journal sums to 1150.50, counterparty \"Smith & Sons\", ref 'X<1>'",
            ]),
            row(&[
                "missing_event",
                "0190f3a4-0000-7000-8000-000000000042",
                "",
                "0190f3a4-0000-7000-8000-000000000042",
                "default",
                "",
                "",
                "",
                "",
                "reference <script>alert(1)</script>, a, b\nsecond line",
            ]),
            // Cells a spreadsheet would run as formulas are defused with a leading quote.
            row(&["missing_event", "'=HYPERLINK(\"x\")", "", "", "", "", "", "", "", "'@SUM(A1:A9)"]),
        ]
    );
}

#[test]
fn clean_day_csv_is_only_the_header() {
    let csv = render_day(&clean_day(hours(&[0; 24])), ReportFormat::Csv);
    let (header, rows) = parse_csv(&csv);
    assert_eq!(header.len(), 10);
    assert!(rows.is_empty());
}

#[test]
fn statement_csv_lists_matches_then_findings() {
    let csv = render_statement(&statement_report(), ReportFormat::Csv);
    let (header, rows) = parse_csv(&csv);
    assert_eq!(
        header,
        row(&["outcome", "rule", "statement_entries", "transfer_ids", "amount", "difference", "detail"])
    );
    assert_eq!(
        rows,
        vec![
            row(&["matched", "end_to_end_id", "Ntry[1]", "t-1", "100.00", "0.00", ""]),
            row(&["matched", "amount_date_many", "Ntry[2];Ntry[3]", "t-2;t-3", "40.00", "0.00", ""]),
            row(&[
                "unmatched_in_statement",
                "",
                "Ntry[4]",
                "",
                "10.00",
                "",
                "Counterparty \"Evil, Inc.\" <script>alert(1)</script>\nref O'Brien & Co",
            ]),
            row(&["unmatched_in_tally", "", "", "t-9", "25.00", "", "Transfer not on the statement"]),
            row(&[
                "balance_break",
                "",
                "closing 2025-03-14",
                "",
                "600.00",
                "-10.00",
                "Closing balance differs by -10.00",
            ]),
        ]
    );
}

#[test]
fn day_html_is_escaped_self_contained_and_charts_every_hour() {
    let report = day_report();
    let html = render_day(&report, ReportFormat::Html);

    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_self_contained(&html);
    assert!(!html.contains(SCRIPT));
    assert!(html.contains(&format!("operator {SCRIPT_ESCAPED}")), "actor escaped");
    assert!(html.contains(&format!("Every applied entry has its event {SCRIPT_ESCAPED}")));
    assert!(html.contains(&format!("reference {SCRIPT_ESCAPED}, a, b\nsecond line")));
    assert!(html.contains("counterparty &quot;Smith &amp; Sons&quot;, ref &#39;X&lt;1&gt;&#39;"));
    assert!(html.contains("=HYPERLINK(&quot;x&quot;)"));

    // Title, status badge, summary, totals.
    assert!(html.contains("2025-03-14"));
    assert!(html.contains("<span class=\"badge findings\">findings</span>"));
    assert!(html.contains("Europe/Berlin"));
    assert!(html.contains("<style>"));
    // Totals per ledger and currency, each row led by its ledger's code; the ledgers' figures.
    assert!(html.contains("Totals by ledger and currency"));
    assert!(html.contains("<td class=\"mono\">default</td><td class=\"mono\">EUR</td>"), "{html}");
    assert!(html.contains(&format!("<td class=\"mono\">eu{SCRIPT_ESCAPED}</td><td class=\"mono\">EUR</td>")));
    assert!(html.contains("90000.00") && html.contains("8765.43"));
    assert!(html.contains("<h2>Ledgers</h2>") && html.contains("Accounts touched"));
    assert!(!html.contains("Filtered:"), "the whole report says nothing of a filter");

    // The chart: one bar per hour, with axis labels.
    assert_eq!(html.matches("<svg").count(), 1);
    assert_eq!(bars(&html), 24);
    assert!(html.contains(">transfers</text>"));
    assert!(html.contains(">23</text>"));
    assert!(html.contains("hour 11: 144 transfers"));

    // Checks and findings, grouped in the order of the checks.
    assert!(html.contains("✗ failed") && html.contains("✓ ok"));
    assert!(!html.contains("No findings"));
    let missing = html.find("missing_event · 2 findings").unwrap();
    let mismatch = html.find("closing_balance_mismatch · 1 finding<").unwrap();
    assert!(missing < mismatch);
}

#[test]
fn clean_day_html_says_no_findings_and_charts_empty_and_daylight_saving_days() {
    for count in [23, 24, 25] {
        let html = render_day(&clean_day(hours(&vec![0; count])), ReportFormat::Html);
        assert_self_contained(&html);
        assert!(html.contains("<span class=\"badge clean\">clean</span>"));
        assert!(html.contains("No findings."));
        assert!(!html.contains("<th>Subject</th>"), "no empty findings table");
        assert_eq!(bars(&html), count);
        assert!(!html.contains("NaN") && !html.contains("inf\""), "finite coordinates");
        assert!(html.contains(&format!(">{:02}</text>", count - 1)) || count == 24);
    }
    // No hourly figures at all still gives a chart.
    let html = render_day(&clean_day(Vec::new()), ReportFormat::Html);
    assert!(html.contains("<svg"));
    assert_eq!(bars(&html), 0);
}

#[test]
fn statement_html_is_escaped_and_highlights_breaks() {
    let html = render_statement(&statement_report(), ReportFormat::Html);
    assert_self_contained(&html);
    assert!(!html.contains(SCRIPT));
    assert!(!html.contains("<b>"));
    assert!(html.contains("STMT-2025-03-14 &lt;b&gt;&amp;&quot;&#39;"));
    assert!(html.contains(&format!("Counterparty &quot;Evil, Inc.&quot; {SCRIPT_ESCAPED}\nref O&#39;Brien &amp; Co")));
    assert!(html.contains("<span class=\"badge findings\">findings</span>"));
    assert!(html.contains("camt.053"));
    assert!(html.contains("bank:main"));
    // The closing balance breaks, the opening agrees.
    assert_eq!(html.matches("<tr class=\"break\">").count(), 1);
    assert!(html.contains("✗ break") && html.contains("✓ agrees"));
    // Matches list every statement entry and transfer.
    assert!(html.contains("Ntry[2]<br>Ntry[3]"));
    assert!(html.contains("t-2<br>t-3"));
    for check in ["unmatched_in_statement", "unmatched_in_tally", "balance_break"] {
        assert!(html.contains(&format!("{check} · 1 finding<")), "{check} group");
    }
}

#[test]
fn clean_statement_html_says_no_findings() {
    let report = StatementReport { status: RunStatus::Clean, findings: Vec::new(), ..statement_report() };
    let html = render_statement(&report, ReportFormat::Html);
    assert!(html.contains("<span class=\"badge clean\">clean</span>"));
    assert!(html.contains("No findings."));
    let csv = render_statement(&report, ReportFormat::Csv);
    assert_eq!(parse_csv(&csv).1.len(), 2, "only the matches");
}

/// The report as one ledger sees it: its totals, figures, counts and findings only.
#[test]
fn a_day_report_filtered_to_one_ledger_shows_that_ledgers_part_and_says_so() {
    let report = day_report();
    let eu = LedgerRef { id: 2, code: "eu".to_owned() };
    let shown = report.filtered(std::slice::from_ref(&eu));
    assert_eq!(shown.currencies.iter().map(|c| c.ledger).collect::<Vec<_>>(), [2]);
    assert_eq!(shown.findings.iter().map(|f| f.check.as_str()).collect::<Vec<_>>(), ["closing_balance_mismatch"]);
    let counts: Vec<(&str, i64)> = shown.checks.iter().map(|c| (c.check.as_str(), c.findings)).collect();
    assert_eq!(counts, [("missing_event", 0), ("closing_balance_mismatch", 1), ("trial_balance", 0)]);
    assert_eq!(shown.status, RunStatus::Findings);
    assert_eq!(
        (shown.transfers, shown.rejected, shown.accounts_touched, shown.events, shown.batches),
        (234, 0, 7, 234, 3)
    );
    assert_eq!(shown.hourly.iter().map(|h| h.transfers).sum::<i64>(), 84);
    assert_eq!(shown.hourly[11].transfers, 84);
    assert_eq!(shown.ledgers.len(), 1);
    let filter = shown.filter.as_ref().expect("says it is filtered");
    assert_eq!(filter.ledgers, std::slice::from_ref(&eu));
    assert!(filter.note.contains("filtered to ledger eu (2)"), "{}", filter.note);
    // The day, run and actor stay; the stored report is untouched.
    assert_eq!((shown.run_id.as_str(), shown.day.as_str()), ("run-1", "2025-03-14"));
    assert!(report.filter.is_none());

    // Ledger 1 gets its own finding; the one of no ledger (the formula row) is left out.
    let default = report.filtered(&[LedgerRef { id: 1, code: "default".to_owned() }]);
    assert_eq!(default.findings.len(), 1);
    assert_eq!(default.findings[0].ledger, Some(1));
    assert_eq!(default.checks[0].findings, 1);
    assert_eq!((default.transfers, default.hourly[11].transfers), (1000, 60));

    // A ledger with nothing on the day: a clean, empty report.
    let other = report.filtered(&[LedgerRef { id: 3, code: "cards".to_owned() }]);
    assert_eq!(other.status, RunStatus::Clean);
    assert!(other.findings.is_empty() && other.currencies.is_empty() && other.ledgers.is_empty());
    assert_eq!((other.transfers, other.events), (0, 0));

    // Rendered: the notice, and only the ledger's rows.
    let html = render_day(&shown, ReportFormat::Html);
    assert!(html.contains("<strong>Filtered:</strong> filtered to ledger eu (2)"), "{html}");
    assert!(!html.contains("90000.00") && html.contains("8765.43"));
    let (_, rows) = parse_csv(&render_day(&shown, ReportFormat::Csv));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], "closing_balance_mismatch");
    // The JSON says it is filtered; the stored one does not carry the field at all.
    assert!(render_day(&shown, ReportFormat::Json).contains("\"filter\""));
    assert!(!render_day(&report, ReportFormat::Json).contains("\"filter\""));
}

/// A report stored before ledgers existed was all of ledger 1 (`default`).
#[test]
fn a_day_report_stored_before_ledgers_reads_and_filters_as_ledger_one() {
    let mut json = serde_json::to_value(day_report()).unwrap();
    let object = json.as_object_mut().unwrap();
    for key in ["per_ledger", "ledgers"] {
        object.remove(key);
    }
    for totals in object["currencies"].as_array_mut().unwrap() {
        totals.as_object_mut().unwrap().remove("ledger");
    }
    for check in object["checks"].as_array_mut().unwrap() {
        check.as_object_mut().unwrap().remove("by_ledger");
    }
    for finding in object["findings"].as_array_mut().unwrap() {
        finding.as_object_mut().unwrap().remove("ledger");
    }
    let old: DayReport = serde_json::from_value(json).unwrap();
    assert!(!old.per_ledger && old.ledgers.is_empty());
    assert!(old.currencies.iter().all(|c| c.ledger == 1));
    assert_eq!(old.ledger_label(1), "default");

    let default = old.filtered(&[LedgerRef { id: 1, code: "default".to_owned() }]);
    assert_eq!((default.findings.len(), default.transfers, default.status), (3, 1234, RunStatus::Findings));
    assert_eq!(default.checks.iter().map(|c| c.findings).sum::<i64>(), 3);
    let eu = old.filtered(&[LedgerRef { id: 2, code: "eu".to_owned() }]);
    assert_eq!((eu.findings.len(), eu.transfers, eu.status), (0, 0, RunStatus::Clean));
    assert!(eu.currencies.is_empty() && eu.hourly.iter().all(|h| h.transfers == 0));
}

/// A file as one ledger sees it: the file's own content and that ledger's statements.
#[test]
fn a_file_report_filtered_to_a_ledger_keeps_its_statements_and_the_files_own_content() {
    let report = file_report();
    let eu = [LedgerRef { id: 2, code: "eu".to_owned() }];
    let default = [LedgerRef { id: 1, code: "default".to_owned() }];
    assert!(report.touches(&eu) && !report.touches(&default));
    let same = report.filtered(&eu);
    assert_eq!(same.statements, report.statements);
    assert_eq!((same.imported, same.unmapped), (1, 1));
    let other = report.filtered(&default);
    let outcomes: Vec<&str> = other.statements.iter().map(|s| s.outcome.as_str()).collect();
    assert_eq!(outcomes, ["unmapped"]);
    assert_eq!((other.imported, other.already_imported, other.unmapped), (0, 0, 1));
    // The unmapped statement is still a finding of the file.
    assert_eq!(other.status, RunStatus::Findings);
    assert!(other.filter.as_ref().unwrap().note.contains("statements of other ledgers are not shown"));
    let html = render_file(&same, ReportFormat::Html);
    assert!(html.contains("<td class=\"mono\">eu</td>"), "the statement's ledger is shown");
}
