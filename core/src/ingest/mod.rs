//! The one ingest door: every writer (`wado import`, STOW-RS, the read-through cache's fills)
//! stores instances through a [`Batch`], and nothing else writes instances.
//!
//! One instance is stored in three steps, each safe to interrupt:
//!
//! 1. its objects are written under a name of their own, a new generation (`gen`) per write:
//!    `{sop}-{gen}.dcm`, the file as received, and `{sop}-{gen}.index.json`, what was derived
//!    from it (frames, bulk data, metadata). Nothing is ever overwritten, so no reader can pair
//!    an index with a file it does not describe, in any backend;
//! 2. one transaction of the catalog (the search index: SQLite, PostgreSQL, D1) makes that
//!    generation the current version of its SOP Instance UID, updating its series and study
//!    rows by a constant amount of work ([`crate::search::schema::commit_instance`]): this is
//!    the moment the instance exists, for every reader of every process, replica or isolate;
//! 3. the generation it replaced is retired, and its objects deleted once no reader may still
//!    be streaming them ([`sweep`]).
//!
//! An interruption before 2 leaves unreferenced objects (deleted by `wado reindex --prune`,
//! never read); after 2 the instance is stored. Concurrent commits of one partition from one
//! process share a transaction ([`Committer`]): a durable commit waits for the disk once for
//! all of them. Series and study metadata are not written here at all: they are assembled on
//! read from the catalog, keyed by the series' or study's version.

use crate::dicom::uid::Uid;
use crate::error::Error;
use crate::layout::{self, InstanceIndex, LayoutRecord};
use crate::search::rows::InstanceRows;
use crate::search::{schema, Index, IndexError, SharedIndex, Statement, Value};
use crate::store::{Store, StoreError};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

mod commit;
pub mod correct;
mod delete;
pub mod follow;
mod index;
pub mod reject;
pub mod upstream;

pub use commit::Committer;
pub use correct::{correct, Corrected, Correction};
pub use delete::{delete, Deleted};
pub use index::{reindex, sweep, RETIRED_GRACE};

/// One run of writes (a `wado import`, a STOW-RS request, a fill). Files are added one by one,
/// concurrently if the caller wishes; files with the same SOP Instance UID take turns within a
/// process, and the catalog decides between processes.
#[derive(Debug)]
pub struct Batch {
    layout: LayoutRecord,
    /// One lock per SOP Instance UID being written (shared with other runs by
    /// [`Batch::with_turns`]).
    turns: Arc<Turns>,
    /// The catalog, the partition (AE title) this run writes, and the commits it shares.
    catalog: Option<(SharedIndex, String, Arc<Committer>)>,
    /// Where each file is parsed and indexed (CPU work): a pool of the frontend's; here when
    /// `None`.
    offload: Option<Arc<dyn crate::Offload>>,
    /// The most bytes one instance may take once read (a Deflated one inflated).
    max_instance: u64,
    /// When the run writes (seconds since the Unix epoch: the frontend's clock).
    now: u64,
    /// The run's random bytes and a counter: every write's generation is new.
    entropy: [u8; 16],
    counter: AtomicU64,
}

impl Batch {
    /// A run into a store whose layout record is `layout` (see [`ensure_layout`]), at `now`,
    /// with 16 random bytes of the frontend's (`entropy`) to name its writes.
    pub fn new(layout: LayoutRecord, now: u64, entropy: [u8; 16]) -> Batch {
        Batch {
            layout,
            turns: Arc::default(),
            catalog: None,
            offload: None,
            max_instance: layout::MAX_INFLATED,
            now,
            entropy,
            counter: AtomicU64::new(0),
        }
    }

    /// Prepares files (parse, index, metadata) on `offload`'s threads rather than the caller's.
    pub fn with_offload(mut self, offload: Option<Arc<dyn crate::Offload>>) -> Batch {
        self.offload = offload;
        self
    }

    /// Commits each instance to the catalog `index` (for partition `ae_title`): without one,
    /// objects are written and the catalog is built later (`wado reindex`). Commits of runs
    /// that share `committer` share transactions.
    pub fn with_index(
        mut self,
        index: SharedIndex,
        ae_title: &str,
        committer: Option<Arc<Committer>>,
    ) -> Batch {
        let committer = committer.unwrap_or_default();
        self.catalog = Some((index, ae_title.to_owned(), committer));
        self
    }

    /// Takes turns with other runs over `turns` (the STOW-RS requests of one partition).
    pub fn with_turns(mut self, turns: Arc<Turns>) -> Batch {
        self.turns = turns;
        self
    }

    /// Refuses (before anything is written) an instance that inflates past `bytes`.
    pub fn with_max_instance(mut self, bytes: u64) -> Batch {
        self.max_instance = bytes;
        self
    }

    /// Imports one Part-10 file.
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
        self.turns
            .take(&sop, import_file(self, store, bytes, expected))
            .await
    }

    /// Ends the run: the versions it (and others) retired long enough ago are deleted from
    /// the store ([`sweep`], a bounded amount of them).
    pub async fn finish(self, store: &dyn Store) -> Result<(), Error> {
        if let Some((index, part, _)) = &self.catalog {
            sweep(store, &**index, part, self.now, RETIRED_GRACE, 1000).await?;
        }
        Ok(())
    }

    /// What names the next write's version ([`Version::generation`]).
    fn version(&self) -> Version {
        Version {
            entropy: self.entropy,
            n: self.counter.fetch_add(1, Ordering::Relaxed),
            now: self.now,
        }
    }
}

/// What names one write's version: the run's random bytes, the write's number in the run, and
/// the run's time.
#[derive(Debug, Clone, Copy)]
struct Version {
    entropy: [u8; 16],
    n: u64,
    now: u64,
}

impl Version {
    /// The generation of a file of SHA-256 `sha256`: 16 hex digits, unique to this write.
    fn generation(&self, sop: &Uid, sha256: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.entropy);
        h.update(self.n.to_le_bytes());
        h.update(self.now.to_le_bytes());
        h.update(sop.as_str().as_bytes());
        h.update(sha256.as_bytes());
        hex::encode(&h.finalize()[..8])
    }
}

/// What a file must be, checked before anything of it is written.
#[derive(Debug, Clone, Copy)]
pub enum Expected<'a> {
    /// Any instance.
    Any,
    /// An instance of this study.
    Study(&'a Uid),
    /// An instance of one of these studies (a token's reach, [`crate::auth::Reach`]).
    Within(&'a [String]),
    /// This instance (study, series, SOP Instance UID).
    Instance(&'a Uid, &'a Uid, &'a Uid),
    /// An instance of this SOP Class UID and SOP Instance UID (what a C-STORE request names
    /// of the data set it carries).
    Sop {
        /// SOP Class UID.
        class: &'a str,
        /// SOP Instance UID.
        instance: &'a str,
    },
}

/// Work that takes turns by key: one at a time per key, any number of keys at once. Keys
/// nobody holds or waits for are forgotten.
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
    /// The catalog failed; the instance is not stored.
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
    /// The instance is of a study the writer may not reach ([`Expected::Within`]); nothing
    /// was written.
    #[error("{0}")]
    NotPermitted(String),
}

/// The partition's layout record: the catalog's when it has one (the first writer of any
/// process records it, every other reads it, so replicas agree), else the store's; a new
/// store gets one made of `public_url` and `ae_title`, kept in the store too.
pub async fn ensure_layout(
    store: &dyn Store,
    catalog: Option<(&dyn Index, &str)>,
    public_url: &str,
    ae_title: &str,
) -> Result<LayoutRecord, Error> {
    let stored = match store.get(layout::LAYOUT_KEY).await? {
        Some(b) => Some(LayoutRecord::from_json(&b)?),
        None => None,
    };
    let rec = match catalog {
        Some((index, part)) => {
            let proposed = stored
                .clone()
                .unwrap_or_else(|| LayoutRecord::new(public_url, ae_title));
            let text = String::from_utf8_lossy(&proposed.to_json()).into_owned();
            index
                .execute(vec![schema::layout_put(index.dialect(), part, &text)])
                .await?;
            let rows = index
                .query(schema::layout_get(index.dialect(), part))
                .await?;
            let agreed = rows
                .first()
                .and_then(|r| r.first())
                .and_then(Value::as_str)
                .ok_or_else(|| Error::corrupt(layout::LAYOUT_KEY, "the catalog lost it"))?;
            LayoutRecord::from_json(agreed.as_bytes())?
        }
        None => stored
            .clone()
            .unwrap_or_else(|| LayoutRecord::new(public_url, ae_title)),
    };
    if stored.is_none() {
        store
            .put(layout::LAYOUT_KEY, Bytes::from(rec.to_json()))
            .await?;
    }
    Ok(rec)
}

/// Where the instance of `sop` is now: (study, series, gen, sha256).
pub(crate) async fn locate(
    index: &dyn Index,
    part: &str,
    sop: &Uid,
) -> Result<Option<(Uid, Uid, String, String)>, IndexError> {
    let rows = index
        .query(schema::locate_instance(index.dialect(), part, sop))
        .await?;
    Ok(located(&rows))
}

/// The answer of [`schema::locate_instance`]: (study, series, gen, sha256).
fn located(rows: &[crate::search::Row]) -> Option<(Uid, Uid, String, String)> {
    rows.first().and_then(|r| {
        let text = |n: usize| r.get(n).and_then(Value::as_str).unwrap_or("").to_owned();
        Some((
            Uid::parse(&text(0)).ok()?,
            Uid::parse(&text(1)).ok()?,
            text(2),
            text(3),
        ))
    })
}

/// Without a catalog: the generations of `sop` the store holds, their index objects.
async fn stored_versions(
    store: &dyn Store,
    study: &Uid,
    series: &Uid,
    sop: &Uid,
) -> Result<Vec<InstanceIndex>, Error> {
    let listing = store.list(&layout::series_prefix(study, series)).await?;
    let mut out = Vec::new();
    for l in layout::listed_instances(listing)
        .into_iter()
        .filter(|l| &l.sop == sop)
    {
        let key = l.index_key();
        if let Some(b) = store.get(&key).await? {
            if let Ok(idx) = InstanceIndex::from_json(&key, &b) {
                if idx.matches_file(Some(l.size)) && idx.gen == l.gen {
                    out.push(idx);
                }
            }
        }
    }
    Ok(out)
}

/// Imports one Part-10 file (see the module doc for the steps).
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
    let Ready {
        prepared,
        mut index_json,
        rows,
    } = prepare(batch, &bytes).await?;
    let (study, series, sop) = (prepared.study, prepared.series, prepared.sop);
    let mut index = prepared.index;
    let done = |status| Imported {
        status,
        study: study.clone(),
        series: series.clone(),
        sop: sop.clone(),
        sop_class: index.sop_class.clone(),
        warnings: prepared.warnings.clone(),
    };
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
        Expected::Within(studies) if studies.iter().any(|s| s == study.as_str()) => {}
        Expected::Within(_) => {
            return Err(ImportError::NotPermitted(format!(
                "instance {sop} is of study {study}, which this token may not store into"
            )))
        }
        Expected::Sop { class, instance }
            if sop.as_str() == instance && index.sop_class == class => {}
        Expected::Sop { class, instance } => {
            return Err(ImportError::Mismatch(format!(
                "the data set is instance {sop} of SOP class {}, the request names instance {instance} of SOP class {class}",
                index.sop_class
            )))
        }
    }
    let duplicate = |st: &Uid, se: &Uid| {
        ImportError::Duplicate(format!(
            "instance {sop} is already stored in series {se} of study {st}; a SOP Instance UID names one instance, so this one (series {series} of study {study}) is refused"
        ))
    };
    // What is current, to report (and to skip the same file stored again).
    let sha = index.source.sha256.clone();
    let previous: Option<String> = match &batch.catalog {
        Some((catalog, part, _)) => match locate(&**catalog, part, &sop).await? {
            Some((st, se, ..)) if (&st, &se) != (&study, &series) => {
                return Err(duplicate(&st, &se))
            }
            Some((_, _, _, current)) if current == sha => return Ok(done(Status::Unchanged)),
            found => found.map(|(_, _, gen, _)| gen),
        },
        None => {
            let versions = stored_versions(store, &study, &series, &sop)
                .await
                .map_err(|e| match e {
                    Error::Store(e) => ImportError::Store(e),
                    other => ImportError::Store(StoreError::Backend(other.to_string())),
                })?;
            let refs: Vec<&InstanceIndex> = versions.iter().collect();
            match layout::latest_version(&refs) {
                Some(latest) if latest.source.sha256 == sha => return Ok(done(Status::Unchanged)),
                latest => latest.map(|l| l.gen.clone()),
            }
        }
    };
    let replaces = previous.is_some();
    // The version it replaces is named in its index, so that the store alone orders them
    // (`wado reindex`) when the clock does not (two writes within a second).
    if previous.as_deref().is_some_and(|p| !p.is_empty()) {
        index.replaces = previous;
        index_json = Bytes::from(index.to_json());
    }
    // 1. The objects, under a name no other write uses, both at once.
    let (dcm_key, idx_key) = (index.file_key(), index.key());
    if let Err(e) = store
        .put_new_all(vec![
            (dcm_key.clone(), bytes),
            (idx_key.clone(), index_json),
        ])
        .await
    {
        forget(store, &dcm_key, &idx_key).await;
        return Err(e.into());
    }
    // 2. The catalog makes it current.
    let Some((catalog, part, committer)) = &batch.catalog else {
        return Ok(done(if replaces {
            Status::Replaced
        } else {
            Status::Imported
        }));
    };
    let rows = rows.unwrap_or_else(|| crate::search::rows::instance_rows(part, &index));
    let mut statements = schema::commit_instance(catalog.dialect(), part, &rows, batch.now);
    // A rejection note rejects what it references in the same transaction.
    if let Some(r) = reject::of_instance(&index) {
        statements.extend(reject::statements(
            catalog.dialect(),
            part,
            &r,
            &sop,
            batch.now,
            &index.gen,
        ));
    }
    // Committed, and read back: which version is current, and where.
    let read = schema::locate_instance(catalog.dialect(), part, &sop);
    let now = match committer.commit(&**catalog, statements, read).await {
        Ok(rows) => located(&rows),
        Err(e) => {
            forget(store, &dcm_key, &idx_key).await;
            return Err(e.into());
        }
    };
    match now {
        Some((st, se, ..)) if (&st, &se) != (&study, &series) => {
            forget(store, &dcm_key, &idx_key).await;
            Err(duplicate(&st, &se))
        }
        // Ours, or a later write's that replaced it (which retired ours).
        Some(_) => Ok(done(if replaces {
            Status::Replaced
        } else {
            Status::Imported
        })),
        None => {
            forget(store, &dcm_key, &idx_key).await;
            Err(IndexError::new("the commit left no row").into())
        }
    }
}

/// Deletes the objects of a write that never became current (nothing references them).
async fn forget(store: &dyn Store, dcm: &str, index: &str) {
    let _ = store.delete(index).await;
    let _ = store.delete(dcm).await;
}

/// A file ready to be written: parsed and indexed, its version named, its index object and
/// its catalog rows made.
struct Ready {
    prepared: layout::Prepared,
    index_json: Bytes,
    rows: Option<InstanceRows>,
}

impl Ready {
    fn make(
        bytes: &[u8],
        layout: &LayoutRecord,
        version: Version,
        partition: Option<&str>,
    ) -> Result<Ready, String> {
        let mut prepared = layout::prepare(bytes, layout)?;
        prepared.index.gen = version.generation(&prepared.sop, &prepared.index.source.sha256);
        prepared.index.stored_at = version.now;
        let index_json = Bytes::from(prepared.index.to_json());
        let rows = partition.map(|p| crate::search::rows::instance_rows(p, &prepared.index));
        Ok(Ready {
            prepared,
            index_json,
            rows,
        })
    }
}

/// [`Ready::make`] (the CPU work of a write: parse, index, metadata, rows) on the batch's
/// offload pool when it has one ([`crate::Offload::run_write`]: writers wait for their share
/// of it), else here.
async fn prepare(batch: &Batch, bytes: &Bytes) -> Result<Ready, ImportError> {
    let version = batch.version();
    let partition = batch.catalog.as_ref().map(|(_, p, _)| p.clone());
    if let Some(offload) = &batch.offload {
        let slot: Arc<Mutex<Option<Result<Ready, String>>>> = Arc::default();
        let (job_slot, job_bytes, job_layout, job_part) = (
            slot.clone(),
            bytes.clone(),
            batch.layout.clone(),
            partition.clone(),
        );
        let job: crate::Job = Box::new(move || {
            *lock(&job_slot) = Some(Ready::make(
                &job_bytes,
                &job_layout,
                version,
                job_part.as_deref(),
            ));
            Ok(Vec::new())
        });
        if offload.run_write(job).await.is_ok() {
            if let Some(done) = lock(&slot).take() {
                return done.map_err(ImportError::Rejected);
            }
        }
        // The pool is full or failed: the work is done here instead.
    }
    Ready::make(bytes, &batch.layout, version, partition.as_deref()).map_err(ImportError::Rejected)
}

/// The statements of one write, as a [`Committer`] takes them.
pub(crate) type Statements = Vec<Statement>;
