//! The storage layout: one contract for every backend (docs/STORAGE-LAYOUT.md is its prose).
//!
//! ```text
//! wado-layout.json                                             the store's layout record
//! studies/{study}/metadata.json.gz                             study metadata (gzip DICOM JSON array)
//! studies/{study}/series/{series}/metadata.json.gz             series metadata (gzip DICOM JSON array)
//! studies/{study}/series/{series}/instances/{sop}.dcm          the Part-10 file exactly as received
//! studies/{study}/series/{series}/instances/{sop}.index.json   its index: frames, bulk data, metadata
//! ```
//!
//! An instance exists when its `.dcm` exists **and** its index names the same size and SHA-256
//! as that file: import writes the index first and the `.dcm` last (each by atomic replace), so
//! an import killed at any point leaves every instance either complete or absent (an index with
//! no or another `.dcm` is ignored and rewritten by the next import).

use crate::error::{Error, Result};
use crate::json::{self, JsonOptions, NumberStyle};
use crate::media::ts;
use crate::route::{AttributePath, Uid};
use crate::scan::{self, PixelLocation};
use dicom_core::value::Value;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::io::Write;

/// The name of the layout record object.
pub const LAYOUT_KEY: &str = "wado-layout.json";
/// The layout format identifier.
pub const LAYOUT_FORMAT: &str = "wado-layout";
/// The layout version this code reads and writes.
pub const LAYOUT_VERSION: u32 = 1;
/// The instance index format identifier.
pub const INDEX_FORMAT: &str = "wado-instance-index";
/// Suffix of instance files.
pub const DCM_SUFFIX: &str = ".dcm";
/// Suffix of instance index files.
pub const INDEX_SUFFIX: &str = ".index.json";
/// The service root written into stored metadata when none is configured.
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080";
/// The default AE title.
pub const DEFAULT_AE_TITLE: &str = "DCM4CHEE";

/// The store-wide record: which layout version, and which service root the stored metadata's
/// BulkDataURIs use (servers with another public root rewrite them on the way out).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayoutRecord {
    /// Always [`LAYOUT_FORMAT`].
    pub format: String,
    /// The layout version.
    pub version: u32,
    /// The service root used in stored BulkDataURIs, e.g.
    /// `http://127.0.0.1:8080/dcm4chee-arc/aets/DCM4CHEE/rs`.
    pub service_root: String,
    /// Binary values up to this many bytes are inline in stored metadata.
    pub inline_max: usize,
    /// IS/DS as numbers (`true`) or strings.
    pub numbers: bool,
}

impl LayoutRecord {
    /// A record for a public URL (scheme, host, port, optional path prefix) and AE title.
    pub fn new(public_url: &str, ae_title: &str) -> LayoutRecord {
        LayoutRecord {
            format: LAYOUT_FORMAT.into(),
            version: LAYOUT_VERSION,
            service_root: service_root(public_url, ae_title),
            inline_max: json::DEFAULT_INLINE_MAX,
            numbers: true,
        }
    }

    /// Parses and checks a stored record.
    pub fn from_json(bytes: &[u8]) -> Result<LayoutRecord> {
        let r: LayoutRecord =
            serde_json::from_slice(bytes).map_err(|e| Error::corrupt(LAYOUT_KEY, e))?;
        if r.format != LAYOUT_FORMAT || r.version != LAYOUT_VERSION {
            return Err(Error::corrupt(
                LAYOUT_KEY,
                format!(
                    "layout {} v{}; this build reads {LAYOUT_FORMAT} v{LAYOUT_VERSION}",
                    r.format, r.version
                ),
            ));
        }
        Ok(r)
    }

    /// Serialises the record.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    fn json_options(&self, study: &Uid, series: &Uid, sop: &Uid) -> JsonOptions {
        JsonOptions {
            bulk_uri_prefix: format!(
                "{}/studies/{study}/series/{series}/instances/{sop}/bulkdata",
                self.service_root
            ),
            inline_max: self.inline_max,
            numbers: if self.numbers {
                NumberStyle::Numbers
            } else {
                NumberStyle::Strings
            },
        }
    }
}

/// `{public_url}/dcm4chee-arc/aets/{ae}/rs`, without a doubled slash.
pub fn service_root(public_url: &str, ae_title: &str) -> String {
    format!(
        "{}{}{ae_title}/rs",
        public_url.trim_end_matches('/'),
        crate::route::SERVICE_PREFIX
    )
}

/// Key prefix of a study.
pub fn study_prefix(study: &Uid) -> String {
    format!("studies/{study}/")
}
/// Key prefix of a series.
pub fn series_prefix(study: &Uid, series: &Uid) -> String {
    format!("studies/{study}/series/{series}/")
}
/// Key of an instance's Part-10 file.
pub fn instance_key(study: &Uid, series: &Uid, sop: &Uid) -> String {
    format!("studies/{study}/series/{series}/instances/{sop}{DCM_SUFFIX}")
}
/// Key of an instance's index.
pub fn index_key(study: &Uid, series: &Uid, sop: &Uid) -> String {
    format!("studies/{study}/series/{series}/instances/{sop}{INDEX_SUFFIX}")
}
/// Key of a series' metadata.
pub fn series_metadata_key(study: &Uid, series: &Uid) -> String {
    format!("studies/{study}/series/{series}/metadata.json.gz")
}
/// Key of a study's metadata.
pub fn study_metadata_key(study: &Uid) -> String {
    format!("studies/{study}/metadata.json.gz")
}

/// What a key in a listing is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// An instance file.
    Instance {
        /// Study Instance UID.
        study: Uid,
        /// Series Instance UID.
        series: Uid,
        /// SOP Instance UID.
        sop: Uid,
    },
    /// An instance index.
    Index {
        /// Study Instance UID.
        study: Uid,
        /// Series Instance UID.
        series: Uid,
        /// SOP Instance UID.
        sop: Uid,
    },
    /// Anything else (metadata, temporary files).
    Other,
}

/// Classifies a storage key.
pub fn classify_key(key: &str) -> KeyKind {
    let parts: Vec<&str> = key.split('/').collect();
    if let ["studies", st, "series", se, "instances", file] = parts.as_slice() {
        let (name, index) = if let Some(n) = file.strip_suffix(DCM_SUFFIX) {
            (n, false)
        } else if let Some(n) = file.strip_suffix(INDEX_SUFFIX) {
            (n, true)
        } else {
            return KeyKind::Other;
        };
        if let (Ok(study), Ok(series), Ok(sop)) = (Uid::parse(st), Uid::parse(se), Uid::parse(name))
        {
            return if index {
                KeyKind::Index { study, series, sop }
            } else {
                KeyKind::Instance { study, series, sop }
            };
        }
    }
    KeyKind::Other
}

/// The identity of the stored file an index was derived from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Source {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// Image pixel attributes needed to serve frames (PS3.3 C.7.6.3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PixelInfo {
    /// Rows (0028,0010).
    pub rows: u16,
    /// Columns (0028,0011).
    pub columns: u16,
    /// Samples per Pixel (0028,0002).
    pub samples_per_pixel: u16,
    /// Bits Allocated (0028,0100).
    pub bits_allocated: u16,
    /// Bits Stored (0028,0101).
    pub bits_stored: u16,
    /// Pixel Representation (0028,0103).
    pub pixel_representation: u16,
    /// Photometric Interpretation (0028,0004).
    pub photometric_interpretation: String,
    /// Planar Configuration (0028,0006), 0 when absent.
    pub planar_configuration: u16,
    /// Number of Frames (0028,0008), 1 when absent.
    pub number_of_frames: u32,
}

impl PixelInfo {
    /// Bits in one uncompressed frame.
    pub fn frame_bits(&self) -> u64 {
        u64::from(self.rows)
            * u64::from(self.columns)
            * u64::from(self.samples_per_pixel)
            * u64::from(self.bits_allocated)
    }
}

/// Where the frames lie in the stored file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FrameIndex {
    /// Native pixel data: frame `k` (0-based) starts at bit `k × frame_bits` of the value at
    /// `offset`. With whole-byte frames this is one ranged read per frame.
    Native {
        /// Offset of the Pixel Data value in the file.
        offset: u64,
        /// Length of the Pixel Data value.
        length: u64,
    },
    /// Encapsulated pixel data: for each frame, its fragments as `[offset, length]` of the
    /// fragment data (item headers excluded). Fragments of a frame are contiguous in the file
    /// apart from their 8-byte item headers, so a frame is one ranged read.
    Encapsulated {
        /// Fragments per frame.
        frames: Vec<Vec<[u64; 2]>>,
    },
    /// The file is not byte-addressable (Big Endian, Deflated) or its frames could not be
    /// located: the server reads it whole.
    Unindexed,
}

/// One bulk data value's location.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BulkEntry {
    /// Attribute path as in the BulkDataURI (`7FE00010`, `00081140/1/00291010`).
    pub path: String,
    /// VR.
    pub vr: String,
    /// Offset of the value in the file.
    pub offset: u64,
    /// Length of the value.
    pub length: u64,
}

/// The per-instance index (`{sop}.index.json`).
#[derive(Debug, Serialize, Deserialize)]
pub struct InstanceIndex {
    /// Always [`INDEX_FORMAT`].
    pub format: String,
    /// The layout version.
    pub version: u32,
    /// Study Instance UID.
    pub study: String,
    /// Series Instance UID.
    pub series: String,
    /// SOP Instance UID.
    pub sop_instance: String,
    /// SOP Class UID.
    pub sop_class: String,
    /// Transfer syntax of the stored file.
    pub transfer_syntax: String,
    /// Instance Number, for ordering.
    pub instance_number: Option<i64>,
    /// The stored file this index describes.
    pub source: Source,
    /// Pixel attributes, when the instance has pixel data.
    pub pixel: Option<PixelInfo>,
    /// Frame locations, when the instance has pixel data.
    pub frames: Option<FrameIndex>,
    /// Bulk data locations (empty when not byte-addressable).
    pub bulk: Vec<BulkEntry>,
    /// The instance's DICOM JSON object, BulkDataURIs on the layout record's service root.
    pub metadata: Box<RawValue>,
}

impl InstanceIndex {
    /// Parses and checks an index.
    pub fn from_json(key: &str, bytes: &[u8]) -> Result<InstanceIndex> {
        let idx: InstanceIndex =
            serde_json::from_slice(bytes).map_err(|e| Error::corrupt(key, e))?;
        if idx.format != INDEX_FORMAT || idx.version != LAYOUT_VERSION {
            return Err(Error::corrupt(
                key,
                format!(
                    "index {} v{} is not {INDEX_FORMAT} v{LAYOUT_VERSION}",
                    idx.format, idx.version
                ),
            ));
        }
        Ok(idx)
    }

    /// Serialises the index.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The bulk entry for an attribute path.
    pub fn bulk(&self, path: &AttributePath) -> Option<&BulkEntry> {
        let p = path.to_string();
        self.bulk.iter().find(|b| b.path == p)
    }
}

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
    let file = dicom_object::OpenFileOptions::new()
        .from_reader(bytes)
        .map_err(|e| format!("cannot parse: {e}"))?;
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
    let pixel = pixel_elem.map(|_| PixelInfo {
        rows: int_attr(obj, tags::ROWS).unwrap_or(0) as u16,
        columns: int_attr(obj, tags::COLUMNS).unwrap_or(0) as u16,
        samples_per_pixel: int_attr(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1) as u16,
        bits_allocated: int_attr(obj, tags::BITS_ALLOCATED).unwrap_or(0) as u16,
        bits_stored: int_attr(obj, tags::BITS_STORED).unwrap_or(0) as u16,
        pixel_representation: int_attr(obj, tags::PIXEL_REPRESENTATION).unwrap_or(0) as u16,
        photometric_interpretation: obj
            .get(tags::PHOTOMETRIC_INTERPRETATION)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        planar_configuration: int_attr(obj, tags::PLANAR_CONFIGURATION).unwrap_or(0) as u16,
        number_of_frames: int_attr(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as u32,
    });
    // Native pixel data must hold every frame it claims: a truncated value is a corrupt file.
    if let (Some(info), Some(e)) = (&pixel, pixel_elem) {
        if matches!(e.value(), Value::Primitive(_)) && ts::is_native(&ts_uid) {
            let need = (info.frame_bits() * u64::from(info.number_of_frames)).div_ceil(8);
            let have = u64::from(e.header().len.get().unwrap_or(0));
            if info.frame_bits() == 0 || have < need {
                return Err(format!(
                    "Pixel Data holds {have} bytes but {} frame(s) of {}x{}x{} at {} bits need {need}",
                    info.number_of_frames, info.rows, info.columns, info.samples_per_pixel, info.bits_allocated
                ));
            }
        }
    }
    let frames = match (&pixel, &scan.pixel) {
        (Some(info), Some(loc)) => Some(frame_index(obj, info, loc, &ts_uid)),
        (Some(_), None) => Some(FrameIndex::Unindexed),
        _ => None,
    };
    let opts = layout.json_options(&study, &series, &sop);
    let metadata_text = json::dataset_to_string(obj, &opts);
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
        study: study.to_string(),
        series: series.to_string(),
        sop_instance: sop.to_string(),
        sop_class,
        transfer_syntax: ts_uid,
        instance_number: int_attr(obj, tags::INSTANCE_NUMBER),
        source: Source {
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        },
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
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_classification() {
        let (s, se, i) = (
            Uid::parse("1.2").expect("u"),
            Uid::parse("3.4").expect("u"),
            Uid::parse("5.6").expect("u"),
        );
        assert_eq!(
            instance_key(&s, &se, &i),
            "studies/1.2/series/3.4/instances/5.6.dcm"
        );
        assert_eq!(
            index_key(&s, &se, &i),
            "studies/1.2/series/3.4/instances/5.6.index.json"
        );
        assert_eq!(
            series_metadata_key(&s, &se),
            "studies/1.2/series/3.4/metadata.json.gz"
        );
        assert_eq!(study_metadata_key(&s), "studies/1.2/metadata.json.gz");
        assert_eq!(
            classify_key("studies/1.2/series/3.4/instances/5.6.dcm"),
            KeyKind::Instance {
                study: s.clone(),
                series: se.clone(),
                sop: i.clone()
            }
        );
        assert_eq!(
            classify_key("studies/1.2/series/3.4/instances/5.6.index.json"),
            KeyKind::Index {
                study: s,
                series: se,
                sop: i
            }
        );
        assert_eq!(
            classify_key("studies/1.2/series/3.4/instances/.tmp-x.dcm"),
            KeyKind::Other
        );
        assert_eq!(
            classify_key("studies/1.2/series/3.4/metadata.json.gz"),
            KeyKind::Other
        );
    }

    #[test]
    fn service_roots() {
        assert_eq!(
            service_root("http://h:1/", "AE"),
            "http://h:1/dcm4chee-arc/aets/AE/rs"
        );
        assert_eq!(
            service_root("https://h/pacs", "AE"),
            "https://h/pacs/dcm4chee-arc/aets/AE/rs"
        );
        let r = LayoutRecord::new(DEFAULT_PUBLIC_URL, DEFAULT_AE_TITLE);
        assert_eq!(LayoutRecord::from_json(&r.to_json()).expect("roundtrip"), r);
        let mut bad = r.clone();
        bad.version = 99;
        assert!(LayoutRecord::from_json(&bad.to_json()).is_err());
    }
}
