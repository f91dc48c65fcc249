//! The JWT fixtures both verifiers' tests read: keys and tokens made by OpenSSL and Python's
//! standard library (tests/fixtures/jwt/make-tokens.sh), never by this crate.

pub(crate) const KEYS_PEM: &str = include_str!("../../../tests/fixtures/jwt/keys.pem");
pub(crate) const JWKS: &str = include_str!("../../../tests/fixtures/jwt/jwks.json");
pub(crate) const RSA_PKCS1: &str = include_str!("../../../tests/fixtures/jwt/rsa.pkcs1.pem");
pub(crate) const WEAK: &str = include_str!("../../../tests/fixtures/jwt/weak.pub.pem");
pub(crate) const TOKENS: &str = include_str!("../../../tests/fixtures/jwt/tokens.txt");
/// The issuer the fixture tokens name.
pub(crate) const ISS: &str = "https://idp.example.org/realms/pacs";
/// A time at which the fixture tokens are valid.
pub(crate) const NOW: u64 = 1_800_000_000;

/// The fixture token of this name.
pub(crate) fn token(name: &str) -> &'static str {
    TOKENS
        .lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(n, _)| *n == name)
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no token {name}"))
}
