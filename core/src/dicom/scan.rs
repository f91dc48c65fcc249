//! A byte-level scanner of Part-10 files: where each bulk value and each Pixel Data fragment
//! lies in the file.
//!
//! dicom-rs parses values but does not report their positions, and the storage layout needs
//! them: a frame or bulk data request is one ranged read at the offsets found here at import.
//! The scanner walks element headers only (PS3.5 §7.1), never decodes values, and works for the
//! little-endian transfer syntaxes whose bytes on disk are the bytes served (Implicit and
//! Explicit VR Little Endian and every encapsulated syntax). Big Endian and Deflated files are
//! not byte-addressable: the server reads those whole.
//!
//! Every read is bounds-checked; malformed input is an error, never a panic.

use super::json::{is_binary_vr, is_pixel_data_tag};
use crate::dicom::uid::PathStep;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

/// Why a file could not be scanned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Not a Part-10 file: no 128-byte preamble followed by `DICM`.
    #[error("not a DICOM Part-10 file: no 'DICM' magic after the 128-byte preamble")]
    NoMagic,
    /// The File Meta Information is malformed or lacks the Transfer Syntax UID.
    #[error("malformed File Meta Information: {0}")]
    BadMeta(String),
    /// An element header or length runs past the end of the file.
    #[error("element {tag} at byte {offset}: {reason}")]
    Malformed {
        /// The tag, as `(gggg,eeee)`.
        tag: String,
        /// Where its header starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// The File Meta Information fields the layout needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Transfer Syntax UID (0002,0010), padding removed.
    pub transfer_syntax: String,
    /// Media Storage SOP Instance UID (0002,0003), if present.
    pub media_storage_sop_instance: Option<String>,
    /// Media Storage SOP Class UID (0002,0002), if present.
    pub media_storage_sop_class: Option<String>,
    /// The offset of the first data set element.
    pub dataset_offset: u64,
}

/// Where one value lies in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueLocation {
    /// The attribute path (tags and 1-based item numbers).
    pub path: Vec<PathStep>,
    /// The VR as encoded (or from the dictionary, for Implicit VR).
    pub vr: VR,
    /// Offset of the first value byte.
    pub offset: u64,
    /// Value length in bytes.
    pub length: u64,
}

/// One fragment of encapsulated Pixel Data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Offset of the item tag (FFFE,E000) of the fragment: the Basic Offset Table counts from
    /// the first of these.
    pub item_offset: u64,
    /// Offset of the fragment's first data byte.
    pub offset: u64,
    /// Length of the fragment's data.
    pub length: u64,
}

/// Where the top-level Pixel Data lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PixelLocation {
    /// Native (uncompressed) pixel data: one contiguous value.
    Native {
        /// Offset of the first byte.
        offset: u64,
        /// Length in bytes.
        length: u64,
    },
    /// Encapsulated pixel data: the Basic Offset Table and the fragments.
    Encapsulated {
        /// The Basic Offset Table (may be empty).
        offset_table: Vec<u64>,
        /// The fragments after the offset table, in order.
        fragments: Vec<Fragment>,
    },
}

/// The scan of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The File Meta Information.
    pub meta: Meta,
    /// Binary values longer than the inline limit, and the top-level pixel data value.
    pub bulk: Vec<ValueLocation>,
    /// The top-level Pixel Data (or Float/Double Float Pixel Data).
    pub pixel: Option<PixelLocation>,
}

const MAX_DEPTH: usize = 64;

/// Reads the File Meta Information of a Part-10 file.
pub fn scan_meta(b: &[u8]) -> Result<Meta, ScanError> {
    if b.len() < 132 || &b[128..132] != b"DICM" {
        return Err(ScanError::NoMagic);
    }
    let mut pos = 132usize;
    let mut ts = None;
    let mut sop = None;
    let mut class = None;
    let bad = |m: &str| ScanError::BadMeta(m.to_owned());
    while pos + 8 <= b.len() {
        let group = u16::from_le_bytes([b[pos], b[pos + 1]]);
        if group != 0x0002 {
            break;
        }
        let element = u16::from_le_bytes([b[pos + 2], b[pos + 3]]);
        let vr = [b[pos + 4], b[pos + 5]];
        let (len, header) = if long_length_vr(&vr) {
            let l = read_u32(b, pos + 8).ok_or_else(|| bad("truncated element header"))?;
            (l as usize, 12)
        } else {
            (u16::from_le_bytes([b[pos + 6], b[pos + 7]]) as usize, 8)
        };
        if len == 0xFFFF_FFFF {
            return Err(bad("undefined length in File Meta Information"));
        }
        let start = pos + header;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= b.len())
            .ok_or_else(|| bad("element runs past the end"))?;
        let text = || {
            String::from_utf8_lossy(&b[start..end])
                .trim_end_matches(['\0', ' '])
                .to_owned()
        };
        match element {
            0x0010 => ts = Some(text()),
            0x0002 => class = Some(text()),
            0x0003 => sop = Some(text()),
            _ => {}
        }
        pos = end;
    }
    let transfer_syntax = ts
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("no Transfer Syntax UID (0002,0010)"))?;
    Ok(Meta {
        transfer_syntax,
        media_storage_sop_instance: sop,
        media_storage_sop_class: class,
        dataset_offset: pos as u64,
    })
}

/// Why a Deflated file's size is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Inflate {
    /// It inflates past the limit.
    #[error("the deflated data set inflates past {0} bytes, more than this server takes in one instance")]
    TooLarge(u64),
    /// It is not a Part-10 file, or not a deflate stream.
    #[error("{0}")]
    Malformed(String),
}

/// The size of a Deflated file's data set once inflated (PS3.5 A.5: raw deflate after the
/// File Meta), counted without holding it, and no further than `limit`: `Err` with the reason
/// when it inflates past `limit` or is not a deflate stream. `Ok(None)` for other syntaxes.
/// A few kilobytes can inflate to gigabytes, so what a Deflated file costs is its inflated
/// size, not its stored one.
pub fn inflated_len(b: &[u8], limit: u64) -> Result<Option<u64>, Inflate> {
    use std::io::Read;
    let meta = scan_meta(b).map_err(|e| Inflate::Malformed(e.to_string()))?;
    if meta.transfer_syntax != crate::media::ts::DEFLATED_EXPLICIT_VR_LE {
        return Ok(None);
    }
    let start = usize::try_from(meta.dataset_offset)
        .unwrap_or(usize::MAX)
        .min(b.len());
    let mut inflater = flate2::read::DeflateDecoder::new(&b[start..]);
    let mut scratch = vec![0u8; 64 << 10];
    let mut total = start as u64;
    loop {
        let n = inflater.read(&mut scratch).map_err(|e| {
            Inflate::Malformed(format!("the deflated data set does not inflate: {e}"))
        })?;
        if n == 0 {
            return Ok(Some(total));
        }
        total += n as u64;
        if total > limit {
            return Err(Inflate::TooLarge(limit));
        }
    }
}

/// True when a file with this transfer syntax can be scanned (its stored bytes are the
/// little-endian bytes that bulk data responses carry).
pub fn is_byte_addressable(transfer_syntax: &str) -> bool {
    use crate::media::ts;
    !matches!(
        transfer_syntax,
        ts::EXPLICIT_VR_BE | ts::DEFLATED_EXPLICIT_VR_LE
    )
}

/// Scans a whole file: meta, then the data set's element positions.
///
/// `inline_max` is the JSON writer's limit: binary values longer than it are recorded.
pub fn scan(b: &[u8], inline_max: usize) -> Result<Scan, ScanError> {
    let meta = scan_meta(b)?;
    let mut out = Scan {
        meta,
        bulk: Vec::new(),
        pixel: None,
    };
    if !is_byte_addressable(&out.meta.transfer_syntax) {
        return Ok(out);
    }
    let explicit = out.meta.transfer_syntax != crate::media::ts::IMPLICIT_VR_LE;
    let mut w = Walker {
        b,
        explicit,
        inline_max,
        out: &mut out,
        path: Vec::new(),
    };
    let start = w.out.meta.dataset_offset as usize;
    w.walk(start, b.len(), false, 0)?;
    Ok(out)
}

/// VRs whose explicit length is 4 bytes after 2 reserved ones (PS3.5 §7.1.2).
pub(crate) fn long_length_vr(vr: &[u8; 2]) -> bool {
    matches!(
        vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"UC"
            | b"UR"
            | b"UT"
            | b"UN"
            | b"SV"
            | b"UV"
    )
}

fn read_u16(b: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(pos..pos + 2)?.try_into().ok()?))
}

fn read_u32(b: &[u8], pos: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(pos..pos + 4)?.try_into().ok()?))
}

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_END: Tag = Tag(0xFFFE, 0xE00D);
const SEQ_END: Tag = Tag(0xFFFE, 0xE0DD);

struct Walker<'a, 'o> {
    b: &'a [u8],
    explicit: bool,
    inline_max: usize,
    out: &'o mut Scan,
    path: Vec<PathStep>,
}

impl Walker<'_, '_> {
    fn err(&self, tag: Tag, offset: usize, reason: &str) -> ScanError {
        ScanError::Malformed {
            tag: format!("({:04X},{:04X})", tag.group(), tag.element()),
            offset: offset as u64,
            reason: reason.to_owned(),
        }
    }

    fn tag_at(&self, pos: usize) -> Option<Tag> {
        Some(Tag(read_u16(self.b, pos)?, read_u16(self.b, pos + 2)?))
    }

    /// Walks elements in `[pos, end)`. In an undefined-length item (`in_item`), stops after the
    /// Item Delimitation Item and returns the position after it.
    fn walk(
        &mut self,
        mut pos: usize,
        end: usize,
        in_item: bool,
        depth: usize,
    ) -> Result<usize, ScanError> {
        if depth > MAX_DEPTH {
            return Err(self.err(Tag(0, 0), pos, "sequences nested too deeply"));
        }
        while pos < end {
            if pos + 8 > end {
                // Trailing garbage shorter than a header: tolerated at the top level only.
                if depth == 0 {
                    return Ok(end);
                }
                return Err(self.err(Tag(0, 0), pos, "truncated element header"));
            }
            let tag = self
                .tag_at(pos)
                .ok_or_else(|| self.err(Tag(0, 0), pos, "truncated"))?;
            if tag == ITEM_END {
                if in_item {
                    return Ok(pos + 8);
                }
                return Err(self.err(tag, pos, "item delimiter outside an item"));
            }
            if tag.group() == 0xFFFE {
                return Err(self.err(tag, pos, "unexpected delimiter"));
            }
            let (vr, len, header) = self.header(pos, tag)?;
            let value = pos + header;
            let is_seq = vr == VR::SQ || (len == UNDEFINED && vr == VR::UN);
            let step = PathStep::Tag(u32::from(tag.group()) << 16 | u32::from(tag.element()));
            if is_seq {
                self.path.push(step);
                pos = self.sequence(tag, value, len, end, depth)?;
                self.path.pop();
                continue;
            }
            if len == UNDEFINED {
                // Encapsulated data (PS3.5 §A.4) may stand at any depth: PS3.18 §10.4.3.3.6
                // names "Pixel Data nested within an Icon Image Sequence", and DCMTK's
                // dcmcjpeg compresses icons too. Only the top-level Pixel Data is the
                // instance's frames; a nested one is walked (bounds-checked) and its value
                // served whole from the file.
                if is_pixel_data_tag(tag) || matches!(vr, VR::OB | VR::OW) {
                    pos =
                        self.encapsulated(tag, value, end, depth == 0 && is_pixel_data_tag(tag))?;
                    continue;
                }
                return Err(self.err(tag, pos, "undefined length on a non-sequence value"));
            }
            let vend = value
                .checked_add(len as usize)
                .filter(|&e| e <= end)
                .ok_or_else(|| self.err(tag, pos, "value runs past the end of the data"))?;
            let top_pixel = depth == 0 && is_pixel_data_tag(tag);
            if top_pixel {
                self.out.pixel = Some(PixelLocation::Native {
                    offset: value as u64,
                    length: u64::from(len),
                });
            }
            if top_pixel || (is_binary_vr(vr) && len as usize > self.inline_max) {
                let mut path = self.path.clone();
                path.push(step);
                self.out.bulk.push(ValueLocation {
                    path,
                    vr,
                    offset: value as u64,
                    length: u64::from(len),
                });
            }
            pos = vend;
        }
        if in_item {
            return Err(self.err(Tag(0, 0), pos, "item without its delimiter"));
        }
        Ok(pos)
    }

    fn header(&self, pos: usize, tag: Tag) -> Result<(VR, u32, usize), ScanError> {
        if self.explicit {
            let vr_bytes = [self.b[pos + 4], self.b[pos + 5]];
            // An unknown VR is read as UN, with UN's 4-byte length, as dicom-rs reads it: the two
            // must agree, or dicom-rs would meet a length this scan never checked (found by
            // fuzzing: a 4 GB length behind garbage VR bytes).
            let known = std::str::from_utf8(&vr_bytes)
                .ok()
                .and_then(|s| s.parse::<VR>().ok());
            let vr = known.unwrap_or(VR::UN);
            if known.is_none() || long_length_vr(&vr_bytes) {
                let len = read_u32(self.b, pos + 8)
                    .ok_or_else(|| self.err(tag, pos, "truncated header"))?;
                Ok((vr, len, 12))
            } else {
                Ok((vr, u32::from(read_u16(self.b, pos + 6).unwrap_or(0)), 8))
            }
        } else {
            let len =
                read_u32(self.b, pos + 4).ok_or_else(|| self.err(tag, pos, "truncated header"))?;
            Ok((implicit_vr(tag), len, 8))
        }
    }

    fn sequence(
        &mut self,
        tag: Tag,
        mut pos: usize,
        len: u32,
        end: usize,
        depth: usize,
    ) -> Result<usize, ScanError> {
        let seq_end = if len == UNDEFINED {
            end
        } else {
            pos.checked_add(len as usize)
                .filter(|&e| e <= end)
                .ok_or_else(|| self.err(tag, pos, "sequence runs past the end"))?
        };
        let mut item_no = 0u32;
        while pos < seq_end {
            let t = self
                .tag_at(pos)
                .ok_or_else(|| self.err(tag, pos, "truncated sequence"))?;
            let ilen =
                read_u32(self.b, pos + 4).ok_or_else(|| self.err(tag, pos, "truncated item"))?;
            if t == SEQ_END {
                if len != UNDEFINED {
                    return Err(self.err(
                        tag,
                        pos,
                        "sequence delimiter in a defined-length sequence",
                    ));
                }
                return Ok(pos + 8);
            }
            if t != ITEM {
                return Err(self.err(tag, pos, "expected an item in a sequence"));
            }
            item_no += 1;
            self.path.push(PathStep::Item(item_no));
            let body = pos + 8;
            pos = if ilen == UNDEFINED {
                self.walk(body, seq_end, true, depth + 1)?
            } else {
                let iend = body
                    .checked_add(ilen as usize)
                    .filter(|&e| e <= seq_end)
                    .ok_or_else(|| self.err(tag, pos, "item runs past its sequence"))?;
                self.walk(body, iend, false, depth + 1)?;
                iend
            };
            self.path.pop();
        }
        if len == UNDEFINED {
            return Err(self.err(tag, pos, "sequence without its delimiter"));
        }
        Ok(seq_end)
    }

    /// Walks encapsulated items from `pos`; when they are the instance's `frames` (the
    /// top-level Pixel Data), records where the offset table and the fragments lie.
    fn encapsulated(
        &mut self,
        tag: Tag,
        mut pos: usize,
        end: usize,
        frames: bool,
    ) -> Result<usize, ScanError> {
        let mut offset_table = Vec::new();
        let mut fragments = Vec::new();
        let mut first = true;
        loop {
            let t = self
                .tag_at(pos)
                .ok_or_else(|| self.err(tag, pos, "truncated pixel data"))?;
            let ilen = read_u32(self.b, pos + 4)
                .ok_or_else(|| self.err(tag, pos, "truncated pixel data item"))?
                as usize;
            if t == SEQ_END {
                pos += 8;
                break;
            }
            if t != ITEM || ilen == UNDEFINED as usize {
                return Err(self.err(tag, pos, "malformed encapsulated pixel data item"));
            }
            let data = pos + 8;
            let dend = data
                .checked_add(ilen)
                .filter(|&e| e <= end)
                .ok_or_else(|| self.err(tag, pos, "fragment runs past the end"))?;
            if first {
                if ilen % 4 != 0 {
                    return Err(self.err(
                        tag,
                        pos,
                        "basic offset table length is not a multiple of 4",
                    ));
                }
                offset_table = self.b[data..dend]
                    .chunks_exact(4)
                    .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .collect();
                first = false;
            } else {
                fragments.push(Fragment {
                    item_offset: pos as u64,
                    offset: data as u64,
                    length: ilen as u64,
                });
            }
            pos = dend;
        }
        if !frames {
            return Ok(pos);
        }
        let mut path = self.path.clone();
        path.push(PathStep::Tag(
            u32::from(tag.group()) << 16 | u32::from(tag.element()),
        ));
        let (first_off, last_end) = match (fragments.first(), fragments.last()) {
            (Some(f), Some(l)) => (f.item_offset, l.offset + l.length),
            _ => (pos as u64, pos as u64),
        };
        self.out.bulk.push(ValueLocation {
            path,
            vr: VR::OB,
            offset: first_off,
            length: last_end - first_off,
        });
        self.out.pixel = Some(PixelLocation::Encapsulated {
            offset_table,
            fragments,
        });
        Ok(pos)
    }
}

/// The VR of a tag in Implicit VR Little Endian, from the standard dictionary (PS3.6). Unknown
/// and private tags are UN, as dicom-rs reads them.
fn implicit_vr(tag: Tag) -> VR {
    if is_pixel_data_tag(tag) {
        return match tag {
            t if t == dicom_dictionary_std::tags::FLOAT_PIXEL_DATA => VR::OF,
            t if t == dicom_dictionary_std::tags::DOUBLE_FLOAT_PIXEL_DATA => VR::OD,
            _ => VR::OW,
        };
    }
    match StandardDataDictionary.by_tag(tag).map(|e| e.vr()) {
        Some(VirtualVr::Exact(vr)) => vr,
        Some(VirtualVr::Ox) | Some(VirtualVr::Px) => VR::OW,
        Some(VirtualVr::Xs) => VR::US,
        Some(VirtualVr::Lt) => VR::US,
        _ => VR::UN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a Part-10 byte image: preamble, meta with the given transfer syntax, then `body`.
    pub(crate) fn part10(ts: &str, body: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        let mut uid = ts.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        b.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        b.extend_from_slice(&(uid.len() as u16).to_le_bytes());
        b.extend_from_slice(&uid);
        b.extend_from_slice(body);
        b
    }

    fn ex(tag: (u16, u16), vr: &str, value: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&tag.0.to_le_bytes());
        b.extend_from_slice(&tag.1.to_le_bytes());
        b.extend_from_slice(vr.as_bytes());
        if long_length_vr(&[vr.as_bytes()[0], vr.as_bytes()[1]]) {
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            b.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        b.extend_from_slice(value);
        b
    }

    fn item(tag: Tag, len: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&tag.0.to_le_bytes());
        b.extend_from_slice(&tag.1.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b
    }

    #[test]
    fn meta_errors() {
        assert_eq!(scan_meta(b"short"), Err(ScanError::NoMagic));
        let mut no_ts = vec![0u8; 128];
        no_ts.extend_from_slice(b"DICM");
        assert!(matches!(scan_meta(&no_ts), Err(ScanError::BadMeta(_))));
        let m = scan_meta(&part10("1.2.840.10008.1.2.1", &[])).expect("meta");
        assert_eq!(m.transfer_syntax, "1.2.840.10008.1.2.1");
        assert_eq!(m.dataset_offset, 132 + 8 + 20);
    }

    #[test]
    fn native_pixel_data_and_nested_bulk() {
        let big = vec![7u8; 20];
        let mut body = ex((0x0008, 0x0060), "CS", b"CT");
        // An undefined-length sequence with one undefined-length item holding a big OB.
        body.extend(ex((0x0008, 0x1140), "SQ", &[]).iter().take(8)); // header start
        body.truncate(body.len() - 8);
        let mut sq = Vec::new();
        sq.extend_from_slice(&[0x08, 0x00, 0x40, 0x11, b'S', b'Q', 0, 0]);
        sq.extend_from_slice(&UNDEFINED.to_le_bytes());
        sq.extend(item(ITEM, UNDEFINED));
        let nested = ex((0x0029, 0x1010), "OB", &big);
        sq.extend(&nested);
        sq.extend(item(ITEM_END, 0));
        sq.extend(item(SEQ_END, 0));
        body.extend(&sq);
        let pixels = vec![1u8; 16];
        body.extend(ex((0x7FE0, 0x0010), "OW", &pixels));
        let file = part10("1.2.840.10008.1.2.1", &body);
        let s = scan(&file, 8).expect("scan");
        let pix_off = file.len() - 16;
        assert_eq!(
            s.pixel,
            Some(PixelLocation::Native {
                offset: pix_off as u64,
                length: 16
            })
        );
        assert_eq!(s.bulk.len(), 2);
        let nested_bulk = &s.bulk[0];
        assert_eq!(
            nested_bulk.path,
            vec![
                PathStep::Tag(0x0008_1140),
                PathStep::Item(1),
                PathStep::Tag(0x0029_1010)
            ]
        );
        let o = nested_bulk.offset as usize;
        assert_eq!(&file[o..o + 20], &big[..]);
    }

    #[test]
    fn encapsulated_fragments() {
        let mut body = Vec::new();
        body.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
        body.extend_from_slice(&UNDEFINED.to_le_bytes());
        body.extend(item(ITEM, 8));
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&12u32.to_le_bytes());
        body.extend(item(ITEM, 4));
        body.extend_from_slice(b"\xFF\xD8AB");
        body.extend(item(ITEM, 4));
        body.extend_from_slice(b"\xFF\xD8CD");
        body.extend(item(SEQ_END, 0));
        let file = part10("1.2.840.10008.1.2.4.50", &body);
        let s = scan(&file, 1024).expect("scan");
        let Some(PixelLocation::Encapsulated {
            offset_table,
            fragments,
        }) = s.pixel
        else {
            panic!("not encapsulated")
        };
        assert_eq!(offset_table, vec![0, 12]);
        assert_eq!(fragments.len(), 2);
        assert_eq!(fragments[1].item_offset - fragments[0].item_offset, 12);
        let f = fragments[1];
        assert_eq!(
            &file[f.offset as usize..(f.offset + f.length) as usize],
            b"\xFF\xD8CD"
        );
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        let cases: Vec<Vec<u8>> = vec![
            ex((0x0010, 0x0010), "OB", &[1, 2])
                .into_iter()
                .take(10)
                .collect(), // truncated header
            {
                let mut e = ex((0x0010, 0x0010), "OB", &[1, 2]);
                e[8..12].copy_from_slice(&1000u32.to_le_bytes());
                e
            },
            item(SEQ_END, 0),
            {
                let mut e = vec![0x08, 0x00, 0x40, 0x11, b'S', b'Q', 0, 0];
                e.extend_from_slice(&UNDEFINED.to_le_bytes());
                e.extend(item(ITEM, UNDEFINED));
                e
            },
        ];
        for (i, body) in cases.iter().enumerate() {
            let file = part10("1.2.840.10008.1.2.1", body);
            assert!(scan(&file, 1024).is_err(), "case {i}");
        }
        // Arbitrary prefixes of a valid file never panic.
        let mut body = ex((0x0008, 0x0060), "CS", b"CT");
        body.extend(ex((0x7FE0, 0x0010), "OW", &[0u8; 32]));
        let file = part10("1.2.840.10008.1.2.1", &body);
        for n in 0..file.len() {
            let _ = scan(&file[..n], 8);
        }
    }

    #[test]
    fn implicit_vr_uses_the_dictionary() {
        let mut body = Vec::new();
        body.extend(item(Tag(0x0010, 0x0010), 4));
        body.extend_from_slice(b"A^B ");
        body.extend(item(Tag(0x7FE0, 0x0010), 4));
        body.extend_from_slice(&[1, 2, 3, 4]);
        let file = part10("1.2.840.10008.1.2", &body);
        let s = scan(&file, 1024).expect("scan");
        assert_eq!(s.bulk.len(), 1);
        assert_eq!(s.bulk[0].vr, VR::OW);
    }
}
