//! After the load: what the clients were told against what the journal holds.
//!
//! - Every acknowledged transfer is in the journal under its id, once (the primary key makes
//!   twice impossible, so "once" means "present"), with the acknowledged result: applied, with
//!   the accounts and amount that were sent, or refused by the rule that was answered.
//! - The answers one transfer got (a hedge's two, a resubmission's after a lost one) agree:
//!   all applied or all the same refusal, at most one of them `201 Created` (one id is applied
//!   once), and none that a correct server never gives to a valid resubmitted transfer
//!   (`exists_with_different_fields`, a validation error, another transfer's body); the two
//!   transfers of a linked pair are both applied or both refused.
//! - In the bank scenario, every account's balance is its opening balance plus the acknowledged
//!   transfers that applied, to the minor unit, and no customer is negative (`balances`).

use crate::report::{AnswerCheck, BalanceCheck, EXAMPLES_MAX, JournalCheck};
use crate::shared::{Ack, Answer, HttpRecord, TransferSpec};
use std::collections::{HashMap, HashSet};
use tally_core::{AccountId, LedgerId, TransferKind, TransferStatus};
use tally_store::accounts::ACCOUNT_PAGE_SIZE_MAX;
use tally_store::queries::JOURNAL_ROWS_IDS_MAX;
use tally_store::{AccountFilter, JournalRow, Store, StoreError};
use uuid::Uuid;

/// What a client was told about one id, and what it had sent.
struct Expected {
    spec: TransferSpec,
    ack: Ack,
    via: &'static str,
}

/// Looks up every acknowledged transfer in the journal.
pub async fn journal(store: &Store, http: &[HttpRecord], sql: &[TransferSpec]) -> Result<JournalCheck, StoreError> {
    let mut expected: HashMap<Uuid, Expected> = HashMap::with_capacity(http.len() + sql.len());
    let mut check = JournalCheck::default();
    let acked_http = http.iter().filter_map(|r| r.ack().map(|ack| (r.spec, ack, "http")));
    let acked_sql = sql.iter().map(|spec| (*spec, Ack::Applied, "sql"));
    for (spec, ack, via) in acked_http.chain(acked_sql) {
        if expected.insert(spec.id, Expected { spec, ack, via }).is_some() {
            check.mismatched += 1;
            note(&mut check, format!("{}: acknowledged to two writers", spec.id));
        }
    }
    check.acknowledged = expected.len() as u64;
    let ids: Vec<Uuid> = expected.keys().copied().collect();
    let mut present = HashSet::with_capacity(ids.len());
    for chunk in ids.chunks(JOURNAL_ROWS_IDS_MAX) {
        for row in store.journal_rows(chunk).await? {
            let id = match &row {
                JournalRow::Applied { transfer, .. } => transfer.id.0,
                JournalRow::Rejected { rejection, .. } => rejection.request.id.0,
            };
            let want = expected.get(&id).expect("only the ids asked for come back");
            assert!(present.insert(id), "{id} came back twice: the journal's primary key is gone");
            if let Some(problem) = compare(want, &row) {
                check.mismatched += 1;
                note(&mut check, format!("{id} ({}): {problem}", want.via));
            }
        }
    }
    check.found = present.len() as u64;
    check.missing = check.acknowledged - check.found;
    for want in ids.iter().filter(|id| !present.contains(id)).map(|id| &expected[id]) {
        note(
            &mut check,
            format!("{} ({}): acknowledged as {:?}, not in the journal", want.spec.id, want.via, want.ack),
        );
    }
    Ok(check)
}

fn note(check: &mut JournalCheck, text: String) {
    if check.examples.len() < EXAMPLES_MAX {
        check.examples.push(text);
    }
}

/// What is wrong with a journal row, given what its client was told.
fn compare(want: &Expected, row: &JournalRow) -> Option<String> {
    match (want.ack, row) {
        (Ack::Applied, JournalRow::Applied { transfer, .. }) => {
            let same = transfer.kind == TransferKind::Posted
                && transfer.status == TransferStatus::Posted
                && transfer.debit_account_id == want.spec.debit
                && transfer.credit_account_id == want.spec.credit
                && transfer.amount == want.spec.amount_minor;
            (!same).then(|| {
                format!(
                    "applied as {} {} {} -> {} amount {}, but {} -> {} amount {} was sent",
                    transfer.kind.as_str(),
                    transfer.status.as_str(),
                    transfer.debit_account_id.0,
                    transfer.credit_account_id.0,
                    transfer.amount,
                    want.spec.debit.0,
                    want.spec.credit.0,
                    want.spec.amount_minor
                )
            })
        }
        (Ack::Applied, JournalRow::Rejected { rejection, .. }) => {
            Some(format!("acknowledged as applied, journal records {}", rejection.result.code()))
        }
        (Ack::Rejected(result), JournalRow::Rejected { rejection, .. }) => (rejection.result != result)
            .then(|| format!("acknowledged as {}, journal records {}", result.code(), rejection.result.code())),
        (Ack::Rejected(result), JournalRow::Applied { .. }) => {
            Some(format!("acknowledged as {}, but the journal has it applied", result.code()))
        }
    }
}

/// Checks that the answers each HTTP transfer got agree with each other, and with the answers
/// the other transfer of its linked pair got.
pub fn answers(http: &[HttpRecord]) -> AnswerCheck {
    let mut check = AnswerCheck::default();
    let acks: HashMap<Uuid, Option<Ack>> = http.iter().map(|record| (record.spec.id, record.ack())).collect();
    for record in http {
        check.transfers += 1;
        check.answers += record.answers.len() as u64;
        let problem = disagreement(&record.answers).or_else(|| {
            let partner = record.linked_with?;
            split_pair(record.ack(), acks.get(&partner).copied().flatten())
        });
        if let Some(problem) = problem {
            check.inconsistent += 1;
            if check.examples.len() < EXAMPLES_MAX {
                check.examples.push(format!("{}: {problem}", record.spec.id));
            }
        }
    }
    check
}

/// What is wrong with the acknowledgements of a linked pair, if anything: both must be applied,
/// or both refused.
fn split_pair(ack: Option<Ack>, partner: Option<Ack>) -> Option<String> {
    let applied = |ack: Option<Ack>| ack.map(|ack| ack == Ack::Applied);
    match (applied(ack), applied(partner)) {
        (Some(one), Some(other)) if one == other => None,
        (Some(_), Some(_)) => Some(format!("linked pair split: {ack:?} and its partner {partner:?}")),
        _ => Some("a linked pair's partner has no answer".into()),
    }
}

/// The bank's balances against what the clients were told. `comparable` is false when some
/// transfer's outcome is unknown to the clients (undecided, or a SQL error), since it may or
/// may not have moved money.
pub async fn balances(
    store: &Store,
    opening_minor: &HashMap<AccountId, i128>,
    customers: &[AccountId],
    fees: AccountId,
    http: &[HttpRecord],
    sql: &[TransferSpec],
    comparable: bool,
) -> Result<BalanceCheck, StoreError> {
    let mut expected = opening_minor.clone();
    let applied_http = http.iter().filter(|r| r.ack() == Some(Ack::Applied)).map(|r| &r.spec);
    for spec in applied_http.chain(sql) {
        *expected.get_mut(&spec.debit).expect("a run's account") -= spec.amount_minor;
        *expected.get_mut(&spec.credit).expect("a run's account") += spec.amount_minor;
    }
    let mut actual = HashMap::with_capacity(expected.len());
    let ledgers = [LedgerId::DEFAULT];
    let filter = AccountFilter { currency: Some(crate::setup::CURRENCY), status: None, ledgers: Some(&ledgers) };
    let mut after = None;
    loop {
        let page = store.list_accounts(&filter, after, ACCOUNT_PAGE_SIZE_MAX).await?;
        for record in &page {
            let account = &record.account;
            if expected.contains_key(&account.id) {
                let pending = account.debits_pending + account.credits_pending;
                actual.insert(account.id, (account.credits_posted - account.debits_posted, pending));
            }
        }
        match page.last() {
            Some(last) if page.len() as i64 == ACCOUNT_PAGE_SIZE_MAX => after = Some(last.account.id),
            _ => break,
        }
    }
    let mut check = BalanceCheck { accounts: expected.len() as u64, comparable, ..BalanceCheck::default() };
    for (id, want) in &expected {
        let problem = match actual.get(id) {
            None => Some("not found".to_owned()),
            Some((_, pending)) if *pending != 0 => Some(format!("{pending} pending, none was sent")),
            Some((balance, _)) if comparable && balance != want => {
                Some(format!("balance {balance}, but the acknowledged transfers make {want}"))
            }
            Some(_) => None,
        };
        if let Some(problem) = problem {
            check.mismatched += 1;
            note_balance(&mut check, format!("account {}: {problem}", id.0));
        }
    }
    for customer in customers {
        if let Some((balance, _)) = actual.get(customer).filter(|(balance, _)| *balance < 0) {
            check.negative_customers += 1;
            note_balance(&mut check, format!("customer {}: balance {balance} is negative", customer.0));
        }
    }
    check.fees_collected_minor = actual.get(&fees).map_or(0, |(balance, _)| balance - opening_minor[&fees]);
    Ok(check)
}

fn note_balance(check: &mut BalanceCheck, text: String) {
    if check.examples.len() < EXAMPLES_MAX {
        check.examples.push(text);
    }
}

fn disagreement(answers: &[Answer]) -> Option<String> {
    if let Some(Answer::Unexpected(text)) = answers.iter().find(|a| matches!(a, Answer::Unexpected(_))) {
        return Some(format!("unexpected answer {text}"));
    }
    let created = answers.iter().filter(|a| matches!(a, Answer::Applied { created: true })).count();
    if created > 1 {
        return Some(format!("{created} answers say 201 Created for one id"));
    }
    let acks: Vec<Ack> = answers.iter().filter_map(Answer::ack).collect();
    if acks.windows(2).any(|pair| pair[0] != pair[1]) {
        return Some(format!("answers disagree: {acks:?}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::TransferResult;

    #[test]
    fn answers_must_agree_and_create_once() {
        let applied = Answer::Applied { created: false };
        let created = Answer::Applied { created: true };
        let refused = Answer::Rejected(TransferResult::InsufficientFunds);
        assert_eq!(disagreement(&[created.clone(), applied.clone()]), None);
        assert_eq!(disagreement(&[refused.clone(), refused.clone()]), None);
        assert!(disagreement(&[created.clone(), created.clone()]).unwrap().contains("201"));
        assert!(disagreement(&[applied, refused.clone()]).unwrap().contains("disagree"));
        assert!(disagreement(&[refused, Answer::Unexpected("409 exists_with_different_fields".into())]).is_some());
    }

    #[test]
    fn a_linked_pair_is_applied_or_refused_as_a_whole() {
        let refused = Some(Ack::Rejected(TransferResult::InsufficientFunds));
        let chain_failed = Some(Ack::Rejected(TransferResult::LinkedChainFailed));
        assert_eq!(split_pair(Some(Ack::Applied), Some(Ack::Applied)), None);
        assert_eq!(split_pair(refused, chain_failed), None);
        assert!(split_pair(Some(Ack::Applied), chain_failed).unwrap().contains("split"));
        assert!(split_pair(refused, Some(Ack::Applied)).unwrap().contains("split"));
        assert!(split_pair(Some(Ack::Applied), None).is_some());
    }
}
