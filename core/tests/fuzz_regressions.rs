//! Inputs the fuzzers found, kept as regression tests: each must be rejected cleanly, with a
//! reason, and without huge allocations.

use wado_core::layout::{prepare, LayoutRecord};

#[test]
fn unknown_vr_with_a_4gb_length_is_rejected_before_parsing() {
    // Garbage VR bytes followed by a 4-byte length of 0xFFFFFFF0: dicom-rs reserves that much
    // before reading; the scanner must reject the file first.
    let bytes = include_bytes!("fuzz_regressions/prepare-oom-4gb-length-behind-unknown-vr.dcm");
    let err = prepare(bytes, &LayoutRecord::new("http://x", "AE")).expect_err("rejected");
    assert!(err.contains("past the end"), "{err}");
}
