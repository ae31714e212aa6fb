//! The database connection cut at each stage of a batch commit, on a real network hop
//! (`tally_testkit::FaultProxy` between the engine's store and PostgreSQL): before the writes,
//! during them, during COMMIT (sent, its answer lost), after COMMIT; and the database staying
//! unreachable. Every answer must be true, every transfer in the journal exactly once, and the
//! books balanced. Each scenario runs on the speculative path and on the locking path.

use crate::support::{ACTOR, Ledger, posted};
use std::time::Duration;
use tally_core::{AccountId, TransferRequest, TransferResult};
use tally_engine::{Engine, EngineConfig, EngineError, Outcome, Submission};
use tally_store::Store;
use tally_testkit::{Cut, Fault, FaultProxy, Stage};

/// How long these engines try to find out whether a batch whose COMMIT went unanswered
/// committed: short, so that the tests where the database stays away are quick.
const RESOLVE_WITHIN: Duration = Duration::from_millis(1_500);
/// How long a test waits for any answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// How much the wallet starts with, and one transfer moves.
const FUNDS: i128 = 1_000;
const AMOUNT: i128 = 10;

/// A ledger whose engine reaches PostgreSQL only through a fault proxy, with a funded wallet and
/// an empty shop. The accounts are opened, and the wallet funded, before any fault is armed.
struct Faulty {
    ledger: Ledger,
    proxy: FaultProxy,
    wallet: AccountId,
    shop: AccountId,
    speculative: bool,
}

async fn faulty(speculative: bool) -> Faulty {
    let db = tally_testkit::fresh_database().await;
    let proxy = FaultProxy::start(&db.conninfo).await;
    let store = Store::connect(&proxy.conninfo(), tally_testkit::TEST_POOL_SIZE).expect("pool");
    let config = EngineConfig {
        speculative,
        expiry_sweep_interval: None,
        resolve_within: RESOLVE_WITHIN,
        ..EngineConfig::default()
    };
    let ledger = Ledger { db, engine: Engine::start(store, config) };
    let (_bank, wallet) = ledger.funded_wallet("alice", FUNDS).await;
    let shop = ledger.open("shop", "USD", tally_core::BalanceRule::NoOverdraft).await;
    Faulty { ledger, proxy, wallet, shop, speculative }
}

impl Faulty {
    /// A transfer of `AMOUNT` from the wallet to the shop.
    fn payment(&self) -> TransferRequest {
        posted(self.wallet, self.shop, AMOUNT)
    }

    /// Submits one transfer and waits for the engine's answer.
    async fn submit(&self, request: &TransferRequest) -> Result<Outcome, EngineError> {
        let submission = Submission { request: request.clone(), actor: ACTOR.into() };
        tokio::time::timeout(ANSWER_WITHIN, self.ledger.engine.submit_one(submission))
            .await
            .unwrap_or_else(|_| panic!("{}: no answer within {ANSWER_WITHIN:?}", self.path()))
    }

    /// Arms `fault`, submits one payment, and returns it with the answer.
    async fn pay_under(&self, fault: Fault) -> (TransferRequest, Result<Outcome, EngineError>) {
        let request = self.payment();
        self.proxy.arm(fault);
        let answer = self.submit(&request).await;
        assert!(!self.proxy.is_armed(), "{}: the fault {fault:?} never fired", self.path());
        (request, answer)
    }

    fn path(&self) -> &'static str {
        if self.speculative { "speculative path" } else { "locking path" }
    }

    /// Each of `applied` is in the journal exactly once (and has its one event), nothing else of
    /// the shop's moved, and reconciliation finds the books balanced and complete.
    async fn assert_applied_once(&self, applied: &[&TransferRequest]) {
        let client = self.ledger.db.connect().await;
        for request in applied {
            let id = request.id.0;
            let rows: i64 =
                client.query_one("SELECT count(*) FROM transfers WHERE id = $1", &[&id]).await.unwrap().get(0);
            let events: i64 = client
                .query_one("SELECT count(*) FROM events WHERE entity_id = $1::uuid::text", &[&id])
                .await
                .unwrap()
                .get(0);
            assert_eq!((rows, events), (1, 1), "{}: transfer {id} in the journal, with its event", self.path());
        }
        let moved = AMOUNT * applied.len() as i128;
        assert_eq!(self.ledger.balance(self.shop).await, moved, "{}: the shop got each transfer once", self.path());
        assert_eq!(self.ledger.balance(self.wallet).await, FUNDS - moved, "{}: the wallet paid once", self.path());
        self.ledger.assert_consistent().await;
    }

    /// Nothing of `request` was written.
    async fn assert_absent(&self, request: &TransferRequest) {
        assert_eq!(self.ledger.db.store.journal_row(request.id.0).await.unwrap(), None, "{}", self.path());
    }
}

/// The answer is the transfer applied by this submission (not a replay of an earlier attempt).
fn assert_applied(faulty: &Faulty, answer: &Result<Outcome, EngineError>) {
    let outcome = answer.as_ref().unwrap_or_else(|error| panic!("{}: {} ({error})", faulty.path(), error.code()));
    assert_eq!(outcome.result, TransferResult::Ok, "{}", faulty.path());
    assert!(outcome.transfer.is_some(), "{}: an applied transfer comes with its journal entry", faulty.path());
}

/// The answer is an error with `code`.
fn assert_failed(faulty: &Faulty, answer: &Result<Outcome, EngineError>, code: &str) {
    match answer {
        Ok(outcome) => panic!("{}: expected {code}, got {outcome:?}", faulty.path()),
        Err(error) => assert_eq!(error.code(), code, "{}: {error}", faulty.path()),
    }
}

/// On both paths: one payment with `fault` armed is answered applied (by this submission, not as
/// a replay of an earlier attempt), and is in the journal once.
async fn applied_once_under(fault: Fault) {
    for speculative in [true, false] {
        let faulty = faulty(speculative).await;
        let (request, answer) = faulty.pay_under(fault).await;
        assert_applied(&faulty, &answer);
        faulty.assert_applied_once(&[&request]).await;
    }
}

/// On both paths: one payment with `fault` armed, after which the database stays unreachable
/// for longer than the engine looks, is answered `outcome_unknown`, never a failure; once the
/// database is back, a retry with the same id is answered `retried` and the payment is in the
/// journal once.
async fn unknown_under(fault: Fault, retried: TransferResult) {
    for speculative in [true, false] {
        let faulty = faulty(speculative).await;
        let started = tokio::time::Instant::now();
        let (request, answer) = faulty.pay_under(fault.then_unreachable()).await;
        assert_failed(&faulty, &answer, "outcome_unknown");
        assert!(
            started.elapsed() >= RESOLVE_WITHIN,
            "{}: answered before the engine looked long enough",
            faulty.path()
        );
        faulty.proxy.set_reachable(true);
        let retry = faulty.submit(&request).await.expect("the retry is answered");
        assert_eq!(retry.result, retried, "{}", faulty.path());
        faulty.assert_applied_once(&[&request]).await;
    }
}

/// Cut before the writes (the write transaction's BEGIN never arrives): nothing was written, the
/// engine tries again on another connection, and the caller gets the transfer applied.
#[tokio::test]
async fn a_connection_cut_before_the_writes_is_retried_and_the_transfer_applied_once() {
    applied_once_under(Fault::new(Stage::Begin, Cut::Before)).await;
}

/// Cut during the writes, after the journal rows were copied (the end of the COPY lost, or
/// passed and its answer lost): the transaction rolls back, and the retry applies the transfer.
#[tokio::test]
async fn a_connection_cut_during_the_writes_is_retried_and_the_transfer_applied_once() {
    applied_once_under(Fault::new(Stage::CopyDone, Cut::Before)).await;
    applied_once_under(Fault::new(Stage::CopyDone, Cut::AfterSending)).await;
}

/// Cut during COMMIT: PostgreSQL gets the COMMIT and commits, the engine never hears. With the
/// database reachable, the engine looks the batch up and answers what it decided.
#[tokio::test]
async fn a_commit_whose_answer_is_lost_is_resolved_to_the_transfer_applied() {
    applied_once_under(Fault::new(Stage::Commit, Cut::AfterSending)).await;
}

/// Cut during COMMIT before PostgreSQL got it: the transaction rolls back, the engine finds
/// nothing of the batch, tries again, and applies the transfer.
#[tokio::test]
async fn a_commit_that_never_arrived_is_resolved_as_rolled_back_and_retried() {
    applied_once_under(Fault::new(Stage::Commit, Cut::Before)).await;
}

/// Cut during COMMIT (PostgreSQL commits) with the database then unreachable: unknown, and the
/// retry finds the transfer applied by the first attempt.
#[tokio::test]
async fn a_commit_whose_outcome_cannot_be_found_out_is_answered_outcome_unknown() {
    unknown_under(Fault::new(Stage::Commit, Cut::AfterSending), TransferResult::Exists).await;
}

/// The same with a COMMIT that never reached PostgreSQL: just as unknown to the engine, and the
/// retry applies the transfer.
#[tokio::test]
async fn a_rolled_back_commit_that_cannot_be_found_out_is_answered_outcome_unknown_and_a_retry_applies_it() {
    unknown_under(Fault::new(Stage::Commit, Cut::Before), TransferResult::Ok).await;
}

/// Cut after COMMIT was answered: the caller gets the transfer applied, and the dead connection
/// does not trouble the next transfer.
#[tokio::test]
async fn a_connection_cut_after_commit_leaves_the_answer_applied() {
    for speculative in [true, false] {
        let faulty = faulty(speculative).await;
        let (request, answer) = faulty.pay_under(Fault::new(Stage::Commit, Cut::AfterAnswer)).await;
        assert_applied(&faulty, &answer);
        let next = faulty.payment();
        assert_applied(&faulty, &faulty.submit(&next).await);
        faulty.assert_applied_once(&[&request, &next]).await;
    }
}

/// The database gone before anything was committed, for longer than the engine retries: the
/// caller is told the database is unavailable (nothing was written, which is true), and a retry
/// with the same id once it is back applies the transfer once.
#[tokio::test]
async fn a_database_gone_before_commit_is_answered_database_unavailable_and_nothing_is_written() {
    for speculative in [true, false] {
        for stage in [Stage::Begin, Stage::CopyDone] {
            let faulty = faulty(speculative).await;
            let (request, answer) = faulty.pay_under(Fault::new(stage, Cut::Before).then_unreachable()).await;
            assert_failed(&faulty, &answer, "database_unavailable");
            faulty.proxy.set_reachable(true);
            faulty.assert_absent(&request).await;
            assert_applied(&faulty, &faulty.submit(&request).await);
            faulty.assert_applied_once(&[&request]).await;
        }
    }
}

/// Two pipelined batches: the second, decided on the first's effects, writes while the first's
/// COMMIT is held; then the first's connection is cut. Whether the first committed (its COMMIT
/// passed) or not (it never arrived), the second commits only if the first did, and both
/// callers end up with their transfers applied once.
#[tokio::test]
async fn a_successor_commits_only_on_its_predecessors_true_outcome() {
    for cut in [Cut::AfterSending, Cut::Before] {
        let faulty = faulty(true).await;
        let (first, second) = (faulty.payment(), faulty.payment());
        faulty.proxy.arm(Fault::new(Stage::Commit, cut).held(Duration::from_millis(500)));
        let (first_answer, second_answer) = tokio::join!(faulty.submit(&first), async {
            faulty.proxy.wait_fired(1, ANSWER_WITHIN).await;
            faulty.submit(&second).await
        });
        assert_applied(&faulty, &first_answer);
        assert_applied(&faulty, &second_answer);
        faulty.assert_applied_once(&[&first, &second]).await;
    }
}

/// Two pipelined batches, and the first's COMMIT answer lost with the database then gone: the
/// first caller is told the outcome is unknown; the second, which never reached its COMMIT, that
/// the database is unavailable (nothing of it was written). Retries with the same ids apply
/// each once.
#[tokio::test]
async fn a_successor_of_an_unknown_outcome_is_answered_truly() {
    let faulty = faulty(true).await;
    let (first, second) = (faulty.payment(), faulty.payment());
    let fault = Fault::new(Stage::Commit, Cut::AfterSending).held(Duration::from_millis(500)).then_unreachable();
    faulty.proxy.arm(fault);
    let (first_answer, second_answer) = tokio::join!(faulty.submit(&first), async {
        faulty.proxy.wait_fired(1, ANSWER_WITHIN).await;
        faulty.submit(&second).await
    });
    assert_failed(&faulty, &first_answer, "outcome_unknown");
    assert_failed(&faulty, &second_answer, "database_unavailable");
    faulty.assert_absent(&second).await;
    faulty.proxy.set_reachable(true);
    assert_eq!(faulty.submit(&first).await.expect("answered").result, TransferResult::Exists);
    assert_applied(&faulty, &faulty.submit(&second).await);
    faulty.assert_applied_once(&[&first, &second]).await;
}

/// A replay whose COMMIT answer is lost with the database then gone: the batch wrote nothing
/// (the transfer was decided before), so there is nothing to find out (a look-up could not reach
/// the database), and the caller gets the replay's answer.
#[tokio::test]
async fn a_replay_whose_commit_answer_is_lost_is_answered_without_looking_it_up() {
    for speculative in [true, false] {
        let faulty = faulty(speculative).await;
        let request = faulty.payment();
        assert_applied(&faulty, &faulty.submit(&request).await);
        faulty.proxy.arm(Fault::new(Stage::Commit, Cut::AfterSending).then_unreachable());
        let replayed = faulty.submit(&request).await;
        assert!(!faulty.proxy.is_armed(), "{}: the replay's batch committed nothing", faulty.path());
        let replayed = replayed.unwrap_or_else(|error| panic!("{}: {} ({error})", faulty.path(), error.code()));
        assert_eq!(replayed.result, TransferResult::Exists, "{}", faulty.path());
        faulty.proxy.set_reachable(true);
        faulty.assert_applied_once(&[&request]).await;
    }
}

/// An expiry pass whose COMMIT answer is lost: the engine finds its hold resolutions (by their
/// audit rows) and reports the hold it expired, which is expired once.
#[tokio::test]
async fn an_expiry_pass_whose_commit_answer_is_lost_is_resolved() {
    for speculative in [true, false] {
        let faulty = faulty(speculative).await;
        let hold = crate::support::pending(faulty.wallet, faulty.shop, AMOUNT, Some(1));
        assert_applied(&faulty, &faulty.submit(&hold).await);
        let later = tally_core::Timestamp(faulty.ledger.db.store.now().0 + 3_600_000_000);
        faulty.proxy.arm(Fault::new(Stage::Commit, Cut::AfterSending));
        let expired = faulty.ledger.engine.expire_due(later).await;
        assert!(!faulty.proxy.is_armed(), "{}", faulty.path());
        assert_eq!(expired.expect("the expiry pass is answered"), 1, "{}: the pass expired the hold", faulty.path());
        let status = match faulty.ledger.db.store.journal_row(hold.id.0).await.unwrap() {
            Some(tally_store::JournalRow::Applied { transfer, .. }) => transfer.status,
            other => panic!("{}: {other:?}", faulty.path()),
        };
        assert_eq!(status, tally_core::TransferStatus::Expired, "{}", faulty.path());
        assert_eq!(faulty.ledger.balance(faulty.wallet).await, FUNDS, "{}: the hold was released", faulty.path());
        faulty.ledger.assert_consistent().await;
    }
}
