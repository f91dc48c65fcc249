//! The native server's HTTP client for what the core fetches itself: an OpenID Connect
//! issuer's discovery document and keys ([`wado_core::auth::oidc`]).

use std::time::Duration;
use wado_core::auth::oidc::{HttpAnswer, HttpGet};

/// GETs with reqwest (rustls, the system's roots), each within 10 seconds, bodies up to 1 MiB.
#[derive(Debug)]
pub struct ReqwestGet(reqwest::Client);

/// The largest answer read: a discovery document or a key set is a few KB.
const MAX_BODY: usize = 1 << 20;

impl ReqwestGet {
    /// A client.
    pub fn new() -> Result<ReqwestGet, String> {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map(ReqwestGet)
            .map_err(|e| format!("HTTP client: {e}"))
    }
}

#[async_trait::async_trait]
impl HttpGet for ReqwestGet {
    async fn get(&self, url: &str) -> Result<HttpAnswer, String> {
        let mut r = self
            .0
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let cache_control = r
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("the answer is larger than {MAX_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpAnswer {
            status,
            cache_control,
            body: body.into(),
        })
    }
}
