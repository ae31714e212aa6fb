//! Operations: readiness, rate limits, the API description, and the documentation of every code.

use crate::support::*;
use axum::http::StatusCode;
use serde_json::json;
use tally_server::ServerConfig;

#[tokio::test]
async fn readiness_needs_a_key_and_health_does_not() {
    let api = api().await;
    let health = api.get("/healthz", "").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(api.get("/readyz", "").await.status, StatusCode::UNAUTHORIZED);
    let ready = api.get("/readyz", &api.operator).await;
    assert_eq!((ready.status, ready.body["status"].as_str()), (StatusCode::OK, Some("ready")));
    api.shutdown.send(true).unwrap();
    let stopping = api.get("/readyz", &api.operator).await;
    assert_eq!((stopping.status, stopping.code()), (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"));
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after_and_others_are_not_slowed() {
    let config =
        ServerConfig { rate_limit_per_key: 3, key_cache_ttl: std::time::Duration::ZERO, ..ServerConfig::default() };
    let api = api_with(config).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(api.get("/v1/accounts", &api.operator).await);
    }
    let limited = statuses.iter().find(|r| r.status == StatusCode::TOO_MANY_REQUESTS).expect("the limit bites");
    assert_eq!(limited.code(), "rate_limited");
    assert!(limited.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(statuses[0].status, StatusCode::OK);
    // Another key has its own budget.
    assert_eq!(api.get("/v1/accounts", &api.auditor).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_openapi_description_lists_every_route_and_validates() {
    let api = api().await;
    let reply = api.get("/openapi.json", &api.auditor).await;
    assert_eq!(reply.status, StatusCode::OK);
    let paths = reply.body["paths"].as_object().unwrap();
    for path in [
        "/v1/accounts",
        "/v1/accounts/{id_or_code}",
        "/v1/accounts/{id_or_code}/freeze",
        "/v1/accounts/{id_or_code}/balance",
        "/v1/accounts/{id_or_code}/transfers",
        "/v1/transfers",
        "/v1/transfers/batch",
        "/v1/transfers/{id}",
        "/v1/transfers/{id}/post",
        "/v1/transfers/{id}/void",
        "/v1/transfers/{id}/reverse",
        "/v1/audit",
        "/v1/whoami",
        "/v1/reconciliations",
        "/v1/events",
        "/v1/events/stream",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/webhooks",
        "/v1/webhooks/{id}",
        "/v1/webhooks/{id}/disable",
        "/v1/webhooks/{id}/enable",
        "/v1/webhooks/{id}/deliveries",
        "/v1/webhooks/{id}/deliveries/{seq}",
        "/v1/webhooks/{id}/deliveries/{seq}/redeliver",
    ] {
        assert!(paths.contains_key(path), "{path} is described");
    }
    assert!(paths["/v1/webhooks/{id}"]["delete"]["responses"]["204"].is_object(), "DELETE answers 204");
    let schemas = reply.body["components"]["schemas"].as_object().unwrap();
    for schema in [
        "TransferEvent",
        "AccountEvent",
        "CurrencyCreatedEvent",
        "LedgerDayClosedEvent",
        "ReconciliationFinishedEvent",
        "StatementImportedEvent",
        "NewWebhookBody",
        "WebhookView",
        "CreatedWebhookView",
        "DeliveryView",
        "AttemptView",
        "WhoAmIView",
        "RunSummaryView",
    ] {
        assert!(schemas.contains_key(schema), "the schema {schema} is described");
    }
    let created = &paths["/v1/webhooks"]["post"]["responses"]["201"]["content"]["application/json"]["schema"];
    assert_eq!(created["$ref"], "#/components/schemas/CreatedWebhookView", "{created}");
    assert!(schemas["CreatedWebhookView"].to_string().contains("\"secret\""));
    assert!(schemas["WebhookView"]["properties"].get("secret").is_none());
    assert_eq!(reply.body["components"]["securitySchemes"]["bearer"]["scheme"], json!("bearer"));
    // Validated by openapi-spec-validator, which scripts/test installs.
    let file = std::env::temp_dir().join(format!("tally-openapi-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, serde_json::to_vec_pretty(&reply.body).unwrap()).unwrap();
    let output = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("python3 runs (scripts/test installs openapi-spec-validator)");
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the description: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_error_code_is_documented_in_the_readme() {
    let readme = include_str!("../../../../README.md");
    for (code, status) in tally_server::error::CODES {
        assert!(readme.contains(&format!("`{code}`")), "README.md documents `{code}` ({status})");
    }
}

#[tokio::test]
async fn a_request_over_the_time_limit_gets_408_in_the_error_shape_and_long_polls_answer_before_it() {
    let config = ServerConfig {
        request_timeout: std::time::Duration::from_millis(1_500),
        key_cache_ttl: std::time::Duration::ZERO,
        ..ServerConfig::default()
    };
    let api = api_with(config).await;
    // A long-poll asking for 30 s answers (empty) before the 1.5 s limit.
    let started = std::time::Instant::now();
    let poll = api.get("/v1/events?after=1000&wait=30", &api.auditor).await;
    assert_eq!(poll.status, StatusCode::OK, "{}", poll.body);
    assert!(started.elapsed() < std::time::Duration::from_millis(1_500));
    assert_eq!(poll.body["data"], json!([]));
}

#[tokio::test]
async fn a_request_blocked_past_the_time_limit_gets_408_and_changes_nothing() {
    let config = ServerConfig {
        request_timeout: std::time::Duration::from_millis(300),
        key_cache_ttl: std::time::Duration::ZERO,
        ..ServerConfig::default()
    };
    let api = api_with(config).await;
    let id = api.open("alice", "USD", json!({})).await;
    // Hold alice's row, so that freezing her waits.
    let mut client = api.db.connect().await;
    let holder = client.transaction().await.unwrap();
    holder.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", &[&id]).await.unwrap();
    let reply = api.call(axum::http::Method::POST, "/v1/accounts/alice/freeze", &api.admin, None).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::REQUEST_TIMEOUT, "request_timeout"), "{}", reply.body);
    holder.rollback().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(api.get("/v1/accounts/alice", &api.admin).await.body["status"], "active");
}
