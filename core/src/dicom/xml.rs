//! The Native DICOM Model (PS3.19 Annex A) from DICOM JSON (PS3.18 Annex F).
//!
//! Metadata is stored as DICOM JSON, which carries everything the XML model needs: the VR,
//! values, person name groups, BulkDataURIs and InlineBinary. So `application/dicom+xml`
//! metadata is a translation of the stored JSON, one `NativeDicomModel` document per instance:
//!
//! ```text
//! <NativeDicomModel xml:space="preserve">
//!   <DicomAttribute tag="00100010" vr="PN" keyword="PatientName">
//!     <PersonName number="1"><Alphabetic><FamilyName>Doe</FamilyName>...</Alphabetic></PersonName>
//!   </DicomAttribute>
//!   <DicomAttribute tag="7FE00010" vr="OW" keyword="PixelData"><BulkData uri="..."/></DicomAttribute>
//! </NativeDicomModel>
//! ```
//!
//! Private attributes carry `privateCreator` from their block's Private Creator element
//! (PS3.19 A.1.1); `keyword` is given for attributes of the standard dictionary.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::Tag;
use dicom_dictionary_std::StandardDataDictionary;
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// Why a JSON document could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a DICOM JSON data set: {0}")]
pub struct XmlError(String);

/// Writes one data set (a DICOM JSON object) as a complete Native DICOM Model document.
pub fn write_document(dataset: &Value, out: &mut String) -> Result<(), XmlError> {
    out.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<NativeDicomModel xml:space=\"preserve\">",
    );
    write_dataset(dataset, out)?;
    out.push_str("</NativeDicomModel>\n");
    Ok(())
}

fn write_dataset(dataset: &Value, out: &mut String) -> Result<(), XmlError> {
    let obj = dataset
        .as_object()
        .ok_or_else(|| XmlError("a data set is not an object".into()))?;
    for (key, attr) in obj {
        let tag = parse_tag(key).ok_or_else(|| XmlError(format!("bad tag {key:?}")))?;
        let vr = attr
            .get("vr")
            .and_then(Value::as_str)
            .ok_or_else(|| XmlError(format!("{key}: no vr")))?;
        // PS3.19 A.1.1: a private data element's tag is written with its block number as 00;
        // privateCreator says which block.
        let shown = if tag.group() % 2 == 1 && tag.element() >= 0x1000 {
            format!("{:04X}00{:02X}", tag.group(), tag.element() & 0xFF)
        } else {
            key.clone()
        };
        let _ = write!(out, "<DicomAttribute tag=\"{shown}\" vr=\"{}\"", escape(vr));
        if tag.group() % 2 == 1 {
            if let Some(creator) = private_creator(obj, tag) {
                let _ = write!(out, " privateCreator=\"{}\"", escape(&creator));
            }
        } else if let Some(entry) = StandardDataDictionary.by_tag(tag) {
            let _ = write!(out, " keyword=\"{}\"", entry.alias());
        }
        out.push('>');
        write_value(vr, attr, out)?;
        out.push_str("</DicomAttribute>");
    }
    Ok(())
}

fn write_value(vr: &str, attr: &Value, out: &mut String) -> Result<(), XmlError> {
    if let Some(uri) = attr.get("BulkDataURI").and_then(Value::as_str) {
        let _ = write!(out, "<BulkData uri=\"{}\"/>", escape(uri));
        return Ok(());
    }
    if let Some(b64) = attr.get("InlineBinary").and_then(Value::as_str) {
        let _ = write!(out, "<InlineBinary>{}</InlineBinary>", escape(b64));
        return Ok(());
    }
    let Some(values) = attr.get("Value").and_then(Value::as_array) else {
        return Ok(());
    };
    for (i, v) in values.iter().enumerate() {
        let n = i + 1;
        match vr {
            "SQ" => {
                let _ = write!(out, "<Item number=\"{n}\">");
                write_dataset(v, out)?;
                out.push_str("</Item>");
            }
            "PN" => write_person_name(n, v, out),
            _ => match v {
                Value::Null => {
                    let _ = write!(out, "<Value number=\"{n}\"/>");
                }
                Value::String(s) => {
                    let _ = write!(out, "<Value number=\"{n}\">{}</Value>", escape(s));
                }
                Value::Number(x) => {
                    let _ = write!(out, "<Value number=\"{n}\">{x}</Value>");
                }
                other => return Err(XmlError(format!("unexpected value {other}"))),
            },
        }
    }
    Ok(())
}

/// `<PersonName>` with its component groups split into the five components (PS3.19 A.1.5).
fn write_person_name(n: usize, v: &Value, out: &mut String) {
    let _ = write!(out, "<PersonName number=\"{n}\">");
    if let Some(groups) = v.as_object() {
        for group in ["Alphabetic", "Ideographic", "Phonetic"] {
            let Some(text) = groups.get(group).and_then(Value::as_str) else {
                continue;
            };
            let _ = write!(out, "<{group}>");
            for (name, part) in [
                "FamilyName",
                "GivenName",
                "MiddleName",
                "NamePrefix",
                "NameSuffix",
            ]
            .iter()
            .zip(text.split('^'))
            {
                if !part.is_empty() {
                    let _ = write!(out, "<{name}>{}</{name}>", escape(part));
                }
            }
            let _ = write!(out, "</{group}>");
        }
    }
    out.push_str("</PersonName>");
}

fn parse_tag(key: &str) -> Option<Tag> {
    if key.len() != 8 {
        return None;
    }
    let v = u32::from_str_radix(key, 16).ok()?;
    Some(Tag((v >> 16) as u16, v as u16))
}

/// The Private Creator of a private attribute: element (gggg,00xx) where xx is the high byte
/// of the attribute's element number (PS3.5 §7.8.1).
fn private_creator(obj: &Map<String, Value>, tag: Tag) -> Option<String> {
    let block = tag.element() >> 8;
    if block < 0x10 {
        return None;
    }
    let key = format!("{:04X}{:04X}", tag.group(), block);
    obj.get(&key)?
        .get("Value")?
        .get(0)?
        .as_str()
        .map(str::to_owned)
}

/// Escapes text for XML character data and attribute values. A carriage return is written as
/// a character reference (a parser would turn a literal one into a line feed, XML 1.0 §2.11),
/// and so are tab and line feed (a parser normalises them to spaces inside attribute values,
/// §3.3.3). Characters XML 1.0 cannot carry (other C0 controls) become U+FFFD.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            '\n' => out.push_str("&#xA;"),
            '\t' => out.push_str("&#x9;"),
            c if (c as u32) < 0x20 => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> String {
        let mut s = String::new();
        write_document(&v, &mut s).expect("xml");
        s
    }

    #[test]
    fn attributes_table() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"00080060": {"vr": "CS", "Value": ["CT"]}}),
                r#"<DicomAttribute tag="00080060" vr="CS" keyword="Modality"><Value number="1">CT</Value></DicomAttribute>"#,
            ),
            (
                json!({"00280010": {"vr": "US", "Value": [512]}}),
                r#"<DicomAttribute tag="00280010" vr="US" keyword="Rows"><Value number="1">512</Value></DicomAttribute>"#,
            ),
            (
                json!({"00100020": {"vr": "LO"}}),
                r#"<DicomAttribute tag="00100020" vr="LO" keyword="PatientID"></DicomAttribute>"#,
            ),
            (
                json!({"00080008": {"vr": "CS", "Value": ["A", null]}}),
                r#"<Value number="1">A</Value><Value number="2"/>"#,
            ),
            (
                json!({"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^John^^Dr", "Ideographic": "山田^太郎"}]}}),
                r#"<PersonName number="1"><Alphabetic><FamilyName>Doe</FamilyName><GivenName>John</GivenName><NamePrefix>Dr</NamePrefix></Alphabetic><Ideographic><FamilyName>山田</FamilyName><GivenName>太郎</GivenName></Ideographic></PersonName>"#,
            ),
            (
                json!({"7FE00010": {"vr": "OW", "BulkDataURI": "http://h/x?a=1&b=2"}}),
                r#"<BulkData uri="http://h/x?a=1&amp;b=2"/>"#,
            ),
            (
                json!({"00291010": {"vr": "OB", "InlineBinary": "AQI="}, "00290010": {"vr": "LO", "Value": ["SIEMENS CSA HEADER"]}}),
                r#"<DicomAttribute tag="00290010" vr="OB" privateCreator="SIEMENS CSA HEADER"><InlineBinary>AQI=</InlineBinary>"#,
            ),
            (
                json!({"00081140": {"vr": "SQ", "Value": [{"00081150": {"vr": "UI", "Value": ["1.2"]}}, {}]}}),
                r#"<Item number="1"><DicomAttribute tag="00081150" vr="UI" keyword="ReferencedSOPClassUID"><Value number="1">1.2</Value></DicomAttribute></Item><Item number="2"></Item>"#,
            ),
            (
                json!({"00081030": {"vr": "LO", "Value": ["a<b & \"c\"\u{1}"]}}),
                "<Value number=\"1\">a&lt;b &amp; &quot;c&quot;\u{FFFD}</Value>",
            ),
        ];
        let mut cases = cases;
        cases.push((
            json!({"0040A160": {"vr": "UT", "Value": ["x\r\ny\tz"]}}),
            "<Value number=\"1\">x&#xD;&#xA;y&#x9;z</Value>",
        ));
        for (input, want) in cases {
            let got = doc(input.clone());
            assert!(got.contains(want), "{input}\nwant {want}\ngot  {got}");
            assert!(got.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<NativeDicomModel xml:space=\"preserve\">"));
            assert!(got.ends_with("</NativeDicomModel>\n"));
        }
    }

    #[test]
    fn malformed_json_is_an_error() {
        let mut s = String::new();
        assert!(write_document(&json!([1]), &mut s).is_err());
        assert!(write_document(&json!({"xyz": {"vr": "CS"}}), &mut s).is_err());
        assert!(write_document(&json!({"00080060": {"Value": ["CT"]}}), &mut s).is_err());
    }
}
