//! Import-time derivation over arbitrary bytes: the scanner, the frame-index builder and the
//! DICOM JSON writer never panic; what they accept serialises and parses back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wado_core::layout::{InstanceIndex, LayoutRecord};

fuzz_target!(|data: &[u8]| {
    // Give most inputs a Part-10 prefix so the fuzzer reaches the data set quickly.
    let mut bytes = Vec::with_capacity(data.len() + 160);
    if data.first() != Some(&0xFF) {
        bytes.extend_from_slice(&[0u8; 128]);
        bytes.extend_from_slice(b"DICM");
        let ts = if data.first().is_some_and(|b| b % 2 == 0) {
            "1.2.840.10008.1.2.1\0"
        } else {
            "1.2.840.10008.1.2\0\0"
        };
        bytes.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I', ts.len() as u8, 0x00]);
        bytes.extend_from_slice(ts.as_bytes());
    }
    bytes.extend_from_slice(data);
    let layout = LayoutRecord::new("http://fuzz", "AE");
    if let Ok(p) = wado_core::layout::prepare(&bytes, &layout) {
        let json = p.index.to_json();
        let back = InstanceIndex::from_json("fuzz", &json).expect("an index we wrote parses back");
        assert_eq!(back.source.size, bytes.len() as u64);
        let _: serde_json::Value =
            serde_json::from_str(back.metadata.get()).expect("metadata is JSON");
    }
});
