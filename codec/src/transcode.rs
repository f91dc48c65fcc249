//! Decoding compressed pixel data, on dicom-pixeldata's codecs: RLE Lossless, JPEG (baseline
//! and lossless) and, where the `openjp2` feature is on (the native server), JPEG 2000.
//!
//! - A **frame** is decoded from its own fragments only (the one ranged read the frame index
//!   gives), inside a minimal data set that carries the image pixel attributes: a frame request
//!   on a 1 GB multi-frame instance never reads or decodes the other frames.
//! - An **instance** is decoded whole into Explicit VR Little Endian, and its data set is made
//!   true to the new pixel data: Photometric Interpretation (RGB after decoding YBR), Planar
//!   Configuration (interleaved), and Lossy Image Compression (0028,2110) set to `01` with its
//!   method when the source was lossy (a decoded lossy image is never passed off as lossless).
//!
//! JPEG-LS (.4.80, .4.81) is ours ([`crate::jpegls`], pure Rust, every target), in both
//! directions. Lossless JPEG 2000 (.4.90, .4.92) is encoded by ours
//! ([`crate::htj2k::encode_part1`]: EBCOT code-blocks coded in parallel), lossy JPEG 2000
//! (.4.91, .4.93, a compression ratio to meet) by openjp2 through `wado-j2k` (the `openjp2`
//! feature). JPEG Extended (.4.51, 8 and 12 bits) is ours too
//! ([`crate::jpeg::dct`]), both ways: dicom-rs 0.10 cannot decode 12-bit JPEG.

use crate::{ts, Error, PixelInfo, Result};
use dicom_core::value::{PixelFragmentSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// True when pixel data stored in `uid` can be decoded by this build.
pub fn can_decode(uid: &str) -> bool {
    matches!(
        uid,
        ts::RLE_LOSSLESS
            | ts::JPEG_BASELINE
            | ts::JPEG_LOSSLESS
            | ts::JPEG_LOSSLESS_SV1
            | ts::JPEG_LS_LOSSLESS
            | ts::JPEG_LS_NEAR_LOSSLESS
            | ts::JPEG_EXTENDED
    ) || is_htj2k(uid)
        || (cfg!(feature = "openjp2") && decodes_as_j2k(uid))
}

/// The four JPEG 2000 transfer syntaxes (Part 1 and Part 2, lossless and lossy).
fn is_j2k(uid: &str) -> bool {
    matches!(
        uid,
        ts::JPEG_2000_LOSSLESS | ts::JPEG_2000 | ts::JPEG_2000_MC_LOSSLESS | ts::JPEG_2000_MC
    )
}

/// The three HTJ2K transfer syntaxes (JPEG 2000 Part 15; PS3.5 §8.2.14).
fn is_htj2k(uid: &str) -> bool {
    matches!(
        uid,
        ts::HTJ2K_LOSSLESS | ts::HTJ2K_LOSSLESS_RPCL | ts::HTJ2K
    )
}

/// Syntaxes whose frames are JPEG 2000 codestreams: Part 1 and 2, decoded by openjp2, and HTJ2K,
/// decoded by ours ([`crate::htj2k::decode`]) with openjp2 (OpenJPEG's HT block decoder) for
/// what ours leaves.
fn decodes_as_j2k(uid: &str) -> bool {
    is_j2k(uid) || is_htj2k(uid)
}

/// The compression method name for Lossy Image Compression Method (0028,2114), PS3.3 C.7.6.1.1.5.
fn lossy_method(uid: &str) -> Option<&'static str> {
    match uid {
        ts::JPEG_BASELINE | ts::JPEG_EXTENDED => Some("ISO_10918_1"),
        ts::JPEG_2000 | ts::JPEG_2000_MC => Some("ISO_15444_1"),
        ts::HTJ2K => Some("ISO_15444_15"),
        ts::JPEG_LS_NEAR_LOSSLESS => Some("ISO_14495_1"),
        _ => None,
    }
}

/// Decodes one frame (its fragments concatenated) into native little-endian bytes,
/// samples interleaved.
pub fn decode_frame(info: &PixelInfo, stored_ts: &str, frame: &[u8]) -> Result<Vec<u8>> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::malformed("frame", format!("cannot decode a {stored_ts} frame: {e}"))
    };
    if matches!(stored_ts, ts::JPEG_LS_LOSSLESS | ts::JPEG_LS_NEAR_LOSSLESS) {
        return decode_jls(info, frame).map_err(|e| bad(&e));
    }
    if stored_ts == ts::JPEG_EXTENDED {
        return decode_jpeg_extended(info, frame).map_err(|e| bad(&e));
    }
    if stored_ts == ts::RLE_LOSSLESS {
        return crate::rle::decode_frame(
            frame,
            usize::from(info.rows),
            usize::from(info.columns),
            usize::from(info.samples_per_pixel),
            info.bits_allocated,
        )
        .map_err(|e| bad(&e));
    }
    if is_htj2k(stored_ts) {
        // Ours (pure Rust, also in wasm32); what it leaves to others (more than one HT set,
        // Part 1 code-blocks in a mixed stream, POC) goes to openjp2 below. A stream ours
        // finds malformed is an error, not a second decoder's try.
        match decode_htj2k(info, frame, 0) {
            Ok((native, ..)) => return Ok(native),
            Err(crate::htj2k::DecodeError::Unsupported(_)) if cfg!(feature = "openjp2") => {}
            Err(e) => return Err(bad(&e)),
        }
    }
    if stored_ts == ts::JPEG_BASELINE {
        // Ours, so that colour follows the DICOM Photometric Interpretation rather than the
        // codestream's guesses (PS3.5 §8.2.1): an RGB stream without JFIF or Adobe marker is
        // not YCbCr. A stream ours does not take (a progressive one mislabelled baseline)
        // goes to dicom-pixeldata below.
        if let Ok(native) = decode_jpeg_extended(info, frame) {
            return Ok(native);
        }
    }
    let ts = TransferSyntaxRegistry
        .get(stored_ts)
        .ok_or_else(|| bad(&"unknown transfer syntax"))?;
    let mut obj = InMemDicomObject::new_empty();
    let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    obj.put(us(tags::ROWS, info.rows));
    obj.put(us(tags::COLUMNS, info.columns));
    obj.put(us(tags::SAMPLES_PER_PIXEL, info.samples_per_pixel));
    obj.put(us(tags::BITS_ALLOCATED, info.bits_allocated));
    obj.put(us(tags::BITS_STORED, info.bits_stored));
    obj.put(us(tags::HIGH_BIT, info.bits_stored.saturating_sub(1)));
    obj.put(us(tags::PIXEL_REPRESENTATION, info.pixel_representation));
    if info.samples_per_pixel > 1 {
        obj.put(us(tags::PLANAR_CONFIGURATION, info.planar_configuration));
    }
    obj.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from(info.photometric_interpretation.as_str()),
    ));
    obj.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("1"),
    ));
    obj.put(DataElement::new_with_len(
        tags::PIXEL_DATA,
        VR::OB,
        Length::UNDEFINED,
        Value::PixelSequence(PixelFragmentSequence::new(
            Vec::<u32>::new(),
            vec![frame.to_vec()],
        )),
    ));
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(ts.uid())
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
        .media_storage_sop_instance_uid("1.2.3")
        .build()
        .map_err(|e| bad(&e))?;
    let file = obj.with_exact_meta(meta);
    let decoded = file.decode_pixel_data().map_err(|e| bad(&e))?;
    let mut native = native_bytes(&decoded).map_err(|e| bad(&e))?;
    if decodes_as_j2k(stored_ts) {
        j2k_sign_fix(info, frame, &mut native);
    }
    Ok(native)
}

/// Decodes a JPEG 2000 or HTJ2K frame at the lowest resolution whose sides are still at least
/// `min_side` (or the image's, when smaller): only the code-blocks of those resolution levels
/// are decoded, which is what makes a thumbnail of a large frame cheap (a `.4.202` frame's
/// low resolutions are also its first bytes). Returns the native samples (as
/// [`decode_frame`] gives them) and the reduced columns and rows; `None` when the syntax is
/// not JPEG 2000 or this build has no openjp2.
pub fn decode_frame_reduced(
    info: &PixelInfo,
    stored_ts: &str,
    frame: &[u8],
    min_side: u32,
) -> Option<Result<(Vec<u8>, u16, u16)>> {
    if is_htj2k(stored_ts) {
        let reduce = j2k_reduction(info, frame, min_side);
        match decode_htj2k(info, frame, reduce) {
            Ok(done) => return Some(Ok(done)),
            Err(crate::htj2k::DecodeError::Unsupported(_)) if cfg!(feature = "openjp2") => {}
            Err(e) => {
                return Some(Err(Error::malformed(
                    "frame",
                    format!("cannot decode the HTJ2K frame: {e}"),
                )))
            }
        }
    }
    #[cfg(feature = "openjp2")]
    {
        if !decodes_as_j2k(stored_ts) {
            return None;
        }
        Some(decode_j2k_reduced(info, frame, min_side))
    }
    #[cfg(not(feature = "openjp2"))]
    {
        let _ = (info, stored_ts, frame, min_side);
        None
    }
}

/// How many resolution levels to leave out of a JPEG 2000 frame for sides of at least
/// `min_side` (or the image's, when smaller): bounded by the decomposition levels of its COD
/// marker segment (A.6.1).
fn j2k_reduction(info: &PixelInfo, frame: &[u8], min_side: u32) -> u32 {
    let head = &frame[..frame.len().min(4096)];
    let levels = head
        .windows(2)
        .position(|w| w == [0xFF, 0x52])
        .and_then(|at| head.get(at + 9).copied())
        .unwrap_or(0);
    let (cols, rows) = (u32::from(info.columns), u32::from(info.rows));
    let mut reduce = 0u32;
    while reduce < u32::from(levels)
        && cols.div_ceil(1 << (reduce + 1)) >= min_side.min(cols)
        && rows.div_ceil(1 << (reduce + 1)) >= min_side.min(rows)
    {
        reduce += 1;
    }
    reduce
}

/// Decodes an HTJ2K frame with our decoder ([`crate::htj2k::decode`]) into native
/// little-endian bytes, samples interleaved, at full resolution (`reduce` 0) or reduced;
/// with its columns and rows.
fn decode_htj2k(
    info: &PixelInfo,
    frame: &[u8],
    reduce: u32,
) -> std::result::Result<(Vec<u8>, u16, u16), crate::htj2k::DecodeError> {
    use crate::htj2k::DecodeError;
    // The codestream's size against the image's before anything is decoded.
    let (cw, ch, _) = crate::htj2k::dimensions(frame)?;
    if (cw, ch) != (usize::from(info.columns), usize::from(info.rows)) {
        return Err(DecodeError::Malformed(format!(
            "a {cw}×{ch} codestream for a {}×{} image",
            info.columns, info.rows
        )));
    }
    let img = crate::htj2k::decode(frame, reduce)?;
    let spp = usize::from(info.samples_per_pixel);
    let want = (
        usize::from(info.columns).div_ceil(1 << reduce),
        usize::from(info.rows).div_ceil(1 << reduce),
    );
    if img.components < spp || spp == 0 || (img.width, img.height) != want {
        return Err(DecodeError::Malformed(format!(
            "a {}×{}×{} codestream for a {}×{}×{spp} image",
            img.width, img.height, img.components, want.0, want.1
        )));
    }
    let (w, h) = (img.width, img.height);
    let bytes_per = if info.bits_allocated > 8 { 2 } else { 1 };
    let mut native = Vec::with_capacity(w * h * spp * bytes_per);
    let nc = img.components;
    // Samples of a signed image coded unsigned keep their bits (as openjp2's path does).
    let bits = u32::from(info.bits_stored.clamp(1, info.bits_allocated.max(1)));
    let reinterpret = info.pixel_representation == 1 && !img.signed && bits < 32;
    for px in img.samples.chunks_exact(nc) {
        for &v in &px[..spp] {
            let v = if reinterpret {
                let shift = 32 - bits;
                ((v as u32) << shift) as i32 >> shift
            } else {
                v
            };
            if bytes_per == 2 {
                native.extend_from_slice(&(v as u16).to_le_bytes());
            } else {
                native.push(v as u8);
            }
        }
    }
    Ok((native, w as u16, h as u16))
}

#[cfg(feature = "openjp2")]
fn decode_j2k_reduced(
    info: &PixelInfo,
    frame: &[u8],
    min_side: u32,
) -> Result<(Vec<u8>, u16, u16)> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::malformed("frame", format!("cannot decode the JPEG 2000 frame: {e}"))
    };
    let reduce = j2k_reduction(info, frame, min_side);
    let params = jpeg2k::DecodeParameters::default().reduce(reduce);
    let img = jpeg2k::Image::from_bytes_with(frame, params).map_err(|e| bad(&e))?;
    let comps = img.components();
    let spp = usize::from(info.samples_per_pixel);
    if comps.len() < spp || spp == 0 {
        return Err(bad(&format!("{} components, {spp} expected", comps.len())));
    }
    let (w, h) = (comps[0].width() as usize, comps[0].height() as usize);
    if comps[..spp]
        .iter()
        .any(|c| c.width() as usize != w || c.height() as usize != h || c.data().len() < w * h)
    {
        return Err(bad(&"components of different sizes"));
    }
    let bytes_per = if info.bits_allocated > 8 { 2 } else { 1 };
    let mut native = Vec::with_capacity(w * h * spp * bytes_per);
    for i in 0..w * h {
        for c in &comps[..spp] {
            let v = c.data()[i];
            if bytes_per == 2 {
                native.extend_from_slice(&(v as u16).to_le_bytes());
            } else {
                native.push(v as u8);
            }
        }
    }
    let reduced = PixelInfo {
        rows: h as u16,
        columns: w as u16,
        ..info.clone()
    };
    j2k_sign_fix(&reduced, frame, &mut native);
    Ok((native, w as u16, h as u16))
}

/// Whether decoding `stored` turns colour stored as `photometric` into RGB: JPEG (Baseline,
/// Extended) decoded to RGB whatever YCbCr it held (PS3.5 §8.2.1), JPEG 2000 through its
/// component transform (YBR_RCT, YBR_ICT: PS3.5 §8.2.4); anything else keeps its colour as
/// stored (YBR_FULL in JPEG 2000 or RLE stays YBR_FULL, as GDCM keeps it).
pub fn decoded_as_rgb(stored: &str, photometric: &str) -> bool {
    match stored {
        ts::JPEG_BASELINE | ts::JPEG_EXTENDED => photometric.starts_with("YBR"),
        uid if decodes_as_j2k(uid) => matches!(photometric, "YBR_RCT" | "YBR_ICT"),
        _ => false,
    }
}

/// Whether a JPEG 2000 codestream codes its first component as unsigned (its SIZ marker's
/// Ssiz, ISO 15444-1 A.5.1); `None` when no SIZ is found near its start.
fn j2k_unsigned(codestream: &[u8]) -> Option<bool> {
    let head = &codestream[..codestream.len().min(512)];
    let siz = head.windows(2).position(|w| w == [0xFF, 0x51])?;
    // FF51, Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz, YTOsiz, Csiz, Ssiz0.
    let ssiz = *codestream.get(siz + 2 + 2 + 2 + 8 * 4 + 2)?;
    Some(ssiz & 0x80 == 0)
}

/// A signed image (Pixel Representation 1) whose JPEG 2000 codestream says unsigned: the
/// decoder's samples are the stored bits, so they are sign-extended from Bits Stored, as GDCM
/// and pydicom do (pydicom's J2K_pixelrep_mismatch.dcm; the DICOM attribute wins).
fn j2k_sign_fix(info: &PixelInfo, codestream: &[u8], native: &mut [u8]) {
    if info.pixel_representation != 1 || j2k_unsigned(codestream) != Some(true) {
        return;
    }
    let bits = u32::from(info.bits_stored.clamp(1, info.bits_allocated.max(1)));
    match info.bits_allocated {
        16 if bits < 16 => {
            let shift = 16 - bits;
            for c in native.chunks_exact_mut(2) {
                let v = u16::from_le_bytes([c[0], c[1]]);
                let s = ((v << shift) as i16) >> shift;
                c.copy_from_slice(&s.to_le_bytes());
            }
        }
        8 if bits < 8 => {
            let shift = 8 - bits;
            for b in native.iter_mut() {
                *b = (((*b << shift) as i8) >> shift) as u8;
            }
        }
        _ => {}
    }
}

/// The samples of one frame of the image (Rows × Columns × Samples per Pixel): what a decoder
/// may allocate for it.
fn expected_samples(info: &PixelInfo) -> usize {
    let n = u64::from(info.rows) * u64::from(info.columns) * u64::from(info.samples_per_pixel);
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A decoded stream's size and components against the image's attributes.
fn same_geometry(info: &PixelInfo, width: usize, height: usize, components: usize) -> Result<()> {
    let want = (
        usize::from(info.columns),
        usize::from(info.rows),
        usize::from(info.samples_per_pixel),
    );
    if (width, height, components) == want {
        Ok(())
    } else {
        Err(Error::malformed(
            "frame",
            format!(
                "the stream is {width}×{height}×{components}, the image {}×{}×{}",
                want.0, want.1, want.2
            ),
        ))
    }
}

/// One JPEG Extended (or baseline) frame, 8 or 12 bits, by our own decoder
/// ([`crate::jpeg::dct`]), to native little-endian bytes. The Photometric Interpretation
/// decides the colour (PS3.5 §8.2.1): YBR_FULL(_422) is converted and comes out RGB, as
/// dicom-pixeldata gives every other JPEG; RGB is taken as it is, whatever markers the stream
/// has or lacks.
fn decode_jpeg_extended(info: &PixelInfo, frame: &[u8]) -> Result<Vec<u8>> {
    let img = crate::jpeg::dct::decode_limited(frame, expected_samples(info))?;
    same_geometry(info, img.width, img.height, img.components)?;
    let mut samples = img.samples;
    if img.components == 3 && info.photometric_interpretation.starts_with("YBR") {
        let max = f32::from(((1u32 << img.precision) - 1) as u16);
        let mid = f32::from(1u16 << (img.precision - 1));
        for px in samples.chunks_exact_mut(3) {
            let (y, cb, cr) = (
                f32::from(px[0]),
                f32::from(px[1]) - mid,
                f32::from(px[2]) - mid,
            );
            let rgb = [
                y + 1.402 * cr,
                y - 0.344_136 * cb - 0.714_136 * cr,
                y + 1.772 * cb,
            ];
            for (o, v) in px.iter_mut().zip(rgb) {
                *o = v.round().clamp(0.0, max) as u16;
            }
        }
    }
    match info.bits_allocated {
        8 if img.precision == 8 => Ok(samples.iter().map(|&v| v as u8).collect()),
        16 => Ok(samples.iter().flat_map(|v| v.to_le_bytes()).collect()),
        b => Err(Error::malformed(
            "JPEG",
            format!("{}-bit samples in {b} bits allocated", img.precision),
        )),
    }
}

/// One native frame (little-endian, interleaved) as a JPEG Extended stream (SOF1): 8 bits for
/// 8 bits allocated, 12 otherwise (Bits Stored at most 12, checked by [`can_encode`]); colour
/// as YCbCr without subsampling, so the data set says YBR_FULL.
fn encode_jpeg_extended(info: &PixelInfo, native: &[u8]) -> Result<Vec<u8>> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::malformed("frame", format!("cannot JPEG Extended-encode: {e}"))
    };
    if !can_encode(ts::JPEG_EXTENDED, info) {
        return Err(Error::Unsupported(format!(
            "JPEG Extended holds unsigned samples of up to 12 bits; this image has {} bits stored{}",
            info.bits_stored,
            if info.pixel_representation == 1 {
                ", signed"
            } else {
                ""
            }
        )));
    }
    let words: Vec<u16>;
    let (precision, samples) = if info.bits_allocated == 8 {
        (8, crate::jpeg::dct::Samples::Bytes(native))
    } else {
        let mask = (1u16 << info.bits_stored.clamp(1, 12)) - 1;
        words = native
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) & mask)
            .collect();
        (12, crate::jpeg::dct::Samples::Words(&words))
    };
    let mut out = crate::jpeg::dct::encode(
        samples,
        usize::from(info.columns),
        usize::from(info.rows),
        usize::from(info.samples_per_pixel),
        precision,
        crate::jpeg::dct::EncodeOptions {
            quality: JPEG_QUALITY,
            baseline: false,
            chroma_422: false,
        },
    )
    .map_err(|e| bad(&e))?;
    if out.len() % 2 == 1 {
        out.push(0);
    }
    Ok(out)
}

/// NEAR of JPEG-LS near-lossless encoding (1.2.840.10008.1.2.4.81): every sample within 2 of
/// the original, DCMTK's dcmcjpls default.
pub const JPEG_LS_NEAR: u16 = 2;

/// One JPEG-LS frame to native little-endian bytes, samples interleaved, checked against the
/// image's attributes.
fn decode_jls(info: &PixelInfo, frame: &[u8]) -> Result<Vec<u8>> {
    let img = crate::jpegls::decode_limited(frame, expected_samples(info))?;
    same_geometry(info, img.width, img.height, img.components)?;
    match info.bits_allocated {
        8 if img.bits <= 8 => Ok(img.samples.iter().map(|&v| v as u8).collect()),
        16 => Ok(img.samples.iter().flat_map(|v| v.to_le_bytes()).collect()),
        b => Err(Error::malformed(
            "JPEG-LS",
            format!("{}-bit samples in {b} bits allocated", img.bits),
        )),
    }
}

/// One native frame (little-endian, interleaved) as a JPEG-LS stream: P is Bits Stored, signed
/// samples are coded as their two's complement bits (PS3.5 §8.2.3), the pad byte keeps
/// fragments even.
fn encode_jls(info: &PixelInfo, native: &[u8], near: u16) -> Result<Vec<u8>> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::malformed("frame", format!("cannot JPEG-LS-encode: {e}"))
    };
    if near > 0 && info.pixel_representation == 1 {
        return Err(Error::Unsupported(
            "JPEG-LS near-lossless is not offered for signed pixel data: errors on two's complement bits wrap across zero (use 1.2.840.10008.1.2.4.80)".into(),
        ));
    }
    let bits = info.bits_stored.clamp(2, 16);
    let mask = ((1u32 << bits) - 1) as u16;
    let samples: Vec<u16> = match info.bits_allocated {
        8 => native.iter().map(|&b| u16::from(b) & mask).collect(),
        16 => native
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) & mask)
            .collect(),
        b => {
            return Err(Error::Unsupported(format!(
                "JPEG-LS here takes 8 or 16 bits allocated; this image has {b}"
            )))
        }
    };
    let mut out = crate::jpegls::encode(
        &samples,
        usize::from(info.columns),
        usize::from(info.rows),
        usize::from(info.samples_per_pixel),
        bits as u8,
        crate::jpegls::EncodeOptions {
            near,
            interleave: 1,
        },
    )
    .map_err(|e| bad(&e))?;
    if out.len() % 2 == 1 {
        out.push(0);
    }
    Ok(out)
}

/// The frames of an encapsulated Pixel Data element: one fragment per frame, all fragments for
/// one frame, or grouped by the Basic Offset Table.
fn encapsulated_frames(
    fragments: &[Vec<u8>],
    offsets: &[u32],
    frames: usize,
) -> Result<Vec<Vec<u8>>> {
    if frames == fragments.len() {
        return Ok(fragments.to_vec());
    }
    if frames == 1 {
        return Ok(vec![fragments.concat()]);
    }
    if offsets.len() != frames {
        return Err(Error::malformed(
            "pixel data",
            format!(
                "{} fragments for {frames} frames and no usable offset table",
                fragments.len()
            ),
        ));
    }
    let mut out: Vec<Vec<u8>> = vec![Vec::new(); frames];
    let mut pos = 0u64;
    for f in fragments {
        let k = offsets
            .iter()
            .rposition(|&o| u64::from(o) <= pos)
            .ok_or_else(|| Error::malformed("pixel data", "a fragment before the first frame"))?;
        out[k].extend_from_slice(f);
        pos += 8 + f.len() as u64;
    }
    Ok(out)
}

/// The image pixel attributes of a parsed file.
fn pixel_info_of(obj: &dicom_object::DefaultDicomObject) -> PixelInfo {
    let int = |tag| obj.get(tag).and_then(|e| e.to_int::<u32>().ok());
    PixelInfo {
        rows: int(tags::ROWS).unwrap_or(0) as u16,
        columns: int(tags::COLUMNS).unwrap_or(0) as u16,
        samples_per_pixel: int(tags::SAMPLES_PER_PIXEL).unwrap_or(1) as u16,
        bits_allocated: int(tags::BITS_ALLOCATED).unwrap_or(0) as u16,
        bits_stored: int(tags::BITS_STORED).unwrap_or(0) as u16,
        pixel_representation: int(tags::PIXEL_REPRESENTATION).unwrap_or(0) as u16,
        photometric_interpretation: obj
            .get(tags::PHOTOMETRIC_INTERPRETATION)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        planar_configuration: int(tags::PLANAR_CONFIGURATION).unwrap_or(0) as u16,
        number_of_frames: int(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1),
    }
}

fn native_bytes(decoded: &dicom_pixeldata::DecodedPixelData<'_>) -> Result<Vec<u8>> {
    let interleaved =
        decoded.planar_configuration() == dicom_pixeldata::PlanarConfiguration::Standard;
    if decoded.samples_per_pixel() > 1 && !interleaved {
        return Err(Error::malformed("frame", "planar output from the decoder"));
    }
    match decoded.bits_allocated() {
        8 => Ok(decoded.data().to_vec()),
        16 => Ok(decoded
            .data_ow()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()),
        b => Err(Error::malformed("frame", format!("{b} bits allocated"))),
    }
}

/// Decodes a whole Part-10 file into Explicit VR Little Endian (see the module doc for the
/// attributes that change with the pixel data).
pub fn decode_instance(key: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    let bad = |e: &dyn std::fmt::Display| Error::malformed(key, format!("cannot decode: {e}"));
    let mut obj = dicom_object::OpenFileOptions::new()
        .from_reader(bytes)
        .map_err(|e| bad(&e))?;
    crate::dataset::dictionary_vrs(&mut obj);
    let stored = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_owned();
    let (pixels, spp, bits) = if matches!(
        stored.as_str(),
        ts::JPEG_LS_LOSSLESS
            | ts::JPEG_LS_NEAR_LOSSLESS
            | ts::JPEG_EXTENDED
            | ts::JPEG_BASELINE
            | ts::RLE_LOSSLESS
    ) || decodes_as_j2k(&stored)
    {
        // Frame by frame, through `decode_frame` (our own codecs; JPEG 2000 with the sign
        // correction).
        let info = pixel_info_of(&obj);
        let (fragments, offsets) = match obj.get(tags::PIXEL_DATA).map(|e| e.value()) {
            Some(Value::PixelSequence(seq)) => {
                (seq.fragments().to_vec(), seq.offset_table().to_vec())
            }
            _ => return Err(bad(&"the pixel data is not encapsulated")),
        };
        let frames = encapsulated_frames(&fragments, &offsets, info.number_of_frames as usize)
            .map_err(|e| bad(&e))?;
        let mut pixels = Vec::new();
        for f in &frames {
            pixels.extend(
                match stored.as_str() {
                    ts::JPEG_EXTENDED => decode_jpeg_extended(&info, f),
                    ts::JPEG_LS_LOSSLESS | ts::JPEG_LS_NEAR_LOSSLESS => decode_jls(&info, f),
                    _ => decode_frame(&info, &stored, f),
                }
                .map_err(|e| bad(&e))?,
            );
        }
        (pixels, info.samples_per_pixel, info.bits_allocated)
    } else {
        let decoded = obj.decode_pixel_data().map_err(|e| bad(&e))?;
        let pixels = native_bytes(&decoded).map_err(|e| bad(&e))?;
        let spp = decoded.samples_per_pixel();
        let bits = decoded.bits_allocated();
        (pixels, spp, bits)
    };
    let len = pixels.len() as u32;
    // OW past 8 bits (32-bit samples too: the bytes are the same in little endian).
    let value = if bits > 8 {
        PrimitiveValue::U16(
            pixels
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        )
    } else {
        PrimitiveValue::from(pixels)
    };
    obj.put(DataElement::new_with_len(
        tags::PIXEL_DATA,
        if bits > 8 { VR::OW } else { VR::OB },
        Length::defined(len),
        value,
    ));
    let photometric = pixel_info_of(&obj).photometric_interpretation;
    if spp == 3 && decoded_as_rgb(&stored, &photometric) {
        obj.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from("RGB"),
        ));
    }
    if spp == 3 {
        // Every decoder here gives samples interleaved (RLE's colour planes too; its colour
        // is as stored, RGB or YBR_FULL, PS3.5 §8.2.2).
        obj.put(DataElement::new(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ));
    }
    if let Some(method) = lossy_method(&stored) {
        obj.put(DataElement::new(
            tags::LOSSY_IMAGE_COMPRESSION,
            VR::CS,
            PrimitiveValue::from("01"),
        ));
        if obj.get(tags::LOSSY_IMAGE_COMPRESSION_METHOD).is_none() {
            obj.put(DataElement::new(
                tags::LOSSY_IMAGE_COMPRESSION_METHOD,
                VR::CS,
                PrimitiveValue::from(method),
            ));
        }
    }
    obj.remove_element(tags::ENCAPSULATED_PIXEL_DATA_VALUE_TOTAL_LENGTH);
    obj.remove_element(tags::EXTENDED_OFFSET_TABLE);
    obj.remove_element(tags::EXTENDED_OFFSET_TABLE_LENGTHS);
    let ele = TransferSyntaxRegistry
        .get(ts::EXPLICIT_VR_LE)
        .ok_or_else(|| bad(&"no Explicit VR LE"))?;
    obj.meta_mut().set_transfer_syntax(ele);
    obj.meta_mut().update_information_group_length();
    let mut out = Vec::with_capacity(bytes.len() * 4);
    obj.write_all(&mut out).map_err(|e| bad(&e))?;
    Ok(out)
}

/// True when this build can write pixel data of an image like `info` in `uid`.
pub fn can_encode(uid: &str, info: &PixelInfo) -> bool {
    let (bits_allocated, signed) = (info.bits_allocated, info.pixel_representation == 1);
    match uid {
        ts::EXPLICIT_VR_LE => true,
        ts::RLE_LOSSLESS => matches!(bits_allocated, 8 | 16 | 32),
        // Baseline JPEG holds 8-bit samples only: deeper data is refused rather than cut.
        ts::JPEG_BASELINE => bits_allocated == 8,
        // JPEG Extended: 8 or 12-bit unsigned samples (ISO 10918-1 process 2 and 4); wider or
        // signed data is refused rather than cut or offset.
        ts::JPEG_EXTENDED => {
            !signed
                && matches!(info.samples_per_pixel, 1 | 3)
                && (bits_allocated == 8 || (bits_allocated == 16 && info.bits_stored <= 12))
        }
        ts::JPEG_LOSSLESS_SV1 | ts::JPEG_LOSSLESS => matches!(bits_allocated, 8 | 16),
        ts::JPEG_LS_LOSSLESS => matches!(bits_allocated, 8 | 16),
        // Near-lossless errors on two's complement bits would wrap across zero.
        ts::JPEG_LS_NEAR_LOSSLESS => matches!(bits_allocated, 8 | 16) && !signed,
        uid if is_j2k(uid) => cfg!(feature = "openjp2") && matches!(bits_allocated, 8 | 16),
        // Ours (pure Rust, every build): lossless HTJ2K of grey or three-sample images.
        ts::HTJ2K_LOSSLESS | ts::HTJ2K_LOSSLESS_RPCL | ts::HTJ2K => {
            matches!(bits_allocated, 8 | 16)
                && info.bits_stored <= 16
                && matches!(info.samples_per_pixel, 1 | 3)
        }
        _ => false,
    }
}

/// The memory one frame's conversion from `from` to `to` allocates besides its input and
/// its native output, in bytes: what each coder holds per sample while it works (measured by
/// `codec/tests/decode_memory.rs` against every coder's peak). The DCT codec keeps an `f32`
/// plane per component (padded to whole blocks) and 16-bit samples; openjp2 a 32-bit sample
/// per component and its code-blocks; the HTJ2K encoder 32-bit samples and its wavelet
/// bands; JPEG-LS and lossless JPEG a few lines and 16 or 32-bit samples; RLE its segments.
/// A budget estimate must not be exceeded: a crafted frame of a few hundred bytes may
/// declare a gigasample image, and the caller refuses what the budget cannot hold.
pub fn conversion_work_bytes(info: &PixelInfo, from: &str, to: &str) -> u64 {
    let spp = u64::from(info.samples_per_pixel.max(1));
    let samples = u64::from(info.rows) * u64::from(info.columns) * spp;
    // Rows and columns padded to whole 16-pixel MCUs (4:2:0 at most).
    let padded =
        u64::from(info.rows).div_ceil(16) * 16 * u64::from(info.columns).div_ceil(16) * 16 * spp;
    // Bytes per sample, decoding and encoding: the peaks measured at 1024² (grey 16-bit,
    // RGB 8-bit), rounded up.
    let per = |uid: &str, decoding: bool| -> u64 {
        let (decode, encode) = match uid {
            ts::JPEG_BASELINE | ts::JPEG_EXTENDED => return padded * 6,
            ts::JPEG_LOSSLESS | ts::JPEG_LOSSLESS_SV1 => (10, 6),
            ts::JPEG_LS_LOSSLESS | ts::JPEG_LS_NEAR_LOSSLESS => (4, 8),
            ts::RLE_LOSSLESS => (2, 2),
            uid if decodes_as_j2k(uid) => (12, 14),
            _ => (0, 0),
        };
        samples * if decoding { decode } else { encode }
    };
    if from == to {
        return 0;
    }
    per(from, true).saturating_add(per(to, false))
}

/// Whether a frame of an image stored in `from` comes colour by plane: only when it is read
/// as stored (a native syntax) and its Planar Configuration is 1; a decoder always gives
/// samples interleaved. The one rule of conversions and rendering.
pub fn native_planar(from: &str, info: &PixelInfo) -> bool {
    ts::is_native(from) && info.planar_configuration == 1 && info.samples_per_pixel > 1
}

/// One frame from `from` to `to`: the native little-endian bytes of a frame stored in `from`
/// (or its concatenated fragments), decoded if compressed and encoded if `to` is.
pub fn transcode_frame(info: &PixelInfo, from: &str, data: &[u8], to: &str) -> Result<Vec<u8>> {
    use std::borrow::Cow;
    let native_planar = native_planar(from, info);
    let native: Cow<'_, [u8]> = if ts::is_native(from) {
        Cow::Borrowed(data)
    } else {
        Cow::Owned(decode_frame(info, from, data)?)
    };
    match to {
        // Native frames keep their stored layout (the metadata's Planar Configuration says it).
        ts::EXPLICIT_VR_LE => return Ok(native.into_owned()),
        ts::RLE_LOSSLESS => {
            return crate::rle::encode_frame(
                &native,
                usize::from(info.rows),
                usize::from(info.columns),
                usize::from(info.samples_per_pixel),
                info.bits_allocated,
                native_planar,
            )
            .map_err(|e| Error::malformed("frame", format!("cannot RLE-encode: {e}")))
        }
        _ => {}
    }
    // Every other coder takes colour by pixel.
    let interleaved = if native_planar {
        Cow::Owned(interleave(&native, info))
    } else {
        native
    };
    match to {
        ts::JPEG_BASELINE => encode_jpeg_baseline(info, &interleaved),
        ts::JPEG_EXTENDED => encode_jpeg_extended(info, &interleaved),
        ts::JPEG_LOSSLESS_SV1 | ts::JPEG_LOSSLESS => crate::jpeg::lossless::encode_frame(
            &interleaved,
            usize::from(info.rows),
            usize::from(info.columns),
            usize::from(info.samples_per_pixel),
            info.bits_allocated,
        )
        .map_err(|e| Error::malformed("frame", format!("cannot JPEG Lossless-encode: {e}"))),
        ts::JPEG_LS_LOSSLESS => encode_jls(info, &interleaved, 0),
        ts::JPEG_LS_NEAR_LOSSLESS => encode_jls(info, &interleaved, JPEG_LS_NEAR),
        #[cfg(feature = "openjp2")]
        to if is_j2k(to) => encode_j2k(info, &interleaved, to, j2k_mct(info, to)),
        ts::HTJ2K_LOSSLESS | ts::HTJ2K_LOSSLESS_RPCL | ts::HTJ2K => {
            encode_htj2k(info, &interleaved, to)
        }
        other => Err(Error::Unsupported(format!(
            "encoding to {other} is not available"
        ))),
    }
}

/// The compression ratio of lossy JPEG 2000 (.4.91, .4.93) against the samples at Bits Stored:
/// 10:1, within what radiology guidance calls diagnostically acceptable for CT and CR, and
/// well above the 40 dB PSNR the end-to-end tests demand.
pub const J2K_RATIO: f32 = 10.0;

/// Whether JPEG 2000 coding into `to` applies the component transform: only to RGB (or what a
/// JPEG 2000 decoder gives back as RGB), and only in the Part 1 syntaxes, whose data set then
/// says YBR_RCT or YBR_ICT (PS3.5 Table 8.2.4-1). The Part 2 syntaxes (.4.92, .4.93) are coded
/// with Part 1 tools only, which every Part 2 decoder reads (ISO/IEC 15444-2 is a superset):
/// OpenJPEG's only Part 2 extension, the array-based transform, is irreversible and so cannot
/// serve the lossless .4.92, and leaving the colour untransformed keeps Photometric
/// Interpretation RGB true for both.
fn j2k_mct(info: &PixelInfo, to: &str) -> bool {
    info.samples_per_pixel == 3
        && matches!(
            to,
            ts::JPEG_2000_LOSSLESS
                | ts::JPEG_2000
                | ts::HTJ2K_LOSSLESS
                | ts::HTJ2K_LOSSLESS_RPCL
                | ts::HTJ2K
        )
        && matches!(
            info.photometric_interpretation.as_str(),
            "RGB" | "YBR_RCT" | "YBR_ICT"
        )
}

/// One native frame (little-endian, interleaved) as a JPEG 2000 codestream (no JP2 wrapper,
/// PS3.5 A.4.4): precision is Bits Stored, signed samples sign-extended from it.
#[cfg(feature = "openjp2")]
fn encode_j2k(info: &PixelInfo, native: &[u8], to: &str, mct: bool) -> Result<Vec<u8>> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::malformed("frame", format!("cannot JPEG 2000-encode: {e}"))
    };
    let lossless = matches!(to, ts::JPEG_2000_LOSSLESS | ts::JPEG_2000_MC_LOSSLESS);
    if lossless {
        // Ours: the same one tile, 64×64 code-blocks, LRCP order and one layer as openjp2's
        // defaults, its code-blocks coded on every core.
        return encode_ours(info, native, "JPEG 2000", |image| {
            crate::htj2k::encode_part1(image, crate::htj2k::Progression::Lrcp, mct)
        });
    }
    let (samples, bits, signed) = samples_at_precision(info, native, "JPEG 2000")?;
    let mut out = wado_j2k::encode(
        &wado_j2k::Image {
            width: u32::from(info.columns),
            height: u32::from(info.rows),
            components: u32::from(info.samples_per_pixel),
            precision: bits,
            signed,
            samples: &samples,
        },
        &wado_j2k::Options {
            lossless,
            ratio: J2K_RATIO,
            mct,
        },
    )
    .map_err(|e| bad(&e))?;
    if out.len() % 2 == 1 {
        out.push(0); // fragments are of even length (PS3.5 A.4); EOC stays found by decoders
    }
    Ok(out)
}

/// A native frame's samples (8 or 16 bits allocated) as integers at Bits Stored, sign-extended
/// when signed: what the JPEG 2000 coders take. Returns them with the precision and sign.
fn samples_at_precision(
    info: &PixelInfo,
    native: &[u8],
    codec: &str,
) -> Result<(Vec<i32>, u32, bool)> {
    let bits = u32::from(info.bits_stored.clamp(1, info.bits_allocated.clamp(1, 16)));
    let signed = info.pixel_representation == 1;
    let shift = 32 - bits;
    let widen = |v: u32| -> i32 {
        if signed {
            ((v << shift) as i32) >> shift
        } else {
            ((v << shift) >> shift) as i32
        }
    };
    let samples = match info.bits_allocated {
        8 => native.iter().map(|&b| widen(u32::from(b))).collect(),
        16 => native
            .chunks_exact(2)
            .map(|c| widen(u32::from(u16::from_le_bytes([c[0], c[1]]))))
            .collect(),
        b => {
            return Err(Error::Unsupported(format!(
                "{codec} here takes 8 or 16 bits allocated; this image has {b}"
            )))
        }
    };
    Ok((samples, bits, signed))
}

/// One native frame (little-endian, interleaved) as a lossless HTJ2K codestream
/// ([`crate::htj2k`]): `.4.202` in RPCL order with a TLM marker segment and a tile-part per
/// resolution (PS3.5 §8.2.14), `.4.201` in one tile-part. RGB goes through the reversible
/// colour transform (the data set then says YBR_RCT).
fn encode_htj2k(info: &PixelInfo, native: &[u8], to: &str) -> Result<Vec<u8>> {
    // .4.203 streams too: RPCL, a TLM and tile-parts by resolution cost nothing and let
    // viewers load it progressively as they do .4.202.
    let progression = if to == ts::HTJ2K_LOSSLESS {
        crate::htj2k::Progression::Lrcp
    } else {
        crate::htj2k::Progression::Rpcl
    };
    let mct = j2k_mct(info, to);
    encode_ours(info, native, "HTJ2K", |image| {
        if to == ts::HTJ2K {
            crate::htj2k::encode_lossy(image, progression, mct)
        } else {
            crate::htj2k::encode(image, progression, mct)
        }
    })
}

/// One native frame coded by our JPEG 2000 encoders ([`crate::htj2k`]: HTJ2K and Part 1
/// lossless) through `code`: the samples at Bits Stored, the codestream padded to even length
/// (fragments are, PS3.5 A.4), a coder's refusal a malformed frame naming `codec`.
fn encode_ours(
    info: &PixelInfo,
    native: &[u8],
    codec: &str,
    code: impl FnOnce(&crate::htj2k::Image<'_>) -> std::result::Result<Vec<u8>, String>,
) -> Result<Vec<u8>> {
    let (samples, bits, signed) = samples_at_precision(info, native, codec)?;
    let image = crate::htj2k::Image {
        width: usize::from(info.columns),
        height: usize::from(info.rows),
        components: usize::from(info.samples_per_pixel),
        precision: bits,
        signed,
        samples: &samples,
    };
    let mut out = code(&image)
        .map_err(|e| Error::malformed("frame", format!("cannot {codec}-encode: {e}")))?;
    if out.len() % 2 == 1 {
        out.push(0);
    }
    Ok(out)
}

/// The quality of JPEG Baseline encoding: high enough that the decoded image stays within
/// 40 dB PSNR of the original (checked in the end-to-end tests).
pub const JPEG_QUALITY: u8 = 90;

/// JPEG Baseline (ISO 10918-1 process 1) of one 8-bit frame, by our own DCT codec
/// ([`crate::jpeg::dct`]); colour is YCbCr with 4:2:2 subsampling, as YBR_FULL_422 says
/// (PS3.5 §8.2.1).
fn encode_jpeg_baseline(info: &PixelInfo, native: &[u8]) -> Result<Vec<u8>> {
    let bad =
        |e: &dyn std::fmt::Display| Error::malformed("frame", format!("cannot JPEG-encode: {e}"));
    if info.bits_allocated != 8 {
        return Err(Error::Unsupported(format!(
            "JPEG Baseline holds 8-bit samples; this image has {}",
            info.bits_allocated
        )));
    }
    let spp = usize::from(info.samples_per_pixel);
    let mut out = crate::jpeg::dct::encode(
        crate::jpeg::dct::Samples::Bytes(native),
        usize::from(info.columns),
        usize::from(info.rows),
        spp,
        8,
        crate::jpeg::dct::EncodeOptions {
            quality: JPEG_QUALITY,
            baseline: true,
            chroma_422: true,
        },
    )
    .map_err(|e| bad(&e))?;
    if out.len() % 2 == 1 {
        out.push(0); // fragments are of even length (PS3.5 A.4)
    }
    Ok(out)
}

/// Colour-by-plane samples to colour-by-pixel.
fn interleave(planar: &[u8], info: &PixelInfo) -> Vec<u8> {
    let bps = usize::from(info.bits_allocated / 8).max(1);
    let spp = usize::from(info.samples_per_pixel).max(1);
    let pixels = planar.len() / (bps * spp);
    let mut out = vec![0u8; planar.len()];
    for s in 0..spp {
        for p in 0..pixels {
            let src = (s * pixels + p) * bps;
            let dst = (p * spp + s) * bps;
            out[dst..dst + bps].copy_from_slice(&planar[src..src + bps]);
        }
    }
    out
}

/// Encodes a whole Part-10 file into an encapsulated transfer syntax (RLE, JPEG), decoding
/// it first when it is compressed. Each frame is one fragment; the Basic Offset Table is filled.
pub fn encode_instance(key: &str, bytes: &[u8], stored_ts: &str, to: &str) -> Result<Vec<u8>> {
    let bad =
        |e: &dyn std::fmt::Display| Error::malformed(key, format!("cannot encode as {to}: {e}"));
    let native_file;
    let source: &[u8] = if ts::is_native(stored_ts) {
        bytes
    } else {
        native_file = decode_instance(key, bytes)?;
        &native_file
    };
    let mut obj = dicom_object::OpenFileOptions::new()
        .from_reader(source)
        .map_err(|e| bad(&e))?;
    crate::dataset::dictionary_vrs(&mut obj);
    let info = pixel_info_of(&obj);
    let pixels = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| bad(&"no pixel data"))?
        .to_bytes()
        .map_err(|e| bad(&e))?
        .into_owned();
    let frame_len = (info.frame_bits() / 8) as usize;
    if frame_len == 0 || pixels.len() < frame_len * info.number_of_frames as usize {
        return Err(bad(&"pixel data shorter than its frames"));
    }
    let mut fragments = Vec::with_capacity(info.number_of_frames as usize);
    let mut offsets = Vec::with_capacity(info.number_of_frames as usize);
    let mut pos = 0u32;
    for k in 0..info.number_of_frames as usize {
        let frag = transcode_frame(
            &info,
            ts::EXPLICIT_VR_LE,
            &pixels[k * frame_len..(k + 1) * frame_len],
            to,
        )?;
        offsets.push(pos);
        pos += 8 + frag.len() as u32;
        fragments.push(frag);
    }
    let fragments_len: usize = fragments.iter().map(Vec::len).sum();
    obj.put(DataElement::new_with_len(
        tags::PIXEL_DATA,
        VR::OB,
        Length::UNDEFINED,
        Value::PixelSequence(PixelFragmentSequence::new(offsets, fragments)),
    ));
    if info.samples_per_pixel > 1 {
        // RLE segments are per sample and JPEG interleaves: decoders give colour-by-pixel back.
        obj.put(DataElement::new(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ));
    }
    if (is_j2k(to) || is_htj2k(to)) && j2k_mct(&info, to) {
        // The codestream carries the colour transform (PS3.5 Table 8.2.4-1, §8.2.14).
        let pi = if matches!(
            to,
            ts::JPEG_2000_LOSSLESS | ts::HTJ2K_LOSSLESS | ts::HTJ2K_LOSSLESS_RPCL
        ) {
            "YBR_RCT"
        } else {
            "YBR_ICT"
        };
        obj.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from(pi),
        ));
    }
    if let Some(method) = lossy_method(to) {
        // The stream is lossy: the data set says so, with its ratio and method (PS3.3
        // C.7.6.1.1.5); baseline JPEG colour is YCbCr 4:2:2 (PS3.5 §8.2.1).
        let ratio = format!(
            "{:.2}",
            (frame_len * info.number_of_frames as usize) as f64 / fragments_len.max(1) as f64
        );
        let push = |obj: &mut dicom_object::DefaultDicomObject, tag, v: &str| {
            let mut values: Vec<String> = obj
                .get(tag)
                .and_then(|e| e.to_multi_str().ok())
                .map(|c| c.to_vec())
                .unwrap_or_default();
            values.push(v.to_owned());
            obj.put(DataElement::new(
                tag,
                VR::CS,
                PrimitiveValue::Strs(values.into()),
            ));
        };
        obj.put(DataElement::new(
            tags::LOSSY_IMAGE_COMPRESSION,
            VR::CS,
            PrimitiveValue::from("01"),
        ));
        push(&mut obj, tags::LOSSY_IMAGE_COMPRESSION_RATIO, &ratio);
        push(&mut obj, tags::LOSSY_IMAGE_COMPRESSION_METHOD, method);
        if info.samples_per_pixel == 3 && matches!(to, ts::JPEG_BASELINE | ts::JPEG_EXTENDED) {
            // Baseline colour is subsampled 4:2:2; our Extended encoder does not subsample.
            let pi = if to == ts::JPEG_BASELINE {
                "YBR_FULL_422"
            } else {
                "YBR_FULL"
            };
            obj.put(DataElement::new(
                tags::PHOTOMETRIC_INTERPRETATION,
                VR::CS,
                PrimitiveValue::from(pi),
            ));
        }
    }
    let target = TransferSyntaxRegistry
        .get(to)
        .ok_or_else(|| bad(&"unknown transfer syntax"))?;
    obj.meta_mut().set_transfer_syntax(target);
    obj.meta_mut().update_information_group_length();
    let mut out = Vec::with_capacity(source.len());
    obj.write_all(&mut out).map_err(|e| bad(&e))?;
    Ok(out)
}
