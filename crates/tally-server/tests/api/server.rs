//! A real server on a loopback port: HTTP/1.1 keep-alive and HTTP/2, and graceful shutdown with
//! requests in flight.

use crate::support::*;
use axum::http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tally_server::{ServerConfig, Shutdown};

/// A server on a loopback port (`serve`, with its relays), on the API's database and engine.
pub(crate) struct Running {
    pub(crate) api: Api,
    pub(crate) addr: SocketAddr,
    pub(crate) stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub(crate) server: tokio::task::JoinHandle<std::io::Result<Shutdown>>,
}

async fn running() -> Running {
    running_with(ServerConfig { key_cache_ttl: std::time::Duration::ZERO, ..ServerConfig::default() }).await
}

pub(crate) async fn running_with(config: ServerConfig) -> Running {
    let api = api().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server =
        tokio::spawn(tally_server::serve(listener, api.db.store.clone(), api.engine.clone(), config, None, async {
            let _ = stopped.await;
        }));
    Running { api, addr, stop: Some(stop), server }
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    key: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let builder =
        Request::builder().uri(format!("http://{addr}{path}")).header("authorization", format!("Bearer {key}"));
    let request = match body {
        Some(body) => builder
            .method("POST")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap()))),
        None => builder.method("GET").body(Full::new(Bytes::new())),
    }
    .unwrap();
    let response = client.request(request).await.expect("a response");
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn serves_http1_and_http2_and_batches_concurrent_single_transfers() {
    let server = running().await;
    let api = &server.api;
    api.funded("alice", "1000.00").await;
    api.open("shop", "USD", json!({})).await;
    let http1 = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let http2 = Client::builder(TokioExecutor::new()).http2_only(true).build_http::<Full<Bytes>>();
    let (status, body) = send(&http2, server.addr, &api.operator, "/v1/accounts/alice/balance", None).await;
    assert_eq!((status, body["balance"].as_str()), (StatusCode::OK, Some("1000.00")));

    let batches_before = api.engine.stats().batches;
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = if i % 2 == 0 { http1.clone() } else { http2.clone() };
        let (addr, key) = (server.addr, api.operator.clone());
        requests.spawn(async move {
            send(&client, addr, &key, "/v1/transfers", Some(transfer("alice", "shop", "1.00"))).await
        });
    }
    while let Some(result) = requests.join_next().await {
        let (status, body) = result.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let batches = api.engine.stats().batches - batches_before;
    assert!(batches < 200, "concurrent requests share batches: {batches} batches for 200 transfers");
    assert_eq!(api.balance("shop").await, "200.00");

    let (status, text) = {
        let request = Request::get(format!("http://{}/metrics", server.addr))
            .header("authorization", format!("Bearer {}", api.auditor))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = http1.request(request).await.unwrap();
        (
            response.status(),
            String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap(),
        )
    };
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("tally_transfer_results_total{code=\"ok\"} 200"), "{text}");
    assert!(text.contains("tally_engine_queue_depth"), "{text}");
    api.assert_consistent().await;
}

/// What a Prometheus server reads: `/metrics` from a real server, parsed by the reference
/// parser (Python's `prometheus_client`, which scripts/test installs) for the format its content
/// type declares; every sample belongs to a family described by `# HELP` and `# TYPE`.
const CHECK_EXPOSITION: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families as prometheus_text
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_text
content_type, text = sys.argv[1], sys.stdin.read()
parse = openmetrics_text if content_type.startswith("application/openmetrics-text") else prometheus_text
names = []
for family in parse(text):
    for sample in family.samples:
        names.append(sample.name)
        assert family.type != "unknown" and family.documentation, \
            f"sample {sample.name} is in no family with HELP and TYPE (family {family.name}, type {family.type})"
for name in ["tally_http_requests_total", "tally_transfer_results_total", "tally_events_newest_seq",
             "tally_relay_delivered_seq", "tally_relay_lag_events", "tally_webhook_lag_events",
             "tally_webhook_deliveries_parked", "tally_relay_published_total", "tally_relay_duplicates_total",
             "tally_webhook_deliveries_total", "tally_relay_active", "tally_relay_positions_read"]:
    assert name in names, (name, names)
print(len(names))
"#;

#[tokio::test]
async fn the_metrics_exposition_parses_and_describes_every_sample() {
    use std::io::Write;
    let server = running().await;
    let api = &server.api;
    api.funded("alice", "10.00").await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let (status, _) = send(&client, server.addr, &api.operator, "/v1/accounts/alice/balance", None).await;
    assert_eq!(status, StatusCode::OK);
    // A NATS relay's cursor, as a relay in another process leaves it, and an active webhook: each
    // has its position and lag on /metrics.
    api.db
        .connect()
        .await
        .execute("INSERT INTO relay_cursors (name, delivered_seq, holder) VALUES ('nats:TALLY', 1, 'elsewhere:1')", &[])
        .await
        .unwrap();
    let (status, _) = send(
        &client,
        server.addr,
        &api.admin,
        "/v1/webhooks",
        Some(json!({"url": "http://127.0.0.1:9/hook", "event_types": ["account.frozen"], "after_seq": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let request = Request::get(format!("http://{}/metrics", server.addr))
        .header("authorization", format!("Bearer {}", api.auditor))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    let mut python = std::process::Command::new("python3")
        .args(["-c", CHECK_EXPOSITION, &content_type])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test installs prometheus-client)");
    python.stdin.take().unwrap().write_all(&text).unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{content_type}: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&text)
    );
}

#[tokio::test]
async fn graceful_shutdown_answers_every_request_in_flight_and_loses_nothing() {
    let mut server = running().await;
    server.api.funded("alice", "1000.00").await;
    server.api.open("shop", "USD", json!({})).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..300 {
        let (client, addr, key) = (client.clone(), server.addr, server.api.operator.clone());
        requests.spawn(async move {
            let body = transfer("alice", "shop", "1.00");
            let request = Request::post(format!("http://{addr}/v1/transfers"))
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())))
                .unwrap();
            (body["id"].as_str().unwrap().to_owned(), client.request(request).await.map(|r| r.status()))
        });
    }
    // Stop once the first of them have committed, with the rest in flight.
    let committed = server.api.engine.stats().transfers;
    while server.api.engine.stats().transfers < committed + 10 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    server.stop.take().unwrap().send(()).unwrap();
    let mut acknowledged = Vec::new();
    while let Some(result) = requests.join_next().await {
        match result.unwrap() {
            (id, Ok(StatusCode::CREATED)) => acknowledged.push(id),
            (_, Ok(status)) => panic!("an accepted request got {status}"),
            // Not accepted before the listener closed: the client may retry elsewhere.
            (_, Err(_)) => {}
        }
    }
    tokio::time::timeout(std::time::Duration::from_secs(30), &mut server.server)
        .await
        .expect("the server stops")
        .unwrap()
        .map(|shutdown| assert_eq!(shutdown, Shutdown::Complete))
        .expect("cleanly");
    assert!(!acknowledged.is_empty(), "some requests were in flight");
    // Every acknowledged transfer is in the journal, and nothing else moved money.
    let client = server.api.db.connect().await;
    let ids: Vec<uuid::Uuid> = acknowledged.iter().map(|id| id.parse().unwrap()).collect();
    let found: i64 =
        client.query_one("SELECT count(*) FROM transfers WHERE id = ANY($1)", &[&ids]).await.unwrap().get(0);
    assert_eq!(found as usize, acknowledged.len());
    let posted: i64 = client
        .query_one("SELECT count(*) FROM transfers WHERE status = 'posted' AND amount = 100", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(posted as usize, acknowledged.len(), "no transfer committed without its answer");
    server.api.assert_consistent().await;
}

/// A batch that cannot finish (an SQL client holds its account's row lock and does not let go)
/// does not hold a shutdown up: at the bound the server stops, the batch is rolled back, and its
/// caller is told the outcome is unknown, so that a retry with the same id applies it once.
#[tokio::test]
async fn shutdown_is_bounded_and_a_stuck_transfer_is_answered_outcome_unknown() {
    let bound = Duration::from_secs(2);
    let config = ServerConfig { key_cache_ttl: Duration::ZERO, shutdown_timeout: bound, ..ServerConfig::default() };
    let mut server = running_with(config).await;
    server.api.funded("alice", "1000.00").await;
    server.api.open("shop", "USD", json!({})).await;
    // An SQL client that locks alice's row and then sits in its transaction.
    let mut blocker = server.api.db.connect().await;
    let blocking = blocker.transaction().await.unwrap();
    blocking.execute("SELECT 1 FROM accounts WHERE code = 'alice' FOR UPDATE", &[]).await.unwrap();

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body = transfer("alice", "shop", "7.00");
    let id: uuid::Uuid = body["id"].as_str().unwrap().parse().unwrap();
    let request = {
        let (client, addr, key, body) = (client.clone(), server.addr, server.api.operator.clone(), body.clone());
        tokio::spawn(async move { send(&client, addr, &key, "/v1/transfers", Some(body)).await })
    };
    while server.api.engine.stats().queued_transfers == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = Instant::now();
    server.stop.take().unwrap().send(()).unwrap();
    let shutdown = tokio::time::timeout(bound * 3, &mut server.server)
        .await
        .expect("the shutdown is bounded")
        .unwrap()
        .expect("the server stops");
    let took = stopped.elapsed();
    assert_eq!(shutdown, Shutdown::Abandoned);
    assert!(took <= bound + Duration::from_millis(500), "the shutdown took {took:?}, bound {bound:?}");
    let (status, answer) = request.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "outcome_unknown", "{answer}");

    // The abandoned batch rolls back once PostgreSQL sees its connection gone; then nothing of
    // it is left, and a retry with the same id applies the transfer exactly once.
    blocking.rollback().await.unwrap();
    let watcher = server.api.db.connect().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND xact_start IS NOT NULL
                 AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the abandoned batch's transaction is still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let found: i64 = watcher.query_one("SELECT count(*) FROM transfers WHERE id = $1", &[&id]).await.unwrap().get(0);
    assert_eq!(found, 0, "the abandoned batch was rolled back");
    let engine = tally_engine::Engine::new(server.api.db.store.clone());
    let request: tally_core::TransferRequest = {
        let from = server.api.db.store.require_account("alice").await.unwrap().account.id;
        let to = server.api.db.store.require_account("shop").await.unwrap().account.id;
        tally_core::TransferRequest::posted(tally_core::TransferId(id), from, to, 700)
    };
    let outcome = engine.submit_one(tally_engine::Submission { request, actor: "test".into() }).await.unwrap();
    assert_eq!(outcome.result, tally_core::TransferResult::Ok);
    engine.shutdown().await;
    server.api.assert_consistent().await;
}
