//! The batch commit: one SQL transaction decides and writes a whole batch of transfers.
//!
//! 1. Learn the accounts of transfers named by `related_id` (read without locks).
//! 2. Lock every account the batch touches, in id order (`FOR UPDATE`), so that concurrent
//!    batches queue on row locks instead of deadlocking. Whoever changes an account or resolves
//!    a hold on it holds these locks, so everything read from now on is stable.
//! 3. Prefetch the transfers named by id (idempotency) or by `related_id`, recorded rejections,
//!    and which originals were already reversed.
//! 4. Run `tally_core::LedgerState::apply_batch`: pure, synchronous, in request order.
//! 5. Bulk-write (arrays through `unnest`, never one statement per transfer): journal rows,
//!    resolved holds, account totals, audit rows and events. Commit.
//!
//! Nothing is retried here: a transient failure (deadlock, serialization failure, a concurrent
//! insert of the same transfer id) rolls the whole batch back and is returned, and the engine
//! retries the batch. An expected-version precondition is a decision, never retried.

use crate::accounts::{ACCOUNT_COLUMNS, account_from_row};
use crate::convert::{from_numeric, from_system_time, now, to_numeric, to_system_time};
use crate::journal::{self, AuditEntry};
use crate::{Store, StoreError};
use deadpool_postgres::GenericClient;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;
use tally_core::transfer::ACTOR_LEN_MAX;
use tally_core::{
    BATCH_SIZE_MAX, BatchOutput, LedgerState, Rejection, Timestamp, Transfer, TransferId, TransferKind,
    TransferRequest, TransferResult, TransferStatus,
};
use tokio_postgres::Row;
use uuid::Uuid;

/// The actor name the expiry sweeper writes to the audit log.
pub const EXPIRY_ACTOR: &str = "system:expiry";

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

/// The columns `transfer_from_row` reads, in order.
pub(crate) const TRANSFER_COLUMNS: &str = "t.id, t.kind, t.status, t.debit_account_id, t.credit_account_id, t.amount, \
     t.currency, t.related_id, t.timeout_seconds, t.expires_at, t.reference, t.metadata, t.result, t.request, \
     t.created_at, t.completed_at, t.actor, t.seq";

/// A journal row: an applied transfer or a recorded rejection.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalRow {
    Applied { transfer: Transfer, actor: String, seq: i64 },
    Rejected { rejection: Rejection, actor: String, seq: i64 },
}

pub(crate) fn journal_row_from_row(row: &Row) -> JournalRow {
    let status: &str = row.get(2);
    let actor: String = row.get(16);
    let seq: i64 = row.get(17);
    let created_at = from_system_time(row.get(14));
    if status == "rejected" {
        let code: &str = row.get(12);
        let request: Value = row.get(13);
        let rejection = Rejection {
            request: serde_json::from_value(request).expect("stored requests deserialize"),
            result: TransferResult::from_code(code).expect("stored result codes are known"),
            created_at,
        };
        return JournalRow::Rejected { rejection, actor, seq };
    }
    let kind: &str = row.get(1);
    let timeout: Option<i32> = row.get(8);
    let transfer = Transfer {
        id: TransferId(row.get(0)),
        kind: TransferKind::parse(kind).expect("kind constrained by the schema"),
        status: TransferStatus::parse(status).expect("status constrained by the schema"),
        debit_account_id: tally_core::AccountId(row.get(3)),
        credit_account_id: tally_core::AccountId(row.get(4)),
        amount: from_numeric(row.get(5)),
        currency: row.get(6),
        related_id: row.get::<_, Option<Uuid>>(7).map(TransferId),
        timeout_seconds: timeout.map(|t| u32::try_from(t).expect("positive by constraint")),
        expires_at: row.get::<_, Option<SystemTime>>(9).map(from_system_time),
        reference: row.get(10),
        metadata: row.get(11),
        created_at,
        completed_at: row.get::<_, Option<SystemTime>>(15).map(from_system_time),
    };
    JournalRow::Applied { transfer, actor, seq }
}

impl Store {
    /// Decides and writes one batch in one SQL transaction. Not retried: see the module docs.
    pub async fn post_batch(&self, submissions: &[Submission]) -> Result<Vec<Outcome>, StoreError> {
        self.post_segments(submissions, &[submissions.len()]).await
    }

    /// `post_batch` for a batch made of independent submissions (see
    /// `LedgerState::apply_segments`): linked chains never cross a segment end.
    pub async fn post_segments(
        &self,
        submissions: &[Submission],
        segment_ends: &[usize],
    ) -> Result<Vec<Outcome>, StoreError> {
        assert!(submissions.len() <= BATCH_SIZE_MAX, "batch above BATCH_SIZE_MAX");
        if submissions.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(bad) = submissions.iter().find(|s| s.actor.is_empty() || s.actor.len() > ACTOR_LEN_MAX) {
            return Err(StoreError::Invalid(format!("actor {:?} must be 1 to {ACTOR_LEN_MAX} bytes", bad.actor)));
        }
        let requests: Vec<TransferRequest> = submissions.iter().map(|s| s.request.clone()).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Keyed lookups only: stop the planner from hashing whole tables for the array joins.
        tx.batch_execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off").await?;

        let related_ids: Vec<Uuid> = requests.iter().filter_map(|r| r.related_id.map(|id| id.0)).collect();
        let mut account_ids: BTreeSet<Uuid> = BTreeSet::new();
        for request in &requests {
            account_ids.extend(request.debit_account_id.map(|a| a.0));
            account_ids.extend(request.credit_account_id.map(|a| a.0));
        }
        account_ids.extend(accounts_of_transfers(&tx, &related_ids).await?);
        let mut state = LedgerState::default();
        lock_accounts(&tx, &account_ids, &mut state).await?;
        let mut transfer_ids: Vec<Uuid> = requests.iter().map(|r| r.id.0).chain(related_ids.iter().copied()).collect();
        transfer_ids.sort_unstable();
        transfer_ids.dedup();
        prefetch_transfers(&tx, &transfer_ids, &mut state).await?;
        // A related transfer committed after step 1 brings accounts we did not lock. Locking
        // them now would break the id order (and risk deadlocks): start over instead.
        let unlocked = related_ids.iter().filter_map(|id| state.transfers.get(&TransferId(*id))).any(|t| {
            !state.accounts.contains_key(&t.debit_account_id) || !state.accounts.contains_key(&t.credit_account_id)
        });
        if unlocked {
            return Err(StoreError::RelatedChanged);
        }

        let at = now();
        let output = state.apply_segments(at, &requests, segment_ends);
        write_batch(&tx, &state, &output, submissions, at).await?;
        tx.commit().await?;

        Ok(requests
            .iter()
            .zip(&output.results)
            .map(|(request, result)| Outcome {
                result: *result,
                transfer: result.is_success().then(|| state.transfers[&request.id].clone()),
            })
            .collect())
    }

    /// Expires up to `limit` holds whose timeout passed at `at`, in one SQL transaction,
    /// through the same lock-prefetch-apply-write path as transfers. Returns how many expired.
    pub async fn expire_due(&self, at: Timestamp, limit: i64) -> Result<usize, StoreError> {
        let limit = limit.clamp(1, i64::try_from(BATCH_SIZE_MAX).expect("fits"));
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let due: Vec<Uuid> = tx
            .query(
                "SELECT id FROM transfers WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
                &[&to_system_time(at), &limit],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        let account_ids: BTreeSet<Uuid> = accounts_of_transfers(&tx, &due).await?;
        let mut state = LedgerState::default();
        lock_accounts(&tx, &account_ids, &mut state).await?;
        prefetch_transfers(&tx, &due, &mut state).await?;
        let ids: Vec<TransferId> = due.into_iter().map(TransferId).collect();
        let output = state.expire(at, &ids);
        write_batch(&tx, &state, &output, &[], at).await?;
        tx.commit().await?;
        Ok(output.resolved.len())
    }
}

/// The accounts of the named transfers (unlocked: account ids of a transfer never change).
async fn accounts_of_transfers(client: &impl GenericClient, ids: &[Uuid]) -> Result<BTreeSet<Uuid>, StoreError> {
    if ids.is_empty() {
        return Ok(BTreeSet::new());
    }
    let rows = client
        .query(
            "SELECT debit_account_id, credit_account_id FROM transfers WHERE id = ANY($1) AND status <> 'rejected'",
            &[&ids],
        )
        .await?;
    Ok(rows.iter().flat_map(|row| [row.get::<_, Uuid>(0), row.get::<_, Uuid>(1)]).collect())
}

/// Locks the accounts in id order and loads them. Missing ids are simply absent.
async fn lock_accounts(
    client: &impl GenericClient,
    ids: &BTreeSet<Uuid>,
    state: &mut LedgerState,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = ids.iter().copied().collect();
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = ANY($1) ORDER BY a.id FOR UPDATE");
    for row in client.query(&sql, &[&ids]).await? {
        let account = account_from_row(&row);
        state.accounts.insert(account.id, account);
    }
    Ok(())
}

/// Loads the named journal rows, and whether each applied one was already reversed.
async fn prefetch_transfers(
    client: &impl GenericClient,
    ids: &[Uuid],
    state: &mut LedgerState,
) -> Result<(), StoreError> {
    let sql = format!(
        "SELECT {TRANSFER_COLUMNS},
                EXISTS (SELECT 1 FROM transfers r WHERE r.related_id = t.id AND r.kind = 'reversal') AS reversed
         FROM transfers t WHERE t.id = ANY($1)"
    );
    for row in client.query(&sql, &[&ids]).await? {
        let reversed: bool = row.get(18);
        match journal_row_from_row(&row) {
            JournalRow::Applied { transfer, .. } => {
                if reversed {
                    state.reversed.insert(transfer.id);
                }
                state.transfers.insert(transfer.id, transfer);
            }
            JournalRow::Rejected { rejection, .. } => {
                state.rejections.insert(rejection.request.id, rejection);
            }
        }
    }
    Ok(())
}

/// Writes everything a batch decided. `submissions` gives each request's actor.
async fn write_batch(
    client: &impl GenericClient,
    state: &LedgerState,
    output: &BatchOutput,
    submissions: &[Submission],
    at: Timestamp,
) -> Result<(), StoreError> {
    let mut actors: HashMap<TransferId, &str> = HashMap::with_capacity(submissions.len());
    for submission in submissions {
        actors.entry(submission.request.id).or_insert(submission.actor.as_str());
    }
    let actor_of = |id: TransferId| -> &str { actors.get(&id).copied().unwrap_or(EXPIRY_ACTOR) };
    insert_journal_rows(client, output, &actor_of, at).await?;
    resolve_holds(client, output, at).await?;
    update_accounts(client, state, output, at).await?;
    let mut entries = Vec::with_capacity(output.created.len() + output.rejected.len() + output.resolved.len());
    for transfer in &output.created {
        entries.push(AuditEntry {
            actor: actor_of(transfer.id),
            action: "transfer.create",
            event_type: Some(format!("transfer.{}", transfer.kind.as_str())),
            entity_type: "transfer",
            entity_id: transfer.id.to_string(),
            before: None,
            after: serde_json::to_value(transfer).expect("transfers serialize"),
        });
    }
    for rejection in &output.rejected {
        entries.push(AuditEntry {
            actor: actor_of(rejection.request.id),
            action: "transfer.reject",
            event_type: None,
            entity_type: "transfer",
            entity_id: rejection.request.id.to_string(),
            before: None,
            after: json!({"result": rejection.result.code(), "request": rejection.request}),
        });
    }
    for resolution in &output.resolved {
        let resolver = output
            .created
            .iter()
            .find(|t| t.related_id == Some(resolution.pending_id))
            .map_or(EXPIRY_ACTOR, |t| actor_of(t.id));
        entries.push(AuditEntry {
            actor: resolver,
            action: "transfer.resolve",
            event_type: (resolution.status == TransferStatus::Expired).then(|| "transfer.expired".to_owned()),
            entity_type: "transfer",
            entity_id: resolution.pending_id.to_string(),
            before: Some(json!({"status": "pending"})),
            after: json!({"status": resolution.status.as_str(), "transfer": state.transfers[&resolution.pending_id]}),
        });
    }
    journal::append(client, &entries).await
}

async fn insert_journal_rows<'a>(
    client: &impl GenericClient,
    output: &BatchOutput,
    actor_of: &impl Fn(TransferId) -> &'a str,
    at: Timestamp,
) -> Result<(), StoreError> {
    let rows = output.created.len() + output.rejected.len();
    if rows == 0 {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(rows);
    let mut kinds = Vec::with_capacity(rows);
    let mut statuses = Vec::with_capacity(rows);
    let mut debits: Vec<Option<Uuid>> = Vec::with_capacity(rows);
    let mut credits: Vec<Option<Uuid>> = Vec::with_capacity(rows);
    let mut amounts: Vec<Option<Decimal>> = Vec::with_capacity(rows);
    let mut currencies: Vec<Option<&str>> = Vec::with_capacity(rows);
    let mut related: Vec<Option<Uuid>> = Vec::with_capacity(rows);
    let mut timeouts: Vec<Option<i32>> = Vec::with_capacity(rows);
    let mut expires: Vec<Option<SystemTime>> = Vec::with_capacity(rows);
    let mut actors = Vec::with_capacity(rows);
    let mut references: Vec<Option<&str>> = Vec::with_capacity(rows);
    let mut metadata: Vec<Option<&Value>> = Vec::with_capacity(rows);
    let mut results: Vec<Option<&str>> = Vec::with_capacity(rows);
    let mut requests: Vec<Option<Value>> = Vec::with_capacity(rows);
    let mut completed: Vec<Option<SystemTime>> = Vec::with_capacity(rows);
    for t in &output.created {
        ids.push(t.id.0);
        kinds.push(t.kind.as_str());
        statuses.push(t.status.as_str());
        debits.push(Some(t.debit_account_id.0));
        credits.push(Some(t.credit_account_id.0));
        amounts.push(Some(to_numeric(t.amount)));
        currencies.push(Some(t.currency.as_str()));
        related.push(t.related_id.map(|r| r.0));
        timeouts.push(t.timeout_seconds.map(|s| i32::try_from(s).expect("bounded timeout")));
        expires.push(t.expires_at.map(to_system_time));
        actors.push(actor_of(t.id));
        references.push(t.reference.as_deref());
        metadata.push(t.metadata.as_ref());
        results.push(None);
        requests.push(None);
        completed.push(t.completed_at.map(to_system_time));
    }
    for r in &output.rejected {
        ids.push(r.request.id.0);
        kinds.push(r.request.kind.as_str());
        statuses.push("rejected");
        debits.push(None);
        credits.push(None);
        amounts.push(None);
        currencies.push(None);
        related.push(None);
        timeouts.push(None);
        expires.push(None);
        actors.push(actor_of(r.request.id));
        references.push(None);
        metadata.push(None);
        results.push(Some(r.result.code()));
        requests.push(Some(serde_json::to_value(&r.request).expect("requests serialize")));
        completed.push(Some(to_system_time(at)));
    }
    // Ordered by position so that seq follows the order in which transfers were applied.
    client
        .execute(
            "INSERT INTO transfers (id, kind, status, debit_account_id, credit_account_id, amount, currency, related_id,
                                    timeout_seconds, expires_at, actor, reference, metadata, result, request,
                                    created_at, completed_at)
             SELECT id, kind, status, debit, credit, amount, currency, related, timeout, expires, actor, reference,
                    metadata, result, request, $17, completed
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::uuid[], $6::numeric[], $7::text[],
                         $8::uuid[], $9::int4[], $10::timestamptz[], $11::text[], $12::text[], $13::jsonb[],
                         $14::text[], $15::jsonb[], $16::timestamptz[])
                 WITH ORDINALITY AS u(id, kind, status, debit, credit, amount, currency, related, timeout, expires,
                                      actor, reference, metadata, result, request, completed, ord)
             ORDER BY ord",
            &[
                &ids,
                &kinds,
                &statuses,
                &debits,
                &credits,
                &amounts,
                &currencies,
                &related,
                &timeouts,
                &expires,
                &actors,
                &references,
                &metadata,
                &results,
                &requests,
                &completed,
                &to_system_time(at),
            ],
        )
        .await?;
    Ok(())
}

async fn resolve_holds(client: &impl GenericClient, output: &BatchOutput, at: Timestamp) -> Result<(), StoreError> {
    if output.resolved.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = output.resolved.iter().map(|r| r.pending_id.0).collect();
    let statuses: Vec<&str> = output.resolved.iter().map(|r| r.status.as_str()).collect();
    let updated = client
        .execute(
            "UPDATE transfers t SET status = u.status, completed_at = $3
             FROM unnest($1::uuid[], $2::text[]) AS u(id, status)
             WHERE t.id = u.id AND t.status = 'pending'",
            &[&ids, &statuses, &to_system_time(at)],
        )
        .await?;
    assert_eq!(updated, ids.len() as u64, "every resolved hold was pending under our locks");
    Ok(())
}

async fn update_accounts(
    client: &impl GenericClient,
    state: &LedgerState,
    output: &BatchOutput,
    at: Timestamp,
) -> Result<(), StoreError> {
    if output.accounts_changed.is_empty() {
        return Ok(());
    }
    let accounts: Vec<_> = output.accounts_changed.iter().map(|id| &state.accounts[id]).collect();
    let ids: Vec<Uuid> = accounts.iter().map(|a| a.id.0).collect();
    let column =
        |f: fn(&tally_core::Account) -> i128| -> Vec<Decimal> { accounts.iter().map(|a| to_numeric(f(a))).collect() };
    let versions: Vec<i64> = accounts.iter().map(|a| a.version).collect();
    let updated = client
        .execute(
            "UPDATE accounts a SET debits_posted = u.debits_posted, credits_posted = u.credits_posted,
                    debits_pending = u.debits_pending, credits_pending = u.credits_pending,
                    version = u.version, updated_at = $7
             FROM unnest($1::uuid[], $2::numeric[], $3::numeric[], $4::numeric[], $5::numeric[], $6::int8[])
                 AS u(id, debits_posted, credits_posted, debits_pending, credits_pending, version)
             WHERE a.id = u.id",
            &[
                &ids,
                &column(|a| a.debits_posted),
                &column(|a| a.credits_posted),
                &column(|a| a.debits_pending),
                &column(|a| a.credits_pending),
                &versions,
                &to_system_time(at),
            ],
        )
        .await?;
    assert_eq!(updated, ids.len() as u64, "every changed account was locked and exists");
    Ok(())
}
