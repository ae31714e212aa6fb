//! Failover to a synchronous standby, with real processes: an embedded PostgreSQL 18 primary and
//! a synchronous standby made by `tally pg standby create`, one `tally serve` on the multi-host
//! connection string of both (`target_session_attrs=read-write`), and HTTP clients that retry
//! every transfer with the same id until it gets a definite answer. Each round loses the primary
//! under load and promotes the standby with `tally pg promote`; the same `tally serve` must carry
//! on on the new primary, without a restart. Three rounds stop the primary with `pg_ctl stop -m
//! immediate` (promoting at once, after the engine's retries ran out, and after
//! `resolve_within`); a fourth fences it read-only and leaves it running. After each round:
//! - every acknowledged transfer is on the new primary exactly once, as acknowledged (the same
//!   accounts and amount, or the same refusal);
//! - the books reconcile there (`tally_recon::check_ledger`);
//! - service resumed (a transfer sent after the loss was acknowledged) within `RESUME_BOUND`
//!   of the promotion; the time from the loss and from the promotion to that acknowledgement
//!   is printed.
//!
//! The next round makes the old primary's directory a new standby of the new primary and fails
//! over back, so the rounds alternate between the two data directories.
//!
//! Run it alone with `scripts/test -p tally-cli --test failover -- --nocapture`.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tally_core::{AccountId, BalanceRule, TransferId, TransferRequest, TransferResult, format_amount};
use tally_engine::{Engine, Submission};
use tally_pg::EmbeddedPg;
use tally_store::queries::JOURNAL_ROWS_IDS_MAX;
use tally_store::{JournalRow, NewAccount, NewApiKey, Role, Store};
use uuid::Uuid;

mod support;
use support::{Serve, path, tally, tally_output};

/// HTTP clients, each with one transfer at a time.
const CLIENTS: usize = 8;
const WALLETS: usize = 16;
const CURRENCY: &str = "EUR";
const SCALE: u8 = 2;
/// Load on the primary before it is stopped, drawn from this range (ms).
const LOAD_BEFORE_KILL_MS: std::ops::Range<u64> = 1_000..2_000;
/// Load on the new primary after service resumed, before the clients stop.
const LOAD_AFTER_RESUME: Duration = Duration::from_secs(1);
/// How a round loses its primary.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Loss {
    /// `pg_ctl stop -m immediate`: the server dies as in a crash, and its connections with it.
    Kill,
    /// Made read-only and left running (`ALTER SYSTEM SET default_transaction_read_only = on`,
    /// reload), as an operator fences an old primary: Tally's open connections to it stay open
    /// and refuse writes, and only a reconnection reaches the new primary.
    Fence,
}

/// The rounds of a run: how the primary is lost, and the pause until the promotion, which
/// stands for the time it takes to notice the failure. None; longer than the engine's retries
/// of a batch (about 1.5 s), so that callers are answered `database_unavailable`; longer than
/// `resolve_within` (5 s), so that a batch whose COMMIT went unanswered is answered
/// `outcome_unknown`; and a fenced primary.
const ROUNDS: [(Loss, Duration); 4] = [
    (Loss::Kill, Duration::ZERO),
    (Loss::Kill, Duration::from_secs(2)),
    (Loss::Kill, Duration::from_secs(7)),
    (Loss::Fence, Duration::from_secs(1)),
];
/// Service must resume this soon after the promotion began: generous, as the machine is
/// shared. The measured figures are printed.
const RESUME_BOUND: Duration = Duration::from_secs(30);
/// How long one HTTP request may take before the client sends the transfer again. Above the
/// engine's `resolve_within` (5 s), so that a transfer whose COMMIT went unanswered is normally
/// resolved before the client gives up on the request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// A transfer with no definite answer after this long fails the test.
const TRANSFER_DEADLINE: Duration = Duration::from_secs(90);
/// The client's pause after a 503 or a refused connection.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// What the engine logs when it found out whether a batch whose COMMIT went unanswered
/// committed, and when it could not (`tally_engine`'s `decide::resolve`).
const RESOLVED: &str = "found out what became of a batch whose COMMIT went unanswered";
const UNRESOLVED: &str = "could not find out whether a batch whose COMMIT went unanswered committed";

/// One transfer as a client sends it, every time with the same id.
#[derive(Clone, Debug)]
struct Spec {
    id: Uuid,
    from: AccountId,
    to: AccountId,
    amount: i128,
}

/// A definite answer.
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Applied,
    Rejected(TransferResult),
}

#[derive(Clone, Debug)]
struct Ack {
    spec: Spec,
    answer: Answer,
    /// When the request that got this answer was sent, and when the answer came.
    sent: Instant,
    at: Instant,
}

/// What the clients of a round share.
#[derive(Default)]
struct Load {
    acks: Mutex<Vec<Ack>>,
    /// Answers that were no answer (the transfer was sent again), by kind.
    retries: Mutex<BTreeMap<String, u64>>,
    stop: AtomicBool,
}

impl Load {
    fn retried(&self, why: &str) {
        *self.retries.lock().unwrap().entry(why.to_owned()).or_default() += 1;
    }
}

/// A Tally data directory with its embedded server (`<dir>/pg`).
struct Node {
    dir: PathBuf,
    pg: EmbeddedPg,
}

impl Node {
    fn new(dir: PathBuf) -> Node {
        let pg = EmbeddedPg::new(dir.join("pg"), tally_pg::find_binaries().expect("PostgreSQL binaries"));
        Node { dir, pg }
    }

    fn conninfo(&self) -> String {
        self.pg.connection_string("tally")
    }

    /// The primary's view of this node's standby: `sync` while the primary waits for it.
    fn sync_state_of_standby(&self) -> String {
        let out = self
            .pg
            .psql_command("postgres")
            .args(["-At", "-c", "SELECT string_agg(sync_state, ',') FROM pg_stat_replication"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

struct Cluster {
    root: PathBuf,
    nodes: [Node; 2],
    /// Which node is the primary.
    primary: usize,
    wallets: Vec<AccountId>,
    authorization: String,
}

impl Cluster {
    /// A primary (`a`) with a synchronous standby (`b`), both made with the CLI, and the ledger's
    /// accounts and an API key on the primary.
    async fn new() -> Cluster {
        let root = std::env::temp_dir().join(format!("tally-failover-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&root).unwrap();
        let nodes = [Node::new(root.join("a")), Node::new(root.join("b"))];
        tally(&["pg", "start", "--data-dir", path(&nodes[0].dir)]);
        tally(&["pg", "standby", "create", "--from", path(&nodes[0].dir), "--data-dir", path(&nodes[1].dir)]);
        let mut cluster = Cluster { root, nodes, primary: 0, wallets: Vec::new(), authorization: String::new() };
        let store = Store::connect(&cluster.url(), 4).unwrap();
        store.migrate().await.unwrap();
        cluster.open_accounts(&store).await;
        let key = tally_server::generate_key();
        let new = NewApiKey {
            name: "failover".into(),
            role: Role::Operator,
            key_hash: key.hash,
            prefix: key.prefix,
            accounts: Vec::new(),
            ledgers: Vec::new(),
        };
        store.create_api_key(&new, "test").await.unwrap();
        cluster.authorization = format!("Bearer {}", key.key);
        store.close();
        cluster
    }

    /// Both servers, always in the same order, whichever is the primary: Tally must find the
    /// writable one.
    fn url(&self) -> String {
        let [a, b] = &self.nodes;
        format!(
            "host={},{} port={} user={} dbname=tally target_session_attrs=read-write",
            path(&a.pg.socket_dir()),
            path(&b.pg.socket_dir()),
            tally_pg::PORT,
            tally_pg::SUPERUSER
        )
    }

    async fn open_accounts(&mut self, store: &Store) {
        let open = |code: String, rule| NewAccount {
            id: None,
            ledger: tally_core::LedgerId::DEFAULT,
            code: Some(code),
            currency: CURRENCY.into(),
            rule,
            metadata: None,
        };
        let bank = store.create_account(&open("bank".into(), BalanceRule::Unrestricted), "test").await.unwrap();
        let bank = bank.0.account.id;
        let mut funding = Vec::new();
        for index in 0..WALLETS {
            let wallet =
                store.create_account(&open(format!("w{index}"), BalanceRule::NoOverdraft), "test").await.unwrap();
            let wallet = wallet.0.account.id;
            self.wallets.push(wallet);
            // A few small wallets, so that some transfers are refused (insufficient_funds).
            let amount = if index % 4 == 3 { 20_000 } else { 100_000_000 };
            let request = TransferRequest::posted(TransferId(Uuid::now_v7()), bank, wallet, amount);
            funding.push(Submission { request, actor: "test".into() });
        }
        let engine = Engine::new(store.clone());
        let outcomes = engine.submit(funding).await.unwrap();
        assert!(outcomes.iter().all(|o| o.result == TransferResult::Ok));
        engine.shutdown().await;
    }

    fn primary(&self) -> &Node {
        &self.nodes[self.primary]
    }

    fn standby(&self) -> &Node {
        &self.nodes[1 - self.primary]
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            let _ = node.pg.stop_immediate();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// An HTTP client that sends transfers one at a time, each until it has a definite answer.
async fn client(addr: SocketAddr, authorization: String, wallets: Vec<AccountId>, load: Arc<Load>, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    while !load.stop.load(Ordering::SeqCst) {
        let from = wallets[rng.usize(..wallets.len())];
        let mut to = wallets[rng.usize(..wallets.len())];
        while to == from {
            to = wallets[rng.usize(..wallets.len())];
        }
        let spec = Spec { id: Uuid::now_v7(), from, to, amount: rng.i128(100..5_000) };
        let body = Bytes::from(
            json!({
                "id": spec.id, "from": spec.from.0, "to": spec.to.0,
                "amount": format_amount(spec.amount, SCALE), "currency": CURRENCY,
            })
            .to_string(),
        );
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < TRANSFER_DEADLINE,
                "transfer {} had no definite answer in {TRANSFER_DEADLINE:?}",
                spec.id
            );
            let request = hyper::Request::post(format!("http://{addr}/v1/transfers"))
                .header("authorization", &authorization)
                .header("content-type", "application/json")
                .body(Full::new(body.clone()))
                .unwrap();
            let sent = Instant::now();
            let exchange = async {
                let response = http.request(request).await.map_err(|_| ())?;
                let status = response.status().as_u16();
                let bytes = response.into_body().collect().await.map_err(|_| ())?.to_bytes();
                Ok::<_, ()>((status, bytes))
            };
            let (status, bytes) = match tokio::time::timeout(CLIENT_TIMEOUT, exchange).await {
                Err(_) => {
                    load.retried("client timeout");
                    continue;
                }
                Ok(Err(())) => {
                    load.retried("connection error");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
                Ok(Ok(reply)) => reply,
            };
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
            let answer = match status {
                200 | 201 => {
                    assert_eq!(body["id"], json!(spec.id), "{status} names another transfer: {body}");
                    assert_eq!(body["amount"], json!(format_amount(spec.amount, SCALE)), "{body}");
                    Answer::Applied
                }
                503 => {
                    load.retried(&format!("503 {code}"));
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
                _ => match TransferResult::from_code(&code) {
                    Some(result) if result.is_recorded_rejection() => Answer::Rejected(result),
                    _ => panic!("unexpected answer to transfer {}: {status} {body}", spec.id),
                },
            };
            load.acks.lock().unwrap().push(Ack { spec, answer, sent, at: Instant::now() });
            break;
        }
    }
}

/// What one round measured.
struct Round {
    loss: Loss,
    loss_to_ack: Duration,
    promote_to_ack: Duration,
    promote: Duration,
    acks: usize,
}

/// Load, lose the primary, promote the standby, wait for service to resume, check the books.
async fn round(cluster: &mut Cluster, serve: &Serve, number: usize, loss: Loss, detection: Duration) -> Round {
    let resolved_before = serve.log_lines(RESOLVED);
    let unresolved_before = serve.log_lines(UNRESOLVED);
    let load = Arc::new(Load::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| {
            let seed = fastrand::u64(..) ^ index as u64;
            tokio::spawn(client(serve.addr, cluster.authorization.clone(), cluster.wallets.clone(), load.clone(), seed))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(fastrand::u64(LOAD_BEFORE_KILL_MS))).await;
    let acks_before = load.acks.lock().unwrap().len();
    assert!(acks_before > 0, "round {number}: nothing was acknowledged before the loss:\n{}", serve.stderr_tail());
    let sync = cluster.primary().sync_state_of_standby();
    assert_eq!(sync, "sync", "round {number}: the standby is not the primary's synchronous standby");

    let lost_started = Instant::now();
    let primary = cluster.primary().pg.data_dir().to_path_buf();
    let bins = cluster.primary().pg.bins().clone();
    tokio::task::spawn_blocking(move || lose(&EmbeddedPg::new(primary, bins), loss)).await.unwrap();
    // A request sent from here on cannot have been answered by the old primary.
    let lost = Instant::now();
    tokio::time::sleep(detection).await;
    let promote_started = Instant::now();
    let standby_dir = cluster.standby().dir.clone();
    tokio::task::spawn_blocking(move || tally(&["pg", "promote", "--data-dir", path(&standby_dir)])).await.unwrap();
    let promote = promote_started.elapsed();
    cluster.primary = 1 - cluster.primary;

    // Service is back when a transfer sent after the primary was lost is acknowledged.
    let resumed = loop {
        let first = load.acks.lock().unwrap().iter().filter(|a| a.sent >= lost).map(|a| a.at).min();
        if let Some(at) = first {
            break at;
        }
        assert!(
            promote_started.elapsed() < RESUME_BOUND,
            "round {number}: no transfer acknowledged within {RESUME_BOUND:?} of the promotion; tally serve said:\n{}",
            serve.stderr_tail()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(LOAD_AFTER_RESUME).await;
    load.stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("a client failed");
    }
    let acks = std::mem::take(&mut *load.acks.lock().unwrap());
    let retries = load.retries.lock().unwrap().clone();
    eprintln!(
        "round {number}: {} acknowledged ({acks_before} before the loss); not answered and sent again: {retries:?}; \
         batches whose COMMIT went unanswered: {} resolved, {} answered outcome_unknown",
        acks.len(),
        serve.log_lines(RESOLVED) - resolved_before,
        serve.log_lines(UNRESOLVED) - unresolved_before,
    );
    check_new_primary(cluster.primary(), &acks, number).await;
    Round {
        loss,
        loss_to_ack: resumed - lost_started,
        promote_to_ack: resumed.saturating_duration_since(promote_started),
        promote,
        acks: acks.len(),
    }
}

/// Every acknowledged transfer is on the new primary once, as acknowledged; the books balance.
async fn check_new_primary(primary: &Node, acks: &[Ack], number: usize) {
    let store = Store::connect(&primary.conninfo(), 4).unwrap();
    let by_id: BTreeMap<Uuid, &Ack> = acks.iter().map(|a| (a.spec.id, a)).collect();
    assert_eq!(by_id.len(), acks.len(), "round {number}: a transfer was acknowledged twice");
    let ids: Vec<Uuid> = by_id.keys().copied().collect();
    let mut found = 0;
    for chunk in ids.chunks(JOURNAL_ROWS_IDS_MAX) {
        for row in store.journal_rows(chunk).await.unwrap() {
            match row {
                JournalRow::Applied { transfer, .. } => {
                    let ack = by_id[&transfer.id.0];
                    assert_eq!(
                        ack.answer,
                        Answer::Applied,
                        "round {number}: {} acknowledged {:?} but applied",
                        transfer.id.0,
                        ack.answer
                    );
                    let stored = (transfer.debit_account_id, transfer.credit_account_id, transfer.amount);
                    assert_eq!(
                        stored,
                        (ack.spec.from, ack.spec.to, ack.spec.amount),
                        "round {number}: {} differs",
                        transfer.id.0
                    );
                }
                JournalRow::Rejected { rejection, .. } => {
                    let ack = by_id[&rejection.request.id.0];
                    assert_eq!(
                        ack.answer,
                        Answer::Rejected(rejection.result),
                        "round {number}: {} recorded {:?}",
                        rejection.request.id.0,
                        rejection.result
                    );
                }
            }
            found += 1;
        }
    }
    assert_eq!(found, acks.len(), "round {number}: acknowledged transfers are missing on the new primary");
    let recon = tally_recon::Recon::new(&store, tally_recon::POOL_SIZE_MIN);
    let report = tally_recon::check_ledger(&recon).await.unwrap();
    assert!(report.is_clean(), "round {number}: the books do not reconcile on the new primary: {:#?}", report.findings);
    recon.close();
    store.close();
}

/// Loses the primary the round's way.
fn lose(primary: &EmbeddedPg, loss: Loss) {
    match loss {
        Loss::Kill => {
            assert!(primary.stop_immediate().expect("pg_ctl stop -m immediate"), "the primary was not running")
        }
        Loss::Fence => {
            let status = primary
                .psql_command("postgres")
                .args(["-q", "-v", "ON_ERROR_STOP=1"])
                .args(["-c", "ALTER SYSTEM SET default_transaction_read_only = on", "-c", "SELECT pg_reload_conf()"])
                .status()
                .unwrap();
            assert!(status.success(), "fencing the primary failed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_transfers_survive_failover_to_a_synchronous_standby() {
    let started = Instant::now();
    let mut cluster = Cluster::new().await;
    let serve = Serve::start(&cluster.url(), &[], cluster.root.join("serve.err"));
    let mut rounds = Vec::new();
    for (index, (loss, detection)) in ROUNDS.into_iter().enumerate() {
        let number = index + 1;
        if number > 1 {
            // The old primary's directory becomes a new synchronous standby of the new primary
            // (a fenced one still runs: it goes first).
            let old = cluster.standby();
            old.pg.stop_immediate().unwrap();
            std::fs::remove_dir_all(&old.dir).unwrap();
            let (from, to) = (cluster.primary().dir.clone(), old.dir.clone());
            tokio::task::spawn_blocking(move || {
                tally(&["pg", "standby", "create", "--from", path(&from), "--data-dir", path(&to)])
            })
            .await
            .unwrap();
        }
        let measured = round(&mut cluster, &serve, number, loss, detection).await;
        eprintln!(
            "round {number} ({loss:?}, promoted after {detection:?}): loss -> first ack {:.0} ms, promote -> first ack \
             {:.0} ms (tally pg promote took {:.0} ms), {} acknowledged transfers checked",
            measured.loss_to_ack.as_secs_f64() * 1e3,
            measured.promote_to_ack.as_secs_f64() * 1e3,
            measured.promote.as_secs_f64() * 1e3,
            measured.acks
        );
        rounds.push(measured);
    }
    serve.stop();
    let ms = |f: fn(&Round) -> Duration| -> Vec<String> {
        rounds.iter().map(|r| format!("{:?} {:.0}", r.loss, f(r).as_secs_f64() * 1e3)).collect()
    };
    eprintln!(
        "failover: {} rounds in {:.1} s; loss -> first ack (ms): {}; promote -> first ack (ms): {}; \
         tally pg promote (ms): {}",
        rounds.len(),
        started.elapsed().as_secs_f64(),
        ms(|r| r.loss_to_ack).join(", "),
        ms(|r| r.promote_to_ack).join(", "),
        ms(|r| r.promote).join(", ")
    );
}

/// What the standby commands and `--resolve-within` cannot do is refused with its code, before
/// anything is changed.
#[test]
fn standby_commands_and_resolve_within_refuse_what_they_cannot_do() {
    let root = std::env::temp_dir().join(format!("tally-failover-refused-{}", Uuid::new_v4().simple()));
    let (nowhere, target) = (root.join("nowhere"), root.join("target"));
    let refused = |args: &[&str], code: &str| {
        let out = tally_output(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "tally {args:?}: {stderr}");
        assert!(stderr.contains(code), "tally {args:?} should say {code}: {stderr}");
    };
    refused(&["pg", "promote", "--data-dir", path(&nowhere)], "(postgres_not_standby)");
    let create = ["pg", "standby", "create", "--from", path(&nowhere), "--data-dir", path(&target)];
    refused(&create, "(postgres_not_running)");
    refused(&[&create[..], &["--name", "Not-A-Slot"]].concat(), "(standby_name_invalid)");
    assert!(!target.exists(), "a refused standby leaves nothing behind");
    let serve = ["--database-url", "host=/nonexistent dbname=tally", "serve", "--resolve-within"];
    refused(&[&serve[..], &["0s"]].concat(), "above 0");
    refused(&[&serve[..], &["61s"]].concat(), "at most");
    refused(&[&serve[..], &["30s", "--request-timeout", "30s"]].concat(), "shorter than --request-timeout");
    let _ = std::fs::remove_dir_all(&root);
}
