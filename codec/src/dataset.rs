//! A data set repair that every reader and every rewrite of a file shares: elements encoded
//! with VR UN whose tag the standard dictionary knows are read with the dictionary's VR.
//!
//! PS3.5 §6.2.2: a UN value holds the bytes of the element's value in Implicit VR Little
//! Endian, and a receiver that knows the tag interprets them with its VR. A system that did
//! not know a tag writes it as UN (Study Instance UID included, seen in the wild); DCMTK
//! (`+uc`), GDCM, pydicom and dcm4che read such an element with the dictionary VR. dicom-rs
//! keeps the bytes as UN, which turns a UID into the numbers of its bytes; so this runs right
//! after parsing: at import (validation, the index, the metadata), and before a conversion
//! writes the data set again (which then carries the dictionary VR, as DCMTK writes it).

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::header::Header as _;
use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// Rewrites, at every depth, the UN elements of known tags with their dictionary VR. Returns
/// how many were rewritten. Values that cannot be read with that VR (a length that is not a
/// multiple of the value size, a sequence that does not parse) stay UN.
pub fn dictionary_vrs(obj: &mut InMemDicomObject) -> usize {
    let mut changed = 0;
    let tags: Vec<Tag> = obj.iter().map(|e| e.tag()).collect();
    for tag in tags {
        let Some(elem) = obj.get(tag) else {
            continue;
        };
        match (elem.vr(), elem.value()) {
            (VR::UN, Value::Primitive(PrimitiveValue::U8(bytes))) => {
                let Some(vr) = dictionary_vr(tag) else {
                    continue;
                };
                if let Some(value) = reinterpret(vr, bytes) {
                    obj.put(value_element(tag, vr, value));
                    changed += 1;
                }
            }
            (VR::UN, Value::Primitive(PrimitiveValue::Empty)) => {
                if let Some(vr) = dictionary_vr(tag) {
                    obj.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
                    changed += 1;
                }
            }
            (_, Value::Sequence(_)) => {
                let mut inner = 0;
                let vr_un = elem.vr() == VR::UN;
                let _ = obj.update_value(tag, |v| {
                    if let Some(items) = v.items_mut() {
                        for item in items.iter_mut() {
                            inner += dictionary_vrs(item);
                        }
                    }
                });
                if vr_un && dictionary_vr(tag) == Some(VR::SQ) {
                    // An undefined-length UN that was read as a sequence: say SQ.
                    if let Ok(e) = obj.take_element(tag) {
                        let (_, value) = e.into_parts();
                        obj.put(DataElement::new_with_len(
                            tag,
                            VR::SQ,
                            Length::UNDEFINED,
                            value,
                        ));
                        inner += 1;
                    }
                }
                changed += inner;
            }
            _ => {}
        }
    }
    changed
}

/// The VR the standard dictionary gives a tag, when it gives exactly one (not for private
/// tags, unknown tags, or the ambiguous US/SS and OB/OW ones); a Private Creator is LO
/// (PS3.5 §7.8.1), which an Implicit VR file leaves to the reader to know.
fn dictionary_vr(tag: Tag) -> Option<VR> {
    if tag.group() % 2 == 1 {
        let creator = tag.group() > 0x0008 && (0x0010..=0x00FF).contains(&tag.element());
        return creator.then_some(VR::LO);
    }
    match StandardDataDictionary.by_tag(tag).map(|e| e.vr()) {
        Some(VirtualVr::Exact(vr)) if vr != VR::UN => Some(vr),
        _ => None,
    }
}

/// What a UN value becomes.
enum Reread {
    Primitive(PrimitiveValue),
    Sequence(DataSetSequence<InMemDicomObject>),
}

fn value_element(tag: Tag, vr: VR, value: Reread) -> DataElement<InMemDicomObject> {
    match value {
        Reread::Primitive(p) => DataElement::new(tag, vr, p),
        Reread::Sequence(s) => DataElement::new_with_len(tag, VR::SQ, Length::UNDEFINED, s),
    }
}

/// The bytes of a UN value read as `vr` (little endian, as Implicit VR encodes them).
fn reinterpret(vr: VR, b: &[u8]) -> Option<Reread> {
    use PrimitiveValue as P;
    fn chunks<const N: usize, T>(b: &[u8], f: impl Fn([u8; N]) -> T) -> Option<Vec<T>> {
        if b.len() % N != 0 {
            return None;
        }
        Some(
            b.chunks_exact(N)
                .map(|c| f(c.try_into().unwrap_or([0; N])))
                .collect(),
        )
    }
    let p = match vr {
        VR::AE
        | VR::AS
        | VR::CS
        | VR::DA
        | VR::DS
        | VR::DT
        | VR::IS
        | VR::LO
        | VR::PN
        | VR::SH
        | VR::TM
        | VR::UC
        | VR::UI => {
            let text = text(b);
            let text = text.trim_end_matches(['\0', ' ']);
            P::Strs(text.split('\\').map(str::to_owned).collect())
        }
        VR::LT | VR::ST | VR::UT | VR::UR => {
            P::Str(text(b).trim_end_matches(['\0', ' ']).to_owned())
        }
        VR::US => P::U16(chunks(b, u16::from_le_bytes)?.into()),
        VR::SS => P::I16(chunks(b, i16::from_le_bytes)?.into()),
        VR::UL => P::U32(chunks(b, u32::from_le_bytes)?.into()),
        VR::SL => P::I32(chunks(b, i32::from_le_bytes)?.into()),
        VR::UV => P::U64(chunks(b, u64::from_le_bytes)?.into()),
        VR::SV => P::I64(chunks(b, i64::from_le_bytes)?.into()),
        VR::FL | VR::OF => P::F32(chunks(b, f32::from_le_bytes)?.into()),
        VR::FD | VR::OD => P::F64(chunks(b, f64::from_le_bytes)?.into()),
        VR::OW => P::U16(chunks(b, u16::from_le_bytes)?.into()),
        VR::OL => P::U32(chunks(b, u32::from_le_bytes)?.into()),
        VR::OV => P::U64(chunks(b, u64::from_le_bytes)?.into()),
        VR::OB => P::U8(b.to_vec().into()),
        VR::AT => P::Tags(
            chunks(b, |c: [u8; 4]| {
                Tag(
                    u16::from_le_bytes([c[0], c[1]]),
                    u16::from_le_bytes([c[2], c[3]]),
                )
            })?
            .into(),
        ),
        VR::SQ => return sequence(b).map(Reread::Sequence),
        _ => return None,
    };
    Some(Reread::Primitive(p))
}

/// Text bytes: UTF-8 when they are, else ISO 8859-1 (the default repertoire's superset most
/// such values use).
fn text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => b.iter().map(|&c| char::from(c)).collect(),
    }
}

/// A defined-length sequence encoded as UN: its items, each a data set in Implicit VR Little
/// Endian.
fn sequence(b: &[u8]) -> Option<DataSetSequence<InMemDicomObject>> {
    let ts = TransferSyntaxRegistry.get("1.2.840.10008.1.2")?;
    let mut items = Vec::new();
    let mut pos = 0usize;
    while pos < b.len() {
        let head = b.get(pos..pos + 8)?;
        let tag = Tag(
            u16::from_le_bytes([head[0], head[1]]),
            u16::from_le_bytes([head[2], head[3]]),
        );
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if tag != Tag(0xFFFE, 0xE000) || len == u32::MAX {
            return None;
        }
        let body = b.get(pos + 8..(pos + 8).checked_add(len as usize)?)?;
        let mut item = InMemDicomObject::read_dataset_with_ts(body, ts).ok()?;
        dictionary_vrs(&mut item);
        items.push(item);
        pos += 8 + len as usize;
    }
    Some(DataSetSequence::new(items, Length::UNDEFINED))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dicom_dictionary_std::tags;

    fn un(tag: Tag, bytes: &[u8]) -> DataElement<InMemDicomObject> {
        DataElement::new(tag, VR::UN, PrimitiveValue::U8(bytes.to_vec().into()))
    }

    /// Text, numbers, a defined-length sequence (its items in Implicit VR Little Endian), a
    /// Private Creator (LO) and a private tag (left UN), each as PS3.5 §6.2.2 encodes them.
    #[test]
    fn un_values_of_known_tags_take_the_dictionary_vr() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(un(tags::STUDY_INSTANCE_UID, b"1.2.3\0"));
        obj.put(un(tags::PIXEL_SPACING, b"0.5\\0.25"));
        obj.put(un(tags::ROWS, &512u16.to_le_bytes()));
        obj.put(un(Tag(0x0009, 0x1001), b"secret"));
        obj.put(un(Tag(0x0009, 0x0010), b"ACME 1.0"));
        // (0008,1140) Referenced Image Sequence, one item holding (0008,1155) UI "1.2".
        let mut item = Vec::new();
        item.extend_from_slice(&[0x08, 0x00, 0x55, 0x11, 4, 0, 0, 0]);
        item.extend_from_slice(b"1.2\0");
        let mut seq = vec![0xFE, 0xFF, 0x00, 0xE0];
        seq.extend_from_slice(&(item.len() as u32).to_le_bytes());
        seq.extend_from_slice(&item);
        obj.put(un(tags::REFERENCED_IMAGE_SEQUENCE, &seq));
        assert_eq!(
            dictionary_vrs(&mut obj),
            5,
            "the four known ones and the Private Creator"
        );
        let e = obj.get(Tag(0x0009, 0x0010)).unwrap();
        assert_eq!((e.vr(), e.to_str().unwrap().as_ref()), (VR::LO, "ACME 1.0"));
        let e = obj.get(tags::STUDY_INSTANCE_UID).unwrap();
        assert_eq!((e.vr(), e.to_str().unwrap().as_ref()), (VR::UI, "1.2.3"));
        let e = obj.get(tags::PIXEL_SPACING).unwrap();
        assert_eq!(e.vr(), VR::DS);
        assert_eq!(e.to_multi_float64().unwrap(), vec![0.5, 0.25]);
        let e = obj.get(tags::ROWS).unwrap();
        assert_eq!((e.vr(), e.to_int::<u16>().unwrap()), (VR::US, 512));
        assert_eq!(obj.get(Tag(0x0009, 0x1001)).unwrap().vr(), VR::UN);
        let e = obj.get(tags::REFERENCED_IMAGE_SEQUENCE).unwrap();
        assert_eq!(e.vr(), VR::SQ);
        let items = e.items().unwrap();
        assert_eq!(
            items[0]
                .get(tags::REFERENCED_SOP_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap(),
            "1.2"
        );
    }
}
