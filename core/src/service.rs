//! The request handler: a typed request and a store in, a response (status, headers, streamed
//! body) out. Frontends adapt HTTP and IO to [`Service::handle`] and do nothing else.
//!
//! Status codes (PS3.18 §10.4.3, Table 10.4.3-2; dcm4chee's behaviour where the standard is
//! silent):
//! - 200 everything asked for is in the body;
//! - 206 some instances could not be given in any acceptable type (left out, named in a
//!   `Warning` header), or some requested frames are beyond Number of Frames (the valid ones are
//!   sent): dcm4chee answers both cases the same way;
//! - 400 malformed UIDs, frame lists or parameters; 404 unknown AE title or resource, or no
//!   requested frame exists; 405 other methods; 406 nothing acceptable can be produced.

use crate::error::{Error, Result};
use crate::layout::{self, InstanceIndex, KeyKind, LayoutRecord};
use crate::media::{ts, MediaType};
use crate::multipart::{boundary_from_entropy, MultipartWriter};
use crate::negotiate::{choose_ts, Category, Chosen, Negotiation};
use crate::route::{self, AttributePath, PathStep, Resource, Target, Uid};
use crate::store::{ObjectMeta, Store};
use bytes::{Bytes, BytesMut};
use futures::stream::{self, Stream, StreamExt};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// A streamed response body: chunks in order; an error ends the stream (the frontend aborts
/// the connection, so the client sees an incomplete body rather than a silently short one).
#[cfg(not(target_arch = "wasm32"))]
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;
/// A streamed response body (not `Send` on wasm32).
#[cfg(target_arch = "wasm32")]
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes>>>>;

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
    /// What identifies the representation (stored content identity, media type, syntax,
    /// public root): the ETag is derived from it.
    pub validator: Option<String>,
    /// The kind of resource answered (`instances`, `metadata`, `frames`, `bulkdata`), for
    /// metrics; `None` when the request named none.
    pub resource: Option<&'static str>,
    /// True when some part is converted (decoded, encoded or re-encoded), not sent as stored.
    pub converted: bool,
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
    /// Headers.
    pub headers: &'a HeaderMap,
    /// 16 random bytes for the multipart boundary (the core has no random source).
    pub entropy: [u8; 16],
    /// The time, in seconds since the Unix epoch (the core has no clock): checks JWT expiry.
    pub now: u64,
}

/// Service configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The AE titles served; any other answers 404.
    pub ae_titles: Vec<String>,
    /// The public base URL (scheme://host[:port][/prefix]) for URIs in responses. `None` uses
    /// `http://{Host header}`.
    pub public_url: Option<String>,
    /// Bytes per storage read when streaming objects.
    pub chunk_size: u64,
    /// Most bytes of rebased metadata kept in memory.
    pub metadata_cache_bytes: usize,
    /// Origins allowed to call from a browser (CORS); `*` allows any; empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// The scheme of URIs built from the Host header when `public_url` is not set (`https`
    /// when the frontend serves TLS).
    pub scheme: String,
    /// Bearer tokens required on every route, when set (off by default).
    pub auth: Option<Arc<crate::auth::Auth>>,
    /// An archive to fetch missing studies and series from (a read-through cache; see
    /// [`crate::origin`]). Off by default.
    pub origin: Option<Arc<dyn crate::origin::Origin>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            ae_titles: vec![layout::DEFAULT_AE_TITLE.to_owned()],
            public_url: None,
            chunk_size: 1 << 20,
            metadata_cache_bytes: 64 << 20,
            cors_origins: Vec::new(),
            scheme: "http".into(),
            auth: None,
            origin: None,
        }
    }
}

/// The WADO-RS service over one store.
#[derive(Debug)]
pub struct Service {
    store: Arc<dyn Store>,
    config: Config,
    layout: Mutex<Option<LayoutRecord>>,
    cache: Mutex<MetaCache>,
}

/// What a cached metadata body was made from, and for whom.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    key: String,
    size: u64,
    trailer: Vec<u8>,
    root: String,
    coding: &'static str,
}

/// A byte-bounded cache of metadata bodies, evicting the oldest first.
#[derive(Debug, Default)]
struct MetaCache {
    entries: HashMap<CacheKey, Bytes>,
    order: std::collections::VecDeque<CacheKey>,
    bytes: usize,
}

impl MetaCache {
    fn get(&self, k: &CacheKey) -> Option<Bytes> {
        self.entries.get(k).cloned()
    }

    fn insert(&mut self, k: CacheKey, v: Bytes, budget: usize) {
        if v.len() > budget || self.entries.contains_key(&k) {
            return;
        }
        while self.bytes + v.len() > budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(b) = self.entries.remove(&old) {
                self.bytes -= b.len();
            }
        }
        self.bytes += v.len();
        self.order.push_back(k.clone());
        self.entries.insert(k, v);
    }
}

/// Response headers a browser script may read (CORS).
const CORS_EXPOSED: &str =
    "Content-Type, Content-Location, Content-Length, Content-Encoding, ETag, Warning";

/// Transfer syntaxes this build converts between (uncompressed, by re-encoding the data set).
fn can_convert(from: &str, to: &str, pixel: Option<&crate::layout::PixelInfo>) -> bool {
    let writable = [
        ts::EXPLICIT_VR_LE,
        ts::IMPLICIT_VR_LE,
        ts::EXPLICIT_VR_BE,
        ts::DEFLATED_EXPLICIT_VR_LE,
    ];
    let readable = ts::is_native(from) || crate::codec::can_decode(from);
    (ts::is_native(from) && writable.contains(&to))
        || (readable && to == ts::EXPLICIT_VR_LE)
        || (readable && pixel.is_some_and(|p| crate::codec::can_encode(to, p)))
}

/// Whether a frame stored in `from` can be given as `to` in `media` (uncompressed bulk data:
/// native frames as they are, compressed ones decoded).
fn can_give_frame(media: MediaType, info: &crate::layout::PixelInfo, from: &str, to: &str) -> bool {
    let readable = ts::is_native(from) || crate::codec::can_decode(from);
    let writable = match media {
        MediaType::OctetStream => to == ts::EXPLICIT_VR_LE,
        MediaType::DicomRle
        | MediaType::Jpeg
        | MediaType::Jls
        | MediaType::Jp2
        | MediaType::Jpx => crate::codec::can_encode(to, info),
        _ => false,
    };
    readable && writable
}

impl Service {
    /// A service over `store`.
    pub fn new(store: Arc<dyn Store>, config: Config) -> Service {
        Service {
            store,
            config,
            layout: Mutex::new(None),
            cache: Mutex::new(MetaCache::default()),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Answers one request. Never panics on client input; every failure is a response.
    pub async fn handle(&self, req: &Request<'_>) -> Response {
        let origin = self.allowed_origin(req.headers);
        if req.method == Method::OPTIONS
            && origin.is_some()
            && header_str(
                req.headers,
                HeaderName::from_static("access-control-request-method"),
            )
            .is_some()
        {
            return self.preflight(origin.as_deref().unwrap_or("*"));
        }
        let mut resp = match self.route(req).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        };
        if let Some(o) = origin {
            set(&mut resp.headers, header::ACCESS_CONTROL_ALLOW_ORIGIN, &o);
            set(
                &mut resp.headers,
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                CORS_EXPOSED,
            );
            resp.headers
                .append(header::VARY, HeaderValue::from_static("Origin"));
        }
        resp
    }

    /// The value of Access-Control-Allow-Origin for this request, if its Origin is allowed.
    fn allowed_origin(&self, headers: &HeaderMap) -> Option<String> {
        let origin = header_str(headers, header::ORIGIN)?;
        if self.config.cors_origins.iter().any(|o| o == "*") {
            return Some("*".into());
        }
        self.config
            .cors_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(&origin))
            .then_some(origin)
    }

    /// A CORS preflight answer (Fetch standard §3.2.2).
    fn preflight(&self, origin: &str) -> Response {
        let mut headers = HeaderMap::new();
        set(&mut headers, header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        set(
            &mut headers,
            header::ACCESS_CONTROL_ALLOW_METHODS,
            "GET, HEAD, OPTIONS",
        );
        set(
            &mut headers,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "Accept, Authorization, Range, If-None-Match, If-Modified-Since",
        );
        set(&mut headers, header::ACCESS_CONTROL_MAX_AGE, "600");
        set(&mut headers, header::VARY, "Origin");
        Response {
            status: StatusCode::NO_CONTENT,
            headers,
            body: Body::Empty,
            outcome: Outcome::default(),
        }
    }

    async fn layout(&self) -> Result<LayoutRecord> {
        if let Some(l) = self
            .layout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(l);
        }
        let rec = match self.store.get(layout::LAYOUT_KEY).await? {
            Some(b) => LayoutRecord::from_json(&b)?,
            None => {
                return Ok(LayoutRecord::new(
                    layout::DEFAULT_PUBLIC_URL,
                    layout::DEFAULT_AE_TITLE,
                ))
            }
        };
        *self.layout.lock().unwrap_or_else(|p| p.into_inner()) = Some(rec.clone());
        Ok(rec)
    }

    async fn route(&self, req: &Request<'_>) -> Result<Response> {
        if req.method != Method::GET && req.method != Method::HEAD {
            return Err(Error::MethodNotAllowed);
        }
        let Some(route) = route::parse_path(req.path)? else {
            return Err(Error::NotFound(
                "not a WADO-RS path; the service root is /dcm4chee-arc/aets/{AETitle}/rs".into(),
            ));
        };
        if let Some(auth) = &self.config.auth {
            match auth.check(
                header_str(req.headers, header::AUTHORIZATION).as_deref(),
                &route.ae_title,
                req.now,
            ) {
                crate::auth::Decision::Allowed => {}
                crate::auth::Decision::Unauthenticated { invalid, reason } => {
                    return Err(Error::Unauthorized {
                        reason: reason.into(),
                        invalid,
                    });
                }
                crate::auth::Decision::Forbidden => {
                    return Err(Error::Forbidden(format!(
                        "this token may not read AE title {:?}",
                        route.ae_title
                    )));
                }
            }
        }
        if !self.config.ae_titles.contains(&route.ae_title) {
            return Err(Error::NotFound(format!(
                "unknown AE title {:?}",
                route.ae_title
            )));
        }
        let accept_query = req.query.and_then(|q| query_param(q, "accept"));
        let accept_header = header_str(req.headers, header::ACCEPT);
        let root = self.service_root(req, &route.ae_title);
        let ctx = Ctx {
            req,
            root,
            boundary: boundary_from_entropy(req.entropy),
            modified: Default::default(),
        };
        let category = match &route.resource {
            Resource::Instances(t) => Category::Instances {
                instance: matches!(t, Target::Instance { .. }),
            },
            Resource::Metadata(_) | Resource::SearchStudies => Category::Metadata,
            Resource::Frames { .. } => Category::Frames,
            Resource::BulkData { .. } | Resource::PixelData(_) => Category::BulkData,
        };
        let neg = Negotiation::new(accept_header.as_deref(), accept_query.as_deref(), category)?;
        if let (Some(origin), Some(target)) = (&self.config.origin, route.resource.target()) {
            if !crate::origin::is_cached(&*self.store, target).await? {
                self.fill_from_origin(&ctx, &route.ae_title, &**origin, target)
                    .await?;
            }
        }
        let mut resp = self.dispatch(&ctx, &route.resource, &neg).await?;
        resp.outcome.resource = Some(match &route.resource {
            Resource::Instances(_) => "instances",
            Resource::Metadata(_) => "metadata",
            Resource::SearchStudies => "studies",
            Resource::Frames { .. } => "frames",
            Resource::BulkData { .. } | Resource::PixelData(_) => "bulkdata",
        });
        if let Some(m) = ctx.last_modified() {
            if matches!(resp.status, StatusCode::OK | StatusCode::PARTIAL_CONTENT) {
                set(&mut resp.headers, header::LAST_MODIFIED, &http_date(m));
            }
        }
        Ok(not_modified(req.headers, ctx.last_modified(), resp))
    }

    /// Fetches a missing study or series from the origin into the store (a new store gets
    /// its layout record first, with this request's service root).
    async fn fill_from_origin(
        &self,
        ctx: &Ctx<'_>,
        ae_title: &str,
        origin: &dyn crate::origin::Origin,
        target: &Target,
    ) -> Result<()> {
        let suffix = format!("/dcm4chee-arc/aets/{ae_title}/rs");
        let public = ctx.root.strip_suffix(&suffix).unwrap_or(&ctx.root);
        let layout = crate::import::ensure_layout(&*self.store, public, ae_title).await?;
        crate::origin::fill(&*self.store, origin, &layout, target).await?;
        Ok(())
    }

    async fn dispatch(
        &self,
        ctx: &Ctx<'_>,
        resource: &Resource,
        neg: &Negotiation,
    ) -> Result<Response> {
        match resource {
            Resource::Metadata(t) => self.metadata(ctx, t, neg).await,
            Resource::SearchStudies => self.search_studies(ctx, neg).await,
            Resource::Instances(t) => self.instances(ctx, t, neg).await,
            Resource::Frames { target, frames } => self.frames(ctx, target, frames, neg).await,
            Resource::BulkData { target, path } => self.bulkdata(ctx, target, path, neg).await,
            Resource::PixelData(target) => {
                self.bulkdata(
                    ctx,
                    target,
                    &AttributePath(vec![PathStep::Tag(0x7FE0_0010)]),
                    neg,
                )
                .await
            }
        }
    }

    fn service_root(&self, req: &Request<'_>, ae: &str) -> String {
        let base = match &self.config.public_url {
            Some(u) => u.clone(),
            None => {
                let host = header_str(req.headers, header::HOST)
                    .filter(|h| {
                        !h.is_empty()
                            && h.bytes()
                                .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'"')
                    })
                    .unwrap_or_else(|| "localhost".into());
                format!("{}://{host}", self.config.scheme)
            }
        };
        layout::service_root(&base, ae)
    }

    // ===== metadata =====

    async fn metadata(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        neg: &Negotiation,
    ) -> Result<Response> {
        let media = neg
            .media_choices()
            .into_iter()
            .map(|(m, _)| m)
            .find(|m| {
                matches!(
                    m,
                    MediaType::DicomJson | MediaType::Json | MediaType::DicomXml
                )
            })
            .ok_or_else(|| {
                Error::NotAcceptable(crate::negotiate::available_text(Category::Metadata))
            })?;
        if media == MediaType::DicomXml {
            return self.metadata_xml(ctx, target).await;
        }
        let layout = self.layout().await?;
        let coding =
            choose_encoding(header_str(ctx.req.headers, header::ACCEPT_ENCODING).as_deref());
        let (body, identity) = self.metadata_body(ctx, target, &layout, coding).await?;
        let validator = format!(
            "metadata|{}|{identity}|{media}|{coding}|{}",
            target.path(),
            ctx.root
        );
        let mut headers = HeaderMap::new();
        set(&mut headers, header::CONTENT_TYPE, media.as_str());
        if coding != "identity" {
            set(&mut headers, header::CONTENT_ENCODING, coding);
        }
        set(&mut headers, header::VARY, "Accept, Accept-Encoding");
        set(
            &mut headers,
            header::CONTENT_LENGTH,
            &body.len().to_string(),
        );
        set(&mut headers, header::ETAG, &entity_tag(&validator, false));
        Ok(Response {
            status: StatusCode::OK,
            headers,
            body: Body::Full(body),
            outcome: Outcome {
                media_type: Some(media.as_str().into()),
                validator: Some(validator),
                ..Outcome::default()
            },
        })
    }

    /// The studies the store holds, as QIDO-RS Search for Studies results without matching
    /// (PS3.18 §10.6.3, Table 10.6.3-3's study attributes): one read of the stored study
    /// metadata per study. Matching parameters are refused (400) rather than ignored, so a
    /// client never takes an unfiltered list for a filtered one.
    async fn search_studies(&self, ctx: &Ctx<'_>, neg: &Negotiation) -> Result<Response> {
        let media = neg
            .media_choices()
            .into_iter()
            .map(|(m, _)| m)
            .find(|m| matches!(m, MediaType::DicomJson | MediaType::Json))
            .ok_or_else(|| {
                Error::NotAcceptable(
                    "the study list is available as application/dicom+json or application/json"
                        .into(),
                )
            })?;
        let mut limit = usize::MAX;
        let mut offset = 0usize;
        for pair in ctx
            .req
            .query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                v.parse::<usize>()
                    .map_err(|_| Error::BadRequest(format!("{k}={v:?} is not a number")))
            };
            match k {
                "limit" => limit = number()?,
                "offset" => offset = number()?,
                "accept" | "includefield" | "fuzzymatching" => {}
                other => {
                    return Err(Error::BadRequest(format!(
                        "query {other:?}: this server lists all studies and does not match attributes; use limit and offset"
                    )))
                }
            }
        }
        let suffix = "/metadata.json.gz";
        let mut keys: Vec<String> = self
            .store
            .list("studies/")
            .await?
            .into_iter()
            .filter(|o| {
                o.key
                    .strip_suffix(suffix)
                    .and_then(|k| k.strip_prefix("studies/"))
                    .is_some_and(|uid| !uid.contains('/'))
            })
            .map(|o| {
                ctx.saw(o.modified);
                o.key
            })
            .collect();
        keys.sort();
        let mut out: Vec<serde_json::Value> = Vec::new();
        for key in keys.iter().skip(offset).take(limit) {
            let Some(gz) = self.store.get(key).await? else {
                continue;
            };
            let mut json = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut json)
                .map_err(|e| Error::corrupt(key, e))?;
            let instances: Vec<serde_json::Map<String, serde_json::Value>> =
                serde_json::from_slice(&json).map_err(|e| Error::corrupt(key, e))?;
            out.push(study_result(&instances, &ctx.root));
        }
        let body = Bytes::from(serde_json::to_vec(&out).map_err(|e| Error::corrupt("studies", e))?);
        let mut headers = HeaderMap::new();
        set(&mut headers, header::CONTENT_TYPE, media.as_str());
        set(
            &mut headers,
            header::CONTENT_LENGTH,
            &body.len().to_string(),
        );
        Ok(Response {
            status: StatusCode::OK,
            headers,
            body: Body::Full(body),
            outcome: Outcome {
                media_type: Some(media.as_str().into()),
                ..Outcome::default()
            },
        })
    }

    /// Metadata as `multipart/related; type="application/dicom+xml"`: one Native DICOM Model
    /// document per instance (PS3.18 Table 10.4.4-1, PS3.19 Annex A), translated from the
    /// stored JSON.
    async fn metadata_xml(&self, ctx: &Ctx<'_>, target: &Target) -> Result<Response> {
        let layout = self.layout().await?;
        let (json, _) = self.metadata_body(ctx, target, &layout, "identity").await?;
        let list: Vec<serde_json::Value> =
            serde_json::from_slice(&json).map_err(|e| Error::corrupt(target.path(), e))?;
        let uid = |v: &serde_json::Value, tag: &str| {
            v.get(tag)
                .and_then(|a| a.get("Value"))
                .and_then(|a| a.get(0))
                .and_then(|a| a.as_str())
                .unwrap_or("")
                .to_owned()
        };
        let mut parts = Vec::with_capacity(list.len());
        for inst in &list {
            let mut doc = String::with_capacity(16 * 1024);
            crate::xml::write_document(inst, &mut doc)
                .map_err(|e| Error::corrupt(target.path(), e))?;
            parts.push(Part {
                content_type: "application/dicom+xml".into(),
                location: format!(
                    "{}/studies/{}/series/{}/instances/{}/metadata",
                    ctx.root,
                    uid(inst, "0020000D"),
                    uid(inst, "0020000E"),
                    uid(inst, "00080018")
                ),
                entry: String::new(),
                source: Source::Bytes(Bytes::from(doc)),
            });
        }
        let outcome = Outcome {
            media_type: Some("application/dicom+xml".into()),
            ..Outcome::default()
        };
        Ok(self.multipart_response(ctx, "application/dicom+xml", parts, outcome))
    }

    /// The metadata of a target as a DICOM JSON array in `coding`, BulkDataURIs on the
    /// request's root, with the stored content identity it was made from.
    async fn metadata_body(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        layout: &LayoutRecord,
        coding: &'static str,
    ) -> Result<(Bytes, String)> {
        let key = match target {
            Target::Study { study } => layout::study_metadata_key(study),
            Target::Series { study, series } => layout::series_metadata_key(study, series),
            Target::Instance { .. } => {
                let idx = self.instance_index(ctx, target).await?;
                let mut json = format!("[{}]", idx.metadata.get()).into_bytes();
                if layout.service_root != ctx.root {
                    json = rebase_json(&json, &layout.service_root, &ctx.root);
                }
                let body = match coding {
                    "gzip" => gzip_fast(&json),
                    "deflate" => Bytes::from(zlib(&json)),
                    _ => Bytes::from(json),
                };
                return Ok((body, idx.source.sha256.clone()));
            }
        };
        self.stored_metadata(ctx, &key, &layout.service_root, coding)
            .await
    }

    /// Study or series metadata in the wanted content coding, BulkDataURIs on `root`.
    ///
    /// With the stored root and gzip this is one read of the stored object. Anything else
    /// (identity or deflate, another root) is computed once and cached, keyed by the object's
    /// size and gzip trailer (CRC-32 and length, RFC 1952 §2.3.1): one 8-byte read tells whether
    /// the cached bytes still match the stored object.
    async fn stored_metadata(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        stored_root: &str,
        coding: &'static str,
    ) -> Result<(Bytes, String)> {
        let root = ctx.root.as_str();
        let missing = || Error::NotFound("no such study or series".into());
        if stored_root == root && coding == "gzip" {
            // One read: the stored object is the answer.
            let (b, meta) = self.store.get_object(key).await?.ok_or_else(missing)?;
            ctx.saw(meta.modified);
            let id = format!(
                "{}-{}",
                b.len(),
                hex::encode(&b[b.len().saturating_sub(8)..])
            );
            return Ok((b, id));
        }
        let head = self.store.head(key).await?.ok_or_else(missing)?;
        ctx.saw(head.modified);
        let size = head.size;
        if size < 18 {
            return Err(Error::corrupt(key, "not a gzip object"));
        }
        let trailer = self
            .store
            .get_range(key, size - 8..size)
            .await?
            .ok_or_else(missing)?;
        let id = format!("{size}-{}", hex::encode(&trailer));
        let ck = CacheKey {
            key: key.to_owned(),
            size,
            trailer: trailer.to_vec(),
            root: root.to_owned(),
            coding,
        };
        if let Some(b) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ck)
        {
            return Ok((b, id));
        }
        let gz = self.store.get(key).await?.ok_or_else(missing)?;
        let mut json = Vec::with_capacity(gz.len() * 16);
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut json)
            .map_err(|e| Error::corrupt(key, e))?;
        let rebased = stored_root != root;
        if rebased {
            json = rebase_json(&json, stored_root, root);
        }
        let out = match coding {
            "gzip" => gzip_fast(&json),
            "deflate" => Bytes::from(zlib(&json)),
            _ => Bytes::from(json),
        };
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
            ck,
            out.clone(),
            self.config.metadata_cache_bytes,
        );
        Ok((out, id))
    }

    // ===== instances =====

    /// The instance's index, checked against its stored file (which must exist and match).
    async fn instance_index(&self, ctx: &Ctx<'_>, target: &Target) -> Result<InstanceIndex> {
        let Target::Instance {
            study,
            series,
            instance,
        } = target
        else {
            return Err(Error::NotFound("not an instance".into()));
        };
        let key = layout::index_key(study, series, instance);
        let bytes = self.store.get(&key).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "no instance {instance} in series {series} of study {study}"
            ))
        })?;
        let idx = InstanceIndex::from_json(&key, &bytes)?;
        let head = self
            .store
            .head(&layout::instance_key(study, series, instance))
            .await?;
        ctx.saw(head.as_ref().and_then(|h| h.modified));
        if head.map(|h| h.size) != Some(idx.source.size) {
            // An import was interrupted between writing the index and the file.
            return Err(Error::NotFound(format!(
                "no instance {instance} in series {series} of study {study}"
            )));
        }
        Ok(idx)
    }

    /// The stored instances of a target: (study, series, sop, dcm key, size), sorted.
    async fn list_instances(&self, ctx: &Ctx<'_>, target: &Target) -> Result<Vec<StoredInstance>> {
        let prefix = match target {
            Target::Study { study } => layout::study_prefix(study),
            Target::Series { study, series } => layout::series_prefix(study, series),
            Target::Instance {
                study,
                series,
                instance,
            } => {
                let key = layout::instance_key(study, series, instance);
                let Some(ObjectMeta { size, modified, .. }) = self.store.head(&key).await? else {
                    return Err(Error::NotFound(format!(
                        "no instance {instance} in series {series} of study {study}"
                    )));
                };
                if self
                    .store
                    .size(&layout::index_key(study, series, instance))
                    .await?
                    .is_none()
                {
                    return Err(Error::NotFound(format!("no instance {instance}")));
                }
                ctx.saw(modified);
                return Ok(vec![StoredInstance {
                    study: study.clone(),
                    series: series.clone(),
                    sop: instance.clone(),
                    key,
                    size,
                }]);
            }
        };
        let listing = self.store.list(&prefix).await?;
        let mut dcm: BTreeMap<(Uid, Uid), Vec<StoredInstance>> = BTreeMap::new();
        let mut indexed = std::collections::HashSet::new();
        for o in listing {
            match layout::classify_key(&o.key) {
                KeyKind::Instance { study, series, sop } => {
                    ctx.saw(o.modified);
                    dcm.entry((study.clone(), series.clone()))
                        .or_default()
                        .push(StoredInstance {
                            study,
                            series,
                            sop,
                            key: o.key,
                            size: o.size,
                        })
                }
                KeyKind::Index { study, series, sop } => {
                    indexed.insert((study, series, sop));
                }
                KeyKind::Other => {}
            }
        }
        let out: Vec<StoredInstance> = dcm
            .into_values()
            .flatten()
            .filter(|i| indexed.contains(&(i.study.clone(), i.series.clone(), i.sop.clone())))
            .collect();
        if out.is_empty() {
            return Err(Error::NotFound(match target {
                Target::Study { study } => format!("no study {study}"),
                _ => format!("no series {}", target.path()),
            }));
        }
        Ok(out)
    }

    async fn instances(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        neg: &Negotiation,
    ) -> Result<Response> {
        let first = neg.media_choices().into_iter().next();
        if first.is_some_and(|(m, _)| !matches!(m, MediaType::Dicom | MediaType::Zip)) {
            return self.instances_other(ctx, target, neg).await;
        }
        let choice = neg
            .media_choices()
            .into_iter()
            .find(|(m, _)| matches!(m, MediaType::Dicom | MediaType::Zip))
            .ok_or_else(|| {
                Error::NotAcceptable(format!(
                    "{} are not available for study, series or instance resources yet; {}",
                    neg.media_choices()
                        .iter()
                        .map(|(m, _)| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    crate::negotiate::available_text(Category::Instances {
                        instance: matches!(target, Target::Instance { .. })
                    })
                ))
            })?;
        let (media, multipart) = choice;
        let wanted = neg.wanted(media, multipart);
        let instances = self.list_instances(ctx, target).await?;
        let any = wanted.contains(&crate::negotiate::TsWanted::Any);
        // Plan each part. With `transfer-syntax=*` nothing needs to be known in advance: the
        // stored syntax is read from the file's first chunk while streaming.
        let mut parts = Vec::with_capacity(instances.len());
        let mut left_out = Vec::new();
        let mut syntaxes: Vec<String> = Vec::new();
        if any {
            for i in &instances {
                parts.push(Part::dicom(
                    ctx,
                    i,
                    None,
                    Source::Object {
                        key: i.key.clone(),
                        start: 0,
                        end: i.size,
                        detect_ts: true,
                    },
                ));
            }
        } else {
            // The stored syntax and pixel depth of each instance, from its index.
            let indexes = self.load_indexes(&instances).await?;
            for (i, idx) in instances.iter().zip(&indexes) {
                let stored_ts = idx.transfer_syntax.clone();
                match choose_ts(MediaType::Dicom, &wanted, &stored_ts, |f, t| {
                    can_convert(f, t, idx.pixel.as_ref())
                }) {
                    Some(Chosen {
                        ts: t,
                        passthrough: true,
                    }) => {
                        parts.push(Part::dicom(
                            ctx,
                            i,
                            Some(&t),
                            Source::Object {
                                key: i.key.clone(),
                                start: 0,
                                end: i.size,
                                detect_ts: false,
                            },
                        ));
                        push_distinct(&mut syntaxes, t);
                    }
                    Some(Chosen {
                        ts: t,
                        passthrough: false,
                    }) => {
                        parts.push(Part::dicom(
                            ctx,
                            i,
                            Some(&t),
                            Source::Convert {
                                key: i.key.clone(),
                                to: t.clone(),
                            },
                        ));
                        push_distinct(&mut syntaxes, t);
                    }
                    None => left_out.push(format!("{} ({stored_ts})", i.sop)),
                }
            }
        }
        if parts.is_empty() {
            return Err(Error::NotAcceptable(format!(
                "no instance can be given in an acceptable transfer syntax (stored: {}); instances in a syntax this build cannot decode (JPEG XL, HTJ2K; JPEG 2000 where openjp2 is not built in; video is never transcoded) can be had with transfer-syntax=* or in their own syntax",
                left_out.join(", ")
            )));
        }
        let warning = left_out_warning(&left_out, "in an acceptable transfer syntax");
        // No validator: a content identity of every instance would cost a read per instance
        // (a same-size replacement must not yield a stale 304).
        let converted = parts
            .iter()
            .any(|p| matches!(p.source, Source::Convert { .. }));
        let outcome = Outcome {
            media_type: Some("application/dicom".into()),
            transfer_syntaxes: syntaxes,
            warning,
            error: None,
            validator: None,
            resource: None,
            converted,
        };
        if media == MediaType::Zip {
            // dcm4chee's extension: one ZIP of the PS3.10 files, entries {study}/{series}/{sop}.dcm.
            Ok(self.zip_response(
                parts,
                Outcome {
                    media_type: Some("application/zip".into()),
                    ..outcome
                },
            ))
        } else if multipart {
            Ok(self.multipart_response(ctx, "application/dicom", parts, outcome))
        } else {
            // Single part: convert before answering, so a corrupt file is a 500, not a
            // truncated 200.
            let mut part = parts.remove(0);
            if let Source::Convert { key, to } = &part.source {
                let bytes = self
                    .store
                    .get(key)
                    .await?
                    .ok_or_else(|| Error::NotFound(key.clone()))?;
                part.source = Source::Bytes(Bytes::from(convert(key, &bytes, to)?));
            }
            Ok(self.single_response(ctx, part, outcome))
        }
    }

    /// The indexes of listed instances, read 16 at a time.
    async fn load_indexes(&self, list: &[StoredInstance]) -> Result<Vec<InstanceIndex>> {
        let loads: Vec<_> = list
            .iter()
            .map(|i| load_index(self.store.clone(), i.clone()))
            .collect();
        stream::iter(loads)
            .buffered(16)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    /// Study, series or instance resources in a non-DICOM media type (PS3.18 Table 10.4.4-1):
    /// the bulk data of the instances. `application/octet-stream` and the image types give
    /// every frame of every image instance; `application/pdf` and `text/xml` the Encapsulated
    /// Document of instances whose MIME Type of Encapsulated Document says so; `video/mpeg` and
    /// `video/mp4` the video stream as stored (never transcoded). Media types are tried in the
    /// client's order; the first that some instance can be given in is used, and instances
    /// that cannot are left out (206, named in a Warning header).
    async fn instances_other(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        neg: &Negotiation,
    ) -> Result<Response> {
        let list = self.list_instances(ctx, target).await?;
        let indexes = self.load_indexes(&list).await?;
        let category = Category::Instances {
            instance: matches!(target, Target::Instance { .. }),
        };
        for (media, multipart) in neg.media_choices() {
            if matches!(media, MediaType::Dicom | MediaType::Zip)
                || !category.allows(media, multipart)
            {
                continue;
            }
            let wanted = neg.wanted(media, multipart);
            let mut parts = Vec::new();
            let mut left_out = Vec::new();
            let mut syntaxes = Vec::new();
            for idx in &indexes {
                match self.instance_parts(ctx, idx, media, &wanted).await? {
                    Some((p, t)) => {
                        parts.extend(p);
                        if let Some(t) = t {
                            push_distinct(&mut syntaxes, t);
                        }
                    }
                    None => left_out.push(idx.sop_instance.clone()),
                }
            }
            if parts.is_empty() {
                continue;
            }
            let warning = left_out_warning(&left_out, &format!("as {media}"));
            let converted = parts
                .iter()
                .any(|p| matches!(p.source, Source::Transcode { .. }));
            let outcome = Outcome {
                media_type: Some(media.as_str().into()),
                transfer_syntaxes: syntaxes,
                warning,
                error: None,
                validator: None,
                resource: None,
                converted,
            };
            return Ok(self.multipart_response(ctx, media.as_str(), parts, outcome));
        }
        Err(Error::NotAcceptable(format!(
            "no instance of {} can be given in an acceptable media type (image instances: application/octet-stream or their stored image type; documents: application/pdf, text/xml; video: video/mpeg, video/mp4)",
            target.path()
        )))
    }

    /// One instance's parts in `media`, with the transfer syntax they carry; `None` when the
    /// instance cannot be given in that media type.
    async fn instance_parts(
        &self,
        ctx: &Ctx<'_>,
        idx: &InstanceIndex,
        media: MediaType,
        wanted: &[crate::negotiate::TsWanted],
    ) -> Result<Option<(Vec<Part>, Option<String>)>> {
        let instance_uri = format!(
            "{}/studies/{}/series/{}/instances/{}",
            ctx.root, idx.study, idx.series, idx.sop_instance
        );
        let stored = idx.transfer_syntax.as_str();
        match media {
            MediaType::Pdf | MediaType::TextXml => {
                let (mime, doc_len) = document_info(idx);
                if mime.as_deref() != Some(media.as_str()) {
                    return Ok(None);
                }
                let part = self
                    .document_part(
                        idx,
                        media,
                        doc_len,
                        format!("{instance_uri}/bulkdata/00420011"),
                    )
                    .await?;
                Ok(Some((vec![part], None)))
            }
            MediaType::Mpeg | MediaType::Mp4 => {
                if !layout::is_video(stored) {
                    return Ok(None);
                }
                let Some(chosen) = choose_ts(media, wanted, stored, |_, _| false) else {
                    return Ok(None);
                };
                let part = Part {
                    content_type: format!("{}; transfer-syntax={}", media.as_str(), chosen.ts),
                    location: format!("{instance_uri}/bulkdata/7FE00010"),
                    entry: String::new(),
                    source: Source::Fragments {
                        key: dcm_key(idx),
                        fragments: video_fragments(idx)?,
                    },
                };
                Ok(Some((vec![part], Some(chosen.ts))))
            }
            _ => {
                let Some(info) = &idx.pixel else {
                    return Ok(None);
                };
                if layout::is_video(stored) {
                    return Ok(None);
                }
                let can = |from: &str, to: &str| can_give_frame(media, info, from, to);
                let Some(chosen) = choose_ts(media, wanted, stored, can) else {
                    return Ok(None);
                };
                let frames: Vec<u32> = (1..=info.number_of_frames).collect();
                let content_type = format!("{}; transfer-syntax={}", media.as_str(), chosen.ts);
                let parts = self
                    .frame_parts(idx, &frames, &chosen.ts, &content_type, &instance_uri)
                    .await?;
                Ok(Some((parts, Some(chosen.ts))))
            }
        }
    }

    /// The Encapsulated Document of an instance as one part typed `media`, without the
    /// padding byte (Encapsulated Document Length, PS3.3 C.24.2.1, when present).
    async fn document_part(
        &self,
        idx: &InstanceIndex,
        media: MediaType,
        doc_len: Option<u64>,
        location: String,
    ) -> Result<Part> {
        let path = AttributePath(vec![PathStep::Tag(0x0042_0011)]);

        let source = match idx.bulk(&path) {
            Some(b) if crate::scan::is_byte_addressable(&idx.transfer_syntax) => {
                let len = doc_len.filter(|&l| l <= b.length).unwrap_or(b.length);
                Source::Object {
                    key: dcm_key(idx),
                    start: b.offset,
                    end: b.offset + len,
                    detect_ts: false,
                }
            }
            _ => {
                let all = self.bulk_value_whole(&dcm_key(idx), &path).await?;
                let len = doc_len
                    .filter(|&l| l <= all.len() as u64)
                    .unwrap_or(all.len() as u64);
                Source::Bytes(all.slice(..len as usize))
            }
        };
        Ok(Part {
            content_type: media.as_str().to_owned(),
            location,
            entry: String::new(),
            source,
        })
    }

    // ===== frames =====

    async fn frames(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        frames: &[u32],
        neg: &Negotiation,
    ) -> Result<Response> {
        let idx = self.instance_index(ctx, target).await?;
        let (Some(info), Some(_)) = (&idx.pixel, &idx.frames) else {
            return Err(Error::BadRequest(format!(
                "instance {} has no pixel data: it has no frames",
                idx.sop_instance
            )));
        };
        if layout::is_video(&idx.transfer_syntax) {
            return Err(Error::BadRequest(format!(
                "instance {} is a video ({}): its frames cannot be retrieved one by one; retrieve the instance or its pixel data",
                idx.sop_instance, idx.transfer_syntax
            )));
        }
        let n = info.number_of_frames;
        let valid: Vec<u32> = frames.iter().copied().filter(|&f| f <= n).collect();
        let invalid: Vec<u32> = frames.iter().copied().filter(|&f| f > n).collect();
        if valid.is_empty() {
            return Err(Error::NotFound(format!(
                "frame(s) {} beyond Number of Frames ({n})",
                list(&invalid)
            )));
        }
        let stored = idx.transfer_syntax.as_str();
        let single_allowed = valid.len() == 1;
        let mut pick = None;
        for (media, multipart) in neg.media_choices() {
            if !multipart && !single_allowed {
                continue;
            }
            let wanted = neg.wanted(media, multipart);
            let chosen = choose_ts(media, &wanted, stored, |from, to| {
                can_give_frame(media, info, from, to)
            });
            if let Some(c) = chosen {
                pick = Some((media, multipart, c));
                break;
            }
        }
        let Some((media, multipart, chosen)) = pick else {
            return Err(Error::NotAcceptable(format!(
                "frames of this instance (stored as {stored}) are available as application/octet-stream{} and, with transfer-syntax=*, as stored; transcoding is not implemented yet",
                if ts::is_native(stored) { "" } else { " with transfer-syntax=*" }
            )));
        };
        let instance_uri = format!("{}/{}", ctx.root, target.path());
        let content_type = format!("{}; transfer-syntax={}", media.as_str(), chosen.ts);
        let mut parts = self
            .frame_parts(&idx, &valid, &chosen.ts, &content_type, &instance_uri)
            .await?;
        let warning = (!invalid.is_empty()).then(|| {
            format!(
                "frame(s) {} beyond Number of Frames ({n}) left out",
                list(&invalid)
            )
        });
        let validator = format!(
            "frames|{}|{valid:?}|{media}|{}|{}",
            idx.source.sha256, chosen.ts, ctx.root
        );
        let outcome = Outcome {
            media_type: Some(media.as_str().into()),
            converted: !chosen.passthrough,
            transfer_syntaxes: vec![chosen.ts],
            warning,
            error: None,
            validator: Some(validator),
            resource: None,
        };
        if multipart {
            Ok(self.multipart_response(ctx, media.as_str(), parts, outcome))
        } else {
            Ok(self.single_response(ctx, parts.remove(0), outcome))
        }
    }

    /// The parts of the given (valid, 1-based) frames of an instance, each one ranged read
    /// (whole-file reads for Big Endian, Deflated, bit-packed or unindexed pixel data).
    async fn frame_parts(
        &self,
        idx: &InstanceIndex,
        valid: &[u32],
        to: &str,
        content_type: &str,
        instance_uri: &str,
    ) -> Result<Vec<Part>> {
        let (Some(info), Some(findex)) = (&idx.pixel, &idx.frames) else {
            return Err(Error::BadRequest(format!(
                "instance {} has no pixel data: it has no frames",
                idx.sop_instance
            )));
        };
        let stored = idx.transfer_syntax.as_str();
        let mut parts = Vec::with_capacity(valid.len());
        let whole = if matches!(findex, layout::FrameIndex::Unindexed)
            || (matches!(findex, layout::FrameIndex::Native { .. }) && info.frame_bits() % 8 != 0)
        {
            Some(self.pixel_bytes_whole(idx).await?)
        } else {
            None
        };
        for f in valid {
            let k = u64::from(*f - 1);
            let source = match (findex, &whole) {
                (_, Some(all)) => match findex {
                    layout::FrameIndex::Encapsulated { .. } | layout::FrameIndex::Unindexed
                        if !ts::is_native(stored) =>
                    {
                        return Err(Error::corrupt(
                            &idx.sop_instance,
                            "encapsulated frames could not be located at import",
                        ));
                    }
                    _ => {
                        let native = extract_bits(all, k * info.frame_bits(), info.frame_bits());
                        if to == ts::EXPLICIT_VR_LE {
                            Source::Bytes(native)
                        } else {
                            let out = crate::codec::transcode_frame(
                                info,
                                ts::EXPLICIT_VR_LE,
                                &native,
                                to,
                            )?;
                            Source::Bytes(Bytes::from(out))
                        }
                    }
                },
                (layout::FrameIndex::Native { offset, length }, None) => {
                    let fb = info.frame_bits() / 8;
                    let start = offset + k * fb;
                    if start + fb > offset + length {
                        return Err(Error::corrupt(
                            &idx.sop_instance,
                            "pixel data shorter than its frames",
                        ));
                    }
                    if to == ts::EXPLICIT_VR_LE {
                        Source::Object {
                            key: dcm_key(idx),
                            start,
                            end: start + fb,
                            detect_ts: false,
                        }
                    } else {
                        Source::Transcode {
                            key: dcm_key(idx),
                            fetch: Fetch::Range(start, start + fb),
                            info: info.clone(),
                            from: stored.to_owned(),
                            to: to.to_owned(),
                        }
                    }
                }
                (layout::FrameIndex::Encapsulated { frames }, None) => {
                    let frags = frames.get(k as usize).cloned().unwrap_or_default();
                    if to == stored {
                        Source::Fragments {
                            key: dcm_key(idx),
                            fragments: frags,
                        }
                    } else {
                        Source::Transcode {
                            key: dcm_key(idx),
                            fetch: Fetch::Fragments(frags),
                            info: info.clone(),
                            from: stored.to_owned(),
                            to: to.to_owned(),
                        }
                    }
                }
                (layout::FrameIndex::Unindexed, None) => {
                    unreachable!("whole is read for unindexed")
                }
            };
            parts.push(Part {
                content_type: content_type.to_owned(),
                location: format!("{instance_uri}/frames/{f}"),
                entry: String::new(),
                source,
            });
        }
        Ok(parts)
    }

    /// The whole native pixel data of a file that is not byte-addressable (or bit-packed),
    /// as little-endian bytes.
    async fn pixel_bytes_whole(&self, idx: &InstanceIndex) -> Result<Bytes> {
        let key = dcm_key(idx);
        let bytes = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| Error::NotFound(key.clone()))?;
        let obj = dicom_object::OpenFileOptions::new()
            .from_reader(&bytes[..])
            .map_err(|e| Error::corrupt(&key, e))?;
        let e = obj
            .get(dicom_dictionary_std::tags::PIXEL_DATA)
            .ok_or_else(|| Error::corrupt(&key, "no pixel data"))?;
        let v = e.to_bytes().map_err(|e| Error::corrupt(&key, e))?;
        Ok(Bytes::copy_from_slice(&v))
    }

    // ===== bulk data =====

    async fn bulkdata(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        path: &AttributePath,
        neg: &Negotiation,
    ) -> Result<Response> {
        let idx = self.instance_index(ctx, target).await?;
        let is_pixel = path.0 == [PathStep::Tag(0x7FE0_0010)];
        let uri = format!("{}/{}/bulkdata/{path}", ctx.root, target.path());
        if is_pixel && layout::is_video(&idx.transfer_syntax) {
            return self.video(ctx, &idx, neg, uri);
        }
        if is_pixel && !ts::is_native(&idx.transfer_syntax) {
            // Encapsulated pixel data: one part per frame, in the stored type (PS3.18 §8.7.3.3.2:
            // "Compressed multi-frame image pixel data is encoded as individual frames").
            let n = idx.pixel.as_ref().map_or(1, |p| p.number_of_frames);
            let frames: Vec<u32> = (1..=n).collect();
            return self.frames(ctx, target, &frames, neg).await.map(|mut r| {
                r.outcome.warning = None;
                r
            });
        }
        // The Encapsulated Document in its own MIME type (cf. dcm4chee-arc-light#3089).
        if path.0 == [PathStep::Tag(0x0042_0011)] {
            let (mime, doc_len) = document_info(&idx);
            let doc_choice = neg
                .media_choices()
                .into_iter()
                .find(|(m, _)| *m == MediaType::OctetStream || mime.as_deref() == Some(m.as_str()));
            if let Some((media, multipart)) =
                doc_choice.filter(|(m, _)| *m != MediaType::OctetStream)
            {
                let validator = format!("document|{}|{media}", idx.source.sha256);
                let part = self.document_part(&idx, media, doc_len, uri).await?;
                let outcome = Outcome {
                    media_type: Some(media.as_str().into()),
                    validator: Some(validator),
                    ..Outcome::default()
                };
                return Ok(if multipart {
                    self.multipart_response(ctx, media.as_str(), vec![part], outcome)
                } else {
                    self.single_response(ctx, part, outcome)
                });
            }
        }
        let multipart = neg
            .media_choices()
            .into_iter()
            .find(|(m, _)| *m == MediaType::OctetStream)
            .map(|(_, mp)| mp)
            .ok_or_else(|| {
                Error::NotAcceptable(crate::negotiate::available_text(Category::BulkData))
            })?;
        let key = dcm_key(&idx);
        let source = match idx.bulk(path) {
            Some(b) if crate::scan::is_byte_addressable(&idx.transfer_syntax) => Source::Object {
                key,
                start: b.offset,
                end: b.offset + b.length,
                detect_ts: false,
            },
            _ => Source::Bytes(self.bulk_value_whole(&key, path).await?),
        };
        let part = Part {
            content_type: format!(
                "application/octet-stream; transfer-syntax={}",
                ts::EXPLICIT_VR_LE
            ),
            location: uri,
            entry: String::new(),
            source,
        };
        let outcome = Outcome {
            media_type: Some("application/octet-stream".into()),
            transfer_syntaxes: vec![ts::EXPLICIT_VR_LE.into()],
            validator: Some(format!("bulk|{}|{path}|{}", idx.source.sha256, ctx.root)),
            ..Outcome::default()
        };
        if multipart {
            Ok(self.multipart_response(ctx, "application/octet-stream", vec![part], outcome))
        } else {
            Ok(self.single_response(ctx, part, outcome))
        }
    }

    /// A video's pixel data: the stream as stored, in one part (video is never transcoded).
    fn video(
        &self,
        ctx: &Ctx<'_>,
        idx: &InstanceIndex,
        neg: &Negotiation,
        uri: String,
    ) -> Result<Response> {
        let stored = idx.transfer_syntax.as_str();
        let mut pick = None;
        for (media, multipart) in neg.media_choices() {
            if let Some(c) = choose_ts(media, &neg.wanted(media, multipart), stored, |_, _| false) {
                pick = Some((media, multipart, c));
                break;
            }
        }
        let (media, multipart, chosen) = pick.ok_or_else(|| {
            Error::NotAcceptable(format!(
                "this video ({stored}) is available as {} or as application/octet-stream with transfer-syntax=*",
                MediaType::for_stored_transfer_syntax(stored).map_or("stored", MediaType::as_str)
            ))
        })?;
        let fragments = video_fragments(idx)?;
        let part = Part {
            content_type: format!("{}; transfer-syntax={}", media.as_str(), chosen.ts),
            location: uri,
            entry: String::new(),
            source: Source::Fragments {
                key: dcm_key(idx),
                fragments,
            },
        };
        let validator = format!("video|{}|{media}|{}", idx.sop_instance, idx.source.sha256);
        let outcome = Outcome {
            media_type: Some(media.as_str().into()),
            transfer_syntaxes: vec![chosen.ts],
            validator: Some(validator),
            ..Outcome::default()
        };
        Ok(if multipart {
            self.multipart_response(ctx, media.as_str(), vec![part], outcome)
        } else {
            self.single_response(ctx, part, outcome)
        })
    }

    /// A bulk value read by parsing the whole file (Big Endian, Deflated, or a value the
    /// index does not list), as little-endian bytes.
    async fn bulk_value_whole(&self, key: &str, path: &AttributePath) -> Result<Bytes> {
        let bytes = self
            .store
            .get(key)
            .await?
            .ok_or_else(|| Error::NotFound(key.to_owned()))?;
        let obj = dicom_object::OpenFileOptions::new()
            .from_reader(&bytes[..])
            .map_err(|e| Error::corrupt(key, e))?;
        let not_found = || Error::NotFound(format!("no bulk data at {path}"));
        let mut current: &dicom_object::InMemDicomObject = &obj;
        let steps = &path.0;
        let mut i = 0;
        loop {
            let PathStep::Tag(t) = steps[i] else {
                return Err(not_found());
            };
            let tag = dicom_core::Tag((t >> 16) as u16, t as u16);
            let elem = current.get(tag).ok_or_else(not_found)?;
            if i + 1 == steps.len() {
                if let dicom_core::value::Value::Primitive(p) = elem.value() {
                    if crate::json::is_binary_vr(elem.vr()) || crate::json::is_pixel_data_tag(tag) {
                        return Ok(Bytes::copy_from_slice(&p.to_bytes()));
                    }
                }
                return Err(not_found());
            }
            let PathStep::Item(n) = steps[i + 1] else {
                return Err(not_found());
            };
            let items = elem.items().ok_or_else(not_found)?;
            current = items.get(n as usize - 1).ok_or_else(not_found)?;
            i += 2;
        }
    }

    // ===== bodies =====

    fn multipart_response(
        &self,
        ctx: &Ctx<'_>,
        part_type: &str,
        parts: Vec<Part>,
        outcome: Outcome,
    ) -> Response {
        let writer = MultipartWriter::new(ctx.boundary.clone());
        let content_type = writer.content_type(part_type);
        self.streamed_response(&content_type, Framing::Multipart(writer), parts, outcome)
    }

    fn zip_response(&self, parts: Vec<Part>, outcome: Outcome) -> Response {
        let framing = Framing::Zip(crate::zip::ZipWriter::new());
        self.streamed_response("application/zip", framing, parts, outcome)
    }

    /// A body streamed part by part in `framing`: 206 with a Warning when some were left
    /// out, a weak ETag when the outcome has a validator.
    fn streamed_response(
        &self,
        content_type: &str,
        framing: Framing,
        parts: Vec<Part>,
        outcome: Outcome,
    ) -> Response {
        let mut headers = HeaderMap::new();
        set(&mut headers, header::CONTENT_TYPE, content_type);
        let status = status_and_warning(&mut headers, &outcome);
        if let Some(v) = &outcome.validator {
            set(&mut headers, header::ETAG, &entity_tag(v, true));
        }
        let state = StreamState::new(self.store.clone(), self.config.chunk_size, parts, framing);
        Response {
            status,
            headers,
            body: Body::Stream(Box::pin(body_stream(state))),
            outcome,
        }
    }

    fn single_response(&self, ctx: &Ctx<'_>, mut part: Part, outcome: Outcome) -> Response {
        let mut headers = HeaderMap::new();
        set(&mut headers, header::CONTENT_TYPE, &part.content_type);
        set(&mut headers, header::CONTENT_LOCATION, &part.location);
        if let Some(v) = &outcome.validator {
            set(&mut headers, header::ETAG, &entity_tag(v, false));
        }
        let mut status = status_and_warning(&mut headers, &outcome);
        // Bodies whose bytes are known up front can be sent in part (RFC 9110 §14).
        let total = match &part.source {
            Source::Object { start, end, .. } => Some(end - start),
            Source::Bytes(b) => Some(b.len() as u64),
            _ => None,
        };
        if let Some(total) = total {
            set(&mut headers, header::ACCEPT_RANGES, "bytes");
            let range = if status == StatusCode::OK {
                byte_range(header_str(ctx.req.headers, header::RANGE).as_deref(), total)
            } else {
                None
            };
            match range {
                Some(Ok((a, b))) => {
                    part.source = match part.source {
                        Source::Object {
                            key,
                            start,
                            detect_ts,
                            ..
                        } => Source::Object {
                            key,
                            start: start + a,
                            end: start + b,
                            detect_ts,
                        },
                        Source::Bytes(bytes) => Source::Bytes(bytes.slice(a as usize..b as usize)),
                        other => other,
                    };
                    status = StatusCode::PARTIAL_CONTENT;
                    set(
                        &mut headers,
                        header::CONTENT_RANGE,
                        &format!("bytes {a}-{}/{total}", b - 1),
                    );
                    set(&mut headers, header::CONTENT_LENGTH, &(b - a).to_string());
                }
                Some(Err(())) => {
                    let mut h = HeaderMap::new();
                    set(&mut h, header::CONTENT_RANGE, &format!("bytes */{total}"));
                    return Response {
                        status: StatusCode::RANGE_NOT_SATISFIABLE,
                        headers: h,
                        body: Body::Empty,
                        outcome,
                    };
                }
                None => set(&mut headers, header::CONTENT_LENGTH, &total.to_string()),
            }
        }
        let state = StreamState::new(
            self.store.clone(),
            self.config.chunk_size,
            vec![part],
            Framing::Single,
        );
        Response {
            status,
            headers,
            body: Body::Stream(Box::pin(body_stream(state))),
            outcome,
        }
    }
}

/// The 206 explanation for instances left out, if any.
fn left_out_warning(left_out: &[String], how: &str) -> Option<String> {
    (!left_out.is_empty()).then(|| {
        format!(
            "{} instance(s) left out: not available {how}: {}",
            left_out.len(),
            left_out.join(", ")
        )
    })
}

/// Reads and checks the index of a listed instance.
async fn load_index(store: Arc<dyn Store>, i: StoredInstance) -> Result<InstanceIndex> {
    let key = layout::index_key(&i.study, &i.series, &i.sop);
    let bytes = store
        .get(&key)
        .await?
        .ok_or_else(|| Error::NotFound(key.clone()))?;
    InstanceIndex::from_json(&key, &bytes)
}

/// MIME Type of Encapsulated Document (0042,0012, lower case) and Encapsulated Document
/// Length (0042,0015: the document without its padding byte), from one parse of the stored
/// metadata.
fn document_info(idx: &InstanceIndex) -> (Option<String>, Option<u64>) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(idx.metadata.get()) else {
        return (None, None);
    };
    let first = |tag: &str| {
        v.get(tag)
            .and_then(|a| a.get("Value"))
            .and_then(|a| a.get(0))
            .cloned()
    };
    let mime = first("00420012").and_then(|m| m.as_str().map(|s| s.trim().to_ascii_lowercase()));
    (mime, first("00420015").and_then(|l| l.as_u64()))
}

/// The fragments of a video's stream (indexed at import as one "frame").
fn video_fragments(idx: &InstanceIndex) -> Result<Vec<[u64; 2]>> {
    match &idx.frames {
        Some(layout::FrameIndex::Encapsulated { frames }) if frames.len() == 1 => {
            Ok(frames[0].clone())
        }
        _ => Err(Error::corrupt(
            &idx.sop_instance,
            "video stream not indexed",
        )),
    }
}

struct Ctx<'a> {
    req: &'a Request<'a>,
    root: String,
    boundary: String,
    /// The latest modification time (Unix seconds) of the stored objects the response is made
    /// from, 0 when unknown: gives `Last-Modified`.
    modified: std::sync::atomic::AtomicU64,
}

impl Ctx<'_> {
    /// Notes that the response depends on an object last written at `modified`.
    fn saw(&self, modified: Option<u64>) {
        if let Some(m) = modified {
            self.modified
                .fetch_max(m, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn last_modified(&self) -> Option<u64> {
        Some(self.modified.load(std::sync::atomic::Ordering::Relaxed)).filter(|&m| m > 0)
    }
}

#[derive(Debug, Clone)]
struct StoredInstance {
    study: Uid,
    series: Uid,
    sop: Uid,
    key: String,
    size: u64,
}

/// Where a part's bytes come from.
enum Source {
    /// In memory.
    Bytes(Bytes),
    /// A byte range of a stored object, streamed in chunks. With `detect_ts`, the part's
    /// transfer syntax is read from the first chunk (a Part-10 file's meta).
    Object {
        key: String,
        start: u64,
        end: u64,
        detect_ts: bool,
    },
    /// A stored file converted to another (uncompressed) transfer syntax.
    Convert { key: String, to: String },
    /// Encapsulated fragments, concatenated without item headers (PS3.18 §8.7.3.3.2).
    Fragments {
        key: String,
        fragments: Vec<[u64; 2]>,
    },
    /// One frame read (a native byte range, or its fragments), decoded and/or encoded.
    Transcode {
        key: String,
        fetch: Fetch,
        info: layout::PixelInfo,
        from: String,
        to: String,
    },
}

/// How a frame's stored bytes are read.
enum Fetch {
    /// A byte range of native pixel data.
    Range(u64, u64),
    /// Fragments of encapsulated pixel data.
    Fragments(Vec<[u64; 2]>),
}

struct Part {
    content_type: String,
    location: String,
    /// The ZIP entry name, for application/zip.
    entry: String,
    source: Source,
}

impl Part {
    fn dicom(ctx: &Ctx<'_>, i: &StoredInstance, t: Option<&str>, source: Source) -> Part {
        Part {
            content_type: t.map_or_else(
                || "application/dicom".to_owned(),
                |t| format!("application/dicom; transfer-syntax={t}"),
            ),
            location: format!(
                "{}/studies/{}/series/{}/instances/{}",
                ctx.root, i.study, i.series, i.sop
            ),
            entry: format!("{}/{}/{}.dcm", i.study, i.series, i.sop),
            source,
        }
    }
}

/// How parts are framed in the body.
enum Framing {
    /// One part, no framing.
    Single,
    /// multipart/related.
    Multipart(MultipartWriter),
    /// A ZIP archive, one entry per part.
    Zip(crate::zip::ZipWriter),
}

impl Framing {
    fn begin(&mut self, content_type: &str, part: &Part) -> Bytes {
        match self {
            Framing::Single => Bytes::new(),
            Framing::Multipart(w) => w.part_head(content_type, Some(&part.location), None),
            Framing::Zip(z) => z.start_entry(&part.entry),
        }
    }

    fn data(&mut self, chunk: &[u8]) {
        if let Framing::Zip(z) = self {
            z.data(chunk);
        }
    }

    fn end(&mut self) -> Bytes {
        match self {
            Framing::Zip(z) => z.end_entry(),
            _ => Bytes::new(),
        }
    }

    fn finish(&mut self) -> Bytes {
        match self {
            Framing::Single => Bytes::new(),
            Framing::Multipart(w) => w.close(),
            Framing::Zip(z) => z.finish(),
        }
    }
}

struct StreamState {
    store: Arc<dyn Store>,
    chunk: u64,
    parts: std::vec::IntoIter<Part>,
    /// The object being streamed: (key, next offset, end).
    current: Option<(String, u64, u64)>,
    framing: Framing,
    /// Bytes ready to send, in order.
    pending: std::collections::VecDeque<Bytes>,
    finished: bool,
}

impl StreamState {
    fn new(store: Arc<dyn Store>, chunk: u64, parts: Vec<Part>, framing: Framing) -> StreamState {
        StreamState {
            store,
            chunk,
            parts: parts.into_iter(),
            current: None,
            framing,
            pending: Default::default(),
            finished: false,
        }
    }

    /// Queues a part's data; small data is merged with the bytes before it (fewer, larger
    /// writes), large data is queued as is (never copied).
    fn queue(&mut self, lead: Bytes, data: Bytes) {
        if !lead.is_empty() && data.len() <= 16 * 1024 {
            let mut b = BytesMut::with_capacity(lead.len() + data.len());
            b.extend_from_slice(&lead);
            b.extend_from_slice(&data);
            self.pending.push_back(b.freeze());
        } else {
            if !lead.is_empty() {
                self.pending.push_back(lead);
            }
            if !data.is_empty() {
                self.pending.push_back(data);
            }
        }
    }

    /// Fills `pending` with the next bytes; false at the end of the body.
    async fn advance(&mut self) -> Result<bool> {
        if let Some((key, pos, end)) = self.current.take() {
            let next = end.min(pos + self.chunk);
            let chunk = read_range(&*self.store, &key, pos, next).await?;
            self.framing.data(&chunk);
            self.pending.push_back(chunk);
            if next < end {
                self.current = Some((key, next, end));
            } else {
                let tail = self.framing.end();
                self.queue(Bytes::new(), tail);
            }
            return Ok(true);
        }
        let Some(part) = self.parts.next() else {
            if self.finished {
                return Ok(false);
            }
            self.finished = true;
            let tail = self.framing.finish();
            self.queue(Bytes::new(), tail);
            return Ok(true);
        };
        let (content_type, first, rest) = match &part.source {
            Source::Bytes(b) => (part.content_type.clone(), b.clone(), None),
            Source::Object {
                key,
                start,
                end,
                detect_ts,
            } => {
                let next = (*end).min(start + self.chunk.max(64 * 1024));
                let first = read_range(&*self.store, key, *start, next).await?;
                let ct = match crate::scan::scan_meta(&first) {
                    Ok(m) if *detect_ts => {
                        format!("application/dicom; transfer-syntax={}", m.transfer_syntax)
                    }
                    _ => part.content_type.clone(),
                };
                (ct, first, (next < *end).then(|| (key.clone(), next, *end)))
            }
            Source::Convert { key, to } => {
                let bytes = self
                    .store
                    .get(key)
                    .await?
                    .ok_or_else(|| Error::NotFound(key.clone()))?;
                (
                    part.content_type.clone(),
                    Bytes::from(convert(key, &bytes, to)?),
                    None,
                )
            }
            Source::Fragments { key, fragments } => (
                part.content_type.clone(),
                read_fragments(&*self.store, key, fragments).await?,
                None,
            ),
            Source::Transcode {
                key,
                fetch,
                info,
                from,
                to,
            } => {
                let frame = match fetch {
                    Fetch::Range(start, end) => read_range(&*self.store, key, *start, *end).await?,
                    Fetch::Fragments(f) => read_fragments(&*self.store, key, f).await?,
                };
                let out = crate::codec::transcode_frame(info, from, &frame, to)?;
                (part.content_type.clone(), Bytes::from(out), None)
            }
        };
        let head = self.framing.begin(&content_type, &part);
        self.framing.data(&first);
        self.queue(head, first);
        match rest {
            Some(cur) => self.current = Some(cur),
            None => {
                let tail = self.framing.end();
                self.queue(Bytes::new(), tail);
            }
        }
        Ok(true)
    }
}

fn body_stream(state: StreamState) -> impl Stream<Item = Result<Bytes>> {
    stream::try_unfold(state, |mut st| async move {
        loop {
            if let Some(b) = st.pending.pop_front() {
                return Ok(Some((b, st)));
            }
            if !st.advance().await? {
                return Ok(None);
            }
        }
    })
}

async fn read_range(store: &dyn Store, key: &str, start: u64, end: u64) -> Result<Bytes> {
    store
        .get_range(key, start..end)
        .await?
        .ok_or_else(|| Error::corrupt(key, "object vanished while streaming"))
}

/// One read spanning the frame's fragments, then the item headers between them cut out.
async fn read_fragments(store: &dyn Store, key: &str, fragments: &[[u64; 2]]) -> Result<Bytes> {
    let (Some(first), Some(last)) = (fragments.first(), fragments.last()) else {
        return Err(Error::corrupt(key, "frame without fragments"));
    };
    let span = read_range(store, key, first[0], last[0] + last[1]).await?;
    if fragments.len() == 1 {
        return Ok(span);
    }
    let mut out = BytesMut::with_capacity(fragments.iter().map(|f| f[1] as usize).sum());
    for f in fragments {
        let s = (f[0] - first[0]) as usize;
        out.extend_from_slice(
            span.get(s..s + f[1] as usize)
                .ok_or_else(|| Error::corrupt(key, "fragment outside its frame"))?,
        );
    }
    Ok(out.freeze())
}

/// Re-encodes a Part-10 file in another uncompressed transfer syntax. The File Meta's
/// Transfer Syntax UID is updated; everything else is kept.
fn convert(key: &str, bytes: &[u8], to: &str) -> Result<Vec<u8>> {
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    let target = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(to)
        .ok_or_else(|| Error::NotAcceptable(format!("transfer syntax {to} is not supported")))?;
    if !ts::is_native(to) {
        return crate::codec::encode_instance(key, bytes, to);
    }
    if !crate::scan::scan_meta(bytes).is_ok_and(|m| ts::is_native(&m.transfer_syntax)) {
        // Compressed: decoded to Explicit VR LE (the only target can_convert offers for it).
        return crate::codec::decode_instance(key, bytes);
    }
    let mut obj = dicom_object::OpenFileOptions::new()
        .from_reader(bytes)
        .map_err(|e| Error::corrupt(key, e))?;
    obj.meta_mut().set_transfer_syntax(target);
    obj.meta_mut().update_information_group_length();
    let mut out = Vec::with_capacity(bytes.len() + 1024);
    obj.write_all(&mut out)
        .map_err(|e| Error::corrupt(key, format!("cannot write as {to}: {e}")))?;
    Ok(out)
}

/// `bits` bits starting at bit `start` of `all` (little-endian bit order, PS3.5 §8.1.1),
/// re-packed from bit 0. Whole-byte frames are a plain slice.
fn extract_bits(all: &[u8], start: u64, bits: u64) -> Bytes {
    if start % 8 == 0 && bits % 8 == 0 {
        let s = (start / 8) as usize;
        let e = (s + (bits / 8) as usize).min(all.len());
        return Bytes::copy_from_slice(&all[s.min(e)..e]);
    }
    let mut out = vec![0u8; bits.div_ceil(8) as usize];
    for i in 0..bits {
        let src = start + i;
        let byte = all.get((src / 8) as usize).copied().unwrap_or(0);
        if byte >> (src % 8) & 1 == 1 {
            out[(i / 8) as usize] |= 1 << (i % 8);
        }
    }
    Bytes::from(out)
}

fn dcm_key(idx: &InstanceIndex) -> String {
    format!(
        "studies/{}/series/{}/instances/{}{}",
        idx.study,
        idx.series,
        idx.sop_instance,
        layout::DCM_SUFFIX
    )
}

fn push_distinct(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

fn list(frames: &[u32]) -> String {
    let mut s: Vec<String> = frames.iter().take(10).map(u32::to_string).collect();
    if frames.len() > 10 {
        s.push(format!("… ({} in all)", frames.len()));
    }
    s.join(",")
}

/// Replaces the service root in BulkDataURIs only (never in patient data).
fn rebase_json(json: &[u8], from: &str, to: &str) -> Vec<u8> {
    let needle = format!("\"BulkDataURI\":\"{from}/");
    let repl = format!("\"BulkDataURI\":\"{to}/");
    let finder = memchr::memmem::Finder::new(needle.as_bytes());
    let mut out = Vec::with_capacity(json.len() + json.len() / 16);
    let mut last = 0;
    for pos in finder.find_iter(json) {
        out.extend_from_slice(&json[last..pos]);
        out.extend_from_slice(repl.as_bytes());
        last = pos + needle.len();
    }
    out.extend_from_slice(&json[last..]);
    out
}

fn gzip_fast(data: &[u8]) -> Bytes {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = e.write_all(data);
    Bytes::from(e.finish().unwrap_or_default())
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// Picks a content coding from Accept-Encoding (RFC 9110 §12.5.3): gzip, then deflate, else
/// identity. Absent header: identity.
pub fn choose_encoding(accept_encoding: Option<&str>) -> &'static str {
    let Some(v) = accept_encoding else {
        return "identity";
    };
    let mut q: HashMap<String, u16> = HashMap::new();
    for item in crate::negotiate::parse_accept(
        &v.split(',')
            .map(|c| format!("x/{}", c.trim()))
            .collect::<Vec<_>>()
            .join(","),
    ) {
        let name = item.essence.trim_start_matches("x/").to_owned();
        q.insert(name, item.q);
    }
    let star = q.get("*").copied();
    let get = |n: &str| q.get(n).copied().or(star).unwrap_or(0);
    if get("gzip") > 0 || q.get("x-gzip").is_some_and(|&v| v > 0) {
        "gzip"
    } else if get("deflate") > 0 {
        "deflate"
    } else {
        "identity"
    }
}

fn header_str(h: &HeaderMap, name: HeaderName) -> Option<String> {
    let values: Vec<&str> = h
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        None
    } else {
        Some(values.join(", "))
    }
}

fn set(h: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// 206 with the Warning header when instances or frames were left out, else 200.
fn status_and_warning(headers: &mut HeaderMap, outcome: &Outcome) -> StatusCode {
    match &outcome.warning {
        Some(w) => {
            set_warning(headers, w);
            StatusCode::PARTIAL_CONTENT
        }
        None => StatusCode::OK,
    }
}

fn set_warning(h: &mut HeaderMap, text: &str) {
    // RFC 7234 §5.5 form, as PS3.18 §8.4.2 uses it.
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(900)
        .collect();
    set(
        h,
        header::WARNING,
        &format!("299 wado \"{}\"", clean.replace('"', "'")),
    );
}

/// An entity tag from a validator (RFC 9110 §8.8.3): a hash, weak for multipart bodies (their
/// boundary differs from one response to the next, their content does not).
fn entity_tag(validator: &str, weak: bool) -> String {
    use sha2::Digest;
    let h = hex::encode(&sha2::Sha256::digest(validator.as_bytes())[..16]);
    if weak {
        format!("W/\"{h}\"")
    } else {
        format!("\"{h}\"")
    }
}

/// One study's QIDO-RS result from its instances' metadata: the study attributes of the first
/// instance that has each, the modalities and the counts, and the Retrieve URL.
fn study_result(
    instances: &[serde_json::Map<String, serde_json::Value>],
    root: &str,
) -> serde_json::Value {
    use serde_json::{json, Value};
    const STUDY_TAGS: [&str; 9] = [
        "00080005", // Specific Character Set
        "00080020", // Study Date
        "00080030", // Study Time
        "00080050", // Accession Number
        "00080090", // Referring Physician's Name
        "00081030", // Study Description
        "00100010", // Patient's Name
        "00100020", // Patient ID
        "00100030", // Patient's Birth Date
    ];
    let mut study = serde_json::Map::new();
    for tag in STUDY_TAGS
        .iter()
        .chain(["00100040", "0020000D", "00200010"].iter())
    {
        if let Some(v) = instances.iter().find_map(|i| i.get(*tag)) {
            study.insert((*tag).to_owned(), v.clone());
        }
    }
    let first = |i: &serde_json::Map<String, Value>, tag: &str| {
        i.get(tag)
            .and_then(|a| a.get("Value"))
            .and_then(|v| v.get(0))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut modalities = std::collections::BTreeSet::new();
    let mut series = std::collections::BTreeSet::new();
    for i in instances {
        modalities.extend(first(i, "00080060"));
        series.extend(first(i, "0020000E"));
    }
    let uid = instances
        .iter()
        .find_map(|i| first(i, "0020000D"))
        .unwrap_or_default();
    study.insert(
        "00080061".into(),
        json!({"vr": "CS", "Value": modalities.into_iter().collect::<Vec<_>>()}),
    );
    study.insert(
        "00081190".into(),
        json!({"vr": "UR", "Value": [format!("{root}/studies/{uid}")]}),
    );
    study.insert(
        "00201206".into(),
        json!({"vr": "IS", "Value": [series.len()]}),
    );
    study.insert(
        "00201208".into(),
        json!({"vr": "IS", "Value": [instances.len()]}),
    );
    Value::Object(study)
}

/// An IMF-fixdate (RFC 9110 §5.6.7) from seconds since the Unix epoch.
fn http_date(secs: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// Seconds since the Unix epoch from an HTTP-date (any of the three formats RFC 9110 §5.6.7
/// says recipients accept), `None` when it is not one.
fn parse_http_date(value: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(value.trim()).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// 304 Not Modified when the client's copy is current (RFC 9110 §13.2.2): If-None-Match names
/// the response's entity tag (weak comparison, §13.1.2), or, only when If-None-Match is absent,
/// If-Modified-Since is a valid date no earlier than the last modification (§13.1.3). The 304
/// carries the headers a 200 would have had for caching.
fn not_modified(headers: &HeaderMap, last_modified: Option<u64>, resp: Response) -> Response {
    if !(resp.status == StatusCode::OK || resp.status == StatusCode::PARTIAL_CONTENT) {
        return resp;
    }
    let fresh = match header_str(headers, header::IF_NONE_MATCH) {
        Some(inm) => {
            let Some(etag) = resp.headers.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
                return resp;
            };
            let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
            inm.trim() == "*" || inm.split(',').any(|t| opaque(t) == opaque(etag))
        }
        None => match (
            header_str(headers, header::IF_MODIFIED_SINCE).and_then(|v| parse_http_date(&v)),
            last_modified,
        ) {
            (Some(since), Some(modified)) => modified <= since,
            _ => false,
        },
    };
    if !fresh {
        return resp;
    }
    let mut h = HeaderMap::new();
    for name in [
        header::ETAG,
        header::LAST_MODIFIED,
        header::VARY,
        header::CONTENT_LOCATION,
    ] {
        if let Some(v) = resp.headers.get(&name) {
            h.insert(name, v.clone());
        }
    }
    Response {
        status: StatusCode::NOT_MODIFIED,
        headers: h,
        body: Body::Empty,
        outcome: resp.outcome,
    }
}

/// The byte range of a `Range: bytes=...` header against a length (RFC 9110 §14.1.2): `None`
/// when there is none or it is not a single byte range (the whole body is sent then),
/// `Some(Err(()))` when unsatisfiable.
fn byte_range(value: Option<&str>, total: u64) -> Option<std::result::Result<(u64, u64), ()>> {
    let spec = value?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return Some(Err(()));
        }
        (total.saturating_sub(n), total)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            total
        } else {
            b.parse::<u64>().ok()?.saturating_add(1).min(total)
        };
        if start >= total || start >= end {
            return Some(Err(()));
        }
        (start, end)
    };
    Some(Ok(range))
}

/// The error response: status from [`Error::status`], a plain-text reason.
pub fn error_response(e: &Error) -> Response {
    let mut headers = HeaderMap::new();
    set(
        &mut headers,
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8",
    );
    if matches!(e, Error::MethodNotAllowed) {
        set(&mut headers, header::ALLOW, "GET, HEAD");
    }
    if let Error::Unauthorized { invalid, reason } = e {
        // RFC 6750 §3: error_description is a quoted string of printable ASCII without `"`
        // or `\`; our reasons are fixed texts.
        let v = if *invalid {
            format!(
                "Bearer realm=\"wado\", error=\"invalid_token\", error_description=\"{}\"",
                reason.replace(['"', '\\'], "'")
            )
        } else {
            "Bearer realm=\"wado\"".to_owned()
        };
        set(&mut headers, header::WWW_AUTHENTICATE, &v);
    }
    let body = Bytes::from(format!("{}\n", e.public_message()));
    set(
        &mut headers,
        header::CONTENT_LENGTH,
        &body.len().to_string(),
    );
    Response {
        status: e.status(),
        headers,
        body: Body::Full(body),
        outcome: Outcome {
            error: Some(e.to_string()),
            ..Outcome::default()
        },
    }
}

/// The value of a query parameter, percent-decoded (`+` is a space).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k).as_deref() == Some(name))
            .then(|| percent_decode(v))
            .flatten()
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
