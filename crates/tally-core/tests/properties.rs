//! Property tests of the batch state machine (`LedgerState::apply_batch` and `expire`).
//!
//! Random ledgers (4-8 accounts in USD and EUR, in two ledgers (books), mixed balance rules, at
//! least one unrestricted account per currency so that money can enter) receive random request sequences: posted and
//! pending transfers, post_pending / void_pending / reversal naming earlier requests or unknown
//! ids, invalid amounts, unknown accounts, version preconditions, linked chains and duplicated
//! ids. The sequence is cut into batches, time may advance between batches and holds may be
//! expired. After every batch the whole state is checked against the journal; the properties
//! below then check replay, batch cutting and expiry.
//!
//! Properties:
//! 1. conservation: per ledger and currency, debits equal credits (posted and pending
//!    separately), and no applied transfer crosses ledgers;
//! 2. balance rules: every account within its rule, every total in `0..=AMOUNT_MAX`;
//! 3. replay of a prefix is a no-op and answers `exists` / the recorded result;
//! 4. batch-cut independence at chain boundaries;
//! 5. linked chains are all-or-nothing with exactly one failing member;
//! 6. a batch's output describes exactly the state change (accounts, transfers, rejections);
//! 7. expiry releases every timed-out hold and keeps the books balanced;
//! 8. (extra) account totals and versions are exactly what the journal implies.

use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Range;
use tally_core::{
    AMOUNT_MAX, Account, AccountId, AccountStatus, BalanceRule, BatchOutput, LedgerId, LedgerState, Timestamp,
    TransferId, TransferKind, TransferRequest, TransferResult, TransferStatus, validate,
};
use uuid::Uuid;

type R = TransferResult;

const T0: Timestamp = Timestamp(1_700_000_000_000_000);
const UNKNOWN_ACCOUNT: u128 = 999;
const TIMEOUT_MAX: u32 = 120;
const CASES: u32 = 256;

// ------------------------------------------------------------------------------------------
// Generated input
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct AccountSpec {
    ledger: LedgerId,
    currency: &'static str,
    rule: BalanceRule,
    status: AccountStatus,
}

#[derive(Debug, Clone)]
enum DebitPick {
    /// One of the two unrestricted source accounts.
    Source(usize),
    Any(Index),
    Unknown,
}

#[derive(Debug, Clone)]
enum CreditPick {
    /// Another account of the debit account's ledger and currency (the common, mostly valid case).
    SameCurrency(Index),
    /// Any account: may be the debit account itself, another currency or another ledger.
    Any(Index),
    Unknown,
}

#[derive(Debug, Clone)]
enum Target {
    /// An earlier request of the sequence; `prefer` picks one of a fitting kind when there is one.
    Earlier {
        prefer: bool,
        at: Index,
    },
    Unknown(u8),
}

#[derive(Debug, Clone)]
enum Op {
    Posted {
        debit: DebitPick,
        credit: CreditPick,
        amount: i128,
    },
    Pending {
        debit: DebitPick,
        credit: CreditPick,
        amount: i128,
        timeout: Option<u32>,
    },
    Act {
        kind: TransferKind,
        target: Target,
        amount: Option<i128>,
    },
    /// The same id as an earlier request: an exact copy, or a copy with another amount.
    Duplicate {
        of: Index,
        different_amount: bool,
    },
}

#[derive(Debug, Clone)]
struct RequestSpec {
    op: Op,
    linked: bool,
    expected_debit_version: Option<i64>,
    expected_credit_version: Option<i64>,
    currency: Option<&'static str>,
}

/// Per request: how the sequence is cut into batches and how time moves.
#[derive(Debug, Clone)]
struct StepSpec {
    request: RequestSpec,
    /// End the current batch after this request.
    cut_after: bool,
    /// Seconds to advance when a batch starts at this request.
    advance: u32,
    /// Expire due holds before a batch that starts at this request.
    expire_first: bool,
    /// Replays (property 3) and cut tests (property 4) may cut after this request.
    alt_cut_after: bool,
}

#[derive(Debug, Clone)]
struct Input {
    accounts: Vec<AccountSpec>,
    steps: Vec<StepSpec>,
    /// Property 3: how long a prefix to replay.
    prefix: Index,
    /// Property 7: when the first (partial) expiry runs, in seconds after the last batch.
    partial_expiry_after: u32,
}

fn rule() -> impl Strategy<Value = BalanceRule> {
    prop_oneof![
        3 => Just(BalanceRule::NoOverdraft),
        2 => (1..=300i128).prop_map(BalanceRule::OverdraftLimit),
        2 => Just(BalanceRule::Unrestricted),
    ]
}

fn status() -> impl Strategy<Value = AccountStatus> {
    prop_oneof![
        30 => Just(AccountStatus::Active),
        1 => Just(AccountStatus::Frozen),
        1 => Just(AccountStatus::Closed),
    ]
}

/// 4-8 accounts; the first two are active unrestricted USD and EUR accounts (money sources).
fn accounts() -> impl Strategy<Value = Vec<AccountSpec>> {
    prop::collection::vec((any::<bool>(), rule(), status(), prop_oneof![4 => Just(1), 1 => Just(2)]), 2..=6).prop_map(
        |rest| {
            let source = |currency| AccountSpec {
                ledger: LedgerId::DEFAULT,
                currency,
                rule: BalanceRule::Unrestricted,
                status: AccountStatus::Active,
            };
            let mut all = vec![source("USD"), source("EUR")];
            all.extend(rest.into_iter().map(|(usd, rule, status, ledger)| AccountSpec {
                ledger: LedgerId(ledger),
                currency: if usd { "USD" } else { "EUR" },
                rule,
                status,
            }));
            all
        },
    )
}

fn amount() -> impl Strategy<Value = i128> {
    prop_oneof![
        60 => 1..=1000i128,
        1 => Just(0i128),
        1 => Just(AMOUNT_MAX + 1),
        1 => Just(AMOUNT_MAX),
    ]
}

/// The debit account: often a source (account 0 or 1), so that money enters the system.
fn debit() -> impl Strategy<Value = DebitPick> {
    prop_oneof![
        6 => (0..2usize).prop_map(DebitPick::Source),
        10 => any::<Index>().prop_map(DebitPick::Any),
        1 => Just(DebitPick::Unknown),
    ]
}

fn credit() -> impl Strategy<Value = CreditPick> {
    prop_oneof![
        30 => any::<Index>().prop_map(CreditPick::SameCurrency),
        2 => any::<Index>().prop_map(CreditPick::Any),
        1 => Just(CreditPick::Unknown),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        12 => (prop::bool::weighted(0.9), any::<Index>()).prop_map(|(prefer, at)| Target::Earlier { prefer, at }),
        1 => any::<u8>().prop_map(Target::Unknown),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let act_kind = prop_oneof![
        3 => Just(TransferKind::PostPending),
        2 => Just(TransferKind::VoidPending),
        2 => Just(TransferKind::Reversal),
    ];
    prop_oneof![
        7 => (debit(), credit(), amount()).prop_map(|(debit, credit, amount)| Op::Posted { debit, credit, amount }),
        4 => (debit(), credit(), amount(), prop::option::weighted(0.75, 1..=TIMEOUT_MAX))
            .prop_map(|(debit, credit, amount, timeout)| Op::Pending { debit, credit, amount, timeout }),
        4 => (act_kind, target(), prop::option::weighted(0.2, 1..=1000i128))
            .prop_map(|(kind, target, amount)| Op::Act { kind, target, amount }),
        2 => (any::<Index>(), any::<bool>()).prop_map(|(of, different_amount)| Op::Duplicate { of, different_amount }),
    ]
}

fn request_spec() -> impl Strategy<Value = RequestSpec> {
    (
        op(),
        prop::bool::weighted(0.25),
        prop::option::weighted(0.05, 1..=6i64),
        prop::option::weighted(0.03, 1..=6i64),
        prop::option::weighted(0.03, prop_oneof![Just("USD"), Just("EUR")]),
    )
        .prop_map(|(op, linked, expected_debit_version, expected_credit_version, currency)| RequestSpec {
            op,
            linked,
            expected_debit_version,
            expected_credit_version,
            currency,
        })
}

fn step() -> impl Strategy<Value = StepSpec> {
    (
        request_spec(),
        prop::bool::weighted(0.15),
        prop_oneof![2 => Just(0u32), 1 => 1..=90u32],
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(request, cut_after, advance, expire_first, alt_cut_after)| StepSpec {
            request,
            cut_after,
            advance,
            expire_first,
            alt_cut_after,
        })
}

fn input() -> impl Strategy<Value = Input> {
    (accounts(), prop::collection::vec(step(), 1..=60), any::<Index>(), 0..=TIMEOUT_MAX).prop_map(
        |(accounts, steps, prefix, partial_expiry_after)| Input { accounts, steps, prefix, partial_expiry_after },
    )
}

// ------------------------------------------------------------------------------------------
// Turning the input into a ledger, requests and batches
// ------------------------------------------------------------------------------------------

fn account_id(index: usize) -> AccountId {
    AccountId(Uuid::from_u128(index as u128 + 1))
}

fn ledger(accounts: &[AccountSpec]) -> LedgerState {
    let mut state = LedgerState::default();
    for (index, spec) in accounts.iter().enumerate() {
        let mut account = Account::new_in(spec.ledger, account_id(index), spec.currency, spec.rule);
        account.status = spec.status;
        state.accounts.insert(account.id, account);
    }
    state
}

fn pick_accounts(accounts: &[AccountSpec], debit: &DebitPick, credit: &CreditPick) -> (AccountId, AccountId) {
    let unknown = AccountId(Uuid::from_u128(UNKNOWN_ACCOUNT));
    let debit_index = match debit {
        DebitPick::Source(source) => Some(*source),
        DebitPick::Any(at) => Some(at.index(accounts.len())),
        DebitPick::Unknown => None,
    };
    let credit_id = match credit {
        CreditPick::SameCurrency(at) => {
            let candidates: Vec<usize> = match debit_index {
                Some(d) => (0..accounts.len())
                    .filter(|&i| i != d && accounts[i].currency == accounts[d].currency)
                    .filter(|&i| accounts[i].ledger == accounts[d].ledger)
                    .collect(),
                None => Vec::new(),
            };
            if candidates.is_empty() {
                account_id(at.index(accounts.len()))
            } else {
                account_id(candidates[at.index(candidates.len())])
            }
        }
        CreditPick::Any(at) => account_id(at.index(accounts.len())),
        CreditPick::Unknown => unknown,
    };
    (debit_index.map_or(unknown, account_id), credit_id)
}

fn related(earlier: &[TransferRequest], kind: TransferKind, target: &Target) -> TransferId {
    match target {
        Target::Earlier { prefer, at } if !earlier.is_empty() => {
            let fits = |r: &&TransferRequest| match kind {
                TransferKind::Reversal => matches!(r.kind, TransferKind::Posted | TransferKind::PostPending),
                _ => r.kind == TransferKind::Pending,
            };
            let candidates: Vec<&TransferRequest> = earlier.iter().filter(fits).collect();
            if *prefer && !candidates.is_empty() {
                candidates[at.index(candidates.len())].id
            } else {
                earlier[at.index(earlier.len())].id
            }
        }
        Target::Earlier { .. } => TransferId(Uuid::from_u128(5_000)),
        Target::Unknown(n) => TransferId(Uuid::from_u128(5_000 + u128::from(*n))),
    }
}

fn build_requests(accounts: &[AccountSpec], steps: &[StepSpec]) -> Vec<TransferRequest> {
    let mut out: Vec<TransferRequest> = Vec::with_capacity(steps.len());
    for (index, step) in steps.iter().enumerate() {
        let spec = &step.request;
        let id = TransferId(Uuid::from_u128(10_000 + index as u128));
        if let Op::Duplicate { of, different_amount } = &spec.op
            && !out.is_empty()
        {
            let mut copy = out[of.index(out.len())].clone();
            if *different_amount {
                copy.amount = Some(match copy.amount {
                    Some(500) => 501,
                    _ => 500,
                });
            }
            out.push(copy);
            continue;
        }
        let mut request = match &spec.op {
            Op::Posted { debit, credit, amount } => {
                let (debit, credit) = pick_accounts(accounts, debit, credit);
                TransferRequest::posted(id, debit, credit, *amount)
            }
            Op::Pending { debit, credit, amount, timeout } => {
                let (debit, credit) = pick_accounts(accounts, debit, credit);
                TransferRequest {
                    kind: TransferKind::Pending,
                    timeout_seconds: *timeout,
                    ..TransferRequest::posted(id, debit, credit, *amount)
                }
            }
            Op::Act { kind, target, amount } => {
                TransferRequest::acting_on(id, *kind, related(&out, *kind, target), *amount)
            }
            // A duplicate with nothing before it: a plain transfer between the two sources.
            Op::Duplicate { .. } => TransferRequest::posted(id, account_id(0), account_id(1), 1),
        };
        request.linked = spec.linked;
        request.expected_debit_version = spec.expected_debit_version;
        request.expected_credit_version = spec.expected_credit_version;
        request.currency = spec.currency.map(str::to_owned);
        out.push(request);
    }
    out
}

#[derive(Debug, Clone)]
struct BatchPlan {
    range: Range<usize>,
    now: Timestamp,
    expire_first: bool,
}

/// Batches cut where `cut_after` says (anywhere, even inside a chain), with time advancing.
fn plan(steps: &[StepSpec]) -> Vec<BatchPlan> {
    let mut batches = Vec::new();
    let mut now = T0;
    let mut start = 0;
    for (index, step) in steps.iter().enumerate() {
        if index == start {
            now = now.plus_seconds(steps[start].advance);
        }
        if step.cut_after || index + 1 == steps.len() {
            batches.push(BatchPlan { range: start..index + 1, now, expire_first: steps[start].expire_first });
            start = index + 1;
        }
    }
    batches
}

/// The chains of one batch as `apply_batch` forms them: a maximal run of linked requests and the
/// request that ends it, or the end of the batch (an open chain).
fn groups(requests: &[TransferRequest]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (index, request) in requests.iter().enumerate() {
        if !request.linked || index + 1 == requests.len() {
            out.push(start..index + 1);
            start = index + 1;
        }
    }
    out
}

/// Splits `range` after every index where `cut` holds and the request there ends a chain.
fn cut_at_chain_ends(
    requests: &[TransferRequest],
    range: Range<usize>,
    cut: impl Fn(usize) -> bool,
) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = range.start;
    for index in range.clone() {
        if index + 1 == range.end || (cut(index) && !requests[index].linked) {
            out.push(start..index + 1);
            start = index + 1;
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// Checks
// ------------------------------------------------------------------------------------------

/// Properties 1, 2 and 8, on the whole state.
fn check_state(state: &LedgerState) -> Result<(), TestCaseError> {
    // 1. Conservation per ledger and currency, posted and pending separately.
    let mut sums: BTreeMap<(LedgerId, &str), [i128; 4]> = BTreeMap::new();
    for account in state.accounts.values() {
        let sum = sums.entry((account.ledger, account.currency.as_str())).or_default();
        sum[0] += account.debits_posted;
        sum[1] += account.credits_posted;
        sum[2] += account.debits_pending;
        sum[3] += account.credits_pending;
    }
    for ((ledger, currency), [dp, cp, dh, ch]) in &sums {
        prop_assert_eq!(dp, cp, "posted totals do not balance in ledger {} {}", ledger, currency);
        prop_assert_eq!(dh, ch, "pending totals do not balance in ledger {} {}", ledger, currency);
    }
    // 2. Balance rules and ranges.
    for account in state.accounts.values() {
        prop_assert!(account.is_within_rule(), "account outside its rule: {:?}", account);
        for total in [account.debits_posted, account.credits_posted, account.debits_pending, account.credits_pending] {
            prop_assert!((0..=AMOUNT_MAX).contains(&total), "total out of range: {:?}", account);
        }
    }
    // 8. Totals and versions follow from the journal.
    let mut expected: BTreeMap<AccountId, [i128; 4]> = state.accounts.keys().map(|id| (*id, [0; 4])).collect();
    let mut touches: BTreeMap<AccountId, i64> = state.accounts.keys().map(|id| (*id, 0)).collect();
    let mut acted_on: BTreeSet<(TransferId, bool)> = BTreeSet::new();
    for transfer in state.transfers.values() {
        prop_assert!(!state.rejections.contains_key(&transfer.id), "id both applied and rejected: {}", transfer.id);
        prop_assert_ne!(transfer.debit_account_id, transfer.credit_account_id);
        prop_assert!((1..=AMOUNT_MAX).contains(&transfer.amount));
        for account in [transfer.debit_account_id, transfer.credit_account_id] {
            let account_state = state.accounts.get(&account);
            prop_assert!(account_state.is_some(), "transfer {} names unknown account {}", transfer.id, account);
            prop_assert_eq!(&account_state.unwrap().currency, &transfer.currency);
            prop_assert_eq!(account_state.unwrap().ledger, transfer.ledger, "transfer {} crosses ledgers", transfer.id);
            *touches.get_mut(&account).unwrap() += 1 + i64::from(transfer.status == TransferStatus::Expired);
        }
        let (debit, credit) = (transfer.debit_account_id, transfer.credit_account_id);
        match transfer.kind {
            TransferKind::Posted | TransferKind::PostPending | TransferKind::Reversal => {
                prop_assert_eq!(transfer.status, TransferStatus::Posted);
                expected.get_mut(&debit).unwrap()[0] += transfer.amount;
                expected.get_mut(&credit).unwrap()[1] += transfer.amount;
            }
            TransferKind::Pending if transfer.status == TransferStatus::Pending => {
                expected.get_mut(&debit).unwrap()[2] += transfer.amount;
                expected.get_mut(&credit).unwrap()[3] += transfer.amount;
            }
            TransferKind::Pending => {}
            TransferKind::VoidPending => prop_assert_eq!(transfer.status, TransferStatus::Voided),
        }
        if transfer.kind.acts_on_another() {
            let related_id = transfer.related_id.expect("acting transfers name another");
            let original = state.transfers.get(&related_id);
            prop_assert!(original.is_some(), "{} names a missing transfer", transfer.id);
            let original = original.unwrap();
            prop_assert_eq!(&original.currency, &transfer.currency);
            if transfer.kind == TransferKind::Reversal {
                prop_assert!(matches!(original.kind, TransferKind::Posted | TransferKind::PostPending));
                prop_assert_eq!(original.amount, transfer.amount);
                prop_assert_eq!((original.debit_account_id, original.credit_account_id), (credit, debit));
                prop_assert!(state.reversed.contains(&related_id));
            } else {
                prop_assert_eq!(original.kind, TransferKind::Pending);
                prop_assert_eq!((original.debit_account_id, original.credit_account_id), (debit, credit));
                prop_assert!(transfer.amount <= original.amount);
                let status = if transfer.kind == TransferKind::PostPending {
                    TransferStatus::Posted
                } else {
                    TransferStatus::Voided
                };
                prop_assert_eq!(original.status, status, "pending {} resolved by {}", related_id, transfer.id);
            }
            // An original is reversed at most once and a hold resolved at most once.
            let key = (related_id, transfer.kind == TransferKind::Reversal);
            prop_assert!(acted_on.insert(key), "{} acted on twice", related_id);
        }
    }
    let reversed: HashSet<TransferId> =
        state.transfers.values().filter(|t| t.kind == TransferKind::Reversal).map(|t| t.related_id.unwrap()).collect();
    prop_assert_eq!(&reversed, &state.reversed);
    for (id, account) in &state.accounts {
        let totals = [account.debits_posted, account.credits_posted, account.debits_pending, account.credits_pending];
        prop_assert_eq!(totals, expected[id], "totals of {} differ from the journal", id);
        prop_assert_eq!(account.version, 1 + touches[id], "version of {}", id);
    }
    for (id, rejection) in &state.rejections {
        prop_assert_eq!(*id, rejection.request.id);
        prop_assert!(rejection.result.is_recorded_rejection(), "recorded {:?}", rejection.result);
    }
    Ok(())
}

/// Property 6 (and the bookkeeping half of 5): the output of a batch or an expiry describes
/// exactly how the state changed.
fn check_output(before: &LedgerState, after: &LedgerState, output: &BatchOutput) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        before.accounts.keys().collect::<BTreeSet<_>>(),
        after.accounts.keys().collect::<BTreeSet<_>>(),
        "the set of accounts changed"
    );
    let changed: Vec<AccountId> = after
        .accounts
        .iter()
        .filter(|(id, a)| before.accounts[*id] != **a)
        .map(|(id, _)| *id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    prop_assert_eq!(&output.accounts_changed, &changed, "accounts_changed is not the set of changed accounts");

    let mut created = HashSet::new();
    for transfer in &output.created {
        prop_assert!(created.insert(transfer.id), "created twice: {}", transfer.id);
        prop_assert!(!before.transfers.contains_key(&transfer.id), "created over an existing id: {}", transfer.id);
        let stored = after.transfers.get(&transfer.id);
        prop_assert!(stored.is_some(), "created transfer not in the state: {}", transfer.id);
        let stored = stored.unwrap();
        prop_assert_eq!(
            (stored.kind, stored.debit_account_id, stored.credit_account_id, stored.amount, stored.created_at),
            (
                transfer.kind,
                transfer.debit_account_id,
                transfer.credit_account_id,
                transfer.amount,
                transfer.created_at
            )
        );
    }
    let mut resolved = HashSet::new();
    for resolution in &output.resolved {
        prop_assert!(resolved.insert(resolution.pending_id), "resolved twice: {}", resolution.pending_id);
        let stored = &after.transfers[&resolution.pending_id];
        prop_assert_eq!(stored.kind, TransferKind::Pending);
        prop_assert_eq!(stored.status, resolution.status);
        prop_assert_eq!(stored.completed_at, Some(resolution.at));
        if let Some(old) = before.transfers.get(&resolution.pending_id) {
            prop_assert_eq!(old.status, TransferStatus::Pending);
        }
    }
    let expected_ids: BTreeSet<TransferId> = before.transfers.keys().chain(created.iter()).copied().collect();
    prop_assert_eq!(after.transfers.keys().copied().collect::<BTreeSet<_>>(), expected_ids);
    for (id, old) in &before.transfers {
        let new = &after.transfers[id];
        if resolved.contains(id) {
            prop_assert_eq!(&Unresolved::of(old), &Unresolved::of(new), "resolution changed more than the status");
        } else {
            prop_assert_eq!(old, new, "an untouched transfer changed");
        }
    }

    let mut rejected = HashSet::new();
    for rejection in &output.rejected {
        prop_assert!(rejected.insert(rejection.request.id), "rejected twice: {}", rejection.request.id);
        prop_assert!(!before.rejections.contains_key(&rejection.request.id));
        prop_assert_eq!(after.rejections.get(&rejection.request.id), Some(rejection));
    }
    let expected_ids: BTreeSet<TransferId> = before.rejections.keys().chain(rejected.iter()).copied().collect();
    prop_assert_eq!(after.rejections.keys().copied().collect::<BTreeSet<_>>(), expected_ids);
    for (id, old) in &before.rejections {
        prop_assert_eq!(Some(old), after.rejections.get(id), "a recorded rejection changed");
    }
    let mut reversed = before.reversed.clone();
    reversed.extend(output.created.iter().filter(|t| t.kind == TransferKind::Reversal).map(|t| t.related_id.unwrap()));
    prop_assert_eq!(&reversed, &after.reversed);
    Ok(())
}

/// A transfer without the fields a resolution changes.
#[derive(Debug, PartialEq)]
struct Unresolved {
    id: TransferId,
    kind: TransferKind,
    debit: AccountId,
    credit: AccountId,
    amount: i128,
    expires_at: Option<Timestamp>,
    created_at: Timestamp,
}

impl Unresolved {
    fn of(t: &tally_core::Transfer) -> Unresolved {
        Unresolved {
            id: t.id,
            kind: t.kind,
            debit: t.debit_account_id,
            credit: t.credit_account_id,
            amount: t.amount,
            expires_at: t.expires_at,
            created_at: t.created_at,
        }
    }
}

/// Property 5 plus the per-request half of 6: results per chain, which requests created a
/// transfer and which were recorded, in order.
fn check_chains(before: &LedgerState, requests: &[TransferRequest], output: &BatchOutput) -> Result<(), TestCaseError> {
    prop_assert_eq!(output.results.len(), requests.len(), "one result per request");
    let mut decided: HashSet<TransferId> = before.transfers.keys().chain(before.rejections.keys()).copied().collect();
    // Recorded rejections as they stand at each group (some are recorded by this batch).
    let mut recorded_rejections = before.rejections.clone();
    let mut created = output.created.iter();
    let mut rejected = output.rejected.iter();
    for group in groups(requests) {
        let members = &requests[group.clone()];
        let results = &output.results[group.clone()];
        if members.last().unwrap().linked {
            // Open chain: nothing is decided.
            let (last, rest) = results.split_last().unwrap();
            prop_assert_eq!(*last, R::LinkedChainOpen, "open chain at {:?}", group);
            prop_assert!(rest.iter().all(|r| *r == R::LinkedChainFailed), "open chain at {:?}: {:?}", group, results);
            continue;
        }
        if results.iter().all(|r| r.is_success()) {
            for (request, result) in members.iter().zip(results) {
                if *result == R::Ok {
                    let transfer = created.next();
                    prop_assert!(transfer.is_some(), "ok without a created transfer: {}", request.id);
                    prop_assert_eq!(transfer.unwrap().id, request.id, "created out of order");
                    prop_assert!(decided.insert(request.id), "ok for a decided id {}", request.id);
                } else {
                    prop_assert!(decided.contains(&request.id), "exists for an undecided id {}", request.id);
                }
            }
            continue;
        }
        // A failed chain: nothing applied, one cause, every other member linked_chain_failed,
        // except members decided before, which answer their recorded result as every replay does.
        prop_assert!(!results.iter().any(|r| r.is_success()), "partly applied chain {:?}: {:?}", group, results);
        // A member "replays" when its request was rejected and recorded before this chain and its
        // id is not repeated from earlier in the chain.
        let replayed = |i: usize| {
            let m = &members[i];
            let repeated = members[..i].iter().any(|earlier| earlier.id == m.id);
            recorded_rejections.get(&m.id).filter(|r| r.request == *m && !repeated).map(|r| r.result)
        };
        for (i, result) in results.iter().enumerate() {
            if let Some(recorded) = replayed(i) {
                prop_assert_eq!(*result, recorded, "replayed member {} of chain {:?}", members[i].id, group);
            }
        }
        let fresh_causes: Vec<usize> =
            (0..results.len()).filter(|&i| results[i] != R::LinkedChainFailed && replayed(i).is_none()).collect();
        prop_assert!(fresh_causes.len() <= 1, "several causes in chain {:?}: {:?}", group, results);
        // The cause is the first member that failed: a fresh failure or a replayed rejection.
        let first_failure = (0..results.len()).find(|&i| results[i] != R::LinkedChainFailed || replayed(i).is_some());
        prop_assert!(first_failure.is_some(), "failed chain {:?} without a cause", group);
        let cause = results[first_failure.unwrap()];
        for (request, result) in members.iter().zip(results) {
            let recorded = cause.is_recorded_rejection()
                && result.is_recorded_rejection()
                && !decided.contains(&request.id)
                && validate(request).is_ok();
            if recorded {
                let rejection = rejected.next();
                prop_assert!(rejection.is_some(), "rejection of {} not recorded", request.id);
                let rejection = rejection.unwrap();
                prop_assert_eq!(&rejection.request, request);
                prop_assert_eq!(rejection.result, *result);
                decided.insert(request.id);
                recorded_rejections.insert(request.id, rejection.clone());
            }
        }
    }
    prop_assert!(created.next().is_none(), "a created transfer belongs to no ok result");
    prop_assert!(rejected.next().is_none(), "a rejection belongs to no rejected request");
    Ok(())
}

fn apply_checked(
    state: &mut LedgerState,
    now: Timestamp,
    requests: &[TransferRequest],
) -> Result<BatchOutput, TestCaseError> {
    let before = state.clone();
    let output = state.apply_batch(now, requests);
    let checked = check_output(&before, state, &output)
        .and_then(|()| check_chains(&before, requests, &output))
        .and_then(|()| check_state(state));
    checked.map_err(|e| TestCaseError::fail(format!("{e}\nin the batch at {now:?}:\n{}", dump(requests, &output))))?;
    Ok(output)
}

/// One line per request and result, for failure messages.
fn dump(requests: &[TransferRequest], output: &BatchOutput) -> String {
    let short = |id: Uuid| id.as_u128();
    let mut text = String::new();
    for (index, request) in requests.iter().enumerate() {
        let result = output.results.get(index).map_or("?", |r| r.code());
        text += &format!(
            "  #{index} id={} {} {:?}->{:?} amount={:?} related={:?} timeout={:?} versions={:?}/{:?} currency={:?}{} => {result}\n",
            short(request.id.0),
            request.kind.as_str(),
            request.debit_account_id.map(|a| short(a.0)),
            request.credit_account_id.map(|a| short(a.0)),
            request.amount,
            request.related_id.map(|r| short(r.0)),
            request.timeout_seconds,
            request.expected_debit_version,
            request.expected_credit_version,
            request.currency,
            if request.linked { " linked" } else { "" },
        );
    }
    text
}

fn is_due(transfer: &tally_core::Transfer, now: Timestamp) -> bool {
    transfer.kind == TransferKind::Pending
        && transfer.status == TransferStatus::Pending
        && transfer.expires_at.is_some_and(|at| at <= now)
}

fn expire_checked(state: &mut LedgerState, now: Timestamp, ids: &[TransferId]) -> Result<BatchOutput, TestCaseError> {
    let before = state.clone();
    let output = state.expire(now, ids);
    check_output(&before, state, &output)?;
    prop_assert!(output.results.is_empty() && output.created.is_empty() && output.rejected.is_empty());
    let due: BTreeSet<TransferId> =
        ids.iter().filter(|id| before.transfers.get(id).is_some_and(|t| is_due(t, now))).copied().collect();
    let resolved: BTreeSet<TransferId> = output.resolved.iter().map(|r| r.pending_id).collect();
    prop_assert_eq!(resolved, due, "expire resolved something else than the due holds");
    prop_assert!(output.resolved.iter().all(|r| r.status == TransferStatus::Expired && r.at == now));
    check_state(state)?;
    Ok(output)
}

struct Run {
    requests: Vec<TransferRequest>,
    batches: Vec<BatchPlan>,
    outputs: Vec<BatchOutput>,
    state: LedgerState,
}

/// Applies the input as planned (expiring before some batches), checking every step.
fn run(input: &Input) -> Result<Run, TestCaseError> {
    let requests = build_requests(&input.accounts, &input.steps);
    let batches = plan(&input.steps);
    let mut state = ledger(&input.accounts);
    check_state(&state)?;
    let mut outputs = Vec::new();
    for batch in &batches {
        if batch.expire_first {
            let ids: Vec<TransferId> = requests[..batch.range.start].iter().map(|r| r.id).collect();
            expire_checked(&mut state, batch.now, &ids)?;
        }
        outputs.push(apply_checked(&mut state, batch.now, &requests[batch.range.clone()])?);
    }
    Ok(Run { requests, batches, outputs, state })
}

// ------------------------------------------------------------------------------------------
// Properties
// ------------------------------------------------------------------------------------------

/// Property 3. Replays the decided part of a prefix, cut into batches at chain ends anew (so
/// that original batches are merged as well as split), each at the time of the original batch of
/// its first request. Chains that failed on an undecided cause (a validation error or an id
/// collision) are left out: nothing was recorded for them, so sending them again is a new
/// attempt, not a replay, and its members' ids may have been decided elsewhere since.
fn check_replay(input: &Input) -> Result<(), TestCaseError> {
    struct Kept {
        range: Range<usize>,
        expected: Vec<R>,
        now: Timestamp,
    }
    let Run { requests, batches, outputs, mut state } = run(input)?;
    let after = state.clone();
    let prefix = input.prefix.index(requests.len() + 1);
    let mut kept: Vec<Kept> = Vec::new();
    for (batch, output) in batches.iter().zip(&outputs) {
        let end = batch.range.end.min(prefix);
        let now = batch.now;
        for group in groups(&requests[batch.range.clone()]) {
            let range = group.start + batch.range.start..group.end + batch.range.start;
            if range.start >= end {
                break;
            }
            let original = &output.results[group.clone()];
            if range.end > end {
                // The prefix ends inside this chain: it is open now.
                let mut expected = vec![R::LinkedChainFailed; end - range.start - 1];
                expected.push(R::LinkedChainOpen);
                kept.push(Kept { range: range.start..end, expected, now });
            } else if requests[range.end - 1].linked || original.iter().all(|r| r.is_success()) {
                let expected = original.iter().map(|r| if r.is_success() { R::Exists } else { *r }).collect();
                kept.push(Kept { range, expected, now });
            } else {
                let cause_index = original.iter().position(|r| *r != R::LinkedChainFailed).unwrap_or(0);
                if !original[cause_index].is_recorded_rejection() {
                    continue;
                }
                kept.push(Kept { range, expected: original.to_vec(), now });
            }
        }
    }
    // Replay batches of whole groups; a batch must end after an open chain.
    let mut replay_batches: Vec<(Timestamp, Vec<TransferRequest>)> = Vec::new();
    let mut cut = true;
    for group in &kept {
        if cut {
            replay_batches.push((group.now, Vec::new()));
        }
        replay_batches.last_mut().unwrap().1.extend_from_slice(&requests[group.range.clone()]);
        cut = requests[group.range.end - 1].linked || input.steps[group.range.end - 1].alt_cut_after;
    }
    let mut results = Vec::new();
    for (now, replay) in &replay_batches {
        let out = state.apply_batch(*now, replay);
        prop_assert!(
            out.created.is_empty() && out.rejected.is_empty() && out.resolved.is_empty(),
            "replay wrote something: {:?}\n{}",
            out,
            dump(replay, &out)
        );
        prop_assert!(out.accounts_changed.is_empty(), "replay changed accounts {:?}", out.accounts_changed);
        prop_assert_eq!(out.results.len(), replay.len());
        results.extend(out.results);
    }
    let mut got = results.into_iter();
    for group in kept {
        let got: Vec<R> = got.by_ref().take(group.expected.len()).collect();
        prop_assert!(
            got == group.expected,
            "replay of requests {:?}: got {:?}, first time {:?}",
            group.range,
            got,
            group.expected
        );
    }
    prop_assert_eq!(&state, &after, "replay changed the state");
    Ok(())
}

/// Property 4: one batch vs. batches cut at chain ends, all at the same time.
fn check_cut_independence(input: &Input) -> Result<(), TestCaseError> {
    let requests = build_requests(&input.accounts, &input.steps);
    let mut whole = ledger(&input.accounts);
    let one = apply_checked(&mut whole, T0, &requests)?;
    let mut cut = ledger(&input.accounts);
    let (mut results, mut created, mut rejected, mut resolved) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut changed = BTreeSet::new();
    for range in cut_at_chain_ends(&requests, 0..requests.len(), |i| input.steps[i].alt_cut_after) {
        let out = apply_checked(&mut cut, T0, &requests[range])?;
        results.extend(out.results);
        created.extend(out.created);
        rejected.extend(out.rejected);
        resolved.extend(out.resolved);
        changed.extend(out.accounts_changed);
    }
    prop_assert_eq!(&results, &one.results);
    prop_assert_eq!(&created, &one.created);
    prop_assert_eq!(&rejected, &one.rejected);
    prop_assert_eq!(&resolved, &one.resolved);
    prop_assert_eq!(changed.into_iter().collect::<Vec<_>>(), one.accounts_changed);
    prop_assert_eq!(&cut, &whole);
    Ok(())
}

/// Property 7: expire part way, then past every timeout.
fn check_expiry(input: &Input) -> Result<(), TestCaseError> {
    let Run { requests, batches, mut state, .. } = run(input)?;
    let last = batches.last().unwrap().now;
    let mut ids: Vec<TransferId> = requests.iter().map(|r| r.id).collect();
    ids.push(TransferId(Uuid::from_u128(5_000)));
    expire_checked(&mut state, last.plus_seconds(input.partial_expiry_after), &ids)?;
    let end = last.plus_seconds(TIMEOUT_MAX);
    expire_checked(&mut state, end, &ids)?;
    prop_assert!(!state.transfers.values().any(|t| is_due(t, end)), "a timed-out hold is still open");
    let every_hold_times_out =
        state.transfers.values().filter(|t| t.kind == TransferKind::Pending).all(|t| t.timeout_seconds.is_some());
    if every_hold_times_out {
        for account in state.accounts.values() {
            prop_assert_eq!(
                (account.debits_pending, account.credits_pending),
                (0, 0),
                "held after expiry: {:?}",
                account
            );
        }
    }
    // Expiring again changes nothing.
    let again = state.clone();
    let out = state.expire(end, &ids);
    prop_assert_eq!(out, BatchOutput::default());
    prop_assert_eq!(&state, &again);
    // Expired holds can be neither posted nor voided.
    let expired: Vec<TransferId> =
        state.transfers.values().filter(|t| t.status == TransferStatus::Expired).map(|t| t.id).collect();
    let attempts: Vec<TransferRequest> = expired
        .iter()
        .enumerate()
        .map(|(i, pending)| {
            let kind = if i % 2 == 0 { TransferKind::PostPending } else { TransferKind::VoidPending };
            TransferRequest::acting_on(TransferId(Uuid::from_u128(90_000 + i as u128)), kind, *pending, None)
        })
        .collect();
    let out = apply_checked(&mut state, end, &attempts)?;
    prop_assert!(out.results.iter().all(|r| *r == R::PendingExpired), "{:?}", out.results);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// Properties 1, 2, 5, 6 and 8, checked after every batch and expiry of a random history.
    #[test]
    fn every_batch_keeps_the_books_and_reports_its_changes(input in input()) {
        run(&input)?;
    }

    /// Property 3.
    #[test]
    fn replaying_a_prefix_is_a_no_op(input in input()) {
        check_replay(&input)?;
    }

    /// Property 4.
    #[test]
    fn results_do_not_depend_on_where_batches_are_cut(input in input()) {
        check_cut_independence(&input)?;
    }

    /// Property 7.
    #[test]
    fn expiry_releases_every_timed_out_hold(input in input()) {
        check_expiry(&input)?;
    }
}

// ------------------------------------------------------------------------------------------
// Deterministic scenarios
// ------------------------------------------------------------------------------------------

/// Runs a scenario table against accounts 1 (USD, unrestricted), 2 (USD, no overdraft),
/// 3 (USD, overdraft 100), 4 (EUR, unrestricted), 5 (EUR, no overdraft).
///
/// Lines: `"<id> posted <from> <to> <amount> [t<secs>] [+] => <code>"` (also `pending`),
/// `"<id> post|void|reverse <related> [<amount>] [+] => <code>"`, where `+` links the request to
/// the next; `"| <secs>"` ends the batch and advances time; `"expire"` expires every id so far;
/// `"balance <account> <posted> <available>"` checks an account. Ids are offset by 10,000.
fn scenario(lines: &[&str]) {
    let accounts = [
        ("USD", BalanceRule::Unrestricted),
        ("USD", BalanceRule::NoOverdraft),
        ("USD", BalanceRule::OverdraftLimit(100)),
        ("EUR", BalanceRule::Unrestricted),
        ("EUR", BalanceRule::NoOverdraft),
    ];
    let specs: Vec<AccountSpec> = accounts
        .iter()
        .map(|(currency, rule)| AccountSpec {
            ledger: LedgerId::DEFAULT,
            currency,
            rule: *rule,
            status: AccountStatus::Active,
        })
        .collect();
    let mut state = ledger(&specs);
    let mut now = T0;
    let mut batch: Vec<(TransferRequest, String)> = Vec::new();
    let mut seen: Vec<TransferId> = Vec::new();
    let account = |n: &str| account_id(n.parse::<usize>().unwrap() - 1);
    let transfer = |n: &str| TransferId(Uuid::from_u128(10_000 + n.parse::<u128>().unwrap()));
    let flush = |state: &mut LedgerState, batch: &mut Vec<(TransferRequest, String)>, now: Timestamp| {
        let requests: Vec<TransferRequest> = batch.iter().map(|(r, _)| r.clone()).collect();
        let out = apply_checked(state, now, &requests).unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<&str> = out.results.iter().map(|r| r.code()).collect();
        let expected: Vec<&str> = batch.iter().map(|(_, code)| code.as_str()).collect();
        assert_eq!(got, expected, "batch {requests:#?}");
        batch.clear();
    };
    for line in lines {
        let (words, expected) = match line.split_once("=>") {
            Some((words, code)) => (words, Some(code.trim().to_owned())),
            None => (*line, None),
        };
        let words: Vec<&str> = words.split_whitespace().collect();
        match (words[0], expected) {
            ("|", None) => {
                flush(&mut state, &mut batch, now);
                now = now.plus_seconds(words[1].parse().unwrap());
            }
            ("expire", None) => {
                flush(&mut state, &mut batch, now);
                expire_checked(&mut state, now, &seen).unwrap_or_else(|e| panic!("{e}"));
            }
            ("balance", None) => {
                flush(&mut state, &mut batch, now);
                let a = &state.accounts[&account(words[1])];
                assert_eq!(
                    (a.balance(), a.available()),
                    (words[2].parse().unwrap(), words[3].parse().unwrap()),
                    "{line}"
                );
            }
            (_, Some(code)) => {
                let id = transfer(words[0]);
                let linked = words.last() == Some(&"+");
                let args: Vec<&str> = words[2..].iter().copied().filter(|w| *w != "+").collect();
                let mut request = match words[1] {
                    "posted" | "pending" => {
                        let mut r =
                            TransferRequest::posted(id, account(args[0]), account(args[1]), args[2].parse().unwrap());
                        if words[1] == "pending" {
                            r.kind = TransferKind::Pending;
                            r.timeout_seconds = args.get(3).map(|t| t.trim_start_matches('t').parse().unwrap());
                        }
                        r
                    }
                    kind => {
                        let kind = match kind {
                            "post" => TransferKind::PostPending,
                            "void" => TransferKind::VoidPending,
                            "reverse" => TransferKind::Reversal,
                            other => panic!("unknown kind {other}"),
                        };
                        TransferRequest::acting_on(id, kind, transfer(args[0]), args.get(1).map(|a| a.parse().unwrap()))
                    }
                };
                request.linked = linked;
                seen.push(id);
                batch.push((request, code));
            }
            _ => panic!("bad scenario line {line:?}"),
        }
    }
    flush(&mut state, &mut batch, now);
}

#[test]
fn scenario_posting_and_rules() {
    scenario(&[
        "1 posted 1 2 100 => ok",
        "2 posted 2 3 101 => insufficient_funds",
        "3 posted 2 3 100 => ok",
        "4 posted 3 2 201 => overdraft_limit_exceeded",
        "5 posted 3 2 200 => ok",
        "6 posted 1 4 5 => currency_mismatch",
        "7 posted 2 2 5 => same_account",
        "8 posted 1 2 0 => amount_invalid",
        "balance 3 -100 -100",
        "balance 2 200 200",
        "|  0",
        "1 posted 1 2 100 => exists",
        "1 posted 1 2 101 => exists_with_different_fields",
        "2 posted 2 3 101 => insufficient_funds",
        "8 posted 1 2 1 => ok",
    ]);
}

#[test]
fn scenario_holds() {
    scenario(&[
        "1 posted 1 2 100 => ok",
        "2 pending 2 3 60 t10 => ok",
        "3 posted 2 3 41 => insufficient_funds",
        "balance 2 100 40",
        "4 post 2 50 => ok",
        "5 void 2 => pending_already_posted",
        "balance 2 50 50",
        "6 pending 2 3 50 t10 => ok",
        "7 void 6 49 => amount_exceeds_pending",
        "8 void 6 => ok",
        "9 pending 2 3 50 t10 => ok",
        "| 10",
        "10 post 9 => pending_expired",
        "balance 2 50 0",
        "expire",
        "balance 2 50 50",
        "11 reverse 4 => ok",
        "12 reverse 4 => already_reversed",
        "13 reverse 2 => reversal_not_allowed",
        "balance 2 100 100",
    ]);
}

#[test]
fn scenario_linked_chains() {
    scenario(&[
        "1 posted 1 2 100 + => linked_chain_failed",
        "2 posted 2 3 101 => insufficient_funds",
        "3 posted 1 2 100 + => ok",
        "4 pending 2 3 100 + => ok",
        "5 post 4 => ok",
        "6 posted 1 2 5 + => linked_chain_failed",
        "7 posted 1 2 0 => amount_invalid",
        "balance 2 0 0",
        "8 posted 1 2 1 + => linked_chain_failed",
        "9 posted 1 2 1 + => linked_chain_open",
        "| 0",
        // A validation failure records nothing: the ids are free for a corrected chain.
        "6 posted 1 2 5 + => ok",
        "7 posted 1 2 1 => ok",
        "balance 2 6 6",
    ]);
}

/// Regression: the replay of a failed chain answers each member's recorded result, as the first
/// attempt did; the member that was applied before the failure must not become the cause.
#[test]
fn replayed_failed_chain_keeps_the_recorded_cause() {
    scenario(&[
        "1 posted 1 2 100 + => linked_chain_failed",
        "2 posted 2 3 101 => insufficient_funds",
        "| 0",
        "1 posted 1 2 100 + => linked_chain_failed",
        "2 posted 2 3 101 => insufficient_funds",
    ]);
}
