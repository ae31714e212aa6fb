//! Writing a decided batch: one SQL transaction per batch. The engine decides
//! (`tally_engine`'s `decide`, the one place that runs `LedgerState::apply_segments` and
//! `expire`); this module gives it typed operations and writes what it decided, deciding
//! nothing itself: reads of journal rows by id (`BatchConn::prefetch`), of holds past their
//! timeout (`due_holds`), of accounts with or without their row locks (`lock_accounts`,
//! `read_accounts`), the write transaction (`begin`), and the write (`write_and_commit`).
//!
//! A pipelined batch opens its write transaction once the batch it was decided after
//! (`AccountOrder::after`) has opened its own; its account updates follow the predecessor's,
//! and it commits only if the predecessor committed.
//!
//! Writing, in this order: journal rows by binary COPY, resolved holds, one audit row per
//! batch, the wait for the predecessor's account locks, account totals (one array statement,
//! which takes the accounts' row locks in id order), the wait for the predecessor's commit,
//! events, COMMIT. Every account the batch read is written at the version the decisions were
//! made on, or the batch fails with a transient error and writes nothing.
//!
//! Every wait inside a write transaction is one PostgreSQL can see (a row lock, a unique-key
//! insert, an advisory lock), so its deadlock detector breaks any cycle, and each is bounded by
//! `LOCK_TIMEOUT`. Tally never waits on anything of its own while a write transaction is open.
//!
//! Nothing is retried here: a transient failure (deadlock, serialization failure, a concurrent
//! insert of the same transfer id, a lost connection) rolls the whole batch back and is
//! returned, and the engine retries the batch. An expected-version precondition is a decision,
//! never retried.
//!
//! A connection lost after COMMIT was sent is different: the batch may have committed. It is
//! returned as `StoreError::CommitUnanswered` with what the batch wrote (`UnansweredBatch`), and
//! `Store::batch_outcome` finds out later, on another connection, whether it committed: every
//! journal row a batch writes carries its batch id, and so does the audit row of every hold it
//! resolves.

use crate::accounts::{ACCOUNT_COLUMNS, account_from_row};
use crate::convert::{from_numeric, from_system_time, to_numeric, to_system_time};
use crate::error::commit_error;
use crate::journal::{self, AuditEntry};
use crate::timing::Stopwatch;
use crate::{Store, StoreError};
use deadpool_postgres::GenericClient;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};
use tally_core::transfer::ACTOR_LEN_MAX;
use tally_core::{
    Account, AccountId, BATCH_SIZE_MAX, BatchOutput, LedgerState, Rejection, Timestamp, Transfer, TransferId,
    TransferKind, TransferResult, TransferStatus,
};
use tokio_postgres::Row;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use uuid::Uuid;

/// The actor name the expiry sweeper writes to the audit log.
pub const EXPIRY_ACTOR: &str = "system:expiry";

/// The columns `transfer_from_row` reads, in order.
pub(crate) const TRANSFER_COLUMNS: &str = "t.id, t.kind, t.status, t.debit_account_id, t.credit_account_id, t.amount, \
     t.currency, t.related_id, t.timeout_seconds, t.expires_at, t.reference, t.metadata, t.result, t.request, \
     t.created_at, t.completed_at, t.actor, t.seq, t.ledger_id";

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
    let ledger = tally_core::LedgerId(row.get(18));
    if status == "rejected" {
        let code: &str = row.get(12);
        let request: Value = row.get(13);
        let rejection = Rejection {
            request: serde_json::from_value(request).expect("stored requests deserialize"),
            result: TransferResult::from_code(code).expect("stored result codes are known"),
            created_at,
            ledger,
        };
        return JournalRow::Rejected { rejection, actor, seq };
    }
    let kind: &str = row.get(1);
    let timeout: Option<i32> = row.get(8);
    let transfer = Transfer {
        id: TransferId(row.get(0)),
        ledger,
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

/// How long one lock wait inside a write transaction may last before the batch fails (with a
/// transient error, so the engine retries it). Deadlock cycles are broken sooner, by
/// PostgreSQL's `deadlock_timeout`; this bounds waits on a session that holds an account row and
/// never ends, such as an SQL client left idle in its transaction.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// A write transaction left idle this long is ended by PostgreSQL. A backstop only: the engine
/// never waits on anything of its own while a write transaction is open.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a write transaction's server process checks, while it waits, that Tally is still
/// connected: a batch abandoned by a bounded shutdown (its connection closed) then rolls back and
/// lets go of its locks within this, instead of when its lock wait ends.
pub const CLIENT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The classes (first keys) of the two advisory locks each write transaction takes when it
/// begins, keyed by its transaction id: one it holds until it ends (a successor waits on it for
/// the outcome), one it holds until its account rows are locked (a successor waits on it before
/// updating accounts). The two-key form keeps these apart from one-key advisory locks of
/// migrations and other software.
const COMMIT_LOCK_CLASS: i32 = 0x5441_4C59;
const ACCOUNTS_LOCK_CLASS: i32 = 0x5441_4C5A;

const _: () = assert!(LOCK_TIMEOUT.as_millis() < IDLE_IN_TRANSACTION_TIMEOUT.as_millis());

/// A batch's write transaction, as named by a batch that was decided on its effects: its
/// transaction id, the key of the two advisory locks it takes when it begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchToken(i64);

/// A batch whose COMMIT was sent and never answered: what it wrote, for `Store::batch_outcome`
/// to tell afterwards whether it committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnansweredBatch {
    /// Its write transaction, which holds its commit lock until it ends.
    token: BatchToken,
    /// The id every journal row it inserted carries, and the audit row of every hold it resolved.
    batch_id: Uuid,
    /// The journal rows it inserted, applied and rejected.
    journal_ids: Vec<Uuid>,
    /// The holds it resolved.
    resolved_ids: Vec<Uuid>,
}

impl UnansweredBatch {
    fn new(token: BatchToken, batch_id: Uuid, output: &BatchOutput) -> UnansweredBatch {
        let mut journal_ids: Vec<Uuid> =
            output.created.iter().map(|t| t.id.0).chain(output.rejected.iter().map(|r| r.request.id.0)).collect();
        journal_ids.sort_unstable();
        journal_ids.dedup();
        assert_eq!(journal_ids.len(), output.created.len() + output.rejected.len(), "one journal row per id");
        let resolved_ids: Vec<Uuid> = output.resolved.iter().map(|r| r.pending_id.0).collect();
        UnansweredBatch { token, batch_id, journal_ids, resolved_ids }
    }
}

/// What became of a batch whose COMMIT went unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    Committed,
    RolledBack,
    /// It inserted no journal row and resolved no hold (its requests only replayed ids decided
    /// before, or an expiry pass found nothing due): committed or not, it changed nothing.
    Unchanged,
}

/// Where a pipelined batch stands among the batches in flight.
pub struct AccountOrder<B> {
    /// The batch this one was decided after: this one updates accounts only once that one
    /// holds its account row locks (so that it queues behind them, instead of finding the old
    /// versions), and commits only if that one committed.
    pub after: Option<BatchToken>,
    /// Called with this batch's token as soon as its write transaction holds the locks a
    /// successor waits on, so that the successor may begin.
    pub begun: B,
}

/// One batch's connection, which may move between tasks (decided by one, written by another).
/// Its reads run outside any SQL transaction; `begin` opens the write transaction. Dropping it
/// inside that transaction, without `write_and_commit` or `rollback`, discards the connection,
/// which makes PostgreSQL roll the transaction back.
pub struct BatchConn {
    client: Option<deadpool_postgres::Object>,
    in_transaction: bool,
    /// The write transaction's token, once `begin` opened it.
    token: Option<BatchToken>,
    stage_times: std::sync::Arc<crate::timing::StageTimes>,
    /// Told of a write refused as read-only, so that the pool's connections to that server go.
    staleness: std::sync::Arc<crate::Staleness>,
}

impl Store {
    /// Takes a connection for one batch, outside any SQL transaction.
    pub async fn open_batch(&self) -> Result<BatchConn, StoreError> {
        let client = self.client().await?;
        Ok(BatchConn {
            client: Some(client),
            in_transaction: false,
            token: None,
            stage_times: self.stage_times.clone(),
            staleness: self.staleness.clone(),
        })
    }

    /// Whether the batch whose COMMIT went unanswered committed. It first waits, at most
    /// `lock_wait`, until that batch's transaction has ended: the transaction holds its commit
    /// lock until then (a server restart since ended it too), so that an answer read while it
    /// still ran cannot be overtaken by its COMMIT. Then it looks for the batch's id on the
    /// journal rows and hold resolutions it wrote: all of them or none, as one SQL transaction
    /// writes them. One attempt: a failure (the database still unreachable) is returned.
    pub async fn batch_outcome(
        &self,
        batch: &UnansweredBatch,
        lock_wait: Duration,
    ) -> Result<BatchOutcome, StoreError> {
        if batch.journal_ids.is_empty() && batch.resolved_ids.is_empty() {
            return Ok(BatchOutcome::Unchanged);
        }
        let mut client = self.client().await?;
        let db_tx = client.transaction().await?;
        // A number of ours, never user-supplied.
        db_tx.batch_execute(&format!("SET LOCAL lock_timeout = '{}ms'", lock_wait.as_millis().max(1))).await?;
        let wait = db_tx
            .prepare_cached("SELECT pg_advisory_xact_lock_shared($1::int4, ($2::int8 % 2147483647)::int4)")
            .await?;
        db_tx.query_one(&wait, &[&COMMIT_LOCK_CLASS, &batch.token.0]).await?;
        let journal =
            db_tx.prepare_cached("SELECT count(*) FROM transfers WHERE id = ANY($1) AND batch_id = $2").await?;
        let journal: i64 = db_tx.query_one(&journal, &[&batch.journal_ids, &batch.batch_id]).await?.get(0);
        let resolved: Vec<String> = batch.resolved_ids.iter().map(Uuid::to_string).collect();
        let resolutions = db_tx
            .prepare_cached(
                "SELECT count(*) FROM audit_log
                 WHERE entity_id = ANY($1) AND action = 'transfer.resolve' AND after->>'batch_id' = $2",
            )
            .await?;
        let resolutions: i64 = db_tx.query_one(&resolutions, &[&resolved, &batch.batch_id.to_string()]).await?.get(0);
        db_tx.commit().await?;
        let written = (usize::try_from(journal).expect("a count"), usize::try_from(resolutions).expect("a count"));
        let all = (batch.journal_ids.len(), batch.resolved_ids.len());
        assert!(
            written == all || written == (0, 0),
            "one SQL transaction commits all of its rows or none: batch {} has {} of {} journal rows and {} of {} \
             hold resolutions",
            batch.batch_id,
            written.0,
            all.0,
            written.1,
            all.1
        );
        Ok(if written == all { BatchOutcome::Committed } else { BatchOutcome::RolledBack })
    }
}

impl AccountOrder<fn(BatchToken)> {
    /// A batch that depends on no other and tells no one when it begins.
    pub fn alone() -> Self {
        AccountOrder { after: None, begun: |_| () }
    }
}

impl BatchConn {
    pub(crate) fn client(&self) -> &deadpool_postgres::Client {
        self.client.as_ref().expect("open batch")
    }

    /// Passes a result on, telling the store of a write its server refused as read-only.
    fn noted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(error) = &result {
            self.staleness.note(error);
        }
        result
    }

    /// Opens the write transaction (READ COMMITTED, keyed lookups only, bounded lock waits) and
    /// takes the advisory locks that later batches wait on. Returns the batch's token. The
    /// accounts lock is a session lock, released by `write_batch` once the account rows are
    /// locked, or by closing the connection or `rollback` when the batch fails.
    pub async fn begin(&mut self) -> Result<BatchToken, StoreError> {
        assert!(!self.in_transaction, "a batch begins once");
        // Keyed lookups only: stop the planner from hashing whole tables for the array joins.
        // Every value in this text is a constant of ours; nothing user-supplied reaches it.
        let sql = format!(
            "BEGIN; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off;
             SET LOCAL lock_timeout = '{}ms'; SET LOCAL idle_in_transaction_session_timeout = '{}ms';
             SET LOCAL client_connection_check_interval = '{}ms';
             SET LOCAL tally.journal_accounts_checked = 'batch';
             SELECT x::text FROM (SELECT pg_current_xact_id()::text::int8 AS x) s,
                 LATERAL pg_advisory_xact_lock({COMMIT_LOCK_CLASS}, (x % 2147483647)::int4) c,
                 LATERAL pg_advisory_lock({ACCOUNTS_LOCK_CLASS}, (x % 2147483647)::int4) a",
            LOCK_TIMEOUT.as_millis(),
            IDLE_IN_TRANSACTION_TIMEOUT.as_millis(),
            CLIENT_CHECK_INTERVAL.as_millis()
        );
        self.in_transaction = true;
        let messages = self.noted(self.client().simple_query(&sql).await.map_err(StoreError::from))?;
        let xid = messages
            .iter()
            .find_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
                _ => None,
            })
            .expect("the transaction id row");
        let token = BatchToken(xid.parse().expect("a transaction id is an integer"));
        self.token = Some(token);
        Ok(token)
    }

    /// Loads the named journal rows (applied and rejected) into `state`, and which of them were
    /// already reversed.
    pub async fn prefetch(&self, ids: &[Uuid], state: &mut LedgerState) -> Result<(), StoreError> {
        prefetch_transfers(self.client(), ids, state).await
    }

    /// Locks the accounts in id order (`FOR UPDATE`) and loads them into `state`. Missing ids are
    /// simply absent.
    pub async fn lock_accounts(&self, ids: &BTreeSet<Uuid>, state: &mut LedgerState) -> Result<(), StoreError> {
        assert!(self.in_transaction, "locks are taken inside the write transaction");
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = ids.iter().copied().collect();
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = ANY($1) ORDER BY a.id FOR UPDATE");
        let statement = self.client().prepare_cached(&sql).await?;
        for row in self.noted(self.client().query(&statement, &[&ids]).await.map_err(StoreError::from))? {
            let account = account_from_row(&row);
            state.accounts.insert(account.id, account);
        }
        Ok(())
    }

    /// Up to `limit` holds still open whose timeout passed at `at`, oldest first.
    pub async fn due_holds(&self, at: Timestamp, limit: i64) -> Result<Vec<Uuid>, StoreError> {
        let limit = limit.clamp(1, i64::try_from(BATCH_SIZE_MAX).expect("fits"));
        let statement = self
            .client()
            .prepare_cached(
                "SELECT id FROM transfers WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
            )
            .await?;
        let rows = self.client().query(&statement, &[&to_system_time(at), &limit]).await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Reads accounts without locking them (for decisions checked later by version).
    pub async fn read_accounts(&self, ids: &[Uuid]) -> Result<Vec<Account>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = ANY($1)");
        let statement = self.client().prepare_cached(&sql).await?;
        Ok(self.client().query(&statement, &[&ids]).await?.iter().map(account_from_row).collect())
    }

    /// Writes what the batch decided and commits, opening the write transaction first if the
    /// batch was decided outside one. Fails with a transient error, writing nothing, when an
    /// account is no longer at its `expected` version, a hold was resolved meanwhile, or the
    /// batch `order.after` did not commit: the decisions were made on state that never was or
    /// has moved on. `order.begun` is called as soon as the write transaction is open.
    ///
    /// `actors` names the authenticated caller of each request of the batch by its transfer id
    /// (at most `BATCH_SIZE_MAX` pairs; the first pair of an id counts); what the batch writes
    /// under an id it does not name (an expiry pass) is recorded under `EXPIRY_ACTOR`.
    #[allow(clippy::too_many_arguments)]
    pub async fn write_and_commit(
        mut self,
        state: &LedgerState,
        output: &BatchOutput,
        actors: &[(TransferId, &str)],
        expected: &HashMap<AccountId, i64>,
        at: Timestamp,
        watch: &mut Stopwatch<'_>,
        order: AccountOrder<impl FnOnce(BatchToken)>,
    ) -> Result<(), StoreError> {
        assert!(actors.len() <= BATCH_SIZE_MAX, "batch above BATCH_SIZE_MAX");
        if let Some((_, bad)) = actors.iter().find(|(_, actor)| actor.is_empty() || actor.len() > ACTOR_LEN_MAX) {
            return Err(StoreError::Invalid(format!("actor {bad:?} must be 1 to {ACTOR_LEN_MAX} bytes")));
        }
        let token = match self.token {
            Some(token) => token,
            None => {
                let token = self.begin().await?;
                watch.lap(0);
                token
            }
        };
        (order.begun)(token);
        let batch_id = Uuid::now_v7();
        let written =
            write_batch(self.client(), state, output, actors, expected, at, watch, token, batch_id, order.after).await;
        self.noted(written)?;
        // Until here every failure rolled the batch back. From here on, one may come after
        // PostgreSQL committed.
        if let Err(cause) = self.client().batch_execute("COMMIT").await {
            return Err(commit_error(cause, Some(UnansweredBatch::new(token, batch_id, output))));
        }
        watch.lap(9);
        self.in_transaction = false;
        Ok(())
    }

    /// `write_and_commit`, timing its stages into the store's totals.
    pub async fn commit_batch(
        self,
        state: &LedgerState,
        output: &BatchOutput,
        actors: &[(TransferId, &str)],
        expected: &HashMap<AccountId, i64>,
        at: Timestamp,
        order: AccountOrder<impl FnOnce(BatchToken)>,
    ) -> Result<(), StoreError> {
        let times = self.stage_times.clone();
        let mut watch = Stopwatch::start(&times);
        self.write_and_commit(state, output, actors, expected, at, &mut watch, order).await
    }

    /// Rolls back, if a write transaction is open, and returns the connection to the pool.
    pub async fn rollback(mut self) {
        if self.in_transaction
            && let Some(client) = self.client.take()
            && client.batch_execute("ROLLBACK; SELECT pg_advisory_unlock_all()").await.is_err()
        {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

impl Drop for BatchConn {
    fn drop(&mut self) {
        if self.in_transaction
            && let Some(client) = self.client.take()
        {
            // Mid-transaction: never hand this connection to anyone else.
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// Loads the named journal rows, and whether each applied one was already reversed.
async fn prefetch_transfers(
    client: &impl GenericClient,
    ids: &[Uuid],
    state: &mut LedgerState,
) -> Result<(), StoreError> {
    let sql = format!(
        "SELECT {TRANSFER_COLUMNS},
                EXISTS (SELECT 1 FROM transfers r WHERE r.related_id = t.id AND r.ledger_id = t.ledger_id
                                                      AND r.kind = 'reversal') AS reversed
         FROM transfers t WHERE t.id = ANY($1)"
    );
    let statement = client.prepare_cached(&sql).await?;
    for row in client.query(&statement, &[&ids]).await? {
        let reversed: bool = row.get(19);
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

/// Writes everything a batch decided. `actors` gives each request's actor by its id.
///
/// Journal rows are their own audit record (immutable, with actor and time); the batch gets one
/// audit row naming it, which every row it wrote points to through `batch_id`, and each hold it
/// resolved gets an audit row of its own (a change to an existing row). They are written first,
/// while the predecessor (`after`) may still be updating its accounts. Account totals follow,
/// once the predecessor holds its account row locks, so that this batch queues behind them (in
/// id order, as every writer locks accounts). Events carry no payload: the journal row under
/// `entity_id` is the payload; they are numbered last, after the predecessor committed, so that
/// the singleton sequence row is held only by a transaction that is about to commit. Every wait
/// here is on a row, a unique key or an advisory lock: PostgreSQL sees them all.
#[allow(clippy::too_many_arguments)]
async fn write_batch(
    client: &deadpool_postgres::Client,
    state: &LedgerState,
    output: &BatchOutput,
    actors: &[(TransferId, &str)],
    expected: &HashMap<AccountId, i64>,
    at: Timestamp,
    watch: &mut Stopwatch<'_>,
    token: BatchToken,
    batch_id: Uuid,
    after: Option<BatchToken>,
) -> Result<(), StoreError> {
    let actors = {
        let mut by_id: HashMap<TransferId, &str> = HashMap::with_capacity(actors.len());
        for &(id, actor) in actors {
            by_id.entry(id).or_insert(actor);
        }
        by_id
    };
    let actor_of = |id: TransferId| -> &str { actors.get(&id).copied().unwrap_or(EXPIRY_ACTOR) };
    assert_accounts_read(state, output, expected);
    copy_journal_rows(client, output, &actor_of, batch_id, at).await?;
    resolve_holds(client, output, at).await?;
    watch.lap(4);

    let mut entries = Vec::with_capacity(1 + output.resolved.len());
    if !output.created.is_empty() || !output.rejected.is_empty() {
        let mut batch_actors: Vec<&str> = actors.values().copied().collect();
        batch_actors.sort_unstable();
        batch_actors.dedup();
        entries.push(AuditEntry {
            actor: if batch_actors.len() == 1 { batch_actors[0] } else { "engine" },
            action: "transfer.batch",
            event_type: None,
            entity_type: "batch",
            ledger: None,
            entity_id: batch_id.to_string(),
            before: None,
            after: json!({"applied": output.created.len(), "rejected": output.rejected.len(),
                          "resolved": output.resolved.len(), "actors": batch_actors}),
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
            event_type: None,
            entity_type: "transfer",
            ledger: None,
            entity_id: resolution.pending_id.to_string(),
            before: Some(json!({"status": "pending"})),
            after: json!({"status": resolution.status.as_str(), "batch_id": batch_id}),
        });
    }
    journal::append_at(client, &entries, Some(to_system_time(at))).await?;
    watch.lap(6);
    if let Some(predecessor) = after {
        await_lock(client, ACCOUNTS_LOCK_CLASS, predecessor).await?;
    }
    update_accounts(client, state, expected, at).await?;
    release_accounts_lock(client, token).await?;
    watch.lap(5);
    if let Some(predecessor) = after {
        let status = await_lock(client, COMMIT_LOCK_CLASS, predecessor).await?;
        if status.as_deref() != Some("committed") {
            return Err(StoreError::Conflict(format!(
                "the batch this one was decided after did not commit (transaction {}: {})",
                predecessor.0,
                status.as_deref().unwrap_or("unknown")
            )));
        }
    }
    watch.lap(7);
    copy_events(client, output, at).await?;
    watch.lap(8);
    Ok(())
}

/// Every transfer the batch writes names two accounts the batch read, open, in the transfer's
/// currency. `update_accounts` then proves, in the same SQL transaction, that each of those rows
/// exists, which is why the journal's statement-level account check skips the engine's writes
/// (`tally.journal_accounts_checked`, migration 0008). The core decided on these accounts, so a
/// failure here is a bug, never bad input.
fn assert_accounts_read(state: &LedgerState, output: &BatchOutput, expected: &HashMap<AccountId, i64>) {
    for transfer in &output.created {
        for id in [transfer.debit_account_id, transfer.credit_account_id] {
            assert!(
                expected.contains_key(&id),
                "transfer {} names account {id:?}, which the batch did not read",
                transfer.id.0
            );
            let account = &state.accounts[&id];
            assert_ne!(
                account.status,
                tally_core::AccountStatus::Closed,
                "transfer {} names a closed account",
                transfer.id.0
            );
            assert_eq!(
                account.currency, transfer.currency,
                "transfer {} and its account differ in currency",
                transfer.id.0
            );
            assert_eq!(account.ledger, transfer.ledger, "transfer {} and its account differ in ledger", transfer.id.0);
        }
    }
}

/// Waits, in PostgreSQL, until the batch `predecessor` lets go of its advisory lock of `class`,
/// and returns the predecessor's transaction status (`committed`, `aborted`, `in progress`).
/// The wait is on a lock, so the deadlock detector sees it like any row lock; the status of a
/// transaction is settled before it releases its transaction-level locks.
async fn await_lock(
    client: &deadpool_postgres::Client,
    class: i32,
    predecessor: BatchToken,
) -> Result<Option<String>, StoreError> {
    let statement = client
        .prepare_cached(
            "WITH waited AS MATERIALIZED (
                 SELECT pg_advisory_xact_lock_shared($1::int4, ($2::int8 % 2147483647)::int4))
             SELECT pg_xact_status($2::int8::text::xid8) FROM waited",
        )
        .await?;
    Ok(client.query_one(&statement, &[&class, &predecessor.0]).await?.get(0))
}

/// Lets a successor update its accounts: this batch holds its account row locks now.
async fn release_accounts_lock(client: &deadpool_postgres::Client, token: BatchToken) -> Result<(), StoreError> {
    let statement = client.prepare_cached("SELECT pg_advisory_unlock($1::int4, ($2::int8 % 2147483647)::int4)").await?;
    let released: bool = client.query_one(&statement, &[&ACCOUNTS_LOCK_CLASS, &token.0]).await?.get(0);
    assert!(released, "a batch holds its accounts lock until it releases it here");
    Ok(())
}

/// The journal rows of a batch, applied and rejected, by binary COPY in the order they were
/// decided (so that `seq` follows it).
async fn copy_journal_rows<'a>(
    client: &deadpool_postgres::Client,
    output: &BatchOutput,
    actor_of: &impl Fn(TransferId) -> &'a str,
    batch_id: Uuid,
    at: Timestamp,
) -> Result<(), StoreError> {
    if output.created.is_empty() && output.rejected.is_empty() {
        return Ok(());
    }
    let sink = client
        .copy_in(&client.prepare_cached("COPY transfers (id, kind, status, debit_account_id, credit_account_id, amount, currency, related_id,
                             timeout_seconds, expires_at, actor, reference, metadata, result, request,
                             created_at, completed_at, batch_id, ledger_id) FROM STDIN (FORMAT binary)",).await?)
        .await?;
    let types = [
        Type::UUID,
        Type::TEXT,
        Type::TEXT,
        Type::UUID,
        Type::UUID,
        Type::NUMERIC,
        Type::TEXT,
        Type::UUID,
        Type::INT4,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::TEXT,
        Type::JSONB,
        Type::TEXT,
        Type::JSONB,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::UUID,
        Type::INT4,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    let created_at = to_system_time(at);
    let none_uuid: Option<Uuid> = None;
    let none_text: Option<&str> = None;
    let none_json: Option<&Value> = None;
    for t in &output.created {
        let timeout = t.timeout_seconds.map(|s| i32::try_from(s).expect("bounded timeout"));
        writer
            .as_mut()
            .write(&[
                &t.id.0,
                &t.kind.as_str(),
                &t.status.as_str(),
                &t.debit_account_id.0,
                &t.credit_account_id.0,
                &to_numeric(t.amount),
                &t.currency,
                &t.related_id.map(|r| r.0),
                &timeout,
                &t.expires_at.map(to_system_time),
                &actor_of(t.id),
                &t.reference,
                &t.metadata,
                &none_text,
                &none_json,
                &created_at,
                &t.completed_at.map(to_system_time),
                &batch_id,
                &t.ledger.0,
            ])
            .await?;
    }
    for r in &output.rejected {
        let request = serde_json::to_value(&r.request).expect("requests serialize");
        writer
            .as_mut()
            .write(&[
                &r.request.id.0,
                &r.request.kind.as_str(),
                &"rejected",
                &none_uuid,
                &none_uuid,
                &None::<Decimal>,
                &none_text,
                &none_uuid,
                &None::<i32>,
                &None::<SystemTime>,
                &actor_of(r.request.id),
                &none_text,
                &none_json,
                &r.result.code(),
                &request,
                &created_at,
                &created_at,
                &batch_id,
                &r.ledger.0,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// One event per applied transfer and per expired hold, numbered from the gap-free sequence.
/// Last statement before COMMIT: the sequence row stays locked until then.
async fn copy_events(
    client: &deadpool_postgres::Client,
    output: &BatchOutput,
    at: Timestamp,
) -> Result<(), StoreError> {
    let expired = output.resolved.iter().filter(|r| r.status == TransferStatus::Expired);
    let events: Vec<(String, String, i32)> = output
        .created
        .iter()
        .map(|t| (format!("transfer.{}", t.kind.as_str()), t.id.to_string(), t.ledger.0))
        .chain(expired.map(|r| ("transfer.expired".to_owned(), r.pending_id.to_string(), r.ledger.0)))
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    let count = i64::try_from(events.len()).expect("bounded batch");
    let base: i64 = client
        .query_one(
            &client
                .prepare_cached("UPDATE event_sequence SET last_seq = last_seq + $1 RETURNING last_seq - $1")
                .await?,
            &[&count],
        )
        .await?
        .get(0);
    let copy =
        client.prepare_cached("COPY events (seq, at, type, entity_id, ledger_id) FROM STDIN (FORMAT binary)").await?;
    let sink = client.copy_in(&copy).await?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TIMESTAMPTZ, Type::TEXT, Type::TEXT, Type::INT4]);
    let mut writer = std::pin::pin!(writer);
    let at = to_system_time(at);
    for (offset, (event_type, entity_id, ledger)) in (1..).zip(&events) {
        writer.as_mut().write(&[&(base + offset), &at, event_type, entity_id, ledger]).await?;
    }
    writer.finish().await?;
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
            &client
                .prepare_cached(
                    "UPDATE transfers t SET status = u.status, completed_at = $3
             FROM unnest($1::uuid[], $2::text[]) AS u(id, status)
             WHERE t.id = u.id AND t.status = 'pending'",
                )
                .await?,
            &[&ids, &statuses, &to_system_time(at)],
        )
        .await?;
    if updated != ids.len() as u64 {
        return Err(StoreError::Conflict("a hold this batch resolves was resolved meanwhile".into()));
    }
    Ok(())
}

async fn update_accounts(
    client: &impl GenericClient,
    state: &LedgerState,
    expected: &HashMap<AccountId, i64>,
    at: Timestamp,
) -> Result<(), StoreError> {
    // Every account the batch read, changed or not, in id order: an unchanged one is written
    // back as it is, which checks under its row lock that it is still at the version the
    // decisions were made on (a refusal depends on an account as much as a transfer does).
    // Closed is final, so a closed account needs no check (and may not be written at all).
    let mut read: Vec<AccountId> =
        expected.keys().copied().filter(|id| state.accounts[id].status != tally_core::AccountStatus::Closed).collect();
    read.sort_unstable();
    if read.is_empty() {
        return Ok(());
    }
    let accounts: Vec<_> = read.iter().map(|id| &state.accounts[id]).collect();
    let ids: Vec<Uuid> = accounts.iter().map(|a| a.id.0).collect();
    let column =
        |f: fn(&tally_core::Account) -> i128| -> Vec<Decimal> { accounts.iter().map(|a| to_numeric(f(a))).collect() };
    let versions: Vec<i64> = accounts.iter().map(|a| a.version).collect();
    let before: Vec<i64> = accounts.iter().map(|a| expected[&a.id]).collect();
    assert!(versions.iter().zip(&before).all(|(after, before)| after >= before), "versions never decrease");
    // Rows are matched by id only: a row another batch holds is waited for and then read at its
    // newest version, which must be the version the decisions were made on. A mismatch is marked
    // with version 0, which the accounts_guard trigger (run on the final row, after the wait)
    // turns into serialization_failure. A version test in WHERE, or an error raised in the SET
    // list, would be judged against the statement's snapshot instead, before the wait.
    let updated = client
        .execute(
            &client
                .prepare_cached(
                    "UPDATE accounts a SET debits_posted = u.debits_posted, credits_posted = u.credits_posted,
                    debits_pending = u.debits_pending, credits_pending = u.credits_pending,
                    version = CASE WHEN a.version = u.expected THEN u.version ELSE 0 END,
                    updated_at = CASE WHEN u.version > a.version THEN $7 ELSE a.updated_at END
             FROM unnest($1::uuid[], $2::numeric[], $3::numeric[], $4::numeric[], $5::numeric[], $6::int8[], $8::int8[])
                 AS u(id, debits_posted, credits_posted, debits_pending, credits_pending, version, expected)
             WHERE a.id = u.id",
                )
                .await?,
            &[
                &ids,
                &column(|a| a.debits_posted),
                &column(|a| a.credits_posted),
                &column(|a| a.debits_pending),
                &column(|a| a.credits_pending),
                &versions,
                &to_system_time(at),
                &before,
            ],
        )
        .await?;
    if updated != ids.len() as u64 {
        return Err(StoreError::Conflict(format!(
            "{} of {} accounts no longer exist",
            ids.len() as u64 - updated,
            ids.len()
        )));
    }
    Ok(())
}
