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

/// A grant narrower than an AE title (issue 26): a token whose `studies` claim names one study
/// reaches that study alone on every route — searches at every level return only it; the
/// other study's metadata, instances, frames, rendered images, thumbnails, bulk data, zip and
/// searches within it answer exactly as a study that was never stored (status and body: no
/// existence leak); STOW-RS of the other study's instance fails with Refused: Not Authorized
/// and a DELETE of it answers as a missing study, both leaving it whole; the change feed,
/// which tells of every study, is refused. Permissions come from the identity provider's roles
/// mapped by `--jwt-roles` (worker `JWT_ROLES`): a reader may not store or delete, a token with
/// no mapped role may not read. Tokens are minted at run time by OpenSSL (mint_jwt.py).
#[test]
fn a_grant_for_one_study_confines_every_route() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let x_file = corpus().join("ct_small_ele.dcm");
    let y_file = corpus().join("mr_small_rle.dcm");
    assert!(import(&data, &[&x_file, &y_file]).status.success());
    let (x, x_se, x_i) = uids(&x_file);
    let (y, y_se, y_i) = uids(&y_file);
    assert_ne!(x, y, "two studies");
    const FAKE: &str = "1.2.826.0.1.3680043.2.1125.424242";
    let key = dir.path().join("key.pem");
    let public = dir.path().join("public.pem");
    ec_key_pair(&key, &public);
    let server = Server::start(
        &data,
        &[
            "--jwt-keys",
            public.to_str().unwrap(),
            "--jwt-issuer",
            "https://idp.test",
            "--jwt-audience",
            "wado",
            "--jwt-roles",
            "viewer=read;editor=read,write,delete",
            "--jwt-roles-claim",
            "realm_access.roles",
        ],
    );
    let mint = |roles: &[&str], studies: Option<&[&str]>| {
        let now = unix_now();
        let mut claims = serde_json::json!({
            "iss": "https://idp.test", "aud": "wado", "iat": now, "exp": now + 3600,
            "aets": ["DCM4CHEE"], "realm_access": {"roles": roles},
        });
        if let Some(list) = studies {
            claims["studies"] = serde_json::json!(list);
        }
        mint_jwt(&key, &claims, None)
    };
    let confined = mint(&["editor"], Some(&[x.as_str()]));
    let reader = mint(&["viewer"], None);
    let nobody = mint(&["nurse"], None);
    let root = server.root();
    let call = |method: &str, url: &str, token: &str, accept: Option<&str>| {
        let bearer = format!("Bearer {token}");
        let mut headers = vec![("authorization", bearer.as_str())];
        if let Some(a) = accept {
            headers.push(("accept", a));
        }
        request(method, url, &headers)
    };
    // Every kind of retrieval and the searches within one study.
    let urls = |st: &str, se: &str, i: &str| -> Vec<(String, Option<&'static str>)> {
        let s = format!("{root}/studies/{st}");
        let inst = format!("{s}/series/{se}/instances/{i}");
        vec![
            (format!("{s}/metadata"), None),
            (format!("{s}/series/{se}/metadata"), None),
            (format!("{inst}/metadata"), None),
            (
                inst.clone(),
                Some("multipart/related; type=\"application/dicom\""),
            ),
            (format!("{inst}/frames/1"), None),
            (format!("{inst}/rendered"), Some("image/jpeg")),
            (format!("{inst}/thumbnail"), Some("image/jpeg")),
            (format!("{inst}/bulkdata/7FE00010"), None),
            (s.clone(), Some("application/zip")),
            (format!("{s}/series"), None),
            (format!("{s}/series/{se}/instances"), None),
            (format!("{s}/instances"), None),
        ]
    };
    for (url, accept) in urls(&x, &x_se, &x_i) {
        assert_eq!(call("GET", &url, &confined, accept).status, 200, "{url}");
    }
    for ((url, accept), (fake, _)) in urls(&y, &y_se, &y_i)
        .into_iter()
        .zip(urls(FAKE, &y_se, &y_i))
    {
        assert_eq!(call("GET", &url, &reader, accept).status, 200, "{url}");
        let out_of_reach = call("GET", &url, &confined, accept);
        let absent = call("GET", &fake, &confined, accept);
        assert_eq!(out_of_reach.status, absent.status, "{url}");
        assert!(
            matches!(absent.status, 200 | 204 | 404),
            "{fake}: {}",
            absent.status
        );
        assert_eq!(
            String::from_utf8_lossy(&out_of_reach.body).replace(y.as_str(), FAKE),
            String::from_utf8_lossy(&absent.body),
            "{url}"
        );
    }
    // Searches at every level: the reader sees both studies, the confined token one.
    let found = |url: &str, token: &str, tag: &str| -> std::collections::BTreeSet<String> {
        let r = call("GET", url, token, Some("application/dicom+json"));
        assert!(matches!(r.status, 200 | 204), "{url}: {}", r.status);
        if r.status == 204 {
            return Default::default();
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| d[tag]["Value"][0].as_str().unwrap().to_owned())
            .collect()
    };
    let both: std::collections::BTreeSet<String> = [x.clone(), y.clone()].into();
    let study_uid = "0020000D";
    for level in ["studies", "series", "instances"] {
        let url = format!("{root}/{level}?includefield=StudyInstanceUID");
        assert_eq!(found(&url, &reader, study_uid), both, "{level}");
        assert_eq!(
            found(&url, &confined, study_uid),
            [x.clone()].into(),
            "{level}"
        );
        let asked = format!("{root}/{level}?StudyInstanceUID={y}");
        assert!(found(&asked, &confined, study_uid).is_empty(), "{asked}");
        let asked = format!("{root}/{level}?StudyInstanceUID={x},{y}");
        assert_eq!(
            found(&asked, &confined, study_uid),
            [x.clone()].into(),
            "{asked}"
        );
    }
    assert_eq!(
        found(&format!("{root}/series"), &confined, "0020000E"),
        [x_se.clone()].into()
    );
    // No mapped role: nothing.
    assert_eq!(
        call("GET", &format!("{root}/studies"), &nobody, None).status,
        403
    );
    // STOW-RS: the other study's instance is refused (0124H) and stays as it was; this
    // study's is stored; a reader may not store; a path naming the other study is refused.
    let stow = |url: &str, token: &str, file: &std::path::Path| {
        let mut body = b"--B\r\nContent-Type: application/dicom\r\n\r\n".to_vec();
        body.extend_from_slice(&std::fs::read(file).unwrap());
        body.extend_from_slice(b"\r\n--B--\r\n");
        let bearer = format!("Bearer {token}");
        request_with_body(
            "POST",
            url,
            &[
                ("authorization", bearer.as_str()),
                (
                    "content-type",
                    "multipart/related; type=\"application/dicom\"; boundary=B",
                ),
                ("accept", "application/dicom+json"),
            ],
            &body,
        )
    };
    let y_metadata = format!("{root}/studies/{y}/series/{y_se}/instances/{y_i}/metadata");
    let before = call("GET", &y_metadata, &reader, None).body;
    let r = stow(&format!("{root}/studies"), &confined, &y_file);
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["00081198"]["Value"][0]["00081197"]["Value"][0], 0x0124,
        "{v}"
    );
    assert_eq!(call("GET", &y_metadata, &reader, None).body, before);
    let r = stow(&format!("{root}/studies"), &confined, &x_file);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        stow(&format!("{root}/studies"), &reader, &x_file).status,
        403
    );
    assert_eq!(
        stow(&format!("{root}/studies/{y}"), &confined, &y_file).status,
        403
    );
    // DELETE: the other study answers as a missing one and stays; a reader may not delete;
    // the confined token deletes within its study.
    let gone = call("DELETE", &format!("{root}/studies/{y}"), &confined, None);
    let absent = call("DELETE", &format!("{root}/studies/{FAKE}"), &confined, None);
    assert_eq!((gone.status, absent.status), (404, 404));
    assert_eq!(
        String::from_utf8_lossy(&gone.body).replace(y.as_str(), FAKE),
        String::from_utf8_lossy(&absent.body)
    );
    assert_eq!(call("GET", &y_metadata, &reader, None).body, before);
    assert_eq!(
        call("DELETE", &format!("{root}/studies/{x}"), &reader, None).status,
        403
    );
    let x_inst = format!("{root}/studies/{x}/series/{x_se}/instances/{x_i}");
    assert_eq!(call("DELETE", &x_inst, &confined, None).status, 204);
    assert_eq!(
        call("GET", &format!("{x_inst}/metadata"), &reader, None).status,
        404
    );
    // The change feed tells of every study: not for a confined token.
    assert_eq!(
        call("GET", &format!("{root}/changefeed"), &confined, None).status,
        403
    );
    assert_eq!(
        call("GET", &format!("{root}/changefeed"), &reader, None).status,
        200
    );
}

/// Share links (issue 26 step 3): `wado share-key` makes a key, `wado share` a link's token
/// (and `POST .../studies/{s}/share` one for a writer); the token reads its study and nothing
/// else (other studies answer as absent, searches list its study alone), may not store or
/// delete unless made with write, and stops working when its id is revoked; a link cannot make
/// links. On the native server and, with WADO_TARGET=edge, the worker.
#[test]
fn share_links_read_their_study_and_nothing_else() {
    use std::process::Command;
    let dir = tempdir();
    let data = dir.path().join("data");
    let x_file = corpus().join("ct_small_ele.dcm");
    let y_file = corpus().join("mr_small_rle.dcm");
    assert!(import(&data, &[&x_file, &y_file]).status.success());
    let (x, x_se, x_i) = uids(&x_file);
    let (y, y_se, y_i) = uids(&y_file);
    let key_line = run_ok(Command::new(wado_bin()).args(["share-key", "--kid", "k7"])).stdout;
    let keys = write_temp(dir.path(), "share-keys", &key_line);
    let share = |study: &str, extra: &[&str]| -> (String, String, String) {
        let out = run_ok(
            Command::new(wado_bin())
                .args(["share", study, "--share-keys"])
                .arg(&keys)
                .args(["--viewer", "http://viewer.test/ohif/"])
                .args(extra),
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("no {name} in {text}"))
                .to_owned()
        };
        (field("token"), field("id"), field("link"))
    };
    let (revoked_token, revoked_id, _) = share(&x, &["--expires", "1h"]);
    let (link_token, _, link) = share(&x, &["--expires", "2h"]);
    assert_eq!(
        link,
        format!("http://viewer.test/ohif/viewer?StudyInstanceUIDs={x}&token={link_token}")
    );
    let revoked = write_temp(dir.path(), "revoked", format!("{revoked_id}\n").as_bytes());
    let tokens = write_temp(
        dir.path(),
        "tokens",
        b"writerwriterwriter1 DCM4CHEE write\nreaderreaderreader2 DCM4CHEE\n",
    );
    let server = Server::start(
        &data,
        &[
            "--tokens-file",
            tokens.to_str().unwrap(),
            "--share-keys",
            keys.to_str().unwrap(),
            "--share-revoked",
            revoked.to_str().unwrap(),
            "--share-viewer",
            "http://viewer.test/ohif",
        ],
    );
    let root = server.root();
    let call = |method: &str, url: &str, token: &str| {
        request(
            method,
            url,
            &[("authorization", &format!("Bearer {token}"))],
        )
    };
    let x_meta = format!("{root}/studies/{x}/series/{x_se}/instances/{x_i}/metadata");
    let y_meta = format!("{root}/studies/{y}/series/{y_se}/instances/{y_i}/metadata");
    let fake_meta = format!("{root}/studies/1.2.3.4.5.6/series/{y_se}/instances/{y_i}/metadata");
    assert_eq!(call("GET", &x_meta, &link_token).status, 200);
    let (other, absent) = (
        call("GET", &y_meta, &link_token),
        call("GET", &fake_meta, &link_token),
    );
    assert_eq!((other.status, absent.status), (404, 404));
    assert_eq!(
        String::from_utf8_lossy(&other.body).replace(y.as_str(), "1.2.3.4.5.6"),
        String::from_utf8_lossy(&absent.body)
    );
    let r = call("GET", &format!("{root}/studies"), &link_token);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let listed: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["0020000D"]["Value"][0].as_str().unwrap())
        .collect();
    assert_eq!(listed, [x.as_str()]);
    // Read only: no delete, no store, no change feed.
    assert_eq!(
        call("DELETE", &format!("{root}/studies/{x}"), &link_token).status,
        403
    );
    assert_eq!(
        call("GET", &format!("{root}/changefeed"), &link_token).status,
        403
    );
    let r = call("GET", &x_meta, &revoked_token);
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate").contains("revoked"),
        "{}",
        r.header("www-authenticate")
    );
    // A tampered token (another study in the same signature) is refused.
    let forged = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (payload, sig) = link_token["ws1.".len()..].split_once('.').unwrap();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
        claims["study"] = y.clone().into();
        format!("ws1.{}.{sig}", b64.encode(claims.to_string()))
    };
    assert_eq!(call("GET", &y_meta, &forged).status, 401);
    // Made over HTTP by a writer: a link that may store into its study, and only there.
    let made = call(
        "POST",
        &format!("{root}/studies/{x}/share?expires=2h&write=true"),
        "writerwriterwriter1",
    );
    assert_eq!(made.status, 201, "{}", String::from_utf8_lossy(&made.body));
    assert!(made.header("cache-control").contains("no-store"));
    let made: serde_json::Value = serde_json::from_slice(&made.body).unwrap();
    let writer_link = made["token"].as_str().unwrap().to_owned();
    assert_eq!(made["studyInstanceUID"], x.as_str());
    assert!(made["url"].as_str().unwrap().starts_with(&format!(
        "http://viewer.test/ohif/viewer?StudyInstanceUIDs={x}&token=ws1."
    )));
    let stored = |token: &str, file: &std::path::Path| {
        Command::new(wado_bin())
            .arg("store")
            .arg(&root)
            .arg(file)
            .env("WADO_TOKEN", token)
            .output()
            .unwrap()
    };
    assert!(stored(&writer_link, &x_file).status.success());
    assert!(!stored(&writer_link, &y_file).status.success());
    assert!(!stored(&link_token, &x_file).status.success());
    assert_eq!(
        call("GET", &y_meta, "readerreaderreader2").status,
        200,
        "y kept"
    );
    // Who may make links: a writer, for a stored study; not a reader, not a link.
    for (token, study, want) in [
        ("readerreaderreader2", x.as_str(), 403),
        (link_token.as_str(), x.as_str(), 403),
        (writer_link.as_str(), x.as_str(), 403),
        ("writerwriterwriter1", "1.2.3.4.5.6", 404),
    ] {
        let r = call("POST", &format!("{root}/studies/{study}/share"), token);
        assert_eq!(r.status, want, "{}", String::from_utf8_lossy(&r.body));
    }
    let r = call(
        "POST",
        &format!("{root}/studies/{x}/share?expires=400d"),
        "writerwriterwriter1",
    );
    assert_eq!(r.status, 400);
}

/// The audit trail (issue 26 step 4), on both frontends (the worker's records read from its
/// log, `AUDIT = "log"`): a mixed run — searches, retrievals, a store, a
/// delete, denials — leaves exactly one record per request in `--audit-log`, joined to its
/// response by `X-Request-Id`; each record has PS3.15 A.5's required parts, the event the
/// standard names for what was done (DCM codes of PS3.16 CID 400) with its action and outcome,
/// who (the token's subject, `unauthenticated`), from where, and what: the patient (PatientID
/// as DCMTK's dcmdump reads it from the file), the study, the query. A sink that cannot be
/// written (/dev/full) leaves requests answered and is counted in /metrics.
#[test]
fn every_request_leaves_one_audit_record() {
    use base64::Engine as _;
    let dir = tempdir();
    let data = dir.path().join("data");
    let x_file = corpus().join("ct_small_ele.dcm");
    let y_file = corpus().join("mr_small_rle.dcm");
    assert!(import(&data, &[&x_file, &y_file]).status.success());
    let (x, x_se, x_i) = uids(&x_file);
    let (y, _, _) = uids(&y_file);
    let x_patient = dcmdump_value(&x_file, "PatientID");
    let tokens = write_temp(
        dir.path(),
        "tokens",
        b"writerwriterwriter1 DCM4CHEE write,delete\nreaderreaderreader2 DCM4CHEE\n",
    );
    let log = dir.path().join("audit.jsonl");
    let server = Server::start(
        &data,
        &[
            "--tokens-file",
            tokens.to_str().unwrap(),
            "--audit-log",
            log.to_str().unwrap(),
        ],
    );
    let root = server.root();
    let (reader, writer) = ("readerreaderreader2", "writerwriterwriter1");
    let stow_body = {
        let mut b = b"--B\r\nContent-Type: application/dicom\r\n\r\n".to_vec();
        b.extend_from_slice(&std::fs::read(&x_file).unwrap());
        b.extend_from_slice(b"\r\n--B--\r\n");
        b
    };
    let inst = format!("{root}/studies/{x}/series/{x_se}/instances/{x_i}");
    // (method, url, token, expected status, EventID, EventActionCode, EventOutcomeIndicator)
    let run: Vec<(&str, String, Option<&str>, u16, &str, &str, &str)> = vec![
        (
            "GET",
            format!("{root}/studies?PatientID={x_patient}"),
            Some(reader),
            200,
            "110112",
            "E",
            "0",
        ),
        (
            "GET",
            format!("{root}/studies/{x}/series"),
            Some(reader),
            200,
            "110112",
            "E",
            "0",
        ),
        (
            "GET",
            format!("{inst}/metadata"),
            Some(reader),
            200,
            "110104",
            "R",
            "0",
        ),
        (
            "GET",
            format!("{inst}/frames/1"),
            Some(reader),
            200,
            "110104",
            "R",
            "0",
        ),
        (
            "GET",
            format!("{root}/studies/{x}/metadata"),
            None,
            401,
            "110104",
            "R",
            "4",
        ),
        (
            "GET",
            format!("{root}/studies"),
            Some("not-a-token-at-all"),
            401,
            "110112",
            "E",
            "4",
        ),
        (
            "POST",
            format!("{root}/studies"),
            Some(reader),
            403,
            "110104",
            "C",
            "4",
        ),
        (
            "POST",
            format!("{root}/studies"),
            Some(writer),
            200,
            "110104",
            "C",
            "0",
        ),
        (
            "DELETE",
            format!("{root}/studies/{y}"),
            Some(reader),
            403,
            "110105",
            "D",
            "4",
        ),
        (
            "DELETE",
            format!("{root}/studies/{y}"),
            Some(writer),
            204,
            "110105",
            "D",
            "0",
        ),
        (
            "GET",
            format!("{root}/studies/{y}/metadata"),
            Some(reader),
            404,
            "110104",
            "R",
            "4",
        ),
    ];
    let started = unix_now();
    let mut ids = Vec::new();
    for (method, url, token, status, ..) in &run {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(b) = &bearer {
            headers.push(("authorization", b));
        }
        let r = if *method == "POST" {
            headers.push((
                "content-type",
                "multipart/related; type=\"application/dicom\"; boundary=B",
            ));
            request_with_body(method, url, &headers, &stow_body)
        } else {
            request(method, url, &headers)
        };
        assert_eq!(r.status, *status, "{method} {url}");
        let id = r.header("x-request-id");
        assert_eq!(id.len(), 16, "{method} {url}: {id:?}");
        ids.push(id);
    }
    // The worker writes its records after each response (waitUntil): given a few seconds.
    let read = || -> Vec<serde_json::Value> {
        match server.worker_log() {
            Some(text) => text
                .lines()
                .filter_map(|l| l.find("audit {").map(|i| &l[i + "audit ".len()..]))
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            None => std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        }
    };
    // The harness's readiness probe of the worker is a request too: its record is left out.
    let read = || -> Vec<serde_json::Value> {
        let mut all = read();
        all.retain(|r| r["wado"]["path"] != "/health-probe");
        all
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut records = read();
    while records.len() < run.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        records = read();
    }
    let worker_log = server.worker_log().unwrap_or_default();
    drop(server);
    let text = records
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let tail: Vec<&str> = worker_log.lines().rev().take(30).collect();
    assert_eq!(
        records.len(),
        run.len(),
        "one record per request:\n{text}\n--- the worker's log (last lines, newest first) ---\n{}",
        tail.join("\n")
    );
    // The subject of the record of the i-th request (records may come in another order).
    let subjects = |i: usize| {
        records
            .iter()
            .find(|r| r["wado"]["requestId"] == ids[i].as_str())
            .map(|r| {
                r["ActiveParticipant"][0]["UserID"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .unwrap_or_default()
    };
    for (i, ((method, url, token, _, event, action, outcome), id)) in
        run.iter().zip(&ids).enumerate()
    {
        let found: Vec<&serde_json::Value> = records
            .iter()
            .filter(|r| r["wado"]["requestId"] == id.as_str())
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{method} {url} ({id}): {:?}",
            records
                .iter()
                .map(|r| r["wado"].to_string())
                .collect::<Vec<_>>()
        );
        let r = found[0];
        let e = &r["EventIdentification"];
        // PS3.15 A.5.1: the required parts.
        assert_eq!(e["EventID"]["csd-code"], *event, "{method} {url}: {r}");
        assert_eq!(e["EventID"]["codeSystemName"], "DCM");
        assert_eq!(e["EventActionCode"], *action, "{method} {url}");
        assert_eq!(e["EventOutcomeIndicator"], *outcome, "{method} {url}");
        let when = e["EventDateTime"].as_str().unwrap();
        assert!(when.ends_with('Z') && when.len() == 20, "{when}");
        assert_eq!(r["AuditSourceIdentification"]["AuditSourceID"], "wado");
        let parts = r["ActiveParticipant"].as_array().unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0]["UserIsRequestor"], true);
        assert_eq!(parts[1]["UserIsRequestor"], false);
        if !edge() || parts[0].get("NetworkAccessPointID").is_some() {
            assert_eq!(parts[0]["NetworkAccessPointID"], "127.0.0.1");
            assert_eq!(parts[0]["NetworkAccessPointTypeCode"], "2");
        }
        let objects = r["ParticipantObjectIdentification"].as_array().unwrap();
        for o in objects {
            assert!(
                o["ParticipantObjectID"].is_string()
                    && o["ParticipantObjectIDTypeCode"].is_object(),
                "{o}"
            );
        }
        let ids_of = |code: &str| -> Vec<&str> {
            objects
                .iter()
                .filter(|o| o["ParticipantObjectIDTypeCode"]["csd-code"] == code)
                .map(|o| o["ParticipantObjectID"].as_str().unwrap())
                .collect()
        };
        // Who: the same token is the same subject; no valid token is "unauthenticated".
        match token {
            Some(t) if t.starts_with("not-") => assert_eq!(subjects(i), "unauthenticated"),
            None => assert_eq!(subjects(i), "unauthenticated"),
            Some(_) => assert!(subjects(i).starts_with("token:"), "{}", subjects(i)),
        }
        // What.
        if *event == "110112" {
            let q = ids_of("110181");
            assert_eq!(q, ["1.2.840.10008.5.1.4.1.2.2.1"], "{r}");
            let query = objects
                .iter()
                .find(|o| o["ParticipantObjectIDTypeCode"]["csd-code"] == "110181")
                .unwrap()["ParticipantObjectQuery"]
                .as_str()
                .unwrap();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(query)
                .unwrap();
            assert_eq!(
                String::from_utf8(decoded).unwrap(),
                url.split_once('?').map_or("", |(_, q)| q)
            );
        } else if url.contains(&format!("/studies/{x}")) || *method == "POST" && *outcome == "0" {
            assert_eq!(ids_of("110180"), [x.as_str()], "{r}");
            assert_eq!(ids_of("2"), [x_patient.as_str()], "{r}");
        } else if url.contains(&format!("/studies/{y}")) {
            assert_eq!(ids_of("110180"), [y.as_str()], "{r}");
        }
        let t = e["EventDateTime"].as_str().unwrap();
        assert!(t >= rfc3339_prefix(started).as_str(), "{t}");
    }
    assert_eq!(subjects(0), subjects(2), "one token, one subject");
    assert_ne!(subjects(0), subjects(7), "two tokens, two subjects");
    if edge() {
        return;
    }
    // A sink that fails: requests still answered, failures counted.
    let server = Server::start_native(&data, &["--audit-log", "/dev/full"]);
    for _ in 0..2 {
        assert_eq!(get(&format!("{}/studies", server.root()), None).status, 200);
    }
    let m = get(&format!("{}/metrics", server.base), None);
    let m = String::from_utf8_lossy(&m.body).into_owned();
    assert!(m.contains("wado_audit_failures_total 2"), "{m}");
}

/// The first characters of an RFC 3339 time at `secs` (to the minute), for ordering checks.
fn rfc3339_prefix(secs: u64) -> String {
    let out = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}", secs.saturating_sub(60)),
            "+%Y-%m-%dT%H:%M",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The audit trail to a syslog collector (native, `--audit-syslog udp://...`): each record one
/// RFC 5424 datagram — `<85>` (facility 10 security/authorization, severity 5 notice, as IHE
/// ATNA sends them), version 1, an RFC 3339 UTC time, host, APP-NAME `wado`, the process id,
/// MSGID `DICOM+JSON`, no structured data — whose MSG is the record, joined to its response by
/// `X-Request-Id`. The header is checked field by field against RFC 5424 §6's grammar.
#[test]
fn audit_records_reach_a_syslog_collector() {
    if edge() {
        return;
    }
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("ct_small_ele.dcm");
    assert!(import(&data, &[&file]).status.success());
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let url = format!("udp://{}", collector.local_addr().unwrap());
    let server = Server::start_native(&data, &["--audit-syslog", &url]);
    let (st, _, _) = uids(&file);
    let mut ids = Vec::new();
    for url in [
        format!("{}/studies", server.root()),
        format!("{}/studies/{st}/metadata", server.root()),
    ] {
        let r = get(&url, None);
        assert_eq!(r.status, 200);
        ids.push(r.header("x-request-id"));
    }
    let pid = server.pid().to_string();
    let mut buf = vec![0u8; 70_000];
    for id in &ids {
        let n = collector.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        // HEADER = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID
        let fields: Vec<&str> = text.splitn(8, ' ').collect();
        assert_eq!(fields.len(), 8, "{text}");
        assert_eq!(fields[0], "<85>1", "{text}");
        let t = fields[1];
        assert!(
            t.len() == 20
                && t.ends_with('Z')
                && t.as_bytes()[4] == b'-'
                && t.as_bytes()[10] == b'T'
                && t.as_bytes()[13] == b':',
            "{t}"
        );
        let printable = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
        };
        assert!(printable(fields[2], 255), "HOSTNAME {:?}", fields[2]);
        assert_eq!(fields[3], "wado");
        assert_eq!(fields[4], pid);
        assert_eq!(fields[5], "DICOM+JSON");
        assert_eq!(fields[6], "-", "no structured data");
        let record: serde_json::Value = serde_json::from_str(fields[7]).unwrap();
        assert_eq!(record["wado"]["requestId"], id.as_str());
        assert!(record["EventIdentification"]["EventID"]["csd-code"].is_string());
    }
}

/// The worker's audit trail through a Cloudflare Queue (its `AUDIT_QUEUE` producer binding):
/// each request's record is one message; a consumer whose receiver fails every other call
/// (the queue retries) still delivers every record, and each once among the acknowledged
/// batches. Runs once, in the native pass (it starts its own worker).
#[test]
fn the_worker_queues_one_audit_record_per_request() {
    if edge() {
        return;
    }
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("ct_small_ele.dcm");
    assert!(import(&data, &[&file]).status.success());
    let (url, got) = flaky_receiver();
    let consumer = dir.path().join("consumer.toml");
    std::fs::write(
        &consumer,
        format!(
            "name = \"wado-audit-consumer\"\nmain = {:?}\ncompatibility_date = \"2025-09-01\"\n\n\
             [vars]\nRECEIVER = {url:?}\n\n[[queues.consumers]]\nqueue = \"wado-audit\"\n\
             max_batch_size = 10\nmax_batch_timeout = 1\nmax_retries = 20\nretry_delay = 0\n",
            repo_dir()
                .join("tests/workers/feed-consumer.mjs")
                .display()
                .to_string()
        ),
    )
    .unwrap();
    let worker = Server::start_worker_with(
        Some(&data),
        &[("TOKENS", "readerreaderreader1 DCM4CHEE\n")],
        "[[queues.producers]]\nbinding = \"AUDIT_QUEUE\"\nqueue = \"wado-audit\"\n",
        &[&consumer],
    );
    let (st, _, _) = uids(&file);
    let mut ids = std::collections::BTreeSet::new();
    for (k, url) in [
        format!("{}/studies", worker.root()),
        format!("{}/studies/{st}/metadata", worker.root()),
        format!("{}/studies/{st}/series", worker.root()),
    ]
    .iter()
    .cycle()
    .take(9)
    .enumerate()
    {
        // Every third without a token: denied, and recorded as such.
        let bearer = "Bearer readerreaderreader1";
        let headers: &[(&str, &str)] = if k % 3 == 2 {
            &[]
        } else {
            &[("authorization", bearer)]
        };
        let r = request("GET", url, headers);
        assert_eq!(r.status, if k % 3 == 2 { 401 } else { 200 }, "{url}");
        ids.insert(r.header("x-request-id"));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let delivered = loop {
        let records: Vec<serde_json::Value> = got
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.status == 200)
            .flat_map(|d| serde_json::from_slice::<Vec<serde_json::Value>>(&d.body).unwrap())
            .filter(|r| r["wado"]["path"] != "/health-probe")
            .collect();
        let seen: std::collections::BTreeSet<String> = records
            .iter()
            .map(|r| r["wado"]["requestId"].as_str().unwrap().to_owned())
            .collect();
        if seen == ids || std::time::Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    let mut seen: Vec<String> = delivered
        .iter()
        .map(|r| r["wado"]["requestId"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    assert_eq!(seen, ids.iter().cloned().collect::<Vec<_>>(), "each once");
    let denied = delivered
        .iter()
        .filter(|r| r["EventIdentification"]["EventOutcomeIndicator"] == "4")
        .count();
    assert_eq!(denied, 3);
    assert!(
        got.lock().unwrap().iter().any(|d| d.status == 500),
        "the receiver refused some batches, which the queue sent again"
    );
}

/// An identity provider that cannot be reached (native): JWTs are answered 503 with
/// Retry-After (no keys to decide with), static tokens still work, and the failed fetches of
/// its keys are counted in /metrics.
#[test]
fn an_unreachable_issuer_is_reported_and_counted() {
    if edge() {
        return;
    }
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("ct_small_ele.dcm");
    assert!(import(&data, &[&file]).status.success());
    let closed = free_port();
    let issuer = format!("http://127.0.0.1:{closed}/realms/gone");
    let tokens = write_temp(dir.path(), "tokens", b"adminadminadmin01 *\n");
    let server = Server::start_native(
        &data,
        &[
            "--oidc-issuer",
            &issuer,
            "--jwt-audience",
            "wado",
            "--tokens-file",
            tokens.to_str().unwrap(),
        ],
    );
    let key = dir.path().join("key.pem");
    ec_key_pair(&key, &dir.path().join("public.pem"));
    let t = unix_now();
    let claims = serde_json::json!({
        "iss": issuer, "aud": "wado", "iat": t, "exp": t + 600, "aets": ["DCM4CHEE"],
    });
    let jwt = mint_jwt(&key, &claims, Some("k1"));
    let url = format!("{}/studies", server.root());
    let r = request("GET", &url, &[("authorization", &format!("Bearer {jwt}"))]);
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(!r.header("retry-after").is_empty());
    let admin = [("authorization", "Bearer adminadminadmin01")];
    assert_eq!(request("GET", &url, &admin).status, 200);
    let m = request("GET", &format!("{}/metrics", server.base), &admin);
    let text = String::from_utf8_lossy(&m.body).into_owned();
    let failed: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("wado_oidc_key_fetch_failures_total "))
        .unwrap_or_else(|| panic!("{text}"))
        .parse()
        .unwrap();
    assert!(failed >= 1, "{text}");
}
