//! The search index in PostgreSQL (`--index postgres://...`): the shared index of several
//! servers over one bucket. The core writes the SQL (its PostgreSQL dialect); this file only
//! connects and runs it: one connection for changes (each a transaction), one for searches.

use async_trait::async_trait;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};
use wado_core::search::{Dialect, Index, IndexError, Row, Statement, Value};

/// A PostgreSQL index.
pub struct PgIndex {
    writer: tokio::sync::Mutex<Writer>,
    reader: Client,
    /// The reader's prepared statements, by SQL text: a search is then one round trip.
    prepared: std::sync::Mutex<std::collections::HashMap<String, tokio_postgres::Statement>>,
}

/// The connection for changes, and its prepared statements by SQL text: a change's statements
/// then go to the server all at once, in one round trip rather than two per statement.
struct Writer {
    client: Client,
    prepared: std::collections::HashMap<String, tokio_postgres::Statement>,
}

/// The most prepared statements a connection keeps (statements differ by their SQL's shape:
/// a bounded set, but bound it).
const MAX_PREPARED: usize = 512;

impl std::fmt::Debug for PgIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgIndex")
    }
}

fn err(e: tokio_postgres::Error) -> IndexError {
    // SQLSTATE 57014 (query_canceled): a search past its statement_timeout.
    if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) {
        return IndexError::busy("the search ran past its time; narrow it, or retry");
    }
    IndexError::new(format!("PostgreSQL: {e}"))
}

async fn connect_one(url: &str) -> Result<Client, IndexError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(err)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!("PostgreSQL connection: {e}");
        }
    });
    Ok(client)
}

impl PgIndex {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/db`, or `host=/run/...`);
    /// a search runs at most `timeout` (PostgreSQL's `statement_timeout` on the searching
    /// connection; the search is then busy, 503).
    pub async fn connect(url: &str, timeout: std::time::Duration) -> Result<PgIndex, IndexError> {
        let reader = connect_one(url).await?;
        reader
            .batch_execute(&format!(
                "SET statement_timeout = {}",
                timeout.as_millis().max(1)
            ))
            .await
            .map_err(err)?;
        Ok(PgIndex {
            writer: tokio::sync::Mutex::new(Writer {
                client: connect_one(url).await?,
                prepared: Default::default(),
            }),
            reader,
            prepared: Default::default(),
        })
    }
}

/// A value as the parameter type PostgreSQL inferred for its place.
fn param(v: &Value, ty: &Type) -> Box<dyn ToSql + Sync + Send> {
    let int = *ty == Type::INT8 || *ty == Type::INT4 || *ty == Type::INT2;
    match (v, int) {
        (Value::Null, true) => Box::new(None::<i64>),
        (Value::Null, false) => Box::new(None::<String>),
        (Value::Int(i), true) if *ty == Type::INT4 => {
            Box::new(i32::try_from(*i).unwrap_or(i32::MAX))
        }
        (Value::Int(i), true) => Box::new(*i),
        (Value::Int(i), false) => Box::new(i.to_string()),
        (Value::Text(s), true) => Box::new(s.trim().parse::<i64>().ok()),
        (Value::Text(s), false) => Box::new(s.clone()),
    }
}

/// Runs a statement (prepared now, or `cached`), returning its rows and its preparation.
async fn run(
    client: &impl tokio_postgres::GenericClient,
    s: &Statement,
    cached: Option<tokio_postgres::Statement>,
) -> Result<(Vec<tokio_postgres::Row>, tokio_postgres::Statement), IndexError> {
    let prepared = match cached {
        Some(p) => p,
        None => client.prepare(&s.sql).await.map_err(err)?,
    };
    let params = params_of(s, &prepared);
    let rows = client.query(&prepared, &refs(&params)).await.map_err(err)?;
    Ok((rows, prepared))
}

type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// A statement's values as the types its preparation inferred.
fn params_of(s: &Statement, prepared: &tokio_postgres::Statement) -> Params {
    s.params
        .iter()
        .zip(prepared.params())
        .map(|(v, t)| param(v, t))
        .collect()
}

fn refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
}

#[async_trait]
impl Index for PgIndex {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn execute(&self, statements: Vec<Statement>) -> Result<(), IndexError> {
        self.execute_then_read(statements, Vec::new())
            .await
            .map(|_| ())
    }

    async fn execute_then_read(
        &self,
        statements: Vec<Statement>,
        reads: Vec<Statement>,
    ) -> Result<Vec<Vec<Row>>, IndexError> {
        let mut writer = self.writer.lock().await;
        let Writer { client, prepared } = &mut *writer;
        // 1. What is not prepared yet, prepared at once, outside the transaction: a statement
        //    that cannot be prepared before the ones ahead of it ran (a table they create) fails
        //    here harmlessly and is run the slow way below.
        // The distinct statements of the change; those of them not prepared yet.
        let mut distinct: Vec<&str> = statements
            .iter()
            .chain(&reads)
            .map(|s| s.sql.as_str())
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        let mut missing: Vec<&str> = distinct
            .iter()
            .copied()
            .filter(|sql| !prepared.contains_key(*sql))
            .collect();
        if prepared.len() + missing.len() > MAX_PREPARED {
            prepared.clear();
            missing = distinct;
        }
        let made = futures::future::join_all(missing.iter().map(|sql| client.prepare(sql))).await;
        for (sql, p) in missing.iter().zip(made) {
            if let Ok(p) = p {
                prepared.insert((*sql).to_owned(), p);
            }
        }
        let tx = client.transaction().await.map_err(err)?;
        let ready: Option<Vec<tokio_postgres::Statement>> = statements
            .iter()
            .map(|s| prepared.get(&s.sql).cloned())
            .collect();
        match ready {
            // 2. Every statement sent at once (tokio-postgres pipelines them on the connection,
            //    in this order); the first error is the answer, and the transaction rolls back.
            Some(ready) => {
                let params: Vec<Params> = statements
                    .iter()
                    .zip(&ready)
                    .map(|(s, p)| params_of(s, p))
                    .collect();
                let refs: Vec<Vec<&(dyn ToSql + Sync)>> = params.iter().map(refs).collect();
                futures::future::try_join_all(
                    ready.iter().zip(&refs).map(|(p, r)| tx.execute(p, r)),
                )
                .await
                .map_err(err)?;
            }
            None => {
                for s in &statements {
                    run(&tx, s, prepared.get(&s.sql).cloned()).await?;
                }
            }
        }
        let mut out = Vec::with_capacity(reads.len());
        for r in &reads {
            out.push(values(&run(&tx, r, prepared.get(&r.sql).cloned()).await?.0));
        }
        tx.commit().await.map_err(err)?;
        Ok(out)
    }

    async fn query(&self, statement: Statement) -> Result<Vec<Row>, IndexError> {
        let cached = self
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&statement.sql)
            .cloned();
        let (rows, prepared) = run(&self.reader, &statement, cached).await?;
        let mut cache = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        // Searches differ in their SQL by the conditions they use: a bounded set, but bound it.
        if cache.len() >= 512 {
            cache.clear();
        }
        cache.insert(statement.sql, prepared);
        drop(cache);
        Ok(values(&rows))
    }
}

/// Rows as the core's values, in select order.
fn values(rows: &[tokio_postgres::Row]) -> Vec<Row> {
    rows.iter()
        .map(|r| {
            r.columns()
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let t = c.type_();
                    if *t == Type::INT8 {
                        r.get::<_, Option<i64>>(i).map_or(Value::Null, Value::Int)
                    } else if *t == Type::INT4 {
                        r.get::<_, Option<i32>>(i)
                            .map_or(Value::Null, |v| Value::Int(v.into()))
                    } else {
                        r.try_get::<_, Option<String>>(i)
                            .ok()
                            .flatten()
                            .map_or(Value::Null, Value::Text)
                    }
                })
                .collect()
        })
        .collect()
}
