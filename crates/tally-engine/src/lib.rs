//! The posting engine: the one way transfers enter the ledger.
//!
//! Callers (CLI, HTTP, benchmarks) `submit` one transfer or a batch and await their own
//! outcomes. Submissions go through a bounded intake (counted in transfers: a full intake answers
//! `overloaded` at once instead of buffering without bound) to one batcher task, which packs
//! whole submissions into a batch until the batch holds `batch_size_max` transfers, or no more
//! submissions arrive within `batch_linger`, and hands it to one of `committers` commit tasks.
//! While one batch commits, the next one fills, so under load batches grow by themselves and
//! each costs PostgreSQL a few large statements instead of a few small statements per transfer.
//!
//! Each submission is its own segment of the batch, so a caller's linked chain never joins
//! another caller's transfers. By default the batcher decides each batch itself, on the state
//! the batches before it will leave, and a commit task writes it while the next batch is
//! decided (speculative pipelining: see `speculative`); a surprise there drains the pipeline
//! and runs the affected batches again through the locking path, `decide::commit_locked`, which
//! is also the whole path when `speculative` is off. After such a fallback the engine decides
//! through the locking path for `speculation_cooldown` before it speculates again: another
//! writer that changed an account under the pipeline (another Tally process, a SQL-native
//! client) is likely to do so again, and each failed speculation costs a write transaction
//! rolled back, a drained pipeline and the batch decided twice. The locking path retries a batch on
//! transient database failures (deadlock, serialization failure, a concurrent insert of the same
//! id, a lost connection) with bounded, jittered exponential backoff. Retrying is safe: a failed
//! SQL transaction wrote nothing, and the retry's idempotency prefetch sees whatever was
//! committed meanwhile. Decisions (`version_conflict`, `insufficient_funds`, ...) are outcomes,
//! never retried.
//!
//! Every answer is true. A failure before a batch's COMMIT was sent rolled it back, so it is
//! retried, and a caller whose retries run out is told that nothing was written. A connection
//! lost after the COMMIT was sent leaves the batch's outcome unknown: the engine then asks the
//! database, on another connection and for at most `resolve_within`, whether the batch committed
//! (`decide::resolve`). Committed, its callers get what it decided; rolled back, it is retried
//! like any other failure; still unknown at the bound, its callers are answered `OutcomeUnknown`
//! (the transfers may or may not have been applied, and a retry with the same ids is safe),
//! never that they failed.
//!
//! Several commit tasks, and several Tally processes, may write at once: correctness comes from
//! PostgreSQL (row versions checked under row locks, unique keys), never from anything held in
//! this process, which only makes the common case fast.
//!
//! Shutdown: `shutdown` closes the intake, commits everything already accepted, and returns once
//! every caller has its answer.

mod decide;
mod speculative;

use decide::{Reads, Work};
use speculative::Sequencer;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tally_core::{BATCH_SIZE_MAX, Timestamp, Transfer, TransferRequest, TransferResult};
use tally_store::{AccountOrder, BatchOutcome, BatchToken, Store, StoreError};
use thiserror::Error;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

/// How many times one batch is tried before the engine gives up on it.
pub const ATTEMPTS_MAX: u32 = 10;
/// First backoff ceiling; it doubles per attempt up to `BACKOFF_MAX`.
pub const BACKOFF_BASE: Duration = Duration::from_millis(2);
pub const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// How many holds one expiry pass resolves per SQL transaction.
pub const EXPIRY_BATCH_MAX: i64 = 1_000;
/// The most transfers accepted but not yet answered.
pub const INTAKE_TRANSFERS_MAX: usize = 1 << 20;
/// The most batches committing at once.
pub const COMMITTERS_MAX: usize = 16;
/// The longest a batch may wait for more submissions.
pub const BATCH_LINGER_MAX: Duration = Duration::from_millis(100);
/// The longest `shutdown_within` may be asked to wait.
pub const SHUTDOWN_BOUND_MAX: Duration = Duration::from_secs(600);
/// Bounds on how often the sweeper looks for holds past their timeout.
pub const EXPIRY_SWEEP_INTERVAL_MIN: Duration = Duration::from_millis(10);
pub const EXPIRY_SWEEP_INTERVAL_MAX: Duration = Duration::from_secs(3_600);
/// How long the engine tries, by default, to find out whether a batch whose COMMIT went
/// unanswered committed, before it answers `OutcomeUnknown`: long enough for a connection to be
/// opened again to a PostgreSQL that restarts quickly, short enough for a caller to wait.
pub const RESOLVE_WITHIN_DEFAULT: Duration = Duration::from_secs(5);
/// The longest `resolve_within` may be.
pub const RESOLVE_WITHIN_MAX: Duration = Duration::from_secs(60);
/// How long the engine decides through the locking path after speculation failed, by default:
/// long enough to spare many batches a failed speculation while another writer is busy (a batch
/// takes a few milliseconds), short enough to be back to speculation soon after it stopped.
pub const SPECULATION_COOLDOWN_DEFAULT: Duration = Duration::from_secs(1);
/// The longest `speculation_cooldown` may be.
pub const SPECULATION_COOLDOWN_MAX: Duration = Duration::from_secs(60);
/// The pause between two attempts to find that out starts here and doubles up to the maximum.
pub const RESOLVE_BACKOFF_BASE: Duration = Duration::from_millis(50);
pub const RESOLVE_BACKOFF_MAX: Duration = Duration::from_secs(1);

const _: () = assert!(ATTEMPTS_MAX >= 2 && BACKOFF_BASE.as_millis() < BACKOFF_MAX.as_millis());
const _: () = assert!(EXPIRY_BATCH_MAX as usize <= BATCH_SIZE_MAX);
const _: () = assert!(INTAKE_TRANSFERS_MAX >= BATCH_SIZE_MAX * COMMITTERS_MAX);
const _: () = assert!(RESOLVE_BACKOFF_BASE.as_millis() < RESOLVE_BACKOFF_MAX.as_millis());
const _: () = assert!(RESOLVE_BACKOFF_MAX.as_millis() < RESOLVE_WITHIN_DEFAULT.as_millis());
const _: () = assert!(RESOLVE_WITHIN_DEFAULT.as_millis() <= RESOLVE_WITHIN_MAX.as_millis());
const _: () = assert!(SPECULATION_COOLDOWN_DEFAULT.as_millis() <= SPECULATION_COOLDOWN_MAX.as_millis());

/// One transfer request and the authenticated caller who sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub request: TransferRequest,
    /// The authenticated caller, as the front end established it (never a request field).
    pub actor: String,
}

/// What became of one submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub result: TransferResult,
    /// The journal entry under the request's id, for `ok` and `exists`.
    pub transfer: Option<Transfer>,
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("a submission holds 1 to {BATCH_SIZE_MAX} transfers, got {0}")]
    BatchSizeInvalid(usize),
    #[error("the engine is at capacity ({INTAKE_TRANSFERS_MAX} transfers waiting); try again shortly")]
    Overloaded,
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// Every attempt rolled back: nothing was written.
    #[error(
        "the transfers were not applied: {attempts} attempts failed, the last with: {last}; nothing was written, \
         and retrying them with the same ids is safe"
    )]
    RetriesExhausted { attempts: u32, last: StoreError },
    /// The batch's COMMIT was sent and its answer lost, and the engine could not find out in time
    /// whether it committed.
    #[error(
        "the outcome is unknown: the transfers may or may not have been applied; retrying them with the same ids is safe"
    )]
    OutcomeUnknown,
    /// The batch failed and wrote nothing; `code` is the failure's (`EngineError::code`).
    #[error("the batch this submission was in failed: {message}")]
    BatchFailed { code: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::BatchSizeInvalid(_) => "batch_size_invalid",
            EngineError::Overloaded => "overloaded",
            EngineError::RetriesExhausted { last, .. } if last.is_connection_lost() => "database_unavailable",
            EngineError::RetriesExhausted { .. } => "overloaded",
            EngineError::ShuttingDown => "shutting_down",
            EngineError::OutcomeUnknown => "outcome_unknown",
            EngineError::BatchFailed { code, .. } => code,
            EngineError::Store(error) => error.code(),
        }
    }

    /// This failure as each caller of a batch gets it: `OutcomeUnknown` as it is, any other as
    /// `BatchFailed` with its code and message (what failed wrote nothing).
    fn for_caller(&self) -> EngineError {
        match self {
            EngineError::OutcomeUnknown => EngineError::OutcomeUnknown,
            other => EngineError::BatchFailed { code: other.code(), message: other.to_string() },
        }
    }
}

/// Tuning knobs, each bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// A batch closes when it holds this many transfers (1 to `BATCH_SIZE_MAX`).
    pub batch_size_max: usize,
    /// ... or when no further submission arrived for this long.
    pub batch_linger: Duration,
    /// How many batches may be committing at once (1 to `COMMITTERS_MAX`).
    pub committers: usize,
    /// How many transfers may wait for an answer before `overloaded` (up to `INTAKE_TRANSFERS_MAX`).
    pub intake_transfers_max: usize,
    /// Decide each batch on the state the batches before it will leave, without waiting for
    /// their commits (see `speculative`); `false` locks accounts for the whole batch instead.
    pub speculative: bool,
    /// After speculation failed (a batch ran again through the locking path), decide batches
    /// through the locking path for this long before speculating again; each further failure
    /// starts it again (zero: speculate again at once; up to `SPECULATION_COOLDOWN_MAX`).
    pub speculation_cooldown: Duration,
    /// How often a sweeper task expires holds past their timeout, through the batcher like any
    /// other write (`None`: only when `expire_due` is called).
    pub expiry_sweep_interval: Option<Duration>,
    /// How long to try to find out whether a batch whose COMMIT went unanswered committed, before
    /// its callers are answered `OutcomeUnknown` (above zero, up to `RESOLVE_WITHIN_MAX`).
    pub resolve_within: Duration,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            batch_size_max: BATCH_SIZE_MAX,
            // Measured on 2 cores (BENCHMARKS.md): three batches in flight and a 1 ms linger
            // gave the best throughput for both one-transfer and large client requests.
            batch_linger: Duration::from_millis(1),
            committers: 3,
            intake_transfers_max: 1 << 17,
            speculative: true,
            speculation_cooldown: SPECULATION_COOLDOWN_DEFAULT,
            // A hold is released at most about a second after its timeout.
            expiry_sweep_interval: Some(Duration::from_secs(1)),
            resolve_within: RESOLVE_WITHIN_DEFAULT,
        }
    }
}

impl EngineConfig {
    fn validate(&self) {
        assert!((1..=BATCH_SIZE_MAX).contains(&self.batch_size_max), "batch_size_max out of range");
        assert!(self.batch_linger <= BATCH_LINGER_MAX, "batch_linger above BATCH_LINGER_MAX");
        assert!((1..=COMMITTERS_MAX).contains(&self.committers), "committers out of range");
        assert!(
            (self.batch_size_max..=INTAKE_TRANSFERS_MAX).contains(&self.intake_transfers_max),
            "intake_transfers_max must hold at least one batch and at most INTAKE_TRANSFERS_MAX"
        );
        if let Some(interval) = self.expiry_sweep_interval {
            assert!(
                (EXPIRY_SWEEP_INTERVAL_MIN..=EXPIRY_SWEEP_INTERVAL_MAX).contains(&interval),
                "expiry_sweep_interval out of range"
            );
        }
        assert!(
            !self.resolve_within.is_zero() && self.resolve_within <= RESOLVE_WITHIN_MAX,
            "resolve_within out of range"
        );
        assert!(
            self.speculation_cooldown <= SPECULATION_COOLDOWN_MAX,
            "speculation_cooldown above SPECULATION_COOLDOWN_MAX"
        );
    }
}

/// Counters since the engine started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub batches: u64,
    pub transfers: u64,
    /// Transfers accepted and not yet answered.
    pub queued_transfers: u64,
    /// Batches that speculation could not commit and that ran again with account locks.
    pub reruns: u64,
    /// Batches decided through the locking path, without speculating, because speculation had
    /// failed less than `speculation_cooldown` before.
    pub cooldown_batches: u64,
}

/// One caller's submission waiting for its batch.
struct Job {
    submissions: Vec<Submission>,
    reply: oneshot::Sender<Result<Vec<Outcome>, EngineError>>,
}

struct Inner {
    store: Store,
    config: EngineConfig,
    /// The only sender of the intake; `shutdown` drops it, which ends the batcher once the
    /// intake is drained. Never held across an await.
    intake: RwLock<Option<mpsc::UnboundedSender<Job>>>,
    /// Expiry passes, run by the batcher between batches.
    expiries: mpsc::UnboundedSender<ExpireJob>,
    /// One permit per transfer that may wait; bounds the intake.
    capacity: Arc<Semaphore>,
    batches: AtomicU64,
    transfers: AtomicU64,
    reruns: AtomicU64,
    cooldown_batches: AtomicU64,
    batcher: Mutex<Option<JoinHandle<()>>>,
    /// Whether a bounded shutdown abandoned batches in flight.
    abandoned: AtomicBool,
}

/// A handle to the running engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Starts the batcher on the current tokio runtime.
    pub fn start(store: Store, config: EngineConfig) -> Engine {
        config.validate();
        let (sender, receiver) = mpsc::unbounded_channel();
        let (expiries, expiry_receiver) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            store,
            config,
            intake: RwLock::new(Some(sender)),
            expiries,
            capacity: Arc::new(Semaphore::new(config.intake_transfers_max)),
            batches: AtomicU64::new(0),
            transfers: AtomicU64::new(0),
            reruns: AtomicU64::new(0),
            cooldown_batches: AtomicU64::new(0),
            batcher: Mutex::new(None),
            abandoned: AtomicBool::new(false),
        });
        let handle = tokio::spawn(run_batcher(inner.clone(), receiver, expiry_receiver));
        inner.batcher.try_lock().expect("new engine").replace(handle);
        if let Some(interval) = config.expiry_sweep_interval {
            tokio::spawn(run_sweeper(Arc::downgrade(&inner), interval));
        }
        Engine { inner }
    }

    /// An engine with the default configuration.
    pub fn new(store: Store) -> Engine {
        Engine::start(store, EngineConfig::default())
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn config(&self) -> EngineConfig {
        self.inner.config
    }

    pub fn stats(&self) -> EngineStats {
        let waiting = self.inner.config.intake_transfers_max - self.inner.capacity.available_permits();
        EngineStats {
            batches: self.inner.batches.load(Ordering::Relaxed),
            transfers: self.inner.transfers.load(Ordering::Relaxed),
            queued_transfers: waiting as u64,
            reruns: self.inner.reruns.load(Ordering::Relaxed),
            cooldown_batches: self.inner.cooldown_batches.load(Ordering::Relaxed),
        }
    }

    /// Decides and writes a submission of 1 to `BATCH_SIZE_MAX` transfers, in order, together
    /// with whatever else is submitted meanwhile; one outcome per transfer.
    pub async fn submit(&self, submissions: Vec<Submission>) -> Result<Vec<Outcome>, EngineError> {
        let count = submissions.len();
        if count == 0 || count > self.inner.config.batch_size_max {
            return Err(EngineError::BatchSizeInvalid(count));
        }
        let permits = u32::try_from(count).expect("bounded by BATCH_SIZE_MAX");
        let permit =
            self.inner.capacity.clone().try_acquire_many_owned(permits).map_err(|_| EngineError::Overloaded)?;
        let (reply, answer) = oneshot::channel();
        {
            let intake = self.inner.intake.read().expect("intake lock poisoned");
            let sender = intake.as_ref().ok_or(EngineError::ShuttingDown)?;
            sender.send(Job { submissions, reply }).map_err(|_| EngineError::ShuttingDown)?;
        }
        // A dropped answer means the engine abandoned the batch (a bounded shutdown) at a point
        // where it may or may not have committed.
        let outcomes = answer.await.map_err(|_| EngineError::OutcomeUnknown)?;
        drop(permit);
        let outcomes = outcomes?;
        assert_eq!(outcomes.len(), count, "one outcome per submitted transfer");
        Ok(outcomes)
    }

    /// Decides and writes one transfer.
    pub async fn submit_one(&self, submission: Submission) -> Result<Outcome, EngineError> {
        let mut outcomes = self.submit(vec![submission]).await?;
        Ok(outcomes.pop().expect("one outcome per submission"))
    }

    /// One transfer in its own SQL transaction, bypassing the batcher: the benchmark's
    /// `direct` mode, to compare against batching.
    pub async fn submit_direct(&self, submission: Submission) -> Result<Outcome, EngineError> {
        let submissions = [submission];
        let work = || Work::Transfers { submissions: &submissions, segment_ends: &[1] };
        let within = self.inner.config.resolve_within;
        let (state, output) = retry(|| decide::commit_locked(&self.inner.store, work(), within)).await?;
        let mut outcomes = decide::outcomes(&submissions, &state, &output);
        Ok(outcomes.pop().expect("one outcome per submission"))
    }

    /// Expires every hold whose timeout has passed at `at`. Returns how many expired.
    pub async fn expire_due(&self, at: Timestamp) -> Result<usize, EngineError> {
        let mut expired = 0;
        loop {
            let (reply, answer) = oneshot::channel();
            self.inner.expiries.send(ExpireJob { at, reply }).map_err(|_| EngineError::ShuttingDown)?;
            let count = answer.await.map_err(|_| EngineError::OutcomeUnknown)??;
            expired += count;
            if (count as i64) < EXPIRY_BATCH_MAX {
                return Ok(expired);
            }
        }
    }

    /// Stops accepting submissions, commits everything already accepted, and waits until every
    /// caller has been answered. Idempotent.
    pub async fn shutdown(&self) {
        drop(self.inner.intake.write().expect("intake lock poisoned").take());
        if let Some(batcher) = self.inner.batcher.lock().await.take() {
            let _ = batcher.await;
        }
    }

    /// `shutdown`, within `bound`. What has not finished by then is abandoned: the batcher and
    /// every commit task stop where they are, each open SQL transaction is rolled back by
    /// closing its connection (unless its COMMIT was already on its way), and each caller still
    /// waiting is answered `OutcomeUnknown`, since a batch may have committed just before.
    /// Returns whether everything finished in time. Idempotent.
    pub async fn shutdown_within(&self, bound: Duration) -> bool {
        assert!(bound <= SHUTDOWN_BOUND_MAX, "shutdown bound above SHUTDOWN_BOUND_MAX");
        drop(self.inner.intake.write().expect("intake lock poisoned").take());
        let Some(mut batcher) = self.inner.batcher.lock().await.take() else {
            return !self.inner.abandoned.load(Ordering::Relaxed);
        };
        if tokio::time::timeout(bound, &mut batcher).await.is_ok() {
            return true;
        }
        self.inner.abandoned.store(true, Ordering::Relaxed);
        batcher.abort();
        let _ = batcher.await;
        tracing::warn!(?bound, "engine shutdown bound reached: batches in flight were abandoned");
        false
    }
}

/// A batch: its submissions in order, where each caller's segment ends, and the callers.
struct Batch {
    submissions: Vec<Submission>,
    segment_ends: Vec<usize>,
    replies: Vec<oneshot::Sender<Result<Vec<Outcome>, EngineError>>>,
}

impl Batch {
    fn new(jobs: Vec<Job>) -> Batch {
        let mut batch = Batch {
            submissions: Vec::with_capacity(jobs.iter().map(|j| j.submissions.len()).sum()),
            segment_ends: Vec::with_capacity(jobs.len()),
            replies: Vec::with_capacity(jobs.len()),
        };
        for job in jobs {
            batch.submissions.extend(job.submissions);
            batch.segment_ends.push(batch.submissions.len());
            batch.replies.push(job.reply);
        }
        batch
    }

    /// Hands each caller its own slice, from the back so that nothing is copied twice.
    fn answer(self, mut outcomes: Vec<Outcome>) {
        assert_eq!(outcomes.len(), self.submissions.len());
        let starts: Vec<usize> =
            std::iter::once(0).chain(self.segment_ends.iter().copied()).take(self.replies.len()).collect();
        for (reply, start) in self.replies.into_iter().zip(starts).rev() {
            let _ = reply.send(Ok(outcomes.split_off(start)));
        }
    }

    /// One batch per caller, in order.
    fn split(self) -> Vec<Batch> {
        let mut submissions = self.submissions.into_iter();
        let mut start = 0;
        let mut batches = Vec::with_capacity(self.replies.len());
        for (end, reply) in self.segment_ends.into_iter().zip(self.replies) {
            let own: Vec<Submission> = submissions.by_ref().take(end - start).collect();
            assert_eq!(own.len(), end - start, "segments cover the batch");
            batches.push(Batch { segment_ends: vec![own.len()], submissions: own, replies: vec![reply] });
            start = end;
        }
        batches
    }

    fn fail(self, error: &EngineError) {
        for reply in self.replies {
            let _ = reply.send(Err(error.for_caller()));
        }
    }
}

/// What became of a speculative batch's write transaction.
enum Settled {
    /// It committed (or, its COMMIT unanswered, was found to have committed, or to have changed
    /// nothing): these are its callers' outcomes.
    Committed(Vec<Outcome>),
    /// It wrote nothing (it failed before its COMMIT was sent, or was found to have rolled back).
    RolledBack,
    /// Its COMMIT went unanswered and the engine could not find out in time whether it committed.
    Unknown,
}

/// What a speculative commit task reports back to the batcher.
struct Done {
    number: u64,
    committed: bool,
    /// The batch, when its callers were not answered and it must run again.
    rerun: Option<Batch>,
    /// Whether the batch's outcome stayed unknown (its callers were told so): what the sequencer
    /// knows may then be wrong, and the pipeline must start afresh from the database.
    unknown: bool,
}

/// The batcher: packs waiting jobs into batches and hands each to a commit task.
async fn run_batcher(
    inner: Arc<Inner>,
    mut intake: mpsc::UnboundedReceiver<Job>,
    mut expiries: mpsc::UnboundedReceiver<ExpireJob>,
) {
    let slots = Arc::new(Semaphore::new(inner.config.committers));
    let (done_sender, mut done) = mpsc::unbounded_channel::<Done>();
    let mut pipeline = Pipeline {
        sequencer: Sequencer::default(),
        previous: None,
        turn: None,
        number: 0,
        reruns: BTreeMap::new(),
        unknown: false,
        cooldown_until: None,
        locked_in_flight: false,
        tasks: JoinSet::new(),
    };
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => tokio::select! {
                job = intake.recv() => match job {
                    Some(job) => job,
                    None => break,
                },
                Some(expiry) = expiries.recv() => {
                    run_expiry(&inner, &mut pipeline, &slots, &mut done, &done_sender, expiry).await;
                    continue;
                }
                // A failed batch waits for its rerun; do not wait for new work to notice it.
                Some(report) = done.recv() => {
                    pipeline.absorb(report);
                    if pipeline.must_fall_back() {
                        drain_and_fall_back(&inner, &mut pipeline, &slots, &mut done).await;
                    }
                    continue;
                }
            },
        };
        // Wait for a free committer; the batch keeps filling meanwhile.
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        let (jobs, next) = fill(&inner, &mut intake, first).await;
        carried = next;
        let batch = Batch::new(jobs);
        if !inner.config.speculative {
            let inner = inner.clone();
            pipeline.spawn(async move {
                commit_locked(&inner, batch).await;
                drop(slot);
            });
            continue;
        }
        let slot = ready(&inner, &mut pipeline, &slots, &mut done, slot).await;
        if pipeline.cooling_down() {
            inner.cooldown_batches.fetch_add(1, Ordering::Relaxed);
            pipeline.locked_in_flight = true;
            let inner = inner.clone();
            pipeline.spawn(async move {
                commit_locked(&inner, batch).await;
                drop(slot);
            });
            continue;
        }
        pipeline.start(&inner, batch, None, slot, done_sender.clone()).await;
        while let Ok(expiry) = expiries.try_recv() {
            run_expiry(&inner, &mut pipeline, &slots, &mut done, &done_sender, expiry).await;
        }
    }
    // Wait for every commit task to finish, then run again whatever they could not answer.
    drain_and_fall_back(&inner, &mut pipeline, &slots, &mut done).await;
}

/// Makes the pipeline ready for the next batch, holding `slot`: takes in the reports of the
/// batches that finished, and falls back when one of them needs it, or when speculation is about
/// to resume while batches decided through the locking path during the cool-down are still in
/// flight (speculation must not read what they are about to change).
async fn ready(
    inner: &Inner,
    pipeline: &mut Pipeline,
    slots: &Arc<Semaphore>,
    done: &mut mpsc::UnboundedReceiver<Done>,
    slot: OwnedSemaphorePermit,
) -> OwnedSemaphorePermit {
    while let Ok(report) = done.try_recv() {
        pipeline.absorb(report);
    }
    let resuming = pipeline.locked_in_flight && !pipeline.cooling_down();
    if !pipeline.must_fall_back() && !resuming {
        return slot;
    }
    drop(slot);
    drain_and_fall_back(inner, pipeline, slots, done).await;
    slots.clone().acquire_owned().await.expect("never closed")
}

/// Waits until no batch is in flight, takes in every report, and falls back: forgets all
/// speculation and runs the batches that need it again through the locking path.
async fn drain_and_fall_back(
    inner: &Inner,
    pipeline: &mut Pipeline,
    slots: &Semaphore,
    done: &mut mpsc::UnboundedReceiver<Done>,
) {
    let committers = u32::try_from(inner.config.committers).expect("small");
    let _all = slots.acquire_many(committers).await.expect("never closed");
    while let Ok(report) = done.try_recv() {
        pipeline.absorb(report);
    }
    pipeline.fall_back(inner).await;
}

/// The sweeper: every `interval`, expires the holds past their timeout. It holds the engine
/// weakly and stops once the engine is shut down or dropped.
async fn run_sweeper(engine: std::sync::Weak<Inner>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = engine.upgrade() else { return };
        if inner.intake.read().expect("intake lock poisoned").is_none() {
            return;
        }
        let at = inner.store.now();
        match (Engine { inner }).expire_due(at).await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "sweeper expired holds past their timeout"),
            Err(EngineError::ShuttingDown) => return,
            // The next tick tries again; expiry is idempotent.
            Err(error) => tracing::warn!(code = error.code(), %error, "expiry sweep failed"),
        }
    }
}

/// A request to expire the holds whose timeout passed at `at`.
struct ExpireJob {
    at: Timestamp,
    reply: oneshot::Sender<Result<usize, EngineError>>,
}

/// One expiry pass, in sequence with the batches: decided on the same state, written the same
/// way, so that releasing holds never surprises the batches around it.
async fn run_expiry(
    inner: &Arc<Inner>,
    pipeline: &mut Pipeline,
    slots: &Arc<Semaphore>,
    done: &mut mpsc::UnboundedReceiver<Done>,
    done_sender: &mpsc::UnboundedSender<Done>,
    expiry: ExpireJob,
) {
    if inner.config.speculative && !pipeline.cooling_down() {
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        let slot = ready(inner, pipeline, slots, done, slot).await;
        if !pipeline.cooling_down() {
            pipeline.start(inner, Batch::new(Vec::new()), Some(expiry), slot, done_sender.clone()).await;
            return;
        }
        // A fallback just now started a cool-down: this pass takes the locking path too.
    }
    let work = || Work::Expiry { at: expiry.at, limit: EXPIRY_BATCH_MAX };
    let within = inner.config.resolve_within;
    let result = retry(|| decide::commit_locked(&inner.store, work(), within)).await;
    let _ = expiry.reply.send(result.map(|(_, output)| output.resolved.len()));
}

/// Adds waiting jobs to a batch until it is full or no job arrives within the linger time.
/// Returns the batch's jobs and a job that did not fit.
async fn fill(inner: &Inner, intake: &mut mpsc::UnboundedReceiver<Job>, first: Job) -> (Vec<Job>, Option<Job>) {
    let mut size = first.submissions.len();
    let mut jobs = vec![first];
    let linger = tokio::time::sleep(inner.config.batch_linger);
    tokio::pin!(linger);
    while size < inner.config.batch_size_max {
        let job = match intake.try_recv() {
            Ok(job) => job,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                tokio::select! {
                    job = intake.recv() => match job { Some(job) => job, None => break },
                    () = &mut linger => break,
                }
            }
        };
        if size + job.submissions.len() > inner.config.batch_size_max {
            return (jobs, Some(job));
        }
        size += job.submissions.len();
        jobs.push(job);
    }
    (jobs, None)
}

/// The speculative pipeline's state, owned by the batcher.
struct Pipeline {
    sequencer: Sequencer,
    /// Resolves to whether the previous batch (and every one before it) was answered.
    previous: Option<oneshot::Receiver<bool>>,
    /// Resolves to the previous batch's token once its write transaction is open, or to an
    /// error once it gave up before that.
    turn: Option<oneshot::Receiver<BatchToken>>,
    number: u64,
    /// Batches that must run again through the locking path, by number.
    reruns: BTreeMap<u64, Batch>,
    /// Whether a batch's outcome stayed unknown since the pipeline last started afresh.
    unknown: bool,
    /// Until when batches are decided through the locking path (set when speculation failed).
    cooldown_until: Option<tokio::time::Instant>,
    /// Whether batches decided through the locking path during a cool-down may still be in
    /// flight: speculation resumes only after they finished.
    locked_in_flight: bool,
    /// The commit tasks, owned here so that aborting the batcher aborts them too (a bounded
    /// shutdown): each then drops its connection, which rolls its SQL transaction back.
    tasks: JoinSet<()>,
}

impl Pipeline {
    /// Starts a commit task, first forgetting the ones that finished (at most `committers` run).
    fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        while self.tasks.try_join_next().is_some() {}
        self.tasks.spawn(task);
    }

    fn absorb(&mut self, report: Done) {
        if report.committed && report.rerun.is_none() {
            self.sequencer.forget_batch(report.number);
        }
        if let Some(batch) = report.rerun {
            self.reruns.insert(report.number, batch);
        }
        self.unknown |= report.unknown;
    }

    fn cooling_down(&self) -> bool {
        self.cooldown_until.is_some_and(|until| tokio::time::Instant::now() < until)
    }

    fn must_fall_back(&self) -> bool {
        !self.reruns.is_empty() || self.unknown || self.sequencer.account_count() > speculative::ACCOUNT_CACHE_MAX
    }

    /// With nothing in flight: forget all speculation and run the failed batches, and every
    /// batch after them, again through the locking path, in order.
    async fn fall_back(&mut self, inner: &Inner) {
        self.sequencer.clear();
        self.previous = None;
        self.turn = None;
        self.unknown = false;
        // Whatever was in flight has finished: the batcher holds every slot.
        self.locked_in_flight = false;
        let reruns = std::mem::take(&mut self.reruns);
        if !reruns.is_empty() {
            tracing::info!(batches = reruns.len(), "speculation failed; running batches again with account locks");
            let cooldown = inner.config.speculation_cooldown;
            self.cooldown_until = (!cooldown.is_zero()).then(|| tokio::time::Instant::now() + cooldown);
        }
        for (_, batch) in reruns {
            inner.reruns.fetch_add(1, Ordering::Relaxed);
            commit_locked(inner, batch).await;
        }
    }

    /// Decides the batch now and commits it in a task of its own.
    async fn start(
        &mut self,
        inner: &Arc<Inner>,
        batch: Batch,
        expiry: Option<ExpireJob>,
        slot: OwnedSemaphorePermit,
        done: mpsc::UnboundedSender<Done>,
    ) {
        self.number += 1;
        let number = self.number;
        let (work, expiry_reply) = match expiry {
            None => (Work::Transfers { submissions: &batch.submissions, segment_ends: &batch.segment_ends }, None),
            Some(job) => (Work::Expiry { at: job.at, limit: EXPIRY_BATCH_MAX }, Some(job.reply)),
        };
        let reads = Reads::Speculative { sequencer: &mut self.sequencer, number };
        let decided = decide::decide(&inner.store, reads, work).await;
        let (signal, next) = oneshot::channel();
        let previous = self.previous.replace(next);
        let (begun, next_turn) = oneshot::channel::<BatchToken>();
        let turn = self.turn.replace(next_turn);
        let inner = inner.clone();
        self.spawn(async move {
            let decided_ok = match &decided {
                Ok(_) => true,
                Err(error) => {
                    tracing::debug!(%error, "could not decide a batch speculatively");
                    false
                }
            };
            let expired = decided.as_ref().map_or(0, |d| d.output.resolved.len());
            // Write transactions open in batch order, and none is open while this batch waits
            // for its turn. A predecessor that gave up before opening its own (a dropped sender)
            // may have been the base of this batch's decisions: this one then writes nothing
            // and runs again with locks.
            let after = match turn {
                None => Ok(None),
                Some(turn) => turn.await.map(Some),
            };
            let settled = match (decided, after) {
                (Ok(decided), Ok(after)) => {
                    let outcomes = decide::outcomes(&batch.submissions, &decided.state, &decided.output);
                    let decide::Decided { batch: connection, state, output, expected, at } = decided;
                    // The store updates this batch's accounts after `after` locked its own, and
                    // commits only if `after` committed: a version number names a state only
                    // along one history, and these decisions rest on the predecessor's. Dropping
                    // `begun` unsent tells the successor the same.
                    let order = AccountOrder {
                        after,
                        begun: move |token| {
                            let _ = begun.send(token);
                        },
                    };
                    let actors = decide::actors(&batch.submissions);
                    match connection.commit_batch(&state, &output, &actors, &expected, at, order).await {
                        Ok(()) => Settled::Committed(outcomes),
                        Err(StoreError::CommitUnanswered { batch, .. }) => {
                            let within = inner.config.resolve_within;
                            let resolved = match batch {
                                Some(unanswered) => decide::resolve(&inner.store, &unanswered, within).await,
                                None => None,
                            };
                            match resolved {
                                Some(BatchOutcome::Committed | BatchOutcome::Unchanged) => Settled::Committed(outcomes),
                                Some(BatchOutcome::RolledBack) => Settled::RolledBack,
                                None => Settled::Unknown,
                            }
                        }
                        Err(error) => {
                            tracing::debug!(%error, "speculative batch failed; it will run again with locks");
                            Settled::RolledBack
                        }
                    }
                }
                (Ok(decided), Err(_)) => {
                    decided.batch.rollback().await;
                    Settled::RolledBack
                }
                (Err(_), _) => Settled::RolledBack,
            };
            let committed = decided_ok && matches!(settled, Settled::Committed(_));
            let earlier_answered = match previous {
                Some(previous) => previous.await.unwrap_or(false),
                None => true,
            };
            let answered = match settled {
                Settled::Committed(outcomes) if earlier_answered => {
                    inner.batches.fetch_add(1, Ordering::Relaxed);
                    inner.transfers.fetch_add(batch.submissions.len() as u64, Ordering::Relaxed);
                    batch.answer(outcomes);
                    if let Some(reply) = expiry_reply {
                        let _ = reply.send(Ok(expired));
                    }
                    let _ = done.send(Done { number, committed, rerun: None, unknown: false });
                    true
                }
                Settled::Unknown => {
                    // Its callers have waited the bound: they are told the outcome is unknown,
                    // rather than made to wait for a rerun that cannot learn more while the
                    // database stays away.
                    batch.fail(&EngineError::OutcomeUnknown);
                    if let Some(reply) = expiry_reply {
                        let _ = reply.send(Err(EngineError::OutcomeUnknown));
                    }
                    let _ = done.send(Done { number, committed, rerun: None, unknown: true });
                    false
                }
                _ => {
                    // An expiry pass is not run again: the caller (a sweeper) simply tries later.
                    if let Some(reply) = expiry_reply {
                        let message = "the expiry pass met a concurrent change; try again".to_owned();
                        let _ = reply.send(Err(EngineError::BatchFailed { code: "conflict", message }));
                    }
                    let _ = done.send(Done { number, committed, rerun: Some(batch), unknown: false });
                    false
                }
            };
            let _ = signal.send(answered);
            drop(slot);
        });
    }
}

/// Commits one batch through the locking path, with retries, and answers its callers. A batch
/// of several callers that fails on a database error no retry can cure (a value PostgreSQL
/// refuses, say) is committed again one caller at a time, so that only the caller whose
/// submission causes it gets the error: one client's bad data never fails another's transfers.
async fn commit_locked(inner: &Inner, batch: Batch) {
    let work = || Work::Transfers { submissions: &batch.submissions, segment_ends: &batch.segment_ends };
    let within = inner.config.resolve_within;
    let result = retry(|| decide::commit_locked(&inner.store, work(), within)).await;
    match result.map(|(state, output)| decide::outcomes(&batch.submissions, &state, &output)) {
        Ok(outcomes) => {
            inner.batches.fetch_add(1, Ordering::Relaxed);
            inner.transfers.fetch_add(batch.submissions.len() as u64, Ordering::Relaxed);
            batch.answer(outcomes);
        }
        Err(EngineError::Store(error)) if batch.replies.len() > 1 => {
            tracing::warn!(%error, callers = batch.replies.len(), "batch failed; committing its callers one by one");
            for single in batch.split() {
                Box::pin(commit_locked(inner, single)).await;
            }
        }
        Err(error) => {
            tracing::error!(%error, transfers = batch.submissions.len(), "batch failed");
            batch.fail(&error);
        }
    }
}

/// Runs `attempt` until it succeeds, fails permanently, or `ATTEMPTS_MAX` is reached. Every
/// attempt it repeats rolled back (an attempt whose COMMIT went unanswered and could not be
/// resolved ends the retries with `OutcomeUnknown`), so running out of attempts means that
/// nothing was written.
async fn retry<T, F, Fut>(mut attempt: F) -> Result<T, EngineError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut ceiling = BACKOFF_BASE;
    for attempts in 1.. {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error @ StoreError::CommitUnanswered { .. }) => {
                tracing::warn!(attempts, %error, "a batch's outcome stays unknown; its callers are told so");
                return Err(EngineError::OutcomeUnknown);
            }
            Err(error) if !error.is_transient() => return Err(EngineError::Store(error)),
            Err(error) if attempts >= ATTEMPTS_MAX => {
                return Err(EngineError::RetriesExhausted { attempts, last: error });
            }
            Err(error) => {
                tracing::debug!(attempts, %error, "transient database failure; retrying the batch");
                tokio::time::sleep(jitter(ceiling)).await;
                ceiling = (ceiling * 2).min(BACKOFF_MAX);
            }
        }
    }
    unreachable!("the loop returns")
}

/// Full jitter: a uniformly random pause below the ceiling, so retries spread out.
fn jitter(ceiling: Duration) -> Duration {
    let micros = u64::try_from(ceiling.as_micros()).expect("small durations");
    Duration::from_micros(fastrand::u64(0..=micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_below_the_ceiling() {
        for _ in 0..1000 {
            assert!(jitter(BACKOFF_MAX) <= BACKOFF_MAX);
        }
    }

    #[test]
    fn default_config_is_valid() {
        EngineConfig::default().validate();
    }
}
