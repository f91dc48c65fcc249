//! A `multipart/related` body read as it arrives (STOW-RS requests, PS3.18 §10.5 and §8.6.1.2).
//!
//! [`PartReader`] is pushed the body's chunks in order ([`PartReader::feed`]) and hands back
//! events ([`PartReader::next_event`]): a part's header block, pieces of its body, its end.
//! It holds at most one header block, or one delimiter's length of a body it has not yet
//! handed back, never a whole part: the caller decides what to keep. The rules are those of
//! the whole-body parser ([`super::multipart::parse`]): a preamble may precede the first
//! delimiter, lines end in CRLF or a bare LF, the line break before a delimiter belongs to it
//! (RFC 2046 §5.1.1), transport padding after a delimiter is skipped, the epilogue ignored.

use super::multipart::ParseError;
use bytes::{Buf, Bytes, BytesMut};

/// The longest header block of one part.
const MAX_HEAD: usize = 16 << 10;
/// The most header fields of one part.
const MAX_FIELDS: usize = 100;
/// The most bytes of preamble skipped before the first delimiter.
const MAX_PREAMBLE: usize = 64 << 10;

/// What the reader found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A part begins: its header fields (names as sent, values trimmed).
    Head(Vec<(String, String)>),
    /// The next bytes of the current part's body.
    Data(Bytes),
    /// The current part ends.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// Just after a delimiter: the closing `--`, or padding and a line break.
    Delimiter,
    /// In a part's header block.
    Head,
    /// In a part's body.
    Body,
    /// After the closing delimiter.
    Closed,
}

/// An incremental `multipart/related` reader (see the module).
#[derive(Debug)]
pub struct PartReader {
    /// `\n--boundary`: the line break is the part's end; a CR before it is dropped too.
    delimiter: Vec<u8>,
    buf: BytesMut,
    state: State,
    /// Bytes of preamble skipped so far.
    skipped: usize,
    /// The body's end was given ([`PartReader::finish`]).
    ended: bool,
}

impl PartReader {
    /// A reader for the parts of a body whose Content-Type has this boundary.
    pub fn new(boundary: &str) -> PartReader {
        let mut delimiter = b"\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        PartReader {
            delimiter,
            buf: BytesMut::new(),
            state: State::Preamble,
            skipped: 0,
            ended: false,
        }
    }

    /// The next bytes of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.state != State::Closed {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// The body ends here: what is buffered is all there is.
    pub fn finish(&mut self) {
        self.ended = true;
    }

    /// True once the closing delimiter was read.
    pub fn closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The next event, `Ok(None)` when more input is needed (or, after [`PartReader::finish`]
    /// and the closing delimiter, when there is nothing more). A body that ends before its
    /// closing delimiter is [`ParseError::Truncated`].
    pub fn next_event(&mut self) -> Result<Option<Event>, ParseError> {
        loop {
            match self.state {
                State::Closed => return Ok(None),
                State::Preamble => {
                    // The opening delimiter: at the very start, or after a line break.
                    let dash = &self.delimiter[1..];
                    if self.skipped == 0 && self.buf.starts_with(dash) {
                        self.buf.advance(dash.len());
                        self.state = State::Delimiter;
                        continue;
                    }
                    if self.skipped == 0 && dash.starts_with(&self.buf) && !self.ended {
                        return Ok(None);
                    }
                    match memchr::memmem::find(&self.buf, &self.delimiter) {
                        Some(i) => {
                            self.buf.advance(i + self.delimiter.len());
                            self.state = State::Delimiter;
                        }
                        None => {
                            let keep = self.delimiter.len() - 1;
                            let drop = self.buf.len().saturating_sub(keep);
                            self.skipped += drop.max(1);
                            self.buf.advance(drop);
                            if self.skipped > MAX_PREAMBLE || self.ended {
                                return Err(ParseError::NoOpeningDelimiter);
                            }
                            return Ok(None);
                        }
                    }
                }
                State::Delimiter => {
                    if self.buf.len() < 2 {
                        return self.more();
                    }
                    if self.buf.starts_with(b"--") {
                        self.state = State::Closed;
                        self.buf = BytesMut::new();
                        return Ok(None);
                    }
                    let pad = self.buf.iter().take_while(|&&b| b == b' ' || b == b'\t');
                    let pad = pad.count();
                    let rest = &self.buf[pad..];
                    let line = if rest.starts_with(b"\r\n") {
                        2
                    } else if rest.starts_with(b"\n") {
                        1
                    } else if rest.is_empty() || rest == b"\r" {
                        if pad > MAX_HEAD {
                            return Err(ParseError::BadHeaders);
                        }
                        return self.more();
                    } else {
                        return Err(ParseError::BadHeaders);
                    };
                    self.buf.advance(pad + line);
                    self.state = State::Head;
                }
                State::Head => {
                    let Some((fields, len)) = head_block(&self.buf)? else {
                        if self.buf.len() > MAX_HEAD {
                            return Err(ParseError::BadHeaders);
                        }
                        return self.more();
                    };
                    self.buf.advance(len);
                    self.state = State::Body;
                    return Ok(Some(Event::Head(fields)));
                }
                State::Body => {
                    if let Some(i) = memchr::memmem::find(&self.buf, &self.delimiter) {
                        let end = if i > 0 && self.buf[i - 1] == b'\r' {
                            i - 1
                        } else {
                            i
                        };
                        if end > 0 {
                            let data = self.buf.split_to(end).freeze();
                            return Ok(Some(Event::Data(data)));
                        }
                        self.buf.advance(i - end + self.delimiter.len());
                        self.state = State::Delimiter;
                        return Ok(Some(Event::End));
                    }
                    // All but what could begin a delimiter (a CR and the delimiter less one).
                    let hold = self.delimiter.len();
                    if self.buf.len() > hold {
                        let data = self.buf.split_to(self.buf.len() - hold).freeze();
                        return Ok(Some(Event::Data(data)));
                    }
                    return self.more();
                }
            }
        }
    }

    /// More input is needed: none when the body has ended.
    fn more(&self) -> Result<Option<Event>, ParseError> {
        if self.ended {
            Err(ParseError::Truncated)
        } else {
            Ok(None)
        }
    }
}

/// A complete header block at the start of `b`: its fields and its length (the blank line
/// included), or `None` when it is not all there yet.
fn head_block(b: &[u8]) -> Result<Option<(Vec<(String, String)>, usize)>, ParseError> {
    let mut fields = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = memchr::memchr(b'\n', &b[pos..]).map(|i| i + pos) else {
            return Ok(None);
        };
        let line = &b[pos..eol];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos = eol + 1;
        if line.is_empty() {
            return Ok(Some((fields, pos)));
        }
        let line = std::str::from_utf8(line).map_err(|_| ParseError::BadHeaders)?;
        let (name, value) = line.split_once(':').ok_or(ParseError::BadHeaders)?;
        fields.push((name.trim().to_owned(), value.trim().to_owned()));
        if fields.len() > MAX_FIELDS {
            return Err(ParseError::BadHeaders);
        }
    }
}

/// The first field named `name` (case-insensitive) of a header block.
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::wire::multipart;

    /// Every part (headers, whole body) of `body` fed in chunks of `step` bytes.
    fn read(
        boundary: &str,
        body: &[u8],
        step: usize,
    ) -> Result<Vec<(Vec<(String, String)>, Vec<u8>)>, ParseError> {
        let mut r = PartReader::new(boundary);
        let mut parts: Vec<(Vec<(String, String)>, Vec<u8>)> = Vec::new();
        let mut open = false;
        let mut chunks = body.chunks(step.max(1)).peekable();
        loop {
            match chunks.next() {
                Some(c) => r.feed(c),
                None => r.finish(),
            }
            while let Some(e) = r.next_event()? {
                match e {
                    Event::Head(h) => {
                        assert!(!open, "a part begins inside another");
                        open = true;
                        parts.push((h, Vec::new()));
                    }
                    Event::Data(d) => {
                        assert!(open, "data outside a part");
                        assert!(!d.is_empty(), "empty data events");
                        parts.last_mut().unwrap().1.extend_from_slice(&d);
                    }
                    Event::End => {
                        assert!(open);
                        open = false;
                    }
                }
            }
            if chunks.peek().is_none() && r.ended {
                assert!(r.closed());
                return Ok(parts);
            }
        }
    }

    /// The whole-body parser is the oracle: every split of every body gives its parts.
    #[test]
    fn every_split_gives_what_the_whole_body_parser_reads() {
        let bodies: Vec<&[u8]> = vec![
            b"--b\r\nContent-Type: application/dicom\r\n\r\nABC\r\n--b\r\nContent-Type: x\r\n\r\n\r\n--b--\r\n",
            b"preamble\r\nmore\n--b\nContent-Type: a/b\nX: y\n\nline\r\nline\n--cx\r\n\r\n--b  \r\n\r\n\r\r\n--b--",
            b"--b\r\n\r\n\r\n--b\r\n\r\n--b\r\n--b--epilogue",
            b"\r\n--b\r\nA: 1\r\n\r\n\x00\xff\r\r\n-\n--\n--c\r\n--b--\r\n",
        ];
        for body in bodies {
            let want = multipart::parse("b", body).unwrap();
            for step in 1..=body.len() {
                let got = read("b", body, step).unwrap_or_else(|e| {
                    panic!("{e} at step {step} of {:?}", String::from_utf8_lossy(body))
                });
                assert_eq!(got.len(), want.len(), "step {step}");
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.1, w.body, "step {step}");
                    let heads: Vec<(&str, &str)> =
                        g.0.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                    assert_eq!(heads, w.headers, "step {step}");
                }
            }
        }
    }

    #[test]
    fn large_parts_come_in_pieces_without_the_whole_part_held() {
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut body = b"--bb\r\nContent-Type: application/dicom\r\n\r\n".to_vec();
        body.extend_from_slice(&payload);
        body.extend_from_slice(b"\r\n--bb--\r\n");
        let mut r = PartReader::new("bb");
        let mut got = Vec::new();
        for c in body.chunks(65536) {
            r.feed(c);
            while let Some(e) = r.next_event().unwrap() {
                if let Event::Data(d) = e {
                    got.extend_from_slice(&d);
                }
            }
            assert!(r.buf.len() <= 65536 + 64, "buffered {}", r.buf.len());
        }
        r.finish();
        assert_eq!(r.next_event().unwrap(), None);
        assert_eq!(got, payload);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for (body, want) in [
            (&b"no delimiter at all"[..], ParseError::NoOpeningDelimiter),
            (b"", ParseError::NoOpeningDelimiter),
            (b"--b\r\nContent-Type: x\r\n\r\nabc", ParseError::Truncated),
            (b"--b\r\nContent-Type: x\r\n", ParseError::Truncated),
            (
                b"--b\r\nno colon\r\n\r\nabc\r\n--b--",
                ParseError::BadHeaders,
            ),
            (b"--bjunk\r\n\r\nabc\r\n--b--", ParseError::BadHeaders),
        ] {
            for step in [1, 3, 1000] {
                assert_eq!(read("b", body, step), Err(want.clone()), "{body:?} {step}");
            }
        }
        let mut r = PartReader::new("b");
        r.feed(b"--b\r\n");
        r.feed(&vec![b'x'; MAX_HEAD + 10]);
        assert_eq!(r.next_event(), Err(ParseError::BadHeaders));
    }
}
