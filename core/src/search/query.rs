//! A QIDO-RS query string parsed and checked (PS3.18 §8.3.4, matching as PS3.4 C.2.2.2):
//! engine-independent, so every index answers the same question.

use super::attrs::{self, Key, Kind};
use crate::dicom::uid::Uid;
use crate::error::{Error, Result};
use crate::route::percent_decode;
pub use crate::route::{Level, Scope};
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_dictionary_std::StandardDataDictionary;

/// The most values one matching key may list (`\`- or comma-separated): a list of UIDs a
/// viewer opens at once fits many times over.
pub const MAX_VALUES: usize = 1000;
/// The most wildcard patterns (values with `*` or `?`, and fuzzy words) of one search, all
/// keys together: each is matched against every candidate row, so they bound its cost.
pub const MAX_PATTERNS: usize = 32;
/// The most bytes of one value (DICOM's matching keys hold at most 64 characters, person
/// names three groups of 64).
pub const MAX_VALUE_BYTES: usize = 256;
/// The most wildcard characters (`*`, `?`) in one pattern (runs of `*` count once).
pub const MAX_WILDCARDS: usize = 8;
/// The deepest `offset`: the index walks every row it skips. Narrow the search (by date,
/// say) to page further.
pub const MAX_OFFSET: usize = 100_000;

/// (0020,000D) Study Instance UID.
const STUDY_INSTANCE_UID: u32 = 0x0020_000D;

/// One alternative of a value to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// The whole value.
    Exact(String),
    /// With `*` (any run) and `?` (any one character).
    Wildcard(String),
}

/// How one matching key's column is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Any of these (a UID list, a `\`-separated list, or one value).
    Any(Vec<Pattern>),
    /// A date or time range, bounds inclusive and normalised (`None`: open).
    Range(Option<String>, Option<String>),
    /// An integer.
    Int(i64),
    /// Fuzzy person name: each word a prefix of some word of the name (folded).
    Words(Vec<String>),
}

/// A condition on one matching key.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The key.
    pub key: &'static Key,
    /// How its column is matched.
    pub matcher: Matcher,
}

/// Which attributes to return besides the level's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Include {
    /// The defaults and these tags.
    Tags(Vec<u32>),
    /// Every attribute the index holds for the level (`includefield=all`).
    All,
}

/// A parsed QIDO-RS search.
#[derive(Debug, Clone)]
pub struct Query {
    /// What is returned.
    pub level: Level,
    /// What the path restricts it to.
    pub scope: Scope,
    /// Matching conditions, all of which must hold.
    pub conditions: Vec<Condition>,
    /// Attributes returned beyond the defaults.
    pub include: Include,
    /// `fuzzymatching=true`.
    pub fuzzy: bool,
    /// `limit`, when given.
    pub limit: Option<usize>,
    /// `offset`.
    pub offset: usize,
    /// Parameters ignored, for `Warning: 299` (PS3.18 §8.3.4.1 lets a server ignore keys it
    /// does not support, and says so).
    pub warnings: Vec<String>,
}

/// The tag named by a keyword (`PatientName`) or as `GGGGEEEE`.
fn tag_of(name: &str) -> Option<u32> {
    if name.len() == 8 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return u32::from_str_radix(name, 16).ok();
    }
    let e = StandardDataDictionary.by_name(name)?;
    let t = e.tag();
    Some((u32::from(t.group()) << 16) | u32::from(t.element()))
}

impl Query {
    /// Parses a query string for a search at `level` within `scope`. Malformed values, unknown
    /// parameter names and attributes that are not DICOM attributes are 400.
    pub fn parse(level: Level, scope: Scope, query: Option<&str>) -> Result<Query> {
        let mut pairs = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = || {
                Error::BadRequest(format!(
                    "query parameter {pair:?} is not percent-encoded UTF-8"
                ))
            };
            pairs.push((
                percent_decode(k).ok_or_else(bad)?,
                percent_decode(v).ok_or_else(bad)?,
            ));
        }
        Query::from_pairs(level, scope, pairs)
    }

    /// [`Query::parse`] of decoded `(name, value)` pairs: what a C-FIND identifier's keys
    /// become (tags as `GGGGEEEE`, values as DICOM writes them), so that DIMSE and QIDO-RS
    /// share one query model and one set of matching rules.
    pub fn from_pairs(
        level: Level,
        scope: Scope,
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Query> {
        let mut q = Query {
            level,
            scope,
            conditions: Vec::new(),
            include: Include::Tags(Vec::new()),
            fuzzy: false,
            limit: None,
            offset: 0,
            warnings: Vec::new(),
        };
        let mut seen: Vec<u32> = Vec::new();
        let mut matches: Vec<(&'static Key, String)> = Vec::new();
        for (name, value) in pairs {
            match name.as_str() {
                "limit" | "offset" => {
                    let n: usize = value.trim().parse().map_err(|_| {
                        Error::BadRequest(format!("{name}={value:?} is not a whole number"))
                    })?;
                    if name == "offset" && n > MAX_OFFSET {
                        return Err(Error::BadRequest(format!(
                            "offset={n}: this server pages at most {MAX_OFFSET} results deep; narrow the search (a date range, a patient) to see further"
                        )));
                    }
                    if name == "limit" {
                        if n == 0 {
                            return Err(Error::BadRequest(
                                "limit=0: the limit is a positive number".into(),
                            ));
                        }
                        q.limit = Some(n);
                    } else {
                        q.offset = n;
                    }
                }
                "fuzzymatching" => {
                    q.fuzzy = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(Error::BadRequest(format!(
                                "fuzzymatching={value:?}: the value is true or false"
                            )))
                        }
                    }
                }
                "includefield" => {
                    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        if item == "all" {
                            q.include = Include::All;
                            continue;
                        }
                        let tag = tag_of(item).ok_or_else(|| {
                            Error::BadRequest(format!(
                                "includefield {item:?} is neither a DICOM keyword nor a tag GGGGEEEE"
                            ))
                        })?;
                        q.include_tag(tag);
                    }
                }
                // Negotiation reads these; `charset` is about the response, and ours is UTF-8.
                "accept" | "charset" => {}
                attribute => {
                    if attribute.contains('.') {
                        // A sequence path (PS3.18 §8.3.4.1): not matched here.
                        let first = attribute.split('.').next().unwrap_or("");
                        if tag_of(first).is_none() {
                            return Err(unknown(attribute));
                        }
                        q.warnings.push(format!(
                            "The attribute {attribute} is a sequence path; it was ignored: sequence matching is not supported"
                        ));
                        continue;
                    }
                    let tag = tag_of(attribute).ok_or_else(|| unknown(attribute))?;
                    if seen.contains(&tag) {
                        return Err(Error::BadRequest(format!(
                            "{attribute} is given twice; list several values in one parameter"
                        )));
                    }
                    seen.push(tag);
                    if value.is_empty() {
                        // An empty value asks for the attribute back (a return key).
                        q.include_tag(tag);
                        continue;
                    }
                    match attrs::matching_key(tag) {
                        Some(key) if key.level <= level => matches.push((key, value)),
                        _ => q.warnings.push(format!(
                            "The attribute {attribute} is not supported as a matching key at this level; it was ignored"
                        )),
                    }
                }
            }
        }
        let mut patterns = 0usize;
        for (key, value) in matches {
            q.include_tag(key.tag);
            check_value(key, &value)?;
            if let Some(matcher) = matcher(key, &value, q.fuzzy)? {
                patterns += match &matcher {
                    Matcher::Any(list) => {
                        if list.len() > MAX_VALUES {
                            return Err(Error::BadRequest(format!(
                                "{} lists {} values; a search takes at most {MAX_VALUES} of one key",
                                key.keyword,
                                list.len()
                            )));
                        }
                        list.iter()
                            .filter(|p| matches!(p, Pattern::Wildcard(_)))
                            .count()
                    }
                    Matcher::Words(words) => words.len(),
                    Matcher::Range(..) | Matcher::Int(_) => 0,
                };
                q.conditions.push(Condition { key, matcher });
            }
        }
        if patterns > MAX_PATTERNS {
            return Err(Error::BadRequest(format!(
                "the search holds {patterns} wildcard patterns or fuzzy words; this server takes at most {MAX_PATTERNS} in one search"
            )));
        }
        Ok(q)
    }

    /// Confines the search to these studies (a token's reach, [`crate::auth::Reach`]): one
    /// more condition, on the Study Instance UID, besides the client's own; none listed finds
    /// nothing.
    pub fn confine_to_studies(&mut self, studies: &[String]) -> Result<()> {
        let key = attrs::matching_key(STUDY_INSTANCE_UID).ok_or_else(|| {
            Error::Index(crate::error::IndexError::new(
                "the Study Instance UID is not a matching key",
            ))
        })?;
        let mut list: Vec<Pattern> = studies.iter().cloned().map(Pattern::Exact).collect();
        if list.is_empty() {
            // No stored study has an empty UID.
            list.push(Pattern::Exact(String::new()));
        }
        self.conditions.push(Condition {
            key,
            matcher: Matcher::Any(list),
        });
        Ok(())
    }

    fn include_tag(&mut self, tag: u32) {
        if let Include::Tags(list) = &mut self.include {
            if !list.contains(&tag) {
                list.push(tag);
            }
        }
    }
}

fn unknown(name: &str) -> Error {
    Error::BadRequest(format!(
        "query parameter {name:?} is not a DICOM attribute (keyword or tag GGGGEEEE) nor one of limit, offset, includefield, fuzzymatching"
    ))
}

/// What every value of a matching key must be: of a bounded length, without control
/// characters (none of the matching keys' VRs holds one), with few wildcards per pattern.
fn check_value(key: &Key, value: &str) -> Result<()> {
    if value.len() > MAX_VALUES * MAX_VALUE_BYTES {
        return Err(Error::BadRequest(format!(
            "the value of {} is {} bytes long; too long to be a list of values",
            key.keyword,
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::BadRequest(format!(
            "the value of {} holds a control character, which no matching key's value has",
            key.keyword
        )));
    }
    let separators: &[char] = if key.kind == Kind::Uid {
        &['\\', ',']
    } else {
        &['\\']
    };
    for v in value.split(separators) {
        if v.len() > MAX_VALUE_BYTES {
            return Err(Error::BadRequest(format!(
                "a value of {} is {} bytes long; values are at most {MAX_VALUE_BYTES}",
                key.keyword,
                v.len()
            )));
        }
        let mut wildcards = 0;
        let mut last = ' ';
        for c in v.chars() {
            if c == '?' || (c == '*' && last != '*') {
                wildcards += 1;
            }
            last = c;
        }
        if wildcards > MAX_WILDCARDS {
            return Err(Error::BadRequest(format!(
                "a value of {} holds {wildcards} wildcards; a pattern takes at most {MAX_WILDCARDS}",
                key.keyword
            )));
        }
    }
    Ok(())
}

fn patterns(value: &str, map: impl Fn(&str) -> String) -> Matcher {
    Matcher::Any(
        value
            .split('\\')
            .map(|v| {
                let mut v = map(v);
                while v.contains("**") {
                    v = v.replace("**", "*");
                }
                if v.contains(['*', '?']) {
                    Pattern::Wildcard(v)
                } else {
                    Pattern::Exact(v)
                }
            })
            .collect(),
    )
}

/// The matcher of one key's value (`None`: matches everything).
fn matcher(key: &Key, value: &str, fuzzy: bool) -> Result<Option<Matcher>> {
    if value == "*" {
        return Ok(None);
    }
    let bad = |what: &str| Error::BadRequest(format!("{}={value:?} is not {what}", key.keyword));
    Ok(Some(match key.kind {
        Kind::Uid => {
            let uids = value
                .split([',', '\\'])
                .map(|u| {
                    Uid::parse(u.trim())
                        .map(|u| Pattern::Exact(u.as_str().to_owned()))
                        .map_err(|_| bad("a UID or a comma-separated list of UIDs"))
                })
                .collect::<Result<Vec<_>>>()?;
            Matcher::Any(uids)
        }
        Kind::Date => match value.split_once('-') {
            Some((a, b)) => {
                let side = |s: &str| -> Result<Option<String>> {
                    if s.trim().is_empty() {
                        return Ok(None);
                    }
                    attrs::normalise_date(s)
                        .map(Some)
                        .ok_or_else(|| bad("a date YYYYMMDD or a range of dates A-B, A-, -B"))
                };
                let (a, b) = (side(a)?, side(b)?);
                if a.is_none() && b.is_none() {
                    return Err(bad("a date range with at least one bound"));
                }
                Matcher::Range(a, b)
            }
            None => Matcher::Any(vec![Pattern::Exact(
                attrs::normalise_date(value).ok_or_else(|| bad("a date YYYYMMDD"))?,
            )]),
        },
        Kind::Time => {
            let (a, b) = value.split_once('-').unwrap_or((value, value));
            let side = |s: &str, upper: bool| -> Result<Option<String>> {
                if s.trim().is_empty() {
                    return Ok(None);
                }
                attrs::normalise_time(s, upper)
                    .map(Some)
                    .ok_or_else(|| bad("a time HHMMSS or a range of times A-B, A-, -B"))
            };
            let (a, b) = (side(a, false)?, side(b, true)?);
            if a.is_none() && b.is_none() {
                return Err(bad("a time range with at least one bound"));
            }
            Matcher::Range(a, b)
        }
        Kind::Int => Matcher::Int(value.trim().parse().map_err(|_| bad("an integer"))?),
        Kind::PersonName if fuzzy => {
            let words: Vec<String> = attrs::words(value)
                .split(' ')
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect();
            if words.is_empty() {
                return Ok(None);
            }
            Matcher::Words(words)
        }
        Kind::PersonName => patterns(value, attrs::fold),
        Kind::Text | Kind::Modalities => patterns(value, str::to_owned),
    }))
}
