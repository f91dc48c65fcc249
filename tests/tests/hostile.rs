//! Hostile input over real HTTP: never a 5xx, never a crash; the server keeps serving.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use wado_tests::*;

/// Sends raw bytes and returns the status code of the answer (0 if the connection was closed
/// without one, which hyper does for garbage that is not HTTP).
fn raw(port: u16, request: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let head = String::from_utf8_lossy(&buf[..buf.len().min(64)]).to_string();
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn hostile_requests_get_4xx_never_5xx() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("emr_10frame_ele.dcm");
    assert!(import(&data, &[&file]).status.success());
    let mut server = Server::start(&data, &[]);
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let (st, se, sop) = uids(&file);
    let inst = format!("/dcm4chee-arc/aets/DCM4CHEE/rs/studies/{st}/series/{se}/instances/{sop}");
    let million = (1..=1_000_000u32)
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let long_path = format!(
        "/dcm4chee-arc/aets/DCM4CHEE/rs/studies/{}",
        "1.".repeat(50_000)
    );
    let cases: Vec<(String, Vec<u8>)> = vec![
        ("huge frame number".into(), format!("GET {inst}/frames/99999999999999999999999 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()),
        ("a million frames".into(), format!("GET {inst}/frames/{million} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()),
        ("frame list of commas".into(), format!("GET {inst}/frames/,,,, HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()),
        ("negative frame".into(), format!("GET {inst}/frames/-1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()),
        ("dot-dot".into(), b"GET /dcm4chee-arc/aets/DCM4CHEE/rs/studies/../../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec()),
        ("encoded slash".into(), b"GET /dcm4chee-arc/aets/DCM4CHEE/rs/studies/1.2%2F..%2F3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec()),
        ("encoded NUL".into(), b"GET /dcm4chee-arc/aets/DCM4CHEE/rs/studies/1.2%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec()),
        ("very long URL".into(), format!("GET {long_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()),
        ("oversized header".into(), format!("GET {inst} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n", "a".repeat(1 << 20)).into_bytes()),
        ("malformed Accept".into(), format!("GET {inst} HTTP/1.1\r\nHost: x\r\nAccept: ;;;\"\",,,q=zz;;type=\r\nConnection: close\r\n\r\n").into_bytes()),
        ("huge Accept".into(), format!("GET {inst}/metadata HTTP/1.1\r\nHost: x\r\nAccept: {}\r\nConnection: close\r\n\r\n", "application/x;q=0.1,".repeat(5000)).into_bytes()),
        ("bad Accept-Encoding".into(), format!("GET {inst}/metadata HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip;q=abc, *;q=-1\r\nConnection: close\r\n\r\n").into_bytes()),
        ("bad Range".into(), format!("GET {inst} HTTP/1.1\r\nHost: x\r\nAccept: application/dicom\r\nRange: bytes=-0,abc\r\nConnection: close\r\n\r\n").into_bytes()),
        ("bad If-None-Match".into(), format!("GET {inst}/metadata HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"\r\nConnection: close\r\n\r\n").into_bytes()),
        ("bad query".into(), format!("GET {inst}/metadata?accept=%ZZ&&&=== HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()),
        ("POST with a body".into(), format!("POST {inst} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").into_bytes()),
        ("DELETE".into(), format!("DELETE {inst} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()),
        ("not HTTP".into(), b"\x00\x01\x02garbage\r\n\r\n".to_vec()),
        ("bad Host".into(), format!("GET {inst}/metadata HTTP/1.1\r\nHost: \"><script>\r\nConnection: close\r\n\r\n").into_bytes()),
    ];
    for (name, req) in &cases {
        let status = raw(port, req);
        assert!(status < 500, "{name}: {status}");
        let want: u16 = match name.as_str() {
            "a million frames" | "oversized header" => 431,
            "very long URL" => 414,
            "malformed Accept" | "huge Accept" => 406,
            "POST with a body" => 405,
            // Deleting takes the permission to write, which nobody has here.
            "DELETE" => 403,
            "bad Accept-Encoding"
            | "bad Range"
            | "bad If-None-Match"
            | "bad query"
            | "bad Host" => 200,
            _ => 400,
        };
        assert_eq!(status, want, "{name}");
        assert!(server.is_running(), "{name}: the server died");
    }
    // Still serving.
    let r = get(&format!("{}{inst}/frames/1", server.base), None);
    assert_eq!(r.status, 200);
}
