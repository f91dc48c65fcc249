//! Crash safety: `wado import` killed with SIGKILL at random moments leaves every generation
//! of an instance complete (its `.dcm` matches the size and SHA-256 its index names) or never
//! named by the catalog (then possibly cut short: objects are written in place, and named only
//! once whole); a re-import then completes, and a freshly started server serves everything.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;
use wado_tests::*;

#[test]
fn import_killed_at_random_moments_leaves_a_consistent_store() {
    let dir = tempdir();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let copies = make_copies(&src, 300);
    let src_dir = copies[0].parent().unwrap().to_path_buf();
    let data = dir.path().join("data");
    let mut seed = 0x2545_F491u32;
    let mut kills = 0;
    for round in 0..10 {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let delay = Duration::from_millis(u64::from(seed % 400));
        let mut child = Command::new(wado_bin())
            .args(["import", "--data"])
            .arg(&data)
            .arg(&src_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        check_consistent(&data);
        let n = complete_instances(&data).len();
        assert!(n <= 300, "round {round}: {n} instances");
    }
    assert!(
        kills >= 3,
        "the import was killed mid-way at least a few times ({kills})"
    );
    // A re-import completes the store.
    let out = import(&data, &[&src_dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_consistent(&data);
    assert_eq!(complete_instances(&data).len(), 300);
    // A freshly started server serves all of them.
    let server = Server::start(&data, &[]);
    let (st, se, _) = uids(&copies[0]);
    let r = get(
        &format!("{}/studies/{st}/series/{se}/metadata", server.root()),
        None,
    );
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 300);
    let r = get(
        &format!("{}/studies/{st}/series/{se}", server.root()),
        Some("multipart/related; type=\"application/dicom\"; transfer-syntax=*"),
    );
    assert_eq!(r.parts().len(), 300);
}

#[test]
fn files_sharing_a_sop_instance_uid_in_one_import_never_mix() {
    // Twelve different files with one SOP Instance UID (Patient ID changed, same length), in
    // one run: the importer works on several files at once, and the stored file must always
    // be one of them whole, with its own index (a race found by the JPEG-LS tests).
    let dir = tempdir();
    let src = std::fs::read(corpus().join("ct_small_ele.dcm")).unwrap();
    let id = dcmdump_value(&corpus().join("ct_small_ele.dcm"), "PatientID");
    assert!(!id.is_empty());
    let variants: Vec<Vec<u8>> = (0..12)
        .map(|i| {
            let new_id = format!("{:0width$}", i, width = id.len());
            let at = src
                .windows(id.len())
                .position(|w| w == id.as_bytes())
                .unwrap();
            let mut b = src.clone();
            b[at..at + id.len()].copy_from_slice(new_id.as_bytes());
            b
        })
        .collect();
    let files: Vec<std::path::PathBuf> = variants
        .iter()
        .enumerate()
        .map(|(i, b)| write_temp(dir.path(), &format!("v{i:02}.dcm"), b))
        .collect();
    let stores = tempdir();
    // Without the importer's per-SOP turn-taking, about one round in three mixes them.
    for round in 0..8 {
        let data = stores.path().join(format!("data{round}"));
        let out = import(&data, &[dir.path()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        check_consistent(&data);
        assert_eq!(complete_instances(&data).len(), 1, "one instance");
        // The one the catalog names is one of the inputs, whole.
        let (st, se, sop) = uids(&files[0]);
        let server = Server::start_native(&data, &[]);
        let r = get(
            &format!("{}/studies/{st}/series/{se}/instances/{sop}", server.root()),
            Some("multipart/related; type=\"application/dicom\"; transfer-syntax=*"),
        );
        assert_eq!(r.status, 200);
        let stored = r.parts()[0].1.clone();
        assert!(
            variants.contains(&stored),
            "the stored file is one of the inputs, whole"
        );
    }
}
