//! HTJ2K encoding and decoding (JPEG 2000 Part 15, ISO/IEC 15444-15; DICOM PS3.5 §8.2.14 and
//! §10.18), pure Rust. Encoding, lossless and lossy: the colour transforms and wavelets of
//! Part 1, code-blocks coded by the HT cleanup pass ([`block`]), and the Part 1 codestream and
//! packets around them.
//!
//! One tile, one quality layer, one precinct per resolution (the default precinct size), 64×64
//! code-blocks. The codestream carries the CAP marker segment Part 15 requires (Rsiz bit 14).
//! With [`Progression::Rpcl`] it is what `.4.202` asks: RPCL order, a TLM marker segment, and
//! one tile-part per resolution, so a prefix of the codestream decodes to a lower resolution
//! (the progressive loading cornerstone does with byte ranges).
//!
//! Decoding is ours too ([`decode`], `decoder.rs` and `block_decoder.rs`): HTJ2K codestreams in
//! any progression order, with precincts, tiles and offsets, code-blocks of one HT set (the
//! cleanup pass, and SigProp and MagRef where present), at full or reduced resolution; what it
//! leaves answers [`DecodeError::Unsupported`] and goes to openjp2. Interoperability with OpenJPH and OpenJPEG is tested in `tests/tests/htj2k.rs`.

mod block;
mod block_decoder;
mod decoder;
mod ebcot;

pub use decoder::{decode, dimensions, DecodeError, Decoded};
mod vlc_tables;

/// Samples to encode.
pub struct Image<'a> {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// 1 (grey) or 3 (colour).
    pub components: usize,
    /// Bits per sample (1 to 16).
    pub precision: u32,
    /// Two's complement samples.
    pub signed: bool,
    /// The samples, components interleaved, as values (sign-extended when signed).
    pub samples: &'a [i32],
}

/// The order of packets and how the codestream is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progression {
    /// LRCP, one tile-part: `.4.201`.
    Lrcp,
    /// RPCL, one tile-part per resolution, and a TLM marker segment: `.4.202`.
    Rpcl,
}

/// Guard bits (Part 1 Annex E): with the nominal gains of the 5/3 subbands, two bits above the
/// sample precision bound every coefficient (checked as each code-block is coded).
const GUARD_BITS: u32 = 2;
/// Code-blocks of 64×64 (xcb = ycb = 6).
const CB_LOG: usize = 6;

/// Encodes an image losslessly; `mct` applies the reversible colour transform to three
/// components (the codestream then decodes to the original RGB; DICOM says YBR_RCT).
pub fn encode(img: &Image<'_>, progression: Progression, mct: bool) -> Result<Vec<u8>, String> {
    encode_with(img, progression, mct, false, None, Coder::Ht)
}

/// Encodes an image losslessly as a JPEG 2000 Part 1 codestream (`.4.90`): the same
/// transforms, code-blocks and packets as [`encode`], but each code-block coded by EBCOT's
/// three passes and the MQ coder ([`ebcot`]) instead of the HT block coder, and no CAP marker
/// segment. `mct` as in [`encode`].
pub fn encode_part1(
    img: &Image<'_>,
    progression: Progression,
    mct: bool,
) -> Result<Vec<u8>, String> {
    encode_with(img, progression, mct, false, None, Coder::Part1)
}

/// The block coder: HT (Part 15) or EBCOT (Part 1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Coder {
    Ht,
    Part1,
}

/// Lossless, but each code-block whose magnitudes reach 2 coded as the HT cleanup pass at
/// bit-plane 1 and the SigProp and MagRef passes at bit-plane 0 (Kakadu-style streams; for the
/// decoder's tests: what a sample SigProp does not reach is lost, so not exactly lossless).
#[cfg(test)]
pub(crate) fn encode_refined(
    img: &Image<'_>,
    progression: Progression,
    causal: bool,
) -> Result<Vec<u8>, String> {
    encode_with(img, progression, false, false, Some(causal), Coder::Ht)
}

/// Encodes an image lossily (`.4.203`): the irreversible colour transform (with `mct`) and 9/7
/// wavelet, and scalar quantization whose step follows the image's own range: 1/128 of it in
/// the image domain (an error of about a third of a percent of the range, ~48 dB PSNR against
/// it), weighted per subband by its synthesis energy so every subband adds the same error.
pub fn encode_lossy(
    img: &Image<'_>,
    progression: Progression,
    mct: bool,
) -> Result<Vec<u8>, String> {
    encode_with(img, progression, mct, true, None, Coder::Ht)
}

fn encode_with(
    img: &Image<'_>,
    progression: Progression,
    mct: bool,
    lossy: bool,
    // Refinement passes (tests only), with vertically causal contexts or not.
    refine: Option<bool>,
    coder: Coder,
) -> Result<Vec<u8>, String> {
    #[cfg(not(test))]
    let _ = refine;
    let (w, h, nc) = (img.width, img.height, img.components);
    if w == 0 || h == 0 || w > u32::MAX as usize || h > u32::MAX as usize {
        return Err(format!("a {w}×{h} image"));
    }
    if !matches!(nc, 1 | 3) {
        return Err(format!("{nc} components (1 or 3 here)"));
    }
    if !(1..=16).contains(&img.precision) {
        return Err(format!("{}-bit samples (1 to 16 here)", img.precision));
    }
    if img.samples.len() != w * h * nc {
        return Err("the sample count does not match the image size".into());
    }
    let mct = mct && nc == 3;

    // Decompositions: down to a base resolution of at most 64 pixels a side (what progressive
    // viewers start from), at least 5 as is usual, never more than the smaller side allows.
    let mut levels = 5u32;
    while levels < 32 && (w.max(h) >> levels) > 64 {
        levels += 1;
    }
    while levels > 0 && (w.min(h) >> levels) == 0 {
        levels -= 1;
    }
    let coded = if lossy {
        irreversible(img, mct, levels)?
    } else {
        reversible(img, mct, levels)
    };
    let planes = coded.planes;
    let kmax_of = |r: u32, i: usize| coded.kmax[qcd_index(r, i)];

    // Code-blocks: every one of every subband of every component, coded in parallel where
    // the platform has threads; then the packets gather them in order.
    let mut jobs = Vec::new();
    for r in 0..=levels {
        for c in 0..planes.len() {
            for (bi, band) in subbands(w, h, levels, r).iter().enumerate() {
                let (nbx, nby) = (band.w.div_ceil(1 << CB_LOG), band.h.div_ceil(1 << CB_LOG));
                for by in 0..nby {
                    for bx in 0..nbx {
                        let x0 = band.x + (bx << CB_LOG);
                        let y0 = band.y + (by << CB_LOG);
                        jobs.push(Job {
                            c,
                            r,
                            bi,
                            x0,
                            y0,
                            w: (band.x + band.w).min(x0 + (1 << CB_LOG)) - x0,
                            h: (band.y + band.h).min(y0 + (1 << CB_LOG)) - y0,
                        });
                    }
                }
            }
        }
    }
    let code = |part1: &mut ebcot::Coder, job: &Job| -> Result<Option<CodedBlock>, String> {
        let k = kmax_of(job.r, job.bi);
        let plane = &planes[job.c];
        let start = job.y0 * w + job.x0;
        let limit = 1u32 << k.min(31);
        for y in 0..job.h {
            let row = &plane[start + y * w..start + y * w + job.w];
            if row.iter().any(|v| v.unsigned_abs() >= limit) {
                return Err(format!(
                    "a coefficient exceeds the {k} magnitude bits of its subband"
                ));
            }
        }
        let coef = &plane[start..];
        if coder == Coder::Part1 {
            let orient = ebcot::orientation(job.r, job.bi);
            return Ok(part1
                .encode(coef, job.w, job.h, w, orient)
                .map(|b| CodedBlock {
                    data: b.data,
                    refinement: None,
                    passes: b.passes,
                    zero_planes: k - b.planes,
                }));
        }
        #[cfg(test)]
        if let Some(causal) = refine {
            if let Some((cleanup, refinement)) =
                block::encode_refined(coef, job.w, job.h, w, causal)
            {
                return Ok(Some(CodedBlock {
                    data: cleanup,
                    refinement: Some(refinement),
                    passes: 3,
                    zero_planes: k - 2,
                }));
            }
        }
        // HT: the cleanup pass codes whole magnitudes; K_max − 1 "missing MSBs" put it at
        // bit-plane 0 (as OpenJPH codes lossless blocks).
        Ok(block::encode(coef, job.w, job.h, w).map(|data| CodedBlock {
            data,
            refinement: None,
            passes: 1,
            zero_planes: k - 1,
        }))
    };
    let blocks = par_map(jobs.len(), w * h * nc, ebcot::Coder::default, |s, i| {
        code(s, &jobs[i])
    });
    let mut blocks = blocks.into_iter();

    // Packets: for each resolution, for each component (one precinct, one layer), its header
    // and the code-blocks' segments.
    let mut packets: Vec<Vec<u8>> = Vec::new(); // index r * nc + c
    for r in 0..=levels {
        for _ in 0..planes.len() {
            let bands = subbands(w, h, levels, r);
            let mut header = BitWriter::new();
            // Per subband: the coded blocks and the block grid.
            let mut coded: Vec<(Vec<Option<CodedBlock>>, usize, usize)> = Vec::new();
            for band in &bands {
                let (nbx, nby) = (band.w.div_ceil(1 << CB_LOG), band.h.div_ceil(1 << CB_LOG));
                let mut row = Vec::with_capacity(nbx * nby);
                for _ in 0..nbx * nby {
                    row.push(blocks.next().ok_or("a code-block went missing")??);
                }
                coded.push((row, nbx, nby));
            }
            let any = coded.iter().any(|(b, ..)| b.iter().any(Option::is_some));
            let mut body = Vec::new();
            if !any {
                header.put(0);
            } else {
                header.put(1);
                for (blocks, nbx, nby) in &coded {
                    if blocks.is_empty() {
                        continue;
                    }
                    let mut inclusion =
                        TagTree::new(*nbx, *nby, |i| u32::from(blocks[i].is_none()));
                    let mut zero_planes = TagTree::new(*nbx, *nby, |i| {
                        blocks[i].as_ref().map_or(u32::MAX, |b| b.zero_planes)
                    });
                    for (i, b) in blocks.iter().enumerate() {
                        inclusion.encode(&mut header, i, 1);
                        let Some(b) = b else { continue };
                        zero_planes.encode(&mut header, i, u32::MAX);
                        let need = |n: usize| 32 - (n as u32).leading_zeros();
                        if let Some(r) = &b.refinement {
                            // HT, three passes: "1100" (Table B.4); the cleanup length in
                            // Lblock bits, the refinement's in Lblock + 1 (two passes).
                            header.put_bits(0b1100, 4);
                            let lblock = 3u32
                                .max(need(b.data.len()))
                                .max(need(r.len()).saturating_sub(1));
                            for _ in 3..lblock {
                                header.put(1);
                            }
                            header.put(0);
                            header.put_bits(b.data.len() as u32, lblock);
                            header.put_bits(r.len() as u32, lblock + 1);
                            body.extend_from_slice(&b.data);
                            body.extend_from_slice(r);
                            continue;
                        }
                        put_passes(&mut header, b.passes);
                        // One segment: its length in Lblock + ⌊log2 passes⌋ bits, Lblock
                        // starting at 3 and raised as needed (B.10.7.1).
                        let extra = 31 - b.passes.leading_zeros();
                        let lblock = 3u32.max(need(b.data.len()).saturating_sub(extra));
                        for _ in 3..lblock {
                            header.put(1);
                        }
                        header.put(0);
                        header.put_bits(b.data.len() as u32, lblock + extra);
                        body.extend_from_slice(&b.data);
                    }
                }
            }
            let mut p = header.finish();
            p.extend_from_slice(&body);
            packets.push(p);
        }
    }

    // Tile-parts: one, or one per resolution.
    let tile_parts: Vec<Vec<u8>> = match progression {
        Progression::Lrcp => vec![packets.concat()],
        Progression::Rpcl => packets.chunks(nc).map(<[Vec<u8>]>::concat).collect(),
    };
    let parts = tile_parts.len();
    if parts > 255 {
        return Err("too many tile-parts".into());
    }

    let mut out = Vec::with_capacity(tile_parts.iter().map(Vec::len).sum::<usize>() + 256);
    marker(&mut out, 0xFF4F, &[]); // SOC
    let ht = coder == Coder::Ht;
    // SIZ (A.5.1): Rsiz with bit 14 for HT (the capabilities in a CAP marker segment), 0 for
    // Part 1 with no restriction.
    let mut siz = Vec::with_capacity(38 + 3 * nc);
    siz.extend_from_slice(&(if ht { 0x4000u16 } else { 0 }).to_be_bytes());
    for v in [w as u32, h as u32, 0, 0, w as u32, h as u32, 0, 0] {
        siz.extend_from_slice(&v.to_be_bytes());
    }
    siz.extend_from_slice(&(nc as u16).to_be_bytes());
    for _ in 0..nc {
        siz.push((img.precision as u8 - 1) | if img.signed { 0x80 } else { 0 });
        siz.extend_from_slice(&[1, 1]);
    }
    marker(&mut out, 0xFF51, &siz);
    // CAP (15444-15 A.3): Part 15 in Pcap; Ccap15: HT only, one set, the irreversible flag,
    // and MAGB, the largest K_max.
    let magb = coded.kmax.iter().copied().max().unwrap_or(1);
    let bp = if magb <= 8 {
        0
    } else if magb < 28 {
        magb - 8
    } else {
        13 + (magb >> 2)
    };
    if ht {
        let mut cap = Vec::with_capacity(6);
        cap.extend_from_slice(&0x0002_0000u32.to_be_bytes());
        cap.extend_from_slice(&((bp as u16) | if lossy { 0x0020 } else { 0 }).to_be_bytes());
        marker(&mut out, 0xFF50, &cap);
    }
    // COD (A.6.1): default precincts, the order, one layer, the MCT; 64×64 code-blocks (HT,
    // or Part 1's with no options), the wavelet (1: 5/3 reversible, 0: 9/7 irreversible).
    let order = match progression {
        Progression::Lrcp => 0u8,
        Progression::Rpcl => 2u8,
    };
    marker(
        &mut out,
        0xFF52,
        &[
            0,
            order,
            0,
            1,
            u8::from(mct),
            levels as u8,
            (CB_LOG - 2) as u8,
            (CB_LOG - 2) as u8,
            match (ht, refine) {
                (false, _) => 0,
                (true, Some(true)) => 0x48,
                (true, _) => 0x40,
            },
            u8::from(!lossy),
        ],
    );
    // QCD (A.6.4).
    marker(&mut out, 0xFF5C, &coded.qcd);
    if progression == Progression::Rpcl {
        // TLM (A.7.1): Ztlm 0; Stlm: 8-bit tile indices, 32-bit lengths.
        let mut tlm = vec![0u8, 0x50];
        for tp in &tile_parts {
            tlm.push(0);
            tlm.extend_from_slice(&((14 + tp.len()) as u32).to_be_bytes());
        }
        marker(&mut out, 0xFF55, &tlm);
    }
    for (i, tp) in tile_parts.iter().enumerate() {
        // SOT (A.4.2) and SOD: Psot counts from the SOT marker to the end of the tile-part.
        let mut sot = Vec::with_capacity(8);
        sot.extend_from_slice(&0u16.to_be_bytes());
        sot.extend_from_slice(&((14 + tp.len()) as u32).to_be_bytes());
        sot.push(i as u8);
        sot.push(parts as u8);
        marker(&mut out, 0xFF90, &sot);
        marker(&mut out, 0xFF93, &[]);
        out.extend_from_slice(tp);
    }
    marker(&mut out, 0xFFD9, &[]); // EOC
    Ok(out)
}

/// One code-block to code: its component, resolution, subband and place in the plane.
struct Job {
    c: usize,
    r: u32,
    bi: usize,
    x0: usize,
    y0: usize,
    w: usize,
    h: usize,
}

/// A coded code-block: its segment (and, for HT blocks with refinement passes, a second), the
/// number of coding passes and of zero bit-planes above them.
struct CodedBlock {
    data: Vec<u8>,
    refinement: Option<Vec<u8>>,
    passes: u32,
    zero_planes: u32,
}

/// The number of coding passes (Table B.4).
fn put_passes(header: &mut BitWriter, n: u32) {
    match n {
        1 => header.put(0),
        2 => header.put_bits(0b10, 2),
        3..=5 => header.put_bits(0b1100 | (n - 3), 4),
        6..=36 => header.put_bits((0b1111 << 5) | (n - 6), 9),
        _ => header.put_bits((0b1_1111_1111 << 7) | (n - 37), 16),
    }
}

/// `f` over `0..n`, each thread with its own state from `init`, results in order: on this
/// thread and helpers when the image has `samples` enough to be worth it, on this one alone
/// otherwise and where there are no threads (wasm32).
///
/// Helpers are counted across the process: all the `par_map`s running at once share one less
/// than the machine's cores (at most 7). A server coding one frame uses every core; one coding
/// many at once codes each on its own thread, with no threads spawned to wait for a core.
fn par_map<S, T: Send>(
    n: usize,
    samples: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize) -> T + Sync,
) -> Vec<T> {
    #[cfg(not(target_arch = "wasm32"))]
    if samples >= 1 << 16 && n > 1 {
        let helpers = Helpers::reserve(n - 1);
        if helpers.count > 0 {
            use std::sync::atomic::{AtomicUsize, Ordering};
            let next = AtomicUsize::new(0);
            let work = || {
                let mut state = init();
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return done;
                    }
                    done.push((i, f(&mut state, i)));
                }
            };
            let mut all: Vec<(usize, T)> = std::thread::scope(|scope| {
                let others: Vec<_> = (0..helpers.count).map(|_| scope.spawn(work)).collect();
                let mut all = work();
                for t in others {
                    match t.join() {
                        Ok(done) => all.extend(done),
                        Err(panic) => std::panic::resume_unwind(panic),
                    }
                }
                all
            });
            all.sort_unstable_by_key(|(i, _)| *i);
            return all.into_iter().map(|(_, t)| t).collect();
        }
    }
    let mut state = init();
    (0..n).map(|i| f(&mut state, i)).collect()
}

/// Helper threads taken from the process's budget (cores − 1, at most 7), given back when
/// dropped (also when a coder panics).
#[cfg(not(target_arch = "wasm32"))]
struct Helpers {
    count: usize,
}

#[cfg(not(target_arch = "wasm32"))]
static HELPERS_IN_USE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cfg(not(target_arch = "wasm32"))]
impl Helpers {
    /// Up to `want` helpers, as many as are free.
    fn reserve(want: usize) -> Helpers {
        use std::sync::atomic::Ordering;
        static BUDGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let budget = *BUDGET
            .get_or_init(|| std::thread::available_parallelism().map_or(1, |t| t.get().min(8)) - 1);
        let mut count = 0;
        let _ = HELPERS_IN_USE.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            count = budget.saturating_sub(used).min(want);
            (count > 0).then_some(used + count)
        });
        Helpers { count }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for Helpers {
    fn drop(&mut self) {
        if self.count > 0 {
            HELPERS_IN_USE.fetch_sub(self.count, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

/// What the transform stage hands the coder: integer coefficients per component (quantized
/// indices when lossy), each subband's K_max (in QCD order: LL, then HL, LH, HH from the
/// coarsest level), and the QCD marker segment's body.
struct Coded {
    planes: Vec<Vec<i32>>,
    kmax: Vec<u32>,
    qcd: Vec<u8>,
}

/// The image's components, each its own plane, DC level shifted (Annex G.1: unsigned samples
/// centred on zero), through `map`.
fn components<T>(img: &Image<'_>, map: impl Fn(i32) -> T) -> Vec<Vec<T>> {
    let shift = if img.signed {
        0
    } else {
        1i32 << (img.precision - 1)
    };
    (0..img.components)
        .map(|c| {
            img.samples
                .iter()
                .skip(c)
                .step_by(img.components)
                .map(|&v| map(v - shift))
                .collect()
        })
        .collect()
}

/// The index in QCD order (LL, then HL, LH, HH from the coarsest level) of subband `band` of
/// resolution `r`.
fn qcd_index(r: u32, band: usize) -> usize {
    if r == 0 {
        0
    } else {
        1 + (r as usize - 1) * 3 + band
    }
}

/// The reversible path: DC level shift (Annex G.1), RCT (G.2), 5/3 wavelet; no quantization,
/// each subband's exponent the component depth plus its nominal gain (LL 0, HL and LH 1, HH 2).
fn reversible(img: &Image<'_>, mct: bool, levels: u32) -> Coded {
    let (w, h) = (img.width, img.height);
    let mut planes = components(img, |v| v);
    if let (true, [p0, p1, p2]) = (mct, &mut planes[..]) {
        for ((r, g), b) in p0.iter_mut().zip(p1.iter_mut()).zip(p2.iter_mut()) {
            let (rv, gv, bv) = (*r, *g, *b);
            *r = (rv + 2 * gv + bv) >> 2;
            *g = bv - gv;
            *b = rv - gv;
        }
    }
    for plane in &mut planes {
        forward_dwt_53(plane, w, h, levels);
    }
    // The RCT's chroma has one more bit.
    let depth = img.precision + u32::from(mct);
    let mut exps = vec![depth];
    for _ in 0..levels {
        exps.extend([depth + 1, depth + 1, depth + 2]);
    }
    let mut qcd = vec![(GUARD_BITS as u8) << 5];
    qcd.extend(exps.iter().map(|&e| (e as u8) << 3));
    Coded {
        planes,
        kmax: exps.iter().map(|&e| e + GUARD_BITS - 1).collect(),
        qcd,
    }
}

/// The 9/7 lifting coefficients (Annex F.4.8.2, Table F.4) and K, written as the standard
/// gives them (f32 keeps what it can).
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

/// The irreversible path: samples normalized to [−½, ½) after the DC level shift, ICT (G.3),
/// the 9/7 wavelet (low-pass samples scaled by 1/K, high-pass by K), then deadzone scalar
/// quantization (E.1.1) with a step per subband, written as scalar expounded (Sqcd 2).
fn irreversible(img: &Image<'_>, mct: bool, levels: u32) -> Result<Coded, String> {
    let (w, h, nc) = (img.width, img.height, img.components);
    let scale = 1.0 / (1u64 << img.precision) as f32;
    let mut planes = components(img, |v| v as f32 * scale);
    if let (true, [p0, p1, p2]) = (mct, &mut planes[..]) {
        for ((r, g), b) in p0.iter_mut().zip(p1.iter_mut()).zip(p2.iter_mut()) {
            let (rv, gv, bv) = (*r, *g, *b);
            *r = 0.299 * rv + 0.587 * gv + 0.114 * bv;
            *g = -0.168_736 * rv - 0.331_264 * gv + 0.5 * bv;
            *b = 0.5 * rv - 0.418_688 * gv - 0.081_312 * bv;
        }
    }
    // The step: 1/128 of the range the samples span (at least one grey level), normalized.
    let (lo, hi) = img
        .samples
        .iter()
        .fold((i32::MAX, i32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let range = (i64::from(hi) - i64::from(lo)).max(1) as f32;
    let base = (range / 128.0).max(1.0) * scale;

    for plane in &mut planes {
        forward_dwt(plane, w, h, levels, lift_97);
    }
    // Each subband's step: the base over its synthesis gain (the norm of the image one
    // coefficient makes), so each contributes the same error to the image.
    let gains = synthesis_gains(levels);
    let mut steps = vec![base / (gains.low[levels as usize] * gains.low[levels as usize])];
    for d in (1..=levels as usize).rev() {
        let (l, hh) = (gains.low[d - 1], gains.high[d - 1]);
        steps.extend([base / (hh * l), base / (l * hh), base / (hh * hh)]);
    }
    // Written as Δ/2^gain = 2^−ε (1 + μ/2^11) (E.1.1.1, relative to the subband's nominal
    // range), and quantized with the Δ the decoder will read back.
    let mut spqcd = Vec::with_capacity(steps.len());
    let mut deltas = Vec::with_capacity(steps.len());
    for (i, &step) in steps.iter().enumerate() {
        let gain = if i == 0 { 0 } else { [1, 1, 2][(i - 1) % 3] };
        let mut d = step / (1u32 << gain) as f32;
        let mut eps = 0u32;
        while d < 1.0 && eps < 31 {
            eps += 1;
            d *= 2.0;
        }
        let mu = (((d * 2048.0).round() as i32) - 2048).clamp(0, 2047) as u32;
        spqcd.push((eps, mu));
        deltas.push((1.0 + mu as f32 / 2048.0) * (1u32 << gain) as f32 / (1u64 << eps) as f32);
    }
    let mut out: Vec<Vec<i32>> = Vec::with_capacity(nc);
    let mut need = vec![0u32; steps.len()];
    for plane in &planes {
        let mut q = vec![0i32; w * h];
        for r in 0..=levels {
            for (bi, band) in subbands(w, h, levels, r).iter().enumerate() {
                let idx = qcd_index(r, bi);
                let inv = 1.0 / deltas[idx];
                for y in band.y..band.y + band.h {
                    for x in band.x..band.x + band.w {
                        let c = plane[y * w + x];
                        let m = (c.abs() * inv).floor();
                        if !m.is_finite() || m >= (1u64 << 30) as f32 {
                            return Err("a quantized coefficient is out of range".into());
                        }
                        let m = m as i32;
                        need[idx] = need[idx].max(32 - (m as u32).leading_zeros());
                        q[y * w + x] = if c < 0.0 { -m } else { m };
                    }
                }
            }
        }
        out.push(q);
    }
    // Guard bits: enough that every index fits K_max = G + ε − 1 bits.
    let guard = spqcd
        .iter()
        .zip(&need)
        .map(|(&(eps, _), &n)| (n + 1).saturating_sub(eps))
        .max()
        .unwrap_or(1)
        .clamp(1, 7);
    let mut qcd = vec![((guard as u8) << 5) | 2];
    for &(eps, mu) in &spqcd {
        qcd.extend_from_slice(&(((eps << 11) | mu) as u16).to_be_bytes());
    }
    Ok(Coded {
        planes: out,
        kmax: spqcd
            .iter()
            .map(|&(eps, _)| (guard + eps).saturating_sub(1).max(1))
            .collect(),
        qcd,
    })
}

/// Symmetric extension of a signal (x[−1] = x[1], x[n] = x[n − 2]).
fn ext(x: &[f32], i: isize) -> f32 {
    let n = x.len() as isize;
    let j = if i < 0 {
        -i
    } else if i >= n {
        2 * (n - 1) - i
    } else {
        i
    };
    x[j as usize]
}

/// One 1D forward 9/7 lifting (even start), then low-pass samples first and high-pass after.
fn lift_97(x: &mut [f32], tmp: &mut [f32]) {
    let n = x.len();
    if n < 2 {
        return;
    }
    for (coef, odd) in [(ALPHA, true), (BETA, false), (GAMMA, true), (DELTA, false)] {
        let start = usize::from(odd);
        for i in (start..n).step_by(2) {
            let v = coef * (ext(x, i as isize - 1) + ext(x, i as isize + 1));
            x[i] += v;
        }
    }
    let lows = n.div_ceil(2);
    for i in 0..n {
        if i % 2 == 0 {
            tmp[i / 2] = x[i] / K97;
        } else {
            tmp[lows + i / 2] = x[i] * K97;
        }
    }
    x.copy_from_slice(&tmp[..n]);
}

/// The inverse of [`lift_97`], for the synthesis gains.
fn unlift_97(c: &[f32]) -> Vec<f32> {
    let n = c.len();
    let lows = n.div_ceil(2);
    let mut x = vec![0f32; n];
    for i in 0..n {
        x[i] = if i % 2 == 0 {
            c[i / 2] * K97
        } else {
            c[lows + i / 2] / K97
        };
    }
    if n < 2 {
        return c.to_vec();
    }
    for (coef, odd) in [(DELTA, false), (GAMMA, true), (BETA, false), (ALPHA, true)] {
        let start = usize::from(odd);
        for i in (start..n).step_by(2) {
            let v = coef * (ext(&x, i as isize - 1) + ext(&x, i as isize + 1));
            x[i] -= v;
        }
    }
    x
}

/// The norms of the 1D signals one unit coefficient synthesizes into: `low[d]` for the low
/// band after `d` levels (`low[0]` = 1), `high[d]` for the high band of level `d + 1`.
struct Gains {
    low: Vec<f32>,
    high: Vec<f32>,
}

fn synthesis_gains(levels: u32) -> Gains {
    let levels = levels as usize;
    let n = 64usize << levels;
    let norm = |x: &[f32]| x.iter().map(|v| v * v).sum::<f32>().sqrt();
    // A unit coefficient in the middle of the band, synthesized down to full resolution.
    let synth = |level: usize, high: bool| -> f32 {
        let len = n >> level;
        let mut c = vec![0f32; len];
        let lows = len.div_ceil(2);
        c[if high { lows + lows / 2 } else { lows / 2 }] = 1.0;
        let mut x = unlift_97(&c);
        for l in (0..level).rev() {
            let len = n >> l;
            let mut c = vec![0f32; len];
            c[..x.len()].copy_from_slice(&x);
            x = unlift_97(&c);
        }
        norm(&x)
    };
    let mut low = vec![1.0f32];
    let mut high = Vec::with_capacity(levels);
    for d in 0..levels {
        low.push(synth(d, false));
        high.push(synth(d, true));
    }
    Gains { low, high }
}

/// A marker, and its segment with its length when it has one.
fn marker(out: &mut Vec<u8>, code: u16, segment: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    let delimiting = matches!(code, 0xFF4F | 0xFF93 | 0xFFD9);
    if !delimiting {
        out.extend_from_slice(&((segment.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(segment);
    }
}

/// A subband's place in the transformed plane.
struct Band {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
}

/// The subbands of resolution `r` (0: the LL band; r ≥ 1: HL, LH, HH of decomposition level
/// `levels − r + 1`), where the in-place transform left them.
fn subbands(w: usize, h: usize, levels: u32, r: u32) -> Vec<Band> {
    // The size of the region transformed at level d (1 = finest).
    let size = |d: u32| {
        let (mut cw, mut ch) = (w, h);
        for _ in 1..d {
            cw = cw.div_ceil(2);
            ch = ch.div_ceil(2);
        }
        (cw, ch)
    };
    if r == 0 {
        let (mut cw, mut ch) = (w, h);
        for _ in 0..levels {
            cw = cw.div_ceil(2);
            ch = ch.div_ceil(2);
        }
        return vec![Band {
            x: 0,
            y: 0,
            w: cw,
            h: ch,
        }];
    }
    let d = levels - r + 1;
    let (cw, ch) = size(d);
    let (lw, lh) = (cw.div_ceil(2), ch.div_ceil(2));
    vec![
        Band {
            x: lw,
            y: 0,
            w: cw - lw,
            h: lh,
        },
        Band {
            x: 0,
            y: lh,
            w: lw,
            h: ch - lh,
        },
        Band {
            x: lw,
            y: lh,
            w: cw - lw,
            h: ch - lh,
        },
    ]
}

/// A wavelet over `levels` levels, in place (Annex F.4): each level transforms the columns then
/// the rows of the current LL region with `lift` (one 1D analysis: low-pass samples first,
/// high-pass after), the 5/3 on integers or the 9/7 on floats.
fn forward_dwt<T: Copy + Default>(
    plane: &mut [T],
    w: usize,
    h: usize,
    levels: u32,
    lift: fn(&mut [T], &mut [T]),
) {
    let (mut cw, mut ch) = (w, h);
    let mut line = vec![T::default(); w.max(h)];
    let mut tmp = vec![T::default(); w.max(h)];
    for _ in 0..levels {
        for x in 0..cw {
            for y in 0..ch {
                line[y] = plane[y * w + x];
            }
            lift(&mut line[..ch], &mut tmp[..ch]);
            for y in 0..ch {
                plane[y * w + x] = line[y];
            }
        }
        for y in 0..ch {
            let row = &mut plane[y * w..y * w + cw];
            line[..cw].copy_from_slice(row);
            lift(&mut line[..cw], &mut tmp[..cw]);
            row.copy_from_slice(&line[..cw]);
        }
        cw = cw.div_ceil(2);
        ch = ch.div_ceil(2);
    }
}

/// The reversible 5/3 wavelet over `levels` levels, in place, as [`forward_dwt`] does it but
/// a level's columns lifted a whole row at a time (rows are contiguous; the loops vectorize)
/// and its rows by [`lift_53`].
fn forward_dwt_53(plane: &mut [i32], w: usize, h: usize, levels: u32) {
    let (mut cw, mut ch) = (w, h);
    let mut tmp = vec![0i32; w * h.max(2)];
    let mut line = vec![0i32; w];
    for _ in 0..levels {
        if ch >= 2 {
            // Columns: high-pass rows (odd) then low-pass rows (even) into `tmp`, low first.
            let nh = ch / 2;
            let nl = ch - nh;
            let row = |y: usize| y * w..y * w + cw;
            for k in 0..nh {
                let below = if 2 * k + 2 < ch { 2 * k + 2 } else { 2 * k };
                let (a, b, c) = (
                    &plane[row(2 * k)],
                    &plane[row(2 * k + 1)],
                    &plane[row(below)],
                );
                let out = &mut tmp[(nl + k) * cw..(nl + k + 1) * cw];
                for (((o, &a), &b), &c) in out.iter_mut().zip(a).zip(b).zip(c) {
                    *o = b - ((a + c) >> 1);
                }
            }
            let (lows, highs) = tmp.split_at_mut(nl * cw);
            for k in 0..nl {
                let hk = if k < nh { k } else { nh - 1 };
                let hp = if k > 0 { k - 1 } else { 0 };
                let (ha, hb) = (
                    &highs[hp * cw..(hp + 1) * cw],
                    &highs[hk * cw..(hk + 1) * cw],
                );
                let x = &plane[row(2 * k)];
                let out = &mut lows[k * cw..(k + 1) * cw];
                for (((o, &x), &a), &b) in out.iter_mut().zip(x).zip(ha).zip(hb) {
                    *o = x + ((a + b + 2) >> 2);
                }
            }
            for y in 0..ch {
                plane[row(y)].copy_from_slice(&tmp[y * cw..(y + 1) * cw]);
            }
        }
        for y in 0..ch {
            lift_53(&mut plane[y * w..y * w + cw], &mut line[..cw]);
        }
        cw = cw.div_ceil(2);
        ch = ch.div_ceil(2);
    }
}

/// One 1D forward 5/3 lifting of a signal starting at an even index, then low-pass samples
/// (the even ones) first and high-pass after. A single sample is left as it is (F.4.8.1).
/// Symmetric extension: x[−1] = x[1], x[n] = x[n − 2].
fn lift_53(x: &mut [i32], tmp: &mut [i32]) {
    let n = x.len();
    if n < 2 {
        return;
    }
    let nh = n / 2;
    let nl = n - nh;
    let (lo, hi) = tmp[..n].split_at_mut(nl);
    // Predict: odd samples become high-pass.
    for k in 0..nh {
        let right = if 2 * k + 2 < n {
            x[2 * k + 2]
        } else {
            x[2 * k]
        };
        hi[k] = x[2 * k + 1] - ((x[2 * k] + right) >> 1);
    }
    // Update: even samples become low-pass.
    lo[0] = x[0] + ((2 * hi[0] + 2) >> 2);
    for k in 1..nl {
        let b = if k < nh { hi[k] } else { hi[k - 1] };
        lo[k] = x[2 * k] + ((hi[k - 1] + b + 2) >> 2);
    }
    x.copy_from_slice(&tmp[..n]);
}

/// Packet header bits (B.10.1): most significant first; after a 0xFF byte the next holds
/// seven bits (its first bit a stuffed 0).
struct BitWriter {
    out: Vec<u8>,
    buf: u32,
    ct: u32,
}

impl BitWriter {
    fn new() -> BitWriter {
        BitWriter {
            out: Vec::new(),
            buf: 0,
            ct: 8,
        }
    }

    fn byte_out(&mut self) {
        self.buf = (self.buf << 8) & 0xFFFF;
        self.ct = if self.buf == 0xFF00 { 7 } else { 8 };
        self.out.push((self.buf >> 8) as u8);
    }

    fn put(&mut self, bit: u32) {
        if self.ct == 0 {
            self.byte_out();
        }
        self.ct -= 1;
        self.buf |= (bit & 1) << self.ct;
    }

    fn put_bits(&mut self, v: u32, n: u32) {
        for i in (0..n).rev() {
            self.put((v >> i) & 1);
        }
    }

    /// The header's bytes; a last 0xFF is followed by a 0x00.
    fn finish(mut self) -> Vec<u8> {
        self.byte_out();
        if self.ct == 7 {
            self.byte_out();
        }
        self.out
    }
}

/// A tag tree (B.10.2): leaves are code-blocks, each node the minimum of its children; a value
/// is coded as the bits that raise each node's known lower bound from the root down.
struct TagTree {
    /// Nodes level by level, leaves first: (value, low, known).
    nodes: Vec<(u32, u32, bool)>,
    parent: Vec<Option<usize>>,
}

impl TagTree {
    fn new(w: usize, h: usize, value: impl Fn(usize) -> u32) -> TagTree {
        let mut nodes: Vec<(u32, u32, bool)> = (0..w * h).map(|i| (value(i), 0, false)).collect();
        let mut parent: Vec<Option<usize>> = vec![None; w * h];
        let (mut lw, mut lh, mut start) = (w, h, 0usize);
        while lw * lh > 1 {
            let (pw, ph) = (lw.div_ceil(2), lh.div_ceil(2));
            let pstart = nodes.len();
            nodes.extend((0..pw * ph).map(|_| (u32::MAX, 0, false)));
            parent.extend((0..pw * ph).map(|_| None));
            for y in 0..lh {
                for x in 0..lw {
                    let child = start + y * lw + x;
                    let p = pstart + (y / 2) * pw + x / 2;
                    parent[child] = Some(p);
                    nodes[p].0 = nodes[p].0.min(nodes[child].0);
                }
            }
            start = pstart;
            lw = pw;
            lh = ph;
        }
        TagTree { nodes, parent }
    }

    /// Codes leaf `leaf` against `threshold` (as OpenJPEG's tgt_encode).
    fn encode(&mut self, bw: &mut BitWriter, leaf: usize, threshold: u32) {
        let mut path = vec![leaf];
        let mut node = leaf;
        while let Some(p) = self.parent[node] {
            path.push(p);
            node = p;
        }
        let mut low = 0u32;
        while let Some(n) = path.pop() {
            let (value, nlow, known) = self.nodes[n];
            if low > nlow {
                self.nodes[n].1 = low;
            } else {
                low = nlow;
            }
            while low < threshold {
                if low >= value {
                    if !known {
                        bw.put(1);
                        self.nodes[n].2 = true;
                    }
                    break;
                }
                bw.put(0);
                low += 1;
            }
            self.nodes[n].1 = low;
        }
    }
}

#[cfg(test)]
mod tests;
