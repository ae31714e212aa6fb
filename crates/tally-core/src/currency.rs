//! Currencies and assets: a code and a scale (the number of decimal places of the minor unit).
//!
//! ISO 4217 fiat currencies come with their official exponents (CNY 2, JPY 0, KWD 3, ...).
//! User-defined assets (loyalty points, stablecoins, commodities) get a code that is not an
//! ISO code and any scale from 0 to [`SCALE_MAX`]. The store registers both kinds in one table;
//! this module is the single source of the ISO list.

use crate::amount::SCALE_MAX;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The longest currency or asset code.
pub const CURRENCY_CODE_LEN_MAX: usize = 16;

/// A currency code with its scale.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Currency {
    pub code: String,
    pub scale: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CurrencyError {
    #[error("currency code must be 3 to {CURRENCY_CODE_LEN_MAX} characters of A-Z, 0-9 or _, starting with a letter")]
    CodeInvalid,
    #[error("scale must be between 0 and {SCALE_MAX}")]
    ScaleInvalid,
    #[error("{0} is an ISO 4217 currency; its scale is fixed")]
    IsoCode(String),
}

impl CurrencyError {
    pub fn code(&self) -> &'static str {
        match self {
            CurrencyError::CodeInvalid => "currency_code_invalid",
            CurrencyError::ScaleInvalid => "currency_scale_invalid",
            CurrencyError::IsoCode(_) => "currency_is_iso",
        }
    }
}

/// ISO 4217 active currency codes and their minor-unit exponents.
pub const ISO_CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

impl Currency {
    /// The ISO 4217 currency with this code, if there is one.
    pub fn iso(code: &str) -> Option<Currency> {
        ISO_CURRENCIES
            .iter()
            .find(|(iso, _)| *iso == code)
            .map(|(iso, scale)| Currency { code: (*iso).to_owned(), scale: *scale })
    }

    /// A user-defined asset. Its code must not be an ISO code (whose scale is fixed).
    pub fn custom(code: &str, scale: u8) -> Result<Currency, CurrencyError> {
        validate_code(code)?;
        if scale > SCALE_MAX {
            return Err(CurrencyError::ScaleInvalid);
        }
        if Currency::iso(code).is_some() {
            return Err(CurrencyError::IsoCode(code.to_owned()));
        }
        Ok(Currency { code: code.to_owned(), scale })
    }
}

/// Checks the shape of a currency code (it need not exist).
pub fn validate_code(code: &str) -> Result<(), CurrencyError> {
    let shape_ok = (3..=CURRENCY_CODE_LEN_MAX).contains(&code.len())
        && code.starts_with(|c: char| c.is_ascii_uppercase())
        && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if shape_ok { Ok(()) } else { Err(CurrencyError::CodeInvalid) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_exponents() {
        assert_eq!(Currency::iso("CNY").map(|c| c.scale), Some(2));
        assert_eq!(Currency::iso("USD").map(|c| c.scale), Some(2));
        assert_eq!(Currency::iso("JPY").map(|c| c.scale), Some(0));
        assert_eq!(Currency::iso("KWD").map(|c| c.scale), Some(3));
        assert_eq!(Currency::iso("XYZ"), None);
        let mut codes: Vec<&str> = ISO_CURRENCIES.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ISO_CURRENCIES.len(), "duplicate ISO code");
        assert!(ISO_CURRENCIES.iter().all(|(c, s)| validate_code(c).is_ok() && *s <= 4));
    }

    #[test]
    fn custom_assets() {
        assert_eq!(Currency::custom("POINTS", 0).map(|c| c.scale), Ok(0));
        assert_eq!(Currency::custom("USDC", 6).map(|c| c.scale), Ok(6));
        assert_eq!(Currency::custom("ETH_WEI", 18).map(|c| c.scale), Ok(18));
        assert_eq!(Currency::custom("GOLD", 19), Err(CurrencyError::ScaleInvalid));
        assert_eq!(Currency::custom("USD", 4), Err(CurrencyError::IsoCode("USD".into())));
        for bad in ["", "us", "usd", "1AB", "A-B", "TOOLONGCODE_123456", "ÄBC", "AB'C"] {
            assert_eq!(Currency::custom(bad, 2), Err(CurrencyError::CodeInvalid), "{bad}");
        }
    }
}
