//! Setting attributes of a stored Part-10 file's data set, byte for byte everywhere else: the
//! top-level elements before the first changed one are copied, the changed ones are written
//! anew (or inserted in tag order), and everything after the last one, Pixel Data above all,
//! is copied as it was. Used by corrections ([`crate::ingest::correct`]): a header changes,
//! never the pixel data.
//!
//! Works on every transfer syntax: the uncompressed and encapsulated ones in place (Explicit VR
//! Big Endian too), Deflated Explicit VR Little Endian by inflating the data set, editing it
//! and deflating it again.
//! Every read is bounds-checked: a malformed file is an error, never a panic.

use crate::media::ts;
use dicom_encoding::text::{SpecificCharacterSet, TextCodec};

/// One attribute to set: its tag, its VR (two letters) and its text (one value; a person name
/// with its component groups joined by `=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewValue {
    /// (group, element).
    pub tag: (u16, u16),
    /// The VR: a short string VR (`PN`, `LO`, `SH`, `CS`, `DA`, ...).
    pub vr: [u8; 2],
    /// The value's text.
    pub text: String,
}

const SPECIFIC_CHARACTER_SET: u32 = 0x0008_0005;
const UTF8_TERM: &str = "ISO_IR 192";

/// `bytes` (a Part-10 file) with `values` set in its data set. A non-ASCII value is written in
/// the file's character set; a file in the default repertoire (no (0008,0005)) gets ISO_IR 192
/// (UTF-8, of which ASCII is a part, so every other value reads the same); a value its
/// character set cannot hold is an error, as is a file that cannot be walked.
pub fn set_attributes(bytes: &[u8], values: &[NewValue]) -> Result<Vec<u8>, String> {
    let meta = super::scan::scan_meta(bytes).map_err(|e| e.to_string())?;
    let start = usize::try_from(meta.dataset_offset)
        .ok()
        .filter(|s| *s <= bytes.len())
        .ok_or("the file meta information runs past the file")?;
    let syntax = meta.transfer_syntax.as_str();
    let mut out = bytes[..start].to_vec();
    if syntax == ts::DEFLATED_EXPLICIT_VR_LE {
        use std::io::{Read, Write};
        let mut ds = Vec::new();
        flate2::read::DeflateDecoder::new(&bytes[start..])
            .read_to_end(&mut ds)
            .map_err(|e| format!("the deflated data set does not inflate: {e}"))?;
        let edited = edit(&ds, EXPLICIT_LE, values)?;
        let mut z = flate2::write::DeflateEncoder::new(out, flate2::Compression::default());
        z.write_all(&edited).map_err(|e| e.to_string())?;
        return z.finish().map_err(|e| e.to_string());
    }
    let coding = Coding {
        explicit: syntax != ts::IMPLICIT_VR_LE,
        big: syntax == ts::EXPLICIT_VR_BE,
    };
    out.extend_from_slice(&edit(&bytes[start..], coding, values)?);
    Ok(out)
}

/// How a data set's elements are written.
#[derive(Debug, Clone, Copy)]
struct Coding {
    explicit: bool,
    big: bool,
}

const EXPLICIT_LE: Coding = Coding {
    explicit: true,
    big: false,
};

/// What an undefined length UN holds: Implicit VR Little Endian (PS3.5 §6.2.2).
const IMPLICIT_LE: Coding = Coding {
    explicit: false,
    big: false,
};

/// The data set `ds` with `values` set.
fn edit(ds: &[u8], coding: Coding, values: &[NewValue]) -> Result<Vec<u8>, String> {
    let charset = charset_of(ds, coding)?;
    let mut encoded: Vec<(u32, [u8; 2], Vec<u8>)> = Vec::new();
    let mut needs_utf8 = false;
    for v in values {
        let bytes = if v.text.is_ascii() {
            v.text.as_bytes().to_vec()
        } else {
            match charset.as_deref() {
                None | Some("") | Some("ISO_IR 6") => {
                    needs_utf8 = true;
                    v.text.as_bytes().to_vec()
                }
                Some(term) if !term.contains('\\') && !term.starts_with("ISO 2022") => {
                    SpecificCharacterSet::from_code(term)
                        .and_then(|cs| cs.encode(&v.text).ok())
                        .ok_or_else(|| {
                            format!(
                                "({:04X},{:04X}) {:?} cannot be written in the instance's character set {term}",
                                v.tag.0, v.tag.1, v.text
                            )
                        })?
                }
                Some(term) => {
                    return Err(format!(
                        "({:04X},{:04X}) {:?}: only ASCII text can be written into an instance with code extensions ({term})",
                        v.tag.0, v.tag.1, v.text
                    ))
                }
            }
        };
        encoded.push(((u32::from(v.tag.0) << 16) | u32::from(v.tag.1), v.vr, bytes));
    }
    if needs_utf8 {
        encoded.push((
            SPECIFIC_CHARACTER_SET,
            *b"CS",
            UTF8_TERM.as_bytes().to_vec(),
        ));
    }
    encoded.sort_by_key(|(t, ..)| *t);
    encoded.dedup_by_key(|(t, ..)| *t);
    let mut out = Vec::with_capacity(ds.len() + 256);
    let mut pending = encoded.into_iter().peekable();
    let mut pos = 0;
    while pos < ds.len() && pending.peek().is_some() {
        let e = element(ds, pos, coding)?;
        let mut replaced = false;
        while let Some((t, vr, value)) = pending.next_if(|(t, ..)| *t <= e.tag) {
            write_element(&mut out, t, vr, &value, coding)?;
            replaced |= t == e.tag;
        }
        if !replaced {
            out.extend_from_slice(&ds[e.start..e.end]);
        }
        pos = e.end;
    }
    for (t, vr, value) in pending {
        write_element(&mut out, t, vr, &value, coding)?;
    }
    out.extend_from_slice(&ds[pos..]);
    Ok(out)
}

/// One element's tag and extent in the data set.
struct Element {
    tag: u32,
    start: usize,
    end: usize,
}

fn u16_at(b: &[u8], pos: usize, c: Coding) -> Result<u16, String> {
    b.get(pos..pos + 2)
        .map(|s| {
            if c.big {
                u16::from_be_bytes([s[0], s[1]])
            } else {
                u16::from_le_bytes([s[0], s[1]])
            }
        })
        .ok_or_else(|| format!("the data set ends inside an element at byte {pos}"))
}

fn u32_at(b: &[u8], pos: usize, c: Coding) -> Result<u32, String> {
    b.get(pos..pos + 4)
        .map(|s| {
            let four = [s[0], s[1], s[2], s[3]];
            if c.big {
                u32::from_be_bytes(four)
            } else {
                u32::from_le_bytes(four)
            }
        })
        .ok_or_else(|| format!("the data set ends inside an element at byte {pos}"))
}

fn tag_at(b: &[u8], pos: usize, c: Coding) -> Result<u32, String> {
    Ok((u32::from(u16_at(b, pos, c)?) << 16) | u32::from(u16_at(b, pos + 2, c)?))
}

const ITEM: u32 = 0xFFFE_E000;
const ITEM_END: u32 = 0xFFFE_E00D;
const SEQUENCE_END: u32 = 0xFFFE_E0DD;
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// The element at `pos` (an undefined length one walked to its delimiter).
fn element(b: &[u8], pos: usize, c: Coding) -> Result<Element, String> {
    let tag = tag_at(b, pos, c)?;
    let end = element_end(b, pos, c, 0)?;
    Ok(Element {
        tag,
        start: pos,
        end,
    })
}

/// The position after the element at `pos` (nested `depth` sequences deep).
fn element_end(b: &[u8], pos: usize, c: Coding, depth: usize) -> Result<usize, String> {
    let tag = tag_at(b, pos, c)?;
    let (len, header, inner) = if c.explicit && tag >> 16 != 0xFFFE {
        let vr: &[u8; 2] = b
            .get(pos + 4..pos + 6)
            .and_then(|v| v.try_into().ok())
            .ok_or("the data set ends in a VR")?;
        if super::scan::long_length_vr(vr) {
            let inner = if vr == b"UN" { IMPLICIT_LE } else { c };
            (u32_at(b, pos + 8, c)?, 12, inner)
        } else {
            (u32::from(u16_at(b, pos + 6, c)?), 8, c)
        }
    } else {
        (u32_at(b, pos + 4, c)?, 8, c)
    };
    if len == UNDEFINED {
        delimited(b, pos + header, inner, depth)
    } else {
        (pos + header)
            .checked_add(len as usize)
            .filter(|e| *e <= b.len())
            .ok_or_else(|| format!("the element at byte {pos} runs past the data set"))
    }
}

/// The end of an undefined length value starting at `pos`: items (or fragments) up to the
/// sequence delimiter, nested ones walked too.
fn delimited(b: &[u8], mut pos: usize, c: Coding, depth: usize) -> Result<usize, String> {
    if depth > 64 {
        return Err("sequences nest more than 64 deep".into());
    }
    loop {
        let tag = tag_at(b, pos, c)?;
        let len = u32_at(b, pos + 4, c)?;
        match tag {
            SEQUENCE_END => return Ok(pos + 8),
            ITEM if len == UNDEFINED => {
                // Elements up to the item delimiter.
                let mut p = pos + 8;
                while tag_at(b, p, c)? != ITEM_END {
                    p = element_end(b, p, c, depth + 1)?;
                }
                pos = p + 8;
            }
            ITEM => {
                pos = (pos + 8)
                    .checked_add(len as usize)
                    .filter(|e| *e <= b.len())
                    .ok_or("an item runs past the data set")?;
            }
            _ => return Err(format!("expected an item at byte {pos}")),
        }
    }
}

/// The data set's Specific Character Set (0008,0005) as written (trimmed), if any.
fn charset_of(ds: &[u8], c: Coding) -> Result<Option<String>, String> {
    let mut pos = 0;
    while pos < ds.len() {
        let e = element(ds, pos, c)?;
        if e.tag == SPECIFIC_CHARACTER_SET {
            let text = String::from_utf8_lossy(ds.get(e.start + 8..e.end).unwrap_or_default());
            return Ok(Some(
                text.trim_matches(|c: char| c == ' ' || c == '\0')
                    .to_owned(),
            ));
        }
        if e.tag > SPECIFIC_CHARACTER_SET {
            return Ok(None);
        }
        pos = e.end;
    }
    Ok(None)
}

/// Writes one element of a short-length string VR, padded to an even length with a space.
fn write_element(
    out: &mut Vec<u8>,
    tag: u32,
    vr: [u8; 2],
    value: &[u8],
    c: Coding,
) -> Result<(), String> {
    let mut v = value.to_vec();
    if v.len() % 2 == 1 {
        v.push(b' ');
    }
    let u16s = |n: u16| {
        if c.big {
            n.to_be_bytes()
        } else {
            n.to_le_bytes()
        }
    };
    out.extend_from_slice(&u16s((tag >> 16) as u16));
    out.extend_from_slice(&u16s(tag as u16));
    if c.explicit {
        let len = u16::try_from(v.len()).map_err(|_| "a value longer than 65,534 bytes")?;
        out.extend_from_slice(&vr);
        out.extend_from_slice(&u16s(len));
    } else {
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(&v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pn(text: &str) -> NewValue {
        NewValue {
            tag: (0x0010, 0x0010),
            vr: *b"PN",
            text: text.into(),
        }
    }

    /// Every corpus file wado stores in a syntax it edits: dicom-rs reads the new values, and
    /// every other element, Pixel Data included, as it was.
    #[test]
    fn corpus_files_get_the_new_values_and_keep_every_other_element() {
        use dicom_dictionary_std::tags;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/corpus");
        let mut edited = 0;
        for entry in std::fs::read_dir(&dir).expect("test") {
            let path = entry.expect("test").path();
            if path.extension().is_none_or(|e| e != "dcm") {
                continue;
            }
            let bytes = std::fs::read(&path).expect("test");
            let values = [
                pn("Müller^Jürgen"),
                NewValue {
                    tag: (0x0008, 0x0050),
                    vr: *b"SH",
                    text: "ACC-9".into(),
                },
                NewValue {
                    tag: (0x0010, 0x0030),
                    vr: *b"DA",
                    text: "19700101".into(),
                },
                NewValue {
                    tag: (0x0008, 0x1030),
                    vr: *b"LO",
                    text: "Corrected description".into(),
                },
            ];
            let out = match set_attributes(&bytes, &values) {
                Ok(out) => out,
                Err(e) => {
                    // Refused: big endian, or a character set that cannot hold the name.
                    assert!(
                        e.contains("Big Endian")
                            || e.contains("character set")
                            || e.contains("code extensions"),
                        "{}: {e}",
                        path.display()
                    );
                    continue;
                }
            };
            let open = |b: &[u8]| {
                dicom_object::OpenFileOptions::new()
                    .from_reader(b)
                    .expect("test")
            };
            let (before, after) = (open(&bytes), open(&out));
            let text = |o: &dicom_object::DefaultDicomObject, t| {
                o.element(t)
                    .expect("test")
                    .to_str()
                    .expect("test")
                    .trim_end()
                    .to_owned()
            };
            assert_eq!(
                text(&after, tags::PATIENT_NAME),
                "Müller^Jürgen",
                "{}",
                path.display()
            );
            assert_eq!(text(&after, tags::ACCESSION_NUMBER), "ACC-9");
            assert_eq!(text(&after, tags::PATIENT_BIRTH_DATE), "19700101");
            assert_eq!(
                text(&after, tags::STUDY_DESCRIPTION),
                "Corrected description",
                "{}",
                path.display()
            );
            let changed = [
                tags::PATIENT_NAME,
                tags::ACCESSION_NUMBER,
                tags::PATIENT_BIRTH_DATE,
                tags::STUDY_DESCRIPTION,
                tags::SPECIFIC_CHARACTER_SET,
            ];
            let others = |o: &dicom_object::DefaultDicomObject| -> Vec<(dicom_core::Tag, Vec<u8>)> {
                o.iter()
                    .filter(|e| !changed.contains(&e.header().tag))
                    .map(|e| (e.header().tag, format!("{:?}", e.value()).into_bytes()))
                    .collect()
            };
            assert_eq!(others(&after), others(&before), "{}", path.display());
            edited += 1;
        }
        assert!(edited >= 30, "{edited}");
    }

    #[test]
    fn a_malformed_data_set_is_an_error_not_a_panic() {
        let mut f = vec![0u8; 128];
        f.extend_from_slice(b"DICM");
        // (0002,0010) UI "1.2.840.10008.1.2.1"
        let ts = b"1.2.840.10008.1.2.1\0";
        f.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        f.extend_from_slice(&(ts.len() as u16).to_le_bytes());
        f.extend_from_slice(ts);
        // An element claiming more bytes than there are.
        f.extend_from_slice(&[0x08, 0x00, 0x20, 0x00, b'D', b'A', 0xFF, 0x7F, b'2']);
        assert!(set_attributes(&f, &[pn("A^B")]).is_err());
        for cut in 0..f.len() {
            let _ = set_attributes(&f[..cut], &[pn("A^B")]);
        }
    }
}
