//! Matching the fixture statements against ledgers crafted so that every rule, edge and
//! ambiguity shows up.

use tally_statement::{
    LedgerEntry, Match, MatchOutcome, MatchRule, MatchRules, ParseOptions, Statement, match_entries, parse_camt,
    parse_mt940,
};
use time::Date;
use time::macros::date;

const CAMT: &[u8] = include_bytes!("fixtures/camt053_multi.xml");
const MT940: &[u8] = include_bytes!("fixtures/mt940_multi.sta");

fn ledger(
    transfer_id: &str,
    reference: Option<&str>,
    amount: i128,
    date: Date,
    counterparty: Option<&str>,
) -> LedgerEntry {
    LedgerEntry {
        transfer_id: transfer_id.to_owned(),
        date,
        amount,
        reference: reference.map(str::to_owned),
        counterparty: counterparty.map(str::to_owned),
        counterparty_iban: None,
    }
}

fn matched(rule: MatchRule, statement_entries: &[usize], ledger_entries: &[usize], difference: i128) -> Match {
    Match {
        rule,
        statement_entries: statement_entries.to_vec(),
        ledger_entries: ledger_entries.to_vec(),
        difference,
        before_charges: false,
    }
}

/// The one statement of a fixture.
fn only(statements: Vec<Statement>) -> Statement {
    assert_eq!(statements.len(), 1);
    statements.into_iter().next().expect("one statement")
}

fn camt_statement() -> Statement {
    only(parse_camt(CAMT, &ParseOptions::with_scale(2)).expect("the camt.053 fixture parses").statements)
}

/// Against the camt.053 fixture (entries: 0 invoice in, 1 order out, 2 batch of three
/// collections, 3 rent out, 4 reversal of 1, 5 charge, 6 payment from Hoffmann).
fn camt_ledger() -> Vec<LedgerEntry> {
    vec![
        // 0: the invoice payment, by reference.
        ledger("tr-0001", Some("INV-2026-0142"), 238_000, date!(2026 - 03 - 02), Some("Müller Maschinenbau GmbH")),
        // 1 and 2: the order and its return share a reference; the sign tells them apart.
        ledger("tr-0002", Some("PO-88123"), -84_550, date!(2026 - 03 - 03), None),
        ledger("tr-0003", Some("PO-88123"), 84_550, date!(2026 - 03 - 05), None),
        // 3, 4, 5: the three collections the bank booked as one batch.
        ledger("tr-0004", Some("SUB-1001"), 15_000, date!(2026 - 03 - 02), Some("Anna Becker")),
        ledger("tr-0005", Some("SUB-1002"), 27_525, date!(2026 - 03 - 02), Some("Jonas Weber")),
        ledger("tr-0006", Some("SUB-1003"), 9_990, date!(2026 - 03 - 03), Some("Lena Fischer")),
        // 6: the rent without a reference, two days later (the window's edge), the name
        // written differently.
        ledger("tr-0007", None, -120_000, date!(2026 - 03 - 06), Some("  immobilien  verwaltung NORD gmbh")),
        // 7 and 8: two fees of the charge's amount, neither named: which one it is cannot be told.
        ledger("tr-0008", None, -1_290, date!(2026 - 03 - 05), None),
        ledger("tr-0009", None, -1_290, date!(2026 - 03 - 04), None),
        // 9: Hoffmann's payment, recorded in the ledger as 309.95 while the bank booked 310.00:
        // within a tolerance of 5 minor units.
        ledger("tr-0010", None, 30_995, date!(2026 - 03 - 06), Some("Hoffmann & Söhne OHG")),
        // 10: an invoice the bank has not seen.
        ledger("tr-0011", Some("INV-2026-0150"), 99_900, date!(2026 - 03 - 06), Some("Kunde X")),
    ]
}

#[test]
fn camt_statement_against_the_ledger() {
    let statement = camt_statement();
    let rules = MatchRules { amount_tolerance: 5, date_window_days: 2, group_size_max: 8 };
    let outcome = match_entries(&statement.entries, &camt_ledger(), &rules);
    assert_eq!(
        outcome,
        MatchOutcome {
            matches: vec![
                matched(MatchRule::Reference, &[0], &[0], 0),
                matched(MatchRule::Reference, &[1], &[1], 0),
                matched(MatchRule::Reference, &[4], &[2], 0),
                matched(MatchRule::OneToMany, &[2], &[3, 4, 5], 0),
                matched(MatchRule::AmountDateCounterparty, &[3], &[6], 0),
                matched(MatchRule::AmountDateCounterparty, &[6], &[9], 5),
            ],
            unmatched_statement: vec![5],
            unmatched_ledger: vec![7, 8, 10],
        }
    );
}

#[test]
fn tolerance_edge() {
    let statement = camt_statement();
    let rules = MatchRules { amount_tolerance: 4, ..MatchRules::default() };
    let outcome = match_entries(&statement.entries, &camt_ledger(), &rules);
    assert!(outcome.unmatched_statement.contains(&6), "0.05 apart is beyond a tolerance of 0.04");
    assert!(outcome.unmatched_ledger.contains(&9));
}

#[test]
fn window_edge() {
    let statement = camt_statement();
    let rules = MatchRules { amount_tolerance: 5, date_window_days: 1, ..MatchRules::default() };
    let outcome = match_entries(&statement.entries, &camt_ledger(), &rules);
    assert!(outcome.unmatched_statement.contains(&3), "two days apart is beyond a one-day window");
    assert!(outcome.unmatched_ledger.contains(&6));
    // References ignore the window: the reversal booked two days after the ledger still matches.
    assert!(outcome.matches.contains(&matched(MatchRule::Reference, &[4], &[2], 0)));
}

#[test]
fn a_single_unnamed_candidate_matches() {
    let statement = camt_statement();
    let mut ledger = camt_ledger();
    ledger.remove(8);
    let outcome =
        match_entries(&statement.entries, &ledger, &MatchRules { amount_tolerance: 5, ..MatchRules::default() });
    assert!(outcome.matches.contains(&matched(MatchRule::AmountDateCounterparty, &[5], &[7], 0)));
}

#[test]
fn different_counterparties_never_match_on_amount_and_date() {
    let statement = camt_statement();
    let mut ledger = camt_ledger();
    ledger[9].counterparty = Some("Hofmann GmbH".to_owned());
    let outcome =
        match_entries(&statement.entries, &ledger, &MatchRules { amount_tolerance: 5, ..MatchRules::default() });
    assert!(outcome.unmatched_statement.contains(&6));
}

/// Against the MT940 fixture, whose batch carries no details, so only its sum can match it.
fn mt940_ledger() -> Vec<LedgerEntry> {
    vec![
        // 0, 1, 2: the collections, booked on three days; together they are the batch.
        ledger("tr-sub-1001", Some("SUB-1001"), 15_000, date!(2026 - 03 - 03), None),
        ledger("tr-sub-1002", Some("SUB-1002"), 27_525, date!(2026 - 03 - 04), None),
        ledger("tr-sub-1003", Some("SUB-1003"), 9_990, date!(2026 - 03 - 05), None),
        // 3: one deposit booked for the invoice payment and Hoffmann's payment together.
        ledger("tr-deposit", Some("DEP-0311"), 269_000, date!(2026 - 03 - 04), None),
        // 4, 5: the order and its return.
        ledger("tr-po", Some("PO-88123"), -84_550, date!(2026 - 03 - 03), None),
        ledger("tr-po-return", Some("PO-88123"), 84_550, date!(2026 - 03 - 05), None),
        // 6: the rent, three days after the bank booked it.
        ledger("tr-rent", None, -120_000, date!(2026 - 03 - 07), Some("Immobilien Verwaltung Nord GmbH")),
        // 7: the fee, recorded under the bank's reference as transfer id.
        ledger("2026030500099881", None, -1_290, date!(2026 - 03 - 05), None),
    ]
}

#[test]
fn mt940_statement_against_the_ledger() {
    let statement =
        only(parse_mt940(MT940, &ParseOptions::with_scale(2)).expect("the MT940 fixture parses").statements);
    let outcome = match_entries(&statement.entries, &mt940_ledger(), &MatchRules::default());
    assert_eq!(
        outcome,
        MatchOutcome {
            matches: vec![
                matched(MatchRule::Reference, &[1], &[4], 0),
                matched(MatchRule::Reference, &[4], &[5], 0),
                matched(MatchRule::Reference, &[5], &[7], 0),
                matched(MatchRule::OneToMany, &[2], &[0, 1, 2], 0),
                matched(MatchRule::ManyToOne, &[0, 6], &[3], 0),
            ],
            unmatched_statement: vec![3],
            unmatched_ledger: vec![6],
        }
    );

    // A wider window reaches the rent.
    let wider = MatchRules { date_window_days: 3, ..MatchRules::default() };
    let outcome = match_entries(&statement.entries, &mt940_ledger(), &wider);
    assert!(outcome.matches.contains(&matched(MatchRule::AmountDateCounterparty, &[3], &[6], 0)));

    // Without group matching the batch and the deposit stay open.
    let no_groups = MatchRules { group_size_max: 1, ..MatchRules::default() };
    let outcome = match_entries(&statement.entries, &mt940_ledger(), &no_groups);
    assert_eq!(outcome.unmatched_statement, [0, 2, 3, 6]);
    assert_eq!(outcome.unmatched_ledger, [0, 1, 2, 3, 6]);
}

#[test]
fn unmatched_on_both_sides_and_empty_inputs() {
    let statement = camt_statement();
    let outcome = match_entries(&statement.entries, &[], &MatchRules::default());
    assert!(outcome.matches.is_empty());
    assert_eq!(outcome.unmatched_statement, (0..statement.entries.len()).collect::<Vec<_>>());

    let outcome = match_entries(&[], &camt_ledger(), &MatchRules::default());
    assert_eq!(outcome.unmatched_ledger, (0..camt_ledger().len()).collect::<Vec<_>>());
}

#[test]
fn outcomes_serialize_with_snake_case_rules() {
    let statement = camt_statement();
    let outcome =
        match_entries(&statement.entries, &camt_ledger(), &MatchRules { amount_tolerance: 5, ..MatchRules::default() });
    let json = serde_json::to_value(&outcome).expect("serializes");
    assert_eq!(json["matches"][3]["rule"], "one_to_many");
    assert_eq!(json["matches"][4]["rule"], "amount_date_counterparty");
    assert_eq!(json["matches"][5]["difference"], 5);
}

const DUTCH: &[u8] = include_bytes!("fixtures/mt940_dutch.sta");

/// The Dutch fixture's first day against a ledger that knows the end-to-end id, the other
/// party's IBAN (under another name) and the invoice amount before the bank's charges.
#[test]
fn end_to_end_ids_ibans_and_charges_from_the_file() {
    let file = parse_mt940(DUTCH, &ParseOptions::with_scale(2)).expect("the Dutch fixture parses");
    let statement = &file.statements[0];
    let mut ledger = vec![
        ledger("tr-order", None, -85_000, date!(2026 - 03 - 02), Some("DV Office")),
        ledger("tr-invoice", Some("2026-INV-77"), 10_000, date!(2026 - 03 - 02), None),
        ledger("tr-jansen", Some("E2E-NL-0117"), 150_000, date!(2026 - 03 - 01), None),
        ledger("tr-other-order", None, -85_000, date!(2026 - 03 - 02), None),
    ];
    ledger[0].counterparty_iban = Some("NL20 INGB 0001 2345 67".to_owned());
    let outcome = match_entries(&statement.entries, &ledger, &MatchRules::default());
    let charged = Match { before_charges: true, ..matched(MatchRule::Reference, &[2], &[1], -150) };
    assert_eq!(
        outcome.matches,
        [
            matched(MatchRule::Reference, &[0], &[2], 0),
            charged,
            matched(MatchRule::AmountDateCounterparty, &[1], &[0], 0),
        ]
    );
    assert_eq!(outcome.unmatched_ledger, [3]);
}
