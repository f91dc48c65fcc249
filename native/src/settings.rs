//! `wado serve` settings: command-line flags over an optional TOML file over defaults.
//!
//! The file takes the flags' names (`max-requests = 64`, `ae-titles = ["A", "B"]`, ...);
//! relative paths in it are relative to the file. A flag given on the command line wins over
//! the file; a list flag given on the command line replaces the file's list.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What `wado serve` may be told, by flags or by the file: every field optional.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// The store: a directory, or s3://BUCKET[/PREFIX][?endpoint=URL&region=R&allow_http=true] with AWS_* credentials in the environment [default: ./data].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub bind: Option<SocketAddr>,
    /// AE titles served (repeat for more); others answer 404 [default: DCM4CHEE].
    #[arg(long = "ae-title")]
    #[serde(default)]
    pub ae_titles: Vec<String>,
    /// Public base URL for URIs in responses (scheme://host[:port][/prefix]). Default: from
    /// the request's Host header.
    #[arg(long)]
    pub public_url: Option<String>,
    /// At most this many requests in flight; more get 503 with Retry-After. 0: unlimited
    /// [default: 0].
    #[arg(long)]
    pub max_requests: Option<usize>,
    /// Origins allowed to call from a browser (CORS), e.g. https://viewer.example.org, or *
    /// (repeat for more). None by default.
    #[arg(long = "cors-origin")]
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Without --public-url, URIs in responses use the request's Host: the host names
    /// (`name` or `name:port`) it may be; others get 400 (repeat for more). Any by default.
    #[arg(long = "allowed-host")]
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// On SIGTERM or Ctrl-C, seconds to let requests in flight finish before exiting
    /// [default: 30].
    #[arg(long)]
    pub shutdown_timeout: Option<u64>,
    /// Seconds a connection may take to send a request's headers, and may stay idle between
    /// requests (slow or silent clients lose the connection) [default: 30].
    #[arg(long)]
    pub header_timeout: Option<u64>,
    /// Seconds a response may wait for a client that reads nothing before the connection is
    /// closed and its request slot freed [default: 60].
    #[arg(long)]
    pub write_timeout: Option<u64>,
    /// The largest stored file converted whole into another transfer syntax, in MiB (it and
    /// its result are held in memory); larger ones are offered as stored [default: 1024].
    #[arg(long)]
    pub max_convert_mb: Option<u64>,
    /// The memory all conversions together may hold at once, in MiB (0: no limit);
    /// conversions past it wait for room [default: 1024].
    #[arg(long)]
    pub conversion_memory_mb: Option<u64>,
    /// HTTP/2: concurrent streams per connection [default: 64].
    #[arg(long)]
    pub h2_max_streams: Option<u32>,
    /// The search index (QIDO-RS): a SQLite file, or `memory` (rebuilt from the store at
    /// start) [default: {data}/wado-index.sqlite for a directory, memory for S3].
    #[arg(long)]
    pub index: Option<String>,
    /// The most results one search returns; more are cut with a Warning and paged with
    /// offset [default: 1000].
    #[arg(long)]
    pub max_results: Option<usize>,
    /// The largest STOW-RS request taken, in MiB (413 past it); each instance of a request is
    /// held in memory while it is written [default: 4096].
    #[arg(long)]
    pub max_store_mb: Option<u64>,
    /// The largest instance in a STOW-RS request, in MiB: each is held in memory while it is
    /// written; a larger one fails (A700) and the others are stored [default: 2048].
    #[arg(long)]
    pub max_instance_mb: Option<u64>,
    /// Refuse STOW-RS (405), whatever the tokens allow.
    #[arg(long)]
    #[serde(default)]
    pub read_only: bool,
    /// Let anyone who can reach the server store (and replace) instances without a token.
    /// Off by default: without access control, writes are refused (403) until writers are
    /// given tokens that say `write`, or this is set on purpose.
    #[arg(long)]
    #[serde(default)]
    pub allow_anonymous_writes: bool,
    /// Do not wait for the disk: a stored instance may be lost (or its study's index left
    /// behind its files, until `wado reindex`) if the machine loses power. For a bulk load that
    /// can be re-run, or a benchmark beside servers that do not sync either. Directories and
    /// SQLite only.
    #[arg(long)]
    #[serde(default)]
    pub no_fsync: bool,
    /// The most instances (parts) in one STOW-RS request; a request with more is refused
    /// (413) past them, those before stored [default: 10000].
    #[arg(long)]
    pub max_store_instances: Option<usize>,
    /// Seconds one search may run in the index before it is stopped (503 with Retry-After)
    /// [default: 10].
    #[arg(long)]
    pub search_timeout: Option<u64>,
    /// Seconds the objects of deleted and replaced instances stay in the store before they
    /// are swept away (a reader that found them just before reads them whole; `wado purge`
    /// removes them sooner) [default: 600].
    #[arg(long)]
    pub keep_removed: Option<u64>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Push the change feed of every partition served to this URL: batches of changes as
    /// JSON, POSTed in order, signed (X-Wado-Signature: sha256=HMAC of the body), sent again
    /// until answered 2xx; one replica at a time (docs/LIFECYCLE.md). Needs
    /// --webhook-secret-file.
    #[arg(long)]
    pub webhook: Option<String>,
    /// The file holding the webhook's signing secret (its first line).
    #[arg(long)]
    pub webhook_secret_file: Option<PathBuf>,
    /// Seconds a replica holds the webhook's delivery before another may take it over when it
    /// stops [default: 30].
    #[arg(long)]
    pub webhook_lease: Option<u64>,
    /// Require bearer tokens: a file of `TOKEN AE[,AE...]` (or `TOKEN *`) lines. Off by
    /// default. See docs/ARCHITECTURE.md.
    #[arg(long)]
    pub tokens_file: Option<PathBuf>,
    /// Accept JWTs (RS256/ES256) verified with these public keys: PEM (`PUBLIC KEY`,
    /// `RSA PUBLIC KEY`) or a JWK Set (JSON). Needs --jwt-issuer and --jwt-audience.
    #[arg(long)]
    pub jwt_keys: Option<PathBuf>,
    /// Accept JWTs verified with the keys an OpenID Connect issuer publishes (its discovery
    /// document's `jwks_uri`), fetched at start and again when they expire or a token names a
    /// new key. Needs --jwt-audience; the `iss` tokens carry is this URL unless --jwt-issuer.
    #[arg(long)]
    pub oidc_issuer: Option<String>,
    /// The `iss` a JWT must carry.
    #[arg(long)]
    pub jwt_issuer: Option<String>,
    /// The audience a JWT's `aud` must contain.
    #[arg(long)]
    pub jwt_audience: Option<String>,
    /// The JWT claim listing the AE titles a token may read (array, or a space- or
    /// comma-separated string; `*` for all) [default: aets].
    #[arg(long)]
    pub jwt_ae_claim: Option<String>,
    /// The longest a JWT may live, in seconds (exp − iat, and exp − now): longer-lived tokens
    /// are refused; 0 for no maximum [default: 86400].
    #[arg(long)]
    pub jwt_max_lifetime: Option<u64>,
    /// Take a JWT's permissions from its roles, mapped here, rather than from its `scope`:
    /// `ROLE=PERMISSIONS` entries separated by `;` (`viewer=read;radiologist=read,write;
    /// admin=read,write,delete`); a token with no mapped role may do nothing (docs/AUTH.md).
    #[arg(long)]
    pub jwt_roles: Option<String>,
    /// Where --jwt-roles finds a token's roles: a claim, or a dot-separated path into one
    /// (Keycloak: `realm_access.roles`; Okta: `groups`) [default: roles].
    #[arg(long)]
    pub jwt_roles_claim: Option<String>,
    /// Share links (docs/AUTH.md): a file of `KID SECRET` lines (`wado share-key` makes one);
    /// links signed with its keys each read one study. The first key signs new links
    /// (`wado share`, `POST .../studies/{s}/share`); removing a key revokes its links.
    #[arg(long)]
    pub share_keys: Option<PathBuf>,
    /// Ids of share links revoked, one per line.
    #[arg(long)]
    pub share_revoked: Option<PathBuf>,
    /// Keep an audit trail: one DICOM audit message (PS3.15 A.5) per request, as a line of
    /// JSON appended to this file (docs/AUTH.md). Off by default.
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// Also send each audit record to a syslog collector (an ATNA audit repository, a SIEM):
    /// `udp://HOST:PORT`, one RFC 5424 message per datagram.
    #[arg(long)]
    pub audit_syslog: Option<String>,
    /// The viewer share links open (OHIF's base URL): `POST .../share` answers with the link.
    #[arg(long)]
    pub share_viewer: Option<String>,
    /// The built browser demo (scripts/demo-build.sh), served at /demo/ [default:
    /// web-demo/dist when it exists].
    #[arg(long)]
    pub demo_dir: Option<PathBuf>,
    /// Also speak the DICOM network protocol (C-ECHO, C-STORE) on this port, at --bind's
    /// address; the called AE title names the partition (docs/DIMSE.md). Off by default.
    #[arg(long)]
    pub dimse_port: Option<u16>,
    /// The DICOM peers table: who may associate, from where, to do what in which partition,
    /// and where C-MOVE sends (`CALLING_AE ADDRESS[:PORT] AE_TITLES MAY` lines; docs/DIMSE.md).
    #[arg(long)]
    pub dimse_peers: Option<PathBuf>,
    /// Seconds a DICOM association may stay silent before it is aborted [default: 60].
    #[arg(long)]
    pub dimse_timeout: Option<u64>,
    /// Speak DICOM over TLS on --dimse-port (PS3.15 B.1, as on port 2762), with this
    /// certificate chain (PEM); needs --dimse-tls-key. Plain TCP is then refused there.
    #[arg(long)]
    pub dimse_tls_cert: Option<PathBuf>,
    /// The private key of --dimse-tls-cert (PEM).
    #[arg(long)]
    pub dimse_tls_key: Option<PathBuf>,
    /// Require a client certificate issued by one of these CAs (PEM) on DICOM TLS (mutual
    /// authentication, as the DICOM TLS secure transport profiles ask) [default: none asked].
    #[arg(long)]
    pub dimse_tls_client_ca: Option<PathBuf>,
    /// C-MOVE to destinations the peers table marks `tls` goes over TLS, their certificates
    /// verified against these CAs (PEM), ours being --dimse-tls-cert when given.
    #[arg(long)]
    pub dimse_tls_ca: Option<PathBuf>,
}

/// Settings with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The store directory.
    pub data: PathBuf,
    /// Address to listen on.
    pub bind: SocketAddr,
    /// AE titles served.
    pub ae_titles: Vec<String>,
    /// Public base URL.
    pub public_url: Option<String>,
    /// Requests in flight at most; 0 is unlimited.
    pub max_requests: usize,
    /// CORS origins.
    pub cors_origins: Vec<String>,
    /// Host names the Host header may give when there is no public URL (empty: any).
    pub allowed_hosts: Vec<String>,
    /// Seconds for requests in flight at shutdown.
    pub shutdown_timeout: u64,
    /// Seconds for a request's headers, and of idleness between requests.
    pub header_timeout: u64,
    /// Seconds a response waits for a client that reads nothing.
    pub write_timeout: u64,
    /// HTTP/2 concurrent streams per connection.
    pub h2_max_streams: u32,
    /// `--index` as given.
    pub index: Option<String>,
    /// The most results of one search.
    pub max_results: usize,
    /// The largest STOW-RS request, in MiB.
    pub max_store_mb: u64,
    /// The largest instance of a STOW-RS request, in MiB.
    pub max_instance_mb: u64,
    /// STOW-RS refused.
    pub read_only: bool,
    /// Writes without a token allowed.
    pub allow_anonymous_writes: bool,
    /// Writes wait for the disk (not `--no-fsync`).
    pub durable: bool,
    /// The most instances of one STOW-RS request.
    pub max_store_instances: usize,
    /// Seconds a search may run.
    pub search_timeout: u64,
    /// Seconds removed objects stay.
    pub keep_removed: u64,
    /// The largest file converted whole, in MiB.
    pub max_convert_mb: u64,
    /// The memory of all conversions at once, in MiB.
    pub conversion_memory_mb: u64,
    /// Certificate chain and key, PEM.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The webhook's URL, secret file and lease.
    pub webhook: Option<(String, PathBuf, u64)>,
    /// Static tokens file.
    pub tokens_file: Option<PathBuf>,
    /// JWT keys, issuer and audience.
    pub jwt: Option<(PathBuf, String, String)>,
    /// An OpenID Connect issuer URL, the audience, and the `iss` tokens carry when not the URL.
    pub oidc: Option<(String, String, Option<String>)>,
    /// The claim naming AE titles.
    pub jwt_ae_claim: String,
    /// The longest a JWT may live (`None`: the default; 0: any).
    pub jwt_max_lifetime: Option<u64>,
    /// The claim holding a JWT's roles and the permissions each gives.
    pub jwt_roles: Option<(String, String)>,
    /// Share links' keys file, revoked ids file, viewer.
    pub share_keys: Option<PathBuf>,
    /// Share links revoked.
    pub share_revoked: Option<PathBuf>,
    /// The audit trail's file.
    pub audit_log: Option<PathBuf>,
    /// The audit trail's syslog collector.
    pub audit_syslog: Option<String>,
    /// The viewer share links open.
    pub share_viewer: Option<String>,
    /// The built demo.
    pub demo_dir: Option<PathBuf>,
    /// The DIMSE listener's port, peers table and idle timeout (seconds).
    pub dimse_port: Option<u16>,
    pub dimse_peers: Option<PathBuf>,
    pub dimse_timeout: u64,
    /// DICOM TLS on the DIMSE port: certificate chain, key, and the CAs client
    /// certificates must come from (when they are required).
    pub dimse_tls: Option<(PathBuf, PathBuf, Option<PathBuf>)>,
    /// The CAs that C-MOVE's TLS destinations' certificates must come from.
    pub dimse_tls_ca: Option<PathBuf>,
}

impl ServeArgs {
    /// Reads a settings file, paths made relative to its directory.
    pub fn from_file(path: &Path) -> Result<ServeArgs, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut args: ServeArgs =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut args.data,
            &mut args.tls_cert,
            &mut args.tls_key,
            &mut args.tokens_file,
            &mut args.webhook_secret_file,
            &mut args.jwt_keys,
            &mut args.demo_dir,
            &mut args.dimse_peers,
            &mut args.dimse_tls_cert,
            &mut args.dimse_tls_key,
            &mut args.dimse_tls_client_ca,
            &mut args.dimse_tls_ca,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() && !p.to_str().is_some_and(|s| s.starts_with("s3://")) {
                *p = base.join(&*p);
            }
        }
        Ok(args)
    }

    /// These flags over `file`, then the defaults; refuses incomplete pairs.
    pub fn resolve(self, file: ServeArgs) -> Result<Settings, String> {
        let list = |cli: Vec<String>, file: Vec<String>| if cli.is_empty() { file } else { cli };
        let mut ae_titles = list(self.ae_titles, file.ae_titles);
        if ae_titles.is_empty() {
            ae_titles.push(wado_core::layout::DEFAULT_AE_TITLE.to_owned());
        }
        let tls = match (
            self.tls_cert.or(file.tls_cert),
            self.tls_key.or(file.tls_key),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err("tls-cert and tls-key go together".into()),
        };
        let client_ca = self.dimse_tls_client_ca.or(file.dimse_tls_client_ca);
        let dimse_tls = match (
            self.dimse_tls_cert.or(file.dimse_tls_cert),
            self.dimse_tls_key.or(file.dimse_tls_key),
            client_ca,
        ) {
            (Some(c), Some(k), ca) => Some((c, k, ca)),
            (None, None, None) => None,
            (None, None, Some(_)) => {
                return Err("dimse-tls-client-ca needs dimse-tls-cert and dimse-tls-key".into())
            }
            _ => return Err("dimse-tls-cert and dimse-tls-key go together".into()),
        };
        let oidc_issuer = self.oidc_issuer.or(file.oidc_issuer);
        let (keys, issuer, audience) = (
            self.jwt_keys.or(file.jwt_keys),
            self.jwt_issuer.or(file.jwt_issuer),
            self.jwt_audience.or(file.jwt_audience),
        );
        let oidc = match (oidc_issuer, &audience) {
            (Some(url), Some(a)) => Some((url, a.clone(), issuer.clone())),
            (Some(_), None) => return Err("oidc-issuer needs jwt-audience".into()),
            (None, _) => None,
        };
        let jwt = match (keys, issuer, audience) {
            (Some(k), Some(i), Some(a)) => Some((k, i, a)),
            (None, None, None) => None,
            (None, _, _) if oidc.is_some() => None,
            _ => return Err("jwt-keys, jwt-issuer and jwt-audience go together".into()),
        };
        let webhook = match (
            self.webhook.or(file.webhook),
            self.webhook_secret_file.or(file.webhook_secret_file),
        ) {
            (Some(url), Some(secret)) => Some((
                url,
                secret,
                self.webhook_lease
                    .or(file.webhook_lease)
                    .unwrap_or(30)
                    .max(1),
            )),
            (None, None) => None,
            (Some(_), None) => {
                return Err("--webhook needs --webhook-secret-file (deliveries are signed)".into())
            }
            (None, Some(_)) => return Err("--webhook-secret-file without --webhook".into()),
        };
        Ok(Settings {
            webhook,
            data: self.data.or(file.data).unwrap_or_else(|| "./data".into()),
            bind: self
                .bind
                .or(file.bind)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            ae_titles,
            public_url: self.public_url.or(file.public_url),
            max_requests: self.max_requests.or(file.max_requests).unwrap_or(0),
            cors_origins: list(self.cors_origins, file.cors_origins),
            allowed_hosts: list(self.allowed_hosts, file.allowed_hosts),
            shutdown_timeout: self
                .shutdown_timeout
                .or(file.shutdown_timeout)
                .unwrap_or(30),
            header_timeout: self
                .header_timeout
                .or(file.header_timeout)
                .unwrap_or(30)
                .max(1),
            write_timeout: self
                .write_timeout
                .or(file.write_timeout)
                .unwrap_or(60)
                .max(1),
            h2_max_streams: self
                .h2_max_streams
                .or(file.h2_max_streams)
                .unwrap_or(64)
                .max(1),
            index: self.index.or(file.index),
            max_results: self.max_results.or(file.max_results).unwrap_or(1000).max(1),
            max_store_mb: self.max_store_mb.or(file.max_store_mb).unwrap_or(4096),
            max_instance_mb: self
                .max_instance_mb
                .or(file.max_instance_mb)
                .unwrap_or(2048),
            read_only: self.read_only || file.read_only,
            allow_anonymous_writes: self.allow_anonymous_writes || file.allow_anonymous_writes,
            durable: !(self.no_fsync || file.no_fsync),
            max_store_instances: self
                .max_store_instances
                .or(file.max_store_instances)
                .unwrap_or(10_000)
                .max(1),
            search_timeout: self
                .search_timeout
                .or(file.search_timeout)
                .unwrap_or(10)
                .max(1),
            keep_removed: self
                .keep_removed
                .or(file.keep_removed)
                .unwrap_or(wado_core::ingest::RETIRED_GRACE),
            max_convert_mb: self.max_convert_mb.or(file.max_convert_mb).unwrap_or(1024),
            conversion_memory_mb: self
                .conversion_memory_mb
                .or(file.conversion_memory_mb)
                .unwrap_or(1024),
            tls,
            tokens_file: self.tokens_file.or(file.tokens_file),
            jwt,
            oidc,
            jwt_ae_claim: self
                .jwt_ae_claim
                .or(file.jwt_ae_claim)
                .unwrap_or_else(|| "aets".into()),
            jwt_max_lifetime: self.jwt_max_lifetime.or(file.jwt_max_lifetime),
            share_keys: self.share_keys.or(file.share_keys),
            share_revoked: self.share_revoked.or(file.share_revoked),
            audit_log: self.audit_log.or(file.audit_log),
            audit_syslog: self.audit_syslog.or(file.audit_syslog),
            share_viewer: self.share_viewer.or(file.share_viewer),
            jwt_roles: self.jwt_roles.or(file.jwt_roles).map(|map| {
                let claim = self
                    .jwt_roles_claim
                    .or(file.jwt_roles_claim)
                    .unwrap_or_else(|| "roles".into());
                (claim, map)
            }),
            dimse_port: self.dimse_port.or(file.dimse_port),
            dimse_peers: self.dimse_peers.or(file.dimse_peers),
            dimse_timeout: self
                .dimse_timeout
                .or(file.dimse_timeout)
                .unwrap_or(60)
                .max(1),
            dimse_tls,
            dimse_tls_ca: self.dimse_tls_ca.or(file.dimse_tls_ca),
            demo_dir: self.demo_dir.or(file.demo_dir).or_else(|| {
                let d = PathBuf::from("web-demo/dist");
                d.join("index.html").is_file().then_some(d)
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_over_file_over_defaults() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("wado.toml");
        std::fs::write(
            &path,
            "data = \"store\"\nmax-requests = 64\nae-titles = [\"A\", \"B\"]\ncors-origins = [\"*\"]\n",
        )
        .expect("write");
        let file = ServeArgs::from_file(&path).expect("file");
        let s = ServeArgs::default().resolve(file.clone()).expect("resolve");
        assert_eq!(s.data, dir.path().join("store"), "relative to the file");
        assert_eq!(s.max_requests, 64);
        assert_eq!(s.ae_titles, vec!["A", "B"]);
        assert_eq!(s.shutdown_timeout, 30);
        assert_eq!(
            (s.header_timeout, s.write_timeout, s.h2_max_streams),
            (30, 60, 64)
        );
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        let cli = ServeArgs {
            max_requests: Some(8),
            ae_titles: vec!["C".into()],
            ..ServeArgs::default()
        };
        let s = cli.resolve(file).expect("resolve");
        assert_eq!(s.max_requests, 8, "the flag wins");
        assert_eq!(s.ae_titles, vec!["C"]);
        assert_eq!(s.cors_origins, vec!["*"]);
        let d = ServeArgs::default()
            .resolve(ServeArgs::default())
            .expect("defaults");
        assert_eq!(d.max_requests, 0, "unlimited by default");
        assert_eq!(d.ae_titles, vec!["DCM4CHEE"]);
    }

    #[test]
    fn bad_files_and_pairs_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("wado.toml");
        for (text, says) in [
            ("max-requets = 3", "unknown field"),
            ("max-requests = \"many\"", "invalid type"),
            ("bind = \"nowhere\"", "bind"),
        ] {
            std::fs::write(&path, text).expect("write");
            let e = ServeArgs::from_file(&path).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
        let half = ServeArgs {
            tls_cert: Some("c.pem".into()),
            ..ServeArgs::default()
        };
        assert!(half.resolve(ServeArgs::default()).is_err());
        let half = ServeArgs {
            dimse_tls_key: Some("k.pem".into()),
            ..ServeArgs::default()
        };
        assert!(half.resolve(ServeArgs::default()).is_err());
        let ca_alone = ServeArgs {
            dimse_tls_client_ca: Some("ca.pem".into()),
            ..ServeArgs::default()
        };
        assert!(ca_alone.resolve(ServeArgs::default()).is_err());
        let jwt = ServeArgs {
            jwt_keys: Some("k.pem".into()),
            jwt_issuer: Some("i".into()),
            ..ServeArgs::default()
        };
        assert!(jwt.resolve(ServeArgs::default()).is_err());
    }
}
