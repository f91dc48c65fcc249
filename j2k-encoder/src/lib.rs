//! JPEG 2000 encoding for wado: sample buffers in, a raw codestream (ISO/IEC 15444-1 Annex A,
//! no JP2 wrapper, as PS3.5 A.4.4 and PS3.18 §8.7.3.3.2 want) out.
//!
//! The codec is openjp2, the Rust port of OpenJPEG that dicom-rs already uses to decode. Its
//! encoder has a C-shaped API: the parameters, the image and the codec have safe Rust methods,
//! but an in-memory output stream can only be given as C callbacks over a `void *`. That
//! adapter is the one piece of `unsafe` here, kept in this crate so that `wado-core` stays
//! free of it. It builds for wasm32 with the same allocator shim as openjp2's decoder.
//!
//! The coding choices are OpenJPEG's `opj_compress` defaults, which GDCM and most PACS use
//! too: one tile, 64×64 code blocks, LRCP, six resolution levels (fewer for small images),
//! one quality layer; the 5/3 reversible wavelet for lossless, the 9/7 irreversible one with
//! a compression ratio for lossy (OpenJPEG's `-r`).
#![allow(unsafe_code)]

use core::ffi::{c_char, c_void};
use openjp2::openjpeg::{
    opj_create_compress, opj_destroy_codec, opj_encode, opj_end_compress, opj_set_error_handler,
    opj_setup_encoder, opj_start_compress, opj_stream_create, opj_stream_destroy,
    opj_stream_set_seek_function, opj_stream_set_skip_function, opj_stream_set_user_data,
    opj_stream_set_write_function,
};
use openjp2::{
    opj_codec_t, opj_cparameters_t, opj_image, opj_image_comptparm, opj_stream_t, OPJ_CLRSPC_GRAY,
    OPJ_CLRSPC_SRGB, OPJ_CLRSPC_UNSPECIFIED, OPJ_CODEC_J2K,
};

/// How to code.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Reversible 5/3 wavelet, every sample restored exactly; otherwise the 9/7 wavelet.
    pub lossless: bool,
    /// For lossy coding: the target compression ratio of the one quality layer, against the
    /// samples at their precision (OpenJPEG's `-r`). A rate, not a PSNR target: OpenJPEG's
    /// PSNR is over the full precision range, so a 16-bit image using a few thousand values
    /// would meet any PSNR with almost no bits.
    pub ratio: f32,
    /// Apply the component transform (RCT when lossless, ICT when lossy) to three-component
    /// images: the DICOM data set must then say YBR_RCT or YBR_ICT (PS3.5 Table 8.2.4-1).
    pub mct: bool,
}

/// An image to code: `samples` holds `components` values per pixel, pixel by pixel, row by
/// row, each within `precision` bits (two's complement range when `signed`).
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    pub width: u32,
    pub height: u32,
    pub components: u32,
    pub precision: u32,
    pub signed: bool,
    pub samples: &'a [i32],
}

/// Why an image could not be coded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Codes `image` as a JPEG 2000 codestream.
pub fn encode(image: &Image<'_>, options: &Options) -> Result<Vec<u8>, Error> {
    let Image {
        width,
        height,
        components,
        precision,
        signed,
        samples,
    } = *image;
    if width == 0 || height == 0 {
        return Err(Error("an empty image".into()));
    }
    if !(1..=16384).contains(&components) {
        return Err(Error(format!("{components} components")));
    }
    if !(1..=31).contains(&precision) {
        return Err(Error(format!("{precision}-bit samples")));
    }
    let pixels = width as usize * height as usize;
    if samples.len() != pixels * components as usize {
        return Err(Error(format!(
            "{} samples for {width}×{height}×{components}",
            samples.len()
        )));
    }
    let (lo, hi) = if signed {
        (-(1i64 << (precision - 1)), (1i64 << (precision - 1)) - 1)
    } else {
        (0, (1i64 << precision) - 1)
    };
    if let Some(v) = samples
        .iter()
        .find(|&&v| !(lo..=hi).contains(&i64::from(v)))
    {
        return Err(Error(format!(
            "sample {v} outside the {precision}-bit range"
        )));
    }

    let parms: Vec<opj_image_comptparm> = (0..components)
        .map(|_| opj_image_comptparm {
            dx: 1,
            dy: 1,
            w: width,
            h: height,
            x0: 0,
            y0: 0,
            prec: precision,
            bpp: precision,
            sgnd: u32::from(signed),
        })
        .collect();
    let space = match components {
        1 => OPJ_CLRSPC_GRAY,
        3 => OPJ_CLRSPC_SRGB,
        _ => OPJ_CLRSPC_UNSPECIFIED,
    };
    let mut img = opj_image::create(&parms, space)
        .ok_or_else(|| Error("cannot allocate the image".into()))?;
    img.x1 = width;
    img.y1 = height;
    {
        let planes = img
            .comps_data_mut_iter()
            .ok_or_else(|| Error("the image has no components".into()))?;
        let n = components as usize;
        for (c, plane) in planes.enumerate() {
            for (dst, src) in plane.iter_mut().zip(samples[c..].iter().step_by(n)) {
                *dst = *src;
            }
        }
    }

    let mut params = parameters(width, height, components, precision, options);

    let mut errors = String::new();
    let mut sink = Sink::default();
    // SAFETY: `codec` and `stream` are created here and destroyed by `Guard` on every path;
    // `errors` and `sink` outlive both (they are declared before the guard, so dropped
    // after it), which is what the callbacks' user-data pointers need. The image and the
    // parameters are Rust values passed by pointer for the duration of each call only.
    unsafe {
        let codec = opj_create_compress(OPJ_CODEC_J2K);
        if codec.is_null() {
            return Err(Error("cannot create the encoder".into()));
        }
        let stream = opj_stream_create(1 << 16, 0);
        let guard = Guard { codec, stream };
        if stream.is_null() {
            return Err(Error("cannot create the output stream".into()));
        }
        opj_set_error_handler(
            codec,
            Some(on_error),
            (&mut errors as *mut String).cast::<c_void>(),
        );
        opj_stream_set_write_function(stream, Some(write_fn));
        opj_stream_set_skip_function(stream, Some(skip_fn));
        opj_stream_set_seek_function(stream, Some(seek_fn));
        opj_stream_set_user_data(stream, (&mut sink as *mut Sink).cast::<c_void>(), None);
        let img_ptr: *mut opj_image = &mut *img;
        let ok = opj_setup_encoder(codec, &mut params, img_ptr) != 0
            && opj_start_compress(codec, img_ptr, stream) != 0
            && opj_encode(codec, stream) != 0
            && opj_end_compress(codec, stream) != 0;
        // Destroying the stream flushes its buffer into `sink`.
        drop(guard);
        if !ok || sink.failed {
            return Err(Error(if errors.is_empty() {
                "the encoder failed".into()
            } else {
                errors.trim_end().to_owned()
            }));
        }
    }
    Ok(sink.buf)
}

/// OpenJPEG's coding parameters for `options`.
// Field by field: the type implements Drop, so struct-update syntax cannot build it.
#[allow(clippy::field_reassign_with_default)]
fn parameters(
    width: u32,
    height: u32,
    components: u32,
    precision: u32,
    options: &Options,
) -> opj_cparameters_t {
    let mut params = opj_cparameters_t::default();
    params.tcp_numlayers = 1;
    params.cp_disto_alloc = 1;
    if options.lossless {
        params.tcp_rates[0] = 0.0;
        params.irreversible = 0;
    } else {
        params.irreversible = 1;
        // A small image's headers would eat a 10:1 budget: keep at least 1 KiB of budget
        // (no rate limit at all below it; the 9/7 wavelet alone is still lossy).
        let prec_bytes = f64::from(precision.div_ceil(8));
        let raw = f64::from(width) * f64::from(height) * f64::from(components) * prec_bytes;
        let ratio = f64::from(options.ratio).min(raw / 1024.0);
        params.tcp_rates[0] = if ratio > 1.0 { ratio as f32 } else { 0.0 };
    }
    // Six resolutions need a 32×32 lowest band; small images get fewer (OpenJPEG refuses
    // more levels than the size allows).
    let mut levels = 6;
    while levels > 1 && (width.min(height) >> (levels - 1)) == 0 {
        levels -= 1;
    }
    params.numresolution = levels;
    params.tcp_mct = i8::from(options.mct && components == 3) as c_char;
    params
}

/// Destroys the codec and the stream (which flushes what it buffered).
struct Guard {
    codec: *mut opj_codec_t,
    stream: *mut opj_stream_t,
}

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: both pointers came from their `create` functions (or are null, which both
        // destroy functions accept) and are destroyed once, here.
        unsafe {
            opj_stream_destroy(self.stream);
            opj_destroy_codec(self.codec);
        }
    }
}

/// The in-memory output: bytes written at `pos`, which seeking may move backwards.
#[derive(Default)]
struct Sink {
    buf: Vec<u8>,
    pos: usize,
    failed: bool,
}

impl Sink {
    fn write(&mut self, data: &[u8]) {
        let end = self.pos + data.len();
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        self.buf[self.pos..end].copy_from_slice(data);
        self.pos = end;
    }
}

unsafe extern "C" fn write_fn(data: *mut c_void, len: usize, user: *mut c_void) -> usize {
    // SAFETY: `user` is the `Sink` set with `opj_stream_set_user_data`, alive for the
    // stream's life; `data` points to `len` bytes of the stream's buffer.
    let (sink, bytes) = unsafe {
        (
            &mut *user.cast::<Sink>(),
            core::slice::from_raw_parts(data.cast::<u8>(), len),
        )
    };
    sink.write(bytes);
    len
}

unsafe extern "C" fn skip_fn(n: i64, user: *mut c_void) -> i64 {
    // SAFETY: as in `write_fn`.
    let sink = unsafe { &mut *user.cast::<Sink>() };
    match usize::try_from(sink.pos as i64 + n) {
        Ok(p) => {
            sink.pos = p;
            n
        }
        Err(_) => {
            sink.failed = true;
            -1
        }
    }
}

unsafe extern "C" fn seek_fn(to: i64, user: *mut c_void) -> i32 {
    // SAFETY: as in `write_fn`.
    let sink = unsafe { &mut *user.cast::<Sink>() };
    match usize::try_from(to) {
        Ok(p) => {
            sink.pos = p;
            1
        }
        Err(_) => {
            sink.failed = true;
            0
        }
    }
}

unsafe extern "C" fn on_error(msg: *const c_char, user: *mut c_void) {
    // SAFETY: `user` is the `String` given to `opj_set_error_handler`, alive for the codec's
    // life; `msg` is a NUL-terminated message from the codec.
    let (errors, msg) = unsafe { (&mut *user.cast::<String>(), core::ffi::CStr::from_ptr(msg)) };
    errors.push_str(&msg.to_string_lossy());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32, c: u32, bits: u32) -> Vec<i32> {
        let max = (1i64 << bits) - 1;
        (0..w * h * c)
            .map(|i| ((i64::from(i) * 7919 + i64::from(i / c) * 31) % (max + 1)) as i32)
            .collect()
    }

    #[test]
    fn codestream_starts_with_soc_siz_and_ends_with_eoc() {
        let s = gradient(33, 17, 1, 12);
        let img = Image {
            width: 33,
            height: 17,
            components: 1,
            precision: 12,
            signed: false,
            samples: &s,
        };
        let opts = Options {
            lossless: true,
            ratio: 0.0,
            mct: false,
        };
        let out = encode(&img, &opts).expect("encodes");
        assert_eq!(&out[..4], &[0xFF, 0x4F, 0xFF, 0x51]);
        assert_eq!(&out[out.len() - 2..], &[0xFF, 0xD9]);
        // SIZ: Rsiz, Xsiz, Ysiz (A.5.1), and Ssiz = precision - 1.
        assert_eq!(u16::from_be_bytes([out[6], out[7]]), 0);
        assert_eq!(u32::from_be_bytes([out[8], out[9], out[10], out[11]]), 33);
        assert_eq!(u32::from_be_bytes([out[12], out[13], out[14], out[15]]), 17);
        assert_eq!(out[42], 11);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let s = vec![0i32; 10];
        let mk = |w, h, c, p, samples: &[i32]| {
            encode(
                &Image {
                    width: w,
                    height: h,
                    components: c,
                    precision: p,
                    signed: false,
                    samples,
                },
                &Options {
                    lossless: true,
                    ratio: 0.0,
                    mct: false,
                },
            )
        };
        assert!(mk(0, 1, 1, 8, &[]).is_err());
        assert!(mk(3, 3, 1, 8, &s).is_err());
        assert!(mk(10, 1, 1, 0, &s).is_err());
        assert!(mk(10, 1, 1, 2, &[4; 10]).is_err());
        assert!(mk(10, 1, 1, 8, &s).is_ok());
        assert!(mk(1, 1, 1, 8, &s[..1]).is_ok());
    }
}

#[cfg(test)]
mod sizes {
    use super::*;

    #[test]
    fn every_size_and_mode_encodes() {
        for (w, h, c, bits, signed) in [
            (128u32, 128u32, 1u32, 16u32, true),
            (100, 100, 3, 8, false),
            (3, 3, 3, 8, false),
            (64, 64, 1, 12, false),
            (1, 1, 1, 8, false),
        ] {
            let max = 1i64 << (bits - u32::from(signed));
            let s: Vec<i32> = (0..(w * h * c) as i64)
                .map(|i| ((i * 7919 % max) - if signed { max / 2 } else { 0 }) as i32)
                .collect();
            for (lossless, mct) in [(true, false), (false, false), (true, true), (false, true)] {
                let img = Image {
                    width: w,
                    height: h,
                    components: c,
                    precision: bits,
                    signed,
                    samples: &s,
                };
                let out = encode(
                    &img,
                    &Options {
                        lossless,
                        ratio: 10.0,
                        mct,
                    },
                )
                .expect("encodes");
                assert_eq!(&out[..2], &[0xFF, 0x4F]);
            }
        }
    }
}
