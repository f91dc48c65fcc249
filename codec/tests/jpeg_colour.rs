//! JPEG colour follows the DICOM Photometric Interpretation, not the codestream's guesses
//! (PS3.5 §8.2.1; issue 13): an RGB JPEG Baseline stream with no JFIF or Adobe marker and
//! component ids 0, 1, 2, labelled RGB, is RGB. The fixture is DCMTK's `dcmcjpeg +eb +cr`
//! (RGB, no colour transform) of `sc_rgb_ele.dcm` with its Adobe marker turned into a comment
//! of the same length and its component ids renumbered 0, 1, 2 (tests/fixtures/jpeg/README).
//! The oracle is the uncompressed original; DCMTK's dcmdjpeg decodes the fixture to 56.5 dB
//! of it, a decoder that guesses YCbCr to about 11 dB.
#![allow(clippy::unwrap_used)]

use dicom_core::value::Value;
use dicom_dictionary_std::tags;
use wado_codec::{ts, PixelInfo};

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64.powi(2) / mse.max(1e-9)).log10()
}

#[test]
fn an_rgb_baseline_stream_without_markers_is_decoded_as_rgb() {
    let original = dicom_object::OpenFileOptions::new()
        .from_reader(&fixture("corpus/sc_rgb_ele.dcm")[..])
        .unwrap();
    let want = original
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .to_vec();
    let bytes = fixture("jpeg/sc_rgb_jpeg_baseline_ids012_no_markers.dcm");
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(&bytes[..])
        .unwrap();
    let frame = match obj.element(tags::PIXEL_DATA).unwrap().value() {
        Value::PixelSequence(s) => s.fragments().concat(),
        _ => panic!("encapsulated"),
    };
    let info = PixelInfo {
        rows: 100,
        columns: 100,
        samples_per_pixel: 3,
        bits_allocated: 8,
        bits_stored: 8,
        pixel_representation: 0,
        photometric_interpretation: "RGB".into(),
        planar_configuration: 0,
        number_of_frames: 1,
    };
    let got = wado_codec::decode_frame(&info, ts::JPEG_BASELINE, &frame).unwrap();
    let db = psnr(&got, &want);
    assert!(db > 50.0, "frame decoded at {db:.1} dB of the original");
    // The whole instance too: decoded to Explicit VR LE, RGB.
    let file = wado_codec::decode_instance("fixture", &bytes).unwrap();
    let decoded = dicom_object::OpenFileOptions::new()
        .from_reader(&file[..])
        .unwrap();
    assert_eq!(
        decoded
            .element(tags::PHOTOMETRIC_INTERPRETATION)
            .unwrap()
            .to_str()
            .unwrap()
            .trim(),
        "RGB"
    );
    let pixels = decoded
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap();
    let db = psnr(&pixels, &want);
    assert!(db > 50.0, "instance decoded at {db:.1} dB of the original");
}
