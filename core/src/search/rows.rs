//! The rows one stored instance contributes to the index: its own, and what it says of its
//! series and study, each with its matching-key columns and the attributes of its level as
//! DICOM JSON (what a search returns).

use super::attrs::{self, Kind, Level, KEYS};
use super::Value;
use crate::dicom::uid::Uid;
use crate::layout::InstanceIndex;
use serde_json::value::RawValue;
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// Column names and values of one row, in table order.
pub type Columns = Vec<(&'static str, Value)>;

/// The most bytes of an instance's metadata the index keeps in its row (`meta`), so that a
/// series' or study's metadata is one query; larger ones (enhanced multi-frame functional
/// groups) are read from the instance's index object. D1 takes values of up to 2 MB and
/// statements of up to 100 KB (a `wado reindex --sql-out` line holds the value).
pub const MAX_META_IN_ROW: usize = 64 * 1024;

/// The rows one stored instance contributes: its own, and what it says of its series and
/// study (merged with what is stored by [`super::schema::commit_instance`]).
#[derive(Debug, Clone)]
pub struct InstanceRows {
    /// Study Instance UID.
    pub study_uid: Uid,
    /// Series Instance UID.
    pub series_uid: Uid,
    /// SOP Instance UID.
    pub sop_uid: Uid,
    /// The stored version (generation) the row names.
    pub gen: String,
    /// The study row's key columns and attributes.
    pub study: Columns,
    /// The series row's key columns and attributes.
    pub series: Columns,
    /// The instance row.
    pub instance: Columns,
}

/// The rows of one stored instance in `partition`. The instance's metadata is read in place
/// (each attribute's JSON text borrowed, not parsed into values): only the matching keys are
/// parsed, and each level's attributes are written back as the text they were.
pub fn instance_rows(partition: &str, i: &InstanceIndex) -> InstanceRows {
    let meta = i.metadata.get();
    let m: BTreeMap<&str, &RawValue> = serde_json::from_str(meta).unwrap_or_default();
    // Each level's own attributes, in tag order.
    let mut levels: [Vec<(&str, &RawValue)>; 3] = Default::default();
    for (k, v) in &m {
        let Some(tag) = tag_of(k) else { continue };
        if *k == "00080061" || !kept(v) {
            continue;
        }
        if attrs::at_every_level(tag) {
            for l in &mut levels {
                l.push((k, v));
            }
        } else {
            levels[slot(attrs::level_of(tag))].push((k, v));
        }
    }
    let [study_attrs, series_attrs, instance_attrs] = &levels;
    let mut study: Columns = vec![
        ("part", partition.into()),
        ("study_uid", i.study.as_str().into()),
    ];
    key_columns(&mut study, study_attrs, Level::Study);
    study.push(("attrs", object(study_attrs).into()));
    let mut series: Columns = vec![
        ("part", partition.into()),
        ("study_uid", i.study.as_str().into()),
        ("series_uid", i.series.as_str().into()),
    ];
    key_columns(&mut series, series_attrs, Level::Series);
    series.push(("attrs", object(series_attrs).into()));
    let mut instance: Columns = vec![
        ("part", partition.into()),
        ("study_uid", i.study.as_str().into()),
        ("series_uid", i.series.as_str().into()),
        ("sop_uid", i.sop_instance.as_str().into()),
    ];
    key_columns(&mut instance, instance_attrs, Level::Instance);
    // The index knows these even when the data set does not say them.
    set(&mut instance, "sop_class", i.sop_class.as_str().into());
    instance.push(("attrs", object(instance_attrs).into()));
    instance.extend([
        ("gen", Value::from(i.gen.as_str())),
        (
            "size",
            Value::Int(i64::try_from(i.source.size).unwrap_or(i64::MAX)),
        ),
        ("sha256", Value::from(i.source.sha256.as_str())),
        ("ts", Value::from(i.transfer_syntax.as_str())),
        (
            "stored_at",
            Value::Int(i64::try_from(i.stored_at).unwrap_or(i64::MAX)),
        ),
        (
            "meta",
            if meta.len() <= MAX_META_IN_ROW {
                Value::from(meta)
            } else {
                Value::Null
            },
        ),
    ]);
    InstanceRows {
        study_uid: i.study.clone(),
        series_uid: i.series.clone(),
        sop_uid: i.sop_instance.clone(),
        gen: i.gen.clone(),
        study,
        series,
        instance,
    }
}

/// The tag a DICOM JSON key names (8 hexadecimal digits).
fn tag_of(k: &str) -> Option<u32> {
    (k.len() == 8)
        .then(|| u32::from_str_radix(k, 16).ok())
        .flatten()
}

fn slot(level: Level) -> usize {
    match level {
        Level::Study => 0,
        Level::Series => 1,
        Level::Instance => 2,
    }
}

fn set(row: &mut Columns, column: &str, value: Value) {
    if let Some(c) = row.iter_mut().find(|(c, _)| *c == column) {
        if c.1 == Value::Null || c.1 == Value::Text(String::new()) {
            c.1 = value;
        }
    }
}

/// Whether an attribute is kept in the index: not bulk data (a BulkDataURI or InlineBinary
/// of its own), not larger than [`attrs::MAX_STORED_ATTRIBUTE`] as JSON.
fn kept(v: &RawValue) -> bool {
    let text = v.get();
    if text.len() > attrs::MAX_STORED_ATTRIBUTE {
        return false;
    }
    // Most attributes name neither: only those that might are read.
    if !text.contains("\"BulkDataURI\"") && !text.contains("\"InlineBinary\"") {
        return true;
    }
    #[derive(serde::Deserialize)]
    struct Bulk {
        #[serde(rename = "BulkDataURI")]
        uri: Option<serde::de::IgnoredAny>,
        #[serde(rename = "InlineBinary")]
        inline: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Bulk>(text).is_ok_and(|b| b.uri.is_none() && b.inline.is_none())
}

/// A JSON object of attributes, their text as it was.
fn object(attrs: &[(&str, &RawValue)]) -> String {
    let len = attrs
        .iter()
        .map(|(k, v)| k.len() + v.get().len() + 4)
        .sum::<usize>();
    let mut out = String::with_capacity(2 + len);
    out.push('{');
    for (n, (k, v)) in attrs.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(k);
        out.push_str("\":");
        out.push_str(v.get());
    }
    out.push('}');
    out
}

/// The matching-key columns of `level` from its attributes.
/// The folded and the word columns beside a person name's column.
pub fn name_columns(column: &str) -> (&'static str, &'static str) {
    match column {
        "patient_name" => ("patient_name_fold", "patient_name_words"),
        _ => ("referring_fold", "referring_words"),
    }
}

fn key_columns(row: &mut Columns, attrs: &[(&str, &RawValue)], level: Level) {
    for k in KEYS.iter().filter(|k| k.level == level) {
        if matches!(k.kind, Kind::Modalities) || row.iter().any(|(c, _)| *c == k.column) {
            continue;
        }
        let key = format!("{:08X}", k.tag);
        let parsed: Option<Json> = attrs
            .binary_search_by(|(t, _)| (*t).cmp(key.as_str()))
            .ok()
            .and_then(|n| serde_json::from_str(attrs[n].1.get()).ok());
        let attr = parsed.as_ref();
        match k.kind {
            Kind::Int => row.push((k.column, int(attr).into())),
            Kind::Time => row.push((
                k.column,
                text(attr)
                    .and_then(|t| attrs::normalise_time(&t, false))
                    .unwrap_or_default()
                    .into(),
            )),
            Kind::PersonName => {
                let name = person_name(attr);
                row.push((k.column, name.as_str().into()));
                let fold_col = name_columns(k.column);
                row.push((fold_col.0, attrs::fold(&name).into()));
                row.push((fold_col.1, attrs::words(&name).into()));
            }
            Kind::Date => row.push((
                k.column,
                text(attr)
                    .map(|d| attrs::normalise_date(&d).unwrap_or(d))
                    .unwrap_or_default()
                    .into(),
            )),
            Kind::Uid | Kind::Text | Kind::Modalities => {
                row.push((k.column, text(attr).unwrap_or_default().into()))
            }
        }
    }
}

/// The values of a string attribute, `\`-separated (numbers as their text).
pub(crate) fn text(attr: Option<&Json>) -> Option<String> {
    let values = attr?.get("Value")?.as_array()?;
    let parts: Vec<String> = values
        .iter()
        .map(|v| match v {
            Json::String(s) => s.clone(),
            Json::Number(n) => n.to_string(),
            _ => String::new(),
        })
        .collect();
    Some(parts.join("\\"))
}

fn int(attr: Option<&Json>) -> Option<i64> {
    let v = attr?.get("Value")?.get(0)?;
    match v {
        Json::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A PN value as text: each value's groups joined by `=` (trailing empty groups dropped),
/// values by `\`.
fn person_name(attr: Option<&Json>) -> String {
    let Some(values) = attr.and_then(|a| a.get("Value")).and_then(Json::as_array) else {
        return String::new();
    };
    values
        .iter()
        .map(|v| {
            let groups: Vec<&str> = ["Alphabetic", "Ideographic", "Phonetic"]
                .iter()
                .map(|g| v.get(g).and_then(Json::as_str).unwrap_or(""))
                .collect();
            groups.join("=").trim_end_matches('=').to_owned()
        })
        .collect::<Vec<_>>()
        .join("\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column<'a>(row: &'a Columns, name: &str) -> &'a Value {
        &row.iter().find(|(c, _)| *c == name).expect(name).1
    }

    fn attrs_of(row: &Columns) -> serde_json::Map<String, Json> {
        match column(row, "attrs") {
            Value::Text(t) => serde_json::from_str(t).expect("attrs are JSON"),
            other => panic!("attrs {other:?}"),
        }
    }

    /// Each level's attributes are those of the data set that belong to it (PS3.18's levels as
    /// `attrs::level_of` says), every-level ones at each; bulk data of its own and values past
    /// the size cap left out, a sequence holding bulk data inside kept: compared with the same
    /// rule applied to parsed values.
    #[test]
    fn each_level_keeps_its_own_attributes_as_they_were() {
        let mut i = crate::search::conformance::instance("1.2", "1.2.3", "1.2.3.4", "MR", "g1");
        let mut meta: serde_json::Map<String, Json> =
            serde_json::from_str(i.metadata.get()).expect("meta");
        let extra = serde_json::json!({
            "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
            "00081030": {"vr": "LO", "Value": ["Brain \"MRI\" é"]},
            "0008103E": {"vr": "LO", "Value": ["T1"]},
            "00081140": {"vr": "SQ", "Value": [{"00091010": {"vr": "OB", "BulkDataURI": "http://x/b"}}]},
            "00180050": {"vr": "DS", "Value": [1.25]},
            "00204000": {"vr": "LT", "Value": ["x".repeat(attrs::MAX_STORED_ATTRIBUTE)]},
            "00280010": {"vr": "US", "Value": [256]},
            "00091002": {"vr": "OB", "InlineBinary": "AAAA"},
            "7FE00010": {"vr": "OW", "BulkDataURI": "http://x/p"},
            "00080061": {"vr": "CS", "Value": ["MR"]},
        });
        meta.extend(extra.as_object().expect("object").clone());
        i.metadata = RawValue::from_string(Json::Object(meta.clone()).to_string()).expect("raw");
        let rows = instance_rows("P", &i);
        for (row, level) in [
            (&rows.study, Level::Study),
            (&rows.series, Level::Series),
            (&rows.instance, Level::Instance),
        ] {
            let expected: serde_json::Map<String, Json> = meta
                .iter()
                .filter(|(k, v)| {
                    let t = u32::from_str_radix(k, 16).expect("tag");
                    (attrs::level_of(t) == level || attrs::at_every_level(t))
                        && *k != "00080061"
                        && v.get("BulkDataURI").is_none()
                        && v.get("InlineBinary").is_none()
                        && v.to_string().len() <= attrs::MAX_STORED_ATTRIBUTE
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(attrs_of(row), expected, "{level:?}");
        }
        assert!(attrs_of(&rows.instance).contains_key("00081140"));
        assert!(!attrs_of(&rows.instance).contains_key("00204000"));
        assert_eq!(
            column(&rows.study, "patient_name"),
            &Value::from("Doe^Jane")
        );
        assert_eq!(column(&rows.study, "study_date"), &Value::from("20240102"));
        assert_eq!(column(&rows.series, "modality"), &Value::from("MR"));
        assert_eq!(column(&rows.instance, "gen"), &Value::from("g1"));
    }
}
