//! The benchmarks against a real PostgreSQL: a short `tally bench`, the end-of-day benchmark's
//! generated ledger (which must reconcile clean), and the store functions they use to read the
//! server.
//!
//! Events out (issue 13): short runs with the NATS JetStream relay and the webhook dispatcher
//! beside the load. These need a real NATS server with JetStream at `TALLY_TEST_NATS_URL`
//! (default `nats://127.0.0.1:4222`, which `scripts/test` starts when nothing listens there);
//! without one they fail, they do not skip.

use std::time::Duration;
use tally_bench::{BenchConfig, BenchMode, Database, Distribution, EodConfig, EventsOutConfig};

/// A database name no other test uses.
fn unique_name() -> String {
    format!("tally_bench_test_{}", uuid::Uuid::new_v4().simple())
}

/// The test server's maintenance database (a later `dbname` overrides the first).
fn admin_conninfo(db: &tally_testkit::TestDb) -> String {
    format!("{} dbname=postgres", db.conninfo)
}

#[tokio::test]
async fn databases_are_created_once_and_dropped_if_they_exist() {
    let db = tally_testkit::fresh_database().await;
    let admin = admin_conninfo(&db);
    let name = unique_name();
    let conninfo = format!("{} dbname={name}", db.conninfo);
    let connects = || async { tally_store::Store::connect(&conninfo, 1).expect("pool").backend_pid().await };
    assert!(connects().await.is_err(), "the database does not exist yet");
    tally_store::create_database_if_missing(&admin, &name).await.expect("create");
    tally_store::create_database_if_missing(&admin, &name).await.expect("a second time: nothing to do");
    assert!(connects().await.expect("it exists now") > 0);
    tally_store::drop_database_if_exists(&admin, &name).await.expect("drop");
    tally_store::drop_database_if_exists(&admin, &name).await.expect("a second time: nothing to do");
    assert!(connects().await.is_err(), "dropped");
    let refused = tally_store::create_database_if_missing(&admin, "x\"; DROP DATABASE postgres; --").await;
    assert_eq!(refused.expect_err("not a plain name").code(), "invalid_input");
}

#[tokio::test]
async fn the_store_reports_the_server_it_runs_on() {
    let db = tally_testkit::fresh_database().await;
    let store = &db.store;
    assert!(store.backend_pid().await.expect("pid") > 0);
    let settings = store.server_settings(&["server_version", "fsync"]).await.expect("settings");
    assert_eq!(settings[0].0, "server_version");
    assert!(settings[0].1.starts_with("18"), "{settings:?}");
    assert_eq!(settings[1], ("fsync".to_owned(), "on".to_owned()));
    assert!(store.server_settings(&["no_such_setting"]).await.is_err());
    assert_eq!(store.account_count().await.expect("count"), 0);
    let before = store.wal_lsn().await.expect("lsn");
    let new = tally_store::NewAccount {
        ledger: tally_core::LedgerId::DEFAULT,
        id: None,
        code: None,
        currency: "USD".into(),
        rule: tally_core::BalanceRule::Unrestricted,
        metadata: None,
    };
    store.create_accounts(&[new.clone(), new], "test:bench").await.expect("accounts");
    assert_eq!(store.account_count().await.expect("count"), 2);
    let after = store.wal_lsn().await.expect("lsn");
    let written = tally_bench::wal_per_transfer(&before, &after, 1).expect("two positions");
    assert!(written > 0.0, "{before} -> {after}");
}

fn short_run(mode: BenchMode) -> BenchConfig {
    BenchConfig {
        mode,
        accounts: 200,
        duration: Duration::from_secs(2),
        distribution: Distribution::Zipf,
        zipf_exponent: 1.0,
        concurrency: 8,
        batch_size: 5,
        pending_percent: 0,
        committers: 3,
        speculative: true,
        linger: Duration::from_millis(1),
        seed: Some(7),
        events_out: EventsOutConfig::default(),
        replica_url: None,
        http_listen: None,
    }
}

#[tokio::test]
async fn a_short_bench_reports_cpu_per_transfer() {
    let db = tally_testkit::fresh_database().await;
    let report =
        tally_bench::run_bench(&Database::Url(db.conninfo.clone()), &short_run(BenchMode::Engine)).await.expect("run");
    assert!(report.committed > 0);
    assert_eq!(report.refused_valid, 0);
    assert!(report.conservation_ok, "{:?}", report.findings);
    assert!(report.wal_bytes_per_transfer.expect("measured") > 0.0);
    // The test server runs on this machine, so its processes are measured too.
    let postgres = report.cpu_seconds_postgres.expect("the server's CPU is measured");
    assert_eq!(report.postgres_cpu_us_per_transfer, Some(postgres * 1e6 / report.committed as f64));
    assert_eq!(report.tally_cpu_us_per_transfer, Some(report.cpu_seconds_tally * 1e6 / report.committed as f64));
    let json = serde_json::to_value(&report).expect("json");
    assert!(json["postgres_cpu_us_per_transfer"].as_f64().expect("a number") > 0.0);
    assert!(json["tally_cpu_us_per_transfer"].as_f64().expect("a number") > 0.0);
    assert!(report.table().contains("CPU per transfer: tally / postgres"));
}

#[tokio::test]
async fn the_generated_ledger_reconciles_clean_day_by_day() {
    let db = tally_testkit::fresh_database().await;
    let database = Database::Url(db.conninfo.clone());
    let sizes = vec![20_000, 0, 8_001];
    let config = EodConfig { accounts: 300, day_sizes: sizes.clone(), reuse: false };
    let report = tally_bench::run_eod(&database, &config).await.expect("generate and reconcile");
    assert_eq!(report.days.len(), 3);
    let mut history = 0;
    for (day, size) in report.days.iter().zip(&sizes) {
        assert_eq!(day.status, "clean", "{day:?}");
        assert_eq!(day.findings, 0);
        assert_eq!(day.transfers, *size, "{day:?}");
        assert_eq!(day.history_before, history);
        history += size;
    }
    assert_eq!(db.store.account_count().await.expect("count"), 300);
    // The whole ledger agrees with itself too: trial balance, every account against its
    // journal, audit and event completeness.
    let ledger = tally_recon::check_ledger(&tally_recon::Recon::new(&db.store, tally_recon::POOL_SIZE_MIN))
        .await
        .expect("check");
    assert!(ledger.is_clean(), "{:?}", ledger.findings);
    // Every transfer went through the engine: one batch audit row per 8,000 transfers at most.
    let client = db.connect().await;
    let batches: i64 = client
        .query_one("SELECT count(*) FROM audit_log WHERE action = 'transfer.batch'", &[])
        .await
        .expect("batches")
        .get(0);
    assert_eq!(batches, 3 + 2, "20,000 transfers in 3 batches, 8,001 in 2");

    let again = tally_bench::run_eod(&database, &EodConfig { reuse: true, ..config.clone() }).await.expect("reuse");
    assert!(again.days.iter().all(|d| d.status == "clean"), "{:?}", again.days);
    let refused = tally_bench::run_eod(&database, &config).await.expect_err("not empty");
    assert_eq!(refused.code(), "bench_database_not_empty");
}

fn nats_url() -> String {
    std::env::var("TALLY_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

fn short_run_out(events_out: EventsOutConfig) -> BenchConfig {
    BenchConfig {
        events_out: EventsOutConfig { drain_timeout: Duration::from_secs(60), ..events_out },
        ..short_run(BenchMode::Engine)
    }
}

/// Runs the bench with the relay (during the load, or only after it) and checks that every event
/// of the database went to the run's stream once, and that the stream is gone afterwards.
async fn every_event_is_published(after_load: bool) {
    let db = tally_testkit::fresh_database().await;
    let url = nats_url();
    let config = short_run_out(EventsOutConfig {
        nats_url: Some(url.clone()),
        nats_after_load: after_load,
        ..EventsOutConfig::default()
    });
    let report = tally_bench::run_bench(&Database::Url(db.conninfo.clone()), &config)
        .await
        .unwrap_or_else(|error| panic!("the bench with a relay to {url} (is NATS with JetStream running?): {error}"));
    assert!(report.committed > 0);
    assert_eq!(report.refused_valid, 0);
    assert!(report.conservation_ok, "{:?}", report.findings);
    let nats = report.events_out.as_ref().and_then(|e| e.nats.as_ref()).expect("a NATS report");
    assert_eq!(nats.relay_during_load, !after_load);
    // The setup's events (accounts opened and funded) were published before the load started.
    assert!(nats.setup_events > 200, "{nats:?}");
    assert!(nats.setup_catch_up_seconds.is_some(), "{nats:?}");
    // One event per committed transfer during the load, every one of them published.
    assert_eq!(nats.events_written_during_load, report.committed as i64, "{nats:?}");
    assert_eq!(nats.events_total, nats.setup_events + nats.events_written_during_load, "{nats:?}");
    assert!(nats.drain_seconds.is_some(), "drained: {nats:?}");
    assert_eq!(nats.final_lag_events, 0, "{nats:?}");
    assert_eq!(nats.stream_messages, nats.events_total as u64, "every event in the stream once: {nats:?}");
    assert_eq!(nats.published, nats.stream_messages, "{nats:?}");
    assert_eq!(nats.duplicates, 0);
    if after_load {
        assert_eq!(nats.events_published_during_load, 0, "the relay was stopped: {nats:?}");
        assert_eq!(nats.backlog_at_load_end, nats.events_written_during_load, "{nats:?}");
        assert!(nats.lag_events.is_none());
    } else {
        let lag = nats.lag_events.expect("sampled every 100 ms");
        assert!(lag.p50 <= lag.p99 && lag.p99 <= lag.max, "{lag:?}");
        assert!(nats.lag_ms.is_some());
        // Every 100 ms over a 2 s load.
        assert!((10..=30).contains(&nats.lag_samples_events.len()), "{nats:?}");
        assert_eq!(
            nats.events_published_during_load + nats.backlog_at_load_end,
            nats.events_written_during_load,
            "{nats:?}"
        );
    }
    let table = report.table();
    assert!(table.contains("final lag / stream messages / events"), "{table}");
    assert_eq!(table.contains("stopped (--nats-after)"), after_load, "{table}");
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["events_out"]["nats"]["final_lag_events"], 0);

    // The run's stream was deleted.
    let client = async_nats::connect(url.as_str()).await.expect("connect to NATS");
    let jetstream = async_nats::jetstream::new(client);
    assert!(jetstream.get_stream(&nats.stream).await.is_err(), "{} was deleted", nats.stream);
}

#[tokio::test]
async fn the_relay_publishes_every_event_of_a_bench_run() {
    every_event_is_published(false).await;
}

#[tokio::test]
async fn the_relay_drains_a_bench_runs_backlog_after_the_load() {
    every_event_is_published(true).await;
}

#[tokio::test]
async fn a_bench_run_beside_a_dead_webhook_endpoint_completes_and_balances() {
    let db = tally_testkit::fresh_database().await;
    let config = short_run_out(EventsOutConfig { webhooks_dead: 1, webhook_sink: true, ..EventsOutConfig::default() });
    let report = tally_bench::run_bench(&Database::Url(db.conninfo.clone()), &config).await.expect("run");
    assert!(report.committed > 0);
    assert_eq!(report.refused_valid, 0);
    assert!(report.conservation_ok, "{:?}", report.findings);
    let webhooks = report.events_out.as_ref().and_then(|e| e.webhooks.as_ref()).expect("a webhooks report");
    assert_eq!(webhooks.dead_endpoints, 1);
    assert_eq!(webhooks.dead_delivered, 0, "{webhooks:?}");
    assert!(webhooks.failed_attempts >= 1, "the dead endpoint was tried: {webhooks:?}");
    assert_eq!(webhooks.parked, 0, "retries back off for longer than the run: {webhooks:?}");
    // The sink beside it got deliveries (in order, one at a time).
    assert!(webhooks.sink_delivered_during_load > 0, "{webhooks:?}");
    assert!(webhooks.sink_received >= webhooks.sink_delivered_during_load, "{webhooks:?}");
    assert!(report.events_out.as_ref().expect("events out").nats.is_none());
    assert!(report.table().contains("dead webhook endpoints"));
}
