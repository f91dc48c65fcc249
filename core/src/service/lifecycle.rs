//! The archive's lifecycle over DICOMweb: `DELETE` of a study, a series or an instance, and
//! the change feed that tells caches and applications what changed (docs/LIFECYCLE.md).
//!
//! - `DELETE {root}/studies/{s}[/series/{se}[/instances/{i}]]`: a write (the same permission
//!   as STOW-RS); 204 when deleted, 404 when there was nothing to delete. When the response is
//!   sent the instances are gone from retrieval, metadata and search on every replica
//!   ([`crate::ingest::delete`]); their objects follow after the grace period.
//! - `GET {root}/changefeed?after=SEQ&limit=N`: the partition's changes after sequence number
//!   SEQ (0: from the start), at most N (100 by default, 1,000 at most), in order, as a JSON
//!   array; `GET {root}/changefeed/latest`: the last change (`{"Sequence": 0}` when none).

use super::http::{self, query_param};
use super::{Partition, Request, Response, Service};
use crate::auth::Access;
use crate::error::{Error, Result};
use crate::route::{Resource, Route};
use crate::search::schema;
use crate::service::message::{Body, Outcome};
use ::http::{header, HeaderMap, HeaderValue, StatusCode};
use bytes::Bytes;

/// The largest correction request body (a handful of attributes).
const MAX_CORRECTION: usize = 64 * 1024;

/// The request's body, whole, when it is at most `max` bytes (413 otherwise).
async fn read_small_body(req: &Request<'_>, max: usize) -> Result<Vec<u8>> {
    use futures::StreamExt as _;
    let Some(mut stream) = req.body.take() else {
        return Err(Error::BadRequest("the request needs a body".into()));
    };
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| Error::BadRequest(format!("the request body broke off: {e}")))?;
        if out.len() + chunk.len() > max {
            req.body.give_back(stream);
            return Err(Error::TooLarge(format!(
                "a body of at most {max} bytes is expected"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Rows of one change-feed page by default, and at most.
const FEED_PAGE: usize = 100;
const FEED_MAX: usize = 1000;

/// An instance's version as the catalog lists it ([`schema::instance_versions`]).
struct Version {
    state: String,
    study: String,
    series: String,
    gen: String,
    since: u64,
}

/// Batches one [`Service::push_feed`] delivers at most per partition (the rest the next time).
const PUSH_STEPS: usize = 50;

impl Service {
    /// Pushes every partition's change feed to `sink` (a frontend's queue; see
    /// [`crate::search::feed::Pusher`]) as `holder` (a name unique to this process), `batch`
    /// changes at a time, until all is delivered, another process holds the lease (`lease`
    /// seconds), or the sink fails: why, for each partition where it failed.
    pub async fn push_feed(
        &self,
        sink: &dyn crate::search::feed::Sink,
        holder: &str,
        (lease, batch): (u64, usize),
        now: u64,
    ) -> Vec<String> {
        use crate::search::feed::{Pusher, Step};
        let Ok(index) = self.catalog() else {
            return vec!["no catalog: nothing to push".into()];
        };
        let mut notes = Vec::new();
        let mut names: Vec<&String> = self.partitions.keys().collect();
        names.sort();
        for name in names {
            let part = &self.partitions[name];
            if let Err(e) = part.ready(&**index, now).await {
                notes.push(format!("{name}: {e}"));
                continue;
            }
            let pusher = Pusher::new(&part.ae_title, holder, lease, batch);
            for _ in 0..PUSH_STEPS {
                match pusher.step(&**index, sink, now).await {
                    Ok(Step::Delivered { .. }) => continue,
                    Ok(Step::Idle | Step::Standby) => {}
                    Ok(Step::Failed(why)) => notes.push(format!("{name}: {why}")),
                    Err(e) => notes.push(format!("{name}: the catalog: {e}")),
                }
                break;
            }
        }
        notes
    }
    /// `GET .../instances/{i}/versions` (the versions kept: JSON) and
    /// `GET .../instances/{i}/versions/{gen}` (one, the file as stored, `application/dicom`):
    /// the current version, those replaced, corrected or deleted until the sweep deletes them
    /// (the grace period, `keep_removed`), and rejected ones (listed, not served: a rejection
    /// note hides them).
    pub(super) async fn versions(
        &self,
        req: &Request<'_>,
        part: &Partition,
        reach: &crate::auth::Reach,
        target: &crate::route::Target,
        version: Option<&str>,
    ) -> Result<Response> {
        let crate::route::Target::Instance {
            study,
            series,
            instance,
        } = target
        else {
            return Err(Error::NotFound("versions are an instance's".into()));
        };
        if let Some(gen) = version {
            if gen.is_empty() || !crate::layout::is_generation(gen) {
                return Err(Error::BadRequest(format!(
                    "version {:?}: a version is 1 to 32 hexadecimal digits, as .../versions lists them",
                    crate::route::truncate_for_message(gen)
                )));
            }
        }
        let version = version.map(str::to_ascii_lowercase);
        let version = version.as_deref();
        let index = self.catalog()?.clone();
        part.ready(&*index, req.now).await?;
        let rows = index
            .query(schema::instance_versions(
                index.dialect(),
                &part.ae_title,
                instance.as_str(),
            ))
            .await?;
        let text = |r: &crate::search::Row, i: usize| {
            r.get(i)
                .and_then(crate::search::Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let mut versions: Vec<Version> = rows
            .iter()
            .map(|r| Version {
                state: text(r, 0),
                study: text(r, 1),
                series: text(r, 2),
                gen: text(r, 3),
                since: r
                    .get(4)
                    .and_then(crate::search::Value::as_int)
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            })
            .filter(|v| v.study == study.as_str() && v.series == series.as_str())
            // Out of the token's reach: the same answer as for nothing kept.
            .filter(|v| reach.admits(&v.study))
            .collect();
        // The current first, then the newest.
        versions.sort_by(|a, b| {
            (b.state == "current", b.since, &b.gen).cmp(&(a.state == "current", a.since, &a.gen))
        });
        if versions.is_empty() {
            return Err(Error::NotFound(format!(
                "no version of {} is kept",
                target.path()
            )));
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let Some(gen) = version else {
            let list: Vec<serde_json::Value> = versions
                .iter()
                .map(|v| {
                    serde_json::json!({
                        "Version": v.gen,
                        "State": v.state,
                        "Since": crate::search::feed::rfc3339(v.since),
                    })
                })
                .collect();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(Response {
                status: StatusCode::OK,
                headers,
                body: Body::Full(Bytes::from(serde_json::Value::Array(list).to_string())),
                outcome: Outcome {
                    media_type: Some("application/json".into()),
                    ..Outcome::default()
                },
            });
        };
        let accept = http::header_str(req.headers, header::ACCEPT).unwrap_or_default();
        let acceptable = accept.trim().is_empty()
            || accept.split(',').any(|m| {
                let m = m
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                matches!(m.as_str(), "application/dicom" | "application/*" | "*/*")
            });
        if !acceptable {
            return Err(Error::NotAcceptable(
                "a kept version is served as stored: application/dicom".into(),
            ));
        }
        let Some(v) = versions.iter().find(|v| v.gen == gen) else {
            return Err(Error::NotFound(format!(
                "version {gen} of {} is not kept (the versions kept are listed at .../versions)",
                target.path()
            )));
        };
        if v.state == "rejected" {
            return Err(Error::NotFound(format!(
                "version {gen} of {} is rejected by a rejection note: delete the note to bring it back",
                target.path()
            )));
        }
        let key = crate::layout::instance_key(study, series, instance, gen);
        let Some(file) = part.store.get(&key).await? else {
            return Err(Error::NotFound(format!(
                "version {gen} of {} was purged",
                target.path()
            )));
        };
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/dicom"),
        );
        Ok(Response {
            status: StatusCode::OK,
            headers,
            body: Body::Full(file),
            outcome: Outcome {
                media_type: Some("application/dicom".into()),
                ..Outcome::default()
            },
        })
    }

    /// `DELETE {root}/studies/{s}[/series/{se}[/instances/{i}]]`.
    pub(super) async fn delete_resource(
        &self,
        req: &Request<'_>,
        route: &Route,
    ) -> Result<Response> {
        let Resource::Instances(target) = &route.resource else {
            return Err(Error::MethodNotAllowed);
        };
        if self.config.upstream.is_some() {
            return Err(Error::NotWritable(
                "this server is a read-through cache of another archive: delete in that archive"
                    .into(),
            ));
        }
        if self.config.read_only {
            return Err(Error::NotWritable("this server is read-only".into()));
        }
        let reach = self.authorise(req, &route.ae_title, Access::Delete).await?;
        let part = self.partition(&route.ae_title)?;
        let nothing = || Error::NotFound(format!("nothing stored at {}", target.path()));
        if !reach.admits(target.study().as_str()) {
            // Out of the token's reach: the same answer as for a study not stored.
            return Err(nothing());
        }
        let index = self.catalog()?.clone();
        part.ready(&*index, req.now).await?;
        let deleted = crate::ingest::delete(
            &*part.store,
            &*index,
            &part.ae_title,
            target,
            req.now,
            req.entropy,
        )
        .await?;
        if deleted.instances == 0 {
            return Err(nothing());
        }
        part.sweep_now_and_then(&*index, req.now).await?;
        let mut headers = HeaderMap::new();
        http::set_warning(
            &mut headers,
            &format!("deleted {} instance(s)", deleted.instances),
        );
        if deleted.restored > 0 {
            http::append_warning(
                &mut headers,
                &format!(
                    "brought back {} instance(s) the deleted rejection note(s) had rejected",
                    deleted.restored
                ),
            );
        }
        Ok(Response {
            status: StatusCode::NO_CONTENT,
            headers,
            body: Body::Empty,
            outcome: Outcome {
                resource: Some("delete"),
                ..Outcome::default()
            },
        })
    }

    /// `PATCH {root}/studies/{s}`: a correction of the study's patient and study attributes
    /// ([`crate::ingest::correct`]), the new values a DICOM JSON object.
    pub(super) async fn correct_study(&self, req: &Request<'_>, route: &Route) -> Result<Response> {
        let Resource::Instances(crate::route::Target::Study { study }) = &route.resource else {
            return Err(Error::MethodNotAllowed);
        };
        if self.config.upstream.is_some() {
            return Err(Error::NotWritable(
                "this server is a read-through cache of another archive: correct in that archive"
                    .into(),
            ));
        }
        if self.config.read_only {
            return Err(Error::NotWritable("this server is read-only".into()));
        }
        let reach = self.authorise(req, &route.ae_title, Access::Write).await?;
        let nothing = || Error::NotFound(format!("no study {study} is stored"));
        let essence = http::header_str(req.headers, header::CONTENT_TYPE)
            .map(|ct| {
                ct.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if !matches!(
            essence.as_str(),
            "application/dicom+json" | "application/json"
        ) {
            return Err(Error::UnsupportedMediaType(format!(
                "a correction is a DICOM JSON object (application/dicom+json), not {essence:?}"
            )));
        }
        let body = read_small_body(req, MAX_CORRECTION).await?;
        let correction =
            crate::ingest::Correction::from_dicom_json(&body).map_err(Error::BadRequest)?;
        if !reach.admits(study.as_str()) {
            // Out of the token's reach: the same answer as for a study not stored.
            return Err(nothing());
        }
        let part = self.partition(&route.ae_title)?;
        let index = self.catalog()?.clone();
        part.ready(&*index, req.now).await?;
        let root = self.service_root(req, &route.ae_title)?;
        let suffix = format!("{}{}/rs", crate::route::SERVICE_PREFIX, route.ae_title);
        let public = root.strip_suffix(&suffix).unwrap_or(&root);
        let layout = part.writing_layout(&*index, public).await?;
        let batch = crate::ingest::Batch::new(layout, req.now, req.entropy)
            .with_max_instance(self.config.max_instance_bytes)
            .with_offload(self.config.offload.clone())
            .with_index(index.clone(), &route.ae_title, None);
        let done = crate::ingest::correct(&batch, &*part.store, study, &correction).await?;
        drop(batch);
        if done.instances == 0 && done.unchanged == 0 {
            return Err(nothing());
        }
        part.sweep_now_and_then(&*index, req.now).await?;
        let mut headers = HeaderMap::new();
        let mut said = format!("corrected {} instance(s)", done.instances);
        if done.unchanged > 0 {
            said.push_str(&format!("; {} already held the new values", done.unchanged));
        }
        http::set_warning(&mut headers, &said);
        Ok(Response {
            status: StatusCode::NO_CONTENT,
            headers,
            body: Body::Empty,
            outcome: Outcome {
                resource: Some("correct"),
                ..Outcome::default()
            },
        })
    }

    /// `GET {root}/changefeed[/latest]`.
    pub(super) async fn change_feed(
        &self,
        req: &Request<'_>,
        part: &Partition,
        latest: bool,
    ) -> Result<Response> {
        let index = self.catalog()?.clone();
        part.ready(&*index, req.now).await?;
        let d = index.dialect();
        let body = if latest {
            let rows = index
                .query(schema::latest_change(d, &part.ae_title))
                .await?;
            match rows.first() {
                Some(r) => crate::search::feed::change_json(&part.ae_title, r),
                None => serde_json::json!({ "Sequence": 0 }),
            }
        } else {
            let q = req.query.unwrap_or("");
            let after = match query_param(q, "after") {
                None => 0,
                Some(v) => v
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| {
                        Error::BadRequest(format!(
                            "after={:?}: a sequence number (0 or more) is expected",
                            crate::route::truncate_for_message(&v)
                        ))
                    })?,
            };
            let limit = match query_param(q, "limit") {
                None => FEED_PAGE,
                Some(v) => v
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=FEED_MAX).contains(n))
                    .ok_or_else(|| {
                        Error::BadRequest(format!(
                            "limit={:?}: 1 to {FEED_MAX} changes a page",
                            crate::route::truncate_for_message(&v)
                        ))
                    })?,
            };
            let rows = index
                .query(schema::changes_after(d, &part.ae_title, after, limit))
                .await?;
            serde_json::Value::Array(
                rows.iter()
                    .map(|r| crate::search::feed::change_json(&part.ae_title, r))
                    .collect(),
            )
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // A feed is read again and again: never from a cache.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(Response {
            status: StatusCode::OK,
            headers,
            body: Body::Full(Bytes::from(body.to_string())),
            outcome: Outcome {
                media_type: Some("application/json".into()),
                resource: Some("changefeed"),
                ..Outcome::default()
            },
        })
    }

    /// The partition of an AE title served (404 for any other).
    pub(super) fn partition(&self, ae_title: &str) -> Result<&Partition> {
        self.partitions
            .get(ae_title)
            .ok_or_else(|| Error::NotFound(format!("unknown AE title {ae_title:?}")))
    }
}
