//! The audit trail's sink natively: each record ([`wado_core::audit`], made by the core) one
//! line of JSON appended to a file (`--audit-log`). One `write` per line on a file opened for
//! appending, so replicas writing the same file (a shared volume) never interleave within a
//! line. A record that cannot be written is counted (`wado_audit_failures_total` in
//! `/metrics`) and logged: never lost silently.

use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;

/// An append-only JSON-lines file.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<std::fs::File>,
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
        })
    }

    /// Appends one record.
    pub fn write(&self, record: &str) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(record.len() + 1);
        line.extend_from_slice(record.as_bytes());
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("the audit log's lock is poisoned"))?;
        file.write_all(&line)
    }
}
