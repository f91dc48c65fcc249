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
    /// How long one query may run before it is interrupted (a busy [`IndexError`]).
    timeout: Option<Duration>,
}

fn err(e: rusqlite::Error) -> IndexError {
    IndexError::new(e.to_string())
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
    // The catalog is the truth of what exists: a commit the server answered for must survive
    // a power cut (WAL with FULL: the log is synced at each commit; concurrent writers' commits
    // share one, `crate::ingest::Committer`). OFF (a bulk load that can be re-run) syncs
    // nothing.
    let sync = if durable { "FULL" } else { "OFF" };
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
        // The writer's statements are the same few with new values each time: without the
        // query planner stability guarantee, SQLite prepares a statement again whenever a
        // value it looked at while planning (a bound parameter compared in a subquery) is
        // bound anew: two of each instance's commit statements, a third of a commit's time.
        // Searches run on the readers, whose plans may use the values (a GLOB's prefix).
        writer.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
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
            timeout: None,
        })
    }

    /// Interrupts every query that runs longer than `timeout` (its error is busy: 503).
    pub fn with_timeout(mut self, timeout: Duration) -> SqliteIndex {
        self.timeout = Some(timeout);
        self
    }

    /// An index in memory (one connection), for tests.
    pub fn memory() -> Result<SqliteIndex, IndexError> {
        let c = Connection::open_in_memory().map_err(err)?;
        Ok(SqliteIndex {
            writer: Mutex::new(c),
            readers: Vec::new(),
            next: AtomicUsize::new(0),
            timeout: None,
        })
    }

    /// Runs statements in one transaction, on this thread.
    pub fn execute_now(&self, statements: &[Statement]) -> Result<(), IndexError> {
        self.execute_then_read_now(statements, &[]).map(|_| ())
    }

    /// Runs `statements` in one transaction and then, in it, the queries `reads`; returns
    /// their rows once the transaction committed ([`Index::execute_then_read`]), on this thread.
    pub fn execute_then_read_now(
        &self,
        statements: &[Statement],
        reads: &[Statement],
    ) -> Result<Vec<Vec<Row>>, IndexError> {
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
        let read = reads
            .iter()
            .map(|r| Self::run_query(&tx, r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(read)
    }

    /// Runs a query, on this thread.
    pub fn query_now(&self, s: &Statement) -> Result<Vec<Row>, IndexError> {
        let conn = if self.readers.is_empty() {
            &self.writer
        } else {
            &self.readers[self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len()]
        };
        let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
        // The deadline: SQLite calls back every 1,000 virtual machine steps (microseconds).
        let deadline = self.timeout.map(|t| (t, std::time::Instant::now() + t));
        if let Some((_, at)) = deadline {
            c.progress_handler(1000, Some(move || std::time::Instant::now() > at))
                .map_err(err)?;
        }
        let rows = Self::run_query(&c, s);
        if deadline.is_some() {
            c.progress_handler(0, None::<fn() -> bool>).map_err(err)?;
        }
        rows.map_err(|e| match (e.sqlite_error_code(), deadline) {
            (Some(rusqlite::ErrorCode::OperationInterrupted), Some((t, _))) => {
                IndexError::busy(format!(
                    "the search ran past its {} s; narrow it, or retry",
                    t.as_secs_f64()
                ))
            }
            _ => err(e),
        })
    }

    fn run_query(c: &Connection, s: &Statement) -> Result<Vec<Row>, rusqlite::Error> {
        let mut st = c.prepare_cached(&s.sql)?;
        let n = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(s.params.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(f) => Value::Int(f as i64),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        // The catalog holds UTF-8 (checked fast; lossy only if not).
                        Value::Text(match std::str::from_utf8(t) {
                            Ok(s) => s.to_owned(),
                            Err(_) => String::from_utf8_lossy(t).into_owned(),
                        })
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

    async fn execute_then_read(
        &self,
        statements: Vec<Statement>,
        reads: Vec<Statement>,
    ) -> Result<Vec<Vec<Row>>, IndexError> {
        self.execute_then_read_now(&statements, &reads)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A search past its deadline is stopped (busy: 503 with Retry-After) in about the
    /// deadline, and the connection answers the next one.
    #[test]
    fn a_query_past_its_deadline_is_interrupted() {
        let index = SqliteIndex::memory()
            .unwrap()
            .with_timeout(Duration::from_millis(50));
        let slow = Statement::plain(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) FROM c",
        );
        let started = std::time::Instant::now();
        let e = index.query_now(&slow).unwrap_err();
        assert!(e.busy, "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let one = index.query_now(&Statement::plain("SELECT 1")).unwrap();
        assert_eq!(one, vec![vec![Value::Int(1)]]);
    }

    /// The catalog conformance suite, with three connections on one file (as three processes
    /// would have).
    #[test]
    fn sqlite_passes_the_catalog_conformance_suite() {
        let dir = std::env::temp_dir().join(format!("wado-sqlite-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("index.sqlite");
        let handles: Vec<SqliteIndex> = (0..3)
            .map(|_| SqliteIndex::open(&path, 2, true).unwrap())
            .collect();
        let all: Vec<&dyn Index> = handles.iter().map(|h| h as &dyn Index).collect();
        futures::executor::block_on(crate::search::conformance::run_all(all[0], &all, "S"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
