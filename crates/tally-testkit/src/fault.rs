//! A fault-injecting proxy between a store and the test PostgreSQL: a real network hop (TCP on
//! the loopback) that a test cuts at a chosen moment of the PostgreSQL protocol, or makes
//! unreachable.
//!
//! It reads the messages the client sends (the frontend protocol: one untyped startup message,
//! then a type byte and a length per message) and, once armed, acts on the first message of a
//! `Stage` on any connection: it cuts the connection before the message reaches PostgreSQL,
//! after it did (PostgreSQL runs it, the client never hears the answer), or after the answer
//! reached the client. The server's messages are read only to tell where an answer ends
//! (ReadyForQuery). Nothing in a message is changed; the proxy holds no state of the database.
//!
//! Assumptions: the client asks for no TLS (an SSL or GSS encryption request is answered "no"),
//! and a message of the stage looked for is recognised by its type and, for SQL, its text: a
//! simple query's, or a statement's when it is parsed (a prepared statement run again carries
//! no text).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio_postgres::config::Host;

/// The largest message the proxy passes on (PostgreSQL's own limit for most messages is 1 GB;
/// the tests send far less).
const MESSAGE_BYTES_MAX: usize = 64 << 20;
/// How long a connection cut after its message was sent is kept open towards PostgreSQL, to
/// read (and drop) the answer, so that PostgreSQL finishes the message before it sees the
/// connection end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Protocol codes of the untyped first messages (PostgreSQL's `pqcomm.h`).
const SSL_REQUEST_CODE: i32 = 80_877_103;
const GSSENC_REQUEST_CODE: i32 = 80_877_104;
const CANCEL_REQUEST_CODE: i32 = 80_877_102;

/// A moment of the protocol at which a fault fires: the first client message of its kind on any
/// connection, once armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A simple query that begins with `BEGIN`: the start of a write transaction.
    Begin,
    /// The end of a COPY from the client (`CopyDone`): rows written, transaction still open.
    CopyDone,
    /// The simple query `COMMIT`.
    Commit,
    /// A simple query or a statement being parsed whose SQL text contains this fragment.
    Statement(&'static str),
}

/// What the proxy does to the connection on which the stage's message came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The message never reaches PostgreSQL; both sides are closed.
    Before,
    /// The message reaches PostgreSQL, which runs it; the client is closed at once and never
    /// hears the answer.
    AfterSending,
    /// The message and its answer pass; then both sides are closed.
    AfterAnswer,
}

/// A fault to inject once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub stage: Stage,
    pub cut: Cut,
    /// How long the message is held before the cut (to let other connections move on meanwhile);
    /// the fault counts as fired from when it found its message.
    pub hold: Duration,
    /// Whether the database becomes unreachable through the proxy when the fault fires: every
    /// other connection is cut too, and new ones are closed as soon as they are accepted, until
    /// `set_reachable(true)`.
    pub then_unreachable: bool,
}

impl Fault {
    pub fn new(stage: Stage, cut: Cut) -> Fault {
        Fault { stage, cut, hold: Duration::ZERO, then_unreachable: false }
    }

    pub fn held(self, hold: Duration) -> Fault {
        Fault { hold, ..self }
    }

    pub fn then_unreachable(self) -> Fault {
        Fault { then_unreachable: true, ..self }
    }
}

/// Where the proxy connects to.
#[derive(Debug, Clone)]
enum Upstream {
    Unix(PathBuf),
    Tcp(String, u16),
}

struct Shared {
    upstream: Upstream,
    armed: Mutex<Option<Fault>>,
    reachable: AtomicBool,
    /// How many faults found their message.
    fired: tokio::sync::watch::Sender<usize>,
    /// The connections being proxied, to cut them all when the database becomes unreachable.
    connections: Mutex<Vec<(tokio::task::Id, AbortHandle)>>,
}

/// A proxy on `127.0.0.1`, running until dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    /// The connection string of the proxied database, without its host and port.
    user: Option<String>,
    password: Option<Vec<u8>>,
    dbname: Option<String>,
    shared: Arc<Shared>,
    accept: AbortHandle,
}

impl FaultProxy {
    /// Starts a proxy in front of the server and database `conninfo` names (a libpq string or URL).
    pub async fn start(conninfo: &str) -> FaultProxy {
        let config = tokio_postgres::Config::from_str(conninfo).expect("a valid connection string");
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let upstream = match config.get_hosts().first().expect("the connection string names a host") {
            Host::Unix(dir) => Upstream::Unix(dir.join(format!(".s.PGSQL.{port}"))),
            Host::Tcp(host) => Upstream::Tcp(host.clone(), port),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared {
            upstream,
            armed: Mutex::new(None),
            reachable: AtomicBool::new(true),
            fired: tokio::sync::watch::Sender::new(0),
            connections: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone())).abort_handle();
        FaultProxy {
            addr,
            user: config.get_user().map(str::to_owned),
            password: config.get_password().map(<[u8]>::to_vec),
            dbname: config.get_dbname().map(str::to_owned),
            shared,
            accept,
        }
    }

    /// A libpq connection string to the proxied database through the proxy.
    pub fn conninfo(&self) -> String {
        let mut conninfo = format!("host={} port={}", self.addr.ip(), self.addr.port());
        if let Some(user) = &self.user {
            conninfo.push_str(&format!(" user={}", quoted(user)));
        }
        if let Some(password) = &self.password {
            conninfo.push_str(&format!(" password={}", quoted(&String::from_utf8_lossy(password))));
        }
        if let Some(dbname) = &self.dbname {
            conninfo.push_str(&format!(" dbname={}", quoted(dbname)));
        }
        conninfo
    }

    /// Arms a fault: it fires on the next message of its stage, once.
    pub fn arm(&self, fault: Fault) {
        let previous = self.shared.armed.lock().expect("proxy lock").replace(fault);
        assert!(previous.is_none(), "a fault is armed already: {previous:?}");
    }

    /// Whether an armed fault is still waiting for its message.
    pub fn is_armed(&self) -> bool {
        self.shared.armed.lock().expect("proxy lock").is_some()
    }

    /// How many faults have fired so far (found their message; a held one cuts later).
    pub fn fired(&self) -> usize {
        *self.shared.fired.borrow()
    }

    /// Waits until `count` faults have fired, at most `within`.
    pub async fn wait_fired(&self, count: usize, within: Duration) {
        let mut fired = self.shared.fired.subscribe();
        tokio::time::timeout(within, fired.wait_for(|fired| *fired >= count))
            .await
            .unwrap_or_else(|_| panic!("no fault fired within {within:?}"))
            .expect("the proxy runs");
    }

    /// Makes the database reachable through the proxy again, or unreachable: then every
    /// connection is cut and new ones are closed as soon as they are accepted.
    pub fn set_reachable(&self, reachable: bool) {
        self.shared.reachable.store(reachable, Ordering::SeqCst);
        if !reachable {
            self.shared.cut_all(None);
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.cut_all(None);
    }
}

impl Shared {
    /// Cuts every proxied connection but `except`.
    fn cut_all(&self, except: Option<tokio::task::Id>) {
        let connections = std::mem::take(&mut *self.connections.lock().expect("proxy lock"));
        for (id, connection) in connections {
            if Some(id) == except {
                self.connections.lock().expect("proxy lock").push((id, connection));
            } else {
                connection.abort();
            }
        }
    }

    /// Takes the armed fault if this message is of its stage.
    fn fault_for(&self, kind: u8, body: &[u8]) -> Option<Fault> {
        let mut armed = self.armed.lock().expect("proxy lock");
        let fault = (*armed)?;
        let sql = sql_text(kind, body);
        let query = || if kind == b'Q' { sql.trim().to_ascii_uppercase() } else { String::new() };
        let matches = match fault.stage {
            Stage::Begin => query().starts_with("BEGIN"),
            Stage::CopyDone => kind == b'c',
            Stage::Commit => query().trim_end_matches(';').trim() == "COMMIT",
            Stage::Statement(fragment) => sql.contains(fragment),
        };
        if matches { armed.take() } else { None }
    }

    /// Makes the database unreachable if the fault says so (the connection it came on excepted:
    /// its cut is its own).
    fn fire(&self, fault: &Fault) {
        if fault.then_unreachable {
            self.reachable.store(false, Ordering::SeqCst);
            self.cut_all(tokio::task::try_id());
        }
    }
}

/// The SQL text of a simple query (`Q`: the text) or of a statement being parsed (`P`: its name,
/// then its text); empty for any other message.
fn sql_text(kind: u8, body: &[u8]) -> String {
    let mut strings = body.split(|b| *b == 0);
    let text = match kind {
        b'Q' => strings.next(),
        b'P' => strings.nth(1),
        _ => None,
    };
    String::from_utf8_lossy(text.unwrap_or_default()).into_owned()
}

/// A libpq connection string value, quoted.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        if !shared.reachable.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let task = tokio::spawn(proxy_connection(client, shared.clone()));
        let mut connections = shared.connections.lock().expect("proxy lock");
        connections.retain(|(_, connection)| !connection.is_finished());
        connections.push((task.id(), task.abort_handle()));
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(upstream: &Upstream) -> std::io::Result<Box<dyn Stream>> {
    Ok(match upstream {
        Upstream::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        Upstream::Tcp(host, port) => Box::new(TcpStream::connect((host.as_str(), *port)).await?),
    })
}

/// How a proxied connection ends.
enum End {
    /// Either side closed, or failed.
    Closed,
    /// A fault cut it.
    Cut(Fault),
}

async fn proxy_connection(client: TcpStream, shared: Arc<Shared>) {
    let Ok(upstream) = connect(&shared.upstream).await else { return };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = tokio::io::split(upstream);
    if !startup(&mut client_read, &mut client_write, &mut server_write).await {
        return;
    }
    // Set when the answer to the message being passed should end the connection.
    let cut_after_answer = AtomicBool::new(false);
    let end = {
        let upward = async {
            loop {
                let Some((kind, body)) = read_typed(&mut client_read).await else { return End::Closed };
                if let Some(fault) = shared.fault_for(kind, &body) {
                    shared.fired.send_modify(|fired| *fired += 1);
                    tokio::time::sleep(fault.hold).await;
                    shared.fire(&fault);
                    if fault.cut == Cut::Before {
                        return End::Cut(fault);
                    }
                    if fault.cut == Cut::AfterAnswer {
                        cut_after_answer.store(true, Ordering::SeqCst);
                    }
                    if write_typed(&mut server_write, kind, &body).await.is_err() {
                        return End::Closed;
                    }
                    if fault.cut == Cut::AfterSending {
                        return End::Cut(fault);
                    }
                    continue;
                }
                if write_typed(&mut server_write, kind, &body).await.is_err() {
                    return End::Closed;
                }
            }
        };
        let downward = async {
            loop {
                let Some((kind, body)) = read_typed(&mut server_read).await else { return End::Closed };
                if write_typed(&mut client_write, kind, &body).await.is_err() {
                    return End::Closed;
                }
                if kind == b'Z' && cut_after_answer.load(Ordering::SeqCst) {
                    return End::Closed;
                }
            }
        };
        tokio::select! {
            end = upward => end,
            end = downward => end,
        }
    };
    if let End::Cut(Fault { cut: Cut::AfterSending, .. }) = end {
        // The client hears nothing more; PostgreSQL gets the end of the connection only after
        // the message, and its answer is read and dropped.
        drop((client_read, client_write));
        let _ = server_write.shutdown().await;
        let mut sink = [0_u8; 8192];
        let drain = async { while matches!(server_read.read(&mut sink).await, Ok(n) if n > 0) {} };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    }
}

/// Passes the startup message on, answering "no" to requests for encryption first. False when
/// the connection is done (closed, or a cancel request, which is passed on as it is).
async fn startup(
    client_read: &mut (impl AsyncRead + Unpin),
    client_write: &mut (impl AsyncWrite + Unpin),
    server_write: &mut (impl AsyncWrite + Unpin),
) -> bool {
    loop {
        let Ok(length) = client_read.read_i32().await else { return false };
        let Some(length) = usize::try_from(length).ok().filter(|l| (8..=MESSAGE_BYTES_MAX).contains(l)) else {
            return false;
        };
        let mut body = vec![0_u8; length - 4];
        if client_read.read_exact(&mut body).await.is_err() {
            return false;
        }
        let code = i32::from_be_bytes(body[..4].try_into().expect("four bytes"));
        if code == SSL_REQUEST_CODE || code == GSSENC_REQUEST_CODE {
            if client_write.write_all(b"N").await.is_err() {
                return false;
            }
            continue;
        }
        let mut message = (length as i32).to_be_bytes().to_vec();
        message.extend_from_slice(&body);
        if server_write.write_all(&message).await.is_err() || server_write.flush().await.is_err() {
            return false;
        }
        return code != CANCEL_REQUEST_CODE;
    }
}

/// One typed message: its type byte and its body. `None` at the end of the stream.
async fn read_typed(read: &mut (impl AsyncRead + Unpin)) -> Option<(u8, Vec<u8>)> {
    let kind = read.read_u8().await.ok()?;
    let length = usize::try_from(read.read_i32().await.ok()?).ok().filter(|l| (4..=MESSAGE_BYTES_MAX).contains(l))?;
    let mut body = vec![0_u8; length - 4];
    read.read_exact(&mut body).await.ok()?;
    Some((kind, body))
}

async fn write_typed(write: &mut (impl AsyncWrite + Unpin), kind: u8, body: &[u8]) -> std::io::Result<()> {
    let length = i32::try_from(body.len() + 4).expect("bounded by MESSAGE_BYTES_MAX");
    let mut message = Vec::with_capacity(body.len() + 5);
    message.push(kind);
    message.extend_from_slice(&length.to_be_bytes());
    message.extend_from_slice(body);
    write.write_all(&message).await?;
    write.flush().await
}
