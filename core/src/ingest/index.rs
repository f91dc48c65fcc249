//! The search index kept in step with the store by the writers: a study's rows rebuilt from
//! what the store holds, the studies an interrupted writer left pending repaired, a whole
//! partition re-indexed (`wado reindex`).

use crate::dicom::uid::Uid;
use crate::error::Result;
use crate::layout::{self, InstanceIndex};
use crate::search::{schema, Index, Statement, Value};
use crate::store::Store;
use std::collections::HashMap;
use std::sync::Arc;

/// Rebuilds one study's rows from the store (its whole instances), and clears its pending
/// mark, in one transaction. A study with no instance left loses its rows.
pub async fn reindex_study(
    store: &dyn Store,
    index: &dyn Index,
    partition: &str,
    study: &Uid,
    known: &HashMap<String, Arc<InstanceIndex>>,
) -> Result<usize> {
    let instances = super::valid_indexes(store, &layout::study_prefix(study), known).await?;
    let list: Vec<&InstanceIndex> = instances.iter().map(|i| &**i).collect();
    index
        .execute(schema::replace_study(
            index.dialect(),
            index.max_params(),
            partition,
            study,
            &list,
            None,
        ))
        .await?;
    Ok(list.len())
}

/// Rebuilds the studies an interrupted import or STOW-RS request left pending (see the module
/// doc): their series and study metadata as well as their rows, since the interruption may
/// have come between an instance's write and its study's rebuild.
pub async fn recover(store: &dyn Store, index: &dyn Index, partition: &str) -> Result<usize> {
    let rows = index
        .query(schema::pending(index.dialect(), partition))
        .await?;
    let mut n = 0;
    for row in rows {
        let Some(uid) = row.first().and_then(Value::as_str) else {
            continue;
        };
        let Ok(study) = Uid::parse(uid) else {
            continue;
        };
        super::repair_study(store, &study, Some((index, partition))).await?;
        n += 1;
    }
    Ok(n)
}

/// Rebuilds a partition's whole index from the store: every stored study, then the rows of
/// studies the store no longer holds are dropped. Returns (studies, instances).
pub async fn reindex(
    store: &dyn Store,
    index: &dyn Index,
    partition: &str,
) -> Result<(usize, usize)> {
    let mut studies: Vec<Uid> = layout::listed_instances(store.list(layout::STUDIES_PREFIX).await?)
        .into_iter()
        .map(|i| i.study)
        .collect();
    studies.sort();
    studies.dedup();
    let mut instances = 0;
    for study in &studies {
        instances += reindex_study(store, index, partition, study, &HashMap::new()).await?;
    }
    let indexed = index
        .query(schema::studies_of_partition(index.dialect(), partition))
        .await?;
    let gone: Vec<Statement> = indexed
        .iter()
        .filter_map(|r| r.first().and_then(Value::as_str))
        .filter(|uid| studies.binary_search_by(|s| s.as_str().cmp(uid)).is_err())
        .flat_map(|uid| schema::delete_study(index.dialect(), partition, uid))
        .collect();
    if !gone.is_empty() {
        index.execute(gone).await?;
    }
    index.execute(schema::analyze(index.dialect())).await?;
    Ok((studies.len(), instances))
}
