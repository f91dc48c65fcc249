//! The index's schema and the statements that change it, in both dialects.
//!
//! Three tables, one per level, keyed by partition (the AE title) and UIDs; text columns hold
//! `''` rather than NULL so that ordering and comparison mean the same in SQLite and
//! PostgreSQL; each row keeps the attributes of its level as DICOM JSON (`attrs`). A fourth
//! table names the studies an import is changing (see [`super::recover`]).

use super::rows::{study_rows, Columns};
use super::{Dialect, Statement, Value};
use crate::dicom::uid::Uid;
use crate::layout::InstanceIndex;

/// The schema version; a database with another is rebuilt by `wado reindex`.
pub const VERSION: &str = "1";

fn int_type(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => "INTEGER",
        Dialect::Postgres => "BIGINT",
    }
}

/// The statements that create the schema when it is not there.
pub fn create(d: Dialect) -> Vec<Statement> {
    let int = int_type(d);
    // Byte order for text, as SQLite compares: the same order (UIDs, names) on both engines.
    let (t, key) = match d {
        Dialect::Sqlite => ("TEXT NOT NULL DEFAULT ''", "TEXT NOT NULL"),
        Dialect::Postgres => (
            "TEXT COLLATE \"C\" NOT NULL DEFAULT ''",
            "TEXT COLLATE \"C\" NOT NULL",
        ),
    };
    [
        "CREATE TABLE IF NOT EXISTS qido_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)".to_owned(),
        format!(
            "CREATE TABLE IF NOT EXISTS qido_study (part {key}, study_uid {key}, \
             study_date {t}, study_time {t}, accession {t}, modalities {t}, referring {t}, \
             referring_fold {t}, referring_words {t}, patient_name {t}, patient_name_fold {t}, \
             patient_name_words {t}, patient_id {t}, birth_date {t}, sex {t}, study_id {t}, \
             description {t}, n_series {int} NOT NULL, n_instances {int} NOT NULL, \
             attrs TEXT NOT NULL, PRIMARY KEY (part, study_uid))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS qido_series (part {key}, study_uid {key}, \
             series_uid {key}, modality {t}, series_number {int}, description {t}, \
             body_part {t}, series_date {t}, pps_date {t}, pps_time {t}, \
             n_instances {int} NOT NULL, attrs TEXT NOT NULL, \
             PRIMARY KEY (part, study_uid, series_uid))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS qido_instance (part {key}, study_uid {key}, \
             series_uid {key}, sop_uid {key}, sop_class {t}, \
             instance_number {int}, n_rows {int}, n_columns {int}, n_frames {int}, \
             attrs TEXT NOT NULL, PRIMARY KEY (part, study_uid, series_uid, sop_uid))"
        ),
        // Studies being changed, one mark per writer (an import run, a STOW-RS request), so
        // one that finishes clears its own mark only.
        "CREATE TABLE IF NOT EXISTS qido_writing (part TEXT NOT NULL, study_uid TEXT NOT NULL, \
         writer TEXT NOT NULL, PRIMARY KEY (part, study_uid, writer))"
            .to_owned(),
        // Marks of wado versions before per-writer marks, carried over (a table kept empty).
        "CREATE TABLE IF NOT EXISTS qido_pending (part TEXT NOT NULL, study_uid TEXT NOT NULL, \
         PRIMARY KEY (part, study_uid))"
            .to_owned(),
        // `WHERE true`: SQLite's parser wants it before ON CONFLICT after a SELECT.
        "INSERT INTO qido_writing (part, study_uid, writer) SELECT part, study_uid, '' \
         FROM qido_pending WHERE true ON CONFLICT DO NOTHING"
            .to_owned(),
        "DELETE FROM qido_pending".to_owned(),
        // The study list's order, and the keys a viewer searches by.
        "CREATE INDEX IF NOT EXISTS qido_study_order ON qido_study (part, study_date DESC, study_time DESC, study_uid)".to_owned(),
        "CREATE INDEX IF NOT EXISTS qido_study_patient_id ON qido_study (part, patient_id)".to_owned(),
        "CREATE INDEX IF NOT EXISTS qido_study_accession ON qido_study (part, accession)".to_owned(),
        "CREATE INDEX IF NOT EXISTS qido_study_name ON qido_study (part, patient_name_fold)".to_owned(),
        "CREATE INDEX IF NOT EXISTS qido_series_uid ON qido_series (part, series_uid)".to_owned(),
        "CREATE INDEX IF NOT EXISTS qido_instance_uid ON qido_instance (part, sop_uid)".to_owned(),
    ]
    .into_iter()
    .chain(KEY_INDEXES.iter().map(|(table, column)| {
        format!("CREATE INDEX IF NOT EXISTS {table}_{column} ON {table} (part, {column})")
    }))
    // ModalitiesInStudy is matched through the series: their modality, then their study.
    .chain(std::iter::once(
        "CREATE INDEX IF NOT EXISTS qido_series_modality ON qido_series (part, modality, study_uid)"
            .to_owned(),
    ))
    .map(Statement::plain)
    .collect()
}

/// The index of every matching key not served by another (the primary keys, the order, the
/// indexes above): so that no matching key walks its whole level. A value with a leading
/// wildcard (`*son`) cannot use one and reads the level (bounded by the statement deadline).
pub const KEY_INDEXES: &[(&str, &str)] = &[
    ("qido_study", "study_time"),
    ("qido_study", "referring_fold"),
    ("qido_study", "birth_date"),
    ("qido_study", "sex"),
    ("qido_study", "study_id"),
    ("qido_study", "description"),
    ("qido_series", "series_number"),
    ("qido_series", "description"),
    ("qido_series", "body_part"),
    ("qido_series", "series_date"),
    ("qido_series", "pps_date"),
    ("qido_series", "pps_time"),
    ("qido_instance", "sop_class"),
    ("qido_instance", "instance_number"),
    ("qido_instance", "n_rows"),
    ("qido_instance", "n_columns"),
    ("qido_instance", "n_frames"),
];

/// Placeholder `n` (1-based) in the dialect.
pub(crate) fn param(d: Dialect, n: usize) -> String {
    match d {
        Dialect::Sqlite => format!("?{n}"),
        Dialect::Postgres => format!("${n}"),
    }
}

/// The stored schema version.
pub fn version_query(_d: Dialect) -> Statement {
    Statement::plain("SELECT value FROM qido_meta WHERE name = 'schema'")
}

/// Records the schema version.
pub fn set_version(d: Dialect) -> Statement {
    Statement {
        sql: format!(
            "INSERT INTO qido_meta (name, value) VALUES ('schema', {}) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            param(d, 1)
        ),
        params: vec![VERSION.into()],
    }
}

fn by_study(d: Dialect, verb: &str, table: &str, partition: &str, study: &str) -> Statement {
    Statement {
        sql: format!(
            "{verb} {table} WHERE part = {} AND study_uid = {}",
            param(d, 1),
            param(d, 2)
        ),
        params: vec![partition.into(), study.into()],
    }
}

/// Removes a study's rows.
pub fn delete_study(d: Dialect, partition: &str, study: &str) -> Vec<Statement> {
    ["qido_instance", "qido_series", "qido_study"]
        .into_iter()
        .map(|t| by_study(d, "DELETE FROM", t, partition, study))
        .collect()
}

/// Multi-row INSERTs of `rows` into `table`, each with at most `max_params` parameters (D1
/// binds at most 100 per statement, and counts statements per request).
fn insert(d: Dialect, table: &str, rows: &[Columns], max_params: usize) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let names: Vec<&str> = rows[i].iter().map(|(c, _)| *c).collect();
        let per_row = names.len().max(1);
        let fit = (max_params / per_row).max(1);
        let mut group = Vec::new();
        while i < rows.len()
            && group.len() < fit
            && rows[i].iter().map(|(c, _)| *c).eq(names.iter().copied())
        {
            group.push(&rows[i]);
            i += 1;
        }
        let mut params = Vec::with_capacity(group.len() * per_row);
        let mut tuples = Vec::with_capacity(group.len());
        for row in group {
            let marks: Vec<String> = row
                .iter()
                .map(|(_, v)| {
                    params.push(v.clone());
                    param(d, params.len())
                })
                .collect();
            tuples.push(format!("({})", marks.join(", ")));
        }
        out.push(Statement {
            sql: format!(
                "INSERT INTO {table} ({}) VALUES {}",
                names.join(", "),
                tuples.join(", ")
            ),
            params,
        });
    }
    out
}

/// Replaces a study's rows by those of `instances` (its whole stored instances; none removes
/// the study) and clears the pending mark of `writer` (every mark when `None`: a rebuild
/// from the store after the writers are gone): to run as one transaction.
pub fn replace_study(
    d: Dialect,
    max_params: usize,
    partition: &str,
    study: &Uid,
    instances: &[&InstanceIndex],
    writer: Option<&str>,
) -> Vec<Statement> {
    let mut out = delete_study(d, partition, study.as_str());
    if let Some(rows) = study_rows(partition, instances) {
        out.extend(insert(d, "qido_study", &[rows.study], max_params));
        out.extend(insert(d, "qido_series", &rows.series, max_params));
        out.extend(insert(d, "qido_instance", &rows.instances, max_params));
    }
    out.push(match writer {
        None => by_study(d, "DELETE FROM", "qido_writing", partition, study.as_str()),
        Some(w) => Statement {
            sql: format!(
                "DELETE FROM qido_writing WHERE part = {} AND study_uid = {} AND writer = {}",
                param(d, 1),
                param(d, 2),
                param(d, 3)
            ),
            params: vec![partition.into(), study.as_str().into(), w.into()],
        },
    });
    out
}

/// Statistics for the planner, after a bulk change (an import run, a reindex): without them
/// SQLite walks the order index for `PatientID=...` instead of its own index (200 ms instead of
/// 0.2 ms at 100,000 studies).
pub fn analyze(d: Dialect) -> Vec<Statement> {
    match d {
        // Plain ANALYZE (D1 refuses `PRAGMA analysis_limit`): 1.2 s at 1,000,000 instances.
        Dialect::Sqlite => vec![Statement::plain("ANALYZE")],
        Dialect::Postgres => vec![Statement::plain(
            "ANALYZE qido_study, qido_series, qido_instance",
        )],
    }
}

/// Marks a study as being changed by `writer` (before its files are written).
pub fn mark_pending(d: Dialect, partition: &str, study: &Uid, writer: &str) -> Statement {
    Statement {
        sql: format!(
            "INSERT INTO qido_writing (part, study_uid, writer) VALUES ({}, {}, {}) ON CONFLICT DO NOTHING",
            param(d, 1),
            param(d, 2),
            param(d, 3)
        ),
        params: vec![partition.into(), study.as_str().into(), writer.into()],
    }
}

/// Where instances of SOP Instance UID `sop` are in a partition: (study, series) rows.
pub fn locate_instance(d: Dialect, partition: &str, sop: &Uid) -> Statement {
    Statement {
        sql: format!(
            "SELECT study_uid, series_uid FROM qido_instance WHERE part = {} AND sop_uid = {}",
            param(d, 1),
            param(d, 2)
        ),
        params: vec![partition.into(), sop.as_str().into()],
    }
}

/// The studies marked pending in a partition.
pub fn pending(d: Dialect, partition: &str) -> Statement {
    Statement {
        sql: format!(
            "SELECT DISTINCT study_uid FROM qido_writing WHERE part = {}",
            param(d, 1)
        ),
        params: vec![Value::from(partition)],
    }
}

/// The studies a partition's index holds.
pub fn studies_of_partition(d: Dialect, partition: &str) -> Statement {
    Statement {
        sql: format!(
            "SELECT study_uid FROM qido_study WHERE part = {}",
            param(d, 1)
        ),
        params: vec![Value::from(partition)],
    }
}
