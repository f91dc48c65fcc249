//! The DICOM JSON Model writer (PS3.18 Annex F).
//!
//! - Attributes in ascending tag order; no group 0002 (File Meta), no group lengths
//!   (gggg,0000), no Data Set Trailing Padding (F.2.1, §10.4 "does not include any Group 0002").
//! - `"vr"` always; at most one of `Value`, `BulkDataURI`, `InlineBinary`; an empty attribute
//!   has `"vr"` alone (F.2.2).
//! - PN values are objects of `Alphabetic`/`Ideographic`/`Phonetic` with empty groups left out
//!   (F.2.2); empty values of multi-valued attributes are `null`.
//! - IS and DS are JSON numbers by default, for viewers that predate CP 1861 (dcm4chee#2922);
//!   a value is written as its original string where a number would lose precision or is not a
//!   number at all (F.2.3, CP 1861). [`NumberStyle::Strings`] writes them all as strings.
//! - Text is UTF-8: dicom-rs decodes it from the Specific Character Set while parsing, and
//!   (0008,0005) keeps the source value, as F.2.2 note 3 asks.
//! - Pixel Data, Float and Double Float Pixel Data, and binary values longer than
//!   `inline_max` bytes become an absolute `BulkDataURI`; shorter binary values are
//!   `InlineBinary` (base64).

use super::charset::Charset;
use crate::dicom::uid::{AttributePath, PathStep};
use base64::Engine as _;
use dicom_core::header::{HasLength, Header};
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;
use std::fmt::Write as _;

/// How IS and DS values are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NumberStyle {
    /// JSON numbers, with the original string where a number would lose precision.
    #[default]
    Numbers,
    /// Always the original strings (CP 1861 style, as dcm4chee does by default).
    Strings,
}

/// Options of the JSON writer.
#[derive(Clone, Debug)]
pub struct JsonOptions {
    /// The absolute URI of the instance's bulk data resource, without a trailing slash:
    /// `{service root}/studies/{s}/series/{se}/instances/{i}/bulkdata`. Attribute paths are
    /// appended as `/{GGGGEEEE}[/{item}/{GGGGEEEE}...]`.
    pub bulk_uri_prefix: String,
    /// Binary values up to this many bytes are written inline.
    pub inline_max: usize,
    /// IS/DS style.
    pub numbers: NumberStyle,
}

/// Binary values of at most this many bytes are inline by default: small LUT descriptors and
/// private flags stay in the metadata, anything image-sized becomes bulk data.
pub const DEFAULT_INLINE_MAX: usize = 1024;

/// True when the attribute is always sent as bulk data, at the top level of the data set.
pub fn is_pixel_data_tag(tag: Tag) -> bool {
    tag == tags::PIXEL_DATA || tag == tags::FLOAT_PIXEL_DATA || tag == tags::DOUBLE_FLOAT_PIXEL_DATA
}

/// True for the VRs whose values are binary (F.2.2: InlineBinary or BulkDataURI only).
pub fn is_binary_vr(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    )
}

/// Writes one data set as a DICOM JSON object into `out`.
pub fn write_dataset(obj: &InMemDicomObject, opts: &JsonOptions, out: &mut String) {
    let mut path = Vec::new();
    write_object(obj, opts, &mut path, out, &Charset::default());
}

/// Writes one data set as a DICOM JSON object and returns it.
pub fn dataset_to_string(obj: &InMemDicomObject, opts: &JsonOptions) -> String {
    let mut s = String::with_capacity(8 * 1024);
    write_dataset(obj, opts, &mut s);
    s
}

fn write_object(
    obj: &InMemDicomObject,
    opts: &JsonOptions,
    path: &mut Vec<PathStep>,
    out: &mut String,
    inherited: &Charset,
) {
    // An item without its own Specific Character Set has its parent's (PS3.5 §7.5.3).
    let own = obj
        .get(tags::SPECIFIC_CHARACTER_SET)
        .and_then(|e| e.to_multi_str().ok().map(|t| Charset::new(&t)));
    let cs = own.as_ref().unwrap_or(inherited);
    out.push('{');
    let mut first = true;
    // InMemDicomObject keeps elements in a BTreeMap: iteration is in ascending tag order.
    for elem in obj.iter() {
        let tag = elem.tag();
        if tag.group() == 0x0002
            || tag.element() == 0x0000
            || tag == Tag(0xFFFC, 0xFFFC)
            || tag.group() == 0xFFFE
        {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "\"{:04X}{:04X}\":", tag.group(), tag.element());
        path.push(PathStep::Tag(
            u32::from(tag.group()) << 16 | u32::from(tag.element()),
        ));
        write_element(elem, opts, path, out, cs);
        path.pop();
    }
    out.push('}');
}

fn write_element(
    elem: &InMemElement,
    opts: &JsonOptions,
    path: &mut Vec<PathStep>,
    out: &mut String,
    cs: &Charset,
) {
    let vr = elem.vr();
    let _ = write!(out, "{{\"vr\":\"{}\"", vr.to_string());
    let top_level = path.len() == 1;
    match elem.value() {
        Value::Sequence(seq) => {
            let items = seq.items();
            if !items.is_empty() {
                out.push_str(",\"Value\":[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    path.push(PathStep::Item(i as u32 + 1));
                    write_object(item, opts, path, out, cs);
                    path.pop();
                }
                out.push(']');
            }
        }
        Value::PixelSequence(_) => write_bulk_uri(opts, path, out),
        Value::Primitive(p) => {
            if matches!(p, PrimitiveValue::Empty) || elem.length().0 == 0 {
                // "vr" alone.
            } else if (top_level && is_pixel_data_tag(elem.tag()))
                || (is_binary_vr(vr) && byte_len(p) > opts.inline_max)
            {
                write_bulk_uri(opts, path, out);
            } else if is_binary_vr(vr) {
                out.push_str(",\"InlineBinary\":\"");
                out.push_str(&base64::engine::general_purpose::STANDARD.encode(p.to_bytes()));
                out.push('"');
            } else {
                write_primitive(vr, p, opts, out, cs);
            }
        }
    }
    out.push('}');
}

fn byte_len(p: &PrimitiveValue) -> usize {
    p.calculate_byte_len()
}

fn write_bulk_uri(opts: &JsonOptions, path: &[PathStep], out: &mut String) {
    out.push_str(",\"BulkDataURI\":");
    let uri = format!("{}/{}", opts.bulk_uri_prefix, AttributePath(path.to_vec()));
    write_json_string(&uri, out);
}

fn write_primitive(vr: VR, p: &PrimitiveValue, opts: &JsonOptions, out: &mut String, cs: &Charset) {
    use PrimitiveValue as P;
    // Collect JSON value texts first so an attribute whose values all vanish is written as
    // "vr" alone.
    let mut values: Vec<String> = Vec::new();
    match p {
        P::Empty => {}
        P::Strs(_) | P::Str(_) | P::Date(_) | P::Time(_) | P::DateTime(_) => {
            let strs = string_values(vr, p, cs);
            for s in &strs {
                values.push(match vr {
                    VR::PN => pn_json(s),
                    VR::IS => is_json(s, opts.numbers),
                    VR::DS => ds_json(s, opts.numbers),
                    _ if s.is_empty() => "null".into(),
                    _ => json_string(s),
                });
            }
        }
        P::Tags(t) => values.extend(
            t.iter()
                .map(|t| format!("\"{:04X}{:04X}\"", t.group(), t.element())),
        ),
        P::U8(v) => values.extend(v.iter().map(|x| x.to_string())),
        P::I16(v) => values.extend(v.iter().map(|x| x.to_string())),
        P::U16(v) => values.extend(v.iter().map(|x| x.to_string())),
        P::I32(v) => values.extend(v.iter().map(|x| x.to_string())),
        P::U32(v) => values.extend(v.iter().map(|x| x.to_string())),
        P::I64(v) => values.extend(v.iter().map(|x| x.to_string())),
        P::U64(v) => values.extend(v.iter().map(|x| x.to_string())),
        P::F32(v) => values.extend(v.iter().map(|x| float_json(f64::from(*x), Some(*x)))),
        P::F64(v) => values.extend(v.iter().map(|x| float_json(*x, None))),
    }
    if values.is_empty() || values.iter().all(|v| v == "null") && values.len() == 1 {
        return;
    }
    out.push_str(",\"Value\":[");
    out.push_str(&values.join(","));
    out.push(']');
}

/// The string values of a textual attribute, with insignificant padding removed (PS3.5 Table
/// 6.2-1): trailing spaces (and NULs, for UI) for every string VR, leading spaces too where the
/// standard says they are not significant. Values of the VRs a Specific Character Set with
/// code extensions applies to are decoded again ([`Charset`]).
fn string_values(vr: VR, p: &PrimitiveValue, cs: &Charset) -> Vec<String> {
    let single = matches!(vr, VR::LT | VR::ST | VR::UT | VR::UR);
    let raw: Vec<String> = match p {
        PrimitiveValue::Str(s) => vec![s.clone()],
        // dicom-rs splits these at the backslash bytes before decoding, and writes a byte its
        // decoder cannot read as `\ooo` (octal): so in a value already split, a backslash is
        // such a byte, and becomes U+FFFD, the replacement character (never a delimiter).
        PrimitiveValue::Strs(v) if !single => v.iter().map(|s| unescape_undecodable(s)).collect(),
        PrimitiveValue::Strs(v) => v.iter().cloned().collect(),
        other => other.to_multi_str().into_owned(),
    };
    let text_vr = matches!(
        vr,
        VR::SH | VR::LO | VR::ST | VR::LT | VR::UT | VR::PN | VR::UC
    );
    // With code extensions the values are decoded whole (a backslash byte inside a two-byte
    // character is not a delimiter), then split where the decoder saw real delimiters.
    let raw = match text_vr
        .then(|| cs.redecode(&raw.join("\\"), vr == VR::PN))
        .flatten()
    {
        Some(decoded) => vec![decoded],
        None => raw,
    };
    // Single-valued text VRs are never split on backslash (PS3.5 §6.2: LT, ST, UT, UR); values
    // dicom-rs split are not split again.
    let split: Vec<String> = if single {
        vec![raw.join("\\")]
    } else if matches!(p, PrimitiveValue::Strs(_)) && !cs.extended() {
        raw
    } else {
        raw.iter()
            .flat_map(|s| s.split('\\').map(str::to_owned).collect::<Vec<_>>())
            .collect()
    };
    let trim_leading = matches!(
        vr,
        VR::AE | VR::CS | VR::DS | VR::IS | VR::DA | VR::TM | VR::DT | VR::UI | VR::AS
    );
    split
        .into_iter()
        .map(|s| {
            let s = s.trim_end_matches([' ', '\0']);
            let s = if trim_leading {
                s.trim_start_matches(' ')
            } else {
                s
            };
            s.to_owned()
        })
        .collect()
}

/// dicom-rs's mark for a byte its text decoder could not read (`\\` and three octal digits)
/// replaced by U+FFFD.
fn unescape_undecodable(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let octal = |k: usize| b.get(i + k).is_some_and(|c| (b'0'..=b'7').contains(c));
        if b[i] == b'\\' && octal(1) && octal(2) && octal(3) {
            out.push('\u{fffd}');
            i += 4;
        } else {
            let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn pn_json(s: &str) -> String {
    if s.is_empty() {
        return "null".into();
    }
    let mut out = String::from("{");
    let mut first = true;
    for (name, group) in ["Alphabetic", "Ideographic", "Phonetic"]
        .iter()
        .zip(s.splitn(3, '='))
    {
        let group = group.trim_end_matches(' ');
        // Trailing empty components are insignificant (PS3.5 §6.2.1).
        let group = group.trim_end_matches('^');
        if group.is_empty() {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "\"{name}\":");
        write_json_string(group, &mut out);
    }
    out.push('}');
    if first {
        "null".into()
    } else {
        out
    }
}

fn is_json(s: &str, style: NumberStyle) -> String {
    let t = s.trim();
    if t.is_empty() {
        return "null".into();
    }
    if style == NumberStyle::Numbers {
        if let Ok(v) = t.trim_start_matches('+').parse::<i64>() {
            // JSON readers parse numbers into doubles: beyond 2^53 the string is exact.
            if v.unsigned_abs() <= (1u64 << 53) && !t.starts_with("+-") {
                return v.to_string();
            }
        }
    }
    json_string(t)
}

fn ds_json(s: &str, style: NumberStyle) -> String {
    let t = s.trim();
    if t.is_empty() {
        return "null".into();
    }
    if style == NumberStyle::Numbers {
        if let Some(n) = exact_number(t) {
            return n;
        }
    }
    json_string(t)
}

/// The shortest JSON number that a reader parsing into f64 turns into exactly the decimal
/// value of `t`, or `None` when no such number exists (more digits than a double holds, not
/// a number, infinite).
fn exact_number(t: &str) -> Option<String> {
    let v: f64 = t.parse().ok()?;
    if !v.is_finite()
        || t.bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E')
    {
        return None;
    }
    let shortest = format_f64(v);
    if decimal_key(t)? == decimal_key(&shortest)? {
        Some(shortest)
    } else {
        None
    }
}

/// Normalised (negative, significant digits, exponent) of a decimal string, so that "1.50",
/// "+1.5" and "15e-1" compare equal.
fn decimal_key(s: &str) -> Option<(bool, String, i64)> {
    let s = s.trim();
    let (neg, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i64>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    let lead = digits.len() - digits.trim_start_matches('0').len();
    let sig = digits
        .trim_start_matches('0')
        .trim_end_matches('0')
        .to_owned();
    if sig.is_empty() {
        return Some((false, String::new(), 0));
    }
    // value = 0.sig × 10^(position of the first significant digit)
    let point = int.len() as i64 - lead as i64 + exp;
    Some((neg, sig, point))
}

/// Shortest round-trip text of a double as a JSON number.
fn format_f64(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e16 {
        // Integral values print without a fraction; -0.0 prints as 0.
        format!("{}", v as i64)
    } else {
        // Rust's `{}` / `{:e}` print the shortest string that round-trips.
        let plain = format!("{v}");
        let sci = format!("{v:e}");
        if sci.len() < plain.len() {
            sci
        } else {
            plain
        }
    }
}

fn float_json(v: f64, as_f32: Option<f32>) -> String {
    if !v.is_finite() {
        // JSON has no NaN or infinity; DCMTK refuses them too (--encode-strict).
        return "null".into();
    }
    match as_f32 {
        Some(f) if f == f.trunc() && f.abs() < 1e7 => format!("{}", f as i64),
        Some(f) => {
            let plain = format!("{f}");
            let sci = format!("{f:e}");
            if sci.len() < plain.len() {
                sci
            } else {
                plain
            }
        }
        None => format_f64(v),
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_json_string(s, &mut out);
    out
}

/// Writes `s` as a JSON string literal (RFC 8259 §7).
pub fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1F => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{dicom_value, DataElement};

    fn opts() -> JsonOptions {
        JsonOptions {
            bulk_uri_prefix:
                "http://h/dcm4chee-arc/aets/A/rs/studies/1/series/2/instances/3/bulkdata".into(),
            inline_max: 4,
            numbers: NumberStyle::Numbers,
        }
    }

    fn json_of(elems: Vec<InMemElement>) -> serde_json::Value {
        let obj = InMemDicomObject::from_element_iter(elems);
        let s = dataset_to_string(&obj, &opts());
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("invalid JSON {s}: {e}"))
    }

    fn one(tag: Tag, vr: VR, v: PrimitiveValue) -> serde_json::Value {
        let j = json_of(vec![DataElement::new(tag, vr, v)]);
        j[format!("{:04X}{:04X}", tag.group(), tag.element())].clone()
    }

    #[test]
    fn value_table() {
        use serde_json::json;
        let t = Tag(0x0011, 0x1001);
        let cases: Vec<(VR, PrimitiveValue, serde_json::Value)> = vec![
            (
                VR::CS,
                dicom_value!(Strs, ["ORIGINAL", "PRIMARY"]),
                json!({"vr":"CS","Value":["ORIGINAL","PRIMARY"]}),
            ),
            (
                VR::CS,
                dicom_value!(Str, " A\\B "),
                json!({"vr":"CS","Value":["A","B"]}),
            ),
            (
                VR::LO,
                dicom_value!(Strs, ["a", "", "c"]),
                json!({"vr":"LO","Value":["a",null,"c"]}),
            ),
            (
                VR::LT,
                dicom_value!(Str, "line\\with backslash  "),
                json!({"vr":"LT","Value":["line\\with backslash"]}),
            ),
            (
                VR::UI,
                dicom_value!(Str, "1.2.3\0"),
                json!({"vr":"UI","Value":["1.2.3"]}),
            ),
            (
                VR::PN,
                dicom_value!(Str, "Yamada^Tarou=山田^太郎=やまだ^たろう"),
                json!({"vr":"PN","Value":[{"Alphabetic":"Yamada^Tarou","Ideographic":"山田^太郎","Phonetic":"やまだ^たろう"}]}),
            ),
            (
                VR::PN,
                dicom_value!(Str, "Doe^John^^^"),
                json!({"vr":"PN","Value":[{"Alphabetic":"Doe^John"}]}),
            ),
            (
                VR::PN,
                dicom_value!(Str, "=Ideo"),
                json!({"vr":"PN","Value":[{"Ideographic":"Ideo"}]}),
            ),
            (
                VR::PN,
                dicom_value!(Strs, ["A^B", ""]),
                json!({"vr":"PN","Value":[{"Alphabetic":"A^B"},null]}),
            ),
            (
                VR::IS,
                dicom_value!(Strs, [" 42 ", "-7", "+3"]),
                json!({"vr":"IS","Value":[42,-7,3]}),
            ),
            (
                VR::IS,
                dicom_value!(Str, "99999999999999999"),
                json!({"vr":"IS","Value":["99999999999999999"]}),
            ),
            (
                VR::DS,
                dicom_value!(Strs, ["1.50", "-0.25", "1e3", "0"]),
                json!({"vr":"DS","Value":[1.5,-0.25,1000,0]}),
            ),
            // More digits than a double keeps: the original string (CP 1861).
            (
                VR::DS,
                dicom_value!(Str, "0.12345678901234567890"),
                json!({"vr":"DS","Value":["0.12345678901234567890"]}),
            ),
            (
                VR::DS,
                dicom_value!(Str, "garbage"),
                json!({"vr":"DS","Value":["garbage"]}),
            ),
            (
                VR::US,
                dicom_value!(U16, [1, 65535]),
                json!({"vr":"US","Value":[1,65535]}),
            ),
            (
                VR::SS,
                dicom_value!(I16, [-32768]),
                json!({"vr":"SS","Value":[-32768]}),
            ),
            (
                VR::UL,
                dicom_value!(U32, [4294967295]),
                json!({"vr":"UL","Value":[4294967295u64]}),
            ),
            (
                VR::FL,
                dicom_value!(F32, [0.1, 2.0]),
                json!({"vr":"FL","Value":[0.1,2]}),
            ),
            (
                VR::FD,
                dicom_value!(F64, [0.1, -3.5e-10]),
                json!({"vr":"FD","Value":[0.1,-3.5e-10]}),
            ),
            (
                VR::AT,
                PrimitiveValue::Tags(vec![Tag(0x0010, 0x0020)].into()),
                json!({"vr":"AT","Value":["00100020"]}),
            ),
            (
                VR::OB,
                dicom_value!(U8, [1, 2, 3, 4]),
                json!({"vr":"OB","InlineBinary":"AQIDBA=="}),
            ),
            (
                VR::OB,
                dicom_value!(U8, [1, 2, 3, 4, 5, 6]),
                json!({"vr":"OB","BulkDataURI":"http://h/dcm4chee-arc/aets/A/rs/studies/1/series/2/instances/3/bulkdata/00111001"}),
            ),
            (
                VR::OW,
                dicom_value!(U16, [0x0102]),
                json!({"vr":"OW","InlineBinary":"AgE="}),
            ),
            (VR::SH, PrimitiveValue::Empty, json!({"vr":"SH"})),
            (VR::SH, dicom_value!(Str, "  "), json!({"vr":"SH"})),
            (
                VR::LO,
                dicom_value!(Str, "quote\" and \u{1}"),
                json!({"vr":"LO","Value":["quote\" and \u{1}"]}),
            ),
        ];
        for (vr, v, want) in cases {
            let desc = format!("{vr:?} {v:?}");
            assert_eq!(one(t, vr, v), want, "{desc}");
        }
    }

    #[test]
    fn strings_style_keeps_is_ds_text() {
        let obj = InMemDicomObject::from_element_iter([DataElement::new(
            tags::SLICE_THICKNESS,
            VR::DS,
            dicom_value!(Str, "1.50"),
        )]);
        let mut o = opts();
        o.numbers = NumberStyle::Strings;
        let v: serde_json::Value =
            serde_json::from_str(&dataset_to_string(&obj, &o)).expect("json");
        assert_eq!(v["00180050"]["Value"][0], "1.50");
    }

    #[test]
    fn sorted_no_meta_no_group_length_pixel_data_is_bulk() {
        let obj = InMemDicomObject::from_element_iter([
            DataElement::new(tags::PIXEL_DATA, VR::OW, dicom_value!(U16, [1])),
            DataElement::new(Tag(0x0010, 0x0000), VR::UL, dicom_value!(U32, [8])),
            DataElement::new(tags::PATIENT_ID, VR::LO, dicom_value!(Str, "X")),
            DataElement::new(tags::TRANSFER_SYNTAX_UID, VR::UI, dicom_value!(Str, "1.2")),
            DataElement::new(tags::MODALITY, VR::CS, dicom_value!(Str, "CT")),
        ]);
        let s = dataset_to_string(&obj, &opts());
        let keys: Vec<String> =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&s)
                .expect("json")
                .keys()
                .cloned()
                .collect();
        assert_eq!(keys, vec!["00080060", "00100020", "7FE00010"]);
        assert!(
            s.find("00080060") < s.find("00100020"),
            "document order is tag order: {s}"
        );
        assert!(
            s.contains("\"7FE00010\":{\"vr\":\"OW\",\"BulkDataURI\":\"http://h/"),
            "{s}"
        );
    }

    #[test]
    fn nested_sequences_and_bulk_paths() {
        use dicom_core::value::DataSetSequence;
        let inner = InMemDicomObject::from_element_iter([
            DataElement::new(
                Tag(0x0029, 0x1010),
                VR::OB,
                PrimitiveValue::U8(vec![0u8; 10].into()),
            ),
            DataElement::new(tags::CODE_VALUE, VR::SH, dicom_value!(Str, "C1")),
        ]);
        let empty = InMemDicomObject::new_empty();
        let seq = DataElement::new(
            tags::REFERENCED_IMAGE_SEQUENCE,
            VR::SQ,
            Value::Sequence(DataSetSequence::from(vec![empty, inner])),
        );
        let empty_seq = DataElement::new(
            tags::OTHER_PATIENT_I_DS_SEQUENCE,
            VR::SQ,
            Value::Sequence(DataSetSequence::from(vec![])),
        );
        let v = json_of(vec![seq, empty_seq]);
        assert_eq!(v["00081140"]["Value"][0], serde_json::json!({}));
        assert_eq!(v["00081140"]["Value"][1]["00080100"]["Value"][0], "C1");
        assert_eq!(
            v["00081140"]["Value"][1]["00291010"]["BulkDataURI"],
            "http://h/dcm4chee-arc/aets/A/rs/studies/1/series/2/instances/3/bulkdata/00081140/2/00291010"
        );
        assert_eq!(v["00101002"], serde_json::json!({"vr":"SQ"}));
    }

    #[test]
    fn iso_2022_jis_is_decoded() {
        let raw = "Yamada^Tarou=\u{1b}$B;3ED\u{1b}(B^\u{1b}$BB@O:\u{1b}(B";
        let cs = Charset::new(&["", "ISO 2022 IR 87"]);
        assert_eq!(
            cs.redecode(raw, true).as_deref(),
            Some("Yamada^Tarou=山田^太郎")
        );
        assert_eq!(Charset::new(&["ISO_IR 192"]).redecode("plain", true), None);
    }

    #[test]
    fn decimal_keys() {
        let k = |s| decimal_key(s).expect(s);
        assert_eq!(k("1.50"), k("+1.5"));
        assert_eq!(k("15e-1"), k("1.5"));
        assert_eq!(k("0.00"), k("0"));
        assert_eq!(k("-0"), k("0"));
        assert_ne!(k("1.5"), k("-1.5"));
        assert_eq!(decimal_key("1.2.3"), None);
        assert_eq!(exact_number("1e400"), None);
        assert_eq!(exact_number("0.1").as_deref(), Some("0.1"));
        assert_eq!(exact_number("100").as_deref(), Some("100"));
        assert_eq!(exact_number("-0.0").as_deref(), Some("0"));
        assert_eq!(exact_number("123456789012345678").as_deref(), None);
        assert_eq!(
            exact_number("1.0000000000000002").as_deref(),
            Some("1.0000000000000002")
        );
    }
}
