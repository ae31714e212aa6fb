//! Tally's domain core: exact amounts, currencies, accounts, transfers, result codes and the
//! batch state machine that decides transfers.
//!
//! Architecture invariant: this crate does no I/O, reads no clock, spawns nothing and knows no
//! SQL or HTTP. Everything it decides is a pure function of its inputs, which is what lets the
//! store batch freely and lets property tests replay any history.

pub mod account;
pub mod amount;
pub mod batch;
pub mod currency;
pub mod result;
pub mod transfer;

pub use account::{Account, AccountId, AccountStatus, BalanceRule, LedgerId};
pub use amount::{AMOUNT_MAX, AmountError, MinorUnits, format_amount, parse_amount, parse_positive_amount};
pub use batch::{BATCH_SIZE_MAX, BatchOutput, LedgerState, validate};
pub use currency::{Currency, CurrencyError};
pub use result::TransferResult;
pub use transfer::{
    Rejection, Resolution, Timestamp, Transfer, TransferId, TransferKind, TransferRequest, TransferStatus,
};
