//! Access control with bearer tokens (RFC 6750), one rule for every route, so a viewer that
//! sends its token on QIDO but forgets it on frames (OHIF#1736) is told so on every route.
//! A token is either static (a tokens file, below) or a JWT ([`jwt`]); [`Auth`] takes
//! either or both: a token with three dot-separated parts is checked as a JWT.
//!
//! A tokens file has one token per line, followed by the AE titles it may read (comma
//! separated) or `*` for all, and optionally what else it may do there: `write` (store with
//! STOW-RS, correct), `delete`, or both (`write,delete`); `#` starts a comment:
//!
//! ```text
//! # token                              AE titles   access
//! 3f1c2e0d9a7b4c6e8f0a1b2c3d4e5f60      DCM4CHEE
//! 0b9a8c7d6e5f4a3b2c1d0e9f8a7b6c5d      *           write,delete
//! ```
//!
//! A JWT's rights come from its claims ([`grant`]): its AE titles, `write` and `delete` in its
//! `scope` (or roles mapped to permissions), and a `studies` claim that confines it to those
//! studies ([`Reach`]).
//!
//! Tokens are kept as SHA-256 digests and compared in constant time.

use sha2::{Digest, Sha256};

#[cfg(test)]
pub(crate) mod fixtures;
pub mod grant;
pub mod jwt;
pub mod oidc;
pub mod share;

pub use grant::{Grant, Permissions, Reach, RoleMap};

/// Where a frontend's access settings come from: the text of a tokens file and the JWT
/// settings, each with the name the user knows it by (a flag, an environment variable), so
/// that errors name it.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// A tokens file's text, and its name (`--tokens-file`, `TOKENS`).
    pub tokens: Option<(String, String)>,
    /// JWT verification keys (PEM or JWKS text), and their name (`--jwt-keys`, `JWT_KEYS`).
    pub jwt_keys: Option<(String, String)>,
    /// The `iss` every JWT must carry.
    pub jwt_issuer: String,
    /// The `aud` every JWT must carry.
    pub jwt_audience: String,
    /// The claim that lists the AE titles a JWT may read (`aets` when empty).
    pub jwt_ae_claim: String,
    /// The longest a JWT may live, in seconds: `None` is [`jwt::DEFAULT_MAX_LIFETIME`], 0 is
    /// no maximum.
    pub jwt_max_lifetime: Option<u64>,
    /// An OpenID Connect issuer URL whose published keys verify JWTs ([`oidc`]), and its
    /// name (`--oidc-issuer`, `OIDC_ISSUER`); the JWT issuer is this URL unless set.
    pub oidc_issuer: Option<(String, String)>,
    /// The frontend's HTTP client, to fetch the issuer's keys.
    pub oidc_client: Option<std::sync::Arc<dyn oidc::HttpGet>>,
    /// The claim holding a JWT's roles (dot-separated path) and the permissions each role
    /// gives ([`RoleMap::parse`]), with their name (`--jwt-roles`, `JWT_ROLES`): JWTs then
    /// have only what their roles give.
    pub jwt_roles: Option<(String, String, String)>,
    /// The keys of share links ([`share::ShareKeys::parse`]), and their name
    /// (`--share-keys`, `SHARE_KEYS`).
    pub share_keys: Option<(String, String)>,
    /// The ids of share links revoked (`--share-revoked`, `SHARE_REVOKED`).
    pub share_revoked: Option<String>,
}

impl Auth {
    /// The access rule of a frontend's settings: static tokens, JWTs, both, or `None` (access
    /// control off) when neither is set. The native server and the worker both build it here.
    pub fn from_settings(s: &AuthSettings) -> Result<Option<Auth>, String> {
        let roles = match &s.jwt_roles {
            Some((name, claim, text)) => {
                Some(RoleMap::parse(claim, text).map_err(|e| format!("{name}: {e}"))?)
            }
            None => None,
        };
        let tokens = match &s.tokens {
            Some((name, text)) => Some(TokenAuth::parse(text).map_err(|e| format!("{name}: {e}"))?),
            None => None,
        };
        let jwt = match &s.jwt_keys {
            Some((name, keys)) => Some(
                jwt::JwtAuth::new(keys, &s.jwt_issuer, &s.jwt_audience, ae_claim(s))
                    .map_err(|e| format!("{name}: {e}"))?
                    .with_max_lifetime(max_lifetime(s))
                    .with_roles(roles.clone()),
            ),
            None => None,
        };
        let oidc = match (&s.oidc_issuer, &s.oidc_client) {
            (Some((name, url)), Some(client)) => {
                let issuer = if s.jwt_issuer.is_empty() {
                    url.as_str()
                } else {
                    &s.jwt_issuer
                };
                if s.jwt_audience.is_empty() {
                    return Err(format!(
                        "{name}: the audience tokens must name is required too (--jwt-audience, JWT_AUDIENCE)"
                    ));
                }
                let template = jwt::JwtAuth::template(issuer, &s.jwt_audience, ae_claim(s))
                    .with_max_lifetime(max_lifetime(s))
                    .with_roles(roles.clone());
                let o = oidc::Oidc::new(url, template, client.clone())
                    .map_err(|e| format!("{name}: {e}"))?;
                Some(std::sync::Arc::new(o))
            }
            (Some((name, _)), None) => {
                return Err(format!("{name}: this frontend has no HTTP client for it"))
            }
            (None, _) => None,
        };
        let shares = match &s.share_keys {
            Some((name, text)) => Some(
                share::ShareKeys::parse(text)
                    .map_err(|e| format!("{name}: {e}"))?
                    .with_revoked(s.share_revoked.as_deref().unwrap_or("")),
            ),
            None => None,
        };
        Ok(
            (tokens.is_some() || jwt.is_some() || oidc.is_some() || shares.is_some()).then_some(
                Auth {
                    tokens,
                    jwt,
                    oidc,
                    shares,
                    verified: Default::default(),
                },
            ),
        )
    }
}

/// The claim naming a JWT's AE titles.
fn ae_claim(s: &AuthSettings) -> &str {
    if s.jwt_ae_claim.is_empty() {
        "aets"
    } else {
        &s.jwt_ae_claim
    }
}

/// The longest a JWT may live (`None`: any).
fn max_lifetime(s: &AuthSettings) -> Option<u64> {
    match s.jwt_max_lifetime {
        None => Some(jwt::DEFAULT_MAX_LIFETIME),
        Some(0) => None,
        Some(n) => Some(n),
    }
}

/// What a request does with the AE title it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Retrieve and search.
    Read,
    /// Store (STOW-RS) and correct.
    Write,
    /// Delete.
    Delete,
}

/// The outcome of checking a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The request may proceed, within this reach.
    Allowed(Reach),
    /// No usable credentials (401): `invalid` is true when a token was given but is unknown.
    Unauthenticated {
        /// A token was presented but is not valid.
        invalid: bool,
        /// Why, for the client.
        reason: &'static str,
    },
    /// Valid credentials, but not for this AE title, or not to do this there (403).
    Forbidden,
    /// Not decidable now: the identity provider's keys could not be fetched (503, retry).
    Unavailable {
        /// Why, for the client.
        reason: &'static str,
    },
}

/// The access rule: static tokens, JWTs, or both.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Static tokens.
    pub tokens: Option<TokenAuth>,
    /// JWT verification with configured keys.
    pub jwt: Option<jwt::JwtAuth>,
    /// JWT verification with an OpenID Connect issuer's keys.
    pub oidc: Option<std::sync::Arc<oidc::Oidc>>,
    /// Share links' keys.
    pub shares: Option<share::ShareKeys>,
    /// Credentials verified lately.
    pub verified: std::sync::Arc<Verified>,
}

/// Credentials verified lately, by the SHA-256 of the token: a viewer sends the same token
/// with each of hundreds of requests, and an ES256 or RS256 verification costs ~0.5 ms here
/// (pure Rust), against a hash and a lookup. A grant is reused until its credentials expire
/// and only under the key set it was verified with (an issuer's rotation drops them all).
#[derive(Default)]
pub struct Verified {
    map: std::sync::Mutex<std::collections::HashMap<[u8; 32], (Grant, u64)>>,
}

/// The most verifications remembered; past it, all are forgotten at once.
const MAX_VERIFIED: usize = 4096;

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.map.lock().map_or(0, |m| m.len());
        write!(f, "Verified({n})")
    }
}

impl Verified {
    fn get(&self, key: &[u8; 32], now: u64, generation: u64) -> Option<Grant> {
        let map = self.map.lock().ok()?;
        map.get(key)
            .filter(|(g, gen)| now < g.expires && *gen == generation)
            .map(|(g, _)| g.clone())
    }

    fn put(&self, key: [u8; 32], grant: &Grant, generation: u64) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= MAX_VERIFIED {
                map.clear();
            }
            map.insert(key, (grant.clone(), generation));
        }
    }
}

impl Auth {
    /// Decides on a request to `access` `ae_title` with this Authorization header value, at
    /// `now` (seconds since the Unix epoch; the frontend's clock).
    pub async fn check(
        &self,
        authorization: Option<&str>,
        ae_title: &str,
        access: Access,
        now: u64,
    ) -> Decision {
        self.judge(authorization, ae_title, access, now).await.0
    }

    /// [`Auth::check`], and who the credentials name when they are valid (for the audit
    /// trail).
    pub async fn judge(
        &self,
        authorization: Option<&str>,
        ae_title: &str,
        access: Access,
        now: u64,
    ) -> (Decision, Option<String>) {
        match self.identify(authorization, now).await {
            Ok(grant) => (decide(&grant, ae_title, access), Some(grant.subject)),
            Err(refused) => (refused, None),
        }
    }

    /// Decides on a request for something that belongs to no AE title (the server's metrics,
    /// its index page): any valid token may, unless it is confined to some studies.
    pub async fn check_any(&self, authorization: Option<&str>, now: u64) -> Decision {
        match self.identify(authorization, now).await {
            Ok(Grant {
                reach: Reach::All, ..
            }) => Decision::Allowed(Reach::All),
            Ok(_) => Decision::Forbidden,
            Err(refused) => refused,
        }
    }

    /// The rights of the credentials in this Authorization header value, or why there are
    /// none; remembered while they are good ([`Verified`]).
    async fn identify(&self, authorization: Option<&str>, now: u64) -> Result<Grant, Decision> {
        let Some(token) = authorization.and_then(bearer) else {
            return Err(Decision::Unauthenticated {
                invalid: false,
                reason: "a bearer token is required",
            });
        };
        let key = digest(token);
        let generation = self.oidc.as_ref().map_or(0, |o| o.generation());
        if let Some(grant) = self.verified.get(&key, now, generation) {
            return Ok(grant);
        }
        let grant = self.verify(token, now).await?;
        // Remembered under the key set seen before verifying: had a fetch installed another
        // meanwhile, the entry is never found and the token is verified again.
        self.verified.put(key, &grant, generation);
        Ok(grant)
    }

    /// [`Auth::identify`] without remembering.
    async fn verify(&self, token: &str, now: u64) -> Result<Grant, Decision> {
        let invalid = |r: jwt::Rejection| Decision::Unauthenticated {
            invalid: true,
            reason: r.describe(),
        };
        if token.starts_with(share::PREFIX) {
            return match &self.shares {
                Some(keys) => keys
                    .verify(token, now)
                    .map(|s| s.grant())
                    .map_err(|reason| Decision::Unauthenticated {
                        invalid: true,
                        reason,
                    }),
                None => Err(Decision::Unauthenticated {
                    invalid: true,
                    reason: "this server takes no share links",
                }),
            };
        }
        let is_jwt = jwt::looks_like_jwt(token);
        if let (Some(oidc), true) = (&self.oidc, is_jwt) {
            // The issuer's keys first; configured keys (if any) for tokens they do not verify.
            match (oidc.verify(token, now).await, &self.jwt) {
                (Ok(grant), _) => return Ok(grant),
                (Err(r @ jwt::Rejection::NoKeys), None) => {
                    return Err(Decision::Unavailable {
                        reason: r.describe(),
                    })
                }
                (Err(r), None) => return Err(invalid(r)),
                (Err(_), Some(_)) => {}
            }
        }
        match (&self.jwt, &self.tokens) {
            (Some(jwt), _) if is_jwt => jwt.verify(token, now).map_err(invalid),
            (_, Some(tokens)) => tokens.grant_of(token),
            (_, None) => Err(Decision::Unauthenticated {
                invalid: true,
                reason: "the bearer token is not valid",
            }),
        }
    }
}

/// Whether `grant` lets a request `access` `ae_title`.
fn decide(grant: &Grant, ae_title: &str, access: Access) -> Decision {
    let p = grant.permissions;
    let may = match access {
        Access::Read => p.read,
        Access::Write => p.write,
        Access::Delete => p.delete,
    };
    if may && grant.ae_titles.iter().any(|a| a == "*" || a == ae_title) {
        Decision::Allowed(grant.reach.clone())
    } else {
        Decision::Forbidden
    }
}

/// Static bearer tokens, the AE titles each may read, and whether it may write there.
#[derive(Debug, Clone, Default)]
pub struct TokenAuth {
    entries: Vec<([u8; 32], Vec<String>, Permissions)>,
}

impl TokenAuth {
    /// Parses a tokens file. Errors name the line.
    pub fn parse(text: &str) -> Result<TokenAuth, String> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(token), Some(aes), access, None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(format!(
                    "line {}: expected `TOKEN AE[,AE...] [write][,delete]` or `TOKEN * [write][,delete]`",
                    n + 1
                ));
            };
            let mut permissions = Permissions::parse(access.unwrap_or(""))
                .map_err(|e| format!("line {}: {e}", n + 1))?;
            permissions.read = true;
            if token.len() < 16 {
                return Err(format!(
                    "line {}: tokens must be at least 16 characters",
                    n + 1
                ));
            }
            let aes: Vec<String> = aes
                .split(',')
                .map(str::to_owned)
                .filter(|a| !a.is_empty())
                .collect();
            entries.push((digest(token), aes, permissions));
        }
        Ok(TokenAuth { entries })
    }

    /// Decides on a request to `access` `ae_title` with this Authorization header value.
    pub fn check(&self, authorization: Option<&str>, ae_title: &str, access: Access) -> Decision {
        match authorization.and_then(bearer) {
            Some(token) => match self.grant_of(token) {
                Ok(grant) => decide(&grant, ae_title, access),
                Err(refused) => refused,
            },
            None => Decision::Unauthenticated {
                invalid: false,
                reason: "a bearer token is required",
            },
        }
    }

    fn grant_of(&self, token: &str) -> Result<Grant, Decision> {
        let d = digest(token);
        // Every entry is compared, whatever matches, so the time taken says nothing.
        let mut found: Option<(&Vec<String>, Permissions)> = None;
        for (h, aes, permissions) in &self.entries {
            if constant_time_eq(h, &d) {
                found = Some((aes, *permissions));
            }
        }
        match found {
            None => Err(Decision::Unauthenticated {
                invalid: true,
                reason: "the bearer token is not valid",
            }),
            Some((aes, permissions)) => Ok(Grant {
                subject: format!("token:{}", hex::encode(&d[..4])),
                ae_titles: aes.clone(),
                permissions,
                reach: Reach::All,
                expires: u64::MAX,
            }),
        }
    }
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# comment\n\naaaaaaaaaaaaaaaa1 DCM4CHEE\nbbbbbbbbbbbbbbbb2 *  # all\ncccccccccccccccc3 OTHER,THIRD write\ndddddddddddddddd4 DCM4CHEE read\n";

    #[test]
    fn decisions_table() {
        let auth = TokenAuth::parse(FILE).expect("parse");
        let cases: &[(Option<&str>, &str, Decision)] = &[
            (
                None,
                "DCM4CHEE",
                Decision::Unauthenticated {
                    invalid: false,
                    reason: "a bearer token is required",
                },
            ),
            (
                Some("Basic dXNlcjpwYXNz"),
                "DCM4CHEE",
                Decision::Unauthenticated {
                    invalid: false,
                    reason: "a bearer token is required",
                },
            ),
            (
                Some("Bearer "),
                "DCM4CHEE",
                Decision::Unauthenticated {
                    invalid: false,
                    reason: "a bearer token is required",
                },
            ),
            (
                Some("Bearer nope-nope-nope-nope"),
                "DCM4CHEE",
                Decision::Unauthenticated {
                    invalid: true,
                    reason: "the bearer token is not valid",
                },
            ),
            (
                Some("Bearer aaaaaaaaaaaaaaaa1"),
                "DCM4CHEE",
                Decision::Allowed(Reach::All),
            ),
            (
                Some("bearer  aaaaaaaaaaaaaaaa1 "),
                "DCM4CHEE",
                Decision::Allowed(Reach::All),
            ),
            (
                Some("Bearer aaaaaaaaaaaaaaaa1"),
                "OTHER",
                Decision::Forbidden,
            ),
            (
                Some("Bearer bbbbbbbbbbbbbbbb2"),
                "ANYTHING",
                Decision::Allowed(Reach::All),
            ),
            (
                Some("Bearer cccccccccccccccc3"),
                "THIRD",
                Decision::Allowed(Reach::All),
            ),
            (
                Some("Bearer cccccccccccccccc3"),
                "DCM4CHEE",
                Decision::Forbidden,
            ),
        ];
        for (header, ae, want) in cases {
            assert_eq!(
                auth.check(*header, ae, Access::Read),
                *want,
                "{header:?} {ae}"
            );
        }
    }

    #[test]
    fn writing_takes_a_write_token_for_that_ae_title() {
        let auth = TokenAuth::parse(FILE).expect("parse");
        let cases = [
            ("aaaaaaaaaaaaaaaa1", "DCM4CHEE", Decision::Forbidden),
            ("bbbbbbbbbbbbbbbb2", "DCM4CHEE", Decision::Forbidden),
            ("cccccccccccccccc3", "THIRD", Decision::Allowed(Reach::All)),
            ("cccccccccccccccc3", "DCM4CHEE", Decision::Forbidden),
            ("dddddddddddddddd4", "DCM4CHEE", Decision::Forbidden),
        ];
        for (token, ae, want) in cases {
            let header = format!("Bearer {token}");
            assert_eq!(
                auth.check(Some(&header), ae, Access::Write),
                want,
                "{token} {ae}"
            );
        }
        assert_eq!(
            auth.check(Some("Bearer dddddddddddddddd4"), "DCM4CHEE", Access::Read),
            Decision::Allowed(Reach::All)
        );
    }

    #[test]
    fn deleting_takes_a_token_that_says_delete() {
        let auth = TokenAuth::parse(
            "writerwriterwriter1 A write\ndeleterdeleterdel2 A delete\nbothbothbothboth3 A write,delete\n",
        )
        .expect("parse");
        for (token, write, delete) in [
            ("writerwriterwriter1", true, false),
            ("deleterdeleterdel2", false, true),
            ("bothbothbothboth3", true, true),
        ] {
            let header = format!("Bearer {token}");
            let d =
                |access| auth.check(Some(&header), "A", access) == Decision::Allowed(Reach::All);
            assert!(d(Access::Read), "{token}");
            assert_eq!(d(Access::Write), write, "{token}");
            assert_eq!(d(Access::Delete), delete, "{token}");
        }
        assert!(TokenAuth::parse("aaaaaaaaaaaaaaaa1 A write,erase").is_err());
    }

    /// A verification is remembered until the credentials expire, and no longer.
    #[test]
    fn verified_tokens_are_remembered_until_they_expire() {
        use crate::auth::fixtures::{token, ISS, JWKS, NOW};
        let jwt = jwt::JwtAuth::new(JWKS, ISS, "wado", "aets")
            .expect("keys")
            .with_max_lifetime(None);
        let auth = Auth {
            jwt: Some(jwt),
            ..Default::default()
        };
        let header = format!("Bearer {}", token("rs256_ok"));
        let check = |a: &Auth, now| {
            futures::executor::block_on(a.check(Some(&header), "DCM4CHEE", Access::Read, now))
        };
        assert_eq!(check(&auth, NOW), Decision::Allowed(Reach::All));
        // The same verifications without the keys: the token is still known...
        let forgetful = Auth {
            jwt: None,
            ..auth.clone()
        };
        assert_eq!(check(&forgetful, NOW + 10), Decision::Allowed(Reach::All));
        // ...until it expires (exp 4,102,444,800 in the fixtures).
        assert!(matches!(
            check(&forgetful, 4_102_444_800),
            Decision::Unauthenticated { .. }
        ));
    }

    #[test]
    fn bad_files() {
        assert!(TokenAuth::parse("short DCM4CHEE").is_err());
        assert!(TokenAuth::parse("aaaaaaaaaaaaaaaa1").is_err());
        assert!(TokenAuth::parse("aaaaaaaaaaaaaaaa1 A B").is_err());
        assert!(TokenAuth::parse("aaaaaaaaaaaaaaaa1 A write extra").is_err());
        assert!(TokenAuth::parse("")
            .expect("empty is fine")
            .entries
            .is_empty());
    }
}
