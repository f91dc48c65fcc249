//! Content negotiation (PS3.18 §8.7): the `Accept` header (RFC 7231 §5.3.2) and the `accept`
//! query parameter (§8.3.3.1), turned into an ordered list of what the client will take.
//!
//! Rules applied, each with the reason:
//! - Ranges that are not valid, or name what this resource cannot have, are ignored, not
//!   rejected: "Any Accept header field values, including media type parameters, that are not
//!   valid or not supported shall be ignored" (PS3.18 2019e §8.7.7). So OHIF's mixed
//!   `application/dicom+json, multipart/related; type=application/octet-stream` works.
//! - Parameter values may be tokens or quoted strings, "the quoted and unquoted values are
//!   equivalent" (PS3.18 ch. 6): `type=application/octet-stream` as OHIF sends it works.
//! - A `transfer-syntax` inside a quoted `type` value (`type="application/dicom;
//!   transfer-syntax=X"`, as GCP's CLI sends) is read as if it were a sibling parameter.
//! - Both spellings of the seed's old types are accepted (`image/x-dicom+rle`, `image/x-jls`).
//! - `*/*` and a `multipart/related` without `type` mean the default media type of the resource
//!   category (§8.7.7), never "whatever is stored" (cf. OHIF#3785).
//! - A missing Accept header is `*/*`, as dcm4chee and Microsoft treat it.
//! - A non-empty `accept` query parameter replaces the header (§8.3.3.1; dcm4chee does the same).

use crate::error::{Error, Result};
use crate::media::{ts, MediaType};

/// The largest Accept value we look at; anything beyond is cut (hostile input).
const MAX_ACCEPT_LEN: usize = 8 * 1024;
/// The largest number of ranges we look at.
const MAX_RANGES: usize = 64;

/// The kind of resource being negotiated, which decides the defaults and what is allowed
/// (PS3.18 Table 10.4.4-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// Study, series or instance resources; `instance` is true for a single instance, the
    /// only level where single-part `application/dicom` is allowed.
    Instances {
        /// True for an instance-level request.
        instance: bool,
    },
    /// Metadata resources.
    Metadata,
    /// Frames of an instance.
    Frames,
    /// Bulk data and pixel data resources.
    BulkData,
}

impl Category {
    /// The default media type and whether it is multipart.
    pub fn default_media(self) -> (MediaType, bool) {
        match self {
            Category::Instances { .. } => (MediaType::Dicom, true),
            Category::Metadata => (MediaType::DicomJson, false),
            Category::Frames | Category::BulkData => (MediaType::OctetStream, true),
        }
    }

    /// Whether the category can be answered with `media` (multipart or not).
    pub fn allows(self, media: MediaType, multipart: bool) -> bool {
        use MediaType as M;
        match self {
            Category::Instances { instance } => match media {
                M::Dicom => multipart || instance,
                M::Zip => !multipart,
                M::DicomJson | M::Json | M::DicomXml => false,
                _ => multipart,
            },
            Category::Metadata => match media {
                M::DicomJson | M::Json => !multipart,
                M::DicomXml => multipart,
                _ => false,
            },
            Category::Frames => media == M::OctetStream || media.is_compressed_bulk(),
            Category::BulkData => {
                media == M::OctetStream
                    || media.is_compressed_bulk()
                    || matches!(media, M::Pdf | M::TextXml)
            }
        }
    }
}

/// What the client wants for the transfer syntax of one media range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TsWanted {
    /// No `transfer-syntax` parameter: the media type's default (Table 8.7.3-5).
    Default,
    /// `transfer-syntax=*`: any, so the stored one without work (PS3.18 §8.7.3.5.2).
    Any,
    /// One named transfer syntax.
    Uid(String),
}

/// A wanted transfer syntax with the quality value of the range it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The transfer syntax wanted.
    pub ts: TsWanted,
    /// Its q-value, 0–1000 (1000 when the client gave none).
    pub q: u16,
}

impl From<TsWanted> for Wanted {
    fn from(ts: TsWanted) -> Wanted {
        Wanted { ts, q: 1000 }
    }
}

/// One acceptable representation, after expanding wildcards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The media type of the payload (of each part, when multipart).
    pub media: MediaType,
    /// True for `multipart/related; type=...`.
    pub multipart: bool,
    /// The wanted transfer syntax.
    pub ts: TsWanted,
    /// The q-value in thousandths (1..=1000).
    pub q: u16,
}

/// The outcome of negotiation: candidates in order of preference (q descending, then order of
/// appearance), restricted to what the category allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiation {
    /// The candidates, best first.
    pub candidates: Vec<Candidate>,
}

/// A media range as parsed from an Accept value, before interpretation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MediaRange {
    /// Lower-case `type/subtype`.
    pub essence: String,
    /// Parameters other than `q`, names lower-cased, values unquoted.
    pub params: Vec<(String, String)>,
    /// q-value in thousandths.
    pub q: u16,
}

impl MediaRange {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses an Accept value into media ranges, silently dropping invalid ones.
pub(crate) fn parse_accept(value: &str) -> Vec<MediaRange> {
    let value = cut(value, MAX_ACCEPT_LEN);
    split_outside_quotes(value, ',')
        .into_iter()
        .take(MAX_RANGES)
        .filter_map(parse_range)
        .collect()
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == sep && !in_quotes => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn unquote(v: &str) -> Option<String> {
    let v = v.trim();
    if let Some(inner) = v.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                out.push(chars.next()?);
            } else {
                out.push(c);
            }
        }
        Some(out)
    } else if v.is_empty() || v.bytes().any(|b| b.is_ascii_whitespace() || b == b'"') {
        // `boundary=**` and `type=application/dicom` are not strict tokens (`/`), so accept any
        // run of visible characters, as real clients send.
        None
    } else {
        Some(v.to_owned())
    }
}

fn parse_q(v: &str) -> Option<u16> {
    // RFC 7231: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn parse_range(raw: &str) -> Option<MediaRange> {
    let mut parts = split_outside_quotes(raw, ';').into_iter();
    let essence = parts.next()?.trim().to_ascii_lowercase();
    let (main, sub) = essence.split_once('/')?;
    if !is_token(main) || !is_token(sub) || (main == "*" && sub != "*") {
        return None;
    }
    let mut params = Vec::new();
    let mut q = 1000;
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let (name, value) = p.split_once('=')?;
        let name = name.trim().to_ascii_lowercase();
        if !is_token(&name) {
            return None;
        }
        let value = unquote(value)?;
        if name == "q" {
            q = parse_q(value.trim())?;
        } else {
            params.push((name, value));
        }
    }
    Some(MediaRange { essence, params, q })
}

/// The media types a `type/subtype` (possibly with wildcards) names for a category, in the
/// order we prefer to serve them.
fn expand(essence: &str, category: Category) -> Vec<MediaType> {
    use MediaType as M;
    let (default, _) = category.default_media();
    match essence {
        // The category's default type (PS3.18 §8.7.7); the caller decides whether multipart.
        "*/*" => vec![default],
        "image/*" => vec![
            M::Jpeg,
            M::Jp2,
            M::Jpx,
            M::DicomRle,
            M::Jls,
            M::Jphc,
            M::Jxl,
        ],
        "video/*" => vec![M::Mpeg, M::Mp4],
        "application/*" => match category {
            Category::Metadata => vec![M::DicomJson],
            Category::Instances { .. } => vec![M::Dicom],
            Category::Frames | Category::BulkData => vec![M::OctetStream],
        },
        "text/*" => vec![M::TextXml],
        name => MediaType::from_name(name).into_iter().collect(),
    }
}

impl Negotiation {
    /// Negotiates from the Accept header and the `accept` query parameter.
    ///
    /// Errors: 406 when nothing acceptable can be served for this category (the message lists
    /// what can be).
    pub fn new(
        accept_header: Option<&str>,
        accept_query: Option<&str>,
        category: Category,
    ) -> Result<Negotiation> {
        let source = match accept_query.map(str::trim).filter(|s| !s.is_empty()) {
            Some(q) => q,
            None => accept_header
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .unwrap_or("*/*"),
        };
        let ranges = parse_accept(source);
        let mut candidates = Vec::new();
        for range in &ranges {
            if range.q == 0 {
                continue;
            }
            let mut ts_param = range.param("transfer-syntax").map(str::to_owned);
            let (essence, multipart) = match range.essence.as_str() {
                "multipart/related" | "multipart/*" => match range.param("type") {
                    Some(t) => {
                        // Lenient: `type="application/dicom; transfer-syntax=X"`.
                        let inner = parse_range(t);
                        match inner {
                            Some(inner) => {
                                if ts_param.is_none() {
                                    ts_param = inner.param("transfer-syntax").map(str::to_owned);
                                }
                                (inner.essence, true)
                            }
                            None => continue,
                        }
                    }
                    None => ("*/*".to_owned(), true),
                },
                "*/*" => {
                    let (_, default_multipart) = category.default_media();
                    ("*/*".to_owned(), default_multipart)
                }
                other => (other.to_owned(), false),
            };
            let ts = match ts_param.as_deref().map(str::trim) {
                None | Some("") => TsWanted::Default,
                Some("*") => TsWanted::Any,
                Some(uid) if crate::dicom::uid::Uid::parse(uid).is_ok() => {
                    TsWanted::Uid(uid.to_owned())
                }
                Some(_) => continue, // an invalid parameter: ignore the range
            };
            for media in expand(&essence, category) {
                if !category.allows(media, multipart) {
                    continue;
                }
                if let TsWanted::Uid(uid) = &ts {
                    if let Some(list) = media.transfer_syntaxes() {
                        if !list.contains(&uid.as_str()) {
                            continue; // e.g. image/jpeg with a JPEG 2000 UID: not valid
                        }
                    }
                }
                let c = Candidate {
                    media,
                    multipart,
                    ts: ts.clone(),
                    q: range.q,
                };
                if !candidates.contains(&c) {
                    candidates.push(c);
                }
            }
        }
        // Stable: equal q keeps the client's order.
        candidates.sort_by_key(|c| std::cmp::Reverse(c.q));
        if candidates.is_empty() {
            return Err(Error::NotAcceptable(format!(
                "none of the acceptable media types ({}) can be served for this resource; {}",
                crate::route::truncate_for_message(source),
                available_text(category)
            )));
        }
        Ok(Negotiation { candidates })
    }

    /// The distinct (media type, multipart) pairs, best first.
    pub fn media_choices(&self) -> Vec<(MediaType, bool)> {
        let mut out: Vec<(MediaType, bool)> = Vec::new();
        for c in &self.candidates {
            if !out.contains(&(c.media, c.multipart)) {
                out.push((c.media, c.multipart));
            }
        }
        out
    }

    /// The wanted transfer syntaxes for one (media type, multipart) pair, best first, each
    /// with its q-value.
    pub fn wanted(&self, media: MediaType, multipart: bool) -> Vec<Wanted> {
        self.candidates
            .iter()
            .filter(|c| c.media == media && c.multipart == multipart)
            .map(|c| Wanted {
                ts: c.ts.clone(),
                q: c.q,
            })
            .collect()
    }
}

/// How one part will be produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    /// The transfer syntax of the part.
    pub ts: String,
    /// True when the stored bytes are sent as they are.
    pub passthrough: bool,
}

/// Picks the transfer syntax for one instance or frame.
///
/// `stored` is its stored transfer syntax; `can_produce(from, to)` says whether the core can
/// convert. PS3.18 §8.7.8: the client's quality values decide first; among ranges of equal q,
/// the stored syntax (no work, nothing lost), then lossless before lossy, then the client's
/// order. `wanted` is best first (as [`Negotiation::wanted`] gives it).
///
/// Frames and bulk data as `application/octet-stream` of an uncompressed instance are its
/// native pixel bytes in little endian whatever the file's syntax (Implicit VR, Big Endian
/// byte-swapped, Deflated inflated), so `transfer-syntax=*` there gives Explicit VR Little
/// Endian, labelled as such (cornerstone asks frames this way).
pub fn choose_ts(
    media: MediaType,
    wanted: &[Wanted],
    stored: &str,
    can_produce: impl Fn(&str, &str) -> bool,
) -> Option<Chosen> {
    let allowed = |uid: &str| {
        media
            .transfer_syntaxes()
            .is_none_or(|list| list.contains(&uid))
    };
    let native_bytes = media == MediaType::OctetStream && ts::is_native(stored);
    let stored_matches = |w: &TsWanted| match w {
        // octet-stream with `*` sends compressed stored bytes untouched, whatever they are.
        TsWanted::Any if native_bytes => stored == ts::EXPLICIT_VR_LE,
        TsWanted::Any => media == MediaType::OctetStream || allowed(stored),
        TsWanted::Uid(u) => u == stored,
        TsWanted::Default => media.default_transfer_syntax() == Some(stored),
    };
    let target = |w: &TsWanted| -> Option<String> {
        match w {
            // `*` but the stored one cannot be carried as is: the default is acceptable too.
            TsWanted::Default | TsWanted::Any => media.default_transfer_syntax().map(str::to_owned),
            TsWanted::Uid(u) => Some(u.clone()),
        }
    };
    let mut i = 0;
    while i < wanted.len() {
        let q = wanted[i].q;
        let group: Vec<&TsWanted> = wanted[i..]
            .iter()
            .take_while(|w| w.q == q)
            .map(|w| &w.ts)
            .collect();
        i += group.len();
        if group.iter().any(|w| stored_matches(w)) {
            return Some(Chosen {
                ts: stored.to_owned(),
                passthrough: true,
            });
        }
        let producible: Vec<String> = group
            .iter()
            .filter_map(|w| target(w))
            .filter(|t| allowed(t) && can_produce(stored, t))
            .collect();
        if let Some(t) = producible
            .iter()
            .find(|t| ts::is_lossless(t))
            .or(producible.first())
        {
            return Some(Chosen {
                ts: t.clone(),
                passthrough: false,
            });
        }
    }
    None
}

/// A sentence listing what the category can be served as, for 406 bodies.
pub(crate) fn available_text(category: Category) -> String {
    let list: &[&str] = match category {
        Category::Instances { instance: true } => &[
            "multipart/related; type=\"application/dicom\" (transfer-syntax=* or an uncompressed syntax)",
            "application/dicom",
            "application/zip",
        ],
        Category::Instances { instance: false } => &[
            "multipart/related; type=\"application/dicom\" (transfer-syntax=* or an uncompressed syntax)",
            "application/zip",
        ],
        Category::Metadata => &[
            "application/dicom+json",
            "application/json",
            "multipart/related; type=\"application/dicom+xml\"",
        ],
        Category::Frames => &[
            "multipart/related; type=\"application/octet-stream\"",
            "the stored compressed type with transfer-syntax=* or its own syntax",
        ],
        Category::BulkData => &[
            "multipart/related; type=\"application/octet-stream\"",
            "application/octet-stream",
        ],
    };
    format!("available: {}", list.join(", "))
}

#[cfg(test)]
mod tests;
