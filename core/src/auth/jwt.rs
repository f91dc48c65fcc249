//! JSON Web Tokens (RFC 7519) signed with RS256 or ES256 (RFC 7518 §3.3, §3.4), checked
//! against configured public keys: PEM (`PUBLIC KEY` SPKI for RSA or P-256, `RSA PUBLIC KEY`
//! PKCS#1) or a JWK Set (RFC 7517 §5). Pure Rust (RustCrypto), so the edge worker and the
//! native server verify with the same code; the frontend supplies the time (the core has no
//! clock).
//!
//! What is checked, in order: the compact serialisation (three base64url parts, no padding);
//! the header (`alg` RS256 or ES256 only, so `none` and HMAC-with-a-public-key confusion are
//! impossible; no `crit`); the signature with the key named by `kid`, or with every key of the
//! algorithm's type when there is no `kid`; then the claims: `exp` required and in the future,
//! `nbf` (when present) in the past, both with [`LEEWAY`]; `iss` equal to the configured
//! issuer; `aud` (a string or an array) containing the configured audience. The AE titles a
//! token may read are in a configurable claim (default `aets`): an array of strings or one
//! space- or comma-separated string; `*` means all.

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use serde_json::Value;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY: u64 = 60;

/// Longest token accepted, in bytes (headers are bounded anyway; this bounds the work).
const MAX_TOKEN: usize = 16 * 1024;

/// Why a token was refused; the text goes into `error_description` (RFC 6750 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a compact JWS, or a part is not base64url JSON.
    Malformed,
    /// An algorithm other than RS256 and ES256, or a critical header extension.
    Algorithm,
    /// No configured key verifies the signature.
    Signature,
    /// The token names (`kid`) a key that is not among the configured ones: with keys from an
    /// issuer ([`super::oidc`]), a sign that they rotated.
    UnknownKey,
    /// No key to verify with: an issuer's keys could not be fetched yet ([`super::oidc`]).
    NoKeys,
    /// `exp` is missing or past.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iss` is not the configured issuer.
    Issuer,
    /// `aud` does not contain the configured audience.
    Audience,
    /// The token lives longer than the configured maximum (`exp` too far from now or from
    /// `iat`): a stolen long-lived token would stay good for that long.
    Lifetime,
    /// The `studies` claim is not a list of at most [`super::grant::MAX_STUDIES`] UIDs.
    Studies,
}

impl Rejection {
    /// A short description for the client.
    pub fn describe(self) -> &'static str {
        match self {
            Rejection::Malformed => "the token is not a well-formed JWT",
            Rejection::Algorithm => "the token's algorithm is not accepted (RS256 or ES256)",
            Rejection::Signature => "the token's signature does not verify",
            Rejection::UnknownKey => "the token's key (kid) is not among the issuer's keys",
            Rejection::NoKeys => {
                "the identity provider's keys could not be fetched yet; retry shortly"
            }
            Rejection::Expired => "the token has expired (or has no exp claim)",
            Rejection::NotYetValid => "the token is not valid yet (nbf)",
            Rejection::Issuer => "the token's issuer is not accepted",
            Rejection::Audience => "the token is not meant for this audience",
            Rejection::Lifetime => {
                "the token lives longer than this server accepts (exp too far from iat or now)"
            }
            Rejection::Studies => {
                "the token's studies claim is not a list of at most 64 Study Instance UIDs"
            }
        }
    }
}

#[derive(Clone)]
enum KeyMaterial {
    Rsa(rsa::pkcs1v15::VerifyingKey<sha2::Sha256>),
    P256(p256::ecdsa::VerifyingKey),
}

#[derive(Clone)]
struct Key {
    kid: Option<String>,
    /// The JWK's `alg`, when it names one: tokens of another algorithm are not verified
    /// with this key (RFC 7517 §4.4).
    alg: Option<String>,
    material: KeyMaterial,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.material {
            KeyMaterial::Rsa(_) => "RSA",
            KeyMaterial::P256(_) => "P-256",
        };
        write!(f, "Key({kind}, kid={:?})", self.kid)
    }
}

/// The JWT verifier: keys, the expected issuer and audience, the claim naming AE titles and
/// the roles mapped to permissions.
#[derive(Debug, Clone)]
pub struct JwtAuth {
    keys: Vec<Key>,
    issuer: String,
    audience: String,
    ae_claim: String,
    roles: Option<std::sync::Arc<RoleMap>>,
    /// The longest a token may live, in seconds (`exp` − `iat`, and `exp` − now).
    max_lifetime: Option<u64>,
}

/// The longest a token may live by default: a day.
pub const DEFAULT_MAX_LIFETIME: u64 = 24 * 3600;

pub use super::grant::{Grant, RoleMap, WRITE_SCOPE};

impl JwtAuth {
    /// A verifier over the keys in `keys_text` (PEM blocks or a JWK Set), accepting tokens
    /// from `issuer` for `audience`, AE titles in the claim `ae_claim`.
    pub fn new(
        keys_text: &str,
        issuer: &str,
        audience: &str,
        ae_claim: &str,
    ) -> Result<JwtAuth, String> {
        let keys = if keys_text.trim_start().starts_with('{') {
            parse_jwks(keys_text)?
        } else {
            parse_pem(keys_text)?
        };
        if keys.is_empty() {
            return Err("no RS256 or ES256 public key found".into());
        }
        if issuer.is_empty() || audience.is_empty() {
            return Err("a JWT issuer and audience are required".into());
        }
        Ok(JwtAuth {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ae_claim: ae_claim.to_owned(),
            roles: None,
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
        })
    }

    /// A verifier's settings without keys yet (an OpenID Connect issuer's come later, see
    /// [`JwtAuth::with_keys`]): it verifies no token.
    pub fn template(issuer: &str, audience: &str, ae_claim: &str) -> JwtAuth {
        JwtAuth {
            keys: Vec::new(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ae_claim: ae_claim.to_owned(),
            roles: None,
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
        }
    }

    /// The same verifier over other keys (an issuer's rotated JWK Set).
    pub fn with_keys(&self, keys_text: &str) -> Result<JwtAuth, String> {
        JwtAuth::new(keys_text, &self.issuer, &self.audience, &self.ae_claim).map(|j| JwtAuth {
            roles: self.roles.clone(),
            max_lifetime: self.max_lifetime,
            ..j
        })
    }

    /// Takes permissions from these roles rather than from the `scope` claim.
    pub fn with_roles(mut self, roles: Option<RoleMap>) -> JwtAuth {
        self.roles = roles.map(std::sync::Arc::new);
        self
    }

    /// Refuses tokens that live longer than `seconds` (`None`: any lifetime).
    pub fn with_max_lifetime(mut self, seconds: Option<u64>) -> JwtAuth {
        self.max_lifetime = seconds;
        self
    }

    /// How many keys were loaded.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Verifies `token` at `now` (seconds since the Unix epoch).
    pub fn verify(&self, token: &str, now: u64) -> Result<Grant, Rejection> {
        if token.len() > MAX_TOKEN {
            return Err(Rejection::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::Malformed);
        };
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header: Value = b64
            .decode(h64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(Rejection::Malformed)?;
        let signature = b64.decode(s64).map_err(|_| Rejection::Malformed)?;
        if header.get("crit").is_some() {
            // RFC 7515 §4.1.11: extensions we do not understand must be refused.
            return Err(Rejection::Algorithm);
        }
        let alg = header.get("alg").and_then(Value::as_str);
        let kid = header.get("kid").and_then(Value::as_str);
        let signed = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        let verified = match alg {
            Some("RS256") => {
                let sig = rsa::pkcs1v15::Signature::try_from(signature.as_slice())
                    .map_err(|_| Rejection::Signature)?;
                self.candidates(kid, "RS256").any(|k| match &k.material {
                    KeyMaterial::Rsa(vk) => vk.verify(signed, &sig).is_ok(),
                    KeyMaterial::P256(_) => false,
                })
            }
            Some("ES256") => {
                // JWS ES256 signatures are R || S, 32 bytes each (RFC 7518 §3.4), not DER.
                if signature.len() != 64 {
                    return Err(Rejection::Signature);
                }
                let sig = p256::ecdsa::Signature::from_slice(&signature)
                    .map_err(|_| Rejection::Signature)?;
                self.candidates(kid, "ES256").any(|k| match &k.material {
                    KeyMaterial::P256(vk) => vk.verify(signed, &sig).is_ok(),
                    KeyMaterial::Rsa(_) => false,
                })
            }
            _ => return Err(Rejection::Algorithm),
        };
        if !verified {
            let known = |k: &Key| k.kid.is_none() || k.kid.as_deref() == kid;
            return Err(if kid.is_some() && !self.keys.iter().any(known) {
                Rejection::UnknownKey
            } else {
                Rejection::Signature
            });
        }
        let claims: Value = b64
            .decode(p64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(Rejection::Malformed)?;
        let time = |name: &str| claims.get(name).and_then(Value::as_f64);
        match time("exp") {
            Some(exp) if (now as f64) < exp + LEEWAY as f64 => {}
            _ => return Err(Rejection::Expired),
        }
        if let Some(nbf) = time("nbf") {
            if (now.saturating_add(LEEWAY) as f64) < nbf {
                return Err(Rejection::NotYetValid);
            }
        }
        if let (Some(max), Some(exp)) = (self.max_lifetime, time("exp")) {
            let max = (max + LEEWAY) as f64;
            let from_iat = time("iat").is_some_and(|iat| exp - iat > max);
            if exp - now as f64 > max || from_iat {
                return Err(Rejection::Lifetime);
            }
        }
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(Rejection::Issuer);
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == self.audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&self.audience)),
            _ => false,
        };
        if !audience_ok {
            return Err(Rejection::Audience);
        }
        super::grant::of_claims(&claims, &self.ae_claim, self.roles.as_deref())
            .map_err(|_| Rejection::Studies)
    }

    fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: &'a str,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys.iter().filter(move |k| {
            (kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
                && k.alg.as_deref().is_none_or(|a| a == alg)
        })
    }
}

/// Whether a bearer token looks like a compact JWS (three dot-separated parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

/// Smallest RSA modulus accepted (NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;

fn rsa_key(key: rsa::RsaPublicKey) -> Result<KeyMaterial, String> {
    use rsa::traits::PublicKeyParts;
    if key.n().bits() < MIN_RSA_BITS {
        return Err(format!(
            "RSA key of {} bits; at least {MIN_RSA_BITS} are required",
            key.n().bits()
        ));
    }
    Ok(KeyMaterial::Rsa(rsa::pkcs1v15::VerifyingKey::new(key)))
}

fn parse_pem(text: &str) -> Result<Vec<Key>, String> {
    use p256::pkcs8::DecodePublicKey as _;
    use rsa::pkcs1::DecodeRsaPublicKey as _;
    let mut keys = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let label_end = block[11..]
            .find("-----")
            .ok_or("PEM: unterminated BEGIN line")?;
        let label = &block[11..11 + label_end];
        let end_marker = format!("-----END {label}-----");
        let end = block
            .find(&end_marker)
            .ok_or_else(|| format!("PEM: no END line for {label}"))?;
        let pem = &block[..end + end_marker.len()];
        let n = keys.len() + 1;
        let material = match label {
            "PUBLIC KEY" => {
                if let Ok(k) = rsa::RsaPublicKey::from_public_key_pem(pem) {
                    rsa_key(k)?
                } else if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(pem) {
                    KeyMaterial::P256(k)
                } else {
                    return Err(format!(
                        "PEM key {n}: neither an RSA nor a P-256 public key"
                    ));
                }
            }
            "RSA PUBLIC KEY" => rsa_key(
                rsa::RsaPublicKey::from_pkcs1_pem(pem).map_err(|e| format!("PEM key {n}: {e}"))?,
            )?,
            other => {
                return Err(format!(
                "PEM block {other:?}: expected PUBLIC KEY or RSA PUBLIC KEY (never a private key)"
            ))
            }
        };
        keys.push(Key {
            kid: None,
            alg: None,
            material,
        });
        rest = &block[end + end_marker.len()..];
    }
    Ok(keys)
}

fn parse_jwks(text: &str) -> Result<Vec<Key>, String> {
    let set: Value = serde_json::from_str(text).map_err(|e| format!("JWK Set: {e}"))?;
    let list = set
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("JWK Set: no \"keys\" array")?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let field = |k: &Value, name: &str| -> Result<Vec<u8>, String> {
        let s = k
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("JWK: missing {name:?}"))?;
        b64.decode(s.trim_end_matches('='))
            .map_err(|e| format!("JWK {name:?}: {e}"))
    };
    let mut keys = Vec::new();
    for k in list {
        if k.get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        if k.get("d").is_some() {
            return Err("JWK Set holds a private key; give public keys only".into());
        }
        let kid = k.get("kid").and_then(Value::as_str).map(str::to_owned);
        let alg = k.get("alg").and_then(Value::as_str).map(str::to_owned);
        let material = match (
            k.get("kty").and_then(Value::as_str),
            k.get("crv").and_then(Value::as_str),
        ) {
            (Some("RSA"), _) => {
                let n = rsa::BigUint::from_bytes_be(&field(k, "n")?);
                let e = rsa::BigUint::from_bytes_be(&field(k, "e")?);
                rsa_key(rsa::RsaPublicKey::new(n, e).map_err(|e| format!("JWK RSA: {e}"))?)?
            }
            (Some("EC"), Some("P-256")) => {
                let (x, y) = (field(k, "x")?, field(k, "y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err("JWK P-256: x and y must be 32 bytes".into());
                }
                let point = p256::EncodedPoint::from_affine_coordinates(
                    p256::FieldBytes::from_slice(&x),
                    p256::FieldBytes::from_slice(&y),
                    false,
                );
                KeyMaterial::P256(
                    p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                        .map_err(|_| "JWK P-256: not a point on the curve")?,
                )
            }
            // Other key types (symmetric, other curves) are not for us; skip them.
            _ => continue,
        };
        keys.push(Key { kid, alg, material });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::fixtures::*;

    fn aes(list: &[&str]) -> Result<Grant, Rejection> {
        Ok(Grant {
            subject: "jwt (no sub)".into(),
            ae_titles: list.iter().map(|s| s.to_string()).collect(),
            permissions: crate::auth::grant::Permissions::READ,
            reach: crate::auth::grant::Reach::All,
            expires: 4_102_444_800,
        })
    }

    #[test]
    fn verdicts_with_pem_and_jwks_keys() {
        let cases: &[(&str, Result<Grant, Rejection>)] = &[
            ("rs256_ok", aes(&["DCM4CHEE"])),
            ("rs256_no_kid", aes(&["DCM4CHEE"])),
            ("es256_ok", aes(&["*"])),
            ("es256_string_aets", aes(&["OTHER", "DCM4CHEE"])),
            ("rs256_other_ae", aes(&["OTHER"])),
            ("rs256_no_aets", aes(&[])),
            ("es256_der_signature", Err(Rejection::Signature)),
            ("rs256_expired", Err(Rejection::Expired)),
            ("rs256_no_exp", Err(Rejection::Expired)),
            ("rs256_not_yet", Err(Rejection::NotYetValid)),
            ("rs256_wrong_iss", Err(Rejection::Issuer)),
            ("rs256_wrong_aud", Err(Rejection::Audience)),
            ("rs256_stranger", Err(Rejection::Signature)),
            ("rs256_tampered", Err(Rejection::Signature)),
            ("rs256_crit", Err(Rejection::Algorithm)),
            ("hs256_with_public_key", Err(Rejection::Algorithm)),
            ("none", Err(Rejection::Algorithm)),
        ];
        for keys in [KEYS_PEM, JWKS] {
            let v = JwtAuth::new(keys, ISS, "wado", "aets")
                .expect("keys")
                .with_max_lifetime(None);
            assert_eq!(v.key_count(), 2);
            for (name, want) in cases {
                assert_eq!(v.verify(token(name), NOW), *want, "{name}");
            }
        }
    }

    #[test]
    fn pkcs1_rsa_key_verifies_but_not_ec_tokens() {
        let v = JwtAuth::new(RSA_PKCS1, ISS, "wado", "aets")
            .expect("pkcs1")
            .with_max_lifetime(None);
        assert_eq!(v.verify(token("rs256_ok"), NOW), aes(&["DCM4CHEE"]));
        assert_eq!(v.verify(token("es256_ok"), NOW), Err(Rejection::Signature));
    }

    #[test]
    fn time_edges_use_the_leeway() {
        let v = JwtAuth::new(JWKS, ISS, "wado", "aets")
            .expect("keys")
            .with_max_lifetime(None);
        let exp = 1_600_000_000;
        let t = token("rs256_expired");
        assert!(v.verify(t, exp + LEEWAY - 1).is_ok(), "within the leeway");
        assert_eq!(v.verify(t, exp + LEEWAY), Err(Rejection::Expired));
        let nbf = 4_000_000_000;
        let t = token("rs256_not_yet");
        assert_eq!(v.verify(t, nbf - LEEWAY - 1), Err(Rejection::NotYetValid));
        assert!(v.verify(t, nbf - LEEWAY).is_ok());
        assert!(v.verify(t, u64::MAX).is_err(), "no overflow");
    }

    #[test]
    fn audience_and_issuer_are_configuration() {
        let v = JwtAuth::new(JWKS, ISS, "other", "aets")
            .expect("keys")
            .with_max_lifetime(None);
        assert!(v.verify(token("es256_ok"), NOW).is_ok(), "aud array");
        assert_eq!(v.verify(token("rs256_ok"), NOW), Err(Rejection::Audience));
        let v = JwtAuth::new(JWKS, "https://evil.example", "wado", "aets")
            .expect("keys")
            .with_max_lifetime(None);
        assert!(v.verify(token("rs256_wrong_iss"), NOW).is_ok());
        assert_eq!(v.verify(token("rs256_ok"), NOW), Err(Rejection::Issuer));
    }

    #[test]
    fn kid_selects_the_key() {
        // The RSA key under another kid: a token naming rsa1 finds no key.
        let renamed = JWKS.replace("\"rsa1\"", "\"rotated\"");
        let v = JwtAuth::new(&renamed, ISS, "wado", "aets")
            .expect("keys")
            .with_max_lifetime(None);
        assert_eq!(v.verify(token("rs256_ok"), NOW), Err(Rejection::UnknownKey));
        assert!(v.verify(token("rs256_no_kid"), NOW).is_ok());
    }

    #[test]
    fn bad_key_files_are_refused() {
        let cases: &[(&str, &str)] = &[
            ("", "no RS256"),
            ("not a key", "no RS256"),
            (WEAK, "2048"),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "private",
            ),
            ("-----BEGIN PUBLIC KEY-----\nAAAA\n", "END"),
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "neither",
            ),
            ("{\"keys\": 3}", "keys"),
            (
                "{\"keys\": [{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}]}",
                "32",
            ),
            (
                "{\"keys\": [{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\",\"d\":\"AQAB\"}]}",
                "private",
            ),
            ("{\"keys\": [{\"kty\":\"oct\",\"k\":\"AA\"}]}", "no RS256"),
        ];
        for (text, says) in cases {
            let err = JwtAuth::new(text, ISS, "wado", "aets").expect_err(text);
            assert!(err.contains(says), "{text:?}: {err}");
        }
        assert!(JwtAuth::new(JWKS, "", "wado", "aets").is_err());
        assert!(JwtAuth::new(JWKS, ISS, "", "aets").is_err());
    }

    #[test]
    fn garbage_tokens_are_malformed_never_a_panic() {
        let v = JwtAuth::new(JWKS, ISS, "wado", "aets")
            .expect("keys")
            .with_max_lifetime(None);
        let ok = token("rs256_ok");
        let mut cases: Vec<String> = [
            "",
            ".",
            "..",
            "...",
            "a.b.c",
            "a.b",
            "é.é.é",
            "e30.e30.",
            "e30.e30.AA",
            "eyJhbGciOiJSUzI1NiJ9.e30.!!!",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cases.push("a".repeat(MAX_TOKEN + 1));
        for i in 0..ok.len() {
            cases.push(ok[..i].to_owned());
        }
        for c in &cases {
            assert!(v.verify(c, NOW).is_err(), "{c:?}");
        }
    }

    /// A token that lives longer than the maximum is refused, whatever its signature; the
    /// same token passes when no maximum is set.
    #[test]
    fn a_token_living_too_long_is_refused() {
        let v = JwtAuth::new(JWKS, ISS, "wado", "aets").expect("keys");
        // iat 1,700,000,000, exp 4,102,444,800: decades, far past the default day.
        assert_eq!(v.verify(token("rs256_ok"), NOW), Err(Rejection::Lifetime));
        let v = v.with_max_lifetime(Some(3_000_000_000));
        assert!(v.verify(token("rs256_ok"), NOW).is_ok());
        // Measured from now as well as from iat.
        let v = v.with_max_lifetime(Some(2_450_000_000));
        assert!(v.verify(token("rs256_ok"), NOW).is_ok());
        assert_eq!(
            v.verify(token("rs256_ok"), 1_000_000_000),
            Err(Rejection::Lifetime)
        );
    }

    /// A JWK that names another algorithm does not verify RS256 or ES256 tokens.
    #[test]
    fn a_jwk_verifies_tokens_of_its_own_alg_only() {
        let ps = JWKS.replace("\"RS256\"", "\"PS256\"");
        assert_ne!(ps, JWKS);
        let v = JwtAuth::new(&ps, ISS, "wado", "aets")
            .expect("keys")
            .with_max_lifetime(None);
        assert_eq!(v.verify(token("rs256_ok"), NOW), Err(Rejection::Signature));
        assert!(
            v.verify(token("es256_ok"), NOW).is_ok(),
            "the EC key names none"
        );
    }
}
