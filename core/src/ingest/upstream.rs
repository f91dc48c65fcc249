//! A read-through cache in front of an existing archive: when a requested study or series is
//! not in the store and an upstream DICOMweb service is configured, its instances are fetched
//! from the upstream archive (`application/dicom; transfer-syntax=*`, so the files arrive as the upstream archive
//! stored them), imported into the store in the usual layout (index, file, metadata), and the
//! request is then answered from the store like any other. Later requests never touch the
//! upstream archive. The HTTP client is the frontend's (the Worker's `fetch`); the logic is here once.
//!
//! Granularity: a study-level request fills the whole study, anything below it fills the
//! series (instances, frames and bulk data of one instance included). The upstream archive's metadata
//! names the instances; each instance is one request, so nothing larger than one instance is
//! held in memory.
//!
//! [`Fills`] makes a server ask the upstream archive once per scope: requests for a study or
//! series being filled wait for that fill instead of starting their own (a viewer opening a
//! series asks for its metadata and many frames at once), and a scope the upstream archive
//! does not have is remembered for [`MISS_SECONDS`] (a viewer retrying, or a scan of made-up
//! UIDs, costs one upstream request, not one each). Both hold within one process, or one
//! Worker isolate: isolates share nothing but the store, so two isolates may each fill the
//! same series once, which the import's rules make harmless (the second finds the instances
//! stored whole and skips them).

use crate::error::{Error, Result};
use crate::ingest as import;
use crate::layout::{self, LayoutRecord};
use crate::route::{Target, Uid};
use crate::search::{schema, SharedIndex};
use crate::store::{MaybeSendSync, Store};
use bytes::Bytes;

/// An upstream archive's answer.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    /// Status code.
    pub status: u16,
    /// Content-Type.
    pub content_type: String,
    /// Body.
    pub body: Bytes,
}

/// An HTTP client for the upstream archive: GET with an Accept header (the frontend adds its
/// credentials).
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Upstream: std::fmt::Debug + MaybeSendSync {
    /// The upstream archive's service root (`https://pacs.example.org/dcm4chee-arc/aets/AE/rs`).
    fn root(&self) -> &str;

    /// GETs `url` with this Accept header.
    async fn get(&self, url: &str, accept: &str) -> std::result::Result<UpstreamResponse, String>;
}

/// The marker of a study filled whole from the upstream archive
/// ([`layout::upstream_study_marker_key`]): a study whose series were cached one by one is not
/// known to be complete, so a study-level request fills it once more.
fn study_marker(study: &Uid) -> String {
    layout::upstream_study_marker_key(study)
}

/// The catalog a fill commits to: the index, the partition's AE title, its shared commits.
#[derive(Debug, Clone, Copy)]
pub struct Catalog<'a> {
    /// The index.
    pub index: &'a SharedIndex,
    /// The partition (AE title).
    pub ae_title: &'a str,
    /// Commits shared with the partition's other writers.
    pub committer: &'a std::sync::Arc<import::Committer>,
}

/// Whether the store already holds the target's whole study (study level, its marker) or
/// series (the catalog has it).
pub async fn is_cached(store: &dyn Store, catalog: Catalog<'_>, target: &Target) -> Result<bool> {
    match target {
        Target::Study { study } => Ok(store.size(&study_marker(study)).await?.is_some()),
        Target::Series { study, series } | Target::Instance { study, series, .. } => {
            let index = &**catalog.index;
            let rows = index
                .query(schema::version_of(
                    index.dialect(),
                    catalog.ae_title,
                    study,
                    Some(series),
                ))
                .await?;
            Ok(!rows.is_empty())
        }
    }
}

/// How long the upstream archive's "no such study or series" is believed, in seconds.
pub const MISS_SECONDS: u64 = 30;

/// Most scopes remembered as missing; past it the expired ones go, then all.
const MAX_MISSES: usize = 10_000;

type Turn = std::sync::Arc<futures::lock::Mutex<()>>;

/// One fill per scope at a time, and the scopes recently found missing (see the module doc).
#[derive(Debug, Default)]
pub struct Fills {
    turns: std::sync::Mutex<std::collections::HashMap<String, Turn>>,
    misses: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The scope a target fills: its study at study level, else its series.
fn scope(target: &Target) -> String {
    match target {
        Target::Study { study } => format!("studies/{study}"),
        Target::Series { study, series } | Target::Instance { study, series, .. } => {
            format!("studies/{study}/series/{series}")
        }
    }
}

impl Fills {
    /// Makes sure the target's scope is in the store: nothing to do when it is cached; a 404
    /// when the upstream archive said it has no such scope less than [`MISS_SECONDS`] before
    /// `now`; else one fill, which concurrent callers for the same scope wait for and share.
    /// `layout` gives the layout record of a store that has none yet; `transcode`, a transfer
    /// syntax losslessly stored instances are kept in (see [`fill`]); `follows_feed`: the
    /// cache follows the origin's change feed, so a fill the origin changed under is made
    /// again ([`super::follow`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn ensure<F, Fut>(
        &self,
        store: &dyn Store,
        upstream: &dyn Upstream,
        target: &Target,
        (now, entropy): (u64, [u8; 16]),
        catalog: Catalog<'_>,
        transcode: Option<&str>,
        follows_feed: bool,
        layout: F,
    ) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<LayoutRecord>>,
    {
        if is_cached(store, catalog, target).await? {
            return Ok(());
        }
        let scope = scope(target);
        let missing = || {
            Error::NotFound(format!(
                "not here and not at the upstream archive: {}",
                target.path()
            ))
        };
        if lock(&self.misses)
            .get(&scope)
            .is_some_and(|&until| now < until)
        {
            return Err(missing());
        }
        let turn = lock(&self.turns).entry(scope.clone()).or_default().clone();
        let result = {
            let _held = turn.lock().await;
            // Whoever held the turn before may have filled it, or found it missing.
            if is_cached(store, catalog, target).await? {
                Ok(())
            } else if lock(&self.misses)
                .get(&scope)
                .is_some_and(|&until| now < until)
            {
                Err(missing())
            } else {
                let layout = layout().await?;
                match fill_checked(
                    store,
                    upstream,
                    &layout,
                    (now, entropy),
                    target,
                    catalog,
                    transcode,
                    follows_feed,
                )
                .await
                {
                    Ok(()) => Ok(()),
                    Err(Error::NotFound(m)) => {
                        let mut misses = lock(&self.misses);
                        if misses.len() >= MAX_MISSES {
                            misses.retain(|_, &mut until| now < until);
                            if misses.len() >= MAX_MISSES {
                                misses.clear();
                            }
                        }
                        misses.insert(scope.clone(), now.saturating_add(MISS_SECONDS));
                        Err(Error::NotFound(m))
                    }
                    Err(e) => Err(e),
                }
            }
        };
        // The last one out removes the turn (the map's reference and ours are left).
        let mut turns = lock(&self.turns);
        if std::sync::Arc::strong_count(&turn) == 2 {
            turns.remove(&scope);
        }
        result
    }
}

/// Fills made again at most when the origin changes what they fetch meanwhile.
const FILL_ATTEMPTS: usize = 3;

/// [`fill`], and with `follows_feed` the check of [`super::follow`]: the origin's latest
/// change noted before, and when changes that touch the scope came in before the commit, the
/// scope dropped and filled again.
#[allow(clippy::too_many_arguments)]
async fn fill_checked(
    store: &dyn Store,
    upstream: &dyn Upstream,
    layout: &LayoutRecord,
    (now, entropy): (u64, [u8; 16]),
    target: &Target,
    catalog: Catalog<'_>,
    transcode: Option<&str>,
    follows_feed: bool,
) -> Result<()> {
    let scope = match target {
        Target::Study { study } => (study, None),
        Target::Series { study, series } | Target::Instance { study, series, .. } => {
            (study, Some(series))
        }
    };
    for attempt in 0..FILL_ATTEMPTS {
        let before = if follows_feed {
            super::follow::origin_latest(upstream).await?
        } else {
            None
        };
        let batch = import::Batch::new(layout.clone(), now, entropy).with_index(
            catalog.index.clone(),
            catalog.ae_title,
            Some(catalog.committer.clone()),
        );
        fill(store, upstream, batch, target, catalog, transcode).await?;
        let Some(before) = before else {
            return Ok(());
        };
        if !super::follow::changed_since(upstream, before, scope).await? {
            return Ok(());
        }
        // What was fetched may be older than a change: dropped, and fetched again.
        let mut e = entropy;
        e[0] ^= 0x5a ^ attempt as u8;
        super::follow::evict(store, &**catalog.index, catalog.ae_title, scope, (now, e)).await?;
    }
    Err(Error::Upstream(format!(
        "the origin changed {} while it was fetched, {FILL_ATTEMPTS} times: try again",
        target.path()
    )))
}

/// What a fill did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filled {
    /// Instances imported.
    pub instances: usize,
    /// Bytes fetched.
    pub bytes: u64,
    /// Instances already here (from an earlier series fill), not fetched again.
    pub cached: usize,
}

/// Whether the catalog already holds the instance (a fill of another scope brought it).
async fn stored_whole(catalog: Catalog<'_>, st: &Uid, se: &Uid, sop: &Uid) -> Result<bool> {
    let index = &**catalog.index;
    let rows = index
        .query(schema::list_instances(
            index.dialect(),
            catalog.ae_title,
            st,
            Some(se),
            Some(sop),
        ))
        .await?;
    Ok(!rows.is_empty())
}

/// Fetches the study (for a study target) or series of `target` from the upstream archive into the
/// store. Nothing at the upstream archive is a 404; an unreachable or failing upstream archive is a 502.
///
/// With `transcode` (e.g. HTJ2K `.4.202`, so that every frame the cache serves can be read
/// progressively), an instance the origin holds uncompressed or losslessly compressed is stored
/// losslessly re-encoded in that syntax; lossy, video and instances that cannot be re-encoded
/// are stored as they come (nothing is ever lost or degraded by the cache).
pub async fn fill(
    store: &dyn Store,
    upstream: &dyn Upstream,
    batch: import::Batch,
    target: &Target,
    catalog: Catalog<'_>,
    transcode: Option<&str>,
) -> Result<Filled> {
    let root = upstream.root().trim_end_matches('/');
    let scope = match target {
        Target::Study { study } => format!("{root}/studies/{study}"),
        Target::Series { study, series } | Target::Instance { study, series, .. } => {
            format!("{root}/studies/{study}/series/{series}")
        }
    };
    let meta = upstream
        .get(&format!("{scope}/metadata"), "application/dicom+json")
        .await
        .map_err(|e| Error::Upstream(format!("{scope}/metadata: {e}")))?;
    match meta.status {
        200 => {}
        404 => {
            return Err(Error::NotFound(format!(
                "not here and not at the upstream archive: {}",
                target.path()
            )))
        }
        s => return Err(Error::Upstream(format!("{scope}/metadata: status {s}"))),
    }
    let list: Vec<serde_json::Value> = serde_json::from_slice(&meta.body)
        .map_err(|e| Error::Upstream(format!("{scope}/metadata: not DICOM JSON: {e}")))?;
    let uid = |v: &serde_json::Value, tag: &str| -> Result<Uid> {
        let s = v
            .get(tag)
            .and_then(|a| a.get("Value"))
            .and_then(|a| a.get(0))
            .and_then(|a| a.as_str())
            .ok_or_else(|| {
                Error::Upstream(format!("{scope}/metadata: an instance without {tag}"))
            })?;
        Uid::parse(s).map_err(|_| Error::Upstream(format!("{scope}/metadata: bad UID {s:?}")))
    };
    let mut filled = Filled::default();
    for inst in &list {
        let (st, se, sop) = (
            uid(inst, "0020000D")?,
            uid(inst, "0020000E")?,
            uid(inst, "00080018")?,
        );
        if stored_whole(catalog, &st, &se, &sop).await? {
            filled.cached += 1;
            continue;
        }
        let url = format!("{root}/studies/{st}/series/{se}/instances/{sop}");
        let r = upstream
            .get(
                &url,
                "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
            )
            .await
            .map_err(|e| Error::Upstream(format!("{url}: {e}")))?;
        if r.status == 404 {
            // Deleted at the origin since its metadata was read.
            continue;
        }
        if r.status != 200 {
            return Err(Error::Upstream(format!("{url}: status {}", r.status)));
        }
        let file = first_part(&r).map_err(|e| Error::Upstream(format!("{url}: {e}")))?;
        filled.bytes += file.len() as u64;
        let file = match transcode {
            Some(to) => transcoded(file, to),
            None => file,
        };
        batch
            .add_expecting(store, file, import::Expected::Instance(&st, &se, &sop))
            .await
            .map_err(|e| Error::Upstream(format!("{url}: {e}")))?;
        filled.instances += 1;
    }
    if filled.instances == 0 && filled.cached == 0 {
        return Err(Error::NotFound(format!(
            "the upstream archive has no instances for {}",
            target.path()
        )));
    }
    batch.finish(store).await?;
    if let Target::Study { study } = target {
        let note = serde_json::json!({ "origin": root, "instances": filled.instances });
        store
            .put(&study_marker(study), Bytes::from(note.to_string()))
            .await?;
    }
    Ok(filled)
}

/// A file re-encoded losslessly into `to`, when it is stored uncompressed or losslessly and
/// this build can; else the file as it is.
fn transcoded(file: Bytes, to: &str) -> Bytes {
    let Ok(meta) = crate::dicom::scan::scan_meta(&file) else {
        return file;
    };
    let from = meta.transfer_syntax.as_str();
    let lossless_source = crate::ts::is_native(from)
        || [
            crate::ts::RLE_LOSSLESS,
            crate::ts::JPEG_LOSSLESS,
            crate::ts::JPEG_LOSSLESS_SV1,
            crate::ts::JPEG_LS_LOSSLESS,
            crate::ts::JPEG_2000_LOSSLESS,
            crate::ts::HTJ2K_LOSSLESS,
            crate::ts::HTJ2K_LOSSLESS_RPCL,
        ]
        .contains(&from);
    let lossless_target = [
        crate::ts::HTJ2K_LOSSLESS,
        crate::ts::HTJ2K_LOSSLESS_RPCL,
        crate::ts::JPEG_2000_LOSSLESS,
        crate::ts::JPEG_LS_LOSSLESS,
        crate::ts::RLE_LOSSLESS,
    ]
    .contains(&to);
    if from == to || !lossless_source || !lossless_target {
        return file;
    }
    match wado_codec::encode_instance("fill", &file, from, to) {
        Ok(out) => Bytes::from(out),
        Err(_) => file,
    }
}

/// The body of the first part of a multipart response (or the body of a single part).
fn first_part(r: &UpstreamResponse) -> std::result::Result<Bytes, String> {
    if !r
        .content_type
        .to_ascii_lowercase()
        .starts_with("multipart/")
    {
        return Ok(r.body.clone());
    }
    let boundary = crate::wire::multipart::boundary_of(&r.content_type)
        .ok_or_else(|| format!("no boundary in {:?}", r.content_type))?;
    let parts = crate::wire::multipart::parse(&boundary, &r.body).map_err(|e| e.to_string())?;
    let first = parts.first().ok_or("an empty multipart body")?;
    let start = first.body.as_ptr() as usize - r.body.as_ptr() as usize;
    Ok(r.body.slice(start..start + first.body.len()))
}
