//! Rendering (PS3.18 §10.4.1.1.3 "Retrieve Rendered", §8.3.5 the query parameters of rendered
//! and thumbnail resources): a frame's samples made into what a screen shows, the way PS3.4
//! (Grayscale Transformations, N.2) and PS3.3 C.11 describe it, then scaled and encoded.
//!
//! Grey: stored value (sign-extended from Bits Stored) → Modality LUT (Rescale Slope and
//! Intercept) → VOI LUT (the request's `window`, else the instance's first Window Center and
//! Width with its VOI LUT Function, else the frame's own range) → Presentation LUT (inverted
//! for MONOCHROME1, or a Presentation LUT Shape of INVERSE) → 8-bit grey. Colour: RGB as is,
//! YBR_FULL and YBR_FULL_422 converted (PS3.3 C.7.6.3.1.2), PALETTE COLOR through its LUTs
//! (C.7.6.3.1.5); colour a decoder already made RGB (JPEG, JPEG 2000 with a component
//! transform) taken as it comes.
//!
//! One pipeline for every place: the server's rendered and thumbnail resources, and the
//! browser demo drawing frames it fetched.

mod encode;

pub use encode::{encode, scale_to_fit, Format};

use crate::PixelInfo;
use serde_json::Value;

/// The VOI LUT functions of PS3.3 C.11.2.1.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoiFunction {
    /// C.11.2.1.2.1, the default.
    Linear,
    /// C.11.2.1.3.2.
    LinearExact,
    /// C.11.2.1.3.1.
    Sigmoid,
}

impl VoiFunction {
    /// From its defined term (case-insensitive, as the `window` parameter may be written).
    pub fn from_name(name: &str) -> Option<VoiFunction> {
        match name.trim().to_ascii_uppercase().as_str() {
            "LINEAR" => Some(VoiFunction::Linear),
            "LINEAR_EXACT" => Some(VoiFunction::LinearExact),
            "SIGMOID" => Some(VoiFunction::Sigmoid),
            _ => None,
        }
    }
}

/// A VOI window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Window Center.
    pub center: f64,
    /// Window Width.
    pub width: f64,
    /// VOI LUT Function.
    pub function: VoiFunction,
}

impl Window {
    /// Whether the width is one the function can use: LINEAR needs at least 1 (C.11.2.1.2.1),
    /// the others more than 0.
    pub fn is_valid(&self) -> bool {
        self.center.is_finite()
            && self.width.is_finite()
            && match self.function {
                VoiFunction::Linear => self.width >= 1.0,
                _ => self.width > 0.0,
            }
    }

    /// The value onto 0..=255 (PS3.3 C.11.2.1.2.1 and C.11.2.1.3).
    pub fn apply(&self, x: f64) -> u8 {
        let (c, w) = (self.center, self.width);
        let y = match self.function {
            VoiFunction::Linear => {
                if x <= c - 0.5 - (w - 1.0) / 2.0 {
                    0.0
                } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                    255.0
                } else {
                    ((x - (c - 0.5)) / (w - 1.0).max(f64::MIN_POSITIVE) + 0.5) * 255.0
                }
            }
            VoiFunction::LinearExact => {
                if x <= c - w / 2.0 {
                    0.0
                } else if x > c + w / 2.0 {
                    255.0
                } else {
                    ((x - c) / w + 0.5) * 255.0
                }
            }
            VoiFunction::Sigmoid => 255.0 / (1.0 + (-4.0 * (x - c) / w).exp()),
        };
        y.round().clamp(0.0, 255.0) as u8
    }
}

/// A palette colour lookup table (PS3.3 C.7.6.3.1.5): one per channel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Palette {
    /// The first stored value mapped (the descriptor's second value).
    pub first: i64,
    /// Bits per entry (8 or 16, the descriptor's third value).
    pub bits: u16,
    /// Red, green and blue entries.
    pub lut: [Vec<u16>; 3],
}

/// What drawing a frame of an instance takes, from its attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct Display {
    /// The pixel module.
    pub pixel: PixelInfo,
    /// Rescale Slope and Intercept (1 and 0 when absent).
    pub rescale: (f64, f64),
    /// The instance's first window, when it has a usable one.
    pub window: Option<Window>,
    /// Presentation LUT Shape INVERSE.
    pub inverse: bool,
    /// Palette Color Lookup Table descriptors (the data is filled in by the caller, from
    /// the attribute's value or its bulk data): `[(entries, first, bits); 3]`.
    pub palette_descriptors: Option<[(u32, i64, u16); 3]>,
}

fn first<'a>(instance: &'a Value, tag: &str) -> Option<&'a Value> {
    instance.get(tag)?.get("Value")?.get(0)
}

fn values<'a>(instance: &'a Value, tag: &str) -> Vec<&'a Value> {
    instance
        .get(tag)
        .and_then(|a| a.get("Value"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text<'a>(instance: &'a Value, tag: &str) -> Option<&'a str> {
    first(instance, tag).and_then(Value::as_str).map(str::trim)
}

impl Display {
    /// Reads the display attributes of one instance's DICOM JSON object (PS3.18 Annex F), or
    /// of the first object of an array.
    pub fn from_json(instance: &Value) -> Result<Display, String> {
        let v = match instance {
            Value::Array(a) => a.first().ok_or("an empty array: no instance")?,
            other => other,
        };
        let num = |tag: &str| first(v, tag).and_then(number);
        let us = |tag: &str| num(tag).map(|n| n.clamp(0.0, 65535.0) as u16);
        let rows = us("00280010").ok_or("no Rows: not an image")?;
        let columns = us("00280011").ok_or("no Columns: not an image")?;
        let bits_allocated = us("00280100").ok_or("no Bits Allocated: not an image")?;
        let pixel = PixelInfo {
            rows,
            columns,
            samples_per_pixel: us("00280002").unwrap_or(1),
            bits_allocated,
            bits_stored: us("00280101").unwrap_or(bits_allocated),
            pixel_representation: us("00280103").unwrap_or(0),
            photometric_interpretation: text(v, "00280004").unwrap_or("MONOCHROME2").to_owned(),
            planar_configuration: us("00280006").unwrap_or(0),
            number_of_frames: num("00280008").map_or(1, |n| n.clamp(1.0, 1e9) as u32),
        };
        let function = text(v, "00281056")
            .and_then(VoiFunction::from_name)
            .unwrap_or(VoiFunction::Linear);
        let window = match (num("00281050"), num("00281051")) {
            (Some(center), Some(width)) => Some(Window {
                center,
                width,
                function,
            })
            .filter(Window::is_valid),
            _ => None,
        };
        let slope = num("00281053").filter(|s| s.is_finite() && *s != 0.0);
        let intercept = num("00281052").filter(|i| i.is_finite());
        let descriptor = |tag: &str| -> Option<(u32, i64, u16)> {
            let d: Vec<f64> = values(v, tag).into_iter().filter_map(number).collect();
            match d[..] {
                [n, first, bits] => {
                    // 0 entries means 65536 (C.7.6.3.1.5); the first mapped value may be
                    // written as unsigned or signed by the source.
                    let n = if n == 0.0 { 65536 } else { n as u32 };
                    Some((n, first as i64, bits as u16))
                }
                _ => None,
            }
        };
        let palette_descriptors = match (
            descriptor("00281101"),
            descriptor("00281102"),
            descriptor("00281103"),
        ) {
            (Some(r), Some(g), Some(b)) if pixel.photometric_interpretation == "PALETTE COLOR" => {
                Some([r, g, b])
            }
            _ => None,
        };
        Ok(Display {
            pixel,
            rescale: (slope.unwrap_or(1.0), intercept.unwrap_or(0.0)),
            window,
            inverse: text(v, "20500020") == Some("INVERSE"),
            palette_descriptors,
        })
    }
}

/// An 8-bit image: grey (one channel) or RGB (three, interleaved), row by row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// `width × height × channels` bytes.
    pub data: Vec<u8>,
}

impl Image {
    /// RGBA, for a canvas.
    pub fn to_rgba(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.width * self.height * 4);
        for px in self.data.chunks_exact(self.channels) {
            match px {
                [g] => out.extend_from_slice(&[*g, *g, *g, 255]),
                [r, g, b] => out.extend_from_slice(&[*r, *g, *b, 255]),
                _ => {}
            }
        }
        out
    }
}

/// The stored values of a frame (native little-endian samples, as the decoders give them),
/// sign-extended from Bits Stored: `samples` values per pixel, in stored order.
fn stored_values(p: &PixelInfo, native: &[u8], count: usize) -> Result<Vec<i64>, String> {
    let bits = u32::from(p.bits_stored.clamp(1, 32));
    let signed = p.pixel_representation == 1;
    let mask: u64 = (1u64 << bits) - 1;
    let extend = |raw: u64| -> i64 {
        let v = raw & mask;
        if signed && v >> (bits - 1) & 1 == 1 {
            v as i64 - (1i64 << bits)
        } else {
            v as i64
        }
    };
    let raw: Vec<u64> = match p.bits_allocated {
        8 => native.iter().take(count).map(|&b| u64::from(b)).collect(),
        16 => native
            .chunks_exact(2)
            .take(count)
            .map(|c| u64::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        32 => native
            .chunks_exact(4)
            .take(count)
            .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        1 => (0..count)
            .map(|i| u64::from(native.get(i / 8).is_some_and(|b| b >> (i % 8) & 1 == 1)))
            .collect(),
        b => return Err(format!("{b} bits allocated cannot be rendered")),
    };
    if raw.len() < count {
        return Err(format!(
            "the frame holds {} of its {count} samples",
            raw.len()
        ));
    }
    Ok(raw.into_iter().map(extend).collect())
}

/// How a frame's samples lie once read or decoded: the one rule the conversions follow too
/// (`wado_codec::transcode_frame`). A frame read as stored keeps the layout its attributes
/// say (Planar Configuration, YBR_FULL_422's pairs); a decoded frame is always interleaved
/// (RLE's colour planes included), and RGB when its decoder converted the colour (JPEG's
/// YCbCr, JPEG 2000's component transforms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Samples {
    /// A decoder made the colour RGB, whatever the Photometric Interpretation says.
    pub rgb: bool,
    /// Colour by plane (all reds, then greens, then blues).
    pub planar: bool,
    /// As stored natively (not decoded).
    pub native: bool,
}

impl Samples {
    /// The layout of a frame of an image stored in `stored` (a transfer syntax UID; empty is
    /// native) with `pixel`'s attributes, read or decoded to native samples.
    pub fn of(stored: &str, pixel: &PixelInfo) -> Samples {
        let native = stored.is_empty() || wado_codec::ts::is_native(stored);
        Samples {
            rgb: !native && wado_codec::decoded_as_rgb(stored, &pixel.photometric_interpretation),
            planar: native
                && wado_codec::native_planar(
                    if stored.is_empty() {
                        wado_codec::ts::EXPLICIT_VR_LE
                    } else {
                        stored
                    },
                    pixel,
                ),
            native,
        }
    }
}

/// Renders one frame. `native` is the frame as native little-endian samples (what
/// `wado_codec::transcode_frame` gives for Explicit VR Little Endian), laid out as `samples`
/// says; `window` is the request's, which wins over the instance's; `palette` the palette
/// colour tables when the image has them.
pub fn render(
    d: &Display,
    native: &[u8],
    samples: Samples,
    window: Option<Window>,
    palette: Option<&Palette>,
) -> Result<Image, String> {
    let p = &d.pixel;
    let (width, height) = (usize::from(p.columns), usize::from(p.rows));
    let n = width * height;
    if n == 0 {
        return Err("an image without pixels".into());
    }
    let photometric = p.photometric_interpretation.as_str();
    if p.samples_per_pixel == 3 || (photometric == "YBR_FULL_422" && samples.native) {
        return render_colour(d, native, samples).map(|data| Image {
            width,
            height,
            channels: 3,
            data,
        });
    }
    if p.samples_per_pixel != 1 {
        return Err(format!(
            "{} samples per pixel cannot be rendered",
            p.samples_per_pixel
        ));
    }
    let stored = stored_values(p, native, n)?;
    if photometric == "PALETTE COLOR" {
        let pal = palette.ok_or("a palette colour image without its lookup tables")?;
        if pal.lut.iter().any(Vec::is_empty) {
            return Err("a palette colour lookup table without entries".into());
        }
        let mut data = Vec::with_capacity(n * 3);
        for v in stored {
            for lut in &pal.lut {
                let i = (v - pal.first).clamp(0, lut.len() as i64 - 1).max(0) as usize;
                let e = lut.get(i).copied().unwrap_or(0);
                data.push(if pal.bits > 8 {
                    (e >> 8) as u8
                } else {
                    e as u8
                });
            }
        }
        return Ok(Image {
            width,
            height,
            channels: 3,
            data,
        });
    }
    let (slope, intercept) = d.rescale;
    let modality: Vec<f64> = stored
        .into_iter()
        .map(|v| v as f64 * slope + intercept)
        .collect();
    let window = match window.or(d.window) {
        Some(w) => w,
        None => {
            // No window anywhere: the frame's own range (as DCMTK's min-max window).
            let min = modality.iter().copied().fold(f64::INFINITY, f64::min);
            let max = modality.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            Window {
                center: (min + max) / 2.0,
                width: (max - min).max(1.0),
                function: VoiFunction::Linear,
            }
        }
    };
    let invert = photometric == "MONOCHROME1" || d.inverse;
    let data = modality
        .iter()
        .map(|&x| {
            let g = window.apply(x);
            if invert {
                255 - g
            } else {
                g
            }
        })
        .collect();
    Ok(Image {
        width,
        height,
        channels: 1,
        data,
    })
}

/// Colour samples to 8-bit RGB, interleaved.
fn render_colour(d: &Display, native: &[u8], samples: Samples) -> Result<Vec<u8>, String> {
    let p = &d.pixel;
    let n = usize::from(p.columns) * usize::from(p.rows);
    let photometric = p.photometric_interpretation.as_str();
    // YBR_FULL_422 stored natively: Y Y Cb Cr for each pair of pixels (C.7.6.3.1.2).
    if photometric == "YBR_FULL_422" && samples.native {
        if p.bits_allocated != 8 {
            return Err("YBR_FULL_422 of more than 8 bits cannot be rendered".into());
        }
        let width = usize::from(p.columns);
        let row_bytes = width.div_ceil(2) * 4;
        let mut out = Vec::with_capacity(n * 3);
        for row in 0..usize::from(p.rows) {
            let line = native
                .get(row * row_bytes..(row + 1) * row_bytes)
                .ok_or("the frame is shorter than its rows")?;
            for x in 0..width {
                let pair = &line[(x / 2) * 4..(x / 2) * 4 + 4];
                out.extend_from_slice(&ybr_to_rgb(pair[x % 2], pair[2], pair[3]));
            }
        }
        return Ok(out);
    }
    let bits = p.bits_stored.clamp(1, 16);
    let sample: Vec<u8> = match p.bits_allocated {
        8 => native.get(..n * 3).ok_or("the frame is short")?.to_vec(),
        16 => native
            .chunks_exact(2)
            .take(n * 3)
            .map(|c| {
                let v = u16::from_le_bytes([c[0], c[1]]);
                (u32::from(v) * 255 / ((1u32 << bits) - 1)).min(255) as u8
            })
            .collect(),
        b => return Err(format!("colour of {b} bits allocated cannot be rendered")),
    };
    if sample.len() < n * 3 {
        return Err("the frame is short".into());
    }
    let planar = samples.planar;
    let ybr = !samples.rgb && photometric.starts_with("YBR_FULL");
    let mut out = Vec::with_capacity(n * 3);
    for i in 0..n {
        let s = |c: usize| {
            if planar {
                sample[c * n + i]
            } else {
                sample[i * 3 + c]
            }
        };
        let (a, b, c) = (s(0), s(1), s(2));
        out.extend_from_slice(&if ybr { ybr_to_rgb(a, b, c) } else { [a, b, c] });
    }
    Ok(out)
}

/// YBR_FULL to RGB (PS3.3 C.7.6.3.1.2).
fn ybr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (f64::from(y), f64::from(cb) - 128.0, f64::from(cr) - 128.0);
    let c = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    [
        c(y + 1.402 * cr),
        c(y - 0.344_136 * cb - 0.714_136 * cr),
        c(y + 1.772 * cb),
    ]
}

/// Palette entries from the bytes of a LUT Data attribute (OW, little endian) for a
/// descriptor `(entries, first, bits)`. 8-bit entries stored in 16-bit words (a common
/// encoder habit) are read from the low bytes.
pub fn palette_entries(bytes: &[u8], entries: u32) -> Vec<u16> {
    let words: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let n = entries as usize;
    if words.len() >= n {
        words[..n].to_vec()
    } else if bytes.len() >= n {
        // Eight-bit entries packed two per word.
        bytes[..n].iter().map(|&b| u16::from(b)).collect()
    } else {
        words
    }
}

/// What a rendered or thumbnail request asked for (PS3.18 §8.3.5.1).
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// The image format.
    pub format: Format,
    /// `window=center,width[,function]`.
    pub window: Option<Window>,
    /// `viewport=vw,vh[,sx,sy,sw,sh]`.
    pub viewport: Option<Viewport>,
    /// `quality` (1–100), for JPEG.
    pub quality: u8,
}

/// The viewport parameter (PS3.18 §8.3.5.1.3): the size of the output and, optionally, the
/// region of the image shown (a negative width or height flips it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Viewport {
    /// Viewport width.
    pub width: u32,
    /// Viewport height.
    pub height: u32,
    /// `(sx, sy, sw, sh)`.
    pub region: Option<(i64, i64, i64, i64)>,
}

/// The largest viewport side: a 4096 × 4096 RGB output is 48 MB (and its copies while it is
/// written), bounded in every place this runs, the worker's 128 MB included.
pub const MAX_VIEWPORT: u32 = 4096;

/// Parses the rendering query parameters (`window`, `viewport`, `quality`; `annotation` and
/// `iccprofile` are accepted and not applied). Errors are the reason for a 400.
pub fn parse_params(
    get: impl Fn(&str) -> Option<String>,
    format: Format,
    default_quality: u8,
) -> Result<Params, String> {
    let window = match get("window") {
        None => None,
        Some(w) => {
            let f: Vec<&str> = w.split(',').map(str::trim).collect();
            let num = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
            let (center, width, function) = match f[..] {
                [c, wd] => (num(c), num(wd), Some(VoiFunction::Linear)),
                [c, wd, func] => (num(c), num(wd), VoiFunction::from_name(func)),
                _ => (None, None, None),
            };
            let (Some(center), Some(width), Some(function)) = (center, width, function) else {
                return Err(format!(
                    "window={w:?}: expected center,width[,function] with function LINEAR, LINEAR_EXACT or SIGMOID"
                ));
            };
            let w = Window {
                center,
                width,
                function,
            };
            if !w.is_valid() {
                return Err(format!(
                    "window width {width} is not allowed for {function:?} (PS3.3 C.11.2.1.2)"
                ));
            }
            Some(w)
        }
    };
    let viewport = match get("viewport") {
        None => None,
        Some(v) => {
            let f: Vec<Option<i64>> = v.split(',').map(|s| s.trim().parse().ok()).collect();
            let size = |x: Option<i64>| {
                x.filter(|&x| x >= 1 && x <= i64::from(MAX_VIEWPORT))
                    .map(|x| x as u32)
            };
            let bad = || {
                format!("viewport={v:?}: expected vw,vh[,sx,sy,sw,sh], sizes 1 to {MAX_VIEWPORT}")
            };
            match f[..] {
                [w, h] => Some(Viewport {
                    width: size(w).ok_or_else(bad)?,
                    height: size(h).ok_or_else(bad)?,
                    region: None,
                }),
                [w, h, Some(sx), Some(sy), Some(sw), Some(sh)] if sw != 0 && sh != 0 => {
                    Some(Viewport {
                        width: size(w).ok_or_else(bad)?,
                        height: size(h).ok_or_else(bad)?,
                        region: Some((sx, sy, sw, sh)),
                    })
                }
                _ => return Err(bad()),
            }
        }
    };
    let quality = match get("quality") {
        None => default_quality,
        Some(q) => q
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|q| (1..=100).contains(q))
            .ok_or_else(|| format!("quality={q:?}: expected 1 to 100"))?,
    };
    Ok(Params {
        format,
        window,
        viewport,
        quality,
    })
}

/// The region of an image a viewport shows (flipped for negative sizes), scaled to fit the
/// viewport with its aspect ratio kept; without a viewport, the image.
pub fn apply_viewport(image: Image, viewport: Option<&Viewport>, enlarge: bool) -> Image {
    let Some(vp) = viewport else {
        return image;
    };
    match vp.region {
        Some(r) => region(&image, r, vp.width as usize, vp.height as usize),
        None => scale_to_fit(&image, vp.width as usize, vp.height as usize, enlarge),
    }
}

/// The region `(sx, sy, sw, sh)` of an image (a negative size takes the region to the left of,
/// or above, `sx`/`sy`, mirrored), scaled to fit `max_w × max_h`: each output pixel the mean of
/// the region's pixels it covers, those outside the image black. The work and memory are
/// bounded by the image and the output, whatever region is asked for.
fn region(
    image: &Image,
    (sx, sy, sw, sh): (i64, i64, i64, i64),
    max_w: usize,
    max_h: usize,
) -> Image {
    let (rw, rh) = (sw.unsigned_abs() as f64, sh.unsigned_abs() as f64);
    let s = (max_w as f64 / rw).min(max_h as f64 / rh);
    let ow = ((rw * s).round() as usize).clamp(1, max_w);
    let oh = ((rh * s).round() as usize).clamp(1, max_h);
    let ch = image.channels;
    let mut data = vec![0u8; ow * oh * ch];
    // The image pixels [a, b) along one axis that output cell `o` of `n` covers: region
    // offsets [o·r/n, (o+1)·r/n), at least one pixel, mapped forwards or mirrored from the start.
    let span = |o: usize, n: usize, r: f64, start: i64, forward: bool| -> (i64, i64, i64) {
        let r0 = (o as f64 * r / n as f64).floor() as i64;
        let r1 = (((o + 1) as f64 * r / n as f64).ceil() as i64).max(r0 + 1);
        if forward {
            (start + r0, start + r1, r1 - r0)
        } else {
            (start - r1, start - r0, r1 - r0)
        }
    };
    for oy in 0..oh {
        let (y0, y1, ny) = span(oy, oh, rh, sy, sh > 0);
        let (cy0, cy1) = (y0.max(0), y1.min(image.height as i64));
        for ox in 0..ow {
            let (x0, x1, nx) = span(ox, ow, rw, sx, sw > 0);
            let (cx0, cx1) = (x0.max(0), x1.min(image.width as i64));
            let count = (nx * ny).max(1) as u64;
            for c in 0..ch {
                let mut sum = 0u64;
                for y in cy0..cy1 {
                    let row = y as usize * image.width;
                    for x in cx0..cx1 {
                        sum += u64::from(image.data[(row + x as usize) * ch + c]);
                    }
                }
                data[(oy * ow + ox) * ch + c] = ((sum + count / 2) / count) as u8;
            }
        }
    }
    Image {
        width: ow,
        height: oh,
        channels: ch,
        data,
    }
}

/// The longest side of a thumbnail when the request names no viewport: what OHIF's study
/// browser draws (about 100 px), with room for a high-density screen.
pub const THUMBNAIL_SIZE: usize = 128;

/// One frame's rendering, as a planner decided it; run on the offload pool.
#[derive(Debug)]
pub(crate) struct RenderJob {
    /// The image's pixel module.
    pub(crate) info: PixelInfo,
    /// Its display attributes.
    pub(crate) display: Display,
    /// Its palette, for PALETTE COLOR.
    pub(crate) palette: Option<Palette>,
    /// How the frame's samples lie.
    pub(crate) samples: Samples,
    /// What the request asked.
    pub(crate) params: Params,
    /// A thumbnail (scaled to [`THUMBNAIL_SIZE`] unless a viewport is named).
    pub(crate) thumbnail: bool,
    /// The stored JPEG 2000 or HTJ2K syntax, when the frame comes as its codestream to be
    /// decoded only down to the resolution the output needs.
    pub(crate) reduce_from: Option<String>,
}

impl RenderJob {
    /// The smallest side the output needs, when a lower resolution can serve it: a
    /// thumbnail's, or a viewport's without a source region.
    pub(crate) fn needed_side(&self) -> Option<u32> {
        match (&self.params.viewport, self.thumbnail) {
            (Some(vp), _) if vp.region.is_none() => Some(vp.width.max(vp.height)),
            (None, true) => Some(THUMBNAIL_SIZE as u32),
            _ => None,
        }
    }

    /// Pixels of the output at most (a viewport's, else the image's), for the memory estimate.
    pub(crate) fn output_pixels(&self) -> u64 {
        match &self.params.viewport {
            Some(vp) => u64::from(vp.width) * u64::from(vp.height),
            None => u64::from(self.info.rows) * u64::from(self.info.columns),
        }
    }

    /// What running the job holds besides its input of `input` bytes: the samples (decoded
    /// here when `reduce_from`, with the decoder's work), the 8-bit image (RGB) and its
    /// scaled copy, the encoded output.
    pub(crate) fn holds(&self, input: u64) -> u64 {
        let pixels = u64::from(self.info.rows) * u64::from(self.info.columns);
        let decoding = self.reduce_from.as_deref().map_or(0, |ts| {
            self.info.stored_frame_bits().div_ceil(8).saturating_add(
                wado_codec::conversion_work_bytes(&self.info, ts, wado_codec::ts::EXPLICIT_VR_LE),
            )
        });
        input
            .saturating_add(decoding)
            .saturating_add(pixels.saturating_mul(9))
            .saturating_add(self.output_pixels().saturating_mul(6))
    }

    /// The frame rendered, scaled and encoded: `frame` is its native samples, or (with
    /// `reduce_from`) its codestream, decoded here at the resolution needed.
    pub(crate) fn run(&self, frame: &[u8]) -> crate::error::Result<Vec<u8>> {
        let failed = |e: String| crate::error::Error::NotAcceptable(format!("cannot render: {e}"));
        let mut display = std::borrow::Cow::Borrowed(&self.display);
        let decoded;
        let native: &[u8] = match &self.reduce_from {
            None => frame,
            Some(ts) => {
                let side = self.needed_side().unwrap_or(u32::MAX);
                decoded = match wado_codec::decode_frame_reduced(&self.info, ts, frame, side) {
                    Some(r) => {
                        let (px, cols, rows) = r?;
                        let d = display.to_mut();
                        d.pixel.columns = cols;
                        d.pixel.rows = rows;
                        px
                    }
                    None => wado_codec::decode_frame(&self.info, ts, frame)?,
                };
                &decoded
            }
        };
        let image = render(
            &display,
            native,
            self.samples,
            self.params.window,
            self.palette.as_ref(),
        )
        .map_err(failed)?;
        let image = match (&self.params.viewport, self.thumbnail) {
            (Some(vp), _) => apply_viewport(image, Some(vp), true),
            (None, true) => scale_to_fit(&image, THUMBNAIL_SIZE, THUMBNAIL_SIZE, false),
            (None, false) => image,
        };
        encode(&image, self.params.format, self.params.quality).map_err(failed)
    }
}

#[cfg(test)]
mod tests;
