//! JPEG-LS (ISO/IEC 14495-1, ITU-T T.87) in pure Rust: decoder and encoder for what DICOM
//! uses (1.2.840.10008.1.2.4.80 lossless, .4.81 near-lossless): 2 to 16 bits per sample, one or
//! three components, NEAR ≥ 0, non-interleaved, line-interleaved and sample-interleaved scans,
//! default and custom preset parameters (LSE), restart markers on decode. Interoperable with
//! CharLS, DCMTK's dcmcjpls/dcmdjpls and GDCM (tested in tests/e2e.rs).
//!
//! The coding follows T.87 Annex A: context modelling from the three local gradients (365
//! regular contexts, two run-interruption contexts), median edge detection, bias correction,
//! limited-length Golomb codes, and run mode with the J table. Where the standard leaves room
//! for reading (per-component run indexes in line-interleaved scans, run interruptions in
//! sample-interleaved scans), the choices are the ones CharLS makes, because that is what
//! DICOM files contain.
//!
//! One file for the whole codec on purpose: the context model, the Golomb coder and the run
//! mode are one hot loop shared by encoder and decoder (its state structs are read by both),
//! and splitting it would put the coder's halves out of sight of each other.

use crate::Error;

/// A stream that cannot be decoded, or a frame that cannot be encoded.
fn bad(msg: impl std::fmt::Display) -> Error {
    Error::malformed("JPEG-LS", msg)
}

fn err<T>(msg: impl std::fmt::Display) -> Result<T, Error> {
    Err(bad(msg))
}

/// A decoded image: samples interleaved by pixel (`y * width * components + x * components +
/// c`), whatever the stream's interleave mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Components (1 or 3).
    pub components: usize,
    /// Bits per sample (P).
    pub bits: u8,
    /// NEAR of the (first) scan.
    pub near: u16,
    /// Interleave mode of the (first) scan: 0 none, 1 line, 2 sample.
    pub interleave: u8,
    /// The samples.
    pub samples: Vec<u16>,
}

/// Encoding choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// 0 for lossless; otherwise each sample is within NEAR of the original.
    pub near: u16,
    /// 0 none, 1 line, 2 sample (components > 1).
    pub interleave: u8,
}

impl Default for EncodeOptions {
    fn default() -> EncodeOptions {
        EncodeOptions {
            near: 0,
            interleave: 1,
        }
    }
}

// ===== parameters (T.87 C.2.4.1.1) =====

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Params {
    maxval: i32,
    t1: i32,
    t2: i32,
    t3: i32,
    reset: i32,
}

impl Params {
    fn defaults(bits: u8, near: i32) -> Params {
        let maxval = (1i32 << bits) - 1;
        Params::with_maxval(maxval, near, None)
    }

    /// Defaults for `maxval` and `near`, overridden by the non-zero LSE values.
    fn with_maxval(maxval: i32, near: i32, lse: Option<[i32; 4]>) -> Params {
        let clamp = |i: i32, j: i32| if i > maxval || i < j { j } else { i };
        let (t1, t2, t3) = if maxval >= 128 {
            let factor = (maxval.min(4095) + 128) / 256;
            // BASIC_T1 = 3, BASIC_T2 = 7, BASIC_T3 = 21 (T.87 C.2.4.1.1.1).
            #[allow(clippy::identity_op)]
            let t1 = clamp(factor * (3 - 2) + 2 + 3 * near, near + 1);
            let t2 = clamp(factor * (7 - 3) + 3 + 5 * near, t1);
            let t3 = clamp(factor * (21 - 4) + 4 + 7 * near, t2);
            (t1, t2, t3)
        } else {
            let factor = 256 / (maxval + 1);
            let t1 = clamp((3 / factor + 3 * near).max(2), near + 1);
            let t2 = clamp((7 / factor + 5 * near).max(3), t1);
            let t3 = clamp((21 / factor + 7 * near).max(4), t2);
            (t1, t2, t3)
        };
        let mut p = Params {
            maxval,
            t1,
            t2,
            t3,
            reset: 64,
        };
        if let Some([t1, t2, t3, reset]) = lse {
            if t1 != 0 {
                p.t1 = t1;
            }
            if t2 != 0 {
                p.t2 = t2;
            }
            if t3 != 0 {
                p.t3 = t3;
            }
            if reset != 0 {
                p.reset = reset;
            }
        }
        p
    }
}

/// The J table of run lengths (T.87 A.7.1.2).
const J: [u8; 32] = [
    0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13,
    14, 15,
];

/// Gradients span -maxval..=maxval, 2^17 - 1 values at most (MAXVAL ≤ 65535).
const QLUT_LEN: usize = 1 << 17;
const QLUT_MASK: usize = QLUT_LEN - 1;
const CTX_MASK: usize = 511;

/// A zeroed table, allocated on the heap (never on the stack).
fn zeroed_qlut() -> Box<[i8; QLUT_LEN]> {
    match vec![0i8; QLUT_LEN].into_boxed_slice().try_into() {
        Ok(lut) => lut,
        Err(_) => unreachable!("the vector has QLUT_LEN elements"),
    }
}

/// The variables of one context (T.87 A.2.1): kept together, as a sample touches all four.
#[derive(Clone, Copy)]
struct Ctx {
    a: i32,
    b: i32,
    c: i32,
    n: i32,
}

impl Ctx {
    const fn new(a0: i32) -> Ctx {
        Ctx {
            a: a0,
            b: 0,
            c: 0,
            n: 1,
        }
    }
}

/// The coding state of one scan: parameters and the context variables.
struct Coder {
    near: i32,
    maxval: i32,
    range: i32,
    qbpp: u32,
    limit: i32,
    t1: i32,
    t2: i32,
    t3: i32,
    reset: i32,
    /// Contexts 1..=364 are regular (0 is never used); 365 and 366 are the run
    /// interruption contexts. 512 entries, so that `q & CTX_MASK` needs no bounds check.
    ctx: [Ctx; 512],
    nn: [i32; 2],
    /// LIMIT - qbpp - 1: the longest unary part of a regular-mode code.
    max_high: u32,
    /// MAXVAL when coding is lossless and MAXVAL + 1 (RANGE) is a power of two (8 and 16
    /// bits): reconstruction modulo RANGE is then this mask. 0 otherwise.
    wrap: i32,
    run_index: [usize; 3],
    /// Gradient quantization for d in -maxval..=maxval, at d + maxval (CharLS does the same).
    /// Indexed by (d + maxval) & QLUT_MASK: the mask lets the compiler drop the bounds check.
    qlut: Box<[i8; QLUT_LEN]>,
}

/// The smallest k with n·2^k ≥ a (T.87 A.5.1), at most 24; n ≥ 1.
#[inline]
fn golomb_k(n: i32, a: i32) -> u32 {
    if n >= a {
        return 0;
    }
    // n << g has a's bit length: k is g, or g + 1 when that is still below a.
    let g = n.leading_zeros() - a.leading_zeros();
    let k = g + u32::from((i64::from(n) << g) < i64::from(a));
    k.min(24)
}

fn ceil_log2(v: i32) -> u32 {
    let mut k = 0;
    while (1i64 << k) < i64::from(v) {
        k += 1;
    }
    k
}

impl Coder {
    fn new(p: &Params, near: i32) -> Result<Coder, Error> {
        if p.maxval < 1 || p.maxval > 65535 || near < 0 || near > (p.maxval / 2).min(255) {
            return err(format!("NEAR {near} with MAXVAL {}", p.maxval));
        }
        if !(near < p.t1 && p.t1 <= p.t2 && p.t2 <= p.t3 && p.t3 <= p.maxval) || p.reset < 3 {
            return err("invalid preset parameters (T1, T2, T3, RESET)");
        }
        let range = (p.maxval + 2 * near) / (2 * near + 1) + 1;
        let qbpp = ceil_log2(range);
        let bpp = ceil_log2(p.maxval + 1).max(2);
        let limit = 2 * (bpp as i32 + (bpp as i32).max(8));
        let a0 = ((range + 32) / 64).max(2);
        Ok(Coder {
            near,
            maxval: p.maxval,
            range,
            qbpp,
            limit,
            t1: p.t1,
            t2: p.t2,
            t3: p.t3,
            reset: p.reset,
            ctx: [Ctx::new(a0); 512],
            nn: [0; 2],
            max_high: (limit - qbpp as i32 - 1).max(0) as u32,
            wrap: if near == 0 && (p.maxval + 1).count_ones() == 1 {
                p.maxval
            } else {
                0
            },
            run_index: [0; 3],
            qlut: zeroed_qlut(),
        }
        .with_lut())
    }

    fn with_lut(mut self) -> Coder {
        // quantize_gradient is a step function of d: fill its nine ranges (the table starts
        // zeroed, which is the middle one).
        let (m, near, t1, t2, t3) = (self.maxval, self.near, self.t1, self.t2, self.t3);
        let bounds = [
            (-m, -t3, -4),
            (-t3 + 1, -t2, -3),
            (-t2 + 1, -t1, -2),
            (-t1 + 1, -near - 1, -1),
            (near + 1, t1 - 1, 1),
            (t1, t2 - 1, 2),
            (t2, t3 - 1, 3),
            (t3, m, 4),
        ];
        for (lo, hi, q) in bounds {
            let (lo, hi) = (lo.max(-m), hi.min(m));
            if lo <= hi {
                self.qlut[(lo + m) as usize..=(hi + m) as usize].fill(q);
            }
        }
        debug_assert!((-m..=m)
            .all(|d| { i32::from(self.qlut[(d + m) as usize]) == self.quantize_gradient(d) }));
        self
    }

    /// Back to the initial context state (at the start of a scan and after a restart).
    fn reset_contexts(&mut self) {
        let a0 = ((self.range + 32) / 64).max(2);
        self.ctx = [Ctx::new(a0); 512];
        self.nn = [0; 2];
        self.run_index = [0; 3];
    }

    #[inline]
    fn quantize_gradient(&self, d: i32) -> i32 {
        if d <= -self.t3 {
            -4
        } else if d <= -self.t2 {
            -3
        } else if d <= -self.t1 {
            -2
        } else if d < -self.near {
            -1
        } else if d <= self.near {
            0
        } else if d < self.t1 {
            1
        } else if d < self.t2 {
            2
        } else if d < self.t3 {
            3
        } else {
            4
        }
    }

    /// The signed context number (0 means run mode) of the gradients.
    #[inline]
    fn context(&self, ra: i32, rb: i32, rc: i32, rd: i32) -> i32 {
        // Samples are within 0..=maxval, so differences index the table.
        let q = |d: i32| i32::from(self.qlut[(d + self.maxval) as usize & QLUT_MASK]);
        let (q1, q2, q3) = (q(rd - rb), q(rb - rc), q(rc - ra));
        (q1 * 9 + q2) * 9 + q3
    }

    #[inline]
    fn golomb_k(&self, q: usize) -> u32 {
        golomb_k(self.ctx[q].n, self.ctx[q].a)
    }

    #[inline]
    fn fix_reconstructed(&self, mut rx: i32) -> i32 {
        // Within (-RANGE, 2 RANGE), as every valid stream keeps it, the mask is the modulo
        // below; outside (a damaged stream) it gives some sample value all the same.
        if self.wrap != 0 {
            return rx & self.wrap;
        }
        let span = self.range * (2 * self.near + 1);
        if rx < -self.near {
            rx += span;
        } else if rx > self.maxval + self.near {
            rx -= span;
        }
        rx.clamp(0, self.maxval)
    }

    #[inline]
    fn quantize_error(&self, e: i32) -> i32 {
        if self.near == 0 {
            e
        } else if e > 0 {
            (e + self.near) / (2 * self.near + 1)
        } else {
            -(self.near - e) / (2 * self.near + 1)
        }
    }

    #[inline]
    fn modulo_range(&self, mut e: i32) -> i32 {
        if e < 0 {
            e += self.range;
        }
        if e >= (self.range + 1) / 2 {
            e -= self.range;
        }
        e
    }

    #[inline]
    fn predict(&self, ra: i32, rb: i32, rc: i32) -> i32 {
        if rc >= ra.max(rb) {
            ra.min(rb)
        } else if rc <= ra.min(rb) {
            ra.max(rb)
        } else {
            ra + rb - rc
        }
    }

    /// The regular-mode update of context `q` with the coded error (T.87 A.6).
    #[inline]
    fn update_regular(&mut self, q: usize, errval: i32) {
        let (step, reset) = (2 * self.near + 1, self.reset);
        let cx = &mut self.ctx[q & CTX_MASK];
        cx.b += errval * step;
        cx.a += errval.abs();
        if cx.n == reset {
            cx.a >>= 1;
            cx.b >>= 1; // arithmetic shift: floor division by 2
            cx.n >>= 1;
        }
        cx.n += 1;
        let n = cx.n;
        if cx.b <= -n {
            cx.b = (cx.b + n).max(-n + 1);
            cx.c -= i32::from(cx.c > -128);
        } else if cx.b > 0 {
            cx.b = (cx.b - n).min(0);
            cx.c += i32::from(cx.c < 127);
        }
    }

    /// For regular-mode context number `qs` (non-zero; its sign is the context's sign, T.87
    /// A.3.4): the context's index, the sign as a mask (0 or -1: `(v ^ sign) - sign` applies
    /// it without a branch), and the prediction corrected by the context's bias. The encoder
    /// and the decoder both start a regular sample here.
    #[inline(always)]
    fn corrected_prediction(&self, qs: i32, ra: i32, rb: i32, rc: i32) -> (usize, i32, i32) {
        let sign = qs >> 31;
        // The mask lets the compiler drop the bounds check (contexts are 1..=364).
        let q = ((qs ^ sign) - sign) as usize & CTX_MASK;
        let c = self.ctx[q].c;
        let px = (self.predict(ra, rb, rc) + ((c ^ sign) - sign)).clamp(0, self.maxval);
        (q, sign, px)
    }

    fn run_interruption_k(&self, ri_type: usize) -> u32 {
        let q = 365 + ri_type;
        let temp = if ri_type == 0 {
            self.ctx[q].a
        } else {
            self.ctx[q].a + (self.ctx[q].n >> 1)
        };
        golomb_k(self.ctx[q].n, temp)
    }

    fn update_run_interruption(&mut self, ri_type: usize, errval: i32, em: i32) {
        let q = 365 + ri_type;
        if errval < 0 {
            self.nn[ri_type] += 1;
        }
        self.ctx[q].a += (em + 1 - ri_type as i32) >> 1;
        if self.ctx[q].n == self.reset {
            self.ctx[q].a >>= 1;
            self.ctx[q].n >>= 1;
            self.nn[ri_type] >>= 1;
        }
        self.ctx[q].n += 1;
    }
}

// ===== bit IO =====

struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    nbits: u32,
}

impl BitWriter {
    fn new(out: Vec<u8>) -> BitWriter {
        BitWriter {
            out,
            acc: 0,
            nbits: 0,
        }
    }

    /// Appends the low `n` bits of `v` (n ≤ 32).
    #[inline]
    fn put(&mut self, v: u32, n: u32) {
        if n == 0 {
            return;
        }
        self.acc = (self.acc << n) | u64::from(v & ((1u64 << n) - 1) as u32);
        self.nbits += n;
        while self.nbits >= 8 {
            self.emit();
        }
    }

    /// Writes one byte from the accumulator; after 0xFF only 7 bits (a stuffed zero bit).
    #[inline]
    fn emit(&mut self) {
        let after_ff = self.out.last() == Some(&0xFF);
        let take = if after_ff { 7 } else { 8 };
        let byte = ((self.acc >> (self.nbits - take)) & ((1 << take) - 1)) as u8;
        self.out.push(byte);
        self.nbits -= take;
    }

    #[inline]
    fn zeros(&mut self, mut n: u32) {
        while n > 24 {
            self.put(0, 24);
            n -= 24;
        }
        self.put(0, n);
    }

    /// Pads the last byte with zero bits and returns the bytes.
    fn finish(mut self) -> Vec<u8> {
        while self.nbits > 0 {
            let after_ff = self.out.last() == Some(&0xFF);
            let take = if after_ff { 7 } else { 8 };
            if self.nbits >= take {
                self.emit();
            } else {
                let byte = ((self.acc << (take - self.nbits)) & ((1 << take) - 1)) as u8;
                self.out.push(byte);
                self.nbits = 0;
            }
        }
        if self.out.last() == Some(&0xFF) {
            self.out.push(0);
        }
        self.out
    }

    /// Limited-length Golomb code LG(k, limit) of `value` (T.87 A.5.3).
    #[inline]
    fn golomb(&mut self, value: u32, k: u32, limit: i32, qbpp: u32) {
        let high = value >> k;
        if (high as i64) < i64::from(limit) - i64::from(qbpp) - 1 {
            self.zeros(high);
            self.put(1, 1);
            self.put(value, k);
        } else {
            self.zeros((limit - qbpp as i32 - 1) as u32);
            self.put(1, 1);
            self.put(value - 1, qbpp);
        }
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    nbits: u32,
    /// The last byte read was 0xFF: the next one carries 7 bits (or starts a marker).
    last_ff: bool,
    /// Where the marker that ends the entropy-coded data starts, once met.
    marker: Option<usize>,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], pos: usize) -> BitReader<'a> {
        BitReader {
            data,
            pos,
            acc: 0,
            nbits: 0,
            last_ff: false,
            marker: None,
        }
    }

    /// Tops the accumulator up to at least 57 bits. Past the entropy-coded data it reads zero
    /// bits: a corrupt stream then fails the run/length checks, never reads out of bounds.
    #[inline]
    fn fill(&mut self) {
        // Fast path: whole bytes without 0xFF (no stuffing, no marker), as many as fit.
        if self.marker.is_none() && !self.last_ff && self.nbits <= 56 {
            let take = ((64 - self.nbits) / 8) as usize;
            if let Some(chunk) = self.data.get(self.pos..self.pos + take) {
                if !chunk.contains(&0xFF) {
                    for &b in chunk {
                        self.acc = (self.acc << 8) | u64::from(b);
                    }
                    self.nbits += 8 * take as u32;
                    self.pos += take;
                    return;
                }
            }
        }
        while self.nbits <= 56 {
            let byte = if self.marker.is_some() {
                None
            } else {
                self.data.get(self.pos).copied()
            };
            match byte {
                None => {
                    self.acc <<= 8;
                    self.nbits += 8;
                }
                Some(b) if self.last_ff && b & 0x80 != 0 => {
                    // 0xFF then a byte with its high bit set: a marker.
                    self.marker = Some(self.pos - 1);
                }
                Some(b) if self.last_ff => {
                    self.acc = (self.acc << 7) | u64::from(b);
                    self.nbits += 7;
                    self.last_ff = false;
                    self.pos += 1;
                }
                Some(b) => {
                    self.acc = (self.acc << 8) | u64::from(b);
                    self.nbits += 8;
                    self.last_ff = b == 0xFF;
                    self.pos += 1;
                }
            }
        }
    }

    #[inline]
    fn bit(&mut self) -> u32 {
        if self.nbits == 0 {
            self.fill();
        }
        self.nbits -= 1;
        ((self.acc >> self.nbits) & 1) as u32
    }

    #[inline]
    fn bits(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        if self.nbits < n {
            self.fill();
        }
        self.nbits -= n;
        ((self.acc >> self.nbits) & ((1u64 << n) - 1)) as u32
    }

    /// Counts the zero bits before the next one bit, which is consumed; more than `max` zeros
    /// is an error.
    #[inline]
    fn unary(&mut self, max: u32) -> Result<u32, Error> {
        let mut n = 0;
        loop {
            if self.nbits == 0 {
                self.fill();
            }
            // The valid bits, left-aligned.
            let v = self.acc << (64 - self.nbits);
            let z = v.leading_zeros();
            if z < self.nbits {
                n += z;
                self.nbits -= z + 1;
                return if n > max {
                    err("a Golomb code longer than LIMIT")
                } else {
                    Ok(n)
                };
            }
            n += self.nbits;
            self.nbits = 0;
            if n > max {
                return err("a Golomb code longer than LIMIT");
            }
        }
    }

    /// LG(k, limit) decoding (T.87 A.5.3).
    #[inline(always)]
    fn golomb(&mut self, k: u32, limit: i32, qbpp: u32) -> Result<u32, Error> {
        self.golomb_within((limit - qbpp as i32 - 1).max(0) as u32, k, qbpp)
    }

    /// LG(k, limit) decoding with the unary part's bound, LIMIT - qbpp - 1, given.
    #[inline(always)]
    fn golomb_within(&mut self, max_high: u32, k: u32, qbpp: u32) -> Result<u32, Error> {
        // Fast path: the whole code is in the accumulator (almost always, as fill leaves at
        // least 57 bits): its unary part and k low bits taken with one shift each.
        if self.nbits < 32 {
            self.fill();
        }
        let z = (self.acc << (64 - self.nbits)).leading_zeros();
        if z < max_high && z + 1 + k <= self.nbits {
            self.nbits -= z + 1 + k;
            let low = (self.acc >> self.nbits) & ((1u64 << k) - 1);
            return Ok((z << k) | low as u32);
        }
        let high = self.unary(max_high)?;
        if high < max_high {
            Ok((high << k) | self.bits(k))
        } else {
            Ok(self.bits(qbpp) + 1)
        }
    }

    /// Where the next marker starts (the end of the entropy-coded data).
    fn end_position(&self) -> usize {
        if let Some(m) = self.marker {
            return m;
        }
        let mut p = self.pos.saturating_sub(1);
        while p + 1 < self.data.len() {
            if self.data[p] == 0xFF && self.data[p + 1] & 0x80 != 0 {
                return p;
            }
            p += 1;
        }
        self.data.len()
    }
}

// ===== one component line at a time =====

/// A line of one component with a sample of padding on each side (T.87 A.2.1's edges).
struct Lines {
    width: usize,
    prev: Vec<i32>,
    cur: Vec<i32>,
}

impl Lines {
    fn new(width: usize) -> Lines {
        Lines {
            width,
            prev: vec![0; width + 2],
            cur: vec![0; width + 2],
        }
    }

    /// Starts a line: the previous one becomes the line above; edge samples are set.
    fn start(&mut self, first: bool) {
        if !first {
            std::mem::swap(&mut self.prev, &mut self.cur);
        }
        let w = self.width;
        self.prev[w + 1] = self.prev[w];
        self.cur[0] = self.prev[1];
    }

    fn restart(&mut self) {
        self.prev.iter_mut().for_each(|v| *v = 0);
        self.cur.iter_mut().for_each(|v| *v = 0);
    }
}

impl Coder {
    /// Decodes one line of one component into `lines.cur[1..=width]`.
    fn decode_line(
        &mut self,
        r: &mut BitReader<'_>,
        lines: &mut Lines,
        comp: usize,
    ) -> Result<(), Error> {
        let w = lines.width;
        let prev = &lines.prev[..w + 2];
        let cur = &mut lines.cur[..w + 2];
        // The causal neighbours slide along the line: Rc, Rb, Rd of one sample are the
        // line above's x - 1, x, x + 1; Ra is the sample just decoded.
        let mut x = 1;
        let (mut ra, mut rb, mut rc) = (cur[0], prev[1], prev[0]);
        while x <= w {
            let rd = prev[x + 1];
            let qs = self.context(ra, rb, rc, rd);
            if qs != 0 {
                ra = self.decode_regular_sample(r, qs, ra, rb, rc)?;
                cur[x] = ra;
                (rc, rb) = (rb, rd);
                x += 1;
            } else {
                x += self.decode_run(r, prev, cur, x, comp)?;
                if x <= w {
                    (ra, rb, rc) = (cur[x - 1], prev[x], prev[x - 1]);
                }
            }
        }
        Ok(())
    }

    /// Decodes a run starting at `x` and the sample that interrupts it, if any; returns how
    /// many samples it decoded.
    fn decode_run(
        &mut self,
        r: &mut BitReader<'_>,
        prev: &[i32],
        cur: &mut [i32],
        x: usize,
        comp: usize,
    ) -> Result<usize, Error> {
        let w = prev.len() - 2;
        let ra = cur[x - 1];
        let remaining = w - x + 1;
        let count = self.read_run(r, remaining, comp)?;
        cur[x..x + count].fill(ra);
        if count == remaining {
            return Ok(count);
        }
        // The run interruption sample.
        let xi = x + count;
        let ra = cur[xi - 1];
        let rb = prev[xi];
        let ri_type = usize::from((ra - rb).abs() <= self.near);
        let k = self.run_interruption_k(ri_type);
        let glimit = self.limit - i32::from(J[self.run_index[comp]]) - 1;
        let em = r.golomb(k, glimit, self.qbpp)? as i32;
        let temp = em + ri_type as i32;
        let map = temp & 1 == 1;
        let abs = (temp + i32::from(map)) / 2;
        let q = 365 + ri_type;
        let e = if (k != 0 || 2 * self.nn[ri_type] >= self.ctx[q].n) == map {
            -abs
        } else {
            abs
        };
        self.update_run_interruption(ri_type, e, em);
        let (px, sign) = if ri_type == 1 {
            (ra, 1)
        } else {
            (rb, if ra > rb { -1 } else { 1 })
        };
        cur[xi] = self.fix_reconstructed(px + sign * e * (2 * self.near + 1));
        if self.run_index[comp] > 0 {
            self.run_index[comp] -= 1;
        }
        Ok(count + 1)
    }

    /// Encodes one line of one component from `src` (its samples), reconstructing into
    /// `lines.cur` what the decoder will see.
    fn encode_line(&mut self, wr: &mut BitWriter, lines: &mut Lines, src: &[i32], comp: usize) {
        let w = lines.width;
        let mut x = 1;
        while x <= w {
            let ra = lines.cur[x - 1];
            let rb = lines.prev[x];
            let rc = lines.prev[x - 1];
            let rd = lines.prev[x + 1];
            let qs = self.context(ra, rb, rc, rd);
            if qs != 0 {
                let (q, sign, px) = self.corrected_prediction(qs, ra, rb, rc);
                lines.cur[x] = self.encode_regular(wr, q, sign, px, src[x - 1]);
                x += 1;
            } else {
                x += self.encode_run(wr, lines, src, x, comp);
            }
        }
    }

    /// Codes a run of `count` samples (T.87 A.7.1.2) with the run index of `comp`; true when
    /// the run reached the end of the line (no interruption sample follows).
    fn write_run(
        &mut self,
        wr: &mut BitWriter,
        count: usize,
        end_of_line: bool,
        comp: usize,
    ) -> bool {
        let mut left = count;
        while left >= 1 << J[self.run_index[comp]] {
            wr.put(1, 1);
            left -= 1 << J[self.run_index[comp]];
            if self.run_index[comp] < 31 {
                self.run_index[comp] += 1;
            }
        }
        if end_of_line {
            if left > 0 {
                wr.put(1, 1);
            }
            return true;
        }
        wr.put(0, 1);
        wr.put(left as u32, u32::from(J[self.run_index[comp]]));
        false
    }

    /// Reads a run length of at most `remaining` samples with the run index of `comp`.
    fn read_run(
        &mut self,
        r: &mut BitReader<'_>,
        remaining: usize,
        comp: usize,
    ) -> Result<usize, Error> {
        let mut count = 0usize;
        while r.bit() == 1 {
            let len = (1usize << J[self.run_index[comp]]).min(remaining - count);
            count += len;
            if len == 1 << J[self.run_index[comp]] && self.run_index[comp] < 31 {
                self.run_index[comp] += 1;
            }
            if count == remaining {
                return Ok(count);
            }
        }
        count += r.bits(u32::from(J[self.run_index[comp]])) as usize;
        if count > remaining {
            return err("a run past the end of the line");
        }
        Ok(count)
    }

    /// Codes sample `ix` in regular mode (T.87 A.4–A.6) and returns what the decoder will
    /// reconstruct; `q`, `sign` (a mask) and `px` from [`Coder::corrected_prediction`].
    #[inline]
    fn encode_regular(&mut self, wr: &mut BitWriter, q: usize, sign: i32, px: i32, ix: i32) -> i32 {
        let e = self.quantize_error(((ix - px) ^ sign) - sign);
        let rx = (px + ((e ^ sign) - sign) * (2 * self.near + 1)).clamp(0, self.maxval);
        let e = self.modulo_range(e);
        let k = self.golomb_k(q);
        let m = if self.near == 0 && k == 0 && 2 * self.ctx[q].b <= -self.ctx[q].n {
            if e >= 0 {
                2 * e + 1
            } else {
                -2 * (e + 1)
            }
        } else if e >= 0 {
            2 * e
        } else {
            -2 * e - 1
        };
        wr.golomb(m as u32, k, self.limit, self.qbpp);
        self.update_regular(q, e);
        rx
    }

    fn encode_run(
        &mut self,
        wr: &mut BitWriter,
        lines: &mut Lines,
        src: &[i32],
        x: usize,
        comp: usize,
    ) -> usize {
        let w = lines.width;
        let ra = lines.cur[x - 1];
        let mut count = 0usize;
        while x + count <= w && (src[x + count - 1] - ra).abs() <= self.near {
            lines.cur[x + count] = ra;
            count += 1;
        }
        if self.write_run(wr, count, x + count > w, comp) {
            return count;
        }
        // The run interruption sample.
        let xi = x + count;
        let ra = lines.cur[xi - 1];
        let rb = lines.prev[xi];
        let ix = src[xi - 1];
        let ri_type = usize::from((ra - rb).abs() <= self.near);
        let (px, sign) = if ri_type == 1 {
            (ra, 1)
        } else {
            (rb, if ra > rb { -1 } else { 1 })
        };
        let e = self.quantize_error(sign * (ix - px));
        lines.cur[xi] = self.fix_reconstructed(px + sign * e * (2 * self.near + 1));
        let e = self.modulo_range(e);
        let q = 365 + ri_type;
        let k = self.run_interruption_k(ri_type);
        let map = (k == 0 && e > 0 && 2 * self.nn[ri_type] < self.ctx[q].n)
            || (e < 0 && 2 * self.nn[ri_type] >= self.ctx[q].n)
            || (e < 0 && k != 0);
        let em = 2 * e.abs() - ri_type as i32 - i32::from(map);
        let glimit = self.limit - i32::from(J[self.run_index[comp]]) - 1;
        wr.golomb(em as u32, k, glimit, self.qbpp);
        self.update_run_interruption(ri_type, e, em);
        if self.run_index[comp] > 0 {
            self.run_index[comp] -= 1;
        }
        count + 1
    }
}

// ===== sample-interleaved scans (three components coded pixel by pixel) =====

struct Lines3 {
    c: [Lines; 3],
}

impl Coder {
    fn decode_line3(&mut self, r: &mut BitReader<'_>, l: &mut Lines3) -> Result<(), Error> {
        let w = l.c[0].width;
        let mut x = 1;
        while x <= w {
            // Regular pixels until a run starts, on slices whose length the compiler knows.
            {
                let [l0, l1, l2] = &mut l.c;
                let (p0, c0) = (&l0.prev[..w + 2], &mut l0.cur[..w + 2]);
                let (p1, c1) = (&l1.prev[..w + 2], &mut l1.cur[..w + 2]);
                let (p2, c2) = (&l2.prev[..w + 2], &mut l2.cur[..w + 2]);
                while x <= w {
                    let q0 = self.context(c0[x - 1], p0[x], p0[x - 1], p0[x + 1]);
                    let q1 = self.context(c1[x - 1], p1[x], p1[x - 1], p1[x + 1]);
                    let q2 = self.context(c2[x - 1], p2[x], p2[x - 1], p2[x + 1]);
                    if q0 | q1 | q2 == 0 {
                        break;
                    }
                    c0[x] = self.decode_regular_sample(r, q0, c0[x - 1], p0[x], p0[x - 1])?;
                    c1[x] = self.decode_regular_sample(r, q1, c1[x - 1], p1[x], p1[x - 1])?;
                    c2[x] = self.decode_regular_sample(r, q2, c2[x - 1], p2[x], p2[x - 1])?;
                    x += 1;
                }
            }
            if x <= w {
                x += self.decode_run3(r, l, x)?;
            }
        }
        Ok(())
    }

    /// Decodes the sample of regular-mode context `qs` (non-zero; its sign is the context's
    /// sign, T.87 A.3.4) and returns it reconstructed.
    #[inline(always)]
    fn decode_regular_sample(
        &mut self,
        r: &mut BitReader<'_>,
        qs: i32,
        ra: i32,
        rb: i32,
        rc: i32,
    ) -> Result<i32, Error> {
        let (q, sign, px) = self.corrected_prediction(qs, ra, rb, rc);
        let cx = self.ctx[q];
        let k = golomb_k(cx.n, cx.a);
        let m = r.golomb_within(self.max_high, k, self.qbpp)? as i32;
        // The error unmapped (A.5.2): even m is m / 2, odd m is -(m + 1) / 2.
        let mut e = (m >> 1) ^ -(m & 1);
        if k == 0 && self.near == 0 && 2 * cx.b <= -cx.n {
            e = !e; // -e - 1
        }
        self.update_regular(q, e);
        let e = (e ^ sign) - sign;
        Ok(self.fix_reconstructed(px + e * (2 * self.near + 1)))
    }

    fn decode_run3(
        &mut self,
        r: &mut BitReader<'_>,
        l: &mut Lines3,
        x: usize,
    ) -> Result<usize, Error> {
        let w = l.c[0].width;
        let remaining = w - x + 1;
        let count = self.read_run(r, remaining, 0)?;
        for lines in &mut l.c {
            let ra = lines.cur[x - 1];
            for v in &mut lines.cur[x..x + count] {
                *v = ra;
            }
        }
        if count == remaining {
            return Ok(count);
        }
        let xi = x + count;
        // CharLS codes each component's interruption in run context 0, predicted from Rb.
        let k_limit = self.limit - i32::from(J[self.run_index[0]]) - 1;
        for lines in &mut l.c {
            let (ra, rb) = (lines.cur[xi - 1], lines.prev[xi]);
            let k = self.run_interruption_k(0);
            let em = r.golomb(k, k_limit, self.qbpp)? as i32;
            let map = em & 1 == 1;
            let abs = (em + i32::from(map)) / 2;
            let e = if (k != 0 || 2 * self.nn[0] >= self.ctx[365].n) == map {
                -abs
            } else {
                abs
            };
            self.update_run_interruption(0, e, em);
            let sign = if ra > rb { -1 } else { 1 };
            lines.cur[xi] = self.fix_reconstructed(rb + sign * e * (2 * self.near + 1));
        }
        if self.run_index[0] > 0 {
            self.run_index[0] -= 1;
        }
        Ok(count + 1)
    }

    fn encode_line3(&mut self, wr: &mut BitWriter, l: &mut Lines3, src: [&[i32]; 3]) {
        let w = l.c[0].width;
        let mut x = 1;
        while x <= w {
            let mut qs = [0i32; 3];
            for (i, lines) in l.c.iter().enumerate() {
                qs[i] = self.context(
                    lines.cur[x - 1],
                    lines.prev[x],
                    lines.prev[x - 1],
                    lines.prev[x + 1],
                );
            }
            if qs == [0, 0, 0] {
                x += self.encode_run3(wr, l, src, x);
                continue;
            }
            for (i, lines) in l.c.iter_mut().enumerate() {
                let (ra, rb, rc) = (lines.cur[x - 1], lines.prev[x], lines.prev[x - 1]);
                // A flat component beside others that are not: regular context 0.
                let (q, sign, px) = self.corrected_prediction(qs[i], ra, rb, rc);
                lines.cur[x] = self.encode_regular(wr, q, sign, px, src[i][x - 1]);
            }
            x += 1;
        }
    }

    fn encode_run3(
        &mut self,
        wr: &mut BitWriter,
        l: &mut Lines3,
        src: [&[i32]; 3],
        x: usize,
    ) -> usize {
        let w = l.c[0].width;
        let ra: [i32; 3] = [l.c[0].cur[x - 1], l.c[1].cur[x - 1], l.c[2].cur[x - 1]];
        let mut count = 0usize;
        while x + count <= w && (0..3).all(|i| (src[i][x + count - 1] - ra[i]).abs() <= self.near) {
            for (lines, &v) in l.c.iter_mut().zip(&ra) {
                lines.cur[x + count] = v;
            }
            count += 1;
        }
        if self.write_run(wr, count, x + count > w, 0) {
            return count;
        }
        let xi = x + count;
        let glimit = self.limit - i32::from(J[self.run_index[0]]) - 1;
        for (i, lines) in l.c.iter_mut().enumerate() {
            let (ra, rb) = (lines.cur[xi - 1], lines.prev[xi]);
            let sign = if ra > rb { -1 } else { 1 };
            let e = self.quantize_error(sign * (src[i][xi - 1] - rb));
            lines.cur[xi] = self.fix_reconstructed(rb + sign * e * (2 * self.near + 1));
            let e = self.modulo_range(e);
            let k = self.run_interruption_k(0);
            let map = (k == 0 && e > 0 && 2 * self.nn[0] < self.ctx[365].n)
                || (e < 0 && 2 * self.nn[0] >= self.ctx[365].n)
                || (e < 0 && k != 0);
            let em = 2 * e.abs() - i32::from(map);
            wr.golomb(em as u32, k, glimit, self.qbpp);
            self.update_run_interruption(0, e, em);
        }
        if self.run_index[0] > 0 {
            self.run_index[0] -= 1;
        }
        count + 1
    }
}

// ===== markers =====

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOF55: u8 = 0xF7;
const LSE: u8 = 0xF8;
const SOS: u8 = 0xDA;
const DRI: u8 = 0xDD;

fn be16(b: &[u8], at: usize) -> Result<usize, Error> {
    match b.get(at..at + 2) {
        Some(s) => Ok(usize::from(u16::from_be_bytes([s[0], s[1]]))),
        None => err("truncated header"),
    }
}

struct Frame {
    width: usize,
    height: usize,
    bits: u8,
    ids: Vec<u8>,
}

/// Decodes a JPEG-LS stream (SOI ... EOI).
pub fn decode(data: &[u8]) -> Result<Image, Error> {
    decode_limited(data, 1 << 30)
}

/// [`decode`], refusing (before allocating anything for it) a frame header that announces more
/// than `max_samples` samples (width × height × components): a caller that knows the image's
/// size from elsewhere (DICOM's Rows, Columns and Samples per Pixel) passes it, so a crafted
/// header cannot make it allocate more.
pub fn decode_limited(data: &[u8], max_samples: usize) -> Result<Image, Error> {
    if data.len() < 4 || data[0] != 0xFF || data[1] != SOI {
        return err("no SOI marker");
    }
    let mut pos = 2;
    let mut frame: Option<Frame> = None;
    let mut lse: Option<(i32, [i32; 4])> = None;
    let mut restart_interval = 0usize;
    let mut samples: Vec<u16> = Vec::new();
    let mut done = Vec::<bool>::new();
    let mut first_scan: Option<(u16, u8)> = None;
    let mut transform = 0u8;
    loop {
        // Markers may be preceded by fill bytes 0xFF.
        while data.get(pos) == Some(&0xFF) && data.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if data.get(pos) != Some(&0xFF) {
            return err(format!("expected a marker at byte {pos}"));
        }
        let marker = *data.get(pos + 1).ok_or_else(|| bad("no EOI"))?;
        pos += 2;
        match marker {
            EOI => break,
            SOF55 => {
                let len = be16(data, pos)?;
                let seg = data
                    .get(pos..pos + len)
                    .ok_or_else(|| bad("truncated SOF"))?;
                if len < 6 {
                    return err("short SOF");
                }
                let bits = seg[2];
                let height = be16(seg, 3)?;
                let width = be16(seg, 5)?;
                let nf = usize::from(*seg.get(7).ok_or_else(|| bad("short SOF"))?);
                if !(2..=16).contains(&bits) {
                    return err(format!("{bits} bits per sample"));
                }
                if width == 0 || height == 0 {
                    return err("zero width or height (DNL is not supported)");
                }
                if nf != 1 && nf != 3 {
                    return err(format!("{nf} components"));
                }
                if len < 8 + 3 * nf {
                    return err("short SOF");
                }
                let ids: Vec<u8> = (0..nf).map(|i| seg[8 + 3 * i]).collect();
                let total = width
                    .checked_mul(height)
                    .and_then(|p| p.checked_mul(nf))
                    .filter(|&t| t <= max_samples.min(1 << 30))
                    .ok_or_else(|| {
                        bad(format!(
                            "a {width}×{height}×{nf} frame header: more than the {max_samples} samples expected"
                        ))
                    })?;
                samples = vec![0; total];
                done = vec![false; nf];
                frame = Some(Frame {
                    width,
                    height,
                    bits,
                    ids,
                });
                pos += len;
            }
            LSE => {
                let len = be16(data, pos)?;
                let seg = data
                    .get(pos..pos + len)
                    .ok_or_else(|| bad("truncated LSE"))?;
                match seg.get(2) {
                    Some(1) if len >= 13 => {
                        let v = |i| be16(seg, i).map(|x| x as i32);
                        lse = Some((v(3)?, [v(5)?, v(7)?, v(9)?, v(11)?]));
                    }
                    Some(1) => return err("short LSE"),
                    Some(t) => {
                        return err(format!("LSE type {t} (mapping tables) is not supported"))
                    }
                    None => return err("short LSE"),
                }
                pos += len;
            }
            DRI => {
                let len = be16(data, pos)?;
                restart_interval = match len {
                    4 => be16(data, pos + 2)?,
                    5 => {
                        let b = data.get(pos + 2..pos + 5).ok_or_else(|| bad("short DRI"))?;
                        (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
                    }
                    6 => {
                        let b = data.get(pos + 2..pos + 6).ok_or_else(|| bad("short DRI"))?;
                        u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
                    }
                    _ => return err("bad DRI"),
                };
                pos += len;
            }
            0xE8 => {
                // APP8: CharLS writes "mrfx" + a colour transform id here.
                let len = be16(data, pos)?;
                let seg = data
                    .get(pos..pos + len)
                    .ok_or_else(|| bad("truncated APP8"))?;
                if len == 7 && &seg[2..6] == b"mrfx" {
                    transform = seg[6];
                }
                pos += len;
            }
            SOS => {
                let f = frame.as_ref().ok_or_else(|| bad("SOS before SOF"))?;
                let len = be16(data, pos)?;
                let seg = data
                    .get(pos..pos + len)
                    .ok_or_else(|| bad("truncated SOS"))?;
                let ns = usize::from(*seg.get(2).ok_or_else(|| bad("short SOS"))?);
                if ns == 0 || len < 6 + 2 * ns {
                    return err("short SOS");
                }
                let mut comps = Vec::with_capacity(ns);
                for i in 0..ns {
                    let id = seg[3 + 2 * i];
                    if seg[4 + 2 * i] != 0 {
                        return err("mapping tables are not supported");
                    }
                    let c = f
                        .ids
                        .iter()
                        .position(|&x| x == id)
                        .ok_or_else(|| bad(format!("scan names unknown component {id}")))?;
                    comps.push(c);
                }
                let near = i32::from(seg[3 + 2 * ns]);
                let ilv = seg[4 + 2 * ns];
                if seg[5 + 2 * ns] & 0x0F != 0 {
                    return err("point transform is not supported");
                }
                if ilv > 2 || (ns == 1 && ilv != 0) || (ns > 1 && ilv == 0) {
                    return err(format!("interleave mode {ilv} with {ns} components"));
                }
                if ilv == 2 && ns != 3 {
                    return err("sample interleave needs three components");
                }
                first_scan.get_or_insert((near as u16, ilv));
                if let Some((maxval, _)) = lse {
                    if maxval >= 1 << f.bits {
                        return err(format!("MAXVAL {maxval} does not fit {} bits", f.bits));
                    }
                }
                let params = match lse {
                    Some((maxval, t)) if maxval != 0 => Params::with_maxval(maxval, near, Some(t)),
                    Some((_, t)) => {
                        let d = Params::defaults(f.bits, near);
                        Params::with_maxval(d.maxval, near, Some(t))
                    }
                    None => Params::defaults(f.bits, near),
                };
                pos += len;
                pos = decode_scan(
                    data,
                    pos,
                    f,
                    &comps,
                    &params,
                    near,
                    ilv,
                    restart_interval,
                    &mut samples,
                )?;
                for c in comps {
                    done[c] = true;
                }
            }
            0xD0..=0xD7 => return err("restart marker outside a scan"),
            0xC0..=0xCF | 0xF9..=0xFF if marker != 0xC4 && marker != 0xCC => {
                return err(format!("marker FF{marker:02X}: not a JPEG-LS stream"));
            }
            _ => {
                // Other segments (APPn, COM, ...) are skipped.
                let len = be16(data, pos)?;
                if len < 2 {
                    return err("bad segment length");
                }
                pos += len;
            }
        }
    }
    let f = frame.ok_or_else(|| bad("no SOF55 frame header"))?;
    if done.iter().any(|d| !d) {
        return err("a component has no scan");
    }
    let (near, interleave) = first_scan.unwrap_or((0, 0));
    let mut img = Image {
        width: f.width,
        height: f.height,
        components: f.ids.len(),
        bits: f.bits,
        near,
        interleave,
        samples,
    };
    if transform != 0 {
        inverse_colour_transform(&mut img, transform)?;
    }
    Ok(img)
}

/// CharLS's HP1-HP3 colour transforms (its APP8 "mrfx" segment), inverted.
fn inverse_colour_transform(img: &mut Image, t: u8) -> Result<(), Error> {
    if img.components != 3 {
        return err("a colour transform on a non-colour image");
    }
    let range = 1i32 << img.bits;
    let half = range / 2;
    let m = |v: i32| (v.rem_euclid(range)) as u16;
    for px in img.samples.chunks_exact_mut(3) {
        let (v1, v2, v3) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
        let (r, g, b) = match t {
            1 => (v1 + v2 - half, v2, v3 + v2 - half),
            2 => {
                // R is reduced to its range before B uses it: the shift is not modular
                // (CharLS keeps R in the sample type).
                let r = i32::from(m(v1 + v2 - half));
                (r, v2, v3 + ((r + v2) >> 1) - half)
            }
            3 => {
                let g = v1 - ((v3 + v2) >> 2) + half / 2;
                let r = v3 + g - half;
                let b = v2 + g - half;
                (r, g, b)
            }
            _ => return err(format!("colour transform {t}")),
        };
        px[0] = m(r);
        px[1] = m(g);
        px[2] = m(b);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn decode_scan(
    data: &[u8],
    start: usize,
    f: &Frame,
    comps: &[usize],
    params: &Params,
    near: i32,
    ilv: u8,
    restart_interval: usize,
    out: &mut [u16],
) -> Result<usize, Error> {
    let mut coder = Coder::new(params, near)?;
    let nf = f.ids.len();
    let (w, h) = (f.width, f.height);
    let mut r = BitReader::new(data, start);
    let mut lines: Vec<Lines> = comps.iter().map(|_| Lines::new(w)).collect();
    let mut l3 = Lines3 {
        c: [Lines::new(w), Lines::new(w), Lines::new(w)],
    };
    let store = |out: &mut [u16], c: usize, y: usize, line: &Lines| {
        let row = &mut out[y * w * nf..(y + 1) * w * nf];
        let samples = &line.cur[1..=w];
        // Greyscale (the usual frame) as a plain copy; components into their slot.
        if nf == 1 {
            for (o, &v) in row.iter_mut().zip(samples) {
                *o = v as u16;
            }
        } else {
            for (o, &v) in row.chunks_exact_mut(nf).zip(samples) {
                o[c] = v as u16;
            }
        }
    };
    let mut first = true;
    for y in 0..h {
        if restart_interval > 0 && y > 0 && y % restart_interval == 0 {
            // RSTm: byte-aligned, contexts and line history reset.
            let at = r.end_position();
            if data.get(at) != Some(&0xFF)
                || !(0xD0..=0xD7).contains(&data.get(at + 1).copied().unwrap_or(0))
            {
                return err(format!("expected a restart marker at line {y}"));
            }
            r = BitReader::new(data, at + 2);
            coder.reset_contexts();
            for l in lines.iter_mut().chain(l3.c.iter_mut()) {
                l.restart();
            }
            first = true;
        }
        match ilv {
            2 => {
                for l in &mut l3.c {
                    l.start(first);
                }
                coder.decode_line3(&mut r, &mut l3)?;
                for (i, &c) in comps.iter().enumerate() {
                    store(out, c, y, &l3.c[i]);
                }
            }
            1 => {
                for (i, &c) in comps.iter().enumerate() {
                    lines[i].start(first);
                    coder.decode_line(&mut r, &mut lines[i], i)?;
                    store(out, c, y, &lines[i]);
                }
            }
            _ => {
                lines[0].start(first);
                coder.decode_line(&mut r, &mut lines[0], 0)?;
                store(out, comps[0], y, &lines[0]);
            }
        }
        first = false;
    }
    Ok(r.end_position())
}

/// Encodes samples (interleaved by pixel, `components` of 1 or 3, `bits` of 2 to 16) as a
/// JPEG-LS stream with default preset parameters.
pub fn encode(
    samples: &[u16],
    width: usize,
    height: usize,
    components: usize,
    bits: u8,
    opts: EncodeOptions,
) -> Result<Vec<u8>, Error> {
    if !(2..=16).contains(&bits) {
        return err(format!("{bits} bits per sample"));
    }
    if components != 1 && components != 3 {
        return err(format!("{components} components"));
    }
    if width == 0 || height == 0 || width > 65535 || height > 65535 {
        return err(format!("{width}×{height}"));
    }
    if samples.len() != width * height * components {
        return err(format!(
            "{} samples for {width}×{height}×{components}",
            samples.len()
        ));
    }
    let maxval = (1u32 << bits) - 1;
    if let Some(v) = samples.iter().find(|&&v| u32::from(v) > maxval) {
        return err(format!("sample {v} does not fit {bits} bits"));
    }
    let ilv = if components == 1 {
        0
    } else {
        opts.interleave.min(2)
    };
    let near = i32::from(opts.near);
    let params = Params::defaults(bits, near);
    // Validates NEAR against MAXVAL.
    Coder::new(&params, near)?;
    let mut out = Vec::with_capacity(samples.len() + 64);
    out.extend_from_slice(&[0xFF, SOI]);
    // SOF55: P, Y, X, Nf, then per component Ci, Hi/Vi = 1/1, Tq = 0.
    out.extend_from_slice(&[0xFF, SOF55]);
    out.extend_from_slice(&((8 + 3 * components) as u16).to_be_bytes());
    out.push(bits);
    out.extend_from_slice(&(height as u16).to_be_bytes());
    out.extend_from_slice(&(width as u16).to_be_bytes());
    out.push(components as u8);
    for c in 0..components {
        out.extend_from_slice(&[c as u8 + 1, 0x11, 0]);
    }
    let planes: Vec<Vec<i32>> = (0..components)
        .map(|c| {
            samples
                .iter()
                .skip(c)
                .step_by(components)
                .map(|&v| i32::from(v))
                .collect()
        })
        .collect();
    let sos = |out: &mut Vec<u8>, ids: &[u8]| {
        out.extend_from_slice(&[0xFF, SOS]);
        out.extend_from_slice(&((6 + 2 * ids.len()) as u16).to_be_bytes());
        out.push(ids.len() as u8);
        for &id in ids {
            out.extend_from_slice(&[id, 0]);
        }
        out.extend_from_slice(&[opts.near as u8, ilv, 0]);
    };
    if ilv == 0 {
        for (c, plane) in planes.iter().enumerate() {
            sos(&mut out, &[c as u8 + 1]);
            let mut coder = Coder::new(&params, near)?;
            let mut wr = BitWriter::new(std::mem::take(&mut out));
            let mut lines = Lines::new(width);
            for y in 0..height {
                lines.start(y == 0);
                coder.encode_line(&mut wr, &mut lines, &plane[y * width..(y + 1) * width], 0);
            }
            out = wr.finish();
        }
    } else {
        let ids: Vec<u8> = (1..=components as u8).collect();
        sos(&mut out, &ids);
        let mut coder = Coder::new(&params, near)?;
        let mut wr = BitWriter::new(std::mem::take(&mut out));
        if ilv == 1 {
            let mut lines: Vec<Lines> = (0..components).map(|_| Lines::new(width)).collect();
            for y in 0..height {
                for (c, plane) in planes.iter().enumerate() {
                    lines[c].start(y == 0);
                    coder.encode_line(
                        &mut wr,
                        &mut lines[c],
                        &plane[y * width..(y + 1) * width],
                        c,
                    );
                }
            }
        } else {
            let mut l3 = Lines3 {
                c: [Lines::new(width), Lines::new(width), Lines::new(width)],
            };
            for y in 0..height {
                for l in &mut l3.c {
                    l.start(y == 0);
                }
                let row = |c: usize| &planes[c][y * width..(y + 1) * width];
                coder.encode_line3(&mut wr, &mut l3, [row(0), row(1), row(2)]);
            }
        }
        out = wr.finish();
    }
    out.extend_from_slice(&[0xFF, EOI]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame header announcing more samples than the caller expects is refused before
    /// anything is allocated for it (a 16×16 image whose SOF says 65535×65535 would otherwise
    /// take 8 GiB).
    #[test]
    fn a_frame_header_larger_than_expected_is_refused_before_allocating() {
        let samples = vec![7u16; 16 * 16];
        let mut stream = encode(&samples, 16, 16, 1, 8, EncodeOptions::default()).expect("encode");
        let sof = stream
            .windows(2)
            .position(|w| w == [0xFF, SOF55])
            .expect("SOF55");
        // Y and X follow the length (2 bytes) and P (1 byte).
        stream[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        let e = decode_limited(&stream, 16 * 16).expect_err("refused");
        assert!(e.to_string().contains("65535×65535×1"), "{e}");
        assert!(
            decode_limited(&stream[..], usize::MAX).is_err(),
            "and too large anyway"
        );
        let ok = decode_limited(
            &encode(&samples, 16, 16, 1, 8, EncodeOptions::default()).expect("encode"),
            16 * 16,
        )
        .expect("the expected size decodes");
        assert_eq!(ok.samples, samples);
    }

    fn noise(n: usize, bits: u8, seed: u64) -> Vec<u16> {
        let mut s = seed;
        let max = (1u32 << bits) - 1;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                // Smooth ramps with noise and flat runs, to exercise both modes.
                let base = ((i % 97) as u32 * 37 + (i / 211) as u32 * 11) % (max + 1);
                if (i / 50) % 4 == 0 {
                    (max / 3) as u16
                } else {
                    ((base + (s % 5) as u32).min(max)) as u16
                }
            })
            .collect()
    }

    #[test]
    fn default_thresholds_match_the_standard_table() {
        // T.87 Table C.3: 8-bit lossless defaults are 3, 7, 21, RESET 64.
        let p = Params::defaults(8, 0);
        assert_eq!((p.t1, p.t2, p.t3, p.reset), (3, 7, 21, 64));
        // 16-bit: FACTOR = (4095 + 128) / 256 = 16 → 18, 67, 276.
        let p = Params::defaults(16, 0);
        assert_eq!((p.t1, p.t2, p.t3), (18, 67, 276));
        // 12-bit: FACTOR = 16 as well.
        let p = Params::defaults(12, 0);
        assert_eq!((p.t1, p.t2, p.t3), (18, 67, 276));
    }

    #[test]
    fn round_trips_lossless_and_near_lossless() {
        for &(w, h, comps, bits, near, ilv) in &[
            (17usize, 13usize, 1usize, 8u8, 0u16, 0u8),
            (64, 40, 1, 16, 0, 0),
            (31, 7, 1, 12, 0, 0),
            (33, 9, 3, 8, 0, 1),
            (33, 9, 3, 8, 0, 2),
            (33, 9, 3, 8, 0, 0),
            (40, 30, 1, 8, 3, 0),
            (40, 30, 3, 8, 2, 1),
            (40, 30, 3, 8, 2, 2),
            (25, 25, 1, 16, 7, 0),
            (5, 3, 1, 2, 0, 0),
            (1, 1, 1, 8, 0, 0),
            (1, 50, 3, 10, 1, 1),
        ] {
            let src = noise(w * h * comps, bits, (w * 31 + h) as u64);
            let enc = encode(
                &src,
                w,
                h,
                comps,
                bits,
                EncodeOptions {
                    near,
                    interleave: ilv,
                },
            )
            .expect("encode");
            let img = decode(&enc).expect("decode");
            assert_eq!(
                (img.width, img.height, img.components, img.bits),
                (w, h, comps, bits)
            );
            let worst = src
                .iter()
                .zip(&img.samples)
                .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
                .max()
                .unwrap_or(0);
            assert!(
                worst <= i32::from(near),
                "{w}×{h}×{comps} {bits}-bit near {near} ilv {ilv}: off by {worst}"
            );
            if near == 0 {
                assert_eq!(img.samples, src);
            }
        }
    }

    /// The entropy-coded segment of a one-scan stream made by `encode`: after the SOS
    /// segment, up to EOI.
    fn scan_data(stream: &[u8]) -> (&[u8], &[u8]) {
        let sos = stream
            .windows(2)
            .position(|w| w == [0xFF, SOS])
            .expect("SOS");
        let len = usize::from(u16::from_be_bytes([stream[sos + 2], stream[sos + 3]]));
        let start = sos + 2 + len;
        (&stream[..start], &stream[start..stream.len() - 2])
    }

    #[test]
    fn restart_intervals_decode() {
        // T.87: at a restart marker the coding state starts afresh, as at the start of a scan,
        // so a stream with a restart every R lines is the scans of its R-line strips joined by
        // RSTm markers, under one header with DRI.
        let (w, h, r) = (23usize, 20usize, 6usize);
        for comps in [1usize, 3] {
            let src = noise(w * h * comps, 8, 99);
            let opts = EncodeOptions {
                near: 0,
                interleave: 1,
            };
            let mut out = Vec::new();
            for (k, strip) in src.chunks(w * r * comps).enumerate() {
                let lines = strip.len() / (w * comps);
                let enc = encode(strip, w, lines, comps, 8, opts).expect("encode");
                let (header, data) = scan_data(&enc);
                if k == 0 {
                    // The first strip's header, with the whole height and a DRI segment.
                    let mut hdr = header.to_vec();
                    let sof = hdr
                        .windows(2)
                        .position(|x| x == [0xFF, SOF55])
                        .expect("SOF");
                    hdr[sof + 5..sof + 7].copy_from_slice(&(h as u16).to_be_bytes());
                    let sos = hdr.windows(2).position(|x| x == [0xFF, SOS]).expect("SOS");
                    let dri = [0xFF, DRI, 0, 4, 0, r as u8];
                    hdr.splice(sos..sos, dri);
                    out.extend_from_slice(&hdr);
                } else {
                    out.extend_from_slice(&[0xFF, 0xD0 + ((k - 1) % 8) as u8]);
                }
                out.extend_from_slice(data);
            }
            out.extend_from_slice(&[0xFF, EOI]);
            let img = decode(&out).expect("decode with restarts");
            assert_eq!(img.samples, src, "{comps} components");
        }
    }

    #[test]
    fn preset_parameters_segment_is_read() {
        // An LSE segment naming the default MAXVAL, T1, T2, T3 and RESET changes nothing; one
        // naming a MAXVAL beyond P bits is refused.
        let src = noise(40 * 30, 8, 3);
        let enc = encode(&src, 40, 30, 1, 8, EncodeOptions::default()).expect("encode");
        let sos = enc.windows(2).position(|x| x == [0xFF, SOS]).expect("SOS");
        let lse = |maxval: u16| {
            let mut v = vec![0xFF, LSE, 0, 13, 1];
            for x in [maxval, 3, 7, 21, 64] {
                v.extend_from_slice(&x.to_be_bytes());
            }
            v
        };
        let mut with = enc.clone();
        with.splice(sos..sos, lse(255));
        assert_eq!(decode(&with).expect("decode").samples, src);
        let mut bad = enc.clone();
        bad.splice(sos..sos, lse(1000));
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let src = noise(20 * 20, 8, 5);
        let enc = encode(&src, 20, 20, 1, 8, EncodeOptions::default()).expect("encode");
        for cut in 0..enc.len() {
            let _ = decode(&enc[..cut]);
        }
        let mut bad = enc.clone();
        for i in (20..bad.len() - 2).step_by(3) {
            bad[i] ^= 0x5A;
            let _ = decode(&bad);
        }
        assert!(decode(b"").is_err());
        assert!(decode(&[0xFF, 0xD8, 0xFF, 0xD9]).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(96))]
        /// Any image round-trips: exactly when lossless, within NEAR otherwise.
        #[test]
        fn round_trip(
            w in 1usize..48,
            h in 1usize..24,
            three in proptest::bool::ANY,
            bits in 2u8..=16,
            near in 0u16..6,
            ilv in 0u8..3,
            seed in proptest::num::u64::ANY,
            flat in 0u8..4,
        ) {
            let comps = if three { 3 } else { 1 };
            let max = (1u32 << bits) - 1;
            let near = near.min((max / 2).min(255) as u16);
            let mut s = seed | 1;
            let samples: Vec<u16> = (0..w * h * comps)
                .map(|i| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    // Some images mostly flat (run mode), others noisy.
                    if (i / 9) % 4 < usize::from(flat) { (max / 3) as u16 } else { (s as u32 & max) as u16 }
                })
                .collect();
            let enc = encode(&samples, w, h, comps, bits, EncodeOptions { near, interleave: ilv })
                .expect("encode");
            let img = decode(&enc).expect("decode");
            proptest::prop_assert_eq!((img.width, img.height, img.components), (w, h, comps));
            for (a, b) in samples.iter().zip(&img.samples) {
                proptest::prop_assert!((i32::from(*a) - i32::from(*b)).abs() <= i32::from(near));
            }
        }
    }
}
