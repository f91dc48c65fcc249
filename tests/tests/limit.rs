//! The request limit under real load, in a short form for CI (the full 500-client run is
//! `wado-load`, figures in the notes): beyond `--max-requests` only immediate 503s, no resets,
//! no timeouts, bounded memory.
#![allow(clippy::unwrap_used)]

use std::time::Duration;
use wado_tests::*;

#[test]
fn many_clients_against_a_small_limit_get_only_200_and_503() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let out = import(&data, &[&corpus()]);
    assert!(out.status.code().is_some());
    let server = Server::start(&data, &["--max-requests", "4"]);
    let (st, _, _) = uids(&corpus().join("study77654033_CT2_17106.dcm"));
    let url = format!("{}/studies/{st}", server.root());
    let r = load::run(
        &url,
        "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        64,
        Duration::from_secs(3),
        Duration::from_secs(20),
    );
    assert!(
        r.errors.is_empty(),
        "no resets or timeouts: {:?}",
        &r.errors[..r.errors.len().min(3)]
    );
    assert!(
        r.other.is_empty(),
        "only 200 and 503: {:?}",
        &r.other[..r.other.len().min(10)]
    );
    assert!(r.ok > 0, "some requests admitted");
    assert!(
        r.busy > 0,
        "64 clients against a limit of 4 are turned away sometimes"
    );
    let rss = load::peak_rss_kib(server.pid()).unwrap();
    assert!(rss < 200 * 1024, "server peak RSS {rss} KiB");
}

#[test]
fn the_limit_and_other_settings_come_from_a_config_file_flags_win() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("ct_small_ele.dcm");
    // Into the partition of the AE title the settings file names.
    assert!(import_args(&data, &["--ae-title", "CFG"], &[&file])
        .status
        .success());
    let cfg = write_temp(
        dir.path(),
        "wado.toml",
        b"# wado serve settings\nmax-requests = 3\nae-titles = [\"CFG\"]\nshutdown-timeout = 5\n",
    );
    let (st, _, _) = uids(&file);
    let server = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let metrics = String::from_utf8(get(&format!("{}/metrics", server.base), None).body).unwrap();
    assert!(
        metrics.lines().any(|l| l == "wado_requests_limit 3"),
        "{metrics}"
    );
    let at = |ae: &str| {
        format!(
            "{}/dcm4chee-arc/aets/{ae}/rs/studies/{st}/metadata",
            server.base
        )
    };
    assert_eq!(get(&at("CFG"), None).status, 200);
    assert_eq!(get(&at("DCM4CHEE"), None).status, 404);
    drop(server);
    let server = Server::start(
        &data,
        &["--config", cfg.to_str().unwrap(), "--max-requests", "7"],
    );
    let metrics = String::from_utf8(get(&format!("{}/metrics", server.base), None).body).unwrap();
    assert!(metrics.lines().any(|l| l == "wado_requests_limit 7"));
    // Unlimited by default.
    drop(server);
    let server = Server::start(&data, &[]);
    let metrics = String::from_utf8(get(&format!("{}/metrics", server.base), None).body).unwrap();
    assert!(metrics.lines().any(|l| l == "wado_requests_limit 0"));
    // A misspelt key stops the server with a reason rather than being ignored.
    let bad = write_temp(dir.path(), "bad.toml", b"max-request = 3\n");
    let out = std::process::Command::new(wado_bin())
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
}
