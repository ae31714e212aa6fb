//! `/console/`: the operator console, a single-page app built from `console/` (Vite, TypeScript,
//! Preact) into `console/dist/`, embedded in the binary when it is compiled.
//!
//! The console is a client of the REST API like any other: the page itself needs no key (it
//! holds no data), and it sends the key the operator signs in with, kept in the browser's
//! session storage, on every API call. Every answer here carries a Content-Security-Policy that
//! allows scripts, styles and connections from this origin only: no inline script, no other
//! host.
//!
//! `ServerConfig::console_dir` (`tally serve --console-dir`, or `TALLY_CONSOLE_DIR`) serves
//! the files from a directory instead, for working on the console without rebuilding Tally.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use rust_embed::RustEmbed;
use std::borrow::Cow;

use crate::error::ApiError;
use crate::state::AppState;

/// The built console, embedded at compile time.
#[derive(RustEmbed)]
#[folder = "../../console/dist/"]
struct Assets;

/// What a console page may load: only this origin, no inline script or style, no frames.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The largest file served from `console_dir` (the embedded files are whatever was built).
pub const CONSOLE_FILE_BYTES_MAX: u64 = 8 << 20;

/// The entry page.
const INDEX: &str = "index.html";

/// A file of the console and its fingerprint.
struct File {
    body: Cow<'static, [u8]>,
    mime: String,
    etag: String,
}

/// A path inside the console: relative, made of plain names only (no `..`, no hidden files).
fn safe(path: &str) -> Option<&str> {
    let plain = |part: &str| !part.is_empty() && !part.starts_with('.') && !part.contains('\\');
    (path.split('/').all(plain)).then_some(path)
}

async fn load(state: &AppState, path: &str) -> Option<File> {
    let path = safe(path)?;
    match &state.config.console_dir {
        None => {
            let file = Assets::get(path)?;
            let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
            Some(File { mime: file.metadata.mimetype().to_owned(), body: file.data, etag })
        }
        Some(dir) => {
            let full = dir.join(path);
            let meta = tokio::fs::metadata(&full).await.ok()?;
            if !meta.is_file() || meta.len() > CONSOLE_FILE_BYTES_MAX {
                return None;
            }
            let body = tokio::fs::read(&full).await.ok()?;
            let etag = format!("\"{}\"", hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(&body)[..16]));
            let mime = mime_guess::from_path(path).first_or_octet_stream().to_string();
            Some(File { mime, body: Cow::Owned(body), etag })
        }
    }
}

fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Always revalidated: a new build is seen at once, and an unchanged file costs a 304.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn serve_file(state: &AppState, path: &str, request: &HeaderMap) -> Response {
    let Some(file) = load(state, path).await else {
        return secured(ApiError::not_found("console file").into_response());
    };
    let etag = HeaderValue::from_str(&file.etag).expect("hex in quotes");
    if request.get(header::IF_NONE_MATCH) == Some(&etag) {
        return secured((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let mime = HeaderValue::from_str(&file.mime).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    secured(([(header::CONTENT_TYPE, mime), (header::ETAG, etag)], axum::body::Body::from(file.body)).into_response())
}

/// `GET /console`: to the console's root, so that its relative paths resolve.
pub async fn root() -> Redirect {
    Redirect::permanent("/console/")
}

/// `GET /console/`: the entry page.
pub async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    serve_file(&state, INDEX, &headers).await
}

/// `GET /console/{*path}`: a built file.
pub async fn file(State(state): State<AppState>, Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve_file(&state, &path, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_served() {
        assert_eq!(safe("index.html"), Some("index.html"));
        assert_eq!(safe("assets/console.js"), Some("assets/console.js"));
        for bad in ["", "/etc/passwd", "../Cargo.toml", "assets/../../x", ".env", "a//b", "a\\..\\b", "assets/"] {
            assert_eq!(safe(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_policy_allows_nothing_inline_and_no_other_host() {
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-eval"));
        assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'none';"));
    }

    #[test]
    fn the_built_console_has_an_entry_page() {
        let index = Assets::get(INDEX).expect("console/dist/index.html is embedded");
        assert_eq!(index.metadata.mimetype(), "text/html");
    }
}
