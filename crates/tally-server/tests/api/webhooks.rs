//! `/v1/webhooks`: registration (admin only, the secret shown once, audited with the key as
//! actor), refusals that write nothing, disable/enable/delete, the delivery log, redelivery, and
//! what `/metrics` says of them; deliveries made by a real server to receivers on the loopback.

use crate::server::{Running, running_with};
use crate::support::*;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tally_relay::WebhookConfig;
use tally_server::{ServerConfig, Shutdown};
use tally_store::Role;

fn hook(url: &str, types: &[&str]) -> Value {
    json!({"url": url, "event_types": types})
}

/// Rows in the webhook tables and the ledger's tables.
async fn counts(api: &Api) -> (Vec<(String, i64)>, i64) {
    let endpoints: i64 =
        api.db.connect().await.query_one("SELECT count(*) FROM webhook_endpoints", &[]).await.unwrap().get(0);
    (api.db.row_counts().await, endpoints)
}

#[tokio::test]
async fn an_admin_registers_a_webhook_and_sees_its_secret_once() {
    let api = api().await;
    let body = json!({"url": "https://hooks.example.com/tally?x=1", "event_types": ["transfer.*", "account.frozen"],
                      "description": "payments"});
    let created = api.post("/v1/webhooks", &api.admin, body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let secret = created.body["secret"].as_str().expect("the secret, once").to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["event_types"], json!(["account.frozen", "transfer.*"]));
    assert_eq!(created.body["status"], "active");
    assert_eq!(created.body["description"], "payments");
    assert_eq!(created.body["created_by"], "key:admin");
    assert_eq!(created.body["parked_seq"], Value::Null);

    // Nobody else registers.
    let reader = api.key("reader", Role::Reader, vec![]).await;
    for key in [&api.operator, &api.auditor, &reader] {
        let refused = api.post("/v1/webhooks", key, body.clone()).await;
        assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "forbidden"), "{}", refused.body);
    }

    // Listed and shown to the event readers, never with the secret; not to a reader key.
    for key in [&api.admin, &api.operator, &api.auditor] {
        let list = api.get("/v1/webhooks", key).await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.body);
        assert_eq!(list.body.as_array().unwrap().len(), 1);
        assert_eq!(list.body[0]["id"], id.as_str());
        let shown = api.get(&format!("/v1/webhooks/{id}"), key).await;
        assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
        assert_eq!(shown.body["url"], "https://hooks.example.com/tally?x=1");
        for reply in [&list, &shown] {
            assert!(!reply.text.contains(&secret) && !reply.text.contains("secret"), "{}", reply.text);
        }
    }
    assert_eq!(api.get("/v1/webhooks", &reader).await.status, StatusCode::FORBIDDEN);
    assert_eq!(api.get(&format!("/v1/webhooks/{id}/deliveries"), &reader).await.status, StatusCode::FORBIDDEN);

    // Audited with the key as actor, and without the secret.
    let client = api.db.connect().await;
    let row = client
        .query_one(
            "SELECT actor, after::text FROM audit_log WHERE action = 'webhook.create' AND entity_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "key:admin");
    assert!(!row.get::<_, String>(1).contains(&secret));
}

#[tokio::test]
async fn a_malformed_registration_gets_its_documented_code_and_writes_nothing() {
    let api = api().await;
    api.funded("alice", "1.00").await;
    let before = counts(&api).await;
    let cases = [
        (hook("ftp://example.com/x", &["*"]), "webhook_url_invalid"),
        (hook("not a url", &["*"]), "webhook_url_invalid"),
        (hook("https://user:pw@example.com/", &["*"]), "webhook_url_invalid"),
        (hook("https://example.com/", &["transfers.*"]), "event_type_invalid"),
        (hook("https://example.com/", &["transfer.postedx"]), "event_type_invalid"),
        (hook("https://example.com/", &[]), "event_type_invalid"),
        (json!({"url": "https://example.com/", "event_types": ["*"], "secret": "mine"}), "invalid_body"),
        (json!({"url": "https://example.com/"}), "invalid_body"),
        (json!({"url": "https://example.com/", "event_types": "*"}), "invalid_body"),
        (json!({"url": "https://example.com/", "event_types": ["*"], "after_seq": 1_000_000}), "webhook_invalid"),
        (json!({"url": "https://example.com/", "event_types": ["*"], "after_seq": -1}), "webhook_invalid"),
        (
            json!({"url": "https://example.com/", "event_types": ["*"], "description": "x".repeat(257)}),
            "webhook_invalid",
        ),
    ];
    for (body, code) in cases {
        let reply = api.post("/v1/webhooks", &api.admin, body.clone()).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, code), "{body}: {}", reply.body);
    }
    let malformed = api
        .raw(
            axum::http::Request::post("/v1/webhooks")
                .header("authorization", format!("Bearer {}", api.admin))
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{\"url\": "))
                .unwrap(),
        )
        .await;
    assert_eq!((malformed.status, malformed.code()), (StatusCode::BAD_REQUEST, "malformed_json"));
    assert_eq!(counts(&api).await, before, "a refused registration writes nothing");
}

#[tokio::test]
async fn webhooks_are_disabled_enabled_and_deleted_and_unknown_ones_are_404() {
    let api = api().await;
    let created = api.post("/v1/webhooks", &api.admin, hook("http://127.0.0.1:9/hook", &["*"])).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/webhooks/{id}");

    let refused = api.call(Method::POST, &format!("{path}/disable"), &api.operator, None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let disabled = api.call(Method::POST, &format!("{path}/disable"), &api.admin, None).await;
    assert_eq!((disabled.status, disabled.body["status"].as_str()), (StatusCode::OK, Some("disabled")));
    let again = api.call(Method::POST, &format!("{path}/disable"), &api.admin, None).await;
    assert_eq!(again.body["status"], "disabled", "disabling twice is no error");
    let enabled = api.call(Method::POST, &format!("{path}/enable"), &api.admin, None).await;
    assert_eq!((enabled.status, enabled.body["status"].as_str()), (StatusCode::OK, Some("active")));

    // A webhook with no deliveries yet: an empty log; a delivery it never had: 404.
    let log = api.get(&format!("{path}/deliveries?status=parked&limit=10"), &api.auditor).await;
    assert_eq!((log.status, &log.body["data"]), (StatusCode::OK, &json!([])), "{}", log.body);
    assert_eq!(log.body["next_cursor"], Value::Null);
    let none = api.get(&format!("{path}/deliveries/1"), &api.auditor).await;
    assert_eq!((none.status, none.code()), (StatusCode::NOT_FOUND, "delivery_not_found"));
    let none = api.call(Method::POST, &format!("{path}/deliveries/1/redeliver"), &api.admin, None).await;
    assert_eq!((none.status, none.code()), (StatusCode::NOT_FOUND, "delivery_not_found"));
    for bad in ["status=lost", "limit=0", "limit=1001", "before=0", "after=3"] {
        let reply = api.get(&format!("{path}/deliveries?{bad}"), &api.auditor).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_query"), "{bad}");
    }

    assert_eq!(api.call(Method::DELETE, &path, &api.operator, None).await.status, StatusCode::FORBIDDEN);
    let deleted = api.call(Method::DELETE, &path, &api.admin, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_eq!(deleted.text, "");
    let actions: Vec<String> = api
        .db
        .connect()
        .await
        .query("SELECT actor || ' ' || action FROM audit_log WHERE entity_type = 'webhook' ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        actions,
        [
            "key:admin webhook.create",
            "key:admin webhook.disable",
            "key:admin webhook.enable",
            "key:admin webhook.delete"
        ]
    );

    // Gone: every route about it is 404 webhook_not_found.
    let gone = [
        api.get(&path, &api.admin).await,
        api.call(Method::DELETE, &path, &api.admin, None).await,
        api.call(Method::POST, &format!("{path}/disable"), &api.admin, None).await,
        api.call(Method::POST, &format!("{path}/enable"), &api.admin, None).await,
        api.get(&format!("{path}/deliveries"), &api.admin).await,
        api.get(&format!("{path}/deliveries/1"), &api.admin).await,
        api.call(Method::POST, &format!("{path}/deliveries/1/redeliver"), &api.admin, None).await,
    ];
    for reply in gone {
        assert_eq!((reply.status, reply.code()), (StatusCode::NOT_FOUND, "webhook_not_found"), "{}", reply.body);
        assert_eq!(reply.body["error"]["details"]["webhook_id"], id.as_str());
    }
    let bad = api.get("/v1/webhooks/not-a-uuid", &api.admin).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid_input"));
    assert!(api.get("/v1/webhooks", &api.admin).await.body.as_array().unwrap().is_empty());
}

/// A local HTTP endpoint that records what it is sent and answers `status`.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

async fn receiver(status: StatusCode) -> Receiver {
    let got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
    let recorded = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let recorded = recorded.clone();
            async move {
                recorded.lock().unwrap().push((headers, body));
                (status, "answer")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url: format!("http://{addr}/hook"), got }
}

impl Receiver {
    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server that dispatches webhooks quickly: retries after about 20 ms, parked after 2 attempts.
async fn dispatching() -> Running {
    let webhooks = WebhookConfig {
        attempts_max: 2,
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        timeout: Duration::from_secs(2),
        poll_interval: Duration::from_millis(20),
        refresh_interval: Duration::from_millis(50),
        lease_poll: Duration::from_millis(50),
    };
    running_with(ServerConfig { key_cache_ttl: Duration::ZERO, webhooks: Some(webhooks), ..ServerConfig::default() })
        .await
}

async fn scrape(addr: SocketAddr, key: &str) -> String {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let request = axum::http::Request::get(format!("http://{addr}/metrics"))
        .header("authorization", format!("Bearer {key}"))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn deliveries_are_signed_logged_parked_and_redelivered_and_metrics_report_them() {
    let Running { api, addr, stop, server } = dispatching().await;
    let good = receiver(StatusCode::OK).await;
    let bad = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    let register = |url: String| {
        let api = &api;
        async move {
            let reply = api.post("/v1/webhooks", &api.admin, hook(&url, &["transfer.*"])).await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
            (reply.body["id"].as_str().unwrap().to_owned(), reply.body["secret"].as_str().unwrap().to_owned())
        }
    };
    let (good_id, good_secret) = register(good.url.clone()).await;
    let (bad_id, _) = register(bad.url.clone()).await;
    api.funded("alice", "10.00").await;

    // The transfer's event (not the accounts'), signed with the endpoint's secret.
    eventually("the delivery", async || good.count() >= 1).await;
    let (headers, body) = good.got.lock().unwrap()[0].clone();
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["type"], "transfer.posted", "{event}");
    assert_eq!(event["payload"]["amount"], "10.00", "{event}");
    let seq = event["seq"].as_i64().unwrap();
    assert_eq!(headers["tally-event-seq"].to_str().unwrap(), seq.to_string());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let signature = headers["tally-signature"].to_str().unwrap();
    tally_relay::signature::verify(&good_secret, signature, &body, now, 300).expect("a valid signature");

    // Logged (once the answer is recorded, just after it came): delivered at the first attempt.
    let log_path = format!("/v1/webhooks/{good_id}/deliveries");
    eventually("the log", async || api.get(&log_path, &api.operator).await.body["data"][0]["status"] == "delivered")
        .await;
    let log = api.get(&log_path, &api.operator).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let delivery = &log.body["data"][0];
    assert_eq!(
        (delivery["seq"].as_i64(), delivery["status"].as_str(), delivery["attempts"].as_i64()),
        (Some(seq), Some("delivered"), Some(1)),
        "{delivery}"
    );
    assert_eq!(delivery["webhook_id"], good_id.as_str());
    assert_eq!(delivery["attempt_log"][0]["status_code"], 200, "{delivery}");
    assert_eq!(delivery["attempt_log"][0]["attempt"], 1);
    assert!(delivery["attempt_log"][0]["at"].as_str().unwrap().ends_with('Z'));
    assert!(delivery["delivered_at"].is_string() && delivery["next_attempt_at"].is_null(), "{delivery}");
    let one = api.get(&format!("/v1/webhooks/{good_id}/deliveries/{seq}"), &api.auditor).await;
    assert_eq!(&one.body, delivery);
    let refused =
        api.call(Method::POST, &format!("/v1/webhooks/{good_id}/deliveries/{seq}/redeliver"), &api.admin, None).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "delivery_not_parked"), "{}", refused.body);
    assert_eq!(refused.body["error"]["details"]["status"], "delivered");

    // The failing endpoint: two attempts, then parked, in its log and on the endpoint.
    let bad_path = format!("/v1/webhooks/{bad_id}");
    eventually("the parking", async || api.get(&bad_path, &api.admin).await.body["parked_seq"] == json!(seq)).await;
    let parked = api.get(&format!("{bad_path}/deliveries?status=parked"), &api.admin).await;
    let delivery = &parked.body["data"][0];
    assert_eq!((delivery["status"].as_str(), delivery["attempts"].as_i64()), (Some("parked"), Some(2)), "{delivery}");
    let attempts = delivery["attempt_log"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|a| a["status_code"] == 500 && a["error"].as_str().unwrap().contains("500")));
    assert_eq!(bad.count(), 2);
    assert_eq!(api.get(&format!("{bad_path}/deliveries?status=delivered"), &api.admin).await.body["data"], json!([]));

    // /metrics of the serving process: its dispatcher's counters and the positions.
    let text = scrape(addr, &api.auditor).await;
    for line in [
        "tally_webhook_deliveries_total{outcome=\"delivered\"} 1".to_owned(),
        "tally_webhook_deliveries_total{outcome=\"failed\"} 1".to_owned(),
        "tally_webhook_deliveries_total{outcome=\"parked\"} 1".to_owned(),
        "tally_webhook_deliveries_parked 1".to_owned(),
        "tally_relay_active{relay=\"webhooks\"} 1".to_owned(),
        "tally_relay_active{relay=\"nats\"} 0".to_owned(),
        "tally_relay_positions_read 1".to_owned(),
        format!("tally_events_newest_seq {seq}"),
        format!("tally_webhook_lag_events{{webhook=\"{good_id}\"}} 0"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    // The parked endpoint is behind by its parked event at least (and by the account events
    // before it, unless it had passed them when they came).
    let prefix = format!("tally_webhook_lag_events{{webhook=\"{bad_id}\"}} ");
    let lag: i64 =
        text.lines().find_map(|l| l.strip_prefix(&prefix)).expect("the parked endpoint's lag").parse().unwrap();
    assert!((1..=seq).contains(&lag), "{lag}");
    assert!(!text.contains("tally_relay_lag_events{relay=\"webhooks\"}"), "the dispatcher's lease has no position");

    // Redelivered by hand: pending again, tried twice more, parked again.
    let again = api.call(Method::POST, &format!("{bad_path}/deliveries/{seq}/redeliver"), &api.operator, None).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    let again = api.call(Method::POST, &format!("{bad_path}/deliveries/{seq}/redeliver"), &api.admin, None).await;
    assert_eq!((again.status, again.body["status"].as_str()), (StatusCode::OK, Some("pending")), "{}", again.body);
    eventually("the second round", async || bad.count() >= 4).await;
    eventually("the parking again", async || {
        api.get(&format!("{bad_path}/deliveries/{seq}"), &api.admin).await.body["attempts"] == 4
    })
    .await;
    let audit: i64 = api
        .db
        .connect()
        .await
        .query_one("SELECT count(*) FROM audit_log WHERE action = 'webhook.redeliver' AND actor = 'key:admin'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(audit, 1);

    stop.unwrap().send(()).unwrap();
    let shutdown = tokio::time::timeout(Duration::from_secs(30), server).await.expect("stops").unwrap().unwrap();
    assert_eq!(shutdown, Shutdown::Complete);
}
