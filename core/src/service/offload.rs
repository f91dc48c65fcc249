//! Where CPU-heavy work runs. Decoding and encoding a frame, and converting a whole file, take
//! milliseconds to seconds of one core; natively they must not run on the async worker threads
//! that also serve `/health` and every other connection, so the frontend hands them to a pool
//! of its own ([`Offload`]). The core has no threads: without an `Offload` (the worker, the
//! browser, the tests) the work runs where it is asked for.

use crate::error::Result;
use crate::store::MaybeSendSync;

/// One piece of CPU-heavy work: pure, owning its inputs, producing bytes.
pub type Job = Box<dyn FnOnce() -> Result<Vec<u8>> + Send>;

/// Runs jobs off the async threads (natively: a bounded blocking pool).
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Offload: std::fmt::Debug + MaybeSendSync {
    /// Runs `job` and returns what it returned.
    async fn run(&self, job: Job) -> Result<Vec<u8>>;

    /// Runs a writer's job (an instance prepared for storing): it waits for room rather than
    /// being turned away, and writers together take only a share of the pool, so that reads
    /// are not refused while a large STOW-RS request is stored. By default, [`Offload::run`].
    async fn run_write(&self, job: Job) -> Result<Vec<u8>> {
        self.run(job).await
    }
}

/// Runs `job` through `offload`, or here when there is none.
pub(crate) async fn run(offload: Option<&dyn Offload>, job: Job) -> Result<Vec<u8>> {
    match offload {
        Some(o) => o.run(job).await,
        None => job(),
    }
}

/// The pool for turning `rows` search rows into results: none (here) for a few rows, whose
/// parsing takes microseconds where handing them to the pool and back costs two thread
/// wake-ups (a C-FIND or QIDO-RS search of one study by its UID).
pub(crate) fn for_rows(offload: Option<&dyn Offload>, rows: usize) -> Option<&dyn Offload> {
    const HERE: usize = 4;
    if rows <= HERE {
        None
    } else {
        offload
    }
}

/// Runs `f` through `offload` (or here when there is none) and gives back what it made: CPU
/// work that is not bytes (a parsed search result, a rebased metadata document).
pub(crate) async fn compute<T: Send + 'static>(
    offload: Option<&dyn Offload>,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    use std::sync::{Arc, Mutex};
    let slot: Arc<Mutex<Option<Result<T>>>> = Arc::default();
    let filled = slot.clone();
    let job: Job = Box::new(move || {
        let made = f();
        *filled.lock().unwrap_or_else(|p| p.into_inner()) = Some(made);
        Ok(Vec::new())
    });
    run(offload, job).await?;
    let made = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    made.unwrap_or_else(|| {
        Err(crate::error::Error::corrupt(
            "offload",
            "the job ended without its result",
        ))
    })
}
