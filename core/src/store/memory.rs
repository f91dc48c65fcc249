//! An in-memory store, for tests and for the browser.

use super::{check_range, validate_key, validate_prefix, ObjectMeta, Store, StoreError};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;

/// A clock for modification times: seconds since the Unix epoch (the core has no clock).
pub type Clock = std::sync::Arc<dyn Fn() -> u64 + Send + Sync>;

/// A store that keeps objects in a map.
#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, (Bytes, Option<u64>)>>,
    clock: Option<Clock>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("objects", &self.map().len())
            .field("clock", &self.clock.is_some())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store that records no modification times.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// An empty store that stamps each write with `clock()`.
    pub fn with_clock(clock: Clock) -> MemoryStore {
        MemoryStore {
            objects: Mutex::default(),
            clock: Some(clock),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Bytes, Option<u64>)>> {
        // A panic while holding the lock cannot leave the map half-updated (every operation is
        // one insert or remove), so a poisoned lock is still usable.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        validate_key(key)?;
        Ok(self.map().get(key).map(|(b, _)| b.clone()))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, StoreError> {
        validate_key(key)?;
        let Some(obj) = self.map().get(key).map(|(b, _)| b.clone()) else {
            return Ok(None);
        };
        check_range(key, &range, obj.len() as u64)?;
        Ok(Some(obj.slice(range.start as usize..range.end as usize)))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        validate_key(key)?;
        Ok(self.map().get(key).map(|(b, m)| ObjectMeta {
            key: key.to_owned(),
            size: b.len() as u64,
            modified: *m,
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        validate_prefix(prefix)?;
        Ok(self
            .map()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (v, m))| ObjectMeta {
                key: k.clone(),
                size: v.len() as u64,
                modified: *m,
            })
            .collect())
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        validate_key(key)?;
        let modified = self.clock.as_ref().map(|c| c());
        self.map().insert(key.to_owned(), (data, modified));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.map().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_passes_conformance() {
        let clock: Clock = std::sync::Arc::new(|| 1_700_000_000);
        futures::executor::block_on(crate::store::conformance::run_all(
            &MemoryStore::with_clock(clock),
        ));
    }
}
