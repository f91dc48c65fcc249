//! Correcting a study's patient and study attributes (a misspelled name, a wrong Patient ID
//! or Accession Number): every current instance of the study gets a new version whose header
//! carries the new values ([`crate::dicom::edit`]: the rest of the file, Pixel Data above all,
//! byte for byte as stored), through the same steps as any write (objects under a new
//! generation, then the catalog), and all of them become current in **one** catalog
//! transaction: a reader sees the study before or after, never half of it. The versions they
//! replace are retired as replaced versions are (kept for the grace period, then swept), and
//! the change feed gets a `correct` row per instance.
//!
//! Instances hidden by a rejection note are not corrected (they are not current); an instance
//! stored while a correction runs is either replaced by its corrected version or, stored
//! after the correction's commit, current as it was sent: one of them, whole.

use super::{commit, forget, prepare, Batch, ImportError, Ready, Statements};
use crate::dicom::edit::{self, NewValue};
use crate::dicom::uid::Uid;
use crate::error::Error;
use crate::search::{schema, Value};
use crate::store::Store;
use bytes::Bytes;

/// The attributes a correction may set: (tag, VR, keyword, most characters).
pub const CORRECTABLE: [((u16, u16), &str, &str, usize); 7] = [
    ((0x0008, 0x0050), "SH", "AccessionNumber", 16),
    ((0x0008, 0x0090), "PN", "ReferringPhysicianName", 64),
    ((0x0008, 0x1030), "LO", "StudyDescription", 64),
    ((0x0010, 0x0010), "PN", "PatientName", 64),
    ((0x0010, 0x0020), "LO", "PatientID", 64),
    ((0x0010, 0x0030), "DA", "PatientBirthDate", 8),
    ((0x0010, 0x0040), "CS", "PatientSex", 16),
];

/// Instances read, edited and written at once.
const AT_ONCE: usize = 8;

/// New values of some of the [`CORRECTABLE`] attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    values: Vec<NewValue>,
}

impl Correction {
    /// The new values a DICOM JSON object gives (PS3.18 F.2): each attribute one of
    /// [`CORRECTABLE`], with one value valid for its VR, or none (no `Value`, or `[]`): the
    /// attribute is emptied (zero length; all of them are Type 2 or 3). The reason of a
    /// refusal names the attribute.
    pub fn from_dicom_json(body: &[u8]) -> Result<Correction, String> {
        let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
            .map_err(|e| format!("the body is not a DICOM JSON object: {e}"))?;
        if obj.is_empty() {
            return Err("the body names no attribute to correct".into());
        }
        let mut values = Vec::new();
        for (key, attr) in &obj {
            let tag = u32::from_str_radix(key, 16)
                .ok()
                .filter(|_| key.len() == 8)
                .ok_or_else(|| format!("{key:?} is not a tag (8 hexadecimal digits)"))?;
            let tag = ((tag >> 16) as u16, tag as u16);
            let Some(&(_, vr, keyword, max)) = CORRECTABLE.iter().find(|c| c.0 == tag) else {
                return Err(format!(
                    "({:04X},{:04X}) cannot be corrected; the correctable attributes are {}",
                    tag.0,
                    tag.1,
                    CORRECTABLE
                        .iter()
                        .map(|c| c.2)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            if let Some(given) = attr.get("vr").and_then(|v| v.as_str()) {
                if given != vr {
                    return Err(format!("{keyword} has VR {vr}, not {given}"));
                }
            }
            let mut two = [0u8; 2];
            two.copy_from_slice(vr.as_bytes());
            let value = match attr.get("Value") {
                None => None,
                Some(serde_json::Value::Array(vs)) if vs.is_empty() => None,
                Some(serde_json::Value::Array(vs)) if vs.len() == 1 => Some(&vs[0]),
                Some(serde_json::Value::Array(vs)) => {
                    return Err(format!("{keyword} takes one value, not {}", vs.len()))
                }
                Some(_) => return Err(format!("{keyword}: Value is an array")),
            };
            let Some(value) = value else {
                // Emptied.
                values.push(NewValue {
                    tag,
                    vr: two,
                    text: String::new(),
                });
                continue;
            };
            let text = if vr == "PN" {
                person_name(value).ok_or_else(|| {
                    format!("{keyword}: a person name is an object with Alphabetic, Ideographic or Phonetic text")
                })?
            } else {
                value
                    .as_str()
                    .ok_or_else(|| format!("{keyword}: the value is a string"))?
                    .to_owned()
            };
            check(keyword, vr, max, &text)?;
            values.push(NewValue { tag, vr: two, text });
        }
        Ok(Correction { values })
    }

    /// The new values given as `Keyword=value` or `ggggeeee=value` pairs (a person name's
    /// component groups joined by `=`; `Keyword=` empties the attribute), as `wado correct`
    /// takes them.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Correction, String> {
        let mut obj = serde_json::Map::new();
        for (name, text) in pairs {
            let Some(&(tag, vr, ..)) = CORRECTABLE.iter().find(|c| {
                c.2.eq_ignore_ascii_case(name)
                    || format!("{:04X}{:04X}", c.0 .0, c.0 .1).eq_ignore_ascii_case(name)
            }) else {
                return Err(format!(
                    "{name:?} cannot be corrected; the correctable attributes are {}",
                    CORRECTABLE
                        .iter()
                        .map(|c| c.2)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            let value = if vr == "PN" {
                let mut groups = text.splitn(3, '=');
                let mut pn = serde_json::Map::new();
                for g in ["Alphabetic", "Ideographic", "Phonetic"] {
                    match groups.next() {
                        Some(t) if !t.is_empty() => {
                            pn.insert(g.into(), (*t).into());
                        }
                        _ => {}
                    }
                }
                serde_json::Value::Object(pn)
            } else {
                (*text).into()
            };
            let attr = if text.is_empty() {
                serde_json::json!({ "vr": vr })
            } else {
                serde_json::json!({ "vr": vr, "Value": [value] })
            };
            obj.insert(format!("{:04X}{:04X}", tag.0, tag.1), attr);
        }
        Correction::from_dicom_json(&serde_json::to_vec(&obj).unwrap_or_default())
    }

    /// The new values.
    pub fn values(&self) -> &[NewValue] {
        &self.values
    }
}

/// A PN value's text: its component groups joined by `=` (trailing empty ones left out).
fn person_name(v: &serde_json::Value) -> Option<String> {
    let groups: Vec<&str> = ["Alphabetic", "Ideographic", "Phonetic"]
        .iter()
        .map(|g| v.get(g).and_then(|s| s.as_str()).unwrap_or(""))
        .collect();
    let last = groups.iter().rposition(|g| !g.is_empty())?;
    Some(groups[..=last].join("="))
}

/// The value is valid for its VR (PS3.5 §6.2): no backslash (one value), no control
/// character, at most `max` characters (per component group for PN); DA a real date; CS
/// upper-case letters, digits, space and underscore.
fn check(keyword: &str, vr: &str, max: usize, text: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{keyword} {text:?}: {why}"));
    if text.trim().is_empty() {
        return bad("empty (to empty an attribute, give it no Value)");
    }
    if text.contains('\\') || text.chars().any(char::is_control) {
        return bad("a backslash or a control character");
    }
    match vr {
        "PN" => {
            let groups: Vec<&str> = text.split('=').collect();
            if groups.len() > 3 || groups.iter().any(|g| g.chars().count() > max) {
                return bad("at most three component groups of 64 characters");
            }
            if groups.iter().any(|g| g.split('^').count() > 5) {
                return bad("at most five components");
            }
        }
        "DA" => {
            let ok = text.len() == 8
                && text.bytes().all(|b| b.is_ascii_digit())
                && matches!(text[4..6].parse::<u32>(), Ok(1..=12))
                && matches!(text[6..8].parse::<u32>(), Ok(1..=31));
            if !ok {
                return bad("a date is YYYYMMDD");
            }
        }
        "CS" => {
            if text.len() > max
                || !text
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ' || b == b'_')
            {
                return bad("a code string is up to 16 upper-case letters, digits, spaces, _");
            }
            if keyword == "PatientSex" && !matches!(text, "M" | "F" | "O") {
                return bad("Patient's Sex is M, F or O");
            }
        }
        _ => {
            if text.chars().count() > max {
                return bad(&format!("at most {max} characters"));
            }
        }
    }
    Ok(())
}

/// What a correction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrected {
    /// Instances given a corrected version (0: the study has none).
    pub instances: u64,
    /// Instances already holding every new value (nothing to change).
    pub unchanged: u64,
}

/// One instance's corrected version, written under a new generation (not yet current);
/// `None` when it already holds the values.
async fn edit_one(
    batch: &Batch,
    store: &dyn Store,
    study: &Uid,
    series: &Uid,
    sop: &Uid,
    gen: &str,
    correction: &Correction,
) -> Result<Option<Ready>, Error> {
    let key = crate::layout::instance_key(study, series, sop, gen);
    let bytes = store
        .get(&key)
        .await?
        .ok_or_else(|| Error::corrupt(&key, "the current version's file is missing"))?;
    let edited = edit::set_attributes(&bytes, correction.values())
        .map_err(|e| Error::BadRequest(format!("instance {sop}: {e}")))?;
    if edited == bytes[..] {
        return Ok(None);
    }
    let edited = Bytes::from(edited);
    let mut ready = prepare(batch, &edited).await.map_err(|e| match e {
        ImportError::Store(e) => Error::Store(e),
        ImportError::Index(e) => e.into(),
        other => Error::corrupt(&key, other),
    })?;
    // It replaces the version it was made from (what orders them in the store alone).
    ready.prepared.index.replaces = Some(gen.to_owned());
    ready.index_json = Bytes::from(ready.prepared.index.to_json());
    let index = &ready.prepared.index;
    let (dcm, idx) = (index.file_key(), index.key());
    if let Err(e) = futures::future::try_join(
        store.put_new(&dcm, edited),
        store.put_new(&idx, ready.index_json.clone()),
    )
    .await
    {
        forget(store, &dcm, &idx).await;
        return Err(e.into());
    }
    Ok(Some(ready))
}

/// Corrects `study` with `correction` through `batch` (which must have a catalog): see the
/// module doc. A file that cannot be edited (a retired syntax, a value its character set
/// cannot hold) fails the whole correction before anything changes.
pub async fn correct(
    batch: &Batch,
    store: &dyn Store,
    study: &Uid,
    correction: &Correction,
) -> Result<Corrected, Error> {
    let Some((catalog, part, _)) = &batch.catalog else {
        return Err(Error::NotWritable(
            "corrections need the catalog (a search index)".into(),
        ));
    };
    let d = catalog.dialect();
    let rows = catalog
        .query(schema::list_instances(d, part, study, None, None))
        .await?;
    let current: Vec<(Uid, Uid, String)> = rows
        .iter()
        .filter_map(|r| {
            let text = |n: usize| r.get(n).and_then(Value::as_str).unwrap_or("").to_owned();
            Some((
                Uid::parse(&text(1)).ok()?,
                Uid::parse(&text(2)).ok()?,
                text(3),
            ))
        })
        .collect();
    if current.is_empty() {
        return Ok(Corrected {
            instances: 0,
            unchanged: 0,
        });
    }
    // 1. Each instance edited and written under a new generation, a few at once.
    let mut written: Vec<Result<Option<Ready>, Error>> = Vec::with_capacity(current.len());
    for chunk in current.chunks(AT_ONCE) {
        let edits = chunk
            .iter()
            .map(|(series, sop, gen)| edit_one(batch, store, study, series, sop, gen, correction));
        written.extend(futures::future::join_all(edits).await);
    }
    let mut ready = Vec::new();
    let mut failed = None;
    for w in written {
        match w {
            Ok(r) => ready.push(r),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    let ready: Vec<Ready> = ready.into_iter().flatten().collect();
    let forget_all = |ready: Vec<Ready>| async move {
        for r in ready {
            let i = &r.prepared.index;
            forget(store, &i.file_key(), &i.key()).await;
        }
    };
    if let Some(e) = failed {
        forget_all(ready).await;
        return Err(e);
    }
    let unchanged = (current.len() - ready.len()) as u64;
    if ready.is_empty() {
        return Ok(Corrected {
            instances: 0,
            unchanged,
        });
    }
    // 2. One transaction makes every corrected version current.
    let writes: Vec<Statements> = ready
        .iter()
        .map(|r| {
            let rows = r
                .rows
                .clone()
                .unwrap_or_else(|| crate::search::rows::instance_rows(part, &r.prepared.index));
            schema::commit_instance_as(d, part, &rows, batch.now, schema::Change::Correct)
        })
        .collect();
    let tags: Vec<u32> = correction
        .values()
        .iter()
        .map(|v| (u32::from(v.tag.0) << 16) | u32::from(v.tag.1))
        .collect();
    let reset = schema::reset_study_attributes(d, part, study.as_str(), &tags);
    let statements = commit::combined(d, std::iter::once(&reset).chain(writes.iter()));
    if let Err(e) = catalog.execute(statements).await {
        forget_all(ready).await;
        return Err(e.into());
    }
    Ok(Corrected {
        instances: ready.len() as u64,
        unchanged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_checked_attribute_by_attribute() {
        let ok = Correction::from_dicom_json(
            br#"{"00100010":{"vr":"PN","Value":[{"Alphabetic":"Doe^Jane"}]},"00100040":{"vr":"CS","Value":["F"]},"00100030":{"Value":["19800229"]}}"#,
        )
        .expect("test");
        let texts: Vec<&str> = ok.values().iter().map(|v| v.text.as_str()).collect();
        assert_eq!(texts, ["Doe^Jane", "19800229", "F"]);
        // No Value, or an empty one: the attribute is emptied.
        let cleared = Correction::from_dicom_json(
            br#"{"00080050":{"vr":"SH"},"00100030":{"vr":"DA","Value":[]}}"#,
        )
        .expect("test");
        let texts: Vec<(u16, &str)> = cleared
            .values()
            .iter()
            .map(|v| (v.tag.1, v.text.as_str()))
            .collect();
        assert_eq!(texts, [(0x0050, ""), (0x0030, "")]);
        let pairs = Correction::from_pairs(&[("AccessionNumber", "")]).expect("test");
        assert_eq!(pairs.values()[0].text, "");
        for (body, why) in [
            (
                &br#"{"00100010":{"vr":"PN","Value":["Doe"]}}"#[..],
                "person name",
            ),
            (
                br#"{"0020000D":{"vr":"UI","Value":["1.2"]}}"#,
                "cannot be corrected",
            ),
            (br#"{"00100040":{"vr":"CS","Value":["X"]}}"#, "M, F or O"),
            (
                br#"{"00100030":{"vr":"DA","Value":["1980-02-29"]}}"#,
                "YYYYMMDD",
            ),
            (
                br#"{"00080050":{"vr":"SH","Value":["12345678901234567"]}}"#,
                "16",
            ),
            (br#"{"00100020":{"vr":"LO","Value":[""]}}"#, "no Value"),
            (br#"{"00100020":{"vr":"LO","Value":"x"}}"#, "an array"),
            (br#"{"00100020":{"vr":"SH","Value":["x"]}}"#, "VR LO"),
            (br#"{"00100020":{"vr":"LO","Value":["a\\b"]}}"#, "backslash"),
            (br#"{}"#, "no attribute"),
            (br#"[1]"#, "not a DICOM JSON object"),
        ] {
            let e = Correction::from_dicom_json(body).expect_err("refused");
            assert!(e.contains(why), "{}: {e}", String::from_utf8_lossy(body));
        }
    }
}
