//! The information to the account owner in MT940 `:86:` (and the codes of `:61:` supplementary
//! details), in the dialects banks write it:
//!
//! - **Subfields**: a three-digit transaction code (optional), then subfields each opened by a
//!   mark and two digits. German banks mark with `?`: `?00` posting text, `?20`–`?29` and
//!   `?60`–`?63` purpose, `?30` bank code, `?31` account, `?32`/`?33` name. Polish banks write the
//!   same layout with `~`, `^`, `>` or `<` and their own numbers: `20`–`26` and `60`–`63` title,
//!   `27`/`28` name (or `32`/`33` where present), `29` address, `30` bank code, `31` account, `38`
//!   IBAN. Lines are cut at fixed widths in the middle of words, so they are joined without a
//!   separator. In the purpose, SEPA keywords (`EREF+`, `KREF+`, `MREF+`, `CRED+`, `DEBT+`,
//!   `SVWZ+`, `ABWA+`, `ABWE+`, `IBAN+`, `BIC+`, `OAMT+`, `COAM+`) open a value that runs to the
//!   next keyword across subfields.
//! - **Codes**: `/CODE/value/CODE/value…` as SWIFT's structured narrative and Dutch banks write
//!   it: `/EREF/`, `/NAME/`, `/IBAN/`, `/BIC/`, `/CNTP/iban/bic/name/city`, `/REMI/`, `/OCMT/`,
//!   `/CHGS/` and the others of [`CODES`].
//! - **Free text** otherwise: the lines joined with a space.

use crate::StatementError;
use crate::account_id::{iban_in, normalize_account};
use crate::text::{field, reference_field};

/// What `:86:` says about one entry. Amounts stay text here (`EUR`, `525,15`): their scale is
/// the caller's to apply.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Narrative {
    pub(crate) description: Option<String>,
    pub(crate) counterparty: Option<String>,
    pub(crate) end_to_end: Option<String>,
    pub(crate) counterparty_iban: Option<String>,
    /// (currency, amount as written) of the original amount.
    pub(crate) original_amount: Option<(String, String)>,
    /// (currency, amount as written) of the charges.
    pub(crate) charges: Option<(String, String)>,
}

/// The marks that open a subfield.
const SUBFIELD_MARKS: [char; 5] = ['?', '~', '^', '>', '<'];

/// Reads `:86:` from its lines.
pub(crate) fn parse_narrative(lines: &[&str], location: &str) -> Result<Narrative, StatementError> {
    let first = lines.first().map_or("", |line| line.trim_start());
    if let Some(mark) = subfield_mark(first) {
        // Structured text is cut into lines at fixed widths, in the middle of words: the lines
        // are joined without a separator.
        let joined: String = lines.concat();
        let narrative = subfield_narrative(joined.trim(), mark, location)?;
        if narrative != Narrative::default() {
            return Ok(narrative);
        }
    }
    if first.starts_with('/') {
        let joined: String = lines.concat();
        if let Some(narrative) = coded_narrative(joined.trim(), location)? {
            return Ok(narrative);
        }
    }
    let joined = lines.iter().map(|line| line.trim()).filter(|line| !line.is_empty()).collect::<Vec<_>>().join(" ");
    Ok(Narrative { description: field(&joined, location, ":86: text")?, ..Narrative::default() })
}

/// The subfield mark of `166?00…`, `020~00…` or `^00…`: an optional three-digit code, then a
/// mark and two digits.
fn subfield_mark(text: &str) -> Option<char> {
    let rest = match text.get(..3) {
        Some(code) if code.bytes().all(|b| b.is_ascii_digit()) => &text[3..],
        _ => text,
    };
    let mark = rest.chars().next().filter(|mark| SUBFIELD_MARKS.contains(mark))?;
    let digits = rest.get(1..3)?;
    digits.bytes().all(|b| b.is_ascii_digit()).then_some(mark)
}

fn subfield_narrative(text: &str, mark: char, location: &str) -> Result<Narrative, StatementError> {
    let german = mark == '?';
    let mut posting_text = String::new();
    let mut purpose_parts: Vec<&str> = Vec::new();
    let (mut name, mut short_name, mut account) = (String::new(), String::new(), String::new());
    let mut iban = String::new();
    for piece in text.split(mark).skip(1) {
        let (Some(code), Some(value)) = (piece.get(..2), piece.get(2..)) else {
            continue;
        };
        match (code, german) {
            ("00", _) => posting_text.push_str(value),
            ("20" | "21" | "22" | "23" | "24" | "25" | "26" | "60" | "61" | "62" | "63", _)
            | ("27" | "28" | "29", true) => purpose_parts.push(value),
            ("27" | "28", false) => short_name.push_str(value),
            ("31", _) => account.push_str(value),
            ("32" | "33", _) => name.push_str(value),
            ("38", false) => iban.push_str(value),
            _ => {}
        }
    }
    let keywords = sepa_keywords(&purpose_parts);
    let keyword = |wanted: &str| keywords.iter().find(|(key, _)| *key == wanted).map(|(_, value)| value.trim());
    let purpose: String = purpose_parts.concat();
    let description = keyword("SVWZ").map(str::to_owned).unwrap_or(purpose);
    let description = if description.trim().is_empty() { posting_text } else { description };
    let name = if name.trim().is_empty() { short_name } else { name };
    let iban_text = [iban.as_str(), keyword("IBAN").unwrap_or(""), account.as_str()]
        .into_iter()
        .find_map(|candidate| iban_in(&normalize_account(candidate)));
    Ok(Narrative {
        description: field(&description, location, ":86: purpose")?,
        counterparty: field(&name, location, ":86: name")?,
        end_to_end: reference_field(keyword("EREF").unwrap_or(""), location, ":86: EREF")?,
        counterparty_iban: iban_text,
        original_amount: keyword("OAMT").and_then(currency_amount),
        charges: keyword("COAM").and_then(currency_amount),
    })
}

/// SEPA keywords in purpose subfields: a subfield starting with three or four capitals and `+`
/// opens a keyword; the subfields after it continue its value until the next keyword.
fn sepa_keywords<'p>(parts: &[&'p str]) -> Vec<(&'p str, String)> {
    let mut keywords: Vec<(&'p str, String)> = Vec::new();
    for part in parts {
        let opens = part
            .find('+')
            .filter(|plus| (3..=4).contains(plus))
            .filter(|plus| part.as_bytes()[..*plus].iter().all(u8::is_ascii_uppercase));
        match (opens, keywords.last_mut()) {
            (Some(plus), _) => keywords.push((&part[..plus], part[plus + 1..].to_owned())),
            (None, Some((_, value))) => value.push_str(part),
            (None, None) => {}
        }
    }
    keywords
}

/// `EUR525,15` (also `EUR 525,15`, `525,15 EUR`, `EUR525.15`) as (currency, amount as written).
fn currency_amount(text: &str) -> Option<(String, String)> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let (currency, amount) = match compact.get(..3) {
        Some(code) if code.bytes().all(|b| b.is_ascii_uppercase()) => (code, &compact[3..]),
        _ => {
            let cut = compact.len().checked_sub(3)?;
            let code = compact.get(cut..).filter(|code| code.bytes().all(|b| b.is_ascii_uppercase()))?;
            (code, &compact[..cut])
        }
    };
    let amount = amount.trim_end_matches('/');
    (!amount.is_empty()).then(|| (currency.to_owned(), amount.to_owned()))
}

/// The codes of structured `/CODE/value/` text this parser reads or steps over.
const CODES: [&str; 24] = [
    "TRTP", "EREF", "CNTP", "NAME", "REMI", "ORDP", "BENM", "IREF", "MARF", "CSID", "PREF", "RTRN", "ACCW", "PURP",
    "ULTC", "ULTD", "ADDR", "ISDT", "BUSP", "IBAN", "BIC", "OCMT", "CHGS", "EXCH",
];

/// `/EREF/x//CNTP/iban/bic/name/city/REMI/USTD//text/`. `None` if no known code appears.
pub(crate) fn coded_narrative(text: &str, location: &str) -> Result<Option<Narrative>, StatementError> {
    let mut codes: Vec<(&str, Vec<&str>)> = Vec::new();
    for token in text.split('/') {
        if CODES.contains(&token) {
            codes.push((token, Vec::new()));
        } else if let Some((_, values)) = codes.last_mut() {
            values.push(token);
        }
    }
    if codes.is_empty() {
        return Ok(None);
    }
    let values = |wanted: &str| codes.iter().find(|(code, _)| *code == wanted).map(|(_, values)| values.as_slice());
    let first_value =
        |wanted: &str| values(wanted).and_then(|parts| parts.iter().copied().find(|part| !part.is_empty()));
    let joined = |parts: &[&str]| parts.iter().copied().filter(|part| !part.is_empty()).collect::<Vec<_>>().join("/");
    let name = match (values("NAME"), values("CNTP")) {
        (Some(name), _) => joined(name),
        (None, Some(counterparty)) => counterparty.get(2).copied().unwrap_or("").to_owned(),
        (None, None) => String::new(),
    };
    let remittance = values("REMI").map(|parts| {
        let parts = match parts.first() {
            Some(&"USTD" | &"STRD") => &parts[1..],
            _ => parts,
        };
        joined(parts)
    });
    let iban_candidates = [first_value("IBAN"), values("CNTP").and_then(|parts| parts.first().copied())];
    let counterparty_iban =
        iban_candidates.into_iter().flatten().find_map(|candidate| iban_in(&normalize_account(candidate)));
    // In these codes the amount is one token: `/OCMT/EUR525,15/`.
    let amount_of = |code: &str| first_value(code).and_then(currency_amount);
    let only_amounts = codes.iter().all(|(code, _)| matches!(*code, "OCMT" | "CHGS" | "EXCH"));
    Ok(Some(Narrative {
        description: match (remittance, only_amounts) {
            (Some(remittance), _) => field(&remittance, location, ":86: remittance")?,
            (None, true) => None,
            (None, false) => field(text, location, ":86: text")?,
        },
        counterparty: field(&name, location, ":86: name")?,
        end_to_end: reference_field(first_value("EREF").unwrap_or(""), location, ":86: EREF")?,
        counterparty_iban,
        original_amount: amount_of("OCMT"),
        charges: amount_of("CHGS"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn narrative_of(lines: &[&str]) -> Narrative {
        parse_narrative(lines, "line 9").unwrap()
    }

    fn pair(currency: &str, amount: &str) -> Option<(String, String)> {
        Some((currency.to_owned(), amount.to_owned()))
    }

    #[test]
    fn german_subfields_with_sepa_keywords() {
        let narrative = narrative_of(&[
            "166?00SEPA-GUTSCHRIFT?109310?20EREF+INV-7?21KREF+K-1?22MREF+M-2?23SVWZ+Rechnung INV-7 vo",
            "m 1.3.?24OAMT+EUR100,00?25COAM+EUR1,50?30INGDDEFFXXX?31DE44500105175407324931?32Mueller Maschinenbau ?33GmbH",
        ]);
        assert_eq!(narrative.end_to_end.as_deref(), Some("INV-7"));
        assert_eq!(narrative.description.as_deref(), Some("Rechnung INV-7 vom 1.3."));
        assert_eq!(narrative.counterparty.as_deref(), Some("Mueller Maschinenbau GmbH"));
        assert_eq!(narrative.counterparty_iban.as_deref(), Some("DE44500105175407324931"));
        assert_eq!(narrative.original_amount, pair("EUR", "100,00"));
        assert_eq!(narrative.charges, pair("EUR", "1,50"));

        let plain = narrative_of(&["805?00ENTGELTABSCHLUSS?20Kontofuehrung 02/2026"]);
        assert_eq!(plain.description.as_deref(), Some("Kontofuehrung 02/2026"));
        assert_eq!((plain.counterparty, plain.counterparty_iban), (None, None));
        assert_eq!(narrative_of(&["166?20EREF+NOTPROVIDED"]).end_to_end, None);
        // A German account number is no IBAN.
        assert_eq!(narrative_of(&["166?20X?310532013000"]).counterparty_iban, None);
    }

    #[test]
    fn polish_subfields_with_other_marks() {
        for mark in ['~', '^', '>', '<'] {
            let text = format!(
                "020{mark}00PRZELEW{mark}20Faktura FV/2026/0{mark}2131{mark}27Hurtownia Wis{mark}28la Sp. z o.o.\
                 {mark}29ul. Dluga 1{mark}3010901014{mark}38PL61109010140000071219812874"
            );
            let narrative = narrative_of(&[&text]);
            assert_eq!(narrative.description.as_deref(), Some("Faktura FV/2026/031"), "{mark}");
            assert_eq!(narrative.counterparty.as_deref(), Some("Hurtownia Wisla Sp. z o.o."), "{mark}");
            assert_eq!(narrative.counterparty_iban.as_deref(), Some("PL61109010140000071219812874"), "{mark}");
        }
        // Without the transaction code; 32/33 win over 27/28.
        let narrative = narrative_of(&["^00OPLATA^20Prowizja^27Bank^32PKO Bank Polski"]);
        assert_eq!(narrative.counterparty.as_deref(), Some("PKO Bank Polski"));
        assert_eq!(narrative.description.as_deref(), Some("Prowizja"));
    }

    #[test]
    fn coded_narratives() {
        let coded = narrative_of(&[
            "/EREF/PO-88123//CNTP/NL91ABNA0417164300/ABNANL2A/Buerobedarf Schm",
            "idt KG/Utrecht/REMI/USTD//Bestelling PO-88123/",
        ]);
        assert_eq!(coded.end_to_end.as_deref(), Some("PO-88123"));
        assert_eq!(coded.counterparty.as_deref(), Some("Buerobedarf Schmidt KG"));
        assert_eq!(coded.counterparty_iban.as_deref(), Some("NL91ABNA0417164300"));
        assert_eq!(coded.description.as_deref(), Some("Bestelling PO-88123"));

        let dutch = narrative_of(&[
            "/TRTP/SEPA OVERBOEKING/IBAN/NL91ABNA0417164300/BIC/ABNANL2A/NAME/J. Jansen/REMI/Factuur 2026-11/EREF/E2E-55/OCMT/USD110,00//CHGS/EUR1,50/",
        ]);
        assert_eq!(dutch.counterparty.as_deref(), Some("J. Jansen"));
        assert_eq!(dutch.counterparty_iban.as_deref(), Some("NL91ABNA0417164300"));
        assert_eq!(dutch.end_to_end.as_deref(), Some("E2E-55"));
        assert_eq!(dutch.original_amount, pair("USD", "110,00"));
        assert_eq!(dutch.charges, pair("EUR", "1,50"));

        let amounts_only = coded_narrative("/OCMT/EUR525,15/", "x").unwrap().unwrap();
        assert_eq!((amounts_only.description, amounts_only.original_amount), (None, pair("EUR", "525,15")));
        let named = narrative_of(&["/ORDP//NAME/Jan Jansen/ADDR/Kerkstraat 1"]);
        assert_eq!(named.counterparty.as_deref(), Some("Jan Jansen"));
    }

    #[test]
    fn free_text() {
        let free = narrative_of(&["Miete Maerz", "  Buero Nord  "]);
        assert_eq!(free.description.as_deref(), Some("Miete Maerz Buero Nord"));
        assert_eq!(free.counterparty, None);
        assert_eq!(narrative_of(&["/just/some/text"]).description.as_deref(), Some("/just/some/text"));
        assert_eq!(narrative_of(&["?? what"]).description.as_deref(), Some("?? what"));
    }

    #[test]
    fn currency_amounts() {
        assert_eq!(currency_amount("EUR525,15"), pair("EUR", "525,15"));
        assert_eq!(currency_amount("525,15 EUR"), pair("EUR", "525,15"));
        assert_eq!(currency_amount("EUR"), None);
        assert_eq!(currency_amount("12"), None);
    }
}
