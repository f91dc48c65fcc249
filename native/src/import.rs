//! `wado import`: walk files and folders, import every DICOM Part-10 file with
//! `wado_core::import` on every core, then rebuild the metadata of the series touched.

use futures::StreamExt;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wado_core::import::{self as core_import, ImportError, Status};
use wado_core::layout::InstanceIndex;
use wado_core::route::Uid;
use wado_core::store::Store;

/// What happened to one input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileResult {
    /// Imported, unchanged or replaced.
    Done(Status),
    /// Not imported, with the reason.
    Rejected(String),
    /// An IO error reading the file or writing the store.
    Failed(String),
}

/// The totals of an import.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// New instances.
    pub imported: usize,
    /// Files already stored.
    pub unchanged: usize,
    /// Instances replaced by a different file.
    pub replaced: usize,
    /// Files rejected.
    pub rejected: usize,
    /// IO errors.
    pub failed: usize,
}

impl Summary {
    /// True when nothing was rejected and nothing failed.
    pub fn is_clean(&self) -> bool {
        self.rejected == 0 && self.failed == 0
    }
}

/// Options of an import run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Public URL recorded in a new store's layout (BulkDataURIs in stored metadata).
    pub public_url: String,
    /// AE title recorded in a new store's layout.
    pub ae_title: String,
    /// Files imported at once.
    pub concurrency: usize,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

/// Lists the files under `paths` (files as given, folders walked), sorted.
pub fn collect_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_file() {
            files.push(p.clone());
            continue;
        }
        if !p.exists() {
            errors.push((p.clone(), "no such file or directory".to_owned()));
            continue;
        }
        for entry in walkdir::WalkDir::new(p)
            .follow_links(true)
            .sort_by_file_name()
        {
            match entry {
                Ok(e) if e.file_type().is_file() => files.push(e.into_path()),
                Ok(_) => {}
                Err(e) => errors.push((
                    e.path().map(Path::to_path_buf).unwrap_or_else(|| p.clone()),
                    e.to_string(),
                )),
            }
        }
    }
    (files, errors)
}

/// Imports `paths` into the store. `report` is called once per file, in completion order.
pub async fn run(
    store: Arc<dyn Store>,
    paths: &[PathBuf],
    opts: &Options,
    mut report: impl FnMut(&Path, &FileResult),
) -> Result<Summary, wado_core::Error> {
    let layout =
        Arc::new(core_import::ensure_layout(&*store, &opts.public_url, &opts.ae_title).await?);
    let (files, walk_errors) = collect_files(paths);
    let mut summary = Summary::default();
    for (p, e) in &walk_errors {
        summary.failed += 1;
        report(p, &FileResult::Failed(e.clone()));
    }
    let bar = opts.progress.then(|| {
        let b = indicatif::ProgressBar::new(files.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} files {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        b
    });
    let mut touched: BTreeSet<(Uid, Uid)> = BTreeSet::new();
    let mut known: HashMap<String, Arc<InstanceIndex>> = HashMap::new();
    let task_store = store.clone();
    // Two files with one SOP Instance UID in the same run must not interleave their writes
    // (index of one, file of the other): imports of one SOP UID take turns.
    let in_flight: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
        Arc::default();
    let tasks = files.into_iter().map(move |path| {
        let store = task_store.clone();
        let layout = layout.clone();
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            let result = match tokio::fs::read(&path).await {
                Err(e) => Err(FileResult::Failed(format!("cannot read: {e}"))),
                Ok(bytes) => {
                    let sop = wado_core::scan::scan_meta(&bytes)
                        .ok()
                        .and_then(|m| m.media_storage_sop_instance);
                    let turn = sop.as_ref().map(|s| {
                        in_flight
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(s.clone())
                            .or_default()
                            .clone()
                    });
                    let guard = match &turn {
                        Some(t) => Some(t.lock().await),
                        None => None,
                    };
                    let r =
                        core_import::import_file(&*store, &layout, bytes::Bytes::from(bytes)).await;
                    drop(guard);
                    if let (Some(s), Some(t)) = (&sop, turn) {
                        let mut map = in_flight.lock().unwrap_or_else(|p| p.into_inner());
                        // The map and this task hold the only references: nobody waits.
                        if Arc::strong_count(&t) == 2 {
                            map.remove(s);
                        }
                    }
                    match r {
                        Ok(done) => Ok(done),
                        Err(ImportError::Rejected(reason)) => Err(FileResult::Rejected(reason)),
                        Err(ImportError::Store(e)) => Err(FileResult::Failed(e.to_string())),
                    }
                }
            };
            (path, result)
        })
    });
    let mut results = futures::stream::iter(tasks).buffer_unordered(opts.concurrency.max(1));
    while let Some(joined) = results.next().await {
        let (path, result) = match joined {
            Ok(r) => r,
            Err(e) => (
                PathBuf::from("?"),
                Err(FileResult::Failed(format!("import task failed: {e}"))),
            ),
        };
        let file_result = match result {
            Ok(done) => {
                match done.status {
                    Status::Imported => summary.imported += 1,
                    Status::Unchanged => summary.unchanged += 1,
                    Status::Replaced => summary.replaced += 1,
                }
                if let Some(idx) = done.index {
                    known.insert(
                        wado_core::layout::index_key(&done.study, &done.series, &done.sop),
                        idx,
                    );
                }
                touched.insert((done.study, done.series));
                FileResult::Done(done.status)
            }
            Err(r) => {
                match r {
                    FileResult::Rejected(_) => summary.rejected += 1,
                    _ => summary.failed += 1,
                }
                r
            }
        };
        if let Some(b) = &bar {
            b.inc(1);
        }
        report(&path, &file_result);
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let series: Vec<(Uid, Uid)> = touched.into_iter().collect();
    rebuild(store, series, known).await?;
    Ok(summary)
}

/// Rebuilds the metadata of the series (and their studies), studies in parallel.
async fn rebuild(
    store: Arc<dyn Store>,
    series: Vec<(Uid, Uid)>,
    known: HashMap<String, Arc<InstanceIndex>>,
) -> Result<(), wado_core::Error> {
    let mut by_study: HashMap<Uid, Vec<(Uid, Uid)>> = HashMap::new();
    for s in series {
        by_study.entry(s.0.clone()).or_default().push(s);
    }
    let known = Arc::new(known);
    let jobs = by_study.into_values().map(|list| {
        let store = store.clone();
        let known = known.clone();
        tokio::spawn(async move { core_import::rebuild_metadata(&*store, &list, &known).await })
    });
    let mut results = futures::stream::iter(jobs).buffer_unordered(4);
    while let Some(r) = results.next().await {
        r.map_err(|e| {
            wado_core::Error::Store(wado_core::store::StoreError::Backend(e.to_string()))
        })??;
    }
    Ok(())
}

/// Prints the one-line summary.
pub fn summary_line(s: &Summary, elapsed: Duration) -> String {
    let total = s.imported + s.unchanged + s.replaced + s.rejected + s.failed;
    let secs = elapsed.as_secs_f64().max(1e-9);
    format!(
        "imported {}, unchanged {}, replaced {}, rejected {}{} ({} files in {:.1} s, {:.0} files/s)",
        s.imported,
        s.unchanged,
        s.replaced,
        s.rejected,
        if s.failed > 0 { format!(", failed {}", s.failed) } else { String::new() },
        total,
        secs,
        total as f64 / secs
    )
}

/// Times a closure.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}
