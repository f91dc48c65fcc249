//! Study, series and instance metadata (PS3.18 §10.4.1.1.2): DICOM JSON from the stored gzip
//! objects, in the wanted content coding, BulkDataURIs on the request's root; XML (PS3.19)
//! translated from it.

use super::{Ctx, Plan};
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
use std::io::{Read, Write};

/// What a cached metadata body was made from, and for whom.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    key: String,
    size: u64,
    trailer: Vec<u8>,
    root: String,
    coding: &'static str,
}

/// A byte-bounded cache of metadata bodies, evicting the oldest first.
#[derive(Debug, Default)]
pub(crate) struct MetaCache {
    entries: HashMap<CacheKey, Bytes>,
    order: std::collections::VecDeque<CacheKey>,
    bytes: usize,
}

impl MetaCache {
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
        let layout = ctx.part.layout().await?;
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
        let layout = ctx.part.layout().await?;
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
    /// request's root, with the stored content identity it was made from.
    pub(crate) async fn metadata_body(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        layout: &LayoutRecord,
        coding: &'static str,
    ) -> Result<(Bytes, String)> {
        let key = match target {
            Target::Study { study } => layout::study_metadata_key(study),
            Target::Series { study, series } => layout::series_metadata_key(study, series),
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
        self.stored_metadata(ctx, &key, &layout.service_root, coding)
            .await
    }

    /// Study or series metadata in the wanted content coding, BulkDataURIs on `root`.
    ///
    /// With the stored root and gzip this is one read of the stored object. Anything else
    /// (identity or deflate, another root) is computed once and cached, keyed by the object's
    /// size and gzip trailer (CRC-32 and length, RFC 1952 §2.3.1): one 8-byte read tells whether
    /// the cached bytes still match the stored object.
    pub(crate) async fn stored_metadata(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        stored_root: &str,
        coding: &'static str,
    ) -> Result<(Bytes, String)> {
        let root = ctx.root.as_str();
        let missing = || Error::NotFound("no such study or series".into());
        if stored_root == root && coding == "gzip" {
            // One read: the stored object is the answer.
            let (b, meta) = ctx.part.store.get_object(key).await?.ok_or_else(missing)?;
            ctx.saw(meta.modified);
            let id = format!(
                "{}-{}",
                b.len(),
                hex::encode(&b[b.len().saturating_sub(8)..])
            );
            return Ok((b, id));
        }
        let head = ctx.part.store.head(key).await?.ok_or_else(missing)?;
        ctx.saw(head.modified);
        let size = head.size;
        if size < 18 {
            return Err(Error::corrupt(key, "not a gzip object"));
        }
        let trailer = ctx
            .part
            .store
            .get_range(key, size - 8..size)
            .await?
            .ok_or_else(missing)?;
        let id = format!("{size}-{}", hex::encode(&trailer));
        let ck = CacheKey {
            key: key.to_owned(),
            size,
            trailer: trailer.to_vec(),
            root: root.to_owned(),
            coding,
        };
        if let Some(b) = ctx
            .part
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ck)
        {
            return Ok((b, id));
        }
        let gz = ctx.part.store.get(key).await?.ok_or_else(missing)?;
        // Inflated, rebased and coded again on the pool (megabytes for a large study).
        let (job_key, stored_root, job_root) =
            (key.to_owned(), stored_root.to_owned(), root.to_owned());
        let out = crate::service::offload::compute(self.config.offload.as_deref(), move || {
            let mut json = Vec::with_capacity(gz.len() * 16);
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut json)
                .map_err(|e| Error::corrupt(&job_key, e))?;
            if stored_root != job_root {
                json = rebase_json(&json, &stored_root, &job_root);
            }
            Ok(match coding {
                "gzip" => gzip_fast(&json),
                "deflate" => Bytes::from(zlib(&json)),
                _ => Bytes::from(json),
            })
        })
        .await?;
        ctx.part
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ck, out.clone(), self.config.metadata_cache_bytes);
        Ok((out, id))
    }
}
