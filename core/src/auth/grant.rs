//! What a verified credential may do: which AE titles, which of read, write and delete, and
//! how far it reaches within them — every study, or only the studies it names.
//!
//! A JWT's rights come from its claims (docs/AUTH.md):
//!
//! - the AE titles, from the AE claim (`aets` by default), as before;
//! - the permissions: `read`, plus `write` and `delete` when its `scope` holds those words;
//!   or, when the server maps roles ([`RoleMap`], `--jwt-roles`), only what the roles found
//!   at the roles claim (`realm_access.roles` for Keycloak, `roles` for Entra ID, `groups`
//!   for Okta) are mapped to;
//! - the reach: a `studies` claim ([`STUDIES_CLAIM`]), an array of Study Instance UIDs (or
//!   one space- or comma-separated string), confines every route to those studies: searches
//!   return only them and anything else answers exactly as a study that is not stored (404,
//!   so nothing tells the token that it exists). An empty list reaches nothing.

use serde_json::Value;
use std::sync::Arc;

/// The claim listing the studies a token is confined to.
pub const STUDIES_CLAIM: &str = "studies";
/// The most studies one token may name: every search carries them as a condition.
pub const MAX_STUDIES: usize = 64;
/// The scope word that lets a JWT store (STOW-RS) and correct.
pub const WRITE_SCOPE: &str = "write";
/// The scope word that lets a JWT delete.
pub const DELETE_SCOPE: &str = "delete";

/// How far a credential reaches within its AE titles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Reach {
    /// Everything stored there.
    #[default]
    All,
    /// Only these studies (Study Instance UIDs).
    Studies(Arc<[String]>),
}

impl Reach {
    /// Whether the study with this UID is within reach.
    pub fn admits(&self, study: &str) -> bool {
        match self {
            Reach::All => true,
            Reach::Studies(list) => list.iter().any(|s| s == study),
        }
    }

    /// The studies it is confined to (`None`: all).
    pub fn studies(&self) -> Option<&[String]> {
        match self {
            Reach::All => None,
            Reach::Studies(list) => Some(list),
        }
    }
}

/// The permissions a credential holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Search and retrieve.
    pub read: bool,
    /// Store (STOW-RS) and correct (PATCH).
    pub write: bool,
    /// Delete (DELETE).
    pub delete: bool,
}

impl Permissions {
    /// Reading only.
    pub const READ: Permissions = Permissions {
        read: true,
        write: false,
        delete: false,
    };

    /// The permissions named by words (`read`, `write`, `delete`) separated by commas or
    /// spaces; an unknown word is an error naming it.
    pub fn parse(words: &str) -> Result<Permissions, String> {
        let mut p = Permissions::default();
        for w in words
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
        {
            match w {
                "read" => p.read = true,
                "write" => p.write = true,
                "delete" => p.delete = true,
                other => {
                    return Err(format!(
                        "{other:?} is not a permission (read, write, delete)"
                    ))
                }
            }
        }
        Ok(p)
    }

    fn union(self, o: Permissions) -> Permissions {
        Permissions {
            read: self.read || o.read,
            write: self.write || o.write,
            delete: self.delete || o.delete,
        }
    }
}

/// A verified credential's rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who, for the audit trail: a JWT's `sub`, `token:` and the first bytes of a static
    /// token's digest, `share:` and a share link's id.
    pub subject: String,
    /// The AE titles it may reach (`*` for all); empty when the claim is absent.
    pub ae_titles: Vec<String>,
    /// What it may do there.
    pub permissions: Permissions,
    /// How far it reaches there.
    pub reach: Reach,
    /// Until when the credentials are good (seconds since the Unix epoch; `u64::MAX` for
    /// static tokens): how long a verification may be remembered.
    pub expires: u64,
}

/// The identity provider's roles (or groups) and the permissions each gives: what
/// `--jwt-roles` (worker: `JWT_ROLES`) configures, with the claim holding them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMap {
    /// The claim's path, dot-separated (`realm_access.roles`).
    claim: Vec<String>,
    roles: Vec<(String, Permissions)>,
}

impl RoleMap {
    /// Parses `ROLE=PERMISSION[,PERMISSION...]` entries separated by `;` or spaces (`viewer=read;
    /// radiologist=read,write; admin=read,write,delete`) for roles at `claim`.
    pub fn parse(claim: &str, text: &str) -> Result<RoleMap, String> {
        let claim: Vec<String> = claim
            .split('.')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if claim.is_empty() {
            return Err("the roles claim is empty".into());
        }
        let mut roles = Vec::new();
        for entry in text
            .split(|c: char| c == ';' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            let (role, perms) = entry.split_once('=').ok_or_else(|| {
                format!("{entry:?}: expected ROLE=PERMISSIONS, e.g. radiologist=read,write")
            })?;
            let perms = Permissions::parse(perms).map_err(|e| format!("{entry:?}: {e}"))?;
            if role.is_empty() {
                return Err(format!("{entry:?}: the role is empty"));
            }
            if perms == Permissions::default() {
                return Err(format!("{entry:?}: no permission is given"));
            }
            roles.push((role.to_owned(), perms));
        }
        if roles.is_empty() {
            return Err("no role is mapped".into());
        }
        Ok(RoleMap { claim, roles })
    }

    /// The permissions the roles in `claims` are mapped to.
    fn permissions(&self, claims: &Value) -> Permissions {
        let mut at = claims;
        for step in &self.claim {
            match at.get(step) {
                Some(v) => at = v,
                None => return Permissions::default(),
            }
        }
        let held = words(at);
        self.roles
            .iter()
            .filter(|(role, _)| held.iter().any(|h| h == role))
            .fold(Permissions::default(), |acc, (_, p)| acc.union(*p))
    }
}

/// A claim's words: an array of strings, or one string split at spaces and commas.
fn words(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect(),
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// Why verified claims give no grant: the `studies` claim is not a list of at most
/// [`MAX_STUDIES`] UIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadStudies;

/// The rights verified `claims` give, their AE titles at `ae_claim`, roles mapped by `roles`.
pub fn of_claims(
    claims: &Value,
    ae_claim: &str,
    roles: Option<&RoleMap>,
) -> Result<Grant, BadStudies> {
    let ae_titles = claims.get(ae_claim).map(words).unwrap_or_default();
    let permissions = match roles {
        Some(map) => map.permissions(claims),
        None => {
            let scope = claims.get("scope").map(words).unwrap_or_default();
            Permissions {
                read: true,
                write: scope.iter().any(|w| w == WRITE_SCOPE),
                delete: scope.iter().any(|w| w == DELETE_SCOPE),
            }
        }
    };
    let reach = match claims.get(STUDIES_CLAIM) {
        None => Reach::All,
        Some(v @ (Value::String(_) | Value::Array(_))) => {
            let list = words(v);
            let all_strings = match v {
                Value::Array(items) => items.iter().all(Value::is_string),
                _ => true,
            };
            if !all_strings || list.len() > MAX_STUDIES {
                return Err(BadStudies);
            }
            Reach::Studies(list.into())
        }
        Some(_) => return Err(BadStudies),
    };
    let subject = match claims.get("sub").and_then(Value::as_str) {
        Some(sub) => sub.to_owned(),
        None => "jwt (no sub)".to_owned(),
    };
    let expires = claims
        .get("exp")
        .and_then(Value::as_f64)
        .map_or(0, |e| e.max(0.0) as u64);
    Ok(Grant {
        subject,
        ae_titles,
        permissions,
        reach,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(claims: &str, roles: Option<&RoleMap>) -> Result<Grant, BadStudies> {
        of_claims(&serde_json::from_str(claims).expect("json"), "aets", roles)
    }

    #[test]
    fn scope_words_give_write_and_delete() {
        for (claims, write, delete) in [
            (r#"{"scope":"openid write"}"#, true, false),
            (r#"{"scope":"write"}"#, true, false),
            (r#"{"scope":["read","write","delete"]}"#, true, true),
            (r#"{"scope":"delete"}"#, false, true),
            (r#"{"scope":"openid writer deleter"}"#, false, false),
            (r#"{"scope":"read"}"#, false, false),
            (r#"{"scp":"write"}"#, false, false),
            (r#"{}"#, false, false),
        ] {
            let p = grant(claims, None).expect("grant").permissions;
            assert_eq!(
                p,
                Permissions {
                    read: true,
                    write,
                    delete
                },
                "{claims}"
            );
        }
    }

    #[test]
    fn roles_are_mapped_from_a_nested_claim_and_nothing_else_counts() {
        let map = RoleMap::parse(
            "realm_access.roles",
            "viewer=read; radiologist=read,write admin=read,write,delete",
        )
        .expect("map");
        let cases = [
            (
                r#"{"realm_access":{"roles":["viewer"]}}"#,
                (true, false, false),
            ),
            (
                r#"{"realm_access":{"roles":["viewer","radiologist"]}}"#,
                (true, true, false),
            ),
            (
                r#"{"realm_access":{"roles":["admin"]}}"#,
                (true, true, true),
            ),
            // The scope does not count once roles are mapped; nor do unmapped roles.
            (
                r#"{"scope":"write delete","realm_access":{"roles":["nurse"]}}"#,
                (false, false, false),
            ),
            (r#"{"roles":["admin"]}"#, (false, false, false)),
            (r#"{"realm_access":{"roles":"admin"}}"#, (true, true, true)),
        ];
        for (claims, (read, write, delete)) in cases {
            let p = grant(claims, Some(&map)).expect("grant").permissions;
            assert_eq!(
                p,
                Permissions {
                    read,
                    write,
                    delete
                },
                "{claims}"
            );
        }
        for bad in ["", "viewer", "viewer=", "viewer=reed", "=read", "a=read;b"] {
            assert!(RoleMap::parse("roles", bad).is_err(), "{bad:?}");
        }
        assert!(RoleMap::parse("", "viewer=read").is_err());
    }

    #[test]
    fn the_studies_claim_confines_and_an_empty_one_reaches_nothing() {
        let g = grant(r#"{"studies":["1.2.3","1.2.4"]}"#, None).expect("grant");
        assert!(g.reach.admits("1.2.3") && g.reach.admits("1.2.4"));
        assert!(!g.reach.admits("1.2.34") && !g.reach.admits("1.2"));
        let g = grant(r#"{"studies":"1.2.3 1.2.5"}"#, None).expect("grant");
        assert_eq!(
            g.reach.studies(),
            Some(&["1.2.3".to_owned(), "1.2.5".to_owned()][..])
        );
        let g = grant(r#"{"studies":[]}"#, None).expect("grant");
        assert!(!g.reach.admits("1.2.3") && !g.reach.admits(""));
        assert_eq!(grant("{}", None).expect("grant").reach, Reach::All);
        for bad in [
            r#"{"studies":7}"#,
            r#"{"studies":null}"#,
            r#"{"studies":[1,2]}"#,
            r#"{"studies":{"a":"1.2"}}"#,
        ] {
            assert_eq!(grant(bad, None), Err(BadStudies), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_STUDIES).map(|i| format!("1.2.{i}")).collect();
        let claims = serde_json::json!({ "studies": many }).to_string();
        assert_eq!(grant(&claims, None), Err(BadStudies));
    }
}
