//! RLE Lossless (PS3.5 Annex G), both ways, pure Rust so that it runs at the edge and in the
//! browser as well as natively. (dicom-rs has no RLE encoder, and its decoder takes 8 and 16
//! bits only: 32-bit RLE, an RT Dose's usual form, failed.)
//!
//! A frame becomes one RLE fragment: a 64-byte header (the number of segments, then up to 15
//! segment offsets), then one segment per byte plane: for each sample (R, G, B or the single
//! grey sample), its most significant byte first (G.2). Each segment is the PackBits encoding
//! (G.3.1) of its byte plane, row by row (a run never crosses the end of a row), padded to an
//! even length.

use crate::{Error, Result};

/// Encodes one native frame (little-endian samples; interleaved when `planar` is false).
pub fn encode_frame(
    frame: &[u8],
    rows: usize,
    columns: usize,
    samples: usize,
    bits_allocated: u16,
    planar: bool,
) -> Result<Vec<u8>> {
    let bytes_per_sample = match bits_allocated {
        8 => 1,
        16 => 2,
        32 => 4,
        b => return Err(Error::Unsupported(format!("RLE: {b} bits allocated"))),
    };
    let pixels = rows * columns;
    let want = pixels * samples * bytes_per_sample;
    if frame.len() != want {
        return Err(Error::malformed(
            "RLE",
            format!("frame of {} bytes, expected {want}", frame.len()),
        ));
    }
    let segments = samples * bytes_per_sample;
    if segments > 15 {
        return Err(Error::Unsupported(format!(
            "RLE: {segments} byte planes: RLE holds at most 15 segments"
        )));
    }
    let mut out = vec![0u8; 64];
    out[0..4].copy_from_slice(&(segments as u32).to_le_bytes());
    let mut plane = vec![0u8; pixels];
    for s in 0..samples {
        // Most significant byte first: byte index bytes_per_sample-1 down to 0 (little endian).
        for b in (0..bytes_per_sample).rev() {
            for (p, slot) in plane.iter_mut().enumerate() {
                let sample_index = if planar {
                    s * pixels + p
                } else {
                    p * samples + s
                };
                *slot = frame[sample_index * bytes_per_sample + b];
            }
            let seg = s * bytes_per_sample + (bytes_per_sample - 1 - b);
            let offset = out.len() as u32;
            out[4 + 4 * seg..8 + 4 * seg].copy_from_slice(&offset.to_le_bytes());
            for row in plane.chunks(columns.max(1)) {
                packbits(row, &mut out);
            }
            if out.len() % 2 == 1 {
                out.push(0);
            }
        }
    }
    Ok(out)
}

/// Decodes one RLE fragment into native little-endian samples, interleaved: the inverse of
/// [`encode_frame`] for any encoder's segment layout (G.2: one segment per byte plane, most
/// significant byte first). Checked against the header before anything is allocated: the
/// segment count must be Samples per Pixel × bytes per sample, offsets in order and inside the
/// fragment; a segment that decodes to fewer bytes than the frame has pixels is an error, bytes
/// past them are ignored (encoders pad).
pub fn decode_frame(
    frag: &[u8],
    rows: usize,
    columns: usize,
    samples: usize,
    bits_allocated: u16,
) -> Result<Vec<u8>> {
    let bad = |why: String| Error::malformed("RLE", why);
    let bps = match bits_allocated {
        8 => 1,
        16 => 2,
        32 => 4,
        64 => 8,
        b => return Err(Error::Unsupported(format!("RLE: {b} bits allocated"))),
    };
    let u32_at = |i: usize| -> Result<usize> {
        frag.get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| bad("fragment shorter than its 64-byte header".into()))
    };
    let n = u32_at(0)?;
    let segments = samples * bps;
    if n != segments || n > 15 {
        return Err(bad(format!(
            "{n} segments where {samples} samples of {bits_allocated} bits make {segments}"
        )));
    }
    let pixels = rows
        .checked_mul(columns)
        .ok_or_else(|| bad("frame too large".into()))?;
    let mut offsets = Vec::with_capacity(n + 1);
    for i in 0..n {
        offsets.push(u32_at(4 + 4 * i)?);
    }
    offsets.push(frag.len());
    if offsets[0] < 64 || offsets.windows(2).any(|w| w[0] > w[1]) {
        return Err(bad(format!(
            "segment offsets {:?} out of order",
            &offsets[..n]
        )));
    }
    let mut out = vec![0u8; pixels * segments];
    let mut plane = Vec::with_capacity(pixels);
    for seg in 0..n {
        plane.clear();
        unpackbits(&frag[offsets[seg]..offsets[seg + 1]], pixels, &mut plane);
        if plane.len() < pixels {
            return Err(bad(format!(
                "segment {} holds {} bytes of the frame's {pixels}",
                seg + 1,
                plane.len()
            )));
        }
        let (s, byte) = (seg / bps, bps - 1 - seg % bps);
        for (p, v) in plane.iter().enumerate() {
            out[(p * samples + s) * bps + byte] = *v;
        }
    }
    Ok(out)
}

/// PackBits decoding (PS3.5 G.3.2) of one segment, up to `want` bytes.
fn unpackbits(seg: &[u8], want: usize, out: &mut Vec<u8>) {
    let mut i = 0;
    while i < seg.len() && out.len() < want {
        let h = seg[i] as i8;
        i += 1;
        if h >= 0 {
            let n = (h as usize + 1).min(seg.len() - i).min(want - out.len());
            out.extend_from_slice(&seg[i..i + n]);
            i += h as usize + 1;
        } else if h != -128 {
            let Some(&v) = seg.get(i) else { break };
            let n = ((1 - isize::from(h)) as usize).min(want - out.len());
            out.extend(std::iter::repeat_n(v, n));
            i += 1;
        }
    }
}

/// PackBits (PS3.5 G.3.1): runs of 3 or more equal bytes as replicate runs, the rest as
/// literal runs, at most 128 bytes each.
fn packbits(row: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < row.len() {
        let mut run = 1;
        while i + run < row.len() && run < 128 && row[i + run] == row[i] {
            run += 1;
        }
        if run >= 3 {
            out.push((1i16 - run as i16) as i8 as u8);
            out.push(row[i]);
            i += run;
            continue;
        }
        // A literal run up to the next run of 3 equal bytes.
        let start = i;
        while i < row.len() && i - start < 128 {
            if i + 2 < row.len() && row[i] == row[i + 1] && row[i] == row[i + 2] {
                break;
            }
            i += 1;
        }
        out.push((i - start - 1) as u8);
        out.extend_from_slice(&row[start..i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A straightforward decoder of PS3.5 Annex G, independent of the encoder's structure.
    fn decode(frag: &[u8], rows: usize, cols: usize, samples: usize, bpp: usize) -> Vec<u8> {
        let n = u32::from_le_bytes(frag[0..4].try_into().expect("4")) as usize;
        assert_eq!(n, samples * bpp);
        let mut out = vec![0u8; rows * cols * samples * bpp];
        for seg in 0..n {
            let start =
                u32::from_le_bytes(frag[4 + 4 * seg..8 + 4 * seg].try_into().expect("4")) as usize;
            let end = if seg + 1 < n {
                u32::from_le_bytes(frag[8 + 4 * seg..12 + 4 * seg].try_into().expect("4")) as usize
            } else {
                frag.len()
            };
            let mut plane = Vec::new();
            let mut i = start;
            while i < end && plane.len() < rows * cols {
                let h = frag[i] as i8;
                i += 1;
                if h >= 0 {
                    plane.extend_from_slice(&frag[i..i + h as usize + 1]);
                    i += h as usize + 1;
                } else if h != -128 {
                    plane.extend(std::iter::repeat_n(frag[i], (1 - h as isize) as usize));
                    i += 1;
                }
            }
            let (s, msb_index) = (seg / bpp, seg % bpp);
            let byte = bpp - 1 - msb_index;
            for (p, v) in plane.iter().enumerate().take(rows * cols) {
                out[(p * samples + s) * bpp + byte] = *v;
            }
        }
        out
    }

    #[test]
    fn roundtrip_shapes_and_patterns() {
        let mut seed = 12345u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as u8
        };
        for (rows, cols, samples, bits) in [
            (1, 1, 1, 8),
            (3, 5, 1, 8),
            (7, 129, 1, 16),
            (16, 300, 3, 8),
            (4, 4, 3, 16),
            (2, 2, 1, 32),
        ] {
            let bpp = bits as usize / 8;
            let n = rows * cols * samples * bpp;
            for pattern in 0..3 {
                let frame: Vec<u8> = (0..n)
                    .map(|i| match pattern {
                        0 => rnd(),
                        1 => 7,
                        _ => ((i / 5) % 3) as u8,
                    })
                    .collect();
                let enc = encode_frame(&frame, rows, cols, samples, bits, false).expect("encode");
                assert_eq!(enc.len() % 2, 0);
                assert_eq!(
                    decode(&enc, rows, cols, samples, bpp),
                    frame,
                    "{rows}x{cols}x{samples} {bits} bit, pattern {pattern}"
                );
            }
        }
    }

    #[test]
    fn runs_do_not_cross_rows_and_long_runs_split() {
        let frame = vec![9u8; 300 * 2];
        let enc = encode_frame(&frame, 2, 300, 1, 8, false).expect("encode");
        // Each 300-byte row: 128 + 128 + 44 → three replicate runs of two bytes each.
        assert_eq!(
            &enc[64..],
            &[0x81, 9, 0x81, 9, 0xD5, 9, 0x81, 9, 0x81, 9, 0xD5, 9]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            encode_frame(&[0; 3], 2, 2, 1, 8, false),
            Err(Error::malformed("RLE", "frame of 3 bytes, expected 4"))
        );
        assert_eq!(
            encode_frame(&[0; 4], 1, 1, 1, 12, false),
            Err(Error::Unsupported("RLE: 12 bits allocated".into()))
        );
        assert_eq!(
            encode_frame(&[0; 16], 1, 1, 4, 32, false),
            Err(Error::Unsupported(
                "RLE: 16 byte planes: RLE holds at most 15 segments".into()
            ))
        );
    }
}
