//! The HT block coder's cleanup pass (ISO/IEC 15444-15 §7), encoding side: a code-block's
//! quantized coefficients, whole (bit-plane 0: lossless), as one HT cleanup segment made of
//! three streams — MagSgn (forward), MEL (forward) and VLC (backward) — and the interface
//! locator word in its last two bytes. Written after the standard's description and OpenJPH's
//! reference encoder (the stream rules below are the standard's; the code is ours).

use super::vlc_tables::{TABLE_0, TABLE_1};
use std::sync::OnceLock;

/// Encoder lookup tables built from the CxtVLC tables: index `(c_q << 8) | (rho << 4) | emb`,
/// value `(cwd << 8) | (cwd_len << 4) | e_k`.
struct VlcTables {
    first: [u16; 2048],
    other: [u16; 2048],
}

fn build(src: &[[u8; 7]]) -> [u16; 2048] {
    let mut t = [0u16; 2048];
    for (i, slot) in t.iter_mut().enumerate() {
        let (c_q, rho, emb) = ((i >> 8) as u8, ((i >> 4) & 0xF) as u8, (i & 0xF) as u8);
        if emb & rho != emb || (rho == 0 && c_q == 0) {
            continue;
        }
        // With an exponent offset (emb ≠ 0): the entry whose e_1 the samples at the maximum
        // exponent match, with the most samples known (the most e_k bits); without: the first
        // entry of the context and pattern.
        let best = if emb != 0 {
            let mut best: Option<&[u8; 7]> = None;
            let mut best_ones = -1i32;
            for e in src {
                if e[0] == c_q && e[1] == rho && e[2] == 1 && (emb & e[3]) == e[4] {
                    let ones = e[3].count_ones() as i32;
                    if ones >= best_ones {
                        best = Some(e);
                        best_ones = ones;
                    }
                }
            }
            best
        } else {
            src.iter().find(|e| e[0] == c_q && e[1] == rho && e[2] == 0)
        };
        if let Some(e) = best {
            *slot = (u16::from(e[5]) << 8) | (u16::from(e[6]) << 4) | u16::from(e[3]);
        }
    }
    t
}

fn tables() -> &'static VlcTables {
    static T: OnceLock<VlcTables> = OnceLock::new();
    T.get_or_init(|| VlcTables {
        first: build(&TABLE_0),
        other: build(&TABLE_1),
    })
}

/// The U-VLC code of an exponent offset `u` (§7.3.6): prefix, its length, suffix, its length.
fn uvlc(u: u32) -> (u32, u32, u32, u32) {
    match u {
        0 => (0, 0, 0, 0),
        1 => (1, 1, 0, 0),
        2 => (2, 2, 0, 0),
        3 => (4, 3, 0, 1),
        4 => (4, 3, 1, 1),
        _ => (0, 3, u - 5, 5),
    }
}

/// The MEL coder (§7.3.3): an adaptive run-length coder of the "quad significant" events of
/// quads without significant neighbours.
struct Mel {
    buf: Vec<u8>,
    remaining: u32,
    tmp: u32,
    run: u32,
    k: usize,
    threshold: u32,
}

const MEL_EXP: [u32; 13] = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5];

impl Mel {
    fn new() -> Mel {
        Mel {
            buf: Vec::with_capacity(192),
            remaining: 8,
            tmp: 0,
            run: 0,
            k: 0,
            threshold: 1,
        }
    }

    fn emit_bit(&mut self, v: u32) {
        self.tmp = (self.tmp << 1) | v;
        self.remaining -= 1;
        if self.remaining == 0 {
            self.buf.push(self.tmp as u8);
            // After 0xFF the next byte holds 7 bits (its MSB stuffed 0).
            self.remaining = if self.tmp == 0xFF { 7 } else { 8 };
            self.tmp = 0;
        }
    }

    fn encode(&mut self, bit: bool) {
        if !bit {
            self.run += 1;
            if self.run >= self.threshold {
                self.emit_bit(1);
                self.run = 0;
                self.k = (self.k + 1).min(12);
                self.threshold = 1 << MEL_EXP[self.k];
            }
        } else {
            self.emit_bit(0);
            let mut t = MEL_EXP[self.k];
            while t > 0 {
                t -= 1;
                self.emit_bit((self.run >> t) & 1);
            }
            self.run = 0;
            self.k = self.k.saturating_sub(1);
            self.threshold = 1 << MEL_EXP[self.k];
        }
    }
}

/// The VLC stream (§7.3.4), written from the end of the segment backwards: bytes are
/// collected in the order made and reversed at the end. A byte after one above 0x8F holds
/// 7 bits unless its 7 bits are all ones (the stuffing rule that keeps the stream free of
/// marker codes read backwards).
struct Vlc {
    bytes: Vec<u8>,
    used: u32,
    tmp: u32,
    last_gt_8f: bool,
}

impl Vlc {
    fn new() -> Vlc {
        Vlc {
            bytes: vec![0xFF],
            used: 4,
            tmp: 0xF,
            last_gt_8f: true,
        }
    }

    fn encode(&mut self, mut cwd: u32, mut len: u32) {
        while len > 0 {
            let mut avail = 8 - u32::from(self.last_gt_8f) - self.used;
            let t = avail.min(len);
            self.tmp |= (cwd & ((1 << t) - 1)) << self.used;
            self.used += t;
            avail -= t;
            len -= t;
            cwd >>= t;
            if avail == 0 {
                if self.last_gt_8f && self.tmp != 0x7F {
                    self.last_gt_8f = false;
                    continue;
                }
                self.bytes.push(self.tmp as u8);
                self.last_gt_8f = self.tmp > 0x8F;
                self.tmp = 0;
                self.used = 0;
            }
        }
    }
}

/// The MagSgn stream (§7.3.5): magnitude and sign bits, least significant first; a byte after
/// 0xFF holds 7 bits.
struct MagSgn {
    buf: Vec<u8>,
    max_bits: u32,
    used: u32,
    tmp: u64,
}

impl MagSgn {
    fn new(capacity: usize) -> MagSgn {
        MagSgn {
            buf: Vec::with_capacity(capacity),
            max_bits: 8,
            used: 0,
            tmp: 0,
        }
    }

    fn encode(&mut self, mut cwd: u64, mut len: u32) {
        while len > 0 {
            let t = (self.max_bits - self.used).min(len);
            self.tmp |= (cwd & ((1u64 << t) - 1)) << self.used;
            self.used += t;
            cwd >>= t;
            len -= t;
            if self.used >= self.max_bits {
                self.buf.push(self.tmp as u8);
                self.max_bits = if self.tmp == 0xFF { 7 } else { 8 };
                self.tmp = 0;
                self.used = 0;
            }
        }
    }

    fn terminate(&mut self) {
        if self.used > 0 {
            // Pad with ones; a final 0xFF is left out (the decoder reads ones past the end).
            let t = self.max_bits - self.used;
            self.tmp |= (0xFF & ((1u64 << t) - 1)) << self.used;
            if self.tmp != 0xFF {
                self.buf.push(self.tmp as u8);
            }
        } else if self.max_bits == 7 {
            self.buf.pop();
        }
    }
}

/// MEL and VLC end where they meet: their last partial bytes are fused into one when their
/// bits do not overlap (§7.3.7's termination).
fn terminate_mel_vlc(mel: &mut Mel, vlc: &mut Vlc) {
    if mel.run > 0 {
        mel.emit_bit(1);
    }
    mel.tmp <<= mel.remaining;
    let mel_mask = (0xFFu32 << mel.remaining) & 0xFF;
    let vlc_mask = 0xFFu32 >> (8 - vlc.used);
    if mel_mask | vlc_mask == 0 {
        return;
    }
    let fuse = mel.tmp | vlc.tmp;
    if (((fuse ^ mel.tmp) & mel_mask) | ((fuse ^ vlc.tmp) & vlc_mask)) == 0
        && fuse != 0xFF
        && vlc.bytes.len() > 1
    {
        mel.buf.push(fuse as u8);
    } else {
        mel.buf.push(mel.tmp as u8);
        vlc.bytes.push(vlc.tmp as u8);
    }
}

/// One sample's contribution: `e` is the bit length of `2μ − 1` (its exponent), `v` is
/// `2(μ − 1) + sign`, for a significant magnitude μ.
#[inline]
fn sample(c: i32) -> Option<(u32, u64)> {
    let mag = c.unsigned_abs();
    if mag == 0 {
        return None;
    }
    let two_mu = u64::from(mag) << 1;
    let e = 64 - (two_mu - 1).leading_zeros();
    Some((e, two_mu - 2 + u64::from(c < 0)))
}

/// Encodes one code-block (`width × height`, at most 1024 wide, rows `stride` apart) of
/// integer coefficients, losslessly, as an HT cleanup segment. `None` when every coefficient
/// is zero (the block is left out of its packet).
pub(crate) fn encode(coef: &[i32], width: usize, height: usize, stride: usize) -> Option<Vec<u8>> {
    if width == 0 || height == 0 {
        return None;
    }
    let any = (0..height).any(|y| coef[y * stride..y * stride + width].iter().any(|&c| c != 0));
    if !any {
        return None;
    }
    let tables = tables();
    let mut mel = Mel::new();
    let mut vlc = Vlc::new();
    let mut ms = MagSgn::new(width * height * 2);

    // Per pair of columns of the row of quads above: the largest exponent of its bottom
    // samples (e_val) and whether they are significant (cx_val), with one slot beyond each end.
    let pairs = width.div_ceil(2);
    let mut e_val = vec![0u32; pairs + 2];
    let mut cx_val = vec![0u32; pairs + 2];

    let at = |x: usize, y: usize| -> i32 {
        if x < width && y < height {
            coef[y * stride + x]
        } else {
            0
        }
    };

    // One quad at (x, y): its significance pattern rho, exponents, MagSgn values, max exponent.
    let quad = |x: usize, y: usize| -> (u32, [u32; 4], [u64; 4], u32) {
        let mut rho = 0u32;
        let mut e = [0u32; 4];
        let mut s = [0u64; 4];
        let cells = [(x, y), (x, y + 1), (x + 1, y), (x + 1, y + 1)];
        for (i, &(cx, cy)) in cells.iter().enumerate() {
            if let Some((en, v)) = sample(at(cx, cy)) {
                rho |= 1 << i;
                e[i] = en;
                s[i] = v;
            }
        }
        let emax = e.iter().copied().max().unwrap_or(0);
        (rho, e, s, emax)
    };

    let emit_ms = |ms: &mut MagSgn, rho: u32, s: &[u64; 4], uq: u32, tuple: u16| {
        for (i, v) in s.iter().enumerate() {
            if rho >> i & 1 == 1 {
                let m = uq - u32::from((tuple >> i) & 1);
                ms.encode(v & ((1u64 << m) - 1), m);
            }
        }
    };
    let eps = |e: &[u32; 4], emax: u32, u: u32| -> usize {
        if u == 0 {
            return 0;
        }
        (0..4).fold(0, |acc, i| acc | (usize::from(e[i] == emax) << i))
    };

    // The first row of quads.
    {
        let mut c_q0 = 0usize;
        let mut li = 0usize; // index into e_val/cx_val for the current pair
        let mut x = 0;
        while x < width {
            let (rho0, e0, s0, emax0) = quad(x, 0);
            let uq0 = emax0.max(1);
            let u_q0 = uq0 - 1;
            let eps0 = eps(&e0, emax0, u_q0);
            e_val[li] = e_val[li].max(e0[1]);
            e_val[li + 1] = e0[3];
            cx_val[li] |= (rho0 & 2) >> 1;
            cx_val[li + 1] = (rho0 & 8) >> 3;
            li += 1;
            let t0 = tables.first[(c_q0 << 8) | ((rho0 as usize) << 4) | eps0];
            vlc.encode(u32::from(t0 >> 8), u32::from((t0 >> 4) & 7));
            if c_q0 == 0 {
                mel.encode(rho0 != 0);
            }
            emit_ms(&mut ms, rho0, &s0, uq0, t0);

            let mut u_q1 = 0;
            let mut rho1 = 0;
            if x + 2 < width {
                let (r1, e1, s1, emax1) = quad(x + 2, 0);
                rho1 = r1;
                let c_q1 = ((rho0 >> 1) | (rho0 & 1)) as usize;
                let uq1 = emax1.max(1);
                u_q1 = uq1 - 1;
                let eps1 = eps(&e1, emax1, u_q1);
                e_val[li] = e_val[li].max(e1[1]);
                e_val[li + 1] = e1[3];
                cx_val[li] |= (rho1 & 2) >> 1;
                cx_val[li + 1] = (rho1 & 8) >> 3;
                li += 1;
                let t1 = tables.first[(c_q1 << 8) | ((rho1 as usize) << 4) | eps1];
                vlc.encode(u32::from(t1 >> 8), u32::from((t1 >> 4) & 7));
                if c_q1 == 0 {
                    mel.encode(rho1 != 0);
                }
                emit_ms(&mut ms, rho1, &s1, uq1, t1);
            }
            if u_q0 > 0 && u_q1 > 0 {
                mel.encode(u_q0.min(u_q1) > 2);
            }
            if u_q0 > 2 && u_q1 > 2 {
                let (p0, l0, f0, fl0) = uvlc(u_q0 - 2);
                let (p1, l1, f1, fl1) = uvlc(u_q1 - 2);
                vlc.encode(p0, l0);
                vlc.encode(p1, l1);
                vlc.encode(f0, fl0);
                vlc.encode(f1, fl1);
            } else if u_q0 > 2 && u_q1 > 0 {
                let (p0, l0, f0, fl0) = uvlc(u_q0);
                vlc.encode(p0, l0);
                vlc.encode(u_q1 - 1, 1);
                vlc.encode(f0, fl0);
            } else {
                let (p0, l0, f0, fl0) = uvlc(u_q0);
                let (p1, l1, f1, fl1) = uvlc(u_q1);
                vlc.encode(p0, l0);
                vlc.encode(p1, l1);
                vlc.encode(f0, fl0);
                vlc.encode(f1, fl1);
            }
            c_q0 = ((rho1 >> 1) | (rho1 & 1)) as usize;
            x += 4;
        }
        e_val[li + 1] = 0;
    }

    // The other rows of quads: contexts and exponent predictions from the row above.
    let mut y = 2;
    while y < height {
        let mut li = 0usize;
        // The largest exponent of the two samples above, less one (−1 when none).
        let mut max_e_real = i64::from(e_val[0].max(e_val[1])) - 1;
        e_val[0] = 0;
        let mut c_q0 = (cx_val[0] + (cx_val[1] << 2)) as usize;
        cx_val[0] = 0;
        let mut x = 0;
        while x < width {
            let (rho0, e0, s0, emax0) = quad(x, y);
            let kappa0 = if rho0 & rho0.wrapping_sub(1) != 0 {
                max_e_real.max(1) as u32
            } else {
                1
            };
            let uq0 = emax0.max(kappa0);
            let u_q0 = uq0 - kappa0;
            let eps0 = eps(&e0, emax0, u_q0);
            e_val[li] = e_val[li].max(e0[1]);
            li += 1;
            max_e_real = i64::from(e_val[li].max(e_val[li + 1])) - 1;
            e_val[li] = e0[3];
            cx_val[li - 1] |= (rho0 & 2) >> 1;
            let mut c_q1 = (cx_val[li] + (cx_val[li + 1] << 2)) as usize;
            cx_val[li] = (rho0 & 8) >> 3;
            let t0 = tables.other[(c_q0 << 8) | ((rho0 as usize) << 4) | eps0];
            vlc.encode(u32::from(t0 >> 8), u32::from((t0 >> 4) & 7));
            if c_q0 == 0 {
                mel.encode(rho0 != 0);
            }
            emit_ms(&mut ms, rho0, &s0, uq0, t0);

            let mut u_q1 = 0;
            let mut rho1 = 0;
            if x + 2 < width {
                let (r1, e1, s1, emax1) = quad(x + 2, y);
                rho1 = r1;
                let kappa1 = if rho1 & rho1.wrapping_sub(1) != 0 {
                    max_e_real.max(1) as u32
                } else {
                    1
                };
                c_q1 |= (((rho0 & 4) >> 1) | ((rho0 & 8) >> 2)) as usize;
                let uq1 = emax1.max(kappa1);
                u_q1 = uq1 - kappa1;
                let eps1 = eps(&e1, emax1, u_q1);
                e_val[li] = e_val[li].max(e1[1]);
                li += 1;
                max_e_real = i64::from(e_val[li].max(e_val[li + 1])) - 1;
                e_val[li] = e1[3];
                cx_val[li - 1] |= (rho1 & 2) >> 1;
                c_q0 = (cx_val[li] + (cx_val[li + 1] << 2)) as usize;
                cx_val[li] = (rho1 & 8) >> 3;
                let t1 = tables.other[(c_q1 << 8) | ((rho1 as usize) << 4) | eps1];
                vlc.encode(u32::from(t1 >> 8), u32::from((t1 >> 4) & 7));
                if c_q1 == 0 {
                    mel.encode(rho1 != 0);
                }
                emit_ms(&mut ms, rho1, &s1, uq1, t1);
            }
            let (p0, l0, f0, fl0) = uvlc(u_q0);
            let (p1, l1, f1, fl1) = uvlc(u_q1);
            vlc.encode(p0, l0);
            vlc.encode(p1, l1);
            vlc.encode(f0, fl0);
            vlc.encode(f1, fl1);
            c_q0 |= (((rho1 & 4) >> 1) | ((rho1 & 8) >> 2)) as usize;
            x += 4;
        }
        y += 2;
    }

    terminate_mel_vlc(&mut mel, &mut vlc);
    ms.terminate();

    // MagSgn, MEL, then VLC (made backwards); Scup, the MEL and VLC bytes, goes in the last
    // 12 bits: the interface locator word (§7.2.2).
    let scup = mel.buf.len() + vlc.bytes.len();
    let mut out = ms.buf;
    out.extend_from_slice(&mel.buf);
    out.extend(vlc.bytes.iter().rev());
    let n = out.len();
    out[n - 1] = (scup >> 4) as u8;
    out[n - 2] = (out[n - 2] & 0xF0) | (scup & 0xF) as u8;
    Some(out)
}

/// A code-block coded as the HT cleanup pass at bit-plane 1 (magnitudes halved) and a
/// refinement segment at bit-plane 0: the SigProp pass (forward) and the MagRef pass
/// (backward from the segment's end), in the scan of §7.4–7.5. For the decoder's tests
/// (`super::encode_refined`); `None` when no magnitude reaches 2.
#[cfg(test)]
pub(crate) fn encode_refined(
    coef: &[i32],
    width: usize,
    height: usize,
    stride: usize,
    causal: bool,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let at = |x: usize, y: usize| coef[y * stride + x];
    let coarse: Vec<i32> = (0..width * height)
        .map(|i| {
            let c = at(i % width, i / width);
            c.signum() * (c.abs() >> 1)
        })
        .collect();
    let cleanup = encode(&coarse, width, height, width)?;
    let sw = width + 2;
    let mut st = vec![0u8; sw * (height + 2)];
    for y in 0..height {
        for x in 0..width {
            if coarse[y * width + x] != 0 {
                st[(y + 1) * sw + x + 1] = 1;
            }
        }
    }
    let mut sigprop = Vec::new();
    for y0 in (0..height).step_by(4) {
        let y1 = (y0 + 4).min(height);
        for x0 in (0..width).step_by(4) {
            let mut fresh = Vec::new();
            for x in x0..(x0 + 4).min(width) {
                for y in y0..y1 {
                    let i = (y + 1) * sw + x + 1;
                    if st[i] != 0 {
                        continue;
                    }
                    let mut around = vec![i - sw - 1, i - sw, i - sw + 1, i - 1, i + 1];
                    if !(causal && y == y0 + 3) {
                        around.extend([i + sw - 1, i + sw, i + sw + 1]);
                    }
                    if around.iter().all(|&j| st[j] == 0) {
                        continue;
                    }
                    let one = at(x, y).abs() == 1;
                    sigprop.push(u32::from(one));
                    if one {
                        st[i] = 2;
                        fresh.push((x, y));
                    }
                }
            }
            sigprop.extend(fresh.iter().map(|&(x, y)| u32::from(at(x, y) < 0)));
        }
    }
    let mut magref = Vec::new();
    for y0 in (0..height).step_by(4) {
        for x in 0..width {
            for y in y0..(y0 + 4).min(height) {
                if st[(y + 1) * sw + x + 1] == 1 {
                    magref.push(at(x, y).unsigned_abs() & 1);
                }
            }
        }
    }
    // SigProp bytes: 7 bits after a 0xFF.
    let mut out = Vec::new();
    let (mut tmp, mut used, mut cap) = (0u32, 0u32, 8u32);
    for b in sigprop {
        tmp |= b << used;
        used += 1;
        if used == cap {
            out.push(tmp as u8);
            cap = if tmp == 0xFF { 7 } else { 8 };
            tmp = 0;
            used = 0;
        }
    }
    if used > 0 {
        out.push(tmp as u8);
    }
    // MagRef bytes, in reading order (from the end): after a byte above 0x8F (and first), seven
    // ones end a byte.
    let mut back = Vec::new();
    let (mut tmp, mut used, mut gt) = (0u32, 0u32, true);
    for b in magref {
        tmp |= b << used;
        used += 1;
        if (used == 7 && gt && tmp == 0x7F) || used == 8 {
            back.push(tmp as u8);
            gt = tmp > 0x8F;
            tmp = 0;
            used = 0;
        }
    }
    if used > 0 {
        back.push(tmp as u8);
    }
    out.extend(back.iter().rev());
    if out.is_empty() {
        return None;
    }
    Some((cleanup, out))
}
