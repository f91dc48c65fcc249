//! `wado`: import DICOM files into a store, and serve them over WADO-RS.

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use wado_core::layout::{DEFAULT_AE_TITLE, DEFAULT_PUBLIC_URL};
use wado_core::{Config, Service};
use wado_native::settings::{ServeArgs, Settings};
use wado_native::{app, import, AppState};

#[derive(Parser, Debug)]
#[command(name = "wado", version, about = "A DICOMweb WADO-RS server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Import DICOM Part-10 files (files and folders, walked) into the store.
    Import {
        /// The store: a directory, or s3://BUCKET[/PREFIX][?endpoint=URL&region=R&allow_http=true] (credentials from AWS_* variables).
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        /// The public URL written into the BulkDataURIs of stored metadata (a new store only;
        /// a server with another public URL rewrites them on the way out).
        #[arg(long, default_value = DEFAULT_PUBLIC_URL)]
        public_url: String,
        /// The AE title whose partition of the store receives the files: DCM4CHEE at the
        /// root, any other under aets/{AE}/ (docs/STORAGE-LAYOUT.md); served by `wado serve
        /// --ae-title` of the same name.
        #[arg(long, default_value = DEFAULT_AE_TITLE)]
        ae_title: String,
        /// Do not wait for each file to reach the disk (a directory store): several times
        /// faster on slow disks, but a power cut (not a killed process) can then lose or empty
        /// files imported in the last seconds. For a bulk load you can re-run.
        #[arg(long)]
        no_fsync: bool,
        /// The search index kept in step: a SQLite file, or `none` [default:
        /// {data}/wado-index.sqlite for a directory; none for S3, whose server rebuilds its
        /// index at start].
        #[arg(long)]
        index: Option<String>,
        /// Files and folders to import.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Rebuild the search index from the store (an existing store gets its index this way),
    /// or write it as an SQL file to load elsewhere (the worker's D1:
    /// `wrangler d1 execute DB --file FILE`).
    Reindex {
        /// The store: a directory, or s3://... as for import.
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        /// The index to rebuild [default: {data}/wado-index.sqlite].
        #[arg(long)]
        index: Option<String>,
        /// Write the statements that build the index to this SQL file instead.
        #[arg(long)]
        sql_out: Option<PathBuf>,
        /// AE titles whose partitions are indexed (repeat for more) [default: DCM4CHEE].
        #[arg(long = "ae-title")]
        ae_titles: Vec<String>,
    },
    /// Delete a study, a series or an instance: at once gone from retrieval, metadata and
    /// search (a running server's too: they share the index), and a `delete` entry in the
    /// change feed per instance; the objects follow after the grace period (`wado serve
    /// --keep-removed`), or with `wado purge`.
    Delete {
        /// The store: a directory, or s3://... as for import.
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        /// The search index [default: {data}/wado-index.sqlite].
        #[arg(long)]
        index: Option<String>,
        /// The AE title whose partition holds it.
        #[arg(long, default_value = DEFAULT_AE_TITLE)]
        ae_title: String,
        /// Study Instance UID.
        study: String,
        /// Series Instance UID (the whole study without one).
        series: Option<String>,
        /// SOP Instance UID (the whole series without one).
        instance: Option<String>,
    },
    /// Correct a study's patient and study attributes: every instance gets a new version with
    /// the new values in its header (nothing else of the file changes), all current at once,
    /// a `correct` entry in the change feed per instance; the previous versions are kept for
    /// the grace period. Values as Keyword=value: PatientName=Doe^Jane PatientID=123
    /// PatientBirthDate=19800229 PatientSex=F AccessionNumber=A1 StudyDescription=...
    /// ReferringPhysicianName=...
    Correct {
        /// The store: a directory, or s3://... as for import.
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        /// The search index [default: {data}/wado-index.sqlite].
        #[arg(long)]
        index: Option<String>,
        /// The AE title whose partition holds it.
        #[arg(long, default_value = DEFAULT_AE_TITLE)]
        ae_title: String,
        /// Study Instance UID.
        study: String,
        /// The new values, Keyword=value (at least one).
        #[arg(required = true)]
        values: Vec<String>,
    },
    /// Delete from the store the objects of deleted and replaced instances now, rather than
    /// after the grace period (a reader streaming them at this moment may be cut short).
    Purge {
        /// The store: a directory, or s3://... as for import.
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        /// The search index [default: {data}/wado-index.sqlite].
        #[arg(long)]
        index: Option<String>,
        /// AE titles whose partitions are purged (repeat for more) [default: DCM4CHEE].
        #[arg(long = "ae-title")]
        ae_titles: Vec<String>,
        /// Only what was removed at least this many seconds ago.
        #[arg(long, default_value_t = 0)]
        older_than: u64,
        /// Rejected instances too (rejection notes, IOCM): their objects are deleted and they
        /// can no longer be brought back by deleting the note.
        #[arg(long)]
        rejected: bool,
    },
    /// Send DICOM files to a STOW-RS server (another wado, the worker, any archive), with a
    /// progress bar; exits non-zero when some were not stored.
    Store {
        /// The service root (e.g. http://host:8080/dcm4chee-arc/aets/DCM4CHEE/rs), or a
        /// study URL under it (every file must then be of that study).
        url: String,
        /// Files and folders to send.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// A bearer token that may write (or the WADO_TOKEN environment variable).
        #[arg(long, env = "WADO_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The most instances in one request.
        #[arg(long, default_value_t = 100)]
        per_request: usize,
        /// The most MiB of files in one request (a larger file goes alone); the worker takes
        /// requests of up to 100 MiB.
        #[arg(long, default_value_t = 64)]
        request_mb: u64,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 2)]
        connections: usize,
    },
    /// Verify a DICOM peer answers (C-ECHO); exits non-zero when it does not.
    Echo {
        /// The peer: AE@HOST:PORT.
        target: wado_native::dimse::scu::Target,
        /// Our AE title (the calling AE).
        #[arg(long, default_value = "WADO")]
        calling_ae: String,
        #[command(flatten)]
        tls: ScuTls,
    },
    /// Send DICOM files to a DICOM peer (C-STORE), each in its own transfer syntax; exits
    /// non-zero when some were not stored.
    Send {
        /// The peer: AE@HOST:PORT.
        target: wado_native::dimse::scu::Target,
        /// Files and folders to send.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Our AE title (the calling AE).
        #[arg(long, default_value = "WADO")]
        calling_ae: String,
        #[command(flatten)]
        tls: ScuTls,
    },
    /// Make a share link (docs/AUTH.md): a signed, expiring token that reads one study (and
    /// stores into it with --write), printed with the link that opens it in a viewer.
    Share {
        /// The Study Instance UID.
        study: String,
        /// The share-keys file the server verifies with (its first key signs).
        #[arg(long)]
        share_keys: PathBuf,
        /// How long the link works: 30m, 12h, 7d (at most 366d).
        #[arg(long, default_value = "7d")]
        expires: String,
        /// The AE title (partition) of the study.
        #[arg(long, default_value = wado_core::layout::DEFAULT_AE_TITLE)]
        ae_title: String,
        /// Let the link store into the study too.
        #[arg(long)]
        write: bool,
        /// The viewer's base URL (OHIF), to print the link that opens the study.
        #[arg(long)]
        viewer: Option<String>,
    },
    /// Print a new share key (`KID SECRET`, 32 random bytes) for a share-keys file.
    ShareKey {
        /// The key's id.
        #[arg(long, default_value = "k1")]
        kid: String,
    },
    /// Serve the store over DICOMweb (WADO-RS, QIDO-RS, STOW-RS) at /dcm4chee-arc/aets/{AETitle}/rs.
    Serve {
        /// Settings file (TOML, the flags' names as keys, e.g. `max-requests = 64`); flags
        /// given here win over it.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: Box<ServeArgs>,
    },
}

/// The access rule from the settings: static tokens, JWT keys, both or neither (off).
/// A share link's token, signed with the first key of `keys_file`.
fn make_share(
    study: &str,
    keys_file: &std::path::Path,
    expires: &str,
    ae_title: &str,
    write: bool,
) -> Result<(String, wado_core::auth::share::Share), String> {
    use wado_core::auth::share;
    let study = wado_core::dicom::uid::Uid::parse(study)
        .map_err(|e| format!("{study:?} is not a Study Instance UID: {e}"))?;
    let text =
        std::fs::read_to_string(keys_file).map_err(|e| format!("{}: {e}", keys_file.display()))?;
    let keys =
        share::ShareKeys::parse(&text).map_err(|e| format!("{}: {e}", keys_file.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let made = share::Share {
        id: rand::random::<[u8; 8]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        ae_title: ae_title.to_owned(),
        study: study.to_string(),
        issued: now,
        expires: now + share::parse_lifetime(expires)?,
        write,
    };
    Ok((keys.mint(&made)?, made))
}

fn load_auth(settings: &Settings) -> Result<Option<wado_core::auth::Auth>, String> {
    let read = |flag: &str, p: &PathBuf| {
        std::fs::read_to_string(p)
            .map(|text| (flag.to_owned(), text))
            .map_err(|e| format!("{flag}: {}: {e}", p.display()))
    };
    let mut s = wado_core::auth::AuthSettings {
        tokens: settings
            .tokens_file
            .as_ref()
            .map(|p| read("--tokens-file", p))
            .transpose()?,
        jwt_ae_claim: settings.jwt_ae_claim.clone(),
        jwt_max_lifetime: settings.jwt_max_lifetime,
        jwt_roles: settings
            .jwt_roles
            .clone()
            .map(|(claim, map)| ("--jwt-roles".to_owned(), claim, map)),
        share_keys: settings
            .share_keys
            .as_ref()
            .map(|p| read("--share-keys", p))
            .transpose()?,
        share_revoked: settings
            .share_revoked
            .as_ref()
            .map(|p| read("--share-revoked", p))
            .transpose()?
            .map(|(_, text)| text),
        ..Default::default()
    };
    if let Some((keys, issuer, audience)) = &settings.jwt {
        s.jwt_keys = Some(read("--jwt-keys", keys)?);
        s.jwt_issuer = issuer.clone();
        s.jwt_audience = audience.clone();
    }
    if let Some((url, audience, issuer)) = &settings.oidc {
        s.oidc_issuer = Some(("--oidc-issuer".to_owned(), url.clone()));
        s.oidc_client = Some(Arc::new(wado_native::http_get::ReqwestGet::new()?));
        s.jwt_audience = audience.clone();
        if let Some(i) = issuer {
            s.jwt_issuer = i.clone();
        }
    }
    wado_core::auth::Auth::from_settings(&s)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // openjp2 reports every header it reads at INFO: three lines per J2K frame.
                .unwrap_or_else(|_| "info,jpeg2k=warn,openjp2=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wado: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        match cli.command {
            Command::Import {
                data,
                public_url,
                ae_title,
                no_fsync,
                index,
                paths,
            } => run_import(data, public_url, ae_title, !no_fsync, index, paths).await,
            Command::Reindex {
                data,
                index,
                sql_out,
                ae_titles,
            } => run_reindex(data, index, sql_out, ae_titles).await,
            Command::Delete {
                data,
                index,
                ae_title,
                study,
                series,
                instance,
            } => run_delete(data, index, ae_title, study, series, instance).await,
            Command::Correct {
                data,
                index,
                ae_title,
                study,
                values,
            } => run_correct(data, index, ae_title, study, values).await,
            Command::Purge {
                data,
                index,
                ae_titles,
                older_than,
                rejected,
            } => run_purge(data, index, ae_titles, older_than, rejected).await,
            Command::Store {
                url,
                paths,
                token,
                per_request,
                request_mb,
                connections,
            } => {
                let opts = wado_native::stow_client::Options {
                    url,
                    token,
                    per_request,
                    request_bytes: request_mb.saturating_mul(1 << 20),
                    connections,
                    progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                };
                run_store(paths, opts).await
            }
            Command::Share {
                study,
                share_keys,
                expires,
                ae_title,
                write,
                viewer,
            } => match make_share(&study, &share_keys, &expires, &ae_title, write) {
                Ok((token, share)) => {
                    println!("token: {token}");
                    println!("id: {}", share.id);
                    println!("expires: {} (Unix time)", share.expires);
                    if let Some(v) = viewer {
                        println!(
                            "link: {}",
                            wado_core::auth::share::viewer_link(&v, &share.study, &token)
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("wado share: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::ShareKey { kid } => {
                let random: [u8; 32] = rand::random();
                println!(
                    "{}",
                    wado_core::auth::share::ShareKeys::key_line(&kid, &random)
                );
                ExitCode::SUCCESS
            }
            Command::Echo {
                target,
                calling_ae,
                tls,
            } => {
                let tls = match tls.config() {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("wado echo: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                match wado_native::dimse::scu::echo(&calling_ae, &target, tls.as_ref()).await {
                    Ok(()) => {
                        println!("{}@{} answered C-ECHO", target.ae, target.address);
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("wado echo: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Send {
                target,
                paths,
                calling_ae,
                tls,
            } => run_send(target, paths, calling_ae, tls).await,
            Command::Serve { config, args } => {
                let file = match config.as_deref().map(ServeArgs::from_file) {
                    None => ServeArgs::default(),
                    Some(Ok(f)) => f,
                    Some(Err(e)) => {
                        eprintln!("wado serve: --config {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let settings = match args.resolve(file) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("wado serve: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let auth = match load_auth(&settings) {
                    Ok(a) => a.map(Arc::new),
                    Err(e) => {
                        eprintln!("wado serve: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                // The issuer's keys before the first request; an issuer that is down now is
                // asked again as requests come (the server starts all the same).
                if let Some(oidc) = auth.as_ref().and_then(|a| a.oidc.clone()) {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    match oidc.refresh(now).await {
                        Ok(n) => tracing::info!("OIDC: {n} keys from the issuer"),
                        Err(e) => tracing::warn!("OIDC: the issuer's keys: {e}"),
                    }
                }
                let dimse_peers = match &settings.dimse_peers {
                    None => None,
                    Some(p) => match std::fs::read_to_string(p)
                        .map_err(|e| e.to_string())
                        .and_then(|t| wado_core::dimse::Peers::parse(&t))
                    {
                        Ok(peers) => Some(Arc::new(peers)),
                        Err(e) => {
                            eprintln!("wado serve: --dimse-peers {}: {e}", p.display());
                            return ExitCode::FAILURE;
                        }
                    },
                };
                let config = Config {
                    dimse_peers,
                    ae_titles: settings.ae_titles.clone(),
                    public_url: settings.public_url.clone(),
                    cors_origins: settings.cors_origins.clone(),
                    allowed_hosts: settings.allowed_hosts.clone(),
                    auth,
                    offload: Some(Arc::new(wado_native::pool::BlockingPool::per_core())),
                    max_results: settings.max_results,
                    max_store_bytes: settings.max_store_mb.saturating_mul(1 << 20),
                    max_instance_bytes: settings.max_instance_mb.saturating_mul(1 << 20),
                    read_only: settings.read_only,
                    allow_anonymous_writes: settings.allow_anonymous_writes,
                    share_viewer: settings.share_viewer.clone(),
                    audit: settings.audit_log.is_some() || settings.audit_syslog.is_some(),
                    max_store_parts: settings.max_store_instances,
                    max_convert_bytes: settings.max_convert_mb.saturating_mul(1 << 20),
                    conversion_memory: settings.conversion_memory_mb.saturating_mul(1 << 20),
                    keep_removed: settings.keep_removed,
                    scheme: if settings.tls.is_some() {
                        "https".into()
                    } else {
                        "http".into()
                    },
                    ..Config::default()
                };
                run_serve(settings, config).await
            }
        }
    })
}

/// DICOM TLS for `wado echo` and `wado send`.
#[derive(Debug, clap::Args)]
struct ScuTls {
    /// Associate over TLS, verifying the peer's certificate against these CA certificates
    /// (PEM); the peer's host must be named in its certificate.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Our certificate (PEM), for a peer that asks for one; needs --tls-key and --tls-ca.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl ScuTls {
    fn config(&self) -> Result<Option<wado_native::dimse::scu::Tls>, String> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let identity = self.tls_cert.as_deref().zip(self.tls_key.as_deref());
        wado_native::dimse::tls::client_config(ca, identity).map(Some)
    }
}

async fn run_send(
    target: wado_native::dimse::scu::Target,
    paths: Vec<PathBuf>,
    calling_ae: String,
    tls: ScuTls,
) -> ExitCode {
    use wado_native::dimse::scu::{send, Sent};
    let tls = match tls.config() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("wado send: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut files = Vec::new();
    for p in &paths {
        for e in walkdir::WalkDir::new(p).sort_by_file_name() {
            match e {
                Ok(e) if e.file_type().is_file() => files.push(e.into_path()),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("wado send: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let started = std::time::Instant::now();
    let result = send(
        &calling_ae,
        &target,
        tls.as_ref(),
        &files,
        |file, sent| match sent {
            Sent::Stored(Some(note)) => eprintln!("{}: stored ({note})", file.display()),
            Sent::Stored(None) => {}
            Sent::Failed(why) => eprintln!("{}: not stored: {why}", file.display()),
        },
    )
    .await;
    match result {
        Ok((stored, failed)) => {
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            println!(
                "sent {stored}, failed {failed} ({:.1} s, {:.0} files/s)",
                secs,
                stored as f64 / secs
            );
            if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("wado send: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_store(paths: Vec<PathBuf>, opts: wado_native::stow_client::Options) -> ExitCode {
    use wado_native::stow_client::{run, Sent};
    let started = std::time::Instant::now();
    let result = run(&paths, &opts, |file, sent| match sent {
        Sent::Stored(Some(note)) => eprintln!("{}: stored ({note})", file.display()),
        Sent::Stored(None) => {}
        Sent::Failed(why) => eprintln!("{}: not stored: {why}", file.display()),
    })
    .await;
    match result {
        Ok(s) => {
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            println!(
                "stored {}, failed {} ({} requests, {:.1} MB in {:.1} s, {:.0} files/s, {:.1} MB/s)",
                s.stored,
                s.failed,
                s.requests,
                s.bytes as f64 / 1e6,
                secs,
                (s.stored + s.failed) as f64 / secs,
                s.bytes as f64 / 1e6 / secs
            );
            if s.failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("wado store: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_import(
    data: PathBuf,
    public_url: String,
    ae_title: String,
    durable: bool,
    index: Option<String>,
    paths: Vec<PathBuf>,
) -> ExitCode {
    let is_s3 = data.to_string_lossy().starts_with("s3://");
    let index = match index.as_deref() {
        Some("none") => None,
        None if is_s3 => None,
        spec => match wado_native::index::open_lasting(spec, &data, durable).await {
            Ok(i) => i,
            Err(e) => {
                eprintln!("wado import: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let store = match wado_native::open_store(&data, durable)
        .and_then(|s| wado_core::layout::partition(&s, &ae_title).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wado import: cannot open store {e}");
            return ExitCode::FAILURE;
        }
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let opts = import::Options {
        public_url,
        ae_title,
        concurrency: cores * 4,
        progress: std::io::stderr().is_terminal(),
        index,
    };
    let started = std::time::Instant::now();
    let result = import::run(store, &paths, &opts, |path, r| match r {
        import::FileResult::Rejected(reason) => eprintln!("rejected {}: {reason}", path.display()),
        import::FileResult::Failed(reason) => eprintln!("failed {}: {reason}", path.display()),
        import::FileResult::Done(status, warnings) => {
            for w in warnings {
                eprintln!("warning {}: {w}", path.display());
            }
            if *status == wado_core::ingest::Status::Replaced {
                eprintln!("replaced the stored instance with {}", path.display())
            }
        }
    })
    .await;
    match result {
        Ok(summary) => {
            println!("{}", import::summary_line(&summary, started.elapsed()));
            if summary.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("wado import: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The store and the lasting index of a command that changes them (`delete`, `purge`).
async fn open_archive(
    command: &str,
    data: &std::path::Path,
    index: Option<&str>,
) -> Result<(Arc<dyn wado_core::Store>, wado_core::search::SharedIndex), String> {
    let store = wado_native::open_store(data, true)
        .map_err(|e| format!("wado {command}: cannot open store {e}"))?;
    let index = match wado_native::index::open_lasting(index, data, true).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            return Err(format!(
            "wado {command}: say --index (the archive's index: a SQLite file or a PostgreSQL URL)"
        ))
        }
        Err(e) => return Err(format!("wado {command}: {e}")),
    };
    Ok((store, index))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn run_delete(
    data: PathBuf,
    index: Option<String>,
    ae_title: String,
    study: String,
    series: Option<String>,
    instance: Option<String>,
) -> ExitCode {
    use wado_core::{Target, Uid};
    let parsed = (|| -> Result<Target, wado_core::Error> {
        let study = Uid::parse(&study)?;
        Ok(match (series, instance) {
            (None, _) => Target::Study { study },
            (Some(se), None) => Target::Series {
                study,
                series: Uid::parse(&se)?,
            },
            (Some(se), Some(i)) => Target::Instance {
                study,
                series: Uid::parse(&se)?,
                instance: Uid::parse(&i)?,
            },
        })
    })();
    let target = match parsed {
        Ok(t) => t,
        Err(e) => {
            eprintln!("wado delete: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (store, index) = match open_archive("delete", &data, index.as_deref()).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let part = match wado_core::layout::partition(&store, &ae_title) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wado delete: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    match wado_core::ingest::delete(
        &*part,
        &*index,
        &ae_title,
        &target,
        now_secs(),
        rand::random(),
    )
    .await
    {
        Ok(d) if d.instances == 0 => {
            eprintln!("wado delete: nothing stored at {}", target.path());
            ExitCode::FAILURE
        }
        Ok(d) => {
            println!(
                "deleted {} instance(s) of {} in {:.3} s (objects purged after the grace period, or by `wado purge`)",
                d.instances,
                target.path(),
                started.elapsed().as_secs_f64()
            );
            if d.restored > 0 {
                println!(
                    "brought back {} instance(s) the deleted rejection note(s) had rejected",
                    d.restored
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wado delete: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_correct(
    data: PathBuf,
    index: Option<String>,
    ae_title: String,
    study: String,
    values: Vec<String>,
) -> ExitCode {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("wado correct: {e}");
        ExitCode::FAILURE
    };
    let study = match wado_core::Uid::parse(&study) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let mut pairs = Vec::new();
    for v in &values {
        match v.split_once('=') {
            Some(p) => pairs.push(p),
            None => return fail(&format!("{v:?}: Keyword=value expected")),
        }
    }
    let correction = match wado_core::ingest::Correction::from_pairs(&pairs) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let (store, index) = match open_archive("correct", &data, index.as_deref()).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let part = match wado_core::layout::partition(&store, &ae_title) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let layout = match wado_core::ingest::ensure_layout(
        &*part,
        Some((&*index, &ae_title)),
        DEFAULT_PUBLIC_URL,
        &ae_title,
    )
    .await
    {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let started = std::time::Instant::now();
    let batch = wado_core::ingest::Batch::new(layout, now_secs(), rand::random()).with_index(
        index.clone(),
        &ae_title,
        None,
    );
    match wado_core::ingest::correct(&batch, &*part, &study, &correction).await {
        Ok(c) if c.instances == 0 && c.unchanged == 0 => {
            fail(&format!("no study {study} is stored"))
        }
        Ok(c) => {
            println!(
                "corrected {} instance(s) of study {study} in {:.3} s ({} already held the values; previous versions purged after the grace period, or by `wado purge`)",
                c.instances,
                started.elapsed().as_secs_f64(),
                c.unchanged
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

async fn run_purge(
    data: PathBuf,
    index: Option<String>,
    mut ae_titles: Vec<String>,
    older_than: u64,
    rejected: bool,
) -> ExitCode {
    if ae_titles.is_empty() {
        ae_titles.push(DEFAULT_AE_TITLE.to_owned());
    }
    let (store, index) = match open_archive("purge", &data, index.as_deref()).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for ae in &ae_titles {
        let part = match wado_core::layout::partition(&store, ae) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("wado purge: {e}");
                return ExitCode::FAILURE;
            }
        };
        if rejected {
            let statements = wado_core::search::schema::retire_rejected(
                index.dialect(),
                ae,
                now_secs().saturating_sub(older_than),
            );
            if let Err(e) = index.execute(statements).await {
                eprintln!("wado purge: {ae}: {e}");
                return ExitCode::FAILURE;
            }
        }
        // Up to the end: a batch at a time.
        let mut total = 0;
        loop {
            match wado_core::ingest::sweep(&*part, &*index, ae, now_secs(), older_than, 10_000)
                .await
            {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) => {
                    eprintln!("wado purge: {ae}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        println!("{ae}: purged the objects of {total} removed version(s)");
    }
    ExitCode::SUCCESS
}

async fn run_reindex(
    data: PathBuf,
    index: Option<String>,
    sql_out: Option<PathBuf>,
    mut ae_titles: Vec<String>,
) -> ExitCode {
    use wado_native::index::SqlFile;
    if ae_titles.is_empty() {
        ae_titles.push(DEFAULT_AE_TITLE.to_owned());
    }
    let store = match wado_native::open_store(&data, true) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wado reindex: cannot open store {e}");
            return ExitCode::FAILURE;
        }
    };
    let file = Arc::new(SqlFile::default());
    let target: wado_core::search::SharedIndex = match &sql_out {
        Some(_) => file.clone(),
        None => match wado_native::index::connect_lasting(index.as_deref(), &data).await {
            Ok(Some(i)) => i,
            Ok(None) => {
                eprintln!("wado reindex: say --index FILE (an index in memory would be lost)");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("wado reindex: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    // The schema: in the file, to create it where it is loaded; else an index of another
    // version is dropped and made anew.
    let opened = if sql_out.is_some() {
        target
            .execute(wado_core::search::schema::create(target.dialect()))
            .await
            .map_err(wado_core::Error::from)
    } else {
        wado_core::search::open_rebuilt(&*target).await
    };
    if let Err(e) = opened {
        eprintln!("wado reindex: {e}");
        return ExitCode::FAILURE;
    }
    let started = std::time::Instant::now();
    for ae in &ae_titles {
        let part = match wado_core::layout::partition(&store, ae) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("wado reindex: {e}");
                return ExitCode::FAILURE;
            }
        };
        match wado_core::ingest::reindex(&*part, &*target, ae).await {
            Ok((studies, instances)) => println!(
                "{ae}: indexed {studies} studies, {instances} instances in {:.1} s",
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!("wado reindex: {ae}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(path) = sql_out {
        let lines = file.lines.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = lines.join("\n");
        text.push('\n');
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("wado reindex: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Opens the search index of `wado serve`; one in memory is filled from the store first.
async fn open_serve_index(
    settings: &Settings,
    store: &Arc<dyn wado_core::Store>,
) -> Result<wado_core::search::SharedIndex, String> {
    use wado_native::index::IndexSpec;
    let spec = IndexSpec::resolve(settings.index.as_deref(), &settings.data)?;
    let limits = wado_native::index::QueryLimits {
        timeout: std::time::Duration::from_secs(settings.search_timeout),
        ..Default::default()
    };
    let index = spec.open_with(settings.durable, limits).await?;
    if spec == IndexSpec::Memory {
        for ae in &settings.ae_titles {
            let part = wado_core::layout::partition(store, ae).map_err(|e| e.to_string())?;
            let (studies, instances) = wado_core::ingest::reindex(&*part, &*index, ae)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(
                "search index in memory: {studies} studies, {instances} instances of {ae} (say --index FILE to keep one)"
            );
        }
    }
    Ok(index)
}

async fn run_serve(settings: Settings, mut config: Config) -> ExitCode {
    let Settings {
        ref data,
        bind,
        max_requests,
        shutdown_timeout,
        header_timeout,
        write_timeout,
        h2_max_streams,
        ref tls,
        ref demo_dir,
        ..
    } = settings;
    let shutdown_timeout = std::time::Duration::from_secs(shutdown_timeout);
    let audit = match (&settings.audit_log, &settings.audit_syslog) {
        (None, None) => None,
        (file, syslog) => {
            match wado_native::audit::AuditLog::open(file.as_deref(), syslog.as_deref()) {
                Ok(log) => Some(Arc::new(log)),
                Err(e) => {
                    eprintln!("wado serve: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let store = match wado_native::open_store(data, settings.durable) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wado serve: cannot open store {e}");
            return ExitCode::FAILURE;
        }
    };
    match open_serve_index(&settings, &store).await {
        Ok(index) => config.index = Some(index),
        Err(e) => {
            eprintln!("wado serve: search index: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = config.check() {
        eprintln!("wado serve: {e}");
        return ExitCode::FAILURE;
    }
    let policy = config.write_policy();
    if config.allow_anonymous_writes && config.auth.is_none() && !config.read_only {
        tracing::warn!("{policy}");
    } else {
        tracing::info!("{policy}");
    }
    if !settings.durable {
        tracing::warn!("--no-fsync: writes do not wait for the disk; a power loss may lose what was acknowledged");
    }
    let hooked = config.index.clone().zip(settings.webhook.clone());
    let partitions = config.ae_titles.clone();
    let service = Arc::new(Service::new(store, config));
    if let Some((index, (url, secret_file, lease))) = hooked {
        let secret = match std::fs::read_to_string(&secret_file) {
            Ok(t) => t.lines().next().unwrap_or("").trim().as_bytes().to_vec(),
            Err(e) => {
                eprintln!(
                    "wado serve: --webhook-secret-file {}: {e}",
                    secret_file.display()
                );
                return ExitCode::FAILURE;
            }
        };
        if secret.len() < 16 {
            eprintln!("wado serve: the webhook secret is shorter than 16 bytes");
            return ExitCode::FAILURE;
        }
        for part in partitions {
            if let Err(e) =
                wado_native::webhook::spawn(index.clone(), url.clone(), secret.clone(), part, lease)
            {
                eprintln!("wado serve: {e}");
                return ExitCode::FAILURE;
            }
        }
        tracing::info!("pushing the change feed to {url}");
    }
    if let Some(port) = settings.dimse_port {
        let at = std::net::SocketAddr::new(bind.ip(), port);
        let dimse = match tokio::net::TcpListener::bind(at).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("wado serve: cannot listen for DIMSE on {at}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let tls = match &settings.dimse_tls {
            None => None,
            Some((cert, key, ca)) => {
                match wado_native::dimse::tls::server_config(cert, key, ca.as_deref()) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        eprintln!("wado serve: DICOM TLS: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        };
        let tls_client = match &settings.dimse_tls_ca {
            None => None,
            Some(ca) => {
                let ours = settings
                    .dimse_tls
                    .as_ref()
                    .map(|(c, k, _)| (c.as_path(), k.as_path()));
                match wado_native::dimse::tls::client_config(ca, ours) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        eprintln!("wado serve: --dimse-tls-ca: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        };
        let options = wado_native::dimse::Options {
            idle: std::time::Duration::from_secs(settings.dimse_timeout),
            max_data_set: service.config().max_instance_bytes,
            audit: audit.clone(),
            tls,
            tls_client,
            ..Default::default()
        };
        tracing::info!(
            "DIMSE{} on {} (called AE titles: {}){}",
            match &settings.dimse_tls {
                None => "",
                Some((_, _, None)) => " over TLS",
                Some((_, _, Some(_))) => " over TLS, client certificates required,",
            },
            dimse.local_addr().unwrap_or(at),
            service.config().ae_titles.join(","),
            if service.config().dimse_peers.is_some() {
                ""
            } else {
                "; no peers table: any peer may associate"
            }
        );
        tokio::spawn(wado_native::dimse::serve(dimse, service.clone(), options));
    }
    let listener = match tokio::net::TcpListener::bind(bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wado serve: cannot listen on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(bind);

    tracing::info!(
        "serving {} on {}://{addr}/dcm4chee-arc/aets/{}/rs",
        data.display(),
        if tls.is_some() { "https" } else { "http" },
        service.config().ae_titles.join(",")
    );
    let shutdown = async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        return;
                    }
                };
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down: no new connections; finishing requests in flight");
    };
    let config = service.config();
    if config.public_url.is_none() && config.allowed_hosts.is_empty() && !addr.ip().is_loopback() {
        tracing::warn!(
            "neither --public-url nor --allowed-host is set: URIs in responses name whatever host a request says"
        );
    }
    if let Some(d) = &demo_dir {
        tracing::info!(dir = %d.display(), "serving the demo at /demo/");
    }
    let router = app(AppState::new(service, Some(max_requests))
        .with_demo(demo_dir.clone())
        .with_audit(audit)
        .with_timeouts(wado_native::Timeouts {
            write: std::time::Duration::from_secs(write_timeout),
            body: std::time::Duration::from_secs(header_timeout),
        }));
    let limits = Limits {
        header_timeout: std::time::Duration::from_secs(header_timeout),
        write_timeout: std::time::Duration::from_secs(write_timeout),
        h2_max_streams,
    };
    serve(
        listener,
        router,
        tls.clone(),
        limits,
        shutdown,
        shutdown_timeout,
    )
    .await
}

/// What one connection may cost.
struct Limits {
    /// For a request's headers, and of idleness between requests (hyper's header read timer
    /// starts when the connection waits for a request).
    header_timeout: std::time::Duration,
    /// For a write that makes no progress (conn::WriteTimeout).
    write_timeout: std::time::Duration,
    /// HTTP/2 streams per connection.
    h2_max_streams: u32,
}

/// Serves HTTP, or HTTPS with rustls (certificate chain and key in PEM), with the connection
/// limits. On the shutdown signal, no new connections; those in flight get `shutdown_timeout`.
async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    shutdown_timeout: std::time::Duration,
) -> ExitCode {
    use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
    use hyper_util::rt::TokioTimer;
    let std_listener = match listener.into_std() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wado serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(shutdown_timeout));
    });
    let mut server = match axum_server::from_tcp(std_listener) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wado serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let builder = server.http_builder();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout);
    let acceptor = wado_native::conn::TimeoutAcceptor {
        first_read_timeout: limits.header_timeout,
        write_timeout: limits.write_timeout,
    };
    // A connection that has not sent a whole first request in time is closed, whatever it
    // sent: hyper's protocol detection (one byte, 23 of the 24 bytes of the HTTP/2 preface)
    // has no timer of its own.
    let server = server
        .handle(handle)
        .first_request_timeout(limits.header_timeout);
    let result = match tls {
        None => {
            server
                .acceptor(acceptor)
                .serve(router.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .await
        }
        Some((cert, key)) => {
            let config = match RustlsConfig::from_pem_file(&cert, &key).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!(
                        "wado serve: cannot load --tls-cert {} / --tls-key {}: {e}",
                        cert.display(),
                        key.display()
                    );
                    return ExitCode::FAILURE;
                }
            };
            server
                .acceptor(RustlsAcceptor::new(config).acceptor(acceptor))
                .serve(router.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wado serve: {e}");
            ExitCode::FAILURE
        }
    }
}
