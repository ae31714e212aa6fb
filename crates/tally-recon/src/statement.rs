//! Bank statements: import a statement file for an account, match its entries against the
//! account's journal, compare its balances with Tally's, and store the report.
//!
//! The statement and Tally agree on signs: the statement's credits (money in) are credits to the
//! Tally account, its debits are debits, and a balance is credits minus debits. Parsing and
//! matching are `tally_statement`'s (pure); this module does the rest:
//! - **Idempotent import.** A file is identified by its SHA-256: importing the same file again
//!   writes nothing and answers the first import's statement and report. Another file with the
//!   same statement reference for the account is refused (`statement_exists_with_different_content`).
//!   A file that does not parse is refused with the parser's code and location, and nothing is
//!   written.
//! - **Journal entries** of the account, posted kinds only (holds do not reach a bank), dated by
//!   their ledger day, from `date_window_days` before the statement's first day to as many after
//!   its last. Each carries its reference and its counterparty: the transfer's
//!   `metadata.counterparty` if any, else the other account's code. Journal entries outside the
//!   statement's period that match nothing are not reported: they belong to the neighbouring
//!   statements.
//! - **Balances.** The opening balance on date D is compared with Tally's balance when D began,
//!   the closing balance on date D with Tally's when D ended (point-in-time balances); a date
//!   whose day has not ended yet is not compared.

use crate::Recon;
use crate::days::{self, format_day};
use crate::report::{BalanceComparison, Finding, MatchLine, RunStatus, StatementReport};
use crate::{ReconError, balance};
use rust_decimal::Decimal;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};
use tally_core::{Timestamp, format_amount};
use tally_statement::{Format, LedgerEntry, MatchRules, Statement};
use tally_store::convert::{from_system_time, to_system_time};
use tally_store::journal::{AuditEntry, append};
use time::Date;
use uuid::Uuid;

/// The most journal entries one statement is matched against.
pub const LEDGER_ENTRIES_MAX: i64 = 200_000;
/// The widest date window for matching, in days.
pub const DATE_WINDOW_DAYS_MAX: u32 = 31;

/// How to read and match a statement.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `None`: detected (camt.053 or MT940; CSV must be named).
    pub format: Option<Format>,
    /// For CSV: the column layout and what the file does not say.
    pub csv: Option<(tally_statement::CsvLayout, tally_statement::CsvStatementInfo)>,
    pub rules: MatchRules,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    pub statement_id: Uuid,
    /// False when the same file had been imported before (nothing was written).
    pub created: bool,
    pub report: StatementReport,
}

/// Imports `bytes` as a statement of `account` (id or code), matches it and stores the report.
pub async fn import_statement(
    recon: &Recon,
    account: &str,
    bytes: &[u8],
    options: &ImportOptions,
    actor: &str,
) -> Result<ImportOutcome, ReconError> {
    if options.rules.date_window_days > DATE_WINDOW_DAYS_MAX || options.rules.amount_tolerance < 0 {
        return Err(ReconError::StatementRulesInvalid(format!(
            "the date window is 0 to {DATE_WINDOW_DAYS_MAX} days and the tolerance not negative"
        )));
    }
    let record = recon.store().require_account(account).await?;
    let format = match options.format {
        Some(format) => format,
        None => Format::detect(bytes).ok_or(ReconError::StatementFormatUnknown)?,
    };
    let csv = options.csv.as_ref().map(|(layout, info)| (layout, info));
    if format == Format::Csv && csv.is_none() {
        return Err(ReconError::StatementFormatUnknown);
    }
    let statement = tally_statement::parse(format, bytes, record.scale, csv)?;
    if let Some(currency) = &statement.currency
        && *currency != record.account.currency
    {
        return Err(ReconError::StatementCurrencyMismatch {
            statement: currency.clone(),
            account: record.account.currency.clone(),
        });
    }
    let reference = match (&statement.format, &statement.sequence) {
        (Format::Mt940, Some(sequence)) => format!("{}/{}", statement.statement_id, sequence),
        _ => statement.statement_id.clone(),
    };
    let digest: Vec<u8> = Sha256::digest(bytes).to_vec();
    let account_id = record.account.id.0;

    let mut client = recon.client().await?;
    let db_tx = client.transaction().await?;
    // One importer per account at a time, so that the replay check below is final.
    db_tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))", &[&account_id.to_string()]).await?;
    if let Some(row) = db_tx
        .query_opt("SELECT id, digest = $3 FROM statements WHERE account_id = $1 AND (digest = $3 OR (format = $2 AND statement_ref = $4))",
            &[&account_id, &format.as_str(), &digest, &reference])
        .await?
    {
        let (existing, same_file): (Uuid, bool) = (row.get(0), row.get(1));
        if !same_file {
            return Err(ReconError::StatementExistsWithDifferentContent(reference));
        }
        db_tx.rollback().await?;
        drop(client);
        let report = statement_report(recon, existing).await?;
        return Ok(ImportOutcome { statement_id: existing, created: false, report });
    }
    let statement_id = Uuid::now_v7();
    let imported_at = to_system_time(recon.store().now());
    let day_text = |d: Option<Date>| d.map(format_day);
    let amount = |a: Option<i128>| a.map(|v| Decimal::from_i128_with_scale(v, 0));
    db_tx
        .execute(
            "INSERT INTO statements (id, account_id, format, statement_ref, digest, bank_account, currency, sequence,
                                     opening_date, opening_amount, closing_date, closing_amount, entries, imported_at, imported_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::date, $10, $11::text::date, $12, $13, $14, $15)",
            &[
                &statement_id,
                &account_id,
                &format.as_str(),
                &reference,
                &digest,
                &statement.account,
                &statement.currency,
                &statement.sequence,
                &day_text(statement.opening.map(|b| b.date)),
                &amount(statement.opening.map(|b| b.amount)),
                &day_text(statement.closing.map(|b| b.date)),
                &amount(statement.closing.map(|b| b.amount)),
                &i32::try_from(statement.entries.len()).expect("bounded by STATEMENT_ENTRIES_MAX"),
                &imported_at,
                &actor,
            ],
        )
        .await?;
    insert_entries(&db_tx, statement_id, &statement).await?;
    let entry = AuditEntry {
        actor,
        action: "statement.import",
        event_type: Some("statement.imported".into()),
        entity_type: "statement",
        entity_id: statement_id.to_string(),
        before: None,
        after: json!({"account_id": account_id, "format": format.as_str(), "statement_ref": reference,
                      "entries": statement.entries.len(), "sha256": hex_of(&digest)}),
    };
    append(&db_tx, &[entry]).await?;
    tally_store::commit_transaction(db_tx).await?;
    drop(client);

    let report = match_and_store(recon, statement_id, &record, &statement, &reference, &options.rules, actor).await?;
    Ok(ImportOutcome { statement_id, created: true, report })
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn insert_entries(
    db_tx: &deadpool_postgres::Transaction<'_>,
    statement_id: Uuid,
    statement: &Statement,
) -> Result<(), ReconError> {
    let e = &statement.entries;
    let ords: Vec<i32> = (0..e.len()).map(|i| i32::try_from(i).expect("bounded")).collect();
    let locations: Vec<&str> = e.iter().map(|x| x.location.as_str()).collect();
    let booking: Vec<String> = e.iter().map(|x| format_day(x.booking_date)).collect();
    let value: Vec<Option<String>> = e.iter().map(|x| x.value_date.map(format_day)).collect();
    let amounts: Vec<Decimal> = e.iter().map(|x| Decimal::from_i128_with_scale(x.amount, 0)).collect();
    let reversal: Vec<bool> = e.iter().map(|x| x.reversal).collect();
    let text = |f: fn(&tally_statement::Entry) -> &Option<String>| -> Vec<Option<&str>> {
        e.iter().map(|x| f(x).as_deref()).collect()
    };
    let details: Vec<Option<serde_json::Value>> = e
        .iter()
        .map(|x| (!x.details.is_empty()).then(|| serde_json::to_value(&x.details).expect("serializes")))
        .collect();
    db_tx
        .execute(
            "INSERT INTO statement_entries (statement_id, ord, location, booking_date, value_date, amount, reversal, reference,
                                            bank_reference, counterparty, description, bank_code, details)
             SELECT $1, u.* FROM unnest($2::int4[], $3::text[], $4::text[]::date[], $5::text[]::date[], $6::numeric[], $7::bool[],
                                        $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::jsonb[]) u",
            &[
                &statement_id,
                &ords,
                &locations,
                &booking,
                &value,
                &amounts,
                &reversal,
                &text(|x| &x.reference),
                &text(|x| &x.bank_reference),
                &text(|x| &x.counterparty),
                &text(|x| &x.description),
                &text(|x| &x.bank_code),
                &details,
            ],
        )
        .await?;
    Ok(())
}

/// The report stored for a statement's first import, by Tally's statement id.
pub async fn statement_report(recon: &Recon, statement_id: Uuid) -> Result<StatementReport, ReconError> {
    let client = recon.client().await?;
    let row = client
        .query_opt(
            "SELECT report FROM reconciliation_runs WHERE kind = 'statement' AND statement_id = $1 AND report IS NOT NULL
             ORDER BY started_at DESC LIMIT 1",
            &[&statement_id],
        )
        .await?
        .ok_or_else(|| ReconError::StatementNotFound(statement_id.to_string()))?;
    Ok(serde_json::from_value(row.get(0)).expect("reports we wrote parse"))
}

#[allow(clippy::too_many_arguments)]
async fn match_and_store(
    recon: &Recon,
    statement_id: Uuid,
    record: &tally_store::AccountRecord,
    statement: &Statement,
    reference: &str,
    rules: &MatchRules,
    actor: &str,
) -> Result<StatementReport, ReconError> {
    let started_at = to_system_time(recon.store().now());
    let scale = record.scale;
    let account_id = record.account.id.0;
    let booking = statement.entries.iter().map(|e| e.booking_date);
    let first = booking.clone().chain(statement.opening.map(|b| b.date)).min();
    let last = booking.chain(statement.closing.map(|b| b.date)).max();
    let window = time::Duration::days(i64::from(rules.date_window_days));
    let (ledger, ids) = match (first, last) {
        (Some(first), Some(last)) => journal_entries(recon, account_id, first - window, last + window).await?,
        _ => (Vec::new(), Vec::new()),
    };
    let outcome = tally_statement::match_entries(&statement.entries, &ledger, rules);

    let mut findings = Vec::new();
    let finding =
        |check: &str, subject: String, transfer: Option<String>, found: Option<i128>, detail: String| Finding {
            check: check.to_owned(),
            subject,
            account_id: Some(account_id.to_string()),
            transfer_id: transfer,
            currency: Some(record.account.currency.clone()),
            expected: None,
            found: found.map(|v| format_amount(v, scale)),
            difference: None,
            detail,
        };
    for &i in &outcome.unmatched_statement {
        let e = &statement.entries[i];
        findings.push(finding(
            "unmatched_in_statement",
            e.location.clone(),
            None,
            Some(e.amount),
            format!(
                "{} on {}: {} {}; no journal entry of the account matches it",
                e.location,
                format_day(e.booking_date),
                e.reference.as_deref().unwrap_or("(no reference)"),
                e.counterparty.as_deref().unwrap_or("")
            ),
        ));
    }
    let in_period = |d: Date| first.is_some_and(|f| d >= f) && last.is_some_and(|l| d <= l);
    for &i in &outcome.unmatched_ledger {
        let l = &ledger[i];
        if !in_period(l.date) {
            continue;
        }
        findings.push(finding(
            "unmatched_in_tally",
            l.transfer_id.clone(),
            Some(l.transfer_id.clone()),
            Some(l.amount),
            format!(
                "transfer {} on {} ({}) is not on the statement",
                l.transfer_id,
                format_day(l.date),
                l.reference.as_deref().unwrap_or("no reference")
            ),
        ));
    }
    let mut balances = Vec::new();
    for (which, point) in [("opening", statement.opening), ("closing", statement.closing)] {
        let Some(point) = point else { continue };
        let Some(tally) = balance_on(recon, account_id, point.date, which == "opening").await? else { continue };
        let difference = point.amount - tally;
        balances.push(BalanceComparison {
            which: which.to_owned(),
            date: format_day(point.date),
            statement: format_amount(point.amount, scale),
            tally: format_amount(tally, scale),
            difference: format_amount(difference, scale),
        });
        if difference != 0 {
            findings.push(Finding {
                expected: Some(format_amount(tally, scale)),
                difference: Some(format_amount(difference, scale)),
                ..finding(
                    "balance_break",
                    format!("{which} {}", format_day(point.date)),
                    None,
                    Some(point.amount),
                    format!(
                        "the statement's {which} balance on {} is {}; Tally's is {}",
                        format_day(point.date),
                        format_amount(point.amount, scale),
                        format_amount(tally, scale)
                    ),
                )
            });
        }
    }
    let matches: Vec<MatchLine> = outcome
        .matches
        .iter()
        .map(|m| MatchLine {
            rule: serde_json::to_value(m.rule).expect("serializes").as_str().unwrap_or("").to_owned(),
            statement_entries: m.statement_entries.iter().map(|&i| statement.entries[i].location.clone()).collect(),
            transfer_ids: m.ledger_entries.iter().map(|&i| ids[i].to_string()).collect(),
            amount: format_amount(m.statement_entries.iter().map(|&i| statement.entries[i].amount).sum(), scale),
            difference: format_amount(m.difference, scale),
        })
        .collect();
    let status = if findings.is_empty() { RunStatus::Clean } else { RunStatus::Findings };
    let run_id = Uuid::now_v7();
    let report = StatementReport {
        run_id: run_id.to_string(),
        statement: statement_id.to_string(),
        statement_ref: reference.to_owned(),
        format: statement.format.as_str().to_owned(),
        account_id: account_id.to_string(),
        account_code: record.code.clone(),
        currency: record.account.currency.clone(),
        period_from: first.map(format_day),
        period_to: last.map(format_day),
        started_at: crate::eod::rfc3339(started_at),
        finished_at: crate::eod::rfc3339(to_system_time(recon.store().now())),
        actor: actor.to_owned(),
        status,
        statement_entries: i64::try_from(statement.entries.len()).expect("bounded"),
        ledger_entries: i64::try_from(ledger.iter().filter(|l| in_period(l.date)).count()).expect("bounded"),
        matched: i64::try_from(outcome.matches.iter().map(|m| m.statement_entries.len()).sum::<usize>())
            .expect("bounded"),
        unmatched_statement: i64::try_from(outcome.unmatched_statement.len()).expect("bounded"),
        unmatched_ledger: i64::try_from(findings.iter().filter(|f| f.check == "unmatched_in_tally").count())
            .expect("bounded"),
        balances,
        matches,
        findings,
    };
    let mut client = recon.client().await?;
    let db_tx = client.transaction().await?;
    let total = i64::try_from(report.findings.len()).expect("bounded");
    db_tx
        .execute(
            "INSERT INTO reconciliation_runs (id, kind, statement_id, status, started_at, finished_at, actor, findings, report)
             VALUES ($1, 'statement', $2, $3, $4, $5::text::timestamptz, $6, $7, $8)",
            &[
                &run_id,
                &statement_id,
                &status.as_str(),
                &started_at,
                &report.finished_at,
                &actor,
                &total,
                &serde_json::to_value(&report).expect("serializes"),
            ],
        )
        .await?;
    let entry = AuditEntry {
        actor,
        action: "reconciliation.statement",
        event_type: Some("reconciliation.finished".into()),
        entity_type: "reconciliation",
        entity_id: run_id.to_string(),
        before: None,
        after: json!({"statement_id": statement_id, "status": status.as_str(), "matched": report.matched,
                      "unmatched_statement": report.unmatched_statement, "unmatched_ledger": report.unmatched_ledger}),
    };
    append(&db_tx, &[entry]).await?;
    tally_store::commit_transaction(db_tx).await?;
    Ok(report)
}

/// The account's posted journal entries on the ledger days `first..=last`, signed from its side.
async fn journal_entries(
    recon: &Recon,
    account_id: Uuid,
    first: Date,
    last: Date,
) -> Result<(Vec<LedgerEntry>, Vec<Uuid>), ReconError> {
    let mut client = recon.client().await?;
    let db_tx = crate::read_snapshot(&mut client).await?;
    let from = days::bounds_in(&db_tx, first).await?.starts_at;
    let until = days::bounds_in(&db_tx, last).await?.ends_at;
    let rows = db_tx
        .query(
            "SELECT t.id, (((t.created_at AT TIME ZONE s.time_zone) - s.cutoff::interval)::date + 1)::text,
                    CASE WHEN t.credit_account_id = $1 THEN t.amount ELSE -t.amount END, t.reference,
                    coalesce(t.metadata->>'counterparty', o.code)
             FROM transfers t CROSS JOIN ledger_day_settings s
             LEFT JOIN accounts o ON o.id = CASE WHEN t.credit_account_id = $1 THEN t.debit_account_id ELSE t.credit_account_id END
             WHERE (t.debit_account_id = $1 OR t.credit_account_id = $1) AND t.created_at >= $2 AND t.created_at < $3
               AND t.kind IN ('posted', 'post_pending', 'reversal')
             ORDER BY t.seq LIMIT $4",
            &[&account_id, &from, &until, &(LEDGER_ENTRIES_MAX + 1)],
        )
        .await?;
    db_tx.commit().await?;
    if rows.len() as i64 > LEDGER_ENTRIES_MAX {
        return Err(ReconError::StatementRulesInvalid(format!(
            "more than {LEDGER_ENTRIES_MAX} journal entries fall in the statement's period and window"
        )));
    }
    let mut entries = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    for row in rows {
        let id: Uuid = row.get(0);
        let amount: Decimal = row.get(2);
        ids.push(id);
        entries.push(LedgerEntry {
            transfer_id: id.to_string(),
            date: days::parse_day(row.get(1))?,
            amount: amount.mantissa(),
            reference: row.get(3),
            counterparty: row.get(4),
        });
    }
    Ok((entries, ids))
}

/// Tally's balance (credits minus debits, posted) when `day` began (`opening`) or ended; `None`
/// when that moment is still to come.
async fn balance_on(recon: &Recon, account_id: Uuid, day: Date, opening: bool) -> Result<Option<i128>, ReconError> {
    let bounds = days::bounds(recon, day).await?;
    let moment: SystemTime = if opening { bounds.starts_at } else { bounds.ends_at } - Duration::from_micros(1);
    let at: Timestamp = from_system_time(moment);
    if at > recon.store().now() {
        return Ok(None);
    }
    Ok(Some(balance::balance_as_of(recon, account_id, at).await?.balance()))
}
