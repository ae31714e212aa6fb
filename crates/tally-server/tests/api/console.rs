//! What the operator console stands on: `/console/` (the built page, with its security
//! headers) and `/v1/whoami` (the signed-in key's role, which decides what the console shows).

use crate::support::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use tally_store::Role;

async fn page(api: &Api, path: &str) -> Reply {
    api.raw(Request::get(path).body(Body::empty()).unwrap()).await
}

/// The console's own security headers, on every answer under `/console/`.
fn assert_secured(reply: &Reply, path: &str) {
    let csp = reply.headers["content-security-policy"].to_str().unwrap();
    assert_eq!(csp, tally_server::console::CONTENT_SECURITY_POLICY, "{path}");
    assert_eq!(reply.headers["x-content-type-options"], "nosniff", "{path}");
    assert_eq!(reply.headers["x-frame-options"], "DENY", "{path}");
    assert_eq!(reply.headers["referrer-policy"], "no-referrer", "{path}");
}

/// The `src` or `href` values of `attribute` in an HTML page.
fn links<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!("{attribute}=\"");
    html.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            &rest[..rest.find('"').expect("a closing quote")]
        })
        .collect()
}

#[tokio::test]
async fn the_console_is_served_without_a_key_with_its_policy_and_every_file_it_names() {
    let api = api().await;
    let redirect = page(&api, "/console").await;
    assert_eq!(redirect.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers["location"], "/console/");

    let index = page(&api, "/console/").await;
    assert_eq!(index.status, StatusCode::OK, "{}", index.text);
    assert!(index.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_secured(&index, "/console/");
    // No inline script: every <script> names its file (the policy would refuse it anyway).
    let scripts = index.text.matches("<script").count();
    let sources = links(&index.text, "src");
    assert!(sources.len() >= scripts, "an inline script in index.html:\n{}", index.text);
    assert!(!index.text.contains("<style"), "an inline style in index.html");
    // An inline `data:` icon loads nothing (the policy allows images from `data:`).
    let hrefs = links(&index.text, "href").into_iter().filter(|href| !href.starts_with("data:"));
    for file in sources.into_iter().chain(hrefs) {
        assert!(file.starts_with("/console/"), "{file}: every file is the console's own, on this origin");
        let reply = page(&api, file).await;
        assert_eq!(reply.status, StatusCode::OK, "{file}");
        assert_secured(&reply, file);
        let kind = reply.headers["content-type"].to_str().unwrap();
        if file.ends_with(".js") {
            assert_eq!(kind, "text/javascript", "{file}: a module script needs a JavaScript type");
        }
        if file.ends_with(".css") {
            assert_eq!(kind, "text/css", "{file}");
        }
        // Unchanged files cost a 304.
        let etag = reply.headers["etag"].clone();
        let again = api.raw(Request::get(file).header("if-none-match", etag).body(Body::empty()).unwrap()).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{file}");
    }
    for missing in ["/console/nothing.js", "/console/../Cargo.toml", "/console/.env", "/console/assets/%2e%2e/x"] {
        let reply = page(&api, missing).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::NOT_FOUND, "not_found"), "{missing}");
    }
}

#[tokio::test]
async fn whoami_names_the_key_its_role_and_its_scope() {
    let api = api().await;
    let alice = api.funded("alice", "1.00").await;
    let reader = api.key("alice-app", Role::Reader, vec![alice]).await;
    for (key, name, role) in
        [(&api.admin, "admin", "admin"), (&api.operator, "operator", "operator"), (&api.auditor, "auditor", "auditor")]
    {
        let me = api.get("/v1/whoami", key).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.body);
        assert_eq!((me.body["name"].as_str(), me.body["role"].as_str()), (Some(name), Some(role)));
        assert_eq!(me.body["actor"], format!("key:{name}"));
        assert_eq!(me.body["accounts"], serde_json::json!([]));
    }
    let me = api.get("/v1/whoami", &reader).await;
    assert_eq!(me.body["role"], "reader");
    assert_eq!(me.body["accounts"], serde_json::json!([alice]));
    assert_eq!(api.get("/v1/whoami", "tly_wrong").await.status, StatusCode::UNAUTHORIZED);
}
