//! Bulk data and pixel data (PS3.18 §10.4.1.1.5): one ranged read of the value, video as stored,
//! documents in their own MIME type.

use super::instances::{document_info, video_fragments};
use super::{frame_count, Ctx, Plan};
use crate::error::{Error, Result};
use crate::layout::{self, InstanceIndex};
use crate::media::{ts, MediaType};
use crate::negotiate::{choose_ts, Category, Negotiation};
use crate::route::{AttributePath, PathStep, Target};
use crate::service::body::{Part, Source};
use crate::service::message::Outcome;
use crate::service::Service;
use bytes::Bytes;

impl Service {
    pub(crate) async fn bulkdata(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        path: &AttributePath,
        neg: &Negotiation,
    ) -> Result<Plan> {
        let idx = self.instance_index(ctx, target).await?;
        let is_pixel = path.0 == [PathStep::Tag(0x7FE0_0010)];
        let uri = format!("{}/{}/bulkdata/{path}", ctx.root, target.path());
        if is_pixel && layout::is_video(&idx.transfer_syntax) {
            return video(&idx, neg, uri);
        }
        if is_pixel && !ts::is_native(&idx.transfer_syntax) {
            // Encapsulated pixel data: one part per frame, in the stored type (PS3.18 §8.7.3.3.2:
            // "Compressed multi-frame image pixel data is encoded as individual frames").
            let n = frame_count(&idx).max(1);
            let frames: Vec<u32> = (1..=n).collect();
            return self.frames(ctx, target, &frames, neg).await.map(|mut r| {
                r.outcome.warning = None;
                r
            });
        }
        // The Encapsulated Document in its own MIME type (cf. dcm4chee-arc-light#3089).
        if path.0 == [PathStep::Tag(0x0042_0011)] {
            let (mime, doc_len) = document_info(&idx);
            let doc_choice = neg
                .media_choices()
                .into_iter()
                .find(|(m, _)| *m == MediaType::OctetStream || mime.as_deref() == Some(m.as_str()));
            if let Some((media, multipart)) =
                doc_choice.filter(|(m, _)| *m != MediaType::OctetStream)
            {
                let validator = format!("document|{}|{media}", idx.source.sha256);
                let part = self.document_part(ctx, &idx, media, doc_len, uri).await?;
                let outcome = Outcome {
                    media_type: Some(media.as_str().into()),
                    validator: Some(validator),
                    ..Outcome::default()
                };
                return Ok(Plan::one(multipart, media.as_str(), part, outcome));
            }
        }
        let multipart = neg
            .media_choices()
            .into_iter()
            .find(|(m, _)| *m == MediaType::OctetStream)
            .map(|(_, mp)| mp)
            .ok_or_else(|| {
                Error::NotAcceptable(crate::negotiate::available_text(Category::BulkData))
            })?;
        let key = idx.file_key();
        let source = match idx.bulk(path) {
            Some(b) if crate::dicom::scan::is_byte_addressable(&idx.transfer_syntax) => {
                Source::Object {
                    key,
                    start: b.offset,
                    end: b.offset + b.length,
                    detect_ts: false,
                }
            }
            _ => Source::Bytes(self.bulk_value_whole(ctx, &key, path).await?),
        };
        let part = Part {
            content_type: format!(
                "application/octet-stream; transfer-syntax={}",
                ts::EXPLICIT_VR_LE
            ),
            location: uri,
            entry: String::new(),
            source,
        };
        let outcome = Outcome {
            media_type: Some("application/octet-stream".into()),
            transfer_syntaxes: vec![ts::EXPLICIT_VR_LE.into()],
            validator: Some(format!("bulk|{}|{path}|{}", idx.source.sha256, ctx.root)),
            ..Outcome::default()
        };
        Ok(Plan::one(
            multipart,
            "application/octet-stream",
            part,
            outcome,
        ))
    }

    /// A bulk value read by parsing the whole file (Big Endian, Deflated, or a value the
    /// index does not list), as little-endian bytes.
    pub(crate) async fn bulk_value_whole(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        path: &AttributePath,
    ) -> Result<Bytes> {
        let bytes = ctx
            .part
            .store
            .get(key)
            .await?
            .ok_or_else(|| Error::NotFound(key.to_owned()))?;
        let obj = dicom_object::OpenFileOptions::new()
            .from_reader(&bytes[..])
            .map_err(|e| Error::corrupt(key, e))?;
        let not_found = || Error::NotFound(format!("no bulk data at {path}"));
        let mut current: &dicom_object::InMemDicomObject = &obj;
        let steps = &path.0;
        let mut i = 0;
        loop {
            let PathStep::Tag(t) = steps[i] else {
                return Err(not_found());
            };
            let tag = dicom_core::Tag((t >> 16) as u16, t as u16);
            let elem = current.get(tag).ok_or_else(not_found)?;
            if i + 1 == steps.len() {
                match elem.value() {
                    dicom_core::value::Value::Primitive(p)
                        if crate::dicom::json::is_binary_vr(elem.vr())
                            || crate::dicom::json::is_pixel_data_tag(tag) =>
                    {
                        return Ok(Bytes::copy_from_slice(&p.to_bytes()));
                    }
                    // Encapsulated data below the top level (an icon): its fragments
                    // concatenated, as PS3.18 §8.7.3.3.2 sends compressed bulk data.
                    dicom_core::value::Value::PixelSequence(seq) => {
                        return Ok(Bytes::from(seq.fragments().concat()));
                    }
                    _ => return Err(not_found()),
                }
            }
            let PathStep::Item(n) = steps[i + 1] else {
                return Err(not_found());
            };
            let items = elem.items().ok_or_else(not_found)?;
            current = items.get(n as usize - 1).ok_or_else(not_found)?;
            i += 2;
        }
    }
}

/// A video's pixel data: the stream as stored, in one part (video is never transcoded).
fn video(idx: &InstanceIndex, neg: &Negotiation, uri: String) -> Result<Plan> {
    let stored = idx.transfer_syntax.as_str();
    let mut pick = None;
    for (media, multipart) in neg.media_choices() {
        if let Some(c) = choose_ts(media, &neg.wanted(media, multipart), stored, |_, _| false) {
            pick = Some((media, multipart, c));
            break;
        }
    }
    let (media, multipart, chosen) = pick.ok_or_else(|| {
        Error::NotAcceptable(format!(
            "this video ({stored}) is available as {} or as application/octet-stream with transfer-syntax=*",
            MediaType::for_stored_transfer_syntax(stored).map_or("stored", MediaType::as_str)
        ))
    })?;
    let fragments = video_fragments(idx)?;
    let part = Part {
        content_type: format!("{}; transfer-syntax={}", media.as_str(), chosen.ts),
        location: uri,
        entry: String::new(),
        source: Source::Fragments {
            key: idx.file_key(),
            fragments,
        },
    };
    let validator = format!("video|{}|{media}|{}", idx.sop_instance, idx.source.sha256);
    let outcome = Outcome {
        media_type: Some(media.as_str().into()),
        transfer_syntaxes: vec![chosen.ts],
        validator: Some(validator),
        ..Outcome::default()
    };
    Ok(Plan::one(multipart, media.as_str(), part, outcome))
}
