//! `tally load` (hidden): endless load for the crash harness. Every request is written to the
//! intent log before it is submitted, and every answer to the ack log after it arrives, one
//! line each with a single write, so that a `kill -9` at any instant leaves logs that tell
//! exactly which transfers were acknowledged and which were only attempted.

use crate::args::LoadArgs;
use crate::connect::Database;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tally_core::{AccountId, TransferId, TransferRequest};
use tally_engine::Submission;
use uuid::Uuid;

/// The actor the load's transfers are recorded under.
pub const LOAD_ACTOR: &str = "load";

pub async fn run(db: &Database, args: &LoadArgs) -> Result<()> {
    let accounts: Vec<AccountId> = db.store.restricted_account_ids().await?;
    anyhow::ensure!(accounts.len() >= 2, "tally load needs at least two restricted accounts");
    let open = |path| OpenOptions::new().create(true).append(true).open(path);
    let intents = Arc::new(Mutex::new(open(&args.intent_log).context("intent log")?));
    let acks = Arc::new(Mutex::new(open(&args.ack_log).context("ack log")?));
    let accounts = Arc::new(accounts);
    let mut clients = tokio::task::JoinSet::new();
    for index in 0..args.clients {
        let (engine, accounts, intents, acks) = (db.engine.clone(), accounts.clone(), intents.clone(), acks.clone());
        let mut rng = fastrand::Rng::with_seed(args.seed.wrapping_add(index as u64));
        let batch_size = args.batch_size;
        clients.spawn(async move {
            loop {
                let requests: Vec<TransferRequest> = (0..batch_size)
                    .map(|_| {
                        let debit = accounts[rng.usize(..accounts.len())];
                        let mut credit = accounts[rng.usize(..accounts.len())];
                        while credit == debit {
                            credit = accounts[rng.usize(..accounts.len())];
                        }
                        TransferRequest::posted(TransferId(Uuid::now_v7()), debit, credit, rng.i128(1..=1_000))
                    })
                    .collect();
                let lines: String =
                    requests.iter().map(|r| serde_json::to_string(r).expect("requests serialize") + "\n").collect();
                write_line(&intents, &lines);
                let submissions =
                    requests.into_iter().map(|request| Submission { request, actor: LOAD_ACTOR.into() }).collect();
                match engine.submit(submissions).await {
                    Ok(outcomes) => {
                        let lines: String = outcomes
                            .iter()
                            .zip(lines.lines())
                            .map(|(o, intent)| {
                                let id = serde_json::from_str::<TransferRequest>(intent).expect("own line").id;
                                format!("{id} {}\n", o.result.code())
                            })
                            .collect();
                        write_line(&acks, &lines);
                    }
                    Err(error) => {
                        eprintln!("load: submission failed, left unacknowledged: {error}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    while clients.join_next().await.is_some() {}
    Ok(())
}

/// One write call per line group: what reaches the kernel survives a kill of this process.
fn write_line(file: &Mutex<File>, lines: &str) {
    let mut file = file.lock().expect("log lock poisoned");
    file.write_all(lines.as_bytes()).expect("log write");
}
