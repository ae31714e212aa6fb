//! `/v1/reconciliations` and balances `as_of`: a past day written with the store's clock set
//! back, then reconciled and read over the API.

use crate::support::*;
use axum::http::StatusCode;
use serde_json::json;
use tally_core::Timestamp;
use tally_store::Role;

/// 2026-03-10T10:00:00Z in Tally's microseconds.
const MARCH_10_AT_10: i64 = 1_773_136_800_000_000;
const HOUR: i64 = 3_600_000_000;

#[tokio::test]
async fn a_day_is_reconciled_over_the_api_and_its_report_read_as_json_csv_and_html() {
    let api = api().await;
    api.db.store.set_clock(Timestamp(MARCH_10_AT_10));
    api.funded("wallet", "25.00").await;
    api.db.store.set_clock(Timestamp(MARCH_10_AT_10 + 26 * HOUR));

    let reply = api.post("/v1/reconciliations", &api.auditor, json!({"date": "2026-03-10"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "clean");
    assert_eq!(reply.body["day"], "2026-03-10");
    assert_eq!(reply.body["report"]["transfers"], 1);
    assert_eq!(reply.body["report"]["actor"], "key:auditor");
    assert_eq!(reply.body["report"]["currencies"][0]["posted_volume"], "25.00");

    let stored = api.get("/v1/reconciliations/2026-03-10", &api.operator).await;
    assert_eq!(stored.status, StatusCode::OK);
    assert_eq!(stored.body["run_id"], reply.body["run_id"]);
    assert_eq!(stored.body["report"], reply.body["report"]);

    let csv = api.get("/v1/reconciliations/2026-03-10?format=csv", &api.auditor).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert!(csv.body.as_str().unwrap().starts_with("check,subject,account_id"), "{}", csv.body);
    let html = api.get("/v1/reconciliations/2026-03-10?format=html", &api.auditor).await;
    assert_eq!(html.headers["content-type"], "text/html; charset=utf-8");
    let page = html.body.as_str().unwrap();
    assert!(page.contains("<svg") && page.contains("2026-03-10"), "{page}");

    // The balance as of a time: before the transfer, after it, from the day's snapshot.
    let before = api.get("/v1/accounts/wallet/balance?as_of=2026-03-10T09:59:59Z", &api.admin).await;
    assert_eq!((before.status, before.body["balance"].as_str()), (StatusCode::OK, Some("0.00")));
    let after = api.get("/v1/accounts/wallet/balance?as_of=2026-03-11T01:00:00%2B01:00", &api.admin).await;
    assert_eq!(after.body["balance"], "25.00", "{}", after.body);
    assert_eq!(after.body["snapshot_day"], "2026-03-10");
    assert_eq!(after.body["as_of"], "2026-03-11T00:00:00.000000Z");
    assert!(after.body.get("version").is_none());
    assert_eq!(api.get("/v1/accounts/wallet/balance", &api.admin).await.body["version"], 2);
}

#[tokio::test]
async fn reconciliation_requests_that_cannot_be_served_get_their_codes() {
    let api = api().await;
    api.db.store.set_clock(Timestamp(MARCH_10_AT_10));
    let wallet = api.funded("wallet", "1.00").await;
    let reader = api.key("reader", Role::Reader, vec![wallet]).await;

    let cases = [
        ("POST", "/v1/reconciliations", json!({"date": "2026-03-10"}), StatusCode::CONFLICT, "day_not_closed"),
        ("POST", "/v1/reconciliations", json!({"date": "2026-02-30"}), StatusCode::BAD_REQUEST, "day_invalid"),
        ("POST", "/v1/reconciliations", json!({"day": "2026-03-09"}), StatusCode::BAD_REQUEST, "invalid_body"),
        ("GET", "/v1/reconciliations/2026-03-09", json!(null), StatusCode::NOT_FOUND, "reconciliation_not_found"),
        ("GET", "/v1/reconciliations/yesterday", json!(null), StatusCode::BAD_REQUEST, "day_invalid"),
        ("GET", "/v1/reconciliations/2026-03-09?format=pdf", json!(null), StatusCode::BAD_REQUEST, "invalid_query"),
        (
            "GET",
            "/v1/accounts/wallet/balance?as_of=2026-03-10T12:00:00Z",
            json!(null),
            StatusCode::UNPROCESSABLE_ENTITY,
            "as_of_in_future",
        ),
        ("GET", "/v1/accounts/wallet/balance?as_of=yesterday", json!(null), StatusCode::BAD_REQUEST, "time_invalid"),
    ];
    for (method, path, body, status, code) in cases {
        let reply = match method {
            "POST" => api.post(path, &api.operator, body).await,
            _ => api.get(path, &api.operator).await,
        };
        assert_eq!((reply.status, reply.code()), (status, code), "{method} {path}: {}", reply.body);
    }
    // Readers see balances, not reconciliations.
    let refused = api.post("/v1/reconciliations", &reader, json!({"date": "2026-03-09"})).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(api.get("/v1/reconciliations/2026-03-09", &reader).await.status, StatusCode::FORBIDDEN);
    let own = api.get("/v1/accounts/wallet/balance?as_of=2026-03-10T09:00:00Z", &reader).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    // Nothing was run or stored by the refusals.
    let client = api.db.connect().await;
    let runs: i64 = client.query_one("SELECT count(*) FROM reconciliation_runs", &[]).await.unwrap().get(0);
    assert_eq!(runs, 0);
}
