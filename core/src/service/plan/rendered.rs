//! Rendered and thumbnail resources (PS3.18 §10.4.1.1.3, Table 10.4.1-3; query parameters
//! §8.3.5.1): frames made into JPEG, PNG or GIF images by [`crate::render`], one part per
//! frame; a video instance rendered is its video, as stored.
//!
//! - `.../frames/{list}/rendered`: those frames; `.../instances/{i}/rendered`: every frame of
//!   the instance; series and study: every frame of every image instance, in Instance Number
//!   order. Asked as `image/jpeg` (png, gif): the first of them, the one image an `<img>`
//!   shows; asked as `multipart/related; type=image/...`: every one, a part each.
//! - `/thumbnail` at any level: one image, at most [`crate::render::THUMBNAIL_SIZE`] pixels a
//!   side unless a viewport is named: the first frame listed or the first frame of the
//!   instance; for a series or study, the middle image instance (in Instance Number order)
//!   of the first series holding images — the slice a radiologist would pick, where the
//!   first is often a scout or the edge of a volume.

use super::{frame_count, list, Ctx, Plan};
use crate::error::{Error, Result};
use crate::layout::{self, InstanceIndex};
use crate::media::{ts, MediaType};
use crate::negotiate::{parse_accept, Category, Negotiation};
use crate::render::{self, Display, Format, Palette, RenderJob};
use crate::route::Target;
use crate::service::body::{Part, Source};
use crate::service::http;
use crate::service::message::Outcome;
use crate::service::Service;
use ::http::header;
use std::sync::Arc;

/// JPEG quality when the request names none (libjpeg's scale): rendered images for reading,
/// thumbnails for recognising.
const RENDERED_QUALITY: u8 = 90;
const THUMBNAIL_QUALITY: u8 = 80;

/// The rendered media type from `Accept` (or the `accept` query parameter): the first of
/// `image/jpeg`, `image/png`, `image/gif` the client takes, by q-value then order; `*/*`,
/// `image/*` and no Accept at all mean `image/jpeg` (PS3.18 §8.7.4: the default). Also
/// whether the client asked for `multipart/related`.
fn rendered_format(accept: Option<&str>, query: Option<&str>) -> Result<(Format, bool)> {
    let value = query
        .filter(|q| !q.trim().is_empty())
        .or(accept)
        .unwrap_or("*/*");
    let mut ranges = parse_accept(value);
    // Highest q first; equal q keep their order.
    ranges.sort_by_key(|r| std::cmp::Reverse(r.q));
    for r in ranges.iter().filter(|r| r.q > 0) {
        let (essence, multipart) = if r.essence == "multipart/related" {
            let Some(t) = r.params.iter().find(|(n, _)| n == "type") else {
                return Ok((Format::Jpeg, true));
            };
            (
                t.1.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase(),
                true,
            )
        } else {
            (r.essence.clone(), false)
        };
        match essence.as_str() {
            "*/*" | "image/*" => return Ok((Format::Jpeg, multipart)),
            e => {
                if let Some(f) = Format::from_media_type(e) {
                    return Ok((f, multipart));
                }
            }
        }
    }
    Err(Error::NotAcceptable(format!(
        "rendered images are image/jpeg (the default), image/png or image/gif; Accept was {value:?}"
    )))
}

impl Service {
    /// Retrieve Rendered, and thumbnails (see the module doc).
    pub(crate) async fn rendered(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        frames: Option<&[u32]>,
        thumbnail: bool,
    ) -> Result<Plan> {
        let (_, indexes) = self.present_instances(ctx, target).await?;
        if let (Target::Instance { .. }, None, false) = (target, frames, thumbnail) {
            if let Some(plan) = self.rendered_video(ctx, target, &indexes).await? {
                return Ok(plan);
            }
        }
        let req = ctx.req;
        let (format, multipart) = rendered_format(
            http::header_str(req.headers, header::ACCEPT).as_deref(),
            req.query
                .and_then(|q| http::query_param(q, "accept"))
                .as_deref(),
        )?;
        let quality = if thumbnail {
            THUMBNAIL_QUALITY
        } else {
            RENDERED_QUALITY
        };
        let params = render::parse_params(
            |name| req.query.and_then(|q| http::query_param(q, name)),
            format,
            quality,
        )
        .map_err(Error::BadRequest)?;

        // The image instances, in Instance Number order (then SOP Instance UID).
        let mut images: Vec<&InstanceIndex> = indexes
            .iter()
            .map(|i| &**i)
            .filter(|i| i.pixel.is_some() && i.frames.is_some())
            .filter(|i| !layout::is_video(&i.transfer_syntax))
            .collect();
        images.sort_by(|a, b| {
            (&a.series, a.instance_number, &a.sop_instance).cmp(&(
                &b.series,
                b.instance_number,
                &b.sop_instance,
            ))
        });
        let undecodable: Vec<String> = images
            .iter()
            .filter(|i| {
                !(ts::is_native(&i.transfer_syntax) || wado_codec::can_decode(&i.transfer_syntax))
            })
            .map(|i| format!("{} ({})", i.sop_instance, i.transfer_syntax))
            .collect();
        images.retain(|i| {
            ts::is_native(&i.transfer_syntax) || wado_codec::can_decode(&i.transfer_syntax)
        });
        if images.is_empty() {
            return Err(Error::NotAcceptable(format!(
                "{} has no image this server can render{}",
                target.path(),
                if undecodable.is_empty() {
                    String::new()
                } else {
                    format!(" (cannot decode {})", undecodable.join(", "))
                }
            )));
        }

        let mut warning = None;
        let picks: Vec<(&InstanceIndex, Vec<u32>)> = if let Some(list_asked) = frames {
            let idx = images[0];
            let n = frame_count(idx);
            let (valid, invalid): (Vec<u32>, Vec<u32>) = list_asked.iter().partition(|&&f| f <= n);
            if valid.is_empty() {
                return Err(Error::NotFound(format!(
                    "frame(s) {} beyond Number of Frames ({n})",
                    list(&invalid)
                )));
            }
            if !invalid.is_empty() {
                warning = Some(format!(
                    "frame(s) {} beyond Number of Frames ({n}) left out",
                    list(&invalid)
                ));
            }
            let chosen = if thumbnail {
                valid[..1].to_vec()
            } else {
                valid
            };
            vec![(idx, chosen)]
        } else if thumbnail {
            let series = &images[0].series;
            let in_series: Vec<&InstanceIndex> = images
                .iter()
                .copied()
                .filter(|i| &i.series == series)
                .collect();
            vec![(in_series[in_series.len() / 2], vec![1])]
        } else {
            images
                .iter()
                .map(|&i| (i, (1..=frame_count(i)).collect()))
                .collect()
        };

        let mut parts = Vec::new();
        let mut validator = format!("rendered|{thumbnail}|{params:?}|{}", ctx.root);
        for (idx, frame_list) in picks {
            let Some(info) = &idx.pixel else { continue };
            let unrenderable = |e: String| {
                Error::NotAcceptable(format!("cannot render {}: {e}", idx.sop_instance))
            };
            let meta = serde_json::from_str::<serde_json::Value>(idx.metadata.get())
                .map_err(|e| unrenderable(e.to_string()))?;
            let display = Display::from_json(&meta).map_err(unrenderable)?;
            let palette = match display.palette_descriptors {
                Some(d) => Some(self.palette(ctx, idx, &meta, d).await?),
                None => None,
            };
            let stored = idx.transfer_syntax.as_str();
            let mut job = RenderJob {
                info: info.clone(),
                samples: render::Samples::of(stored, info),
                display,
                palette,
                params: params.clone(),
                thumbnail,
                reduce_from: None,
            };
            // A JPEG 2000 or HTJ2K frame drawn smaller than it is: its codestream goes to the
            // job, which decodes only the resolution levels the output needs.
            let reducible = [
                ts::JPEG_2000_LOSSLESS,
                ts::JPEG_2000,
                ts::HTJ2K_LOSSLESS,
                ts::HTJ2K_LOSSLESS_RPCL,
                ts::HTJ2K,
            ]
            .contains(&stored)
                && matches!(idx.frames, Some(layout::FrameIndex::Encapsulated { .. }))
                && job
                    .needed_side()
                    .is_some_and(|side| side < u32::from(info.columns.max(info.rows)));
            if reducible && wado_codec::can_decode(stored) {
                job.reduce_from = Some(stored.to_owned());
            }
            let to = if job.reduce_from.is_some() {
                stored
            } else {
                ts::EXPLICIT_VR_LE
            };
            // What rendering one frame holds, the decoding before it included: past the whole
            // conversion memory it never runs (a crafted header can declare any size).
            let decoding = if job.reduce_from.is_some() || ts::is_native(stored) {
                0
            } else {
                wado_codec::conversion_work_bytes(info, stored, ts::EXPLICIT_VR_LE)
            };
            let frame = info.stored_frame_bits().div_ceil(8);
            let max = self.config.conversion_memory;
            if max > 0 && job.holds(frame).saturating_add(decoding) > max {
                return Err(unrenderable(format!(
                    "a {}×{} frame needs more memory to render than this server's conversion memory ({max} bytes)",
                    info.columns, info.rows
                )));
            }
            let job = Arc::new(job);
            let instance_uri = format!(
                "{}/studies/{}/series/{}/instances/{}",
                ctx.root, idx.study, idx.series, idx.sop_instance
            );
            let sources = self
                .frame_parts(ctx, idx, &frame_list, to, "", &instance_uri)
                .await?;
            validator.push_str(&format!("|{}:{frame_list:?}", idx.source.sha256));
            for (f, frame) in frame_list.iter().zip(sources) {
                parts.push(Part {
                    content_type: format.media_type().to_owned(),
                    location: format!(
                        "{instance_uri}/frames/{f}/{}",
                        if thumbnail { "thumbnail" } else { "rendered" }
                    ),
                    entry: String::new(),
                    source: Source::Render {
                        frame: Box::new(frame.source),
                        job: job.clone(),
                    },
                });
            }
        }
        let outcome = Outcome {
            media_type: Some(format.media_type().into()),
            converted: true,
            transfer_syntaxes: Vec::new(),
            warning,
            error: None,
            validator: Some(validator),
            resource: None,
            notices: Vec::new(),
            ..Outcome::default()
        };
        if multipart {
            Ok(Plan::multipart(format.media_type(), parts, outcome))
        } else {
            // One image was asked for (image/png, image/jpeg: what an <img> asks): the first
            // frame, in the type accepted, as Orthanc answers; all of them take multipart.
            let mut outcome = outcome;
            if parts.len() > 1 {
                outcome.notices.push(format!(
                    "the first of {} frames rendered; ask multipart/related; type=\"{}\" for each",
                    parts.len(),
                    format.media_type()
                ));
            }
            Ok(Plan::single(parts.remove(0), outcome))
        }
    }

    /// A video instance rendered: its video (`video/mp4` for H.264 and HEVC, `video/mpeg` for
    /// MPEG-2), the stream as stored, whatever was accepted: what OHIF's video viewport asks.
    /// `None` when the instance is not a video.
    async fn rendered_video(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        indexes: &[Arc<InstanceIndex>],
    ) -> Result<Option<Plan>> {
        let ts = indexes
            .first()
            .map(|i| i.transfer_syntax.as_str())
            .unwrap_or_default();
        let media = if ts::MP4_FAMILY.contains(&ts) {
            MediaType::Mp4
        } else if ts::MPEG_FAMILY.contains(&ts) {
            MediaType::Mpeg
        } else {
            return Ok(None);
        };
        let accept = format!("multipart/related; type=\"{}\"", media.as_str());
        let neg = Negotiation::new(Some(&accept), None, Category::Instances { instance: true })?;
        let mut plan = self.instances_other(ctx, target, &neg).await?;
        // One instance, one stream: the response is the video itself, not a multipart body.
        match plan.parts.pop() {
            Some(part) if plan.parts.is_empty() => Ok(Some(Plan::single(part, plan.outcome))),
            _ => Err(Error::NotAcceptable(format!(
                "{} has no single video stream to render",
                target.path()
            ))),
        }
    }

    /// The Palette Color Lookup Tables of an instance (PS3.3 C.7.6.3.1.5): each LUT Data
    /// attribute from its InlineBinary, or read where its bulk data lies in the file.
    async fn palette(
        &self,
        ctx: &Ctx<'_>,
        idx: &InstanceIndex,
        meta: &serde_json::Value,
        descriptors: [(u32, i64, u16); 3],
    ) -> Result<Palette> {
        use base64::Engine as _;
        let mut lut: [Vec<u16>; 3] = Default::default();
        for (c, tag) in ["00281201", "00281202", "00281203"].into_iter().enumerate() {
            let (entries, _, _) = descriptors[c];
            let inline = meta
                .get(tag)
                .and_then(|a| a.get("InlineBinary"))
                .and_then(|b| b.as_str())
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
            let bytes = match inline {
                Some(b) => b,
                None => {
                    let Some(entry) = idx.bulk.iter().find(|b| b.path == tag) else {
                        return Err(Error::NotAcceptable(format!(
                            "cannot render {}: a palette colour image without its {tag} lookup table",
                            idx.sop_instance
                        )));
                    };
                    let end = entry.offset + entry.length.min(2 * 65536);
                    crate::service::body::read_range(
                        &*ctx.part.store,
                        &idx.file_key(),
                        entry.offset,
                        end,
                    )
                    .await?
                    .to_vec()
                }
            };
            lut[c] = render::palette_entries(&bytes, entries);
        }
        let (_, first, bits) = descriptors[0];
        Ok(Palette { first, bits, lut })
    }
}
