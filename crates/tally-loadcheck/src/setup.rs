//! Before the load: the hot accounts, or the bank's customers and house accounts (see `bank`),
//! opened and funded through the library (an engine of its own, while nothing else writes), and
//! an operator API key for the HTTP clients. Every name carries the run's id, so runs can share
//! a database.

use crate::LoadError;
use crate::config::{LoadConfig, Scenario};
use std::collections::HashMap;
use tally_core::{AccountId, BalanceRule, LedgerId, TransferId, TransferRequest, TransferResult};
use tally_engine::Submission;
use tally_store::accounts::ACCOUNT_BULK_MAX;
use tally_store::{NewAccount, NewApiKey, Role, Store};
use uuid::Uuid;

/// The currency of every hot account: the seed's, with two decimals.
pub const CURRENCY: &str = "CNY";
pub const SCALE: u8 = 2;
/// The audit actor of what the harness itself writes.
pub const ACTOR: &str = "loadcheck";
/// Transfers move 1.00 to 50.00, in minor units.
pub const AMOUNT_MINOR_MIN: i128 = 100;
pub const AMOUNT_MINOR_MAX: i128 = 5_000;
/// Every fourth account (the fourth, eighth, ...: the coldest when the choice is skewed) is
/// small and may not overdraw, so transfers from it are sometimes refused
/// (`insufficient_funds`); the others are funded well beyond what a run moves.
const SMALL_FUNDING_MINOR: i128 = 20_000;
const LARGE_FUNDING_MINOR: i128 = 10_000_000;
const OVERDRAFT_LIMIT_MINOR: i128 = 10_000;

const _: () = assert!(AMOUNT_MINOR_MIN > 0 && AMOUNT_MINOR_MIN < AMOUNT_MINOR_MAX);
const _: () = assert!(SMALL_FUNDING_MINOR > AMOUNT_MINOR_MAX, "a small account can pay at least one transfer");

/// What the load runs against.
pub struct Prepared {
    pub run_id: String,
    /// The hot accounts, or the bank's customers.
    pub accounts: Vec<AccountId>,
    /// The bank's house accounts (`bank::FEES_HOUSE_INDEX` first); none for hot accounts.
    pub house: Vec<AccountId>,
    /// Every account's posted balance (credits less debits) when the load starts.
    pub opening_minor: HashMap<AccountId, i128>,
    /// `Bearer <key>` of the run's operator key.
    pub authorization: String,
}

/// The balance rule and funding of hot account `index`.
fn rule_of(index: usize) -> (BalanceRule, i128) {
    match index % 4 {
        3 => (BalanceRule::NoOverdraft, SMALL_FUNDING_MINOR),
        1 => (BalanceRule::OverdraftLimit(OVERDRAFT_LIMIT_MINOR), LARGE_FUNDING_MINOR),
        _ => (BalanceRule::NoOverdraft, LARGE_FUNDING_MINOR),
    }
}

/// Opens and funds the scenario's accounts and makes the run's operator key.
pub async fn prepare(store: &Store, config: &LoadConfig) -> Result<Prepared, LoadError> {
    let run_id = Uuid::now_v7().simple().to_string()[20..].to_owned();
    let (accounts, house, funding) = match config.scenario {
        Scenario::HotAccounts => open_hot_accounts(store, &run_id, config.accounts).await?,
        Scenario::Bank => open_bank(store, &run_id, config.customers, config.house_accounts).await?,
    };
    let mut opening_minor: HashMap<AccountId, i128> = HashMap::new();
    for submission in &funding {
        let request = &submission.request;
        let (debit, credit) = request.debit_account_id.zip(request.credit_account_id).expect("funding names both");
        let amount = request.amount.expect("funding has an amount");
        *opening_minor.entry(debit).or_default() -= amount;
        *opening_minor.entry(credit).or_default() += amount;
    }
    for id in accounts.iter().chain(&house) {
        opening_minor.entry(*id).or_default();
    }
    fund(store, funding).await?;
    let generated = tally_server::generate_key();
    let key = NewApiKey {
        ledgers: Vec::new(),
        name: format!("loadcheck-{run_id}"),
        role: Role::Operator,
        key_hash: generated.hash,
        prefix: generated.prefix,
        accounts: Vec::new(),
    };
    store.create_api_key(&key, ACTOR).await?;
    Ok(Prepared { run_id, accounts, house, opening_minor, authorization: format!("Bearer {}", generated.key) })
}

/// Accounts, house accounts and the funding transfers still to submit.
type Opened = (Vec<AccountId>, Vec<AccountId>, Vec<Submission>);

/// The hot accounts and an unrestricted account that funds them.
async fn open_hot_accounts(store: &Store, run_id: &str, accounts: usize) -> Result<Opened, LoadError> {
    let bank = NewAccount {
        ledger: tally_core::LedgerId::DEFAULT,
        id: None,
        code: Some(format!("loadcheck-{run_id}-bank")),
        currency: CURRENCY.into(),
        rule: BalanceRule::Unrestricted,
        metadata: None,
    };
    let bank = store.create_account(&bank, ACTOR).await?.0.account.id;
    let mut ids = Vec::with_capacity(accounts);
    let mut funding = Vec::with_capacity(accounts);
    for index in 0..accounts {
        let (rule, amount) = rule_of(index);
        let new = NewAccount {
            ledger: tally_core::LedgerId::DEFAULT,
            id: None,
            code: Some(format!("loadcheck-{run_id}-hot-{index}")),
            currency: CURRENCY.into(),
            rule,
            metadata: None,
        };
        let id = store.create_account(&new, ACTOR).await?.0.account.id;
        ids.push(id);
        let request = TransferRequest::posted(TransferId(Uuid::now_v7()), bank, id, amount);
        funding.push(Submission { request, actor: ACTOR.into() });
    }
    Ok((ids, Vec::new(), funding))
}

/// The bank's house accounts (fees, then settlement) and customers, opened in bulk, and each
/// customer's funding from the first settlement account.
async fn open_bank(store: &Store, run_id: &str, customers: usize, house: usize) -> Result<Opened, LoadError> {
    let new = |code: String, rule| NewAccount {
        ledger: LedgerId::DEFAULT,
        id: Some(AccountId(Uuid::now_v7())),
        code: Some(format!("loadcheck-{run_id}-{code}")),
        currency: CURRENCY.into(),
        rule,
        metadata: None,
    };
    let house: Vec<NewAccount> = (0..house)
        .map(|index| match index {
            crate::bank::FEES_HOUSE_INDEX => new("house-fees".into(), BalanceRule::Unrestricted),
            _ => new(format!("house-settlement-{index}"), BalanceRule::Unrestricted),
        })
        .collect();
    let customers: Vec<NewAccount> =
        (0..customers).map(|index| new(format!("customer-{index}"), BalanceRule::NoOverdraft)).collect();
    for chunk in house.chunks(ACCOUNT_BULK_MAX).chain(customers.chunks(ACCOUNT_BULK_MAX)) {
        let created = store.create_accounts(chunk, ACTOR).await?;
        if created != chunk.len() {
            return Err(LoadError::Setup(format!("{} of {} bank accounts were opened", created, chunk.len())));
        }
    }
    let id_of = |account: &NewAccount| account.id.expect("ids chosen above");
    let house: Vec<AccountId> = house.iter().map(id_of).collect();
    let customers: Vec<AccountId> = customers.iter().map(id_of).collect();
    let settlement = house[crate::bank::FEES_HOUSE_INDEX + 1];
    let funding = customers
        .iter()
        .map(|customer| {
            let request = TransferRequest::posted(
                TransferId(Uuid::now_v7()),
                settlement,
                *customer,
                crate::bank::CUSTOMER_FUNDING_MINOR,
            );
            Submission { request, actor: ACTOR.into() }
        })
        .collect();
    Ok((customers, house, funding))
}

/// Submits the funding transfers and requires every one applied.
async fn fund(store: &Store, funding: Vec<Submission>) -> Result<(), LoadError> {
    // Through an engine of its own, while nothing else writes: the one way transfers enter.
    let engine = tally_engine::Engine::start(
        store.clone(),
        tally_engine::EngineConfig { expiry_sweep_interval: None, ..tally_engine::EngineConfig::default() },
    );
    for chunk in funding.chunks(tally_core::BATCH_SIZE_MAX) {
        let outcomes = engine
            .submit(chunk.to_vec())
            .await
            .map_err(|error| LoadError::Setup(format!("funding the accounts failed: {} ({error})", error.code())))?;
        if let Some(refused) = outcomes.iter().find(|o| o.result != TransferResult::Ok) {
            return Err(LoadError::Setup(format!("funding an account was refused: {}", refused.result.code())));
        }
    }
    engine.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_accounts_are_large_and_some_are_small() {
        let rules: Vec<_> = (0..8).map(rule_of).collect();
        let small = rules.iter().filter(|(_, funding)| *funding == SMALL_FUNDING_MINOR).count();
        assert_eq!(small, 2);
        assert_eq!(rules[0].1, LARGE_FUNDING_MINOR, "the hottest account under a skewed choice is large");
        assert!(rules.iter().any(|(rule, _)| matches!(rule, BalanceRule::OverdraftLimit(_))));
    }
}
