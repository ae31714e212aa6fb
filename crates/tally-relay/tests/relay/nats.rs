//! The relay to NATS JetStream: every event once, in order, as `GET /v1/events` shows it; a
//! relay killed mid-stream loses nothing and what it sends again JetStream drops; a second relay
//! stands by and takes over.

use crate::support::{Ledger, OUTBOX_POOL, TestStream, WITHIN, bounded, eventually, start_nats};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tally_relay::{Outbox, Stats};
use tally_testkit::{Cut, Fault, Stage};

/// Waits until the relay's cursor in PostgreSQL reaches `seq`.
async fn wait_cursor(ledger: &Ledger, name: &str, seq: i64) {
    eventually(WITHIN, &format!("the relay's cursor reaches {seq}"), || async {
        (ledger.relay_cursor(name).await >= seq).then_some(())
    })
    .await;
    assert_eq!(ledger.relay_cursor(name).await, seq, "the cursor never passes the newest event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_event_reaches_jetstream_once_in_order() {
    bounded(Duration::from_secs(90), async {
        let ledger = Ledger::new().await;
        let stream = TestStream::new().await;
        let config = stream.config(64);
        let relay = start_nats(&ledger.outbox, &config);
        // Six submissions of 50 while the relay runs, account events between them.
        let mut transfers = Vec::new();
        for round in 0..6 {
            transfers.extend(ledger.transfers(50).await);
            if round == 2 {
                ledger.freeze_and_unfreeze().await;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        ledger.open_account("dave").await;
        let newest = ledger.newest().await;
        assert_eq!(newest, 4 + 300 + 2 + 1, "4 accounts opened, 300 transfers, freeze, unfreeze, 1 account");
        wait_cursor(&ledger, &config.cursor_name(), newest).await;

        let events = ledger.events().await;
        assert_eq!(events.len() as i64, newest);
        stream.assert_holds_exactly(&events).await;

        // A transfer's event carries the transfer as the API shows it.
        let messages = stream.messages().await;
        for (n, request) in transfers.iter().enumerate().step_by(37) {
            // Its index within its submission of 50 decides its wallet and amount.
            let i = n % 50;
            let id = request.id.0.to_string();
            let event = events.iter().find(|e| e.entity_id == id).expect("every transfer has its event");
            assert_eq!(event.event_type, "transfer.posted");
            let body: serde_json::Value =
                serde_json::from_slice(&messages[event.seq as usize - 1].payload).expect("JSON");
            assert_eq!(body["seq"], event.seq);
            assert_eq!(body["type"], "transfer.posted");
            assert_eq!(body["entity_id"], id);
            let payload = &body["payload"];
            assert_eq!(payload["id"], id);
            assert_eq!(payload["kind"], "posted");
            assert_eq!(payload["status"], "posted");
            assert_eq!(payload["from"], ledger.bank.0.to_string());
            assert_eq!(payload["to"], ledger.wallets[i % 3].0.to_string());
            let minor = 101 + (i % 97);
            assert_eq!(payload["amount"], format!("{}.{:02}", minor / 100, minor % 100), "amount of transfer {i}");
            assert_eq!(payload["currency"], "USD");
        }
        // Account events carry the account.
        let frozen = events.iter().find(|e| e.event_type == "account.frozen").expect("a freeze");
        let body: serde_json::Value = serde_json::from_slice(&messages[frozen.seq as usize - 1].payload).expect("JSON");
        assert_eq!(body["payload"]["id"], ledger.wallets[0].0.to_string());
        assert_eq!(body["payload"]["status"], "frozen");

        let stats = ledger.outbox.stats();
        assert!(stats.nats_active.load(Ordering::Relaxed), "the one relay holds the lease");
        assert_eq!(Stats::get(&stats.nats_published), newest as u64, "each event published once");
        assert_eq!(Stats::get(&stats.nats_duplicates), 0);
        assert_eq!(stats.nats_delivered_seq.load(Ordering::Relaxed), newest);
        relay.stop().await;
        assert!(!stats.nats_active.load(Ordering::Relaxed), "a stopped relay lets go of the lease");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_stream_loses_nothing_and_sends_nothing_twice_into_the_stream() {
    bounded(Duration::from_secs(90), async {
        let ledger = Ledger::new().await;
        let stream = TestStream::new().await;
        let config = stream.config(10);
        let name = config.cursor_name();
        // Transfers keep coming while relays are killed and started.
        let poster = async {
            for _ in 0..20 {
                ledger.transfers(15).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let relays = async {
            let mut killed_at = Vec::new();
            for kill_after in [40, 120] {
                // As a new process would: an outbox of its own.
                let outbox = Outbox::new(&ledger.db.store, OUTBOX_POOL);
                let relay = start_nats(&outbox, &config);
                eventually(WITHIN, "the relay makes progress", || async {
                    (outbox.stats().nats_delivered_seq.load(Ordering::Relaxed) >= kill_after).then_some(())
                })
                .await;
                relay.kill().await;
                killed_at.push(ledger.relay_cursor(&name).await);
            }
            killed_at
        };
        let ((), killed_at) = tokio::join!(poster, relays);
        let newest = ledger.newest().await;
        assert_eq!(newest, 4 + 300);
        for cursor in &killed_at {
            assert!(*cursor < newest, "killed mid-stream: at {cursor} of {newest}");
        }
        let outbox = Outbox::new(&ledger.db.store, OUTBOX_POOL);
        let relay = start_nats(&outbox, &config);
        wait_cursor(&ledger, &name, newest).await;
        stream.assert_holds_exactly(&ledger.events().await).await;
        relay.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_sent_again_after_its_cursor_update_was_lost_is_dropped_by_jetstream() {
    bounded(Duration::from_secs(60), async {
        // The relay reaches PostgreSQL through a proxy that cuts its lease's connection at the
        // first cursor update, after JetStream acknowledged the first page.
        let (ledger, proxy) = Ledger::behind_proxy().await;
        ledger.transfers(116).await;
        let newest = ledger.newest().await;
        assert_eq!(newest, 120);
        let stream = TestStream::new().await;
        let config = stream.config(50);
        proxy.arm(Fault::new(Stage::Statement("UPDATE relay_cursors"), Cut::Before));
        let relay = start_nats(&ledger.outbox, &config);
        proxy.wait_fired(1, WITHIN).await;
        wait_cursor(&ledger, &config.cursor_name(), newest).await;
        // The first page went twice: the second time JetStream said it had every message.
        let stats = ledger.outbox.stats();
        assert_eq!(Stats::get(&stats.nats_duplicates), 50, "the first page, sent again, was all duplicates");
        assert_eq!(Stats::get(&stats.nats_published), 120 + 50, "every acknowledgement is counted");
        stream.assert_holds_exactly(&ledger.events().await).await;
        relay.stop().await;
        assert!(!proxy.is_armed());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_relays_one_publishes_and_the_other_takes_over_when_it_dies() {
    bounded(Duration::from_secs(90), async {
        let ledger = Ledger::new().await;
        let stream = TestStream::new().await;
        let config = stream.config(20);
        let name = config.cursor_name();
        let first = ledger.outbox.clone();
        let second = Outbox::new(&ledger.db.store, OUTBOX_POOL);
        let first_relay = start_nats(&first, &config);
        eventually(WITHIN, "the first relay takes the lease", || async {
            first.stats().nats_active.load(Ordering::Relaxed).then_some(())
        })
        .await;
        let second_relay = start_nats(&second, &config);

        // While both run, only the first publishes.
        let sample = async {
            for _ in 0..10 {
                ledger.transfers(20).await;
                for _ in 0..5 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    assert!(first.stats().nats_active.load(Ordering::Relaxed), "the first keeps the lease");
                    assert!(!second.stats().nats_active.load(Ordering::Relaxed), "the second stands by");
                    assert_eq!(Stats::get(&second.stats().nats_published), 0, "the standby publishes nothing");
                }
            }
        };
        sample.await;
        let before_kill = ledger.newest().await;
        wait_cursor(&ledger, &name, before_kill).await;

        // The first dies; the second takes over within a few lease polls.
        first_relay.kill().await;
        let killed = Instant::now();
        eventually(Duration::from_secs(3), "the standby takes the lease", || async {
            second.stats().nats_active.load(Ordering::Relaxed).then_some(())
        })
        .await;
        let takeover = killed.elapsed();
        assert!(takeover < Duration::from_secs(2), "took over after {takeover:?}");
        for _ in 0..5 {
            ledger.transfers(20).await;
        }
        let newest = ledger.newest().await;
        assert_eq!(newest, 4 + 300);
        wait_cursor(&ledger, &name, newest).await;
        assert_eq!(
            Stats::get(&second.stats().nats_published),
            (newest - before_kill) as u64,
            "the standby published what came after it took over, and nothing the first had"
        );
        stream.assert_holds_exactly(&ledger.events().await).await;
        second_relay.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_cannot_reach_nats_moves_nothing_and_still_stops_promptly() {
    bounded(Duration::from_secs(30), async {
        let ledger = Ledger::new().await;
        ledger.transfers(10).await;
        let stream = TestStream::new().await;
        let mut config = stream.config(10);
        let refused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
        config.url = format!("nats://{refused}");
        let relay = start_nats(&ledger.outbox, &config);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(ledger.relay_cursor(&config.cursor_name()).await, 0, "nothing acknowledged, nothing moved");
        assert_eq!(Stats::get(&ledger.outbox.stats().nats_published), 0);
        let stopping = Instant::now();
        relay.stop().await;
        assert!(stopping.elapsed() < Duration::from_secs(2), "stopped after {:?}", stopping.elapsed());
        // An invalid configuration is refused at once.
        config.subject_prefix = "a..b".to_owned();
        let relay = start_nats(&ledger.outbox, &config);
        let ended = tokio::time::timeout(Duration::from_secs(2), relay.task).await.expect("ends").expect("no panic");
        assert_eq!(ended.unwrap_err().code(), "relay_config_invalid");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_nats_connection_is_cut_mid_stream_carries_on_and_loses_nothing() {
    bounded(Duration::from_secs(90), async {
        let ledger = Ledger::new().await;
        let stream = TestStream::new().await;
        let proxy = crate::support::NatsProxy::start().await;
        let mut config = stream.config(20);
        config.url = proxy.url.clone();
        let name = config.cursor_name();
        let relay = start_nats(&ledger.outbox, &config);
        let started = Instant::now();
        let poster = async {
            for _ in 0..15 {
                ledger.transfers(20).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let cutter = async {
            for cut_after in [60, 180] {
                eventually(WITHIN, "the relay makes progress", || async {
                    (ledger.outbox.stats().nats_delivered_seq.load(Ordering::Relaxed) >= cut_after).then_some(())
                })
                .await;
                proxy.cut();
            }
        };
        tokio::join!(poster, cutter);
        let newest = ledger.newest().await;
        assert_eq!(newest, 4 + 300);
        wait_cursor(&ledger, &name, newest).await;
        eprintln!("relayed {newest} events through two cuts in {:?}", started.elapsed());
        stream.assert_holds_exactly(&ledger.events().await).await;
        relay.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_outlives_a_database_outage_and_resumes_where_it_stopped() {
    bounded(Duration::from_secs(60), async {
        // The relay reaches PostgreSQL through a proxy; the engine does not.
        let (ledger, proxy) = Ledger::behind_proxy().await;
        let stream = TestStream::new().await;
        let config = stream.config(20);
        let relay = start_nats(&ledger.outbox, &config);
        ledger.transfers(50).await;
        eventually(WITHIN, "the relay catches up", || async {
            (ledger.outbox.stats().nats_delivered_seq.load(Ordering::Relaxed) == 54).then_some(())
        })
        .await;
        proxy.set_reachable(false);
        ledger.transfers(50).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!ledger.outbox.stats().nats_active.load(Ordering::Relaxed), "no lease without the database");
        proxy.set_reachable(true);
        wait_cursor(&ledger, &config.cursor_name(), 104).await;
        stream.assert_holds_exactly(&ledger.events().await).await;
        relay.stop().await;
    })
    .await;
}
