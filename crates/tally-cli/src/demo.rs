//! `tally demo`: a new user sees Tally work in one command. Opens a few accounts (by code, so
//! running it again reuses them), moves money every way Tally can, and shows the result.

use crate::connect::Database;
use crate::render::Output;
use anyhow::Result;
use tally_core::{BalanceRule, TransferId, TransferKind, TransferRequest, TransferResult, parse_positive_amount};
use tally_engine::Submission;
use tally_store::NewAccount;
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

    step(out, "Funding alice with 1000.00 from the bank");
    post(db, out, TransferRequest::posted(new_id(), bank, alice, cny("1000.00"))).await?;

    step(out, "alice pays bob 12.34, and the client retries the same request (same id)");
    let payment = TransferRequest::posted(new_id(), alice, bob, cny("12.34"));
    post(db, out, payment.clone()).await?;
    post(db, out, payment.clone()).await?;

    step(out, "alice places a hold of 200.00 at the shop, which captures 150.00 of it");
    let hold = TransferRequest {
        kind: TransferKind::Pending,
        timeout_seconds: Some(3600),
        ..TransferRequest::posted(new_id(), alice, shop, cny("200.00"))
    };
    post(db, out, hold.clone()).await?;
    post(db, out, TransferRequest::acting_on(new_id(), TransferKind::PostPending, hold.id, Some(cny("150.00"))))
        .await?;

    step(out, "bob tries to pay the shop 5000.00: refused, nothing moves");
    post(db, out, TransferRequest::posted(new_id(), bob, shop, cny("5000.00"))).await?;

    step(out, "The 12.34 payment is reversed");
    post(db, out, TransferRequest::acting_on(new_id(), TransferKind::Reversal, payment.id, None)).await?;

    step(out, "Balances");
    let records = demo_accounts(db, &["demo:bank", "demo:alice", "demo:bob", "demo:shop"]).await?;
    out.accounts(&records);

    step(out, "alice's history, newest first");
    let alice_record = db.store.require_account("demo:alice").await?;
    out.history(&alice_record, &db.store.history("demo:alice", None, 10).await?, 10);

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
    let new = NewAccount { id: None, code: Some(code.into()), currency: CURRENCY.into(), rule, metadata: None };
    Ok(db.store.create_account(&new, &db.actor).await?.0.account.id)
}

async fn post(db: &Database, out: &Output, request: TransferRequest) -> Result<()> {
    let id = request.id;
    let outcome = db.engine.submit_one(Submission { request, actor: db.actor.clone() }).await?;
    match (&outcome.transfer, outcome.result) {
        (Some(transfer), result) => {
            let scale = db.store.currency_scale(&transfer.currency).await?;
            out.transfer(result, transfer, scale);
        }
        (None, TransferResult::InsufficientFunds) if !out.json => {
            crate::render::say(format_args!("refused: insufficient_funds (transfer {id})"))
        }
        (None, result) => out.rejection(id, result),
    }
    Ok(())
}

async fn demo_accounts(db: &Database, codes: &[&str]) -> Result<Vec<tally_store::AccountRecord>> {
    let mut records = Vec::with_capacity(codes.len());
    for code in codes {
        records.push(db.store.require_account(code).await?);
    }
    Ok(records)
}
