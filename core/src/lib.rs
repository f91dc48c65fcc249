//! # wado-core
//!
//! The runtime-neutral heart of wado, a DICOMweb WADO-RS server (PS3.18 §10.4). It turns a
//! request (path, query, headers) and a [`store::Store`] into a [`service::Response`]: status,
//! headers and a body streamed part by part. It does no IO of its own, reads no clock, starts no
//! thread and knows no runtime, so the same code runs in the native axum server, in a
//! Cloudflare Worker over R2 and in the browser (it builds for `wasm32-unknown-unknown`).
//!
//! Modules, one concern each:
//! - [`route`]: request paths → typed [`route::Resource`]s, UIDs validated;
//! - [`media`], [`negotiate`]: the media type and transfer syntax tables, and Accept handling;
//! - [`multipart`]: the multipart/related writer and parser; [`zip`]: a streaming ZIP writer;
//! - [`json`]: the DICOM JSON writer (PS3.18 Annex F) with BulkDataURIs;
//! - [`xml`]: the Native DICOM Model (PS3.19) from DICOM JSON, for XML metadata;
//! - [`scan`]: element offsets in Part-10 files, for ranged reads;
//! - [`layout`]: the storage layout contract and import-time derived objects;
//! - [`store`]: the storage trait, the memory store and the conformance suite;
//! - [`import`]: writing instances and rebuilding metadata in that layout;
//! - [`origin`]: the read-through cache in front of another archive;
//! - [`auth`], [`jwt`]: access control with static bearer tokens and JWTs;
//! - [`service`]: the request handler.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod codec;
pub mod error;
mod huffman;
pub mod import;
pub mod jpegdct;
pub mod jpegll;
pub mod jpegls;
pub mod json;
pub mod jwt;
pub mod layout;
pub mod media;
pub mod multipart;
pub mod negotiate;
pub mod origin;
pub mod rle;
pub mod route;
pub mod scan;
pub mod service;
pub mod store;
pub mod xml;
pub mod zip;

pub use error::{Error, Result};
