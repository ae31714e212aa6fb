//! Properties: no input makes a parser panic, and matching is a partition within tolerance.

mod common;

use proptest::prelude::*;
use tally_statement::{
    CsvLayout, CsvStatementInfo, Entry, EntryDetail, Format, LedgerEntry, MatchRule, MatchRules, OtherAmount,
    ParseOptions, Statement, StatementError, match_entries, parse_camt, parse_csv, parse_mt940,
};
use time::{Date, Duration};

const FIXTURES: [&[u8]; 13] = [
    include_bytes!("fixtures/camt053_multi.xml"),
    include_bytes!("fixtures/mt940_multi.sta"),
    include_bytes!("fixtures/statement.csv"),
    include_bytes!("fixtures/mt940_daily.sta"),
    include_bytes!("fixtures/mt940_paged.sta"),
    include_bytes!("fixtures/mt940_german.sta"),
    include_bytes!("fixtures/mt940_swift_blocks.sta"),
    include_bytes!("fixtures/mt940_polish_iso8859-2.sta"),
    include_bytes!("fixtures/mt940_dutch.sta"),
    include_bytes!("fixtures/camt053_v02_two_accounts.xml"),
    include_bytes!("fixtures/camt053_v13_two_days.xml"),
    include_bytes!("fixtures/camt052_intraday.xml"),
    include_bytes!("fixtures/camt054_notifications.xml"),
];

fn csv_layout() -> CsvLayout {
    common::fixture_layout()
}

fn csv_info() -> CsvStatementInfo {
    CsvStatementInfo {
        statement_id: "s".to_owned(),
        account: "a".to_owned(),
        currency: Some("EUR".to_owned()),
        opening: None,
        closing: None,
    }
}

/// Every parser on the same bytes; a panic fails the property, any `Result` passes. Successful
/// parses must still be internally consistent.
fn parse_everything(bytes: &[u8], scale: u8) {
    let _ = Format::detect(bytes);
    let options = ParseOptions::with_scale(scale);
    let files =
        [parse_camt(bytes, &options), parse_mt940(bytes, &options)].map(|result| result.map(|file| file.statements));
    let csv = [
        parse_csv(bytes, scale, &csv_layout(), &csv_info()).map(|statement| vec![statement]),
        parse_csv(bytes, scale, &CsvLayout::default(), &csv_info()).map(|statement| vec![statement]),
    ];
    for result in files.into_iter().chain(csv) {
        check(result);
    }
}

fn check(result: Result<Vec<Statement>, StatementError>) {
    match result {
        Ok(statements) => {
            assert!(!statements.is_empty());
            for statement in statements {
                assert!(statement.entries.iter().all(|entry| entry.amount != 0));
                assert!(statement.pages >= 1);
                assert!(statement.notes.len() <= tally_statement::NOTES_MAX);
                // The difference is exactly what check_arithmetic refuses.
                let adds_up = matches!(statement.balance_difference(), Some(0) | None);
                assert_eq!(adds_up, tally_statement::check_arithmetic(&statement).is_ok());
            }
        }
        Err(error) => {
            assert!(error.code().starts_with("statement_"));
            assert!(!error.location().is_empty());
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Replace { at: usize, byte: u8 },
    Duplicate { at: usize, len: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop::sample::select(vec![
        b"<".to_vec(),
        b">".to_vec(),
        b"</Ntry>".to_vec(),
        b"<Ntry>".to_vec(),
        b"&amp;".to_vec(),
        b"&#0;".to_vec(),
        b"&unknown;".to_vec(),
        b"<!DOCTYPE x>".to_vec(),
        b"\r\n:61:".to_vec(),
        b"\n:86:?".to_vec(),
        b"\n-}".to_vec(),
        b"{".to_vec(),
        b"}".to_vec(),
        b",".to_vec(),
        b"\"".to_vec(),
        b"\n".to_vec(),
        b"\xff\xfe".to_vec(),
        b"\xc3".to_vec(),
        "ü".as_bytes().to_vec(),
        b"99999999999999999999999999999999".to_vec(),
    ]);
    prop_oneof![
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), interesting).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Replace { at, byte }),
        (any::<usize>(), 1usize..256).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let position = |at: usize, len: usize| if len == 0 { 0 } else { at % (len + 1) };
    match mutation {
        Mutation::Delete { at, len } => {
            let start = position(*at, bytes.len());
            let end = (start + len).min(bytes.len());
            bytes.drain(start..end);
        }
        Mutation::Insert { at, bytes: inserted } => {
            let start = position(*at, bytes.len());
            bytes.splice(start..start, inserted.iter().copied());
        }
        Mutation::Replace { at, byte } => {
            if !bytes.is_empty() {
                let index = at % bytes.len();
                bytes[index] = *byte;
            }
        }
        Mutation::Duplicate { at, len } => {
            let start = position(*at, bytes.len());
            let end = (start + len).min(bytes.len());
            let copy: Vec<u8> = bytes[start..end].to_vec();
            bytes.splice(end..end, copy);
        }
        Mutation::Truncate { at } => {
            let end = position(*at, bytes.len());
            bytes.truncate(end);
        }
    }
}

/// Line-oriented MT940 soup: tags in any order with plausible and implausible values.
fn mt940_soup() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just(":20:REF".to_owned()),
        Just(":25:DE89370400440532013000".to_owned()),
        Just(":28C:1/1".to_owned()),
        "[CD]2[0-9]{5}EUR[0-9]{1,4},[0-9]{0,3}".prop_map(|value| format!(":60F:{value}")),
        "[CD]2[0-9]{5}EUR[0-9]{1,4},[0-9]{0,3}".prop_map(|value| format!(":62F:{value}")),
        "2[0-9]{5}([0-9]{4})?R?[CD][R]?[0-9]{1,4},[0-9]{0,2}[NFS][A-Z0-9]{3}[A-Z0-9/]{0,20}"
            .prop_map(|value| format!(":61:{value}")),
        "[0-9]{3}(\\?[0-9]{2}[A-Za-z +]{0,12}){0,6}".prop_map(|value| format!(":86:{value}")),
        "(/[A-Z]{4}/[A-Za-z ]{0,10}){0,4}".prop_map(|value| format!(":86:{value}")),
        "[ -~]{0,40}",
        Just("-}".to_owned()),
        Just("-".to_owned()),
        Just("{1:F01X}{2:O940}{4:".to_owned()),
    ];
    prop::collection::vec(line, 0..24).prop_map(|lines| lines.join("\r\n").into_bytes())
}

/// Tag soup in the shape of camt.053: the parser must cope with any nesting of its elements.
fn camt_soup() -> impl Strategy<Value = Vec<u8>> {
    let token = prop::sample::select(vec![
        "<Stmt>",
        "</Stmt>",
        "<Id>S</Id>",
        "<Acct><Id><IBAN>DE89</IBAN></Id><Ccy>EUR</Ccy></Acct>",
        "<Bal>",
        "</Bal>",
        "<Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp>",
        "<Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp>",
        "<Ntry>",
        "</Ntry>",
        "<Amt Ccy=\"EUR\">1.00</Amt>",
        "<Amt Ccy=\"USD\">2</Amt>",
        "<Amt>3</Amt>",
        "<CdtDbtInd>CRDT</CdtDbtInd>",
        "<CdtDbtInd>DBIT</CdtDbtInd>",
        "<Dt><Dt>2026-03-02</Dt></Dt>",
        "<BookgDt><Dt>2026-03-02</Dt></BookgDt>",
        "<BookgDt><DtTm>2026-03-02T10:00:00</DtTm></BookgDt>",
        "<NtryDtls>",
        "</NtryDtls>",
        "<Btch><NbOfTxs>2</NbOfTxs></Btch>",
        "<TxDtls>",
        "</TxDtls>",
        "<Refs><EndToEndId>E</EndToEndId></Refs>",
        "<RltdPties><Dbtr><Nm>N</Nm></Dbtr></RltdPties>",
        "<RvslInd>true</RvslInd>",
        "<Sts><Cd>BOOK</Cd></Sts>",
        "<RmtInf><Ustrd>x</Ustrd></RmtInf>",
        "&amp;",
        "text",
        "<BkTxCd><Domn><Cd>PMNT</Cd></Domn></BkTxCd>",
        "<Empty/>",
    ]);
    prop::collection::vec(token, 0..60).prop_map(|tokens| {
        format!(
            "<?xml version=\"1.0\"?><Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.053.001.08\"><BkToCstmrStmt>{}</BkToCstmrStmt></Document>",
            tokens.concat()
        )
        .into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), scale in 0u8..=20) {
        parse_everything(&bytes, scale);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        fixture in 0usize..FIXTURES.len(),
        mutations in prop::collection::vec(mutation(), 1..6),
        scale in prop::sample::select(vec![0u8, 2, 3]),
    ) {
        let mut bytes = FIXTURES[fixture].to_vec();
        for mutation in &mutations {
            apply(&mut bytes, mutation);
        }
        parse_everything(&bytes, scale);
    }

    #[test]
    fn mt940_soup_never_panics(bytes in mt940_soup()) {
        parse_everything(&bytes, 2);
    }

    #[test]
    fn camt_soup_never_panics(bytes in camt_soup()) {
        parse_everything(&bytes, 2);
    }
}

fn day(offset: u8) -> Date {
    time::macros::date!(2026 - 03 - 01) + Duration::days(i64::from(offset))
}

fn text_from(pool: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(pool.to_vec()).prop_map(str::to_owned))
}

const REFERENCES: &[&str] = &["R1", "R2", "R3", " R1 ", "SUB-1", "SUB-2"];
const NAMES: &[&str] = &["ACME", "acme  ", "Beta GmbH", "beta gmbh", "Gamma"];

fn amount() -> impl Strategy<Value = i128> {
    prop_oneof![(1i128..=6).prop_map(|v| v * 100), (-6i128..=-1).prop_map(|v| v * 100), -700i128..=700]
}

fn statement_entry() -> impl Strategy<Value = Entry> {
    let details = prop::collection::vec((amount(), text_from(REFERENCES), text_from(NAMES)), 0..4);
    let charges = prop::option::of(1i128..=150);
    (amount(), 0u8..8, text_from(REFERENCES), text_from(REFERENCES), text_from(NAMES), details, charges).prop_map(
        |(amount, offset, reference, bank_reference, counterparty, details, charges)| Entry {
            location: String::new(),
            booking_date: day(offset),
            value_date: None,
            amount,
            reversal: false,
            reference,
            bank_reference,
            end_to_end_id: None,
            counterparty,
            counterparty_iban: None,
            description: None,
            bank_code: None,
            original_amount: None,
            charges: charges.map(|minor| OtherAmount {
                currency: "EUR".to_owned(),
                amount: String::new(),
                minor: Some(minor),
            }),
            details: details
                .into_iter()
                .map(|(amount, reference, counterparty)| EntryDetail { amount, reference, counterparty })
                .collect(),
        },
    )
}

fn ledger_entry() -> impl Strategy<Value = LedgerEntry> {
    (prop::sample::select(REFERENCES.to_vec()), amount(), 0u8..8, text_from(REFERENCES), text_from(NAMES)).prop_map(
        |(transfer_id, amount, offset, reference, counterparty)| LedgerEntry {
            transfer_id: transfer_id.to_owned(),
            date: day(offset),
            amount,
            reference,
            counterparty,
            counterparty_iban: None,
        },
    )
}

fn rules() -> impl Strategy<Value = MatchRules> {
    (-2i128..=150, 0u32..=4, 0usize..=6).prop_map(|(amount_tolerance, date_window_days, group_size_max)| MatchRules {
        amount_tolerance,
        date_window_days,
        group_size_max,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn matching_is_a_partition_within_tolerance(
        statement in prop::collection::vec(statement_entry(), 0..24),
        ledger in prop::collection::vec(ledger_entry(), 0..24),
        rules in rules(),
    ) {
        let outcome = match_entries(&statement, &ledger, &rules);
        let tolerance = rules.amount_tolerance.max(0);

        let mut statement_seen = vec![0u32; statement.len()];
        let mut ledger_seen = vec![0u32; ledger.len()];
        for found in &outcome.matches {
            prop_assert!(!found.statement_entries.is_empty() && !found.ledger_entries.is_empty());
            prop_assert!(found.statement_entries.windows(2).all(|pair| pair[0] < pair[1]));
            prop_assert!(found.ledger_entries.windows(2).all(|pair| pair[0] < pair[1]));
            for i in &found.statement_entries {
                statement_seen[*i] += 1;
            }
            for j in &found.ledger_entries {
                ledger_seen[*j] += 1;
            }
            let statement_total: i128 = found.statement_entries.iter().map(|i| statement[*i].amount).sum();
            let ledger_total: i128 = found.ledger_entries.iter().map(|j| ledger[*j].amount).sum();
            prop_assert_eq!(found.difference, statement_total - ledger_total);
            if found.before_charges {
                // Only one entry pairs with one on its amount before charges, and that amount is
                // within the tolerance.
                prop_assert_eq!((found.statement_entries.len(), found.ledger_entries.len()), (1, 1));
                let gross = statement[found.statement_entries[0]].amount_before_charges();
                prop_assert!(gross.is_some_and(|gross| (gross - ledger_total).abs() <= tolerance), "{:?}", found);
            } else {
                prop_assert!(found.difference.abs() <= tolerance, "{:?} beyond tolerance {}", found, tolerance);
            }
            let first = &statement[found.statement_entries[0]];
            let sign = first.amount.signum();
            prop_assert!(sign != 0);
            prop_assert!(found.statement_entries.iter().all(|i| statement[*i].amount.signum() == sign));
            // A batch may net credits and debits; matched by its details, each ledger entry has
            // the sign of a detail.
            let mut signs = vec![sign];
            if found.rule == MatchRule::OneToMany {
                signs.extend(first.details.iter().map(|detail| detail.amount.signum()));
            }
            prop_assert!(found.ledger_entries.iter().all(|j| signs.contains(&ledger[*j].amount.signum())));
            match found.rule {
                MatchRule::Reference | MatchRule::AmountDateCounterparty => {
                    prop_assert_eq!((found.statement_entries.len(), found.ledger_entries.len()), (1, 1));
                }
                MatchRule::OneToMany => {
                    prop_assert_eq!(found.statement_entries.len(), 1);
                    let batch_size = statement[found.statement_entries[0]].details.len();
                    let by_sum = (2..=rules.group_size_max).contains(&found.ledger_entries.len());
                    prop_assert!(by_sum || found.ledger_entries.len() == batch_size);
                }
                MatchRule::ManyToOne => {
                    prop_assert_eq!(found.ledger_entries.len(), 1);
                    prop_assert!((2..=rules.group_size_max).contains(&found.statement_entries.len()));
                }
            }
        }
        for i in &outcome.unmatched_statement {
            statement_seen[*i] += 1;
        }
        for j in &outcome.unmatched_ledger {
            ledger_seen[*j] += 1;
        }
        prop_assert!(statement_seen.iter().all(|count| *count == 1), "statement indexes: {:?}", statement_seen);
        prop_assert!(ledger_seen.iter().all(|count| *count == 1), "ledger indexes: {:?}", ledger_seen);
        prop_assert!(outcome.unmatched_statement.windows(2).all(|pair| pair[0] < pair[1]));
        prop_assert!(outcome.unmatched_ledger.windows(2).all(|pair| pair[0] < pair[1]));

        // Deterministic: the same input gives the same outcome.
        prop_assert_eq!(&match_entries(&statement, &ledger, &rules), &outcome);
    }
}

/// One generated statement: opening balance, entries split into pages, and how far its closing
/// balance is off (0: it adds up).
#[derive(Debug, Clone)]
struct Generated {
    account: &'static str,
    opening: i128,
    pages: Vec<Vec<i128>>,
    closing_off_by: i128,
}

/// How messages are put into a file.
#[derive(Debug, Clone, Copy)]
enum Envelope {
    /// `-` after each message.
    Dashes,
    /// One message after the other, nothing between.
    RunOn,
    /// Each message in `{1:}{2:}{4:` … `-}{5:}`.
    SwiftBlocks,
    /// Header records and blank lines before each message, `-` after it.
    HeaderRecords,
}

fn generated() -> impl Strategy<Value = Generated> {
    let entry = prop_oneof![1i128..=99_999, -99_999i128..=-1];
    let page = prop::collection::vec(entry, 0..4);
    (
        prop::sample::select(vec!["DE89370400440532013000", "/PL61109010140000071219812874", "37040044/0532013000"]),
        -500_000i128..=500_000,
        prop::collection::vec(page, 1..4),
        prop_oneof![4 => Just(0i128), 1 => -500i128..=500],
    )
        .prop_map(|(account, opening, pages, closing_off_by)| Generated {
            account,
            opening,
            pages,
            closing_off_by,
        })
}

fn swift_balance(tag: &str, amount: i128) -> String {
    let sign = if amount < 0 { 'D' } else { 'C' };
    let magnitude = amount.unsigned_abs();
    format!(":{tag}:{sign}260302EUR{},{:02}", magnitude / 100, magnitude % 100)
}

/// Renders the statements as an MT940 file.
fn render(statements: &[Generated], envelope: Envelope, line_end: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for (index, statement) in statements.iter().enumerate() {
        let mut balance = statement.opening;
        let page_count = statement.pages.len();
        for (page_index, page) in statement.pages.iter().enumerate() {
            let first = page_index == 0;
            let last = page_index + 1 == page_count;
            match envelope {
                Envelope::SwiftBlocks => {
                    lines.push(
                        "{1:F01BANKDEFFAXXX0000000000}{2:O9401200260302BANKDEFFXXXX00000000002603021200N}{4:".into(),
                    );
                }
                Envelope::HeaderRecords => {
                    lines.extend(["".into(), "0000 01BANKDEFFXXXX0000000001".into(), "940 00".into()])
                }
                Envelope::Dashes | Envelope::RunOn => {}
            }
            lines.push(format!(":20:GEN{index}"));
            lines.push(format!(":25:{}", statement.account));
            lines.push(format!(":28C:{index}/{}", page_index + 1));
            lines.push(swift_balance(if first { "60F" } else { "60M" }, balance));
            for amount in page {
                let mark = if *amount < 0 { 'D' } else { 'C' };
                let magnitude = amount.unsigned_abs();
                lines.push(format!(":61:260302{mark}{},{:02}NTRFREF-{index}", magnitude / 100, magnitude % 100));
                lines.push(format!(":86:?20entry of statement {index}"));
                balance += amount;
            }
            let closing = if last { balance + statement.closing_off_by } else { balance };
            lines.push(swift_balance(if last { "62F" } else { "62M" }, closing));
            match envelope {
                Envelope::SwiftBlocks => lines.push("-}{5:{CHK:123456789ABC}}".into()),
                Envelope::Dashes | Envelope::HeaderRecords => lines.push("-".into()),
                Envelope::RunOn => {}
            }
        }
    }
    lines.iter().map(|line| format!("{line}{line_end}")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the envelope and paging, a file of generated statements reads back as those
    /// statements: one per statement, pages joined, every entry kept, the difference exact.
    #[test]
    fn mt940_files_read_back_as_the_statements_written(
        statements in prop::collection::vec(generated(), 1..6),
        envelope in prop::sample::select(vec![Envelope::Dashes, Envelope::RunOn, Envelope::SwiftBlocks, Envelope::HeaderRecords]),
        line_end in prop::sample::select(vec!["\n", "\r\n"]),
    ) {
        let text = render(&statements, envelope, line_end);
        let file = parse_mt940(text.as_bytes(), &ParseOptions::with_scale(2)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(file.statements.len(), statements.len());
        for (read, written) in file.statements.iter().zip(&statements) {
            let amounts: Vec<i128> = read.entries.iter().map(|entry| entry.amount).collect();
            prop_assert_eq!(amounts, written.pages.concat());
            prop_assert_eq!(read.pages as usize, written.pages.len());
            prop_assert_eq!(read.opening.map(|b| b.amount), Some(written.opening));
            prop_assert_eq!(read.balance_difference(), Some(written.closing_off_by));
            prop_assert_eq!(read.account.as_str(), written.account);
            // A last page that does not add up is located by a note when there are several.
            let notes: Vec<(&str, Option<i128>)> = read.notes.iter().map(|note| (note.code, note.amount)).collect();
            if written.closing_off_by != 0 && written.pages.len() > 1 {
                prop_assert_eq!(notes, [("page_does_not_add_up", Some(written.closing_off_by))]);
            } else {
                prop_assert!(notes.is_empty(), "{:?}", notes);
            }
        }
        let header_notes = file.notes.iter().filter(|note| note.code == "header_skipped").count();
        let messages: usize = statements.iter().map(|s| s.pages.len()).sum();
        let expected_headers = if matches!(envelope, Envelope::HeaderRecords) { 2 * messages } else { 0 };
        prop_assert_eq!(header_notes, expected_headers.min(tally_statement::NOTES_MAX));
    }
}
