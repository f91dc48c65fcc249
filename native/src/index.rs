//! The search index natively: which database (`--index`), and running the core's statements
//! there off the async runtime. The schema, the SQL and what is indexed are the core's
//! ([`wado_core::search`]); this file only opens connections and executes.

use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wado_core::search::sqlite::SqliteIndex;
use wado_core::search::{Dialect, Index, IndexError, Row, SharedIndex, Statement};

/// The index file's name in a directory store.
pub const INDEX_FILE: &str = "wado-index.sqlite";

/// Where the index lives, from `--index` and `--data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexSpec {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// SQLite in memory, rebuilt from the store when the server starts (an S3 store without
    /// `--index`).
    Memory,
    /// A PostgreSQL database (`postgres://...`): the index several servers share.
    Postgres(String),
}

impl IndexSpec {
    /// `--index` as given (a path, `sqlite:PATH`, `memory`, or `postgres://...`), else the default for the
    /// store: `{data}/wado-index.sqlite` for a directory, memory for S3.
    pub fn resolve(index: Option<&str>, data: &Path) -> Result<IndexSpec, String> {
        match index {
            Some("memory") | Some(":memory:") => Ok(IndexSpec::Memory),
            Some(s) if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
                Ok(IndexSpec::Postgres(s.to_owned()))
            }
            Some(s) => Ok(IndexSpec::Sqlite(PathBuf::from(
                s.strip_prefix("sqlite:").unwrap_or(s),
            ))),
            None if data.to_string_lossy().starts_with("s3://") => Ok(IndexSpec::Memory),
            None => Ok(IndexSpec::Sqlite(data.join(INDEX_FILE))),
        }
    }

    /// Opens it, with the core's schema (created, or checked); `durable: false` never
    /// waits for the disk. Searches run at most `limits.concurrent` at once, each for at
    /// most `limits.timeout` (then 503 with Retry-After).
    pub async fn open_with(
        &self,
        durable: bool,
        limits: QueryLimits,
    ) -> Result<SharedIndex, String> {
        let index = self.connect(durable, limits).await?;
        wado_core::search::open(&*index)
            .await
            .map_err(|e| e.to_string())?;
        Ok(index)
    }

    /// Connects to it without touching its schema (`wado reindex` replaces one of another
    /// version).
    pub async fn connect(&self, durable: bool, limits: QueryLimits) -> Result<SharedIndex, String> {
        let readers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let open_file = |path: PathBuf, durable: bool, keep: Option<tempfile::TempDir>| async move {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            let opened =
                tokio::task::spawn_blocking(move || SqliteIndex::open(&path, readers, durable))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?
                    .with_timeout(limits.timeout);
            Ok::<SharedIndex, String>(Arc::new(Blocking {
                db: Arc::new(opened),
                _dir: keep,
            }))
        };
        let index: SharedIndex = match self {
            IndexSpec::Postgres(url) => Arc::new(
                crate::postgres::PgIndex::connect(url, limits.timeout)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            // A file nobody keeps (removed with the index): SQLite then has its readers beside
            // its writer, which a database in memory would not.
            IndexSpec::Memory => {
                let dir = tempfile::Builder::new()
                    .prefix("wado-index-")
                    .tempdir()
                    .map_err(|e| format!("a temporary index: {e}"))?;
                open_file(dir.path().join(INDEX_FILE), false, Some(dir)).await?
            }
            IndexSpec::Sqlite(path) => open_file(path.clone(), durable, None).await?,
        };
        Ok(Arc::new(Bounded::new(index, limits)))
    }

    /// [`IndexSpec::open_with`] the default limits.
    pub async fn open(&self, durable: bool) -> Result<SharedIndex, String> {
        self.open_with(durable, QueryLimits::default()).await
    }
}

/// What searches may cost the index.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Searches running at once; more wait their turn (as long as `timeout`).
    pub concurrent: usize,
    /// Searches waiting at once; past them, a search is turned away at once (503). Waiting
    /// costs a future, not a thread: many cheap searches (a viewer opening studies, a
    /// proxy's pooled connections) queue for a moment rather than fail.
    pub waiting: usize,
    /// How long one search may run (and wait for its turn).
    pub timeout: std::time::Duration,
}

impl Default for QueryLimits {
    fn default() -> QueryLimits {
        QueryLimits {
            concurrent: std::thread::available_parallelism().map_or(2, |n| n.get()) * 2,
            waiting: 256,
            timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// An index whose searches (QIDO-RS) take turns: at most [`QueryLimits::concurrent`] run, a
/// bounded number wait, each for at most the timeout; past that, the search is busy (503).
/// The catalog's own lookups (a writer's, a retrieval's) and the statements that change the
/// index are not limited here.
#[derive(Debug)]
pub struct Bounded {
    inner: SharedIndex,
    running: Arc<tokio::sync::Semaphore>,
    waiting: std::sync::atomic::AtomicUsize,
    limits: QueryLimits,
}

impl Bounded {
    /// `inner` with these limits.
    pub fn new(inner: SharedIndex, limits: QueryLimits) -> Bounded {
        Bounded {
            inner,
            running: Arc::new(tokio::sync::Semaphore::new(limits.concurrent.max(1))),
            waiting: Default::default(),
            limits,
        }
    }
}

#[async_trait]
impl Index for Bounded {
    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }

    fn max_params(&self) -> usize {
        self.inner.max_params()
    }

    async fn execute(&self, statements: Vec<Statement>) -> Result<(), IndexError> {
        self.inner.execute(statements).await
    }

    async fn query(&self, statement: Statement) -> Result<Vec<Row>, IndexError> {
        self.inner.query(statement).await
    }

    async fn execute_then_read(
        &self,
        statements: Vec<Statement>,
        reads: Vec<Statement>,
    ) -> Result<Vec<Vec<Row>>, IndexError> {
        self.inner.execute_then_read(statements, reads).await
    }

    async fn search(&self, statement: Statement) -> Result<Vec<Row>, IndexError> {
        use std::sync::atomic::Ordering;
        let busy = || IndexError::busy("too many searches at once; retry shortly");
        let permit = match self.running.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.limits.waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(busy());
                }
                let waited =
                    tokio::time::timeout(self.limits.timeout, self.running.clone().acquire_owned())
                        .await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                match waited {
                    Ok(Ok(p)) => p,
                    _ => return Err(busy()),
                }
            }
        };
        let rows = self.inner.search(statement).await;
        drop(permit);
        rows
    }
}

/// The index a command that exits afterwards (`import`, `reindex`) writes: `--index` (or the
/// store's default) opened, or `None` when that is an index in memory, which would be lost.
pub async fn open_lasting(
    index: Option<&str>,
    data: &Path,
    durable: bool,
) -> Result<Option<SharedIndex>, String> {
    match IndexSpec::resolve(index, data).map_err(|e| format!("--index {e}"))? {
        IndexSpec::Memory => Ok(None),
        spec => spec
            .open(durable)
            .await
            .map(Some)
            .map_err(|e| format!("cannot open the search index: {e}")),
    }
}

/// [`open_lasting`] without the schema check (`wado reindex` makes the schema).
pub async fn connect_lasting(
    index: Option<&str>,
    data: &Path,
) -> Result<Option<SharedIndex>, String> {
    match IndexSpec::resolve(index, data).map_err(|e| format!("--index {e}"))? {
        IndexSpec::Memory => Ok(None),
        spec => spec
            .connect(true, QueryLimits::default())
            .await
            .map(Some)
            .map_err(|e| format!("cannot open the search index: {e}")),
    }
}

/// A SQLite index whose statements run on tokio's blocking threads (and the temporary
/// directory of an index nobody keeps, removed with it).
#[derive(Debug)]
pub struct Blocking {
    db: Arc<SqliteIndex>,
    _dir: Option<tempfile::TempDir>,
}

#[async_trait]
impl Index for Blocking {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn execute(&self, statements: Vec<Statement>) -> Result<(), IndexError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.execute_now(&statements))
            .await
            .map_err(|e| IndexError::new(e.to_string()))?
    }

    async fn query(&self, statement: Statement) -> Result<Vec<Row>, IndexError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.query_now(&statement))
            .await
            .map_err(|e| IndexError::new(e.to_string()))?
    }

    async fn execute_then_read(
        &self,
        statements: Vec<Statement>,
        reads: Vec<Statement>,
    ) -> Result<Vec<Vec<Row>>, IndexError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.execute_then_read_now(&statements, &reads))
            .await
            .map_err(|e| IndexError::new(e.to_string()))?
    }
}

/// An "index" that writes every statement to an SQL file instead (`wado reindex --sql-out`):
/// to load elsewhere, e.g. `wrangler d1 execute DB --file` for the worker's D1.
#[derive(Debug, Default)]
pub struct SqlFile {
    /// The statements, as literal SQL lines.
    pub lines: Mutex<Vec<String>>,
}

#[async_trait]
impl Index for SqlFile {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn execute(&self, statements: Vec<Statement>) -> Result<(), IndexError> {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.extend(statements.iter().map(|s| s.to_literal_sql(Dialect::Sqlite)));
        Ok(())
    }

    async fn query(&self, _statement: Statement) -> Result<Vec<Row>, IndexError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A search index whose queries take a second.
    #[derive(Debug)]
    struct Slow;

    #[async_trait]
    impl Index for Slow {
        fn dialect(&self) -> Dialect {
            Dialect::Sqlite
        }
        async fn execute(&self, _: Vec<Statement>) -> Result<(), IndexError> {
            Ok(())
        }
        async fn query(&self, _: Statement) -> Result<Vec<Row>, IndexError> {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(Vec::new())
        }
    }

    /// One search at a time: the next waits its turn for as long as the timeout, then is busy;
    /// past the waiting ones allowed, a search is busy at once.
    #[tokio::test(start_paused = true)]
    async fn searches_take_bounded_turns() {
        let index = Arc::new(Bounded::new(
            Arc::new(Slow),
            QueryLimits {
                concurrent: 1,
                waiting: 2,
                timeout: Duration::from_millis(1500),
            },
        ));
        let q = || Statement::plain("SELECT 1");
        let first = tokio::spawn({
            let i = index.clone();
            async move { i.search(Statement::plain("SELECT 1")).await }
        });
        tokio::task::yield_now().await;
        // Waits 1 s for the first, then runs 1 s: done within its turn.
        let second = tokio::spawn({
            let i = index.clone();
            async move { i.search(Statement::plain("SELECT 1")).await }
        });
        let third = tokio::spawn({
            let i = index.clone();
            async move { i.search(Statement::plain("SELECT 1")).await }
        });
        tokio::task::yield_now().await;
        // Two wait already: the queue is full.
        let e = index.search(q()).await.unwrap_err();
        assert!(e.busy);
        assert!(first.await.unwrap().is_ok());
        assert!(second.await.unwrap().is_ok());
        // The third waited 2 s for its turn, past its 1.5 s.
        let e = third.await.unwrap().unwrap_err();
        assert!(e.busy, "{e}");
        assert!(index.search(q()).await.is_ok(), "served again once idle");
        // The catalog's own lookups are never turned away.
        let lookups: Vec<_> = (0..8)
            .map(|_| {
                let i = index.clone();
                tokio::spawn(async move { i.query(Statement::plain("SELECT 1")).await })
            })
            .collect();
        for l in lookups {
            assert!(l.await.unwrap().is_ok());
        }
    }
}
