//! Exact money: integer minor units and strict decimal-string parsing.
//!
//! An amount is an `i128` count of minor units (cents for USD, fils for KWD, yen for JPY).
//! Every stored amount and every account total lies in `0..=AMOUNT_MAX`, where
//! `AMOUNT_MAX = 2^96 - 1`: 96 bits is more than any real ledger needs (about 7.9 * 10^28 minor
//! units) and is exactly what PostgreSQL's NUMERIC and `rust_decimal` carry without loss, so the
//! bound holds end to end. Sums are computed in `i128`, which cannot overflow for two values in
//! range, and then checked against `AMOUNT_MAX`: overflow is an error, never a wrap.
//!
//! The API speaks decimal strings. [`parse_amount`] accepts only plain digits with an optional
//! fraction (`"12"`, `"12.3"`, `"0.05"`) and rejects everything else with its own error: signs,
//! exponents, `NaN`/`inf`, thousands separators, too many decimals for the currency, and values
//! above `AMOUNT_MAX`.

use thiserror::Error;

/// Minor units of a currency. Signed so that balances (credits minus debits) fit the same type.
pub type MinorUnits = i128;

/// The largest amount or account total: 2^96 - 1 minor units.
pub const AMOUNT_MAX: MinorUnits = (1 << 96) - 1;

/// The largest number of decimal places a currency may have (user-defined assets go up to 18).
pub const SCALE_MAX: u8 = 18;

/// The longest amount string accepted, so that parsing cost is bounded before any arithmetic.
pub const AMOUNT_TEXT_LEN_MAX: usize = 64;

const _: () = assert!(AMOUNT_MAX > 0 && AMOUNT_MAX < i128::MAX / 4);
// 10^SCALE_MAX must fit comfortably in i128 for scaling.
const _: () = assert!(SCALE_MAX <= 30);

/// Why a decimal string is not an acceptable amount. Each variant has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AmountError {
    #[error("amount is empty")]
    Empty,
    #[error("amount is longer than {AMOUNT_TEXT_LEN_MAX} characters")]
    TooLong,
    #[error("amount must not carry a sign")]
    SignNotAllowed,
    #[error("amount must not use exponent notation")]
    ExponentNotAllowed,
    #[error("amount is not a number")]
    NotANumber,
    #[error("amount is malformed: only digits and one decimal point are allowed")]
    Malformed,
    #[error("amount has more than {scale} decimal places")]
    TooManyDecimals { scale: u8 },
    #[error("amount exceeds the maximum of 2^96-1 minor units")]
    Overflow,
    #[error("amount must be greater than zero")]
    Zero,
}

impl AmountError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AmountError::Empty => "amount_empty",
            AmountError::TooLong => "amount_too_long",
            AmountError::SignNotAllowed => "amount_sign_not_allowed",
            AmountError::ExponentNotAllowed => "amount_exponent_not_allowed",
            AmountError::NotANumber => "amount_not_a_number",
            AmountError::Malformed => "amount_malformed",
            AmountError::TooManyDecimals { .. } => "amount_too_many_decimals",
            AmountError::Overflow => "amount_overflow",
            AmountError::Zero => "amount_zero",
        }
    }
}

/// Parses a non-negative decimal string into minor units of a currency with `scale` decimals.
///
/// Trailing zeros beyond the scale are still "too many decimals": `"1.000"` is refused for a
/// 2-decimal currency, because a client that sends three decimals has misunderstood the currency.
pub fn parse_amount(text: &str, scale: u8) -> Result<MinorUnits, AmountError> {
    assert!(scale <= SCALE_MAX, "scale {scale} above SCALE_MAX");
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    if text.len() > AMOUNT_TEXT_LEN_MAX {
        return Err(AmountError::TooLong);
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("nan") || lower.contains("inf") {
        return Err(AmountError::NotANumber);
    }
    if text.starts_with(['+', '-']) {
        return Err(AmountError::SignNotAllowed);
    }
    if lower.contains('e') {
        return Err(AmountError::ExponentNotAllowed);
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits_only = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) {
        return Err(AmountError::Malformed);
    }
    let fraction = fraction.unwrap_or("");
    if text.ends_with('.') || !digits_only(fraction) {
        return Err(AmountError::Malformed);
    }
    if fraction.len() > usize::from(scale) {
        return Err(AmountError::TooManyDecimals { scale });
    }
    let mut value: MinorUnits = 0;
    let padding = usize::from(scale) - fraction.len();
    let all_digits = whole.bytes().chain(fraction.bytes()).chain(std::iter::repeat_n(b'0', padding));
    for digit in all_digits {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(MinorUnits::from(digit - b'0')))
            .filter(|v| *v <= AMOUNT_MAX)
            .ok_or(AmountError::Overflow)?;
    }
    Ok(value)
}

/// Parses an amount that must be strictly positive (the amount of a transfer).
pub fn parse_positive_amount(text: &str, scale: u8) -> Result<MinorUnits, AmountError> {
    match parse_amount(text, scale)? {
        0 => Err(AmountError::Zero),
        value => Ok(value),
    }
}

/// Formats minor units as a decimal string with exactly `scale` decimals (`-12.30`, `7`).
pub fn format_amount(value: MinorUnits, scale: u8) -> String {
    assert!(scale <= SCALE_MAX);
    let sign = if value < 0 { "-" } else { "" };
    let magnitude = value.unsigned_abs();
    if scale == 0 {
        return format!("{sign}{magnitude}");
    }
    let divisor = 10u128.pow(u32::from(scale));
    let whole = magnitude / divisor;
    let fraction = magnitude % divisor;
    format!("{sign}{whole}.{fraction:0width$}", width = usize::from(scale))
}

/// Adds two in-range totals, failing instead of passing `AMOUNT_MAX`.
pub fn checked_total(a: MinorUnits, b: MinorUnits) -> Option<MinorUnits> {
    assert!((0..=AMOUNT_MAX).contains(&a) && (0..=AMOUNT_MAX).contains(&b));
    Some(a + b).filter(|sum| *sum <= AMOUNT_MAX)
}

/// Serde for minor units as a JSON string of digits: exact in every JSON reader, including
/// JavaScript's, whose numbers lose precision above 2^53. Reads strings and plain integers.
pub mod serde_minor {
    use super::MinorUnits;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &MinorUnits, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<MinorUnits, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text<'a> {
            Borrowed(&'a str),
            Owned(String),
            Unsigned(u64),
            Signed(i64),
        }
        match Text::deserialize(deserializer)? {
            Text::Borrowed(text) => text.parse().map_err(D::Error::custom),
            Text::Owned(text) => text.parse().map_err(D::Error::custom),
            Text::Unsigned(number) => Ok(MinorUnits::from(number)),
            Text::Signed(number) => Ok(MinorUnits::from(number)),
        }
    }
}

/// [`serde_minor`] for optional amounts.
pub mod serde_minor_opt {
    use super::MinorUnits;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<MinorUnits>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.collect_str(value),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<MinorUnits>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::serde_minor")] MinorUnits);
        Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_as_strings() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Holder {
            #[serde(with = "serde_minor")]
            a: MinorUnits,
            #[serde(with = "serde_minor_opt")]
            b: Option<MinorUnits>,
        }
        let holder = Holder { a: AMOUNT_MAX, b: Some(5) };
        let value = serde_json::to_value(&holder).unwrap();
        assert_eq!(value, serde_json::json!({"a": "79228162514264337593543950335", "b": "5"}));
        assert_eq!(serde_json::from_value::<Holder>(value).unwrap(), holder);
        let none: Holder = serde_json::from_str(r#"{"a": 7, "b": null}"#).unwrap();
        assert_eq!(none, Holder { a: 7, b: None });
    }

    #[test]
    fn parses_plain_decimals() {
        assert_eq!(parse_amount("12.34", 2), Ok(1234));
        assert_eq!(parse_amount("12.3", 2), Ok(1230));
        assert_eq!(parse_amount("12", 2), Ok(1200));
        assert_eq!(parse_amount("0.05", 2), Ok(5));
        assert_eq!(parse_amount("007", 0), Ok(7));
        assert_eq!(parse_amount("1.234", 3), Ok(1234));
        assert_eq!(parse_amount("0", 2), Ok(0));
    }

    #[test]
    fn rejects_each_bad_form_with_its_own_error() {
        let cases = [
            ("", AmountError::Empty),
            ("-1", AmountError::SignNotAllowed),
            ("+1", AmountError::SignNotAllowed),
            ("1e5", AmountError::ExponentNotAllowed),
            ("1E5", AmountError::ExponentNotAllowed),
            ("NaN", AmountError::NotANumber),
            ("inf", AmountError::NotANumber),
            ("-Infinity", AmountError::NotANumber),
            ("1,000", AmountError::Malformed),
            (" 1", AmountError::Malformed),
            ("1.", AmountError::Malformed),
            (".5", AmountError::Malformed),
            ("1.2.3", AmountError::Malformed),
            ("0x10", AmountError::Malformed),
            ("１", AmountError::Malformed),
            ("1.234", AmountError::TooManyDecimals { scale: 2 }),
            ("1.000", AmountError::TooManyDecimals { scale: 2 }),
            ("79228162514264337593543950336", AmountError::Overflow),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_amount(text, 2).map_err(|e| e.code()), Err(expected.code()), "{text:?}");
        }
        assert_eq!(parse_amount(&"9".repeat(65), 0), Err(AmountError::TooLong));
        assert_eq!(parse_amount("1.5", 0), Err(AmountError::TooManyDecimals { scale: 0 }));
        assert_eq!(parse_positive_amount("0.00", 2), Err(AmountError::Zero));
    }

    #[test]
    fn overflow_bound_is_exact() {
        assert_eq!(parse_amount("79228162514264337593543950335", 0), Ok(AMOUNT_MAX));
        assert_eq!(parse_amount("792281625142643375935439503.35", 2), Ok(AMOUNT_MAX));
        assert_eq!(parse_amount("792281625142643375935439503.36", 2), Err(AmountError::Overflow));
        assert_eq!(checked_total(AMOUNT_MAX, 0), Some(AMOUNT_MAX));
        assert_eq!(checked_total(AMOUNT_MAX, 1), None);
    }

    #[test]
    fn formats_with_the_currency_scale() {
        assert_eq!(format_amount(1234, 2), "12.34");
        assert_eq!(format_amount(5, 2), "0.05");
        assert_eq!(format_amount(-5, 3), "-0.005");
        assert_eq!(format_amount(7, 0), "7");
        assert_eq!(format_amount(AMOUNT_MAX, 18), "79228162514.264337593543950335");
        for scale in 0..=SCALE_MAX {
            for value in [0, 1, 99, 1_000_001, AMOUNT_MAX] {
                assert_eq!(parse_amount(&format_amount(value, scale), scale), Ok(value));
            }
        }
    }
}
