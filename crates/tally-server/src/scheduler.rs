//! The scheduled end of day inside `tally serve`: once a day has ended (plus the configured
//! delay), reconcile it, as `tally reconcile --date` would, with `scheduler` as the actor.
//!
//! Several Tally processes may run it: a day has at most one run at a time (the database's
//! unique index on running runs), and a day that has a finished run is not run again. A failed
//! run is retried after `RETRY_AFTER`.

use std::time::Duration;
use tally_store::Store;
use tokio::sync::watch;

/// How often the scheduler looks for a day to reconcile.
pub const SCHEDULER_TICK: Duration = Duration::from_secs(30);
/// How long after a failed run the scheduler tries the day again.
pub const RETRY_AFTER: Duration = Duration::from_secs(600);
/// The actor of scheduled runs in the audit log and the reports.
pub const SCHEDULER_ACTOR: &str = "scheduler";

/// Runs until `shutdown` turns true.
pub async fn run(store: Store, after: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(SCHEDULER_TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        match run_due(&store, after).await {
            Ok(None) => {}
            Ok(Some(report)) => {
                let findings: i64 = report.checks.iter().map(|c| c.findings).sum();
                if findings == 0 {
                    tracing::info!(day = %report.day, run = %report.run_id, "scheduled reconciliation: clean");
                } else {
                    tracing::warn!(day = %report.day, run = %report.run_id, findings, "scheduled reconciliation: FINDINGS");
                }
            }
            Err(error) => tracing::warn!(code = error.code(), %error, "scheduled reconciliation failed"),
        }
    }
}

/// One look: reconciles the newest day that ended `after` (plus a minute) ago, unless the ledger
/// is empty or the day already has a run. Returns the report of the run it made.
pub async fn run_due(
    store: &Store,
    after: Duration,
) -> Result<Option<tally_recon::report::DayReport>, tally_recon::ReconError> {
    let day = tally_recon::days::last_ended(store, tally_recon::days::CLOSE_DELAY + after).await?;
    let client = store.client().await?;
    let any_transfer: bool = client.query_one("SELECT EXISTS (SELECT 1 FROM transfers)", &[]).await?.get(0);
    let retry_before = tally_store::convert::to_system_time(store.now()) - RETRY_AFTER;
    let done: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM reconciliation_runs WHERE kind = 'end_of_day' AND day = $1::text::date
                            AND (status <> 'failed' OR started_at > $2))",
            &[&tally_recon::days::format_day(day), &retry_before],
        )
        .await?
        .get(0);
    drop(client);
    if !any_transfer || done {
        return Ok(None);
    }
    Ok(Some(tally_recon::eod::run_end_of_day(store, day, SCHEDULER_ACTOR, &tally_recon::Quiet).await?))
}
