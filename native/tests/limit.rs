//! The request limit (`--max-requests`): beyond N in flight, an immediate 503 with
//! Retry-After; a request is in flight until its body is fully sent. In-process, no sockets:
//! holding a response's unread streaming body holds its permit.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use std::sync::Arc;
use tower::ServiceExt;
use wado_core::ingest as import;
use wado_core::store::MemoryStore;
use wado_core::{Config, Service};
use wado_native::{app, AppState};

const FILE: &[u8] = include_bytes!("../../tests/fixtures/corpus/ct_small_ele.dcm");

async fn service() -> (Arc<Service>, String) {
    let store = Arc::new(MemoryStore::new());
    let index: wado_core::search::SharedIndex = wado_native::index::IndexSpec::Memory
        .open(false)
        .await
        .unwrap();
    let layout =
        import::ensure_layout(&*store, Some((&*index, "DCM4CHEE")), "http://x", "DCM4CHEE")
            .await
            .unwrap();
    let batch = import::Batch::new(layout, 1_700_000_000, [1; 16]).with_index(
        index.clone(),
        "DCM4CHEE",
        None,
    );
    let r = batch
        .add(&*store, bytes::Bytes::from_static(FILE))
        .await
        .unwrap();
    batch.finish(&*store).await.unwrap();
    let url = format!("/dcm4chee-arc/aets/DCM4CHEE/rs/studies/{}", r.study);
    let config = Config {
        index: Some(index),
        ..Config::default()
    };
    (Arc::new(Service::new(store, config)), url)
}

fn get(url: &str) -> Request<Body> {
    Request::get(url)
        .header(
            "accept",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        )
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn beyond_the_limit_is_an_immediate_503_with_retry_after() {
    let (svc, url) = service().await;
    let router = app(AppState::new(svc, Some(1)));
    let first = router.clone().oneshot(get(&url)).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    // The first body is not read yet: its request is still in flight.
    let second = router.clone().oneshot(get(&url)).await.unwrap();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.headers()["retry-after"], "1");
    // Once the first body has been sent, there is room again.
    let body = first.into_body().collect().await.unwrap().to_bytes();
    assert!(body.len() > FILE.len());
    let third = router.clone().oneshot(get(&url)).await.unwrap();
    assert_eq!(third.status(), StatusCode::OK);
}

#[tokio::test]
async fn unlimited_by_default() {
    let (svc, url) = service().await;
    let router = app(AppState::new(svc, None));
    let mut held = Vec::new();
    for _ in 0..50 {
        let r = router.clone().oneshot(get(&url)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        held.push(r);
    }
}

#[tokio::test]
async fn health_answers_when_the_store_does() {
    let (svc, _) = service().await;
    let router = app(AppState::new(svc, None));
    let r = router
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"{\"status\":\"ok\"}\n");
}

#[tokio::test]
async fn metrics_count_requests_rejections_bytes_and_conversions() {
    let (svc, url) = service().await;
    let router = app(AppState::new(svc, Some(1)));
    let held = router.clone().oneshot(get(&url)).await.unwrap();
    let rejected = router.clone().oneshot(get(&url)).await.unwrap();
    assert_eq!(rejected.status(), StatusCode::SERVICE_UNAVAILABLE);
    let sent = held.into_body().collect().await.unwrap().to_bytes().len();
    // A conversion: the instance as Implicit VR Little Endian.
    let converted = router
        .clone()
        .oneshot(Request::get(&url).header("accept", "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(converted.status(), StatusCode::OK);
    let sent2 = converted
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .len();
    let text = router
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        text.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{text}"))
    };
    assert_eq!(
        value("wado_requests_total{resource=\"instances\",status=\"200\"}"),
        2.0
    );
    assert_eq!(
        value("wado_requests_total{resource=\"limit\",status=\"503\"}"),
        1.0
    );
    assert_eq!(value("wado_requests_rejected_total"), 1.0);
    assert_eq!(value("wado_requests_in_flight"), 0.0);
    assert!(value("wado_response_bytes_total") >= (sent + sent2) as f64);
    assert_eq!(value("wado_transcode_seconds_count"), 1.0);
}
