//! The DICOM network protocol's message service (DIMSE, PS3.7), apart from the connection
//! that carries it: command sets ([`command`]), statuses ([`status`]) and the table of known
//! peers ([`peers`]). What a C-STORE, C-FIND, C-GET or C-MOVE does with the archive is the
//! service's (`Service::dimse_*`), through the same ingest door and the same query model as
//! STOW-RS and QIDO-RS; the native server carries the messages over an association
//! (`native/src/dimse/`, dicom-rs's upper layer).

pub mod command;
pub mod find;
pub mod peers;

pub use command::Command;
pub use peers::{Destination, Op, Peers};

/// Status values (PS3.7 Annex C, PS3.4 Annexes B and C).
pub mod status {
    /// Success.
    pub const SUCCESS: u16 = 0x0000;
    /// Pending: a match follows (C-FIND), sub-operations go on (C-GET, C-MOVE).
    pub const PENDING: u16 = 0xFF00;
    /// Cancelled (C-CANCEL honoured).
    pub const CANCEL: u16 = 0xFE00;
    /// Processing failure: the archive failed (its store or index), not the request.
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    /// Duplicate SOP instance: the UID names an instance stored in another series or study.
    pub const DUPLICATE: u16 = 0x0111;
    /// No such SOP class: the service does not take this class in this role.
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    /// Not authorized: this peer may not do this in this partition.
    pub const NOT_AUTHORIZED: u16 = 0x0124;
    /// Refused: out of resources (too large, the store full).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Refused: out of resources, unable to perform sub-operations (C-GET, C-MOVE).
    pub const SUB_OPERATIONS_IMPOSSIBLE: u16 = 0xA702;
    /// Refused: move destination unknown.
    pub const MOVE_DESTINATION_UNKNOWN: u16 = 0xA801;
    /// Error: data set does not match SOP class (or the identifier the information model).
    pub const DOES_NOT_MATCH: u16 = 0xA900;
    /// Warning: sub-operations complete, one or more failures (C-GET, C-MOVE).
    pub const SOME_FAILED: u16 = 0xB000;
    /// Unrecognized operation: a command this server does not serve.
    pub const UNRECOGNIZED: u16 = 0x0211;
    /// Error: cannot understand (unable to process).
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
}

/// The Verification SOP Class (C-ECHO).
pub const VERIFICATION: &str = "1.2.840.10008.1.1";

/// The two ends of an association, as the peer named them and as the socket says.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    /// The calling AE title (the peer's).
    pub calling: &'a str,
    /// The called AE title: the partition.
    pub called: &'a str,
    /// The peer's IP address.
    pub address: &'a str,
}

/// Why an association is rejected (PS3.8 §9.3.4: rejected permanently by the service user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The called AE title names no partition of this server.
    CalledUnknown,
    /// The peers table names no such calling AE at this address.
    CallingUnknown,
}

/// What a C-FIND found: the identifier of each pending response, then the final response.
#[derive(Debug)]
pub struct Found {
    /// Each match's identifier, in the presentation context's transfer syntax.
    pub matches: Vec<Vec<u8>>,
    /// The final response (success, or the failure with its reason).
    pub last: Command,
}

/// One instance a C-GET or C-MOVE sends: where it is stored and what it is.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Its object in the partition's store.
    pub key: String,
    /// SOP Instance UID.
    pub sop: String,
    /// SOP Class UID.
    pub class: String,
    /// The transfer syntax it is stored in.
    pub ts: String,
    /// Bytes of the stored file.
    pub size: u64,
}

/// The sub-operations of a C-GET or C-MOVE, counted as they end (PS3.4 C.4.2.3, C.4.3.3).
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Not yet attempted.
    pub remaining: usize,
    /// Stored by the destination.
    pub completed: usize,
    /// Refused or failed.
    pub failed: usize,
    /// Stored with a warning.
    pub warning: usize,
    /// The SOP Instance UIDs that failed (the final response's Failed SOP Instance UID List).
    pub failed_sops: Vec<String>,
}

fn us(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

impl Tally {
    /// `n` sub-operations to do.
    pub fn new(n: usize) -> Tally {
        Tally {
            remaining: n,
            ..Tally::default()
        }
    }

    /// One sub-operation ended with the C-STORE status `code` (or failed before one).
    pub fn record(&mut self, sop: &str, code: Option<u16>) {
        self.remaining = self.remaining.saturating_sub(1);
        match code {
            Some(status::SUCCESS) => self.completed += 1,
            Some(c) if c & 0xF000 == 0xB000 => self.warning += 1,
            _ => {
                self.failed += 1;
                self.failed_sops.push(sop.to_owned());
            }
        }
    }

    fn counts(&self, c: &mut Command, remaining: bool) {
        use command::tag;
        if remaining {
            c.set_us(tag::REMAINING, us(self.remaining));
        }
        c.set_us(tag::COMPLETED, us(self.completed))
            .set_us(tag::FAILED, us(self.failed))
            .set_us(tag::WARNING, us(self.warning));
    }

    /// A pending response of `field` (C-GET-RSP, C-MOVE-RSP) with the counts so far.
    pub fn pending(&self, field: u16, rq: &Command) -> Command {
        let mut c = Command::response(field, rq, status::PENDING);
        self.counts(&mut c, true);
        c
    }

    /// The final response: success, some failed (`B000`), all failed (`A702`) or cancelled
    /// (`FE00`, with the remaining count); whether the Failed SOP Instance UID List follows.
    pub fn last(&self, field: u16, rq: &Command, cancelled: bool) -> (Command, bool) {
        let code = if cancelled {
            status::CANCEL
        } else if self.failed == 0 && self.warning == 0 {
            status::SUCCESS
        } else if self.completed == 0 && self.warning == 0 {
            status::SUB_OPERATIONS_IMPOSSIBLE
        } else {
            status::SOME_FAILED
        };
        let mut c = Command::response(field, rq, code);
        self.counts(&mut c, cancelled);
        let list = !self.failed_sops.is_empty();
        c.set_data_set(list);
        (c, list)
    }
}
