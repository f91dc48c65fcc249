//! `wado-load URL CLIENTS SECONDS [PID]`: a bounded loopback load run (GET with
//! `transfer-syntax=*` multipart DICOM, or the Accept in `WADO_LOAD_ACCEPT`), printing status counts, transport errors, the admitted
//! requests' p50/p99 latency and, with PID, the server's peak RSS.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: wado-load URL CLIENTS SECONDS [SERVER_PID]");
        std::process::exit(2);
    }
    let url = &args[1];
    let clients: usize = args[2].parse().unwrap();
    let secs: u64 = args[3].parse().unwrap();
    assert!(
        url.starts_with("http://127.") || url.starts_with("http://localhost"),
        "loopback only"
    );
    assert!(
        clients <= 2000 && secs <= 120,
        "bounded: at most 2000 clients for 120 s"
    );
    let accept = std::env::var("WADO_LOAD_ACCEPT").unwrap_or_else(|_| {
        "multipart/related; type=\"application/dicom\"; transfer-syntax=*".into()
    });
    let r = wado_tests::load::run(
        url,
        &accept,
        clients,
        Duration::from_secs(secs),
        Duration::from_secs(30),
    );
    println!(
        "{} clients, {:.1} s: 200 x {}, 503 x {}, other {:?}, transport errors {} (first: {:?})",
        clients,
        r.elapsed.as_secs_f64(),
        r.ok,
        r.busy,
        r.other,
        r.errors.len(),
        r.errors.first()
    );
    println!(
        "admitted: p50 {:.1} ms, p99 {:.1} ms; {:.0} req/s admitted",
        r.quantile(0.5).as_secs_f64() * 1e3,
        r.quantile(0.99).as_secs_f64() * 1e3,
        r.ok as f64 / r.elapsed.as_secs_f64()
    );
    if let Some(pid) = args.get(4).and_then(|p| p.parse().ok()) {
        println!(
            "server peak RSS: {} KiB",
            wado_tests::load::peak_rss_kib(pid).unwrap_or(0)
        );
    }
}
