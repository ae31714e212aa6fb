//! `tally demo`: a new user sees Tally work in one command. Opens a few accounts (by code, so
//! running it again reuses them), moves money every way Tally can, and shows the result.
//!
//! The demo leaves no hold open, however it ends: it places its hold and captures it in one
//! submission (a linked chain, written in one SQL transaction), so an interrupt (Ctrl-C, SIGTERM,
//! a closed pipe) comes before both or after both; and a run voids any hold still open between
//! the demo's accounts (from an earlier demo that ended otherwise) before it starts.

use crate::connect::Database;
use crate::render::{Names, Output};
use anyhow::Result;
use tally_core::{
    AccountId, BalanceRule, TransferId, TransferKind, TransferRequest, TransferResult, parse_positive_amount,
};
use tally_engine::Submission;
use tally_store::queries::PAGE_SIZE_MAX;
use tally_store::{JournalRow, NewAccount, TransferFilter};
use uuid::Uuid;

const CURRENCY: &str = "CNY";

pub async fn run(db: &Database, out: &Output) -> Result<()> {
    let scale = db.store.currency_scale(CURRENCY).await?;
    let cny = |text: &str| parse_positive_amount(text, scale).expect("demo amounts are valid");
    step(out, "Opening accounts (CNY): an unrestricted bank account, two wallets and a shop");
    let bank = open(db, "demo:bank", BalanceRule::Unrestricted).await?;
    let alice = open(db, "demo:alice", BalanceRule::NoOverdraft).await?;
    let bob = open(db, "demo:bob", BalanceRule::NoOverdraft).await?;
    let shop = open(db, "demo:shop", BalanceRule::NoOverdraft).await?;
    let accounts = [bank, alice, bob, shop];
    let names = crate::commands::names(db, accounts).await?;

    let open_holds = holds_between(db, &accounts).await?;
    if !open_holds.is_empty() {
        step(out, &format!("Voiding {} hold(s) an earlier demo left open", open_holds.len()));
        let voids = open_holds
            .iter()
            .map(|hold| TransferRequest::acting_on(new_id(), TransferKind::VoidPending, *hold, None))
            .collect();
        post_all(db, out, &names, voids).await?;
    }

    step(out, "Funding alice with 1000.00 from the bank");
    post(db, out, &names, TransferRequest::posted(new_id(), bank, alice, cny("1000.00"))).await?;

    step(out, "alice pays bob 12.34, and the client retries the same request (same id)");
    let payment = TransferRequest::posted(new_id(), alice, bob, cny("12.34"));
    post(db, out, &names, payment.clone()).await?;
    post(db, out, &names, payment.clone()).await?;

    step(out, "alice places a hold of 200.00 at the shop, which captures 150.00 of it (the rest is released)");
    // One linked chain: the hold is never left open, whenever the demo is interrupted.
    let hold = TransferRequest {
        kind: TransferKind::Pending,
        timeout_seconds: Some(3600),
        linked: true,
        ..TransferRequest::posted(new_id(), alice, shop, cny("200.00"))
    };
    let capture = TransferRequest::acting_on(new_id(), TransferKind::PostPending, hold.id, Some(cny("150.00")));
    post_all(db, out, &names, vec![hold, capture]).await?;

    step(out, "bob tries to pay the shop 5000.00: refused, nothing moves");
    post(db, out, &names, TransferRequest::posted(new_id(), bob, shop, cny("5000.00"))).await?;

    step(out, "The 12.34 payment is reversed");
    post(db, out, &names, TransferRequest::acting_on(new_id(), TransferKind::Reversal, payment.id, None)).await?;

    step(out, "Balances");
    let records = demo_accounts(db, &["demo:bank", "demo:alice", "demo:bob", "demo:shop"]).await?;
    out.accounts(&records);

    step(out, "alice's history, newest first");
    let alice_record = db.store.require_account("demo:alice").await?;
    out.history(&alice_record, &db.store.history("demo:alice", None, 10).await?, 10, &names);

    step(out, "Reconciliation");
    out.reconciliation(&tally_recon::check_ledger(&db.recon).await?);
    Ok(())
}

fn step(out: &Output, text: &str) {
    if !out.json {
        crate::render::say(format_args!("\n== {text}"));
    }
}

fn new_id() -> TransferId {
    TransferId(Uuid::now_v7())
}

async fn open(db: &Database, code: &str, rule: BalanceRule) -> Result<tally_core::AccountId> {
    let new = NewAccount {
        ledger: tally_core::LedgerId::DEFAULT,
        id: None,
        code: Some(code.into()),
        currency: CURRENCY.into(),
        rule,
        metadata: None,
    };
    Ok(db.store.create_account(&new, &db.actor).await?.0.account.id)
}

async fn post(db: &Database, out: &Output, names: &Names, request: TransferRequest) -> Result<()> {
    post_all(db, out, names, vec![request]).await
}

/// Submits the requests together (one submission: one SQL transaction) and shows each outcome.
async fn post_all(db: &Database, out: &Output, names: &Names, requests: Vec<TransferRequest>) -> Result<()> {
    let ids: Vec<TransferId> = requests.iter().map(|request| request.id).collect();
    let submissions = requests.into_iter().map(|request| Submission { request, actor: db.actor.clone() }).collect();
    let outcomes = db.engine.submit(submissions).await?;
    for (id, outcome) in ids.into_iter().zip(outcomes) {
        match (&outcome.transfer, outcome.result) {
            (Some(transfer), result) => {
                let scale = db.store.currency_scale(&transfer.currency).await?;
                out.transfer(result, transfer, scale, names);
            }
            (None, TransferResult::InsufficientFunds) if !out.json => {
                crate::render::say(format_args!("refused: insufficient_funds (transfer {id})"))
            }
            (None, result) => out.rejection(id, result, None),
        }
    }
    Ok(())
}

/// The holds still pending between two of `accounts`, oldest first.
async fn holds_between(db: &Database, accounts: &[AccountId]) -> Result<Vec<TransferId>> {
    let mut holds = std::collections::BTreeMap::new();
    for account in accounts {
        let filter = TransferFilter {
            account: Some(*account),
            status: Some("pending".into()),
            limit: PAGE_SIZE_MAX,
            ..TransferFilter::default()
        };
        for row in db.store.list_transfers(&filter).await?.0 {
            if let JournalRow::Applied { transfer, seq, .. } = row
                && accounts.contains(&transfer.debit_account_id)
                && accounts.contains(&transfer.credit_account_id)
            {
                holds.insert(seq, transfer.id);
            }
        }
    }
    Ok(holds.into_values().collect())
}

async fn demo_accounts(db: &Database, codes: &[&str]) -> Result<Vec<tally_store::AccountRecord>> {
    let mut records = Vec::with_capacity(codes.len());
    for code in codes {
        records.push(db.store.require_account(code).await?);
    }
    Ok(records)
}
