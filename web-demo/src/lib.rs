//! # wado-web-demo
//!
//! What the demo page (`web-demo/www/`) asks of Rust, through wasm-bindgen: the core's
//! multipart parser for every WADO-RS response, the core's frame decoders (raw, RLE, JPEG
//! baseline and lossless; JPEG 2000 and HTJ2K where the core has it), and the core's rendering
//! pipeline (`wado_core::render`, the one the server's rendered resources run): Modality LUT,
//! VOI LUT (window, PS3.3 C.11.2.1.2), MONOCHROME1 inversion, YBR to RGB, planar to
//! interleaved, into RGBA for a canvas.
//!
//! Everything takes and returns plain bytes and strings (JSON), so the logic is tested
//! natively; the exported wrappers only turn errors into JS exceptions.

use serde::Serialize;
use serde_json::Value;
use wado_codec::PixelInfo;
use wado_core::render::{Display, VoiFunction, Window};
use wasm_bindgen::prelude::*;
// Links malloc & co. for openjp2 (JPEG 2000) in wasm.
use wasm_libc_shim as _;

/// A part of a multipart body: its header fields and where its body lies in the response.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct PartSpan {
    /// Header fields as sent.
    pub headers: Vec<(String, String)>,
    /// Offset of the part's body in the response body.
    pub start: usize,
    /// End of the part's body (exclusive).
    pub end: usize,
}

/// Splits a `multipart/related` body with the core's parser; `content_type` gives the
/// boundary.
pub fn multipart_spans(content_type: &str, body: &[u8]) -> Result<Vec<PartSpan>, String> {
    let boundary = wado_core::wire::multipart::boundary_of(content_type)
        .ok_or_else(|| format!("no boundary in {content_type:?}"))?;
    let parts = wado_core::wire::multipart::parse(&boundary, body).map_err(|e| e.to_string())?;
    let base = body.as_ptr() as usize;
    Ok(parts
        .iter()
        .map(|p| {
            let start = p.body.as_ptr() as usize - base;
            PartSpan {
                headers: p
                    .headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                start,
                end: start + p.body.len(),
            }
        })
        .collect())
}

/// What the page shows of an instance's display attributes (JSON for the script): the pixel
/// module, the first window as `[center, width]`, the rescale as `[slope, intercept]`.
#[derive(Debug, Serialize, PartialEq)]
pub struct DisplayInfo {
    /// The pixel module.
    pub pixel: PixelInfo,
    /// Window Center and Width, when the instance has a usable window.
    pub window: Option<(f64, f64)>,
    /// Rescale Slope and Intercept.
    pub rescale: (f64, f64),
}

/// The display attributes of one instance's DICOM JSON (an object, or an array holding it),
/// read by the core's rendering pipeline.
pub fn display_of(instance_json: &str) -> Result<Display, String> {
    let v: Value = serde_json::from_str(instance_json).map_err(|e| e.to_string())?;
    Display::from_json(&v)
}

/// A frame as native little-endian samples, interleaved, from the bytes of a frame part in
/// `transfer_syntax` (stored compressed bytes are decoded by the core's decoders).
pub fn native_frame(d: &Display, transfer_syntax: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    let info = &d.pixel;
    let native = wado_core::ts::is_native(transfer_syntax)
        || transfer_syntax.is_empty()
        || transfer_syntax == wado_core::ts::DEFLATED_EXPLICIT_VR_LE;
    if native {
        if transfer_syntax == wado_core::ts::EXPLICIT_VR_BE && info.bits_allocated > 8 {
            // Stored bytes of a Big Endian file: swap each sample.
            let w = usize::from(info.bits_allocated / 8);
            return Ok(data
                .chunks_exact(w)
                .flat_map(|c| c.iter().rev().copied())
                .collect());
        }
        return Ok(data.to_vec());
    }
    if !wado_codec::can_decode(transfer_syntax) {
        return Err(format!(
            "this build cannot decode {transfer_syntax} in the browser; ask the server to decode (application/octet-stream without transfer-syntax=*)"
        ));
    }
    wado_codec::decode_frame(info, transfer_syntax, data).map_err(|e| e.to_string())
}

/// RGBA for a canvas from a frame part's bytes, through the core's pipeline (the one the
/// server's rendered resources use). `window` overrides the instance's window; with neither,
/// the frame's own range is used.
pub fn render(
    d: &Display,
    transfer_syntax: &str,
    data: &[u8],
    window: Option<(f64, f64)>,
) -> Result<Vec<u8>, String> {
    let native = native_frame(d, transfer_syntax, data)?;
    let samples = wado_core::render::Samples::of(transfer_syntax, &d.pixel);
    let window = window.map(|(center, width)| Window {
        center,
        width,
        function: d.window.map_or(VoiFunction::Linear, |w| w.function),
    });
    let image = wado_core::render::render(d, &native, samples, window, None)?;
    Ok(image.to_rgba())
}

/// The keyword of a tag (`"00100010"` → `PatientName`), empty when unknown.
pub fn keyword_of(tag: &str) -> String {
    use dicom_core::dictionary::DataDictionary as _;
    let (Ok(g), Ok(e)) = (
        u16::from_str_radix(tag.get(0..4).unwrap_or(""), 16),
        u16::from_str_radix(tag.get(4..8).unwrap_or(""), 16),
    ) else {
        return String::new();
    };
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(g, e))
        .map(|entry| entry.alias.to_owned())
        .unwrap_or_default()
}

// ===== the exports =====

/// The parts of a multipart body, as JSON `[{headers: [[name, value]...], start, end}]`.
#[wasm_bindgen(js_name = parseMultipart)]
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Result<String, JsError> {
    let spans = multipart_spans(content_type, body).map_err(|e| JsError::new(&e))?;
    serde_json::to_string(&spans).map_err(|e| JsError::new(&e.to_string()))
}

/// The display attributes of an instance's DICOM JSON, as JSON.
#[wasm_bindgen(js_name = displayInfo)]
pub fn display_info(instance_json: &str) -> Result<String, JsError> {
    let d = display_of(instance_json).map_err(|e| JsError::new(&e))?;
    let info = DisplayInfo {
        window: d.window.map(|w| (w.center, w.width)),
        rescale: d.rescale,
        pixel: d.pixel,
    };
    serde_json::to_string(&info).map_err(|e| JsError::new(&e.to_string()))
}

/// RGBA pixels of a frame. `center`/`width` NaN: the instance's window, else the frame's range.
#[wasm_bindgen(js_name = renderFrame)]
pub fn render_frame(
    instance_json: &str,
    transfer_syntax: &str,
    data: &[u8],
    center: f64,
    width: f64,
) -> Result<Vec<u8>, JsError> {
    let d = display_of(instance_json).map_err(|e| JsError::new(&e))?;
    let window =
        (center.is_finite() && width.is_finite() && width >= 1.0).then_some((center, width));
    render(&d, transfer_syntax, data, window).map_err(|e| JsError::new(&e))
}

/// The keyword of a tag.
#[wasm_bindgen]
pub fn keyword(tag: &str) -> String {
    keyword_of(tag)
}

/// The transfer syntaxes this build decodes in the browser.
#[wasm_bindgen(js_name = canDecode)]
pub fn can_decode(transfer_syntax: &str) -> bool {
    wado_core::ts::is_native(transfer_syntax) || wado_codec::can_decode(transfer_syntax)
}

/// JPEG-LS encoding of samples (interleaved by pixel) with the core's pure-Rust codec: the
/// demo's benchmark hook (scripts/bench-jls.sh times it under node).
#[wasm_bindgen(js_name = encodeJls)]
pub fn encode_jls(
    samples: &[u16],
    width: usize,
    height: usize,
    components: usize,
    bits: u8,
    near: u16,
    interleave: u8,
) -> Result<Vec<u8>, JsError> {
    wado_codec::jpegls::encode(
        samples,
        width,
        height,
        components,
        bits,
        wado_codec::jpegls::EncodeOptions { near, interleave },
    )
    .map_err(|e| JsError::new(&e.to_string()))
}

/// Lossless HTJ2K encoding (`.4.202` when `rpcl`, else `.4.201`) of samples interleaved by
/// pixel, with the core's pure-Rust encoder: the demo's benchmark hook for wasm figures.
#[wasm_bindgen(js_name = encodeHtj2k)]
pub fn encode_htj2k(
    samples: &[u16],
    width: usize,
    height: usize,
    components: usize,
    bits: u32,
    rpcl: bool,
) -> Result<Vec<u8>, JsError> {
    let samples: Vec<i32> = samples.iter().map(|&v| i32::from(v)).collect();
    let image = wado_codec::htj2k::Image {
        width,
        height,
        components,
        precision: bits,
        signed: false,
        samples: &samples,
    };
    let progression = if rpcl {
        wado_codec::htj2k::Progression::Rpcl
    } else {
        wado_codec::htj2k::Progression::Lrcp
    };
    wado_codec::htj2k::encode(&image, progression, components == 3).map_err(|e| JsError::new(&e))
}

/// An HTJ2K frame decoded (our decoder, `wado_codec::htj2k`) to native little-endian bytes.
#[wasm_bindgen(js_name = decodeHtj2k)]
pub fn decode_htj2k(
    stream: &[u8],
    width: u16,
    height: u16,
    components: u16,
    bits: u16,
) -> Result<Vec<u8>, JsError> {
    let info = PixelInfo {
        rows: height,
        columns: width,
        samples_per_pixel: components,
        bits_allocated: if bits > 8 { 16 } else { 8 },
        bits_stored: bits,
        pixel_representation: 0,
        photometric_interpretation: if components == 3 {
            "YBR_RCT"
        } else {
            "MONOCHROME2"
        }
        .into(),
        planar_configuration: 0,
        number_of_frames: 1,
    };
    wado_codec::decode_frame(&info, wado_core::ts::HTJ2K_LOSSLESS, stream)
        .map_err(|e| JsError::new(&e.to_string()))
}

/// JPEG-LS decoding to samples interleaved by pixel.
#[wasm_bindgen(js_name = decodeJls)]
pub fn decode_jls(stream: &[u8]) -> Result<Vec<u16>, JsError> {
    wado_codec::jpegls::decode(stream)
        .map(|img| img.samples)
        .map_err(|e| JsError::new(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voi_linear(x: f64, center: f64, width: f64) -> u8 {
        Window {
            center,
            width,
            function: VoiFunction::Linear,
        }
        .apply(x)
    }

    #[test]
    fn display_from_dicom_json_and_rendering_a_signed_frame() {
        let json = r#"[{"00280002":{"vr":"US","Value":[1]},"00280004":{"vr":"CS","Value":["MONOCHROME1"]},
            "00280010":{"vr":"US","Value":[1]},"00280011":{"vr":"US","Value":[3]},
            "00280100":{"vr":"US","Value":[16]},"00280101":{"vr":"US","Value":[12]},
            "00280103":{"vr":"US","Value":[1]},"00281050":{"vr":"DS","Value":[0]},
            "00281051":{"vr":"DS","Value":[101]},"00281052":{"vr":"DS","Value":["-10"]},
            "00281053":{"vr":"DS","Value":[2]}}]"#;
        let d = display_of(json).expect("display");
        assert_eq!(d.window.map(|w| (w.center, w.width)), Some((0.0, 101.0)));
        assert_eq!(d.rescale, (2.0, -10.0));
        // 12-bit signed samples: 0xFFF is -1, 0x005 is 5, 0x800 is -2048.
        let frame = [0xFF, 0x0F, 0x05, 0x00, 0x00, 0x08];
        let rgba = render(&d, "1.2.840.10008.1.2.1", &frame, None).expect("render");
        // Modality values -12, 0, -4106; MONOCHROME1 inverts.
        let want = |x: f64| 255 - voi_linear(x, 0.0, 101.0);
        assert_eq!(
            [rgba[0], rgba[4], rgba[8]],
            [want(-12.0), want(0.0), want(-4106.0)]
        );
        assert_eq!(rgba[3], 255);
    }

    #[test]
    fn colour_frames_planar_and_ybr() {
        let json = r#"{"00280002":{"vr":"US","Value":[3]},"00280004":{"vr":"CS","Value":["YBR_FULL"]},
            "00280006":{"vr":"US","Value":[1]},"00280010":{"vr":"US","Value":[1]},
            "00280011":{"vr":"US","Value":[2]},"00280100":{"vr":"US","Value":[8]}}"#;
        let d = display_of(json).expect("display");
        // Planar: Y Y, Cb Cb, Cr Cr. Grey (128, 128) stays grey.
        let frame = [10, 200, 128, 128, 128, 128];
        let rgba = render(&d, "1.2.840.10008.1.2.1", &frame, None).expect("render");
        assert_eq!(&rgba, &[10, 10, 10, 255, 200, 200, 200, 255]);
    }

    #[test]
    fn multipart_spans_point_into_the_body() {
        let body = b"--b\r\nContent-Type: application/octet-stream\r\n\r\nABC\r\n--b\r\n\r\nDE\r\n--b--\r\n";
        let spans = multipart_spans("multipart/related; boundary=b", body).expect("parse");
        assert_eq!(spans.len(), 2);
        assert_eq!(&body[spans[0].start..spans[0].end], b"ABC");
        assert_eq!(&body[spans[1].start..spans[1].end], b"DE");
        assert_eq!(spans[0].headers[0].1, "application/octet-stream");
        assert!(multipart_spans("application/json", body).is_err());
    }

    #[test]
    fn keywords() {
        assert_eq!(keyword_of("00100010"), "PatientName");
        assert_eq!(keyword_of("7FE00010"), "PixelData");
        assert_eq!(keyword_of("zz"), "");
    }
}
