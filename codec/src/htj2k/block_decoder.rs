//! The HT block coder's cleanup pass (ISO/IEC 15444-15 §7), decoding side: one code-block's
//! HT cleanup segment — MagSgn (forward), MEL (forward) and VLC (backward), located by the
//! interface locator word in its last two bytes — back into its quantized coefficients.
//! Written after the standard's description, as the inverse of our encoder ([`super::block`]);
//! OpenJPH's decoder was read for the stream conventions the standard leaves implicit (what a
//! reader feeds past the end of each stream).

use super::vlc_tables::{TABLE_0, TABLE_1};
use std::sync::OnceLock;

/// What went wrong in a segment (the codestream decoder says which code-block).
pub(crate) type Result<T> = std::result::Result<T, &'static str>;

/// Decoder lookup tables from the CxtVLC tables: index `(c_q << 7) | next 7 bits`, value
/// `(e_1 << 12) | (e_k << 8) | (rho << 4) | (u_off << 3) | len` (len 0: no codeword).
struct VlcTables {
    first: Vec<u16>,
    other: Vec<u16>,
}

fn build(src: &[[u8; 7]]) -> Vec<u16> {
    let mut t = vec![0u16; 8 << 7];
    for e in src {
        let [c_q, rho, u_off, e_k, e_1, cwd, len] = *e;
        let value = (u16::from(e_1) << 12)
            | (u16::from(e_k) << 8)
            | (u16::from(rho) << 4)
            | (u16::from(u_off) << 3)
            | u16::from(len);
        for bits in 0..128u16 {
            if bits & ((1 << len) - 1) == u16::from(cwd) {
                t[(usize::from(c_q) << 7) | usize::from(bits)] = value;
            }
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

const MEL_EXP: [u32; 13] = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5];

/// The MEL stream, most significant bit first; a byte after 0xFF holds 7 bits; past its end
/// (it shares its last byte with the VLC stream, whose low nibble is the locator's) it reads
/// ones.
struct Mel<'a> {
    data: &'a [u8],
    pos: usize,
    tmp: u64,
    bits: u32,
    unstuff: bool,
    k: usize,
    zeros: u32,
    one: bool,
}

impl<'a> Mel<'a> {
    fn new(data: &'a [u8]) -> Mel<'a> {
        Mel {
            data,
            pos: 0,
            tmp: 0,
            bits: 0,
            unstuff: false,
            k: 0,
            zeros: 0,
            one: false,
        }
    }

    fn bit(&mut self) -> u32 {
        if self.bits == 0 {
            let mut d = u64::from(self.data.get(self.pos).copied().unwrap_or(0xFF));
            if self.pos + 1 == self.data.len() {
                d |= 0xF;
            }
            self.pos += 1;
            let n = if self.unstuff { 7 } else { 8 };
            self.unstuff = d == 0xFF;
            self.tmp = (d & ((1 << n) - 1)) << (64 - n);
            self.bits = n;
        }
        let b = (self.tmp >> 63) as u32;
        self.tmp <<= 1;
        self.bits -= 1;
        b
    }

    /// The next event: whether the quad (or the pair's exponent offsets) is "significant".
    fn event(&mut self) -> bool {
        loop {
            if self.zeros > 0 {
                self.zeros -= 1;
                return false;
            }
            if self.one {
                self.one = false;
                return true;
            }
            let e = MEL_EXP[self.k];
            if self.bit() == 1 {
                self.zeros = 1 << e;
                self.k = (self.k + 1).min(12);
            } else {
                let mut run = 0;
                for _ in 0..e {
                    run = (run << 1) | self.bit();
                }
                self.zeros = run;
                self.one = true;
                self.k = self.k.saturating_sub(1);
            }
        }
    }
}

/// The VLC stream, read backwards from the byte before the locator's, least significant bit
/// first; after a byte above 0x8F, a byte whose low 7 bits are all ones holds only those 7.
/// Past its start it reads zeros.
struct Vlc<'a> {
    data: &'a [u8],
    /// Bytes left to read, `data[..left]`, read from the end.
    left: usize,
    tmp: u64,
    bits: u32,
    unstuff: bool,
}

impl<'a> Vlc<'a> {
    /// `data` is the MEL and VLC bytes (Scup of them, the locator in the last 12 bits).
    fn new(data: &'a [u8]) -> Vlc<'a> {
        let n = data.len();
        let d = u64::from(data[n - 2]);
        let tmp = d >> 4;
        let bits = 4 - u32::from(tmp & 7 == 7);
        Vlc {
            data,
            left: n - 2,
            tmp: tmp & ((1 << bits) - 1),
            bits,
            unstuff: (d | 0xF) > 0x8F,
        }
    }

    #[inline]
    fn fill(&mut self) {
        // Four bytes at once when none of them can be a stuffed one (low 7 bits all ones).
        if self.left >= 4 && self.bits <= 32 {
            let x = u32::from_be_bytes([
                self.data[self.left - 4],
                self.data[self.left - 3],
                self.data[self.left - 2],
                self.data[self.left - 1],
            ]);
            if !has_zero_byte(!(x | 0x8080_8080)) {
                self.left -= 4;
                self.tmp |= u64::from(x) << self.bits;
                self.bits += 32;
                self.unstuff = (x >> 24) > 0x8F;
                return;
            }
        }
        while self.bits <= 56 {
            let d = if self.left > 0 {
                self.left -= 1;
                u64::from(self.data[self.left])
            } else {
                0
            };
            let n = if self.unstuff && d & 0x7F == 0x7F {
                7
            } else {
                8
            };
            self.tmp |= (d & ((1 << n) - 1)) << self.bits;
            self.bits += n;
            self.unstuff = d > 0x8F;
        }
    }

    #[inline]
    fn peek(&mut self) -> u64 {
        if self.bits < 32 {
            self.fill();
        }
        self.tmp
    }

    #[inline]
    fn advance(&mut self, n: u32) {
        self.tmp >>= n;
        self.bits -= n;
    }

    fn bits(&mut self, n: u32) -> u32 {
        let v = (self.peek() & ((1u64 << n) - 1)) as u32;
        self.advance(n);
        v
    }

    /// A U-VLC prefix (§7.3.6): the exponent offset it starts, and its suffix's length.
    fn prefix(&mut self) -> (u32, u32) {
        let v = self.peek();
        if v & 1 == 1 {
            self.advance(1);
            (1, 0)
        } else if v & 2 == 2 {
            self.advance(2);
            (2, 0)
        } else if v & 4 == 4 {
            self.advance(3);
            (3, 1)
        } else {
            self.advance(3);
            (5, 5)
        }
    }
}

/// Whether any byte of `v` is zero.
#[inline]
fn has_zero_byte(v: u32) -> bool {
    v.wrapping_sub(0x0101_0101) & !v & 0x8080_8080 != 0
}

/// The MagSgn stream: least significant bit first; a byte after 0xFF holds 7 bits; past its
/// end it reads ones.
struct MagSgn<'a> {
    data: &'a [u8],
    pos: usize,
    tmp: u64,
    bits: u32,
    unstuff: bool,
}

impl MagSgn<'_> {
    #[inline]
    fn fill(&mut self) {
        // Four bytes at once when none is 0xFF (nothing to unstuff in them or after them).
        if !self.unstuff && self.bits <= 32 {
            if let Some(b) = self.data.get(self.pos..self.pos + 4) {
                let x = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if !has_zero_byte(!x) {
                    self.pos += 4;
                    self.tmp |= u64::from(x) << self.bits;
                    self.bits += 32;
                    return;
                }
            }
        }
        while self.bits <= 56 {
            let d = u64::from(self.data.get(self.pos).copied().unwrap_or(0xFF));
            self.pos += 1;
            let n = if self.unstuff { 7 } else { 8 };
            self.tmp |= (d & ((1 << n) - 1)) << self.bits;
            self.bits += n;
            self.unstuff = d == 0xFF;
        }
    }

    /// `n` ≤ 32 bits.
    #[inline]
    fn bits(&mut self, n: u32) -> u32 {
        if self.bits < n {
            self.fill();
        }
        let v = (self.tmp & ((1u64 << n) - 1)) as u32;
        self.tmp >>= n;
        self.bits -= n;
        v
    }
}

/// Where a code-block's magnitudes sit and how they are reconstructed.
#[derive(Clone, Copy)]
pub(crate) struct Planes {
    /// The cleanup pass's bit-plane.
    pub p: u32,
    /// The subband's magnitude bits (K_max).
    pub limit: u32,
    /// Integers (5/3) or half steps (9/7).
    pub reversible: bool,
}

/// A code-block's refinement segment (§7.4, §7.5): the SigProp pass, read forwards, and the
/// MagRef pass when `magref`, read backwards from its end; each one bit-plane below the
/// cleanup pass.
#[derive(Clone, Copy)]
pub(crate) struct Refinement<'a> {
    pub data: &'a [u8],
    pub magref: bool,
    /// Vertically causal contexts (code-block style bit 3): the next stripe is not looked at.
    pub causal: bool,
}

/// Decodes one code-block's HT cleanup segment into `out` (`width × height`, rows `stride`
/// apart): a significant magnitude μ coded down to bit-plane `p` becomes `±(μ << p)` when
/// `reversible` (plus half of bit-plane `p`, the middle of its interval, when p > 0), else, in
/// units of half the quantization step, `±(2μ + 1) << p` (the middle of its interval, what a
/// lossy reconstruction takes); 0 when not significant. The magnitudes must fit in `limit` bits
/// (above bit-plane 0) or the segment is refused as malformed.
pub(crate) fn decode(
    seg: &[u8],
    width: usize,
    height: usize,
    out: &mut [i32],
    stride: usize,
    planes: Planes,
    refinement: Option<Refinement<'_>>,
) -> Result<()> {
    let Planes {
        p,
        limit,
        reversible,
    } = planes;
    let lcup = seg.len();
    if lcup < 2 {
        return Err("a cleanup segment shorter than 2 bytes");
    }
    let scup = (usize::from(seg[lcup - 1]) << 4) | usize::from(seg[lcup - 2] & 0xF);
    if scup < 2 || scup > lcup || scup > 4079 {
        return Err("a cleanup segment whose MEL and VLC lengths do not fit in it");
    }
    if width == 0 || height == 0 || width > 1024 || height > 1024 || width * height > 4096 {
        return Err("a code-block of an impossible size");
    }
    for row in 0..height {
        out[row * stride..row * stride + width].fill(0);
    }
    let t = tables();
    let mut mel = Mel::new(&seg[lcup - scup..lcup - 1]);
    let mut vlc = Vlc::new(&seg[lcup - scup..]);
    let mut ms = MagSgn {
        data: &seg[..lcup - scup],
        pos: 0,
        tmp: 0,
        bits: 0,
        unstuff: false,
    };
    // Exponents larger than this would not fit the `limit` magnitude bits (bit-plane p up),
    // nor a value in 31 bits.
    let max_u = (limit + 1).saturating_sub(p).min(29u32.saturating_sub(p));

    // μ's lowest bit in a value and what sits below it: half of bit-plane p (reversible), or
    // in half steps the middle of the interval.
    let (shift, low) = if reversible {
        (p, (1u32 << p) >> 1)
    } else {
        (p + 1, 1u32 << p)
    };
    // One significant sample of a quad: `n` its place in the quad (column-major), `at` its
    // index in `out`. Its value is v's bits, with the one e_1 implies on top; μ = v/2 + 1,
    // the sign v's lowest bit. Returns its exponent (0: not significant).
    // (A macro: as a closure, it was not inlined.)
    macro_rules! sample {
        ($n:expr, $row:ident[$at:expr], $rho:expr, $u_q:expr, $e_k:expr, $e_1:expr) => {
            if ($rho >> $n) & 1 == 0 {
                0
            } else {
                let m = $u_q - (($e_k >> $n) & 1);
                let v = ms.bits(m) | ((($e_1 >> $n) & 1) << m);
                let mag = ((((v >> 1) + 1) << shift) | low) as i32;
                $row[$at] = if v & 1 == 1 { -mag } else { mag };
                32 - (v | 1).leading_zeros()
            }
        };
    }
    // The previous quad row's bottom samples' exponents, 0 where not significant, one slot of
    // padding at each side (column x at x + 1). Every row of quads writes every slot of its
    // columns, so a row needs no clearing.
    let mut e_prev = vec![0u32; width + 4];
    let mut e_cur = vec![0u32; width + 4];

    let mut y = 0;
    while y < height {
        let first = y == 0;
        let table = if first { &t.first } else { &t.other };
        let mut rho_left = 0u32;
        let mut x = 0;
        // Which of a quad's samples are inside the block: by whether its second column is.
        let rows = if y + 1 < height { 0xF } else { 0x5 };
        let inside = [rows & 0x3, rows];
        // The quads' two rows (none below the block's last row: its samples are never
        // significant).
        let (above, below) = out.split_at_mut(((y + 1) * stride).min(out.len()));
        let top = &mut above[y * stride..y * stride + width];
        let bottom = if y + 1 < height {
            &mut below[..width]
        } else {
            &mut [][..]
        };
        while x < width {
            // Two quads: at x and at x + 2 (when inside the block).
            let mut q = [(0u32, 0u32, 0u32, 0u32); 2]; // (rho, u_off, e_k, e_1)
            let mut n_quads = 0;
            for (i, slot) in q.iter_mut().enumerate() {
                let qx = x + 2 * i;
                if qx >= width {
                    break;
                }
                n_quads += 1;
                let c_q = if first {
                    (rho_left >> 1) | (rho_left & 1)
                } else {
                    u32::from(e_prev[qx] | e_prev[qx + 1] != 0)
                        | (u32::from(rho_left & 0xC != 0) << 1)
                        | (u32::from(e_prev[qx + 2] | e_prev[qx + 3] != 0) << 2)
                };
                let coded = c_q != 0 || mel.event();
                let entry = if coded {
                    let bits = vlc.peek() as usize & 0x7F;
                    let e = table[((c_q as usize) << 7) | bits];
                    if e & 7 == 0 {
                        return Err("a VLC codeword not in the table");
                    }
                    vlc.advance(u32::from(e & 7));
                    e
                } else {
                    0
                };
                // Samples outside the block are never significant in a valid segment.
                let rho = u32::from((entry >> 4) & 0xF) & inside[usize::from(qx + 1 < width)];
                *slot = (
                    rho,
                    u32::from((entry >> 3) & 1),
                    u32::from((entry >> 8) & 0xF),
                    u32::from((entry >> 12) & 0xF),
                );
                rho_left = rho;
            }

            // Exponent offsets (§7.3.6).
            let (uo0, uo1) = (q[0].1 == 1, q[1].1 == 1);
            let (u0, u1);
            if first && uo0 && uo1 {
                if mel.event() {
                    let (p0, l0) = vlc.prefix();
                    let (p1, l1) = vlc.prefix();
                    u0 = 2 + p0 + vlc.bits(l0);
                    u1 = 2 + p1 + vlc.bits(l1);
                } else {
                    let (p0, l0) = vlc.prefix();
                    if p0 >= 3 {
                        u1 = 1 + vlc.bits(1);
                        u0 = p0 + vlc.bits(l0);
                    } else {
                        let (p1, l1) = vlc.prefix();
                        u0 = p0 + vlc.bits(l0);
                        u1 = p1 + vlc.bits(l1);
                    }
                }
            } else {
                let (p0, l0) = if uo0 { vlc.prefix() } else { (0, 0) };
                let (p1, l1) = if uo1 { vlc.prefix() } else { (0, 0) };
                u0 = p0 + vlc.bits(l0);
                u1 = p1 + vlc.bits(l1);
            }

            // Magnitudes and signs.
            for (i, &(rho, _, e_k, e_1)) in q.iter().enumerate().take(n_quads) {
                let qx = x + 2 * i;
                let u = if i == 0 { u0 } else { u1 };
                let kappa = if first || rho.count_ones() < 2 {
                    1
                } else {
                    let e = e_prev[qx]
                        .max(e_prev[qx + 1])
                        .max(e_prev[qx + 2])
                        .max(e_prev[qx + 3]);
                    e.saturating_sub(1).max(1)
                };
                let u_q = u + kappa;
                if u_q > max_u {
                    return Err("a quad's exponent beyond the subband's magnitude bits");
                }
                // The samples in the quad's order; the bottom ones' exponents are kept for
                // the next row of quads.
                sample!(0, top[qx], rho, u_q, e_k, e_1);
                e_cur[qx + 1] = sample!(1, bottom[qx], rho, u_q, e_k, e_1);
                sample!(2, top[qx + 1], rho, u_q, e_k, e_1);
                e_cur[qx + 2] = sample!(3, bottom[qx + 1], rho, u_q, e_k, e_1);
            }
            x += 4;
        }
        std::mem::swap(&mut e_prev, &mut e_cur);
        y += 2;
    }
    if let Some(r) = refinement {
        refine(out, stride, width, height, planes, r)?;
    }
    Ok(())
}

/// The SigProp stream: least significant bit first, a byte after 0xFF holds 7 bits; past
/// its end, zeros.
struct Forward<'a> {
    data: &'a [u8],
    pos: usize,
    cur: u32,
    left: u32,
    last_ff: bool,
}

impl Forward<'_> {
    fn bit(&mut self) -> u32 {
        if self.left == 0 {
            let d = self.data.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
            self.left = if self.last_ff { 7 } else { 8 };
            self.last_ff = d == 0xFF;
            self.cur = u32::from(d);
        }
        let b = self.cur & 1;
        self.cur >>= 1;
        self.left -= 1;
        b
    }
}

/// The MagRef stream: read backwards from the segment's end, least significant bit first;
/// after a byte above 0x8F (and at the start), a byte whose low 7 bits are all ones holds
/// those 7 only; past its start, zeros.
struct Backward<'a> {
    data: &'a [u8],
    left_bytes: usize,
    cur: u32,
    left: u32,
    unstuff: bool,
}

impl Backward<'_> {
    fn bit(&mut self) -> u32 {
        if self.left == 0 {
            let d = if self.left_bytes > 0 {
                self.left_bytes -= 1;
                self.data[self.left_bytes]
            } else {
                0
            };
            self.left = if self.unstuff && d & 0x7F == 0x7F {
                7
            } else {
                8
            };
            self.unstuff = d > 0x8F;
            self.cur = u32::from(d);
        }
        let b = self.cur & 1;
        self.cur >>= 1;
        self.left -= 1;
        b
    }
}

/// The SigProp and MagRef passes over a block the cleanup pass decoded into `out` (values as
/// [`decode`] gives them): bit-plane p − 1. SigProp visits, in stripes of four rows and groups
/// of four columns (column by column, top to bottom), each sample not yet significant with a
/// significant neighbour (as significance stands when it is visited; the next stripe only by
/// the cleanup pass, and not at all when causal) and reads whether it becomes significant;
/// then the signs of the group's new samples. MagRef reads one bit for each sample the cleanup
/// pass found significant, in the same stripe order.
fn refine(
    out: &mut [i32],
    stride: usize,
    width: usize,
    height: usize,
    planes: Planes,
    r: Refinement<'_>,
) -> Result<()> {
    if planes.p == 0 {
        return Err("refinement passes below bit-plane 0");
    }
    // Where μ's lowest bit sits in a value, the bit below it and the half below that.
    let s = planes.p + u32::from(!planes.reversible);
    let one = 1i32 << (s - 1);
    let half = if s >= 2 { 1i32 << (s - 2) } else { 0 };
    let sw = width + 2;
    let mut st = vec![0u8; sw * (height + 2)];
    for y in 0..height {
        for x in 0..width {
            if out[y * stride + x] != 0 {
                st[(y + 1) * sw + x + 1] = 1;
            }
        }
    }
    let mut sp = Forward {
        data: r.data,
        pos: 0,
        cur: 0,
        left: 0,
        last_ff: false,
    };
    let mut fresh = [(0usize, 0usize); 16];
    for y0 in (0..height).step_by(4) {
        let y1 = (y0 + 4).min(height);
        for x0 in (0..width).step_by(4) {
            let x1 = (x0 + 4).min(width);
            let mut n = 0;
            for x in x0..x1 {
                for y in y0..y1 {
                    let i = (y + 1) * sw + x + 1;
                    if st[i] != 0 {
                        continue;
                    }
                    let mut any =
                        st[i - sw - 1] | st[i - sw] | st[i - sw + 1] | st[i - 1] | st[i + 1];
                    if !(r.causal && y == y0 + 3) {
                        any |= st[i + sw - 1] | st[i + sw] | st[i + sw + 1];
                    }
                    if any != 0 && sp.bit() == 1 {
                        st[i] = 2;
                        fresh[n] = (x, y);
                        n += 1;
                    }
                }
            }
            for &(x, y) in &fresh[..n] {
                let v = one | half;
                out[y * stride + x] = if sp.bit() == 1 { -v } else { v };
            }
        }
    }
    if r.magref {
        let mut mr = Backward {
            data: r.data,
            left_bytes: r.data.len(),
            cur: 0,
            left: 0,
            unstuff: true,
        };
        for y0 in (0..height).step_by(4) {
            let y1 = (y0 + 4).min(height);
            for x in 0..width {
                for y in y0..y1 {
                    if st[(y + 1) * sw + x + 1] != 1 {
                        continue;
                    }
                    let o = &mut out[y * stride + x];
                    let b = mr.bit();
                    let mag = ((o.unsigned_abs() ^ ((1 - b) << (s - 1))) as i32) | half;
                    *o = if *o < 0 { -mag } else { mag };
                }
            }
        }
    }
    Ok(())
}
