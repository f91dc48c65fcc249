//! # wado-web-demo
//!
//! What the demo page (`web-demo/www/`) asks of Rust, through wasm-bindgen: the core's
//! multipart parser for every WADO-RS response, the core's frame decoders (raw, RLE, JPEG
//! baseline and lossless; JPEG 2000 where the core has it), and the display pipeline a viewer
//! needs: Modality LUT (rescale), VOI LUT (window, PS3.3 C.11.2.1.2), MONOCHROME1 inversion,
//! YBR to RGB, planar to interleaved, into RGBA for a canvas.
//!
//! Everything takes and returns plain bytes and strings (JSON), so the logic is tested
//! natively; the exported wrappers only turn errors into JS exceptions.

use serde::Serialize;
// Links malloc & co. for openjp2 (JPEG 2000) in wasm.
use serde_json::Value;
use wado_codec::PixelInfo;
use wasm_bindgen::prelude::*;
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

/// What drawing a frame needs, read from an instance's DICOM JSON.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Display {
    /// The pixel module.
    pub pixel: PixelInfo,
    /// Window Center and Width (first values), when the instance has them.
    pub window: Option<(f64, f64)>,
    /// Rescale Slope and Intercept (1 and 0 when absent).
    pub rescale: (f64, f64),
}

fn first<'a>(instance: &'a Value, tag: &str) -> Option<&'a Value> {
    instance.get(tag)?.get("Value")?.get(0)
}

fn number(instance: &Value, tag: &str) -> Option<f64> {
    match first(instance, tag)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Reads the display attributes of one instance's DICOM JSON object.
pub fn display_of(instance_json: &str) -> Result<Display, String> {
    let v: Value = serde_json::from_str(instance_json).map_err(|e| e.to_string())?;
    let v = match v {
        Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
        other => other,
    };
    let us = |tag: &str| number(&v, tag).map(|n| n as u16);
    let rows = us("00280010").ok_or("no Rows: not an image")?;
    let columns = us("00280011").ok_or("no Columns: not an image")?;
    let bits_allocated = us("00280100").ok_or("no Bits Allocated")?;
    let pixel = PixelInfo {
        rows,
        columns,
        samples_per_pixel: us("00280002").unwrap_or(1),
        bits_allocated,
        bits_stored: us("00280101").unwrap_or(bits_allocated),
        pixel_representation: us("00280103").unwrap_or(0),
        photometric_interpretation: first(&v, "00280004")
            .and_then(Value::as_str)
            .unwrap_or("MONOCHROME2")
            .trim()
            .to_owned(),
        planar_configuration: us("00280006").unwrap_or(0),
        number_of_frames: number(&v, "00280008").map_or(1, |n| n.max(1.0) as u32),
    };
    let window = match (number(&v, "00281050"), number(&v, "00281051")) {
        (Some(c), Some(w)) if w >= 1.0 => Some((c, w)),
        _ => None,
    };
    let rescale = (
        number(&v, "00281053").unwrap_or(1.0),
        number(&v, "00281052").unwrap_or(0.0),
    );
    Ok(Display {
        pixel,
        window,
        rescale,
    })
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

/// Whether samples from a decoder in this transfer syntax are RGB although the instance says
/// YBR (JPEG decoders convert colour; PS3.5 §8.2.1).
fn decoder_made_rgb(transfer_syntax: &str) -> bool {
    transfer_syntax.starts_with("1.2.840.10008.1.2.4.")
}

/// The sample values of a monochrome frame, after the Modality LUT (rescale).
fn modality_values(d: &Display, native: &[u8]) -> Result<Vec<f64>, String> {
    let p = &d.pixel;
    let n = usize::from(p.rows) * usize::from(p.columns);
    let bits = u32::from(p.bits_stored.clamp(1, 32));
    let signed = p.pixel_representation == 1;
    let extend = |raw: u32| -> f64 {
        let mask = if bits >= 32 {
            u32::MAX
        } else {
            (1u32 << bits) - 1
        };
        let v = raw & mask;
        if signed && bits < 32 && v & (1 << (bits - 1)) != 0 {
            f64::from(v as i32 - (1i32 << bits))
        } else if signed && bits == 32 {
            f64::from(v as i32)
        } else {
            f64::from(v)
        }
    };
    let raw: Vec<u32> = match p.bits_allocated {
        8 => native.iter().take(n).map(|&b| u32::from(b)).collect(),
        16 => native
            .chunks_exact(2)
            .take(n)
            .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        32 => native
            .chunks_exact(4)
            .take(n)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        1 => (0..n)
            .map(|i| u32::from(native.get(i / 8).is_some_and(|b| b >> (i % 8) & 1 == 1)))
            .collect(),
        b => return Err(format!("{b} bits allocated")),
    };
    if raw.len() < n {
        return Err(format!("frame holds {} of {n} pixels", raw.len()));
    }
    let (slope, intercept) = d.rescale;
    Ok(raw
        .into_iter()
        .map(|r| extend(r) * slope + intercept)
        .collect())
}

/// RGBA for a canvas from a frame part's bytes. `window` overrides the instance's window;
/// with neither, the frame's own range is used.
pub fn render(
    d: &Display,
    transfer_syntax: &str,
    data: &[u8],
    window: Option<(f64, f64)>,
) -> Result<Vec<u8>, String> {
    let native = native_frame(d, transfer_syntax, data)?;
    let p = &d.pixel;
    let n = usize::from(p.rows) * usize::from(p.columns);
    let mut out = vec![255u8; n * 4];
    if p.samples_per_pixel == 3 {
        if p.bits_allocated != 8 {
            return Err("colour frames of more than 8 bits are not drawn".into());
        }
        if native.len() < n * 3 {
            return Err(format!("frame holds {} of {} bytes", native.len(), n * 3));
        }
        let planar = p.planar_configuration == 1 && !decoder_made_rgb(transfer_syntax);
        let sample = |i: usize, c: usize| -> u8 {
            if planar {
                native[c * n + i]
            } else {
                native[i * 3 + c]
            }
        };
        let ybr = p.photometric_interpretation.starts_with("YBR_FULL")
            && !decoder_made_rgb(transfer_syntax);
        for i in 0..n {
            let (a, b, c) = (sample(i, 0), sample(i, 1), sample(i, 2));
            let rgb = if ybr { ybr_to_rgb(a, b, c) } else { [a, b, c] };
            out[i * 4..i * 4 + 3].copy_from_slice(&rgb);
        }
        return Ok(out);
    }
    let values = modality_values(d, &native)?;
    let (c, w) = match window.or(d.window) {
        Some(cw) => cw,
        None => {
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            ((min + max + 1.0) / 2.0, (max - min + 1.0).max(1.0))
        }
    };
    let invert = p.photometric_interpretation == "MONOCHROME1";
    for (i, x) in values.iter().enumerate() {
        let mut g = voi_linear(*x, c, w);
        if invert {
            g = 255 - g;
        }
        out[i * 4..i * 4 + 3].copy_from_slice(&[g, g, g]);
    }
    Ok(out)
}

/// The LINEAR VOI LUT function of PS3.3 C.11.2.1.2.1 onto 0..=255.
pub fn voi_linear(x: f64, c: f64, w: f64) -> u8 {
    let lo = c - 0.5 - (w - 1.0) / 2.0;
    let hi = c - 0.5 + (w - 1.0) / 2.0;
    if x <= lo {
        0
    } else if x > hi {
        255
    } else {
        (((x - (c - 0.5)) / (w - 1.0).max(f64::MIN_POSITIVE) + 0.5) * 255.0)
            .round()
            .clamp(0.0, 255.0) as u8
    }
}

/// YBR_FULL to RGB (PS3.3 C.7.6.3.1.2).
fn ybr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (f64::from(y), f64::from(cb) - 128.0, f64::from(cr) - 128.0);
    let c = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    [
        c(y + 1.402 * cr),
        c(y - 0.344136 * cb - 0.714136 * cr),
        c(y + 1.772 * cb),
    ]
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
    serde_json::to_string(&d).map_err(|e| JsError::new(&e.to_string()))
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

    #[test]
    fn voi_linear_follows_the_standard_formula() {
        // PS3.3 C.11.2.1.2.1 with c = 40, w = 400: below c - 0.5 - 199.5 = -160 → 0,
        // above c - 0.5 + 199.5 = 239 → 255, the centre maps to the middle.
        assert_eq!(voi_linear(-160.0, 40.0, 400.0), 0);
        assert_eq!(voi_linear(239.5, 40.0, 400.0), 255);
        assert_eq!(voi_linear(39.5, 40.0, 400.0), 128);
        // w = 1 is a threshold at c - 0.5.
        assert_eq!(voi_linear(9.0, 10.0, 1.0), 0);
        assert_eq!(voi_linear(10.0, 10.0, 1.0), 255);
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
        assert_eq!(d.window, Some((0.0, 101.0)));
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
