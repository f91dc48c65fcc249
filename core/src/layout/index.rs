//! Indexing an instance at import: a Part-10 file parsed once into its [`InstanceIndex`] (frame
//! and bulk data locations, pixel attributes, its DICOM JSON), and the derived series and study
//! metadata objects built from indexes.

use super::{
    BulkEntry, FrameIndex, InstanceIndex, LayoutRecord, PixelInfo, StoredFile, INDEX_FORMAT,
    LAYOUT_VERSION,
};
use crate::dicom::json::{self};
use crate::dicom::scan::{self, PixelLocation};
use crate::dicom::uid::{AttributePath, Uid};
use crate::media::ts;
use dicom_core::value::Value;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::io::Write;

/// An instance ready to be stored.
#[derive(Debug)]
pub struct Prepared {
    /// Study Instance UID.
    pub study: Uid,
    /// Series Instance UID.
    pub series: Uid,
    /// SOP Instance UID.
    pub sop: Uid,
    /// The index.
    pub index: InstanceIndex,
    /// What was kept only as a best effort (text that does not decode in its character set,
    /// written with U+FFFD for the bytes that do not): for the import's report.
    pub warnings: Vec<String>,
}

/// True for the MPEG-2, H.264 and HEVC transfer syntaxes.
pub fn is_video(ts_uid: &str) -> bool {
    ts::MPEG_FAMILY.contains(&ts_uid) || ts::MP4_FAMILY.contains(&ts_uid)
}

/// Hashes a file (SHA-256, lower-case hex).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn required_uid(
    obj: &InMemDicomObject,
    tag: dicom_core::Tag,
    name: &str,
) -> std::result::Result<Uid, String> {
    let v = obj
        .get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("no {name}: it cannot be addressed by WADO-RS"))?;
    Uid::parse(&v).map_err(|_| format!("{name} {v:?} is not a valid UID"))
}

fn int_attr(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<i64> {
    let e = obj.get(tag)?;
    e.to_int::<i64>()
        .ok()
        .or_else(|| e.to_str().ok()?.trim().parse().ok())
}

/// The most bytes one frame may take decoded (Rows × Columns × Samples per Pixel × Bits
/// Allocated / 8): every decoder allocates about that much, so a file claiming more is refused
/// at import rather than taking a server's memory at the first frame request.
pub const MAX_FRAME_BYTES: u64 = 1 << 30;

/// An image attribute (an integer) within `range`, or `default` when absent. Out of range is a
/// reason to refuse the file: a value cut to fit (65,536 rows as 0) would describe another image.
fn image_attr(
    obj: &InMemDicomObject,
    tag: dicom_core::Tag,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
    default: Option<i64>,
) -> std::result::Result<i64, String> {
    match (int_attr(obj, tag), default) {
        (Some(v), _) if range.contains(&v) => Ok(v),
        (Some(v), _) => Err(format!(
            "{name} is {v}, outside {}..={}",
            range.start(),
            range.end()
        )),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(format!("image without {name}")),
    }
}

/// The image pixel attributes (PS3.3 C.7.6.3), checked so that everything derived from them
/// fits: each attribute in its range, one frame at most [`MAX_FRAME_BYTES`], native pixel data
/// long enough for every frame it claims (in checked arithmetic: Rows × Columns × Samples ×
/// Bits × Frames can exceed 64 bits), encapsulated pixel data with a fragment for every frame
/// (PS3.5 §A.4: a frame is one or more fragments).
fn pixel_info(
    obj: &InMemDicomObject,
    elem: &dicom_object::mem::InMemElement,
    ts_uid: &str,
    location: Option<&PixelLocation>,
) -> std::result::Result<PixelInfo, String> {
    let bits_allocated = image_attr(obj, tags::BITS_ALLOCATED, "Bits Allocated", 1..=64, None)?;
    if bits_allocated != 1 && bits_allocated % 8 != 0 {
        return Err(format!(
            "Bits Allocated is {bits_allocated}: 1 or a multiple of 8 (PS3.5 §8.1.1)"
        ));
    }
    let frames = image_attr(
        obj,
        tags::NUMBER_OF_FRAMES,
        "Number of Frames",
        0..=i64::from(u32::MAX),
        Some(1),
    )?
    .max(1);
    let info = PixelInfo {
        rows: image_attr(obj, tags::ROWS, "Rows", 1..=65535, None)? as u16,
        columns: image_attr(obj, tags::COLUMNS, "Columns", 1..=65535, None)? as u16,
        samples_per_pixel: image_attr(
            obj,
            tags::SAMPLES_PER_PIXEL,
            "Samples per Pixel",
            1..=4,
            Some(1),
        )? as u16,
        bits_allocated: bits_allocated as u16,
        bits_stored: image_attr(
            obj,
            tags::BITS_STORED,
            "Bits Stored",
            1..=bits_allocated,
            Some(bits_allocated),
        )? as u16,
        pixel_representation: image_attr(
            obj,
            tags::PIXEL_REPRESENTATION,
            "Pixel Representation",
            0..=1,
            Some(0),
        )? as u16,
        photometric_interpretation: obj
            .get(tags::PHOTOMETRIC_INTERPRETATION)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        planar_configuration: image_attr(
            obj,
            tags::PLANAR_CONFIGURATION,
            "Planar Configuration",
            0..=1,
            Some(0),
        )? as u16,
        number_of_frames: frames as u32,
    };
    let frame_bytes = info.frame_bits().div_ceil(8);
    if frame_bytes > MAX_FRAME_BYTES {
        return Err(format!(
            "one {}x{}x{} frame at {} bits is {frame_bytes} bytes decoded, more than the {MAX_FRAME_BYTES} this server decodes",
            info.rows, info.columns, info.samples_per_pixel, info.bits_allocated
        ));
    }
    if matches!(elem.value(), Value::Primitive(_)) && ts::is_native(ts_uid) {
        // Native pixel data must hold every frame it claims: a truncated value is a corrupt file.
        let need = info
            .stored_frame_bits()
            .checked_mul(u64::from(info.number_of_frames))
            .map(|bits| bits.div_ceil(8));
        let have = u64::from(elem.header().len.get().unwrap_or(0));
        if need.is_none_or(|n| have < n) {
            return Err(format!(
                "Pixel Data holds {have} bytes but {} frame(s) of {}x{}x{} at {} bits need {}",
                info.number_of_frames,
                info.rows,
                info.columns,
                info.samples_per_pixel,
                info.bits_allocated,
                need.map_or_else(|| "more than 2^64 bits".to_owned(), |n| n.to_string())
            ));
        }
    }
    if let Some(PixelLocation::Encapsulated { fragments, .. }) = location {
        if !is_video(ts_uid) && fragments.len() < info.number_of_frames as usize {
            return Err(format!(
                "Number of Frames is {} but the encapsulated Pixel Data has {} fragment(s): every frame needs one (PS3.5 §A.4)",
                info.number_of_frames,
                fragments.len()
            ));
        }
    }
    Ok(info)
}

/// The most bytes a Deflated file may inflate to (the import's own limit may be lower).
pub const MAX_INFLATED: u64 = 4 << 30;

/// Parses a Part-10 file and derives its index. Errors are reasons for rejecting the file.
pub fn prepare(bytes: &[u8], layout: &LayoutRecord) -> std::result::Result<Prepared, String> {
    let scan = scan::scan(bytes, layout.inline_max).map_err(|e| e.to_string())?;
    let ts_uid = scan.meta.transfer_syntax.clone();
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    if dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(&ts_uid)
        .is_none()
    {
        return Err(format!("unknown transfer syntax {ts_uid}"));
    }
    // Never inflated past what an instance may be (a few kilobytes can hold gigabytes).
    let inflated = scan::inflated_len(bytes, MAX_INFLATED).map_err(|e| e.to_string())?;
    let mut file = dicom_object::OpenFileOptions::new()
        .from_reader(bytes)
        .map_err(|e| format!("cannot parse: {e}"))?;
    // UN elements of known tags read with their dictionary VR (PS3.5 §6.2.2), before anything
    // is taken from the data set: validation, the index and the metadata see the real values.
    wado_codec::dataset::dictionary_vrs(&mut file);
    let meta_sop = file
        .meta()
        .media_storage_sop_instance_uid()
        .trim_end_matches('\0')
        .to_owned();
    let obj: &InMemDicomObject = &file;
    let study = required_uid(obj, tags::STUDY_INSTANCE_UID, "Study Instance UID")?;
    let series = required_uid(obj, tags::SERIES_INSTANCE_UID, "Series Instance UID")?;
    let sop = required_uid(obj, tags::SOP_INSTANCE_UID, "SOP Instance UID")?;
    // The File Meta's Media Storage SOP Instance UID sometimes differs from the data set's
    // (seen in vendor files): the data set is authoritative, as in dcm4chee and Orthanc.
    let _ = meta_sop;
    let sop_class = obj
        .get(tags::SOP_CLASS_UID)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_owned())
        .unwrap_or_default();
    let pixel_elem = obj.get(tags::PIXEL_DATA);
    let pixel = match pixel_elem {
        Some(e) => Some(pixel_info(obj, e, &ts_uid, scan.pixel.as_ref())?),
        None => None,
    };
    let frames = match (&pixel, &scan.pixel) {
        (Some(info), Some(loc)) => Some(frame_index(obj, info, loc, &ts_uid)),
        (Some(_), None) => Some(FrameIndex::Unindexed),
        _ => None,
    };
    let opts = layout.json_options(&study, &series, &sop);
    let metadata_text = json::dataset_to_string(obj, &opts);
    let warnings = undecodable_text(&metadata_text, obj);
    let metadata =
        RawValue::from_string(metadata_text).map_err(|e| format!("metadata JSON: {e}"))?;
    let bulk = scan
        .bulk
        .iter()
        .map(|b| BulkEntry {
            path: AttributePath(b.path.clone()).to_string(),
            vr: b.vr.to_string().to_owned(),
            offset: b.offset,
            length: b.length,
        })
        .collect();
    let index = InstanceIndex {
        format: INDEX_FORMAT.into(),
        version: LAYOUT_VERSION,
        study: study.clone(),
        series: series.clone(),
        sop_instance: sop.clone(),
        sop_class,
        transfer_syntax: ts_uid,
        instance_number: int_attr(obj, tags::INSTANCE_NUMBER),
        source: StoredFile {
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        },
        // Named by the writer (`crate::ingest`).
        gen: String::new(),
        stored_at: 0,
        replaces: None,
        inflated,
        pixel,
        frames,
        bulk,
        metadata,
    };
    Ok(Prepared {
        study,
        series,
        sop,
        index,
        warnings,
    })
}

/// The attributes whose text did not decode in the data set's Specific Character Set: their
/// JSON strings hold U+FFFD (the decoders' replacement for bytes they cannot read; a file
/// whose UTF-8 text holds that character itself is reported too, harmlessly).
fn undecodable_text(metadata: &str, obj: &InMemDicomObject) -> Vec<String> {
    if !metadata.contains('\u{fffd}') {
        return Vec::new();
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(metadata) else {
        return Vec::new();
    };
    let charset = obj
        .element(dicom_dictionary_std::tags::SPECIFIC_CHARACTER_SET)
        .ok()
        .and_then(|e| e.to_str().ok().map(|s| s.into_owned()))
        .unwrap_or_default();
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, path: &str, charset: &str, out: &mut Vec<String>) {
        let Some(map) = v.as_object() else { return };
        for (tag, attr) in map {
            let here = if path.is_empty() {
                format!(
                    "({},{})",
                    &tag[..4.min(tag.len())],
                    &tag[4.min(tag.len())..]
                )
            } else {
                format!(
                    "{path}/({},{})",
                    &tag[..4.min(tag.len())],
                    &tag[4.min(tag.len())..]
                )
            };
            for value in attr["Value"].as_array().into_iter().flatten() {
                let text = match value {
                    serde_json::Value::String(s) => s.contains('\u{fffd}'),
                    serde_json::Value::Object(pn) if attr["vr"] == "PN" => pn
                        .values()
                        .any(|c| c.as_str().is_some_and(|s| s.contains('\u{fffd}'))),
                    _ => false,
                };
                if text {
                    out.push(format!(
                        "{here}: text that does not decode in the character set {charset:?}, kept with U+FFFD for the bytes that do not"
                    ));
                    break;
                }
                if attr["vr"] == "SQ" {
                    walk(value, &here, charset, out);
                }
            }
        }
    }
    walk(&v, "", charset.trim(), &mut out);
    out
}

/// Maps fragments to frames (PS3.5 §A.4): the Extended Offset Table, else the Basic Offset
/// Table, else one frame for a single-frame image, else one fragment per frame, else frames
/// starting where a fragment starts with a codestream marker (JPEG SOI, J2K SOC).
fn frame_index(
    obj: &InMemDicomObject,
    info: &PixelInfo,
    loc: &PixelLocation,
    ts_uid: &str,
) -> FrameIndex {
    match loc {
        PixelLocation::Native { offset, length } => FrameIndex::Native {
            offset: *offset,
            length: *length,
        },
        PixelLocation::Encapsulated {
            offset_table,
            fragments,
        } => {
            let n = info.number_of_frames as usize;
            if fragments.is_empty() {
                return FrameIndex::Unindexed;
            }
            if is_video(ts_uid) {
                // A video is one stream: its fragments are not frames (PS3.5 §8.2.5).
                return FrameIndex::Encapsulated {
                    frames: vec![fragments.iter().map(|f| [f.offset, f.length]).collect()],
                };
            }
            let base = fragments[0].item_offset;
            let groups: Option<Vec<Vec<usize>>> = if let Some(eot) = obj
                .get(tags::EXTENDED_OFFSET_TABLE)
                .and_then(|e| e.to_bytes().ok())
                .map(|b| {
                    b.chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                        .collect::<Vec<_>>()
                })
                .filter(|t| t.len() == n)
            {
                group_by_offsets(fragments, base, &eot)
            } else if offset_table.len() == n && n > 0 {
                group_by_offsets(fragments, base, offset_table)
            } else if n == 1 {
                Some(vec![(0..fragments.len()).collect()])
            } else if fragments.len() == n {
                Some((0..n).map(|i| vec![i]).collect())
            } else {
                None
            };
            match groups {
                Some(g) => FrameIndex::Encapsulated {
                    frames: g
                        .into_iter()
                        .map(|ix| {
                            ix.into_iter()
                                .map(|i| [fragments[i].offset, fragments[i].length])
                                .collect()
                        })
                        .collect(),
                },
                None => FrameIndex::Unindexed,
            }
        }
    }
}

fn group_by_offsets(
    fragments: &[scan::Fragment],
    base: u64,
    offsets: &[u64],
) -> Option<Vec<Vec<usize>>> {
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); offsets.len()];
    for (i, f) in fragments.iter().enumerate() {
        let rel = f.item_offset - base;
        let frame = offsets.iter().rposition(|&o| o <= rel)?;
        groups[frame].push(i);
    }
    if groups.iter().any(Vec::is_empty) {
        return None;
    }
    Some(groups)
}

/// Sorts instances by Instance Number (absent last), then SOP Instance UID.
pub fn sort_instances(indexes: &mut [&InstanceIndex]) {
    indexes.sort_by(|a, b| {
        (
            a.instance_number.is_none(),
            a.instance_number,
            &a.sop_instance,
        )
            .cmp(&(
                b.instance_number.is_none(),
                b.instance_number,
                &b.sop_instance,
            ))
    });
}

/// Builds a gzip-compressed DICOM JSON array from instance indexes, ordered by
/// [`sort_instances`].
pub fn build_metadata_gz(indexes: &mut [&InstanceIndex]) -> Vec<u8> {
    sort_instances(indexes);
    write_metadata_gz(indexes)
}

/// Writes a gzip-compressed DICOM JSON array of the indexes' metadata, in the given order.
pub fn write_metadata_gz(indexes: &[&InstanceIndex]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    let _ = enc.write_all(b"[");
    for (i, idx) in indexes.iter().enumerate() {
        if i > 0 {
            let _ = enc.write_all(b",");
        }
        let _ = enc.write_all(idx.metadata.get().as_bytes());
    }
    let _ = enc.write_all(b"]");
    enc.finish().unwrap_or_default()
}
