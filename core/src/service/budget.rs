//! The memory conversions may hold at once, across all requests ([`Config::conversion_memory`]).
//!
//! Each conversion is bounded on its own (a whole file up to `max_convert_bytes`, one frame at a
//! time), but not their number: 32 clients converting 100 MB files at once hold gigabytes. So a
//! conversion first reserves what it will hold (an estimate: its input and its output, and the
//! decoded frame or the parsed file in between) and waits while the reservations of others
//! leave no room; a reservation larger than the whole budget waits until it is alone, so any
//! file a request may convert still converts, one at a time. Waiting, not refusing: a
//! conversion in the middle of a multipart body cannot change the status any more.
//! Runtime-neutral: a lock and the wakers of those waiting, nothing of tokio.
//!
//! [`Config::conversion_memory`]: super::Config::conversion_memory

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// A budget of bytes.
#[derive(Debug)]
pub(crate) struct Budget {
    max: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    used: u64,
    waiting: Vec<Waker>,
}

/// Bytes reserved until dropped.
#[derive(Debug)]
pub(crate) struct Reserved {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Budget {
    /// A budget of `max` bytes (0: no limit).
    pub(crate) fn new(max: u64) -> Arc<Budget> {
        Arc::new(Budget {
            max,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for room for `bytes`, then holds them until the result is dropped.
    pub(crate) fn reserve(self: &Arc<Budget>, bytes: u64) -> Reserve {
        Reserve {
            budget: self.clone(),
            bytes,
        }
    }

    /// Bytes reserved now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.lock().used
    }
}

/// The future of [`Budget::reserve`].
pub(crate) struct Reserve {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Future for Reserve {
    type Output = Reserved;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reserved> {
        let b = &self.budget;
        let mut st = b.lock();
        let fits = b.max == 0 || st.used == 0 || st.used.saturating_add(self.bytes) <= b.max;
        if fits {
            st.used = st.used.saturating_add(self.bytes);
            return Poll::Ready(Reserved {
                budget: b.clone(),
                bytes: self.bytes,
            });
        }
        if !st.waiting.iter().any(|w| w.will_wake(cx.waker())) {
            st.waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        let waiting = {
            let mut st = self.budget.lock();
            st.used = st.used.saturating_sub(self.bytes);
            std::mem::take(&mut st.waiting)
        };
        // Everyone waiting tries again; those that still do not fit wait again.
        for w in waiting {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::FutureExt;

    #[test]
    fn reservations_wait_for_room_and_a_large_one_for_solitude() {
        let b = Budget::new(100);
        let a = block_on(b.reserve(60));
        let c = block_on(b.reserve(40));
        assert_eq!(b.used(), 100);
        // No room for 1 more byte: pending until something is released.
        let mut next = Box::pin(b.reserve(1));
        assert!((&mut next).now_or_never().is_none());
        drop(a);
        let one = block_on(next);
        assert_eq!(b.used(), 41);
        // Larger than the whole budget: only alone.
        let mut huge = Box::pin(b.reserve(1_000));
        assert!((&mut huge).now_or_never().is_none());
        drop(c);
        assert!((&mut huge).now_or_never().is_none(), "one byte still held");
        drop(one);
        let huge = block_on(huge);
        assert_eq!(b.used(), 1_000);
        drop(huge);
        assert_eq!(b.used(), 0);
        // No limit.
        let free = Budget::new(0);
        let _x = block_on(free.reserve(u64::MAX / 2));
        let _y = block_on(free.reserve(u64::MAX / 2));
    }
}
