//! The search index in Cloudflare D1 (SQLite at the edge): the core's statements, run through
//! the D1 binding. `execute` is one `batch` (D1 runs a batch as one transaction).

use wado_core::search::{Dialect, Index, IndexError, Row, Statement, Value};
use wasm_bindgen::JsValue;
use worker::d1::{D1Database, D1PreparedStatement};

/// A D1 database holding the index.
pub struct D1Index(D1Database);

impl std::fmt::Debug for D1Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("D1Index")
    }
}

impl D1Index {
    /// The index in this database.
    pub fn new(db: D1Database) -> D1Index {
        D1Index(db)
    }

    fn prepare(&self, s: &Statement) -> Result<D1PreparedStatement, IndexError> {
        let params: Vec<JsValue> = s
            .params
            .iter()
            .map(|v| match v {
                Value::Null => JsValue::NULL,
                // Integers in the index are small (counts, numbers, sizes of images).
                Value::Int(i) => JsValue::from_f64(*i as f64),
                Value::Text(t) => JsValue::from_str(t),
            })
            .collect();
        self.0
            .prepare(s.sql.as_str())
            .bind(&params)
            .map_err(|e| IndexError::new(format!("D1: {e}")))
    }
}

#[async_trait::async_trait(?Send)]
impl Index for D1Index {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn max_params(&self) -> usize {
        // D1 binds at most 100 parameters per statement.
        100
    }

    async fn execute(&self, statements: Vec<Statement>) -> Result<(), IndexError> {
        if statements.is_empty() {
            return Ok(());
        }
        let prepared = statements
            .iter()
            .map(|s| self.prepare(s))
            .collect::<Result<Vec<_>, _>>()?;
        self.0
            .batch(prepared)
            .await
            .map_err(|e| IndexError::new(format!("D1: {e}")))?;
        Ok(())
    }

    async fn query(&self, statement: Statement) -> Result<Vec<Row>, IndexError> {
        let rows: Vec<Vec<serde_json::Value>> = self
            .prepare(&statement)?
            .raw()
            .await
            .map_err(|e| IndexError::new(format!("D1: {e}")))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| match v {
                        serde_json::Value::Null => Value::Null,
                        serde_json::Value::Number(n) => Value::Int(
                            n.as_i64()
                                .or_else(|| n.as_f64().map(|f| f as i64))
                                .unwrap_or(0),
                        ),
                        serde_json::Value::String(s) => Value::Text(s),
                        other => Value::Text(other.to_string()),
                    })
                    .collect()
            })
            .collect())
    }
}
