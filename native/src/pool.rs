//! The core's [`Offload`]: decoding, encoding and conversions on a fixed set of threads, one
//! per core (jobs beyond wait in a queue without holding any thread), so the async worker
//! threads keep serving `/health`, metadata and raw frames while clients transcode. A job that
//! panics fails its request with a 500, never the server.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use wado_core::store::StoreError;
use wado_core::{Error, Job, Offload};

type Task = (
    Job,
    oneshot::Sender<std::thread::Result<Result<Vec<u8>, Error>>>,
);

/// A fixed set of threads taking jobs from one queue. Fixed, not tokio's blocking pool: every
/// new thread gets its own malloc arena, and a pool that grows to 32 threads under 32
/// transcoding clients keeps their freed memory resident long after.
#[derive(Debug)]
pub struct BlockingPool {
    queue: mpsc::Sender<Task>,
}

impl BlockingPool {
    /// `threads` threads (at least one).
    pub fn new(threads: usize) -> BlockingPool {
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("wado-codec-{i}"))
                .spawn(move || loop {
                    let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((job, reply)) = next else {
                        return; // the pool is gone
                    };
                    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    let _ = reply.send(done);
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a conversion thread");
            }
        }
        BlockingPool { queue: tx }
    }

    /// One thread per core.
    pub fn per_core() -> BlockingPool {
        BlockingPool::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

#[async_trait::async_trait]
impl Offload for BlockingPool {
    async fn run(&self, job: Job) -> Result<Vec<u8>, Error> {
        let failed = |what: &str| Error::Store(StoreError::Backend(what.to_owned()));
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((job, reply))
            .map_err(|_| failed("the conversion pool is gone"))?;
        match answer.await {
            Ok(Ok(result)) => result,
            Ok(Err(_panic)) => Err(failed("a conversion failed (a codec panicked)")),
            Err(_) => Err(failed("the conversion pool is gone")),
        }
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
