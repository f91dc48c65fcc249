//! Metadata: levels, content codings, BulkDataURIs rebased on the request's root, the cache.

use super::*;

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
    let parse = decoded;
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
    let svc = test_service(store.clone(), Config::default());
    let path = format!("{ROOT}/studies/{st}/series/{se}/metadata");
    let h = HeaderMap::new();
    let req = Request {
        client: None,
        who: Default::default(),
        entropy: [0; 16],
        body: Default::default(),
        ..get_request(&path, &h)
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

/// Series metadata is the array of its instances' metadata (each as dicom-rs reads the file's
/// UIDs), gzip when accepted; its ETag holds while the series does not change, and changes
/// when an instance is added.
#[test]
fn series_metadata_is_its_instances_kept_by_version() {
    let a = fixture!("study77654033_CT2_17106.dcm");
    let b = fixture!("study77654033_CT2_17136.dcm");
    let store = store_with(std::slice::from_ref(&a));
    let (st, se, sop_a) = uids(&a);
    let svc = test_service(store.clone(), Config::default());
    let path = format!("{ROOT}/studies/{st}/series/{se}/metadata");
    let fetch = || {
        let g = ask(&svc, Method::GET, &path, &[("accept-encoding", "gzip")]);
        assert_eq!(g.status, 200);
        assert_eq!(g.header("content-encoding"), "gzip");
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(&g.body[..])
            .read_to_end(&mut json)
            .expect("gzip");
        let list: serde_json::Value = serde_json::from_slice(&json).expect("json");
        let sops: Vec<String> = list
            .as_array()
            .expect("array")
            .iter()
            .map(|m| m["00080018"]["Value"][0].as_str().expect("sop").to_owned())
            .collect();
        (sops, g.header("etag"))
    };
    let (sops, etag) = fetch();
    assert_eq!(sops, vec![sop_a.clone()]);
    assert_eq!(fetch().1, etag, "unchanged, the same validator");
    import_into(store.clone(), std::slice::from_ref(&b));
    let (sops, etag2) = fetch();
    assert_eq!(sops.len(), 2);
    assert!(sops.contains(&sop_a) && sops.contains(&uids(&b).2));
    assert_ne!(etag2, etag);
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

/// A metadata response's JSON, decoded from its content coding.
fn decoded(g: &Got) -> serde_json::Value {
    assert_eq!(g.status, 200);
    let mut out = Vec::new();
    match g.header("content-encoding").as_str() {
        "gzip" => {
            flate2::read::GzDecoder::new(&g.body[..])
                .read_to_end(&mut out)
                .expect("gunzip");
        }
        "deflate" => {
            flate2::read::ZlibDecoder::new(&g.body[..])
                .read_to_end(&mut out)
                .expect("inflate");
        }
        "" => out = g.body.clone(),
        other => panic!("coding {other}"),
    }
    serde_json::from_slice(&out).expect("json")
}

/// The cache keeps the gzip-coded body and the plain body last asked for, each within its
/// share of the budget: whichever is kept, made afresh or decoded from the other, every coding
/// answers the same document (compared with a fresh service's, the cache off).
#[test]
fn every_coding_answers_the_same_document_kept_or_not() {
    let files = [
        fixture!("study77654033_CT2_17106.dcm"),
        fixture!("study77654033_CT2_17136.dcm"),
        fixture!("study77654033_CT2_17166.dcm"),
    ];
    let store = store_with(&files);
    let (st, se, _) = uids(&files[0]);
    let decode = decoded;
    let paths = [
        format!("{ROOT}/studies/{st}/metadata"),
        format!("{ROOT}/studies/{st}/series/{se}/metadata"),
    ];
    let uncached = test_service(
        store.clone(),
        Config {
            metadata_cache_bytes: 0,
            ..Config::default()
        },
    );
    // A budget that keeps a gzip body (a quarter) but never a plain one of this study.
    let plain_len = ask(&uncached, Method::GET, &paths[0], &[]).body.len();
    let tight = test_service(
        store.clone(),
        Config {
            metadata_cache_bytes: plain_len,
            ..Config::default()
        },
    );
    let roomy = test_service(store.clone(), Config::default());
    for path in &paths {
        let want = decode(&ask(&uncached, Method::GET, path, &[]));
        assert!(want.as_array().is_some_and(|a| !a.is_empty()));
        for svc in [&tight, &roomy] {
            for coding in ["gzip", "identity", "deflate", "identity", "gzip", "deflate"] {
                let g = ask(svc, Method::GET, path, &[("accept-encoding", coding)]);
                assert_eq!(decode(&g), want, "{path} as {coding}");
            }
        }
    }
}
