//! A [`Query`] as one SELECT in the index's dialect.
//!
//! Matching as PS3.4 C.2.2.2 says, the same on every engine: wildcards are case-sensitive
//! (`GLOB` in SQLite, `LIKE` in PostgreSQL), person names are matched on a folded column
//! (lower case, no accents) so they are case- and accent-insensitive everywhere, dates and
//! times are compared as normalised text, and the order is total (ties broken by UID).

use super::attrs::{Kind, Level};
use super::query::{Matcher, Pattern, Query, Scope};
use super::schema::param;
use super::{Dialect, Statement, Value};

/// The table alias of a level.
fn alias(level: Level) -> &'static str {
    match level {
        Level::Study => "st",
        Level::Series => "se",
        Level::Instance => "i",
    }
}

/// Collects the parameters of a statement as it is written, at most as many as the engine
/// binds (D1: 100); past them, values are written into the SQL text as literals (matching
/// values hold no control character: [`super::query`] refuses them).
struct Builder {
    dialect: Dialect,
    params: Vec<Value>,
    max_params: usize,
}

impl Builder {
    fn bind(&mut self, v: impl Into<Value>) -> String {
        let v = v.into();
        if self.params.len() >= self.max_params {
            return literal(&v);
        }
        self.params.push(v);
        param(self.dialect, self.params.len())
    }

    /// `column` matches a DICOM wildcard pattern (`*`, `?`; everything else literal).
    fn wildcard(&mut self, column: &str, pattern: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => {
                // GLOB: `*` and `?` as DICOM's; `[` opens a class, so a literal one is `[[]`.
                let p = pattern.replace('[', "[[]");
                format!("{column} GLOB {}", self.bind(p))
            }
            Dialect::Postgres => {
                let mut p = String::with_capacity(pattern.len());
                for c in pattern.chars() {
                    match c {
                        '*' => p.push('%'),
                        '?' => p.push('_'),
                        '%' | '_' | '!' => {
                            p.push('!');
                            p.push(c);
                        }
                        c => p.push(c),
                    }
                }
                format!("{column} LIKE {} ESCAPE '!'", self.bind(p))
            }
        }
    }

    /// `column` equals one of `values`: `= x` for one, `IN (...)` for more (never a chain of
    /// ORs, whose depth SQLite bounds).
    fn any_of(&mut self, column: &str, values: &[&str]) -> String {
        match values {
            [one] => format!("{column} = {}", self.bind(*one)),
            many => {
                let marks: Vec<String> = many.iter().map(|v| self.bind(*v)).collect();
                format!("{column} IN ({})", marks.join(", "))
            }
        }
    }

    /// Exact values by [`Builder::any_of`], patterns by [`Builder::wildcard`], any of them.
    fn exact_or_patterns(&mut self, column: &str, patterns: &[Pattern]) -> String {
        let exact: Vec<&str> = patterns
            .iter()
            .filter_map(|p| match p {
                Pattern::Exact(v) => Some(v.as_str()),
                Pattern::Wildcard(_) => None,
            })
            .collect();
        let mut alts = Vec::new();
        if !exact.is_empty() {
            alts.push(self.any_of(column, &exact));
        }
        for p in patterns {
            if let Pattern::Wildcard(w) = p {
                alts.push(self.wildcard(column, w));
            }
        }
        match alts.len() {
            1 => alts.remove(0),
            _ => format!("({})", alts.join(" OR ")),
        }
    }
}

/// A value as an SQL literal (text quoted, `'` doubled): the same in both dialects, with
/// PostgreSQL's standard-conforming strings.
fn literal(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Int(i) => i.to_string(),
        Value::Text(t) => format!("'{}'", t.replace('\'', "''")),
    }
}

/// The columns a search at each level reads, in this order (see [`super::results`]).
fn columns(level: Level) -> &'static str {
    match level {
        Level::Study => "st.study_uid, st.attrs, st.modalities, st.n_series, st.n_instances",
        Level::Series => "se.study_uid, se.series_uid, se.attrs, se.n_instances, st.attrs",
        Level::Instance => "i.study_uid, i.series_uid, i.sop_uid, i.attrs, se.attrs, st.attrs",
    }
}

const FROM_SERIES: &str =
    "qido_series se JOIN qido_study st ON st.part = se.part AND st.study_uid = se.study_uid";
const FROM_INSTANCE: &str = "qido_instance i \
    JOIN qido_series se ON se.part = i.part AND se.study_uid = i.study_uid AND se.series_uid = i.series_uid \
    JOIN qido_study st ON st.part = i.part AND st.study_uid = i.study_uid";

/// The SELECT answering `q` in `partition`, at most `fetch` rows after `q.offset`, binding at
/// most `max_params` parameters ([`super::Index::max_params`]).
pub fn select(
    d: Dialect,
    max_params: usize,
    partition: &str,
    q: &Query,
    fetch: usize,
) -> Statement {
    let mut b = Builder {
        dialect: d,
        params: Vec::new(),
        max_params,
    };
    let base = alias(q.level);
    let (from, order) = match q.level {
        Level::Study => (
            "qido_study st",
            "st.study_date DESC, st.study_time DESC, st.study_uid",
        ),
        Level::Series => (
            FROM_SERIES,
            "se.study_uid, COALESCE(se.series_number, 2147483647), se.series_uid",
        ),
        Level::Instance => (
            FROM_INSTANCE,
            "i.study_uid, i.series_uid, COALESCE(i.instance_number, 2147483647), i.sop_uid",
        ),
    };
    // A person-name search with a leading wildcard (`*doe*`, what a work list sends) reads every
    // study of the partition: SQLite's planner would walk the order index and read each whole
    // row (200 ms for 100,000 studies); the name index holds the folded names alone (20 ms).
    // Not when an exact key narrows the search down anyway.
    let name_scan = d == Dialect::Sqlite
        && q.level == Level::Study
        && q.conditions.iter().any(|c| {
            c.key.column == "patient_name"
                && match &c.matcher {
                    Matcher::Words(_) => true,
                    Matcher::Any(p) => p.iter().any(|p| matches!(p, Pattern::Wildcard(w) if w.starts_with(['*', '?']))),
                    _ => false,
                }
        })
        && !q.conditions.iter().any(|c| {
            matches!(c.key.column, "study_uid" | "patient_id" | "accession")
                && matches!(&c.matcher, Matcher::Any(p) if p.iter().all(|p| matches!(p, Pattern::Exact(_))))
        });
    let from = if name_scan {
        "qido_study st INDEXED BY qido_study_name"
    } else {
        from
    };
    let mut wheres = vec![format!("{base}.part = {}", b.bind(partition))];
    match &q.scope {
        Scope::All => {}
        Scope::Study(s) => {
            wheres.push(format!("{base}.study_uid = {}", b.bind(s.as_str())));
        }
        Scope::Series(s, se) => {
            wheres.push(format!("{base}.study_uid = {}", b.bind(s.as_str())));
            wheres.push(format!("{base}.series_uid = {}", b.bind(se.as_str())));
        }
    }
    for c in &q.conditions {
        let col = format!("{}.{}", alias(c.key.level), c.key.column);
        let clause = match (&c.matcher, c.key.kind) {
            // Any of the study's series of these modalities (the series' own index), rather
            // than a pattern over the study's list of modalities, which no index serves.
            (Matcher::Any(patterns), Kind::Modalities) => {
                let part = b.bind(partition);
                let cond = b.exact_or_patterns("m.modality", patterns);
                let level = alias(c.key.level);
                format!(
                    "{level}.study_uid IN (SELECT m.study_uid FROM qido_series m WHERE m.part = {part} AND {cond})"
                )
            }
            (Matcher::Any(patterns), Kind::PersonName) => {
                b.exact_or_patterns(&format!("{col}_fold"), patterns)
            }
            (Matcher::Any(patterns), _) => b.exact_or_patterns(&col, patterns),
            (Matcher::Range(lo, hi), _) => {
                let mut parts = vec![format!("{col} <> ''")];
                if let Some(lo) = lo {
                    parts.push(format!("{col} >= {}", b.bind(lo.as_str())));
                }
                if let Some(hi) = hi {
                    parts.push(format!("{col} <= {}", b.bind(hi.as_str())));
                }
                parts.join(" AND ")
            }
            (Matcher::Int(n), _) => format!("{col} = {}", b.bind(*n)),
            (Matcher::Words(words), _) => words
                .iter()
                .map(|w| b.wildcard(&format!("{col}_words"), &format!("* {w}*")))
                .collect::<Vec<_>>()
                .join(" AND "),
        };
        wheres.push(clause);
    }
    // Numbers the server checked: in the text, so they take no parameter.
    let (limit, offset) = (fetch, q.offset);
    Statement {
        sql: format!(
            "SELECT {} FROM {from} WHERE {} ORDER BY {order} LIMIT {limit} OFFSET {offset}",
            columns(q.level),
            wheres.join(" AND ")
        ),
        params: b.params,
    }
}
