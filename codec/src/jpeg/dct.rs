//! JPEG DCT sequential coding with Huffman tables (ISO/IEC 10918-1 processes 1, 2 and 4: the
//! baseline and extended processes), for 8- and 12-bit samples: the 12-bit JPEG Extended of
//! DICOM (1.2.840.10008.1.2.4.51), which neither dicom-rs nor jpeg-decoder decodes, and which no
//! Rust crate encodes.
//!
//! - **Decoding**: SOF0/SOF1, 8 or 12 bits, 1–4 components with any sampling factors,
//!   interleaved and non-interleaved scans, 8- or 16-bit quantization tables, restart
//!   intervals. Samples come out per component, upsampled to full size, interleaved; no colour
//!   conversion (the caller knows the Photometric Interpretation).
//! - **Encoding**: baseline (SOF0, 8 bits, the Annex K.3 Huffman tables, one pass) or extended
//!   (SOF1, 8 or 12 bits, Huffman tables optimized for each image per Annex K.2: the K.3
//!   tables only cover 8-bit categories); 1 or 3 components, colour converted RGB → YCbCr
//!   with 4:4:4 (YBR_FULL) or 4:2:2 (YBR_FULL_422) sampling; the Annex K quantization tables
//!   scaled by a quality like libjpeg's.
//!
//! The DCTs are the fast floating-point AAN ones (libjpeg's float DCT method), checked in the
//! tests against the definition (A.3.3); the decoder's output may differ by one from
//! libjpeg's integer IDCT, as ISO/IEC 10918-2 allows.
//!
//! One file for both directions on purpose: the DCTs, the quantization tables and the block
//! scan order are the hot loops both share, and the tests check encoder against decoder.

use super::huffman::{canonical_codes, category, optimal_table, BitWriter};
use crate::Error;

/// A stream that cannot be decoded, or an image that cannot be encoded.
fn bad(msg: impl std::fmt::Display) -> Error {
    Error::malformed("JPEG", msg)
}

fn err<T>(msg: impl std::fmt::Display) -> Result<T, Error> {
    Err(bad(msg))
}

/// A decoded image: `components` samples per pixel, interleaved, row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Samples per line.
    pub width: usize,
    /// Lines.
    pub height: usize,
    /// Components (samples per pixel).
    pub components: usize,
    /// Bits per sample: 8 or 12.
    pub precision: u8,
    /// The samples, component by component within each pixel.
    pub samples: Vec<u16>,
}

/// Natural order of the zig-zag sequence (Figure A.6): `ZIGZAG[k]` is the position in the
/// 8×8 block of the k-th coefficient.
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

#[cfg(test)]
/// `COS[x][u] = C(u)/2 · cos((2x+1)uπ/16)`, the 1-D DCT basis (A.3.3).
fn cos_table() -> [[f32; 8]; 8] {
    let mut t = [[0f32; 8]; 8];
    for (x, row) in t.iter_mut().enumerate() {
        for (u, v) in row.iter_mut().enumerate() {
            let c = if u == 0 {
                std::f64::consts::FRAC_1_SQRT_2
            } else {
                1.0
            };
            *v = (c / 2.0 * (((2 * x + 1) * u) as f64 * std::f64::consts::PI / 16.0).cos()) as f32;
        }
    }
    t
}

#[cfg(test)]
/// 8×8 inverse DCT of `coef` (natural order) into `out`.
fn idct(coef: &[f32; 64], cos: &[[f32; 8]; 8], out: &mut [f32; 64]) {
    let mut tmp = [0f32; 64];
    for v in 0..8 {
        for x in 0..8 {
            let mut s = 0.0;
            for u in 0..8 {
                s += cos[x][u] * coef[v * 8 + u];
            }
            tmp[v * 8 + x] = s;
        }
    }
    for x in 0..8 {
        for y in 0..8 {
            let mut s = 0.0;
            for v in 0..8 {
                s += cos[y][v] * tmp[v * 8 + x];
            }
            out[y * 8 + x] = s;
        }
    }
}

#[cfg(test)]
/// 8×8 forward DCT of level-shifted samples `px` into `out` (natural order).
fn fdct(px: &[f32; 64], cos: &[[f32; 8]; 8], out: &mut [f32; 64]) {
    let mut tmp = [0f32; 64];
    for y in 0..8 {
        for u in 0..8 {
            let mut s = 0.0;
            for x in 0..8 {
                s += cos[x][u] * px[y * 8 + x];
            }
            tmp[y * 8 + u] = s;
        }
    }
    for u in 0..8 {
        for v in 0..8 {
            let mut s = 0.0;
            for y in 0..8 {
                s += cos[y][v] * tmp[y * 8 + u];
            }
            out[v * 8 + u] = s;
        }
    }
}

/// The AAN scale factors: `AAN[0] = 1`, `AAN[k] = cos(kπ/16)·√2`.
fn aan_scales() -> [f32; 8] {
    let mut a = [1f32; 8];
    for (k, v) in a.iter_mut().enumerate().skip(1) {
        *v = ((k as f64 * std::f64::consts::PI / 16.0).cos() * std::f64::consts::SQRT_2) as f32;
    }
    a
}

/// The forward AAN butterfly (Arai, Agui and Nakajima, as in libjpeg's jfdctflt.c) down
/// each of the eight columns of `d` at once, lane by lane (so the compiler vectorizes it);
/// the scale it leaves is stated at [`fdct_aan`] and checked against the definition in the
/// tests.
#[inline(always)]
fn aan_fwd_cols(d: &mut [f32; 64]) {
    for i in 0..8 {
        let (d0, d1, d2, d3) = (d[i], d[8 + i], d[16 + i], d[24 + i]);
        let (d4, d5, d6, d7) = (d[32 + i], d[40 + i], d[48 + i], d[56 + i]);
        let (t0, t7) = (d0 + d7, d0 - d7);
        let (t1, t6) = (d1 + d6, d1 - d6);
        let (t2, t5) = (d2 + d5, d2 - d5);
        let (t3, t4) = (d3 + d4, d3 - d4);
        let (t10, t13) = (t0 + t3, t0 - t3);
        let (t11, t12) = (t1 + t2, t1 - t2);
        d[i] = t10 + t11;
        d[32 + i] = t10 - t11;
        let z1 = (t12 + t13) * 0.707_106_77;
        d[16 + i] = t13 + z1;
        d[48 + i] = t13 - z1;
        let t10 = t4 + t5;
        let t11 = t5 + t6;
        let t12 = t6 + t7;
        let z5 = (t10 - t12) * 0.382_683_43;
        let z2 = 0.541_196_1 * t10 + z5;
        let z4 = 1.306_563 * t12 + z5;
        let z3 = t11 * 0.707_106_77;
        let z11 = t7 + z3;
        let z13 = t7 - z3;
        d[40 + i] = z13 + z2;
        d[24 + i] = z13 - z2;
        d[8 + i] = z11 + z4;
        d[56 + i] = z11 - z4;
    }
}

#[inline(always)]
fn transpose(d: &mut [f32; 64]) {
    for r in 0..8 {
        for c in r + 1..8 {
            d.swap(r * 8 + c, c * 8 + r);
        }
    }
}

/// Fast forward DCT, in place: `d` becomes the A.3.3 coefficients times
/// `8·AAN[u]·AAN[v]` (the quantizer divides that back out).
#[inline(always)]
fn fdct_aan(d: &mut [f32; 64]) {
    aan_fwd_cols(d);
    transpose(d);
    aan_fwd_cols(d);
    transpose(d);
}

/// The inverse AAN butterfly (libjpeg's jidctflt.c) down each column of `d`, lane by lane.
#[inline(always)]
fn aan_inv_cols(d: &mut [f32; 64]) {
    for i in 0..8 {
        let (t0, t1, t2, t3) = (d[i], d[16 + i], d[32 + i], d[48 + i]);
        let t10 = t0 + t2;
        let t11 = t0 - t2;
        let t13 = t1 + t3;
        let t12 = (t1 - t3) * std::f32::consts::SQRT_2 - t13;
        let (t0, t3) = (t10 + t13, t10 - t13);
        let (t1, t2) = (t11 + t12, t11 - t12);
        let (t4, t5, t6, t7) = (d[8 + i], d[24 + i], d[40 + i], d[56 + i]);
        let z13 = t6 + t5;
        let z10 = t6 - t5;
        let z11 = t4 + t7;
        let z12 = t4 - t7;
        let t7 = z11 + z13;
        let t11 = (z11 - z13) * std::f32::consts::SQRT_2;
        let z5 = (z10 + z12) * 1.847_759;
        let t10 = z5 - z12 * 1.082_392_2;
        let t12 = z5 - z10 * 2.613_126;
        let t6 = t12 - t7;
        let t5 = t11 - t6;
        let t4 = t10 - t5;
        d[i] = t0 + t7;
        d[56 + i] = t0 - t7;
        d[8 + i] = t1 + t6;
        d[48 + i] = t1 - t6;
        d[16 + i] = t2 + t5;
        d[40 + i] = t2 - t5;
        d[24 + i] = t3 + t4;
        d[32 + i] = t3 - t4;
    }
}

/// Fast inverse DCT, in place: `d` holds the coefficients times `AAN[u]·AAN[v]` (the
/// dequantizer multiplies that in) and becomes eight times the samples.
fn idct_aan(d: &mut [f32; 64]) {
    aan_inv_cols(d);
    transpose(d);
    aan_inv_cols(d);
    transpose(d);
}

/// Rounds to the nearest integer (ties to even) with the 1.5·2²³ trick: plain float and
/// integer operations that vectorize, where `as i32` saturates and checks for NaN, and
/// `f32::round` is a library call on x86-64 without SSE4.1. Inputs are clamped to ±2²², where
/// the trick is exact (hostile streams can produce anything).
#[inline(always)]
fn round(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    let v = v.clamp(-4_194_304.0, 4_194_304.0);
    ((v + MAGIC).to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32)
}

// ===== Huffman tables =====

/// A Huffman table for decoding (Annex C and F.2.2.3), with an 8-bit lookahead.
#[derive(Clone)]
struct DecodeTable {
    /// For each 8-bit prefix: (code length, symbol), length 0 when longer than 8.
    fast: Vec<(u8, u8)>,
    maxcode: [i32; 18],
    valptr: [i32; 17],
    mincode: [i32; 17],
    values: Vec<u8>,
}

impl DecodeTable {
    fn new(bits: &[u8; 16], values: Vec<u8>) -> Result<DecodeTable, Error> {
        let total: usize = bits.iter().map(|&b| usize::from(b)).sum();
        if total != values.len() || total > 256 {
            return err("a Huffman table with inconsistent counts");
        }
        let mut maxcode = [-1i32; 18];
        let mut valptr = [0i32; 17];
        let mut mincode = [0i32; 17];
        let mut fast = vec![(0u8, 0u8); 256];
        let mut code = 0i32;
        let mut k = 0usize;
        for len in 1..=16usize {
            let n = usize::from(bits[len - 1]);
            valptr[len] = k as i32;
            mincode[len] = code;
            for _ in 0..n {
                if code >= (1 << len) {
                    return err("a Huffman table that overflows its code space");
                }
                if len <= 8 {
                    let shift = 8 - len;
                    let base = (code as usize) << shift;
                    for e in &mut fast[base..base + (1 << shift)] {
                        *e = (len as u8, values[k]);
                    }
                }
                code += 1;
                k += 1;
            }
            maxcode[len] = if n > 0 { code - 1 } else { -1 };
            code <<= 1;
        }
        maxcode[17] = i32::MAX;
        Ok(DecodeTable {
            fast,
            maxcode,
            valptr,
            mincode,
            values,
        })
    }
}

/// Bits from entropy-coded data: 0xFF00 is a 0xFF byte; a marker ends the data (zeros are
/// read after it, F.2.2.5), and is left for the caller.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
    marker: Option<u8>,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader {
            data,
            pos,
            acc: 0,
            n: 0,
            marker: None,
        }
    }

    fn fill(&mut self) {
        while self.n <= 56 {
            let mut byte = 0u8;
            if self.marker.is_none() && self.pos < self.data.len() {
                byte = self.data[self.pos];
                if byte == 0xFF {
                    let next = self.data.get(self.pos + 1).copied().unwrap_or(0xD9);
                    if next == 0 {
                        self.pos += 2;
                    } else {
                        self.marker = Some(next);
                        byte = 0;
                    }
                } else {
                    self.pos += 1;
                }
            }
            self.acc |= u64::from(byte) << (56 - self.n);
            self.n += 8;
        }
    }

    fn peek(&mut self, bits: u32) -> u32 {
        if self.n < bits {
            self.fill();
        }
        (self.acc >> (64 - bits)) as u32
    }

    fn consume(&mut self, bits: u32) {
        self.acc <<= bits;
        self.n -= bits;
    }

    fn bits(&mut self, bits: u32) -> u32 {
        if bits == 0 {
            return 0;
        }
        let v = self.peek(bits);
        self.consume(bits);
        v
    }

    fn decode(&mut self, t: &DecodeTable) -> Result<u8, Error> {
        let (len, sym) = t.fast[self.peek(8) as usize];
        if len > 0 {
            self.consume(u32::from(len));
            return Ok(sym);
        }
        let mut code = self.bits(8) as i32;
        for len in 9..=16usize {
            code = (code << 1) | self.bits(1) as i32;
            if code <= t.maxcode[len] {
                let i = t.valptr[len] + code - t.mincode[len];
                return t
                    .values
                    .get(i as usize)
                    .copied()
                    .ok_or_else(|| bad("a Huffman code outside its table"));
            }
        }
        err("an invalid Huffman code")
    }

    /// Receive and extend (F.2.2.1): `s` bits as a signed value.
    fn receive_extend(&mut self, s: u8) -> i32 {
        if s == 0 {
            return 0;
        }
        let v = self.bits(u32::from(s)) as i32;
        if v < (1 << (s - 1)) {
            v - (1 << s) + 1
        } else {
            v
        }
    }

    /// Skips to after the next RSTm marker (restart interval end), resetting the bits.
    fn restart(&mut self) -> Result<(), Error> {
        self.acc = 0;
        self.n = 0;
        if self.marker.is_none() {
            // Padding bits are ones up to the marker.
            while self.pos + 1 < self.data.len()
                && !(self.data[self.pos] == 0xFF && self.data[self.pos + 1] != 0)
            {
                self.pos += 1;
            }
            self.marker = self.data.get(self.pos + 1).copied();
        }
        match self.marker {
            Some(m @ 0xD0..=0xD7) => {
                let _ = m;
                self.pos += 2;
                self.marker = None;
                Ok(())
            }
            _ => err("a restart marker is missing"),
        }
    }
}

// ===== decoding =====

#[derive(Clone, Default)]
struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Blocks per line and per column, padded to whole MCUs of an interleaved scan.
    bw: usize,
    bh: usize,
    /// Decoded samples, `bw * 8` per line.
    plane: Vec<f32>,
}

fn be16(d: &[u8], at: usize) -> Result<usize, Error> {
    match d.get(at..at + 2) {
        Some(b) => Ok(usize::from(u16::from_be_bytes([b[0], b[1]]))),
        None => err("truncated stream"),
    }
}

/// Decodes a sequential Huffman DCT JPEG stream (SOF0 or SOF1, 8 or 12 bits).
pub fn decode(data: &[u8]) -> Result<Image, Error> {
    decode_limited(data, 1 << 28)
}

/// [`decode`], refusing (before allocating anything for it) a frame header that announces more
/// than `max_samples` samples (width × height × components): a caller that knows the image's
/// size from elsewhere (DICOM's Rows, Columns and Samples per Pixel) passes it, so a crafted
/// header cannot make it allocate more.
pub fn decode_limited(data: &[u8], max_samples: usize) -> Result<Image, Error> {
    if data.get(..2) != Some(&[0xFF, 0xD8][..]) {
        return err("not a JPEG stream (no SOI)");
    }
    let mut qt: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc: [Option<DecodeTable>; 4] = [None, None, None, None];
    let mut ac: [Option<DecodeTable>; 4] = [None, None, None, None];
    let mut comps: Vec<Component> = Vec::new();
    let (mut width, mut height, mut precision) = (0usize, 0usize, 0u8);
    let (mut hmax, mut vmax) = (1usize, 1usize);
    let mut restart_interval = 0usize;
    let mut pos = 2;
    let mut frame_seen = false;
    let mut scans = 0;
    loop {
        // Markers may be preceded by fill bytes (B.1.1.2).
        while data.get(pos) == Some(&0xFF) && data.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if data.get(pos) != Some(&0xFF) {
            return err(format!("a marker expected at byte {pos}"));
        }
        let marker = *data.get(pos + 1).ok_or_else(|| bad("truncated stream"))?;
        pos += 2;
        if marker == 0xD9 {
            break;
        }
        let len = be16(data, pos)?;
        let seg = data
            .get(pos + 2..pos + len)
            .ok_or_else(|| bad("a segment runs past the end"))?;
        match marker {
            0xDB => {
                let mut s = seg;
                while !s.is_empty() {
                    let (pq, tq) = (s[0] >> 4, usize::from(s[0] & 15));
                    let n = if pq == 0 { 64 } else { 128 };
                    if tq > 3 || s.len() < 1 + n {
                        return err("a bad quantization table");
                    }
                    let mut t = [0u16; 64];
                    for (k, v) in t.iter_mut().enumerate() {
                        *v = if pq == 0 {
                            u16::from(s[1 + k])
                        } else {
                            u16::from_be_bytes([s[1 + 2 * k], s[2 + 2 * k]])
                        };
                    }
                    qt[tq] = Some(t);
                    s = &s[1 + n..];
                }
            }
            0xC4 => {
                let mut s = seg;
                while !s.is_empty() {
                    if s.len() < 17 {
                        return err("a truncated Huffman table");
                    }
                    let (tc, th) = (s[0] >> 4, usize::from(s[0] & 15));
                    let mut bits = [0u8; 16];
                    bits.copy_from_slice(&s[1..17]);
                    let n: usize = bits.iter().map(|&b| usize::from(b)).sum();
                    let values = s
                        .get(17..17 + n)
                        .ok_or_else(|| bad("a truncated Huffman table"))?
                        .to_vec();
                    if th > 3 || tc > 1 {
                        return err("a bad Huffman table class or id");
                    }
                    let t = DecodeTable::new(&bits, values)?;
                    if tc == 0 {
                        dc[th] = Some(t);
                    } else {
                        ac[th] = Some(t);
                    }
                    s = &s[17 + n..];
                }
            }
            0xC0 | 0xC1 => {
                if seg.len() < 6 || frame_seen {
                    return err("a bad frame header");
                }
                frame_seen = true;
                precision = seg[0];
                height = be16(seg, 1)?;
                width = be16(seg, 3)?;
                let nf = usize::from(seg[5]);
                if !matches!(precision, 8 | 12) || width == 0 || height == 0 {
                    return err(format!(
                        "a {precision}-bit {width}×{height} frame is not decodable here"
                    ));
                }
                if nf == 0 || nf > 4 || seg.len() < 6 + 3 * nf {
                    return err("a bad component count");
                }
                for c in 0..nf {
                    let b = &seg[6 + 3 * c..9 + 3 * c];
                    let (h, v) = (usize::from(b[1] >> 4), usize::from(b[1] & 15));
                    if !(1..=4).contains(&h) || !(1..=4).contains(&v) || b[2] > 3 {
                        return err("bad sampling factors or table");
                    }
                    comps.push(Component {
                        id: b[0],
                        h,
                        v,
                        tq: usize::from(b[2]),
                        ..Component::default()
                    });
                }
                hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
                vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
                let mcux = width.div_ceil(8 * hmax);
                let mcuy = height.div_ceil(8 * vmax);
                // In u64: on wasm32 these products overflow usize.
                let samples = (width as u64) * (height as u64) * (nf as u64);
                let planes = (mcux as u64) * (mcuy as u64) * 64 * (hmax * vmax * nf) as u64;
                if samples > max_samples as u64 || planes > 1 << 30 {
                    return err(format!(
                        "a {width}×{height}×{nf} frame header: more than the {max_samples} samples expected"
                    ));
                }
                for c in &mut comps {
                    c.bw = mcux * c.h;
                    c.bh = mcuy * c.v;
                    c.plane = vec![0.0; c.bw * c.bh * 64];
                }
            }
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return err(format!(
                    "SOF{} streams (progressive, lossless, hierarchical or arithmetic) are not decoded here",
                    marker - 0xC0
                ));
            }
            0xDD => restart_interval = be16(seg, 0)?,
            0xDA => {
                if !frame_seen {
                    return err("a scan before the frame header");
                }
                let ns = usize::from(*seg.first().ok_or_else(|| bad("a bad scan"))?);
                if ns == 0 || ns > 4 || seg.len() < 1 + 2 * ns + 3 {
                    return err("a bad scan header");
                }
                let mut members = Vec::with_capacity(ns);
                for k in 0..ns {
                    let id = seg[1 + 2 * k];
                    let t = seg[2 + 2 * k];
                    let ci = comps
                        .iter()
                        .position(|c| c.id == id)
                        .ok_or_else(|| bad("a scan names an unknown component"))?;
                    members.push((ci, usize::from(t >> 4), usize::from(t & 15)));
                }
                // Ss, Se, Ah/Al are 0, 63, 0 in a sequential scan; some encoders write other
                // values. The frame header (SOF0/SOF1) says sequential, and the scan is read
                // as such, as libjpeg does (its warning JWRN_NOT_SEQUENTIAL, "Invalid SOS
                // parameters for sequential JPEG"), and so DCMTK and GDCM.
                let end = decode_scan(
                    data,
                    pos + len,
                    &mut comps,
                    &members,
                    (width, height, hmax, vmax),
                    &qt,
                    (&dc, &ac),
                    restart_interval,
                )?;
                scans += 1;
                pos = end;
                continue;
            }
            _ => {} // APPn, COM, DNL and the like: skipped
        }
        pos += len;
    }
    if scans == 0 {
        return err("no scan");
    }
    // Output: level shift, round, clamp; then chroma upsampled as libjpeg does by default
    // ("fancy", triangular: h2v1 and h2v2), which DCMTK, libjpeg-turbo and jpeg-decoder all
    // use, so that our colour matches theirs; other factors by replication.
    let max = (1i32 << precision) - 1;
    let shift = (1i32 << (precision - 1)) as f32;
    let nc = comps.len();
    let mut samples = vec![0u16; width * height * nc];
    for (ci, c) in comps.iter().enumerate() {
        let stride = c.bw * 8;
        // The component's own size (A.1.1): ceil(X × H / Hmax) by ceil(Y × V / Vmax).
        let (dw, dh) = ((width * c.h).div_ceil(hmax), (height * c.v).div_ceil(vmax));
        let at = |x: usize, y: usize| -> i32 {
            round(c.plane[y.min(dh - 1) * stride + x.min(dw - 1)] + shift).clamp(0, max)
        };
        let (fx, fy) = (hmax / c.h, vmax / c.v);
        let fancy = hmax % c.h == 0 && vmax % c.v == 0 && fx == 2 && (fy == 1 || fy == 2) && dw > 1;
        for y in 0..height {
            for x in 0..width {
                let v = if !fancy {
                    at(x * c.h / hmax, y * c.v / vmax)
                } else {
                    let sx = x / 2;
                    // Column sums (h2v2) or the samples themselves (h2v1), ×4 or ×1.
                    let col = |cx: usize| -> i32 {
                        if fy == 1 {
                            at(cx, y)
                        } else {
                            let sy = y / 2;
                            let other = if y % 2 == 0 {
                                sy.saturating_sub(1)
                            } else {
                                sy + 1
                            };
                            at(cx, sy) * 3 + at(cx, other)
                        }
                    };
                    let this = col(sx);
                    let first = sx == 0;
                    let last = sx + 1 >= dw;
                    match (fy, x % 2 == 0) {
                        // h2v1 (libjpeg's h2v1_fancy_upsample).
                        (1, true) if first => this,
                        (1, true) => (this * 3 + col(sx - 1) + 1) >> 2,
                        (1, false) if last => this,
                        (1, false) => (this * 3 + col(sx + 1) + 2) >> 2,
                        // h2v2 on column sums (h2v2_fancy_upsample).
                        (_, true) if first => (this * 4 + 8) >> 4,
                        (_, true) => (this * 3 + col(sx - 1) + 8) >> 4,
                        (_, false) if last => (this * 4 + 7) >> 4,
                        (_, false) => (this * 3 + col(sx + 1) + 7) >> 4,
                    }
                };
                samples[(y * width + x) * nc + ci] = v.clamp(0, max) as u16;
            }
        }
    }
    Ok(Image {
        width,
        height,
        components: nc,
        precision,
        samples,
    })
}

type Tables<'t> = (&'t [Option<DecodeTable>; 4], &'t [Option<DecodeTable>; 4]);

/// Decodes one scan starting at `pos`; returns the position of the marker after it.
#[allow(clippy::too_many_arguments)]
fn decode_scan(
    data: &[u8],
    pos: usize,
    comps: &mut [Component],
    members: &[(usize, usize, usize)],
    (width, height, hmax, vmax): (usize, usize, usize, usize),
    qt: &[Option<[u16; 64]>; 4],
    (dc, ac): Tables<'_>,
    restart_interval: usize,
) -> Result<usize, Error> {
    let mut r = BitReader::new(data, pos);
    let mut pred = vec![0i32; members.len()];
    let single = members.len() == 1;
    // A non-interleaved scan codes the component's own blocks (A.2.2), not whole MCUs.
    let (mcus_x, mcus_y) = if single {
        let c = &comps[members[0].0];
        (
            (width * c.h).div_ceil(hmax).div_ceil(8),
            (height * c.v).div_ceil(vmax).div_ceil(8),
        )
    } else {
        (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax))
    };
    let aan = aan_scales();
    let mut tables = Vec::with_capacity(members.len());
    for &(ci, td, ta) in members {
        let q = qt[comps[ci].tq].ok_or_else(|| bad("a missing quantization table"))?;
        // Dequantizers in zig-zag order with the fast IDCT's scale and its ×8 folded in.
        let mut q = q.map(f32::from);
        for (k, v) in q.iter_mut().enumerate() {
            let pos = ZIGZAG[k];
            *v *= aan[pos / 8] * aan[pos % 8] / 8.0;
        }
        // Table selectors are 4 bits in the scan header but only 0–3 exist (B.2.3).
        let d = dc
            .get(td)
            .and_then(Option::as_ref)
            .ok_or_else(|| bad("a missing DC table"))?;
        let a = ac
            .get(ta)
            .and_then(Option::as_ref)
            .ok_or_else(|| bad("a missing AC table"))?;
        tables.push((q, d, a));
    }
    let mut coef = [0f32; 64];
    let mut block = [0f32; 64];
    let total = mcus_x * mcus_y;
    for m in 0..total {
        if restart_interval > 0 && m > 0 && m % restart_interval == 0 {
            r.restart()?;
            pred.iter_mut().for_each(|p| *p = 0);
        }
        let (mx, my) = (m % mcus_x, m / mcus_x);
        for (k, &(ci, _, _)) in members.iter().enumerate() {
            let (q, d, a) = &tables[k];
            let (h, v) = if single {
                (1, 1)
            } else {
                (comps[ci].h, comps[ci].v)
            };
            for by in 0..v {
                for bx in 0..h {
                    coef.fill(0.0);
                    let t = r.decode(d)?;
                    if t > 16 {
                        return err("a DC category beyond 16 bits");
                    }
                    pred[k] += r.receive_extend(t);
                    coef[0] = pred[k] as f32 * q[0];
                    let mut z = 1;
                    while z < 64 {
                        let rs = r.decode(a)?;
                        let (run, s) = (usize::from(rs >> 4), rs & 15);
                        if s == 0 {
                            if run == 15 {
                                z += 16;
                                continue;
                            }
                            break;
                        }
                        z += run;
                        if z > 63 {
                            return err("AC coefficients past the block's end");
                        }
                        coef[ZIGZAG[z]] = r.receive_extend(s) as f32 * q[z];
                        z += 1;
                    }
                    block.copy_from_slice(&coef);
                    idct_aan(&mut block);
                    let c = &mut comps[ci];
                    let (x0, y0) = ((mx * h + bx) * 8, (my * v + by) * 8);
                    let stride = c.bw * 8;
                    if x0 < stride && y0 < c.bh * 8 {
                        for yy in 0..8 {
                            let row = (y0 + yy) * stride + x0;
                            c.plane[row..row + 8].copy_from_slice(&block[yy * 8..yy * 8 + 8]);
                        }
                    }
                }
            }
        }
    }
    // The next marker: where the reader stopped, after any padding.
    let mut p = r.pos;
    while p + 1 < data.len() && !(data[p] == 0xFF && data[p + 1] != 0 && data[p + 1] != 0xFF) {
        p += 1;
    }
    while p + 1 < data.len() && data[p] == 0xFF && data[p + 1] == 0xFF {
        p += 1;
    }
    if p + 1 >= data.len() {
        return err("the stream ends inside a scan");
    }
    Ok(p)
}

// ===== encoding =====

/// Annex K.1 luminance and chrominance quantization tables, in natural order.
const LUMA_Q: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];
const CHROMA_Q: [u16; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
];

/// A table scaled by `quality` (1–100) as libjpeg's `jpeg_quality_scaling` does.
fn scaled(table: &[u16; 64], quality: u8) -> [u16; 64] {
    let q = u32::from(quality.clamp(1, 100));
    let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
    let mut out = [0u16; 64];
    for (o, &t) in out.iter_mut().zip(table) {
        *o = ((u32::from(t) * scale + 50) / 100).clamp(1, 32767) as u16;
    }
    out
}

/// Annex K.3 Huffman tables (BITS, HUFFVAL): DC and AC, luminance and chrominance, for
/// baseline streams coded in one pass.
const STD_DC_LUMA: ([u8; 16], [u8; 12]) = (
    [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
);
const STD_DC_CHROMA: ([u8; 16], [u8; 12]) = (
    [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
);
const STD_AC_LUMA: ([u8; 16], [u8; 162]) = (
    [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d],
    [
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
        0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52,
        0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83,
        0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
        0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6,
        0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3,
        0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8,
        0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    ],
);
const STD_AC_CHROMA: ([u8; 16], [u8; 162]) = (
    [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
    [
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
        0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33,
        0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18,
        0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44,
        0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
        0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4,
        0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
        0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
        0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    ],
);

/// How to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// libjpeg's quality scale (1–100) applied to the Annex K quantization tables.
    pub quality: u8,
    /// Baseline (SOF0: 8 bits, the Annex K.3 Huffman tables, one pass) rather than extended
    /// sequential (SOF1: 8 or 12 bits, Huffman tables optimized for the image, two passes).
    pub baseline: bool,
    /// Colour with 4:2:2 chroma subsampling (YBR_FULL_422), else 4:4:4 (YBR_FULL).
    pub chroma_422: bool,
}

/// Samples to encode: bytes (8-bit) or words, `components` per pixel, interleaved.
#[derive(Debug, Clone, Copy)]
pub enum Samples<'a> {
    /// One byte per sample.
    Bytes(&'a [u8]),
    /// One word per sample.
    Words(&'a [u16]),
}

impl Samples<'_> {
    fn len(&self) -> usize {
        match self {
            Samples::Bytes(b) => b.len(),
            Samples::Words(w) => w.len(),
        }
    }
}

/// Level-shifted component blocks of one MCU, straight from the samples: luminance (or the
/// grey component) first, then Cb and Cr; colour converted RGB → YCbCr (JFIF equations) and,
/// for 4:2:2, chroma averaged over pixel pairs. Edges replicate the last column and row.
struct McuReader<'a> {
    samples: Samples<'a>,
    width: usize,
    height: usize,
    components: usize,
    sub: bool,
    shift: f32,
}

impl McuReader<'_> {
    /// Fills `out` for the MCU at (`mx`, `my`) and returns how many blocks it has.
    #[inline(always)]
    fn fill(&self, mx: usize, my: usize, out: &mut [[f32; 64]; 4]) -> usize {
        // One monomorphized body per sample type: no dispatch per sample.
        match self.samples {
            Samples::Bytes(b) => self.fill_with(|i| f32::from(b[i]), mx, my, out),
            Samples::Words(w) => self.fill_with(|i| f32::from(w[i]), mx, my, out),
        }
    }

    #[inline(always)]
    fn fill_with(
        &self,
        at: impl Fn(usize) -> f32,
        mx: usize,
        my: usize,
        out: &mut [[f32; 64]; 4],
    ) -> usize {
        let (w, h) = (self.width, self.height);
        let row = |y: usize| (y.min(h - 1)) * w;
        if self.components == 1 {
            let (x0, y0) = (mx * 8, my * 8);
            let b = &mut out[0];
            if x0 + 8 <= w {
                for yy in 0..8 {
                    let base = row(y0 + yy) + x0;
                    for xx in 0..8 {
                        b[yy * 8 + xx] = at(base + xx) - self.shift;
                    }
                }
            } else {
                for yy in 0..8 {
                    let base = row(y0 + yy);
                    for xx in 0..8 {
                        b[yy * 8 + xx] = at(base + (x0 + xx).min(w - 1)) - self.shift;
                    }
                }
            }
            return 1;
        }
        let ycc = |p: usize| -> (f32, f32, f32) {
            let (r, g, b) = (at(3 * p), at(3 * p + 1), at(3 * p + 2));
            (
                0.299 * r + 0.587 * g + 0.114 * b - self.shift,
                -0.168_736 * r - 0.331_264 * g + 0.5 * b,
                0.5 * r - 0.418_688 * g - 0.081_312 * b,
            )
        };
        if !self.sub {
            let (x0, y0) = (mx * 8, my * 8);
            for yy in 0..8 {
                let base = row(y0 + yy);
                for xx in 0..8 {
                    let (y, cb, cr) = ycc(base + (x0 + xx).min(w - 1));
                    out[0][yy * 8 + xx] = y;
                    out[1][yy * 8 + xx] = cb;
                    out[2][yy * 8 + xx] = cr;
                }
            }
            return 3;
        }
        let (x0, y0) = (mx * 16, my * 8);
        for yy in 0..8 {
            let base = row(y0 + yy);
            for xx in 0..8 {
                let (ya, cba, cra) = ycc(base + (x0 + 2 * xx).min(w - 1));
                let (yb, cbb, crb) = ycc(base + (x0 + 2 * xx + 1).min(w - 1));
                let (blk, at) = ((2 * xx) / 8, yy * 8 + (2 * xx) % 8);
                out[blk][at] = ya;
                out[blk][at + 1] = yb;
                out[2][yy * 8 + xx] = (cba + cbb) * 0.5;
                out[3][yy * 8 + xx] = (cra + crb) * 0.5;
            }
        }
        4
    }
}

/// Reads, transforms and quantizes one MCU into `out` (natural order), returning its block
/// count: the hot loop of encoding, compiled also for AVX2+FMA and chosen at run time (the
/// float DCT and the conversions vectorize 8 lanes wide there; `multiversion` dispatches
/// without `unsafe` in this crate).
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn quantize_mcu<'a>(
    reader: &McuReader<'a>,
    (mx, my): (usize, usize),
    recip: &[[f32; 64]],
    lim: f32,
    order: &[usize],
    blocks: &mut [[f32; 64]; 4],
    out: &mut [[i16; 64]; 4],
) -> usize {
    let n = reader.fill(mx, my, blocks);
    for ((b, &c), z) in blocks[..n].iter_mut().zip(order).zip(out.iter_mut()) {
        fdct_aan(b);
        let r = &recip[usize::from(c > 0)];
        for ((v, &x), &q) in z.iter_mut().zip(b.iter()).zip(r.iter()) {
            *v = round((x * q).clamp(-lim, lim)) as i16;
        }
    }
    n
}

/// The whole scan of a one-pass (baseline) encoding: every MCU read, transformed, quantized
/// and Huffman-coded, compiled also for AVX2+FMA (with BMI/LZCNT for the bit counting) and
/// chosen at run time.
#[multiversion::multiversion(targets("x86_64+avx2+fma+bmi1+bmi2+lzcnt"))]
#[allow(clippy::too_many_arguments)]
fn code_scan<'a>(
    reader: &McuReader<'a>,
    (mcux, mcuy): (usize, usize),
    recip: &[[f32; 64]],
    lim: f32,
    order: &[usize],
    codes: &[[(u16, u8); 256]],
    w: &mut BitWriter,
) {
    let mut blocks = [[0f32; 64]; 4];
    let mut pred = [0i32; 3];
    for my in 0..mcuy {
        for mx in 0..mcux {
            let n = reader.fill(mx, my, &mut blocks);
            for (b, &c) in blocks[..n].iter_mut().zip(order) {
                let t = usize::from(c > 0);
                fdct_aan(b);
                let mut z = [0i16; 64];
                for ((v, &x), &q) in z.iter_mut().zip(b.iter()).zip(recip[t].iter()) {
                    *v = round((x * q).clamp(-lim, lim)) as i16;
                }
                emit_block(w, &z, &mut pred[c], &codes[2 * t], &codes[2 * t + 1]);
            }
        }
    }
}

/// Huffman-codes one quantized block (natural order) against the DC predictor `pred`.
#[inline(always)]
fn emit_block(
    w: &mut BitWriter,
    z: &[i16; 64],
    pred: &mut i32,
    dcc: &[(u16, u8); 256],
    acc: &[(u16, u8); 256],
) {
    // Zig-zag order, then the non-zero AC coefficients as bits (a contiguous, vectorizable
    // loop): runs of zeros are skipped by counting trailing zeros.
    let mut zz = [0i16; 64];
    for (d, &pos) in zz.iter_mut().zip(ZIGZAG.iter()) {
        *d = z[pos];
    }
    let dc = i32::from(zz[0]);
    let diff = dc - *pred;
    *pred = dc;
    let s = category(diff);
    let (code, len) = dcc[usize::from(s)];
    w.put(u32::from(code), len);
    w.put((if diff < 0 { diff - 1 } else { diff }) as u32, s);
    let mut mask = 0u64;
    for (k, &v) in zz.iter().enumerate() {
        mask |= u64::from(v != 0) << k;
    }
    mask &= !1;
    let mut last = 0usize;
    while mask != 0 {
        let k = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        let mut run = k - last - 1;
        while run > 15 {
            let (code, len) = acc[0xF0];
            w.put(u32::from(code), len);
            run -= 16;
        }
        let v = i32::from(zz[k]);
        let s = category(v);
        let (code, len) = acc[(run << 4) | usize::from(s)];
        w.put(u32::from(code), len);
        w.put((if v < 0 { v - 1 } else { v }) as u32, s);
        last = k;
    }
    if last < 63 {
        let (code, len) = acc[0];
        w.put(u32::from(code), len);
    }
}

/// Encodes `samples` (`components` per pixel, interleaved; RGB when 3, coded as YCbCr) as a
/// sequential DCT stream of `precision` (8 or 12) bits.
pub fn encode(
    samples: Samples<'_>,
    width: usize,
    height: usize,
    components: usize,
    precision: u8,
    opts: EncodeOptions,
) -> Result<Vec<u8>, Error> {
    if !matches!(precision, 8 | 12) || (opts.baseline && precision != 8) {
        return err(format!(
            "{precision}-bit samples (8{} here)",
            if opts.baseline {
                " for baseline"
            } else {
                " or 12"
            }
        ));
    }
    if !matches!(components, 1 | 3) {
        return err(format!("{components} components (1 or 3 here)"));
    }
    if width == 0 || height == 0 || width > 65535 || height > 65535 {
        return err(format!("a {width}×{height} image"));
    }
    if samples.len() != width * height * components {
        return err("the sample count does not match the image size");
    }
    let max = (1u16 << precision) - 1;
    let too_big = match samples {
        Samples::Bytes(_) => precision < 8,
        Samples::Words(w) => w.iter().any(|&v| v > max),
    };
    if too_big {
        return err(format!("a sample beyond {precision} bits"));
    }
    let sub = components == 3 && opts.chroma_422;
    let hmax = if sub { 2 } else { 1 };
    let reader = McuReader {
        samples,
        width,
        height,
        components,
        sub,
        shift: f32::from(1u16 << (precision - 1)),
    };
    let mut tables = [
        scaled(&LUMA_Q, opts.quality),
        scaled(&CHROMA_Q, opts.quality),
    ];
    if opts.baseline {
        // Baseline quantization tables have 8-bit entries (B.2.4.1).
        for t in &mut tables {
            t.iter_mut().for_each(|v| *v = (*v).min(255));
        }
    }
    let aan = aan_scales();
    // Quantizer reciprocals in natural order, with the fast DCT's scale folded in.
    let recip: Vec<[f32; 64]> = tables
        .iter()
        .map(|t| {
            let mut r = [0f32; 64];
            for (pos, v) in r.iter_mut().enumerate() {
                *v = 1.0 / (f32::from(t[pos]) * aan[pos / 8] * aan[pos % 8] * 8.0);
            }
            r
        })
        .collect();
    let lim = if precision == 8 { 1023.0 } else { 16383.0 };
    let (mcux, mcuy) = (width.div_ceil(8 * hmax), height.div_ceil(8));
    // Component of each block of an MCU.
    let order: &[usize] = match (components, sub) {
        (1, _) => &[0],
        (_, false) => &[0, 1, 2],
        (_, true) => &[0, 0, 1, 2],
    };
    let mut blocks = [[0f32; 64]; 4];
    // Quantized coefficients in natural order; the coders read them in zig-zag order.
    let mut quantized = [[0i16; 64]; 4];
    let nt = if components == 1 { 1 } else { 2 };
    let mut coefs: Vec<[i16; 64]> = Vec::new();
    let huff: Vec<([u8; 16], Vec<u8>)> = if opts.baseline {
        let mut v = vec![
            (STD_DC_LUMA.0, STD_DC_LUMA.1.to_vec()),
            (STD_AC_LUMA.0, STD_AC_LUMA.1.to_vec()),
        ];
        if nt == 2 {
            v.push((STD_DC_CHROMA.0, STD_DC_CHROMA.1.to_vec()));
            v.push((STD_AC_CHROMA.0, STD_AC_CHROMA.1.to_vec()));
        }
        v
    } else {
        // First pass: the quantized blocks and their symbol counts, for optimal tables.
        coefs.reserve(mcux * mcuy * order.len());
        let mut freq = vec![[0u64; 256]; 2 * nt];
        let mut pred = [0i32; 3];
        for my in 0..mcuy {
            for mx in 0..mcux {
                let n = quantize_mcu(
                    &reader,
                    (mx, my),
                    &recip,
                    lim,
                    order,
                    &mut blocks,
                    &mut quantized,
                );
                for (z, &c) in quantized[..n].iter().zip(order) {
                    let t = usize::from(c > 0);
                    let dc = i32::from(z[0]);
                    freq[2 * t][usize::from(category(dc - pred[c]))] += 1;
                    pred[c] = dc;
                    let mut run = 0;
                    for &pos in &ZIGZAG[1..] {
                        let v = z[pos];
                        if v == 0 {
                            run += 1;
                            continue;
                        }
                        while run > 15 {
                            freq[2 * t + 1][0xF0] += 1;
                            run -= 16;
                        }
                        freq[2 * t + 1][(run << 4) | usize::from(category(i32::from(v)))] += 1;
                        run = 0;
                    }
                    if run > 0 {
                        freq[2 * t + 1][0] += 1;
                    }
                    coefs.push(*z);
                }
            }
        }
        freq.iter().map(|f| optimal_table(f)).collect()
    };
    let codes: Vec<[(u16, u8); 256]> = huff.iter().map(|(b, v)| canonical_codes(b, v)).collect();

    let mut out = Vec::with_capacity(width * height * components / 8 + 1024);
    out.extend_from_slice(&[0xFF, 0xD8]);
    // DQT: 16-bit entries where a value needs them (B.2.4.1; never for baseline, whose
    // tables were capped at 255 above).
    for (id, t) in tables.iter().enumerate().take(nt) {
        let wide = t.iter().any(|&v| v > 255);
        let len = 2 + 1 + if wide { 128 } else { 64 };
        out.extend_from_slice(&[0xFF, 0xDB]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.push((u8::from(wide) << 4) | id as u8);
        for &pos in &ZIGZAG {
            if wide {
                out.extend_from_slice(&t[pos].to_be_bytes());
            } else {
                out.push(t[pos] as u8);
            }
        }
    }
    out.extend_from_slice(&[0xFF, if opts.baseline { 0xC0 } else { 0xC1 }]);
    out.extend_from_slice(&((8 + 3 * components) as u16).to_be_bytes());
    out.push(precision);
    out.extend_from_slice(&(height as u16).to_be_bytes());
    out.extend_from_slice(&(width as u16).to_be_bytes());
    out.push(components as u8);
    for c in 0..components {
        let h = if c == 0 { hmax as u8 } else { 1 };
        out.extend_from_slice(&[c as u8 + 1, (h << 4) | 1, u8::from(c > 0)]);
    }
    for (k, (bits, values)) in huff.iter().enumerate() {
        out.extend_from_slice(&[0xFF, 0xC4]);
        out.extend_from_slice(&((2 + 1 + 16 + values.len()) as u16).to_be_bytes());
        out.push((((k % 2) as u8) << 4) | (k / 2) as u8);
        out.extend_from_slice(bits);
        out.extend_from_slice(values);
    }
    out.extend_from_slice(&[0xFF, 0xDA]);
    out.extend_from_slice(&((6 + 2 * components) as u16).to_be_bytes());
    out.push(components as u8);
    for c in 0..components {
        let t = u8::from(c > 0);
        out.extend_from_slice(&[c as u8 + 1, (t << 4) | t]);
    }
    out.extend_from_slice(&[0, 63, 0]);
    let mut w = BitWriter::new(out);
    let mut pred = [0i32; 3];
    if opts.baseline {
        // One pass: each MCU is transformed, quantized and coded as it is read.
        code_scan(&reader, (mcux, mcuy), &recip, lim, order, &codes, &mut w);
    } else {
        for (z, &c) in coefs.iter().zip(order.iter().cycle()) {
            let t = usize::from(c > 0);
            emit_block(&mut w, z, &mut pred[c], &codes[2 * t], &codes[2 * t + 1]);
        }
    }
    let mut out = w.finish();
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame header announcing more samples than the caller expects is refused before
    /// anything is allocated for it (a 16×16 image whose SOF says 65535×65535 would otherwise
    /// take 16 GiB of coefficient planes).
    #[test]
    fn a_frame_header_larger_than_expected_is_refused_before_allocating() {
        let samples = vec![100u8; 16 * 16];
        let opts = EncodeOptions {
            quality: 90,
            baseline: true,
            chroma_422: false,
        };
        let good = encode(Samples::Bytes(&samples), 16, 16, 1, 8, opts).expect("encode");
        let mut stream = good.clone();
        let sof = stream
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("SOF0");
        stream[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        let e = decode_limited(&stream, 16 * 16).expect_err("refused");
        assert!(e.to_string().contains("65535×65535×1"), "{e}");
        let ok = decode_limited(&good, 16 * 16).expect("the expected size decodes");
        assert_eq!((ok.width, ok.height), (16, 16));
    }

    fn image(w: usize, h: usize, c: usize, bits: u8) -> Vec<u16> {
        let max = (1u32 << bits) - 1;
        (0..w * h * c)
            .map(|i| {
                let (p, k) = (i / c, i % c);
                let (x, y) = (p % w, p / w);
                // smooth with a little texture, so lossy coding stays close
                let v = (x * 37 + y * 23 + k * 400) as f64 / ((w + h) as f64 * 40.0)
                    * f64::from(max)
                    + ((x * 7 + y * 3) % 5) as f64;
                (v as u32).min(max) as u16
            })
            .collect()
    }

    fn psnr(a: &[u16], b: &[u16], bits: u8) -> f64 {
        let mse = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum::<f64>()
            / a.len() as f64;
        let peak = f64::from((1u32 << bits) - 1);
        10.0 * (peak * peak / mse.max(1e-12)).log10()
    }

    #[test]
    fn round_trips_within_40_db_at_8_and_12_bits_grey_and_colour() {
        for (w, h, c, bits) in [
            (64, 48, 1, 12),
            (33, 17, 1, 12),
            (1, 1, 1, 12),
            (40, 24, 3, 8),
            (17, 9, 3, 12),
            (64, 64, 1, 8),
        ] {
            let s = image(w, h, c, bits);
            let opts = EncodeOptions {
                quality: 90,
                baseline: bits == 8 && w % 2 == 0,
                chroma_422: c == 3 && bits == 8,
            };
            let enc = encode(Samples::Words(&s), w, h, c, bits, opts).expect("encodes");
            assert_eq!(&enc[..2], &[0xFF, 0xD8]);
            let d = decode(&enc).expect("decodes");
            assert_eq!(
                (d.width, d.height, d.components, d.precision),
                (w, h, c, bits)
            );
            if c == 1 {
                let p = psnr(&s, &d.samples, bits);
                assert!(p > 40.0, "{w}×{h}×{c} {bits}: {p:.1} dB");
            }
        }
    }

    #[test]
    fn fast_dcts_equal_the_definition() {
        let cos = cos_table();
        let aan = aan_scales();
        let mut seed = 12345u32;
        for _ in 0..50 {
            let mut px = [0f32; 64];
            for v in &mut px {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *v = (seed >> 16) as f32 % 4096.0 - 2048.0;
            }
            let mut want = [0f32; 64];
            fdct(&px, &cos, &mut want);
            let mut fast = px;
            fdct_aan(&mut fast);
            for k in 0..64 {
                let got = fast[k] / (8.0 * aan[k / 8] * aan[k % 8]);
                assert!(
                    (got - want[k]).abs() < 0.05,
                    "fdct {k}: {got} vs {}",
                    want[k]
                );
            }
            // And back: the definition's coefficients through the fast inverse.
            let mut back = [0f32; 64];
            idct(&want, &cos, &mut back);
            let mut inv = [0f32; 64];
            for k in 0..64 {
                inv[k] = want[k] * aan[k / 8] * aan[k % 8];
            }
            idct_aan(&mut inv);
            for k in 0..64 {
                assert!((inv[k] / 8.0 - back[k]).abs() < 0.05, "idct {k}");
                assert!((back[k] - px[k]).abs() < 0.05, "round trip {k}");
            }
        }
    }

    #[test]
    fn the_annex_k3_tables_code_every_8_bit_symbol() {
        let mut ac: Vec<u8> = vec![0x00, 0xF0];
        for run in 0..16u8 {
            for size in 1..=10u8 {
                ac.push((run << 4) | size);
            }
        }
        ac.sort_unstable();
        for (bits, values) in [STD_AC_LUMA, STD_AC_CHROMA] {
            assert_eq!(bits.iter().map(|&b| usize::from(b)).sum::<usize>(), 162);
            let mut v = values.to_vec();
            v.sort_unstable();
            assert_eq!(v, ac);
            assert!(DecodeTable::new(&bits, values.to_vec()).is_ok());
        }
        for (bits, values) in [STD_DC_LUMA, STD_DC_CHROMA] {
            assert_eq!(bits.iter().map(|&b| usize::from(b)).sum::<usize>(), 12);
            assert_eq!(values.to_vec(), (0..12).collect::<Vec<u8>>());
            assert!(DecodeTable::new(&bits, values.to_vec()).is_ok());
        }
    }

    #[test]
    fn huffman_tables_are_prefix_codes_within_16_bits() {
        let mut freq = [0u64; 256];
        for (i, f) in freq.iter_mut().enumerate() {
            *f = 1 + (i as u64 * 7919) % 1000; // every symbol used: lengths must be limited
        }
        freq[0] = 1 << 40;
        let (bits, values) = optimal_table(&freq);
        assert_eq!(values.len(), 256);
        assert_eq!(bits.iter().map(|&b| usize::from(b)).sum::<usize>(), 256);
        // Kraft: the codes fit, with the all-ones code left out.
        let kraft: f64 = bits
            .iter()
            .enumerate()
            .map(|(l, &n)| f64::from(n) / f64::from(1u32 << (l + 1)))
            .sum();
        assert!(kraft < 1.0, "{kraft}");
        let codes = canonical_codes(&bits, &values);
        assert!(codes
            .iter()
            .all(|&(c, l)| l <= 16 && u32::from(c) < (1 << l) - 1));
    }

    #[test]
    fn hostile_streams_are_errors() {
        assert!(decode(b"").is_err());
        assert!(decode(b"\xFF\xD8\xFF\xD9").is_err());
        let s = image(16, 16, 1, 12);
        let ext = EncodeOptions {
            quality: 90,
            baseline: false,
            chroma_422: false,
        };
        let enc = encode(Samples::Words(&s), 16, 16, 1, 12, ext).expect("encodes");
        for cut in [3, 10, 40, enc.len() / 2, enc.len() - 3] {
            let _ = decode(&enc[..cut]); // must not panic
        }
        let mut bad = enc.clone();
        for i in (20..bad.len()).step_by(7) {
            bad[i] ^= 0x5A;
        }
        let _ = decode(&bad);
        assert!(encode(Samples::Words(&[4096]), 1, 1, 1, 12, ext).is_err());
        let base = EncodeOptions {
            baseline: true,
            ..ext
        };
        assert!(
            encode(Samples::Words(&[0; 4]), 2, 2, 1, 12, base).is_err(),
            "baseline is 8-bit"
        );
        // Found by fuzzing: a DHT whose counts overflow the code space.
        let crash = include_bytes!("../../tests/fuzz_regressions/jpegdct-huffman-overflow.jpg");
        assert!(decode(crash).is_err());
        let crash = include_bytes!("../../tests/fuzz_regressions/jpegdct-crash-2.jpg");
        if let Ok(img) = decode(crash) {
            let _ = encode(
                Samples::Words(&img.samples),
                img.width,
                img.height,
                img.components,
                img.precision,
                EncodeOptions {
                    quality: 90,
                    baseline: img.precision == 8,
                    chroma_422: img.components == 3,
                },
            );
        }
        let mut bits = [0u8; 16];
        bits[0] = 3; // three 1-bit codes
        assert!(DecodeTable::new(&bits, vec![0, 1, 2]).is_err());
        assert!(encode(Samples::Words(&[0; 4]), 2, 2, 1, 16, ext).is_err());
    }
}
