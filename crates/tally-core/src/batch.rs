//! The batch state machine: decides every transfer of a batch, in order, against prefetched state.
//!
//! The store prefetches (and locks) everything a batch can touch into a [`LedgerState`]: the
//! accounts named by the requests, the transfers named by id (for idempotency) or by
//! `related_id`, recorded rejections, and which originals were already reversed. Then
//! [`LedgerState::apply_batch`] runs synchronously, with no I/O and no clock (`now` is an input),
//! and returns a [`BatchOutput`]: one result per request plus exactly the rows to write.
//!
//! Invariants asserted on every batch: every changed account satisfies its balance rule, and per
//! currency the batch's debit and credit deltas are equal (posted and pending separately).
//!
//! Linked chains: a request with `linked = true` joins the next request into an all-or-nothing
//! group. The first failing member keeps its own result and every other member gets
//! `linked_chain_failed`; the state is rolled back to the start of the chain through an undo log.

use crate::account::{Account, AccountId, AccountStatus, BalanceRule, LedgerId};
use crate::amount::{AMOUNT_MAX, MinorUnits, checked_total};
use crate::result::TransferResult;
use crate::transfer::{
    ACTOR_LEN_MAX, METADATA_BYTES_MAX, REFERENCE_LEN_MAX, Rejection, Resolution, TIMEOUT_SECONDS_MAX, Timestamp,
    Transfer, TransferId, TransferKind, TransferRequest, TransferStatus,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// The most transfers in one batch: TigerBeetle's 8,190 and PostgreSQL's bind limits allow it.
pub const BATCH_SIZE_MAX: usize = 8_190;

const _: () = assert!(ACTOR_LEN_MAX <= REFERENCE_LEN_MAX);
const _: () = assert!(BATCH_SIZE_MAX <= u16::MAX as usize);

/// Everything a batch may read, prefetched by the store. Also the in-memory ledger of tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LedgerState {
    pub accounts: HashMap<AccountId, Account>,
    pub transfers: HashMap<TransferId, Transfer>,
    pub rejections: HashMap<TransferId, Rejection>,
    /// Transfers that a reversal already undid.
    pub reversed: HashSet<TransferId>,
}

/// The decisions of one batch and the rows to write for them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutput {
    /// One result per request, in request order.
    pub results: Vec<TransferResult>,
    /// New journal entries, in the order they were applied.
    pub created: Vec<Transfer>,
    /// New recorded rejections.
    pub rejected: Vec<Rejection>,
    /// Pending transfers whose status changed.
    pub resolved: Vec<Resolution>,
    /// Accounts whose state changed, sorted by id (read their new state from the `LedgerState`).
    pub accounts_changed: Vec<AccountId>,
}

/// What a single applied transfer does, decided before anything is changed.
struct Effect {
    transfer: Transfer,
    resolves: Option<TransferId>,
    debit_after: Account,
    credit_after: Account,
}

/// How to put the state back when a linked chain fails.
enum Undo {
    Account(Account),
    TransferInserted(TransferId),
    TransferStatus(Transfer),
    Reversed(TransferId),
}

impl LedgerState {
    /// Decides and applies every request in order. Pure: the same state, time and requests always
    /// give the same output.
    pub fn apply_batch(&mut self, now: Timestamp, requests: &[TransferRequest]) -> BatchOutput {
        self.apply_segments(now, requests, &[requests.len()])
    }

    /// Like `apply_batch` for a batch made of several independent submissions: `segment_ends`
    /// are the exclusive end indexes of the segments, ascending, the last one `requests.len()`.
    /// A linked chain never crosses a segment end: one still open there is `linked_chain_open`,
    /// exactly as if its segment had been a batch of its own.
    pub fn apply_segments(
        &mut self,
        now: Timestamp,
        requests: &[TransferRequest],
        segment_ends: &[usize],
    ) -> BatchOutput {
        assert!(requests.len() <= BATCH_SIZE_MAX, "batch of {} above BATCH_SIZE_MAX", requests.len());
        assert_eq!(segment_ends.last().copied().unwrap_or(0), requests.len(), "segments cover the batch");
        assert!(segment_ends.windows(2).all(|w| w[0] < w[1]), "segment ends ascend");
        let mut run = Run::new(self, now);
        let mut start = 0;
        for &segment_end in segment_ends {
            while start < segment_end {
                let end = (start..segment_end).find(|&j| !requests[j].linked).unwrap_or(segment_end - 1);
                run.apply_group(&requests[start..=end]);
                start = end + 1;
            }
        }
        assert_eq!(run.output.results.len(), requests.len());
        run.finish()
    }

    /// Expires the named pending transfers whose timeout has passed at `now`: releases their
    /// holds and marks them expired. Names that are not open, timed-out holds are skipped.
    pub fn expire(&mut self, now: Timestamp, pending_ids: &[TransferId]) -> BatchOutput {
        assert!(pending_ids.len() <= BATCH_SIZE_MAX);
        let mut run = Run::new(self, now);
        for id in pending_ids {
            let Some(pending) = run.state.transfers.get(id) else { continue };
            let due = pending.expires_at.is_some_and(|at| at <= now);
            if pending.kind != TransferKind::Pending || pending.status != TransferStatus::Pending || !due {
                continue;
            }
            let pending = pending.clone();
            let (debit, credit) = run.accounts_of(&pending);
            let debit_after = Account {
                debits_pending: debit.debits_pending - pending.amount,
                version: debit.version + 1,
                ..debit.clone()
            };
            let credit_after = Account {
                credits_pending: credit.credits_pending - pending.amount,
                version: credit.version + 1,
                ..credit.clone()
            };
            run.set_account(debit_after);
            run.set_account(credit_after);
            run.resolve(pending.id, TransferStatus::Expired);
        }
        run.finish()
    }
}

/// One batch being applied: the state, the output so far, and the chain's undo log.
struct Run<'a> {
    state: &'a mut LedgerState,
    now: Timestamp,
    output: BatchOutput,
    /// Each changed account as it was before the batch, for the conservation assertion.
    originals: BTreeMap<AccountId, Account>,
    undo: Vec<Undo>,
}

impl<'a> Run<'a> {
    fn new(state: &'a mut LedgerState, now: Timestamp) -> Run<'a> {
        Run { state, now, output: BatchOutput::default(), originals: BTreeMap::new(), undo: Vec::new() }
    }

    /// Applies one request, or one linked chain, all or nothing.
    fn apply_group(&mut self, group: &[TransferRequest]) {
        let last = group.last().expect("a group has at least one request");
        if last.linked {
            // The batch ended inside a chain: the chain is malformed as a whole.
            let failed = group.len() - 1;
            self.output.results.extend(std::iter::repeat_n(TransferResult::LinkedChainFailed, failed));
            self.output.results.push(TransferResult::LinkedChainOpen);
            return;
        }
        self.undo.clear();
        let created_mark = self.output.created.len();
        let resolved_mark = self.output.resolved.len();
        let mut results = Vec::with_capacity(group.len());
        let mut failure = None;
        for (index, request) in group.iter().enumerate() {
            let result = self.apply_one(request);
            results.push(result);
            if !result.is_success() {
                failure = Some((index, result));
                break;
            }
        }
        match failure {
            None => self.output.results.extend(results),
            Some((failed_index, cause)) => {
                if group.len() > 1 {
                    self.roll_back(created_mark, resolved_mark);
                }
                // Members after the cause were not evaluated. One that was rejected and recorded
                // before this chain (a replayed chain) answers as recorded, like every replay;
                // a repeat of an id earlier in the chain is just a failed member.
                let recorded: Vec<Option<TransferResult>> = group
                    .iter()
                    .enumerate()
                    .map(|(index, request)| {
                        let repeated = group[..index].iter().any(|earlier| earlier.id == request.id);
                        (index > failed_index && !repeated).then(|| self.recorded_rejection(request)).flatten()
                    })
                    .collect();
                for ((index, request), recorded) in group.iter().enumerate().zip(recorded) {
                    let member_result = match recorded {
                        Some(result) => result,
                        None if index == failed_index => cause,
                        None => TransferResult::LinkedChainFailed,
                    };
                    self.output.results.push(member_result);
                    self.record_rejection(request, member_result, cause);
                }
            }
        }
        self.undo.clear();
    }

    /// Records a decided rejection so that a replay returns it, unless the group failed on
    /// something that is not a decision (malformed input, an id collision) or the id is decided.
    fn record_rejection(&mut self, request: &TransferRequest, result: TransferResult, cause: TransferResult) {
        let decided = self.state.transfers.contains_key(&request.id) || self.state.rejections.contains_key(&request.id);
        let malformed = validate(request).is_err();
        if !cause.is_recorded_rejection() || !result.is_recorded_rejection() || decided || malformed {
            return;
        }
        let rejection =
            Rejection { request: request.clone(), result, created_at: self.now, ledger: self.ledger_of(request) };
        self.state.rejections.insert(request.id, rejection.clone());
        self.output.rejected.push(rejection);
    }

    fn roll_back(&mut self, created_mark: usize, resolved_mark: usize) {
        while let Some(entry) = self.undo.pop() {
            match entry {
                Undo::Account(account) => {
                    self.state.accounts.insert(account.id, account);
                }
                Undo::TransferInserted(id) => {
                    self.state.transfers.remove(&id);
                }
                Undo::TransferStatus(transfer) => {
                    self.state.transfers.insert(transfer.id, transfer);
                }
                Undo::Reversed(id) => {
                    self.state.reversed.remove(&id);
                }
            }
        }
        self.output.created.truncate(created_mark);
        self.output.resolved.truncate(resolved_mark);
    }

    fn apply_one(&mut self, request: &TransferRequest) -> TransferResult {
        if let Err(result) = validate(request) {
            return result;
        }
        if let Some(result) = self.replay_result(request) {
            return result;
        }
        match self.decide(request) {
            Ok(effect) => {
                self.commit(effect);
                TransferResult::Ok
            }
            Err(result) => result,
        }
    }

    /// The recorded result of this very request, if it was rejected before.
    fn recorded_rejection(&self, request: &TransferRequest) -> Option<TransferResult> {
        let rejection = self.state.rejections.get(&request.id)?;
        same_request(&rejection.request, request).then_some(rejection.result)
    }

    /// The result for an id that is already decided, if it is.
    fn replay_result(&self, request: &TransferRequest) -> Option<TransferResult> {
        if let Some(existing) = self.state.transfers.get(&request.id) {
            return Some(if same_transfer(existing, request) {
                TransferResult::Exists
            } else {
                TransferResult::ExistsWithDifferentFields
            });
        }
        self.state.rejections.get(&request.id).map(|rejection| {
            if same_request(&rejection.request, request) {
                rejection.result
            } else {
                TransferResult::ExistsWithDifferentFields
            }
        })
    }

    /// Decides a validated, new request against the current state. Changes nothing.
    fn decide(&self, request: &TransferRequest) -> Result<Effect, TransferResult> {
        let now = self.now;
        let (debit, credit, amount, related) = match request.kind {
            TransferKind::Posted | TransferKind::Pending => {
                let debit = self.account(request.debit_account_id)?;
                let credit = self.account(request.credit_account_id)?;
                if debit.ledger != credit.ledger {
                    return Err(TransferResult::LedgerMismatch);
                }
                if debit.currency != credit.currency {
                    return Err(TransferResult::CurrencyMismatch);
                }
                (debit, credit, request.amount.expect("validated"), None)
            }
            TransferKind::PostPending | TransferKind::VoidPending => {
                let pending = self.pending_to_resolve(request)?;
                let (debit, credit) = self.accounts_of(pending);
                let amount = match (request.kind, request.amount) {
                    (TransferKind::PostPending, Some(amount)) if amount > pending.amount => {
                        return Err(TransferResult::AmountExceedsPending);
                    }
                    (TransferKind::VoidPending, Some(amount)) if amount != pending.amount => {
                        return Err(TransferResult::AmountExceedsPending);
                    }
                    (_, amount) => amount.unwrap_or(pending.amount),
                };
                (debit, credit, amount, Some(pending))
            }
            TransferKind::Reversal => {
                let original = self.original_to_reverse(request)?;
                let (original_debit, original_credit) = self.accounts_of(original);
                (original_credit, original_debit, original.amount, Some(original))
            }
        };
        if request.currency.as_ref().is_some_and(|c| *c != debit.currency) {
            return Err(TransferResult::CurrencyMismatch);
        }
        if request.kind != TransferKind::VoidPending {
            check_status(debit)?;
            check_status(credit)?;
        }
        let version_ok = |expected: Option<i64>, account: &Account| expected.is_none_or(|v| v == account.version);
        if !version_ok(request.expected_debit_version, debit) || !version_ok(request.expected_credit_version, credit) {
            return Err(TransferResult::VersionConflict);
        }
        let held = related.filter(|r| r.kind == TransferKind::Pending).map_or(0, |p| p.amount);
        let (debit_after, credit_after) = moved(debit, credit, request.kind, amount, held)?;
        check_rule(&debit_after, debit)?;

        let is_pending = request.kind == TransferKind::Pending;
        assert_eq!(debit.ledger, credit.ledger, "a transfer stays inside one ledger");
        let transfer = Transfer {
            id: request.id,
            ledger: debit.ledger,
            kind: request.kind,
            debit_account_id: debit.id,
            credit_account_id: credit.id,
            amount,
            currency: debit.currency.clone(),
            related_id: request.related_id,
            timeout_seconds: request.timeout_seconds,
            expires_at: request.timeout_seconds.filter(|_| is_pending).map(|s| now.plus_seconds(s)),
            status: match request.kind {
                TransferKind::Pending => TransferStatus::Pending,
                TransferKind::VoidPending => TransferStatus::Voided,
                TransferKind::Posted | TransferKind::PostPending | TransferKind::Reversal => TransferStatus::Posted,
            },
            reference: request.reference.clone(),
            metadata: request.metadata.clone(),
            created_at: now,
            completed_at: if is_pending { None } else { Some(now) },
        };
        let resolves = related.filter(|r| r.kind == TransferKind::Pending).map(|r| r.id);
        Ok(Effect { transfer, resolves, debit_after, credit_after })
    }

    /// The ledger a recorded rejection is filed under: that of an account or transfer the
    /// request names and the state holds (debit account, credit account, related transfer, in
    /// that order), else `default`. A replay of the same request finds the same ledger as long
    /// as those accounts exist, and accounts are never deleted.
    fn ledger_of(&self, request: &TransferRequest) -> LedgerId {
        let account = |id: Option<AccountId>| id.and_then(|id| self.state.accounts.get(&id)).map(|a| a.ledger);
        account(request.debit_account_id)
            .or_else(|| account(request.credit_account_id))
            .or_else(|| request.related_id.and_then(|id| self.state.transfers.get(&id)).map(|t| t.ledger))
            .unwrap_or(LedgerId::DEFAULT)
    }

    fn account(&self, id: Option<AccountId>) -> Result<&Account, TransferResult> {
        let id = id.expect("validated: posted and pending requests name both accounts");
        self.state.accounts.get(&id).ok_or(TransferResult::AccountNotFound)
    }

    /// The accounts of a stored transfer; the store's foreign keys guarantee they exist.
    fn accounts_of(&self, transfer: &Transfer) -> (&Account, &Account) {
        let get = |id: &AccountId| {
            self.state
                .accounts
                .get(id)
                .unwrap_or_else(|| panic!("account {id} of transfer {} not prefetched", transfer.id))
        };
        (get(&transfer.debit_account_id), get(&transfer.credit_account_id))
    }

    fn pending_to_resolve(&self, request: &TransferRequest) -> Result<&Transfer, TransferResult> {
        let id = request.related_id.expect("validated");
        let pending = self.state.transfers.get(&id).ok_or(TransferResult::PendingNotFound)?;
        if pending.kind != TransferKind::Pending {
            return Err(TransferResult::NotPending);
        }
        if request.currency.as_ref().is_some_and(|c| *c != pending.currency) {
            return Err(TransferResult::CurrencyMismatch);
        }
        match pending.status {
            TransferStatus::Posted => Err(TransferResult::PendingAlreadyPosted),
            TransferStatus::Voided => Err(TransferResult::PendingAlreadyVoided),
            TransferStatus::Expired => Err(TransferResult::PendingExpired),
            TransferStatus::Pending if pending.expires_at.is_some_and(|at| at <= self.now) => {
                Err(TransferResult::PendingExpired)
            }
            TransferStatus::Pending => Ok(pending),
        }
    }

    fn original_to_reverse(&self, request: &TransferRequest) -> Result<&Transfer, TransferResult> {
        let id = request.related_id.expect("validated");
        let original = self.state.transfers.get(&id).ok_or(TransferResult::TransferNotFound)?;
        let reversible = matches!(original.kind, TransferKind::Posted | TransferKind::PostPending);
        if !reversible || request.amount.is_some_and(|a| a != original.amount) {
            return Err(TransferResult::ReversalNotAllowed);
        }
        if request.currency.as_ref().is_some_and(|c| *c != original.currency) {
            return Err(TransferResult::CurrencyMismatch);
        }
        if self.state.reversed.contains(&id) {
            return Err(TransferResult::AlreadyReversed);
        }
        Ok(original)
    }

    fn commit(&mut self, effect: Effect) {
        let Effect { transfer, resolves, debit_after, credit_after } = effect;
        self.set_account(debit_after);
        self.set_account(credit_after);
        if let Some(pending_id) = resolves {
            let status = match transfer.kind {
                TransferKind::PostPending => TransferStatus::Posted,
                _ => TransferStatus::Voided,
            };
            self.resolve(pending_id, status);
        }
        if transfer.kind == TransferKind::Reversal {
            let original = transfer.related_id.expect("a reversal names its original");
            self.state.reversed.insert(original);
            self.undo.push(Undo::Reversed(original));
        }
        self.undo.push(Undo::TransferInserted(transfer.id));
        self.state.transfers.insert(transfer.id, transfer.clone());
        self.output.created.push(transfer);
    }

    fn set_account(&mut self, account: Account) {
        let previous = self.state.accounts.insert(account.id, account).expect("only prefetched accounts change");
        assert_eq!(previous.version + 1, self.state.accounts[&previous.id].version);
        self.originals.entry(previous.id).or_insert_with(|| previous.clone());
        self.undo.push(Undo::Account(previous));
    }

    fn resolve(&mut self, pending_id: TransferId, status: TransferStatus) {
        let pending = self.state.transfers.get_mut(&pending_id).expect("resolving a prefetched pending transfer");
        assert_eq!(pending.status, TransferStatus::Pending);
        let before = pending.clone();
        let ledger = before.ledger;
        pending.status = status;
        pending.completed_at = Some(self.now);
        self.undo.push(Undo::TransferStatus(before));
        self.output.resolved.push(Resolution { pending_id, status, at: self.now, ledger });
    }

    fn finish(mut self) -> BatchOutput {
        // Only accounts that differ from their original count as changed (a rolled-back chain
        // leaves its accounts as they were).
        self.originals.retain(|id, original| self.state.accounts[id] != *original);
        assert_conserved(&self.originals, &self.state.accounts);
        self.output.accounts_changed = self.originals.keys().copied().collect();
        for id in &self.output.accounts_changed {
            let account = &self.state.accounts[id];
            assert!(account.is_within_rule() || !self.originals[id].is_within_rule(), "rule broken: {account:?}");
        }
        self.output
    }
}

/// Checks a request on its own, before looking at any state. Failing here writes nothing.
pub fn validate(request: &TransferRequest) -> Result<(), TransferResult> {
    use TransferResult as R;
    if request.id.0 == Uuid::nil() {
        return Err(R::IdInvalid);
    }
    let acts_on_another = request.kind.acts_on_another();
    let has_accounts = request.debit_account_id.is_some() || request.credit_account_id.is_some();
    if !acts_on_another && (request.debit_account_id.is_none() || request.credit_account_id.is_none()) {
        return Err(R::AccountsRequired);
    }
    if acts_on_another && has_accounts {
        return Err(R::AccountsNotAllowed);
    }
    if acts_on_another && request.related_id.is_none() {
        return Err(R::RelatedIdRequired);
    }
    if !acts_on_another && request.related_id.is_some() {
        return Err(R::RelatedIdNotAllowed);
    }
    if let Some(timeout) = request.timeout_seconds
        && (request.kind != TransferKind::Pending || timeout == 0 || timeout > TIMEOUT_SECONDS_MAX)
    {
        return Err(R::TimeoutInvalid);
    }
    let amount_ok = match request.amount {
        Some(amount) => (1..=AMOUNT_MAX).contains(&amount),
        None => acts_on_another,
    };
    if !amount_ok {
        return Err(R::AmountInvalid);
    }
    if !acts_on_another && request.debit_account_id == request.credit_account_id {
        return Err(R::SameAccount);
    }
    if request.reference.as_ref().is_some_and(|r| r.len() > REFERENCE_LEN_MAX) {
        return Err(R::ReferenceTooLong);
    }
    if request.metadata.as_ref().is_some_and(|m| m.to_string().len() > METADATA_BYTES_MAX) {
        return Err(R::MetadataTooLarge);
    }
    Ok(())
}

fn check_status(account: &Account) -> Result<(), TransferResult> {
    match account.status {
        AccountStatus::Active => Ok(()),
        AccountStatus::Frozen => Err(TransferResult::AccountFrozen),
        AccountStatus::Closed => Err(TransferResult::AccountClosed),
    }
}

/// The two accounts after the transfer, or `Overflow`. `held` is the pending amount released.
fn moved(
    debit: &Account,
    credit: &Account,
    kind: TransferKind,
    amount: MinorUnits,
    held: MinorUnits,
) -> Result<(Account, Account), TransferResult> {
    let add = |total: MinorUnits, delta: MinorUnits| checked_total(total, delta).ok_or(TransferResult::Overflow);
    let mut debit_after = Account { version: debit.version + 1, ..debit.clone() };
    let mut credit_after = Account { version: credit.version + 1, ..credit.clone() };
    match kind {
        TransferKind::Posted | TransferKind::Reversal => {
            debit_after.debits_posted = add(debit.debits_posted, amount)?;
            credit_after.credits_posted = add(credit.credits_posted, amount)?;
        }
        TransferKind::Pending => {
            debit_after.debits_pending = add(debit.debits_pending, amount)?;
            credit_after.credits_pending = add(credit.credits_pending, amount)?;
        }
        TransferKind::PostPending => {
            debit_after.debits_pending -= held;
            credit_after.credits_pending -= held;
            debit_after.debits_posted = add(debit.debits_posted, amount)?;
            credit_after.credits_posted = add(credit.credits_posted, amount)?;
        }
        TransferKind::VoidPending => {
            debit_after.debits_pending -= held;
            credit_after.credits_pending -= held;
        }
    }
    assert!(debit_after.debits_pending >= 0 && credit_after.credits_pending >= 0);
    Ok((debit_after, credit_after))
}

/// The debit account's rule, checked only when its available balance went down.
fn check_rule(after: &Account, before: &Account) -> Result<(), TransferResult> {
    if after.available() >= before.available() || after.is_within_rule() {
        return Ok(());
    }
    Err(match after.rule {
        BalanceRule::OverdraftLimit(_) => TransferResult::OverdraftLimitExceeded,
        BalanceRule::NoOverdraft | BalanceRule::Unrestricted => TransferResult::InsufficientFunds,
    })
}

/// Per currency, the batch moved as much into debits as into credits, posted and pending.
fn assert_conserved(originals: &BTreeMap<AccountId, Account>, accounts: &HashMap<AccountId, Account>) {
    let mut deltas: BTreeMap<&str, [MinorUnits; 2]> = BTreeMap::new();
    for (id, before) in originals {
        let after = &accounts[id];
        let delta = deltas.entry(after.currency.as_str()).or_default();
        delta[0] += (after.debits_posted - before.debits_posted) - (after.credits_posted - before.credits_posted);
        delta[1] += (after.debits_pending - before.debits_pending) - (after.credits_pending - before.credits_pending);
    }
    for (currency, delta) in deltas {
        assert_eq!(delta, [0, 0], "batch does not balance in {currency}");
    }
}

/// Does a replayed request describe the transfer that was applied under its id?
fn same_transfer(existing: &Transfer, request: &TransferRequest) -> bool {
    let accounts_same = if request.kind.acts_on_another() {
        request.related_id == existing.related_id
    } else {
        request.debit_account_id == Some(existing.debit_account_id)
            && request.credit_account_id == Some(existing.credit_account_id)
    };
    existing.kind == request.kind
        && accounts_same
        && request.amount.is_none_or(|a| a == existing.amount)
        && request.currency.as_ref().is_none_or(|c| *c == existing.currency)
        && request.timeout_seconds == existing.timeout_seconds
        && request.reference == existing.reference
        && request.metadata == existing.metadata
}

/// Does a replayed request equal the one that was rejected under its id? Preconditions
/// (expected versions) and chaining are part of the request, so they must match too.
fn same_request(recorded: &TransferRequest, request: &TransferRequest) -> bool {
    recorded == request
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::BalanceRule;

    const NOW: Timestamp = Timestamp(1_700_000_000_000_000);

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn ledger() -> LedgerState {
        let mut state = LedgerState::default();
        let accounts = [
            (1, "USD", BalanceRule::Unrestricted),
            (2, "USD", BalanceRule::NoOverdraft),
            (3, "USD", BalanceRule::OverdraftLimit(500)),
            (4, "EUR", BalanceRule::NoOverdraft),
        ];
        for (n, currency, rule) in accounts {
            let account = Account::new(AccountId(id(n)), currency, rule);
            state.accounts.insert(account.id, account);
        }
        state
    }

    fn posted(n: u128, from: u128, to: u128, amount: MinorUnits) -> TransferRequest {
        TransferRequest::posted(TransferId(id(1000 + n)), AccountId(id(from)), AccountId(id(to)), amount)
    }

    fn results(state: &mut LedgerState, requests: &[TransferRequest]) -> Vec<&'static str> {
        state.apply_batch(NOW, requests).results.iter().map(|r| r.code()).collect()
    }

    #[test]
    fn posts_and_enforces_rules() {
        let mut state = ledger();
        let out = state.apply_batch(NOW, &[posted(1, 1, 2, 1000), posted(2, 2, 3, 1001), posted(3, 2, 3, 1000)]);
        assert_eq!(out.results, [TransferResult::Ok, TransferResult::InsufficientFunds, TransferResult::Ok]);
        assert_eq!(out.created.len(), 2);
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(state.accounts[&AccountId(id(2))].balance(), 0);
        assert_eq!(state.accounts[&AccountId(id(2))].version, 3);
        assert_eq!(results(&mut state, &[posted(4, 3, 2, 1501)]), ["overdraft_limit_exceeded"]);
        assert_eq!(results(&mut state, &[posted(5, 3, 2, 1500)]), ["ok"]);
        assert_eq!(state.accounts[&AccountId(id(3))].balance(), -500);
    }

    #[test]
    fn replays_return_the_original_result() {
        let mut state = ledger();
        assert_eq!(results(&mut state, &[posted(1, 1, 2, 10), posted(2, 2, 1, 11)]), ["ok", "insufficient_funds"]);
        let before = state.clone();
        // Funds are there now, but the id was decided: the replay answers as before.
        assert_eq!(results(&mut state, &[posted(3, 1, 2, 100)]), ["ok"]);
        let mut replay = state.clone();
        assert_eq!(results(&mut replay, &[posted(1, 1, 2, 10), posted(2, 2, 1, 11)]), ["exists", "insufficient_funds"]);
        assert_eq!(replay, state);
        assert_eq!(
            results(&mut state, &[posted(1, 1, 2, 99), posted(2, 2, 1, 12)]),
            ["exists_with_different_fields"; 2]
        );
        assert_ne!(before, state);
    }

    #[test]
    fn validation_writes_nothing() {
        let mut state = ledger();
        let mut no_id = posted(1, 1, 2, 10);
        no_id.id = TransferId(Uuid::nil());
        let mut with_timeout = posted(2, 1, 2, 10);
        with_timeout.timeout_seconds = Some(5);
        let mut long_reference = posted(3, 1, 2, 10);
        long_reference.reference = Some("x".repeat(REFERENCE_LEN_MAX + 1));
        let cases = [
            no_id,
            posted(4, 1, 1, 10),
            posted(5, 1, 2, 0),
            posted(6, 1, 2, AMOUNT_MAX + 1),
            with_timeout,
            long_reference,
        ];
        let before = state.clone();
        let out = state.apply_batch(NOW, &cases);
        let codes: Vec<_> = out.results.iter().map(|r| r.code()).collect();
        assert_eq!(
            codes,
            ["id_invalid", "same_account", "amount_invalid", "amount_invalid", "timeout_invalid", "reference_too_long"]
        );
        assert!(out.rejected.is_empty() && out.created.is_empty() && out.accounts_changed.is_empty());
        assert_eq!(state, before);
    }

    #[test]
    fn pending_post_void_expire() {
        let mut state = ledger();
        let mut hold = posted(1, 1, 2, 100);
        hold.kind = TransferKind::Pending;
        hold.timeout_seconds = Some(60);
        let capture = TransferRequest::acting_on(TransferId(id(2001)), TransferKind::PostPending, hold.id, Some(60));
        assert_eq!(results(&mut state, &[hold.clone(), capture.clone()]), ["ok", "ok"]);
        let wallet = &state.accounts[&AccountId(id(2))];
        assert_eq!((wallet.balance(), wallet.credits_pending), (60, 0));
        assert_eq!(state.transfers[&hold.id].status, TransferStatus::Posted);
        let void = TransferRequest::acting_on(TransferId(id(2002)), TransferKind::VoidPending, hold.id, None);
        assert_eq!(results(&mut state, &[void]), ["pending_already_posted"]);

        let mut hold2 = posted(3, 2, 1, 50);
        hold2.kind = TransferKind::Pending;
        hold2.timeout_seconds = Some(1);
        assert_eq!(results(&mut state, &[hold2.clone(), posted(4, 2, 1, 11)]), ["ok", "insufficient_funds"]);
        let later = NOW.plus_seconds(1);
        let capture2 = TransferRequest::acting_on(TransferId(id(2003)), TransferKind::PostPending, hold2.id, None);
        assert_eq!(state.apply_batch(later, &[capture2]).results, [TransferResult::PendingExpired]);
        let out = state.expire(later, &[hold2.id, hold.id]);
        assert_eq!(out.resolved.len(), 1);
        assert_eq!(state.transfers[&hold2.id].status, TransferStatus::Expired);
        assert_eq!(state.accounts[&AccountId(id(2))].available(), 60);
    }

    #[test]
    fn reversal_undoes_once() {
        let mut state = ledger();
        let reverse =
            TransferRequest::acting_on(TransferId(id(3001)), TransferKind::Reversal, TransferId(id(1001)), None);
        let again = TransferRequest { id: TransferId(id(3002)), ..reverse.clone() };
        assert_eq!(results(&mut state, &[posted(1, 1, 2, 70), reverse, again]), ["ok", "ok", "already_reversed"]);
        assert_eq!(state.accounts[&AccountId(id(2))].balance(), 0);
        assert_eq!(state.transfers[&TransferId(id(3001))].debit_account_id, AccountId(id(2)));
    }

    #[test]
    fn linked_chains_are_all_or_nothing() {
        let mut state = ledger();
        let mut first = posted(1, 1, 2, 100);
        first.linked = true;
        let second = posted(2, 2, 3, 101);
        let before = state.clone();
        let out = state.apply_batch(NOW, &[first.clone(), second]);
        assert_eq!(out.results, [TransferResult::LinkedChainFailed, TransferResult::InsufficientFunds]);
        assert!(out.created.is_empty() && out.accounts_changed.is_empty());
        assert_eq!(state.accounts, before.accounts);
        let mut open = posted(3, 1, 2, 1);
        open.linked = true;
        let out = state.apply_batch(NOW, &[posted(4, 1, 2, 1), open]);
        assert_eq!(out.results, [TransferResult::Ok, TransferResult::LinkedChainOpen]);
    }

    #[test]
    fn chains_never_cross_segment_ends() {
        let mut state = ledger();
        let mut open = posted(1, 1, 2, 5);
        open.linked = true;
        let out = state.apply_segments(NOW, &[open, posted(2, 1, 2, 7)], &[1, 2]);
        assert_eq!(out.results, [TransferResult::LinkedChainOpen, TransferResult::Ok]);
        assert_eq!(state.accounts[&AccountId(id(2))].balance(), 7);
    }

    #[test]
    fn currency_and_status_rules() {
        let mut state = ledger();
        assert_eq!(results(&mut state, &[posted(1, 1, 4, 1)]), ["currency_mismatch"]);
        let mut wrong_currency = posted(2, 1, 2, 1);
        wrong_currency.currency = Some("EUR".into());
        assert_eq!(results(&mut state, &[wrong_currency]), ["currency_mismatch"]);
        state.accounts.get_mut(&AccountId(id(2))).unwrap().status = AccountStatus::Frozen;
        assert_eq!(results(&mut state, &[posted(3, 1, 2, 1)]), ["account_frozen"]);
        assert_eq!(results(&mut state, &[posted(4, 1, 99, 1)]), ["account_not_found"]);
        let mut stale = posted(5, 1, 3, 1);
        stale.expected_credit_version = Some(7);
        assert_eq!(results(&mut state, &[stale]), ["version_conflict"]);
    }
}
