//! Handler tests over the memory store, with real DICOM files from the fixtures. Expected
//! values come from the files themselves as dicom-rs reads them, never from our own writer;
//! the end-to-end tests in `tests/` add DCMTK as the oracle.

use super::*;
use crate::dicom::uid::Uid;
use crate::ingest as import;
use crate::service::http::query_param;
use crate::service::plan::rebase_json;
use crate::store::MemoryStore;
use crate::wire::multipart::boundary_from_entropy;
use ::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ::http::{Method, StatusCode};
use bytes::Bytes;
use dicom_dictionary_std::tags;
use futures::executor::block_on;
use futures::StreamExt;
use std::io::Read;

const ROOT: &str = "/dcm4chee-arc/aets/DCM4CHEE/rs";
const PUBLIC: &str = "http://stored.example:9999";

macro_rules! fixture {
    ($name:literal) => {
        Bytes::from_static(include_bytes!(concat!(
            "../../../../tests/fixtures/corpus/",
            $name
        )))
    };
}
fn uids(b: &[u8]) -> (String, String, String) {
    let o = dicom_object::OpenFileOptions::new()
        .from_reader(b)
        .expect("parse fixture");
    let s = |t| {
        o.element(t)
            .expect("uid")
            .to_str()
            .expect("str")
            .trim_end_matches('\0')
            .to_string()
    };
    (
        s(tags::STUDY_INSTANCE_UID),
        s(tags::SERIES_INSTANCE_UID),
        s(tags::SOP_INSTANCE_UID),
    )
}
/// The time the tests' writes say they happen, and their random bytes.
const NOW: u64 = 1_700_000_000;

/// The catalog of a memory store (one per store, made on first use): the tests' stores are
/// searched and listed through it, as a server's are.
fn catalog_of(store: &Arc<MemoryStore>) -> Arc<crate::search::sqlite::SqliteIndex> {
    type Catalogs = Vec<(
        std::sync::Weak<MemoryStore>,
        Arc<crate::search::sqlite::SqliteIndex>,
    )>;
    static CATALOGS: std::sync::Mutex<Catalogs> = std::sync::Mutex::new(Vec::new());
    let mut all = CATALOGS.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|(w, _)| w.strong_count() > 0);
    if let Some((_, c)) = all
        .iter()
        .find(|(w, _)| w.upgrade().is_some_and(|s| Arc::ptr_eq(&s, store)))
    {
        return c.clone();
    }
    let c = Arc::new(crate::search::sqlite::SqliteIndex::memory().expect("sqlite"));
    block_on(crate::search::open(&*c)).expect("schema");
    all.push((Arc::downgrade(store), c.clone()));
    c
}
/// A service over a test store, with its catalog unless `config` names one.
fn test_service(store: Arc<MemoryStore>, mut config: Config) -> Service {
    if config.index.is_none() {
        config.index = Some(catalog_of(&store));
    }
    Service::new(store, config)
}
/// The keys of the current generation of an instance (its file, its index), as `index`
/// names it.
fn current_keys(
    index: &dyn crate::search::Index,
    st: &str,
    se: &str,
    sop: &str,
) -> (String, String) {
    let (st, se, sop) = (
        Uid::parse(st).expect("uid"),
        Uid::parse(se).expect("uid"),
        Uid::parse(sop).expect("uid"),
    );
    let rows = block_on(index.query(crate::search::schema::list_instances(
        index.dialect(),
        "DCM4CHEE",
        &st,
        Some(&se),
        Some(&sop),
    )))
    .expect("query");
    let gen = rows
        .first()
        .and_then(|r| r.get(3))
        .and_then(crate::search::Value::as_str)
        .expect("the catalog holds it")
        .to_owned();
    (
        layout::instance_key(&st, &se, &sop, &gen),
        layout::index_key(&st, &se, &sop, &gen),
    )
}
fn store_with(files: &[Bytes]) -> Arc<MemoryStore> {
    import_into(Arc::new(MemoryStore::new()), files)
}
fn import_into(store: Arc<MemoryStore>, files: &[Bytes]) -> Arc<MemoryStore> {
    import_at(store, files, NOW)
}
/// [`import_into`] at `now` (seconds): when the catalog says the instances were stored.
fn import_at(store: Arc<MemoryStore>, files: &[Bytes], now: u64) -> Arc<MemoryStore> {
    let catalog = catalog_of(&store);
    block_on(async {
        let layout =
            import::ensure_layout(&*store, Some((&*catalog, "DCM4CHEE")), PUBLIC, "DCM4CHEE")
                .await
                .expect("layout");
        let batch =
            import::Batch::new(layout, now, [9; 16]).with_index(catalog.clone(), "DCM4CHEE", None);
        for f in files {
            batch.add(&*store, f.clone()).await.expect("import");
        }
        batch.finish(&*store).await.expect("finish");
        store
    })
}
struct Got {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}
impl Got {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_owned())
            .unwrap_or_default()
    }
    fn parts(&self) -> Vec<crate::wire::multipart::Part<'_>> {
        let b =
            crate::wire::multipart::boundary_of(&self.header("content-type")).expect("boundary");
        crate::wire::multipart::parse(&b, &self.body).expect("multipart")
    }
}
/// A GET of `path` with these headers, as the handler tests send it (entropy 7s, a fixed now).
fn get_request<'a>(path: &'a str, headers: &'a HeaderMap) -> Request<'a> {
    Request {
        client: None,
        who: Default::default(),
        method: &Method::GET,
        path,
        query: None,
        authority: None,
        headers,
        entropy: [7; 16],
        body: Default::default(),
        now: 1_700_000_000,
    }
}
fn get_with(store: &Arc<MemoryStore>, method: Method, path: &str, headers: &[(&str, &str)]) -> Got {
    ask(
        &test_service(store.clone(), Config::default()),
        method,
        path,
        headers,
    )
}
/// One request to `svc`, its body collected; Host is test.local:8080 unless `headers` say.
fn ask(svc: &Service, method: Method, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut h = HeaderMap::new();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        h.insert(header::HOST, HeaderValue::from_static("test.local:8080"));
    }
    for (k, v) in headers {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (path.to_owned(), None),
    };
    let req = Request {
        client: None,
        who: Default::default(),
        method: &method,
        query: q.as_deref(),
        ..get_request(&p, &h)
    };
    block_on(async {
        let r = svc.handle(&req).await;
        let body = match r.body {
            Body::Empty => Vec::new(),
            Body::Full(b) => b.to_vec(),
            Body::Stream(s) => {
                let chunks: Vec<Result<Bytes>> = s.collect().await;
                chunks
                    .into_iter()
                    .map(|c| c.expect("chunk"))
                    .flat_map(|c| c.to_vec())
                    .collect()
            }
        };
        Got {
            status: r.status.as_u16(),
            headers: r.headers,
            body,
        }
    })
}
fn get(store: &Arc<MemoryStore>, path: &str, accept: Option<&str>) -> Got {
    let h: Vec<(&str, &str)> = accept.map(|a| vec![("accept", a)]).unwrap_or_default();
    get_with(store, Method::GET, path, &h)
}
fn pixel_bytes(b: &[u8]) -> Vec<u8> {
    let o = dicom_object::OpenFileOptions::new()
        .from_reader(b)
        .expect("parse");
    o.element(tags::PIXEL_DATA)
        .expect("pixels")
        .to_bytes()
        .expect("bytes")
        .to_vec()
}
/// A copy of a Part-10 file moved into another study (so fixtures from elsewhere mix).
fn in_study(file: &Bytes, study: &str) -> Bytes {
    let mut o = dicom_object::OpenFileOptions::new()
        .from_reader(&file[..])
        .expect("parse");
    o.put(dicom_core::DataElement::new(
        tags::STUDY_INSTANCE_UID,
        dicom_core::VR::UI,
        dicom_core::PrimitiveValue::from(study),
    ));
    let mut out = Vec::new();
    o.write_all(&mut out).expect("write");
    Bytes::from(out)
}
/// `file` relabelled as stored in JPEG XL (1.2.840.10008.1.2.4.112), a compressed syntax this
/// build does not decode.
fn as_jpeg_xl(file: &Bytes) -> Bytes {
    let mut o = dicom_object::OpenFileOptions::new()
        .from_reader(&file[..])
        .expect("parse");
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    let jxl = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get("1.2.840.10008.1.2.4.112")
        .expect("JPEG XL is registered");
    o.meta_mut().set_transfer_syntax(jxl);
    o.meta_mut().update_information_group_length();
    let mut out = Vec::new();
    o.write_all(&mut out).expect("write");
    Bytes::from(out)
}

// After `fixture!`, which they use.
mod correct;
mod frames;
mod http;
mod lifecycle;
mod metadata;
mod retrieve;
mod search;
mod stow;
mod upstream;
