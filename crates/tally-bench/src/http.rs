//! `BenchMode::Http` (`tally bench --mode http`): the API server runs in this process on a loopback port, and the
//! clients reach it over TCP, each with its own keep-alive HTTP/1.1 connection (as independent
//! clients would), sending `POST /v1/transfers` (batch size 1) or `POST /v1/transfers/batch`.

use crate::{BENCH_ACTOR, BenchError};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::net::SocketAddr;
use tally_core::{TransferKind, TransferRequest, TransferResult, format_amount};
use tally_engine::Engine;
use tally_server::{ServerConfig, generate_key};
use tally_store::{NewApiKey, Role, Store};

/// The benchmark's currency scale (USD).
const SCALE: u8 = 2;

/// A server started for the run: where it listens and the key to use.
#[derive(Clone)]
pub struct HttpTarget {
    addr: SocketAddr,
    authorization: String,
}

/// One benchmark client's own connection to the server.
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    target: HttpTarget,
}

pub struct RunningServer {
    pub target: HttpTarget,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<tally_server::Shutdown>>,
}

fn http_error(error: impl std::fmt::Display) -> BenchError {
    BenchError::Http(error.to_string())
}

pub async fn start(
    store: &Store,
    engine: &Engine,
    connections: usize,
    listen: SocketAddr,
) -> Result<RunningServer, BenchError> {
    let generated = generate_key();
    let key = NewApiKey {
        ledgers: Vec::new(),
        name: format!("bench-{}", &generated.prefix[4..]),
        role: Role::Operator,
        key_hash: generated.hash,
        prefix: generated.prefix,
        accounts: Vec::new(),
    };
    store.create_api_key(&key, BENCH_ACTOR).await?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    // The key is this run's own, on the benchmark's own database.
    eprintln!(
        "bench: the API server listens on http://{addr}; watch the run live in its console at \
         http://{addr}/console/#/live with the key {} (role operator)",
        generated.key
    );
    let config = ServerConfig {
        listen: addr,
        // The benchmark measures the server, not its rate limiter.
        rate_limit_per_key: 0,
        max_connections: connections.max(1) + 16,
        ..ServerConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(tally_server::serve(listener, store.clone(), engine.clone(), config, None, async {
        let _ = stopped.await;
    }));
    Ok(RunningServer { target: HttpTarget { addr, authorization: format!("Bearer {}", generated.key) }, stop, task })
}

impl RunningServer {
    /// Stops the server gracefully (which also shuts the engine down).
    pub async fn stop(self) -> Result<(), BenchError> {
        let _ = self.stop.send(());
        let shutdown = self
            .task
            .await
            .map_err(|error| BenchError::Server(format!("the server task: {error}")))?
            .map_err(|error| BenchError::Server(error.to_string()))?;
        if shutdown != tally_server::Shutdown::Complete {
            return Err(BenchError::Server("the server stopped at its shutdown timeout".into()));
        }
        Ok(())
    }
}

fn body_of(request: &TransferRequest) -> Value {
    assert_eq!(request.kind, TransferKind::Posted, "http mode sends posted transfers only");
    json!({
        "id": request.id.0,
        "from": request.debit_account_id.expect("posted").0,
        "to": request.credit_account_id.expect("posted").0,
        "amount": format_amount(request.amount.expect("posted"), SCALE),
        "currency": "USD",
    })
}

impl HttpTarget {
    /// A client with a connection pool of its own (it keeps one connection alive).
    pub fn client(&self) -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1).build(connector);
        HttpClient { client, target: self.clone() }
    }
}

impl HttpClient {
    async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), BenchError> {
        let request = hyper::Request::post(format!("http://{}{path}", self.target.addr))
            .header("authorization", &self.target.authorization)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))
            .map_err(http_error)?;
        let response = self.client.request(request).await.map_err(http_error)?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.map_err(http_error)?.to_bytes();
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// Sends the transfers (one request) and returns their results; `Ok(None)` when the server
    /// answered 503 (overloaded).
    pub async fn submit(&self, requests: &[TransferRequest]) -> Result<Option<Vec<TransferResult>>, BenchError> {
        if let [single] = requests {
            let (status, body) = self.post("/v1/transfers", &body_of(single)).await?;
            return Ok(match status {
                200 | 201 => Some(vec![TransferResult::Ok]),
                503 => None,
                _ => {
                    let code = body["error"]["code"].as_str().unwrap_or("");
                    match TransferResult::from_code(code) {
                        Some(result) => Some(vec![result]),
                        None => return Err(http_error(format!("the server answered {status}: {body}"))),
                    }
                }
            });
        }
        let items: Vec<Value> = requests.iter().map(body_of).collect();
        let (status, body) = self.post("/v1/transfers/batch", &json!({"transfers": items})).await?;
        match status {
            200 => {}
            503 => return Ok(None),
            _ => return Err(http_error(format!("the server answered {status}: {body}"))),
        }
        let results = body["results"]
            .as_array()
            .ok_or_else(|| http_error(format!("a batch answer without results: {body}")))?
            .iter()
            .map(|item| {
                let code = item["result"].as_str().unwrap_or("");
                TransferResult::from_code(code).ok_or_else(|| http_error(format!("unknown result {code}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(results))
    }
}
