//! Speculative pipelining: decide batch k+1 while batch k is still committing.
//!
//! With row locks alone, a batch holds its accounts' locks from its first read until its
//! commit, and the next batch that shares a hot account waits the whole time: PostgreSQL works
//! on one batch at a time. Instead, the engine keeps the newest state of every account it has
//! seen (`Sequencer`), including the effects of batches not yet committed, and decides the next
//! batch from it without taking locks. The batch is then written with version-checked account
//! updates (`WHERE version = expected`): its journal rows are copied while the previous batch
//! commits, and only its account updates wait for the previous batch's row locks.
//!
//! Every assumption is checked by PostgreSQL when the batch writes:
//! - an account changed by someone else (another Tally process, the SQL interface, an account
//!   operation) fails the version check;
//! - a transfer id decided elsewhere fails the primary key;
//! - a hold resolved or a transfer reversed elsewhere fails the resolution count or a unique
//!   index;
//! - the batch it was decided after did not commit: a batch commits only once its predecessor
//!   committed (`AccountOrder::after`). This is what makes the version check sound. A version
//!   number names a state only along one history: batch k+1 expects the versions batch k would
//!   write, and if k fails, another writer can reach the same numbers with other totals (the
//!   seed's `compat.transfer_money` adds 1 per transfer, as the core does). Without the
//!   dependency, k+1's check then passed and it wrote totals computed on k's effects, which
//!   never committed, over the other writer's: money appeared or vanished (issue 10). With it,
//!   every version a batch expects is one a committed state had, and versions strictly
//!   increase, so an equal version is the same state.
//!
//! Decisions read outside any SQL transaction, and a batch opens its write transaction only
//! once the previous batch has opened its own: no transaction ever sits open while Tally waits
//! for something PostgreSQL cannot see. The waits for the predecessor's account locks and for
//! its commit happen in PostgreSQL, on the predecessor's advisory locks, so the deadlock
//! detector sees them; meanwhile the batch copies its journal rows, overlapping the
//! predecessor's commit.
//!
//! Any such failure, and any failure of a batch that later batches were decided on, makes the
//! engine fall back: it waits for every batch in flight, forgets what it knew, and re-runs the
//! submissions of the failed batches and of every batch after them through the locking path
//! (`decide::commit_locked`), in order. Callers are answered strictly in batch order, and only
//! once every earlier batch has committed, so no answer rests on a batch that failed. A
//! submission re-run after its batch had in fact committed answers `exists` for what it applied.

use std::collections::HashMap;
use tally_core::{Account, AccountId, BatchOutput, LedgerState, Rejection, Transfer, TransferId};
use tally_store::{BatchConn, StoreError};

/// The most accounts the sequencer remembers; past it, it forgets everything at a quiet moment.
pub const ACCOUNT_CACHE_MAX: usize = 2_000_000;

/// What the engine knows beyond the database: the newest state of accounts, and the journal
/// changes of batches that may not have committed yet, each tagged with its batch number.
#[derive(Default)]
pub struct Sequencer {
    accounts: HashMap<AccountId, Account>,
    transfers: HashMap<TransferId, (Transfer, u64)>,
    rejections: HashMap<TransferId, (Rejection, u64)>,
    reversed: HashMap<TransferId, u64>,
}

impl Sequencer {
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Forgets everything (after a failure, or when the cache is full).
    pub fn clear(&mut self) {
        *self = Sequencer::default();
    }

    /// Batch `number` committed: its journal changes are in the database now, so whoever reads
    /// the database from here on sees them. Entries a later batch changed stay.
    pub fn forget_batch(&mut self, number: u64) {
        self.transfers.retain(|_, (_, batch)| *batch != number);
        self.rejections.retain(|_, (_, batch)| *batch != number);
        self.reversed.retain(|_, batch| *batch != number);
    }

    /// Puts the newest known state of the named accounts into `state`, reading the ones it has
    /// never seen (without locks: the batch's version checks cover them).
    pub(crate) async fn load_accounts(
        &mut self,
        batch: &BatchConn,
        account_ids: &std::collections::BTreeSet<uuid::Uuid>,
        state: &mut LedgerState,
    ) -> Result<(), StoreError> {
        let missing: Vec<uuid::Uuid> =
            account_ids.iter().copied().filter(|id| !self.accounts.contains_key(&AccountId(*id))).collect();
        if !missing.is_empty() {
            for account in batch.read_accounts(&missing).await? {
                self.accounts.insert(account.id, account);
            }
        }
        for id in account_ids {
            if let Some(account) = self.accounts.get(&AccountId(*id)) {
                state.accounts.insert(account.id, account.clone());
            }
        }
        Ok(())
    }

    /// Lays the effects of batches in flight on the journal rows named by `ids` over what the
    /// database said.
    pub(crate) fn overlay(&self, ids: &[uuid::Uuid], state: &mut LedgerState) {
        for id in ids.iter().copied().map(TransferId) {
            if let Some((transfer, _)) = self.transfers.get(&id) {
                state.transfers.insert(id, transfer.clone());
            }
            if let Some((rejection, _)) = self.rejections.get(&id) {
                state.rejections.insert(id, rejection.clone());
            }
            if self.reversed.contains_key(&id) {
                state.reversed.insert(id);
            }
        }
    }

    /// Records a decided batch's effects as the newest known state.
    pub(crate) fn publish(&mut self, number: u64, state: &LedgerState, output: &BatchOutput) {
        for id in &output.accounts_changed {
            self.accounts.insert(*id, state.accounts[id].clone());
        }
        for transfer in &output.created {
            self.transfers.insert(transfer.id, (transfer.clone(), number));
            if transfer.kind == tally_core::TransferKind::Reversal {
                let original = transfer.related_id.expect("a reversal names its original");
                self.reversed.insert(original, number);
            }
        }
        for resolution in &output.resolved {
            let pending = state.transfers[&resolution.pending_id].clone();
            self.transfers.insert(resolution.pending_id, (pending, number));
        }
        for rejection in &output.rejected {
            self.rejections.insert(rejection.request.id, (rejection.clone(), number));
        }
    }
}
