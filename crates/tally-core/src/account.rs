//! Accounts as the state machine sees them: currency, status, balance rule, totals, version.
//!
//! Balances are never stored, they are derived: `balance = credits_posted - debits_posted` and
//! `available = balance - debits_pending`. Money leaves an account on the debit side, so an
//! account's balance rule is a lower bound on `available` after a debit or a hold.
//! Descriptive fields (external code, metadata, timestamps) live in the store; the core only
//! carries what decides a transfer.

use crate::amount::{AMOUNT_MAX, MinorUnits};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// An account id: a client-supplied UUID, or a generated UUIDv7 (time-ordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(pub Uuid);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A ledger: a set of books. Every account belongs to exactly one, and a transfer stays inside
/// the ledger of its two accounts. Ledger 1 is `default`, where everything that never names a
/// ledger lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LedgerId(pub i32);

impl LedgerId {
    /// The ledger `default`, made by the migration that introduced ledgers.
    pub const DEFAULT: LedgerId = LedgerId(1);
}

impl Default for LedgerId {
    fn default() -> LedgerId {
        LedgerId::DEFAULT
    }
}

impl fmt::Display for LedgerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether an account may move money. Only `Active` accounts may be debited or credited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Frozen,
    Closed,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Frozen => "frozen",
            AccountStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<AccountStatus> {
        match text {
            "active" => Some(AccountStatus::Active),
            "frozen" => Some(AccountStatus::Frozen),
            "closed" => Some(AccountStatus::Closed),
            _ => None,
        }
    }
}

/// How far an account's available balance may fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "limit")]
pub enum BalanceRule {
    /// `available >= 0`: a customer wallet.
    NoOverdraft,
    /// `available >= -limit`: a credit line. The limit is in minor units, `1..=AMOUNT_MAX`.
    OverdraftLimit(#[serde(with = "crate::amount::serde_minor")] MinorUnits),
    /// No bound: system accounts such as equity, settlement or fees.
    Unrestricted,
}

impl BalanceRule {
    /// The overdraft limit in minor units (0 for no overdraft; `None` when unrestricted).
    pub fn limit(self) -> Option<MinorUnits> {
        match self {
            BalanceRule::NoOverdraft => Some(0),
            BalanceRule::OverdraftLimit(limit) => Some(limit),
            BalanceRule::Unrestricted => None,
        }
    }

    /// Builds the rule from its stored form (`unrestricted`, `overdraft_limit`).
    pub fn from_parts(unrestricted: bool, overdraft_limit: MinorUnits) -> BalanceRule {
        assert!((0..=AMOUNT_MAX).contains(&overdraft_limit));
        match (unrestricted, overdraft_limit) {
            (true, _) => BalanceRule::Unrestricted,
            (false, 0) => BalanceRule::NoOverdraft,
            (false, limit) => BalanceRule::OverdraftLimit(limit),
        }
    }
}

/// An account's ledger state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    /// The ledger the account belongs to; it never changes.
    #[serde(default)]
    pub ledger: LedgerId,
    pub currency: String,
    pub status: AccountStatus,
    pub rule: BalanceRule,
    #[serde(with = "crate::amount::serde_minor")]
    pub debits_posted: MinorUnits,
    #[serde(with = "crate::amount::serde_minor")]
    pub credits_posted: MinorUnits,
    #[serde(with = "crate::amount::serde_minor")]
    pub debits_pending: MinorUnits,
    #[serde(with = "crate::amount::serde_minor")]
    pub credits_pending: MinorUnits,
    /// Increases by one on every change of the account (each transfer that touches it counts).
    pub version: i64,
}

impl Account {
    /// A new, empty, active account at version 1, in the ledger `default`.
    pub fn new(id: AccountId, currency: &str, rule: BalanceRule) -> Account {
        Account::new_in(LedgerId::DEFAULT, id, currency, rule)
    }

    /// A new, empty, active account at version 1, in `ledger`.
    pub fn new_in(ledger: LedgerId, id: AccountId, currency: &str, rule: BalanceRule) -> Account {
        Account {
            id,
            ledger,
            currency: currency.to_owned(),
            status: AccountStatus::Active,
            rule,
            debits_posted: 0,
            credits_posted: 0,
            debits_pending: 0,
            credits_pending: 0,
            version: 1,
        }
    }

    /// Posted balance: credits minus debits.
    pub fn balance(&self) -> MinorUnits {
        self.credits_posted - self.debits_posted
    }

    /// What can still be debited before the rule applies: balance minus held debits.
    pub fn available(&self) -> MinorUnits {
        self.balance() - self.debits_pending
    }

    /// True when the account satisfies its balance rule and all totals are in range.
    pub fn is_within_rule(&self) -> bool {
        let totals = [self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending];
        let in_range = totals.iter().all(|t| (0..=AMOUNT_MAX).contains(t));
        let rule_ok = match self.rule.limit() {
            Some(limit) => self.available() >= -limit,
            None => true,
        };
        in_range && rule_ok
    }

    /// True when nothing is held and nothing is owed: the condition for closing.
    pub fn is_empty(&self) -> bool {
        self.balance() == 0 && self.debits_pending == 0 && self.credits_pending == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(rule: BalanceRule) -> Account {
        Account::new(AccountId(Uuid::nil()), "USD", rule)
    }

    #[test]
    fn balance_and_available() {
        let mut a = account(BalanceRule::NoOverdraft);
        a.credits_posted = 1000;
        a.debits_posted = 300;
        a.debits_pending = 200;
        assert_eq!(a.balance(), 700);
        assert_eq!(a.available(), 500);
        assert!(a.is_within_rule());
        a.debits_pending = 701;
        assert!(!a.is_within_rule());
    }

    #[test]
    fn rules() {
        let mut a = account(BalanceRule::OverdraftLimit(100));
        a.debits_posted = 100;
        assert!(a.is_within_rule());
        a.debits_posted = 101;
        assert!(!a.is_within_rule());
        a.rule = BalanceRule::Unrestricted;
        assert!(a.is_within_rule());
        assert_eq!(BalanceRule::from_parts(false, 0), BalanceRule::NoOverdraft);
        assert_eq!(BalanceRule::from_parts(false, 5), BalanceRule::OverdraftLimit(5));
        assert_eq!(BalanceRule::from_parts(true, 0), BalanceRule::Unrestricted);
    }
}
