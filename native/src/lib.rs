//! # wado-native
//!
//! The native frontend of wado: an axum server and the `wado` command line around
//! [`wado_core`]. This crate adapts HTTP and IO only: every DICOMweb decision (routing,
//! negotiation, multipart, metadata, status codes) is made by [`wado_core::Service`].
//!
//! - [`app`] builds the axum router (used by `wado serve` and by tests without sockets);
//! - [`fs_store::FsStore`] is the local-directory store;
//! - [`import`] drives the core's import batch over files and folders, on every core;
//! - [`conn`] bounds what a connection may cost (first-byte and write-progress deadlines);
//! - [`pool::BlockingPool`] runs the core's decoding, encoding and conversions off the async
//!   threads.
#![forbid(unsafe_code)]

pub mod audit;
pub mod conn;
mod demo;
pub mod dimse;
pub mod fs_store;
pub mod http_get;
pub mod import;
pub mod index;
pub mod metrics;
pub mod pool;
pub mod postgres;
pub mod s3_store;
pub mod settings;
pub mod stow_client;
pub mod webhook;

use axum::body::Body as AxumBody;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Instant;
use wado_core::{Body, Service};

/// Shared state of the server.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The WADO-RS service.
    pub service: Arc<Service>,
    /// At most this many requests in flight (the seed: "configurable, unlimited by default");
    /// `None` is unlimited.
    pub limit: Option<Arc<tokio::sync::Semaphore>>,
    /// Counters for `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// The built browser demo, served at `/demo/`.
    pub demo_dir: Option<std::path::PathBuf>,
    /// How long a response may wait on a client that takes nothing (the connection is closed
    /// then), and a request body may send nothing (the request fails then).
    pub timeouts: Timeouts,
    /// Where audit records go (`--audit-log`).
    pub audit: Option<Arc<audit::AuditLog>>,
}

/// What a request may wait for its client.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// A response chunk the client does not take (`--write-timeout`).
    pub write: std::time::Duration,
    /// A request body that sends nothing (`--header-timeout`).
    pub body: std::time::Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            write: std::time::Duration::from_secs(60),
            body: std::time::Duration::from_secs(30),
        }
    }
}

impl AppState {
    /// State for a service, with an optional limit of simultaneous requests.
    pub fn new(service: Arc<Service>, max_requests: Option<usize>) -> AppState {
        let metrics = metrics::Metrics::default();
        metrics.set_limit(max_requests.unwrap_or(0) as u64);
        AppState {
            service,
            limit: max_requests
                .filter(|&n| n > 0)
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
            metrics: Arc::new(metrics),
            demo_dir: None,
            timeouts: Timeouts::default(),
            audit: None,
        }
    }

    /// Writes audit records to `log`.
    pub fn with_audit(mut self, log: Option<Arc<audit::AuditLog>>) -> AppState {
        self.audit = log;
        self
    }

    /// With these timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> AppState {
        self.timeouts = timeouts;
        self
    }

    /// Serves the built demo in `dir` at `/demo/`.
    pub fn with_demo(mut self, dir: Option<std::path::PathBuf>) -> AppState {
        self.demo_dir = dir;
        self
    }
}

/// Opens the store named by `--data`: an `s3://` URL (S3, R2, MinIO, ...) or a directory
/// (whose writes wait for the disk when `durable`: `fs_store`'s module doc).
pub fn open_store(
    data: &std::path::Path,
    durable: bool,
) -> Result<Arc<dyn wado_core::store::Store>, String> {
    match data.to_str().filter(|d| d.starts_with("s3://")) {
        Some(url) => Ok(Arc::new(s3_store::S3Store::open(url)?)),
        None => fs_store::FsStore::new(data)
            .map(|s| Arc::new(s.durable(durable)) as Arc<dyn wado_core::store::Store>)
            .map_err(|e| format!("{}: {e}", data.display())),
    }
}

/// The router: every path goes to the core service; `/` says where the service root is.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", axum::routing::get(index))
        .route("/health", axum::routing::get(health))
        .route("/metrics", axum::routing::get(metrics_text))
        .route("/demo", axum::routing::get(demo::redirect))
        .route("/demo/", axum::routing::get(demo::index))
        .route("/demo/{*file}", axum::routing::get(demo::file))
        .fallback(handle)
        .with_state(state)
}

/// When access control is on, what belongs to no AE title (this page, the metrics) still
/// takes a valid token (any AE): AE titles and traffic figures are not for anyone who asks.
async fn gate(state: &AppState, headers: &http::HeaderMap) -> Option<Response> {
    let auth = state.service.config().auth.as_ref()?;
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let plain = (http::header::CONTENT_TYPE, "text/plain; charset=utf-8");
    let (status, text) = match auth.check_any(authorization, now).await {
        wado_core::auth::Decision::Allowed(_) => return None,
        wado_core::auth::Decision::Forbidden => (
            http::StatusCode::FORBIDDEN,
            "a token confined to some studies may not read this\n".to_owned(),
        ),
        wado_core::auth::Decision::Unavailable { reason } => {
            let headers = [plain, (http::header::RETRY_AFTER, "10")];
            return Some(
                (
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    headers,
                    format!("{reason}\n"),
                )
                    .into_response(),
            );
        }
        wado_core::auth::Decision::Unauthenticated { reason, .. } => {
            (http::StatusCode::UNAUTHORIZED, format!("{reason}\n"))
        }
    };
    let challenge = (http::header::WWW_AUTHENTICATE, "Bearer realm=\"wado\"");
    Some((status, [challenge, plain], text).into_response())
}

async fn index(State(state): State<AppState>, headers: http::HeaderMap) -> Response {
    if let Some(denied) = gate(&state, &headers).await {
        return denied;
    }
    let aes = state.service.config().ae_titles.join(", ");
    (
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "wado: a DICOMweb WADO-RS server.\nService root: /dcm4chee-arc/aets/{{AETitle}}/rs (AE titles: {aes})\n\
             Try: GET /dcm4chee-arc/aets/{}/rs/studies/{{StudyInstanceUID}}/metadata\n",
            state.service.config().ae_titles.first().map(String::as_str).unwrap_or("DCM4CHEE")
        ),
    )
        .into_response()
}

/// Prometheus text exposition.
async fn metrics_text(State(state): State<AppState>, headers: http::HeaderMap) -> Response {
    if let Some(denied) = gate(&state, &headers).await {
        return denied;
    }
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render() + &audit::metrics(state.audit.as_deref()) + &oidc_metrics(&state),
    )
        .into_response()
}

/// The `/metrics` lines of the OpenID Connect issuer's keys, when tokens are checked with them.
fn oidc_metrics(state: &AppState) -> String {
    let Some(oidc) = state
        .service
        .config()
        .auth
        .as_ref()
        .and_then(|a| a.oidc.as_ref())
    else {
        return String::new();
    };
    format!(
        "# HELP wado_oidc_key_fetch_failures_total Fetches of the OpenID Connect issuer's keys that failed.\n# TYPE wado_oidc_key_fetch_failures_total counter\nwado_oidc_key_fetch_failures_total {}\n",
        oidc.failed_fetches()
    )
}

/// Counts a request in flight until dropped (with the body, when streamed), and times it when
/// it converted pixel data or encodings.
///
/// Its drop also writes the request's log line, once the bytes sent and the whole duration
/// are known: method, path, status, bytes, ms, negotiated media type and transfer syntaxes.
struct InFlight {
    metrics: Arc<metrics::Metrics>,
    started: Instant,
    converted: bool,
    method: http::Method,
    /// The path, at most [`LOGGED_PATH`] bytes of it.
    path: String,
    /// The client's address (`-` when unknown).
    client: String,
    /// The request's id (`X-Request-Id`, the audit record's).
    request_id: String,
    status: u16,
    media_type: String,
    transfer_syntax: String,
    bytes: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.end();
        let elapsed = self.started.elapsed();
        if self.converted {
            self.metrics.transcode(elapsed.as_micros() as u64);
        }
        tracing::info!(
            client = %self.client,
            request_id = %self.request_id,
            method = %self.method,
            path = %self.path,
            status = self.status,
            bytes = self.bytes,
            ms = elapsed.as_secs_f64() * 1000.0,
            media_type = %self.media_type,
            transfer_syntax = %self.transfer_syntax,
            "request"
        );
    }
}

/// The most bytes of a path a log line holds: a 64 KiB path is logged by its start and its
/// length.
const LOGGED_PATH: usize = 256;

/// A path as logged: cut at [`LOGGED_PATH`] bytes (on a character boundary), its length said.
fn logged_path(path: &str) -> String {
    if path.len() <= LOGGED_PATH {
        return path.to_owned();
    }
    let mut end = LOGGED_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &path[..end], path.len())
}

/// Liveness and readiness: 200 when the store answers, 503 otherwise.
async fn health(State(state): State<AppState>) -> Response {
    match state
        .service
        .store()
        .get(wado_core::layout::LAYOUT_KEY)
        .await
    {
        Ok(_) => (
            [(http::header::CONTENT_TYPE, "application/json")],
            "{\"status\":\"ok\"}\n",
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: store unavailable");
            (
                http::StatusCode::SERVICE_UNAVAILABLE,
                [(http::header::CONTENT_TYPE, "application/json")],
                "{\"status\":\"store unavailable\"}\n",
            )
                .into_response()
        }
    }
}

async fn handle(State(state): State<AppState>, req: Request) -> Response {
    let started = Instant::now();
    // Beyond the limit: an immediate 503, never a queue (a queue only moves the overload into
    // memory and latency).
    let permit = match &state.limit {
        None => None,
        Some(sem) => match sem.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                state.metrics.rejected();
                // Debug, not warn: under overload a line per rejection would flood the log.
                tracing::debug!(method = %req.method(), path = %logged_path(req.uri().path()), status = 503, "request limit reached");
                return (
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    [
                        (http::header::RETRY_AFTER, "1"),
                        (http::header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                    ],
                    "too many simultaneous requests; retry shortly\n",
                )
                    .into_response();
            }
        },
    };
    let (parts, body) = req.into_parts();
    // Only STOW-RS reads a body (the core says which requests are one); it streams in as the
    // core asks for it.
    let body = if wado_core::reads_body(&parts.method, parts.uri.path()) {
        wado_core::RequestBody::new(Box::pin(conn::body_deadline(
            body.into_data_stream()
                .map(|r| r.map_err(|e| e.to_string())),
            state.timeouts.body,
        )))
    } else {
        wado_core::RequestBody::none()
    };
    let entropy: [u8; 16] = rand::random();
    let client = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let core_req = wado_core::Request {
        client: client.as_deref(),
        who: Default::default(),
        method: &parts.method,
        path: parts.uri.path(),
        query: parts.uri.query(),
        // HTTP/2 carries the host in the :authority pseudo-header (the URI here), not in Host.
        authority: parts.uri.authority().map(|a| a.as_str()),
        headers: &parts.headers,
        entropy,
        body,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    state.metrics.start();
    let resp = state.service.handle(&core_req).await;
    let outcome = resp.outcome;
    let status = resp.status;
    if let (Some(log), Some(record)) = (&state.audit, &outcome.audit) {
        log.write(record, &outcome.request_id);
    }
    state
        .metrics
        .count(outcome.resource.unwrap_or("other"), status.as_u16());
    let mut in_flight = InFlight {
        metrics: state.metrics.clone(),
        started,
        converted: outcome.converted,
        method: parts.method.clone(),
        path: logged_path(parts.uri.path()),
        client: parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or_else(|| "-".to_owned(), |c| c.0.to_string()),
        request_id: outcome.request_id.clone(),
        status: status.as_u16(),
        media_type: outcome.media_type.clone().unwrap_or_else(|| "-".into()),
        transfer_syntax: outcome.transfer_syntaxes.join(","),
        bytes: 0,
    };
    if let Some(err) = &outcome.error {
        if status.is_server_error() {
            tracing::error!(method = %parts.method, path = %logged_path(parts.uri.path()), status = status.as_u16(), error = %err, "request failed");
        }
    }
    if let Some(w) = &outcome.warning {
        tracing::warn!(path = %logged_path(parts.uri.path()), warning = %w, "partial content");
    }

    let path = logged_path(parts.uri.path());
    let metrics = state.metrics.clone();
    let shutdown = parts
        .extensions
        .get::<axum_server::ConnectionShutdown>()
        .cloned();
    let mut headers = resp.headers;
    let stream: Option<BodyStream> = match resp.body {
        Body::Empty => None,
        Body::Full(b) => {
            metrics.sent(b.len() as u64);
            in_flight.bytes = b.len() as u64;
            // Its length said, as it would be of a whole buffer; sent a piece at a time.
            if !headers.contains_key(http::header::CONTENT_LENGTH) && !b.is_empty() {
                headers.insert(http::header::CONTENT_LENGTH, b.len().into());
            }
            (!b.is_empty()).then(|| {
                Box::pin(futures::stream::iter([Ok::<_, std::io::Error>(b)])) as BodyStream
            })
        }
        Body::Stream(s) => Some(Box::pin(s.map(move |r| {
            // The permit and the in-flight guard live as long as the body is being sent (the
            // whole guard is captured, not one of its fields).
            let (_permit, guard) = (&permit, &mut in_flight);
            if let Ok(chunk) = &r {
                metrics.sent(chunk.len() as u64);
                guard.bytes += chunk.len() as u64;
            }
            r.map_err(|e| {
                // Headers are already sent: log and abort the connection (the client sees a
                // truncated body, never a silently short one).
                tracing::error!(path = %path, error = %e, "error while streaming the body");
                std::io::Error::other(e.public_message())
            })
        }))),
    };
    let body = match stream {
        None => AxumBody::empty(),
        Some(s) => AxumBody::from_stream(conn::watched(s, shutdown, state.timeouts.write)),
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// A response body on its way out.
type BodyStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64 KiB path is logged by its first 256 bytes (never split inside a character) and
    /// its length.
    #[test]
    fn long_paths_are_logged_cut() {
        assert_eq!(logged_path("/health"), "/health");
        let long = format!("/{}", "é".repeat(32 * 1024));
        let logged = logged_path(&long);
        assert!(logged.len() < LOGGED_PATH + 32, "{}", logged.len());
        assert!(logged.ends_with(&format!("…({} bytes)", long.len())));
        assert!(long.starts_with(logged.split('…').next().unwrap_or("")));
    }
}
