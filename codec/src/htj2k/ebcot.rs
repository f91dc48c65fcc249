//! The JPEG 2000 Part 1 block coder (ISO/IEC 15444-1 Annex D, EBCOT tier-1): a code-block's
//! magnitudes coded bit-plane by bit-plane in three passes (significance propagation, magnitude
//! refinement, cleanup), each decision through the MQ arithmetic coder of Annex C.
//!
//! Code-block style 0 (no bypass, no resets, no per-pass termination, no causal contexts): one
//! codeword segment for all the passes, flushed once at the end (C.2.9), which is what every
//! decoder reads and what OpenJPEG writes by default. Lossless coding keeps every pass, so no
//! rate allocation is needed.
//!
//! The state of each sample lives in 16 bits: its own significance and sign, whether the
//! current bit-plane has visited it and whether it was refined, and the significance and sign
//! of its neighbours, kept up to date as samples become significant, so a context is a table
//! lookup. A stripe column (the four samples a pass visits in a row, D.3) is one `u64`, with a
//! border of one column and one stripe around the block: a pass skips a column with one test
//! when nothing in it is to be coded (all significant, none significant, no significant
//! neighbour), which is most columns of most passes.

/// Neighbour significance: west, east, north, south, then the four diagonals.
const W: u16 = 1 << 0;
const E: u16 = 1 << 1;
const N: u16 = 1 << 2;
const S: u16 = 1 << 3;
const NW: u16 = 1 << 4;
const NE: u16 = 1 << 5;
const SW: u16 = 1 << 6;
const SE: u16 = 1 << 7;
const NEIGHBOURS: u16 = 0xFF;
/// Neighbour signs (negative), west, east, north, south.
const W_NEG: u16 = 1 << 8;
const E_NEG: u16 = 1 << 9;
const N_NEG: u16 = 1 << 10;
const S_NEG: u16 = 1 << 11;
/// The sample itself: significant; visited by this bit-plane's significance pass; refined once;
/// negative.
const SIG: u16 = 1 << 12;
const VISIT: u16 = 1 << 13;
const REFINED: u16 = 1 << 14;
const NEG: u16 = 1 << 15;

/// Context labels (D.3): zero coding 0–8, sign 9–13 (as [`SC`] gives them), refinement
/// 14–16, run-length, uniform.
const CTX_MR: usize = 14;
const CTX_RL: usize = 17;
const CTX_UNI: usize = 18;
const CONTEXTS: usize = 19;

/// The probability estimation table (Table C.2): Qe, next index after an MPS, after an LPS,
/// and whether an LPS switches the MPS sense.
const QE: [(u32, u8, u8, bool); 47] = [
    (0x5601, 1, 1, true),
    (0x3401, 2, 6, false),
    (0x1801, 3, 9, false),
    (0x0AC1, 4, 12, false),
    (0x0521, 5, 29, false),
    (0x0221, 38, 33, false),
    (0x5601, 7, 6, true),
    (0x5401, 8, 14, false),
    (0x4801, 9, 14, false),
    (0x3801, 10, 14, false),
    (0x3001, 11, 17, false),
    (0x2401, 12, 18, false),
    (0x1C01, 13, 20, false),
    (0x1601, 29, 21, false),
    (0x5601, 15, 14, true),
    (0x5401, 16, 14, false),
    (0x5101, 17, 15, false),
    (0x4801, 18, 16, false),
    (0x3801, 19, 17, false),
    (0x3401, 20, 18, false),
    (0x3001, 21, 19, false),
    (0x2801, 22, 19, false),
    (0x2401, 23, 20, false),
    (0x2201, 24, 21, false),
    (0x1C01, 25, 22, false),
    (0x1801, 26, 23, false),
    (0x1601, 27, 24, false),
    (0x1401, 28, 25, false),
    (0x1201, 29, 26, false),
    (0x1101, 30, 27, false),
    (0x0AC1, 31, 28, false),
    (0x09C1, 32, 29, false),
    (0x08A1, 33, 30, false),
    (0x0521, 34, 31, false),
    (0x0441, 35, 32, false),
    (0x02A1, 36, 33, false),
    (0x0221, 37, 34, false),
    (0x0141, 38, 35, false),
    (0x0111, 39, 36, false),
    (0x0085, 40, 37, false),
    (0x0049, 41, 38, false),
    (0x0025, 42, 39, false),
    (0x0015, 43, 40, false),
    (0x0009, 44, 41, false),
    (0x0005, 45, 42, false),
    (0x0001, 45, 43, false),
    (0x5601, 46, 46, false),
];

/// A state of the estimator as the coder walks it: Qe, and the packed next states.
#[derive(Clone, Copy)]
struct State {
    qe: u32,
    /// Index × 2 + MPS after an MPS, and after an LPS (the switch applied).
    next_mps: u8,
    next_lps: u8,
}

/// The 94 (index, MPS) states, so a context is one byte.
const STATES: [State; 94] = {
    let mut t = [State {
        qe: 0,
        next_mps: 0,
        next_lps: 0,
    }; 94];
    let mut i = 0;
    while i < 47 {
        let (qe, nmps, nlps, switch) = QE[i];
        let mut mps = 0;
        while mps < 2 {
            let lps_mps = if switch { 1 - mps } else { mps };
            t[i * 2 + mps] = State {
                qe,
                next_mps: nmps * 2 + mps as u8,
                next_lps: nlps * 2 + lps_mps as u8,
            };
            mps += 1;
        }
        i += 1;
    }
    t
};

/// The MQ encoder (C.2), its output starting after a placeholder byte that a carry could
/// never reach (the register starts at zero with 12 spare bits).
struct Mq {
    a: u32,
    c: u32,
    ct: u32,
    out: Vec<u8>,
    ctx: [u8; CONTEXTS],
}

impl Mq {
    fn new(out: Vec<u8>) -> Mq {
        let mut out = out;
        out.clear();
        out.push(0);
        let mut ctx = [0u8; CONTEXTS];
        // Initial states (Table D.7): the uniform context at 46, run-length at 3, the first
        // zero-coding context at 4, all with MPS 0.
        ctx[CTX_UNI] = 46 * 2;
        ctx[CTX_RL] = 3 * 2;
        ctx[0] = 4 * 2;
        Mq {
            a: 0x8000,
            c: 0,
            ct: 12,
            out,
            ctx,
        }
    }

    #[inline(always)]
    fn encode(&mut self, cx: usize, bit: bool) {
        let st = self.ctx[cx];
        let s = STATES[st as usize];
        let mps = (st & 1) != 0;
        self.a -= s.qe;
        if bit == mps {
            if self.a & 0x8000 != 0 {
                self.c += s.qe;
                return;
            }
            if self.a < s.qe {
                self.a = s.qe;
            } else {
                self.c += s.qe;
            }
            self.ctx[cx] = s.next_mps;
        } else {
            if self.a < s.qe {
                self.c += s.qe;
            } else {
                self.a = s.qe;
            }
            self.ctx[cx] = s.next_lps;
        }
        self.renormalize();
    }

    #[inline(always)]
    fn renormalize(&mut self) {
        // Shift out as many bits as bring A back to at least 0x8000, a byte at a time when
        // the count runs out.
        loop {
            let shift = self.a.leading_zeros() - 16;
            if shift == 0 {
                return;
            }
            let step = shift.min(self.ct);
            self.a <<= step;
            self.c <<= step;
            self.ct -= step;
            if self.ct == 0 {
                self.byte_out();
            }
        }
    }

    fn byte_out(&mut self) {
        let last = self.out.len() - 1;
        if self.out[last] == 0xFF {
            self.out.push((self.c >> 20) as u8);
            self.c &= 0xF_FFFF;
            self.ct = 7;
        } else if self.c & 0x800_0000 == 0 {
            self.out.push((self.c >> 19) as u8);
            self.c &= 0x7_FFFF;
            self.ct = 8;
        } else {
            self.out[last] += 1;
            if self.out[last] == 0xFF {
                self.c &= 0x7FF_FFFF;
                self.out.push((self.c >> 20) as u8);
                self.c &= 0xF_FFFF;
                self.ct = 7;
            } else {
                self.out.push((self.c >> 19) as u8);
                self.c &= 0x7_FFFF;
                self.ct = 8;
            }
        }
    }

    /// FLUSH (C.2.9): the register's bits that pin the interval, then the bytes; a last 0xFF
    /// is left out (decoders read 0xFF past the end). Returns the segment.
    fn finish(mut self) -> Vec<u8> {
        let t = self.c + self.a;
        self.c |= 0xFFFF;
        if self.c >= t {
            self.c -= 0x8000;
        }
        self.c <<= self.ct;
        self.byte_out();
        self.c <<= self.ct;
        self.byte_out();
        if self.out.last() == Some(&0xFF) {
            self.out.pop();
        }
        self.out.remove(0);
        self.out
    }
}

/// The zero-coding contexts (Table D.1) for each orientation (0: LL and LH, 1: HL, 2: HH),
/// by the eight neighbours' significance.
const ZC: [[u8; 256]; 3] = {
    let mut t = [[0u8; 256]; 3];
    let mut f = 0;
    while f < 256 {
        let h = bit(f, W) + bit(f, E);
        let v = bit(f, N) + bit(f, S);
        let d = bit(f, NW) + bit(f, NE) + bit(f, SW) + bit(f, SE);
        let mut o = 0;
        while o < 3 {
            let (h, v) = if o == 1 { (v, h) } else { (h, v) };
            t[o][f] = if o == 2 {
                let hv = h + v;
                if d >= 3 {
                    8
                } else if d == 2 {
                    if hv >= 1 {
                        7
                    } else {
                        6
                    }
                } else if d == 1 {
                    if hv >= 2 {
                        5
                    } else if hv == 1 {
                        4
                    } else {
                        3
                    }
                } else if hv >= 2 {
                    2
                } else if hv == 1 {
                    1
                } else {
                    0
                }
            } else if h == 2 {
                8
            } else if h == 1 {
                if v >= 1 {
                    7
                } else if d >= 1 {
                    6
                } else {
                    5
                }
            } else if v == 2 {
                4
            } else if v == 1 {
                3
            } else if d >= 2 {
                2
            } else if d == 1 {
                1
            } else {
                0
            };
            o += 1;
        }
        f += 1;
    }
    t
};

const fn bit(f: usize, m: u16) -> u32 {
    (f as u16 & m != 0) as u32
}

/// A neighbour's contribution to the sign context: 0 insignificant, −1 negative, 1 positive.
const fn contrib(sig: u16, neg: u16, m: u16) -> i32 {
    if sig & m == 0 {
        0
    } else if neg & m != 0 {
        -1
    } else {
        1
    }
}

const fn clamp(v: i32) -> i32 {
    if v > 1 {
        1
    } else if v < -1 {
        -1
    } else {
        v
    }
}

/// The sign contexts (Table D.3): by the horizontal and vertical neighbours' significance (low
/// four bits) and signs (high four), the context and the bit the sign is XORed with.
const SC: [(u8, bool); 256] = {
    let mut t = [(0u8, false); 256];
    let mut i = 0;
    while i < 256 {
        let sig = i as u16 & 0xF;
        let neg = (i as u16 >> 4) & 0xF;
        // The sign bits sit in the same order as the significance bits (W, E, N, S).
        let h = clamp(contrib(sig, neg, W) + contrib(sig, neg, E));
        let v = clamp(contrib(sig, neg, N) + contrib(sig, neg, S));
        t[i] = match (h, v) {
            (1, 1) => (13, false),
            (1, 0) => (12, false),
            (1, -1) => (11, false),
            (0, 1) => (10, false),
            (0, 0) => (9, false),
            (0, -1) => (10, true),
            (-1, 1) => (11, true),
            (-1, 0) => (12, true),
            _ => (13, true),
        };
        i += 1;
    }
    t
};

/// A coded code-block: its codeword segment, the number of coding passes, and its number of
/// magnitude bit-planes (M_b of B.10.5: the zero bit-planes are K_max − M_b).
pub(crate) struct Block {
    pub data: Vec<u8>,
    pub passes: u32,
    pub planes: u32,
}

/// Reusable buffers for coding code-blocks one after the other.
#[derive(Default)]
pub(crate) struct Coder {
    /// Per stripe column, the four samples' flags (row r in bits 16r..16r+16).
    flags: Vec<u64>,
    /// Magnitudes, four per stripe column.
    mag: Vec<u32>,
}

/// A band's orientation for the zero-coding contexts: 0 for LL and LH, 1 for HL, 2 for HH.
pub(crate) fn orientation(resolution: u32, band: usize) -> usize {
    if resolution == 0 {
        0
    } else {
        [1, 0, 2][band]
    }
}

/// A flag in each of a column's four rows.
const fn x4(m: u16) -> u64 {
    (m as u64) * 0x0001_0001_0001_0001
}

/// Row `r`'s flags in a column.
#[inline(always)]
fn lane(col: u64, r: usize) -> u16 {
    (col >> (16 * r)) as u16
}

/// One coding pass's view of a block: the flags and magnitudes, the width of a stripe of
/// columns (with its border), and the MQ coder.
struct Pass<'a> {
    mq: &'a mut Mq,
    flags: &'a mut [u64],
    mag: &'a [u32],
    /// Columns a stripe holds, borders included.
    cw: usize,
    w: usize,
    h: usize,
    zc: &'a [u8; 256],
}

impl Coder {
    /// Codes the `width`×`height` block of coefficients at the start of `coef` (rows `stride`
    /// apart); `None` when every coefficient is zero (the block is not included).
    pub(crate) fn encode(
        &mut self,
        coef: &[i32],
        width: usize,
        height: usize,
        stride: usize,
        orient: usize,
    ) -> Option<Block> {
        let cw = width + 2;
        let stripes = height.div_ceil(4);
        self.flags.clear();
        self.flags.resize((stripes + 2) * cw, 0);
        self.mag.clear();
        self.mag.resize(self.flags.len() * 4, 0);
        let mut max = 0u32;
        for y in 0..height {
            let row = &coef[y * stride..y * stride + width];
            let base = (y / 4 + 1) * cw + 1;
            let r = y % 4;
            for (x, &c) in row.iter().enumerate() {
                let m = c.unsigned_abs();
                max |= m;
                self.mag[(base + x) * 4 + r] = m;
                if c < 0 {
                    self.flags[base + x] |= u64::from(NEG) << (16 * r);
                }
            }
        }
        if max == 0 {
            return None;
        }
        let planes = 32 - max.leading_zeros();
        let mut mq = Mq::new(Vec::with_capacity(width * height / 2));
        let mut pass = Pass {
            mq: &mut mq,
            flags: &mut self.flags,
            mag: &self.mag,
            cw,
            w: width,
            h: height,
            zc: &ZC[orient],
        };
        for p in (0..planes).rev() {
            if p + 1 < planes {
                pass.significance(p);
                pass.refinement(p);
            }
            pass.cleanup(p);
        }
        Some(Block {
            data: mq.finish(),
            passes: 3 * planes - 2,
            planes,
        })
    }
}

impl Pass<'_> {
    /// Marks row `r` of column `c` significant and tells its neighbours.
    #[inline(always)]
    fn make_significant(&mut self, c: usize, r: usize) {
        let flags = &mut *self.flags;
        let sh = 16 * r;
        let neg = lane(flags[c], r) & NEG != 0;
        let sign = |s: u16| if neg { s } else { 0 };
        flags[c] |= u64::from(SIG) << sh;
        flags[c - 1] |= u64::from(E | sign(E_NEG)) << sh;
        flags[c + 1] |= u64::from(W | sign(W_NEG)) << sh;
        let (n, nsh) = if r > 0 {
            (c, sh - 16)
        } else {
            (c - self.cw, 48)
        };
        flags[n] |= u64::from(S | sign(S_NEG)) << nsh;
        flags[n - 1] |= u64::from(SE) << nsh;
        flags[n + 1] |= u64::from(SW) << nsh;
        let (s, ssh) = if r < 3 {
            (c, sh + 16)
        } else {
            (c + self.cw, 0)
        };
        flags[s] |= u64::from(N | sign(N_NEG)) << ssh;
        flags[s - 1] |= u64::from(NE) << ssh;
        flags[s + 1] |= u64::from(NW) << ssh;
    }

    /// Codes the sign of row `r` of column `c`, which has just become significant.
    #[inline(always)]
    fn code_sign(&mut self, c: usize, r: usize) {
        let f = lane(self.flags[c], r);
        let (cx, xor) = SC[((f & 0xF) | ((f >> 4) & 0xF0)) as usize];
        self.mq.encode(cx as usize, (f & NEG != 0) ^ xor);
        self.make_significant(c, r);
    }

    /// Zero coding of row `r` of column `c` at bit-plane `p`, then its sign if it became
    /// significant.
    #[inline(always)]
    fn code_sample(&mut self, c: usize, r: usize, f: u16, p: u32) {
        let bit = (self.mag[c * 4 + r] >> p) & 1 != 0;
        self.mq
            .encode(self.zc[(f & NEIGHBOURS) as usize] as usize, bit);
        if bit {
            self.code_sign(c, r);
        }
    }

    /// The stripes: their first column's index and their number of rows.
    fn stripes(&self) -> impl Iterator<Item = (usize, usize)> {
        let (cw, h) = (self.cw, self.h);
        (0..h.div_ceil(4)).map(move |s| ((s + 1) * cw + 1, (h - 4 * s).min(4)))
    }

    /// The significance propagation pass (D.3.1): insignificant samples with a significant
    /// neighbour.
    fn significance(&mut self, p: u32) {
        const ALL_SIG: u64 = x4(SIG);
        for (first, rows) in self.stripes() {
            for c in first..first + self.w {
                let col = self.flags[c];
                if col & x4(NEIGHBOURS) == 0 || col & ALL_SIG == ALL_SIG {
                    continue;
                }
                for r in 0..rows {
                    // Read again: the sample above may have just become significant.
                    let f = lane(self.flags[c], r);
                    if f & SIG == 0 && f & NEIGHBOURS != 0 {
                        self.flags[c] |= u64::from(VISIT) << (16 * r);
                        self.code_sample(c, r, f, p);
                    }
                }
            }
        }
    }

    /// The magnitude refinement pass (D.3.3): samples significant before this bit-plane.
    fn refinement(&mut self, p: u32) {
        for (first, rows) in self.stripes() {
            for c in first..first + self.w {
                let mut col = self.flags[c];
                if col & x4(SIG) == 0 {
                    continue;
                }
                for r in 0..rows {
                    let f = lane(col, r);
                    if f & (SIG | VISIT) == SIG {
                        let cx = if f & REFINED != 0 {
                            2
                        } else if f & NEIGHBOURS != 0 {
                            1
                        } else {
                            0
                        };
                        self.mq
                            .encode(CTX_MR + cx, (self.mag[c * 4 + r] >> p) & 1 != 0);
                        col |= u64::from(REFINED) << (16 * r);
                    }
                }
                self.flags[c] = col;
            }
        }
    }

    /// The cleanup pass (D.3.4): the samples the significance pass left, with run-length
    /// coding of whole stripe columns that are insignificant in an insignificant
    /// neighbourhood; clears the visits for the next bit-plane.
    fn cleanup(&mut self, p: u32) {
        const BUSY: u64 = x4(SIG | VISIT | NEIGHBOURS);
        for (first, rows) in self.stripes() {
            for c in first..first + self.w {
                let col = self.flags[c];
                let mut start = 0;
                if rows == 4 {
                    if col & BUSY == 0 {
                        // Run-length mode: one decision for the column, then where the first
                        // significant sample is.
                        let m = &self.mag[c * 4..c * 4 + 4];
                        let Some(r) = (0..4).find(|&r| (m[r] >> p) & 1 != 0) else {
                            self.mq.encode(CTX_RL, false);
                            continue;
                        };
                        self.mq.encode(CTX_RL, true);
                        self.mq.encode(CTX_UNI, r >> 1 != 0);
                        self.mq.encode(CTX_UNI, r & 1 != 0);
                        self.code_sign(c, r);
                        start = r + 1;
                    } else if ((col >> 12) | (col >> 13)) & x4(1) == x4(1) {
                        // Every sample significant or visited: nothing to code.
                        self.flags[c] = col & !x4(VISIT);
                        continue;
                    }
                }
                for r in start..rows {
                    let f = lane(self.flags[c], r);
                    if f & (SIG | VISIT) == 0 {
                        self.code_sample(c, r, f, p);
                    }
                }
                self.flags[c] &= !x4(VISIT);
            }
        }
    }
}
