//! Our JPEG 2000 Part 1 lossless encoder (EBCOT, `.4.90`) on arbitrary images (the `htj2k`
//! target's header of size, depth, sign and colour, then samples): it never fails on a valid
//! image, and openjp2 (OpenJPEG's tier-1, an independent implementation) decodes its
//! codestream to the same samples, in both progressions.
//!
//! Run with `-O` (scripts/fuzz.sh does): openjp2 0.6 deallocates a null buffer with a zeroed
//! `Layout` for every code-block that carries no data, harmless in release builds (a `free` of
//! null) but an abort under the debug assertions' UB checks, and such blocks are everywhere in
//! fuzzed images. Panics, bounds and mismatches are checked all the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wado_codec::htj2k::{encode_part1, Image, Progression};
use wado_codec::{decode_frame, ts, PixelInfo};

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let width = usize::from(data[0] % 70) + 1;
    let height = usize::from(data[1] % 70) + 1;
    let bits = u32::from(data[2] % 16) + 1;
    let signed = data[3] & 1 == 1;
    let components = if data[3] & 2 == 2 { 3 } else { 1 };
    let rpcl = data[3] & 4 == 4;
    let info = PixelInfo {
        rows: height as u16,
        columns: width as u16,
        samples_per_pixel: components as u16,
        bits_allocated: if bits > 8 { 16 } else { 8 },
        bits_stored: bits as u16,
        pixel_representation: u16::from(signed),
        photometric_interpretation: if components == 3 {
            "RGB"
        } else {
            "MONOCHROME2"
        }
        .into(),
        planar_configuration: 0,
        number_of_frames: 1,
    };
    // The bytes as samples (repeated to fill the image), within the precision.
    let body = &data[4..];
    let n = width * height * components;
    let samples: Vec<i32> = (0..n)
        .map(|i| {
            let raw = u32::from(body[(2 * i) % body.len()])
                | u32::from(body[(2 * i + 1) % body.len()]) << 8;
            let v = raw & ((1u32 << bits) - 1);
            if signed && v >> (bits - 1) & 1 == 1 {
                v as i32 - (1i32 << bits)
            } else {
                v as i32
            }
        })
        .collect();
    let img = Image {
        width,
        height,
        components,
        precision: bits,
        signed,
        samples: &samples,
    };
    let progression = if rpcl {
        Progression::Rpcl
    } else {
        Progression::Lrcp
    };
    let stream = encode_part1(&img, progression, components == 3).expect("a valid image encodes");
    let native = decode_frame(&info, ts::JPEG_2000_LOSSLESS, &stream).expect("our stream decodes");
    let back: Vec<i32> = if bits > 8 {
        native
            .chunks_exact(2)
            .map(|c| {
                let v = u16::from_le_bytes([c[0], c[1]]);
                if signed {
                    i32::from(((v << (16 - bits)) as i16) >> (16 - bits))
                } else {
                    i32::from(v)
                }
            })
            .collect()
    } else {
        native
            .iter()
            .map(|&b| {
                if signed {
                    i32::from(((b << (8 - bits)) as i8) >> (8 - bits))
                } else {
                    i32::from(b)
                }
            })
            .collect()
    };
    assert_eq!(
        back, samples,
        "{width}×{height}×{components} {bits}-bit signed={signed}"
    );
});
