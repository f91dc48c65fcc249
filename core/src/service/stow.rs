//! STOW-RS (PS3.18 §10.5): `POST {root}/studies` and `POST {root}/studies/{study}` with a
//! `multipart/related; type="application/dicom"` body, one Part-10 instance per part.
//!
//! The body is read as it arrives ([`crate::wire::parts`]): each part is kept in memory only
//! until it is whole, then goes through the one ingest door of `wado import`
//! ([`crate::ingest::Batch`]: validation, versioned objects, one catalog transaction per
//! instance, shared with concurrent writers), several at a time while the next ones arrive. A
//! part cut short (the client went away) is never written. An instance the response names as
//! stored was committed before it: retrievable and searchable, from any replica.
//!
//! The response is the Store Instances Response Module (PS3.18 §10.5.3, Table 10.5.3-1): the
//! study's Retrieve URL, a Referenced SOP Sequence item per instance stored (Warning Reason
//! B000 when it replaced a different stored instance of the same SOP Instance UID) and a
//! Failed SOP Sequence item per instance refused, with its Failure Reason:
//! - `A900` the instance is not of the study in the URL (PS3.18 §10.5.3: "identifier does not
//!   match");
//! - `C000` the part cannot be understood (not a Part-10 file, a part of another media type,
//!   a data set the import refuses);
//! - `A700` out of resources (an instance larger than [`crate::Config::max_instance_bytes`],
//!   the store full);
//! - `0111` duplicate SOP instance: an instance of that SOP Instance UID is stored in another
//!   series or study (named in the reason); one UID names one instance;
//! - `0110` processing failure (the store or the index failed).
//!
//! Status (PS3.18 Table 10.5.3-2): 200 every instance stored, 202 some stored and some not,
//! 409 none stored; 400 a malformed body, 415 a body that is not `application/dicom` parts,
//! 413 a body larger than [`crate::Config::max_store_bytes`]. Each failure's reason is also
//! in a `Warning: 299` header, since the data set has no attribute for a text.

use super::http::{self, header_str};
use super::{Request, Response, Service};
use crate::auth::Access;
use crate::error::{Error, Result};
use crate::ingest::{Batch, Expected, ImportError, Imported, Status};
use crate::route::{Route, Uid};
use crate::service::message::{Body, Outcome};
use crate::store::Store;
use crate::wire::parts::{self, Event, PartReader};
use ::http::{header, HeaderMap, HeaderValue, StatusCode};
use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Map, Value};

/// Failure Reasons (PS3.18 §10.5.3, PS3.4 Annex GG).
const OUT_OF_RESOURCES: u16 = 0xA700;
const DOES_NOT_MATCH: u16 = 0xA900;
/// Refused: Not Authorized (PS3.7 C.5): the instance is of a study out of the token's reach.
const NOT_AUTHORIZED: u16 = 0x0124;
const CANNOT_UNDERSTAND: u16 = 0xC000;
const PROCESSING_FAILURE: u16 = 0x0110;
/// Duplicate SOP Instance (PS3.7 C.4): the UID names an instance stored elsewhere.
const DUPLICATE: u16 = 0x0111;
/// Warning Reason: Coercion of Data Elements (the stored instance was replaced).
const REPLACED: u16 = 0xB000;

/// Parts checked and written at once while the next ones arrive.
const IN_FLIGHT: usize = 64;
/// The most bytes of whole parts waiting to be written; past it, reading waits.
const IN_FLIGHT_BYTES: usize = 16 << 20;

/// `Warning` headers of one response, at most.
const MAX_NOTES: usize = 50;

/// An instance stored, as the response names it.
struct Stored {
    status: Status,
    study: Uid,
    series: Uid,
    sop: Uid,
    sop_class: String,
    warnings: Vec<String>,
}

impl From<Imported> for Stored {
    fn from(i: Imported) -> Stored {
        Stored {
            status: i.status,
            study: i.study,
            series: i.series,
            sop: i.sop,
            sop_class: i.sop_class,
            warnings: i.warnings,
        }
    }
}

/// What became of one part.
enum Outcome1 {
    Stored(Stored),
    Failed {
        class: Option<String>,
        sop: Option<String>,
        reason: u16,
        text: String,
    },
}

impl Service {
    /// `POST {root}/studies[/{study}]`.
    pub(super) async fn store_instances(
        &self,
        req: &Request<'_>,
        route: &Route,
    ) -> Result<Response> {
        let Some(study) = crate::route::store_target(&route.resource) else {
            return Err(Error::MethodNotAllowed);
        };
        if self.config.upstream.is_some() {
            return Err(Error::NotWritable(
                "this server is a read-through cache of another archive: store into that archive"
                    .into(),
            ));
        }
        if self.config.read_only {
            return Err(Error::NotWritable("this server is read-only".into()));
        }
        let reach = self.authorise(req, &route.ae_title, Access::Write).await?;
        if let Some(st) = study.as_ref().filter(|st| !reach.admits(st.as_str())) {
            // Storing is refused whether the study exists or not: nothing is told of it.
            return Err(Error::Forbidden(format!(
                "this token may not store into study {st}"
            )));
        }
        let Some(part) = self.partitions.get(&route.ae_title) else {
            return Err(Error::NotFound(format!(
                "unknown AE title {:?}",
                route.ae_title
            )));
        };
        let xml = response_is_xml(req.headers)?;
        let boundary = request_boundary(req.headers)?;
        let max = self.config.max_store_bytes;
        if let Some(len) = header_str(req.headers, header::CONTENT_LENGTH) {
            if len.trim().parse::<u64>().is_ok_and(|n| n > max) {
                return Err(too_large(max));
            }
        }
        let root = self.service_root(req, &route.ae_title)?;

        let store = &*part.store;
        let suffix = format!("{}{}/rs", crate::route::SERVICE_PREFIX, route.ae_title);
        let public = root.strip_suffix(&suffix).unwrap_or(&root);
        let index = self.catalog()?.clone();
        part.ready(&*index, req.now).await?;
        let layout = part.writing_layout(&*index, public).await?;
        let (turns, committer) = if self.config.requests_share_work {
            (part.writing.clone(), part.committer.clone())
        } else {
            Default::default()
        };
        let batch = Batch::new(layout, req.now, req.entropy)
            .with_max_instance(self.config.max_instance_bytes)
            .with_turns(turns)
            .with_offload(self.config.offload.clone())
            .with_index(index.clone(), &route.ae_title, Some(committer));
        let mut body = req
            .body
            .take()
            .ok_or_else(|| Error::BadRequest("a STOW-RS request has a body".into()))?;
        let limits = Limits {
            request: max,
            instance: self.config.max_instance_bytes,
            parts: self.config.max_store_parts.max(1),
        };
        let expected = match (&study, reach.studies()) {
            (Some(st), _) => Expected::Study(st),
            (None, Some(studies)) => Expected::Within(studies),
            (None, None) => Expected::Any,
        };
        let received = receive(&mut body, &boundary, limits, &batch, store, expected).await;
        drop(batch);
        // What is left of a body refused midway is the frontend's to finish.
        req.body.give_back(body);
        // Every instance named stored was committed when it was stored; what is left is to
        // delete versions retired long enough ago, now and then.
        part.sweep_now_and_then(&*index, req.now).await?;
        let outcomes = received?;
        if outcomes.is_empty() {
            return Err(Error::BadRequest(
                "the request holds no instance (no part)".into(),
            ));
        }
        // The studies stored into, for the audit record.
        let mut studies: Vec<String> = Vec::new();
        for o in &outcomes {
            if let Outcome1::Stored(s) = o {
                if !studies.iter().any(|x| x == s.study.as_str()) {
                    studies.push(s.study.to_string());
                }
            }
        }
        // The response data set (an item per instance, XML when asked): here for a few
        // instances (less work than the hop), on the pool for more.
        let made = if outcomes.len() <= INLINE_RESPONSE {
            respond(&root, study.as_ref(), &outcomes, xml)
        } else {
            super::offload::compute(self.config.offload.as_deref(), move || {
                Ok(respond(&root, study.as_ref(), &outcomes, xml))
            })
            .await?
        };
        let mut outcome = made.outcome;
        outcome.studies = studies;
        Ok(Response {
            status: made.status,
            headers: made.headers,
            body: Body::Full(made.body),
            outcome,
        })
    }
}

/// The most instances whose STOW-RS response is made on the request's own task.
const INLINE_RESPONSE: usize = 8;

/// Whether the response is XML (`application/dicom+xml`) rather than DICOM JSON; 406 when
/// neither is acceptable.
fn response_is_xml(headers: &HeaderMap) -> Result<bool> {
    let Some(accept) = header_str(headers, header::ACCEPT) else {
        return Ok(false);
    };
    let mut best: Option<(u16, bool)> = None;
    for r in crate::negotiate::parse_accept(&accept) {
        let xml = match r.essence.as_str() {
            "application/dicom+json" | "application/json" | "*/*" | "application/*" => false,
            "application/dicom+xml" => true,
            "multipart/related"
                if r.params
                    .iter()
                    .any(|(n, v)| n == "type" && v == "application/dicom+xml") =>
            {
                true
            }
            _ => continue,
        };
        if r.q > 0 && best.is_none_or(|(q, _)| r.q > q) {
            best = Some((r.q, xml));
        }
    }
    best.map(|(_, xml)| xml).ok_or_else(|| {
        Error::NotAcceptable(
            "a STOW-RS response is application/dicom+json or application/dicom+xml".into(),
        )
    })
}

/// The boundary of a `multipart/related; type="application/dicom"` body (415 for any other).
fn request_boundary(headers: &HeaderMap) -> Result<String> {
    let ct = header_str(headers, header::CONTENT_TYPE).unwrap_or_default();
    let range = crate::negotiate::parse_accept(&ct).into_iter().next();
    let Some(range) = range.filter(|r| r.essence == "multipart/related") else {
        return Err(Error::UnsupportedMediaType(format!(
            "a STOW-RS request is multipart/related; type=\"application/dicom\", not {:?}",
            truncate(&ct)
        )));
    };
    let param = |name: &str| {
        range
            .params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    match param("type").as_deref() {
        None | Some("application/dicom") => {}
        Some(t @ ("application/dicom+json" | "application/dicom+xml")) => {
            return Err(Error::UnsupportedMediaType(format!(
                "metadata with bulk data parts ({t}) is not taken here: send Part-10 instances as type=\"application/dicom\""
            )))
        }
        Some(t) => {
            return Err(Error::UnsupportedMediaType(format!(
                "parts of type {:?}: a STOW-RS request holds application/dicom parts",
                truncate(t)
            )))
        }
    }
    crate::wire::multipart::boundary_of(&ct).ok_or_else(|| {
        Error::BadRequest("the multipart/related Content-Type has no boundary parameter".into())
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
}

fn too_large(max: u64) -> Error {
    Error::TooLarge(format!(
        "this server takes STOW-RS requests of at most {max} bytes: send the instances in several requests"
    ))
}

/// The most bytes of a request, and of one instance in it; the most parts of a request.
#[derive(Debug, Clone, Copy)]
struct Limits {
    request: u64,
    instance: u64,
    parts: usize,
}

/// Reads the parts as they arrive and stores each whole one (several at once); returns what
/// became of each, in the order they came.
async fn receive(
    body: &mut crate::service::message::RequestStream,
    boundary: &str,
    limits: Limits,
    batch: &Batch,
    store: &dyn Store,
    expected: Expected<'_>,
) -> Result<Vec<Outcome1>> {
    let mut reader = PartReader::new(boundary);
    let mut done: Vec<Option<Outcome1>> = Vec::new();
    let mut working = FuturesUnordered::new();
    let mut waiting_bytes = 0usize;
    let mut total = 0u64;
    // The part being received: its bytes, or None when it is skipped (already failed).
    let mut current: Option<Option<BytesMut>> = None;
    let mut ended = false;
    // Whole parts waiting to be written take at most this much besides the one arriving.
    let window = (IN_FLIGHT_BYTES as u64).min(limits.instance) as usize;
    loop {
        // Room for the next parts first: finished work is collected as it ends.
        while working.len() >= IN_FLIGHT || (waiting_bytes > window && !working.is_empty()) {
            if let Some((i, n, outcome)) = working.next().await {
                waiting_bytes -= n;
                done[i] = Some(outcome);
            }
        }
        let event = match reader.next_event() {
            Ok(e) => e,
            Err(e) => {
                drain(&mut working, &mut done).await;
                return Err(Error::BadRequest(format!(
                    "the multipart body is malformed: {e}{}",
                    stored_before(&done)
                )));
            }
        };
        match event {
            Some(Event::Head(fields)) => {
                if done.len() >= limits.parts {
                    drain(&mut working, &mut done).await;
                    return Err(Error::TooLarge(format!(
                        "this server takes at most {} instances in one STOW-RS request: send the others in another{}",
                        limits.parts,
                        stored_before(&done)
                    )));
                }
                let media = parts::field(&fields, "content-type")
                    .and_then(|ct| ct.split(';').next())
                    .map(|e| e.trim().to_ascii_lowercase());
                current = Some(match media.as_deref() {
                    None | Some("application/dicom") => {
                        let hint = parts::field(&fields, "content-length")
                            .and_then(|n| n.parse::<u64>().ok())
                            .filter(|&n| n <= limits.instance)
                            .unwrap_or(0);
                        Some(BytesMut::with_capacity(hint.min(64 << 20) as usize))
                    }
                    Some(other) => {
                        done.push(Some(Outcome1::Failed {
                            class: None,
                            sop: None,
                            reason: CANNOT_UNDERSTAND,
                            text: format!(
                                "part {} is {other}, not application/dicom",
                                done.len() + 1
                            ),
                        }));
                        None
                    }
                });
            }
            Some(Event::Data(d)) => {
                if let Some(Some(buf)) = &mut current {
                    if (buf.len() + d.len()) as u64 > limits.instance {
                        // Too large to hold: failed, and the rest of it skipped. Its UIDs
                        // are in the meta header at its start.
                        let meta = crate::dicom::scan::scan_meta(buf).ok();
                        done.push(Some(Outcome1::Failed {
                            class: meta.as_ref().and_then(|m| m.media_storage_sop_class.clone()),
                            sop: meta.and_then(|m| m.media_storage_sop_instance),
                            reason: OUT_OF_RESOURCES,
                            text: format!(
                                "part {} is larger than the {} bytes this server takes in one instance",
                                done.len() + 1,
                                limits.instance
                            ),
                        }));
                        current = Some(None);
                    } else {
                        buf.extend_from_slice(&d);
                    }
                }
            }
            Some(Event::End) => {
                if let Some(Some(buf)) = current.take() {
                    let bytes = buf.freeze();
                    let i = done.len();
                    done.push(None);
                    waiting_bytes += bytes.len();
                    working.push(async move {
                        let n = bytes.len();
                        (i, n, store_one(batch, store, bytes, expected).await)
                    });
                }
            }
            None if reader.closed() || ended => break,
            None => match body.next().await {
                Some(Ok(chunk)) => {
                    total += chunk.len() as u64;
                    if total > limits.request {
                        drain(&mut working, &mut done).await;
                        return Err(too_large(limits.request));
                    }
                    reader.feed(&chunk);
                }
                Some(Err(e)) => {
                    // The part being received is dropped: nothing of it was written.
                    drain(&mut working, &mut done).await;
                    return Err(Error::BadRequest(format!(
                        "the request body broke off: {e}{}",
                        stored_before(&done)
                    )));
                }
                None => {
                    reader.finish();
                    ended = true;
                }
            },
        }
    }
    drain(&mut working, &mut done).await;
    Ok(done.into_iter().flatten().collect())
}

/// Waits for the parts being written.
async fn drain<F>(working: &mut FuturesUnordered<F>, done: &mut [Option<Outcome1>])
where
    F: std::future::Future<Output = (usize, usize, Outcome1)>,
{
    while let Some((i, _, outcome)) = working.next().await {
        done[i] = Some(outcome);
    }
}

/// How many instances a failed request stored before it failed (they stay stored, whole).
fn stored_before(done: &[Option<Outcome1>]) -> String {
    let n = done
        .iter()
        .filter(|o| matches!(o, Some(Outcome1::Stored(_))))
        .count();
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} instances before it were stored)")
    }
}

/// Stores one whole part.
async fn store_one(
    batch: &Batch,
    store: &dyn Store,
    bytes: Bytes,
    expected: Expected<'_>,
) -> Outcome1 {
    let meta = crate::dicom::scan::scan_meta(&bytes).ok();
    let (class, sop) = match &meta {
        Some(m) => (
            m.media_storage_sop_class.clone(),
            m.media_storage_sop_instance.clone(),
        ),
        None => (None, None),
    };
    match batch.add_expecting(store, bytes, expected).await {
        Ok(done) => Outcome1::Stored(done.into()),
        Err(e) => {
            let reason = match &e {
                ImportError::Rejected(_) => CANNOT_UNDERSTAND,
                ImportError::Mismatch(_) => DOES_NOT_MATCH,
                ImportError::Duplicate(_) => DUPLICATE,
                ImportError::NotPermitted(_) => NOT_AUTHORIZED,
                ImportError::TooLarge(_) => OUT_OF_RESOURCES,
                ImportError::Store(crate::store::StoreError::Full(_)) => OUT_OF_RESOURCES,
                ImportError::Store(_) | ImportError::Index(_) => PROCESSING_FAILURE,
            };
            Outcome1::Failed {
                class,
                sop,
                reason,
                text: e.to_string(),
            }
        }
    }
}

/// A response made on the pool (a [`Response`] may hold a stream, which is not `Send` in the
/// worker).
struct Made {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    outcome: Outcome,
}

fn respond(root: &str, study: Option<&Uid>, outcomes: &[Outcome1], xml: bool) -> Made {
    let ui = |s: &str| json!({"vr": "UI", "Value": [s]});
    let ur = |s: String| json!({"vr": "UR", "Value": [s]});
    let (mut referenced, mut n_referenced) = (Vec::new(), 0usize);
    let (mut failed, mut n_failed) = (Vec::new(), 0usize);
    let mut notes = Vec::new();
    let mut studies: Vec<&Uid> = Vec::new();
    let push = |out: &mut Vec<u8>, n: &mut usize, item: Map<String, Value>| {
        if *n > 0 {
            out.push(b',');
        }
        *n += 1;
        // A map of strings and numbers: always writable.
        let _ = serde_json::to_writer(&mut *out, &Value::Object(item));
    };
    for o in outcomes {
        match o {
            Outcome1::Stored(i) => {
                let mut item = Map::new();
                item.insert("00081150".into(), ui(&i.sop_class));
                item.insert("00081155".into(), ui(i.sop.as_str()));
                item.insert(
                    "00081190".into(),
                    ur(format!(
                        "{root}/studies/{}/series/{}/instances/{}",
                        i.study, i.series, i.sop
                    )),
                );
                if i.status == Status::Replaced {
                    item.insert("00081196".into(), json!({"vr": "US", "Value": [REPLACED]}));
                    if notes.len() < MAX_NOTES {
                        notes.push(format!("instance {} replaced the one stored before", i.sop));
                    }
                }
                for w in i
                    .warnings
                    .iter()
                    .take(MAX_NOTES.saturating_sub(notes.len()))
                {
                    notes.push(format!("instance {}: {w}", i.sop));
                }
                if !studies.contains(&&i.study) && studies.len() < 2 {
                    studies.push(&i.study);
                }
                push(&mut referenced, &mut n_referenced, item);
            }
            Outcome1::Failed {
                class,
                sop,
                reason,
                text: why,
            } => {
                let mut item = Map::new();
                let uid = |v: &Option<String>| match v {
                    Some(s) if !s.is_empty() => json!({"vr": "UI", "Value": [s]}),
                    _ => json!({"vr": "UI"}),
                };
                item.insert("00081150".into(), uid(class));
                item.insert("00081155".into(), uid(sop));
                item.insert("00081197".into(), json!({"vr": "US", "Value": [reason]}));
                if notes.len() < MAX_NOTES {
                    notes.push(match sop {
                        Some(s) => format!("instance {s} not stored: {why}"),
                        None => format!("not stored: {why}"),
                    });
                }
                push(&mut failed, &mut n_failed, item);
            }
        }
    }
    // The study's URL: the one the request named, else the one study stored (empty when
    // instances of several studies were stored: Type 2, PS3.18 §10.5.3.1).
    let study_url = study.or(if studies.len() == 1 {
        studies.first().copied()
    } else {
        None
    });
    let mut body = b"{\"00081190\":".to_vec();
    let url = match study_url {
        Some(st) => ur(format!("{root}/studies/{st}")),
        None => json!({"vr": "UR"}),
    };
    let _ = serde_json::to_writer(&mut body, &url);
    for (tag, items, n) in [
        ("00081198", failed, n_failed),
        ("00081199", referenced, n_referenced),
    ] {
        if n > 0 {
            body.extend_from_slice(format!(",\"{tag}\":{{\"vr\":\"SQ\",\"Value\":[").as_bytes());
            body.extend_from_slice(&items);
            body.extend_from_slice(b"]}");
        }
    }
    body.push(b'}');
    let status = match (n_referenced == 0, n_failed == 0) {
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
        _ => StatusCode::CONFLICT,
    };
    let (media, bytes) = if xml {
        let mut doc = String::new();
        // The JSON written above: always parses and translates.
        if let Ok(ds) = serde_json::from_slice::<Value>(&body) {
            let _ = crate::dicom::xml::write_document(&ds, &mut doc);
        }
        ("application/dicom+xml", doc.into_bytes())
    } else {
        ("application/dicom+json", body)
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    for n in &notes {
        http::append_warning(&mut headers, n);
    }
    Made {
        status,
        headers,
        body: Bytes::from(bytes),
        outcome: Outcome {
            media_type: Some(media.into()),
            resource: Some("store"),
            warning: (n_failed > 0).then(|| notes.join("; ")),
            ..Outcome::default()
        },
    }
}
