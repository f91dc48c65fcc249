//! `wado import`: walk files and folders and feed every file to one import
//! [`Batch`](wado_core::ingest::Batch) of the core, on every core (the batch takes
//! care of files sharing a SOP Instance UID), then run its metadata rebuilds in parallel.

use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wado_core::ingest::{self as core_import, Batch, ImportError, Status};
use wado_core::store::Store;

/// What happened to one input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileResult {
    /// Imported, unchanged or replaced; with what was stored only as a best effort.
    Done(Status, Vec<String>),
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
    /// A file to hold an exclusive lock on while series metadata is rebuilt, when the store
    /// is a directory (`{data}/.wado-rebuild.lock`): two imports into one directory then take
    /// turns at the rebuild, and the later one lists everything the earlier one stored.
    pub rebuild_lock: Option<PathBuf>,
    /// The search index to keep in step (see `Batch::with_index`).
    pub index: Option<wado_core::search::SharedIndex>,
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
    let layout = core_import::ensure_layout(&*store, &opts.public_url, &opts.ae_title).await?;
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
    let batch = match &opts.index {
        Some(index) => {
            // Studies an earlier, interrupted import left pending first.
            wado_core::ingest::recover(&*store, &**index, &opts.ae_title).await?;
            Batch::new(layout)
                .with_index(index.clone(), &opts.ae_title)
                .writing_as(&format!("import {:016x}", rand::random::<u64>()))
        }
        None => Batch::new(layout),
    };
    let batch = Arc::new(batch);
    let task_store = store.clone();
    let task_batch = batch.clone();
    let tasks = files.into_iter().map(move |path| {
        let store = task_store.clone();
        let batch = task_batch.clone();
        tokio::spawn(async move {
            let result = match tokio::fs::read(&path).await {
                Err(e) => Err(FileResult::Failed(format!("cannot read: {e}"))),
                Ok(bytes) => match batch.add(&*store, bytes::Bytes::from(bytes)).await {
                    Ok(done) => Ok((done.status, done.warnings)),
                    Err(
                        ImportError::Rejected(reason)
                        | ImportError::Mismatch(reason)
                        | ImportError::Duplicate(reason)
                        | ImportError::TooLarge(reason),
                    ) => Err(FileResult::Rejected(reason)),
                    Err(e @ (ImportError::Store(_) | ImportError::Index(_))) => {
                        Err(FileResult::Failed(e.to_string()))
                    }
                },
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
            Ok((status, warnings)) => {
                match status {
                    Status::Imported => summary.imported += 1,
                    Status::Unchanged => summary.unchanged += 1,
                    Status::Replaced => summary.replaced += 1,
                }
                FileResult::Done(status, warnings)
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
    drop(results);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let batch = Arc::into_inner(batch).ok_or_else(|| {
        wado_core::Error::Store(wado_core::store::StoreError::Backend(
            "an import task outlived the run".into(),
        ))
    })?;
    // Concurrent imports into one directory: each rebuild lists the store after taking the
    // lock, so the last one sees every instance any of them stored (without it, an earlier
    // listing written last made instances vanish from series metadata).
    let _lock = match &opts.rebuild_lock {
        Some(path) => Some(lock_exclusive(path.clone()).await.map_err(|e| {
            wado_core::Error::Store(wado_core::store::StoreError::Backend(format!(
                "{}: {e}",
                path.display()
            )))
        })?),
        None => None,
    };
    // Studies rebuilt in parallel, four at a time.
    let jobs = batch.rebuilds().into_iter().map(|job| {
        let store = store.clone();
        tokio::spawn(async move { job.run(&*store).await })
    });
    let mut rebuilds = futures::stream::iter(jobs).buffer_unordered(4);
    while let Some(r) = rebuilds.next().await {
        r.map_err(|e| {
            wado_core::Error::Store(wado_core::store::StoreError::Backend(e.to_string()))
        })??;
    }
    // The planner's statistics, once per run.
    if let Some(index) = &opts.index {
        index
            .execute(wado_core::search::schema::analyze(index.dialect()))
            .await?;
    }
    Ok(summary)
}

/// Opens `path` and takes an exclusive lock on it (waiting for other holders), off the async
/// threads; the lock goes with the returned file.
async fn lock_exclusive(path: PathBuf) -> std::io::Result<std::fs::File> {
    tokio::task::spawn_blocking(move || {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        f.lock()?;
        Ok(f)
    })
    .await
    .map_err(std::io::Error::other)?
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
