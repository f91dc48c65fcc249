//! A real client: Python's dicomweb-client (PyPI, unmodified; installed by scripts/setup.sh)
//! searches the native server and the worker with QIDO-RS (paging, wildcards, ranges, UID
//! matching, series and instances, includefield) and follows to the metadata; every answer is
//! checked against pydicom reading the files themselves (`tests/oracles/dicomweb_client_qido.py`).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use wado_tests::*;

fn imported() -> (tempfile::TempDir, PathBuf) {
    let dir = tempdir();
    let data = dir.path().join("data");
    let files = corpus_files();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = import(&data, &refs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, data)
}

fn searches_as_pydicom_reads_the_files(server: &Server) {
    let python = repo_dir().join(".tools/s3venv/bin/python");
    assert!(python.is_file(), "run bash scripts/setup.sh");
    let out = Command::new(python)
        .arg(repo_dir().join("tests/oracles/dicomweb_client_qido.py"))
        .arg(server.root())
        .arg(corpus())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dicomweb-client's searches differ from the files:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dicomweb_client_searches_the_native_server() {
    let (_dir, data) = imported();
    searches_as_pydicom_reads_the_files(&Server::start_native(&data, &[]));
}

#[test]
fn dicomweb_client_searches_the_worker() {
    let (_dir, data) = imported();
    searches_as_pydicom_reads_the_files(&Server::start_worker(Some(&data), &[]));
}
