//! Media types and transfer syntaxes: the tables of PS3.18 §8.7.3 (Tables 8.7.3-2, -4, -5) and
//! the seed's list (dcm4chee-arc's WADO-RS conformance), in one place.

use std::fmt;

/// Transfer syntax UIDs (PS3.6 Table A-1): they live with the codecs, in `wado-codec`.
pub(crate) use wado_codec::ts;

/// The media types of WADO-RS retrieve (the seed's list, PS3.18 §8.7.3.5, and the metadata
/// types of §8.7.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaType {
    /// `application/dicom`: PS3.10 files.
    Dicom,
    /// `application/octet-stream`: uncompressed bulk data.
    OctetStream,
    /// `image/jpeg`.
    Jpeg,
    /// `image/jp2` (raw JPEG 2000 codestream).
    Jp2,
    /// `image/jpx` (JPEG 2000 Part 2 codestream).
    Jpx,
    /// `image/dicom-rle`, formerly `image/x-dicom+rle` (the seed's spelling).
    DicomRle,
    /// `image/jls`, formerly `image/x-jls` (the seed's spelling).
    Jls,
    /// `image/jphc`: HTJ2K (beyond the seed).
    Jphc,
    /// `image/jxl`: JPEG XL (beyond the seed).
    Jxl,
    /// `application/pdf`: an Encapsulated PDF document.
    Pdf,
    /// `text/xml`: an Encapsulated CDA document.
    TextXml,
    /// `video/mpeg`: MPEG-2 video.
    Mpeg,
    /// `video/mp4`: H.264 and HEVC video.
    Mp4,
    /// `application/zip`: a ZIP of PS3.10 files (a dcm4chee extension).
    Zip,
    /// `application/dicom+json`: DICOM JSON metadata (PS3.18 Annex F).
    DicomJson,
    /// `application/json`: the same JSON, as dcm4chee also accepts.
    Json,
    /// `application/dicom+xml`: Native DICOM Model XML (PS3.19).
    DicomXml,
}

impl MediaType {
    /// Every media type, in the order of the seed's table.
    pub const ALL: [MediaType; 17] = [
        MediaType::Dicom,
        MediaType::OctetStream,
        MediaType::Pdf,
        MediaType::Jpeg,
        MediaType::Jp2,
        MediaType::Jpx,
        MediaType::DicomRle,
        MediaType::Jls,
        MediaType::Jphc,
        MediaType::Jxl,
        MediaType::TextXml,
        MediaType::Mpeg,
        MediaType::Mp4,
        MediaType::Zip,
        MediaType::DicomJson,
        MediaType::Json,
        MediaType::DicomXml,
    ];

    /// The current PS3.18 name, used in responses.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Dicom => "application/dicom",
            MediaType::OctetStream => "application/octet-stream",
            MediaType::Jpeg => "image/jpeg",
            MediaType::Jp2 => "image/jp2",
            MediaType::Jpx => "image/jpx",
            MediaType::DicomRle => "image/dicom-rle",
            MediaType::Jls => "image/jls",
            MediaType::Jphc => "image/jphc",
            MediaType::Jxl => "image/jxl",
            MediaType::Pdf => "application/pdf",
            MediaType::TextXml => "text/xml",
            MediaType::Mpeg => "video/mpeg",
            MediaType::Mp4 => "video/mp4",
            MediaType::Zip => "application/zip",
            MediaType::DicomJson => "application/dicom+json",
            MediaType::Json => "application/json",
            MediaType::DicomXml => "application/dicom+xml",
        }
    }

    /// Looks up a media type by name, accepting the seed's old spellings too
    /// (`image/x-dicom+rle`, `image/x-jls`). `name` must be lower case.
    pub fn from_name(name: &str) -> Option<MediaType> {
        Some(match name {
            "image/x-dicom+rle" | "image/x-dicom-rle" => MediaType::DicomRle,
            "image/x-jls" => MediaType::Jls,
            "image/jphc" | "image/jhc" => MediaType::Jphc,
            _ => return MediaType::ALL.into_iter().find(|m| m.as_str() == name),
        })
    }

    /// The transfer syntax used when the client names none (PS3.18 Tables 8.7.3-2, -4, -5).
    /// `None` for types that carry no transfer syntax (metadata, documents, ZIP) or where the
    /// stored one is used (video).
    pub fn default_transfer_syntax(self) -> Option<&'static str> {
        Some(match self {
            MediaType::Dicom | MediaType::OctetStream | MediaType::Zip => ts::EXPLICIT_VR_LE,
            // Table 8.7.3-5: "D" is JPEG Lossless SV1 for image/jpeg, not baseline.
            MediaType::Jpeg => ts::JPEG_LOSSLESS_SV1,
            MediaType::Jp2 => ts::JPEG_2000_LOSSLESS,
            MediaType::Jpx => ts::JPEG_2000_MC_LOSSLESS,
            MediaType::DicomRle => ts::RLE_LOSSLESS,
            MediaType::Jls => ts::JPEG_LS_LOSSLESS,
            MediaType::Jphc => ts::HTJ2K_LOSSLESS,
            MediaType::Jxl => ts::JPEG_XL_LOSSLESS,
            MediaType::Mpeg => ts::MPEG2_MPML,
            MediaType::Mp4 => ts::H264_HP41,
            MediaType::Pdf
            | MediaType::TextXml
            | MediaType::DicomJson
            | MediaType::Json
            | MediaType::DicomXml => return None,
        })
    }

    /// The transfer syntaxes this media type may carry (Table 8.7.3-5 for bulk data types).
    /// `None` means any (application/dicom and ZIP carry every transfer syntax).
    pub fn transfer_syntaxes(self) -> Option<&'static [&'static str]> {
        Some(match self {
            MediaType::Dicom | MediaType::Zip => return None,
            MediaType::OctetStream => &[ts::EXPLICIT_VR_LE],
            MediaType::Jpeg => &[
                ts::JPEG_LOSSLESS_SV1,
                ts::JPEG_BASELINE,
                ts::JPEG_EXTENDED,
                ts::JPEG_LOSSLESS,
            ],
            MediaType::Jp2 => &[ts::JPEG_2000_LOSSLESS, ts::JPEG_2000],
            MediaType::Jpx => &[ts::JPEG_2000_MC_LOSSLESS, ts::JPEG_2000_MC],
            MediaType::DicomRle => &[ts::RLE_LOSSLESS],
            MediaType::Jls => &[ts::JPEG_LS_LOSSLESS, ts::JPEG_LS_NEAR_LOSSLESS],
            MediaType::Jphc => &[ts::HTJ2K_LOSSLESS, ts::HTJ2K_LOSSLESS_RPCL, ts::HTJ2K],
            MediaType::Jxl => &[ts::JPEG_XL_LOSSLESS, ts::JPEG_XL_RECOMPRESSION, ts::JPEG_XL],
            MediaType::Mpeg => ts::MPEG_FAMILY,
            MediaType::Mp4 => ts::MP4_FAMILY,
            MediaType::Pdf
            | MediaType::TextXml
            | MediaType::DicomJson
            | MediaType::Json
            | MediaType::DicomXml => &[],
        })
    }

    /// The bulk data media type that carries a stored encapsulated transfer syntax as is.
    pub fn for_stored_transfer_syntax(uid: &str) -> Option<MediaType> {
        [
            MediaType::Jpeg,
            MediaType::Jp2,
            MediaType::Jpx,
            MediaType::DicomRle,
            MediaType::Jls,
            MediaType::Jphc,
            MediaType::Jxl,
            MediaType::Mpeg,
            MediaType::Mp4,
        ]
        .into_iter()
        .find(|m| {
            m.transfer_syntaxes()
                .is_some_and(|list| list.contains(&uid))
        })
    }

    /// True for the compressed image and video bulk data types.
    pub fn is_compressed_bulk(self) -> bool {
        matches!(
            self,
            MediaType::Jpeg
                | MediaType::Jp2
                | MediaType::Jpx
                | MediaType::DicomRle
                | MediaType::Jls
                | MediaType::Jphc
                | MediaType::Jxl
                | MediaType::Mpeg
                | MediaType::Mp4
        )
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases() {
        let cases: &[(&str, Option<MediaType>)] = &[
            ("application/dicom", Some(MediaType::Dicom)),
            ("image/x-dicom+rle", Some(MediaType::DicomRle)),
            ("image/dicom-rle", Some(MediaType::DicomRle)),
            ("image/x-jls", Some(MediaType::Jls)),
            ("image/jls", Some(MediaType::Jls)),
            ("image/jp2", Some(MediaType::Jp2)),
            ("image/jpx", Some(MediaType::Jpx)),
            ("video/mp4", Some(MediaType::Mp4)),
            ("video/mpeg", Some(MediaType::Mpeg)),
            ("text/xml", Some(MediaType::TextXml)),
            ("application/pdf", Some(MediaType::Pdf)),
            ("application/zip", Some(MediaType::Zip)),
            ("application/dicom+json", Some(MediaType::DicomJson)),
            ("application/json", Some(MediaType::Json)),
            ("application/dicom+xml", Some(MediaType::DicomXml)),
            ("image/png", None),
            ("text/html", None),
        ];
        for (name, want) in cases {
            assert_eq!(MediaType::from_name(name), *want, "{name}");
        }
        for m in MediaType::ALL {
            assert_eq!(MediaType::from_name(m.as_str()), Some(m));
        }
    }

    /// PS3.18 Table 8.7.3-5 ("D" column) and Tables 8.7.3-2/-4.
    #[test]
    fn defaults_follow_table_8_7_3_5() {
        let cases: &[(MediaType, Option<&str>)] = &[
            (MediaType::Dicom, Some("1.2.840.10008.1.2.1")),
            (MediaType::OctetStream, Some("1.2.840.10008.1.2.1")),
            (MediaType::Jpeg, Some("1.2.840.10008.1.2.4.70")),
            (MediaType::DicomRle, Some("1.2.840.10008.1.2.5")),
            (MediaType::Jls, Some("1.2.840.10008.1.2.4.80")),
            (MediaType::Jp2, Some("1.2.840.10008.1.2.4.90")),
            (MediaType::Jpx, Some("1.2.840.10008.1.2.4.92")),
            (MediaType::DicomJson, None),
        ];
        for (m, want) in cases {
            assert_eq!(m.default_transfer_syntax(), *want, "{m}");
        }
        for m in MediaType::ALL {
            if let (Some(d), Some(list)) = (m.default_transfer_syntax(), m.transfer_syntaxes()) {
                assert!(list.contains(&d), "{m}: default {d} not in its own list");
            }
        }
    }

    #[test]
    fn stored_syntax_to_media_type() {
        assert_eq!(
            MediaType::for_stored_transfer_syntax(ts::JPEG_BASELINE),
            Some(MediaType::Jpeg)
        );
        assert_eq!(
            MediaType::for_stored_transfer_syntax(ts::RLE_LOSSLESS),
            Some(MediaType::DicomRle)
        );
        assert_eq!(
            MediaType::for_stored_transfer_syntax(ts::JPEG_2000),
            Some(MediaType::Jp2)
        );
        assert_eq!(
            MediaType::for_stored_transfer_syntax("1.2.840.10008.1.2.4.106"),
            Some(MediaType::Mp4)
        );
        assert_eq!(
            MediaType::for_stored_transfer_syntax(ts::EXPLICIT_VR_LE),
            None
        );
        assert!(ts::is_lossless(ts::RLE_LOSSLESS));
        assert!(!ts::is_lossless(ts::JPEG_BASELINE));
    }
}
