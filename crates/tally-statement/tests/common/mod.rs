//! What the integration tests share: the column layout of the fixture's bank export.

use tally_statement::CsvLayout;

/// The layout of `fixtures/statement.csv`.
pub fn fixture_layout() -> CsvLayout {
    CsvLayout {
        date: "Booking Date".to_owned(),
        value_date: Some("Value Date".to_owned()),
        amount: "Amount (EUR)".to_owned(),
        reference: Some("End-to-End Reference".to_owned()),
        counterparty: Some("Counterparty".to_owned()),
        description: Some("Payment Details".to_owned()),
        ..CsvLayout::default()
    }
}
