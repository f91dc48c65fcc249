//! The worker's R2 store passes the storage conformance suite every backend runs (memory, file
//! system, S3): the suite runs inside the worker under `wrangler dev`, over its local R2
//! bucket, at a route that exists only when `STORE_SELFTEST=1`.
#![allow(clippy::unwrap_used)]

use wado_tests::*;

#[test]
fn the_r2_store_passes_the_storage_conformance_suite() {
    let worker = Server::start_worker(None, &[("STORE_SELFTEST", "1")]);
    let r = get(&format!("{}/__wado/store-conformance", worker.base), None);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 200, "{body}");
    assert_eq!(body, "ok: every conformance check passed\n");
}

#[test]
fn the_self_test_route_is_not_there_by_default() {
    let worker = Server::start_worker(None, &[]);
    let r = get(&format!("{}/__wado/store-conformance", worker.base), None);
    assert_eq!(r.status, 404);
}
