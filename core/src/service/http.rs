//! Generic HTTP, the same for every resource: CORS, content coding, conditional requests
//! (RFC 9110 §13), byte ranges (§14), error responses, header and query helpers.

use super::message::{Body, Outcome, Request, Response};
use crate::error::Error;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use std::collections::HashMap;

/// The value of Access-Control-Allow-Origin for this request, if its Origin is allowed.
pub(crate) fn allowed_origin(allowed: &[String], headers: &HeaderMap) -> Option<String> {
    let origin = header_str(headers, header::ORIGIN)?;
    if allowed.iter().any(|o| o == "*") {
        return Some("*".into());
    }
    allowed
        .iter()
        .any(|o| o.eq_ignore_ascii_case(&origin))
        .then_some(origin)
}

/// True for a CORS preflight (an OPTIONS request naming the method it will make).
pub(crate) fn is_preflight(req: &Request<'_>) -> bool {
    req.method == Method::OPTIONS
        && header_str(
            req.headers,
            HeaderName::from_static("access-control-request-method"),
        )
        .is_some()
}

/// A CORS preflight answer (Fetch standard §3.2.2).
pub(crate) fn preflight(origin: &str) -> Response {
    let mut headers = HeaderMap::new();
    set(&mut headers, header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    set(
        &mut headers,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        "GET, HEAD, POST, DELETE, PATCH, OPTIONS",
    );
    // Content-Type: a STOW-RS request's multipart/related is not a "simple" type, so the
    // browser asks first (Fetch standard, CORS-safelisted request headers).
    set(
        &mut headers,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        "Accept, Authorization, Content-Type, Range, If-None-Match, If-Modified-Since",
    );
    set(&mut headers, header::ACCESS_CONTROL_MAX_AGE, "600");
    set(&mut headers, header::VARY, "Origin");
    Response {
        status: StatusCode::NO_CONTENT,
        headers,
        body: Body::Empty,
        outcome: Outcome::default(),
    }
}

/// The CORS headers of an actual response from an allowed origin.
pub(crate) fn allow_origin(headers: &mut HeaderMap, origin: &str) {
    set(headers, header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    set(headers, header::ACCESS_CONTROL_EXPOSE_HEADERS, CORS_EXPOSED);
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// `Last-Modified` on a successful response, then 304 when the client's copy is current.
pub(crate) fn conditional(
    headers: &HeaderMap,
    last_modified: Option<u64>,
    mut resp: Response,
) -> Response {
    if let Some(m) = last_modified {
        if matches!(resp.status, StatusCode::OK | StatusCode::PARTIAL_CONTENT) {
            set(&mut resp.headers, header::LAST_MODIFIED, &http_date(m));
        }
    }
    not_modified(headers, last_modified, resp)
}

/// Response headers a browser script may read (CORS).
pub(crate) const CORS_EXPOSED: &str =
    "Content-Type, Content-Location, Content-Length, Content-Encoding, ETag, Warning";

/// Picks a content coding from Accept-Encoding (RFC 9110 §12.5.3): gzip, then deflate, else
/// identity. Absent header: identity.
pub fn choose_encoding(accept_encoding: Option<&str>) -> &'static str {
    let Some(v) = accept_encoding else {
        return "identity";
    };
    let mut q: HashMap<String, u16> = HashMap::new();
    for item in crate::negotiate::parse_accept(
        &v.split(',')
            .map(|c| format!("x/{}", c.trim()))
            .collect::<Vec<_>>()
            .join(","),
    ) {
        let name = item.essence.trim_start_matches("x/").to_owned();
        q.insert(name, item.q);
    }
    let star = q.get("*").copied();
    let get = |n: &str| q.get(n).copied().or(star).unwrap_or(0);
    if get("gzip") > 0 || q.get("x-gzip").is_some_and(|&v| v > 0) {
        "gzip"
    } else if get("deflate") > 0 {
        "deflate"
    } else {
        "identity"
    }
}

pub(crate) fn header_str(h: &HeaderMap, name: HeaderName) -> Option<String> {
    let values: Vec<&str> = h
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        None
    } else {
        Some(values.join(", "))
    }
}

pub(crate) fn set(h: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// 206 with the Warning header when instances or frames were left out, else 200.
pub(crate) fn status_and_warning(headers: &mut HeaderMap, outcome: &Outcome) -> StatusCode {
    match &outcome.warning {
        Some(w) => {
            set_warning(headers, w);
            StatusCode::PARTIAL_CONTENT
        }
        None => StatusCode::OK,
    }
}

pub(crate) fn set_warning(h: &mut HeaderMap, text: &str) {
    h.remove(header::WARNING);
    append_warning(h, text);
}

/// Adds a `Warning: 299` header (one per note; RFC 7234 §5.5 allows several).
pub(crate) fn append_warning(h: &mut HeaderMap, text: &str) {
    // RFC 7234 §5.5 form, as PS3.18 §8.4.2 uses it.
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(900)
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("299 wado \"{}\"", clean.replace('"', "'"))) {
        h.append(header::WARNING, v);
    }
}

/// An entity tag from a validator (RFC 9110 §8.8.3): a hash, weak for multipart bodies (their
/// boundary differs from one response to the next, their content does not).
pub(crate) fn entity_tag(validator: &str, weak: bool) -> String {
    use sha2::Digest;
    let h = hex::encode(&sha2::Sha256::digest(validator.as_bytes())[..16]);
    if weak {
        format!("W/\"{h}\"")
    } else {
        format!("\"{h}\"")
    }
}

/// An IMF-fixdate (RFC 9110 §5.6.7) from seconds since the Unix epoch.
pub(crate) fn http_date(secs: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// Seconds since the Unix epoch from an HTTP-date (any of the three formats RFC 9110 §5.6.7
/// says recipients accept), `None` when it is not one.
pub(crate) fn parse_http_date(value: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(value.trim()).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// 304 Not Modified when the client's copy is current (RFC 9110 §13.2.2): If-None-Match names
/// the response's entity tag (weak comparison, §13.1.2), or, only when If-None-Match is absent,
/// If-Modified-Since is a valid date no earlier than the last modification (§13.1.3). The 304
/// carries the headers a 200 would have had for caching.
pub(crate) fn not_modified(
    headers: &HeaderMap,
    last_modified: Option<u64>,
    resp: Response,
) -> Response {
    if !(resp.status == StatusCode::OK || resp.status == StatusCode::PARTIAL_CONTENT) {
        return resp;
    }
    let fresh = match header_str(headers, header::IF_NONE_MATCH) {
        Some(inm) => {
            let Some(etag) = resp.headers.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
                return resp;
            };
            let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
            inm.trim() == "*" || inm.split(',').any(|t| opaque(t) == opaque(etag))
        }
        None => match (
            header_str(headers, header::IF_MODIFIED_SINCE).and_then(|v| parse_http_date(&v)),
            last_modified,
        ) {
            (Some(since), Some(modified)) => modified <= since,
            _ => false,
        },
    };
    if !fresh {
        return resp;
    }
    let mut h = HeaderMap::new();
    for name in [
        header::ETAG,
        header::LAST_MODIFIED,
        header::VARY,
        header::CONTENT_LOCATION,
    ] {
        if let Some(v) = resp.headers.get(&name) {
            h.insert(name, v.clone());
        }
    }
    Response {
        status: StatusCode::NOT_MODIFIED,
        headers: h,
        body: Body::Empty,
        outcome: resp.outcome,
    }
}

/// The byte range of a `Range: bytes=...` header against a length (RFC 9110 §14.1.2): `None`
/// when there is none or it is not a single byte range (the whole body is sent then),
/// `Some(Err(()))` when unsatisfiable.
pub(crate) fn byte_range(
    value: Option<&str>,
    total: u64,
) -> Option<std::result::Result<(u64, u64), ()>> {
    let spec = value?.trim().strip_prefix("bytes=")?;
    if total == 0 {
        // No byte of an empty body can be asked for (and `bytes=-N` must not become 0..0).
        return Some(Err(()));
    }
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return Some(Err(()));
        }
        (total.saturating_sub(n), total)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            total
        } else {
            let last = b.parse::<u64>().ok()?;
            if last < start {
                // Invalid, not unsatisfiable (RFC 9110 §14.1.1): the header is ignored.
                return None;
            }
            last.saturating_add(1).min(total)
        };
        if start >= total || start >= end {
            return Some(Err(()));
        }
        (start, end)
    };
    Some(Ok(range))
}

/// The error response: status from [`Error::status`], a plain-text reason.
pub(crate) fn error_response(e: &Error) -> Response {
    let mut headers = HeaderMap::new();
    set(
        &mut headers,
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8",
    );
    if matches!(e, Error::MethodNotAllowed | Error::NotWritable(_)) {
        set(&mut headers, header::ALLOW, "GET, HEAD");
    }
    if matches!(e, Error::Busy(_)) {
        set(&mut headers, header::RETRY_AFTER, "1");
    }
    if let Error::Unauthorized { invalid, reason } = e {
        // RFC 6750 §3: error_description is a quoted string of printable ASCII without `"`
        // or `\`; our reasons are fixed texts.
        let v = if *invalid {
            format!(
                "Bearer realm=\"wado\", error=\"invalid_token\", error_description=\"{}\"",
                reason.replace(['"', '\\'], "'")
            )
        } else {
            "Bearer realm=\"wado\"".to_owned()
        };
        set(&mut headers, header::WWW_AUTHENTICATE, &v);
    }
    let body = Bytes::from(format!("{}\n", e.public_message()));
    set(
        &mut headers,
        header::CONTENT_LENGTH,
        &body.len().to_string(),
    );
    Response {
        status: e.status(),
        headers,
        body: Body::Full(body),
        outcome: Outcome {
            error: Some(e.to_string()),
            ..Outcome::default()
        },
    }
}

/// The value of a query parameter, percent-decoded (`+` is a space).
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k).as_deref() == Some(name))
            .then(|| percent_decode(v))
            .flatten()
    })
}

pub(crate) use crate::route::percent_decode;
