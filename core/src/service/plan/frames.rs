//! Frames (PS3.18 §10.4.1.1.4): one ranged read per frame, only that frame decoded or encoded.

use super::{can_give_frame, frame_count, frame_fits, list, Ctx, Plan};
use crate::error::{Error, Result};
use crate::layout::{self, InstanceIndex};
use crate::media::ts;
use crate::negotiate::{choose_ts, Negotiation};
use crate::route::Target;
use crate::service::body::{Fetch, Part, Source};
use crate::service::message::Outcome;
use crate::service::Service;
use bytes::Bytes;

impl Service {
    pub(crate) async fn frames(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        frames: &[u32],
        neg: &Negotiation,
    ) -> Result<Plan> {
        let idx = self.instance_index(ctx, target).await?;
        let (Some(info), Some(_)) = (&idx.pixel, &idx.frames) else {
            return Err(Error::BadRequest(format!(
                "instance {} has no pixel data: it has no frames",
                idx.sop_instance
            )));
        };
        if layout::is_video(&idx.transfer_syntax) {
            return Err(Error::BadRequest(format!(
                "instance {} is a video ({}): its frames cannot be retrieved one by one; retrieve the instance or its pixel data",
                idx.sop_instance, idx.transfer_syntax
            )));
        }
        let n = frame_count(&idx);
        let valid: Vec<u32> = frames.iter().copied().filter(|&f| f <= n).collect();
        let invalid: Vec<u32> = frames.iter().copied().filter(|&f| f > n).collect();
        if valid.is_empty() {
            return Err(Error::NotFound(format!(
                "frame(s) {} beyond Number of Frames ({n})",
                list(&invalid)
            )));
        }
        let stored = idx.transfer_syntax.as_str();
        let single_allowed = valid.len() == 1;
        let mut pick = None;
        for (media, multipart) in neg.media_choices() {
            if !multipart && !single_allowed {
                continue;
            }
            let wanted = neg.wanted(media, multipart);
            let max = self.config.conversion_memory;
            let chosen = choose_ts(media, &wanted, stored, |from, to| {
                can_give_frame(media, info, from, to) && frame_fits(max, info, from, to)
            });
            if let Some(c) = chosen {
                pick = Some((media, multipart, c));
                break;
            }
        }
        let Some((media, multipart, chosen)) = pick else {
            return Err(Error::NotAcceptable(format!(
                "frames of this instance (stored as {stored}) are available as application/octet-stream{} and, with transfer-syntax=*, as stored{}",
                if ts::is_native(stored) { "" } else { " with transfer-syntax=*" },
                if frame_fits(self.config.conversion_memory, info, stored, ts::EXPLICIT_VR_LE) {
                    ""
                } else {
                    " only: decoding one of its frames needs more than this server's conversion memory"
                }
            )));
        };
        let instance_uri = format!("{}/{}", ctx.root, target.path());
        let content_type = format!("{}; transfer-syntax={}", media.as_str(), chosen.ts);
        let mut parts = self
            .frame_parts(ctx, &idx, &valid, &chosen.ts, &content_type, &instance_uri)
            .await?;
        let warning = (!invalid.is_empty()).then(|| {
            format!(
                "frame(s) {} beyond Number of Frames ({n}) left out",
                list(&invalid)
            )
        });
        let validator = format!(
            "frames|{}|{valid:?}|{media}|{}|{}",
            idx.source.sha256, chosen.ts, ctx.root
        );
        let outcome = Outcome {
            media_type: Some(media.as_str().into()),
            converted: !chosen.passthrough,
            transfer_syntaxes: vec![chosen.ts],
            warning,
            error: None,
            validator: Some(validator),
            resource: None,
            notices: Vec::new(),
            ..Outcome::default()
        };
        if multipart {
            Ok(Plan::multipart(media.as_str(), parts, outcome))
        } else {
            Ok(Plan::single(parts.remove(0), outcome))
        }
    }

    /// The parts of the given (valid, 1-based) frames of an instance, each one ranged read
    /// (whole-file reads for Big Endian, Deflated, bit-packed or unindexed pixel data).
    pub(crate) async fn frame_parts(
        &self,
        ctx: &Ctx<'_>,
        idx: &InstanceIndex,
        valid: &[u32],
        to: &str,
        content_type: &str,
        instance_uri: &str,
    ) -> Result<Vec<Part>> {
        let (Some(info), Some(findex)) = (&idx.pixel, &idx.frames) else {
            return Err(Error::BadRequest(format!(
                "instance {} has no pixel data: it has no frames",
                idx.sop_instance
            )));
        };
        let stored = idx.transfer_syntax.as_str();
        let mut parts = Vec::with_capacity(valid.len());
        let whole = if matches!(findex, layout::FrameIndex::Unindexed)
            || (matches!(findex, layout::FrameIndex::Native { .. })
                && info.stored_frame_bits() % 8 != 0)
        {
            Some(self.pixel_bytes_whole(ctx, idx).await?)
        } else {
            None
        };
        for f in valid {
            let k = u64::from(*f - 1);
            let source = match (findex, &whole) {
                (_, Some(all)) => match findex {
                    layout::FrameIndex::Encapsulated { .. } | layout::FrameIndex::Unindexed
                        if !ts::is_native(stored) =>
                    {
                        return Err(Error::corrupt(
                            idx.sop_instance.as_str(),
                            "encapsulated frames could not be located at import",
                        ));
                    }
                    // Cut out (and converted) on the pool, within the conversion memory.
                    _ => Source::Transcode {
                        key: idx.file_key(),
                        fetch: Fetch::Bits {
                            all: all.clone(),
                            start: k * info.stored_frame_bits(),
                            len: info.stored_frame_bits(),
                        },
                        info: info.clone(),
                        from: ts::EXPLICIT_VR_LE.to_owned(),
                        to: to.to_owned(),
                    },
                },
                (layout::FrameIndex::Native { offset, length }, None) => {
                    let fb = info.stored_frame_bits() / 8;
                    let start = offset + k * fb;
                    if start + fb > offset + length {
                        return Err(Error::corrupt(
                            idx.sop_instance.as_str(),
                            "pixel data shorter than its frames",
                        ));
                    }
                    if to == ts::EXPLICIT_VR_LE {
                        Source::Object {
                            key: idx.file_key(),
                            start,
                            end: start + fb,
                            detect_ts: false,
                        }
                    } else {
                        Source::Transcode {
                            key: idx.file_key(),
                            fetch: Fetch::Range(start, start + fb),
                            info: info.clone(),
                            from: stored.to_owned(),
                            to: to.to_owned(),
                        }
                    }
                }
                (layout::FrameIndex::Encapsulated { frames }, None) => {
                    let frags = frames.get(k as usize).cloned().unwrap_or_default();
                    if to == stored {
                        Source::Fragments {
                            key: idx.file_key(),
                            fragments: frags,
                        }
                    } else {
                        Source::Transcode {
                            key: idx.file_key(),
                            fetch: Fetch::Fragments(frags),
                            info: info.clone(),
                            from: stored.to_owned(),
                            to: to.to_owned(),
                        }
                    }
                }
                (layout::FrameIndex::Unindexed, None) => {
                    unreachable!("whole is read for unindexed")
                }
            };
            parts.push(Part {
                content_type: content_type.to_owned(),
                location: format!("{instance_uri}/frames/{f}"),
                entry: String::new(),
                source,
            });
        }
        Ok(parts)
    }

    /// The whole native pixel data of a file that is not byte-addressable (or bit-packed),
    /// as little-endian bytes: parsed on the offload pool, within the conversion memory (the
    /// file, inflated when Deflated, and its pixel data).
    pub(crate) async fn pixel_bytes_whole(
        &self,
        ctx: &Ctx<'_>,
        idx: &InstanceIndex,
    ) -> Result<Bytes> {
        let key = idx.file_key();
        let pixels = idx.pixel.as_ref().map_or(0, |p| {
            p.stored_frame_bits()
                .div_ceil(8)
                .saturating_mul(u64::from(p.number_of_frames.max(1)))
        });
        let _held = self
            .budget
            .reserve(
                idx.parsed_size()
                    .saturating_mul(2)
                    .saturating_add(pixels.saturating_mul(2)),
            )
            .await;
        let bytes = ctx
            .part
            .store
            .get(&key)
            .await?
            .ok_or_else(|| Error::NotFound(key.clone()))?;
        let job: crate::Job = Box::new(move || {
            let obj = dicom_object::OpenFileOptions::new()
                .from_reader(&bytes[..])
                .map_err(|e| Error::corrupt(&key, e))?;
            let e = obj
                .get(dicom_dictionary_std::tags::PIXEL_DATA)
                .ok_or_else(|| Error::corrupt(&key, "no pixel data"))?;
            let v = e.to_bytes().map_err(|e| Error::corrupt(&key, e))?;
            Ok(v.into_owned())
        });
        Ok(Bytes::from(
            crate::service::offload::run(self.config.offload.as_deref(), job).await?,
        ))
    }
}
