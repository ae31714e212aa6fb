//! The HTTP client that delivers webhooks: HTTP/1.1 over TCP or TLS (the system's roots), one
//! bounded request at a time per endpoint.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::{Duration, Instant};

/// How much of an endpoint's answer is read (for the delivery log).
pub const ANSWER_BYTES_MAX: usize = 4096;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

#[derive(Clone)]
pub(crate) struct Http {
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
}

/// What one attempt got.
pub(crate) struct Answer {
    pub status_code: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    pub duration: Duration,
}

impl Answer {
    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }
}

impl Http {
    pub fn new(timeout: Duration) -> Http {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
            Ok(builder) => builder,
            Err(error) => {
                tracing::warn!(%error, "no system certificates: https webhooks cannot be verified and will fail");
                let config = rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .build(connector);
        Http { client, timeout }
    }

    /// POSTs `body` with `headers`; an answer other than 2xx, or none within the timeout, is a
    /// failure with its reason.
    pub async fn post(&self, url: &str, headers: &[(&str, String)], body: Bytes) -> Answer {
        let started = Instant::now();
        let mut request = hyper::Request::post(url).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = match request.body(Full::new(body)) {
            Ok(request) => request,
            Err(error) => {
                return Answer { status_code: None, error: Some(error.to_string()), duration: started.elapsed() };
            }
        };
        let sent = tokio::time::timeout(self.timeout, async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let answer = Limited::new(response.into_body(), ANSWER_BYTES_MAX).collect().await;
            let text = answer.map(|body| String::from_utf8_lossy(&body.to_bytes()).into_owned()).unwrap_or_default();
            Ok::<_, hyper_util::client::legacy::Error>((status, text))
        })
        .await;
        let duration = started.elapsed();
        match sent {
            Err(_) => {
                Answer { status_code: None, error: Some(format!("no answer within {:?}", self.timeout)), duration }
            }
            Ok(Err(error)) => Answer { status_code: None, error: Some(describe(&error)), duration },
            Ok(Ok((status, _))) if status.is_success() => {
                Answer { status_code: Some(status.as_u16()), error: None, duration }
            }
            Ok(Ok((status, text))) => {
                let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
                Answer { status_code: Some(status.as_u16()), error: Some(format!("HTTP {status}: {text}")), duration }
            }
        }
    }
}

/// An error with its causes, once each.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
