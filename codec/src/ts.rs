//! Transfer syntax UIDs (PS3.6 Table A-1) that wado names, and their two properties the
//! transcoding matrix and the negotiation tables need: native or encapsulated, lossless or not.

/// Implicit VR Little Endian. PS3.18 §8.7.3: not to be used with web services; accepted
/// only when a client names it.
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR Little Endian: the default for `application/dicom` and uncompressed bulk data.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// Encapsulated Uncompressed Explicit VR Little Endian.
pub const ENCAPSULATED_UNCOMPRESSED: &str = "1.2.840.10008.1.2.1.98";
/// Deflated Explicit VR Little Endian.
pub const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
/// Explicit VR Big Endian (retired; accepted only when named).
pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
/// JPEG Baseline (Process 1), 8 bit lossy.
pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
/// JPEG Extended (Process 2 & 4), 12 bit lossy.
pub const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";
/// JPEG Lossless, Non-Hierarchical (Process 14).
pub const JPEG_LOSSLESS: &str = "1.2.840.10008.1.2.4.57";
/// JPEG Lossless, First-Order Prediction (Process 14, Selection Value 1).
pub const JPEG_LOSSLESS_SV1: &str = "1.2.840.10008.1.2.4.70";
/// JPEG-LS Lossless.
pub const JPEG_LS_LOSSLESS: &str = "1.2.840.10008.1.2.4.80";
/// JPEG-LS Lossy (Near-Lossless).
pub const JPEG_LS_NEAR_LOSSLESS: &str = "1.2.840.10008.1.2.4.81";
/// JPEG 2000 Image Compression (Lossless Only).
pub const JPEG_2000_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";
/// JPEG 2000 Image Compression.
pub const JPEG_2000: &str = "1.2.840.10008.1.2.4.91";
/// JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only).
pub const JPEG_2000_MC_LOSSLESS: &str = "1.2.840.10008.1.2.4.92";
/// JPEG 2000 Part 2 Multi-component Image Compression.
pub const JPEG_2000_MC: &str = "1.2.840.10008.1.2.4.93";
/// RLE Lossless.
pub const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
/// High-Throughput JPEG 2000 (Lossless Only).
pub const HTJ2K_LOSSLESS: &str = "1.2.840.10008.1.2.4.201";
/// High-Throughput JPEG 2000 with RPCL Options (Lossless Only).
pub const HTJ2K_LOSSLESS_RPCL: &str = "1.2.840.10008.1.2.4.202";
/// High-Throughput JPEG 2000.
pub const HTJ2K: &str = "1.2.840.10008.1.2.4.203";
/// JPEG XL Lossless.
pub const JPEG_XL_LOSSLESS: &str = "1.2.840.10008.1.2.4.110";
/// JPEG XL JPEG Recompression.
pub const JPEG_XL_RECOMPRESSION: &str = "1.2.840.10008.1.2.4.111";
/// JPEG XL.
pub const JPEG_XL: &str = "1.2.840.10008.1.2.4.112";
/// MPEG2 Main Profile / Main Level.
pub const MPEG2_MPML: &str = "1.2.840.10008.1.2.4.100";
/// Fragmentable MPEG2 Main Profile / Main Level.
pub const MPEG2_MPML_F: &str = "1.2.840.10008.1.2.4.100.1";
/// MPEG2 Main Profile / High Level.
pub const MPEG2_MPHL: &str = "1.2.840.10008.1.2.4.101";
/// Fragmentable MPEG2 Main Profile / High Level.
pub const MPEG2_MPHL_F: &str = "1.2.840.10008.1.2.4.101.1";
/// MPEG-4 AVC/H.264 High Profile / Level 4.1.
pub const H264_HP41: &str = "1.2.840.10008.1.2.4.102";
/// The H.264 and HEVC transfer syntaxes that `video/mp4` carries (PS3.18 Table 8.7.3-5).
pub const MP4_FAMILY: &[&str] = &[
    "1.2.840.10008.1.2.4.102",
    "1.2.840.10008.1.2.4.102.1",
    "1.2.840.10008.1.2.4.103",
    "1.2.840.10008.1.2.4.103.1",
    "1.2.840.10008.1.2.4.104",
    "1.2.840.10008.1.2.4.104.1",
    "1.2.840.10008.1.2.4.105",
    "1.2.840.10008.1.2.4.105.1",
    "1.2.840.10008.1.2.4.106",
    "1.2.840.10008.1.2.4.106.1",
    "1.2.840.10008.1.2.4.107",
    "1.2.840.10008.1.2.4.108",
];
/// The MPEG-2 transfer syntaxes that `video/mpeg` carries.
pub const MPEG_FAMILY: &[&str] = &[MPEG2_MPML, MPEG2_MPML_F, MPEG2_MPHL, MPEG2_MPHL_F];

/// True for the transfer syntaxes whose Pixel Data is native (not encapsulated).
pub fn is_native(uid: &str) -> bool {
    matches!(
        uid,
        IMPLICIT_VR_LE | EXPLICIT_VR_LE | DEFLATED_EXPLICIT_VR_LE | EXPLICIT_VR_BE
    )
}

/// True for transfer syntaxes that never lose information.
pub fn is_lossless(uid: &str) -> bool {
    is_native(uid)
        || matches!(
            uid,
            ENCAPSULATED_UNCOMPRESSED
                | JPEG_LOSSLESS
                | JPEG_LOSSLESS_SV1
                | JPEG_LS_LOSSLESS
                | JPEG_2000_LOSSLESS
                | JPEG_2000_MC_LOSSLESS
                | RLE_LOSSLESS
                | HTJ2K_LOSSLESS
                | HTJ2K_LOSSLESS_RPCL
                | JPEG_XL_LOSSLESS
                | JPEG_XL_RECOMPRESSION
        )
}
