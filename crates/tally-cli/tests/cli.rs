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
            .output()
            .expect("run tally")
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

    for (amount, message) in
        [("1.5", "more than 0 decimal places"), ("-5", "sign"), ("1e3", "exponent"), ("NaN", "not a number")]
    {
        let flag = format!("--amount={amount}");
        let output = cli.run(&["transfer", "--from", "yen-bank", "--to", "yen-wallet", &flag]);
        assert_eq!(output.status.code(), Some(1), "{amount}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(message),
            "{amount}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
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
