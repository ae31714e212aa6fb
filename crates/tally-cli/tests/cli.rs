//! The `tally` binary end to end, against a fresh database per test (`--database-url`).

use serde_json::Value;
use std::process::{Command, Output};

struct Cli {
    db: tally_testkit::TestDb,
}

impl Cli {
    async fn new() -> Cli {
        Cli { db: tally_testkit::fresh_database().await }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tally"))
            .arg("--database-url")
            .arg(&self.db.conninfo)
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("TALLY_NATS_URL")
            .output()
            .expect("run tally")
    }

    /// Starts `tally demo` with its output piped to the test.
    fn spawn_demo(&self) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_tally"))
            .arg("--database-url")
            .arg(&self.db.conninfo)
            .arg("demo")
            .env_remove("DATABASE_URL")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run tally demo")
    }

    /// Runs with --json and parses stdout; the command must succeed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.run(&all);
        assert!(output.status.success(), "tally {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
    }
}

#[tokio::test]
async fn accounts_transfers_balances_and_history() {
    let cli = Cli::new().await;
    cli.json(&["account", "create", "--currency", "CNY", "--code", "bank", "--unrestricted"]);
    let alice = cli.json(&["account", "create", "--currency", "CNY", "--code", "alice"]);
    assert_eq!(alice["balance"], "0.00");
    assert_eq!(alice["balance_rule"]["kind"], "no_overdraft");
    cli.json(&["account", "create", "--currency", "CNY", "--code", "bob", "--overdraft-limit", "50.00"]);

    let funded = cli.json(&["transfer", "--from", "bank", "--to", "alice", "--amount", "100.00"]);
    assert_eq!(funded["result"], "ok");
    let id = "0190a5f2-0000-7000-8000-000000000001";
    let paid = cli.json(&["transfer", "--from", "alice", "--to", "bob", "--amount", "12.34", "--id", id]);
    assert_eq!(paid["result"], "ok");
    let replay = cli.json(&["transfer", "--from", "alice", "--to", "bob", "--amount", "12.34", "--id", id]);
    assert_eq!(replay["result"], "exists");

    let balance = cli.json(&["balance", "alice"]);
    assert_eq!(balance["balance"], "87.66");
    assert_eq!(balance["version"], 3);
    let history = cli.json(&["history", "alice", "--limit", "1"]);
    assert_eq!(history["entries"][0]["type"], "debit");
    assert_eq!(history["entries"][0]["amount"], "12.34");
    let before = history["next_before"].as_i64().expect("a full page has a cursor").to_string();
    let older = cli.json(&["history", "alice", "--limit", "5", "--before", &before]);
    assert_eq!(older["entries"][0]["type"], "credit");
    assert_eq!(older["entries"].as_array().unwrap().len(), 1);

    let hold =
        cli.json(&["transfer", "--from", "bob", "--to", "alice", "--amount", "60.00", "--pending", "--timeout", "1h"]);
    assert_eq!(hold["status"], "pending");
    let hold_id = hold["id"].as_str().unwrap();
    let captured = cli.json(&["transfer", "post", hold_id, "--amount", "10.00"]);
    assert_eq!(captured["kind"], "post_pending");
    assert_eq!(cli.json(&["balance", "bob"])["balance"], "2.34");
    let reversed = cli.json(&["transfer", "reverse", id]);
    assert_eq!(reversed["from"], cli.json(&["account", "show", "bob"])["id"]);
    let shown = cli.json(&["transfer", "show", id]);
    assert_eq!(shown["amount"], "12.34");

    let report = cli.json(&["reconcile"]);
    assert_eq!(report["findings"], Value::Array(vec![]));
}

#[tokio::test]
async fn rejections_have_stable_codes_and_exit_statuses() {
    let cli = Cli::new().await;
    cli.json(&["account", "create", "--currency", "JPY", "--code", "yen-bank", "--unrestricted"]);
    cli.json(&["account", "create", "--currency", "JPY", "--code", "yen-wallet"]);
    let before = cli.db.row_counts().await;

    let refused = cli.run(&["--json", "transfer", "--from", "yen-wallet", "--to", "yen-bank", "--amount", "5"]);
    assert_eq!(refused.status.code(), Some(3));
    let body: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(body["result"], "insufficient_funds");
    assert_eq!(body["transient"], true);

    // A malformed amount is a malformed request: exit status 2, named once by its flag.
    for (amount, message) in [
        ("1.5", "--amount 1.5: has more than 0 decimal places"),
        ("-5", "--amount -5: must not carry a sign"),
        ("1e3", "--amount 1e3: must not use exponent notation"),
        ("NaN", "--amount NaN: is not a number"),
    ] {
        for args in [vec![format!("--amount={amount}")], vec!["--amount".to_owned(), amount.to_owned()]] {
            let mut all = vec!["transfer", "--from", "yen-bank", "--to", "yen-wallet"];
            all.extend(args.iter().map(String::as_str));
            let output = cli.run(&all);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
            assert_eq!(stderr.trim(), format!("error: {message}"), "{args:?}");
        }
    }
    let missing = cli.run(&["balance", "nobody"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("account nobody not found"));
    let sql = cli.run(&["account", "create", "--currency", "JPY", "--code", "x'; DROP TABLE accounts; --"]);
    assert_eq!(sql.status.code(), Some(1));

    // Only the recorded insufficient_funds decision was written (a journal row and its audit row).
    let after = cli.db.row_counts().await;
    let changed: Vec<_> =
        before.iter().zip(&after).filter(|(b, a)| b != a).map(|(b, a)| (b.0.as_str(), a.1 - b.1)).collect();
    assert_eq!(changed, [("transfers", 1), ("audit_log", 1)]);
}

#[tokio::test]
async fn demo_runs_and_reconciles() {
    let cli = Cli::new().await;
    let output = cli.run(&["demo"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("idempotent replay"), "{stdout}");
    assert!(stdout.contains("refused: insufficient_funds"), "{stdout}");
    assert!(stdout.contains("CLEAN"), "{stdout}");
    assert_eq!(cli.json(&["balance", "demo:alice"])["balance"], "850.00");
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked_and_only_shown_once() {
    let cli = Cli::new().await;
    cli.json(&["account", "create", "--currency", "USD", "--code", "alice"]);
    let created = cli.json(&["key", "create", "--name", "payments", "--role", "operator"]);
    let key = created["key"].as_str().expect("the key is printed");
    assert!(key.starts_with("tly_") && key.len() == 68, "{key}");
    assert_eq!(created["role"], "operator");
    let reader = cli.json(&["key", "create", "--name", "alice-app", "--role", "reader", "--account", "alice"]);
    assert_eq!(reader["accounts"].as_array().unwrap().len(), 1);
    let taken = cli.run(&["key", "create", "--name", "payments", "--role", "admin"]);
    assert!(!taken.status.success());
    assert!(String::from_utf8_lossy(&taken.stderr).contains("already exists"));

    let listed = cli.json(&["key", "list"]);
    let text = listed.to_string();
    assert!(!text.contains(&key[4..]), "a listing never shows the key");
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["prefix"], &key[..12]);
    let revoked = cli.json(&["key", "revoke", "payments"]);
    assert_eq!(revoked["revoked"], true);
    let listed = cli.json(&["key", "list"]);
    assert!(listed[0]["revoked_at"].is_number(), "{listed}");
    let audit: i64 = cli
        .db
        .connect()
        .await
        .query_one("SELECT count(*) FROM audit_log WHERE entity_type = 'api_key'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(audit, 3, "two creations and a revocation are audited");
}

/// One HTTP/1.1 request over a plain socket; returns the status line and the body.
fn http(addr: &str, request: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.lines().next().unwrap_or("").to_owned();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test]
async fn serve_prints_an_admin_key_once_serves_and_stops_on_sigterm() {
    use std::io::BufRead;
    let cli = Cli::new().await;
    let mut server = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["--database-url", &cli.db.conninfo, "serve", "--listen", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start tally serve");
    let mut lines = std::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let mut key = None;
    let addr = loop {
        let line = lines.next().expect("tally serve prints its address").unwrap();
        if let Some(found) = line.split_whitespace().find(|w| w.starts_with("tly_")) {
            key = Some(found.to_owned());
        }
        if let Some(rest) = line.strip_prefix("Tally serves http://") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let key = key.expect("the first start prints an admin key");
    let (status, _) = http(&addr, "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(status.contains("200"), "{status}");
    let body = r#"{"code": "bank", "currency": "USD", "unrestricted": true}"#;
    let request = format!(
        "POST /v1/accounts HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, reply) = http(&addr, &request);
    assert!(status.contains("201"), "{status} {reply}");
    let (status, _) = http(&addr, "GET /v1/accounts/bank HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(status.contains("401"), "{status}");

    let killed = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let exit = server.wait().unwrap();
    assert!(exit.success(), "a graceful stop exits 0: {exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");

    // A second start prints no key: one exists.
    let mut second = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["--database-url", &cli.db.conninfo, "serve", "--listen", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(second.stdout.take().unwrap()).lines();
    // No key is printed, but where one comes from is.
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("1 active API key(s)") && first.contains("tally key create"), "{first}");
    let next = lines.next().unwrap().unwrap();
    assert!(next.starts_with("Tally serves"), "no key printed on a second start: {next}");
    Command::new("kill").args(["-TERM", &second.id().to_string()]).status().unwrap();
    assert!(second.wait().unwrap().success());
}

#[tokio::test]
async fn reconcile_a_day_balance_as_of_days_and_statement_import() {
    let cli = Cli::new().await;
    cli.json(&["account", "create", "--currency", "EUR", "--code", "bank-eur", "--unrestricted"]);
    cli.json(&["account", "create", "--currency", "EUR", "--code", "alice"]);
    cli.json(&["transfer", "--from", "bank-eur", "--to", "alice", "--amount", "10.00"]);

    // As of long ago, and as of now.
    assert_eq!(cli.json(&["balance", "alice", "--as-of", "2000-01-01T00:00:00Z"])["balance"], "0.00");
    let now = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    let point = cli.json(&["balance", "alice", "--as-of", &now]);
    assert_eq!((point["balance"].as_str(), point["snapshot_day"].as_str()), (Some("10.00"), None));
    let refused = cli.run(&["balance", "alice", "--as-of", "yesterday"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("RFC 3339"));

    // The end of yesterday, as an HTML page; a day still running is refused.
    let dir = std::env::temp_dir().join(format!("tally-cli-report-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("report.html");
    let run = cli.run(&["reconcile", "--date", "yesterday", "--format", "html", "--output", page.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<svg") && html.contains("clean"), "{html}");
    let early = cli.run(&["reconcile", "--date", "2999-01-01"]);
    assert_eq!(early.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&early.stderr).contains("cannot be reconciled yet"));
    // Yesterday precedes this ledger's first transfer: it was checked, not closed, so the day
    // settings may still change, as README says.
    assert_eq!(cli.json(&["days", "show"])["closed_days"].as_array().unwrap().len(), 0);
    let set = cli.json(&["days", "set", "--time-zone", "Europe/Berlin", "--cutoff", "17:00"]);
    assert_eq!((set["time_zone"].as_str(), set["cutoff"].as_str()), (Some("Europe/Berlin"), Some("17:00:00")));
    cli.json(&["days", "set", "--time-zone", "UTC", "--cutoff", "24:00"]);

    // A statement of March, when this ledger had nothing: every entry is unmatched (exit 4);
    // importing it again writes nothing and shows the same report.
    let camt = format!("{}/../tally-statement/tests/fixtures/camt053_multi.xml", env!("CARGO_MANIFEST_DIR"));
    let first = cli.run(&["--json", "statement", "import", &camt, "--account", "bank-eur"]);
    assert_eq!(first.status.code(), Some(4), "{}", String::from_utf8_lossy(&first.stderr));
    let file: Value = serde_json::from_slice(&first.stdout).unwrap();
    let report = &file["statements"][0]["report"];
    assert_eq!((report["statement_entries"].as_i64(), report["unmatched_statement"].as_i64()), (Some(7), Some(7)));
    let again = cli.run(&["--json", "statement", "import", &camt, "--account", "bank-eur"]);
    assert_eq!(serde_json::from_slice::<Value>(&again.stdout).unwrap(), file);
    let shown = cli.run(&["--json", "statement", "show", report["statement"].as_str().unwrap()]);
    assert_eq!(&serde_json::from_slice::<Value>(&shown.stdout).unwrap(), report);
    let shown = cli.run(&["--json", "statement", "show", file["file"].as_str().unwrap()]);
    assert_eq!(serde_json::from_slice::<Value>(&shown.stdout).unwrap(), file);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Statements of two ledgers: listed and shown by ledger; the end of day shown for one ledger.
#[tokio::test]
async fn statements_and_end_of_day_reports_by_ledger() {
    let cli = Cli::new().await;
    assert_eq!(cli.json(&["ledger", "create", "eu", "--name", "EU books"])["ledgers"][0]["id"], 2);
    cli.json(&["account", "create", "--currency", "EUR", "--code", "bank-nl-main", "--unrestricted"]);
    let savings = ["account", "create", "--currency", "EUR", "--code", "bank-nl-savings", "--unrestricted"];
    cli.json(&[&savings[..], &["--ledger", "eu"]].concat());
    let dutch = format!("{}/../tally-statement/tests/fixtures/mt940_dutch.sta", env!("CARGO_MANIFEST_DIR"));
    let maps = ["--map", "NL91ABNA0417164300=bank-nl-main", "--map", "NL02ABNA0123456789=bank-nl-savings"];
    let imported = cli.run(&[&["--json", "statement", "import", &dutch][..], &maps[..]].concat());
    assert_eq!(imported.status.code(), Some(4), "{}", String::from_utf8_lossy(&imported.stderr));
    let file: Value = serde_json::from_slice(&imported.stdout).unwrap();
    let ledgers: Vec<Option<i64>> =
        file["statements"].as_array().unwrap().iter().map(|s| s["ledger"].as_i64()).collect();
    assert_eq!(ledgers, [Some(1), Some(1), Some(2), None]);

    let listed = |args: &[&str]| -> Vec<i64> {
        let list = cli.json(&[&["statement", "list"][..], args].concat());
        list["statements"].as_array().unwrap().iter().map(|s| s["ledger"].as_i64().unwrap()).collect()
    };
    assert_eq!(listed(&[]), [2, 1, 1]);
    assert_eq!(listed(&["--ledger", "eu"]), [2]);
    assert_eq!(listed(&["--ledger", "1"]), [1, 1]);
    assert_eq!(listed(&["--account", "bank-nl-main", "--limit", "1"]), [1]);
    let table = cli.run(&["statement", "list", "--ledger", "eu"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("ABN260303B") && text.contains("eu") && !text.contains("ABN260302A"), "{text}");

    // The file as `eu` sees it; a statement of `default` is not found in `eu`.
    let id = file["file"].as_str().unwrap();
    let shown = cli.run(&["--json", "statement", "show", id, "--ledger", "eu"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let outcomes: Vec<&str> =
        shown["statements"].as_array().unwrap().iter().map(|s| s["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["imported", "unmapped"]);
    assert_eq!(shown["filter"]["ledgers"], serde_json::json!([{"id": 2, "code": "eu"}]));
    let main = file["statements"][0]["statement"].as_str().unwrap();
    let elsewhere = cli.run(&["statement", "show", main, "--ledger", "eu"]);
    assert_eq!(elsewhere.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&elsewhere.stderr).contains("(statement_not_found)"));

    // The end of day, whole or for one ledger.
    let whole = cli.json(&["reconcile", "--date", "yesterday"]);
    assert!(whole.get("filter").is_none(), "{whole}");
    let eu = cli.json(&["reconcile", "--date", "yesterday", "--ledger", "eu"]);
    assert_eq!(eu["filter"]["ledgers"], serde_json::json!([{"id": 2, "code": "eu"}]));
    let table = cli.run(&["reconcile", "--date", "yesterday", "--ledger", "eu"]);
    assert!(table.status.success(), "{}", String::from_utf8_lossy(&table.stderr));
    assert!(String::from_utf8_lossy(&table.stdout).starts_with("FILTERED: filtered to ledger eu (2)"));
    let unknown = cli.run(&["reconcile", "--date", "yesterday", "--ledger", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("(ledger_not_found)"));
    // --ledger goes with --date: the whole-ledger check has no ledger view.
    assert_eq!(cli.run(&["reconcile", "--ledger", "eu"]).status.code(), Some(2));
}

#[tokio::test]
async fn loadcheck_runs_a_round_and_reports_its_checks_as_json() {
    let cli = Cli::new().await;
    // One server and no other writer: nothing here races, so every check must pass.
    let reports = cli.json(&[
        "loadcheck",
        "--processes",
        "1",
        "--sql-writers",
        "0",
        "--clients",
        "4",
        "--transfers",
        "200",
        "--hedge-fraction",
        "0.5",
        "--seed",
        "7",
    ]);
    let report = &reports[0];
    assert_eq!(reports.as_array().unwrap().len(), 1);
    let checks: Vec<(&str, bool)> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["passed"] == true))
        .collect();
    assert_eq!(
        checks,
        [
            ("acknowledged_in_journal", true),
            ("answers_consistent", true),
            ("ledger_consistent", true),
            ("live", true),
            ("processes_stopped", true)
        ],
        "{report:#}"
    );
    assert_eq!(report["http"]["transfers"], 200);
    assert_eq!(report["config"]["seed"], 7);
    assert!(report["http"]["hedged"].as_u64().unwrap() > 0, "{report:#}");
    assert!(!report.to_string().contains("tly_"), "the report never shows the API key");

    let refused = cli.run(&["loadcheck", "--hedge-fraction", "2"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("hedge fraction must be 0 to 1"));
}

/// `tally migrate` on a ledger that the release at commit 82419f5 wrote (schema version 7; the
/// fixture's header says how it was made) applies the newer migrations and says which. The
/// upgrade itself is checked through the store's API in crates/tally-recon/tests/migration.rs.
#[tokio::test]
async fn migrate_upgrades_a_version_7_ledger_and_says_what_it_applied() {
    let db = tally_testkit::database_at(7).await;
    let fixture = include_str!("../../tally-store/tests/fixtures/schema_v7.sql");
    db.connect().await.batch_execute(fixture).await.expect("load the version 7 fixture");
    let cli = Cli { db };
    let latest = tally_store::migrate::LATEST_VERSION;
    let newer: Vec<i32> = (8..=latest).collect();

    let migrated = cli.json(&["migrate"]);
    assert_eq!(migrated["applied"], serde_json::json!(newer));
    assert_eq!(migrated["current"], latest);
    let again = cli.run(&["migrate"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let text = String::from_utf8_lossy(&again.stdout);
    assert_eq!(text.trim(), format!("the ledger schema is up to date (version {latest})"));

    // alice-eur: 1,070.00 in, 48.85 out, a 30.00 hold still open.
    let balance = cli.json(&["balance", "alice-eur"]);
    assert_eq!((&balance["balance"], &balance["available"]), (&Value::from("1021.15"), &Value::from("991.15")));
    let report = cli.json(&["reconcile"]);
    assert_eq!(report["findings"], Value::Array(vec![]));
}

/// `tally demo | head -3`: the reader goes away after three lines, and the demo ends quietly (as
/// a Unix tool ends on a closed pipe), instead of panicking on its next line.
#[tokio::test]
async fn a_closed_pipe_ends_a_command_quietly() {
    use std::io::{BufRead, BufReader};
    let cli = Cli::new().await;
    let mut child = cli.spawn_demo();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for _ in 0..3 {
        lines.next().expect("a line").expect("readable");
    }
    drop(lines);
    let output = child.wait_with_output().expect("tally demo ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "{stderr}");
}

/// Logs go to standard error without colour codes when it is not a terminal.
#[tokio::test]
async fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let cli = Cli::new().await;
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("--database-url")
        .arg(&cli.db.conninfo)
        .args(["account", "list"])
        .env_remove("DATABASE_URL")
        .env("TALLY_LOG", "debug")
        .output()
        .expect("run tally");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.is_empty(), "TALLY_LOG=debug logs something");
    assert!(!stderr.contains('\u{1b}'), "colour codes in {stderr}");
}

/// A command that starts the embedded server stops it when it ends, after closing its own
/// connections: the server's shutdown cuts none of them, so nothing is logged about it.
#[test]
fn a_command_on_the_embedded_server_ends_without_warnings() {
    let dir = std::env::temp_dir().join(format!("tally-cli-quiet-{}", uuid::Uuid::new_v4().simple()));
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_tally"))
            .arg("--data-dir")
            .arg(&dir)
            .args(["account", "list"])
            .env_remove("DATABASE_URL")
            .output()
            .expect("run tally")
    };
    // The first run creates the server's data directory; the second finds it.
    for attempt in 0..2 {
        let output = run();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "run {attempt}: {stderr}");
        assert!(!stderr.contains("WARN") && !stderr.contains("ERROR"), "run {attempt}: {stderr}");
    }
    let status = Command::new(env!("CARGO_BIN_EXE_tally")).arg("--data-dir").arg(&dir).args(["pg", "status"]).output();
    assert!(String::from_utf8_lossy(&status.expect("pg status").stdout).contains("not running"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A flag that does not apply to a command is refused (exit status 2), never silently ignored.
#[tokio::test]
async fn flags_that_do_not_apply_are_refused() {
    let cli = Cli::new().await;
    for args in [
        vec!["reconcile", "--format", "html"],
        vec!["reconcile", "--output", "report.html"],
        vec!["--json", "serve", "--listen", "127.0.0.1:0"],
    ] {
        let output = cli.run(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--date") || stderr.contains("--json"), "{args:?}: {stderr}");
    }
    assert!(!std::path::Path::new("report.html").exists());
    // With --date they work (and without it, the whole-ledger check runs as before).
    assert!(cli.run(&["reconcile"]).status.success());
}

/// `tally demo | head`, with the reader gone just as the demo announces its hold: whenever the
/// demo ends, no hold is left open (it places and captures its hold in one submission). A hold
/// left open between the demo's accounts anyway is voided by the next run.
#[tokio::test]
async fn an_interrupted_demo_leaves_no_hold_and_the_next_run_voids_one_left_open() {
    use std::io::{BufRead, BufReader};
    let cli = Cli::new().await;
    let mut child = cli.spawn_demo();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    loop {
        let line = lines.next().expect("the demo reaches its hold").expect("readable");
        if line.starts_with("== alice places a hold") {
            break;
        }
    }
    drop(lines);
    let output = child.wait_with_output().expect("tally demo ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(matches!(output.status.code(), Some(0 | 141)), "{stderr}");
    let client = cli.db.connect().await;
    let pending = async || -> i64 {
        client.query_one("SELECT count(*) FROM transfers WHERE status = 'pending'", &[]).await.unwrap().get(0)
    };
    assert_eq!(pending().await, 0, "no hold left open");

    let left_open =
        cli.json(&["transfer", "--from", "demo:alice", "--to", "demo:shop", "--amount", "1.00", "--pending"]);
    assert_eq!(pending().await, 1);
    let again = cli.run(&["demo"]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(stdout.contains("Voiding 1 hold(s) an earlier demo left open"), "{stdout}");
    assert_eq!(pending().await, 0);
    assert_eq!(cli.json(&["transfer", "show", left_open["id"].as_str().unwrap()])["status"], "voided");
}

/// Output names accounts by code beside their ids; an unknown currency gets the API's
/// `currency_not_found` and writes nothing; a currency that is not the accounts' is refused
/// with `currency_mismatch`, saying which currency each side holds.
#[tokio::test]
async fn accounts_are_named_by_code_and_currency_errors_say_what_they_found() {
    let cli = Cli::new().await;
    let bank = cli.json(&["account", "create", "--currency", "CNY", "--code", "bank", "--unrestricted"]);
    let alice = cli.json(&["account", "create", "--currency", "CNY", "--code", "alice"]);
    let (bank_id, alice_id) = (bank["id"].as_str().unwrap(), alice["id"].as_str().unwrap());

    let human = cli.run(&["transfer", "--from", "bank", "--to", "alice", "--amount", "5.00"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains(&format!("bank ({bank_id}) -> alice ({alice_id})")), "{text}");
    let json = cli.json(&["transfer", "--from", "bank", "--to", "alice", "--amount", "1.00"]);
    assert_eq!((json["from_code"].as_str(), json["to_code"].as_str()), (Some("bank"), Some("alice")));
    let history = cli.run(&["history", "alice"]);
    let text = String::from_utf8_lossy(&history.stdout);
    assert!(text.contains(&format!("bank ({bank_id})")), "{text}");
    assert_eq!(cli.json(&["history", "alice"])["entries"][0]["other_account_code"], "bank");

    let before = cli.db.row_counts().await;
    let unknown = cli.run(&["transfer", "--from", "bank", "--to", "alice", "--amount", "1.00", "--currency", "XYZ"]);
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("currency_not_found") && stderr.contains("XYZ"), "{stderr}");
    assert_eq!(cli.db.row_counts().await, before, "nothing written");

    let other = cli.run(&["transfer", "--from", "bank", "--to", "alice", "--amount", "1.00", "--currency", "USD"]);
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert_eq!(other.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("currency_mismatch") && stderr.contains("the transfer is in USD; both accounts hold CNY"));
    let id = "0190a5f2-0000-7000-8000-0000000000cc";
    let json = cli.run(&[
        "--json",
        "transfer",
        "--from",
        "bank",
        "--to",
        "alice",
        "--amount",
        "1",
        "--currency",
        "EUR",
        "--id",
        id,
    ]);
    let body: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (body["result"].as_str(), body["message"].as_str()),
        (Some("currency_mismatch"), Some("the transfer is in EUR; both accounts hold CNY"))
    );
    let shown = cli.run(&["--json", "transfer", "show", id]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["message"], body["message"], "the recorded refusal says the same");
}

#[tokio::test]
async fn statement_files_of_several_accounts_are_mapped_and_refusals_say_why_once() {
    let cli = Cli::new().await;
    cli.json(&["account", "create", "--currency", "EUR", "--code", "bank-nl-main", "--unrestricted"]);
    cli.json(&["account", "create", "--currency", "EUR", "--code", "bank-nl-savings", "--unrestricted"]);
    let fixture = |name: &str| format!("{}/../tally-statement/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let dutch = fixture("mt940_dutch.sta");
    let stderr = |output: &Output| String::from_utf8_lossy(&output.stderr).into_owned();

    // Three bank accounts and one Tally account named: which is which cannot be told.
    let ambiguous = cli.run(&["statement", "import", &dutch, "--account", "bank-nl-main"]);
    assert_eq!(ambiguous.status.code(), Some(1));
    assert!(stderr(&ambiguous).contains("--map BANK_ACCOUNT=TALLY_ACCOUNT"), "{}", stderr(&ambiguous));

    // One mapping as a flag, one from a mapping file; the third bank account is reported.
    let dir = std::env::temp_dir().join(format!("tally-cli-map-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let map_file = dir.join("accounts.map");
    std::fs::write(&map_file, "# savings\nNL02 ABNA 0123 4567 89 = bank-nl-savings\n").unwrap();
    let args = ["--json", "statement", "import", &dutch, "--map", "NL91ABNA0417164300=bank-nl-main", "--map-file"];
    let imported = cli.run(&[&args[..], &[map_file.to_str().unwrap()]].concat());
    assert_eq!(imported.status.code(), Some(4), "findings: {}", stderr(&imported));
    let file: Value = serde_json::from_slice(&imported.stdout).unwrap();
    assert_eq!((file["imported"].as_i64(), file["unmapped"].as_i64()), (Some(3), Some(1)));
    assert_eq!(file["findings"][0]["check"], "unmapped_statement");
    let savings = &file["statements"][2]["report"];
    assert_eq!(savings["balance_difference"], "10.00");
    assert!(savings["findings"].as_array().unwrap().iter().any(|f| f["check"] == "statement_balance_difference"));
    // The table shows every statement of the file, the unmapped one too.
    let table = cli.run(&["statement", "show", file["file"].as_str().unwrap()]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("ABN260303C") && text.contains("unmapped") && text.contains("header_skipped"), "{text}");

    // A refused file says why once, with the place.
    let broken = dir.join("broken.sta");
    let original = std::fs::read_to_string(fixture("mt940_daily.sta")).unwrap();
    std::fs::write(&broken, original.replacen(":25:GB82WEST12345698765432\r\n", "", 1)).unwrap();
    let refused = cli.run(&["statement", "import", broken.to_str().unwrap(), "--account", "bank-nl-main"]);
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    let reason = "line 2: malformed statement: missing :25:: found :28C: in its place";
    assert_eq!(message.matches(reason).count(), 1, "{message}");
    assert!(message.contains(&format!("statement refused: {reason}")), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn webhooks_are_added_listed_disabled_and_deleted_and_the_secret_is_shown_once() {
    let cli = Cli::new().await;
    let added = cli.json(&[
        "webhook",
        "add",
        "https://hooks.example.com/tally",
        "--events",
        "transfer.*,account.frozen",
        "--description",
        "payments",
    ]);
    let secret = added["secret"].as_str().expect("the secret is printed").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(added["event_types"], serde_json::json!(["account.frozen", "transfer.*"]));
    assert_eq!(added["status"], "active");
    let id = added["id"].as_str().unwrap().to_owned();

    // As a table: the secret once, and a line saying it will not be shown again.
    let text = cli.run(&["webhook", "add", "http://127.0.0.1:9/hook", "--events", "*"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success(), "{}", String::from_utf8_lossy(&text.stderr));
    assert!(stdout.contains("secret: whsec_") && stdout.contains("will not be shown again"), "{stdout}");

    let listed = cli.json(&["webhook", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains("secret") && !listed.to_string().contains(&secret), "{listed}");
    let table = cli.run(&["webhook", "list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("https://hooks.example.com/tally"));
    assert_eq!(cli.json(&["webhook", "disable", &id])["status"], "disabled");
    assert_eq!(cli.json(&["webhook", "show", &id])["status"], "disabled");
    assert_eq!(cli.json(&["webhook", "enable", &id])["status"], "active");
    let log = cli.json(&["webhook", "deliveries", &id, "--status", "parked", "--limit", "5"]);
    assert_eq!(log["deliveries"], serde_json::json!([]));
    let not_parked = cli.run(&["webhook", "redeliver", &id, "1"]);
    assert_eq!(not_parked.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_parked.stderr).contains("(delivery_not_found)"), "{not_parked:?}");
    assert_eq!(cli.json(&["webhook", "delete", &id])["deleted"], true);
    let gone = cli.run(&["webhook", "show", &id]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("(webhook_not_found)"), "{gone:?}");
    let invalid = cli.run(&["webhook", "add", "ftp://example.com/x", "--events", "*"]);
    assert_eq!(invalid.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("(webhook_url_invalid)"), "{invalid:?}");
    let unknown = cli.run(&["webhook", "add", "https://example.com/", "--events", "transfers.*"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("(event_type_invalid)"), "{unknown:?}");
    assert_eq!(cli.json(&["webhook", "list"]).as_array().unwrap().len(), 1);

    // Audited with the CLI's actor: two registrations, a disable, an enable, a delete.
    let actors: Vec<String> = cli
        .db
        .connect()
        .await
        .query("SELECT actor FROM audit_log WHERE entity_type = 'webhook'", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(actors.len(), 5, "{actors:?}");
    assert!(actors.iter().all(|actor| actor.starts_with("cli:")), "{actors:?}");
}

#[tokio::test]
async fn relay_needs_something_to_relay_and_flags_that_apply() {
    let cli = Cli::new().await;
    for args in [
        vec!["relay"],
        vec!["relay", "--webhook-attempts", "3"],
        vec!["relay", "--nats-stream", "X", "--webhooks"],
        vec!["--json", "relay", "--webhooks"],
        vec!["serve", "--no-webhooks", "--webhook-timeout", "5s"],
    ] {
        let output = cli.run(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        if args == ["relay"] {
            assert!(stderr.contains("--nats-url") && stderr.contains("--webhooks"), "{stderr}");
        }
    }
    let bad = cli.run(&["relay", "--nats-url", "http://127.0.0.1:4222"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("(relay_config_invalid)"), "{bad:?}");
}

/// Two `tally relay --webhooks` on one database: one holds the lease, the other stands by; each
/// stops promptly on SIGTERM and exits 0.
#[tokio::test]
async fn relays_take_the_lease_or_stand_by_and_stop_on_sigterm() {
    use std::io::BufRead;
    let cli = Cli::new().await;
    let start = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["--database-url", &cli.db.conninfo, "relay", "--webhooks"])
            .env_remove("DATABASE_URL")
            .env_remove("TALLY_NATS_URL")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start tally relay");
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        (child, lines)
    };
    let state = |lines: &mut std::io::Lines<std::io::BufReader<std::process::ChildStdout>>| loop {
        let line = lines.next().expect("tally relay says how it stands").unwrap();
        if line.starts_with("webhooks:") {
            return line;
        }
    };
    let (mut first, mut first_lines) = start();
    // (On a slow machine it may say it stands by before it takes the free lease.)
    while !state(&mut first_lines).contains("holding the lease") {}
    let (mut second, mut second_lines) = start();
    let standing = state(&mut second_lines);
    assert!(standing.contains("standing by"), "{standing}");
    for (child, lines) in [(&mut first, first_lines), (&mut second, second_lines)] {
        let sent = std::time::Instant::now();
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
        let exit = child.wait().unwrap();
        assert!(exit.success(), "SIGTERM stops tally relay with 0: {exit:?}");
        assert!(sent.elapsed() < std::time::Duration::from_secs(10), "stopped in {:?}", sent.elapsed());
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        assert!(
            rest.iter().any(|l| l.starts_with("stopping")) && rest.last().is_some_and(|l| l == "stopped"),
            "{rest:?}"
        );
    }
}

#[tokio::test]
async fn ledgers_are_made_and_listed_and_hold_their_own_accounts() {
    let cli = Cli::new().await;
    let made = cli.json(&["ledger", "create", "cards", "--name", "Card programme"]);
    assert_eq!(made["ledgers"][0]["id"], 2);
    assert_eq!(made["ledgers"][0]["code"], "cards");
    // Again with the same fields: nothing changes; with others: refused.
    assert_eq!(cli.json(&["ledger", "create", "cards", "--name", "Card programme"]), made);
    let other = cli.run(&["ledger", "create", "cards", "--name", "Other"]);
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("ledger_exists_with_different_fields"), "{other:?}");
    let listed = cli.json(&["ledger", "list"]);
    let codes: Vec<&str> = listed["ledgers"].as_array().unwrap().iter().map(|l| l["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["default", "cards"]);

    cli.json(&["account", "create", "--currency", "USD", "--code", "bank", "--unrestricted"]);
    let card_bank =
        cli.json(&["account", "create", "--ledger", "cards", "--currency", "USD", "--code", "bank", "--unrestricted"]);
    assert_eq!(card_bank["ledger"], 2);
    let alice = cli.json(&["account", "create", "--ledger", "2", "--currency", "USD", "--code", "alice"]);
    let in_cards = cli.json(&["account", "list", "--ledger", "cards"]);
    assert_eq!(in_cards["accounts"].as_array().unwrap().len(), 2);
    // `bank` is a code of two ledgers: named alone it is ambiguous, by id it is not.
    let ambiguous = cli.run(&["balance", "bank"]);
    assert!(String::from_utf8_lossy(&ambiguous.stderr).contains("account_code_ambiguous"), "{ambiguous:?}");
    let card_bank_id = card_bank["id"].as_str().unwrap();
    let alice_id = alice["id"].as_str().unwrap();
    let paid = cli.json(&["transfer", "--from", card_bank_id, "--to", alice_id, "--amount", "5.00"]);
    assert_eq!((paid["result"].as_str(), paid["ledger"].as_i64()), (Some("ok"), Some(2)), "{paid}");
    let default_bank = cli.json(&["account", "list", "--ledger", "default"])["accounts"][0]["id"].clone();
    let across = cli.run(&[
        "--json",
        "transfer",
        "--from",
        default_bank.as_str().unwrap(),
        "--to",
        alice_id,
        "--amount",
        "1.00",
    ]);
    assert!(!across.status.success());
    assert!(String::from_utf8_lossy(&across.stdout).contains("ledger_mismatch"), "{across:?}");
    let key = cli.json(&["key", "create", "--name", "cards-ops", "--role", "operator", "--ledger", "cards"]);
    assert_eq!(key["ledgers"], serde_json::json!([2]));
    assert_eq!(cli.json(&["reconcile"])["findings"], Value::Array(vec![]));
}
