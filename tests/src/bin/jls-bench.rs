//! JPEG-LS speed of wado's pure-Rust codec on two 512×512 frames (16-bit grey and 8-bit RGB),
//! made from real images (scripts/bench-jls.sh prepares them and runs CharLS, through
//! pyjpegls, on the very same frames).
//!   jls-bench GREY16.raw RGB8.raw [ITERATIONS]
#![allow(clippy::unwrap_used)]

use std::time::Instant;
use wado_codec::jpegls::{decode, encode, EncodeOptions};

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn bench(name: &str, samples: &[u16], comps: usize, bits: u8, iterations: usize) {
    let (w, h) = (512, 512);
    let opts = EncodeOptions {
        near: 0,
        interleave: if comps == 3 { 2 } else { 0 },
    };
    let mut enc_t = Vec::new();
    let mut dec_t = Vec::new();
    let mut size = 0;
    for _ in 0..iterations {
        let t = Instant::now();
        let enc = encode(samples, w, h, comps, bits, opts).unwrap();
        enc_t.push(t.elapsed().as_secs_f64() * 1000.0);
        size = enc.len();
        let t = Instant::now();
        let img = decode(&enc).unwrap();
        dec_t.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(img.samples, samples);
    }
    let (e, d) = (median_ms(enc_t), median_ms(dec_t));
    let mp = (w * h) as f64 / 1e6;
    println!(
        "wado  {name:<12} encode {e:6.2} ms ({:5.1} MP/s)  decode {d:6.2} ms ({:5.1} MP/s)  {size} bytes",
        mp / (e / 1000.0),
        mp / (d / 1000.0)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iterations = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(30);
    let grey: Vec<u16> = std::fs::read(&args[1])
        .unwrap()
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let rgb: Vec<u16> = std::fs::read(&args[2])
        .unwrap()
        .iter()
        .map(|&b| u16::from(b))
        .collect();
    bench("16-bit grey", &grey, 1, 16, iterations);
    bench("8-bit RGB", &rgb, 3, 8, iterations);
}
