//! The change feed pushed to a Cloudflare Queue (the producer binding `FEED_QUEUE`): each change
//! one message, its body the feed's JSON row (`Sequence`, `Action`, `Partition`, UIDs,
//! `Timestamp`; docs/LIFECYCLE.md). What to push, in which order, and where it got to is the
//! core's ([`wado_core::search::feed::Pusher`]); here only the queue's `sendBatch`.

use wado_core::search::feed::Sink;
use worker::{QueueContentType, RawMessageBuilder};

/// Messages in one `sendBatch` (Cloudflare takes at most 100, 256 KB together; a change is a few
/// hundred bytes).
pub const BATCH: usize = 100;

/// A queue producer binding.
pub struct QueueSink {
    /// The binding's name (the catalog keeps each binding's progress on its own).
    pub binding: String,
    /// The queue.
    pub queue: worker::Queue,
}

#[async_trait::async_trait(?Send)]
impl Sink for QueueSink {
    fn key(&self) -> (&'static str, String) {
        ("queue", self.binding.clone())
    }

    async fn deliver(
        &self,
        _partition: &str,
        _range: (i64, i64),
        changes: Vec<serde_json::Value>,
    ) -> Result<(), String> {
        let mut messages = Vec::with_capacity(changes.len());
        for c in &changes {
            // A plain JS object (serde_wasm_bindgen would make a Map of a JSON object).
            let body = js_sys::JSON::parse(&c.to_string()).map_err(|e| format!("{e:?}"))?;
            messages
                .push(RawMessageBuilder::new(body).build_with_content_type(QueueContentType::Json));
        }
        self.queue
            .send_raw_batch(messages)
            .await
            .map_err(|e| format!("queue {}: {e}", self.binding))
    }
}
