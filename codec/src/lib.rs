//! # wado-codec
//!
//! Pixel data transcoding for wado, on byte buffers, for every target (natively, in the
//! Cloudflare Worker and in the browser: it builds for `wasm32-unknown-unknown`).
//!
//! - [`transcode`]: the matrix. Which transfer syntaxes this build decodes and encodes, a frame
//!   from any decodable syntax to any encodable one, a whole Part-10 instance decoded or
//!   re-encoded with its data set made true (Photometric Interpretation, Planar Configuration,
//!   Lossy Image Compression). Decoding goes through dicom-pixeldata where its codecs serve
//!   (RLE, JPEG baseline and lossless, JPEG 2000 with the `openjp2` feature) and through ours
//!   where they do not.
//! - Our codecs, pure Rust: [`rle`] (PS3.5 Annex G encoder), [`jpeg::lossless`] (T.81 process
//!   14 encoder), [`jpeg::dct`] (T.81 baseline and extended, 8 and 12 bits, both ways),
//!   [`jpegls`] (T.87, both ways), [`htj2k`] (JPEG 2000 Part 15, both ways, and Part 1
//!   lossless encoding). Lossy JPEG 2000 Part 1 encoding is openjp2's, behind the one `unsafe`
//!   adapter of the `wado-j2k` crate.
//! - [`ts`]: the transfer syntax UIDs; [`PixelInfo`]: the image pixel attributes a frame is
//!   coded with; [`Error`]: the one error type of every codec.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};

pub mod dataset;
pub mod htj2k;
pub mod jpeg;
pub mod jpegls;
pub mod rle;
pub mod transcode;
pub mod ts;

pub use transcode::{
    can_decode, can_encode, conversion_work_bytes, decode_frame, decode_frame_reduced,
    decode_instance, decoded_as_rgb, encode_instance, native_planar, transcode_frame, J2K_RATIO,
    JPEG_LS_NEAR, JPEG_QUALITY,
};

/// Why pixel data could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input cannot be read: a truncated or inconsistent codestream, fragment or data
    /// set, or one that does not fit the image attributes it comes with. Stored data in this
    /// state is corrupt (a server error, never the client's).
    #[error("{what}: {reason}")]
    Malformed {
        /// What was being read (a codec, a storage key, `frame`).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The image cannot be coded this way: a bit depth, sample count or signedness that the
    /// codec or the transfer syntax does not take. The client asked for something else.
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    /// A [`Error::Malformed`].
    pub fn malformed(what: impl Into<String>, reason: impl std::fmt::Display) -> Error {
        Error::Malformed {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// The codecs' result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Image pixel attributes needed to serve frames (PS3.3 C.7.6.3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PixelInfo {
    /// Rows (0028,0010).
    pub rows: u16,
    /// Columns (0028,0011).
    pub columns: u16,
    /// Samples per Pixel (0028,0002).
    pub samples_per_pixel: u16,
    /// Bits Allocated (0028,0100).
    pub bits_allocated: u16,
    /// Bits Stored (0028,0101).
    pub bits_stored: u16,
    /// Pixel Representation (0028,0103).
    pub pixel_representation: u16,
    /// Photometric Interpretation (0028,0004).
    pub photometric_interpretation: String,
    /// Planar Configuration (0028,0006), 0 when absent.
    pub planar_configuration: u16,
    /// Number of Frames (0028,0008), 1 when absent.
    pub number_of_frames: u32,
}

impl PixelInfo {
    /// Bits in one uncompressed frame (every pixel with all its samples): what a decoder gives.
    pub fn frame_bits(&self) -> u64 {
        u64::from(self.rows)
            * u64::from(self.columns)
            * u64::from(self.samples_per_pixel)
            * u64::from(self.bits_allocated)
    }

    /// Bits in one frame as native Pixel Data stores it: YBR_FULL_422 keeps two samples per
    /// pixel (Cb and Cr shared by two horizontally adjacent pixels, PS3.3 C.7.6.3.1.2), every
    /// other interpretation all of them.
    pub fn stored_frame_bits(&self) -> u64 {
        if self.samples_per_pixel == 3 && self.photometric_interpretation == "YBR_FULL_422" {
            self.frame_bits() / 3 * 2
        } else {
            self.frame_bits()
        }
    }
}
