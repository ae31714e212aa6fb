//! `tally bench` with events out (issue 13): the NATS JetStream relay and the webhook
//! dispatcher run beside a short load. They need a real NATS server with JetStream at
//! `TALLY_TEST_NATS_URL` (default `nats://127.0.0.1:4222`, which `.ci/run` starts when nothing
//! listens there); without one they fail, they do not skip.

use std::time::Duration;
use tally_bench::{BenchConfig, BenchMode, Database, Distribution, EventsOutConfig};

fn nats_url() -> String {
    std::env::var("TALLY_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

fn short_run(events_out: EventsOutConfig) -> BenchConfig {
    BenchConfig {
        mode: BenchMode::Engine,
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
        seed: Some(13),
        events_out: EventsOutConfig { drain_timeout: Duration::from_secs(60), ..events_out },
    }
}

/// Runs the bench with the relay (during the load, or only after it) and checks that every event
/// of the database went to the run's stream once, and that the stream is gone afterwards.
async fn every_event_is_published(after_load: bool) {
    let db = tally_testkit::fresh_database().await;
    let url = nats_url();
    let config = short_run(EventsOutConfig {
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
    let config = short_run(EventsOutConfig { webhooks_dead: 1, webhook_sink: true, ..EventsOutConfig::default() });
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
