//! What each coder really allocates, against [`wado_codec::conversion_work_bytes`], the
//! estimate the server reserves from its conversion memory before a frame is decoded or
//! encoded (issue 22: a crafted JPEG declaring 32768×32768 decoded into 6–7 GiB of `f32`
//! planes against an estimate of twice its output).
//!
//! Measured, not modelled: each conversion runs alone in a child process (this test binary
//! run again), which reads its input from a file, notes its peak resident memory (Linux's
//! `VmHWM`), converts, and reports how far the peak rose. That rise, less the input and the
//! output the estimate does not cover, must be within the estimate.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use wado_codec::{conversion_work_bytes, transcode_frame, ts, PixelInfo};

const CHILD: &str = "WADO_DECODE_MEMORY_CASE";

fn info(spp: u16, bits: u16, side: u16) -> PixelInfo {
    PixelInfo {
        rows: side,
        columns: side,
        samples_per_pixel: spp,
        bits_allocated: bits,
        bits_stored: if bits == 16 { 12 } else { 8 },
        pixel_representation: 0,
        photometric_interpretation: if spp == 3 { "RGB" } else { "MONOCHROME2" }.into(),
        planar_configuration: 0,
        number_of_frames: 1,
    }
}

/// A smooth image with noise: what compresses like a real one.
fn native(i: &PixelInfo) -> Vec<u8> {
    let (w, h, spp) = (
        usize::from(i.columns),
        usize::from(i.rows),
        usize::from(i.samples_per_pixel),
    );
    let max = (1u32 << i.bits_stored) - 1;
    let mut seed = 0x2545_F491u32;
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            for c in 0..spp {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let v = ((x + y * 2 + c * 50) as u32 * max / (3 * w as u32) + seed % 16).min(max);
                if i.bits_allocated == 16 {
                    out.extend_from_slice(&(v as u16).to_le_bytes());
                } else {
                    out.push(v as u8);
                }
            }
        }
    }
    out
}

/// Peak resident memory of this process so far, in bytes.
fn peak() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// The child's side: `spp bits side from to path` in the environment; prints the rise.
#[test]
fn child_entry() {
    let Ok(case) = std::env::var(CHILD) else {
        return;
    };
    let f: Vec<&str> = case.split(' ').collect();
    let i = info(
        f[0].parse().unwrap(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
    );
    let input = std::fs::read(f[5]).unwrap();
    let before = peak();
    let out = transcode_frame(&i, f[3], &input, f[4]).unwrap();
    let rise = peak().saturating_sub(before);
    println!("RISE {rise} OUT {}", out.len());
}

#[test]
fn every_coder_stays_within_its_estimate() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut report = Vec::new();
    let mut short = Vec::new();
    for (spp, bits) in [(1u16, 16u16), (3, 8)] {
        let side = 1024u16;
        let i = info(spp, bits, side);
        let raw = native(&i);
        for coded in [
            ts::JPEG_BASELINE,
            ts::JPEG_EXTENDED,
            ts::JPEG_LOSSLESS_SV1,
            ts::JPEG_LS_LOSSLESS,
            ts::RLE_LOSSLESS,
            ts::JPEG_2000_LOSSLESS,
            ts::HTJ2K_LOSSLESS,
        ] {
            if !wado_codec::can_encode(coded, &i) || !wado_codec::can_decode(coded) {
                continue;
            }
            let stream = transcode_frame(&i, ts::EXPLICIT_VR_LE, &raw, coded).unwrap();
            for (from, to, input) in [
                (coded, ts::EXPLICIT_VR_LE, &stream),
                (ts::EXPLICIT_VR_LE, coded, &raw),
            ] {
                let path = dir.path().join("input");
                std::fs::write(&path, input).unwrap();
                let out = Command::new(&exe)
                    .args([
                        "--exact",
                        "child_entry",
                        "--nocapture",
                        "--test-threads",
                        "1",
                    ])
                    .env(
                        CHILD,
                        format!("{spp} {bits} {side} {from} {to} {}", path.display()),
                    )
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                let line = text
                    .find("RISE ")
                    .map(|at| text[at..].lines().next().unwrap_or(""))
                    .unwrap_or_else(|| panic!("{from} → {to}: {text}"));
                let n: Vec<u64> = line
                    .split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect();
                let (rise, output) = (n[0], n[1]);
                let native_len = raw.len() as u64;
                let estimate = conversion_work_bytes(&i, from, to);
                // The estimate covers the work; the caller reserves input and native output
                // besides (and the encoded output when encoding, at most the native size).
                let covered = estimate + native_len + output.max(native_len);
                report.push(format!(
                    "{spp}×{bits}-bit {side}² {from} → {to}: rose {:.1} MB, estimate {:.1} MB (+ {:.1} MB in and out)",
                    rise as f64 / 1e6,
                    estimate as f64 / 1e6,
                    (native_len + output.max(native_len)) as f64 / 1e6
                ));
                if rise > covered {
                    short.push(report.last().unwrap().clone());
                }
            }
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        short.is_empty(),
        "estimates short of what was used:\n{}",
        short.join("\n")
    );
}
