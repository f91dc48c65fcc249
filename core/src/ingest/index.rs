//! The catalog rebuilt from the store (`wado reindex`, an index held in memory at start), and
//! the store cleaned of versions the catalog retired.

use crate::dicom::uid::Uid;
use crate::error::{Error, Result};
use crate::layout::{self, InstanceIndex, LayoutRecord, ListedInstance};
use crate::search::{rows, schema, Index, Value};
use crate::store::Store;
use std::collections::BTreeMap;

/// How long a retired version's objects stay after it was replaced or deleted, in seconds, by
/// default: a reader that found the old version just before (a study streaming for minutes)
/// still reads it whole.
pub const RETIRED_GRACE: u64 = 600;

/// Deletes the objects of versions retired (replaced or deleted) at or before `now - grace`, at most
/// `limit` of them, and forgets them; returns how many.
pub async fn sweep(
    store: &dyn Store,
    index: &dyn Index,
    partition: &str,
    now: u64,
    grace: u64,
    limit: usize,
) -> Result<usize> {
    let d = index.dialect();
    let due = index
        .query(schema::retired_due(
            d,
            partition,
            now.saturating_sub(grace),
            limit,
        ))
        .await?;
    let mut n = 0;
    for row in due {
        let uid = |i: usize| {
            row.get(i)
                .and_then(Value::as_str)
                .and_then(|s| Uid::parse(s).ok())
        };
        let (Some(study), Some(series), Some(sop)) = (uid(0), uid(1), uid(2)) else {
            continue;
        };
        let gen = row.get(3).and_then(Value::as_str).unwrap_or("").to_owned();
        store
            .delete(&layout::index_key(&study, &series, &sop, &gen))
            .await?;
        store
            .delete(&layout::instance_key(&study, &series, &sop, &gen))
            .await?;
        index
            .execute(vec![schema::forget_retired(d, partition, &sop, &gen)])
            .await?;
        n += 1;
    }
    Ok(n)
}

/// Rebuilds a partition's catalog from the store: of each SOP Instance UID the latest version
/// stored whole (an index object naming its file's size; `stored_at`, then the generation,
/// decide), committed in the order they were stored, so that merged series and study
/// attributes are what the writes left; studies the store no longer holds are dropped; the
/// store's layout record becomes the catalog's. Returns (studies, instances).
pub async fn reindex(
    store: &dyn Store,
    index: &dyn Index,
    partition: &str,
) -> Result<(usize, usize)> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    if let Some(b) = store.get(layout::LAYOUT_KEY).await? {
        let rec = LayoutRecord::from_json(&b)?;
        let text = String::from_utf8_lossy(&rec.to_json()).into_owned();
        index
            .execute(vec![schema::layout_put(index.dialect(), partition, &text)])
            .await?;
    }
    let listed = layout::listed_instances(store.list(layout::STUDIES_PREFIX).await?);
    let read = listed.into_iter().map(|l: ListedInstance| async move {
        let key = l.index_key();
        let Some(b) = store.get(&key).await? else {
            return Ok::<_, Error>(None);
        };
        Ok(InstanceIndex::from_json(&key, &b)
            .ok()
            .filter(|i| i.matches_file(Some(l.size)) && i.gen == l.gen))
    });
    let found: Vec<Option<InstanceIndex>> = stream::iter(read).buffered(16).try_collect().await?;
    // The latest version of each SOP Instance UID.
    let mut versions: BTreeMap<Uid, Vec<InstanceIndex>> = BTreeMap::new();
    for i in found.into_iter().flatten() {
        versions.entry(i.sop_instance.clone()).or_default().push(i);
    }
    let mut by_study: BTreeMap<Uid, Vec<InstanceIndex>> = BTreeMap::new();
    for (_, mut all) in versions {
        let refs: Vec<&InstanceIndex> = all.iter().collect();
        let Some(gen) = layout::latest_version(&refs).map(|i| i.gen.clone()) else {
            continue;
        };
        let Some(at) = all.iter().position(|i| i.gen == gen) else {
            continue;
        };
        let i = all.swap_remove(at);
        by_study.entry(i.study.clone()).or_default().push(i);
    }
    let d = index.dialect();
    let mut instances = 0;
    let mut notes = Vec::new();
    for (study, mut list) in std::mem::take(&mut by_study) {
        // A study rebuilt whole: what was there goes first.
        index
            .execute(schema::delete_study(d, partition, study.as_str()))
            .await?;
        list.sort_by(|a, b| (a.stored_at, &a.sop_instance).cmp(&(b.stored_at, &b.sop_instance)));
        // In the order they were stored, a transaction per group.
        for group in list.chunks(super::commit::MAX_GROUP) {
            let writes: Vec<super::Statements> = group
                .iter()
                .map(|i| {
                    let rows = rows::instance_rows(partition, i);
                    schema::commit_instance(d, partition, &rows, i.stored_at)
                })
                .collect();
            index
                .execute(super::commit::combined(d, writes.iter()))
                .await?;
        }
        instances += list.len();
        notes.extend(list.iter().filter_map(|i| {
            Some((
                i.stored_at,
                i.sop_instance.clone(),
                i.gen.clone(),
                super::reject::of_instance(i)?,
            ))
        }));
        by_study.insert(study, Vec::new());
    }
    // Rejection notes reject again what they referenced, in the order they were stored.
    notes.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    for (at, note, gen, r) in notes {
        let statements = super::reject::statements(d, partition, &r, &note, at, &gen);
        if !statements.is_empty() {
            index
                .execute(super::commit::combined(d, std::iter::once(&statements)))
                .await?;
        }
    }
    let studies: Vec<&Uid> = by_study.keys().collect();
    let indexed = index
        .query(schema::studies_of_partition(d, partition))
        .await?;
    let gone: Vec<crate::search::Statement> = indexed
        .iter()
        .filter_map(|r| r.first().and_then(Value::as_str))
        .filter(|uid| studies.binary_search_by(|s| s.as_str().cmp(uid)).is_err())
        .flat_map(|uid| schema::delete_study(d, partition, uid))
        .collect();
    if !gone.is_empty() {
        index.execute(gone).await?;
    }
    index.execute(schema::analyze(d)).await?;
    Ok((studies.len(), instances))
}
