//! The DICOM peers a server knows: who may associate, from where, with which partitions
//! (called AE titles), to do what; and where C-MOVE sends. A text table, one peer per line,
//! `#` starting a comment:
//!
//! ```text
//! # calling AE   address            AE titles   may
//! CT_SCANNER     10.1.2.3           DCM4CHEE    store
//! WORKSTATION    10.1.2.9:11112     *           find,get,move
//! STORESCP       127.0.0.1:11113    -           -
//! ARCHIVE2       10.1.2.20:2762     -           -       tls
//! *              *                  DCM4CHEE    find
//! ```
//!
//! - **calling AE**: the peer's AE title, or `*` for any;
//! - **address**: the IP address associations from it must come from (`localhost` is the
//!   loopback addresses), `*` for any; with `:PORT`, the peer is also a C-MOVE destination
//!   at that address (`*` cannot be one);
//! - **AE titles**: the partitions it may use (comma separated), `*` for all, `-` for none;
//! - **may**: what it may do there (comma separated): `store`, `find`, `get`, `move`, `all`,
//!   or `-` for nothing (a C-MOVE destination only). C-ECHO needs nothing;
//! - optionally `tls`: C-MOVE reaches this destination over DICOM TLS.
//!
//! An association is accepted when a line names its calling AE (or `*`) and its address;
//! an operation when one of those lines grants it for the called AE title.

/// What a peer asks of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// C-STORE into it.
    Store,
    /// C-FIND in it.
    Find,
    /// C-GET from it.
    Get,
    /// C-MOVE from it.
    Move,
}

impl Op {
    fn bit(self) -> u8 {
        match self {
            Op::Store => 1,
            Op::Find => 2,
            Op::Get => 4,
            Op::Move => 8,
        }
    }

    /// The word the table uses.
    pub fn word(self) -> &'static str {
        match self {
            Op::Store => "store",
            Op::Find => "find",
            Op::Get => "get",
            Op::Move => "move",
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The calling AE title, `*` for any.
    pub ae: String,
    /// The address associations must come from; `None` for any.
    pub host: Option<String>,
    /// The port it listens on, when it is a C-MOVE destination.
    pub port: Option<u16>,
    /// The partitions it may use; `["*"]` for all.
    pub partitions: Vec<String>,
    may: u8,
    /// C-MOVE reaches it over TLS.
    pub tls: bool,
}

/// Where C-MOVE sends to an AE title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Its host name or address.
    pub host: String,
    /// The port it listens on.
    pub port: u16,
    /// Over DICOM TLS.
    pub tls: bool,
}

impl Peer {
    fn matches(&self, calling: &str, address: &str) -> bool {
        (self.ae == "*" || self.ae == calling)
            && match &self.host {
                None => true,
                Some(h) => same_host(h, address),
            }
    }

    fn grants(&self, partition: &str, op: Op) -> bool {
        self.may & op.bit() != 0 && self.partitions.iter().any(|p| p == "*" || p == partition)
    }
}

fn same_host(host: &str, address: &str) -> bool {
    let address = address.trim_start_matches("::ffff:");
    if host.eq_ignore_ascii_case("localhost") {
        return address == "::1" || address.starts_with("127.");
    }
    host == address
}

/// The table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    peers: Vec<Peer>,
}

impl Peers {
    /// Reads a table; errors name the line.
    pub fn parse(text: &str) -> Result<Peers, String> {
        let mut peers = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |e: String| format!("line {}: {e}", n + 1);
            let f: Vec<&str> = line.split_whitespace().collect();
            let (ae, address, partitions, may, tls) = match f[..] {
                [ae, address, partitions, may] => (ae, address, partitions, may, false),
                [ae, address, partitions, may, "tls"] => (ae, address, partitions, may, true),
                [_, _, _, _, other] => {
                    return Err(at(format!(
                        "{other:?}: the fifth field, when there is one, is `tls`"
                    )))
                }
                _ => {
                    return Err(at(
                        "expected `CALLING_AE ADDRESS[:PORT] AE_TITLES MAY [tls]` (four fields, or five)"
                            .into(),
                    ))
                }
            };
            if ae.len() > 16 || ae.is_empty() {
                return Err(at(format!(
                    "{ae:?} is not an AE title (1 to 16 characters)"
                )));
            }
            let (host, port) = match address.rsplit_once(':') {
                _ if address == "*" => (None, None),
                Some((h, p)) if !h.is_empty() && !h.ends_with(':') => {
                    let port: u16 = p
                        .parse()
                        .ok()
                        .filter(|&p| p > 0)
                        .ok_or_else(|| at(format!("{p:?} is not a port")))?;
                    if h == "*" {
                        return Err(at(
                            "a C-MOVE destination (with a port) needs an address, not *".into(),
                        ));
                    }
                    (Some(h.trim_matches(['[', ']']).to_owned()), Some(port))
                }
                _ => (Some(address.trim_matches(['[', ']']).to_owned()), None),
            };
            let partitions = match partitions {
                "-" => Vec::new(),
                p => p
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            };
            let mut bits = 0u8;
            if may != "-" {
                for w in may.split(',') {
                    bits |= match w {
                        "store" => Op::Store.bit(),
                        "find" => Op::Find.bit(),
                        "get" => Op::Get.bit(),
                        "move" => Op::Move.bit(),
                        "all" => 0xF,
                        other => {
                            return Err(at(format!(
                                "{other:?}: a peer may `store`, `find`, `get`, `move`, `all` or `-`"
                            )))
                        }
                    };
                }
            }
            peers.push(Peer {
                ae: ae.to_owned(),
                host,
                port,
                partitions,
                may: bits,
                tls,
            });
        }
        Ok(Peers { peers })
    }

    /// Whether an association from `calling` at `address` is accepted.
    pub fn knows(&self, calling: &str, address: &str) -> bool {
        self.peers.iter().any(|p| p.matches(calling, address))
    }

    /// Whether `calling` at `address` may do `op` in `partition`.
    pub fn may(&self, calling: &str, address: &str, partition: &str, op: Op) -> bool {
        self.peers
            .iter()
            .any(|p| p.matches(calling, address) && p.grants(partition, op))
    }

    /// Where C-MOVE sends to `ae`: its host and port, and whether over TLS.
    pub fn destination(&self, ae: &str) -> Option<Destination> {
        self.peers
            .iter()
            .find(|p| p.ae == ae && p.port.is_some())
            .and_then(|p| {
                Some(Destination {
                    host: p.host.clone()?,
                    port: p.port?,
                    tls: p.tls,
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_decides_who_does_what_where() {
        let t = Peers::parse(
            "# a comment\n\
             CT      10.1.2.3          DCM4CHEE  store\n\
             WS      localhost:11112   *         find,get,move  # trailing\n\
             DEST    127.0.0.1:11113   -         -\n\
             SAFE    10.1.2.20:2762    -         -              tls\n\
             *       *                 PUBLIC    find\n",
        )
        .expect("parse");
        assert!(t.may("CT", "10.1.2.3", "DCM4CHEE", Op::Store));
        assert!(
            !t.may("CT", "10.1.2.4", "DCM4CHEE", Op::Store),
            "other address"
        );
        assert!(
            !t.may("CT", "10.1.2.3", "OTHER", Op::Store),
            "other partition"
        );
        assert!(!t.may("CT", "10.1.2.3", "DCM4CHEE", Op::Find));
        assert!(t.may("WS", "127.0.0.1", "ANY", Op::Move));
        assert!(t.may("WS", "::ffff:127.0.0.1", "ANY", Op::Get));
        assert!(!t.may("WS", "10.0.0.1", "ANY", Op::Get));
        assert!(
            t.may("NOBODY", "10.9.9.9", "PUBLIC", Op::Find),
            "the * line"
        );
        assert!(!t.may("NOBODY", "10.9.9.9", "PUBLIC", Op::Store));
        assert!(t.knows("DEST", "127.0.0.1"));
        assert!(!t.may("DEST", "127.0.0.1", "DCM4CHEE", Op::Find));
        let to = |host: &str, port, tls| {
            Some(Destination {
                host: host.into(),
                port,
                tls,
            })
        };
        assert_eq!(t.destination("DEST"), to("127.0.0.1", 11113, false));
        assert_eq!(t.destination("WS"), to("localhost", 11112, false));
        assert_eq!(t.destination("SAFE"), to("10.1.2.20", 2762, true));
        assert_eq!(t.destination("CT"), None, "no port: not a destination");
        let closed = Peers::parse("CT 10.1.2.3 DCM4CHEE store\n").expect("parse");
        assert!(!closed.knows("OTHER", "10.1.2.3"));
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, says) in [
            ("CT 10.1.2.3 DCM4CHEE", "four fields"),
            ("CT 10.1.2.3:104 - - ssl", "is `tls`"),
            ("CT 10.1.2.3:104 - - tls extra", "four fields, or five"),
            ("CT 10.1.2.3:port DCM4CHEE store", "not a port"),
            ("CT 10.1.2.3 DCM4CHEE delete", "may `store`"),
            ("ABCDEFGHIJKLMNOPQ * * all", "AE title"),
            ("CT *:104 * all", "needs an address"),
        ] {
            let e = Peers::parse(&format!("\n{text}\n")).expect_err(text);
            assert!(e.contains(says) && e.starts_with("line 2"), "{text}: {e}");
        }
    }
}
