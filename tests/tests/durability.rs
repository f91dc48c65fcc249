//! Durability of a directory store, read from the kernel's side: `wado import` run under
//! `strace` (the oracle: the system calls as they happened), one file. What a power cut can
//! observe is what reached the disk, in the order it did; docs/STORAGE-LAYOUT.md's rule ("an
//! instance exists when the catalog's row names a generation whose objects the store holds")
//! only survives one if
//!
//! - each of an instance's objects (a new key, written in place: nothing reads it before the
//!   catalog names it) has its data synced,
//! - the directory is synced after both and before the catalog's commit (else the row can
//!   survive without its objects, or its objects without their names),
//! - the commit is synced (SQLite's log) before the import says "stored";
//!
//! and `--no-fsync` (a bulk load one can re-run) makes none of these calls.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use wado_tests::*;

/// (syscall, path) of the fdatasync/fsync/rename calls and of the files created (`openat` with
/// `O_CREAT`, named `create`) in an `strace -f -y` log: the path of the descriptor for the
/// syncs, the new name for a rename, the path opened for a creation.
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
            "openat" if args.contains("O_CREAT") => args.split('"').nth(1),
            _ => None,
        };
        if let Some(p) = path {
            let name = if name == "openat" { "create" } else { name };
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
        .args([
            "-f",
            "-y",
            "-e",
            "trace=fdatasync,fsync,rename,openat",
            "-o",
        ])
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
fn import_syncs_its_objects_before_the_commit_and_the_commit_before_it_ends() {
    let (calls, sop) = traced_import(&[]);
    let at = |what: &str, pred: &dyn Fn(&str) -> bool| {
        calls
            .iter()
            .position(|(n, p)| n == what && pred(p))
            .unwrap_or_else(|| panic!("no {what} matching; calls: {calls:#?}"))
    };
    let object = |suffix: &'static str| {
        let sop = sop.clone();
        move |p: &str| {
            p.contains(&format!("/{sop}-")) && p.ends_with(suffix) && !p.contains("/.tmp-")
        }
    };
    let dcm_created = at("create", &object(".dcm"));
    let index_created = at("create", &object(".index.json"));
    let dcm_synced = at("fdatasync", &object(".dcm"));
    let index_synced = at("fdatasync", &object(".index.json"));
    assert!(
        dcm_created < dcm_synced,
        "the .dcm's data synced once written"
    );
    assert!(index_created < index_synced, "and the index's");
    assert!(
        !calls
            .iter()
            .any(|(n, p)| n == "rename" && p.contains(&format!("/{sop}-"))),
        "an instance's objects are written in place: {calls:#?}"
    );
    let synced = dcm_synced.max(index_synced);
    let dir_synced = calls
        .iter()
        .enumerate()
        .position(|(i, (n, p))| i > synced && n == "fsync" && p.ends_with("/instances"))
        .unwrap_or_else(|| panic!("the directory synced after both objects: {calls:#?}"));
    let committed = calls
        .iter()
        .enumerate()
        .position(|(i, (n, p))| {
            i > dir_synced
                && (n == "fsync" || n == "fdatasync")
                && p.ends_with("wado-index.sqlite-wal")
        })
        .unwrap_or_else(|| panic!("the catalog's commit synced after the objects: {calls:#?}"));
    assert!(committed > dir_synced);
}

#[test]
fn no_fsync_makes_no_sync_calls() {
    let (calls, sop) = traced_import(&["--no-fsync"]);
    assert!(calls
        .iter()
        .any(|(n, p)| n == "create" && p.contains(&format!("/{sop}-")) && p.ends_with(".dcm")));
    assert!(
        calls.iter().all(|(n, _)| n == "rename" || n == "create"),
        "{calls:#?}"
    );
}
