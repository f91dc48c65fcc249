//! QIDO-RS search (PS3.18 §10.6) over a real index: one schema and one SQL text for every
//! engine, executed by whichever database the frontend has.
//!
//! ```text
//! query string ──▶ query::Query ──▶ sql::select ──▶ Index::query ──▶ results::to_json
//! (PS3.18 §8.3.4)   (parsed, checked)  (Statement)   (SQLite, PostgreSQL, D1)  (DICOM JSON)
//! stored indexes ──▶ rows::study_rows ──▶ schema::replace_study ──▶ Index::execute
//! ```
//!
//! The core owns the model: which attributes are matching keys and in which column
//! ([`attrs`]), the schema and every statement ([`schema`], [`sql`]), in one SQLite dialect with
//! the few PostgreSQL differences handled here ([`Dialect`]). A frontend implements [`Index`]
//! — run statements in one transaction, run a query — and nothing else: rusqlite natively
//! ([`sqlite`], feature `sqlite`), tokio-postgres in `wado-native`, D1 in `wado-edge`.
//!
//! The index is also the catalog of what is stored (`crate::ingest`): an instance exists when
//! its row names the generation whose objects the store holds, written by one transaction per
//! instance ([`schema::commit_instance`]) after the objects, so a search never names an
//! instance that is not stored whole and every reader sees one version. `wado reindex`
//! rebuilds it from the store (`crate::ingest::reindex`).

pub mod attrs;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod feed;
pub mod query;
mod results;
pub mod rows;
pub mod schema;
pub mod sql;
#[cfg(any(test, feature = "sqlite"))]
pub mod sqlite;

pub use query::{Level, Query, Scope};
pub use results::{search, search_rows, Found, Rows};

use crate::error::{Error, Result};
use crate::store::MaybeSendSync;
use std::sync::Arc;

/// The SQL dialect an [`Index`] speaks: SQLite (also Cloudflare D1) or PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite and D1: `?N` parameters, `GLOB` for case-sensitive wildcards.
    Sqlite,
    /// PostgreSQL: `$N` parameters, `LIKE` (case-sensitive there) for wildcards.
    Postgres,
}

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Int(i64),
    /// Text.
    Text(String),
}

impl Value {
    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// One SQL statement and its parameters, numbered in the dialect's way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL text.
    pub sql: String,
    /// The parameters, in order (`?1`/`$1` first).
    pub params: Vec<Value>,
}

impl Statement {
    /// A statement without parameters.
    pub fn plain(sql: impl Into<String>) -> Statement {
        Statement {
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    /// The statement as a literal SQL line (parameters inlined, text quoted), for an SQL file
    /// to load into a database elsewhere (`wado reindex --sql-out`, `wrangler d1 execute`).
    pub fn to_literal_sql(&self, dialect: Dialect) -> String {
        let mut out = String::with_capacity(self.sql.len() + 64);
        let bytes = self.sql.as_bytes();
        let marker = match dialect {
            Dialect::Sqlite => b'?',
            Dialect::Postgres => b'$',
        };
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\'' {
                // Copy a quoted literal as it is.
                let end = self.sql[i + 1..]
                    .find('\'')
                    .map_or(bytes.len(), |j| i + 2 + j);
                out.push_str(&self.sql[i..end]);
                i = end;
                continue;
            }
            if bytes[i] == marker {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if let Ok(n) = self.sql[i + 1..i + 1 + digits].parse::<usize>() {
                    match self.params.get(n.wrapping_sub(1)) {
                        Some(Value::Null) | None => out.push_str("NULL"),
                        Some(Value::Int(v)) => out.push_str(&v.to_string()),
                        Some(Value::Text(s)) => {
                            out.push('\'');
                            out.push_str(&s.replace('\'', "''"));
                            out.push('\'');
                        }
                    }
                    i += 1 + digits;
                    continue;
                }
            }
            let ch = self.sql[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
        out.push(';');
        out
    }
}

/// A row of a query's result.
pub type Row = Vec<Value>;

pub use crate::error::IndexError;

/// A database holding the search index: runs the core's statements, nothing else. `Send +
/// Sync` natively, not on wasm32 (like [`Store`]).
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Index: MaybeSendSync + std::fmt::Debug {
    /// The dialect the statements must be written in.
    fn dialect(&self) -> Dialect;

    /// The most parameters one statement may bind (SQLite: 32766; D1: 100).
    fn max_params(&self) -> usize {
        32766
    }

    /// Runs `statements` in one transaction: all take effect or none.
    async fn execute(&self, statements: Vec<Statement>) -> std::result::Result<(), IndexError>;

    /// Runs one query and returns its rows, each value as [`Value`] in select order.
    async fn query(&self, statement: Statement) -> std::result::Result<Vec<Row>, IndexError>;

    /// Runs `statements` in one transaction, then the queries `reads`, and returns their rows:
    /// what a writer reads back of its own write. An engine that can runs the reads in the
    /// transaction, after the statements (one round trip, one hop to a blocking thread); by
    /// default they run after it commits. Either way a read sees the write, and perhaps later
    /// ones.
    async fn execute_then_read(
        &self,
        statements: Vec<Statement>,
        reads: Vec<Statement>,
    ) -> std::result::Result<Vec<Vec<Row>>, IndexError> {
        self.execute(statements).await?;
        let mut out = Vec::with_capacity(reads.len());
        for r in reads {
            out.push(self.query(r).await?);
        }
        Ok(out)
    }

    /// Runs one client's search (QIDO-RS): like [`Index::query`], but a frontend may bound
    /// how many run at once and answer busy past that (the catalog's own lookups, which
    /// writers and retrievals make, are never turned away).
    async fn search(&self, statement: Statement) -> std::result::Result<Vec<Row>, IndexError> {
        self.query(statement).await
    }
}

/// The schema version the database records, `None` when it has no schema yet.
async fn stored_version(index: &dyn Index) -> Result<Option<String>> {
    // Before the schema exists the table is not there: no version.
    let Ok(rows) = index.query(schema::version_query(index.dialect())).await else {
        return Ok(None);
    };
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(Value::as_str)
        .map(str::to_owned))
}

/// Creates the schema when the database has none (several processes at once take turns), and
/// checks the version of one it has: an index of another version is refused, to be rebuilt by
/// `wado reindex` ([`open_rebuilt`]).
pub async fn open(index: &dyn Index) -> Result<()> {
    let refused = |other: &str| {
        Error::Index(IndexError::new(format!(
            "the search index has schema version {other}, this wado writes {}: rebuild it with `wado reindex`",
            schema::VERSION
        )))
    };
    if let Some(v) = stored_version(index)
        .await?
        .filter(|v| v != schema::VERSION)
    {
        return Err(refused(&v));
    }
    index.execute(schema::create(index.dialect())).await?;
    match stored_version(index).await? {
        Some(v) if v == schema::VERSION => Ok(()),
        Some(v) => Err(refused(&v)),
        None => Err(Error::Index(IndexError::new(
            "the search index recorded no schema version",
        ))),
    }
}

/// [`open`], first dropping an index of another schema version (`wado reindex` rebuilds it).
pub async fn open_rebuilt(index: &dyn Index) -> Result<()> {
    if stored_version(index)
        .await?
        .is_some_and(|v| v != schema::VERSION)
    {
        index.execute(schema::drop_all(index.dialect())).await?;
    }
    open(index).await
}

/// A shared handle to an index.
pub type SharedIndex = Arc<dyn Index>;
