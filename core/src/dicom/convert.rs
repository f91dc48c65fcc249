//! Rewriting a Part-10 file: into another transfer syntax (uncompressed by re-encoding the
//! data set, compressed through `wado-codec`), and pulling bits out of native pixel data.

use crate::error::{Error, Result};
use crate::media::ts;
use bytes::Bytes;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;

/// Re-encodes a Part-10 file in another uncompressed transfer syntax. The File Meta's
/// Transfer Syntax UID is updated; everything else is kept.
pub(crate) fn convert(key: &str, bytes: &[u8], to: &str) -> Result<Vec<u8>> {
    let target = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(to)
        .ok_or_else(|| Error::NotAcceptable(format!("transfer syntax {to} is not supported")))?;
    let stored = super::scan::scan_meta(bytes)
        .map(|m| m.transfer_syntax)
        .map_err(|e| Error::corrupt(key, e))?;
    if !ts::is_native(to) {
        return Ok(wado_codec::encode_instance(key, bytes, &stored, to)?);
    }
    if !ts::is_native(&stored) {
        // Compressed: decoded to Explicit VR LE (the only target can_convert offers for it).
        return Ok(wado_codec::decode_instance(key, bytes)?);
    }
    let mut obj = dicom_object::OpenFileOptions::new()
        .from_reader(bytes)
        .map_err(|e| Error::corrupt(key, e))?;
    // Written again with the dictionary VR, as DCMTK writes a known tag read as UN.
    wado_codec::dataset::dictionary_vrs(&mut obj);
    obj.meta_mut().set_transfer_syntax(target);
    obj.meta_mut().update_information_group_length();
    let mut out = Vec::with_capacity(bytes.len() + 1024);
    obj.write_all(&mut out)
        .map_err(|e| Error::corrupt(key, format!("cannot write as {to}: {e}")))?;
    Ok(out)
}

/// `bits` bits starting at bit `start` of `all` (little-endian bit order, PS3.5 §8.1.1),
/// re-packed from bit 0. Whole-byte frames are a plain slice.
pub(crate) fn extract_bits(all: &[u8], start: u64, bits: u64) -> Bytes {
    if start % 8 == 0 && bits % 8 == 0 {
        let s = (start / 8) as usize;
        let e = (s + (bits / 8) as usize).min(all.len());
        return Bytes::copy_from_slice(&all[s.min(e)..e]);
    }
    let mut out = vec![0u8; bits.div_ceil(8) as usize];
    for i in 0..bits {
        let src = start + i;
        let byte = all.get((src / 8) as usize).copied().unwrap_or(0);
        if byte >> (src % 8) & 1 == 1 {
            out[(i / 8) as usize] |= 1 << (i % 8);
        }
    }
    Bytes::from(out)
}
