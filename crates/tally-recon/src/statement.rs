//! Bank statement files: import a file of one or many statements, map each statement's bank
//! account to a Tally account, match each statement's entries against that account's journal,
//! compare its balances with Tally's, and store one report per statement and one for the file.
//!
//! The statement and Tally agree on signs: the statement's credits (money in) are credits to the
//! Tally account, its debits are debits, and a balance is credits minus debits. Parsing and
//! matching are `tally_statement`'s (pure); this module does the rest:
//! - **Mapping.** Each statement names its bank account (camt `Acct`, MT940 `:25:`). A mapping
//!   (bank account → Tally account, by id or code) says which Tally account mirrors it; bank
//!   accounts are compared normalised (no spaces, upper case, no leading `/`, and by the IBAN
//!   inside `NL91ABNA0417164300EUR`). Without a mapping entry, `account` serves the file's one
//!   bank account; a file naming several bank accounts then needs the mapping
//!   (`statement_mapping_ambiguous`). A statement whose bank account maps to nothing is
//!   reported as unmapped (`unmapped_statement`) and not matched; a file where nothing maps is
//!   refused, since importing it would record nothing.
//! - **Idempotent import.** A statement is recognised by its account, format and reference
//!   (camt `Stmt/Id`; MT940 `:20:/:28C:/closing date`, since many banks repeat `:20:` and
//!   `:28C:` every day) and by its content (SHA-256 of what it says, not of where it stood):
//!   importing the same statement again, alone or inside a later, overlapping export, writes
//!   nothing for it (`already_imported`). Another statement under the same reference is refused
//!   (`statement_exists_with_different_content`). The same file again writes nothing and answers
//!   its last report, unless a mapping now covers a statement it left unmapped. A file that does
//!   not parse, or maps a statement to an account of another currency, is refused whole, and
//!   nothing is written.
//! - **Statements that do not add up** (opening plus entries is not the closing balance: it
//!   happens in real exports) are imported and matched, with a finding
//!   (`statement_balance_difference`) that gives the difference; pages whose balances do not
//!   chain give `page_chain_break`.
//! - **Journal entries** of each account, posted kinds only (holds do not reach a bank), dated by
//!   their ledger day, from `date_window_days` before the account's first statement day to as
//!   many after its last. Each carries its reference and its counterparty: the transfer's
//!   `metadata.counterparty` if any, else the other account's code, and
//!   `metadata.counterparty_iban`. The statements of one account are matched in file order, each
//!   journal entry used by at most one; journal entries that match nothing are reported by the
//!   statement whose period holds their day (the others belong to neighbouring statements).
//! - **Balances.** The opening balance on date D is compared with Tally's balance when D began,
//!   the closing balance on date D with Tally's when D ended (point-in-time balances); a date
//!   whose day has not ended yet is not compared. Many banks date an MT940 opening balance
//!   (`:60F:`) with the previous statement's closing day: when that day lies before the
//!   statement's first entry (or its closing day), the opening balance is the one at the start
//!   of the next day, and the statement's period starts there.
//!
//! Everything one import writes (file, statements, entries, reports, audit rows) commits in one
//! SQL transaction. The import plans and matches before it opens that transaction, and checks the
//! plan again inside it under advisory locks (per account and per file): a write transaction
//! never waits for a pool connection or anything else PostgreSQL cannot see.

use crate::Recon;
use crate::days::{self, format_day};
use crate::report::{
    BalanceComparison, FileReport, FileStatement, Finding, MatchLine, NoteLine, RunStatus, StatementReport,
};
use crate::{ReconError, balance};
use rust_decimal::Decimal;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};
use tally_core::{Timestamp, format_amount};
use tally_statement::{
    BalancePoint, Format, LedgerEntry, MatchOutcome, MatchRules, Note, ParseOptions, Scales, Statement, StatementError,
    StatementFile, normalize_account,
};
use tally_store::convert::{from_system_time, to_system_time};
use tally_store::journal::{AuditEntry, append};
use time::Date;
use uuid::Uuid;

/// The most journal entries the statements of one account are matched against.
pub const LEDGER_ENTRIES_MAX: i64 = 200_000;
/// The widest date window for matching, in days.
pub const DATE_WINDOW_DAYS_MAX: u32 = 31;
/// The most entries one mapping may have.
pub const MAPPINGS_MAX: usize = 1_000;
/// The longest bank account identifier or Tally account in a mapping entry, in bytes.
pub const MAPPING_TEXT_LEN_MAX: usize = 256;
/// The longest statement reference (the `statements` table's CHECK).
pub const STATEMENT_REF_LEN_MAX: usize = 256;

const _: () = assert!(MAPPINGS_MAX >= 1 && MAPPINGS_MAX <= tally_statement::STATEMENTS_PER_FILE_MAX);

/// How to read, map and match a file.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `None`: detected (camt or MT940; CSV must be named).
    pub format: Option<Format>,
    /// For CSV: the column layout and what the file does not say.
    pub csv: Option<(tally_statement::CsvLayout, tally_statement::CsvStatementInfo)>,
    pub rules: MatchRules,
    /// The Tally account (id or code) for the file's bank account, when its statements not named
    /// in `mapping` all name one.
    pub account: Option<String>,
    /// Bank account (IBAN or `:25:` value) → Tally account (id or code).
    pub mapping: Vec<(String, String)>,
    /// The file's character set as a label (`iso-8859-2`); `None`: UTF-8, else detected.
    pub encoding: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    pub file_id: Uuid,
    /// False when nothing was written: the same file had been imported before, and no statement
    /// of it is new.
    pub created: bool,
    pub report: FileReport,
}

impl ImportOutcome {
    /// Tally's id of the file's statement, when the file holds exactly one that is recorded.
    pub fn only_statement(&self) -> Option<Uuid> {
        match self.report.statements.as_slice() {
            [only] => only.statement.as_deref().and_then(|id| Uuid::parse_str(id).ok()),
            _ => None,
        }
    }
}

/// One `BANK_ACCOUNT=TALLY_ACCOUNT` entry, as a `--map` flag or a line of a mapping file.
pub fn parse_mapping_entry(text: &str) -> Result<(String, String), ReconError> {
    let invalid = |reason: &str| {
        let shown: String = text.chars().take(64).collect();
        ReconError::StatementMappingInvalid(format!("{shown:?}: {reason}"))
    };
    let (bank, tally) = text.split_once('=').ok_or_else(|| invalid("expected BANK_ACCOUNT=TALLY_ACCOUNT"))?;
    let (bank, tally) = (bank.trim(), tally.trim());
    if bank.is_empty() || tally.is_empty() {
        return Err(invalid("both the bank account and the Tally account are needed"));
    }
    if bank.len() > MAPPING_TEXT_LEN_MAX || tally.len() > MAPPING_TEXT_LEN_MAX {
        return Err(invalid(&format!("longer than {MAPPING_TEXT_LEN_MAX} bytes")));
    }
    Ok((bank.to_owned(), tally.to_owned()))
}

/// A mapping file: one `BANK_ACCOUNT=TALLY_ACCOUNT` per line; blank lines and lines starting
/// with `#` are skipped.
pub fn parse_mapping_text(text: &str) -> Result<Vec<(String, String)>, ReconError> {
    let mut mapping = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if mapping.len() >= MAPPINGS_MAX {
            return Err(ReconError::StatementMappingInvalid(format!("more than {MAPPINGS_MAX} entries")));
        }
        let entry = parse_mapping_entry(line).map_err(|error| match error {
            ReconError::StatementMappingInvalid(reason) => {
                ReconError::StatementMappingInvalid(format!("line {}: {reason}", index + 1))
            }
            other => other,
        })?;
        mapping.push(entry);
    }
    Ok(mapping)
}

/// The bank account keys a mapping entry is found by (see `Statement::bank_account_keys`).
fn entry_keys(bank_account: &str) -> Vec<String> {
    let statement = Statement {
        format: Format::Csv,
        statement_id: String::new(),
        account: bank_account.to_owned(),
        currency: None,
        sequence: None,
        opening: None,
        closing: None,
        entries: Vec::new(),
        pages: 1,
        notes: Vec::new(),
    };
    statement.bank_account_keys()
}

/// Where each statement goes: the Tally account it maps to, or none.
struct Mapped {
    /// Per statement, in file order: an index into `accounts`.
    targets: Vec<Option<usize>>,
    accounts: Vec<tally_store::AccountRecord>,
    /// The code of each of their ledgers, by id.
    ledger_codes: HashMap<i32, String>,
    /// Mapping entries that named no bank account of the file.
    unused: Vec<String>,
}

impl Mapped {
    /// The ledger of `accounts[index]`: a statement mapped to it belongs there.
    fn ledger_of(&self, index: usize) -> i32 {
        self.accounts[index].account.ledger.0
    }
}

async fn map_statements(recon: &Recon, file: &StatementFile, options: &ImportOptions) -> Result<Mapped, ReconError> {
    if options.mapping.len() > MAPPINGS_MAX {
        return Err(ReconError::StatementMappingInvalid(format!("more than {MAPPINGS_MAX} entries")));
    }
    if options.account.is_none() && options.mapping.is_empty() {
        return Err(ReconError::StatementMappingInvalid(
            "name the Tally account of the file's bank account (--account), or map bank accounts to Tally accounts \
             (--map BANK_ACCOUNT=TALLY_ACCOUNT)"
                .to_owned(),
        ));
    }
    let mut accounts: Vec<tally_store::AccountRecord> = Vec::new();
    let resolve = async |id_or_code: &str, accounts: &mut Vec<tally_store::AccountRecord>| {
        let record = recon.store().require_account(id_or_code).await?;
        match accounts.iter().position(|known| known.account.id == record.account.id) {
            Some(index) => Ok::<usize, ReconError>(index),
            None => {
                accounts.push(record);
                Ok(accounts.len() - 1)
            }
        }
    };
    // Bank account key → (the entry as typed, account index).
    let mut by_key: HashMap<String, (String, usize)> = HashMap::new();
    for (bank, tally) in &options.mapping {
        let index = resolve(tally, &mut accounts).await?;
        for key in entry_keys(bank) {
            if let Some((earlier, other)) = by_key.get(&key)
                && accounts[*other].account.id != accounts[index].account.id
            {
                return Err(ReconError::StatementMappingInvalid(format!(
                    "{bank} and {earlier} are the same bank account, mapped to two Tally accounts"
                )));
            }
            by_key.insert(key, (bank.clone(), index));
        }
    }
    let mut targets: Vec<Option<usize>> = Vec::with_capacity(file.statements.len());
    let mut used: Vec<String> = Vec::new();
    let mut rest: Vec<usize> = Vec::new();
    for (ord, statement) in file.statements.iter().enumerate() {
        let found = statement.bank_account_keys().iter().find_map(|key| by_key.get(key)).cloned();
        match found {
            Some((entry, index)) => {
                used.push(entry);
                targets.push(Some(index));
            }
            None => {
                rest.push(ord);
                targets.push(None);
            }
        }
    }
    if let (Some(account), false) = (&options.account, rest.is_empty()) {
        let mut bank_accounts: Vec<String> =
            rest.iter().map(|ord| normalize_account(&file.statements[*ord].account)).collect();
        bank_accounts.sort();
        bank_accounts.dedup();
        if let [_] = bank_accounts.as_slice() {
            let index = resolve(account, &mut accounts).await?;
            for ord in rest {
                targets[ord] = Some(index);
            }
        } else {
            return Err(ReconError::StatementMappingAmbiguous(format!(
                "the file holds statements of {} bank accounts ({}): say which Tally account mirrors each with \
                 --map BANK_ACCOUNT=TALLY_ACCOUNT",
                bank_accounts.len(),
                bank_accounts.join(", ")
            )));
        }
    }
    if targets.iter().all(Option::is_none) {
        let mut bank_accounts: Vec<&str> = file.statements.iter().map(|s| s.account.as_str()).collect();
        bank_accounts.dedup();
        return Err(ReconError::StatementMappingInvalid(format!(
            "no statement of the file is of a mapped bank account; the file names {}",
            bank_accounts.join(", ")
        )));
    }
    let mut unused: Vec<String> =
        options.mapping.iter().map(|(bank, _)| bank.clone()).filter(|bank| !used.contains(bank)).collect();
    unused.dedup();
    let ids: Vec<i32> = accounts.iter().map(|record| record.account.ledger.0).collect();
    let client = recon.client().await?;
    let ledger_codes = client
        .query("SELECT id, code FROM ledgers WHERE id = ANY($1)", &[&ids])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    Ok(Mapped { targets, accounts, ledger_codes, unused })
}

/// The scales of every currency the ledger knows, for parsing each statement at its own.
async fn currency_scales(recon: &Recon) -> Result<HashMap<String, u8>, ReconError> {
    let client = recon.client().await?;
    let rows = client.query("SELECT code, scale FROM currencies", &[]).await?;
    Ok(rows
        .iter()
        .map(|row| (row.get::<_, String>(0), u8::try_from(row.get::<_, i16>(1)).expect("scale constrained")))
        .collect())
}

/// The reference a statement is recorded under (see the module documentation).
fn statement_ref(statement: &Statement) -> Result<String, ReconError> {
    let reference = match statement.format {
        Format::Mt940 => {
            let closing = statement.closing.map(|b| format_day(b.date)).unwrap_or_default();
            match &statement.sequence {
                Some(sequence) => format!("{}/{sequence}/{closing}", statement.statement_id),
                None => format!("{}/{closing}", statement.statement_id),
            }
        }
        _ => statement.statement_id.clone(),
    };
    if reference.len() > STATEMENT_REF_LEN_MAX {
        return Err(ReconError::Statement(StatementError::TooLarge {
            location: format!("statement {}", reference.chars().take(32).collect::<String>()),
            reason: format!("its reference is longer than {STATEMENT_REF_LEN_MAX} bytes"),
        }));
    }
    Ok(reference)
}

/// SHA-256 of what a statement says: everything but where its entries stood in the file, how it
/// was paged and what the parser noted.
fn content_digest(statement: &Statement) -> Vec<u8> {
    let mut value = serde_json::to_value(statement).expect("statements serialize");
    if let Some(object) = value.as_object_mut() {
        object.remove("pages");
        object.remove("notes");
        if let Some(entries) = object.get_mut("entries").and_then(serde_json::Value::as_array_mut) {
            for entry in entries {
                if let Some(entry) = entry.as_object_mut() {
                    entry.remove("location");
                }
            }
        }
    }
    Sha256::digest(value.to_string().as_bytes()).to_vec()
}

/// What becomes of one statement of the file.
enum Plan {
    Unmapped,
    /// Recorded before with the same content.
    Already {
        id: Uuid,
        account: usize,
    },
    New {
        id: Uuid,
        account: usize,
    },
}

/// Imports a statement file: every statement it holds, mapped, matched and reported.
pub async fn import_file(
    recon: &Recon,
    bytes: &[u8],
    options: &ImportOptions,
    actor: &str,
) -> Result<ImportOutcome, ReconError> {
    if options.rules.date_window_days > DATE_WINDOW_DAYS_MAX || options.rules.amount_tolerance < 0 {
        return Err(ReconError::StatementRulesInvalid(format!(
            "the date window is 0 to {DATE_WINDOW_DAYS_MAX} days and the tolerance not negative"
        )));
    }
    let format = match options.format {
        Some(format) => format,
        None => Format::detect(bytes).ok_or(ReconError::StatementFormatUnknown)?,
    };
    let csv = options.csv.as_ref().map(|(layout, info)| (layout, info));
    if format == Format::Csv && csv.is_none() {
        return Err(ReconError::StatementFormatUnknown);
    }
    let scales = currency_scales(recon).await?;
    // The lookup is a `&dyn Fn`, which is not `Send`: it lives only for the parse, not across an
    // await.
    let file = {
        let lookup = |currency: &str| scales.get(currency).copied();
        let parse_options = ParseOptions { scales: Scales::Lookup(&lookup), encoding: options.encoding.as_deref() };
        tally_statement::parse(format, bytes, &parse_options, csv)?
    };
    let mapped = map_statements(recon, &file, options).await?;
    for (statement, target) in file.statements.iter().zip(&mapped.targets) {
        let Some(index) = target else { continue };
        let account = &mapped.accounts[*index].account;
        if let Some(currency) = &statement.currency
            && *currency != account.currency
        {
            return Err(ReconError::StatementCurrencyMismatch {
                statement: format!("{currency} (statement {} of {})", statement.statement_id, statement.account),
                account: account.currency.clone(),
            });
        }
    }
    let refs = file.statements.iter().map(statement_ref).collect::<Result<Vec<_>, _>>()?;
    let content_digests: Vec<Vec<u8>> = file.statements.iter().map(content_digest).collect();
    let digest: Vec<u8> = Sha256::digest(bytes).to_vec();

    let statements =
        Planned { file: &file, mapped: &mapped, refs: &refs, content_digests: &content_digests, digest: &digest };
    // Plan and match without holding a write transaction (matching reads the journal and
    // balances on connections of its own), then write in one transaction that checks the plan
    // again under the locks: nothing inside it waits on anything PostgreSQL cannot see.
    for _ in 0..IMPORT_ATTEMPTS_MAX {
        let (existing_file, plans) = {
            let client = recon.client().await?;
            plan_statements(&client, &statements).await?
        };
        // The same file with nothing new to record: its last report, and nothing written.
        let nothing_new = !plans.iter().any(|plan| matches!(plan, Plan::New { .. }));
        if nothing_new && let Some(file_id) = existing_file {
            let client = recon.client().await?;
            let report = latest_file_report(&client, file_id).await?;
            let report = report.ok_or_else(|| ReconError::StatementNotFound(file_id.to_string()))?;
            return Ok(ImportOutcome { file_id, created: false, report });
        }
        let started_at = to_system_time(recon.store().now());
        let file_id = existing_file.unwrap_or_else(Uuid::now_v7);
        let reports = match_new_statements(recon, &statements, &plans, &options.rules, file_id, actor).await?;
        let report = build_file_report(&FileContext {
            file: &file,
            scales: &scales,
            file_id,
            digest: &digest,
            refs: &refs,
            plans: &plans,
            mapped: &mapped,
            reports,
            started_at,
            finished_at: to_system_time(recon.store().now()),
            actor,
        });

        let mut client = recon.client().await?;
        let db_tx = client.transaction().await?;
        // One writer per file and per account at a time; in a fixed order, so that two imports
        // cannot wait on each other.
        let mut lock_keys: Vec<String> = mapped.accounts.iter().map(|record| record.account.id.0.to_string()).collect();
        lock_keys.sort();
        lock_keys.push(hex_of(&digest));
        for key in &lock_keys {
            db_tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))", &[key]).await?;
        }
        let (file_now, plans_now) = plan_statements(&db_tx, &statements).await?;
        if file_now != existing_file || !same_plans(&plans, &plans_now) {
            // Another import recorded some of these statements meanwhile: plan again.
            db_tx.rollback().await?;
            continue;
        }
        if existing_file.is_none() {
            insert_file(&db_tx, file_id, &file, &digest, bytes.len(), started_at, actor).await?;
        }
        for (ord, plan) in plans.iter().enumerate() {
            if let Plan::New { id, account } = plan {
                let row = StatementRow {
                    id: *id,
                    file_id,
                    ord,
                    reference: &refs[ord],
                    digest: &digest,
                    content_digest: &content_digests[ord],
                    account_id: mapped.accounts[*account].account.id.0,
                    ledger: mapped.ledger_of(*account),
                    imported_at: started_at,
                };
                insert_statement(&db_tx, &row, &file.statements[ord], actor).await?;
            }
        }
        for statement_report in report.statements.iter().filter_map(|statement| statement.report.as_ref()) {
            store_statement_run(&db_tx, statement_report, actor).await?;
        }
        store_file_run(&db_tx, &report, file_id, started_at, actor).await?;
        tally_store::commit_transaction(db_tx).await?;
        return Ok(ImportOutcome { file_id, created: true, report });
    }
    Err(ReconError::RunInProgress(format!("an import of the statements of file {}", hex_of(&digest))))
}

/// How often an import plans again when another import recorded some of its statements
/// between its plan and its write.
const IMPORT_ATTEMPTS_MAX: usize = 3;
const _: () = assert!(IMPORT_ATTEMPTS_MAX >= 2 && IMPORT_ATTEMPTS_MAX <= 10);

/// A parsed file with what identifies each statement.
struct Planned<'a> {
    file: &'a StatementFile,
    mapped: &'a Mapped,
    refs: &'a [String],
    content_digests: &'a [Vec<u8>],
    digest: &'a [u8],
}

/// The file's row, if it was imported before, and what becomes of each statement.
async fn plan_statements(
    client: &impl deadpool_postgres::GenericClient,
    planned: &Planned<'_>,
) -> Result<(Option<Uuid>, Vec<Plan>), ReconError> {
    let (file, refs, content_digests) = (planned.file, planned.refs, planned.content_digests);
    let existing_file: Option<Uuid> = client
        .query_opt("SELECT id FROM statement_files WHERE digest = $1", &[&planned.digest])
        .await?
        .map(|row| row.get(0));
    let targets = &planned.mapped.targets;
    let mut plans: Vec<Plan> = Vec::with_capacity(file.statements.len());
    for (ord, target) in targets.iter().enumerate() {
        let Some(index) = *target else {
            plans.push(Plan::Unmapped);
            continue;
        };
        let account_id = planned.mapped.accounts[index].account.id.0;
        // Earlier in this same file: the same statement twice is one statement.
        let earlier = (0..ord).find(|before| {
            targets[*before] == Some(index)
                && refs[*before] == refs[ord]
                && file.statements[*before].format == file.statements[ord].format
        });
        if let Some(before) = earlier {
            if content_digests[before] != content_digests[ord] {
                return Err(ReconError::StatementExistsWithDifferentContent(refs[ord].clone()));
            }
            let id = match plans[before] {
                Plan::Already { id, .. } | Plan::New { id, .. } => id,
                Plan::Unmapped => unreachable!("a mapped statement has a plan with an id"),
            };
            plans.push(Plan::Already { id, account: index });
            continue;
        }
        let row = client
            .query_opt(
                "SELECT id, content_digest = $4 OR (content_digest IS NULL AND digest = $5)
                 FROM statements
                 WHERE account_id = $1 AND ledger_id = $6
                   AND ((format = $2 AND statement_ref = $3) OR (file_id IS NULL AND digest = $5))
                 ORDER BY (format = $2 AND statement_ref = $3) DESC LIMIT 1",
                &[
                    &account_id,
                    &file.statements[ord].format.as_str(),
                    &refs[ord],
                    &content_digests[ord],
                    &planned.digest,
                    &planned.mapped.ledger_of(index),
                ],
            )
            .await?;
        match row {
            Some(row) if row.get::<_, bool>(1) => plans.push(Plan::Already { id: row.get(0), account: index }),
            Some(_) => return Err(ReconError::StatementExistsWithDifferentContent(refs[ord].clone())),
            None => plans.push(Plan::New { id: Uuid::now_v7(), account: index }),
        }
    }
    Ok((existing_file, plans))
}

/// Whether two plans of the same file agree (new statements' ids are made anew by each plan).
fn same_plans(before: &[Plan], now: &[Plan]) -> bool {
    before.len() == now.len()
        && before.iter().zip(now).all(|pair| match pair {
            (Plan::Unmapped, Plan::Unmapped) => true,
            (Plan::Already { id: a, account: x }, Plan::Already { id: b, account: y }) => a == b && x == y,
            (Plan::New { account: x, .. }, Plan::New { account: y, .. }) => x == y,
            _ => false,
        })
}

/// The reports of the statements `plans` records anew: the statements of each account matched
/// together, in file order.
async fn match_new_statements(
    recon: &Recon,
    planned: &Planned<'_>,
    plans: &[Plan],
    rules: &MatchRules,
    file_id: Uuid,
    actor: &str,
) -> Result<Vec<Option<StatementReport>>, ReconError> {
    let mut reports: Vec<Option<StatementReport>> = vec![None; plans.len()];
    for (index, record) in planned.mapped.accounts.iter().enumerate() {
        let new: Vec<(usize, Uuid)> = plans
            .iter()
            .enumerate()
            .filter_map(|(ord, plan)| match plan {
                Plan::New { id, account } if *account == index => Some((ord, *id)),
                _ => None,
            })
            .collect();
        if new.is_empty() {
            continue;
        }
        let ledger_code = planned.mapped.ledger_codes.get(&record.account.ledger.0).map_or("", String::as_str);
        let context = AccountContext { record, ledger_code, rules, file_id, actor };
        let statements: Vec<(Uuid, &Statement, &str)> =
            new.iter().map(|(ord, id)| (*id, &planned.file.statements[*ord], planned.refs[*ord].as_str())).collect();
        let account_reports = match_account(recon, &context, &statements).await?;
        for ((ord, _), report) in new.into_iter().zip(account_reports) {
            reports[ord] = Some(report);
        }
    }
    Ok(reports)
}

/// Imports a file whose statements all belong to `account` (id or code): [`import_file`] with
/// that account.
pub async fn import_statement(
    recon: &Recon,
    account: &str,
    bytes: &[u8],
    options: &ImportOptions,
    actor: &str,
) -> Result<ImportOutcome, ReconError> {
    let options = ImportOptions { account: Some(account.to_owned()), ..options.clone() };
    import_file(recon, bytes, &options, actor).await
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn notes_json(notes: &[Note]) -> serde_json::Value {
    serde_json::to_value(notes).expect("notes serialize")
}

async fn insert_file(
    db_tx: &deadpool_postgres::Transaction<'_>,
    file_id: Uuid,
    file: &StatementFile,
    digest: &[u8],
    size: usize,
    imported_at: SystemTime,
    actor: &str,
) -> Result<(), ReconError> {
    db_tx
        .execute(
            "INSERT INTO statement_files (id, digest, format, message, encoding, bytes, statements, notes, imported_at, imported_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &file_id,
                &digest,
                &file.format.as_str(),
                &file.message,
                &file.encoding,
                &i64::try_from(size).expect("bounded by STATEMENT_BYTES_MAX"),
                &i32::try_from(file.statements.len()).expect("bounded by STATEMENTS_PER_FILE_MAX"),
                &notes_json(&file.notes),
                &imported_at,
                &actor,
            ],
        )
        .await?;
    let entry = AuditEntry {
        actor,
        action: "statement.import_file",
        event_type: None,
        entity_type: "statement_file",
        ledger: None,
        entity_id: file_id.to_string(),
        before: None,
        after: json!({"format": file.format.as_str(), "message": file.message, "statements": file.statements.len(),
                      "sha256": hex_of(digest), "bytes": size}),
    };
    append(db_tx, &[entry]).await?;
    Ok(())
}

/// A statement's row in `statements`.
struct StatementRow<'a> {
    id: Uuid,
    file_id: Uuid,
    ord: usize,
    reference: &'a str,
    digest: &'a [u8],
    content_digest: &'a [u8],
    account_id: Uuid,
    /// The account's ledger: the statement's and its entries'.
    ledger: i32,
    imported_at: SystemTime,
}

async fn insert_statement(
    db_tx: &deadpool_postgres::Transaction<'_>,
    row: &StatementRow<'_>,
    statement: &Statement,
    actor: &str,
) -> Result<(), ReconError> {
    let day_text = |d: Option<Date>| d.map(format_day);
    let amount = |a: Option<i128>| a.map(|v| Decimal::from_i128_with_scale(v, 0));
    db_tx
        .execute(
            "INSERT INTO statements (id, account_id, format, statement_ref, digest, bank_account, currency, sequence,
                                     opening_date, opening_amount, closing_date, closing_amount, entries, imported_at, imported_by,
                                     file_id, file_ord, content_digest, balance_difference, pages, notes, ledger_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::date, $10, $11::text::date, $12, $13, $14, $15,
                     $16, $17, $18, $19, $20, $21, $22)",
            &[
                &row.id,
                &row.account_id,
                &statement.format.as_str(),
                &row.reference,
                &row.digest,
                &statement.account,
                &statement.currency,
                &statement.sequence,
                &day_text(statement.opening.map(|b| b.date)),
                &amount(statement.opening.map(|b| b.amount)),
                &day_text(statement.closing.map(|b| b.date)),
                &amount(statement.closing.map(|b| b.amount)),
                &i32::try_from(statement.entries.len()).expect("bounded by STATEMENT_ENTRIES_MAX"),
                &row.imported_at,
                &actor,
                &row.file_id,
                &i32::try_from(row.ord).expect("bounded by STATEMENTS_PER_FILE_MAX"),
                &row.content_digest,
                &amount(statement.balance_difference()),
                &i32::try_from(statement.pages).expect("bounded by STATEMENTS_PER_FILE_MAX"),
                &notes_json(&statement.notes),
                &row.ledger,
            ],
        )
        .await?;
    insert_entries(db_tx, row.id, row.ledger, statement).await?;
    let entry = AuditEntry {
        actor,
        action: "statement.import",
        event_type: Some("statement.imported".into()),
        entity_type: "statement",
        ledger: Some(tally_core::LedgerId(row.ledger)),
        entity_id: row.id.to_string(),
        before: None,
        after: json!({"account_id": row.account_id, "format": statement.format.as_str(), "statement_ref": row.reference,
                      "entries": statement.entries.len(), "sha256": hex_of(row.digest), "file_id": row.file_id}),
    };
    append(db_tx, &[entry]).await?;
    Ok(())
}

async fn insert_entries(
    db_tx: &deadpool_postgres::Transaction<'_>,
    statement_id: Uuid,
    ledger: i32,
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
    let other =
        |f: fn(&tally_statement::Entry) -> &Option<tally_statement::OtherAmount>| -> Vec<Option<serde_json::Value>> {
            e.iter().map(|x| f(x).as_ref().map(|a| json!({"currency": a.currency, "amount": a.amount}))).collect()
        };
    db_tx
        .execute(
            "INSERT INTO statement_entries (statement_id, ord, location, booking_date, value_date, amount, reversal, reference,
                                            bank_reference, counterparty, description, bank_code, details,
                                            end_to_end_id, counterparty_iban, original_amount, charges, ledger_id)
             SELECT $1, u.*, $18 FROM unnest($2::int4[], $3::text[], $4::text[]::date[], $5::text[]::date[], $6::numeric[], $7::bool[],
                                        $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::jsonb[],
                                        $14::text[], $15::text[], $16::jsonb[], $17::jsonb[]) u",
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
                &text(|x| &x.end_to_end_id),
                &text(|x| &x.counterparty_iban),
                &other(|x| &x.original_amount),
                &other(|x| &x.charges),
                &ledger,
            ],
        )
        .await?;
    Ok(())
}

/// The most statements one page of `list_statements` holds.
pub const STATEMENTS_LISTED_MAX: i64 = 1_000;

/// Which imported statements `list_statements` shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatementFilter<'a> {
    /// Only the statements of these ledgers (`None`: every ledger).
    pub ledgers: Option<&'a [tally_core::LedgerId]>,
    /// Only the statements of this account.
    pub account: Option<Uuid>,
    /// Only statements older than this one (the previous page's last): newest first.
    pub before: Option<Uuid>,
}

/// An imported statement as a listing shows it, with the outcome of its matching.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatementSummary {
    pub id: Uuid,
    /// The ledger of its account.
    pub ledger: i32,
    pub account_id: Uuid,
    pub account_code: Option<String>,
    pub format: String,
    pub statement_ref: String,
    pub bank_account: String,
    pub currency: String,
    pub opening_date: Option<String>,
    /// Decimal strings in the account's currency.
    pub opening: Option<String>,
    pub closing_date: Option<String>,
    pub closing: Option<String>,
    pub entries: i32,
    pub file_id: Option<Uuid>,
    pub imported_at: String,
    pub imported_by: String,
    /// `clean` or `findings`: the matching when it was imported.
    pub status: Option<String>,
    pub findings: Option<i64>,
}

/// Imported statements, newest first, at most `limit` (1 to `STATEMENTS_LISTED_MAX`).
pub async fn list_statements(
    recon: &Recon,
    filter: &StatementFilter<'_>,
    limit: i64,
) -> Result<Vec<StatementSummary>, ReconError> {
    let limit = limit.clamp(1, STATEMENTS_LISTED_MAX);
    let ledgers: Option<Vec<i32>> = filter.ledgers.map(|ledgers| ledgers.iter().map(|l| l.0).collect());
    let client = recon.client().await?;
    let rows = client
        .query(
            "SELECT s.id, s.ledger_id, s.account_id, a.code, s.format, s.statement_ref, s.bank_account, a.currency,
                    s.opening_date::text, tally_major(s.opening_amount, c.scale)::text,
                    s.closing_date::text, tally_major(s.closing_amount, c.scale)::text,
                    s.entries, s.file_id, s.imported_at, s.imported_by, r.status, r.findings
             FROM statements s
             JOIN accounts a ON a.id = s.account_id AND a.ledger_id = s.ledger_id
             JOIN currencies c ON c.code = a.currency
             LEFT JOIN LATERAL (SELECT status, findings FROM reconciliation_runs
                                WHERE kind = 'statement' AND statement_id = s.id ORDER BY started_at DESC LIMIT 1) r ON true
             WHERE ($1::int4[] IS NULL OR s.ledger_id = ANY($1)) AND ($2::uuid IS NULL OR s.account_id = $2)
               AND ($3::uuid IS NULL OR s.id < $3)
             ORDER BY s.id DESC LIMIT $4",
            &[&ledgers, &filter.account, &filter.before, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| StatementSummary {
            id: row.get(0),
            ledger: row.get(1),
            account_id: row.get(2),
            account_code: row.get(3),
            format: row.get(4),
            statement_ref: row.get(5),
            bank_account: row.get(6),
            currency: row.get(7),
            opening_date: row.get(8),
            opening: row.get(9),
            closing_date: row.get(10),
            closing: row.get(11),
            entries: row.get(12),
            file_id: row.get(13),
            imported_at: crate::eod::rfc3339(row.get(14)),
            imported_by: row.get(15),
            status: row.get(16),
            findings: row.get(17),
        })
        .collect())
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

/// The newest report of an imported file, by Tally's file id.
pub async fn file_report(recon: &Recon, file_id: Uuid) -> Result<FileReport, ReconError> {
    let client = recon.client().await?;
    latest_file_report(&client, file_id).await?.ok_or_else(|| ReconError::StatementNotFound(file_id.to_string()))
}

async fn latest_file_report(
    client: &impl deadpool_postgres::GenericClient,
    file_id: Uuid,
) -> Result<Option<FileReport>, ReconError> {
    let row = client
        .query_opt(
            "SELECT report FROM reconciliation_runs WHERE kind = 'statement_file' AND statement_file_id = $1
             ORDER BY started_at DESC, id DESC LIMIT 1",
            &[&file_id],
        )
        .await?;
    Ok(row.map(|row| serde_json::from_value(row.get(0)).expect("reports we wrote parse")))
}

/// What matching the statements of one account needs to know.
struct AccountContext<'a> {
    record: &'a tally_store::AccountRecord,
    ledger_code: &'a str,
    rules: &'a MatchRules,
    file_id: Uuid,
    actor: &'a str,
}

/// The first and last day a statement covers: its entries' booking days and its balances' days.
fn period(statement: &Statement) -> (Option<Date>, Option<Date>) {
    let booking = statement.entries.iter().map(|e| e.booking_date);
    let first = booking.clone().chain(opening_day(statement)).min();
    let last = booking.chain(statement.closing.map(|b| b.date)).max();
    (first, last)
}

/// The day at whose start the statement's opening balance holds (see the module documentation).
fn opening_day(statement: &Statement) -> Option<Date> {
    let date = statement.opening?.date;
    if statement.format != Format::Mt940 {
        return Some(date);
    }
    let next = statement.entries.iter().map(|e| e.booking_date).chain(statement.closing.map(|b| b.date)).min();
    match next {
        Some(next) if date < next => date.next_day().or(Some(date)),
        _ => Some(date),
    }
}

/// Matches the statements of one account against its journal, in file order, each journal
/// entry used once; builds their reports.
async fn match_account(
    recon: &Recon,
    context: &AccountContext<'_>,
    statements: &[(Uuid, &Statement, &str)],
) -> Result<Vec<StatementReport>, ReconError> {
    let record = context.record;
    let account_id = record.account.id.0;
    let periods: Vec<(Option<Date>, Option<Date>)> = statements.iter().map(|(_, s, _)| period(s)).collect();
    let first = periods.iter().filter_map(|(first, _)| *first).min();
    let last = periods.iter().filter_map(|(_, last)| *last).max();
    let window = time::Duration::days(i64::from(context.rules.date_window_days));
    let (ledger, ids) = match (first, last) {
        (Some(first), Some(last)) => journal_entries(recon, account_id, first - window, last + window).await?,
        _ => (Vec::new(), Vec::new()),
    };
    let mut ledger_used = vec![false; ledger.len()];
    let mut outcomes: Vec<(MatchOutcome, Vec<usize>)> = Vec::with_capacity(statements.len());
    for (_, statement, _) in statements {
        // Only what earlier statements of the file left.
        let open: Vec<usize> = (0..ledger.len()).filter(|j| !ledger_used[*j]).collect();
        let candidates: Vec<LedgerEntry> = open.iter().map(|j| ledger[*j].clone()).collect();
        let outcome = tally_statement::match_entries(&statement.entries, &candidates, context.rules);
        for found in &outcome.matches {
            for j in &found.ledger_entries {
                ledger_used[open[*j]] = true;
            }
        }
        outcomes.push((outcome, open));
    }
    // A journal entry none matched is reported by the first statement whose period holds its day.
    let mut reported_by: Vec<Option<usize>> = vec![None; ledger.len()];
    for (j, entry) in ledger.iter().enumerate() {
        if ledger_used[j] {
            continue;
        }
        reported_by[j] = periods
            .iter()
            .position(|(first, last)| first.is_some_and(|f| entry.date >= f) && last.is_some_and(|l| entry.date <= l));
    }
    let mut reports = Vec::with_capacity(statements.len());
    for (position, ((statement_id, statement, reference), (outcome, open))) in
        statements.iter().zip(outcomes).enumerate()
    {
        let unmatched_ledger: Vec<usize> = (0..ledger.len()).filter(|j| reported_by[*j] == Some(position)).collect();
        let in_period = ledger
            .iter()
            .filter(|entry| {
                let (first, last) = periods[position];
                first.is_some_and(|f| entry.date >= f) && last.is_some_and(|l| entry.date <= l)
            })
            .count();
        let matched = StatementMatch {
            statement_id: *statement_id,
            statement,
            reference,
            period: periods[position],
            outcome: &outcome,
            open: &open,
            unmatched_ledger: &unmatched_ledger,
            ledger_in_period: in_period,
        };
        reports.push(statement_report_of(recon, context, &matched, &ledger, &ids).await?);
    }
    Ok(reports)
}

/// One statement's matching, as `match_account` found it.
struct StatementMatch<'a> {
    statement_id: Uuid,
    statement: &'a Statement,
    reference: &'a str,
    period: (Option<Date>, Option<Date>),
    outcome: &'a MatchOutcome,
    /// The journal entries this statement was matched against: `outcome`'s ledger indexes
    /// index this.
    open: &'a [usize],
    /// Journal entries (indexes into the account's journal) this statement reports as unmatched.
    unmatched_ledger: &'a [usize],
    ledger_in_period: usize,
}

async fn statement_report_of(
    recon: &Recon,
    context: &AccountContext<'_>,
    matched: &StatementMatch<'_>,
    ledger: &[LedgerEntry],
    ids: &[Uuid],
) -> Result<StatementReport, ReconError> {
    let started_at = to_system_time(recon.store().now());
    let record = context.record;
    let scale = record.scale;
    let account_id = record.account.id.0;
    let statement = matched.statement;
    let outcome = matched.outcome;
    let amount_text = |value: i128| format_amount(value, scale);

    let mut findings = Vec::new();
    let finding =
        |check: &str, subject: String, transfer: Option<String>, found: Option<i128>, detail: String| Finding {
            check: check.to_owned(),
            subject,
            account_id: Some(account_id.to_string()),
            transfer_id: transfer,
            currency: Some(record.account.currency.clone()),
            ledger: Some(record.account.ledger.0),
            expected: None,
            found: found.map(amount_text),
            difference: None,
            detail,
        };
    if let (Some(difference), Some(opening), Some(closing)) =
        (statement.balance_difference(), statement.opening, statement.closing)
        && difference != 0
    {
        let computed = closing.amount - difference;
        findings.push(Finding {
            expected: Some(amount_text(computed)),
            difference: Some(amount_text(difference)),
            ..finding(
                "statement_balance_difference",
                format!("statement {}", matched.reference),
                None,
                Some(closing.amount),
                format!(
                    "the bank's statement does not add up: its opening balance {} plus its entries {} is {}, but its \
                     closing balance is {} (off by {}); it is imported and matched as the bank sent it",
                    amount_text(opening.amount),
                    amount_text(statement.entries_total()),
                    amount_text(computed),
                    amount_text(closing.amount),
                    amount_text(difference)
                ),
            )
        });
    }
    for note in statement.notes.iter().filter(|note| note.code == "page_chain_break") {
        findings.push(Finding {
            difference: note.amount.map(amount_text),
            ..finding("page_chain_break", note.location.clone(), None, None, note.detail.clone())
        });
    }
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
    for &j in matched.unmatched_ledger {
        let l = &ledger[j];
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
    let opening = statement.opening.zip(opening_day(statement)).map(|(point, day)| BalancePoint { date: day, ..point });
    for (which, point) in [("opening", opening), ("closing", statement.closing)] {
        let Some(point) = point else { continue };
        let Some(tally) = balance_on(recon, account_id, point.date, which == "opening").await? else { continue };
        let difference = point.amount - tally;
        balances.push(BalanceComparison {
            which: which.to_owned(),
            date: format_day(point.date),
            statement: amount_text(point.amount),
            tally: amount_text(tally),
            difference: amount_text(difference),
        });
        if difference != 0 {
            findings.push(Finding {
                expected: Some(amount_text(tally)),
                difference: Some(amount_text(difference)),
                ..finding(
                    "balance_break",
                    format!("{which} {}", format_day(point.date)),
                    None,
                    Some(point.amount),
                    format!(
                        "the statement's {which} balance on {} is {}; Tally's is {}",
                        format_day(point.date),
                        amount_text(point.amount),
                        amount_text(tally)
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
            transfer_ids: m.ledger_entries.iter().map(|&j| ids[matched.open[j]].to_string()).collect(),
            amount: amount_text(m.statement_entries.iter().map(|&i| statement.entries[i].amount).sum()),
            difference: amount_text(m.difference),
        })
        .collect();
    let status = if findings.is_empty() { RunStatus::Clean } else { RunStatus::Findings };
    let count = |n: usize| i64::try_from(n).expect("bounded");
    Ok(StatementReport {
        run_id: Uuid::now_v7().to_string(),
        statement: matched.statement_id.to_string(),
        statement_ref: matched.reference.to_owned(),
        format: statement.format.as_str().to_owned(),
        account_id: account_id.to_string(),
        account_code: record.code.clone(),
        ledger: record.account.ledger.0,
        ledger_code: context.ledger_code.to_owned(),
        currency: record.account.currency.clone(),
        period_from: matched.period.0.map(format_day),
        period_to: matched.period.1.map(format_day),
        started_at: crate::eod::rfc3339(started_at),
        finished_at: crate::eod::rfc3339(to_system_time(recon.store().now())),
        actor: context.actor.to_owned(),
        status,
        statement_entries: count(statement.entries.len()),
        ledger_entries: count(matched.ledger_in_period),
        matched: count(outcome.matches.iter().map(|m| m.statement_entries.len()).sum::<usize>()),
        unmatched_statement: count(outcome.unmatched_statement.len()),
        unmatched_ledger: count(matched.unmatched_ledger.len()),
        balances,
        matches,
        findings,
        file: Some(context.file_id.to_string()),
        bank_account: Some(statement.account.clone()),
        pages: i64::from(statement.pages),
        balance_difference: statement.balance_difference().map(amount_text),
        notes: note_lines(&statement.notes, scale),
    })
}

fn note_lines(notes: &[Note], scale: u8) -> Vec<NoteLine> {
    notes
        .iter()
        .map(|note| NoteLine {
            code: note.code.to_owned(),
            location: note.location.clone(),
            detail: note.detail.clone(),
            amount: note.amount.map(|amount| format_amount(amount, scale)),
        })
        .collect()
}

async fn store_statement_run(
    db_tx: &deadpool_postgres::Transaction<'_>,
    report: &StatementReport,
    actor: &str,
) -> Result<(), ReconError> {
    let run_id = Uuid::parse_str(&report.run_id).expect("a run id we made");
    let statement_id = Uuid::parse_str(&report.statement).expect("a statement id we made");
    db_tx
        .execute(
            "INSERT INTO reconciliation_runs (id, kind, statement_id, status, started_at, finished_at, actor, findings, report)
             VALUES ($1, 'statement', $2, $3, $4::text::timestamptz, $5::text::timestamptz, $6, $7, $8)",
            &[
                &run_id,
                &statement_id,
                &report.status.as_str(),
                &report.started_at,
                &report.finished_at,
                &actor,
                &i64::try_from(report.findings.len()).expect("bounded"),
                &serde_json::to_value(report).expect("serializes"),
            ],
        )
        .await?;
    let entry = AuditEntry {
        actor,
        action: "reconciliation.statement",
        event_type: Some("reconciliation.finished".into()),
        entity_type: "reconciliation",
        ledger: Some(tally_core::LedgerId(report.ledger)),
        entity_id: report.run_id.clone(),
        before: None,
        after: json!({"statement_id": statement_id, "status": report.status.as_str(), "matched": report.matched,
                      "unmatched_statement": report.unmatched_statement, "unmatched_ledger": report.unmatched_ledger}),
    };
    append(db_tx, &[entry]).await?;
    Ok(())
}

async fn store_file_run(
    db_tx: &deadpool_postgres::Transaction<'_>,
    report: &FileReport,
    file_id: Uuid,
    started_at: SystemTime,
    actor: &str,
) -> Result<(), ReconError> {
    let run_id = Uuid::parse_str(&report.run_id).expect("a run id we made");
    db_tx
        .execute(
            "INSERT INTO reconciliation_runs (id, kind, statement_file_id, status, started_at, finished_at, actor, findings, report)
             VALUES ($1, 'statement_file', $2, $3, $4, $5::text::timestamptz, $6, $7, $8)",
            &[
                &run_id,
                &file_id,
                &report.status.as_str(),
                &started_at,
                &report.finished_at,
                &actor,
                &i64::try_from(report.findings.len()).expect("bounded"),
                &serde_json::to_value(report).expect("serializes"),
            ],
        )
        .await?;
    Ok(())
}

/// What the file report is made of.
struct FileContext<'a> {
    file: &'a StatementFile,
    /// The ledger's currencies and their scales.
    scales: &'a HashMap<String, u8>,
    file_id: Uuid,
    digest: &'a [u8],
    refs: &'a [String],
    plans: &'a [Plan],
    mapped: &'a Mapped,
    reports: Vec<Option<StatementReport>>,
    started_at: SystemTime,
    finished_at: SystemTime,
    actor: &'a str,
}

fn build_file_report(context: &FileContext<'_>) -> FileReport {
    let file = context.file;
    let mut findings = Vec::new();
    let mut statements = Vec::with_capacity(file.statements.len());
    let (mut imported, mut already, mut unmapped) = (0i64, 0i64, 0i64);
    for (ord, (statement, plan)) in file.statements.iter().zip(context.plans).enumerate() {
        let (outcome, id, account) = match plan {
            Plan::Unmapped => ("unmapped", None, None),
            Plan::Already { id, account } => ("already_imported", Some(*id), Some(*account)),
            Plan::New { id, account } => ("imported", Some(*id), Some(*account)),
        };
        match plan {
            Plan::Unmapped => unmapped += 1,
            Plan::Already { .. } => already += 1,
            Plan::New { .. } => imported += 1,
        }
        let record = account.map(|index| &context.mapped.accounts[index]);
        // Amounts at the scale the statement was read at: its currency's.
        let scale = statement.currency.as_ref().and_then(|currency| context.scales.get(currency).copied());
        let scale = record.map(|r| r.scale).or(scale).unwrap_or(0);
        let amount_text = |value: i128| format_amount(value, scale);
        let (first, last) = period(statement);
        if let Plan::Unmapped = plan {
            findings.push(Finding {
                check: "unmapped_statement".to_owned(),
                subject: statement.account.clone(),
                account_id: None,
                transfer_id: None,
                currency: statement.currency.clone(),
                ledger: None,
                expected: None,
                found: None,
                difference: None,
                detail: format!(
                    "statement {} of bank account {} ({} {}, {} to {}) maps to no Tally account and was neither \
                     imported nor matched: map it with --map {}=ACCOUNT",
                    context.refs[ord],
                    statement.account,
                    statement.entries.len(),
                    if statement.entries.len() == 1 { "entry" } else { "entries" },
                    first.map(format_day).unwrap_or_else(|| "?".into()),
                    last.map(format_day).unwrap_or_else(|| "?".into()),
                    normalize_account(&statement.account)
                ),
            });
        }
        statements.push(FileStatement {
            ord: i64::try_from(ord + 1).expect("bounded"),
            outcome: outcome.to_owned(),
            statement_ref: context.refs[ord].clone(),
            bank_account: statement.account.clone(),
            currency: statement.currency.clone(),
            pages: i64::from(statement.pages),
            entries: i64::try_from(statement.entries.len()).expect("bounded"),
            period_from: first.map(format_day),
            period_to: last.map(format_day),
            opening: statement.opening.map(|b| amount_text(b.amount)),
            closing: statement.closing.map(|b| amount_text(b.amount)),
            balance_difference: statement.balance_difference().map(amount_text),
            statement: id.map(|id| id.to_string()),
            account_id: record.map(|r| r.account.id.0.to_string()),
            account_code: record.and_then(|r| r.code.clone()),
            ledger: record.map(|r| r.account.ledger.0),
            report: context.reports[ord].clone(),
        });
    }
    // File notes carry no amounts.
    let mut notes = note_lines(&file.notes, 0);
    for bank in &context.mapped.unused {
        notes.push(NoteLine {
            code: "mapping_unused".to_owned(),
            location: "mapping".to_owned(),
            detail: format!("the mapping names bank account {bank}, which no statement of the file is of"),
            amount: None,
        });
    }
    let statement_findings = statements.iter().filter_map(|s| s.report.as_ref()).any(|r| !r.findings.is_empty());
    let status = if findings.is_empty() && !statement_findings { RunStatus::Clean } else { RunStatus::Findings };
    FileReport {
        run_id: Uuid::now_v7().to_string(),
        file: context.file_id.to_string(),
        sha256: hex_of(context.digest),
        format: file.format.as_str().to_owned(),
        message: file.message.clone(),
        encoding: file.encoding.clone(),
        started_at: crate::eod::rfc3339(context.started_at),
        finished_at: crate::eod::rfc3339(context.finished_at),
        actor: context.actor.to_owned(),
        status,
        imported,
        already_imported: already,
        unmapped,
        statements,
        notes,
        findings,
        filter: None,
    }
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
                    coalesce(t.metadata->>'counterparty', o.code), t.metadata->>'counterparty_iban'
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
            "more than {LEDGER_ENTRIES_MAX} journal entries fall in the statements' period and window"
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
            counterparty_iban: row.get(5),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_entries_and_files() {
        assert_eq!(
            parse_mapping_entry(" NL91 ABNA 0417 1643 00 = bank-nl ").unwrap(),
            ("NL91 ABNA 0417 1643 00".to_owned(), "bank-nl".to_owned())
        );
        for bad in ["no-equals", "=bank", "NL91=", " = "] {
            assert_eq!(parse_mapping_entry(bad).unwrap_err().code(), "statement_mapping_invalid", "{bad}");
        }
        let long = format!("{}=x", "9".repeat(MAPPING_TEXT_LEN_MAX + 1));
        assert_eq!(parse_mapping_entry(&long).unwrap_err().code(), "statement_mapping_invalid");
        let text = "# bank accounts\n\nNL91ABNA0417164300=bank-nl\n37040044/0532013000 = bank-de\n";
        assert_eq!(parse_mapping_text(text).unwrap().len(), 2);
        let error = parse_mapping_text("a=b\noops\n").unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
        let many: String = (0..=MAPPINGS_MAX).map(|i| format!("A{i}=b\n")).collect();
        assert_eq!(parse_mapping_text(&many).unwrap_err().code(), "statement_mapping_invalid");
    }

    #[test]
    fn entry_keys_match_what_statements_write() {
        assert_eq!(entry_keys("nl91 abna 0417 1643 00"), ["NL91ABNA0417164300"]);
        assert!(entry_keys("NL91ABNA0417164300EUR").contains(&"NL91ABNA0417164300".to_owned()));
    }
}
