//! `wado store URL PATH...`: sends DICOM files to any STOW-RS server (PS3.18 §10.5), so one
//! wado fills another, or the worker's R2 bucket, without storage credentials.
//!
//! Files go in requests of up to `per_request` instances and `request_bytes` bytes (one
//! `multipart/related; type="application/dicom"` body each, built in memory), `connections`
//! requests at once. Each response's data set says what was stored and what failed (Failure
//! Reason, and the server's text in its `Warning` headers); a request refused whole (4xx/5xx
//! other than 202/409) fails all its files with the server's reason.

use crate::import::collect_files;
use futures::StreamExt;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to send.
#[derive(Debug, Clone)]
pub struct Options {
    /// The service root (`.../rs`) or a study URL (`.../rs/studies/{uid}`).
    pub url: String,
    /// A bearer token.
    pub token: Option<String>,
    /// The most instances in one request.
    pub per_request: usize,
    /// The most bytes of files in one request (a larger file goes alone).
    pub request_bytes: u64,
    /// Requests in flight at once.
    pub connections: usize,
    /// Show a progress bar.
    pub progress: bool,
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Stored (with the server's warning, if any: a replacement).
    Stored(Option<String>),
    /// Not stored: why.
    Failed(String),
}

/// Counts.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Files stored.
    pub stored: usize,
    /// Files not stored.
    pub failed: usize,
    /// Bytes of files sent.
    pub bytes: u64,
    /// Requests made.
    pub requests: usize,
}

/// Sends the files under `paths`; `report` is called for each file.
pub async fn run(
    paths: &[PathBuf],
    opts: &Options,
    mut report: impl FnMut(&Path, &Sent),
) -> Result<Summary, String> {
    let (files, walk_errors) = collect_files(paths);
    let mut summary = Summary::default();
    for (p, e) in &walk_errors {
        summary.failed += 1;
        report(p, &Sent::Failed(e.clone()));
    }
    let url = stow_url(&opts.url)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()
        .map_err(|e| e.to_string())?;
    let batches = batches(&files, opts.per_request.max(1), opts.request_bytes);
    let bar = opts.progress.then(|| {
        let b = indicatif::ProgressBar::new(files.iter().map(|f| size(f)).sum());
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        b
    });
    let sends = batches.into_iter().map(|batch| {
        let (client, url, token) = (client.clone(), url.clone(), opts.token.clone());
        async move {
            let bytes: u64 = batch.iter().map(|f| size(f)).sum();
            let results = send(&client, &url, token.as_deref(), &batch).await;
            (batch, bytes, results)
        }
    });
    let mut sends = futures::stream::iter(sends).buffer_unordered(opts.connections.max(1));
    let mut stored = 0usize;
    while let Some((batch, bytes, results)) = sends.next().await {
        summary.requests += 1;
        summary.bytes += bytes;
        for (file, sent) in batch.iter().zip(&results) {
            match sent {
                Sent::Stored(_) => {
                    summary.stored += 1;
                    stored += 1;
                }
                Sent::Failed(_) => summary.failed += 1,
            }
            report(file, sent);
        }
        if let Some(b) = &bar {
            b.inc(bytes);
            b.set_message(format!("{stored} stored"));
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(summary)
}

/// `{root}/studies`, or the study URL as given.
fn stow_url(url: &str) -> Result<String, String> {
    let url = url.trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{url:?} is not an http(s) URL"));
    }
    if url.ends_with("/rs") {
        Ok(format!("{url}/studies"))
    } else if url.contains("/studies") {
        Ok(url.to_owned())
    } else {
        Err(format!(
            "{url:?}: give the service root (…/rs) or a study URL (…/rs/studies/UID)"
        ))
    }
}

fn size(f: &Path) -> u64 {
    std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)
}

/// Files cut into requests of at most `n` files and `max_bytes` bytes (a larger file alone).
fn batches(files: &[PathBuf], n: usize, max_bytes: u64) -> Vec<Vec<PathBuf>> {
    let mut out: Vec<Vec<PathBuf>> = Vec::new();
    let mut bytes = 0u64;
    for f in files {
        let s = size(f);
        match out.last_mut() {
            Some(last) if last.len() < n && bytes + s <= max_bytes => {
                last.push(f.clone());
                bytes += s;
            }
            _ => {
                out.push(vec![f.clone()]);
                bytes = s;
            }
        }
    }
    out
}

/// One request with `files`; what became of each, in order.
async fn send(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    files: &[PathBuf],
) -> Vec<Sent> {
    // The request is framed by the core's multipart writer, as every response is.
    let mut writer = wado_core::wire::multipart::MultipartWriter::new(
        wado_core::wire::multipart::boundary_from_entropy(rand::random()),
    );
    let mut body = Vec::new();
    let mut sops: Vec<Option<String>> = Vec::new();
    let mut unread: Vec<Option<String>> = Vec::new();
    for f in files {
        match tokio::fs::read(f).await {
            Ok(bytes) => {
                sops.push(
                    wado_core::dicom::scan::scan_meta(&bytes)
                        .ok()
                        .and_then(|m| m.media_storage_sop_instance),
                );
                unread.push(None);
                body.extend_from_slice(&writer.part_head("application/dicom", None, None));
                body.extend_from_slice(&bytes);
            }
            Err(e) => {
                sops.push(None);
                unread.push(Some(format!("cannot read: {e}")));
            }
        }
    }
    body.extend_from_slice(&writer.close());
    let mut req = client
        .post(url)
        .header("content-type", writer.content_type("application/dicom"))
        .header("accept", "application/dicom+json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let all = |why: String| files.iter().map(|_| Sent::Failed(why.clone())).collect();
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return all(format!("request failed: {e}")),
    };
    let status = resp.status().as_u16();
    let warnings: Vec<String> = resp
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(warning_text)
        .collect();
    let text = resp.text().await.unwrap_or_default();
    if !matches!(status, 200 | 202 | 409) {
        return all(format!("server answered {status}: {}", text.trim()));
    }
    let ds: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let seq =
        |tag: &str| -> Vec<Value> { ds[tag]["Value"].as_array().cloned().unwrap_or_default() };
    let uid = |item: &Value| item["00081155"]["Value"][0].as_str().map(str::to_owned);
    let referenced: Vec<(Option<String>, bool)> = seq("00081199")
        .iter()
        .map(|i| (uid(i), i.get("00081196").is_some()))
        .collect();
    let failed: Vec<(Option<String>, u64)> = seq("00081198")
        .iter()
        .map(|i| (uid(i), i["00081197"]["Value"][0].as_u64().unwrap_or(0)))
        .collect();
    let note = |sop: &str| warnings.iter().find(|w| w.contains(sop)).cloned();
    // Items are matched to files by SOP Instance UID (the meta header's); a file whose data
    // set names another UID than its meta header is matched to what is left, in order (the
    // server answers in the order of the parts), when that is unambiguous.
    let mut used_ref = vec![false; referenced.len()];
    let mut used_failed = vec![false; failed.len()];
    let mut out: Vec<Option<Sent>> = sops
        .iter()
        .zip(unread)
        .map(|(sop, unread)| {
            if let Some(why) = unread {
                return Some(Sent::Failed(why));
            }
            let sop = sop.as_deref()?;
            if let Some(i) = (0..referenced.len())
                .find(|&i| !used_ref[i] && referenced[i].0.as_deref() == Some(sop))
            {
                used_ref[i] = true;
                return Some(Sent::Stored(if referenced[i].1 { note(sop) } else { None }));
            }
            let i = (0..failed.len())
                .find(|&i| !used_failed[i] && failed[i].0.as_deref() == Some(sop))?;
            used_failed[i] = true;
            Some(Sent::Failed(format!(
                "failure reason {:04X}{}",
                failed[i].1,
                note(sop).map(|n| format!(": {n}")).unwrap_or_default()
            )))
        })
        .collect();
    let left = out.iter().filter(|o| o.is_none()).count();
    let left_ref: Vec<usize> = (0..referenced.len()).filter(|&i| !used_ref[i]).collect();
    let left_failed: Vec<usize> = (0..failed.len()).filter(|&i| !used_failed[i]).collect();
    let mut fill: Box<dyn Iterator<Item = Sent>> =
        if left_failed.is_empty() && left_ref.len() == left {
            Box::new(left_ref.into_iter().map(|_| Sent::Stored(None)))
        } else if left_ref.is_empty() && left_failed.len() == left {
            Box::new(
                left_failed
                    .into_iter()
                    .map(|i| Sent::Failed(format!("failure reason {:04X}", failed[i].1))),
            )
        } else {
            Box::new(std::iter::repeat_with(move || {
                Sent::Failed(format!(
                    "the server's response does not name it (status {status})"
                ))
            }))
        };
    out.iter_mut()
        .map(|o| match o.take() {
            Some(s) => s,
            None => fill
                .next()
                .unwrap_or_else(|| Sent::Failed("not a DICOM Part-10 file".into())),
        })
        .collect()
}

/// The text of a `Warning: 299 agent "text"` header.
fn warning_text(v: &str) -> String {
    match (v.find('"'), v.rfind('"')) {
        (Some(a), Some(b)) if b > a => v[a + 1..b].to_owned(),
        _ => v.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_batches() {
        assert_eq!(
            stow_url("http://h:1/dcm4chee-arc/aets/A/rs/").as_deref(),
            Ok("http://h:1/dcm4chee-arc/aets/A/rs/studies")
        );
        assert_eq!(
            stow_url("https://h/x/rs/studies/1.2").as_deref(),
            Ok("https://h/x/rs/studies/1.2")
        );
        assert!(stow_url("h/rs").is_err());
        assert!(stow_url("http://h/other").is_err());
        assert_eq!(warning_text("299 wado \"a b\""), "a b");
    }
}
