//! S3-compatible storage for real: a local S3 server (moto's, from PyPI) on loopback, the
//! storage conformance suite against `S3Store`, and `wado import` / `wado serve` over
//! `--data s3://...` answering exactly what they answer over a directory.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use wado_tests::*;

fn with_keys(url: &str) -> String {
    // The local server checks no signature, the client still signs: any key does. It comes
    // from the environment, as in production (a secret in the URL is refused); the `wado`
    // processes this test starts inherit it.
    for (k, v) in S3_ENV {
        std::env::set_var(k, v);
    }
    url.to_owned()
}

#[test]
fn s3_store_passes_the_storage_conformance_suite() {
    let s3 = S3Server::start("conformance");
    for prefix in ["", "some/prefix"] {
        let store =
            wado_native::s3_store::S3Store::open(&with_keys(&s3.url("conformance", prefix)))
                .unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(wado_core::store::conformance::run_all(&store));
    }
}

#[test]
fn import_and_serve_over_s3_answer_like_over_a_directory() {
    let s3 = S3Server::start("pacs");
    let url = with_keys(&s3.url("pacs", "archive"));
    let out = std::process::Command::new(wado_bin())
        .args(["import", "--data", &url])
        .arg(corpus())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("imported "),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempdir();
    let data = dir.path().join("data");
    import(&data, &[&corpus()]);
    let over_s3 = Server::start(std::path::Path::new(&url), &[]);
    let over_fs = Server::start(&data, &[]);
    let file = corpus().join("emr_10frame_ele.dcm");
    let (st, se, sop) = uids(&file);
    let rel = |s: &Server, p: &str| format!("{}/studies/{st}{p}", s.root());
    // Metadata: the same JSON, URIs aside (the two servers differ in port).
    let meta = |s: &Server| -> Value {
        let r = get(&rel(s, "/metadata"), None);
        assert_eq!(r.status, 200);
        let text = String::from_utf8(r.body).unwrap().replace(&s.base, "BASE");
        serde_json::from_str(&text).unwrap()
    };
    assert_eq!(meta(&over_s3), meta(&over_fs));
    // The instance as stored, byte for byte, and a frame through the frame index.
    let inst = format!("/series/{se}/instances/{sop}");
    let stored = get(
        &rel(&over_s3, &inst),
        Some("application/dicom; transfer-syntax=*"),
    );
    assert_eq!(stored.status, 200);
    assert_eq!(stored.body, std::fs::read(&file).unwrap());
    let frame = |s: &Server| {
        let r = get(&rel(s, &format!("{inst}/frames/7")), None);
        assert_eq!(r.status, 200);
        r.parts()
            .into_iter()
            .map(|(_, body)| body)
            .collect::<Vec<_>>()
    };
    let f = frame(&over_s3);
    assert_eq!(f.len(), 1);
    assert_eq!(f, frame(&over_fs));
    // Unknown things are still 404 over S3.
    assert_eq!(
        get(&rel(&over_s3, "/series/1.2.3/metadata"), None).status,
        404
    );
}
