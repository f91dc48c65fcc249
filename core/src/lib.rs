//! # wado-core
//!
//! The runtime-neutral heart of wado, a DICOMweb server (PS3.18). [`Service::handle`] turns a
//! [`Request`] (method, path, query, headers) and a [`Store`] into a [`Response`]: status,
//! headers and a body streamed part by part. It does no IO of its own, reads no clock, starts
//! no thread and knows no runtime, so the same code runs in the native axum server, in a
//! Cloudflare Worker over R2 and in the browser (it builds for `wasm32-unknown-unknown`).
//!
//! One request is one straight path, a module each:
//!
//! ```text
//! route ─▶ authorise ─▶ negotiate ─▶ plan ─────────────▶ execute
//! route     auth         negotiate    service::plan::*     service::body (parts streamed from the store)
//!                        media                              wire (multipart, zip), dicom::convert, wado-codec
//! ```
//!
//! Beside it: [`layout`] (every storage key, the instance index, the one import pipeline and
//! the read-through cache in front of an upstream archive), [`store`] (the storage trait every
//! backend implements, and its conformance suite), [`dicom`] (scan, DICOM JSON and XML,
//! conversions), [`wire`] (multipart and ZIP framing). Pixel data codecs are the crate
//! `wado-codec`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod auth;
pub mod dicom;
pub mod dimse;
mod error;
pub mod ingest;
pub mod layout;
mod media;
mod negotiate;
pub mod render;
mod route;
pub mod search;
mod service;
pub mod store;
pub mod wire;

pub use error::{Error, Result};
pub use route::{reads_body, Target, Uid};
pub use service::{
    Body, BodyStream, Config, Job, Offload, Outcome, Request, RequestBody, RequestStream, Response,
    Service, Who,
};
pub use store::Store;
pub use wado_codec::{ts, PixelInfo};

/// Entry points for the fuzz targets (`core/fuzz`): the parsers that take raw client input.
/// Not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::negotiate::{choose_ts, Category, Negotiation};
    pub use crate::route::{parse_frame_list, parse_path, Uid};
    pub use crate::service::choose_encoding;
}
