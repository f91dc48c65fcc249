//! Keys by issuer URL (OpenID Connect Discovery 1.0): the issuer's discovery document,
//! `{issuer}/.well-known/openid-configuration`, names its JWK Set (`jwks_uri`), whose keys
//! verify the tokens ([`super::jwt`]). An identity provider rotates its keys on its own
//! schedule; the set is fetched again when its HTTP max-age is over, and at once (at most once
//! per [`MIN_REFETCH`] seconds) when a token names a key the set lacks. A failed fetch keeps
//! the keys there are and is retried with backoff.
//!
//! [`KeySource`] is the policy without IO (it is told what was fetched and when, and says when
//! to fetch); [`Oidc`] drives it with the frontend's HTTP client ([`HttpGet`]: the native
//! server's, the worker's `fetch`), so both frontends refresh by the same rules.

use super::jwt::{Grant, JwtAuth, Rejection};
use crate::store::MaybeSendSync;
use bytes::Bytes;
use futures::channel::oneshot;
use std::sync::{Arc, Mutex};

/// Where an issuer publishes its configuration, after the issuer URL.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// The least time between two fetches of the keys for a token that names an unknown key, in
/// seconds: a flood of tokens with made-up `kid`s costs one fetch per this long.
pub const MIN_REFETCH: u64 = 10;

/// How long fetched keys are used when the answer says nothing (`Cache-Control: max-age`).
pub const DEFAULT_MAX_AGE: u64 = 3600;

/// Bounds of a max-age taken from the answer, in seconds.
const MAX_AGE_BOUNDS: (u64, u64) = (60, 24 * 3600);

/// The longest wait before fetching again after failures, in seconds.
const MAX_BACKOFF: u64 = 300;

/// Checks an issuer's or a key set's URL: `https`, or `http` to this machine only (a test or
/// a provider beside the server); no fragment, and for an issuer no query (Discovery §2).
pub fn check_url(url: &str, what: &str, issuer: bool) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{what} {url:?} is not a URL: {e}"))?;
    let host = uri.host().unwrap_or("");
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1");
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if loopback => {}
        _ => {
            return Err(format!(
                "{what} {url:?} must be https (http only to localhost)"
            ))
        }
    }
    if host.is_empty() {
        return Err(format!("{what} {url:?} names no host"));
    }
    if url.contains('#') || (issuer && uri.query().is_some()) {
        return Err(format!(
            "{what} {url:?} may not have a {}",
            if url.contains('#') {
                "fragment"
            } else {
                "query"
            }
        ));
    }
    Ok(())
}

/// The discovery document's URL of an issuer.
pub fn discovery_url(issuer: &str) -> Result<String, String> {
    check_url(issuer, "the issuer", true)?;
    Ok(format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/')))
}

/// The `jwks_uri` of an issuer's discovery document, whose `issuer` must be exactly the one
/// configured (Discovery §4.3: a document that names another issuer is not this one's).
pub fn read_discovery(issuer: &str, body: &[u8]) -> Result<String, String> {
    let doc: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("the discovery document is not JSON: {e}"))?;
    let field = |name: &str| doc.get(name).and_then(serde_json::Value::as_str);
    match field("issuer") {
        Some(i) if i == issuer => {}
        Some(i) => {
            return Err(format!(
                "the discovery document is of issuer {i:?}, not {issuer:?}"
            ))
        }
        None => return Err("the discovery document names no issuer".into()),
    }
    let jwks = field("jwks_uri").ok_or("the discovery document names no jwks_uri")?;
    check_url(jwks, "the jwks_uri", false)?;
    Ok(jwks.to_owned())
}

/// How long an answer may be used, from its `Cache-Control` (`max-age`, bounded; `no-cache`
/// and `no-store` the least), else [`DEFAULT_MAX_AGE`].
pub fn max_age(cache_control: Option<&str>) -> u64 {
    let (least, most) = MAX_AGE_BOUNDS;
    let Some(cc) = cache_control else {
        return DEFAULT_MAX_AGE;
    };
    let mut age = None;
    for d in cc.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if d == "no-cache" || d == "no-store" {
            return least;
        }
        if let Some(v) = d.strip_prefix("max-age=") {
            age = v.trim_matches('"').parse::<u64>().ok();
        }
    }
    age.map_or(DEFAULT_MAX_AGE, |a| a.clamp(least, most))
}

/// An issuer's keys over time, and when to fetch them (see the module doc). Times are seconds
/// since the Unix epoch, the frontend's clock.
#[derive(Debug, Clone)]
pub struct KeySource {
    /// The verifier's settings, with the keys last installed (none at first).
    template: JwtAuth,
    keys: Option<JwtAuth>,
    /// Until when the installed keys are fresh.
    fresh_until: u64,
    /// When the last fetch began, whatever came of it.
    last_attempt: Option<u64>,
    /// When the fetch under way began (cleared by its outcome).
    fetching_since: Option<u64>,
    /// Fetches failed since the last that worked.
    failures: u32,
    /// Why the last fetch failed.
    last_error: Option<String>,
    /// Fetches failed, ever (for metrics).
    failed_total: u64,
    /// Key sets installed, ever: what verifications made with older keys are remembered under.
    generation: u64,
}

impl KeySource {
    /// A source for tokens checked as `template` checks them (issuer, audience, claim,
    /// lifetime); its keys are replaced by the issuer's as they are fetched.
    pub fn new(template: JwtAuth) -> KeySource {
        KeySource {
            template,
            keys: None,
            fresh_until: 0,
            last_attempt: None,
            fetching_since: None,
            failures: 0,
            last_error: None,
            failed_total: 0,
            generation: 0,
        }
    }

    /// The verifier with the keys there are, if any were fetched.
    pub fn verifier(&self) -> Option<&JwtAuth> {
        self.keys.as_ref()
    }

    /// Why the last fetch failed, while it is the last word.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The earliest a fetch after failures may begin.
    fn backoff_until(&self) -> u64 {
        match (self.last_attempt, self.failures) {
            (Some(at), n) if n > 0 => {
                let wait = (MIN_REFETCH << (n - 1).min(16)).min(MAX_BACKOFF);
                at.saturating_add(wait)
            }
            _ => 0,
        }
    }

    /// Whether a fetch is under way (one that began [`MIN_REFETCH`] × 3 seconds ago or more
    /// is taken as lost: its request was dropped).
    pub fn fetching(&self, now: u64) -> bool {
        self.fetching_since
            .is_some_and(|at| now < at.saturating_add(3 * MIN_REFETCH))
    }

    /// Whether to fetch now: no keys yet, or past their max-age; not while another fetch is
    /// under way, nor sooner than the backoff after failures allows.
    pub fn due(&self, now: u64) -> bool {
        (self.keys.is_none() || now >= self.fresh_until)
            && now >= self.backoff_until()
            && !self.fetching(now)
    }

    /// Whether a token naming an unknown key may make a fetch now: at most one per
    /// [`MIN_REFETCH`] seconds, and not sooner than the backoff.
    pub fn due_for_unknown_key(&self, now: u64) -> bool {
        let spaced = self
            .last_attempt
            .is_none_or(|at| now >= at.saturating_add(MIN_REFETCH));
        spaced && now >= self.backoff_until() && !self.fetching(now)
    }

    /// A fetch begins now (so that others do not start one meanwhile).
    pub fn attempting(&mut self, now: u64) {
        self.last_attempt = Some(now);
        self.fetching_since = Some(now);
    }

    /// A fetch answered this JWK Set with this `Cache-Control`: its keys replace the old ones.
    /// A set without a usable key is a failure (the old keys stay). Returns the key count.
    pub fn fetched(
        &mut self,
        jwks: &str,
        cache_control: Option<&str>,
        now: u64,
    ) -> Result<usize, String> {
        match self.template.with_keys(jwks) {
            Ok(keys) => {
                let n = keys.key_count();
                self.keys = Some(keys);
                self.generation += 1;
                self.fresh_until = now.saturating_add(max_age(cache_control));
                self.failures = 0;
                self.last_error = None;
                self.fetching_since = None;
                Ok(n)
            }
            Err(e) => {
                let e = format!("the issuer's JWK Set: {e}");
                self.failed(&e);
                Err(e)
            }
        }
    }

    /// A fetch ended without an outcome (its request went away): none is under way now.
    pub fn abandoned(&mut self) {
        self.fetching_since = None;
    }

    /// A fetch failed: the old keys stay, and the next fetch waits longer.
    pub fn failed(&mut self, why: &str) {
        self.fetching_since = None;
        self.failures = self.failures.saturating_add(1);
        self.failed_total = self.failed_total.saturating_add(1);
        self.last_error = Some(why.to_owned());
    }
}

/// An HTTP answer, as much of it as key fetching needs.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// The `Cache-Control` header, if any.
    pub cache_control: Option<String>,
    /// Body.
    pub body: Bytes,
}

/// The frontend's HTTP client: a GET.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait HttpGet: std::fmt::Debug + MaybeSendSync {
    /// GETs `url` (JSON expected); an error is a transport failure, with its reason.
    async fn get(&self, url: &str) -> Result<HttpAnswer, String>;
}

/// Token verification with an issuer's keys, fetched and refreshed through `client`.
#[derive(Debug)]
pub struct Oidc {
    issuer: String,
    client: Arc<dyn HttpGet>,
    state: Mutex<State>,
}

/// The keys, and the requests waiting for the fetch under way (an isolate's or a server's
/// first requests arrive together: all but one wait for the keys rather than fail).
#[derive(Debug)]
struct State {
    keys: KeySource,
    waiters: Vec<oneshot::Sender<()>>,
}

/// Whether a verification failed for want of a key a fetch could bring.
fn wants_keys(r: &Result<Grant, Rejection>) -> bool {
    matches!(r, Err(Rejection::UnknownKey | Rejection::NoKeys))
}

/// Ends a fetch however it ends (done, or its request dropped): the waiters are woken.
struct Fetching<'a>(&'a Oidc, bool);

impl Drop for Fetching<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state();
        if !self.1 {
            st.keys.abandoned();
        }
        for w in st.waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

impl Oidc {
    /// Verifies tokens as `template` does (its keys unused), with the keys of `issuer`.
    pub fn new(issuer: &str, template: JwtAuth, client: Arc<dyn HttpGet>) -> Result<Oidc, String> {
        discovery_url(issuer)?;
        Ok(Oidc {
            issuer: issuer.to_owned(),
            client,
            state: Mutex::new(State {
                keys: KeySource::new(template),
                waiters: Vec::new(),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fetches the discovery document, then the keys it names, into the source (a frontend
    /// calls it once at start, so that the first requests find keys).
    pub async fn refresh(&self, now: u64) -> Result<usize, String> {
        self.state().keys.attempting(now);
        self.fetch_and_install(now).await
    }

    async fn fetch_and_install(&self, now: u64) -> Result<usize, String> {
        let mut fetching = Fetching(self, false);
        let result = self.fetch_keys().await;
        let installed = {
            let keys = &mut self.state().keys;
            match result {
                Ok((jwks, cache_control)) => keys.fetched(&jwks, cache_control.as_deref(), now),
                Err(e) => {
                    keys.failed(&e);
                    Err(e)
                }
            }
        };
        fetching.1 = true;
        installed
    }

    async fn fetch_keys(&self) -> Result<(String, Option<String>), String> {
        let url = discovery_url(&self.issuer)?;
        let doc = self
            .client
            .get(&url)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if doc.status != 200 {
            return Err(format!("{url}: HTTP status {}", doc.status));
        }
        let jwks_uri = read_discovery(&self.issuer, &doc.body)?;
        let keys = self
            .client
            .get(&jwks_uri)
            .await
            .map_err(|e| format!("{jwks_uri}: {e}"))?;
        if keys.status != 200 {
            return Err(format!("{jwks_uri}: HTTP status {}", keys.status));
        }
        let text = String::from_utf8(keys.body.to_vec())
            .map_err(|_| format!("{jwks_uri}: the JWK Set is not UTF-8"))?;
        Ok((text, keys.cache_control))
    }

    /// Verifies `token` at `now`: with the keys there are, fetched first when due, and fetched
    /// again once when the token names a key they lack. Without any key, the token is refused
    /// as unverifiable ([`Rejection::NoKeys`]); [`Oidc::last_error`] says why.
    pub async fn verify(&self, token: &str, now: u64) -> Result<Grant, Rejection> {
        // Others verify with the keys there are meanwhile.
        if self.take_fetch(now, KeySource::due) {
            let _ = self.fetch_and_install(now).await;
        }
        let first = self.verify_now(token, now);
        if !wants_keys(&first) {
            return first;
        }
        // Another request's fetch under way (the first keys, or a new kid's): its outcome.
        let wait = {
            let mut st = self.state();
            st.keys.fetching(now).then(|| {
                let (tx, rx) = oneshot::channel();
                st.waiters.push(tx);
                rx
            })
        };
        if let Some(fetched) = wait {
            let _ = fetched.await;
            let after = self.verify_now(token, now);
            if !wants_keys(&after) {
                return after;
            }
        }
        if !self.take_fetch(now, KeySource::due_for_unknown_key) {
            return first;
        }
        let _ = self.fetch_and_install(now).await;
        self.verify_now(token, now)
    }

    /// Whether this request fetches the keys now (`due` says), marking the fetch under way.
    fn take_fetch(&self, now: u64, due: fn(&KeySource, u64) -> bool) -> bool {
        let keys = &mut self.state().keys;
        let take = due(keys, now);
        if take {
            keys.attempting(now);
        }
        take
    }

    fn verify_now(&self, token: &str, now: u64) -> Result<Grant, Rejection> {
        match self.state().keys.verifier() {
            Some(v) => v.verify(token, now),
            None => Err(Rejection::NoKeys),
        }
    }

    /// Why the last fetch of the keys failed, while no later one worked.
    pub fn last_error(&self) -> Option<String> {
        self.state().keys.last_error().map(str::to_owned)
    }

    /// How many key sets were installed: a verification made under another set is not reused.
    pub fn generation(&self) -> u64 {
        self.state().keys.generation
    }

    /// Fetches of the keys that failed since start (for metrics).
    pub fn failed_fetches(&self) -> u64 {
        self.state().keys.failed_total
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::auth::fixtures::{token, ISS, JWKS, NOW};

    fn template() -> JwtAuth {
        JwtAuth::new(JWKS, ISS, "wado", "aets")
            .unwrap()
            .with_max_lifetime(None)
    }

    /// An issuer in memory: its discovery document, its current JWK Set, and a count of GETs;
    /// a GET waits for `gate` when one is set.
    #[derive(Debug, Default)]
    struct Issuer {
        jwks: Mutex<String>,
        down: Mutex<bool>,
        gets: AtomicUsize,
        gate: Mutex<Option<oneshot::Receiver<()>>>,
    }

    #[derive(Debug)]
    struct Client(Arc<Issuer>);

    #[async_trait::async_trait]
    impl HttpGet for Client {
        async fn get(&self, url: &str) -> Result<HttpAnswer, String> {
            self.0.gets.fetch_add(1, Ordering::Relaxed);
            let gate = self.0.gate.lock().unwrap().take();
            if let Some(g) = gate {
                let _ = g.await;
            }
            if *self.0.down.lock().unwrap() {
                return Err("connection refused".into());
            }
            let body = if url == format!("{ISS}{DISCOVERY_PATH}") {
                format!(r#"{{"issuer":"{ISS}","jwks_uri":"{ISS}/certs"}}"#)
            } else if url == format!("{ISS}/certs") {
                self.0.jwks.lock().unwrap().clone()
            } else {
                return Ok(HttpAnswer {
                    status: 404,
                    cache_control: None,
                    body: Bytes::new(),
                });
            };
            Ok(HttpAnswer {
                status: 200,
                cache_control: Some("public, max-age=600".into()),
                body: Bytes::from(body),
            })
        }
    }

    fn oidc(jwks: &str) -> (Oidc, Arc<Issuer>) {
        let issuer = Arc::new(Issuer::default());
        *issuer.jwks.lock().unwrap() = jwks.to_owned();
        let o = Oidc::new(ISS, template(), Arc::new(Client(issuer.clone()))).unwrap();
        (o, issuer)
    }

    #[test]
    fn urls_must_be_https_or_local() {
        assert!(check_url("https://idp.example.org/realms/x", "i", true).is_ok());
        assert!(check_url("http://127.0.0.1:8080/realms/x", "i", true).is_ok());
        assert!(check_url("http://localhost/x", "i", true).is_ok());
        for bad in [
            "http://idp.example.org/x",
            "ftp://idp.example.org/x",
            "https://idp.example.org/x?realm=a",
            "https://idp.example.org/x#f",
            "/relative",
            "not a url at all",
        ] {
            assert!(check_url(bad, "the issuer", true).is_err(), "{bad}");
        }
        assert_eq!(
            discovery_url("https://idp.example.org/realms/x/").unwrap(),
            "https://idp.example.org/realms/x/.well-known/openid-configuration"
        );
    }

    #[test]
    fn the_discovery_document_must_be_the_issuers() {
        let doc = |iss: &str, jwks: &str| format!(r#"{{"issuer":"{iss}","jwks_uri":"{jwks}"}}"#);
        assert_eq!(
            read_discovery(ISS, doc(ISS, "https://idp.example.org/certs").as_bytes()).unwrap(),
            "https://idp.example.org/certs"
        );
        for (body, why) in [
            (doc("https://evil.example.org", "https://x/certs"), "not"),
            (doc(ISS, "http://idp.example.org/certs"), "https"),
            (format!(r#"{{"issuer":"{ISS}"}}"#), "no jwks_uri"),
            ("[1]".to_owned(), "no issuer"),
            ("<html>".to_owned(), "not JSON"),
        ] {
            let e = read_discovery(ISS, body.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn max_age_is_read_and_bounded() {
        assert_eq!(max_age(None), DEFAULT_MAX_AGE);
        assert_eq!(max_age(Some("public, max-age=600")), 600);
        assert_eq!(max_age(Some("max-age=1")), 60);
        assert_eq!(max_age(Some("max-age=99999999")), 86400);
        assert_eq!(max_age(Some("no-store")), 60);
        assert_eq!(max_age(Some("private")), DEFAULT_MAX_AGE);
    }

    #[test]
    fn fetches_are_spaced_and_backed_off() {
        let mut s = KeySource::new(template());
        assert!(s.due(NOW), "no keys yet");
        s.attempting(NOW);
        assert!(!s.due(NOW + 1), "one fetch at a time");
        assert!(
            s.due(NOW + 3 * MIN_REFETCH),
            "a fetch that never ended is given up"
        );
        s.fetched(JWKS, Some("max-age=600"), NOW).unwrap();
        assert!(!s.due(NOW + 599) && s.due(NOW + 600), "max-age");
        assert!(!s.due_for_unknown_key(NOW + MIN_REFETCH - 1));
        assert!(s.due_for_unknown_key(NOW + MIN_REFETCH));
        // Failures: the keys stay, the waits grow to the cap.
        let mut t = NOW + 600;
        let mut waits = Vec::new();
        for _ in 0..8 {
            s.attempting(t);
            s.failed("down");
            let next = (t..t + 1000).find(|&u| s.due(u)).unwrap();
            waits.push(next - t);
            t = next;
        }
        assert_eq!(waits, vec![10, 20, 40, 80, 160, 300, 300, 300]);
        assert!(s.verifier().is_some(), "old keys kept");
        assert_eq!(s.last_error(), Some("down"));
        // A set without a usable key is a failure too.
        assert!(s.fetched(r#"{"keys":[]}"#, None, t).is_err());
        assert!(s.verifier().is_some());
    }

    #[test]
    fn keys_are_fetched_then_refreshed_for_a_new_kid_once_per_interval() {
        // The issuer starts with its RSA key under another kid: rs256_ok names rsa1.
        let rotated_away = JWKS.replace("\"rsa1\"", "\"old\"");
        let (o, issuer) = oidc(&rotated_away);
        let b = futures::executor::block_on;
        assert_eq!(
            b(o.verify(token("rs256_ok"), NOW)),
            Err(Rejection::UnknownKey)
        );
        // Discovery and keys, once: the refetch for the unknown kid is too soon.
        assert_eq!(issuer.gets.load(Ordering::Relaxed), 2);
        // The issuer rotates: the new kid is picked up on the next interval, without restart.
        *issuer.jwks.lock().unwrap() = JWKS.to_owned();
        assert_eq!(
            b(o.verify(token("rs256_ok"), NOW + 1)),
            Err(Rejection::UnknownKey),
            "within the interval, no fetch"
        );
        assert_eq!(issuer.gets.load(Ordering::Relaxed), 2);
        assert!(b(o.verify(token("rs256_ok"), NOW + MIN_REFETCH)).is_ok());
        assert_eq!(issuer.gets.load(Ordering::Relaxed), 4);
        // Known kid: no fetch until max-age.
        assert!(b(o.verify(token("es256_ok"), NOW + 20)).is_ok());
        assert_eq!(issuer.gets.load(Ordering::Relaxed), 4);
        // A bad signature under a known kid never fetches.
        assert_eq!(
            b(o.verify(token("rs256_tampered"), NOW + 100)),
            Err(Rejection::Signature)
        );
        assert_eq!(issuer.gets.load(Ordering::Relaxed), 4);
        // The issuer goes down past max-age: the old keys keep working, the error is kept.
        *issuer.down.lock().unwrap() = true;
        assert!(b(o.verify(token("rs256_ok"), NOW + MIN_REFETCH + 600)).is_ok());
        assert!(o.last_error().unwrap().contains("connection refused"));
    }

    /// An issuer down from the start: no keys, said so (not "unknown key"), and fetches spaced.
    #[test]
    fn an_issuer_down_from_the_start_is_no_keys() {
        let (o, issuer) = oidc(JWKS);
        *issuer.down.lock().unwrap() = true;
        let b = futures::executor::block_on;
        assert_eq!(b(o.verify(token("rs256_ok"), NOW)), Err(Rejection::NoKeys));
        assert!(o.last_error().unwrap().contains("connection refused"));
        let gets = issuer.gets.load(Ordering::Relaxed);
        assert_eq!(
            b(o.verify(token("rs256_ok"), NOW + 1)),
            Err(Rejection::NoKeys)
        );
        assert_eq!(issuer.gets.load(Ordering::Relaxed), gets, "backed off");
        *issuer.down.lock().unwrap() = false;
        assert!(
            b(o.verify(token("rs256_ok"), NOW + MIN_REFETCH)).is_ok(),
            "back up"
        );
    }

    /// Requests that come while the first keys are being fetched wait for them (none fails
    /// for want of keys), and are woken, refused, if that fetch's request goes away.
    #[test]
    fn requests_during_the_first_fetch_wait_for_it() {
        use futures::FutureExt;
        let (o, issuer) = oidc(JWKS);
        let (open, gate) = oneshot::channel();
        *issuer.gate.lock().unwrap() = Some(gate);
        let (a, b) = futures::executor::block_on(async {
            let first = o.verify(token("rs256_ok"), NOW);
            let second = o.verify(token("es256_ok"), NOW);
            let release = async {
                open.send(()).unwrap();
            };
            // Polled in order: the first starts the fetch and waits at the gate, the second
            // finds it under way, then the gate opens.
            let (a, b, ()) = futures::future::join3(first, second, release).await;
            (a, b)
        });
        assert!(a.is_ok(), "{a:?}");
        assert!(b.is_ok(), "{b:?}");
        assert_eq!(issuer.gets.load(Ordering::Relaxed), 2, "one fetch for both");

        let (o, issuer) = oidc(JWKS);
        let (_open, gate) = oneshot::channel::<()>();
        *issuer.gate.lock().unwrap() = Some(gate);
        futures::executor::block_on(async {
            let mut first = Box::pin(o.verify(token("rs256_ok"), NOW));
            assert!(first.as_mut().now_or_never().is_none(), "fetching");
            let mut second = Box::pin(o.verify(token("es256_ok"), NOW));
            assert!(second.as_mut().now_or_never().is_none(), "waiting");
            drop(first);
            assert_eq!(second.await, Err(Rejection::NoKeys), "woken, not hung");
        });
    }
}
