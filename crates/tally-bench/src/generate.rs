//! The end-of-day benchmark's ledger, written the way Tally writes every ledger: accounts through
//! `Store::create_accounts` (each with its audit row and event), transfers through the posting
//! engine, which decides them in the core and writes each batch through the store's one write
//! path (`BatchConn::write_and_commit`: journal rows with the statement-level account check,
//! the batch's audit row, version-checked account totals, events, in one SQL transaction), with
//! every trigger and constraint of the schema on. Nothing is written behind the engine's back, so the ledger
//! reconciles exactly as a production one would.
//!
//! Each day's transfers are spread evenly over the day, in batches of 8,000 (one engine
//! submission each: one journal batch, one batch audit row), between uniformly random distinct
//! accounts, for 1 to 100,000 minor units. The engine stamps a batch with its store's clock when
//! it decides it, so the generator writes through a store of its own whose clock it sets to
//! each batch's place in its day (as the reconciliation tests do); every transfer's time is
//! checked against its day when the engine answers.

use crate::{BENCH_ACTOR, BenchError};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;
use tally_core::{AccountId, BalanceRule, TransferId, TransferRequest, TransferResult};
use tally_engine::{Engine, EngineConfig, EngineError, Outcome, Submission};
use tally_recon::days::DayBounds;
use tally_store::Store;
use tally_store::convert::from_system_time;
use time::Date;
use tokio::task::JoinSet;
use uuid::Uuid;

/// Transfers per generated batch: one engine submission, written as one batch.
pub const BATCH_ROWS: usize = 8_000;
/// Batches handed to the engine at once: enough to keep its committers busy while the next
/// batch is built.
const BATCHES_IN_FLIGHT: usize = 4;
/// The last batch of a day is placed this long before the day ends: the engine stamps a batch
/// when it decides it, a moment after the generator set the clock.
const DAY_END_MARGIN: Duration = Duration::from_secs(600);
/// Transfers move 1 to this many minor units.
const AMOUNT_MAX: i128 = 100_000;
/// Connections of the generator's own store: the engine's batches in flight, and one more.
const WRITER_POOL_SIZE: usize = 8;
/// The generated ledger is the same on every run (but for ids and times).
const SEED: u64 = 0x7461_6c6c_7965_6f64;

/// Generates the ledger in the empty database behind `store` (`conninfo`): `accounts`
/// unrestricted USD accounts, then `sizes[i]` transfers on day `first + i`, then a
/// `VACUUM (ANALYZE)` of the large tables.
pub async fn ledger(
    store: &Store,
    conninfo: &str,
    accounts: i64,
    first: Date,
    sizes: &[i64],
) -> Result<(), BenchError> {
    let total: i64 = sizes.iter().sum();
    let bar = ProgressBar::new(u64::try_from(total + accounts).expect("positive")).with_style(
        ProgressStyle::with_template("{msg:>28} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message("opening accounts");
    let count = usize::try_from(accounts).expect("positive");
    let ids = crate::open_accounts(store, count, BalanceRule::Unrestricted, &bar).await?;
    // A store of its own, whose clock moves through the days; `store` keeps the real time.
    let writer = Store::connect(conninfo, WRITER_POOL_SIZE)?;
    // A batch holds one submission: a generated batch is written as one batch.
    let config = EngineConfig { batch_size_max: BATCH_ROWS, expiry_sweep_interval: None, ..EngineConfig::default() };
    let engine = Engine::start(writer.clone(), config);
    let mut rng = fastrand::Rng::with_seed(SEED);
    let recon = tally_recon::Recon::new(store, tally_recon::POOL_SIZE_MIN);
    let written = async {
        for (offset, size) in sizes.iter().enumerate() {
            let day = first + time::Duration::days(i64::try_from(offset).expect("few days"));
            let bounds = tally_recon::days::bounds(&recon, day).await?;
            bar.set_message(format!("journal of {}", tally_recon::days::format_day(day)));
            let size = usize::try_from(*size).expect("sizes are validated");
            write_day(&engine, &writer, &ids, bounds, size, &mut rng, &bar).await?;
        }
        Ok::<(), BenchError>(())
    }
    .await;
    engine.shutdown().await;
    written?;
    bar.set_message("vacuum analyze");
    store.vacuum_analyze().await?;
    bar.finish_and_clear();
    Ok(())
}

/// Submits one day's transfers, `BATCH_ROWS` per batch, each batch at its place in the day.
async fn write_day(
    engine: &Engine,
    writer: &Store,
    accounts: &[AccountId],
    bounds: DayBounds,
    size: usize,
    rng: &mut fastrand::Rng,
    bar: &ProgressBar,
) -> Result<(), BenchError> {
    let batches = size.div_ceil(BATCH_ROWS);
    let length = bounds.ends_at.duration_since(bounds.starts_at).expect("days end after they start");
    let spread = length.saturating_sub(DAY_END_MARGIN);
    let mut in_flight: JoinSet<Result<Vec<Outcome>, EngineError>> = JoinSet::new();
    for index in 0..batches {
        let count = BATCH_ROWS.min(size - index * BATCH_ROWS);
        let submissions = batch(accounts, count, rng);
        if in_flight.len() == BATCHES_IN_FLIGHT {
            settle(in_flight.join_next().await.expect("a batch in flight"), &bounds, bar)?;
        }
        let at = bounds.starts_at + spread.mul_f64(index as f64 / batches as f64);
        writer.set_clock(from_system_time(at));
        let engine = engine.clone();
        in_flight.spawn(async move { engine.submit(submissions).await });
    }
    while let Some(joined) = in_flight.join_next().await {
        settle(joined, &bounds, bar)?;
    }
    Ok(())
}

/// `count` posted transfers between uniformly random distinct accounts.
fn batch(accounts: &[AccountId], count: usize, rng: &mut fastrand::Rng) -> Vec<Submission> {
    let n = accounts.len();
    (0..count)
        .map(|_| {
            let debit = rng.usize(..n);
            let credit = (debit + 1 + rng.usize(..n - 1)) % n;
            let request = TransferRequest::posted(
                TransferId(Uuid::now_v7()),
                accounts[debit],
                accounts[credit],
                rng.i128(1..=AMOUNT_MAX),
            );
            Submission { request, actor: BENCH_ACTOR.into() }
        })
        .collect()
}

/// Checks what the engine answered for one batch: every transfer applied, at a time inside its
/// day.
fn settle(
    joined: Result<Result<Vec<Outcome>, EngineError>, tokio::task::JoinError>,
    bounds: &DayBounds,
    bar: &ProgressBar,
) -> Result<(), BenchError> {
    let outcomes = joined.map_err(|error| BenchError::Generation(format!("a batch's task failed: {error}")))??;
    let (starts, ends) = (from_system_time(bounds.starts_at), from_system_time(bounds.ends_at));
    for outcome in &outcomes {
        if outcome.result != TransferResult::Ok {
            return Err(BenchError::Generation(format!("a generated transfer was refused: {}", outcome.result.code())));
        }
        let transfer = outcome.transfer.as_ref().expect("an applied transfer comes with its journal row");
        if !(starts..ends).contains(&transfer.created_at) {
            return Err(BenchError::Generation(format!(
                "transfer {} was stamped at {} µs after the epoch, outside its day {} ([{}, {}))",
                transfer.id.0,
                transfer.created_at.0,
                tally_recon::days::format_day(bounds.day),
                starts.0,
                ends.0
            )));
        }
    }
    bar.inc(outcomes.len() as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_moves_money_between_distinct_accounts() {
        let accounts: Vec<AccountId> = (1..=3).map(|i| AccountId(Uuid::from_u128(i))).collect();
        let mut rng = fastrand::Rng::with_seed(SEED);
        let submissions = batch(&accounts, 5_000, &mut rng);
        assert_eq!(submissions.len(), 5_000);
        let mut debits = [0; 3];
        for submission in &submissions {
            let request = &submission.request;
            let (debit, credit) = (request.debit_account_id.unwrap(), request.credit_account_id.unwrap());
            assert_ne!(debit, credit);
            assert!((1..=AMOUNT_MAX).contains(&request.amount.unwrap()));
            debits[accounts.iter().position(|a| *a == debit).unwrap()] += 1;
        }
        // Uniform: each of three accounts pays in about a third of the transfers.
        assert!(debits.iter().all(|d| (1_400..1_950).contains(d)), "{debits:?}");
    }
}
