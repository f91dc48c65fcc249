//! Our JPEG DCT codec (`wado_codec::jpeg::dct`) against libjpeg-turbo, through Pillow (installed
//! by scripts/setup.sh): streams with restart intervals and 4:2:0 colour, which neither DCMTK
//! nor GDCM can be asked to write, decode like libjpeg-turbo decodes them; and libjpeg-turbo
//! reads what we write, baseline and extended.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use wado_codec::jpeg::dct::{decode, encode, EncodeOptions, Samples};
use wado_tests::{repo_dir, tempdir};

/// Runs Python with Pillow (libjpeg-turbo inside) on `script` with `dir` as its argument.
fn pillow(script: &str, dir: &Path) {
    let py = repo_dir().join(".tools/s3venv/bin/python");
    assert!(py.is_file(), "run bash scripts/setup.sh (Pillow)");
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Pillow side failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn psnr8(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0 * 255.0 / mse.max(1e-12)).log10()
}

/// A 203×117 test picture with edges, gradients and noise (odd sizes: partial MCUs).
const PICTURE: &str = r#"
import sys, numpy as np
from PIL import Image
d = sys.argv[1]
rng = np.random.default_rng(3)
y, x = np.mgrid[0:117, 0:203]
r = (x * 255 // 202).astype(float)
g = (y * 255 // 116).astype(float)
b = np.where((x // 25 + y // 25) % 2 == 0, 200.0, 40.0)
rgb = np.clip(np.stack([r, g, b], -1) + rng.normal(0, 6, (117, 203, 3)), 0, 255).astype(np.uint8)
grey = np.clip(0.299 * r + 0.587 * g + 0.114 * b + rng.normal(0, 6, (117, 203)), 0, 255).astype(np.uint8)
"#;

#[test]
fn restart_intervals_and_4_2_0_decode_like_libjpeg_turbo() {
    let dir = tempdir();
    pillow(
        &format!(
            "{PICTURE}
for name, img, kw in [
    ('grey_rst5', Image.fromarray(grey), dict(restart_marker_blocks=5)),
    ('grey_rows', Image.fromarray(grey), dict(restart_marker_rows=1)),
    ('rgb420_rst', Image.fromarray(rgb), dict(subsampling=2, restart_marker_blocks=3)),
    ('rgb444', Image.fromarray(rgb), dict(subsampling=0)),
]:
    img.save(f'{{d}}/{{name}}.jpg', 'JPEG', quality=90, **kw)
    back = Image.open(f'{{d}}/{{name}}.jpg')
    if back.mode == 'RGB':
        back.draft('YCbCr', back.size)  # libjpeg-turbo's output before colour conversion
    back.load()
    np.asarray(back).tofile(f'{{d}}/{{name}}.raw')
"
        ),
        dir.path(),
    );
    for name in ["grey_rst5", "grey_rows", "rgb420_rst", "rgb444"] {
        let jpeg = std::fs::read(dir.path().join(format!("{name}.jpg"))).unwrap();
        if name.contains("rst") || name.contains("rows") {
            assert!(
                jpeg.windows(2).any(|w| w == b"\xFF\xDD"),
                "{name}: Pillow wrote a DRI"
            );
        }
        let want = std::fs::read(dir.path().join(format!("{name}.raw"))).unwrap();
        let img = decode(&jpeg).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((img.width, img.height), (203, 117), "{name}");
        let got: Vec<u8> = img.samples.iter().map(|&v| v as u8).collect();
        assert_eq!(got.len(), want.len(), "{name}");
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        let p = psnr8(&got, &want);
        eprintln!("{name}: largest difference {worst}, PSNR {p:.1} dB");
        if name == "rgb420_rst" {
            // libjpeg-turbo upsamples 4:2:0 chroma with a triangle filter ("fancy
            // upsampling"), we (like DCMTK) replicate: luminance is within one, chroma only
            // close on this noisy picture.
            let luma_worst = got
                .iter()
                .zip(&want)
                .step_by(3)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            assert!(luma_worst <= 1, "{name}: luminance off by {luma_worst}");
            assert!(p >= 30.0, "{name}: {p:.1} dB");
        } else {
            assert!(
                worst <= 1,
                "{name}: off by {worst} (IDCT accuracy allows 1)"
            );
        }
    }
}

#[test]
fn libjpeg_turbo_reads_what_we_write_baseline_and_extended() {
    let dir = tempdir();
    pillow(
        &format!(
            "{PICTURE}
grey.tofile(f'{{d}}/grey.raw'); rgb.tofile(f'{{d}}/rgb.raw')
"
        ),
        dir.path(),
    );
    let grey = std::fs::read(dir.path().join("grey.raw")).unwrap();
    let rgb = std::fs::read(dir.path().join("rgb.raw")).unwrap();
    let mut names = Vec::new();
    for (name, data, comps, baseline, chroma_422) in [
        ("grey_base", &grey, 1, true, false),
        ("grey_ext", &grey, 1, false, false),
        ("rgb_base422", &rgb, 3, true, true),
        ("rgb_ext444", &rgb, 3, false, false),
    ] {
        let opts = EncodeOptions {
            quality: 90,
            baseline,
            chroma_422,
        };
        let jpeg = encode(Samples::Bytes(data), 203, 117, comps, 8, opts).unwrap();
        assert_eq!(
            jpeg[jpeg
                .windows(2)
                .position(|w| w == b"\xFF\xC0" || w == b"\xFF\xC1")
                .unwrap()
                + 1],
            if baseline { 0xC0 } else { 0xC1 },
            "{name}: SOF0 for baseline, SOF1 for extended"
        );
        std::fs::write(dir.path().join(format!("{name}.jpg")), &jpeg).unwrap();
        names.push((name, data, comps));
    }
    pillow(
        "
import sys, numpy as np
from PIL import Image
d = sys.argv[1]
for name in ['grey_base', 'grey_ext', 'rgb_base422', 'rgb_ext444']:
    im = Image.open(f'{d}/{name}.jpg'); im.load()
    np.asarray(im).tofile(f'{d}/{name}.dec')
# libjpeg-turbo's own q90 of the same pictures, decoded by itself: the quality to match.
import io
for name, raw, shape, sub in [('grey', 'grey', (117, 203), 0), ('rgb', 'rgb', (117, 203, 3), 1), ('rgb444', 'rgb', (117, 203, 3), 0)]:
    src = np.fromfile(f'{d}/{raw}.raw', dtype=np.uint8).reshape(shape)
    b = io.BytesIO(); Image.fromarray(src).save(b, 'JPEG', quality=90, subsampling=sub)
    np.asarray(Image.open(io.BytesIO(b.getvalue()))).tofile(f'{d}/ref_{name}.dec')
",
        dir.path(),
    );
    for (name, data, _comps) in names {
        let got = std::fs::read(dir.path().join(format!("{name}.dec"))).unwrap();
        assert_eq!(got.len(), data.len(), "{name}");
        let p = psnr8(&got, data);
        let reference = match name {
            "rgb_base422" => "ref_rgb",
            "rgb_ext444" => "ref_rgb444",
            _ => "ref_grey",
        };
        let r = psnr8(
            &std::fs::read(dir.path().join(format!("{reference}.dec"))).unwrap(),
            data,
        );
        eprintln!("{name}: libjpeg-turbo decodes it at {p:.2} dB; its own q90: {r:.2} dB");
        // The same quality as libjpeg-turbo's own encoder at the same quality setting.
        assert!(
            p >= r - 0.5,
            "{name}: {p:.2} dB against libjpeg-turbo's {r:.2} dB"
        );
    }
}
