//! Events out, end to end with real processes, a real NATS JetStream and PostgreSQL 18:
//! - `tally relay` processes and `tally serve --nats-url` processes killed with SIGKILL while
//!   transfers commit: JetStream ends up with every event exactly once, in order;
//! - the README's webhook receiver (`examples/webhook_receiver.py`, which verifies signatures)
//!   against `tally serve`, killed with SIGKILL mid-stream and started again: the receiver
//!   processes every transfer event once, in order.
//!
//! NATS: `TALLY_TEST_NATS_URL`, else nats://127.0.0.1:4222 (`scripts/test` starts one when there is
//! none). Without it these tests fail, saying so.

use async_nats::jetstream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tally_core::{AccountId, BalanceRule, TransferId, TransferRequest, TransferResult};
use tally_engine::{Engine, Submission};
use tally_store::{NewAccount, Store};
use uuid::Uuid;

const WALLETS: usize = 20;
/// SIGKILLs per test.
const KILLS: usize = 5;
/// How long the relays may take to catch up at the end.
const CATCH_UP: Duration = Duration::from_secs(60);

fn nats_url() -> String {
    std::env::var("TALLY_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

async fn jetstream() -> jetstream::Context {
    let url = nats_url();
    let client = async_nats::connect(url.as_str()).await.unwrap_or_else(|error| {
        panic!("these tests need NATS with JetStream at {url} (start `nats-server -js`, or set TALLY_TEST_NATS_URL): {error}")
    });
    jetstream::new(client)
}

struct Ledger {
    db: tally_testkit::TestDb,
    store: Store,
    engine: Engine,
    bank: AccountId,
    wallets: Vec<AccountId>,
    dir: PathBuf,
}

impl Ledger {
    async fn new() -> Ledger {
        let db = tally_testkit::fresh_database().await;
        let store = Store::connect(&db.conninfo, 4).unwrap();
        let engine = Engine::new(store.clone());
        let open = |code: String, rule| NewAccount {
            ledger: tally_core::LedgerId::DEFAULT,
            id: None,
            code: Some(code),
            currency: "EUR".into(),
            rule,
            metadata: None,
        };
        let bank =
            store.create_account(&open("bank".into(), BalanceRule::Unrestricted), "test").await.unwrap().0.account.id;
        let mut wallets = Vec::new();
        for index in 0..WALLETS {
            let wallet = open(format!("w{index}"), BalanceRule::NoOverdraft);
            wallets.push(store.create_account(&wallet, "test").await.unwrap().0.account.id);
        }
        let dir = std::env::temp_dir().join(format!("tally-events-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Ledger { db, store, engine, bank, wallets, dir }
    }

    /// Commits a batch of `size` transfers from the bank to the wallets.
    async fn write(&self, size: usize) {
        let submissions = (0..size)
            .map(|_| {
                let to = self.wallets[fastrand::usize(..self.wallets.len())];
                let amount = fastrand::i128(1..100_000);
                let request = TransferRequest::posted(TransferId(Uuid::now_v7()), self.bank, to, amount);
                Submission { request, actor: "test".into() }
            })
            .collect();
        let outcomes = self.engine.submit(submissions).await.unwrap();
        assert!(outcomes.iter().all(|o| o.result == TransferResult::Ok));
    }

    /// Writes batches until `stop` is set; returns how many batches it wrote.
    fn write_until(self: &Arc<Self>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
        let ledger = self.clone();
        tokio::spawn(async move {
            let mut batches = 0;
            while !stop.load(Ordering::SeqCst) {
                ledger.write(1 + fastrand::usize(..50)).await;
                batches += 1;
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..20))).await;
            }
            batches
        })
    }

    /// Starts `tally <args>` on this ledger's database, its output in files of the test's
    /// directory (named `name`).
    fn spawn(&self, name: &str, args: &[&str]) -> Child {
        let out = std::fs::File::create(self.dir.join(format!("{name}.out"))).unwrap();
        let err = std::fs::File::create(self.dir.join(format!("{name}.err"))).unwrap();
        Command::new(env!("CARGO_BIN_EXE_tally"))
            .arg("--database-url")
            .arg(&self.db.conninfo)
            .args(args)
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start tally")
    }

    fn log(&self, name: &str) -> String {
        let read = |ext| std::fs::read_to_string(self.dir.join(format!("{name}.{ext}"))).unwrap_or_default();
        format!("--- {name} stdout:\n{}\n--- {name} stderr:\n{}", read("out"), read("err"))
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// Every message of the stream, as its `Tally-Seq` header, in stream order.
async fn stream_seqs(js: &jetstream::Context, stream: &str) -> Vec<i64> {
    let mut stream = js.get_stream(stream).await.expect("the relay created the stream");
    let state = stream.info().await.unwrap().state.clone();
    let mut seqs = Vec::new();
    if state.messages == 0 {
        return seqs;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let seq = message.headers.get("Tally-Seq").expect("every message carries Tally-Seq").as_str();
        let id = message.headers.get("Nats-Msg-Id").expect("every message carries Nats-Msg-Id").as_str();
        assert_eq!(seq, id, "Nats-Msg-Id is the event's sequence number");
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(body["seq"].to_string(), seq);
        assert_eq!(message.subject.as_str().split_once('.').unwrap().1, body["type"].as_str().unwrap());
        seqs.push(seq.parse().unwrap());
    }
    seqs
}

/// Waits until the stream's newest message is the ledger's newest event.
async fn wait_for_stream(js: &jetstream::Context, stream: &str, newest: i64, ledger: &Ledger, names: &[String]) {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        if let Ok(mut s) = js.get_stream(stream).await
            && let Ok(info) = s.info().await
            && info.state.messages >= newest as u64
        {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = names.iter().map(|name| ledger.log(name)).collect();
            panic!("the stream did not reach event {newest} within {CATCH_UP:?}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills `KILLS` processes mid-stream, one at a time, each replaced by a new one, while a
/// writer commits transfers; then checks the stream holds every event once, in order.
async fn kill_mid_stream(ledger: Arc<Ledger>, stream: &str, args: Vec<String>) {
    let js = jetstream().await;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut names = Vec::new();
    let mut processes = Vec::new();
    for _ in 0..2 {
        let name = format!("p{}", names.len());
        processes.push(ledger.spawn(&name, &args));
        names.push(name);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = ledger.write_until(stop.clone());
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(400..900))).await;
        // The oldest process is the one most likely to hold the lease.
        let mut victim = processes.remove(0);
        victim.kill().expect("SIGKILL");
        victim.wait().unwrap();
        let name = format!("p{}", names.len());
        processes.push(ledger.spawn(&name, &args));
        names.push(name);
    }
    stop.store(true, Ordering::SeqCst);
    let batches = writer.await.unwrap();
    assert!(batches >= KILLS, "the writer kept writing while processes were killed ({batches} batches)");
    let newest = ledger.store.last_event_seq().await.unwrap();
    wait_for_stream(&js, stream, newest, &ledger, &names).await;
    let seqs = stream_seqs(&js, stream).await;
    let expected: Vec<i64> = (1..=newest).collect();
    if seqs != expected {
        let logs: Vec<String> = names.iter().map(|name| ledger.log(name)).collect();
        let doubled = seqs.len() as i64 - newest;
        panic!("the stream holds {} messages for {newest} events ({doubled} extra):\n{}", seqs.len(), logs.join("\n"));
    }
    for mut process in processes {
        let _ = process.kill();
        let _ = process.wait();
    }
    js.delete_stream(stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_processes_killed_mid_stream_lose_nothing_and_double_nothing() {
    let ledger = Arc::new(Ledger::new().await);
    let stream = unique("RELAYKILL");
    let prefix = unique("relaykill");
    let url = nats_url();
    let args = ["relay", "--nats-url", &url, "--nats-stream", &stream, "--nats-subject-prefix", &prefix];
    let args = args.iter().map(|s| s.to_string()).collect();
    tokio::time::timeout(Duration::from_secs(180), kill_mid_stream(ledger, &stream, args)).await.expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_processes_with_nats_killed_mid_stream_lose_nothing_and_double_nothing() {
    let ledger = Arc::new(Ledger::new().await);
    let stream = unique("SERVEKILL");
    let prefix = unique("servekill");
    let url = nats_url();
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--reconcile-after",
        "off",
        "--no-webhooks",
        "--nats-url",
        &url,
        "--nats-stream",
        &stream,
        "--nats-subject-prefix",
        &prefix,
    ];
    let args = args.iter().map(|s| s.to_string()).collect();
    tokio::time::timeout(Duration::from_secs(180), kill_mid_stream(ledger, &stream, args)).await.expect("bounded");
}

/// A free port on the loopback (bound, then released for the process that will listen on it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn receiver_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/webhook_receiver.py")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_receiver_gets_every_transfer_event_once_in_order_across_serve_crashes() {
    let ledger = Arc::new(Ledger::new().await);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/tally");
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["--database-url", &ledger.db.conninfo, "--json", "webhook", "add", &url, "--events", "transfer.*"])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let added: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let secret = added["secret"].as_str().expect("the secret is shown at registration").to_owned();
    assert!(secret.starts_with("whsec_"));

    // The receiver starts late: the first deliveries fail and are retried.
    let events_file = ledger.dir.join("received.jsonl");
    let serve_args = ["serve", "--listen", "127.0.0.1:0", "--reconcile-after", "off", "--webhook-retry-base", "50ms"];
    let mut serve = ledger.spawn("serve0", &serve_args);
    ledger.write(20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut receiver = Command::new("python3")
        .arg(receiver_script())
        .arg(port.to_string())
        .arg(&events_file)
        .env("TALLY_WEBHOOK_SECRET", &secret)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs the example receiver");

    let mut names = vec!["serve0".to_owned()];
    for kill in 1..=KILLS {
        ledger.write(1 + fastrand::usize(..40)).await;
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..400))).await;
        serve.kill().unwrap();
        serve.wait().unwrap();
        let name = format!("serve{kill}");
        serve = ledger.spawn(&name, &serve_args);
        names.push(name);
    }
    ledger.write(30).await;

    // Every transfer event, in order, processed once.
    let expected: Vec<i64> = {
        let mut seqs = Vec::new();
        let mut after = 0;
        loop {
            let page = ledger.store.events_page(after, 1000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            seqs.extend(page.iter().filter(|e| e.event_type.starts_with("transfer.")).map(|e| e.seq));
        }
        seqs
    };
    let newest = *expected.last().unwrap();
    let deadline = Instant::now() + CATCH_UP;
    let position = |file: &Path| -> i64 {
        std::fs::read_to_string(file.with_extension("jsonl.seq")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
    };
    while position(&events_file) < newest {
        if Instant::now() > deadline || receiver.try_wait().unwrap().is_some() {
            let logs: Vec<String> = names.iter().map(|name| ledger.log(name)).collect();
            panic!("the receiver is at {} of {newest}\n{}", position(&events_file), logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received: Vec<serde_json::Value> = std::fs::read_to_string(&events_file)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let seqs: Vec<i64> = received.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, expected, "every transfer event, once, in order");
    for event in &received {
        assert_eq!(event["type"], "transfer.posted");
        assert_eq!(event["payload"]["currency"], "EUR");
        assert!(event["payload"]["amount"].as_str().unwrap().contains('.'), "a decimal string: {event}");
    }
    serve.kill().unwrap();
    serve.wait().unwrap();
    receiver.kill().unwrap();
    receiver.wait().unwrap();
}
