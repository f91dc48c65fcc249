//! Study, series and instance metadata (PS3.18 §10.4.1.1.2): DICOM JSON assembled from the
//! instances' metadata the catalog holds (kept by version), in the wanted content coding,
//! BulkDataURIs on the request's root; XML (PS3.19) translated from it.

use super::{Ctx, Plan};
use crate::dicom::uid::Uid;
use crate::error::{Error, Result};
use crate::layout::{self, LayoutRecord};
use crate::media::MediaType;
use crate::negotiate::{Category, Negotiation};
use crate::route::Target;
use crate::service::body::{Part, Source};
use crate::service::http::{choose_encoding, header_str};
use crate::service::message::Outcome;
use crate::service::Service;
use bytes::Bytes;
use http::header;
use std::collections::HashMap;
use std::io::Write;

/// What a cached metadata body was made from, and for whom: a study's or series' metadata at
/// one version (the generation of its last write, and its number of instances), on one
/// service root. Bodies are kept gzip-coded (a tenth of the size, and what viewers ask for):
/// served as kept, or decoded for a client that does not accept gzip.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    key: String,
    version: String,
    root: String,
}

/// Metadata bodies kept by version: gzip-coded (what viewers ask for, a tenth of the size: a
/// quarter of the budget holds a large archive's series), and the decoded body of those last
/// asked for without gzip (the rest of the budget), each evicting its oldest first.
#[derive(Debug, Default)]
pub(crate) struct MetaCache {
    gzip: Bounded,
    plain: Bounded,
}

impl MetaCache {
    fn get(&self, k: &CacheKey, coding: &str) -> Option<Bytes> {
        match coding {
            "gzip" => self.gzip.get(k),
            "identity" => self.plain.get(k),
            _ => None,
        }
    }

    /// The gzip-coded body kept for `k`, to decode.
    fn get_gzip(&self, k: &CacheKey) -> Option<Bytes> {
        self.gzip.get(k)
    }

    fn insert(&mut self, k: CacheKey, coding: &str, v: Bytes, budget: usize) {
        match coding {
            "gzip" => self.gzip.insert(k, v, budget / 4),
            "identity" => self.plain.insert(k, v, budget - budget / 4),
            _ => {}
        }
    }
}

/// A byte-bounded map, evicting the oldest first.
#[derive(Debug, Default)]
struct Bounded {
    entries: HashMap<CacheKey, Bytes>,
    order: std::collections::VecDeque<CacheKey>,
    bytes: usize,
}

impl Bounded {
    fn get(&self, k: &CacheKey) -> Option<Bytes> {
        self.entries.get(k).cloned()
    }

    fn insert(&mut self, k: CacheKey, v: Bytes, budget: usize) {
        if v.len() > budget || self.entries.contains_key(&k) {
            return;
        }
        while self.bytes + v.len() > budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(b) = self.entries.remove(&old) {
                self.bytes -= b.len();
            }
        }
        self.bytes += v.len();
        self.order.push_back(k.clone());
        self.entries.insert(k, v);
    }
}

/// Replaces the service root in BulkDataURIs only (never in patient data).
pub(crate) fn rebase_json(json: &[u8], from: &str, to: &str) -> Vec<u8> {
    let needle = format!("\"BulkDataURI\":\"{from}/");
    let repl = format!("\"BulkDataURI\":\"{to}/");
    let finder = memchr::memmem::Finder::new(needle.as_bytes());
    let mut out = Vec::with_capacity(json.len() + json.len() / 16);
    let mut last = 0;
    for pos in finder.find_iter(json) {
        out.extend_from_slice(&json[last..pos]);
        out.extend_from_slice(repl.as_bytes());
        last = pos + needle.len();
    }
    out.extend_from_slice(&json[last..]);
    out
}

pub(crate) fn gzip_fast(data: &[u8]) -> Bytes {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = e.write_all(data);
    Bytes::from(e.finish().unwrap_or_default())
}

/// `data` (gzip, made here) decoded; `None` if it is not what `gzip_fast` made.
fn gunzip(data: &[u8], size_hint: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::with_capacity(size_hint);
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// The size a gzip member declares for its content (ISIZE, modulo 2^32).
fn gzip_isize(data: &[u8]) -> usize {
    match data.len().checked_sub(4).map(|n| &data[n..]) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]) as usize,
        _ => 0,
    }
}

pub(crate) fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

impl Service {
    pub(crate) async fn metadata(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        neg: &Negotiation,
    ) -> Result<Plan> {
        let media = neg
            .media_choices()
            .into_iter()
            .map(|(m, _)| m)
            .find(|m| {
                matches!(
                    m,
                    MediaType::DicomJson | MediaType::Json | MediaType::DicomXml
                )
            })
            .ok_or_else(|| {
                Error::NotAcceptable(crate::negotiate::available_text(Category::Metadata))
            })?;
        if media == MediaType::DicomXml {
            return self.metadata_xml(ctx, target).await;
        }
        let layout = ctx.part.layout(&*ctx.index).await?;
        let coding =
            choose_encoding(header_str(ctx.req.headers, header::ACCEPT_ENCODING).as_deref());
        let (body, identity) = self.metadata_body(ctx, target, &layout, coding).await?;
        let validator = format!(
            "metadata|{}|{identity}|{media}|{coding}|{}",
            target.path(),
            ctx.root
        );
        let outcome = Outcome {
            media_type: Some(media.as_str().into()),
            validator: Some(validator),
            ..Outcome::default()
        };
        Ok(Plan::document(
            media.as_str(),
            coding,
            "Accept, Accept-Encoding",
            body,
            outcome,
        ))
    }

    /// Metadata as `multipart/related; type="application/dicom+xml"`: one Native DICOM Model
    /// document per instance (PS3.18 Table 10.4.4-1, PS3.19 Annex A), translated from the
    /// stored JSON.
    pub(crate) async fn metadata_xml(&self, ctx: &Ctx<'_>, target: &Target) -> Result<Plan> {
        let layout = ctx.part.layout(&*ctx.index).await?;
        let (json, _) = self.metadata_body(ctx, target, &layout, "identity").await?;
        // Parsed and written as XML on the pool.
        let (path, root) = (target.path(), ctx.root.clone());
        let parts = crate::service::offload::compute(self.config.offload.as_deref(), move || {
            let list: Vec<serde_json::Value> =
                serde_json::from_slice(&json).map_err(|e| Error::corrupt(&path, e))?;
            let uid = |v: &serde_json::Value, tag: &str| {
                v.get(tag)
                    .and_then(|a| a.get("Value"))
                    .and_then(|a| a.get(0))
                    .and_then(|a| a.as_str())
                    .unwrap_or("")
                    .to_owned()
            };
            let mut parts = Vec::with_capacity(list.len());
            for inst in &list {
                let mut doc = String::with_capacity(16 * 1024);
                crate::dicom::xml::write_document(inst, &mut doc)
                    .map_err(|e| Error::corrupt(&path, e))?;
                parts.push(Part {
                    content_type: "application/dicom+xml".into(),
                    location: format!(
                        "{}/studies/{}/series/{}/instances/{}/metadata",
                        root,
                        uid(inst, "0020000D"),
                        uid(inst, "0020000E"),
                        uid(inst, "00080018")
                    ),
                    entry: String::new(),
                    source: Source::Bytes(Bytes::from(doc)),
                });
            }
            Ok(parts)
        })
        .await?;
        let outcome = Outcome {
            media_type: Some("application/dicom+xml".into()),
            ..Outcome::default()
        };
        Ok(Plan::multipart("application/dicom+xml", parts, outcome))
    }

    /// The metadata of a target as a DICOM JSON array in `coding`, BulkDataURIs on the
    /// request's root, with the identity of the version it was made from.
    pub(crate) async fn metadata_body(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        layout: &LayoutRecord,
        coding: &'static str,
    ) -> Result<(Bytes, String)> {
        let (study, series) = match target {
            Target::Study { study } => (study, None),
            Target::Series { study, series } => (study, Some(series)),
            Target::Instance { .. } => {
                let idx = self.instance_index(ctx, target).await?;
                let mut json = format!("[{}]", idx.metadata.get()).into_bytes();
                if layout.service_root != ctx.root {
                    json = rebase_json(&json, &layout.service_root, &ctx.root);
                }
                let body = match coding {
                    "gzip" => gzip_fast(&json),
                    "deflate" => Bytes::from(zlib(&json)),
                    _ => Bytes::from(json),
                };
                return Ok((body, idx.source.sha256.clone()));
            }
        };
        self.assembled_metadata(ctx, study, series, &layout.service_root, coding)
            .await
    }

    /// Study or series metadata: the instances' metadata the catalog holds, in one array
    /// (series by UID, instances by Instance Number), BulkDataURIs on the request's root, in
    /// the wanted content coding. Nothing is written when an instance is stored: the body is
    /// made on the first read of each version (one query), then kept, keyed by the version
    /// (the generation of the last write, and the number of instances), which one cheap
    /// query checks on every read.
    pub(crate) async fn assembled_metadata(
        &self,
        ctx: &Ctx<'_>,
        study: &Uid,
        series: Option<&Uid>,
        stored_root: &str,
        coding: &'static str,
    ) -> Result<(Bytes, String)> {
        use crate::search::{schema, Value};
        let (d, part) = (ctx.index.dialect(), ctx.part.ae_title.as_str());
        let missing = || Error::NotFound("no such study or series".into());
        let text = |r: &crate::search::Row, n: usize| {
            r.get(n).and_then(Value::as_str).unwrap_or("").to_owned()
        };
        let int = |r: &crate::search::Row, n: usize| r.get(n).and_then(Value::as_int).unwrap_or(0);
        let version = |r: &crate::search::Row| format!("{}-{}", text(r, 0), int(r, 2));
        let key = match series {
            Some(se) => format!("{study}/{se}"),
            None => study.to_string(),
        };
        if !ctx.reach.admits(study.as_str()) {
            // Out of the token's reach: the same answer as for a study not stored.
            return Err(missing());
        }
        let rows = ctx
            .index
            .query(schema::version_of(d, part, study, series))
            .await?;
        let head = rows.first().ok_or_else(missing)?;
        ctx.saw(u64::try_from(int(head, 1)).ok().filter(|&m| m > 0));
        let mut ck = CacheKey {
            key,
            version: version(head),
            root: ctx.root.clone(),
        };
        let (cached, gz) = {
            let cache = ctx.part.cache.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(&ck, coding) {
                Some(b) => (Some(b), None),
                None => (None, cache.get_gzip(&ck)),
            }
        };
        if let Some(b) = cached {
            return Ok((b, ck.version));
        }
        if let Some(gz) = gz {
            // Decoded (and re-coded) on the pool: megabytes for a large study.
            let path = ck.key.clone();
            let body =
                crate::service::offload::compute(self.config.offload.as_deref(), move || {
                    let json = gunzip(&gz, gzip_isize(&gz)).ok_or_else(|| {
                        Error::corrupt(&path, "a kept metadata body does not decode")
                    })?;
                    Ok(match coding {
                        "deflate" => Bytes::from(zlib(&json)),
                        _ => Bytes::from(json),
                    })
                })
                .await?;
            self.keep(ctx, ck.clone(), coding, body.clone());
            return Ok((body, ck.version));
        }
        // The version and its instances in one snapshot.
        let mut rows = ctx
            .index
            .query(schema::metadata_rows(d, part, study, series))
            .await?;
        let first = rows.first().ok_or_else(missing)?;
        ck.version = version(first);
        let mut pieces: Vec<String> = Vec::with_capacity(rows.len());
        for r in &mut rows {
            match r.get_mut(7) {
                Some(Value::Text(meta)) => pieces.push(std::mem::take(meta)),
                // Too large for the row: from the instance's index object.
                _ => {
                    let se = Uid::parse(&text(r, 3)).map_err(|_| missing())?;
                    let sop = Uid::parse(&text(r, 4)).map_err(|_| missing())?;
                    let gen = text(r, 5);
                    let listed = super::StoredInstance {
                        key: layout::instance_key(study, &se, &sop, &gen),
                        study: study.clone(),
                        series: se,
                        sop,
                        gen,
                        size: u64::try_from(int(r, 8)).unwrap_or(0),
                        modified: None,
                    };
                    let idx = super::load_record(ctx, &listed).await?;
                    pieces.push(idx.metadata.get().to_owned());
                }
            }
        }
        // Joined, rebased and coded on the pool (megabytes for a large study).
        let (stored_root, root) = (stored_root.to_owned(), ctx.root.clone());
        let (out, kept) =
            crate::service::offload::compute(self.config.offload.as_deref(), move || {
                let mut json =
                    Vec::with_capacity(pieces.iter().map(String::len).sum::<usize>() + 2);
                json.push(b'[');
                for (i, p) in pieces.iter().enumerate() {
                    if i > 0 {
                        json.push(b',');
                    }
                    json.extend_from_slice(p.as_bytes());
                }
                json.push(b']');
                drop(pieces);
                if stored_root != root {
                    json = rebase_json(&json, &stored_root, &root);
                }
                let gz = gzip_fast(&json);
                Ok(match coding {
                    "gzip" => (gz.clone(), gz),
                    "deflate" => (Bytes::from(zlib(&json)), gz),
                    _ => (Bytes::from(json), gz),
                })
            })
            .await?;
        let id = ck.version.clone();
        self.keep(ctx, ck.clone(), "gzip", kept);
        self.keep(ctx, ck, coding, out.clone());
        Ok((out, id))
    }

    fn keep(&self, ctx: &Ctx<'_>, k: CacheKey, coding: &str, body: Bytes) {
        ctx.part
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k, coding, body, self.config.metadata_cache_bytes);
    }
}
