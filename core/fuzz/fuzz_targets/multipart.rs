//! The multipart parser never panics, whatever the boundary and body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let n = (data[0] as usize % 16).min(data.len() - 1) + 1;
    let Ok(boundary) = std::str::from_utf8(&data[1..n.min(data.len())]) else {
        return;
    };
    if boundary.is_empty() {
        return;
    }
    if let Ok(parts) = wado_core::wire::multipart::parse(boundary, &data[n.min(data.len())..]) {
        for p in parts {
            let _ = p.header("content-type");
        }
    }
    let _ = wado_core::wire::multipart::boundary_of(&String::from_utf8_lossy(data));
});
