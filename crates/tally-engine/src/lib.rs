//! The posting engine: the one way transfers enter the ledger.
//!
//! Every front end (CLI, HTTP, benchmarks) submits transfers here. The engine hands a batch to
//! `tally_store::Store::post_batch`, which decides and writes it in one SQL transaction, and
//! retries the whole batch when the database reports a transient failure (deadlock,
//! serialization failure, a concurrent insert of the same transfer id, a lost connection), with
//! bounded, jittered exponential backoff. Retrying is safe because a batch that failed wrote
//! nothing, and a retried batch sees any concurrent decision through its idempotency prefetch.
//! Decisions are never retried: a `version_conflict` or `insufficient_funds` goes back to the
//! caller as the transfer's result.
//!
//! Account locks are taken in id order and held only for one batch, so contention on hot
//! accounts queues instead of failing: no valid transfer is refused because another one was
//! touching the same account.

use std::time::Duration;
use tally_core::{BATCH_SIZE_MAX, Timestamp};
use tally_store::{Outcome, Store, StoreError, Submission};
use thiserror::Error;

/// How many times one batch is tried before the engine gives up on it.
pub const ATTEMPTS_MAX: u32 = 10;
/// First backoff ceiling; it doubles per attempt up to `BACKOFF_MAX`.
pub const BACKOFF_BASE: Duration = Duration::from_millis(2);
pub const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// How many holds one expiry pass resolves per SQL transaction.
pub const EXPIRY_BATCH_MAX: i64 = 1_000;

const _: () = assert!(ATTEMPTS_MAX >= 2 && BACKOFF_BASE.as_millis() < BACKOFF_MAX.as_millis());
const _: () = assert!(EXPIRY_BATCH_MAX as usize <= BATCH_SIZE_MAX);

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("a batch holds at most {BATCH_SIZE_MAX} transfers, got {0}")]
    BatchTooLarge(usize),
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted { attempts: u32, last: StoreError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::BatchTooLarge(_) => "batch_too_large",
            EngineError::RetriesExhausted { .. } => "overloaded",
            EngineError::Store(error) => error.code(),
        }
    }
}

/// Submits transfers to the store with bounded retries.
#[derive(Clone)]
pub struct Engine {
    store: Store,
}

impl Engine {
    pub fn new(store: Store) -> Engine {
        Engine { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Decides and writes a batch, in order; one outcome per submission.
    pub async fn submit(&self, submissions: &[Submission]) -> Result<Vec<Outcome>, EngineError> {
        if submissions.len() > BATCH_SIZE_MAX {
            return Err(EngineError::BatchTooLarge(submissions.len()));
        }
        let outcomes = retry(|| self.store.post_batch(submissions)).await?;
        assert_eq!(outcomes.len(), submissions.len());
        Ok(outcomes)
    }

    /// Decides and writes one transfer.
    pub async fn submit_one(&self, submission: Submission) -> Result<Outcome, EngineError> {
        let mut outcomes = self.submit(std::slice::from_ref(&submission)).await?;
        Ok(outcomes.pop().expect("one outcome per submission"))
    }

    /// Expires every hold whose timeout has passed at `at`. Returns how many expired.
    pub async fn expire_due(&self, at: Timestamp) -> Result<usize, EngineError> {
        let mut expired = 0;
        loop {
            let count = retry(|| self.store.expire_due(at, EXPIRY_BATCH_MAX)).await?;
            expired += count;
            if (count as i64) < EXPIRY_BATCH_MAX {
                return Ok(expired);
            }
        }
    }
}

/// Runs `attempt` until it succeeds, fails permanently, or `ATTEMPTS_MAX` is reached.
async fn retry<T, F, Fut>(mut attempt: F) -> Result<T, EngineError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut ceiling = BACKOFF_BASE;
    for attempts in 1.. {
        match attempt().await {
            Ok(value) => return Ok(value),
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
}
