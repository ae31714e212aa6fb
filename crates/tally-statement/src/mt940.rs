//! MT940 (SWIFT customer statement) parsing: a file of any number of messages, joined into
//! statements.
//!
//! The text is cut into messages line by line. A message starts at a `:20:` line; it ends at the
//! next `:20:`, at a `-` line, at the `-}` that closes its SWIFT block 4, or at the end of the
//! file. Around messages, SWIFT header and trailer blocks (`{1:…}{2:…}{3:…}{4:` and `-}{5:…}`),
//! blank lines, `:940:` lines and bank header records (`0000 01<BIC>…`, `940 00`, a bare BIC)
//! are skipped with a note. The balances after the entries (`:62F:`, `:62M:`, `:64:`, `:65:`) are
//! one line each, so a line that follows one and is no tag ends the message (and is skipped with a
//! note); so does a header record after the closing balance and a statement-level `:86:`.
//!
//! Each message is split into fields at lines that start with a tag (`:61:`); other lines continue
//! the field before them. Fields must come in the standard order: `:20:`, optional `:21:`,
//! `:25:`, optional `:28C:`, `:60F:`/`:60M:`, any number of `:61:` each optionally followed by one
//! `:86:`, `:62F:`/`:62M:`, then optional `:64:`, `:65:` and a statement-level `:86:`. Tags that
//! are not MT940 fields (`:NS:`, `:13D:`, `:34F:`, `:90C:`, …) are skipped with a note wherever
//! they appear.
//!
//! A message that closes with `:62M:` (an intermediate balance) is a page: the next message for
//! the same account and currency that opens with `:60M:` continues it, and the pages become one
//! [`Statement`]. The page's opening must equal the previous page's closing, and `:28C:` page
//! numbers should count up by one; where they do not, the statement carries a note.

use time::Date;

use crate::account_id::normalize_account;
use crate::narrative::{Narrative, coded_narrative, parse_narrative};
use crate::text::{
    amount_minor, amount_positive, check_entry_count, check_size, clip, date_from_parts, field, line_at,
    reference_field, yymmdd_date,
};
use crate::{
    BalancePoint, Entry, Format, LINE_LEN_MAX, Note, OtherAmount, ParseOptions, STATEMENTS_PER_FILE_MAX, Scales,
    Statement, StatementError, StatementFile, encoding, push_note,
};

/// How far (in days) an entry's booking date may lie from its value date. The booking date has
/// no year of its own; a distance beyond this means the month and day do not belong to the value
/// date's year or a neighbouring one.
const BOOKING_VALUE_DAYS_MAX: i64 = 200;

/// The fields of an MT940 message; any other tag is skipped with a note.
const MT940_TAGS: [&str; 13] = ["20", "21", "25", "28", "28C", "60F", "60M", "61", "86", "62F", "62M", "64", "65"];

/// Customer references that only point to where the reference is: the `:86:` code that holds it.
const POINTER_REFERENCES: [&str; 4] = ["EREF", "PREF", "MARF", "IREF"];

/// Parses an MT940 file: every statement it holds, pages joined.
pub fn parse_mt940(bytes: &[u8], options: &ParseOptions<'_>) -> Result<StatementFile, StatementError> {
    check_size(bytes)?;
    let decoded = encoding::decode(bytes, options.encoding)?;
    let text: &str = &decoded.text;
    let mut notes = Vec::new();
    if let Some(note) = decoded.note {
        push_note(&mut notes, note);
    }
    if text.trim().is_empty() {
        return Err(StatementError::malformed("line 1", "the file is empty"));
    }
    let messages = split_messages(text, &mut notes)?;
    if messages.is_empty() {
        return Err(StatementError::malformed(
            format!("line {}", line_at(text.as_bytes(), text.len())),
            "the file holds no MT940 message: no line starts with :20:",
        ));
    }
    let mut pages = Vec::with_capacity(messages.len());
    let mut entries_in_file = 0usize;
    for message in &messages {
        let mut page_notes = Vec::new();
        let fields = split_fields(&message.lines, &mut page_notes)?;
        let page = build_page(&fields, options.scales, message.end_line, &mut entries_in_file, page_notes)?;
        pages.push(page);
    }
    Ok(StatementFile {
        format: Format::Mt940,
        message: None,
        encoding: decoded.encoding.to_owned(),
        statements: join_pages(pages)?,
        notes,
    })
}

#[derive(Debug, Clone, Copy)]
struct Line<'t> {
    number: usize,
    text: &'t str,
}

#[derive(Debug)]
struct Message<'t> {
    lines: Vec<Line<'t>>,
    /// The line where the message ends, for errors about what is missing.
    end_line: usize,
    /// Whether a closing balance (`:62F:`/`:62M:`) has been read: after it, a header record ends
    /// the message instead of continuing its last field.
    closed: bool,
    /// Whether the last field is a balance after the entries (`:62F:`, `:62M:`, `:64:`, `:65:`):
    /// those are one line each, so any line that is not a tag ends the message.
    in_closing_balance: bool,
}

impl<'t> Message<'t> {
    fn starting_with(line: Line<'t>) -> Self {
        let mut message =
            Message { lines: Vec::new(), end_line: line.number, closed: false, in_closing_balance: false };
        message.push(line);
        message
    }

    fn push(&mut self, line: Line<'t>) {
        if let Some((tag, _)) = tag_of(line.text) {
            self.closed |= matches!(tag, "62F" | "62M");
            self.in_closing_balance = matches!(tag, "62F" | "62M" | "64" | "65");
        }
        self.end_line = line.number;
        self.lines.push(line);
    }

    /// Whether a line that is no tag continues the message's last field, rather than ending the
    /// message.
    fn continues_with(&self, trimmed: &str) -> bool {
        !(self.in_closing_balance || (self.closed && is_header_record(trimmed)))
    }
}

/// Where block 4 of a SWIFT-wrapped message was opened.
struct Block4 {
    line: usize,
}

/// Cuts the text into messages; what lies between them is skipped with a note.
fn split_messages<'t>(text: &'t str, notes: &mut Vec<Note>) -> Result<Vec<Message<'t>>, StatementError> {
    let mut messages: Vec<Message<'t>> = Vec::new();
    let mut current: Option<Message<'t>> = None;
    let mut block4: Option<Block4> = None;
    let mut last_line = 1;
    for (index, raw) in text.split('\n').enumerate() {
        let number = index + 1;
        last_line = number;
        let mut line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.len() > LINE_LEN_MAX {
            return Err(StatementError::too_large(
                format!("line {number}"),
                format!("the line is longer than {LINE_LEN_MAX} bytes"),
            ));
        }
        let mut trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        // SWIFT blocks on this line: after the `-}` that closes block 4 (trailers such as
        // `{5:…}`, or the next message's headers), or opening a message.
        let blocks = if block4.is_some() && trimmed.starts_with("-}") {
            end_at(&mut current, number);
            finish_message(&mut current, &mut messages)?;
            block4 = None;
            Some((&trimmed[2..], false))
        } else if trimmed.starts_with('{') {
            if let Some(open) = &block4 {
                return Err(StatementError::malformed(
                    format!("line {number}"),
                    format!(
                        "a new SWIFT block starts, but block 4 opened on line {} is not closed by \"-}}\"",
                        open.line
                    ),
                ));
            }
            finish_message(&mut current, &mut messages)?;
            Some((trimmed, true))
        } else {
            None
        };
        if let Some((text, note_blocks_only)) = blocks {
            match swift_blocks(text, number)? {
                Some(rest) => {
                    block4 = Some(Block4 { line: number });
                    line = rest;
                    trimmed = rest.trim();
                    if trimmed.is_empty() {
                        continue;
                    }
                }
                None => {
                    if note_blocks_only {
                        let note = Note::new(
                            "envelope_skipped",
                            format!("line {number}"),
                            "SWIFT blocks outside block 4 skipped",
                        );
                        push_note(notes, note);
                    }
                    continue;
                }
            }
        }
        let line = Line { number, text: line };
        if trimmed == "-" {
            end_at(&mut current, number);
            finish_message(&mut current, &mut messages)?;
            continue;
        }
        match tag_of(line.text) {
            Some(("20", _)) => {
                finish_message(&mut current, &mut messages)?;
                current = Some(Message::starting_with(line));
            }
            Some(_) => match &mut current {
                Some(message) => message.push(line),
                // Fields before any :20: still form a message, which then names its missing :20:.
                None => current = Some(Message::starting_with(line)),
            },
            None => match &mut current {
                Some(message) if message.continues_with(trimmed) => message.push(line),
                _ => {
                    finish_message(&mut current, &mut messages)?;
                    let what = if trimmed.starts_with(":940:") || trimmed == "940" {
                        "a :940: line"
                    } else {
                        "a line outside any message (a bank header record)"
                    };
                    push_note(
                        notes,
                        Note::new(
                            "header_skipped",
                            format!("line {number}"),
                            format!("{what} before a message skipped: {:?}", clip(trimmed)),
                        ),
                    );
                }
            },
        }
    }
    if let Some(open) = block4 {
        return Err(StatementError::malformed(
            format!("line {last_line}"),
            format!("block 4 opened on line {} is not closed by \"-}}\" (truncated?)", open.line),
        ));
    }
    finish_message(&mut current, &mut messages)?;
    Ok(messages)
}

/// The message being read, if any, ends at its terminator on line `number`: what it misses is
/// reported there.
fn end_at(current: &mut Option<Message<'_>>, number: usize) {
    if let Some(message) = current {
        message.end_line = number;
    }
}

/// Moves the message being read, if any, to the finished ones.
fn finish_message<'t>(
    current: &mut Option<Message<'t>>,
    messages: &mut Vec<Message<'t>>,
) -> Result<(), StatementError> {
    if let Some(message) = current.take() {
        if messages.len() >= STATEMENTS_PER_FILE_MAX {
            return Err(StatementError::too_large(
                format!("line {}", message.lines.first().map_or(0, |line| line.number)),
                format!("more than {STATEMENTS_PER_FILE_MAX} messages in one file"),
            ));
        }
        messages.push(message);
    }
    Ok(())
}

/// `0000 01BPKOPLPWXXXX…`, `940 00`, `:940:`, `940`: records export tools write before a message.
fn is_header_record(trimmed: &str) -> bool {
    if trimmed.starts_with(":940:") || trimmed == "940" {
        return true;
    }
    let bytes = trimmed.as_bytes();
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    (3..=4).contains(&digits)
        && bytes.get(digits) == Some(&b' ')
        && bytes.get(digits + 1..digits + 3).is_some_and(|pair| pair.iter().all(u8::is_ascii_digit))
}

/// Skips SWIFT blocks (`{1:…}{2:…}{3:{108:…}}`) and returns what follows `{4:`, or `None` when
/// the text holds only blocks (trailers such as `{5:{CHK:…}}`).
fn swift_blocks(text: &str, number: usize) -> Result<Option<&str>, StatementError> {
    let location = || format!("line {number}");
    let mut rest = text.trim_start();
    loop {
        if rest.is_empty() {
            return Ok(None);
        }
        if !rest.starts_with('{') {
            return Err(StatementError::malformed(
                location(),
                format!("unexpected text {:?} around SWIFT blocks", clip(rest)),
            ));
        }
        if let Some(body) = rest.strip_prefix("{4:") {
            return Ok(Some(body));
        }
        let end = block_end(rest.as_bytes())
            .ok_or_else(|| StatementError::malformed(location(), "unterminated SWIFT block"))?;
        rest = rest[end..].trim_start();
    }
}

/// The offset after the `}` that closes the block opening at the start (blocks nest: `{3:{108:x}}`).
fn block_end(bytes: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    for (index, byte) in bytes.iter().enumerate() {
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

    fn lines(&self) -> Vec<&str> {
        std::iter::once(self.first).chain(self.more.iter().copied()).collect()
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

fn split_fields<'t>(lines: &[Line<'t>], notes: &mut Vec<Note>) -> Result<Vec<Field<'t>>, StatementError> {
    let mut fields: Vec<Field<'t>> = Vec::new();
    for line in lines {
        if let Some((tag, value)) = tag_of(line.text) {
            fields.push(Field { tag, line: line.number, first: value, more: Vec::new() });
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
    // Non-standard fields carry bank-specific extras; nothing of the statement depends on them.
    for field in fields.iter().filter(|field| !MT940_TAGS.contains(&field.tag)) {
        push_note(
            notes,
            Note::new("tag_skipped", field.location(), format!(":{}: is not an MT940 field: skipped", field.tag)),
        );
    }
    fields.retain(|field| MT940_TAGS.contains(&field.tag));
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

/// One message: a whole statement, or one page of it.
struct Page {
    statement_id: String,
    account: String,
    sequence: Option<String>,
    currency: String,
    opening: BalancePoint,
    /// `:60M:`: this message continues a statement.
    opening_intermediate: bool,
    opening_line: usize,
    closing: BalancePoint,
    /// `:62M:`: the statement continues in the next message.
    closing_intermediate: bool,
    entries: Vec<Entry>,
    notes: Vec<Note>,
}

fn build_page(
    fields: &[Field<'_>],
    scales: Scales<'_>,
    end_line: usize,
    entries_in_file: &mut usize,
    mut notes: Vec<Note>,
) -> Result<Page, StatementError> {
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
    let (opening, currency, scale) = balance(opening_field, scales)?;

    let mut entries = Vec::new();
    loop {
        match cursor.peek_tag() {
            Some("61") => {
                let line = cursor.expect(&["61"])?;
                check_entry_count(*entries_in_file, &line.location())?;
                let narrative = cursor.take_if(&["86"]);
                entries.push(entry(line, narrative, scale, &currency, &mut notes)?);
                *entries_in_file += 1;
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
    let (closing, closing_currency, _) = balance(closing_field, scales)?;
    check_currency(&currency, &closing_currency, closing_field)?;
    if let Some(available) = cursor.take_if(&["64"]) {
        let (_, available_currency, _) = balance(available, scales)?;
        check_currency(&currency, &available_currency, available)?;
    }
    while let Some(forward) = cursor.take_if(&["65"]) {
        let (_, forward_currency, _) = balance(forward, scales)?;
        check_currency(&currency, &forward_currency, forward)?;
    }
    cursor.take_if(&["86"]);
    if let Some(extra) = fields.get(cursor.next) {
        return Err(StatementError::malformed(
            extra.location(),
            format!("unexpected :{}: after the closing balance", extra.tag),
        ));
    }
    Ok(Page {
        statement_id,
        account,
        sequence,
        currency,
        opening,
        opening_intermediate: opening_field.tag == "60M",
        opening_line: opening_field.line,
        closing,
        closing_intermediate: closing_field.tag == "62M",
        entries,
        notes,
    })
}

/// A statement being assembled from its pages.
struct Assembly {
    statement: Statement,
    /// The account as mapping keys compare it, with the currency: pages continue only their own.
    key: (String, String),
    /// The last page closed with `:62M:`.
    open: bool,
    last_sequence: Option<String>,
}

/// Joins pages into statements, in the order their first pages appear.
fn join_pages(pages: Vec<Page>) -> Result<Vec<Statement>, StatementError> {
    let mut assemblies: Vec<Assembly> = Vec::new();
    for page in pages {
        let key = (normalize_account(&page.account), page.currency.clone());
        let continues = page
            .opening_intermediate
            .then(|| assemblies.iter().rposition(|assembly| assembly.open && assembly.key == key))
            .flatten();
        match continues {
            Some(index) => append_page(&mut assemblies[index], page),
            None => {
                let mut notes = page.notes;
                if page.opening_intermediate {
                    push_note(
                        &mut notes,
                        Note::new(
                            "statement_incomplete",
                            format!("line {}", page.opening_line),
                            "the statement opens with an intermediate balance (:60M:): its earlier pages are not in this file",
                        ),
                    );
                }
                let difference = page_difference(&page.opening, &page.closing, &page.entries);
                let statement = Statement {
                    format: Format::Mt940,
                    statement_id: page.statement_id,
                    account: page.account,
                    currency: Some(page.currency),
                    sequence: page.sequence.clone(),
                    opening: Some(page.opening),
                    closing: Some(page.closing),
                    entries: page.entries,
                    pages: 1,
                    notes,
                };
                let mut assembly =
                    Assembly { statement, key, open: page.closing_intermediate, last_sequence: page.sequence };
                assembly.statement.notes.extend(first_page_difference(difference, page.opening_line));
                assemblies.push(assembly);
            }
        }
    }
    let mut statements = Vec::with_capacity(assemblies.len());
    for mut assembly in assemblies {
        if assembly.open {
            let location = assembly
                .statement
                .entries
                .last()
                .map_or_else(|| "end of file".to_owned(), |entry| entry.location.clone());
            push_note(
                &mut assembly.statement.notes,
                Note::new(
                    "statement_incomplete",
                    location,
                    "the statement ends with an intermediate balance (:62M:): its later pages are not in this file",
                ),
            );
        }
        // A one-page statement that does not add up is reported from its balance difference; the
        // note only locates the page of a statement of several.
        if assembly.statement.pages == 1 {
            assembly.statement.notes.retain(|note| note.code != "page_does_not_add_up");
        }
        statements.push(assembly.statement);
    }
    Ok(statements)
}

/// Closing minus (opening + entries) of one page.
fn page_difference(opening: &BalancePoint, closing: &BalancePoint, entries: &[Entry]) -> i128 {
    let total = entries.iter().fold(0i128, |total, entry| total.saturating_add(entry.amount));
    closing.amount.saturating_sub(opening.amount.saturating_add(total))
}

fn first_page_difference(difference: i128, opening_line: usize) -> Option<Note> {
    (difference != 0).then(|| Note {
        amount: Some(difference),
        ..Note::new(
            "page_does_not_add_up",
            format!("line {opening_line}"),
            format!("this page's closing balance differs from its opening balance plus its entries by {difference} minor units"),
        )
    })
}

fn append_page(assembly: &mut Assembly, page: Page) {
    let statement = &mut assembly.statement;
    let location = format!("line {}", page.opening_line);
    let previous_closing = statement.closing.map_or(0, |closing| closing.amount);
    let chain_difference = page.opening.amount.saturating_sub(previous_closing);
    if chain_difference != 0 {
        push_note(
            &mut statement.notes,
            Note {
                amount: Some(chain_difference),
                ..Note::new(
                    "page_chain_break",
                    location.clone(),
                    format!(
                        "this page opens (:60M:) {chain_difference} minor units away from where the previous page closed (:62M:)"
                    ),
                )
            },
        );
    }
    if let Some(gap) = sequence_gap(assembly.last_sequence.as_deref(), page.sequence.as_deref()) {
        push_note(&mut statement.notes, Note::new("page_sequence_gap", location.clone(), gap));
    }
    let difference = page_difference(&page.opening, &page.closing, &page.entries);
    if let Some(note) = first_page_difference(difference, page.opening_line) {
        push_note(&mut statement.notes, note);
    }
    for note in page.notes {
        push_note(&mut statement.notes, note);
    }
    statement.entries.extend(page.entries);
    statement.closing = Some(page.closing);
    statement.pages += 1;
    assembly.open = page.closing_intermediate;
    assembly.last_sequence = page.sequence;
}

/// `:28C:` is `statement/page` (`00045/002`); a page should follow its predecessor by one.
fn sequence_gap(previous: Option<&str>, next: Option<&str>) -> Option<String> {
    let parse = |sequence: &str| -> Option<(u64, u64)> {
        let (statement, page) = sequence.split_once('/')?;
        Some((statement.trim().parse().ok()?, page.trim().parse().ok()?))
    };
    let (previous, next) = (previous?, next?);
    let (Some((statement_before, page_before)), Some((statement_now, page_now))) = (parse(previous), parse(next))
    else {
        return None;
    };
    let follows = statement_before == statement_now && page_before.checked_add(1) == Some(page_now);
    (!follows).then(|| format!(":28C: {next} does not follow {previous}: a page may be missing"))
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

/// A balance field: `C|D YYMMDD CCY amount`, e.g. `C260302EUR12500,00`. Returns the balance, its
/// currency and that currency's scale.
fn balance(field: &Field<'_>, scales: Scales<'_>) -> Result<(BalancePoint, String, u8), StatementError> {
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
    let scale = scales.of(currency, &location)?;
    let magnitude = swift_amount(value.get(10..).unwrap_or(""), scale, &location, false)?;
    Ok((BalancePoint { date, amount: sign * magnitude }, currency.to_owned(), scale))
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
/// second line of supplementary details: free text, an IBAN, or `/OCMT/` and `/CHGS/` codes.
fn entry(
    line: &Field<'_>,
    narrative: Option<&Field<'_>>,
    scale: u8,
    currency: &str,
    notes: &mut Vec<Note>,
) -> Result<Entry, StatementError> {
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
    let supplementary = supplementary_details(&line.more, &location)?;
    let details = match narrative {
        Some(narrative) => parse_narrative(&narrative.lines(), &narrative.location())?,
        None => Narrative::default(),
    };
    let end_to_end_id = details.end_to_end;
    // Dutch banks write the code of the :86: field that holds the reference (`EREF`) in its place.
    let customer_reference =
        if POINTER_REFERENCES.contains(&customer_reference.trim()) { "" } else { customer_reference };
    let reference =
        reference_field(customer_reference, &location, ":61: customer reference")?.or(end_to_end_id.clone());
    let bank_reference = match bank_reference {
        Some(bank) => reference_field(bank, &location, ":61: bank reference")?,
        None => None,
    };
    let narrative_location = narrative.map_or_else(|| location.clone(), Field::location);
    let other = |pair: Option<(String, String)>, at: &str, notes: &mut Vec<Note>| {
        other_amount(pair, currency, scale, at, notes)
    };
    let original_amount = match other(supplementary.original_amount, &location, notes) {
        Some(amount) => Some(amount),
        None => other(details.original_amount, &narrative_location, notes),
    };
    let charges = match other(supplementary.charges, &location, notes) {
        Some(amount) => Some(amount),
        None => other(details.charges, &narrative_location, notes),
    };
    Ok(Entry {
        location,
        booking_date,
        value_date: Some(value_date),
        amount: sign * magnitude,
        reversal,
        reference,
        bank_reference,
        end_to_end_id,
        counterparty: details.counterparty,
        counterparty_iban: details.counterparty_iban.or(supplementary.counterparty_iban),
        description: details.description.or(supplementary.description),
        bank_code: Some(transaction_type.to_owned()),
        original_amount,
        charges,
        details: Vec::new(),
    })
}

/// The second line of `:61:`: `/OCMT/…/CHGS/…` codes, the other party's IBAN (Dutch banks), or
/// free text.
fn supplementary_details(more: &[&str], location: &str) -> Result<Narrative, StatementError> {
    let Some(text) = more.first().map(|text| text.trim()).filter(|text| !text.is_empty()) else {
        return Ok(Narrative::default());
    };
    if text.starts_with('/')
        && let Some(coded) = coded_narrative(text, location)?
    {
        return Ok(coded);
    }
    if let Some(iban) = crate::account_id::iban_in(&normalize_account(text)) {
        return Ok(Narrative { counterparty_iban: Some(iban), ..Narrative::default() });
    }
    Ok(Narrative { description: field(text, location, ":61: supplementary details")?, ..Narrative::default() })
}

/// An amount in its own currency (`EUR`, `525,15`), in minor units when the currency is the
/// statement's. An amount that cannot be read is noted and left out: it only adds to what the
/// booked amount already says.
fn other_amount(
    pair: Option<(String, String)>,
    currency: &str,
    scale: u8,
    location: &str,
    notes: &mut Vec<Note>,
) -> Option<OtherAmount> {
    let (other_currency, text) = pair?;
    let decimal = text.strip_suffix(',').unwrap_or(&text).replace(',', ".");
    let valid_currency = other_currency.len() == 3 && other_currency.bytes().all(|b| b.is_ascii_uppercase());
    let readable = valid_currency
        && !decimal.is_empty()
        && tally_core::parse_amount(&decimal, tally_core::amount::SCALE_MAX).is_ok();
    if !readable {
        push_note(
            notes,
            Note::new(
                "amount_unreadable",
                location,
                format!("the amount {:?} cannot be read: left out", clip(&format!("{other_currency}{text}"))),
            ),
        );
        return None;
    }
    let minor = if other_currency == currency {
        match amount_minor(&decimal, scale, location) {
            Ok(minor) => Some(minor),
            Err(_) => {
                push_note(
                    notes,
                    Note::new(
                        "amount_unreadable",
                        location,
                        format!("the amount {decimal} {currency} has more decimals than {currency}: left out"),
                    ),
                );
                return None;
            }
        }
    } else {
        None
    };
    Some(OtherAmount { currency: other_currency, amount: decimal, minor })
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

    fn file(text: &str) -> Result<StatementFile, StatementError> {
        parse_mt940(text.as_bytes(), &ParseOptions::with_scale(2))
    }

    fn parse(lines: &[&str]) -> Result<Statement, StatementError> {
        let mut file = file(&message(lines))?;
        assert_eq!(file.statements.len(), 1);
        Ok(file.statements.remove(0))
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
        assert_eq!((statement.pages, statement.balance_difference()), (1, Some(0)));
    }

    #[test]
    fn supplementary_codes_and_ibans() {
        let lines = with(
            &[
                ":61:260302C98,50NTRFINV-1//B-2",
                "/OCMT/EUR100,00//CHGS/EUR1,50/",
                ":61:260302D10,00NTRFNONREF",
                "NL91ABNA0417164300",
                ":61:260302D5,00NTRFNONREF",
                "/OCMT/USD5,50/",
            ],
            ":62F:C260302EUR183,50",
        );
        let statement = parse_owned(&lines).unwrap();
        let [charged, dutch, foreign] = statement.entries.as_slice() else { panic!("three entries expected") };
        let original = charged.original_amount.as_ref().unwrap();
        assert_eq!(
            (original.currency.as_str(), original.amount.as_str(), original.minor),
            ("EUR", "100.00", Some(10000))
        );
        assert_eq!(charged.charges.as_ref().unwrap().minor, Some(150));
        assert_eq!((charged.description.as_deref(), charged.amount_before_charges()), (None, Some(10000)));
        assert_eq!(dutch.counterparty_iban.as_deref(), Some("NL91ABNA0417164300"));
        assert_eq!(dutch.description, None);
        let foreign_original = foreign.original_amount.as_ref().unwrap();
        assert_eq!((foreign_original.amount.as_str(), foreign_original.minor), ("5.50", None));
        assert_eq!(foreign.amount_before_charges(), None);
    }

    #[test]
    fn unreadable_other_amounts_are_noted_not_refused() {
        let lines = with(
            &[":61:260302C5,00NTRFX", "/OCMT/EURfive/", ":61:260302C5,00NTRFY", "/CHGS/EUR0,001/"],
            ":62F:C260302EUR110,00",
        );
        let statement = parse_owned(&lines).unwrap();
        assert!(statement.entries.iter().all(|entry| entry.original_amount.is_none() && entry.charges.is_none()));
        let codes: Vec<(&str, &str)> = statement.notes.iter().map(|n| (n.code, n.location.as_str())).collect();
        assert_eq!(codes, [("amount_unreadable", "line 6"), ("amount_unreadable", "line 8")]);
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
    fn a_statement_that_does_not_add_up_is_read_with_its_difference() {
        let statement = parse_owned(&with(&[":61:260302C5,00NTRFX"], ":62F:C260302EUR105,27")).unwrap();
        assert_eq!(statement.balance_difference(), Some(27));
        assert!(statement.notes.is_empty(), "{:?}", statement.notes);
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
    fn currencies_must_agree_within_a_statement() {
        let error = parse_owned(&with(&[], ":62F:C260302USD100,00")).unwrap_err();
        assert!(matches!(error, StatementError::CurrencyMismatch { .. }), "{error}");
    }

    #[test]
    fn each_statement_is_read_at_its_currency_scale() {
        let text = ":20:A\n:25:X\n:60F:C260302EUR1,50\n:62F:C260302EUR1,50\n-\n:20:B\n:25:Y\n:60F:C260302JPY1500,\n:62F:C260302JPY1500,\n-\n";
        let scales = |currency: &str| match currency {
            "EUR" => Some(2),
            "JPY" => Some(0),
            _ => None,
        };
        let options = ParseOptions { scales: Scales::Lookup(&scales), encoding: None };
        let parsed = parse_mt940(text.as_bytes(), &options).unwrap();
        let closings: Vec<i128> = parsed.statements.iter().filter_map(|s| s.closing.map(|b| b.amount)).collect();
        assert_eq!(closings, [150, 1500]);
        let unknown = text.replace("JPY", "XXX");
        let error = parse_mt940(unknown.as_bytes(), &options).unwrap_err();
        assert_eq!((error.code(), error.location()), ("statement_unsupported", "line 8"));
    }

    #[test]
    fn several_messages_bare_and_wrapped() {
        let bare = ":20:X\n:25:Y\n:60F:D260302EUR5,00\n:61:260302C5,00NTRFNONREF\n:62F:C260302EUR0,00\n-\n";
        let twice = format!("{bare}{bare}");
        let parsed = file(&twice).unwrap();
        assert_eq!(parsed.statements.len(), 2);
        assert_eq!(parsed.statements[1].entries[0].location, "line 10");
        assert_eq!(parsed.statements[0].opening.map(|point| point.amount), Some(-500));

        // Without separators, each :20: starts the next message.
        let run_on = twice.replace("-\n", "");
        assert_eq!(file(&run_on).unwrap().statements.len(), 2);

        let wrapped_twice = format!(
            "{}{}",
            message(&with(&[], ":62F:C260302EUR100,00").iter().map(String::as_str).collect::<Vec<_>>()),
            message(&HEAD[..])
        );
        assert_eq!(file(&wrapped_twice).unwrap_err().code(), "statement_malformed");

        let unterminated = message(&HEAD).replace("-}", "");
        let error = file(&unterminated).unwrap_err();
        assert!(error.to_string().contains("not closed"), "{error}");
        assert_eq!(file("  \n").unwrap_err().code(), "statement_malformed");
        assert_eq!(file("{1:abc").unwrap_err().code(), "statement_malformed");
        assert_eq!(file("hello\nworld\n").unwrap_err().code(), "statement_malformed");
    }

    #[test]
    fn envelopes_and_header_records_are_skipped_with_notes() {
        let text = "\r\n:940:\r\n0000 01BPKOPLPWXXXX0000001\r\n940 00\r\n:20:A\r\n:25:/PL61109010140000071219812874\r\n\
                    :60F:C260302PLN1,00\r\n:62F:C260302PLN1,00\r\n0000 01BPKOPLPWXXXX0000002\r\n940 00\r\n:20:B\r\n\
                    :25:/PL61109010140000071219812874\r\n:60F:C260303PLN1,00\r\n:NS:22Extra\r\n:62F:C260303PLN1,00\r\n-\r\n";
        let parsed = file(text).unwrap();
        assert_eq!(parsed.statements.len(), 2);
        let notes: Vec<(&str, &str)> = parsed.notes.iter().map(|n| (n.code, n.location.as_str())).collect();
        assert_eq!(
            notes,
            [
                ("header_skipped", "line 2"),
                ("header_skipped", "line 3"),
                ("header_skipped", "line 4"),
                ("header_skipped", "line 9"),
                ("header_skipped", "line 10")
            ]
        );
        let skipped: Vec<(&str, &str)> =
            parsed.statements[1].notes.iter().map(|n| (n.code, n.location.as_str())).collect();
        assert_eq!(skipped, [("tag_skipped", "line 14")]);
        assert_eq!(parsed.statements[0].bank_account_keys(), ["PL61109010140000071219812874"]);
    }

    #[test]
    fn lines_after_a_closing_balance_end_the_message() {
        // ABN AMRO-style headers between run-on messages, with no "-": the closing balance is one
        // line, so what follows it is not part of the message.
        let text = ":20:A\n:25:X\n:60F:C260302EUR1,00\n:62F:C260302EUR1,00\nABNANL2A\n940\nABNANL2A\n\
                    :20:B\n:25:X\n:60F:C260303EUR1,00\n:62F:C260303EUR1,00\n:64:C260303EUR1,00\nstray text\n";
        let parsed = file(text).unwrap();
        assert_eq!(parsed.statements.len(), 2);
        let skipped: Vec<&str> = parsed.notes.iter().map(|note| note.location.as_str()).collect();
        assert_eq!(skipped, ["line 5", "line 6", "line 7", "line 13"]);
        // A statement-level :86: after the balances may run over several lines.
        let narrative = ":20:A\n:25:X\n:60F:C260302EUR1,00\n:62F:C260302EUR1,00\n:86:closing note\ncontinued\n";
        assert!(file(narrative).unwrap().notes.is_empty());
    }

    #[test]
    fn pages_are_joined_and_their_chain_checked() {
        let page = |sequence: &str, opening: &str, entry: &str, closing: &str| {
            format!(":20:S\n:25:ACC\n:28C:{sequence}\n{opening}\n{entry}\n{closing}\n-\n")
        };
        let text = [
            page("5/1", ":60F:C260302EUR100,00", ":61:260302C10,00NTRFA", ":62M:C260302EUR110,00"),
            page("5/2", ":60M:C260302EUR110,00", ":61:260302C20,00NTRFB", ":62M:C260302EUR130,00"),
            page("5/3", ":60M:C260302EUR130,00", ":61:260302D30,00NTRFC", ":62F:C260302EUR100,00"),
        ]
        .concat();
        let statement = &file(&text).unwrap().statements;
        assert_eq!(statement.len(), 1);
        let joined = &statement[0];
        assert_eq!((joined.pages, joined.entries.len(), joined.balance_difference()), (3, 3, Some(0)));
        assert_eq!(joined.closing.map(|b| b.amount), Some(10000));
        assert!(joined.notes.is_empty(), "{:?}", joined.notes);

        // Page 2 opens 1.00 above where page 1 closed, and page 3 comes as 5/4.
        let broken = text.replace(":60M:C260302EUR110,00", ":60M:C260302EUR111,00").replace("5/3", "5/4");
        let joined = file(&broken).unwrap().statements.remove(0);
        let notes: Vec<(&str, Option<i128>)> = joined.notes.iter().map(|n| (n.code, n.amount)).collect();
        assert_eq!(
            notes,
            [("page_chain_break", Some(100)), ("page_does_not_add_up", Some(-100)), ("page_sequence_gap", None)]
        );
        assert_eq!(joined.balance_difference(), Some(0));

        // A page whose predecessor is not in the file, and a statement whose last page is missing.
        let partial = [page("5/2", ":60M:C260302EUR110,00", ":61:260302C20,00NTRFB", ":62M:C260302EUR130,00")].concat();
        let only = file(&partial).unwrap().statements.remove(0);
        let codes: Vec<&str> = only.notes.iter().map(|n| n.code).collect();
        assert_eq!(codes, ["statement_incomplete", "statement_incomplete"]);
    }

    #[test]
    fn pages_of_other_accounts_may_come_between() {
        let text = ":20:S\n:25:A\n:60F:C260302EUR1,00\n:62M:C260302EUR1,00\n-\n\
                    :20:T\n:25:B\n:60F:C260302EUR2,00\n:62F:C260302EUR2,00\n-\n\
                    :20:S\n:25:A\n:60M:C260302EUR1,00\n:61:260302C1,00NTRFX\n:62F:C260302EUR2,00\n-\n";
        let parsed = file(text).unwrap();
        let summary: Vec<(&str, u32, usize)> =
            parsed.statements.iter().map(|s| (s.account.as_str(), s.pages, s.entries.len())).collect();
        assert_eq!(summary, [("A", 2, 1), ("B", 1, 0)]);
    }

    #[test]
    fn long_lines_are_refused() {
        let long = format!(":20:X\n:25:Y\n:86:{}\n", "x".repeat(LINE_LEN_MAX));
        let error = file(&long).unwrap_err();
        assert_eq!((error.code(), error.location()), ("statement_too_large", "line 3"));
    }

    #[test]
    fn reference_falls_back_to_the_narrative_end_to_end_id() {
        let lines = with(&[":61:260302C5,00NTRFNONREF//B", ":86:166?20EREF+E2E-9?32Anna"], ":62F:C260302EUR105,00");
        let statement = parse_owned(&lines).unwrap();
        assert_eq!(statement.entries[0].reference.as_deref(), Some("E2E-9"));
        assert_eq!(statement.entries[0].end_to_end_id.as_deref(), Some("E2E-9"));
        assert_eq!(statement.entries[0].counterparty.as_deref(), Some("Anna"));
    }
}
