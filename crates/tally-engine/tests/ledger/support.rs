//! Shared helpers: a ledger on a fresh database, and short ways to open accounts and post.

use tally_core::{AccountId, BalanceRule, MinorUnits, TransferId, TransferKind, TransferRequest, TransferResult};
use tally_engine::{Engine, EngineConfig, Outcome, Submission};
use tally_store::NewAccount;
use tally_testkit::TestDb;
use uuid::Uuid;

pub const ACTOR: &str = "test:alice";

pub struct Ledger {
    pub db: TestDb,
    pub engine: Engine,
}

/// A ledger whose holds expire only when a test calls `expire_due`, so that tests decide when.
pub async fn ledger() -> Ledger {
    ledger_with(EngineConfig { expiry_sweep_interval: None, ..EngineConfig::default() }).await
}

pub async fn ledger_with(config: EngineConfig) -> Ledger {
    let db = tally_testkit::fresh_database().await;
    let engine = Engine::start(db.store.clone(), config);
    Ledger { db, engine }
}

pub fn new_id() -> TransferId {
    TransferId(Uuid::now_v7())
}

pub fn posted(from: AccountId, to: AccountId, amount: MinorUnits) -> TransferRequest {
    TransferRequest::posted(new_id(), from, to, amount)
}

pub fn pending(from: AccountId, to: AccountId, amount: MinorUnits, timeout: Option<u32>) -> TransferRequest {
    TransferRequest { kind: TransferKind::Pending, timeout_seconds: timeout, ..posted(from, to, amount) }
}

pub fn acting(kind: TransferKind, related: TransferId, amount: Option<MinorUnits>) -> TransferRequest {
    TransferRequest::acting_on(new_id(), kind, related, amount)
}

impl Ledger {
    pub async fn open(&self, code: &str, currency: &str, rule: BalanceRule) -> AccountId {
        self.open_in(tally_core::LedgerId::DEFAULT, code, currency, rule).await
    }

    /// A ledger made with this code (its name is the code).
    pub async fn make_ledger(&self, code: &str) -> tally_core::LedgerId {
        let new = tally_store::NewLedger { code: code.into(), name: code.into(), metadata: None };
        self.db.store.create_ledger(&new, ACTOR).await.expect("make ledger").0.id
    }

    /// An account in `ledger`.
    pub async fn open_in(
        &self,
        ledger: tally_core::LedgerId,
        code: &str,
        currency: &str,
        rule: BalanceRule,
    ) -> AccountId {
        let new =
            NewAccount { ledger, id: None, code: Some(code.into()), currency: currency.into(), rule, metadata: None };
        self.db.store.create_account(&new, ACTOR).await.expect("open account").0.account.id
    }

    /// An unrestricted funding account and a funded no-overdraft wallet.
    pub async fn funded_wallet(&self, code: &str, amount: MinorUnits) -> (AccountId, AccountId) {
        let bank = self.open(&format!("{code}-bank"), "USD", BalanceRule::Unrestricted).await;
        let wallet = self.open(code, "USD", BalanceRule::NoOverdraft).await;
        if amount > 0 {
            assert_eq!(self.post(posted(bank, wallet, amount)).await.result, TransferResult::Ok);
        }
        (bank, wallet)
    }

    pub async fn post(&self, request: TransferRequest) -> Outcome {
        self.engine.submit_one(Submission { request, actor: ACTOR.into() }).await.expect("submit")
    }

    pub async fn post_all(&self, requests: Vec<TransferRequest>) -> Vec<TransferResult> {
        let submissions: Vec<Submission> =
            requests.into_iter().map(|request| Submission { request, actor: ACTOR.into() }).collect();
        self.engine.submit(submissions).await.expect("submit").into_iter().map(|o| o.result).collect()
    }

    pub async fn balance(&self, account: AccountId) -> MinorUnits {
        self.db.store.require_account(&account.to_string()).await.expect("account").account.balance()
    }

    /// Reconciliation on this ledger's database.
    pub fn recon(&self) -> tally_recon::Recon {
        tally_recon::Recon::new(&self.db.store, tally_recon::POOL_SIZE_MIN)
    }

    /// Fails the test if the ledger is inconsistent in any way reconciliation can see.
    pub async fn assert_consistent(&self) {
        let report = tally_recon::check_ledger(&self.recon()).await.expect("reconcile");
        assert!(report.findings.is_empty(), "ledger inconsistent: {:#?}", report.findings);
    }
}

/// The same request, flagged to succeed or fail together with the next one in its batch.
pub fn linked(request: TransferRequest) -> TransferRequest {
    TransferRequest { linked: true, ..request }
}

impl Ledger {
    /// An account's ledger state (totals, status, version).
    pub async fn account(&self, id: AccountId) -> tally_core::Account {
        self.db.store.require_account(&id.to_string()).await.expect("account").account
    }

    /// Every account of the ledger, ordered by id: to show that nothing moved.
    pub async fn all_accounts(&self) -> Vec<tally_core::Account> {
        let records = self.db.store.list_accounts(&Default::default(), None, 1_000).await.expect("list accounts");
        assert!(records.len() < 1_000, "more accounts than one page");
        records.into_iter().map(|record| record.account).collect()
    }

    /// Submits one request and returns the engine's answer, errors included.
    pub async fn try_post(&self, request: TransferRequest) -> Result<Outcome, tally_engine::EngineError> {
        self.engine.submit_one(Submission { request, actor: ACTOR.into() }).await
    }

    /// Submits a batch and returns every outcome.
    pub async fn post_batch(&self, requests: Vec<TransferRequest>) -> Vec<Outcome> {
        let submissions: Vec<Submission> =
            requests.into_iter().map(|request| Submission { request, actor: ACTOR.into() }).collect();
        self.engine.submit(submissions).await.expect("submit")
    }

    /// The row count of one table, from `TestDb::row_counts`.
    pub async fn count(&self, table: &str) -> i64 {
        let counts = self.db.row_counts().await;
        counts.iter().find(|(name, _)| name == table).unwrap_or_else(|| panic!("no table {table}")).1
    }
}
