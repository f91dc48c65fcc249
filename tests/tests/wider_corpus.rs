//! Issue 13, item 5: the DICOM files that ship inside public packages, imported and served,
//! every retrieve path compared with an oracle that is not us. The packages (PyPI, MIT licence;
//! installed by scripts/setup.sh into the test venv, not committed): pydicom's wheel, whose
//! `data/test_files` are the oddities pydicom's own tests need (Big Endian, Deflated, RLE of 8,
//! 16 and 32 bits, JPEG of every process, JPEG 2000 with a sign mismatch, private sequences,
//! ISO 2022 names, files without File Meta, truncated files, DICOMDIRs), and pydicom-data,
//! the larger ones it downloads on demand (multi-frame, palette, Modality LUT, every JPEG 2000
//! and JPEG-LS variant of a few images, 56 MB).
//!
//! - Every file pydicom reads with Study, Series and SOP Instance UIDs is imported (in rounds,
//!   no two files with one SOP Instance UID in a store) unless DCMTK's dcmdump fails on it
//!   (pydicom reads lazily, so a truncated file passes it) or pydicom finds one of its UIDs
//!   invalid (PS3.5 §9.1; WADO-RS addresses by UID): what wado rejects must be what a toolkit
//!   rejects.
//! - Every other file (no File Meta, no UIDs, not DICOM) is rejected, with a reason.
//! - Each imported file is compared by tests/oracles/pydicom_compare.py on every path: the
//!   instance as stored, JSON and XML metadata, bulk data, frames as stored and decoded, the
//!   instance in Explicit VR Little Endian.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use wado_tests::*;

fn venv_python() -> PathBuf {
    repo_dir().join(".tools/s3venv/bin/python")
}

/// A directory of a package in the test venv, by a Python expression.
fn venv_dir(expr: &str) -> PathBuf {
    let out = Command::new(venv_python())
        .args([
            "-c",
            &format!("import os, pydicom, data_store; print({expr})"),
        ])
        .output()
        .expect("the test venv (bash scripts/setup.sh)");
    assert!(
        out.status.success(),
        "pydicom and pydicom-data in the test venv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn oracle() -> PathBuf {
    tests_dir().join("oracles/pydicom_compare.py")
}

/// The files `wado import` rejected, from its report.
fn rejected(stderr: &str) -> Vec<(String, String)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("rejected "))
        .filter_map(|l| l.split_once(": "))
        .map(|(p, why)| (p.to_owned(), why.to_owned()))
        .collect()
}

fn dcmdump_reads(file: &Path) -> bool {
    Command::new("dcmdump")
        .arg("-q")
        .arg(file)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn pydicom_test_files_compare_with_pydicom_on_every_path() {
    compare_corpus(
        &venv_dir("os.path.join(os.path.dirname(pydicom.__file__), 'data', 'test_files')"),
        100,
    );
}

#[test]
fn pydicom_data_files_compare_with_pydicom_on_every_path() {
    compare_corpus(
        &venv_dir("os.path.join(os.path.dirname(data_store.__file__), 'data')"),
        60,
    );
}

/// Imports, serves and compares every file under `top`; at least `at_least` compared.
fn compare_corpus(top: &Path, at_least: usize) {
    let out = Command::new(venv_python())
        .arg(oracle())
        .arg("--plan")
        .arg(top)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rounds: Vec<Vec<String>> = serde_json::from_value(plan["rounds"].clone()).unwrap();
    let others: serde_json::Map<String, Value> = plan["others"].as_object().unwrap().clone();
    let invalid_uids: Vec<String> = serde_json::from_value(plan["invalid_uids"].clone()).unwrap();
    assert!(
        rounds.iter().map(Vec::len).sum::<usize>() >= at_least,
        "the package's files are there"
    );

    // What pydicom cannot read, or reads without the UIDs WADO-RS addresses by: rejected.
    let dir = tempdir();
    let paths: Vec<&Path> = others.keys().map(Path::new).collect();
    let imp = import(&dir.path().join("others"), &paths);
    let refused: Vec<String> = rejected(&String::from_utf8_lossy(&imp.stderr))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    for (p, why) in &others {
        assert!(refused.contains(p), "{p} ({why}) was imported");
    }

    let mut compared = 0;
    let mut report = Vec::new();
    for (n, files) in rounds.iter().enumerate() {
        let data = dir.path().join(format!("round{n}"));
        let paths: Vec<&Path> = files.iter().map(Path::new).collect();
        let imp = import(&data, &paths);
        let refused = rejected(&String::from_utf8_lossy(&imp.stderr));
        for (p, why) in &refused {
            if invalid_uids.contains(p) {
                // WADO-RS addresses instances by UID: one pydicom finds invalid cannot be.
                report.push(format!("rejected {p}: {why} (pydicom: an invalid UID)"));
                continue;
            }
            assert!(
                !dcmdump_reads(Path::new(p)),
                "{p}: rejected ({why}), but pydicom and DCMTK read it"
            );
            report.push(format!("rejected {p}: {why} (dcmdump fails too)"));
        }
        let served: Vec<&String> = files
            .iter()
            .filter(|f| !refused.iter().any(|(p, _)| p == *f))
            .collect();
        if served.is_empty() {
            continue;
        }
        let server = Server::start_native(&data, &[]);
        let out = Command::new(venv_python())
            .arg(oracle())
            .arg("--root")
            .arg(server.root())
            .args(&served)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!("{text}");
        assert!(
            out.status.success(),
            "round {n}: differences from pydicom\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        compared += served.len();
    }
    eprintln!("{}", report.join("\n"));
    assert!(compared >= at_least, "{compared} files compared");
}
