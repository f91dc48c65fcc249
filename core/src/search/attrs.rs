//! The QIDO-RS model: which attributes belong to which level, which are matching keys (and in
//! which column), and which each level returns by default (PS3.18 Tables 10.6.1-5 and
//! 10.6.3-3/-4/-5).

pub use crate::route::Level;

/// How a matching key's values are stored and matched (PS3.4 C.2.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UI: single value or a list of UIDs; no wildcards.
    Uid,
    /// DA: single value or range, `YYYYMMDD`.
    Date,
    /// TM: single value or range, `HH[MM[SS[.F]]]`, stored padded for comparison.
    Time,
    /// Text (CS, SH, LO): single value or wildcards, case-sensitive.
    Text,
    /// PN: single value or wildcards, case- and accent-insensitive (as Orthanc and dcm4chee
    /// do by default), with word-prefix fuzzy matching on request.
    PersonName,
    /// IS, US: single value.
    Int,
    /// ModalitiesInStudy: any of the study's series modalities matches.
    Modalities,
}

/// A matching key: an attribute the index has a column for.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The tag, `0xGGGGEEEE`.
    pub tag: u32,
    /// Its keyword, for messages.
    pub keyword: &'static str,
    /// The level whose table holds it.
    pub level: Level,
    /// Its column in that table.
    pub column: &'static str,
    /// How it is matched.
    pub kind: Kind,
}

const fn key(
    tag: u32,
    keyword: &'static str,
    level: Level,
    column: &'static str,
    kind: Kind,
) -> Key {
    Key {
        tag,
        keyword,
        level,
        column,
        kind,
    }
}

/// Every matching key (PS3.18 Table 10.6.1-5, and the few more viewers ask for).
pub const KEYS: &[Key] = &[
    key(
        0x0020_000D,
        "StudyInstanceUID",
        Level::Study,
        "study_uid",
        Kind::Uid,
    ),
    key(
        0x0008_0020,
        "StudyDate",
        Level::Study,
        "study_date",
        Kind::Date,
    ),
    key(
        0x0008_0030,
        "StudyTime",
        Level::Study,
        "study_time",
        Kind::Time,
    ),
    key(
        0x0008_0050,
        "AccessionNumber",
        Level::Study,
        "accession",
        Kind::Text,
    ),
    key(
        0x0008_0061,
        "ModalitiesInStudy",
        Level::Study,
        "modalities",
        Kind::Modalities,
    ),
    key(
        0x0008_0090,
        "ReferringPhysicianName",
        Level::Study,
        "referring",
        Kind::PersonName,
    ),
    key(
        0x0010_0010,
        "PatientName",
        Level::Study,
        "patient_name",
        Kind::PersonName,
    ),
    key(
        0x0010_0020,
        "PatientID",
        Level::Study,
        "patient_id",
        Kind::Text,
    ),
    key(
        0x0010_0030,
        "PatientBirthDate",
        Level::Study,
        "birth_date",
        Kind::Date,
    ),
    key(0x0010_0040, "PatientSex", Level::Study, "sex", Kind::Text),
    key(0x0020_0010, "StudyID", Level::Study, "study_id", Kind::Text),
    key(
        0x0008_1030,
        "StudyDescription",
        Level::Study,
        "description",
        Kind::Text,
    ),
    key(
        0x0020_000E,
        "SeriesInstanceUID",
        Level::Series,
        "series_uid",
        Kind::Uid,
    ),
    key(
        0x0008_0060,
        "Modality",
        Level::Series,
        "modality",
        Kind::Text,
    ),
    key(
        0x0020_0011,
        "SeriesNumber",
        Level::Series,
        "series_number",
        Kind::Int,
    ),
    key(
        0x0008_103E,
        "SeriesDescription",
        Level::Series,
        "description",
        Kind::Text,
    ),
    key(
        0x0018_0015,
        "BodyPartExamined",
        Level::Series,
        "body_part",
        Kind::Text,
    ),
    key(
        0x0008_0021,
        "SeriesDate",
        Level::Series,
        "series_date",
        Kind::Date,
    ),
    key(
        0x0040_0244,
        "PerformedProcedureStepStartDate",
        Level::Series,
        "pps_date",
        Kind::Date,
    ),
    key(
        0x0040_0245,
        "PerformedProcedureStepStartTime",
        Level::Series,
        "pps_time",
        Kind::Time,
    ),
    key(
        0x0008_0018,
        "SOPInstanceUID",
        Level::Instance,
        "sop_uid",
        Kind::Uid,
    ),
    key(
        0x0008_0016,
        "SOPClassUID",
        Level::Instance,
        "sop_class",
        Kind::Uid,
    ),
    key(
        0x0020_0013,
        "InstanceNumber",
        Level::Instance,
        "instance_number",
        Kind::Int,
    ),
    key(0x0028_0010, "Rows", Level::Instance, "n_rows", Kind::Int),
    key(
        0x0028_0011,
        "Columns",
        Level::Instance,
        "n_columns",
        Kind::Int,
    ),
    key(
        0x0028_0008,
        "NumberOfFrames",
        Level::Instance,
        "n_frames",
        Kind::Int,
    ),
];

/// The matching key for a tag, if the index has one.
pub fn matching_key(tag: u32) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.tag == tag)
}

/// Returned with every level: Specific Character Set, Timezone Offset From UTC.
const EVERY_LEVEL: [u32; 2] = [0x0008_0005, 0x0008_0201];

/// Study-level attributes besides the Patient group (0010,xxxx): the General Study and Patient
/// Study modules, and what a requested procedure says of the study.
const STUDY_TAGS: &[u32] = &[
    0x0008_0020,
    0x0008_0030,
    0x0008_0050,
    0x0008_0051,
    0x0008_0061,
    0x0008_0090,
    0x0008_0096,
    0x0008_1030,
    0x0008_1032,
    0x0008_1048,
    0x0008_1049,
    0x0008_1060,
    0x0008_1062,
    0x0008_1080,
    0x0008_1084,
    0x0020_000D,
    0x0020_0010,
    0x0032_1032,
    0x0032_1033,
    0x0032_1060,
    0x0032_1064,
    0x0038_0010,
];

/// Series-level attributes: General Series, General Equipment, Frame of Reference and the
/// performed procedure step.
const SERIES_TAGS: &[u32] = &[
    0x0008_0021,
    0x0008_0031,
    0x0008_0060,
    0x0008_0070,
    0x0008_0080,
    0x0008_0081,
    0x0008_1010,
    0x0008_103E,
    0x0008_1040,
    0x0008_1050,
    0x0008_1052,
    0x0008_1070,
    0x0008_1072,
    0x0008_1090,
    0x0008_1111,
    0x0018_0015,
    0x0018_1000,
    0x0018_1020,
    0x0018_1030,
    0x0018_5100,
    0x0020_000E,
    0x0020_0011,
    0x0020_0052,
    0x0020_0060,
    0x0020_1040,
    0x0040_0244,
    0x0040_0245,
    0x0040_0253,
    0x0040_0254,
    0x0040_0260,
    0x0040_0275,
];

/// The level an attribute of an instance's data set belongs to (top level only).
pub fn level_of(tag: u32) -> Level {
    if tag >> 16 == 0x0010 || STUDY_TAGS.contains(&tag) {
        Level::Study
    } else if SERIES_TAGS.contains(&tag) {
        Level::Series
    } else {
        Level::Instance
    }
}

/// Whether an attribute is kept at every level as well as its own.
pub fn at_every_level(tag: u32) -> bool {
    EVERY_LEVEL.contains(&tag)
}

/// Attributes returned for a study by default (PS3.18 Table 10.6.3-3, with Study Description,
/// which every study list shows). Counts, modalities, availability and the Retrieve URL are
/// computed, the others stored.
pub const STUDY_DEFAULT: &[u32] = &[
    0x0008_0005,
    0x0008_0020,
    0x0008_0030,
    0x0008_0050,
    0x0008_0056,
    0x0008_0061,
    0x0008_0090,
    0x0008_0201,
    0x0008_1030,
    0x0008_1190,
    0x0010_0010,
    0x0010_0020,
    0x0010_0030,
    0x0010_0040,
    0x0020_000D,
    0x0020_0010,
    0x0020_1206,
    0x0020_1208,
];

/// Attributes returned for a series by default (Table 10.6.3-4, with Series Date and Body Part).
pub const SERIES_DEFAULT: &[u32] = &[
    0x0008_0005,
    0x0008_0021,
    0x0008_0056,
    0x0008_0060,
    0x0008_0201,
    0x0008_103E,
    0x0008_1190,
    0x0018_0015,
    0x0020_000E,
    0x0020_0011,
    0x0020_1209,
    0x0040_0244,
    0x0040_0245,
    0x0040_0275,
];

/// Attributes returned for an instance by default (Table 10.6.3-5).
pub const INSTANCE_DEFAULT: &[u32] = &[
    0x0008_0005,
    0x0008_0016,
    0x0008_0018,
    0x0008_0056,
    0x0008_0201,
    0x0008_1190,
    0x0020_0013,
    0x0028_0008,
    0x0028_0010,
    0x0028_0011,
    0x0028_0100,
];

/// The default attributes of a level.
pub fn defaults(level: Level) -> &'static [u32] {
    match level {
        Level::Study => STUDY_DEFAULT,
        Level::Series => SERIES_DEFAULT,
        Level::Instance => INSTANCE_DEFAULT,
    }
}

/// Attribute values larger than this (serialised) are left out of the index: a search returns
/// them only in the metadata (RT contour sequences run to megabytes).
pub const MAX_STORED_ATTRIBUTE: usize = 4096;

/// Folds a person name for matching: lower case, accents removed (the Combining Diacritical
/// Marks, U+0300–U+036F, after canonical decomposition; kana voicing marks are not accents and
/// stay), recomposed.
pub fn fold(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.nfd()
        .filter(|c| !('\u{300}'..='\u{36F}').contains(c))
        .flat_map(char::to_lowercase)
        .nfc()
        .collect()
}

/// The words of a person name, folded, each preceded by a space: `" doe john "` for
/// `Doe^John`, so `" jo"` finds the word prefixes of a fuzzy match.
pub fn words(s: &str) -> String {
    let mut out = String::from(" ");
    for w in fold(s)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        out.push_str(w);
        out.push(' ');
    }
    out
}

/// A time `HH[MM[SS[.F{1,6}]]]` (also the old `HH:MM:SS`) as `HHMMSS.FFFFFF`, padded with
/// zeros (a stored value, a lower bound) or with the latest time it covers (`upper`: `10` is
/// `105959.999999`), so text comparison orders times. `None` when it is not a time.
pub fn normalise_time(t: &str, upper: bool) -> Option<String> {
    let t = t.trim();
    let t: String = if t.len() > 2 && t.as_bytes().get(2) == Some(&b':') {
        t.replace(':', "")
    } else {
        t.to_owned()
    };
    let (hms, frac) = t.split_once('.').unwrap_or((&t, ""));
    if !hms.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || !matches!(hms.len(), 2 | 4 | 6)
        || frac.len() > 6
        || (!frac.is_empty() && hms.len() != 6)
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| hms.get(r).and_then(|s| s.parse::<u32>().ok());
    if num(0..2)? > 23 || num(2..4).is_some_and(|m| m > 59) || num(4..6).is_some_and(|s| s > 60) {
        return None;
    }
    let max = "595959";
    let mut out = hms.to_owned();
    out.push_str(if upper {
        &max[hms.len()..]
    } else {
        &"000000"[hms.len()..]
    });
    out.push('.');
    out.push_str(frac);
    let pad = if upper { '9' } else { '0' };
    while out.len() < 13 {
        out.push(pad);
    }
    Some(out)
}

/// Whether `d` is a date `YYYYMMDD` (the old `YYYY.MM.DD` is taken too and rewritten).
pub fn normalise_date(d: &str) -> Option<String> {
    let d = d.trim().replace('.', "");
    if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let month: u32 = d[4..6].parse().ok()?;
    let day: u32 = d[6..8].parse().ok()?;
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_padded_to_what_they_cover() {
        // PS3.4 C.2.2.2.5: "10" is the hour from 10:00:00 to 10:59:59.999999.
        assert_eq!(
            normalise_time("10", false).as_deref(),
            Some("100000.000000")
        );
        assert_eq!(normalise_time("10", true).as_deref(), Some("105959.999999"));
        assert_eq!(
            normalise_time("1030", true).as_deref(),
            Some("103059.999999")
        );
        assert_eq!(
            normalise_time("103015.5", false).as_deref(),
            Some("103015.500000")
        );
        assert_eq!(
            normalise_time("10:30:15", false).as_deref(),
            Some("103015.000000")
        );
        for bad in ["", "1", "2400", "1060", "10.5", "103015.1234567", "ab"] {
            assert_eq!(normalise_time(bad, false), None, "{bad:?}");
        }
    }

    #[test]
    fn dates_are_eight_digits() {
        assert_eq!(normalise_date("20040826").as_deref(), Some("20040826"));
        assert_eq!(normalise_date("1994.11.05").as_deref(), Some("19941105"));
        for bad in ["2004082", "20041301", "20040800", "2004-08-26", "x"] {
            assert_eq!(normalise_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_fold_without_case_or_accents() {
        assert_eq!(fold("Müller^Zoë"), "muller^zoe");
        // Character by character (no final sigma): the query is folded the same way.
        assert_eq!(fold("ΔΙΟΝΥΣΙΟΣ"), "διονυσιοσ");
        assert_eq!(words("Doe^John Q.=ドウ"), " doe john q ドウ ");
        assert_eq!(fold("Łódź Ångström"), "łodz angstrom");
    }

    #[test]
    fn every_matching_key_is_the_standard_s_keyword_for_its_tag() {
        use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
        use dicom_dictionary_std::StandardDataDictionary;
        for k in KEYS {
            let e = StandardDataDictionary
                .by_name(k.keyword)
                .unwrap_or_else(|| panic!("{} is not a keyword", k.keyword));
            let t = e.tag();
            assert_eq!((u32::from(t.group()) << 16) | u32::from(t.element()), k.tag);
        }
    }
}
