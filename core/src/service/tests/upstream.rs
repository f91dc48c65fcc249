//! The read-through cache in front of another archive.

use super::*;

/// An origin that is another wado service, over HTTP-less calls, counting them.
#[derive(Debug)]
struct ServiceOrigin {
    svc: Service,
    root: String,
    calls: std::sync::Mutex<Vec<String>>,
    /// Once a GET whose URL holds the first string is answered, the origin is sent a PATCH of
    /// the second (path) with the third (DICOM JSON): a change made while a fill runs.
    meddle: std::sync::Mutex<Option<(String, String, Vec<u8>)>>,
    /// Its change feed does not answer (a network failure).
    feed_down: std::sync::atomic::AtomicBool,
}

impl ServiceOrigin {
    fn new(svc: Service) -> ServiceOrigin {
        ServiceOrigin {
            svc,
            root: format!("http://origin.test{ROOT}"),
            calls: Default::default(),
            meddle: Default::default(),
            feed_down: Default::default(),
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl crate::ingest::upstream::Upstream for ServiceOrigin {
    fn root(&self) -> &str {
        &self.root
    }

    async fn get(
        &self,
        url: &str,
        accept: &str,
    ) -> std::result::Result<crate::ingest::upstream::UpstreamResponse, String> {
        self.calls.lock().expect("lock").push(url.to_owned());
        // A network round trip: other requests run meanwhile.
        YieldOnce(false).await;
        if url.contains("/changefeed") && self.feed_down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("connection refused".into());
        }
        let path = url
            .strip_prefix("http://origin.test")
            .ok_or("not the origin")?;
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("origin.test"));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_str(accept).map_err(|e| e.to_string())?,
        );
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let req = Request {
            client: None,
            who: Default::default(),
            entropy: [3; 16],
            body: Default::default(),
            query,
            ..get_request(path, &h)
        };
        let r = self.svc.handle(&req).await;
        let meddle = {
            let mut m = self.meddle.lock().expect("lock");
            match &*m {
                Some((trigger, _, _)) if url.contains(trigger.as_str()) => m.take(),
                _ => None,
            }
        };
        let body = match r.body {
            Body::Empty => Bytes::new(),
            Body::Full(b) => b,
            Body::Stream(s) => {
                let chunks: Vec<Result<Bytes>> = s.collect().await;
                let mut all = Vec::new();
                for c in chunks {
                    all.extend_from_slice(&c.map_err(|e| e.to_string())?);
                }
                Bytes::from(all)
            }
        };
        if let Some((_, path, json)) = meddle {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("origin.test"));
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/dicom+json"),
            );
            let patch = Request {
                client: None,
                who: Default::default(),
                method: &Method::PATCH,
                entropy: [4; 16],
                body: RequestBody::new(Box::pin(futures::stream::iter([Ok::<_, String>(
                    Bytes::from(json),
                )]))),
                now: req.now,
                ..get_request(&path, &h)
            };
            let done = self.svc.handle(&patch).await;
            assert_eq!(done.status, StatusCode::NO_CONTENT, "{:?}", done.outcome);
        }
        Ok(crate::ingest::upstream::UpstreamResponse {
            status: r.status.as_u16(),
            content_type: r
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            body,
        })
    }
}

/// Pending once, then ready: lets the executor poll the other futures, as a real fetch does.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// An edge service over an empty store in front of an origin holding `files`.
fn edge_before(files: &[Bytes]) -> (Service, Arc<ServiceOrigin>) {
    let origin = Arc::new(ServiceOrigin::new(test_service(
        store_with(files),
        Config::default(),
    )));
    let edge = test_service(
        Arc::new(MemoryStore::new()),
        Config {
            upstream: Some(origin.clone()),
            ..Config::default()
        },
    );
    (edge, origin)
}

/// `n` requests for `path` at once, at `now`: their statuses.
fn at_once(edge: &Service, path: &str, n: usize, now: u64) -> Vec<u16> {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("edge.test"));
    let req = Request {
        client: None,
        who: Default::default(),
        entropy: [1; 16],
        body: Default::default(),
        now,
        ..get_request(path, &h)
    };
    block_on(futures::future::join_all(
        (0..n).map(|_| async { edge.handle(&req).await.status.as_u16() }),
    ))
}

#[test]
fn requests_for_a_series_being_filled_share_one_fill() {
    let a = fixture!("study77654033_CT2_17106.dcm");
    let b = fixture!("study77654033_CT2_17136.dcm");
    let (edge, origin) = edge_before(&[a.clone(), b]);
    let (st, se, sop) = uids(&a);
    let statuses = at_once(
        &edge,
        &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}/metadata"),
        8,
        1_700_000_000,
    );
    assert_eq!(statuses, vec![200; 8]);
    let calls = origin.calls.lock().expect("lock").clone();
    assert_eq!(
        calls.len(),
        3,
        "the series' metadata and its two instances, once: {calls:#?}"
    );
}

#[test]
fn a_scope_missing_upstream_is_asked_for_once_in_a_while() {
    let a = fixture!("study77654033_CT2_17106.dcm");
    let (edge, origin) = edge_before(&[a]);
    let calls = || origin.calls.lock().expect("lock").len();
    let path = format!("{ROOT}/studies/1.2.3/series/4.5.6/metadata");
    let t0 = 1_700_000_000;
    assert_eq!(at_once(&edge, &path, 8, t0), vec![404; 8]);
    assert_eq!(calls(), 1, "eight requests at once, one question");
    let within = t0 + crate::ingest::upstream::MISS_SECONDS - 1;
    assert_eq!(at_once(&edge, &path, 1, within), vec![404]);
    assert_eq!(calls(), 1, "the miss is remembered");
    let after = t0 + crate::ingest::upstream::MISS_SECONDS;
    assert_eq!(at_once(&edge, &path, 1, after), vec![404]);
    assert_eq!(calls(), 2, "and asked again once it expires");
}

#[test]
fn a_read_through_cache_fills_from_the_origin_once() {
    let a = fixture!("study77654033_CT2_17106.dcm");
    let b = fixture!("study77654033_CT2_17136.dcm");
    let c = fixture!("study77654033_CR1_6154.dcm");
    let origin_store = store_with(&[a.clone(), b.clone(), c.clone()]);
    let origin = Arc::new(ServiceOrigin::new(test_service(
        origin_store.clone(),
        Config::default(),
    )));
    let edge_store = Arc::new(MemoryStore::new());
    let edge = test_service(
        edge_store.clone(),
        Config {
            upstream: Some(origin.clone()),
            ..Config::default()
        },
    );
    let run = |path: &str, accept: &str| {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("edge.test"));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_str(accept).expect("accept"),
        );
        let req = Request {
            client: None,
            who: Default::default(),
            entropy: [1; 16],
            body: Default::default(),
            ..get_request(path, &h)
        };
        block_on(async {
            let r = edge.handle(&req).await;
            let body = match r.body {
                Body::Full(b) => b.to_vec(),
                Body::Stream(s) => {
                    let chunks: Vec<Result<Bytes>> = s.collect().await;
                    chunks
                        .into_iter()
                        .flat_map(|c| c.expect("chunk").to_vec())
                        .collect()
                }
                Body::Empty => Vec::new(),
            };
            (r.status.as_u16(), body)
        })
    };
    let calls = || origin.calls.lock().expect("lock").len();
    let (st, se, sop) = uids(&a);
    // A frame of an instance not in the store: its series is fetched (metadata + 2 files).
    let (status, frame) = run(
        &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}/frames/1"),
        "multipart/related; type=\"application/octet-stream\"",
    );
    assert_eq!(status, 200);
    assert_eq!(calls(), 3, "{:?}", origin.calls.lock().expect("lock"));
    let parts =
        crate::wire::multipart::parse(&boundary_from_entropy([1; 16]), &frame).expect("parts");
    assert_eq!(
        parts[0].body,
        &pixel_bytes(&a)[..],
        "the frame is the file's pixels"
    );
    // The files are stored byte for byte, and the series metadata is the origin's.
    for f in [&a, &b] {
        let (st, se, sop) = uids(f);
        let (key, _) = current_keys(&*catalog_of(&edge_store), &st, &se, &sop);
        let stored = block_on(edge_store.get(&key))
            .expect("get")
            .expect("stored");
        assert_eq!(stored, *f);
    }
    let meta = format!("{ROOT}/studies/{st}/series/{se}/metadata");
    let (_, mine) = run(&meta, "application/dicom+json");
    let theirs = get(&origin_store, &meta, None).body;
    let norm = |b: &[u8], host: &str| String::from_utf8_lossy(b).replace(host, "HOST");
    assert_eq!(norm(&mine, "edge.test"), norm(&theirs, "test.local:8080"));
    assert_eq!(calls(), 3, "later requests never touch the origin");
    // The whole study: the other series comes too, once.
    let (status, _) = run(
        &format!("{ROOT}/studies/{st}/metadata"),
        "application/dicom+json",
    );
    assert_eq!(status, 200);
    let after_study = calls();
    let in_study = [&a, &b, &c].iter().filter(|f| uids(f).0 == st).count();
    assert_eq!(
        after_study,
        3 + 1 + in_study - 2,
        "study metadata + its instances not already here (a and b came with their series)"
    );
    let (status, study) = run(
        &format!("{ROOT}/studies/{st}"),
        "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
    );
    assert_eq!(status, 200);
    let parts =
        crate::wire::multipart::parse(&boundary_from_entropy([1; 16]), &study).expect("parts");
    assert_eq!(parts.len(), in_study);
    assert_eq!(calls(), after_study);
    // Unknown at the origin too: 404, not a 5xx.
    let (status, body) = run(
        &format!("{ROOT}/studies/1.2.3/series/4.5.6/metadata"),
        "application/dicom+json",
    );
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
}

/// An upstream archive that answers every instance request with the same (other) file.
#[derive(Debug)]
struct LyingOrigin {
    inner: ServiceOrigin,
    file: Bytes,
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl crate::ingest::upstream::Upstream for LyingOrigin {
    fn root(&self) -> &str {
        self.inner.root()
    }

    async fn get(
        &self,
        url: &str,
        accept: &str,
    ) -> std::result::Result<crate::ingest::upstream::UpstreamResponse, String> {
        if url.contains("/instances/") {
            return Ok(crate::ingest::upstream::UpstreamResponse {
                status: 200,
                content_type: "application/dicom".into(),
                body: self.file.clone(),
            });
        }
        self.inner.get(url, accept).await
    }
}

/// What the upstream archive sends is checked against what was asked (issue 12): an instance
/// that is not the one named is refused before anything is stored (502), and the settings of
/// a read-through cache without access control are refused unless declared public.
#[test]
fn the_cache_stores_only_what_it_asked_for_and_is_not_open_by_accident() {
    let a = fixture!("study77654033_CT2_17106.dcm");
    let other = fixture!("ct_small_ele.dcm");
    let origin_store = store_with(std::slice::from_ref(&a));
    let origin = std::sync::Arc::new(LyingOrigin {
        inner: ServiceOrigin::new(test_service(origin_store, Config::default())),
        file: other,
    });
    let cache_store = Arc::new(MemoryStore::new());
    let config = Config {
        upstream: Some(origin.clone()),
        public: true,
        index: Some(catalog_of(&cache_store)),
        ..Config::default()
    };
    assert!(config.check().is_ok());
    let svc = test_service(cache_store.clone(), config);
    let (st, se, _) = uids(&a);
    let h = HeaderMap::new();
    let path = format!("{ROOT}/studies/{st}/series/{se}/metadata");
    let req = Request {
        client: None,
        who: Default::default(),
        entropy: [1; 16],
        body: Default::default(),
        ..get_request(&path, &h)
    };
    let r = block_on(svc.handle(&req));
    assert_eq!(r.status.as_u16(), 502);
    let stored = block_on(cache_store.list("studies/")).expect("list");
    assert!(
        stored.iter().all(|o| !o.key.ends_with(".dcm")),
        "nothing stored: {stored:?}"
    );
    // Without `public` and without access control the same settings are refused.
    let closed = Config {
        upstream: Some(origin),
        ..Config::default()
    };
    assert!(closed.check().is_err());
}

#[test]
fn a_cache_set_to_transcode_keeps_lossless_fills_as_htj2k_rpcl() {
    // An uncompressed CT and a lossy JPEG: the first is kept as .4.202 (its frame decodes to
    // the very samples; dicom-rs reads the stored file), the second as it came.
    let ct = fixture!("ct_small_ele.dcm");
    let lossy = fixture!("sc_jpeg_baseline_img2dcm.dcm");
    let origin_store = store_with(&[ct.clone(), lossy.clone()]);
    let origin = Arc::new(ServiceOrigin::new(test_service(
        origin_store,
        Config::default(),
    )));
    let edge_store = Arc::new(MemoryStore::new());
    let edge = test_service(
        edge_store.clone(),
        Config {
            upstream: Some(origin),
            fill_transcode: Some(crate::ts::HTJ2K_LOSSLESS_RPCL.into()),
            ..Config::default()
        },
    );
    for (file, kept) in [
        (&ct, crate::ts::HTJ2K_LOSSLESS_RPCL),
        (&lossy, "1.2.840.10008.1.2.4.50"),
    ] {
        let (st, se, sop) = uids(file);
        let path = format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}/frames/1");
        let got = ask(
            &edge,
            Method::GET,
            &path,
            &[(
                "accept",
                "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*",
            )],
        );
        assert_eq!(got.status, 200);
        let ct_header = got.parts()[0]
            .header("content-type")
            .expect("ct")
            .to_owned();
        assert!(ct_header.contains(kept), "{ct_header}");
        let (key, _) = current_keys(&*catalog_of(&edge_store), &st, &se, &sop);
        let stored = block_on(edge_store.get(&key))
            .expect("get")
            .expect("stored");
        let obj = dicom_object::OpenFileOptions::new()
            .from_reader(&stored[..])
            .expect("the stored file reads");
        assert_eq!(obj.meta().transfer_syntax().trim_end_matches('\0'), kept);
    }
    // The transcoded frame decodes (openjp2, in builds that have it) to the original pixels.
    if !wado_codec::can_decode(crate::ts::HTJ2K_LOSSLESS_RPCL) {
        return;
    }
    let (st, se, sop) = uids(&ct);
    let path = format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}/frames/1");
    let got = ask(
        &edge,
        Method::GET,
        &path,
        &[(
            "accept",
            "multipart/related; type=\"application/octet-stream\"",
        )],
    );
    assert_eq!(got.status, 200);
    assert_eq!(got.parts()[0].body, &pixel_bytes(&ct)[..]);
}

/// An origin that lets its cache write and follow: a writer (anonymous writes allowed) holding
/// `files`, and a cache in front of it reading its change feed before every read.
fn following(files: &[Bytes]) -> (Service, Arc<ServiceOrigin>) {
    let origin = Arc::new(ServiceOrigin::new(test_service(
        store_with(files),
        super::lifecycle::writer(),
    )));
    let edge = test_service(
        Arc::new(MemoryStore::new()),
        Config {
            upstream: Some(origin.clone()),
            origin_feed: Some(0),
            ..Config::default()
        },
    );
    (edge, origin)
}

/// The SOP Instance UIDs and Patient's Names of a metadata answer.
fn sops_and_names(got: &Got) -> Vec<(String, String)> {
    let json: serde_json::Value = serde_json::from_slice(&got.body).expect("JSON");
    let mut out: Vec<(String, String)> = json
        .as_array()
        .expect("array")
        .iter()
        .map(|i| {
            (
                i["00080018"]["Value"][0].as_str().unwrap_or("").to_owned(),
                i["00100010"]["Value"][0]["Alphabetic"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The Patient's Name in a file, as dicom-rs reads it.
fn name_in(file: &[u8]) -> String {
    let o = dicom_object::OpenFileOptions::new()
        .from_reader(file)
        .expect("parse");
    o.element(tags::PATIENT_NAME)
        .expect("name")
        .to_str()
        .expect("str")
        .trim_end_matches([' ', '\0'])
        .to_owned()
}

/// A cache following its origin's change feed: a series deleted there, a correction, a new
/// instance, each seen by the next read of the cache (metadata, retrieval, search, its own
/// feed); and an origin whose feed does not answer is said to be so on the cache's answers.
#[test]
fn a_cache_following_its_origin_drops_what_changed_there() {
    use super::lifecycle::at;
    let a = fixture!("study77654033_CT2_17106.dcm");
    let b = fixture!("study77654033_CT2_17136.dcm");
    // A second series of the study.
    let c = super::stow::with_uid(
        &super::stow::as_instance(&b, "1.2.826.0.1.3680043.8.498.88.1"),
        tags::SERIES_INSTANCE_UID,
        "1.2.826.0.1.3680043.8.498.88",
    );
    let (st, ct_series, a_sop) = uids(&a);
    let (_, _, b_sop) = uids(&b);
    let (c_st, cr_series, c_sop) = uids(&c);
    assert_eq!(c_st, st);
    assert_ne!(cr_series, ct_series);
    let (edge, origin) = following(&[a.clone(), b.clone(), c.clone()]);
    let t0 = NOW + 100;
    let meta = format!("{ROOT}/studies/{st}/metadata");
    let got = at(&edge, Method::GET, &meta, t0);
    assert_eq!(got.status, 200);
    let old_name = name_in(&a);
    let mut want: Vec<(String, String)> = [&a_sop, &b_sop, &c_sop]
        .iter()
        .map(|s| ((*s).clone(), old_name.clone()))
        .collect();
    want.sort();
    assert_eq!(sops_and_names(&got), want);

    // Deleted at the origin: gone from the cache's next answers, and from its store.
    let cr = format!("{ROOT}/studies/{st}/series/{cr_series}");
    assert_eq!(at(&origin.svc, Method::DELETE, &cr, t0 + 1).status, 204);
    let got = at(&edge, Method::GET, &meta, t0 + 2);
    assert_eq!(got.status, 200);
    want.retain(|(s, _)| *s != c_sop);
    assert_eq!(sops_and_names(&got), want);
    assert_eq!(
        at(&edge, Method::GET, &format!("{cr}/metadata"), t0 + 2).status,
        404
    );
    let own = super::lifecycle::feed(&edge, 100, t0 + 2);
    assert!(
        own.iter()
            .any(|r| r["Action"] == "delete" && r["SOPInstanceUID"] == c_sop.as_str()),
        "the cache's own feed says it dropped the deleted instance: {own:?}"
    );

    // Corrected at the origin: the cache serves the origin's new files.
    let body = br#"{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Corrected^At^Origin"}]}}"#;
    let got = super::stow::send_at(
        &origin.svc,
        Method::PATCH,
        &format!("{ROOT}/studies/{st}"),
        "application/dicom+json",
        body,
        t0 + 3,
    );
    assert_eq!(got.status, 204, "{}", String::from_utf8_lossy(&got.body));
    let file = format!("{ROOT}/studies/{st}/series/{ct_series}/instances/{a_sop}");
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("edge.test"));
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/dicom; transfer-syntax=*"),
    );
    let fetch = |svc: &Service, now: u64| {
        let req = Request {
            client: None,
            who: Default::default(),
            now,
            ..get_request(&file, &h)
        };
        block_on(async {
            let r = svc.handle(&req).await;
            assert_eq!(r.status, 200);
            match r.body {
                Body::Full(b) => b.to_vec(),
                Body::Stream(s) => {
                    let chunks: Vec<Result<Bytes>> = s.collect().await;
                    chunks
                        .into_iter()
                        .flat_map(|c| c.expect("chunk").to_vec())
                        .collect()
                }
                Body::Empty => Vec::new(),
            }
        })
    };
    let mine = fetch(&edge, t0 + 4);
    let theirs = fetch(&origin.svc, t0 + 4);
    // A single part, or the first of a multipart body.
    let part = |b: &[u8]| match crate::wire::multipart::parse(&boundary_from_entropy([7; 16]), b) {
        Ok(parts) => parts[0].body.to_vec(),
        Err(_) => b.to_vec(),
    };
    assert_eq!(name_in(&part(&mine)), "Corrected^At^Origin");
    assert_eq!(part(&mine), part(&theirs), "the origin's corrected file");
    let got = at(&edge, Method::GET, &meta, t0 + 4);
    for (_, name) in sops_and_names(&got) {
        assert_eq!(name, "Corrected^At^Origin");
    }

    // Stored at the origin into a new series of the study: the study is asked for again.
    let new_sop = "1.2.826.0.1.3680043.8.498.77.1";
    let new_series = "1.2.826.0.1.3680043.8.498.77";
    let d = super::stow::with_uid(
        &super::stow::as_instance(&b, new_sop),
        tags::SERIES_INSTANCE_UID,
        new_series,
    );
    let got = super::stow::post_at(
        &origin.svc,
        &format!("{ROOT}/studies"),
        &super::stow::multipart(&[("application/dicom", &d)]),
        t0 + 5,
    );
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let got = at(&edge, Method::GET, &meta, t0 + 6);
    let sops: Vec<String> = sops_and_names(&got).into_iter().map(|(s, _)| s).collect();
    let mut expected = vec![a_sop.clone(), b_sop.clone(), new_sop.to_owned()];
    expected.sort();
    assert_eq!(sops, expected);
    let search = at(
        &edge,
        Method::GET,
        &format!("{ROOT}/studies/{st}/series"),
        t0 + 6,
    );
    let series: Vec<serde_json::Value> = serde_json::from_slice(&search.body).expect("JSON");
    assert_eq!(series.len(), 2, "the CT series and the new one");

    // The origin's feed stops answering: the cache still serves, and says it may be stale.
    origin
        .feed_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let got = at(&edge, Method::GET, &meta, t0 + 7);
    assert_eq!(got.status, 200);
    let warning = got
        .headers
        .get_all(header::WARNING)
        .iter()
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .collect::<Vec<_>>()
        .join(" | ");
    assert!(
        warning.contains("change feed could not be read"),
        "{warning:?}"
    );
}

/// A change at the origin while the cache fills: the fill that fetched an instance before a
/// correction and the others after it is dropped and made again, so the very answer it was
/// made for shows one version of the study.
#[test]
fn a_fill_the_origin_changed_under_is_made_again() {
    let a = fixture!("study77654033_CT2_17106.dcm");
    let b = fixture!("study77654033_CT2_17136.dcm");
    let c = fixture!("study77654033_CT2_17166.dcm");
    let (st, _, a_sop) = uids(&a);
    let (edge, origin) = following(&[a.clone(), b.clone(), c.clone()]);
    // The first instance fetched is answered as it was, then the study is corrected.
    *origin.meddle.lock().expect("lock") = Some((
        "/instances/".to_owned(),
        format!("{ROOT}/studies/{st}"),
        br#"{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Changed^Meanwhile"}]}}"#.to_vec(),
    ));
    let got = super::lifecycle::at(
        &edge,
        Method::GET,
        &format!("{ROOT}/studies/{st}/metadata"),
        NOW + 100,
    );
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    assert!(origin.meddle.lock().expect("lock").is_none(), "it meddled");
    let got = sops_and_names(&got);
    assert_eq!(got.len(), 3);
    for (sop, name) in &got {
        assert_eq!(name, "Changed^Meanwhile", "{sop} (first: {a_sop})");
    }
}
