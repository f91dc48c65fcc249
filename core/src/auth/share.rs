//! Share links: a signed, expiring capability to one study, verified with a key the server
//! holds and nothing else (no database round trip), so the worker verifies it as the native
//! server does.
//!
//! A share token is `ws1.` + base64url(JSON claims) + `.` + base64url(HMAC-SHA256 of everything
//! before the last dot, under the key the claims name). The claims:
//!
//! ```json
//! {"kid": "k1", "id": "3f9c…", "ae": "DCM4CHEE", "study": "1.2.3", "iat": 1700000000,
//!  "exp": 1700604800, "write": false}
//! ```
//!
//! Its holder may read that study (and store into it when `write`) in that AE title, nothing
//! else ([`super::Reach::Studies`]). Keys are lines `KID SECRET` (the secret base64, at least
//! [`MIN_SECRET`] bytes) in a share-keys file (`--share-keys`, worker secret `SHARE_KEYS`);
//! the first line's key signs new links. Revocation: remove a key (every link it signed stops
//! working), or list a link's id in the revoked list (`--share-revoked`, `SHARE_REVOKED`).

use super::grant::{Grant, Permissions, Reach};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;

/// What every share token starts with (a JWT never does: its header is base64url JSON).
pub const PREFIX: &str = "ws1.";
/// The fewest bytes of a share key's secret.
pub const MIN_SECRET: usize = 32;
/// The longest a link may live: 366 days.
pub const MAX_LIFETIME: u64 = 366 * 24 * 3600;

/// The keys that sign and verify share links, and the ids of links revoked.
#[derive(Clone, Default)]
pub struct ShareKeys {
    keys: Vec<(String, Vec<u8>)>,
    revoked: Vec<String>,
}

impl std::fmt::Debug for ShareKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        write!(f, "ShareKeys({kids:?}, {} revoked)", self.revoked.len())
    }
}

/// One link's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The link's id (for the revoked list).
    pub id: String,
    /// The AE title (partition) of the study.
    pub ae_title: String,
    /// The Study Instance UID.
    pub study: String,
    /// Made at (seconds since the Unix epoch).
    pub issued: u64,
    /// Good until (seconds since the Unix epoch).
    pub expires: u64,
    /// May store into the study too.
    pub write: bool,
}

type HmacSha256 = Hmac<sha2::Sha256>;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn mac(secret: &[u8]) -> HmacSha256 {
    <HmacSha256 as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

impl ShareKeys {
    /// Parses a share-keys file: `KID SECRET` per line (`#` starts a comment), the secret
    /// base64 (standard or URL-safe, padded or not) of at least [`MIN_SECRET`] bytes.
    pub fn parse(text: &str) -> Result<ShareKeys, String> {
        let mut keys: Vec<(String, Vec<u8>)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(kid), Some(secret), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(format!("line {}: expected `KID SECRET`", n + 1));
            };
            let cleaned: String = secret
                .trim_end_matches('=')
                .chars()
                .map(|c| match c {
                    '+' => '-',
                    '/' => '_',
                    c => c,
                })
                .collect();
            let secret = b64()
                .decode(cleaned)
                .map_err(|_| format!("line {}: the secret is not base64", n + 1))?;
            if secret.len() < MIN_SECRET {
                return Err(format!(
                    "line {}: the secret is {} bytes; at least {MIN_SECRET} (wado share-key makes one)",
                    n + 1,
                    secret.len()
                ));
            }
            if keys.iter().any(|(k, _)| k == kid) {
                return Err(format!("line {}: key {kid:?} is listed twice", n + 1));
            }
            keys.push((kid.to_owned(), secret));
        }
        if keys.is_empty() {
            return Err("no key (lines `KID SECRET`)".into());
        }
        Ok(ShareKeys {
            keys,
            revoked: Vec::new(),
        })
    }

    /// The same keys, with these link ids (separated by lines, spaces or commas; `#` starts
    /// a comment) revoked.
    pub fn with_revoked(mut self, text: &str) -> ShareKeys {
        self.revoked = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect();
        self
    }

    /// A new key line (`KID SECRET`) for a share-keys file, of 32 bytes from `random`.
    pub fn key_line(kid: &str, random: &[u8; 32]) -> String {
        format!("{kid} {}", b64().encode(random))
    }

    /// The token of `share`, signed with the first key.
    pub fn mint(&self, share: &Share) -> Result<String, String> {
        let Some((kid, secret)) = self.keys.first() else {
            return Err("no key to sign with".into());
        };
        if share.expires <= share.issued || share.expires - share.issued > MAX_LIFETIME {
            return Err(format!(
                "a link lives from a second to {} days",
                MAX_LIFETIME / 86400
            ));
        }
        let claims = serde_json::json!({
            "kid": kid, "id": share.id, "ae": share.ae_title, "study": share.study,
            "iat": share.issued, "exp": share.expires, "write": share.write,
        });
        let signed = format!("{PREFIX}{}", b64().encode(claims.to_string()));
        let mut m = mac(secret);
        m.update(signed.as_bytes());
        Ok(format!(
            "{signed}.{}",
            b64().encode(m.finalize().into_bytes())
        ))
    }

    /// Verifies a share token at `now`: the link's claims, or why it is refused (for the
    /// client).
    pub fn verify(&self, token: &str, now: u64) -> Result<Share, &'static str> {
        const MALFORMED: &str = "the share link's token is not well-formed";
        let rest = token.strip_prefix(PREFIX).ok_or(MALFORMED)?;
        if rest.len() > 4096 {
            return Err(MALFORMED);
        }
        let (payload, sig) = rest.split_once('.').ok_or(MALFORMED)?;
        let claims: Value = b64()
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(MALFORMED)?;
        let sig = b64().decode(sig).map_err(|_| MALFORMED)?;
        let text = |k: &str| claims.get(k).and_then(Value::as_str);
        let kid = text("kid").ok_or(MALFORMED)?;
        let Some((_, secret)) = self.keys.iter().find(|(k, _)| k == kid) else {
            return Err("the share link's key is not (or no longer) this server's");
        };
        let mut m = mac(secret);
        m.update(&token.as_bytes()[..PREFIX.len() + payload.len()]);
        m.verify_slice(&sig)
            .map_err(|_| "the share link's signature does not verify")?;
        let int = |k: &str| claims.get(k).and_then(Value::as_u64);
        let share = Share {
            id: text("id").ok_or(MALFORMED)?.to_owned(),
            ae_title: text("ae").ok_or(MALFORMED)?.to_owned(),
            study: text("study").ok_or(MALFORMED)?.to_owned(),
            issued: int("iat").ok_or(MALFORMED)?,
            expires: int("exp").ok_or(MALFORMED)?,
            write: claims
                .get("write")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        if now >= share.expires {
            return Err("the share link has expired");
        }
        if self.revoked.contains(&share.id) {
            return Err("the share link was revoked");
        }
        Ok(share)
    }
}

/// A link's lifetime in seconds from `30m`, `12h`, `7d` or a number of seconds; at most
/// [`MAX_LIFETIME`].
pub fn parse_lifetime(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    let n: u64 = digits.parse().unwrap_or(0);
    match n.checked_mul(scale) {
        Some(secs) if secs > 0 && secs <= MAX_LIFETIME => Ok(secs),
        _ => Err(format!(
            "{t:?}: a link's lifetime is like 30m, 12h or 7d (seconds without a unit), at most {} days",
            MAX_LIFETIME / 86_400
        )),
    }
}

/// The link that opens the study in a viewer at `viewer` (OHIF: its `/viewer` route takes the
/// study and a `token` it sends as the bearer token on every request).
pub fn viewer_link(viewer: &str, study: &str, token: &str) -> String {
    format!(
        "{}/viewer?StudyInstanceUIDs={study}&token={token}",
        viewer.trim_end_matches('/')
    )
}

impl Share {
    /// What the link's holder may do: read the one study (and store into it when `write`).
    pub fn grant(&self) -> Grant {
        Grant {
            subject: format!("share:{}", self.id),
            ae_titles: vec![self.ae_title.clone()],
            permissions: Permissions {
                read: true,
                write: self.write,
                delete: false,
            },
            reach: Reach::Studies(vec![self.study.clone()].into()),
            expires: self.expires,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two keys (standard base64, and URL-safe unpadded), as `openssl rand -base64 32` and
    /// Python's `secrets.token_urlsafe(32)` make them.
    const KEYS: &str = "# share keys\nk2 q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\nk1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n";

    fn share(expires: u64) -> Share {
        Share {
            id: "abc".into(),
            ae_title: "DCM4CHEE".into(),
            study: "1.2.3".into(),
            issued: 1000,
            expires,
            write: false,
        }
    }

    /// The token's signature, recomputed here by hand from RFC 2104's definition over the
    /// sha2 crate (not through the hmac crate the module uses).
    fn rfc2104(key: &[u8], msg: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        let mut k = [0u8; 64];
        k[..key.len()].copy_from_slice(key);
        let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
        let inner = sha2::Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(msg)
            .finalize();
        sha2::Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .to_vec()
    }

    #[test]
    fn a_link_verifies_until_it_expires_and_grants_its_study() {
        let keys = ShareKeys::parse(KEYS).expect("keys");
        let token = keys.mint(&share(2000)).expect("mint");
        assert!(token.starts_with(PREFIX));
        let (signed, sig) = token.rsplit_once('.').expect("two parts");
        let k2 = b64()
            .decode("q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA")
            .expect("b64");
        assert_eq!(
            b64().decode(sig).expect("b64"),
            rfc2104(&k2, signed.as_bytes())
        );
        assert_eq!(keys.verify(&token, 1999), Ok(share(2000)));
        assert_eq!(keys.verify(&token, 2000), Err("the share link has expired"));
        let g = share(2000).grant();
        assert!(g.reach.admits("1.2.3") && !g.reach.admits("1.2.4"));
        assert_eq!(g.ae_titles, ["DCM4CHEE"]);
        assert!(g.permissions.read && !g.permissions.write && !g.permissions.delete);
    }

    #[test]
    fn tampering_rotation_and_revocation_refuse_it() {
        let keys = ShareKeys::parse(KEYS).expect("keys");
        let token = keys.mint(&share(2000)).expect("mint");
        let (payload, sig) = token[PREFIX.len()..].split_once('.').expect("parts");
        // Another study in the same signature.
        let mut claims: Value =
            serde_json::from_slice(&b64().decode(payload).expect("b64")).expect("json");
        claims["study"] = "1.2.4".into();
        let forged = format!("{PREFIX}{}.{sig}", b64().encode(claims.to_string()));
        assert_eq!(
            keys.verify(&forged, 1500),
            Err("the share link's signature does not verify")
        );
        // Signed with k2; a server that keeps only k1 refuses it.
        let rotated = ShareKeys::parse(
            KEYS.lines()
                .filter(|l| !l.starts_with("k2"))
                .collect::<Vec<_>>()
                .join("\n")
                .as_str(),
        )
        .expect("keys");
        assert_eq!(
            rotated.verify(&token, 1500),
            Err("the share link's key is not (or no longer) this server's")
        );
        let revoked = ShareKeys::parse(KEYS)
            .expect("keys")
            .with_revoked("# gone\nxyz, abc\n");
        assert_eq!(
            revoked.verify(&token, 1500),
            Err("the share link was revoked")
        );
        for bad in [
            "",
            "ws1.",
            "ws1.x.y",
            "ws1..",
            "eyJ.eyJ.sig",
            &token[..token.len() - 2],
        ] {
            assert!(keys.verify(bad, 1500).is_err(), "{bad}");
        }
    }

    #[test]
    fn lifetimes() {
        for (text, secs) in [
            ("30m", 1800),
            ("12h", 43_200),
            ("7d", 604_800),
            ("3600", 3600),
            ("366d", MAX_LIFETIME),
        ] {
            assert_eq!(parse_lifetime(text), Ok(secs), "{text}");
        }
        for bad in [
            "",
            "0",
            "0d",
            "7w",
            "d",
            "-1d",
            "367d",
            "99999999999999999999d",
            "7 d",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_key_files_and_lifetimes_are_refused() {
        for bad in [
            "",
            "# nothing",
            "k1",
            "k1 short",
            "k1 !!!notbase64!!!",
            "k1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 extra",
        ] {
            assert!(ShareKeys::parse(bad).is_err(), "{bad:?}");
        }
        let twice = "k1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\nk1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
        assert!(ShareKeys::parse(twice).is_err());
        let keys = ShareKeys::parse(KEYS).expect("keys");
        assert!(keys.mint(&share(1000)).is_err());
        assert!(keys.mint(&share(1000 + MAX_LIFETIME + 1)).is_err());
        let line = ShareKeys::key_line("k9", &[7u8; 32]);
        assert!(ShareKeys::parse(&line).is_ok(), "{line}");
    }
}
