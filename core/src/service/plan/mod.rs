//! Planners: one per kind of resource, each deciding from the negotiation and the stored
//! indexes what the response is made of (a [`Plan`]), before any body byte is read. Each picks
//! a media type in the client's order, then a transfer syntax per part
//! ([`crate::negotiate::choose_ts`]) among those this build can produce from what is stored
//! ([`can_convert`], [`can_give_frame`]), so a plan is only chosen when the stream can make it.

mod bulkdata;
mod frames;
mod instances;
mod metadata;
mod rendered;
mod search;

#[cfg(test)]
pub(crate) use metadata::rebase_json;
pub(crate) use metadata::MetaCache;

use super::body::Part;
use super::message::{Outcome, Request};
use super::{Partition, Service};
use crate::dicom::uid::Uid;
use crate::error::{Error, Result};
use crate::layout::{self, InstanceIndex};
use crate::media::{ts, MediaType};
use crate::route::Target;
use crate::wire::multipart::boundary_from_entropy;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a planner decided: how the response is framed, its parts in order, and what to log
/// (the outcome's `warning` makes it a 206, its `validator` gives the ETag).
pub(crate) struct Plan {
    /// The framing.
    pub(crate) shape: Shape,
    /// The parts, in order (none for a document).
    pub(crate) parts: Vec<Part>,
    /// Media type, transfer syntaxes, warning, validator.
    pub(crate) outcome: Outcome,
}

/// How a plan's body is framed.
pub(crate) enum Shape {
    /// One document made in memory (metadata, search results), already in its content coding.
    Document {
        /// Its Content-Type.
        content_type: String,
        /// `gzip`, `deflate` or `identity`.
        coding: &'static str,
        /// The request headers it varies by (empty: none).
        vary: &'static str,
        /// The bytes.
        body: Bytes,
    },
    /// One part, its own headers the response's.
    Single,
    /// `multipart/related; type="{part_type}"`.
    Multipart {
        /// The parts' media type.
        part_type: String,
    },
    /// `application/zip`, one entry per part.
    Zip,
}

impl Plan {
    /// One part as the whole body.
    pub(crate) fn single(part: Part, outcome: Outcome) -> Plan {
        Plan {
            shape: Shape::Single,
            parts: vec![part],
            outcome,
        }
    }

    /// Parts in a multipart/related body.
    pub(crate) fn multipart(part_type: &str, parts: Vec<Part>, outcome: Outcome) -> Plan {
        Plan {
            shape: Shape::Multipart {
                part_type: part_type.to_owned(),
            },
            parts,
            outcome,
        }
    }

    /// Parts as the entries of a ZIP archive.
    pub(crate) fn zip(parts: Vec<Part>, outcome: Outcome) -> Plan {
        Plan {
            shape: Shape::Zip,
            parts,
            outcome,
        }
    }

    /// A document made in memory.
    pub(crate) fn document(
        content_type: &str,
        coding: &'static str,
        vary: &'static str,
        body: Bytes,
        outcome: Outcome,
    ) -> Plan {
        Plan {
            shape: Shape::Document {
                content_type: content_type.to_owned(),
                coding,
                vary,
                body,
            },
            parts: Vec::new(),
            outcome,
        }
    }

    /// One part alone, or in multipart/related.
    pub(crate) fn one(multipart: bool, part_type: &str, part: Part, outcome: Outcome) -> Plan {
        if multipart {
            Plan::multipart(part_type, vec![part], outcome)
        } else {
            Plan::single(part, outcome)
        }
    }
}

/// Transfer syntaxes this build converts between (uncompressed, by re-encoding the data set).
pub(crate) fn can_convert(from: &str, to: &str, pixel: Option<&crate::PixelInfo>) -> bool {
    let writable = [
        ts::EXPLICIT_VR_LE,
        ts::IMPLICIT_VR_LE,
        ts::EXPLICIT_VR_BE,
        ts::DEFLATED_EXPLICIT_VR_LE,
    ];
    let readable = ts::is_native(from) || wado_codec::can_decode(from);
    (ts::is_native(from) && writable.contains(&to))
        || (readable && to == ts::EXPLICIT_VR_LE)
        || (readable
            && pixel.is_some_and(|p| wado_codec::can_encode(to, p) && !native_subsampled(from, p)))
}

/// Native YBR_FULL_422 (two samples per pixel stored, PS3.3 C.7.6.3.1.2): the encoders take
/// three samples per pixel, and upsampling it is not written yet, so such frames are given
/// in native syntaxes only (a 406 or the stored syntax, never a response that fails midway).
fn native_subsampled(from: &str, info: &crate::PixelInfo) -> bool {
    ts::is_native(from) && info.photometric_interpretation == "YBR_FULL_422"
}

/// Whether a frame stored in `from` can be given as `to` in `media` (uncompressed bulk data:
/// native frames as they are, compressed ones decoded).
pub(crate) fn can_give_frame(
    media: MediaType,
    info: &crate::PixelInfo,
    from: &str,
    to: &str,
) -> bool {
    let readable = ts::is_native(from) || wado_codec::can_decode(from);
    let writable = match media {
        MediaType::OctetStream => to == ts::EXPLICIT_VR_LE,
        MediaType::DicomRle
        | MediaType::Jpeg
        | MediaType::Jls
        | MediaType::Jp2
        | MediaType::Jpx
        | MediaType::Jphc => wado_codec::can_encode(to, info) && !native_subsampled(from, info),
        _ => false,
    };
    readable && writable
}

/// Whether converting one frame from `from` to `to` can ever fit a conversion memory of `max`
/// bytes (0: no limit): the decoded frame twice (decoded, encoded) and what the coders hold
/// while they work. A frame that cannot is offered as stored only, as a whole file past
/// `max_convert_bytes` is: a crafted header declaring a gigasample image is refused before
/// anything is allocated for it.
pub(crate) fn frame_fits(max: u64, info: &crate::PixelInfo, from: &str, to: &str) -> bool {
    if max == 0 || from == to || (ts::is_native(from) && to == ts::EXPLICIT_VR_LE) {
        return true;
    }
    let decoded = info.stored_frame_bits().div_ceil(8);
    decoded
        .saturating_mul(2)
        .saturating_add(wado_codec::conversion_work_bytes(info, from, to))
        <= max
}

/// The frames an instance's stored pixel data really holds: Number of Frames, but never more
/// than the frame index locates (an index written before import checked this, or a crafted
/// file, must not make a request allocate for frames that are not there).
pub(crate) fn frame_count(idx: &InstanceIndex) -> u32 {
    let Some(info) = &idx.pixel else {
        return 0;
    };
    let n = info.number_of_frames;
    match &idx.frames {
        Some(layout::FrameIndex::Encapsulated { frames })
            if !layout::is_video(&idx.transfer_syntax) =>
        {
            n.min(u32::try_from(frames.len()).unwrap_or(u32::MAX))
        }
        Some(layout::FrameIndex::Native { length, .. }) if info.stored_frame_bits() > 0 => n.min(
            u32::try_from(length.saturating_mul(8) / info.stored_frame_bits()).unwrap_or(u32::MAX),
        ),
        _ => n.min(100_000),
    }
}

/// The 206 explanation for instances left out, if any.
pub(crate) fn left_out_warning(left_out: &[String], how: &str) -> Option<String> {
    (!left_out.is_empty()).then(|| {
        format!(
            "{} instance(s) left out: not available {how}: {}",
            left_out.len(),
            left_out.join(", ")
        )
    })
}

/// What every step of one request shares.
pub(crate) struct Ctx<'a> {
    /// The request.
    pub(crate) req: &'a Request<'a>,
    /// The AE title's partition of the store: everything the response is made from.
    pub(crate) part: &'a Partition,
    /// The service root URIs in the response are built on.
    pub(crate) root: String,
    /// The multipart boundary.
    pub(crate) boundary: String,
    /// The catalog: which instances exist, and in which generation.
    pub(crate) index: Arc<dyn crate::search::Index>,
    /// How far the request's credentials reach: a study out of it answers as one not stored.
    pub(crate) reach: crate::auth::Reach,
    /// The latest modification time (Unix seconds) of the stored objects the response is made
    /// from, 0 when unknown: gives `Last-Modified`.
    modified: AtomicU64,
}

impl<'a> Ctx<'a> {
    /// The context of `req`, URIs on `root`.
    pub(crate) fn new(
        req: &'a Request<'a>,
        part: &'a Partition,
        root: String,
        index: Arc<dyn crate::search::Index>,
        reach: crate::auth::Reach,
    ) -> Ctx<'a> {
        Ctx {
            req,
            part,
            root,
            index,
            reach,
            boundary: boundary_from_entropy(req.entropy),
            modified: AtomicU64::new(0),
        }
    }

    /// Notes that the response depends on an object last written at `modified`.
    pub(crate) fn saw(&self, modified: Option<u64>) {
        if let Some(m) = modified {
            self.modified.fetch_max(m, Ordering::Relaxed);
        }
    }

    /// The response's Last-Modified time, when known.
    pub(crate) fn last_modified(&self) -> Option<u64> {
        Some(self.modified.load(Ordering::Relaxed)).filter(|&m| m > 0)
    }
}

/// An instance the catalog lists: its current generation's file and index.
pub(crate) type StoredInstance = layout::ListedInstance;

pub(crate) fn push_distinct(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

pub(crate) fn list(frames: &[u32]) -> String {
    let mut s: Vec<String> = frames.iter().take(10).map(u32::to_string).collect();
    if frames.len() > 10 {
        s.push(format!("… ({} in all)", frames.len()));
    }
    s.join(",")
}

/// Instance indexes read from the store, by key (a generation's index never changes): a
/// frame request then reads the catalog and its frame only. Bounded by the JSON's size.
#[derive(Debug, Default)]
pub(crate) struct RecordCache {
    entries: std::collections::HashMap<String, Arc<InstanceIndex>>,
    order: std::collections::VecDeque<(String, usize)>,
    bytes: usize,
}

impl RecordCache {
    /// The most bytes (of index JSON) kept.
    const MAX_BYTES: usize = 32 << 20;

    fn get(&self, key: &str) -> Option<Arc<InstanceIndex>> {
        self.entries.get(key).cloned()
    }

    fn insert(&mut self, key: String, idx: Arc<InstanceIndex>, size: usize) {
        if size > Self::MAX_BYTES / 4 || self.entries.contains_key(&key) {
            return;
        }
        while self.bytes + size > Self::MAX_BYTES {
            let Some((old, n)) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&old);
            self.bytes -= n;
        }
        self.entries.insert(key.clone(), idx);
        self.order.push_back((key, size));
        self.bytes += size;
    }
}

impl Service {
    /// The instance's index: the generation the catalog names, read from the store (or the
    /// cache of records, which never change).
    pub(crate) async fn instance_index(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
    ) -> Result<Arc<InstanceIndex>> {
        let listed = self.list_instances(ctx, target).await?;
        let first = listed
            .into_iter()
            .next()
            .ok_or_else(|| Error::NotFound(format!("no {}", target.path())))?;
        load_record(ctx, &first).await
    }

    /// The stored instances of a target, as the catalog lists them: series by UID, instances
    /// by UID within them.
    pub(crate) async fn list_instances(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
    ) -> Result<Vec<StoredInstance>> {
        let (study, series, sop) = target.uids();
        let rows = if ctx.reach.admits(study.as_str()) {
            ctx.index
                .query(crate::search::schema::list_instances(
                    ctx.index.dialect(),
                    &ctx.part.ae_title,
                    study,
                    series,
                    sop,
                ))
                .await?
        } else {
            // Out of the token's reach: the same answer as for a study not stored.
            Vec::new()
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let text = |n: usize| r.get(n).and_then(crate::search::Value::as_str);
            let int = |n: usize| r.get(n).and_then(crate::search::Value::as_int);
            let (Some(st), Some(se), Some(i)) = (
                text(0).and_then(|u| Uid::parse(u).ok()),
                text(1).and_then(|u| Uid::parse(u).ok()),
                text(2).and_then(|u| Uid::parse(u).ok()),
            ) else {
                continue;
            };
            let gen = text(3).unwrap_or("").to_owned();
            let modified = int(5)
                .and_then(|m| u64::try_from(m).ok())
                .filter(|&m| m > 0);
            ctx.saw(modified);
            out.push(StoredInstance {
                key: layout::instance_key(&st, &se, &i, &gen),
                study: st,
                series: se,
                sop: i,
                gen,
                size: int(4).and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                modified,
            });
        }
        if out.is_empty() {
            return Err(Error::NotFound(match target {
                Target::Study { study } => format!("no study {study}"),
                Target::Series { .. } => format!("no series {}", target.path()),
                Target::Instance {
                    study,
                    series,
                    instance,
                } => format!("no instance {instance} in series {series} of study {study}"),
            }));
        }
        Ok(out)
    }
}

/// A listed instance's index (cached by key: a generation's index never changes), checked
/// against the catalog's size of its file.
pub(crate) async fn load_record(ctx: &Ctx<'_>, i: &StoredInstance) -> Result<Arc<InstanceIndex>> {
    let key = i.index_key();
    let cached = ctx
        .part
        .records
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key);
    let idx = match cached {
        Some(idx) => idx,
        None => {
            let bytes = ctx.part.store.get(&key).await?.ok_or_else(|| {
                // The catalog names it: the store lost it, or a version retired under a
                // reader (after the grace period).
                Error::corrupt(&key, "the catalog names an index the store does not hold")
            })?;
            let idx = Arc::new(InstanceIndex::from_json(&key, &bytes)?);
            ctx.part
                .records
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), idx.clone(), bytes.len());
            idx
        }
    };
    if !idx.matches_file(Some(i.size)) || idx.gen != i.gen {
        return Err(Error::corrupt(
            &key,
            "the index does not describe the file the catalog names",
        ));
    }
    Ok(idx)
}
