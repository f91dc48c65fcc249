//! A streaming ZIP writer (PKWARE APPNOTE 6.3.10) for `application/zip` retrieval: entries
//! are stored (PS3.10 files do not shrink much, and storing keeps the server fast), each entry
//! is written as its bytes arrive, and the CRC-32 and sizes follow the data in a data
//! descriptor (general purpose bit 3), so nothing is buffered. Zip64 records are added where
//! sizes, offsets or the entry count pass the 32-/16-bit limits (archives past 4 GB).

use bytes::{BufMut, Bytes, BytesMut};

const LOCAL_HEADER: u32 = 0x0403_4b50;
const DATA_DESCRIPTOR: u32 = 0x0807_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const ZIP64_END: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const END: u32 = 0x0605_4b50;
/// Bit 3 (sizes and CRC in a data descriptor) and bit 11 (UTF-8 names).
const FLAGS: u16 = 0x0008 | 0x0800;
/// 1980-01-01 00:00 in MS-DOS format: the core reads no clock.
const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = (1 << 5) | 1;

struct Entry {
    name: String,
    crc: u32,
    size: u64,
    offset: u64,
}

/// Writes the framing of a ZIP archive around streamed entry data.
pub struct ZipWriter {
    entries: Vec<Entry>,
    offset: u64,
    current: Option<(Entry, crc32fast::Hasher)>,
    /// Write Zip64 records even when not needed (tests).
    force_zip64: bool,
}

impl std::fmt::Debug for ZipWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZipWriter")
            .field("entries", &self.entries.len())
            .field("offset", &self.offset)
            .finish()
    }
}

impl Default for ZipWriter {
    fn default() -> Self {
        ZipWriter::new()
    }
}

impl ZipWriter {
    /// A new archive.
    pub fn new() -> ZipWriter {
        ZipWriter {
            entries: Vec::new(),
            offset: 0,
            current: None,
            force_zip64: false,
        }
    }

    /// A writer that always writes Zip64 records (to test them without 4 GB of data).
    pub fn new_forcing_zip64() -> ZipWriter {
        ZipWriter {
            force_zip64: true,
            ..ZipWriter::new()
        }
    }

    /// Starts an entry: returns its local file header.
    pub fn start_entry(&mut self, name: &str) -> Bytes {
        debug_assert!(self.current.is_none(), "finish the previous entry first");
        let mut b = BytesMut::with_capacity(30 + name.len());
        b.put_u32_le(LOCAL_HEADER);
        b.put_u16_le(45); // version needed: 4.5 (Zip64 may follow)
        b.put_u16_le(FLAGS);
        b.put_u16_le(0); // stored
        b.put_u16_le(DOS_TIME);
        b.put_u16_le(DOS_DATE);
        b.put_u32_le(0); // CRC-32: in the data descriptor
        b.put_u32_le(0); // compressed size: idem
        b.put_u32_le(0); // uncompressed size: idem
        b.put_u16_le(name.len() as u16);
        b.put_u16_le(0); // no extra field
        b.put_slice(name.as_bytes());
        let entry = Entry {
            name: name.to_owned(),
            crc: 0,
            size: 0,
            offset: self.offset,
        };
        self.offset += b.len() as u64;
        self.current = Some((entry, crc32fast::Hasher::new()));
        b.freeze()
    }

    /// Accounts for data of the current entry (the caller sends the bytes themselves).
    pub fn data(&mut self, chunk: &[u8]) {
        if let Some((e, h)) = &mut self.current {
            h.update(chunk);
            e.size += chunk.len() as u64;
            self.offset += chunk.len() as u64;
        }
    }

    /// Ends the current entry: returns its data descriptor.
    pub fn end_entry(&mut self) -> Bytes {
        let Some((mut e, h)) = self.current.take() else {
            return Bytes::new();
        };
        e.crc = h.finalize();
        let mut b = BytesMut::with_capacity(24);
        b.put_u32_le(DATA_DESCRIPTOR);
        b.put_u32_le(e.crc);
        if e.size >= u64::from(u32::MAX) || self.force_zip64 {
            // Zip64 data descriptor: 8-byte sizes (APPNOTE 4.3.9.2).
            b.put_u64_le(e.size);
            b.put_u64_le(e.size);
        } else {
            b.put_u32_le(e.size as u32);
            b.put_u32_le(e.size as u32);
        }
        self.offset += b.len() as u64;
        self.entries.push(e);
        b.freeze()
    }

    /// The central directory and end records.
    pub fn finish(&mut self) -> Bytes {
        let cd_start = self.offset;
        let mut b = BytesMut::new();
        for e in &self.entries {
            let big_size = e.size >= u64::from(u32::MAX) || self.force_zip64;
            let big_offset = e.offset >= u64::from(u32::MAX) || self.force_zip64;
            let mut extra = BytesMut::new();
            if big_size || big_offset {
                let mut fields = BytesMut::new();
                if big_size {
                    fields.put_u64_le(e.size);
                    fields.put_u64_le(e.size);
                }
                if big_offset {
                    fields.put_u64_le(e.offset);
                }
                extra.put_u16_le(0x0001);
                extra.put_u16_le(fields.len() as u16);
                extra.put_slice(&fields);
            }
            b.put_u32_le(CENTRAL_HEADER);
            b.put_u16_le(45); // made by: 4.5, MS-DOS attributes
            b.put_u16_le(45);
            b.put_u16_le(FLAGS);
            b.put_u16_le(0);
            b.put_u16_le(DOS_TIME);
            b.put_u16_le(DOS_DATE);
            b.put_u32_le(e.crc);
            let size32 = if big_size { u32::MAX } else { e.size as u32 };
            b.put_u32_le(size32);
            b.put_u32_le(size32);
            b.put_u16_le(e.name.len() as u16);
            b.put_u16_le(extra.len() as u16);
            b.put_u16_le(0); // comment
            b.put_u16_le(0); // disk
            b.put_u16_le(0); // internal attributes
            b.put_u32_le(0); // external attributes
            b.put_u32_le(if big_offset {
                u32::MAX
            } else {
                e.offset as u32
            });
            b.put_slice(e.name.as_bytes());
            b.put_slice(&extra);
        }
        let cd_size = b.len() as u64;
        let n = self.entries.len() as u64;
        let zip64 = self.force_zip64
            || n >= 0xFFFF
            || cd_start >= u64::from(u32::MAX)
            || cd_size >= u64::from(u32::MAX);
        if zip64 {
            let z64_start = cd_start + cd_size;
            b.put_u32_le(ZIP64_END);
            b.put_u64_le(44); // size of the record after this field
            b.put_u16_le(45);
            b.put_u16_le(45);
            b.put_u32_le(0);
            b.put_u32_le(0);
            b.put_u64_le(n);
            b.put_u64_le(n);
            b.put_u64_le(cd_size);
            b.put_u64_le(cd_start);
            b.put_u32_le(ZIP64_LOCATOR);
            b.put_u32_le(0);
            b.put_u64_le(z64_start);
            b.put_u32_le(1);
        }
        b.put_u32_le(END);
        b.put_u16_le(0);
        b.put_u16_le(0);
        let n16 = if zip64 { 0xFFFF } else { n as u16 };
        b.put_u16_le(n16);
        b.put_u16_le(n16);
        b.put_u32_le(if zip64 { u32::MAX } else { cd_size as u32 });
        b.put_u32_le(if zip64 { u32::MAX } else { cd_start as u32 });
        b.put_u16_le(0);
        self.offset += b.len() as u64;
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(mut w: ZipWriter, entries: &[(&str, &[&[u8]])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, chunks) in entries {
            out.extend_from_slice(&w.start_entry(name));
            for c in *chunks {
                w.data(c);
                out.extend_from_slice(c);
            }
            out.extend_from_slice(&w.end_entry());
        }
        out.extend_from_slice(&w.finish());
        out
    }

    /// Reads the central directory back (independently of the writer's bookkeeping) and checks
    /// every entry's local header offset, name, CRC and bytes.
    fn check(zip: &[u8], want: &[(&str, Vec<u8>)]) {
        let eocd = zip.len() - 22;
        assert_eq!(
            u32::from_le_bytes(zip[eocd..eocd + 4].try_into().expect("4")),
            END
        );
        let mut cd = u32::from_le_bytes(zip[eocd + 16..eocd + 20].try_into().expect("4")) as u64;
        if cd == u64::from(u32::MAX) {
            let loc = eocd - 20;
            let z64 = u64::from_le_bytes(zip[loc + 8..loc + 16].try_into().expect("8")) as usize;
            cd = u64::from_le_bytes(zip[z64 + 48..z64 + 56].try_into().expect("8"));
        }
        let mut pos = cd as usize;
        for (name, data) in want {
            assert_eq!(
                u32::from_le_bytes(zip[pos..pos + 4].try_into().expect("4")),
                CENTRAL_HEADER
            );
            let crc = u32::from_le_bytes(zip[pos + 16..pos + 20].try_into().expect("4"));
            let nlen = u16::from_le_bytes(zip[pos + 28..pos + 30].try_into().expect("2")) as usize;
            let xlen = u16::from_le_bytes(zip[pos + 30..pos + 32].try_into().expect("2")) as usize;
            let mut off = u32::from_le_bytes(zip[pos + 42..pos + 46].try_into().expect("4")) as u64;
            assert_eq!(&zip[pos + 46..pos + 46 + nlen], name.as_bytes());
            if off == u64::from(u32::MAX) {
                let x = pos + 46 + nlen;
                let flen = u16::from_le_bytes(zip[x + 2..x + 4].try_into().expect("2")) as usize;
                off =
                    u64::from_le_bytes(zip[x + 4 + flen - 8..x + 4 + flen].try_into().expect("8"));
            }
            let lh = off as usize;
            assert_eq!(
                u32::from_le_bytes(zip[lh..lh + 4].try_into().expect("4")),
                LOCAL_HEADER
            );
            let start = lh + 30 + name.len();
            assert_eq!(&zip[start..start + data.len()], &data[..]);
            assert_eq!(crc, crc32fast::hash(data), "{name}");
            pos += 46 + nlen + xlen;
        }
    }

    #[test]
    fn entries_roundtrip() {
        let a: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let zip = archive(
            ZipWriter::new(),
            &[
                ("1/2/3.dcm", &[&a[..50_000], &a[50_000..]]),
                ("1/2/4.dcm", &[b""]),
                ("1/5/6.dcm", &[b"abc"]),
            ],
        );
        check(
            &zip,
            &[
                ("1/2/3.dcm", a.clone()),
                ("1/2/4.dcm", vec![]),
                ("1/5/6.dcm", b"abc".to_vec()),
            ],
        );
        let zip64 = archive(
            ZipWriter::new_forcing_zip64(),
            &[("x.dcm", &[&a[..]]), ("y.dcm", &[b"y"])],
        );
        check(&zip64, &[("x.dcm", a), ("y.dcm", b"y".to_vec())]);
        let empty = archive(ZipWriter::new(), &[]);
        assert_eq!(empty.len(), 22);
    }
}
