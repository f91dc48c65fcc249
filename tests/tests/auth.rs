//! Access control end to end: `--tokens-file`, the same token on every route, CORS preflights
//! answered without credentials (browsers send none on them).
#![allow(clippy::unwrap_used)]

use wado_tests::*;

#[test]
fn tokens_file_guards_every_route_and_preflights_pass() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("emr_10frame_ele.dcm");
    assert!(import(&data, &[&file]).status.success());
    let tokens = write_temp(
        dir.path(),
        "tokens",
        b"# viewer\nviewer-token-0123456789 DCM4CHEE\n",
    );
    let server = Server::start(
        &data,
        &[
            "--tokens-file",
            tokens.to_str().unwrap(),
            "--cors-origin",
            "https://viewer.example",
        ],
    );
    let (st, se, sop) = uids(&file);
    let inst = format!("{}/studies/{st}/series/{se}/instances/{sop}", server.root());
    for url in [
        format!("{inst}/metadata"),
        format!("{inst}/frames/2"),
        format!("{inst}/bulkdata/7FE00010"),
        inst.clone(),
    ] {
        let none = get(&url, None);
        assert_eq!(none.status, 401, "{url}");
        assert!(
            none.header("www-authenticate").starts_with("Bearer"),
            "{url}"
        );
        let ok = request(
            "GET",
            &url,
            &[("authorization", "Bearer viewer-token-0123456789")],
        );
        assert_eq!(ok.status, 200, "{url}");
    }
    let pre = request(
        "OPTIONS",
        &format!("{inst}/frames/1"),
        &[
            ("origin", "https://viewer.example"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "authorization, accept"),
        ],
    );
    assert_eq!(pre.status, 204);
    assert!(pre
        .header("access-control-allow-headers")
        .to_ascii_lowercase()
        .contains("authorization"));
}

/// A token from the OpenSSL-made fixtures (tests/fixtures/jwt/make-tokens.sh).
fn jwt(name: &str) -> String {
    let text = std::fs::read_to_string(tests_dir().join("fixtures/jwt/tokens.txt")).unwrap();
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(n, _)| *n == name)
        .map(|(_, t)| t.to_owned())
        .unwrap()
}

#[test]
fn jwts_from_a_jwks_file_and_static_tokens_side_by_side() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("emr_10frame_ele.dcm");
    assert!(import(&data, &[&file]).status.success());
    let tokens = write_temp(dir.path(), "tokens", b"static-token-0123456789 *\n");
    let jwks = tests_dir().join("fixtures/jwt/jwks.json");
    let server = Server::start(
        &data,
        &[
            "--tokens-file",
            tokens.to_str().unwrap(),
            "--jwt-keys",
            jwks.to_str().unwrap(),
            "--jwt-issuer",
            "https://idp.example.org/realms/pacs",
            "--jwt-audience",
            "wado",
            // The fixtures live for decades (they are files, checked against today's clock).
            "--jwt-max-lifetime",
            "0",
        ],
    );
    let (st, se, sop) = uids(&file);
    let inst = format!("{}/studies/{st}/series/{se}/instances/{sop}", server.root());
    let bearer = |t: &str| format!("Bearer {t}");
    for url in [
        format!("{}/studies/{st}/metadata", server.root()),
        format!("{inst}/frames/2"),
        format!("{inst}/bulkdata/7FE00010"),
        inst.clone(),
    ] {
        let with = |t: &str| request("GET", &url, &[("authorization", bearer(t).as_str())]);
        for ok in [
            jwt("rs256_ok"),
            jwt("es256_ok"),
            "static-token-0123456789".into(),
        ] {
            assert_eq!(with(&ok).status, 200, "{url}");
        }
        assert_eq!(with(&jwt("rs256_other_ae")).status, 403, "{url}");
        assert_eq!(with(&jwt("rs256_no_aets")).status, 403, "{url}");
        for (name, says) in [
            ("rs256_expired", "expired"),
            ("rs256_not_yet", "not valid yet"),
            ("rs256_wrong_iss", "issuer"),
            ("rs256_wrong_aud", "audience"),
            ("rs256_tampered", "signature"),
            ("rs256_stranger", "signature"),
            ("hs256_with_public_key", "algorithm"),
            ("none", "algorithm"),
        ] {
            let r = with(&jwt(name));
            assert_eq!(r.status, 401, "{name} {url}");
            let challenge = r.header("www-authenticate");
            assert!(
                challenge.contains("error=\"invalid_token\"") && challenge.contains(says),
                "{name}: {challenge}"
            );
        }
    }
    // A bad key file stops the server at start with a reason, instead of serving unguarded.
    let weak = tests_dir().join("fixtures/jwt/weak.pub.pem");
    let out = std::process::Command::new(wado_bin())
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--bind", "127.0.0.1:0", "--jwt-keys"])
        .arg(&weak)
        .args(["--jwt-issuer", "x", "--jwt-audience", "y"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2048"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server nobody gave a writer refuses every store (403, saying how to allow it) and keeps
/// what it holds; started with `--allow-anonymous-writes` (worker: `ALLOW_ANONYMOUS_WRITES`),
/// anyone may store.
#[test]
fn writing_must_be_granted() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let held = corpus().join("ct_small_ele.dcm");
    let sent = corpus().join("mr_small_rle.dcm");
    assert!(import(&data, &[&held]).status.success());
    let store = |server: &Server| {
        std::process::Command::new(wado_bin())
            .arg("store")
            .arg(server.root())
            .arg(&sent)
            .output()
            .unwrap()
    };
    let studies = |server: &Server| {
        let r = get(&format!("{}/studies", server.root()), None);
        assert_eq!(r.status, 200);
        serde_json::from_slice::<serde_json::Value>(&r.body)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    let server = Server::start(&data, &[]);
    let out = store(&server);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("403") && err.contains("allow-anonymous-writes"),
        "{err}"
    );
    assert_eq!(studies(&server), 1, "nothing stored");
    drop(server);
    let server = Server::start(&data, &["--allow-anonymous-writes"]);
    let out = store(&server);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(studies(&server), 2);
}

/// The status code of a raw HTTP/1.1 GET of `path` naming `host`.
fn status_for_host(base: &str, path: &str, host: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// With a public URL, a request naming another host (a page whose name was made to resolve to
/// this server: DNS rebinding) is refused; the public host and `--allowed-host` names pass.
#[test]
fn with_a_public_url_other_host_names_are_refused() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("ct_small_ele.dcm");
    assert!(import(&data, &[&file]).status.success());
    let server = Server::start(
        &data,
        &[
            "--public-url",
            "https://pacs.example.org",
            "--allowed-host",
            "127.0.0.1",
        ],
    );
    let (st, _, _) = uids(&file);
    let path = format!("/dcm4chee-arc/aets/DCM4CHEE/rs/studies/{st}/metadata");
    assert_eq!(
        status_for_host(&server.base, &path, "rebound.example:80"),
        400
    );
    assert_eq!(status_for_host(&server.base, &path, "localhost"), 400);
    assert_eq!(
        status_for_host(&server.base, &path, "pacs.example.org"),
        200
    );
    assert_eq!(
        status_for_host(&server.base, &path, "PACS.example.org:443"),
        200
    );
    assert_eq!(get(&format!("{}{path}", server.base), None).status, 200);
}

/// Keys by issuer URL: a local OpenID Connect issuer (tests/oracles/oidc_issuer.py; keys made
/// by OpenSSL, tokens signed by tests/oracles/mint_jwt.py) whose keys rotate while the server
/// runs. A token of the first key works; once the issuer publishes a second key, a token
/// naming it works without a restart (picked up on the next refetch for an unknown key, at
/// most one per 10 s); the first key's tokens still work while the issuer publishes it; a
/// flood of tokens naming unknown keys costs at most one more fetch; the usual claims still
/// hold.
#[test]
fn oidc_issuer_keys_are_fetched_and_rotated_without_restart() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("emr_10frame_ele.dcm");
    assert!(import(&data, &[&file]).status.success());
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let private = dir.path().join("private");
    std::fs::create_dir_all(&private).unwrap();
    let make_key = |kid: &str| {
        let key = private.join(format!("{kid}.pem"));
        // Written whole, then renamed in: the issuer never reads half a file.
        let tmp = private.join(format!("{kid}.pub.tmp"));
        ec_key_pair(&key, &tmp);
        std::fs::rename(&tmp, keys.join(format!("{kid}.pub.pem"))).unwrap();
        key
    };
    let k1 = make_key("k1");
    let mut issuer_process = Command::new("python3")
        .arg(repo_dir().join("tests/oracles/oidc_issuer.py"))
        .arg(&keys)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut line = String::new();
    std::io::BufReader::new(issuer_process.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _issuer_guard = Kill(issuer_process);
    let issuer = line.trim().to_owned();
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");
    let mint = |key: &std::path::Path, kid: &str, aud: &str| {
        let t = unix_now();
        let claims = serde_json::json!({
            "iss": issuer, "aud": aud, "iat": t, "exp": t + 600, "aets": ["DCM4CHEE"],
        });
        mint_jwt(key, &claims, Some(kid))
    };
    let certs = || -> u64 {
        let r = get(
            &format!("{}/count", issuer.trim_end_matches("/realms/test")),
            None,
        );
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["certs"]
            .as_u64()
            .unwrap()
    };
    let server = Server::start(&data, &["--oidc-issuer", &issuer, "--jwt-audience", "wado"]);
    let (st, _, _) = uids(&file);
    let url = format!("{}/studies/{st}/metadata", server.root());
    let status = |token: &str| {
        request(
            "GET",
            &url,
            &[("authorization", &format!("Bearer {token}"))],
        )
        .status
    };
    assert_eq!(get(&url, None).status, 401);
    let t1 = mint(&k1, "k1", "wado");
    assert_eq!(status(&t1), 200, "the first key's token");
    assert_eq!(
        status(&mint(&k1, "k1", "another")),
        401,
        "audience still checked"
    );
    // Rotation: the issuer publishes a second key beside the first.
    let k2 = make_key("k2");
    let t2 = mint(&k2, "k2", "wado");
    let started = std::time::Instant::now();
    let mut last = 0;
    while started.elapsed() < std::time::Duration::from_secs(30) {
        last = status(&t2);
        if last == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(last, 200, "the new key's token, without a restart");
    assert_eq!(
        status(&t1),
        200,
        "the first key's tokens while it is published"
    );
    // Tokens naming keys the issuer never had: refused, and at most one fetch for all of them.
    let before = certs();
    for i in 0..20 {
        assert_eq!(status(&mint(&k1, &format!("made-up-{i}"), "wado")), 401);
    }
    let fetched = certs() - before;
    assert!(
        fetched <= 1,
        "{fetched} fetches of the keys for 20 unknown kids"
    );
}
