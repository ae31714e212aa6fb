//! The bank scenario: what a retail bank's ledger sees, on accounts every process shares.
//!
//! Accounts (opened by `setup::prepare_bank`, all in the default ledger and `setup::CURRENCY`):
//! - customers `loadcheck-<run>-customer-<i>`: wallets that may not go negative
//!   (`BalanceRule::NoOverdraft`), each funded with `CUSTOMER_FUNDING_MINOR` at setup;
//! - house account 0, `loadcheck-<run>-house-fees`: the bank's fee income (unrestricted);
//! - house accounts 1.., `loadcheck-<run>-house-settlement-<k>`: the bank's cash and settlement
//!   accounts (unrestricted). Setup funds the customers from the first one; deposits and
//!   withdrawals go through one picked uniformly.
//!
//! Operations, in shares of `OPERATION_SHARE_TOTAL`:
//! - a payment (`PAYMENT_SHARE`): customer to another customer, and the payer's fee to the fees
//!   account, as one atomic request (`POST /v1/transfers/batch` with `atomic`, a linked pair):
//!   both are applied or neither. A payer short of money gets `insufficient_funds`;
//! - a deposit (`DEPOSIT_SHARE`): settlement to a customer;
//! - a withdrawal (the rest): a customer to settlement, refused when the customer is short.
//!
//! Customers are picked with the run's Zipf exponent; every payment touches the fees account,
//! and every deposit and withdrawal one of the few settlement accounts, so the processes contend
//! there however many customers there are.

use crate::setup::{AMOUNT_MINOR_MAX, AMOUNT_MINOR_MIN};
use crate::shared::{AccountPicker, TransferSpec};
use serde::Serialize;
use tally_core::AccountId;
use uuid::Uuid;

/// Shares of the operations, out of `OPERATION_SHARE_TOTAL`.
pub const PAYMENT_SHARE: u32 = 80;
pub const DEPOSIT_SHARE: u32 = 10;
pub const OPERATION_SHARE_TOTAL: u32 = 100;
/// A payment's fee: this many hundredths of a percent of its amount, at least `FEE_MINOR_MIN`.
pub const FEE_BASIS_POINTS: i128 = 50;
pub const FEE_MINOR_MIN: i128 = 1;
/// What each customer starts with: 200.00, four average payments' worth, so that customers
/// drawn often run dry and some payments and withdrawals are refused.
pub const CUSTOMER_FUNDING_MINOR: i128 = 20_000;
/// Index of the fees account among the house accounts; the others are settlement accounts.
pub const FEES_HOUSE_INDEX: usize = 0;

const _: () = assert!(PAYMENT_SHARE + DEPOSIT_SHARE < OPERATION_SHARE_TOTAL, "withdrawals have a share");
const _: () = assert!(FEE_BASIS_POINTS > 0 && FEE_BASIS_POINTS < 10_000);
const _: () = assert!(CUSTOMER_FUNDING_MINOR > AMOUNT_MINOR_MAX + AMOUNT_MINOR_MAX * FEE_BASIS_POINTS / 10_000);

/// What an operation is, for the report's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A transfer between hot accounts (the hot-accounts scenario and the SQL writers).
    Transfer,
    Payment,
    Fee,
    Deposit,
    Withdrawal,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Transfer => "transfer",
            Kind::Payment => "payment",
            Kind::Fee => "fee",
            Kind::Deposit => "deposit",
            Kind::Withdrawal => "withdrawal",
        }
    }
}

/// One request's transfers: one, or a linked pair sent atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub transfers: Vec<(Kind, TransferSpec)>,
}

impl Operation {
    pub fn single(kind: Kind, spec: TransferSpec) -> Operation {
        Operation { transfers: vec![(kind, spec)] }
    }

    pub fn is_atomic(&self) -> bool {
        self.transfers.len() > 1
    }
}

/// The fee of a payment of `amount_minor`.
pub fn fee_of(amount_minor: i128) -> i128 {
    assert!(amount_minor > 0, "a payment moves money");
    (amount_minor * FEE_BASIS_POINTS / 10_000).max(FEE_MINOR_MIN)
}

/// The bank's accounts and how operations pick among them.
#[derive(Debug, Clone)]
pub struct BankMix {
    customers: AccountPicker,
    fees: AccountId,
    settlement: Vec<AccountId>,
}

impl BankMix {
    /// `house[FEES_HOUSE_INDEX]` is the fees account, the others settlement accounts.
    pub fn new(customers: AccountPicker, house: &[AccountId]) -> BankMix {
        assert!(house.len() >= crate::config::HOUSE_ACCOUNTS_MIN, "fees and at least one settlement account");
        let fees = house[FEES_HOUSE_INDEX];
        let settlement = house.iter().enumerate().filter(|(i, _)| *i != FEES_HOUSE_INDEX).map(|(_, a)| *a).collect();
        BankMix { customers, fees, settlement }
    }

    /// The next operation.
    pub fn next(&self, rng: &mut fastrand::Rng) -> Operation {
        let amount_minor = rng.i128(AMOUNT_MINOR_MIN..=AMOUNT_MINOR_MAX);
        let share = rng.u32(0..OPERATION_SHARE_TOTAL);
        let spec = |debit, credit, amount_minor| TransferSpec { id: Uuid::now_v7(), debit, credit, amount_minor };
        if share < PAYMENT_SHARE {
            let (payer, payee) = self.customers.pair(rng);
            let payment = spec(payer, payee, amount_minor);
            let fee = spec(payer, self.fees, fee_of(amount_minor));
            return Operation { transfers: vec![(Kind::Payment, payment), (Kind::Fee, fee)] };
        }
        let customer = self.customers.pick(rng);
        let settlement = self.settlement[rng.usize(0..self.settlement.len())];
        if share < PAYMENT_SHARE + DEPOSIT_SHARE {
            Operation::single(Kind::Deposit, spec(settlement, customer, amount_minor))
        } else {
            Operation::single(Kind::Withdrawal, spec(customer, settlement, amount_minor))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(n: usize) -> Vec<AccountId> {
        (0..n).map(|_| AccountId(Uuid::now_v7())).collect()
    }

    #[test]
    fn fees_are_a_share_of_the_amount_and_never_zero() {
        assert_eq!(fee_of(100), 1);
        assert_eq!(fee_of(5_000), 25);
        assert_eq!(fee_of(10_000), 50);
        assert_eq!(fee_of(1), FEE_MINOR_MIN);
    }

    #[test]
    fn operations_follow_the_shares_and_name_the_right_accounts() {
        let customers = accounts(50);
        let house = accounts(4);
        let mix = BankMix::new(AccountPicker::new(customers.clone(), 0.0), &house);
        let mut rng = fastrand::Rng::with_seed(3);
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..10_000 {
            let operation = mix.next(&mut rng);
            *counts.entry(operation.transfers[0].0).or_insert(0) += 1;
            match operation.transfers.as_slice() {
                [(Kind::Payment, payment), (Kind::Fee, fee)] => {
                    assert!(customers.contains(&payment.debit) && customers.contains(&payment.credit));
                    assert_ne!(payment.debit, payment.credit);
                    assert_eq!((fee.debit, fee.credit), (payment.debit, house[FEES_HOUSE_INDEX]));
                    assert_eq!(fee.amount_minor, fee_of(payment.amount_minor));
                    assert!(operation.is_atomic());
                }
                [(Kind::Deposit, deposit)] => {
                    assert!(house[1..].contains(&deposit.debit) && customers.contains(&deposit.credit));
                }
                [(Kind::Withdrawal, withdrawal)] => {
                    assert!(customers.contains(&withdrawal.debit) && house[1..].contains(&withdrawal.credit));
                }
                other => panic!("unexpected operation {other:?}"),
            }
        }
        // 80%, 10%, 10%, within a few percent.
        assert!((7_700..8_300).contains(&counts[&Kind::Payment]), "{counts:?}");
        assert!((800..1_200).contains(&counts[&Kind::Deposit]), "{counts:?}");
        assert!((800..1_200).contains(&counts[&Kind::Withdrawal]), "{counts:?}");
    }
}
