//! The STOW-RS part reader (`wire::parts`), fed a body in arbitrary chunks: it never panics,
//! never holds more than a chunk and a header block, and gives exactly what the whole-body
//! parser (`wire::multipart::parse`) reads from the same body, or an error where it fails.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wado_core::wire::multipart;
use wado_core::wire::parts::{Event, PartReader};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    // First byte: the boundary's length; second: the chunk size; then the boundary, the body.
    let n = usize::from(data[0] % 12) + 1;
    let step = usize::from(data[1]) + 1;
    let Some(boundary) = data.get(2..2 + n).and_then(|b| std::str::from_utf8(b).ok()) else {
        return;
    };
    if boundary.is_empty() || boundary.contains(['\r', '\n']) {
        return;
    }
    let body = &data[2 + n..];
    let mut reader = PartReader::new(boundary);
    let mut parts: Vec<(Vec<(String, String)>, Vec<u8>)> = Vec::new();
    let mut failed = false;
    let mut chunks = body.chunks(step);
    'read: loop {
        loop {
            match reader.next_event() {
                Ok(Some(Event::Head(h))) => parts.push((h, Vec::new())),
                Ok(Some(Event::Data(d))) => match parts.last_mut() {
                    Some(p) => p.1.extend_from_slice(&d),
                    None => panic!("data before any part"),
                },
                Ok(Some(Event::End)) => {}
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'read;
                }
            }
        }
        if reader.closed() {
            break;
        }
        match chunks.next() {
            Some(c) => reader.feed(c),
            None => {
                reader.finish();
                match reader.next_event() {
                    Ok(None) => break,
                    Ok(Some(_)) => continue,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
        }
    }
    if let (Ok(want), false) = (multipart::parse(boundary, body), failed) {
        assert_eq!(parts.len(), want.len(), "part count");
        for (got, want) in parts.iter().zip(&want) {
            assert_eq!(got.1, want.body, "part bytes");
        }
    }
});
