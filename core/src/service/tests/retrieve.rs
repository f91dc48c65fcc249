//! Study, series and instance retrieval: as stored, converted, left out, single part, other media types.

use super::*;

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
    // Rendered (what OHIF's video viewport asks, whatever it accepts): the same stream, alone.
    for accept in [None, Some("*/*"), Some("video/mp4")] {
        let got = get(
            &store,
            &format!("{ROOT}/studies/{st3}/series/{se3}/instances/{sop3}/rendered"),
            accept,
        );
        assert_eq!(got.status, 200, "{accept:?}");
        assert!(got.header("content-type").starts_with("video/mp4"));
        assert_eq!(got.body, stream);
    }
    // An image rendered: a JPEG by default; a type rendered images cannot be is 406.
    let (st5, se5, sop5) = uids(&ct);
    let url = format!("{ROOT}/studies/{st5}/series/{se5}/instances/{sop5}/rendered");
    let got = get(&store, &url, None);
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), "image/jpeg");
    assert_eq!(&got.body[..2], &[0xFF, 0xD8]);
    assert_eq!(get(&store, &url, Some("application/dicom")).status, 406);
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

/// PS3.18 §8.7.8: q-values decide before the stored syntax (issue 13, item 4). An RLE
/// instance asked as Explicit VR LE at q=0.9 and as RLE at q=0.5 comes as Explicit VR LE, with
/// the pixels dicom-pixeldata decodes from the original; the other way round, as stored.
#[test]
fn q_values_decide_before_the_stored_syntax() {
    use dicom_pixeldata::PixelDecoder;
    let file = fixture!("mr_small_rle.dcm");
    let store = store_with(std::slice::from_ref(&file));
    let (st, se, sop) = uids(&file);
    let url = format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}");
    let ask = |ele_q: &str, rle_q: &str| {
        get(
            &store,
            &url,
            Some(&format!(
                "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1; q={ele_q}, \
                 multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.5; q={rle_q}"
            )),
        )
    };
    let got = ask("0.9", "0.5");
    assert_eq!(got.status, 200);
    let parts = got.parts();
    assert_eq!(
        parts[0].header("content-type"),
        Some("application/dicom; transfer-syntax=1.2.840.10008.1.2.1")
    );
    let original = dicom_object::OpenFileOptions::new()
        .from_reader(&file[..])
        .expect("parse")
        .decode_pixel_data()
        .expect("decode")
        .data()
        .to_vec();
    let converted = dicom_object::OpenFileOptions::new()
        .from_reader(parts[0].body)
        .expect("parse the part");
    assert_eq!(converted.meta().transfer_syntax(), "1.2.840.10008.1.2.1");
    assert!(pixel_bytes(parts[0].body) == original, "decoded pixels");
    let got = ask("0.5", "0.9");
    assert_eq!(got.status, 200);
    assert_eq!(
        got.parts()[0].header("content-type"),
        Some("application/dicom; transfer-syntax=1.2.840.10008.1.2.5")
    );
    assert!(got.parts()[0].body == &file[..], "as stored");
}

/// A per-request memory bound (issue 12): a file larger than `max_convert_bytes` is not
/// converted whole; asked in another syntax it is left out with the reason (406 alone), and
/// still offered as stored.
#[test]
fn files_past_the_conversion_budget_are_offered_as_stored_only() {
    let file = fixture!("mr_small_implicit.dcm");
    let store = store_with(std::slice::from_ref(&file));
    let (st, se, sop) = uids(&file);
    let url = format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}");
    let svc = test_service(
        store.clone(),
        Config {
            max_convert_bytes: 1000,
            ..Config::default()
        },
    );
    let mut h = HeaderMap::new();
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static("multipart/related; type=\"application/dicom\""),
    );
    let req = Request {
        client: None,
        who: Default::default(),
        entropy: [1; 16],
        body: Default::default(),
        ..get_request(&url, &h)
    };
    let r = block_on(svc.handle(&req));
    assert_eq!(r.status.as_u16(), 406);
    let Body::Full(text) = r.body else {
        panic!("a reason")
    };
    assert!(
        String::from_utf8_lossy(&text).contains("more than the 1000"),
        "{}",
        String::from_utf8_lossy(&text)
    );
    // As stored it is still there, and with the default budget it converts.
    let as_stored = get(
        &store,
        &url,
        Some("multipart/related; type=\"application/dicom\"; transfer-syntax=*"),
    );
    assert_eq!(as_stored.status, 200);
    let converted = get(
        &store,
        &url,
        Some("multipart/related; type=\"application/dicom\""),
    );
    assert_eq!(converted.status, 200);
}
