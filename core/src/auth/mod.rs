//! Access control with bearer tokens (RFC 6750), one rule for every route, so a viewer that
//! sends its token on QIDO but forgets it on frames (OHIF#1736) is told so on every route.
//! A token is either static (a tokens file, below) or a JWT ([`jwt`]); [`Auth`] takes
//! either or both: a token with three dot-separated parts is checked as a JWT.
//!
//! A tokens file has one token per line, followed by the AE titles it may read (comma
//! separated) or `*` for all; `#` starts a comment:
//!
//! ```text
//! # token                              AE titles
//! 3f1c2e0d9a7b4c6e8f0a1b2c3d4e5f60      DCM4CHEE
//! 0b9a8c7d6e5f4a3b2c1d0e9f8a7b6c5d      *
//! ```
//!
//! Tokens are kept as SHA-256 digests and compared in constant time.

use sha2::{Digest, Sha256};

pub mod jwt;

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
            Some((name, keys)) => {
                let claim = if s.jwt_ae_claim.is_empty() {
                    "aets"
                } else {
                    &s.jwt_ae_claim
                };
                Some(
                    jwt::JwtAuth::new(keys, &s.jwt_issuer, &s.jwt_audience, claim)
                        .map_err(|e| format!("{name}: {e}"))?,
                )
            }
            None => None,
        };
        Ok((tokens.is_some() || jwt.is_some()).then_some(Auth { tokens, jwt }))
    }
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
    /// Valid credentials, but not for this AE title (403).
    Forbidden,
}

/// The access rule: static tokens, JWTs, or both.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Static tokens.
    pub tokens: Option<TokenAuth>,
    /// JWT verification.
    pub jwt: Option<jwt::JwtAuth>,
}

impl Auth {
    /// Decides on a request for `ae_title` with this Authorization header value, at `now`
    /// (seconds since the Unix epoch; the frontend's clock).
    pub fn check(&self, authorization: Option<&str>, ae_title: &str, now: u64) -> Decision {
        let Some(token) = authorization.and_then(bearer) else {
            return Decision::Unauthenticated {
                invalid: false,
                reason: "a bearer token is required",
            };
        };
        match (&self.jwt, &self.tokens) {
            (Some(jwt), _) if jwt::looks_like_jwt(token) => match jwt.verify(token, now) {
                Ok(grant) => grants(&grant.ae_titles, ae_title),
                Err(r) => Decision::Unauthenticated {
                    invalid: true,
                    reason: r.describe(),
                },
            },
            (_, Some(tokens)) => tokens.check_token(token, ae_title),
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
    pub fn check_any(&self, authorization: Option<&str>, now: u64) -> Decision {
        match self.check(authorization, "*", now) {
            Decision::Forbidden => Decision::Allowed,
            other => other,
        }
    }
}

fn grants(aes: &[String], ae_title: &str) -> Decision {
    if aes.iter().any(|a| a == "*" || a == ae_title) {
        Decision::Allowed
    } else {
        Decision::Forbidden
    }
}

/// Static bearer tokens and the AE titles each may read.
#[derive(Debug, Clone, Default)]
pub struct TokenAuth {
    entries: Vec<([u8; 32], Vec<String>)>,
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
            let (Some(token), Some(aes), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(format!(
                    "line {}: expected `TOKEN AE[,AE...]` or `TOKEN *`",
                    n + 1
                ));
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
            entries.push((digest(token), aes));
        }
        Ok(TokenAuth { entries })
    }

    /// Decides on a request for `ae_title` with this Authorization header value.
    pub fn check(&self, authorization: Option<&str>, ae_title: &str) -> Decision {
        match authorization.and_then(bearer) {
            Some(token) => self.check_token(token, ae_title),
            None => Decision::Unauthenticated {
                invalid: false,
                reason: "a bearer token is required",
            },
        }
    }

    fn check_token(&self, token: &str, ae_title: &str) -> Decision {
        let d = digest(token);
        // Every entry is compared, whatever matches, so the time taken says nothing.
        let mut found: Option<&Vec<String>> = None;
        for (h, aes) in &self.entries {
            if constant_time_eq(h, &d) {
                found = Some(aes);
            }
        }
        match found {
            None => Decision::Unauthenticated {
                invalid: true,
                reason: "the bearer token is not valid",
            },
            Some(aes) => grants(aes, ae_title),
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

    const FILE: &str = "# comment\n\naaaaaaaaaaaaaaaa1 DCM4CHEE\nbbbbbbbbbbbbbbbb2 *  # all\ncccccccccccccccc3 OTHER,THIRD\n";

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
            assert_eq!(auth.check(*header, ae), *want, "{header:?} {ae}");
        }
    }

    #[test]
    fn bad_files() {
        assert!(TokenAuth::parse("short DCM4CHEE").is_err());
        assert!(TokenAuth::parse("aaaaaaaaaaaaaaaa1").is_err());
        assert!(TokenAuth::parse("aaaaaaaaaaaaaaaa1 A B").is_err());
        assert!(TokenAuth::parse("")
            .expect("empty is fine")
            .entries
            .is_empty());
    }
}
