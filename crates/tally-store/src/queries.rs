//! Read-side queries: one transfer, an account's history, event and audit pages (events with
//! their subjects, as the API presents them), counts.

use crate::accounts::{AccountRecord, resolve_account_id};
use crate::posting::{JournalRow, journal_row_from_row};
use crate::{Store, StoreError};
use serde::Deserialize;
use std::collections::HashMap;
use tally_core::{AccountId, LedgerId, Timestamp, Transfer, TransferKind, TransferStatus};
use uuid::Uuid;

/// The most entries one page of history returns.
pub const HISTORY_PAGE_SIZE_MAX: i64 = 1_000;

/// Which side of a transfer an account was on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Money left the account (the seed's 'debit').
    Debit,
    /// Money entered the account.
    Credit,
}

/// One line of an account's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// Journal position; pass the last one as `before` to get the next (older) page.
    pub seq: i64,
    pub direction: Direction,
    pub other_account_id: AccountId,
    pub transfer: Transfer,
    pub actor: String,
}

impl Store {
    /// The journal row under a transfer id: an applied transfer or a recorded rejection.
    pub async fn journal_row(&self, id: Uuid) -> Result<Option<JournalRow>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {} FROM transfers t WHERE t.id = $1", crate::posting::TRANSFER_COLUMNS);
        Ok(client.query_opt(&sql, &[&id]).await?.as_ref().map(journal_row_from_row))
    }

    /// An applied transfer by id.
    pub async fn transfer(&self, id: Uuid) -> Result<Option<Transfer>, StoreError> {
        Ok(match self.journal_row(id).await? {
            Some(JournalRow::Applied { transfer, .. }) => Some(transfer),
            _ => None,
        })
    }

    /// An account's transfers, newest first, before the `before` cursor (a seq), at most `limit`.
    pub async fn history(
        &self,
        id_or_code: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let limit = limit.clamp(1, HISTORY_PAGE_SIZE_MAX);
        let before = before.unwrap_or(i64::MAX);
        let client = self.client().await?;
        let account = resolve_account_id(&client, id_or_code).await?;
        // Two index scans (debit side, credit side), each already newest first, merged.
        let sql = format!(
            "SELECT * FROM (
                 (SELECT {cols} FROM transfers t WHERE t.debit_account_id = $1 AND t.seq < $2 ORDER BY t.seq DESC LIMIT $3)
                 UNION ALL
                 (SELECT {cols} FROM transfers t WHERE t.credit_account_id = $1 AND t.seq < $2 ORDER BY t.seq DESC LIMIT $3)
             ) h ORDER BY seq DESC LIMIT $3",
            cols = crate::posting::TRANSFER_COLUMNS
        );
        let rows = client.query(&sql, &[&account, &before, &limit]).await?;
        Ok(rows
            .iter()
            .map(|row| match journal_row_from_row(row) {
                JournalRow::Applied { transfer, actor, seq } => {
                    let debit = transfer.debit_account_id.0 == account;
                    HistoryEntry {
                        seq,
                        direction: if debit { Direction::Debit } else { Direction::Credit },
                        other_account_id: if debit { transfer.credit_account_id } else { transfer.debit_account_id },
                        transfer,
                        actor,
                    }
                }
                JournalRow::Rejected { .. } => unreachable!("rejections name no accounts"),
            })
            .collect())
    }
}

/// The most rows one page of transfers, audit rows or events returns.
pub const PAGE_SIZE_MAX: i64 = 1_000;
/// Journal positions one listing statement scans without an account filter (through the BRIN
/// index on `seq`), and how many such windows one request may scan: the cost of a listing is
/// bounded whatever its filters match.
pub const LISTING_WINDOW: i64 = 1 << 16;
pub const LISTING_WINDOWS_MAX: usize = 64;

/// Filters for `list_transfers`; every field is optional but `limit`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransferFilter {
    pub account: Option<AccountId>,
    /// `posted`, `pending`, `voided`, `expired` or `rejected`; applied transfers when absent.
    pub status: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Journal position: only rows older than this (the previous page's `next_cursor`).
    pub before: Option<i64>,
    /// Only rows of these ledgers (`None`: every ledger).
    pub ledgers: Option<Vec<LedgerId>>,
    pub limit: i64,
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: Timestamp,
    pub actor: String,
    pub db_user: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// One event of the outbox, as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventRecord {
    pub seq: i64,
    pub at: Timestamp,
    #[serde(rename = "type")]
    pub event_type: String,
    pub entity_id: String,
    pub payload: Option<serde_json::Value>,
    /// The ledger of the event's subject (`None`: not of one ledger, e.g. a currency).
    pub ledger: Option<LedgerId>,
}

/// What an event is about, read back in types: what the API (and anything that relays events)
/// presents as the event's payload. The events table stays as written; this is how it is read.
#[derive(Debug, Clone, PartialEq)]
pub enum EventSubject {
    /// A transfer event (`transfer.<kind>`, `transfer.expired`): the transfer as the event left
    /// it, rebuilt from its journal row (the engine's events store no copy of it; those written
    /// at an SQL client's commit store one in minor units, which is not used), with its
    /// currency's scale. A hold's `transfer.pending` shows it pending, whatever became of it.
    Transfer { transfer: Transfer, scale: u8 },
    /// An account event (`account.*`): the account as the change left it (the stored payload).
    Account(AccountRecord),
    /// Any other event (its stored payload holds no amount and no time), or a transfer or
    /// account event whose subject cannot be read back (a journal row deleted behind Tally's
    /// back): the stored payload.
    Stored(Option<serde_json::Value>),
}

impl EventSubject {
    /// The subject of `event`, given the journal rows (with their currency's scale) of the
    /// transfer events read with it.
    fn of(event: &EventRecord, transfers: &HashMap<Uuid, (Transfer, u8)>) -> EventSubject {
        let stored = || EventSubject::Stored(event.payload.clone());
        if event.event_type.starts_with("transfer.") {
            let found = Uuid::parse_str(&event.entity_id).ok().and_then(|id| transfers.get(&id));
            let Some((transfer, scale)) = found else { return stored() };
            let mut transfer = transfer.clone();
            if event.event_type != "transfer.expired" && transfer.kind == TransferKind::Pending {
                // The hold as it was placed: later posts, voids and expiry have their own events.
                transfer.status = TransferStatus::Pending;
                transfer.completed_at = None;
            }
            return EventSubject::Transfer { transfer, scale: *scale };
        }
        if event.event_type.starts_with("account.") {
            let record = event.payload.as_ref().and_then(|payload| AccountRecord::deserialize(payload).ok());
            return record.map_or_else(stored, EventSubject::Account);
        }
        stored()
    }
}

impl Store {
    /// Journal rows newest first, filtered; with the cursor to pass as `before` for the next
    /// page (`None` when the journal has nothing older).
    pub async fn list_transfers(&self, filter: &TransferFilter) -> Result<(Vec<JournalRow>, Option<i64>), StoreError> {
        let limit = filter.limit.clamp(1, PAGE_SIZE_MAX);
        let client = self.client().await?;
        let status = filter.status.as_deref();
        let since = filter.since.map(crate::convert::to_system_time);
        let until = filter.until.map(crate::convert::to_system_time);
        let before = filter.before.unwrap_or(i64::MAX);
        let cols = crate::posting::TRANSFER_COLUMNS;
        // Rejections name no accounts, so an account filter lists applied transfers only.
        let conditions = "($3::text IS NULL AND t.status <> 'rejected' OR t.status = $3)
              AND ($4::timestamptz IS NULL OR t.created_at >= $4) AND ($5::timestamptz IS NULL OR t.created_at < $5)
              AND ($7::int4[] IS NULL OR t.ledger_id = ANY($7))";
        let ledgers = filter.ledgers.as_deref().map(crate::ledgers::ledger_ids);
        if let Some(account) = filter.account {
            let sql = format!(
                "SELECT * FROM (
                     (SELECT {cols} FROM transfers t WHERE t.debit_account_id = $1 AND t.seq < $2 AND {conditions}
                      ORDER BY t.seq DESC LIMIT $6)
                     UNION ALL
                     (SELECT {cols} FROM transfers t WHERE t.credit_account_id = $1 AND t.seq < $2 AND {conditions}
                      ORDER BY t.seq DESC LIMIT $6)
                 ) h ORDER BY seq DESC LIMIT $6"
            );
            let rows = client.query(&sql, &[&account.0, &before, &status, &since, &until, &limit, &ledgers]).await?;
            let page: Vec<JournalRow> = rows.iter().map(journal_row_from_row).collect();
            let next = (page.len() as i64 == limit).then(|| seq_of(page.last().expect("a full page")));
            return Ok((page, next));
        }
        // No account: walk the journal backwards in windows of positions.
        let newest: i64 = client
            .query_one("SELECT coalesce(max(last_seq), 0) FROM (SELECT pg_sequence_last_value(pg_get_serial_sequence('transfers', 'seq')) AS last_seq) s", &[])
            .await?
            .get(0);
        let mut upper = before.min(newest.saturating_add(1));
        let sql = format!(
            "SELECT {cols} FROM transfers t WHERE t.seq < $1 AND t.seq >= $2 AND {conditions}
             ORDER BY t.seq DESC LIMIT $6"
        );
        let statement = client.prepare_cached(&sql).await?;
        let mut page = Vec::new();
        for _ in 0..LISTING_WINDOWS_MAX {
            if upper <= 1 {
                return Ok((page, None));
            }
            let lower = upper.saturating_sub(LISTING_WINDOW).max(1);
            let wanted = limit - page.len() as i64;
            let rows = client.query(&statement, &[&upper, &lower, &status, &since, &until, &wanted, &ledgers]).await?;
            page.extend(rows.iter().map(journal_row_from_row));
            if page.len() as i64 == limit {
                let next = seq_of(page.last().expect("a full page"));
                return Ok((page, Some(next)));
            }
            upper = lower;
        }
        // The scan budget ran out before the page filled: the client continues from here.
        Ok((page, (upper > 1).then_some(upper)))
    }

    /// Audit rows after the `after` cursor (an audit id), oldest first.
    pub async fn audit_page(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_page_of(None, after, limit).await
    }

    /// `audit_page`, only the rows about `entity` when it is given: rows whose entity is that id
    /// and, for a transfer, the row of the batch that committed it.
    pub async fn audit_page_of(
        &self,
        entity: Option<Uuid>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = limit.clamp(1, PAGE_SIZE_MAX);
        let client = self.client().await?;
        const COLUMNS: &str = "id, at, actor, db_user, action, entity_type, entity_id, before, after";
        let rows = match entity {
            None => {
                let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2");
                client.query(&sql, &[&after, &limit]).await?
            }
            Some(entity) => {
                // Both arms use the index on entity_id.
                let sql = format!(
                    "SELECT {COLUMNS} FROM audit_log
                     WHERE id > $1 AND (entity_id = $3::uuid::text
                           OR entity_id IN (SELECT batch_id::text FROM transfers WHERE id = $3::uuid))
                     ORDER BY id LIMIT $2"
                );
                client.query(&sql, &[&after, &limit, &entity]).await?
            }
        };
        Ok(rows
            .iter()
            .map(|row| AuditRecord {
                id: row.get(0),
                at: crate::convert::from_system_time(row.get(1)),
                actor: row.get(2),
                db_user: row.get(3),
                action: row.get(4),
                entity_type: row.get(5),
                entity_id: row.get(6),
                before: row.get(7),
                after: row.get(8),
            })
            .collect())
    }

    /// Events after the `after` cursor (a sequence number), in order.
    pub async fn events_page(&self, after: i64, limit: i64) -> Result<Vec<EventRecord>, StoreError> {
        self.events_page_in(after, limit, None).await
    }

    /// `events_page`, only events of these ledgers when `ledgers` is given (events of no one
    /// ledger, such as a currency's, are then left out).
    pub async fn events_page_in(
        &self,
        after: i64,
        limit: i64,
        ledgers: Option<&[LedgerId]>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let limit = limit.clamp(1, PAGE_SIZE_MAX);
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT seq, at, type, entity_id, payload, ledger_id FROM events
                 WHERE seq > $1 AND ($3::int4[] IS NULL OR ledger_id = ANY($3)) ORDER BY seq LIMIT $2",
            )
            .await?;
        let ledgers = ledgers.map(crate::ledgers::ledger_ids);
        let rows = client.query(&statement, &[&after, &limit, &ledgers]).await?;
        Ok(rows
            .iter()
            .map(|row| EventRecord {
                seq: row.get(0),
                at: crate::convert::from_system_time(row.get(1)),
                event_type: row.get(2),
                entity_id: row.get(3),
                payload: row.get(4),
                ledger: row.get::<_, Option<i32>>(5).map(LedgerId),
            })
            .collect())
    }

    /// `events_page`, each event with its subject: what the API shows as its payload.
    pub async fn events_with_subjects(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(EventRecord, EventSubject)>, StoreError> {
        self.events_with_subjects_in(after, limit, None).await
    }

    /// `events_with_subjects` of these ledgers only, when given (see `events_page_in`).
    pub async fn events_with_subjects_in(
        &self,
        after: i64,
        limit: i64,
        ledgers: Option<&[LedgerId]>,
    ) -> Result<Vec<(EventRecord, EventSubject)>, StoreError> {
        let events = self.events_page_in(after, limit, ledgers).await?;
        let ids: Vec<Uuid> = events
            .iter()
            .filter(|event| event.event_type.starts_with("transfer."))
            .filter_map(|event| Uuid::parse_str(&event.entity_id).ok())
            .collect();
        let mut transfers = HashMap::with_capacity(ids.len());
        if !ids.is_empty() {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {}, c.scale FROM transfers t JOIN currencies c ON c.code = t.currency WHERE t.id = ANY($1)",
                    crate::posting::TRANSFER_COLUMNS
                ))
                .await?;
            for row in client.query(&statement, &[&ids]).await? {
                if let JournalRow::Applied { transfer, .. } = journal_row_from_row(&row) {
                    let scale = u8::try_from(row.get::<_, i16>(19)).expect("scales are 0 to 18");
                    transfers.insert(transfer.id.0, (transfer, scale));
                }
            }
        }
        Ok(events
            .into_iter()
            .map(|event| {
                let subject = EventSubject::of(&event, &transfers);
                (event, subject)
            })
            .collect())
    }

    /// The sequence number of the newest committed event (0 when there is none).
    pub async fn last_event_seq(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached("SELECT last_seq FROM event_sequence").await?;
        Ok(client.query_one(&statement, &[]).await?.get(0))
    }

    /// Every account with a balance rule (not `unrestricted`), in id order.
    pub async fn restricted_account_ids(&self) -> Result<Vec<AccountId>, StoreError> {
        let rows =
            self.client().await?.query("SELECT id FROM accounts WHERE NOT unrestricted ORDER BY id", &[]).await?;
        Ok(rows.iter().map(|row| AccountId(row.get(0))).collect())
    }
}

fn seq_of(row: &JournalRow) -> i64 {
    match row {
        JournalRow::Applied { seq, .. } | JournalRow::Rejected { seq, .. } => *seq,
    }
}

/// The most transfer ids one `journal_rows` call looks up.
pub const JOURNAL_ROWS_IDS_MAX: usize = 10_000;

/// A session on the ledger database that is inside a transaction, for diagnosing a run that
/// stopped making progress: who waits for whom, as far as PostgreSQL can tell.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SessionActivity {
    pub pid: i32,
    pub application_name: String,
    /// `active`, `idle in transaction`, ...
    pub state: String,
    /// What the session waits for (`Lock/transactionid`, `Client/ClientRead`, ...), if anything.
    pub wait: Option<String>,
    /// The sessions holding the locks this one waits for (`pg_blocking_pids`).
    pub blocked_by: Vec<i32>,
    /// Milliseconds since the session's transaction began.
    pub transaction_ms: i64,
    /// The start of the session's current or last statement.
    pub query: String,
}

impl Store {
    /// The journal rows under these transfer ids (at most `JOURNAL_ROWS_IDS_MAX`), in no
    /// particular order; ids that were never decided are absent.
    /// The transfers that act on transfer `id`: the post or void of a hold, and a reversal
    /// (at most one of each, by the journal's unique indexes), oldest first.
    pub async fn related_transfers(&self, id: Uuid) -> Result<Vec<JournalRow>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {} FROM transfers t WHERE t.related_id = $1 AND t.kind IN ('post_pending', 'void_pending', 'reversal')
             ORDER BY t.seq",
            crate::posting::TRANSFER_COLUMNS
        );
        Ok(client.query(&sql, &[&id]).await?.iter().map(journal_row_from_row).collect())
    }

    pub async fn journal_rows(&self, ids: &[Uuid]) -> Result<Vec<JournalRow>, StoreError> {
        assert!(ids.len() <= JOURNAL_ROWS_IDS_MAX, "{} ids above JOURNAL_ROWS_IDS_MAX", ids.len());
        let client = self.client().await?;
        let sql = format!("SELECT {} FROM transfers t WHERE t.id = ANY($1)", crate::posting::TRANSFER_COLUMNS);
        Ok(client.query(&sql, &[&ids]).await?.iter().map(journal_row_from_row).collect())
    }

    /// Every other client session on this database that is inside a transaction. A session
    /// `idle in transaction` that blocks others is waiting for its client, which PostgreSQL's
    /// deadlock detector cannot see.
    pub async fn sessions_in_transaction(&self) -> Result<Vec<SessionActivity>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT pid, coalesce(application_name, ''), coalesce(state, ''),
                        wait_event_type || '/' || wait_event, pg_blocking_pids(pid),
                        (extract(epoch FROM clock_timestamp() - xact_start) * 1000)::bigint, left(coalesce(query, ''), 160)
                 FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                   AND backend_type = 'client backend' AND xact_start IS NOT NULL
                 ORDER BY xact_start",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| SessionActivity {
                pid: row.get(0),
                application_name: row.get(1),
                state: row.get(2),
                wait: row.get(3),
                blocked_by: row.get(4),
                transaction_ms: row.get(5),
                query: row.get(6),
            })
            .collect())
    }
}
