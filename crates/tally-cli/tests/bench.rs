//! `tally bench` and `tally bench-eod` end to end: the binary's flags reach the `tally-bench`
//! crate and its reports come back, on a fresh database per test (`--database-url`).

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn tally(db: &tally_testkit::TestDb, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("--database-url")
        .arg(&db.conninfo)
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run tally")
}

fn json(output: &Output) -> Value {
    assert!(output.status.success(), "tally failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tally-cli-{name}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[tokio::test]
async fn bench_reports_cpu_per_transfer_in_its_json() {
    let db = tally_testkit::fresh_database().await;
    let dir = scratch("bench");
    let (json_out, svg_out) = (dir.join("b.json"), dir.join("b.svg"));
    let output = tally(
        &db,
        &[
            "--json",
            "bench",
            "--accounts",
            "100",
            "--duration",
            "2s",
            "--concurrency",
            "4",
            "--batch-size",
            "10",
            "--json-out",
            json_out.to_str().unwrap(),
            "--svg-out",
            svg_out.to_str().unwrap(),
        ],
    );
    let report = json(&output);
    assert_eq!(report["conservation_ok"], true, "{report:#}");
    assert_eq!(report["concurrency"], 4);
    assert_eq!(report["batch_size"], 10);
    let committed = report["committed"].as_f64().expect("committed");
    assert!(committed > 0.0);
    // serde_json reads floats to within a unit in the last place.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs();
    let tally_cpu = report["cpu_seconds_tally"].as_f64().unwrap();
    let tally_per_transfer = report["tally_cpu_us_per_transfer"].as_f64().expect("a number");
    assert!(close(tally_per_transfer, tally_cpu * 1e6 / committed), "{report:#}");
    let postgres_cpu = report["cpu_seconds_postgres"].as_f64().expect("the test server is on this machine");
    let postgres_per_transfer = report["postgres_cpu_us_per_transfer"].as_f64().expect("a number");
    assert!(postgres_per_transfer > 0.0 && close(postgres_per_transfer, postgres_cpu * 1e6 / committed), "{report:#}");
    let written: Value = serde_json::from_slice(&std::fs::read(&json_out).expect("--json-out")).unwrap();
    assert_eq!(written, report);
    assert!(std::fs::read_to_string(&svg_out).expect("--svg-out").starts_with("<svg"));

    let refused = tally(&db, &["bench", "--batch-size", "0"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--batch-size must be 1 to 8190"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn bench_eod_generates_a_ledger_that_reconciles_clean() {
    let db = tally_testkit::fresh_database().await;
    let dir = scratch("bench-eod");
    let json_out = dir.join("eod.json");
    let output = tally(
        &db,
        &[
            "--json",
            "bench-eod",
            "--accounts",
            "50",
            "--day-sizes",
            "3_000,10",
            "--json-out",
            json_out.to_str().unwrap(),
        ],
    );
    let report = json(&output);
    assert_eq!(report["accounts"], 50);
    let days = report["days"].as_array().expect("days");
    assert_eq!(days.iter().map(|d| d["transfers"].as_i64().unwrap()).collect::<Vec<_>>(), [3_000, 10]);
    assert!(days.iter().all(|d| d["status"] == "clean" && d["findings"] == 0), "{report:#}");
    // The whole ledger, as `tally reconcile` sees it.
    let reconciled = json(&tally(&db, &["--json", "reconcile"]));
    assert_eq!(reconciled["findings"], Value::Array(vec![]), "{reconciled:#}");

    let refused = tally(&db, &["bench-eod", "--day-sizes", "1,x"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--day-sizes: comma-separated numbers"));
    std::fs::remove_dir_all(&dir).unwrap();
}
