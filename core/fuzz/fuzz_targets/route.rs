//! The path parser never panics, and what it accepts holds only valid UIDs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let path = format!("/dcm4chee-arc/aets/DCM4CHEE/rs/{s}");
    if let Ok(Some(route)) = wado_core::fuzzing::parse_path(&path) {
        if let Some(t) = route.resource.target() {
            assert!(wado_core::fuzzing::Uid::parse(t.study().as_str()).is_ok());
            assert!(!t.path().contains(".."));
        }
    }
    let _ = wado_core::fuzzing::parse_frame_list(s);
});
