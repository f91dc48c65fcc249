//! The one ingest door: writing instances into a store in the layout of [`crate::layout`],
//! and rebuilding the derived series and study metadata. Runtime-neutral: `wado import` drives
//! a [`Batch`] over files (natively, concurrently), the read-through cache
//! ([`super::upstream`]) over what the upstream archive sends, and the tests over fixtures.
//!
//! Crash safety comes from the write order, each write an atomic replace: when an instance is
//! replaced, its old index goes first (the instance is absent for a moment); then the `.dcm`;
//! the index last. So no reader ever pairs an index with a file it does not describe, even one
//! of the same size (a corrected name of the same length), and an import killed at any instant
//! leaves each instance complete or absent (a `.dcm` without its index is not listed, and is
//! overwritten by the next import). Metadata objects are rebuilt from the indexes whose `.dcm`
//! matches them, after the instances are written, so the next import (or rebuild) repairs them.

use crate::error::Error;
use crate::layout::{self, InstanceIndex, LayoutRecord};

mod index;
pub mod upstream;

use crate::dicom::uid::Uid;
use crate::search::{Index, IndexError, SharedIndex};
use crate::store::{Store, StoreError};
use bytes::Bytes;
pub use index::{recover, reindex, reindex_study};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// One import run. Files are added one by one, concurrently if the caller wishes (files with
/// the same SOP Instance UID take turns, so one's index never pairs with another's file); the
/// series they touch are rebuilt once at the end ([`Batch::rebuilds`]), from the indexes the
/// run wrote (kept in memory) and those already stored.
#[derive(Debug)]
pub struct Batch {
    layout: LayoutRecord,
    /// One lock per SOP Instance UID being imported (shared with other runs into the same
    /// store by [`Batch::with_turns`]).
    turns: Arc<Turns>,
    touched: Mutex<BTreeSet<(Uid, Uid)>>,
    known: Mutex<HashMap<String, Arc<InstanceIndex>>>,
    /// The search index to keep in step, the partition (AE title) this run writes, and the
    /// run's name in the index's pending marks.
    search: Option<(SharedIndex, String, String)>,
    /// Studies marked pending in the search index by this run.
    marked: Mutex<BTreeSet<Uid>>,
    /// Where each file is parsed and indexed (CPU work): a pool of the frontend's, so that
    /// files of one run are prepared on several cores; here when `None`.
    offload: Option<Arc<dyn crate::Offload>>,
    /// The most bytes one instance may take once read: a Deflated file's inflated size
    /// counts, not its stored one.
    max_instance: u64,
}

impl Batch {
    /// A run into a store whose layout record is `layout` (see [`ensure_layout`]).
    pub fn new(layout: LayoutRecord) -> Batch {
        Batch {
            layout,
            turns: Arc::default(),
            touched: Mutex::default(),
            known: Mutex::default(),
            search: None,
            marked: Mutex::default(),
            offload: None,
            max_instance: layout::MAX_INFLATED,
        }
    }

    /// Refuses (before anything is written) an instance that inflates past `bytes`.
    pub fn with_max_instance(mut self, bytes: u64) -> Batch {
        self.max_instance = bytes;
        self
    }

    /// Prepares files (parse, index, metadata) on `offload`'s threads rather than the
    /// caller's: a STOW-RS request's files are then prepared on every core while it reads on.
    pub fn with_offload(mut self, offload: Option<Arc<dyn crate::Offload>>) -> Batch {
        self.offload = offload;
        self
    }

    /// Keeps a search index in step with this run (for partition `ae_title`): a study is
    /// marked pending there before its first file is written, and its rows are replaced, and
    /// the mark cleared, in one transaction after its metadata is rebuilt ([`Batch::rebuilds`]).
    /// A run killed in between leaves the mark, and [`crate::ingest::recover`] rebuilds the
    /// study (metadata and rows) from what the store holds.
    pub fn with_index(mut self, index: SharedIndex, ae_title: &str) -> Batch {
        self.search = Some((index, ae_title.to_owned(), String::new()));
        self
    }

    /// Names this run in the index's pending marks (with [`Batch::with_index`]): each run
    /// marks and clears its own, so a run that finishes never clears the mark of another one
    /// still writing the same study (two STOW-RS requests into one study; a server and a
    /// `wado import`). Runs that may overlap must have different names.
    pub fn writing_as(mut self, writer: &str) -> Batch {
        if let Some((_, _, w)) = &mut self.search {
            *w = writer.to_owned();
        }
        self
    }

    /// Takes turns with other runs over `turns` (the STOW-RS requests of one partition): two
    /// runs never write the same SOP Instance UID at once.
    pub fn with_turns(mut self, turns: Arc<Turns>) -> Batch {
        self.turns = turns;
        self
    }

    async fn mark_pending(&self, study: &Uid) -> Result<(), ImportError> {
        let Some((index, part, writer)) = &self.search else {
            return Ok(());
        };
        if lock(&self.marked).contains(study) {
            return Ok(());
        }
        index
            .execute(vec![crate::search::schema::mark_pending(
                index.dialect(),
                part,
                study,
                writer,
            )])
            .await?;
        lock(&self.marked).insert(study.clone());
        Ok(())
    }

    /// Where an instance of SOP Instance UID `sop` is stored, when that is not series `series`
    /// of study `study`: in what this run wrote and in the search index (which knows every
    /// stored instance of the partition; without one, what this run wrote only).
    async fn stored_elsewhere(
        &self,
        study: &Uid,
        series: &Uid,
        sop: &Uid,
    ) -> Result<Option<(Uid, Uid)>, ImportError> {
        let here = |st: &Uid, se: &Uid| st == study && se == series;
        if let Some(i) = lock(&self.known)
            .values()
            .find(|i| i.sop_instance == *sop && !here(&i.study, &i.series))
        {
            return Ok(Some((i.study.clone(), i.series.clone())));
        }
        let Some((index, part, _)) = &self.search else {
            return Ok(None);
        };
        let rows = index
            .query(crate::search::schema::locate_instance(
                index.dialect(),
                part,
                sop,
            ))
            .await?;
        for row in rows {
            let uid = |n: usize| {
                row.get(n)
                    .and_then(crate::search::Value::as_str)
                    .and_then(|s| Uid::parse(s).ok())
            };
            if let (Some(st), Some(se)) = (uid(0), uid(1)) {
                if !here(&st, &se) {
                    return Ok(Some((st, se)));
                }
            }
        }
        Ok(None)
    }

    /// Imports one Part-10 file (the instance only; its series is rebuilt at the end).
    pub async fn add(&self, store: &dyn Store, bytes: Bytes) -> Result<Imported, ImportError> {
        self.add_expecting(store, bytes, Expected::Any).await
    }

    /// [`Batch::add`], refusing (before anything is written) a file that is not what
    /// `expected` names: what another archive sends is checked against what was asked of it,
    /// what a STOW-RS request sends against the study of its URL.
    pub async fn add_expecting(
        &self,
        store: &dyn Store,
        bytes: Bytes,
        expected: Expected<'_>,
    ) -> Result<Imported, ImportError> {
        let sop = crate::dicom::scan::scan_meta(&bytes)
            .ok()
            .and_then(|m| m.media_storage_sop_instance)
            .unwrap_or_default();
        let result = self
            .turns
            .take(&sop, import_file(self, store, bytes, expected))
            .await;
        let done = result?;
        if let Some(idx) = &done.index {
            lock(&self.known).insert(
                layout::index_key(&done.study, &done.series, &done.sop),
                idx.clone(),
            );
        }
        lock(&self.touched).insert((done.study.clone(), done.series.clone()));
        Ok(done)
    }

    /// The metadata rebuilds this run needs, one per study touched (each may run on its own
    /// thread; together they rebuild every series touched and its study).
    pub fn rebuilds(self) -> Vec<Rebuild> {
        self.drain_rebuilds()
    }

    /// Instances added since the last rebuilds were taken (their indexes are kept in memory
    /// until then).
    pub fn waiting(&self) -> usize {
        lock(&self.known).len()
    }

    /// The rebuilds of what was added so far, taken out of the run, which goes on: a long run
    /// (a STOW-RS request of thousands of instances) rebuilds as it goes rather than keeping
    /// every index in memory to the end. Only call it when no [`Batch::add`] is under way: a
    /// study rebuilt here is marked pending again by its next file.
    pub fn drain_rebuilds(&self) -> Vec<Rebuild> {
        let known = Arc::new(std::mem::take(&mut *lock(&self.known)));
        let mut by_study: BTreeMap<Uid, Vec<(Uid, Uid)>> = BTreeMap::new();
        for s in std::mem::take(&mut *lock(&self.touched)) {
            by_study.entry(s.0.clone()).or_default().push(s);
        }
        let mut marked = lock(&self.marked);
        for study in by_study.keys() {
            marked.remove(study);
        }
        by_study
            .into_values()
            .map(|series| Rebuild {
                series,
                known: known.clone(),
                search: self.search.clone(),
            })
            .collect()
    }

    /// Rebuilds the metadata of every series touched, one study after the other.
    pub async fn finish(self, store: &dyn Store) -> Result<(), Error> {
        for r in self.rebuilds() {
            r.run(store).await?;
        }
        Ok(())
    }
}

/// What a file must be, checked before anything of it is written.
#[derive(Debug, Clone, Copy)]
pub enum Expected<'a> {
    /// Any instance.
    Any,
    /// An instance of this study.
    Study(&'a Uid),
    /// This instance (study, series, SOP Instance UID).
    Instance(&'a Uid, &'a Uid, &'a Uid),
}

/// Work that takes turns by key: one at a time per key, any number of keys at once (a SOP
/// Instance UID being written, a study being rebuilt). Keys nobody holds or waits for are
/// forgotten.
#[derive(Debug, Default)]
pub struct Turns {
    held: Mutex<HashMap<String, Arc<futures::lock::Mutex<()>>>>,
}

impl Turns {
    /// Runs `work` when no other work of `key` runs (in the order they asked); the empty key
    /// takes no turn.
    pub async fn take<T>(&self, key: &str, work: impl std::future::Future<Output = T>) -> T {
        if key.is_empty() {
            return work.await;
        }
        let turn = lock(&self.held).entry(key.to_owned()).or_default().clone();
        let out = {
            let _guard = turn.lock().await;
            work.await
        };
        let mut held = lock(&self.held);
        // The map and this call hold the only references: nobody waits.
        if Arc::strong_count(&turn) == 2 {
            held.remove(key);
        }
        out
    }
}

/// The metadata rebuild of one study's touched series (see [`Batch::rebuilds`]).
#[derive(Debug)]
pub struct Rebuild {
    series: Vec<(Uid, Uid)>,
    known: Arc<HashMap<String, Arc<InstanceIndex>>>,
    search: Option<(SharedIndex, String, String)>,
}

impl Rebuild {
    /// The study it rebuilds.
    pub fn study(&self) -> Option<&Uid> {
        self.series.first().map(|(st, _)| st)
    }

    /// Runs it.
    pub async fn run(&self, store: &dyn Store) -> Result<(), Error> {
        let search = self
            .search
            .as_ref()
            .map(|(i, p, w)| (&**i, p.as_str(), Some(w.as_str())));
        rebuild_metadata(store, &self.series, &self.known, search).await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

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
    /// SOP Class UID.
    pub sop_class: String,
    /// The index written, when one was (not for unchanged files).
    pub index: Option<Arc<InstanceIndex>>,
    /// What was stored only as a best effort ([`layout::Prepared::warnings`]).
    pub warnings: Vec<String>,
}

/// Why a file was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not an importable DICOM instance; nothing was written.
    #[error("{0}")]
    Rejected(String),
    /// The file is not the instance, or not of the study, that was expected; nothing was
    /// written.
    #[error("{0}")]
    Mismatch(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The search index failed; nothing of this file was written.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The instance is larger than the run takes (a Deflated one inflated); nothing was
    /// written.
    #[error("{0}")]
    TooLarge(String),
    /// An instance with this SOP Instance UID is stored in another series or study: one UID
    /// names one instance (PS3.3 C.12.1.1.1), so this one is refused; nothing was written.
    #[error("{0}")]
    Duplicate(String),
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

/// Imports one Part-10 file (the instance only: a [`Batch`] rebuilds the series and studies
/// touched, once, after all its files).
async fn import_file(
    batch: &Batch,
    store: &dyn Store,
    bytes: Bytes,
    expected: Expected<'_>,
) -> Result<Imported, ImportError> {
    if let Err(e @ crate::dicom::scan::Inflate::TooLarge(_)) =
        crate::dicom::scan::inflated_len(&bytes, batch.max_instance)
    {
        return Err(ImportError::TooLarge(e.to_string()));
    }
    let prepared = prepare(batch, &bytes).await?;
    let (study, series, sop) = (prepared.study, prepared.series, prepared.sop);
    let sop_class = prepared.index.sop_class.clone();
    let warnings = prepared.warnings;
    match expected {
        Expected::Any => {}
        Expected::Study(st) if *st == study => {}
        Expected::Study(st) => {
            return Err(ImportError::Mismatch(format!(
                "instance {sop} is of study {study}, not of study {st}"
            )))
        }
        Expected::Instance(st, se, i) if (st, se, i) == (&study, &series, &sop) => {}
        Expected::Instance(st, se, i) => {
            return Err(ImportError::Mismatch(format!(
                "asked for instance {i} of series {se} of study {st}, got instance {sop} of series {series} of study {study}"
            )))
        }
    }
    if let Some((st, se)) = batch.stored_elsewhere(&study, &series, &sop).await? {
        return Err(ImportError::Duplicate(format!(
            "instance {sop} is already stored in series {se} of study {st}; a SOP Instance UID names one instance, so this one (series {series} of study {study}) is refused"
        )));
    }
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
                        sop_class,
                        index: None,
                        warnings,
                    });
                }
            }
        }
    }
    // Before the store changes, so an interruption from here on is found and repaired.
    batch.mark_pending(&study).await?;
    if existing_size.is_some() {
        store.delete(&idx_key).await?;
    }
    store.put(&dcm_key, bytes).await?;
    store
        .put(&idx_key, Bytes::from(prepared.index.to_json()))
        .await?;
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
        sop_class,
        index: Some(Arc::new(prepared.index)),
        warnings,
    })
}

/// [`layout::prepare`] on the batch's offload pool (when it has one and it takes the job), else
/// here.
async fn prepare(batch: &Batch, bytes: &Bytes) -> Result<layout::Prepared, ImportError> {
    if let Some(offload) = &batch.offload {
        let slot: Arc<Mutex<Option<Result<layout::Prepared, String>>>> = Arc::default();
        let (job_slot, job_bytes, job_layout) = (slot.clone(), bytes.clone(), batch.layout.clone());
        let job: crate::Job = Box::new(move || {
            *lock(&job_slot) = Some(layout::prepare(&job_bytes, &job_layout));
            Ok(Vec::new())
        });
        if offload.run(job).await.is_ok() {
            if let Some(done) = lock(&slot).take() {
                return done.map_err(ImportError::Rejected);
            }
        }
        // The pool is full or failed: the work is done here instead.
    }
    layout::prepare(bytes, &batch.layout).map_err(ImportError::Rejected)
}

/// Rebuilds the metadata of the given series and of every study they belong to, from the
/// indexes in the store. `known` may hold indexes already in memory (by index key), to save
/// reading them back.
async fn rebuild_metadata(
    store: &dyn Store,
    series: &[(Uid, Uid)],
    known: &HashMap<String, Arc<InstanceIndex>>,
    search: Option<(&dyn Index, &str, Option<&str>)>,
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
        // The study's search rows, from the same whole instances, once its metadata is there.
        if let Some((index, part, writer)) = search {
            index
                .execute(crate::search::schema::replace_study(
                    index.dialect(),
                    index.max_params(),
                    part,
                    study,
                    &all,
                    writer,
                ))
                .await?;
        }
    }
    Ok(())
}

/// Rebuilds a study from what the store holds: the metadata of each of its series, its own,
/// and its search rows (clearing every pending mark of it), as the import's last step does.
/// What an interrupted import or STOW-RS request left pending is repaired this way
/// ([`crate::ingest::recover`]). Returns the number of series.
pub async fn repair_study(
    store: &dyn Store,
    study: &Uid,
    search: Option<(&dyn Index, &str)>,
) -> Result<usize, Error> {
    let search = search.map(|(i, p)| (i, p, None));
    let listed = layout::listed_instances(store.list(&layout::study_prefix(study)).await?);
    let mut series: Vec<(Uid, Uid)> = listed.into_iter().map(|l| (l.study, l.series)).collect();
    series.sort();
    series.dedup();
    if series.is_empty() {
        // Nothing left: the study's rows go (and its marks with them).
        if let Some((index, part, _)) = search {
            reindex_study(store, index, part, study, &HashMap::new()).await?;
        }
        return Ok(0);
    }
    rebuild_metadata(store, &series, &HashMap::new(), search).await?;
    Ok(series.len())
}

/// The indexes under `prefix` whose `.dcm` exists with the size the index names. Those not
/// in `known` are read from the store several at once.
pub(crate) async fn valid_indexes(
    store: &dyn Store,
    prefix: &str,
    known: &HashMap<String, Arc<InstanceIndex>>,
) -> Result<Vec<Arc<InstanceIndex>>, Error> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    let listed = layout::listed_instances(store.list(prefix).await?);
    let read = listed.into_iter().map(|listed| async move {
        let key = listed.index_key();
        let idx = match known.get(&key) {
            Some(k) => k.clone(),
            None => match store.get(&key).await? {
                Some(b) => match InstanceIndex::from_json(&key, &b) {
                    Ok(i) => Arc::new(i),
                    Err(_) => return Ok(None), // unreadable: ignored until re-imported
                },
                None => return Ok(None),
            },
        };
        Ok::<_, Error>(idx.matches_file(Some(listed.size)).then_some(idx))
    });
    let found: Vec<Option<Arc<InstanceIndex>>> =
        stream::iter(read).buffered(16).try_collect().await?;
    Ok(found.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{ListedInstance, StoredFile};
    use crate::store::{MemoryStore, ObjectMeta};
    use futures::executor::block_on;
    use std::ops::Range;

    /// A store that, after every write, looks at the instance as a reader would (its index,
    /// then its file) and records what it saw: the pair is either absent (no index, or an index
    /// naming another size) or the index describes exactly that file (its SHA-256).
    #[derive(Debug, Default)]
    struct Observed {
        inner: MemoryStore,
        torn: Mutex<Vec<String>>,
        writes: Mutex<usize>,
    }

    impl Observed {
        async fn look(&self) {
            *lock(&self.writes) += 1;
            let listing = self.inner.list("studies/").await.unwrap_or_default();
            for ListedInstance {
                study, series, sop, ..
            } in layout::listed_instances(listing)
            {
                let Ok(Some(idx)) = self
                    .inner
                    .get(&layout::index_key(&study, &series, &sop))
                    .await
                else {
                    continue;
                };
                let Ok(idx) = InstanceIndex::from_json("index", &idx) else {
                    continue;
                };
                let Ok(Some(file)) = self.inner.get(&idx.file_key()).await else {
                    continue;
                };
                let seen = StoredFile {
                    size: file.len() as u64,
                    sha256: layout::sha256_hex(&file),
                };
                if idx.matches_file(Some(seen.size)) && seen != idx.source {
                    self.torn
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(sop.to_string());
                }
            }
        }
    }

    #[async_trait::async_trait]
    impl Store for Observed {
        async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
            self.inner.get(key).await
        }
        async fn get_range(
            &self,
            key: &str,
            range: Range<u64>,
        ) -> Result<Option<Bytes>, StoreError> {
            self.inner.get_range(key, range).await
        }
        async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
            self.inner.head(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
            self.inner.list(prefix).await
        }
        async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
            self.inner.put(key, data).await?;
            self.look().await;
            Ok(())
        }
        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.inner.delete(key).await?;
            self.look().await;
            Ok(())
        }
    }

    /// A replacement of the same size (here one pixel changed) is never visible as the new
    /// index over the old file, or the old index over the new file, at any step of the import.
    #[test]
    fn a_same_size_replacement_never_pairs_an_index_with_another_file() {
        let old = Bytes::from_static(include_bytes!(
            "../../../tests/fixtures/corpus/ct_small_ele.dcm"
        ));
        let mut new = old.to_vec();
        let last = new.len() - 1;
        new[last] ^= 0x01;
        let new = Bytes::from(new);
        let store = Observed::default();
        block_on(async {
            let layout = ensure_layout(&store, "http://x", "DCM4CHEE")
                .await
                .expect("layout");
            for (bytes, want) in [
                (&old, Status::Imported),
                (&new, Status::Replaced),
                (&old, Status::Replaced),
            ] {
                let batch = Batch::new(layout.clone());
                let got = batch.add(&store, bytes.clone()).await.expect("import");
                assert_eq!(got.status, want);
                batch.finish(&store).await.expect("rebuild");
            }
        });
        assert!(*lock(&store.writes) >= 6, "the store saw every write");
        assert_eq!(*lock(&store.torn), Vec::<String>::new());
    }
}
