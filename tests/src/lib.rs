//! Support for the end-to-end tests: the real `wado` binary (import and serve), a free port
//! on 127.0.0.1, a real HTTP client, and DCMTK as the independent oracle.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod load;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The default service root path.
pub const ROOT: &str = "/dcm4chee-arc/aets/DCM4CHEE/rs";

/// The repository's `tests/` folder.
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fixture corpus.
pub fn corpus() -> PathBuf {
    tests_dir().join("fixtures/corpus")
}

/// The DICOM files of the corpus (its top level: the malformed ones are in a folder), sorted.
pub fn corpus_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    v.sort();
    v
}

/// The `wado` binary: `$WADO_BIN`, else `target/<profile>/wado` next to this test binary.
pub fn wado_bin() -> PathBuf {
    if let Ok(p) = std::env::var("WADO_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/wado
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("wado");
    assert!(
        bin.is_file(),
        "{} not found: build it first (cargo build -p wado-native), or set WADO_BIN",
        bin.display()
    );
    bin
}

/// Runs `wado import --data DATA PATHS...`.
pub fn import(data: &Path, paths: &[&Path]) -> Output {
    import_args(data, &[], paths)
}

/// Runs `wado import --data DATA ARGS... PATHS...`.
pub fn import_args(data: &Path, args: &[&str], paths: &[&Path]) -> Output {
    let mut cmd = Command::new(wado_bin());
    cmd.arg("import").arg("--data").arg(data).args(args);
    for p in paths {
        cmd.arg(p);
    }
    cmd.output().expect("run wado import")
}

/// Which server the suite runs against: `WADO_TARGET=edge` runs the same tests against the
/// Cloudflare Worker under `wrangler dev` (local mode, loopback), with the data loaded into its
/// local R2; anything else runs `wado serve`.
pub fn edge() -> bool {
    std::env::var("WADO_TARGET").is_ok_and(|t| t == "edge")
}

/// The repository root.
pub fn repo_dir() -> PathBuf {
    tests_dir().parent().expect("repo").to_path_buf()
}

/// A free loopback TCP port, never one this process handed out before: tests of one binary
/// run at once, and a port given to one server but not yet bound by it is free to the kernel.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A running server (`wado serve`, or the worker under `wrangler dev`), stopped on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The worker's local state (its R2 bucket), removed on drop.
    _state: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts the target server on a free port over the store `data` (a `wado import`
    /// directory) with extra `wado serve` arguments, and waits until it answers.
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        if edge() {
            return Server::start_edge(data, extra);
        }
        Server::start_native(data, extra)
    }

    /// Starts `wado serve`, whatever the target.
    pub fn start_native(data: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let child = Command::new(wado_bin())
            .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn wado serve");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "wado serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _state: None,
        }
    }

    /// The worker: `data` loaded into a fresh local R2 (edge/load-local-r2.mjs), `wrangler dev`
    /// on a free port with the `wado serve` arguments turned into worker variables.
    fn start_edge(data: &Path, extra: &[&str]) -> Server {
        let mut vars: Vec<(String, Vec<String>)> = Vec::new();
        let mut add = |k: &str, v: String| match vars.iter_mut().find(|(n, _)| n == k) {
            Some((_, list)) => list.push(v),
            None => vars.push((k.to_owned(), vec![v])),
        };
        let mut it = extra.iter();
        while let Some(flag) = it.next() {
            if *flag == "--allow-anonymous-writes" {
                add("ALLOW_ANONYMOUS_WRITES", "true".into());
                continue;
            }
            let mut value = || it.next().expect("a value").to_string();
            match *flag {
                "--allowed-host" => add("ALLOWED_HOSTS", value()),
                "--max-store-instances" => add("MAX_STORE_INSTANCES", value()),
                "--public-url" => add("PUBLIC_URL", value()),
                "--ae-title" => add("AE_TITLES", value()),
                "--cors-origin" => add("CORS_ORIGINS", value()),
                "--tokens-file" => add("TOKENS", std::fs::read_to_string(value()).unwrap()),
                "--jwt-keys" => add("JWT_KEYS", std::fs::read_to_string(value()).unwrap()),
                "--jwt-issuer" => add("JWT_ISSUER", value()),
                "--jwt-audience" => add("JWT_AUDIENCE", value()),
                "--jwt-max-lifetime" => add("JWT_MAX_LIFETIME", value()),
                "--oidc-issuer" => add("OIDC_ISSUER", value()),
                "--jwt-roles" => add("JWT_ROLES", value()),
                "--share-keys" => add("SHARE_KEYS", std::fs::read_to_string(value()).unwrap()),
                "--share-revoked" => {
                    add("SHARE_REVOKED", std::fs::read_to_string(value()).unwrap())
                }
                "--share-viewer" => add("SHARE_VIEWER", value()),
                // The worker's records go to its log (`AUDIT = "log"`): Server::worker_log.
                "--audit-log" => {
                    value();
                    add("AUDIT", "log".into())
                }
                "--jwt-roles-claim" => add("JWT_ROLES_CLAIM", value()),
                other => panic!("{other}: no worker equivalent; this test is native-only"),
            }
        }
        let vars: Vec<(String, String)> = vars.into_iter().map(|(k, v)| (k, v.join(","))).collect();
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Server::start_worker(Some(data), &vars)
    }

    /// Starts the worker under `wrangler dev` with these variables, its local R2 bucket
    /// loaded with `data` (a `wado import` directory) or empty. A start that fails is tried
    /// again with fresh ports, twice: with tests starting workers side by side, workerd now and
    /// then fails to come up ("The Workers runtime failed to start"; a port taken between
    /// choosing and binding it, seen once in a CI run).
    pub fn start_worker(data: Option<&Path>, vars: &[(&str, &str)]) -> Server {
        Server::start_worker_with(data, vars, "", &[])
    }

    /// [`Server::start_worker`] with `extra` appended to edge/wrangler.toml (bindings: a queue
    /// producer), and more workers in the same `wrangler dev` session (`-c` each: a queue's
    /// consumer), from their own configuration files.
    pub fn start_worker_with(
        data: Option<&Path>,
        vars: &[(&str, &str)],
        extra: &str,
        more: &[&Path],
    ) -> Server {
        let mut last = String::new();
        for attempt in 1..=3 {
            match Server::launch_worker(data, vars, extra, more) {
                Ok(server) => return server,
                Err(log) => {
                    eprintln!("wrangler dev did not start (attempt {attempt} of 3)");
                    last = log;
                }
            }
        }
        panic!("wrangler dev did not start, three times; the last log:\n{last}");
    }

    fn launch_worker(
        data: Option<&Path>,
        vars: &[(&str, &str)],
        extra: &str,
        more: &[&Path],
    ) -> Result<Server, String> {
        use std::os::unix::process::CommandExt as _;
        let repo = repo_dir();
        assert!(
            repo.join("edge/dist/index_bg.wasm").is_file(),
            "build the worker first: bash scripts/edge-build.sh"
        );
        let state = tempfile::Builder::new()
            .prefix("wado-edge-")
            .tempdir()
            .unwrap();
        if let Some(data) = data {
            let out = Command::new("node")
                .arg(repo.join("edge/load-local-r2.mjs"))
                .arg(data)
                .arg("--persist")
                .arg(state.path().join("v3/r2"))
                .output()
                .expect("node");
            assert!(
                out.status.success(),
                "loading local R2: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Its search index into the local D1, as a deployment loads it (edge/wrangler.toml).
            let sql = state.path().join("index.sql");
            let mut reindex = Command::new(wado_bin());
            reindex
                .arg("reindex")
                .arg("--data")
                .arg(data)
                .arg("--sql-out")
                .arg(&sql);
            let aes = vars
                .iter()
                .find(|(k, _)| *k == "AE_TITLES")
                .map_or("DCM4CHEE", |(_, v)| v);
            for ae in aes.split(',') {
                reindex.args(["--ae-title", ae.trim()]);
            }
            let out = reindex.output().expect("wado reindex");
            assert!(
                out.status.success(),
                "wado reindex --sql-out: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = Command::new(repo.join("node_modules/.bin/wrangler"))
                .current_dir(repo.join("edge"))
                .args(["d1", "execute", "INDEX", "--local", "--persist-to"])
                .arg(state.path())
                .arg("--file")
                .arg(&sql)
                .env("WRANGLER_SEND_METRICS", "false")
                .env("CI", "1")
                .stdin(Stdio::null())
                .output()
                .expect("wrangler d1 execute");
            assert!(
                out.status.success(),
                "loading local D1: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = free_port();
        let log = std::fs::File::create(state.path().join("wrangler.log")).unwrap();
        let mut cmd = Command::new(repo.join("node_modules/.bin/wrangler"));
        cmd.current_dir(repo.join("edge"))
            .args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--inspector-port", &free_port().to_string()])
            .arg("--persist-to")
            .arg(state.path())
            .arg("--log-level")
            .arg(std::env::var("WADO_TEST_WORKER_LOG_LEVEL").unwrap_or_else(|_| "info".into()))
            .arg("--show-interactive-dev-session=false")
            // `GET /__scheduled` runs the cron trigger (a cache following its origin's feed).
            .arg("--test-scheduled");
        if !extra.is_empty() || !more.is_empty() {
            let base = std::fs::read_to_string(repo.join("edge/wrangler.toml")).unwrap();
            let main = repo.join("edge/entry.mjs");
            let config = base.replace(
                "main = \"entry.mjs\"",
                &format!("main = {:?}", main.display().to_string()),
            );
            assert_ne!(
                config, base,
                "edge/wrangler.toml names its entry `main = \"entry.mjs\"`"
            );
            let path = state.path().join("wrangler.toml");
            std::fs::write(&path, format!("{config}\n{extra}\n")).unwrap();
            cmd.arg("-c").arg(&path);
            for m in more {
                cmd.arg("-c").arg(m);
            }
        }
        for (k, v) in vars {
            cmd.arg("--var").arg(format!("{k}:{v}"));
        }
        let child = cmd
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn wrangler dev (npm install first: bash scripts/setup.sh)");
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _state: Some(state),
        };
        // Ready when the worker answers (the proxy may listen before the worker is up).
        let deadline = Instant::now() + Duration::from_secs(90);
        let log_path = server
            ._state
            .as_ref()
            .map(|s| s.path().join("wrangler.log"));
        let lost_port = || {
            log_path
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .is_some_and(|l| l.contains("Address already in use"))
        };
        loop {
            // Something answering is this worker only if wrangler got its port (another
            // process may have taken it since it was chosen): else this attempt failed.
            if probe_status(port) == Some(404) && !lost_port() {
                break;
            }
            if Instant::now() > deadline || !server.is_running() || lost_port() {
                let log = server
                    ._state
                    .as_ref()
                    .map(|s| {
                        std::fs::read_to_string(s.path().join("wrangler.log")).unwrap_or_default()
                    })
                    .unwrap_or_default();
                return Err(log);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// What `wrangler dev` printed so far (the worker's console), for a worker.
    pub fn worker_log(&self) -> Option<String> {
        let state = self._state.as_ref()?;
        std::fs::read_to_string(state.path().join("wrangler.log")).ok()
    }

    /// The service root URL.
    pub fn root(&self) -> String {
        format!("{}{ROOT}", self.base)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let (true, Some(state)) = (std::thread::panicking(), &self._state) {
            // A failing test shows what the worker runtime said (its log goes with its state).
            let log =
                std::fs::read_to_string(state.path().join("wrangler.log")).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("--- wrangler dev's log (last lines) ---\n{tail}");
        }
        if let (Some(dir), Some(state)) = (std::env::var_os("WADO_TEST_WORKER_LOGS"), &self._state)
        {
            // For a hunt: every worker's log kept in this directory.
            let _ = std::fs::copy(
                state.path().join("wrangler.log"),
                Path::new(&dir).join(format!("wrangler-{}.log", self.child.id())),
            );
        }
        if self._state.is_some() {
            // wrangler starts esbuild and workerd children: stop the whole group.
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && self.is_running() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of `GET /health-probe` (a path the worker answers 404), `None` until something
/// answers HTTP on the port.
fn probe_status(port: u16) -> Option<u16> {
    raw_status(port, "GET", "/health-probe")
}

/// The status of a body-less request, `None` until something answers HTTP on the port.
fn raw_status(port: u16, method: &str, path: &str) -> Option<u16> {
    use std::io::{Read as _, Write as _};
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A parsed part: header fields (names lower-case) and body.
pub type OwnedPart = (Vec<(String, String)>, Vec<u8>);

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Body bytes (not decoded: Content-Encoding is left to the test).
    pub body: Vec<u8>,
}

impl Resp {
    /// A header value, or "".
    pub fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// The parts of a multipart body, parsed with wado-core's parser (checked independently by
    /// byte comparisons in the tests).
    pub fn parts(&self) -> Vec<OwnedPart> {
        let ct = self.header("content-type");
        let boundary = wado_core::wire::multipart::boundary_of(&ct)
            .unwrap_or_else(|| panic!("no boundary in {ct:?}"));
        wado_core::wire::multipart::parse(&boundary, &self.body)
            .expect("multipart body")
            .into_iter()
            .map(|p| {
                (
                    p.headers
                        .iter()
                        .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
                        .collect(),
                    p.body.to_vec(),
                )
            })
            .collect()
    }
}

/// True for the answer `wrangler dev`'s proxy gives in place of the worker's when it swapped
/// the worker runtime under a request (503, "Your worker restarted mid-request"; it repeats
/// only GET and HEAD itself). Seen now and then on a loaded 2-core machine; a deployed worker
/// never says it, so a test may send such a request again. Whether the first attempt took
/// effect is unknown: the caller decides what a repeat may answer.
pub fn worker_restarted(status: u16, body: &[u8]) -> bool {
    status == 503 && body.starts_with(b"Your worker restarted mid-request")
}

/// Sends a request with the given method and headers.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Resp {
    request_with_body(method, url, headers, &[])
}

/// Sends a request with the given method, headers and body (none when empty).
pub fn request_with_body(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    // A server that never answers fails the test instead of stalling the suite.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(180)))
        .build()
        .into();
    let mut builder = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let sent = if body.is_empty() {
        agent.run(builder.body(()).unwrap())
    } else {
        agent.run(builder.body(body.to_vec()).unwrap())
    };
    let mut resp = sent.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let body = if method == "HEAD" {
        Vec::new()
    } else {
        resp.body_mut()
            .with_config()
            .limit(4 << 30)
            .read_to_vec()
            .unwrap_or_else(|e| panic!("{url}: body: {e}"))
    };
    Resp {
        status,
        headers,
        body,
    }
}

/// GET with an optional Accept header.
pub fn get(url: &str, accept: Option<&str>) -> Resp {
    match accept {
        Some(a) => request("GET", url, &[("accept", a)]),
        None => request("GET", url, &[]),
    }
}

/// A DICOM file's Study, Series and SOP Instance UIDs, read by DCMTK's dcmdump.
pub fn uids(file: &Path) -> (String, String, String) {
    // The full dump indents nested elements: top-level ones start at column 0.
    let out = Command::new("dcmdump")
        .args(["-q", "-M"])
        .arg(file)
        .output()
        .expect("dcmdump (apt-get install dcmtk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let val = |tag: &str| -> String {
        let line = text
            .lines()
            .find(|l| l.starts_with(tag))
            .unwrap_or_else(|| panic!("{tag} in {}", file.display()));
        let s = line.find('[').unwrap() + 1;
        let e = line[s..].find(']').unwrap() + s;
        line[s..e].to_owned()
    };
    (val("(0020,000d)"), val("(0020,000e)"), val("(0008,0018)"))
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Writes bytes to a temporary file and returns its path (kept with the directory).
pub fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Runs a command and returns its stdout; panics with stderr on failure.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `n` copies of a fixture, each with its own SOP Instance UID (patched in place, same length,
/// in the data set and the File Meta).
pub fn make_copies(dir: &Path, n: usize) -> Vec<PathBuf> {
    let src = std::fs::read(corpus().join("ct_small_ele.dcm")).unwrap();
    let (_, _, sop) = uids(&corpus().join("ct_small_ele.dcm"));
    let stem = &sop[..sop.len() - 5];
    (0..n)
        .map(|i| {
            let new_sop = format!("{stem}{:05}", 50_000 + i);
            assert_eq!(new_sop.len(), sop.len());
            let mut bytes = src.clone();
            let mut pos = 0;
            while let Some(at) = bytes[pos..]
                .windows(sop.len())
                .position(|w| w == sop.as_bytes())
            {
                bytes[pos + at..pos + at + sop.len()].copy_from_slice(new_sop.as_bytes());
                pos += at + sop.len();
            }
            write_temp(dir, &format!("copy{i:04}.dcm"), &bytes)
        })
        .collect()
}

/// A local S3-compatible server (moto's, from PyPI, installed by scripts/setup.sh into
/// `.tools/s3venv`) on a free loopback port, stopped on drop; with a bucket made.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

impl S3Server {
    /// Starts the server and creates `bucket`.
    pub fn start(bucket: &str) -> S3Server {
        let bin = repo_dir().join(".tools/s3venv/bin/moto_server");
        assert!(
            bin.is_file(),
            "{} missing: run bash scripts/setup.sh",
            bin.display()
        );
        let port = free_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server");
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if raw_status(port, "PUT", &format!("/{bucket}")) == Some(200) {
                break;
            }
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    /// The `--data` URL of a bucket on this server, with a key prefix.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "s3://{bucket}/{prefix}?endpoint={}&allow_http=true&region=us-east-1",
            self.endpoint
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The AWS credentials the local S3 server accepts (it checks none; the client needs some).
pub const S3_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "wado-test"),
    ("AWS_SECRET_ACCESS_KEY", "wado-test-secret"),
    ("AWS_REGION", "us-east-1"),
];

/// Every file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The binary values of a file as DCMTK's dcmdump writes them out (`+W`), in file order (for
/// encapsulated Pixel Data, one file per fragment at the end), kept in `dir`.
pub fn binary_dumps(file: &Path, dir: &Path) -> Vec<PathBuf> {
    run(Command::new("dcmdump")
        .args(["-q", "+W"])
        .arg(dir)
        .arg(file));
    let mut dumped = walk(dir);
    dumped.sort_by_key(|p| {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .rsplit('.')
            .nth(1)
            .and_then(|n| n.parse::<u32>().ok())
    });
    dumped
}

/// The Pixel Data bytes of a file as DCMTK's dcmdump writes them out (`+W`).
pub fn raw_pixels(file: &Path) -> Vec<u8> {
    let dir = tempdir();
    // Pixel Data is the last binary element: the highest-numbered dump.
    let dumped = binary_dumps(file, dir.path());
    std::fs::read(dumped.last().expect("a pixel data dump")).unwrap()
}

/// The first value of `tag` (a keyword or `gggg,eeee`) as DCMTK's dcmdump prints it: strings
/// without their brackets, numbers as printed, empty when the attribute has no value.
pub fn dcmdump_value(file: &Path, tag: &str) -> String {
    let out = Command::new("dcmdump")
        .args(["-q", "+P", tag])
        .arg(file)
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    // Strings in brackets, numbers bare: `(0028,0010) US 64 ...`; "(no value available)".
    let Some(s) = line.find('[').map(|i| i + 1) else {
        let v = line.split_whitespace().nth(2).unwrap_or("");
        return if v.starts_with('(') {
            String::new()
        } else {
            v.to_owned()
        };
    };
    let e = line[s..].find(']').unwrap() + s;
    line[s..e].to_owned()
}

/// A throwaway PostgreSQL server (Debian's `postgresql` package, installed by
/// scripts/setup.sh): a fresh cluster in a temporary directory, on a free loopback port,
/// stopped on drop. As root (PostgreSQL refuses to run as root) it runs as `nobody`.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_root: bool,
    /// `postgres://wado@127.0.0.1:PORT/postgres`
    pub url: String,
}

impl PgServer {
    fn command(&self, tool: &str) -> Command {
        pg_command(&self.bin, tool, self.as_root)
    }

    /// Starts a new cluster.
    pub fn start() -> PgServer {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                    .filter(|p| p.join("initdb").is_file())
                    .max()
            })
            .expect("PostgreSQL missing: run bash scripts/setup.sh");
        let dir = tempfile::Builder::new()
            .prefix("wado-pg-")
            .tempdir()
            .unwrap();
        // Root owns /proc/self when the tests run as root.
        let as_root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        if as_root {
            std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
        }
        let port = free_port();
        let db = dir.path().join("db");
        let out = pg_command(&bin, "initdb", as_root)
            .arg("-D")
            .arg(&db)
            .args([
                "-U",
                "wado",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let server = PgServer {
            url: format!("postgres://wado@127.0.0.1:{port}/postgres"),
            dir,
            bin,
            as_root,
        };
        let opts = format!(
            "-k {} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off",
            server.dir.path().display()
        );
        let out = server
            .command("pg_ctl")
            .arg("-D")
            .arg(&db)
            .args(["-o", &opts, "-w", "-l"])
            .arg(server.dir.path().join("pg.log"))
            .arg("start")
            .output()
            .expect("pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(server.dir.path().join("pg.log")).unwrap_or_default()
        );
        server
    }
}

fn pg_command(bin: &Path, tool: &str, as_root: bool) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("db"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// Every stored generation of an instance that looks whole is: where an index parses and names
/// its file's size, it names its SHA-256 too (checked with coreutils' sha256sum, not with wado's
/// own hashing); a `.dcm` without an index, with an index cut short or of another size is a
/// write that never finished (objects are written in place; the catalog names a generation only
/// once both are synced). Returns how many
/// complete generations there are (see [`complete_instances`] for instances).
pub fn check_consistent(data: &Path) -> usize {
    complete_generations(data).len()
}

/// The file and index of the instance `sop` in a directory store: its newest generation (the
/// one a later write made; a store written once has one).
pub fn stored_paths(data: &Path, st: &str, se: &str, sop: &str) -> (PathBuf, PathBuf) {
    let dir = data.join(format!("studies/{st}/series/{se}/instances"));
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.ends_with(".dcm")
                && (name == format!("{sop}.dcm") || name.starts_with(&format!("{sop}-")))
        })
        .map(|p| (std::fs::metadata(&p).unwrap().modified().unwrap(), p))
        .collect();
    found.sort();
    let dcm = found
        .pop()
        .unwrap_or_else(|| panic!("no file of {sop} in {}", dir.display()))
        .1;
    let index = PathBuf::from(dcm.to_string_lossy().replace(".dcm", ".index.json"));
    (dcm, index)
}

/// The SOP Instance UIDs with at least one complete generation in a directory store: what a
/// catalog rebuilt from the store (`wado reindex`) would list.
pub fn complete_instances(data: &Path) -> std::collections::BTreeSet<String> {
    complete_generations(data)
        .into_iter()
        .map(|name| {
            let stem = name.trim_end_matches(".dcm");
            stem.split_once('-').map_or(stem, |(sop, _)| sop).to_owned()
        })
        .collect()
}

/// The file names of the complete generations (checked as [`check_consistent`] says).
fn complete_generations(data: &Path) -> Vec<String> {
    let mut complete = Vec::new();
    let mut stack = vec![data.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") || !name.ends_with(".dcm") {
                continue;
            }
            let index = p.with_file_name(name.replace(".dcm", ".index.json"));
            let Ok(idx) = std::fs::read(&index) else {
                continue;
            };
            // Objects are written in place under a generation nobody names until the catalog's
            // commit: a write killed mid-way leaves an index cut short (it does not parse) or a
            // file shorter than its index says. Like a `.dcm` without an index, that is a write
            // that never finished, which `wado reindex` skips too.
            let Ok(idx) = serde_json::from_slice::<serde_json::Value>(&idx) else {
                continue;
            };
            let size = std::fs::metadata(&p).unwrap().len();
            if idx["source"]["size"].as_u64() != Some(size) {
                continue;
            }
            let out = Command::new("sha256sum").arg(&p).output().unwrap();
            let sum = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned();
            assert_eq!(
                idx["source"]["sha256"].as_str(),
                Some(sum.as_str()),
                "{}: content",
                p.display()
            );
            complete.push(name);
        }
    }
    complete
}

/// `tests/oracles/ojph_codec.cpp` built against OpenJPH's library (libopenjph-dev, installed by
/// scripts/setup.sh), once per source change: OpenJPH decoding and encoding with samples as
/// 32-bit integers.
pub fn ojph_codec() -> PathBuf {
    // Once per test process (its tests run on threads at once), and renamed into place so that
    // test processes building it at the same time never see half a file.
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let src = tests_dir().join("oracles/ojph_codec.cpp");
            let bin = repo_dir().join("target/oracles/ojph_codec");
            let fresh = |b: &Path| {
                let (Ok(b), Ok(s)) = (std::fs::metadata(b), std::fs::metadata(&src)) else {
                    return false;
                };
                b.modified().ok() >= s.modified().ok()
            };
            if !fresh(&bin) {
                std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
                let tmp = bin.with_extension(format!("{}.tmp", std::process::id()));
                run(Command::new("g++")
                    .args(["-O2", "-o"])
                    .arg(&tmp)
                    .arg(&src)
                    .arg("-lopenjph"));
                std::fs::rename(&tmp, &bin).unwrap();
            }
            bin
        })
        .clone()
}

/// A binary PNM (P5 grey or P6 colour, maxval 255), as DCMTK's dcmj2pnm and Pillow write them:
/// (width, height, channels, samples).
pub fn read_pnm(path: &Path) -> (usize, usize, usize, Vec<u8>) {
    let b = std::fs::read(path).unwrap();
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b[i] == b'#' {
            while b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let s = i;
        while !b[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(String::from_utf8_lossy(&b[s..i]).into_owned());
    }
    let channels = match fields[0].as_str() {
        "P5" => 1,
        "P6" => 3,
        m => panic!("{m}: not a binary PNM"),
    };
    assert_eq!(fields[3], "255", "8-bit PNM");
    let (w, h): (usize, usize) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    (w, h, channels, b[i + 1..i + 1 + w * h * channels].to_vec())
}

/// One request the webhook receiver got: its number, what it answered, its headers and body,
/// and when.
pub struct Delivery {
    /// Its number (0 first).
    pub n: usize,
    /// What it answered.
    pub status: u16,
    /// Its headers, names in lower case.
    pub headers: std::collections::BTreeMap<String, String>,
    /// Its body.
    pub body: Vec<u8>,
    /// When it came.
    pub at: std::time::Instant,
}

/// A webhook (or queue consumer's) receiver on a loopback port that answers 500 to every other request (the first
/// included) and 200 to the rest, keeping every request.
pub fn flaky_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Delivery>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: std::sync::Arc<std::sync::Mutex<Vec<Delivery>>> = Default::default();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let kept = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (got, calls) = (kept.clone(), calls.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut headers = std::collections::BTreeMap::new();
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                        }
                    }
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let status = if n % 2 == 0 { 500 } else { 200 };
                    got.lock().unwrap().push(Delivery {
                        n,
                        status,
                        headers,
                        body,
                        at: std::time::Instant::now(),
                    });
                    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                    if conn.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, got)
}

/// Runs a command that must succeed; its output (stderr shown when it fails).
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A new P-256 key pair made by OpenSSL: the private key at `private`, its public key at
/// `public` (PEM).
pub fn ec_key_pair(private: &Path, public: &Path) {
    run_ok(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .arg("-out")
            .arg(private),
    );
    run_ok(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(private)
            .arg("-out")
            .arg(public),
    );
}

/// A JWT (ES256) with these claims and, optionally, this `kid`, signed with the P-256 key at
/// `key` by tests/oracles/mint_jwt.py (OpenSSL and Python's standard library, never wado).
pub fn mint_jwt(key: &Path, claims: &serde_json::Value, kid: Option<&str>) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_dir().join("tests/oracles/mint_jwt.py"))
        .arg(key)
        .arg(claims.to_string());
    if let Some(kid) = kid {
        cmd.arg(kid);
    }
    String::from_utf8(run_ok(&mut cmd).stdout)
        .unwrap()
        .trim()
        .to_owned()
}
