//! Generic HTTP: error statuses, Accept, CORS, content coding, ETags, ranges, bearer tokens, Last-Modified.

use super::*;

#[test]
fn errors_table() {
    let file = fixture!("ct_small_ele.dcm");
    let store = store_with(std::slice::from_ref(&file));
    let (st, se, sop) = uids(&file);
    let cases: Vec<(Method, String, Option<&str>, u16)> = vec![
        (
            Method::GET,
            format!("/dcm4chee-arc/aets/OTHER/rs/studies/{st}"),
            None,
            404,
        ),
        (
            Method::POST,
            format!("{ROOT}/studies/{st}/metadata"),
            None,
            405,
        ),
        // STOW-RS on a server nobody configured for writing: refused whatever the body.
        (Method::POST, format!("{ROOT}/studies/{st}"), None, 403),
        // DELETE likewise: deleting takes the permission to delete.
        (Method::DELETE, format!("{ROOT}/studies/{st}"), None, 403),
        // Only studies, series and instances are deleted, never a representation.
        (
            Method::DELETE,
            format!("{ROOT}/studies/{st}/metadata"),
            None,
            405,
        ),
        (Method::GET, format!("{ROOT}/studies/1.2.3.4.5"), None, 404),
        (
            Method::GET,
            format!("{ROOT}/studies/{st}/series/1.2.3"),
            None,
            404,
        ),
        (
            Method::GET,
            format!("{ROOT}/studies/{st}/series/{se}/instances/1.2.3/metadata"),
            None,
            404,
        ),
        (
            Method::GET,
            format!("{ROOT}/studies/{st}/series/{se}/instances/1.2.3/frames/1"),
            None,
            404,
        ),
        (Method::GET, format!("{ROOT}/studies/abc"), None, 400),
        (
            Method::GET,
            format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}/frames/x"),
            None,
            400,
        ),
        (
            Method::GET,
            format!("{ROOT}/studies/{st}"),
            Some("image/png"),
            406,
        ),
        (
            Method::GET,
            format!("{ROOT}/studies/{st}/metadata"),
            Some("text/html"),
            406,
        ),
        (Method::GET, "/elsewhere".into(), None, 404),
        (Method::HEAD, format!("{ROOT}/studies/{st}"), None, 200),
    ];
    for (m, path, accept, want) in cases {
        let h: Vec<(&str, &str)> = accept.map(|a| vec![("accept", a)]).unwrap_or_default();
        let got = get_with(&store, m.clone(), &path, &h);
        assert_eq!(got.status, want, "{m} {path} {accept:?}");
        if want >= 400 {
            assert!(!got.body.is_empty(), "{path}: an error says why");
        }
        if want == 405 {
            assert_eq!(got.header("allow"), "GET, HEAD");
        }
    }
}

#[test]
fn accept_query_parameter_overrides_the_header() {
    let file = fixture!("ct_small_ele.dcm");
    let store = store_with(std::slice::from_ref(&file));
    let (st, _, _) = uids(&file);
    let got = get(
        &store,
        &format!("{ROOT}/studies/{st}/metadata?accept=application%2Fjson"),
        Some("application/dicom+json"),
    );
    assert_eq!(got.header("content-type"), "application/json");
}

#[test]
fn cors_preflight_and_exposed_headers() {
    let file = fixture!("ct_small_ele.dcm");
    let store = store_with(std::slice::from_ref(&file));
    let (st, _, _) = uids(&file);
    let svc = test_service(
        store.clone(),
        Config {
            cors_origins: vec!["https://viewer.example".into()],
            ..Config::default()
        },
    );
    let path = format!("{ROOT}/studies/{st}/metadata");
    let run = |method: Method, origin: &str, extra: &[(&str, &str)]| {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(origin).expect("v"));
        for (k, v) in extra {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).expect("n"),
                HeaderValue::from_str(v).expect("v"),
            );
        }
        let req = Request {
            client: None,
            who: Default::default(),
            method: &method,
            entropy: [0; 16],
            body: Default::default(),
            ..get_request(&path, &h)
        };
        block_on(svc.handle(&req))
    };
    let pre = run(
        Method::OPTIONS,
        "https://viewer.example",
        &[
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "accept, authorization"),
        ],
    );
    assert_eq!(pre.status, StatusCode::NO_CONTENT);
    assert_eq!(
        pre.headers["access-control-allow-origin"],
        "https://viewer.example"
    );
    let allowed = pre.headers["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    for h in ["accept", "authorization", "range"] {
        assert!(allowed.contains(h), "{h} allowed");
    }
    let get = run(Method::GET, "https://viewer.example", &[]);
    assert_eq!(get.status, StatusCode::OK);
    let exposed = get.headers["access-control-expose-headers"]
        .to_str()
        .expect("ascii")
        .to_owned();
    for h in [
        "Content-Type",
        "Content-Location",
        "Content-Length",
        "ETag",
        "Warning",
    ] {
        assert!(exposed.contains(h), "{h} exposed");
    }
    // Another origin gets no CORS headers, and its preflight is not answered as one.
    let other = run(Method::GET, "https://evil.example", &[]);
    assert!(other.headers.get("access-control-allow-origin").is_none());
    let other_pre = run(
        Method::OPTIONS,
        "https://evil.example",
        &[("access-control-request-method", "GET")],
    );
    assert_eq!(other_pre.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn encodings() {
    let cases: &[(Option<&str>, &str)] = &[
        (None, "identity"),
        (Some("gzip"), "gzip"),
        (Some("deflate"), "deflate"),
        (Some("gzip;q=0, deflate"), "deflate"),
        (Some("*"), "gzip"),
        (Some("identity"), "identity"),
        (Some("br"), "identity"),
        (Some("gzip;q=0, *;q=0.5"), "deflate"),
    ];
    for (h, want) in cases {
        assert_eq!(choose_encoding(*h), *want, "{h:?}");
    }
}

#[test]
fn query_params() {
    assert_eq!(
        query_param("a=1&accept=application%2Fdicom%2Bjson", "accept").as_deref(),
        Some("application/dicom+json")
    );
    assert_eq!(
        query_param("accept=multipart/related;+type=x", "accept").as_deref(),
        Some("multipart/related; type=x")
    );
    assert_eq!(query_param("x=%zz", "x"), None);
    assert_eq!(query_param("", "accept"), None);
}

#[test]
fn etags_and_if_none_match() {
    let a = fixture!("study77654033_CT2_17106.dcm");
    let b = fixture!("study77654033_CT2_17136.dcm");
    let store = store_with(std::slice::from_ref(&a));
    let (st, se, sop) = uids(&a);
    let meta = format!("{ROOT}/studies/{st}/series/{se}/metadata");
    let first = get(&store, &meta, None);
    let etag = first.header("etag");
    assert!(
        etag.starts_with('"') && etag.len() > 10,
        "strong ETag on metadata: {etag:?}"
    );
    let again = get_with(&store, Method::GET, &meta, &[("if-none-match", &etag)]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), etag);
    assert_eq!(
        get_with(
            &store,
            Method::GET,
            &meta,
            &[("if-none-match", "\"other\"")]
        )
        .status,
        200
    );
    assert_eq!(
        get_with(&store, Method::GET, &meta, &[("if-none-match", "*")]).status,
        304
    );
    // Another coding is another representation.
    let gz = get_with(&store, Method::GET, &meta, &[("accept-encoding", "gzip")]);
    assert_ne!(gz.header("etag"), etag);
    // Frames: a weak ETag (multipart), matched weakly.
    let frames = format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}/frames/1");
    let f = get(&store, &frames, None);
    let fe = f.header("etag");
    assert!(fe.starts_with("W/\""), "{fe}");
    assert_eq!(
        get_with(
            &store,
            Method::GET,
            &frames,
            &[("if-none-match", fe.trim_start_matches("W/"))]
        )
        .status,
        304
    );
    // The series changes: the metadata's ETag changes with it.
    import_into(store.clone(), std::slice::from_ref(&b));
    let changed = get_with(&store, Method::GET, &meta, &[("if-none-match", &etag)]);
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), etag);
}

#[test]
fn ranges_on_single_part_bodies() {
    let file = fixture!("ct_small_ele.dcm");
    let store = store_with(std::slice::from_ref(&file));
    let (st, se, sop) = uids(&file);
    let inst = format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}");
    let whole = get(&store, &inst, Some("application/dicom"));
    assert_eq!(whole.header("accept-ranges"), "bytes");
    let total = file.len();
    let cases: Vec<(&str, u16, Option<(usize, usize)>)> = vec![
        ("bytes=0-9", 206, Some((0, 10))),
        ("bytes=128-131", 206, Some((128, 132))),
        ("bytes=-5", 206, Some((total - 5, total))),
        ("bytes=39000-", 206, Some((39000, total))),
        ("bytes=0-99999999", 206, Some((0, total))),
        ("bytes=99999999-", 416, None),
        // Last before first: invalid, so ignored (RFC 9110 §14.1.1), not unsatisfiable.
        ("bytes=10-5", 200, Some((0, total))),
        ("bytes=5-3", 200, Some((0, total))),
        ("bytes=0-1,5-6", 200, Some((0, total))),
        ("items=0-1", 200, Some((0, total))),
    ];
    for (range, status, want) in cases {
        let got = get_with(
            &store,
            Method::GET,
            &inst,
            &[("accept", "application/dicom"), ("range", range)],
        );
        assert_eq!(got.status, status, "{range}");
        match want {
            Some((a, b)) => {
                assert_eq!(got.body, &file[a..b], "{range}");
                if status == 206 {
                    assert_eq!(
                        got.header("content-range"),
                        format!("bytes {a}-{}/{total}", b - 1),
                        "{range}"
                    );
                    assert_eq!(got.header("content-length"), (b - a).to_string());
                }
            }
            None => assert_eq!(
                got.header("content-range"),
                format!("bytes */{total}"),
                "{range}"
            ),
        }
    }
    // Single-part bulk data too.
    let pixels = pixel_bytes(&file);
    let got = get_with(
        &store,
        Method::GET,
        &format!("{inst}/bulkdata/7FE00010"),
        &[
            ("accept", "application/octet-stream"),
            ("range", "bytes=100-199"),
        ],
    );
    assert_eq!(got.status, 206);
    assert_eq!(got.body, &pixels[100..200]);
}

#[test]
fn one_bearer_token_on_every_route() {
    let file = fixture!("emr_10frame_ele.dcm");
    let store = store_with(std::slice::from_ref(&file));
    let (st, se, sop) = uids(&file);
    let auth = crate::auth::TokenAuth::parse(
        "viewer-token-0123456789 DCM4CHEE\nother-ae-token-0123456 OTHER\n",
    )
    .expect("tokens");
    let svc = test_service(
        store.clone(),
        Config {
            auth: Some(Arc::new(crate::auth::Auth {
                tokens: Some(auth),
                ..Default::default()
            })),
            ..Config::default()
        },
    );
    let inst = format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}");
    let run = |path: &str, authz: Option<&str>| {
        let mut h = HeaderMap::new();
        if let Some(a) = authz {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).expect("v"));
        }
        let req = Request {
            client: None,
            who: Default::default(),
            entropy: [0; 16],
            body: Default::default(),
            ..get_request(path, &h)
        };
        block_on(svc.handle(&req))
    };
    for path in [
        format!("{ROOT}/studies/{st}/metadata"),
        format!("{inst}/frames/1"),
        format!("{inst}/bulkdata/7FE00010"),
        inst.clone(),
        format!("{ROOT}/studies/{st}"),
    ] {
        assert_eq!(
            run(&path, Some("Bearer viewer-token-0123456789")).status,
            StatusCode::OK,
            "{path}"
        );
        let none = run(&path, None);
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(none.headers["www-authenticate"], "Bearer realm=\"wado\"");
        let bad = run(&path, Some("Bearer wrong-token-000000000"));
        assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
        assert!(bad.headers["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains("invalid_token"));
        assert_eq!(
            run(&path, Some("Bearer other-ae-token-0123456")).status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
}

#[test]
fn last_modified_and_if_modified_since() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let a = fixture!("study77654033_CT2_17106.dcm");
    let b = fixture!("study77654033_CT2_17136.dcm");
    let now = Arc::new(AtomicU64::new(1_700_000_000));
    let clock = now.clone();
    let store = import_into(
        Arc::new(MemoryStore::with_clock(Arc::new(move || {
            clock.load(Ordering::Relaxed)
        }))),
        std::slice::from_ref(&a),
    );
    let (st, se, sop) = uids(&a);
    // 1,700,000,000 s after the epoch is 2023-11-14T22:13:20Z.
    const T0: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
    const T1: &str = "Tue, 14 Nov 2023 22:15:00 GMT";
    let study = format!("{ROOT}/studies/{st}");
    let resources = [
        format!("{study}/series/{se}/metadata"),
        format!("{study}/metadata"),
        format!("{study}/series/{se}/instances/{sop}/metadata"),
        study.clone(),
        format!("{study}/series/{se}/instances/{sop}"),
        format!("{study}/series/{se}/instances/{sop}/frames/1"),
    ];
    for r in &resources {
        let got = get(&store, r, None);
        assert_eq!(got.status, 200, "{r}");
        assert_eq!(got.header("last-modified"), T0, "{r}");
        let since = |v: &str| get_with(&store, Method::GET, r, &[("if-modified-since", v)]);
        let same = since(T0);
        assert_eq!(same.status, 304, "{r}: not modified since T0");
        assert!(same.body.is_empty());
        assert_eq!(same.header("last-modified"), T0);
        // The obsolete RFC 850 and asctime formats are accepted too (RFC 9110 §5.6.7).
        assert_eq!(since("Tuesday, 14-Nov-23 22:13:20 GMT").status, 304, "{r}");
        assert_eq!(since("Tue Nov 14 22:13:20 2023").status, 304, "{r}");
        assert_eq!(since("Tue, 14 Nov 2023 22:13:19 GMT").status, 200, "{r}");
        assert_eq!(since("yesterday").status, 200, "{r}: invalid date ignored");
        // If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3).
        let both = get_with(
            &store,
            Method::GET,
            r,
            &[("if-modified-since", T0), ("if-none-match", "\"other\"")],
        );
        assert_eq!(both.status, 200, "{r}");
    }
    // A second instance arrives later: the study and series move on, the first instance not.
    now.store(1_700_000_100, Ordering::Relaxed);
    import_at(store.clone(), std::slice::from_ref(&b), 1_700_000_100);
    for (r, want) in [
        (&resources[0], T1),
        (&resources[1], T1),
        (&resources[2], T0),
        (&resources[3], T1),
        (&resources[4], T0),
        (&resources[5], T0),
    ] {
        let got = get_with(&store, Method::GET, r, &[("if-modified-since", T0)]);
        let want_status = if want == T0 { 304 } else { 200 };
        assert_eq!(got.status, want_status, "{r}");
        assert_eq!(got.header("last-modified"), want, "{r}");
    }
    // Errors carry no Last-Modified.
    let missing = get(&store, &format!("{study}/series/1.2.3/metadata"), None);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("last-modified"), "");
}

/// A suffix range on an empty body is unsatisfiable (it computed 0 − 1 before).
#[test]
fn ranges_on_an_empty_body_are_unsatisfiable() {
    use crate::service::http::byte_range;
    assert_eq!(byte_range(Some("bytes=-5"), 0), Some(Err(())));
    assert_eq!(byte_range(Some("bytes=0-"), 0), Some(Err(())));
    assert_eq!(byte_range(Some("bytes=-5"), 10), Some(Ok((5, 10))));
}

/// HEAD is answered by the core like GET without its body (RFC 9110 §9.3.2), and a single
/// part that GET would convert is not converted for it (no Content-Length then).
#[test]
fn head_is_get_without_the_body_and_without_the_conversion() {
    let file = fixture!("mr_small_implicit.dcm");
    let store = store_with(std::slice::from_ref(&file));
    let (st, se, sop) = uids(&file);
    let url = format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}");
    let accept = [("accept", "application/dicom")];
    let get = get_with(&store, Method::GET, &url, &accept);
    assert_eq!(get.status, 200);
    assert!(!get.body.is_empty());
    assert!(!get.header("content-length").is_empty());
    let head = get_with(&store, Method::HEAD, &url, &accept);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-type"), get.header("content-type"));
    assert_eq!(
        head.header("content-length"),
        "",
        "not converted, so not known"
    );
}

/// With allowed hosts set (and no public URL), a request naming another host is refused before
/// anything is read, and an allowed one, with or without its port, gets URIs on itself.
#[test]
fn only_allowed_hosts_name_the_service_root() {
    let file = fixture!("ct_small_ele.dcm");
    let store = store_with(std::slice::from_ref(&file));
    let svc = test_service(
        store,
        Config {
            allowed_hosts: vec!["PACS.example.org".into(), "127.0.0.1:8080".into()],
            ..Config::default()
        },
    );
    let (st, se, sop) = uids(&file);
    let path = format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}/metadata");
    let with_host = |host: &str| {
        let got = ask(&svc, Method::GET, &path, &[("host", host)]);
        (got.status, String::from_utf8_lossy(&got.body).into_owned())
    };
    for evil in [
        "evil.example",
        "evil.example:8080",
        "127.0.0.1:9999",
        "pacs.example.org.evil",
    ] {
        let (status, body) = with_host(evil);
        assert_eq!(status, 400, "{evil}");
        assert!(body.contains("does not answer for host"), "{evil}: {body}");
    }
    for (good, root) in [
        ("pacs.example.org", "http://pacs.example.org/dcm4chee-arc"),
        (
            "pacs.example.org:443",
            "http://pacs.example.org:443/dcm4chee-arc",
        ),
        ("127.0.0.1:8080", "http://127.0.0.1:8080/dcm4chee-arc"),
    ] {
        let (status, body) = with_host(good);
        assert_eq!(status, 200, "{good}");
        assert!(body.contains(root), "{good}: URIs on {root}");
    }
}

/// An identity provider that cannot be reached: a JWT is neither accepted nor called invalid
/// (a viewer would make its user sign in again) but answered 503 with Retry-After.
#[test]
fn a_jwt_without_the_issuers_keys_is_503_not_401() {
    #[derive(Debug)]
    struct Down;
    #[async_trait::async_trait]
    impl crate::auth::oidc::HttpGet for Down {
        async fn get(
            &self,
            _url: &str,
        ) -> std::result::Result<crate::auth::oidc::HttpAnswer, String> {
            Err("connection refused".into())
        }
    }
    let file = fixture!("emr_10frame_ele.dcm");
    let store = store_with(std::slice::from_ref(&file));
    let (st, _, _) = uids(&file);
    let auth = crate::auth::Auth::from_settings(&crate::auth::AuthSettings {
        oidc_issuer: Some((
            "--oidc-issuer".into(),
            "https://idp.example.org/realms/pacs".into(),
        )),
        oidc_client: Some(Arc::new(Down)),
        jwt_audience: "wado".into(),
        ..Default::default()
    })
    .expect("settings")
    .expect("access control on");
    let svc = test_service(
        store,
        Config {
            auth: Some(Arc::new(auth)),
            ..Config::default()
        },
    );
    // A well-formed JWT (the OpenSSL-made fixtures); its signature never gets checked here.
    let jwt = crate::auth::fixtures::token("rs256_ok");
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {jwt}")).expect("v"),
    );
    let path = format!("{ROOT}/studies/{st}/metadata");
    let req = Request {
        client: None,
        who: Default::default(),
        entropy: [0; 16],
        body: Default::default(),
        ..get_request(&path, &h)
    };
    let r = block_on(svc.handle(&req));
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    // No token at all is still 401.
    let empty = HeaderMap::new();
    let none = Request {
        client: None,
        who: Default::default(),
        entropy: [0; 16],
        body: Default::default(),
        ..get_request(&path, &empty)
    };
    assert_eq!(block_on(svc.handle(&none)).status, StatusCode::UNAUTHORIZED);
}
