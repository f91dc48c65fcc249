//! The catalog's schema and every statement that reads or changes it, in both dialects.
//!
//! The index is the one truth of what exists (docs/STORAGE-LAYOUT.md): a row of
//! `qido_instance` names the stored version (`gen`) of an instance, whose objects in the store
//! (`{sop}-{gen}.dcm`, `{sop}-{gen}.index.json`) are written before the row and never
//! overwritten. Three tables, one per level, keyed by partition (the AE title) and UIDs; text
//! columns hold `''` rather than NULL so that ordering and comparison mean the same in SQLite
//! and PostgreSQL; each row keeps the attributes of its level as DICOM JSON (`attrs`), the
//! instance its whole metadata (`meta`, when small). Series and study rows carry what a write
//! changes at once (counts, Modalities in Study, a `version` naming the last write) so that
//! storing one instance reads and writes a constant number of rows, whatever the study holds.
//! `qido_retired` names superseded versions whose objects are to be deleted, `qido_layout` each
//! partition's layout record, `qido_meta` the schema version.
//!
//! Writers of one instance run [`commit_instance`]: one transaction (SQLite's writer lock,
//! D1's batch, PostgreSQL with advisory locks on the study and the SOP Instance UID), every
//! statement conditioned on the state it finds, so concurrent writers in any number of
//! processes, replicas or isolates leave the counts exact and one version current.

use super::rows::{Columns, InstanceRows};
use super::{Dialect, Statement, Value};
use crate::dicom::uid::Uid;

/// The schema version; a database with another is rebuilt by `wado reindex`.
pub const VERSION: &str = "2";

fn int_type(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => "INTEGER",
        Dialect::Postgres => "BIGINT",
    }
}

/// Placeholder `n` (1-based) in the dialect.
pub(crate) fn param(d: Dialect, n: usize) -> String {
    match d {
        Dialect::Sqlite => format!("?{n}"),
        Dialect::Postgres => format!("${n}"),
    }
}

/// An advisory lock held to the end of the transaction (PostgreSQL only; SQLite and D1 have
/// one writer at a time anyway), on `key` (hashed).
fn pg_lock(d: Dialect, key: String) -> Option<Statement> {
    (d == Dialect::Postgres).then(|| Statement {
        sql: "SELECT pg_advisory_xact_lock(hashtext($1))".into(),
        params: vec![key.into()],
    })
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

/// The statements that create the schema when it is not there, in one transaction: several
/// processes starting at once on one database take turns (PostgreSQL: an advisory lock;
/// SQLite and D1: their writer lock), and the first records the version.
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
    let mut out: Vec<Statement> = pg_lock(d, "wado schema".into()).into_iter().collect();
    out.extend(
        [
            "CREATE TABLE IF NOT EXISTS qido_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
                .to_owned(),
            format!(
                "CREATE TABLE IF NOT EXISTS qido_study (part {key}, study_uid {key}, \
                 study_date {t}, study_time {t}, accession {t}, modalities {t}, referring {t}, \
                 referring_fold {t}, referring_words {t}, patient_name {t}, patient_name_fold {t}, \
                 patient_name_words {t}, patient_id {t}, birth_date {t}, sex {t}, study_id {t}, \
                 description {t}, n_series {int} NOT NULL, n_instances {int} NOT NULL, \
                 attrs TEXT NOT NULL, version {t}, modified {int} NOT NULL DEFAULT 0, \
                 PRIMARY KEY (part, study_uid))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS qido_series (part {key}, study_uid {key}, \
                 series_uid {key}, modality {t}, series_number {int}, description {t}, \
                 body_part {t}, series_date {t}, pps_date {t}, pps_time {t}, \
                 n_instances {int} NOT NULL, attrs TEXT NOT NULL, version {t}, \
                 modified {int} NOT NULL DEFAULT 0, PRIMARY KEY (part, study_uid, series_uid))"
            ),
            // One SOP Instance UID names one instance in a partition: the primary key.
            format!(
                "CREATE TABLE IF NOT EXISTS qido_instance (part {key}, study_uid {key}, \
                 series_uid {key}, sop_uid {key}, sop_class {t}, \
                 instance_number {int}, n_rows {int}, n_columns {int}, n_frames {int}, \
                 attrs TEXT NOT NULL, gen {t}, size {int} NOT NULL, sha256 {t}, ts {t}, \
                 stored_at {int} NOT NULL, meta TEXT, PRIMARY KEY (part, sop_uid))"
            ),
            // Superseded versions, until their objects are deleted.
            format!(
                "CREATE TABLE IF NOT EXISTS qido_retired (part {key}, study_uid {key}, \
                 series_uid {key}, sop_uid {key}, gen {key}, retired_at {int} NOT NULL, \
                 PRIMARY KEY (part, sop_uid, gen))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS qido_layout (part {key} PRIMARY KEY, record TEXT NOT NULL)"
            ),
            // The change feed: one row per change of an instance, numbered 1, 2, 3... per
            // partition in the order the changes were committed ([`change_row`]).
            format!(
                "CREATE TABLE IF NOT EXISTS qido_change (part {key}, seq {int} NOT NULL, \
                 action {key}, study_uid {key}, series_uid {t}, sop_uid {t}, gen {t}, \
                 at {int} NOT NULL, PRIMARY KEY (part, seq))"
            ),
            // Instances a rejection note (IOCM) took out of view: their objects are kept until
            // the note is deleted (they come back) or `wado purge --rejected` deletes them.
            format!(
                "CREATE TABLE IF NOT EXISTS qido_rejected (part {key}, study_uid {key}, \
                 series_uid {key}, sop_uid {key}, gen {key}, code {t}, note_uid {key}, \
                 at {int} NOT NULL, PRIMARY KEY (part, sop_uid))"
            ),
            // The study list's order, and the keys a viewer searches by.
            "CREATE INDEX IF NOT EXISTS qido_study_order ON qido_study (part, study_date DESC, study_time DESC, study_uid)".to_owned(),
            "CREATE INDEX IF NOT EXISTS qido_study_patient_id ON qido_study (part, patient_id)".to_owned(),
            "CREATE INDEX IF NOT EXISTS qido_study_accession ON qido_study (part, accession)".to_owned(),
            "CREATE INDEX IF NOT EXISTS qido_study_name ON qido_study (part, patient_name_fold)".to_owned(),
            "CREATE INDEX IF NOT EXISTS qido_series_uid ON qido_series (part, series_uid)".to_owned(),
            // A study's or series' instances, in order.
            "CREATE INDEX IF NOT EXISTS qido_instance_scope ON qido_instance (part, study_uid, series_uid, sop_uid)".to_owned(),
            // ModalitiesInStudy is matched through the series: their modality, then their study.
            "CREATE INDEX IF NOT EXISTS qido_series_modality ON qido_series (part, modality, study_uid)".to_owned(),
            "CREATE INDEX IF NOT EXISTS qido_retired_due ON qido_retired (part, retired_at)".to_owned(),
        ]
        .into_iter()
        .chain(KEY_INDEXES.iter().map(|(table, column)| {
            format!("CREATE INDEX IF NOT EXISTS {table}_{column} ON {table} (part, {column})")
        }))
        .map(Statement::plain),
    );
    out.push(Statement {
        sql: format!(
            "INSERT INTO qido_meta (name, value) VALUES ('schema', {}) ON CONFLICT (name) DO NOTHING",
            param(d, 1)
        ),
        params: vec![VERSION.into()],
    });
    out
}

/// The stored schema version.
pub fn version_query(_d: Dialect) -> Statement {
    Statement::plain("SELECT value FROM qido_meta WHERE name = 'schema'")
}

/// Every table of every schema version this code knows, dropped (`wado reindex` rebuilding an
/// index of another version).
pub fn drop_all(d: Dialect) -> Vec<Statement> {
    let mut out: Vec<Statement> = pg_lock(d, "wado schema".into()).into_iter().collect();
    out.extend(
        [
            "qido_instance",
            "qido_series",
            "qido_study",
            "qido_retired",
            "qido_layout",
            "qido_change",
            "qido_rejected",
            "qido_writing",
            "qido_pending",
            "qido_meta",
        ]
        .into_iter()
        .map(|t| Statement::plain(format!("DROP TABLE IF EXISTS {t}"))),
    );
    out
}

/// Builds statements with numbered parameters.
struct Params {
    d: Dialect,
    values: Vec<Value>,
}

impl Params {
    fn new(d: Dialect) -> Params {
        Params {
            d,
            values: Vec::new(),
        }
    }

    fn bind(&mut self, v: impl Into<Value>) -> String {
        self.values.push(v.into());
        param(self.d, self.values.len())
    }

    fn statement(&mut self, sql: String) -> Statement {
        Statement {
            sql,
            params: std::mem::take(&mut self.values),
        }
    }
}

/// The value a column of a study or series row takes when a later write of it merges in:
/// the stored one when the write has no value for it (its attributes merge over the stored
/// ones).
fn merged_value(table: &str, column: &str, value: &Value) -> String {
    match value {
        Value::Int(_) | Value::Null => format!("COALESCE(excluded.{column}, {table}.{column})"),
        Value::Text(_) => format!("COALESCE(NULLIF(excluded.{column}, ''), {table}.{column})"),
    }
}

/// The stored attributes of `table` with `excluded`'s over them (RFC 7396 merge: the later
/// write's values win, attributes it lacks are kept).
fn merged_attrs(d: Dialect, table: &str) -> String {
    match d {
        Dialect::Sqlite => format!("json_patch({table}.attrs, excluded.attrs)"),
        Dialect::Postgres => format!("({table}.attrs::jsonb || excluded.attrs::jsonb)"),
    }
}

/// The Modalities in Study column from the study's series: `\CT\MR\`, sorted, or `''`.
fn modalities_of(d: Dialect, p: &mut Params, part: &str, study: &str) -> String {
    let (part, study) = (p.bind(part), p.bind(study));
    let distinct = format!(
        "SELECT DISTINCT modality AS m FROM qido_series WHERE part = {part} AND study_uid = {study} AND modality <> ''"
    );
    match d {
        Dialect::Sqlite => format!(
            "COALESCE((SELECT '\\' || group_concat(m, '\\') || '\\' FROM ({distinct} ORDER BY m)), '')"
        ),
        Dialect::Postgres => format!(
            "COALESCE((SELECT '\\' || string_agg(m, '\\' ORDER BY m) || '\\' FROM ({distinct}) AS ms), '')"
        ),
    }
}

/// An upsert of one row: `INSERT ... SELECT ... WHERE {guard} ON CONFLICT ({conflict}) DO
/// UPDATE SET {update}`.
fn upsert(
    p: &mut Params,
    table: &str,
    row: &Columns,
    guard: &str,
    conflict: &str,
    update: &str,
) -> Statement {
    let names: Vec<&str> = row.iter().map(|(c, _)| *c).collect();
    let marks: Vec<String> = row.iter().map(|(_, v)| p.bind(v.clone())).collect();
    let sql = format!(
        "INSERT INTO {table} ({}) SELECT {} WHERE {guard} ON CONFLICT ({conflict}) DO UPDATE SET {update}",
        names.join(", "),
        marks.join(", ")
    );
    p.statement(sql)
}

/// The transaction that makes `rows` (one instance, stored as version `rows.gen`) the current
/// version of its SOP Instance UID in `partition`, at `now` (seconds):
///
/// 1. PostgreSQL: advisory locks on the study and on the SOP Instance UID (writers of either
///    take turns; SQLite's and D1's writers always do);
/// 2. the study and series rows inserted, or their key columns and attributes merged with
///    this instance's; counts raised when the SOP Instance UID is new, Modalities in Study and
///    the number of series recounted from the study's series rows (a few), `version` set to
///    this write's generation;
/// 3. the version it replaces, if any, named in `qido_retired`;
/// 4. the instance row inserted or replaced.
///
/// Every statement holds only when no instance of that SOP Instance UID is stored in another
/// series or study: then nothing changes (and the writer, reading the row back, reports the
/// duplicate). The primary key `(part, sop_uid)` makes that hold whatever else happens.
pub fn commit_instance(
    d: Dialect,
    partition: &str,
    rows: &InstanceRows,
    now: u64,
) -> Vec<Statement> {
    commit_instance_as(d, partition, rows, now, Change::Replace)
}

/// [`commit_instance`], whose change-feed row says `over` when another version was current
/// (`replace` for a store, `correct` for a correction) and `create` otherwise.
pub fn commit_instance_as(
    d: Dialect,
    partition: &str,
    rows: &InstanceRows,
    now: u64,
    over: Change,
) -> Vec<Statement> {
    let (study, series, sop, gen) = (
        rows.study_uid.as_str(),
        rows.series_uid.as_str(),
        rows.sop_uid.as_str(),
        rows.gen.as_str(),
    );
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    out.extend(pg_lock(d, format!("{partition}/{study}")));
    out.extend(pg_lock(d, format!("{partition}#{sop}")));
    let mut p = Params::new(d);
    // Each statement binds its own parameters: the guard is written anew every time.
    let guard = |p: &mut Params| {
        format!(
            "NOT EXISTS (SELECT 1 FROM qido_instance x WHERE x.part = {} AND x.sop_uid = {} AND (x.study_uid <> {} OR x.series_uid <> {}))",
            p.bind(partition),
            p.bind(sop),
            p.bind(study),
            p.bind(series)
        )
    };
    let is_new = |p: &mut Params| {
        format!(
            "NOT EXISTS (SELECT 1 FROM qido_instance x WHERE x.part = {} AND x.sop_uid = {})",
            p.bind(partition),
            p.bind(sop)
        )
    };
    // 2. The study row, then the series row.
    let mut study_row = rows.study.clone();
    study_row.extend([
        ("modalities", Value::from("")),
        ("n_series", Value::Int(0)),
        ("n_instances", Value::Int(0)),
        ("version", Value::from(gen)),
        ("modified", Value::Int(now)),
    ]);
    let update = merged_update(d, "qido_study", &rows.study);
    let g = guard(&mut p);
    out.push(upsert(
        &mut p,
        "qido_study",
        &study_row,
        &g,
        "part, study_uid",
        &update,
    ));
    let mut series_row = rows.series.clone();
    series_row.extend([
        ("n_instances", Value::Int(0)),
        ("version", Value::from(gen)),
        ("modified", Value::Int(now)),
    ]);
    let update = merged_update(d, "qido_series", &rows.series);
    let g = guard(&mut p);
    out.push(upsert(
        &mut p,
        "qido_series",
        &series_row,
        &g,
        "part, study_uid, series_uid",
        &update,
    ));
    // The counts, before the instance row is there: raised when the instance is new.
    let new = is_new(&mut p);
    let (v, m) = (p.bind(gen), p.bind(now));
    let (pa, st, se) = (p.bind(partition), p.bind(study), p.bind(series));
    let g = guard(&mut p);
    let sql = format!(
        "UPDATE qido_series SET n_instances = n_instances + (CASE WHEN {new} THEN 1 ELSE 0 END), \
         version = {v}, modified = CASE WHEN modified > {m} THEN modified ELSE {m} END \
         WHERE part = {pa} AND study_uid = {st} AND series_uid = {se} AND {g}"
    );
    out.push(p.statement(sql));
    let new = is_new(&mut p);
    let (v, m) = (p.bind(gen), p.bind(now));
    let n_series = {
        let (pa, st) = (p.bind(partition), p.bind(study));
        format!("(SELECT count(*) FROM qido_series s WHERE s.part = {pa} AND s.study_uid = {st})")
    };
    let modalities = modalities_of(d, &mut p, partition, study);
    let (pa, st) = (p.bind(partition), p.bind(study));
    let g = guard(&mut p);
    let sql = format!(
        "UPDATE qido_study SET n_instances = n_instances + (CASE WHEN {new} THEN 1 ELSE 0 END), \
         n_series = {n_series}, modalities = {modalities}, version = {v}, \
         modified = CASE WHEN modified > {m} THEN modified ELSE {m} END \
         WHERE part = {pa} AND study_uid = {st} AND {g}"
    );
    out.push(p.statement(sql));
    // 3. The version replaced, if another is current.
    let (n, pa, so, st, se, gv) = (
        p.bind(now),
        p.bind(partition),
        p.bind(sop),
        p.bind(study),
        p.bind(series),
        p.bind(gen),
    );
    let sql = format!(
        "INSERT INTO qido_retired (part, study_uid, series_uid, sop_uid, gen, retired_at) \
         SELECT part, study_uid, series_uid, sop_uid, gen, {n} FROM qido_instance \
         WHERE part = {pa} AND sop_uid = {so} AND study_uid = {st} AND series_uid = {se} AND gen <> {gv} \
         ON CONFLICT DO NOTHING"
    );
    out.push(p.statement(sql));
    // Stored again after a rejection: no longer rejected (the rejected version is retired,
    // unless it is this very one).
    let (n, pa, so, gv) = (p.bind(now), p.bind(partition), p.bind(sop), p.bind(gen));
    out.push(p.statement(format!(
        "INSERT INTO qido_retired (part, study_uid, series_uid, sop_uid, gen, retired_at) \
         SELECT part, study_uid, series_uid, sop_uid, gen, {n} FROM qido_rejected \
         WHERE part = {pa} AND sop_uid = {so} AND gen <> {gv} ON CONFLICT DO NOTHING"
    )));
    let (pa, so) = (p.bind(partition), p.bind(sop));
    out.push(p.statement(format!(
        "DELETE FROM qido_rejected WHERE part = {pa} AND sop_uid = {so}"
    )));
    // The change, numbered after the partition's last (PostgreSQL: under the feed's lock).
    out.extend(pg_lock(d, change_lock(partition)));
    let (pa, so) = (p.bind(partition), p.bind(sop));
    // In parentheses, as the other CASEs here: `wrangler d1 execute --file` (loading
    // `wado reindex --sql-out`) splits statements at `;` and reads a CASE preceded by a space
    // as a compound statement closed only by an `END` followed by a space or `;`.
    let action = format!(
        "(CASE WHEN EXISTS (SELECT 1 FROM qido_instance x WHERE x.part = {pa} AND x.sop_uid = {so}) \
         THEN '{}' ELSE '{}' END)",
        over.as_str(),
        Change::Create.as_str()
    );
    let (st, se, gv, n) = (p.bind(study), p.bind(series), p.bind(gen), p.bind(now));
    let g = guard(&mut p);
    let sql = format!(
        "INSERT INTO qido_change (part, seq, action, study_uid, series_uid, sop_uid, gen, at) \
         SELECT {pa}, {next}, {action}, {st}, {se}, {so}, {gv}, {n} WHERE {g}",
        next = next_seq(d, &pa)
    );
    out.push(p.statement(sql));
    // 4. The instance row.
    let update: Vec<String> = rows
        .instance
        .iter()
        .filter(|(c, _)| !matches!(*c, "part" | "sop_uid"))
        .map(|(c, _)| format!("{c} = excluded.{c}"))
        .collect();
    let g = guard(&mut p);
    out.push(upsert(
        &mut p,
        "qido_instance",
        &rows.instance,
        &g,
        "part, sop_uid",
        &update.join(", "),
    ));
    out
}

/// What a row of the change feed says happened to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Stored, new.
    Create,
    /// Stored over another version of the same SOP Instance UID.
    Replace,
    /// Deleted.
    Delete,
    /// Taken out of view by a rejection note (IOCM).
    Reject,
    /// Given a new version with corrected patient or study attributes.
    Correct,
}

impl Change {
    /// Its name in the catalog and in the feed's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Create => "create",
            Change::Replace => "replace",
            Change::Delete => "delete",
            Change::Reject => "reject",
            Change::Correct => "correct",
        }
    }
}

/// The key of the advisory lock a PostgreSQL transaction holds from its first change-feed row
/// to its commit: the feed's rows are numbered one transaction at a time, so a number is never
/// taken twice and a reader never sees a number before a smaller one (no gaps, no reordering).
/// SQLite and D1 have one writer at a time anyway.
fn change_lock(partition: &str) -> String {
    format!("{partition} changes")
}

/// The next sequence number of the partition's change feed (`part` is its bound marker).
fn next_seq(_d: Dialect, part: &str) -> String {
    format!("COALESCE((SELECT max(c.seq) FROM qido_change c WHERE c.part = {part}), 0) + 1")
}

/// Empties `tags` (study-level attributes) in a study's row: their key columns and their DICOM
/// JSON. A correction runs it before committing the corrected instances in the same
/// transaction, which set them anew: the merge of an upsert keeps a stored value the write
/// lacks, so an attribute the correction empties would otherwise stay as it was.
pub fn reset_study_attributes(
    d: Dialect,
    partition: &str,
    study: &str,
    tags: &[u32],
) -> Vec<Statement> {
    use super::attrs::{Kind, Level, KEYS};
    let mut sets = Vec::new();
    for k in KEYS
        .iter()
        .filter(|k| k.level == Level::Study && tags.contains(&k.tag))
    {
        match k.kind {
            Kind::Int => sets.push(format!("{} = NULL", k.column)),
            Kind::PersonName => {
                let (fold, words) = super::rows::name_columns(k.column);
                sets.extend([k.column, fold, words].map(|c| format!("{c} = ''")));
            }
            _ => sets.push(format!("{} = ''", k.column)),
        }
    }
    // The tags are 8 hexadecimal digits (never text of a request's).
    let keys: Vec<String> = tags.iter().map(|t| format!("{t:08X}")).collect();
    sets.push(match d {
        Dialect::Sqlite => format!(
            "attrs = json_remove(attrs, {})",
            keys.iter()
                .map(|k| format!("'$.\"{k}\"'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Dialect::Postgres => format!(
            "attrs = (attrs::jsonb{})::text",
            keys.iter().map(|k| format!(" - '{k}'")).collect::<String>()
        ),
    });
    let mut out: Vec<Statement> = pg_lock(d, format!("{partition}/{study}"))
        .into_iter()
        .collect();
    out.push(Statement {
        sql: format!(
            "UPDATE qido_study SET {} WHERE part = {} AND study_uid = {}",
            sets.join(", "),
            param(d, 1),
            param(d, 2)
        ),
        params: vec![partition.into(), study.into()],
    });
    out
}

/// `SET ... WHERE ...` of a study or series upsert: key columns merged (a value the write
/// lacks keeps the stored one), attributes merged, the rest (counts, version) left to the count
/// update; and only when that changes something. The next instance of a series mostly brings
/// nothing new to its study and series rows, and a row rewritten to the same values still
/// rewrites an entry in every index on the columns it sets (SQLite: ~18 pages of WAL a commit
/// for the study's and series' indexes, more than the instance's own).
fn merged_update(d: Dialect, table: &str, row: &Columns) -> String {
    let differs = |new: &str, old: &str| match d {
        Dialect::Sqlite => format!("{new} IS NOT {old}"),
        Dialect::Postgres => format!("{new} IS DISTINCT FROM {old}"),
    };
    let (mut sets, mut changed): (Vec<String>, Vec<String>) = row
        .iter()
        .filter(|(c, _)| !matches!(*c, "part" | "study_uid" | "series_uid" | "attrs"))
        .map(|(c, v)| {
            let new = merged_value(table, c, v);
            (
                format!("{c} = {new}"),
                differs(&new, &format!("{table}.{c}")),
            )
        })
        .unzip();
    let attrs = merged_attrs(d, table);
    match d {
        Dialect::Sqlite => {
            sets.push(format!("attrs = {attrs}"));
            changed.push(differs(&attrs, &format!("{table}.attrs")));
        }
        Dialect::Postgres => {
            sets.push(format!("attrs = {attrs}::text"));
            changed.push(differs(&attrs, &format!("{table}.attrs::jsonb")));
        }
    }
    format!("{} WHERE {}", sets.join(", "), changed.join(" OR "))
}

/// Where the instance of SOP Instance UID `sop` is in a partition: a row of (study, series,
/// gen, sha256), or none.
pub fn locate_instance(d: Dialect, partition: &str, sop: &Uid) -> Statement {
    Statement {
        sql: format!(
            "SELECT study_uid, series_uid, gen, sha256 FROM qido_instance WHERE part = {} AND sop_uid = {}",
            param(d, 1),
            param(d, 2)
        ),
        params: vec![partition.into(), sop.as_str().into()],
    }
}

/// The stored instances of a study, a series or one instance, as retrieval lists them (series
/// by UID, instances by UID within them): (study, series, sop, gen, size, stored_at).
pub fn list_instances(
    d: Dialect,
    partition: &str,
    study: &Uid,
    series: Option<&Uid>,
    sop: Option<&Uid>,
) -> Statement {
    let mut p = Params::new(d);
    let mut sql = format!(
        "SELECT study_uid, series_uid, sop_uid, gen, size, stored_at FROM qido_instance WHERE part = {} AND study_uid = {}",
        p.bind(partition),
        p.bind(study.as_str())
    );
    if let Some(se) = series {
        sql.push_str(&format!(" AND series_uid = {}", p.bind(se.as_str())));
    }
    if let Some(i) = sop {
        sql.push_str(&format!(" AND sop_uid = {}", p.bind(i.as_str())));
    }
    sql.push_str(" ORDER BY series_uid, sop_uid");
    p.statement(sql)
}

/// What a DIMSE retrieval (C-GET, C-MOVE) sends of a study: (series, sop, gen, size, transfer
/// syntax, SOP class) of each of its instances, by series, Instance Number and UID.
pub fn retrieve_list(d: Dialect, partition: &str, study: &Uid) -> Statement {
    let mut p = Params::new(d);
    let sql = format!(
        "SELECT series_uid, sop_uid, gen, size, ts, sop_class FROM qido_instance WHERE part = {} AND study_uid = {} \
         ORDER BY series_uid, COALESCE(instance_number, 2147483647), sop_uid",
        p.bind(partition),
        p.bind(study.as_str())
    );
    p.statement(sql)
}

/// The metadata of a series' or a study's instances, in one snapshot with the version it
/// belongs to: (version, modified, n_instances) of the series or study, then for each
/// instance (series, sop, gen, instance number, meta, size). Series in UID order, instances by
/// Instance Number then UID within them.
pub fn metadata_rows(d: Dialect, partition: &str, study: &Uid, series: Option<&Uid>) -> Statement {
    let mut p = Params::new(d);
    let (pa, st) = (p.bind(partition), p.bind(study.as_str()));
    let sql = match series {
        Some(se) => {
            let se = p.bind(se.as_str());
            format!(
                "SELECT o.version, o.modified, o.n_instances, i.series_uid, i.sop_uid, i.gen, i.instance_number, i.meta, i.size \
                 FROM qido_series o JOIN qido_instance i ON i.part = o.part AND i.study_uid = o.study_uid AND i.series_uid = o.series_uid \
                 WHERE o.part = {pa} AND o.study_uid = {st} AND o.series_uid = {se} \
                 ORDER BY i.series_uid, COALESCE(i.instance_number, 2147483647), i.sop_uid"
            )
        }
        None => format!(
            "SELECT o.version, o.modified, o.n_instances, i.series_uid, i.sop_uid, i.gen, i.instance_number, i.meta, i.size \
             FROM qido_study o JOIN qido_instance i ON i.part = o.part AND i.study_uid = o.study_uid \
             WHERE o.part = {pa} AND o.study_uid = {st} \
             ORDER BY i.series_uid, COALESCE(i.instance_number, 2147483647), i.sop_uid"
        ),
    };
    p.statement(sql)
}

/// The patient ID of a study (for the audit trail), or no row.
pub fn study_patient(d: Dialect, partition: &str, study: &Uid) -> Statement {
    let mut p = Params::new(d);
    let (pa, st) = (p.bind(partition), p.bind(study.as_str()));
    p.statement(format!(
        "SELECT patient_id FROM qido_study WHERE part = {pa} AND study_uid = {st}"
    ))
}

/// The version of a series or study: (version, modified, n_instances), or no row.
pub fn version_of(d: Dialect, partition: &str, study: &Uid, series: Option<&Uid>) -> Statement {
    let mut p = Params::new(d);
    let (pa, st) = (p.bind(partition), p.bind(study.as_str()));
    let sql = match series {
        Some(se) => format!(
            "SELECT version, modified, n_instances FROM qido_series WHERE part = {pa} AND study_uid = {st} AND series_uid = {}",
            p.bind(se.as_str())
        ),
        None => format!(
            "SELECT version, modified, n_instances FROM qido_study WHERE part = {pa} AND study_uid = {st}"
        ),
    };
    p.statement(sql)
}

/// Superseded versions retired at or before `before` (seconds), at most `limit`: (study, series,
/// sop, gen).
pub fn retired_due(d: Dialect, partition: &str, before: u64, limit: usize) -> Statement {
    Statement {
        sql: format!(
            "SELECT study_uid, series_uid, sop_uid, gen FROM qido_retired WHERE part = {} AND retired_at <= {} ORDER BY retired_at LIMIT {limit}",
            param(d, 1),
            param(d, 2)
        ),
        params: vec![
            partition.into(),
            Value::Int(i64::try_from(before).unwrap_or(i64::MAX)),
        ],
    }
}

/// Forgets a retired version (its objects are deleted).
pub fn forget_retired(d: Dialect, partition: &str, sop: &Uid, gen: &str) -> Statement {
    Statement {
        sql: format!(
            "DELETE FROM qido_retired WHERE part = {} AND sop_uid = {} AND gen = {}",
            param(d, 1),
            param(d, 2),
            param(d, 3)
        ),
        params: vec![partition.into(), sop.as_str().into(), gen.into()],
    }
}

/// Records a partition's layout record when it has none (the first writer's wins).
pub fn layout_put(d: Dialect, partition: &str, record: &str) -> Statement {
    Statement {
        sql: format!(
            "INSERT INTO qido_layout (part, record) VALUES ({}, {}) ON CONFLICT (part) DO NOTHING",
            param(d, 1),
            param(d, 2)
        ),
        params: vec![partition.into(), record.into()],
    }
}

/// A partition's layout record.
pub fn layout_get(d: Dialect, partition: &str) -> Statement {
    Statement {
        sql: format!(
            "SELECT record FROM qido_layout WHERE part = {}",
            param(d, 1)
        ),
        params: vec![partition.into()],
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

/// The instances of a study, a series or one instance: the condition on `qido_instance`
/// (aliased `alias`, or none), its values bound in `p`.
fn scope_of(
    p: &mut Params,
    alias: &str,
    partition: &str,
    study: &Uid,
    series: Option<&Uid>,
    sops: &[Uid],
) -> String {
    let a = if alias.is_empty() {
        String::new()
    } else {
        format!("{alias}.")
    };
    let mut sql = format!(
        "{a}part = {} AND {a}study_uid = {}",
        p.bind(partition),
        p.bind(study.as_str())
    );
    if let Some(se) = series {
        sql.push_str(&format!(" AND {a}series_uid = {}", p.bind(se.as_str())));
    }
    match sops {
        [] => {}
        [one] => sql.push_str(&format!(" AND {a}sop_uid = {}", p.bind(one.as_str()))),
        many => {
            let list: Vec<String> = many.iter().map(|u| p.bind(u.as_str())).collect();
            sql.push_str(&format!(" AND {a}sop_uid IN ({})", list.join(", ")));
        }
    }
    sql
}

/// How many instances a study, a series or one instance has: one row, one count.
pub fn count_instances(
    d: Dialect,
    partition: &str,
    study: &Uid,
    series: Option<&Uid>,
    sop: Option<&Uid>,
) -> Statement {
    let mut p = Params::new(d);
    let sops: Vec<Uid> = sop.into_iter().cloned().collect();
    let scope = scope_of(&mut p, "", partition, study, series, &sops);
    p.statement(format!("SELECT count(*) FROM qido_instance WHERE {scope}"))
}

/// How instances leave view.
#[derive(Debug, Clone, Copy)]
enum Removal<'a> {
    /// Deleted: their versions retired (objects deleted after the grace period).
    Delete,
    /// Rejected by the note `note` with the code `code`: kept aside, restorable.
    Reject { code: &'a str, note: &'a str },
}

/// The transaction that deletes a study, a series or one instance of `partition` at `now`
/// (seconds), `version` naming the change (the study's and series' new version, so that
/// metadata assembled before it is never served after it):
///
/// 1. PostgreSQL: the study's lock (writers of the study take turns with it) and the feed's;
/// 2. a `delete` row of the change feed per instance, in UID order;
/// 3. each instance's version retired (its objects deleted by [`retired_due`]'s sweep once
///    no reader may still stream them), its row deleted;
/// 4. the series and study rows recounted from what is left (Modalities in Study, the
///    number of series and instances), and deleted when nothing is left.
pub fn delete_instances(
    d: Dialect,
    partition: &str,
    study: &Uid,
    series: Option<&Uid>,
    sop: Option<&Uid>,
    now: u64,
    version: &str,
) -> Vec<Statement> {
    let sops: Vec<Uid> = sop.into_iter().cloned().collect();
    remove_instances(
        d,
        partition,
        study,
        series,
        &sops,
        now,
        version,
        Removal::Delete,
    )
}

/// The transaction that rejects instances `sops` of `study` (those stored; others are left
/// alone) by the rejection note `note` (its SOP Instance UID) with the code `code` (CID 7011):
/// as [`delete_instances`], but each instance's version is kept aside in `qido_rejected`
/// (its objects stay) and the feed says `reject`.
#[allow(clippy::too_many_arguments)]
pub fn reject_instances(
    d: Dialect,
    partition: &str,
    study: &Uid,
    sops: &[Uid],
    code: &str,
    note: &str,
    now: u64,
    version: &str,
) -> Vec<Statement> {
    if sops.is_empty() {
        return Vec::new();
    }
    remove_instances(
        d,
        partition,
        study,
        None,
        sops,
        now,
        version,
        Removal::Reject { code, note },
    )
}

#[allow(clippy::too_many_arguments)]
fn remove_instances(
    d: Dialect,
    partition: &str,
    study: &Uid,
    series: Option<&Uid>,
    sops: &[Uid],
    now: u64,
    version: &str,
    how: Removal<'_>,
) -> Vec<Statement> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    out.extend(pg_lock(d, format!("{partition}/{study}")));
    out.extend(pg_lock(d, change_lock(partition)));
    let mut p = Params::new(d);
    // 2. The feed, numbered on from its last row.
    let pa = p.bind(partition);
    let base = next_seq(d, &pa);
    let n = p.bind(now);
    let scope = scope_of(&mut p, "i", partition, study, series, sops);
    let action = match how {
        Removal::Delete => Change::Delete,
        Removal::Reject { .. } => Change::Reject,
    };
    out.push(p.statement(format!(
        "INSERT INTO qido_change (part, seq, action, study_uid, series_uid, sop_uid, gen, at) \
         SELECT i.part, {base} - 1 + ROW_NUMBER() OVER (ORDER BY i.series_uid, i.sop_uid), '{}', \
         i.study_uid, i.series_uid, i.sop_uid, i.gen, {n} FROM qido_instance i WHERE {scope}",
        action.as_str()
    )));
    // 3. Retired (or kept aside), then gone.
    let n = p.bind(now);
    let scope = scope_of(&mut p, "", partition, study, series, sops);
    let sql = match how {
        Removal::Delete => format!(
            "INSERT INTO qido_retired (part, study_uid, series_uid, sop_uid, gen, retired_at) \
             SELECT part, study_uid, series_uid, sop_uid, gen, {n} FROM qido_instance WHERE {scope} \
             ON CONFLICT DO NOTHING"
        ),
        Removal::Reject { code, note } => {
            let (code, note) = (p.bind(code), p.bind(note));
            format!(
                "INSERT INTO qido_rejected (part, study_uid, series_uid, sop_uid, gen, code, note_uid, at) \
                 SELECT part, study_uid, series_uid, sop_uid, gen, {code}, {note}, {n} FROM qido_instance \
                 WHERE {scope} ON CONFLICT DO NOTHING"
            )
        }
    };
    out.push(p.statement(sql));
    let scope = scope_of(&mut p, "", partition, study, series, sops);
    out.push(p.statement(format!("DELETE FROM qido_instance WHERE {scope}")));
    // 4. The series (all of the study's when a study is deleted), then the study.
    let (v, m) = (p.bind(version), p.bind(now));
    let (pa, st) = (p.bind(partition), p.bind(study.as_str()));
    let only = series
        .map(|se| format!(" AND series_uid = {}", p.bind(se.as_str())))
        .unwrap_or_default();
    out.push(p.statement(format!(
        "UPDATE qido_series SET n_instances = (SELECT count(*) FROM qido_instance x \
         WHERE x.part = qido_series.part AND x.study_uid = qido_series.study_uid \
         AND x.series_uid = qido_series.series_uid), version = {v}, \
         modified = CASE WHEN modified > {m} THEN modified ELSE {m} END \
         WHERE part = {pa} AND study_uid = {st}{only}"
    )));
    let (pa, st) = (p.bind(partition), p.bind(study.as_str()));
    out.push(p.statement(format!(
        "DELETE FROM qido_series WHERE part = {pa} AND study_uid = {st} AND n_instances = 0"
    )));
    let (v, m) = (p.bind(version), p.bind(now));
    let n_instances = {
        let (pa, st) = (p.bind(partition), p.bind(study.as_str()));
        format!("(SELECT count(*) FROM qido_instance x WHERE x.part = {pa} AND x.study_uid = {st})")
    };
    let n_series = {
        let (pa, st) = (p.bind(partition), p.bind(study.as_str()));
        format!("(SELECT count(*) FROM qido_series s WHERE s.part = {pa} AND s.study_uid = {st})")
    };
    let modalities = modalities_of(d, &mut p, partition, study.as_str());
    let (pa, st) = (p.bind(partition), p.bind(study.as_str()));
    out.push(p.statement(format!(
        "UPDATE qido_study SET n_instances = {n_instances}, n_series = {n_series}, \
         modalities = {modalities}, version = {v}, \
         modified = CASE WHEN modified > {m} THEN modified ELSE {m} END \
         WHERE part = {pa} AND study_uid = {st}"
    )));
    let (pa, st) = (p.bind(partition), p.bind(study.as_str()));
    out.push(p.statement(format!(
        "DELETE FROM qido_study WHERE part = {pa} AND study_uid = {st} AND n_instances = 0"
    )));
    out
}

/// The instances rejected by the rejection notes among a study's, a series' or one instance's
/// instances: (study, series, sop, gen).
pub fn rejected_by_notes_in(
    d: Dialect,
    partition: &str,
    study: &Uid,
    series: Option<&Uid>,
    sop: Option<&Uid>,
) -> Statement {
    let mut p = Params::new(d);
    let sops: Vec<Uid> = sop.into_iter().cloned().collect();
    let pa = p.bind(partition);
    let scope = scope_of(&mut p, "", partition, study, series, &sops);
    p.statement(format!(
        "SELECT study_uid, series_uid, sop_uid, gen FROM qido_rejected WHERE part = {pa} \
         AND note_uid IN (SELECT sop_uid FROM qido_instance WHERE {scope}) ORDER BY sop_uid"
    ))
}

/// Forgets that `sop` was rejected (it was restored).
pub fn forget_rejected(d: Dialect, partition: &str, sop: &str) -> Statement {
    Statement {
        sql: format!(
            "DELETE FROM qido_rejected WHERE part = {} AND sop_uid = {}",
            param(d, 1),
            param(d, 2)
        ),
        params: vec![partition.into(), sop.into()],
    }
}

/// Rejected versions rejected before `before` (seconds) retired as of their rejection, so
/// that the sweep deletes their objects (`wado purge --rejected`): no longer restorable.
pub fn retire_rejected(d: Dialect, partition: &str, before: u64) -> Vec<Statement> {
    let before = i64::try_from(before).unwrap_or(i64::MAX);
    vec![
        Statement {
            sql: format!(
                "INSERT INTO qido_retired (part, study_uid, series_uid, sop_uid, gen, retired_at) \
                 SELECT part, study_uid, series_uid, sop_uid, gen, at FROM qido_rejected \
                 WHERE part = {} AND at < {} ON CONFLICT DO NOTHING",
                param(d, 1),
                param(d, 2)
            ),
            params: vec![partition.into(), Value::Int(before)],
        },
        Statement {
            sql: format!(
                "DELETE FROM qido_rejected WHERE part = {} AND at < {}",
                param(d, 1),
                param(d, 2)
            ),
            params: vec![partition.into(), Value::Int(before)],
        },
    ]
}

/// The change feed of a partition after sequence number `after`, at most `limit` rows, in
/// order: (seq, action, study, series, sop, at).
pub fn changes_after(d: Dialect, partition: &str, after: i64, limit: usize) -> Statement {
    Statement {
        sql: format!(
            "SELECT seq, action, study_uid, series_uid, sop_uid, at FROM qido_change \
             WHERE part = {} AND seq > {} ORDER BY seq LIMIT {limit}",
            param(d, 1),
            param(d, 2)
        ),
        params: vec![partition.into(), Value::Int(after)],
    }
}

/// Takes or renews the lease `name` (in `qido_meta`: the time it ends, 12 digits, a space, its
/// holder) for `holder` until `until`, when it is free (ended before `now`) or already
/// `holder`'s. Read it back ([`meta_value`]) to know who holds it.
pub fn take_lease(d: Dialect, name: &str, holder: &str, now: u64, until: u64) -> Statement {
    Statement {
        sql: format!(
            "INSERT INTO qido_meta (name, value) VALUES ({n}, {v}) ON CONFLICT (name) DO UPDATE \
             SET value = excluded.value WHERE qido_meta.value < {now} OR substr(qido_meta.value, 14) = {h}",
            n = param(d, 1),
            v = param(d, 2),
            now = param(d, 3),
            h = param(d, 4)
        ),
        params: vec![
            name.into(),
            format!("{until:012} {holder}").into(),
            format!("{now:012}").into(),
            holder.into(),
        ],
    }
}

/// Sets `name` to `value` in `qido_meta` while `lease` is `holder`'s ([`take_lease`]).
pub fn set_meta_under_lease(
    d: Dialect,
    name: &str,
    value: &str,
    lease: &str,
    holder: &str,
) -> Statement {
    Statement {
        sql: format!(
            "INSERT INTO qido_meta (name, value) SELECT {n}, {v} WHERE EXISTS \
             (SELECT 1 FROM qido_meta l WHERE l.name = {l} AND substr(l.value, 14) = {h}) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            n = param(d, 1),
            v = param(d, 2),
            l = param(d, 3),
            h = param(d, 4)
        ),
        params: vec![name.into(), value.into(), lease.into(), holder.into()],
    }
}

/// The value of `name` in `qido_meta` (no row when none).
pub fn meta_value(d: Dialect, name: &str) -> Statement {
    Statement {
        sql: format!("SELECT value FROM qido_meta WHERE name = {}", param(d, 1)),
        params: vec![name.into()],
    }
}

/// Sets `name` in `qido_meta` to `value` unless it already holds a larger one (values of one
/// length compare as text, so callers pad numbers: [`padded`]): a counter that only moves
/// forward, whoever writes it.
pub fn set_meta_max(d: Dialect, name: &str, value: &str) -> Statement {
    Statement {
        sql: format!(
            "INSERT INTO qido_meta (name, value) VALUES ({n}, {v}) ON CONFLICT (name) DO UPDATE \
             SET value = excluded.value WHERE qido_meta.value < excluded.value",
            n = param(d, 1),
            v = param(d, 2)
        ),
        params: vec![name.into(), value.into()],
    }
}

/// A sequence number as [`set_meta_max`] compares it: 20 digits.
pub fn padded(n: i64) -> String {
    format!("{:020}", n.max(0))
}

/// The series of `studies` (at most 90: D1 binds 100 parameters) that `partition` holds
/// current instances of: (study, series).
pub fn held_series(d: Dialect, partition: &str, studies: &[&str]) -> Statement {
    let list: Vec<String> = (0..studies.len()).map(|i| param(d, i + 2)).collect();
    let mut params: Vec<Value> = vec![partition.into()];
    params.extend(studies.iter().map(|s| Value::from(*s)));
    Statement {
        sql: format!(
            "SELECT DISTINCT study_uid, series_uid FROM qido_instance WHERE part = {} \
             AND study_uid IN ({})",
            param(d, 1),
            if list.is_empty() {
                "NULL".to_owned()
            } else {
                list.join(", ")
            }
        ),
        params,
    }
}

/// The versions of an instance the catalog knows: (state, study, series, gen, since), state
/// `current` (since: stored), `retired` (replaced, corrected or deleted; since: then) or
/// `rejected` (since: then).
pub fn instance_versions(d: Dialect, partition: &str, sop: &str) -> Statement {
    let (pa, so) = (param(d, 1), param(d, 2));
    Statement {
        sql: format!(
            "SELECT 'current', study_uid, series_uid, gen, stored_at FROM qido_instance \
             WHERE part = {pa} AND sop_uid = {so} UNION ALL \
             SELECT 'retired', study_uid, series_uid, gen, retired_at FROM qido_retired \
             WHERE part = {pa} AND sop_uid = {so} UNION ALL \
             SELECT 'rejected', study_uid, series_uid, gen, at FROM qido_rejected \
             WHERE part = {pa} AND sop_uid = {so}"
        ),
        params: vec![partition.into(), sop.into()],
    }
}

/// The last row of a partition's change feed, as [`changes_after`] gives rows.
pub fn latest_change(d: Dialect, partition: &str) -> Statement {
    Statement {
        sql: format!(
            "SELECT seq, action, study_uid, series_uid, sop_uid, at FROM qido_change \
             WHERE part = {} ORDER BY seq DESC LIMIT 1",
            param(d, 1)
        ),
        params: vec![partition.into()],
    }
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
