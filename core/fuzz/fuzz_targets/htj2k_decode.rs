//! Our HTJ2K decoder (`wado_codec::htj2k::decode`).
//! - First byte even: the rest as a codestream (seeds: OpenJPH's, every progression order,
//!   precincts, tiles, offsets), at a reduction of 0 to 3: an error or samples of the size
//!   the stream's SIZ gives, never a panic or a hang.
//! - First byte odd: an image from the bytes (as the `htj2k` target makes them) coded lossy by
//!   our encoder decodes in ours as in openjp2 (an independent decoder), within float
//!   rounding; lossless, to the image itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wado_codec::htj2k::{decode, dimensions, encode, encode_lossy, Image, Progression};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let reduce = u32::from(mode >> 1) % 4;
        if let Ok(img) = decode(rest, reduce) {
            let (w, h, nc) = dimensions(rest).expect("a decoded stream has a SIZ");
            assert_eq!(img.components, nc);
            assert!(img.width <= w && img.height <= h);
            assert_eq!(img.samples.len(), img.width * img.height * nc);
        }
        return;
    }
    if rest.len() < 6 {
        return;
    }
    let width = usize::from(rest[0] % 70) + 1;
    let height = usize::from(rest[1] % 70) + 1;
    let bits = u32::from(rest[2] % 15) + 2;
    let signed = rest[3] & 1 == 1;
    let components = if rest[3] & 2 == 2 { 3 } else { 1 };
    let progression = if rest[3] & 4 == 4 { Progression::Rpcl } else { Progression::Lrcp };
    let body = &rest[4..];
    let samples: Vec<i32> = (0..width * height * components)
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
    let lossless = encode(&img, progression, components == 3).expect("a valid image encodes");
    let back = decode(&lossless, 0).expect("our lossless stream decodes");
    assert!(back.samples == samples, "lossless round trip differs");
    let lossy = encode_lossy(&img, progression, components == 3).expect("a valid image encodes");
    let ours = decode(&lossy, 0).expect("our lossy stream decodes");
    let theirs = jpeg2k::Image::from_bytes(&lossy).expect("openjp2 decodes our lossy stream");
    let comps = theirs.components();
    assert_eq!(comps.len(), components);
    let tolerance = 1i32 << bits.saturating_sub(14);
    for (c, comp) in comps.iter().enumerate() {
        for (i, &t) in comp.data().iter().enumerate() {
            let o = ours.samples[i * components + c];
            assert!((o - t).abs() <= tolerance, "sample {i}/{c}: ours {o}, openjp2 {t}");
        }
    }
});
