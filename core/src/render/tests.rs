#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;

fn window(center: f64, width: f64, function: VoiFunction) -> Window {
    Window {
        center,
        width,
        function,
    }
}

const EXPLICIT: &str = "1.2.840.10008.1.2.1";
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const RLE: &str = "1.2.840.10008.1.2.5";
/// Samples as stored, interleaved, not decoded.
const NATIVE: Samples = Samples {
    rgb: false,
    planar: false,
    native: true,
};

#[test]
fn linear_window_follows_ps3_3_c_11_2_1_2_1() {
    // c = 2048, w = 4096: the bounds are c - 0.5 ∓ (w - 1)/2 = 0 and 4095.
    let w = window(2048.0, 4096.0, VoiFunction::Linear);
    assert_eq!(w.apply(0.0), 0);
    assert_eq!(w.apply(-1000.0), 0);
    assert_eq!(w.apply(4096.0), 255);
    // y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255 at x = 2047.5 is 127.5: rounds to 128.
    assert_eq!(w.apply(2047.5), 128);
    // x = 1024: ((1024 - 2047.5) / 4095 + 0.5) * 255 = 63.77 → 64.
    assert_eq!(w.apply(1024.0), 64);
    // Width 1 (the smallest): a threshold at c - 0.5.
    let t = window(100.0, 1.0, VoiFunction::Linear);
    assert_eq!(t.apply(99.0), 0);
    assert_eq!(t.apply(99.5), 0);
    assert_eq!(t.apply(100.0), 255);
}

#[test]
fn linear_exact_and_sigmoid_follow_ps3_3_c_11_2_1_3() {
    let e = window(40.0, 400.0, VoiFunction::LinearExact);
    assert_eq!(e.apply(-160.0), 0);
    assert_eq!(e.apply(240.0), 255);
    // ((x - c) / w + 0.5) * 255 at x = 140: 0.75 * 255 = 191.25 → 191.
    assert_eq!(e.apply(140.0), 191);
    let s = window(40.0, 400.0, VoiFunction::Sigmoid);
    // 255 / (1 + e^(-4 (x - c) / w)): 127.5 at c, 255 / (1 + e^-1) = 186.4 at c + w/4.
    assert_eq!(s.apply(40.0), 128);
    assert_eq!(s.apply(140.0), 186);
    assert!(!window(40.0, 0.5, VoiFunction::Linear).is_valid());
    assert!(window(40.0, 0.5, VoiFunction::LinearExact).is_valid());
    assert!(!window(40.0, 0.0, VoiFunction::Sigmoid).is_valid());
}

fn ct_display(photometric: &str) -> Display {
    Display::from_json(&json!({
        "00280010": {"vr": "US", "Value": [2]},
        "00280011": {"vr": "US", "Value": [2]},
        "00280100": {"vr": "US", "Value": [16]},
        "00280101": {"vr": "US", "Value": [12]},
        "00280103": {"vr": "US", "Value": [1]},
        "00280004": {"vr": "CS", "Value": [photometric]},
        "00281050": {"vr": "DS", "Value": [40]},
        "00281051": {"vr": "DS", "Value": [400]},
        "00281052": {"vr": "DS", "Value": ["-1024"]},
        "00281053": {"vr": "DS", "Value": [1]}
    }))
    .unwrap()
}

#[test]
fn grey_pipeline_sign_extends_rescales_windows_and_inverts() {
    let d = ct_display("MONOCHROME2");
    assert_eq!(d.rescale, (1.0, -1024.0));
    assert_eq!(d.window, Some(window(40.0, 400.0, VoiFunction::Linear)));
    // Stored 12-bit signed values with junk above bit 11: 0xF000 | 0x400 is 1024 → 0 HU;
    // 0x0FFF is -1 → -1025 HU; 1224 → 200 HU; 1064 → 40 HU.
    let stored: [u16; 4] = [0xF000 | 0x400, 0x0FFF, 1224, 1064];
    let native: Vec<u8> = stored.iter().flat_map(|v| v.to_le_bytes()).collect();
    let img = render(&d, &native, Samples::of(EXPLICIT, &d.pixel), None, None).unwrap();
    assert_eq!((img.width, img.height, img.channels), (2, 2, 1));
    let w = window(40.0, 400.0, VoiFunction::Linear);
    assert_eq!(
        img.data,
        vec![
            w.apply(0.0),
            w.apply(-1025.0),
            w.apply(200.0),
            w.apply(40.0)
        ]
    );
    // The request's window wins; MONOCHROME1 inverts.
    let bone = window(500.0, 2000.0, VoiFunction::Linear);
    let img = render(
        &ct_display("MONOCHROME1"),
        &native,
        NATIVE,
        Some(bone),
        None,
    )
    .unwrap();
    assert_eq!(img.data[2], 255 - bone.apply(200.0));
}

#[test]
fn without_a_window_the_frames_range_is_used() {
    let mut d = ct_display("MONOCHROME2");
    d.window = None;
    let native: Vec<u8> = [1024u16, 1124, 1224, 1500]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let img = render(&d, &native, Samples::of(EXPLICIT, &d.pixel), None, None).unwrap();
    assert_eq!(img.data[0], 0);
    assert_eq!(img.data[3], 255);
}

#[test]
fn colour_ybr_and_planar_become_rgb() {
    let d = Display::from_json(&json!({
        "00280010": {"vr": "US", "Value": [1]},
        "00280011": {"vr": "US", "Value": [2]},
        "00280100": {"vr": "US", "Value": [8]},
        "00280002": {"vr": "US", "Value": [3]},
        "00280006": {"vr": "US", "Value": [1]},
        "00280004": {"vr": "CS", "Value": ["RGB"]}
    }))
    .unwrap();
    // Planar as stored natively: R R G G B B.
    let native = Samples::of(EXPLICIT, &d.pixel);
    let img = render(&d, &[10, 20, 30, 40, 50, 60], native, None, None).unwrap();
    assert_eq!(img.data, vec![10, 30, 50, 20, 40, 60]);
    // A decoder's output is interleaved whatever the data set says: JPEG's (made RGB) and
    // RLE's (colour planes, kept as stored colour) alike.
    for stored in [JPEG_BASELINE, RLE] {
        let samples = Samples::of(stored, &d.pixel);
        assert!(!samples.planar, "{stored}");
        let img = render(&d, &[10, 20, 30, 40, 50, 60], samples, None, None).unwrap();
        assert_eq!(img.data, vec![10, 20, 30, 40, 50, 60], "{stored}");
    }
    // YBR_FULL grey (Cb = Cr = 128) is grey.
    let mut y = d.clone();
    y.pixel.photometric_interpretation = "YBR_FULL".into();
    y.pixel.planar_configuration = 0;
    let img = render(&y, &[77, 128, 128, 200, 128, 128], NATIVE, None, None).unwrap();
    assert_eq!(img.data, vec![77, 77, 77, 200, 200, 200]);
}

#[test]
fn palette_colour_maps_through_its_tables() {
    let d = Display::from_json(&json!({
        "00280010": {"vr": "US", "Value": [1]},
        "00280011": {"vr": "US", "Value": [2]},
        "00280100": {"vr": "US", "Value": [8]},
        "00280004": {"vr": "CS", "Value": ["PALETTE COLOR"]},
        "00281101": {"vr": "US", "Value": [256, 0, 16]},
        "00281102": {"vr": "US", "Value": [256, 0, 16]},
        "00281103": {"vr": "US", "Value": [256, 0, 16]}
    }))
    .unwrap();
    assert_eq!(d.palette_descriptors, Some([(256, 0, 16); 3]));
    let ramp: Vec<u16> = (0..256u16).map(|i| i * 257).collect();
    let inverse: Vec<u16> = ramp.iter().rev().copied().collect();
    let p = Palette {
        first: 0,
        bits: 16,
        lut: [ramp.clone(), inverse, vec![0x8000; 256]],
    };
    let img = render(&d, &[0, 255], NATIVE, None, Some(&p)).unwrap();
    assert_eq!(img.data, vec![0, 255, 128, 255, 0, 128]);
    // One entry maps every value; an empty table is an error, never a panic.
    let one = Palette {
        first: 0,
        bits: 16,
        lut: [vec![0xFF00], vec![0x8000], vec![0]],
    };
    let img = render(&d, &[0, 255], NATIVE, None, Some(&one)).unwrap();
    assert_eq!(img.data, vec![255, 128, 0, 255, 128, 0]);
    let empty = Palette {
        first: 0,
        bits: 16,
        lut: [vec![], vec![1], vec![1]],
    };
    assert!(render(&d, &[0, 255], NATIVE, None, Some(&empty)).is_err());
    assert!(palette_entries(&[], 1).is_empty());
    let bytes: Vec<u8> = ramp.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(palette_entries(&bytes, 256), ramp);
}

#[test]
fn parameters_are_checked() {
    let q = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let p = parse_params(
        q(&[
            ("window", "40,400,SIGMOID"),
            ("viewport", "64,32"),
            ("quality", "70"),
        ]),
        Format::Png,
        90,
    )
    .unwrap();
    assert_eq!(p.window, Some(window(40.0, 400.0, VoiFunction::Sigmoid)));
    assert_eq!(
        p.viewport,
        Some(Viewport {
            width: 64,
            height: 32,
            region: None
        })
    );
    assert_eq!(p.quality, 70);
    for bad in [
        &[("window", "40")][..],
        &[("window", "40,0")],
        &[("window", "40,400,CUBIC")],
        &[("viewport", "0,10")],
        &[("viewport", "10,10,0,0,0,5")],
        &[("viewport", "100000,10")],
        &[("quality", "0")],
        &[("quality", "101")],
    ] {
        assert!(parse_params(q(bad), Format::Jpeg, 90).is_err(), "{bad:?}");
    }
}

#[test]
fn viewports_crop_flip_and_keep_the_aspect_ratio() {
    let img = Image {
        width: 4,
        height: 2,
        channels: 1,
        data: vec![0, 10, 20, 30, 40, 50, 60, 70],
    };
    let half = apply_viewport(
        img.clone(),
        Some(&Viewport {
            width: 2,
            height: 2,
            region: None,
        }),
        true,
    );
    // 4×2 into 2×2 keeps 2:1: 2×1, each pixel the mean of a 2×2 block.
    assert_eq!((half.width, half.height), (2, 1));
    assert_eq!(half.data, vec![25, 45]);
    let flipped = apply_viewport(
        img,
        Some(&Viewport {
            width: 4,
            height: 2,
            region: Some((4, 0, -4, 2)),
        }),
        true,
    );
    assert_eq!(flipped.data, vec![30, 20, 10, 0, 70, 60, 50, 40]);
}

#[test]
fn png_holds_the_image_losslessly() {
    use std::io::Read as _;
    let img = Image {
        width: 3,
        height: 2,
        channels: 3,
        data: (0..18).map(|i| (i * 13) as u8).collect(),
    };
    let png = encode(&img, Format::Png, 90).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: 3×2, 8 bits, colour type 2.
    assert_eq!(&png[12..16], b"IHDR");
    assert_eq!(&png[16..24], &[0, 0, 0, 3, 0, 0, 0, 2]);
    assert_eq!(&png[24..26], &[8, 2]);
    // IDAT inflated by zlib: per row a filter byte and 9 bytes; undoing the filters gives
    // the image back.
    let at = png.windows(4).position(|w| w == b"IDAT").unwrap();
    let len = u32::from_be_bytes(png[at - 4..at].try_into().unwrap()) as usize;
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&png[at + 4..at + 4 + len])
        .read_to_end(&mut raw)
        .unwrap();
    assert_eq!(raw.len(), 2 * 10);
    let mut rows: Vec<Vec<u8>> = Vec::new();
    for y in 0..2 {
        let f = raw[y * 10];
        let mut row = raw[y * 10 + 1..(y + 1) * 10].to_vec();
        for i in 0..9 {
            let a = if i >= 3 { row[i - 3] } else { 0 };
            let b = if y > 0 { rows[y - 1][i] } else { 0 };
            let c = if y > 0 && i >= 3 {
                rows[y - 1][i - 3]
            } else {
                0
            };
            let pred = match f {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                _ => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
            };
            row[i] = row[i].wrapping_add(pred);
        }
        rows.push(row);
    }
    assert_eq!(rows.concat(), img.data);
}

#[test]
fn jpeg_and_gif_are_well_formed() {
    let img = Image {
        width: 300,
        height: 200,
        channels: 1,
        data: (0..60_000).map(|i| (i % 251) as u8).collect(),
    };
    let jpeg = encode(&img, Format::Jpeg, 90).unwrap();
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9]);
    // Decoded by the codec crate's own decoder: within JPEG's error at quality 90.
    let back = wado_codec::jpeg::dct::decode(&jpeg).unwrap();
    assert_eq!((back.width, back.height), (300, 200));
    let gif = encode(&img, Format::Gif, 90).unwrap();
    assert_eq!(&gif[..6], b"GIF89a");
    assert_eq!(gif.last(), Some(&0x3B));
}

#[test]
fn a_huge_region_costs_no_more_than_the_image_and_the_output() {
    let img = Image {
        width: 2,
        height: 2,
        channels: 1,
        data: vec![200, 200, 200, 200],
    };
    // A million pixels a side, from (0, 0): the 2×2 image is a speck in its corner.
    let out = apply_viewport(
        img.clone(),
        Some(&Viewport {
            width: 64,
            height: 64,
            region: Some((0, 0, 1_000_000, 1_000_000)),
        }),
        true,
    );
    assert_eq!((out.width, out.height), (64, 64));
    assert!(out.data[0] < 200 && out.data.iter().skip(1).all(|&v| v == 0));
    // Half outside on the left: black, then the image.
    let out = apply_viewport(
        img,
        Some(&Viewport {
            width: 4,
            height: 2,
            region: Some((-2, 0, 4, 2)),
        }),
        true,
    );
    assert_eq!(out.data, vec![0, 0, 200, 200, 0, 0, 200, 200]);
}
