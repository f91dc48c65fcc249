//! The storage conformance suite: every backend runs these against a fresh, empty store.
//! (object_store's `integration.rs` model.) Not API-stable; for tests only.

use super::{ObjectMeta, Store, StoreError};
use bytes::Bytes;

/// Runs every check in turn. Panics with a message naming the check on failure.
pub async fn run_all(store: &dyn Store) {
    put_get_roundtrip(store).await;
    get_missing_is_none(store).await;
    range_reads_exact_bytes(store).await;
    list_by_prefix_is_exact(store).await;
    put_overwrites(store).await;
    delete_removes(store).await;
    invalid_keys_are_rejected(store).await;
    large_object_roundtrip(store).await;
    modified_is_reported(store).await;
    streamed_ranges_are_exact(store).await;
    put_new_writes_a_new_object(store).await;
    put_new_all_writes_every_object(store).await;
}

/// [`Store::put_new_all`] writes every object, in one directory or several; writes nothing for
/// an empty list, and refuses a bad key.
pub async fn put_new_all_writes_every_object(store: &dyn Store) {
    let objects: Vec<(String, Bytes)> = [
        "t/all/x/a-0001.dcm",
        "t/all/x/a-0001.index.json",
        "t/all/y/b.bin",
    ]
    .iter()
    .enumerate()
    .map(|(i, k)| {
        let data: Vec<u8> = (0..(1000 + i * 777)).map(|j| (j * (i + 3)) as u8).collect();
        ((*k).to_owned(), Bytes::from(data))
    })
    .collect();
    store
        .put_new_all(objects.clone())
        .await
        .expect("put_new_all");
    for (k, data) in &objects {
        assert_eq!(
            store.get(k).await.expect("get").as_ref(),
            Some(data),
            "put_new_all then get {k}"
        );
    }
    assert_eq!(
        store.put_new_all(vec![]).await.map_err(|e| e.to_string()),
        Ok(()),
        "put_new_all of nothing"
    );
    assert!(
        matches!(
            store
                .put_new_all(vec![("../escape".to_owned(), Bytes::from_static(b"x"))])
                .await,
            Err(StoreError::InvalidKey(_))
        ),
        "put_new_all checks its keys"
    );
    for (k, _) in &objects {
        store.delete(k).await.expect("delete");
    }
    assert!(store.list("t/all/").await.expect("list").is_empty());
}

/// [`Store::put_new`] writes an object as `put` does (read, listed, its size, deleted).
pub async fn put_new_writes_a_new_object(store: &dyn Store) {
    let data = Bytes::from((0..70_000u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
    store
        .put_new("t/new/a-0001.bin", data.clone())
        .await
        .expect("put_new");
    assert_eq!(
        store.get("t/new/a-0001.bin").await.expect("get"),
        Some(data.clone()),
        "put_new then get"
    );
    let listed = store.list("t/new/").await.expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|m| (m.key.as_str(), m.size))
            .collect::<Vec<_>>(),
        vec![("t/new/a-0001.bin", data.len() as u64)],
        "put_new listed"
    );
    store.delete("t/new/a-0001.bin").await.expect("delete");
    assert_eq!(store.get("t/new/a-0001.bin").await.expect("get"), None);
}

/// A backend that streams ranges ([`Store::stream_range`]) gives exactly the range's bytes, in
/// chunks of at most the size asked, and refuses a range past the end.
pub async fn streamed_ranges_are_exact(store: &dyn Store) {
    use futures::StreamExt;
    let data: Bytes = (0..10_000u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    store
        .put("t/stream/a.bin", data.clone())
        .await
        .expect("put");
    for (range, chunk) in [
        (0..10_000u64, 4096u64),
        (17..9_001, 1000),
        (5..5, 64),
        (9_999..10_000, 1),
    ] {
        let Some(mut s) = store.stream_range("t/stream/a.bin", range.clone(), chunk) else {
            return; // the backend reads range by range
        };
        let mut got = Vec::new();
        while let Some(c) = s.next().await {
            let c = c.expect("chunk");
            assert!(c.len() as u64 <= chunk, "chunk of {} > {chunk}", c.len());
            got.extend_from_slice(&c);
        }
        assert_eq!(
            got,
            &data[range.start as usize..range.end as usize],
            "{range:?}"
        );
    }
    let mut past = store
        .stream_range("t/stream/a.bin", 9_000..10_001, 4096)
        .expect("streams");
    assert!(matches!(
        past.next().await,
        Some(Err(StoreError::Range { .. }))
    ));
}

/// What is written is read back byte for byte, and its size is reported.
pub async fn put_get_roundtrip(store: &dyn Store) {
    let data = Bytes::from_static(b"\x00\x01binary\xff data");
    store
        .put("t/roundtrip/a.bin", data.clone())
        .await
        .expect("put");
    assert_eq!(
        store.get("t/roundtrip/a.bin").await.expect("get"),
        Some(data.clone()),
        "put_get_roundtrip"
    );
    assert_eq!(
        store.size("t/roundtrip/a.bin").await.expect("size"),
        Some(data.len() as u64),
        "size"
    );
    store
        .put("t/roundtrip/empty", Bytes::new())
        .await
        .expect("put empty");
    assert_eq!(
        store.get("t/roundtrip/empty").await.expect("get"),
        Some(Bytes::new()),
        "empty object"
    );
}

/// Missing objects are `None`, not errors.
pub async fn get_missing_is_none(store: &dyn Store) {
    assert_eq!(
        store.get("t/missing/x").await.expect("get"),
        None,
        "get_missing_is_none"
    );
    assert_eq!(
        store.get_range("t/missing/x", 0..1).await.expect("range"),
        None,
        "range of missing"
    );
    assert_eq!(
        store.size("t/missing/x").await.expect("size"),
        None,
        "size of missing"
    );
}

/// Ranges return exactly the bytes asked for; ranges past the end are errors.
pub async fn range_reads_exact_bytes(store: &dyn Store) {
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    store
        .put("t/range/obj", Bytes::from(data.clone()))
        .await
        .expect("put");
    for (s, e) in [
        (0u64, 1u64),
        (0, 10_000),
        (4_000, 4_096),
        (9_999, 10_000),
        (5, 5),
    ] {
        let got = store
            .get_range("t/range/obj", s..e)
            .await
            .expect("range")
            .expect("exists");
        assert_eq!(&got[..], &data[s as usize..e as usize], "range {s}..{e}");
    }
    let err = store
        .get_range("t/range/obj", 9_000..10_001)
        .await
        .expect_err("past the end");
    assert!(
        matches!(err, StoreError::Range { .. }),
        "range past the end: {err}"
    );
}

/// Listing returns exactly the keys under the prefix, sorted, with sizes.
pub async fn list_by_prefix_is_exact(store: &dyn Store) {
    for k in ["t/list/a/1", "t/list/a/2/x", "t/list/ab/3", "t/list/b"] {
        store.put(k, Bytes::from_static(b"123")).await.expect("put");
    }
    let got = store.list("t/list/a/").await.expect("list");
    let keys: Vec<(&str, u64)> = got.iter().map(|m| (m.key.as_str(), m.size)).collect();
    assert_eq!(
        keys,
        vec![("t/list/a/1", 3), ("t/list/a/2/x", 3)],
        "list_by_prefix_is_exact"
    );
    // `head` says what the listing says, modification time included.
    for m in &got {
        let head: Option<ObjectMeta> = store.head(&m.key).await.expect("head");
        assert_eq!(head.as_ref(), Some(m), "head agrees with list");
    }
    assert_eq!(store.head("t/list/none").await.expect("head"), None);
    let (bytes, meta) = store
        .get_object("t/list/a/1")
        .await
        .expect("get_object")
        .expect("exists");
    assert_eq!(&bytes[..], b"123");
    assert_eq!(
        Some(&meta),
        got.first(),
        "get_object's metadata is the listing's"
    );
    assert!(store
        .get_object("t/list/none")
        .await
        .expect("get_object")
        .is_none());
    assert_eq!(
        store.list("t/list/none/").await.expect("list"),
        vec![],
        "empty listing"
    );
}

/// A second put replaces the object.
pub async fn put_overwrites(store: &dyn Store) {
    store
        .put("t/over/x", Bytes::from_static(b"first version"))
        .await
        .expect("put");
    store
        .put("t/over/x", Bytes::from_static(b"second"))
        .await
        .expect("put");
    assert_eq!(
        store.get("t/over/x").await.expect("get"),
        Some(Bytes::from_static(b"second")),
        "put_overwrites"
    );
    assert_eq!(
        store.list("t/over/").await.expect("list").len(),
        1,
        "no leftovers after overwrite"
    );
}

/// Delete removes; deleting twice is fine.
pub async fn delete_removes(store: &dyn Store) {
    store
        .put("t/del/x", Bytes::from_static(b"x"))
        .await
        .expect("put");
    store.delete("t/del/x").await.expect("delete");
    store.delete("t/del/x").await.expect("delete again");
    assert_eq!(
        store.get("t/del/x").await.expect("get"),
        None,
        "delete_removes"
    );
}

/// Keys that could escape the store are rejected.
pub async fn invalid_keys_are_rejected(store: &dyn Store) {
    for k in ["../escape", "/abs", "a//b", "a/../../b", ""] {
        assert!(
            matches!(store.get(k).await, Err(StoreError::InvalidKey(_))),
            "get {k:?}"
        );
        assert!(
            matches!(
                store.put(k, Bytes::new()).await,
                Err(StoreError::InvalidKey(_))
            ),
            "put {k:?}"
        );
    }
    assert!(store.list("../").await.is_err(), "list ../");
}

/// An object of several MiB survives intact (chunked backends).
pub async fn large_object_roundtrip(store: &dyn Store) {
    let data: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    store
        .put("t/large/obj", Bytes::from(data.clone()))
        .await
        .expect("put");
    let got = store
        .get("t/large/obj")
        .await
        .expect("get")
        .expect("exists");
    assert!(got == data, "large_object_roundtrip");
    let mid = store
        .get_range("t/large/obj", 1_000_000..3_000_001)
        .await
        .expect("range")
        .expect("exists");
    assert!(mid[..] == data[1_000_000..3_000_001], "large range");
}

/// Every object has a modification time (it gives `Last-Modified` and answers
/// `If-Modified-Since`), the same from `head` and from `list`, a plausible time (after 2020,
/// before 2100), not earlier after an overwrite.
pub async fn modified_is_reported(store: &dyn Store) {
    const PLAUSIBLE: std::ops::Range<u64> = 1_577_836_800..4_102_444_800;
    store
        .put("t/modified/x", Bytes::from_static(b"one"))
        .await
        .expect("put");
    let head = store
        .head("t/modified/x")
        .await
        .expect("head")
        .expect("exists");
    let first = head.modified.expect("head reports a modification time");
    assert!(
        PLAUSIBLE.contains(&first),
        "modification time {first} is not a Unix time in seconds"
    );
    let listed = store.list("t/modified/").await.expect("list");
    assert_eq!(
        listed.iter().map(|o| o.modified).collect::<Vec<_>>(),
        vec![Some(first)],
        "list reports what head does"
    );
    store
        .put("t/modified/x", Bytes::from_static(b"two"))
        .await
        .expect("put again");
    let second = store
        .head("t/modified/x")
        .await
        .expect("head")
        .and_then(|m| m.modified)
        .expect("modification time after overwrite");
    assert!(
        second >= first,
        "modification time went back: {first} then {second}"
    );
}
