//! Two `wado import` runs into one data directory at once (issue 12): every instance of both
//! ends up in the series metadata and the counts, each committed to the catalog when it is
//! stored (before, each run rebuilt the metadata from its own listing at its end, and an
//! earlier listing written last dropped the other run's instances).
#![allow(clippy::unwrap_used)]

use std::process::Command;
use wado_tests::*;

#[test]
fn two_imports_at_once_keep_every_instance_in_the_series_metadata() {
    let dir = tempdir();
    let all = dir.path().join("all");
    std::fs::create_dir(&all).unwrap();
    let copies = make_copies(&all, 400);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    for (i, f) in copies.iter().enumerate() {
        let to = if i % 2 == 0 { &a } else { &b };
        std::fs::rename(f, to.join(f.file_name().unwrap())).unwrap();
    }
    let (st, se, _) = uids(&a.join(copies[0].file_name().unwrap()));
    for round in 0..3 {
        let data = dir.path().join(format!("data{round}"));
        let start = |src: &std::path::Path| {
            Command::new(wado_bin())
                .args(["import", "--data"])
                .arg(&data)
                .arg(src)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let (mut one, mut two) = (start(&a), start(&b));
        assert!(one.wait().unwrap().success());
        assert!(two.wait().unwrap().success());
        let server = Server::start_native(&data, &[]);
        let r = get(
            &format!("{}/studies/{st}/series/{se}/metadata", server.root()),
            None,
        );
        let list: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            list.len(),
            400,
            "round {round}: every instance in the series metadata"
        );
        let r = get(
            &format!("{}/studies?StudyInstanceUID={st}", server.root()),
            None,
        );
        let found: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            found[0]["00201208"]["Value"][0], 400,
            "round {round}: the count"
        );
    }
}
