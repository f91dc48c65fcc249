//! The lesser points of issue 12, against the native server: what belongs to no AE title
//! (`/`, `/metrics`) takes a token when access control is on, `/health` stays open for load
//! balancers, and every DICOMweb response says `X-Content-Type-Options: nosniff`.
#![allow(clippy::unwrap_used)]

use wado_tests::*;

#[test]
fn metrics_and_index_take_a_token_when_access_control_is_on() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("ct_small_ele.dcm");
    assert!(import(&data, &[&file]).status.success());
    let tokens = write_temp(dir.path(), "tokens", b"viewer-token-0123456789 OTHER\n");
    let server = Server::start_native(&data, &["--tokens-file", tokens.to_str().unwrap()]);
    for path in ["/", "/metrics"] {
        let url = format!("{}{path}", server.base);
        let r = get(&url, None);
        assert_eq!(r.status, 401, "{path}");
        assert!(r.header("www-authenticate").starts_with("Bearer"), "{path}");
        let r = request(
            "GET",
            &url,
            &[("authorization", "Bearer not-a-token-of-ours")],
        );
        assert_eq!(r.status, 401, "{path}");
        // Any valid token will do, whatever AE titles it may read.
        let r = request(
            "GET",
            &url,
            &[("authorization", "Bearer viewer-token-0123456789")],
        );
        assert_eq!(r.status, 200, "{path}");
    }
    assert_eq!(get(&format!("{}/health", server.base), None).status, 200);
    // A DICOMweb answer (here a 401) is never to be sniffed.
    let (st, _, _) = uids(&file);
    let r = get(&format!("{}/studies/{st}/metadata", server.root()), None);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-content-type-options"), "nosniff");
}

#[test]
fn responses_are_never_sniffed() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("ct_small_ele.dcm");
    assert!(import(&data, &[&file]).status.success());
    let server = Server::start(&data, &[]);
    let (st, _, _) = uids(&file);
    let r = get(&format!("{}/studies/{st}/metadata", server.root()), None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-content-type-options"), "nosniff");
}

/// A stored file truncated in place (`cp` over it, `rsync --inplace`) fails the requests that
/// read it, with a client-readable status, and nothing else: no signal kills the server (reads
/// are plain reads, not a memory map), and the file written back whole serves again.
#[test]
fn a_file_truncated_under_the_server_fails_its_requests_only() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("ecg_waveform.dcm");
    assert!(import(&data, &[&file]).status.success());
    let (st, se, sop) = uids(&file);
    let stored = data.join(format!("studies/{st}/series/{se}/instances/{sop}.dcm"));
    let server = Server::start_native(&data, &[]);
    let url = format!("{}/studies/{st}/series/{se}/instances/{sop}", server.root());
    let whole = get(&url, Some("application/dicom"));
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, std::fs::read(&file).unwrap());
    let len = std::fs::metadata(&stored).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&stored)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    for u in [url.clone(), format!("{url}/bulkdata/54000100/1/54001010")] {
        let r = get(&u, None);
        assert_eq!(r.status, 404, "{u}: {}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(get(&format!("{}/health", server.base), None).status, 200);
    std::fs::copy(&file, &stored).unwrap();
    let again = get(&url, Some("application/dicom"));
    assert_eq!(again.status, 200);
    assert_eq!(again.body, whole.body);
}
