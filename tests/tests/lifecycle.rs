//! An archive's lifecycle (issue 24): deleting studies, series and instances, as users do it.
//! Python's dicomweb-client (unmodified) stores the corpus one instance per request, deletes an
//! instance, a series and a study, and after each checks search, metadata, retrieval and the
//! change feed against pydicom reading the files (`tests/oracles/dicomweb_client_lifecycle.py`),
//! corrects a study's patient and study attributes (every instance retrieved as pydicom reads
//! the file but for the new values), natively (again after a restart, and the store after
//! `wado purge`) and at the edge. Then a
//! delete racing stores and reads of its own study, and `wado delete` on the command line.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use wado_tests::*;

const WRITER: &str = "writerwriterwriter2";
const TOKENS: &str = "readerreaderreader1 *\nwriterwriterwriter2 DCM4CHEE write,delete\n";

/// Runs the dicomweb-client script in `mode` against `server`.
fn client(server: &Server, mode: &str, state: Option<&Path>) {
    let python = repo_dir().join(".tools/s3venv/bin/python");
    assert!(python.is_file(), "run bash scripts/setup.sh");
    let mut cmd = Command::new(python);
    cmd.arg(repo_dir().join("tests/oracles/dicomweb_client_lifecycle.py"))
        .arg(server.root())
        .arg(corpus())
        .arg(WRITER)
        .arg(mode);
    if let Some(s) = state {
        cmd.arg(s);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "dicomweb-client {mode}: the server differs from the files:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The SOP Instance UIDs with an object (of any generation) in a directory store.
fn objects_in(data: &Path) -> BTreeSet<String> {
    walk(&data.join("studies"))
        .iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let stem = name.strip_suffix(".dcm")?;
            Some(stem.split_once('-').map_or(stem, |(sop, _)| sop).to_owned())
        })
        .collect()
}

fn deleted_in(state: &Path) -> BTreeSet<String> {
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    s["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn dicomweb_client_deletes_natively_and_the_store_follows() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let tokens = write_temp(dir.path(), "tokens", TOKENS.as_bytes());
    let state = dir.path().join("state.json");
    let serve = || Server::start_native(&data, &["--tokens-file", tokens.to_str().unwrap()]);
    let server = serve();
    client(&server, "store", None);
    client(&server, "delete", Some(&state));
    client(&server, "correct", Some(&state));
    drop(server);
    // Restarted: the same answers.
    client(&serve(), "check", Some(&state));
    // The deleted instances' objects stay for the grace period (a reader that found them just
    // before reads them whole); `wado purge` deletes them now, and nothing else.
    let deleted = deleted_in(&state);
    let before = objects_in(&data);
    assert!(deleted.is_subset(&before), "kept for the grace period");
    let out = Command::new(wado_bin())
        .args(["purge", "--older-than", "0", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wado purge: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = objects_in(&data);
    assert!(
        after.is_disjoint(&deleted),
        "purged: {:?}",
        after.intersection(&deleted).collect::<Vec<_>>()
    );
    assert_eq!(after, &before - &deleted, "everything else is kept");
    assert_eq!(
        check_consistent(&data),
        after.len(),
        "one whole generation each"
    );
    client(&serve(), "check", Some(&state));
}

#[test]
fn dicomweb_client_deletes_at_the_edge() {
    let dir = tempdir();
    let state = dir.path().join("state.json");
    let worker = Server::start_worker(None, &[("TOKENS", TOKENS)]);
    client(&worker, "store", None);
    client(&worker, "delete", Some(&state));
    client(&worker, "correct", Some(&state));
    client(&worker, "check", Some(&state));
}

/// `n` copies of `ct_small_ele.dcm` in study `study`: the k-th in series `{study}.{s}` with SOP
/// Instance UID `{study}.{s}.{k}`, where s is `series(k)`.
fn cts(dir: &Path, study: &str, n: usize, series: impl Fn(usize) -> usize) -> Vec<PathBuf> {
    (0..n)
        .map(|k| {
            let s = series(k);
            ct(
                dir,
                study,
                &format!("{study}.{s}"),
                &format!("{study}.{s}.{k}"),
            )
        })
        .collect()
}

/// A copy of `ct_small_ele.dcm` in study `study`, series `series`, SOP Instance UID `sop`.
fn ct(dir: &Path, study: &str, series: &str, sop: &str) -> PathBuf {
    use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
    let mut o = dicom_object::OpenFileOptions::new()
        .open_file(corpus().join("ct_small_ele.dcm"))
        .unwrap();
    for (tag, v) in [
        (Tag(0x0020, 0x000D), study),
        (Tag(0x0020, 0x000E), series),
        (Tag(0x0008, 0x0018), sop),
    ] {
        o.put(DataElement::new(tag, VR::UI, PrimitiveValue::from(v)));
    }
    o.meta_mut().media_storage_sop_instance_uid = sop.to_owned();
    o.meta_mut().update_information_group_length();
    let path = dir.join(format!("{sop}.dcm"));
    o.write_to_file(&path).unwrap();
    path
}

fn stow(root: &str, file: &Path) -> u16 {
    let out = Command::new(wado_bin())
        .arg("store")
        .arg(root)
        .arg(file)
        .output()
        .unwrap();
    if out.status.success() {
        200
    } else {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        0
    }
}

/// A study deleted while clients store more instances into it and read it: every answer is
/// whole or a clean 404 (never a 5xx, never a cut-short body), and afterwards search, study
/// metadata and retrieval agree with each other and with the change feed's last word on each
/// instance; stored again, the study is whole.
#[test]
fn a_delete_racing_stores_and_reads_of_its_study_ends_clean() {
    const STUDY: &str = "1.2.826.0.1.3680043.8.498.24";
    let dir = tempdir();
    let data = dir.path().join("data");
    let server = Server::start_native(&data, &["--allow-anonymous-writes"]);
    let root = server.root();
    let first: Vec<PathBuf> = cts(dir.path(), STUDY, 40, |_| 1);
    let out = Command::new(wado_bin())
        .arg("store")
        .arg(&root)
        .args(&first)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let racing: Vec<PathBuf> = cts(dir.path(), STUDY, 16, |_| 2);
    let done = std::sync::atomic::AtomicBool::new(false);
    let stored = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..3)
            .map(|r| {
                let (root, done) = (&root, &done);
                s.spawn(move || {
                    let mut seen = 0;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let (url, accept) = match r {
                            0 => (format!("{root}/studies/{STUDY}/metadata"), None),
                            1 => (format!("{root}/studies?StudyInstanceUID={STUDY}"), None),
                            _ => (
                                format!("{root}/studies/{STUDY}/series/{STUDY}.1/instances/{STUDY}.1.7"),
                                Some("multipart/related; type=\"application/dicom\"; transfer-syntax=*"),
                            ),
                        };
                        let got = get(&url, accept);
                        assert!(
                            [200, 204, 404].contains(&got.status),
                            "{url}: {} {}",
                            got.status,
                            String::from_utf8_lossy(&got.body)
                        );
                        if got.status == 200 && r == 0 {
                            let v: serde_json::Value = serde_json::from_slice(&got.body)
                                .unwrap_or_else(|e| panic!("{url}: whole JSON: {e}"));
                            assert!(v.as_array().is_some_and(|a| !a.is_empty()));
                        }
                        if got.status == 200 && r == 2 {
                            let parts = got.parts();
                            dicom_object::OpenFileOptions::new()
                                .from_reader(&parts[0].1[..])
                                .unwrap_or_else(|e| panic!("{url}: a whole instance: {e}"));
                        }
                        seen += 1;
                    }
                    seen
                })
            })
            .collect();
        let storing = s.spawn(|| {
            for f in &racing {
                assert_eq!(stow(&root, f), 200, "{}", f.display());
                stored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        // Mid-way through the racing stores.
        while stored.load(std::sync::atomic::Ordering::Relaxed) < 6 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let url = format!("{root}/studies/{STUDY}");
        let deleted = request("DELETE", &url, &[]);
        assert_eq!(deleted.status, 204, "{url}");
        storing.join().unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    });
    // What is left: the instances whose last word in the feed is not a delete; search, the
    // study's metadata and retrieval say the same.
    let feed = get(&format!("{root}/changefeed?after=0&limit=1000"), None);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&feed.body).unwrap();
    let mut present = BTreeSet::new();
    for r in &rows {
        let sop = r["SOPInstanceUID"].as_str().unwrap().to_owned();
        if r["Action"] == "delete" {
            assert!(present.remove(&sop), "{sop} deleted when absent");
        } else {
            present.insert(sop);
        }
    }
    let deletes = rows.iter().filter(|r| r["Action"] == "delete").count();
    assert!(
        deletes >= 40,
        "the 40 stored first were deleted ({deletes} deletes)"
    );
    eprintln!("{} of 16 racing stores survive the delete", present.len());
    let found = get(
        &format!("{root}/studies/{STUDY}/instances?limit=1000"),
        None,
    );
    let listed: BTreeSet<String> = if found.status == 204 || found.body.is_empty() {
        BTreeSet::new()
    } else {
        let v: Vec<serde_json::Value> = serde_json::from_slice(&found.body).unwrap();
        v.iter()
            .map(|r| r["00080018"]["Value"][0].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(listed, present, "search and the feed");
    let meta = get(&format!("{root}/studies/{STUDY}/metadata"), None);
    if present.is_empty() {
        assert_eq!(meta.status, 404);
    } else {
        let v: Vec<serde_json::Value> = serde_json::from_slice(&meta.body).unwrap();
        let in_meta: BTreeSet<String> = v
            .iter()
            .map(|r| r["00080018"]["Value"][0].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(in_meta, present, "metadata and the feed");
    }
    for sop in &present {
        let url = format!("{root}/studies/{STUDY}/series/{STUDY}.2/instances/{sop}/metadata");
        assert_eq!(get(&url, None).status, 200, "{url}");
    }
    // Stored again, whole.
    for f in first.iter().chain(&racing) {
        assert_eq!(stow(&root, f), 200);
    }
    let found = get(&format!("{root}/studies?StudyInstanceUID={STUDY}"), None);
    let v: Vec<serde_json::Value> = serde_json::from_slice(&found.body).unwrap();
    assert_eq!(v[0]["00201208"]["Value"][0].as_u64(), Some(56));
}

/// `wado delete` on the command line, the server stopped: the instance, then the series, are
/// gone for the server that starts next, and the feed says so.
#[test]
fn wado_delete_on_the_command_line() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("ct_small_ele.dcm");
    let other = corpus().join("mr_small_implicit.dcm");
    let out = import(&data, &[&file, &other]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (st, se, sop) = uids(&file);
    let delete = |args: &[&str]| {
        Command::new(wado_bin())
            .arg("delete")
            .arg("--data")
            .arg(&data)
            .args(args)
            .output()
            .unwrap()
    };
    let out = delete(&[&st, &se, &sop]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing there: a clear error, not a success.
    let again = delete(&[&st, &se, &sop]);
    assert!(!again.status.success());
    assert!(!again.stderr.is_empty());
    let bad = delete(&["not-a-uid"]);
    assert!(!bad.status.success());
    let server = Server::start_native(&data, &[]);
    let root = server.root();
    let url = format!("{root}/studies/{st}/series/{se}/instances/{sop}/metadata");
    assert_eq!(get(&url, None).status, 404, "{url}");
    assert_eq!(
        get(&format!("{root}/studies/{st}/metadata"), None).status,
        404
    );
    let (mst, _, _) = uids(&other);
    assert_eq!(
        get(&format!("{root}/studies/{mst}/metadata"), None).status,
        200
    );
    let feed = get(&format!("{root}/changefeed/latest"), None);
    let latest: serde_json::Value = serde_json::from_slice(&feed.body).unwrap();
    assert_eq!(latest["Action"], "delete");
    assert_eq!(latest["SOPInstanceUID"], sop.as_str());
    assert_eq!(latest["Sequence"], 3);
}

/// A correction of a 120-instance study while two clients read its metadata and search for it
/// throughout: each answer names the patient one way for every instance (the old name or the
/// new, never both), and once the response says done, only the new. DCMTK's dcmdump reads the
/// new name in every current file of the store and the old one in the kept versions.
#[test]
fn readers_see_a_correction_whole_or_not_at_all() {
    const STUDY: &str = "1.2.826.0.1.3680043.8.498.26";
    let dir = tempdir();
    let files: Vec<PathBuf> = cts(dir.path(), STUDY, 120, |k| k % 3);
    let data = dir.path().join("data");
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = import(&data, &refs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let old = dcmdump_value(&files[0], "PatientName");
    let server = Server::start_native(&data, &["--allow-anonymous-writes"]);
    let root = server.root();
    let names_in = |json: &[u8]| -> BTreeSet<String> {
        let v: serde_json::Value = serde_json::from_slice(json).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| {
                i["00100010"]["Value"][0]["Alphabetic"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let new = "Corrected^Whole";
    let (seen_old, seen_new) = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (root, done) = (&root, &done);
                s.spawn(move || {
                    let (mut olds, mut news) = (0, 0);
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let r = get(&format!("{root}/studies/{STUDY}/metadata"), None);
                        assert_eq!(r.status, 200);
                        let meta = names_in(&r.body);
                        let r = get(
                            &format!(
                                "{root}/studies/{STUDY}/instances?includefield=00100010&limit=500"
                            ),
                            None,
                        );
                        assert_eq!(r.status, 200);
                        let found = names_in(&r.body);
                        for names in [&meta, &found] {
                            assert_eq!(names.len(), 1, "a half-corrected study: {names:?}");
                            if names.contains(new) {
                                news += 1;
                            } else {
                                // Once the new name was read, never the old one again.
                                assert_eq!(news, 0, "the old name after the new: {names:?}");
                                olds += 1;
                            }
                        }
                    }
                    (olds, news)
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let body = format!(r#"{{"00100010":{{"vr":"PN","Value":[{{"Alphabetic":"{new}"}}]}}}}"#);
        let r = request_with_body(
            "PATCH",
            &format!("{root}/studies/{STUDY}"),
            &[("content-type", "application/dicom+json")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            r.header("warning").contains("corrected 120"),
            "{}",
            r.header("warning")
        );
        let after = get(&format!("{root}/studies/{STUDY}/metadata"), None);
        assert_eq!(names_in(&after.body), BTreeSet::from([new.to_owned()]));
        std::thread::sleep(std::time::Duration::from_millis(300));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        readers
            .into_iter()
            .map(|r| r.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    eprintln!("{seen_old} reads before the correction, {seen_new} after");
    assert!(seen_old > 0 && seen_new > 0);
    // The store: each instance's current file has the new name, its previous one the old.
    let mut current = 0;
    let mut kept = 0;
    for f in walk(&data.join("studies")) {
        if f.extension().is_none_or(|e| e != "dcm") {
            continue;
        }
        let name = dcmdump_value(&f, "PatientName");
        if name == new {
            current += 1;
        } else {
            assert_eq!(name, old);
            kept += 1;
        }
    }
    assert_eq!((current, kept), (120, 120));

    // Emptying an attribute (a DICOM JSON attribute without Value): the retrieved file has it
    // with no value, as DCMTK reads it; the search row and the metadata list it empty.
    let had = dcmdump_value(&files[0], "StudyDescription");
    assert!(!had.is_empty(), "the fixture has a Study Description");
    let r = request_with_body(
        "PATCH",
        &format!("{root}/studies/{STUDY}"),
        &[("content-type", "application/dicom+json")],
        br#"{"00081030":{"vr":"LO"}}"#,
    );
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let series = dcmdump_value(&files[0], "SeriesInstanceUID");
    let sop = dcmdump_value(&files[0], "SOPInstanceUID");
    let got = get(
        &format!("{root}/studies/{STUDY}/series/{series}/instances/{sop}"),
        Some("application/dicom; transfer-syntax=*"),
    );
    assert_eq!(got.status, 200);
    let file = write_temp(dir.path(), "emptied.dcm", &got.body);
    let dump = Command::new("dcmdump")
        .args(["-q", "+P", "StudyDescription"])
        .arg(&file)
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&dump.stdout).to_string();
    assert!(
        line.contains("(0008,1030) LO (no value available)"),
        "{line}"
    );
    assert_eq!(dcmdump_value(&file, "PatientName"), new, "the rest kept");
    let row = get(
        &format!("{root}/studies?StudyInstanceUID={STUDY}&includefield=00081030"),
        None,
    );
    let row: serde_json::Value = serde_json::from_slice(&row.body).unwrap();
    assert_eq!(row.as_array().map(Vec::len), Some(1), "{row}");
    assert!(row[0]["00081030"].get("Value").is_none(), "{row}");
    let meta = get(&format!("{root}/studies/{STUDY}/metadata"), None);
    let meta: serde_json::Value = serde_json::from_slice(&meta.body).unwrap();
    assert!(
        meta.as_array()
            .unwrap()
            .iter()
            .all(|i| i["00081030"].get("Value").is_none()),
        "every instance's metadata lists it empty"
    );
}

/// The change feed pushed to a webhook by two replicas over one directory and SQLite, the
/// receiver failing every other request, one replica killed mid-way: every change is
/// acknowledged, in order, each row as `GET {root}/changefeed` says it; every request is signed
/// as Python's hmac module computes it. The delivery delay (STOW-RS response to acknowledged
/// delivery) is printed (p50, p95).
#[test]
fn the_webhook_gets_every_change_from_a_receiver_failing_half_its_calls() {
    const STUDY: &str = "1.2.826.0.1.3680043.8.498.27";
    const SECRET: &str = "a-shared-secret-of-the-receiver";
    let dir = tempdir();
    let data = dir.path().join("data");
    let secret = write_temp(dir.path(), "secret", SECRET.as_bytes());
    let (url, got) = flaky_receiver();
    let serve = || {
        Server::start_native(
            &data,
            &[
                "--allow-anonymous-writes",
                "--webhook",
                &url,
                "--webhook-secret-file",
                secret.to_str().unwrap(),
                "--webhook-lease",
                "3",
            ],
        )
    };
    let mut servers = vec![serve(), serve()];
    let roots: Vec<String> = servers.iter().map(Server::root).collect();
    let files: Vec<PathBuf> = cts(dir.path(), STUDY, 40, |k| k % 2);
    // Stored one per request, four clients over both replicas; when each was answered.
    let stored: std::sync::Mutex<BTreeMap<String, std::time::Instant>> = Default::default();
    let store_some = |files: &[PathBuf], roots: &[String]| {
        std::thread::scope(|s| {
            for c in 0..4 {
                let stored = &stored;
                s.spawn(move || {
                    for (k, f) in files.iter().enumerate().filter(|(k, _)| k % 4 == c) {
                        assert_eq!(stow(&roots[k % roots.len()], f), 200);
                        let sop = f.file_stem().unwrap().to_str().unwrap().to_owned();
                        stored
                            .lock()
                            .unwrap()
                            .insert(sop, std::time::Instant::now());
                    }
                });
            }
        })
    };
    store_some(&files[..24], &roots);
    // One replica killed (it may hold the lease, or be mid-delivery): the other goes on.
    drop(servers.remove(0));
    // (Its lease ends within 3 s, and the other takes over; meanwhile nothing is delivered.)
    std::thread::sleep(std::time::Duration::from_secs(4));
    let steady = std::time::Instant::now();
    store_some(&files[24..], &roots[1..]);
    let r = request(
        "DELETE",
        &format!("{}/studies/{STUDY}/series/{STUDY}.1", roots[1]),
        &[],
    );
    assert_eq!(r.status, 204);
    let latest = get(&format!("{}/changefeed/latest", roots[1]), None);
    let latest: serde_json::Value = serde_json::from_slice(&latest.body).unwrap();
    let last = latest["Sequence"].as_i64().unwrap();
    assert_eq!(last, 40 + 20);
    // Wait for every change to be acknowledged.
    let acked = |got: &[Delivery]| -> BTreeSet<i64> {
        got.iter()
            .filter(|d| d.status == 200)
            .flat_map(|d| {
                let rows: Vec<serde_json::Value> = serde_json::from_slice(&d.body).unwrap();
                rows.into_iter()
                    .map(|r| r["Sequence"].as_i64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while acked(&got.lock().unwrap()).len() < last as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "acknowledged: {:?}",
            acked(&got.lock().unwrap())
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let got = got.lock().unwrap();
    assert_eq!(acked(&got), (1..=last).collect::<BTreeSet<_>>());
    let refused = got.iter().filter(|d| d.status == 500).count();
    assert!(
        refused >= 2 && refused * 2 >= got.len(),
        "{refused} of {}",
        got.len()
    );
    // Each acknowledged row is the feed's row; a change acknowledged twice (a delivery cut by
    // the kill) says the same both times.
    let feed = get(&format!("{}/changefeed?after=0&limit=1000", roots[1]), None);
    let feed: Vec<serde_json::Value> = serde_json::from_slice(&feed.body).unwrap();
    let mut twice = 0;
    let mut seen: BTreeMap<i64, serde_json::Value> = BTreeMap::new();
    let mut ordered: Vec<&Delivery> = got.iter().collect();
    ordered.sort_by_key(|d| d.n);
    for d in ordered.iter().filter(|d| d.status == 200) {
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&d.body).unwrap();
        let seqs: Vec<i64> = rows
            .iter()
            .map(|r| r["Sequence"].as_i64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (seqs[0]..seqs[0] + seqs.len() as i64).collect::<Vec<_>>(),
            "a batch in order without gaps"
        );
        assert_eq!(
            d.headers.get("x-wado-sequence"),
            Some(&format!("{}-{}", seqs[0], seqs[seqs.len() - 1]))
        );
        for r in rows {
            let seq = r["Sequence"].as_i64().unwrap();
            assert_eq!(r, feed[(seq - 1) as usize], "the feed's row {seq}");
            if let Some(before) = seen.insert(seq, r.clone()) {
                assert_eq!(before, r);
                twice += 1;
            }
        }
    }
    // Signatures, as Python's hmac module computes them over each body.
    let bodies = dir.path().join("bodies");
    std::fs::create_dir_all(&bodies).unwrap();
    for d in got.iter() {
        std::fs::write(bodies.join(format!("{}.json", d.n)), &d.body).unwrap();
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import hmac, hashlib, sys, pathlib\n\
             for p in sorted(pathlib.Path(sys.argv[2]).glob('*.json')):\n\
             \x20   print(p.stem, hmac.new(sys.argv[1].encode(), p.read_bytes(), hashlib.sha256).hexdigest())",
        )
        .arg(SECRET)
        .arg(&bodies)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python: BTreeMap<usize, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (n, h) = l.split_once(' ')?;
            Some((n.parse().ok()?, format!("sha256={h}")))
        })
        .collect();
    assert_eq!(python.len(), got.len());
    for d in got.iter() {
        assert_eq!(
            d.headers.get("x-wado-signature"),
            python.get(&d.n),
            "request {}",
            d.n
        );
    }
    // Delivery delay: from the STOW-RS response to the acknowledged delivery of its create.
    let stored = stored.lock().unwrap();
    let (mut all, mut after_kill): (Vec<f64>, Vec<f64>) = Default::default();
    for d in ordered.iter().filter(|d| d.status == 200) {
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&d.body).unwrap();
        for r in rows.iter().filter(|r| r["Action"] == "create") {
            let sop = r["SOPInstanceUID"].as_str().unwrap();
            if let Some(t) = stored.get(sop) {
                let delay = d.at.saturating_duration_since(*t).as_secs_f64();
                all.push(delay);
                if *t > steady {
                    after_kill.push(delay);
                }
            }
        }
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() - 1) as f64 * p) as usize]
    };
    eprintln!(
        "webhook: {} requests ({refused} refused by the receiver), {twice} changes acknowledged twice; delay from STOW-RS response to acknowledged delivery: all p50 {:.2} s, p95 {:.2} s (the kill and take-over included); once one replica delivers: p50 {:.2} s, p95 {:.2} s",
        got.len(),
        pct(&mut all, 0.5),
        pct(&mut all, 0.95),
        pct(&mut after_kill, 0.5),
        pct(&mut after_kill, 0.95),
    );
}

/// The worker pushes its change feed to a Cloudflare Queue (`FEED_QUEUE`, each change a
/// message): a consumer worker in the same `wrangler dev` session POSTs each batch to a
/// receiver that refuses every other call (the queue retries those batches). Stores from two
/// clients, a delete and a correction: every change of the worker's feed reaches the receiver
/// acknowledged, each message equal to the feed's row (a Queue does not keep order across
/// batches or retries: consumers order by `Sequence`).
#[test]
fn the_worker_pushes_its_feed_to_a_queue_whose_consumer_fails_half_its_calls() {
    const STUDY: &str = "1.2.826.0.1.3680043.8.498.28";
    let dir = tempdir();
    let (url, got) = flaky_receiver();
    let consumer = dir.path().join("consumer.toml");
    std::fs::write(
        &consumer,
        format!(
            "name = \"wado-feed-consumer\"\nmain = {:?}\ncompatibility_date = \"2025-09-01\"\n\n\
             [vars]\nRECEIVER = {url:?}\n\n[[queues.consumers]]\nqueue = \"wado-feed\"\n\
             max_batch_size = 10\nmax_batch_timeout = 1\nmax_retries = 20\nretry_delay = 0\n",
            repo_dir()
                .join("tests/workers/feed-consumer.mjs")
                .display()
                .to_string()
        ),
    )
    .unwrap();
    let worker = Server::start_worker_with(
        None,
        &[("ALLOW_ANONYMOUS_WRITES", "true")],
        "[[queues.producers]]\nbinding = \"FEED_QUEUE\"\nqueue = \"wado-feed\"\n",
        &[&consumer],
    );
    let root = worker.root();
    let files = cts(dir.path(), STUDY, 16, |k| k % 2);
    std::thread::scope(|s| {
        for c in 0..2 {
            let (files, root) = (&files, &root);
            s.spawn(move || {
                for f in files.iter().skip(c).step_by(2) {
                    let mut status = stow(root, f);
                    if status != 200 {
                        // wrangler dev's "worker restarted mid-request" (tests/src/lib.rs).
                        status = stow(root, f);
                    }
                    assert_eq!(status, 200);
                }
            });
        }
    });
    let gone = format!("{STUDY}.1.3");
    let r = request(
        "DELETE",
        &format!("{root}/studies/{STUDY}/series/{STUDY}.1/instances/{gone}"),
        &[],
    );
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let r = request_with_body(
        "PATCH",
        &format!("{root}/studies/{STUDY}"),
        &[("Content-Type", "application/dicom+json")],
        br#"{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Queued^Correction"}]}}"#,
    );
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    // The feed as the worker says it: 16 stores, a delete, 15 corrections.
    let r = get(&format!("{root}/changefeed?limit=1000"), None);
    let feed: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(feed.len(), 16 + 1 + 15, "{feed:?}");
    let by_seq: BTreeMap<i64, &serde_json::Value> = feed
        .iter()
        .map(|c| (c["Sequence"].as_i64().unwrap(), c))
        .collect();
    let last = *by_seq.keys().last().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let acknowledged = loop {
        let seen: BTreeSet<i64> = got
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.status == 200)
            .flat_map(|d| {
                let batch: Vec<serde_json::Value> = serde_json::from_slice(&d.body).unwrap();
                batch
                    .iter()
                    .map(|c| c["Sequence"].as_i64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        if seen.len() == by_seq.len() || std::time::Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(
        acknowledged,
        by_seq.keys().copied().collect::<BTreeSet<i64>>(),
        "every change up to {last} acknowledged"
    );
    let deliveries = got.lock().unwrap();
    eprintln!(
        "queue: {} changes in {} calls to the receiver ({} refused)",
        by_seq.len(),
        deliveries.len(),
        deliveries.iter().filter(|d| d.status != 200).count()
    );
    assert!(
        deliveries.iter().any(|d| d.status == 500),
        "the receiver refused some batches"
    );
    for d in deliveries.iter() {
        let batch: Vec<serde_json::Value> = serde_json::from_slice(&d.body).unwrap();
        for c in &batch {
            let seq = c["Sequence"].as_i64().unwrap();
            assert_eq!(c, by_seq[&seq], "the message is the feed's row");
        }
    }
}
