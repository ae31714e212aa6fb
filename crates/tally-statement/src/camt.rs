//! camt (ISO 20022 bank-to-customer cash management) parsing: camt.053 statements, camt.052
//! intraday account reports and camt.054 debit/credit notifications share their entry
//! structure (`Ntry`), and one parser reads all three, in every `.001.xx` version.
//!
//! The document is streamed: the elements above the statements are walked event by event, and
//! each child of a `Stmt` (`Rpt`, `Ntfctn`) (`Id`, `Acct`, one `Bal`, one `Ntry`, …) is read into
//! a small tree, turned into statement data and dropped. Memory therefore follows the largest
//! single entry, not the file. Element names are compared by local name, so any namespace prefix
//! works.

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use crate::text::{
    LineCounter, amount_minor, amount_positive, check_entry_count, check_size, field, iso_date, reference_field,
};
use crate::{
    BalancePoint, Entry, EntryDetail, Format, Note, OtherAmount, ParseOptions, STATEMENTS_PER_FILE_MAX, Scales,
    Statement, StatementError, StatementFile, XML_DEPTH_MAX, encoding, push_note,
};

const ISO20022_NAMESPACE_PREFIX: &str = "urn:iso:std:iso:20022:";
const CAMT_NAMESPACE_PREFIX: &str = "urn:iso:std:iso:20022:tech:xsd:camt.";

/// The most elements one child of a statement (normally one `Ntry`) may hold. A batch of
/// thousands of transactions stays far below; the bound caps the memory one hostile entry can
/// take.
const SUBTREE_ELEMENTS_MAX: usize = 1_000_000;

/// Elements that repeat among their siblings: their paths carry a 1-based index (`Ntry[3]`).
const REPEATING_ELEMENTS: [&str; 5] = ["Bal", "Ntry", "NtryDtls", "TxDtls", "Ustrd"];

/// The statement elements: the first one's path carries no index (`Stmt`), later ones do
/// (`Stmt[2]`), so that a one-statement file keeps its short paths.
const STATEMENT_ELEMENTS: [&str; 3] = ["Stmt", "Rpt", "Ntfctn"];

/// The three messages: format, namespace message name, root child, statement element.
const MESSAGES: [(Format, &str, &str, &str); 3] = [
    (Format::Camt053, "camt.053", "BkToCstmrStmt", "Stmt"),
    (Format::Camt052, "camt.052", "BkToCstmrAcctRpt", "Rpt"),
    (Format::Camt054, "camt.054", "BkToCstmrDbtCdtNtfctn", "Ntfctn"),
];

/// Parses a camt.053, camt.052 or camt.054 document (any `.001.xx` version): every statement,
/// report or notification it holds.
pub fn parse_camt(bytes: &[u8], options: &ParseOptions<'_>) -> Result<StatementFile, StatementError> {
    check_size(bytes)?;
    let declared = options.encoding.or_else(|| xml_declared_encoding(bytes));
    let decoded = encoding::decode(bytes, declared)?;
    let mut notes = Vec::new();
    if let Some(note) = decoded.note {
        push_note(&mut notes, note);
    }
    let mut xml = XmlReader::new(&decoded.text);
    let root = xml.prolog()?;
    let root_name = local_name(&root)?;
    if root_name != "Document" {
        return Err(StatementError::unsupported(
            xml.location(),
            format!("the root element is <{root_name}>, not a camt <Document>"),
        ));
    }
    // A camt.05x namespace settles the message; another ISO 20022 namespace (camt.060, pain) is
    // another message; without any, the root child decides.
    let namespaces = namespaces(&xml, &root)?;
    let mut message: Option<(Format, String)> = None;
    for namespace in &namespaces {
        let Some(name) = namespace.strip_prefix(CAMT_NAMESPACE_PREFIX) else { continue };
        if let Some((format, ..)) = MESSAGES.iter().find(|(_, prefix, ..)| name.starts_with(&prefix[5..])) {
            message = Some((*format, format!("camt.{}", crate::text::clip(name))));
        }
    }
    let other_iso = namespaces.iter().find(|namespace| namespace.starts_with(ISO20022_NAMESPACE_PREFIX));
    if let (None, Some(other)) = (&message, other_iso) {
        return Err(StatementError::unsupported(
            xml.location(),
            format!("namespace {} is not camt.053, camt.052 or camt.054", crate::text::clip(other)),
        ));
    }

    let mut statements: Vec<Statement> = Vec::new();
    let mut document_path = String::new();
    let mut document_line = 1;
    let mut format_found: Option<Format> = None;
    let mut entries_in_file = 0usize;
    xml.for_each_child(&mut |xml, child| {
        let name = local_name(&child)?;
        let known = MESSAGES.iter().find(|(_, _, root_child, _)| *root_child == name);
        let Some((format, _, _, statement_element)) = known else {
            return Err(StatementError::unsupported(
                xml.location(),
                format!("<Document> holds <{name}>, not a camt.053, camt.052 or camt.054 message"),
            ));
        };
        if let Some((declared, _)) = &message
            && declared != format
        {
            return Err(StatementError::unsupported(
                xml.location(),
                format!("the namespace says {declared}, but <Document> holds <{name}>"),
            ));
        }
        format_found = Some(*format);
        document_path = xml.path();
        document_line = xml.line_of_current();
        xml.for_each_child(&mut |xml, child| {
            if local_name(&child)? != *statement_element {
                // GrpHdr carries the message id and creation time, nothing the statement needs;
                // it is still read to the end so that it must be well-formed.
                xml.read_subtree(&child)?;
                return Ok(());
            }
            if statements.len() >= STATEMENTS_PER_FILE_MAX {
                return Err(StatementError::too_large(
                    xml.location(),
                    format!("more than {STATEMENTS_PER_FILE_MAX} statements in one file"),
                ));
            }
            let mut builder = Builder::new(*format, options.scales, xml.path(), xml.line_of_current(), entries_in_file);
            xml.for_each_child(&mut |xml, child| {
                let path = xml.path();
                let node = xml.read_subtree(&child)?;
                builder.add(&node, &path)
            })?;
            entries_in_file = builder.entries_in_file;
            statements.push(builder.finish()?);
            Ok(())
        })
    })?;
    xml.epilog()?;
    let Some(format) = format_found.or(message.as_ref().map(|(format, _)| *format)) else {
        return Err(StatementError::malformed(
            format!("Document (line {})", xml.line_of_current()),
            "missing element BkToCstmrStmt (or BkToCstmrAcctRpt, BkToCstmrDbtCdtNtfctn)",
        ));
    };
    if statements.is_empty() {
        let element = MESSAGES.iter().find(|(known, ..)| *known == format).map_or("Stmt", |(_, _, _, element)| element);
        let path = if document_path.is_empty() { "Document".to_owned() } else { document_path };
        return Err(StatementError::malformed(
            format!("{path} (line {document_line})"),
            format!("missing element {element}"),
        ));
    }
    Ok(StatementFile {
        format,
        message: message.map(|(_, name)| name),
        encoding: decoded.encoding.to_owned(),
        statements,
        notes,
    })
}

/// The `encoding` of an XML declaration at the start of the bytes (`<?xml version="1.0"
/// encoding="ISO-8859-1"?>`), read before the text is decoded: the declaration is ASCII in every
/// character set a camt file may use (UTF-16 is recognised by its byte order mark).
fn xml_declared_encoding(bytes: &[u8]) -> Option<&str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = bytes[start..].strip_prefix(b"<?xml")?;
    let end = rest.windows(2).position(|pair| pair == b"?>")?;
    let declaration = std::str::from_utf8(&rest[..end]).ok()?;
    let after = &declaration[declaration.find("encoding")? + "encoding".len()..];
    let after = after.trim_start().strip_prefix('=')?.trim_start();
    let quote = after.chars().next().filter(|quote| *quote == '"' || *quote == '\'')?;
    let value = &after[1..];
    value.find(quote).map(|close| &value[..close])
}

/// One element read into memory: local name, attributes, text and children.
#[derive(Debug)]
struct Node {
    name: String,
    /// (qualified name, unescaped value)
    attributes: Vec<(String, String)>,
    text: String,
    children: Vec<Node>,
    line: usize,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|child| child.name == name)
    }

    fn children_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Node> + 's {
        self.children.iter().filter(move |child| child.name == name)
    }

    fn descend(&self, names: &[&str]) -> Option<&Node> {
        names.iter().try_fold(self, |node, name| node.child(name))
    }

    fn text(&self) -> &str {
        self.text.trim()
    }

    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(key, _)| qualified_matches(key, name)).map(|(_, value)| value.as_str())
    }
}

fn qualified_matches(qualified: &str, local: &str) -> bool {
    qualified == local || qualified.rsplit_once(':').is_some_and(|(_, name)| name == local)
}

fn at(path: &str, node: &Node) -> String {
    format!("{path} (line {})", node.line)
}

/// One open element while streaming: its path label and how many children of each name it has
/// seen so far (for the `[index]` of repeating elements).
struct Open {
    label: String,
    child_counts: Vec<(String, usize)>,
}

/// A quick-xml reader that knows the line and element path of every event, refuses DTDs and
/// resolves only the predefined and character entities.
struct XmlReader<'a> {
    reader: Reader<&'a [u8]>,
    /// Events only move forward, so the whole file is counted for line numbers once.
    lines: LineCounter<'a>,
    open: Vec<Open>,
    root_counts: Vec<(String, usize)>,
    current_line: usize,
}

impl<'a> XmlReader<'a> {
    fn new(text: &'a str) -> Self {
        let mut reader = Reader::from_reader(text.as_bytes());
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        config.trim_text(false);
        XmlReader {
            reader,
            lines: LineCounter::new(text.as_bytes()),
            open: Vec::new(),
            root_counts: Vec::new(),
            current_line: 1,
        }
    }

    fn line_at(&mut self, offset: u64) -> usize {
        self.lines.line_at(usize::try_from(offset).unwrap_or(usize::MAX))
    }

    fn line_of_current(&self) -> usize {
        self.current_line
    }

    fn path(&self) -> String {
        let labels: Vec<&str> = self.open.iter().map(|open| open.label.as_str()).collect();
        labels.join("/")
    }

    fn location(&self) -> String {
        let path = self.path();
        if path.is_empty() {
            format!("line {}", self.current_line)
        } else {
            format!("{path} (line {})", self.current_line)
        }
    }

    /// The next event; start and end tags update the open-element path.
    fn next(&mut self) -> Result<Event<'a>, StatementError> {
        let start = self.reader.buffer_position();
        let event = match self.reader.read_event() {
            Ok(event) => event,
            Err(error) => {
                let error_position = self.reader.error_position();
                self.current_line = self.line_at(error_position);
                return Err(StatementError::malformed(self.location(), format!("XML is not well-formed: {error}")));
            }
        };
        self.current_line = self.line_at(start);
        match &event {
            Event::Start(start) => {
                let name = local_name(start)?;
                if self.open.len() >= XML_DEPTH_MAX {
                    return Err(StatementError::too_large(
                        self.location(),
                        format!("XML nesting deeper than {XML_DEPTH_MAX} levels"),
                    ));
                }
                let counts = match self.open.last_mut() {
                    Some(parent) => &mut parent.child_counts,
                    None => &mut self.root_counts,
                };
                let index = match counts.iter_mut().find(|(seen, _)| *seen == name) {
                    Some((_, count)) => {
                        *count += 1;
                        *count
                    }
                    None => {
                        counts.push((name.clone(), 1));
                        1
                    }
                };
                let repeating = REPEATING_ELEMENTS.contains(&name.as_str())
                    || (STATEMENT_ELEMENTS.contains(&name.as_str()) && index > 1);
                let label = if repeating { format!("{name}[{index}]") } else { name };
                self.open.push(Open { label, child_counts: Vec::new() });
            }
            Event::End(_) => {
                self.open.pop();
            }
            Event::DocType(_) => {
                return Err(StatementError::unsupported(
                    self.location(),
                    "XML with a DOCTYPE is refused: DTDs and entity declarations are not accepted",
                ));
            }
            _ => {}
        }
        Ok(event)
    }

    /// Reads up to the root element.
    fn prolog(&mut self) -> Result<BytesStart<'a>, StatementError> {
        loop {
            match self.next()? {
                // The declaration's encoding was honoured when the bytes were decoded.
                Event::Decl(_) => {}
                Event::Start(start) => return Ok(start),
                Event::Text(text) if text.iter().all(u8::is_ascii_whitespace) => {}
                Event::Comment(_) | Event::PI(_) => {}
                Event::Eof => {
                    return Err(StatementError::malformed(self.location(), "the document has no root element"));
                }
                _ => {
                    return Err(StatementError::malformed(
                        self.location(),
                        "unexpected content before the root element",
                    ));
                }
            }
        }
    }

    /// After the root element only whitespace, comments and processing instructions may follow.
    fn epilog(&mut self) -> Result<(), StatementError> {
        loop {
            match self.next()? {
                Event::Eof => return Ok(()),
                Event::Text(text) if text.iter().all(u8::is_ascii_whitespace) => {}
                Event::Comment(_) | Event::PI(_) => {}
                _ => {
                    return Err(StatementError::malformed(
                        self.location(),
                        "unexpected content after the root element",
                    ));
                }
            }
        }
    }

    /// Calls `on_child` for each child element of the element just opened and returns at its end
    /// tag. `on_child` must consume the child up to and including its end tag.
    fn for_each_child(
        &mut self,
        on_child: &mut dyn FnMut(&mut Self, BytesStart<'a>) -> Result<(), StatementError>,
    ) -> Result<(), StatementError> {
        let depth = self.open.len();
        loop {
            match self.next()? {
                Event::Start(start) => {
                    on_child(self, start)?;
                    if self.open.len() != depth {
                        // A handler that stops early would leave the path wrong for everything after.
                        return Err(StatementError::malformed(self.location(), "element not read to its end"));
                    }
                }
                Event::End(_) => return Ok(()),
                Event::Eof => return Err(self.truncated()),
                // Element-only content: whitespace, comments and stray text between children are
                // not part of any value.
                _ => {}
            }
        }
    }

    fn truncated(&self) -> StatementError {
        StatementError::malformed(self.location(), "the document ends before this element is closed (truncated?)")
    }

    /// Reads the element just opened (by `start`) with everything inside it.
    fn read_subtree(&mut self, start: &BytesStart<'a>) -> Result<Node, StatementError> {
        let mut stack = vec![self.node(start)?];
        let mut elements_count = 1usize;
        loop {
            let event = self.next()?;
            match event {
                Event::Start(start) => {
                    elements_count += 1;
                    if elements_count > SUBTREE_ELEMENTS_MAX {
                        return Err(StatementError::too_large(
                            self.location(),
                            format!("more than {SUBTREE_ELEMENTS_MAX} elements in one element"),
                        ));
                    }
                    let node = self.node(&start)?;
                    stack.push(node);
                }
                Event::End(_) => {
                    let Some(done) = stack.pop() else {
                        return Err(StatementError::malformed(self.location(), "unbalanced end tag"));
                    };
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => return Ok(done),
                    }
                }
                Event::Text(text) => {
                    let decoded = text.decode().map_err(|error| {
                        StatementError::malformed(self.location(), format!("text cannot be decoded: {error}"))
                    })?;
                    push_text(&mut stack, &decoded);
                }
                Event::CData(data) => {
                    let decoded = data.decode().map_err(|error| {
                        StatementError::malformed(self.location(), format!("CDATA cannot be decoded: {error}"))
                    })?;
                    push_text(&mut stack, &decoded);
                }
                Event::GeneralRef(reference) => {
                    let resolved = match reference.resolve_char_ref() {
                        Ok(Some(character)) => character.to_string(),
                        Ok(None) => {
                            let name = reference.decode().map_err(|error| {
                                StatementError::malformed(self.location(), format!("bad entity reference: {error}"))
                            })?;
                            match quick_xml::escape::resolve_predefined_entity(&name) {
                                Some(value) => value.to_owned(),
                                None => {
                                    return Err(StatementError::malformed(
                                        self.location(),
                                        format!("unknown entity &{};", crate::text::clip(&name)),
                                    ));
                                }
                            }
                        }
                        Err(error) => {
                            return Err(StatementError::malformed(
                                self.location(),
                                format!("bad character reference: {error}"),
                            ));
                        }
                    };
                    push_text(&mut stack, &resolved);
                }
                // Self-closing tags arrive as start and end (expand_empty_elements); this arm is
                // kept so that a change of that setting cannot lose elements.
                Event::Empty(start) => {
                    let node = self.node(&start)?;
                    if let Some(parent) = stack.last_mut() {
                        parent.children.push(node);
                    }
                }
                Event::Eof => return Err(self.truncated()),
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) | Event::DocType(_) => {}
            }
        }
    }

    fn node(&self, start: &BytesStart<'a>) -> Result<Node, StatementError> {
        let mut attributes = Vec::new();
        for attribute in start.attributes() {
            let attribute = attribute
                .map_err(|error| StatementError::malformed(self.location(), format!("bad attribute: {error}")))?;
            let key = std::str::from_utf8(attribute.key.as_ref())
                .map_err(|_| StatementError::malformed(self.location(), "attribute name is not UTF-8"))?
                .to_owned();
            let value = attribute
                .decode_and_unescape_value(self.reader.decoder())
                .map_err(|error| StatementError::malformed(self.location(), format!("bad attribute value: {error}")))?
                .into_owned();
            attributes.push((key, value));
        }
        Ok(Node {
            name: local_name(start)?,
            attributes,
            text: String::new(),
            children: Vec::new(),
            line: self.current_line,
        })
    }
}

fn push_text(stack: &mut [Node], text: &str) {
    if let Some(node) = stack.last_mut() {
        node.text.push_str(text);
    }
}

fn local_name(start: &BytesStart<'_>) -> Result<String, StatementError> {
    let name = start.local_name();
    std::str::from_utf8(name.as_ref())
        .map(str::to_owned)
        .map_err(|_| StatementError::malformed("XML", "element name is not UTF-8"))
}

/// The namespace URIs declared on an element (`xmlns` and `xmlns:prefix`).
fn namespaces(xml: &XmlReader<'_>, start: &BytesStart<'_>) -> Result<Vec<String>, StatementError> {
    let mut found = Vec::new();
    for attribute in start.attributes() {
        let attribute =
            attribute.map_err(|error| StatementError::malformed(xml.location(), format!("bad attribute: {error}")))?;
        let key = attribute.key.as_ref();
        if key == b"xmlns" || key.starts_with(b"xmlns:") {
            found.push(String::from_utf8_lossy(&attribute.value).into_owned());
        }
    }
    Ok(found)
}

/// What has been read of one `Stmt` (`Rpt`, `Ntfctn`) so far.
struct Builder<'s> {
    format: Format,
    scales: Scales<'s>,
    statement_path: String,
    statement_line: usize,
    statement_id: Option<String>,
    electronic_sequence: Option<String>,
    legal_sequence: Option<String>,
    account: Option<String>,
    /// The statement currency, once seen.
    currency: Option<String>,
    opening_booked: Option<BalancePoint>,
    opening_previous: Option<BalancePoint>,
    closing: Option<BalancePoint>,
    entries: Vec<Entry>,
    notes: Vec<Note>,
    /// Entries of the whole file so far, this statement's included: the file is bounded too.
    entries_in_file: usize,
}

impl<'s> Builder<'s> {
    fn new(
        format: Format,
        scales: Scales<'s>,
        statement_path: String,
        statement_line: usize,
        entries_in_file: usize,
    ) -> Self {
        Builder {
            format,
            scales,
            statement_path,
            statement_line,
            statement_id: None,
            electronic_sequence: None,
            legal_sequence: None,
            account: None,
            currency: None,
            opening_booked: None,
            opening_previous: None,
            closing: None,
            entries: Vec::new(),
            notes: Vec::new(),
            entries_in_file,
        }
    }

    fn add(&mut self, node: &Node, path: &str) -> Result<(), StatementError> {
        match node.name.as_str() {
            "Id" => self.statement_id = field(node.text(), &at(path, node), "statement Id")?,
            "ElctrncSeqNb" => self.electronic_sequence = field(node.text(), &at(path, node), "ElctrncSeqNb")?,
            "LglSeqNb" => self.legal_sequence = field(node.text(), &at(path, node), "LglSeqNb")?,
            "Acct" => self.add_account(node, path)?,
            "Bal" => self.add_balance(node, path)?,
            "Ntry" => self.add_entry(node, path)?,
            // CreDtTm, FrToDt, TxsSummry, AddtlStmtInf and the like describe the statement but
            // carry nothing an import needs.
            _ => {}
        }
        Ok(())
    }

    fn add_account(&mut self, acct: &Node, path: &str) -> Result<(), StatementError> {
        let id = acct
            .descend(&["Id", "IBAN"])
            .map(|node| (node, format!("{path}/Id/IBAN")))
            .or_else(|| acct.descend(&["Id", "Othr", "Id"]).map(|node| (node, format!("{path}/Id/Othr/Id"))));
        let Some((id, id_path)) = id else {
            return Err(StatementError::malformed(at(path, acct), "missing element Id/IBAN (or Id/Othr/Id)"));
        };
        self.account = field(id.text(), &at(&id_path, id), "account id")?;
        if self.account.is_none() {
            return Err(StatementError::malformed(at(&id_path, id), "the account id is empty"));
        }
        if let Some(currency) = acct.child("Ccy") {
            self.check_currency(currency.text(), &at(&format!("{path}/Ccy"), currency))?;
        }
        Ok(())
    }

    /// The first currency seen is the statement's; every later one must equal it.
    fn check_currency(&mut self, currency: &str, location: &str) -> Result<(), StatementError> {
        check_currency_code(currency, location)?;
        match &self.currency {
            None => self.currency = Some(currency.to_owned()),
            Some(expected) if expected != currency => {
                return Err(StatementError::CurrencyMismatch {
                    location: location.to_owned(),
                    expected: expected.clone(),
                    found: currency.to_owned(),
                });
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// An `Amt` element's magnitude in minor units of its currency, its `Ccy` checked against the
    /// statement's.
    fn amount(&mut self, amt: &Node, path: &str, positive: bool) -> Result<i128, StatementError> {
        let location = at(path, amt);
        let Some(currency) = amt.attribute("Ccy") else {
            return Err(StatementError::malformed(location, "Amt has no Ccy attribute"));
        };
        let currency = currency.trim().to_owned();
        self.check_currency(&currency, &location)?;
        let scale = self.scales.of(&currency, &location)?;
        if positive {
            amount_positive(amt.text(), scale, &location)
        } else {
            amount_minor(amt.text(), scale, &location)
        }
    }

    /// An amount beside the booked one (instructed amount, charges), in any currency: minor units
    /// only when it is the statement's currency.
    fn other_amount(&self, amt: &Node, path: &str) -> Result<OtherAmount, StatementError> {
        let location = at(path, amt);
        let Some(currency) = amt.attribute("Ccy").map(str::trim) else {
            return Err(StatementError::malformed(location, "Amt has no Ccy attribute"));
        };
        check_currency_code(currency, &location)?;
        let text = amt.text();
        // Read at the largest scale first: the text must be a decimal amount whatever its currency.
        amount_minor(text, tally_core::amount::SCALE_MAX, &location)?;
        let minor = match &self.currency {
            Some(statement_currency) if statement_currency == currency => {
                Some(amount_minor(text, self.scales.of(currency, &location)?, &location)?)
            }
            _ => None,
        };
        Ok(OtherAmount { currency: currency.to_owned(), amount: text.to_owned(), minor })
    }

    fn add_balance(&mut self, bal: &Node, path: &str) -> Result<(), StatementError> {
        let code = bal
            .descend(&["Tp", "CdOrPrtry", "Cd"])
            .or_else(|| bal.descend(&["Tp", "CdOrPrtry", "Prtry"]))
            .map(Node::text)
            .ok_or_else(|| StatementError::malformed(at(path, bal), "missing element Tp/CdOrPrtry/Cd"))?;
        let already_seen = match code {
            "OPBD" => self.opening_booked.is_some(),
            "PRCD" => self.opening_previous.is_some(),
            "CLBD" => self.closing.is_some(),
            // Available, interim and forward balances are not the booked balances the entries
            // add up between, so they are not checked or kept.
            _ => return Ok(()),
        };
        if already_seen {
            return Err(StatementError::malformed(at(path, bal), format!("a second {code} balance")));
        }
        let amt_path = format!("{path}/Amt");
        let amt = bal.child("Amt").ok_or_else(|| StatementError::malformed(at(path, bal), "missing element Amt"))?;
        let magnitude = self.amount(amt, &amt_path, false)?;
        let sign = credit_debit(bal, path)?;
        let date_node =
            bal.child("Dt").ok_or_else(|| StatementError::malformed(at(path, bal), "missing element Dt"))?;
        let date = date_choice(date_node, &format!("{path}/Dt"))?;
        let point = BalancePoint { date, amount: sign * magnitude };
        match code {
            "OPBD" => self.opening_booked = Some(point),
            "PRCD" => self.opening_previous = Some(point),
            _ => self.closing = Some(point),
        }
        Ok(())
    }

    /// The entry's status: `None` for booked (`BOOK`, or no status), else the code. camt.053.001.02
    /// writes `<Sts>BOOK</Sts>`, later versions `<Sts><Cd>BOOK</Cd></Sts>`.
    fn status(ntry: &Node) -> Option<&str> {
        let status = ntry.child("Sts")?;
        let code = status.child("Cd").or_else(|| status.child("Prtry")).map_or(status.text(), Node::text);
        (code != "BOOK").then_some(code)
    }

    fn add_entry(&mut self, ntry: &Node, path: &str) -> Result<(), StatementError> {
        let location = at(path, ntry);
        if let Some(status) = Self::status(ntry) {
            // Pending and informational entries are not booked: the balances do not include them,
            // and no ledger posting answers them yet.
            let detail = format!(
                "entry status {:?}: only booked entries (BOOK) are imported; skipped",
                crate::text::clip(status)
            );
            push_note(&mut self.notes, Note::new("entry_not_booked", location, detail));
            return Ok(());
        }
        check_entry_count(self.entries.len(), &location)?;
        check_entry_count(self.entries_in_file, &location)?;
        let amt = ntry.child("Amt").ok_or_else(|| StatementError::malformed(&location, "missing element Amt"))?;
        let magnitude = self.amount(amt, &format!("{path}/Amt"), true)?;
        let sign = credit_debit(ntry, path)?;
        let amount = sign * magnitude;
        let reversal = match ntry.child("RvslInd") {
            None => false,
            Some(node) => match node.text() {
                "true" | "1" => true,
                "false" | "0" => false,
                other => {
                    return Err(StatementError::malformed(
                        at(&format!("{path}/RvslInd"), node),
                        format!("RvslInd {:?} is neither true nor false", crate::text::clip(other)),
                    ));
                }
            },
        };
        let value_date = match ntry.child("ValDt") {
            Some(node) => Some(date_choice(node, &format!("{path}/ValDt"))?),
            None => None,
        };
        // A booked entry has a booking date; a bank that only gives the value date books on it.
        let booking_date = match (ntry.child("BookgDt"), value_date) {
            (Some(node), _) => date_choice(node, &format!("{path}/BookgDt"))?,
            (None, Some(value_date)) => value_date,
            (None, None) => return Err(StatementError::malformed(&location, "missing element BookgDt")),
        };
        let mut bank_reference = optional_text(ntry, "AcctSvcrRef", path, true)?;
        let entry_reference = optional_text(ntry, "NtryRef", path, true)?;
        let bank_code = bank_code(ntry, path)?;
        let additional_info = optional_text(ntry, "AddtlNtryInf", path, false)?;

        let mut transactions: Vec<(&Node, String)> = Vec::new();
        let mut declared_count: Option<u64> = None;
        let mut batch_id: Option<String> = None;
        for (dtls_index, dtls) in ntry.children_named("NtryDtls").enumerate() {
            let dtls_path = format!("{path}/NtryDtls[{}]", dtls_index + 1);
            if let Some(batch) = dtls.child("Btch") {
                if let Some(count) = batch.child("NbOfTxs") {
                    let parsed: u64 = count.text().parse().map_err(|_| {
                        StatementError::malformed(
                            at(&format!("{dtls_path}/Btch/NbOfTxs"), count),
                            format!("NbOfTxs {:?} is not a count", crate::text::clip(count.text())),
                        )
                    })?;
                    declared_count = Some(declared_count.unwrap_or(0).saturating_add(parsed));
                }
                if batch_id.is_none() {
                    batch_id = optional_text(batch, "PmtInfId", &format!("{dtls_path}/Btch"), true)?;
                }
            }
            for (tx_index, tx) in dtls.children_named("TxDtls").enumerate() {
                transactions.push((tx, format!("{dtls_path}/TxDtls[{}]", tx_index + 1)));
            }
        }
        if let Some(declared) = declared_count {
            let present = u64::try_from(transactions.len()).unwrap_or(u64::MAX);
            if present > 0 && present != declared {
                return Err(StatementError::malformed(
                    &location,
                    format!("Btch/NbOfTxs says {declared} transactions but {present} TxDtls are present"),
                ));
            }
        }

        let mut entry = Entry {
            location: path.rsplit('/').next().unwrap_or(path).to_owned(),
            booking_date,
            value_date,
            amount,
            reversal,
            reference: None,
            bank_reference: None,
            end_to_end_id: None,
            counterparty: None,
            counterparty_iban: None,
            description: additional_info.clone(),
            bank_code,
            original_amount: None,
            charges: self.charges(ntry, path)?,
            details: Vec::new(),
        };
        match transactions.as_slice() {
            [] => {
                entry.reference = bank_reference.clone().or(entry_reference);
            }
            [(tx, tx_path)] => {
                let tx_bank_reference = optional_text_at(tx, &["Refs", "AcctSvcrRef"], tx_path, true)?;
                bank_reference = bank_reference.or(tx_bank_reference);
                entry.end_to_end_id = end_to_end_id(tx, tx_path)?;
                entry.reference = entry.end_to_end_id.clone().or_else(|| bank_reference.clone()).or(entry_reference);
                let debtor = other_party_is_debtor(sign, reversal);
                entry.counterparty = counterparty(tx, tx_path, debtor)?;
                entry.counterparty_iban = counterparty_iban(tx, debtor);
                entry.description = remittance_text(tx, tx_path)?
                    .or(optional_text(tx, "AddtlTxInf", tx_path, false)?)
                    .or(additional_info);
                if let Some(instructed) = tx.descend(&["AmtDtls", "InstdAmt", "Amt"]) {
                    entry.original_amount =
                        Some(self.other_amount(instructed, &format!("{tx_path}/AmtDtls/InstdAmt/Amt"))?);
                }
                if let Some(charges) = self.charges(tx, tx_path)? {
                    entry.charges = Some(charges);
                }
            }
            several => {
                let mut details_total: i128 = 0;
                for (tx, tx_path) in several {
                    let detail = self.detail(tx, tx_path, sign, reversal)?;
                    details_total = details_total.saturating_add(detail.amount);
                    entry.details.push(detail);
                }
                if details_total != amount {
                    return Err(StatementError::DetailsMismatch {
                        location: format!("{path}/NtryDtls (line {})", ntry.line),
                        entry_amount: amount,
                        details_total,
                    });
                }
                entry.reference = batch_id.or_else(|| bank_reference.clone()).or(entry_reference);
            }
        }
        entry.bank_reference = bank_reference;
        self.entries.push(entry);
        self.entries_in_file += 1;
        Ok(())
    }

    /// The charges of an entry or transaction: `Chrgs/TtlChrgsAndTaxAmt` (camt.053.001.04 on),
    /// else the one `Chrgs/Rcrd/Amt`, else `Chrgs/Amt` (camt.053.001.02). Several records
    /// without a total are not added up here (they may differ in currency and in who bears them).
    fn charges(&self, parent: &Node, path: &str) -> Result<Option<OtherAmount>, StatementError> {
        let Some(charges) = parent.child("Chrgs") else {
            return Ok(None);
        };
        let charges_path = format!("{path}/Chrgs");
        if let Some(total) = charges.child("TtlChrgsAndTaxAmt") {
            return Ok(Some(self.other_amount(total, &format!("{charges_path}/TtlChrgsAndTaxAmt"))?));
        }
        let records: Vec<&Node> = charges.children_named("Rcrd").collect();
        if let [record] = records.as_slice()
            && let Some(amt) = record.child("Amt")
        {
            return Ok(Some(self.other_amount(amt, &format!("{charges_path}/Rcrd/Amt"))?));
        }
        match charges.child("Amt") {
            Some(amt) => Ok(Some(self.other_amount(amt, &format!("{charges_path}/Amt"))?)),
            None => Ok(None),
        }
    }

    /// One transaction of a batched entry: it must carry its own amount so the batch can be
    /// checked and split.
    fn detail(
        &mut self,
        tx: &Node,
        tx_path: &str,
        entry_sign: i128,
        reversal: bool,
    ) -> Result<EntryDetail, StatementError> {
        let (amt, amt_path) = match tx.child("Amt") {
            Some(amt) => (amt, format!("{tx_path}/Amt")),
            None => match tx.descend(&["AmtDtls", "TxAmt", "Amt"]) {
                Some(amt) => (amt, format!("{tx_path}/AmtDtls/TxAmt/Amt")),
                None => {
                    return Err(StatementError::malformed(
                        at(tx_path, tx),
                        "a transaction of a batched entry has no Amt (or AmtDtls/TxAmt/Amt)",
                    ));
                }
            },
        };
        let magnitude = self.amount(amt, &amt_path, true)?;
        let sign = if tx.child("CdtDbtInd").is_some() { credit_debit(tx, tx_path)? } else { entry_sign };
        Ok(EntryDetail {
            amount: sign * magnitude,
            reference: end_to_end_id(tx, tx_path)?.or(optional_text_at(tx, &["Refs", "AcctSvcrRef"], tx_path, true)?),
            counterparty: counterparty(tx, tx_path, other_party_is_debtor(sign, reversal))?,
        })
    }

    fn finish(self) -> Result<Statement, StatementError> {
        let statement_location = format!("{} (line {})", self.statement_path, self.statement_line);
        let statement_id =
            self.statement_id.ok_or_else(|| StatementError::malformed(&statement_location, "missing element Id"))?;
        let account =
            self.account.ok_or_else(|| StatementError::malformed(&statement_location, "missing element Acct"))?;
        let opening = self.opening_booked.or(self.opening_previous);
        let closing = self.closing;
        // A statement is between two booked balances; a report or notification may carry none.
        if self.format == Format::Camt053 {
            if opening.is_none() {
                return Err(StatementError::malformed(
                    &statement_location,
                    "missing opening balance (Bal with Tp/CdOrPrtry/Cd OPBD or PRCD)",
                ));
            }
            if closing.is_none() {
                return Err(StatementError::malformed(
                    &statement_location,
                    "missing closing balance (Bal with Tp/CdOrPrtry/Cd CLBD)",
                ));
            }
        }
        Ok(Statement {
            format: self.format,
            statement_id,
            account,
            currency: self.currency,
            sequence: self.electronic_sequence.or(self.legal_sequence),
            opening,
            closing,
            entries: self.entries,
            pages: 1,
            notes: self.notes,
        })
    }
}

/// A three-letter ISO 4217 code, or `statement_malformed`.
fn check_currency_code(currency: &str, location: &str) -> Result<(), StatementError> {
    let valid = currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase());
    if !valid {
        return Err(StatementError::malformed(
            location,
            format!("currency {:?} is not an ISO 4217 code", crate::text::clip(currency)),
        ));
    }
    Ok(())
}

/// `CdtDbtInd` of an element: CRDT is +1, DBIT is -1, anything else is refused.
fn credit_debit(parent: &Node, path: &str) -> Result<i128, StatementError> {
    let Some(indicator) = parent.child("CdtDbtInd") else {
        return Err(StatementError::malformed(at(path, parent), "missing element CdtDbtInd"));
    };
    match indicator.text() {
        "CRDT" => Ok(1),
        "DBIT" => Ok(-1),
        other => Err(StatementError::malformed(
            at(&format!("{path}/CdtDbtInd"), indicator),
            format!("unknown CdtDbtInd {:?}: expected CRDT or DBIT", crate::text::clip(other)),
        )),
    }
}

/// A `DateAndDateTimeChoice`: `Dt` or the date of `DtTm`.
fn date_choice(choice: &Node, path: &str) -> Result<time::Date, StatementError> {
    if let Some(date) = choice.child("Dt") {
        return iso_date(date.text(), &at(&format!("{path}/Dt"), date));
    }
    if let Some(date_time) = choice.child("DtTm") {
        return iso_date(date_time.text(), &at(&format!("{path}/DtTm"), date_time));
    }
    Err(StatementError::malformed(at(path, choice), "missing element Dt (or DtTm)"))
}

fn optional_text(parent: &Node, name: &str, path: &str, is_reference: bool) -> Result<Option<String>, StatementError> {
    optional_text_at(parent, &[name], path, is_reference)
}

fn optional_text_at(
    parent: &Node,
    names: &[&str],
    path: &str,
    is_reference: bool,
) -> Result<Option<String>, StatementError> {
    let Some(node) = parent.descend(names) else {
        return Ok(None);
    };
    let location = at(&format!("{path}/{}", names.join("/")), node);
    let what = names.last().copied().unwrap_or("text");
    if is_reference { reference_field(node.text(), &location, what) } else { field(node.text(), &location, what) }
}

fn end_to_end_id(tx: &Node, tx_path: &str) -> Result<Option<String>, StatementError> {
    optional_text_at(tx, &["Refs", "EndToEndId"], tx_path, true)
}

/// For money in, the other party is the debtor; for money out, the creditor. A reversal keeps
/// the parties of the payment it reverses, so the roles flip.
fn other_party_is_debtor(sign: i128, reversal: bool) -> bool {
    (sign > 0) != reversal
}

/// The other party's name: `RltdPties/Dbtr` or `/Cdtr`, with the name directly below (camt.053.001.02)
/// or under `Pty` (later versions).
fn counterparty(tx: &Node, tx_path: &str, debtor: bool) -> Result<Option<String>, StatementError> {
    let role = if debtor { "Dbtr" } else { "Cdtr" };
    for names in [["RltdPties", role, "Nm"].as_slice(), ["RltdPties", role, "Pty", "Nm"].as_slice()] {
        if tx.descend(names).is_some() {
            return optional_text_at(tx, names, tx_path, false);
        }
    }
    Ok(None)
}

/// The other party's IBAN: `RltdPties/DbtrAcct/Id/IBAN` or `/CdtrAcct/Id/IBAN`, when its check
/// digits hold.
fn counterparty_iban(tx: &Node, debtor: bool) -> Option<String> {
    let role = if debtor { "DbtrAcct" } else { "CdtrAcct" };
    let iban = crate::normalize_account(tx.descend(&["RltdPties", role, "Id", "IBAN"])?.text());
    crate::iban_is_valid(&iban).then_some(iban)
}

/// Unstructured remittance lines joined with a space.
fn remittance_text(tx: &Node, tx_path: &str) -> Result<Option<String>, StatementError> {
    let Some(remittance) = tx.child("RmtInf") else {
        return Ok(None);
    };
    let lines: Vec<&str> = remittance.children_named("Ustrd").map(Node::text).filter(|line| !line.is_empty()).collect();
    field(&lines.join(" "), &at(&format!("{tx_path}/RmtInf"), remittance), "RmtInf/Ustrd")
}

/// `Domn/Cd`, `Domn/Fmly/Cd` and `Domn/Fmly/SubFmlyCd` joined by `/`, else `Prtry/Cd`.
fn bank_code(ntry: &Node, path: &str) -> Result<Option<String>, StatementError> {
    let Some(code) = ntry.child("BkTxCd") else {
        return Ok(None);
    };
    let location = at(&format!("{path}/BkTxCd"), code);
    if let Some(domain) = code.child("Domn") {
        let parts: Vec<&str> =
            [domain.child("Cd"), domain.descend(&["Fmly", "Cd"]), domain.descend(&["Fmly", "SubFmlyCd"])]
                .into_iter()
                .flatten()
                .map(Node::text)
                .filter(|part| !part.is_empty())
                .collect();
        return field(&parts.join("/"), &location, "BkTxCd");
    }
    match code.descend(&["Prtry", "Cd"]) {
        Some(proprietary) => field(proprietary.text(), &location, "BkTxCd/Prtry/Cd"),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    /// A minimal camt.053.001.08 document around the given `Stmt` content.
    fn document(stmt: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
<BkToCstmrStmt>
<GrpHdr><MsgId>M1</MsgId><CreDtTm>2026-03-06T18:00:00</CreDtTm></GrpHdr>
<Stmt>
{stmt}
</Stmt>
</BkToCstmrStmt>
</Document>
"#
        )
    }

    const HEAD: &str = r#"<Id>S1</Id>
<Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>EUR</Ccy></Acct>
<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">100.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-03-01</Dt></Dt></Bal>"#;

    fn closing(amount: &str, indicator: &str) -> String {
        format!(
            r#"<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>{indicator}</CdtDbtInd><Dt><Dt>2026-03-02</Dt></Dt></Bal>"#
        )
    }

    fn entry(amount: &str, indicator: &str, inner: &str) -> String {
        format!(
            r#"<Ntry><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>{indicator}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2026-03-02</Dt></BookgDt>{inner}</Ntry>"#
        )
    }

    fn parse_file(text: &str) -> Result<StatementFile, StatementError> {
        parse_camt(text.as_bytes(), &ParseOptions::with_scale(2))
    }

    fn parse(stmt: &str) -> Result<Statement, StatementError> {
        let mut file = parse_file(&document(stmt))?;
        assert_eq!(file.statements.len(), 1);
        Ok(file.statements.remove(0))
    }

    #[test]
    fn minimal_statement_with_a_debit() {
        let statement = parse(&format!("{HEAD}{}{}", closing("90.00", "CRDT"), entry("10.00", "DBIT", ""))).unwrap();
        assert_eq!(statement.statement_id, "S1");
        assert_eq!(statement.account, "DE89370400440532013000");
        assert_eq!(statement.currency.as_deref(), Some("EUR"));
        assert_eq!(statement.opening, Some(BalancePoint { date: date!(2026 - 03 - 01), amount: 10000 }));
        assert_eq!(statement.entries.len(), 1);
        assert_eq!(statement.entries[0].amount, -1000);
        assert_eq!(statement.entries[0].location, "Ntry[1]");
        assert_eq!(statement.entries[0].value_date, None);
    }

    #[test]
    fn debit_balances_are_negative() {
        let stmt = format!("{HEAD}{}{}", closing("50.00", "DBIT"), entry("150.00", "DBIT", ""));
        let statement = parse(&stmt).unwrap();
        assert_eq!(statement.closing.map(|point| point.amount), Some(-5000));
    }

    #[test]
    fn errors_name_the_element_path() {
        let stmt =
            format!("{HEAD}{}{}{}", closing("90.00", "CRDT"), entry("5.00", "DBIT", ""), entry("5.00", "DBT", ""));
        let error = parse(&stmt).unwrap_err();
        assert_eq!(error.code(), "statement_malformed");
        assert!(error.to_string().contains("Document/BkToCstmrStmt/Stmt/Ntry[2]/CdtDbtInd (line"), "{error}");

        let stmt = format!("{HEAD}{}{}", closing("90.00", "CRDT"), entry("10,00", "DBIT", ""));
        let error = parse(&stmt).unwrap_err();
        assert_eq!(error.code(), "statement_amount_invalid");
        assert!(error.to_string().contains("Ntry[1]/Amt"), "{error}");

        let stmt = format!("{HEAD}{}{}", closing("100.00", "CRDT"), entry("0.00", "DBIT", ""));
        assert_eq!(parse(&stmt).unwrap_err().code(), "statement_amount_invalid");
    }

    #[test]
    fn currency_must_not_change() {
        let stmt =
            format!("{HEAD}{}{}", closing("90.00", "CRDT"), entry("10.00", "DBIT", "").replace("\"EUR\"", "\"USD\""));
        let error = parse(&stmt).unwrap_err();
        assert_eq!(error.code(), "statement_unsupported");
        assert!(matches!(error, StatementError::CurrencyMismatch { .. }));
        assert!(error.to_string().contains("Ntry[1]/Amt"), "{error}");
    }

    #[test]
    fn pending_entries_are_skipped_with_a_note() {
        let pending = entry("10.00", "DBIT", "").replace("<Cd>BOOK</Cd>", "<Cd>PDNG</Cd>");
        let stmt = format!("{HEAD}{}{pending}", closing("100.00", "CRDT"));
        let statement = parse(&stmt).unwrap();
        assert!(statement.entries.is_empty());
        let notes: Vec<(&str, &str)> = statement.notes.iter().map(|n| (n.code, n.location.as_str())).collect();
        assert_eq!(notes, [("entry_not_booked", "Document/BkToCstmrStmt/Stmt/Ntry[1] (line 8)")]);
    }

    #[test]
    fn several_statements_and_other_messages() {
        let second = format!("{}{}", HEAD.replace("<Id>S1", "<Id>S2"), closing("90.00", "CRDT"));
        let two = document(&format!("{HEAD}{}", closing("100.00", "CRDT")))
            .replace("</Stmt>", &format!("</Stmt><Stmt>{second}{}</Stmt>", entry("10.00", "DBIT", "")));
        let file = parse_file(&two).unwrap();
        assert_eq!((file.format, file.message.as_deref()), (Format::Camt053, Some("camt.053.001.08")));
        let ids: Vec<&str> = file.statements.iter().map(|s| s.statement_id.as_str()).collect();
        assert_eq!(ids, ["S1", "S2"]);
        assert_eq!(file.statements[1].entries[0].location, "Ntry[1]");
        // Paths of the second statement carry its index.
        let broken = two.replacen("<CdtDbtInd>DBIT</CdtDbtInd><Sts>", "<CdtDbtInd>DEBIT</CdtDbtInd><Sts>", 1);
        let error = parse_file(&broken).unwrap_err();
        assert!(error.to_string().contains("Document/BkToCstmrStmt/Stmt[2]/Ntry[1]/CdtDbtInd"), "{error}");

        let pain = document(HEAD).replace("camt.053.001.08", "pain.001.001.09");
        assert_eq!(parse_file(&pain).unwrap_err().code(), "statement_unsupported");
        let mixed = document(HEAD).replace("camt.053.001.08", "camt.052.001.08");
        let error = parse_file(&mixed).unwrap_err();
        assert!(error.to_string().contains("the namespace says camt052"), "{error}");
    }

    #[test]
    fn reports_and_notifications_share_the_entry_structure() {
        let report = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.052.001.02"><BkToCstmrAcctRpt><GrpHdr><MsgId>M</MsgId></GrpHdr>
<Rpt><Id>R1</Id><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>{}</Rpt></BkToCstmrAcctRpt></Document>"#,
            entry("10.00", "CRDT", "").replace("<Sts><Cd>BOOK</Cd></Sts>", "<Sts>BOOK</Sts>")
        );
        let file = parse_file(&report).unwrap();
        assert_eq!((file.format, file.message.as_deref()), (Format::Camt052, Some("camt.052.001.02")));
        let statement = &file.statements[0];
        assert_eq!((statement.opening, statement.closing, statement.balance_difference()), (None, None, None));
        assert_eq!((statement.currency.as_deref(), statement.entries[0].amount), (Some("EUR"), 1000));

        let notification = report
            .replace("camt.052.001.02", "camt.054.001.13")
            .replace("BkToCstmrAcctRpt", "BkToCstmrDbtCdtNtfctn")
            .replace("Rpt>", "Ntfctn>");
        let file = parse_file(&notification).unwrap();
        assert_eq!((file.format, file.statements[0].statement_id.as_str()), (Format::Camt054, "R1"));
    }

    #[test]
    fn extracted_fields_of_one_transaction() {
        let tx = r#"<NtryDtls><TxDtls><Refs><EndToEndId>E2E-1</EndToEndId></Refs>
<AmtDtls><InstdAmt><Amt Ccy="EUR">100.00</Amt></InstdAmt></AmtDtls>
<Chrgs><TtlChrgsAndTaxAmt Ccy="EUR">1.50</TtlChrgsAndTaxAmt></Chrgs>
<RltdPties><Dbtr><Pty><Nm>Anna</Nm></Pty></Dbtr><DbtrAcct><Id><IBAN>NL91ABNA0417164300</IBAN></Id></DbtrAcct></RltdPties>
</TxDtls></NtryDtls>"#;
        let stmt = format!("{HEAD}{}{}", closing("198.50", "CRDT"), entry("98.50", "CRDT", tx));
        let entry = parse(&stmt).unwrap().entries.remove(0);
        assert_eq!((entry.end_to_end_id.as_deref(), entry.reference.as_deref()), (Some("E2E-1"), Some("E2E-1")));
        assert_eq!(
            (entry.counterparty.as_deref(), entry.counterparty_iban.as_deref()),
            (Some("Anna"), Some("NL91ABNA0417164300"))
        );
        assert_eq!(
            entry.original_amount.as_ref().map(|a| (a.amount.as_str(), a.minor)),
            Some(("100.00", Some(10_000)))
        );
        assert_eq!(entry.charges.as_ref().and_then(|a| a.minor), Some(150));
        assert_eq!(entry.amount_before_charges(), Some(10_000));
    }

    #[test]
    fn doctype_and_foreign_encodings_are_refused() {
        let with_dtd = document(HEAD).replace("<Document", "<!DOCTYPE Document [<!ENTITY x \"&#x26;\">]>\n<Document");
        let error = parse_file(&with_dtd).unwrap_err();
        assert_eq!(error.code(), "statement_unsupported");
        assert!(error.to_string().contains("DOCTYPE"), "{error}");

        // A declared single-byte set is honoured: "Müller" in ISO-8859-1.
        let mut latin1 = document(&format!("{HEAD}{}", closing("100.00", "CRDT")))
            .replace("UTF-8", "ISO-8859-1")
            .replace("<Id>S1", "<Id>M\u{0}ller")
            .into_bytes();
        let at = latin1.iter().position(|byte| *byte == 0).unwrap();
        latin1[at] = 0xFC;
        let file = parse_camt(&latin1, &ParseOptions::with_scale(2)).unwrap();
        assert_eq!((file.encoding.as_str(), file.statements[0].statement_id.as_str()), ("ISO-8859-1", "Müller"));
        let unknown = document(HEAD).replace("UTF-8", "EBCDIC-XYZ");
        assert_eq!(parse_file(&unknown).unwrap_err().code(), "statement_unsupported");

        let unknown_entity = document(&format!("{HEAD}{}", closing("100.00", "CRDT"))).replace("<Id>S1", "<Id>S&x;1");
        assert_eq!(parse_file(&unknown_entity).unwrap_err().code(), "statement_malformed");
    }

    #[test]
    fn entities_and_prefixes_are_handled() {
        let prefixed =
            document(&format!("{HEAD}{}", closing("100.00", "CRDT"))).replace("<Id>S1</Id>", "<Id>S&amp;1&#x41;</Id>");
        assert_eq!(parse_file(&prefixed).unwrap().statements[0].statement_id, "S&1A");
    }

    #[test]
    fn truncation_names_the_open_element() {
        let full = document(&format!("{HEAD}{}{}", closing("90.00", "CRDT"), entry("10.00", "DBIT", "")));
        let cut = &full[..full.find("<BookgDt>").unwrap_or(full.len())];
        let error = parse_file(cut).unwrap_err();
        assert_eq!(error.code(), "statement_malformed");
        assert!(error.to_string().contains("Ntry[1]"), "{error}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}{}", "<a>".repeat(200), "</a>".repeat(200));
        let stmt = format!("{HEAD}{}<Other>{deep}</Other>", closing("100.00", "CRDT"));
        assert_eq!(parse(&stmt).unwrap_err().code(), "statement_too_large");
    }

    #[test]
    fn missing_balances_are_malformed() {
        let error = parse(HEAD).unwrap_err();
        assert_eq!(error.code(), "statement_malformed");
        assert!(error.to_string().contains("CLBD"), "{error}");
    }

    #[test]
    fn batch_details_must_add_up() {
        let tx = |amount: &str, id: &str| {
            format!(r#"<TxDtls><Refs><EndToEndId>{id}</EndToEndId></Refs><Amt Ccy="EUR">{amount}</Amt></TxDtls>"#)
        };
        let batch =
            format!("<NtryDtls><Btch><NbOfTxs>2</NbOfTxs></Btch>{}{}</NtryDtls>", tx("4.00", "A"), tx("5.00", "B"));
        let stmt = format!("{HEAD}{}{}", closing("110.00", "CRDT"), entry("10.00", "CRDT", &batch));
        let error = parse(&stmt).unwrap_err();
        assert_eq!(error.code(), "statement_balance_mismatch");
        assert!(error.to_string().contains("Ntry[1]/NtryDtls"), "{error}");

        let wrong_count = batch.replace("<NbOfTxs>2", "<NbOfTxs>3").replace("5.00", "6.00");
        let stmt = format!("{HEAD}{}{}", closing("110.00", "CRDT"), entry("10.00", "CRDT", &wrong_count));
        assert_eq!(parse(&stmt).unwrap_err().code(), "statement_malformed");

        let good = batch.replace("5.00", "6.00");
        let stmt = format!("{HEAD}{}{}", closing("110.00", "CRDT"), entry("10.00", "CRDT", &good));
        let statement = parse(&stmt).unwrap();
        let references: Vec<_> = statement.entries[0].details.iter().map(|d| d.reference.as_deref()).collect();
        assert_eq!(references, [Some("A"), Some("B")]);
    }
}
