//! The change feed as applications receive it: its rows as JSON (what `GET {root}/changefeed`
//! answers), and pushed to a webhook or another [`Sink`] (the worker's Cloudflare Queue).
//!
//! A [`Webhook`] delivers a partition's feed in order, in batches, each an HTTP POST of the
//! JSON array the feed's page would be, signed with HMAC-SHA256 of a shared secret
//! (`X-Wado-Signature: sha256=<hex>` over the body, as GitHub's webhooks sign theirs). A batch
//! is delivered when the receiver answers 2xx; until then the same batch is sent again (the
//! frontend waits longer after each failure). Where it got to is kept in the catalog, so a
//! restart, or another replica, goes on from there; replicas take turns through a lease in the
//! catalog: one of them delivers at a time. Delivery is at least once (a receiver that said
//! 2xx to a batch whose acknowledgement was then lost by a crash gets it again): receivers
//! keep the last `Sequence` they handled and skip what they have seen.
//!
//! The frontend provides the HTTP client ([`Poster`]) and the clock, and calls
//! [`Webhook::step`] in a loop (`wado serve --webhook`).

use super::{schema, Index, IndexError, Row, Value};
use crate::store::MaybeSendSync;
use bytes::Bytes;

/// A row of [`schema::changes_after`] as the feed's JSON.
pub fn change_json(partition: &str, r: &Row) -> serde_json::Value {
    let text = |i: usize| r.get(i).and_then(Value::as_str).unwrap_or("");
    let int = |i: usize| r.get(i).and_then(Value::as_int).unwrap_or(0);
    let mut o = serde_json::Map::new();
    o.insert("Sequence".into(), int(0).into());
    o.insert("Action".into(), text(1).into());
    o.insert("Partition".into(), partition.into());
    o.insert("StudyInstanceUID".into(), text(2).into());
    if !text(3).is_empty() {
        o.insert("SeriesInstanceUID".into(), text(3).into());
    }
    if !text(4).is_empty() {
        o.insert("SOPInstanceUID".into(), text(4).into());
    }
    o.insert(
        "Timestamp".into(),
        rfc3339(u64::try_from(int(5)).unwrap_or(0)).into(),
    );
    serde_json::Value::Object(o)
}

/// Seconds since the Unix epoch as an RFC 3339 UTC time (`2026-12-05T05:19:32Z`).
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    // Days to a civil date (the proleptic Gregorian calendar, in 400-year eras).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret` (RFC 2104).
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length.
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// An HTTP client that POSTs (the frontend's).
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Poster: MaybeSendSync {
    /// POSTs `body` with `headers` to `url`: the response's status, or why there was none.
    async fn post(&self, url: &str, headers: &[(&str, String)], body: Bytes)
        -> Result<u16, String>;
}

/// Where a partition's feed is pushed: a webhook's URL ([`Webhook`]), a Cloudflare Queue (the
/// worker's). [`Pusher`] does the rest: order, progress, turns between replicas.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Sink: MaybeSendSync {
    /// Its kind and a name of this destination: the catalog keeps the lease and the progress of
    /// each destination under them (`webhook` and the URL's hash).
    fn key(&self) -> (&'static str, String);

    /// Delivers the changes numbered `first..=last` of `partition` (the feed's JSON rows, in
    /// order): `Ok` when the destination acknowledged them, else why not.
    async fn deliver(
        &self,
        partition: &str,
        (first, last): (i64, i64),
        changes: Vec<serde_json::Value>,
    ) -> Result<(), String>;
}

/// What one [`Pusher::step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The destination acknowledged the changes numbered `first..=last`.
    Delivered {
        /// The first change's sequence number.
        first: i64,
        /// The last one's.
        last: i64,
    },
    /// Nothing new to deliver.
    Idle,
    /// Another replica delivers (it holds the lease).
    Standby,
    /// The destination did not acknowledge the batch (it is sent again next time): why.
    Failed(String),
}

/// One partition's feed pushed in order to a [`Sink`] (see the module doc), by one of the
/// processes (replicas, isolates) that may: the holder of the lease.
#[derive(Debug, Clone)]
pub struct Pusher {
    partition: String,
    holder: String,
    lease: u64,
    batch: usize,
}

impl Pusher {
    /// Pushes `partition`'s feed as `holder` (a name unique to this process), holding the lease
    /// `lease` seconds at a time, at most `batch` changes at once.
    pub fn new(partition: &str, holder: &str, lease: u64, batch: usize) -> Pusher {
        Pusher {
            partition: partition.to_owned(),
            holder: holder.to_owned(),
            lease: lease.max(1),
            batch: batch.clamp(1, 1000),
        }
    }

    /// The catalog's names for the lease of `sink` and for where delivery to it got to.
    fn names(&self, sink: &dyn Sink) -> (String, String) {
        let (kind, key) = sink.key();
        (
            format!("{kind} lease {} {key}", self.partition),
            format!("{kind} delivered {} {key}", self.partition),
        )
    }

    /// Takes (or renews) the lease at `now`; when this process holds it, delivers the next
    /// batch after what was acknowledged, and records it when acknowledged.
    pub async fn step(
        &self,
        index: &dyn Index,
        sink: &dyn Sink,
        now: u64,
    ) -> Result<Step, IndexError> {
        let d = index.dialect();
        let (lease, delivered) = self.names(sink);
        let read = index
            .execute_then_read(
                vec![schema::take_lease(
                    d,
                    &lease,
                    &self.holder,
                    now,
                    now + self.lease,
                )],
                vec![
                    schema::meta_value(d, &lease),
                    schema::meta_value(d, &delivered),
                ],
            )
            .await?;
        let value = |i: usize| {
            read.get(i)
                .and_then(|rows| rows.first())
                .and_then(|r| r.first())
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        if value(0).get(13..) != Some(self.holder.as_str()) {
            return Ok(Step::Standby);
        }
        let after: i64 = value(1).parse().unwrap_or(0);
        let rows = index
            .query(schema::changes_after(d, &self.partition, after, self.batch))
            .await?;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(Step::Idle);
        };
        let seq = |r: &Row| r.first().and_then(Value::as_int).unwrap_or(0);
        let (first, last) = (seq(first), seq(last));
        let changes = rows
            .iter()
            .map(|r| change_json(&self.partition, r))
            .collect();
        match sink.deliver(&self.partition, (first, last), changes).await {
            Ok(()) => {
                index
                    .execute(vec![schema::set_meta_under_lease(
                        d,
                        &delivered,
                        &last.to_string(),
                        &lease,
                        &self.holder,
                    )])
                    .await?;
                Ok(Step::Delivered { first, last })
            }
            Err(why) => Ok(Step::Failed(format!("{why} (changes {first}-{last})"))),
        }
    }
}

/// One partition's feed pushed to one URL (see the module doc).
#[derive(Debug, Clone)]
pub struct Webhook {
    url: String,
    secret: Vec<u8>,
    pusher: Pusher,
}

/// A webhook's URL and secret, with the frontend's HTTP client: a [`Sink`].
struct Http<'a> {
    url: &'a str,
    secret: &'a [u8],
    poster: &'a dyn Poster,
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Sink for Http<'_> {
    fn key(&self) -> (&'static str, String) {
        use sha2::{Digest, Sha256};
        (
            "webhook",
            hex::encode(&Sha256::digest(self.url.as_bytes())[..8]),
        )
    }

    async fn deliver(
        &self,
        partition: &str,
        (first, last): (i64, i64),
        changes: Vec<serde_json::Value>,
    ) -> Result<(), String> {
        let body =
            Bytes::from(serde_json::to_vec(&serde_json::Value::Array(changes)).unwrap_or_default());
        let headers = [
            ("content-type", "application/json".to_owned()),
            ("x-wado-signature", signature(self.secret, &body)),
            ("x-wado-sequence", format!("{first}-{last}")),
            ("x-wado-partition", partition.to_owned()),
        ];
        match self.poster.post(self.url, &headers, body).await {
            Ok(status) if (200..300).contains(&status) => Ok(()),
            Ok(status) => Err(format!("{} answered {status}", self.url)),
            Err(e) => Err(format!("{}: {e}", self.url)),
        }
    }
}

impl Webhook {
    /// Delivers `partition`'s feed to `url`, signed with `secret`, as `holder` (a name unique
    /// to this process), holding the lease `lease` seconds at a time, at most `batch` changes a
    /// request.
    pub fn new(
        url: &str,
        secret: &[u8],
        partition: &str,
        holder: &str,
        lease: u64,
        batch: usize,
    ) -> Webhook {
        Webhook {
            url: url.to_owned(),
            secret: secret.to_vec(),
            pusher: Pusher::new(partition, holder, lease, batch),
        }
    }

    /// [`Pusher::step`] to this URL, POSTing with `poster`.
    pub async fn step(
        &self,
        index: &dyn Index,
        poster: &dyn Poster,
        now: u64,
    ) -> Result<Step, IndexError> {
        let sink = Http {
            url: &self.url,
            secret: &self.secret,
            poster,
        };
        self.pusher.step(index, &sink, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 (a key shorter than the block).
    #[test]
    fn the_signature_is_rfc_4231s_hmac_sha256() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
