//! After the load: what the clients were told against what the journal holds.
//!
//! - Every acknowledged transfer is in the journal under its id, once (the primary key makes
//!   twice impossible, so "once" means "present"), with the acknowledged result: applied, with
//!   the accounts and amount that were sent, or refused by the rule that was answered.
//! - The answers one transfer got (a hedge's two, a resubmission's after a lost one) agree:
//!   all applied or all the same refusal, at most one of them `201 Created` (one id is applied
//!   once), and none that a correct server never gives to a valid resubmitted transfer
//!   (`exists_with_different_fields`, a validation error, another transfer's body).

use crate::report::{AnswerCheck, EXAMPLES_MAX, JournalCheck};
use crate::shared::{Ack, Answer, HttpRecord, TransferSpec};
use std::collections::{HashMap, HashSet};
use tally_core::{TransferKind, TransferStatus};
use tally_store::queries::JOURNAL_ROWS_IDS_MAX;
use tally_store::{JournalRow, Store, StoreError};
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

/// Checks that the answers each HTTP transfer got agree with each other.
pub fn answers(http: &[HttpRecord]) -> AnswerCheck {
    let mut check = AnswerCheck::default();
    for record in http {
        check.transfers += 1;
        check.answers += record.answers.len() as u64;
        if let Some(problem) = disagreement(&record.answers) {
            check.inconsistent += 1;
            if check.examples.len() < EXAMPLES_MAX {
                check.examples.push(format!("{}: {problem}", record.spec.id));
            }
        }
    }
    check
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
}
