//! The audit trail's sink natively: each record ([`wado_core::audit`], made by the core) one
//! line of JSON appended to a file (`--audit-log`). One `write` per line on a file opened for
//! appending, so replicas writing the same file (a shared volume) never interleave within a
//! line. A record that cannot be written is counted (`wado_audit_failures_total` in
//! `/metrics`) and logged: never lost silently.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// An append-only JSON-lines file, shared by the HTTP and DIMSE listeners.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<std::fs::File>,
    failures: AtomicU64,
}

impl AuditLog {
    /// Opens (creating it if need be) the file at `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AuditLog {
            file: Mutex::new(file),
            failures: AtomicU64::new(0),
        })
    }

    /// Appends one record; a failure is counted and logged (with the record's id).
    pub fn write(&self, record: &str, id: &str) {
        let mut line = Vec::with_capacity(record.len() + 1);
        line.extend_from_slice(record.as_bytes());
        line.push(b'\n');
        let written = match self.file.lock() {
            Ok(mut file) => file.write_all(&line),
            Err(_) => Err(std::io::Error::other("the audit log's lock is poisoned")),
        };
        if let Err(e) = written {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(request_id = %id, error = %e, "audit record not written");
        }
    }

    /// Records that could not be written.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// The `/metrics` lines of the trail.
pub fn metrics(log: Option<&AuditLog>) -> String {
    format!(
        "# HELP wado_audit_failures_total Audit records that could not be written to --audit-log.\n# TYPE wado_audit_failures_total counter\nwado_audit_failures_total {}\n",
        log.map_or(0, AuditLog::failures)
    )
}
