//! Why a statement is refused. Every variant says where (a line, or an XML element path with its
//! line) and what; [`StatementError::code`] gives the stable machine-readable code.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StatementError {
    /// Syntax: bad XML, a missing required tag or element, tags out of order, an unknown code
    /// (such as a credit/debit indicator), text that is not UTF-8.
    #[error("{location}: malformed statement: {reason}")]
    Malformed { location: String, reason: String },
    #[error("{location}: invalid amount {text:?}: {reason}")]
    AmountInvalid { location: String, text: String, reason: String },
    #[error("{location}: invalid date {text:?}: {reason}")]
    DateInvalid { location: String, text: String, reason: String },
    /// Well-formed, but something this crate deliberately does not handle: another camt message,
    /// several statements in one file, a DTD, a non-UTF-8 encoding, pending entries.
    #[error("{location}: unsupported statement: {reason}")]
    Unsupported { location: String, reason: String },
    /// One statement is about one currency; an amount or balance in another is refused.
    #[error("{location}: currency {found} differs from the statement currency {expected}")]
    CurrencyMismatch { location: String, expected: String, found: String },
    /// The statement's own opening balance plus its entries is not its closing balance.
    #[error(
        "{location}: the statement does not add up: opening balance {opening} + entries {entries_total} = {computed} \
         minor units, but the closing balance is {closing}"
    )]
    BalanceMismatch { location: String, opening: i128, entries_total: i128, computed: i128, closing: i128 },
    /// A batched entry's transactions do not sum to the entry.
    #[error("{location}: the batch details sum to {details_total} minor units, but the entry amount is {entry_amount}")]
    DetailsMismatch { location: String, entry_amount: i128, details_total: i128 },
    /// The input, an entry count, a text field or the nesting is over its limit.
    #[error("{location}: statement too large: {reason}")]
    TooLarge { location: String, reason: String },
}

impl StatementError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            StatementError::Malformed { .. } => "statement_malformed",
            StatementError::AmountInvalid { .. } => "statement_amount_invalid",
            StatementError::DateInvalid { .. } => "statement_date_invalid",
            StatementError::Unsupported { .. } | StatementError::CurrencyMismatch { .. } => "statement_unsupported",
            StatementError::BalanceMismatch { .. } | StatementError::DetailsMismatch { .. } => {
                "statement_balance_mismatch"
            }
            StatementError::TooLarge { .. } => "statement_too_large",
        }
    }

    /// Where in the file: `line 7`, or an element path such as
    /// `Document/BkToCstmrStmt/Stmt/Ntry[3]/Amt (line 57)`.
    pub fn location(&self) -> &str {
        match self {
            StatementError::Malformed { location, .. }
            | StatementError::AmountInvalid { location, .. }
            | StatementError::DateInvalid { location, .. }
            | StatementError::Unsupported { location, .. }
            | StatementError::CurrencyMismatch { location, .. }
            | StatementError::BalanceMismatch { location, .. }
            | StatementError::DetailsMismatch { location, .. }
            | StatementError::TooLarge { location, .. } => location,
        }
    }

    pub(crate) fn malformed(location: impl Into<String>, reason: impl Into<String>) -> Self {
        StatementError::Malformed { location: location.into(), reason: reason.into() }
    }

    pub(crate) fn unsupported(location: impl Into<String>, reason: impl Into<String>) -> Self {
        StatementError::Unsupported { location: location.into(), reason: reason.into() }
    }

    pub(crate) fn too_large(location: impl Into<String>, reason: impl Into<String>) -> Self {
        StatementError::TooLarge { location: location.into(), reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_code_and_a_location() {
        let location = || "line 7".to_owned();
        let errors = [
            StatementError::malformed("line 7", "x"),
            StatementError::AmountInvalid { location: location(), text: "1,2,3".into(), reason: "r".into() },
            StatementError::DateInvalid { location: location(), text: "261345".into(), reason: "r".into() },
            StatementError::unsupported("line 7", "x"),
            StatementError::CurrencyMismatch { location: location(), expected: "EUR".into(), found: "USD".into() },
            StatementError::BalanceMismatch {
                location: location(),
                opening: 1,
                entries_total: 2,
                computed: 3,
                closing: 4,
            },
            StatementError::DetailsMismatch { location: location(), entry_amount: 1, details_total: 2 },
            StatementError::too_large("line 7", "x"),
        ];
        let codes: Vec<&str> = errors.iter().map(StatementError::code).collect();
        assert_eq!(
            codes,
            [
                "statement_malformed",
                "statement_amount_invalid",
                "statement_date_invalid",
                "statement_unsupported",
                "statement_unsupported",
                "statement_balance_mismatch",
                "statement_balance_mismatch",
                "statement_too_large",
            ]
        );
        for error in &errors {
            assert_eq!(error.location(), "line 7");
            assert!(error.to_string().starts_with("line 7: "), "{error}");
        }
    }
}
