//! JPEG (ITU-T T.81): the lossless encoder of process 14 ([`lossless`]), the DCT codec of the
//! baseline and extended processes ([`dct`]), and the Huffman coding both share
//! ([`huffman`], Annex C and K.2).

pub mod dct;
pub(crate) mod huffman;
pub mod lossless;
