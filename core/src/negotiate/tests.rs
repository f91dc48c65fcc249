//! The negotiation tables: Accept parsing, q-values, the transfer syntax choice.

use super::*;
use MediaType as M;

const INST: Category = Category::Instances { instance: true };
const STUDY: Category = Category::Instances { instance: false };

fn c(media: MediaType, multipart: bool, ts: TsWanted, q: u16) -> Candidate {
    Candidate {
        media,
        multipart,
        ts,
        q,
    }
}

fn neg(accept: &str, cat: Category) -> Vec<Candidate> {
    Negotiation::new(Some(accept), None, cat)
        .unwrap_or_else(|e| panic!("{accept}: {e}"))
        .candidates
}

fn uid(s: &str) -> TsWanted {
    TsWanted::Uid(s.to_owned())
}

#[test]
fn accept_table() {
    use TsWanted::{Any, Default};
    let cases: Vec<(&str, Category, Vec<Candidate>)> = vec![
        ("*/*", STUDY, vec![c(M::Dicom, true, Default, 1000)]),
        ("*/*", Category::Metadata, vec![c(M::DicomJson, false, Default, 1000)]),
        ("*/*", Category::Frames, vec![c(M::OctetStream, true, Default, 1000)]),
        (
            "multipart/related; type=\"application/dicom\"",
            STUDY,
            vec![c(M::Dicom, true, Default, 1000)],
        ),
        (
            "multipart/related; type=application/dicom; transfer-syntax=*",
            STUDY,
            vec![c(M::Dicom, true, Any, 1000)],
        ),
        // OHIF's frame request, unquoted.
        (
            "multipart/related; type=application/octet-stream; transfer-syntax=*",
            Category::Frames,
            vec![c(M::OctetStream, true, Any, 1000)],
        ),
        // The standard's example of alternatives with q.
        (
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.50; boundary=**, \
             multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.57; q=0.5",
            STUDY,
            vec![
                c(M::Dicom, true, uid("1.2.840.10008.1.2.4.50"), 1000),
                c(M::Dicom, true, uid("1.2.840.10008.1.2.4.57"), 500),
            ],
        ),
        // Sorted by q, stable among equals.
        (
            "application/json;q=0.2, application/dicom+json;q=0.9",
            Category::Metadata,
            vec![c(M::DicomJson, false, Default, 900), c(M::Json, false, Default, 200)],
        ),
        // OHIF's mixed QIDO-style list: the unusable range is ignored.
        (
            "application/dicom+json, multipart/related; type=application/octet-stream",
            Category::Metadata,
            vec![c(M::DicomJson, false, Default, 1000)],
        ),
        // Invalid ranges are ignored, not rejected.
        (
            "garbage, application/dicom+json; q=7, text/, application/json",
            Category::Metadata,
            vec![c(M::Json, false, Default, 1000)],
        ),
        // GCP CLI: the transfer syntax inside the quoted type.
        (
            "multipart/related; type=\"application/dicom; transfer-syntax=1.2.840.10008.1.2.1\"",
            STUDY,
            vec![c(M::Dicom, true, uid("1.2.840.10008.1.2.1"), 1000)],
        ),
        // The seed's old spellings.
        (
            "multipart/related; type=\"image/x-jls\"",
            Category::Frames,
            vec![c(M::Jls, true, Default, 1000)],
        ),
        (
            "multipart/related; type=image/x-dicom+rle",
            Category::Frames,
            vec![c(M::DicomRle, true, Default, 1000)],
        ),
        // A transfer syntax that the media type cannot carry: the range is invalid.
        (
            "multipart/related; type=image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.90, */*;q=0.1",
            Category::Frames,
            vec![c(M::OctetStream, true, Default, 100)],
        ),
        // multipart/related without type: the default part type.
        ("multipart/related", Category::BulkData, vec![c(M::OctetStream, true, Default, 1000)]),
        // Single-part application/dicom: instance level only.
        ("application/dicom", INST, vec![c(M::Dicom, false, Default, 1000)]),
        // Case-insensitive names, spaces, q=1.000, charset ignored.
        (
            "Application/DICOM+JSON ; Q=1.000 ; charset=utf-8",
            Category::Metadata,
            vec![c(M::DicomJson, false, Default, 1000)],
        ),
        // q=0 means "not acceptable".
        (
            "application/json;q=0, application/dicom+json",
            Category::Metadata,
            vec![c(M::DicomJson, false, Default, 1000)],
        ),
    ];
    for (accept, cat, want) in cases {
        assert_eq!(neg(accept, cat), want, "{accept}");
    }
}

#[test]
fn not_acceptable_table() {
    let cases: &[(&str, Category)] = &[
        ("application/dicom", STUDY), // single part only for an instance
        ("image/png", Category::Frames),
        ("text/html", Category::Metadata),
        ("application/dicom+json;q=0", Category::Metadata),
        (
            "multipart/related; type=application/dicom+json",
            Category::Metadata,
        ),
        ("application/dicom+xml", Category::Metadata), // XML is multipart only
        ("\"unterminated", Category::Metadata),
    ];
    for (accept, cat) in cases {
        let err = Negotiation::new(Some(accept), None, *cat).expect_err(accept);
        assert_eq!(err.status().as_u16(), 406, "{accept}");
        assert!(err.to_string().contains("available:"), "{accept}: {err}");
    }
}

#[test]
fn missing_accept_and_query_override() {
    let n = Negotiation::new(None, None, STUDY).expect("ok");
    assert_eq!(
        n.candidates,
        vec![c(M::Dicom, true, TsWanted::Default, 1000)]
    );
    let n = Negotiation::new(Some("   "), None, Category::Metadata).expect("ok");
    assert_eq!(n.candidates[0].media, M::DicomJson);
    let n = Negotiation::new(
        Some("application/dicom+json"),
        Some("application/json"),
        Category::Metadata,
    )
    .expect("ok");
    assert_eq!(
        n.candidates,
        vec![c(M::Json, false, TsWanted::Default, 1000)]
    );
}

#[test]
fn hostile_accept_values_do_not_panic() {
    let long = "a/b;".repeat(100_000);
    let nested = "\"".repeat(10_001);
    let many = "application/json,".repeat(10_000);
    for v in [
        long.as_str(),
        nested.as_str(),
        many.as_str(),
        ";;;,,,==",
        "*/x",
        "é/ü; q=0.5",
        "a/b; q=1.0001",
    ] {
        let _ = Negotiation::new(Some(v), None, Category::Metadata);
    }
    // Too many ranges: only the first MAX_RANGES are looked at.
    assert_eq!(parse_accept(&many).len(), MAX_RANGES);
}

#[test]
fn q_values() {
    let cases: &[(&str, Option<u16>)] = &[
        ("1", Some(1000)),
        ("1.0", Some(1000)),
        ("1.000", Some(1000)),
        ("1.001", None),
        ("0", Some(0)),
        ("0.5", Some(500)),
        ("0.123", Some(123)),
        ("0.1234", None),
        ("2", None),
        ("-1", None),
        ("", None),
        (".5", None),
    ];
    for (v, want) in cases {
        assert_eq!(parse_q(v), *want, "{v}");
    }
}

/// PS3.18 §8.7.8: q-values first; among equal q the stored syntax, then lossless before
/// lossy, then the client's order.
#[test]
fn choose_ts_orders_by_q_then_stored_then_lossless() {
    let any = |_: &str, _: &str| true;
    let w = |ts: &str, q: u16| Wanted { ts: uid(ts), q };
    let pick = |media, wanted: &[Wanted], stored| {
        choose_ts(media, wanted, stored, any).map(|c| (c.ts, c.passthrough))
    };
    // The case: ELE at 0.9 beats the stored RLE at 0.5.
    assert_eq!(
        pick(
            M::Dicom,
            &[w(ts::EXPLICIT_VR_LE, 900), w(ts::RLE_LOSSLESS, 500)],
            ts::RLE_LOSSLESS
        ),
        Some((ts::EXPLICIT_VR_LE.to_owned(), false))
    );
    // The stored one at the higher q is sent as is.
    assert_eq!(
        pick(
            M::Dicom,
            &[w(ts::RLE_LOSSLESS, 900), w(ts::EXPLICIT_VR_LE, 500)],
            ts::RLE_LOSSLESS
        ),
        Some((ts::RLE_LOSSLESS.to_owned(), true))
    );
    // Equal q: lossless before lossy, whatever the client's order.
    assert_eq!(
        pick(
            M::Dicom,
            &[w(ts::JPEG_BASELINE, 800), w(ts::JPEG_LS_LOSSLESS, 800)],
            ts::EXPLICIT_VR_LE
        ),
        Some((ts::JPEG_LS_LOSSLESS.to_owned(), false))
    );
    // A lower q is used only when nothing better can be produced.
    let no_jls = |_: &str, to: &str| to != ts::JPEG_LS_LOSSLESS;
    assert_eq!(
        choose_ts(
            M::Dicom,
            &[w(ts::JPEG_LS_LOSSLESS, 900), w(ts::JPEG_BASELINE, 100)],
            ts::EXPLICIT_VR_LE,
            no_jls
        )
        .map(|c| c.ts),
        Some(ts::JPEG_BASELINE.to_owned())
    );
}

/// Cornerstone asks the frames of every instance as octet-stream with `*`: native pixel
/// data stored Implicit VR, Big Endian or Deflated is sent as little-endian native bytes,
/// labelled Explicit VR Little Endian.
#[test]
fn octet_stream_any_of_native_data_is_explicit_le() {
    let native = |from: &str, to: &str| ts::is_native(from) && to == ts::EXPLICIT_VR_LE;
    for stored in [
        ts::IMPLICIT_VR_LE,
        ts::EXPLICIT_VR_BE,
        ts::DEFLATED_EXPLICIT_VR_LE,
    ] {
        let got = choose_ts(M::OctetStream, &[TsWanted::Any.into()], stored, native);
        assert_eq!(
            got,
            Some(Chosen {
                ts: ts::EXPLICIT_VR_LE.to_owned(),
                passthrough: false
            }),
            "{stored}"
        );
    }
    let got = choose_ts(
        M::OctetStream,
        &[TsWanted::Any.into()],
        ts::EXPLICIT_VR_LE,
        native,
    );
    assert_eq!(got.map(|c| c.passthrough), Some(true));
}

#[test]
fn choose_ts_table() {
    let uncompressed = |from: &str, to: &str| ts::is_native(from) && ts::is_native(to);
    let ele = ts::EXPLICIT_VR_LE;
    let cases: Vec<(MediaType, Vec<TsWanted>, &str, Option<(&str, bool)>)> = vec![
        // No parameter: the default; stored ELE is sent as is.
        (M::Dicom, vec![TsWanted::Default], ele, Some((ele, true))),
        // No parameter, stored implicit: converted to ELE.
        (
            M::Dicom,
            vec![TsWanted::Default],
            ts::IMPLICIT_VR_LE,
            Some((ele, false)),
        ),
        // No parameter, stored JPEG: not producible without a decoder.
        (M::Dicom, vec![TsWanted::Default], ts::JPEG_BASELINE, None),
        // `*`: always the stored one.
        (
            M::Dicom,
            vec![TsWanted::Any],
            ts::JPEG_BASELINE,
            Some((ts::JPEG_BASELINE, true)),
        ),
        // The stored syntax wins among equal q-values.
        (
            M::Dicom,
            vec![uid(ts::IMPLICIT_VR_LE), uid(ts::JPEG_BASELINE)],
            ts::JPEG_BASELINE,
            Some((ts::JPEG_BASELINE, true)),
        ),
        // Named implicit VR: produced on request.
        (
            M::Dicom,
            vec![uid(ts::IMPLICIT_VR_LE)],
            ele,
            Some((ts::IMPLICIT_VR_LE, false)),
        ),
        // Frames, octet-stream with `*`: stored compressed bytes untouched.
        (
            M::OctetStream,
            vec![TsWanted::Any],
            ts::JPEG_2000,
            Some((ts::JPEG_2000, true)),
        ),
        // image/jp2 with `*` and stored JPEG baseline: jp2 cannot carry it; default needs a codec.
        (M::Jp2, vec![TsWanted::Any], ts::JPEG_BASELINE, None),
        (
            M::Jp2,
            vec![TsWanted::Default],
            ts::JPEG_2000_LOSSLESS,
            Some((ts::JPEG_2000_LOSSLESS, true)),
        ),
    ];
    for (media, wanted, stored, want) in cases {
        let wanted: Vec<Wanted> = wanted.into_iter().map(Wanted::from).collect();
        let got = choose_ts(media, &wanted, stored, uncompressed);
        let want = want.map(|(t, p)| Chosen {
            ts: t.to_owned(),
            passthrough: p,
        });
        assert_eq!(got, want, "{media} {wanted:?} from {stored}");
    }
}
