//! Messages on an association, either end: a command (and its data set) out, a command in.

use dicom_ul::association::AsyncAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::Pdu;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wado_core::dimse::Command;

/// The presentation contexts the association accepted: (id, abstract syntax, transfer syntax),
/// the UIDs without their padding.
pub(crate) fn accepted_contexts(
    negotiated: &[dicom_ul::pdu::PresentationContextNegotiated],
) -> Vec<(u8, String, String)> {
    let uid = |u: &str| u.trim_end_matches(['\0', ' ']).to_owned();
    negotiated
        .iter()
        .filter(|pc| pc.reason == dicom_ul::pdu::PresentationContextResultReason::Acceptance)
        .map(|pc| (pc.id, uid(&pc.abstract_syntax), uid(&pc.transfer_syntax)))
        .collect()
}

/// What an association runs over: a TCP connection, or TLS on one. The TCP socket is reached
/// for its options (Nagle, delayed ACKs) whichever it is.
pub(crate) trait Stream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static
{
    fn tcp(&self) -> &TcpStream;
}

impl Stream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Stream for dicom_ul::association::server::AsyncTlsStream {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

impl Stream for dicom_ul::association::client::AsyncTlsStream {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Opens a client association as the options `opts` propose, to `address`, over TLS when the
/// client configuration `tls` is given (the peer's certificate must name `server_name`), and
/// evaluates `then` with it whichever stream it is over (the two are different types, hence a
/// macro): `Ok(then)`, or `Err` with the reason no association was made. `wado echo`, `wado
/// send` and C-MOVE's sub-associations all open theirs here.
macro_rules! with_association {
    ($opts:expr, $address:expr, $server_name:expr, $tls:expr, |$assoc:ident| $then:expr) => {{
        match $tls {
            None => match $opts.establish_async($address).await {
                Ok($assoc) => Ok($then),
                Err(e) => Err(e.to_string()),
            },
            Some(config) => match $opts
                .tls_config(config.clone())
                .server_name($server_name)
                .establish_tls_async($address)
                .await
            {
                Ok($assoc) => Ok($then),
                Err(e) => Err(format!("TLS: {e}")),
            },
        }
    }};
}
pub(crate) use with_association;

/// Turns Nagle's algorithm off on an association we opened: a command PDU and the short tail
/// of its data set would otherwise wait for the peer's delayed ACK (~40 ms an instance).
pub(crate) fn no_delay<S: Stream, A: AsyncAssociation<S>>(assoc: &mut A) {
    let _ = assoc.inner_stream().tcp().set_nodelay(true);
}

/// Acknowledges what the peer sends at once rather than after the delayed-ACK timer, until the
/// kernel falls back to delaying (it does when we send: called after every PDU received and
/// every message sent). A peer that leaves Nagle's algorithm on (DCMTK's tools by default)
/// writes a PDU's header and its body separately and holds the body until the header is
/// acknowledged: ~40 ms a message with delayed ACKs. Linux only.
pub(crate) fn quick_ack(socket: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        let _ = socket2::SockRef::from(socket).set_tcp_quickack(true);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

/// Sends `command` on presentation context `id`, and `data` after it when given (split into
/// P-DATA PDUs no larger than the peer takes). A data set that fits beside its command in one
/// PDU the peer takes goes in it, as a second value (PS3.8 9.3.5: a P-DATA-TF carries one or
/// more values): one write and one wake-up of the peer for a C-FIND match instead of two.
pub(crate) async fn send_message<S, A>(
    assoc: &mut A,
    id: u8,
    command: &Command,
    data: Option<&[u8]>,
) -> Result<(), String>
where
    S: Stream,
    A: AsyncAssociation<S> + Send,
{
    let value = |value_type, data: Vec<u8>| PDataValue {
        presentation_context_id: id,
        value_type,
        is_last: true,
        data,
    };
    let mut values = vec![value(PDataValueType::Command, command.encode())];
    let rest = match data {
        Some(data)
            if fits_in_one_pdu(
                assoc.peer_max_pdu_length(),
                values[0].data.len(),
                data.len(),
            ) =>
        {
            values.push(value(PDataValueType::Data, data.to_vec()));
            None
        }
        other => other,
    };
    AsyncAssociation::send(assoc, &Pdu::PData { data: values })
        .await
        .map_err(|e| format!("sending a command: {e}"))?;
    if let Some(data) = rest {
        let mut w = AsyncAssociation::send_pdata(assoc, id);
        w.write_all(data)
            .await
            .map_err(|e| format!("sending a data set: {e}"))?;
        w.finish()
            .await
            .map_err(|e| format!("sending a data set: {e}"))?;
    }
    // Sending right after receiving makes the kernel treat the connection as interactive and
    // delay its ACKs again: out of that mode before the peer's next message.
    quick_ack(assoc.inner_stream().tcp());
    Ok(())
}

/// Whether a command of `command` bytes and a small data set of `data` bytes (a C-FIND
/// match, a small instance) go in one P-DATA-TF PDU of at most `max` bytes (its length
/// field's value): each value costs 6 bytes besides its data (length, context id, control
/// header). Larger data sets are streamed in PDUs of their own rather than copied whole.
fn fits_in_one_pdu(max: u32, command: usize, data: usize) -> bool {
    const SMALL: usize = 16 * 1024;
    data <= SMALL && (command + 6) + (data + 6) <= max as usize
}

/// How long quick ACK is renewed while a response is awaited, and how often: a delayed ACK
/// holds a peer for at most ~40 ms (Linux), so renewing past that gains nothing.
const ACK_RENEWAL: std::time::Duration = std::time::Duration::from_millis(1);
const ACK_RENEWAL_FOR: std::time::Duration = std::time::Duration::from_millis(64);

/// The next PDU, acknowledging what arrives of it at once. A peer that leaves Nagle's algorithm
/// on (DCMTK's storescp as a C-MOVE destination) writes a PDU's header and body apart and
/// holds the body until the header is acknowledged; the quick ACK set after our last send
/// does not last (the kernel goes back to delaying ACKs), and then a response waits for a
/// delayed ACK, ~40 ms. Setting `TCP_QUICKACK` again sends a pending ACK at once, so while a
/// response is awaited it is set every millisecond for the first 64 ms
/// (`scripts/bench-move-acks.sh`: a 50-instance C-MOVE to storescp 0.21–0.44 s → 0.08–0.12 s,
/// and to a peer that always splits its writes, 5 stalls of 2.5 s in 40 moves → none).
/// Receiving is cancel-safe (what was read stays in the association's buffer), and the
/// association's own read timeout still bounds the wait: it starts again only during those
/// first 64 ms.
async fn receive_acking<S, A>(assoc: &mut A) -> Result<Pdu, String>
where
    S: Stream,
    A: AsyncAssociation<S> + Send,
{
    let started = tokio::time::Instant::now();
    while started.elapsed() < ACK_RENEWAL_FOR {
        match tokio::time::timeout(ACK_RENEWAL, AsyncAssociation::receive(assoc)).await {
            Ok(received) => return received.map_err(|e| e.to_string()),
            Err(_) => quick_ack(assoc.inner_stream().tcp()),
        }
    }
    AsyncAssociation::receive(assoc)
        .await
        .map_err(|e| e.to_string())
}

/// The next command the peer sends (a response, or a C-CANCEL), with its context id; a data
/// set or any other PDU here breaks the exchange.
pub(crate) async fn receive_command<S, A>(assoc: &mut A) -> Result<(u8, Command), String>
where
    S: Stream,
    A: AsyncAssociation<S> + Send,
{
    let mut command = Vec::new();
    loop {
        match receive_acking(assoc).await? {
            Pdu::PData { data } => {
                for pdv in data {
                    if pdv.value_type != PDataValueType::Command {
                        return Err("a data set where a command was expected".into());
                    }
                    if command.len() + pdv.data.len() > wado_core::dimse::command::MAX_COMMAND_BYTES
                    {
                        return Err("a command set too large".into());
                    }
                    command.extend_from_slice(&pdv.data);
                    if pdv.is_last {
                        return Command::parse(&command).map(|c| (pdv.presentation_context_id, c));
                    }
                }
            }
            Pdu::AbortRQ { source } => return Err(format!("the peer aborted ({source:?})")),
            other => return Err(format!("unexpected PDU {}", super::pdu_name(&other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fits_in_one_pdu;

    #[test]
    fn a_small_data_set_shares_its_commands_pdu_only_within_the_peers_maximum() {
        // 100 + 6 + 1,000 + 6 = 1,112 bytes.
        assert!(fits_in_one_pdu(16_384, 100, 1_000));
        assert!(fits_in_one_pdu(1_112, 100, 1_000));
        assert!(!fits_in_one_pdu(1_111, 100, 1_000));
        // An unknown maximum (never negotiated) does not fit anything.
        assert!(!fits_in_one_pdu(0, 100, 1_000));
        // A large data set is streamed even when the peer takes large PDUs.
        assert!(!fits_in_one_pdu(4_194_304, 100, 100_000));
    }
}
