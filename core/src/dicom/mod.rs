//! DICOM itself, on byte buffers: where elements lie in a Part-10 file ([`scan`]), the DICOM
//! JSON model (PS3.18 Annex F, [`json`]), the Native DICOM Model in XML (PS3.19, [`xml`]), and
//! rewriting a file in another transfer syntax or reading one value out of it ([`convert`]),
//! text in a Specific Character Set with code extensions ([`charset`]); and the identifiers
//! every layer names ([`uid`]: UIDs, attribute paths).

pub mod charset;
pub mod convert;
pub mod edit;
pub mod json;
pub mod part10;
pub mod scan;
pub mod uid;
pub mod xml;
