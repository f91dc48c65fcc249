//! Deleting a study, a series or an instance: one catalog transaction
//! ([`schema::delete_instances`]) takes the instances out of retrieval, metadata and search at
//! once, writes a `delete` row of the change feed per instance, and retires their versions:
//! their objects stay in the store for the grace period (a reader that found them just before
//! still reads them whole) and are then deleted by [`super::sweep`], as replaced versions are.

use crate::route::Target;
use crate::search::{schema, Index, IndexError, Value};

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    /// Instances deleted (0: there was nothing to delete).
    pub instances: u64,
}

/// Deletes `target` (a study, series or instance) of `partition` at `now` (seconds), with 16
/// random bytes of the frontend's (`entropy`) to name the change: the study's and series' new
/// version, so that metadata assembled before it is never served after. A target with no
/// instance is not an error: `instances` is 0.
pub async fn delete(
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
    let (study, series, sop) = match target {
        Target::Study { study } => (study, None, None),
        Target::Series { study, series } => (study, Some(series), None),
        Target::Instance {
            study,
            series,
            instance,
        } => (study, Some(series), Some(instance)),
    };
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
        return Ok(Deleted { instances: 0 });
    }
    let statements = schema::delete_instances(d, partition, study, series, sop, now, &version);
    // Locks in the one order every writer takes them.
    let statements = super::commit::combined(d, std::iter::once(&statements));
    index.execute(statements).await?;
    Ok(Deleted {
        instances: u64::try_from(before).unwrap_or(0),
    })
}
