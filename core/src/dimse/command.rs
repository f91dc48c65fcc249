//! DIMSE command sets (PS3.7 §6.3, §9.3, Annex E): group 0000 elements in Implicit VR Little
//! Endian, carried in the command fragments of P-DATA. Read from any peer, so reading never
//! panics: a malformed command set is an error the association answers with an abort.

use std::collections::BTreeMap;

/// Command Field values (PS3.7 §E.1).
pub mod field {
    /// C-STORE-RQ.
    pub const C_STORE_RQ: u16 = 0x0001;
    /// C-STORE-RSP.
    pub const C_STORE_RSP: u16 = 0x8001;
    /// C-GET-RQ.
    pub const C_GET_RQ: u16 = 0x0010;
    /// C-GET-RSP.
    pub const C_GET_RSP: u16 = 0x8010;
    /// C-FIND-RQ.
    pub const C_FIND_RQ: u16 = 0x0020;
    /// C-FIND-RSP.
    pub const C_FIND_RSP: u16 = 0x8020;
    /// C-MOVE-RQ.
    pub const C_MOVE_RQ: u16 = 0x0021;
    /// C-MOVE-RSP.
    pub const C_MOVE_RSP: u16 = 0x8021;
    /// C-ECHO-RQ.
    pub const C_ECHO_RQ: u16 = 0x0030;
    /// C-ECHO-RSP.
    pub const C_ECHO_RSP: u16 = 0x8030;
    /// C-CANCEL-RQ.
    pub const C_CANCEL_RQ: u16 = 0x0FFF;
}

/// Element numbers of group 0000 (PS3.7 Annex E).
pub mod tag {
    /// Affected SOP Class UID (UI).
    pub const AFFECTED_SOP_CLASS: u16 = 0x0002;
    /// Requested SOP Class UID (UI).
    pub const REQUESTED_SOP_CLASS: u16 = 0x0003;
    /// Command Field (US).
    pub const COMMAND_FIELD: u16 = 0x0100;
    /// Message ID (US).
    pub const MESSAGE_ID: u16 = 0x0110;
    /// Message ID Being Responded To (US).
    pub const RESPONDED_TO: u16 = 0x0120;
    /// Move Destination (AE).
    pub const MOVE_DESTINATION: u16 = 0x0600;
    /// Priority (US).
    pub const PRIORITY: u16 = 0x0700;
    /// Command Data Set Type (US): 0x0101 when no data set follows.
    pub const DATA_SET_TYPE: u16 = 0x0800;
    /// Status (US).
    pub const STATUS: u16 = 0x0900;
    /// Offending Element (AT).
    pub const OFFENDING_ELEMENT: u16 = 0x0901;
    /// Error Comment (LO).
    pub const ERROR_COMMENT: u16 = 0x0902;
    /// Affected SOP Instance UID (UI).
    pub const AFFECTED_SOP_INSTANCE: u16 = 0x1000;
    /// Number of Remaining Sub-operations (US).
    pub const REMAINING: u16 = 0x1020;
    /// Number of Completed Sub-operations (US).
    pub const COMPLETED: u16 = 0x1021;
    /// Number of Failed Sub-operations (US).
    pub const FAILED: u16 = 0x1022;
    /// Number of Warning Sub-operations (US).
    pub const WARNING: u16 = 0x1023;
    /// Move Originator Application Entity Title (AE).
    pub const MOVE_ORIGINATOR_AE: u16 = 0x1030;
    /// Move Originator Message ID (US).
    pub const MOVE_ORIGINATOR_ID: u16 = 0x1031;
}

/// Command Data Set Type meaning "no data set" (PS3.7 §E.1).
pub const NO_DATA_SET: u16 = 0x0101;

/// The most bytes of a command set taken from a peer: real ones are a few hundred.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// The Priority of a request: MEDIUM (PS3.7 §E.1).
pub const PRIORITY_MEDIUM: u16 = 0x0000;

/// One command set: its elements' values by element number (group 0000).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    values: BTreeMap<u16, Vec<u8>>,
}

/// The VR of a command element, for padding (PS3.5 §6.2: UI pads with NUL, text with space).
fn pad_byte(element: u16) -> u8 {
    match element {
        tag::AFFECTED_SOP_CLASS | tag::REQUESTED_SOP_CLASS | tag::AFFECTED_SOP_INSTANCE => 0,
        0x1001 => 0,
        _ => b' ',
    }
}

impl Command {
    /// A new command of `field`.
    pub fn new(field: u16) -> Command {
        let mut c = Command::default();
        c.set_us(tag::COMMAND_FIELD, field);
        c
    }

    /// Reads a command set (Implicit VR Little Endian, group 0000 only).
    pub fn parse(bytes: &[u8]) -> Result<Command, String> {
        if bytes.len() > MAX_COMMAND_BYTES {
            return Err(format!(
                "a command set of {} bytes (at most {MAX_COMMAND_BYTES})",
                bytes.len()
            ));
        }
        let mut values = BTreeMap::new();
        let mut at = 0usize;
        while at < bytes.len() {
            let Some(head) = bytes.get(at..at + 8) else {
                return Err(format!("a command element cut short at byte {at}"));
            };
            let group = u16::from_le_bytes([head[0], head[1]]);
            let element = u16::from_le_bytes([head[2], head[3]]);
            let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
            if group != 0x0000 {
                return Err(format!(
                    "element ({group:04X},{element:04X}) in a command set (only group 0000 belongs there)"
                ));
            }
            let start = at + 8;
            let Some(value) = start.checked_add(len).and_then(|end| bytes.get(start..end)) else {
                return Err(format!(
                    "command element (0000,{element:04X}) claims {len} bytes, past the end"
                ));
            };
            values.insert(element, value.to_vec());
            at = start + len;
        }
        let c = Command { values };
        if c.field().is_none() {
            return Err("the command set has no Command Field (0000,0100)".into());
        }
        Ok(c)
    }

    /// The command set's bytes, Command Group Length first.
    pub fn encode(&self) -> Vec<u8> {
        let body: usize = self
            .values
            .iter()
            .filter(|(e, _)| **e != 0)
            .map(|(_, v)| 8 + v.len())
            .sum();
        let mut out = Vec::with_capacity(12 + body);
        let mut put = |element: u16, value: &[u8]| {
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&element.to_le_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        };
        put(0x0000, &(body as u32).to_le_bytes());
        for (e, v) in self.values.iter().filter(|(e, _)| **e != 0) {
            put(*e, v);
        }
        out
    }

    /// The Command Field.
    pub fn field(&self) -> Option<u16> {
        self.us(tag::COMMAND_FIELD)
    }

    /// A US value.
    pub fn us(&self, element: u16) -> Option<u16> {
        match self.values.get(&element)?.as_slice() {
            [a, b, ..] => Some(u16::from_le_bytes([*a, *b])),
            _ => None,
        }
    }

    /// A text or UID value, its padding removed.
    pub fn text(&self, element: u16) -> Option<String> {
        let v = self.values.get(&element)?;
        let s = String::from_utf8_lossy(v);
        Some(s.trim_matches(|c: char| c == '\0' || c == ' ').to_owned())
    }

    /// Whether a data set follows the command.
    pub fn has_data_set(&self) -> bool {
        self.us(tag::DATA_SET_TYPE)
            .is_some_and(|t| t != NO_DATA_SET)
    }

    /// Sets a US value.
    pub fn set_us(&mut self, element: u16, v: u16) -> &mut Command {
        self.values.insert(element, v.to_le_bytes().to_vec());
        self
    }

    /// Sets a text or UID value (padded to an even length).
    pub fn set_text(&mut self, element: u16, v: &str) -> &mut Command {
        let mut b = v.as_bytes().to_vec();
        if b.len() % 2 == 1 {
            b.push(pad_byte(element));
        }
        self.values.insert(element, b);
        self
    }

    /// Says whether a data set follows.
    pub fn set_data_set(&mut self, follows: bool) -> &mut Command {
        self.set_us(
            tag::DATA_SET_TYPE,
            if follows { 0x0000 } else { NO_DATA_SET },
        )
    }

    /// The response of `field` to `request`, with `status`: its Message ID answered and its
    /// Affected SOP Class (and Instance, when it names one) repeated; no data set.
    pub fn response(field: u16, request: &Command, status: u16) -> Command {
        let mut c = Command::new(field);
        if let Some(id) = request.us(tag::MESSAGE_ID) {
            c.set_us(tag::RESPONDED_TO, id);
        }
        let class = request
            .text(tag::AFFECTED_SOP_CLASS)
            .or_else(|| request.text(tag::REQUESTED_SOP_CLASS));
        if let Some(class) = class {
            c.set_text(tag::AFFECTED_SOP_CLASS, &class);
        }
        if let Some(sop) = request.text(tag::AFFECTED_SOP_INSTANCE) {
            c.set_text(tag::AFFECTED_SOP_INSTANCE, &sop);
        }
        c.set_data_set(false).set_us(tag::STATUS, status);
        c
    }

    /// A response with a status other than success and its reason (Error Comment).
    pub fn failure(field: u16, request: &Command, status: u16, why: &str) -> Command {
        let mut c = Command::response(field, request, status);
        c.set_comment(why);
        c
    }

    /// Sets the Error Comment (at most 64 characters, as LO allows).
    pub fn set_comment(&mut self, comment: &str) -> &mut Command {
        let short: String = comment
            .chars()
            .map(|c| if c == '\\' || c.is_control() { ' ' } else { c })
            .take(64)
            .collect();
        self.set_text(tag::ERROR_COMMENT, short.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_reads_back_what_was_written() {
        let mut rq = Command::new(field::C_STORE_RQ);
        rq.set_us(tag::MESSAGE_ID, 7)
            .set_text(tag::AFFECTED_SOP_CLASS, "1.2.840.10008.5.1.4.1.1.2")
            .set_text(tag::AFFECTED_SOP_INSTANCE, "1.2.3")
            .set_us(tag::PRIORITY, PRIORITY_MEDIUM)
            .set_data_set(true);
        let bytes = rq.encode();
        assert_eq!(bytes.len() % 2, 0);
        let back = Command::parse(&bytes).expect("parse");
        assert_eq!(back.field(), Some(field::C_STORE_RQ));
        assert_eq!(
            back.text(tag::AFFECTED_SOP_INSTANCE).as_deref(),
            Some("1.2.3")
        );
        assert!(back.has_data_set());
        // The group length counts every byte after it.
        let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        assert_eq!(len, bytes.len() - 12);
        let rsp = Command::response(field::C_STORE_RSP, &back, 0);
        let rsp = Command::parse(&rsp.encode()).expect("parse");
        assert_eq!(rsp.us(tag::RESPONDED_TO), Some(7));
        assert_eq!(
            rsp.text(tag::AFFECTED_SOP_INSTANCE).as_deref(),
            Some("1.2.3")
        );
        assert!(!rsp.has_data_set());
        assert_eq!(rsp.us(tag::STATUS), Some(0));
    }

    #[test]
    fn malformed_commands_are_errors_not_panics() {
        let mut rq = Command::new(field::C_ECHO_RQ);
        rq.set_us(tag::MESSAGE_ID, 1)
            .set_text(tag::AFFECTED_SOP_CLASS, "1.2.840.10008.1.1");
        let bytes = rq.encode();
        for cut in 1..bytes.len() {
            // Cut anywhere: an error or a shorter command, never a panic.
            let _ = Command::parse(&bytes[..cut]);
        }
        let mut other_group = bytes.clone();
        other_group[0] = 8;
        assert!(Command::parse(&other_group).is_err());
        let mut long = bytes.clone();
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Command::parse(&long).is_err());
        assert!(Command::parse(&[]).is_err(), "no command field");
    }
}
