//! CSV bank exports: one entry per row after a header row, columns named by a [`CsvLayout`].
//!
//! A CSV file says nothing about its account, statement or balances, so the caller supplies them
//! in [`CsvStatementInfo`]; when both balances are given, the rows must add up between them.

use time::Date;
use time::format_description::BorrowedFormatItem;

use crate::text::{LineCounter, check_entry_count, check_input, clip, field, reference_field};
use crate::{BalancePoint, Entry, Format, Statement, StatementError, check_arithmetic_at};

/// Which columns of a CSV export hold what, and how its numbers and dates are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvLayout {
    /// Header of the booking date column (required).
    pub date: String,
    /// Header of the amount column (required).
    pub amount: String,
    pub reference: Option<String>,
    pub counterparty: Option<String>,
    pub description: Option<String>,
    pub value_date: Option<String>,
    /// Header of a column with `C`/`D` (also `CR`/`DR`, `CRDT`/`DBIT`, `CREDIT`/`DEBIT`); the
    /// amounts are then unsigned. If `None`, the amount carries its sign (`-12.50` is a debit).
    pub credit_debit: Option<String>,
    pub delimiter: u8,
    /// A `time` format description (version 2 syntax), e.g. `[day].[month].[year]`.
    pub date_format: String,
    /// `1234,56` instead of `1234.56`. Thousands separators are refused either way.
    pub decimal_comma: bool,
}

impl Default for CsvLayout {
    fn default() -> Self {
        CsvLayout {
            date: "date".to_owned(),
            amount: "amount".to_owned(),
            reference: Some("reference".to_owned()),
            counterparty: Some("counterparty".to_owned()),
            description: Some("description".to_owned()),
            value_date: None,
            credit_debit: None,
            delimiter: b',',
            date_format: "[year]-[month]-[day]".to_owned(),
            decimal_comma: false,
        }
    }
}

/// What a CSV export does not say about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvStatementInfo {
    pub statement_id: String,
    pub account: String,
    pub currency: Option<String>,
    pub opening: Option<BalancePoint>,
    pub closing: Option<BalancePoint>,
}

/// Column indexes of a layout in one file's header.
struct Columns {
    date: usize,
    amount: usize,
    reference: Option<usize>,
    counterparty: Option<usize>,
    description: Option<usize>,
    value_date: Option<usize>,
    credit_debit: Option<usize>,
}

/// Parses a CSV export with amounts at `scale` decimals.
pub fn parse_csv(
    bytes: &[u8],
    scale: u8,
    layout: &CsvLayout,
    info: &CsvStatementInfo,
) -> Result<Statement, StatementError> {
    check_input(bytes, scale)?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if !layout.delimiter.is_ascii() || matches!(layout.delimiter, b'"' | b'\n' | b'\r') {
        return Err(StatementError::unsupported(
            "CsvLayout.delimiter",
            format!("{:?} cannot separate CSV fields", char::from(layout.delimiter)),
        ));
    }
    let date_items = time::format_description::parse_borrowed::<2>(&layout.date_format).map_err(|error| {
        StatementError::unsupported(
            "CsvLayout.date_format",
            format!("{:?} is not a date format: {error}", layout.date_format),
        )
    })?;
    let statement_id = caller_text(&info.statement_id, "CsvStatementInfo.statement_id")?;
    let account = caller_text(&info.account, "CsvStatementInfo.account")?;

    let mut reader =
        csv::ReaderBuilder::new().delimiter(layout.delimiter).has_headers(false).flexible(true).from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let read = |reader: &mut csv::Reader<&[u8]>, record: &mut csv::ByteRecord| {
        reader.read_byte_record(record).map_err(|error| {
            let line = error.position().map_or(0, |position| position.line());
            StatementError::malformed(format!("line {line}"), format!("CSV cannot be read: {error}"))
        })
    };
    if !read(&mut reader, &mut record)? {
        return Err(StatementError::malformed("line 1", "the file has no header row"));
    }
    let mut lines = LineCounter::new(bytes);
    let header_line = record_line(&mut lines, bytes, &record);
    let mut headers = Vec::new();
    for header in record.iter() {
        let header = std::str::from_utf8(header)
            .map_err(|_| StatementError::malformed(format!("line {header_line}"), "the header is not valid UTF-8"))?;
        headers.push(header.trim().to_owned());
    }
    let columns = columns(layout, &headers, header_line)?;

    let mut entries = Vec::new();
    while read(&mut reader, &mut record)? {
        if record.iter().all(|value| value.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        let location = format!("line {}", record_line(&mut lines, bytes, &record));
        check_entry_count(entries.len(), &location)?;
        let text = |column: usize| cell(&record, column, &location, &headers);
        let optional = |column: Option<usize>| column.map(text).transpose().map(Option::unwrap_or_default);
        let booking_date = csv_date(text(columns.date)?, &date_items, &location, &layout.date)?;
        let value_date = match columns.value_date {
            Some(column) => match text(column)?.trim() {
                "" => None,
                value => Some(csv_date(value, &date_items, &location, layout.value_date.as_deref().unwrap_or(""))?),
            },
            None => None,
        };
        let direction = match columns.credit_debit {
            Some(column) => Some(credit_debit(text(column)?, &location)?),
            None => None,
        };
        let amount = csv_amount(text(columns.amount)?, direction, layout.decimal_comma, scale, &location)?;
        entries.push(Entry {
            booking_date,
            value_date,
            amount,
            reversal: false,
            reference: reference_field(optional(columns.reference)?, &location, "reference")?,
            bank_reference: None,
            end_to_end_id: None,
            counterparty: field(optional(columns.counterparty)?, &location, "counterparty")?,
            counterparty_iban: None,
            description: field(optional(columns.description)?, &location, "description")?,
            bank_code: None,
            original_amount: None,
            charges: None,
            details: Vec::new(),
            location,
        });
    }
    let statement = Statement {
        format: Format::Csv,
        statement_id,
        account,
        currency: info.currency.clone(),
        sequence: None,
        opening: info.opening,
        closing: info.closing,
        entries,
        pages: 1,
        notes: Vec::new(),
    };
    check_arithmetic_at(&statement, "closing balance (CsvStatementInfo.closing)")?;
    Ok(statement)
}

fn caller_text(value: &str, location: &str) -> Result<String, StatementError> {
    field(value, location, location)?.ok_or_else(|| StatementError::malformed(location, "must not be empty"))
}

/// The line where a record starts. The csv reader skips blank lines without counting them, so
/// its own line numbers drift; the record's byte offset does not.
fn record_line(lines: &mut LineCounter<'_>, bytes: &[u8], record: &csv::ByteRecord) -> usize {
    let offset = record.position().map_or(0, |position| usize::try_from(position.byte()).unwrap_or(usize::MAX));
    let start = offset.min(bytes.len());
    let skipped = bytes[start..].iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
    lines.line_at(start + skipped)
}

fn columns(layout: &CsvLayout, headers: &[String], header_line: usize) -> Result<Columns, StatementError> {
    let find = |name: &str| -> Result<usize, StatementError> {
        headers.iter().position(|header| header.eq_ignore_ascii_case(name.trim())).ok_or_else(|| {
            StatementError::malformed(
                format!("line {header_line}"),
                format!("column {:?} is not in the header", clip(name)),
            )
        })
    };
    let find_optional = |name: &Option<String>| name.as_deref().map(find).transpose();
    Ok(Columns {
        date: find(&layout.date)?,
        amount: find(&layout.amount)?,
        reference: find_optional(&layout.reference)?,
        counterparty: find_optional(&layout.counterparty)?,
        description: find_optional(&layout.description)?,
        value_date: find_optional(&layout.value_date)?,
        credit_debit: find_optional(&layout.credit_debit)?,
    })
}

/// A cell as text; a short row has empty cells at its end.
fn cell<'r>(
    record: &'r csv::ByteRecord,
    column: usize,
    location: &str,
    headers: &[String],
) -> Result<&'r str, StatementError> {
    let bytes = record.get(column).unwrap_or_default();
    std::str::from_utf8(bytes).map_err(|_| {
        let header = headers.get(column).map_or("?", String::as_str);
        StatementError::malformed(location, format!("column {:?} is not valid UTF-8", clip(header)))
    })
}

fn csv_date(
    text: &str,
    items: &[BorrowedFormatItem<'_>],
    location: &str,
    column: &str,
) -> Result<Date, StatementError> {
    let text = text.trim();
    Date::parse(text, items).map_err(|error| StatementError::DateInvalid {
        location: location.to_owned(),
        text: clip(text),
        reason: format!("column {:?}: {error}", clip(column)),
    })
}

fn credit_debit(text: &str, location: &str) -> Result<i128, StatementError> {
    match text.trim().to_ascii_uppercase().as_str() {
        "C" | "CR" | "CRDT" | "CREDIT" => Ok(1),
        "D" | "DR" | "DBIT" | "DEBIT" => Ok(-1),
        _ => Err(StatementError::malformed(
            location,
            format!("unknown credit/debit indicator {:?}: expected C or D", clip(text.trim())),
        )),
    }
}

/// A CSV amount: signed (`-12.50`) unless a credit/debit column gives the direction.
fn csv_amount(
    text: &str,
    direction: Option<i128>,
    decimal_comma: bool,
    scale: u8,
    location: &str,
) -> Result<i128, StatementError> {
    let trimmed = text.trim();
    let invalid =
        |reason: String| StatementError::AmountInvalid { location: location.to_owned(), text: clip(trimmed), reason };
    let (sign, digits) = match (direction, trimmed.strip_prefix('-'), trimmed.strip_prefix('+')) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(invalid("the amount carries a sign although the credit/debit column gives it".to_owned()));
        }
        (Some(sign), None, None) => (sign, trimmed),
        (None, Some(rest), _) => (-1, rest),
        (None, None, Some(rest)) => (1, rest),
        (None, None, None) => (1, trimmed),
    };
    let (decimal, other) = if decimal_comma { (',', '.') } else { ('.', ',') };
    if digits.contains(other) {
        return Err(invalid(format!(
            "{other:?} in the amount: the decimal separator is {decimal:?} and thousands separators are not supported"
        )));
    }
    let normalized = digits.replace(decimal, ".");
    let magnitude = tally_core::parse_amount(&normalized, scale).map_err(|error| invalid(error.to_string()))?;
    if magnitude == 0 {
        return Err(invalid("an entry amount must not be zero".to_owned()));
    }
    Ok(sign * magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn info() -> CsvStatementInfo {
        CsvStatementInfo {
            statement_id: "2026-03".to_owned(),
            account: "DE89370400440532013000".to_owned(),
            currency: Some("EUR".to_owned()),
            opening: None,
            closing: None,
        }
    }

    #[test]
    fn default_layout_with_signed_amounts() {
        let csv = "date,amount,reference,counterparty,description\n\
                   2026-03-02,12.5,R1,Anna,\"Lunch, team\"\n\
                   \n\
                   2026-03-03,-7,,,\n";
        let statement = parse_csv(csv.as_bytes(), 2, &CsvLayout::default(), &info()).unwrap();
        assert_eq!(statement.entries.len(), 2);
        assert_eq!(statement.entries[0].amount, 1250);
        assert_eq!(statement.entries[0].description.as_deref(), Some("Lunch, team"));
        assert_eq!(statement.entries[1].amount, -700);
        assert_eq!(statement.entries[1].location, "line 4");
        assert_eq!(statement.entries[1].reference, None);
    }

    #[test]
    fn european_layout_with_indicator_column() {
        let layout = CsvLayout {
            date: "Buchungstag".to_owned(),
            value_date: Some("Valuta".to_owned()),
            amount: "Betrag".to_owned(),
            credit_debit: Some("S/H".to_owned()),
            reference: None,
            counterparty: Some("Name".to_owned()),
            description: Some("Verwendungszweck".to_owned()),
            delimiter: b';',
            date_format: "[day].[month].[year]".to_owned(),
            decimal_comma: true,
        };
        let csv = "Buchungstag;Valuta;Name;Verwendungszweck;Betrag;S/H\n\
                   02.03.2026;03.03.2026;Müller GmbH;Rechnung 7;1234,56;C\n\
                   04.03.2026;;Stadtwerke;Strom;80,1;D\n";
        let mut info = info();
        info.opening = Some(BalancePoint { date: date!(2026 - 03 - 01), amount: 0 });
        info.closing = Some(BalancePoint { date: date!(2026 - 03 - 04), amount: 123456 - 8010 });
        let statement = parse_csv(csv.as_bytes(), 2, &layout, &info).unwrap();
        assert_eq!(statement.entries[0].amount, 123456);
        assert_eq!(statement.entries[0].value_date, Some(date!(2026 - 03 - 03)));
        assert_eq!(statement.entries[0].counterparty.as_deref(), Some("Müller GmbH"));
        assert_eq!(statement.entries[1].amount, -8010);
        assert_eq!(statement.entries[1].value_date, None);

        info.closing = Some(BalancePoint { date: date!(2026 - 03 - 04), amount: 1 });
        assert_eq!(parse_csv(csv.as_bytes(), 2, &layout, &info).unwrap_err().code(), "statement_balance_mismatch");

        let signed = csv.replace("1234,56;C", "-1234,56;C");
        let error = parse_csv(signed.as_bytes(), 2, &layout, &self::info()).unwrap_err();
        assert_eq!(error.code(), "statement_amount_invalid");
        assert!(error.to_string().starts_with("line 2: "), "{error}");

        let unknown = csv.replace(";D\n", ";X\n");
        let error = parse_csv(unknown.as_bytes(), 2, &layout, &self::info()).unwrap_err();
        assert_eq!(error.to_string().split(':').next(), Some("line 3"));
        assert_eq!(error.code(), "statement_malformed");
    }

    #[test]
    fn bad_rows_name_their_line() {
        let head = "date,amount,reference,counterparty,description\n2026-03-02,1.00,,,\n";
        let cases = [
            ("2026-03-02,12.x,,,", "statement_amount_invalid"),
            ("2026-03-02,\"1,000.00\",,,", "statement_amount_invalid"),
            ("2026-03-02,0.00,,,", "statement_amount_invalid"),
            ("2026-03-02,1.001,,,", "statement_amount_invalid"),
            ("2026-13-02,1.00,,,", "statement_date_invalid"),
            ("02.03.2026,1.00,,,", "statement_date_invalid"),
            (",1.00,,,", "statement_date_invalid"),
        ];
        for (row, code) in cases {
            let csv = format!("{head}{row}\n");
            let error = parse_csv(csv.as_bytes(), 2, &CsvLayout::default(), &info()).unwrap_err();
            assert_eq!(error.code(), code, "{row}: {error}");
            assert!(error.to_string().starts_with("line 3: "), "{row}: {error}");
        }
        let mut latin1 = head.as_bytes().to_vec();
        latin1.extend_from_slice(b"2026-03-02,1.00,,M\xfcller,\n");
        let error = parse_csv(&latin1, 2, &CsvLayout::default(), &info()).unwrap_err();
        assert_eq!(error.to_string(), "line 3: malformed statement: column \"counterparty\" is not valid UTF-8");
    }

    #[test]
    fn layout_problems() {
        let error = parse_csv(b"date,amount\n", 2, &CsvLayout::default(), &info()).unwrap_err();
        assert!(error.to_string().contains("\"reference\" is not in the header"), "{error}");
        assert_eq!(parse_csv(b"", 2, &CsvLayout::default(), &info()).unwrap_err().code(), "statement_malformed");
        let layout = CsvLayout { date_format: "[nonsense".to_owned(), ..CsvLayout::default() };
        assert_eq!(parse_csv(b"date\n", 2, &layout, &info()).unwrap_err().code(), "statement_unsupported");
        let layout = CsvLayout { delimiter: b'"', ..CsvLayout::default() };
        assert_eq!(parse_csv(b"date\n", 2, &layout, &info()).unwrap_err().code(), "statement_unsupported");
        let info = CsvStatementInfo { account: " ".to_owned(), ..info() };
        assert_eq!(parse_csv(b"date\n", 2, &CsvLayout::default(), &info).unwrap_err().code(), "statement_malformed");
    }
}
