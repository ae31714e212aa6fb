//! Transfers: requests to move money, and the journal entries they become.
//!
//! A transfer debits one account and credits another by the same amount in the same currency,
//! so every transfer balances by construction. Kinds:
//! - `posted`: moves money now.
//! - `pending`: a hold; moves nothing yet, reserves the amount on the debit account.
//! - `post_pending`: captures a pending transfer, fully or partly; the rest is released.
//! - `void_pending`: releases a pending transfer.
//! - `reversal`: a new transfer that moves a posted transfer's money back, and points to it.

use crate::account::{AccountId, LedgerId};
use crate::amount::MinorUnits;
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// The longest reference, in bytes.
pub const REFERENCE_LEN_MAX: usize = 256;
/// The largest metadata object, serialized as JSON, in bytes.
pub const METADATA_BYTES_MAX: usize = 4096;
/// The longest pending timeout: 30 days.
pub const TIMEOUT_SECONDS_MAX: u32 = 30 * 24 * 3600;
/// The longest actor name, in bytes.
pub const ACTOR_LEN_MAX: usize = 128;

/// A transfer id: chosen by the client, it is the transfer's idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TransferId(pub Uuid);

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Microseconds since the Unix epoch. The core never reads a clock: time is an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn plus_seconds(self, seconds: u32) -> Timestamp {
        Timestamp(self.0 + i64::from(seconds) * 1_000_000)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(i16)]
pub enum TransferKind {
    Posted = 0,
    Pending = 1,
    PostPending = 2,
    VoidPending = 3,
    Reversal = 4,
}

impl TransferKind {
    pub const ALL: [TransferKind; 5] = [
        TransferKind::Posted,
        TransferKind::Pending,
        TransferKind::PostPending,
        TransferKind::VoidPending,
        TransferKind::Reversal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Posted => "posted",
            TransferKind::Pending => "pending",
            TransferKind::PostPending => "post_pending",
            TransferKind::VoidPending => "void_pending",
            TransferKind::Reversal => "reversal",
        }
    }

    pub fn from_number(number: i16) -> Option<TransferKind> {
        TransferKind::ALL.into_iter().find(|k| *k as i16 == number)
    }

    pub fn parse(text: &str) -> Option<TransferKind> {
        TransferKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Kinds that name another transfer (`related_id`) and take their accounts from it.
    pub fn acts_on_another(self) -> bool {
        matches!(self, TransferKind::PostPending | TransferKind::VoidPending | TransferKind::Reversal)
    }
}

/// A journal entry's state. Only a pending transfer's status ever changes, and only once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(i16)]
pub enum TransferStatus {
    /// Money moved (posted, post_pending, reversal), or a pending transfer that was captured.
    Posted = 0,
    /// A hold that is still open.
    Pending = 1,
    /// A void_pending entry, or a pending transfer that was voided.
    Voided = 2,
    /// A pending transfer whose timeout passed.
    Expired = 3,
}

impl TransferStatus {
    pub const ALL: [TransferStatus; 4] =
        [TransferStatus::Posted, TransferStatus::Pending, TransferStatus::Voided, TransferStatus::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            TransferStatus::Posted => "posted",
            TransferStatus::Pending => "pending",
            TransferStatus::Voided => "voided",
            TransferStatus::Expired => "expired",
        }
    }

    pub fn from_number(number: i16) -> Option<TransferStatus> {
        TransferStatus::ALL.into_iter().find(|s| *s as i16 == number)
    }

    pub fn parse(text: &str) -> Option<TransferStatus> {
        TransferStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// What a client asks for. Which fields are required depends on the kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferRequest {
    pub id: TransferId,
    pub kind: TransferKind,
    /// The account money leaves (posted, pending). Derived for the other kinds.
    pub debit_account_id: Option<AccountId>,
    /// The account money enters (posted, pending). Derived for the other kinds.
    pub credit_account_id: Option<AccountId>,
    /// Minor units. Required for posted and pending; optional for post_pending (default: all),
    /// void_pending and reversal (default and only allowed value: the full amount).
    #[serde(with = "crate::amount::serde_minor_opt")]
    pub amount: Option<MinorUnits>,
    /// When given, must equal the accounts' currency.
    pub currency: Option<String>,
    /// The pending transfer (post_pending, void_pending) or the original (reversal).
    pub related_id: Option<TransferId>,
    /// Pending only: the hold expires this many seconds after it is created.
    pub timeout_seconds: Option<u32>,
    /// Optimistic preconditions: the version each account must have when this transfer applies.
    pub expected_debit_version: Option<i64>,
    pub expected_credit_version: Option<i64>,
    pub reference: Option<String>,
    pub metadata: Option<serde_json::Value>,
    /// When true, this transfer and the next one in the batch succeed or fail together.
    pub linked: bool,
}

impl TransferRequest {
    /// A plain posted transfer, the most common request.
    pub fn posted(id: TransferId, debit: AccountId, credit: AccountId, amount: MinorUnits) -> TransferRequest {
        TransferRequest {
            id,
            kind: TransferKind::Posted,
            debit_account_id: Some(debit),
            credit_account_id: Some(credit),
            amount: Some(amount),
            currency: None,
            related_id: None,
            timeout_seconds: None,
            expected_debit_version: None,
            expected_credit_version: None,
            reference: None,
            metadata: None,
            linked: false,
        }
    }

    /// A request that acts on another transfer (post_pending, void_pending, reversal).
    pub fn acting_on(
        id: TransferId,
        kind: TransferKind,
        related: TransferId,
        amount: Option<MinorUnits>,
    ) -> TransferRequest {
        assert!(kind.acts_on_another());
        TransferRequest {
            kind,
            debit_account_id: None,
            credit_account_id: None,
            amount,
            related_id: Some(related),
            ..TransferRequest::posted(id, AccountId(Uuid::nil()), AccountId(Uuid::nil()), 0)
        }
    }
}

/// A journal entry: a decided, applied transfer. Immutable but for a pending transfer's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: TransferId,
    /// The ledger of its two accounts.
    #[serde(default)]
    pub ledger: LedgerId,
    pub kind: TransferKind,
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    #[serde(with = "crate::amount::serde_minor")]
    pub amount: MinorUnits,
    pub currency: String,
    pub related_id: Option<TransferId>,
    pub timeout_seconds: Option<u32>,
    /// Pending only, when it has a timeout: `created_at + timeout_seconds`.
    pub expires_at: Option<Timestamp>,
    pub status: TransferStatus,
    pub reference: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub created_at: Timestamp,
    /// When the transfer reached its final status (for a pending transfer: when it was resolved).
    pub completed_at: Option<Timestamp>,
}

/// A recorded rejection: the id is decided, and a replay returns `result` again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub request: TransferRequest,
    pub result: crate::result::TransferResult,
    pub created_at: Timestamp,
    /// The ledger it is filed under (see `LedgerState::apply_batch`: an account or transfer the
    /// request names, else `default`).
    #[serde(default)]
    pub ledger: LedgerId,
}

/// A pending transfer whose status changed in this batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub pending_id: TransferId,
    pub status: TransferStatus,
    pub at: Timestamp,
    /// The pending transfer's ledger.
    #[serde(default)]
    pub ledger: LedgerId,
}
