//! Writing instances into a store in the layout of [`crate::layout`], and rebuilding the
//! derived series and study metadata. Runtime-neutral: `wado import` drives it with the file
//! system store, the edge cache (later) with R2.
//!
//! Crash safety comes from the write order: the index first, the `.dcm` last, each an atomic
//! replace; metadata objects are rebuilt from the indexes whose `.dcm` matches them, after the
//! instances are written. An import killed at any instant leaves each instance complete or
//! absent, and the next import (or rebuild) repairs the metadata.

use crate::error::Error;
use crate::layout::{self, InstanceIndex, KeyKind, LayoutRecord};
use crate::route::Uid;
use crate::store::{Store, StoreError};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

/// What importing one file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A new instance.
    Imported,
    /// The same file was already stored: nothing changed.
    Unchanged,
    /// A different file with the same SOP Instance UID was replaced.
    Replaced,
}

/// The result of importing one file.
#[derive(Debug, Clone)]
pub struct Imported {
    /// What happened.
    pub status: Status,
    /// Study Instance UID.
    pub study: Uid,
    /// Series Instance UID.
    pub series: Uid,
    /// SOP Instance UID.
    pub sop: Uid,
    /// The index written, when one was (not for unchanged files).
    pub index: Option<Arc<InstanceIndex>>,
}

/// Why a file was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not an importable DICOM instance; nothing was written.
    #[error("{0}")]
    Rejected(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads the store's layout record, creating it with `public_url` and `ae_title` when the
/// store is new.
pub async fn ensure_layout(
    store: &dyn Store,
    public_url: &str,
    ae_title: &str,
) -> Result<LayoutRecord, Error> {
    if let Some(b) = store.get(layout::LAYOUT_KEY).await? {
        return LayoutRecord::from_json(&b);
    }
    let rec = LayoutRecord::new(public_url, ae_title);
    store
        .put(layout::LAYOUT_KEY, Bytes::from(rec.to_json()))
        .await?;
    Ok(rec)
}

/// Imports one Part-10 file (the instance only: call [`rebuild_metadata`] for the series and
/// studies touched, once, after a batch).
pub async fn import_file(
    store: &dyn Store,
    layout: &LayoutRecord,
    bytes: Bytes,
) -> Result<Imported, ImportError> {
    let prepared = layout::prepare(&bytes, layout).map_err(ImportError::Rejected)?;
    let (study, series, sop) = (prepared.study, prepared.series, prepared.sop);
    let dcm_key = layout::instance_key(&study, &series, &sop);
    let idx_key = layout::index_key(&study, &series, &sop);
    let existing_size = store.size(&dcm_key).await?;
    if existing_size == Some(bytes.len() as u64) {
        if let Some(old) = store.get(&idx_key).await? {
            if let Ok(old) = InstanceIndex::from_json(&idx_key, &old) {
                if old.source == prepared.index.source {
                    return Ok(Imported {
                        status: Status::Unchanged,
                        study,
                        series,
                        sop,
                        index: None,
                    });
                }
            }
        }
    }
    store
        .put(&idx_key, Bytes::from(prepared.index.to_json()))
        .await?;
    store.put(&dcm_key, bytes).await?;
    let status = if existing_size.is_some() {
        Status::Replaced
    } else {
        Status::Imported
    };
    Ok(Imported {
        status,
        study,
        series,
        sop,
        index: Some(Arc::new(prepared.index)),
    })
}

/// Rebuilds the metadata of the given series and of every study they belong to, from the
/// indexes in the store. `known` may hold indexes already in memory (by index key), to save
/// reading them back.
pub async fn rebuild_metadata(
    store: &dyn Store,
    series: &[(Uid, Uid)],
    known: &HashMap<String, Arc<InstanceIndex>>,
) -> Result<(), Error> {
    let mut studies: Vec<Uid> = series.iter().map(|(s, _)| s.clone()).collect();
    studies.sort();
    studies.dedup();
    for study in &studies {
        let indexes = valid_indexes(store, &layout::study_prefix(study), known).await?;
        let mut by_series: HashMap<&str, Vec<&InstanceIndex>> = HashMap::new();
        for idx in indexes.iter().map(|i| &**i) {
            by_series.entry(idx.series.as_str()).or_default().push(idx);
        }
        for (st, se) in series.iter().filter(|(s, _)| s == study) {
            let key = layout::series_metadata_key(st, se);
            match by_series.get_mut(se.as_str()) {
                Some(list) => {
                    store
                        .put(&key, Bytes::from(layout::build_metadata_gz(list)))
                        .await?
                }
                None => store.delete(&key).await?,
            }
        }
        let key = layout::study_metadata_key(study);
        let mut all: Vec<&InstanceIndex> = indexes.iter().map(|i| &**i).collect();
        if all.is_empty() {
            store.delete(&key).await?;
        } else {
            // Study metadata: series in UID order, instances in order within each series.
            layout::sort_instances(&mut all);
            all.sort_by(|a, b| a.series.cmp(&b.series));
            store
                .put(&key, Bytes::from(layout::write_metadata_gz(&all)))
                .await?;
        }
    }
    Ok(())
}

/// The indexes under `prefix` whose `.dcm` exists with the size the index names.
async fn valid_indexes(
    store: &dyn Store,
    prefix: &str,
    known: &HashMap<String, Arc<InstanceIndex>>,
) -> Result<Vec<Arc<InstanceIndex>>, Error> {
    let listing = store.list(prefix).await?;
    let mut dcm_sizes: HashMap<(Uid, Uid, Uid), u64> = HashMap::new();
    let mut index_keys = Vec::new();
    for o in &listing {
        match layout::classify_key(&o.key) {
            KeyKind::Instance { study, series, sop } => {
                dcm_sizes.insert((study, series, sop), o.size);
            }
            KeyKind::Index { study, series, sop } => {
                index_keys.push((o.key.clone(), (study, series, sop)))
            }
            KeyKind::Other => {}
        }
    }
    let mut out = Vec::new();
    for (key, id) in index_keys {
        let Some(&size) = dcm_sizes.get(&id) else {
            continue;
        };
        let idx = match known.get(&key) {
            Some(k) => k.clone(),
            None => match store.get(&key).await? {
                Some(b) => match InstanceIndex::from_json(&key, &b) {
                    Ok(i) => Arc::new(i),
                    Err(_) => continue, // unreadable: ignored until re-imported
                },
                None => continue,
            },
        };
        if idx.source.size == size {
            out.push(idx);
        }
    }
    Ok(out)
}
