//! The browser demo's static files (`web-demo/`, built by scripts/demo-build.sh), at `/demo/`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{header, StatusCode};

use crate::AppState;

/// `/demo` → `/demo/`, so relative URLs in the page resolve under `/demo/`.
pub(crate) async fn redirect() -> Redirect {
    Redirect::permanent("/demo/")
}

/// `/demo/` is the page.
pub(crate) async fn index(state: State<AppState>) -> Response {
    file(state, Path("index.html".to_owned())).await
}

/// A file of the built demo. Only plain names under the demo directory: no `..`, no hidden
/// files, no escapes.
pub(crate) async fn file(State(state): State<AppState>, Path(path): Path<String>) -> Response {
    let Some(dir) = &state.demo_dir else {
        return not_built("no demo directory is configured (--demo-dir)");
    };
    let ok = path.split('/').all(|seg| {
        !seg.is_empty()
            && !seg.starts_with('.')
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    });
    if !ok {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    }
    let full = dir.join(&path);
    match tokio::fs::read(&full).await {
        Ok(bytes) => {
            let ext = path.rsplit('.').next().unwrap_or("");
            let ct = match ext {
                "html" => "text/html; charset=utf-8",
                "js" | "mjs" => "text/javascript; charset=utf-8",
                "css" => "text/css; charset=utf-8",
                "wasm" => "application/wasm",
                "json" => "application/json",
                "svg" => "image/svg+xml",
                _ => "application/octet-stream",
            };
            (
                [
                    (header::CONTENT_TYPE, ct),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                bytes,
            )
                .into_response()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if path == "index.html" {
                not_built(&format!("{} has no index.html", dir.display()))
            } else {
                (StatusCode::NOT_FOUND, "no such file\n").into_response()
            }
        }
        Err(e) => {
            tracing::error!(path = %full.display(), error = %e, "demo file");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file\n").into_response()
        }
    }
}

fn not_built(why: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "The demo is not available: {why}.\nBuild it with `bash scripts/demo-build.sh` and start `wado serve --demo-dir web-demo/dist`.\n"
        ),
    )
        .into_response()
}
