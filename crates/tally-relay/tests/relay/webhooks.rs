//! Webhooks against real HTTP receivers: retries until the endpoint recovers, in order;
//! signatures a receiver can check; parking and redelivery; dead endpoints that slow nobody
//! else; restarts that resume; filters; disabling, enabling and deleting endpoints.

use crate::support::{
    ACTOR, Ledger, Receiver, WITHIN, bounded, eventually, matching, split_repeats, start_webhooks, webhook_config,
};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use tally_relay::signature::{self, SignatureError};
use tally_relay::{DeliveryQuery, DeliveryStatus, NewWebhook, Outbox, Stats, WebhookRecord};
use tally_testkit::{Cut, Fault, Stage};
use uuid::Uuid;

fn hook(url: &str, types: &[&str], after_seq: Option<i64>) -> NewWebhook {
    NewWebhook {
        url: url.to_owned(),
        event_types: types.iter().map(|t| t.to_string()).collect(),
        description: Some("test receiver".to_owned()),
        after_seq,
    }
}

async fn register(outbox: &Outbox, url: &str, types: &[&str], after_seq: Option<i64>) -> (WebhookRecord, String) {
    outbox.create_webhook(ACTOR, hook(url, types, after_seq)).await.expect("register a webhook")
}

/// Waits until every active endpoint's position is the newest event.
async fn wait_positions(ledger: &Ledger, seq: i64) {
    eventually(WITHIN, &format!("every active endpoint's position reaches {seq}"), || async {
        let positions = ledger.outbox.positions().await.expect("positions");
        positions.endpoints.iter().all(|(_, delivered)| *delivered == seq).then_some(())
    })
    .await;
}

/// Waits until one endpoint's position is `seq`.
async fn wait_position(ledger: &Ledger, id: Uuid, seq: i64) {
    eventually(WITHIN, &format!("the endpoint's position reaches {seq}"), || async {
        (ledger.outbox.webhook(id).await.expect("the endpoint").delivered_seq == seq).then_some(())
    })
    .await;
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_fails_five_times_then_recovers_gets_every_event_in_order() {
    bounded(Duration::from_secs(60), async {
        let ledger = Ledger::new().await;
        let receiver = Receiver::start().await;
        receiver.fail_next(5);
        let (endpoint, _secret) = register(&ledger.outbox, &receiver.url, &["transfer.*"], None).await;
        assert_eq!(endpoint.delivered_seq, 4, "by default an endpoint gets only the events to come");
        let dispatcher = start_webhooks(&ledger.outbox, &webhook_config());
        for _ in 0..4 {
            ledger.transfers(25).await;
        }
        ledger.freeze_and_unfreeze().await;
        ledger.transfers(10).await;
        let newest = ledger.newest().await;
        assert_eq!(newest, 4 + 100 + 2 + 10);
        let events = ledger.events().await;
        let expected = matching(&events, &["transfer.*"], 4);
        assert_eq!(expected.len(), 110);
        receiver.wait_delivered(&expected, WITHIN).await;
        wait_positions(&ledger, newest).await;

        let log = receiver.log();
        let first = expected[0];
        let tries: Vec<(i64, u32, u16)> = log.iter().take(6).map(|r| (r.seq, r.attempt, r.status)).collect();
        assert_eq!(
            tries,
            (1..=6).map(|attempt| (first, attempt, if attempt < 6 { 500 } else { 200 })).collect::<Vec<_>>(),
            "the first event is tried six times, the last answered"
        );
        assert_eq!(receiver.delivered(), expected, "every matching event once, in order");
        assert_eq!(log.len(), expected.len() + 5, "no request beyond the retries");
        for request in &log {
            assert_eq!(request.content_type, "application/json");
            assert_eq!(request.webhook_id, endpoint.id.to_string());
            let event = &events[request.seq as usize - 1];
            assert_eq!(request.event_type, event.event_type);
            assert_eq!(request.body.as_ref(), event.to_json().as_slice(), "the body is the event as the API shows it");
        }

        // The delivery log tells the story of the first event.
        let delivery = ledger.outbox.delivery(endpoint.id, first).await.expect("the first delivery");
        assert_eq!(delivery.status, DeliveryStatus::Delivered);
        assert_eq!(delivery.attempts, 6);
        assert_eq!(delivery.last_status_code, Some(200));
        assert_eq!(delivery.last_error, None);
        assert!(delivery.delivered_at.is_some());
        assert_eq!(delivery.next_attempt_at, None);
        let attempts: Vec<(i32, Option<i32>)> =
            delivery.attempt_log.iter().map(|a| (a.attempt, a.status_code)).collect();
        assert_eq!(attempts, (1..=6).map(|a| (a, Some(if a < 6 { 500 } else { 200 }))).collect::<Vec<_>>());
        for attempt in &delivery.attempt_log[..5] {
            let error = attempt.error.as_deref().expect("a failed attempt says why");
            assert!(error.contains("500"), "{error}");
        }
        assert_eq!(delivery.attempt_log[5].error, None);
        // Retries were spaced by the backoff: at least half of 20, 40, 80, 160, 200 (the max) ms.
        let spacing: Vec<i64> =
            delivery.attempt_log.windows(2).map(|w| (w[1].at.0 - w[0].at.0) / 1000).collect::<Vec<_>>();
        for (gap, full) in spacing.iter().zip([20, 40, 80, 160, 200]) {
            assert!(*gap >= full / 2, "retry gaps {spacing:?} ms follow the backoff");
        }
        // The others went through at once.
        let log_page = ledger
            .outbox
            .deliveries(endpoint.id, &DeliveryQuery { status: None, before_seq: None, limit: 1000 })
            .await
            .expect("the delivery log");
        assert_eq!(log_page.len(), expected.len());
        let mut seqs: Vec<i64> = log_page.iter().map(|d| d.seq).collect();
        seqs.reverse();
        assert_eq!(seqs, expected, "the log lists each delivery, newest first");
        assert!(log_page.iter().all(|d| d.status == DeliveryStatus::Delivered));
        assert!(log_page.iter().filter(|d| d.seq != first).all(|d| d.attempts == 1 && d.attempt_log.len() == 1));

        let stats = ledger.outbox.stats();
        assert_eq!(Stats::get(&stats.webhook_delivered), expected.len() as u64);
        assert_eq!(Stats::get(&stats.webhook_failed), 5);
        assert_eq!(Stats::get(&stats.webhook_parked), 0);
        assert!(stats.webhooks_active.load(Ordering::Relaxed));
        dispatcher.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_is_signed_and_a_wrong_secret_a_changed_body_or_an_old_timestamp_is_detected() {
    bounded(Duration::from_secs(60), async {
        let ledger = Ledger::new().await;
        let (one, two) = (Receiver::start().await, Receiver::start().await);
        let (first, first_secret) = register(&ledger.outbox, &one.url, &["*"], Some(0)).await;
        let (second, second_secret) = register(&ledger.outbox, &two.url, &["transfer.posted"], Some(0)).await;
        assert_ne!(first_secret, second_secret);
        assert!(first_secret.starts_with(signature::SECRET_PREFIX));
        // The secret is shown at registration only.
        let listed = serde_json::to_string(&ledger.outbox.webhooks().await.expect("list")).expect("JSON");
        assert!(!listed.contains(&first_secret) && !listed.contains(&second_secret), "never listed");

        let dispatcher = start_webhooks(&ledger.outbox, &webhook_config());
        ledger.transfers(20).await;
        let events = ledger.events().await;
        one.wait_delivered(&matching(&events, &["*"], 0), WITHIN).await;
        two.wait_delivered(&matching(&events, &["transfer.posted"], 0), WITHIN).await;
        dispatcher.stop().await;

        let cases = [(&one, &first, &first_secret, &second_secret), (&two, &second, &second_secret, &first_secret)];
        for (receiver, endpoint, secret, other) in cases {
            let log = receiver.log();
            assert!(!log.is_empty());
            for request in log {
                assert_eq!(request.webhook_id, endpoint.id.to_string());
                let header = &request.signature;
                let body = request.body.as_ref();
                let now = now_unix();
                assert_eq!(signature::verify(secret, header, body, now, 300), Ok(()), "seq {}", request.seq);
                let timestamp: i64 = header
                    .strip_prefix("t=")
                    .and_then(|rest| rest.split(',').next())
                    .and_then(|t| t.parse().ok())
                    .expect("t=<unix seconds> first");
                assert!((now - timestamp).abs() <= 5, "signed when sent: {timestamp} vs {now}");
                // The other endpoint's secret does not verify it.
                assert_eq!(signature::verify(other, header, body, now, 300), Err(SignatureError::Mismatch));
                // A changed body does not verify.
                let tampered = String::from_utf8(body.to_vec()).expect("UTF-8").replacen("\"seq\":", "\"seq\":1", 1);
                assert_ne!(tampered.as_bytes(), body);
                assert_eq!(
                    signature::verify(secret, header, tampered.as_bytes(), now, 300),
                    Err(SignatureError::Mismatch)
                );
                // Replayed later than the tolerance, it is refused as stale.
                let later = timestamp + 301;
                assert_eq!(signature::verify(secret, header, body, later, 300), Err(SignatureError::Stale(301)));
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_out_of_attempts_is_parked_and_can_be_redelivered() {
    bounded(Duration::from_secs(60), async {
        let ledger = Ledger::new().await;
        let receiver = Receiver::start().await;
        receiver.set_failing(true);
        let (endpoint, _) = register(&ledger.outbox, &receiver.url, &["*"], None).await;
        let config = tally_relay::WebhookConfig { attempts_max: 3, ..webhook_config() };
        let dispatcher = start_webhooks(&ledger.outbox, &config);
        ledger.transfers(20).await;
        let newest = ledger.newest().await;
        let expected: Vec<i64> = (5..=newest).collect();
        let first = expected[0];

        // Three attempts, then parked: nothing later goes out.
        receiver.wait_requests(3, WITHIN).await;
        eventually(WITHIN, "the delivery is parked", || async {
            (ledger.outbox.positions().await.expect("positions").parked == 1).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let tries: Vec<(i64, u32, u16)> = receiver.log().iter().map(|r| (r.seq, r.attempt, r.status)).collect();
        assert_eq!(tries, vec![(first, 1, 500), (first, 2, 500), (first, 3, 500)], "exactly three attempts");
        let parked = ledger.outbox.delivery(endpoint.id, first).await.expect("the delivery");
        assert_eq!((parked.status, parked.attempts, parked.next_attempt_at), (DeliveryStatus::Parked, 3, None));
        assert_eq!(parked.attempt_log.iter().map(|a| a.status_code).collect::<Vec<_>>(), vec![Some(500); 3]);
        let record = ledger.outbox.webhook(endpoint.id).await.expect("the endpoint");
        assert_eq!(record.parked_seq, Some(first));
        assert_eq!(record.delivered_seq, 4, "the endpoint stands before the parked event");
        let listed = ledger
            .outbox
            .deliveries(
                endpoint.id,
                &DeliveryQuery { status: Some(DeliveryStatus::Parked), before_seq: None, limit: 10 },
            )
            .await
            .expect("parked deliveries");
        assert_eq!(listed.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![first]);
        let stats = ledger.outbox.stats();
        assert_eq!((Stats::get(&stats.webhook_failed), Stats::get(&stats.webhook_parked)), (2, 1));

        // Redelivered while the endpoint still fails: as many attempts again, then parked again.
        let reopened = ledger.outbox.redeliver(ACTOR, endpoint.id, first).await.expect("redeliver");
        // (Read after the redelivery committed: the dispatcher may have tried it once already.)
        assert!(
            (reopened.status, reopened.attempts) == (DeliveryStatus::Pending, 3)
                || (reopened.status == DeliveryStatus::Pending && reopened.attempts > 3),
            "{reopened:?}"
        );
        receiver.wait_requests(6, WITHIN).await;
        eventually(WITHIN, "parked again", || async {
            let delivery = ledger.outbox.delivery(endpoint.id, first).await.expect("the delivery");
            (delivery.status == DeliveryStatus::Parked).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(receiver.log().len(), 6, "three more attempts, no more");
        assert_eq!(ledger.outbox.delivery(endpoint.id, first).await.expect("delivery").attempts, 6);

        // Fixed and redelivered: the endpoint gets everything, in order.
        receiver.set_failing(false);
        ledger.outbox.redeliver(ACTOR, endpoint.id, first).await.expect("redeliver");
        receiver.wait_delivered(&expected, WITHIN).await;
        assert_eq!(receiver.delivered(), expected, "everything once, in order, after the redelivery");
        let delivered = ledger.outbox.delivery(endpoint.id, first).await.expect("the delivery");
        assert_eq!((delivered.status, delivered.attempts), (DeliveryStatus::Delivered, 7));
        assert_eq!(delivered.attempt_log.iter().map(|a| a.attempt).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>());
        wait_positions(&ledger, newest).await;
        assert_eq!(ledger.outbox.positions().await.expect("positions").parked, 0);
        assert_eq!(ledger.outbox.webhook(endpoint.id).await.expect("endpoint").parked_seq, None);

        // Only a parked delivery can be redelivered.
        let error = ledger.outbox.redeliver(ACTOR, endpoint.id, first).await.unwrap_err();
        assert_eq!(error.code(), "delivery_not_parked");
        let error = ledger.outbox.redeliver(ACTOR, endpoint.id, newest + 100).await.unwrap_err();
        assert_eq!(error.code(), "delivery_not_found");
        let error = ledger.outbox.redeliver(ACTOR, Uuid::now_v7(), first).await.unwrap_err();
        assert_eq!(error.code(), "webhook_not_found");
        dispatcher.stop().await;
    })
    .await;
}

/// How long the healthy endpoint takes to get 200 transfer events, with or without a refused
/// and a hanging endpoint beside it.
async fn time_to_deliver(with_dead_endpoints: bool) -> Duration {
    let ledger = Ledger::new().await;
    ledger.transfers(200).await;
    let events = ledger.events().await;
    let expected = matching(&events, &["transfer.*"], 0);
    let healthy = Receiver::start().await;
    let hanging = Receiver::start().await;
    hanging.set_hanging(true);
    let refused = Receiver::refused_url().await;
    let (_, _) = register(&ledger.outbox, &healthy.url, &["transfer.*"], Some(0)).await;
    let mut dead = Vec::new();
    if with_dead_endpoints {
        dead.push(register(&ledger.outbox, &refused, &["transfer.*"], Some(0)).await.0);
        dead.push(register(&ledger.outbox, &hanging.url, &["transfer.*"], Some(0)).await.0);
    }
    let config = tally_relay::WebhookConfig { timeout: Duration::from_secs(1), ..webhook_config() };
    let started = Instant::now();
    let dispatcher = start_webhooks(&ledger.outbox, &config);
    healthy.wait_delivered(&expected, Duration::from_secs(10)).await;
    let elapsed = started.elapsed();
    assert_eq!(healthy.delivered(), expected);
    if with_dead_endpoints {
        // The dead ones are still trying their first event, and say why.
        let first = expected[0];
        eventually(WITHIN, "the hanging endpoint's first attempt timed out", || async {
            let delivery = ledger.outbox.delivery(dead[1].id, first).await.ok()?;
            Some(delivery).filter(|d| d.attempts >= 1)
        })
        .await;
        let refused = ledger.outbox.delivery(dead[0].id, first).await.expect("a delivery to the refused endpoint");
        assert_eq!(refused.status, DeliveryStatus::Pending);
        assert_eq!(refused.last_status_code, None);
        assert!(refused.attempts >= 2, "retried: {} attempts", refused.attempts);
        let error = refused.last_error.as_deref().unwrap_or_default();
        assert!(error.contains("refused") || error.contains("connect"), "{error}");
        let hung = ledger.outbox.delivery(dead[1].id, first).await.expect("a delivery to the hanging endpoint");
        assert_eq!((hung.status, hung.last_status_code), (DeliveryStatus::Pending, None));
        let error = hung.last_error.as_deref().unwrap_or_default();
        assert!(error.contains("no answer within 1s"), "{error}");
        for endpoint in &dead {
            assert_eq!(ledger.outbox.webhook(endpoint.id).await.expect("endpoint").delivered_seq, 0);
        }
    }
    dispatcher.stop().await;
    elapsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_hanging_endpoint_does_not_slow_the_others() {
    bounded(Duration::from_secs(90), async {
        let alone = time_to_deliver(false).await;
        let beside_dead = time_to_deliver(true).await;
        eprintln!("200 deliveries: {alone:?} alone, {beside_dead:?} beside a refused and a hanging endpoint");
        assert!(beside_dead < Duration::from_secs(5), "{beside_dead:?}");
        assert!(
            beside_dead <= alone * 4 + Duration::from_millis(500),
            "beside dead endpoints {beside_dead:?}, alone {alone:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_dispatcher_resumes_where_it_stopped() {
    bounded(Duration::from_secs(90), async {
        let ledger = Ledger::new().await;
        ledger.transfers(150).await;
        let newest = ledger.newest().await;
        let expected: Vec<i64> = (1..=newest).collect();
        let receiver = Receiver::start().await;
        receiver.set_delay(Duration::from_millis(3));
        let (endpoint, _) = register(&ledger.outbox, &receiver.url, &["*"], Some(0)).await;
        let config = webhook_config();

        // Stopped by its shutdown signal, then killed as in a crash, each mid-stream.
        let dispatcher = start_webhooks(&ledger.outbox, &config);
        receiver.wait_requests(40, WITHIN).await;
        dispatcher.stop().await;
        let stopped_at = receiver.log().len();
        assert!(stopped_at < expected.len(), "stopped mid-stream ({stopped_at})");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(receiver.log().len(), stopped_at, "a stopped dispatcher sends nothing");
        let position = ledger.outbox.webhook(endpoint.id).await.expect("endpoint").delivered_seq;
        assert_eq!(position, *receiver.delivered().last().expect("some"), "its position is what was answered");

        let outbox = Outbox::new(&ledger.db.store, crate::support::OUTBOX_POOL);
        let dispatcher = start_webhooks(&outbox, &config);
        receiver.wait_requests(stopped_at + 40, WITHIN).await;
        dispatcher.kill().await;
        let killed_at = receiver.log().len();
        assert!(killed_at < expected.len() + 2, "killed mid-stream ({killed_at})");

        let outbox = Outbox::new(&ledger.db.store, crate::support::OUTBOX_POOL);
        let dispatcher = start_webhooks(&outbox, &config);
        receiver.wait_delivered(&expected, WITHIN).await;
        wait_positions(&ledger, newest).await;
        dispatcher.stop().await;

        // Every event, in order; repeats only of what was in flight, at most one per restart.
        let (distinct, repeats) = split_repeats(&receiver.delivered());
        assert_eq!(distinct, expected, "every event, in order");
        assert!(repeats.len() <= 2, "at most the in-flight delivery again per restart: {repeats:?}");
        assert!(receiver.log().iter().all(|r| r.status == 200));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_starting_points_select_what_an_endpoint_gets() {
    bounded(Duration::from_secs(60), async {
        let ledger = Ledger::new().await;
        ledger.transfers(10).await;
        let registered_after = ledger.newest().await;
        assert_eq!(registered_after, 14);
        let accounts = Receiver::start().await;
        let later = Receiver::start().await;
        let everything = Receiver::start().await;
        let posted = Receiver::start().await;
        register(&ledger.outbox, &accounts.url, &["account.*"], Some(0)).await;
        let (later_hook, _) = register(&ledger.outbox, &later.url, &["*"], None).await;
        assert_eq!(later_hook.delivered_seq, registered_after);
        register(&ledger.outbox, &everything.url, &["*"], Some(0)).await;
        register(&ledger.outbox, &posted.url, &["transfer.posted", "account.closed"], None).await;
        let error = ledger.outbox.create_webhook(ACTOR, hook(&later.url, &["*"], Some(registered_after + 1))).await;
        assert_eq!(error.unwrap_err().code(), "webhook_invalid", "after_seq beyond the newest event");
        let error = ledger.outbox.create_webhook(ACTOR, hook(&later.url, &["transfers.*"], None)).await;
        assert_eq!(error.unwrap_err().code(), "event_type_invalid");

        let dispatcher = start_webhooks(&ledger.outbox, &webhook_config());
        ledger.freeze_and_unfreeze().await;
        ledger.transfers(20).await;
        ledger.open_account("dave").await;
        // Many events the account endpoint does not want, to the end.
        ledger.transfers(30).await;
        let newest = ledger.newest().await;
        assert_eq!(newest, 14 + 2 + 20 + 1 + 30);
        let events = ledger.events().await;
        let account_events = matching(&events, &["account.*"], 0);
        assert_eq!(account_events, vec![1, 2, 3, 4, 15, 16, 37]);
        let cases = [
            (&accounts, account_events),
            (&later, (registered_after + 1..=newest).collect::<Vec<_>>()),
            (&everything, (1..=newest).collect()),
            (&posted, matching(&events, &["transfer.posted"], registered_after)),
        ];
        for (receiver, expected) in &cases {
            receiver.wait_delivered(expected, WITHIN).await;
        }
        // Every position reaches the newest event, past the events an endpoint does not want.
        wait_positions(&ledger, newest).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        for (receiver, expected) in &cases {
            assert_eq!(&receiver.delivered(), expected);
            assert_eq!(receiver.log().len(), expected.len(), "nothing else");
            for request in receiver.log() {
                assert_eq!(request.event_type, events[request.seq as usize - 1].event_type);
            }
        }
        // Nothing was tried for an event an endpoint does not want.
        let accounts_id = ledger.outbox.webhooks().await.expect("list")[0].id;
        let logged = ledger
            .outbox
            .deliveries(accounts_id, &DeliveryQuery { status: None, before_seq: None, limit: 1000 })
            .await
            .expect("log");
        assert_eq!(logged.iter().rev().map(|d| d.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 15, 16, 37]);
        dispatcher.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_endpoint_gets_nothing_until_enabled_and_a_deleted_one_nothing_at_all() {
    bounded(Duration::from_secs(60), async {
        let ledger = Ledger::new().await;
        let (paused, control, doomed) = (Receiver::start().await, Receiver::start().await, Receiver::start().await);
        doomed.set_failing(true);
        let (paused_hook, _) = register(&ledger.outbox, &paused.url, &["*"], None).await;
        let (control_hook, _) = register(&ledger.outbox, &control.url, &["*"], None).await;
        let (doomed_hook, _) = register(&ledger.outbox, &doomed.url, &["*"], None).await;
        let dispatcher = start_webhooks(&ledger.outbox, &webhook_config());
        let settle = Duration::from_millis(300);

        ledger.transfers(10).await;
        let first_batch: Vec<i64> = (5..=14).collect();
        paused.wait_delivered(&first_batch, WITHIN).await;
        control.wait_delivered(&first_batch, WITHIN).await;
        doomed.wait_requests(3, WITHIN).await;
        wait_position(&ledger, paused_hook.id, 14).await;

        // Disabled: it gets nothing, and its position stays.
        let disabled = ledger.outbox.set_webhook_active(ACTOR, paused_hook.id, false).await.expect("disable");
        assert_eq!((disabled.status.as_str(), disabled.delivered_seq), ("disabled", 14));
        // Deleted while its worker retries: the worker stops.
        ledger.outbox.delete_webhook(ACTOR, doomed_hook.id).await.expect("delete");
        tokio::time::sleep(settle).await;
        let doomed_requests = doomed.log().len();

        ledger.transfers(10).await;
        let second_batch: Vec<i64> = (15..=24).collect();
        control.wait_delivered(&second_batch, WITHIN).await;
        tokio::time::sleep(settle).await;
        assert_eq!(paused.delivered(), first_batch, "a disabled endpoint gets nothing");
        assert_eq!(doomed.log().len(), doomed_requests, "a deleted endpoint's worker has stopped");
        let positions = ledger.outbox.positions().await.expect("positions");
        assert_eq!(positions.endpoints, vec![(control_hook.id, 24)], "only active endpoints are listed");
        assert_eq!(ledger.outbox.webhook(paused_hook.id).await.expect("endpoint").delivered_seq, 14);
        assert_eq!(ledger.outbox.webhook(doomed_hook.id).await.unwrap_err().code(), "webhook_not_found");
        let query = DeliveryQuery { status: None, before_seq: None, limit: 10 };
        assert_eq!(ledger.outbox.deliveries(doomed_hook.id, &query).await.unwrap_err().code(), "webhook_not_found");
        assert_eq!(ledger.outbox.webhooks().await.expect("list").len(), 2);

        // Enabled again: it resumes where it stopped, losing nothing.
        let enabled = ledger.outbox.set_webhook_active(ACTOR, paused_hook.id, true).await.expect("enable");
        assert_eq!(enabled.status, "active");
        ledger.transfers(10).await;
        let all: Vec<i64> = (5..=34).collect();
        paused.wait_delivered(&all, WITHIN).await;
        control.wait_delivered(&all, WITHIN).await;
        wait_positions(&ledger, 34).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(paused.delivered(), all, "once each, in order, nothing lost");
        assert_eq!(control.delivered(), all);
        assert_eq!(doomed.log().len(), doomed_requests);
        dispatcher.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_restarted_during_retries_carries_on_counting_attempts() {
    bounded(Duration::from_secs(60), async {
        let ledger = Ledger::new().await;
        let receiver = Receiver::start().await;
        receiver.set_failing(true);
        let (endpoint, _) = register(&ledger.outbox, &receiver.url, &["*"], None).await;
        let config = tally_relay::WebhookConfig { attempts_max: 4, ..webhook_config() };
        ledger.transfers(5).await;
        let dispatcher = start_webhooks(&ledger.outbox, &config);
        receiver.wait_requests(2, WITHIN).await;
        dispatcher.stop().await;
        let pending = ledger.outbox.delivery(endpoint.id, 5).await.expect("the delivery");
        assert_eq!(pending.status, DeliveryStatus::Pending);
        let tried = receiver.log().len();
        assert_eq!(pending.attempts as usize, tried, "every attempt made was recorded");
        assert!(pending.next_attempt_at.is_some());

        let outbox = Outbox::new(&ledger.db.store, crate::support::OUTBOX_POOL);
        let dispatcher = start_webhooks(&outbox, &config);
        eventually(WITHIN, "parked", || async {
            let delivery = ledger.outbox.delivery(endpoint.id, 5).await.expect("the delivery");
            (delivery.status == DeliveryStatus::Parked).then_some(delivery)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let attempts: Vec<(i64, u32)> = receiver.log().iter().map(|r| (r.seq, r.attempt)).collect();
        assert_eq!(attempts, (1..=4).map(|a| (5, a)).collect::<Vec<_>>(), "four attempts in all, across the restart");
        let parked = ledger.outbox.delivery(endpoint.id, 5).await.expect("the delivery");
        assert_eq!(parked.attempt_log.iter().map(|a| a.attempt).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        dispatcher.stop().await;
    })
    .await;
}

/// The dispatcher's lease connection is cut when it is about to record its first delivery (the
/// statement never reaches PostgreSQL): the endpoint answered, but nothing says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_record_was_lost_is_sent_again_once() {
    bounded(Duration::from_secs(60), async {
        let (ledger, proxy) = Ledger::behind_proxy().await;
        let receiver = Receiver::start().await;
        let (endpoint, _) = register(&ledger.outbox, &receiver.url, &["*"], None).await;
        ledger.transfers(30).await;
        let expected: Vec<i64> = (5..=34).collect();
        proxy.arm(Fault::new(Stage::Statement("INSERT INTO webhook_deliveries"), Cut::Before));
        let dispatcher = start_webhooks(&ledger.outbox, &webhook_config());
        proxy.wait_fired(1, WITHIN).await;
        receiver.wait_delivered(&expected, WITHIN).await;
        wait_positions(&ledger, 34).await;
        dispatcher.stop().await;
        let mut again = vec![expected[0]];
        again.extend(&expected);
        assert_eq!(receiver.delivered(), again, "the first event again after the restart, then the rest once each");
        let first = ledger.outbox.delivery(endpoint.id, 5).await.expect("the delivery");
        assert_eq!((first.status, first.attempts), (DeliveryStatus::Delivered, 1), "the lost attempt left no trace");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_dispatchers_one_delivers_and_the_other_takes_over_when_it_dies() {
    bounded(Duration::from_secs(60), async {
        let ledger = Ledger::new().await;
        let receiver = Receiver::start().await;
        receiver.set_delay(Duration::from_millis(2));
        register(&ledger.outbox, &receiver.url, &["*"], None).await;
        let first = ledger.outbox.clone();
        let second = Outbox::new(&ledger.db.store, crate::support::OUTBOX_POOL);
        let first_dispatcher = start_webhooks(&first, &webhook_config());
        eventually(WITHIN, "the first dispatcher takes the lease", || async {
            first.stats().webhooks_active.load(Ordering::Relaxed).then_some(())
        })
        .await;
        let second_dispatcher = start_webhooks(&second, &webhook_config());
        for _ in 0..5 {
            ledger.transfers(20).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!second.stats().webhooks_active.load(Ordering::Relaxed), "the second stands by");
            assert_eq!(Stats::get(&second.stats().webhook_delivered), 0, "the standby delivers nothing");
        }
        first_dispatcher.kill().await;
        let killed = Instant::now();
        eventually(Duration::from_secs(5), "the standby takes the lease", || async {
            second.stats().webhooks_active.load(Ordering::Relaxed).then_some(())
        })
        .await;
        assert!(killed.elapsed() < Duration::from_secs(3), "took over after {:?}", killed.elapsed());
        ledger.transfers(20).await;
        let newest = ledger.newest().await;
        let expected: Vec<i64> = (5..=newest).collect();
        receiver.wait_delivered(&expected, WITHIN).await;
        wait_positions(&ledger, newest).await;
        assert!(Stats::get(&second.stats().webhook_delivered) >= 20);
        let (distinct, repeats) = split_repeats(&receiver.delivered());
        assert_eq!(distinct, expected, "every event in order");
        assert!(repeats.len() <= 1, "at most the one in flight again: {repeats:?}");
        second_dispatcher.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_disabled_and_enabled_mid_delivery_never_gets_two_deliveries_at_once() {
    bounded(Duration::from_secs(60), async {
        let ledger = Ledger::new().await;
        let receiver = Receiver::start().await;
        receiver.set_delay(Duration::from_millis(400));
        let (endpoint, _) = register(&ledger.outbox, &receiver.url, &["*"], None).await;
        let dispatcher = start_webhooks(&ledger.outbox, &webhook_config());
        ledger.transfers(3).await;
        let expected: Vec<i64> = (5..=7).collect();
        eventually(WITHIN, "the first delivery is being answered", || async {
            (receiver.in_flight() == 1).then_some(())
        })
        .await;
        // Disabled and enabled again while the first delivery is in flight.
        ledger.outbox.set_webhook_active(ACTOR, endpoint.id, false).await.expect("disable");
        tokio::time::sleep(Duration::from_millis(60)).await;
        ledger.outbox.set_webhook_active(ACTOR, endpoint.id, true).await.expect("enable");
        receiver.wait_delivered(&expected, WITHIN).await;
        wait_positions(&ledger, 7).await;
        dispatcher.stop().await;
        assert_eq!(receiver.max_in_flight(), 1, "one delivery at a time to an endpoint");
        assert_eq!(receiver.delivered(), expected, "each once, in order");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_outlives_a_database_outage_and_resumes_where_it_stopped() {
    bounded(Duration::from_secs(60), async {
        // The dispatcher reaches PostgreSQL through a proxy; the engine does not.
        let (ledger, proxy) = Ledger::behind_proxy().await;
        let receiver = Receiver::start().await;
        register(&ledger.outbox, &receiver.url, &["*"], None).await;
        let dispatcher = start_webhooks(&ledger.outbox, &webhook_config());
        ledger.transfers(20).await;
        receiver.wait_delivered(&(5..=24).collect::<Vec<_>>(), WITHIN).await;

        proxy.set_reachable(false);
        ledger.transfers(20).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(receiver.delivered().iter().all(|seq| *seq <= 24), "nothing it could not read");
        proxy.set_reachable(true);

        let expected: Vec<i64> = (5..=44).collect();
        receiver.wait_delivered(&expected, WITHIN).await;
        wait_positions(&ledger, 44).await;
        dispatcher.stop().await;
        let (distinct, repeats) = split_repeats(&receiver.delivered());
        assert_eq!(distinct, expected, "every event, in order");
        assert!(repeats.len() <= 1, "at most the one in flight again: {repeats:?}");
    })
    .await;
}
