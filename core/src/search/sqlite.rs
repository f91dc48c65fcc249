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

fn configure(c: &Connection, durable: bool) -> Result<(), IndexError> {
    c.busy_timeout(Duration::from_secs(30)).map_err(err)?;
    // WAL with NORMAL: a commit survives a crash of the process, and of the machine but for
    // the last transactions; OFF (a bulk load that can be re-run) syncs nothing.
    let sync = if durable { "NORMAL" } else { "OFF" };
    c.pragma_update(None, "synchronous", sync).map_err(err)?;
    c.pragma_update(None, "foreign_keys", "OFF").map_err(err)?;
    Ok(())
}

impl SqliteIndex {
    /// Opens (creating) the index file at `path`, with `readers` reading connections;
    /// `durable: false` never waits for the disk (see `wado import --no-fsync`).
    pub fn open(path: &Path, readers: usize, durable: bool) -> Result<SqliteIndex, IndexError> {
        let writer = Connection::open(path).map_err(err)?;
        configure(&writer, durable)?;
        // WAL: readers see the last committed state while a writer works.
        let _: String = writer
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(err)?;
        let readers = (0..readers.max(1))
            .map(|_| {
                let c = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(err)?;
                configure(&c, durable)?;
                Ok(Mutex::new(c))
            })
            .collect::<Result<Vec<_>, IndexError>>()?;
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
