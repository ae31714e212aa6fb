//! Reads from a streaming replica, with real processes: an embedded PostgreSQL 18 primary, an
//! asynchronous replica of it made by `tally pg standby create --async`, and one `tally serve
//! --replica-url`. The test checks, in order:
//! - read-your-writes: every write's answer carries `Tally-Commit-Lsn`, and a read that names it
//!   in `Tally-Min-Lsn` is answered by the replica, with the write in it;
//! - the current balance is read on the primary, a balance as of a time on the replica;
//! - a row the replica lacks is looked up on the primary (`replica_missing`), and a malformed
//!   `Tally-Min-Lsn` is refused (400 `invalid_header`);
//! - with the replica's replay paused: a read-your-writes read waits `--replica-wait`, then is
//!   answered by the primary (`replica_behind`); once the lag passes `--replica-max-lag`, every
//!   read goes to the primary (`replica_lagging`), and `/metrics` shows the lag; resumed, reads
//!   return to the replica;
//! - with the replica stopped, reads are answered by the primary (`replica_unavailable`), and
//!   `/metrics` says the replica is down.
//!
//! Run it alone with `scripts/test -p tally-cli --test replica -- --nocapture`.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tally_core::BalanceRule;
use tally_pg::EmbeddedPg;
use tally_store::{NewAccount, NewApiKey, Role, Store};
use uuid::Uuid;

mod support;
use support::{Serve, path, tally};

/// Writes, each read back at once through the replica.
const WRITES: usize = 40;
/// `--replica-max-lag` and `--replica-wait` of the server under test.
const MAX_LAG: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(3);
/// How long the server may take to see a change of the replica (it polls every 50 ms).
const NOTICE_BOUND: Duration = Duration::from_secs(20);

struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    authorization: String,
}

/// An answer: its status, the headers this test looks at, and its JSON body.
struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().expect("an ASCII header"))
    }

    /// `Tally-Read-From`, and `Tally-Read-Fallback` if any.
    fn served(&self) -> (Option<&str>, Option<&str>) {
        (self.header("tally-read-from"), self.header("tally-read-fallback"))
    }
}

impl Http {
    async fn call(&self, method: &str, uri: &str, body: Option<Value>, min_lsn: Option<&str>) -> Answer {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{uri}", self.addr))
            .header("authorization", &self.authorization);
        if let Some(lsn) = min_lsn {
            request = request.header("tally-min-lsn", lsn);
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Full::new(Bytes::from(body.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let response = self.client.request(request.body(body).unwrap()).await.expect("an answer");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Answer { status, headers, body }
    }

    async fn metrics(&self) -> String {
        let answer = self.call("GET", "/metrics", None, None).await;
        assert_eq!(answer.status, 200);
        answer.body.as_str().expect("metrics are text").to_owned()
    }

    /// The value of the sample whose line starts with `sample ` (name and labels).
    async fn metric(&self, sample: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0.0, |value| value.trim().parse().expect("a number"))
    }

    async fn wait_for_metric(&self, sample: &str, what: impl Fn(f64) -> bool, said: &str) {
        let started = Instant::now();
        loop {
            if what(self.metric(sample).await) {
                return;
            }
            assert!(started.elapsed() < NOTICE_BOUND, "{said}: {sample} still {}", self.metric(sample).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Posts a transfer of 1.00 from `from` to `to` and returns its id and `Tally-Commit-Lsn`.
    async fn transfer(&self, from: &str, to: &str) -> (Uuid, String) {
        let id = Uuid::now_v7();
        let body = json!({"id": id, "from": from, "to": to, "amount": "1.00", "currency": "EUR"});
        let answer = self.call("POST", "/v1/transfers", Some(body), None).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        let lsn = answer.header("tally-commit-lsn").expect("a write's answer carries Tally-Commit-Lsn").to_owned();
        (id, lsn)
    }
}

fn socket_url(pg: &EmbeddedPg) -> String {
    format!("host={} port={} user={} dbname=tally", path(&pg.socket_dir()), tally_pg::PORT, tally_pg::SUPERUSER)
}

struct Cleanup {
    root: PathBuf,
    nodes: Vec<EmbeddedPg>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for node in &self.nodes {
            let _ = node.stop_immediate();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_a_fresh_replica_see_the_callers_writes_and_fall_back_to_the_primary() {
    let root = std::env::temp_dir().join(format!("tally-replica-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&root).unwrap();
    let (a, b) = (root.join("a"), root.join("b"));
    let binaries = || tally_pg::find_binaries().expect("PostgreSQL binaries");
    let primary = EmbeddedPg::new(a.join("pg"), binaries());
    let replica = EmbeddedPg::new(b.join("pg"), binaries());
    let _cleanup = Cleanup {
        root: root.clone(),
        nodes: vec![EmbeddedPg::new(a.join("pg"), binaries()), EmbeddedPg::new(b.join("pg"), binaries())],
    };
    tally(&["pg", "start", "--data-dir", path(&a)]);
    tally(&["pg", "standby", "create", "--from", path(&a), "--data-dir", path(&b), "--name", "reads", "--async"]);

    // The ledger: a bank and a wallet, and a key, on the primary.
    let store = Store::connect(&socket_url(&primary), 2).unwrap();
    store.migrate().await.unwrap();
    let open = |code: &str, rule| NewAccount {
        id: None,
        ledger: tally_core::LedgerId::DEFAULT,
        code: Some(code.into()),
        currency: "EUR".into(),
        rule,
        metadata: None,
    };
    store.create_account(&open("bank", BalanceRule::Unrestricted), "test").await.unwrap();
    store.create_account(&open("wallet", BalanceRule::NoOverdraft), "test").await.unwrap();
    let key = tally_server::generate_key();
    let new_key = NewApiKey {
        name: "replica".into(),
        role: Role::Admin,
        key_hash: key.hash,
        prefix: key.prefix,
        accounts: Vec::new(),
        ledgers: Vec::new(),
    };
    store.create_api_key(&new_key, "test").await.unwrap();
    store.close();

    let max_lag = format!("{}ms", MAX_LAG.as_millis());
    let wait = format!("{}ms", WAIT.as_millis());
    let replica_url = socket_url(&replica);
    let serve = Serve::start(
        &socket_url(&primary),
        &["--replica-url", &replica_url, "--replica-max-lag", &max_lag, "--replica-wait", &wait],
        root.join("serve.err"),
    );
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let http = Http {
        client: Client::builder(TokioExecutor::new()).build(connector),
        addr: serve.addr,
        authorization: format!("Bearer {}", key.key),
    };
    http.wait_for_metric("tally_replica_up", |up| up == 1.0, "the replica was never seen up").await;

    // Read-your-writes: each write, read back at once through the replica.
    let mut ids = Vec::new();
    for _ in 0..WRITES {
        let (id, lsn) = http.transfer("bank", "wallet").await;
        let shown = http.call("GET", &format!("/v1/transfers/{id}"), None, Some(&lsn)).await;
        assert_eq!(shown.status, 200, "{}", shown.body);
        assert_eq!(shown.body["result"], "ok");
        assert_eq!(shown.served(), (Some("replica"), None), "read-your-writes read of {id} at {lsn}");
        let history = http.call("GET", "/v1/accounts/wallet/transfers?limit=1", None, Some(&lsn)).await;
        assert_eq!(history.status, 200, "{}", history.body);
        assert_eq!(history.body["data"][0]["transfer"]["id"], json!(id), "the newest entry is the write just made");
        assert_eq!(history.served(), (Some("replica"), None));
        ids.push((id, lsn));
    }
    let (last_id, last_lsn) = ids.last().cloned().unwrap();

    // The current balance only ever comes from the primary; a balance as of a time is history.
    let balance = http.call("GET", "/v1/accounts/wallet/balance", None, Some(&last_lsn)).await;
    assert_eq!(balance.status, 200);
    assert_eq!(balance.body["balance"], format!("{WRITES}.00"));
    assert_eq!(balance.served(), (Some("primary"), None));
    let now = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    let as_of = http.call("GET", &format!("/v1/accounts/wallet/balance?as_of={now}"), None, Some(&last_lsn)).await;
    assert_eq!(as_of.status, 200, "{}", as_of.body);
    assert_eq!(as_of.body["balance"], format!("{WRITES}.00"));
    assert_eq!(as_of.served(), (Some("replica"), None));
    for uri in ["/v1/accounts?limit=10", "/v1/transfers?limit=5", "/v1/audit?limit=5", "/v1/accounts/bank"] {
        let answer = http.call("GET", uri, None, Some(&last_lsn)).await;
        assert_eq!((answer.status, answer.served()), (200, (Some("replica"), None)), "{uri}: {}", answer.body);
    }

    // A row the replica lacks is looked for on the primary; a malformed position is refused.
    let missing = http.call("GET", &format!("/v1/transfers/{}", Uuid::now_v7()), None, None).await;
    assert_eq!((missing.status, missing.body["error"]["code"].as_str()), (404, Some("transfer_not_found")));
    assert_eq!(http.metric(r#"tally_replica_reads_total{from="primary",reason="replica_missing"}"#).await, 1.0);
    let malformed = http.call("GET", &format!("/v1/transfers/{last_id}"), None, Some("yesterday")).await;
    assert_eq!((malformed.status, malformed.body["error"]["code"].as_str()), (400, Some("invalid_header")));

    // `tally bench --replica-url` samples the replica's lag under load, on a database of its own.
    let create = primary.psql_command("postgres").args(["-At", "-c", "CREATE DATABASE bench"]).output().unwrap();
    assert!(create.status.success(), "{}", String::from_utf8_lossy(&create.stderr));
    let bench_url = |pg: &EmbeddedPg| socket_url(pg).replace("dbname=tally", "dbname=bench");
    let json_out = root.join("bench.json");
    tally(&[
        "--database-url",
        &bench_url(&primary),
        "bench",
        "--duration",
        "2s",
        "--accounts",
        "100",
        "--concurrency",
        "16",
        "--replica-url",
        &bench_url(&replica),
        "--json-out",
        path(&json_out),
        "--svg-out",
        path(&root.join("bench.svg")),
    ]);
    let report: Value = serde_json::from_slice(&std::fs::read(&json_out).unwrap()).unwrap();
    let lag = &report["replica_lag"];
    assert!(lag["samples"].as_u64().unwrap() >= 50, "about 200 samples in 2 s: {lag}");
    assert_eq!(lag["unanswered"], 0, "{lag}");
    assert!(lag["catch_up_ms"].as_f64().is_some(), "the replica caught up after the load: {lag}");
    assert!(lag["lag_max_bytes"].as_u64().unwrap() > 0, "a loaded primary is ahead of its replica at times: {lag}");
    eprintln!("replica lag under a 2 s bench: {lag}");

    // Replay paused: the replica falls behind.
    let pause = |sql: &str| {
        let out = replica.psql_command("tally").args(["-At", "-c", sql]).output().unwrap();
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    };
    pause("SELECT pg_wal_replay_pause()");
    let (behind_id, behind_lsn) = http.transfer("bank", "wallet").await;
    let started = Instant::now();
    let behind = http.call("GET", &format!("/v1/transfers/{behind_id}"), None, Some(&behind_lsn)).await;
    let waited = started.elapsed();
    assert_eq!(behind.status, 200, "{}", behind.body);
    assert_eq!(behind.served(), (Some("primary"), Some("replica_behind")));
    assert!(waited >= WAIT && waited < WAIT + Duration::from_secs(5), "waited {waited:?} for the replica");
    eprintln!("a read-your-writes read waited {waited:?} for a paused replica, then read on the primary");
    // More writes while paused, until the lag passes the bound.
    let started = Instant::now();
    loop {
        http.transfer("bank", "wallet").await;
        if http.metric("tally_replica_lag_seconds").await > MAX_LAG.as_secs_f64() {
            break;
        }
        assert!(started.elapsed() < NOTICE_BOUND, "the replica's lag never passed {MAX_LAG:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(http.metric("tally_replica_lag_bytes").await > 0.0);
    let lagging = http.call("GET", &format!("/v1/transfers/{last_id}"), None, None).await;
    assert_eq!(lagging.status, 200);
    assert_eq!(lagging.served(), (Some("primary"), Some("replica_lagging")));
    pause("SELECT pg_wal_replay_resume()");
    http.wait_for_metric("tally_replica_lag_seconds", |lag| lag == 0.0, "the replica never caught up").await;
    let caught_up = http.call("GET", &format!("/v1/transfers/{behind_id}"), None, None).await;
    assert_eq!((caught_up.status, caught_up.served()), (200, (Some("replica"), None)));

    // The replica stopped: the primary answers.
    tally(&["pg", "stop", "--data-dir", path(&b)]);
    http.wait_for_metric("tally_replica_up", |up| up == 0.0, "the replica was never seen down").await;
    let unavailable = http.call("GET", &format!("/v1/transfers/{last_id}"), None, Some(&last_lsn)).await;
    assert_eq!(unavailable.status, 200);
    assert_eq!(unavailable.served(), (Some("primary"), Some("replica_unavailable")));
    let text = http.metrics().await;
    let reads: Vec<&str> = text.lines().filter(|line| line.starts_with("tally_replica_reads_total")).collect();
    eprintln!("{}", reads.join("\n"));
    let on_replica = http.metric(r#"tally_replica_reads_total{from="replica",reason="none"}"#).await;
    assert!(on_replica >= (2 * WRITES + 6) as f64, "reads on the replica: {on_replica}");
    for reason in ["replica_behind", "replica_lagging", "replica_unavailable"] {
        let sample = format!(r#"tally_replica_reads_total{{from="primary",reason="{reason}"}}"#);
        assert!(http.metric(&sample).await >= 1.0, "{sample}");
    }
    serve.stop();
}
