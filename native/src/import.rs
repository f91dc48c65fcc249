//! `wado import`: walk files and folders and feed every file to one import
//! [`Batch`](wado_core::ingest::Batch) of the core, the ingest door every writer takes, on
//! every core (the batch takes care of files sharing a SOP Instance UID; the catalog, of
//! other writers).

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
    /// The catalog (search index) each instance is committed to (see `Batch::with_index`);
    /// without one, objects are written and `wado reindex` builds the catalog.
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Some(index) = &opts.index {
        // Versions retired long enough ago, by this or another writer, go first.
        wado_core::ingest::sweep(
            &*store,
            &**index,
            &opts.ae_title,
            now,
            wado_core::ingest::RETIRED_GRACE,
            100_000,
        )
        .await?;
    }
    let catalog = opts.index.as_ref().map(|i| {
        (
            &**i as &dyn wado_core::search::Index,
            opts.ae_title.as_str(),
        )
    });
    let layout =
        core_import::ensure_layout(&*store, catalog, &opts.public_url, &opts.ae_title).await?;
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
    let batch = Batch::new(layout, now, rand::random());
    let batch = match &opts.index {
        Some(index) => batch.with_index(index.clone(), &opts.ae_title, None),
        None => batch,
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
                        | ImportError::NotPermitted(reason)
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
    batch.finish(&*store).await?;
    // The planner's statistics, once per run.
    if let Some(index) = &opts.index {
        index
            .execute(wado_core::search::schema::analyze(index.dialect()))
            .await?;
    }
    Ok(summary)
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
