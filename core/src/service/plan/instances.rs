//! Study, series and instance retrieval (PS3.18 §10.4.1.1.1): DICOM files (multipart,
//! single part, ZIP) in a negotiated transfer syntax, or the bulk data of the instances in
//! another media type (frames, documents, video).

use super::{
    can_convert, can_give_frame, frame_count, left_out_warning, load_record, push_distinct, Ctx,
    Plan, StoredInstance,
};
use crate::error::{Error, Result};
use crate::layout::{self, InstanceIndex};
use crate::media::MediaType;
use crate::negotiate::{choose_ts, Category, Chosen, Negotiation};
use crate::route::{AttributePath, PathStep, Target};
use crate::service::body::{Part, Source};
use crate::service::message::Outcome;
use crate::service::Service;
use futures::stream::{self, StreamExt};
use std::sync::Arc;

/// What converting a stored file holds in memory at most, estimated: the file and its parsed
/// form, and its pixels decoded twice (the decoded frames, then the output written from them).
/// A compressed file's pixels are many times its size.
fn conversion_bytes(size: u64, idx: &InstanceIndex) -> u64 {
    let pixels = idx.pixel.as_ref().map_or(0, |p| {
        p.stored_frame_bits()
            .div_ceil(8)
            .saturating_mul(u64::from(p.number_of_frames.max(1)))
    });
    size.max(idx.parsed_size())
        .saturating_mul(2)
        .saturating_add(pixels.saturating_mul(2))
}

/// MIME Type of Encapsulated Document (0042,0012, lower case) and Encapsulated Document
/// Length (0042,0015: the document without its padding byte), from one parse of the stored
/// metadata.
pub(crate) fn document_info(idx: &InstanceIndex) -> (Option<String>, Option<u64>) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(idx.metadata.get()) else {
        return (None, None);
    };
    let first = |tag: &str| {
        v.get(tag)
            .and_then(|a| a.get("Value"))
            .and_then(|a| a.get(0))
            .cloned()
    };
    let mime = first("00420012").and_then(|m| m.as_str().map(|s| s.trim().to_ascii_lowercase()));
    (mime, first("00420015").and_then(|l| l.as_u64()))
}

/// The fragments of a video's stream (indexed at import as one "frame").
pub(crate) fn video_fragments(idx: &InstanceIndex) -> Result<Vec<[u64; 2]>> {
    match &idx.frames {
        Some(layout::FrameIndex::Encapsulated { frames }) if frames.len() == 1 => {
            Ok(frames[0].clone())
        }
        _ => Err(Error::corrupt(
            idx.sop_instance.as_str(),
            "video stream not indexed",
        )),
    }
}

impl Service {
    pub(crate) async fn instances(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        neg: &Negotiation,
    ) -> Result<Plan> {
        let first = neg.media_choices().into_iter().next();
        if first.is_some_and(|(m, _)| !matches!(m, MediaType::Dicom | MediaType::Zip)) {
            return self.instances_other(ctx, target, neg).await;
        }
        let choice = neg
            .media_choices()
            .into_iter()
            .find(|(m, _)| matches!(m, MediaType::Dicom | MediaType::Zip))
            .ok_or_else(|| {
                Error::NotAcceptable(format!(
                    "{} are not available for study, series or instance resources yet; {}",
                    neg.media_choices()
                        .iter()
                        .map(|(m, _)| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    crate::negotiate::available_text(Category::Instances {
                        instance: matches!(target, Target::Instance { .. })
                    })
                ))
            })?;
        let (media, multipart) = choice;
        let wanted = neg.wanted(media, multipart);
        let (instances, indexes) = self.present_instances(ctx, target).await?;
        // `*` among the best q-values: every instance as stored (it wins among equals).
        let top = wanted.first().map(|w| w.q);
        let any = wanted
            .iter()
            .take_while(|w| Some(w.q) == top)
            .any(|w| w.ts == crate::negotiate::TsWanted::Any);
        // Plan each part. With `transfer-syntax=*` nothing needs to be known in advance: the
        // stored syntax is read from the file's first chunk while streaming.
        let mut parts = Vec::with_capacity(instances.len());
        let mut left_out = Vec::new();
        let mut syntaxes: Vec<String> = Vec::new();
        if any {
            for i in &instances {
                parts.push(Part::dicom(
                    ctx,
                    i,
                    None,
                    Source::Object {
                        key: i.key.clone(),
                        start: 0,
                        end: i.size,
                        detect_ts: true,
                    },
                ));
            }
        } else {
            // The stored syntax and pixel depth of each instance, from its index.
            for (i, idx) in instances.iter().zip(&indexes) {
                let stored_ts = idx.transfer_syntax.clone();
                // A whole-file conversion holds the file and its result in memory: past the
                // budget only the stored syntax is offered.
                let fits = i.size.max(idx.parsed_size()) <= self.config.max_convert_bytes;
                match choose_ts(MediaType::Dicom, &wanted, &stored_ts, |f, t| {
                    fits && can_convert(f, t, idx.pixel.as_ref())
                }) {
                    Some(Chosen {
                        ts: t,
                        passthrough: true,
                    }) => {
                        parts.push(Part::dicom(
                            ctx,
                            i,
                            Some(&t),
                            Source::Object {
                                key: i.key.clone(),
                                start: 0,
                                end: i.size,
                                detect_ts: false,
                            },
                        ));
                        push_distinct(&mut syntaxes, t);
                    }
                    Some(Chosen {
                        ts: t,
                        passthrough: false,
                    }) => {
                        parts.push(Part::dicom(
                            ctx,
                            i,
                            Some(&t),
                            Source::Convert {
                                key: i.key.clone(),
                                holds: conversion_bytes(i.size, idx),
                                to: t.clone(),
                            },
                        ));
                        push_distinct(&mut syntaxes, t);
                    }
                    None if !fits => left_out.push(format!(
                        "{} ({stored_ts}; {} bytes, more than the {} this server converts)",
                        i.sop, i.size, self.config.max_convert_bytes
                    )),
                    None => left_out.push(format!("{} ({stored_ts})", i.sop)),
                }
            }
        }
        if parts.is_empty() {
            return Err(Error::NotAcceptable(format!(
                "no instance can be given in an acceptable transfer syntax (stored: {}); instances in a syntax this build cannot decode (JPEG XL; JPEG 2000 and HTJ2K where openjp2 is not built in; video is never transcoded) can be had with transfer-syntax=* or in their own syntax",
                left_out.join(", ")
            )));
        }
        let warning = left_out_warning(&left_out, "in an acceptable transfer syntax");
        // No validator: a content identity of every instance would cost a read per instance
        // (a same-size replacement must not yield a stale 304).
        let converted = parts
            .iter()
            .any(|p| matches!(p.source, Source::Convert { .. }));
        let outcome = Outcome {
            media_type: Some("application/dicom".into()),
            transfer_syntaxes: syntaxes,
            warning,
            error: None,
            validator: None,
            resource: None,
            converted,
            notices: Vec::new(),
            ..Outcome::default()
        };
        if media == MediaType::Zip {
            // dcm4chee's extension: one ZIP of the PS3.10 files, entries {study}/{series}/{sop}.dcm.
            Ok(Plan::zip(
                parts,
                Outcome {
                    media_type: Some("application/zip".into()),
                    ..outcome
                },
            ))
        } else if multipart {
            Ok(Plan::multipart("application/dicom", parts, outcome))
        } else {
            // Single part: the executor converts it before answering, so a corrupt file is a
            // 500, not a truncated 200.
            Ok(Plan::single(parts.remove(0), outcome))
        }
    }

    /// The instances of a target that are there whole, with their indexes (read 16 at a time):
    /// a listed file whose index names another size (an import interrupted between the two
    /// writes, a file truncated or replaced in place) does not exist (the module doc of
    /// [`layout`]); when none is left, 404.
    pub(crate) async fn present_instances(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
    ) -> Result<(Vec<StoredInstance>, Vec<Arc<InstanceIndex>>)> {
        let list = self.list_instances(ctx, target).await?;
        let loads = list
            .iter()
            .cloned()
            .map(|i| async move { load_record(ctx, &i).await });
        let indexes: Vec<Arc<InstanceIndex>> = stream::iter(loads)
            .buffered(16)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        Ok((list, indexes))
    }

    /// Study, series or instance resources in a non-DICOM media type (PS3.18 Table 10.4.4-1):
    /// the bulk data of the instances. `application/octet-stream` and the image types give
    /// every frame of every image instance; `application/pdf` and `text/xml` the Encapsulated
    /// Document of instances whose MIME Type of Encapsulated Document says so; `video/mpeg` and
    /// `video/mp4` the video stream as stored (never transcoded). Media types are tried in the
    /// client's order; the first that some instance can be given in is used, and instances
    /// that cannot are left out (206, named in a Warning header).
    pub(crate) async fn instances_other(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        neg: &Negotiation,
    ) -> Result<Plan> {
        let (_, indexes) = self.present_instances(ctx, target).await?;
        let category = Category::Instances {
            instance: matches!(target, Target::Instance { .. }),
        };
        for (media, multipart) in neg.media_choices() {
            if matches!(media, MediaType::Dicom | MediaType::Zip)
                || !category.allows(media, multipart)
            {
                continue;
            }
            let wanted = neg.wanted(media, multipart);
            let mut parts = Vec::new();
            let mut left_out = Vec::new();
            let mut syntaxes = Vec::new();
            for idx in &indexes {
                match self.instance_parts(ctx, idx, media, &wanted).await? {
                    Some((p, t)) => {
                        parts.extend(p);
                        if let Some(t) = t {
                            push_distinct(&mut syntaxes, t);
                        }
                    }
                    None => left_out.push(idx.sop_instance.to_string()),
                }
            }
            if parts.is_empty() {
                continue;
            }
            let warning = left_out_warning(&left_out, &format!("as {media}"));
            let converted = parts
                .iter()
                .any(|p| matches!(p.source, Source::Transcode { .. }));
            let outcome = Outcome {
                media_type: Some(media.as_str().into()),
                transfer_syntaxes: syntaxes,
                warning,
                error: None,
                validator: None,
                resource: None,
                converted,
                notices: Vec::new(),
                ..Outcome::default()
            };
            return Ok(Plan::multipart(media.as_str(), parts, outcome));
        }
        Err(Error::NotAcceptable(format!(
            "no instance of {} can be given in an acceptable media type (image instances: application/octet-stream or their stored image type; documents: application/pdf, text/xml; video: video/mpeg, video/mp4)",
            target.path()
        )))
    }

    /// One instance's parts in `media`, with the transfer syntax they carry; `None` when the
    /// instance cannot be given in that media type.
    pub(crate) async fn instance_parts(
        &self,
        ctx: &Ctx<'_>,
        idx: &InstanceIndex,
        media: MediaType,
        wanted: &[crate::negotiate::Wanted],
    ) -> Result<Option<(Vec<Part>, Option<String>)>> {
        let instance_uri = format!(
            "{}/studies/{}/series/{}/instances/{}",
            ctx.root, idx.study, idx.series, idx.sop_instance
        );
        let stored = idx.transfer_syntax.as_str();
        match media {
            MediaType::Pdf | MediaType::TextXml => {
                let (mime, doc_len) = document_info(idx);
                if mime.as_deref() != Some(media.as_str()) {
                    return Ok(None);
                }
                let part = self
                    .document_part(
                        ctx,
                        idx,
                        media,
                        doc_len,
                        format!("{instance_uri}/bulkdata/00420011"),
                    )
                    .await?;
                Ok(Some((vec![part], None)))
            }
            MediaType::Mpeg | MediaType::Mp4 => {
                if !layout::is_video(stored) {
                    return Ok(None);
                }
                let Some(chosen) = choose_ts(media, wanted, stored, |_, _| false) else {
                    return Ok(None);
                };
                let part = Part {
                    content_type: format!("{}; transfer-syntax={}", media.as_str(), chosen.ts),
                    location: format!("{instance_uri}/bulkdata/7FE00010"),
                    entry: String::new(),
                    source: Source::Fragments {
                        key: idx.file_key(),
                        fragments: video_fragments(idx)?,
                    },
                };
                Ok(Some((vec![part], Some(chosen.ts))))
            }
            _ => {
                let Some(info) = &idx.pixel else {
                    return Ok(None);
                };
                if layout::is_video(stored) {
                    return Ok(None);
                }
                let can = |from: &str, to: &str| can_give_frame(media, info, from, to);
                let Some(chosen) = choose_ts(media, wanted, stored, can) else {
                    return Ok(None);
                };
                let frames: Vec<u32> = (1..=frame_count(idx)).collect();
                let content_type = format!("{}; transfer-syntax={}", media.as_str(), chosen.ts);
                let parts = self
                    .frame_parts(ctx, idx, &frames, &chosen.ts, &content_type, &instance_uri)
                    .await?;
                Ok(Some((parts, Some(chosen.ts))))
            }
        }
    }

    /// The Encapsulated Document of an instance as one part typed `media`, without the
    /// padding byte (Encapsulated Document Length, PS3.3 C.24.2.1, when present).
    pub(crate) async fn document_part(
        &self,
        ctx: &Ctx<'_>,
        idx: &InstanceIndex,
        media: MediaType,
        doc_len: Option<u64>,
        location: String,
    ) -> Result<Part> {
        let path = AttributePath(vec![PathStep::Tag(0x0042_0011)]);

        let source = match idx.bulk(&path) {
            Some(b) if crate::dicom::scan::is_byte_addressable(&idx.transfer_syntax) => {
                let len = doc_len.filter(|&l| l <= b.length).unwrap_or(b.length);
                Source::Object {
                    key: idx.file_key(),
                    start: b.offset,
                    end: b.offset + len,
                    detect_ts: false,
                }
            }
            _ => {
                let all = self.bulk_value_whole(ctx, &idx.file_key(), &path).await?;
                let len = doc_len
                    .filter(|&l| l <= all.len() as u64)
                    .unwrap_or(all.len() as u64);
                Source::Bytes(all.slice(..len as usize))
            }
        };
        Ok(Part {
            content_type: media.as_str().to_owned(),
            location,
            entry: String::new(),
            source,
        })
    }
}
