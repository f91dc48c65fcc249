//! The study list: QIDO-RS Search for Studies results (PS3.18 §10.6) without matching.

use super::{Ctx, Plan};
use crate::error::{Error, Result};
use crate::layout::{self};
use crate::media::MediaType;
use crate::negotiate::Negotiation;
use crate::service::message::Outcome;
use crate::service::Service;
use bytes::Bytes;
use std::io::Read;

/// One study's QIDO-RS result from its instances' metadata: the study attributes of the first
/// instance that has each, the modalities and the counts, and the Retrieve URL.
pub(crate) fn study_result(
    instances: &[serde_json::Map<String, serde_json::Value>],
    root: &str,
) -> serde_json::Value {
    use serde_json::{json, Value};
    const STUDY_TAGS: [&str; 9] = [
        "00080005", // Specific Character Set
        "00080020", // Study Date
        "00080030", // Study Time
        "00080050", // Accession Number
        "00080090", // Referring Physician's Name
        "00081030", // Study Description
        "00100010", // Patient's Name
        "00100020", // Patient ID
        "00100030", // Patient's Birth Date
    ];
    let mut study = serde_json::Map::new();
    for tag in STUDY_TAGS
        .iter()
        .chain(["00100040", "0020000D", "00200010"].iter())
    {
        if let Some(v) = instances.iter().find_map(|i| i.get(*tag)) {
            study.insert((*tag).to_owned(), v.clone());
        }
    }
    let first = |i: &serde_json::Map<String, Value>, tag: &str| {
        i.get(tag)
            .and_then(|a| a.get("Value"))
            .and_then(|v| v.get(0))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut modalities = std::collections::BTreeSet::new();
    let mut series = std::collections::BTreeSet::new();
    for i in instances {
        modalities.extend(first(i, "00080060"));
        series.extend(first(i, "0020000E"));
    }
    let uid = instances
        .iter()
        .find_map(|i| first(i, "0020000D"))
        .unwrap_or_default();
    study.insert(
        "00080061".into(),
        json!({"vr": "CS", "Value": modalities.into_iter().collect::<Vec<_>>()}),
    );
    study.insert(
        "00081190".into(),
        json!({"vr": "UR", "Value": [format!("{root}/studies/{uid}")]}),
    );
    study.insert(
        "00201206".into(),
        json!({"vr": "IS", "Value": [series.len()]}),
    );
    study.insert(
        "00201208".into(),
        json!({"vr": "IS", "Value": [instances.len()]}),
    );
    Value::Object(study)
}

impl Service {
    /// The studies the store holds, as QIDO-RS Search for Studies results without matching
    /// (PS3.18 §10.6.3, Table 10.6.3-3's study attributes): one read of the stored study
    /// metadata per study. Matching parameters are refused (400) rather than ignored, so a
    /// client never takes an unfiltered list for a filtered one.
    pub(crate) async fn search_studies(&self, ctx: &Ctx<'_>, neg: &Negotiation) -> Result<Plan> {
        let media = neg
            .media_choices()
            .into_iter()
            .map(|(m, _)| m)
            .find(|m| matches!(m, MediaType::DicomJson | MediaType::Json))
            .ok_or_else(|| {
                Error::NotAcceptable(
                    "the study list is available as application/dicom+json or application/json"
                        .into(),
                )
            })?;
        let mut limit = usize::MAX;
        let mut offset = 0usize;
        for pair in ctx
            .req
            .query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                v.parse::<usize>()
                    .map_err(|_| Error::BadRequest(format!("{k}={v:?} is not a number")))
            };
            match k {
                "limit" => limit = number()?,
                "offset" => offset = number()?,
                "accept" | "includefield" | "fuzzymatching" => {}
                other => {
                    return Err(Error::BadRequest(format!(
                        "query {other:?}: this server lists all studies and does not match attributes; use limit and offset"
                    )))
                }
            }
        }
        let mut keys: Vec<String> = ctx
            .part
            .store
            .list(layout::STUDIES_PREFIX)
            .await?
            .into_iter()
            .filter(|o| layout::study_of_metadata_key(&o.key).is_some())
            .map(|o| {
                ctx.saw(o.modified);
                o.key
            })
            .collect();
        keys.sort();
        let mut out: Vec<serde_json::Value> = Vec::new();
        for key in keys.iter().skip(offset).take(limit) {
            let Some(gz) = ctx.part.store.get(key).await? else {
                continue;
            };
            let mut json = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut json)
                .map_err(|e| Error::corrupt(key, e))?;
            let instances: Vec<serde_json::Map<String, serde_json::Value>> =
                serde_json::from_slice(&json).map_err(|e| Error::corrupt(key, e))?;
            out.push(study_result(&instances, &ctx.root));
        }
        let body = Bytes::from(serde_json::to_vec(&out).map_err(|e| Error::corrupt("studies", e))?);
        let outcome = Outcome {
            media_type: Some(media.as_str().into()),
            ..Outcome::default()
        };
        Ok(Plan::document(
            media.as_str(),
            "identity",
            "",
            body,
            outcome,
        ))
    }
}
