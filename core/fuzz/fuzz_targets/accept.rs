//! The Accept parser and negotiation, for every resource category, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wado_core::fuzzing::{choose_ts, Category, Negotiation};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (header, query) = s.split_once('\u{0}').unwrap_or((s, ""));
    for cat in [
        Category::Instances { instance: true },
        Category::Instances { instance: false },
        Category::Metadata,
        Category::Frames,
        Category::BulkData,
    ] {
        if let Ok(n) = Negotiation::new(Some(header), Some(query).filter(|q| !q.is_empty()), cat) {
            for (media, multipart) in n.media_choices() {
                let wanted = n.wanted(media, multipart);
                let _ = choose_ts(media, &wanted, "1.2.840.10008.1.2.4.50", |_, _| true);
            }
        }
    }
    let _ = wado_core::fuzzing::choose_encoding(Some(s));
});
