//! Rows of the index as QIDO-RS results (PS3.18 §10.6.3): each level's stored attributes, cut
//! to the defaults of Tables 10.6.3-3/-4/-5 and what `includefield` asked for, with the
//! computed ones (counts, Modalities in Study, availability, Retrieve URL).

use super::attrs::{self, Level};
use super::query::{Include, Query, Scope};
use super::{sql, Index, Row, Value};
use crate::error::{Error, Result};
use serde_json::{json, Map, Value as Json};

/// What a search found.
#[derive(Debug)]
pub struct Found {
    /// The results, DICOM JSON objects in the index's order.
    pub results: Vec<Json>,
    /// More results exist than the server's maximum let it return (the client did not ask
    /// for fewer): say so with `Warning: 299` (PS3.18 §8.3.4.4).
    pub truncated: bool,
}

/// Runs a search: at most `q.limit` results, and never more than `max`.
pub async fn search(
    index: &dyn Index,
    partition: &str,
    q: &Query,
    root: &str,
    max: usize,
) -> Result<Found> {
    let rows = search_rows(index, partition, q, max).await?;
    rows.into_results(q, root)
}

/// A search's rows, as the index answered them (see [`Rows::into_results`]).
#[derive(Debug)]
pub struct Rows {
    rows: Vec<Row>,
    wanted: usize,
    truncated: bool,
}

/// The rows of a search: at most `q.limit`, and never more than `max`.
pub async fn search_rows(
    index: &dyn Index,
    partition: &str,
    q: &Query,
    max: usize,
) -> Result<Rows> {
    let max = max.max(1);
    let wanted = q.limit.map_or(max, |l| l.min(max));
    let rows = index
        .search(sql::select(
            index.dialect(),
            index.max_params(),
            partition,
            q,
            wanted + 1,
        ))
        .await?;
    // Cut by the server: more rows than it returns, and the client asked for more than that.
    let truncated = rows.len() > wanted && q.limit.is_none_or(|l| l > max);
    Ok(Rows {
        rows,
        wanted,
        truncated,
    })
}

impl Rows {
    /// How many rows are kept (at most the number wanted).
    pub fn len(&self) -> usize {
        self.rows.len().min(self.wanted)
    }

    /// No row matched.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// More results exist than the server returns (say so with `Warning: 299`).
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The rows as DICOM JSON results (CPU work: every row's attributes are parsed).
    pub fn into_results(self, q: &Query, root: &str) -> Result<Found> {
        let results = self
            .rows
            .iter()
            .take(self.wanted)
            .map(|r| result(q, r, root))
            .collect::<Result<Vec<_>>>()?;
        Ok(Found {
            results,
            truncated: self.truncated,
        })
    }
}

fn text(row: &Row, n: usize) -> Result<&str> {
    row.get(n)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::corrupt("search index", format!("column {n} is not text")))
}

fn int(row: &Row, n: usize) -> i64 {
    row.get(n).and_then(Value::as_int).unwrap_or(0)
}

fn parse(row: &Row, n: usize) -> Result<Map<String, Json>> {
    serde_json::from_str(text(row, n)?).map_err(|e| Error::corrupt("search index attrs", e))
}

/// Copies from `from` the attributes `wanted` says (the level's defaults, the included tags,
/// or all of them), without overwriting.
fn pick(
    out: &mut Map<String, Json>,
    from: &Map<String, Json>,
    defaults: &[u32],
    include: &Include,
) {
    for (k, v) in from {
        let Ok(tag) = u32::from_str_radix(k, 16) else {
            continue;
        };
        let want = match include {
            Include::All => true,
            Include::Tags(tags) => defaults.contains(&tag) || tags.contains(&tag),
        };
        if want && !out.contains_key(k) {
            out.insert(k.clone(), v.clone());
        }
    }
}

fn string(vr: &str, s: impl Into<String>) -> Json {
    json!({"vr": vr, "Value": [s.into()]})
}

fn result(q: &Query, row: &Row, root: &str) -> Result<Json> {
    let mut out = Map::new();
    let none: &[u32] = &[];
    // Higher levels' defaults are returned when the path does not already fix them
    // (PS3.18 §10.6.3.3); their explicitly included attributes always.
    let study_defaults = |scoped: bool| if scoped { none } else { attrs::STUDY_DEFAULT };
    match q.level {
        Level::Study => {
            let uid = text(row, 0)?;
            pick(&mut out, &parse(row, 1)?, attrs::STUDY_DEFAULT, &q.include);
            let modalities: Vec<&str> = text(row, 2)?
                .split('\\')
                .filter(|m| !m.is_empty())
                .collect();
            if !modalities.is_empty() {
                out.insert("00080061".into(), json!({"vr": "CS", "Value": modalities}));
            }
            out.insert(
                "00201206".into(),
                json!({"vr": "IS", "Value": [int(row, 3)]}),
            );
            out.insert(
                "00201208".into(),
                json!({"vr": "IS", "Value": [int(row, 4)]}),
            );
            out.insert(
                "00081190".into(),
                string("UR", format!("{root}/studies/{uid}")),
            );
        }
        Level::Series => {
            let (study, series) = (text(row, 0)?, text(row, 1)?);
            pick(&mut out, &parse(row, 2)?, attrs::SERIES_DEFAULT, &q.include);
            let scoped = q.scope != Scope::All;
            pick(
                &mut out,
                &parse(row, 4)?,
                study_defaults(scoped),
                &q.include,
            );
            out.insert("0020000D".into(), string("UI", study));
            out.insert(
                "00201209".into(),
                json!({"vr": "IS", "Value": [int(row, 3)]}),
            );
            out.insert(
                "00081190".into(),
                string("UR", format!("{root}/studies/{study}/series/{series}")),
            );
        }
        Level::Instance => {
            let (study, series, sop) = (text(row, 0)?, text(row, 1)?, text(row, 2)?);
            pick(
                &mut out,
                &parse(row, 3)?,
                attrs::INSTANCE_DEFAULT,
                &q.include,
            );
            let series_scoped = matches!(q.scope, Scope::Series(..));
            let series_defaults = if series_scoped {
                none
            } else {
                attrs::SERIES_DEFAULT
            };
            pick(&mut out, &parse(row, 4)?, series_defaults, &q.include);
            pick(
                &mut out,
                &parse(row, 5)?,
                study_defaults(q.scope != Scope::All),
                &q.include,
            );
            out.insert("0020000D".into(), string("UI", study));
            out.insert("0020000E".into(), string("UI", series));
            out.insert(
                "00081190".into(),
                string(
                    "UR",
                    format!("{root}/studies/{study}/series/{series}/instances/{sop}"),
                ),
            );
        }
    }
    out.insert("00080056".into(), string("CS", "ONLINE"));
    Ok(Json::Object(out))
}
