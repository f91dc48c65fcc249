#![allow(clippy::unwrap_used)]
//! Round trips through openjp2 (OpenJPEG's HT block decoder, an independent implementation),
//! exact for every size, depth, sign and colour tried.

use super::*;

/// A small deterministic generator (xorshift), so failures are reproducible.
fn noise(seed: u64, n: usize, lo: i32, hi: i32) -> Vec<i32> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            lo + (x % (hi - lo + 1) as u64) as i32
        })
        .collect()
}

/// Smooth data with some noise: what medical images look like to the coder.
fn ramp(w: usize, h: usize, nc: usize, max: i32) -> Vec<i32> {
    let n = noise(7, w * h * nc, -3, 3);
    (0..w * h * nc)
        .map(|i| {
            let (x, y) = ((i / nc) % w, (i / nc) / w);
            ((x * 7 + y * 3) as i32 + n[i]).rem_euclid(max + 1)
        })
        .collect()
}

/// openjp2's decoding (OpenJPEG's, an independent implementation; not `decode_frame`, which
/// tries ours first), components interleaved.
#[cfg(feature = "openjp2")]
fn decoded(stream: &[u8], w: usize, h: usize, nc: usize, _bits: u32, _signed: bool) -> Vec<i32> {
    let img = jpeg2k::Image::from_bytes(stream).unwrap();
    let comps = img.components();
    assert_eq!(comps.len(), nc);
    let mut out = vec![0i32; w * h * nc];
    for (c, comp) in comps.iter().enumerate() {
        assert_eq!((comp.width() as usize, comp.height() as usize), (w, h));
        for (i, &v) in comp.data().iter().enumerate() {
            out[i * nc + c] = v;
        }
    }
    out
}

#[cfg(feature = "openjp2")]
#[test]
fn openjpeg_decodes_what_we_encode_exactly() {
    let cases: Vec<(usize, usize, usize, u32, bool, Vec<i32>)> = vec![
        (512, 300, 1, 16, true, noise(1, 512 * 300, -32768, 32767)),
        (257, 300, 1, 16, false, noise(2, 257 * 300, 0, 65535)),
        (128, 128, 1, 12, false, ramp(128, 128, 1, 4095)),
        (97, 53, 3, 8, false, ramp(97, 53, 3, 255)),
        (64, 64, 3, 8, false, noise(3, 64 * 64 * 3, 0, 255)),
        (1, 1, 1, 8, false, vec![200]),
        (3, 3, 3, 8, false, noise(4, 27, 0, 255)),
        (1, 200, 1, 10, true, noise(5, 200, -512, 511)),
        (200, 1, 1, 16, true, noise(6, 200, -32768, 32767)),
        (300, 257, 1, 1, false, noise(8, 300 * 257, 0, 1)),
        (65, 130, 1, 16, true, vec![0; 65 * 130]),
    ];
    for (w, h, nc, bits, signed, samples) in cases {
        for progression in [Progression::Lrcp, Progression::Rpcl] {
            let img = Image {
                width: w,
                height: h,
                components: nc,
                precision: bits,
                signed,
                samples: &samples,
            };
            let stream = encode(&img, progression, nc == 3).unwrap();
            let back = decoded(&stream, w, h, nc, bits, signed);
            assert!(
                back == samples,
                "{w}×{h}×{nc} {bits}-bit signed={signed} {progression:?}: first difference at {:?}",
                back.iter().zip(&samples).position(|(a, b)| a != b)
            );
        }
    }
}

#[test]
fn rpcl_codestreams_have_a_tlm_and_a_tile_part_per_resolution() {
    let samples = ramp(512, 512, 1, 4095);
    let img = Image {
        width: 512,
        height: 512,
        components: 1,
        precision: 12,
        signed: false,
        samples: &samples,
    };
    let s = encode(&img, Progression::Rpcl, false).unwrap();
    // SOC, SIZ with Rsiz bit 14, then CAP.
    assert_eq!(&s[..4], &[0xFF, 0x4F, 0xFF, 0x51]);
    assert_eq!(&s[6..8], &[0x40, 0x00]);
    let find = |m: [u8; 2]| s.windows(2).position(|w| w == m);
    assert!(find([0xFF, 0x50]).is_some(), "CAP");
    let cod = find([0xFF, 0x52]).unwrap();
    assert_eq!(s[cod + 5], 2, "RPCL");
    let levels = s[cod + 9];
    assert_eq!(levels, 5);
    let tlm = find([0xFF, 0x55]).unwrap();
    let ltlm = usize::from(u16::from_be_bytes([s[tlm + 2], s[tlm + 3]]));
    let parts = (ltlm - 4) / 5;
    assert_eq!(parts, usize::from(levels) + 1);
    // Each TLM length lands on the next SOT (or EOC after the last).
    let mut at = s.windows(2).position(|w| w == [0xFF, 0x90]).unwrap();
    for p in 0..parts {
        let e = tlm + 6 + p * 5 + 1;
        let len = u32::from_be_bytes([s[e], s[e + 1], s[e + 2], s[e + 3]]) as usize;
        assert_eq!(
            &s[at..at + 2],
            &[0xFF, 0x90],
            "tile-part {p} starts with SOT"
        );
        assert_eq!(s[at + 10], p as u8, "TPsot");
        at += len;
    }
    assert_eq!(
        &s[at..at + 2],
        &[0xFF, 0xD9],
        "EOC after the last tile-part"
    );
}

#[cfg(feature = "openjp2")]
#[test]
fn a_two_byte_codestream_is_an_error() {
    // Found by the htj2k fuzz target: openjp2 frees a half-built tile after a failed decode.
    let info = crate::PixelInfo {
        rows: 46,
        columns: 11,
        samples_per_pixel: 3,
        bits_allocated: 16,
        bits_stored: 16,
        pixel_representation: 1,
        photometric_interpretation: "RGB".into(),
        planar_configuration: 0,
        number_of_frames: 1,
    };
    for ts in [crate::ts::HTJ2K_LOSSLESS, crate::ts::JPEG_2000_LOSSLESS] {
        assert!(crate::decode_frame(&info, ts, &[0xFF, 0xFF]).is_err());
        assert!(matches!(
            crate::decode_frame_reduced(&info, ts, &[0xFF, 0xFF], 8),
            Some(Err(_))
        ));
    }
}

#[cfg(feature = "openjp2")]
#[test]
fn fuzz_case_constant_minus_one_rgb() {
    let samples = vec![-1i32; 11 * 46 * 3];
    for progression in [Progression::Lrcp, Progression::Rpcl] {
        let img = Image {
            width: 11,
            height: 46,
            components: 3,
            precision: 16,
            signed: true,
            samples: &samples,
        };
        let stream = encode(&img, progression, true).unwrap();
        std::fs::write("/tmp/fz_case.j2c", &stream).unwrap();
        let back = decoded(&stream, 11, 46, 3, 16, true);
        assert_eq!(back, samples);
    }
}

/// PSNR of `b` against `a`, over the range `a` spans.
#[cfg(feature = "openjp2")]
fn psnr(a: &[i32], b: &[i32]) -> f64 {
    let (lo, hi) = (a.iter().min().unwrap(), a.iter().max().unwrap());
    let range = f64::from((hi - lo).max(1));
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (range * range / mse).log10()
}

#[cfg(feature = "openjp2")]
#[test]
fn lossy_streams_decode_in_openjpeg_close_to_the_original() {
    let cases: Vec<(usize, usize, usize, u32, bool, Vec<i32>)> = vec![
        (256, 200, 1, 12, false, ramp(256, 200, 1, 4095)),
        (
            128,
            96,
            1,
            16,
            true,
            ramp(128, 96, 1, 3000).iter().map(|v| v - 1000).collect(),
        ),
        (97, 53, 3, 8, false, ramp(97, 53, 3, 255)),
        (64, 64, 1, 8, false, noise(9, 64 * 64, 0, 255)),
        (3, 3, 1, 8, false, noise(10, 9, 0, 255)),
    ];
    for (w, h, nc, bits, signed, samples) in cases {
        let img = Image {
            width: w,
            height: h,
            components: nc,
            precision: bits,
            signed,
            samples: &samples,
        };
        let stream = encode_lossy(&img, Progression::Rpcl, nc == 3).unwrap();
        let back = decoded(&stream, w, h, nc, bits, signed);
        let p = psnr(&samples, &back);
        assert!(p >= 40.0, "{w}×{h}×{nc} {bits}-bit: PSNR {p:.1} dB");
        let raw_bytes = samples.len() * if bits > 8 { 2 } else { 1 };
        // Smooth images shrink; uniform noise cannot.
        assert!(
            stream.len() < raw_bytes || w == 64 || w == 3,
            "{w}×{h}×{nc}: {} bytes from {raw_bytes}",
            stream.len()
        );
    }
}

#[cfg(feature = "openjp2")]
#[test]
fn fuzz_case_constant_16_bit_rgb_64() {
    let samples = vec![12079i32; 64 * 64 * 3];
    let img = Image {
        width: 64,
        height: 64,
        components: 3,
        precision: 16,
        signed: true,
        samples: &samples,
    };
    let stream = encode(&img, Progression::Rpcl, true).unwrap();
    std::fs::write("/tmp/fz2.j2c", &stream).unwrap();
    let back = decoded(&stream, 64, 64, 3, 16, true);
    assert_eq!(back, samples);
    let lossy = encode_lossy(&img, Progression::Rpcl, true).unwrap();
    std::fs::write("/tmp/fz2l.j2c", &lossy).unwrap();
    let back = decoded(&lossy, 64, 64, 3, 16, true);
    assert!(psnr(&samples, &back) >= 40.0);
}

/// The cases the round trips run: sizes around the code-block and precinct edges, 1 to 16
/// bits, signed and unsigned, grey and colour, constant planes.
fn cases() -> Vec<(usize, usize, usize, u32, bool, Vec<i32>)> {
    vec![
        (512, 300, 1, 16, true, noise(1, 512 * 300, -32768, 32767)),
        (257, 300, 1, 16, false, noise(2, 257 * 300, 0, 65535)),
        (128, 128, 1, 12, false, ramp(128, 128, 1, 4095)),
        (97, 53, 3, 8, false, ramp(97, 53, 3, 255)),
        (64, 64, 3, 8, false, noise(3, 64 * 64 * 3, 0, 255)),
        (1, 1, 1, 8, false, vec![200]),
        (3, 3, 3, 8, false, noise(4, 27, 0, 255)),
        (1, 200, 1, 10, true, noise(5, 200, -512, 511)),
        (200, 1, 1, 16, true, noise(6, 200, -32768, 32767)),
        (300, 257, 1, 1, false, noise(8, 300 * 257, 0, 1)),
        (65, 130, 1, 16, true, vec![0; 65 * 130]),
        (70, 33, 3, 16, false, vec![65535; 70 * 33 * 3]),
    ]
}

#[test]
fn our_decoder_reads_what_we_encode_exactly() {
    for (w, h, nc, bits, signed, samples) in cases() {
        for progression in [Progression::Lrcp, Progression::Rpcl] {
            let img = Image {
                width: w,
                height: h,
                components: nc,
                precision: bits,
                signed,
                samples: &samples,
            };
            let stream = encode(&img, progression, nc == 3).unwrap();
            let back = decode(&stream, 0).unwrap();
            assert_eq!((back.width, back.height, back.components), (w, h, nc));
            assert!(
                back.samples == samples,
                "{w}×{h}×{nc} {bits}-bit signed={signed} {progression:?}: first difference at {:?}",
                back.samples.iter().zip(&samples).position(|(a, b)| a != b)
            );
        }
    }
}

/// Lossy streams: ours and openjp2 (an independent 9/7 and dequantizer) agree within their
/// float rounding, and ours is as close to the original.
#[cfg(feature = "openjp2")]
#[test]
fn our_decoder_matches_openjpeg_on_lossy_streams() {
    for (w, h, nc, bits, signed, samples) in cases() {
        if bits < 2 {
            continue;
        }
        let img = Image {
            width: w,
            height: h,
            components: nc,
            precision: bits,
            signed,
            samples: &samples,
        };
        let stream = encode_lossy(&img, Progression::Rpcl, nc == 3).unwrap();
        let theirs = decoded(&stream, w, h, nc, bits, signed);
        let ours = decode(&stream, 0).unwrap().samples;
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .max()
            .unwrap_or(0);
        // Float rounding: a grey level, or 1/16384 of the range for deeper samples.
        let tolerance = 1 << bits.saturating_sub(14);
        assert!(
            worst <= tolerance,
            "{w}×{h}×{nc} {bits}-bit: ours and openjp2 differ by {worst}"
        );
        let (p_ours, p_theirs) = (psnr(&samples, &ours), psnr(&samples, &theirs));
        assert!(
            p_ours >= p_theirs - 0.05,
            "{w}×{h}×{nc}: PSNR {p_ours:.2} dB, openjp2 {p_theirs:.2}"
        );
    }
}

#[test]
fn code_blocks_decode_to_what_was_coded() {
    for (seed, (w, h, lo, hi)) in [
        (4, 4, -1, 1),
        (1, 1, -5, 5),
        (2, 2, -100, 100),
        (64, 64, -1000, 1000),
        (64, 64, -3, 3),
        (33, 17, -70000, 70000),
        (5, 64, 0, 1),
        (64, 64, -200000, 3),
    ]
    .into_iter()
    .enumerate()
    {
        let coef = noise(seed as u64 + 11, w * h, lo, hi);
        let Some(seg) = block::encode(&coef, w, h, w) else {
            continue;
        };
        let mut out = vec![0i32; w * h];
        block_decoder::decode(
            &seg,
            w,
            h,
            &mut out,
            w,
            block_decoder::Planes {
                p: 0,
                limit: 20,
                reversible: true,
            },
            None,
        )
        .unwrap();
        let back = out;
        assert!(
            back == coef,
            "{w}×{h} in [{lo}, {hi}]: first difference at {:?}",
            back.iter()
                .zip(&coef)
                .position(|(a, b)| a != b)
                .map(|i| (i, back[i], coef[i]))
        );
    }
}

/// Damaged codestreams (bytes changed, cut short, marker segments garbled) decode to an error
/// or to samples, never to a panic, a hang or an allocation past the image's size.
#[test]
fn damaged_codestreams_never_panic() {
    let mut streams = Vec::new();
    let small = cases().into_iter().filter(|c| c.0 * c.1 <= 70_000);
    for (i, (w, h, nc, bits, signed, samples)) in small.enumerate() {
        let img = Image {
            width: w,
            height: h,
            components: nc,
            precision: bits,
            signed,
            samples: &samples,
        };
        let progression = if i % 2 == 0 {
            Progression::Rpcl
        } else {
            Progression::Lrcp
        };
        streams.push(encode(&img, progression, nc == 3).unwrap());
        if nc == 1 {
            streams.push(encode_refined(&img, progression, i % 3 == 0).unwrap());
        }
        if bits > 1 {
            streams.push(encode_lossy(&img, progression, nc == 3).unwrap());
        }
    }
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut decoded = 0;
    // More rounds locally: HTJ2K_DAMAGE_ROUNDS=200000 cargo test --release ... damaged
    let rounds = std::env::var("HTJ2K_DAMAGE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000usize);
    for round in 0..rounds {
        let mut s = streams[round % streams.len()].clone();
        match next() % 4 {
            0 => {
                let n = (next() % 4 + 1) as usize;
                for _ in 0..n {
                    let at = (next() as usize) % s.len();
                    s[at] = next() as u8;
                }
            }
            1 => {
                // In the headers: the first 120 bytes hold SIZ, CAP, COD, QCD.
                let at = (next() as usize) % s.len().min(120);
                s[at] = next() as u8;
            }
            2 => {
                let cut = (next() as usize) % s.len();
                s.truncate(cut);
            }
            _ => {
                let at = (next() as usize) % s.len();
                let n = (next() % 16) as usize;
                for k in at..(at + n).min(s.len()) {
                    s[k] = 0xFF;
                }
            }
        }
        for reduce in [0, 1] {
            if let Ok(img) = decode(&s, reduce) {
                assert!(img.samples.len() <= 1 << 28);
                decoded += 1;
            }
        }
    }
    // Most damage past the headers still decodes (to other samples).
    assert!(decoded > 500, "only {decoded} damaged streams decoded");
}

/// Streams with refinement passes (the cleanup pass at bit-plane 1, SigProp and MagRef at 0,
/// as Kakadu codes): ours decodes them as openjp2 does (OpenJPEG's HT decoder, an independent
/// implementation of the passes), exactly, and nearly losslessly.
#[cfg(feature = "openjp2")]
#[test]
fn refinement_passes_decode_as_openjpeg_decodes_them() {
    for (w, h, nc, bits, signed, samples) in cases() {
        if nc != 1 || bits < 4 {
            continue;
        }
        let img = Image {
            width: w,
            height: h,
            components: nc,
            precision: bits,
            signed,
            samples: &samples,
        };
        for causal in [false, true] {
            let stream = encode_refined(&img, Progression::Rpcl, causal).unwrap();
            let theirs = decoded(&stream, w, h, nc, bits, signed);
            let ours = decode(&stream, 0).unwrap().samples;
            let at = ours.iter().zip(&theirs).position(|(a, b)| a != b);
            assert!(
                at.is_none(),
                "{w}×{h} {bits}-bit causal={causal}: differs from openjp2 at {at:?}"
            );
            let p = psnr(&samples, &ours);
            assert!(p > 40.0, "{w}×{h} {bits}-bit: {p:.1} dB");
        }
    }
}

/// Part 1 (EBCOT) codestreams: openjp2 (OpenJPEG's tier-1 decoder, an independent
/// implementation) gives back every sample, for every case and both orders, and reads no HT
/// marking in them.
#[cfg(feature = "openjp2")]
#[test]
fn openjpeg_decodes_our_part1_codestreams_exactly() {
    let mut cases = cases();
    // Smooth 16-bit data (many bit-planes, long runs) and a sparse plane (run-length mode).
    cases.push((300, 200, 1, 16, false, ramp(300, 200, 1, 65535)));
    let mut sparse = vec![0i32; 130 * 70];
    for (i, v) in noise(9, 40, 0, 130 * 70 - 1).into_iter().enumerate() {
        sparse[v as usize] = if i % 2 == 0 { 4095 } else { -4096 };
    }
    cases.push((130, 70, 1, 13, true, sparse));
    for (w, h, nc, bits, signed, samples) in cases {
        for progression in [Progression::Lrcp, Progression::Rpcl] {
            let img = Image {
                width: w,
                height: h,
                components: nc,
                precision: bits,
                signed,
                samples: &samples,
            };
            let stream = encode_part1(&img, progression, nc == 3).unwrap();
            assert_eq!(&stream[6..8], &[0, 0], "SIZ's Rsiz is Part 1's 0");
            assert!(
                !stream.windows(2).take(200).any(|m| m == [0xFF, 0x50]),
                "no CAP marker segment"
            );
            let back = decoded(&stream, w, h, nc, bits, signed);
            assert!(
                back == samples,
                "{w}×{h}×{nc} {bits}-bit signed={signed} {progression:?}: first difference at {:?}",
                back.iter().zip(&samples).position(|(a, b)| a != b)
            );
        }
    }
}

/// The helper threads of every `par_map` at once never exceed the process's budget (cores − 1,
/// at most 7), however many coders ask; and a reservation is given back when dropped. Other
/// tests may hold helpers meanwhile, so only the bound and the return are asserted.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn coding_threads_stay_within_one_budget_for_the_process() {
    let budget = std::thread::available_parallelism().map_or(1, |t| t.get().min(8)) - 1;
    let mut held = Vec::new();
    loop {
        let h = Helpers::reserve(usize::MAX);
        if h.count == 0 {
            break;
        }
        held.push(h);
        assert!(held.len() <= budget, "more reservations than helpers");
    }
    let taken: usize = held.iter().map(|h| h.count).sum();
    assert!(
        taken <= budget,
        "{taken} helpers taken of a budget of {budget}"
    );
    let in_use = HELPERS_IN_USE.load(std::sync::atomic::Ordering::Acquire);
    assert!(in_use >= taken && in_use <= budget);
    drop(held);
    // What this test held is free again (unless another test took it in between).
    assert!(HELPERS_IN_USE.load(std::sync::atomic::Ordering::Acquire) <= budget);
    // And a coder with the helpers in use still codes, on its own thread: the same bytes.
    let samples = ramp(300, 300, 1, 4095);
    let img = Image {
        width: 300,
        height: 300,
        components: 1,
        precision: 12,
        signed: false,
        samples: &samples,
    };
    let parallel = encode_part1(&img, Progression::Lrcp, false).unwrap();
    let all: Vec<Helpers> = std::iter::from_fn(|| {
        let h = Helpers::reserve(usize::MAX);
        (h.count > 0).then_some(h)
    })
    .collect();
    let alone = encode_part1(&img, Progression::Lrcp, false).unwrap();
    drop(all);
    assert!(
        parallel == alone,
        "the same codestream on one thread or several"
    );
}
