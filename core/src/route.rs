//! The request model: a path under the service root, parsed into a typed [`Resource`].
//!
//! The service root is `/dcm4chee-arc/aets/{AETitle}/rs` (the seed's endpoint). Everything after
//! it is a WADO-RS resource path (PS3.18 §10.4.1). UIDs are validated here (PS3.5 §9.1: 1 to 64
//! characters of digits and dots), so nothing that reaches storage is ever an arbitrary string:
//! a path that is not a resource is a 400 or a 404, never a file-system path.

use crate::dicom::uid::parse_positive;
pub(crate) use crate::dicom::uid::truncate_for_message;
pub use crate::dicom::uid::Uid;
pub(crate) use crate::dicom::uid::{AttributePath, PathStep};
use crate::error::{Error, Result};

/// A level of the DICOM information model a search (QIDO-RS) returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Studies (Patient and Study attributes).
    Study,
    /// Series.
    Series,
    /// Instances.
    Instance,
}

/// What a search URL's path restricts it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `{root}/studies`, `{root}/series`, `{root}/instances`.
    All,
    /// `{root}/studies/{study}/series`, `{root}/studies/{study}/instances`.
    Study(Uid),
    /// `{root}/studies/{study}/series/{series}/instances`.
    Series(Uid, Uid),
}

/// A percent-decoded query parameter name or value (`+` is a space); `None` when not UTF-8
/// or a `%` escape is malformed.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The fixed prefix of the service root; the AE title follows it.
pub(crate) const SERVICE_PREFIX: &str = "/dcm4chee-arc/aets/";

/// Which level of the information model a resource addresses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// `studies/{study}`
    Study {
        /// Study Instance UID.
        study: Uid,
    },
    /// `studies/{study}/series/{series}`
    Series {
        /// Study Instance UID.
        study: Uid,
        /// Series Instance UID.
        series: Uid,
    },
    /// `studies/{study}/series/{series}/instances/{instance}`
    Instance {
        /// Study Instance UID.
        study: Uid,
        /// Series Instance UID.
        series: Uid,
        /// SOP Instance UID.
        instance: Uid,
    },
}

impl Target {
    /// (study, series, instance) UIDs: the series and instance when the target names them.
    pub fn uids(&self) -> (&Uid, Option<&Uid>, Option<&Uid>) {
        match self {
            Target::Study { study } => (study, None, None),
            Target::Series { study, series } => (study, Some(series), None),
            Target::Instance {
                study,
                series,
                instance,
            } => (study, Some(series), Some(instance)),
        }
    }

    /// The Study Instance UID.
    pub fn study(&self) -> &Uid {
        match self {
            Target::Study { study }
            | Target::Series { study, .. }
            | Target::Instance { study, .. } => study,
        }
    }

    /// The resource path relative to the service root, without a leading slash.
    pub fn path(&self) -> String {
        match self {
            Target::Study { study } => format!("studies/{study}"),
            Target::Series { study, series } => format!("studies/{study}/series/{series}"),
            Target::Instance {
                study,
                series,
                instance,
            } => {
                format!("studies/{study}/series/{series}/instances/{instance}")
            }
        }
    }
}

/// A WADO-RS resource (PS3.18 Table 10.4.1-1 and -2, plus CP 2040's `pixeldata`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// The instances of a study, series or one instance.
    Instances(Target),
    /// The metadata of a study, series or instance.
    Metadata(Target),
    /// Frames of an instance, 1-based, in request order, without duplicates.
    Frames {
        /// The instance.
        target: Target,
        /// Frame numbers.
        frames: Vec<u32>,
    },
    /// One bulk data value of an instance, as named in a BulkDataURI.
    BulkData {
        /// The instance.
        target: Target,
        /// The attribute.
        path: AttributePath,
    },
    /// The Pixel Data of an instance (CP 2040), the same bytes as its `7FE00010` bulk data.
    PixelData(Target),
    /// `{study, series, instance}/rendered` and `.../frames/{list}/rendered` (PS3.18
    /// §10.4.1.1.3), and the same with `/thumbnail` (Table 10.4.1-3; §8.3.5): images
    /// made for a screen; a video instance rendered is its video.
    Rendered {
        /// The study, series or instance.
        target: Target,
        /// The frames, for `.../frames/{list}/rendered`.
        frames: Option<Vec<u32>>,
        /// `/thumbnail` rather than `/rendered`.
        thumbnail: bool,
    },
    /// QIDO-RS Search (PS3.18 §10.6): `{root}/studies`, `{root}/series`, `{root}/instances`,
    /// `{root}/studies/{s}/series`, `{root}/studies/{s}/instances`,
    /// `{root}/studies/{s}/series/{se}/instances`.
    Search {
        /// What is returned.
        level: Level,
        /// What the path restricts it to.
        scope: Scope,
    },
    /// The change feed (docs/LIFECYCLE.md): `{root}/changefeed` (its rows after a sequence
    /// number) and `{root}/changefeed/latest` (its last row).
    ChangeFeed {
        /// `/latest`.
        latest: bool,
    },
    /// The versions of an instance the store keeps (docs/LIFECYCLE.md):
    /// `.../instances/{i}/versions` lists them, `.../instances/{i}/versions/{gen}` is one, as
    /// stored.
    Versions {
        /// The instance.
        target: Target,
        /// The version (generation), for one.
        version: Option<String>,
    },
    /// `POST {root}/studies/{s}/share`: a share link to the study (docs/AUTH.md).
    Share {
        /// The study.
        study: Uid,
    },
}

impl Resource {
    /// The target (study, series or instance) of the resource, if it has one.
    pub fn target(&self) -> Option<&Target> {
        match self {
            Resource::Instances(t)
            | Resource::Metadata(t)
            | Resource::PixelData(t)
            | Resource::Rendered { target: t, .. }
            | Resource::Frames { target: t, .. }
            | Resource::BulkData { target: t, .. } => Some(t),
            // Kept versions are this store's own: nothing to fetch for them.
            Resource::Search { .. }
            | Resource::ChangeFeed { .. }
            | Resource::Versions { .. }
            | Resource::Share { .. } => None,
        }
    }
}

/// A request path split into the AE title and the resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The AE title between `/aets/` and `/rs`.
    pub ae_title: String,
    /// The resource under the service root.
    pub resource: Resource,
}

/// The largest number of frames one request may name. A million-number frame list is an attack,
/// not a viewer: the largest multi-frame objects (whole-slide tiles) have some 10^5 frames.
pub(crate) const MAX_FRAMES_PER_REQUEST: usize = 100_000;

/// The study a STOW-RS request stores into, when `resource` is one (PS3.18 §10.5:
/// `{root}/studies` → `Some(None)`, `{root}/studies/{study}` → `Some(Some(study))`); `None`
/// for every other resource, which takes no request body.
pub(crate) fn store_target(resource: &Resource) -> Option<Option<Uid>> {
    match resource {
        Resource::Search {
            level: Level::Study,
            scope: Scope::All,
        } => Some(None),
        Resource::Instances(Target::Study { study }) => Some(Some(study.clone())),
        _ => None,
    }
}

/// Whether a request with this method and path has a body the core reads (STOW-RS, and a
/// correction's PATCH): a frontend hands the body over for these only, and leaves every other
/// one untouched.
pub fn reads_body(method: &http::Method, path: &str) -> bool {
    match *method {
        http::Method::POST => {
            matches!(parse_path(path), Ok(Some(r)) if store_target(&r.resource).is_some())
        }
        http::Method::PATCH => matches!(
            parse_path(path),
            Ok(Some(Route {
                resource: Resource::Instances(Target::Study { .. }),
                ..
            }))
        ),
        _ => false,
    }
}

/// Parses an absolute request path (without query string, still percent-encoded).
///
/// Returns `Ok(None)` when the path is not under the service prefix at all (the frontend may
/// serve other things there); `Err(BadRequest)` for malformed UIDs or frame lists;
/// `Err(NotFound)` for paths under the service root that name no resource.
pub fn parse_path(path: &str) -> Result<Option<Route>> {
    let Some(rest) = path.strip_prefix(SERVICE_PREFIX) else {
        return Ok(None);
    };
    // `%2C` is the one escape WADO-RS paths use (frame lists); any other escape, an encoded
    // slash above all, is not part of a resource path.
    let decoded;
    let rest = if rest.contains('%') {
        decoded = decode_commas(rest)?;
        decoded.as_str()
    } else {
        rest
    };
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.len() < 2 || segments[1] != "rs" {
        return Err(Error::NotFound("not a WADO-RS service root".into()));
    }
    let ae_title = segments[0];
    if ae_title.is_empty()
        || ae_title.len() > 16
        || !ae_title.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
    {
        return Err(Error::NotFound(format!(
            "unknown AE title {:?}",
            truncate_for_message(ae_title)
        )));
    }
    let mut segs = &segments[2..];
    // Tolerate one trailing slash.
    if let Some((last, init)) = segs.split_last() {
        if last.is_empty() && !init.is_empty() {
            segs = init;
        }
    }
    let resource = parse_resource(segs)?;
    Ok(Some(Route {
        ae_title: ae_title.to_owned(),
        resource,
    }))
}

fn parse_resource(segs: &[&str]) -> Result<Resource> {
    let not_found = || {
        Error::NotFound(format!(
            "no WADO-RS resource at {:?}",
            truncate_for_message(&segs.join("/"))
        ))
    };
    let search = |level, scope| Ok(Resource::Search { level, scope });
    match segs {
        ["studies"] => return search(Level::Study, Scope::All),
        ["series"] => return search(Level::Series, Scope::All),
        ["instances"] => return search(Level::Instance, Scope::All),
        ["changefeed"] => return Ok(Resource::ChangeFeed { latest: false }),
        ["changefeed", "latest"] => return Ok(Resource::ChangeFeed { latest: true }),
        ["studies", s, "share"] => {
            return Ok(Resource::Share {
                study: Uid::parse(s)?,
            })
        }
        ["studies", s, "series"] => return search(Level::Series, Scope::Study(Uid::parse(s)?)),
        ["studies", s, "instances"] => {
            return search(Level::Instance, Scope::Study(Uid::parse(s)?))
        }
        ["studies", s, "series", se, "instances"] => {
            return search(
                Level::Instance,
                Scope::Series(Uid::parse(s)?, Uid::parse(se)?),
            )
        }
        _ => {}
    }
    if segs.len() < 2 || segs[0] != "studies" {
        return Err(not_found());
    }
    let study = Uid::parse(segs[1])?;
    let mut target = Target::Study { study };
    let mut rest = &segs[2..];
    if rest.len() >= 2 && rest[0] == "series" {
        let series = Uid::parse(rest[1])?;
        target = Target::Series {
            study: target.study().clone(),
            series,
        };
        rest = &rest[2..];
        if rest.len() >= 2 && rest[0] == "instances" {
            let instance = Uid::parse(rest[1])?;
            let (study, series) = match target {
                Target::Series { study, series } => (study, series),
                _ => unreachable!("target was just set to a series"),
            };
            target = Target::Instance {
                study,
                series,
                instance,
            };
            rest = &rest[2..];
        }
    }
    match rest {
        [] => Ok(Resource::Instances(target)),
        ["metadata"] => Ok(Resource::Metadata(target)),
        ["pixeldata"] if matches!(target, Target::Instance { .. }) => {
            Ok(Resource::PixelData(target))
        }
        [kind @ ("rendered" | "thumbnail")] => Ok(Resource::Rendered {
            target,
            frames: None,
            thumbnail: *kind == "thumbnail",
        }),
        ["frames", list] if matches!(target, Target::Instance { .. }) => Ok(Resource::Frames {
            target,
            frames: parse_frame_list(list)?,
        }),
        ["frames", list, kind @ ("rendered" | "thumbnail")]
            if matches!(target, Target::Instance { .. }) =>
        {
            Ok(Resource::Rendered {
                target,
                frames: Some(parse_frame_list(list)?),
                thumbnail: *kind == "thumbnail",
            })
        }
        ["versions"] if matches!(target, Target::Instance { .. }) => Ok(Resource::Versions {
            target,
            version: None,
        }),
        ["versions", gen] if matches!(target, Target::Instance { .. }) => Ok(Resource::Versions {
            target,
            version: Some((*gen).to_owned()),
        }),
        ["bulkdata", path @ ..]
            if matches!(target, Target::Instance { .. }) && !path.is_empty() =>
        {
            Ok(Resource::BulkData {
                target,
                path: AttributePath::parse(path)?,
            })
        }
        _ => Err(not_found()),
    }
}

/// Parses a frame list: 1-based numbers separated by commas, no duplicates (PS3.18 §10.4.1.1.2
/// and 2017b §6.5.4). Zero, duplicates, non-numbers and overlong lists are 400.
pub fn parse_frame_list(list: &str) -> Result<Vec<u32>> {
    if list.is_empty() {
        return Err(Error::BadRequest("empty frame list".into()));
    }
    let count = list.bytes().filter(|&b| b == b',').count() + 1;
    if count > MAX_FRAMES_PER_REQUEST {
        return Err(Error::BadRequest(format!(
            "frame list names {count} frames; at most {MAX_FRAMES_PER_REQUEST} per request"
        )));
    }
    let mut frames = Vec::with_capacity(count);
    let mut seen = std::collections::HashSet::with_capacity(count);
    for item in list.split(',') {
        let Some(n) = parse_positive(item.trim()) else {
            return Err(Error::BadRequest(format!(
                "invalid frame number {:?}: frame numbers are integers from 1",
                truncate_for_message(item)
            )));
        };
        if !seen.insert(n) {
            return Err(Error::BadRequest(format!("frame {n} is listed twice")));
        }
        frames.push(n);
    }
    Ok(frames)
}

fn decode_commas(s: &str) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i + 1..i + 3).unwrap_or("");
        if esc.eq_ignore_ascii_case("2C") {
            out.push(',');
            rest = &rest[i + 3..];
        } else {
            return Err(Error::BadRequest(format!(
                "percent-encoded {:?} is not allowed in a WADO-RS path",
                rest[i..].chars().take(3).collect::<String>()
            )));
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stow_requests_read_their_body() {
        let root = "/dcm4chee-arc/aets/DCM4CHEE/rs";
        let post = http::Method::POST;
        assert!(reads_body(&post, &format!("{root}/studies")));
        assert!(reads_body(&post, &format!("{root}/studies/1.2.3")));
        for path in [
            format!("{root}/studies/1.2.3/series"),
            format!("{root}/studies/1.2/series/1.3/instances/1.4"),
            format!("{root}/series"),
            format!("{root}/studies/not-a-uid"),
            "/elsewhere".to_owned(),
        ] {
            assert!(!reads_body(&post, &path), "{path}");
        }
        assert!(!reads_body(&http::Method::GET, &format!("{root}/studies")));
    }

    const ROOT: &str = "/dcm4chee-arc/aets/DCM4CHEE/rs";

    fn uid(s: &str) -> Uid {
        Uid::parse(s).expect("valid uid")
    }

    fn ok(path: &str) -> Resource {
        parse_path(&format!("{ROOT}{path}"))
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .unwrap_or_else(|| panic!("{path}: not under root"))
            .resource
    }

    fn status(path: &str) -> u16 {
        match parse_path(&format!("{ROOT}{path}")) {
            Ok(Some(_)) => 200,
            Ok(None) => 0,
            Err(e) => e.status().as_u16(),
        }
    }

    #[test]
    fn resources_table() {
        let inst = Target::Instance {
            study: uid("1.2"),
            series: uid("3.4"),
            instance: uid("5.6"),
        };
        let cases: Vec<(&str, Resource)> = vec![
            (
                "/studies/1.2",
                Resource::Instances(Target::Study { study: uid("1.2") }),
            ),
            (
                "/studies/1.2/",
                Resource::Instances(Target::Study { study: uid("1.2") }),
            ),
            (
                "/studies/1.2/metadata",
                Resource::Metadata(Target::Study { study: uid("1.2") }),
            ),
            (
                "/studies/1.2/series/3.4",
                Resource::Instances(Target::Series {
                    study: uid("1.2"),
                    series: uid("3.4"),
                }),
            ),
            (
                "/studies/1.2/series/3.4/metadata",
                Resource::Metadata(Target::Series {
                    study: uid("1.2"),
                    series: uid("3.4"),
                }),
            ),
            (
                "/studies/1.2/series/3.4/instances/5.6",
                Resource::Instances(inst.clone()),
            ),
            (
                "/studies/1.2/series/3.4/instances/5.6/metadata",
                Resource::Metadata(inst.clone()),
            ),
            (
                "/studies/1.2/series/3.4/instances/5.6/frames/1,3,2",
                Resource::Frames {
                    target: inst.clone(),
                    frames: vec![1, 3, 2],
                },
            ),
            (
                "/studies/1.2/series/3.4/instances/5.6/frames/4%2C5%2c6",
                Resource::Frames {
                    target: inst.clone(),
                    frames: vec![4, 5, 6],
                },
            ),
            (
                "/studies/1.2/series/3.4/instances/5.6/bulkdata/7FE00010",
                Resource::BulkData {
                    target: inst.clone(),
                    path: AttributePath(vec![PathStep::Tag(0x7FE0_0010)]),
                },
            ),
            (
                "/studies/1.2/series/3.4/instances/5.6/bulkdata/00540016/2/00291010",
                Resource::BulkData {
                    target: inst.clone(),
                    path: AttributePath(vec![
                        PathStep::Tag(0x0054_0016),
                        PathStep::Item(2),
                        PathStep::Tag(0x0029_1010),
                    ]),
                },
            ),
            (
                "/studies/1.2/series/3.4/instances/5.6/pixeldata",
                Resource::PixelData(inst),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(ok(path), want, "{path}");
        }
    }

    #[test]
    fn statuses_table() {
        let cases: &[(&str, u16)] = &[
            ("/studies/1.2", 200),
            ("/studies/1.2a", 400),
            ("/studies/..", 400),
            ("/studies/.", 400),
            ("/studies/1..2", 400),
            ("/studies/1.2.", 400),
            ("/studies/.1", 400),
            ("/studies/", 200),
            ("/studies", 200),
            ("", 404),
            ("/", 404),
            ("/series/1.2", 404),
            ("/studies/1.2/series", 200),
            ("/studies/1.2/instances", 200),
            ("/series", 200),
            ("/instances", 200),
            ("/studies/1.2/series/3/instances", 200),
            ("/studies/1.x/series", 400),
            ("/studies/1.2/series/3/other", 404),
            ("/studies/1.2/frames/1", 404),
            ("/studies/1.2/series/3/frames/1", 404),
            ("/studies/1.2/series/3/instances/4/frames/0", 400),
            ("/studies/1.2/series/3/instances/4/frames/1,1", 400),
            ("/studies/1.2/series/3/instances/4/frames/a", 400),
            ("/studies/1.2/series/3/instances/4/frames/-1", 400),
            ("/studies/1.2/series/3/instances/4/frames/+1", 400),
            (
                "/studies/1.2/series/3/instances/4/frames/99999999999999999999",
                400,
            ),
            ("/studies/1.2/series/3/instances/4/frames/", 404),
            ("/studies/1.2/series/3/instances/4/frames/1,", 400),
            ("/studies/1.2/series/3/instances/4/bulkdata/7FE0001", 400),
            (
                "/studies/1.2/series/3/instances/4/bulkdata/7FE00010/0/00100010",
                400,
            ),
            ("/studies/1.2/series/3/instances/4/bulkdata/7FE00010/1", 400),
            ("/studies/1.2/series/3/instances/4/bulkdata", 404),
            ("/studies/1.2/series/3/instances/4/other", 404),
            ("/studies/1.2%2F3", 400),
            ("/studies/1.2%00", 400),
            ("/studies/%2e%2e", 400),
            ("/studies/1", 200),
            // Found by fuzzing: a multi-byte character right after '%' (no slicing panic).
            ("/L\u{1}\u{e}%!\u{1cd}", 400),
            ("/studies/1%\u{1cd}", 400),
        ];
        for (path, want) in cases {
            assert_eq!(status(path), *want, "{path}");
        }
        let long_uid = format!("/studies/{}", "1".repeat(65));
        assert_eq!(status(&long_uid), 400);
        let max_uid = format!("/studies/{}", "1".repeat(64));
        assert_eq!(status(&max_uid), 200);
    }

    #[test]
    fn service_root_and_ae_titles() {
        assert_eq!(parse_path("/other/path").expect("ok"), None);
        let r = parse_path("/dcm4chee-arc/aets/MYAE/rs/studies/1")
            .expect("ok")
            .expect("some");
        assert_eq!(r.ae_title, "MYAE");
        assert_eq!(
            parse_path("/dcm4chee-arc/aets/MYAE/wado/studies/1").map_err(|e| e.status().as_u16()),
            Err(404)
        );
        assert_eq!(
            parse_path("/dcm4chee-arc/aets//rs/studies/1").map_err(|e| e.status().as_u16()),
            Err(404)
        );
    }

    #[test]
    fn frame_list_limits() {
        let many = (1..=MAX_FRAMES_PER_REQUEST as u32 + 1)
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(parse_frame_list(&many).is_err());
        let ok = (1..=1000u32)
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(parse_frame_list(&ok).expect("ok").len(), 1000);
        assert_eq!(parse_frame_list("4294967295").expect("ok"), vec![u32::MAX]);
        assert!(parse_frame_list("4294967296").is_err());
    }

    #[test]
    fn attribute_path_display_roundtrip() {
        let p = AttributePath::parse(&["00540016", "3", "0029101a"]).expect("ok");
        assert_eq!(p.to_string(), "00540016/3/0029101A");
    }
}
