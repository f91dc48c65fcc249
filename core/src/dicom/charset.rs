//! Specific Character Set with code extensions (PS3.3 C.12.1.1.2, PS3.5 §6.1.2.5): text whose
//! character sets switch inside a value with ISO 2022 escape sequences — Japanese (ISO 2022 IR
//! 13, 87, 159), Korean (IR 149), Chinese (IR 58), and the single-byte sets (IR 100–166) used as
//! extensions — decoded per value and per person name component group.
//!
//! dicom-rs decodes a whole value with the codec of the *first* term of (0008,0005) and leaves
//! escape sequences in place (for `\ISO 2022 IR 149` it decodes Korean bytes as Latin-1). Its
//! codecs are byte-exact for what they were given, so the bytes are recovered by encoding its
//! text with the same codec, and decoded again here with the escape sequences honoured. Single
//! terms without code extensions (`ISO_IR 100`, `ISO_IR 192`, `GB18030`, …) stay dicom-rs's.

use dicom_encoding::text::{SpecificCharacterSet, TextCodec};
use encoding::{DecoderTrap, EncodingRef};

/// The Specific Character Set in force for a data set (its own, or the one it inherits).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Charset {
    /// The terms of (0008,0005), trimmed; value 1 may be empty (the default repertoire).
    terms: Vec<String>,
}

/// What the G0 set (bytes 0x21–0x7E) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum G0 {
    /// ISO 646 (IR 6).
    Ascii,
    /// JIS X 0201 Romaji (IR 14): ASCII with ¥ and ‾.
    Romaji,
    /// JIS X 0208 (IR 87), two bytes a character.
    Jis0208,
    /// JIS X 0212 (IR 159), two bytes a character.
    Jis0212,
}

/// What the G1 set (bytes 0xA1–0xFE) holds.
#[derive(Clone, Copy)]
enum G1 {
    /// Nothing designated: bytes are read as ISO 8859-1 (best effort).
    None,
    /// An ISO 8859 part (IR 100–166), one byte a character.
    Single(EncodingRef),
    /// JIS X 0201 Katakana (IR 13).
    Katakana,
    /// KS X 1001 (IR 149), two bytes a character, as EUC-KR.
    Ksx1001,
    /// GB 2312 (IR 58), two bytes a character, as EUC-CN.
    Gb2312,
}

const ESC: u8 = 0x1B;

impl Charset {
    /// The character set of the terms of (0008,0005).
    pub fn new<S: AsRef<str>>(terms: &[S]) -> Charset {
        Charset {
            terms: terms.iter().map(|t| t.as_ref().trim().to_owned()).collect(),
        }
    }

    /// True when values need decoding here: code extensions (several terms, or an ISO 2022
    /// term), which dicom-rs does not switch.
    pub fn extended(&self) -> bool {
        self.terms.len() > 1 || self.terms.iter().any(|t| t.starts_with("ISO 2022"))
    }

    /// Decodes the text dicom-rs read for an attribute of this VR class (`pn`: person names,
    /// where `^` and `=` also return to the initial sets; values separated by `\`).
    /// `None` when nothing needs doing (no code extensions).
    pub fn redecode(&self, read: &str, pn: bool) -> Option<String> {
        if !self.extended() {
            return None;
        }
        let bytes = self.recover(read)?;
        Some(self.decode(&bytes, pn))
    }

    /// The bytes dicom-rs decoded into `s`, with the codec of the first term (the default
    /// repertoire, read as ISO 8859-1, when it is empty or unknown).
    fn recover(&self, s: &str) -> Option<Vec<u8>> {
        let first = self.terms.first().map_or("", String::as_str);
        match SpecificCharacterSet::from_code(first) {
            Some(cs) if !first.is_empty() => cs.encode(s).ok(),
            _ => s
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect::<Option<Vec<u8>>>(),
        }
    }

    /// The sets in force at the start of a value, a line and a component group: those of the
    /// first term (PS3.5 §6.1.2.5.3).
    fn initial(&self) -> (G0, G1) {
        match self.terms.first().map_or("", String::as_str) {
            "ISO 2022 IR 13" | "ISO_IR 13" => (G0::Romaji, G1::Katakana),
            "ISO 2022 IR 149" => (G0::Ascii, G1::Ksx1001),
            "ISO 2022 IR 58" => (G0::Ascii, G1::Gb2312),
            t => (G0::Ascii, single_byte(t).map_or(G1::None, G1::Single)),
        }
    }

    /// Decodes `b` honouring ISO 2022 escape sequences (PS3.3 Tables C.12-3 and C.12-4).
    fn decode(&self, b: &[u8], pn: bool) -> String {
        let (mut g0, mut g1) = self.initial();
        let mut out = String::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c == ESC {
                if let Some((set, len)) = escape(&b[i + 1..]) {
                    match set {
                        Designation::G0(g) => g0 = g,
                        Designation::G1(g) => g1 = g,
                    }
                    i += 1 + len;
                    continue;
                }
                // An escape sequence this table does not know: kept, so nothing is lost.
                out.push('\u{1b}');
                i += 1;
                continue;
            }
            if c < 0x80 {
                let two_byte = matches!(g0, G0::Jis0208 | G0::Jis0212);
                if two_byte && c > 0x20 && c < 0x7F {
                    let Some(&c2) = b.get(i + 1) else {
                        out.push('\u{fffd}');
                        break;
                    };
                    let euc: Vec<u8> = if g0 == G0::Jis0212 {
                        vec![0x8F, c | 0x80, c2 | 0x80]
                    } else {
                        vec![c | 0x80, c2 | 0x80]
                    };
                    out.push_str(&lossy(encoding::all::EUC_JP, &euc));
                    i += 2;
                    continue;
                }
                let ch = match (g0, c) {
                    (G0::Romaji, 0x5C) => '¥',
                    (G0::Romaji, 0x7E) => '‾',
                    _ => char::from(c),
                };
                out.push(ch);
                // Delimiters return to the initial sets (PS3.5 §6.1.2.5.3).
                if matches!(c, b'\\' | b'\r' | b'\n' | b'\t' | 0x0C)
                    || (pn && matches!(c, b'^' | b'='))
                {
                    (g0, g1) = self.initial();
                }
                i += 1;
                continue;
            }
            match g1 {
                G1::Single(enc) => {
                    out.push_str(&lossy(enc, &[c]));
                    i += 1;
                }
                G1::Katakana if (0xA1..=0xDF).contains(&c) => {
                    out.push(char::from_u32(0xFF61 + u32::from(c - 0xA1)).unwrap_or('\u{fffd}'));
                    i += 1;
                }
                G1::Ksx1001 | G1::Gb2312 if i + 1 < b.len() => {
                    let enc: EncodingRef = if matches!(g1, G1::Ksx1001) {
                        encoding::all::WINDOWS_949
                    } else {
                        encoding::all::GBK
                    };
                    out.push_str(&lossy(enc, &b[i..i + 2]));
                    i += 2;
                }
                _ => {
                    // Nothing designated for this byte: ISO 8859-1, the best effort.
                    out.push(char::from(c));
                    i += 1;
                }
            }
        }
        out
    }
}

enum Designation {
    G0(G0),
    G1(G1),
}

/// The designation an escape sequence (the bytes after ESC) makes, and its length.
fn escape(s: &[u8]) -> Option<(Designation, usize)> {
    let d = match s {
        [b'(', b'B', ..] => (Designation::G0(G0::Ascii), 2),
        [b'(', b'J', ..] => (Designation::G0(G0::Romaji), 2),
        [b')', b'I', ..] => (Designation::G1(G1::Katakana), 2),
        [b'$', b'B', ..] | [b'$', b'@', ..] => (Designation::G0(G0::Jis0208), 2),
        [b'$', b'(', b'D', ..] => (Designation::G0(G0::Jis0212), 3),
        [b'$', b')', b'C', ..] => (Designation::G1(G1::Ksx1001), 3),
        [b'$', b')', b'A', ..] => (Designation::G1(G1::Gb2312), 3),
        [b'-', f, ..] => {
            let ir = match f {
                b'A' => "ISO 2022 IR 100",
                b'B' => "ISO 2022 IR 101",
                b'C' => "ISO 2022 IR 109",
                b'D' => "ISO 2022 IR 110",
                b'F' => "ISO 2022 IR 126",
                b'G' => "ISO 2022 IR 127",
                b'H' => "ISO 2022 IR 138",
                b'L' => "ISO 2022 IR 144",
                b'M' => "ISO 2022 IR 148",
                b'T' => "ISO 2022 IR 166",
                _ => return None,
            };
            (Designation::G1(G1::Single(single_byte(ir)?)), 2)
        }
        _ => return None,
    };
    Some(d)
}

/// The single-byte set of a term (PS3.3 Table C.12-2/-3), as an encoding whose upper half is it.
fn single_byte(term: &str) -> Option<EncodingRef> {
    use encoding::all as e;
    let ir = term
        .trim_start_matches("ISO 2022 IR ")
        .trim_start_matches("ISO_IR ");
    Some(match ir {
        "100" => e::ISO_8859_1,
        "101" => e::ISO_8859_2,
        "109" => e::ISO_8859_3,
        "110" => e::ISO_8859_4,
        "144" => e::ISO_8859_5,
        "127" => e::ISO_8859_6,
        "126" => e::ISO_8859_7,
        "138" => e::ISO_8859_8,
        // ISO 8859-9 and TIS 620: Windows-1254 and -874 are the same in the upper half.
        "148" => e::WINDOWS_1254,
        "166" => e::WINDOWS_874,
        _ => return None,
    })
}

fn lossy(enc: EncodingRef, b: &[u8]) -> String {
    enc.decode(b, DecoderTrap::Replace)
        .unwrap_or_else(|_| "\u{fffd}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The standard's own examples, their bytes made by Python's codecs (iso2022_jp, euc_kr,
    /// shift_jis for the half-width katakana, gb2312), their text as PS3.5 Annexes H, I and K
    /// print it.
    #[test]
    fn the_standards_examples_decode() {
        // H.3.1: `\ISO 2022 IR 87`.
        let h31 =
            b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B";
        let cs = Charset::new(&["", "ISO 2022 IR 87"]);
        assert_eq!(cs.decode(h31, true), "Yamada^Tarou=山田^太郎=やまだ^たろう");
        // H.3.2: `ISO 2022 IR 13\ISO 2022 IR 87` (half-width katakana in G1, Romaji in G0).
        let h32 = b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J";
        let cs = Charset::new(&["ISO 2022 IR 13", "ISO 2022 IR 87"]);
        assert_eq!(cs.decode(h32, true), "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう");
        // I.2: `\ISO 2022 IR 149`.
        let i2 = b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf";
        let cs = Charset::new(&["", "ISO 2022 IR 149"]);
        assert_eq!(cs.decode(i2, true), "Hong^Gildong=洪^吉洞=홍^길동");
        // K.2: `\ISO 2022 IR 58` (GB 2312 in G1).
        let k2 = b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab=";
        let cs = Charset::new(&["", "ISO 2022 IR 58"]);
        assert_eq!(cs.decode(k2, true), "Zhang^XiaoDong=张^小东=");
    }

    /// What dicom-rs hands over (the bytes decoded with value 1's codec) comes back whole.
    #[test]
    fn dicom_rs_text_is_recovered_and_redecoded() {
        let i2 = b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7";
        let as_read: String = i2.iter().map(|&b| char::from(b)).collect();
        let cs = Charset::new(&["", "ISO 2022 IR 149"]);
        assert_eq!(
            cs.redecode(&as_read, true).as_deref(),
            Some("Hong^Gildong=洪^吉洞")
        );
        // Single terms without extensions are dicom-rs's business.
        assert_eq!(Charset::new(&["ISO_IR 100"]).redecode("Jérôme", true), None);
        // Unknown escape sequences are kept, never dropped.
        let cs = Charset::new(&["", "ISO 2022 IR 87"]);
        assert_eq!(cs.decode(b"a\x1b%Gb", false), "a\u{1b}%Gb");
    }
}
