//! JPEG DCT sequential coding with Huffman tables (ISO/IEC 10918-1 processes 1, 2 and 4: the
//! baseline and extended processes), for 8- and 12-bit samples: the 12-bit JPEG Extended of
//! DICOM (1.2.840.10008.1.2.4.51), which neither dicom-rs nor jpeg-decoder decodes, and which no
//! Rust crate encodes.
//!
//! - **Decoding**: SOF0/SOF1, 8 or 12 bits, 1–4 components with any sampling factors,
//!   interleaved and non-interleaved scans, 8- or 16-bit quantization tables, restart
//!   intervals. Samples come out per component, upsampled to full size, interleaved; no colour
//!   conversion (the caller knows the Photometric Interpretation).
//! - **Encoding**: SOF1 with 8 or 12 bits, 1 or 3 components without subsampling (colour is
//!   converted RGB → YCbCr, i.e. YBR_FULL), the Annex K tables scaled by a quality like
//!   libjpeg's, and Huffman tables optimized for each image (Annex K.2): the Annex K.3 tables
//!   only cover 8-bit categories.
//!
//! The DCTs are separable floating-point ones (A.3.3); the decoder's output may differ by one
//! from libjpeg's integer IDCT, as 10918-2 allows.

use std::fmt;

/// Why a stream could not be decoded or an image encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn err<T>(msg: impl Into<String>) -> Result<T, Error> {
    Err(Error(msg.into()))
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
                    .ok_or_else(|| Error("a Huffman code outside its table".into()));
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
    if data.get(..2) != Some(&[0xFF, 0xD8][..]) {
        return err("not a JPEG stream (no SOI)");
    }
    let cos = cos_table();
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
        let marker = *data
            .get(pos + 1)
            .ok_or_else(|| Error("truncated stream".into()))?;
        pos += 2;
        if marker == 0xD9 {
            break;
        }
        let len = be16(data, pos)?;
        let seg = data
            .get(pos + 2..pos + len)
            .ok_or_else(|| Error("a segment runs past the end".into()))?;
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
                        .ok_or_else(|| Error("a truncated Huffman table".into()))?
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
                if mcux * mcuy * 64 * hmax * vmax * nf > 1 << 30 {
                    return err("an image too large");
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
                let ns = usize::from(*seg.first().ok_or_else(|| Error("a bad scan".into()))?);
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
                        .ok_or_else(|| Error("a scan names an unknown component".into()))?;
                    members.push((ci, usize::from(t >> 4), usize::from(t & 15)));
                }
                let (ss, se, a) = (seg[1 + 2 * ns], seg[2 + 2 * ns], seg[3 + 2 * ns]);
                if ss != 0 || se != 63 || a != 0 {
                    return err("a scan that is not sequential");
                }
                let end = decode_scan(
                    data,
                    pos + len,
                    &mut comps,
                    &members,
                    (width, height, hmax, vmax),
                    &qt,
                    (&dc, &ac),
                    restart_interval,
                    &cos,
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
    // Output: level shift, round, clamp; upsample by replication.
    let max = (1i32 << precision) - 1;
    let shift = (1i32 << (precision - 1)) as f32;
    let nc = comps.len();
    let mut samples = vec![0u16; width * height * nc];
    for (ci, c) in comps.iter().enumerate() {
        let stride = c.bw * 8;
        for y in 0..height {
            let sy = y * c.v / vmax;
            for x in 0..width {
                let sx = x * c.h / hmax;
                let v = (c.plane[sy * stride + sx] + shift).round() as i32;
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
    cos: &[[f32; 8]; 8],
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
    let mut tables = Vec::with_capacity(members.len());
    for &(ci, td, ta) in members {
        let q = qt[comps[ci].tq].ok_or_else(|| Error("a missing quantization table".into()))?;
        let d = dc[td]
            .as_ref()
            .ok_or_else(|| Error("a missing DC table".into()))?;
        let a = ac[ta]
            .as_ref()
            .ok_or_else(|| Error("a missing AC table".into()))?;
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
                    coef[0] = pred[k] as f32 * f32::from(q[0]);
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
                        coef[ZIGZAG[z]] = r.receive_extend(s) as f32 * f32::from(q[z]);
                        z += 1;
                    }
                    idct(&coef, cos, &mut block);
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

/// Bit length category of `v` (Table F.1/F.2).
fn category(v: i32) -> u8 {
    (32 - v.unsigned_abs().leading_zeros()) as u8
}

/// Code lengths for symbol frequencies, limited to 16 bits (Annex K.2, as libjpeg's
/// `jpeg_gen_optimal_table`): the BITS list and HUFFVAL.
fn optimal_table(freq_in: &[u64; 256]) -> ([u8; 16], Vec<u8>) {
    let mut freq = [0u64; 257];
    freq[..256].copy_from_slice(freq_in);
    freq[256] = 1; // reserves the all-ones code (K.2)
    let mut codesize = [0usize; 257];
    let mut others = [-1i32; 257];
    loop {
        let mut c1: i32 = -1;
        let mut v = u64::MAX;
        for (i, &f) in freq.iter().enumerate() {
            if f != 0 && f <= v {
                v = f;
                c1 = i as i32;
            }
        }
        let mut c2: i32 = -1;
        v = u64::MAX;
        for (i, &f) in freq.iter().enumerate() {
            if f != 0 && f <= v && i as i32 != c1 {
                v = f;
                c2 = i as i32;
            }
        }
        if c2 < 0 {
            break;
        }
        let (mut a, mut b) = (c1 as usize, c2 as usize);
        freq[a] += freq[b];
        freq[b] = 0;
        codesize[a] += 1;
        while others[a] >= 0 {
            a = others[a] as usize;
            codesize[a] += 1;
        }
        others[a] = c2;
        codesize[b] += 1;
        while others[b] >= 0 {
            b = others[b] as usize;
            codesize[b] += 1;
        }
    }
    let mut bits = [0usize; 33];
    for &s in &codesize {
        if s > 0 {
            bits[s.min(32)] += 1;
        }
    }
    for i in (17..=32).rev() {
        while bits[i] > 0 {
            let mut j = i - 2;
            while bits[j] == 0 {
                j -= 1;
            }
            bits[i] -= 2;
            bits[i - 1] += 1;
            bits[j + 1] += 2;
            bits[j] -= 1;
        }
    }
    let mut i = 16;
    while bits[i] == 0 {
        i -= 1;
    }
    bits[i] -= 1; // drop the reserved code
    let mut values = Vec::new();
    for len in 1..=32 {
        for (sym, &s) in codesize.iter().enumerate().take(256) {
            if s == len {
                values.push(sym as u8);
            }
        }
    }
    let mut out = [0u8; 16];
    for (o, &b) in out.iter_mut().zip(&bits[1..=16]) {
        *o = b as u8;
    }
    (out, values)
}

/// Codes and lengths by symbol for a table (Annex C).
fn encode_codes(bits: &[u8; 16], values: &[u8]) -> [(u16, u8); 256] {
    let mut codes = [(0u16, 0u8); 256];
    let mut code = 0u16;
    let mut k = 0;
    for (len, &n) in bits.iter().enumerate() {
        for _ in 0..n {
            codes[usize::from(values[k])] = (code, len as u8 + 1);
            code += 1;
            k += 1;
        }
        code <<= 1;
    }
    codes
}

struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    fn put(&mut self, code: u32, len: u8) {
        if len == 0 {
            return;
        }
        self.acc = (self.acc << len) | u64::from(code & ((1u32 << len) - 1));
        self.n += u32::from(len);
        while self.n >= 8 {
            self.n -= 8;
            let b = (self.acc >> self.n) as u8;
            self.out.push(b);
            if b == 0xFF {
                self.out.push(0);
            }
        }
    }

    fn finish(&mut self) {
        if self.n > 0 {
            let pad = 8 - self.n;
            self.put((1 << pad) - 1, pad as u8);
        }
    }
}

/// Encodes samples (`components` per pixel, interleaved; RGB when 3) as a SOF1 stream of
/// `precision` (8 or 12) bits at `quality` (libjpeg's scale).
pub fn encode(
    samples: &[u16],
    width: usize,
    height: usize,
    components: usize,
    precision: u8,
    quality: u8,
) -> Result<Vec<u8>, Error> {
    if !matches!(precision, 8 | 12) {
        return err(format!("{precision}-bit samples (8 or 12 here)"));
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
    let max = (1u32 << precision) - 1;
    if samples.iter().any(|&v| u32::from(v) > max) {
        return err(format!("a sample beyond {precision} bits"));
    }
    let cos = cos_table();
    let shift = (1u32 << (precision - 1)) as f32;
    // Planes, level-shifted; colour as YCbCr (full range, JFIF equations).
    let n = width * height;
    let mut planes = vec![vec![0f32; n]; components];
    for p in 0..n {
        if components == 1 {
            planes[0][p] = f32::from(samples[p]) - shift;
        } else {
            let (r, g, b) = (
                f32::from(samples[3 * p]),
                f32::from(samples[3 * p + 1]),
                f32::from(samples[3 * p + 2]),
            );
            planes[0][p] = 0.299 * r + 0.587 * g + 0.114 * b - shift;
            planes[1][p] = -0.168_736 * r - 0.331_264 * g + 0.5 * b;
            planes[2][p] = 0.5 * r - 0.418_688 * g - 0.081_312 * b;
        }
    }
    let tables = [scaled(&LUMA_Q, quality), scaled(&CHROMA_Q, quality)];
    let (bw, bh) = (width.div_ceil(8), height.div_ceil(8));
    // Quantized coefficients in zig-zag order, block by block, MCU order (interleaved).
    let mut coefs: Vec<[i32; 64]> = Vec::with_capacity(bw * bh * components);
    let mut px = [0f32; 64];
    let mut f = [0f32; 64];
    let lim = if precision == 8 { 1023 } else { 16383 };
    for by in 0..bh {
        for bx in 0..bw {
            for (c, plane) in planes.iter().enumerate() {
                for y in 0..8 {
                    let sy = (by * 8 + y).min(height - 1);
                    for x in 0..8 {
                        let sx = (bx * 8 + x).min(width - 1); // edge replication
                        px[y * 8 + x] = plane[sy * width + sx];
                    }
                }
                fdct(&px, &cos, &mut f);
                let q = &tables[usize::from(c > 0)];
                let mut z = [0i32; 64];
                for k in 0..64 {
                    let pos = ZIGZAG[k];
                    z[k] = ((f[pos] / f32::from(q[pos])).round() as i32).clamp(-lim, lim);
                }
                coefs.push(z);
            }
        }
    }
    // Symbol statistics for optimal tables: DC and AC, luminance and chrominance.
    let nt = if components == 1 { 1 } else { 2 };
    let mut freq = vec![[0u64; 256]; 2 * nt];
    let mut pred = vec![0i32; components];
    for (i, z) in coefs.iter().enumerate() {
        let c = i % components;
        let t = usize::from(c > 0);
        let diff = z[0] - pred[c];
        pred[c] = z[0];
        freq[2 * t][usize::from(category(diff))] += 1;
        let mut run = 0;
        for &v in &z[1..] {
            if v == 0 {
                run += 1;
                continue;
            }
            while run > 15 {
                freq[2 * t + 1][0xF0] += 1;
                run -= 16;
            }
            freq[2 * t + 1][(run << 4) | usize::from(category(v))] += 1;
            run = 0;
        }
        if run > 0 {
            freq[2 * t + 1][0] += 1;
        }
    }
    let huff: Vec<([u8; 16], Vec<u8>)> = freq.iter().map(optimal_table).collect();
    let codes: Vec<[(u16, u8); 256]> = huff.iter().map(|(b, v)| encode_codes(b, v)).collect();

    let mut out = Vec::with_capacity(n * components / 4 + 1024);
    out.extend_from_slice(&[0xFF, 0xD8]);
    // DQT: 16-bit entries where a value needs them (B.2.4.1).
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
    // SOF1: extended sequential, Huffman.
    out.extend_from_slice(&[0xFF, 0xC1]);
    out.extend_from_slice(&((8 + 3 * components) as u16).to_be_bytes());
    out.push(precision);
    out.extend_from_slice(&(height as u16).to_be_bytes());
    out.extend_from_slice(&(width as u16).to_be_bytes());
    out.push(components as u8);
    for c in 0..components {
        out.extend_from_slice(&[c as u8 + 1, 0x11, u8::from(c > 0)]);
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
    let mut w = BitWriter { out, acc: 0, n: 0 };
    pred.iter_mut().for_each(|p| *p = 0);
    for (i, z) in coefs.iter().enumerate() {
        let c = i % components;
        let t = usize::from(c > 0);
        let (dcc, acc) = (&codes[2 * t], &codes[2 * t + 1]);
        let diff = z[0] - pred[c];
        pred[c] = z[0];
        let s = category(diff);
        let (code, len) = dcc[usize::from(s)];
        w.put(u32::from(code), len);
        w.put((if diff < 0 { diff - 1 } else { diff }) as u32, s);
        let mut run = 0;
        for &v in &z[1..] {
            if v == 0 {
                run += 1;
                continue;
            }
            while run > 15 {
                let (code, len) = acc[0xF0];
                w.put(u32::from(code), len);
                run -= 16;
            }
            let s = category(v);
            let (code, len) = acc[(run << 4) | usize::from(s)];
            w.put(u32::from(code), len);
            w.put((if v < 0 { v - 1 } else { v }) as u32, s);
            run = 0;
        }
        if run > 0 {
            let (code, len) = acc[0];
            w.put(u32::from(code), len);
        }
    }
    w.finish();
    let mut out = w.out;
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let enc = encode(&s, w, h, c, bits, 90).expect("encodes");
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
        let codes = encode_codes(&bits, &values);
        assert!(codes
            .iter()
            .all(|&(c, l)| l <= 16 && u32::from(c) < (1 << l) - 1));
    }

    #[test]
    fn hostile_streams_are_errors() {
        assert!(decode(b"").is_err());
        assert!(decode(b"\xFF\xD8\xFF\xD9").is_err());
        let s = image(16, 16, 1, 12);
        let enc = encode(&s, 16, 16, 1, 12, 90).expect("encodes");
        for cut in [3, 10, 40, enc.len() / 2, enc.len() - 3] {
            let _ = decode(&enc[..cut]); // must not panic
        }
        let mut bad = enc.clone();
        for i in (20..bad.len()).step_by(7) {
            bad[i] ^= 0x5A;
        }
        let _ = decode(&bad);
        assert!(encode(&[4096], 1, 1, 1, 12, 90).is_err());
        // Found by fuzzing: a DHT whose counts overflow the code space.
        let crash = include_bytes!("../tests/fuzz_regressions/jpegdct-huffman-overflow.jpg");
        assert!(decode(crash).is_err());
        let mut bits = [0u8; 16];
        bits[0] = 3; // three 1-bit codes
        assert!(DecodeTable::new(&bits, vec![0, 1, 2]).is_err());
        assert!(encode(&[0; 4], 2, 2, 1, 16, 90).is_err());
    }
}
