//! Read-side queries: one transfer, an account's history, event and audit pages.

use crate::accounts::resolve_account_id;
use crate::posting::{JournalRow, journal_row_from_row};
use crate::{Store, StoreError};
use tally_core::{AccountId, Transfer};
use uuid::Uuid;

/// The most entries one page of history returns.
pub const HISTORY_PAGE_SIZE_MAX: i64 = 1_000;

/// Which side of a transfer an account was on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Money left the account (the seed's 'debit').
    Debit,
    /// Money entered the account.
    Credit,
}

/// One line of an account's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// Journal position; pass the last one as `before` to get the next (older) page.
    pub seq: i64,
    pub direction: Direction,
    pub other_account_id: AccountId,
    pub transfer: Transfer,
    pub actor: String,
}

impl Store {
    /// The journal row under a transfer id: an applied transfer or a recorded rejection.
    pub async fn journal_row(&self, id: Uuid) -> Result<Option<JournalRow>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {} FROM transfers t WHERE t.id = $1", crate::posting::TRANSFER_COLUMNS);
        Ok(client.query_opt(&sql, &[&id]).await?.as_ref().map(journal_row_from_row))
    }

    /// An applied transfer by id.
    pub async fn transfer(&self, id: Uuid) -> Result<Option<Transfer>, StoreError> {
        Ok(match self.journal_row(id).await? {
            Some(JournalRow::Applied { transfer, .. }) => Some(transfer),
            _ => None,
        })
    }

    /// An account's transfers, newest first, before the `before` cursor (a seq), at most `limit`.
    pub async fn history(
        &self,
        id_or_code: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let limit = limit.clamp(1, HISTORY_PAGE_SIZE_MAX);
        let before = before.unwrap_or(i64::MAX);
        let client = self.client().await?;
        let account = resolve_account_id(&client, id_or_code).await?;
        // Two index scans (debit side, credit side), each already newest first, merged.
        let sql = format!(
            "SELECT * FROM (
                 (SELECT {cols} FROM transfers t WHERE t.debit_account_id = $1 AND t.seq < $2 ORDER BY t.seq DESC LIMIT $3)
                 UNION ALL
                 (SELECT {cols} FROM transfers t WHERE t.credit_account_id = $1 AND t.seq < $2 ORDER BY t.seq DESC LIMIT $3)
             ) h ORDER BY seq DESC LIMIT $3",
            cols = crate::posting::TRANSFER_COLUMNS
        );
        let rows = client.query(&sql, &[&account, &before, &limit]).await?;
        Ok(rows
            .iter()
            .map(|row| match journal_row_from_row(row) {
                JournalRow::Applied { transfer, actor, seq } => {
                    let debit = transfer.debit_account_id.0 == account;
                    HistoryEntry {
                        seq,
                        direction: if debit { Direction::Debit } else { Direction::Credit },
                        other_account_id: if debit { transfer.credit_account_id } else { transfer.debit_account_id },
                        transfer,
                        actor,
                    }
                }
                JournalRow::Rejected { .. } => unreachable!("rejections name no accounts"),
            })
            .collect())
    }
}
