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

#[tokio::test]
async fn the_scheduler_reconciles_each_day_once_after_the_delay_and_never_a_day_before_the_first_transfer() {
    let api = api().await;
    let after = std::time::Duration::from_secs(600);
    let recon = api.state.recon.clone();
    let due = async || tally_server::scheduler::run_due(&recon, after).await;
    // An empty ledger has nothing to reconcile.
    api.db.store.set_clock(Timestamp(MARCH_10_AT_10));
    assert!(due().await.unwrap().is_none());
    api.funded("wallet", "5.00").await;
    // 00:05 on the 11th: the 10th ended, but not ten minutes (and one) ago; the 9th, the newest
    // day that did, precedes the ledger's first transfer, so nothing is closed and the day
    // settings may still change.
    api.db.store.set_clock(Timestamp(MARCH_10_AT_10 + 14 * HOUR + 5 * 60_000_000));
    assert!(due().await.unwrap().is_none());
    let settings = tally_recon::days::set_settings(&recon, "UTC", "24:00", "test").await.expect("settings are open");
    assert_eq!(settings.time_zone, "UTC");
    // 00:12: the 10th is due, once; it holds the ledger's transfers, so the settings are fixed.
    api.db.store.set_clock(Timestamp(MARCH_10_AT_10 + 14 * HOUR + 12 * 60_000_000));
    let report = due().await.unwrap().expect("the 10th");
    assert_eq!((report.day.as_str(), report.transfers, report.actor.as_str()), ("2026-03-10", 1, "scheduler"));
    assert!(due().await.unwrap().is_none());
    let locked = tally_recon::days::set_settings(&recon, "Europe/Berlin", "24:00", "test").await.unwrap_err();
    assert_eq!(locked.code(), "day_definition_locked");
    let stored = api.get("/v1/reconciliations/2026-03-10", &api.auditor).await;
    assert_eq!(
        (stored.body["status"].as_str(), stored.body["report"]["actor"].as_str()),
        (Some("clean"), Some("scheduler"))
    );
}

#[tokio::test]
async fn a_statement_is_imported_over_the_api_once_and_its_report_read_back() {
    let api = api().await;
    api.open("bank-eur", "EUR", json!({"unrestricted": true})).await;
    let camt =
        std::fs::read(format!("{}/../tally-statement/tests/fixtures/camt053_multi.xml", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
    let post = |body: Vec<u8>, query: &'static str| {
        let request = axum::http::Request::post(format!("/v1/statements?{query}"))
            .header("authorization", format!("Bearer {}", api.operator))
            .header("content-type", "application/xml")
            .body(axum::body::Body::from(body))
            .unwrap();
        api.raw(request)
    };
    let first = post(camt.clone(), "account=bank-eur").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["report"]["format"], "camt053");
    assert_eq!(first.body["report"]["statements"][0]["report"]["statement_entries"], 7);
    assert_eq!(first.body["report"]["actor"], "key:operator");
    let again = post(camt.clone(), "account=bank-eur").await;
    assert_eq!((again.status, &again.body["created"]), (StatusCode::OK, &json!(false)));
    assert_eq!(again.body["report"], first.body["report"]);

    let id = first.body["statement_id"].as_str().unwrap();
    let html = api.get(&format!("/v1/statements/{id}?format=html"), &api.auditor).await;
    assert_eq!(html.headers["content-type"], "text/html; charset=utf-8");
    assert!(html.body.as_str().unwrap().contains("camt053"));

    let broken =
        String::from_utf8(camt).unwrap().replacen("<Amt Ccy=\"EUR\">845.50</Amt>", "<Amt Ccy=\"EUR\">8,45</Amt>", 1);
    let refused = post(broken.into_bytes(), "account=bank-eur").await;
    assert_eq!((refused.status, refused.code()), (StatusCode::UNPROCESSABLE_ENTITY, "statement_amount_invalid"));
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("Ntry[2]"), "{}", refused.body);
    let unknown = post(b"hello".to_vec(), "account=bank-eur").await;
    assert_eq!(unknown.code(), "statement_format_unknown");
    let missing = api.get(&format!("/v1/statements/{}", uuid::Uuid::now_v7()), &api.auditor).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "statement_not_found"));

    // A file of several bank accounts: mapped in the query; the one left out is reported.
    api.open("bank-nl", "EUR", json!({"unrestricted": true})).await;
    let dutch =
        std::fs::read(format!("{}/../tally-statement/tests/fixtures/mt940_dutch.sta", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
    let ambiguous = post(dutch.clone(), "account=bank-nl").await;
    assert_eq!((ambiguous.status, ambiguous.code()), (StatusCode::UNPROCESSABLE_ENTITY, "statement_mapping_ambiguous"));
    let mapped = post(dutch.clone(), "map=NL91ABNA0417164300%3Dbank-nl,NL02ABNA0123456789%3Dbank-eur").await;
    assert_eq!(mapped.status, StatusCode::CREATED, "{}", mapped.body);
    assert_eq!(
        (mapped.body["report"]["imported"].as_i64(), mapped.body["report"]["unmapped"].as_i64()),
        (Some(3), Some(1))
    );
    assert_eq!(mapped.body["statement_id"], json!(null));
    let file = mapped.body["file_id"].as_str().unwrap();
    let csv = api.get(&format!("/v1/statements/{file}?format=csv"), &api.auditor).await;
    assert!(csv.body.as_str().unwrap().contains("unmapped_statement"), "{}", csv.body);
    let bad_map = post(dutch, "map=NL91ABNA0417164300").await;
    assert_eq!(bad_map.code(), "statement_mapping_invalid");
}

/// Makes the ledger `eu` (id 2) over the API.
async fn eu_ledger(api: &Api) {
    let made = api.post("/v1/ledgers", &api.admin, json!({"code": "eu", "name": "EU books"})).await;
    assert_eq!((made.status, &made.body["id"]), (StatusCode::CREATED, &json!(2)), "{}", made.body);
}

#[tokio::test]
async fn a_day_of_two_ledgers_is_reconciled_whole_and_shown_one_ledger_at_a_time() {
    let api = api().await;
    eu_ledger(&api).await;
    api.db.store.set_clock(Timestamp(MARCH_10_AT_10));
    api.funded("wallet", "25.00").await;
    api.open("eu-bank", "USD", json!({"unrestricted": true, "ledger": "eu"})).await;
    api.open("eu-wallet", "USD", json!({"ledger": "eu"})).await;
    let moved = api.post("/v1/transfers", &api.operator, transfer("eu-bank", "eu-wallet", "7.00")).await;
    assert_eq!(moved.status, StatusCode::CREATED, "{}", moved.body);
    api.db.store.set_clock(Timestamp(MARCH_10_AT_10 + 26 * HOUR));

    // The run answers the whole day: both ledgers' totals and figures.
    let whole = api.post("/v1/reconciliations", &api.auditor, json!({"date": "2026-03-10"})).await;
    assert_eq!((whole.status, whole.body["status"].as_str()), (StatusCode::OK, Some("clean")), "{}", whole.body);
    let report = &whole.body["report"];
    assert_eq!(report["transfers"], 2);
    let totals: Vec<(i64, &str, &str)> = report["currencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["ledger"].as_i64().unwrap(), c["currency"].as_str().unwrap(), c["posted_volume"].as_str().unwrap()))
        .collect();
    assert_eq!(totals, [(1, "USD", "25.00"), (2, "USD", "7.00")]);
    let codes: Vec<&str> = report["ledgers"].as_array().unwrap().iter().map(|l| l["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["default", "eu"]);
    assert!(report.get("filter").is_none(), "{report}");

    // ?ledger= shows one ledger's part, and says so.
    let eu = api.get("/v1/reconciliations/2026-03-10?ledger=eu", &api.auditor).await;
    assert_eq!(eu.status, StatusCode::OK, "{}", eu.body);
    let part = &eu.body["report"];
    assert_eq!((part["transfers"].as_i64(), part["currencies"].as_array().unwrap().len()), (Some(1), 1));
    assert_eq!(part["currencies"][0]["posted_volume"], "7.00");
    assert_eq!(part["filter"]["ledgers"], json!([{"id": 2, "code": "eu"}]));
    assert!(part["filter"]["note"].as_str().unwrap().starts_with("filtered to ledger eu (2)"));
    let by_id = api.get("/v1/reconciliations/2026-03-10?ledger=2", &api.auditor).await;
    assert_eq!(by_id.body["report"], eu.body["report"]);
    let page = api.get("/v1/reconciliations/2026-03-10?ledger=eu&format=html", &api.auditor).await;
    let page = page.body.as_str().unwrap();
    assert!(page.contains("<strong>Filtered:</strong> filtered to ledger eu (2)"), "{page}");
    assert!(page.contains("<td class=\"mono\">eu</td>") && !page.contains("<td class=\"mono\">default</td>"));
    let csv = api.get("/v1/reconciliations/2026-03-10?ledger=eu&format=csv", &api.auditor).await;
    assert_eq!(csv.text, "check,subject,account_id,transfer_id,ledger,currency,expected,found,difference,detail\n");
    // A run may answer with one ledger's part too.
    let run = api.post("/v1/reconciliations", &api.auditor, json!({"date": "2026-03-10", "ledger": "eu"})).await;
    assert_eq!(run.body["report"]["currencies"], eu.body["report"]["currencies"]);

    // A key scoped to `eu` always sees `eu`'s part, and may not ask for another ledger's.
    let scoped = api.scoped_key("eu-auditor", Role::Auditor, vec![], vec![tally_core::LedgerId(2)]).await;
    let seen = api.get("/v1/reconciliations/2026-03-10", &scoped).await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.body);
    assert_eq!(seen.body["report"]["currencies"], eu.body["report"]["currencies"]);
    assert_eq!(seen.body["report"]["filter"]["ledgers"], json!([{"id": 2, "code": "eu"}]));
    let refused = api.get("/v1/reconciliations/2026-03-10?ledger=default", &scoped).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "ledger_forbidden"));
    let refused = api.post("/v1/reconciliations", &scoped, json!({"date": "2026-03-10", "ledger": "1"})).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "ledger_forbidden"));
    let unknown = api.get("/v1/reconciliations/2026-03-10?ledger=nope", &api.auditor).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "ledger_not_found"));

    // The stored report stays whole.
    let day = tally_recon::days::parse_day("2026-03-10").unwrap();
    let stored = tally_recon::eod::latest_report(&api.state.recon, day).await.unwrap().unwrap().report.unwrap();
    assert_eq!((stored.currencies.len(), stored.filter.is_none()), (2, true));
    api.assert_consistent().await;
}

#[tokio::test]
async fn statements_are_listed_and_shown_by_ledger_and_a_scoped_key_sees_only_its_ledgers() {
    let api = api().await;
    eu_ledger(&api).await;
    api.open("bank-eur", "EUR", json!({"unrestricted": true, "ledger": "eu"})).await;
    api.open("bank-nl", "EUR", json!({"unrestricted": true})).await;
    let eu_operator = api.scoped_key("eu-operator", Role::Operator, vec![], vec![tally_core::LedgerId(2)]).await;
    let default_operator =
        api.scoped_key("default-operator", Role::Operator, vec![], vec![tally_core::LedgerId(1)]).await;
    let fixture = |name: &str| {
        std::fs::read(format!("{}/../tally-statement/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    let post = |key: &str, body: Vec<u8>, query: &str| {
        let request = axum::http::Request::post(format!("/v1/statements?{query}"))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/xml")
            .body(axum::body::Body::from(body))
            .unwrap();
        api.raw(request)
    };
    let listed = async |key: &str, query: &str| -> Vec<(String, i64)> {
        let reply = api.get(&format!("/v1/statements{query}"), key).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.body);
        let data = reply.body["data"].as_array().unwrap();
        data.iter().map(|s| (s["statement_ref"].as_str().unwrap().to_owned(), s["ledger"].as_i64().unwrap())).collect()
    };

    // A key of `default` may not import into an account of `eu`; nothing is written.
    let refused = post(&default_operator, fixture("camt053_multi.xml"), "account=bank-eur").await;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "ledger_forbidden"));
    assert!(listed(&api.auditor, "").await.is_empty());
    let imported = post(&eu_operator, fixture("camt053_multi.xml"), "account=bank-eur").await;
    assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.body);
    let statement = imported.body["report"]["statements"][0].clone();
    assert_eq!((statement["ledger"].as_i64(), statement["report"]["ledger_code"].as_str()), (Some(2), Some("eu")));
    let id = imported.body["statement_id"].as_str().unwrap().to_owned();

    // A file of both ledgers, mapped by an unscoped key.
    let mapped = post(
        &api.operator,
        fixture("mt940_dutch.sta"),
        "map=NL91ABNA0417164300%3Dbank-nl,NL02ABNA0123456789%3Dbank-eur",
    )
    .await;
    assert_eq!(mapped.status, StatusCode::CREATED, "{}", mapped.body);
    let file = mapped.body["file_id"].as_str().unwrap().to_owned();

    let all = listed(&api.auditor, "").await;
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(listed(&api.auditor, "?ledger=eu").await.len(), 2);
    assert_eq!(listed(&eu_operator, "").await, listed(&api.auditor, "?ledger=2").await);
    assert!(listed(&eu_operator, "").await.iter().all(|(_, ledger)| *ledger == 2));
    assert_eq!(listed(&default_operator, "").await.len(), 2);
    assert_eq!(listed(&api.auditor, "?account=bank-nl").await.len(), 2);
    assert_eq!(listed(&api.auditor, "?ledger=default&limit=1").await.len(), 1);
    let forbidden = api.get("/v1/statements?ledger=eu", &default_operator).await;
    assert_eq!((forbidden.status, forbidden.code()), (StatusCode::FORBIDDEN, "ledger_forbidden"));

    // A statement is shown to keys of its ledger; asked for in another ledger, it is not there.
    assert_eq!(api.get(&format!("/v1/statements/{id}"), &eu_operator).await.status, StatusCode::OK);
    let other = api.get(&format!("/v1/statements/{id}"), &default_operator).await;
    assert_eq!((other.status, other.code()), (StatusCode::FORBIDDEN, "ledger_forbidden"));
    let elsewhere = api.get(&format!("/v1/statements/{id}?ledger=default"), &api.auditor).await;
    assert_eq!((elsewhere.status, elsewhere.code()), (StatusCode::NOT_FOUND, "statement_not_found"));

    // The file, as each ledger sees it: its statements, and the file's unmapped one.
    let outcomes = async |key: &str| -> Vec<(String, Option<i64>)> {
        let reply = api.get(&format!("/v1/statements/{file}"), key).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let statements = reply.body["statements"].as_array().unwrap();
        statements.iter().map(|s| (s["outcome"].as_str().unwrap().to_owned(), s["ledger"].as_i64())).collect()
    };
    let owned = |pairs: &[(&str, Option<i64>)]| -> Vec<(String, Option<i64>)> {
        pairs.iter().map(|(o, l)| ((*o).to_owned(), *l)).collect()
    };
    assert_eq!(outcomes(&eu_operator).await, owned(&[("imported", Some(2)), ("unmapped", None)]));
    assert_eq!(
        outcomes(&default_operator).await,
        owned(&[("imported", Some(1)), ("imported", Some(1)), ("unmapped", None)])
    );
    assert_eq!(outcomes(&api.auditor).await.len(), 4);
    let html = api.get(&format!("/v1/statements/{file}?format=html"), &eu_operator).await;
    assert!(html.body.as_str().unwrap().contains("<strong>Filtered:</strong>"));
}

#[tokio::test]
async fn runs_are_listed_newest_first_page_by_page_and_as_a_scoped_key_sees_them() {
    let api = api().await;
    eu_ledger(&api).await;
    api.db.store.set_clock(Timestamp(MARCH_10_AT_10));
    api.funded("wallet", "25.00").await;
    api.db.store.set_clock(Timestamp(MARCH_10_AT_10 + 24 * HOUR));
    api.post("/v1/transfers", &api.operator, transfer("bank-wallet", "wallet", "1.00")).await;
    api.db.store.set_clock(Timestamp(MARCH_10_AT_10 + 50 * HOUR));
    let mut runs = Vec::new();
    for day in ["2026-03-10", "2026-03-11"] {
        let run = api.post("/v1/reconciliations", &api.auditor, json!({"date": day})).await;
        assert_eq!((run.status, run.body["status"].as_str()), (StatusCode::OK, Some("clean")), "{}", run.body);
        runs.push(run.body["run_id"].as_str().unwrap().to_owned());
    }

    let first = api.get("/v1/reconciliations?limit=1", &api.operator).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let run = &first.body["data"][0];
    assert_eq!((run["run_id"].as_str(), run["day"].as_str()), (Some(runs[1].as_str()), Some("2026-03-11")));
    assert_eq!((run["status"].as_str(), run["findings"].as_i64()), (Some("clean"), Some(0)));
    assert_eq!(run["actor"], "key:auditor");
    assert!(run["started_at"].is_string() && run["finished_at"].is_string(), "{run}");
    let cursor = first.body["next_cursor"].as_str().expect("a full page has a cursor");
    let second = api.get(&format!("/v1/reconciliations?limit=1&cursor={cursor}"), &api.operator).await;
    assert_eq!(second.body["data"][0]["run_id"].as_str(), Some(runs[0].as_str()));
    let cursor = second.body["next_cursor"].as_str().unwrap();
    let third = api.get(&format!("/v1/reconciliations?limit=1&cursor={cursor}"), &api.operator).await;
    assert_eq!((third.body["data"].clone(), third.body["next_cursor"].clone()), (json!([]), json!(null)));
    let all = api.get("/v1/reconciliations", &api.auditor).await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 2);

    // A key scoped to `eu` sees each run as its ledger's part: clean, no findings.
    let scoped = api.scoped_key("eu-auditor", Role::Auditor, vec![], vec![tally_core::LedgerId(2)]).await;
    let seen = api.get("/v1/reconciliations", &scoped).await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.body);
    assert_eq!(seen.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(seen.body["data"][0]["findings"], 0);
    let refused = api.get("/v1/reconciliations?ledger=default", &scoped).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "ledger_forbidden"));
    for bad in ["limit=0", "limit=201", "cursor=nope", "day=2026-03-10"] {
        let reply = api.get(&format!("/v1/reconciliations?{bad}"), &api.auditor).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {}", reply.body);
    }
    let reader = api.key("reader", Role::Reader, vec![]).await;
    assert_eq!(api.get("/v1/reconciliations", &reader).await.status, StatusCode::FORBIDDEN);
}
