//! The core's [`Offload`]: decoding, encoding and conversions on a fixed set of threads, one
//! per core (jobs beyond wait in a queue without holding any thread), so the async worker
//! threads keep serving `/health`, metadata and raw frames while clients transcode. The queue
//! is bounded ([`JOBS_PER_THREAD`] per thread, running ones included): past it a request gets
//! 503 with Retry-After at once, instead of holding its input in memory behind minutes of
//! work. A job that panics fails its request with a 500, never the server.

use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Jobs queued or running.
    jobs: Arc<AtomicUsize>,
    max_jobs: usize,
    /// Writers' jobs queued or running, at most [`WRITE_JOBS_PER_THREAD`] per thread: the
    /// rest of the queue stays for reads.
    writes: tokio::sync::Semaphore,
}

/// Jobs queued or running per thread, at most (about a second of J2K frame decodes).
pub const JOBS_PER_THREAD: usize = 16;

/// Writers' jobs (instances being prepared for storing) queued or running per thread, at most;
/// more wait for room. Enough to keep every thread busy while a writer's other steps wait.
pub const WRITE_JOBS_PER_THREAD: usize = 4;

impl BlockingPool {
    /// `threads` threads (at least one), at most `max_jobs` jobs queued or running.
    pub fn new(threads: usize, max_jobs: usize) -> BlockingPool {
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        let jobs = Arc::new(AtomicUsize::new(0));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let jobs = jobs.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("wado-codec-{i}"))
                .spawn(move || loop {
                    let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((job, reply)) = next else {
                        return; // the pool is gone
                    };
                    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    jobs.fetch_sub(1, Ordering::AcqRel);
                    let _ = reply.send(done);
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a conversion thread");
            }
        }
        BlockingPool {
            queue: tx,
            jobs,
            max_jobs: max_jobs.max(1),
            writes: tokio::sync::Semaphore::new(
                (threads.max(1) * WRITE_JOBS_PER_THREAD).min(max_jobs.max(1)),
            ),
        }
    }

    /// One thread per core, [`JOBS_PER_THREAD`] jobs each.
    pub fn per_core() -> BlockingPool {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        BlockingPool::new(threads, threads * JOBS_PER_THREAD)
    }
}

#[async_trait::async_trait]
impl Offload for BlockingPool {
    async fn run(&self, job: Job) -> Result<Vec<u8>, Error> {
        let failed = |what: &str| Error::Store(StoreError::Backend(what.to_owned()));
        if self.jobs.fetch_add(1, Ordering::AcqRel) >= self.max_jobs {
            self.jobs.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Busy(format!(
                "{} conversions are queued or running; try again in a moment",
                self.max_jobs
            )));
        }
        let (reply, answer) = oneshot::channel();
        if self.queue.send((job, reply)).is_err() {
            self.jobs.fetch_sub(1, Ordering::AcqRel);
            return Err(failed("the conversion pool is gone"));
        }
        match answer.await {
            Ok(Ok(result)) => result,
            Ok(Err(_panic)) => Err(failed("a conversion failed (a codec panicked)")),
            Err(_) => Err(failed("the conversion pool is gone")),
        }
    }

    async fn run_write(&self, job: Job) -> Result<Vec<u8>, Error> {
        let Ok(_turn) = self.writes.acquire().await else {
            return Err(Error::Store(StoreError::Backend(
                "the conversion pool is gone".into(),
            )));
        };
        self.run(job).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_and_a_panic_is_an_error_not_a_crash() {
        let pool = BlockingPool::new(1, 4);
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

    /// Writers beyond their share wait (not refused), and leave the rest of the queue to
    /// reads: a read meanwhile is taken.
    #[tokio::test]
    async fn writers_wait_for_their_share_and_reads_keep_the_rest() {
        let pool = Arc::new(BlockingPool::new(1, 16));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Arc::new(Mutex::new(wait));
        let writers: Vec<_> = (0..WRITE_JOBS_PER_THREAD + 2)
            .map(|k| {
                let (pool, wait) = (pool.clone(), wait.clone());
                tokio::spawn(async move {
                    pool.run_write(Box::new(move || {
                        let _ = wait.lock().map(|w| w.recv());
                        Ok(vec![k as u8])
                    }))
                    .await
                })
            })
            .collect();
        while pool.jobs.load(Ordering::Acquire) < WRITE_JOBS_PER_THREAD {
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.jobs.load(Ordering::Acquire), WRITE_JOBS_PER_THREAD);
        let read = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(Box::new(|| Ok(vec![99]))).await }
        });
        while pool.jobs.load(Ordering::Acquire) < WRITE_JOBS_PER_THREAD + 1 {
            tokio::task::yield_now().await;
        }
        for _ in 0..WRITE_JOBS_PER_THREAD + 2 {
            release.send(()).expect("release");
        }
        assert_eq!(read.await.expect("task").expect("read taken"), vec![99]);
        for (k, w) in writers.into_iter().enumerate() {
            assert_eq!(w.await.expect("task").expect("written"), vec![k as u8]);
        }
    }

    #[tokio::test]
    async fn past_the_queue_bound_a_job_is_refused_with_503_at_once() {
        let pool = Arc::new(BlockingPool::new(1, 2));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        // One running (blocked until released), one queued: the pool is full.
        let running = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(Box::new(move || {
                    let _ = wait.lock().map(|w| w.recv());
                    Ok(vec![1])
                }))
                .await
            }
        });
        while pool.jobs.load(Ordering::Acquire) < 1 {
            tokio::task::yield_now().await;
        }
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(Box::new(|| Ok(vec![2]))).await }
        });
        while pool.jobs.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        let refused = pool
            .run(Box::new(|| Ok(vec![3])))
            .await
            .expect_err("the queue is full");
        assert_eq!(refused.status().as_u16(), 503);
        release.send(()).expect("release");
        assert_eq!(running.await.expect("join").expect("ran"), vec![1]);
        assert_eq!(queued.await.expect("join").expect("ran"), vec![2]);
        // Room again.
        assert_eq!(
            pool.run(Box::new(|| Ok(vec![4]))).await.expect("ran"),
            vec![4]
        );
    }
}
