//! Rendered images scaled and written: JPEG (our baseline encoder), PNG (ISO/IEC 15948, zlib
//! through flate2) and GIF (89a, LZW written here), the three rendered media types of PS3.18
//! Table 8.7.4-1 for single-frame images.

use super::Image;
use std::io::Write as _;

/// A rendered media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `image/jpeg`, the default (PS3.18 §8.7.4).
    Jpeg,
    /// `image/png`.
    Png,
    /// `image/gif`.
    Gif,
}

impl Format {
    /// The media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Gif => "image/gif",
        }
    }

    /// From a media type's essence (lower case).
    pub fn from_media_type(name: &str) -> Option<Format> {
        match name {
            "image/jpeg" => Some(Format::Jpeg),
            "image/png" => Some(Format::Png),
            "image/gif" => Some(Format::Gif),
            _ => None,
        }
    }
}

/// Writes an image in `format`; `quality` (1–100) is JPEG's.
pub fn encode(image: &Image, format: Format, quality: u8) -> Result<Vec<u8>, String> {
    if image.width == 0 || image.height == 0 || !matches!(image.channels, 1 | 3) {
        return Err("an empty image".into());
    }
    match format {
        Format::Jpeg => wado_codec::jpeg::dct::encode(
            wado_codec::jpeg::dct::Samples::Bytes(&image.data),
            image.width,
            image.height,
            image.channels,
            8,
            wado_codec::jpeg::dct::EncodeOptions {
                quality: quality.clamp(1, 100),
                baseline: true,
                chroma_422: false,
            },
        )
        .map_err(|e| e.to_string()),
        Format::Png => Ok(png(image)),
        Format::Gif => gif(image),
    }
}

/// A PNG: 8-bit grey or RGB, no interlace, each row filtered by the filter of the five that
/// gives it the smallest sum of absolute differences (the standard's suggested heuristic).
fn png(image: &Image) -> Vec<u8> {
    let (w, h, ch) = (image.width, image.height, image.channels);
    let stride = w * ch;
    let mut raw = Vec::with_capacity((stride + 1) * h);
    let zero = vec![0u8; stride];
    let mut candidate = vec![0u8; stride];
    let mut best = vec![0u8; stride];
    for y in 0..h {
        let row = &image.data[y * stride..(y + 1) * stride];
        let up = if y > 0 {
            &image.data[(y - 1) * stride..y * stride]
        } else {
            &zero[..]
        };
        let mut best_filter = 0u8;
        let mut best_cost = u64::MAX;
        for filter in 0..5u8 {
            for i in 0..stride {
                let a = if i >= ch { row[i - ch] } else { 0 };
                let b = up[i];
                let c = if i >= ch { up[i - ch] } else { 0 };
                let pred = match filter {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                    _ => paeth(a, b, c),
                };
                candidate[i] = row[i].wrapping_sub(pred);
            }
            let cost: u64 = candidate
                .iter()
                .map(|&v| u64::from((v as i8).unsigned_abs()))
                .sum();
            if cost < best_cost {
                best_cost = cost;
                best_filter = filter;
                best.copy_from_slice(&candidate);
            }
        }
        raw.push(best_filter);
        raw.extend_from_slice(&best);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    // Writing into a Vec cannot fail.
    let _ = z.write_all(&raw);
    let idat = z.finish().unwrap_or_default();
    let mut out = Vec::with_capacity(idat.len() + 64);
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(w as u32).to_be_bytes());
    ihdr.extend_from_slice(&(h as u32).to_be_bytes());
    // Bit depth 8; colour type 0 (grey) or 2 (RGB); deflate; adaptive filtering; no interlace.
    ihdr.extend_from_slice(&[8, if ch == 3 { 2 } else { 0 }, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
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

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// A GIF 89a: grey through a 256-level grey palette (exact); RGB through a 6×7×6 colour cube
/// (GIF holds 256 colours at most).
fn gif(image: &Image) -> Result<Vec<u8>, String> {
    let (w, h) = (image.width, image.height);
    if w > 65535 || h > 65535 {
        return Err(format!("a {w}×{h} image is too large for GIF"));
    }
    let mut palette = [0u8; 768];
    let indices: Vec<u8> = if image.channels == 1 {
        for i in 0..256 {
            palette[i * 3..i * 3 + 3].copy_from_slice(&[i as u8; 3]);
        }
        image.data.clone()
    } else {
        for r in 0..6 {
            for g in 0..7 {
                for b in 0..6 {
                    let i = r * 42 + g * 6 + b;
                    palette[i * 3] = (r * 255 / 5) as u8;
                    palette[i * 3 + 1] = (g * 255 / 6) as u8;
                    palette[i * 3 + 2] = (b * 255 / 5) as u8;
                }
            }
        }
        let level = |v: u8, n: u32| (u32::from(v) * (n - 1) + 127) / 255;
        image
            .data
            .chunks_exact(3)
            .map(|p| (level(p[0], 6) * 42 + level(p[1], 7) * 6 + level(p[2], 6)) as u8)
            .collect()
    };
    let mut out = Vec::with_capacity(indices.len() / 2 + 1024);
    out.extend_from_slice(b"GIF89a");
    out.extend_from_slice(&(w as u16).to_le_bytes());
    out.extend_from_slice(&(h as u16).to_le_bytes());
    // Global colour table of 256 entries, 8 bits of colour resolution.
    out.extend_from_slice(&[0xF7, 0, 0]);
    out.extend_from_slice(&palette);
    // Image descriptor: the whole screen, no local table, not interlaced.
    out.push(0x2C);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(w as u16).to_le_bytes());
    out.extend_from_slice(&(h as u16).to_le_bytes());
    out.push(0);
    out.push(8);
    let data = lzw(&indices);
    for block in data.chunks(255) {
        out.push(block.len() as u8);
        out.extend_from_slice(block);
    }
    out.push(0);
    out.push(0x3B);
    Ok(out)
}

/// GIF's variable-length LZW (minimum code size 8), codes packed least significant bit first;
/// the table is cleared when it reaches 4096 codes.
fn lzw(indices: &[u8]) -> Vec<u8> {
    const CLEAR: u16 = 256;
    const END: u16 = 257;
    let mut out = Vec::new();
    let (mut acc, mut nbits) = (0u32, 0u32);
    let mut put = |code: u16, size: u32, out: &mut Vec<u8>| {
        acc |= u32::from(code) << nbits;
        nbits += size;
        while nbits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            nbits -= 8;
        }
    };
    // (prefix code, next byte) → code.
    let mut table: std::collections::HashMap<(u16, u8), u16> = Default::default();
    let mut size = 9u32;
    let mut next = 258u16;
    put(CLEAR, size, &mut out);
    let mut iter = indices.iter();
    let Some(&first) = iter.next() else {
        put(END, size, &mut out);
        if nbits > 0 {
            out.push(acc as u8);
        }
        return out;
    };
    let mut current = u16::from(first);
    for &b in iter {
        if let Some(&code) = table.get(&(current, b)) {
            current = code;
            continue;
        }
        put(current, size, &mut out);
        if next < 4096 {
            // As the classic compress-derived encoders do (and decoders expect): codes widen
            // after the code that is written while the next code to assign needs the bit.
            if next >= (1 << size) && size < 12 {
                size += 1;
            }
            table.insert((current, b), next);
            next += 1;
        } else {
            // A full table starts again.
            put(CLEAR, size, &mut out);
            table.clear();
            size = 9;
            next = 258;
        }
        current = u16::from(b);
    }
    put(current, size, &mut out);
    put(END, size, &mut out);
    if nbits > 0 {
        out.push(acc as u8);
    }
    out
}

/// The image scaled to fit within `max_w × max_h` with its aspect ratio kept: area averaging
/// when shrinking, bilinear when enlarging (only with `enlarge`).
pub fn scale_to_fit(image: &Image, max_w: usize, max_h: usize, enlarge: bool) -> Image {
    let (w, h) = (image.width, image.height);
    if w == 0 || h == 0 || max_w == 0 || max_h == 0 {
        return image.clone();
    }
    let s = (max_w as f64 / w as f64).min(max_h as f64 / h as f64);
    if s >= 1.0 && !enlarge {
        return image.clone();
    }
    let nw = ((w as f64 * s).round() as usize).clamp(1, max_w);
    let nh = ((h as f64 * s).round() as usize).clamp(1, max_h);
    if (nw, nh) == (w, h) {
        return image.clone();
    }
    let ch = image.channels;
    let mut data = vec![0u8; nw * nh * ch];
    if nw <= w && nh <= h {
        // Each output pixel: the mean of the source pixels its area covers (whole pixels).
        for y in 0..nh {
            let (y0, y1) = (y * h / nh, ((y + 1) * h).div_ceil(nh).min(h));
            for x in 0..nw {
                let (x0, x1) = (x * w / nw, ((x + 1) * w).div_ceil(nw).min(w));
                let count = ((y1 - y0) * (x1 - x0)) as u32;
                for c in 0..ch {
                    let mut sum = 0u32;
                    for sy in y0..y1 {
                        let row = &image.data[sy * w * ch..(sy + 1) * w * ch];
                        for sx in x0..x1 {
                            sum += u32::from(row[sx * ch + c]);
                        }
                    }
                    data[(y * nw + x) * ch + c] = ((sum + count / 2) / count) as u8;
                }
            }
        }
    } else {
        for y in 0..nh {
            let fy = ((y as f64 + 0.5) * h as f64 / nh as f64 - 0.5).clamp(0.0, (h - 1) as f64);
            let (y0, ty) = (fy.floor() as usize, fy - fy.floor());
            let y1 = (y0 + 1).min(h - 1);
            for x in 0..nw {
                let fx = ((x as f64 + 0.5) * w as f64 / nw as f64 - 0.5).clamp(0.0, (w - 1) as f64);
                let (x0, tx) = (fx.floor() as usize, fx - fx.floor());
                let x1 = (x0 + 1).min(w - 1);
                for c in 0..ch {
                    let p = |xx: usize, yy: usize| f64::from(image.data[(yy * w + xx) * ch + c]);
                    let top = p(x0, y0) * (1.0 - tx) + p(x1, y0) * tx;
                    let bottom = p(x0, y1) * (1.0 - tx) + p(x1, y1) * tx;
                    data[(y * nw + x) * ch + c] =
                        (top * (1.0 - ty) + bottom * ty).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    Image {
        width: nw,
        height: nh,
        channels: ch,
        data,
    }
}
