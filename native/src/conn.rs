//! Connections: what a socket may cost the server. Every accepted TCP stream gets
//! `TCP_NODELAY` and two deadlines ([`TimedStream`]): its first bytes must come within the
//! header timeout (hyper's own header timer starts only once it knows the HTTP version, so a
//! silent socket would otherwise stay open for ever), and a write may not stay stalled longer
//! than the write timeout (a client that stops reading cannot hold its connection, its
//! response's memory and its `--max-requests` slot for ever). The header-read timeout of each
//! request (which also bounds idle keep-alive time) and the HTTP/2 limits are hyper's, set on
//! the connection builder by `wado serve`.

use axum_server::accept::Accept;
use std::future::{ready, Future as _, Ready};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{sleep, Sleep};

/// An acceptor that sets `TCP_NODELAY` and wraps the stream in a [`TimedStream`]. Responses
/// go out as several writes (part heads, bodies, the closing delimiter): without TCP_NODELAY,
/// Nagle's algorithm holds the last small write until the client's delayed ACK, 40 ms later.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutAcceptor {
    /// How long a new connection may send nothing.
    pub first_read_timeout: Duration,
    /// How long a write may make no progress.
    pub write_timeout: Duration,
}

impl<S> Accept<TcpStream, S> for TimeoutAcceptor {
    type Stream = TimedStream<TcpStream>;
    type Service = S;
    type Future = Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
        let mut s = TimedStream::new(stream, self.write_timeout);
        s.first_read = Some(Box::pin(sleep(self.first_read_timeout)));
        ready(Ok((s, service)))
    }
}

/// A stream whose writes fail with `TimedOut` when one stays pending (the peer's receive
/// window full: it reads nothing) for longer than the timeout, and whose reads fail so when
/// its first bytes do not come in time. Reads after the first are untouched, so a long
/// download by a client that sends nothing more is never cut.
#[derive(Debug)]
pub struct TimedStream<S> {
    inner: S,
    timeout: Duration,
    /// Armed while a write is pending.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Armed until the first bytes are read.
    first_read: Option<Pin<Box<Sleep>>>,
}

impl<S> TimedStream<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> TimedStream<S> {
        TimedStream {
            inner,
            timeout,
            deadline: None,
            first_read: None,
        }
    }

    /// Pending with the deadline armed, or `TimedOut` once it has passed.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(sleep(timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.deadline = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read nothing for {} s", timeout.as_secs()),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Pending => match self.first_read.as_mut().map(|d| d.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => {
                    self.first_read = None;
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent nothing in time",
                    )))
                }
                _ => Poll::Pending,
            },
            done => {
                if buf.filled().len() > before {
                    self.first_read = None;
                }
                done
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.pending(cx),
            done => {
                self.deadline = None;
                done
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.pending(cx),
            done => {
                self.deadline = None;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.pending(cx),
            done => {
                self.deadline = None;
                done
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body whose sending is watched: when it waits on the client (a chunk handed to
/// the connection and not taken) for longer than `timeout`, the connection is closed. A
/// socket that accepts no bytes is caught by [`TimedStream`]; this catches what waits above
/// the socket: an HTTP/2 stream whose flow-control window the client keeps at zero sends
/// nothing, so no write ever stalls, and without this it would hold its request slot and its
/// chunk for ever. Large chunks go out a mebibyte at a time, so that progress is seen.
pub fn watched<S>(
    body: S,
    shutdown: Option<axum_server::ConnectionShutdown>,
    timeout: Duration,
) -> impl futures::Stream<Item = S::Item> + Send + 'static
where
    S: futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Unpin + 'static,
{
    let state = std::sync::Arc::new(Progress {
        started: std::time::Instant::now(),
        waiting_since: std::sync::atomic::AtomicU64::new(NOT_WAITING),
        done: std::sync::atomic::AtomicBool::new(false),
        wake: tokio::sync::Notify::new(),
    });
    if let Some(shutdown) = shutdown {
        let state = state.clone();
        tokio::spawn(async move {
            use std::sync::atomic::Ordering;
            let step = (timeout / 4).max(Duration::from_millis(50));
            loop {
                tokio::select! {
                    _ = state.wake.notified() => {}
                    _ = sleep(step) => {}
                }
                if state.done.load(Ordering::Acquire) {
                    return;
                }
                let since = state.waiting_since.load(Ordering::Acquire);
                if since != NOT_WAITING
                    && state.millis().saturating_sub(since) > timeout.as_millis() as u64
                {
                    tracing::debug!(
                        "a response made no progress for {} s: connection closed",
                        timeout.as_secs()
                    );
                    shutdown.shutdown();
                    return;
                }
            }
        });
    }
    Watched {
        inner: body,
        pending: bytes::Bytes::new(),
        state,
    }
}

const NOT_WAITING: u64 = u64::MAX;
/// The largest piece handed to the connection at once.
const PIECE: usize = 1 << 20;

struct Progress {
    started: std::time::Instant,
    /// Milliseconds since `started` when a piece was handed over and not yet followed by the
    /// next poll; [`NOT_WAITING`] otherwise.
    waiting_since: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicBool,
    wake: tokio::sync::Notify,
}

impl Progress {
    fn millis(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

struct Watched<S> {
    inner: S,
    /// The rest of a large chunk, not yet handed over.
    pending: bytes::Bytes,
    state: std::sync::Arc<Progress>,
}

impl<S> futures::Stream for Watched<S>
where
    S: futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin,
{
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        use std::sync::atomic::Ordering;
        self.state
            .waiting_since
            .store(NOT_WAITING, Ordering::Release);
        let next = if !self.pending.is_empty() {
            let n = self.pending.len().min(PIECE);
            Poll::Ready(Some(Ok(self.pending.split_to(n))))
        } else {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(mut chunk))) if chunk.len() > PIECE => {
                    self.pending = chunk.split_off(PIECE);
                    Poll::Ready(Some(Ok(chunk)))
                }
                other => other,
            }
        };
        match &next {
            Poll::Ready(Some(Ok(_))) => {
                let now = self.state.millis();
                self.state.waiting_since.store(now, Ordering::Release);
            }
            Poll::Ready(_) => {
                self.state.done.store(true, Ordering::Release);
                self.state.wake.notify_one();
            }
            Poll::Pending => {}
        }
        next
    }
}

impl<S> Drop for Watched<S> {
    fn drop(&mut self) {
        self.state
            .done
            .store(true, std::sync::atomic::Ordering::Release);
        self.state.wake.notify_one();
    }
}

/// A request body that fails when the client sends nothing for `timeout` (a STOW-RS body
/// that stops mid-way must not hold its connection and request slot for ever).
pub fn body_deadline<S>(
    body: S,
    timeout: Duration,
) -> impl futures::Stream<Item = Result<bytes::Bytes, String>> + Send + 'static
where
    S: futures::Stream<Item = Result<bytes::Bytes, String>> + Send + Unpin + 'static,
{
    futures::stream::unfold(Some(body), move |body| async move {
        use futures::StreamExt;
        let mut body = body?;
        match tokio::time::timeout(timeout, body.next()).await {
            Ok(Some(item)) => Some((item, Some(body))),
            Ok(None) => None,
            Err(_) => Some((
                Err(format!(
                    "the client sent nothing for {} s",
                    timeout.as_secs()
                )),
                None,
            )),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A peer that reads nothing: the write fails after the timeout, not never.
    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_reads_times_out() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let mut s = TimedStream::new(ours, Duration::from_secs(5));
        let e = s
            .write_all(&vec![0u8; 1 << 20])
            .await
            .expect_err("times out");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    /// A peer that reads slowly but steadily keeps the connection.
    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_reads_is_served() {
        use tokio::io::AsyncReadExt;
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            let mut total = 0;
            while total < 64 * 1024 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                total += theirs.read(&mut buf).await.expect("read");
            }
            total
        });
        let mut s = TimedStream::new(ours, Duration::from_secs(5));
        s.write_all(&vec![0u8; 64 * 1024])
            .await
            .expect("no timeout");
        assert!(reader.await.expect("reader") >= 64 * 1024);
    }
}
