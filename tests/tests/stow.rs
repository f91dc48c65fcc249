//! STOW-RS as users send it: Python's dicomweb-client (`store_instances`), the npm
//! dicomweb-client in Chromium (`storeInstances`, cross-origin) and `wado store` store into the
//! native server and into the worker; what they stored is searchable and retrievable at once,
//! checked against pydicom and DCMTK reading the files. A STOW cut off by the client, or a
//! server killed in the middle of one, leaves every stored instance whole and the index in
//! agreement with the store.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use wado_tests::*;

fn python_client_stores(server: &Server, files: &[PathBuf]) {
    let python = repo_dir().join(".tools/s3venv/bin/python");
    assert!(python.is_file(), "run bash scripts/setup.sh");
    let out = Command::new(python)
        .arg(repo_dir().join("tests/oracles/dicomweb_client_stow.py"))
        .arg(server.root())
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dicomweb-client's store_instances:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The npm client in Chromium stores `files`; every one is then found by its own search.
fn browser_client_stores(server: &Server, files: &[PathBuf]) {
    let out = Command::new("node")
        .arg(repo_dir().join("tests/browser/dwc_store.mjs"))
        .arg(server.root())
        .args(files)
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "dwc_store.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["stored"]["ok"], true, "{got}");
    let response: Value = serde_json::from_str(got["stored"]["body"].as_str().unwrap()).unwrap();
    let stored: Vec<&str> = response["00081199"]["Value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["00081155"]["Value"][0].as_str().unwrap())
        .collect();
    let want: Vec<String> = files.iter().map(|f| uids(f).2).collect();
    assert_eq!(
        stored, want,
        "the response names each instance sent, in order"
    );
    let found: Vec<&str> = got["found"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for sop in &want {
        assert!(found.contains(&sop.as_str()), "{sop} searchable at once");
    }
}

/// `wado store` sends `files`; each is then retrievable as sent, byte for byte.
fn wado_store_sends(server: &Server, files: &[PathBuf], token: Option<&str>) {
    let mut cmd = Command::new(wado_bin());
    cmd.arg("store").arg(server.root()).args(files);
    cmd.args(["--per-request", "7"]);
    if let Some(t) = token {
        cmd.env("WADO_TOKEN", t);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "wado store: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.contains(&format!("stored {}, failed 0", files.len())),
        "{line}"
    );
    let auth = token.map(|t| format!("Bearer {t}"));
    for f in files {
        let (st, se, sop) = uids(f);
        let mut headers = vec![(
            "accept",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        )];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let r = request(
            "GET",
            &format!("{}/studies/{st}/series/{se}/instances/{sop}", server.root()),
            &headers,
        );
        assert_eq!(r.status, 200, "{}", f.display());
        assert!(
            r.parts()[0].1 == std::fs::read(f).unwrap(),
            "{}: retrieved as sent",
            f.display()
        );
    }
}

/// Files of the corpus each client sends (each client its own, so none is "unchanged").
fn corpus_thirds() -> [Vec<PathBuf>; 3] {
    let files = corpus_files();
    let mut out: [Vec<PathBuf>; 3] = Default::default();
    for (i, f) in files.into_iter().enumerate() {
        out[i % 3].push(f);
    }
    out
}

#[test]
fn clients_store_into_the_native_server() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let server = Server::start_native(&data, &["--cors-origin", "*", "--allow-anonymous-writes"]);
    let [a, b, c] = corpus_thirds();
    python_client_stores(&server, &a);
    browser_client_stores(&server, &b);
    wado_store_sends(&server, &c, None);
    // One wado fills another: the second server gets everything the first holds.
    let dir2 = tempdir();
    let second = Server::start_native(&dir2.path().join("data"), &["--allow-anonymous-writes"]);
    let all = corpus_files();
    wado_store_sends(&second, &all, None);
    let r = get(&format!("{}/instances?limit=1000", second.root()), None);
    let found: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(found.as_array().unwrap().len(), all.len());
}

#[test]
fn clients_store_into_the_worker() {
    // A 1 MiB request limit (the platform's is 100 MB): the clients' requests fit under it.
    let server = Server::start_worker(
        None,
        &[
            ("CORS_ORIGINS", "*"),
            ("MAX_STORE_MB", "1"),
            ("ALLOW_ANONYMOUS_WRITES", "true"),
        ],
    );
    let [a, b, c] = corpus_thirds();
    python_client_stores(&server, &a);
    browser_client_stores(&server, &b);
    wado_store_sends(&server, &c, None);
    // The whole corpus in one request is larger: 413, with the reason, and the worker still
    // answers afterwards.
    let all = corpus_files();
    let size: u64 = all
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(size > 1 << 20);
    let out = Command::new(wado_bin())
        .arg("store")
        .arg(server.root())
        .args(&all)
        .args(["--per-request", "1000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("413") && err.contains("at most"), "{err}");
    assert_eq!(get(&format!("{}/studies", server.root()), None).status, 200);
}

#[test]
fn storing_takes_a_write_token_natively_and_at_the_edge() {
    let dir = tempdir();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "readerreaderreader1 *\nwriterwriterwriter2 DCM4CHEE write\n",
    )
    .unwrap();
    let files: Vec<PathBuf> = corpus_files().into_iter().take(3).collect();
    let data = dir.path().join("data");
    let native = Server::start_native(&data, &["--tokens-file", tokens.to_str().unwrap()]);
    let edge = Server::start_worker(
        None,
        &[("TOKENS", &std::fs::read_to_string(&tokens).unwrap())],
    );
    for server in [&native, &edge] {
        // A reader's token is refused (403), the store unchanged.
        let out = Command::new(wado_bin())
            .arg("store")
            .arg(server.root())
            .args(&files)
            .env("WADO_TOKEN", "readerreaderreader1")
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("403"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        wado_store_sends(server, &files, Some("writerwriterwriter2"));
    }
}

/// Sends the start of a STOW-RS request (its first `cut` bytes), then goes away. The server
/// may be gone first (killed): then the writes fail, as they may.
fn stow_cut_off(root: &str, body: &[u8], boundary: &str, cut: usize) {
    let url = root.trim_start_matches("http://");
    let (host, path) = url.split_once('/').unwrap();
    let Ok(mut s) = TcpStream::connect(host) else {
        return;
    };
    let head = format!(
        "POST /{path}/studies HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/related; type=\"application/dicom\"; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(&body[..cut]))
        .and_then(|()| s.flush());
    std::thread::sleep(Duration::from_millis(50));
    drop(s);
}

fn multipart(files: &[PathBuf], boundary: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for f in files {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(&std::fs::read(f).unwrap());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// What the server holds, as a client sees it: instances found by search, and in the series
/// metadata.
fn searchable_and_listed(server: &Server, study: &str, series: &str) -> (usize, usize) {
    // The length of the JSON array a GET answers (0 when it answers no 200).
    let count = |url: String| {
        let r = get(&url, None);
        match r.status {
            200 => serde_json::from_slice::<Value>(&r.body)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            _ => 0,
        }
    };
    let root = server.root();
    (
        count(format!("{root}/studies/{study}/instances?limit=1000")),
        count(format!("{root}/studies/{study}/series/{series}/metadata")),
    )
}

#[test]
fn a_stow_cut_off_or_a_server_killed_mid_stow_leaves_the_store_consistent() {
    let dir = tempdir();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let copies = make_copies(&src, 200);
    let (st, se, _) = uids(&copies[0]);
    let boundary = "cut-off-boundary";
    let body = multipart(&copies, boundary);
    let data = dir.path().join("data");
    let mut seed = 0x9E37_79B9u32;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for round in 0..6 {
        let server = Server::start_native(&data, &["--allow-anonymous-writes"]);
        // Clients that go away mid-body: the part being sent is never stored.
        for _ in 0..3 {
            let cut = 1 + next() as usize % (body.len() - 1);
            stow_cut_off(&server.root(), &body, boundary, cut);
        }
        // What the server took whole is stored (each instance at its commit): searched and
        // listed alike, and never more than the store holds whole.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let seen = searchable_and_listed(&server, &st, &se);
            let whole = complete_instances(&data).len();
            if seen.0 == seen.1 && seen.0 <= whole {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: searchable and listed {seen:?}, stored whole {whole}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // Then the server is killed (SIGKILL) in the middle of a whole request.
        let root = server.root();
        let sender = {
            let body = body.clone();
            std::thread::spawn(move || stow_cut_off(&root, &body, boundary, body.len()))
        };
        std::thread::sleep(Duration::from_millis(u64::from(next() % 150)));
        drop(server);
        sender.join().unwrap();
        check_consistent(&data);
    }
    // A fresh server agrees with itself; objects of writes killed before their commit are
    // there but nothing names them.
    let server = Server::start_native(&data, &["--allow-anonymous-writes"]);
    check_consistent(&data);
    let (searched, listed) = searchable_and_listed(&server, &st, &se);
    assert_eq!(searched, listed);
    assert!(searched <= complete_instances(&data).len());
    // Sending everything again completes the store.
    wado_store_sends_quietly(&server, &src);
    assert_eq!(complete_instances(&data).len(), 200);
    assert_eq!(searchable_and_listed(&server, &st, &se), (200, 200));
}

fn wado_store_sends_quietly(server: &Server, dir: &Path) {
    let out = Command::new(wado_bin())
        .arg("store")
        .arg(server.root())
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A STOW-RS request holds one of the `--max-requests` slots while its body arrives: with one
/// slot, a search meanwhile is turned away (503), and answered once the STOW is done.
#[test]
fn a_stow_in_progress_counts_toward_the_request_limit() {
    use std::io::Read;
    let dir = tempdir();
    let data = dir.path().join("data");
    let server = Server::start_native(&data, &["--max-requests", "1", "--allow-anonymous-writes"]);
    let files: Vec<PathBuf> = corpus_files().into_iter().take(2).collect();
    let boundary = "limit-boundary";
    let body = multipart(&files, boundary);
    let root = server.root();
    let url = root.trim_start_matches("http://");
    let (host, path) = url.split_once('/').unwrap();
    let mut s = TcpStream::connect(host).unwrap();
    let head = format!(
        "POST /{path}/studies HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/related; type=\"application/dicom\"; boundary={boundary}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let half = body.len() / 2;
    s.write_all(&body[..half]).unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&format!("{root}/studies"), None).status, 503);
    s.write_all(&body[half..]).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(get(&format!("{root}/studies"), None).status, 200);
}

/// A JWT signed at run time (OpenSSL, `tests/oracles/mint_jwt.py`): with `write` in its
/// `scope` it may store, without it it may only read, on both frontends.
#[test]
fn a_jwt_with_the_write_scope_may_store_natively_and_at_the_edge() {
    let dir = tempdir();
    let key = dir.path().join("key.pem");
    let public = dir.path().join("public.pem");
    ec_key_pair(&key, &public);
    let mint = |scope: &str| {
        // An hour's token, as an identity provider issues them (a day at most is taken).
        let now = unix_now();
        let claims = serde_json::json!({
            "iss": "https://idp.test", "aud": "wado", "iat": now, "exp": now + 3600,
            "aets": ["DCM4CHEE"], "scope": scope,
        });
        mint_jwt(&key, &claims, None)
    };
    let (writer, reader) = (mint("openid write"), mint("openid read"));
    let files: Vec<PathBuf> = corpus_files().into_iter().skip(3).take(2).collect();
    let native = Server::start_native(
        &dir.path().join("data"),
        &[
            "--jwt-keys",
            public.to_str().unwrap(),
            "--jwt-issuer",
            "https://idp.test",
            "--jwt-audience",
            "wado",
        ],
    );
    let pem = std::fs::read_to_string(&public).unwrap();
    let edge = Server::start_worker(
        None,
        &[
            ("JWT_KEYS", pem.as_str()),
            ("JWT_ISSUER", "https://idp.test"),
            ("JWT_AUDIENCE", "wado"),
        ],
    );
    for server in [&native, &edge] {
        let out = Command::new(wado_bin())
            .arg("store")
            .arg(server.root())
            .args(&files)
            .env("WADO_TOKEN", &reader)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
        wado_store_sends(server, &files, Some(&writer));
    }
}
