//! The contract between the core and a frontend: the [`Request`] it builds from what arrived,
//! the [`Response`] it sends back (status, headers, a [`Body`] that may stream), and the
//! [`Outcome`] it logs and counts.

use crate::error::Result;
use bytes::Bytes;
use futures::stream::Stream;
use http::{HeaderMap, Method, StatusCode};
use std::pin::Pin;

/// A streamed response body: chunks in order; an error ends the stream (the frontend aborts
/// the connection, so the client sees an incomplete body rather than a silently short one).
#[cfg(not(target_arch = "wasm32"))]
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;
/// A streamed response body (not `Send` on wasm32).
#[cfg(target_arch = "wasm32")]
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes>>>>;

/// A request body as it arrives: chunks in order; an error (the client went away, the
/// connection broke) ends it.
#[cfg(not(target_arch = "wasm32"))]
pub type RequestStream = Pin<Box<dyn Stream<Item = std::result::Result<Bytes, String>> + Send>>;
/// A request body as it arrives (not `Send` on wasm32).
#[cfg(target_arch = "wasm32")]
pub type RequestStream = Pin<Box<dyn Stream<Item = std::result::Result<Bytes, String>>>>;

/// The body of a request, taken once by the handler that reads it (STOW-RS); requests
/// without one have [`RequestBody::none`].
#[derive(Default)]
pub struct RequestBody(std::sync::Mutex<Option<RequestStream>>);

impl RequestBody {
    /// No body.
    pub fn none() -> RequestBody {
        RequestBody::default()
    }

    /// A body read from `stream`.
    pub fn new(stream: RequestStream) -> RequestBody {
        RequestBody(std::sync::Mutex::new(Some(stream)))
    }

    /// The stream, the first time; `None` after, or when there is no body.
    pub fn take(&self) -> Option<RequestStream> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Gives back a stream taken and read only in part, so that the frontend can finish it
    /// (the Workers runtime wants every request body read to its end or not begun).
    pub fn give_back(&self, stream: RequestStream) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream);
    }
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestBody")
    }
}

/// A response body.
pub enum Body {
    /// No body.
    Empty,
    /// A body in one buffer.
    Full(Bytes),
    /// A streamed body.
    Stream(BodyStream),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Body::Empty"),
            Body::Full(b) => write!(f, "Body::Full({} bytes)", b.len()),
            Body::Stream(_) => f.write_str("Body::Stream"),
        }
    }
}

/// What the frontend should log about a response.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The negotiated media type.
    pub media_type: Option<String>,
    /// The transfer syntaxes of the parts (distinct, in order).
    pub transfer_syntaxes: Vec<String>,
    /// The error, when the response is one; server errors carry their details here only.
    pub error: Option<String>,
    /// A note on what was left out (206).
    pub warning: Option<String>,
    /// `Warning: 299` notes that leave the status as it is: search parameters ignored,
    /// results cut at the server's maximum (PS3.18 §8.3.4).
    pub notices: Vec<String>,
    /// What identifies the representation (stored content identity, media type, syntax,
    /// public root): the ETag is derived from it.
    pub validator: Option<String>,
    /// The kind of resource answered (`instances`, `metadata`, `frames`, `bulkdata`), for
    /// metrics; `None` when the request named none.
    pub resource: Option<&'static str>,
    /// True when some part is converted (decoded, encoded or re-encoded), not sent as stored.
    pub converted: bool,
    /// The studies a STOW-RS request stored into, for the audit record.
    pub studies: Vec<String>,
    /// The request's id (also in `X-Request-Id`), for the log line.
    pub request_id: String,
    /// The audit record ([`crate::audit`]) as one line of JSON, when the server keeps a trail:
    /// the frontend writes it to its sink.
    pub audit: Option<String>,
}

/// A response.
#[derive(Debug)]
pub struct Response {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Body,
    /// For the log line.
    pub outcome: Outcome,
}

/// A request, as the frontend sees it.
#[derive(Debug)]
pub struct Request<'a> {
    /// Method.
    pub method: &'a Method,
    /// Path, percent-encoded as received, without the query.
    pub path: &'a str,
    /// The raw query string, if any.
    pub query: Option<&'a str>,
    /// The authority of the request URI (HTTP/2's `:authority`, or the URL's `host[:port]`),
    /// used for URIs in responses when there is no Host header and no public URL.
    pub authority: Option<&'a str>,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// 16 random bytes for the multipart boundary (the core has no random source).
    pub entropy: [u8; 16],
    /// The time, in seconds since the Unix epoch (the core has no clock): checks JWT expiry.
    pub now: u64,
    /// The body (read by STOW-RS only).
    pub body: RequestBody,
    /// The client's address, as the frontend knows it (for the audit trail).
    pub client: Option<&'a str>,
    /// Who the credentials name, noted by the access check (for the audit trail).
    pub who: Who,
}

/// Who a request's credentials name: written by the access check, read for the audit record.
#[derive(Debug, Default)]
pub struct Who(std::sync::Mutex<Option<String>>);

impl Who {
    /// Notes the subject.
    pub fn set(&self, subject: String) {
        if let Ok(mut w) = self.0.lock() {
            *w = Some(subject);
        }
    }

    /// The subject noted, if any.
    pub fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|w| w.clone())
    }
}
