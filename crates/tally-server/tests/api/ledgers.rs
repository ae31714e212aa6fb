//! Ledgers through the API: making and listing them, accounts in them, transfers that stay
//! inside one (`ledger_mismatch`), listings and events filtered by ledger, and keys scoped to
//! ledgers, which see and change only their ledgers and write nothing elsewhere.

use crate::support::{api, transfer};
use axum::http::StatusCode;
use serde_json::json;
use tally_core::LedgerId;
use tally_store::Role;

#[tokio::test]
async fn ledgers_are_made_idempotently_and_listed_with_default_first() {
    let api = api().await;
    let reply = api.get("/v1/ledgers", &api.auditor).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["data"][0]["code"], "default");
    assert_eq!(reply.body["data"][0]["id"], 1);

    let body = json!({"code": "eu-wallets", "name": "EU wallets", "metadata": {"region": "eu"}});
    let made = api.post("/v1/ledgers", &api.admin, body.clone()).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert_eq!(made.body["created_by"], "key:admin");
    let again = api.post("/v1/ledgers", &api.admin, body).await;
    assert_eq!((again.status, &again.body), (StatusCode::OK, &made.body));
    let other = api.post("/v1/ledgers", &api.admin, json!({"code": "eu-wallets", "name": "Other"})).await;
    assert_eq!((other.status, other.code()), (StatusCode::CONFLICT, "ledger_exists_with_different_fields"));

    for bad in ["EU", "1eu", "", "eu wallets"] {
        let reply = api.post("/v1/ledgers", &api.admin, json!({"code": bad, "name": "x"})).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_input"), "{bad}");
    }
    let reply = api.post("/v1/ledgers", &api.operator, json!({"code": "ops", "name": "x"})).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    let id = made.body["id"].as_i64().unwrap();
    for path in [format!("/v1/ledgers/{id}"), "/v1/ledgers/eu-wallets".to_owned()] {
        let reply = api.get(&path, &api.operator).await;
        assert_eq!((reply.status, &reply.body), (StatusCode::OK, &made.body));
    }
    let reply = api.get("/v1/ledgers/nowhere", &api.operator).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::NOT_FOUND, "ledger_not_found"));

    // Made with an audit row and an event of its own.
    let events = api.get("/v1/events?ledger=eu-wallets", &api.auditor).await;
    assert_eq!(events.body["data"][0]["type"], "ledger.created", "{}", events.body);
    assert_eq!(events.body["data"][0]["ledger"], id);
    assert_eq!(events.body["data"][0]["payload"]["code"], "eu-wallets");
}

#[tokio::test]
async fn a_transfer_stays_inside_one_ledger_and_codes_are_per_ledger() {
    let api = api().await;
    api.post("/v1/ledgers", &api.admin, json!({"code": "cards", "name": "Cards"})).await;
    api.funded("alice", "100.00").await;
    // The same code in another ledger is another account.
    let card = api.open("card-alice", "USD", json!({"ledger": "cards"})).await;
    let cards_bank = api.open("bank", "USD", json!({"ledger": "cards", "unrestricted": true})).await;
    let reply =
        api.post("/v1/accounts", &api.admin, json!({"code": "alice", "currency": "USD", "ledger": "cards"})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["ledger"], 2);
    // Now `alice` names two accounts: by code alone it is ambiguous; by id it is not.
    let reply = api.get("/v1/accounts/alice", &api.admin).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::CONFLICT, "account_code_ambiguous"));

    let counts = api.db.row_counts().await;
    let across = transfer("bank-alice", &card.to_string(), "1.00");
    let reply = api.post("/v1/transfers", &api.operator, across.clone()).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::UNPROCESSABLE_ENTITY, "ledger_mismatch"), "{}", reply.body);
    // Recorded under its id, in the ledger of its debit account; no money moved.
    let recorded = api.get(&format!("/v1/transfers/{}", across["id"].as_str().unwrap()), &api.auditor).await;
    assert_eq!(recorded.body["result"], "ledger_mismatch");
    let after = api.db.row_counts().await;
    let moved: Vec<_> = counts.iter().zip(&after).filter(|(a, b)| a != b).map(|(a, _)| a.0.clone()).collect();
    assert_eq!(moved, ["transfers", "audit_log"], "a rejection is one journal row and the batch's audit row");

    let inside =
        api.post("/v1/transfers", &api.operator, transfer(&cards_bank.to_string(), &card.to_string(), "5.00")).await;
    assert_eq!(inside.status, StatusCode::CREATED, "{}", inside.body);
    assert_eq!(inside.body["ledger"], 2);

    // Listings by ledger.
    let cards = api.get("/v1/accounts?ledger=cards", &api.auditor).await;
    assert_eq!(cards.body["data"].as_array().unwrap().len(), 3);
    let default = api.get("/v1/accounts?ledger=1", &api.auditor).await;
    assert!(default.body["data"].as_array().unwrap().iter().all(|a| a["ledger"] == 1));
    let transfers = api.get("/v1/transfers?ledger=cards", &api.auditor).await;
    let ids: Vec<_> = transfers.body["data"].as_array().unwrap().iter().map(|t| t["id"].clone()).collect();
    assert_eq!(ids, [inside.body["id"].clone()]);
    let events = api.get("/v1/events?ledger=cards", &api.auditor).await;
    let types: Vec<_> = events.body["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ledger.created", "account.created", "account.created", "account.created", "transfer.posted"]);
    let reply = api.get("/v1/transfers?ledger=nowhere", &api.auditor).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::NOT_FOUND, "ledger_not_found"));
    api.assert_consistent().await;
}

#[tokio::test]
async fn a_key_scoped_to_a_ledger_sees_and_changes_only_that_ledger() {
    let api = api().await;
    api.post("/v1/ledgers", &api.admin, json!({"code": "cards", "name": "Cards"})).await;
    let alice = api.funded("alice", "100.00").await;
    let card = api.open("card", "USD", json!({"ledger": "cards"})).await;
    let bank = api.open("cards-bank", "USD", json!({"ledger": "cards", "unrestricted": true})).await;
    let operator = api.scoped_key("cards-operator", Role::Operator, vec![], vec![LedgerId(2)]).await;
    let admin = api.scoped_key("cards-admin", Role::Admin, vec![], vec![LedgerId(2)]).await;

    let ok = api.post("/v1/transfers", &operator, transfer(&bank.to_string(), &card.to_string(), "3.00")).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);

    // Outside its ledger: refused before anything is written, whatever the request.
    let counts = api.db.row_counts().await;
    let outside = transfer("bank-alice", &alice.to_string(), "1.00");
    let reply = api.post("/v1/transfers", &operator, outside).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "ledger_forbidden"), "{}", reply.body);
    let across = api.post("/v1/transfers", &operator, transfer(&bank.to_string(), &alice.to_string(), "1.00")).await;
    assert_eq!((across.status, across.code()), (StatusCode::FORBIDDEN, "ledger_forbidden"));
    let missing = api
        .post("/v1/transfers", &operator, transfer(&bank.to_string(), &uuid::Uuid::now_v7().to_string(), "1.00"))
        .await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "account_not_found"));
    let batch = json!({"transfers": [transfer(&bank.to_string(), &card.to_string(), "1.00"),
                                      transfer("bank-alice", &alice.to_string(), "1.00")]});
    let reply = api.post("/v1/transfers/batch", &operator, batch).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "ledger_forbidden"));
    let reply = api.post("/v1/accounts", &admin, json!({"code": "x", "currency": "USD"})).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "ledger_forbidden"));
    let reply = api.post("/v1/ledgers", &admin, json!({"code": "more", "name": "More"})).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(api.db.row_counts().await, counts, "nothing was written");

    // Reads: its ledger only.
    assert_eq!(api.get(&format!("/v1/accounts/{alice}"), &operator).await.code(), "ledger_forbidden");
    assert_eq!(api.get(&format!("/v1/accounts/{card}"), &operator).await.status, StatusCode::OK);
    let reply = api.get("/v1/accounts", &admin).await;
    assert!(reply.body["data"].as_array().unwrap().iter().all(|a| a["ledger"] == 2), "{}", reply.body);
    assert_eq!(api.get("/v1/accounts?ledger=default", &admin).await.code(), "ledger_forbidden");
    let ledgers = api.get("/v1/ledgers", &operator).await;
    assert_eq!(ledgers.body["data"].as_array().unwrap().len(), 1);
    let transfers = api.get("/v1/transfers", &operator).await;
    assert_eq!(transfers.body["data"].as_array().unwrap().len(), 1, "{}", transfers.body);
    let events = api.get("/v1/events", &admin).await;
    assert!(events.body["data"].as_array().unwrap().iter().all(|e| e["ledger"] == 2), "{}", events.body);
    api.assert_consistent().await;
}
