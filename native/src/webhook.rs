//! `wado serve --webhook URL`: the change feed pushed to a URL ([`wado_core::search::feed::Webhook`]:
//! batches in order, signed, sent again until acknowledged, one replica at a time). Here only
//! the HTTP client and the timing: a step at once after a delivery, and when there is
//! nothing new four times a second, after 1, 2, 4 ... 60 seconds after a failure.

use std::sync::Arc;
use std::time::Duration;
use wado_core::search::feed::{Poster, Step, Webhook};
use wado_core::search::Index;

/// The longest wait between attempts after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often the feed is looked at when everything was delivered.
const POLL: Duration = Duration::from_millis(250);

/// POSTs with reqwest, each within 30 seconds.
#[derive(Debug)]
struct Reqwest(reqwest::Client);

#[async_trait::async_trait]
impl Poster for Reqwest {
    async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: bytes::Bytes,
    ) -> Result<u16, String> {
        let mut req = self.0.post(url).body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    }
}

/// Delivers `partition`'s feed to `url` until the process ends.
pub fn spawn(
    index: Arc<dyn Index>,
    url: String,
    secret: Vec<u8>,
    partition: String,
    lease: u64,
) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("webhook client: {e}"))?;
    let poster = Reqwest(client);
    let holder = format!("{:016x}", rand::random::<u64>());
    let hook = Webhook::new(&url, &secret, &partition, &holder, lease, 100);
    tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let wait = match hook.step(&*index, &poster, now).await {
                Ok(Step::Delivered { first, last }) => {
                    tracing::debug!(%partition, first, last, "webhook: delivered");
                    backoff = Duration::from_secs(1);
                    Duration::ZERO
                }
                Ok(Step::Idle) => POLL,
                // Another replica delivers; this one is ready to take over when its lease ends.
                Ok(Step::Standby) => Duration::from_secs(lease.div_ceil(2)).min(POLL * 4),
                Ok(Step::Failed(why)) => {
                    tracing::warn!(%partition, "webhook: {why}; again in {} s", backoff.as_secs());
                    {
                        let next = (backoff * 2).min(MAX_BACKOFF);
                        std::mem::replace(&mut backoff, next)
                    }
                }
                Err(e) => {
                    tracing::warn!(%partition, "webhook: the catalog: {e}; again in {} s", backoff.as_secs());
                    {
                        let next = (backoff * 2).min(MAX_BACKOFF);
                        std::mem::replace(&mut backoff, next)
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    });
    Ok(())
}
