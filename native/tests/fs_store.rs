//! The storage conformance suite against the local-directory store, plus what only a file
//! system can get wrong.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use wado_core::store::{conformance, Store};
use wado_native::fs_store::FsStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_store_passes_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path()).unwrap();
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_files_are_invisible_and_keys_stay_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path().join("root")).unwrap();
    store
        .put("a/b.dcm", Bytes::from_static(b"x"))
        .await
        .unwrap();
    // A leftover of a killed writer.
    std::fs::write(dir.path().join("root/a/.tmp-b.dcm-1-0"), b"partial").unwrap();
    let keys: Vec<String> = store
        .list("a/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, vec!["a/b.dcm"]);
    // A file outside the root is unreachable through any key.
    std::fs::write(dir.path().join("secret"), b"s").unwrap();
    assert!(store.get("../secret").await.is_err());
    assert!(store.get("a/../../secret").await.is_err());
}

/// A file replaced (renamed over, as every write does) while it is being streamed: the stream
/// gives the old file whole, never the first chunks of one and the rest of the other, even at
/// the same size (a corrected name of the same length).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_one_version_of_the_object() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path()).unwrap();
    let old = Bytes::from(vec![b'o'; 300_000]);
    let new = Bytes::from(vec![b'n'; 300_000]);
    store.put("s/x.dcm", old.clone()).await.unwrap();
    let mut s = store
        .stream_range("s/x.dcm", 0..300_000, 65_536)
        .expect("streams");
    let mut got = s.next().await.unwrap().unwrap().to_vec();
    store.put("s/x.dcm", new.clone()).await.unwrap();
    while let Some(c) = s.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(got.len(), old.len());
    assert!(got == old, "the stream spliced the replacement in");
    assert_eq!(store.get("s/x.dcm").await.unwrap().unwrap(), new);
}

/// `put_new_all` where one name is taken (another writer's object): an error, the other
/// writer's object untouched, and none of this call's other files left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_new_all_over_a_taken_name_fails_whole_and_keeps_the_other_object() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path()).unwrap();
    store
        .put_new("s/i/b.index.json", Bytes::from_static(b"theirs"))
        .await
        .unwrap();
    let r = store
        .put_new_all(vec![
            ("s/i/a.dcm".to_owned(), Bytes::from_static(b"ours")),
            (
                "s/i/b.index.json".to_owned(),
                Bytes::from_static(b"ours too"),
            ),
        ])
        .await;
    assert!(r.is_err(), "a taken name is an error");
    assert_eq!(
        store.get("s/i/b.index.json").await.unwrap().as_deref(),
        Some(&b"theirs"[..]),
        "the other writer's object is kept"
    );
    assert_eq!(
        store.get("s/i/a.dcm").await.unwrap(),
        None,
        "nothing of the failed call is left"
    );
}
