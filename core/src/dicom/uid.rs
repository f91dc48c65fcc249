//! The identifiers every layer names: validated UIDs and paths to attributes inside a data
//! set. At the bottom of the core, so that the router, the layout, the index and the ingest
//! all take them from one place.

use crate::error::{Error, Result};
use std::fmt;

/// A validated DICOM UID: 1 to 64 characters, digits and dots only (PS3.5 §9.1).
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Uid(String);

impl TryFrom<String> for Uid {
    type Error = Error;
    fn try_from(s: String) -> Result<Uid> {
        Uid::parse(&s)
    }
}

impl From<Uid> for String {
    fn from(u: Uid) -> String {
        u.0
    }
}

impl Uid {
    /// Validates `s` as a UID.
    ///
    /// Components must be non-empty (so `..` or `1..2` never name a path). PS3.5 §9.1 also
    /// forbids leading zeros in a component; real archives hold such UIDs, so that rule is not
    /// enforced.
    pub fn parse(s: &str) -> Result<Uid> {
        if s.is_empty()
            || s.len() > 64
            || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            || s.split('.').any(str::is_empty)
        {
            return Err(Error::BadRequest(format!(
                "invalid UID {:?}: a UID is 1 to 64 characters of digits and dots",
                truncate_for_message(s)
            )));
        }
        Ok(Uid(s.to_owned()))
    }

    /// The UID as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A path to one attribute inside a data set: top-level tags and (1-based) item numbers of
/// sequences on the way, e.g. `00540016/1/00181072`... for nested bulk data.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributePath(pub Vec<PathStep>);

/// One step of an [`AttributePath`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathStep {
    /// An attribute, by tag (group << 16 | element).
    Tag(u32),
    /// An item of the sequence before it, 1-based.
    Item(u32),
}

impl AttributePath {
    /// Parses `GGGGEEEE[/item/GGGGEEEE]...` (item numbers 1-based).
    pub fn parse(segments: &[&str]) -> Result<AttributePath> {
        let bad = || {
            Error::BadRequest(format!(
                "invalid bulk data path {:?}: expected GGGGEEEE[/item/GGGGEEEE...]",
                truncate_for_message(&segments.join("/"))
            ))
        };
        if segments.is_empty() || segments.len() % 2 == 0 || segments.len() > 63 {
            return Err(bad());
        }
        let mut steps = Vec::with_capacity(segments.len());
        for (i, seg) in segments.iter().enumerate() {
            if i % 2 == 0 {
                if seg.len() != 8 || !seg.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad());
                }
                let tag = u32::from_str_radix(seg, 16).map_err(|_| bad())?;
                steps.push(PathStep::Tag(tag));
            } else {
                let n: u32 = parse_positive(seg).ok_or_else(bad)?;
                steps.push(PathStep::Item(n));
            }
        }
        Ok(AttributePath(steps))
    }
}

impl fmt::Display for AttributePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            match step {
                PathStep::Tag(t) => write!(f, "{t:08X}")?,
                PathStep::Item(n) => write!(f, "{n}")?,
            }
        }
        Ok(())
    }
}

/// A positive decimal integer that fits in u32 (no sign, no leading `+`).
pub(crate) fn parse_positive(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match s.parse::<u32>() {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// Cuts user input to a sane length for error messages.
pub(crate) fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        s.to_owned()
    } else {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}
