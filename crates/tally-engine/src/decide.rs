//! Prefetch → decide: the one place outside the core that runs `LedgerState::apply_segments`
//! and `LedgerState::expire`.
//!
//! A batch is either transfers (`Work::Transfers`) or an expiry pass (`Work::Expiry`), and it
//! reads what it decides on in one of two ways (`Reads`):
//! - `Locking`: open the write transaction, read the journal rows it names, lock every account
//!   it touches (`FOR UPDATE`, id order), then read the rows again, since whoever decided one of
//!   those ids, or resolves or reverses a related transfer, held those locks too. The decisions
//!   hold until the batch commits.
//! - `Speculative`: read outside any transaction, lay the effects of batches in flight over what
//!   the database said, and take accounts from the sequencer's newest known state (reading only
//!   those it has never seen). The store's version checks and the predecessor's commit verify
//!   every assumption when the batch writes (see `speculative`).
//!
//! The store then writes the decided batch (`BatchConn::write_and_commit`); it decides nothing.
//! When the connection is lost after the batch's COMMIT was sent, `resolve` finds out on another
//! connection whether it committed, for a bounded time.

use crate::speculative::Sequencer;
use crate::{Outcome, RESOLVE_BACKOFF_BASE, RESOLVE_BACKOFF_MAX, Submission};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use tally_core::{AccountId, BatchOutput, LedgerState, Timestamp, TransferId, TransferRequest};
use tally_store::timing::Stopwatch;
use tally_store::{AccountOrder, BatchConn, BatchOutcome, Store, StoreError, UnansweredBatch};
use uuid::Uuid;

/// What a batch decides.
pub enum Work<'a> {
    /// Transfers, each caller's submission a segment of its own (see `apply_segments`).
    Transfers { submissions: &'a [Submission], segment_ends: &'a [usize] },
    /// Up to `limit` holds whose timeout passed at `at`.
    Expiry { at: Timestamp, limit: i64 },
}

/// How a batch reads what it decides on.
pub enum Reads<'a> {
    Locking,
    Speculative { sequencer: &'a mut Sequencer, number: u64 },
}

/// A batch decided and ready to write.
pub struct Decided {
    pub batch: BatchConn,
    pub state: LedgerState,
    pub output: BatchOutput,
    /// The version of every account the decisions read: what the account updates require.
    pub expected: HashMap<AccountId, i64>,
    pub at: Timestamp,
}

/// Decides a batch. Transfers are stamped with the time their accounts were read (after the
/// locks, on the locking path).
pub async fn decide(store: &Store, reads: Reads<'_>, work: Work<'_>) -> Result<Decided, StoreError> {
    let times = store.stage_timer();
    let mut watch = Stopwatch::start(&times);
    let mut batch = store.open_batch().await?;
    if matches!(reads, Reads::Locking) {
        batch.begin().await?;
    }
    watch.lap(0);
    let requests: Vec<TransferRequest> = match &work {
        Work::Transfers { submissions, .. } => submissions.iter().map(|s| s.request.clone()).collect(),
        Work::Expiry { .. } => Vec::new(),
    };
    let ids = match &work {
        Work::Transfers { .. } => transfer_ids_of(&requests),
        Work::Expiry { at, limit } => batch.due_holds(*at, *limit).await?,
    };
    let mut state = LedgerState::default();
    batch.prefetch(&ids, &mut state).await?;
    watch.lap(1);
    let touched = |state: &LedgerState| match &work {
        Work::Transfers { .. } => accounts_of(&requests, state),
        Work::Expiry { .. } => {
            state.transfers.values().flat_map(|t| [t.debit_account_id.0, t.credit_account_id.0]).collect()
        }
    };
    let sequencer = match reads {
        Reads::Locking => {
            let locked = touched(&state);
            batch.lock_accounts(&locked, &mut state).await?;
            batch.prefetch(&ids, &mut state).await?;
            // A related transfer that appeared meanwhile has accounts of its own (rare: out of
            // id order, so a deadlock is possible, which PostgreSQL breaks and the engine retries).
            let more: BTreeSet<Uuid> = touched(&state).difference(&locked).copied().collect();
            batch.lock_accounts(&more, &mut state).await?;
            None
        }
        Reads::Speculative { sequencer, number } => {
            sequencer.overlay(&ids, &mut state);
            sequencer.load_accounts(&batch, &touched(&state), &mut state).await?;
            Some((sequencer, number))
        }
    };
    watch.lap(2);
    let expected: HashMap<AccountId, i64> = state.accounts.values().map(|a| (a.id, a.version)).collect();
    let (at, output) = match &work {
        Work::Transfers { segment_ends, .. } => {
            let at = store.now();
            (at, state.apply_segments(at, &requests, segment_ends))
        }
        Work::Expiry { at, .. } => (*at, state.expire(*at, &ids.iter().copied().map(TransferId).collect::<Vec<_>>())),
    };
    if let Some((sequencer, number)) = sequencer {
        sequencer.publish(number, &state, &output);
    }
    watch.lap(3);
    Ok(Decided { batch, state, output, expected, at })
}

/// The ids a batch must look up: its own (idempotency) and those it names (related).
fn transfer_ids_of(requests: &[TransferRequest]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> =
        requests.iter().flat_map(|r| std::iter::once(r.id.0).chain(r.related_id.map(|id| id.0))).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Every account a batch of transfers may touch: those its requests name, and those of the
/// transfers they act on (which must already be in `state`).
fn accounts_of(requests: &[TransferRequest], state: &LedgerState) -> BTreeSet<Uuid> {
    let mut ids = BTreeSet::new();
    for request in requests {
        ids.extend(request.debit_account_id.map(|a| a.0));
        ids.extend(request.credit_account_id.map(|a| a.0));
        if let Some(related) = request.related_id.and_then(|id| state.transfers.get(&id)) {
            ids.extend([related.debit_account_id.0, related.credit_account_id.0]);
        }
    }
    ids
}

/// The outcomes of a batch of transfers, one per request.
pub fn outcomes(submissions: &[Submission], state: &LedgerState, output: &BatchOutput) -> Vec<Outcome> {
    submissions
        .iter()
        .zip(&output.results)
        .map(|(submission, result)| Outcome {
            result: *result,
            transfer: result.is_success().then(|| state.transfers[&submission.request.id].clone()),
        })
        .collect()
}

/// Each request's id and the caller who sent it, as the store records them.
pub fn actors(submissions: &[Submission]) -> Vec<(TransferId, &str)> {
    submissions.iter().map(|s| (s.request.id, s.actor.as_str())).collect()
}

/// Decides and writes one batch through the locking path, in one SQL transaction, and returns
/// what it decided. Not retried: a transient failure rolls the whole batch back and is returned.
/// A COMMIT that went unanswered is resolved (for at most `resolve_within`): committed, the
/// batch returns what it decided; rolled back, the lost connection is returned as the transient
/// failure it then was; still unknown, `StoreError::CommitUnanswered` is returned.
pub async fn commit_locked(
    store: &Store,
    work: Work<'_>,
    resolve_within: Duration,
) -> Result<(LedgerState, BatchOutput), StoreError> {
    // The submissions name each request's actor; an expiry pass has none.
    let actors = match &work {
        Work::Transfers { submissions, .. } => actors(submissions),
        Work::Expiry { .. } => Vec::new(),
    };
    let Decided { batch, state, output, expected, at } = decide(store, Reads::Locking, work).await?;
    match batch.commit_batch(&state, &output, &actors, &expected, at, AccountOrder::alone()).await {
        Ok(()) => Ok((state, output)),
        Err(StoreError::CommitUnanswered { cause, batch: Some(unanswered) }) => {
            match resolve(store, &unanswered, resolve_within).await {
                Some(BatchOutcome::Committed | BatchOutcome::Unchanged) => Ok((state, output)),
                Some(BatchOutcome::RolledBack) => Err(StoreError::Db(cause)),
                None => Err(StoreError::CommitUnanswered { cause, batch: Some(unanswered) }),
            }
        }
        Err(error) => Err(error),
    }
}

/// Finds out whether a batch whose COMMIT went unanswered committed, asking the database again,
/// with backoff, for at most `within` (it may be restarting). `None` when that could not be
/// found out in time: the outcome stays unknown.
pub async fn resolve(store: &Store, batch: &UnansweredBatch, within: Duration) -> Option<BatchOutcome> {
    let deadline = tokio::time::Instant::now() + within;
    let mut pause = RESOLVE_BACKOFF_BASE;
    for attempts in 1.. {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, store.batch_outcome(batch, left)).await {
            Ok(Ok(outcome)) => {
                tracing::info!(attempts, ?outcome, "found out what became of a batch whose COMMIT went unanswered");
                return Some(outcome);
            }
            Ok(Err(error)) => tracing::debug!(attempts, %error, "cannot yet find out whether a batch committed"),
            Err(_) => break,
        }
        tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + pause)).await;
        pause = (pause * 2).min(RESOLVE_BACKOFF_MAX);
    }
    tracing::warn!(?within, "could not find out whether a batch whose COMMIT went unanswered committed");
    None
}
