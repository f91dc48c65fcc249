//! A read-through cache that stays true: it follows its origin's change feed (when the origin
//! is wado: `GET {root}/changefeed`, docs/LIFECYCLE.md) and drops what changed there, so the
//! next request fills it again ([`super::upstream`]).
//!
//! What is dropped: a change to a series the cache holds (stored, replaced, deleted, rejected
//! or corrected instances) drops that whole series from the catalog and the store (through
//! [`super::delete`], so the cache's own feed says so too); a change anywhere in a study the
//! cache holds drops its "filled whole" marker, so a study-level request asks the origin again
//! (and fetches only what is new: instances still held are not fetched twice).
//!
//! Where the cache got to in the origin's feed is kept in the catalog ([`schema::set_meta_max`]:
//! it only moves forward), so processes, replicas and Worker isolates share it; two of them
//! applying the same changes drop the same things, which is harmless. The first time, the
//! cache starts at the origin's latest change.
//!
//! A fill racing a change: a fill notes the origin's latest change before it fetches and again
//! after it committed; when changes came in between and touch what it filled, it drops what it
//! filled and fills again ([`super::upstream::Fills::ensure`]). A change the fill did not see is
//! after the second look, so whoever applies it later finds the filled scope and drops it.
//!
//! How stale: [`Follow::catch_up`] runs before every read of the cache's data and reads the
//! origin's feed when the last read is `interval` seconds old (one request of a process reads
//! it; the others go on meanwhile): while the origin answers, an answer misses at most the
//! changes of the last `interval` seconds (plus one read of the feed). When the origin's feed
//! cannot be read, the cache serves what it has and says so (a `Warning` on the answer).

use super::delete::delete;
use crate::dicom::uid::Uid;
use crate::error::{Error, Result};
use crate::ingest::upstream::Upstream;
use crate::layout;
use crate::route::Target;
use crate::search::{schema, Index, Value};
use crate::store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// Changes read from the origin's feed at once.
const PAGE: usize = 1000;
/// Pages one catch-up applies at most (the rest the next time).
const PAGES: usize = 10;
/// Seconds after which a read of the feed that never ended (its request was cancelled) no
/// longer keeps others from reading it.
const TAKEOVER: u64 = 30;
/// Seconds an origin without a change feed (not wado, or an older one) is not asked again.
const NO_FEED_RECHECK: u64 = 600;

/// One change of the origin's feed, as far as a cache cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginChange {
    /// Its sequence number.
    pub seq: i64,
    /// Its study.
    pub study: Uid,
    /// Its series (every wado feed row names one).
    pub series: Option<Uid>,
}

fn feed_error(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Upstream(format!("{url}: {e}"))
}

/// `GET {origin}/changefeed{rest}` as JSON, and its URL; `None` when the origin has no change
/// feed.
async fn feed_json<T: serde::de::DeserializeOwned>(
    upstream: &dyn Upstream,
    rest: &str,
) -> Result<(String, Option<T>)> {
    let url = format!("{}/changefeed{rest}", upstream.root().trim_end_matches('/'));
    let r = upstream
        .get(&url, "application/json")
        .await
        .map_err(|e| feed_error(&url, e))?;
    match r.status {
        200 => {}
        404 | 405 | 501 => return Ok((url, None)),
        s => return Err(feed_error(&url, format!("status {s}"))),
    }
    let v = serde_json::from_slice(&r.body).map_err(|e| feed_error(&url, e))?;
    Ok((url, Some(v)))
}

/// The origin's changes after `after`, at most `limit`; `None` when it has no change feed.
pub async fn origin_changes(
    upstream: &dyn Upstream,
    after: i64,
    limit: usize,
) -> Result<Option<Vec<OriginChange>>> {
    let (url, Some(rows)) =
        feed_json::<Vec<serde_json::Value>>(upstream, &format!("?after={after}&limit={limit}"))
            .await?
    else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let text = |k: &str| row.get(k).and_then(serde_json::Value::as_str);
        let seq = row
            .get("Sequence")
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| feed_error(&url, "a change without a Sequence"))?;
        let study = text("StudyInstanceUID")
            .and_then(|s| Uid::parse(s).ok())
            .ok_or_else(|| feed_error(&url, format!("change {seq} without a study UID")))?;
        let series = text("SeriesInstanceUID").and_then(|s| Uid::parse(s).ok());
        if out
            .last()
            .is_some_and(|c: &OriginChange| c.seq >= seq || seq <= after)
        {
            return Err(feed_error(&url, format!("change {seq} out of order")));
        }
        out.push(OriginChange { seq, study, series });
    }
    Ok(Some(out))
}

/// The sequence number of the origin's latest change (0: none yet); `None` when it has no
/// change feed.
pub async fn origin_latest(upstream: &dyn Upstream) -> Result<Option<i64>> {
    let (url, Some(v)) = feed_json::<serde_json::Value>(upstream, "/latest").await? else {
        return Ok(None);
    };
    v.get("Sequence")
        .and_then(serde_json::Value::as_i64)
        .map(Some)
        .ok_or_else(|| feed_error(&url, "no Sequence"))
}

/// Drops a study (`series` `None`) or a series from the cache: its instances out of the catalog
/// (their objects retired as a delete retires them) and the study's "filled whole" marker.
/// Instances dropped.
pub async fn evict(
    store: &dyn Store,
    index: &dyn Index,
    partition: &str,
    (study, series): (&Uid, Option<&Uid>),
    (now, entropy): (u64, [u8; 16]),
) -> Result<u64> {
    let target = match series {
        Some(se) => Target::Series {
            study: study.clone(),
            series: se.clone(),
        },
        None => Target::Study {
            study: study.clone(),
        },
    };
    let dropped = delete(store, index, partition, &target, now, entropy).await?;
    store
        .delete(&layout::upstream_study_marker_key(study))
        .await?;
    Ok(dropped.instances)
}

/// What [`apply`] dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Series dropped.
    pub series: usize,
    /// Instances dropped.
    pub instances: u64,
}

/// Drops what `changes` touch of what the cache holds (see the module doc).
pub async fn apply(
    store: &dyn Store,
    index: &dyn Index,
    partition: &str,
    changes: &[OriginChange],
    clock: (u64, [u8; 16]),
) -> Result<Applied> {
    let studies: BTreeSet<&str> = changes.iter().map(|c| c.study.as_str()).collect();
    let studies: Vec<&str> = studies.into_iter().collect();
    let mut held: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for chunk in studies.chunks(90) {
        for row in index
            .query(schema::held_series(index.dialect(), partition, chunk))
            .await?
        {
            let text = |i: usize| row.get(i).and_then(Value::as_str).unwrap_or("").to_owned();
            held.entry(text(0)).or_default().insert(text(1));
        }
    }
    let mut out = Applied::default();
    let mut done: BTreeSet<(String, String)> = BTreeSet::new();
    for c in changes {
        let Some(series_held) = held.get(c.study.as_str()) else {
            continue;
        };
        let key = (
            c.study.to_string(),
            c.series
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        );
        if done.contains(&key) {
            continue;
        }
        let scope = match &c.series {
            Some(se) if series_held.contains(se.as_str()) => Some(se),
            // A series the cache does not hold: only the study's marker goes.
            Some(_) => {
                store
                    .delete(&layout::upstream_study_marker_key(&c.study))
                    .await?;
                done.insert(key);
                continue;
            }
            None => None,
        };
        out.instances += evict(store, index, partition, (&c.study, scope), clock).await?;
        out.series += 1;
        done.insert(key);
    }
    Ok(out)
}

/// The catalog's name for where the cache of `partition` got to in the feed of `origin`.
fn cursor_name(partition: &str, origin: &str) -> String {
    use sha2::{Digest, Sha256};
    let key = hex::encode(&Sha256::digest(origin.trim_end_matches('/').as_bytes())[..8]);
    format!("origin feed {partition} {key}")
}

/// What one read of the origin's feed did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled {
    /// The origin has no change feed.
    NoFeed,
    /// Changes up to `to` applied (`more`: the feed has more after them).
    Applied {
        /// The last change applied (the cursor).
        to: i64,
        /// What was dropped.
        dropped: Applied,
        /// More changes wait.
        more: bool,
    },
}

/// Reads the origin's feed after where the cache got to and applies it (up to [`PAGES`] pages).
pub async fn poll(
    store: &dyn Store,
    upstream: &dyn Upstream,
    index: &dyn Index,
    partition: &str,
    clock: (u64, [u8; 16]),
) -> Result<Polled> {
    let d = index.dialect();
    let name = cursor_name(partition, upstream.root());
    let rows = index.query(schema::meta_value(d, &name)).await?;
    let kept = rows
        .first()
        .and_then(|r| r.first())
        .and_then(Value::as_str)
        .and_then(|v| v.trim().parse::<i64>().ok());
    let mut after = match kept {
        Some(n) => n,
        None => {
            // The first time: from the origin's latest change on.
            let Some(latest) = origin_latest(upstream).await? else {
                return Ok(Polled::NoFeed);
            };
            index
                .execute(vec![schema::set_meta_max(
                    d,
                    &name,
                    &schema::padded(latest),
                )])
                .await?;
            latest
        }
    };
    let mut dropped = Applied::default();
    for _ in 0..PAGES {
        let Some(changes) = origin_changes(upstream, after, PAGE).await? else {
            return Ok(Polled::NoFeed);
        };
        let Some(last) = changes.last().map(|c| c.seq) else {
            return Ok(Polled::Applied {
                to: after,
                dropped,
                more: false,
            });
        };
        let a = apply(store, index, partition, &changes, clock).await?;
        dropped.series += a.series;
        dropped.instances += a.instances;
        index
            .execute(vec![schema::set_meta_max(d, &name, &schema::padded(last))])
            .await?;
        after = last;
        if changes.len() < PAGE {
            return Ok(Polled::Applied {
                to: after,
                dropped,
                more: false,
            });
        }
    }
    Ok(Polled::Applied {
        to: after,
        dropped,
        more: true,
    })
}

/// Whether changes after `from` up to the origin's latest touch the study `study` (or only
/// its series `series`): the check of a fill that began when `from` was the latest change.
pub async fn changed_since(
    upstream: &dyn Upstream,
    from: i64,
    (study, series): (&Uid, Option<&Uid>),
) -> Result<bool> {
    let Some(latest) = origin_latest(upstream).await? else {
        return Ok(false);
    };
    let mut after = from;
    while after < latest {
        let Some(changes) = origin_changes(upstream, after, PAGE).await? else {
            return Ok(false);
        };
        if changes.iter().any(|c| {
            c.study == *study
                && (series.is_none() || c.series.is_none() || c.series.as_ref() == series)
        }) {
            return Ok(true);
        }
        match changes.last() {
            Some(c) => after = c.seq,
            None => break,
        }
    }
    Ok(false)
}

/// A process's (or isolate's) side of following the origin: when it last read the feed, and
/// whether it is reading it now (see the module doc).
#[derive(Debug, Default)]
pub struct Follow {
    /// When the feed is due again (seconds).
    next_at: AtomicU64,
    /// When the read under way began (0: none).
    reading_since: AtomicU64,
    /// When the feed was last read whole (0: never).
    read_at: AtomicU64,
    /// Until when the origin is taken to have no feed.
    no_feed_until: AtomicU64,
}

impl Follow {
    /// Whether fills should check the origin's feed (it has one, as far as is known).
    pub fn origin_has_feed(&self, now: u64) -> bool {
        now >= self.no_feed_until.load(Ordering::Acquire)
    }

    /// Applies the origin's new changes when the last read is `interval` seconds old (0: on
    /// every call), unless another call of this process is reading them. A notice for the
    /// answer when the feed could not be read (the cache may be staler than `interval`).
    pub async fn catch_up(
        &self,
        store: &dyn Store,
        upstream: &dyn Upstream,
        index: &dyn Index,
        partition: &str,
        clock: (u64, [u8; 16]),
        interval: u64,
    ) -> Result<Option<String>> {
        let now = clock.0;
        if !self.origin_has_feed(now) {
            return Ok(None);
        }
        if interval > 0 {
            if now < self.next_at.load(Ordering::Acquire) {
                return Ok(None);
            }
            let since = self.reading_since.load(Ordering::Acquire);
            if (since != 0 && now < since.saturating_add(TAKEOVER))
                || self
                    .reading_since
                    .compare_exchange(since, now.max(1), Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
            {
                return Ok(self.stale_notice(now, interval, None));
            }
        }
        let result = poll(store, upstream, index, partition, clock).await;
        if interval > 0 {
            self.reading_since.store(0, Ordering::Release);
        }
        match result {
            Ok(Polled::NoFeed) => {
                self.no_feed_until
                    .store(now.saturating_add(NO_FEED_RECHECK), Ordering::Release);
                Ok(None)
            }
            Ok(Polled::Applied { more, .. }) => {
                self.read_at.store(now, Ordering::Release);
                let next = if more {
                    now
                } else {
                    now.saturating_add(interval)
                };
                self.next_at.store(next, Ordering::Release);
                Ok(None)
            }
            Err(Error::Upstream(e)) => {
                // Asked again after a short pause, not on every request.
                self.next_at
                    .store(now.saturating_add(interval.clamp(1, 5)), Ordering::Release);
                Ok(self.stale_notice(now, interval, Some(&e)))
            }
            Err(e) => Err(e),
        }
    }

    /// The notice of an answer that may miss more than `interval` seconds of changes.
    fn stale_notice(&self, now: u64, interval: u64, error: Option<&str>) -> Option<String> {
        let read = self.read_at.load(Ordering::Acquire);
        if error.is_none() && now <= read.saturating_add(interval.max(1).saturating_mul(2)) {
            return None;
        }
        let since = if read == 0 {
            "this cache began".to_owned()
        } else {
            crate::search::feed::rfc3339(read)
        };
        Some(match error {
            Some(e) => format!(
                "the origin's change feed could not be read ({e}): this answer may miss changes made there since {since}"
            ),
            None => format!("this answer may miss changes made at the origin since {since}"),
        })
    }
}
