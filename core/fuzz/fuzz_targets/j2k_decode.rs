//! Arbitrary bytes as a JPEG 2000 or HTJ2K frame: openjp2 (what serves stored JPEG 2000 and
//! HTJ2K, in full and at reduced resolution for thumbnails) returns an error or samples,
//! never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wado_codec::{decode_frame, decode_frame_reduced, ts, PixelInfo};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let info = PixelInfo {
        rows: u16::from(data[0] % 64) + 1,
        columns: u16::from(data[1] % 64) + 1,
        samples_per_pixel: if data[2] & 1 == 1 { 3 } else { 1 },
        bits_allocated: if data[2] & 2 == 2 { 16 } else { 8 },
        bits_stored: if data[2] & 2 == 2 { 12 } else { 8 },
        pixel_representation: u16::from(data[2] & 4 == 4),
        photometric_interpretation: "MONOCHROME2".into(),
        planar_configuration: 0,
        number_of_frames: 1,
    };
    let syntax = if data[2] & 8 == 8 { ts::HTJ2K_LOSSLESS } else { ts::JPEG_2000_LOSSLESS };
    let _ = decode_frame(&info, syntax, &data[3..]);
    let _ = decode_frame_reduced(&info, syntax, &data[3..], 8);
});
