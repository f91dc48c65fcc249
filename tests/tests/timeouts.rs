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

/// Protocol detection has a deadline too: a connection that sends one byte, or 23 of the 24
/// bytes of the HTTP/2 preface, and then nothing is closed (hyper's own header timer starts
/// only once it knows the version).
#[test]
fn a_connection_that_stops_before_its_first_request_is_closed() {
    let dir = tempdir();
    let data = dir.path().join("data");
    assert!(import(&data, &[&corpus().join("ct_small_ele.dcm")])
        .status
        .success());
    let server = Server::start_native(&data, &["--header-timeout", "1"]);
    let port = port_of(&server);
    for start in [&b"G"[..], &b"PRI * HTTP/2.0\r\n\r\nSM\r\n"[..]] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(start).unwrap();
        let t = closed_within(&mut s, Duration::from_secs(10));
        assert!(
            t.is_some_and(|t| t < Duration::from_secs(5)),
            "{:?}: {t:?}",
            String::from_utf8_lossy(start)
        );
    }
    assert_eq!(get(&format!("{}/health", server.base), None).status, 200);
}

/// A STOW-RS body that stops mid-way fails after the header timeout (the parts before it
/// stored), and its request slot is free again.
#[test]
fn a_stow_body_that_stops_frees_its_slot() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let server = Server::start_native(
        &data,
        &[
            "--header-timeout",
            "1",
            "--max-requests",
            "1",
            "--allow-anonymous-writes",
        ],
    );
    let port = port_of(&server);
    let file = std::fs::read(corpus().join("ct_small_ele.dcm")).unwrap();
    let b = "stall-boundary";
    let mut body = format!("--{b}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
    body.extend_from_slice(&file);
    body.extend_from_slice(
        format!("\r\n--{b}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(&file[..1000]);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /dcm4chee-arc/aets/DCM4CHEE/rs/studies HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/related; type=\"application/dicom\"; boundary={b}\r\nContent-Length: {}\r\n\r\n",
        body.len() + 100_000
    )
    .unwrap();
    s.write_all(&body).unwrap();
    // The request holds the one slot while its body is awaited, then lets it go.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&format!("{}/studies", server.root()), None).status, 503);
    let start = Instant::now();
    while get(&format!("{}/studies", server.root()), None).status != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the stalled STOW kept its slot"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Its answer says why, and the whole instance before the break is stored.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("sent nothing"), "{answer}");
    let r = get(&format!("{}/studies", server.root()), None);
    let list: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

/// An HTTP/2 client that keeps its flow-control window at zero receives nothing, so no write
/// ever stalls on the socket: its response still loses the connection after the write
/// timeout, and its request slot is free again.
#[test]
fn an_http2_client_with_a_shut_window_loses_its_connection_and_slot() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("emr_10frame_ele.dcm");
    assert!(import(&data, &[&file]).status.success());
    let server = Server::start_native(&data, &["--max-requests", "1", "--write-timeout", "1"]);
    let port = port_of(&server);
    let (st, se, sop) = uids(&file);
    let path = format!("/dcm4chee-arc/aets/DCM4CHEE/rs/studies/{st}/series/{se}/instances/{sop}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let closed = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (client, connection) = h2::client::Builder::new()
            .initial_window_size(0)
            .initial_connection_window_size(65_535)
            .handshake::<_, bytes::Bytes>(tcp)
            .await
            .unwrap();
        let conn = tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let req = http::Request::get(format!("http://127.0.0.1:{port}{path}"))
            .header(
                "accept",
                "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
            )
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        // The body never comes (the window stays shut); the server closes the connection.
        let started = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(15), conn).await;
        (ended.is_ok(), started.elapsed())
    });
    assert!(closed.0, "the connection stayed open");
    assert!(closed.1 < Duration::from_secs(10), "{:?}", closed.1);
    assert_eq!(
        get(&format!("{}/studies/{st}/metadata", server.root()), None).status,
        200
    );
}
