//! Rejection notes (IOCM, PS3.3 A.35.4 and PS3.16 CID 7011): a Key Object Selection Document
//! whose title (Concept Name Code Sequence) is one of the rejection codes takes the instances
//! it references (Current Requested Procedure Evidence Sequence) out of search, metadata and
//! retrieval, in the same transaction that stores it, as dcm4chee does. The note itself stays
//! an ordinary, retrievable instance. The rejected versions are kept aside (their objects stay):
//! deleting the note brings them back ([`super::delete`]); `wado purge --rejected` deletes them.
//! Storing a rejected instance again makes it current again.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::dicom::uid::Uid;
use crate::layout::InstanceIndex;
use crate::search::{schema, Dialect, Statement};

/// Key Object Selection Document Storage.
pub const KOS_SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.88.59";

/// The document titles of CID 7011 (DCM coding scheme) that reject what a note references.
pub const REJECTION_CODES: [(&str, &str); 4] = [
    ("113001", "Rejected for Quality Reasons"),
    ("113037", "Rejected for Patient Safety Reasons"),
    ("113038", "Incorrect Modality Worklist Entry"),
    ("113039", "Data Retention Policy Expired"),
];

/// UIDs in one SQL statement at most: D1 binds 100 parameters.
const PER_STATEMENT: usize = 80;

/// What a rejection note rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Its code (CID 7011), e.g. `113001`.
    pub code: String,
    /// The referenced instances by study: their SOP Instance UIDs.
    pub instances: BTreeMap<Uid, Vec<Uid>>,
}

fn first<'a>(v: &'a Json, tag: &str) -> Option<&'a Json> {
    v.get(tag)?.get("Value")?.get(0)
}

fn text<'a>(v: &'a Json, tag: &str) -> Option<&'a str> {
    first(v, tag)?.as_str()
}

fn items<'a>(v: &'a Json, tag: &str) -> impl Iterator<Item = &'a Json> {
    v.get(tag)
        .and_then(|e| e.get("Value"))
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
}

/// The rejection an instance's metadata (DICOM JSON) makes, if it is a rejection note.
pub fn rejection(meta: &Json) -> Option<Rejection> {
    if text(meta, "00080016")? != KOS_SOP_CLASS {
        return None;
    }
    let title = first(meta, "0040A043")?;
    let code = text(title, "00080100")?.trim();
    let scheme = text(title, "00080102")?.trim();
    if scheme != "DCM" || !REJECTION_CODES.iter().any(|(c, _)| *c == code) {
        return None;
    }
    let own = text(meta, "00080018");
    let mut instances: BTreeMap<Uid, Vec<Uid>> = BTreeMap::new();
    for study in items(meta, "0040A375") {
        let Some(st) = text(study, "0020000D").and_then(|s| Uid::parse(s).ok()) else {
            continue;
        };
        for series in items(study, "00081115") {
            for sop in items(series, "00081199") {
                let Some(uid) = text(sop, "00081155") else {
                    continue;
                };
                if Some(uid) == own {
                    continue;
                }
                if let Ok(u) = Uid::parse(uid) {
                    instances.entry(st.clone()).or_default().push(u);
                }
            }
        }
    }
    Some(Rejection {
        code: code.to_owned(),
        instances,
    })
}

/// The rejection a stored instance makes, read from its index.
pub fn of_instance(index: &InstanceIndex) -> Option<Rejection> {
    if index.sop_class != KOS_SOP_CLASS {
        return None;
    }
    rejection(&serde_json::from_str(index.metadata.get()).ok()?)
}

/// The statements that apply `r`, made by the note `note` (its SOP Instance UID) at `now`,
/// `version` naming the change of each study touched: to run in the note's own transaction.
pub fn statements(
    d: Dialect,
    partition: &str,
    r: &Rejection,
    note: &Uid,
    now: u64,
    version: &str,
) -> Vec<Statement> {
    let mut out = Vec::new();
    for (study, sops) in &r.instances {
        for chunk in sops.chunks(PER_STATEMENT) {
            out.extend(schema::reject_instances(
                d,
                partition,
                study,
                chunk,
                &r.code,
                note.as_str(),
                now,
                version,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(code: &str, scheme: &str) -> Json {
        serde_json::json!({
            "00080016": {"vr": "UI", "Value": [KOS_SOP_CLASS]},
            "00080018": {"vr": "UI", "Value": ["1.2.3.9"]},
            "0040A043": {"vr": "SQ", "Value": [{
                "00080100": {"vr": "SH", "Value": [code]},
                "00080102": {"vr": "SH", "Value": [scheme]},
                "00080104": {"vr": "LO", "Value": ["Rejected for Quality Reasons"]}
            }]},
            "0040A375": {"vr": "SQ", "Value": [{
                "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
                "00081115": {"vr": "SQ", "Value": [{
                    "0020000E": {"vr": "UI", "Value": ["1.2.3.1"]},
                    "00081199": {"vr": "SQ", "Value": [
                        {"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
                         "00081155": {"vr": "UI", "Value": ["1.2.3.1.1"]}},
                        {"00081155": {"vr": "UI", "Value": ["1.2.3.1.2"]}}
                    ]}
                }]}
            }]}
        })
    }

    #[test]
    fn a_note_titled_with_a_rejection_code_rejects_what_it_references() {
        let r = rejection(&note("113001", "DCM")).expect("a rejection");
        assert_eq!(r.code, "113001");
        let st = Uid::parse("1.2.3").expect("uid");
        let sops: Vec<&str> = r.instances[&st].iter().map(Uid::as_str).collect();
        assert_eq!(sops, ["1.2.3.1.1", "1.2.3.1.2"]);
        for code in ["113037", "113038", "113039"] {
            assert!(rejection(&note(code, "DCM")).is_some(), "{code}");
        }
    }

    #[test]
    fn other_key_object_selections_reject_nothing() {
        // "Of Interest" (DCM 113000), another scheme, another SOP class.
        assert_eq!(rejection(&note("113000", "DCM")), None);
        assert_eq!(rejection(&note("113001", "99LOCAL")), None);
        let mut sr = note("113001", "DCM");
        sr["00080016"]["Value"][0] = "1.2.840.10008.5.1.4.1.1.88.22".into();
        assert_eq!(rejection(&sr), None);
    }
}
