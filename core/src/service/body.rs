//! The one executor: a [`Plan`](super::plan::Plan) becomes a response whose body streams its
//! parts from the store, in their framing (one part, multipart/related or ZIP), in bounded
//! ranged reads, converting a part only when the plan says so.

use super::budget::Budget;
use super::http::{byte_range, entity_tag, header_str, set, status_and_warning};
use super::message::{Body, Outcome, Response};
use super::offload::{self, Job, Offload};
use super::plan::{Ctx, Plan, Shape, StoredInstance};
use super::Service;
use crate::dicom::convert::convert;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::wire::multipart::MultipartWriter;
use crate::wire::zip::ZipWriter;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, Stream};
use http::header::{self, HeaderMap};
use http::{Method, StatusCode};
use std::sync::Arc;

/// Where a part's bytes come from.
pub(crate) enum Source {
    /// In memory.
    Bytes(Bytes),
    /// A byte range of a stored object, streamed in chunks. With `detect_ts`, the part's
    /// transfer syntax is read from the first chunk (a Part-10 file's meta).
    Object {
        key: String,
        start: u64,
        end: u64,
        detect_ts: bool,
    },
    /// A stored file converted to another transfer syntax, holding about `holds` bytes of
    /// memory meanwhile.
    Convert { key: String, holds: u64, to: String },
    /// Encapsulated fragments, concatenated without item headers (PS3.18 §8.7.3.3.2).
    Fragments {
        key: String,
        fragments: Vec<[u64; 2]>,
    },
    /// One frame read (a native byte range, or its fragments), decoded and/or encoded.
    Transcode {
        key: String,
        fetch: Fetch,
        info: crate::PixelInfo,
        from: String,
        to: String,
    },
    /// One frame (a `Bytes`, `Object`, `Fragments` or `Transcode` source giving its native
    /// samples) rendered into an image (PS3.18 §10.4.1.1.3).
    Render {
        frame: Box<Source>,
        job: Arc<crate::render::RenderJob>,
    },
}

/// How a frame's stored bytes are read.
pub(crate) enum Fetch {
    /// A byte range of native pixel data.
    Range(u64, u64),
    /// Fragments of encapsulated pixel data.
    Fragments(Vec<[u64; 2]>),
    /// Bits `start..start + len` of native pixel data already read whole (a file that is
    /// not byte-addressable, or bit-packed frames): cut out on the pool.
    Bits { all: Bytes, start: u64, len: u64 },
}

/// One part of a response: its headers and where its bytes come from.
pub(crate) struct Part {
    /// Its Content-Type (with `transfer-syntax=` for DICOM and image types).
    pub(crate) content_type: String,
    /// Its Content-Location.
    pub(crate) location: String,
    /// The ZIP entry name, for application/zip.
    pub(crate) entry: String,
    /// Its bytes.
    pub(crate) source: Source,
}

impl Part {
    /// A Part-10 file of a listed instance.
    pub(crate) fn dicom(
        ctx: &Ctx<'_>,
        i: &StoredInstance,
        t: Option<&str>,
        source: Source,
    ) -> Part {
        Part {
            content_type: t.map_or_else(
                || "application/dicom".to_owned(),
                |t| format!("application/dicom; transfer-syntax={t}"),
            ),
            location: format!(
                "{}/studies/{}/series/{}/instances/{}",
                ctx.root, i.study, i.series, i.sop
            ),
            entry: format!("{}/{}/{}.dcm", i.study, i.series, i.sop),
            source,
        }
    }
}

/// How parts are framed in the body.
enum Framing {
    /// One part, no framing.
    Single,
    /// multipart/related.
    Multipart(MultipartWriter),
    /// A ZIP archive, one entry per part.
    Zip(ZipWriter),
}

impl Framing {
    fn begin(&mut self, content_type: &str, part: &Part) -> Bytes {
        match self {
            Framing::Single => Bytes::new(),
            Framing::Multipart(w) => w.part_head(content_type, Some(&part.location), None),
            Framing::Zip(z) => z.start_entry(&part.entry),
        }
    }

    fn data(&mut self, chunk: &[u8]) {
        if let Framing::Zip(z) = self {
            z.data(chunk);
        }
    }

    fn end(&mut self) -> Bytes {
        match self {
            Framing::Zip(z) => z.end_entry(),
            _ => Bytes::new(),
        }
    }

    fn finish(&mut self) -> Bytes {
        match self {
            Framing::Single => Bytes::new(),
            Framing::Multipart(w) => w.close(),
            Framing::Zip(z) => z.finish(),
        }
    }
}

/// The rest of an object being streamed.
enum Rest {
    /// From one version of the object ([`Store::stream_range`]).
    Stream(String, crate::store::ByteStream),
    /// Range by range: (key, next offset, end).
    Ranges(String, u64, u64),
}

struct StreamState {
    store: Arc<dyn Store>,
    offload: Option<Arc<dyn Offload>>,
    budget: Arc<Budget>,
    chunk: u64,
    parts: std::vec::IntoIter<Part>,
    /// The object being streamed.
    current: Option<Rest>,
    framing: Framing,
    /// Bytes ready to send, in order.
    pending: std::collections::VecDeque<Bytes>,
    finished: bool,
}

impl StreamState {
    fn new(
        store: Arc<dyn Store>,
        offload: Option<Arc<dyn Offload>>,
        budget: Arc<Budget>,
        chunk: u64,
        parts: Vec<Part>,
        framing: Framing,
    ) -> StreamState {
        StreamState {
            store,
            offload,
            budget,
            chunk,
            parts: parts.into_iter(),
            current: None,
            framing,
            pending: Default::default(),
            finished: false,
        }
    }

    /// Queues a part's data; small data is merged with the bytes before it (fewer, larger
    /// writes), large data is queued as is (never copied).
    fn queue(&mut self, lead: Bytes, data: Bytes) {
        if !lead.is_empty() && data.len() <= 16 * 1024 {
            let mut b = BytesMut::with_capacity(lead.len() + data.len());
            b.extend_from_slice(&lead);
            b.extend_from_slice(&data);
            self.pending.push_back(b.freeze());
        } else {
            if !lead.is_empty() {
                self.pending.push_back(lead);
            }
            if !data.is_empty() {
                self.pending.push_back(data);
            }
        }
    }

    fn frames(&self) -> FrameReader {
        FrameReader {
            store: self.store.clone(),
            offload: self.offload.clone(),
            budget: self.budget.clone(),
        }
    }

    /// Fills `pending` with the next bytes; false at the end of the body.
    async fn advance(&mut self) -> Result<bool> {
        use futures::StreamExt;
        match self.current.take() {
            Some(Rest::Ranges(key, pos, end)) => {
                let next = end.min(pos + self.chunk);
                let chunk = read_range(&*self.store, &key, pos, next).await?;
                self.framing.data(&chunk);
                self.pending.push_back(chunk);
                if next < end {
                    self.current = Some(Rest::Ranges(key, next, end));
                } else {
                    let tail = self.framing.end();
                    self.queue(Bytes::new(), tail);
                }
                return Ok(true);
            }
            Some(Rest::Stream(key, mut s)) => {
                match s.next().await {
                    Some(chunk) => {
                        let chunk = chunk.map_err(|e| stream_error(&key, e))?;
                        self.framing.data(&chunk);
                        self.pending.push_back(chunk);
                        self.current = Some(Rest::Stream(key, s));
                    }
                    None => {
                        let tail = self.framing.end();
                        self.queue(Bytes::new(), tail);
                    }
                }
                return Ok(true);
            }
            None => {}
        }
        let Some(part) = self.parts.next() else {
            if self.finished {
                return Ok(false);
            }
            self.finished = true;
            let tail = self.framing.finish();
            self.queue(Bytes::new(), tail);
            return Ok(true);
        };
        let (content_type, first, rest) = match &part.source {
            Source::Bytes(b) => (part.content_type.clone(), b.clone(), None),
            Source::Object {
                key,
                start,
                end,
                detect_ts,
            } => {
                // The first chunk holds the File Meta (for `detect_ts`): 64 KiB at least.
                let chunk = self.chunk.max(64 * 1024);
                let (first, rest) = match self.store.stream_range(key, *start..*end, chunk) {
                    Some(mut s) => {
                        use futures::StreamExt;
                        let first = match s.next().await {
                            Some(c) => c.map_err(|e| stream_error(key, e))?,
                            None => Bytes::new(),
                        };
                        (first, Some(Rest::Stream(key.clone(), s)))
                    }
                    None => {
                        let next = (*end).min(start + chunk);
                        let first = read_range(&*self.store, key, *start, next).await?;
                        (
                            first,
                            (next < *end).then(|| Rest::Ranges(key.clone(), next, *end)),
                        )
                    }
                };
                let ct = match crate::dicom::scan::scan_meta(&first) {
                    Ok(m) if *detect_ts => {
                        format!("application/dicom; transfer-syntax={}", m.transfer_syntax)
                    }
                    _ => part.content_type.clone(),
                };
                (ct, first, rest)
            }
            Source::Convert { key, holds, to } => {
                let converted = converted(
                    &*self.store,
                    self.offload.as_deref(),
                    &self.budget,
                    key,
                    *holds,
                    to,
                )
                .await?;
                (part.content_type.clone(), converted, None)
            }
            Source::Fragments { key, fragments } => (
                part.content_type.clone(),
                read_fragments(&*self.store, key, fragments).await?,
                None,
            ),
            Source::Transcode { .. } => (
                part.content_type.clone(),
                self.frames().frame_bytes(&part.source).await?,
                None,
            ),
            Source::Render { frame, job } => {
                // The frame as native samples first (its own reservation, given back), then
                // the rendering: the samples, the 8-bit image, its scaled copy and the output.
                let native = self.frames().frame_bytes(frame).await?;
                let held = job.holds(native.len() as u64);
                let _held = self.budget.reserve(held).await;
                let job = job.clone();
                let run: Job = Box::new(move || job.run(&native));
                let out = offload::run(self.offload.as_deref(), run).await?;
                (part.content_type.clone(), Bytes::from(out), None)
            }
        };
        let head = self.framing.begin(&content_type, &part);
        self.framing.data(&first);
        self.queue(head, first);
        match rest {
            Some(cur) => self.current = Some(cur),
            None => {
                let tail = self.framing.end();
                self.queue(Bytes::new(), tail);
            }
        }
        Ok(true)
    }
}

/// What reading and converting a frame takes, cloned out of the stream's state (which is not
/// `Sync`: it holds the stream being read).
struct FrameReader {
    store: Arc<dyn Store>,
    offload: Option<Arc<dyn Offload>>,
    budget: Arc<Budget>,
}

impl FrameReader {
    /// A frame's bytes, in memory: as stored, or decoded/encoded (within the conversion memory,
    /// on the offload pool).
    async fn frame_bytes(&self, source: &Source) -> Result<Bytes> {
        match source {
            Source::Bytes(b) => Ok(b.clone()),
            Source::Object {
                key, start, end, ..
            } => read_range(&*self.store, key, *start, *end).await,
            Source::Fragments { key, fragments } => {
                read_fragments(&*self.store, key, fragments).await
            }
            Source::Transcode {
                key,
                fetch,
                info,
                from,
                to,
            } => {
                // The stored frame, the decoded one and the encoded one, at most, and what the
                // coders allocate while they work (`wado_codec::conversion_work_bytes`).
                let stored = match fetch {
                    Fetch::Range(start, end) => end.saturating_sub(*start),
                    Fetch::Fragments(f) => f.iter().map(|[_, len]| *len).sum(),
                    Fetch::Bits { len, .. } => len.div_ceil(8),
                };
                let decoded = info.stored_frame_bits().div_ceil(8);
                let work = wado_codec::conversion_work_bytes(info, from, to).max(decoded);
                let _held = self
                    .budget
                    .reserve(stored.saturating_add(decoded).saturating_add(work))
                    .await;
                let (frame, bits) = match fetch {
                    Fetch::Range(start, end) => {
                        (read_range(&*self.store, key, *start, *end).await?, None)
                    }
                    Fetch::Fragments(f) => (read_fragments(&*self.store, key, f).await?, None),
                    Fetch::Bits { all, start, len } => (all.clone(), Some((*start, *len))),
                };
                let (info, from, to) = (info.clone(), from.clone(), to.clone());
                let job: Job = Box::new(move || {
                    let frame = match bits {
                        Some((start, len)) => {
                            crate::dicom::convert::extract_bits(&frame, start, len)
                        }
                        None => frame,
                    };
                    Ok(wado_codec::transcode_frame(&info, &from, &frame, &to)?)
                });
                Ok(Bytes::from(
                    offload::run(self.offload.as_deref(), job).await?,
                ))
            }
            // Planners never nest these (a rendered frame's source is one of the above).
            Source::Convert { key, .. } => Err(Error::corrupt(key, "a whole file is not a frame")),
            Source::Render { .. } => Err(Error::corrupt("render", "a rendering is not a frame")),
        }
    }
}

fn body_stream(state: StreamState) -> impl Stream<Item = Result<Bytes>> {
    stream::try_unfold(state, |mut st| async move {
        loop {
            if let Some(b) = st.pending.pop_front() {
                return Ok(Some((b, st)));
            }
            if !st.advance().await? {
                return Ok(None);
            }
        }
    })
}

/// A stored file converted to `to` (a whole-file conversion, on the offload pool), within the
/// conversion memory (`holds`: the planner's estimate of what it holds).
async fn converted(
    store: &dyn Store,
    offload: Option<&dyn Offload>,
    budget: &Arc<Budget>,
    key: &str,
    holds: u64,
    to: &str,
) -> Result<Bytes> {
    let _held = budget.reserve(holds).await;
    let bytes = store
        .get(key)
        .await?
        .ok_or_else(|| Error::NotFound(key.to_owned()))?;
    let (key, to) = (key.to_owned(), to.to_owned());
    let job: Job = Box::new(move || convert(&key, &bytes, &to));
    Ok(Bytes::from(offload::run(offload, job).await?))
}

/// A stream's error: a vanished object is corrupt state, like [`read_range`]'s.
fn stream_error(key: &str, e: crate::store::StoreError) -> Error {
    match e {
        crate::store::StoreError::NotFound(_) => {
            Error::corrupt(key, "object vanished while streaming")
        }
        e => Error::Store(e),
    }
}

pub(crate) async fn read_range(
    store: &dyn Store,
    key: &str,
    start: u64,
    end: u64,
) -> Result<Bytes> {
    store
        .get_range(key, start..end)
        .await?
        .ok_or_else(|| Error::corrupt(key, "object vanished while streaming"))
}

/// One read spanning the frame's fragments, then the item headers between them cut out.
pub(crate) async fn read_fragments(
    store: &dyn Store,
    key: &str,
    fragments: &[[u64; 2]],
) -> Result<Bytes> {
    let (Some(first), Some(last)) = (fragments.first(), fragments.last()) else {
        return Err(Error::corrupt(key, "frame without fragments"));
    };
    let span = read_range(store, key, first[0], last[0] + last[1]).await?;
    if fragments.len() == 1 {
        return Ok(span);
    }
    let mut out = BytesMut::with_capacity(fragments.iter().map(|f| f[1] as usize).sum());
    for f in fragments {
        let s = (f[0] - first[0]) as usize;
        out.extend_from_slice(
            span.get(s..s + f[1] as usize)
                .ok_or_else(|| Error::corrupt(key, "fragment outside its frame"))?,
        );
    }
    Ok(out.freeze())
}

impl Service {
    /// Executes a plan: the response's head now, its body streamed part by part from the
    /// store. A single part that needs a whole-file conversion is converted before answering
    /// (so a corrupt file is a 500, not a truncated 200), except for HEAD.
    pub(crate) async fn execute(&self, ctx: &Ctx<'_>, plan: Plan) -> Result<Response> {
        let Plan {
            shape,
            mut parts,
            outcome,
        } = plan;
        Ok(match shape {
            Shape::Document {
                content_type,
                coding,
                vary,
                body,
            } => document_response(&content_type, coding, vary, body, outcome),
            Shape::Multipart { part_type }
                if parts.len() == 1
                    && ctx.req.method == Method::GET
                    && ctx.req.headers.contains_key(header::RANGE)
                    && outcome.validator.is_some()
                    && matches!(
                        parts[0].source,
                        Source::Bytes(_)
                            | Source::Object { .. }
                            | Source::Fragments { .. }
                            | Source::Transcode { .. }
                    ) =>
            {
                self.ranged_multipart(ctx, &part_type, parts.remove(0), outcome)
                    .await?
            }
            Shape::Multipart { part_type } => {
                let writer = MultipartWriter::new(ctx.boundary.clone());
                let content_type = writer.content_type(&part_type);
                self.streamed_response(
                    ctx,
                    &content_type,
                    Framing::Multipart(writer),
                    parts,
                    outcome,
                )
                .await?
            }
            // dcm4chee's extension: one ZIP of the PS3.10 files.
            Shape::Zip => {
                let framing = Framing::Zip(ZipWriter::new());
                self.streamed_response(ctx, "application/zip", framing, parts, outcome)
                    .await?
            }
            Shape::Single => {
                let mut part = parts
                    .drain(..)
                    .next()
                    .ok_or_else(|| Error::NotFound("nothing to send".into()))?;
                if let (Source::Convert { key, holds, to }, false) =
                    (&part.source, ctx.req.method == Method::HEAD)
                {
                    let offload = self.config.offload.as_deref();
                    part.source = Source::Bytes(
                        converted(&*ctx.part.store, offload, &self.budget, key, *holds, to).await?,
                    );
                }
                self.single_response(ctx, part, outcome).await?
            }
        })
    }

    /// One frame in `multipart/related`, asked for in part: how cornerstone reads an HTJ2K
    /// frame progressively with its default Accept (`multipart/related;
    /// type=application/octet-stream; transfer-syntax=*` and `Range: bytes=0-65535`, then the
    /// rest). The body is made whole, with a boundary that follows from the validator rather
    /// than from the request, so that every range request sees the same representation (RFC 9110
    /// §14: ranges of one representation, a strong ETag); then the range is cut.
    async fn ranged_multipart(
        &self,
        ctx: &Ctx<'_>,
        part_type: &str,
        part: Part,
        outcome: Outcome,
    ) -> Result<Response> {
        use sha2::Digest as _;
        let validator = outcome.validator.clone().unwrap_or_default();
        let digest = sha2::Sha256::digest(validator.as_bytes());
        let mut seed = [0u8; 16];
        seed.copy_from_slice(&digest[..16]);
        let mut writer = MultipartWriter::new(crate::wire::multipart::boundary_from_entropy(seed));
        let reader = FrameReader {
            store: ctx.part.store.clone(),
            offload: self.config.offload.clone(),
            budget: self.budget.clone(),
        };
        let data = reader.frame_bytes(&part.source).await?;
        let mut body = BytesMut::new();
        body.extend_from_slice(&writer.part_head(&part.content_type, Some(&part.location), None));
        body.extend_from_slice(&data);
        body.extend_from_slice(&writer.close());
        let body = body.freeze();
        let mut headers = HeaderMap::new();
        set(
            &mut headers,
            header::CONTENT_TYPE,
            &writer.content_type(part_type),
        );
        let mut status = status_and_warning(&mut headers, &outcome);
        set(&mut headers, header::ETAG, &entity_tag(&validator, false));
        set(&mut headers, header::ACCEPT_RANGES, "bytes");
        let total = body.len() as u64;
        let body = if status == StatusCode::OK {
            match byte_range(header_str(ctx.req.headers, header::RANGE).as_deref(), total) {
                Some(Ok((a, b))) => {
                    status = StatusCode::PARTIAL_CONTENT;
                    set(
                        &mut headers,
                        header::CONTENT_RANGE,
                        &format!("bytes {a}-{}/{total}", b - 1),
                    );
                    body.slice(a as usize..b as usize)
                }
                Some(Err(())) => {
                    let mut h = HeaderMap::new();
                    set(&mut h, header::CONTENT_RANGE, &format!("bytes */{total}"));
                    return Ok(Response {
                        status: StatusCode::RANGE_NOT_SATISFIABLE,
                        headers: h,
                        body: Body::Empty,
                        outcome,
                    });
                }
                None => body,
            }
        } else {
            body
        };
        set(
            &mut headers,
            header::CONTENT_LENGTH,
            &body.len().to_string(),
        );
        Ok(Response {
            status,
            headers,
            body: Body::Full(body),
            outcome,
        })
    }

    /// A body streamed part by part in `framing`: 206 with a Warning when some were left
    /// out, a weak ETag when the outcome has a validator.
    async fn streamed_response(
        &self,
        ctx: &Ctx<'_>,
        content_type: &str,
        framing: Framing,
        parts: Vec<Part>,
        outcome: Outcome,
    ) -> Result<Response> {
        let mut headers = HeaderMap::new();
        set(&mut headers, header::CONTENT_TYPE, content_type);
        let status = status_and_warning(&mut headers, &outcome);
        if let Some(v) = &outcome.validator {
            set(&mut headers, header::ETAG, &entity_tag(v, true));
        }
        let state = StreamState::new(
            ctx.part.store.clone(),
            self.config.offload.clone(),
            self.budget.clone(),
            self.config.chunk_size,
            parts,
            framing,
        );
        Ok(Response {
            status,
            headers,
            body: primed(ctx, state).await?,
            outcome,
        })
    }

    /// One part as the whole body: Content-Location, a strong ETag, and `Range` honoured when
    /// its bytes are known up front (RFC 9110 §14).
    async fn single_response(
        &self,
        ctx: &Ctx<'_>,
        mut part: Part,
        outcome: Outcome,
    ) -> Result<Response> {
        let mut headers = HeaderMap::new();
        set(&mut headers, header::CONTENT_TYPE, &part.content_type);
        set(&mut headers, header::CONTENT_LOCATION, &part.location);
        if let Some(v) = &outcome.validator {
            set(&mut headers, header::ETAG, &entity_tag(v, false));
        }
        let mut status = status_and_warning(&mut headers, &outcome);
        // A frame asked for in part (progressive HTJ2K: cornerstone reads a .4.202 frame's first
        // tile-parts, its low resolutions, then the rest): its bytes are made first, stored
        // fragments joined or the transcoding run, so that the range can be cut from them.
        if ctx.req.headers.contains_key(header::RANGE)
            && matches!(
                part.source,
                Source::Fragments { .. } | Source::Transcode { .. }
            )
        {
            let reader = FrameReader {
                store: ctx.part.store.clone(),
                offload: self.config.offload.clone(),
                budget: self.budget.clone(),
            };
            part.source = Source::Bytes(reader.frame_bytes(&part.source).await?);
        }
        // Bodies whose bytes are known up front can be sent in part (RFC 9110 §14).
        let total = match &part.source {
            Source::Object { start, end, .. } => Some(end - start),
            Source::Bytes(b) => Some(b.len() as u64),
            _ => None,
        };
        if let Some(total) = total {
            set(&mut headers, header::ACCEPT_RANGES, "bytes");
            let range = if status == StatusCode::OK {
                byte_range(header_str(ctx.req.headers, header::RANGE).as_deref(), total)
            } else {
                None
            };
            match range {
                Some(Ok((a, b))) => {
                    part.source = match part.source {
                        Source::Object {
                            key,
                            start,
                            detect_ts,
                            ..
                        } => Source::Object {
                            key,
                            start: start + a,
                            end: start + b,
                            detect_ts,
                        },
                        Source::Bytes(bytes) => Source::Bytes(bytes.slice(a as usize..b as usize)),
                        other => other,
                    };
                    status = StatusCode::PARTIAL_CONTENT;
                    set(
                        &mut headers,
                        header::CONTENT_RANGE,
                        &format!("bytes {a}-{}/{total}", b - 1),
                    );
                    set(&mut headers, header::CONTENT_LENGTH, &(b - a).to_string());
                }
                Some(Err(())) => {
                    let mut h = HeaderMap::new();
                    set(&mut h, header::CONTENT_RANGE, &format!("bytes */{total}"));
                    return Ok(Response {
                        status: StatusCode::RANGE_NOT_SATISFIABLE,
                        headers: h,
                        body: Body::Empty,
                        outcome,
                    });
                }
                None => set(&mut headers, header::CONTENT_LENGTH, &total.to_string()),
            }
        }
        let state = StreamState::new(
            ctx.part.store.clone(),
            self.config.offload.clone(),
            self.budget.clone(),
            self.config.chunk_size,
            vec![part],
            Framing::Single,
        );
        Ok(Response {
            status,
            headers,
            body: primed(ctx, state).await?,
            outcome,
        })
    }
}

/// The body of a streamed response with its first part's first bytes made already: a stored
/// object that is gone, or a first frame that does not decode, is then an error status with a
/// reason rather than a 200 cut off after its headers (the commonest case: most corrupt files
/// fail on their first frame). Later parts can still only end the stream early. Not for HEAD,
/// whose body is never sent, nor for a revalidation, which likely ends in a 304 without one.
async fn primed(ctx: &Ctx<'_>, mut state: StreamState) -> Result<Body> {
    let h = ctx.req.headers;
    let revalidation =
        h.contains_key(header::IF_NONE_MATCH) || h.contains_key(header::IF_MODIFIED_SINCE);
    if ctx.req.method != Method::HEAD && !revalidation {
        state.advance().await?;
    }
    Ok(Body::Stream(Box::pin(body_stream(state))))
}

/// A document made in memory (metadata, search results): its length, its content coding, a
/// strong ETag when the outcome has a validator.
fn document_response(
    content_type: &str,
    coding: &str,
    vary: &str,
    body: Bytes,
    outcome: Outcome,
) -> Response {
    let mut headers = HeaderMap::new();
    set(&mut headers, header::CONTENT_TYPE, content_type);
    if coding != "identity" {
        set(&mut headers, header::CONTENT_ENCODING, coding);
    }
    if !vary.is_empty() {
        set(&mut headers, header::VARY, vary);
    }
    set(
        &mut headers,
        header::CONTENT_LENGTH,
        &body.len().to_string(),
    );
    if let Some(v) = &outcome.validator {
        set(&mut headers, header::ETAG, &entity_tag(v, false));
    }
    Response {
        status: StatusCode::OK,
        headers,
        body: Body::Full(body),
        outcome,
    }
}
