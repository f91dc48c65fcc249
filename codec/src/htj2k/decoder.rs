//! HTJ2K decoding (ISO/IEC 15444-15 over the Part 1 codestream), pure Rust: markers, tiles and
//! tile-parts, packets in all five progression orders with precincts, the HT block passes
//! ([`super::block_decoder`]: cleanup, SigProp, MagRef; vertically causal or not),
//! dequantization, the inverse 5/3 and 9/7 wavelets, the inverse RCT and ICT, and decoding at a
//! reduced resolution or from a prefix (the first bytes of a `.4.202` stream).
//!
//! What this decoder does not take answers [`DecodeError::Unsupported`], for the caller to hand
//! the stream to another decoder: code-blocks with more than one HT set or that contribute to
//! more than one quality layer, Part 1 (EBCOT) code-blocks, subsampled components, progression
//! order changes (POC), packed packet headers (PPM, PPT), precisions above 16 bits, more than 28
//! magnitude bits in a subband, images past 2^28 samples. Everything else malformed is
//! [`DecodeError::Malformed`], never a panic.

use super::block_decoder;

/// Why a codestream was not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A feature this decoder leaves to others.
    Unsupported(String),
    /// Not a valid codestream.
    Malformed(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Unsupported(s) => write!(f, "not supported by this decoder: {s}"),
            DecodeError::Malformed(s) => write!(f, "malformed codestream: {s}"),
        }
    }
}

impl std::error::Error for DecodeError {}

type Result<T> = std::result::Result<T, DecodeError>;

/// The most samples an image may have here (2^28: 16,384² grey).
const MAX_SAMPLES: u64 = 1 << 28;
/// The most precincts and code-blocks a tile may have.
const MAX_PARTS: u64 = 1 << 20;

fn bad<T>(s: impl Into<String>) -> Result<T> {
    Err(DecodeError::Malformed(s.into()))
}

fn unsupported<T>(s: impl Into<String>) -> Result<T> {
    Err(DecodeError::Unsupported(s.into()))
}

/// A decoded image.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Columns (at the decoded resolution).
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Components.
    pub components: usize,
    /// Bits per sample, of the first component.
    pub precision: u32,
    /// Two's complement samples (of the first component).
    pub signed: bool,
    /// Samples, components interleaved.
    pub samples: Vec<i32>,
}

/// The image and tile geometry (SIZ, A.5.1).
struct Siz {
    x1: u32,
    y1: u32,
    x0: u32,
    y0: u32,
    tw: u32,
    th: u32,
    tx0: u32,
    ty0: u32,
    comps: Vec<(u32, bool)>,
}

/// Coding style of a component (COD/COC, A.6.1–2).
#[derive(Clone)]
struct Cod {
    levels: u32,
    xcb: u32,
    ycb: u32,
    cb_style: u8,
    reversible: bool,
    /// Precinct exponents per resolution (PPx, PPy); 15 each by default.
    precincts: Vec<(u32, u32)>,
}

/// Coding style of the whole tile (COD).
#[derive(Clone)]
struct Global {
    order: u8,
    layers: u32,
    mct: bool,
    sop: bool,
    eph: bool,
}

/// Quantization (QCD/QCC, A.6.4–5): guard bits and per subband (exponent, mantissa), in the
/// order LL, then HL, LH, HH from the coarsest level; one entry when derived.
#[derive(Clone)]
struct Qcd {
    guard: u32,
    style: u8,
    steps: Vec<(u32, u32)>,
}

impl Qcd {
    /// Exponent and mantissa of subband `i` (QCD order) at decomposition level count `levels`.
    fn step(&self, i: usize, levels: u32) -> Result<(u32, u32)> {
        if self.style == 1 {
            let (e0, m0) = *self
                .steps
                .first()
                .ok_or(DecodeError::Malformed("an empty QCD".into()))?;
            // Derived (E-5): the level's exponent from LL's.
            let n_b = if i == 0 {
                levels
            } else {
                levels - (i as u32 - 1) / 3
            };
            let e = (e0 + n_b)
                .checked_sub(levels)
                .ok_or(DecodeError::Malformed("QCD".into()))?;
            Ok((e, m0))
        } else {
            self.steps
                .get(i)
                .copied()
                .ok_or_else(|| DecodeError::Malformed("a QCD with too few subbands".into()))
        }
    }
}

/// Tile-specific or main-header parameters.
#[derive(Clone)]
struct Params {
    global: Global,
    cod: Vec<Option<Cod>>,
    qcd: Vec<Option<Qcd>>,
    default_cod: Option<Cod>,
    default_qcd: Option<Qcd>,
}

impl Params {
    fn cod(&self, c: usize) -> Result<&Cod> {
        self.cod[c]
            .as_ref()
            .or(self.default_cod.as_ref())
            .ok_or_else(|| DecodeError::Malformed("no COD marker segment".into()))
    }
    fn qcd(&self, c: usize) -> Result<&Qcd> {
        self.qcd[c]
            .as_ref()
            .or(self.default_qcd.as_ref())
            .ok_or_else(|| DecodeError::Malformed("no QCD marker segment".into()))
    }
}

/// A reader over a marker segment's body.
struct Seg<'a> {
    b: &'a [u8],
    at: usize,
}

impl Seg<'_> {
    fn u8(&mut self) -> Result<u8> {
        let v = *self
            .b
            .get(self.at)
            .ok_or(DecodeError::Malformed("a short marker segment".into()))?;
        self.at += 1;
        Ok(v)
    }
    fn u16(&mut self) -> Result<u16> {
        Ok((u16::from(self.u8()?) << 8) | u16::from(self.u8()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok((u32::from(self.u16()?) << 16) | u32::from(self.u16()?))
    }
    fn rest(&self) -> usize {
        self.b.len().saturating_sub(self.at)
    }
}

fn read_siz(s: &mut Seg<'_>) -> Result<Siz> {
    let _rsiz = s.u16()?;
    let (x1, y1, x0, y0) = (s.u32()?, s.u32()?, s.u32()?, s.u32()?);
    let (tw, th, tx0, ty0) = (s.u32()?, s.u32()?, s.u32()?, s.u32()?);
    let nc = s.u16()?;
    if x1 <= x0 || y1 <= y0 || tw == 0 || th == 0 || tx0 > x0 || ty0 > y0 {
        return bad("SIZ: an empty image or tiles that do not cover it");
    }
    if u64::from(tx0) + u64::from(tw) <= u64::from(x0)
        || u64::from(ty0) + u64::from(th) <= u64::from(y0)
    {
        return bad("SIZ: the first tile is outside the image");
    }
    if nc == 0 {
        return bad("SIZ: no components");
    }
    let mut comps = Vec::with_capacity(usize::from(nc));
    for _ in 0..nc {
        let ssiz = s.u8()?;
        let (dx, dy) = (s.u8()?, s.u8()?);
        if dx != 1 || dy != 1 {
            return unsupported("subsampled components");
        }
        let precision = u32::from(ssiz & 0x7F) + 1;
        if precision > 16 {
            return unsupported(format!("{precision}-bit samples"));
        }
        comps.push((precision, ssiz & 0x80 != 0));
    }
    let (w, h) = (u64::from(x1 - x0), u64::from(y1 - y0));
    if w.saturating_mul(h).saturating_mul(u64::from(nc)) > MAX_SAMPLES {
        return unsupported("an image of more than 2^28 samples");
    }
    let tiles = u64::from(x1 - tx0)
        .div_ceil(u64::from(tw))
        .saturating_mul(u64::from(y1 - ty0).div_ceil(u64::from(th)));
    if tiles > 65_535 {
        return bad("SIZ: more than 65,535 tiles");
    }
    Ok(Siz {
        x1,
        y1,
        x0,
        y0,
        tw,
        th,
        tx0,
        ty0,
        comps,
    })
}

/// The component part of COD or COC (SPcod / SPcoc), after Scod's precinct flag.
fn read_spcod(s: &mut Seg<'_>, precincts: bool) -> Result<Cod> {
    let levels = u32::from(s.u8()?);
    let xcb = u32::from(s.u8()?) + 2;
    let ycb = u32::from(s.u8()?) + 2;
    let cb_style = s.u8()?;
    let transform = s.u8()?;
    if levels > 32 || xcb > 10 || ycb > 10 || xcb + ycb > 12 {
        return bad("COD: impossible decomposition levels or code-block size");
    }
    let mut pp = Vec::with_capacity(levels as usize + 1);
    for _ in 0..=levels {
        if precincts {
            let v = s.u8()?;
            pp.push((u32::from(v & 0xF), u32::from(v >> 4)));
        } else {
            pp.push((15, 15));
        }
    }
    if transform > 1 {
        return unsupported("an arbitrary wavelet (Part 2)");
    }
    Ok(Cod {
        levels,
        xcb,
        ycb,
        cb_style,
        reversible: transform == 1,
        precincts: pp,
    })
}

fn read_qcd(s: &mut Seg<'_>) -> Result<Qcd> {
    let sq = s.u8()?;
    let style = sq & 0x1F;
    let guard = u32::from(sq >> 5);
    let mut steps = Vec::new();
    match style {
        0 => {
            while s.rest() > 0 {
                steps.push((u32::from(s.u8()? >> 3), 0));
            }
        }
        1 | 2 => {
            while s.rest() >= 2 {
                let v = s.u16()?;
                steps.push((u32::from(v >> 11), u32::from(v & 0x7FF)));
            }
        }
        _ => return bad("QCD: an unknown quantization style"),
    }
    if steps.is_empty() {
        return bad("QCD: no subbands");
    }
    Ok(Qcd {
        guard,
        style,
        steps,
    })
}

/// Applies a COD, COC, QCD or QCC marker segment to `p`.
fn apply_marker(p: &mut Params, code: u16, body: &[u8], nc: usize) -> Result<()> {
    let mut s = Seg { b: body, at: 0 };
    let comp = |s: &mut Seg<'_>| -> Result<usize> {
        let c = if nc < 257 {
            usize::from(s.u8()?)
        } else {
            usize::from(s.u16()?)
        };
        if c >= nc {
            return bad("a marker segment for a component that does not exist");
        }
        Ok(c)
    };
    match code {
        0xFF52 => {
            let scod = s.u8()?;
            let order = s.u8()?;
            let layers = u32::from(s.u16()?);
            let mct = s.u8()?;
            if order > 4 || layers == 0 {
                return bad("COD: an unknown progression order or no layers");
            }
            p.global = Global {
                order,
                layers,
                mct: mct == 1,
                sop: scod & 2 != 0,
                eph: scod & 4 != 0,
            };
            p.default_cod = Some(read_spcod(&mut s, scod & 1 != 0)?);
            // A COD in a tile header replaces the main header's COCs (A.6.1's precedence).
            p.cod.iter_mut().for_each(|c| *c = None);
        }
        0xFF53 => {
            let c = comp(&mut s)?;
            let scoc = s.u8()?;
            p.cod[c] = Some(read_spcod(&mut s, scoc & 1 != 0)?);
        }
        0xFF5C => {
            p.default_qcd = Some(read_qcd(&mut s)?);
            p.qcd.iter_mut().for_each(|c| *c = None);
        }
        0xFF5D => {
            let c = comp(&mut s)?;
            p.qcd[c] = Some(read_qcd(&mut s)?);
        }
        _ => {}
    }
    Ok(())
}

/// The image a codestream says it holds (its SIZ marker segment, A.5.1): columns, rows and
/// components, read before anything is allocated for it.
pub fn dimensions(cs: &[u8]) -> Result<(usize, usize, usize)> {
    if cs.len() < 6 || cs[0..4] != [0xFF, 0x4F, 0xFF, 0x51] {
        return bad("no SOC and SIZ marker segment at the start");
    }
    let len = read_len(cs, 4)?;
    let siz = read_siz(&mut Seg {
        b: &cs[6..4 + len],
        at: 0,
    })?;
    Ok((
        (siz.x1 - siz.x0) as usize,
        (siz.y1 - siz.y0) as usize,
        siz.comps.len(),
    ))
}

/// Decodes an HTJ2K codestream, at full resolution (`reduce` 0) or with the `reduce` finest
/// resolution levels left out (each halving the sides, rounding up).
pub fn decode(cs: &[u8], reduce: u32) -> Result<Decoded> {
    if cs.len() < 4 || cs[0..2] != [0xFF, 0x4F] {
        return bad("no SOC marker");
    }
    let mut at = 2;
    let mut siz: Option<Siz> = None;
    let mut params: Option<Params> = None;
    // Tile data, per tile: its parameters and its tile-parts' bodies in order.
    let mut tiles: Vec<(Option<Params>, Vec<&[u8]>)> = Vec::new();
    let mut in_main = true;
    while at + 2 <= cs.len() {
        let code = u16::from_be_bytes([cs[at], cs[at + 1]]);
        at += 2;
        match code {
            0xFFD9 => break,
            0xFF90 => {
                in_main = false;
                let (Some(siz), Some(main)) = (&siz, &params) else {
                    return bad("a tile before the SIZ or COD/QCD marker segments");
                };
                let len = read_len(cs, at)?;
                let mut s = Seg {
                    b: &cs[at + 2..at + len],
                    at: 0,
                };
                let isot = usize::from(s.u16()?);
                let psot = s.u32()? as usize;
                let tpsot = s.u8()?;
                let sot_start = at - 2;
                at += len;
                let ntx = (siz.x1 - siz.tx0).div_ceil(siz.tw) as usize;
                let nty = (siz.y1 - siz.ty0).div_ceil(siz.th) as usize;
                if isot >= ntx * nty {
                    return bad("SOT: a tile index beyond the tile count");
                }
                if tiles.len() < ntx * nty {
                    tiles.resize_with(ntx * nty, || (None, Vec::new()));
                }
                let end = if psot == 0 {
                    if cs.ends_with(&[0xFF, 0xD9]) {
                        (cs.len() - 2).max(at)
                    } else {
                        cs.len()
                    }
                } else {
                    (sot_start + psot).min(cs.len())
                };
                // The tile-part header: parameters (first tile-part only) up to SOD.
                let tile = &mut tiles[isot];
                if tile.0.is_none() {
                    tile.0 = Some(main.clone());
                }
                loop {
                    if at + 2 > end {
                        return bad("a tile-part header without SOD");
                    }
                    let c = u16::from_be_bytes([cs[at], cs[at + 1]]);
                    at += 2;
                    if c == 0xFF93 {
                        break;
                    }
                    let len = read_len(cs, at)?;
                    if at + len > end {
                        return bad("a marker segment beyond its tile-part");
                    }
                    match c {
                        0xFF52 | 0xFF53 | 0xFF5C | 0xFF5D => {
                            if tpsot != 0 {
                                return bad(
                                    "coding parameters in a tile-part other than the first",
                                );
                            }
                            let p = tile
                                .0
                                .as_mut()
                                .ok_or(DecodeError::Malformed("tile".into()))?;
                            apply_marker(p, c, &cs[at + 2..at + len], siz.comps.len())?;
                        }
                        0xFF5F => return unsupported("a progression order change (POC)"),
                        0xFF61 => return unsupported("packed packet headers (PPT)"),
                        _ => {}
                    }
                    at += len;
                }
                tile.1.push(&cs[at..end]);
                at = end;
            }
            _ if in_main => {
                let len = read_len(cs, at)?;
                let body = &cs[at + 2..at + len];
                match code {
                    0xFF51 => {
                        let s = read_siz(&mut Seg { b: body, at: 0 })?;
                        let nc = s.comps.len();
                        params = Some(Params {
                            global: Global {
                                order: 0,
                                layers: 1,
                                mct: false,
                                sop: false,
                                eph: false,
                            },
                            cod: vec![None; nc],
                            qcd: vec![None; nc],
                            default_cod: None,
                            default_qcd: None,
                        });
                        siz = Some(s);
                    }
                    0xFF52 | 0xFF53 | 0xFF5C | 0xFF5D => {
                        let (Some(p), Some(s)) = (params.as_mut(), &siz) else {
                            return bad("coding parameters before SIZ");
                        };
                        apply_marker(p, code, body, s.comps.len())?;
                    }
                    0xFF5F => return unsupported("a progression order change (POC)"),
                    0xFF60 => return unsupported("packed packet headers (PPM)"),
                    _ => {}
                }
                at += len;
            }
            _ => {
                return bad(format!(
                    "an unexpected marker {code:04X} between tile-parts"
                ))
            }
        }
    }
    let siz = siz.ok_or(DecodeError::Malformed("no SIZ marker segment".into()))?;
    // Without its EOC, a prefix: packets that did not arrive whole are left out.
    let truncated = !cs.ends_with(&[0xFF, 0xD9]);
    decode_image(&siz, &tiles, reduce, truncated)
}

fn read_len(cs: &[u8], at: usize) -> Result<usize> {
    if at + 2 > cs.len() {
        return bad("a marker segment cut short");
    }
    let len = usize::from(u16::from_be_bytes([cs[at], cs[at + 1]]));
    if len < 2 || at + len > cs.len() {
        return bad("a marker segment longer than the codestream");
    }
    Ok(len)
}

/// A rectangle [x0, x1) × [y0, y1).
#[derive(Clone, Copy, Debug)]
struct Rect {
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
}

impl Rect {
    fn w(&self) -> usize {
        (self.x1 - self.x0) as usize
    }
    fn h(&self) -> usize {
        (self.y1 - self.y0) as usize
    }
}

fn ceil_shr(v: u32, s: u32) -> u32 {
    if s >= 32 {
        u32::from(v > 0)
    } else {
        ((u64::from(v) + (1u64 << s) - 1) >> s) as u32
    }
}

/// Subband `b` (0 LL, 1 HL, 2 LH, 3 HH) of decomposition level `n` (B.5): its rectangle.
fn band_rect(tc: Rect, n: u32, b: u32) -> Rect {
    let (xo, yo) = ((b & 1), (b >> 1));
    let f = |v: u32, o: u32| -> u32 {
        if n == 0 {
            v
        } else {
            let off = u64::from(o) << (n - 1);
            (((u64::from(v)).saturating_sub(off) + (1u64 << n) - 1) >> n) as u32
        }
    };
    Rect {
        x0: f(tc.x0, xo),
        y0: f(tc.y0, yo),
        x1: f(tc.x1, xo),
        y1: f(tc.y1, yo),
    }
}

/// One code-block: where it is in its subband, and what its packets brought.
struct Block {
    rect: Rect,
    included: bool,
    zero_planes: u32,
    passes: u32,
    data: Vec<u8>,
    cleanup_len: usize,
}

/// A subband of a precinct: its code-blocks (grid `nbx × nby`) and tag trees.
struct PrecinctBand {
    band: usize,
    nbx: usize,
    nby: usize,
    blocks: Vec<Block>,
    inclusion: TagTree,
    zero_planes: TagTree,
}

struct Precinct {
    bands: Vec<PrecinctBand>,
}

/// A subband of a tile-component.
struct Band {
    rect: Rect,
    /// K_max and the dequantization step (1 for reversible).
    kmax: u32,
    step: f32,
}

struct Resolution {
    rect: Rect,
    bands: Vec<Band>,
    precincts: Vec<Precinct>,
    /// Precinct grid: count across and down, and the exponents.
    npx: u32,
    ppx: u32,
    ppy: u32,
}

struct TileComp {
    cod: Cod,
    resolutions: Vec<Resolution>,
}

fn decode_image(
    siz: &Siz,
    tiles: &[(Option<Params>, Vec<&[u8]>)],
    reduce: u32,
    truncated: bool,
) -> Result<Decoded> {
    let nc = siz.comps.len();
    let ntx = (siz.x1 - siz.tx0).div_ceil(siz.tw);
    let nty = (siz.y1 - siz.ty0).div_ceil(siz.th);
    // The output at the decoded resolution.
    let out_rect = Rect {
        x0: ceil_shr(siz.x0, reduce),
        y0: ceil_shr(siz.y0, reduce),
        x1: ceil_shr(siz.x1, reduce),
        y1: ceil_shr(siz.y1, reduce),
    };
    let (ow, oh) = (out_rect.w(), out_rect.h());
    let mut samples = vec![0i32; ow * oh * nc];
    for ty in 0..nty {
        for tx in 0..ntx {
            let index = (ty * ntx + tx) as usize;
            let (params, parts) = match tiles.get(index) {
                Some((Some(params), parts)) => (params, parts),
                // A prefix may end before the last tiles: they stay at zero (mid-grey).
                _ if truncated => continue,
                _ => return bad(format!("tile {index} is missing")),
            };
            let trect = Rect {
                x0: (siz.tx0 + tx * siz.tw).max(siz.x0),
                y0: (siz.ty0 + ty * siz.th).max(siz.y0),
                x1: (u64::from(siz.tx0) + u64::from(tx + 1) * u64::from(siz.tw))
                    .min(u64::from(siz.x1)) as u32,
                y1: (u64::from(siz.ty0) + u64::from(ty + 1) * u64::from(siz.th))
                    .min(u64::from(siz.y1)) as u32,
            };
            decode_tile(
                siz,
                params,
                parts,
                trect,
                reduce,
                truncated,
                out_rect,
                &mut samples,
            )?;
        }
    }
    Ok(Decoded {
        width: ow,
        height: oh,
        components: nc,
        precision: siz.comps[0].0,
        signed: siz.comps[0].1,
        samples,
    })
}

#[allow(clippy::too_many_arguments)]
fn decode_tile(
    siz: &Siz,
    params: &Params,
    parts: &[&[u8]],
    trect: Rect,
    reduce: u32,
    truncated: bool,
    out_rect: Rect,
    out: &mut [i32],
) -> Result<()> {
    let nc = siz.comps.len();
    let g = &params.global;
    // The tile-components, their resolutions, subbands, precincts and code-blocks (B.5–B.7).
    let mut comps = Vec::with_capacity(nc);
    let mut budget = 0u64;
    for c in 0..nc {
        let cod = params.cod(c)?.clone();
        let qcd = params.qcd(c)?;
        if cod.cb_style & 0x40 == 0 {
            return unsupported("Part 1 (EBCOT) code-blocks");
        }
        if cod.cb_style & 0x80 != 0 {
            return unsupported("mixed HT and Part 1 code-blocks");
        }
        if reduce > cod.levels {
            return bad("a reduction beyond the decomposition levels");
        }
        let (precision, _) = siz.comps[c];
        let nl = cod.levels;
        let mut resolutions = Vec::with_capacity(nl as usize + 1);
        for r in 0..=nl {
            let rect = band_rect(trect, nl - r, 0);
            let (ppx, ppy) = cod.precincts[r as usize];
            if r > 0 && (ppx == 0 || ppy == 0) {
                return bad("a precinct exponent of 0 above the lowest resolution");
            }
            let npx = if rect.x1 > rect.x0 {
                ceil_shr(rect.x1, ppx) - (rect.x0 >> ppx)
            } else {
                0
            };
            let npy = if rect.y1 > rect.y0 {
                ceil_shr(rect.y1, ppy) - (rect.y0 >> ppy)
            } else {
                0
            };
            // Precincts and code-blocks are bounded (a few bytes of header could otherwise ask
            // for billions); valid streams stay far below.
            budget = budget.saturating_add(u64::from(npx) * u64::from(npy));
            if budget > MAX_PARTS {
                return unsupported("more than 2^20 precincts and code-blocks in a tile");
            }
            let kinds: &[u32] = if r == 0 { &[0] } else { &[1, 2, 3] };
            let n = if r == 0 { nl } else { nl - r + 1 };
            let mut bands = Vec::new();
            for &kind in kinds {
                let brect = band_rect(trect, n, kind);
                let qi = if r == 0 {
                    0
                } else {
                    1 + 3 * (r as usize - 1) + kind as usize - 1
                };
                let (eps, mant) = qcd.step(qi, nl)?;
                let kmax = (qcd.guard + eps).saturating_sub(1);
                if kmax > 28 {
                    return unsupported("more than 28 magnitude bits in a subband");
                }
                let gain = [0, 1, 1, 2][kind as usize];
                let step = if cod.reversible {
                    1.0
                } else {
                    let rb = precision as i32 + gain;
                    2f32.powi(rb - eps as i32) * (1.0 + mant as f32 / 2048.0)
                };
                bands.push(Band {
                    rect: brect,
                    kmax,
                    step,
                });
            }
            // Code-block size within this resolution's precincts.
            let (xcb, ycb) = if r == 0 {
                (cod.xcb.min(ppx), cod.ycb.min(ppy))
            } else {
                (cod.xcb.min(ppx - 1), cod.ycb.min(ppy - 1))
            };
            let mut precincts = Vec::with_capacity((npx * npy) as usize);
            for py in 0..npy {
                for px in 0..npx {
                    // The precinct in resolution coordinates, then in each subband's.
                    let prx0 = ((rect.x0 >> ppx) + px) << ppx;
                    let pry0 = ((rect.y0 >> ppy) + py) << ppy;
                    let (shx, shy) = if r == 0 { (0, 0) } else { (1, 1) };
                    let mut pbands = Vec::new();
                    for (bi, band) in bands.iter().enumerate() {
                        let bx0 = prx0 >> shx;
                        let by0 = pry0 >> shy;
                        let bx1 = bx0 + (1u32 << (ppx - shx));
                        let by1 = by0 + (1u32 << (ppy - shy));
                        let pr = Rect {
                            x0: bx0.max(band.rect.x0),
                            y0: by0.max(band.rect.y0),
                            x1: bx1.min(band.rect.x1),
                            y1: by1.min(band.rect.y1),
                        };
                        let (nbx, nby, blocks) = if pr.x1 <= pr.x0 || pr.y1 <= pr.y0 {
                            (0, 0, Vec::new())
                        } else {
                            let cbx0 = pr.x0 >> xcb;
                            let cby0 = pr.y0 >> ycb;
                            let nbx = (ceil_shr(pr.x1, xcb) - cbx0) as usize;
                            let nby = (ceil_shr(pr.y1, ycb) - cby0) as usize;
                            budget = budget.saturating_add((nbx * nby) as u64);
                            if budget > MAX_PARTS {
                                return unsupported(
                                    "more than 2^20 precincts and code-blocks in a tile",
                                );
                            }
                            let mut blocks = Vec::with_capacity(nbx * nby);
                            for j in 0..nby as u32 {
                                for i in 0..nbx as u32 {
                                    let x0 = ((cbx0 + i) << xcb).max(pr.x0);
                                    let y0 = ((cby0 + j) << ycb).max(pr.y0);
                                    let x1 = ((cbx0 + i + 1) << xcb).min(pr.x1);
                                    let y1 = ((cby0 + j + 1) << ycb).min(pr.y1);
                                    blocks.push(Block {
                                        rect: Rect { x0, y0, x1, y1 },
                                        included: false,
                                        zero_planes: 0,
                                        passes: 0,
                                        data: Vec::new(),
                                        cleanup_len: 0,
                                    });
                                }
                            }
                            (nbx, nby, blocks)
                        };
                        pbands.push(PrecinctBand {
                            band: bi,
                            nbx,
                            nby,
                            blocks,
                            inclusion: TagTree::new(nbx, nby),
                            zero_planes: TagTree::new(nbx, nby),
                        });
                    }
                    precincts.push(Precinct { bands: pbands });
                }
            }
            resolutions.push(Resolution {
                rect,
                bands,
                precincts,
                npx,
                ppx,
                ppy,
            });
        }
        comps.push(TileComp { cod, resolutions });
    }

    // Packets, in the progression order (B.12), read from the tile-parts' bodies in turn.
    let precincts: u64 = comps
        .iter()
        .flat_map(|c| &c.resolutions)
        .map(|r| r.precincts.len() as u64)
        .sum();
    if precincts * u64::from(g.layers) > MAX_PARTS * 4 {
        return unsupported("more than 2^22 packets in a tile");
    }
    let order = packet_order(&comps, g, trect);
    let mut reader = PacketData {
        parts,
        part: 0,
        at: 0,
    };
    for (l, r, c, p) in order {
        if reader.done() {
            break;
        }
        let comp = &mut comps[c];
        let keep = r + reduce <= comp.cod.levels;
        let res = &mut comp.resolutions[r as usize];
        match read_packet(&mut reader, &mut res.precincts[p], l, g, keep) {
            Ok(()) => {}
            // A codestream cut short (a prefix of a progressive one): what arrived whole.
            Err(DecodeError::Malformed(_)) if truncated => break,
            Err(e) => return Err(e),
        }
    }

    // Code-blocks into their subbands' buffers: a subband at a time, the subbands in parallel
    // where the platform has threads (the largest first, so the work evens out).
    let mut jobs: Vec<(usize, usize, usize)> = Vec::new(); // component, resolution, band
    for (c, comp) in comps.iter().enumerate() {
        let top = (comp.cod.levels - reduce) as usize;
        for (r, res) in comp.resolutions[..=top].iter().enumerate() {
            jobs.extend((0..res.bands.len()).map(|b| (c, r, b)));
        }
    }
    let area = |&(c, r, b): &(usize, usize, usize)| {
        let rect = comps[c].resolutions[r].bands[b].rect;
        rect.w() * rect.h()
    };
    jobs.sort_by_key(|j| std::cmp::Reverse(area(j)));
    let decoded = super::par_map(
        jobs.len(),
        out_rect.w() * out_rect.h() * nc,
        || (),
        |_, i| -> Result<Vec<i32>> {
            let (c, r, b) = jobs[i];
            let comp = &comps[c];
            let res = &comp.resolutions[r];
            let band = &res.bands[b];
            let w = band.rect.w();
            let mut buf = vec![0i32; w * band.rect.h()];
            for pb in res.precincts.iter().flat_map(|p| &p.bands) {
                if pb.band != b {
                    continue;
                }
                for blk in pb.blocks.iter().filter(|blk| !blk.data.is_empty()) {
                    let off = (blk.rect.y0 - band.rect.y0) as usize * w
                        + (blk.rect.x0 - band.rect.x0) as usize;
                    decode_block(blk, band, &mut buf, w, off, &comp.cod)?;
                }
            }
            Ok(buf)
        },
    );
    // Per component and resolution, its subbands: coefficients, rectangle, step.
    let mut bands: Vec<Vec<Vec<(Vec<i32>, Rect, f32)>>> = comps
        .iter()
        .map(|comp| {
            let top = (comp.cod.levels - reduce) as usize;
            comp.resolutions[..=top]
                .iter()
                .map(|res| {
                    res.bands
                        .iter()
                        .map(|band| (Vec::new(), band.rect, band.step))
                        .collect()
                })
                .collect()
        })
        .collect();
    for (&(c, r, b), buf) in jobs.iter().zip(decoded) {
        bands[c][r][b].0 = buf?;
    }

    // The inverse wavelet, per component.
    let mut planes: Vec<(Vec<f32>, Rect)> = Vec::with_capacity(nc);
    let mut int_planes: Vec<(Vec<i32>, Rect)> = Vec::with_capacity(nc);
    for (comp, bands) in comps.iter().zip(&bands) {
        if comp.cod.reversible {
            int_planes.push(synthesize_53(bands));
        } else {
            planes.push(synthesize_97(bands));
        }
    }

    // Colour (G.2, G.3), then DC level shift and clamping into the output.
    let mct = g.mct && nc >= 3;
    let rct = mct && planes.is_empty();
    let mut ints: Vec<(Vec<i32>, Rect)> = if planes.is_empty() {
        int_planes
    } else if int_planes.is_empty() {
        if mct
            && planes[..3]
                .iter()
                .all(|(p, _)| p.len() == planes[0].0.len())
        {
            let (a, rest) = planes.split_at_mut(1);
            let (b, rest) = rest.split_at_mut(1);
            for ((y, cb), cr) in a[0]
                .0
                .iter_mut()
                .zip(b[0].0.iter_mut())
                .zip(rest[0].0.iter_mut())
            {
                let (yv, cbv, crv) = (*y, *cb, *cr);
                *y = yv + 1.402 * crv;
                *cb = yv - 0.344_136 * cbv - 0.714_136 * crv;
                *cr = yv + 1.772 * cbv;
            }
        }
        planes
            .into_iter()
            .map(|(p, r)| {
                (
                    p.into_iter().map(|v| v.round_ties_even() as i32).collect(),
                    r,
                )
            })
            .collect()
    } else {
        return unsupported("reversible and irreversible components in one tile");
    };
    let Some(&(_, rect)) = ints.first() else {
        return Ok(());
    };
    let (w, h) = (rect.w(), rect.h());
    if w == 0 || h == 0 {
        return Ok(());
    }
    if ints
        .iter()
        .any(|(p, r)| r.w() != w || r.h() != h || p.len() != w * h)
    {
        return bad("components of different sizes");
    }
    if rct {
        let (a, rest) = ints.split_at_mut(1);
        let (b, rest) = rest.split_at_mut(1);
        for ((y0, y1), y2) in a[0]
            .0
            .iter_mut()
            .zip(b[0].0.iter_mut())
            .zip(rest[0].0.iter_mut())
        {
            let gv = *y0 - ((*y1 + *y2) >> 2);
            let (r, bl) = (*y2 + gv, *y1 + gv);
            *y0 = r;
            *y1 = gv;
            *y2 = bl;
        }
    }
    let ow = out_rect.w();
    let (dx, dy) = (
        (rect.x0 - out_rect.x0) as usize,
        (rect.y0 - out_rect.y0) as usize,
    );
    for (c, (plane, _)) in ints.iter().enumerate() {
        let (precision, signed) = siz.comps[c];
        let (lo, hi, shift) = if signed {
            (-(1i32 << (precision - 1)), (1i32 << (precision - 1)) - 1, 0)
        } else {
            (0, (1i32 << precision) - 1, 1i32 << (precision - 1))
        };
        for (y, row) in plane.chunks_exact(w).enumerate() {
            let base = ((dy + y) * ow + dx) * nc + c;
            let dst = &mut out[base..base + (w - 1) * nc + 1];
            if nc == 1 {
                for (d, &v) in dst.iter_mut().zip(row) {
                    *d = (v + shift).clamp(lo, hi);
                }
            } else {
                for (d, &v) in dst.iter_mut().step_by(nc).zip(row) {
                    *d = (v + shift).clamp(lo, hi);
                }
            }
        }
    }
    Ok(())
}

/// Decodes one code-block into `buf` from index `off` (rows `w` apart): integers when
/// `reversible`, else in half steps (see [`block_decoder::decode`]).
fn decode_block(
    blk: &Block,
    band: &Band,
    buf: &mut [i32],
    w: usize,
    off: usize,
    cod: &Cod,
) -> Result<()> {
    if blk.passes > 3 {
        return unsupported("more than one HT set in a code-block");
    }
    if blk.zero_planes >= band.kmax {
        return bad("more missing bit-planes than the subband has");
    }
    let p = band.kmax - 1 - blk.zero_planes;
    let (bw, bh) = (blk.rect.w(), blk.rect.h());
    let refinement = (blk.passes > 1).then(|| block_decoder::Refinement {
        data: &blk.data[blk.cleanup_len..],
        magref: blk.passes == 3,
        causal: cod.cb_style & 0x08 != 0,
    });
    block_decoder::decode(
        &blk.data[..blk.cleanup_len],
        bw,
        bh,
        &mut buf[off..],
        w,
        block_decoder::Planes {
            p,
            limit: band.kmax,
            reversible: cod.reversible,
        },
        refinement,
    )
    .map_err(|e| DecodeError::Malformed(e.to_string()))
}

/// The packets of a tile in its progression order: (layer, resolution, component, precinct).
fn packet_order(comps: &[TileComp], g: &Global, trect: Rect) -> Vec<(u32, u32, usize, usize)> {
    let layers = g.layers;
    let max_levels = comps.iter().map(|c| c.cod.levels).max().unwrap_or(0);
    let mut out = Vec::new();
    match g.order {
        0 | 1 => {
            // LRCP, RLCP.
            for a in 0..if g.order == 0 { layers } else { max_levels + 1 } {
                for b in 0..if g.order == 0 { max_levels + 1 } else { layers } {
                    let (l, r) = if g.order == 0 { (a, b) } else { (b, a) };
                    for (c, comp) in comps.iter().enumerate() {
                        if r > comp.cod.levels {
                            continue;
                        }
                        for p in 0..comp.resolutions[r as usize].precincts.len() {
                            out.push((l, r, c, p));
                        }
                    }
                }
            }
        }
        _ => {
            // RPCL, PCRL, CPRL (B.12.1.3–5): precincts at their positions on the reference
            // grid, visited in raster order of those positions.
            let mut keyed: Vec<((u32, u64, u64, u32, u32), (u32, usize, usize))> = Vec::new();
            for (c, comp) in comps.iter().enumerate() {
                let nl = comp.cod.levels;
                for (r, res) in comp.resolutions.iter().enumerate() {
                    let r = r as u32;
                    let scale = nl - r;
                    for p in 0..res.precincts.len() {
                        let (px, py) = (p as u32 % res.npx.max(1), p as u32 / res.npx.max(1));
                        let gx = ((u64::from((res.rect.x0 >> res.ppx) + px) << res.ppx) << scale)
                            .max(u64::from(trect.x0));
                        let gy = ((u64::from((res.rect.y0 >> res.ppy) + py) << res.ppy) << scale)
                            .max(u64::from(trect.y0));
                        let key = match g.order {
                            2 => (r, gy, gx, c as u32, 0),
                            3 => (0, gy, gx, c as u32, r),
                            _ => (c as u32, gy, gx, r, 0),
                        };
                        keyed.push((key, (r, c, p)));
                    }
                }
            }
            keyed.sort_by_key(|(k, _)| *k);
            for (_, (r, c, p)) in keyed {
                for l in 0..layers {
                    out.push((l, r, c, p));
                }
            }
        }
    }
    out
}

/// The packet bytes of a tile: its tile-parts' bodies, one after the other.
struct PacketData<'a> {
    parts: &'a [&'a [u8]],
    part: usize,
    at: usize,
}

impl PacketData<'_> {
    fn done(&mut self) -> bool {
        while self.part < self.parts.len() && self.at >= self.parts[self.part].len() {
            self.part += 1;
            self.at = 0;
        }
        self.part >= self.parts.len()
    }
    fn cur(&self) -> &[u8] {
        self.parts
            .get(self.part)
            .map_or(&[], |p| &p[self.at.min(p.len())..])
    }
}

/// Packet header bits (B.10.1): most significant first; after 0xFF, 7 bits.
struct Bits<'a> {
    b: &'a [u8],
    at: usize,
    byte: u32,
    left: u32,
}

impl Bits<'_> {
    fn bit(&mut self) -> Result<u32> {
        if self.left == 0 {
            let prev = self.byte;
            self.byte = u32::from(
                *self
                    .b
                    .get(self.at)
                    .ok_or(DecodeError::Malformed("a packet header cut short".into()))?,
            );
            self.at += 1;
            self.left = if prev == 0xFF { 7 } else { 8 };
        }
        self.left -= 1;
        Ok((self.byte >> self.left) & 1)
    }
    fn bits(&mut self, n: u32) -> Result<u32> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }
    /// Bytes used, the header's end aligned (a last 0xFF takes the stuffed byte after it).
    fn end(&self) -> usize {
        if self.byte == 0xFF && self.at > 0 {
            self.at + 1
        } else {
            self.at
        }
    }
}

fn read_packet(
    reader: &mut PacketData<'_>,
    prec: &mut Precinct,
    layer: u32,
    g: &Global,
    keep: bool,
) -> Result<()> {
    let data = reader.cur();
    let mut start = 0;
    if g.sop && data.len() >= 6 && data[0] == 0xFF && data[1] == 0x91 {
        start = 6;
    }
    let mut bits = Bits {
        b: &data[start..],
        at: 0,
        byte: 0,
        left: 0,
    };
    let mut contributions: Vec<(usize, usize, usize)> = Vec::new(); // (band, block, length)
    if bits.bit()? == 1 {
        for (bi, pb) in prec.bands.iter_mut().enumerate() {
            for j in 0..pb.nby {
                for i in 0..pb.nbx {
                    let k = j * pb.nbx + i;
                    let blk = &mut pb.blocks[k];
                    let included = if blk.included {
                        bits.bit()? == 1
                    } else {
                        pb.inclusion.decode(&mut bits, i, j, layer + 1)? <= layer
                    };
                    if !included {
                        continue;
                    }
                    if blk.included {
                        return unsupported("a code-block in more than one quality layer");
                    }
                    blk.included = true;
                    // Missing MSBs: the tag tree's value, decoded to the end.
                    blk.zero_planes = pb.zero_planes.decode(&mut bits, i, j, u32::MAX)?;
                    // Coding passes (Table B.4).
                    let passes = if bits.bit()? == 0 {
                        1
                    } else if bits.bit()? == 0 {
                        2
                    } else {
                        let v = bits.bits(2)?;
                        if v < 3 {
                            3 + v
                        } else {
                            let v = bits.bits(5)?;
                            if v < 31 {
                                6 + v
                            } else {
                                37 + bits.bits(7)?
                            }
                        }
                    };
                    // HT: passes beyond the first HT set are placeholders (whole bit-planes
                    // the cleanup pass skips).
                    let placeholder = (passes - 1) / 3;
                    blk.zero_planes += placeholder;
                    blk.passes = passes - 3 * placeholder;
                    let mut lblock = 3;
                    while bits.bit()? == 1 {
                        lblock += 1;
                        if lblock > 32 {
                            return bad("a code-block length indicator beyond 32 bits");
                        }
                    }
                    let n = lblock + (31 - (3 * placeholder + 1).leading_zeros());
                    if n > 32 {
                        return bad("a code-block length beyond 32 bits");
                    }
                    let cup = bits.bits(n)? as usize;
                    let mut len = cup;
                    if blk.passes > 1 {
                        let n2 = lblock + u32::from(blk.passes > 2);
                        len += bits.bits(n2)? as usize;
                    }
                    blk.cleanup_len = cup;
                    contributions.push((bi, k, len));
                }
            }
        }
    }
    let mut at = start + bits.end();
    if g.eph {
        if data.get(at..at + 2) == Some(&[0xFF, 0x92]) {
            at += 2;
        } else {
            return bad("a packet header without its EPH marker");
        }
    }
    for (bi, k, len) in contributions {
        let body = data.get(at..at + len).ok_or(DecodeError::Malformed(
            "a packet body beyond its tile-part".into(),
        ))?;
        if keep {
            prec.bands[bi].blocks[k].data = body.to_vec();
        }
        at += len;
    }
    reader.at += at;
    Ok(())
}

/// A tag tree being decoded (B.10.2): per node, its known lower bound and whether that bound is
/// its value.
struct TagTree {
    levels: Vec<(usize, usize)>,
    low: Vec<Vec<u32>>,
    known: Vec<Vec<bool>>,
}

impl TagTree {
    fn new(w: usize, h: usize) -> TagTree {
        let mut levels = vec![(w, h)];
        let (mut lw, mut lh) = (w, h);
        while lw * lh > 1 {
            lw = lw.div_ceil(2);
            lh = lh.div_ceil(2);
            levels.push((lw, lh));
        }
        TagTree {
            low: levels.iter().map(|&(a, b)| vec![0; a * b]).collect(),
            known: levels.iter().map(|&(a, b)| vec![false; a * b]).collect(),
            levels,
        }
    }

    /// Decodes leaf (x, y) until its value is known or found to be ≥ `threshold`; returns the
    /// value when known, else `threshold` (or more).
    fn decode(&mut self, bits: &mut Bits<'_>, x: usize, y: usize, threshold: u32) -> Result<u32> {
        let mut low = 0u32;
        for lev in (0..self.levels.len()).rev() {
            let (lw, _) = self.levels[lev];
            let i = (y >> lev) * lw + (x >> lev);
            if self.low[lev][i] < low {
                self.low[lev][i] = low;
            }
            while !self.known[lev][i] && self.low[lev][i] < threshold {
                if bits.bit()? == 1 {
                    self.known[lev][i] = true;
                } else {
                    self.low[lev][i] += 1;
                    if self.low[lev][i] > 64 {
                        return bad("a tag tree value beyond 64");
                    }
                }
            }
            low = self.low[lev][i];
            if !self.known[lev][i] {
                return Ok(low.max(threshold));
            }
        }
        Ok(low)
    }
}

/// A sample type the wavelets run on: integers (5/3) or floats (9/7).
trait Sample: Copy + Default + Send {}
impl Sample for i32 {}
impl Sample for f32 {}

/// The subbands of a resolution, as the inverse transform takes them: (coefficients, rect).
type Bands<'a, T> = (&'a [T], Rect);

/// The next resolution's rows before vertical filtering: each row made from its low (LL/LH)
/// and high (HL/HH) band rows by `row_filter` (F.3.3's 2D_INTERLEAVE and HOR_SR).
fn interleave_rows<T: Sample>(
    ll: Bands<'_, T>,
    hl: Bands<'_, T>,
    lh: Bands<'_, T>,
    hh: Bands<'_, T>,
    row_filter: impl Fn(&[T], &[T], usize, &mut [T], &mut Padded<T>),
) -> (Vec<T>, Rect) {
    let (llr, hlr, lhr) = (ll.1, hl.1, lh.1);
    let rect = Rect {
        x0: llr.x0 + hlr.x0,
        y0: llr.y0 + lhr.y0,
        x1: llr.x1 + hlr.x1,
        y1: llr.y1 + lhr.y1,
    };
    let (w, h) = (rect.w(), rect.h());
    let mut out = vec![T::default(); w * h];
    if w == 0 || h == 0 {
        return (out, rect);
    }
    let (lw, hw) = (llr.w(), hlr.w());
    let mut pads = Padded {
        low: vec![T::default(); lw + 2],
        high: vec![T::default(); hw + 2],
    };
    for (y, row) in out.chunks_exact_mut(w).enumerate() {
        let gy = rect.y0 as usize + y;
        let (low, high) = if gy % 2 == 0 {
            let ry = gy / 2 - llr.y0 as usize;
            (&ll.0[ry * lw..ry * lw + lw], &hl.0[ry * hw..ry * hw + hw])
        } else {
            let ry = gy / 2 - lhr.y0 as usize;
            (&lh.0[ry * lw..ry * lw + lw], &hh.0[ry * hw..ry * hw + hw])
        };
        row_filter(low, high, rect.x0 as usize, row, &mut pads);
    }
    (out, rect)
}

/// A row's low-pass and high-pass samples apart, each with one slot before and after for the
/// symmetric extension (F.3.7): `low[1..=nl]`, `high[1..=nh]`.
struct Padded<T> {
    low: Vec<T>,
    high: Vec<T>,
}

impl<T: Sample> Padded<T> {
    fn load(&mut self, low: &[T], high: &[T]) {
        self.low[1..=low.len()].copy_from_slice(low);
        self.high[1..=high.len()].copy_from_slice(high);
    }
    /// The extension slots: the first and last samples mirrored (x[−1] = x[1] and
    /// x[n] = x[n − 2] in the interleaved row).
    fn extend_low(&mut self, nl: usize) {
        self.low[0] = self.low[1];
        self.low[nl + 1] = self.low[nl];
    }
    fn extend_high(&mut self, nh: usize) {
        self.high[0] = self.high[1];
        self.high[nh + 1] = self.high[nh];
    }
    /// Low and high samples back into the row: low-pass at even coordinates.
    fn store(&self, nl: usize, nh: usize, i0: usize, row: &mut [T]) {
        let (lo, hi) = if i0 % 2 == 0 { (0, 1) } else { (1, 0) };
        for (k, &v) in self.low[1..=nl].iter().enumerate() {
            row[lo + 2 * k] = v;
        }
        for (k, &v) in self.high[1..=nh].iter().enumerate() {
            row[hi + 2 * k] = v;
        }
    }
}

/// One row of the inverse 5/3 (F.3.8.1) from its low and high samples, the row's first
/// coordinate `i0`: lifting on the two halves apart (each step a pass over contiguous
/// samples), then interleaved. Low sample k's neighbours are high `k − 1 + o` and `k + o`, high
/// sample j's are low `j − o` and `j + 1 − o` (o: 1 when i0 is odd), at the padded indices.
fn row_53(low: &[i32], high: &[i32], i0: usize, row: &mut [i32], p: &mut Padded<i32>) {
    let (nl, nh) = (low.len(), high.len());
    if nl + nh == 1 {
        row[0] = if nl == 1 { low[0] } else { high[0] / 2 };
        return;
    }
    p.load(low, high);
    let o = i0 & 1;
    p.extend_high(nh);
    {
        let h = &p.high[o..];
        for (k, l) in p.low[1..=nl].iter_mut().enumerate() {
            *l -= (h[k] + h[k + 1] + 2) >> 2;
        }
    }
    p.extend_low(nl);
    {
        let l = &p.low[1 - o..];
        for (j, hv) in p.high[1..=nh].iter_mut().enumerate() {
            *hv += (l[j] + l[j + 1]) >> 1;
        }
    }
    p.store(nl, nh, i0, row);
}

/// One row of the inverse 9/7 (F.3.8.2), as [`row_53`].
fn row_97(low: &[f32], high: &[f32], i0: usize, row: &mut [f32], p: &mut Padded<f32>) {
    let (nl, nh) = (low.len(), high.len());
    if nl + nh == 1 {
        row[0] = if nl == 1 { low[0] } else { high[0] / 2.0 };
        return;
    }
    p.load(low, high);
    p.low[1..=nl].iter_mut().for_each(|v| *v *= K97);
    p.high[1..=nh].iter_mut().for_each(|v| *v /= K97);
    let o = i0 & 1;
    for (lc, hc) in [(DELTA, GAMMA), (BETA, ALPHA)] {
        p.extend_high(nh);
        {
            let h = &p.high[o..];
            for (k, l) in p.low[1..=nl].iter_mut().enumerate() {
                *l -= lc * (h[k] + h[k + 1]);
            }
        }
        p.extend_low(nl);
        {
            let l = &p.low[1 - o..];
            for (j, hv) in p.high[1..=nh].iter_mut().enumerate() {
                *hv -= hc * (l[j] + l[j + 1]);
            }
        }
    }
    p.store(nl, nh, i0, row);
}

/// The inverse 5/3 wavelet (F.3, reversible) from the subbands' integer coefficients up to
/// the last resolution given: the plane and its rectangle.
fn synthesize_53(bands: &[Vec<(Vec<i32>, Rect, f32)>]) -> (Vec<i32>, Rect) {
    let (ll, rect, _) = &bands[0][0];
    let mut cur = ll.clone();
    let mut crect = *rect;
    for level in &bands[1..] {
        let [(hl, hlr, _), (lh, lhr, _), (hh, hhr, _)] = &level[..] else {
            break;
        };
        // Rows first, then columns (F.3.2's 2D_SR: HOR_SR, then VER_SR; integer lifting is
        // exact only in the reverse order of the analysis).
        let (mut next, nrect) =
            interleave_rows((&cur, crect), (hl, *hlr), (lh, *lhr), (hh, *hhr), row_53);
        vertical_53(&mut next, nrect);
        cur = next;
        crect = nrect;
    }
    (cur, crect)
}

/// The inverse 9/7 (F.3, irreversible) from the subbands' coefficients in half steps,
/// dequantized with each subband's step on the way in.
fn synthesize_97(bands: &[Vec<(Vec<i32>, Rect, f32)>]) -> (Vec<f32>, Rect) {
    let deq = |v: &[i32], step: f32| -> Vec<f32> {
        let s = 0.5 * step;
        v.iter().map(|&c| c as f32 * s).collect()
    };
    let (ll, rect, step) = &bands[0][0];
    let mut cur = deq(ll, *step);
    let mut crect = *rect;
    for level in &bands[1..] {
        let [(hl, hlr, s1), (lh, lhr, s2), (hh, hhr, s3)] = &level[..] else {
            break;
        };
        let (hl, lh, hh) = (deq(hl, *s1), deq(lh, *s2), deq(hh, *s3));
        let (mut next, nrect) =
            interleave_rows((&cur, crect), (&hl, *hlr), (&lh, *lhr), (&hh, *hhr), row_97);
        vertical_97(&mut next, nrect);
        cur = next;
        crect = nrect;
    }
    (cur, crect)
}

/// One lifting step down the columns, whole rows at a time: every row at index `first`,
/// `first + 2`, ... gets `f(row, above, below)` where above/below are its neighbours (mirrored
/// at the ends: F.3.7's symmetric extension).
fn lift_rows<T: Sample>(
    plane: &mut [T],
    w: usize,
    h: usize,
    first: usize,
    f: impl Fn(&mut [T], &[T], &[T]),
) {
    let mut i = first;
    while i < h {
        let up = if i == 0 { 1 } else { i - 1 };
        let down = if i + 1 < h { i + 1 } else { i - 1 };
        // The row and its two neighbours, which are never the row itself (h ≥ 2).
        let (before, rest) = plane.split_at_mut(i * w);
        let (row, after) = rest.split_at_mut(w);
        let above: &[T] = if up < i {
            &before[up * w..up * w + w]
        } else {
            &after[..w]
        };
        let below: &[T] = if down > i {
            &after[(down - i - 1) * w..(down - i - 1) * w + w]
        } else {
            &before[down * w..down * w + w]
        };
        f(row, above, below);
        i += 2;
    }
}

fn vertical_53(plane: &mut [i32], rect: Rect) {
    let (w, h) = (rect.w(), rect.h());
    if w == 0 || h == 0 {
        return;
    }
    if h == 1 {
        if rect.y0 % 2 == 1 {
            plane.iter_mut().for_each(|v| *v /= 2);
        }
        return;
    }
    let even = (rect.y0 & 1) as usize; // index of the first even (low-pass) row
    lift_rows(plane, w, h, even, |r, a, b| {
        for ((x, &p), &q) in r.iter_mut().zip(a).zip(b) {
            *x -= (p + q + 2) >> 2;
        }
    });
    lift_rows(plane, w, h, 1 - even, |r, a, b| {
        for ((x, &p), &q) in r.iter_mut().zip(a).zip(b) {
            *x += (p + q) >> 1;
        }
    });
}

fn vertical_97(plane: &mut [f32], rect: Rect) {
    let (w, h) = (rect.w(), rect.h());
    if w == 0 || h == 0 {
        return;
    }
    if h == 1 {
        if rect.y0 % 2 == 1 {
            plane.iter_mut().for_each(|v| *v /= 2.0);
        }
        return;
    }
    let even = (rect.y0 & 1) as usize;
    let odd = 1 - even;
    for (y, row) in plane.chunks_exact_mut(w).enumerate() {
        let k = if y % 2 == even { K97 } else { 1.0 / K97 };
        row.iter_mut().for_each(|v| *v *= k);
    }
    for (coef, start) in [(DELTA, even), (GAMMA, odd), (BETA, even), (ALPHA, odd)] {
        lift_rows(plane, w, h, start, |r, a, b| {
            for ((x, &p), &q) in r.iter_mut().zip(a).zip(b) {
                *x -= coef * (p + q);
            }
        });
    }
}

#[allow(clippy::excessive_precision)]
const ALPHA: f32 = -1.586_134_342_059_924;
#[allow(clippy::excessive_precision)]
const BETA: f32 = -0.052_980_118_572_961;
#[allow(clippy::excessive_precision)]
const GAMMA: f32 = 0.882_911_075_530_934;
#[allow(clippy::excessive_precision)]
const DELTA: f32 = 0.443_506_852_043_971;
#[allow(clippy::excessive_precision)]
const K97: f32 = 1.230_174_104_914_001;
