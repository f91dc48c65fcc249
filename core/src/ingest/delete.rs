//! Deleting a study, a series or an instance: one catalog transaction
//! ([`schema::delete_instances`]) takes the instances out of retrieval, metadata and search at
//! once, writes a `delete` row of the change feed per instance, and retires their versions:
//! their objects stay in the store for the grace period (a reader that found them just before
//! still reads them whole) and are then deleted by [`super::sweep`], as replaced versions are.
//! Deleting a rejection note ([`super::reject`]) brings back the instances it rejected.

use crate::dicom::uid::Uid;
use crate::layout::{self, InstanceIndex};
use crate::route::Target;
use crate::search::{rows, schema, Index, IndexError, Value};
use crate::store::Store;

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    /// Instances deleted (0: there was nothing to delete).
    pub instances: u64,
    /// Instances brought back because the rejection notes that rejected them were deleted.
    pub restored: u64,
}

/// Deletes `target` (a study, series or instance) of `partition` at `now` (seconds), with 16
/// random bytes of the frontend's (`entropy`) to name the change: the study's and series' new
/// version, so that metadata assembled before it is never served after. A target with no
/// instance is not an error: `instances` is 0.
pub async fn delete(
    store: &dyn Store,
    index: &dyn Index,
    partition: &str,
    target: &Target,
    now: u64,
    entropy: [u8; 16],
) -> Result<Deleted, IndexError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(entropy);
    h.update(now.to_le_bytes());
    h.update(target.path().as_bytes());
    let version = hex::encode(&h.finalize()[..8]);
    let (study, series, sop) = target.uids();
    let d = index.dialect();
    let rows = index
        .query(schema::count_instances(d, partition, study, series, sop))
        .await?;
    let before = rows
        .first()
        .and_then(|r| r.first())
        .and_then(Value::as_int)
        .unwrap_or(0);
    if before == 0 {
        return Ok(Deleted {
            instances: 0,
            restored: 0,
        });
    }
    let rejected = index
        .query(schema::rejected_by_notes_in(
            d, partition, study, series, sop,
        ))
        .await?;
    let statements = schema::delete_instances(d, partition, study, series, sop, now, &version);
    // Locks in the one order every writer takes them.
    let statements = super::commit::combined(d, std::iter::once(&statements));
    index.execute(statements).await?;
    let mut restored = 0;
    for row in rejected {
        let uid = |i: usize| {
            row.get(i)
                .and_then(Value::as_str)
                .and_then(|s| Uid::parse(s).ok())
        };
        let (Some(st), Some(se), Some(i)) = (uid(0), uid(1), uid(2)) else {
            continue;
        };
        let gen = row.get(3).and_then(Value::as_str).unwrap_or("");
        if restore(store, index, partition, (&st, &se, &i), gen, now).await? {
            restored += 1;
        }
    }
    Ok(Deleted {
        instances: u64::try_from(before).unwrap_or(0),
        restored,
    })
}

/// Brings back the rejected version `gen` of an instance from its index object, unless another
/// version was stored since (then the rejected one is only forgotten, and retired by that
/// write). Whether it came back.
async fn restore(
    store: &dyn Store,
    index: &dyn Index,
    partition: &str,
    (study, series, sop): (&Uid, &Uid, &Uid),
    gen: &str,
    now: u64,
) -> Result<bool, IndexError> {
    let d = index.dialect();
    let current = index
        .query(schema::locate_instance(d, partition, sop))
        .await?;
    let key = layout::index_key(study, series, sop, gen);
    let found = if current.is_empty() {
        store
            .get(&key)
            .await
            .map_err(|e| IndexError::new(format!("{key}: {e}")))?
    } else {
        None
    };
    let Some(bytes) = found else {
        index
            .execute(vec![schema::forget_rejected(d, partition, sop.as_str())])
            .await?;
        return Ok(false);
    };
    let i = InstanceIndex::from_json(&key, &bytes).map_err(|e| IndexError::new(e.to_string()))?;
    let rows = rows::instance_rows(partition, &i);
    // Committed as a write is (its feed row says `create`); the write forgets the rejection.
    let statements = schema::commit_instance(d, partition, &rows, now);
    index
        .execute(super::commit::combined(d, std::iter::once(&statements)))
        .await?;
    Ok(true)
}
