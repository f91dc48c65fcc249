//! Prometheus metrics (text exposition format 0.0.4) of the native server, at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters and gauges of the server.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    in_flight: AtomicU64,
    rejected: AtomicU64,
    bytes_sent: AtomicU64,
    transcode_micros: AtomicU64,
    transcoded: AtomicU64,
    limit: AtomicU64,
}

impl Metrics {
    /// Records the configured limit of requests in flight (0: unlimited).
    pub fn set_limit(&self, n: u64) {
        self.limit.store(n, Ordering::Relaxed);
    }

    /// A request started.
    pub fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A request ended (its body fully sent or dropped).
    pub fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// A request was turned away by the limit.
    pub fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.count("limit", 503);
    }

    /// A response with this resource kind and status.
    pub fn count(&self, resource: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((resource, status))
            .or_default() += 1;
    }

    /// Body bytes sent.
    pub fn sent(&self, n: u64) {
        self.bytes_sent.fetch_add(n, Ordering::Relaxed);
    }

    /// The time a response that converted pixel data or encodings took to complete.
    pub fn transcode(&self, micros: u64) {
        self.transcoded.fetch_add(1, Ordering::Relaxed);
        self.transcode_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP wado_requests_total Requests answered, by resource kind and status.\n# TYPE wado_requests_total counter\n");
        for ((resource, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                s,
                "wado_requests_total{{resource=\"{resource}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(s, "# HELP wado_requests_in_flight Requests being answered (bodies still being sent).\n# TYPE wado_requests_in_flight gauge\nwado_requests_in_flight {}", self.in_flight.load(Ordering::Relaxed));
        let _ = writeln!(s, "# HELP wado_requests_limit The most requests in flight (--max-requests); 0 is unlimited.\n# TYPE wado_requests_limit gauge\nwado_requests_limit {}", self.limit.load(Ordering::Relaxed));
        let _ = writeln!(s, "# HELP wado_requests_rejected_total Requests turned away by --max-requests.\n# TYPE wado_requests_rejected_total counter\nwado_requests_rejected_total {}", self.rejected.load(Ordering::Relaxed));
        let _ = writeln!(s, "# HELP wado_response_bytes_total Body bytes sent.\n# TYPE wado_response_bytes_total counter\nwado_response_bytes_total {}", self.bytes_sent.load(Ordering::Relaxed));
        let _ = writeln!(
            s,
            "# HELP wado_transcode_seconds Time to complete responses that converted transfer syntaxes.\n# TYPE wado_transcode_seconds summary\nwado_transcode_seconds_sum {:.6}\nwado_transcode_seconds_count {}",
            self.transcode_micros.load(Ordering::Relaxed) as f64 / 1e6,
            self.transcoded.load(Ordering::Relaxed)
        );
        s
    }
}
