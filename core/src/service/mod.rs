//! The request handler: a typed request and a store in, a response (status, headers, streamed
//! body) out. Frontends adapt HTTP and IO to [`Service::handle`] and do nothing else.
//!
//! One request is one straight path, each step in one place:
//!
//! 1. **CORS preflight** ([`http::preflight`]): answered first, since browsers send it without
//!    credentials.
//! 2. **Route** ([`crate::route::parse_path`]): the method (405), the path (404, 400 for bad UIDs
//!    and frame lists).
//! 3. **Authorise** ([`crate::auth`]): 401/403, the same rule on every route, then the AE title.
//! 4. **Negotiate** ([`crate::negotiate`]): Accept and the `accept` query parameter (406 when
//!    nothing acceptable exists for the resource's category).
//! 5. **Plan** ([`plan`]): one planner per kind of resource reads the stored indexes and decides
//!    every part (its bytes' source, media type, transfer syntax, location) and the status (200,
//!    206 with a Warning) before the first byte is sent.
//! 6. **Execute** ([`body`]): the one executor streams the plan's parts from the store in their
//!    framing; then conditional requests (304) and `Last-Modified` ([`http`]).
//!
//! Status codes (PS3.18 §10.4.3, Table 10.4.3-2; dcm4chee's behaviour where the standard is
//! silent):
//! - 200 everything asked for is in the body;
//! - 206 some instances could not be given in any acceptable type (left out, named in a
//!   `Warning` header), or some requested frames are beyond Number of Frames (the valid ones are
//!   sent): dcm4chee answers both cases the same way;
//! - 400 malformed UIDs, frame lists or parameters; 404 unknown AE title or resource, or no
//!   requested frame exists; 405 other methods; 406 nothing acceptable can be produced.

mod body;
mod budget;
mod dimse;
pub(crate) mod http;
mod lifecycle;
mod message;
mod offload;
mod plan;
mod share;
mod stow;
#[cfg(test)]
mod tests;

pub use http::choose_encoding;
pub use message::{Body, BodyStream, Outcome, Request, RequestBody, RequestStream, Response, Who};
pub use offload::{Job, Offload};

use crate::auth::{Access, Auth, Decision, Reach};
use crate::error::{Error, Result};
use crate::ingest::upstream::Upstream;
use crate::layout::{self, LayoutRecord};
use crate::negotiate::{Category, Negotiation};
use crate::route::{self, AttributePath, PathStep, Resource, Target};
use crate::store::Store;
use ::http::header;
use ::http::Method;
use plan::{Ctx, MetaCache, Plan};
use std::sync::{Arc, Mutex};

/// Service configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The AE titles served; any other answers 404.
    pub ae_titles: Vec<String>,
    /// The public base URL (scheme://host[:port][/prefix]) for URIs in responses. `None` uses
    /// `{scheme}://{Host header}`.
    pub public_url: Option<String>,
    /// Bytes per storage read when streaming objects.
    pub chunk_size: u64,
    /// Most bytes of rebased metadata kept in memory.
    pub metadata_cache_bytes: usize,
    /// The largest stored file converted whole into another transfer syntax (the file and its
    /// result are held in memory); larger ones are offered in their stored syntax only.
    pub max_convert_bytes: u64,
    /// The memory all conversions together may hold at once (frames decoded and encoded, whole
    /// files converted; estimated per conversion), 0 for no limit. Conversions past it wait
    /// for room, one past it alone waits to be alone (`service/budget.rs`).
    pub conversion_memory: u64,
    /// Origins allowed to call from a browser (CORS); `*` allows any; empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Without `public_url`, URIs in responses are built on the request's Host: these are the
    /// host names (`host` or `host:port`) it may name, any other is refused with 400, so a
    /// forged Host can neither put another server's name into BulkDataURIs and Content-Locations
    /// nor fill the metadata cache with copies. Empty: any (say `public_url` in production).
    pub allowed_hosts: Vec<String>,
    /// The scheme of URIs built from the Host header when `public_url` is not set (`https`
    /// when the frontend serves TLS).
    pub scheme: String,
    /// Bearer tokens required on every route, when set (off by default).
    pub auth: Option<Arc<Auth>>,
    /// An archive to fetch missing studies and series from (a read-through cache; see
    /// [`crate::ingest::upstream`]). Off by default.
    pub upstream: Option<Arc<dyn Upstream>>,
    /// With an upstream archive: the transfer syntax to keep filled instances in, when they can
    /// be re-encoded losslessly (HTJ2K `.4.202`: every frame served can then be read
    /// progressively). Off by default: instances are stored as they come.
    pub fill_transcode: Option<String>,
    /// With an upstream archive that has a change feed (wado): read it when the last read is
    /// this many seconds old (0: before every read), and drop what changed there
    /// ([`crate::ingest::follow`]); `None`: never (the cache keeps what it filled).
    pub origin_feed: Option<u64>,
    /// Where decoding, encoding and conversions run ([`Offload`]); here when `None`.
    pub offload: Option<Arc<dyn Offload>>,
    /// The search index QIDO-RS answers from ([`crate::search`]); without one, searches are
    /// 404 with the reason.
    pub index: Option<Arc<dyn crate::search::Index>>,
    /// The most results one search returns; more are cut with `Warning: 299` (PS3.18
    /// §8.3.4.4), and a client pages with `offset`.
    pub max_results: usize,
    /// The largest STOW-RS request body taken (413 past it).
    pub max_store_bytes: u64,
    /// The largest instance of a STOW-RS request: each is held in memory while it is checked
    /// and written, so a larger one fails (Failure Reason A700) and the others are stored.
    pub max_instance_bytes: u64,
    /// The most instances (parts) of one STOW-RS request: past them the request is refused
    /// (413; those before are stored). Each part costs an item of the response, so a request
    /// of many tiny parts would otherwise cost many times its size.
    pub max_store_parts: usize,
    /// STOW-RS is refused (405) even to tokens that may write.
    pub read_only: bool,
    /// Requests may wait on one another: writers of one partition share catalog transactions
    /// and take turns per SOP Instance UID across requests. Off in a Cloudflare Worker, whose
    /// runtime cancels a request that waits on work another request drives ("the Worker's code
    /// had hung"): there each request commits its own (the catalog still decides between
    /// them). On by default.
    pub requests_share_work: bool,
    /// Without access control, anyone may store (and, later, change) data: off by default, so
    /// a server nobody configured for writing refuses every write (403) until it is given
    /// writers (tokens or JWTs that say `write`) or this is set on purpose.
    pub allow_anonymous_writes: bool,
    /// The viewer a share link opens (its base URL; OHIF), when links are made
    /// (`--share-viewer`, `SHARE_VIEWER`).
    pub share_viewer: Option<String>,
    /// Keep an audit trail: every response carries its record ([`crate::audit`]) for the
    /// frontend's sink.
    pub audit: bool,
    /// Serving without access control is meant: needed for a read-through cache with no
    /// tokens (see [`Config::check`]). Off by default.
    pub public: bool,
    /// How long (seconds) the objects of replaced and deleted instances stay in the store
    /// before writes sweep them away (`wado purge` sooner): a reader that found them just
    /// before still reads them whole. [`crate::ingest::RETIRED_GRACE`] by default.
    pub keep_removed: u64,
    /// The DICOM peers known over DIMSE ([`crate::dimse::peers`]): who may associate, from
    /// where, to do what in which partition, and where C-MOVE sends. Without a table, any
    /// peer may associate and echo; it may search and retrieve when HTTP reads are open (no
    /// `auth`) and store when [`Config::allow_anonymous_writes`] says so.
    pub dimse_peers: Option<Arc<crate::dimse::Peers>>,
}

impl Config {
    /// Refuses settings that would expose more than they say: a read-through cache with no
    /// access control would fetch any study of the upstream archive, with this server's
    /// credentials for it, for anyone who asks, unless `public` says that is meant.
    pub fn check(&self) -> std::result::Result<(), String> {
        for ae in &self.ae_titles {
            layout::partition_prefix(ae).map_err(|e| e.to_string())?;
        }
        if self.index.is_none() {
            return Err(
                "a catalog is required: the search index says which instances exist (SQLite, PostgreSQL, D1)".into(),
            );
        }
        if self.upstream.is_some() && self.auth.is_none() && !self.public {
            return Err(
                "an upstream archive without access control here would serve any of its studies to anyone: set tokens or JWT keys, or say public = true to mean it"
                    .into(),
            );
        }
        Ok(())
    }
}

impl Config {
    /// Who may write, in a sentence for the start-up log of either frontend.
    pub fn write_policy(&self) -> String {
        if self.upstream.is_some() {
            "writes: refused (a read-through cache stores what it fetches only)".into()
        } else if self.read_only {
            "writes: refused (read-only)".into()
        } else if self.auth.is_some() {
            "writes: only with a token or JWT that says `write`".into()
        } else if self.allow_anonymous_writes {
            "writes: ANYONE who can reach this server may store and replace instances (anonymous writes allowed on purpose)".into()
        } else {
            "writes: refused (no writer is configured: give writers tokens that say `write`, or allow anonymous writes explicitly)".into()
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            ae_titles: vec![layout::DEFAULT_AE_TITLE.to_owned()],
            public_url: None,
            chunk_size: 1 << 20,
            metadata_cache_bytes: 64 << 20,
            max_convert_bytes: 1 << 30,
            conversion_memory: 1 << 30,
            cors_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            scheme: "http".into(),
            auth: None,
            upstream: None,
            origin_feed: None,
            fill_transcode: None,
            offload: None,
            index: None,
            max_results: 1000,
            max_store_bytes: 4 << 30,
            max_instance_bytes: 2 << 30,
            max_store_parts: 10_000,
            read_only: false,
            requests_share_work: true,
            allow_anonymous_writes: false,
            share_viewer: None,
            audit: false,
            public: false,
            keep_removed: crate::ingest::RETIRED_GRACE,
            dimse_peers: None,
        }
    }
}

/// How often (seconds) writes of a partition sweep retired versions from the store.
pub(crate) const SWEEP_INTERVAL: u64 = 60;

/// The DICOMweb service over one store.
#[derive(Debug)]
pub struct Service {
    store: Arc<dyn Store>,
    config: Config,
    /// One per AE title served.
    partitions: std::collections::HashMap<String, Partition>,
    /// The memory conversions hold at once.
    budget: Arc<budget::Budget>,
}

/// One AE title's part of the store ([`layout::partition_prefix`]), and what is kept of it
/// between requests. Requests to an AE title read through its partition only.
#[derive(Debug)]
pub(crate) struct Partition {
    /// The store as this AE title sees it.
    pub(crate) store: Arc<dyn Store>,
    /// Its AE title: its name in the catalog.
    pub(crate) ae_title: String,
    layout: Mutex<Option<LayoutRecord>>,
    /// Series and study metadata made from the catalog, by version.
    pub(crate) cache: Mutex<MetaCache>,
    /// Instance indexes read from the store, by generation (immutable).
    pub(crate) records: Mutex<plan::RecordCache>,
    /// Fills from the upstream archive, one per scope, and its recent misses.
    fills: crate::ingest::upstream::Fills,
    /// Following the upstream archive's change feed ([`crate::ingest::follow`]).
    pub(crate) follow: crate::ingest::follow::Follow,
    /// The catalog's schema is there, checked once (and retired versions swept then).
    ready: std::sync::atomic::AtomicBool,
    /// When a write last swept retired versions (seconds; 0: never).
    swept_at: std::sync::atomic::AtomicU64,
    /// Writers take turns per SOP Instance UID within this process.
    pub(crate) writing: Arc<crate::ingest::Turns>,
    /// Writers' commits share transactions.
    pub(crate) committer: Arc<crate::ingest::Committer>,
    /// How long objects of replaced and deleted versions stay ([`Config::keep_removed`]).
    grace: u64,
}

impl Partition {
    fn new(store: Arc<dyn Store>, ae_title: &str, grace: u64) -> Partition {
        Partition {
            grace,
            store,
            ae_title: ae_title.to_owned(),
            layout: Mutex::new(None),
            cache: Mutex::new(MetaCache::default()),
            records: Mutex::new(plan::RecordCache::default()),
            fills: Default::default(),
            follow: Default::default(),
            ready: Default::default(),
            swept_at: Default::default(),
            writing: Default::default(),
            committer: Default::default(),
        }
    }

    /// Makes the catalog ready before the partition's first use: its schema (created, or
    /// checked), and the versions retired long enough ago deleted from the store.
    pub(crate) async fn ready(&self, index: &dyn crate::search::Index, now: u64) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        crate::search::open(index).await?;
        crate::ingest::sweep(&*self.store, index, &self.ae_title, now, self.grace, 10_000).await?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// The layout record once read or agreed (it never changes).
    fn kept_layout(&self) -> Option<LayoutRecord> {
        self.layout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The layout record a write uses: agreed in the catalog by the partition's first writer
    /// of any process ([`crate::ingest::ensure_layout`]), then kept (it never changes).
    pub(crate) async fn writing_layout(
        &self,
        index: &dyn crate::search::Index,
        public_url: &str,
    ) -> Result<LayoutRecord> {
        if let Some(l) = self.kept_layout() {
            return Ok(l);
        }
        let rec = crate::ingest::ensure_layout(
            &*self.store,
            Some((index, &self.ae_title)),
            public_url,
            &self.ae_title,
        )
        .await?;
        *self.layout.lock().unwrap_or_else(|p| p.into_inner()) = Some(rec.clone());
        Ok(rec)
    }

    /// After a write: the versions retired long enough ago deleted from the store
    /// ([`crate::ingest::sweep`]), at most once a [`SWEEP_INTERVAL`] per process (a query and
    /// a few deletions, not a cost of every instance).
    pub(crate) async fn sweep_now_and_then(
        &self,
        index: &dyn crate::search::Index,
        now: u64,
    ) -> Result<()> {
        use std::sync::atomic::Ordering;
        let last = self.swept_at.load(Ordering::Acquire);
        if now < last.saturating_add(SWEEP_INTERVAL)
            || self
                .swept_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return Ok(());
        }
        crate::ingest::sweep(&*self.store, index, &self.ae_title, now, self.grace, 1000).await?;
        Ok(())
    }

    /// The partition's layout record, as the catalog keeps it (read once, then kept); a
    /// partition nothing was written to yet has the default one.
    pub(crate) async fn layout(&self, index: &dyn crate::search::Index) -> Result<LayoutRecord> {
        if let Some(l) = self.kept_layout() {
            return Ok(l);
        }
        let rows = index
            .query(crate::search::schema::layout_get(
                index.dialect(),
                &self.ae_title,
            ))
            .await?;
        let Some(text) = rows
            .first()
            .and_then(|r| r.first())
            .and_then(crate::search::Value::as_str)
        else {
            return Ok(LayoutRecord::new(
                layout::DEFAULT_PUBLIC_URL,
                layout::DEFAULT_AE_TITLE,
            ));
        };
        let rec = LayoutRecord::from_json(text.as_bytes())?;
        *self.layout.lock().unwrap_or_else(|p| p.into_inner()) = Some(rec.clone());
        Ok(rec)
    }
}

impl Service {
    /// A service over `store`: each AE title of `config` reads its own partition of it
    /// ([`layout::partition_prefix`]); an AE title that cannot name one is not served
    /// ([`Config::check`] says why).
    pub fn new(store: Arc<dyn Store>, config: Config) -> Service {
        let partitions = config
            .ae_titles
            .iter()
            .filter_map(|ae| {
                Some((
                    ae.clone(),
                    Partition::new(layout::partition(&store, ae).ok()?, ae, config.keep_removed),
                ))
            })
            .collect();
        Service {
            store,
            budget: budget::Budget::new(config.conversion_memory),
            config,
            partitions,
        }
    }

    /// The whole store (every partition).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Answers one request. Never panics on client input; every failure is a response. A HEAD
    /// request is answered like a GET without its body (RFC 9110 §9.3.2): a single part that
    /// would be converted is not converted, so it carries no Content-Length.
    pub async fn handle(&self, req: &Request<'_>) -> Response {
        let cors = http::allowed_origin(&self.config.cors_origins, req.headers);
        if let Some(origin) = cors.as_deref().filter(|_| http::is_preflight(req)) {
            return http::preflight(origin);
        }
        let mut resp = match self.answer(req).await {
            Ok(r) => r,
            Err(e) => http::error_response(&e),
        };
        if req.method == Method::HEAD {
            resp.body = Body::Empty;
        }
        let id = crate::audit::request_id(&req.entropy);
        if let Ok(v) = ::http::HeaderValue::from_str(&id) {
            resp.headers.insert("x-request-id", v);
        }
        if self.config.audit {
            let (status, studies) = (
                resp.status.as_u16(),
                std::mem::take(&mut resp.outcome.studies),
            );
            let record = self.audit_record(req, &id, status, &studies).await;
            resp.outcome.studies = studies;
            resp.outcome.audit = Some(record.to_string());
        }
        resp.outcome.request_id = id;
        // Bodies are DICOM, JSON, XML, images: never to be sniffed into HTML by a browser.
        resp.headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            ::http::HeaderValue::from_static("nosniff"),
        );
        if let Some(origin) = cors {
            http::allow_origin(&mut resp.headers, &origin);
        }
        resp
    }

    /// Route → authorise → negotiate → plan → execute, then the conditional request.
    async fn answer(&self, req: &Request<'_>) -> Result<Response> {
        if ![
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::DELETE,
            Method::PATCH,
        ]
        .contains(req.method)
        {
            return Err(Error::MethodNotAllowed);
        }
        self.check_host(req)?;
        let Some(route) = route::parse_path(req.path)? else {
            return Err(Error::NotFound(
                "not a DICOMweb path; the service root is /dcm4chee-arc/aets/{AETitle}/rs".into(),
            ));
        };
        if let Resource::Share { study } = &route.resource {
            if req.method != Method::POST {
                return Err(Error::MethodNotAllowed);
            }
            return self.share_study(req, &route.ae_title, study).await;
        }
        if req.method == Method::POST {
            return self.store_instances(req, &route).await;
        }
        if req.method == Method::DELETE {
            return self.delete_resource(req, &route).await;
        }
        if req.method == Method::PATCH {
            return self.correct_study(req, &route).await;
        }
        let reach = self.authorise(req, &route.ae_title, Access::Read).await?;
        let part = self.partition(&route.ae_title)?;
        // A cache first drops what changed at its origin.
        let stale = self
            .follow_upstream(part, (req.now, req.entropy), false)
            .await?;
        if let Resource::ChangeFeed { latest } = route.resource {
            if reach != Reach::All {
                return Err(Error::Forbidden(
                    "a token confined to some studies may not read the change feed, which tells of every study".into(),
                ));
            }
            let mut resp = self.change_feed(req, part, latest).await?;
            if let Some(note) = &stale {
                http::append_warning(&mut resp.headers, note);
            }
            return Ok(resp);
        }
        if let Resource::Versions { target, version } = &route.resource {
            let mut resp = self
                .versions(req, part, &reach, target, version.as_deref())
                .await?;
            resp.outcome.resource = Some(kind(&route.resource));
            return Ok(resp);
        }
        let neg = Negotiation::new(
            http::header_str(req.headers, header::ACCEPT).as_deref(),
            req.query
                .and_then(|q| http::query_param(q, "accept"))
                .as_deref(),
            category(&route.resource),
        );
        // A rendered video's media type follows from the instance, whatever was accepted.
        let neg = match (neg, &route.resource) {
            (Err(_), Resource::Rendered { .. }) => {
                Negotiation::new(None, None, category(&route.resource))?
            }
            (neg, _) => neg?,
        };
        let index = self.catalog()?;
        part.ready(&**index, req.now).await?;
        let ctx = Ctx::new(
            req,
            part,
            self.service_root(req, &route.ae_title)?,
            index.clone(),
            reach,
        );
        if let (Some(upstream), Some(target)) = (&self.config.upstream, route.resource.target()) {
            // Nothing is brought in for a study out of the token's reach: it answers as absent.
            if ctx.reach.admits(target.study().as_str()) {
                self.fill_from_upstream(&ctx, &**upstream, target).await?;
            }
        }
        let plan = self
            .plan(&ctx, &route.ae_title, &route.resource, &neg)
            .await?;
        let mut resp = self.execute(&ctx, plan).await?;
        for note in resp.outcome.notices.iter().chain(&stale) {
            http::append_warning(&mut resp.headers, note);
        }
        resp.outcome.resource = Some(kind(&route.resource));
        Ok(http::conditional(req.headers, ctx.last_modified(), resp))
    }

    /// The audit record of `req` answered with `resp` ([`crate::audit`]); the patient of the
    /// study the path names looked up in the catalog.
    async fn audit_record(
        &self,
        req: &Request<'_>,
        id: &str,
        status: u16,
        studies: &[String],
    ) -> serde_json::Value {
        let route = route::parse_path(req.path).ok().flatten();
        let study = route.as_ref().and_then(|r| match &r.resource {
            Resource::Share { study } => Some(study.clone()),
            Resource::Versions { target, .. } => Some(target.study().clone()),
            Resource::Search {
                scope: route::Scope::Study(s) | route::Scope::Series(s, _),
                ..
            } => Some(s.clone()),
            other => other.target().map(|t| t.study().clone()),
        });
        // The patients of the study the path names and of those stored into.
        let named = study.iter().map(|s| s.as_str().to_owned());
        let looked: Vec<String> = named.chain(studies.iter().cloned()).collect();
        let patients = match &route {
            Some(r) => self.patients_of(&r.ae_title, &looked).await,
            None => Vec::new(),
        };
        let subject = req.who.get().unwrap_or_else(|| {
            if self.config.auth.is_some() {
                "unauthenticated".to_owned()
            } else {
                "anonymous".to_owned()
            }
        });
        crate::audit::record(&crate::audit::Access {
            request_id: id,
            time: req.now,
            method: req.method.as_str(),
            path: req.path,
            query: req.query,
            client: req.client,
            subject: &subject,
            route: route.as_ref(),
            studies,
            patients: &patients,
            status,
        })
    }

    /// The distinct patient IDs of (at most 16 of) these studies of `partition`, as the
    /// catalog holds them: what an audit record names.
    pub(crate) async fn patients_of(&self, partition: &str, studies: &[String]) -> Vec<String> {
        let mut patients: Vec<String> = Vec::new();
        let Ok(index) = self.catalog() else {
            return patients;
        };
        for st in studies
            .iter()
            .take(16)
            .filter_map(|s| crate::Uid::parse(s).ok())
        {
            let rows = index
                .query(crate::search::schema::study_patient(
                    index.dialect(),
                    partition,
                    &st,
                ))
                .await
                .unwrap_or_default();
            let pid = rows
                .first()
                .and_then(|row| row.first())
                .and_then(crate::search::Value::as_str)
                .filter(|p| !p.is_empty());
            if let Some(pid) = pid.filter(|p| !patients.iter().any(|x| x == p)) {
                patients.push(pid.to_owned());
            }
        }
        patients
    }

    /// The access rule (when configured), the same on every route: how far the request
    /// reaches, or why it may not proceed.
    async fn authorise(&self, req: &Request<'_>, ae_title: &str, access: Access) -> Result<Reach> {
        let Some(auth) = &self.config.auth else {
            if access != Access::Read && !self.config.allow_anonymous_writes {
                return Err(Error::Forbidden(
                    "this server takes no anonymous writes: it stores only for tokens that say `write` (a tokens file line `TOKEN AE write`, or a JWT with scope `write`), or when started with --allow-anonymous-writes (worker: ALLOW_ANONYMOUS_WRITES = \"true\")".into(),
                ));
            }
            return Ok(Reach::All);
        };
        let authorization = http::header_str(req.headers, header::AUTHORIZATION);
        let (decision, who) = auth
            .judge(authorization.as_deref(), ae_title, access, req.now)
            .await;
        if let Some(who) = who {
            req.who.set(who);
        }
        match decision {
            Decision::Allowed(reach) => Ok(reach),
            Decision::Unauthenticated { invalid, reason } => Err(Error::Unauthorized {
                reason: reason.into(),
                invalid,
            }),
            Decision::Unavailable { reason } => Err(Error::Busy(reason.into())),
            Decision::Forbidden => Err(Error::Forbidden(match access {
                Access::Read => format!("this token may not read AE title {ae_title:?}"),
                Access::Write => format!("this token may not store into AE title {ae_title:?}"),
                Access::Delete => format!("this token may not delete in AE title {ae_title:?}"),
            })),
        }
    }

    /// One planner per kind of resource.
    async fn plan(
        &self,
        ctx: &Ctx<'_>,
        ae_title: &str,
        resource: &Resource,
        neg: &Negotiation,
    ) -> Result<Plan> {
        match resource {
            Resource::Metadata(t) => self.metadata(ctx, t, neg).await,
            Resource::Search { level, scope } => {
                self.search(ctx, ae_title, *level, scope, neg).await
            }
            Resource::Instances(t) => self.instances(ctx, t, neg).await,
            Resource::Frames { target, frames } => self.frames(ctx, target, frames, neg).await,
            Resource::BulkData { target, path } => self.bulkdata(ctx, target, path, neg).await,
            Resource::PixelData(target) => {
                let path = AttributePath(vec![PathStep::Tag(0x7FE0_0010)]);
                self.bulkdata(ctx, target, &path, neg).await
            }
            Resource::Rendered {
                target,
                frames,
                thumbnail,
            } => {
                self.rendered(ctx, target, frames.as_deref(), *thumbnail)
                    .await
            }
            Resource::ChangeFeed { .. } | Resource::Versions { .. } | Resource::Share { .. } => {
                Err(Error::NotFound(
                    "the change feed, kept versions and share links are not planned resources"
                        .into(),
                ))
            }
        }
    }

    /// A read-through cache following its origin's change feed drops what changed there
    /// ([`crate::ingest::follow`]): when the last read of the feed is `origin_feed` seconds
    /// old, or `always`. A notice for the answer when the feed could not be read.
    async fn follow_upstream(
        &self,
        part: &Partition,
        (now, entropy): (u64, [u8; 16]),
        always: bool,
    ) -> Result<Option<String>> {
        let (Some(upstream), Some(interval)) = (&self.config.upstream, self.config.origin_feed)
        else {
            return Ok(None);
        };
        let index = self.catalog()?;
        part.ready(&**index, now).await?;
        part.follow
            .catch_up(
                &*part.store,
                &**upstream,
                &**index,
                &part.ae_title,
                (now, entropy),
                if always { 0 } else { interval },
            )
            .await
    }

    /// Reads every partition's origin feed now and drops what changed there (a frontend's
    /// timer calls this, so that a cache nobody reads is kept true too): one notice per
    /// partition whose feed could not be read.
    pub async fn follow_upstream_now(&self, now: u64, entropy: [u8; 16]) -> Vec<String> {
        let mut notes = Vec::new();
        for part in self.partitions.values() {
            match self.follow_upstream(part, (now, entropy), true).await {
                Ok(None) => {}
                Ok(Some(n)) => notes.push(format!("{}: {n}", part.ae_title)),
                Err(e) => notes.push(format!("{}: {e}", part.ae_title)),
            }
        }
        notes
    }

    /// Fetches a missing study or series from the upstream archive into the store (a new store
    /// gets its layout record first, with this request's service root).
    async fn fill_from_upstream(
        &self,
        ctx: &Ctx<'_>,
        upstream: &dyn Upstream,
        target: &Target,
    ) -> Result<()> {
        let store = &*ctx.part.store;
        let ae_title = ctx.part.ae_title.as_str();
        let suffix = format!("{}{ae_title}/rs", route::SERVICE_PREFIX);
        let public = ctx.root.strip_suffix(&suffix).unwrap_or(&ctx.root);
        let own = std::sync::Arc::default();
        let catalog = crate::ingest::upstream::Catalog {
            index: &ctx.index,
            ae_title,
            committer: if self.config.requests_share_work {
                &ctx.part.committer
            } else {
                &own
            },
        };
        ctx.part
            .fills
            .ensure(
                store,
                upstream,
                target,
                (ctx.req.now, ctx.req.entropy),
                catalog,
                self.config.fill_transcode.as_deref(),
                self.config.origin_feed.is_some() && ctx.part.follow.origin_has_feed(ctx.req.now),
                || {
                    crate::ingest::ensure_layout(
                        store,
                        Some((&*ctx.index, ae_title)),
                        public,
                        ae_title,
                    )
                },
            )
            .await
    }

    /// The catalog (the search index): what exists, for every request.
    pub(crate) fn catalog(&self) -> Result<&Arc<dyn crate::search::Index>> {
        self.config.index.as_ref().ok_or_else(|| {
            Error::Index(crate::search::IndexError::new(
                "this server has no catalog (search index) configured",
            ))
        })
    }

    /// With a public URL, a request must name this server by it (or by an allowed host): a
    /// page whose host name was made to resolve to this server (DNS rebinding) names its own
    /// host and is refused, so a server on localhost or the LAN is not reachable that way.
    /// Without one, [`Service::service_root`] applies the allowed hosts.
    fn check_host(&self, req: &Request<'_>) -> Result<()> {
        let Some(public) = &self.config.public_url else {
            return Ok(());
        };
        let Some(host) = http::header_str(req.headers, header::HOST)
            .or_else(|| req.authority.map(str::to_owned))
        else {
            // No name at all (HTTP/1.0): nothing a browser sends.
            return Ok(());
        };
        let public_host = public_authority(public);
        if same_host(&public_host, &host, public.starts_with("https:"))
            || (!self.config.allowed_hosts.is_empty()
                && host_allowed(&self.config.allowed_hosts, &host))
        {
            return Ok(());
        }
        Err(Error::BadRequest(format!(
            "this server answers for {public_host:?}, not for host {:?} (--allowed-host names others)",
            host.chars().take(100).collect::<String>()
        )))
    }

    /// `{public URL}/dcm4chee-arc/aets/{AE}/rs`: the configured public URL, else the request's
    /// own host (Host, or the URI's authority as HTTP/2 sends it), when it is one of the
    /// allowed hosts (if any are set).
    fn service_root(&self, req: &Request<'_>, ae: &str) -> Result<String> {
        let base = match &self.config.public_url {
            Some(u) => u.clone(),
            None => {
                let host = http::header_str(req.headers, header::HOST)
                    .or_else(|| req.authority.map(str::to_owned))
                    .filter(|h| {
                        !h.is_empty()
                            && h.bytes()
                                .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'"')
                    })
                    .unwrap_or_else(|| "localhost".into());
                if !host_allowed(&self.config.allowed_hosts, &host) {
                    return Err(Error::BadRequest(format!(
                        "this server does not answer for host {host:?} (its allowed hosts are set; the server's public URL may be)"
                    )));
                }
                format!("{}://{host}", self.config.scheme)
            }
        };
        Ok(layout::service_root(&base, ae))
    }
}

/// The authority (`host[:port]`) of a URL.
fn public_authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest[..end]
        .rsplit('@')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Whether two authorities name the same host and port, a missing port being the scheme's.
fn same_host(a: &str, b: &str, https: bool) -> bool {
    let default = if https { "443" } else { "80" };
    let split = |h: &str| -> (String, String) {
        let h = h.trim().to_ascii_lowercase();
        match h.rfind(':') {
            Some(i) if !h[i..].contains(']') && (h.starts_with('[') || !h[..i].contains(':')) => {
                (h[..i].to_owned(), h[i + 1..].to_owned())
            }
            _ => (h, default.to_owned()),
        }
    };
    split(a) == split(b)
}

/// Whether `host` (`name` or `name:port`, as in Host) is one of `allowed` (each `name` or
/// `name:port`; names compared without case): any when the list is empty.
fn host_allowed(allowed: &[String], host: &str) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let host = host.to_ascii_lowercase();
    // `name:port`, or `[v6]:port`; a bare `[v6]` or name has no port to drop.
    let name = match host.rfind(':') {
        Some(i)
            if !host[i..].contains(']') && (host.starts_with('[') || !host[..i].contains(':')) =>
        {
            &host[..i]
        }
        _ => host.as_str(),
    };
    allowed.iter().any(|a| {
        let a = a.trim().to_ascii_lowercase();
        a == host || a == name
    })
}

/// The negotiation category of a resource (which table of PS3.18 §8.7.3 applies).
fn category(resource: &Resource) -> Category {
    match resource {
        Resource::Instances(t) => Category::Instances {
            instance: matches!(t, Target::Instance { .. }),
        },
        // Rendered resources negotiate their own media types (plan/rendered.rs).
        Resource::Rendered { .. } => Category::Instances { instance: true },
        Resource::Metadata(_)
        | Resource::Search { .. }
        | Resource::ChangeFeed { .. }
        | Resource::Share { .. } => Category::Metadata,
        Resource::Frames { .. } => Category::Frames,
        Resource::BulkData { .. } | Resource::PixelData(_) => Category::BulkData,
        Resource::Versions { version: None, .. } => Category::Metadata,
        Resource::Versions { .. } => Category::Instances { instance: true },
    }
}

/// The kind of resource, for metrics.
fn kind(resource: &Resource) -> &'static str {
    match resource {
        Resource::Instances(_) => "instances",
        Resource::Metadata(_) => "metadata",
        Resource::Search { .. } => "search",
        Resource::ChangeFeed { .. } => "changefeed",
        Resource::Versions { .. } => "versions",
        Resource::Share { .. } => "share",
        Resource::Frames { .. } => "frames",
        Resource::BulkData { .. } | Resource::PixelData(_) => "bulkdata",
        Resource::Rendered {
            thumbnail: false, ..
        } => "rendered",
        Resource::Rendered {
            thumbnail: true, ..
        } => "thumbnail",
    }
}
