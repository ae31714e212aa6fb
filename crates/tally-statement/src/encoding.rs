//! The character set of a statement file: UTF-8 (with or without a byte order mark), UTF-16 by
//! its byte order mark, a set the caller or an XML declaration names, or, for bytes that are not
//! UTF-8, ISO-8859-2 or ISO-8859-1 as detected from the letters used.
//!
//! Detection rests on where the two sets differ. German, Dutch and French letters (ä ö ü ß é ó)
//! have the same bytes in ISO-8859-1 and ISO-8859-2, so reading such a file as either gives the
//! same text. The bytes 0xA1–0xBF hold Polish and Czech letters in ISO-8859-2 (ą ł ś ź ż Ą Ł Ś Ź
//! Ż) but symbols in ISO-8859-1 (¡ £ ± ³ ¶ ¼ ¿) that bank text does not use. Bytes 0x80–0x9F are
//! control codes in both ISO sets and letters only in the Windows code pages, so they mean
//! Windows-1250 (with its Polish letters at 0x8C, 0x8F, 0x9C, 0x9F, 0xA5, 0xB9) or Windows-1252.

use std::borrow::Cow;

use encoding_rs::{Encoding, ISO_8859_2, UTF_8, WINDOWS_1250, WINDOWS_1252};

use crate::text::line_at;
use crate::{Note, StatementError};

/// A file's text and how it was read.
#[derive(Debug)]
pub(crate) struct Decoded<'b> {
    pub(crate) text: Cow<'b, str>,
    /// The character set's name, as reports show it.
    pub(crate) encoding: &'static str,
    /// Set when the character set was detected rather than known.
    pub(crate) note: Option<Note>,
}

/// Bytes of ISO-8859-2 letters that ISO-8859-1 has as symbols (0xA1–0xBF).
const ISO_8859_2_LETTERS: [u8; 20] = [
    0xA1, 0xA3, 0xA5, 0xA6, 0xA9, 0xAA, 0xAB, 0xAC, 0xAE, 0xAF, 0xB1, 0xB3, 0xB5, 0xB6, 0xB9, 0xBA, 0xBB, 0xBC, 0xBE,
    0xBF,
];

/// Bytes of Windows-1250 letters that Windows-1252 has otherwise (Ś Ź ś ź Ą ą).
const WINDOWS_1250_LETTERS: [u8; 6] = [0x8C, 0x8F, 0x9C, 0x9F, 0xA5, 0xB9];

/// Reads `bytes` as text. `declared` is a character set label (`iso-8859-2`, `utf-8`); without
/// one, valid UTF-8 is UTF-8 and anything else is detected.
pub(crate) fn decode<'b>(bytes: &'b [u8], declared: Option<&str>) -> Result<Decoded<'b>, StatementError> {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        return known(&bytes[bom_len..], encoding, encoding.name());
    }
    if let Some(label) = declared {
        let encoding = Encoding::for_label(label.trim().as_bytes()).ok_or_else(|| {
            StatementError::unsupported("input", format!("unknown character set {:?}", crate::text::clip(label)))
        })?;
        let name = if encoding == WINDOWS_1252 && is_latin1_label(label) { "ISO-8859-1" } else { encoding.name() };
        return known(bytes, encoding, name);
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(Decoded { text: Cow::Borrowed(text), encoding: "UTF-8", note: None });
    }
    let uses_windows_range = bytes.iter().any(|b| (0x80..=0x9F).contains(b));
    let (encoding, name) = match uses_windows_range {
        true if bytes.iter().any(|b| WINDOWS_1250_LETTERS.contains(b)) => (WINDOWS_1250, "windows-1250"),
        true => (WINDOWS_1252, "windows-1252"),
        false if bytes.iter().any(|b| ISO_8859_2_LETTERS.contains(b)) => (ISO_8859_2, "ISO-8859-2"),
        false => (WINDOWS_1252, "ISO-8859-1"),
    };
    let mut decoded = known(bytes, encoding, name)?;
    let first = bytes.iter().position(|b| !b.is_ascii()).unwrap_or(0);
    decoded.note = Some(Note::new(
        "encoding_detected",
        format!("line {}", line_at(bytes, first)),
        format!("the file is not UTF-8 and names no character set: read as {name}"),
    ));
    Ok(decoded)
}

fn is_latin1_label(label: &str) -> bool {
    let label = label.trim().to_ascii_lowercase();
    label.contains("8859-1") || label.contains("latin1") || label == "l1"
}

/// Decodes with a known character set; bytes it does not define are refused with their line.
fn known<'b>(bytes: &'b [u8], encoding: &'static Encoding, name: &'static str) -> Result<Decoded<'b>, StatementError> {
    if encoding == UTF_8 {
        let text = std::str::from_utf8(bytes).map_err(|error| {
            let line = line_at(bytes, error.valid_up_to());
            StatementError::malformed(format!("line {line}"), "text is not valid UTF-8")
        })?;
        return Ok(Decoded { text: Cow::Borrowed(text), encoding: name, note: None });
    }
    let text = encoding.decode_without_bom_handling_and_without_replacement(bytes).ok_or_else(|| {
        // The replacing decoder marks the first byte the set does not define; newlines are the
        // same bytes in every set read here, so lines of its output are lines of the file.
        let (replaced, _) = encoding.decode_without_bom_handling(bytes);
        let at = replaced.find('\u{FFFD}').unwrap_or(0);
        StatementError::malformed(
            format!("line {}", line_at(replaced.as_bytes(), at)),
            format!("text is not valid {name}"),
        )
    })?;
    Ok(Decoded { text, encoding: name, note: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_taken_as_is() {
        let decoded = decode("Müller".as_bytes(), None).unwrap();
        assert_eq!((decoded.text.as_ref(), decoded.encoding, decoded.note), ("Müller", "UTF-8", None));
        let decoded = decode(b"\xEF\xBB\xBFabc", None).unwrap();
        assert_eq!(decoded.text, "abc");
        assert_eq!(decode(b"a\n\xff", Some("utf-8")).unwrap_err().location(), "line 2");
    }

    #[test]
    fn polish_and_german_single_byte_text_is_detected() {
        // "Łódź, zapłata" in ISO-8859-2.
        let polish = b"\xA3\xF3d\xBC, zap\xB3ata";
        let decoded = decode(polish, None).unwrap();
        assert_eq!((decoded.text.as_ref(), decoded.encoding), ("Łódź, zapłata", "ISO-8859-2"));
        let note = decoded.note.unwrap();
        assert_eq!((note.code, note.location.as_str()), ("encoding_detected", "line 1"));

        // "Müller Straße" in ISO-8859-1, on line 2.
        let german = b"x\nM\xFCller Stra\xDFe";
        let decoded = decode(german, None).unwrap();
        assert_eq!((decoded.text.as_ref(), decoded.encoding), ("x\nMüller Straße", "ISO-8859-1"));
        assert_eq!(decoded.note.unwrap().location, "line 2");

        // "Śląsk" in Windows-1250.
        let windows = b"\x8Cl\xB9sk";
        let decoded = decode(windows, None).unwrap();
        assert_eq!((decoded.text.as_ref(), decoded.encoding), ("Śląsk", "windows-1250"));
    }

    #[test]
    fn declared_sets_win_and_unknown_labels_are_refused() {
        let decoded = decode(b"\xA3\xF3d\xBC", Some("ISO-8859-2")).unwrap();
        assert_eq!((decoded.text.as_ref(), decoded.encoding, decoded.note.is_none()), ("Łódź", "ISO-8859-2", true));
        let decoded = decode(b"\xA3", Some("latin1")).unwrap();
        assert_eq!((decoded.text.as_ref(), decoded.encoding), ("£", "ISO-8859-1"));
        assert_eq!(decode(b"abc", Some("klingon")).unwrap_err().code(), "statement_unsupported");
        // A Shift_JIS lead byte without its second byte.
        let error = decode(b"ok\n\x81", Some("shift_jis")).unwrap_err();
        assert_eq!((error.code(), error.location()), ("statement_malformed", "line 2"));
    }

    #[test]
    fn utf16_by_its_byte_order_mark() {
        let decoded = decode(b"\xFF\xFEa\x00b\x00", None).unwrap();
        assert_eq!((decoded.text.as_ref(), decoded.encoding), ("ab", "UTF-16LE"));
    }
}
