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
//! The index is derived from the store: a study's rows are rebuilt from its stored instance
//! indexes whenever the study changes ([`schema::replace_study`], run by the import's metadata
//! rebuild after the instances are stored), so a search never names an instance that is not
//! stored whole. A study whose import was interrupted is left marked pending and rebuilt by
//! [`recover`]; `wado reindex` rebuilds everything ([`reindex_study`]).

pub mod attrs;
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
use crate::layout::{self, InstanceIndex};
use crate::route::Uid;
use crate::store::{MaybeSendSync, Store};
use std::collections::HashMap;
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

/// An index failure: the database's own message, and whether it was a limit the index keeps
/// to stay responsive (a search past its deadline, too many at once): those are 503 with
/// `Retry-After`, the others 500.
#[derive(Debug, thiserror::Error)]
#[error("search index: {message}")]
pub struct IndexError {
    /// What the database said.
    pub message: String,
    /// A limit was reached; the request may be repeated later.
    pub busy: bool,
}

impl IndexError {
    /// A failure.
    pub fn new(message: impl Into<String>) -> IndexError {
        IndexError {
            message: message.into(),
            busy: false,
        }
    }

    /// A limit reached (503, retry later).
    pub fn busy(message: impl Into<String>) -> IndexError {
        IndexError {
            message: message.into(),
            busy: true,
        }
    }
}

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
}

/// Creates the schema when the database has none, and checks the version of one it has.
pub async fn open(index: &dyn Index) -> Result<()> {
    index.execute(schema::create(index.dialect())).await?;
    let rows = index.query(schema::version_query(index.dialect())).await?;
    let found = rows
        .first()
        .and_then(|r| r.first())
        .and_then(Value::as_str)
        .map(str::to_owned);
    match found.as_deref() {
        Some(v) if v == schema::VERSION => Ok(()),
        None => {
            index
                .execute(vec![schema::set_version(index.dialect())])
                .await?;
            Ok(())
        }
        Some(other) => Err(Error::Index(IndexError::new(format!(
            "the search index has schema version {other}, this wado writes {}: rebuild it with `wado reindex`",
            schema::VERSION
        )))),
    }
}

/// Rebuilds one study's rows from the store (its whole instances), and clears its pending
/// mark, in one transaction. A study with no instance left loses its rows.
pub async fn reindex_study(
    store: &dyn Store,
    index: &dyn Index,
    partition: &str,
    study: &Uid,
    known: &HashMap<String, Arc<InstanceIndex>>,
) -> Result<usize> {
    let instances =
        layout::import::valid_indexes(store, &layout::study_prefix(study), known).await?;
    let list: Vec<&InstanceIndex> = instances.iter().map(|i| &**i).collect();
    index
        .execute(schema::replace_study(
            index.dialect(),
            index.max_params(),
            partition,
            study,
            &list,
            None,
        ))
        .await?;
    Ok(list.len())
}

/// Rebuilds the studies an interrupted import or STOW-RS request left pending (see the module
/// doc): their series and study metadata as well as their rows, since the interruption may
/// have come between an instance's write and its study's rebuild.
pub async fn recover(store: &dyn Store, index: &dyn Index, partition: &str) -> Result<usize> {
    let rows = index
        .query(schema::pending(index.dialect(), partition))
        .await?;
    let mut n = 0;
    for row in rows {
        let Some(uid) = row.first().and_then(Value::as_str) else {
            continue;
        };
        let Ok(study) = Uid::parse(uid) else {
            continue;
        };
        layout::import::repair_study(store, &study, Some((index, partition))).await?;
        n += 1;
    }
    Ok(n)
}

/// Rebuilds a partition's whole index from the store: every stored study, then the rows of
/// studies the store no longer holds are dropped. Returns (studies, instances).
pub async fn reindex(
    store: &dyn Store,
    index: &dyn Index,
    partition: &str,
) -> Result<(usize, usize)> {
    let mut studies: Vec<Uid> = layout::listed_instances(store.list(layout::STUDIES_PREFIX).await?)
        .into_iter()
        .map(|i| i.study)
        .collect();
    studies.sort();
    studies.dedup();
    let mut instances = 0;
    for study in &studies {
        instances += reindex_study(store, index, partition, study, &HashMap::new()).await?;
    }
    let indexed = index
        .query(schema::studies_of_partition(index.dialect(), partition))
        .await?;
    let gone: Vec<Statement> = indexed
        .iter()
        .filter_map(|r| r.first().and_then(Value::as_str))
        .filter(|uid| studies.binary_search_by(|s| s.as_str().cmp(uid)).is_err())
        .flat_map(|uid| schema::delete_study(index.dialect(), partition, uid))
        .collect();
    if !gone.is_empty() {
        index.execute(gone).await?;
    }
    index.execute(schema::analyze(index.dialect())).await?;
    Ok((studies.len(), instances))
}

/// A shared handle to an index.
pub type SharedIndex = Arc<dyn Index>;
