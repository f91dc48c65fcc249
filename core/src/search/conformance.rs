//! The catalog conformance suite: every engine (SQLite, PostgreSQL, D1) runs these against its
//! database, with several handles on it where it has them (connections, processes), so that
//! the rules a writer relies on (`crate::ingest`) hold on each: the schema made once by many
//! at once, one transaction per instance leaving counts exact and one version current, one
//! SOP Instance UID naming one instance, the first layout record winning, a study's metadata
//! read in one snapshot. Each run writes its own partition (`run`), so a database may be
//! used again. Not API-stable; for tests only. Panics with a message naming the check.

use super::rows::instance_rows;
use super::{schema, Index, Row, Value};
use crate::dicom::uid::Uid;
use crate::layout::{InstanceIndex, StoredFile, INDEX_FORMAT, LAYOUT_VERSION};

/// Runs every check against `index`, and the concurrent ones across `all` (handles on the same
/// database, `index` among them), in partition `run` (a name of letters and digits).
pub async fn run_all(index: &dyn Index, all: &[&dyn Index], run: &str) {
    schema_opens_once_for_many(all).await;
    counts_follow_each_instance(index, &format!("{run}A")).await;
    a_later_instance_merges_into_its_study_and_series(index, &format!("{run}I")).await;
    a_replacement_retires_the_version_it_replaces(index, &format!("{run}B")).await;
    one_sop_instance_uid_names_one_instance(index, &format!("{run}C")).await;
    the_first_layout_record_wins(all, &format!("{run}D")).await;
    concurrent_writers_leave_exact_counts(all, &format!("{run}E")).await;
    deletes_recount_and_leave_nothing_behind(index, &format!("{run}F")).await;
    the_change_feed_has_no_gaps_under_concurrent_writers(all, &format!("{run}G")).await;
    a_webhook_has_one_deliverer_and_keeps_its_progress(all, &format!("{run}H")).await;
}

fn uid(s: &str) -> Uid {
    Uid::parse(s).expect("uid")
}

/// An instance's index as the import makes it, with the attributes that reach the rows.
pub fn instance(study: &str, series: &str, sop: &str, modality: &str, gen: &str) -> InstanceIndex {
    let meta = serde_json::json!({
        "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
        "00080018": {"vr": "UI", "Value": [sop]},
        "00080020": {"vr": "DA", "Value": ["20240102"]},
        "00080060": {"vr": "CS", "Value": [modality]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
        "00100020": {"vr": "LO", "Value": ["P1"]},
        "0020000D": {"vr": "UI", "Value": [study]},
        "0020000E": {"vr": "UI", "Value": [series]},
        "00200013": {"vr": "IS", "Value": [1]},
        "00204000": {"vr": "LT", "Value": [gen]},
    });
    InstanceIndex {
        format: INDEX_FORMAT.into(),
        version: LAYOUT_VERSION,
        study: uid(study),
        series: uid(series),
        sop_instance: uid(sop),
        sop_class: "1.2.840.10008.5.1.4.1.1.2".into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        instance_number: Some(1),
        source: StoredFile {
            size: 1000 + gen.len() as u64,
            sha256: format!("{gen:0>64}"),
        },
        gen: gen.into(),
        stored_at: 1_700_000_000,
        replaces: None,
        inflated: None,
        pixel: None,
        frames: None,
        bulk: Vec::new(),
        metadata: serde_json::value::RawValue::from_string(meta.to_string()).expect("json"),
    }
}

/// Commits one instance in its own transaction.
pub async fn commit(index: &dyn Index, part: &str, i: &InstanceIndex) {
    let rows = instance_rows(part, i);
    index
        .execute(schema::commit_instance(
            index.dialect(),
            part,
            &rows,
            i.stored_at,
        ))
        .await
        .unwrap_or_else(|e| panic!("commit of {} ({}): {e}", i.sop_instance, i.gen));
}

async fn rows(index: &dyn Index, s: super::Statement) -> Vec<Row> {
    index.query(s).await.expect("query")
}

fn int(r: &Row, n: usize) -> i64 {
    r.get(n).and_then(Value::as_int).unwrap_or(-1)
}

fn text(r: &Row, n: usize) -> String {
    r.get(n).and_then(Value::as_str).unwrap_or("").to_owned()
}

/// (n_series, n_instances, modalities) of a study.
async fn study_counts(index: &dyn Index, part: &str, study: &str) -> Option<(i64, i64, String)> {
    let d = index.dialect();
    let r = rows(
        index,
        super::Statement {
            sql: format!(
                "SELECT n_series, n_instances, modalities FROM qido_study WHERE part = {} AND study_uid = {}",
                schema::param(d, 1),
                schema::param(d, 2)
            ),
            params: vec![part.into(), study.into()],
        },
    )
    .await;
    r.first().map(|r| (int(r, 0), int(r, 1), text(r, 2)))
}

/// Deletes `study` (and `series`, `sop` when given) in one transaction.
pub async fn delete(
    index: &dyn Index,
    part: &str,
    study: &str,
    series: Option<&str>,
    sop: Option<&str>,
) {
    let (series, sop) = (series.map(uid), sop.map(uid));
    index
        .execute(schema::delete_instances(
            index.dialect(),
            part,
            &uid(study),
            series.as_ref(),
            sop.as_ref(),
            1_700_000_100,
            "deleted",
        ))
        .await
        .unwrap_or_else(|e| panic!("delete of {study} {series:?} {sop:?}: {e}"));
}

/// The change feed from its start: (seq, action, sop).
async fn feed(index: &dyn Index, part: &str) -> Vec<(i64, String, String)> {
    rows(
        index,
        schema::changes_after(index.dialect(), part, 0, 10_000),
    )
    .await
    .iter()
    .map(|r| (int(r, 0), text(r, 1), text(r, 4)))
    .collect()
}

/// Every handle opens the schema at once: all succeed, and it is there once.
pub async fn schema_opens_once_for_many(all: &[&dyn Index]) {
    let opened = futures::future::join_all(all.iter().map(|i| super::open(*i))).await;
    for r in opened {
        r.expect("schema opened by every handle at once");
    }
    super::open(all[0]).await.expect("and again");
}

/// [`instance`] with more attributes in its metadata (`extra`: DICOM JSON by tag).
fn with_attributes(mut i: InstanceIndex, extra: serde_json::Value) -> InstanceIndex {
    let mut meta: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(i.metadata.get()).expect("metadata");
    for (tag, value) in extra.as_object().expect("attributes by tag") {
        meta.insert(tag.clone(), value.clone());
    }
    i.metadata =
        serde_json::value::RawValue::from_string(serde_json::Value::Object(meta).to_string())
            .expect("json");
    i
}

/// (description, attrs) of a study's row, or of one of its series' rows.
async fn described(
    index: &dyn Index,
    part: &str,
    study: &str,
    series: Option<&str>,
) -> (String, String) {
    let d = index.dialect();
    let (table, mut params) = match series {
        Some(se) => ("qido_series", vec![part.into(), study.into(), se.into()]),
        None => ("qido_study", vec![part.into(), study.into()]),
    };
    let mut sql = format!(
        "SELECT description, attrs FROM {table} WHERE part = {} AND study_uid = {}",
        schema::param(d, 1),
        schema::param(d, 2)
    );
    if series.is_some() {
        sql.push_str(&format!(" AND series_uid = {}", schema::param(d, 3)));
    }
    let r = rows(
        index,
        super::Statement {
            sql,
            params: std::mem::take(&mut params),
        },
    )
    .await;
    let r = r
        .first()
        .unwrap_or_else(|| panic!("no {table} row of {study}"));
    (text(r, 0), text(r, 1))
}

/// A later instance of a study brings its new values to the study's and series' rows (a
/// description the first lacked, an attribute), one that brings nothing new leaves the rows'
/// values as they are, and a changed value replaces the stored one (the upserts update only
/// when something changes: this is what that must not lose).
pub async fn a_later_instance_merges_into_its_study_and_series(index: &dyn Index, part: &str) {
    let (st, se) = ("3.1", "3.1.1");
    // Reads the study's row (`series` None) or the series' and checks its description, an
    // attribute it must have, and what the first instance gave it that every later one must
    // keep (the study's Patient ID, the series' Modality).
    let check = |what: &'static str,
                 series: Option<&'static str>,
                 description: &'static str,
                 attr: Option<&'static str>| async move {
        let (row, kept) = match series {
            Some(_) => ("series", ("00080060", "CT")),
            None => ("study", ("00100020", "P1")),
        };
        let got = described(index, part, st, series).await;
        assert_eq!(got.0, description, "{what}, {row}: description");
        let attrs: serde_json::Value = serde_json::from_str(&got.1)
            .unwrap_or_else(|e| panic!("{what}, {row}: attrs {:?}: {e}", got.1));
        if let Some(tag) = attr {
            assert!(
                attrs.get(tag).is_some(),
                "{what}, {row}: attrs lack {tag}: {attrs}"
            );
        }
        assert_eq!(
            attrs[kept.0]["Value"][0], kept.1,
            "{what}, {row}: the first instance's {} is kept: {attrs}",
            kept.0
        );
    };
    let described_ct = |study: &str, series: &str| {
        serde_json::json!({
            "00081030": {"vr": "LO", "Value": [study]},
            "0008103E": {"vr": "LO", "Value": [series]},
            "00080090": {"vr": "PN", "Value": [{"Alphabetic": "Ref^Doctor"}]},
        })
    };
    commit(index, part, &instance(st, se, "3.1.1.1", "CT", "m1")).await;
    check("first instance", None, "", None).await;
    let second = with_attributes(
        instance(st, se, "3.1.1.2", "CT", "m2"),
        described_ct("Head", "Axial"),
    );
    commit(index, part, &second).await;
    let with = "an instance with descriptions";
    check(with, None, "Head", Some("00081030")).await;
    check(with, Some(se), "Axial", Some("0008103E")).await;
    let before = described(index, part, st, None).await;
    commit(index, part, &instance(st, se, "3.1.1.3", "CT", "m3")).await;
    let nothing = "an instance bringing nothing new";
    check(nothing, None, "Head", Some("00081030")).await;
    check(nothing, Some(se), "Axial", Some("0008103E")).await;
    let after = described(index, part, st, None).await;
    let parsed = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("attrs");
    assert_eq!(
        parsed(&after.1),
        parsed(&before.1),
        "an instance bringing nothing new leaves the study's attributes as they were"
    );
    let fourth = with_attributes(
        instance(st, se, "3.1.1.4", "CT", "m4"),
        described_ct("Head and neck", "Coronal"),
    );
    commit(index, part, &fourth).await;
    let changed = "a changed description";
    check(changed, None, "Head and neck", Some("00080090")).await;
    check(changed, Some(se), "Coronal", None).await;
    assert_eq!(
        study_counts(index, part, st).await,
        Some((1, 4, "\\CT\\".into())),
        "counts after four instances"
    );
}

/// Each instance moves its study's and series' counts by one, Modalities in Study follows
/// its series, the version names the last write, and the instances are listed in order.
pub async fn counts_follow_each_instance(index: &dyn Index, part: &str) {
    let d = index.dialect();
    commit(
        index,
        part,
        &instance("1.1", "1.1.1", "1.1.1.1", "MR", "a1"),
    )
    .await;
    commit(
        index,
        part,
        &instance("1.1", "1.1.1", "1.1.1.2", "MR", "a2"),
    )
    .await;
    commit(
        index,
        part,
        &instance("1.1", "1.1.2", "1.1.2.1", "CT", "a3"),
    )
    .await;
    assert_eq!(
        study_counts(index, part, "1.1").await,
        Some((2, 3, "\\CT\\MR\\".into())),
        "study counts"
    );
    let v = rows(
        index,
        schema::version_of(d, part, &uid("1.1"), Some(&uid("1.1.1"))),
    )
    .await;
    assert_eq!(
        text(&v[0], 0),
        "a2",
        "the series' version is its last write"
    );
    assert_eq!(int(&v[0], 2), 2, "the series holds two");
    let listed = rows(
        index,
        schema::list_instances(d, part, &uid("1.1"), None, None),
    )
    .await;
    let sops: Vec<String> = listed.iter().map(|r| text(r, 2)).collect();
    assert_eq!(
        sops,
        ["1.1.1.1", "1.1.1.2", "1.1.2.1"],
        "series by UID, then instances"
    );
    let meta = rows(index, schema::metadata_rows(d, part, &uid("1.1"), None)).await;
    assert_eq!(meta.len(), 3);
    assert!(
        meta.iter().all(|r| text(r, 0) == "a3"),
        "one snapshot, one version"
    );
    assert!(
        text(&meta[0], 7).contains("1.1.1.1"),
        "the metadata is the instance's"
    );
}

/// A new version of an instance leaves the counts, names the old one retired, and becomes what
/// is listed; a retired version forgotten is gone.
pub async fn a_replacement_retires_the_version_it_replaces(index: &dyn Index, part: &str) {
    let d = index.dialect();
    commit(
        index,
        part,
        &instance("2.1", "2.1.1", "2.1.1.1", "US", "b1"),
    )
    .await;
    commit(
        index,
        part,
        &instance("2.1", "2.1.1", "2.1.1.1", "US", "b2"),
    )
    .await;
    assert_eq!(
        study_counts(index, part, "2.1").await,
        Some((1, 1, "\\US\\".into()))
    );
    let listed = rows(
        index,
        schema::list_instances(d, part, &uid("2.1"), Some(&uid("2.1.1")), None),
    )
    .await;
    assert_eq!(text(&listed[0], 3), "b2");
    let due = rows(index, schema::retired_due(d, part, u64::MAX / 4, 10)).await;
    assert_eq!(due.len(), 1);
    assert_eq!(text(&due[0], 3), "b1");
    // The same version committed again retires nothing.
    commit(
        index,
        part,
        &instance("2.1", "2.1.1", "2.1.1.1", "US", "b2"),
    )
    .await;
    assert_eq!(
        rows(index, schema::retired_due(d, part, u64::MAX / 4, 10))
            .await
            .len(),
        1
    );
    index
        .execute(vec![schema::forget_retired(d, part, &uid("2.1.1.1"), "b1")])
        .await
        .expect("forget");
    assert!(rows(index, schema::retired_due(d, part, u64::MAX / 4, 10))
        .await
        .is_empty());
}

/// An instance of a SOP Instance UID stored in one study, committed in another series or
/// study, changes nothing: no rows for it, the first left as it was.
pub async fn one_sop_instance_uid_names_one_instance(index: &dyn Index, part: &str) {
    let d = index.dialect();
    commit(index, part, &instance("3.1", "3.1.1", "3.9", "CR", "c1")).await;
    // Elsewhere: the statements' guards leave everything as it was (or the key refuses).
    let rows_b = instance_rows(part, &instance("3.2", "3.2.1", "3.9", "CR", "c2"));
    let _ = index
        .execute(schema::commit_instance(d, part, &rows_b, 1_700_000_001))
        .await;
    assert_eq!(
        study_counts(index, part, "3.2").await,
        None,
        "no study made"
    );
    let located = rows(index, schema::locate_instance(d, part, &uid("3.9"))).await;
    assert_eq!(located.len(), 1);
    assert_eq!(
        (text(&located[0], 0), text(&located[0], 2)),
        ("3.1".into(), "c1".into())
    );
    let rows_c = instance_rows(part, &instance("3.1", "3.1.2", "3.9", "CR", "c3"));
    let _ = index
        .execute(schema::commit_instance(d, part, &rows_c, 1_700_000_002))
        .await;
    assert_eq!(
        study_counts(index, part, "3.1").await,
        Some((1, 1, "\\CR\\".into())),
        "no series made in the study either"
    );
}

/// Handles propose different layout records at once: one wins, and every handle reads it.
pub async fn the_first_layout_record_wins(all: &[&dyn Index], part: &str) {
    let proposals = all.iter().enumerate().map(|(n, i)| async move {
        i.execute(vec![schema::layout_put(
            i.dialect(),
            part,
            &format!("record {n}"),
        )])
        .await
        .expect("layout put");
    });
    futures::future::join_all(proposals).await;
    let mut seen = Vec::new();
    for i in all {
        let r = rows(*i, schema::layout_get(i.dialect(), part)).await;
        seen.push(text(&r[0], 0));
    }
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
}

/// Writers on every handle at once: 24 instances into one study (three series), and one
/// instance written twice at once in two versions. The counts are exact, one version of the
/// contested instance is current and the other retired.
pub async fn concurrent_writers_leave_exact_counts(all: &[&dyn Index], part: &str) {
    let d = all[0].dialect();
    let writes = (0..24).map(|k| {
        let index = all[k % all.len()];
        async move {
            let i = instance(
                "5.1",
                &format!("5.1.{}", k % 3),
                &format!("5.1.{}.{k}", k % 3),
                ["CT", "MR", "SR"][k % 3],
                &format!("e{k}"),
            );
            commit(index, part, &i).await;
        }
    });
    let contested = (0..2).map(|k| {
        let index = all[k % all.len()];
        async move {
            commit(
                index,
                part,
                &instance("5.1", "5.1.0", "5.1.99", "CT", &format!("x{k}")),
            )
            .await;
        }
    });
    futures::future::join(
        futures::future::join_all(writes),
        futures::future::join_all(contested),
    )
    .await;
    assert_eq!(
        study_counts(all[0], part, "5.1").await,
        Some((3, 25, "\\CT\\MR\\SR\\".into()))
    );
    for (se, n) in [("5.1.0", 9), ("5.1.1", 8), ("5.1.2", 8)] {
        let v = rows(
            all[0],
            schema::version_of(d, part, &uid("5.1"), Some(&uid(se))),
        )
        .await;
        assert_eq!(int(&v[0], 2), n, "series {se}");
    }
    let located = rows(all[0], schema::locate_instance(d, part, &uid("5.1.99"))).await;
    let current = text(&located[0], 2);
    let due = rows(all[0], schema::retired_due(d, part, u64::MAX / 4, 100)).await;
    let retired: Vec<String> = due.iter().map(|r| text(r, 3)).collect();
    assert!(
        (current == "x0" && retired == ["x1"]) || (current == "x1" && retired == ["x0"]),
        "current {current}, retired {retired:?}"
    );
}

/// An instance, a series, then a study deleted: each time the study's and series' counts and
/// Modalities in Study follow what is left, an emptied series or study is gone, every deleted
/// version is retired (for the sweep to delete its objects), another study is untouched, and
/// the feed says each deletion once, in order after the creations.
pub async fn deletes_recount_and_leave_nothing_behind(index: &dyn Index, part: &str) {
    let d = index.dialect();
    for (k, m) in ["CT", "MR", "SR"].iter().enumerate() {
        for j in 0..2 {
            let sop = format!("6.1.{k}.{j}");
            commit(
                index,
                part,
                &instance("6.1", &format!("6.1.{k}"), &sop, m, &format!("g{k}{j}")),
            )
            .await;
        }
    }
    commit(index, part, &instance("6.2", "6.2.0", "6.2.0.0", "CT", "h")).await;
    assert_eq!(
        study_counts(index, part, "6.1").await,
        Some((3, 6, "\\CT\\MR\\SR\\".into()))
    );

    delete(index, part, "6.1", Some("6.1.0"), Some("6.1.0.1")).await;
    assert_eq!(
        study_counts(index, part, "6.1").await,
        Some((3, 5, "\\CT\\MR\\SR\\".into())),
        "after one CT instance"
    );
    let v = rows(
        index,
        schema::version_of(d, part, &uid("6.1"), Some(&uid("6.1.0"))),
    )
    .await;
    assert_eq!(int(&v[0], 2), 1, "the CT series has one instance left");
    assert!(
        rows(index, schema::locate_instance(d, part, &uid("6.1.0.1")))
            .await
            .is_empty()
    );

    delete(index, part, "6.1", Some("6.1.1"), None).await;
    assert_eq!(
        study_counts(index, part, "6.1").await,
        Some((2, 3, "\\CT\\SR\\".into())),
        "after the MR series"
    );
    assert!(
        rows(
            index,
            schema::version_of(d, part, &uid("6.1"), Some(&uid("6.1.1")))
        )
        .await
        .is_empty(),
        "the emptied series is gone"
    );

    delete(index, part, "6.1", None, None).await;
    assert_eq!(
        study_counts(index, part, "6.1").await,
        None,
        "the study is gone"
    );
    for sop in ["6.1.0.0", "6.1.1.0", "6.1.2.1"] {
        assert!(
            rows(index, schema::locate_instance(d, part, &uid(sop)))
                .await
                .is_empty(),
            "{sop}"
        );
    }
    assert_eq!(
        study_counts(index, part, "6.2").await,
        Some((1, 1, "\\CT\\".into()))
    );
    let due = rows(index, schema::retired_due(d, part, u64::MAX / 4, 100)).await;
    let mut retired: Vec<String> = due.iter().map(|r| text(r, 3)).collect();
    retired.sort();
    assert_eq!(retired, ["g00", "g01", "g10", "g11", "g20", "g21"]);

    let f = feed(index, part).await;
    let seqs: Vec<i64> = f.iter().map(|c| c.0).collect();
    assert_eq!(
        seqs,
        (1..=13).collect::<Vec<_>>(),
        "numbered from 1 without gaps"
    );
    let deleted: Vec<(&str, &str)> = f[7..]
        .iter()
        .map(|c| (c.1.as_str(), c.2.as_str()))
        .collect();
    assert_eq!(
        deleted,
        [
            ("delete", "6.1.0.1"),
            ("delete", "6.1.1.0"),
            ("delete", "6.1.1.1"),
            ("delete", "6.1.0.0"),
            ("delete", "6.1.2.0"),
            ("delete", "6.1.2.1"),
        ]
    );
    assert!(f[..7].iter().all(|c| c.1 == "create"), "{f:?}");
}

/// Writers on every handle at once store 24 new instances, replace two and delete four of
/// eight stored before: the feed has one row per change, numbered 1..=38 without a gap or a
/// repeat, and each instance's rows are in the order its changes happened.
pub async fn the_change_feed_has_no_gaps_under_concurrent_writers(all: &[&dyn Index], part: &str) {
    for k in 0..8 {
        commit(
            all[0],
            part,
            &instance("7.1", "7.1.0", &format!("7.1.0.{k}"), "CT", "a"),
        )
        .await;
    }
    let creates = (0..24).map(|k| {
        let index = all[k % all.len()];
        async move {
            let sop = format!("7.{}.1.{k}", 2 + k % 3);
            let study = format!("7.{}", 2 + k % 3);
            commit(
                index,
                part,
                &instance(&study, &format!("{study}.1"), &sop, "MR", "b"),
            )
            .await;
        }
    });
    let replaces = (0..2).map(|k| {
        let index = all[(k + 1) % all.len()];
        async move {
            commit(
                index,
                part,
                &instance("7.1", "7.1.0", &format!("7.1.0.{k}"), "CT", "c"),
            )
            .await;
        }
    });
    let deletes = (4..8).map(|k| {
        let index = all[k % all.len()];
        async move {
            delete(
                index,
                part,
                "7.1",
                Some("7.1.0"),
                Some(&format!("7.1.0.{k}")),
            )
            .await;
        }
    });
    futures::future::join3(
        futures::future::join_all(creates),
        futures::future::join_all(replaces),
        futures::future::join_all(deletes),
    )
    .await;
    let f = feed(all[0], part).await;
    let seqs: Vec<i64> = f.iter().map(|c| c.0).collect();
    assert_eq!(
        seqs,
        (1..=38).collect::<Vec<_>>(),
        "no gap, no repeat: {f:?}"
    );
    let of = |sop: &str| -> Vec<&str> {
        f.iter()
            .filter(|c| c.2 == sop)
            .map(|c| c.1.as_str())
            .collect()
    };
    for k in 0..8 {
        let want: &[&str] = match k {
            0 | 1 => &["create", "replace"],
            4..=7 => &["create", "delete"],
            _ => &["create"],
        };
        assert_eq!(of(&format!("7.1.0.{k}")), want, "7.1.0.{k}");
    }
    for k in 0..24 {
        assert_eq!(
            of(&format!("7.{}.1.{k}", 2 + k % 3)),
            ["create"],
            "new instance {k}"
        );
    }
    // Every handle reads the same feed.
    for h in all {
        assert_eq!(feed(*h, part).await, f);
    }
}

/// A receiver answering what it is told, keeping the sequence numbers it acknowledged.
#[derive(Debug, Default)]
struct Receiver {
    answer: std::sync::Mutex<u16>,
    acked: std::sync::Mutex<Vec<i64>>,
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl super::feed::Poster for Receiver {
    async fn post(
        &self,
        _url: &str,
        _headers: &[(&str, String)],
        body: bytes::Bytes,
    ) -> Result<u16, String> {
        let status = *self.answer.lock().unwrap_or_else(|p| p.into_inner());
        if status == 200 {
            let rows: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("json");
            self.acked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(rows.iter().filter_map(|r| r["Sequence"].as_i64()));
        }
        Ok(status)
    }
}

/// Two processes pushing one partition's feed to one URL (on the first and the last handle):
/// one delivers while its lease lasts, the other stands by; a refused batch is sent again;
/// when the lease ends without renewal the other takes over where delivery got to.
pub async fn a_webhook_has_one_deliverer_and_keeps_its_progress(all: &[&dyn Index], part: &str) {
    use super::feed::{Step, Webhook};
    let (x, y) = (all[0], all[all.len() - 1]);
    let url = format!("http://receiver.test/{part}");
    let a = Webhook::new(&url, b"secret-secret-secret", part, "holder-a", 30, 2);
    let b = Webhook::new(&url, b"secret-secret-secret", part, "holder-b", 30, 2);
    let rx = Receiver::default();
    *rx.answer.lock().expect("lock") = 200;
    let t = 2_000_000_000;
    assert_eq!(a.step(x, &rx, t).await.expect("step"), Step::Idle);
    for k in 0..3 {
        commit(
            x,
            part,
            &instance("8.1", "8.1.1", &format!("8.1.1.{k}"), "CT", "a"),
        )
        .await;
    }
    assert_eq!(
        a.step(x, &rx, t + 1).await.expect("step"),
        Step::Delivered { first: 1, last: 2 }
    );
    assert_eq!(b.step(y, &rx, t + 2).await.expect("step"), Step::Standby);
    *rx.answer.lock().expect("lock") = 500;
    assert!(matches!(
        a.step(x, &rx, t + 3).await.expect("step"),
        Step::Failed(_)
    ));
    *rx.answer.lock().expect("lock") = 200;
    assert_eq!(
        a.step(x, &rx, t + 4).await.expect("step"),
        Step::Delivered { first: 3, last: 3 }
    );
    assert_eq!(a.step(x, &rx, t + 5).await.expect("step"), Step::Idle);
    commit(y, part, &instance("8.1", "8.1.1", "8.1.1.9", "CT", "a")).await;
    // a stops (its lease, renewed at t + 5, ends at t + 35): b takes over after that only.
    assert_eq!(b.step(y, &rx, t + 35).await.expect("step"), Step::Standby);
    assert_eq!(
        b.step(y, &rx, t + 36).await.expect("step"),
        Step::Delivered { first: 4, last: 4 }
    );
    assert_eq!(a.step(x, &rx, t + 37).await.expect("step"), Step::Standby);
    assert_eq!(*rx.acked.lock().expect("lock"), vec![1, 2, 3, 4]);
}
