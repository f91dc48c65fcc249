//! A store seen through a key prefix: what an AE title's partition is (see
//! `layout::partition_prefix`). Every key is the prefix plus the key asked for, and
//! listings give keys without the prefix, so the layout code reads and writes a partition as
//! if it were the whole store, and cannot name a key outside it (the prefix is prepended after
//! the key is validated, and a valid key has no `..`).

use super::{validate_key, validate_prefix, ObjectMeta, Store, StoreError};
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;

/// `inner` under `prefix` (which ends with `/`).
#[derive(Debug)]
pub struct Prefixed {
    inner: Arc<dyn Store>,
    prefix: String,
}

impl Prefixed {
    /// The part of `inner` under `prefix`: a valid key followed by `/`.
    pub fn new(inner: Arc<dyn Store>, prefix: &str) -> Result<Prefixed, StoreError> {
        if prefix.is_empty() {
            return Err(StoreError::InvalidKey(prefix.to_owned()));
        }
        validate_prefix(prefix)?;
        Ok(Prefixed {
            inner,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, key: &str) -> Result<String, StoreError> {
        validate_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn strip(&self, mut meta: ObjectMeta) -> Option<ObjectMeta> {
        meta.key = meta.key.strip_prefix(&self.prefix)?.to_owned();
        Some(meta)
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Store for Prefixed {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(&self.key(key)?).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, StoreError> {
        let full = self.key(key)?;
        match self.inner.get_range(&full, range).await {
            // Errors name the key asked for, not where the partition keeps it.
            Err(StoreError::Range {
                start, end, size, ..
            }) => Err(StoreError::Range {
                key: key.to_owned(),
                start,
                end,
                size,
            }),
            other => other,
        }
    }

    fn stream_range(&self, key: &str, range: Range<u64>, chunk: u64) -> Option<super::ByteStream> {
        self.inner.stream_range(&self.key(key).ok()?, range, chunk)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self
            .inner
            .head(&self.key(key)?)
            .await?
            .and_then(|m| self.strip(m)))
    }

    async fn get_object(&self, key: &str) -> Result<Option<(Bytes, ObjectMeta)>, StoreError> {
        Ok(self
            .inner
            .get_object(&self.key(key)?)
            .await?
            .and_then(|(b, m)| Some((b, self.strip(m)?))))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        validate_prefix(prefix)?;
        let listing = self.inner.list(&format!("{}{prefix}", self.prefix)).await?;
        Ok(listing.into_iter().filter_map(|m| self.strip(m)).collect())
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.inner.put(&self.key(key)?, data).await
    }

    async fn put_new(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.inner.put_new(&self.key(key)?, data).await
    }

    async fn put_new_all(&self, objects: Vec<(String, Bytes)>) -> Result<(), StoreError> {
        let objects = objects
            .into_iter()
            .map(|(k, b)| Ok((self.key(&k)?, b)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.inner.put_new_all(objects).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(&self.key(key)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use futures::executor::block_on;

    #[test]
    fn a_partition_reads_and_lists_only_its_own_keys() {
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let a = Prefixed::new(inner.clone(), "aets/A/").expect("prefix");
        block_on(async {
            inner
                .put("studies/1/x", Bytes::from_static(b"root"))
                .await
                .expect("put");
            a.put("studies/1/x", Bytes::from_static(b"in A"))
                .await
                .expect("put");
            assert_eq!(
                inner.get("aets/A/studies/1/x").await.expect("get"),
                Some(Bytes::from_static(b"in A"))
            );
            assert_eq!(
                a.get("studies/1/x").await.expect("get"),
                Some(Bytes::from_static(b"in A"))
            );
            let keys: Vec<String> = a
                .list("studies/")
                .await
                .expect("list")
                .into_iter()
                .map(|m| m.key)
                .collect();
            assert_eq!(keys, vec!["studies/1/x"]);
            assert!(a.get("../studies/1/x").await.is_err());
            assert!(a.list("../").await.is_err());
            assert_eq!(
                a.head("studies/1/x").await.expect("head").map(|m| m.key),
                Some("studies/1/x".to_owned())
            );
        });
        assert!(Prefixed::new(inner.clone(), "").is_err());
        assert!(Prefixed::new(inner, "aets/A").is_err());
    }
}
