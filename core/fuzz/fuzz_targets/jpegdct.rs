//! The JPEG DCT decoder never panics or hangs on arbitrary bytes, and whatever it decodes
//! re-encodes (8 or 12 bits, 1 or 3 components) into a stream it decodes again to the same
//! size.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = wado_codec::jpeg::dct::decode(data) else {
        return;
    };
    if img.samples.len() > 1 << 16 || !matches!(img.components, 1 | 3) {
        return;
    }
    let enc = wado_codec::jpeg::dct::encode(
        wado_codec::jpeg::dct::Samples::Words(&img.samples),
        img.width,
        img.height,
        img.components,
        img.precision,
        wado_codec::jpeg::dct::EncodeOptions {
            quality: 90,
            baseline: img.precision == 8,
            chroma_422: img.components == 3,
        },
    )
    .expect("a decoded image re-encodes");
    let back = wado_codec::jpeg::dct::decode(&enc).expect("our stream decodes");
    assert_eq!(
        (back.width, back.height, back.components),
        (img.width, img.height, img.components)
    );
});
