//! One index, three engines: the same searches answered by `wado serve` on SQLite (the
//! default), by `wado serve --index postgres://...` on a real PostgreSQL (Debian's, started
//! here), and by the worker on D1 (`wrangler dev`'s local D1) give the same results, byte for
//! byte once the server's own address is taken out. What the answers must be is checked
//! against DCMTK's reading of the files in `e2e.rs` and against the files in the core's
//! tests; this suite checks that every engine means the same by the same SQL (wildcards,
//! case, order, ranges, paging, counts).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use wado_tests::*;

/// The searches: every resource, every kind of matching, includefield, paging, errors.
fn queries() -> Vec<String> {
    let f = corpus_files();
    let (st, se, sop) = uids(&f[0]);
    let (st2, _, _) = uids(&f[f.len() / 2]);
    [
        "/studies".to_owned(),
        "/studies?limit=5".into(),
        "/studies?limit=5&offset=5".into(),
        "/studies?offset=100".into(),
        format!("/studies?StudyInstanceUID={st}"),
        format!("/studies?StudyInstanceUID={st},{st2}"),
        "/studies?PatientName=*doe*".into(),
        "/studies?PatientName=DOE*&includefield=00081030,00080060,00080090,00100030".into(),
        "/studies?PatientName=d?e*".into(),
        "/studies?PatientName=compressed%20samples*".into(),
        "/studies?PatientName=samples&fuzzymatching=true".into(),
        "/studies?PatientName=%CE%94*".into(),
        "/studies?PatientID=77654033".into(),
        "/studies?00100020=ID1".into(),
        "/studies?StudyDate=19940101-20041231".into(),
        "/studies?StudyDate=20040826".into(),
        "/studies?StudyDate=-20000101".into(),
        "/studies?StudyDate=20100101-".into(),
        "/studies?StudyTime=12-13".into(),
        "/studies?ModalitiesInStudy=MR".into(),
        "/studies?ModalitiesInStudy=CT%5CSEG".into(),
        "/studies?ModalitiesInStudy=ct".into(),
        "/studies?AccessionNumber=*".into(),
        "/studies?includefield=all&limit=3".into(),
        "/studies?StudyDescription=*CT*".into(),
        "/studies?Modality=CT".into(),
        "/series".into(),
        "/series?Modality=MR".into(),
        "/series?PatientID=77654033&includefield=0008103E".into(),
        "/series?SeriesNumber=2".into(),
        format!("/studies/{st}/series"),
        format!("/studies/{st}/series?includefield=0008103E,00080021"),
        format!("/studies/{st}/instances"),
        format!("/studies/{st}/series/{se}/instances"),
        "/instances?limit=20".into(),
        format!("/instances?SOPInstanceUID={sop}"),
        "/instances?SOPClassUID=1.2.840.10008.5.1.4.1.1.4".into(),
        "/instances?Rows=64&includefield=00280030".into(),
        "/instances?InstanceNumber=1&limit=10&offset=2".into(),
        // More UIDs than D1 binds parameters in a statement.
        format!(
            "/studies?StudyInstanceUID={}",
            (0..150)
                .map(|n| format!("1.2.3.{n}"))
                .chain([st.clone(), st2.clone()])
                .collect::<Vec<_>>()
                .join(",")
        ),
        "/studies?StudyDate=2001".into(),
        "/studies?StudyInstanceUID=1..2".into(),
        "/studies?limit=x".into(),
        "/studies?Nonsense=1".into(),
    ]
    .into_iter()
    .collect()
}

fn imported(dir: &Path, extra: &[&str]) -> PathBuf {
    let data = dir.join("data");
    let paths = corpus_files();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let out = import_args(&data, extra, &refs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    data
}

/// Status, the Warning header's presence, and the body with the server's address replaced.
fn answer(server: &Server, q: &str) -> (u16, bool, String) {
    let r = get(&format!("{}{q}", server.root()), None);
    let body = String::from_utf8_lossy(&r.body).replace(&server.base, "BASE");
    let body = if r.status == 200 { body } else { String::new() };
    (r.status, !r.header("warning").is_empty(), body)
}

#[test]
fn sqlite_postgresql_and_d1_answer_every_search_alike() {
    let dir = tempdir();
    let sqlite_data = imported(&dir.path().join("sqlite"), &[]);
    let pg = PgServer::start();
    let pg_data = imported(&dir.path().join("pg"), &["--index", &pg.url]);
    let sqlite = Server::start_native(&sqlite_data, &[]);
    let postgres = Server::start_native(&pg_data, &["--index", &pg.url]);
    let worker = Server::start_worker(Some(&sqlite_data), &[]);
    let mut found_any = 0;
    for q in queries() {
        let want = answer(&sqlite, &q);
        if want.0 == 200 && want.2 != "[]" {
            found_any += 1;
        }
        for (name, server) in [("PostgreSQL", &postgres), ("D1", &worker)] {
            let got = answer(server, &q);
            assert_eq!(got.0, want.0, "{name}: status of {q}");
            assert_eq!(got.1, want.1, "{name}: Warning of {q}");
            assert_eq!(got.2, want.2, "{name}: body of {q}");
        }
    }
    // The comparison means something: most searches found something.
    assert!(found_any >= 30, "only {found_any} searches found anything");
}

#[test]
fn a_reindex_into_postgresql_gives_the_import_s_index() {
    let dir = tempdir();
    let pg = PgServer::start();
    let data = imported(&dir.path().join("a"), &["--index", &pg.url]);
    let before = Server::start_native(&data, &["--index", &pg.url]);
    let qs = queries();
    let want: Vec<_> = qs.iter().map(|q| answer(&before, q)).collect();
    drop(before);
    let out = std::process::Command::new(wado_bin())
        .args(["reindex", "--data"])
        .arg(&data)
        .args(["--index", &pg.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = Server::start_native(&data, &["--index", &pg.url]);
    for (q, w) in qs.iter().zip(&want) {
        assert_eq!(&answer(&after, q), w, "{q}");
    }
}

/// The catalog conformance suite (`wado_core::search::conformance`) on a real PostgreSQL with
/// three connections writing at once (as three replicas would), and on SQLite files opened by
/// three handles off the async threads.
#[test]
fn postgresql_and_sqlite_pass_the_catalog_conformance_suite() {
    use wado_core::search::{conformance, Index};
    let pg = PgServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..3 {
            handles.push(
                wado_native::postgres::PgIndex::connect(
                    &pg.url,
                    std::time::Duration::from_secs(10),
                )
                .await
                .unwrap(),
            );
        }
        let all: Vec<&dyn Index> = handles.iter().map(|h| h as &dyn Index).collect();
        conformance::run_all(all[0], &all, "PG").await;
    });
    let dir = tempdir();
    let spec = wado_native::index::IndexSpec::Sqlite(dir.path().join("index.sqlite"));
    rt.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..3 {
            handles.push(
                spec.connect(true, wado_native::index::QueryLimits::default())
                    .await
                    .unwrap(),
            );
        }
        let all: Vec<&dyn Index> = handles.iter().map(|h| &**h).collect();
        conformance::run_all(all[0], &all, "SQ").await;
    });
}

/// The same suite on D1, in the worker under `wrangler dev` (`/__wado/index-conformance`).
#[test]
fn d1_passes_the_catalog_conformance_suite() {
    let worker = Server::start_worker(None, &[("INDEX_SELFTEST", "1")]);
    let r = get(&format!("{}/__wado/index-conformance", worker.base), None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}
