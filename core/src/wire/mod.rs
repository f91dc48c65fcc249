//! Response framings other than a plain body: multipart/related (RFC 2387, PS3.18 §8.7.3.3,
//! [`multipart`]) and ZIP ([`zip`], dcm4chee's `application/zip`).

pub mod multipart;
pub mod parts;
pub mod zip;
