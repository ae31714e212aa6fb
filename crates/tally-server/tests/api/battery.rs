//! An adversarial battery: malformed, oversized, mistyped, SQL-looking, unauthenticated and
//! unauthorised requests. Every refused request must answer with its documented status and code
//! in the `{"error": {"code", "message", "details"}}` shape, and must write nothing: the row
//! counts of every table and the balances of the accounts involved are compared before and after.
//!
//! Cases are table-driven; every failing case of a table is collected and reported together, by
//! its description.

use crate::support::{Api, Reply, api, transfer};
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use serde_json::{Value, json};
use tally_store::Role;
use uuid::Uuid;

/// One refused request: what it is, the request, the expected status and error code.
type Case = (String, Request<Body>, u16, &'static str);

/// What must not change: the row counts of every table and the balances of these accounts.
#[derive(Debug, PartialEq)]
struct Snapshot {
    rows: Vec<(String, i64)>,
    balances: Vec<(String, String)>,
}

async fn snapshot(api: &Api, accounts: &[&str]) -> Snapshot {
    let rows = api.db.row_counts().await;
    let mut balances = Vec::new();
    for account in accounts {
        balances.push(((*account).to_owned(), api.balance(account).await));
    }
    Snapshot { rows, balances }
}

/// The problems with an error reply's shape, if any.
fn shape_problems(reply: &Reply) -> Vec<String> {
    let mut problems = Vec::new();
    let content_type = reply.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/json") {
        problems.push(format!("content-type is {content_type:?}, not application/json"));
    }
    let Some(top) = reply.body.as_object() else {
        problems.push(format!("the body is not a JSON object: {}", reply.body));
        return problems;
    };
    if top.len() != 1 || !top.contains_key("error") {
        problems.push(format!("the body must hold only \"error\": {}", reply.body));
    }
    let Some(error) = top.get("error").and_then(Value::as_object) else {
        problems.push(format!("\"error\" is not an object: {}", reply.body));
        return problems;
    };
    let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    if keys != ["code", "details", "message"] {
        problems.push(format!("\"error\" must hold exactly code, message, details: {}", reply.body));
    }
    if error.get("code").is_none_or(|c| c.as_str().is_none_or(|c| c.is_empty())) {
        problems.push(format!("error.code is not a non-empty string: {}", reply.body));
    }
    if error.get("message").is_none_or(|m| m.as_str().is_none_or(|m| m.is_empty())) {
        problems.push(format!("error.message is not a non-empty string: {}", reply.body));
    }
    if !error.get("details").is_some_and(Value::is_object) {
        problems.push(format!("error.details is not an object: {}", reply.body));
    }
    problems
}

/// Sends every case; each must be refused as expected and write nothing. Panics at the end with
/// every failing case, named. Returns how many cases ran.
async fn run_refused(api: &Api, watched: &[&str], cases: Vec<Case>) -> usize {
    let count = cases.len();
    let mut failures = Vec::new();
    for (what, request, status, code) in cases {
        let request_line = format!("{} {}", request.method(), abbreviate(&request.uri().to_string()));
        let before = snapshot(api, watched).await;
        let reply = api.raw(request).await;
        let after = snapshot(api, watched).await;
        let mut problems = Vec::new();
        if reply.status.as_u16() != status {
            problems.push(format!("status {} (expected {status})", reply.status.as_u16()));
        }
        let actual_code = reply.body["error"]["code"].as_str().unwrap_or("<none>");
        if actual_code != code {
            problems.push(format!("code {actual_code:?} (expected {code:?})"));
        }
        problems.extend(shape_problems(&reply));
        if before != after {
            problems.push(format!("something was written: before {before:?}, after {after:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "- {what} [{request_line}]: {}; reply body {}",
                problems.join("; "),
                abbreviate(&reply.body.to_string())
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {count} cases failed:\n{}", failures.len(), failures.join("\n"));
    count
}

fn abbreviate(text: &str) -> String {
    if text.chars().count() <= 300 {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(300).collect::<String>())
    }
}

/// A request with an optional `Authorization: Bearer` key and an optional content type.
fn request(method: Method, path: &str, key: Option<&str>, content_type: Option<&str>, body: Body) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        builder = builder.header("authorization", format!("Bearer {key}"));
    }
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    builder.body(body).unwrap_or_else(|e| panic!("building {path}: {e}"))
}

/// A POST of raw bytes sent as JSON.
fn post_bytes(path: &str, key: &str, bytes: impl Into<Vec<u8>>) -> Request<Body> {
    request(Method::POST, path, Some(key), Some("application/json"), Body::from(bytes.into()))
}

/// A POST of a JSON value.
fn post_json(path: &str, key: &str, body: &Value) -> Request<Body> {
    post_bytes(path, key, serde_json::to_vec(body).expect("serializes"))
}

fn get(path: &str, key: &str) -> Request<Body> {
    request(Method::GET, path, Some(key), None, Body::empty())
}

/// A request with a raw `Authorization` header value (or none).
fn with_auth(method: Method, path: &str, authorization: Option<HeaderValue>, body: Option<&Value>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    let body = match body {
        Some(value) => {
            builder = builder.header("content-type", "application/json");
            Body::from(serde_json::to_vec(value).unwrap())
        }
        None => Body::empty(),
    };
    builder.body(body).unwrap()
}

/// Percent-encodes everything but unreserved characters, for a path segment or a query value.
fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `body` with `field` set to `value`.
fn with(body: &Value, field: &str, value: Value) -> Value {
    let mut body = body.clone();
    body.as_object_mut().unwrap().insert(field.to_owned(), value);
    body
}

/// `body` without `field`.
fn without(body: &Value, field: &str) -> Value {
    let mut body = body.clone();
    body.as_object_mut().unwrap().remove(field);
    body
}

/// A value nested `levels` objects deep.
fn nested(levels: usize) -> Value {
    let mut value = json!("leaf");
    for _ in 0..levels {
        value = json!({"n": value});
    }
    value
}

/// Alice holds 100.00 (funded from `bank-alice`), Bob holds nothing.
async fn alice_and_bob(api: &Api) -> Uuid {
    let alice = api.funded("alice", "100.00").await;
    api.open("bob", "USD", json!({})).await;
    alice
}

const WATCHED: &[&str] = &["alice", "bob", "bank-alice"];

#[tokio::test]
async fn malformed_and_mistyped_bodies_write_nothing() {
    let api = api().await;
    alice_and_bob(&api).await;
    let op = api.operator.as_str();
    let admin = api.admin.as_str();
    let valid = transfer("alice", "bob", "1.00");
    let id = valid["id"].as_str().unwrap().to_owned();
    let t = "/v1/transfers";
    let a = "/v1/accounts";
    let b = "/v1/transfers/batch";
    let mut cases: Vec<Case> = Vec::new();
    let mut case = |what: &str, request: Request<Body>, status: u16, code: &'static str| {
        cases.push((what.to_owned(), request, status, code));
    };

    // Malformed JSON.
    let text = valid.to_string();
    case("truncated JSON", post_bytes(t, op, &text.as_bytes()[..text.len() / 2]), 400, "malformed_json");
    case("trailing garbage", post_bytes(t, op, format!("{text} xyz")), 400, "malformed_json");
    case("a second document after the first", post_bytes(t, op, format!("{text}{text}")), 400, "malformed_json");
    case("{\"id\":}", post_bytes(t, op, r#"{"id":}"#), 400, "malformed_json");
    case("empty body", post_bytes(t, op, ""), 400, "malformed_json");
    case("single quotes", post_bytes(t, op, text.replace('"', "'")), 400, "malformed_json");
    case("trailing comma", post_bytes(t, op, format!("{},}}", &text[..text.len() - 1])), 400, "malformed_json");
    case("a comment", post_bytes(t, op, format!("/* hi */ {text}")), 400, "malformed_json");
    case("NaN literal", post_bytes(t, op, r#"{"amount": NaN}"#), 400, "malformed_json");
    let mut bad_utf8 =
        format!(r#"{{"id":"{id}","from":"alice","to":"bob","amount":"1.00","currency":"USD","reference":""#)
            .into_bytes();
    bad_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3, b'"', b'}']);
    case("invalid UTF-8 inside a string", post_bytes(t, op, bad_utf8), 400, "malformed_json");
    case("binary garbage", post_bytes(t, op, vec![0x00, 0xff, 0x80, 0x7b, 0xc0]), 400, "malformed_json");
    let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    case("UTF-16 body", post_bytes(t, op, utf16), 400, "malformed_json");
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    case("100,000 nested arrays", post_bytes(t, op, deep), 400, "malformed_json");

    // Well-formed JSON of the wrong shape.
    case("an array instead of an object", post_bytes(t, op, format!("[{text}]")), 400, "invalid_body");
    case("a string instead of an object", post_bytes(t, op, r#""transfer""#), 400, "invalid_body");
    case("null instead of an object", post_bytes(t, op, "null"), 400, "invalid_body");
    case("a number instead of an object", post_bytes(t, op, "42"), 400, "invalid_body");
    case("an empty object", post_bytes(t, op, "{}"), 400, "invalid_body");
    case("amount as a number", post_json(t, op, &with(&valid, "amount", json!(12.5))), 400, "invalid_body");
    case("amount as an integer", post_json(t, op, &with(&valid, "amount", json!(1))), 400, "invalid_body");
    case("amount null", post_json(t, op, &with(&valid, "amount", Value::Null)), 400, "invalid_body");
    case("unknown field", post_json(t, op, &with(&valid, "foo", json!(1))), 400, "invalid_body");
    case("unknown field actor", post_json(t, op, &with(&valid, "actor", json!("key:admin"))), 400, "invalid_body");
    case("unknown field user_id", post_json(t, op, &with(&valid, "user_id", json!("admin"))), 400, "invalid_body");
    case("unknown field related_id", post_json(t, op, &with(&valid, "related_id", json!(id))), 400, "invalid_body");
    for field in ["id", "from", "to", "amount", "currency"] {
        case(&format!("missing {field}"), post_json(t, op, &without(&valid, field)), 400, "invalid_body");
    }
    case("id not a UUID", post_json(t, op, &with(&valid, "id", json!("not-a-uuid"))), 400, "invalid_body");
    case("id a number", post_json(t, op, &with(&valid, "id", json!(12345))), 400, "invalid_body");
    case("id empty", post_json(t, op, &with(&valid, "id", json!(""))), 400, "invalid_body");
    case("id null", post_json(t, op, &with(&valid, "id", Value::Null)), 400, "invalid_body");
    case("from a number", post_json(t, op, &with(&valid, "from", json!(7))), 400, "invalid_body");
    case("to an object", post_json(t, op, &with(&valid, "to", json!({"code": "bob"}))), 400, "invalid_body");
    case("currency a number", post_json(t, op, &with(&valid, "currency", json!(840))), 400, "invalid_body");
    case("pending as a string", post_json(t, op, &with(&valid, "pending", json!("true"))), 400, "invalid_body");
    case("pending as 1", post_json(t, op, &with(&valid, "pending", json!(1))), 400, "invalid_body");
    let pending = with(&valid, "pending", json!(true));
    case(
        "timeout_seconds negative",
        post_json(t, op, &with(&pending, "timeout_seconds", json!(-1))),
        400,
        "invalid_body",
    );
    case(
        "timeout_seconds 2^40",
        post_json(t, op, &with(&pending, "timeout_seconds", json!(1u64 << 40))),
        400,
        "invalid_body",
    );
    case(
        "timeout_seconds a fraction",
        post_json(t, op, &with(&pending, "timeout_seconds", json!(1.5))),
        400,
        "invalid_body",
    );
    case(
        "timeout_seconds a string",
        post_json(t, op, &with(&pending, "timeout_seconds", json!("60"))),
        400,
        "invalid_body",
    );
    case(
        "timeout_seconds u32::MAX (above 30 days)",
        post_json(t, op, &with(&pending, "timeout_seconds", json!(u32::MAX))),
        400,
        "timeout_invalid",
    );
    case("timeout_seconds 0", post_json(t, op, &with(&pending, "timeout_seconds", json!(0))), 400, "timeout_invalid");
    case(
        "timeout_seconds on a posted transfer",
        post_json(t, op, &with(&valid, "timeout_seconds", json!(60))),
        400,
        "timeout_invalid",
    );
    case(
        "expected_from_version a string",
        post_json(t, op, &with(&valid, "expected_from_version", json!("1"))),
        400,
        "invalid_body",
    );
    case(
        "expected_to_version a fraction",
        post_json(t, op, &with(&valid, "expected_to_version", json!(1.5))),
        400,
        "invalid_body",
    );
    case(
        "expected_from_version 2^63",
        post_json(t, op, &with(&valid, "expected_from_version", json!(1u64 << 63))),
        400,
        "invalid_body",
    );
    case("reference a number", post_json(t, op, &with(&valid, "reference", json!(5))), 400, "invalid_body");
    case(
        "reference of 257 characters",
        post_json(t, op, &with(&valid, "reference", json!("r".repeat(257)))),
        400,
        "reference_too_long",
    );
    case(
        "metadata over 4 KiB",
        post_json(t, op, &with(&valid, "metadata", json!({"blob": "m".repeat(5000)}))),
        400,
        "metadata_too_large",
    );
    case("metadata nested 40 levels", post_json(t, op, &with(&valid, "metadata", nested(40))), 400, "invalid_body");
    case(
        "metadata nested 32 levels (body 33 deep)",
        post_json(t, op, &with(&valid, "metadata", nested(32))),
        400,
        "invalid_body",
    );
    case("nil id", post_json(t, op, &with(&valid, "id", json!(Uuid::nil()))), 400, "id_invalid");
    case("same account twice", post_json(t, op, &with(&valid, "to", json!("alice"))), 400, "same_account");
    case(
        "same account by code and id",
        post_json(t, op, &with(&valid, "to", json!(api.db.store.require_account("alice").await.unwrap().account.id.0))),
        400,
        "same_account",
    );
    case("unknown account code", post_json(t, op, &with(&valid, "from", json!("nobody"))), 404, "account_not_found");
    case("empty account code", post_json(t, op, &with(&valid, "to", json!(""))), 404, "account_not_found");
    case("unknown currency", post_json(t, op, &with(&valid, "currency", json!("QQQ"))), 404, "currency_not_found");
    case("lower-case currency", post_json(t, op, &with(&valid, "currency", json!("usd"))), 404, "currency_not_found");

    // The content type.
    case(
        "no content-type",
        request(Method::POST, t, Some(op), None, Body::from(text.clone())),
        415,
        "unsupported_media_type",
    );
    case(
        "content-type text/plain",
        request(Method::POST, t, Some(op), Some("text/plain"), Body::from(text.clone())),
        415,
        "unsupported_media_type",
    );
    case(
        "content-type form",
        request(Method::POST, t, Some(op), Some("application/x-www-form-urlencoded"), Body::from(text.clone())),
        415,
        "unsupported_media_type",
    );

    // Accounts.
    let account = json!({"code": "carol", "currency": "USD"});
    let account_text = account.to_string();
    case("account: truncated JSON", post_bytes(a, admin, &account_text.as_bytes()[..10]), 400, "malformed_json");
    case("account: {\"id\":}", post_bytes(a, admin, r#"{"id":}"#), 400, "malformed_json");
    case(
        "account: invalid UTF-8 in the code",
        post_bytes(a, admin, [&br#"{"currency":"USD","code":"ca"#[..], &[0xc3, 0x28], &br#""}"#[..]].concat()),
        400,
        "malformed_json",
    );
    case("account: an array", post_bytes(a, admin, format!("[{account_text}]")), 400, "invalid_body");
    case("account: missing currency", post_json(a, admin, &without(&account, "currency")), 400, "invalid_body");
    case(
        "account: currency a number",
        post_json(a, admin, &with(&account, "currency", json!(840))),
        400,
        "invalid_body",
    );
    case("account: unknown field", post_json(a, admin, &with(&account, "owner", json!("x"))), 400, "invalid_body");
    case(
        "account: unknown field actor",
        post_json(a, admin, &with(&account, "actor", json!("key:operator"))),
        400,
        "invalid_body",
    );
    case("account: id not a UUID", post_json(a, admin, &with(&account, "id", json!("carol"))), 400, "invalid_body");
    case("account: nil id", post_json(a, admin, &with(&account, "id", json!(Uuid::nil()))), 400, "invalid_input");
    case(
        "account: unrestricted as a string",
        post_json(a, admin, &with(&account, "unrestricted", json!("yes"))),
        400,
        "invalid_body",
    );
    case(
        "account: overdraft_limit as a number",
        post_json(a, admin, &with(&account, "overdraft_limit", json!(10))),
        400,
        "invalid_body",
    );
    case(
        "account: overdraft_limit negative",
        post_json(a, admin, &with(&account, "overdraft_limit", json!("-1"))),
        400,
        "invalid_amount",
    );
    case(
        "account: overdraft_limit over-precise",
        post_json(a, admin, &with(&account, "overdraft_limit", json!("1.001"))),
        400,
        "invalid_amount",
    );
    case(
        "account: overdraft_limit with unrestricted",
        post_json(a, admin, &with(&with(&account, "overdraft_limit", json!("5.00")), "unrestricted", json!(true))),
        400,
        "invalid_input",
    );
    case("account: code a number", post_json(a, admin, &with(&account, "code", json!(1))), 400, "invalid_body");
    case("account: empty code", post_json(a, admin, &with(&account, "code", json!(""))), 400, "invalid_input");
    case(
        "account: code of 129 characters",
        post_json(a, admin, &with(&account, "code", json!("c".repeat(129)))),
        400,
        "invalid_input",
    );
    case(
        "account: code that is a UUID",
        post_json(a, admin, &with(&account, "code", json!(Uuid::now_v7()))),
        400,
        "invalid_input",
    );
    case(
        "account: unknown currency",
        post_json(a, admin, &with(&account, "currency", json!("QQQ"))),
        404,
        "currency_not_found",
    );
    case(
        "account: metadata nested 40 levels",
        post_json(a, admin, &with(&account, "metadata", nested(40))),
        400,
        "invalid_body",
    );
    case(
        "account: metadata over 4 KiB",
        post_json(a, admin, &with(&account, "metadata", json!({"blob": "m".repeat(5000)}))),
        400,
        "invalid_input",
    );
    case(
        "account: no content-type",
        request(Method::POST, a, Some(admin), None, Body::from(account_text.clone())),
        415,
        "unsupported_media_type",
    );

    // Batches.
    let batch = json!({"transfers": [valid.clone()]});
    case("batch: truncated", post_bytes(b, op, &batch.to_string().as_bytes()[..20]), 400, "malformed_json");
    case("batch: empty", post_json(b, op, &json!({"transfers": []})), 400, "invalid_body");
    case("batch: transfers an object", post_json(b, op, &json!({"transfers": valid.clone()})), 400, "invalid_body");
    case("batch: missing transfers", post_json(b, op, &json!({"atomic": true})), 400, "invalid_body");
    case("batch: atomic as a string", post_json(b, op, &with(&batch, "atomic", json!("yes"))), 400, "invalid_body");
    case("batch: unknown field", post_json(b, op, &with(&batch, "actor", json!("x"))), 400, "invalid_body");
    case(
        "batch: an item with an unknown field",
        post_json(
            b,
            op,
            &json!({"transfers": [valid.clone(), with(&transfer("alice", "bob", "1.00"), "user_id", json!(1))]}),
        ),
        400,
        "invalid_body",
    );
    case(
        "batch: an item with a numeric amount",
        post_json(b, op, &json!({"transfers": [with(&valid, "amount", json!(1.0))]})),
        400,
        "invalid_body",
    );
    case(
        "batch: an item nested 40 levels",
        post_json(b, op, &json!({"transfers": [with(&valid, "metadata", nested(40))]})),
        400,
        "invalid_body",
    );
    case(
        "batch: no content-type",
        request(Method::POST, b, Some(op), None, Body::from(batch.to_string())),
        415,
        "unsupported_media_type",
    );

    let count = run_refused(&api, WATCHED, cases).await;
    println!("{count} cases");
    assert_eq!(api.balance("alice").await, "100.00");
    api.assert_consistent().await;
}

#[tokio::test]
async fn amounts_are_strict() {
    let api = api().await;
    alice_and_bob(&api).await;
    let amounts = [
        "0",
        "-1",
        "-0.01",
        "+1",
        "0.00",
        "0.0",
        "1.001",
        "1.000",
        "1e3",
        "1E3",
        " 1",
        "1 ",
        "1,00",
        "1_000",
        "",
        ".5",
        "1.",
        "1..0",
        "1.2.3",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        "0x10",
        "0b1",
        "79228162514264337593543950336",
        "792281625142643375935439503.36",
        &"9".repeat(100),
        &"1".repeat(65),
        "١٢",
        "１２",
        "1\n",
        "$1.00",
        "1.00 USD",
    ];
    let mut cases: Vec<Case> = Vec::new();
    // NUL is refused before the amount is read, like NUL anywhere in a body.
    cases.push((
        "transfer amount \"12\\u0000\"".to_owned(),
        post_json("/v1/transfers", &api.operator, &transfer("alice", "bob", "12\u{0}")),
        400,
        "invalid_body",
    ));
    for amount in amounts {
        let what = format!("transfer amount {amount:?}");
        cases.push((
            what,
            post_json("/v1/transfers", &api.operator, &transfer("alice", "bob", amount)),
            400,
            "invalid_amount",
        ));
    }
    for amount in ["0", "1.001", "1e3", "NaN", "-5"] {
        let batch = json!({"transfers": [transfer("alice", "bob", "1.00"), transfer("alice", "bob", amount)]});
        cases.push((
            format!("batch with a second item of amount {amount:?}"),
            post_json("/v1/transfers/batch", &api.operator, &batch),
            400,
            "invalid_amount",
        ));
        let atomic = with(&batch, "atomic", json!(true));
        cases.push((
            format!("atomic batch with a second item of amount {amount:?}"),
            post_json("/v1/transfers/batch", &api.operator, &atomic),
            400,
            "invalid_amount",
        ));
    }
    let count = run_refused(&api, WATCHED, cases).await;
    println!("{count} cases");

    // The batch's error names the item.
    let batch = json!({"transfers": [transfer("alice", "bob", "1.00"), transfer("alice", "bob", "1.001")]});
    let bad_id = batch["transfers"][1]["id"].clone();
    let reply = api.post("/v1/transfers/batch", &api.operator, batch).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["error"]["details"]["index"], json!(1), "{}", reply.body);
    assert_eq!(reply.body["error"]["details"]["transfer_id"], bad_id, "{}", reply.body);

    assert_eq!(api.balance("alice").await, "100.00");
    assert_eq!(api.balance("bob").await, "0.00");
    api.assert_consistent().await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let api = api().await;
    alice_and_bob(&api).await;
    let op = api.operator.as_str();
    let mib = 1 << 20;
    let mut cases: Vec<Case> = Vec::new();

    let huge_transfer = with(&transfer("alice", "bob", "1.00"), "metadata", json!({"blob": "x".repeat(mib + 16)}));
    cases.push(("transfer over 1 MiB".into(), post_json("/v1/transfers", op, &huge_transfer), 413, "body_too_large"));
    let huge_account = json!({"code": "dave", "currency": "USD", "metadata": {"blob": "x".repeat(mib + 16)}});
    cases.push((
        "account over 1 MiB".into(),
        post_json("/v1/accounts", &api.admin, &huge_account),
        413,
        "body_too_large",
    ));
    // The same, streamed with no length known in advance.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = std::iter::once(Ok(b"{\"blob\":\"".to_vec()))
        .chain((0..40).map(|_| Ok(vec![b'y'; 64 * 1024])))
        .chain(std::iter::once(Ok(b"\"}".to_vec())))
        .collect();
    cases.push((
        "streamed transfer body over 1 MiB".into(),
        request(
            Method::POST,
            "/v1/transfers",
            Some(op),
            Some("application/json"),
            Body::from_stream(futures_util::stream::iter(chunks)),
        ),
        413,
        "body_too_large",
    ));
    // Junk over the limit is refused for its size before it is parsed.
    cases.push((
        "1 MiB + 1 of junk".into(),
        post_bytes("/v1/transfers", op, vec![b'{'; mib + 1]),
        413,
        "body_too_large",
    ));
    cases.push((
        "post action body over 1 MiB".into(),
        post_bytes(&format!("/v1/transfers/{}/post", Uuid::now_v7()), op, vec![b' '; mib + 1]),
        413,
        "body_too_large",
    ));
    cases.push((
        "freeze body over 1 MiB".into(),
        post_bytes("/v1/accounts/alice/freeze", &api.admin, vec![b' '; mib + 1]),
        413,
        "body_too_large",
    ));

    let items: Vec<Value> = (0..8_191).map(|_| transfer("alice", "bob", "0.01")).collect();
    let batch = serde_json::to_vec(&json!({"transfers": items})).unwrap();
    assert!(batch.len() < 16 * mib, "{}", batch.len());
    cases.push((
        "batch of 8,191 transfers".into(),
        post_bytes("/v1/transfers/batch", op, batch),
        413,
        "body_too_large",
    ));
    let huge_batch = json!({"transfers": [with(&transfer("alice", "bob", "1.00"), "metadata", json!({"blob": "z".repeat(17 * mib)}))]});
    cases.push(("batch over 16 MiB".into(), post_json("/v1/transfers/batch", op, &huge_batch), 413, "body_too_large"));
    cases.push((
        "empty batch".into(),
        post_json("/v1/transfers/batch", op, &json!({"transfers": []})),
        400,
        "invalid_body",
    ));

    let count = run_refused(&api, WATCHED, cases).await;
    println!("{count} cases");

    // A batch between 1 MiB and 16 MiB is not refused for its size.
    let items: Vec<Value> = (0..4).map(|_| transfer("alice", "bob", "0.01")).collect();
    let big = json!({"transfers": items, "atomic": true});
    let padded = format!("{}{}", serde_json::to_string(&big).unwrap(), " ".repeat(2 * mib));
    let reply = api.raw(post_bytes("/v1/transfers/batch", op, padded)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["applied"], json!(4), "{}", reply.body);
    assert_eq!(api.balance("alice").await, "99.96");
    assert_eq!(api.balance("bob").await, "0.04");
    api.assert_consistent().await;
}

#[tokio::test]
async fn sql_looking_strings_are_only_data() {
    let api = api().await;
    alice_and_bob(&api).await;
    let op = api.operator.as_str();
    let admin = api.admin.as_str();
    let mut cases: Vec<Case> = Vec::new();
    let mut case = |what: &str, request: Request<Body>, status: u16, code: &'static str| {
        cases.push((what.to_owned(), request, status, code));
    };

    // validate_code allows only letters, digits and _.:@/-: quotes, parentheses, spaces and
    // semicolons are refused before any SQL runs.
    case(
        "account code x'); DROP TABLE transfers; --",
        post_json("/v1/accounts", admin, &json!({"code": "x'); DROP TABLE transfers; --", "currency": "USD"})),
        400,
        "invalid_input",
    );
    case(
        "account code ' OR ''='",
        post_json("/v1/accounts", admin, &json!({"code": "' OR ''='", "currency": "USD"})),
        400,
        "invalid_input",
    );
    case(
        "account code alice'--",
        post_json("/v1/accounts", admin, &json!({"code": "alice'--", "currency": "USD"})),
        400,
        "invalid_input",
    );
    case(
        "account currency USD' OR '1'='1",
        post_json("/v1/accounts", admin, &json!({"code": "eve", "currency": "USD' OR '1'='1"})),
        404,
        "currency_not_found",
    );
    case(
        "account currency USD; DROP TABLE currencies",
        post_json("/v1/accounts", admin, &json!({"code": "eve", "currency": "USD; DROP TABLE currencies"})),
        404,
        "currency_not_found",
    );
    case(
        "transfer currency USD' OR '1'='1",
        post_json("/v1/transfers", op, &with(&transfer("alice", "bob", "1.00"), "currency", json!("USD' OR '1'='1"))),
        404,
        "currency_not_found",
    );
    case(
        "transfer from ' OR 1=1 --",
        post_json("/v1/transfers", op, &transfer("' OR 1=1 --", "bob", "1.00")),
        404,
        "account_not_found",
    );
    case(
        "transfer to bob'; DELETE FROM accounts; --",
        post_json("/v1/transfers", op, &transfer("alice", "bob'; DELETE FROM accounts; --", "1.00")),
        404,
        "account_not_found",
    );
    case(
        "transfer from alice' --",
        post_json("/v1/transfers", op, &transfer("alice' --", "bob", "1.00")),
        404,
        "account_not_found",
    );
    case(
        "GET account ' OR 1=1 --",
        get(&format!("/v1/accounts/{}", enc("' OR 1=1 --")), admin),
        404,
        "account_not_found",
    );
    case(
        "GET balance of alice' OR '1'='1",
        get(&format!("/v1/accounts/{}/balance", enc("alice' OR '1'='1")), admin),
        404,
        "account_not_found",
    );
    case(
        "GET history of alice'; DROP TABLE transfers; --",
        get(&format!("/v1/accounts/{}/transfers", enc("alice'; DROP TABLE transfers; --")), admin),
        404,
        "account_not_found",
    );
    case(
        "list transfers of account ' OR '1'='1",
        get(&format!("/v1/transfers?account={}", enc("' OR '1'='1")), admin),
        404,
        "account_not_found",
    );
    case(
        "list accounts with status active' OR '1'='1",
        get(&format!("/v1/accounts?status={}", enc("active' OR '1'='1")), admin),
        400,
        "invalid_query",
    );
    case(
        "list transfers with status posted' OR '1'='1",
        get(&format!("/v1/transfers?status={}", enc("posted' OR '1'='1")), admin),
        400,
        "invalid_query",
    );
    case(
        "freeze ' OR 1=1 --",
        request(Method::POST, &format!("/v1/accounts/{}/freeze", enc("' OR 1=1 --")), Some(admin), None, Body::empty()),
        404,
        "account_not_found",
    );
    let count = run_refused(&api, WATCHED, cases).await;
    println!("{count} cases");

    // A currency filter that looks like SQL matches nothing (there are accounts in USD).
    let reply = api.get(&format!("/v1/accounts?currency={}", enc("USD' OR '1'='1")), admin).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["data"], json!([]), "{}", reply.body);
    let reply = api.get("/v1/accounts?currency=USD", admin).await;
    assert_eq!(reply.body["data"].as_array().map(Vec::len), Some(3), "{}", reply.body);

    // Legitimate requests carrying SQL-looking text succeed and store it verbatim. A control
    // transfer first, to know what one transfer writes.
    let before = api.db.row_counts().await;
    let reply = api.post("/v1/transfers", op, transfer("alice", "bob", "1.00")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let control = delta(&before, &api.db.row_counts().await);
    assert_eq!(count_of(&control, "transfers"), 1, "{control:?}");
    assert_eq!(count_of(&control, "accounts"), 0, "{control:?}");

    let reference = "O'Brien\"; DROP TABLE accounts; --";
    let metadata = json!({"note": "'; DELETE FROM transfers WHERE '1'='1", "q\"uote": "x' OR 1=1 --"});
    let body =
        with(&with(&transfer("alice", "bob", "2.00"), "reference", json!(reference)), "metadata", metadata.clone());
    let id = body["id"].as_str().unwrap().to_owned();
    let before = api.db.row_counts().await;
    let reply = api.post("/v1/transfers", op, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["reference"], json!(reference), "{}", reply.body);
    assert_eq!(
        delta(&before, &api.db.row_counts().await),
        control,
        "an SQL-looking transfer wrote what any transfer writes"
    );
    let shown = api.get(&format!("/v1/transfers/{id}"), admin).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert_eq!(shown.body["transfer"]["reference"], json!(reference), "{}", shown.body);
    assert_eq!(shown.body["transfer"]["metadata"], metadata, "{}", shown.body);
    assert_eq!(api.balance("alice").await, "97.00");
    assert_eq!(api.balance("bob").await, "3.00");

    // An account code made of allowed characters that spell SQL is just a code.
    let before = api.db.row_counts().await;
    let code = "drop-table:transfers--";
    let reply = api
        .post(
            "/v1/accounts",
            admin,
            json!({"code": code, "currency": "USD", "metadata": {"sql": "'); DROP TABLE accounts; --"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["code"], json!(code));
    assert_eq!(count_of(&delta(&before, &api.db.row_counts().await), "accounts"), 1);

    // Every table is still there, and the ledger still works.
    let client = api.db.connect().await;
    for table in ["accounts", "transfers", "audit_log", "events", "currencies", "api_keys", "idempotency_keys"] {
        let row = client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("public.{table}")]).await.unwrap();
        assert!(row.get::<_, bool>(0), "table {table} is gone");
    }
    let reply = api.post("/v1/transfers", op, transfer("alice", code, "1.00")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(api.balance(code).await, "1.00");
    api.assert_consistent().await;
}

fn delta(before: &[(String, i64)], after: &[(String, i64)]) -> Vec<(String, i64)> {
    before.iter().zip(after).map(|((table, b), (_, a))| (table.clone(), a - b)).collect()
}

fn count_of(counts: &[(String, i64)], table: &str) -> i64 {
    counts.iter().find(|(name, _)| name == table).map(|(_, n)| *n).unwrap_or_else(|| panic!("no table {table}"))
}

#[tokio::test]
async fn odd_paths_and_methods() {
    let api = api().await;
    alice_and_bob(&api).await;
    let admin = api.admin.as_str();
    let op = api.operator.as_str();
    let long = "a".repeat(10_000);
    let mut cases: Vec<Case> = Vec::new();
    let mut case = |what: &str, request: Request<Body>, status: u16, code: &'static str| {
        cases.push((what.to_owned(), request, status, code));
    };
    case("transfer id not a UUID", get("/v1/transfers/not-a-uuid", admin), 400, "invalid_input");
    case("transfer id a number", get("/v1/transfers/12345", admin), 400, "invalid_input");
    case(
        "transfer id one hex digit short",
        get(&format!("/v1/transfers/{}", &Uuid::now_v7().to_string()[1..]), admin),
        400,
        "invalid_input",
    );
    case("transfer id very long", get(&format!("/v1/transfers/{long}"), admin), 400, "invalid_input");
    case("transfer id %00", get("/v1/transfers/%00", admin), 400, "invalid_input");
    case(
        "post a transfer id not a UUID",
        request(Method::POST, "/v1/transfers/nope/post", Some(op), None, Body::empty()),
        400,
        "invalid_input",
    );
    case(
        "void a transfer id not a UUID",
        request(Method::POST, "/v1/transfers/nope/void", Some(op), None, Body::empty()),
        400,
        "invalid_input",
    );
    case(
        "reverse a transfer id not a UUID",
        request(Method::POST, "/v1/transfers/nope/reverse", Some(op), None, Body::empty()),
        400,
        "invalid_input",
    );
    case("unknown transfer id", get(&format!("/v1/transfers/{}", Uuid::now_v7()), admin), 404, "transfer_not_found");
    case("nil transfer id", get(&format!("/v1/transfers/{}", Uuid::nil()), admin), 404, "transfer_not_found");
    case("account %00", get("/v1/accounts/%00", admin), 400, "invalid_input");
    case("balance of account %00", get("/v1/accounts/%00/balance", admin), 400, "invalid_input");
    case("account a%00b", get("/v1/accounts/a%00b", admin), 400, "invalid_input");
    case("account with invalid UTF-8 %FF", get("/v1/accounts/%FF%FE", admin), 400, "invalid_input");
    case("account code 10,000 characters", get(&format!("/v1/accounts/{long}"), admin), 404, "account_not_found");
    case(
        "balance of a 10,000-character code",
        get(&format!("/v1/accounts/{long}/balance"), admin),
        404,
        "account_not_found",
    );
    case("unknown account id", get(&format!("/v1/accounts/{}", Uuid::now_v7()), admin), 404, "account_not_found");
    case("/v1/nope", get("/v1/nope", admin), 404, "not_found");
    case("/v1/nope without a key", request(Method::GET, "/v1/nope", None, None, Body::empty()), 404, "not_found");
    case("/v2/accounts", get("/v2/accounts", admin), 404, "not_found");
    case("/v1/accounts/alice/nope", get("/v1/accounts/alice/nope", admin), 404, "not_found");
    case("/ root", get("/", admin), 404, "not_found");
    case(
        "DELETE /v1/accounts",
        request(Method::DELETE, "/v1/accounts", Some(admin), None, Body::empty()),
        405,
        "method_not_allowed",
    );
    case(
        "DELETE /v1/accounts/alice",
        request(Method::DELETE, "/v1/accounts/alice", Some(admin), None, Body::empty()),
        405,
        "method_not_allowed",
    );
    case(
        "PUT /v1/transfers",
        request(Method::PUT, "/v1/transfers", Some(admin), Some("application/json"), Body::from("{}")),
        405,
        "method_not_allowed",
    );
    case("GET /v1/transfers/batch", get("/v1/transfers/batch", admin), 405, "method_not_allowed");
    case("PATCH /healthz", request(Method::PATCH, "/healthz", None, None, Body::empty()), 405, "method_not_allowed");
    case("GET /v1/accounts/alice/freeze", get("/v1/accounts/alice/freeze", admin), 405, "method_not_allowed");
    // Queries.
    case("accounts limit=0", get("/v1/accounts?limit=0", admin), 400, "invalid_query");
    case("accounts limit=abc", get("/v1/accounts?limit=abc", admin), 400, "invalid_query");
    case("accounts limit=-1", get("/v1/accounts?limit=-1", admin), 400, "invalid_query");
    case("accounts limit=2^64", get("/v1/accounts?limit=18446744073709551616", admin), 400, "invalid_query");
    case("accounts cursor not a UUID", get("/v1/accounts?cursor=nope", admin), 400, "invalid_query");
    case("accounts unknown parameter", get("/v1/accounts?drop=table", admin), 400, "invalid_query");
    case("accounts status bogus", get("/v1/accounts?status=bogus", admin), 400, "invalid_query");
    case("transfers since not a time", get("/v1/transfers?since=yesterday", admin), 400, "invalid_query");
    case("transfers status bogus", get("/v1/transfers?status=bogus", admin), 400, "invalid_query");
    case("transfers cursor not a number", get("/v1/transfers?cursor=x", admin), 400, "invalid_query");
    case("audit after not a number", get("/v1/audit?after=x", admin), 400, "invalid_query");
    case("events wait not a number", get("/v1/events?wait=forever", admin), 400, "invalid_query");
    case("history limit 0", get("/v1/accounts/alice/transfers?limit=0", admin), 400, "invalid_query");
    // Account status changes with bad bodies or headers.
    case("freeze with truncated JSON", post_bytes("/v1/accounts/alice/freeze", admin, "{"), 400, "malformed_json");
    case(
        "freeze with expected_version a string",
        post_json("/v1/accounts/alice/freeze", admin, &json!({"expected_version": "1"})),
        400,
        "invalid_body",
    );
    case(
        "freeze with an unknown field",
        post_json("/v1/accounts/alice/freeze", admin, &json!({"actor": "key:nobody"})),
        400,
        "invalid_body",
    );
    case(
        "freeze with If-Match abc",
        Request::post("/v1/accounts/alice/freeze")
            .header("authorization", format!("Bearer {admin}"))
            .header("if-match", "abc")
            .body(Body::empty())
            .unwrap(),
        400,
        "invalid_header",
    );
    case(
        "post action with a numeric amount",
        post_json(&format!("/v1/transfers/{}/post", Uuid::now_v7()), op, &json!({"amount": 1})),
        400,
        "invalid_body",
    );
    case(
        "void action with an amount",
        post_json(&format!("/v1/transfers/{}/void", Uuid::now_v7()), op, &json!({"amount": "1.00"})),
        400,
        "invalid_body",
    );
    case(
        "reverse action with an unknown field",
        post_json(&format!("/v1/transfers/{}/reverse", Uuid::now_v7()), op, &json!({"user_id": 1})),
        400,
        "invalid_body",
    );
    let count = run_refused(&api, WATCHED, cases).await;
    println!("{count} cases");

    let reply = api.raw(request(Method::GET, "/healthz", None, None, Body::empty())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    api.assert_consistent().await;
}

#[tokio::test]
async fn nul_bytes_are_refused_not_server_errors() {
    let api = api().await;
    alice_and_bob(&api).await;
    let op = api.operator.as_str();
    let admin = api.admin.as_str();
    // PostgreSQL text and jsonb cannot hold U+0000. Whatever the code, the answer must be a 4xx
    // in the error shape, and nothing may be written.
    let cases: Vec<(&str, Request<Body>)> = vec![
        ("transfer from \"\\u0000\"", post_json("/v1/transfers", op, &transfer("\u{0}", "bob", "1.00"))),
        ("transfer to \"bob\\u0000\"", post_json("/v1/transfers", op, &transfer("alice", "bob\u{0}", "1.00"))),
        (
            "transfer currency \"USD\\u0000\"",
            post_json("/v1/transfers", op, &with(&transfer("alice", "bob", "1.00"), "currency", json!("USD\u{0}"))),
        ),
        (
            "transfer reference \"a\\u0000b\"",
            post_json("/v1/transfers", op, &with(&transfer("alice", "bob", "1.00"), "reference", json!("a\u{0}b"))),
        ),
        (
            "transfer metadata value \"\\u0000\"",
            post_json("/v1/transfers", op, &with(&transfer("alice", "bob", "1.00"), "metadata", json!({"k": "\u{0}"}))),
        ),
        (
            "transfer metadata key \"\\u0000\"",
            post_json("/v1/transfers", op, &with(&transfer("alice", "bob", "1.00"), "metadata", json!({"\u{0}": 1}))),
        ),
        ("account code \"a\\u0000\"", post_json("/v1/accounts", admin, &json!({"code": "a\u{0}", "currency": "USD"}))),
        (
            "account currency \"USD\\u0000\"",
            post_json("/v1/accounts", admin, &json!({"code": "nul", "currency": "USD\u{0}"})),
        ),
        (
            "account metadata \"\\u0000\"",
            post_json("/v1/accounts", admin, &json!({"code": "nul", "currency": "USD", "metadata": {"k": "\u{0}"}})),
        ),
        ("GET /v1/accounts?currency=%00", get("/v1/accounts?currency=%00", admin)),
        ("GET /v1/transfers?account=%00", get("/v1/transfers?account=%00", admin)),
    ];
    let count = cases.len();
    let mut failures = Vec::new();
    for (what, request) in cases {
        let before = snapshot(&api, WATCHED).await;
        let reply = api.raw(request).await;
        let after = snapshot(&api, WATCHED).await;
        let mut problems = shape_problems(&reply);
        if !reply.status.is_client_error() {
            problems.insert(0, format!("status {} (expected a 4xx)", reply.status.as_u16()));
        }
        if before != after {
            problems.push(format!("something was written: before {before:?}, after {after:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!("- {what}: {}; reply body {}", problems.join("; "), reply.body));
        }
    }
    assert!(failures.is_empty(), "{} of {count} cases failed:\n{}", failures.len(), failures.join("\n"));

    // The engine still works afterwards.
    let reply = api.post("/v1/transfers", op, transfer("alice", "bob", "1.00")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(api.balance("bob").await, "1.00");
    api.assert_consistent().await;
}

#[tokio::test]
async fn authentication_failures_are_401() {
    let api = api().await;
    let alice = alice_and_bob(&api).await;
    let victim = api.key("victim", Role::Admin, vec![]).await;
    let reply = api.get("/v1/accounts", &victim).await;
    assert_eq!(reply.status, StatusCode::OK, "the key works before it is revoked: {}", reply.body);
    api.db.store.revoke_api_key("victim", "test").await.expect("revoke");

    let admin = api.admin.clone();
    let one_off = {
        let mut key = admin.clone();
        let last = key.pop().unwrap();
        key.push(if last == '0' { '1' } else { '0' });
        key
    };
    let header = |text: String| Some(HeaderValue::from_str(&text).unwrap());
    let authorizations: Vec<(&str, Option<HeaderValue>)> = vec![
        ("no Authorization header", None),
        ("Basic credentials", header("Basic YWRtaW46YWRtaW4=".into())),
        ("Basic with the admin key", header(format!("Basic {admin}"))),
        ("Bearer with an empty key", header("Bearer ".into())),
        ("Bearer alone", header("Bearer".into())),
        ("an empty header", header(String::new())),
        ("the bare key, no scheme", header(admin.clone())),
        ("Token scheme", header(format!("Token {admin}"))),
        ("tly_ and 64 zeros", header(format!("Bearer tly_{}", "0".repeat(64)))),
        ("tly_ and 64 non-hex letters", header(format!("Bearer tly_{}", "g".repeat(64)))),
        ("a key one character off", header(format!("Bearer {one_off}"))),
        ("a key one character short", header(format!("Bearer {}", &admin[..admin.len() - 1]))),
        ("a key one character long", header(format!("Bearer {admin}0"))),
        ("the key upper-cased", header(format!("Bearer {}", admin.to_uppercase()))),
        ("another prefix", header(format!("Bearer sk_{}", &admin[4..]))),
        ("the key with a suffix after a space", header(format!("Bearer {admin} x"))),
        ("the key's stored prefix only", header(format!("Bearer {}", &admin[..12]))),
        ("SQL in the key", header(format!("Bearer tly_' OR '1'='1' --{}", "0".repeat(48)))),
        ("a revoked key", header(format!("Bearer {victim}"))),
        ("non-ASCII bytes", Some(HeaderValue::from_bytes(&[b"Bearer tly_".as_slice(), &[0xff; 64]].concat()).unwrap())),
    ];
    let account = json!({"code": "mallory", "currency": "USD"});
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/accounts".into(), None),
        (Method::GET, "/v1/accounts/alice/balance".into(), None),
        (Method::GET, format!("/v1/accounts/{alice}/transfers"), None),
        (Method::POST, "/v1/accounts".into(), Some(account)),
        (Method::POST, "/v1/accounts/alice/freeze".into(), None),
        (Method::POST, "/v1/transfers".into(), Some(transfer("alice", "bob", "1.00"))),
        (Method::POST, "/v1/transfers/batch".into(), Some(json!({"transfers": [transfer("alice", "bob", "1.00")]}))),
        (Method::GET, "/v1/transfers".into(), None),
        (Method::GET, format!("/v1/transfers/{}", Uuid::now_v7()), None),
        (Method::GET, "/v1/audit".into(), None),
        (Method::GET, "/v1/events".into(), None),
        (Method::GET, "/metrics".into(), None),
        (Method::GET, "/readyz".into(), None),
        (Method::GET, "/openapi.json".into(), None),
    ];
    let mut cases: Vec<Case> = Vec::new();
    for (method, path, body) in &routes {
        for (what, authorization) in &authorizations {
            cases.push((
                format!("{what} on {method} {path}"),
                with_auth(method.clone(), path, authorization.clone(), body.as_ref()),
                401,
                "unauthenticated",
            ));
        }
    }
    let count = run_refused(&api, WATCHED, cases).await;
    assert_eq!(count, routes.len() * authorizations.len());
    println!("{count} cases");

    // /healthz needs no key, and a bad one does not matter there.
    for (what, authorization) in [("no key", None), ("a bad key", header("Bearer nope".into()))] {
        let reply = api.raw(with_auth(Method::GET, "/healthz", authorization, None)).await;
        assert_eq!(reply.status, StatusCode::OK, "/healthz with {what}: {}", reply.body);
    }
    // The real key still works, and extra spaces around it are tolerated.
    let reply = api.raw(with_auth(Method::GET, "/v1/accounts", header(format!("Bearer  {admin} ")), None)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(api.balance("alice").await, "100.00");
    api.assert_consistent().await;
}

#[tokio::test]
async fn roles_are_enforced() {
    let api = api().await;
    let alice = alice_and_bob(&api).await;
    let bob = api.db.store.require_account("bob").await.unwrap().account.id.0;
    let reader = api.key("r", Role::Reader, vec![alice]).await;
    let reader = reader.as_str();
    let op = api.operator.as_str();
    let auditor = api.auditor.as_str();
    let move_money = transfer("alice", "bob", "1.00");
    let batch = json!({"transfers": [transfer("alice", "bob", "1.00")]});
    let account = json!({"code": "trent", "currency": "USD"});
    let funded = api.get("/v1/transfers?account=alice", &api.admin).await;
    let funding_id = funded.body["data"][0]["id"].as_str().unwrap().to_owned();
    let bank = api.db.store.require_account("bank-alice").await.unwrap().account.id.0;
    let reply = api.post("/v1/transfers", op, transfer("bank-alice", "bob", "5.00")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let bobs_id = reply.body["id"].as_str().unwrap().to_owned();
    let watched = &["alice", "bob", "bank-alice"];

    let empty = || Body::empty();
    let mut cases: Vec<Case> = Vec::new();
    let mut case = |what: &str, request: Request<Body>| cases.push((what.to_owned(), request, 403, "forbidden"));
    // Auditors read, never write.
    case("auditor POST /v1/transfers", post_json("/v1/transfers", auditor, &move_money));
    case("auditor POST /v1/transfers/batch", post_json("/v1/transfers/batch", auditor, &batch));
    case("auditor POST /v1/accounts", post_json("/v1/accounts", auditor, &account));
    case("auditor freezes", request(Method::POST, "/v1/accounts/alice/freeze", Some(auditor), None, empty()));
    case(
        "auditor reverses",
        request(Method::POST, &format!("/v1/transfers/{funding_id}/reverse"), Some(auditor), None, empty()),
    );
    // Operators move money, but open no accounts and read no audit.
    case("operator POST /v1/accounts", post_json("/v1/accounts", op, &account));
    case("operator freezes", request(Method::POST, "/v1/accounts/alice/freeze", Some(op), None, empty()));
    case("operator closes", request(Method::POST, "/v1/accounts/bob/close", Some(op), None, empty()));
    case("operator GET /v1/audit", get("/v1/audit", op));
    // A reader cannot tell an account that does not exist from one it may not read.
    case("reader reads a missing code", get("/v1/accounts/no-such-account", reader));
    // Readers read their own accounts only.
    case("reader reads bob's balance", get("/v1/accounts/bob/balance", reader));
    case("reader reads bob's balance by id", get(&format!("/v1/accounts/{bob}/balance"), reader));
    case("reader reads bob", get("/v1/accounts/bob", reader));
    case("reader reads bob's history", get("/v1/accounts/bob/transfers", reader));
    case("reader reads bank-alice by id", get(&format!("/v1/accounts/{bank}"), reader));
    case("reader lists accounts", get("/v1/accounts", reader));
    case("reader lists transfers without an account", get("/v1/transfers", reader));
    case("reader lists bob's transfers", get("/v1/transfers?account=bob", reader));
    case("reader reads a transfer between others", get(&format!("/v1/transfers/{bobs_id}"), reader));
    case("reader moves money out of its account", post_json("/v1/transfers", reader, &move_money));
    case(
        "reader moves money into its account",
        post_json("/v1/transfers", reader, &transfer("bank-alice", "alice", "1.00")),
    );
    case("reader posts a batch", post_json("/v1/transfers/batch", reader, &batch));
    case("reader opens an account", post_json("/v1/accounts", reader, &account));
    case("reader freezes its account", request(Method::POST, "/v1/accounts/alice/freeze", Some(reader), None, empty()));
    case(
        "reader reverses",
        request(Method::POST, &format!("/v1/transfers/{funding_id}/reverse"), Some(reader), None, empty()),
    );
    case(
        "reader voids",
        request(Method::POST, &format!("/v1/transfers/{funding_id}/void"), Some(reader), None, empty()),
    );
    case("reader GET /v1/audit", get("/v1/audit", reader));
    case("reader GET /v1/events", get("/v1/events", reader));
    case("reader GET /metrics", get("/metrics", reader));
    let count = run_refused(&api, watched, cases).await;
    println!("{count} cases");

    // What each role may do.
    let allowed = [
        ("reader reads its balance", get("/v1/accounts/alice/balance", reader)),
        ("reader reads its balance by id", get(&format!("/v1/accounts/{alice}/balance"), reader)),
        ("reader reads its account", get("/v1/accounts/alice", reader)),
        ("reader reads its history", get("/v1/accounts/alice/transfers", reader)),
        ("reader lists its transfers", get("/v1/transfers?account=alice", reader)),
        ("reader reads its funding transfer", get(&format!("/v1/transfers/{funding_id}"), reader)),
        ("auditor GET /v1/audit", get("/v1/audit", auditor)),
        ("auditor GET /v1/events", get("/v1/events", auditor)),
        ("auditor lists accounts", get("/v1/accounts", auditor)),
        ("operator lists transfers", get("/v1/transfers", op)),
        // Events are the integration feed: operators read them; the audit log is for auditors.
        ("operator GET /v1/events", get("/v1/events", op)),
    ];
    for (what, request) in allowed {
        let reply = api.raw(request).await;
        assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.body);
    }
    let reply = api.get("/v1/accounts/alice/balance", reader).await;
    assert_eq!(reply.body["balance"], json!("100.00"), "{}", reply.body);
    assert_eq!(api.balance("alice").await, "100.00");
    assert_eq!(api.balance("bob").await, "5.00");
    api.assert_consistent().await;
}

#[tokio::test]
async fn idempotency_keys_replay_or_refuse() {
    let api = api().await;
    let admin = api.admin.as_str();
    let post = |key: &str, idempotency: &str, body: &Value| {
        Request::post("/v1/accounts")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .header("idempotency-key", idempotency)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let first_body = json!({"code": "idem-1", "currency": "USD", "metadata": {"n": 1}});
    let before = api.db.row_counts().await;
    let first = api.raw(post(admin, "k1", &first_body)).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let created = delta(&before, &api.db.row_counts().await);
    assert_eq!(count_of(&created, "accounts"), 1, "{created:?}");
    assert_eq!(count_of(&created, "idempotency_keys"), 1, "{created:?}");

    let before = api.db.row_counts().await;
    let second = api.raw(post(admin, "k1", &first_body)).await;
    assert_eq!(second.status, first.status, "{}", second.body);
    assert_eq!(second.body, first.body);
    assert_eq!(second.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(api.db.row_counts().await, before, "a replay writes nothing");

    // The same key with key-order changes only is the same request.
    let reordered = api
        .raw(post(
            admin,
            "k1",
            &serde_json::from_str(r#"{"metadata":{"n":1},"currency":"USD","code":"idem-1"}"#).unwrap(),
        ))
        .await;
    assert_eq!(reordered.status, StatusCode::CREATED, "{}", reordered.body);
    assert_eq!(reordered.body, first.body);

    let long = "k".repeat(256);
    let mut cases: Vec<Case> = vec![
        (
            "same key, different body".into(),
            post(admin, "k1", &json!({"code": "idem-2", "currency": "USD"})),
            422,
            "idempotency_key_reused",
        ),
        (
            "same key, body differing only in metadata".into(),
            post(admin, "k1", &json!({"code": "idem-1", "currency": "USD", "metadata": {"n": 2}})),
            422,
            "idempotency_key_reused",
        ),
        (
            "an Idempotency-Key of 256 characters".into(),
            post(admin, &long, &json!({"code": "idem-3", "currency": "USD"})),
            400,
            "invalid_header",
        ),
        (
            "an empty Idempotency-Key".into(),
            post(admin, "", &json!({"code": "idem-4", "currency": "USD"})),
            400,
            "invalid_header",
        ),
    ];
    let mut non_ascii = post(admin, "x", &json!({"code": "idem-5", "currency": "USD"}));
    non_ascii.headers_mut().insert("idempotency-key", HeaderValue::from_bytes(b"k\xe9y").unwrap());
    cases.push(("a non-ASCII Idempotency-Key".into(), non_ascii, 400, "invalid_header"));
    let count = run_refused(&api, &[], cases).await;
    println!("{count} cases");
    for code in ["idem-2", "idem-3", "idem-4", "idem-5"] {
        let reply = api.get(&format!("/v1/accounts/{code}"), admin).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{code} must not exist: {}", reply.body);
    }

    // 255 characters is allowed; SQL-looking keys are only keys; another principal's k1 is its own.
    let longest = "k".repeat(255);
    for (what, key, idempotency, code) in [
        ("a 255-character key", admin.to_owned(), longest.as_str(), "idem-6"),
        ("an SQL-looking key", admin.to_owned(), "k1' OR '1'='1", "idem-7"),
        ("another admin's k1", api.key("admin2", Role::Admin, vec![]).await, "k1", "idem-8"),
    ] {
        let body = json!({"code": code, "currency": "USD"});
        let reply = api.raw(post(&key, idempotency, &body)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{what}: {}", reply.body);
        assert_eq!(reply.body["code"], json!(code), "{what}");
        let before = api.db.row_counts().await;
        let again = api.raw(post(&key, idempotency, &body)).await;
        assert_eq!((again.status, &again.body), (reply.status, &reply.body), "{what}");
        assert_eq!(again.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"), "{what}");
        assert_eq!(api.db.row_counts().await, before, "{what}: a replay writes nothing");
    }
    let reply = api.get("/v1/accounts?currency=USD", admin).await;
    let codes: Vec<&str> = reply.body["data"].as_array().unwrap().iter().filter_map(|a| a["code"].as_str()).collect();
    let mut codes = codes;
    codes.sort_unstable();
    assert_eq!(codes, ["idem-1", "idem-6", "idem-7", "idem-8"]);
    api.assert_consistent().await;
}

#[tokio::test]
async fn transfer_ids_are_decided_once() {
    let api = api().await;
    alice_and_bob(&api).await;
    let op = api.operator.as_str();
    let body = transfer("alice", "bob", "10.00");
    let first = api.post("/v1/transfers", op, body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert!(first.headers.get("idempotent-replayed").is_none());
    assert_eq!(api.balance("alice").await, "90.00");
    assert_eq!(api.balance("bob").await, "10.00");

    // The same body again: a replay, and money moved once.
    let before = api.db.row_counts().await;
    let again = api.post("/v1/transfers", op, body.clone()).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(again.body, first.body);
    assert_eq!(api.db.row_counts().await, before, "a replay writes nothing");
    assert_eq!(api.balance("alice").await, "90.00");
    assert_eq!(api.balance("bob").await, "10.00");

    // The same id with anything different: 409, nothing written.
    let id = body["id"].clone();
    let mut cases: Vec<Case> = Vec::new();
    let differing = [
        ("a different amount", with(&body, "amount", json!("20.00"))),
        ("a smaller amount", with(&body, "amount", json!("9.99"))),
        ("a different credit account", with(&body, "to", json!("bank-alice"))),
        ("swapped accounts", with(&with(&body, "from", json!("bob")), "to", json!("alice"))),
        ("a reference added", with(&body, "reference", json!("again"))),
        ("metadata added", with(&body, "metadata", json!({"retry": true}))),
        ("as a pending transfer", with(&body, "pending", json!(true))),
    ];
    for (what, changed) in differing {
        assert_eq!(changed["id"], id);
        cases.push((
            format!("transfer id reused with {what}"),
            post_json("/v1/transfers", op, &changed),
            409,
            "exists_with_different_fields",
        ));
    }
    let count = run_refused(&api, WATCHED, cases).await;
    println!("{count} cases");

    // In a batch the reused id is reported per item, and moves nothing.
    let before = api.db.row_counts().await;
    let reply = api
        .post("/v1/transfers/batch", op, json!({"transfers": [body.clone(), with(&body, "amount", json!("20.00"))]}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["applied"], json!(0), "{}", reply.body);
    assert_eq!(reply.body["results"][0]["result"], json!("exists"), "{}", reply.body);
    assert_eq!(reply.body["results"][1]["result"], json!("exists_with_different_fields"), "{}", reply.body);
    assert_eq!(reply.body["results"][1]["status"], json!(409), "{}", reply.body);
    assert_eq!(api.db.row_counts().await, before);

    assert_eq!(api.balance("alice").await, "90.00");
    assert_eq!(api.balance("bob").await, "10.00");
    let history = api.get("/v1/accounts/bob/transfers", &api.admin).await;
    assert_eq!(history.body["data"].as_array().map(Vec::len), Some(1), "{}", history.body);
    api.assert_consistent().await;
}

#[tokio::test]
async fn the_actor_is_the_keys_principal() {
    let api = api().await;
    let alice = alice_and_bob(&api).await;
    let op = api.operator.as_str();
    let body = transfer("alice", "bob", "3.00");
    let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();
    let reply = api.post("/v1/transfers", op, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let client = api.db.connect().await;
    let row = client.query_one("SELECT actor FROM transfers WHERE id = $1", &[&id]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "key:operator");
    let history = api.get("/v1/accounts/bob/transfers", &api.admin).await;
    assert_eq!(history.body["data"][0]["actor"], json!("key:operator"), "{}", history.body);
    // The account was opened by the admin key, and its audit rows say so.
    let actors: Vec<String> = client
        .query(
            "SELECT DISTINCT actor FROM audit_log WHERE entity_type = 'account' AND entity_id = $1",
            &[&alice.to_string()],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(actors.contains(&"key:admin".to_owned()), "{actors:?}");
    assert!(actors.iter().all(|actor| actor.starts_with("key:")), "{actors:?}");

    // A caller cannot name its own actor.
    let cases: Vec<Case> = [
        ("actor", json!("key:admin")),
        ("user_id", json!("admin")),
        ("actor", json!(null)),
        ("principal", json!("key:admin")),
        ("created_by", json!("admin")),
    ]
    .into_iter()
    .map(|(field, value)| {
        let body = with(&transfer("alice", "bob", "1.00"), field, value.clone());
        (format!("a transfer with {field}: {value}"), post_json("/v1/transfers", op, &body), 400, "invalid_body")
    })
    .chain(std::iter::once((
        "a batch item with actor".to_owned(),
        post_json(
            "/v1/transfers/batch",
            op,
            &json!({"transfers": [with(&transfer("alice", "bob", "1.00"), "actor", json!("key:admin"))]}),
        ),
        400,
        "invalid_body",
    )))
    .chain(std::iter::once((
        "an account with actor".to_owned(),
        post_json("/v1/accounts", &api.admin, &json!({"code": "imp", "currency": "USD", "actor": "key:root"})),
        400,
        "invalid_body",
    )))
    .collect();
    let count = run_refused(&api, WATCHED, cases).await;
    println!("{count} cases");
    let actors: Vec<String> =
        client.query("SELECT DISTINCT actor FROM transfers", &[]).await.unwrap().iter().map(|row| row.get(0)).collect();
    assert_eq!(actors, ["key:operator"]);
    api.assert_consistent().await;
}

#[tokio::test]
async fn a_bad_transfer_does_not_fail_its_neighbours() {
    let api = api().await;
    alice_and_bob(&api).await;
    let op = api.operator.as_str();
    // Submitted together, so that the engine may put them in one batch: the text PostgreSQL
    // cannot store must be refused on its own, and the good transfers applied.
    let poisoned = with(&transfer("alice", "bob", "1.00"), "reference", json!("nul\u{0}here"));
    let good_one = transfer("alice", "bob", "2.00");
    let good_two = transfer("bank-alice", "bob", "3.00");
    let (bad, one, two) = tokio::join!(
        api.raw(post_json("/v1/transfers", op, &poisoned)),
        api.raw(post_json("/v1/transfers", op, &good_one)),
        api.raw(post_json("/v1/transfers", op, &good_two)),
    );
    let mut problems = Vec::new();
    if !bad.status.is_client_error() {
        problems.push(format!("the poisoned transfer: status {} (expected a 4xx): {}", bad.status.as_u16(), bad.body));
    }
    if bad.body.to_string().contains("ERROR") || bad.body.to_string().contains("22021") {
        problems.push(format!("the poisoned transfer's answer repeats the database's words: {}", bad.body));
    }
    for (what, reply) in [("the 2.00 neighbour", &one), ("the 3.00 neighbour", &two)] {
        if reply.status != StatusCode::CREATED {
            problems.push(format!("{what}: status {} (expected 201): {}", reply.status.as_u16(), reply.body));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(api.balance("bob").await, "5.00");
    assert_eq!(api.balance("alice").await, "98.00");
    api.assert_consistent().await;
}
