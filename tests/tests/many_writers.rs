//! One archive, many writers (issue 23): replicas of `wado serve` over one store and one
//! catalog, and the worker's concurrent requests, writing at once (STOW-RS, `wado import`, a
//! modality's DIMSE C-STOREs, deletes, corrections). After every scenario, and again after a
//! restart, every server must tell the same story of every instance: the bytes it retrieves
//! (read by dicom-rs, never by wado), its instance metadata, the series' and the study's
//! metadata and its search row name the same version (an ImageComments value each write
//! carries), the counts are exact, and no request for a stored instance failed.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use wado_tests::*;

const STUDY: &str = "1.2.826.0.1.3680043.8.498.23";

/// A CT instance of `STUDY`, series `series`, SOP Instance UID `sop`, whose ImageComments
/// say `version`; `pad` more bytes make versions of one instance differ in size.
fn instance(dir: &Path, series: u32, sop: &str, version: &str, pad: usize) -> PathBuf {
    use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
    let mut o = dicom_object::OpenFileOptions::new()
        .open_file(corpus().join("ct_small_ele.dcm"))
        .unwrap();
    let se = format!("{STUDY}.{series}");
    for (tag, v) in [
        (Tag(0x0020, 0x000D), STUDY),
        (Tag(0x0020, 0x000E), se.as_str()),
        (Tag(0x0008, 0x0018), sop),
    ] {
        o.put(DataElement::new(tag, VR::UI, PrimitiveValue::from(v)));
    }
    o.put(DataElement::new(
        Tag(0x0020, 0x4000),
        VR::LT,
        PrimitiveValue::from(format!("{version}{}", " ".repeat(pad))),
    ));
    o.meta_mut().media_storage_sop_instance_uid = sop.to_owned();
    o.meta_mut().update_information_group_length();
    let path = dir.join(format!("{sop}-{version}.dcm"));
    o.write_to_file(&path).unwrap();
    path
}

/// STOW-RS of one file; the status.
fn stow(root: &str, file: &Path) -> u16 {
    for attempt in 1.. {
        let (status, body) = stow_once(root, file);
        if worker_restarted(status, body.as_bytes()) && attempt < 3 {
            // Storing the same bytes again is the same outcome, whether or not the first
            // attempt was stored.
            eprintln!(
                "STOW {}: wrangler dev restarted the worker; again",
                file.display()
            );
            continue;
        }
        if status != 200 {
            eprintln!("STOW {} -> {status}: {body}", file.display());
        }
        return status;
    }
    unreachable!()
}

/// One STOW-RS request of one file: the status and the body's text (0 when none came).
fn stow_once(root: &str, file: &Path) -> (u16, String) {
    let b = "many-writers";
    let mut body = format!("--{b}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
    body.extend_from_slice(&std::fs::read(file).unwrap());
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let req = http::Request::post(format!("{root}/studies"))
        .header(
            "content-type",
            format!("multipart/related; type=\"application/dicom\"; boundary={b}"),
        )
        .header("accept", "application/dicom+json")
        .body(body)
        .unwrap();
    match agent.run(req) {
        Ok(mut r) => {
            let status = r.status().as_u16();
            (status, r.body_mut().read_to_string().unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// DELETE of a resource only this caller deletes: asserts it answered 204. After the worker
/// runtime was swapped under the request ([`worker_restarted`]) it is sent again, and then
/// 404 also means done (the first attempt deleted it).
fn delete(url: &str) {
    let mut again = false;
    loop {
        let r = request("DELETE", url, &[]);
        if worker_restarted(r.status, &r.body) && !again {
            eprintln!("DELETE {url}: wrangler dev restarted the worker; again");
            again = true;
            continue;
        }
        if !(r.status == 204 || again && r.status == 404) {
            panic!(
                "DELETE {url}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        return;
    }
}

/// The ImageComments of a DICOM JSON object.
fn comment(v: &serde_json::Value) -> String {
    v["00204000"]["Value"][0]
        .as_str()
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// What one server says of `STUDY`: per SOP Instance UID, the version named by its file,
/// instance metadata, series metadata, study metadata and search row, and the counts.
fn story(root: &str) -> (BTreeMap<String, String>, usize) {
    let json = |url: &str| -> serde_json::Value {
        let r = get(url, Some("application/dicom+json"));
        assert_eq!(r.status, 200, "{url}: {}", String::from_utf8_lossy(&r.body));
        serde_json::from_slice(&r.body).unwrap()
    };
    let found = json(&format!(
        "{root}/studies/{STUDY}/instances?includefield=00204000&limit=1000"
    ));
    let mut out = BTreeMap::new();
    let study_meta = json(&format!("{root}/studies/{STUDY}/metadata"));
    let by_sop = |list: &serde_json::Value| -> BTreeMap<String, String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["00080018"]["Value"][0].as_str().unwrap().to_owned(),
                    comment(m),
                )
            })
            .collect()
    };
    let in_study = by_sop(&study_meta);
    let mut series_seen: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for row in found.as_array().unwrap() {
        let sop = row["00080018"]["Value"][0].as_str().unwrap().to_owned();
        let series = row["0020000E"]["Value"][0].as_str().unwrap().to_owned();
        let in_series = series_seen.entry(series.clone()).or_insert_with(|| {
            by_sop(&json(&format!(
                "{root}/studies/{STUDY}/series/{series}/metadata"
            )))
        });
        let url = format!("{root}/studies/{STUDY}/series/{series}/instances/{sop}");
        let r = request(
            "GET",
            &url,
            &[(
                "accept",
                "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
            )],
        );
        assert_eq!(r.status, 200, "{url}");
        let parts = r.parts();
        let file = dicom_object::OpenFileOptions::new()
            .from_reader(&parts[0].1[..])
            .unwrap();
        let in_file = file
            .element(dicom_core::Tag(0x0020, 0x4000))
            .unwrap()
            .to_str()
            .unwrap()
            .trim()
            .to_owned();
        let in_instance = comment(&json(&format!("{url}/metadata"))[0]);
        let says = [
            ("search row", comment(row)),
            ("instance metadata", in_instance),
            (
                "series metadata",
                in_series.get(&sop).cloned().unwrap_or_default(),
            ),
            (
                "study metadata",
                in_study.get(&sop).cloned().unwrap_or_default(),
            ),
        ];
        for (what, v) in &says {
            assert_eq!(
                *v, in_file,
                "{root}: {sop}: the file says {in_file}, its {what} {v}"
            );
        }
        out.insert(sop, in_file);
    }
    assert_eq!(
        in_study.len(),
        out.len(),
        "{root}: study metadata lists every instance once"
    );
    let listed: usize = series_seen.values().map(BTreeMap::len).sum();
    assert_eq!(listed, out.len(), "{root}: series metadata likewise");
    let study = json(&format!("{root}/studies?StudyInstanceUID={STUDY}"));
    let n = study[0]["00201208"]["Value"][0].as_u64().unwrap() as usize;
    assert_eq!(n, out.len(), "{root}: the study's count");
    (out, n)
}

/// DCMTK's `storescu` (what a modality runs) sends `files` over one association to a DIMSE
/// port of a server; its output says which were stored (one "Received Store Response" line
/// each, in the files' order).
fn storescu(port: u16, files: &[PathBuf]) -> std::process::Output {
    Command::new("storescu")
        .args(["-v", "-aec", "DCM4CHEE", "127.0.0.1", &port.to_string()])
        .args(files)
        // storescu leaves Nagle's algorithm on unless told (docs/DIMSE.md).
        .env("TCP_NODELAY", "1")
        .output()
        .expect("storescu (DCMTK, scripts/setup.sh)")
}

/// How many C-STOREs `storescu` said succeeded.
fn stored_by(out: &std::process::Output) -> usize {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| l.contains("Received Store Response (Success)"))
        .count()
}

/// Every server tells the same story.
fn agree(roots: &[String]) -> BTreeMap<String, String> {
    let first = story(&roots[0]).0;
    for r in &roots[1..] {
        assert_eq!(story(r).0, first, "{r} and {} disagree", roots[0]);
    }
    first
}

/// The scenarios, against servers `start(i)` (i = 0, 1) that share a store and a catalog;
/// `import` runs `wado import` into them; `dimse`, the DIMSE ports of the servers when they
/// listen (modalities' C-STOREs then join the writers).
fn scenarios(
    start: &dyn Fn(usize) -> Server,
    import: &(dyn Fn(&[PathBuf]) -> std::process::Output + Sync),
    dimse: Option<[u16; 2]>,
) {
    let dir = tempdir();
    let mut servers = vec![start(0), start(1)];
    let roots: Vec<String> = servers.iter().map(Server::root).collect();
    // 1. Eight clients, one instance per request, alternating between the servers; each
    //    instance is seen by the other server as soon as its response says it is stored.
    let files: Vec<PathBuf> = (0..64)
        .map(|k| {
            instance(
                dir.path(),
                k % 4,
                &format!("{STUDY}.{}.{k}", k % 4),
                "one",
                0,
            )
        })
        .collect();
    std::thread::scope(|s| {
        for c in 0..8 {
            let (files, roots) = (&files, &roots);
            s.spawn(move || {
                for (k, f) in files.iter().enumerate().filter(|(k, _)| k % 8 == c) {
                    let (to, other) = (&roots[k % 2], &roots[(k + 1) % 2]);
                    assert_eq!(stow(to, f), 200, "{}", f.display());
                    let sop = format!("{STUDY}.{}.{k}", k % 4);
                    let url = format!(
                        "{other}/studies/{STUDY}/series/{STUDY}.{}/instances/{sop}/metadata",
                        k % 4
                    );
                    assert_eq!(get(&url, None).status, 200, "{url}: the other replica");
                }
            });
        }
    });
    assert_eq!(agree(&roots).len(), 64);
    // 2. One SOP Instance UID through both servers at once, in versions that differ in size
    //    and in an attribute: one of them, whole, everywhere.
    let contested: Vec<(PathBuf, PathBuf)> = (0..16)
        .map(|k| {
            let sop = format!("{STUDY}.9.{k}");
            (
                instance(dir.path(), 9, &sop, "left", 0),
                instance(dir.path(), 9, &sop, "right", 1000),
            )
        })
        .collect();
    std::thread::scope(|s| {
        for (a, b) in &contested {
            let roots = &roots;
            s.spawn(move || assert_eq!(stow(&roots[0], a), 200));
            s.spawn(move || assert_eq!(stow(&roots[1], b), 200));
        }
    });
    let seen = agree(&roots);
    assert_eq!(seen.len(), 64 + 16);
    for k in 0..16 {
        let v = &seen[&format!("{STUDY}.9.{k}")];
        assert!(v == "left" || v == "right", "{v}");
    }
    // 3. `wado import`, STOW-RS and (when the servers listen) a modality's C-STOREs into one
    //    study at once.
    let c_stored: Vec<PathBuf> = match dimse {
        Some(_) => (0..24)
            .map(|k| instance(dir.path(), 11, &format!("{STUDY}.11.{k}"), "cstore", 0))
            .collect(),
        None => Vec::new(),
    };
    let imported: Vec<PathBuf> = (0..24)
        .map(|k| instance(dir.path(), 5, &format!("{STUDY}.5.{k}"), "import", 0))
        .collect();
    let stowed: Vec<PathBuf> = (0..24)
        .map(|k| instance(dir.path(), 6, &format!("{STUDY}.6.{k}"), "stow", 0))
        .collect();
    std::thread::scope(|s| {
        let importing = s.spawn(|| import(&imported));
        let c_stored = &c_stored;
        let sending = dimse.map(|ports| s.spawn(move || storescu(ports[1], c_stored)));
        for (k, f) in stowed.iter().enumerate() {
            assert_eq!(stow(&roots[k % 2], f), 200);
        }
        let out = importing.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(sending) = sending {
            let out = sending.join().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                stored_by(&out),
                c_stored.len(),
                "every C-STORE answered Success"
            );
        }
    });
    let n3 = c_stored.len();
    assert_eq!(agree(&roots).len(), 64 + 16 + 48 + n3);
    // 4. A server killed in the middle of a STOW of many instances: what it stored whole is
    //    there, everywhere; nothing half.
    let many: Vec<PathBuf> = (0..60)
        .map(|k| instance(dir.path(), 7, &format!("{STUDY}.7.{k}"), "killed", 0))
        .collect();
    // A modality's association to the same server, cut by the kill too: under way (a few of
    // its instances in) before the STOW-RS request starts.
    let modality: Vec<PathBuf> = match dimse {
        Some(_) => (0..60)
            .map(|k| instance(dir.path(), 12, &format!("{STUDY}.12.{k}"), "cut", 0))
            .collect(),
        None => Vec::new(),
    };
    let cut = dimse.map(|ports| {
        let files = modality.clone();
        std::thread::spawn(move || storescu(ports[0], &files))
    });
    if dimse.is_some() {
        let url = format!("{}/studies/{STUDY}/series/{STUDY}.12/instances", roots[1]);
        let begun = std::time::Instant::now();
        while begun.elapsed() < Duration::from_secs(30) {
            let r = get(&url, None);
            let n = serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                .unwrap_or(0);
            if n >= 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let root0 = roots[0].clone();
    let sender = std::thread::spawn(move || {
        let out = Command::new(wado_bin())
            .arg("store")
            .arg(&root0)
            .args(&many)
            .args(["--per-request", "60"])
            .output()
            .unwrap();
        out.status.success()
    });
    std::thread::sleep(Duration::from_millis(700));
    drop(servers.remove(0));
    let _ = sender.join();
    let after = story(&roots[1]).0;
    let killed = after
        .keys()
        .filter(|k| k.starts_with(&format!("{STUDY}.7.")))
        .count();
    eprintln!("{killed} of 60 stored before the kill");
    if let Some(cut) = cut {
        // Every instance the modality was told is stored is there, whole (story checked it).
        let out = cut.join().unwrap();
        let acked = stored_by(&out);
        assert!(acked < modality.len(), "the kill cut the association");
        for k in 0..acked {
            assert!(
                after.contains_key(&format!("{STUDY}.12.{k}")),
                "C-STORE {k} answered Success before the kill, yet is not stored"
            );
        }
        let present = after
            .keys()
            .filter(|k| k.starts_with(&format!("{STUDY}.12.")))
            .count();
        eprintln!("C-STORE: {acked} acknowledged, {present} of 60 stored before the kill");
    }
    // 5. Both restarted: the same story, and storing the rest completes it.
    drop(servers);
    let servers = [start(0), start(1)];
    let roots: Vec<String> = servers.iter().map(Server::root).collect();
    let restarted = agree(&roots);
    // Nothing there before the restart is lost. A write the kill cut after its commit reached
    // the disk, but before the other replica could see it (SQLite's WAL: the commit's frames
    // written and synced, the shared WAL index not yet updated; the next opening rebuilds it),
    // may appear now, whole (`story` checked): only writes under way at the kill, none of them
    // acknowledged — seen once in CI, a C-STORE after the last one answered.
    for (k, v) in &after {
        assert_eq!(
            restarted.get(k),
            Some(v),
            "{k} was there before the restart"
        );
    }
    for (k, v) in &restarted {
        let under_way = [format!("{STUDY}.7."), format!("{STUDY}.12.")];
        assert!(
            after.contains_key(k) || under_way.iter().any(|p| k.starts_with(p)),
            "{k} ({v}) appeared after the restart, yet no write of it was under way at the kill"
        );
    }
    let rest: Vec<PathBuf> = (0..60)
        .map(|k| instance(dir.path(), 7, &format!("{STUDY}.7.{k}"), "killed", 0))
        .collect();
    for (k, f) in rest.iter().enumerate() {
        assert_eq!(stow(&roots[k % 2], f), 200);
    }
    if let Some(ports) = dimse {
        // The modality sends its series again, to the other server: the same files.
        let out = storescu(ports[1], &modality);
        assert_eq!(
            stored_by(&out),
            modality.len(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let n4 = modality.len();
    assert_eq!(agree(&roots).len(), 64 + 16 + 48 + n3 + 60 + n4);
    // 6. Eight writers over both servers at once (issue 24): four store a new series one
    //    instance per request; one deletes series 9 whole, one deletes half of series 5 one
    //    instance at a time, and two read the study's metadata throughout (always whole: 200).
    let fresh: Vec<PathBuf> = (0..32)
        .map(|k| instance(dir.path(), 8, &format!("{STUDY}.8.{k}"), "fresh", 0))
        .collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (roots, done) = (&roots, &done);
                s.spawn(move || {
                    let mut reads = 0;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let url = format!("{}/studies/{STUDY}/metadata", roots[r]);
                        assert_eq!(get(&url, None).status, 200, "{url}");
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        let writers: Vec<_> = (0..4)
            .map(|c| {
                let (fresh, roots) = (&fresh, &roots);
                s.spawn(move || {
                    for (k, f) in fresh.iter().enumerate().filter(|(k, _)| k % 4 == c) {
                        assert_eq!(stow(&roots[k % 2], f), 200, "{}", f.display());
                    }
                })
            })
            .collect();
        let whole = s.spawn(|| {
            let url = format!("{}/studies/{STUDY}/series/{STUDY}.9", roots[0]);
            delete(&url);
        });
        let each = s.spawn(|| {
            for k in (0..24).step_by(2) {
                let url = format!(
                    "{}/studies/{STUDY}/series/{STUDY}.5/instances/{STUDY}.5.{k}",
                    roots[k / 2 % 2]
                );
                delete(&url);
            }
        });
        for w in writers {
            w.join().unwrap();
        }
        whole.join().unwrap();
        each.join().unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            eprintln!("{} metadata reads during the deletes", r.join().unwrap());
        }
    });
    let seen = agree(&roots);
    assert_eq!(seen.len(), 64 + 16 + 48 + n3 + 60 + n4 + 32 - 16 - 12);
    for root in &roots {
        for gone in [
            format!("{root}/studies/{STUDY}/series/{STUDY}.9/instances/{STUDY}.9.3/metadata"),
            format!("{root}/studies/{STUDY}/series/{STUDY}.9/metadata"),
            format!("{root}/studies/{STUDY}/series/{STUDY}.5/instances/{STUDY}.5.4"),
        ] {
            assert_eq!(get(&gone, None).status, 404, "{gone}");
        }
    }
    // 7. Corrections of the study through both servers while two clients store into it: each
    //    instance's file, instance metadata and study metadata name the same patient; every
    //    instance a correction said it corrected has its `correct` row; a last correction
    //    after the stores reaches every instance, on both servers.
    let racing: Vec<PathBuf> = (0..16)
        .map(|k| instance(dir.path(), 10, &format!("{STUDY}.10.{k}"), "racing", 0))
        .collect();
    let corrected = std::sync::atomic::AtomicUsize::new(0);
    let correct = |root: &str, name: &str| {
        let body =
            format!(r#"{{"00100010": {{"vr": "PN", "Value": [{{"Alphabetic": "{name}"}}]}}}}"#);
        let r = request_with_body(
            "PATCH",
            &format!("{root}/studies/{STUDY}"),
            &[("Content-Type", "application/dicom+json")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
        let warning = r.header("warning");
        let n: usize = warning
            .split("corrected ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no count in {warning:?}"));
        corrected.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
    };
    let before = get(&format!("{}/changefeed/latest", roots[0]), None);
    let before: serde_json::Value = serde_json::from_slice(&before.body).unwrap();
    let before = before["Sequence"].as_u64().unwrap();
    std::thread::scope(|s| {
        for c in 0..2 {
            let (racing, roots) = (&racing, &roots);
            s.spawn(move || {
                for (k, f) in racing.iter().enumerate().filter(|(k, _)| k % 2 == c) {
                    assert_eq!(stow(&roots[(k / 2) % 2], f), 200, "{}", f.display());
                }
            });
        }
        for c in 0..2 {
            let (roots, correct) = (&roots, &correct);
            s.spawn(move || {
                for i in 0..3 {
                    correct(&roots[(c + i) % 2], &format!("Race^{c}^{i}"));
                }
            });
        }
    });
    let names = |root: &str| -> BTreeMap<String, String> {
        let r = get(&format!("{root}/studies/{STUDY}/metadata"), None);
        let meta: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let mut out = BTreeMap::new();
        for m in meta.as_array().unwrap() {
            let sop = m["00080018"]["Value"][0].as_str().unwrap().to_owned();
            let series = m["0020000E"]["Value"][0].as_str().unwrap();
            let in_meta = m["00100010"]["Value"][0]["Alphabetic"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            // The file and the instance's own metadata: for the series stored during the
            // corrections, and a sample of the others (the study metadata covers them all).
            if !series.ends_with(".10") && out.len() % 8 != 0 {
                out.insert(sop, in_meta);
                continue;
            }
            let url = format!("{root}/studies/{STUDY}/series/{series}/instances/{sop}");
            let r = request(
                "GET",
                &url,
                &[(
                    "accept",
                    "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
                )],
            );
            assert_eq!(r.status, 200, "{url}");
            let file = dicom_object::OpenFileOptions::new()
                .from_reader(&r.parts()[0].1[..])
                .unwrap();
            let in_file = file
                .element(dicom_core::Tag(0x0010, 0x0010))
                .unwrap()
                .to_str()
                .unwrap()
                .trim()
                .to_owned();
            let one = get(&format!("{url}/metadata"), None);
            let one: serde_json::Value = serde_json::from_slice(&one.body).unwrap();
            let in_instance = one[0]["00100010"]["Value"][0]["Alphabetic"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            assert_eq!(in_meta, in_file, "{root}: {sop}: study metadata and file");
            assert_eq!(
                in_instance, in_file,
                "{root}: {sop}: instance metadata and file"
            );
            out.insert(sop, in_file);
        }
        out
    };
    let mixed = names(&roots[0]);
    assert_eq!(names(&roots[1]), mixed, "both servers");
    correct(&roots[1], "Race^Final");
    for root in &roots {
        let all = names(root);
        assert_eq!(all.len(), seen.len() + 16);
        assert!(all.values().all(|n| n == "Race^Final"), "{root}: {all:?}");
        let row = get(&format!("{root}/studies?StudyInstanceUID={STUDY}"), None);
        let row: serde_json::Value = serde_json::from_slice(&row.body).unwrap();
        assert_eq!(row[0]["00100010"]["Value"][0]["Alphabetic"], "Race^Final");
    }
    let mut corrects = 0;
    let mut after = before;
    loop {
        let page = get(
            &format!("{}/changefeed?after={after}&limit=1000", roots[0]),
            None,
        );
        let page: Vec<serde_json::Value> = serde_json::from_slice(&page.body).unwrap();
        let Some(last) = page.last() else { break };
        after = last["Sequence"].as_u64().unwrap();
        corrects += page.iter().filter(|r| r["Action"] == "correct").count();
    }
    assert_eq!(
        corrects,
        corrected.load(std::sync::atomic::Ordering::SeqCst),
        "one `correct` row per instance each correction said it corrected"
    );
    let seen = agree(&roots);
    the_feed_tells_the_same_story(&roots, &seen);
}

/// Every server reads the same change feed: numbered from 1 without a gap or a repeat; each
/// instance created first, never created twice without a delete between; and the instances its
/// last rows leave present are exactly those the servers show (`seen`).
fn the_feed_tells_the_same_story(roots: &[String], seen: &BTreeMap<String, String>) {
    let read = |root: &str| -> Vec<serde_json::Value> {
        let mut rows: Vec<serde_json::Value> = Vec::new();
        loop {
            let after = rows.last().map_or(0, |r| r["Sequence"].as_u64().unwrap());
            let url = format!("{root}/changefeed?after={after}&limit=100");
            let r = get(&url, None);
            assert_eq!(r.status, 200, "{url}");
            let page: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
            if page.is_empty() {
                return rows;
            }
            rows.extend(page);
        }
    };
    let rows = read(&roots[0]);
    for r in &roots[1..] {
        assert_eq!(read(r), rows, "{r} and {} read different feeds", roots[0]);
    }
    let seqs: Vec<u64> = rows
        .iter()
        .map(|r| r["Sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=rows.len() as u64).collect::<Vec<_>>());
    let mut present = BTreeSet::new();
    for r in &rows {
        let sop = r["SOPInstanceUID"].as_str().unwrap().to_owned();
        match r["Action"].as_str().unwrap() {
            "create" => assert!(present.insert(sop.clone()), "{sop} created twice: {r}"),
            "replace" => assert!(present.contains(&sop), "{sop} replaced before created: {r}"),
            "delete" => assert!(present.remove(&sop), "{sop} deleted when absent: {r}"),
            "correct" => assert!(present.contains(&sop), "{sop} corrected when absent: {r}"),
            other => panic!("action {other}"),
        }
    }
    assert_eq!(present, seen.keys().cloned().collect::<BTreeSet<_>>());
    let latest = get(&format!("{}/changefeed/latest", roots[0]), None);
    let latest: serde_json::Value = serde_json::from_slice(&latest.body).unwrap();
    assert_eq!(latest["Sequence"].as_u64(), Some(rows.len() as u64));
}

/// Two `wado serve` over one S3-compatible bucket and one PostgreSQL.
#[test]
fn two_servers_over_one_bucket_and_one_postgresql() {
    let pg = PgServer::start();
    let s3 = S3Server::start("pacs");
    for (k, v) in S3_ENV {
        std::env::set_var(k, v);
    }
    let url = s3.url("pacs", "archive");
    let ports = [free_port(), free_port()];
    let start = |i: usize| {
        let port = ports[i].to_string();
        Server::start_native(
            Path::new(&url),
            &[
                "--index",
                &pg.url,
                "--allow-anonymous-writes",
                "--dimse-port",
                &port,
            ],
        )
    };
    let import = |files: &[PathBuf]| {
        Command::new(wado_bin())
            .args(["import", "--data", &url, "--index", &pg.url])
            .args(files)
            .output()
            .unwrap()
    };
    scenarios(&start, &import, Some(ports));
}

/// Two `wado serve` over one directory and its SQLite catalog.
#[test]
fn two_servers_over_one_directory_and_sqlite() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let ports = [free_port(), free_port()];
    let start = |i: usize| {
        let port = ports[i].to_string();
        Server::start_native(&data, &["--allow-anonymous-writes", "--dimse-port", &port])
    };
    let import = |files: &[PathBuf]| {
        Command::new(wado_bin())
            .arg("import")
            .arg("--data")
            .arg(&data)
            .args(files)
            .output()
            .unwrap()
    };
    scenarios(&start, &import, Some(ports));
    // What the store holds is what the catalog says: one generation of each instance whole
    // (superseded ones kept until their grace period ends), no object without its pair.
    let complete = check_consistent(&data);
    assert!(complete >= 64 + 16 + 48 + 60, "{complete}");
}

/// The worker under `wrangler dev` (R2 and D1), requests at once: eight clients, and one
/// SOP Instance UID in two versions at once.
#[test]
fn the_worker_with_concurrent_requests() {
    let worker = Server::start_worker(None, &[("ALLOW_ANONYMOUS_WRITES", "true")]);
    let root = worker.root();
    let dir = tempdir();
    let files: Vec<PathBuf> = (0..24)
        .map(|k| {
            instance(
                dir.path(),
                k % 3,
                &format!("{STUDY}.{}.{k}", k % 3),
                "one",
                0,
            )
        })
        .collect();
    let contested: Vec<(PathBuf, PathBuf)> = (0..6)
        .map(|k| {
            let sop = format!("{STUDY}.9.{k}");
            (
                instance(dir.path(), 9, &sop, "left", 0),
                instance(dir.path(), 9, &sop, "right", 1000),
            )
        })
        .collect();
    std::thread::scope(|s| {
        for c in 0..8 {
            let (files, root) = (&files, &root);
            s.spawn(move || {
                for f in files.iter().skip(c).step_by(8) {
                    assert_eq!(stow(root, f), 200, "{}", f.display());
                }
            });
        }
        for (a, b) in &contested {
            let root = &root;
            s.spawn(move || assert_eq!(stow(root, a), 200));
            s.spawn(move || assert_eq!(stow(root, b), 200));
        }
    });
    let seen = agree(std::slice::from_ref(&root));
    assert_eq!(seen.len(), 24 + 6);
    let sops: BTreeSet<&String> = seen.keys().collect();
    assert_eq!(sops.len(), 30);
    // Deletes beside stores: series 9 whole and every third instance of series 0, while
    // eight more instances are stored one per request.
    let more: Vec<PathBuf> = (0..8)
        .map(|k| instance(dir.path(), 4, &format!("{STUDY}.4.{k}"), "more", 0))
        .collect();
    std::thread::scope(|s| {
        for f in &more {
            let root = &root;
            s.spawn(move || assert_eq!(stow(root, f), 200, "{}", f.display()));
        }
        let root = &root;
        s.spawn(move || {
            let url = format!("{root}/studies/{STUDY}/series/{STUDY}.9");
            delete(&url);
        });
        for k in (0..24).step_by(3) {
            s.spawn(move || {
                let url =
                    format!("{root}/studies/{STUDY}/series/{STUDY}.0/instances/{STUDY}.0.{k}");
                delete(&url);
            });
        }
    });
    let seen = agree(std::slice::from_ref(&root));
    assert_eq!(seen.len(), 24 + 6 + 8 - 6 - 8);
    the_feed_tells_the_same_story(std::slice::from_ref(&root), &seen);
}
