//! The core's [`Store`] over an R2 bucket binding: the same keys `wado import` writes.

use bytes::Bytes;
use std::ops::Range;
use wado_core::store::{
    check_range, validate_key, validate_prefix, ByteStream, ObjectMeta, Store, StoreError,
};
use worker::{Bucket, Object};

/// An R2 bucket as a store.
pub struct R2Store {
    bucket: Bucket,
}

impl std::fmt::Debug for R2Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("R2Store")
    }
}

impl R2Store {
    /// A store over this bucket.
    pub fn new(bucket: Bucket) -> R2Store {
        R2Store { bucket }
    }
}

fn backend(e: worker::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn meta(o: &Object) -> ObjectMeta {
    ObjectMeta {
        key: o.key(),
        size: o.size(),
        modified: Some(o.uploaded().as_millis() / 1000),
    }
}

async fn body(key: &str, o: Object) -> Result<Bytes, StoreError> {
    let Some(b) = o.body() else {
        return Err(StoreError::Backend(format!("R2 object {key} has no body")));
    };
    b.bytes().await.map(Bytes::from).map_err(backend)
}

#[async_trait::async_trait(?Send)]
impl Store for R2Store {
    /// One ranged GET for the whole stream, so one version of the object from start to end
    /// (R2 sends the object that was there when the GET was answered); its body comes as R2
    /// streams it, cut into pieces of at most `chunk` bytes.
    fn stream_range(&self, key: &str, range: Range<u64>, chunk: u64) -> Option<ByteStream> {
        if validate_key(key).is_err() || range.start >= range.end {
            return None; // the piecewise reads say why, or read nothing
        }
        let (bucket, key) = (self.bucket.clone(), key.to_owned());
        let opened = async move {
            let len = range.end - range.start;
            let got = bucket
                .get(&key)
                .range(worker::Range::OffsetWithLength {
                    offset: range.start,
                    length: len,
                })
                .execute()
                .await;
            let o = match got {
                Ok(Some(o)) => o,
                Ok(None) => return Err(StoreError::NotFound(key)),
                // R2 answers a range past the end with an error: say which.
                Err(e) => {
                    return Err(match bucket.head(&key).await.map_err(backend)? {
                        None => StoreError::NotFound(key),
                        Some(o) => match check_range(&key, &range, o.size()) {
                            Err(r) => r,
                            Ok(()) => backend(e),
                        },
                    })
                }
            };
            check_range(&key, &range, o.size())?;
            let Some(b) = o.body() else {
                return Err(StoreError::Backend(format!("R2 object {key} has no body")));
            };
            Ok((key, b.stream().map_err(backend)?, len))
        };
        use futures::StreamExt;
        let s = futures::stream::once(opened)
            .map(move |opened| match opened {
                Ok((key, body, len)) => {
                    let body = Box::pin(body).map(|c| c.map(Bytes::from).map_err(backend));
                    wado_core::store::rechunk(key, body, len, chunk).boxed_local()
                }
                Err(e) => futures::stream::once(async move { Err(e) }).boxed_local(),
            })
            .flatten();
        Some(Box::pin(s))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self.get_object(key).await?.map(|(b, _)| b))
    }

    async fn get_object(&self, key: &str) -> Result<Option<(Bytes, ObjectMeta)>, StoreError> {
        validate_key(key)?;
        let Some(o) = self.bucket.get(key).execute().await.map_err(backend)? else {
            return Ok(None);
        };
        let m = meta(&o);
        Ok(Some((body(key, o).await?, m)))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, StoreError> {
        validate_key(key)?;
        if range.start >= range.end {
            // R2 refuses empty ranges; an empty read only needs the size.
            return match self.head(key).await? {
                None => Ok(None),
                Some(m) => check_range(key, &range, m.size).map(|()| Some(Bytes::new())),
            };
        }
        let got = self
            .bucket
            .get(key)
            .range(worker::Range::OffsetWithLength {
                offset: range.start,
                length: range.end - range.start,
            })
            .execute()
            .await;
        match got {
            Ok(None) => Ok(None),
            Ok(Some(o)) => {
                check_range(key, &range, o.size())?;
                let b = body(key, o).await?;
                if b.len() as u64 != range.end - range.start {
                    return Err(StoreError::Backend(format!(
                        "R2 returned {} bytes of {key} for {}..{}",
                        b.len(),
                        range.start,
                        range.end
                    )));
                }
                Ok(Some(b))
            }
            // R2 answers a range past the end with an error: say which.
            Err(e) => match self.head(key).await? {
                None => Ok(None),
                Some(m) => {
                    check_range(key, &range, m.size)?;
                    Err(backend(e))
                }
            },
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        validate_key(key)?;
        Ok(self
            .bucket
            .head(key)
            .await
            .map_err(backend)?
            .as_ref()
            .map(meta))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        validate_prefix(prefix)?;
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut req = self.bucket.list().prefix(prefix);
            if let Some(c) = cursor.take() {
                req = req.cursor(c);
            }
            let page = req.execute().await.map_err(backend)?;
            out.extend(page.objects().iter().map(meta));
            match (page.truncated(), page.cursor()) {
                (true, Some(c)) => cursor = Some(c),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        validate_key(key)?;
        self.bucket
            .put(key, data.to_vec())
            .execute()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.bucket.delete(key).await.map_err(backend)
    }
}
