//! wado as a DIMSE client (SCU): `wado echo` (C-ECHO) and `wado send` (C-STORE of Part-10
//! files to another AE), over dicom-rs's upper layer. Each file's data set is sent as it is
//! stored, in its own transfer syntax (a peer that refuses the syntax refuses the file).

use super::wire::Stream;
use dicom_ul::association::client::ClientAssociationOptions;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use wado_core::dimse::command::{field, tag, PRIORITY_MEDIUM};
use wado_core::dimse::{status, Command, VERIFICATION};

/// Where to: `AE@host:port`.
#[derive(Debug, Clone)]
pub struct Target {
    /// The called AE title.
    pub ae: String,
    /// host:port.
    pub address: String,
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        let (ae, address) = s
            .split_once('@')
            .ok_or_else(|| format!("{s:?}: expected AE@HOST:PORT"))?;
        if ae.is_empty() || ae.len() > 16 {
            return Err(format!("{ae:?} is not an AE title (1 to 16 characters)"));
        }
        if !address.contains(':') {
            return Err(format!("{address:?}: expected HOST:PORT"));
        }
        Ok(Target {
            ae: ae.to_owned(),
            address: address.to_owned(),
        })
    }
}

/// The most presentation contexts one association proposes (PS3.8 §9.3.2.2: 128 odd ids).
const MAX_CONTEXTS: usize = 128;

fn options<'a>(calling: &'a str, target: &'a Target) -> ClientAssociationOptions<'a> {
    ClientAssociationOptions::new()
        .calling_ae_title(calling)
        .called_ae_title(target.ae.as_str())
        .max_pdu_length(1 << 20)
        .connection_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(120))
}

type Assoc<S> = dicom_ul::association::client::AsyncClientAssociation<S>;

/// DICOM TLS to the peer ([`super::tls::client_config`]); the host of `AE@HOST:PORT` is the
/// name its certificate must carry.
pub type Tls = std::sync::Arc<rustls::ClientConfig>;

/// The host part of `host:port` (an IPv6 address without its brackets).
fn host(address: &str) -> &str {
    let h = address.rsplit_once(':').map_or(address, |(h, _)| h);
    h.trim_start_matches('[').trim_end_matches(']')
}

/// Associates with `target` as `opts` propose, over TLS when `tls` is given, and runs `then`
/// on the association (whichever stream it is over); returns from the function with the reason
/// when no association is made.
macro_rules! associate {
    ($opts:expr, $target:expr, $tls:expr, |$assoc:ident| $then:expr) => {{
        let target = $target;
        super::wire::with_association!(
            $opts,
            target.address.as_str(),
            host(&target.address),
            $tls,
            |$assoc| $then
        )
        .map_err(|e| format!("association with {}@{}: {e}", target.ae, target.address))?
    }};
}

/// Sends a command (and a data set) on context `id`; returns the response's command.
async fn exchange<S: Stream>(
    assoc: &mut Assoc<S>,
    id: u8,
    rq: &Command,
    data_set: Option<&[u8]>,
) -> Result<Command, String> {
    super::wire::send_message(assoc, id, rq, data_set).await?;
    super::wire::receive_command(assoc).await.map(|(_, c)| c)
}

/// C-ECHO: Ok when the peer answers success.
pub async fn echo(calling: &str, target: &Target, tls: Option<&Tls>) -> Result<(), String> {
    let opts = options(calling, target).with_abstract_syntax(VERIFICATION);
    associate!(opts, target, tls, |assoc| echo_on(assoc).await)
}

async fn echo_on<S: Stream>(mut assoc: Assoc<S>) -> Result<(), String> {
    let id = accepted(&assoc, VERIFICATION)?;
    let mut rq = Command::new(field::C_ECHO_RQ);
    rq.set_us(tag::MESSAGE_ID, 1)
        .set_text(tag::AFFECTED_SOP_CLASS, VERIFICATION)
        .set_data_set(false);
    let rsp = exchange(&mut assoc, id, &rq, None).await?;
    let _ = assoc.release().await;
    match rsp.us(tag::STATUS) {
        Some(status::SUCCESS) => Ok(()),
        other => Err(format!("C-ECHO status {other:04X?}")),
    }
}

fn accepted<S: Stream>(assoc: &Assoc<S>, class: &str) -> Result<u8, String> {
    super::wire::accepted_contexts(assoc.presentation_contexts())
        .into_iter()
        .find(|(_, c, _)| c == class)
        .map(|(id, _, _)| id)
        .ok_or_else(|| format!("the peer accepts no presentation context for {class}"))
}

/// What became of one file.
#[derive(Debug)]
pub enum Sent {
    /// Stored (status success, or a warning with its comment).
    Stored(Option<String>),
    /// Not stored: why.
    Failed(String),
}

/// Sends `files` (Part-10) to `target` with C-STORE, in as few associations as their SOP
/// classes and transfer syntaxes allow; `each` hears of every file. Errors end the run (an
/// association that could not be made or broke).
pub async fn send(
    calling: &str,
    target: &Target,
    tls: Option<&Tls>,
    files: &[PathBuf],
    mut each: impl FnMut(&std::path::Path, Sent),
) -> Result<(usize, usize), String> {
    // (class, syntax) of each readable file; unreadable ones fail here.
    let mut todo: Vec<(PathBuf, String, String, u64)> = Vec::new();
    let (mut stored, mut failed) = (0usize, 0usize);
    for f in files {
        let head = match read_head(f) {
            Ok(h) => h,
            Err(e) => {
                failed += 1;
                each(f, Sent::Failed(e));
                continue;
            }
        };
        todo.push((f.clone(), head.0, head.1, head.2));
    }
    let mut pairs: BTreeMap<(String, String), ()> = BTreeMap::new();
    for (_, c, t, _) in &todo {
        pairs.insert((c.clone(), t.clone()), ());
    }
    let pairs: Vec<(String, String)> = pairs.into_keys().collect();
    for group in pairs.chunks(MAX_CONTEXTS) {
        let mut opts = options(calling, target);
        for (class, ts) in group {
            opts = opts.with_presentation_context(class.as_str(), vec![ts.as_str()]);
        }
        let (s, f) = associate!(opts, target, tls, |assoc| {
            send_group(assoc, group, &todo, &mut each).await?
        });
        stored += s;
        failed += f;
    }
    Ok((stored, failed))
}

/// Sends the files of `todo` whose (class, syntax) is in `group` on `assoc`, then releases it:
/// how many were stored and how many failed.
async fn send_group<S: Stream>(
    mut assoc: Assoc<S>,
    group: &[(String, String)],
    todo: &[(PathBuf, String, String, u64)],
    each: &mut impl FnMut(&std::path::Path, Sent),
) -> Result<(usize, usize), String> {
    let (mut stored, mut failed) = (0usize, 0usize);
    super::wire::no_delay(&mut assoc);
    // The context id of each accepted pair (proposed in order: ids 1, 3, 5, ...).
    let accepted = super::wire::accepted_contexts(assoc.presentation_contexts());
    let ids: BTreeMap<(String, String), u8> = group
        .iter()
        .enumerate()
        .filter_map(|(k, pair)| {
            let id = (2 * k + 1) as u8;
            accepted
                .iter()
                .any(|(a, _, _)| *a == id)
                .then(|| (pair.clone(), id))
        })
        .collect();
    let mut message_id: u16 = 0;
    for (path, class, ts, offset) in todo
        .iter()
        .filter(|t| group.contains(&(t.1.clone(), t.2.clone())))
    {
        let Some(&id) = ids.get(&(class.clone(), ts.clone())) else {
            failed += 1;
            each(
                path,
                Sent::Failed(format!("the peer accepts no context for {class} in {ts}")),
            );
            continue;
        };
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let sop = wado_core::dicom::scan::scan_meta(&bytes)
            .ok()
            .and_then(|m| m.media_storage_sop_instance)
            .unwrap_or_default();
        message_id = message_id.wrapping_add(1);
        let mut rq = Command::new(field::C_STORE_RQ);
        rq.set_us(tag::MESSAGE_ID, message_id)
            .set_text(tag::AFFECTED_SOP_CLASS, class)
            .set_text(tag::AFFECTED_SOP_INSTANCE, &sop)
            .set_us(tag::PRIORITY, PRIORITY_MEDIUM)
            .set_data_set(true);
        let data = bytes.get(*offset as usize..).unwrap_or_default();
        let rsp = exchange(&mut assoc, id, &rq, Some(data)).await?;
        let code = rsp.us(tag::STATUS).unwrap_or(0xFFFF);
        let comment = rsp.text(tag::ERROR_COMMENT);
        if code == status::SUCCESS || code & 0xF000 == 0xB000 {
            stored += 1;
            each(path, Sent::Stored(comment.filter(|_| code != 0)));
        } else {
            failed += 1;
            each(
                path,
                Sent::Failed(format!(
                    "status {code:04X}{}",
                    comment.map(|c| format!(": {c}")).unwrap_or_default()
                )),
            );
        }
    }
    let _ = assoc.release().await;
    Ok((stored, failed))
}

/// A file's SOP class, transfer syntax and data set offset, from its meta header.
fn read_head(path: &std::path::Path) -> Result<(String, String, u64), String> {
    use std::io::Read;
    let mut head = vec![0u8; 64 * 1024];
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]).map_err(|e| e.to_string())? {
            0 => break,
            k => n += k,
        }
    }
    head.truncate(n);
    let meta = wado_core::dicom::scan::scan_meta(&head)
        .map_err(|e| format!("not a DICOM Part-10 file: {e}"))?;
    let class = meta
        .media_storage_sop_class
        .ok_or("the file meta names no Media Storage SOP Class UID")?;
    if meta.media_storage_sop_instance.is_none() {
        return Err("the file meta names no Media Storage SOP Instance UID".into());
    }
    Ok((class, meta.transfer_syntax, meta.dataset_offset))
}
