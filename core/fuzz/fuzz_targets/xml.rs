//! The PS3.19 writer over arbitrary JSON never panics and writes well-formed text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let mut out = String::new();
    if wado_core::dicom::xml::write_document(&v, &mut out).is_ok() {
        assert!(out.ends_with("</NativeDicomModel>\n"));
    }
});
