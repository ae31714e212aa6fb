//! Test support: a real PostgreSQL (18 by default) for the whole test run, and a fresh, migrated
//! database for every test, cloned from a template in milliseconds.
//!
//! - Server: `TALLY_TEST_ADMIN_URL` when set (a libpq connection string to a server where we
//!   may create databases), otherwise an embedded server in `$TMPDIR/tally-test-pg-<hash>`,
//!   started on first use and left running for the next test process (nextest runs each test
//!   in its own process; cargo test runs one process per test binary). A file lock makes
//!   concurrent first starts safe. `scripts/test` gives every run its own server
//!   (`TALLY_TEST_PG_DIR`) and stops it at the end.
//! - Template: `tally_tpl_<checksum of the migrations>`, created and migrated once under an
//!   advisory lock. Each test then runs `CREATE DATABASE ... TEMPLATE ...`.
//! - Upgrade tests: [`database_at`] gives a database migrated only as far as an earlier release.
//! - Clean-up: dropping a [`TestDb`] drops its database.
//! - Faults: [`FaultProxy`] sits between a store and the server and cuts connections at chosen
//!   moments of a transaction, or makes the database unreachable (`fault`).

pub mod fault;

pub use fault::{Cut, Fault, FaultProxy, Stage};

use std::path::PathBuf;
use std::sync::OnceLock;
use tally_pg::EmbeddedPg;
use tally_store::Store;
use tokio_postgres::NoTls;

/// Connections each test's store may open.
pub const TEST_POOL_SIZE: usize = 8;

/// A fresh, migrated database for one test.
pub struct TestDb {
    pub store: Store,
    /// libpq connection string of this database.
    pub conninfo: String,
    pub name: String,
}

enum Server {
    Embedded(EmbeddedPg),
    External(String),
}

impl Server {
    fn conninfo(&self, dbname: &str) -> String {
        match self {
            Server::Embedded(pg) => pg.connection_string(dbname),
            Server::External(admin) => format!("{admin} dbname={dbname}"),
        }
    }
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("TALLY_TEST_ADMIN_URL") {
        Ok(url) => Server::External(url),
        Err(_) => Server::Embedded(start_embedded()),
    })
}

/// The directory of the shared test server: `TALLY_TEST_PG_DIR` (what `scripts/test` sets, a
/// fresh directory per run), or one per checkout under the temp dir.
pub fn test_server_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TALLY_TEST_PG_DIR") {
        return PathBuf::from(dir).join("pg");
    }
    let checkout = env!("CARGO_MANIFEST_DIR");
    let hash =
        checkout.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    std::env::temp_dir().join(format!("tally-test-pg-{:08x}", hash as u32)).join("pg")
}

/// The tests run against the PostgreSQL major version Tally is built for, never an older
/// server that happens to be installed (Tally itself accepts older ones).
const TEST_PG_MAJOR: u32 = 18;

fn start_embedded() -> EmbeddedPg {
    let bins = tally_pg::find_binaries().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        bins.version_major,
        TEST_PG_MAJOR,
        "the tests need PostgreSQL {TEST_PG_MAJOR}, found {} in {}: run scripts/install-pg.sh (or set TALLY_PG_BIN)",
        bins.version_major,
        bins.bin_dir.display()
    );
    let dir = test_server_dir();
    let parent = dir.parent().expect("the server dir has a parent");
    std::fs::create_dir_all(parent).expect("create the test server's parent directory");
    let lock_path = parent.join("start.lock");
    let lock = std::fs::File::create(&lock_path).expect("create test server lock file");
    lock.lock().expect("lock test server");
    let pg = EmbeddedPg::new(dir, bins);
    pg.start().unwrap_or_else(|e| panic!("starting the test PostgreSQL: {e}"));
    lock.unlock().expect("unlock");
    pg
}

/// The name of the template database for the current migrations.
fn template_name() -> String {
    let text: String = tally_store::migrate::MIGRATIONS.iter().map(|m| m.sql).collect();
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("tally_tpl_{hash:016x}")
}

async fn connect(conninfo: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(conninfo, NoTls).await.unwrap_or_else(|e| panic!("connect {conninfo}: {e}"));
    tokio::spawn(connection);
    client
}

async fn ensure_template(server: &Server) -> String {
    let template = template_name();
    let admin = connect(&server.conninfo("postgres")).await;
    admin.execute("SELECT pg_advisory_lock(7461636)", &[]).await.expect("advisory lock");
    let exists = admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template]).await.expect("query");
    if exists.is_none() {
        // Identifiers cannot be bind parameters; this one is built from a hex hash only.
        admin.batch_execute(&format!("CREATE DATABASE {template}")).await.expect("create template");
        let mut client = connect(&server.conninfo(&template)).await;
        tally_store::migrate(&mut client).await.expect("migrate template");
        drop(client);
    }
    admin.execute("SELECT pg_advisory_unlock(7461636)", &[]).await.expect("advisory unlock");
    template
}

/// A fresh database for one test, migrated, with a small connection pool.
pub async fn fresh_database() -> TestDb {
    let server = server();
    let template = ensure_template(server).await;
    create_database(server, &template).await
}

/// A fresh database migrated through schema `version` only (`Store::migrate_through`), for
/// upgrade tests: load what an earlier release wrote into it, then run the current migrations.
pub async fn database_at(version: i32) -> TestDb {
    let db = create_database(server(), "template0").await;
    let report = db.store.migrate_through(version).await.unwrap_or_else(|e| panic!("migrate through {version}: {e}"));
    assert_eq!(report.current, version);
    db
}

async fn create_database(server: &Server, template: &str) -> TestDb {
    let name = format!("tally_test_{}", uuid::Uuid::new_v4().simple());
    let admin = connect(&server.conninfo("postgres")).await;
    // The template may still be in use for a moment by a concurrent template creator: retry.
    let mut attempts = 0;
    loop {
        match admin.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}")).await {
            Ok(()) => break,
            Err(_) if attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("create test database: {e}"),
        }
    }
    let conninfo = server.conninfo(&name);
    let store = Store::connect(&conninfo, TEST_POOL_SIZE).expect("pool");
    TestDb { store, conninfo, name }
}

impl TestDb {
    /// A plain connection to this database (for assertions in SQL).
    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(&self.conninfo).await
    }

    /// Row counts of every ledger table, to show that a rejected request wrote nothing.
    pub async fn row_counts(&self) -> Vec<(String, i64)> {
        let client = self.connect().await;
        let mut counts = Vec::new();
        for table in ["accounts", "transfers", "audit_log", "events", "currencies", "api_keys", "idempotency_keys"] {
            // Table names come from the fixed list above.
            let row = client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.expect("count");
            counts.push((table.to_owned(), row.get(0)));
        }
        counts
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Server::Embedded(pg) = server() {
            let status = pg
                .psql_command("postgres")
                .args(["-q", "-c", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)])
                .stdout(std::process::Stdio::null())
                .status();
            if !matches!(status, Ok(s) if s.success()) {
                eprintln!("warning: could not drop test database {}", self.name);
            }
        }
    }
}
