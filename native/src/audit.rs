//! The audit trail's sinks natively: each record ([`wado_core::audit`], made by the core) goes
//! to a file (`--audit-log`), one line of JSON appended, and/or to a syslog collector
//! (`--audit-syslog udp://HOST:PORT`), one RFC 5424 message per UDP datagram (RFC 5426) with
//! the record as its MSG, facility 10 (security/authorization) and severity 5 (notice) as
//! IHE ATNA sends them (`<85>`), APP-NAME `wado`, MSGID `DICOM+JSON`.
//!
//! One `write` per line on a file opened for appending, so replicas writing the same file (a
//! shared volume) never interleave within a line. A record a sink cannot take is counted
//! (`wado_audit_failures_total` in `/metrics`) and logged with its request id: never lost
//! silently.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The trail's sinks, shared by the HTTP and DIMSE listeners.
#[derive(Debug, Default)]
pub struct AuditLog {
    file: Option<Mutex<std::fs::File>>,
    syslog: Option<Syslog>,
    failures: AtomicU64,
}

#[derive(Debug)]
struct Syslog {
    socket: std::net::UdpSocket,
    hostname: String,
    procid: String,
}

/// The largest syslog datagram sent (RFC 5426 §3.2: IPv4 collectors take at least 480 bytes,
/// most 64 KiB); a longer record goes to the file only, and is counted as not sent.
const MAX_DATAGRAM: usize = 65_000;

impl AuditLog {
    /// The sinks: the file at `path` (created if need be, opened for appending) and the
    /// syslog collector at `syslog` (`udp://HOST:PORT`).
    pub fn open(path: Option<&Path>, syslog: Option<&str>) -> Result<AuditLog, String> {
        let file = match path {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("--audit-log {}: {e}", p.display()))?,
            )),
            None => None,
        };
        let syslog = match syslog {
            Some(url) => {
                let addr = url
                    .strip_prefix("udp://")
                    .ok_or_else(|| format!("--audit-syslog {url:?}: expected udp://HOST:PORT"))?;
                let socket = std::net::UdpSocket::bind(("0.0.0.0", 0))
                    .and_then(|s| s.connect(addr).map(|()| s))
                    .map_err(|e| format!("--audit-syslog {url}: {e}"))?;
                let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
                    .unwrap_or_else(|| "-".to_owned());
                Some(Syslog {
                    socket,
                    hostname,
                    procid: std::process::id().to_string(),
                })
            }
            None => None,
        };
        Ok(AuditLog {
            file,
            syslog,
            failures: AtomicU64::new(0),
        })
    }

    /// Writes one record to every sink; a failure is counted and logged (with the record's id).
    pub fn write(&self, record: &str, id: &str) {
        if let Some(file) = &self.file {
            let mut line = Vec::with_capacity(record.len() + 1);
            line.extend_from_slice(record.as_bytes());
            line.push(b'\n');
            let written = match file.lock() {
                Ok(mut f) => f.write_all(&line),
                Err(_) => Err(std::io::Error::other("the audit log's lock is poisoned")),
            };
            if let Err(e) = written {
                self.failed(id, &format!("--audit-log: {e}"));
            }
        }
        if let Some(s) = &self.syslog {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let message = format!(
                "<85>1 {} {} wado {} DICOM+JSON - {record}",
                wado_core::audit::timestamp(now),
                s.hostname,
                s.procid
            );
            let sent = if message.len() > MAX_DATAGRAM {
                Err(std::io::Error::other(
                    "the record is larger than a datagram",
                ))
            } else {
                s.socket.send(message.as_bytes()).map(|_| ())
            };
            if let Err(e) = sent {
                self.failed(id, &format!("--audit-syslog: {e}"));
            }
        }
    }

    fn failed(&self, id: &str, error: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(request_id = %id, error = %error, "audit record not written");
    }

    /// Records a sink could not take.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// The `/metrics` lines of the trail.
pub fn metrics(log: Option<&AuditLog>) -> String {
    format!(
        "# HELP wado_audit_failures_total Audit records a sink (--audit-log, --audit-syslog) could not take.\n# TYPE wado_audit_failures_total counter\nwado_audit_failures_total {}\n",
        log.map_or(0, AuditLog::failures)
    )
}
