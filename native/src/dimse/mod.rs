//! The DICOM network protocol (DIMSE over the upper layer, PS3.7 and PS3.8): `wado serve
//! --dimse-port` ([`serve`]) and the `wado echo` / `wado send` client ([`scu`]).
//!
//! This module carries messages only. dicom-rs's upper layer ([`dicom_ul`]) negotiates the
//! association and reads and writes PDUs; here the P-DATA fragments of each message are put
//! together (a command set, then its data set when one follows), bounded, and handed to the
//! core ([`wado_core::Service`]'s `dimse_*`), which decides and makes the responses. A peer
//! that breaks the protocol (a malformed or oversized PDU, a fragment on a context it did not
//! negotiate, a command set that does not parse, silence longer than the idle timeout) gets an
//! A-ABORT and its connection closed; nothing of a message cut short is stored.

mod retrieve;
pub mod scu;
pub mod tls;
mod wire;

use dicom_ul::association::server::{AccessControl, ServerAssociationOptions};
use dicom_ul::pdu::{AssociationRJServiceUserReason, PDataValue, PDataValueType, UserIdentity};
use dicom_ul::Pdu;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use wado_core::dimse::command::{field, MAX_COMMAND_BYTES};
use wado_core::dimse::{status, Command, Peer, Rejection};
use wado_core::Service;

/// How the listener treats associations.
#[derive(Debug, Clone)]
pub struct Options {
    /// The largest PDU a peer may send us (A-ASSOCIATE-AC's Maximum Length): bigger ones abort.
    pub max_pdu: u32,
    /// Seconds an association may stay silent (mid-message or between messages) before it is
    /// aborted.
    pub idle: Duration,
    /// The most bytes one data set may take (the instance is held in memory while stored).
    pub max_data_set: u64,
    /// The most associations at once; more wait for a free one.
    pub max_associations: usize,
    /// Where audit records go (`--audit-log`): one per C-STORE, C-FIND, C-GET, C-MOVE.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// DICOM TLS (`--dimse-tls-cert`, [`tls::server_config`]): every association is TLS;
    /// a peer that does not complete the handshake within `idle` is dropped.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// DICOM TLS to C-MOVE destinations the peers table marks `tls` (`--dimse-tls-ca`, with
    /// the listener's certificate as ours when there is one).
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_pdu: 1 << 20,
            idle: Duration::from_secs(60),
            max_data_set: 2 << 30,
            max_associations: 256,
            audit: None,
            tls: None,
            tls_client: None,
        }
    }
}

/// Accepts associations on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, service: Arc<Service>, options: Options) {
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_associations.max(1)));
    loop {
        let (socket, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("DIMSE: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (service, options) = (service.clone(), options.clone());
        tokio::spawn(async move {
            let address = addr.ip().to_canonical().to_string();
            associate(socket, &address, &service, &options).await;
            drop(slot);
        });
    }
}

/// The service's decision on an A-ASSOCIATE-RQ.
struct Gate {
    service: Arc<Service>,
    address: String,
}

impl AccessControl for Gate {
    fn check_access(
        &self,
        _this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        let peer = Peer {
            calling: calling_ae_title.trim(),
            called: called_ae_title.trim(),
            address: &self.address,
        };
        match self.service.dimse_accepts(&peer) {
            Ok(()) => Ok(()),
            Err(Rejection::CalledUnknown) => {
                tracing::info!(
                    "DIMSE: association from {calling_ae_title} at {} rejected: no partition {called_ae_title}",
                    self.address
                );
                Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized)
            }
            Err(Rejection::CallingUnknown) => {
                tracing::info!(
                    "DIMSE: association from {calling_ae_title} at {} rejected: not in the peers table",
                    self.address
                );
                Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
            }
        }
    }
}

/// A message being received: its command set, then its data set.
#[derive(Default)]
struct Incoming {
    context: u8,
    command: Vec<u8>,
    parsed: Option<Command>,
    data: Vec<u8>,
}

/// SCP/SCU role selection, accepted as the peer proposes it: a C-GET SCU proposes the storage
/// classes it wants back with the SCP role, and the C-STOREs of a C-GET go on those contexts.
struct Roles;

impl dicom_ul::association::server::Negotiation for Roles {
    fn negotiate_roles(
        &self,
        _sop_class_uid: &str,
        scu: bool,
        scp: bool,
    ) -> Option<dicom_ul::pdu::RequestorRoles> {
        Some(dicom_ul::pdu::RequestorRoles { scu, scp })
    }
}

/// One association, from the A-ASSOCIATE-RQ (after the TLS handshake, with TLS) to its
/// release or abort.
async fn associate(
    socket: tokio::net::TcpStream,
    address: &str,
    service: &Arc<Service>,
    options: &Options,
) {
    let mut scp = ServerAssociationOptions::new()
        .ae_access_control(Gate {
            service: service.clone(),
            address: address.to_owned(),
        })
        // Any abstract syntax: what a request of an unsupported class gets is its failure
        // status from the service, with the reason.
        .promiscuous(true)
        .with_negotiation(Roles)
        .max_pdu_length(options.max_pdu)
        .read_timeout(options.idle);
    match &options.tls {
        None => match scp.establish_async(socket).await {
            Ok(assoc) => session(assoc, address, service, options).await,
            Err(e) => tracing::debug!("DIMSE: association from {address} not established: {e}"),
        },
        Some(config) => {
            scp = scp.tls_config(config.clone());
            // The upper layer times the A-ASSOCIATE-RQ, not the handshake before it.
            match tokio::time::timeout(options.idle, scp.establish_tls_async(socket)).await {
                Ok(Ok(assoc)) => session(assoc, address, service, options).await,
                Ok(Err(e)) => {
                    tracing::info!("DIMSE: TLS association from {address} not established: {e}")
                }
                Err(_) => tracing::info!(
                    "DIMSE: TLS association from {address} not established within {} s",
                    options.idle.as_secs()
                ),
            }
        }
    }
}

/// The messages of an established association, until its release or abort.
async fn session<S: wire::Stream>(
    mut assoc: Assoc<S>,
    address: &str,
    service: &Arc<Service>,
    options: &Options,
) {
    // The A-ASSOCIATE-AC just sent put the connection in delayed-ACK mode: the first
    // request's header would wait ~40 ms for our ACK before its body comes (DCMTK's tools).
    wire::quick_ack(assoc.inner_stream().tcp());
    let calling = dicom_ul::association::Association::peer_ae_title(&assoc)
        .trim()
        .to_owned();
    let called = assoc.called_ae_title().trim().to_owned();
    let peer = Peer {
        calling: &calling,
        called: &called,
        address,
    };
    let contexts: HashMap<u8, (String, String)> =
        wire::accepted_contexts(assoc.presentation_contexts())
            .into_iter()
            .map(|(id, class, ts)| (id, (class, ts)))
            .collect();
    tracing::debug!(
        "DIMSE: association {calling} -> {called} from {address}: {} contexts",
        contexts.len()
    );
    let mut msg = Incoming::default();
    let broken = loop {
        let pdu = match assoc.receive().await {
            Ok(p) => p,
            Err(e) => break format!("{e}"),
        };
        wire::quick_ack(assoc.inner_stream().tcp());
        match pdu {
            Pdu::PData { data } => {
                let mut failed = None;
                for pdv in data {
                    match take(&mut msg, pdv, &contexts, options) {
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                        Ok(false) => {}
                        Ok(true) => {
                            let done = std::mem::take(&mut msg);
                            let Some(rq) = done.parsed else { continue };
                            let (model, ts) = &contexts[&done.context];
                            let request = Whole {
                                rq: &rq,
                                context: done.context,
                                model,
                                ts,
                                data: &done.data,
                            };
                            let handled = handle(
                                &mut assoc,
                                service,
                                &peer,
                                request,
                                &contexts,
                                options.tls_client.as_ref(),
                            )
                            .await;
                            if let (Some(log), Ok(code)) = (&options.audit, &handled) {
                                audit(log, service, &peer, &request, *code).await;
                            }
                            if let Err(e) = handled {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                }
                if let Some(e) = failed {
                    break e;
                }
            }
            Pdu::ReleaseRQ => {
                let _ = assoc.send(&Pdu::ReleaseRP).await;
                tracing::debug!("DIMSE: association {calling} -> {called} released");
                return;
            }
            Pdu::AbortRQ { source } => {
                tracing::debug!("DIMSE: {calling} aborted the association ({source:?})");
                return;
            }
            other => break format!("unexpected PDU {}", pdu_name(&other)),
        }
    };
    tracing::info!("DIMSE: association {calling} -> {called} from {address} aborted: {broken}");
    let _ = assoc.abort().await;
}

fn pdu_name(p: &Pdu) -> &'static str {
    match p {
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::PData { .. } => "P-DATA-TF",
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AbortRQ { .. } => "A-ABORT",
        Pdu::Unknown { .. } => "of unknown type",
    }
}

/// Adds one fragment to the message being received; true when the message is whole.
fn take(
    msg: &mut Incoming,
    pdv: PDataValue,
    contexts: &HashMap<u8, (String, String)>,
    options: &Options,
) -> Result<bool, String> {
    if !contexts.contains_key(&pdv.presentation_context_id) {
        return Err(format!(
            "a fragment on presentation context {}, which was not accepted",
            pdv.presentation_context_id
        ));
    }
    let started = !msg.command.is_empty() || msg.parsed.is_some();
    if started && pdv.presentation_context_id != msg.context {
        return Err("a message's fragments on two presentation contexts".into());
    }
    msg.context = pdv.presentation_context_id;
    match pdv.value_type {
        PDataValueType::Command => {
            if msg.parsed.is_some() {
                return Err("a command fragment where the data set was expected".into());
            }
            if msg.command.len() + pdv.data.len() > MAX_COMMAND_BYTES {
                return Err(format!("a command set over {MAX_COMMAND_BYTES} bytes"));
            }
            msg.command.extend_from_slice(&pdv.data);
            if !pdv.is_last {
                return Ok(false);
            }
            let rq = Command::parse(&msg.command).map_err(|e| format!("command set: {e}"))?;
            let whole = !rq.has_data_set();
            msg.parsed = Some(rq);
            Ok(whole)
        }
        PDataValueType::Data => {
            if msg.parsed.as_ref().is_none_or(|c| !c.has_data_set()) {
                return Err("a data set fragment without a command announcing one".into());
            }
            if (msg.data.len() + pdv.data.len()) as u64 > options.max_data_set {
                return Err(format!(
                    "a data set over {} bytes (the most this server takes in one instance)",
                    options.max_data_set
                ));
            }
            if msg.data.is_empty() {
                msg.data = pdv.data;
            } else {
                msg.data.extend_from_slice(&pdv.data);
            }
            Ok(pdv.is_last)
        }
    }
}

/// A whole request: its command, the presentation context it came on (id, abstract syntax,
/// transfer syntax) and its data set (empty when none).
#[derive(Clone, Copy)]
pub(super) struct Whole<'a> {
    rq: &'a Command,
    context: u8,
    model: &'a str,
    ts: &'a str,
    data: &'a [u8],
}

pub(super) type Assoc<S> = dicom_ul::association::server::AsyncServerAssociation<S>;

/// Sends a command, and a data set after it when given, on context `id`.
pub(super) async fn send<S: wire::Stream>(
    assoc: &mut Assoc<S>,
    id: u8,
    command: &Command,
    data: Option<&[u8]>,
) -> Result<(), String> {
    wire::send_message(assoc, id, command, data).await
}

/// Whether the peer has sent a C-CANCEL-RQ (read without waiting); any other message while a
/// request is answered breaks the protocol (one operation at a time was negotiated).
pub(super) async fn cancelled<S: wire::Stream>(assoc: &mut Assoc<S>) -> Result<bool, String> {
    // Polled once, no timer: a zero timeout is a timer of tokio's 1 ms wheel, which made every
    // C-FIND match and every C-GET/C-MOVE sub-operation wait up to a millisecond. Receiving is
    // cancel-safe (what was read stays in the association's buffer).
    let pdu = match futures::FutureExt::now_or_never(assoc.receive()) {
        None => return Ok(false),
        Some(Err(e)) => return Err(e.to_string()),
        Some(Ok(p)) => p,
    };
    match pdu {
        Pdu::PData { data } => {
            let mut command = Vec::new();
            for pdv in data {
                if pdv.value_type != PDataValueType::Command {
                    return Err("a data set while a request was being answered".into());
                }
                command.extend_from_slice(&pdv.data);
            }
            match Command::parse(&command) {
                Ok(c) if c.field() == Some(field::C_CANCEL_RQ) => Ok(true),
                _ => Err(
                    "a request while another was being answered (one at a time was negotiated)"
                        .into(),
                ),
            }
        }
        Pdu::AbortRQ { .. } => Err("the peer aborted".into()),
        other => Err(format!(
            "unexpected PDU {} while answering",
            pdu_name(&other)
        )),
    }
}

/// Writes the audit record of a request answered with `code` (C-ECHO and C-CANCEL make none).
async fn audit(
    log: &crate::audit::AuditLog,
    service: &Service,
    peer: &Peer<'_>,
    w: &Whole<'_>,
    code: u16,
) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let entropy: [u8; 16] = rand::random();
    let record = service
        .dimse_audit(peer, w.rq, w.model, w.ts, w.data, code, now, entropy)
        .await;
    if let Some(record) = record {
        log.write(&record, &wado_core::audit::request_id(&entropy));
    }
}

/// Answers one whole request (several responses for a C-FIND); the final status sent.
async fn handle<S: wire::Stream>(
    assoc: &mut Assoc<S>,
    service: &Service,
    peer: &Peer<'_>,
    w: Whole<'_>,
    contexts: &HashMap<u8, (String, String)>,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<u16, String> {
    let started = std::time::Instant::now();
    let rq = w.rq;
    if rq.field() == Some(field::C_FIND_RQ) {
        let found = service.dimse_find(peer, rq, w.model, w.ts, w.data).await;
        let pending = service.dimse_find_pending(rq);
        let n = found.matches.len();
        for (k, m) in found.matches.iter().enumerate() {
            if cancelled(assoc).await? {
                let mut last = found.last.clone();
                last.set_us(wado_core::dimse::command::tag::STATUS, status::CANCEL);
                tracing::info!(
                    "DIMSE: {} cancelled a C-FIND after {k} of {n} matches",
                    peer.calling
                );
                send(assoc, w.context, &last, None).await?;
                return Ok(status::CANCEL);
            }
            send(assoc, w.context, &pending, Some(m)).await?;
        }
        log(peer, rq, &found.last, started);
        send(assoc, w.context, &found.last, None).await?;
        return Ok(found
            .last
            .us(wado_core::dimse::command::tag::STATUS)
            .unwrap_or(0));
    }
    if rq.field() == Some(field::C_GET_RQ) {
        let r = retrieve::get(assoc, service, peer, w, contexts).await;
        log_done(peer, rq, started);
        return r;
    }
    if rq.field() == Some(field::C_MOVE_RQ) {
        let r = retrieve::r#move(assoc, service, peer, w, tls).await;
        log_done(peer, rq, started);
        return r;
    }
    if rq.field() == Some(field::C_CANCEL_RQ) {
        // Nothing of it is being answered (it came after the last response): ignored.
        return Ok(0);
    }
    let rsp = answer(service, peer, rq, w.ts, w.data).await;
    log(peer, rq, &rsp, started);
    send(assoc, w.context, &rsp, None).await?;
    Ok(rsp.us(wado_core::dimse::command::tag::STATUS).unwrap_or(0))
}

fn log_done(peer: &Peer<'_>, rq: &Command, started: std::time::Instant) {
    tracing::debug!(
        "DIMSE: {} {:04X} done in {:.1} ms",
        peer.calling,
        rq.field().unwrap_or(0),
        started.elapsed().as_secs_f64() * 1e3
    );
}

fn log(peer: &Peer<'_>, rq: &Command, rsp: &Command, started: std::time::Instant) {
    let f = rq.field().unwrap_or(0);
    let code = rsp.us(wado_core::dimse::command::tag::STATUS).unwrap_or(0);
    if code != status::SUCCESS {
        tracing::info!(
            "DIMSE: {} {:04X} from {} in {}: status {code:04X} {}",
            peer.calling,
            f,
            peer.address,
            peer.called,
            rsp.text(wado_core::dimse::command::tag::ERROR_COMMENT)
                .unwrap_or_default()
        );
    } else {
        tracing::debug!(
            "DIMSE: {} {f:04X} in {:.1} ms",
            peer.calling,
            started.elapsed().as_secs_f64() * 1e3
        );
    }
}

/// The response to a request answered by one response.
async fn answer(
    service: &Service,
    peer: &Peer<'_>,
    rq: &Command,
    ts: &str,
    data: &[u8],
) -> Command {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match rq.field().unwrap_or(0) {
        field::C_ECHO_RQ => service.dimse_echo(rq),
        field::C_STORE_RQ => {
            service
                .dimse_store(peer, rq, ts, data, now, rand::random())
                .await
        }
        other => Command::failure(
            other | 0x8000,
            rq,
            status::UNRECOGNIZED,
            &format!("command field {other:04X} is not served here"),
        ),
    }
}
