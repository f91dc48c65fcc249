//! Access control with bearer tokens (RFC 6750), one rule for every route, so a viewer that
//! sends its token on QIDO but forgets it on frames (OHIF#1736) is told so on every route.
//! A token is either static (a tokens file, below) or a JWT ([`jwt`]); [`Auth`] takes
//! either or both: a token with three dot-separated parts is checked as a JWT.
//!
//! A tokens file has one token per line, followed by the AE titles it may read (comma
//! separated) or `*` for all, and optionally `write` when it may also store (STOW-RS) into
//! them; `#` starts a comment:
//!
//! ```text
//! # token                              AE titles   access
//! 3f1c2e0d9a7b4c6e8f0a1b2c3d4e5f60      DCM4CHEE
//! 0b9a8c7d6e5f4a3b2c1d0e9f8a7b6c5d      *           write
//! ```
//!
//! A JWT may write when its `scope` claim (space-separated, as OAuth 2.0 writes it, or an
//! array) holds `write` ([`jwt::WRITE_SCOPE`]); its audience already names this service.
//!
//! Tokens are kept as SHA-256 digests and compared in constant time.

use sha2::{Digest, Sha256};

#[cfg(test)]
pub(crate) mod fixtures;
pub mod jwt;
pub mod oidc;

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
}

impl Auth {
    /// The access rule of a frontend's settings: static tokens, JWTs, both, or `None` (access
    /// control off) when neither is set. The native server and the worker both build it here.
    pub fn from_settings(s: &AuthSettings) -> Result<Option<Auth>, String> {
        let tokens = match &s.tokens {
            Some((name, text)) => Some(TokenAuth::parse(text).map_err(|e| format!("{name}: {e}"))?),
            None => None,
        };
        let jwt = match &s.jwt_keys {
            Some((name, keys)) => Some(
                jwt::JwtAuth::new(keys, &s.jwt_issuer, &s.jwt_audience, ae_claim(s))
                    .map_err(|e| format!("{name}: {e}"))?
                    .with_max_lifetime(max_lifetime(s)),
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
                    .with_max_lifetime(max_lifetime(s));
                let o = oidc::Oidc::new(url, template, client.clone())
                    .map_err(|e| format!("{name}: {e}"))?;
                Some(std::sync::Arc::new(o))
            }
            (Some((name, _)), None) => {
                return Err(format!("{name}: this frontend has no HTTP client for it"))
            }
            (None, _) => None,
        };
        Ok(
            (tokens.is_some() || jwt.is_some() || oidc.is_some()).then_some(Auth {
                tokens,
                jwt,
                oidc,
            }),
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
    /// Store (STOW-RS); a token that may write may read too.
    Write,
}

/// The outcome of checking a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The request may proceed.
    Allowed,
    /// No usable credentials (401): `invalid` is true when a token was given but is unknown.
    Unauthenticated {
        /// A token was presented but is not valid.
        invalid: bool,
        /// Why, for the client.
        reason: &'static str,
    },
    /// Valid credentials, but not for this AE title, or not to write there (403).
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
        let Some(token) = authorization.and_then(bearer) else {
            return Decision::Unauthenticated {
                invalid: false,
                reason: "a bearer token is required",
            };
        };
        let is_jwt = jwt::looks_like_jwt(token);
        if let (Some(oidc), true) = (&self.oidc, is_jwt) {
            // The issuer's keys first; configured keys (if any) for tokens they do not verify.
            match (oidc.verify(token, now).await, &self.jwt) {
                (Ok(grant), _) => return grants(&grant.ae_titles, grant.write, ae_title, access),
                (Err(r @ jwt::Rejection::NoKeys), None) => {
                    return Decision::Unavailable {
                        reason: r.describe(),
                    }
                }
                (Err(r), None) => {
                    return Decision::Unauthenticated {
                        invalid: true,
                        reason: r.describe(),
                    }
                }
                (Err(_), Some(_)) => {}
            }
        }
        match (&self.jwt, &self.tokens) {
            (Some(jwt), _) if is_jwt => match jwt.verify(token, now) {
                Ok(grant) => grants(&grant.ae_titles, grant.write, ae_title, access),
                Err(r) => Decision::Unauthenticated {
                    invalid: true,
                    reason: r.describe(),
                },
            },
            (_, Some(tokens)) => tokens.check_token(token, ae_title, access),
            (_, None) => Decision::Unauthenticated {
                invalid: true,
                reason: "the bearer token is not valid",
            },
        }
    }
}

impl Auth {
    /// Decides on a request for something that belongs to no AE title (the server's metrics,
    /// its index page): any valid token may.
    pub async fn check_any(&self, authorization: Option<&str>, now: u64) -> Decision {
        match self.check(authorization, "*", Access::Read, now).await {
            Decision::Forbidden => Decision::Allowed,
            other => other,
        }
    }
}

fn grants(aes: &[String], write: bool, ae_title: &str, access: Access) -> Decision {
    let may = access == Access::Read || write;
    if may && aes.iter().any(|a| a == "*" || a == ae_title) {
        Decision::Allowed
    } else {
        Decision::Forbidden
    }
}

/// Static bearer tokens, the AE titles each may read, and whether it may write there.
#[derive(Debug, Clone, Default)]
pub struct TokenAuth {
    entries: Vec<([u8; 32], Vec<String>, bool)>,
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
                    "line {}: expected `TOKEN AE[,AE...] [write]` or `TOKEN * [write]`",
                    n + 1
                ));
            };
            let write = match access {
                None | Some("read") => false,
                Some("write") => true,
                Some(other) => {
                    return Err(format!(
                        "line {}: the access is `read` or `write`, not {other:?}",
                        n + 1
                    ))
                }
            };
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
            entries.push((digest(token), aes, write));
        }
        Ok(TokenAuth { entries })
    }

    /// Decides on a request to `access` `ae_title` with this Authorization header value.
    pub fn check(&self, authorization: Option<&str>, ae_title: &str, access: Access) -> Decision {
        match authorization.and_then(bearer) {
            Some(token) => self.check_token(token, ae_title, access),
            None => Decision::Unauthenticated {
                invalid: false,
                reason: "a bearer token is required",
            },
        }
    }

    fn check_token(&self, token: &str, ae_title: &str, access: Access) -> Decision {
        let d = digest(token);
        // Every entry is compared, whatever matches, so the time taken says nothing.
        let mut found: Option<(&Vec<String>, bool)> = None;
        for (h, aes, write) in &self.entries {
            if constant_time_eq(h, &d) {
                found = Some((aes, *write));
            }
        }
        match found {
            None => Decision::Unauthenticated {
                invalid: true,
                reason: "the bearer token is not valid",
            },
            Some((aes, write)) => grants(aes, write, ae_title, access),
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
                Decision::Allowed,
            ),
            (
                Some("bearer  aaaaaaaaaaaaaaaa1 "),
                "DCM4CHEE",
                Decision::Allowed,
            ),
            (
                Some("Bearer aaaaaaaaaaaaaaaa1"),
                "OTHER",
                Decision::Forbidden,
            ),
            (
                Some("Bearer bbbbbbbbbbbbbbbb2"),
                "ANYTHING",
                Decision::Allowed,
            ),
            (Some("Bearer cccccccccccccccc3"), "THIRD", Decision::Allowed),
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
            ("cccccccccccccccc3", "THIRD", Decision::Allowed),
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
            Decision::Allowed
        );
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
