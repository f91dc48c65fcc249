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
    /// waits for the disk.
    pub async fn open(&self, durable: bool) -> Result<SharedIndex, String> {
        let index: SharedIndex = match self {
            IndexSpec::Postgres(url) => Arc::new(
                crate::postgres::PgIndex::connect(url)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            IndexSpec::Memory => Arc::new(Blocking(Arc::new(
                SqliteIndex::memory().map_err(|e| e.to_string())?,
            ))),
            IndexSpec::Sqlite(path) => {
                let readers = std::thread::available_parallelism().map_or(2, |n| n.get());
                let path = path.clone();
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                let opened =
                    tokio::task::spawn_blocking(move || SqliteIndex::open(&path, readers, durable))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?;
                Arc::new(Blocking(Arc::new(opened)))
            }
        };
        wado_core::search::open(&*index)
            .await
            .map_err(|e| e.to_string())?;
        Ok(index)
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

/// A SQLite index whose statements run on tokio's blocking threads.
#[derive(Debug)]
pub struct Blocking(pub Arc<SqliteIndex>);

#[async_trait]
impl Index for Blocking {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn execute(&self, statements: Vec<Statement>) -> Result<(), IndexError> {
        let db = self.0.clone();
        tokio::task::spawn_blocking(move || db.execute_now(&statements))
            .await
            .map_err(|e| IndexError(e.to_string()))?
    }

    async fn query(&self, statement: Statement) -> Result<Vec<Row>, IndexError> {
        let db = self.0.clone();
        tokio::task::spawn_blocking(move || db.query_now(&statement))
            .await
            .map_err(|e| IndexError(e.to_string()))?
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
