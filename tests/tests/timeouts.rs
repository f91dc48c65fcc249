//! What one connection may cost (issue 12): slow or silent clients lose their connection, a
//! client that stops reading loses its request slot. Against the native server, over real
//! sockets; the timeouts are set to a second so the test stays short.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use wado_tests::*;

fn port_of(server: &Server) -> u16 {
    server.base.rsplit(':').next().unwrap().parse().unwrap()
}

/// Waits until the server closes `s` (EOF or reset); the time it took, or `None` after `max`.
fn closed_within(s: &mut TcpStream, max: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 65536];
    while start.elapsed() < max {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn slow_headers_and_idle_connections_are_closed() {
    let dir = tempdir();
    let data = dir.path().join("data");
    assert!(import(&data, &[&corpus().join("ct_small_ele.dcm")])
        .status
        .success());
    let server = Server::start_native(&data, &["--header-timeout", "1"]);
    let port = port_of(&server);
    // Headers dribbled and never finished (slowloris): closed after about a second.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let t = closed_within(&mut slow, Duration::from_secs(10)).expect("closed");
    assert!(t < Duration::from_secs(5), "{t:?}");
    // Nothing sent at all: closed too.
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(10)).is_some());
    // A kept-alive connection left idle after its response: closed too.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = [0u8; 512];
    let n = idle.read(&mut got).unwrap();
    assert!(String::from_utf8_lossy(&got[..n]).starts_with("HTTP/1.1 200"));
    let t = closed_within(&mut idle, Duration::from_secs(10)).expect("idle closed");
    assert!(t < Duration::from_secs(5), "{t:?}");
    // Ordinary requests are unaffected.
    assert_eq!(get(&format!("{}/health", server.base), None).status, 200);
}

#[test]
fn a_client_that_stops_reading_loses_its_connection_and_its_slot() {
    let dir = tempdir();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let copies = make_copies(&src, 1000); // 39 MB as one series, far beyond socket buffers
    let data = dir.path().join("data");
    assert!(import(&data, &[&src]).status.success());
    let (st, se, _) = uids(&copies[0]);
    let server = Server::start_native(&data, &["--max-requests", "1", "--write-timeout", "1"]);
    let port = port_of(&server);
    let series = format!("{}/studies/{st}/series/{se}", server.root());
    // A client asks for the series and reads nothing: its response stalls in full buffers.
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let path = series.trim_start_matches(&server.base);
    write!(
        stalled,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: multipart/related; type=\"application/dicom\"; transfer-syntax=*\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Its slot is taken meanwhile: the limit answers 503.
    assert_eq!(get(&format!("{}/metadata", series), None).status, 503);
    // Within a few seconds the stalled response is dropped and the slot is free again.
    let start = Instant::now();
    loop {
        let status = get(&format!("{}/metadata", series), None).status;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the stalled client kept its slot"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // And the stalled connection was closed: draining it ends, short of the whole series.
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stalled.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    assert!(total < 39_000_000, "{total} bytes: the response was cut");
}
