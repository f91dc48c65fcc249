//! Encode and decode speed of every codec wado writes, through the core's own frame
//! transcoding (`codec::transcode_frame`, what a frame request runs), on the two 512×512
//! frames scripts/bench-codecs.sh prepares (a 16-bit grey MR and an 8-bit RGB ultrasound; an
//! 8-bit and a 12-bit grey are derived from the first). The same script times the C
//! libraries behind DCMTK and GDCM on the very same frames.
//!   codec-bench GREY16.raw RGB8.raw [ITERATIONS [FILTER]]   (FILTER: part of a row's name)
#![allow(clippy::unwrap_used)]

use std::time::Instant;
use wado_codec::transcode_frame;
use wado_codec::PixelInfo;

const NATIVE: &str = "1.2.840.10008.1.2.1";

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn info(spp: u16, allocated: u16, stored: u16) -> PixelInfo {
    PixelInfo {
        rows: 512,
        columns: 512,
        samples_per_pixel: spp,
        bits_allocated: allocated,
        bits_stored: stored,
        pixel_representation: 0,
        photometric_interpretation: if spp == 3 { "RGB" } else { "MONOCHROME2" }.into(),
        planar_configuration: 0,
        number_of_frames: 1,
    }
}

fn bench(frame: &str, info: &PixelInfo, native: &[u8], name: &str, uid: &str, n: usize) {
    let mut enc_t = Vec::with_capacity(n);
    let mut dec_t = Vec::with_capacity(n);
    let mut size = 0;
    for _ in 0..n {
        let t = Instant::now();
        let enc = transcode_frame(info, NATIVE, native, uid).unwrap();
        enc_t.push(t.elapsed().as_secs_f64() * 1000.0);
        size = enc.len();
        let t = Instant::now();
        let back = transcode_frame(info, uid, &enc, NATIVE).unwrap();
        dec_t.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(back.len(), native.len());
    }
    let (e, d) = (median_ms(enc_t), median_ms(dec_t));
    let mp = 512.0 * 512.0 / 1e6;
    println!(
        "wado  {frame:<12} {name:<22} encode {e:7.2} ms ({:6.1} MP/s)  decode {d:7.2} ms ({:6.1} MP/s)  {size} bytes",
        mp / (e / 1000.0),
        mp / (d / 1000.0)
    );
}

/// `codec-bench j2k-encode GREY16.raw ITERATIONS`: JPEG 2000 Part 1 lossless encoding of the
/// 16-bit frame (as 16 bits, and shifted to 12), ours and openjp2's alternating in one
/// process; each output decoded by openjp2 and checked against the samples. Ours runs on the
/// cores the process may use (`taskset -c 0` for one).
fn j2k_encode_only(raw: &[u8], n: usize) {
    let grey16: Vec<i32> = raw
        .chunks_exact(2)
        .map(|c| i32::from(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    let grey12: Vec<i32> = grey16.iter().map(|v| v >> 4).collect();
    for (name, samples, bits) in [("16-bit", &grey16, 16), ("12-bit", &grey12, 12)] {
        let img = wado_codec::htj2k::Image {
            width: 512,
            height: 512,
            components: 1,
            precision: bits,
            signed: false,
            samples,
        };
        let theirs_img = wado_j2k::Image {
            width: 512,
            height: 512,
            components: 1,
            precision: bits,
            signed: false,
            samples,
        };
        let opts = wado_j2k::Options {
            lossless: true,
            ratio: 0.0,
            mct: false,
        };
        let (mut ours, mut theirs) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut ours_len, mut theirs_len) = (0, 0);
        for _ in 0..n {
            let s = Instant::now();
            let cs =
                wado_codec::htj2k::encode_part1(&img, wado_codec::htj2k::Progression::Lrcp, false)
                    .unwrap();
            ours.push(s.elapsed().as_secs_f64() * 1000.0);
            ours_len = cs.len();
            let d = jpeg2k::Image::from_bytes(&cs).unwrap();
            assert!(d.components()[0].data() == &samples[..]);
            let s = Instant::now();
            let cs = wado_j2k::encode(&theirs_img, &opts).unwrap();
            theirs.push(s.elapsed().as_secs_f64() * 1000.0);
            theirs_len = cs.len();
        }
        let best = |t: &[f64]| t.iter().copied().fold(f64::MAX, f64::min);
        let (bo, bt) = (best(&ours), best(&theirs));
        let (mo, mt) = (median_ms(ours), median_ms(theirs));
        println!("JPEG 2000 lossless encode, {name} 512×512:");
        println!("  ours     median {mo:.3} ms, best {bo:.3} ms, {ours_len} bytes");
        println!("  openjp2  median {mt:.3} ms, best {bt:.3} ms, {theirs_len} bytes");
    }
}

/// `codec-bench htj2k-decode GREY16.raw ITERATIONS`: our HTJ2K decoder alone (no frame
/// conversion around it) on the 16-bit frame coded by our encoder; median and best ms.
fn htj2k_decode_only(raw: &[u8], n: usize) {
    let samples: Vec<i32> = raw
        .chunks_exact(2)
        .map(|c| i32::from(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    let img = wado_codec::htj2k::Image {
        width: 512,
        height: 512,
        components: 1,
        precision: 16,
        signed: false,
        samples: &samples,
    };
    let cs = wado_codec::htj2k::encode(&img, wado_codec::htj2k::Progression::Rpcl, false).unwrap();
    // Alternating, so that a noisy machine slows both alike.
    let (mut ours, mut theirs) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let s = Instant::now();
        let d = wado_codec::htj2k::decode(&cs, 0).unwrap();
        ours.push(s.elapsed().as_secs_f64() * 1000.0);
        assert!(d.samples == samples);
        let s = Instant::now();
        let d = jpeg2k::Image::from_bytes(&cs).unwrap();
        theirs.push(s.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(d.components()[0].data().len(), samples.len());
    }
    let best = |t: &[f64]| t.iter().copied().fold(f64::MAX, f64::min);
    let (bo, bt) = (best(&ours), best(&theirs));
    let (mo, mt) = (median_ms(ours), median_ms(theirs));
    let mp = 512.0 * 512.0 / 1e6;
    println!("HTJ2K decode, 16-bit 512×512 (our encoder's stream):");
    println!(
        "  ours     median {mo:.3} ms ({:.1} MP/s), best {bo:.3} ms",
        mp / (mo / 1000.0)
    );
    println!(
        "  openjp2  median {mt:.3} ms ({:.1} MP/s), best {bt:.3} ms",
        mp / (mt / 1000.0)
    );
    // A thumbnail's decode: 1/8 of the sides (64×64), from the whole stream and from the
    // prefix that holds those resolutions (the RPCL stream's first four tile-parts: the fifth
    // SOT marker is where the prefix ends).
    let sots: Vec<usize> = cs
        .windows(2)
        .enumerate()
        .filter(|(_, w)| *w == [0xFF, 0x90])
        .map(|(i, _)| i)
        .collect();
    let prefix = &cs[..sots.get(4).copied().unwrap_or(cs.len())];
    let (mut full, mut pre) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let s = Instant::now();
        let d = wado_codec::htj2k::decode(&cs, 3).unwrap();
        full.push(s.elapsed().as_secs_f64() * 1000.0);
        assert_eq!((d.width, d.height), (64, 64));
        let s = Instant::now();
        let d = wado_codec::htj2k::decode(prefix, 3).unwrap();
        pre.push(s.elapsed().as_secs_f64() * 1000.0);
        assert_eq!((d.width, d.height), (64, 64));
    }
    println!(
        "  1/8 (64×64): {:.3} ms from the whole stream, {:.3} ms from its first {} of {} bytes",
        median_ms(full),
        median_ms(pre),
        prefix.len(),
        cs.len()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args[1] == "j2k-encode" {
        let raw = std::fs::read(&args[2]).unwrap();
        j2k_encode_only(&raw, args.get(3).and_then(|s| s.parse().ok()).unwrap_or(30));
        return;
    }
    if args[1] == "htj2k-decode" {
        let raw = std::fs::read(&args[2]).unwrap();
        htj2k_decode_only(&raw, args.get(3).and_then(|s| s.parse().ok()).unwrap_or(50));
        return;
    }
    let n = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20);
    let filter = args.get(4).cloned().unwrap_or_default();
    let grey16 = std::fs::read(&args[1]).unwrap();
    let rgb8 = std::fs::read(&args[2]).unwrap();
    let grey12: Vec<u8> = grey16
        .chunks_exact(2)
        .flat_map(|c| (u16::from_le_bytes([c[0], c[1]]) >> 4).to_le_bytes())
        .collect();
    let grey8: Vec<u8> = grey16.chunks_exact(2).map(|c| c[1]).collect();
    let codecs = [
        ("RLE", "1.2.840.10008.1.2.5"),
        ("JPEG Lossless SV1", "1.2.840.10008.1.2.4.70"),
        ("JPEG-LS lossless", "1.2.840.10008.1.2.4.80"),
        ("JPEG 2000 lossless", "1.2.840.10008.1.2.4.90"),
        ("JPEG 2000 10:1", "1.2.840.10008.1.2.4.91"),
        ("HTJ2K lossless", "1.2.840.10008.1.2.4.201"),
        ("HTJ2K RPCL lossless", "1.2.840.10008.1.2.4.202"),
        ("JPEG Baseline q90", "1.2.840.10008.1.2.4.50"),
        ("JPEG Extended q90", "1.2.840.10008.1.2.4.51"),
    ];
    let frames = [
        ("16-bit grey", info(1, 16, 16), &grey16),
        ("12-bit grey", info(1, 16, 12), &grey12),
        ("8-bit grey", info(1, 8, 8), &grey8),
        ("8-bit RGB", info(3, 8, 8), &rgb8),
    ];
    for (frame, pi, data) in &frames {
        for (name, uid) in codecs {
            if wado_codec::can_encode(uid, pi) && format!("{frame} {name}").contains(&filter) {
                bench(frame, pi, data, name, uid, n);
            }
        }
    }
}
