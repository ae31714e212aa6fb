//! The commands: translate arguments into engine and store calls, render the answers.

use crate::args::{
    AccountCommand, CurrencyCommand, LedgerCommand, StatusArg, StatusChangeArgs, TransferAction, TransferArgs,
};
use crate::connect::Database;
use crate::render::{Malformed, Names, Output};
use anyhow::{Context, Result, bail};
use serde_json::json;
use tally_core::{
    AccountId, AccountStatus, BalanceRule, Currency, MinorUnits, TransferId, TransferKind, TransferRequest,
    TransferResult, parse_amount, parse_positive_amount,
};
use tally_engine::Submission;
use tally_store::{JournalRow, NewAccount, StatusChange};
use uuid::Uuid;

pub async fn account(db: &Database, out: &Output, command: AccountCommand) -> Result<()> {
    match command {
        AccountCommand::Create { currency, id, code, ledger, overdraft_limit, unrestricted, metadata } => {
            let ledger = match ledger {
                Some(ledger) => db.store.require_ledger(&ledger).await?.id,
                None => tally_core::LedgerId::DEFAULT,
            };
            let scale = db.store.currency_scale(&currency).await?;
            let rule = match (unrestricted, overdraft_limit) {
                (true, _) => BalanceRule::Unrestricted,
                (false, None) => BalanceRule::NoOverdraft,
                (false, Some(limit)) => BalanceRule::from_parts(
                    false,
                    parse_amount(&limit, scale).map_err(|e| Malformed::amount("--overdraft-limit", &limit, &e))?,
                ),
            };
            let new = NewAccount {
                ledger,
                id: id.map(tally_core::AccountId),
                code,
                currency,
                rule,
                metadata: parse_metadata(metadata.as_deref())?,
            };
            let (record, created) = db.store.create_account(&new, &db.actor).await?;
            if !created {
                out.note("the account already existed with these fields; nothing changed");
            }
            out.account(&record);
        }
        AccountCommand::Show { account } => out.account(&db.store.require_account(&account).await?),
        AccountCommand::List { currency, ledger, status, limit, after } => {
            let status = status.map(|s| match s {
                StatusArg::Active => AccountStatus::Active,
                StatusArg::Frozen => AccountStatus::Frozen,
                StatusArg::Closed => AccountStatus::Closed,
            });
            let ledgers = match ledger {
                Some(ledger) => Some(vec![db.store.require_ledger(&ledger).await?.id]),
                None => None,
            };
            let filter =
                tally_store::AccountFilter { currency: currency.as_deref(), status, ledgers: ledgers.as_deref() };
            let page = db.store.list_accounts(&filter, after.map(tally_core::AccountId), limit).await?;
            out.accounts(&page);
        }
        AccountCommand::Freeze(args) => change_status(db, out, args, StatusChange::Freeze).await?,
        AccountCommand::Unfreeze(args) => change_status(db, out, args, StatusChange::Unfreeze).await?,
        AccountCommand::Close(args) => change_status(db, out, args, StatusChange::Close).await?,
    }
    Ok(())
}

async fn change_status(db: &Database, out: &Output, args: StatusChangeArgs, change: StatusChange) -> Result<()> {
    let record = db.store.change_account_status(&args.account, change, args.expected_version, &db.actor).await?;
    out.account(&record);
    Ok(())
}

pub async fn ledger(db: &Database, out: &Output, command: LedgerCommand) -> Result<()> {
    match command {
        LedgerCommand::Create { code, name, metadata } => {
            let new = tally_store::NewLedger {
                name: name.unwrap_or_else(|| code.clone()),
                code,
                metadata: parse_metadata(metadata.as_deref())?,
            };
            let (record, created) = db.store.create_ledger(&new, &db.actor).await?;
            if !created {
                out.note("the ledger already existed with these fields; nothing changed");
            }
            out.ledgers(std::slice::from_ref(&record));
        }
        LedgerCommand::List => out.ledgers(&db.store.ledgers().await?),
        LedgerCommand::Show { ledger } => out.ledgers(std::slice::from_ref(&db.store.require_ledger(&ledger).await?)),
    }
    Ok(())
}

pub async fn currency(db: &Database, out: &Output, command: CurrencyCommand) -> Result<()> {
    match command {
        CurrencyCommand::Add { code, scale } => {
            let currency = Currency::custom(&code, scale)?;
            let created = db.store.register_currency(&currency, &db.actor).await?;
            out.value(&json!({"code": code, "scale": scale, "created": created}), || {
                format!("{code}: {scale} decimals{}", if created { "" } else { " (already registered)" })
            });
        }
        CurrencyCommand::Show { code } => {
            let scale = db.store.currency_scale(&code).await?;
            out.value(&json!({"code": code, "scale": scale}), || format!("{code}: {scale} decimals"));
        }
    }
    Ok(())
}

pub async fn transfer(db: &Database, out: &Output, args: TransferArgs) -> Result<()> {
    let request = match args.action {
        Some(TransferAction::Show { transfer_id }) => return show_transfer(db, out, transfer_id).await,
        Some(TransferAction::Post { pending_id, amount, id }) => {
            let amount = match amount {
                Some(text) => Some(
                    parse_positive_amount(&text, scale_of_transfer(db, pending_id).await?)
                        .map_err(|e| Malformed::amount("--amount", &text, &e))?,
                ),
                None => None,
            };
            TransferRequest::acting_on(transfer_id(id), TransferKind::PostPending, TransferId(pending_id), amount)
        }
        Some(TransferAction::Void { pending_id, id }) => {
            TransferRequest::acting_on(transfer_id(id), TransferKind::VoidPending, TransferId(pending_id), None)
        }
        Some(TransferAction::Reverse { transfer_id: original, id }) => {
            TransferRequest::acting_on(transfer_id(id), TransferKind::Reversal, TransferId(original), None)
        }
        None => new_transfer(db, args).await?,
    };
    submit(db, out, request).await
}

async fn new_transfer(db: &Database, args: TransferArgs) -> Result<TransferRequest> {
    let (from, to, amount) = match (args.from, args.to, args.amount) {
        (Some(from), Some(to), Some(amount)) => (from, to, amount),
        _ => bail!("--from, --to and --amount are required"),
    };
    if let Some(currency) = &args.currency {
        // A currency that does not exist is `currency_not_found`, as over the API, and nothing is
        // written; one that exists but is not the accounts' is the rule's `currency_mismatch`.
        db.store.currency_scale(currency).await?;
    }
    let debit = db.store.require_account(&from).await?;
    let credit = db.store.require_account(&to).await?;
    let amount: MinorUnits =
        parse_positive_amount(&amount, debit.scale).map_err(|e| Malformed::amount("--amount", &amount, &e))?;
    let timeout_seconds = match args.timeout {
        Some(text) => {
            let duration = humantime::parse_duration(&text).context("--timeout")?;
            Some(u32::try_from(duration.as_secs()).context("--timeout is too long")?)
        }
        None => None,
    };
    Ok(TransferRequest {
        id: transfer_id(args.id),
        kind: if args.pending { TransferKind::Pending } else { TransferKind::Posted },
        debit_account_id: Some(debit.account.id),
        credit_account_id: Some(credit.account.id),
        amount: Some(amount),
        currency: args.currency,
        related_id: None,
        timeout_seconds,
        expected_debit_version: args.expected_from_version,
        expected_credit_version: args.expected_to_version,
        reference: args.reference,
        metadata: parse_metadata(args.metadata.as_deref())?,
        linked: false,
    })
}

async fn submit(db: &Database, out: &Output, request: TransferRequest) -> Result<()> {
    let id = request.id;
    let named = (request.debit_account_id, request.credit_account_id, request.currency.clone());
    let outcome = db.engine.submit_one(Submission { request, actor: db.actor.clone() }).await?;
    match &outcome.transfer {
        Some(transfer) => {
            let scale = db.store.currency_scale(&transfer.currency).await?;
            let names = names(db, [transfer.debit_account_id, transfer.credit_account_id]).await?;
            out.transfer(outcome.result, transfer, scale, &names);
        }
        None if outcome.result == TransferResult::CurrencyMismatch => {
            let (debit, credit, currency) = named;
            let detail = currency_mismatch_detail(db, debit, credit, currency.as_deref()).await?;
            out.rejection(id, outcome.result, detail.as_deref());
        }
        None => out.rejection(id, outcome.result, None),
    }
    if !outcome.result.is_success() {
        std::process::exit(exit_code(outcome.result));
    }
    Ok(())
}

/// The codes of these accounts, to show beside their ids.
pub async fn names(db: &Database, ids: impl IntoIterator<Item = AccountId>) -> Result<Names> {
    let mut ids: Vec<AccountId> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(Names::new(db.store.account_codes(&ids).await?))
}

/// Which currency each account of a refused transfer holds, beside the one the transfer names
/// (`None` when an account is not named or does not exist).
async fn currency_mismatch_detail(
    db: &Database,
    debit: Option<AccountId>,
    credit: Option<AccountId>,
    currency: Option<&str>,
) -> Result<Option<String>> {
    let (Some(debit), Some(credit)) = (debit, credit) else { return Ok(None) };
    let debit = db.store.account(&debit.0.to_string()).await?;
    let credit = db.store.account(&credit.0.to_string()).await?;
    Ok(debit.zip(credit).map(|(debit, credit)| {
        tally_server::error::currency_mismatch_message(currency, &debit.account.currency, &credit.account.currency)
    }))
}

/// Rejected transfers exit with 3 (rule) or 2 (malformed), so scripts can tell them apart.
fn exit_code(result: TransferResult) -> i32 {
    if result.is_validation() { 2 } else { 3 }
}

async fn show_transfer(db: &Database, out: &Output, id: Uuid) -> Result<()> {
    match db.store.journal_row(id).await? {
        Some(JournalRow::Applied { transfer, .. }) => {
            let scale = db.store.currency_scale(&transfer.currency).await?;
            let names = names(db, [transfer.debit_account_id, transfer.credit_account_id]).await?;
            out.transfer(TransferResult::Ok, &transfer, scale, &names);
        }
        Some(JournalRow::Rejected { rejection, .. }) => {
            let request = &rejection.request;
            let detail = match rejection.result {
                TransferResult::CurrencyMismatch => {
                    let currency = request.currency.as_deref();
                    currency_mismatch_detail(db, request.debit_account_id, request.credit_account_id, currency).await?
                }
                _ => None,
            };
            out.rejection(request.id, rejection.result, detail.as_deref());
        }
        None => bail!(tally_store::StoreError::TransferNotFound(id.to_string())),
    }
    Ok(())
}

async fn scale_of_transfer(db: &Database, id: Uuid) -> Result<u8> {
    let transfer =
        db.store.transfer(id).await?.ok_or_else(|| tally_store::StoreError::TransferNotFound(id.to_string()))?;
    Ok(db.store.currency_scale(&transfer.currency).await?)
}

pub async fn balance(db: &Database, out: &Output, account: &str) -> Result<()> {
    let record = db.store.require_account(account).await?;
    out.balance(&record);
    Ok(())
}

pub async fn history(db: &Database, out: &Output, account: &str, limit: i64, before: Option<i64>) -> Result<()> {
    let record = db.store.require_account(account).await?;
    let entries = db.store.history(account, before, limit).await?;
    let names = names(db, entries.iter().map(|e| e.other_account_id)).await?;
    out.history(&record, &entries, limit, &names);
    Ok(())
}

pub async fn reconcile(db: &Database, out: &Output) -> Result<()> {
    let report = tally_recon::check_ledger(&db.recon).await?;
    out.reconciliation(&report);
    if !report.is_clean() {
        std::process::exit(4);
    }
    Ok(())
}

pub async fn expire(db: &Database, out: &Output) -> Result<()> {
    let expired = db.engine.expire_due(db.engine.store().now()).await?;
    out.value(&json!({"expired": expired}), || format!("expired {expired} hold(s)"));
    Ok(())
}

fn transfer_id(id: Option<Uuid>) -> TransferId {
    TransferId(id.unwrap_or_else(Uuid::now_v7))
}

fn parse_metadata(text: Option<&str>) -> Result<Option<serde_json::Value>> {
    text.map(|t| serde_json::from_str(t).context("--metadata must be JSON")).transpose()
}
