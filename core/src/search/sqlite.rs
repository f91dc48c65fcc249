//! The index in SQLite (rusqlite with its bundled SQLite): a file beside the data, or memory.
//!
//! One connection writes, a few read, all in WAL mode so readers never wait for a writer
//! and several processes (`wado serve` and a `wado import`) can share the file. Statements
//! run on the calling thread: callers on an async runtime wrap [`SqliteIndex`] to run them
//! off it (as `wado-native` does).

use super::{Dialect, Index, IndexError, Row, Statement, Value};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A SQLite index.
#[derive(Debug)]
pub struct SqliteIndex {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

fn err(e: rusqlite::Error) -> IndexError {
    IndexError(e.to_string())
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Value::Int(i) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(*i)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// How long a writer waits for another one (another process included).
const BUSY: Duration = Duration::from_secs(30);

/// Why opening failed: locked by another connection for now, or anything else.
enum OpenError {
    Busy(IndexError),
    Other(IndexError),
}
use OpenError::{Busy, Other};

impl From<rusqlite::Error> for OpenError {
    fn from(e: rusqlite::Error) -> OpenError {
        let busy = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        if busy {
            Busy(err(e))
        } else {
            Other(err(e))
        }
    }
}

fn configure(c: &Connection, durable: bool) -> Result<(), rusqlite::Error> {
    c.busy_timeout(BUSY)?;
    // WAL with NORMAL: a commit survives a crash of the process, and of the machine but for
    // the last transactions; OFF (a bulk load that can be re-run) syncs nothing.
    let sync = if durable { "NORMAL" } else { "OFF" };
    c.pragma_update(None, "synchronous", sync)?;
    c.pragma_update(None, "foreign_keys", "OFF")?;
    Ok(())
}

impl SqliteIndex {
    /// Opens (creating) the index file at `path`, with `readers` reading connections;
    /// `durable: false` never waits for the disk (see `wado import --no-fsync`).
    pub fn open(path: &Path, readers: usize, durable: bool) -> Result<SqliteIndex, IndexError> {
        // Two processes creating the file at once (two `wado import` runs) can find it locked
        // while the other switches it to WAL: SQLite answers that at once, without its busy
        // handler, so the attempt is repeated for as long as the busy timeout would wait.
        let mut waited = Duration::ZERO;
        loop {
            match SqliteIndex::open_once(path, readers, durable) {
                Err(Busy(_)) if waited < BUSY => {
                    std::thread::sleep(Duration::from_millis(20));
                    waited += Duration::from_millis(20);
                }
                Err(Busy(e)) | Err(Other(e)) => return Err(e),
                Ok(index) => return Ok(index),
            }
        }
    }

    fn open_once(path: &Path, readers: usize, durable: bool) -> Result<SqliteIndex, OpenError> {
        let writer = Connection::open(path)?;
        configure(&writer, durable)?;
        // WAL: readers see the last committed state while a writer works.
        let _: String = writer.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        let readers = (0..readers.max(1))
            .map(|_| {
                let c = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&c, durable)?;
                Ok(Mutex::new(c))
            })
            .collect::<Result<Vec<_>, OpenError>>()?;
        Ok(SqliteIndex {
            writer: Mutex::new(writer),
            readers,
            next: AtomicUsize::new(0),
        })
    }

    /// An index in memory (one connection), for tests.
    pub fn memory() -> Result<SqliteIndex, IndexError> {
        let c = Connection::open_in_memory().map_err(err)?;
        Ok(SqliteIndex {
            writer: Mutex::new(c),
            readers: Vec::new(),
            next: AtomicUsize::new(0),
        })
    }

    /// Runs statements in one transaction, on this thread.
    pub fn execute_now(&self, statements: &[Statement]) -> Result<(), IndexError> {
        let mut c = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = c
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        for s in statements {
            let mut st = tx.prepare_cached(&s.sql).map_err(err)?;
            // Stepped to the end: some statements (PRAGMAs) answer a row.
            let mut rows = st
                .query(rusqlite::params_from_iter(s.params.iter()))
                .map_err(err)?;
            while rows.next().map_err(err)?.is_some() {}
        }
        tx.commit().map_err(err)
    }

    /// Runs a query, on this thread.
    pub fn query_now(&self, s: &Statement) -> Result<Vec<Row>, IndexError> {
        let conn = if self.readers.is_empty() {
            &self.writer
        } else {
            &self.readers[self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len()]
        };
        let c = conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = c.prepare_cached(&s.sql).map_err(err)?;
        let n = st.column_count();
        let mut rows = st
            .query(rusqlite::params_from_iter(s.params.iter()))
            .map_err(err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(err)? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i).map_err(err)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(f) => Value::Int(f as i64),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Value::Text(String::from_utf8_lossy(t).into_owned())
                    }
                });
            }
            out.push(row);
        }
        Ok(out)
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Index for SqliteIndex {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn execute(&self, statements: Vec<Statement>) -> Result<(), IndexError> {
        self.execute_now(&statements)
    }

    async fn query(&self, statement: Statement) -> Result<Vec<Row>, IndexError> {
        self.query_now(&statement)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Several openers of one new file at once (two `wado import` runs into one data
    /// directory): each gets the index, none fails with "database is locked".
    #[test]
    fn openers_of_one_new_file_at_once_all_succeed() {
        let dir = std::env::temp_dir().join(format!("wado-sqlite-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for round in 0..30 {
            let path = dir.join(format!("index{round}.sqlite"));
            let start = std::sync::Arc::new(std::sync::Barrier::new(4));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let (path, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        SqliteIndex::open(&path, 2, true).map(|_| ())
                    })
                })
                .collect();
            for o in openers {
                let opened = o.join().unwrap();
                assert!(opened.is_ok(), "round {round}: {opened:?}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
