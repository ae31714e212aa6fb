//! Upgrading a ledger that an earlier release wrote: `Store::migrate()` (what `tally migrate`
//! and every Tally start run) must keep every balance, the whole history and the
//! reconciliation, and leave a ledger that takes new transfers.
//!
//! The fixture is the data of a ledger written by the release at commit 82419f5 (schema version
//! 7) with that build's own binary, through its HTTP API, CLI and SQL interface
//! (`scripts/make-migration-fixture.sh`; its header says what is in it). Each test loads it
//! into a fresh database migrated through version 7 and no further, then migrates that to the
//! newest version.
//!
//! Today's store and reconciliation read the schema of today (every query names the ledger of
//! migration 0012), so the version 7 database is read before migrating as rows: every row of
//! every table, which must come out of the migration with every column it had unchanged. After
//! migrating, everything is read through the public API of the store and reconciliation (the
//! fixture's content, the ledger `default` that holds all of it, point-in-time balances from the
//! migrated snapshots, the stored reports), so that part keeps working when a migration changes
//! the layout.

// Amounts in cents are written with the point as an underscore: 1_000_00 is 1,000.00.
#![allow(clippy::inconsistent_digit_grouping)]

use std::time::Duration;
use tally_core::{
    AccountId, MinorUnits, Timestamp, TransferId, TransferKind, TransferRequest, TransferResult, TransferStatus,
};
use tally_engine::{Engine, EngineConfig, Submission};
use tally_recon::Recon;
use tally_recon::balance::{PointInTime, balance_as_of};
use tally_recon::report::{DayReport, RunStatus, StatementReport};
use tally_store::{
    AccountRecord, ApiKeyRecord, AuditRecord, Direction, EventRecord, JournalRow, Store, TransferFilter,
};
use tally_testkit::TestDb;
use time::Date;
use uuid::Uuid;

/// The data of a version 7 ledger; loaded into a database migrated through version 7.
const SCHEMA_V7: &str = include_str!("../../tally-store/tests/fixtures/schema_v7.sql");
const FIXTURE_VERSION: i32 = 7;

/// Ids the fixture's script chose (see its header).
const T_REPLAY: Uuid = Uuid::from_u128(0x019ae000_0000_7000_8000_000000000001);
const T_REJECTED: Uuid = Uuid::from_u128(0x019ae000_0000_7000_8000_000000000003);
const H_OPEN_OLD: Uuid = Uuid::from_u128(0x019ae000_0000_7000_8000_000000000015);
const H_OPEN_NEW: Uuid = Uuid::from_u128(0x019ae000_0000_7000_8000_000000000016);
const T_COMPAT: Uuid = Uuid::from_u128(0x019ae000_0000_7000_8000_000000000021);

const ACTOR: &str = "test:migration";
/// Small pages, so that every listing is read through its cursors.
const PAGE: i64 = 4;

/// A fresh database at schema version 7 holding the fixture's ledger.
async fn version_7_ledger() -> TestDb {
    let db = tally_testkit::database_at(FIXTURE_VERSION).await;
    db.connect().await.batch_execute(SCHEMA_V7).await.expect("load the version 7 fixture");
    db
}

/// Migrates to the newest version and checks that exactly the migrations after 7 ran.
async fn migrate(db: &TestDb) {
    let report = db.store.migrate().await.expect("migrate a version 7 ledger");
    let newer: Vec<i32> =
        tally_store::migrate::MIGRATIONS.iter().map(|m| m.version).filter(|&v| v > FIXTURE_VERSION).collect();
    assert_eq!(report.applied, newer);
    assert_eq!(report.current, tally_store::migrate::LATEST_VERSION);
}

/// One line of an account's history, without its journal position (a cursor, not history).
#[derive(Debug, Clone, PartialEq)]
struct Line {
    direction: Direction,
    other_account_id: AccountId,
    transfer: tally_core::Transfer,
    actor: String,
}

/// Everything the ledger says about its past, read through the public API.
#[derive(Debug, PartialEq)]
struct Reads {
    /// Every account with its balances, rule, status, version and times, by id.
    accounts: Vec<AccountRecord>,
    /// Every account's history, newest first, read in pages through the history cursor.
    histories: Vec<(AccountId, Vec<Line>)>,
    /// The journal, newest first: applied transfers, then recorded rejections (positions cleared).
    applied: Vec<JournalRow>,
    rejected: Vec<JournalRow>,
    /// The outbox, with its sequence numbers: consumers resume from the one they saw last.
    events: Vec<EventRecord>,
    last_event_seq: i64,
    audit: Vec<AuditRecord>,
    api_keys: Vec<ApiKeyRecord>,
    /// The closed day, every account's balance at its end and after the last journal row, and
    /// the newest stored end-of-day report.
    closed_day: Date,
    balances_at_day_end: Vec<PointInTime>,
    balances_at_last_row: Vec<PointInTime>,
    day_run: (String, Option<DayReport>, Option<String>),
    statements: Vec<StatementReport>,
    /// The seed's SQL interface: its views, as JSON rows.
    compat_accounts: Vec<String>,
    compat_transactions: Vec<String>,
}

fn without_seq(row: JournalRow) -> JournalRow {
    match row {
        JournalRow::Applied { transfer, actor, .. } => JournalRow::Applied { transfer, actor, seq: 0 },
        JournalRow::Rejected { rejection, actor, .. } => JournalRow::Rejected { rejection, actor, seq: 0 },
    }
}

fn seq_of(row: &JournalRow) -> i64 {
    match row {
        JournalRow::Applied { seq, .. } | JournalRow::Rejected { seq, .. } => *seq,
    }
}

fn id_of(row: &JournalRow) -> Uuid {
    match row {
        JournalRow::Applied { transfer, .. } => transfer.id.0,
        JournalRow::Rejected { rejection, .. } => rejection.request.id.0,
    }
}

/// The journal rows with this status filter, newest first, through the listing's cursor.
async fn journal(store: &Store, status: Option<&str>) -> Vec<JournalRow> {
    let mut rows: Vec<JournalRow> = Vec::new();
    let mut before = None;
    loop {
        let filter =
            TransferFilter { status: status.map(str::to_owned), before, limit: PAGE, ..TransferFilter::default() };
        let (page, next) = store.list_transfers(&filter).await.expect("list transfers");
        rows.extend(page);
        match next {
            Some(cursor) => before = Some(cursor),
            None => break,
        }
    }
    assert!(rows.windows(2).all(|w| seq_of(&w[0]) > seq_of(&w[1])), "the journal lists newest first");
    // Every row is also readable by its id.
    for row in &rows {
        let id = id_of(row);
        assert_eq!(store.journal_row(id).await.expect("journal row").as_ref(), Some(row), "transfer {id} by id");
        if let JournalRow::Applied { transfer, .. } = row {
            assert_eq!(store.transfer(id).await.expect("transfer").as_ref(), Some(transfer));
        }
    }
    rows.into_iter().map(without_seq).collect()
}

/// The seed's views, with the columns its clients read.
const COMPAT_ACCOUNTS: &str = "SELECT row_to_json(a)::text FROM (
    SELECT account_id, account_code, balance, available, currency, version, status, created_at, updated_at
    FROM compat.accounts) a ORDER BY a.account_id";
const COMPAT_TRANSACTIONS: &str = "SELECT row_to_json(t)::text FROM (
    SELECT transaction_id, from_account_id, to_account_id, amount, currency, status, kind, related_id, reference,
           actor, created_at, completed_at
    FROM compat.transactions) t ORDER BY t.created_at, t.transaction_id";

async fn sql_rows(db: &TestDb, sql: &str) -> Vec<String> {
    db.connect().await.query(sql, &[]).await.expect(sql).iter().map(|row| row.get(0)).collect()
}

/// Every row of a listing that pages forward after a cursor (the last row's), from the start.
async fn after_cursor<T>(
    cursor: impl Fn(&T) -> i64,
    page: impl AsyncFn(i64) -> Result<Vec<T>, tally_store::StoreError>,
) -> Vec<T> {
    let mut rows: Vec<T> = Vec::new();
    loop {
        let next = page(rows.last().map_or(0, &cursor)).await.expect("a page");
        if next.is_empty() {
            return rows;
        }
        rows.extend(next);
    }
}

async fn read_all(db: &TestDb) -> Reads {
    let store = &db.store;
    let mut accounts: Vec<AccountRecord> = Vec::new();
    loop {
        let after = accounts.last().map(|a| a.account.id);
        let page = store.list_accounts(&Default::default(), after, PAGE).await.expect("list accounts");
        if page.is_empty() {
            break;
        }
        accounts.extend(page);
    }

    let mut histories = Vec::new();
    for record in &accounts {
        let id = record.account.id;
        let mut lines = Vec::new();
        let mut before = None;
        loop {
            let page = store.history(&id.to_string(), before, PAGE).await.expect("history");
            assert!(page.windows(2).all(|w| w[0].seq > w[1].seq), "history of {id} newest first");
            assert!(before.is_none_or(|b| page.iter().all(|e| e.seq < b)), "history of {id} pages on");
            before = page.last().map(|e| e.seq);
            let full = page.len() as i64 == PAGE;
            lines.extend(page.into_iter().map(|e| Line {
                direction: e.direction,
                other_account_id: e.other_account_id,
                transfer: e.transfer,
                actor: e.actor,
            }));
            if !full {
                break;
            }
        }
        histories.push((id, lines));
    }

    let applied = journal(store, None).await;
    let rejected = journal(store, Some("rejected")).await;

    let events = after_cursor(|e: &EventRecord| e.seq, async |after| store.events_page(after, PAGE).await).await;
    let audit = after_cursor(|a: &AuditRecord| a.id, async |after| store.audit_page(after, PAGE).await).await;

    let recon = Recon::new(store, 2);
    let closed_day = last_closed_day(&recon).await;
    let bounds = tally_recon::days::bounds(&recon, closed_day).await.expect("day bounds");
    let day_end = Timestamp(tally_store::convert::from_system_time(bounds.ends_at).0 - 1);
    let last_row = applied
        .iter()
        .filter_map(|row| match row {
            JournalRow::Applied { transfer, .. } => transfer.completed_at.max(Some(transfer.created_at)),
            JournalRow::Rejected { .. } => None,
        })
        .max()
        .expect("applied transfers");
    let mut balances_at_day_end = Vec::new();
    let mut balances_at_last_row = Vec::new();
    for record in &accounts {
        let id = record.account.id.0;
        balances_at_day_end.push(balance_as_of(&recon, id, day_end).await.expect("balance at the day's end"));
        balances_at_last_row.push(balance_as_of(&recon, id, last_row).await.expect("balance after the last row"));
    }
    let run = tally_recon::eod::latest_report(&recon, closed_day).await.expect("stored run").expect("a stored run");

    let mut statements = Vec::new();
    for id in sql_rows(db, "SELECT id::text FROM statements ORDER BY id").await {
        let id = Uuid::parse_str(&id).expect("a statement id");
        statements.push(tally_recon::statement::statement_report(&recon, id).await.expect("statement report"));
    }

    Reads {
        accounts,
        histories,
        applied,
        rejected,
        events,
        last_event_seq: store.last_event_seq().await.expect("last event"),
        audit,
        api_keys: store.list_api_keys().await.expect("api keys"),
        closed_day,
        balances_at_day_end,
        balances_at_last_row,
        day_run: (run.status, run.report, run.error),
        statements,
        compat_accounts: sql_rows(db, COMPAT_ACCOUNTS).await,
        compat_transactions: sql_rows(db, COMPAT_TRANSACTIONS).await,
    }
}

/// Every row of every table of the schema (the migrations' own bookkeeping aside), by table, as
/// JSON objects of its columns, sorted: what a database holds, whatever its layout.
async fn table_rows(
    db: &TestDb,
) -> std::collections::BTreeMap<String, Vec<serde_json::Map<String, serde_json::Value>>> {
    let client = db.connect().await;
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> 'tally_migrations'
             ORDER BY 1",
            &[],
        )
        .await
        .expect("tables")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut all = std::collections::BTreeMap::new();
    for table in tables {
        // The name comes from the catalog, quoted by format('%I').
        let sql: String = client
            .query_one("SELECT format('SELECT to_jsonb(t) FROM %I t', $1::text)", &[&table])
            .await
            .unwrap()
            .get(0);
        let mut rows: Vec<serde_json::Map<String, serde_json::Value>> = client
            .query(&sql, &[])
            .await
            .expect(&sql)
            .iter()
            .map(|row| match row.get::<_, serde_json::Value>(0) {
                serde_json::Value::Object(object) => object,
                other => panic!("{table}: {other}"),
            })
            .collect();
        rows.sort_by_key(|row| serde_json::Value::Object(row.clone()).to_string());
        all.insert(table, rows);
    }
    all
}

/// Every table of `before` is still there with the same rows, every column it had unchanged
/// (columns the migrations added aside); the columns of ledger 0012 added to old rows say
/// ledger 1, `default`, except on events of no single ledger (0013's backfill).
fn assert_rows_kept(
    before: &std::collections::BTreeMap<String, Vec<serde_json::Map<String, serde_json::Value>>>,
    after: &std::collections::BTreeMap<String, Vec<serde_json::Map<String, serde_json::Value>>>,
) {
    for (table, old_rows) in before {
        let new_rows = after.get(table).unwrap_or_else(|| panic!("table {table} is gone"));
        assert_eq!(old_rows.len(), new_rows.len(), "rows of {table}");
        let mut kept: Vec<serde_json::Map<String, serde_json::Value>> = new_rows
            .iter()
            .map(|row| {
                if let Some(ledger) = row.get("ledger_id") {
                    let expected = if table == "events" { ledger_of_old_event(row) } else { serde_json::json!(1) };
                    assert_eq!(*ledger, expected, "{table}: the ledger of {row:?}");
                }
                row.iter()
                    .filter(|(column, _)| old_rows.first().is_none_or(|r| r.contains_key(*column)))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .collect();
        kept.sort_by_key(|row| serde_json::Value::Object(row.clone()).to_string());
        for (old, new) in old_rows.iter().zip(&kept) {
            assert_eq!(old, new, "a row of {table}");
        }
    }
}

/// The ledger an event written before 0012 has after 0013: `default` for the events of accounts,
/// transfers and statements (everything was in it), none for currencies, days and end-of-day runs.
fn ledger_of_old_event(row: &serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    let kind = row["type"].as_str().expect("an event type");
    let of_statement = kind == "reconciliation.finished" && row["payload"].get("unmatched_statement").is_some();
    let in_default =
        kind.starts_with("account.") || kind.starts_with("transfer.") || kind == "statement.imported" || of_statement;
    if in_default { serde_json::json!(1) } else { serde_json::Value::Null }
}

/// What the migrated ledger says through the API agrees with itself: everything is in the
/// ledger `default`, and every account's balance after the last journal row (a point-in-time
/// balance from the migrated snapshot of the closed day and the journal since) is its row's.
fn assert_reads_consistent(reads: &Reads) {
    for record in &reads.accounts {
        assert_eq!(record.account.ledger, tally_core::LedgerId::DEFAULT, "account {}", record.account.id);
    }
    for row in &reads.applied {
        if let JournalRow::Applied { transfer, .. } = row {
            assert_eq!(transfer.ledger, tally_core::LedgerId::DEFAULT, "transfer {}", transfer.id.0);
        }
    }
    let closed_day = tally_recon::days::format_day(reads.closed_day);
    for (record, (at_end, at_last)) in
        reads.accounts.iter().zip(reads.balances_at_day_end.iter().zip(&reads.balances_at_last_row))
    {
        let a = &record.account;
        assert_eq!(
            (at_last.debits_posted, at_last.credits_posted, at_last.debits_pending, at_last.credits_pending),
            (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending),
            "account {} after the last journal row",
            record.code.as_deref().unwrap_or_default()
        );
        // From the migrated snapshot of the closed day, found in the account's ledger; the day's
        // end itself has no earlier day to start from.
        assert_eq!(at_last.snapshot_day.as_deref(), Some(closed_day.as_str()));
        assert_eq!(at_end.snapshot_day, None);
    }
    // A closed-day balance differs from today's somewhere, so the snapshot is really read.
    assert!(
        reads
            .balances_at_day_end
            .iter()
            .zip(&reads.balances_at_last_row)
            .any(|(end, last)| end.balance() != last.balance())
    );
    // The reports stored before ledgers read as ledger 1's.
    let report = reads.day_run.1.as_ref().expect("the stored report");
    assert!(!report.per_ledger && report.currencies.iter().all(|c| c.ledger == 1));
    assert!(reads.statements.iter().all(|s| (s.ledger, s.ledger_code.as_str()) == (1, "default")));
}

fn account<'a>(reads: &'a Reads, code: &str) -> &'a AccountRecord {
    reads.accounts.iter().find(|a| a.code.as_deref() == Some(code)).unwrap_or_else(|| panic!("no account {code}"))
}

/// What the fixture holds, so that a fixture made wrongly fails here and not in the comparison.
fn assert_fixture_is_varied(reads: &Reads) {
    assert_eq!(reads.accounts.len(), 14);
    let mut currencies: Vec<(&str, u8)> =
        reads.accounts.iter().map(|a| (a.account.currency.as_str(), a.scale)).collect();
    currencies.sort();
    currencies.dedup();
    assert_eq!(currencies, [("EUR", 2), ("JPY", 0), ("KWD", 3), ("POINTS", 0)]);
    let status = |code| account(reads, code).account.status.as_str();
    assert_eq!((status("carol-eur"), status("dave-eur")), ("closed", "frozen"));
    assert_eq!(account(reads, "bob-eur").account.rule, tally_core::BalanceRule::OverdraftLimit(50_00));
    assert!(account(reads, "bob-eur").account.credits_posted < account(reads, "bob-eur").account.debits_posted);
    // A total beyond 64 bits.
    assert_eq!(account(reads, "points-whale").account.credits_posted, 10_i128.pow(25));

    let kinds_and_statuses: std::collections::BTreeSet<(&str, &str)> = reads
        .applied
        .iter()
        .filter_map(|row| match row {
            JournalRow::Applied { transfer, .. } => Some((transfer.kind.as_str(), transfer.status.as_str())),
            JournalRow::Rejected { .. } => None,
        })
        .collect();
    for expected in [
        ("posted", "posted"),
        ("pending", "posted"),
        ("pending", "voided"),
        ("pending", "expired"),
        ("pending", "pending"),
        ("post_pending", "posted"),
        ("void_pending", "voided"),
        ("reversal", "posted"),
    ] {
        assert!(kinds_and_statuses.contains(&expected), "the fixture has no {expected:?} transfer");
    }
    let results: std::collections::BTreeSet<TransferResult> = reads
        .rejected
        .iter()
        .filter_map(|row| match row {
            JournalRow::Rejected { rejection, .. } => Some(rejection.result),
            JournalRow::Applied { .. } => None,
        })
        .collect();
    for expected in [
        TransferResult::InsufficientFunds,
        TransferResult::OverdraftLimitExceeded,
        TransferResult::VersionConflict,
        TransferResult::LinkedChainFailed,
        TransferResult::AccountFrozen,
    ] {
        assert!(results.contains(&expected), "the fixture has no {expected:?} rejection");
    }
    let actors: std::collections::BTreeSet<&str> = reads
        .applied
        .iter()
        .filter_map(|row| match row {
            JournalRow::Applied { actor, .. } => Some(actor.split(':').next().unwrap_or_default()),
            JournalRow::Rejected { .. } => None,
        })
        .collect();
    assert!(actors.is_superset(&["cli", "key", "sql"].into_iter().collect()), "{actors:?}");
    assert_eq!(reads.day_run.0, "clean");
    assert_eq!(reads.statements.len(), 1);
    assert_eq!(reads.api_keys.len(), 3);
    assert!(reads.last_event_seq > 0 && reads.last_event_seq == reads.events.last().map_or(0, |e| e.seq));
}

/// The newest closed day.
async fn last_closed_day(recon: &Recon) -> Date {
    let days = tally_recon::days::recent_closed_days(recon, 1).await.expect("closed days");
    tally_recon::days::parse_day(&days.first().expect("a closed day").day).expect("a day")
}

async fn assert_ledger_clean(store: &Store) {
    let report = tally_recon::check_ledger(&Recon::new(store, 2)).await.expect("check the ledger");
    assert!(report.is_clean(), "{:#?}", report.findings);
}

/// The end of day of the closed day, run again: it verifies the stored snapshot.
async fn assert_closed_day_verifies(store: &Store, day: Date) {
    let report = tally_recon::eod::run_end_of_day(&Recon::new(store, 2), day, ACTOR, &tally_recon::Quiet)
        .await
        .expect("end of day");
    assert_eq!(report.status, RunStatus::Clean, "{:#?}", report.findings);
    assert_eq!(report.snapshot, "verified");
}

#[tokio::test]
async fn a_version_7_ledger_reads_the_same_after_migrating() {
    let db = version_7_ledger().await;
    let rows_before = table_rows(&db).await;
    let compat_before = (sql_rows(&db, COMPAT_ACCOUNTS).await, sql_rows(&db, COMPAT_TRANSACTIONS).await);

    migrate(&db).await;
    let rows_after = table_rows(&db).await;
    assert_rows_kept(&rows_before, &rows_after);
    let events = &rows_after["events"];
    assert!(
        events.iter().any(|e| e["ledger_id"] == serde_json::json!(1))
            && events.iter().any(|e| e["ledger_id"].is_null()),
        "the fixture has events of the default ledger and events of none"
    );
    let after = read_all(&db).await;
    assert_fixture_is_varied(&after);
    assert_reads_consistent(&after);
    assert_eq!(compat_before, (after.compat_accounts.clone(), after.compat_transactions.clone()), "the seed's views");
    assert_ledger_clean(&db.store).await;
    assert_closed_day_verifies(&db.store, after.closed_day).await;

    // Migrating again applies nothing.
    let again = db.store.migrate().await.expect("migrate again");
    assert_eq!(again.applied, Vec::<i32>::new());
}

#[tokio::test]
async fn a_migrated_version_7_ledger_takes_new_transfers() {
    let db = version_7_ledger().await;
    migrate(&db).await;
    let store = &db.store;
    let engine = Engine::start(store.clone(), EngineConfig { expiry_sweep_interval: None, ..EngineConfig::default() });
    let submit = |request: TransferRequest| {
        let engine = engine.clone();
        async move { engine.submit_one(Submission { request, actor: ACTOR.into() }).await.expect("submit") }
    };
    let id = |code: &'static str| async move { store.require_account(code).await.expect(code).account };
    let new_id = || TransferId(Uuid::now_v7());
    let accounts_before = read_all(&db).await.accounts;

    // An old transfer replayed with its fields answers `exists` and moves nothing; with other
    // fields, `exists_with_different_fields`.
    let old = store.transfer(T_REPLAY).await.expect("read").expect("the replayed transfer");
    let replay = TransferRequest {
        reference: old.reference.clone(),
        currency: Some(old.currency.clone()),
        ..TransferRequest::posted(old.id, old.debit_account_id, old.credit_account_id, old.amount)
    };
    let outcome = submit(replay.clone()).await;
    assert_eq!(outcome.result, TransferResult::Exists);
    assert_eq!(outcome.transfer.as_ref(), Some(&old));
    let changed = TransferRequest { amount: Some(old.amount + 1), ..replay };
    assert_eq!(submit(changed).await.result, TransferResult::ExistsWithDifferentFields);
    // A recorded rejection replayed answers its original result.
    let Some(JournalRow::Rejected { rejection, .. }) = store.journal_row(T_REJECTED).await.expect("read") else {
        panic!("{T_REJECTED} is a recorded rejection");
    };
    assert_eq!(rejection.result, TransferResult::InsufficientFunds);
    assert_eq!(submit(rejection.request.clone()).await.result, TransferResult::InsufficientFunds);
    assert_eq!(read_all(&db).await.accounts, accounts_before, "replays moved nothing");

    // A hold placed under the old schema is posted, another voided; an old transfer written by
    // compat.transfer_money is reversed.
    let alice = id("alice-eur").await;
    let hold = store.transfer(H_OPEN_OLD).await.expect("read").expect("the open hold");
    assert_eq!(hold.status, TransferStatus::Pending);
    let posted = submit(TransferRequest::acting_on(new_id(), TransferKind::PostPending, hold.id, None)).await;
    assert_eq!(posted.result, TransferResult::Ok);
    assert_eq!(store.transfer(H_OPEN_OLD).await.unwrap().unwrap().status, TransferStatus::Posted);
    let alice_after = id("alice-eur").await;
    assert_eq!(alice_after.debits_pending, alice.debits_pending - hold.amount);
    assert_eq!(alice_after.debits_posted, alice.debits_posted + hold.amount);
    assert_eq!(alice_after.version, alice.version + 1);
    let voided =
        submit(TransferRequest::acting_on(new_id(), TransferKind::VoidPending, TransferId(H_OPEN_NEW), None)).await;
    assert_eq!(voided.result, TransferResult::Ok);
    assert_eq!(store.transfer(H_OPEN_NEW).await.unwrap().unwrap().status, TransferStatus::Voided);
    let reversed =
        submit(TransferRequest::acting_on(new_id(), TransferKind::Reversal, TransferId(T_COMPAT), None)).await;
    assert_eq!(reversed.result, TransferResult::Ok);

    // New transfers in every currency, amounts beyond 64 bits included, and new rejections.
    let pairs: [(&str, &str, MinorUnits); 4] = [
        ("bank-eur", "alice-eur", 1_00),
        ("bank-jpy", "alice-jpy", 1),
        ("bank-kwd", "alice-kwd", 1),
        ("points-whale", "points-mint", 10_i128.pow(20)),
    ];
    for (from, to, amount) in pairs {
        let request = TransferRequest::posted(new_id(), id(from).await.id, id(to).await.id, amount);
        assert_eq!(submit(request).await.result, TransferResult::Ok, "{from} -> {to}");
    }
    let (dave, carol, bob) = (id("dave-eur").await.id, id("carol-eur").await.id, id("bob-eur").await.id);
    assert_eq!(
        submit(TransferRequest::posted(new_id(), dave, alice.id, 1)).await.result,
        TransferResult::AccountFrozen
    );
    assert_eq!(
        submit(TransferRequest::posted(new_id(), alice.id, carol, 1)).await.result,
        TransferResult::AccountClosed
    );
    assert_eq!(
        submit(TransferRequest::posted(new_id(), bob, alice.id, 1_000_00)).await.result,
        TransferResult::OverdraftLimitExceeded
    );
    // A new hold with a timeout, expired by the engine's sweep.
    let expiring = TransferRequest {
        kind: TransferKind::Pending,
        timeout_seconds: Some(1),
        ..TransferRequest::posted(new_id(), alice.id, bob, 2_00)
    };
    let expiring_id = expiring.id;
    assert_eq!(submit(expiring).await.result, TransferResult::Ok);
    let later = Timestamp(store.now().0 + Duration::from_secs(5).as_micros() as i64);
    assert_eq!(engine.expire_due(later).await.expect("expire"), 1);
    assert_eq!(store.transfer(expiring_id.0).await.unwrap().unwrap().status, TransferStatus::Expired);

    // The seed's SQL interface writes too, and replays an old transaction id.
    let (compat, connection) =
        tokio_postgres::connect(&format!("{} options=-csearch_path=compat", db.conninfo), tokio_postgres::NoTls)
            .await
            .expect("connect");
    tokio::spawn(connection);
    let written: Uuid = compat
        .query_one("SELECT transfer_money('alice-kwd', 'fees-kwd', 0.001, 'user-7')", &[])
        .await
        .expect("compat.transfer_money after the upgrade")
        .get(0);
    assert_eq!(store.transfer(written).await.unwrap().unwrap().amount, 1);
    let replayed: Uuid = compat
        .query_one("SELECT transfer_money('alice-eur', 'bob-eur', 1.50, 'user-42', $1)", &[&T_COMPAT])
        .await
        .expect("compat replay")
        .get(0);
    assert_eq!(replayed, T_COMPAT);

    assert_ledger_clean(store).await;
    let closed_day = last_closed_day(&Recon::new(store, 2)).await;
    assert_closed_day_verifies(store, closed_day).await;
    engine.shutdown().await;
}

#[tokio::test]
async fn migrate_through_stops_where_asked_and_never_goes_back() {
    let db = tally_testkit::database_at(3).await;
    let report = db.store.migrate_through(5).await.expect("3 -> 5");
    assert_eq!((report.applied, report.current), (vec![4, 5], 5));
    let again = db.store.migrate_through(5).await.expect("5 -> 5");
    assert_eq!((again.applied, again.current), (vec![], 5));
    let back = db.store.migrate_through(4).await.expect_err("5 -> 4");
    assert_eq!(back.code(), "invalid_input", "{back}");
    for unknown in [0, tally_store::migrate::LATEST_VERSION + 1] {
        assert_eq!(db.store.migrate_through(unknown).await.expect_err("no such migration").code(), "invalid_input");
    }
    let report = db.store.migrate().await.expect("5 -> newest");
    assert_eq!(report.applied, (6..=tally_store::migrate::LATEST_VERSION).collect::<Vec<_>>());
}
