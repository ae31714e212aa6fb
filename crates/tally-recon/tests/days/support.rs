//! A ledger on a fresh database whose clock the test sets.

use tally_core::{
    AccountId, BalanceRule, MinorUnits, Timestamp, TransferId, TransferKind, TransferRequest, TransferResult,
};
use tally_engine::{Engine, EngineConfig, Submission};
use tally_recon::Recon;
use tally_recon::report::{DayReport, Finding};
use tally_store::NewAccount;
use tally_testkit::TestDb;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

pub const ACTOR: &str = "test:recon";

pub struct Ledger {
    pub db: TestDb,
    pub engine: Engine,
    pub recon: Recon,
}

/// A ledger whose holds expire only when a test says so.
pub async fn ledger() -> Ledger {
    let db = tally_testkit::fresh_database().await;
    let engine =
        Engine::start(db.store.clone(), EngineConfig { expiry_sweep_interval: None, ..EngineConfig::default() });
    let recon = Recon::new(&db.store, tally_recon::POOL_SIZE_MIN);
    Ledger { db, engine, recon }
}

pub fn at(when: OffsetDateTime) -> Timestamp {
    Timestamp(i64::try_from(when.unix_timestamp_nanos() / 1000).expect("in range"))
}

pub fn day(text: &str) -> Date {
    tally_recon::days::parse_day(text).expect("a date")
}

pub fn posted(from: AccountId, to: AccountId, amount: MinorUnits) -> TransferRequest {
    TransferRequest::posted(TransferId(Uuid::now_v7()), from, to, amount)
}

pub fn pending(from: AccountId, to: AccountId, amount: MinorUnits, timeout: Option<u32>) -> TransferRequest {
    TransferRequest { kind: TransferKind::Pending, timeout_seconds: timeout, ..posted(from, to, amount) }
}

pub fn acting(kind: TransferKind, related: TransferId, amount: Option<MinorUnits>) -> TransferRequest {
    TransferRequest::acting_on(TransferId(Uuid::now_v7()), kind, related, amount)
}

impl Ledger {
    /// From now on, the store stamps times from `when` on.
    pub fn clock(&self, when: OffsetDateTime) {
        self.db.store.set_clock(at(when));
    }

    pub async fn open(&self, code: &str, rule: BalanceRule) -> AccountId {
        let new = NewAccount {
            ledger: tally_core::LedgerId::DEFAULT,
            id: None,
            code: Some(code.into()),
            currency: "USD".into(),
            rule,
            metadata: None,
        };
        self.db.store.create_account(&new, ACTOR).await.expect("open account").0.account.id
    }

    /// Posts one request at `when` and insists it succeeds.
    pub async fn post_at(&self, when: OffsetDateTime, request: TransferRequest) -> TransferId {
        self.clock(when);
        let id = request.id;
        let outcome = self.engine.submit_one(Submission { request, actor: ACTOR.into() }).await.expect("submit");
        assert_eq!(outcome.result, TransferResult::Ok, "transfer {id:?} at {when}");
        id
    }

    /// Runs the end of day for `day` as of `now`.
    pub async fn end_of_day(&self, now: OffsetDateTime, day_text: &str) -> DayReport {
        self.clock(now);
        tally_recon::eod::run_end_of_day(&self.recon, day(day_text), ACTOR, &tally_recon::Quiet)
            .await
            .expect("end of day")
    }

    /// Runs SQL behind Tally's back, with the append-only triggers off.
    pub async fn tamper(&self, sql: &str) {
        let client = self.db.connect().await;
        client.batch_execute(&format!("SET session_replication_role = replica; {sql}")).await.expect("tamper");
    }
}

/// The findings of one check.
pub fn findings<'a>(report: &'a DayReport, check: &str) -> Vec<&'a Finding> {
    report.findings.iter().filter(|f| f.check == check).collect()
}

/// How many findings the report counted for a check.
pub fn count(report: &DayReport, check: &str) -> i64 {
    report.checks.iter().find(|c| c.check == check).unwrap_or_else(|| panic!("no check {check}")).findings
}

impl Ledger {
    /// Opens an account without balance bound in `currency`.
    pub async fn open_in(&self, code: &str, currency: &str) -> AccountId {
        self.open_in_ledger(tally_core::LedgerId::DEFAULT, code, currency).await
    }

    /// Opens an account without balance bound in `currency` in `ledger`.
    pub async fn open_in_ledger(&self, ledger: tally_core::LedgerId, code: &str, currency: &str) -> AccountId {
        let new = NewAccount {
            ledger,
            id: None,
            code: Some(code.into()),
            currency: currency.into(),
            rule: BalanceRule::Unrestricted,
            metadata: None,
        };
        self.db.store.create_account(&new, ACTOR).await.expect("open account").0.account.id
    }

    /// Makes a ledger with this code.
    pub async fn new_ledger(&self, code: &str) -> tally_core::LedgerId {
        let new = tally_store::NewLedger { code: code.into(), name: format!("Ledger {code}"), metadata: None };
        self.db.store.create_ledger(&new, ACTOR).await.expect("make a ledger").0.id
    }
}
