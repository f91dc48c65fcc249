//! The JPEG-LS decoder never panics or hangs on arbitrary bytes, and whatever it decodes
//! re-encodes and decodes to the same samples (lossless) or within NEAR.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = wado_codec::jpegls::decode(data) else {
        return;
    };
    if img.samples.len() > 1 << 16 {
        return;
    }
    let opts = wado_codec::jpegls::EncodeOptions {
        near: 0,
        interleave: if img.components == 3 { 2 } else { 0 },
    };
    let enc = wado_codec::jpegls::encode(
        &img.samples,
        img.width,
        img.height,
        img.components,
        img.bits,
        opts,
    )
    .expect("a decoded image re-encodes");
    let back = wado_codec::jpegls::decode(&enc).expect("our stream decodes");
    assert_eq!(back.samples, img.samples);
});
