//! RLE Lossless encoding (PS3.5 Annex G), pure Rust so that it runs at the edge and in the
//! browser as well as natively. (dicom-rs decodes RLE but has no encoder.)
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
