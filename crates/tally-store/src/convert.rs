//! Conversions between core types and PostgreSQL values.
//!
//! Amounts travel as NUMERIC through `rust_decimal`, whose 96-bit mantissa holds exactly the
//! range `0..=AMOUNT_MAX`; timestamps as `timestamptz` through `SystemTime`.

use rust_decimal::Decimal;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tally_core::{AMOUNT_MAX, MinorUnits, Timestamp};

/// Minor units as a NUMERIC value. Only amounts in `0..=AMOUNT_MAX` are ever written.
pub fn to_numeric(value: MinorUnits) -> Decimal {
    assert!((0..=AMOUNT_MAX).contains(&value), "amount {value} out of range");
    Decimal::from_i128_with_scale(value, 0)
}

/// A NUMERIC(39,0) column as minor units. The schema's domain keeps it in range.
pub fn from_numeric(value: Decimal) -> MinorUnits {
    assert_eq!(value.scale(), 0, "amount columns have no fraction");
    let minor = value.mantissa();
    assert!((0..=AMOUNT_MAX).contains(&minor), "amount {minor} out of range");
    minor
}

pub fn to_system_time(at: Timestamp) -> SystemTime {
    let micros = u64::try_from(at.0).expect("timestamps after 1970");
    UNIX_EPOCH + Duration::from_micros(micros)
}

pub fn from_system_time(at: SystemTime) -> Timestamp {
    let micros = at.duration_since(UNIX_EPOCH).expect("timestamps after 1970").as_micros();
    Timestamp(i64::try_from(micros).expect("timestamp in range"))
}

/// The current time, truncated to PostgreSQL's microsecond resolution.
pub fn now() -> Timestamp {
    from_system_time(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_round_trip() {
        for value in [0, 1, 1234, AMOUNT_MAX] {
            assert_eq!(from_numeric(to_numeric(value)), value);
        }
    }

    #[test]
    fn time_round_trip() {
        let at = Timestamp(1_700_000_000_123_456);
        assert_eq!(from_system_time(to_system_time(at)), at);
    }
}
