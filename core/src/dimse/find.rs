//! C-FIND identifiers (PS3.4 Annex C) as QIDO-RS queries, and QIDO-RS results as C-FIND
//! identifiers: the two protocols share one query model ([`crate::search::Query`]) and one
//! set of matching rules, so the same question gets the same answer over either.
//!
//! A request's identifier holds the Query/Retrieve Level (0008,0052) and its keys: a key with
//! a value matches (single value, `\` list, wildcards, ranges, as QIDO-RS takes them), an
//! empty one asks for the attribute back. Each response identifier holds every key the request
//! named (empty when the archive has no value), the level, and the Retrieve AE Title; it is
//! written in the presentation context's transfer syntax, in UTF-8 (ISO_IR 192) when a value
//! needs it.
//!
//! Levels: STUDY, SERIES and IMAGE in both information models; PATIENT (Patient Root) answers
//! from the studies, one identifier per patient (Patient ID and issuer), with Number of
//! Patient Related Studies counted. Searches are relational: keys of any level above the one
//! asked may be given, unique keys or not (a superset of what the hierarchical model asks).

use crate::search::{Level, Query, Scope};
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_encoding::text::SpecificCharacterSet;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde_json::Value as Json;

/// The most matches one C-FIND returns (DIMSE has no paging): a narrower query sees the rest.
pub const MAX_MATCHES: usize = 10_000;

/// Patient Root Query/Retrieve Information Model - FIND.
pub const PATIENT_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.1.1";
/// Study Root Query/Retrieve Information Model - FIND.
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";

const QUERY_RETRIEVE_LEVEL: Tag = Tag(0x0008, 0x0052);
const SPECIFIC_CHARACTER_SET: Tag = Tag(0x0008, 0x0005);
const RETRIEVE_AE_TITLE: Tag = Tag(0x0008, 0x0054);
const PATIENT_ID: u32 = 0x0010_0020;
const ISSUER_OF_PATIENT_ID: u32 = 0x0010_0021;
const NUMBER_OF_PATIENT_RELATED_STUDIES: u32 = 0x0020_1200;

/// The level a C-FIND asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindLevel {
    /// PATIENT (Patient Root only).
    Patient,
    /// STUDY, SERIES or IMAGE: a QIDO-RS level.
    Search(Level),
}

impl FindLevel {
    fn word(self) -> &'static str {
        match self {
            FindLevel::Patient => "PATIENT",
            FindLevel::Search(Level::Study) => "STUDY",
            FindLevel::Search(Level::Series) => "SERIES",
            FindLevel::Search(Level::Instance) => "IMAGE",
        }
    }
}

/// A C-FIND request read: the query, the level, and the keys each response returns.
#[derive(Debug)]
pub struct FindRequest {
    /// What the index is asked (at STUDY level for a PATIENT query).
    pub query: Query,
    /// The level asked.
    pub level: FindLevel,
    /// The keys the request named, in its order, with their VRs.
    pub keys: Vec<(Tag, VR)>,
}

/// Why a request cannot be answered: the C-FIND status and the reason.
pub type Refusal = (u16, String);

/// Patient Root Query/Retrieve Information Model - MOVE.
pub const PATIENT_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.1.2";
/// Study Root Query/Retrieve Information Model - MOVE.
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
/// Patient Root Query/Retrieve Information Model - GET.
pub const PATIENT_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.1.3";
/// Study Root Query/Retrieve Information Model - GET.
pub const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";

/// The most instances one C-GET or C-MOVE sends.
pub const MAX_RETRIEVED: usize = 100_000;

/// Whether `model` is a Patient Root model (PATIENT level allowed); `None` when it is not a
/// Query/Retrieve model of FIND, MOVE or GET.
pub fn patient_root(model: &str) -> Option<bool> {
    match model {
        PATIENT_ROOT_FIND | PATIENT_ROOT_MOVE | PATIENT_ROOT_GET => Some(true),
        STUDY_ROOT_FIND | STUDY_ROOT_MOVE | STUDY_ROOT_GET => Some(false),
        _ => None,
    }
}

/// Reads a C-GET or C-MOVE identifier: a query at IMAGE level with its keys (the UIDs of the
/// level asked and above, or a Patient ID), whose matches are the instances to send.
pub fn read_retrieve(model: &str, transfer_syntax: &str, bytes: &[u8]) -> Result<Query, Refusal> {
    let req = read_request(model, transfer_syntax, bytes)?;
    if req.query.conditions.is_empty() {
        return Err((
            super::status::DOES_NOT_MATCH,
            "the identifier names nothing to retrieve (no UID, no Patient ID)".into(),
        ));
    }
    let mut q = req.query;
    q.level = Level::Instance;
    Ok(q)
}

/// Reads a C-FIND identifier (`bytes`, in `transfer_syntax`) of information model `model`.
pub fn read_request(
    model: &str,
    transfer_syntax: &str,
    bytes: &[u8],
) -> Result<FindRequest, Refusal> {
    use super::status::{CANNOT_UNDERSTAND, DOES_NOT_MATCH};
    let ts = TransferSyntaxRegistry.get(transfer_syntax).ok_or_else(|| {
        (
            CANNOT_UNDERSTAND,
            format!("unknown transfer syntax {transfer_syntax}"),
        )
    })?;
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(|e| {
        (
            CANNOT_UNDERSTAND,
            format!("the identifier does not parse: {e}"),
        )
    })?;
    let level_text = obj
        .get(QUERY_RETRIEVE_LEVEL)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().to_ascii_uppercase())
        .ok_or_else(|| {
            (
                DOES_NOT_MATCH,
                "the identifier has no Query/Retrieve Level (0008,0052)".to_owned(),
            )
        })?;
    let level = match level_text.as_str() {
        "PATIENT" if patient_root(model) == Some(true) => FindLevel::Patient,
        "PATIENT" => {
            return Err((
                DOES_NOT_MATCH,
                "PATIENT level is of the Patient Root model, not the Study Root".into(),
            ))
        }
        "STUDY" => FindLevel::Search(Level::Study),
        "SERIES" => FindLevel::Search(Level::Series),
        "IMAGE" => FindLevel::Search(Level::Instance),
        other => {
            return Err((
                DOES_NOT_MATCH,
                format!("Query/Retrieve Level {other:?} is not PATIENT, STUDY, SERIES or IMAGE"),
            ))
        }
    };
    let mut keys = Vec::new();
    let mut pairs = Vec::new();
    for e in obj.iter() {
        let tag = e.header().tag;
        if tag.element() == 0 || tag == QUERY_RETRIEVE_LEVEL || tag == SPECIFIC_CHARACTER_SET {
            continue;
        }
        keys.push((tag, e.header().vr()));
        if e.header().vr() == VR::SQ {
            // Sequence matching is not supported: returned empty.
            continue;
        }
        let value = match e.value() {
            dicom_core::DicomValue::Primitive(p) => p
                .to_multi_str()
                .iter()
                .map(|s| s.trim())
                .collect::<Vec<_>>()
                .join("\\"),
            _ => String::new(),
        };
        pairs.push((format!("{:04X}{:04X}", tag.group(), tag.element()), value));
    }
    let search_level = match level {
        FindLevel::Patient => Level::Study,
        FindLevel::Search(l) => l,
    };
    let query = Query::from_pairs(search_level, Scope::All, pairs)
        .map_err(|e| (DOES_NOT_MATCH, e.to_string()))?;
    Ok(FindRequest { query, level, keys })
}

/// The response identifiers of `results` (QIDO-RS DICOM JSON objects, at the request's
/// search level), each in `transfer_syntax`.
pub fn responses(
    req: &FindRequest,
    results: &[Json],
    retrieve_ae: &str,
    transfer_syntax: &str,
) -> Result<Vec<Vec<u8>>, Refusal> {
    let rows: Vec<Json> = match req.level {
        FindLevel::Patient => patients(results),
        FindLevel::Search(_) => results.to_vec(),
    };
    let ts = TransferSyntaxRegistry.get(transfer_syntax).ok_or_else(|| {
        (
            super::status::CANNOT_UNDERSTAND,
            format!("unknown transfer syntax {transfer_syntax}"),
        )
    })?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let obj = identifier(req, row, retrieve_ae);
        let utf8 = obj
            .iter()
            .any(|e| e.to_str().map(|s| !s.is_ascii()).unwrap_or(false));
        let mut obj = obj;
        let cs = if utf8 {
            obj.put(DataElement::new(
                SPECIFIC_CHARACTER_SET,
                VR::CS,
                PrimitiveValue::from("ISO_IR 192"),
            ));
            SpecificCharacterSet::ISO_IR_192
        } else {
            SpecificCharacterSet::default()
        };
        let mut bytes = Vec::with_capacity(512);
        obj.write_dataset_with_ts_cs(&mut bytes, ts, cs)
            .map_err(|e| {
                (
                    super::status::PROCESSING_FAILURE,
                    format!("a response identifier: {e}"),
                )
            })?;
        out.push(bytes);
    }
    Ok(out)
}

/// One identifier per patient of study `results` (their first study's patient attributes).
fn patients(results: &[Json]) -> Vec<Json> {
    let key = |r: &Json| {
        let v = |t: u32| text_of(r.get(format!("{t:08X}")));
        (v(PATIENT_ID), v(ISSUER_OF_PATIENT_ID))
    };
    let mut order: Vec<(String, String)> = Vec::new();
    let mut by: std::collections::HashMap<(String, String), (Json, usize)> = Default::default();
    for r in results {
        let k = key(r);
        match by.get_mut(&k) {
            Some((_, n)) => *n += 1,
            None => {
                order.push(k.clone());
                by.insert(k, (r.clone(), 1));
            }
        }
    }
    order
        .into_iter()
        .filter_map(|k| by.remove(&k))
        .map(|(mut r, n)| {
            if let Some(o) = r.as_object_mut() {
                o.insert(
                    format!("{NUMBER_OF_PATIENT_RELATED_STUDIES:08X}"),
                    serde_json::json!({"vr": "IS", "Value": [n]}),
                );
            }
            r
        })
        .collect()
}

/// The text of a DICOM JSON attribute's values, `\`-joined (person names as PS3.5 writes
/// them: component groups joined by `=`).
fn text_of(attr: Option<&Json>) -> String {
    let Some(values) = attr.and_then(|a| a.get("Value")).and_then(|v| v.as_array()) else {
        return String::new();
    };
    values
        .iter()
        .map(|v| match v {
            Json::String(s) => s.clone(),
            Json::Number(n) => n.to_string(),
            Json::Object(pn) => {
                let g = |k: &str| pn.get(k).and_then(|s| s.as_str()).unwrap_or("").to_owned();
                let mut s = [g("Alphabetic"), g("Ideographic"), g("Phonetic")].join("=");
                while s.ends_with('=') {
                    s.pop();
                }
                s
            }
            _ => String::new(),
        })
        .collect::<Vec<_>>()
        .join("\\")
}

fn identifier(req: &FindRequest, row: &Json, retrieve_ae: &str) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(req.level.word()),
    ));
    obj.put(DataElement::new(
        RETRIEVE_AE_TITLE,
        VR::AE,
        PrimitiveValue::from(retrieve_ae),
    ));
    for &(tag, asked_vr) in &req.keys {
        if tag == RETRIEVE_AE_TITLE {
            continue;
        }
        let attr = row.get(format!("{:04X}{:04X}", tag.group(), tag.element()));
        let vr = attr
            .and_then(|a| a.get("vr"))
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse::<VR>().ok())
            .or_else(|| StandardDataDictionary.by_tag(tag).map(|e| e.vr().relaxed()))
            .filter(|v| *v != VR::UN)
            .unwrap_or(asked_vr);
        if vr == VR::SQ {
            obj.put(DataElement::new(
                tag,
                VR::SQ,
                DataSetSequence::<InMemDicomObject>::empty(),
            ));
            continue;
        }
        let text = text_of(attr);
        let value = match vr {
            VR::US | VR::UL | VR::SS | VR::SL | VR::FL | VR::FD | VR::UV | VR::SV => {
                numeric(vr, &text)
            }
            _ if text.is_empty() => PrimitiveValue::Empty,
            _ if text.contains('\\') => {
                PrimitiveValue::Strs(text.split('\\').map(str::to_owned).collect())
            }
            _ => PrimitiveValue::from(text),
        };
        obj.put(DataElement::new(tag, vr, value));
    }
    obj
}

fn numeric(vr: VR, text: &str) -> PrimitiveValue {
    let parts: Vec<&str> = text.split('\\').filter(|s| !s.is_empty()).collect();
    if parts.is_empty() {
        return PrimitiveValue::Empty;
    }
    macro_rules! of {
        ($t:ty, $v:ident) => {
            PrimitiveValue::$v(parts.iter().filter_map(|s| s.parse::<$t>().ok()).collect())
        };
    }
    match vr {
        VR::US => of!(u16, U16),
        VR::UL => of!(u32, U32),
        VR::SS => of!(i16, I16),
        VR::SL => of!(i32, I32),
        VR::FL => of!(f32, F32),
        VR::FD => of!(f64, F64),
        VR::UV => of!(u64, U64),
        _ => of!(i64, I64),
    }
}

/// The identifier of a final C-GET or C-MOVE response that lists the failed instances
/// (Failed SOP Instance UID List, (0008,0058)), in `transfer_syntax`.
pub fn failed_identifier(sops: &[String], transfer_syntax: &str) -> Option<Vec<u8>> {
    let ts = TransferSyntaxRegistry.get(transfer_syntax)?;
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        Tag(0x0008, 0x0058),
        VR::UI,
        PrimitiveValue::Strs(sops.iter().cloned().collect()),
    ));
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts).ok()?;
    Some(out)
}
