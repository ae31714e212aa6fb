//! A ledger behind the API on a fresh database, keys for each role, and one-line requests.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tally_engine::{Engine, EngineConfig};
use tally_server::{AppState, ServerConfig, generate_key};
use tally_store::{NewApiKey, Role, Store};

use tally_testkit::TestDb;
use tower::ServiceExt;
use uuid::Uuid;

pub struct Api {
    pub db: TestDb,
    pub engine: Engine,
    /// The router's state (its metrics, limits, caches and reconciliation).
    pub state: AppState,
    pub router: Router,
    pub admin: String,
    pub operator: String,
    pub auditor: String,
    /// Keeps the server's shutdown signal alive (false) for the test's duration.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body as sent, for what parsing loses (key order).
    pub text: String,
}

impl Reply {
    /// The error code of an error reply.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error reply: {}", self.body))
    }
}

pub async fn api() -> Api {
    api_with(ServerConfig { key_cache_ttl: std::time::Duration::ZERO, ..ServerConfig::default() }).await
}

pub async fn api_with(config: ServerConfig) -> Api {
    let db = tally_testkit::fresh_database().await;
    let store = db.store.clone();
    api_on(db, store, config).await
}

/// An API on the database `db` whose server (engine, reads, reconciliation) reaches it through
/// `store`, which may be another way in than `db.store` (a fault proxy, say).
pub async fn api_on(db: TestDb, store: Store, config: ServerConfig) -> Api {
    let engine = Engine::start(store.clone(), EngineConfig { expiry_sweep_interval: None, ..EngineConfig::default() });
    let (shutdown, receiver) = tokio::sync::watch::channel(false);
    let state = AppState::new(store, engine.clone(), config, receiver);
    let router = tally_server::router(state.clone());
    let mut api = Api {
        db,
        engine,
        state,
        router,
        admin: String::new(),
        operator: String::new(),
        auditor: String::new(),
        shutdown,
    };
    api.admin = api.key("admin", Role::Admin, vec![]).await;
    api.operator = api.key("operator", Role::Operator, vec![]).await;
    api.auditor = api.key("auditor", Role::Auditor, vec![]).await;
    api
}

impl Api {
    /// Creates a key straight in the store and returns the secret.
    pub async fn key(&self, name: &str, role: Role, accounts: Vec<Uuid>) -> String {
        self.key_in(name, role, accounts, Vec::new()).await
    }

    /// Creates a key scoped to `ledgers` (none: every ledger) and returns the secret.
    pub async fn key_in(
        &self,
        name: &str,
        role: Role,
        accounts: Vec<Uuid>,
        ledgers: Vec<tally_core::LedgerId>,
    ) -> String {
        let generated = generate_key();
        let new = NewApiKey {
            name: name.into(),
            role,
            key_hash: generated.hash,
            prefix: generated.prefix,
            accounts,
            ledgers,
        };
        self.db.store.create_api_key(&new, "test:setup").await.expect("create key");
        generated.key
    }

    /// Sends a raw request through the router.
    pub async fn raw(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.expect("the router never fails");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(text.clone()))
        };
        Reply { status, headers, body, text }
    }

    pub async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Reply {
        let mut builder = Request::builder().method(method).uri(path).header("authorization", format!("Bearer {key}"));
        let body = match body {
            Some(value) => {
                builder = builder.header("content-type", "application/json");
                Body::from(serde_json::to_vec(&value).unwrap())
            }
            None => Body::empty(),
        };
        self.raw(builder.body(body).unwrap()).await
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        self.call(Method::GET, path, key, None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::POST, path, key, Some(body)).await
    }

    /// Opens an account as admin and returns its id.
    pub async fn open(&self, code: &str, currency: &str, extra: Value) -> Uuid {
        let mut body = json!({"code": code, "currency": currency});
        body.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
        let reply = self.post("/v1/accounts", &self.admin, body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["id"].as_str().unwrap().parse().unwrap()
    }

    /// A funding account and a wallet holding `amount`.
    pub async fn funded(&self, wallet: &str, amount: &str) -> Uuid {
        let bank = format!("bank-{wallet}");
        self.open(&bank, "USD", json!({"unrestricted": true})).await;
        let id = self.open(wallet, "USD", json!({})).await;
        let reply = self.post("/v1/transfers", &self.operator, transfer(&bank, wallet, amount)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        id
    }

    pub async fn balance(&self, account: &str) -> String {
        let reply = self.get(&format!("/v1/accounts/{account}/balance"), &self.admin).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["balance"].as_str().unwrap().to_owned()
    }

    /// The books balance, every account agrees with its journal, audit and events complete.
    pub async fn assert_consistent(&self) {
        let report = tally_recon::check_ledger(&self.state.recon).await.expect("reconcile");
        assert!(report.is_clean(), "{report:?}");
    }
}

/// A posted transfer body with a fresh id.
pub fn transfer(from: &str, to: &str, amount: &str) -> Value {
    json!({"id": Uuid::now_v7(), "from": from, "to": to, "amount": amount, "currency": "USD"})
}
