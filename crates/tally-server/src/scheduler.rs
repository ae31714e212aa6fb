//! The scheduled end of day inside `tally serve`: once a day has ended (plus the configured
//! delay), reconcile it, as `tally reconcile --date` would, with `scheduler` as the actor.
//!
//! Several Tally processes may run it: a day has at most one run at a time (the database's
//! unique index on running runs), and a day that has a finished run is not run again. A failed
//! run is retried after `RETRY_AFTER`.

use std::time::Duration;
use tally_recon::Recon;
use tokio::sync::watch;

/// How often the scheduler looks for a day to reconcile.
pub const SCHEDULER_TICK: Duration = Duration::from_secs(30);
/// How long after a failed run the scheduler tries the day again.
pub const RETRY_AFTER: Duration = Duration::from_secs(600);
/// The actor of scheduled runs in the audit log and the reports.
pub const SCHEDULER_ACTOR: &str = "scheduler";

/// Runs until `shutdown` turns true.
pub async fn run(recon: Recon, after: Duration, mut shutdown: watch::Receiver<bool>) {
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
        match run_due(&recon, after).await {
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

/// One look: reconciles the newest day that ended `after` (plus a minute) ago, unless the day
/// already has a run or precedes the ledger's first transfer (such a day is never closed, and
/// the day settings stay open until a day with transfers closes). Returns the report of the run
/// it made.
pub async fn run_due(
    recon: &Recon,
    after: Duration,
) -> Result<Option<tally_recon::report::DayReport>, tally_recon::ReconError> {
    let day = tally_recon::days::last_ended(recon, tally_recon::days::CLOSE_DELAY + after).await?;
    let retry_before = tally_store::convert::to_system_time(recon.store().now()) - RETRY_AFTER;
    if tally_recon::eod::has_current_run(recon, day, retry_before).await?
        || tally_recon::days::precedes_ledger(recon, day).await?
    {
        return Ok(None);
    }
    Ok(Some(tally_recon::eod::run_end_of_day(recon, day, SCHEDULER_ACTOR, &tally_recon::Quiet).await?))
}
