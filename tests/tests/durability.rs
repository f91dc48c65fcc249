//! Durability of a directory store, read from the kernel's side: `wado import` run under
//! `strace` (the oracle: the system calls as they happened), one file. What a power cut can
//! observe is what reached the disk, in the order it did; docs/STORAGE-LAYOUT.md's rule ("an
//! instance exists when its `.dcm` exists and its index names that file") only survives one if
//!
//! - each temporary file's data is synced before it is renamed over its key (else the name can
//!   survive over an empty file),
//! - the directory is synced after the `.dcm`'s rename and before the index's (else the index
//!   can survive without its file), and after the index's (else the import said "stored" too
//!   early);
//!
//! and `--no-fsync` (a bulk load one can re-run) makes none of these calls.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use wado_tests::*;

/// (syscall, path) of the fdatasync/fsync/rename calls in an `strace -f -y` log: the path of
/// the descriptor for the syncs, the new name for a rename.
fn calls(trace: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in trace.lines() {
        let Some(rest) = line.split_once(' ').map(|(_, r)| r.trim_start()) else {
            continue;
        };
        let Some((name, args)) = rest.split_once('(') else {
            continue;
        };
        let path = match name {
            "fdatasync" | "fsync" => args
                .split_once('<')
                .and_then(|(_, p)| p.split_once('>'))
                .map(|(p, _)| p),
            "rename" => args.split(", ").nth(1).and_then(|p| p.split('"').nth(1)),
            _ => None,
        };
        if let Some(p) = path {
            out.push((name.to_owned(), p.to_owned()));
        }
    }
    out
}

fn traced_import(extra: &[&str]) -> (Vec<(String, String)>, String) {
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("ct_small_ele.dcm");
    let trace = dir.path().join("trace");
    let out = Command::new("strace")
        .args(["-f", "-y", "-e", "trace=fdatasync,fsync,rename", "-o"])
        .arg(&trace)
        .arg(wado_bin())
        .args(["import", "--data"])
        .arg(&data)
        .args(extra)
        .arg(&file)
        .output()
        .expect("strace (apt package strace; scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, _, sop) = uids(&file);
    (calls(&std::fs::read_to_string(&trace).unwrap()), sop)
}

#[test]
fn import_syncs_each_file_before_its_rename_and_the_directory_between_dcm_and_index() {
    let (calls, sop) = traced_import(&[]);
    let at = |what: &str, pred: &dyn Fn(&str) -> bool| {
        calls
            .iter()
            .position(|(n, p)| n == what && pred(p))
            .unwrap_or_else(|| panic!("no {what} matching; calls: {calls:#?}"))
    };
    let dcm = format!("/{sop}.dcm");
    let index = format!("/{sop}.index.json");
    let dcm_renamed = at("rename", &|p| p.ends_with(&dcm));
    let index_renamed = at("rename", &|p| p.ends_with(&index));
    let dcm_synced = at("fdatasync", &|p| p.contains(&format!("/.tmp-{sop}.dcm-")));
    let index_synced = at("fdatasync", &|p| {
        p.contains(&format!("/.tmp-{sop}.index.json-"))
    });
    assert!(
        dcm_synced < dcm_renamed,
        "the .dcm's data is on disk before its name"
    );
    assert!(
        dcm_renamed < index_renamed,
        "the .dcm first, the index last"
    );
    assert!(index_synced < index_renamed);
    let dir_syncs: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, (n, p))| n == "fsync" && p.ends_with("/instances"))
        .map(|(i, _)| i)
        .collect();
    assert!(
        dir_syncs
            .iter()
            .any(|&i| dcm_renamed < i && i < index_renamed),
        "the directory is synced between the .dcm's rename and the index's: {calls:#?}"
    );
    assert!(
        dir_syncs.iter().any(|&i| i > index_renamed),
        "and after the index's"
    );
}

#[test]
fn no_fsync_makes_no_sync_calls() {
    let (calls, sop) = traced_import(&["--no-fsync"]);
    assert!(calls
        .iter()
        .any(|(n, p)| n == "rename" && p.ends_with(&format!("/{sop}.dcm"))));
    assert!(calls.iter().all(|(n, _)| n == "rename"), "{calls:#?}");
}
