//! A Part-10 file (PS3.10 §7.1) around a data set received without one (a C-STORE's): the
//! preamble, `DICM`, and the File Meta Information group written here, the data set's bytes
//! after it untouched.

/// wado's Implementation Class UID (0002,0012): a UUID-derived UID (PS3.5 §B.2).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.135518204369025940876889406186943148811";
/// wado's Implementation Version Name (0002,0013), at most 16 characters.
pub const IMPLEMENTATION_VERSION: &str = "WADO_0_1";

/// What the File Meta Information says of the data set.
#[derive(Debug, Clone, Copy)]
pub struct FileMeta<'a> {
    /// Media Storage SOP Class UID.
    pub sop_class: &'a str,
    /// Media Storage SOP Instance UID.
    pub sop_instance: &'a str,
    /// The data set's Transfer Syntax UID.
    pub transfer_syntax: &'a str,
    /// Source Application Entity Title (the peer that sent it), when known.
    pub source_ae: Option<&'a str>,
}

/// The file: preamble, prefix, meta group, then `data_set` as given.
pub fn wrap(meta: FileMeta<'_>, data_set: &[u8]) -> Vec<u8> {
    let mut group = Vec::with_capacity(256);
    let mut put = |element: u16, vr: &[u8; 2], value: &[u8], pad: u8| {
        let len = value.len() + value.len() % 2;
        group.extend_from_slice(&0x0002u16.to_le_bytes());
        group.extend_from_slice(&element.to_le_bytes());
        group.extend_from_slice(vr);
        if vr == b"OB" {
            group.extend_from_slice(&[0, 0]);
            group.extend_from_slice(&(len as u32).to_le_bytes());
        } else {
            group.extend_from_slice(&(len as u16).to_le_bytes());
        }
        group.extend_from_slice(value);
        if value.len() % 2 == 1 {
            group.push(pad);
        }
    };
    put(0x0001, b"OB", &[0, 1], 0);
    put(0x0002, b"UI", meta.sop_class.as_bytes(), 0);
    put(0x0003, b"UI", meta.sop_instance.as_bytes(), 0);
    put(0x0010, b"UI", meta.transfer_syntax.as_bytes(), 0);
    put(0x0012, b"UI", IMPLEMENTATION_CLASS_UID.as_bytes(), 0);
    put(0x0013, b"SH", IMPLEMENTATION_VERSION.as_bytes(), b' ');
    if let Some(ae) = meta.source_ae.filter(|a| !a.is_empty()) {
        put(0x0016, b"AE", ae.as_bytes(), b' ');
    }
    let mut out = Vec::with_capacity(128 + 4 + 12 + group.len() + data_set.len());
    out.resize(128, 0);
    out.extend_from_slice(b"DICM");
    out.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    out.extend_from_slice(&(group.len() as u32).to_le_bytes());
    out.extend_from_slice(&group);
    out.extend_from_slice(data_set);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dicom_rs_reads_the_file_and_its_meta() {
        let src = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/corpus/ct_small_ele.dcm"),
        )
        .expect("fixture");
        let meta = crate::dicom::scan::scan_meta(&src).expect("meta");
        let data_set = &src[meta.dataset_offset as usize..];
        let file = wrap(
            FileMeta {
                sop_class: "1.2.840.10008.5.1.4.1.1.2",
                sop_instance: "1.2.3.4.5",
                transfer_syntax: &meta.transfer_syntax,
                source_ae: Some("STORESCU"),
            },
            data_set,
        );
        let obj = dicom_object::OpenFileOptions::new()
            .from_reader(&file[..])
            .expect("dicom-rs reads it");
        let m = obj.meta();
        assert_eq!(m.media_storage_sop_instance_uid(), "1.2.3.4.5");
        assert_eq!(m.transfer_syntax(), meta.transfer_syntax);
        assert_eq!(m.implementation_class_uid(), IMPLEMENTATION_CLASS_UID);
        assert_eq!(
            m.source_application_entity_title.as_deref(),
            Some("STORESCU")
        );
        let again = crate::dicom::scan::scan_meta(&file).expect("meta");
        assert_eq!(&file[again.dataset_offset as usize..], data_set);
    }
}
