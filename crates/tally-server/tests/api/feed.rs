//! `/v1/audit`, `/v1/events` (pages and long-poll) and `/v1/events/stream` (server-sent events).

use crate::support::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use std::time::{Duration, Instant};
use tower::ServiceExt;

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

#[tokio::test]
async fn events_long_poll_wakes_when_an_event_commits() {
    let api = api().await;
    api.open("alice", "USD", json!({})).await;
    let latest = api.get("/v1/events", &api.auditor).await;
    let cursor: i64 = latest.body["next_cursor"].as_str().unwrap().parse().unwrap();
    assert!(cursor >= 1);

    let started = Instant::now();
    let waiting = {
        let router = api.router.clone();
        let key = api.auditor.clone();
        tokio::spawn(async move {
            let request = Request::get(format!("/v1/events?after={cursor}&wait=10"))
                .header("authorization", format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        })
    };
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
