//! A bounded load generator for loopback tests: `clients` threads, each with its own
//! keep-alive connection, send GETs for `duration` and record statuses, latencies and
//! transport failures (resets, timeouts). Used by `wado-load` and by the request-limit test.

use std::time::{Duration, Instant};

/// What a load run saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// 200 responses.
    pub ok: u64,
    /// 503 responses.
    pub busy: u64,
    /// Other statuses, with their codes.
    pub other: Vec<u16>,
    /// Transport failures (connection reset, timeout, ...).
    pub errors: Vec<String>,
    /// Latencies of the 200 responses, sorted.
    pub ok_latencies: Vec<Duration>,
    /// Wall time.
    pub elapsed: Duration,
}

impl LoadReport {
    /// The q-quantile (0..=1) of the 200 responses' latency.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.ok_latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.ok_latencies.len() - 1) as f64 * q).round() as usize;
        self.ok_latencies[i]
    }
}

/// Runs `clients` clients against `url` for `duration`, each request bounded by `timeout`.
pub fn run(
    url: &str,
    accept: &str,
    clients: usize,
    duration: Duration,
    timeout: Duration,
) -> LoadReport {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let url = url.to_owned();
            let accept = accept.to_owned();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(timeout))
                        .build()
                        .into();
                    let mut r = LoadReport::default();
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        match agent.get(&url).header("accept", &accept).call() {
                            Ok(mut resp) => {
                                let status = resp.status().as_u16();
                                let body =
                                    resp.body_mut().with_config().limit(1 << 30).read_to_vec();
                                match (status, body) {
                                    (200, Ok(_)) => {
                                        r.ok += 1;
                                        r.ok_latencies.push(t.elapsed());
                                    }
                                    (503, Ok(_)) => r.busy += 1,
                                    (s, Ok(_)) => r.other.push(s),
                                    (_, Err(e)) => r.errors.push(e.to_string()),
                                }
                            }
                            Err(e) => r.errors.push(e.to_string()),
                        }
                    }
                    r
                })
                .expect("spawn a client thread")
        })
        .collect();
    let mut total = LoadReport::default();
    for h in handles {
        let r = h.join().unwrap_or_default();
        total.ok += r.ok;
        total.busy += r.busy;
        total.other.extend(r.other);
        total.errors.extend(r.errors);
        total.ok_latencies.extend(r.ok_latencies);
    }
    total.ok_latencies.sort();
    total.elapsed = started.elapsed();
    total
}

/// Peak resident memory (VmHWM) of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
