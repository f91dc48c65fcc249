//! The edge worker as a read-through cache in front of an archive (issue: edge cache): an
//! empty R2 bucket, `ORIGIN_URL` pointing at a native `wado serve`, and the worker fetching
//! what is missing, storing it in the layout, and never asking the origin again.
#![allow(clippy::unwrap_used)]

use wado_tests::*;

/// `files` imported into an origin (`wado serve`), and a worker with an empty bucket in front
/// of it. Without access control the cache must be declared public (issue 12; the rule is
/// `Config::check` in the core, tested there): otherwise the worker refuses to start.
fn origin_and_cache(files: &[std::path::PathBuf]) -> (tempfile::TempDir, Server, Server) {
    let dir = tempdir();
    let data = dir.path().join("data");
    let refs: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
    assert!(import(&data, &refs).status.success());
    let origin = Server::start_native(&data, &[]);
    let worker = Server::start_worker(
        None,
        &[("ORIGIN_URL", origin.root().as_str()), ("PUBLIC", "true")],
    );
    (dir, origin, worker)
}

#[test]
fn the_worker_fills_its_bucket_from_the_origin_once() {
    let files = [
        corpus().join("emr_10frame_ele.dcm"),
        corpus().join("study77654033_CT2_17106.dcm"),
        corpus().join("study77654033_CT2_17136.dcm"),
    ];
    let (_dir, origin, worker) = origin_and_cache(&files);
    let (st, se, sop) = uids(&files[1]);
    let series = |s: &Server| format!("{}/studies/{st}/series/{se}", s.root());
    // Series metadata: fetched, stored, answered as the origin answers (URIs aside).
    let meta = |s: &Server| {
        let r = get(&format!("{}/metadata", series(s)), None);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        String::from_utf8(r.body).unwrap().replace(&s.base, "BASE")
    };
    assert_eq!(meta(&worker), meta(&origin));
    let stored = |s: &Server| {
        get(
            &format!("{}/instances/{sop}", series(s)),
            Some("application/dicom; transfer-syntax=*"),
        )
    };
    let r = stored(&worker);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        std::fs::read(&files[1]).unwrap(),
        "the file as stored"
    );
    // The origin goes away: what was fetched is still served, from R2.
    drop(origin);
    assert_eq!(stored(&worker).body, std::fs::read(&files[1]).unwrap());
    let frame = get(
        &format!("{}/instances/{sop}/frames/1", series(&worker)),
        None,
    );
    assert_eq!(frame.status, 200);
    // What was never fetched cannot be: 502 with a reason, not a hang or a 500.
    let (st2, se2, _) = uids(&files[0]);
    let r = get(
        &format!("{}/studies/{st2}/series/{se2}/metadata", worker.root()),
        None,
    );
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("origin"));
}

/// Searching through the cache: a search across the archive is the origin's answer (Retrieve
/// URLs on the worker's root); a search within a study brings the study in and is answered
/// from the worker's own index (D1), the same as the origin's.
#[test]
fn the_worker_forwards_archive_searches_and_answers_study_searches_itself() {
    let files = [
        corpus().join("study77654033_CT2_17106.dcm"),
        corpus().join("study77654033_CT2_17136.dcm"),
        corpus().join("study77654033_CR1_6154.dcm"),
        corpus().join("ct_small_ele.dcm"),
    ];
    let (_dir, origin, worker) = origin_and_cache(&files);
    let ask = |s: &Server, q: &str| {
        let r = get(&format!("{}{q}", s.root()), None);
        assert_eq!(r.status, 200, "{q}: {}", String::from_utf8_lossy(&r.body));
        String::from_utf8(r.body).unwrap().replace(&s.base, "BASE")
    };
    // Across the archive: the empty cache answers what the origin holds.
    for q in [
        "/studies",
        "/studies?PatientID=77654033",
        "/series?Modality=CT",
    ] {
        assert_eq!(ask(&worker, q), ask(&origin, q), "{q}");
    }
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&ask(&worker, "/studies?PatientName=doe*")).unwrap();
    assert_eq!(listed.len(), 2);
    // Within a study: fetched, then answered from the cache's index, as the origin does.
    let (st, se, _) = uids(&files[0]);
    for q in [
        format!("/studies/{st}/series"),
        format!("/studies/{st}/instances?includefield=all"),
        format!("/studies/{st}/series/{se}/instances"),
    ] {
        assert_eq!(ask(&worker, &q), ask(&origin, &q), "{q}");
    }
    // The study is in the cache now: with the origin gone, its searches still answer.
    let before = ask(&worker, &format!("/studies/{st}/series"));
    drop(origin);
    assert_eq!(ask(&worker, &format!("/studies/{st}/series")), before);
    // Matching refused by the origin is refused here too (400, not 502).
    let r = get(&format!("{}/studies?StudyDate=2001x", worker.root()), None);
    assert_eq!(r.status, 400);
}
