//! Graceful shutdown: on SIGTERM the server stops accepting, finishes what is in flight, and
//! exits; `--shutdown-timeout` bounds the wait.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use wado_tests::*;

fn sigterm(pid: u32) {
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

fn port_of(server: &Server) -> u16 {
    server.base.rsplit(':').next().unwrap().parse().unwrap()
}

fn wait_exit(server: &mut Server, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !server.is_running() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn series_with_copies(n: usize) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempdir();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let copies = make_copies(&src, n);
    let data = dir.path().join("data");
    assert!(import(&data, &[&src]).status.success());
    let (st, se, _) = uids(&copies[0]);
    (dir, data, format!("studies/{st}/series/{se}"))
}

#[test]
fn sigterm_finishes_requests_in_flight_and_refuses_new_ones() {
    let (_dir, data, series) = series_with_copies(300);
    let mut server = Server::start(&data, &[]);
    let url = format!("{}/{series}", server.root());
    let (tx, rx) = mpsc::channel();
    let client = std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let resp = agent
            .get(&url)
            .header(
                "accept",
                "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
            )
            .call()
            .unwrap();
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        let mut reader = resp.into_body().into_reader();
        let mut body = vec![0u8; 64 * 1024];
        reader.read_exact(&mut body).unwrap();
        tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(800)); // the signal arrives meanwhile
        reader.read_to_end(&mut body).unwrap();
        (ct, body)
    });
    rx.recv().unwrap();
    sigterm(server.pid());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect(("127.0.0.1", port_of(&server))).is_err(),
        "no new connections after SIGTERM"
    );
    let (ct, body) = client.join().unwrap();
    let boundary = wado_core::wire::multipart::boundary_of(&ct).unwrap();
    let parts =
        wado_core::wire::multipart::parse(&boundary, &body).expect("the whole multipart body");
    assert_eq!(parts.len(), 300, "the request in flight finished");
    assert!(
        wait_exit(&mut server, Duration::from_secs(10)),
        "the server exits once done"
    );
}

#[test]
fn shutdown_timeout_bounds_the_wait_for_a_stalled_client() {
    let (_dir, data, series) = series_with_copies(300);
    let mut server = Server::start(&data, &["--shutdown-timeout", "1"]);
    // A client that asks for 12 MB and never reads past the headers.
    let mut stalled = TcpStream::connect(("127.0.0.1", port_of(&server))).unwrap();
    use std::io::Write;
    write!(stalled, "GET /dcm4chee-arc/aets/DCM4CHEE/rs/{series} HTTP/1.1\r\nHost: x\r\nAccept: multipart/related; type=\"application/dicom\"; transfer-syntax=*\r\n\r\n").unwrap();
    let mut first = [0u8; 12];
    stalled.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let t = Instant::now();
    sigterm(server.pid());
    assert!(
        wait_exit(&mut server, Duration::from_secs(10)),
        "exits despite the stalled client"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "after waiting about the timeout: {:?}",
        t.elapsed()
    );
}
