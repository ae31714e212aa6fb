//! MT940 (SWIFT customer statement) parsing.
//!
//! A file holds one message, bare or wrapped in SWIFT blocks (`{1:…}{2:…}{3:…}{4:` … `-}`,
//! optionally followed by trailer blocks such as `{5:…}`). The message is split into fields at
//! lines that start with a tag (`:61:`); other lines continue the field before them. Fields must
//! come in the standard order: `:20:`, optional `:21:`, `:25:`, optional `:28C:`, `:60F:`/`:60M:`,
//! any number of `:61:` each optionally followed by one `:86:`, `:62F:`/`:62M:`, then optional
//! `:64:`, `:65:` and a statement-level `:86:`. Non-SWIFT `:NS:` fields are skipped wherever they
//! appear.

use time::Date;

use crate::text::{
    amount_minor, amount_positive, check_entry_count, check_input, clip, date_from_parts, field, line_at,
    reference_field, utf8_text, yymmdd_date,
};
use crate::{BalancePoint, Entry, Format, Statement, StatementError, check_arithmetic_at};

/// How far (in days) an entry's booking date may lie from its value date. The booking date has
/// no year of its own; a distance beyond this means the month and day do not belong to the value
/// date's year or a neighbouring one.
const BOOKING_VALUE_DAYS_MAX: i64 = 200;

/// Parses an MT940 statement with amounts at `scale` decimals.
pub fn parse_mt940(bytes: &[u8], scale: u8) -> Result<Statement, StatementError> {
    check_input(bytes, scale)?;
    let text = utf8_text(bytes)?;
    let body = message_body(text)?;
    let fields = split_fields(&body.lines)?;
    build(&fields, scale, body.end_line)
}

#[derive(Debug, Clone, Copy)]
struct Line<'t> {
    number: usize,
    text: &'t str,
}

struct Body<'t> {
    lines: Vec<Line<'t>>,
    /// The line where the message ends, for errors about what is missing.
    end_line: usize,
}

/// Finds block 4 of a wrapped message, or the bare message, and checks that nothing but trailer
/// blocks follows it.
fn message_body(text: &str) -> Result<Body<'_>, StatementError> {
    let content_start = text.len() - text.trim_start().len();
    if content_start == text.len() {
        return Err(StatementError::malformed("line 1", "the file is empty"));
    }
    let wrapped = text[content_start..].starts_with('{');
    let body_start = if wrapped { block4_start(text, content_start)? } else { content_start };
    let first_line = line_at(text.as_bytes(), body_start);
    let mut lines = Vec::new();
    let mut offset = body_start;
    let mut end: Option<(usize, usize)> = None;
    for (index, raw) in text[body_start..].split('\n').enumerate() {
        let line = Line { number: first_line + index, text: raw.strip_suffix('\r').unwrap_or(raw) };
        let trimmed = line.text.trim();
        let line_end = offset + raw.len();
        if wrapped && trimmed.starts_with("-}") {
            let after_marker = offset + (raw.len() - raw.trim_start().len()) + 2;
            end = Some((line.number, after_marker));
            break;
        }
        if !wrapped && trimmed == "-" {
            end = Some((line.number, line_end));
            break;
        }
        lines.push(line);
        offset = line_end + 1;
    }
    let end_line = match end {
        Some((end_line, after)) => {
            check_after_message(text, after.min(text.len()))?;
            end_line
        }
        None if wrapped => {
            let last = lines.last().map_or(first_line, |line| line.number);
            return Err(StatementError::malformed(
                format!("line {last}"),
                "block 4 is not closed by \"-}\" (truncated?)",
            ));
        }
        None => lines.last().map_or(first_line, |line| line.number),
    };
    Ok(Body { lines, end_line })
}

/// The byte offset right after `{4:`, skipping the header blocks before it.
fn block4_start(text: &str, start: usize) -> Result<usize, StatementError> {
    let bytes = text.as_bytes();
    let mut at = start;
    loop {
        let location = || format!("line {}", line_at(bytes, at));
        if bytes.get(at) != Some(&b'{') {
            return Err(StatementError::malformed(location(), "expected a SWIFT block \"{n:\" before block 4"));
        }
        if bytes.get(at + 1..at + 3) == Some(b"4:".as_slice()) {
            return Ok(at + 3);
        }
        at = block_end(bytes, at).ok_or_else(|| StatementError::malformed(location(), "unterminated SWIFT block"))?;
        while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
    }
}

/// The offset after the `}` that closes the block opening at `start` (blocks nest: `{3:{108:x}}`).
fn block_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (index, byte) in bytes.iter().enumerate().skip(start) {
        match byte {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(index + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// After the message only trailer blocks (`{5:…}`, `{S:…}`) and whitespace may follow; a second
/// message is refused rather than silently dropped.
fn check_after_message(text: &str, mut at: usize) -> Result<(), StatementError> {
    let bytes = text.as_bytes();
    loop {
        while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        let Some(rest) = text.get(at..) else {
            return Ok(());
        };
        let location = format!("line {}", line_at(bytes, at));
        if rest.is_empty() {
            return Ok(());
        }
        let several = || {
            StatementError::unsupported(
                location.clone(),
                "several messages in one file: split the file into one statement per file",
            )
        };
        if rest.starts_with("{1:") || rest.starts_with(":20:") {
            return Err(several());
        }
        if !rest.starts_with('{') {
            if rest.contains("\n:20:") {
                return Err(several());
            }
            return Err(StatementError::malformed(location, "unexpected text after the end of the message"));
        }
        at = block_end(bytes, at).ok_or_else(|| StatementError::malformed(location, "unterminated SWIFT block"))?;
    }
}

#[derive(Debug)]
struct Field<'t> {
    tag: &'t str,
    line: usize,
    /// The text after the tag on the tag's own line.
    first: &'t str,
    /// The continuation lines, blank ones dropped.
    more: Vec<&'t str>,
}

impl Field<'_> {
    fn location(&self) -> String {
        format!("line {}", self.line)
    }
}

/// A tag at the start of a line: `:20:`, `:28C:`, `:NS:`. Returns the tag and the rest.
fn tag_of(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix(':')?;
    let (tag, value) = rest.split_once(':')?;
    let bytes = tag.as_bytes();
    let numbered = (2..=3).contains(&bytes.len())
        && bytes[..2].iter().all(u8::is_ascii_digit)
        && bytes.get(2).is_none_or(u8::is_ascii_uppercase);
    (numbered || tag == "NS").then_some((tag, value))
}

fn split_fields<'t>(lines: &[Line<'t>]) -> Result<Vec<Field<'t>>, StatementError> {
    let mut fields: Vec<Field<'t>> = Vec::new();
    for line in lines {
        if let Some((tag, value)) = tag_of(line.text) {
            fields.push(Field { tag, line: line.number, first: value, more: Vec::new() });
            continue;
        }
        if line.text.trim().is_empty() {
            continue;
        }
        match fields.last_mut() {
            Some(field) => field.more.push(line.text),
            None => {
                return Err(StatementError::malformed(
                    format!("line {}", line.number),
                    "text before the first tag: an MT940 message starts with :20:",
                ));
            }
        }
    }
    // Non-SWIFT fields carry bank-specific extras; nothing of the statement depends on them.
    fields.retain(|field| field.tag != "NS");
    Ok(fields)
}

struct Cursor<'f, 't> {
    fields: &'f [Field<'t>],
    next: usize,
    end_line: usize,
}

impl<'f, 't> Cursor<'f, 't> {
    fn peek_tag(&self) -> Option<&'t str> {
        self.fields.get(self.next).map(|field| field.tag)
    }

    /// The next field if its tag is one of `tags`.
    fn take_if(&mut self, tags: &[&str]) -> Option<&'f Field<'t>> {
        let field = self.fields.get(self.next).filter(|field| tags.contains(&field.tag))?;
        self.next += 1;
        Some(field)
    }

    /// The next field, which must have one of `tags`.
    fn expect(&mut self, tags: &[&str]) -> Result<&'f Field<'t>, StatementError> {
        let wanted = tags.iter().map(|tag| format!(":{tag}:")).collect::<Vec<_>>().join(" or ");
        match self.fields.get(self.next) {
            Some(field) if tags.contains(&field.tag) => {
                self.next += 1;
                Ok(field)
            }
            Some(field) => Err(StatementError::malformed(
                field.location(),
                format!("missing {wanted}: found :{}: in its place", field.tag),
            )),
            None => Err(StatementError::malformed(
                format!("line {}", self.end_line),
                format!("missing {wanted}: the message ends here"),
            )),
        }
    }
}

fn build(fields: &[Field<'_>], scale: u8, end_line: usize) -> Result<Statement, StatementError> {
    let mut cursor = Cursor { fields, next: 0, end_line };
    let reference = cursor.expect(&["20"])?;
    let statement_id = required_text(reference, ":20: transaction reference")?;
    cursor.take_if(&["21"]);
    let account_field = cursor.expect(&["25"])?;
    let account = required_text(account_field, ":25: account")?;
    let sequence = match cursor.take_if(&["28C", "28"]) {
        Some(field) => required_text(field, ":28C: statement number").map(Some)?,
        None => None,
    };
    let opening_field = cursor.expect(&["60F", "60M"])?;
    let (opening, currency) = balance(opening_field, scale)?;

    let mut entries = Vec::new();
    loop {
        match cursor.peek_tag() {
            Some("61") => {
                let line = cursor.expect(&["61"])?;
                check_entry_count(entries.len(), &line.location())?;
                let narrative = cursor.take_if(&["86"]);
                entries.push(entry(line, narrative, scale, &currency)?);
            }
            // Tags that follow the closing balance end the entries too; a missing closing
            // balance is then reported as such.
            Some("62F" | "62M" | "64" | "65") | None => break,
            Some(tag) => {
                let field = &fields[cursor.next];
                let reason = if tag == "86" {
                    "an :86: must follow the :61: it describes".to_owned()
                } else {
                    format!("unexpected :{tag}: between the opening balance and the closing balance")
                };
                return Err(StatementError::malformed(field.location(), reason));
            }
        }
    }
    let closing_field = cursor.expect(&["62F", "62M"])?;
    let (closing, closing_currency) = balance(closing_field, scale)?;
    check_currency(&currency, &closing_currency, closing_field)?;
    if let Some(available) = cursor.take_if(&["64"]) {
        let (_, available_currency) = balance(available, scale)?;
        check_currency(&currency, &available_currency, available)?;
    }
    while let Some(forward) = cursor.take_if(&["65"]) {
        let (_, forward_currency) = balance(forward, scale)?;
        check_currency(&currency, &forward_currency, forward)?;
    }
    cursor.take_if(&["86"]);
    if let Some(extra) = fields.get(cursor.next) {
        return Err(StatementError::malformed(
            extra.location(),
            format!("unexpected :{}: after the closing balance", extra.tag),
        ));
    }

    let statement = Statement {
        format: Format::Mt940,
        statement_id,
        account,
        currency: Some(currency),
        sequence,
        opening: Some(opening),
        closing: Some(closing),
        entries,
    };
    check_arithmetic_at(&statement, &closing_field.location())?;
    Ok(statement)
}

fn required_text(field: &Field<'_>, what: &str) -> Result<String, StatementError> {
    crate::text::field(field.first, &field.location(), what)?
        .ok_or_else(|| StatementError::malformed(field.location(), format!("{what} is empty")))
}

fn check_currency(expected: &str, found: &str, field: &Field<'_>) -> Result<(), StatementError> {
    if expected == found {
        return Ok(());
    }
    Err(StatementError::CurrencyMismatch {
        location: field.location(),
        expected: expected.to_owned(),
        found: found.to_owned(),
    })
}

/// A balance field: `C|D YYMMDD CCY amount`, e.g. `C260302EUR12500,00`.
fn balance(field: &Field<'_>, scale: u8) -> Result<(BalancePoint, String), StatementError> {
    let location = field.location();
    let value = field.first.trim();
    let sign = match value.as_bytes().first() {
        Some(b'C') => 1,
        Some(b'D') => -1,
        _ => {
            return Err(StatementError::malformed(
                location,
                format!(":{}: must start with C or D, found {:?}", field.tag, clip(value)),
            ));
        }
    };
    let date = yymmdd_date(value.get(1..7).unwrap_or(value), &location)?;
    let currency = value.get(7..10).filter(|code| code.bytes().all(|b| b.is_ascii_uppercase()));
    let Some(currency) = currency else {
        return Err(StatementError::malformed(
            location,
            format!(":{}: has no three-letter currency after the date", field.tag),
        ));
    };
    let magnitude = swift_amount(value.get(10..).unwrap_or(""), scale, &location, false)?;
    Ok((BalancePoint { date, amount: sign * magnitude }, currency.to_owned()))
}

/// A SWIFT amount: digits with one decimal comma (`1234,56`, `100,`).
fn swift_amount(text: &str, scale: u8, location: &str, positive: bool) -> Result<i128, StatementError> {
    let invalid = |reason: &str| StatementError::AmountInvalid {
        location: location.to_owned(),
        text: clip(text),
        reason: reason.to_owned(),
    };
    if text.is_empty() {
        return Err(invalid("the amount is missing"));
    }
    if !text.bytes().all(|b| b.is_ascii_digit() || b == b',') {
        return Err(invalid("expected digits with a decimal comma"));
    }
    if text.bytes().filter(|b| *b == b',').count() > 1 {
        return Err(invalid("more than one decimal comma"));
    }
    let decimal = text.strip_suffix(',').unwrap_or(text).replace(',', ".");
    if positive { amount_positive(&decimal, scale, location) } else { amount_minor(&decimal, scale, location) }
}

/// One `:61:` statement line with its `:86:`, if any.
///
/// `YYMMDD[MMDD](C|D|RC|RD)[funds code]amount(N|F|S)xxx customer-ref[//bank-ref]` and an optional
/// second line of supplementary details.
fn entry(line: &Field<'_>, narrative: Option<&Field<'_>>, scale: u8, currency: &str) -> Result<Entry, StatementError> {
    let location = line.location();
    let value = line.first.trim_end();
    let bytes = value.as_bytes();
    let value_date = yymmdd_date(value.get(..6).unwrap_or(value), &location)?;
    let mut at = 6;
    let booking_date = match value.get(at..at + 4) {
        Some(entry_date) if entry_date.bytes().all(|b| b.is_ascii_digit()) => {
            at += 4;
            booking_date(value_date, entry_date, &location)?
        }
        _ => value_date,
    };
    let rest = value.get(at..).unwrap_or("");
    let (sign, reversal, mark_len) = if rest.starts_with("RC") {
        // The reversal of a credit takes money out.
        (-1, true, 2)
    } else if rest.starts_with("RD") {
        (1, true, 2)
    } else if rest.starts_with('C') {
        (1, false, 1)
    } else if rest.starts_with('D') {
        (-1, false, 1)
    } else {
        return Err(StatementError::malformed(
            location,
            format!("expected C, D, RC or RD after the dates, found {:?}", clip(rest)),
        ));
    };
    at += mark_len;
    if let Some(funds_code) = bytes.get(at).filter(|b| b.is_ascii_alphabetic()) {
        // The funds code is the third letter of the currency code.
        if currency.as_bytes().get(2) != Some(funds_code) {
            return Err(StatementError::CurrencyMismatch {
                location,
                expected: currency.to_owned(),
                found: format!("funds code {}", char::from(*funds_code)),
            });
        }
        at += 1;
    }
    let amount_len = bytes.get(at..).unwrap_or(&[]).iter().take_while(|b| b.is_ascii_digit() || **b == b',').count();
    let magnitude = swift_amount(value.get(at..at + amount_len).unwrap_or(""), scale, &location, true)?;
    at += amount_len;
    let transaction_type = value
        .get(at..at + 4)
        .filter(|code| matches!(code.as_bytes().first(), Some(b'N' | b'F' | b'S')))
        .filter(|code| code.bytes().all(|b| b.is_ascii_alphanumeric()));
    let Some(transaction_type) = transaction_type else {
        return Err(StatementError::malformed(
            location,
            format!(
                "expected the transaction type (N, F or S and three characters) after the amount, found {:?}",
                clip(value.get(at..).unwrap_or(""))
            ),
        ));
    };
    at += 4;
    let references = value.get(at..).unwrap_or("");
    let (customer_reference, bank_reference) = match references.split_once("//") {
        Some((customer, bank)) => (customer, Some(bank)),
        None => (references, None),
    };
    let supplementary = match line.more.first() {
        Some(text) => field(text, &location, ":61: supplementary details")?,
        None => None,
    };
    let details = match narrative {
        Some(narrative) => parse_narrative(narrative)?,
        None => Narrative::default(),
    };
    let reference = reference_field(customer_reference, &location, ":61: customer reference")?.or(details.end_to_end);
    let bank_reference = match bank_reference {
        Some(bank) => reference_field(bank, &location, ":61: bank reference")?,
        None => None,
    };
    Ok(Entry {
        location,
        booking_date,
        value_date: Some(value_date),
        amount: sign * magnitude,
        reversal,
        reference,
        bank_reference,
        counterparty: details.counterparty,
        description: details.description.or(supplementary),
        bank_code: Some(transaction_type.to_owned()),
        details: Vec::new(),
    })
}

/// The booking (entry) date `MMDD` takes its year from the value date, or the year before or after
/// when the two straddle a new year (value 31 Dec, booked 2 Jan).
fn booking_date(value_date: Date, month_day: &str, location: &str) -> Result<Date, StatementError> {
    let invalid = |reason: &str| StatementError::DateInvalid {
        location: location.to_owned(),
        text: month_day.to_owned(),
        reason: reason.to_owned(),
    };
    let digits = month_day.as_bytes();
    if digits.len() != 4 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid("expected the booking date as MMDD"));
    }
    let month = (digits[0] - b'0') * 10 + (digits[1] - b'0');
    let day = (digits[2] - b'0') * 10 + (digits[3] - b'0');
    let year = value_date.year();
    let closest = [year - 1, year, year + 1]
        .into_iter()
        .filter_map(|candidate| date_from_parts(candidate, month, day))
        .min_by_key(|candidate| (*candidate - value_date).whole_days().abs());
    let Some(closest) = closest else {
        return Err(invalid("the booking date MMDD is no calendar date"));
    };
    if (closest - value_date).whole_days().abs() > BOOKING_VALUE_DAYS_MAX {
        return Err(invalid("the booking date is implausibly far from the value date"));
    }
    Ok(closest)
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Narrative {
    description: Option<String>,
    counterparty: Option<String>,
    end_to_end: Option<String>,
}

/// Reads `:86:`: German structured text (`166?00…?20…?32…`), SWIFT-style codes (`/EREF/…/NAME/…`)
/// or free text.
fn parse_narrative(narrative: &Field<'_>) -> Result<Narrative, StatementError> {
    let location = narrative.location();
    let lines: Vec<&str> = std::iter::once(narrative.first).chain(narrative.more.iter().copied()).collect();
    let first = narrative.first.trim_start();
    let first_bytes = first.as_bytes();
    // "166?00…": a three-digit business transaction code, then subfields each opened by "?" and
    // a two-digit number.
    let is_subfield_text = first_bytes.len() > 5
        && first_bytes[..3].iter().all(u8::is_ascii_digit)
        && first_bytes[3] == b'?'
        && first_bytes[4..6].iter().all(u8::is_ascii_digit);
    if is_subfield_text {
        // Structured text is cut into lines at fixed widths, in the middle of words: the lines
        // are joined without a separator.
        let joined: String = lines.concat();
        let narrative = subfield_narrative(joined.trim(), '?', &location)?;
        if narrative != Narrative::default() {
            return Ok(narrative);
        }
    }
    if first.starts_with('/') {
        let joined: String = lines.concat();
        if let Some(narrative) = coded_narrative(joined.trim(), &location)? {
            return Ok(narrative);
        }
    }
    let joined = lines.iter().map(|line| line.trim()).filter(|line| !line.is_empty()).collect::<Vec<_>>().join(" ");
    Ok(Narrative { description: field(&joined, &location, ":86: text")?, counterparty: None, end_to_end: None })
}

/// German "Mehrzweckfeld": `?00` posting text, `?20`–`?29` and `?60`–`?63` purpose, `?32`/`?33`
/// name. In the purpose, SEPA keywords (`EREF+`, `SVWZ+`) mark the end-to-end id and the
/// remittance text.
fn subfield_narrative(text: &str, separator: char, location: &str) -> Result<Narrative, StatementError> {
    let mut posting_text = String::new();
    let mut purpose_parts: Vec<&str> = Vec::new();
    let mut name = String::new();
    for piece in text.split(separator).skip(1) {
        let (Some(code), Some(value)) = (piece.get(..2), piece.get(2..)) else {
            continue;
        };
        match code {
            "00" => posting_text.push_str(value),
            "20" | "21" | "22" | "23" | "24" | "25" | "26" | "27" | "28" | "29" | "60" | "61" | "62" | "63" => {
                purpose_parts.push(value);
            }
            "32" | "33" => name.push_str(value),
            _ => {}
        }
    }
    let keywords = sepa_keywords(&purpose_parts);
    let keyword = |wanted: &str| keywords.iter().find(|(key, _)| *key == wanted).map(|(_, value)| value.as_str());
    let purpose: String = purpose_parts.concat();
    let description = keyword("SVWZ").map(str::to_owned).unwrap_or(purpose);
    let description = if description.trim().is_empty() { posting_text } else { description };
    Ok(Narrative {
        description: field(&description, location, ":86: purpose")?,
        counterparty: field(&name, location, ":86: name")?,
        end_to_end: reference_field(keyword("EREF").unwrap_or(""), location, ":86: EREF")?,
    })
}

/// SEPA keywords in purpose subfields: a subfield starting with four capitals and `+` opens a
/// keyword; the subfields after it continue its value until the next keyword.
fn sepa_keywords<'p>(parts: &[&'p str]) -> Vec<(&'p str, String)> {
    let mut keywords: Vec<(&'p str, String)> = Vec::new();
    for part in parts {
        let opens = part
            .get(..5)
            .filter(|head| head.as_bytes()[..4].iter().all(u8::is_ascii_uppercase) && head.as_bytes()[4] == b'+');
        match (opens, keywords.last_mut()) {
            (Some(_), _) => keywords.push((&part[..4], part[5..].to_owned())),
            (None, Some((_, value))) => value.push_str(part),
            (None, None) => {}
        }
    }
    keywords
}

/// The codes of SWIFT-style structured `:86:` text this parser reads or steps over.
const NARRATIVE_CODES: [&str; 19] = [
    "TRTP", "EREF", "CNTP", "NAME", "REMI", "ORDP", "BENM", "IREF", "MARF", "CSID", "PREF", "RTRN", "ACCW", "PURP",
    "ULTC", "ULTD", "ADDR", "ISDT", "BUSP",
];

/// SWIFT-style `:86:`: `/EREF/x//CNTP/iban/bic/name/city/REMI/USTD//text/`. `None` if no known
/// code appears.
fn coded_narrative(text: &str, location: &str) -> Result<Option<Narrative>, StatementError> {
    let mut codes: Vec<(&str, Vec<&str>)> = Vec::new();
    for token in text.split('/') {
        if NARRATIVE_CODES.contains(&token) {
            codes.push((token, Vec::new()));
        } else if let Some((_, values)) = codes.last_mut() {
            values.push(token);
        }
    }
    if codes.is_empty() {
        return Ok(None);
    }
    let values = |wanted: &str| codes.iter().find(|(code, _)| *code == wanted).map(|(_, values)| values.as_slice());
    let name = match (values("NAME"), values("CNTP")) {
        (Some(name), _) => name.iter().copied().filter(|part| !part.is_empty()).collect::<Vec<_>>().join("/"),
        (None, Some(counterparty)) => counterparty.get(2).copied().unwrap_or("").to_owned(),
        (None, None) => String::new(),
    };
    let remittance = values("REMI").map(|parts| {
        let parts = match parts.first() {
            Some(&"USTD" | &"STRD") => &parts[1..],
            _ => parts,
        };
        parts.iter().copied().filter(|part| !part.is_empty()).collect::<Vec<_>>().join("/")
    });
    let end_to_end = values("EREF").and_then(|parts| parts.iter().copied().find(|part| !part.is_empty())).unwrap_or("");
    Ok(Some(Narrative {
        description: field(remittance.as_deref().unwrap_or(text), location, ":86: remittance")?,
        counterparty: field(&name, location, ":86: name")?,
        end_to_end: reference_field(end_to_end, location, ":86: EREF")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn message(lines: &[&str]) -> String {
        let mut text =
            String::from("{1:F01COBADEFFAXXX0000000000}{2:O9401530260306COBADEFFXXXX00000000002603061530N}{4:\r\n");
        for line in lines {
            text.push_str(line);
            text.push_str("\r\n");
        }
        text.push_str("-}{5:{CHK:1A2B3C4D5E6F}}\r\n");
        text
    }

    fn parse(lines: &[&str]) -> Result<Statement, StatementError> {
        parse_mt940(message(lines).as_bytes(), 2)
    }

    const HEAD: [&str; 4] = [":20:STARTUMS", ":25:37040044/0532013000", ":28C:00045/001", ":60F:C260302EUR100,00"];

    fn with(body: &[&str], closing: &str) -> Vec<String> {
        HEAD.iter().copied().chain(body.iter().copied()).chain([closing]).map(str::to_owned).collect()
    }

    fn parse_owned(lines: &[String]) -> Result<Statement, StatementError> {
        let borrowed: Vec<&str> = lines.iter().map(String::as_str).collect();
        parse(&borrowed)
    }

    #[test]
    fn statement_line_fields() {
        let lines = with(
            &[":61:2603020303DR12,50NCHGNONREF//B-1", "SUPPLEMENTARY", ":61:260302C100,NTRFABC"],
            ":62F:C260302EUR187,50",
        );
        let statement = parse_owned(&lines).unwrap();
        let [charge, credit] = statement.entries.as_slice() else { panic!("two entries expected") };
        assert_eq!(charge.amount, -1250);
        assert_eq!(charge.booking_date, date!(2026 - 03 - 03));
        assert_eq!(charge.value_date, Some(date!(2026 - 03 - 02)));
        assert_eq!(charge.reference, None);
        assert_eq!(charge.bank_reference.as_deref(), Some("B-1"));
        assert_eq!(charge.bank_code.as_deref(), Some("NCHG"));
        assert_eq!(charge.description.as_deref(), Some("SUPPLEMENTARY"));
        assert_eq!(charge.location, "line 6");
        assert_eq!(credit.amount, 10000);
        assert_eq!(credit.reference.as_deref(), Some("ABC"));
        assert_eq!(credit.booking_date, date!(2026 - 03 - 02));
        assert_eq!(statement.sequence.as_deref(), Some("00045/001"));
    }

    #[test]
    fn reversals_are_signed_by_what_they_do() {
        let lines = with(&[":61:260302RD5,00NRTIX", ":61:260302RC2,00NRTIY"], ":62F:C260302EUR103,00");
        let statement = parse_owned(&lines).unwrap();
        let amounts: Vec<(i128, bool)> = statement.entries.iter().map(|e| (e.amount, e.reversal)).collect();
        assert_eq!(amounts, [(500, true), (-200, true)]);
    }

    #[test]
    fn booking_dates_wrap_the_year() {
        assert_eq!(booking_date(date!(2025 - 12 - 31), "0102", "x"), Ok(date!(2026 - 01 - 02)));
        assert_eq!(booking_date(date!(2026 - 01 - 02), "1231", "x"), Ok(date!(2025 - 12 - 31)));
        assert_eq!(booking_date(date!(2026 - 03 - 02), "0229", "x").unwrap_err().code(), "statement_date_invalid");
        assert_eq!(booking_date(date!(2026 - 03 - 02), "1399", "x").unwrap_err().code(), "statement_date_invalid");
    }

    #[test]
    fn bad_fields_name_their_line() {
        let cases: [(&str, &str); 6] = [
            (":61:261345C1,00NTRFX", "statement_date_invalid"),
            (":61:260302C12,3,4NTRFX", "statement_amount_invalid"),
            (":61:260302C0,00NTRFX", "statement_amount_invalid"),
            (":61:260302X1,00NTRFX", "statement_malformed"),
            (":61:260302C1,00XTRFX", "statement_malformed"),
            (":61:260302CD1,00NTRFX", "statement_unsupported"),
        ];
        for (line, code) in cases {
            let error = parse_owned(&with(&[line], ":62F:C260302EUR101,00")).unwrap_err();
            assert_eq!(error.code(), code, "{line}: {error}");
            assert!(error.to_string().starts_with("line 6: "), "{line}: {error}");
        }
    }

    #[test]
    fn required_tags_and_order() {
        let error = parse(&HEAD).unwrap_err();
        assert_eq!(error.code(), "statement_malformed");
        assert!(error.to_string().contains("missing :62F: or :62M:"), "{error}");
        assert!(error.to_string().contains("line 6"), "{error}");

        let error = parse(&[":25:X", ":60F:C260302EUR1,00", ":62F:C260302EUR1,00"]).unwrap_err();
        assert!(error.to_string().contains("missing :20:"), "{error}");

        let error = parse(&[":20:X", ":25:Y", ":62F:C260302EUR1,00"]).unwrap_err();
        assert!(error.to_string().contains("missing :60F: or :60M:"), "{error}");

        let error = parse_owned(&with(&[":86:orphan"], ":62F:C260302EUR100,00")).unwrap_err();
        assert_eq!(error.to_string(), "line 6: malformed statement: an :86: must follow the :61: it describes");
    }

    #[test]
    fn currencies_must_agree() {
        let error = parse_owned(&with(&[], ":62F:C260302USD100,00")).unwrap_err();
        assert!(matches!(error, StatementError::CurrencyMismatch { .. }), "{error}");
    }

    #[test]
    fn bare_messages_and_several_messages() {
        let bare = ":20:X\n:25:Y\n:60F:D260302EUR5,00\n:61:260302C5,00NTRFNONREF\n:62F:C260302EUR0,00\n-\n";
        let statement = parse_mt940(bare.as_bytes(), 2).unwrap();
        assert_eq!(statement.opening.map(|point| point.amount), Some(-500));
        assert_eq!(statement.closing.map(|point| point.amount), Some(0));

        let twice = format!("{bare}{bare}");
        let error = parse_mt940(twice.as_bytes(), 2).unwrap_err();
        assert_eq!(error.code(), "statement_unsupported");
        assert!(error.to_string().contains("line 7"), "{error}");

        let wrapped_twice = format!("{}{}", message(&HEAD), message(&HEAD));
        assert_eq!(parse_mt940(wrapped_twice.as_bytes(), 2).unwrap_err().code(), "statement_unsupported");

        let unterminated = message(&HEAD).replace("-}", "");
        assert_eq!(parse_mt940(unterminated.as_bytes(), 2).unwrap_err().code(), "statement_malformed");
        assert_eq!(parse_mt940(b"  \n", 2).unwrap_err().code(), "statement_malformed");
        assert_eq!(parse_mt940(b"{1:abc", 2).unwrap_err().code(), "statement_malformed");
        assert_eq!(parse_mt940(b"hello\n:20:X", 2).unwrap_err().code(), "statement_malformed");
    }

    fn narrative_of(lines: &[&str]) -> Narrative {
        let field = Field { tag: "86", line: 9, first: lines[0], more: lines[1..].to_vec() };
        parse_narrative(&field).unwrap()
    }

    #[test]
    fn german_structured_narrative() {
        let narrative = narrative_of(&[
            "166?00SEPA-GUTSCHRIFT?109310?20EREF+INV-7?21SVWZ+Rechnung INV-7 vo",
            "m 1.3.?32Mueller Maschinenbau ?33GmbH",
        ]);
        assert_eq!(narrative.end_to_end.as_deref(), Some("INV-7"));
        assert_eq!(narrative.description.as_deref(), Some("Rechnung INV-7 vom 1.3."));
        assert_eq!(narrative.counterparty.as_deref(), Some("Mueller Maschinenbau GmbH"));

        let plain = narrative_of(&["805?00ENTGELTABSCHLUSS?20Kontofuehrung 02/2026"]);
        assert_eq!(plain.description.as_deref(), Some("Kontofuehrung 02/2026"));
        assert_eq!(plain.counterparty, None);
        let not_provided = narrative_of(&["166?20EREF+NOTPROVIDED"]);
        assert_eq!(not_provided.end_to_end, None);
    }

    #[test]
    fn coded_and_free_narratives() {
        let coded = narrative_of(&[
            "/EREF/PO-88123//CNTP/NL91ABNA0417164300/ABNANL2A/Buerobedarf Schm",
            "idt KG/Utrecht/REMI/USTD//Bestelling PO-88123/",
        ]);
        assert_eq!(coded.end_to_end.as_deref(), Some("PO-88123"));
        assert_eq!(coded.counterparty.as_deref(), Some("Buerobedarf Schmidt KG"));
        assert_eq!(coded.description.as_deref(), Some("Bestelling PO-88123"));

        let named = narrative_of(&["/ORDP//NAME/Jan Jansen/ADDR/Kerkstraat 1"]);
        assert_eq!(named.counterparty.as_deref(), Some("Jan Jansen"));

        let free = narrative_of(&["Miete Maerz", "  Buero Nord  "]);
        assert_eq!(free.description.as_deref(), Some("Miete Maerz Buero Nord"));
        assert_eq!(free.counterparty, None);
        let slash_free = narrative_of(&["/just/some/text"]);
        assert_eq!(slash_free.description.as_deref(), Some("/just/some/text"));
    }

    #[test]
    fn reference_falls_back_to_the_narrative_end_to_end_id() {
        let lines = with(&[":61:260302C5,00NTRFNONREF//B", ":86:166?20EREF+E2E-9?32Anna"], ":62F:C260302EUR105,00");
        let statement = parse_owned(&lines).unwrap();
        assert_eq!(statement.entries[0].reference.as_deref(), Some("E2E-9"));
        assert_eq!(statement.entries[0].counterparty.as_deref(), Some("Anna"));
    }
}
