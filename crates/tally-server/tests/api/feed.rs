//! `/v1/audit`, `/v1/events` (pages and long-poll) and `/v1/events/stream` (server-sent events).

use crate::support::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use std::time::{Duration, Instant};
use tower::ServiceExt;
use uuid::Uuid;

#[tokio::test]
async fn audit_pages_name_the_key_behind_each_change() {
    let api = api().await;
    api.funded("alice", "1.00").await;
    let first = api.get("/v1/audit?limit=2", &api.auditor).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let rows = first.body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let rest = api.get(&format!("/v1/audit?after={cursor}"), &api.auditor).await;
    let actors: Vec<&str> =
        rows.iter().chain(rest.body["data"].as_array().unwrap()).map(|r| r["actor"].as_str().unwrap()).collect();
    assert!(actors.contains(&"key:admin"), "{actors:?}");
    assert!(actors.contains(&"key:operator"), "the transfer batch is audited under the operator: {actors:?}");
}

/// A long-poll of `path` as the auditor, running while the test goes on; its page when it ends.
fn long_poll(api: &Api, path: String) -> tokio::task::JoinHandle<serde_json::Value> {
    let router = api.router.clone();
    let key = api.auditor.clone();
    tokio::spawn(async move {
        let request = Request::get(path).header("authorization", format!("Bearer {key}")).body(Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
    })
}

#[tokio::test]
async fn events_long_poll_wakes_when_an_event_commits() {
    let api = api().await;
    api.open("alice", "USD", json!({})).await;
    let latest = api.get("/v1/events", &api.auditor).await;
    let cursor: i64 = latest.body["next_cursor"].as_str().unwrap().parse().unwrap();
    assert!(cursor >= 1);

    let started = Instant::now();
    let waiting = long_poll(&api, format!("/v1/events?after={cursor}&wait=10"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.open("bob", "USD", json!({})).await;
    let page = waiting.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(8), "woken by the event, not the timeout");
    assert_eq!(page["data"][0]["type"], "account.created");
    assert_eq!(page["data"][0]["seq"], cursor + 1);

    // Nothing new: the long-poll returns empty after its wait, with the same cursor.
    let empty = api.get(&format!("/v1/events?after={}&wait=1", cursor + 1), &api.auditor).await;
    assert_eq!(empty.body["data"], json!([]));
    assert_eq!(empty.body["next_cursor"], json!((cursor + 1).to_string()));
    let too_long = api.get("/v1/events?wait=31", &api.auditor).await;
    assert_eq!(too_long.code(), "invalid_query");
}

#[tokio::test]
async fn the_event_stream_resumes_after_last_event_id_and_ends_on_shutdown() {
    let api = api().await;
    for name in ["a", "b", "c"] {
        api.open(name, "USD", json!({})).await;
    }
    let request = Request::get("/v1/events/stream")
        .header("authorization", format!("Bearer {}", api.auditor))
        .header("last-event-id", "1")
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains("id: 3") {
        assert!(Instant::now() < deadline, "events 2 and 3 arrive: {text}");
        let frame =
            tokio::time::timeout(Duration::from_secs(5), body.frame()).await.expect("a frame").unwrap().unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(!text.contains("id: 1\n"), "resumes after Last-Event-ID: {text}");
    assert!(text.contains("id: 2\n") && text.contains("event: account.created"), "{text}");
    // Shutting down ends the stream.
    api.shutdown.send(true).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match body.frame().await {
                None => return,
                Some(Ok(_)) => continue,
                Some(Err(_)) => return,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the stream ended after shutdown");
}

/// Events speak the API's units: a transfer event's payload is the transfer as
/// `GET /v1/transfers/{id}` shows it (its `transfer`, as the event left it), whoever wrote it (the engine, or an
/// SQL client through `compat.transfer_money`); an account event's is the account as
/// `GET /v1/accounts/{id}` shows it.
#[tokio::test]
async fn event_payloads_are_transfers_and_accounts_as_the_api_shows_them() {
    let api = api().await;
    api.funded("alice", "10.00").await;
    let hold = json!({"id": Uuid::now_v7(), "from": "alice", "to": "bank-alice", "amount": "2.50", "currency": "USD",
                      "pending": true, "timeout_seconds": 600});
    assert_eq!(api.post("/v1/transfers", &api.operator, hold.clone()).await.status, StatusCode::CREATED);
    let hold_id = hold["id"].as_str().unwrap();
    let post = api.post(&format!("/v1/transfers/{hold_id}/post"), &api.operator, json!({"amount": "1.00"})).await;
    assert_eq!(post.status, StatusCode::CREATED, "{}", post.body);
    let client = api.db.connect().await;
    client.execute("SELECT compat.transfer_money('bank-alice', 'alice', 1.25, 'user-1')", &[]).await.unwrap();

    let page = api.get("/v1/events?limit=1000", &api.auditor).await;
    let events = page.body["data"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "account.created",
            "account.created",
            "transfer.posted",
            "transfer.pending",
            "transfer.post_pending",
            "transfer.posted"
        ]
    );
    for event in events {
        let (id, payload) = (event["entity_id"].as_str().unwrap(), &event["payload"]);
        let now = if event["type"] == "account.created" {
            api.get(&format!("/v1/accounts/{id}"), &api.auditor).await.body
        } else {
            api.get(&format!("/v1/transfers/{id}"), &api.auditor).await.body["transfer"].clone()
        };
        let keys = |value: &serde_json::Value| value.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(payload), keys(&now), "{event}");
        assert_eq!((&payload["id"], &payload["created_at"]), (&now["id"], &now["created_at"]), "{event}");
        match event["type"].as_str().unwrap() {
            "account.created" => assert_eq!(payload["balance"], "0.00", "as created: {event}"),
            "transfer.pending" => {
                // The hold as it was placed; it has been posted since.
                assert_eq!((payload["status"].as_str(), now["status"].as_str()), (Some("pending"), Some("posted")));
                assert_eq!((payload["amount"].as_str(), payload["completed_at"].as_str()), (Some("2.50"), None));
            }
            _ => assert_eq!(payload, &now, "{event}"),
        }
    }
    assert_eq!(events[5]["payload"]["amount"], "1.25", "an SQL client's transfer, in decimal");
    assert!(events[0]["payload"]["created_at"].as_str().unwrap().ends_with('Z'), "RFC 3339: {}", events[0]);
}

/// `next_cursor` never points past the newest event: `after` beyond it answers the newest
/// event's position, and a long-poll from there wakes on the next event.
#[tokio::test]
async fn an_events_cursor_beyond_the_newest_event_answers_the_newest_position() {
    let api = api().await;
    let empty = api.get("/v1/events?after=100", &api.auditor).await;
    assert_eq!((empty.body["data"].clone(), empty.body["next_cursor"].as_str()), (json!([]), Some("0")));
    api.funded("alice", "1.00").await;
    let newest = api.get("/v1/events", &api.auditor).await.body["data"].as_array().unwrap().len() as i64;
    assert_eq!(newest, 3);
    let beyond = api.get("/v1/events?after=100", &api.auditor).await;
    assert_eq!(beyond.body["next_cursor"], json!(newest.to_string()));

    let waiting = long_poll(&api, "/v1/events?after=100&wait=10".into());
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.open("bob", "USD", json!({})).await;
    let page = waiting.await.unwrap();
    assert_eq!(page["data"][0]["seq"], newest + 1, "{page}");
    assert_eq!(page["next_cursor"], json!((newest + 1).to_string()));
}
