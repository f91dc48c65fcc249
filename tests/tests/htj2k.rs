//! HTJ2K (JPEG 2000 Part 15; PS3.5 §8.2.14: .201 lossless, .202 lossless RPCL, .203) against
//! OpenJPH, its reference implementation: instances made at test time by `ojph_compress`
//! (`tests/oracles/ojph_dicom.py`; grey 16-bit signed, multi-frame 12-bit, RGB through the
//! reversible colour transform, odd sizes, RPCL, lossy) are served decoded by wado to the
//! samples OpenJPH started from (lossless), or to what `ojph_expand` decodes (lossy, within
//! one grey level: both decoders run the irreversible 9/7 in floating point), as instances
//! and as frames; and as stored, byte for byte, under `image/jphc`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use wado_tests::*;

struct Case {
    file: PathBuf,
    want: Vec<u8>,
    ts: String,
    lossless: bool,
    bits_allocated: u16,
    frames: usize,
}

/// The HTJ2K files OpenJPH makes from the corpus, with the samples a decoder must give.
fn openjph_files(dir: &Path) -> Vec<Case> {
    let out = run(Command::new(repo_dir().join(".tools/s3venv/bin/python"))
        .arg(tests_dir().join("oracles/ojph_dicom.py"))
        .arg(corpus())
        .arg(dir));
    let made: serde_json::Value = serde_json::from_slice(&out).unwrap();
    made.as_array()
        .unwrap()
        .iter()
        .map(|m| Case {
            file: PathBuf::from(m["file"].as_str().unwrap()),
            want: std::fs::read(m["want"].as_str().unwrap()).unwrap(),
            ts: m["ts"].as_str().unwrap().to_owned(),
            lossless: m["lossless"].as_bool().unwrap(),
            bits_allocated: m["bits_allocated"].as_u64().unwrap() as u16,
            frames: m["frames"].as_u64().unwrap() as usize,
        })
        .collect()
}

fn samples(bytes: &[u8], bits_allocated: u16) -> Vec<i32> {
    if bits_allocated == 16 {
        bytes
            .chunks_exact(2)
            .map(|c| i32::from(i16::from_le_bytes([c[0], c[1]])))
            .collect()
    } else {
        bytes.iter().map(|&b| i32::from(b)).collect()
    }
}

/// The largest difference between two sample lists of one length.
fn worst(a: &[i32], b: &[i32]) -> i32 {
    assert_eq!(a.len(), b.len(), "sample counts");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .max()
        .unwrap_or(0)
}

#[test]
fn wado_decodes_what_openjph_encodes() {
    let dir = tempdir();
    let cases = openjph_files(&dir.path().join("made"));
    assert_eq!(cases.len(), 7);
    let data = dir.path().join("data");
    let refs: Vec<&Path> = cases.iter().map(|c| c.file.as_path()).collect();
    let imported = import(&data, &refs);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let server = Server::start(&data, &[]);
    for case in &cases {
        let name = case
            .file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let tolerance = if case.lossless { 0 } else { 1 };
        let want = samples(&case.want, case.bits_allocated);
        let (st, se, sop) = uids(&case.file);
        let url = format!("{}/studies/{st}/series/{se}/instances/{sop}", server.root());

        // The instance, decoded into Explicit VR Little Endian; DCMTK reads its pixel data.
        let r = get(
            &url,
            Some("application/dicom; transfer-syntax=1.2.840.10008.1.2.1"),
        );
        assert_eq!(
            r.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let got_file = write_temp(dir.path(), &format!("wado-{name}"), &r.body);
        let mut pixel_data = raw_pixels(&got_file);
        // Pixel Data of odd length is padded to even (PS3.5 §8.1.1).
        pixel_data.truncate(case.want.len());
        let got = samples(&pixel_data, case.bits_allocated);
        assert!(
            worst(&got, &want) <= tolerance,
            "{name}: decoded instance differs from OpenJPH by {}",
            worst(&got, &want)
        );
        if case.want.len() / case.frames > 3 {
            // Colour decoded through the component transform is RGB now (PS3.5 §8.2.4).
            let pi = dcmdump_value(&got_file, "PhotometricInterpretation");
            assert!(
                matches!(pi.as_str(), "MONOCHROME1" | "MONOCHROME2" | "RGB"),
                "{name}: Photometric Interpretation {pi}"
            );
        }
        if !case.lossless {
            assert_eq!(dcmdump_value(&got_file, "LossyImageCompression"), "01");
        }

        // Every frame, decoded from its own fragment.
        let frame_len = want.len() / case.frames;
        let list: Vec<String> = (1..=case.frames).map(|n| n.to_string()).collect();
        let r = get(
            &format!("{url}/frames/{}", list.join(",")),
            Some("multipart/related; type=application/octet-stream"),
        );
        assert_eq!(r.status, 200, "{name}");
        let parts = r.parts();
        assert_eq!(parts.len(), case.frames, "{name}");
        for (i, part) in parts.iter().enumerate() {
            let frame = samples(&part.1, case.bits_allocated);
            let expect = &want[i * frame_len..(i + 1) * frame_len];
            assert!(
                worst(&frame, expect) <= tolerance,
                "{name}: frame {} differs",
                i + 1
            );
        }

        // As stored: image/jphc gives the codestream of the frame, byte for byte.
        let r = get(
            &format!("{url}/frames/1"),
            Some(&format!(
                "multipart/related; type=\"image/jphc\"; transfer-syntax={}",
                case.ts
            )),
        );
        assert_eq!(
            r.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let parts = r.parts();
        let stored = std::fs::read(&case.file).unwrap();
        let codestream = &parts[0].1;
        assert_eq!(
            &codestream[..4],
            &[0xFF, 0x4F, 0xFF, 0x51],
            "{name}: SOC, SIZ"
        );
        assert!(
            stored
                .windows(codestream.len())
                .any(|w| w == codestream.as_slice()),
            "{name}: the frame is not the stored codestream"
        );
    }
}
