//! Our HTJ2K decoder (`wado_codec::htj2k::decode`).
//! - First byte even: the rest as a codestream (seeds: OpenJPH's, every progression order,
//!   precincts, tiles, offsets), at a reduction of 0 to 3: an error or samples of the size
//!   the stream's SIZ gives, never a panic or a hang.
//! - First byte odd: an image from the bytes (as the `htj2k` target makes them) coded by our
//!   encoder decodes in ours to the image itself (lossless), or close to it (lossy). (Not beside
//!   openjp2: the Rust port trips its own dealloc precondition on some of these streams, which
//!   OpenJPEG's C library decodes; the lossy comparison with openjp2 and OpenJPH is in the
//!   codec's and the tests' suites.)
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
    assert_eq!(ours.samples.len(), samples.len());
    // Our encoder's step is 1/128 of the range, at least a grey level: the error stays far
    // below 1/32 of the range, or two grey levels (rms) for the narrowest images.
    let (lo, hi) = (samples.iter().min().unwrap(), samples.iter().max().unwrap());
    let range = f64::from(hi - lo).max(1.0);
    let mse = ours
        .samples
        .iter()
        .zip(&samples)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum::<f64>()
        / samples.len() as f64;
    assert!(mse <= (range / 32.0).powi(2) + 4.0, "lossy error {mse} over a range of {range}");
});
