//! The core's [`Offload`]: decoding, encoding and conversions on tokio's blocking threads, at
//! most one job per core at a time (the others wait without holding a thread), so the async
//! worker threads keep serving `/health`, metadata and raw frames while clients transcode. A
//! job that panics fails its request with a 500, never the server.

use std::sync::Arc;
use tokio::sync::Semaphore;
use wado_core::store::StoreError;
use wado_core::{Error, Job, Offload};

/// A bounded pool over tokio's blocking threads.
#[derive(Debug)]
pub struct BlockingPool {
    permits: Arc<Semaphore>,
}

impl BlockingPool {
    /// At most `jobs` jobs at a time (at least one).
    pub fn new(jobs: usize) -> BlockingPool {
        BlockingPool {
            permits: Arc::new(Semaphore::new(jobs.max(1))),
        }
    }

    /// One job per core.
    pub fn per_core() -> BlockingPool {
        BlockingPool::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

#[async_trait::async_trait]
impl Offload for BlockingPool {
    async fn run(&self, job: Job) -> Result<Vec<u8>, Error> {
        let failed = |what: String| Error::Store(StoreError::Backend(what));
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| failed("the conversion pool is closed".into()))?;
        tokio::task::spawn_blocking(job)
            .await
            .map_err(|e| failed(format!("a conversion failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_and_a_panic_is_an_error_not_a_crash() {
        let pool = BlockingPool::new(1);
        assert_eq!(
            pool.run(Box::new(|| Ok(vec![1, 2]))).await.expect("ran"),
            vec![1, 2]
        );
        let e = pool
            .run(Box::new(|| panic!("a decoder bug")))
            .await
            .expect_err("a failed request");
        assert!(e.is_server_error());
        // The pool still works.
        assert!(pool.run(Box::new(|| Ok(Vec::new()))).await.is_ok());
    }
}
