//! Helpers shared by the parsers: input checks, amounts, dates and text fields, each turning a
//! failure into a [`StatementError`] that names its location.

use tally_core::amount::SCALE_MAX;
use time::{Date, Month};

use crate::{FIELD_LEN_MAX, STATEMENT_BYTES_MAX, STATEMENT_ENTRIES_MAX, StatementError};

/// Refuses inputs over the size limit and scales that `tally_core` cannot represent, before any
/// parsing work is done.
pub(crate) fn check_input(bytes: &[u8], scale: u8) -> Result<(), StatementError> {
    check_scale(scale)?;
    check_size(bytes)
}

/// Refuses scales that `tally_core` cannot represent.
pub(crate) fn check_scale(scale: u8) -> Result<(), StatementError> {
    if scale > SCALE_MAX {
        return Err(StatementError::unsupported(
            "scale argument",
            format!("scale {scale} is above the largest supported scale {SCALE_MAX}"),
        ));
    }
    Ok(())
}

/// Refuses inputs over [`STATEMENT_BYTES_MAX`].
pub(crate) fn check_size(bytes: &[u8]) -> Result<(), StatementError> {
    if bytes.len() > STATEMENT_BYTES_MAX {
        return Err(StatementError::too_large(
            "input",
            format!("{} bytes, more than the limit of {STATEMENT_BYTES_MAX} bytes", bytes.len()),
        ));
    }
    Ok(())
}

/// Refuses one more entry once a statement holds [`STATEMENT_ENTRIES_MAX`].
pub(crate) fn check_entry_count(entries_len: usize, location: &str) -> Result<(), StatementError> {
    if entries_len >= STATEMENT_ENTRIES_MAX {
        return Err(StatementError::too_large(
            location,
            format!("more than {STATEMENT_ENTRIES_MAX} entries in one statement"),
        ));
    }
    Ok(())
}

/// The 1-based line number of a byte offset.
pub(crate) fn line_at(bytes: &[u8], offset: usize) -> usize {
    let end = offset.min(bytes.len());
    1 + bytes[..end].iter().filter(|b| **b == b'\n').count()
}

/// Line numbers of byte offsets that mostly move forward: counting continues from the last
/// offset asked for, so a whole file is counted once rather than once per record.
pub(crate) struct LineCounter<'b> {
    bytes: &'b [u8],
    offset: usize,
    line: usize,
}

impl<'b> LineCounter<'b> {
    pub(crate) fn new(bytes: &'b [u8]) -> Self {
        LineCounter { bytes, offset: 0, line: 1 }
    }

    pub(crate) fn line_at(&mut self, offset: usize) -> usize {
        let offset = offset.min(self.bytes.len());
        if offset < self.offset {
            return line_at(self.bytes, offset);
        }
        self.line += self.bytes[self.offset..offset].iter().filter(|b| **b == b'\n').count();
        self.offset = offset;
        self.line
    }
}

/// Parses an unsigned decimal amount into minor units, as `tally_core` does, with the location in
/// the error.
pub(crate) fn amount_minor(text: &str, scale: u8, location: &str) -> Result<i128, StatementError> {
    tally_core::parse_amount(text, scale).map_err(|error| StatementError::AmountInvalid {
        location: location.to_owned(),
        text: clip(text),
        reason: error.to_string(),
    })
}

/// Like [`amount_minor`], but zero is refused: an entry moves money.
pub(crate) fn amount_positive(text: &str, scale: u8, location: &str) -> Result<i128, StatementError> {
    let value = amount_minor(text, scale, location)?;
    if value == 0 {
        return Err(StatementError::AmountInvalid {
            location: location.to_owned(),
            text: clip(text),
            reason: "an entry amount must be greater than zero".to_owned(),
        });
    }
    Ok(value)
}

/// Text quoted in an error is cut short, so that a hostile field cannot make error messages huge.
pub(crate) fn clip(text: &str) -> String {
    const QUOTED_CHARS_MAX: usize = 64;
    if text.chars().count() <= QUOTED_CHARS_MAX {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(QUOTED_CHARS_MAX).collect();
    clipped.push('…');
    clipped
}

/// A calendar date, or `None` if the parts do not name one.
pub(crate) fn date_from_parts(year: i32, month: u8, day: u8) -> Option<Date> {
    let month = Month::try_from(month).ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

/// Parses `YYYY-MM-DD`, or the date part of an ISO date-time `YYYY-MM-DDThh:mm:ss…` (the bank's
/// local booking day, which is what the statement means by the date).
pub(crate) fn iso_date(text: &str, location: &str) -> Result<Date, StatementError> {
    let invalid = |reason: &str| StatementError::DateInvalid {
        location: location.to_owned(),
        text: clip(text),
        reason: reason.to_owned(),
    };
    let date_part = match text.get(..10) {
        Some(part) if text.len() == 10 || text.as_bytes().get(10) == Some(&b'T') => part,
        _ => return Err(invalid("expected YYYY-MM-DD")),
    };
    let bytes = date_part.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = bytes.get(range)?;
        part.iter().try_fold(0u32, |value, b| b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0')))
    };
    if bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return Err(invalid("expected YYYY-MM-DD"));
    }
    let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return Err(invalid("expected YYYY-MM-DD"));
    };
    let (Ok(year), Ok(month), Ok(day)) = (i32::try_from(year), u8::try_from(month), u8::try_from(day)) else {
        return Err(invalid("expected YYYY-MM-DD"));
    };
    date_from_parts(year, month, day).ok_or_else(|| invalid("no such calendar date"))
}

/// Parses the SWIFT `YYMMDD` date; years are 2000 + YY (statements from the last century are not
/// imported into a ledger built this century).
pub(crate) fn yymmdd_date(text: &str, location: &str) -> Result<Date, StatementError> {
    let invalid = |reason: &str| StatementError::DateInvalid {
        location: location.to_owned(),
        text: clip(text),
        reason: reason.to_owned(),
    };
    let bytes = text.as_bytes();
    if bytes.len() != 6 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(invalid("expected YYMMDD"));
    }
    let pair = |at: usize| (bytes[at] - b'0') * 10 + (bytes[at + 1] - b'0');
    date_from_parts(2000 + i32::from(pair(0)), pair(2), pair(4)).ok_or_else(|| invalid("no such calendar date"))
}

/// A trimmed text field: empty is `None`, longer than [`FIELD_LEN_MAX`] characters is an error.
pub(crate) fn field(text: &str, location: &str, what: &str) -> Result<Option<String>, StatementError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.chars().count() > FIELD_LEN_MAX {
        return Err(StatementError::too_large(location, format!("{what} is longer than {FIELD_LEN_MAX} characters")));
    }
    Ok(Some(trimmed.to_owned()))
}

/// A reference field: like [`field`], but the placeholders banks use for "no reference" are
/// `None`, so that they never match each other.
pub(crate) fn reference_field(text: &str, location: &str, what: &str) -> Result<Option<String>, StatementError> {
    let value = field(text, location, what)?;
    Ok(value.filter(|value| !is_placeholder_reference(value)))
}

fn is_placeholder_reference(value: &str) -> bool {
    ["NONREF", "NOTPROVIDED", "NOT PROVIDED"].iter().any(|placeholder| value.eq_ignore_ascii_case(placeholder))
}

pub(crate) fn format_date(date: Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn iso_dates_and_date_times() {
        assert_eq!(iso_date("2026-03-02", "x"), Ok(date!(2026 - 03 - 02)));
        assert_eq!(iso_date("2026-03-02T23:59:59+01:00", "x"), Ok(date!(2026 - 03 - 02)));
        for bad in ["2026-02-30", "2026-3-02", "20260302", "2026-03-02X", "", "2026-1a-02", "+026-03-02"] {
            let error = iso_date(bad, "Ntry[1]/BookgDt/Dt").unwrap_err();
            assert_eq!(error.code(), "statement_date_invalid", "{bad}");
            assert!(error.to_string().contains("Ntry[1]/BookgDt/Dt"));
        }
    }

    #[test]
    fn swift_dates() {
        assert_eq!(yymmdd_date("260302", "x"), Ok(date!(2026 - 03 - 02)));
        assert_eq!(yymmdd_date("240229", "x"), Ok(date!(2024 - 02 - 29)));
        for bad in ["261345", "250229", "26030", "2603021", "26O302", "２６0302"] {
            assert_eq!(yymmdd_date(bad, "line 3").unwrap_err().code(), "statement_date_invalid", "{bad}");
        }
    }

    #[test]
    fn amounts_keep_core_rules_and_refuse_zero_entries() {
        assert_eq!(amount_minor("12.5", 2, "x"), Ok(1250));
        assert_eq!(amount_minor("0.00", 2, "x"), Ok(0));
        assert_eq!(amount_positive("0.00", 2, "x").unwrap_err().code(), "statement_amount_invalid");
        assert_eq!(amount_minor("1.234", 2, "x").unwrap_err().code(), "statement_amount_invalid");
        assert_eq!(amount_minor("-1", 2, "x").unwrap_err().code(), "statement_amount_invalid");
    }

    #[test]
    fn fields_trim_limit_and_drop_placeholders() {
        assert_eq!(field("  a b ", "x", "name"), Ok(Some("a b".to_owned())));
        assert_eq!(field(" \t", "x", "name"), Ok(None));
        let long = "ä".repeat(FIELD_LEN_MAX + 1);
        assert_eq!(field(&long, "line 9", "name").unwrap_err().code(), "statement_too_large");
        assert!(field(&"ä".repeat(FIELD_LEN_MAX), "x", "name").is_ok());
        assert_eq!(reference_field("NOTPROVIDED", "x", "ref"), Ok(None));
        assert_eq!(reference_field("nonref", "x", "ref"), Ok(None));
        assert_eq!(reference_field("E2E-1", "x", "ref"), Ok(Some("E2E-1".to_owned())));
    }

    #[test]
    fn input_limits() {
        assert_eq!(check_input(b"", 19).unwrap_err().code(), "statement_unsupported");
        assert!(check_input(b"", 18).is_ok());
        assert_eq!(check_entry_count(STATEMENT_ENTRIES_MAX, "line 3").unwrap_err().code(), "statement_too_large");
        assert_eq!(clip(&"x".repeat(100)).chars().count(), 65);
        let mut counter = LineCounter::new(b"a\nb\nc\n");
        assert_eq!([counter.line_at(0), counter.line_at(2), counter.line_at(5), counter.line_at(1)], [1, 2, 3, 1]);
        assert_eq!(counter.line_at(99), 4);
    }
}
