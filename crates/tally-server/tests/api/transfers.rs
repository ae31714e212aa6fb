//! `/v1/transfers`: one, batches (atomic or not), holds, reversals, look-ups and listings.

use crate::support::*;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use tally_store::Role;
use uuid::Uuid;

#[tokio::test]
async fn a_transfer_moves_money_once_and_a_retry_is_a_replay() {
    let api = api().await;
    api.funded("alice", "100.00").await;
    let shop = api.open("shop", "USD", json!({})).await;
    // `to` by id, `from` by code.
    let body = json!({"id": Uuid::now_v7(), "from": "alice", "to": shop, "amount": "12.34", "currency": "USD",
                      "reference": "order-1", "metadata": {"order": 1}});
    let first = api.post("/v1/transfers", &api.operator, body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["amount"], "12.34");
    assert_eq!(first.body["status"], "posted");
    assert_eq!(first.body["to"], json!(shop));
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = api.post("/v1/transfers", &api.operator, body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body, first.body);
    assert_eq!(api.balance("alice").await, "87.66");
    assert_eq!(api.balance("shop").await, "12.34");
    api.assert_consistent().await;
}

#[tokio::test]
async fn a_refused_transfer_is_recorded_and_its_retry_gets_the_same_answer() {
    let api = api().await;
    api.funded("alice", "5.00").await;
    api.open("shop", "USD", json!({})).await;
    let body = transfer("alice", "shop", "6.00");
    let refused = api.post("/v1/transfers", &api.operator, body.clone()).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::UNPROCESSABLE_ENTITY, "insufficient_funds"));
    assert_eq!(refused.body["error"]["details"]["transfer_id"], body["id"]);
    // Funds arrive, but the id was decided: the same answer.
    let top_up = api.post("/v1/transfers", &api.operator, transfer("bank-alice", "alice", "10.00")).await;
    assert_eq!(top_up.status, StatusCode::CREATED);
    let retry = api.post("/v1/transfers", &api.operator, body.clone()).await;
    assert_eq!((retry.status, retry.code()), (StatusCode::UNPROCESSABLE_ENTITY, "insufficient_funds"));
    let shown = api.get(&format!("/v1/transfers/{}", body["id"].as_str().unwrap()), &api.auditor).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!((shown.body["result"].as_str(), shown.body["status"].as_u64()), (Some("insufficient_funds"), Some(422)));
    assert_eq!(shown.body["transfer"], Value::Null);
    assert_eq!(api.balance("shop").await, "0.00");
    api.assert_consistent().await;
}

#[tokio::test]
async fn version_preconditions_refuse_a_stale_transfer_with_409() {
    let api = api().await;
    api.funded("alice", "10.00").await;
    api.open("shop", "USD", json!({})).await;
    let version = api.get("/v1/accounts/alice", &api.operator).await.body["version"].as_i64().unwrap();
    let mut stale = transfer("alice", "shop", "1.00");
    stale["expected_from_version"] = json!(version - 1);
    let reply = api.post("/v1/transfers", &api.operator, stale).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::CONFLICT, "version_conflict"));
    let mut fresh = transfer("alice", "shop", "1.00");
    fresh["expected_from_version"] = json!(version);
    assert_eq!(api.post("/v1/transfers", &api.operator, fresh).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_hold_is_posted_in_part_and_a_retried_post_without_an_id_is_recognised() {
    let api = api().await;
    api.funded("alice", "100.00").await;
    api.open("shop", "USD", json!({})).await;
    let mut hold = transfer("alice", "shop", "40.00");
    hold["pending"] = json!(true);
    hold["timeout_seconds"] = json!(3600);
    let held = api.post("/v1/transfers", &api.operator, hold.clone()).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    assert_eq!(held.body["status"], "pending");
    assert!(held.body["expires_at"].is_string());
    let account = api.get("/v1/accounts/alice", &api.operator).await.body;
    assert_eq!((account["balance"].as_str(), account["available"].as_str()), (Some("100.00"), Some("60.00")));

    let id = hold["id"].as_str().unwrap();
    let posted = api.post(&format!("/v1/transfers/{id}/post"), &api.operator, json!({"amount": "25.00"})).await;
    assert_eq!(posted.status, StatusCode::CREATED, "{}", posted.body);
    assert_eq!((posted.body["kind"].as_str(), posted.body["amount"].as_str()), (Some("post_pending"), Some("25.00")));
    let retried = api.post(&format!("/v1/transfers/{id}/post"), &api.operator, json!({"amount": "25.00"})).await;
    assert_eq!(retried.status, StatusCode::OK, "a retry without an id is the same post: {}", retried.body);
    assert_eq!(retried.body["id"], posted.body["id"]);
    let void = api.call(Method::POST, &format!("/v1/transfers/{id}/void"), &api.operator, None).await;
    assert_eq!((void.status, void.code()), (StatusCode::UNPROCESSABLE_ENTITY, "pending_already_posted"));
    assert_eq!(api.balance("alice").await, "75.00");
    assert_eq!(api.balance("shop").await, "25.00");
    let original = api.get(&format!("/v1/transfers/{id}"), &api.operator).await;
    assert_eq!(original.body["transfer"]["status"], "posted");
    api.assert_consistent().await;
}

#[tokio::test]
async fn a_hold_is_voided_and_a_posted_transfer_reversed_once() {
    let api = api().await;
    api.funded("alice", "100.00").await;
    api.open("shop", "USD", json!({})).await;
    let mut hold = transfer("alice", "shop", "40.00");
    hold["pending"] = json!(true);
    assert_eq!(api.post("/v1/transfers", &api.operator, hold.clone()).await.status, StatusCode::CREATED);
    let id = hold["id"].as_str().unwrap();
    let void_id = Uuid::now_v7();
    let voided = api.post(&format!("/v1/transfers/{id}/void"), &api.operator, json!({"id": void_id})).await;
    assert_eq!((voided.status, voided.body["id"].clone()), (StatusCode::CREATED, json!(void_id)));
    let amount = api.post(&format!("/v1/transfers/{id}/void"), &api.operator, json!({"amount": "1.00"})).await;
    assert_eq!((amount.status, amount.code()), (StatusCode::BAD_REQUEST, "invalid_body"));

    let sale = transfer("alice", "shop", "30.00");
    assert_eq!(api.post("/v1/transfers", &api.operator, sale.clone()).await.status, StatusCode::CREATED);
    let sale_id = sale["id"].as_str().unwrap();
    let reversed = api.call(Method::POST, &format!("/v1/transfers/{sale_id}/reverse"), &api.operator, None).await;
    assert_eq!(reversed.status, StatusCode::CREATED, "{}", reversed.body);
    assert_eq!(reversed.body["from"], api.get("/v1/accounts/shop", &api.admin).await.body["id"]);
    let twice =
        api.post(&format!("/v1/transfers/{sale_id}/reverse"), &api.operator, json!({"id": Uuid::now_v7()})).await;
    assert_eq!((twice.status, twice.code()), (StatusCode::UNPROCESSABLE_ENTITY, "already_reversed"));
    assert_eq!(api.balance("alice").await, "100.00");
    assert_eq!(api.balance("shop").await, "0.00");
    let missing = api.call(Method::POST, &format!("/v1/transfers/{}/post", Uuid::now_v7()), &api.operator, None).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::UNPROCESSABLE_ENTITY, "pending_not_found"));
    api.assert_consistent().await;
}

#[tokio::test]
async fn a_batch_answers_each_transfer_and_an_atomic_batch_is_all_or_nothing() {
    let api = api().await;
    api.funded("alice", "10.00").await;
    api.open("shop", "USD", json!({})).await;
    let items = vec![
        transfer("alice", "shop", "4.00"),
        transfer("alice", "shop", "7.00"), // more than is left
        transfer("alice", "shop", "6.00"),
    ];
    let reply = api.post("/v1/transfers/batch", &api.operator, json!({"transfers": items})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let results: Vec<(&str, u64)> = reply.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["result"].as_str().unwrap(), r["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(results, [("ok", 201), ("insufficient_funds", 422), ("ok", 201)]);
    assert_eq!(reply.body["applied"], 2);
    assert_eq!(api.balance("shop").await, "10.00");

    api.post("/v1/transfers", &api.operator, transfer("bank-alice", "alice", "5.00")).await;
    let atomic =
        json!({"atomic": true, "transfers": [transfer("alice", "shop", "3.00"), transfer("alice", "shop", "3.00")]});
    let reply = api.post("/v1/transfers/batch", &api.operator, atomic).await;
    let results: Vec<&str> =
        reply.body["results"].as_array().unwrap().iter().map(|r| r["result"].as_str().unwrap()).collect();
    assert_eq!(results, ["linked_chain_failed", "insufficient_funds"]);
    assert_eq!(reply.body["applied"], 0);
    assert_eq!(api.balance("alice").await, "5.00", "nothing of the atomic batch was applied");
    api.assert_consistent().await;
}

#[tokio::test]
async fn a_malformed_batch_item_writes_nothing_and_names_the_item() {
    let api = api().await;
    api.funded("alice", "10.00").await;
    api.open("shop", "USD", json!({})).await;
    let counts = api.db.row_counts().await;
    let batch = json!({"transfers": [transfer("alice", "shop", "1.00"), transfer("alice", "shop", "1.001")]});
    let reply = api.post("/v1/transfers/batch", &api.operator, batch).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_amount"));
    assert_eq!(reply.body["error"]["details"]["index"], 1);
    assert_eq!(api.db.row_counts().await, counts);
}

#[tokio::test]
async fn lists_transfers_by_account_status_and_time_newest_first() {
    let api = api().await;
    api.funded("alice", "100.00").await;
    api.open("shop", "USD", json!({})).await;
    let before = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    let mut ids = Vec::new();
    for amount in ["1.00", "2.00", "3.00"] {
        let body = transfer("alice", "shop", amount);
        ids.push(body["id"].clone());
        api.post("/v1/transfers", &api.operator, body).await;
    }
    let mut hold = transfer("alice", "shop", "5.00");
    hold["pending"] = json!(true);
    api.post("/v1/transfers", &api.operator, hold.clone()).await;
    let refused = transfer("alice", "shop", "1000.00");
    api.post("/v1/transfers", &api.operator, refused.clone()).await;

    let all = api.get("/v1/transfers?limit=2", &api.auditor).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    let page: Vec<Value> = all.body["data"].as_array().unwrap().iter().map(|r| r["id"].clone()).collect();
    assert_eq!(page, [hold["id"].clone(), ids[2].clone()], "newest first, rejections left out");
    let cursor = all.body["next_cursor"].as_str().unwrap().to_owned();
    let next = api.get(&format!("/v1/transfers?limit=2&cursor={cursor}"), &api.auditor).await;
    let page: Vec<Value> = next.body["data"].as_array().unwrap().iter().map(|r| r["id"].clone()).collect();
    assert_eq!(page, [ids[1].clone(), ids[0].clone()]);

    let pending = api.get("/v1/transfers?status=pending&account=alice", &api.operator).await;
    assert_eq!(pending.body["data"].as_array().unwrap().len(), 1);
    let rejected = api.get("/v1/transfers?status=rejected", &api.auditor).await;
    assert_eq!(rejected.body["data"][0]["id"], refused["id"]);
    assert_eq!(rejected.body["data"][0]["result"], "insufficient_funds");
    let since = api.get(&format!("/v1/transfers?account=shop&since={before}"), &api.operator).await;
    assert_eq!(since.body["data"].as_array().unwrap().len(), 4, "{}", since.body);
    let until = api.get(&format!("/v1/transfers?account=shop&until={before}"), &api.operator).await;
    assert_eq!(until.body["data"].as_array().unwrap().len(), 0);
    for bad in ["status=lost", "since=yesterday", "limit=5000"] {
        let reply = api.get(&format!("/v1/transfers?{bad}"), &api.operator).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_query"), "{bad}");
    }
}

/// A currency that does not exist is 404 `currency_not_found` and writes nothing; one that exists
/// but is not the accounts' is the rule's `currency_mismatch`, whose message and details say
/// which currency the transfer names and which each account holds.
#[tokio::test]
async fn currency_errors_name_the_currencies_and_an_unknown_currency_writes_nothing() {
    let api = api().await;
    api.funded("alice", "10.00").await;
    api.open("euro", "EUR", json!({})).await;
    let body = |from: &str, to: &str, currency: &str| json!({"id": Uuid::now_v7(), "from": from, "to": to, "amount": "1.00", "currency": currency});
    let before = api.db.row_counts().await;
    let unknown = api.post("/v1/transfers", &api.operator, body("bank-alice", "alice", "XYZ")).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "currency_not_found"), "{}", unknown.body);
    assert_eq!(api.db.row_counts().await, before, "nothing written");

    let other = api.post("/v1/transfers", &api.operator, body("bank-alice", "alice", "EUR")).await;
    assert_eq!((other.status, other.code()), (StatusCode::UNPROCESSABLE_ENTITY, "currency_mismatch"));
    assert_eq!(other.body["error"]["message"], "the transfer is in EUR; both accounts hold USD");
    let details = &other.body["error"]["details"];
    assert_eq!(
        (details["currency"].as_str(), details["from_currency"].as_str(), details["to_currency"].as_str()),
        (Some("EUR"), Some("USD"), Some("USD"))
    );
    let mixed = api.post("/v1/transfers", &api.operator, body("alice", "euro", "USD")).await;
    assert_eq!(mixed.code(), "currency_mismatch");
    assert_eq!(
        mixed.body["error"]["message"],
        "the transfer is in USD; the debit account holds USD, the credit account EUR"
    );
    assert_eq!(api.balance("alice").await, "10.00");
    api.assert_consistent().await;
}

#[tokio::test]
async fn related_lists_what_acts_on_a_transfer_and_its_audit_names_its_batch() {
    let api = api().await;
    let alice = api.funded("alice", "100.00").await;
    api.open("shop", "USD", json!({})).await;
    let mut hold = transfer("alice", "shop", "40.00");
    hold["pending"] = json!(true);
    assert_eq!(api.post("/v1/transfers", &api.operator, hold.clone()).await.status, StatusCode::CREATED);
    let hold_id = hold["id"].as_str().unwrap();
    let posted = api.post(&format!("/v1/transfers/{hold_id}/post"), &api.operator, json!({"amount": "25.00"})).await;
    assert_eq!(posted.status, StatusCode::CREATED, "{}", posted.body);
    let reverse = format!("/v1/transfers/{}/reverse", posted.body["id"].as_str().unwrap());
    let reversed = api.call(Method::POST, &reverse, &api.operator, None).await;
    assert_eq!(reversed.status, StatusCode::CREATED, "{}", reversed.body);

    let of_hold = api.get(&format!("/v1/transfers?related={hold_id}"), &api.auditor).await;
    assert_eq!(of_hold.status, StatusCode::OK, "{}", of_hold.body);
    let kinds = |reply: &Reply| -> Vec<(String, String)> {
        reply.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["transfer"]["kind"].as_str().unwrap().to_owned(), o["id"].as_str().unwrap().to_owned()))
            .collect()
    };
    assert_eq!(kinds(&of_hold), vec![("post_pending".to_owned(), posted.body["id"].as_str().unwrap().to_owned())]);
    let of_post =
        api.get(&format!("/v1/transfers?related={}", posted.body["id"].as_str().unwrap()), &api.operator).await;
    assert_eq!(kinds(&of_post), vec![("reversal".to_owned(), reversed.body["id"].as_str().unwrap().to_owned())]);
    let nothing =
        api.get(&format!("/v1/transfers?related={}", reversed.body["id"].as_str().unwrap()), &api.operator).await;
    assert_eq!(nothing.body["data"], json!([]));
    let mixed = api.get(&format!("/v1/transfers?related={hold_id}&status=posted"), &api.operator).await;
    assert_eq!((mixed.status, mixed.code()), (StatusCode::BAD_REQUEST, "invalid_query"));
    // A reader of neither account sees none of them.
    let stranger = api.open("stranger", "USD", json!({})).await;
    let reader = api.key("stranger-app", Role::Reader, vec![stranger]).await;
    assert_eq!(api.get(&format!("/v1/transfers?related={hold_id}"), &reader).await.body["data"], json!([]));

    // The hold's audit: the batch that committed it, and its resolution by the post.
    let audit = api.get(&format!("/v1/audit?entity={hold_id}"), &api.auditor).await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    let actions: Vec<&str> =
        audit.body["data"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["transfer.batch", "transfer.resolve"], "{}", audit.body);
    assert!(audit.body["data"].as_array().unwrap().iter().all(|r| r["actor"] == "key:operator"));
    // An account's audit: its opening only, not every row.
    let account = api.get(&format!("/v1/audit?entity={alice}"), &api.auditor).await;
    let rows = account.body["data"].as_array().unwrap();
    assert!(!rows.is_empty() && rows.iter().all(|r| r["entity_id"] == json!(alice.to_string())), "{}", account.body);
    assert_eq!(api.get(&format!("/v1/audit?entity={hold_id}"), &api.operator).await.status, StatusCode::FORBIDDEN);
    api.assert_consistent().await;
}
