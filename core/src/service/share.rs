//! `POST {root}/studies/{s}/share[?expires=7d][&write=true]`: a share link to one stored study
//! ([`crate::auth::share`], docs/AUTH.md), made for a token that may write in the AE title and
//! reaches every study there (a confined token, or a link, cannot make links that outlive it).

use super::message::{Body, Outcome, Request, Response};
use super::{http, Service};
use crate::auth::share::{self, Share};
use crate::auth::{Access, Reach};
use crate::dicom::uid::Uid;
use crate::error::{Error, Result};
use ::http::{header, HeaderMap, HeaderValue, StatusCode};

impl Service {
    /// Makes a share link to `study` of `ae_title`.
    pub(super) async fn share_study(
        &self,
        req: &Request<'_>,
        ae_title: &str,
        study: &Uid,
    ) -> Result<Response> {
        let reach = self.authorise(req, ae_title, Access::Write).await?;
        let Some(keys) = self.config.auth.as_ref().and_then(|a| a.shares.as_ref()) else {
            return Err(Error::Forbidden(
                "this server makes no share links: start it with --share-keys (worker: SHARE_KEYS)"
                    .into(),
            ));
        };
        if reach != Reach::All {
            return Err(Error::Forbidden(
                "a token confined to some studies may not make share links".into(),
            ));
        }
        let query = req.query.unwrap_or("");
        let lifetime = match http::query_param(query, "expires") {
            Some(text) => share::parse_lifetime(&text).map_err(Error::BadRequest)?,
            None => 7 * 86_400,
        };
        let write = match http::query_param(query, "write").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(Error::BadRequest(format!(
                    "write={other:?}: the value is true or false"
                )))
            }
        };
        let part = self.partition(ae_title)?;
        let index = self.catalog()?.clone();
        part.ready(&*index, req.now).await?;
        let rows = index
            .query(crate::search::schema::version_of(
                index.dialect(),
                ae_title,
                study,
                None,
            ))
            .await?;
        if rows.is_empty() {
            return Err(Error::NotFound(format!("no study {study}")));
        }
        let made = Share {
            id: hex::encode(&req.entropy[..8]),
            ae_title: ae_title.to_owned(),
            study: study.to_string(),
            issued: req.now,
            expires: req.now + lifetime,
            write,
        };
        let token = keys.mint(&made).map_err(Error::BadRequest)?;
        let mut body = serde_json::json!({
            "token": token,
            "id": made.id,
            "aeTitle": made.ae_title,
            "studyInstanceUID": made.study,
            "expires": crate::search::feed::rfc3339(made.expires),
            "write": made.write,
        });
        if let Some(viewer) = &self.config.share_viewer {
            body["url"] = share::viewer_link(viewer, &made.study, &token).into();
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // A capability: never kept by a cache on the way.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(Response {
            status: StatusCode::CREATED,
            headers,
            body: Body::Full(body.to_string().into()),
            outcome: Outcome {
                resource: Some("share"),
                ..Outcome::default()
            },
        })
    }
}
