//! C-GET and C-MOVE (PS3.4 C.4.2, C.4.3): the instances the core finds for the identifier,
//! each sent with a C-STORE sub-operation, on the same association (C-GET) or on an
//! association this server opens to the destination the peers table names (C-MOVE), in the
//! stored transfer syntax when the receiver accepts it, else converted into one it accepts.
//! A pending response with the counts follows each sub-operation; a C-CANCEL between them
//! ends the retrieval with the Cancel status and what remains.

use super::wire::Stream;
use super::{cancelled, send, wire, Assoc, Whole};
use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::association::AsyncAssociation;
use std::collections::HashMap;
use std::time::Duration;
use wado_core::dimse::command::{field, tag, PRIORITY_MEDIUM};
use wado_core::dimse::find::failed_identifier;
use wado_core::dimse::{status, Command, Op, Outgoing, Peer, Tally};
use wado_core::Service;

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";

/// The C-STORE-RQ of one sub-operation (a C-MOVE's names who asked for it).
fn store_request(id: u16, o: &Outgoing, originator: Option<(&str, u16)>) -> Command {
    let mut rq = Command::new(field::C_STORE_RQ);
    rq.set_us(tag::MESSAGE_ID, id)
        .set_text(tag::AFFECTED_SOP_CLASS, &o.class)
        .set_text(tag::AFFECTED_SOP_INSTANCE, &o.sop)
        .set_us(tag::PRIORITY, PRIORITY_MEDIUM)
        .set_data_set(true);
    if let Some((ae, msg)) = originator {
        rq.set_text(tag::MOVE_ORIGINATOR_AE, ae)
            .set_us(tag::MOVE_ORIGINATOR_ID, msg);
    }
    rq
}

/// The context to send `o` on: one of its class in its stored syntax, else any of its class.
fn context_for<'a>(
    contexts: &'a [(u8, String, String)],
    o: &Outgoing,
) -> Option<&'a (u8, String, String)> {
    let of_class = || contexts.iter().filter(|(_, a, _)| *a == o.class);
    of_class()
        .find(|(_, _, t)| *t == o.ts)
        .or_else(|| of_class().next())
}

/// Sends one instance on `sub` and waits for its C-STORE-RSP; a C-CANCEL that arrives there
/// meanwhile (C-GET: the requester's own association) is noted in `cancel`.
async fn store_one<S, A>(
    sub: &mut A,
    service: &Service,
    peer: &Peer<'_>,
    contexts: &[(u8, String, String)],
    o: &Outgoing,
    rq: Command,
    cancel: &mut bool,
) -> Result<Option<u16>, String>
where
    S: Stream,
    A: AsyncAssociation<S> + Send,
{
    let Some((id, _, ts)) = context_for(contexts, o) else {
        tracing::info!(
            "DIMSE: {} not sent to {}: no presentation context for {}",
            o.sop,
            peer.calling,
            o.class
        );
        return Ok(None);
    };
    let data = match service
        .dimse_read(peer.called, o, std::slice::from_ref(ts))
        .await
    {
        Ok((_, d)) => d,
        Err(why) => {
            tracing::info!("DIMSE: {} not sent: {why}", o.sop);
            return Ok(None);
        }
    };
    wire::send_message(sub, *id, &rq, Some(&data)).await?;
    loop {
        let (_, c) = wire::receive_command(sub).await?;
        match c.field() {
            Some(field::C_STORE_RSP) => return Ok(c.us(tag::STATUS)),
            Some(field::C_CANCEL_RQ) => *cancel = true,
            other => {
                return Err(format!(
                    "command {other:04X?} where a C-STORE-RSP was expected"
                ))
            }
        }
    }
}

/// Sends the final response, with the failed instances' list when there are any.
async fn finish<S: Stream>(
    assoc: &mut Assoc<S>,
    w: &Whole<'_>,
    f: u16,
    tally: &Tally,
    cancel: bool,
) -> Result<u16, String> {
    let (last, list) = tally.last(f, w.rq, cancel);
    let ident = list
        .then(|| failed_identifier(&tally.failed_sops, w.ts))
        .flatten();
    let mut last = last;
    if list && ident.is_none() {
        last.set_data_set(false);
    }
    send(assoc, w.context, &last, ident.as_deref()).await?;
    Ok(last.us(tag::STATUS).unwrap_or(0))
}

async fn refuse<S: Stream>(
    assoc: &mut Assoc<S>,
    w: &Whole<'_>,
    f: u16,
    code: u16,
    why: &str,
) -> Result<u16, String> {
    let c = Command::failure(f, w.rq, code, why);
    tracing::info!(
        "DIMSE: C-{} refused ({code:04X}): {why}",
        if f == field::C_GET_RSP { "GET" } else { "MOVE" }
    );
    send(assoc, w.context, &c, None).await?;
    Ok(code)
}

/// Answers a C-GET-RQ: the instances sent on this association's storage contexts (the
/// requester proposed them, with the SCP role).
pub(super) async fn get<S: Stream>(
    assoc: &mut Assoc<S>,
    service: &Service,
    peer: &Peer<'_>,
    w: Whole<'_>,
    contexts: &HashMap<u8, (String, String)>,
) -> Result<u16, String> {
    let f = field::C_GET_RSP;
    let out = match service
        .dimse_retrieve(peer, Op::Get, w.model, w.ts, w.data)
        .await
    {
        Ok(o) => o,
        Err((code, why)) => return refuse(assoc, &w, f, code, &why).await,
    };
    let contexts: Vec<(u8, String, String)> = contexts
        .iter()
        .map(|(id, (a, t))| (*id, a.clone(), t.clone()))
        .collect();
    let mut tally = Tally::new(out.len());
    let mut cancel = false;
    for (n, o) in out.iter().enumerate() {
        if cancel || cancelled(assoc).await? {
            cancel = true;
            break;
        }
        let rq = store_request(n as u16 + 1, o, None);
        let code = store_one(assoc, service, peer, &contexts, o, rq, &mut cancel).await?;
        tally.record(&o.sop, code);
        if tally.remaining > 0 && !cancel {
            send(assoc, w.context, &tally.pending(f, w.rq), None).await?;
        }
    }
    finish(assoc, &w, f, &tally, cancel).await
}

/// Answers a C-MOVE-RQ: the instances sent over a new association to the Move Destination.
pub(super) async fn r#move<S: Stream>(
    assoc: &mut Assoc<S>,
    service: &Service,
    peer: &Peer<'_>,
    w: Whole<'_>,
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
) -> Result<u16, String> {
    let f = field::C_MOVE_RSP;
    let dest = w.rq.text(tag::MOVE_DESTINATION).unwrap_or_default();
    let out = match service
        .dimse_retrieve(peer, Op::Move, w.model, w.ts, w.data)
        .await
    {
        Ok(o) => o,
        Err((code, why)) => return refuse(assoc, &w, f, code, &why).await,
    };
    let Some(destination) = service.dimse_destination(&dest) else {
        let why = format!("move destination {dest:?} is not in the peers table (with a port)");
        return refuse(assoc, &w, f, status::MOVE_DESTINATION_UNKNOWN, &why).await;
    };
    let (host, port) = (destination.host.as_str(), destination.port);
    let to = &*format!("{dest} at {host}:{port}");
    let mut run = Run {
        tally: Tally::new(out.len()),
        cancel: false,
        sent: 0,
    };
    // The (class, syntax) pairs to propose, each with the uncompressed syntaxes to convert
    // into when the destination refuses the stored one; at most 128 contexts an association.
    let mut pairs: Vec<(String, String)> = Vec::new();
    for o in &out {
        let p = (o.class.clone(), o.ts.clone());
        if !pairs.contains(&p) {
            pairs.push(p);
        }
    }
    let message_id = w.rq.us(tag::MESSAGE_ID).unwrap_or(0);
    for group in pairs.chunks(128) {
        let todo: Vec<&Outgoing> = out
            .iter()
            .filter(|o| group.iter().any(|(c, t)| *c == o.class && *t == o.ts))
            .collect();
        let mut opts = ClientAssociationOptions::new()
            .calling_ae_title(peer.called)
            .called_ae_title(dest.as_str())
            .max_pdu_length(1 << 20)
            .connection_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120));
        for (class, ts) in group {
            let mut list = vec![ts.as_str()];
            for u in [EXPLICIT_LE, IMPLICIT_LE] {
                if !list.contains(&u) {
                    list.push(u);
                }
            }
            opts = opts.with_presentation_context(class.as_str(), list);
        }
        let group = Group {
            service,
            peer,
            w: &w,
            todo: &todo,
            message_id,
            to,
        };
        let associated: Result<(), String> = match (destination.tls, tls) {
            (true, None) => Err(
                "the peers table says tls, and no --dimse-tls-ca verifies the destination".into(),
            ),
            (over_tls, tls) => {
                let tls = tls.filter(|_| over_tls);
                wire::with_association!(opts, (host, port), host, tls, |sub| {
                    group.send(assoc, sub, &mut run).await?
                })
            }
        };
        if let Err(e) = associated {
            tracing::info!("DIMSE: C-MOVE to {to}: no association: {e}");
            for o in &todo {
                run.tally.record(&o.sop, None);
            }
        }
        if run.cancel {
            break;
        }
    }
    let (tally, cancel) = (run.tally, run.cancel);
    finish(assoc, &w, f, &tally, cancel).await
}

/// Where a C-MOVE has got to.
struct Run {
    tally: Tally,
    cancel: bool,
    /// Sub-operations sent (their message ids).
    sent: u16,
}

/// One sub-association's share of a C-MOVE: what to send, and for whom.
struct Group<'a> {
    service: &'a Service,
    peer: &'a Peer<'a>,
    w: &'a Whole<'a>,
    todo: &'a [&'a Outgoing],
    message_id: u16,
    /// The destination, as logs name it.
    to: &'a str,
}

impl Group<'_> {
    /// Sends the group's instances on `sub` (over TCP or TLS), a pending response to the
    /// requester after each, then releases `sub`. Errs only when the requester's own
    /// association breaks; a failed sub-operation is counted.
    async fn send<S: Stream, T: Stream>(
        &self,
        assoc: &mut Assoc<S>,
        mut sub: dicom_ul::association::client::AsyncClientAssociation<T>,
        run: &mut Run,
    ) -> Result<(), String> {
        let (w, f) = (self.w, field::C_MOVE_RSP);
        super::wire::no_delay(&mut sub);
        let contexts = wire::accepted_contexts(sub.presentation_contexts());
        for o in self.todo {
            if run.cancel || cancelled(assoc).await? {
                run.cancel = true;
                break;
            }
            run.sent = run.sent.wrapping_add(1);
            let rq = store_request(run.sent, o, Some((self.peer.calling, self.message_id)));
            let mut ignored = false;
            let sent = store_one(
                &mut sub,
                self.service,
                self.peer,
                &contexts,
                o,
                rq,
                &mut ignored,
            )
            .await;
            let code = sent.unwrap_or_else(|e| {
                tracing::info!("DIMSE: C-MOVE to {}: {e}", self.to);
                None
            });
            run.tally.record(&o.sop, code);
            if run.tally.remaining > 0 {
                send(assoc, w.context, &run.tally.pending(f, w.rq), None).await?;
            }
        }
        let _ = sub.release().await;
        Ok(())
    }
}
