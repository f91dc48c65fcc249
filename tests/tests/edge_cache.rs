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

/// The SOP Instance UIDs and Patient's Names of a metadata answer.
fn sops_and_names(r: &Resp) -> Vec<(String, String)> {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let mut out: Vec<(String, String)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["00080018"]["Value"][0].as_str().unwrap_or("").to_owned(),
                i["00100010"]["Value"][0]["Alphabetic"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The cache follows its origin (a native `wado serve` that takes writes): an instance deleted,
/// the study corrected and an instance stored there are seen by the worker's next answers
/// (`ORIGIN_FEED_SECONDS = 0`: the feed is read before every read), the corrected files the
/// origin's byte for byte (DCMTK reads the new name); and a worker that reads the feed only
/// hourly is brought up to date by its cron trigger.
#[test]
fn the_worker_follows_its_origins_change_feed() {
    let files = [
        corpus().join("study77654033_CT2_17106.dcm"),
        corpus().join("study77654033_CT2_17136.dcm"),
        corpus().join("study77654033_CT2_17166.dcm"),
    ];
    let later = corpus().join("study77654033_CT2_17196.dcm");
    let dir = tempdir();
    let data = dir.path().join("data");
    let refs: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
    assert!(import(&data, &refs).status.success());
    let origin = Server::start_native(&data, &["--allow-anonymous-writes"]);
    let vars = |seconds: &'static str| {
        [
            ("ORIGIN_URL", origin.root()),
            ("PUBLIC", "true".to_owned()),
            ("ORIGIN_FEED_SECONDS", seconds.to_owned()),
        ]
    };
    let eager = vars("0");
    let eager: Vec<(&str, &str)> = eager.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let worker = Server::start_worker(None, &eager);
    let hourly = vars("3600");
    let hourly: Vec<(&str, &str)> = hourly.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let lazy = Server::start_worker(None, &hourly);

    let (st, se, _) = uids(&files[0]);
    let meta = |s: &Server| get(&format!("{}/studies/{st}/metadata", s.root()), None);
    let sops = |s: &Server| -> Vec<String> {
        sops_and_names(&meta(s))
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    };
    let mut all: Vec<String> = files.iter().map(|f| uids(f).2).collect();
    all.sort();
    assert_eq!(sops(&worker), all);
    assert_eq!(sops(&lazy), all);

    // Deleted at the origin.
    let gone = uids(&files[1]).2;
    let r = request(
        "DELETE",
        &format!(
            "{}/studies/{st}/series/{se}/instances/{gone}",
            origin.root()
        ),
        &[],
    );
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    all.retain(|s| *s != gone);
    assert_eq!(sops(&worker), all, "the eager cache dropped it");
    let r = get(
        &format!(
            "{}/studies/{st}/series/{se}/instances/{gone}",
            worker.root()
        ),
        Some("application/dicom; transfer-syntax=*"),
    );
    assert_eq!(r.status, 404);
    // The hourly one still answers what it filled (within its interval)...
    assert_eq!(sops(&lazy).len(), all.len() + 1, "read hourly: not yet");
    // ...until its cron trigger runs.
    let r = get(&format!("{}/__scheduled?cron=*+*+*+*+*", lazy.base), None);
    assert!(
        r.status < 300,
        "{} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(sops(&lazy), all, "the cron trigger dropped it");

    // Corrected at the origin.
    let r = request_with_body(
        "PATCH",
        &format!("{}/studies/{st}", origin.root()),
        &[("Content-Type", "application/dicom+json")],
        br#"{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Followed^By^Cache"}]}}"#,
    );
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    for (_, name) in sops_and_names(&meta(&worker)) {
        assert_eq!(name, "Followed^By^Cache");
    }
    let kept = uids(&files[0]).2;
    let file = |s: &Server| {
        let r = get(
            &format!("{}/studies/{st}/series/{se}/instances/{kept}", s.root()),
            Some("application/dicom; transfer-syntax=*"),
        );
        assert_eq!(r.status, 200);
        if r.header("content-type").starts_with("multipart/") {
            r.parts().remove(0).1
        } else {
            r.body
        }
    };
    let mine = file(&worker);
    assert_eq!(mine, file(&origin), "the origin's corrected file");
    let path = write_temp(dir.path(), "from-cache.dcm", &mine);
    assert_eq!(dcmdump_value(&path, "0010,0010"), "Followed^By^Cache");

    // Stored at the origin: the study is asked for again and the new instance comes.
    let out = std::process::Command::new(wado_bin())
        .arg("store")
        .arg(origin.root())
        .arg(&later)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    all.push(uids(&later).2);
    all.sort();
    assert_eq!(sops(&worker), all);

    // The worker's own feed says what it dropped.
    let r = get(&format!("{}/changefeed?limit=1000", worker.root()), None);
    let feed: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
    assert!(
        feed.iter()
            .any(|c| c["Action"] == "delete" && c["SOPInstanceUID"] == gone.as_str()),
        "{feed:?}"
    );
}
