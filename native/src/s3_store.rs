//! The core's [`Store`] over S3-compatible object storage (AWS S3, Cloudflare R2, MinIO, ...)
//! through the `object_store` crate, so `wado import --data s3://...` fills the bucket the edge
//! worker serves, and several `wado serve` can share one bucket.
//!
//! `s3://BUCKET[/PREFIX][?option=value&...]`: options are `object_store`'s S3 settings
//! (`endpoint`, `region`, `allow_http`, ...), and the usual `AWS_*` environment variables
//! apply: credentials belong there; a secret key or session token in the URL is refused.
//! Objects land at `PREFIX/` + the layout's keys; puts are atomic (S3 semantics).

use bytes::Bytes;
use futures::TryStreamExt as _;
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, PutPayload};
use std::ops::Range;
use std::sync::Arc;
use wado_core::store::{
    check_range, validate_key, validate_prefix, ByteStream, ObjectMeta, Store, StoreError,
};

/// An S3-compatible bucket (or a prefix of one) as a store.
#[derive(Debug, Clone)]
pub struct S3Store {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

impl S3Store {
    /// Opens `s3://BUCKET[/PREFIX][?options]`.
    pub fn open(url: &str) -> Result<S3Store, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url}: not an s3:// URL"))?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        // Secrets never in the URL: it ends up in shell history, process lists and logs.
        for k in query
            .split('&')
            .map(|p| p.split_once('=').map_or(p, |(k, _)| k))
        {
            if matches!(
                k.parse::<object_store::aws::AmazonS3ConfigKey>(),
                Ok(object_store::aws::AmazonS3ConfigKey::SecretAccessKey
                    | object_store::aws::AmazonS3ConfigKey::Token)
            ) {
                return Err(format!(
                    "s3://{}: {k} in the URL is refused; put credentials in AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN",
                    rest.split_once('?').map_or(rest, |(l, _)| l)
                ));
            }
        }
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        if bucket.is_empty() {
            return Err(format!("{url}: no bucket"));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            validate_key(prefix).map_err(|e| format!("{url}: prefix: {e}"))?;
        }
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            let key: object_store::aws::AmazonS3ConfigKey =
                k.parse().map_err(|e| format!("{url}: option {k:?}: {e}"))?;
            b = b.with_config(key, v);
        }
        let inner = b.build().map_err(|e| format!("{url}: {e}"))?;
        Ok(S3Store {
            inner: Arc::new(inner),
            prefix: prefix.to_owned(),
            url: format!("s3://{bucket}/{prefix}"),
        })
    }

    /// Where the store is, for messages (no credentials).
    pub fn describe(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> Result<OsPath, StoreError> {
        validate_key(key)?;
        Ok(if self.prefix.is_empty() {
            OsPath::from(key)
        } else {
            OsPath::from(format!("{}/{key}", self.prefix))
        })
    }

    fn key_of(&self, location: &OsPath) -> Option<String> {
        let full = location.as_ref();
        if self.prefix.is_empty() {
            Some(full.to_owned())
        } else {
            full.strip_prefix(&self.prefix)?
                .strip_prefix('/')
                .map(str::to_owned)
        }
    }

    fn meta(&self, m: &object_store::ObjectMeta) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            key: self.key_of(&m.location)?,
            size: m.size,
            modified: u64::try_from(m.last_modified.timestamp()).ok(),
        })
    }
}

fn backend(e: object_store::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

#[async_trait::async_trait]
impl Store for S3Store {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self.get_object(key).await?.map(|(b, _)| b))
    }

    async fn get_object(&self, key: &str) -> Result<Option<(Bytes, ObjectMeta)>, StoreError> {
        let path = self.path(key)?;
        match self.inner.get(&path).await {
            Ok(r) => {
                let meta = self.meta(&r.meta).ok_or_else(|| {
                    StoreError::Backend(format!("{key}: listed outside the prefix"))
                })?;
                let bytes = r.bytes().await.map_err(backend)?;
                Ok(Some((bytes, meta)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, StoreError> {
        let path = self.path(key)?;
        if range.start >= range.end {
            return match self.head(key).await? {
                None => Ok(None),
                Some(m) => check_range(key, &range, m.size).map(|()| Some(Bytes::new())),
            };
        }
        match self.inner.get_range(&path, range.clone()).await {
            Ok(b) if b.len() as u64 == range.end - range.start => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            // A short answer or a refusal: the range is past the end, or the backend failed.
            other => match self.head(key).await? {
                None => Ok(None),
                Some(m) => {
                    check_range(key, &range, m.size)?;
                    Err(match other {
                        Err(e) => backend(e),
                        Ok(b) => StoreError::Backend(format!(
                            "{key}: {} bytes for {}..{}",
                            b.len(),
                            range.start,
                            range.end
                        )),
                    })
                }
            },
        }
    }

    /// One ranged GET for the whole stream (one version of the object), its body cut into
    /// pieces of at most `chunk` bytes.
    fn stream_range(&self, key: &str, range: Range<u64>, chunk: u64) -> Option<ByteStream> {
        let path = self.path(key).ok()?;
        if range.start >= range.end {
            return None; // the piecewise reads answer an empty range
        }
        let inner = self.inner.clone();
        let key = key.to_owned();
        let opened = async move {
            let opts = object_store::GetOptions {
                range: Some(object_store::GetRange::Bounded(range.clone())),
                ..Default::default()
            };
            match inner.get_opts(&path, opts).await {
                Ok(got) => {
                    check_range(&key, &range, got.meta.size)?;
                    Ok((key, got.into_stream(), range.end - range.start))
                }
                Err(object_store::Error::NotFound { .. }) => Err(StoreError::NotFound(key)),
                // Refused: the range is past the end (say so), or the backend failed.
                Err(e) => Err(match inner.head(&path).await {
                    Ok(m) => match check_range(&key, &range, m.size) {
                        Err(r) => r,
                        Ok(()) => backend(e),
                    },
                    Err(object_store::Error::NotFound { .. }) => StoreError::NotFound(key),
                    Err(_) => backend(e),
                }),
            }
        };
        use futures::StreamExt;
        let s = futures::stream::once(opened)
            .map(move |opened| match opened {
                Ok((key, body, len)) => {
                    wado_core::store::rechunk(key, body.map_err(backend), len, chunk).boxed()
                }
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .flatten();
        Some(Box::pin(s))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.path(key)?;
        match self.inner.head(&path).await {
            Ok(m) => Ok(self.meta(&m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        validate_prefix(prefix)?;
        let full = match (self.prefix.is_empty(), prefix.trim_end_matches('/')) {
            (true, "") => None,
            (true, p) => Some(OsPath::from(p)),
            (false, "") => Some(OsPath::from(self.prefix.as_str())),
            (false, p) => Some(OsPath::from(format!("{}/{p}", self.prefix))),
        };
        let listed: Vec<object_store::ObjectMeta> = self
            .inner
            .list(full.as_ref())
            .try_collect()
            .await
            .map_err(backend)?;
        let mut out: Vec<ObjectMeta> = listed
            .iter()
            .filter_map(|m| self.meta(m))
            .filter(|m| m.key.starts_with(prefix) && !m.key.contains("/.tmp-"))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        self.inner
            .put(&path, PutPayload::from(data))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_the_url_are_refused_without_echoing_them() {
        for url in [
            "s3://b?secret_access_key=TOPSECRET",
            "s3://b/p?endpoint=http://x&aws_secret_access_key=TOPSECRET",
            "s3://b?session_token=TOPSECRET",
        ] {
            let e = S3Store::open(url).expect_err(url);
            assert!(e.contains("refused"), "{e}");
            assert!(!e.contains("TOPSECRET"), "{e}");
        }
    }
}
