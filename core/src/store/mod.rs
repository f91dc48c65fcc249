//! Storage: one small async trait, implemented by every backend (memory here, the local file
//! system in `wado-native`, R2 in `wado-edge`), and one conformance suite they all run.
//!
//! Keys are `/`-separated relative paths built by the layout module from validated UIDs.
//! Sizes and offsets are `u64` (wasm32 is a 32-bit target). Futures are `Send` natively and
//! not on wasm32, where a Worker's JS objects are `!Send` and one event loop polls everything:
//! the trait uses `async_trait` natively and `async_trait(?Send)` on wasm32 (the choice
//! workers-rs recommends; see docs/ARCHITECTURE.md).

use bytes::Bytes;
use std::ops::Range;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod memory;
pub mod prefixed;

pub use memory::MemoryStore;
pub use prefixed::Prefixed;

pub use crate::error::StoreError;

/// An object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was last written, in seconds since the Unix epoch, when the backend
    /// knows (file modification time, R2 upload time). Gives `Last-Modified`.
    pub modified: Option<u64>,
}

/// `Send + Sync` natively, nothing on wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSendSync: Send + Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + Sync + ?Sized> MaybeSendSync for T {}
/// `Send + Sync` natively, nothing on wasm32.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSendSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSendSync for T {}

/// A stream of an object's bytes, chunk by chunk.
#[cfg(not(target_arch = "wasm32"))]
pub type ByteStream = futures::stream::BoxStream<'static, Result<Bytes, StoreError>>;
/// A stream of an object's bytes, chunk by chunk.
#[cfg(target_arch = "wasm32")]
pub type ByteStream = futures::stream::LocalBoxStream<'static, Result<Bytes, StoreError>>;

/// An object store.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Store: std::fmt::Debug + MaybeSendSync {
    /// The whole object, or `None` when it does not exist.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;

    /// Exactly the bytes `range` of the object, or `None` when it does not exist. A range that
    /// ends past the object's end is [`StoreError::Range`].
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, StoreError>;

    /// The bytes `range` of the object in chunks of about `chunk` bytes, all read from the one
    /// object that was there when the first was read: a replacement landing while the stream
    /// is read is not spliced into it. `None` when the backend cannot promise that (the
    /// default); readers then read the range piece by piece with [`Store::get_range`]. A range
    /// past the object's end is [`StoreError::Range`] on the first chunk.
    fn stream_range(&self, key: &str, range: Range<u64>, chunk: u64) -> Option<ByteStream> {
        let _ = (key, range, chunk);
        None
    }

    /// The object's size and modification time, or `None` when it does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;

    /// The object's size, or `None` when it does not exist.
    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.head(key).await?.map(|m| m.size))
    }

    /// The whole object with its metadata, or `None` when it does not exist. Backends whose
    /// reads return metadata anyway (R2) answer in one request; the default asks twice.
    async fn get_object(&self, key: &str) -> Result<Option<(Bytes, ObjectMeta)>, StoreError> {
        let Some(meta) = self.head(key).await? else {
            return Ok(None);
        };
        Ok(self.get(key).await?.map(|b| {
            let meta = ObjectMeta {
                size: b.len() as u64,
                ..meta
            };
            (b, meta)
        }))
    }

    /// Every object whose key starts with `prefix` (which ends with `/`), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Writes the object, replacing any previous one atomically: a reader sees the old or the
    /// new object, never a part of one.
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError>;

    /// Writes an object under a key no other write uses and nothing reads until the writer
    /// names it elsewhere (an instance's version, named by the catalog once written). A backend
    /// may leave out what makes [`Store::put`] atomic for readers (a file system's temporary
    /// file and rename); a write that fails or is cut off may leave part of the object under
    /// the key, which nothing names. By default, [`Store::put`].
    async fn put_new(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.put(key, data).await
    }

    /// [`Store::put_new`] of several objects, done once all are; on error, some may be written
    /// (as a failed `put_new` may leave one). A backend that can share the wait for the disk
    /// between them (a file system: one sync of their directory) does; by default, all at once.
    async fn put_new_all(&self, objects: Vec<(String, Bytes)>) -> Result<(), StoreError> {
        futures::future::try_join_all(
            objects
                .into_iter()
                .map(|(k, b)| async move { self.put_new(&k, b).await }),
        )
        .await
        .map(|_| ())
    }

    /// Deletes the object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// Checks a key: relative, `/`-separated, no empty, `.` or `..` segments, and only the
/// characters the layout uses. Backends call this before touching anything.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidKey(key.to_owned()))
    }
}

/// Checks a listing prefix: empty, or a valid key followed by `/`.
pub fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.is_empty() {
        return Ok(());
    }
    match prefix.strip_suffix('/') {
        Some(p) => validate_key(p),
        None => Err(StoreError::InvalidKey(prefix.to_owned())),
    }
}

/// The body of one ranged read (`len` bytes of `key` expected) as a [`ByteStream`] in pieces
/// of at most `chunk` bytes: what a backend whose GET streams its body (R2, S3) gives from
/// [`Store::stream_range`]. A body that ends early is an error; bytes past `len` are not read.
pub fn rechunk<S>(
    key: String,
    body: S,
    len: u64,
    chunk: u64,
) -> impl futures::Stream<Item = Result<Bytes, StoreError>>
where
    S: futures::Stream<Item = Result<Bytes, StoreError>> + Unpin,
{
    let chunk = usize::try_from(chunk.max(1)).unwrap_or(usize::MAX);
    futures::stream::try_unfold(
        (key, body, len, Bytes::new()),
        move |(key, mut body, mut left, mut piece)| async move {
            use futures::StreamExt;
            if left == 0 {
                return Ok(None);
            }
            while piece.is_empty() {
                match body.next().await {
                    Some(c) => piece = c?,
                    None => {
                        return Err(StoreError::Backend(format!(
                            "{key}: the read ended {left} bytes short"
                        )))
                    }
                }
            }
            let take = piece
                .len()
                .min(chunk)
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let out = piece.split_to(take);
            left -= take as u64;
            Ok(Some((out, (key, body, left, piece))))
        },
    )
}

/// Checks a range against an object size.
pub fn check_range(key: &str, range: &Range<u64>, size: u64) -> Result<(), StoreError> {
    if range.start > range.end || range.end > size {
        return Err(StoreError::Range {
            key: key.to_owned(),
            start: range.start,
            end: range.end,
            size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_table() {
        let cases: &[(&str, bool)] = &[
            ("studies/1.2/series/3/instances/4.dcm", true),
            ("wado-layout.json", true),
            ("", false),
            ("/abs", false),
            ("a//b", false),
            ("a/../b", false),
            ("a/./b", false),
            ("..", false),
            ("a/b/", false),
            ("a\\b", false),
            ("a b", false),
            ("a\0b", false),
            ("ü", false),
        ];
        for (k, ok) in cases {
            assert_eq!(validate_key(k).is_ok(), *ok, "{k:?}");
        }
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("studies/").is_ok());
        assert!(validate_prefix("studies").is_err());
        assert!(validate_prefix("../").is_err());
    }
}
