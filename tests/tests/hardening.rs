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
    let (stored, _) = stored_paths(&data, &st, &se, &sop);
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
    // The catalog names a file the store no longer holds whole: a server error, logged.
    for u in [url.clone(), format!("{url}/bulkdata/54000100/1/54001010")] {
        let r = get(&u, None);
        assert_eq!(r.status, 500, "{u}: {}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(get(&format!("{}/health", server.base), None).status, 200);
    std::fs::copy(&file, &stored).unwrap();
    let again = get(&url, Some("application/dicom"));
    assert_eq!(again.status, 200);
    assert_eq!(again.body, whole.body);
}

/// The crafted files of issue 12, under a memory limit (`prlimit --as`, 1 GiB of address space,
/// where an allocation the size these files ask for fails and Rust aborts the process): import
/// refuses them with a reason and exits normally; and indexes crafted to claim what the files
/// asked (4294967295 frames; a geometry whose size overflows 64 bits), put in the store past
/// the import as an older wado or another writer could have, make requests fail or answer what
/// is there, and never kill the server. On the main before issue 12: "memory allocation of
/// 17179869180 bytes failed", and every client disconnected.
#[test]
fn crafted_files_under_a_memory_limit_never_kill_the_server() {
    const LIMIT: &str = "--as=1073741824";
    let dir = tempdir();
    let data = dir.path().join("data");
    let malformed = corpus().join("malformed");
    for name in [
        "crafted_jpegls_frames_4294967295.dcm",
        "crafted_native_frames_overflow_64bit.dcm",
    ] {
        let out = std::process::Command::new("prlimit")
            .arg(LIMIT)
            .arg(wado_bin())
            .args(["import", "--data"])
            .arg(&data)
            .arg(malformed.join(name))
            .output()
            .expect("prlimit (util-linux)");
        assert_eq!(out.status.code(), Some(1), "{name}: refused, not killed");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("rejected"), "{name}: {err}");
    }
    let jls = corpus().join("mr_small_jpegls_lossless.dcm");
    let native = corpus().join("ct_small_ele.dcm");
    assert!(import(&data, &[&jls, &native]).status.success());
    let craft = |file: &std::path::Path, edit: &dyn Fn(&mut serde_json::Value)| {
        let (st, se, sop) = uids(file);
        let (_, key) = stored_paths(&data, &st, &se, &sop);
        let mut idx: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&key).unwrap()).unwrap();
        edit(&mut idx);
        std::fs::write(&key, serde_json::to_vec(&idx).unwrap()).unwrap();
        format!("studies/{st}/series/{se}/instances/{sop}")
    };
    let jls_path = craft(&jls, &|i| i["pixel"]["number_of_frames"] = u32::MAX.into());
    let native_path = craft(&native, &|i| {
        let p = &mut i["pixel"];
        p["rows"] = 65535.into();
        p["columns"] = 65535.into();
        p["samples_per_pixel"] = 3.into();
        p["bits_allocated"] = 32.into();
        p["number_of_frames"] = u32::MAX.into();
    });
    // The server, limited, in its own process group so the limit is its alone.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new("prlimit")
        .arg(LIMIT)
        .arg(wado_bin())
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--data"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the server starts");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let root = format!("{base}/dcm4chee-arc/aets/DCM4CHEE/rs");
    let asks: &[(&str, &str)] = &[
        (
            "pixeldata",
            "multipart/related; type=application/octet-stream; transfer-syntax=*",
        ),
        (
            "frames/1",
            "multipart/related; type=application/octet-stream; transfer-syntax=*",
        ),
        (
            "frames/1",
            "multipart/related; type=application/octet-stream",
        ),
        (
            "frames/1,2,3,4294967295",
            "multipart/related; type=application/octet-stream; transfer-syntax=*",
        ),
        ("frames/1", "multipart/related; type=\"image/jls\""),
        ("frames/1", "multipart/related; type=\"image/jp2\""),
        (
            "",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1",
        ),
        (
            "",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.5",
        ),
        (
            "",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        ),
        ("metadata", "application/dicom+json"),
    ];
    for path in [&jls_path, &native_path] {
        for (tail, accept) in asks {
            let url = if tail.is_empty() {
                format!("{root}/{path}")
            } else {
                format!("{root}/{path}/{tail}")
            };
            let r = request("GET", &url, &[("accept", accept)]);
            eprintln!("{} {url} [{accept}]", r.status);
            assert!(r.status != 0, "{url} [{accept}]: answered");
            assert!(
                matches!(child.try_wait(), Ok(None)),
                "the server is alive after {url} [{accept}] (status {})",
                r.status
            );
        }
    }
    assert_eq!(get(&format!("{base}/health"), None).status, 200);
    let _ = child.kill();
    let _ = child.wait();
}
