//! Before the load: the hot accounts, opened and funded through the library (an engine of its
//! own, while nothing else writes), and an operator API key for the HTTP clients.
//! Every name carries the run's id, so runs can share a database.

use crate::LoadError;
use tally_core::{AccountId, BalanceRule, TransferId, TransferRequest, TransferResult};
use tally_engine::Submission;
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
    pub accounts: Vec<AccountId>,
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

pub async fn prepare(store: &Store, accounts: usize) -> Result<Prepared, LoadError> {
    let run_id = Uuid::now_v7().simple().to_string()[20..].to_owned();
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
    // Through an engine of its own, while nothing else writes: the one way transfers enter.
    let engine = tally_engine::Engine::start(
        store.clone(),
        tally_engine::EngineConfig { expiry_sweep_interval: None, ..tally_engine::EngineConfig::default() },
    );
    for chunk in funding.chunks(tally_core::BATCH_SIZE_MAX) {
        let outcomes = engine.submit(chunk.to_vec()).await.map_err(|error| {
            LoadError::Setup(format!("funding the hot accounts failed: {} ({error})", error.code()))
        })?;
        if let Some(refused) = outcomes.iter().find(|o| o.result != TransferResult::Ok) {
            return Err(LoadError::Setup(format!("funding a hot account was refused: {}", refused.result.code())));
        }
    }
    engine.shutdown().await;
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
    Ok(Prepared { run_id, accounts: ids, authorization: format!("Bearer {}", generated.key) })
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
