//! Output for people (tables) or for programs (`--json`). Amounts are always decimal strings in
//! the currency's scale, never floats.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};
use std::collections::HashMap;
use tally_core::{AccountId, Transfer, TransferId, TransferResult, format_amount};
use tally_recon::Report;
use tally_server::views::time;
use tally_store::{AccountRecord, HistoryEntry};

pub struct Output {
    pub json: bool,
}

pub fn account_json(record: &AccountRecord) -> Value {
    let a = &record.account;
    let s = record.scale;
    json!({
        "id": a.id, "ledger": a.ledger.0, "code": record.code, "currency": a.currency, "status": a.status.as_str(),
        "balance": format_amount(a.balance(), s), "available": format_amount(a.available(), s),
        "debits_posted": format_amount(a.debits_posted, s), "credits_posted": format_amount(a.credits_posted, s),
        "debits_pending": format_amount(a.debits_pending, s), "credits_pending": format_amount(a.credits_pending, s),
        "balance_rule": match a.rule {
            tally_core::BalanceRule::NoOverdraft => json!({"kind": "no_overdraft"}),
            tally_core::BalanceRule::OverdraftLimit(l) => json!({"kind": "overdraft_limit", "limit": format_amount(l, s)}),
            tally_core::BalanceRule::Unrestricted => json!({"kind": "unrestricted"}),
        },
        "version": a.version, "metadata": record.metadata,
        "created_at": time(record.created_at), "updated_at": time(record.updated_at),
    })
}

pub fn transfer_json(result: TransferResult, t: &Transfer, scale: u8, names: &Names) -> Value {
    json!({
        "result": result.code(), "id": t.id, "ledger": t.ledger.0, "kind": t.kind.as_str(), "status": t.status.as_str(),
        "from": t.debit_account_id, "from_code": names.code(t.debit_account_id),
        "to": t.credit_account_id, "to_code": names.code(t.credit_account_id),
        "amount": format_amount(t.amount, scale),
        "currency": t.currency, "related_id": t.related_id, "timeout_seconds": t.timeout_seconds,
        "expires_at": t.expires_at.map(time), "reference": t.reference, "metadata": t.metadata,
        "created_at": time(t.created_at), "completed_at": t.completed_at.map(time),
    })
}

/// Account codes by id, so that output names an account by its code beside its id.
#[derive(Debug, Default)]
pub struct Names(HashMap<AccountId, String>);

impl Names {
    pub fn new(codes: HashMap<AccountId, String>) -> Names {
        Names(codes)
    }

    pub fn code(&self, id: AccountId) -> Option<&str> {
        self.0.get(&id).map(String::as_str)
    }

    /// `code (id)`, or the id of an account without a code.
    pub fn label(&self, id: AccountId) -> String {
        match self.code(id) {
            Some(code) => format!("{code} ({id})"),
            None => id.to_string(),
        }
    }
}

pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(header.iter().copied());
    table
}

/// The exit status of a request malformed on the command line (README: "2, the request is
/// malformed"): nothing was sent, nothing was written.
pub const EXIT_MALFORMED: i32 = 2;

/// A malformed value on the command line, named by its flag: `--amount 1.5: has more than 0
/// decimal places`. `main` exits with `EXIT_MALFORMED` for it.
#[derive(Debug)]
pub struct Malformed {
    pub flag: &'static str,
    pub value: String,
    pub problem: String,
}

impl Malformed {
    /// An amount the core refused to parse; its message already names the amount.
    pub fn amount(flag: &'static str, value: &str, error: &tally_core::AmountError) -> Malformed {
        let message = error.to_string();
        let problem = message.strip_prefix("amount ").unwrap_or(&message).to_owned();
        Malformed { flag, value: value.to_owned(), problem }
    }
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.value.as_str() {
            "" => write!(f, "{}: {}", self.flag, self.problem),
            value => write!(f, "{} {value}: {}", self.flag, self.problem),
        }
    }
}

impl std::error::Error for Malformed {}

/// An error and its causes as one line, each said once: `context: error: cause`. A library error
/// whose message already includes its cause (thiserror's `"...: {0}"` with a `#[from]` source)
/// would otherwise print that cause twice; a cause whose text the line already holds is left out.
pub fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The exit status of a command whose reader closed its output early, as a shell reports a tool
/// that the closed pipe ended (128 + SIGPIPE).
pub const EXIT_CLOSED_PIPE: i32 = 141;

/// Prints one line of a command's answer on standard output. A reader that has gone away
/// (`tally demo | head -3`) ends the command quietly, as it ends any Unix tool; `println!`
/// would panic instead.
pub fn say(line: impl std::fmt::Display) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(EXIT_CLOSED_PIPE);
        }
        eprintln!("error: writing the answer: {error}");
        std::process::exit(1);
    }
}

impl Output {
    pub fn note(&self, text: &str) {
        if !self.json {
            eprintln!("note: {text}");
        }
    }

    pub fn value(&self, value: &Value, human: impl FnOnce() -> String) {
        if self.json {
            say(value);
        } else {
            say(human());
        }
    }

    pub fn account(&self, record: &AccountRecord) {
        let value = account_json(record);
        self.value(&value, || {
            let mut table = table(&["field", "value"]);
            for key in [
                "id",
                "ledger",
                "code",
                "currency",
                "status",
                "balance",
                "available",
                "balance_rule",
                "version",
                "created_at",
            ] {
                let text = match &value[key] {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".into(),
                    other => other.to_string(),
                };
                table.add_row(vec![key.to_owned(), text]);
            }
            table.to_string()
        });
    }

    pub fn ledgers(&self, records: &[tally_store::LedgerRecord]) {
        let values: Vec<Value> = records
            .iter()
            .map(|l| {
                json!({"id": l.id.0, "code": l.code, "name": l.name, "metadata": l.metadata,
                       "created_at": time(l.created_at), "created_by": l.created_by})
            })
            .collect();
        self.value(&json!({"ledgers": values}), || {
            let mut table = table(&["id", "code", "name", "created_at", "created_by"]);
            for v in &values {
                let cell = |k: &str| v[k].as_str().map_or_else(|| v[k].to_string(), str::to_owned);
                table.add_row(["id", "code", "name", "created_at", "created_by"].map(cell));
            }
            table.to_string()
        });
    }

    pub fn accounts(&self, records: &[AccountRecord]) {
        let values: Vec<Value> = records.iter().map(account_json).collect();
        self.value(&json!({"accounts": values}), || {
            let mut table = table(&["id", "ledger", "code", "currency", "status", "balance", "available", "version"]);
            for v in &values {
                let cell = |k: &str| v[k].as_str().map_or_else(|| v[k].to_string(), str::to_owned);
                table.add_row(
                    ["id", "ledger", "code", "currency", "status", "balance", "available", "version"].map(cell),
                );
            }
            table.to_string()
        });
    }

    pub fn balance(&self, record: &AccountRecord) {
        let a = &record.account;
        let s = record.scale;
        let value = json!({
            "account": a.id, "code": record.code, "currency": a.currency,
            "balance": format_amount(a.balance(), s), "available": format_amount(a.available(), s),
            "pending_debits": format_amount(a.debits_pending, s), "pending_credits": format_amount(a.credits_pending, s),
            "version": a.version,
        });
        self.value(&value, || {
            let name = record.code.clone().unwrap_or_else(|| a.id.to_string());
            format!(
                "{name}: balance {} {}, available {} (held {}, incoming {}), version {}",
                format_amount(a.balance(), s),
                a.currency,
                format_amount(a.available(), s),
                format_amount(a.debits_pending, s),
                format_amount(a.credits_pending, s),
                a.version
            )
        });
    }

    pub fn transfer(&self, result: TransferResult, transfer: &Transfer, scale: u8, names: &Names) {
        let value = transfer_json(result, transfer, scale, names);
        self.value(&value, || {
            let replay = if result == TransferResult::Exists { " (already applied: idempotent replay)" } else { "" };
            format!(
                "{} {} {} {} -> {} [{}]{replay}\n  id {}",
                transfer.kind.as_str(),
                format_amount(transfer.amount, scale),
                transfer.currency,
                names.label(transfer.debit_account_id),
                names.label(transfer.credit_account_id),
                transfer.status.as_str(),
                transfer.id
            )
        });
    }

    /// A transfer a rule refused: its code, and `detail` (what exactly did not fit) when known.
    pub fn rejection(&self, id: TransferId, result: TransferResult, detail: Option<&str>) {
        let message = detail.unwrap_or_else(|| tally_server::error::describe(result));
        let value = json!({"result": result.code(), "id": id, "transient": result.transient(), "message": message});
        if self.json {
            say(value);
        } else {
            eprintln!("rejected: {} (transfer {id}): {message}", result.code());
        }
    }

    pub fn history(&self, record: &AccountRecord, entries: &[HistoryEntry], limit: i64, names: &Names) {
        let s = record.scale;
        let values: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({
                    "seq": e.seq, "type": e.direction, "transfer_id": e.transfer.id, "kind": e.transfer.kind.as_str(),
                    "other_account": e.other_account_id, "other_account_code": names.code(e.other_account_id),
                    "amount": format_amount(e.transfer.amount, s),
                    "status": e.transfer.status.as_str(), "created_at": time(e.transfer.created_at),
                    "actor": e.actor,
                })
            })
            .collect();
        let full_page = i64::try_from(entries.len()).is_ok_and(|n| n >= limit);
        let next = entries.last().map(|e| e.seq).filter(|_| full_page);
        self.value(&json!({"entries": values, "next_before": next}), || {
            let mut table = table(&["seq", "type", "kind", "amount", "other account", "status", "created_at"]);
            for (entry, v) in entries.iter().zip(&values) {
                let cell = |k: &str| v[k].as_str().map_or_else(|| v[k].to_string(), str::to_owned);
                let mut row = ["seq", "type", "kind", "amount", "other_account", "status", "created_at"].map(cell);
                row[4] = names.label(entry.other_account_id);
                table.add_row(row);
            }
            match next {
                Some(seq) => format!("{table}\nolder entries: --before {seq}"),
                _ => table.to_string(),
            }
        });
    }

    pub fn reconciliation(&self, report: &Report) {
        self.value(&serde_json::to_value(report).expect("report serializes"), || {
            let mut summary = table(&["ledger", "currency", "debits posted", "credits posted"]);
            for t in &report.totals {
                summary.add_row(vec![
                    t.ledger_code.clone(),
                    t.currency.clone(),
                    t.debits_posted.clone(),
                    t.credits_posted.clone(),
                ]);
            }
            let verdict = if report.is_clean() { "CLEAN: the ledger agrees with itself" } else { "FINDINGS:" };
            let mut text = format!(
                "{} accounts, {} journal entries, {} events\n{summary}\n{verdict}",
                report.accounts, report.transfers, report.events
            );
            if !report.is_clean() {
                let mut findings = table(&["check", "subject", "ledger", "detail"]);
                for f in &report.findings {
                    let ledger = f.ledger.map(|l| l.to_string()).unwrap_or_default();
                    findings.add_row(vec![f.check.to_owned(), f.subject.clone(), ledger, f.detail.clone()]);
                }
                text.push_str(&format!("\n{findings}"));
            }
            text
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error in the shape that repeats itself: its message includes its source's.
    #[derive(Debug)]
    struct Wrapping(Inner);

    impl std::fmt::Display for Wrapping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "statement refused: {}", self.0)
        }
    }

    impl std::error::Error for Wrapping {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[derive(Debug)]
    struct Inner;

    impl std::fmt::Display for Inner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("line 21: malformed statement: missing :25:")
        }
    }

    impl std::error::Error for Inner {}

    #[test]
    fn an_error_line_says_each_cause_once() {
        let error = anyhow::Error::from(Wrapping(Inner)).context("importing file.sta");
        assert_eq!(
            error_line(&error),
            "importing file.sta: statement refused: line 21: malformed statement: missing :25:"
        );
        let plain = anyhow::anyhow!("no such account").context("--account");
        assert_eq!(error_line(&plain), "--account: no such account");
    }
}
