//! The browser demo, end to end: headless Chromium (Debian's) driven by playwright-core
//! loads the demo from a `wado serve` holding fixture data, and what a person would see is
//! checked against DCMTK: the attribute table against dcmdump, the canvas's pixels against
//! dcmj2pnm's rendering of the same frame with the same window (PS3.3 C.11.2.1.2). One case
//! decodes a compressed (RLE) frame in wasm, one a JPEG Lossless colour frame.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use wado_tests::*;

fn demo(url: &str) -> Value {
    let out = Command::new("node")
        .arg(repo_dir().join("tests/browser/demo.mjs"))
        .arg(url)
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "browser run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_demo_shows_attributes_and_draws_frames_as_dcmtk_renders_them() {
    let demo_dir = repo_dir().join("web-demo/dist");
    assert!(
        demo_dir.join("pkg/wado_web_demo_bg.wasm").is_file(),
        "build the demo first: bash scripts/demo-build.sh"
    );
    let dir = tempdir();
    let data = dir.path().join("data");
    // (file, DCMTK renderer and window option, decoded in the browser from this transfer
    // syntax): dcmj2pnm reads JPEG and RLE, dcml2pnm JPEG-LS; JPEG 2000 is decoded by GDCM
    // first (DCMTK has no JPEG 2000), then rendered by dcmj2pnm.
    let cases: &[(&str, &str, &[&str], &str)] = &[
        (
            "mr_small_rle.dcm",
            "dcmj2pnm",
            &["+Wi", "1"],
            "1.2.840.10008.1.2.5",
        ),
        (
            "sc_rgb_jpeg_lossless_sv1_gdcm.dcm",
            "dcmj2pnm",
            &[],
            "1.2.840.10008.1.2.4.70",
        ),
        (
            "study77654033_CR1_6154.dcm",
            "dcmj2pnm",
            &["+Wi", "1"],
            "1.2.840.10008.1.2.1",
        ),
        (
            "mr_small_jpegls_lossless.dcm",
            "dcml2pnm",
            &["+Wi", "1"],
            "1.2.840.10008.1.2.4.80",
        ),
        (
            "sc_rgb_2frame_jpegls_gdcm.dcm",
            "dcml2pnm",
            &[],
            "1.2.840.10008.1.2.4.80",
        ),
        (
            "mr_small_j2k_lossless.dcm",
            "gdcmconv",
            &["+Wi", "1"],
            "1.2.840.10008.1.2.4.90",
        ),
    ];
    let files: Vec<_> = cases.iter().map(|c| corpus().join(c.0)).collect();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    assert!(import(&data, &refs).status.success());
    let server = Server::start(&data, &["--demo-dir", demo_dir.to_str().unwrap()]);
    for ((name, renderer, window, ts), file) in cases.iter().zip(&files) {
        let (st, se, sop) = uids(file);
        let url = format!(
            "{}/demo/?root={}&study={st}&series={se}&instance={sop}&frame=1",
            server.base,
            server.root()
        );
        let seen = demo(&url);
        assert_eq!(seen["state"], "drawn", "{name}: {}", seen["status"]);
        assert_eq!(seen["consoleErrors"], Value::Array(vec![]), "{name}");
        // The attribute table: values as DCMTK reads them from the file.
        let attrs = &seen["attrs"];
        assert_eq!(attrs["00080018"], sop.as_str(), "{name}");
        assert_eq!(
            attrs["00280010"].as_str().unwrap(),
            dcmdump_value(file, "Rows"),
            "{name}"
        );
        assert_eq!(
            attrs["00100010"].as_str().unwrap(),
            dcmdump_value(file, "PatientName"),
            "{name}"
        );
        assert_eq!(seen["keywords"]["00100010"], "PatientName");
        // The study list came from the server (newest study first, as its search orders
        // them: Study Date and Time as dcmdump reads them), the log names what was negotiated.
        let mut studies: Vec<(String, String, String)> = files
            .iter()
            .map(|f| {
                (
                    dcmdump_value(f, "StudyDate"),
                    dcmdump_value(f, "StudyTime"),
                    uids(f).0,
                )
            })
            .collect();
        studies.sort_by(|a, b| (&b.0, &b.1).cmp(&(&a.0, &a.1)).then(a.2.cmp(&b.2)));
        studies.dedup_by(|a, b| a.2 == b.2);
        let studies: Vec<String> = studies.into_iter().map(|s| s.2).collect();
        assert_eq!(seen["studies"], serde_json::json!(studies));
        let log = seen["log"].as_array().unwrap();
        let frame_req = log
            .iter()
            .find(|r| r[0].as_str().unwrap().ends_with("/frames/1"))
            .unwrap();
        assert_eq!(frame_req[1], "200");
        assert!(
            frame_req[2]
                .as_str()
                .unwrap()
                .starts_with("application/octet-stream"),
            "{frame_req:?}"
        );
        assert_eq!(frame_req[3], *ts, "the part's transfer syntax is logged");
        // The canvas: decoded in wasm from the stored syntax, drawn as dcmj2pnm draws it.
        let canvas = &seen["canvas"];
        assert_eq!(canvas["transferSyntax"], *ts, "{name}");
        let pnm = dir.path().join(format!("{name}.pnm"));
        let (renderer, source) = if *renderer == "gdcmconv" {
            let raw = dir.path().join(format!("raw-{name}"));
            run(Command::new("gdcmconv").arg("--raw").arg(file).arg(&raw));
            ("dcmj2pnm", raw)
        } else {
            (*renderer, file.clone())
        };
        run(Command::new(renderer)
            .args(["--write-raw-pnm", "+F", "1"])
            .args(*window)
            .arg(&source)
            .arg(&pnm));
        let (w, h, channels, want) = read_pnm(&pnm);
        assert_eq!(
            (
                canvas["width"].as_u64().unwrap() as usize,
                canvas["height"].as_u64().unwrap() as usize
            ),
            (w, h),
            "{name}"
        );
        let rgba = base64::engine::general_purpose::STANDARD
            .decode(canvas["rgba"].as_str().unwrap())
            .unwrap();
        assert_eq!(rgba.len(), w * h * 4);
        let mut worst = 0i32;
        for p in 0..w * h {
            for c in 0..3 {
                let expected = want[p * channels + if channels == 1 { 0 } else { c }];
                worst = worst.max((i32::from(rgba[p * 4 + c]) - i32::from(expected)).abs());
            }
            assert_eq!(rgba[p * 4 + 3], 255);
        }
        // Lossless colour is exact; windowed greys may round differently by one step.
        let allowed = if channels == 3 { 0 } else { 1 };
        assert!(
            worst <= allowed,
            "{name}: canvas differs from dcmj2pnm by up to {worst}"
        );
    }
}
