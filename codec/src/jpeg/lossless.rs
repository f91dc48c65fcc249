//! JPEG Lossless encoding (ITU-T T.81 Annex H: process 14, first-order prediction), the
//! default transfer syntax of `image/jpeg` in WADO-RS (1.2.840.10008.1.2.4.70, PS3.18 Table
//! 8.7.3-5). Pure Rust, so it runs at the edge and in the browser. A stream made with selection
//! value 1 is valid for 1.2.840.10008.1.2.4.57 too.
//!
//! - Precision P is Bits Allocated (8 or 16): the container's bits come back exactly, signed or
//!   not, whatever Bits Stored says.
//! - Colour is one interleaved scan of three components (H = V = 1), each predicted from its
//!   own previous samples.
//! - One Huffman table, optimised for the frame (T.81 Annex K.2, code lengths limited to 16 bits
//!   as in K.3), from [`super::huffman`], shared with the DCT codec.

use super::huffman::{canonical_codes, category, optimal_table, BitWriter};

use crate::{Error, Result};

/// Encodes one interleaved little-endian frame with predictor 1.
pub fn encode_frame(
    frame: &[u8],
    rows: usize,
    cols: usize,
    samples: usize,
    bits: u16,
) -> Result<Vec<u8>> {
    let bps = match bits {
        8 => 1,
        16 => 2,
        b => {
            return Err(Error::Unsupported(format!(
                "{b} bits allocated: JPEG Lossless here takes 8 or 16"
            )))
        }
    };
    if samples != 1 && samples != 3 {
        return Err(Error::Unsupported(format!(
            "JPEG Lossless: {samples} samples per pixel"
        )));
    }
    let want = rows * cols * samples * bps;
    if frame.len() != want || rows == 0 || cols == 0 || rows > 65535 || cols > 65535 {
        return Err(Error::malformed(
            "JPEG Lossless",
            format!("frame of {} bytes, expected {want}", frame.len()),
        ));
    }
    let sample = |i: usize| -> i32 {
        if bps == 1 {
            i32::from(frame[i])
        } else {
            i32::from(u16::from_le_bytes([frame[2 * i], frame[2 * i + 1]]))
        }
    };
    // Differences, in scan order (H.1.2.1: prediction, modulo 2^16, H.1.2.2).
    let p = u32::from(bits);
    let mut diffs = Vec::with_capacity(rows * cols * samples);
    let mut freq = [0u64; 17];
    for y in 0..rows {
        for x in 0..cols {
            for c in 0..samples {
                let at = |yy: usize, xx: usize| sample((yy * cols + xx) * samples + c);
                let pred = match (y, x) {
                    (0, 0) => 1i32 << (p - 1),
                    (0, _) => at(0, x - 1),
                    (_, 0) => at(y - 1, 0),
                    _ => at(y, x - 1),
                };
                let mut d = (at(y, x) - pred).rem_euclid(1 << 16);
                if d >= 1 << 15 {
                    d -= 1 << 16;
                }
                let ssss = category(d);
                freq[ssss as usize] += 1;
                diffs.push(d);
            }
        }
    }
    let (bits_counts, values) = optimal_table(&freq);
    let codes = canonical_codes(&bits_counts, &values);

    let mut out = Vec::with_capacity(frame.len() / 2 + 1024);
    out.extend_from_slice(&[0xFF, 0xD8]); // SOI
                                          // DHT: one DC-class table (class 0, id 0).
    out.extend_from_slice(&[0xFF, 0xC4]);
    out.extend_from_slice(&((2 + 1 + 16 + values.len()) as u16).to_be_bytes());
    out.push(0x00);
    out.extend_from_slice(&bits_counts);
    out.extend_from_slice(&values);
    // SOF3: lossless, Huffman.
    out.extend_from_slice(&[0xFF, 0xC3]);
    out.extend_from_slice(&((8 + 3 * samples) as u16).to_be_bytes());
    out.push(bits as u8);
    out.extend_from_slice(&(rows as u16).to_be_bytes());
    out.extend_from_slice(&(cols as u16).to_be_bytes());
    out.push(samples as u8);
    for c in 0..samples {
        out.extend_from_slice(&[c as u8 + 1, 0x11, 0x00]);
    }
    // SOS: all components, table 0, Ss = predictor 1, Se = 0, Ah = 0, Al = Pt = 0.
    out.extend_from_slice(&[0xFF, 0xDA]);
    out.extend_from_slice(&((6 + 2 * samples) as u16).to_be_bytes());
    out.push(samples as u8);
    for c in 0..samples {
        out.extend_from_slice(&[c as u8 + 1, 0x00]);
    }
    out.extend_from_slice(&[0x01, 0x00, 0x00]);
    let mut w = BitWriter::new(out);
    for d in diffs {
        let ssss = category(d);
        let (code, len) = codes[ssss as usize];
        w.put(u32::from(code), len);
        // Additional bits (F.1.2.1.1): the low SSSS bits of d, or of d - 1 when negative; none
        // for SSSS = 16 (H.1.2.2).
        if ssss > 0 && ssss < 16 {
            let v = if d < 0 { d - 1 } else { d } as u32 & ((1 << ssss) - 1);
            w.put(v, ssss);
        }
    }
    let mut out = w.finish();
    out.extend_from_slice(&[0xFF, 0xD9]); // EOI
    if out.len() % 2 == 1 {
        out.push(0); // DICOM fragments are even (PS3.5 A.4); decoders stop at EOI
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories() {
        for (d, want) in [
            (0, 0),
            (1, 1),
            (-1, 1),
            (2, 2),
            (-3, 2),
            (255, 8),
            (-256, 9),
            (32767, 15),
            (-32767, 15),
            (-32768, 16),
        ] {
            assert_eq!(category(d), want, "{d}");
        }
    }

    #[test]
    fn huffman_lengths_are_a_valid_prefix_code_within_16_bits() {
        // Skewed (Fibonacci) frequencies push lengths past 16 before limiting.
        let mut fib = [0u32; 17];
        let (mut a, mut b) = (1u32, 1u32);
        for f in fib.iter_mut() {
            *f = a;
            (a, b) = (b, a.saturating_add(b));
        }
        for freq in [
            fib,
            [5; 17],
            {
                let mut x = [0; 17];
                x[3] = 100;
                x
            },
            {
                let mut x = [0; 17];
                x[0] = 1;
                x[16] = 1;
                x
            },
        ] {
            let (bits, values) = optimal_table(&freq.map(u64::from));
            let mut l = [0u8; 17];
            let mut k = 0;
            for (len, &count) in bits.iter().enumerate() {
                for _ in 0..count {
                    l[usize::from(values[k])] = len as u8 + 1;
                    k += 1;
                }
            }
            for s in 0..17 {
                assert_eq!(l[s] > 0, freq[s] > 0, "symbol {s} coded iff used");
                assert!(l[s] <= 16);
            }
            // Kraft: sum 2^-l < 1 (strictly: the all-ones code stays unused).
            let kraft: f64 = l
                .iter()
                .filter(|&&x| x > 0)
                .map(|&x| 2f64.powi(-(x as i32)))
                .sum();
            assert!(kraft < 1.0, "{kraft}");
        }
    }

    /// Decoded by jpeg-decoder (an independent implementation of T.81 Annex H), every shape
    /// comes back exactly.
    #[test]
    fn roundtrip_through_jpeg_decoder() {
        let mut seed = 7u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            seed >> 8
        };
        for (rows, cols, samples, bits, smooth) in [
            (1, 1, 1, 8, false),
            (17, 23, 1, 8, false),
            (64, 64, 1, 16, true),
            (31, 7, 1, 16, false),
            (20, 30, 3, 8, true),
            (5, 5, 3, 8, false),
        ] {
            let bps = bits as usize / 8;
            let n = rows * cols * samples;
            let values: Vec<u32> = (0..n)
                .map(|i| if smooth { ((i % cols) * 37 + (i / cols) * 11) as u32 } else { rnd() } & if bits == 8 { 0xFF } else { 0xFFFF })
                .collect();
            let frame: Vec<u8> = values
                .iter()
                .flat_map(|&v| {
                    if bps == 1 {
                        vec![v as u8]
                    } else {
                        (v as u16).to_le_bytes().to_vec()
                    }
                })
                .collect();
            let enc = encode_frame(&frame, rows, cols, samples, bits).expect("encode");
            let mut dec = jpeg_decoder::Decoder::new(&enc[..]);
            let out = dec
                .decode()
                .unwrap_or_else(|e| panic!("{rows}x{cols}x{samples}@{bits}: {e}"));
            let info = dec.info().expect("info");
            assert_eq!((info.width as usize, info.height as usize), (cols, rows));
            let got: Vec<u32> = if bps == 1 {
                out.iter().map(|&b| u32::from(b)).collect()
            } else {
                out.chunks_exact(2)
                    .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
                    .collect()
            };
            assert!(
                got == values,
                "{rows}x{cols}x{samples}@{bits} smooth={smooth}: got {:?} want {:?}",
                &got[..6.min(got.len())],
                &values[..6.min(values.len())]
            );
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            encode_frame(&[0; 4], 2, 2, 1, 12),
            Err(Error::Unsupported(
                "12 bits allocated: JPEG Lossless here takes 8 or 16".into()
            ))
        );
        assert_eq!(
            encode_frame(&[0; 8], 2, 2, 2, 8),
            Err(Error::Unsupported(
                "JPEG Lossless: 2 samples per pixel".into()
            ))
        );
        assert_eq!(
            encode_frame(&[0; 3], 2, 2, 1, 8),
            Err(Error::malformed(
                "JPEG Lossless",
                "frame of 3 bytes, expected 4"
            ))
        );
    }
}
