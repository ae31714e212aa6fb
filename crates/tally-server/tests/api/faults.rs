//! Reads with the database connection lost, through a fault proxy between the server's store
//! and PostgreSQL: every one answers 503 `database_unavailable` with `Retry-After`, never a 500.

use crate::support::{Api, Reply, api_on};
use axum::http::StatusCode;
use serde_json::json;
use std::time::Duration;
use tally_server::ServerConfig;
use tally_store::Store;
use tally_testkit::{Cut, Fault, FaultProxy, Stage};

/// An API whose store (and reconciliation pool) reach PostgreSQL only through a fault proxy.
/// Keys are cached, so that a request's first database access is the read it makes.
async fn api_through_proxy() -> (Api, FaultProxy) {
    let db = tally_testkit::fresh_database().await;
    let proxy = FaultProxy::start(&db.conninfo).await;
    let store = Store::connect(&proxy.conninfo(), tally_testkit::TEST_POOL_SIZE).expect("pool");
    let config = ServerConfig { key_cache_ttl: Duration::from_secs(60), ..ServerConfig::default() };
    (api_on(db, store, config).await, proxy)
}

fn assert_unavailable(reply: &Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {}", reply.body);
    assert_eq!(reply.code(), "database_unavailable", "{what}: {}", reply.body);
    assert_eq!(reply.headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"), "{what}");
}

#[tokio::test]
async fn a_read_that_loses_its_database_connection_answers_503_database_unavailable() {
    let (api, proxy) = api_through_proxy().await;
    api.funded("alice", "100.00").await;
    let balance = "/v1/accounts/alice/balance";
    let history = "/v1/accounts/alice/transfers";
    let balance_as_of = "/v1/accounts/alice/balance?as_of=2020-01-01T00:00:00Z".to_owned();
    // Each read once while all is well: the key is cached, and each answers.
    for path in [balance, history, &balance_as_of] {
        let reply = api.get(path, &api.admin).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    }

    // The connection lost in the middle of each read: the account look-up, the history query,
    // and reconciliation's point-in-time query (its own pool).
    let reads = [
        (balance, "WHERE a.code = $1"),
        (history, "t.debit_account_id = $1 AND t.seq < $2"),
        (balance_as_of.as_str(), "FROM ledger_days b"),
    ];
    for (path, statement) in reads {
        proxy.arm(Fault::new(Stage::Statement(statement), Cut::Before));
        let reply = api.get(path, &api.admin).await;
        assert!(!proxy.is_armed(), "{path}: the read never sent {statement:?}");
        assert_unavailable(&reply, path);
    }

    // The database unreachable altogether: no connection can be opened.
    proxy.set_reachable(false);
    for path in [balance, history, &balance_as_of] {
        assert_unavailable(&api.get(path, &api.admin).await, path);
    }
    let transfer =
        json!({"id": uuid::Uuid::now_v7(), "from": "bank-alice", "to": "alice", "amount": "1.00", "currency": "USD"});
    let refused = api.post("/v1/transfers", &api.operator, transfer.clone()).await;
    assert_unavailable(&refused, "a transfer");

    // Back: the reads answer again, and the refused transfer, sent again, is applied once.
    proxy.set_reachable(true);
    for path in [balance, history, &balance_as_of] {
        let reply = api.get(path, &api.admin).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    }
    let applied = api.post("/v1/transfers", &api.operator, transfer).await;
    assert_eq!(applied.status, StatusCode::CREATED, "{}", applied.body);
    assert_eq!(api.balance("alice").await, "101.00");
    api.assert_consistent().await;
}

/// `/metrics` reads the relays' positions from the database at each scrape; without the
/// database it still answers, promptly, with everything else (and says the positions are
/// missing), so that a scrape never fails because PostgreSQL is down.
#[tokio::test]
async fn metrics_answer_without_the_relay_positions_while_the_database_is_down() {
    let (api, proxy) = api_through_proxy().await;
    let up = api.get("/metrics", &api.auditor).await;
    assert_eq!(up.status, StatusCode::OK);
    assert!(up.text.lines().any(|l| l == "tally_relay_positions_read 1"), "{}", up.text);
    assert!(up.text.contains("\ntally_events_newest_seq "), "{}", up.text);

    proxy.set_reachable(false);
    let started = std::time::Instant::now();
    let down = api.get("/metrics", &api.auditor).await;
    assert_eq!(down.status, StatusCode::OK, "{}", down.text);
    assert!(started.elapsed() < tally_server::metrics::POSITIONS_WAIT + Duration::from_secs(1));
    assert!(down.text.lines().any(|l| l == "tally_relay_positions_read 0"), "{}", down.text);
    assert!(!down.text.contains("tally_events_newest_seq"), "{}", down.text);
    assert!(down.text.contains("tally_http_requests_total{"), "{}", down.text);
    assert!(down.text.contains("tally_webhook_deliveries_total{outcome=\"parked\"} 0"), "{}", down.text);
    assert!(down.text.ends_with("# EOF\n"), "{}", down.text);
    proxy.set_reachable(true);
}
