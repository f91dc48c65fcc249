//! The storage layout: one contract for every backend (docs/STORAGE-LAYOUT.md is its prose).
//!
//! ```text
//! wado-layout.json                                                  the store's layout record
//! studies/{study}/series/{series}/instances/{sop}-{gen}.dcm         the Part-10 file exactly as received
//! studies/{study}/series/{series}/instances/{sop}-{gen}.index.json  its index: frames, bulk data, metadata
//! aets/{AE}/...                                                     the same again for AE title {AE}
//! ```
//!
//! Each AE title is a partition of its own ([`partition_prefix`]): the default AE title
//! (`DCM4CHEE`) at the root, every other one under `aets/{AE}/`. The service reads a partition
//! through [`crate::store::Prefixed`], so no request to one AE title can name a key of another.
//!
//! Every write of an instance has its own generation `gen` (16 hex digits), so objects are
//! never overwritten: which generation of a SOP Instance UID exists is the catalog's to say
//! (the search index, see [`crate::ingest`]); the store holds each generation's two objects,
//! immutable, until the catalog retires it. Stores written before generations hold
//! `{sop}.dcm` and `{sop}.index.json`: the generation `""`.

use crate::dicom::json::{JsonOptions, NumberStyle};
use crate::dicom::uid::{AttributePath, Uid};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

mod index;

pub use index::{
    build_metadata_gz, is_video, prepare, sha256_hex, sort_instances, write_metadata_gz, Prepared,
    MAX_FRAME_BYTES, MAX_INFLATED,
};

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

/// Where an AE title's partition lives in the store: `None` for the default AE title (the
/// root, where a store made before partitions keeps its studies), `aets/{AE}/` for any other.
/// AE titles that are not a storage key segment (PS3.5 allows any of 16 characters but `\`;
/// keys take letters, digits, `.`, `_`, `-`) are refused.
pub fn partition_prefix(ae_title: &str) -> Result<Option<String>> {
    if ae_title == DEFAULT_AE_TITLE {
        return Ok(None);
    }
    let ok = !ae_title.is_empty()
        && ae_title.len() <= 16
        && ae_title
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && ae_title != "."
        && ae_title != "..";
    if !ok {
        return Err(Error::BadRequest(format!(
            "AE title {ae_title:?} cannot name a partition: use at most 16 letters, digits, '.', '_' or '-'"
        )));
    }
    Ok(Some(format!("aets/{ae_title}/")))
}

/// The store as `ae_title` sees it: its partition ([`partition_prefix`]).
pub fn partition(
    store: &std::sync::Arc<dyn crate::store::Store>,
    ae_title: &str,
) -> Result<std::sync::Arc<dyn crate::store::Store>> {
    Ok(match partition_prefix(ae_title)? {
        None => store.clone(),
        Some(prefix) => std::sync::Arc::new(
            crate::store::Prefixed::new(store.clone(), &prefix)
                .map_err(|e| Error::BadRequest(e.to_string()))?,
        ),
    })
}

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
            inline_max: crate::dicom::json::DEFAULT_INLINE_MAX,
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

/// The prefix of every study's keys.
pub const STUDIES_PREFIX: &str = "studies/";
/// Key prefix of a study.
pub fn study_prefix(study: &Uid) -> String {
    format!("studies/{study}/")
}
/// Key prefix of a series.
pub fn series_prefix(study: &Uid, series: &Uid) -> String {
    format!("studies/{study}/series/{series}/")
}
/// The name of generation `gen` of instance `sop` (the bare SOP Instance UID for `""`).
fn versioned(sop: &Uid, gen: &str) -> String {
    if gen.is_empty() {
        sop.to_string()
    } else {
        format!("{sop}-{gen}")
    }
}
/// Key of generation `gen` of an instance's Part-10 file.
pub fn instance_key(study: &Uid, series: &Uid, sop: &Uid, gen: &str) -> String {
    format!(
        "studies/{study}/series/{series}/instances/{}{DCM_SUFFIX}",
        versioned(sop, gen)
    )
}
/// Key of generation `gen` of an instance's index.
pub fn index_key(study: &Uid, series: &Uid, sop: &Uid, gen: &str) -> String {
    format!(
        "studies/{study}/series/{series}/instances/{}{INDEX_SUFFIX}",
        versioned(sop, gen)
    )
}
/// Whether `gen` can be a generation: empty (written before generations) or 1 to 32 hex
/// digits.
pub fn is_generation(gen: &str) -> bool {
    gen.len() <= 32 && gen.bytes().all(|b| b.is_ascii_hexdigit())
}
/// Key of the marker the read-through cache ([`crate::ingest::upstream`]) writes when it has
/// filled a study whole from the upstream archive.
pub fn upstream_study_marker_key(study: &Uid) -> String {
    format!("studies/{study}/origin-complete.json")
}

/// What a key in a listing is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// A generation of an instance file.
    Instance {
        /// Study Instance UID.
        study: Uid,
        /// Series Instance UID.
        series: Uid,
        /// SOP Instance UID.
        sop: Uid,
        /// Its generation.
        gen: String,
    },
    /// A generation of an instance index.
    Index {
        /// Study Instance UID.
        study: Uid,
        /// Series Instance UID.
        series: Uid,
        /// SOP Instance UID.
        sop: Uid,
        /// Its generation.
        gen: String,
    },
    /// Anything else (metadata objects of older layouts, markers, temporary files).
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
        // A SOP Instance UID has no `-`: what follows one is the generation.
        let (name, gen) = name.split_once('-').unwrap_or((name, ""));
        if !is_generation(gen) {
            return KeyKind::Other;
        }
        if let (Ok(study), Ok(series), Ok(sop)) = (Uid::parse(st), Uid::parse(se), Uid::parse(name))
        {
            let gen = gen.to_owned();
            return if index {
                KeyKind::Index {
                    study,
                    series,
                    sop,
                    gen,
                }
            } else {
                KeyKind::Instance {
                    study,
                    series,
                    sop,
                    gen,
                }
            };
        }
    }
    KeyKind::Other
}

/// Of several versions of one SOP Instance UID (index objects stored whole), the current one
/// as far as the store alone can tell: none that a later write names as the version it
/// replaced (so two writes within one second, or on replicas whose clocks differ, keep the
/// order they had), then the latest `stored_at`, then the greatest generation.
pub fn latest_version<'a>(versions: &[&'a InstanceIndex]) -> Option<&'a InstanceIndex> {
    let replaced: std::collections::HashSet<&str> = versions
        .iter()
        .filter_map(|v| v.replaces.as_deref())
        .collect();
    let key = |v: &&&InstanceIndex| (v.stored_at, v.gen.clone());
    versions
        .iter()
        .filter(|v| !replaced.contains(v.gen.as_str()))
        .max_by_key(key)
        .or_else(|| versions.iter().max_by_key(key))
        .copied()
}

/// A generation of an instance in a listing: its Part-10 file, whose index is listed beside
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedInstance {
    /// Study Instance UID.
    pub study: Uid,
    /// Series Instance UID.
    pub series: Uid,
    /// SOP Instance UID.
    pub sop: Uid,
    /// Its generation.
    pub gen: String,
    /// The key of its Part-10 file.
    pub key: String,
    /// The file's size.
    pub size: u64,
    /// The file's modification time (or when it was stored), when known.
    pub modified: Option<u64>,
}

impl ListedInstance {
    /// The key of its index.
    pub fn index_key(&self) -> String {
        index_key(&self.study, &self.series, &self.sop, &self.gen)
    }
}

/// The instance generations of a listing (of a study or series prefix): the files whose index
/// of the same generation is listed too, series by series in UID order, each series in
/// listing order. Whether a file is whole ([`InstanceIndex::matches_file`]) takes its index:
/// the readers that read it check it.
pub fn listed_instances(listing: Vec<crate::store::ObjectMeta>) -> Vec<ListedInstance> {
    let mut files: std::collections::BTreeMap<(Uid, Uid), Vec<ListedInstance>> = Default::default();
    let mut indexed = std::collections::HashSet::new();
    for o in listing {
        match classify_key(&o.key) {
            KeyKind::Instance {
                study,
                series,
                sop,
                gen,
            } => files
                .entry((study.clone(), series.clone()))
                .or_default()
                .push(ListedInstance {
                    study,
                    series,
                    sop,
                    gen,
                    key: o.key,
                    size: o.size,
                    modified: o.modified,
                }),
            KeyKind::Index {
                study,
                series,
                sop,
                gen,
            } => {
                indexed.insert((study, series, sop, gen));
            }
            KeyKind::Other => {}
        }
    }
    files
        .into_values()
        .flatten()
        .filter(|i| {
            indexed.contains(&(
                i.study.clone(),
                i.series.clone(),
                i.sop.clone(),
                i.gen.clone(),
            ))
        })
        .collect()
}

/// The identity of the stored file an index was derived from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredFile {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

pub use wado_codec::PixelInfo;

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
    pub study: Uid,
    /// Series Instance UID.
    pub series: Uid,
    /// SOP Instance UID.
    pub sop_instance: Uid,
    /// SOP Class UID.
    pub sop_class: String,
    /// Transfer syntax of the stored file.
    pub transfer_syntax: String,
    /// Instance Number, for ordering.
    pub instance_number: Option<i64>,
    /// The stored file this index describes.
    pub source: StoredFile,
    /// The generation of this write: its objects' names, and the catalog's version of the
    /// instance (empty in stores written before generations).
    #[serde(default)]
    pub gen: String,
    /// When it was stored (seconds since the Unix epoch; 0 when not known).
    #[serde(default)]
    pub stored_at: u64,
    /// The generation this write replaced, when it knew one: a version is older than any
    /// version that names it here, whatever the clocks said ([`latest_version`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// A Deflated file's size once inflated (what reading it costs), when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inflated: Option<u64>,
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

    /// The key of the Part-10 file this index describes.
    pub fn file_key(&self) -> String {
        instance_key(&self.study, &self.series, &self.sop_instance, &self.gen)
    }

    /// The key of this index.
    pub fn key(&self) -> String {
        index_key(&self.study, &self.series, &self.sop_instance, &self.gen)
    }

    /// Whether the stored file of this index is there whole: the store holds it at the size
    /// the index names. The import writes the file first and the index last, so this is the
    /// one test of "the instance exists" (see the module doc).
    pub fn matches_file(&self, file_size: Option<u64>) -> bool {
        file_size == Some(self.source.size)
    }

    /// The bytes a whole-file read of the instance holds: its size, or inflated size.
    pub fn parsed_size(&self) -> u64 {
        self.inflated.unwrap_or(0).max(self.source.size)
    }

    /// The bulk entry for an attribute path.
    pub fn bulk(&self, path: &AttributePath) -> Option<&BulkEntry> {
        let p = path.to_string();
        self.bulk.iter().find(|b| b.path == p)
    }
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
            instance_key(&s, &se, &i, "00ff"),
            "studies/1.2/series/3.4/instances/5.6-00ff.dcm"
        );
        assert_eq!(
            index_key(&s, &se, &i, "00ff"),
            "studies/1.2/series/3.4/instances/5.6-00ff.index.json"
        );
        // Written before generations.
        assert_eq!(
            instance_key(&s, &se, &i, ""),
            "studies/1.2/series/3.4/instances/5.6.dcm"
        );
        for (gen, key) in [
            ("00ff", "studies/1.2/series/3.4/instances/5.6-00ff.dcm"),
            ("", "studies/1.2/series/3.4/instances/5.6.dcm"),
        ] {
            assert_eq!(
                classify_key(key),
                KeyKind::Instance {
                    study: s.clone(),
                    series: se.clone(),
                    sop: i.clone(),
                    gen: gen.into()
                }
            );
        }
        assert_eq!(
            classify_key("studies/1.2/series/3.4/instances/5.6-abc.index.json"),
            KeyKind::Index {
                study: s,
                series: se,
                sop: i,
                gen: "abc".into()
            }
        );
        for other in [
            "studies/1.2/series/3.4/instances/.tmp-x.dcm",
            "studies/1.2/series/3.4/instances/5.6-xyz.dcm",
            "studies/1.2/series/3.4/metadata.json.gz",
        ] {
            assert_eq!(classify_key(other), KeyKind::Other, "{other}");
        }
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
