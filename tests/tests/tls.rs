//! HTTPS end to end: a certificate made in the test, `wado serve --tls-cert --tls-key`, and
//! curl (an independent TLS client) trusting only that certificate.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use wado_tests::*;

#[test]
fn https_with_a_generated_certificate() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("ct_small_ele.dcm");
    assert!(import(&data, &[&file]).status.success());
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = write_temp(dir.path(), "cert.pem", ck.cert.pem().as_bytes());
    let key = write_temp(
        dir.path(),
        "key.pem",
        ck.signing_key.serialize_pem().as_bytes(),
    );
    let server = Server::start(
        &data,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let port = server.base.rsplit(':').next().unwrap();
    let (st, se, sop) = uids(&file);
    let url = format!("https://127.0.0.1:{port}/dcm4chee-arc/aets/DCM4CHEE/rs/studies/{st}/series/{se}/instances/{sop}");
    // Metadata over TLS, the certificate verified against the one made here.
    let out = run(Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(&cert)
        .arg(format!("{url}/metadata")));
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0]["00080018"]["Value"][0], sop.as_str());
    let uri = v[0]["7FE00010"]["BulkDataURI"].as_str().unwrap();
    assert!(
        uri.starts_with(&format!("https://127.0.0.1:{port}/")),
        "absolute https URIs: {uri}"
    );
    // The instance byte for byte.
    let body = run(Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "-H",
            "Accept: application/dicom",
            "--cacert",
        ])
        .arg(&cert)
        .arg(&url));
    assert_eq!(body, std::fs::read(&file).unwrap());
    // Without trusting the certificate, curl refuses; plain HTTP on the TLS port gets no answer.
    let untrusted = Command::new("curl")
        .args(["-sS", "--fail"])
        .arg(format!("{url}/metadata"))
        .output()
        .unwrap();
    assert!(!untrusted.status.success());
    let plain = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/health"))
        .output()
        .unwrap();
    assert!(!plain.status.success());
}
