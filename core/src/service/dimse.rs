//! What DIMSE requests do with the archive (PS3.4 Annexes A, B, C), the connection aside: the
//! native server's association hands each request's command set and data set here and sends
//! back the responses made here (`native/src/dimse/`).
//!
//! - **C-ECHO**: success, to any peer the association accepted.
//! - **C-STORE**: the data set, wrapped in a Part-10 file whose meta names the negotiated
//!   transfer syntax and the calling AE, goes through the one ingest door (STOW-RS's and
//!   `wado import`'s: [`crate::ingest::Batch`]); the success status is made only once the
//!   instance is committed, so durable and searchable from every replica. Failures carry the
//!   reason in the Error Comment: `A900` the data set is not the instance or class the request
//!   names, `C000` it cannot be read, `A700` too large or the store full, `0111` its UID names
//!   an instance of another series or study, `0110` the archive failed, `0124` the peer may not
//!   store here.

use super::Service;
use crate::dimse::command::{field, tag};
use crate::dimse::{status, Command, Found, Op, Peer, Rejection};
use crate::ingest::{Batch, Expected, ImportError};
use bytes::Bytes;

impl Service {
    /// The audit record ([`crate::audit::dimse_record`]) of a C-STORE, C-FIND, C-GET or C-MOVE
    /// request `rq` (on a presentation context of abstract syntax `model`, its data set `data`
    /// in `transfer_syntax`) answered with `status`, when the server keeps a trail; the study
    /// and patient looked up in the catalog.
    #[allow(clippy::too_many_arguments)]
    pub async fn dimse_audit(
        &self,
        peer: &Peer<'_>,
        rq: &Command,
        model: &str,
        transfer_syntax: &str,
        data: &[u8],
        status: u16,
        now: u64,
        entropy: [u8; 16],
    ) -> Option<String> {
        use crate::search::query::{Matcher, Pattern};
        if !self.config.audit {
            return None;
        }
        let op = match rq.field()? {
            field::C_STORE_RQ => "C-STORE",
            field::C_FIND_RQ => "C-FIND",
            field::C_GET_RQ => "C-GET",
            field::C_MOVE_RQ => "C-MOVE",
            _ => return None,
        };
        let index = self.catalog().ok();
        let mut studies: Vec<String> = Vec::new();
        let sop = rq.text(tag::AFFECTED_SOP_INSTANCE);
        match (op, &index) {
            ("C-STORE", Some(index)) => {
                let uid = sop.as_deref().and_then(|s| crate::Uid::parse(s).ok());
                if let Some(uid) = uid {
                    if let Ok(Some((st, ..))) =
                        crate::ingest::locate(&***index, peer.called, &uid).await
                    {
                        studies.push(st.to_string());
                    }
                }
            }
            ("C-GET" | "C-MOVE", _) => {
                if let Ok(q) = crate::dimse::find::read_retrieve(model, transfer_syntax, data) {
                    for c in q.conditions.iter().filter(|c| c.key.column == "study_uid") {
                        if let Matcher::Any(list) = &c.matcher {
                            for p in list {
                                if let Pattern::Exact(s) = p {
                                    studies.push(s.clone());
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        let patients = self.patients_of(peer.called, &studies).await;
        let id = crate::audit::request_id(&entropy);
        let sop_class = rq
            .text(tag::AFFECTED_SOP_CLASS)
            .unwrap_or_else(|| model.to_owned());
        let destination = rq.text(tag::MOVE_DESTINATION);
        let record = crate::audit::dimse_record(&crate::audit::DimseAccess {
            request_id: &id,
            time: now,
            op,
            peer,
            destination: destination.as_deref().filter(|_| op == "C-MOVE"),
            status,
            sop_class: &sop_class,
            studies: &studies,
            sop: sop.as_deref().filter(|_| op == "C-STORE"),
            patients: &patients,
            query: (op == "C-FIND").then_some(data),
        });
        Some(record.to_string())
    }

    /// Whether to accept an association from `peer`.
    pub fn dimse_accepts(&self, peer: &Peer<'_>) -> Result<(), Rejection> {
        if !self.partitions.contains_key(peer.called) {
            return Err(Rejection::CalledUnknown);
        }
        match &self.config.dimse_peers {
            Some(peers) if !peers.knows(peer.calling, peer.address) => {
                Err(Rejection::CallingUnknown)
            }
            _ => Ok(()),
        }
    }

    /// Whether `peer` may do `op` in the partition it called; the reason when not.
    pub fn dimse_may(&self, peer: &Peer<'_>, op: Op) -> Result<(), String> {
        if op == Op::Store {
            if self.config.upstream.is_some() {
                return Err("this server is a read-through cache: store into its origin".into());
            }
            if self.config.read_only {
                return Err("this server is read-only".into());
            }
        }
        let allowed = match &self.config.dimse_peers {
            Some(peers) => peers.may(peer.calling, peer.address, peer.called, op),
            None => match op {
                Op::Store => self.config.allow_anonymous_writes && self.config.auth.is_none(),
                Op::Find | Op::Get => self.config.auth.is_none(),
                // A destination is a known peer: without a table there is none.
                Op::Move => false,
            },
        };
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "{} may not {} in {} (see --dimse-peers)",
                peer.calling,
                op.word(),
                peer.called
            ))
        }
    }

    /// Answers a C-ECHO-RQ.
    pub fn dimse_echo(&self, rq: &Command) -> Command {
        Command::response(field::C_ECHO_RSP, rq, status::SUCCESS)
    }

    /// Stores the data set of a C-STORE-RQ (`transfer_syntax`: the presentation context's)
    /// and answers it with the C-STORE-RSP: success only once the instance is committed.
    /// `now` and `entropy` as for a request ([`super::Request`]).
    pub async fn dimse_store(
        &self,
        peer: &Peer<'_>,
        rq: &Command,
        transfer_syntax: &str,
        data_set: &[u8],
        now: u64,
        entropy: [u8; 16],
    ) -> Command {
        match self
            .dimse_store_1(peer, rq, transfer_syntax, data_set, now, entropy)
            .await
        {
            Ok(()) => Command::response(field::C_STORE_RSP, rq, status::SUCCESS),
            Err((code, why)) => Command::failure(field::C_STORE_RSP, rq, code, &why),
        }
    }

    async fn dimse_store_1(
        &self,
        peer: &Peer<'_>,
        rq: &Command,
        transfer_syntax: &str,
        data_set: &[u8],
        now: u64,
        entropy: [u8; 16],
    ) -> Result<(), (u16, String)> {
        self.dimse_may(peer, Op::Store)
            .map_err(|why| (status::NOT_AUTHORIZED, why))?;
        let (Some(class), Some(instance)) = (
            rq.text(tag::AFFECTED_SOP_CLASS),
            rq.text(tag::AFFECTED_SOP_INSTANCE),
        ) else {
            return Err((
                status::CANNOT_UNDERSTAND,
                "the C-STORE request names no Affected SOP Class or Instance UID".into(),
            ));
        };
        let fail = |e: crate::Error| (status::PROCESSING_FAILURE, e.to_string());
        let Some(part) = self.partitions.get(peer.called) else {
            return Err((
                status::NOT_AUTHORIZED,
                format!("no partition {}", peer.called),
            ));
        };
        let index = self.catalog().map_err(fail)?.clone();
        part.ready(&*index, now).await.map_err(fail)?;
        let public = self
            .config
            .public_url
            .clone()
            .unwrap_or_else(|| crate::layout::DEFAULT_PUBLIC_URL.to_owned());
        let layout = part.writing_layout(&*index, &public).await.map_err(fail)?;
        let (turns, committer) = if self.config.requests_share_work {
            (part.writing.clone(), part.committer.clone())
        } else {
            Default::default()
        };
        let batch = Batch::new(layout, now, entropy)
            .with_max_instance(self.config.max_instance_bytes)
            .with_turns(turns)
            .with_offload(self.config.offload.clone())
            .with_index(index.clone(), peer.called, Some(committer));
        let file = crate::dicom::part10::wrap(
            crate::dicom::part10::FileMeta {
                sop_class: &class,
                sop_instance: &instance,
                transfer_syntax,
                source_ae: Some(peer.calling),
            },
            data_set,
        );
        let expected = Expected::Sop {
            class: &class,
            instance: &instance,
        };
        let stored = batch
            .add_expecting(&*part.store, Bytes::from(file), expected)
            .await;
        drop(batch);
        part.sweep_now_and_then(&*index, now).await.map_err(fail)?;
        stored.map(|_| ()).map_err(|e| {
            let code = match &e {
                ImportError::Rejected(_) => status::CANNOT_UNDERSTAND,
                ImportError::Mismatch(_) => status::DOES_NOT_MATCH,
                ImportError::Duplicate(_) => status::DUPLICATE,
                ImportError::NotPermitted(_) => status::NOT_AUTHORIZED,
                ImportError::TooLarge(_) => status::OUT_OF_RESOURCES,
                ImportError::Store(crate::store::StoreError::Full(_)) => status::OUT_OF_RESOURCES,
                ImportError::Store(_) | ImportError::Index(_) => status::PROCESSING_FAILURE,
            };
            (code, e.to_string())
        })
    }
}

impl Service {
    /// Answers a C-FIND-RQ whose identifier is `identifier` (in `transfer_syntax`), in the
    /// information model `model` (the presentation context's abstract syntax).
    pub async fn dimse_find(
        &self,
        peer: &Peer<'_>,
        rq: &Command,
        model: &str,
        transfer_syntax: &str,
        identifier: &[u8],
    ) -> Found {
        match self
            .dimse_find_1(peer, model, transfer_syntax, identifier)
            .await
        {
            Ok(matches) => Found {
                matches,
                last: Command::response(field::C_FIND_RSP, rq, status::SUCCESS),
            },
            Err((code, why)) => Found {
                matches: Vec::new(),
                last: Command::failure(field::C_FIND_RSP, rq, code, &why),
            },
        }
    }

    /// A pending C-FIND-RSP (a match's identifier follows it).
    pub fn dimse_find_pending(&self, rq: &Command) -> Command {
        let mut c = Command::response(field::C_FIND_RSP, rq, status::PENDING);
        c.set_data_set(true);
        c
    }

    async fn dimse_find_1(
        &self,
        peer: &Peer<'_>,
        model: &str,
        transfer_syntax: &str,
        identifier: &[u8],
    ) -> Result<Vec<Vec<u8>>, (u16, String)> {
        use crate::dimse::find;
        if model != find::STUDY_ROOT_FIND && model != find::PATIENT_ROOT_FIND {
            return Err((
                status::SOP_CLASS_NOT_SUPPORTED,
                format!("C-FIND of {model} is not served (Patient Root and Study Root are)"),
            ));
        }
        self.dimse_may(peer, Op::Find)
            .map_err(|why| (status::NOT_AUTHORIZED, why))?;
        let req = find::read_request(model, transfer_syntax, identifier)?;
        let fail = |e: crate::Error| (status::PROCESSING_FAILURE, e.to_string());
        let index = self.catalog().map_err(fail)?.clone();
        let rows = crate::search::search_rows(
            &*index,
            peer.called,
            &req.query,
            crate::dimse::find::MAX_MATCHES,
        )
        .await
        .map_err(fail)?;
        let base = self
            .config
            .public_url
            .clone()
            .unwrap_or_else(|| crate::layout::DEFAULT_PUBLIC_URL.to_owned());
        let root = format!(
            "{}{}{}/rs",
            base.trim_end_matches('/'),
            crate::route::SERVICE_PREFIX,
            peer.called
        );
        let called = peer.called.to_owned();
        let ts = transfer_syntax.to_owned();
        let pool = super::offload::for_rows(self.config.offload.as_deref(), rows.len());
        super::offload::compute(pool, move || {
            let found = rows.into_results(&req.query, &root)?;
            Ok(find::responses(&req, &found.results, &called, &ts))
        })
        .await
        .map_err(fail)?
    }
}

impl Service {
    /// The instances a C-GET-RQ or C-MOVE-RQ (`op`) asks for, in series order: its identifier
    /// (in `transfer_syntax`) read as an IMAGE-level query of the QIDO-RS model, in the
    /// information model `model`.
    pub async fn dimse_retrieve(
        &self,
        peer: &Peer<'_>,
        op: Op,
        model: &str,
        transfer_syntax: &str,
        identifier: &[u8],
    ) -> Result<Vec<crate::dimse::Outgoing>, (u16, String)> {
        use crate::dimse::find;
        let served = match op {
            Op::Move => [find::STUDY_ROOT_MOVE, find::PATIENT_ROOT_MOVE].contains(&model),
            Op::Get => [find::STUDY_ROOT_GET, find::PATIENT_ROOT_GET].contains(&model),
            _ => false,
        };
        if !served {
            return Err((
                status::SOP_CLASS_NOT_SUPPORTED,
                format!("C-{} of {model} is not served", op.word().to_uppercase()),
            ));
        }
        self.dimse_may(peer, op)
            .map_err(|why| (status::NOT_AUTHORIZED, why))?;
        let query = find::read_retrieve(model, transfer_syntax, identifier)?;
        let fail = |e: crate::Error| (status::SUB_OPERATIONS_IMPOSSIBLE, e.to_string());
        let index = self.catalog().map_err(fail)?.clone();
        let rows = crate::search::search_rows(&*index, peer.called, &query, find::MAX_RETRIEVED)
            .await
            .map_err(fail)?;
        if rows.truncated() {
            return Err((
                status::SUB_OPERATIONS_IMPOSSIBLE,
                format!(
                    "more than {} instances match: retrieve them in parts (by study or series)",
                    find::MAX_RETRIEVED
                ),
            ));
        }
        let found = rows.into_results(&query, "").map_err(fail)?;
        // The matching instances, by study.
        let mut wanted: std::collections::BTreeMap<String, std::collections::HashSet<String>> =
            Default::default();
        for r in &found.results {
            let uid = |t: &str| {
                r.get(t)
                    .and_then(|a| a.get("Value"))
                    .and_then(|v| v.get(0))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            wanted
                .entry(uid("0020000D"))
                .or_default()
                .insert(uid("00080018"));
        }
        let mut out = Vec::new();
        for (study, sops) in wanted {
            let Ok(st) = crate::Uid::parse(&study) else {
                continue;
            };
            let listed = index
                .query(crate::search::schema::retrieve_list(
                    index.dialect(),
                    peer.called,
                    &st,
                ))
                .await
                .map_err(|e| fail(e.into()))?;
            for r in listed {
                let text = |n: usize| {
                    r.get(n)
                        .and_then(crate::search::Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                let sop = text(1);
                if !sops.contains(&sop) {
                    continue;
                }
                let (Ok(se), Ok(i)) = (crate::Uid::parse(&text(0)), crate::Uid::parse(&sop)) else {
                    continue;
                };
                out.push(crate::dimse::Outgoing {
                    key: crate::layout::instance_key(&st, &se, &i, &text(2)),
                    sop,
                    size: r
                        .get(3)
                        .and_then(crate::search::Value::as_int)
                        .and_then(|n| u64::try_from(n).ok())
                        .unwrap_or(0),
                    ts: text(4),
                    class: text(5),
                });
            }
        }
        Ok(out)
    }

    /// The data set of `o` to send on a presentation context that accepts `accepted` transfer
    /// syntaxes: as stored when it may, else converted (with the codecs WADO-RS uses) into the
    /// first one it can be; with the syntax it is in. `Err` names why it cannot be sent.
    pub async fn dimse_read(
        &self,
        partition: &str,
        o: &crate::dimse::Outgoing,
        accepted: &[String],
    ) -> Result<(String, Vec<u8>), String> {
        let part = self
            .partitions
            .get(partition)
            .ok_or_else(|| format!("no partition {partition}"))?;
        let bytes = part
            .store
            .get(&o.key)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("instance {} is no longer stored", o.sop))?;
        let meta = crate::dicom::scan::scan_meta(&bytes).map_err(|e| e.to_string())?;
        let at = usize::try_from(meta.dataset_offset).unwrap_or(usize::MAX);
        if accepted.contains(&meta.transfer_syntax) {
            return bytes
                .get(at..)
                .map(|d| (meta.transfer_syntax.clone(), d.to_vec()))
                .ok_or_else(|| "the stored file is cut short".to_owned());
        }
        let mut why = Vec::new();
        for to in accepted {
            let (key, to_owned, file) = (o.key.clone(), to.clone(), bytes.clone());
            let converted = super::offload::compute(self.config.offload.as_deref(), move || {
                crate::dicom::convert::convert(&key, &file, &to_owned)
            })
            .await;
            match converted {
                Ok(file) => {
                    let m = crate::dicom::scan::scan_meta(&file).map_err(|e| e.to_string())?;
                    let at = usize::try_from(m.dataset_offset).unwrap_or(usize::MAX);
                    if let Some(d) = file.get(at..) {
                        return Ok((to.clone(), d.to_vec()));
                    }
                }
                Err(e) => why.push(format!("{to}: {e}")),
            }
        }
        Err(format!(
            "stored in {}, which the peer does not accept, and not convertible to what it does ({})",
            meta.transfer_syntax,
            why.join("; ")
        ))
    }

    /// Where C-MOVE sends to `ae` (host, port, TLS or not), from the peers table.
    pub fn dimse_destination(&self, ae: &str) -> Option<crate::dimse::peers::Destination> {
        self.config.dimse_peers.as_ref()?.destination(ae)
    }
}
