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
