//! The local-directory store: each key is a file under the root. Writes go to a temporary file
//! in the same directory and are renamed over the target, so a reader (or a crash) never sees
//! half an object; a new object nothing reads before its writer names it (`put_new`: an
//! instance's version, named by the catalog once written) is written in place instead, which
//! spares the rename and the journal commit it costs. Blocking file IO runs on tokio's
//! blocking pool.
//!
//! Durability (on by default): a write returns once its bytes and its name are on the disk,
//! so the order in which the import pipeline writes (docs/STORAGE-LAYOUT.md: the `.dcm`, then its
//! index) is the order a power cut can observe. The temporary file's data is synced before the
//! rename (else a crash can leave the new name over an empty file: ext4's delayed allocation),
//! and the directory after it (else the rename itself can be lost); a new directory is synced
//! into its parent too. Directory syncs are shared ([`DirSyncs`]): writers that renamed into
//! one directory while another's sync of it waited or ran are covered by one sync that starts
//! after their renames, instead of one each (a STOW-RS request or an import writes hundreds of
//! files into one series directory at once). Costs measured in docs/BENCHMARKS.md;
//! `--no-fsync` turns it off for a bulk load that can be re-run.

use bytes::Bytes;
use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wado_core::store::{
    check_range, validate_key, validate_prefix, ByteStream, ObjectMeta, Store, StoreError,
};

/// A file's modification time in whole seconds since the Unix epoch.
fn unix_seconds(meta: &std::fs::Metadata) -> Option<u64> {
    let t = meta.modified().ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Temporary files start with this; listings skip them.
const TMP_PREFIX: &str = ".tmp-";

/// A store in a local directory.
#[derive(Debug)]
pub struct FsStore {
    root: PathBuf,
    counter: AtomicU64,
    /// Directory syncs, shared; `None` when writes do not wait for the disk.
    syncs: Option<Arc<DirSyncs>>,
}

/// Group commit of directory syncs. A change to a directory (a rename into it, a removal) takes
/// a ticket once done; its writer then needs one sync of the directory that *began* after the
/// change. Syncs of one directory run one at a time, each covering every ticket taken before
/// it began: a writer that finds its ticket covered when its turn comes returns at once.
#[derive(Debug, Default)]
pub struct DirSyncs {
    dirs: Mutex<HashMap<PathBuf, Arc<DirSync>>>,
}

#[derive(Debug, Default)]
struct DirSync {
    /// Tickets handed out (changes done).
    changes: AtomicU64,
    /// The highest ticket a finished sync covers; held while a sync runs.
    synced: Mutex<u64>,
}

impl DirSyncs {
    /// Returns once a sync of `dir` that began after this call's change is on the disk.
    fn after_change(&self, dir: &Path) -> io::Result<()> {
        let d = self
            .dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(dir.to_path_buf())
            .or_default()
            .clone();
        let ticket = d.changes.fetch_add(1, Ordering::AcqRel) + 1;
        let result = {
            let mut synced = d.synced.lock().unwrap_or_else(|p| p.into_inner());
            if *synced >= ticket {
                Ok(())
            } else {
                // Every change with a ticket up to here is done before this sync begins.
                let upto = d.changes.load(Ordering::Acquire);
                let r = sync_dir(dir);
                if r.is_ok() {
                    *synced = upto;
                }
                r
            }
        };
        let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        // The map and this call hold the only references: nobody else is using it.
        if Arc::strong_count(&d) == 2 {
            dirs.remove(dir);
        }
        result
    }
}

impl FsStore {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> io::Result<FsStore> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(FsStore {
            root,
            counter: AtomicU64::new(0),
            syncs: Some(Arc::default()),
        })
    }

    /// Whether writes wait for the disk (see the module doc). On by default.
    pub fn durable(mut self, durable: bool) -> FsStore {
        self.syncs = durable.then(Arc::default);
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    /// Writes an object synchronously (for callers already on a blocking thread).
    pub fn put_blocking(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        put_file(&self.root, &path, data, n, self.syncs.as_deref()).map_err(backend)
    }
}

fn backend(e: io::Error) -> StoreError {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            StoreError::Full(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("blocking task failed: {e}")))?
}

fn put_file(
    root: &Path,
    path: &Path,
    data: &[u8],
    n: u64,
    syncs: Option<&DirSyncs>,
) -> io::Result<()> {
    let durable = syncs.is_some();
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("key without a parent directory"))?;
    if !dir.is_dir() {
        create_dirs(root, dir, durable)?;
    }
    let name = path.file_name().and_then(|s| s.to_str()).unwrap_or("obj");
    let tmp = dir.join(format!("{TMP_PREFIX}{name}-{}-{n}", std::process::id()));
    let write = || -> io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_data()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)?;
        match syncs {
            Some(s) => s.after_change(dir),
            None => Ok(()),
        }
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes files that did not exist, in place (no temporary file, no rename: nothing reads them
/// before their writer names them, see [`Store::put_new`]); when durable, the data of each and
/// then each directory once (two files of one directory: two data syncs, one directory sync).
/// Files this call left part-written by a failure are removed.
fn put_new_files(
    root: &Path,
    files: &[(PathBuf, Bytes)],
    syncs: Option<&DirSyncs>,
) -> io::Result<()> {
    let mut created: Vec<&Path> = Vec::with_capacity(files.len());
    let mut write = || -> io::Result<()> {
        use std::io::Write;
        let mut open = Vec::with_capacity(files.len());
        for (path, data) in files {
            let dir = path
                .parent()
                .ok_or_else(|| io::Error::other("key without a parent directory"))?;
            if !dir.is_dir() {
                create_dirs(root, dir, syncs.is_some())?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            created.push(path);
            f.write_all(data)?;
            open.push(f);
        }
        if syncs.is_some() {
            // All written before the first wait: the disk may take them in one go.
            for f in &open {
                f.sync_data()?;
            }
        }
        Ok(())
    };
    if let Err(e) = write() {
        for path in created {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    if let Some(s) = syncs {
        let mut dirs: Vec<&Path> = files.iter().filter_map(|(p, _)| p.parent()).collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            s.after_change(dir)?;
        }
    }
    Ok(())
}

/// Creates `dir` and its missing parents under `root`, each new one synced into its parent
/// when `durable` (a file in a directory whose own entry is lost is lost too).
fn create_dirs(root: &Path, dir: &Path, durable: bool) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.is_dir() && d != root {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    for m in missing.iter().rev() {
        match std::fs::create_dir(m) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        if durable {
            if let Some(parent) = m.parent() {
                sync_dir(parent)?;
            }
        }
    }
    Ok(())
}

/// fsync of a directory: its entries (a rename, a new file) reach the disk.
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait::async_trait]
impl Store for FsStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.path(key)?;
        blocking(move || match std::fs::read(&path) {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(backend(e)),
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, StoreError> {
        let path = self.path(key)?;
        let key = key.to_owned();
        blocking(move || {
            use std::io::{Read, Seek};
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(backend(e)),
            };
            let size = file.metadata().map_err(backend)?.len();
            check_range(&key, &range, size)?;
            let len = (range.end - range.start) as usize;
            // Plain reads, not a memory map: a file truncated under us (`cp` over it, `rsync
            // --inplace`) or a disk error then fails this read with an error instead of
            // raising SIGBUS in the whole process. read_to_end fills spare capacity, so the
            // buffer is not zeroed first; the cost against a map is one copy, measured in
            // docs/BENCHMARKS.md.
            let mut buf = Vec::with_capacity(len);
            let mut file = file;
            file.seek(io::SeekFrom::Start(range.start))
                .map_err(backend)?;
            file.take(len as u64)
                .read_to_end(&mut buf)
                .map_err(backend)?;
            if buf.len() != len {
                return Err(StoreError::Backend(format!(
                    "{key}: short read ({} of {len} bytes)",
                    buf.len()
                )));
            }
            Ok(Some(Bytes::from(buf)))
        })
        .await
    }

    /// One open file for the whole stream: a file renamed over the key meanwhile (a
    /// replacement) leaves this one readable to its end, so the stream never splices two.
    fn stream_range(&self, key: &str, range: Range<u64>, chunk: u64) -> Option<ByteStream> {
        let path = self.path(key).ok()?;
        let key = key.to_owned();
        let chunk = chunk.max(1);
        let start = (None::<std::fs::File>, range.start);
        Some(Box::pin(futures::stream::try_unfold(
            start,
            move |(file, pos)| {
                let (path, key, end) = (path.clone(), key.clone(), range.end);
                async move {
                    if pos >= end && file.is_some() {
                        return Ok(None);
                    }
                    let want = (end - pos).min(chunk);
                    let (file, bytes) = blocking(move || {
                        use std::io::{Read, Seek};
                        let file = match file {
                            Some(f) => f,
                            None => {
                                let f = std::fs::File::open(&path).map_err(|e| {
                                    if e.kind() == io::ErrorKind::NotFound {
                                        StoreError::NotFound(key.clone())
                                    } else {
                                        backend(e)
                                    }
                                })?;
                                let size = f.metadata().map_err(backend)?.len();
                                check_range(&key, &(pos..end), size)?;
                                f
                            }
                        };
                        let mut buf = Vec::with_capacity(want as usize);
                        let mut reader = &file;
                        reader.seek(io::SeekFrom::Start(pos)).map_err(backend)?;
                        reader.take(want).read_to_end(&mut buf).map_err(backend)?;
                        if buf.len() as u64 != want {
                            return Err(StoreError::Backend(format!(
                                "{key}: short read ({} of {want} bytes; truncated meanwhile?)",
                                buf.len()
                            )));
                        }
                        Ok((file, Bytes::from(buf)))
                    })
                    .await?;
                    if bytes.is_empty() {
                        return Ok(None);
                    }
                    Ok(Some((bytes, (Some(file), pos + want))))
                }
            },
        )))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta {
                key: key.to_owned(),
                size: m.len(),
                modified: unix_seconds(&m),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        validate_prefix(prefix)?;
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        blocking(move || {
            let dir = root.join(&prefix);
            let mut out = Vec::new();
            if !dir.is_dir() {
                return Ok(out);
            }
            for entry in walkdir::WalkDir::new(&dir).follow_links(false) {
                let entry = match entry {
                    Ok(e) => e,
                    // A directory removed while walking is not an error.
                    Err(e)
                        if e.io_error()
                            .is_some_and(|io| io.kind() == io::ErrorKind::NotFound) =>
                    {
                        continue
                    }
                    Err(e) => return Err(StoreError::Backend(e.to_string())),
                };
                if !entry.file_type().is_file()
                    || entry.file_name().to_string_lossy().starts_with(TMP_PREFIX)
                {
                    continue;
                }
                let Ok(rel) = entry.path().strip_prefix(&root) else {
                    continue;
                };
                let Some(key) = rel.to_str() else { continue };
                if validate_key(key).is_err() {
                    continue;
                }
                let meta = entry
                    .metadata()
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                out.push(ObjectMeta {
                    key: key.to_owned(),
                    size: meta.len(),
                    modified: unix_seconds(&meta),
                });
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let (root, syncs) = (self.root.clone(), self.syncs.clone());
        blocking(move || put_file(&root, &path, &data, n, syncs.as_deref()).map_err(backend)).await
    }

    async fn put_new(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.put_new_all(vec![(key.to_owned(), data)]).await
    }

    async fn put_new_all(&self, objects: Vec<(String, Bytes)>) -> Result<(), StoreError> {
        let files = objects
            .into_iter()
            .map(|(k, b)| Ok((self.path(&k)?, b)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let (root, syncs) = (self.root.clone(), self.syncs.clone());
        blocking(move || put_new_files(&root, &files, syncs.as_deref()).map_err(backend)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let syncs = self.syncs.clone();
        blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(backend(e)),
            }
            match (path.parent(), syncs) {
                (Some(dir), Some(s)) => s.after_change(dir).map_err(backend),
                _ => Ok(()),
            }
        })
        .await
    }
}
