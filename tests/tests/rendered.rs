//! Rendered and thumbnail resources (PS3.18 §10.4.1.1.3, §8.3.5) against DCMTK's `dcmj2pnm`
//! (the PS3.4 grayscale pipeline as DCMTK implements it) and Pillow (which reads what wado
//! writes: PNG, GIF, JPEG):
//! - grey images with the file's window (`+Wi 1`), a requested window (`+Ww`), no window at
//!   all (`+Wm`), MONOCHROME1, rescaled CT, Big Endian, a frame of a multi-frame instance,
//!   HTJ2K made by OpenJPH (against DCMTK rendering the source file): within one grey level;
//! - colour: RGB planar, palette colour: exactly; YBR JPEG: within the two decoders' rounding;
//! - GIF equal to the PNG; JPEG close to it; thumbnails within 128 pixels with the aspect ratio;
//!   viewports; series and study rendered as one part per frame; 400 for bad parameters, 406
//!   for types a rendering cannot be.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use wado_tests::*;

/// What DCMTK renders of `file` with `opts` (8-bit PGM/PPM).
fn dcmtk(dir: &Path, file: &Path, opts: &[&str], tag: &str) -> (usize, usize, usize, Vec<u8>) {
    let out = dir.join(format!("dcmtk-{tag}.pnm"));
    run(Command::new("dcmj2pnm")
        .args(opts)
        .arg("+op")
        .arg(file)
        .arg(&out));
    read_pnm(&out)
}

/// An image wado sent, decoded by Pillow: (format, width, height, channels, samples).
fn pillow(
    dir: &Path,
    body: &[u8],
    mode: &str,
    tag: &str,
) -> (String, usize, usize, usize, Vec<u8>) {
    let src = write_temp(dir, &format!("wado-{tag}.img"), body);
    let out = dir.join(format!("pillow-{tag}.pnm"));
    let said = run(Command::new(repo_dir().join(".tools/s3venv/bin/python"))
        .arg(tests_dir().join("oracles/decode_image.py"))
        .arg(&src)
        .arg(&out)
        .arg(mode));
    let format = String::from_utf8_lossy(&said)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let (w, h, c, s) = read_pnm(&out);
    (format, w, h, c, s)
}

fn worst(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len(), "sample counts");
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

fn mean_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "sample counts");
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum::<f64>()
        / a.len() as f64
}

fn instance_url(server: &Server, file: &Path) -> String {
    let (st, se, sop) = uids(file);
    format!("{}/studies/{st}/series/{se}/instances/{sop}", server.root())
}

#[test]
fn rendered_images_equal_dcmtks() {
    let dir = tempdir();
    let made = dir.path().join("ht");
    // HTJ2K instances made by OpenJPH: rendered like DCMTK renders their source files.
    let ht = run(Command::new(repo_dir().join(".tools/s3venv/bin/python"))
        .arg(tests_dir().join("oracles/ojph_dicom.py"))
        .arg(corpus())
        .arg(&made)
        .arg(ojph_codec()));
    let ht: serde_json::Value = serde_json::from_slice(&ht).unwrap();
    let ht_file = |name: &str| -> PathBuf {
        ht.as_array()
            .unwrap()
            .iter()
            .map(|m| PathBuf::from(m["file"].as_str().unwrap()))
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(name))
            .unwrap()
    };
    let palette = tests_dir().join("fixtures/render/us_palette.dcm");
    let c = |n: &str| corpus().join(n);
    // The planar RGB ultrasound as DCMTK's RLE encoder writes it (Planar Configuration 1,
    // colour in planes: the decoder interleaves them), as another instance.
    let rle_planar = dir.path().join("us_rgb_rle_planar1.dcm");
    run(Command::new("dcmcrle")
        .arg(c("us_rgb_planar1_ele.dcm"))
        .arg(&rle_planar));
    run(Command::new("dcmodify")
        .args(["-nb", "-gin"])
        .arg(&rle_planar));
    assert_eq!(dcmdump_value(&rle_planar, "0028,0006"), "1");
    // (file, query, dcmj2pnm options, the file DCMTK renders, grey, tolerance)
    let cases: Vec<(PathBuf, &str, Vec<&str>, PathBuf, bool, u8)> = vec![
        (
            c("mr_small_implicit.dcm"),
            "",
            vec!["+Wi", "1"],
            c("mr_small_implicit.dcm"),
            true,
            1,
        ),
        (
            c("mr_small_bigendian.dcm"),
            "",
            vec!["+Wi", "1"],
            c("mr_small_bigendian.dcm"),
            true,
            1,
        ),
        (
            c("study77654033_CR1_6154.dcm"),
            "",
            vec!["+Wi", "1"],
            c("study77654033_CR1_6154.dcm"),
            true,
            1,
        ),
        (
            c("study77654033_CT2_17106.dcm"),
            "",
            vec!["+Wi", "1"],
            c("study77654033_CT2_17106.dcm"),
            true,
            1,
        ),
        (
            c("mr_siemens_private_implicit.dcm"),
            "",
            vec!["+Wi", "1"],
            c("mr_siemens_private_implicit.dcm"),
            true,
            1,
        ),
        (
            c("ct_small_ele.dcm"),
            "?window=40,400",
            vec!["+Ww", "40", "400"],
            c("ct_small_ele.dcm"),
            true,
            1,
        ),
        (
            c("ct_small_ele.dcm"),
            "?window=0,2000,SIGMOID",
            vec!["+Ww", "0", "2000", "+Wfs"],
            c("ct_small_ele.dcm"),
            true,
            1,
        ),
        (
            c("ct_small_ele.dcm"),
            "",
            vec!["+Wm"],
            c("ct_small_ele.dcm"),
            true,
            1,
        ),
        (
            c("us_rgb_planar1_ele.dcm"),
            "",
            vec![],
            c("us_rgb_planar1_ele.dcm"),
            false,
            0,
        ),
        (palette.clone(), "", vec![], palette.clone(), false, 0),
        (
            rle_planar.clone(),
            "",
            vec![],
            c("us_rgb_planar1_ele.dcm"),
            false,
            0,
        ),
        (
            c("sc_jpeg_baseline_img2dcm.dcm"),
            "",
            vec![],
            c("sc_jpeg_baseline_img2dcm.dcm"),
            false,
            3,
        ),
        (
            ht_file("ct_small_201"),
            "?window=40,400",
            vec!["+Ww", "40", "400"],
            c("ct_small_ele.dcm"),
            true,
            1,
        ),
        (
            ht_file("mr_small_202"),
            "",
            vec!["+Wi", "1"],
            c("mr_small_implicit.dcm"),
            true,
            1,
        ),
        (
            ht_file("us_rgb_201"),
            "",
            vec![],
            c("us_rgb_planar1_ele.dcm"),
            false,
            0,
        ),
    ];
    let data = dir.path().join("data");
    let mut files: Vec<PathBuf> = cases.iter().map(|c| c.0.clone()).collect();
    files.push(c("emr_10frame_ele.dcm"));
    files.sort();
    files.dedup();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let imported = import(&data, &refs);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let server = Server::start(&data, &[]);
    for (i, (file, query, opts, reference, grey, tolerance)) in cases.iter().enumerate() {
        let name = format!("{i}-{}", file.file_name().unwrap().to_string_lossy());
        let mode = if *grey { "L" } else { "RGB" };
        let (w, h, ch, want) = dcmtk(dir.path(), reference, opts, &name);
        let url = format!("{}/rendered{query}", instance_url(&server, file));
        let r = get(&url, Some("image/png"));
        assert_eq!(
            r.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.header("content-type"), "image/png", "{name}");
        let (format, gw, gh, gch, got) = pillow(dir.path(), &r.body, mode, &name);
        assert_eq!(format, "PNG", "{name}");
        assert_eq!((gw, gh, gch), (w, h, ch), "{name}: geometry");
        let worst = worst(&got, &want);
        assert!(
            worst <= *tolerance,
            "{name}: rendered differs from dcmj2pnm {opts:?} by up to {worst} grey levels"
        );
        if *grey {
            // The same image as a GIF is the same grey levels.
            let r = get(&url, Some("image/gif"));
            assert_eq!(r.status, 200, "{name}");
            let (format, _, _, _, gif) = pillow(dir.path(), &r.body, mode, &format!("{name}-gif"));
            assert_eq!(format, "GIF", "{name}");
            assert_eq!(gif, got, "{name}: GIF");
        }
        // JPEG (the default): close to the lossless rendering.
        let r = get(&url, None);
        assert_eq!(r.header("content-type"), "image/jpeg", "{name}");
        let (format, _, _, _, jpeg) = pillow(dir.path(), &r.body, mode, &format!("{name}-jpeg"));
        assert_eq!(format, "JPEG", "{name}");
        let md = mean_diff(&jpeg, &got);
        assert!(md < 4.0, "{name}: JPEG mean error {md}");
    }

    // A frame of a multi-frame instance: DCMTK's frame 4.
    let emr = c("emr_10frame_ele.dcm");
    let (_, _, _, want) = dcmtk(dir.path(), &emr, &["+Wm", "+F", "4"], "emr-4");
    let r = get(
        &format!("{}/frames/4/rendered", instance_url(&server, &emr)),
        Some("image/png"),
    );
    assert_eq!(r.status, 200);
    let (_, _, _, _, got) = pillow(dir.path(), &r.body, "L", "emr-4");
    assert!(worst(&got, &want) <= 1, "frame 4");
    // The instance rendered: one part per frame, in order.
    let r = get(
        &format!("{}/rendered", instance_url(&server, &emr)),
        Some("multipart/related; type=\"image/png\""),
    );
    assert_eq!(r.status, 200);
    let parts = r.parts();
    assert_eq!(parts.len(), 10);
    let (_, _, _, _, fourth) = pillow(dir.path(), &parts[3].1, "L", "emr-part-4");
    assert_eq!(fourth, got);
    // Asked as one image (what an <img> asks): the first frame, the type asked, never a
    // multipart body the client did not accept.
    let r = get(
        &format!("{}/rendered", instance_url(&server, &emr)),
        Some("image/png"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "image/png");
    let (_, _, _, _, single) = pillow(dir.path(), &r.body, "L", "emr-single");
    let (_, _, _, _, first) = pillow(dir.path(), &parts[0].1, "L", "emr-part-1");
    assert_eq!(single, first);
    // Frames beyond the instance: 404; a bad window or viewport: 400; a non-image type: 406.
    let base = instance_url(&server, &emr);
    assert_eq!(get(&format!("{base}/frames/11/rendered"), None).status, 404);
    assert_eq!(
        get(&format!("{base}/rendered?window=1,0"), None).status,
        400
    );
    assert_eq!(
        get(&format!("{base}/rendered?viewport=0,5"), None).status,
        400
    );
    assert_eq!(
        get(&format!("{base}/rendered?quality=500"), None).status,
        400
    );
    assert_eq!(
        get(&format!("{base}/rendered"), Some("application/dicom")).status,
        406
    );
}

#[test]
fn thumbnails_viewports_and_series() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let names = [
        "us_rgb_planar1_ele.dcm",
        "study77654033_CT2_17106.dcm",
        "study77654033_CT2_17136.dcm",
        "study77654033_CT2_17166.dcm",
        "study77654033_CT2_17196.dcm",
        "mr_siemens_private_implicit.dcm",
    ];
    let files: Vec<PathBuf> = names.iter().map(|n| corpus().join(n)).collect();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    assert!(import(&data, &refs).status.success());
    let server = Server::start(&data, &[]);

    // A 256×120 ultrasound: its thumbnail is 128×60, what DCMTK's rendering scaled gives.
    let us = &files[0];
    let r = get(&format!("{}/thumbnail", instance_url(&server, us)), None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "image/jpeg");
    let (_, w, h, _, thumb) = pillow(dir.path(), &r.body, "RGB", "us-thumb");
    assert_eq!((w, h), (128, 60));
    let (_, _, _, full) = dcmtk(dir.path(), us, &[], "us-full");
    let full = &full;
    let halved: Vec<u8> = (0..60)
        .flat_map(|y| (0..128).map(move |x| (x, y)))
        .flat_map(|(x, y)| {
            (0..3).map(move |c| {
                let at = |xx: usize, yy: usize| u32::from(full[(yy * 256 + xx) * 3 + c]);
                ((at(2 * x, 2 * y)
                    + at(2 * x + 1, 2 * y)
                    + at(2 * x, 2 * y + 1)
                    + at(2 * x + 1, 2 * y + 1)
                    + 2)
                    / 4) as u8
            })
        })
        .collect();
    let md = mean_diff(&thumb, &halved);
    assert!(md < 5.0, "thumbnail vs DCMTK halved: mean error {md}");
    // A viewport: 64 wide keeps 256:120 (64×30); a flipped region is the mirror image.
    let url = format!("{}/rendered", instance_url(&server, us));
    let r = get(&format!("{url}?viewport=64,64"), Some("image/png"));
    let (_, w, h, _, _) = pillow(dir.path(), &r.body, "RGB", "us-vp");
    assert_eq!((w, h), (64, 30));
    let r = get(
        &format!("{url}?viewport=256,120,256,0,-256,120"),
        Some("image/png"),
    );
    let (_, _, _, _, flipped) = pillow(dir.path(), &r.body, "RGB", "us-flip");
    let mirrored: Vec<u8> = (0..120)
        .flat_map(|y| (0..256).rev().map(move |x| (x, y)))
        .flat_map(|(x, y)| full[(y * 256 + x) * 3..(y * 256 + x) * 3 + 3].to_vec())
        .collect();
    assert_eq!(flipped, mirrored);

    // A series of four CT slices: its thumbnail is the middle one (by Instance Number) rendered
    // as DCMTK renders it; the series rendered is four parts.
    let (st, se, _) = uids(&files[1]);
    let mut by_number: Vec<(i64, &PathBuf)> = files[1..5]
        .iter()
        .map(|f| (dcmdump_value(f, "InstanceNumber").parse().unwrap(), f))
        .collect();
    by_number.sort();
    let middle = by_number[2].1;
    let (_, _, _, want) = dcmtk(dir.path(), middle, &["+Wi", "1"], "middle");
    let series = format!("{}/studies/{st}/series/{se}", server.root());
    let r = get(&format!("{series}/thumbnail"), Some("image/png"));
    assert_eq!(r.status, 200);
    let (_, _, _, _, got) = pillow(dir.path(), &r.body, "L", "series-thumb");
    assert!(
        worst(&got, &want) <= 1,
        "the series thumbnail is the middle slice"
    );
    let r = get(&format!("{series}/rendered"), Some("image/png"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "image/png", "one image, as asked");
    let r = get(
        &format!("{series}/rendered"),
        Some("multipart/related; type=\"image/png\""),
    );
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("multipart/related"));
    assert_eq!(r.parts().len(), 4);
    // The study's thumbnail: one image.
    let r = get(&format!("{}/studies/{st}/thumbnail", server.root()), None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "image/jpeg");

    // A 256×256 MR stored as HTJ2K (.4.202, by wado): its thumbnail decodes only the
    // resolutions down to 128×128: what OpenJPH's library decodes at one resolution level
    // fewer, through the window (PS3.3 C.11.2.1.2.1, computed here).
    let mr = &files[5];
    let r = get(
        &instance_url(&server, mr),
        Some("application/dicom; transfer-syntax=1.2.840.10008.1.2.4.202"),
    );
    assert_eq!(r.status, 200);
    let ht = write_temp(dir.path(), "mr-202.dcm", &r.body);
    let data2 = dir.path().join("data2");
    assert!(import(&data2, &[ht.as_path()]).status.success());
    let server2 = Server::start(&data2, &[]);
    let ht_url = instance_url(&server2, mr);
    let frame = get(
        &format!("{ht_url}/frames/1"),
        Some("image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202"),
    );
    assert_eq!(frame.status, 200);
    let j2c = write_temp(dir.path(), "mr-202.j2c", &frame.body);
    let low = dir.path().join("mr-low.i32");
    let said = run(Command::new(ojph_codec())
        .arg("reduced")
        .arg(&j2c)
        .arg("1")
        .arg(&low));
    assert!(String::from_utf8_lossy(&said).starts_with("128 128 "));
    let (c, w) = (2048.0f64, 4096.0f64);
    let want: Vec<u8> = std::fs::read(&low)
        .unwrap()
        .chunks_exact(4)
        .map(|b| {
            let x = f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            if x <= c - 0.5 - (w - 1.0) / 2.0 {
                0
            } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                255
            } else {
                (((x - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0).round() as u8
            }
        })
        .collect();
    let r = get(
        &format!("{ht_url}/thumbnail?window=2048,4096"),
        Some("image/png"),
    );
    assert_eq!(r.status, 200);
    let (_, tw, th, _, thumb) = pillow(dir.path(), &r.body, "L", "mr-ht-thumb");
    assert_eq!((tw, th), (128, 128));
    assert!(
        worst(&thumb, &want) <= 1,
        "the thumbnail is not the low resolution OpenJPH decodes"
    );
}
