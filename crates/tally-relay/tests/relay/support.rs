//! Shared helpers: a ledger with an engine and an outbox on a fresh database, the NATS server
//! the tests need (with a stream of each test's own, deleted at the end), and HTTP receivers that
//! record every delivery and can be told to fail, hang or be down.

use async_nats::jetstream::{self, consumer::pull::OrderedConfig};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tally_core::{AccountId, BalanceRule, TransferId, TransferRequest, TransferResult};
use tally_engine::{Engine, EngineConfig, Submission};
use tally_relay::{NatsConfig, Outbox, RelayError, WebhookConfig};
use tally_store::{NewAccount, StatusChange, Store};
use tally_testkit::TestDb;
use tally_views::EventView;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub const ACTOR: &str = "test:relay";
/// Connections of each test's outbox pool.
pub const OUTBOX_POOL: usize = 4;
/// How long any one wait of a test may take before it fails.
pub const WITHIN: Duration = Duration::from_secs(20);

/// Runs a test's body, failing it if it takes longer than `bound` (so that a hang fails CI
/// instead of blocking it).
pub async fn bounded<T>(bound: Duration, test: impl Future<Output = T>) -> T {
    match tokio::time::timeout(bound, test).await {
        Ok(value) => value,
        Err(_) => panic!("the test did not finish within {bound:?}"),
    }
}

/// Waits until `check` gives `Some`, trying every 10 ms, at most `within`; fails the test with
/// `what` otherwise.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Log output for a failing test: `RUST_LOG=tally_relay=debug cargo test ...`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

// ---------------------------------------------------------------------------------------------
// The ledger.

/// A fresh database with an engine (to post transfers the way Tally does) and an outbox.
pub struct Ledger {
    pub db: TestDb,
    pub engine: Engine,
    pub outbox: Outbox,
    pub bank: AccountId,
    pub wallets: Vec<AccountId>,
}

impl Ledger {
    /// A bank account and three wallets, opened: four `account.created` events.
    pub async fn new() -> Ledger {
        init_tracing();
        let db = tally_testkit::fresh_database().await;
        let outbox = Outbox::new(&db.store, OUTBOX_POOL);
        Ledger::on(db, outbox).await
    }

    async fn on(db: TestDb, outbox: Outbox) -> Ledger {
        let engine =
            Engine::start(db.store.clone(), EngineConfig { expiry_sweep_interval: None, ..EngineConfig::default() });
        let bank = open(&db.store, "bank", BalanceRule::Unrestricted).await;
        let mut wallets = Vec::new();
        for name in ["alice", "bob", "carol"] {
            wallets.push(open(&db.store, name, BalanceRule::Unrestricted).await);
        }
        Ledger { db, engine, outbox, bank, wallets }
    }

    /// A ledger whose outbox (and so the relay's lease connection) reaches PostgreSQL through
    /// a fault proxy, while the engine writes directly.
    pub async fn behind_proxy() -> (Ledger, tally_testkit::FaultProxy) {
        init_tracing();
        let db = tally_testkit::fresh_database().await;
        let proxy = tally_testkit::FaultProxy::start(&db.conninfo).await;
        let proxied = Store::connect(&proxy.conninfo(), OUTBOX_POOL).expect("pool");
        let outbox = Outbox::new(&proxied, OUTBOX_POOL);
        (Ledger::on(db, outbox).await, proxy)
    }

    /// Posts `n` transfers from the bank to the wallets, in one submission of `n` (the engine
    /// batches them); every one must be applied. Amounts are 1.01, 1.02, ... USD.
    pub async fn transfers(&self, n: usize) -> Vec<TransferRequest> {
        let requests: Vec<TransferRequest> = (0..n)
            .map(|i| {
                let to = self.wallets[i % self.wallets.len()];
                TransferRequest::posted(TransferId(Uuid::now_v7()), self.bank, to, 101 + (i % 97) as i128)
            })
            .collect();
        let submissions =
            requests.iter().map(|request| Submission { request: request.clone(), actor: ACTOR.into() }).collect();
        let outcomes = self.engine.submit(submissions).await.expect("submit");
        for outcome in &outcomes {
            assert_eq!(outcome.result, TransferResult::Ok, "every transfer applies");
        }
        requests
    }

    /// Freezes and unfreezes a wallet: two account events.
    pub async fn freeze_and_unfreeze(&self) {
        let wallet = self.wallets[0].to_string();
        for change in [StatusChange::Freeze, StatusChange::Unfreeze] {
            self.db.store.change_account_status(&wallet, change, None, ACTOR).await.expect("status change");
        }
    }

    /// Opens one more account: an `account.created` event.
    pub async fn open_account(&self, code: &str) -> AccountId {
        open(&self.db.store, code, BalanceRule::Unrestricted).await
    }

    /// The newest event's sequence number.
    pub async fn newest(&self) -> i64 {
        self.db.store.last_event_seq().await.expect("newest event")
    }

    /// Every event of the outbox as Tally presents it (what NATS and webhooks must carry).
    pub async fn events(&self) -> Vec<EventView> {
        let mut events = Vec::new();
        loop {
            let after = events.last().map_or(0, |e: &EventView| e.seq);
            let page = self.db.store.events_with_subjects(after, 1000).await.expect("events");
            if page.is_empty() {
                return events;
            }
            events.extend(page.into_iter().map(|(event, subject)| EventView::new(event, subject)));
        }
    }

    /// Where the relay named `name` stands (0 before it ever ran).
    pub async fn relay_cursor(&self, name: &str) -> i64 {
        let positions = self.outbox.positions().await.expect("positions");
        positions.relays.iter().find(|r| r.name == name).map_or(0, |r| r.delivered_seq)
    }
}

async fn open(store: &Store, code: &str, rule: BalanceRule) -> AccountId {
    let new = NewAccount {
        ledger: tally_core::LedgerId::DEFAULT,
        id: None,
        code: Some(code.into()),
        currency: "USD".into(),
        rule,
        metadata: None,
    };
    store.create_account(&new, ACTOR).await.expect("open account").0.account.id
}

/// A relay or dispatcher task and the switch that stops it.
pub struct Running {
    pub shutdown: watch::Sender<bool>,
    pub task: JoinHandle<Result<(), RelayError>>,
}

impl Running {
    /// Asks it to stop and waits (bounded) until it has.
    pub async fn stop(self) {
        self.shutdown.send_replace(true);
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the relay stops within 10 s of its shutdown")
            .expect("the relay task did not panic");
        result.expect("the relay ends without an error");
    }

    /// Kills it as a crash would: its task is dropped where it stands.
    pub async fn kill(self) {
        self.task.abort();
        let ended = tokio::time::timeout(Duration::from_secs(5), self.task).await.expect("an aborted task ends");
        assert!(ended.unwrap_err().is_cancelled());
    }
}

pub fn start_nats(outbox: &Outbox, config: &NatsConfig) -> Running {
    let (shutdown, receiver) = watch::channel(false);
    Running { shutdown, task: tokio::spawn(tally_relay::run_nats(outbox.clone(), config.clone(), receiver)) }
}

pub fn start_webhooks(outbox: &Outbox, config: &WebhookConfig) -> Running {
    let (shutdown, receiver) = watch::channel(false);
    Running { shutdown, task: tokio::spawn(tally_relay::run_webhooks(outbox.clone(), config.clone(), receiver)) }
}

// ---------------------------------------------------------------------------------------------
// NATS JetStream.

/// The NATS server of the tests: `TALLY_TEST_NATS_URL`, or the local one.
pub fn nats_url() -> String {
    std::env::var("TALLY_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A JetStream context on the tests' NATS server; fails the test when there is none.
pub async fn jetstream() -> jetstream::Context {
    let url = nats_url();
    let connect = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(3)).connect(url.as_str());
    let client = match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => panic!(
            "NATS is not reachable at {url} ({error}): these tests need a NATS server with JetStream; start one \
             with `nats-server -js` (or point TALLY_TEST_NATS_URL at one)"
        ),
        Err(_) => panic!(
            "NATS did not answer at {url} within 5 s: these tests need a NATS server with JetStream; start one \
             with `nats-server -js` (or point TALLY_TEST_NATS_URL at one)"
        ),
    };
    // JetStream answers its API (the client's typed account query may not parse an older
    // server's answer, so the raw one is read).
    let info = tokio::time::timeout(Duration::from_secs(5), client.request("$JS.API.INFO", Bytes::new())).await;
    let answer = match info {
        Ok(Ok(message)) => String::from_utf8_lossy(&message.payload).into_owned(),
        Ok(Err(error)) => error.to_string(),
        Err(_) => "no answer within 5 s".to_owned(),
    };
    if !answer.contains("account_info_response") || answer.contains("\"error\"") {
        panic!("the NATS server at {url} has no JetStream ({answer}): start it with `nats-server -js`");
    }
    jetstream::new(client)
}

/// A stream of this test's own (streams may not share subjects), deleted when dropped.
pub struct TestStream {
    pub name: String,
    pub prefix: String,
    pub js: jetstream::Context,
}

impl TestStream {
    pub async fn new() -> TestStream {
        let js = jetstream().await;
        let id = Uuid::new_v4().simple().to_string();
        TestStream { name: format!("TALLY_TEST_{}", &id[..16]), prefix: format!("tt{}", &id[..16]), js }
    }

    /// A relay configuration for this stream, with short timings.
    pub fn config(&self, page: i64) -> NatsConfig {
        NatsConfig {
            url: nats_url(),
            stream: self.name.clone(),
            subject_prefix: self.prefix.clone(),
            duplicate_window: Duration::from_secs(120),
            page,
            poll_interval: Duration::from_millis(10),
            lease_poll: Duration::from_millis(50),
        }
    }

    /// Every message of the stream, read back in order by an ordered consumer. Fails if the
    /// stream's count disagrees with what the consumer gets.
    pub async fn messages(&self) -> Vec<StreamMessage> {
        let mut stream = self.js.get_stream(&self.name).await.expect("the relay created the stream");
        let state = stream.info().await.expect("stream info").state.clone();
        assert_eq!(state.first_sequence.max(1), 1, "nothing was removed from the stream");
        assert_eq!(state.messages, state.last_sequence, "the stream has no holes");
        let consumer = stream.create_consumer(OrderedConfig::default()).await.expect("an ordered consumer");
        let mut messages = consumer.messages().await.expect("messages");
        let mut read = Vec::new();
        while (read.len() as u64) < state.messages {
            let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
                .await
                .expect("the stream's messages arrive")
                .expect("more messages")
                .expect("a message");
            let info = message.info().expect("a JetStream message");
            let header = |name: &str| {
                message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned()).unwrap_or_default()
            };
            read.push(StreamMessage {
                stream_seq: info.stream_sequence,
                subject: message.subject.to_string(),
                msg_id: header("Nats-Msg-Id"),
                tally_seq: header("Tally-Seq"),
                tally_type: header("Tally-Type"),
                payload: message.payload.clone(),
            });
        }
        // And nothing after them.
        let more = tokio::time::timeout(Duration::from_millis(200), messages.next()).await;
        assert!(more.is_err(), "no message beyond the stream's count");
        read
    }

    /// Fails unless the stream holds exactly `events`, once each, in order, each as the relay
    /// must publish it.
    pub async fn assert_holds_exactly(&self, events: &[EventView]) {
        let messages = self.messages().await;
        let seqs: Vec<u64> = messages.iter().map(|m| m.stream_seq).collect();
        assert_eq!(messages.len(), events.len(), "one message per event, no more: stream seqs {seqs:?}");
        for (message, event) in messages.iter().zip(events) {
            let seq = event.seq.to_string();
            assert_eq!(message.stream_seq, event.seq as u64, "the stream is in event order");
            assert_eq!(message.msg_id, seq, "Nats-Msg-Id is the event's seq");
            assert_eq!(message.tally_seq, seq, "Tally-Seq");
            assert_eq!(message.tally_type, event.event_type, "Tally-Type");
            assert_eq!(message.subject, format!("{}.{}", self.prefix, event.event_type), "subject of {seq}");
            assert_eq!(
                message.payload.as_ref(),
                event.to_json().as_slice(),
                "the body of {seq} is the event as GET /v1/events shows it"
            );
        }
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        // Drop may run on the test's runtime (or while it unwinds): delete from a thread of
        // its own with a runtime of its own.
        let name = self.name.clone();
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let connect = async_nats::connect(nats_url());
                let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(3), connect).await else { return };
                let js = jetstream::new(client);
                let _ = tokio::time::timeout(Duration::from_secs(3), js.delete_stream(&name)).await;
            });
        })
        .join();
        if deleted.is_err() {
            eprintln!("warning: could not delete the test stream {}", self.name);
        }
    }
}

#[derive(Debug, Clone)]
pub struct StreamMessage {
    pub stream_seq: u64,
    pub subject: String,
    pub msg_id: String,
    pub tally_seq: String,
    pub tally_type: String,
    pub payload: Bytes,
}

// ---------------------------------------------------------------------------------------------
// Webhooks.

/// Webhook timings for tests: retries from 20 ms, polls every 10 ms, endpoints re-read every
/// 20 ms, a standby tries every 50 ms.
pub fn webhook_config() -> WebhookConfig {
    WebhookConfig {
        attempts_max: 12,
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        timeout: Duration::from_secs(2),
        poll_interval: Duration::from_millis(10),
        refresh_interval: Duration::from_millis(20),
        lease_poll: Duration::from_millis(50),
    }
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub seq: i64,
    pub event_type: String,
    pub attempt: u32,
    pub webhook_id: String,
    pub signature: String,
    pub content_type: String,
    pub body: Bytes,
    /// What the receiver answered (0: nothing, it hung).
    pub status: u16,
}

#[derive(Default)]
struct ReceiverState {
    log: Mutex<Vec<Received>>,
    /// Answer 500 to this many requests from now.
    fail_next: AtomicU32,
    /// Answer 500 to every request.
    failing: AtomicBool,
    /// Never answer.
    hanging: AtomicBool,
    /// Wait this long before answering.
    delay_ms: AtomicU64,
    /// Requests so far, for waiting.
    count: watch::Sender<usize>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: AtomicU32,
    max_in_flight: AtomicU32,
}

/// A webhook receiver on 127.0.0.1: records every request and answers 200, unless told to
/// fail, hang or wait.
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
    server: JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the receiver serves");
        });
        Receiver { url, state, server }
    }

    /// A URL where nothing listens: connections are refused.
    pub async fn refused_url() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        format!("http://{address}/hook")
    }

    pub fn fail_next(&self, n: u32) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    pub fn set_hanging(&self, hanging: bool) {
        self.state.hanging.store(hanging, Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> u32 {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests it was ever answering at once.
    pub fn max_in_flight(&self) -> u32 {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every request so far, in arrival order.
    pub fn log(&self) -> Vec<Received> {
        self.state.log.lock().expect("log").clone()
    }

    /// The sequence numbers it answered 2xx, in arrival order.
    pub fn delivered(&self) -> Vec<i64> {
        self.log().iter().filter(|r| r.status == 200).map(|r| r.seq).collect()
    }

    /// Waits until the requests answered 2xx cover `seqs` (in any number of tries), at most
    /// `within`.
    pub async fn wait_delivered(&self, seqs: &[i64], within: Duration) {
        let mut count = self.state.count.subscribe();
        let done = |receiver: &Receiver| {
            let delivered: std::collections::HashSet<i64> = receiver.delivered().into_iter().collect();
            seqs.iter().all(|seq| delivered.contains(seq))
        };
        let wait = async {
            while !done(self) {
                count.changed().await.expect("the receiver runs");
            }
        };
        if tokio::time::timeout(within, wait).await.is_err() {
            let delivered = self.delivered();
            let missing: Vec<i64> = seqs.iter().copied().filter(|s| !delivered.contains(s)).collect();
            panic!(
                "not delivered within {within:?}: {} of {} events, e.g. {:?}",
                missing.len(),
                seqs.len(),
                &missing[..missing.len().min(10)]
            );
        }
    }

    /// Waits until it has had `n` requests.
    pub async fn wait_requests(&self, n: usize, within: Duration) {
        let mut count = self.state.count.subscribe();
        let wait = count.wait_for(|count| *count >= n);
        match tokio::time::timeout(within, wait).await {
            Ok(result) => {
                result.expect("the receiver runs");
            }
            Err(_) => panic!("not {n} requests within {within:?}, only {}", self.log().len()),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(State(state): State<Arc<ReceiverState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let answer = answer(&state, &headers, body).await;
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    answer
}

async fn answer(state: &ReceiverState, headers: &HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let hanging = state.hanging.load(Ordering::SeqCst);
    let fail = state.failing.load(Ordering::SeqCst)
        || state.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    let status = if hanging {
        0
    } else if fail {
        500
    } else {
        200
    };
    let received = Received {
        seq: header("tally-event-seq").parse().unwrap_or(-1),
        event_type: header("tally-event-type"),
        attempt: header("tally-delivery-attempt").parse().unwrap_or(0),
        webhook_id: header("tally-webhook-id"),
        signature: header("tally-signature"),
        content_type: header("content-type"),
        body,
        status,
    };
    let delay = Duration::from_millis(state.delay_ms.load(Ordering::SeqCst));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    state.log.lock().expect("log").push(received);
    state.count.send_modify(|count| *count += 1);
    if hanging {
        std::future::pending::<()>().await;
    }
    StatusCode::from_u16(status).expect("a status")
}

/// Deliveries in arrival order split into the first of each event and the repeats (a seq not
/// above every one before it).
pub fn split_repeats(seqs: &[i64]) -> (Vec<i64>, Vec<i64>) {
    let mut distinct: Vec<i64> = Vec::new();
    let mut repeats = Vec::new();
    for &seq in seqs {
        if distinct.last().is_some_and(|last| seq <= *last) {
            repeats.push(seq);
        } else {
            distinct.push(seq);
        }
    }
    (distinct, repeats)
}

/// The seqs of `events` whose type `patterns` select.
pub fn matching(events: &[EventView], patterns: &[&str], after: i64) -> Vec<i64> {
    events
        .iter()
        .filter(|e| e.seq > after && patterns.iter().any(|p| tally_views::events::type_matches(p, &e.event_type)))
        .map(|e| e.seq)
        .collect()
}

/// A TCP proxy in front of the NATS server whose connections a test can cut.
pub struct NatsProxy {
    pub url: String,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl NatsProxy {
    pub async fn start() -> NatsProxy {
        let upstream = nats_url().trim_start_matches("nats://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the NATS proxy");
        let url = format!("nats://{}", listener.local_addr().expect("address"));
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accept = {
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    });
                    connections.lock().expect("lock").push(task.abort_handle());
                }
            })
        };
        NatsProxy { url, connections, accept }
    }

    /// Cuts every connection through the proxy (new ones are accepted).
    pub fn cut(&self) {
        for connection in self.connections.lock().expect("lock").drain(..) {
            connection.abort();
        }
    }
}

impl Drop for NatsProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
