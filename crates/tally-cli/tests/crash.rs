//! Crash safety. A `tally load` process runs transfers against a PostgreSQL 18 of this test's
//! own; the harness `kill -9`s it, and separately stops PostgreSQL with `pg_ctl stop -m
//! immediate`, several times each, under load. After every crash it retries every transfer that
//! was attempted but not acknowledged, with the same id and fields, and checks:
//! - every acknowledged transfer is in the journal exactly once, with the acknowledged result;
//! - every attempted transfer is decided exactly once after the retries;
//! - money is conserved and no balance rule is broken (`tally_recon::check_ledger`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tally_core::{BalanceRule, TransferId, TransferRequest, TransferResult};
use tally_engine::{Engine, Submission};
use tally_pg::EmbeddedPg;
use tally_recon::Recon;
use tally_store::queries::JOURNAL_ROWS_IDS_MAX;
use tally_store::{JournalRow, NewAccount, Store};
use uuid::Uuid;

/// Crashes of each kind per run.
const KILLS_PER_KIND: usize = 5;
const ACCOUNTS: usize = 200;

struct Harness {
    dir: PathBuf,
    pg: EmbeddedPg,
    conninfo: String,
    store: Store,
    recon: Recon,
    engine: Engine,
}

impl Harness {
    async fn new() -> Harness {
        let dir = std::env::temp_dir().join(format!("tally-crash-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let pg = EmbeddedPg::new(dir.join("pg"), tally_pg::find_binaries().expect("PostgreSQL binaries"));
        pg.start().expect("start PostgreSQL");
        let status = pg.psql_command("postgres").args(["-q", "-c", "CREATE DATABASE crash"]).status().unwrap();
        assert!(status.success());
        let conninfo = pg.connection_string("crash");
        let store = Store::connect(&conninfo, 8).unwrap();
        store.migrate().await.unwrap();
        let engine = Engine::new(store.clone());
        let recon = Recon::new(&store, tally_recon::POOL_SIZE_MIN);
        let harness = Harness { dir, pg, conninfo, store, recon, engine };
        harness.open_accounts().await;
        harness
    }

    async fn open_accounts(&self) {
        let bank = NewAccount {
            ledger: tally_core::LedgerId::DEFAULT,
            id: None,
            code: Some("bank".into()),
            currency: "EUR".into(),
            rule: BalanceRule::Unrestricted,
            metadata: None,
        };
        let bank = self.store.create_account(&bank, "harness").await.unwrap().0.account.id;
        let mut funding = Vec::new();
        for index in 0..ACCOUNTS {
            // A mix of rules, and balances small enough that some transfers are refused.
            let rule = if index % 2 == 0 { BalanceRule::NoOverdraft } else { BalanceRule::OverdraftLimit(5_000) };
            let new = NewAccount {
                ledger: tally_core::LedgerId::DEFAULT,
                id: None,
                code: Some(format!("w{index}")),
                currency: "EUR".into(),
                rule,
                metadata: None,
            };
            let id = self.store.create_account(&new, "harness").await.unwrap().0.account.id;
            let request = TransferRequest::posted(TransferId(Uuid::now_v7()), bank, id, 20_000);
            funding.push(Submission { request, actor: "harness".into() });
        }
        let outcomes = self.engine.submit(funding).await.unwrap();
        assert!(outcomes.iter().all(|o| o.result == TransferResult::Ok));
    }

    fn spawn_load(&self, round: &str) -> Child {
        Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["--database-url", &self.conninfo, "load", "--clients", "8", "--batch-size", "4", "--seed"])
            .arg(fastrand::u64(..).to_string())
            .arg("--intent-log")
            .arg(self.log(round, "intents"))
            .arg("--ack-log")
            .arg(self.log(round, "acks"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tally load")
    }

    fn log(&self, round: &str, kind: &str) -> PathBuf {
        self.dir.join(format!("{round}.{kind}"))
    }

    /// Reads a round's logs, retries what was not acknowledged, and checks the books.
    async fn recover_and_check(&self, round: &str) -> (usize, usize) {
        let intents = read_intents(&self.log(round, "intents"));
        let acks = read_acks(&self.log(round, "acks"));
        assert!(!acks.is_empty(), "{round}: the load acknowledged nothing; the crash proves nothing");
        let acked_ids: Vec<Uuid> = acks.keys().map(|id| id.0).collect();
        let mut found = 0;
        for chunk in acked_ids.chunks(JOURNAL_ROWS_IDS_MAX) {
            for row in self.store.journal_rows(chunk).await.unwrap() {
                match row {
                    JournalRow::Applied { transfer, .. } => {
                        let (id, status) = (transfer.id, transfer.status.as_str());
                        let acked = TransferResult::from_code(&acks[&id]).expect("known code");
                        assert!(acked.is_success(), "{round}: {id} acked {} but applied ({status})", acked.code());
                    }
                    JournalRow::Rejected { rejection, .. } => {
                        let (id, stored) = (rejection.request.id, rejection.result);
                        let acked = TransferResult::from_code(&acks[&id]).expect("known code");
                        assert_eq!(stored, acked, "{round}: {id} recorded {} but acked", stored.code());
                    }
                }
                found += 1;
            }
        }
        assert_eq!(found, acks.len(), "{round}: acknowledged transfers are missing after the crash");
        let unacked: Vec<Submission> = intents
            .iter()
            .filter(|r| !acks.contains_key(&r.id))
            .map(|request| Submission { request: request.clone(), actor: "load".into() })
            .collect();
        for chunk in unacked.chunks(1_000) {
            let outcomes = self.engine.submit(chunk.to_vec()).await.expect("retry unacknowledged");
            for (submission, outcome) in chunk.iter().zip(outcomes) {
                assert!(
                    outcome.result != TransferResult::ExistsWithDifferentFields,
                    "{round}: retry of {} collided",
                    submission.request.id
                );
            }
        }
        // Every attempted id is now decided exactly once (the primary key forbids twice).
        let ids: Vec<Uuid> = intents.iter().map(|r| r.id.0).collect::<HashSet<_>>().into_iter().collect();
        let mut decided = 0;
        for chunk in ids.chunks(JOURNAL_ROWS_IDS_MAX) {
            decided += self.store.journal_rows(chunk).await.unwrap().len();
        }
        assert_eq!(decided, ids.len(), "{round}: some attempted transfer is not decided");
        let started = std::time::Instant::now();
        let report = tally_recon::check_ledger(&self.recon).await.unwrap();
        eprintln!("{round}: reconciliation took {:?}", started.elapsed());
        assert!(report.is_clean(), "{round}: ledger inconsistent after the crash: {:#?}", report.findings);
        (acks.len(), unacked.len())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.pg.stop_immediate();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_intents(path: &Path) -> Vec<TransferRequest> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A kill may cut the last line short; a cut line was never submitted.
    text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

fn read_acks(path: &Path) -> HashMap<TransferId, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (id, code) = line.split_once(' ')?;
            Some((TransferId(Uuid::parse_str(id).ok()?), code.to_owned()))
        })
        .collect()
}

fn kill_hard(mut child: Child) {
    child.kill().expect("SIGKILL the load"); // Child::kill sends SIGKILL on Unix.
    child.wait().expect("reap the load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_transfers_survive_kill_9_of_tally_and_immediate_stop_of_postgres() {
    let harness = Harness::new().await;
    let mut totals = (0, 0);
    for kill in 0..KILLS_PER_KIND {
        let round = format!("tally-kill-{kill}");
        let load = harness.spawn_load(&round);
        tokio::time::sleep(Duration::from_millis(fastrand::u64(800..2_000))).await;
        kill_hard(load);
        let (acked, retried) = harness.recover_and_check(&round).await;
        totals = (totals.0 + acked, totals.1 + retried);
    }
    for kill in 0..KILLS_PER_KIND {
        let round = format!("postgres-kill-{kill}");
        let load = harness.spawn_load(&round);
        tokio::time::sleep(Duration::from_millis(fastrand::u64(800..2_000))).await;
        assert!(harness.pg.stop_immediate().expect("pg_ctl stop -m immediate"), "PostgreSQL was running");
        tokio::time::sleep(Duration::from_millis(300)).await;
        harness.pg.start().expect("restart PostgreSQL after the crash");
        // Let the load ride through the restart (the engine retries broken connections), then stop it.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        kill_hard(load);
        let (acked, retried) = harness.recover_and_check(&round).await;
        totals = (totals.0 + acked, totals.1 + retried);
    }
    eprintln!("crash harness: {} acknowledged transfers checked, {} unacknowledged retried", totals.0, totals.1);
    assert!(totals.1 > 0, "no crash ever caught a transfer in flight; the harness is not testing anything");
}
