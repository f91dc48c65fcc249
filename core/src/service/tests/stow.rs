//! STOW-RS: what a request stores is retrievable and searchable when the response says so;
//! every failure class is in the response data set; a request cut off stores nothing of the
//! part it was sending. Expected UIDs come from the fixtures as dicom-rs reads them.

use super::*;
use crate::search::sqlite::SqliteIndex;
use crate::store::{ObjectMeta, StoreError};
use serde_json::Value as Json;
use std::ops::Range;

const B: &str = "stow-test-boundary";

/// A multipart/related body written here (not by the server's writer).
pub(super) fn multipart(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ct, body) in parts {
        out.extend_from_slice(format!("--{B}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{B}--\r\n").as_bytes());
    out
}

fn content_type() -> String {
    format!("multipart/related; type=\"application/dicom\"; boundary={B}")
}

fn service(store: Arc<MemoryStore>) -> Service {
    test_service(
        store,
        Config {
            allow_anonymous_writes: true,
            ..Config::default()
        },
    )
}

/// A POST of `chunks` to `path`.
fn post_chunks(
    svc: &Service,
    path: &str,
    headers: &[(&str, &str)],
    chunks: Vec<std::result::Result<Bytes, String>>,
) -> Got {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("test.local:8080"));
    for (k, v) in headers {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    let req = Request {
        client: None,
        who: Default::default(),
        method: &Method::POST,
        body: RequestBody::new(Box::pin(futures::stream::iter(chunks))),
        ..get_request(path, &h)
    };
    block_on(async {
        let r = svc.handle(&req).await;
        let body = match r.body {
            Body::Full(b) => b.to_vec(),
            Body::Empty => Vec::new(),
            Body::Stream(_) => panic!("a STOW-RS response is one buffer"),
        };
        Got {
            status: r.status.as_u16(),
            headers: r.headers,
            body,
        }
    })
}

/// A POST of `body` in chunks of 7 bytes (parts and delimiters split everywhere).
fn post(svc: &Service, path: &str, body: &[u8]) -> Got {
    let ct = content_type();
    let chunks = body
        .chunks(7)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    post_chunks(svc, path, &[("content-type", &ct)], chunks)
}

fn json(got: &Got) -> Json {
    assert_eq!(got.header("content-type"), "application/dicom+json");
    serde_json::from_slice(&got.body).expect("json")
}

fn items<'a>(ds: &'a Json, tag: &str) -> Vec<&'a Json> {
    ds[tag]["Value"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn value(item: &Json, tag: &str) -> Json {
    item[tag]["Value"][0].clone()
}

fn sop_class(b: &[u8]) -> String {
    let o = dicom_object::OpenFileOptions::new()
        .from_reader(b)
        .expect("parse");
    o.element(tags::SOP_CLASS_UID)
        .expect("class")
        .to_str()
        .expect("str")
        .trim_end_matches('\0')
        .to_string()
}

/// The stored keys under `studies/`.
pub(super) fn keys(store: &MemoryStore) -> Vec<String> {
    let mut k: Vec<String> = block_on(store.list("studies/"))
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    k.sort();
    k
}

#[test]
fn stored_instances_are_retrievable_and_searchable_at_once() {
    let files = [
        fixture!("ct_small_ele.dcm"),
        fixture!("mr_small_implicit.dcm"),
        fixture!("mr_small_jpegls_lossless.dcm"),
    ];
    let store = Arc::new(MemoryStore::new());
    let svc = service(store.clone());
    let parts: Vec<(&str, &[u8])> = files
        .iter()
        .map(|f| ("application/dicom", &f[..]))
        .collect();
    let got = post(&svc, &format!("{ROOT}/studies"), &multipart(&parts));
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let ds = json(&got);
    let refs = items(&ds, "00081199");
    assert_eq!(refs.len(), files.len());
    assert!(ds.get("00081198").is_none(), "no failures");
    for (item, file) in refs.iter().zip(&files) {
        let (st, se, sop) = uids(file);
        assert_eq!(value(item, "00081155"), sop);
        assert_eq!(value(item, "00081150"), sop_class(file));
        assert!(
            item.get("00081196").is_none(),
            "a new instance has no warning"
        );
        let url = value(item, "00081190");
        let want = format!("http://test.local:8080{ROOT}/studies/{st}/series/{se}/instances/{sop}");
        assert_eq!(url, want.as_str());
        // Retrievable through the URL the response gives, byte for byte.
        let path = want.trim_start_matches("http://test.local:8080");
        let as_stored = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";
        let r = ask(&svc, Method::GET, path, &[("accept", as_stored)]);
        assert_eq!(r.status, 200);
        assert!(r.parts()[0].body == &file[..], "{sop} as sent");
        // Searchable at once.
        let r = ask(
            &svc,
            Method::GET,
            &format!("{ROOT}/instances?SOPInstanceUID={sop}"),
            &[],
        );
        assert_eq!(r.status, 200);
        let found: Json = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(found.as_array().map(Vec::len), Some(1), "{sop} found");
        // And in the series metadata.
        let r = ask(
            &svc,
            Method::GET,
            &format!("{ROOT}/studies/{st}/series/{se}/metadata"),
            &[],
        );
        assert!(String::from_utf8_lossy(&r.body).contains(&sop));
    }
    // Three instances of three studies: no single study URL (Type 2, empty).
    let studies: std::collections::BTreeSet<String> = files.iter().map(|f| uids(f).0).collect();
    if studies.len() > 1 {
        assert!(ds["00081190"].get("Value").is_none());
    }
    // The same request again: stored (unchanged), still 200.
    let again = post(&svc, &format!("{ROOT}/studies"), &multipart(&parts));
    assert_eq!(again.status, 200);
}

#[test]
fn every_failure_class_is_in_the_response_data_set() {
    let ct = fixture!("ct_small_ele.dcm");
    let (study, _, ct_sop) = uids(&ct);
    let other = in_study(&fixture!("mr_small_implicit.dcm"), "1.2.3.4.5.6.7");
    let (_, _, other_sop) = uids(&other);
    let store = Arc::new(MemoryStore::new());
    let svc = service(store.clone());
    let body = multipart(&[
        ("application/dicom", &ct),
        ("application/dicom", &other),
        ("application/dicom", b"not a DICOM file at all"),
        ("text/plain", b"hello"),
    ]);
    let got = post(&svc, &format!("{ROOT}/studies/{study}"), &body);
    assert_eq!(got.status, 202, "{}", String::from_utf8_lossy(&got.body));
    let ds = json(&got);
    assert_eq!(
        value(&ds, "00081190"),
        format!("http://test.local:8080{ROOT}/studies/{study}").as_str()
    );
    let refs = items(&ds, "00081199");
    assert_eq!(refs.len(), 1);
    assert_eq!(value(refs[0], "00081155"), ct_sop.as_str());
    let failed = items(&ds, "00081198");
    let reasons: Vec<u64> = failed
        .iter()
        .map(|i| value(i, "00081197").as_u64().expect("US"))
        .collect();
    assert_eq!(reasons, [0xA900, 0xC000, 0xC000]);
    // The instance of another study is named, with its class.
    assert_eq!(value(failed[0], "00081155"), other_sop.as_str());
    assert_eq!(value(failed[0], "00081150"), sop_class(&other));
    // Each reason is told in a Warning.
    let warnings: Vec<String> = got
        .headers
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("not of study")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("text/plain")),
        "{warnings:?}"
    );
    // Nothing of the refused ones is stored.
    assert!(keys(&store).iter().all(|k| !k.contains(&other_sop)));

    // None stored: 409, with the reasons.
    let got = post(
        &svc,
        &format!("{ROOT}/studies/{study}"),
        &multipart(&[("application/dicom", &other)]),
    );
    assert_eq!(got.status, 409);
    let ds = json(&got);
    assert!(ds.get("00081199").is_none());
    assert_eq!(value(items(&ds, "00081198")[0], "00081197"), 0xA900);
}

/// A store that is full: every write fails for lack of space.
#[derive(Debug, Default)]
struct Full(MemoryStore);

#[async_trait::async_trait]
impl Store for Full {
    async fn get(&self, key: &str) -> std::result::Result<Option<Bytes>, StoreError> {
        self.0.get(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
    ) -> std::result::Result<Option<Bytes>, StoreError> {
        self.0.get_range(key, range).await
    }
    async fn head(&self, key: &str) -> std::result::Result<Option<ObjectMeta>, StoreError> {
        self.0.head(key).await
    }
    async fn list(&self, prefix: &str) -> std::result::Result<Vec<ObjectMeta>, StoreError> {
        self.0.list(prefix).await
    }
    async fn put(&self, key: &str, data: Bytes) -> std::result::Result<(), StoreError> {
        if key.starts_with("studies/") {
            return Err(StoreError::Full("no space left on device".into()));
        }
        self.0.put(key, data).await
    }
    async fn delete(&self, key: &str) -> std::result::Result<(), StoreError> {
        self.0.delete(key).await
    }
}

#[test]
fn a_full_store_is_out_of_resources() {
    let ct = fixture!("ct_small_ele.dcm");
    let index: Arc<dyn crate::search::Index> = Arc::new(SqliteIndex::memory().expect("index"));
    let svc = Service::new(
        Arc::new(Full::default()),
        Config {
            index: Some(index),
            allow_anonymous_writes: true,
            ..Config::default()
        },
    );
    let got = post(
        &svc,
        &format!("{ROOT}/studies"),
        &multipart(&[("application/dicom", &ct)]),
    );
    assert_eq!(got.status, 409);
    let ds = json(&got);
    assert_eq!(value(items(&ds, "00081198")[0], "00081197"), 0xA700);
}

#[test]
fn a_replacement_is_stored_with_a_warning_reason() {
    let (ct, changed) = ct_and_another_version();
    let store = Arc::new(MemoryStore::new());
    let svc = service(store.clone());
    let path = format!("{ROOT}/studies");
    assert_eq!(
        post(&svc, &path, &multipart(&[("application/dicom", &ct)])).status,
        200
    );
    let got = post(&svc, &path, &multipart(&[("application/dicom", &changed)]));
    assert_eq!(got.status, 200);
    let refs = json(&got);
    let refs = items(&refs, "00081199");
    assert_eq!(value(refs[0], "00081196"), 0xB000);
    // The new bytes are what is served.
    let (st, se, sop) = uids(&ct);
    let r = ask(
        &svc,
        Method::GET,
        &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}"),
        &[],
    );
    assert!(r.parts()[0].body == &changed[..], "the new bytes");
}

#[test]
fn malformed_requests_are_refused_with_reasons() {
    let ct = fixture!("ct_small_ele.dcm");
    let body = multipart(&[("application/dicom", &ct)]);
    let store = Arc::new(MemoryStore::new());
    let svc = service(store.clone());
    let path = format!("{ROOT}/studies");
    let send = |headers: &[(&str, &str)], body: &[u8]| {
        post_chunks(&svc, &path, headers, vec![Ok(Bytes::copy_from_slice(body))])
    };
    let ct_json = format!("multipart/related; type=\"application/dicom+json\"; boundary={B}");
    let ct_ok = content_type();
    let empty = format!("--{B}--\r\n");
    let cases: Vec<(Vec<(&str, &str)>, &[u8], u16, &str)> = vec![
        (
            vec![("content-type", &ct_json)],
            &body,
            415,
            "application/dicom+json",
        ),
        (
            vec![("content-type", "application/dicom")],
            &body,
            415,
            "multipart/related",
        ),
        (vec![], &body, 415, "multipart/related"),
        (
            vec![(
                "content-type",
                "multipart/related; type=\"application/dicom\"",
            )],
            &body,
            400,
            "boundary",
        ),
        (
            vec![("content-type", &ct_ok)],
            b"no delimiter here",
            400,
            "malformed",
        ),
        (
            vec![("content-type", &ct_ok)],
            empty.as_bytes(),
            400,
            "no part",
        ),
    ];
    let cases: Vec<_> = cases
        .into_iter()
        .map(|(h, b, s, w)| (h, b.to_vec(), s, w))
        .collect();
    for (headers, body, status, why) in &cases {
        let got = send(headers, body);
        assert_eq!(got.status, *status, "{headers:?}");
        let text = String::from_utf8_lossy(&got.body);
        assert!(text.contains(why), "{headers:?}: {text}");
    }
    // Accept that neither JSON nor XML satisfies.
    let got = send(
        &[("content-type", &content_type()), ("accept", "image/png")],
        &body,
    );
    assert_eq!(got.status, 406);
    // POST where nothing is stored: 405.
    let got = post_chunks(
        &svc,
        &format!("{ROOT}/studies/1.2/series"),
        &[("content-type", &content_type())],
        vec![Ok(Bytes::from(body.clone()))],
    );
    assert_eq!(got.status, 405);
    assert!(
        keys(&store).is_empty(),
        "nothing stored by refused requests"
    );
}

#[test]
fn the_size_limit_is_413_announced_or_streamed() {
    let ct = fixture!("ct_small_ele.dcm");
    let body = multipart(&[("application/dicom", &ct), ("application/dicom", &ct)]);
    let store = Arc::new(MemoryStore::new());
    let svc = test_service(
        store.clone(),
        Config {
            max_store_bytes: (body.len() - 10) as u64,
            allow_anonymous_writes: true,
            ..Config::default()
        },
    );
    let path = format!("{ROOT}/studies");
    let len = body.len().to_string();
    let got = post_chunks(
        &svc,
        &path,
        &[("content-type", &content_type()), ("content-length", &len)],
        vec![Ok(Bytes::from(body.clone()))],
    );
    assert_eq!(got.status, 413);
    assert!(keys(&store).is_empty());
    // Without a Content-Length (chunked): refused once past the limit.
    let got = post(&svc, &path, &body);
    assert_eq!(got.status, 413);
}

#[test]
fn the_response_is_xml_when_asked() {
    let ct = fixture!("ct_small_ele.dcm");
    let svc = service(Arc::new(MemoryStore::new()));
    let got = post_chunks(
        &svc,
        &format!("{ROOT}/studies"),
        &[
            ("content-type", &content_type()),
            ("accept", "application/dicom+xml"),
        ],
        vec![Ok(Bytes::from(multipart(&[("application/dicom", &ct)])))],
    );
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), "application/dicom+xml");
    let xml = String::from_utf8_lossy(&got.body);
    let (_, _, sop) = uids(&ct);
    assert!(xml.contains("tag=\"00081199\" vr=\"SQ\""), "{xml}");
    assert!(xml.contains(&sop));
}

#[test]
fn a_body_broken_off_mid_part_stores_the_whole_parts_only() {
    let first = fixture!("ct_small_ele.dcm");
    let second = fixture!("mr_small_implicit.dcm");
    let body = multipart(&[
        ("application/dicom", &first),
        ("application/dicom", &second),
    ]);
    // Cut in the middle of the second part's bytes.
    let cut = memchr::memmem::find(&body, &second[..200]).expect("second part") + second.len() / 2;
    let store = Arc::new(MemoryStore::new());
    let svc = service(store.clone());
    let got = post_chunks(
        &svc,
        &format!("{ROOT}/studies"),
        &[("content-type", &content_type())],
        vec![
            Ok(Bytes::copy_from_slice(&body[..cut])),
            Err("connection reset by peer".into()),
        ],
    );
    assert_eq!(got.status, 400);
    assert!(String::from_utf8_lossy(&got.body).contains("broke off"));
    let (_, _, sop1) = uids(&first);
    let (_, _, sop2) = uids(&second);
    let stored = keys(&store);
    assert!(stored.iter().any(|k| k.contains(&sop1)), "{stored:?}");
    assert!(!stored.iter().any(|k| k.contains(&sop2)), "{stored:?}");
    // The whole one is retrievable and searchable; its study's metadata is built.
    let r = ask(
        &svc,
        Method::GET,
        &format!("{ROOT}/instances?SOPInstanceUID={sop1}"),
        &[],
    );
    let found: Json = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(found.as_array().map(Vec::len), Some(1));
    let (st1, _, _) = uids(&first);
    let r = ask(
        &svc,
        Method::GET,
        &format!("{ROOT}/studies/{st1}/metadata"),
        &[],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn concurrent_requests_storing_one_instance_take_turns() {
    let a = fixture!("ct_small_ele.dcm");
    let mut b = a.to_vec();
    let last = b.len() - 1;
    b[last] ^= 1;
    let b = Bytes::from(b);
    let store = Arc::new(MemoryStore::new());
    let svc = service(store.clone());
    let path = format!("{ROOT}/studies");
    let ct = content_type();
    let body = |f: &Bytes| {
        multipart(&[("application/dicom", f)])
            .chunks(100)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>()
    };
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("test.local:8080"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&ct).expect("ct"),
    );
    for _ in 0..5 {
        let reqs: Vec<Request<'_>> = [&a, &b, &a, &b]
            .iter()
            .map(|f| Request {
                client: None,
                who: Default::default(),
                method: &Method::POST,
                body: RequestBody::new(Box::pin(futures::stream::iter(body(f)))),
                ..get_request(&path, &h)
            })
            .collect();
        let statuses: Vec<u16> = block_on(futures::future::join_all(
            reqs.iter()
                .map(|r| async { svc.handle(r).await.status.as_u16() }),
        ));
        assert_eq!(statuses, [200, 200, 200, 200]);
        // Whichever came last, the index describes the file stored.
        let (st, se, sop) = uids(&a);
        let (_, key) = current_keys(
            &**svc.config().index.as_ref().expect("catalog"),
            &st,
            &se,
            &sop,
        );
        let idx = block_on(store.get(&key)).expect("get").expect("index");
        let idx = layout::InstanceIndex::from_json("idx", &idx).expect("index");
        let file = block_on(store.get(&idx.file_key()))
            .expect("get")
            .expect("file");
        assert_eq!(layout::sha256_hex(&file), idx.source.sha256);
    }
}

#[test]
fn storing_takes_a_token_that_may_write_there() {
    let ct = fixture!("ct_small_ele.dcm");
    let body = multipart(&[("application/dicom", &ct)]);
    let tokens =
        "readreadreadread1 *\nwritewritewrite2 DCM4CHEE write\nwriteotherother3 OTHER write\n";
    let auth = crate::auth::Auth {
        tokens: Some(crate::auth::TokenAuth::parse(tokens).expect("tokens")),
        ..Default::default()
    };
    let store = Arc::new(MemoryStore::new());
    let svc = test_service(
        store.clone(),
        Config {
            auth: Some(Arc::new(auth)),
            ae_titles: vec!["DCM4CHEE".into(), "OTHER".into()],
            allow_anonymous_writes: true,
            ..Config::default()
        },
    );
    let ct_header = content_type();
    let send = |token: Option<&str>| {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut h = vec![("content-type", ct_header.as_str())];
        if let Some(b) = &bearer {
            h.push(("authorization", b.as_str()));
        }
        post_chunks(
            &svc,
            &format!("{ROOT}/studies"),
            &h,
            vec![Ok(Bytes::from(body.clone()))],
        )
        .status
    };
    assert_eq!(send(None), 401);
    assert_eq!(send(Some("readreadreadread1")), 403);
    assert_eq!(send(Some("writeotherother3")), 403);
    assert!(keys(&store).is_empty(), "refused requests store nothing");
    assert_eq!(send(Some("writewritewrite2")), 200);
    // A read-only server refuses every store, and says so.
    let ro = test_service(
        Arc::new(MemoryStore::new()),
        Config {
            read_only: true,
            allow_anonymous_writes: true,
            ..Config::default()
        },
    );
    let got = post(&ro, &format!("{ROOT}/studies"), &body);
    assert_eq!(got.status, 405);
    assert!(String::from_utf8_lossy(&got.body).contains("read-only"));
}

#[test]
fn an_instance_larger_than_the_limit_fails_and_the_others_are_stored() {
    let small = fixture!("mr_small_implicit.dcm");
    let large = fixture!("ct_small_ele.dcm");
    assert!(large.len() > small.len() + 1000);
    let store = Arc::new(MemoryStore::new());
    let svc = test_service(
        store.clone(),
        Config {
            max_instance_bytes: (small.len() + 100) as u64,
            allow_anonymous_writes: true,
            ..Config::default()
        },
    );
    let body = multipart(&[("application/dicom", &large), ("application/dicom", &small)]);
    let got = post(&svc, &format!("{ROOT}/studies"), &body);
    assert_eq!(got.status, 202);
    let ds = json(&got);
    let failed = items(&ds, "00081198");
    assert_eq!(value(failed[0], "00081197"), 0xA700);
    assert_eq!(value(failed[0], "00081155"), uids(&large).2.as_str());
    assert_eq!(
        value(items(&ds, "00081199")[0], "00081155"),
        uids(&small).2.as_str()
    );
    assert!(keys(&store).iter().all(|k| !k.contains(&uids(&large).2)));
}

/// `file` as another instance: a new SOP Instance UID (data set and meta header).
pub(super) fn as_instance(file: &Bytes, sop: &str) -> Bytes {
    let mut o = dicom_object::OpenFileOptions::new()
        .from_reader(&file[..])
        .expect("parse");
    o.put(dicom_core::DataElement::new(
        tags::SOP_INSTANCE_UID,
        dicom_core::VR::UI,
        dicom_core::PrimitiveValue::from(sop),
    ));
    o.meta_mut().media_storage_sop_instance_uid = sop.to_owned();
    let mut out = Vec::new();
    o.write_all(&mut out).expect("write");
    Bytes::from(out)
}

#[test]
fn a_long_request_is_rebuilt_as_it_goes_and_every_instance_is_found() {
    let base = fixture!("sc_rgb_odd_3x3.dcm");
    let (st, se, _) = uids(&base);
    let n = 2_300; // past REBUILD_EVERY twice
    let files: Vec<Bytes> = (0..n)
        .map(|i| as_instance(&base, &format!("1.2.826.0.1.3680043.8.498.7.{i}")))
        .collect();
    let parts: Vec<(&str, &[u8])> = files
        .iter()
        .map(|f| ("application/dicom", &f[..]))
        .collect();
    let index: Arc<dyn crate::search::Index> = Arc::new(SqliteIndex::memory().expect("index"));
    let svc = test_service(
        Arc::new(MemoryStore::new()),
        Config {
            index: Some(index),
            max_results: 10_000,
            allow_anonymous_writes: true,
            ..Config::default()
        },
    );
    let body = multipart(&parts);
    let ct = content_type();
    let chunks = body
        .chunks(64 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let got = post_chunks(
        &svc,
        &format!("{ROOT}/studies"),
        &[("content-type", &ct)],
        chunks,
    );
    assert_eq!(got.status, 200);
    let ds = json(&got);
    assert_eq!(items(&ds, "00081199").len(), n);
    let r = ask(
        &svc,
        Method::GET,
        &format!("{ROOT}/studies/{st}/series/{se}/instances?limit=5000"),
        &[],
    );
    let found: Json = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(found.as_array().map(Vec::len), Some(n));
    let r = ask(
        &svc,
        Method::GET,
        &format!("{ROOT}/studies/{st}/series/{se}/metadata"),
        &[],
    );
    let listed: Json = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(n));
}

/// `file` with one UI attribute of its data set changed.
pub(super) fn with_uid(file: &Bytes, tag: dicom_core::Tag, uid: &str) -> Bytes {
    let mut o = dicom_object::OpenFileOptions::new()
        .from_reader(&file[..])
        .expect("parse");
    o.put(dicom_core::DataElement::new(
        tag,
        dicom_core::VR::UI,
        dicom_core::PrimitiveValue::from(uid),
    ));
    let mut out = Vec::new();
    o.write_all(&mut out).expect("write");
    Bytes::from(out)
}

/// One SOP Instance UID names one instance: the same UID under another study or series is
/// refused (Failure Reason 0111, the stored study and series named), in another request as in
/// the same one, and what was stored stays the only instance of that UID.
#[test]
fn a_sop_instance_uid_stored_elsewhere_is_refused() {
    let ct = fixture!("ct_small_ele.dcm");
    let (st, se, sop) = uids(&ct);
    let other_study = with_uid(
        &ct,
        tags::STUDY_INSTANCE_UID,
        "1.2.826.0.1.3680043.8.498.91",
    );
    let other_series = with_uid(
        &ct,
        tags::SERIES_INSTANCE_UID,
        "1.2.826.0.1.3680043.8.498.92",
    );
    let store = Arc::new(MemoryStore::new());
    let svc = service(store.clone());
    let got = post(
        &svc,
        &format!("{ROOT}/studies"),
        &multipart(&[("application/dicom", &ct)]),
    );
    assert_eq!(got.status, 200);
    // Another request, another study: 409, the reason naming where it is.
    let got = post(
        &svc,
        &format!("{ROOT}/studies"),
        &multipart(&[("application/dicom", &other_study)]),
    );
    assert_eq!(got.status, 409);
    let ds = json(&got);
    let failed = items(&ds, "00081198");
    assert_eq!(value(failed[0], "00081197"), 0x0111);
    assert_eq!(value(failed[0], "00081155"), sop.as_str());
    let warning = got.header("warning");
    assert!(warning.contains(&st) && warning.contains(&se), "{warning}");
    // In one request: the other series refused, the same file again unchanged.
    let got = post(
        &svc,
        &format!("{ROOT}/studies"),
        &multipart(&[
            ("application/dicom", &other_series),
            ("application/dicom", &ct),
        ]),
    );
    assert_eq!(got.status, 202);
    let ds = json(&got);
    assert_eq!(value(items(&ds, "00081198")[0], "00081197"), 0x0111);
    assert_eq!(items(&ds, "00081199").len(), 1);
    // One instance of the UID, where it was first stored, found once.
    let files: Vec<String> = keys(&store)
        .into_iter()
        .filter(|k| k.contains(&format!("/{sop}-")) && k.ends_with(".dcm"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with(&format!("studies/{st}/series/{se}/instances/{sop}-")));
    let r = ask(
        &svc,
        Method::GET,
        &format!("{ROOT}/instances?SOPInstanceUID={sop}"),
        &[],
    );
    let found: Json = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(found.as_array().map(Vec::len), Some(1));
}

/// `sc_deflated.dcm` with `extra` more bytes of zeros in a private OB element: a few more
/// kilobytes stored, `extra` more once inflated.
fn deflated_with_zeros(extra: u32) -> Bytes {
    use std::io::{Read, Write};
    let file = fixture!("sc_deflated.dcm");
    let start = usize::try_from(
        crate::dicom::scan::scan_meta(&file)
            .expect("meta")
            .dataset_offset,
    )
    .expect("offset");
    let mut ds = Vec::new();
    flate2::read::DeflateDecoder::new(&file[start..])
        .read_to_end(&mut ds)
        .expect("inflate");
    // (7FE1,0010) LO private creator, (7FE1,1010) OB of zeros: after the pixel data.
    ds.extend_from_slice(&[0xE1, 0x7F, 0x10, 0x00, b'L', b'O', 10, 0]);
    ds.extend_from_slice(b"WADO TEST ");
    ds.extend_from_slice(&[0xE1, 0x7F, 0x10, 0x10, b'O', b'B', 0, 0]);
    ds.extend_from_slice(&extra.to_le_bytes());
    ds.resize(ds.len() + extra as usize, 0);
    let mut out = file[..start].to_vec();
    let mut enc = flate2::write::DeflateEncoder::new(&mut out, flate2::Compression::best());
    enc.write_all(&ds).expect("deflate");
    enc.finish().expect("deflate");
    Bytes::from(out)
}

/// A Deflated instance counts at its inflated size: one that inflates past the instance limit
/// fails (A700) although it is small as sent; one within it is stored, and converting it on
/// retrieval is budgeted at its inflated size.
#[test]
fn a_deflated_instance_counts_at_its_inflated_size() {
    let bomb = deflated_with_zeros(64 << 20);
    assert!(bomb.len() < 1 << 20, "{} bytes sent", bomb.len());
    let store = Arc::new(MemoryStore::new());
    let svc = test_service(
        store.clone(),
        Config {
            max_instance_bytes: 16 << 20,
            allow_anonymous_writes: true,
            ..Config::default()
        },
    );
    let got = post(
        &svc,
        &format!("{ROOT}/studies"),
        &multipart(&[("application/dicom", &bomb)]),
    );
    assert_eq!(got.status, 409);
    let ds = json(&got);
    assert_eq!(value(items(&ds, "00081198")[0], "00081197"), 0xA700);
    assert!(
        got.header("warning").contains("inflates past"),
        "{}",
        got.header("warning")
    );
    assert!(keys(&store).is_empty());
    // Within the limit: stored, and the index knows what reading it costs.
    let small = deflated_with_zeros(4 << 20);
    let got = post(
        &svc,
        &format!("{ROOT}/studies"),
        &multipart(&[("application/dicom", &small)]),
    );
    assert_eq!(got.status, 200);
    let idx_key = keys(&store)
        .into_iter()
        .find(|k| k.ends_with(".index.json"))
        .expect("index");
    let idx = crate::layout::InstanceIndex::from_json(
        &idx_key,
        &block_on(store.get(&idx_key)).expect("get").expect("index"),
    )
    .expect("parse");
    assert!(idx.inflated.expect("inflated") > 4 << 20);
    assert_eq!(idx.source.size, small.len() as u64);
}

/// A request of more parts than the server takes is refused past them (413, saying how
/// many), those before stored whole and listed.
#[test]
fn a_request_of_too_many_parts_is_refused_past_them() {
    let base = fixture!("sc_rgb_odd_3x3.dcm");
    let files: Vec<Bytes> = (0..5)
        .map(|i| as_instance(&base, &format!("1.2.826.0.1.3680043.8.498.8.{i}")))
        .collect();
    let parts: Vec<(&str, &[u8])> = files
        .iter()
        .map(|f| ("application/dicom", &f[..]))
        .collect();
    let store = Arc::new(MemoryStore::new());
    let svc = test_service(
        store.clone(),
        Config {
            max_store_parts: 3,
            allow_anonymous_writes: true,
            ..Config::default()
        },
    );
    let got = post(&svc, &format!("{ROOT}/studies"), &multipart(&parts));
    assert_eq!(got.status, 413);
    let text = String::from_utf8_lossy(&got.body);
    assert!(text.contains("at most 3 instances"), "{text}");
    let stored = keys(&store).iter().filter(|k| k.ends_with(".dcm")).count();
    assert_eq!(stored, 3);
}

/// A POST of `body` at `now` (seconds).
pub(super) fn post_at(svc: &Service, path: &str, body: &[u8], now: u64) -> Got {
    send_at(svc, Method::POST, path, &content_type(), body, now)
}

/// A request of `method` with a body of `content_type` at `now` (seconds).
pub(super) fn send_at(
    svc: &Service,
    method: Method,
    path: &str,
    content_type: &str,
    body: &[u8],
    now: u64,
) -> Got {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("test.local:8080"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("value"),
    );
    let req = Request {
        client: None,
        who: Default::default(),
        method: &method,
        body: RequestBody::new(Box::pin(futures::stream::iter([Ok::<_, String>(
            Bytes::copy_from_slice(body),
        )]))),
        now,
        ..get_request(path, &h)
    };
    block_on(async {
        let r = svc.handle(&req).await;
        Got {
            status: r.status.as_u16(),
            headers: r.headers,
            body: match r.body {
                Body::Full(b) => b.to_vec(),
                _ => Vec::new(),
            },
        }
    })
}

/// A replaced version stays while a reader may still be reading it (the grace period), and a
/// later write deletes it once that has passed; the current version stays.
#[test]
fn replaced_versions_are_deleted_once_their_grace_has_passed() {
    let (ct, changed) = ct_and_another_version();
    let store = Arc::new(MemoryStore::new());
    let svc = service(store.clone());
    let path = format!("{ROOT}/studies");
    let t0 = 1_700_000_000;
    assert_eq!(
        post_at(&svc, &path, &multipart(&[("application/dicom", &ct)]), t0).status,
        200
    );
    let first = keys(&store);
    assert_eq!(first.len(), 2, "{first:?}");
    let got = post_at(
        &svc,
        &path,
        &multipart(&[("application/dicom", &changed)]),
        t0 + 1,
    );
    assert_eq!(got.status, 200);
    let both = keys(&store);
    assert_eq!(
        both.len(),
        4,
        "both versions while the first may be read: {both:?}"
    );
    // Another instance, a minute later: the first version is still in its grace period.
    let other = as_instance(&ct, "1.2.826.0.1.3680043.2.1125.77");
    let t1 = t0 + crate::service::SWEEP_INTERVAL + 1;
    assert_eq!(
        post_at(
            &svc,
            &path,
            &multipart(&[("application/dicom", &other)]),
            t1
        )
        .status,
        200
    );
    assert!(first.iter().all(|k| keys(&store).contains(k)));
    // Once its grace has passed, the next write deletes it.
    let another = as_instance(&ct, "1.2.826.0.1.3680043.2.1125.78");
    let t2 = t1 + crate::ingest::RETIRED_GRACE + crate::service::SWEEP_INTERVAL;
    assert_eq!(
        post_at(
            &svc,
            &path,
            &multipart(&[("application/dicom", &another)]),
            t2
        )
        .status,
        200
    );
    let now = keys(&store);
    assert!(first.iter().all(|k| !now.contains(k)), "{now:?}");
    assert_eq!(now.len(), 6, "{now:?}");
    // What is served is the replacement.
    let (st, se, sop) = uids(&ct);
    let r = ask(
        &svc,
        Method::GET,
        &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}"),
        &[],
    );
    assert!(r.parts()[0].body == &changed[..], "the new bytes");
}

/// A small CT and another version of it (its last byte changed: same UIDs, same size).
fn ct_and_another_version() -> (Bytes, Vec<u8>) {
    let ct = fixture!("ct_small_ele.dcm");
    let mut changed = ct.to_vec();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    (ct, changed)
}
