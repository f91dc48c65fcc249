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

/// Collects the parameters of a statement as it is written.
struct Builder {
    dialect: Dialect,
    params: Vec<Value>,
}

impl Builder {
    fn bind(&mut self, v: impl Into<Value>) -> String {
        self.params.push(v.into());
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

/// The SELECT answering `q` in `partition`, at most `fetch` rows after `q.offset`.
pub fn select(d: Dialect, partition: &str, q: &Query, fetch: usize) -> Statement {
    let mut b = Builder {
        dialect: d,
        params: Vec::new(),
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
            // A long UID list (OHIF opening several studies): inlined, since D1 binds at most
            // 100 parameters a statement; UIDs are checked to be digits and dots (Uid::parse).
            (Matcher::Any(patterns), Kind::Uid)
                if patterns.len() > 8
                    && patterns.iter().all(|p| {
                        matches!(p, Pattern::Exact(u) if u.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
                    }) =>
            {
                let list: Vec<String> = patterns
                    .iter()
                    .map(|p| match p {
                        Pattern::Exact(u) | Pattern::Wildcard(u) => format!("'{u}'"),
                    })
                    .collect();
                format!("{col} IN ({})", list.join(", "))
            }
            (Matcher::Any(patterns), kind) => {
                let alts: Vec<String> = patterns
                    .iter()
                    .map(|p| match (p, kind) {
                        (Pattern::Exact(m) | Pattern::Wildcard(m), Kind::Modalities) => {
                            b.wildcard(&col, &format!("*\\{m}\\*"))
                        }
                        (Pattern::Exact(v), Kind::PersonName) => {
                            format!("{col}_fold = {}", b.bind(v.as_str()))
                        }
                        (Pattern::Wildcard(v), Kind::PersonName) => {
                            b.wildcard(&format!("{col}_fold"), v)
                        }
                        (Pattern::Exact(v), _) => format!("{col} = {}", b.bind(v.as_str())),
                        (Pattern::Wildcard(v), _) => b.wildcard(&col, v),
                    })
                    .collect();
                if alts.len() == 1 {
                    alts.into_iter().next().unwrap_or_default()
                } else {
                    format!("({})", alts.join(" OR "))
                }
            }
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
    let limit = b.bind(i64::try_from(fetch).unwrap_or(i64::MAX));
    let offset = b.bind(i64::try_from(q.offset).unwrap_or(i64::MAX));
    Statement {
        sql: format!(
            "SELECT {} FROM {from} WHERE {} ORDER BY {order} LIMIT {limit} OFFSET {offset}",
            columns(q.level),
            wheres.join(" AND ")
        ),
        params: b.params,
    }
}
