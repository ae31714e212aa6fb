//! `/v1/accounts`: open, look up by id or code, list with a cursor, status changes with
//! preconditions, balance and history.

use crate::support::*;
use axum::http::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn opens_an_account_with_a_client_id_and_finds_it_by_id_and_code() {
    let api = api().await;
    let id = Uuid::now_v7();
    let body = json!({"id": id, "code": "wallet:alice", "currency": "EUR", "overdraft_limit": "50.00",
                      "metadata": {"owner": "alice"}});
    let created = api.post("/v1/accounts", &api.admin, body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["id"], json!(id));
    assert_eq!(created.body["overdraft_limit"], "50.00");
    assert_eq!(created.body["balance"], "0.00");
    assert_eq!(created.body["unrestricted"], false);

    // Opening it again with the same fields changes nothing and says so with 200.
    let again = api.post("/v1/accounts", &api.admin, body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, created.body);

    for path in [format!("/v1/accounts/{id}"), "/v1/accounts/wallet:alice".to_owned()] {
        let found = api.get(&path, &api.operator).await;
        assert_eq!(found.status, StatusCode::OK, "{path}");
        assert_eq!(found.body, created.body);
        assert_eq!(found.headers["etag"], "\"1\"", "the version, for If-Match");
    }
    let missing = api.get("/v1/accounts/nobody", &api.operator).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "account_not_found"));

    // The same id with other fields is a conflict.
    let other = api.post("/v1/accounts", &api.admin, json!({"id": id, "currency": "USD"})).await;
    assert_eq!((other.status, other.code()), (StatusCode::CONFLICT, "account_exists_with_different_fields"));
    let taken = api.post("/v1/accounts", &api.admin, json!({"code": "wallet:alice", "currency": "EUR"})).await;
    assert_eq!((taken.status, taken.code()), (StatusCode::CONFLICT, "account_code_taken"));
}

#[tokio::test]
async fn account_creation_is_audited_under_the_key_that_did_it() {
    let api = api().await;
    let id = api.open("alice", "USD", json!({})).await;
    let client = api.db.connect().await;
    let actor: String = client
        .query_one("SELECT actor FROM audit_log WHERE entity_id = $1 AND action = 'account.create'", &[&id.to_string()])
        .await
        .unwrap()
        .get(0);
    assert_eq!(actor, "key:admin");
}

#[tokio::test]
async fn lists_accounts_by_currency_and_status_page_by_page() {
    let api = api().await;
    let mut usd = Vec::new();
    for i in 0..5 {
        usd.push(api.open(&format!("usd-{i}"), "USD", json!({})).await);
    }
    api.open("eur-0", "EUR", json!({})).await;
    usd.sort();
    let first = api.get("/v1/accounts?currency=USD&limit=3", &api.operator).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let ids: Vec<String> =
        first.body["data"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().into()).collect();
    assert_eq!(ids, usd[..3].iter().map(Uuid::to_string).collect::<Vec<_>>());
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let second = api.get(&format!("/v1/accounts?currency=USD&limit=3&cursor={cursor}"), &api.operator).await;
    let ids: Vec<String> =
        second.body["data"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().into()).collect();
    assert_eq!(ids, usd[3..].iter().map(Uuid::to_string).collect::<Vec<_>>());
    assert_eq!(second.body["next_cursor"], json!(null));

    let frozen = api.call(Method::POST, &format!("/v1/accounts/{}/freeze", usd[0]), &api.admin, None).await;
    assert_eq!(frozen.status, StatusCode::OK);
    let page = api.get("/v1/accounts?status=frozen", &api.auditor).await;
    assert_eq!(page.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(page.body["data"][0]["id"], json!(usd[0]));

    for bad in ["limit=0", "limit=1001", "status=sleeping", "cursor=nope", "colour=red"] {
        let reply = api.get(&format!("/v1/accounts?{bad}"), &api.operator).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_query"), "{bad}");
    }
}

#[tokio::test]
async fn status_changes_honour_if_match_and_expected_version() {
    let api = api().await;
    let id = api.funded("alice", "10.00").await;
    let path = |action: &str| format!("/v1/accounts/{id}/{action}");
    let version = api.get(&format!("/v1/accounts/{id}"), &api.admin).await.body["version"].as_i64().unwrap();

    // A stale If-Match: 412, nothing changes.
    let stale = api
        .raw(
            axum::http::Request::post(path("freeze"))
                .header("authorization", format!("Bearer {}", api.admin))
                .header("if-match", format!("\"{}\"", version - 1))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!((stale.status, stale.code()), (StatusCode::PRECONDITION_FAILED, "precondition_failed"));
    assert_eq!(stale.body["error"]["details"]["actual"], version);
    // A stale expected_version in the body: 409.
    let conflict = api.post(&path("freeze"), &api.admin, json!({"expected_version": version + 5})).await;
    assert_eq!((conflict.status, conflict.code()), (StatusCode::CONFLICT, "version_conflict"));
    assert_eq!(api.get(&format!("/v1/accounts/{id}"), &api.admin).await.body["status"], "active");

    let frozen = api
        .raw(
            axum::http::Request::post(path("freeze"))
                .header("authorization", format!("Bearer {}", api.admin))
                .header("if-match", format!("\"{version}\""))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(frozen.status, StatusCode::OK, "{}", frozen.body);
    assert_eq!(frozen.body["status"], "frozen");
    assert_eq!(frozen.headers["etag"], format!("\"{}\"", version + 1));

    // A frozen account refuses transfers with a rule rejection.
    let refused = api.post("/v1/transfers", &api.operator, transfer("alice", "bank-alice", "1.00")).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::UNPROCESSABLE_ENTITY, "account_frozen"));

    assert_eq!(api.call(Method::POST, &path("unfreeze"), &api.admin, None).await.status, StatusCode::OK);
    // Not empty: cannot close.
    let not_empty = api.call(Method::POST, &path("close"), &api.admin, None).await;
    assert_eq!((not_empty.status, not_empty.code()), (StatusCode::UNPROCESSABLE_ENTITY, "account_not_empty"));
    let back = api.post("/v1/transfers", &api.operator, transfer("alice", "bank-alice", "10.00")).await;
    assert_eq!(back.status, StatusCode::CREATED, "{}", back.body);
    let closed = api.call(Method::POST, &path("close"), &api.admin, None).await;
    assert_eq!((closed.status, closed.body["status"].as_str()), (StatusCode::OK, Some("closed")));
    let reopen = api.call(Method::POST, &path("unfreeze"), &api.admin, None).await;
    assert_eq!((reopen.status, reopen.code()), (StatusCode::UNPROCESSABLE_ENTITY, "account_status_transition_invalid"));
    api.assert_consistent().await;
}

#[tokio::test]
async fn balance_and_history_newest_first_with_a_cursor() {
    let api = api().await;
    api.funded("alice", "100.00").await;
    api.open("shop", "USD", json!({})).await;
    for amount in ["1.00", "2.00", "3.00"] {
        let reply = api.post("/v1/transfers", &api.operator, transfer("alice", "shop", amount)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    assert_eq!(api.balance("alice").await, "94.00");
    assert_eq!(api.balance("shop").await, "6.00");

    let first = api.get("/v1/accounts/alice/transfers?limit=2", &api.operator).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let amounts: Vec<&str> =
        first.body["data"].as_array().unwrap().iter().map(|e| e["transfer"]["amount"].as_str().unwrap()).collect();
    assert_eq!(amounts, ["3.00", "2.00"]);
    assert_eq!(first.body["data"][0]["direction"], "debit");
    assert_eq!(first.body["data"][0]["actor"], "key:operator");
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let second = api.get(&format!("/v1/accounts/alice/transfers?limit=2&cursor={cursor}"), &api.operator).await;
    let entries = second.body["data"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["transfer"]["amount"], "1.00");
    assert_eq!(entries[1]["direction"], "credit", "the funding transfer");
}

/// An account opened, looked up and replayed (`Idempotency-Key`) reads as the same JSON, byte
/// for byte: the same fields in the same order.
#[tokio::test]
async fn an_account_reads_the_same_from_its_creation_a_replay_and_a_look_up() {
    let api = api().await;
    let body = json!({"code": "wallet:alice", "currency": "EUR", "overdraft_limit": "50.00", "metadata": {"tier": 2}});
    let create = || {
        axum::http::Request::post("/v1/accounts")
            .header("authorization", format!("Bearer {}", api.admin))
            .header("content-type", "application/json")
            .header("idempotency-key", "open-alice")
            .body(axum::body::Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    };
    let created = api.raw(create()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert!(created.text.starts_with(r#"{"id":"#), "{}", created.text);
    let replayed = api.raw(create()).await;
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
    let found = api.get("/v1/accounts/wallet:alice", &api.operator).await;
    let listed = api.get("/v1/accounts", &api.operator).await;
    let listed = listed.text.strip_prefix(r#"{"data":["#).and_then(|rest| rest.split_once("]"));
    for (what, text) in [("replay", replayed.text.as_str()), ("GET", found.text.as_str())] {
        assert_eq!(text, created.text, "{what}");
    }
    assert_eq!(listed.map(|(first, _)| first), Some(created.text.as_str()), "the listing");
}
