//! Point-in-time balances: an account's totals as of an instant, from the nearest closed day's
//! snapshot plus the journal since.
//!
//! "As of T" counts every journal row stamped at or before `T`. The base is the newest closed day
//! that ended at or before `T`; the account's latest snapshot row (in its ledger) up to that day holds its
//! balances then. The rest is the account's rows stamped after the day ended, found through
//! its history indexes between two journal sequence numbers stored with the closed days, and
//! the holds resolved in that window. So a lookup reads at most the account's rows of the day
//! that contains `T` (and of the base day), whatever the history's length. Before the first
//! closed day there is no snapshot and the whole of the account's history is read.

use crate::Recon;
use crate::ReconError;
use std::time::SystemTime;
use tally_core::{MinorUnits, Timestamp};
use tally_store::convert::{from_numeric, to_system_time};
use uuid::Uuid;

/// An account's totals as of an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointInTime {
    pub account_id: Uuid,
    pub currency: String,
    pub scale: u8,
    pub as_of: Timestamp,
    pub debits_posted: MinorUnits,
    pub credits_posted: MinorUnits,
    pub debits_pending: MinorUnits,
    pub credits_pending: MinorUnits,
    /// The closed day whose snapshot was the base, if any.
    pub snapshot_day: Option<String>,
}

impl PointInTime {
    /// Credits minus debits, posted only.
    pub fn balance(&self) -> MinorUnits {
        self.credits_posted - self.debits_posted
    }

    /// The balance less outgoing holds.
    pub fn available(&self) -> MinorUnits {
        self.balance() - self.debits_pending
    }
}

/// The account's totals as of `as_of`, which must not be in the future (a future answer could
/// still change).
pub async fn balance_as_of(recon: &Recon, account_id: Uuid, as_of: Timestamp) -> Result<PointInTime, ReconError> {
    if as_of > recon.store().now() {
        return Err(ReconError::AsOfInFuture);
    }
    let at: SystemTime = to_system_time(as_of);
    let mut client = recon.client().await?;
    let db_tx = crate::read_snapshot(&mut client).await?;
    let account = db_tx
        .query_opt(
            "SELECT a.currency, c.scale, a.ledger_id FROM accounts a JOIN currencies c ON c.code = a.currency WHERE a.id = $1",
            &[&account_id],
        )
        .await?
        .ok_or_else(|| ReconError::AccountNotFound(account_id.to_string()))?;
    let (currency, scale, ledger): (String, i16, i32) = (account.get(0), account.get(1), account.get(2));
    // The base day, and the journal window after it: [seq_low, seq_high] bounds the sequence
    // numbers of the rows stamped in (ends_at, as_of].
    let base = db_tx
        .query_opt(
            "SELECT b.day::text, b.ends_at, b.seq_low, n.seq_high FROM ledger_days b
             LEFT JOIN ledger_days n ON n.day = b.day + 1
             WHERE b.ends_at <= $1 ORDER BY b.day DESC LIMIT 1",
            &[&at],
        )
        .await?;
    let (snapshot_day, since, seq_low, seq_high): (Option<String>, Option<SystemTime>, i64, Option<i64>) = match &base {
        Some(row) => (Some(row.get(0)), Some(row.get(1)), row.get(2), row.get(3)),
        None => (None, None, 1, None),
    };
    let row = db_tx
        .query_one(
            "WITH snapshot AS (
                 SELECT closing_debits_posted AS dp, closing_credits_posted AS cp,
                        closing_debits_pending AS dh, closing_credits_pending AS ch
                 FROM balance_snapshots WHERE account_id = $1 AND ledger_id = $7 AND day <= $2::text::date
                 ORDER BY day DESC LIMIT 1
             ), rows AS (
                 SELECT * FROM transfers WHERE debit_account_id = $1 AND seq >= $4 AND seq <= coalesce($5, 9223372036854775807)
                 UNION ALL
                 SELECT * FROM transfers WHERE credit_account_id = $1 AND seq >= $4 AND seq <= coalesce($5, 9223372036854775807)
             ), tail AS (
                 SELECT
                     coalesce(sum(amount) FILTER (WHERE debit_account_id = $1 AND kind IN ('posted', 'post_pending', 'reversal')), 0) AS dp,
                     coalesce(sum(amount) FILTER (WHERE credit_account_id = $1 AND kind IN ('posted', 'post_pending', 'reversal')), 0) AS cp,
                     coalesce(sum(amount) FILTER (WHERE debit_account_id = $1 AND kind = 'pending'), 0) AS dh,
                     coalesce(sum(amount) FILTER (WHERE credit_account_id = $1 AND kind = 'pending'), 0) AS ch
                 FROM rows
                 WHERE status <> 'rejected' AND created_at <= $6 AND ($3::timestamptz IS NULL OR created_at >= $3)
             ), released AS (
                 SELECT coalesce(sum(amount) FILTER (WHERE debit_account_id = $1), 0) AS dh,
                        coalesce(sum(amount) FILTER (WHERE credit_account_id = $1), 0) AS ch
                 FROM transfers
                 WHERE kind = 'pending' AND status IN ('posted', 'voided', 'expired') AND completed_at <= $6
                   AND ($3::timestamptz IS NULL OR completed_at >= $3)
                   AND (debit_account_id = $1 OR credit_account_id = $1)
             )
             SELECT coalesce(s.dp, 0) + t.dp, coalesce(s.cp, 0) + t.cp,
                    coalesce(s.dh, 0) + t.dh - r.dh, coalesce(s.ch, 0) + t.ch - r.ch
             FROM tail t CROSS JOIN released r LEFT JOIN snapshot s ON true",
            &[&account_id, &snapshot_day.as_deref().unwrap_or("-infinity"), &since, &seq_low, &seq_high, &at, &ledger],
        )
        .await?;
    db_tx.commit().await?;
    let total = |i: usize| from_numeric(row.get(i));
    Ok(PointInTime {
        account_id,
        currency,
        scale: u8::try_from(scale).expect("scale constrained by the schema"),
        as_of,
        debits_posted: total(0),
        credits_posted: total(1),
        debits_pending: total(2),
        credits_pending: total(3),
        snapshot_day,
    })
}
