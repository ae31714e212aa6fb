//! The result of creating one transfer: one enum, stable numbers, ordered by precedence.
//!
//! When a transfer breaks several rules, the result is the first in this order, so the same
//! request always gets the same answer. Numbers are part of the wire and storage format: never
//! renumber, only append. Modelled on TigerBeetle's `CreateTransferStatus`.
//!
//! Three families:
//! - *Validation* results (`is_validation`): the request is malformed on its own. Nothing is
//!   written and the transfer id stays unused, so a corrected request may reuse it.
//! - *Decisions* (`ok` and every rule rejection): the id is decided once. A rejection is recorded
//!   with its reason, and a retry with the same id returns the same result whatever has changed
//!   since, so a replay can never turn into a different outcome.
//! - *Replays* (`exists`, `exists_with_different_fields`): the id was already decided.

use serde::{Deserialize, Serialize};

macro_rules! transfer_results {
    ($( $(#[$doc:meta])* $variant:ident = $number:literal, $code:literal, $transient:literal; )*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[repr(u16)]
        pub enum TransferResult {
            $( $(#[$doc])* $variant = $number, )*
        }

        impl TransferResult {
            /// Every result, in precedence order.
            pub const ALL: &'static [TransferResult] = &[$(TransferResult::$variant),*];

            /// The stable machine-readable code, e.g. `insufficient_funds`.
            pub fn code(self) -> &'static str {
                match self { $( TransferResult::$variant => $code, )* }
            }

            /// True when a new transfer (with a new id) may succeed later without the request
            /// changing: the result depends on ledger state, not on the request alone.
            pub fn transient(self) -> bool {
                match self { $( TransferResult::$variant => $transient, )* }
            }

            /// The result with this stable number.
            pub fn from_number(number: u16) -> Option<TransferResult> {
                match number { $( $number => Some(TransferResult::$variant), )* _ => None }
            }

            /// The result with this stable code.
            pub fn from_code(code: &str) -> Option<TransferResult> {
                match code { $( $code => Some(TransferResult::$variant), )* _ => None }
            }
        }
    };
}

transfer_results! {
    /// The transfer was applied.
    Ok = 0, "ok", false;
    /// Another transfer of the same linked chain failed, so this one was not applied either.
    LinkedChainFailed = 1, "linked_chain_failed", true;
    /// The batch ended with a transfer still flagged `linked`: the chain has no end.
    LinkedChainOpen = 2, "linked_chain_open", false;
    /// The transfer id is the nil UUID.
    IdInvalid = 3, "id_invalid", false;
    /// A posted or pending transfer needs both a debit and a credit account.
    AccountsRequired = 4, "accounts_required", false;
    /// post_pending, void_pending and reversal take their accounts from the transfer they name.
    AccountsNotAllowed = 5, "accounts_not_allowed", false;
    /// post_pending, void_pending and reversal must name the transfer they act on.
    RelatedIdRequired = 6, "related_id_required", false;
    /// Only post_pending, void_pending and reversal name another transfer.
    RelatedIdNotAllowed = 7, "related_id_not_allowed", false;
    /// Only a pending transfer may have a timeout, and it must be at most the maximum.
    TimeoutInvalid = 8, "timeout_invalid", false;
    /// The amount is missing where required, zero, or above the maximum.
    AmountInvalid = 9, "amount_invalid", false;
    /// The debit and credit accounts are the same account.
    SameAccount = 10, "same_account", false;
    /// The reference is longer than the maximum.
    ReferenceTooLong = 11, "reference_too_long", false;
    /// The metadata is larger than the maximum when serialized.
    MetadataTooLarge = 12, "metadata_too_large", false;
    /// The id was already used by a transfer with different fields.
    ExistsWithDifferentFields = 13, "exists_with_different_fields", false;
    /// The id was already used by this very transfer, which was applied: an idempotent replay.
    Exists = 14, "exists", false;
    /// The debit or credit account does not exist.
    AccountNotFound = 15, "account_not_found", true;
    /// The debit and credit accounts belong to different ledgers: a transfer stays inside one.
    LedgerMismatch = 32, "ledger_mismatch", false;
    /// The accounts' currencies differ from each other or from the transfer's.
    CurrencyMismatch = 16, "currency_mismatch", false;
    /// The pending transfer named by post_pending or void_pending does not exist.
    PendingNotFound = 17, "pending_not_found", true;
    /// The transfer named by post_pending or void_pending is not a pending transfer.
    NotPending = 18, "not_pending", false;
    /// The pending transfer was already posted.
    PendingAlreadyPosted = 19, "pending_already_posted", false;
    /// The pending transfer was already voided.
    PendingAlreadyVoided = 20, "pending_already_voided", false;
    /// The pending transfer's timeout has passed.
    PendingExpired = 21, "pending_expired", false;
    /// A post_pending amount above the pending amount, or a void amount other than it.
    AmountExceedsPending = 22, "amount_exceeds_pending", false;
    /// The transfer named by a reversal does not exist.
    TransferNotFound = 23, "transfer_not_found", true;
    /// Only transfers that moved posted money (posted, post_pending) can be reversed, in full.
    ReversalNotAllowed = 24, "reversal_not_allowed", false;
    /// The transfer was already reversed.
    AlreadyReversed = 25, "already_reversed", false;
    /// The debit or credit account is closed.
    AccountClosed = 26, "account_closed", false;
    /// The debit or credit account is frozen.
    AccountFrozen = 27, "account_frozen", true;
    /// An account's version differs from the expected version given with the transfer.
    VersionConflict = 28, "version_conflict", true;
    /// An account total would pass the maximum amount.
    Overflow = 29, "overflow", false;
    /// The debit account's available balance would fall below zero.
    InsufficientFunds = 30, "insufficient_funds", true;
    /// The debit account's available balance would fall below minus its overdraft limit.
    OverdraftLimitExceeded = 31, "overdraft_limit_exceeded", true;
}

impl TransferResult {
    /// The request is malformed on its own: nothing is written and the id stays unused.
    pub fn is_validation(self) -> bool {
        (self as u16) >= (TransferResult::LinkedChainOpen as u16)
            && (self as u16) <= (TransferResult::MetadataTooLarge as u16)
    }

    /// The transfer moved money or placed a hold (a replay of one counts as success too).
    pub fn is_success(self) -> bool {
        matches!(self, TransferResult::Ok | TransferResult::Exists)
    }

    /// A decided rejection that is recorded so that a replay returns it again.
    pub fn is_recorded_rejection(self) -> bool {
        !self.is_success() && !self.is_validation() && self != TransferResult::ExistsWithDifferentFields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_codes_are_unique_and_round_trip() {
        // Numbers are stable, so a result added later takes the next number wherever it stands
        // in precedence order (ledger_mismatch, 32, is checked before currency_mismatch, 16).
        let mut numbers: Vec<usize> = TransferResult::ALL.iter().map(|r| *r as usize).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (0..TransferResult::ALL.len()).collect::<Vec<_>>(), "numbers are dense");
        for result in TransferResult::ALL {
            assert_eq!(TransferResult::from_number(*result as u16), Some(*result));
            assert_eq!(TransferResult::from_code(result.code()), Some(*result));
            let json = serde_json::to_string(result).unwrap();
            assert_eq!(json, format!("\"{}\"", result.code()));
        }
        assert_eq!(TransferResult::from_number(999), None);
    }

    #[test]
    fn families() {
        assert!(TransferResult::AmountInvalid.is_validation());
        assert!(TransferResult::SameAccount.is_validation());
        assert!(!TransferResult::Ok.is_validation());
        assert!(!TransferResult::LinkedChainFailed.is_validation());
        assert!(TransferResult::InsufficientFunds.is_recorded_rejection());
        assert!(TransferResult::LinkedChainFailed.is_recorded_rejection());
        assert!(!TransferResult::Exists.is_recorded_rejection());
        assert!(!TransferResult::ExistsWithDifferentFields.is_recorded_rejection());
        assert!(TransferResult::InsufficientFunds.transient());
        assert!(!TransferResult::SameAccount.transient());
    }
}
