//! Handler tests over the memory store, with real DICOM files from the fixtures. Expected
//! values come from the files themselves as dicom-rs reads them, never from our own writer;
//! the end-to-end tests in `tests/` add DCMTK as the oracle.

use super::*;
use crate::layout::import;
use crate::route::Uid;
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
            "../../../tests/fixtures/corpus/",
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

fn store_with(files: &[Bytes]) -> Arc<MemoryStore> {
    import_into(Arc::new(MemoryStore::new()), files)
}

fn import_into(store: Arc<MemoryStore>, files: &[Bytes]) -> Arc<MemoryStore> {
    block_on(async {
        let layout = import::ensure_layout(&*store, PUBLIC, "DCM4CHEE")
            .await
            .expect("layout");
        let batch = import::Batch::new(layout);
        for f in files {
            batch.add(&*store, f.clone()).await.expect("import");
        }
        batch.finish(&*store).await.expect("rebuild");
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

fn get_with(store: &Arc<MemoryStore>, method: Method, path: &str, headers: &[(&str, &str)]) -> Got {
    let svc = Service::new(store.clone(), Config::default());
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("test.local:8080"));
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
        method: &method,
        path: &p,
        query: q.as_deref(),
        authority: None,
        headers: &h,
        entropy: [7; 16],
        now: 1_700_000_000,
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

#[test]
fn study_as_stored_is_byte_identical() {
    // Three series of one study, and an instance of another study that must not appear.
    let files = [
        fixture!("study77654033_CR1_6154.dcm"),
        fixture!("study77654033_CR2_6247.dcm"),
        fixture!("study77654033_CR3_6278.dcm"),
        fixture!("study77654033_CT2_17106.dcm"),
    ];
    let store = store_with(&files);
    let (study, _, _) = uids(&files[0]);
    let got = get(
        &store,
        &format!("{ROOT}/studies/{study}"),
        Some("multipart/related; type=\"application/dicom\"; transfer-syntax=*"),
    );
    assert_eq!(got.status, 200);
    assert!(got
        .header("content-type")
        .starts_with("multipart/related; type=\"application/dicom\"; boundary=\""));
    let parts = got.parts();
    assert_eq!(parts.len(), 3);
    for p in &parts {
        let original = files
            .iter()
            .find(|f| f[..] == *p.body)
            .expect("every part is one of the stored files, byte for byte");
        let (st, se, sop) = uids(original);
        assert_eq!(
            p.header("content-type"),
            Some("application/dicom; transfer-syntax=1.2.840.10008.1.2.1")
        );
        assert_eq!(
            p.header("content-location").expect("location"),
            format!("http://test.local:8080{ROOT}/studies/{st}/series/{se}/instances/{sop}")
        );
    }
}

#[test]
fn implicit_and_big_endian_are_converted_to_explicit_le_by_default() {
    for file in [
        fixture!("mr_small_implicit.dcm"),
        fixture!("mr_small_bigendian.dcm"),
        fixture!("sc_deflated.dcm"),
    ] {
        let store = store_with(std::slice::from_ref(&file));
        let (st, se, sop) = uids(&file);
        for accept in [
            None,
            Some("multipart/related; type=\"application/dicom\""),
            Some("multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2.1"),
        ] {
            let got = get(
                &store,
                &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}"),
                accept,
            );
            assert_eq!(got.status, 200, "{accept:?}");
            let parts = got.parts();
            assert_eq!(
                parts[0].header("content-type"),
                Some("application/dicom; transfer-syntax=1.2.840.10008.1.2.1")
            );
            let out = dicom_object::OpenFileOptions::new()
                .from_reader(parts[0].body)
                .expect("valid Part 10");
            assert_eq!(
                out.meta().transfer_syntax().trim_end_matches('\0'),
                "1.2.840.10008.1.2.1"
            );
            assert_eq!(
                pixel_bytes(parts[0].body),
                pixel_bytes(&file),
                "pixels survive conversion"
            );
            assert_eq!(&parts[0].body[128..132], b"DICM");
        }
    }
}

#[test]
fn named_implicit_vr_is_produced_on_request() {
    let file = fixture!("ct_small_ele.dcm");
    let store = store_with(std::slice::from_ref(&file));
    let (st, se, sop) = uids(&file);
    let got = get(
        &store,
        &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}"),
        Some("multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2"),
    );
    assert_eq!(got.status, 200);
    let p = &got.parts()[0];
    assert_eq!(
        p.header("content-type"),
        Some("application/dicom; transfer-syntax=1.2.840.10008.1.2")
    );
    assert_eq!(pixel_bytes(p.body), pixel_bytes(&file));
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

#[test]
fn compressed_instances_406_alone_and_206_in_a_mix() {
    // Stored compressed in a syntax this build cannot decode, moved into the study of a raw
    // RGB image.
    let raw = fixture!("sc_rgb_ele.dcm");
    let jpeg = in_study(
        &as_jpeg_xl(&fixture!("sc_jpeg_extended_12bit.dcm")),
        &uids(&raw).0,
    );
    let store = store_with(&[jpeg.clone(), raw.clone()]);
    let (st, se, sop) = uids(&jpeg);
    let got = get(
        &store,
        &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}"),
        None,
    );
    assert_eq!(got.status, 406);
    assert!(String::from_utf8_lossy(&got.body).contains("transfer-syntax=*"));
    // The JPEG as stored: fine.
    let got = get(
        &store,
        &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}"),
        Some(
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.112",
        ),
    );
    assert_eq!(got.status, 200);
    assert_eq!(got.parts()[0].body, &jpeg[..]);
    let (st2, _, _) = uids(&raw);
    assert_eq!(st2, st, "the fixtures share a study");
    {
        let got = get(&store, &format!("{ROOT}/studies/{st}"), None);
        assert_eq!(got.status, 206);
        assert!(got.header("warning").contains(sop.as_str()));
        assert_eq!(got.parts().len(), 1);
    }
}

#[test]
fn single_part_dicom_for_an_instance() {
    let file = fixture!("ct_small_ele.dcm");
    let store = store_with(std::slice::from_ref(&file));
    let (st, se, sop) = uids(&file);
    let got = get(
        &store,
        &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}"),
        Some("application/dicom"),
    );
    assert_eq!(got.status, 200);
    assert_eq!(
        got.header("content-type"),
        "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
    );
    assert_eq!(got.header("content-length"), file.len().to_string());
    assert_eq!(got.body, &file[..]);
    // Not for a series.
    assert_eq!(
        get(
            &store,
            &format!("{ROOT}/studies/{st}/series/{se}"),
            Some("application/dicom")
        )
        .status,
        406
    );
}

#[test]
fn metadata_levels_encodings_and_rebased_uris() {
    let files = [
        fixture!("study77654033_CR1_6154.dcm"),
        fixture!("study77654033_CT2_17106.dcm"),
        fixture!("study77654033_CT2_17136.dcm"),
        fixture!("study77654033_CT2_17166.dcm"),
    ];
    let store = store_with(&files);
    let (st, se, sop) = uids(&files[1]);
    let parse = |g: &Got| -> serde_json::Value {
        let body = if g.header("content-encoding") == "gzip" {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&g.body[..])
                .read_to_end(&mut out)
                .expect("gunzip");
            out
        } else {
            g.body.clone()
        };
        serde_json::from_slice(&body).expect("json")
    };
    let study = get(&store, &format!("{ROOT}/studies/{st}/metadata"), None);
    assert_eq!(study.status, 200);
    assert_eq!(study.header("content-type"), "application/dicom+json");
    assert_eq!(study.header("content-encoding"), "");
    let j = parse(&study);
    assert_eq!(j.as_array().expect("array").len(), 3);
    let series = get(
        &store,
        &format!("{ROOT}/studies/{st}/series/{se}/metadata"),
        Some("application/json"),
    );
    assert_eq!(series.header("content-type"), "application/json");
    let sj = parse(&series);
    assert_eq!(sj.as_array().expect("array").len(), 3);
    for inst in sj.as_array().expect("array") {
        assert_eq!(inst["0020000E"]["Value"][0], se.as_str());
        assert!(inst.get("00020010").is_none(), "no File Meta in metadata");
        let uri = inst["7FE00010"]["BulkDataURI"]
            .as_str()
            .expect("pixel data is bulk");
        assert!(
            uri.starts_with(&format!(
                "http://test.local:8080{ROOT}/studies/{st}/series/{se}/instances/"
            )),
            "rebased: {uri}"
        );
    }
    let gz = get_with(
        &store,
        Method::GET,
        &format!("{ROOT}/studies/{st}/series/{se}/metadata"),
        &[("accept-encoding", "gzip, deflate, br")],
    );
    assert_eq!(gz.header("content-encoding"), "gzip");
    assert_eq!(parse(&gz), sj);
    let inst = get(
        &store,
        &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}/metadata"),
        None,
    );
    let ij = parse(&inst);
    assert_eq!(ij.as_array().expect("array").len(), 1);
    assert_eq!(ij[0]["00080018"]["Value"][0], sop.as_str());
    // Every BulkDataURI resolves to the file's own bytes for that attribute.
    let uri = ij[0]["7FE00010"]["BulkDataURI"].as_str().expect("uri");
    let path = uri
        .strip_prefix("http://test.local:8080")
        .expect("our root");
    let bulk = get(&store, path, None);
    assert_eq!(bulk.status, 200);
    assert_eq!(bulk.parts()[0].body, &pixel_bytes(&files[1])[..]);
    let single = get(&store, path, Some("application/octet-stream"));
    assert_eq!(single.body, pixel_bytes(&files[1]));
    // XML metadata: one Native DICOM Model document per instance, on the request's root.
    let xml = get(
        &store,
        &format!("{ROOT}/studies/{st}/series/{se}/metadata"),
        Some("multipart/related; type=\"application/dicom+xml\""),
    );
    assert_eq!(xml.status, 200);
    assert!(xml
        .header("content-type")
        .starts_with("multipart/related; type=\"application/dicom+xml\""));
    let parts = xml.parts();
    assert_eq!(parts.len(), 3);
    for p in &parts {
        let doc = std::str::from_utf8(p.body).expect("utf8");
        assert!(doc.contains("<NativeDicomModel xml:space=\"preserve\">"));
        assert!(doc.contains(&format!(
            "<BulkData uri=\"http://test.local:8080{ROOT}/studies/{st}/series/{se}/instances/"
        )));
        assert!(p
            .header("content-location")
            .expect("loc")
            .ends_with("/metadata"));
    }
    // Only XML acceptable, and not multipart: 406.
    assert_eq!(
        get(
            &store,
            &format!("{ROOT}/studies/{st}/metadata"),
            Some("application/dicom+xml")
        )
        .status,
        406
    );
}

#[test]
fn cached_metadata_follows_a_replaced_object() {
    // Served rebased and identity (cached), then the series changes: the next answer must
    // hold the new instance, not the cached body.
    let a = fixture!("study77654033_CT2_17106.dcm");
    let b = fixture!("study77654033_CT2_17136.dcm");
    let store = store_with(std::slice::from_ref(&a));
    let (st, se, _) = uids(&a);
    let svc = Service::new(store.clone(), Config::default());
    let path = format!("{ROOT}/studies/{st}/series/{se}/metadata");
    let h = HeaderMap::new();
    let req = Request {
        method: &Method::GET,
        path: &path,
        query: None,
        authority: None,
        headers: &h,
        entropy: [0; 16],
        now: 1_700_000_000,
    };
    let count = |r: Response| match r.body {
        Body::Full(b) => serde_json::from_slice::<serde_json::Value>(&b)
            .expect("json")
            .as_array()
            .expect("array")
            .len(),
        _ => panic!("full body"),
    };
    assert_eq!(count(block_on(svc.handle(&req))), 1);
    assert_eq!(count(block_on(svc.handle(&req))), 1);
    import_into(store.clone(), std::slice::from_ref(&b));
    assert_eq!(count(block_on(svc.handle(&req))), 2);
}

#[test]
fn metadata_with_the_stored_root_is_sent_as_stored() {
    let file = fixture!("ct_small_ele.dcm");
    let store = store_with(std::slice::from_ref(&file));
    let (st, se, _) = uids(&file);
    let stored = block_on(store.get(&layout::series_metadata_key(
        &Uid::parse(&st).expect("u"),
        &Uid::parse(&se).expect("u"),
    )))
    .expect("get")
    .expect("exists");
    let svc = Service::new(
        store.clone(),
        Config {
            public_url: Some(PUBLIC.into()),
            ..Config::default()
        },
    );
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    let path = format!("{ROOT}/studies/{st}/series/{se}/metadata");
    let req = Request {
        method: &Method::GET,
        path: &path,
        query: None,
        authority: None,
        headers: &h,
        entropy: [0; 16],
        now: 1_700_000_000,
    };
    let r = block_on(svc.handle(&req));
    let Body::Full(b) = r.body else {
        panic!("full body")
    };
    assert_eq!(b, stored, "stored gzip object sent as is");
}

#[test]
fn frames_native_multiframe() {
    let file = fixture!("emr_10frame_ele.dcm");
    let store = store_with(std::slice::from_ref(&file));
    let (st, se, sop) = uids(&file);
    let all = pixel_bytes(&file);
    let frame_len = all.len() / 10;
    let base = format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}/frames");
    let got = get(
        &store,
        &format!("{base}/3,1,10"),
        Some("multipart/related; type=application/octet-stream; transfer-syntax=*"),
    );
    assert_eq!(got.status, 200);
    let parts = got.parts();
    for (p, f) in parts.iter().zip([3usize, 1, 10]) {
        assert_eq!(
            p.body,
            &all[(f - 1) * frame_len..f * frame_len],
            "frame {f}"
        );
        assert_eq!(
            p.header("content-type"),
            Some("application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1")
        );
        assert!(p
            .header("content-location")
            .expect("loc")
            .ends_with(&format!("/frames/{f}")));
    }
    // Some beyond Number of Frames: 206 with the valid ones; all beyond: 404.
    let got = get(&store, &format!("{base}/2,11"), None);
    assert_eq!(got.status, 206);
    assert_eq!(got.parts().len(), 1);
    assert_eq!(get(&store, &format!("{base}/11"), None).status, 404);
    assert_eq!(get(&store, &format!("{base}/0"), None).status, 400);
    assert_eq!(get(&store, &format!("{base}/1,1"), None).status, 400);
    // Single part for one frame.
    let one = get(
        &store,
        &format!("{base}/4"),
        Some("application/octet-stream"),
    );
    assert_eq!(one.status, 200);
    assert_eq!(one.body, &all[3 * frame_len..4 * frame_len]);
}

#[test]
fn frames_single_frame_big_endian_and_bit_packed() {
    for (file, frames) in [
        (fixture!("mr_small_bigendian.dcm"), 1u64),
        (fixture!("ct_small_ele.dcm"), 1),
        (fixture!("seg_liver_1bit_3frame.dcm"), 3),
    ] {
        let store = store_with(std::slice::from_ref(&file));
        let (st, se, sop) = uids(&file);
        let o = dicom_object::OpenFileOptions::new()
            .from_reader(&file[..])
            .expect("parse");
        let rows = o
            .element(tags::ROWS)
            .expect("rows")
            .to_int::<u64>()
            .expect("int");
        let cols = o
            .element(tags::COLUMNS)
            .expect("cols")
            .to_int::<u64>()
            .expect("int");
        let bits = o
            .element(tags::BITS_ALLOCATED)
            .expect("bits")
            .to_int::<u64>()
            .expect("int");
        let all = pixel_bytes(&file);
        let frame_bits = rows * cols * bits;
        let got = get(
            &store,
            &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}/frames/{frames}"),
            None,
        );
        assert_eq!(got.status, 200);
        let body = got.parts()[0].body.to_vec();
        assert_eq!(body.len() as u64, frame_bits.div_ceil(8));
        // Independent bit-by-bit extraction (PS3.5 §8.1.1: little-endian bit order).
        let start = (frames - 1) * frame_bits;
        for i in (0..frame_bits).step_by(97) {
            let want = all[((start + i) / 8) as usize] >> ((start + i) % 8) & 1;
            let have = body[(i / 8) as usize] >> (i % 8) & 1;
            assert_eq!(want, have, "bit {i}");
        }
    }
}

#[test]
fn encapsulated_frames_pass_through() {
    let file = fixture!("sc_rgb_rle_2frame.dcm");
    let store = store_with(std::slice::from_ref(&file));
    let (st, se, sop) = uids(&file);
    let o = dicom_object::OpenFileOptions::new()
        .from_reader(&file[..])
        .expect("parse");
    let frags: Vec<Vec<u8>> = o
        .element(tags::PIXEL_DATA)
        .expect("px")
        .value()
        .fragments()
        .expect("fragments")
        .to_vec();
    let base = format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}/frames");
    for accept in [
        "multipart/related; type=application/octet-stream; transfer-syntax=*",
        "multipart/related; type=\"image/x-dicom+rle\"",
        "multipart/related; type=image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.5",
    ] {
        let got = get(&store, &format!("{base}/2,1"), Some(accept));
        assert_eq!(got.status, 200, "{accept}");
        let parts = got.parts();
        assert_eq!(parts[0].body, &frags[1][..]);
        assert_eq!(parts[1].body, &frags[0][..]);
        assert!(parts[0]
            .header("content-type")
            .expect("ct")
            .ends_with("transfer-syntax=1.2.840.10008.1.2.5"));
    }
    // No transfer syntax: the frame decoded (RLE), 100x100 RGB 8-bit, interleaved, and equal
    // to dicom-rs's decoding of the whole file (the end-to-end tests check against DCMTK).
    let got = get(&store, &format!("{base}/2"), None);
    assert_eq!(got.status, 200);
    let p = &got.parts()[0];
    assert_eq!(
        p.header("content-type"),
        Some("application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1")
    );
    assert_eq!(p.body.len(), 100 * 100 * 3);
    use dicom_pixeldata::PixelDecoder;
    let whole = o.decode_pixel_data().expect("decode");
    assert_eq!(p.body, whole.frame_data(1).expect("frame 2"));
}

#[test]
fn bulk_data_of_nested_and_non_pixel_attributes() {
    let file = fixture!("ecg_waveform.dcm");
    let store = store_with(std::slice::from_ref(&file));
    let (st, se, sop) = uids(&file);
    let meta = get(
        &store,
        &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}/metadata"),
        None,
    );
    let j: serde_json::Value = serde_json::from_slice(&meta.body).expect("json");
    let uri = j[0]["54000100"]["Value"][0]["54001010"]["BulkDataURI"]
        .as_str()
        .expect("waveform data is bulk");
    assert!(uri.ends_with("/bulkdata/54000100/1/54001010"), "{uri}");
    let got = get(
        &store,
        uri.strip_prefix("http://test.local:8080").expect("root"),
        None,
    );
    assert_eq!(got.status, 200);
    let o = dicom_object::OpenFileOptions::new()
        .from_reader(&file[..])
        .expect("parse");
    let want = o
        .element(tags::WAVEFORM_SEQUENCE)
        .expect("seq")
        .items()
        .expect("items")[0]
        .element(tags::WAVEFORM_DATA)
        .expect("data")
        .to_bytes()
        .expect("bytes")
        .to_vec();
    assert_eq!(got.parts()[0].body, &want[..]);
    let missing = get(
        &store,
        &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}/bulkdata/54000100/9/54001010"),
        None,
    );
    assert_eq!(missing.status, 404);
}

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
        (Method::POST, format!("{ROOT}/studies/{st}"), None, 405),
        (Method::DELETE, format!("{ROOT}/studies/{st}"), None, 405),
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
    let svc = Service::new(
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
            method: &method,
            path: &path,
            query: None,
            authority: None,
            headers: &h,
            entropy: [0; 16],
            now: 1_700_000_000,
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
fn rebase_touches_bulk_data_uris_only() {
    let json = br#"{"00100010":{"vr":"PN","Value":[{"Alphabetic":"http://a/x/"}]},"7FE00010":{"vr":"OW","BulkDataURI":"http://a/x/studies/1"}}"#;
    let out = rebase_json(json, "http://a/x", "https://b");
    assert_eq!(
        std::str::from_utf8(&out).expect("utf8"),
        r#"{"00100010":{"vr":"PN","Value":[{"Alphabetic":"http://a/x/"}]},"7FE00010":{"vr":"OW","BulkDataURI":"https://b/studies/1"}}"#
    );
}

#[test]
fn documents_video_and_frames_as_instance_representations() {
    let pdf = fixture!("doc_pdf_pdf2dcm.dcm");
    let cda = fixture!("doc_cda_cda2dcm.dcm");
    let mp4 = fixture!("video_h264.dcm");
    let ct = fixture!("ct_small_ele.dcm");
    let store = store_with(&[pdf.clone(), cda.clone(), mp4.clone(), ct.clone()]);
    let doc_of = |b: &Bytes| -> Vec<u8> {
        let o = dicom_object::OpenFileOptions::new()
            .from_reader(&b[..])
            .expect("parse");
        let mut d = o
            .element(tags::ENCAPSULATED_DOCUMENT)
            .expect("doc")
            .to_bytes()
            .expect("bytes")
            .to_vec();
        if let Some(len) = o
            .get(tags::ENCAPSULATED_DOCUMENT_LENGTH)
            .and_then(|e| e.to_int::<usize>().ok())
        {
            d.truncate(len);
        }
        d
    };
    // application/pdf: the PDF itself, typed from its MIME type.
    let (st, se, sop) = uids(&pdf);
    let got = get(
        &store,
        &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}"),
        Some("multipart/related; type=\"application/pdf\""),
    );
    assert_eq!(got.status, 200);
    let parts = got.parts();
    assert_eq!(parts[0].header("content-type"), Some("application/pdf"));
    assert_eq!(parts[0].body, &doc_of(&pdf)[..]);
    assert!(parts[0].body.starts_with(b"%PDF"));
    // Its BulkDataURI in its own type, single part.
    let got = get(
        &store,
        &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}/bulkdata/00420011"),
        Some("application/pdf"),
    );
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), "application/pdf");
    assert_eq!(got.body, doc_of(&pdf));
    // text/xml for the CDA; a PDF is not text/xml.
    let (st2, se2, sop2) = uids(&cda);
    let got = get(
        &store,
        &format!("{ROOT}/studies/{st2}/series/{se2}/instances/{sop2}"),
        Some("multipart/related; type=text/xml"),
    );
    assert_eq!(got.status, 200);
    assert_eq!(got.parts()[0].body, &doc_of(&cda)[..]);
    assert_eq!(
        get(
            &store,
            &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}"),
            Some("multipart/related; type=text/xml")
        )
        .status,
        406
    );
    // video/mp4: the stream as stored.
    let (st3, se3, sop3) = uids(&mp4);
    let got = get(
        &store,
        &format!("{ROOT}/studies/{st3}/series/{se3}/instances/{sop3}"),
        Some("multipart/related; type=\"video/mp4\""),
    );
    assert_eq!(got.status, 200);
    let o = dicom_object::OpenFileOptions::new()
        .from_reader(&mp4[..])
        .expect("parse");
    let stream: Vec<u8> = o
        .element(tags::PIXEL_DATA)
        .expect("px")
        .value()
        .fragments()
        .expect("frags")
        .concat();
    assert_eq!(got.parts()[0].body, &stream[..]);
    assert!(got.parts()[0]
        .header("content-type")
        .expect("ct")
        .starts_with("video/mp4; transfer-syntax=1.2.840.10008.1.2.4.10"));
    // octet-stream of a CT instance: its frame.
    let (st4, se4, sop4) = uids(&ct);
    let got = get(
        &store,
        &format!("{ROOT}/studies/{st4}/series/{se4}/instances/{sop4}"),
        Some("multipart/related; type=application/octet-stream"),
    );
    assert_eq!(got.status, 200);
    assert_eq!(got.parts()[0].body, &pixel_bytes(&ct)[..]);
    assert!(got.parts()[0]
        .header("content-location")
        .expect("loc")
        .ends_with("/frames/1"));
}

#[test]
fn octet_stream_of_a_series_leaves_out_what_it_cannot_give() {
    // An undecodable compressed instance beside a raw one: the raw one's frames, the other
    // left out (206).
    let raw = fixture!("sc_rgb_ele.dcm");
    let jpeg = in_study(
        &as_jpeg_xl(&fixture!("sc_jpeg_extended_12bit.dcm")),
        &uids(&raw).0,
    );
    let store = store_with(&[jpeg.clone(), raw.clone()]);
    let (st, _, _) = uids(&raw);
    let (st_j, _, sop_j) = uids(&jpeg);
    assert_eq!(st, st_j, "the fixtures share a study");
    {
        let got = get(
            &store,
            &format!("{ROOT}/studies/{st}"),
            Some("multipart/related; type=application/octet-stream"),
        );
        assert_eq!(got.status, 206);
        assert!(got.header("warning").contains(&sop_j));
        assert_eq!(got.parts().len(), 1);
        // With transfer-syntax=*, both: the JPEG frame as stored.
        let got = get(
            &store,
            &format!("{ROOT}/studies/{st}"),
            Some("multipart/related; type=application/octet-stream; transfer-syntax=*"),
        );
        assert_eq!(got.status, 200);
        assert_eq!(
            got.parts().len(),
            2,
            "1 raw frame + the other frame as stored"
        );
    }
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
        ("bytes=10-5", 416, None),
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
    let svc = Service::new(
        store.clone(),
        Config {
            auth: Some(Arc::new(crate::auth::Auth {
                tokens: Some(auth),
                jwt: None,
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
            method: &Method::GET,
            path,
            query: None,
            authority: None,
            headers: &h,
            entropy: [0; 16],
            now: 1_700_000_000,
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
    import_into(store.clone(), std::slice::from_ref(&b));
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

/// An origin that is another wado service, over HTTP-less calls, counting them.
#[derive(Debug)]
struct ServiceOrigin {
    svc: Service,
    root: String,
    calls: std::sync::Mutex<Vec<String>>,
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl crate::layout::upstream::Upstream for ServiceOrigin {
    fn root(&self) -> &str {
        &self.root
    }

    async fn get(
        &self,
        url: &str,
        accept: &str,
    ) -> std::result::Result<crate::layout::upstream::UpstreamResponse, String> {
        self.calls.lock().expect("lock").push(url.to_owned());
        let path = url
            .strip_prefix("http://origin.test")
            .ok_or("not the origin")?;
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("origin.test"));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_str(accept).map_err(|e| e.to_string())?,
        );
        let req = Request {
            method: &Method::GET,
            path,
            query: None,
            authority: None,
            headers: &h,
            entropy: [3; 16],
            now: 1_700_000_000,
        };
        let r = self.svc.handle(&req).await;
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
        Ok(crate::layout::upstream::UpstreamResponse {
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

#[test]
fn a_read_through_cache_fills_from_the_origin_once() {
    let a = fixture!("study77654033_CT2_17106.dcm");
    let b = fixture!("study77654033_CT2_17136.dcm");
    let c = fixture!("study77654033_CR1_6154.dcm");
    let origin_store = store_with(&[a.clone(), b.clone(), c.clone()]);
    let origin = Arc::new(ServiceOrigin {
        svc: Service::new(origin_store.clone(), Config::default()),
        root: format!("http://origin.test{ROOT}"),
        calls: Default::default(),
    });
    let edge_store = Arc::new(MemoryStore::new());
    let edge = Service::new(
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
            method: &Method::GET,
            path,
            query: None,
            authority: None,
            headers: &h,
            entropy: [1; 16],
            now: 1_700_000_000,
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
        let stored = block_on(edge_store.get(&crate::layout::instance_key(
            &Uid::parse(&st).expect("uid"),
            &Uid::parse(&se).expect("uid"),
            &Uid::parse(&sop).expect("uid"),
        )))
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

/// An index claiming more frames than its pixel data holds (a crafted file imported before the
/// import checked Number of Frames against the fragments) cannot make a request allocate for
/// them: only the frames the data holds are planned. On the old main this request asked for
/// 17 GB and aborted the process.
#[test]
fn a_stored_index_claiming_4294967295_frames_plans_only_the_frames_there() {
    let f = fixture!("mr_small_jpegls_lossless.dcm");
    let store = store_with(std::slice::from_ref(&f));
    let (st, se, sop) = uids(&f);
    let (ust, use_, usop) = (
        Uid::parse(&st).expect("uid"),
        Uid::parse(&se).expect("uid"),
        Uid::parse(&sop).expect("uid"),
    );
    let key = layout::index_key(&ust, &use_, &usop);
    let stored = block_on(store.get(&key)).expect("get").expect("index");
    let mut idx: serde_json::Value = serde_json::from_slice(&stored).expect("json");
    idx["pixel"]["number_of_frames"] = u32::MAX.into();
    block_on(store.put(&key, Bytes::from(serde_json::to_vec(&idx).expect("json")))).expect("put");
    let inst = format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}");
    let all = "multipart/related; type=application/octet-stream; transfer-syntax=*";
    let got = get(&store, &format!("{inst}/pixeldata"), Some(all));
    assert_eq!(got.status, 200);
    assert_eq!(got.parts().len(), 1, "the one frame the data holds");
    let got = get(&store, &format!("{inst}/frames/2"), Some(all));
    assert_eq!(got.status, 404, "frame 2 is not there");
    let got = get(&store, &inst, Some(all));
    assert_eq!(got.status, 200);
    assert_eq!(got.parts().len(), 1);
}
