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
        .arg(dir)
        .arg(ojph_codec()));
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

/// The original samples of a file, colour by pixel, as integers (DCMTK and GDCM decode).
fn original_samples(dir: &Path, file: &Path) -> (Vec<i32>, u16, bool) {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    // DCMTK makes it Little Endian (Big Endian and implicit sources); what DCMTK cannot
    // convert (RLE) GDCM decodes directly.
    let plain = dir.join(format!("plain-{name}"));
    let converted = Command::new("dcmconv")
        .args(["+te", "--write-xfer-little"])
        .arg(file)
        .arg(&plain)
        .output()
        .unwrap()
        .status
        .success();
    let plain = if converted { plain } else { file.to_path_buf() };
    let raw = dir.join(format!("raw-{name}"));
    run(Command::new("gdcmconv")
        .args(["--raw", "--planar-configuration", "0"])
        .arg(&plain)
        .arg(&raw));
    let bits: u16 = dcmdump_value(&raw, "BitsAllocated").parse().unwrap();
    let signed = dcmdump_value(&raw, "PixelRepresentation") == "1";
    let stored: u32 = dcmdump_value(&raw, "BitsStored").parse().unwrap();
    let bytes = raw_pixels(&raw);
    let widen = |v: u32| -> i32 {
        let shift = 32 - stored;
        if signed {
            ((v << shift) as i32) >> shift
        } else {
            ((v << shift) >> shift) as i32
        }
    };
    let samples = if bits == 16 {
        bytes
            .chunks_exact(2)
            .map(|c| widen(u32::from(u16::from_le_bytes([c[0], c[1]]))))
            .collect()
    } else {
        bytes.iter().map(|&b| widen(u32::from(b))).collect()
    };
    (samples, bits, signed)
}

/// A PGX (OpenJPEG's grey output: "PG ML +|- BITS W H", big-endian samples) as integers.
fn read_pgx(path: &Path) -> Vec<i32> {
    let data = std::fs::read(path).unwrap();
    let nl = data.iter().position(|&b| b == b'\n').unwrap();
    let head = String::from_utf8_lossy(&data[..nl]).into_owned();
    let f: Vec<&str> = head.split_whitespace().collect();
    let signed = f.contains(&"-");
    let bits: u32 = f[f.len() - 3].parse().unwrap();
    let body = &data[nl + 1..];
    if bits > 8 {
        body.chunks_exact(2)
            .map(|c| {
                let v = u16::from_be_bytes([c[0], c[1]]);
                if signed {
                    i32::from(v as i16)
                } else {
                    i32::from(v)
                }
            })
            .collect()
    } else {
        body.iter()
            .map(|&b| {
                if signed {
                    i32::from(b as i8)
                } else {
                    i32::from(b)
                }
            })
            .collect()
    }
}

/// The markers of a codestream's main header and tile-part headers: (code, offset).
fn tile_parts(cs: &[u8]) -> (Option<usize>, Vec<usize>) {
    let tlm = cs.windows(2).position(|w| w == [0xFF, 0x55]);
    let mut sots = Vec::new();
    let mut at = cs.windows(2).position(|w| w == [0xFF, 0x90]).unwrap();
    loop {
        sots.push(at);
        let psot = u32::from_be_bytes([cs[at + 6], cs[at + 7], cs[at + 8], cs[at + 9]]) as usize;
        at += psot;
        if cs[at..at + 2] != [0xFF, 0x90] {
            assert_eq!(
                &cs[at..at + 2],
                &[0xFF, 0xD9],
                "EOC after the last tile-part"
            );
            break;
        }
    }
    (tlm, sots)
}

#[test]
fn what_wado_encodes_decodes_in_openjph_and_openjpeg() {
    let dir = tempdir();
    let names = [
        "ct_small_ele.dcm",
        "mr_small_implicit.dcm",
        "mr_small_bigendian.dcm",
        "emr_10frame_ele.dcm",
        "us_rgb_planar1_ele.dcm",
        "sc_rgb_odd_3x3.dcm",
        "study77654033_CR1_6154.dcm",
        "mr_siemens_private_implicit.dcm",
        "sc_rgb_rle_2frame.dcm",
    ];
    let files: Vec<PathBuf> = names.iter().map(|n| corpus().join(n)).collect();
    let data = dir.path().join("data");
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    assert!(import(&data, &refs).status.success());
    let server = Server::start(&data, &[]);
    let codec = ojph_codec();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let (want, bits, _) = original_samples(dir.path(), file);
        let frames: usize = dcmdump_value(file, "NumberOfFrames").parse().unwrap_or(1);
        let spp: usize = dcmdump_value(file, "SamplesPerPixel").parse().unwrap();
        let (w, h): (usize, usize) = (
            dcmdump_value(file, "Columns").parse().unwrap(),
            dcmdump_value(file, "Rows").parse().unwrap(),
        );
        let per_frame = w * h * spp;
        let (st, se, sop) = uids(file);
        let url = format!("{}/studies/{st}/series/{se}/instances/{sop}", server.root());
        for ts in [
            "1.2.840.10008.1.2.4.201",
            "1.2.840.10008.1.2.4.202",
            "1.2.840.10008.1.2.4.203",
        ] {
            let tag = format!("{name}-{ts}");
            let lossy = ts.ends_with(".203");
            // Lossless: exactly the original; lossy: within 40 dB PSNR over the image's range.
            let close = |got: &[i32], want: &[i32]| -> bool {
                if !lossy {
                    return got == want;
                }
                let (lo, hi) = (want.iter().min().unwrap(), want.iter().max().unwrap());
                let range = f64::from((hi - lo).max(1));
                let mse = got
                    .iter()
                    .zip(want)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>()
                    / want.len() as f64;
                mse == 0.0 || 10.0 * (range * range / mse).log10() >= 40.0
            };
            // The instance in HTJ2K: DCMTK reads its data set; colour says YBR_RCT.
            let r = get(
                &url,
                Some(&format!("application/dicom; transfer-syntax={ts}")),
            );
            assert_eq!(r.status, 200, "{tag}: {}", String::from_utf8_lossy(&r.body));
            let got = write_temp(dir.path(), &format!("inst-{tag}.dcm"), &r.body);
            assert_eq!(dcmdump_value(&got, "TransferSyntaxUID"), ts, "{tag}");
            if spp == 3 {
                let pi = if lossy { "YBR_ICT" } else { "YBR_RCT" };
                assert_eq!(
                    dcmdump_value(&got, "PhotometricInterpretation"),
                    pi,
                    "{tag}"
                );
            }
            if lossy {
                assert_eq!(dcmdump_value(&got, "LossyImageCompression"), "01", "{tag}");
                assert_eq!(
                    dcmdump_value(&got, "LossyImageCompressionMethod"),
                    "ISO_15444_15",
                    "{tag}"
                );
            }
            // Every frame as image/jphc: OpenJPH's library decodes each to the original
            // samples, exactly; OpenJPEG decodes the first.
            let list: Vec<String> = (1..=frames).map(|n| n.to_string()).collect();
            let r = get(
                &format!("{url}/frames/{}", list.join(",")),
                Some(&format!(
                    "multipart/related; type=\"image/jphc\"; transfer-syntax={ts}"
                )),
            );
            assert_eq!(r.status, 200, "{tag}: {}", String::from_utf8_lossy(&r.body));
            let parts = r.parts();
            assert_eq!(parts.len(), frames, "{tag}");
            for (i, part) in parts.iter().enumerate() {
                let ct = part
                    .0
                    .iter()
                    .find(|(n, _)| n == "content-type")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("");
                assert!(ct.contains(ts), "{tag}: {ct}");
                let j2c = write_temp(dir.path(), &format!("f{i}-{tag}.j2c"), &part.1);
                let out = dir.path().join(format!("f{i}-{tag}.i32"));
                let said = run(Command::new(&codec).arg("decode").arg(&j2c).arg(&out));
                let said = String::from_utf8_lossy(&said).into_owned();
                assert!(
                    said.starts_with(&format!("{w} {h} {spp} ")),
                    "{tag}: {said}"
                );
                let decoded: Vec<i32> = std::fs::read(&out)
                    .unwrap()
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                assert!(
                    close(&decoded, &want[i * per_frame..(i + 1) * per_frame]),
                    "{tag}: frame {} differs from the original in OpenJPH",
                    i + 1
                );
                if i == 0 {
                    let ext = if spp == 3 { "ppm" } else { "pgx" };
                    let opj = dir.path().join(format!("opj-{tag}.{ext}"));
                    run(Command::new("opj_decompress")
                        .arg("-i")
                        .arg(&j2c)
                        .arg("-o")
                        .arg(&opj));
                    let by_opj: Vec<i32> = if spp == 3 {
                        let d = std::fs::read(&opj).unwrap();
                        d[d.len() - per_frame..]
                            .iter()
                            .map(|&b| i32::from(b))
                            .collect()
                    } else {
                        let pgx = std::fs::read_dir(dir.path())
                            .unwrap()
                            .map(|e| e.unwrap().path())
                            .find(|p| {
                                p.file_name()
                                    .unwrap()
                                    .to_string_lossy()
                                    .starts_with(&format!("opj-{tag}"))
                            })
                            .unwrap();
                        read_pgx(&pgx)
                    };
                    assert!(
                        close(&by_opj, &want[..per_frame]),
                        "{tag}: OpenJPEG differs"
                    );
                }
                if !ts.ends_with(".201") {
                    // RPCL with a TLM and a tile-part per resolution: a prefix decodes.
                    let cs = &part.1;
                    let cod = cs.windows(2).position(|w| w == [0xFF, 0x52]).unwrap();
                    assert_eq!(cs[cod + 5], 2, "{tag}: RPCL");
                    let levels = usize::from(cs[cod + 9]);
                    let (tlm, sots) = tile_parts(cs);
                    assert!(tlm.is_some(), "{tag}: TLM");
                    assert_eq!(sots.len(), levels + 1, "{tag}: tile-parts");
                    if levels >= 1 && i == 0 {
                        let out = dir.path().join(format!("low-{tag}.i32"));
                        let said = run(Command::new(&codec)
                            .args(["reduced"])
                            .arg(&j2c)
                            .arg("1")
                            .arg(&out));
                        let said = String::from_utf8_lossy(&said).into_owned();
                        assert!(
                            said.starts_with(&format!("{} {} ", w.div_ceil(2), h.div_ceil(2))),
                            "{tag}: half resolution: {said}"
                        );
                    }
                }
            }
            let _ = bits;
        }
        // image/jphc without a transfer syntax: .201, the media type's default.
        let r = get(&format!("{url}/frames/1"), Some("image/jphc"));
        assert_eq!(r.status, 200, "{name}");
        assert!(
            r.header("content-type")
                .contains("transfer-syntax=1.2.840.10008.1.2.4.201"),
            "{name}: {}",
            r.header("content-type")
        );
    }
}

/// The ends of a .4.202 codestream's tile-parts, from its TLM marker segment.
fn tile_part_ends(cs: &[u8]) -> Vec<usize> {
    let tlm = cs.windows(2).position(|w| w == [0xFF, 0x55]).unwrap();
    let ltlm = usize::from(u16::from_be_bytes([cs[tlm + 2], cs[tlm + 3]]));
    let first = cs.windows(2).position(|w| w == [0xFF, 0x90]).unwrap();
    let mut at = first;
    (0..(ltlm - 4) / 5)
        .map(|k| {
            let e = tlm + 6 + k * 5 + 1;
            at += u32::from_be_bytes([cs[e], cs[e + 1], cs[e + 2], cs[e + 3]]) as usize;
            at
        })
        .collect()
}

#[test]
fn a_202_frame_is_read_progressively_with_ranges() {
    // What cornerstone's progressive loader does: Range requests for the first bytes of an
    // `image/jphc` .4.202 frame, decoded at a lower resolution, then the rest. Checked on a
    // frame wado transcodes on the fly and on one stored as .4.202 (stored fragments).
    let dir = tempdir();
    let src = corpus().join("mr_siemens_private_implicit.dcm");
    let data = dir.path().join("data");
    assert!(import(&data, &[src.as_path()]).status.success());
    let server = Server::start(&data, &[]);
    let (st, se, sop) = uids(&src);
    let instance = format!("{}/studies/{st}/series/{se}/instances/{sop}", server.root());
    let accept = "image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202";
    // The instance as .4.202, stored in a second server: its frame is then served as stored.
    let r = get(
        &instance,
        Some("application/dicom; transfer-syntax=1.2.840.10008.1.2.4.202"),
    );
    assert_eq!(r.status, 200);
    let stored = write_temp(dir.path(), "stored-202.dcm", &r.body);
    let data2 = dir.path().join("data2");
    assert!(import(&data2, &[stored.as_path()]).status.success());
    let server2 = Server::start(&data2, &[]);
    let instance2 = format!(
        "{}/studies/{st}/series/{se}/instances/{sop}",
        server2.root()
    );
    let codec = ojph_codec();
    for (label, url) in [
        ("transcoded", format!("{instance}/frames/1")),
        ("stored", format!("{instance2}/frames/1")),
    ] {
        let full = get(&url, Some(accept));
        assert_eq!(full.status, 200, "{label}");
        let cs = full.body.clone();
        let ends = tile_part_ends(&cs);
        let levels = ends.len() - 1;
        assert!(levels >= 5, "{label}: {levels} levels");
        for (k, &end) in ends.iter().enumerate().take(levels) {
            let r = request(
                "GET",
                &url,
                &[
                    ("accept", accept),
                    ("range", &format!("bytes=0-{}", end - 1)),
                ],
            );
            assert_eq!(r.status, 206, "{label} {k}");
            assert_eq!(
                r.header("content-range"),
                format!("bytes 0-{}/{}", end - 1, cs.len()),
                "{label} {k}"
            );
            assert_eq!(
                r.body,
                cs[..end],
                "{label} {k}: the prefix of the codestream"
            );
            // The prefix, closed, decodes in OpenJPH to what the whole codestream gives at
            // the same reduced resolution.
            let mut prefix = r.body.clone();
            prefix.extend_from_slice(&[0xFF, 0xD9]);
            let skip = (levels - k).to_string();
            let p = write_temp(dir.path(), &format!("{label}-p{k}.j2c"), &prefix);
            let w = write_temp(dir.path(), &format!("{label}-w{k}.j2c"), &cs);
            let (po, wo) = (dir.path().join("po.i32"), dir.path().join("wo.i32"));
            let said = run(Command::new(&codec)
                .arg("reduced")
                .arg(&p)
                .arg(&skip)
                .arg(&po));
            run(Command::new(&codec)
                .arg("reduced")
                .arg(&w)
                .arg(&skip)
                .arg(&wo));
            let side = 256usize.div_ceil(1 << (levels - k));
            assert!(
                String::from_utf8_lossy(&said).starts_with(&format!("{side} {side} ")),
                "{label} {k}: {}",
                String::from_utf8_lossy(&said)
            );
            assert_eq!(
                std::fs::read(&po).unwrap(),
                std::fs::read(&wo).unwrap(),
                "{label} {k}: the low resolution from the prefix"
            );
        }
        // The rest, in a second request.
        let first = ends[2];
        let r = request(
            "GET",
            &url,
            &[("accept", accept), ("range", &format!("bytes={first}-"))],
        );
        assert_eq!(r.status, 206, "{label}");
        assert_eq!(r.body, cs[first..], "{label}: the rest");
    }
    // cornerstone's default: `multipart/related; type=application/octet-stream;
    // transfer-syntax=*` with ranges of the multipart body, the chunks appended. The stored
    // .4.202 frame comes as stored; every range request sees the same body (one boundary).
    let mp = "multipart/related; type=application/octet-stream; transfer-syntax=*";
    let url = format!("{instance2}/frames/1");
    let stored = get(&url, Some(accept)).body;
    let mut appended = Vec::new();
    let mut content_type = String::new();
    let mut total = usize::MAX;
    let chunk = 1000;
    while appended.len() < total {
        let from = appended.len();
        let range = format!("bytes={from}-{}", from + chunk - 1);
        let r = request("GET", &url, &[("accept", mp), ("range", &range)]);
        assert_eq!(r.status, 206, "chunk at {from}");
        total = r
            .header("content-range")
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        if content_type.is_empty() {
            content_type = r.header("content-type");
        }
        assert_eq!(r.header("content-type"), content_type, "one representation");
        assert!(r.body.len() <= chunk);
        appended.extend_from_slice(&r.body);
    }
    let whole = Resp {
        status: 200,
        headers: vec![("content-type".into(), content_type)],
        body: appended,
    };
    let parts = whole.parts();
    assert_eq!(parts.len(), 1);
    assert_eq!(
        parts[0].1, stored,
        "the appended chunks hold the stored codestream"
    );
}

/// A PGM or PPM (binary; 16-bit samples big-endian) as integers, components interleaved.
fn read_pnm(path: &Path) -> (usize, usize, usize, Vec<i32>) {
    let data = std::fs::read(path).unwrap();
    // Four whitespace-separated fields: magic, width, height, maxval; then one byte.
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while data[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !data[at].is_ascii_whitespace() {
            at += 1;
        }
        fields.push(String::from_utf8_lossy(&data[start..at]).into_owned());
    }
    let body = &data[at + 1..];
    let nc = if fields[0] == "P6" { 3 } else { 1 };
    let (w, h): (usize, usize) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    let maxval: u32 = fields[3].parse().unwrap();
    let samples = if maxval > 255 {
        body.chunks_exact(2)
            .map(|c| i32::from(u16::from_be_bytes([c[0], c[1]])))
            .collect()
    } else {
        body.iter().map(|&b| i32::from(b)).collect()
    };
    (w, h, nc, samples)
}

/// Writes a PGM or PPM of smooth data with noise (what the coder sees in medical images).
fn write_pnm(path: &Path, w: usize, h: usize, nc: usize, bits: u32) -> Vec<i32> {
    let max = (1i64 << bits) - 1;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let samples: Vec<i32> = (0..w * h * nc)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let (x, y, c) = ((i / nc) % w, (i / nc) / w, i % nc);
            let v = (x as i64 * 37 + y as i64 * 11 + c as i64 * 1000) * max
                / (37 * w as i64 + 11 * h as i64 + 2000);
            (v + (seed % 9) as i64 - 4).clamp(0, max) as i32
        })
        .collect();
    let mut out = format!("{}\n{w} {h}\n{max}\n", if nc == 3 { "P6" } else { "P5" }).into_bytes();
    for &v in &samples {
        if bits > 8 {
            out.extend_from_slice(&(v as u16).to_be_bytes());
        } else {
            out.push(v as u8);
        }
    }
    std::fs::write(path, out).unwrap();
    samples
}

/// Our own HTJ2K decoder (`wado_codec::htj2k::decode`) on what OpenJPH's `ojph_compress` makes
/// with every option that shapes a codestream: the five progression orders, precincts, code-block
/// sizes, tiles, tile offsets and image offsets (odd subband origins), decomposition levels,
/// colour, 8 and 16 bits. Lossless streams decode to the samples encoded; lossy ones to
/// `ojph_expand`'s decoding (within float rounding); at reduced resolutions, to OpenJPEG's
/// (`opj_decompress -r`, lossless, exact).
#[test]
fn our_decoder_reads_every_shape_of_openjph_codestream() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[(&str, usize, usize, usize, u32, &[&str])] = &[
        ("plain", 512, 512, 1, 16, &[]),
        ("lrcp", 300, 200, 1, 12, &["-prog_order", "LRCP"]),
        ("rlcp", 300, 200, 1, 12, &["-prog_order", "RLCP"]),
        ("pcrl", 300, 200, 3, 8, &["-prog_order", "PCRL"]),
        ("cprl", 300, 200, 3, 8, &["-prog_order", "CPRL"]),
        (
            "precincts",
            333,
            257,
            1,
            16,
            &[
                "-precincts",
                "{32,32},{64,64},{128,128}",
                "-prog_order",
                "PCRL",
            ],
        ),
        (
            "blocks",
            200,
            100,
            1,
            10,
            &["-block_size", "{16,128}", "-num_decomps", "3"],
        ),
        (
            "tiles",
            300,
            260,
            3,
            8,
            &["-tile_size", "{128,96}", "-prog_order", "RPCL"],
        ),
        (
            "tile-offset",
            250,
            180,
            1,
            16,
            &[
                "-tile_size",
                "{100,100}",
                "-tile_offset",
                "{37,21}",
                "-image_offset",
                "{41,33}",
            ],
        ),
        (
            "image-offset",
            203,
            151,
            1,
            12,
            &["-image_offset", "{3,5}", "-num_decomps", "4"],
        ),
        ("no-dwt", 64, 48, 1, 8, &["-num_decomps", "0"]),
        ("tall", 3, 700, 1, 16, &["-num_decomps", "2"]),
    ];
    for &(name, w, h, nc, bits, opts) in cases {
        let ext = if nc == 3 { "ppm" } else { "pgm" };
        let src = d.join(format!("{name}.{ext}"));
        let original = write_pnm(&src, w, h, nc, bits);
        for reversible in [true, false] {
            let cs = d.join(format!("{name}-{reversible}.j2c"));
            let mut cmd = Command::new("ojph_compress");
            cmd.arg("-i").arg(&src).arg("-o").arg(&cs).args(opts);
            cmd.args(["-reversible", if reversible { "true" } else { "false" }]);
            if !reversible {
                cmd.args(["-qstep", "0.001"]);
            }
            run(&mut cmd);
            let stream = std::fs::read(&cs).unwrap();
            let ours = wado_codec::htj2k::decode(&stream, 0)
                .unwrap_or_else(|e| panic!("{name} reversible={reversible}: {e}"));
            assert_eq!(
                (ours.width, ours.height, ours.components),
                (w, h, nc),
                "{name}"
            );
            if reversible {
                let at = ours.samples.iter().zip(&original).position(|(a, b)| a != b);
                assert!(at.is_none(), "{name}: first difference at {at:?}");
                // Reduced resolutions against OpenJPEG's.
                let levels = stream[stream.windows(2).position(|w| w == [0xFF, 0x52]).unwrap() + 9];
                for reduce in 1..=u32::from(levels).min(3) {
                    let theirs = d.join(format!("{name}-r{reduce}.pgx"));
                    run(Command::new("opj_decompress")
                        .arg("-i")
                        .arg(&cs)
                        .arg("-o")
                        .arg(&theirs)
                        .args(["-r", &reduce.to_string()]));
                    let ours = wado_codec::htj2k::decode(&stream, reduce).unwrap();
                    // opj_decompress writes one PGX per component: NAME_0.pgx, NAME_1.pgx, ...
                    for c in 0..nc {
                        let file = d.join(format!("{name}-r{reduce}_{c}.pgx"));
                        let want = read_pgx(&file);
                        let got: Vec<i32> =
                            ours.samples.iter().skip(c).step_by(nc).copied().collect();
                        assert!(
                            got == want,
                            "{name} reduced {reduce}, component {c}: differs from OpenJPEG"
                        );
                    }
                }
            } else {
                let expanded = d.join(format!("{name}-x.{ext}"));
                run(Command::new("ojph_expand")
                    .arg("-i")
                    .arg(&cs)
                    .arg("-o")
                    .arg(&expanded));
                let (.., want) = read_pnm(&expanded);
                let tolerance = 1 << bits.saturating_sub(14);
                let worst = worst(&ours.samples, &want);
                assert!(
                    worst <= tolerance,
                    "{name} lossy: ours and ojph_expand differ by {worst}"
                );
            }
        }
    }
}
