//! The rows one stored instance contributes to the index: its own, and what it says of its
//! series and study, each with its matching-key columns and the attributes of its level as
//! DICOM JSON (what a search returns).

use super::attrs::{self, Kind, Level, KEYS};
use super::Value;
use crate::dicom::uid::Uid;
use crate::layout::InstanceIndex;
use serde_json::{Map, Value as Json};

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

/// The rows of one stored instance in `partition`.
pub fn instance_rows(partition: &str, i: &InstanceIndex) -> InstanceRows {
    let m: Map<String, Json> = serde_json::from_str(i.metadata.get()).unwrap_or_default();
    let mut study: Columns = vec![
        ("part", partition.into()),
        ("study_uid", i.study.as_str().into()),
    ];
    key_columns(&mut study, &own(&m, Level::Study), Level::Study);
    study.push((
        "attrs",
        Json::Object(own(&m, Level::Study)).to_string().into(),
    ));
    let series_attrs = own(&m, Level::Series);
    let mut series: Columns = vec![
        ("part", partition.into()),
        ("study_uid", i.study.as_str().into()),
        ("series_uid", i.series.as_str().into()),
    ];
    key_columns(&mut series, &series_attrs, Level::Series);
    series.push(("attrs", Json::Object(series_attrs).to_string().into()));
    let attrs = own(&m, Level::Instance);
    let mut instance: Columns = vec![
        ("part", partition.into()),
        ("study_uid", i.study.as_str().into()),
        ("series_uid", i.series.as_str().into()),
        ("sop_uid", i.sop_instance.as_str().into()),
    ];
    key_columns(&mut instance, &attrs, Level::Instance);
    // The index knows these even when the data set does not say them.
    set(&mut instance, "sop_class", i.sop_class.as_str().into());
    instance.push(("attrs", Json::Object(attrs).to_string().into()));
    let meta = i.metadata.get();
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

fn set(row: &mut Columns, column: &str, value: Value) {
    if let Some(c) = row.iter_mut().find(|(c, _)| *c == column) {
        if c.1 == Value::Null || c.1 == Value::Text(String::new()) {
            c.1 = value;
        }
    }
}

/// The attributes of one data set that belong to `level` and are kept in the index.
fn own(set: &Map<String, Json>, level: Level) -> Map<String, Json> {
    set.iter()
        .filter(|(k, v)| kept(k, v, level))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Whether an attribute belongs to `level` and is kept in the index: not bulk data, not
/// larger than [`attrs::MAX_STORED_ATTRIBUTE`] as JSON.
fn kept(k: &str, v: &Json, level: Level) -> bool {
    u32::from_str_radix(k, 16)
        .is_ok_and(|t| attrs::level_of(t) == level || attrs::at_every_level(t))
        && k != "00080061"
        && v.get("BulkDataURI").is_none()
        && v.get("InlineBinary").is_none()
        && json_fits(v, attrs::MAX_STORED_ATTRIBUTE)
}

/// Whether `v` written as JSON (compact, as `to_string` writes it) takes at most `max` bytes,
/// counted by walking the value without writing it, stopping once past it.
fn json_fits(v: &Json, max: usize) -> bool {
    fn size(v: &Json, budget: &mut isize) {
        if *budget < 0 {
            return;
        }
        *budget -= match v {
            Json::Null | Json::Bool(true) => 4,
            Json::Bool(false) => 5,
            Json::Number(n) => {
                use std::io::Write as _;
                let mut buf = [0u8; 40];
                let mut cursor = std::io::Cursor::new(&mut buf[..]);
                match write!(cursor, "{n}") {
                    Ok(()) => cursor.position() as isize,
                    Err(_) => 40,
                }
            }
            Json::String(s) => {
                2 + s
                    .bytes()
                    .map(|b| match b {
                        b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0C => 2,
                        0..=0x1F => 6,
                        _ => 1,
                    })
                    .sum::<isize>()
            }
            Json::Array(a) => {
                for x in a {
                    size(x, budget);
                }
                // Brackets and commas.
                2 + (a.len() as isize - 1).max(0)
            }
            Json::Object(o) => {
                for (k, x) in o {
                    // The key quoted, and its colon.
                    *budget -= 3 + k.len() as isize;
                    size(x, budget);
                }
                2 + (o.len() as isize - 1).max(0)
            }
        };
    }
    let mut budget = max as isize;
    size(v, &mut budget);
    budget >= 0
}

/// The matching-key columns of `level` from its attributes.
fn key_columns(row: &mut Columns, attrs: &Map<String, Json>, level: Level) {
    for k in KEYS.iter().filter(|k| k.level == level) {
        if matches!(k.kind, Kind::Modalities) || row.iter().any(|(c, _)| *c == k.column) {
            continue;
        }
        let attr = attrs.get(&format!("{:08X}", k.tag));
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
                let fold_col = match k.column {
                    "patient_name" => ("patient_name_fold", "patient_name_words"),
                    _ => ("referring_fold", "referring_words"),
                };
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

    /// The count is the length `to_string` writes (the oracle), for values of every shape.
    #[test]
    fn json_fits_counts_what_to_string_writes() {
        let values = [
            r#"{"vr":"PN","Value":[{"Alphabetic":"Doe^J\"o\\hn\n\u0001"}]}"#,
            r#"{"vr":"DS","Value":[1.5,-2,3e-7,12345678901234567890,0.1]}"#,
            r#"{"vr":"SQ","Value":[{"00080100":{"vr":"SH","Value":["X"]}},{}]}"#,
            r#"{"vr":"US","Value":[]}"#,
            r#"{"vr":"LT","Value":[null,true,"é ü"]}"#,
        ];
        for text in values {
            let v: Json = serde_json::from_str(text).expect("json");
            let n = v.to_string().len();
            assert!(json_fits(&v, n), "{text}: fits in {n}");
            assert!(!json_fits(&v, n - 1), "{text}: not in {}", n - 1);
        }
    }
}
