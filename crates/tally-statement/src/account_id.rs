//! Bank account identifiers as statements write them, and the forms an account mapping looks
//! them up by.
//!
//! The same account appears as `DE89 3704 0044 0532 0130 00` in a mapping someone typed,
//! `DE89370400440532013000` in camt, `/PL61109010140000071219812874` (a leading slash) in a
//! Polish MT940 `:25:` and `NL91ABNA0417164300EUR` (the currency appended) in a Dutch one. Keys are
//! compared after [`normalize_account`]; an IBAN inside the identifier is a key of its own.

/// The shortest and longest IBAN (ISO 13616: Norway has 15 characters, the longest 34).
const IBAN_LEN_MIN: usize = 15;
const IBAN_LEN_MAX: usize = 34;

/// Upper case without spaces, and without the leading `/` some banks write before `:25:`.
pub fn normalize_account(account: &str) -> String {
    let compact: String = account.chars().filter(|c| !c.is_whitespace()).collect();
    compact.trim_start_matches('/').to_uppercase()
}

/// Whether `text` (normalised) is an IBAN: two letters, two check digits, up to 30 letters and
/// digits, and the ISO 7064 MOD 97-10 check holds.
pub fn iban_is_valid(text: &str) -> bool {
    let bytes = text.as_bytes();
    if !(IBAN_LEN_MIN..=IBAN_LEN_MAX).contains(&bytes.len())
        || !bytes[..2].iter().all(u8::is_ascii_uppercase)
        || !bytes[2..4].iter().all(u8::is_ascii_digit)
        || !bytes[4..].iter().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        return false;
    }
    // The country and check digits move to the end; letters count as 10..35.
    let rearranged = bytes[4..].iter().chain(&bytes[..4]);
    let remainder = rearranged.fold(0u32, |remainder, byte| {
        let value = if byte.is_ascii_digit() { u32::from(byte - b'0') } else { u32::from(byte - b'A') + 10 };
        if value >= 10 { (remainder * 100 + value) % 97 } else { (remainder * 10 + value) % 97 }
    });
    remainder == 1
}

/// The IBAN inside a normalised identifier: the identifier itself, or it without a three-letter
/// currency at its end, or a Polish 26-digit account number (NRB) with `PL` in front.
pub(crate) fn iban_in(normalized: &str) -> Option<String> {
    if iban_is_valid(normalized) {
        return Some(normalized.to_owned());
    }
    let without_currency = normalized
        .len()
        .checked_sub(3)
        .filter(|cut| normalized.is_char_boundary(*cut))
        .map(|cut| &normalized[..cut])
        .filter(|_| normalized.bytes().rev().take(3).all(|b| b.is_ascii_uppercase()));
    if let Some(candidate) = without_currency.filter(|candidate| iban_is_valid(candidate)) {
        return Some(candidate.to_owned());
    }
    let polish = format!("PL{normalized}");
    (normalized.len() == 26 && normalized.bytes().all(|b| b.is_ascii_digit()) && iban_is_valid(&polish))
        .then_some(polish)
}

/// The keys of an identifier: normalised, then the IBAN inside it if that differs.
pub(crate) fn keys(account: &str) -> Vec<String> {
    let normalized = normalize_account(account);
    let mut keys = vec![normalized.clone()];
    if let Some(iban) = iban_in(&normalized).filter(|iban| *iban != normalized) {
        keys.push(iban);
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ibans_are_checked() {
        for valid in
            ["DE89370400440532013000", "NL91ABNA0417164300", "PL61109010140000071219812874", "GB82WEST12345698765432"]
        {
            assert!(iban_is_valid(valid), "{valid}");
        }
        for invalid in
            ["DE89370400440532013001", "NL91ABNA041716430", "de89370400440532013000", "DE8937040044053201300X0"]
        {
            assert!(!iban_is_valid(invalid), "{invalid}");
        }
    }

    #[test]
    fn keys_find_the_iban_in_what_banks_write() {
        assert_eq!(keys(" de89 3704 0044 0532 0130 00"), ["DE89370400440532013000"]);
        assert_eq!(keys("NL91ABNA0417164300EUR"), ["NL91ABNA0417164300EUR", "NL91ABNA0417164300"]);
        assert_eq!(keys("/PL61109010140000071219812874"), ["PL61109010140000071219812874"]);
        assert_eq!(keys("61109010140000071219812874"), ["61109010140000071219812874", "PL61109010140000071219812874"]);
        assert_eq!(keys("37040044/0532013000"), ["37040044/0532013000"]);
        assert_eq!(keys("ÄBC"), ["ÄBC"]);
    }
}
