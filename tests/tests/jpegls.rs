//! JPEG-LS interoperability, both ways, with CharLS as the reference (DCMTK's dcmcjpls and
//! dcmdjpls embed it; GDCM's gdcmconv has its own copy):
//! - streams made by dcmcjpls (lossless and near-lossless; line, sample and no interleave),
//!   by gdcmconv, and the corpus's JPEG-LS files are decoded by wado (pure Rust) to exactly
//!   the samples dcmdjpls decodes them to;
//! - what wado encodes (.4.80, .4.81, instances and `image/jls` frames) decodes in dcmdjpls
//!   and gdcmconv to the original samples (exactly, or within NEAR = 2).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use wado_tests::*;

const JLS: &str = "1.2.840.10008.1.2.4.80";
const JLS_NEAR: &str = "1.2.840.10008.1.2.4.81";

/// Samples as 16-bit values when the image is 16-bit, bytes otherwise.
fn samples(bytes: &[u8], bits_allocated: u16) -> Vec<i32> {
    if bits_allocated == 16 {
        bytes
            .chunks_exact(2)
            .map(|c| i32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect()
    } else {
        bytes.iter().map(|&b| i32::from(b)).collect()
    }
}

fn bits_allocated(file: &Path) -> u16 {
    let out = Command::new("dcmdump")
        .args(["-q", "+P", "BitsAllocated"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap()
}

fn worst(a: &[i32], b: &[i32]) -> i32 {
    assert_eq!(a.len(), b.len(), "sample counts");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .max()
        .unwrap_or(0)
}

#[test]
fn wado_decodes_charls_streams_exactly_like_dcmdjpls() {
    let dir = tempdir();
    let mut files: Vec<PathBuf> = [
        "mr_small_jpegls_lossless.dcm",
        "mr_jpegls_near_16bit_dcmcjpls.dcm",
        "sc_rgb_2frame_jpegls_gdcm.dcm",
    ]
    .iter()
    .map(|n| corpus().join(n))
    .collect();
    files.push(tests_dir().join("fixtures/jpegls/us_rgb_jpegls_near_dcmcjpls.dcm"));
    // Made here by CharLS (in DCMTK): every interleave mode, lossless and near-lossless,
    // 16-bit signed grey, 8-bit RGB, multi-frame.
    let made: &[(&str, &[&str])] = &[
        ("ct_small_ele.dcm", &["+el"]),
        ("study77654033_CR1_6154.dcm", &["+en", "+md", "3"]),
        ("emr_10frame_ele.dcm", &["+el"]),
        ("sc_rgb_ele.dcm", &["+el", "+il"]),
        ("sc_rgb_ele.dcm", &["+el", "+is"]),
        ("sc_rgb_ele.dcm", &["+el", "+in"]),
        ("sc_rgb_2frame_ele.dcm", &["+en", "+is", "+md", "2"]),
        ("us_rgb_planar1_ele.dcm", &["+en", "+il", "+md", "1"]),
        ("study77654033_CR1_6154.dcm", &["+el"]),
    ];
    for (i, (name, opts)) in made.iter().enumerate() {
        let out = dir.path().join(format!("dcmcjpls-{i}-{name}"));
        run(Command::new("dcmcjpls")
            .args(*opts)
            .arg(corpus().join(name))
            .arg(&out));
        files.push(out);
    }
    // And by GDCM's CharLS.
    let out = dir.path().join("gdcm-ct.dcm");
    run(Command::new("gdcmconv")
        .arg("--jpegls")
        .arg(corpus().join("ct_small_ele.dcm"))
        .arg(&out));
    files.push(out);
    let data = dir.path().join("data");
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let imported = import(&data, &refs);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let server = Server::start(&data, &[]);
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        let reference = dir.path().join(format!("ref-{name}"));
        run(Command::new("dcmdjpls").arg(file).arg(&reference));
        let bits = bits_allocated(file);
        let want = samples(&raw_pixels(&reference), bits);
        let (st, se, sop) = uids(file);
        let url = format!("{}/studies/{st}/series/{se}/instances/{sop}", server.root());
        let r = get(&url, Some("application/dicom"));
        assert_eq!(
            r.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let got_file = dir.path().join(format!("wado-{name}"));
        std::fs::write(&got_file, &r.body).unwrap();
        let got = samples(&raw_pixels(&got_file), bits);
        assert_eq!(
            worst(&got, &want),
            0,
            "{name}: decoded samples differ from dcmdjpls"
        );
        // Frame 1 alone, decoded from its own fragment.
        let f = get(
            &format!("{url}/frames/1"),
            Some("multipart/related; type=application/octet-stream"),
        );
        assert_eq!(f.status, 200, "{name}");
        let part = &f.parts()[0];
        let frame = samples(&part.1, bits);
        assert_eq!(&frame[..], &want[..frame.len()], "{name}: frame 1");
    }
}

#[test]
fn what_wado_encodes_decodes_in_dcmdjpls_and_gdcm() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let names = [
        "ct_small_ele.dcm",
        "emr_10frame_ele.dcm",
        "sc_rgb_ele.dcm",
        "us_rgb_planar1_ele.dcm",
        "study77654033_CR1_6154.dcm",
        "sc_rgb_odd_3x3.dcm",
    ];
    let files: Vec<PathBuf> = names.iter().map(|n| corpus().join(n)).collect();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    assert!(import(&data, &refs).status.success());
    let server = Server::start(&data, &[]);
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let bits = bits_allocated(file);
        // The original samples, colour-by-pixel (as the decoders give them back).
        let plain = dir.path().join(format!("plain-{name}"));
        run(Command::new("dcmconv")
            .args(["+te", "--write-xfer-little"])
            .arg(file)
            .arg(&plain));
        let original_file = dir.path().join(format!("orig-{name}"));
        run(Command::new("gdcmconv")
            .args(["--raw", "--planar-configuration", "0"])
            .arg(&plain)
            .arg(&original_file));
        let original = samples(&raw_pixels(&original_file), bits);
        let (st, se, sop) = uids(file);
        let url = format!("{}/studies/{st}/series/{se}/instances/{sop}", server.root());
        let signed = {
            let out = Command::new("dcmdump")
                .args(["-q", "+P", "PixelRepresentation"])
                .arg(file)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).contains(" US 1 ")
        };
        for (ts, near) in [(JLS, 0), (JLS_NEAR, 2)] {
            let r = get(
                &url,
                Some(&format!("application/dicom; transfer-syntax={ts}")),
            );
            if signed && near > 0 {
                // Near-lossless on two's complement samples would wrap at zero (DCMTK
                // refuses it too): 406, saying so.
                assert_eq!(r.status, 406, "{name}");
                continue;
            }
            assert_eq!(
                r.status,
                200,
                "{name} {ts}: {}",
                String::from_utf8_lossy(&r.body)
            );
            let encoded = dir.path().join(format!("wado-{ts}-{name}"));
            std::fs::write(&encoded, &r.body).unwrap();
            // DCMTK (CharLS inside) decodes it.
            let by_dcmtk = dir.path().join(format!("dcmtk-{ts}-{name}"));
            run(Command::new("dcmdjpls")
                .arg("+px")
                .arg(&encoded)
                .arg(&by_dcmtk));
            let d = samples(&raw_pixels(&by_dcmtk), bits);
            assert!(
                worst(&d, &original) <= near,
                "{name} {ts}: dcmdjpls differs by {}",
                worst(&d, &original)
            );
            // GDCM too.
            let by_gdcm = dir.path().join(format!("gdcm-{ts}-{name}"));
            run(Command::new("gdcmconv")
                .args(["--raw", "--planar-configuration", "0"])
                .arg(&encoded)
                .arg(&by_gdcm));
            let g = samples(&raw_pixels(&by_gdcm), bits);
            assert!(
                worst(&g, &original) <= near,
                "{name} {ts}: gdcmconv differs by {}",
                worst(&g, &original)
            );
            if near > 0 {
                let dump = Command::new("dcmdump")
                    .args([
                        "-q",
                        "+P",
                        "LossyImageCompression",
                        "+P",
                        "LossyImageCompressionMethod",
                    ])
                    .arg(&encoded)
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&dump.stdout);
                assert!(
                    text.contains("[01]") && text.contains("ISO_14495_1"),
                    "{name}: {text}"
                );
            }
        }
        // A frame as image/jls: a bare JPEG-LS stream that dcmdjpls reads once wrapped by
        // img2dcm is not needed — decode it with wado's peer, GDCM, through a stored copy:
        // the first frame's samples must match the original's first frame.
        let r = get(
            &format!("{url}/frames/1"),
            Some("multipart/related; type=\"image/jls\""),
        );
        assert_eq!(r.status, 200, "{name}");
        let part = &r.parts()[0];
        assert!(
            part.0
                .iter()
                .any(|(k, v)| k == "content-type" && v.contains(JLS)),
            "{name}"
        );
        assert_eq!(
            &part.1[..4],
            &[0xFF, 0xD8, 0xFF, 0xF7],
            "{name}: SOI then SOF55"
        );
    }
}

#[test]
fn the_codec_alone_decodes_every_jpegls_file_of_the_corpus_like_dcmdjpls() {
    // Including the two the importer rejects (no Study Instance UID): their pixel data is
    // still valid JPEG-LS.
    let dir = tempdir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(tests_dir().join("fixtures/jpegls"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    for n in [
        "mr_small_jpegls_lossless.dcm",
        "mr_jpegls_near_16bit_dcmcjpls.dcm",
        "sc_rgb_2frame_jpegls_gdcm.dcm",
    ] {
        files.push(corpus().join(n));
    }
    files.sort();
    assert_eq!(files.len(), 6);
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        let obj = dicom_object::OpenFileOptions::new()
            .open_file(file)
            .unwrap();
        let fragments: Vec<Vec<u8>> = match obj
            .element(dicom_object::Tag(0x7FE0, 0x0010))
            .unwrap()
            .value()
        {
            dicom_core::value::Value::PixelSequence(seq) => seq.fragments().to_vec(),
            _ => panic!("{name}: not encapsulated"),
        };
        let mut decoded: Vec<u16> = Vec::new();
        let mut bits = 8;
        for f in &fragments {
            let img = wado_codec::jpegls::decode(f).unwrap_or_else(|e| panic!("{name}: {e}"));
            bits = img.bits;
            decoded.extend(img.samples);
        }
        let reference = dir.path().join(format!("ref-{name}"));
        run(Command::new("dcmdjpls")
            .arg("+px")
            .arg(file)
            .arg(&reference));
        let want = samples(&raw_pixels(&reference), if bits > 8 { 16 } else { 8 });
        let got: Vec<i32> = decoded.iter().map(|&v| i32::from(v)).collect();
        assert_eq!(got.len(), want.len(), "{name}");
        assert_eq!(worst(&got, &want), 0, "{name}");
    }
}

/// Runs Python with CharLS's binding (pyjpegls, installed by scripts/setup.sh).
fn charls_python(script: &str, args: &[&Path]) {
    let py = repo_dir().join(".tools/s3venv/bin/python");
    assert!(py.is_file(), "run bash scripts/setup.sh (pyjpegls)");
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "CharLS side failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn charls_and_wado_read_each_others_streams_in_every_mode() {
    // Generated images of every kind the codec takes: sizes, bit depths, 1 or 3 components,
    // every interleave mode, lossless and near-lossless.
    let dir = tempdir();
    let mut cases = Vec::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (i, &(bits, comps, ilv, near)) in [
        (8u8, 1usize, 0u8, 0u16),
        (16, 1, 0, 0),
        (12, 1, 0, 3),
        (2, 1, 0, 0),
        (10, 1, 0, 1),
        (8, 3, 0, 0),
        (8, 3, 1, 0),
        (8, 3, 2, 0),
        (8, 3, 1, 2),
        (8, 3, 2, 4),
        (16, 3, 2, 0),
        (5, 3, 1, 0),
    ]
    .iter()
    .enumerate()
    {
        let (w, h) = (1 + (next() % 97) as usize, 1 + (next() % 61) as usize);
        let max = (1u32 << bits) - 1;
        // Smooth gradients, flat areas (run mode) and noise.
        let samples: Vec<u16> = (0..w * h * comps)
            .map(|k| {
                let (p, c) = (k / comps, k % comps);
                let (x, y) = (p % w, p / w);
                let v = if (x / 7 + y / 5) % 3 == 0 {
                    max / 2
                } else {
                    ((x * 13 + y * 7 + c * 50) as u32 * max / 800 + (next() % 4) as u32) & max
                };
                v.min(max) as u16
            })
            .collect();
        let stream = wado_codec::jpegls::encode(
            &samples,
            w,
            h,
            comps,
            bits,
            wado_codec::jpegls::EncodeOptions {
                near,
                interleave: ilv,
            },
        )
        .unwrap();
        let base = dir.path().join(format!("case{i}"));
        std::fs::write(base.with_extension("jls"), &stream).unwrap();
        let raw: Vec<u8> = samples.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(base.with_extension("raw"), raw).unwrap();
        cases.push((base, w, h, comps, bits, ilv, near, samples));
    }
    // CharLS decodes ours (within NEAR), and encodes the originals in the same mode.
    let list = dir.path().join("cases.txt");
    std::fs::write(
        &list,
        cases
            .iter()
            .map(|(b, w, h, c, bits, ilv, near, _)| {
                format!("{} {w} {h} {c} {bits} {ilv} {near}\n", b.display())
            })
            .collect::<String>(),
    )
    .unwrap();
    charls_python(
        r#"
import sys, numpy as np, jpeg_ls
for line in open(sys.argv[1]):
    base, w, h, c, bits, ilv, near = line.split()
    w, h, c, bits, ilv, near = map(int, (w, h, c, bits, ilv, near))
    shape = (h, w, c) if c > 1 else (h, w)
    src = np.fromfile(base + ".raw", dtype="<u2").reshape(shape)
    ours = jpeg_ls.decode(np.fromfile(base + ".jls", dtype=np.uint8))
    worst = int(np.abs(ours.astype(np.int64) - src.astype(np.int64)).max())
    assert worst <= near, f"{base}: CharLS decodes wado's stream off by {worst}"
    arr = src.astype(np.uint8) if bits <= 8 else src
    if c > 1 and ilv == 0:
        arr = np.ascontiguousarray(arr.transpose(2, 0, 1))  # this binding takes planes then
    theirs = jpeg_ls.encode(arr, lossy_error=near, interleave_mode=ilv if c > 1 else 0)
    theirs.tofile(base + ".charls.jls")
"#,
        &[&list],
    );
    // wado decodes CharLS's streams (within NEAR).
    for (base, w, h, comps, bits, _, near, samples) in &cases {
        let stream = std::fs::read(base.with_extension("charls.jls")).unwrap();
        let img = wado_codec::jpegls::decode(&stream).unwrap();
        assert_eq!(
            (img.width, img.height, img.components, img.bits),
            (*w, *h, *comps, *bits)
        );
        let worst = img
            .samples
            .iter()
            .zip(samples)
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .max()
            .unwrap();
        assert!(
            worst <= i32::from(*near),
            "{}: off by {worst}",
            base.display()
        );
    }
}

/// CharLS's HP1, HP2 and HP3 colour transforms (its APP8 "mrfx" segment; issue 13, item 2):
/// streams of an RGB image coded through each transform, which CharLS itself (the oracle)
/// decodes back to the original, decode in wado to the same samples.
#[test]
fn charls_hp_colour_transforms_decode_like_charls() {
    let dir = tempdir();
    charls_python(
        r#"
import sys, numpy as np, jpeg_ls
out = sys.argv[1]
rng = np.random.default_rng(7)
h, w = 23, 31
y, x = np.mgrid[0:h, 0:w]
src = np.stack([(x * 8) % 256, (y * 11) % 256, (x * 3 + y * 5) % 256], axis=-1).astype(np.int64)
src = (src + rng.integers(0, 3, src.shape)) % 256
R, G, B = src[..., 0], src[..., 1], src[..., 2]
half = 128
def forward(t):  # CharLS's colortransform.h, forward direction
    if t == 1:
        return np.stack([(R - G + half) % 256, G, (B - G + half) % 256], -1)
    if t == 2:
        return np.stack([(R - G + half) % 256, G, (B - ((R + G) >> 1) + half) % 256], -1)
    v2 = (B - G + half) % 256
    v3 = (R - G + half) % 256
    return np.stack([(G + ((v3 + v2) >> 2) - half // 2) % 256, v2, v3], -1)
src.astype(np.uint8).tofile(f"{out}/rgb.raw")
for t in (1, 2, 3):
    enc = bytes(jpeg_ls.encode(forward(t).astype(np.uint8), interleave_mode=2))
    stream = enc[:2] + b"\xff\xe8\x00\x07mrfx" + bytes([t]) + enc[2:]
    back = jpeg_ls.decode(np.frombuffer(stream, dtype=np.uint8)).astype(np.int64)
    assert np.array_equal(back, src), f"HP{t}: CharLS does not invert it"
    open(f"{out}/hp{t}.jls", "wb").write(stream)
"#,
        &[dir.path()],
    );
    let want: Vec<u16> = std::fs::read(dir.path().join("rgb.raw"))
        .unwrap()
        .into_iter()
        .map(u16::from)
        .collect();
    for t in 1..=3 {
        let stream = std::fs::read(dir.path().join(format!("hp{t}.jls"))).unwrap();
        let img = wado_codec::jpegls::decode(&stream).unwrap();
        assert_eq!((img.width, img.height, img.components), (31, 23, 3));
        assert!(
            img.samples == want,
            "HP{t}: wado's samples differ from CharLS's"
        );
    }
}
