//! QIDO-RS Search (PS3.18 §10.6): the query parsed and answered from the search index
//! ([`crate::search`]), as `application/dicom+json` (or `application/json`), or as
//! `multipart/related; type="application/dicom+xml"` with one Native DICOM Model document per
//! result.

use super::{Ctx, Plan};
use crate::error::{Error, Result};
use crate::ingest::upstream::Upstream;
use crate::media::MediaType;
use crate::negotiate::{Category, Negotiation};
use crate::route::Target;
use crate::search::{self, Level, Query, Scope};
use crate::service::body::{Part, Source};
use crate::service::message::Outcome;
use crate::service::Service;
use bytes::Bytes;

impl Service {
    /// Answers a search at `level` within `scope`.
    pub(crate) async fn search(
        &self,
        ctx: &Ctx<'_>,
        ae_title: &str,
        level: Level,
        scope: &Scope,
        neg: &Negotiation,
    ) -> Result<Plan> {
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
        let mut query = Query::parse(level, scope.clone(), ctx.req.query)?;
        if let Some(studies) = ctx.reach.studies() {
            query.confine_to_studies(studies)?;
        }
        // A read-through cache holds part of its origin: a search within one study or series
        // first brings that in (as a retrieval would); a search across the archive is the
        // origin's to answer.
        let forwarded = match (&self.config.upstream, scope) {
            (None, _) => None,
            (Some(up), Scope::All) => Some(self.forward_search(ctx, &**up).await?),
            // Nothing is brought in for a study out of the token's reach: it answers as absent.
            (Some(_), Scope::Study(study) | Scope::Series(study, _))
                if !ctx.reach.admits(study.as_str()) =>
            {
                None
            }
            (Some(up), Scope::Study(study)) => {
                let t = Target::Study {
                    study: study.clone(),
                };
                self.fill_from_upstream(ctx, &**up, &t).await?;
                None
            }
            (Some(up), Scope::Series(study, series)) => {
                let t = Target::Series {
                    study: study.clone(),
                    series: series.clone(),
                };
                self.fill_from_upstream(ctx, &**up, &t).await?;
                None
            }
        };
        if let Some(mut results) = forwarded {
            if let Some(studies) = ctx.reach.studies() {
                // The origin answered for everything; the token reaches these studies only.
                results.retain(|r| {
                    r["0020000D"]["Value"][0]
                        .as_str()
                        .is_some_and(|s| studies.iter().any(|x| x == s))
                });
            }
            let found = search::Found {
                results,
                truncated: false,
            };
            return render(media, found, Vec::new());
        }
        let Some(index) = &self.config.index else {
            return Err(Error::NotFound(
                "this server keeps no search index; QIDO-RS is not available here".into(),
            ));
        };
        let rows = search::search_rows(&**index, ae_title, &query, self.config.max_results).await?;
        let mut notices = query.warnings.clone();
        if rows.truncated() {
            // PS3.18 §8.3.4.4's wording.
            notices.push("The number of results exceeded the maximum supported by the server. Additional results can be requested.".into());
        }
        // Every row's attributes parsed, and the body written, on the pool.
        let root = ctx.root.clone();
        let pool = crate::service::offload::for_rows(self.config.offload.as_deref(), rows.len());
        crate::service::offload::compute(pool, move || {
            render(media, rows.into_results(&query, &root)?, notices)
        })
        .await
    }

    /// Asks the upstream archive (a read-through cache's origin) the same search, and gives
    /// its results with their Retrieve URLs on this server's root.
    async fn forward_search(
        &self,
        ctx: &Ctx<'_>,
        upstream: &dyn Upstream,
    ) -> Result<Vec<serde_json::Value>> {
        let root = upstream.root().trim_end_matches('/');
        let rest = ctx.req.path.split_once("/rs/").map_or("", |(_, r)| r);
        let url = match ctx.req.query {
            Some(q) => format!("{root}/{rest}?{q}"),
            None => format!("{root}/{rest}"),
        };
        let r = upstream
            .get(&url, "application/dicom+json")
            .await
            .map_err(|e| Error::Upstream(format!("{url}: {e}")))?;
        match r.status {
            200 => {}
            204 => return Ok(Vec::new()),
            400 => {
                return Err(Error::BadRequest(format!(
                    "the origin archive refused the search: {}",
                    String::from_utf8_lossy(&r.body)
                        .chars()
                        .take(300)
                        .collect::<String>()
                )))
            }
            s => return Err(Error::Upstream(format!("{url}: status {s}"))),
        }
        let text = String::from_utf8_lossy(&r.body).replace(root, &ctx.root);
        serde_json::from_str(&text)
            .map_err(|e| Error::Upstream(format!("{url}: not a DICOM JSON array: {e}")))
    }
}

/// Search results in the negotiated media type, with the notes for `Warning: 299`.
fn render(media: MediaType, found: search::Found, notices: Vec<String>) -> Result<Plan> {
    let outcome = Outcome {
        media_type: Some(media.as_str().into()),
        notices,
        ..Outcome::default()
    };
    if media == MediaType::DicomXml {
        let mut parts = Vec::with_capacity(found.results.len());
        for r in &found.results {
            let mut doc = String::with_capacity(4096);
            crate::dicom::xml::write_document(r, &mut doc)
                .map_err(|e| Error::corrupt("search result", e))?;
            parts.push(Part {
                content_type: "application/dicom+xml".into(),
                location: r
                    .get("00081190")
                    .and_then(|a| a.get("Value"))
                    .and_then(|v| v.get(0))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned(),
                entry: String::new(),
                source: Source::Bytes(Bytes::from(doc)),
            });
        }
        return Ok(Plan::multipart("application/dicom+xml", parts, outcome));
    }
    let body = Bytes::from(
        serde_json::to_vec(&found.results).map_err(|e| Error::corrupt("search result", e))?,
    );
    Ok(Plan::document(
        media.as_str(),
        "identity",
        "",
        body,
        outcome,
    ))
}
