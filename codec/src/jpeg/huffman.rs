//! The Huffman-coding pieces the JPEG encoders share (ISO/IEC 10918-1): the magnitude
//! category of a value, tables optimized for the symbols' frequencies (Annex K.2), canonical
//! codes (Annex C), and the entropy-coded segment's bit writer with byte stuffing (F.1.2.3).
//! Used by the lossless encoder ([`super::lossless`]) and the DCT codec ([`super::dct`]).

/// SSSS, the number of bits of |v| (Tables F.1, F.2, H.2): 16 for ±32768.
#[inline(always)]
pub(crate) fn category(v: i32) -> u8 {
    (32 - v.unsigned_abs().leading_zeros()) as u8
}

/// The BITS list and HUFFVAL of a table for symbols `0..freq.len()` (at most 256) with these
/// frequencies, limited to 16-bit codes and with the all-ones code left unused: Annex K.2 as
/// libjpeg's `jpeg_gen_optimal_table` does it. Unused symbols get no code.
pub(crate) fn optimal_table(freq_in: &[u64]) -> ([u8; 16], Vec<u8>) {
    let n = freq_in.len().min(256);
    let mut freq = [0u64; 257];
    freq[..n].copy_from_slice(&freq_in[..n]);
    freq[n] = 1; // reserves the all-ones code (K.2)
    let freq = &mut freq[..=n];
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
    for &s in &codesize[..=n] {
        if s > 0 {
            bits[s.min(32)] += 1;
        }
    }
    // Limit to 16 bits (Figure K.3).
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
                  // HUFFVAL: symbols by their original code size, then value (K.2, Figure K.4).
    let mut values = Vec::new();
    for len in 1..=32 {
        for (sym, &s) in codesize[..n].iter().enumerate() {
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

/// Canonical codes of a table (Annex C): (code, length) by symbol.
pub(crate) fn canonical_codes(bits: &[u8; 16], values: &[u8]) -> [(u16, u8); 256] {
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

/// Bits of an entropy-coded segment, appended to a byte buffer with a zero stuffed after
/// every 0xFF (F.1.2.3), 32 bits at a time.
pub(crate) struct BitWriter {
    out: Vec<u8>,
    /// Pending bits: the low `n` bits of `acc`.
    acc: u64,
    n: u32,
}

impl BitWriter {
    /// A writer appending to `out` (the headers written so far).
    pub(crate) fn new(out: Vec<u8>) -> BitWriter {
        BitWriter { out, acc: 0, n: 0 }
    }

    /// Appends the low `len` bits of `code` (`len` ≤ 16), most significant first.
    #[inline(always)]
    pub(crate) fn put(&mut self, code: u32, len: u8) {
        if len == 0 {
            return;
        }
        self.acc = (self.acc << len) | u64::from(code & ((1u32 << len) - 1));
        self.n += u32::from(len);
        if self.n >= 32 {
            self.n -= 32;
            let word = (self.acc >> self.n) as u32;
            // A 0xFF byte needs a stuffed zero after it; most words have none.
            if ((!word).wrapping_sub(0x0101_0101) & word & 0x8080_8080) == 0 {
                self.out.extend_from_slice(&word.to_be_bytes());
            } else {
                for b in word.to_be_bytes() {
                    self.out.push(b);
                    if b == 0xFF {
                        self.out.push(0);
                    }
                }
            }
        }
    }

    /// Pads the last byte with ones (F.1.2.3), writes what is pending and gives the buffer.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let pad = (8 - self.n % 8) % 8;
        let total = self.n + pad;
        let bits = (self.acc << pad) | ((1u64 << pad) - 1);
        for k in (0..total / 8).rev() {
            let b = (bits >> (8 * k)) as u8;
            self.out.push(b);
            if b == 0xFF {
                self.out.push(0);
            }
        }
        self.out
    }
}
