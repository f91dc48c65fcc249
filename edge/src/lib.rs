//! # wado-edge
//!
//! The WADO-RS service as a Cloudflare Worker: requests go to the same
//! [`wado_core::Service`] the native server runs, over an R2 bucket that holds the
//! layout `wado import` writes (docs/STORAGE-LAYOUT.md). This crate only adapts IO: the
//! request and response types, the bucket, the clock and the random source.
//!
//! Settings come from `wrangler.toml` variables and secrets (all optional):
//! `AE_TITLES` (comma-separated, default `DCM4CHEE`), `PUBLIC_URL`, `ALLOWED_HOSTS`, `CORS_ORIGINS`
//! (comma-separated), `TOKENS` (a tokens file's text), `JWT_KEYS` (PEM or JWK Set text),
//! `JWT_ISSUER`, `JWT_AUDIENCE`, `JWT_AE_CLAIM`; `ALLOW_ANONYMOUS_WRITES` (`"true"`: anyone may
//! store without a token; off by default, when only tokens that say `write` may);
//! `ORIGIN_URL` (the service root of an archive
//! to fetch missing studies and series from, [`wado_core::ingest::upstream`]) and `ORIGIN_AUTHORIZATION`
//! (the Authorization header sent to it, a secret); `ORIGIN_FEED_SECONDS` (how often the cache
//! reads a wado origin's change feed and drops what changed there, [`wado_core::ingest::follow`]:
//! 10 by default, `0` before every read, `off` never; a cron trigger reads it too); a read-through cache without `TOKENS` or
//! `JWT_KEYS` also needs `PUBLIC = "true"` (or it would fetch any study of the origin for
//! anyone). The bucket binding is `BUCKET`. With a queue producer binding `FEED_QUEUE`, the
//! change feed is pushed to it (each change a message) after every write and by the cron
//! trigger.
//!
//! The crate is empty on other targets (the workspace builds it natively too).
#![cfg(target_arch = "wasm32")]

pub mod d1;
pub mod queue;
pub mod r2;

// Links malloc & co. for openjp2 (JPEG 2000).
use wasm_libc_shim as _;

use futures::StreamExt;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use wado_core::ingest::upstream::{Upstream, UpstreamResponse};
use wado_core::{Body, Config, Request as CoreRequest, Service};
use worker::{event, Context, EncodeBody, Env, Headers, Request, Response, ResponseBuilder};

thread_local! {
    /// One service per isolate: its metadata cache outlives a request.
    static SERVICE: RefCell<Option<Rc<Service>>> = const { RefCell::new(None) };
    /// This isolate's name as a pusher of the change feed (isolates take turns by a lease).
    static HOLDER: RefCell<String> = const { RefCell::new(String::new()) };
    /// A push of this isolate is under way, and whether a write asked for one meanwhile.
    static PUSHING: std::cell::Cell<(bool, bool)> = const { std::cell::Cell::new((false, false)) };
}

/// The producer binding the change feed is pushed to, when the worker has one.
const FEED_QUEUE: &str = "FEED_QUEUE";
/// Seconds an isolate pushing the feed holds the turn (renewed with each batch); another
/// takes over after it when it stopped.
const FEED_LEASE: u64 = 15;

/// Pushes the change feed to the `FEED_QUEUE` binding, when there is one
/// ([`wado_core::Service::push_feed`]); failures go to the log (the next write or the cron
/// trigger sends again).
async fn push_feed(svc: &Service, env: &Env) {
    let Ok(queue) = env.queue(FEED_QUEUE) else {
        return;
    };
    let holder = HOLDER.with(|h| {
        let mut h = h.borrow_mut();
        if h.is_empty() {
            let mut b = [0u8; 8];
            if getrandom::getrandom(&mut b).is_ok() {
                *h = b.iter().map(|x| format!("{x:02x}")).collect();
            }
        }
        h.clone()
    });
    if holder.is_empty() {
        worker::console_error!("wado-edge: no random source to name this isolate");
        return;
    }
    // One push at a time per isolate: a write during a push has it go round once more.
    if PUSHING.with(|p| {
        let (running, _) = p.get();
        p.set((true, running));
        running
    }) {
        return;
    }
    let sink = queue::QueueSink {
        binding: FEED_QUEUE.to_owned(),
        queue,
    };
    loop {
        let now = (js_sys::Date::now() / 1000.0) as u64;
        for note in svc
            .push_feed(&sink, &holder, (FEED_LEASE, queue::BATCH), now)
            .await
        {
            worker::console_error!("wado-edge: change feed to the queue: {note}");
        }
        let again = PUSHING.with(|p| {
            let (_, again) = p.get();
            p.set((again, false));
            again
        });
        if !again {
            return;
        }
    }
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| env.secret(name).ok().map(|v| v.to_string()))
        .filter(|v| !v.trim().is_empty())
}

fn list(env: &Env, name: &str) -> Vec<String> {
    var(env, name)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// `console.info`: the level Workers Logs and `wrangler dev --log-level info` keep.
    #[wasm_bindgen(js_namespace = console, js_name = info)]
    fn console_info(line: &str);
}

/// The audit trail's queue producer binding: each record one message.
const AUDIT_QUEUE: &str = "AUDIT_QUEUE";

/// Audit records the queue would not take, in this isolate (said with each one logged).
static AUDIT_FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sends an audit record to the `AUDIT_QUEUE` binding (tried three times), or to the worker's
/// log (`AUDIT = "log"`: Workers Logs, Logpush). A record the queue would not take goes to the
/// log as an error, the record in it, with the count of such failures in the isolate:
/// counted and reported, never dropped silently.
async fn write_audit(env: &Env, record: String) {
    let Ok(queue) = env.queue(AUDIT_QUEUE) else {
        console_info(&format!("audit {record}"));
        return;
    };
    let mut last = String::new();
    for _ in 0..3 {
        let body = match js_sys::JSON::parse(&record) {
            Ok(b) => b,
            Err(e) => {
                last = format!("{e:?}");
                break;
            }
        };
        let message = worker::RawMessageBuilder::new(body)
            .build_with_content_type(worker::QueueContentType::Json);
        match queue.send_raw(message).await {
            Ok(()) => return,
            Err(e) => last = e.to_string(),
        }
    }
    let n = AUDIT_FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    worker::console_error!(
        "wado-edge: audit record not queued ({last}; {n} in this isolate): {record}"
    );
}

/// The service configuration from the worker's environment.
fn config(env: &Env) -> Result<Config, String> {
    let mut ae_titles = list(env, "AE_TITLES");
    if ae_titles.is_empty() {
        ae_titles.push(wado_core::layout::DEFAULT_AE_TITLE.to_owned());
    }
    let auth = wado_core::auth::Auth::from_settings(&wado_core::auth::AuthSettings {
        tokens: var(env, "TOKENS").map(|t| ("TOKENS".to_owned(), t)),
        jwt_keys: var(env, "JWT_KEYS").map(|k| ("JWT_KEYS".to_owned(), k)),
        jwt_issuer: var(env, "JWT_ISSUER").unwrap_or_default(),
        jwt_audience: var(env, "JWT_AUDIENCE").unwrap_or_default(),
        jwt_ae_claim: var(env, "JWT_AE_CLAIM").unwrap_or_default(),
        jwt_max_lifetime: var(env, "JWT_MAX_LIFETIME").and_then(|v| v.trim().parse().ok()),
        oidc_issuer: var(env, "OIDC_ISSUER").map(|u| ("OIDC_ISSUER".to_owned(), u)),
        oidc_client: Some(Arc::new(FetchGet)),
        share_keys: var(env, "SHARE_KEYS").map(|k| ("SHARE_KEYS".to_owned(), k)),
        share_revoked: var(env, "SHARE_REVOKED"),
        jwt_roles: var(env, "JWT_ROLES").map(|map| {
            let claim = var(env, "JWT_ROLES_CLAIM").unwrap_or_else(|| "roles".into());
            ("JWT_ROLES".to_owned(), claim, map)
        }),
    })?
    .map(Arc::new);
    Ok(Config {
        ae_titles,
        public_url: var(env, "PUBLIC_URL"),
        cors_origins: list(env, "CORS_ORIGINS"),
        allowed_hosts: list(env, "ALLOWED_HOSTS"),
        auth,
        upstream: var(env, "ORIGIN_URL").map(|root| {
            Arc::new(FetchUpstream {
                root: root.trim_end_matches('/').to_owned(),
                authorization: var(env, "ORIGIN_AUTHORIZATION"),
            }) as Arc<dyn Upstream>
        }),
        // A read-through cache follows its origin's change feed (when the origin is wado):
        // read when the last read is this many seconds old (`ORIGIN_FEED_SECONDS`, 10 by
        // default; `off` never), and by the cron trigger (`scheduled` below).
        origin_feed: match var(env, "ORIGIN_FEED_SECONDS") {
            Some(v) if v.trim().eq_ignore_ascii_case("off") => None,
            Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
                format!("ORIGIN_FEED_SECONDS = {v:?}: seconds (0 or more) or \"off\"")
            })?),
            None => Some(10),
        },
        // A read-through cache may keep what it fills as HTJ2K .4.202 (`FILL_TRANSCODE`), so
        // that every frame it serves streams progressively.
        fill_transcode: var(env, "FILL_TRANSCODE").map(|v| v.trim().to_owned()),
        // Workers are reached over HTTPS, except under `wrangler dev`, where the URL says.
        scheme: "https".into(),
        public: var(env, "PUBLIC").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        // A Worker has 128 MB: a whole-file conversion holds the file and its result.
        // What the isolate's conversions may hold together: a frame or two of a large image.
        conversion_memory: var(env, "CONVERSION_MEMORY_MB")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(80)
            .saturating_mul(1 << 20),
        max_convert_bytes: var(env, "MAX_CONVERT_MB")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(32)
            .saturating_mul(1 << 20),
        // STOW-RS: Cloudflare takes request bodies up to 100 MB (Free and Pro plans; 200 MB
        // Business, 500 MB Enterprise); each instance is held whole in the isolate's 128 MB
        // while it is written to R2, so one instance is bounded lower.
        max_store_bytes: var(env, "MAX_STORE_MB")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(100)
            .saturating_mul(1 << 20),
        max_instance_bytes: var(env, "MAX_INSTANCE_MB")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(40)
            .saturating_mul(1 << 20),
        read_only: var(env, "READ_ONLY").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        // workerd cancels a request that waits on another request's work.
        requests_share_work: false,
        // Without TOKENS or JWT_KEYS, nobody may store unless this says so on purpose.
        share_viewer: var(env, "SHARE_VIEWER"),
        audit: env.queue(AUDIT_QUEUE).is_ok() || var(env, "AUDIT").as_deref() == Some("log"),
        allow_anonymous_writes: var(env, "ALLOW_ANONYMOUS_WRITES")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        // How long replaced, corrected and deleted versions are kept (and served at
        // `.../versions`) before writes sweep them.
        keep_removed: var(env, "KEEP_REMOVED_SECONDS")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(wado_core::ingest::RETIRED_GRACE),
        max_store_parts: var(env, "MAX_STORE_INSTANCES")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(10_000)
            .max(1),
        ..Config::default()
    })
}

/// The upstream archive (`ORIGIN_URL`), reached with the Workers `fetch`.
#[derive(Debug)]
struct FetchUpstream {
    root: String,
    authorization: Option<String>,
}

#[async_trait::async_trait(?Send)]
impl Upstream for FetchUpstream {
    fn root(&self) -> &str {
        &self.root
    }

    async fn get(&self, url: &str, accept: &str) -> Result<UpstreamResponse, String> {
        let go = async {
            let mut headers = vec![("Accept", accept)];
            if let Some(a) = &self.authorization {
                headers.push(("Authorization", a));
            }
            let mut resp = fetch_get(url, &headers).await?;
            let content_type = resp.headers().get("Content-Type")?.unwrap_or_default();
            let body = resp.bytes().await?;
            Ok::<_, worker::Error>(UpstreamResponse {
                status: resp.status_code(),
                content_type,
                body: bytes::Bytes::from(body),
            })
        };
        go.await.map_err(|e| e.to_string())
    }
}

/// A GET with these headers through the worker's `fetch`.
async fn fetch_get(url: &str, headers: &[(&str, &str)]) -> worker::Result<worker::Response> {
    let h = Headers::new();
    for (k, v) in headers {
        h.set(k, v)?;
    }
    let mut init = worker::RequestInit::new();
    init.with_method(worker::Method::Get).with_headers(h);
    let req = Request::new_with_init(url, &init)?;
    worker::Fetch::Request(req).send().await
}

/// The worker's `fetch` for what the core fetches itself (an OpenID Connect issuer's keys).
#[derive(Debug)]
struct FetchGet;

#[async_trait::async_trait(?Send)]
impl wado_core::auth::oidc::HttpGet for FetchGet {
    async fn get(&self, url: &str) -> Result<wado_core::auth::oidc::HttpAnswer, String> {
        let go = async {
            let mut resp = fetch_get(url, &[("Accept", "application/json")]).await?;
            let cache_control = resp.headers().get("Cache-Control")?;
            let body = resp.bytes().await?;
            Ok::<_, worker::Error>(wado_core::auth::oidc::HttpAnswer {
                status: resp.status_code(),
                cache_control,
                body: bytes::Bytes::from(body),
            })
        };
        go.await.map_err(|e| e.to_string())
    }
}

fn service(env: &Env, scheme: &str) -> Result<Rc<Service>, String> {
    if let Some(s) = SERVICE.with(|s| s.borrow().clone()) {
        return Ok(s);
    }
    let bucket = env
        .bucket("BUCKET")
        .map_err(|e| format!("R2 binding BUCKET: {e}"))?;
    let mut cfg = config(env)?;
    cfg.scheme = scheme.to_owned();
    // The catalog: which instances exist (required: the bucket alone does not say).
    let db = env
        .d1("INDEX")
        .map_err(|e| format!("D1 binding INDEX (the catalog): {e}"))?;
    cfg.index = Some(Arc::new(d1::D1Index::new(db)));
    if let Some(n) = var(env, "MAX_RESULTS").and_then(|v| v.trim().parse::<usize>().ok()) {
        cfg.max_results = n.max(1);
    }
    cfg.check()?;
    worker::console_log!("wado-edge: {}", cfg.write_policy());
    let svc = Rc::new(Service::new(Arc::new(r2::R2Store::new(bucket)), cfg));
    SERVICE.with(|s| *s.borrow_mut() = Some(svc.clone()));
    Ok(svc)
}

fn plain(status: u16, text: &str) -> worker::Result<Response> {
    Ok(ResponseBuilder::new()
        .with_status(status)
        .ok(format!("{text}\n"))?)
}

/// `request.cf.clientAcceptEncoding`, when the platform replaced the client's header.
fn client_accept_encoding(req: &Request) -> Option<String> {
    let cf = js_sys::Reflect::get(req.inner(), &"cf".into()).ok()?;
    if cf.is_undefined() || cf.is_null() {
        return None;
    }
    js_sys::Reflect::get(&cf, &"clientAcceptEncoding".into())
        .ok()?
        .as_string()
}

/// The storage conformance suite run against this worker's R2 bucket, at
/// `/__wado/store-conformance`, only when the variable `STORE_SELFTEST` is `1` (the tests set
/// it under `wrangler dev`; it writes and deletes keys under `t/`, so never set it on a bucket
/// that matters). A failed check panics: the message goes to the worker's log and the request
/// fails.
async fn store_selftest(env: &Env) -> worker::Result<Response> {
    std::panic::set_hook(Box::new(|info| {
        worker::console_error!("store conformance: {info}");
    }));
    let store = r2::R2Store::new(env.bucket("BUCKET")?);
    wado_core::store::conformance::run_all(&store).await;
    plain(200, "ok: every conformance check passed")
}

/// The catalog conformance suite run against this worker's D1 database, at
/// `/__wado/index-conformance`, only when the variable `INDEX_SELFTEST` is `1` (the tests set
/// it under `wrangler dev`; it writes partitions named `D1...` into the database). Two
/// handles on the one binding write at once.
async fn index_selftest(env: &Env) -> worker::Result<Response> {
    std::panic::set_hook(Box::new(|info| {
        worker::console_error!("index conformance: {info}");
    }));
    let a = d1::D1Index::new(env.d1("INDEX")?);
    let b = d1::D1Index::new(env.d1("INDEX")?);
    let all: [&dyn wado_core::search::Index; 2] = [&a, &b];
    wado_core::search::conformance::run_all(&a, &all, "D1").await;
    plain(200, "ok: every catalog conformance check passed")
}

/// The cron trigger (`[triggers] crons` in wrangler.toml): a read-through cache reads its
/// origin's change feed and drops what changed there, so that what nobody asks for is not
/// kept stale either (requests read it too, every `ORIGIN_FEED_SECONDS`); with a `FEED_QUEUE`
/// binding, what was not yet pushed to it is.
#[event(scheduled)]
async fn scheduled(_event: worker::ScheduledEvent, env: Env, _ctx: worker::ScheduleContext) {
    let svc = match service(&env, "https") {
        Ok(s) => s,
        Err(e) => {
            worker::console_error!("wado-edge: configuration: {e}");
            return;
        }
    };
    let mut entropy = [0u8; 16];
    if getrandom::getrandom(&mut entropy).is_err() {
        worker::console_error!("wado-edge: no random source for the scheduled run");
        return;
    }
    let now = (js_sys::Date::now() / 1000.0) as u64;
    for note in svc.follow_upstream_now(now, entropy).await {
        worker::console_error!("wado-edge: origin feed: {note}");
    }
    push_feed(&svc, &env).await;
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let url = req.url()?;
    if url.path() == "/__wado/store-conformance"
        && var(&env, "STORE_SELFTEST").as_deref() == Some("1")
    {
        return store_selftest(&env).await;
    }
    if url.path() == "/__wado/index-conformance"
        && var(&env, "INDEX_SELFTEST").as_deref() == Some("1")
    {
        return index_selftest(&env).await;
    }
    let scheme = url.scheme().to_owned();
    let svc = match service(&env, &scheme) {
        Ok(s) => s,
        Err(e) => {
            worker::console_error!("wado-edge: configuration: {e}");
            return plain(500, "the worker is misconfigured; see its log");
        }
    };
    let method =
        http::Method::from_bytes(req.method().as_ref().as_bytes()).unwrap_or(http::Method::GET);
    let mut headers = http::HeaderMap::new();
    for (k, v) in req.headers().entries() {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(&v),
        ) {
            headers.append(k, v);
        }
    }
    // Cloudflare (and wrangler dev) show the worker `Accept-Encoding: br, gzip` whatever the
    // client sent, and keep the client's value in `request.cf.clientAcceptEncoding`: the core
    // must negotiate with the client's, or a client that cannot gunzip gets gzip.
    if let Some(client) = client_accept_encoding(&req) {
        headers.remove(http::header::ACCEPT_ENCODING);
        if let Ok(v) = http::HeaderValue::from_str(&client) {
            if !client.trim().is_empty() {
                headers.insert(http::header::ACCEPT_ENCODING, v);
            }
        }
    }
    let authority = url.host_str().map(|h| match url.port() {
        Some(p) => format!("{h}:{p}"),
        None => h.to_owned(),
    });
    let mut entropy = [0u8; 16];
    // workerd allows randomness inside a handler (not at module load).
    getrandom::getrandom(&mut entropy).map_err(|e| worker::Error::RustError(e.to_string()))?;
    // Only STOW-RS reads a body (the core says which requests are one): the platform's
    // stream, read as the core asks for it. Other requests never touch theirs.
    let stow = wado_core::reads_body(&method, url.path())
        && !headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0");
    let body = match stow.then(|| req.stream()) {
        Some(Ok(stream)) => wado_core::RequestBody::new(Box::pin(
            stream.map(|chunk| chunk.map(bytes::Bytes::from).map_err(|e| e.to_string())),
        )),
        _ => wado_core::RequestBody::none(),
    };
    let client = headers
        .get("cf-connecting-ip")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let core_req = CoreRequest {
        client: client.as_deref(),
        who: Default::default(),
        method: &method,
        path: url.path(),
        query: url.query(),
        authority: authority.as_deref(),
        headers: &headers,
        entropy,
        body,
        now: (js_sys::Date::now() / 1000.0) as u64,
    };
    let resp = svc.handle(&core_req).await;
    // A body the core did not read (a STOW refused before its body) is read to its end here:
    // a request stream dropped unread leaves workerd's isolate unusable for the next request
    // ("Your worker restarted mid-request").
    if let Some(mut unread) = core_req.body.take() {
        while let Some(Ok(_)) = unread.next().await {}
    }
    if let Some(e) = &resp.outcome.error {
        worker::console_error!(
            "{} {} -> {} [request {} from {}]: {e}",
            method,
            url.path(),
            resp.status,
            resp.outcome.request_id,
            client.as_deref().unwrap_or("-")
        );
    }
    if let Some(record) = resp.outcome.audit.clone() {
        let env = env.clone();
        ctx.wait_until(async move { write_audit(&env, record).await });
    }
    // A write's changes go to the queue after the response (the cron trigger sends what a
    // cancelled push left).
    if method != http::Method::GET && method != http::Method::HEAD && resp.status.is_success() {
        let (svc, env) = (svc.clone(), env.clone());
        ctx.wait_until(async move { push_feed(&svc, &env).await });
    }
    let out = Headers::new();
    for (k, v) in &resp.headers {
        if let Ok(v) = v.to_str() {
            out.append(k.as_str(), v)?;
        }
    }
    let mut builder = ResponseBuilder::new()
        .with_status(resp.status.as_u16())
        .with_headers(out);
    if resp.headers.contains_key(http::header::CONTENT_ENCODING) {
        // The body is already gzip or deflate (stored metadata): the runtime must not encode it
        // again.
        builder = builder.with_encode_body(EncodeBody::Manual);
    }
    Ok(match resp.body {
        Body::Empty => builder.empty(),
        Body::Full(b) => builder.fixed(b.to_vec()),
        Body::Stream(s) => builder.from_stream(s.map(|chunk| {
            chunk
                .map(|b| b.to_vec())
                .map_err(|e| worker::Error::RustError(e.to_string()))
        }))?,
    })
}
