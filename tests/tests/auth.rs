//! Access control end to end: `--tokens-file`, the same token on every route, CORS preflights
//! answered without credentials (browsers send none on them).
#![allow(clippy::unwrap_used)]

use wado_tests::*;

#[test]
fn tokens_file_guards_every_route_and_preflights_pass() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let file = corpus().join("emr_10frame_ele.dcm");
    assert!(import(&data, &[&file]).status.success());
    let tokens = write_temp(
        dir.path(),
        "tokens",
        b"# viewer\nviewer-token-0123456789 DCM4CHEE\n",
    );
    let server = Server::start(
        &data,
        &[
            "--tokens-file",
            tokens.to_str().unwrap(),
            "--cors-origin",
            "https://viewer.example",
        ],
    );
    let (st, se, sop) = uids(&file);
    let inst = format!("{}/studies/{st}/series/{se}/instances/{sop}", server.root());
    for url in [
        format!("{inst}/metadata"),
        format!("{inst}/frames/2"),
        format!("{inst}/bulkdata/7FE00010"),
        inst.clone(),
    ] {
        let none = get(&url, None);
        assert_eq!(none.status, 401, "{url}");
        assert!(
            none.header("www-authenticate").starts_with("Bearer"),
            "{url}"
        );
        let ok = request(
            "GET",
            &url,
            &[("authorization", "Bearer viewer-token-0123456789")],
        );
        assert_eq!(ok.status, 200, "{url}");
    }
    let pre = request(
        "OPTIONS",
        &format!("{inst}/frames/1"),
        &[
            ("origin", "https://viewer.example"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "authorization, accept"),
        ],
    );
    assert_eq!(pre.status, 204);
    assert!(pre
        .header("access-control-allow-headers")
        .to_ascii_lowercase()
        .contains("authorization"));
}
