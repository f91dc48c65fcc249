//! Corrections: `PATCH {root}/studies/{s}` with new patient and study attributes gives every
//! instance of the study a new version whose header holds them (dicom-rs reads them in the
//! retrieved files, the pixel data as it was), search and metadata show them, the change
//! feed says `correct` once per instance, and the replaced versions stay in the store for
//! the grace period. Bad requests are refused with reasons, and nothing changes.

use super::lifecycle::{at, feed, json_of, study_row, writer};
use super::stow::{as_instance, keys, multipart, post_at, send_at};
use super::*;

const T0: u64 = 1_700_000_000;

/// A PATCH of `body` (with this Content-Type) at `now`.
fn patch_at(svc: &Service, path: &str, content_type: &str, body: &[u8], now: u64) -> Got {
    send_at(svc, Method::PATCH, path, content_type, body, now)
}

fn element(file: &[u8], tag: dicom_core::Tag) -> String {
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(file)
        .expect("a DICOM file");
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_default()
}

fn pixels(file: &[u8]) -> Vec<u8> {
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(file)
        .expect("a DICOM file");
    obj.element(dicom_dictionary_std::tags::PIXEL_DATA)
        .ok()
        .and_then(|e| e.to_bytes().ok().map(|b| b.to_vec()))
        .unwrap_or_default()
}

#[test]
fn a_correction_reaches_every_instance_search_metadata_and_the_feed() {
    use dicom_dictionary_std::tags;
    let ct = fixture!("ct_small_ele.dcm");
    let (st, ct_series, ct_sop) = uids(&ct);
    let ct2_sop = "1.2.826.0.1.3680043.8.498.25.1";
    let ct2 = as_instance(&ct, ct2_sop);
    let mr = in_study(&fixture!("mr_small_implicit.dcm"), &st);
    let (_, mr_series, mr_sop) = uids(&mr);
    let other = fixture!("sc_rgb_odd_3x3.dcm");
    let (other_st, ..) = uids(&other);
    let other_name = element(&other, tags::PATIENT_NAME);

    let store = Arc::new(MemoryStore::new());
    let svc = test_service(store.clone(), writer());
    let files = [&ct, &ct2, &mr, &other];
    let parts: Vec<(&str, &[u8])> = files
        .iter()
        .map(|f| ("application/dicom", &f[..]))
        .collect();
    assert_eq!(
        post_at(&svc, &format!("{ROOT}/studies"), &multipart(&parts), T0).status,
        200
    );
    // The study's metadata is assembled (and kept) before the correction.
    let study_meta = format!("{ROOT}/studies/{st}/metadata");
    assert_eq!(at(&svc, Method::GET, &study_meta, T0).status, 200);
    let before = keys(&store);

    let t1 = T0 + 10;
    let body = br#"{
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Smith^Anna"}]},
        "00100020": {"vr": "LO", "Value": ["PID-CORRECTED"]},
        "00080050": {"vr": "SH", "Value": ["ACC-42"]},
        "00081030": {"vr": "LO", "Value": ["Corrected description"]}
    }"#;
    let got = patch_at(
        &svc,
        &format!("{ROOT}/studies/{st}"),
        "application/dicom+json",
        body,
        t1,
    );
    assert_eq!(got.status, 204, "{}", String::from_utf8_lossy(&got.body));
    assert!(
        got.header("warning").contains("corrected 3 instance(s)"),
        "{}",
        got.header("warning")
    );

    // Each retrieved instance: the new values, everything else (pixels above all) as sent.
    for (series, sop, original) in [
        (&ct_series, &ct_sop, &ct),
        (&ct_series, &ct2_sop.to_owned(), &ct2),
        (&mr_series, &mr_sop, &mr),
    ] {
        let path = format!("{ROOT}/studies/{st}/series/{series}/instances/{sop}");
        let got = at(&svc, Method::GET, &path, t1);
        assert_eq!(got.status, 200);
        let file = got
            .parts()
            .into_iter()
            .next()
            .map(|p| p.body.to_vec())
            .expect("one part");
        assert_eq!(element(&file, tags::PATIENT_NAME), "Smith^Anna");
        assert_eq!(element(&file, tags::PATIENT_ID), "PID-CORRECTED");
        assert_eq!(element(&file, tags::ACCESSION_NUMBER), "ACC-42");
        assert_eq!(
            element(&file, tags::STUDY_DESCRIPTION),
            "Corrected description"
        );
        assert_eq!(element(&file, tags::SOP_INSTANCE_UID), *sop);
        assert_eq!(
            element(&file, tags::PATIENT_BIRTH_DATE),
            element(original, tags::PATIENT_BIRTH_DATE)
        );
        assert_eq!(pixels(&file), pixels(original));
        // The instance's metadata too.
        let got = at(&svc, Method::GET, &format!("{path}/metadata"), t1);
        let meta = json_of(&got);
        assert_eq!(
            meta[0]["00100010"]["Value"][0]["Alphabetic"],
            serde_json::json!("Smith^Anna")
        );
    }
    // The study's metadata (assembled before) is new.
    let got = at(&svc, Method::GET, &study_meta, t1);
    let items = json_of(&got);
    let names: Vec<&str> = items
        .as_array()
        .expect("array")
        .iter()
        .map(|i| {
            i["00100010"]["Value"][0]["Alphabetic"]
                .as_str()
                .unwrap_or("")
        })
        .collect();
    assert_eq!(names, vec!["Smith^Anna"; 3]);
    // Search finds it by the new values, not by the old ones; counts unchanged.
    let row = study_row(&svc, &st, t1).expect("still there");
    assert_eq!(row["00100010"]["Value"][0]["Alphabetic"], "Smith^Anna");
    assert_eq!(row["00080050"]["Value"][0], "ACC-42");
    assert_eq!(row["00201208"]["Value"][0], 3);
    let found = |q: &str| {
        let got = at(&svc, Method::GET, &format!("{ROOT}/studies?{q}"), t1);
        assert!(matches!(got.status, 200 | 204));
        json_of(&got)
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["0020000D"]["Value"][0].as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert_eq!(found("PatientName=smith*"), vec![st.clone()]);
    assert_eq!(found("PatientID=PID-CORRECTED"), vec![st.clone()]);
    assert_eq!(found("AccessionNumber=ACC-42"), vec![st.clone()]);
    // The other study is untouched.
    let row = study_row(&svc, &other_st, t1).expect("there");
    assert_eq!(
        row["00100010"]["Value"][0]["Alphabetic"]
            .as_str()
            .unwrap_or(""),
        other_name
    );
    // The feed: four creates, then a correct per instance of the study.
    let rows = feed(&svc, 3, t1);
    let actions: Vec<&str> = rows.iter().filter_map(|r| r["Action"].as_str()).collect();
    assert_eq!(
        actions,
        vec!["create", "create", "create", "create", "correct", "correct", "correct"]
    );
    let mut corrected: Vec<&str> = rows[4..]
        .iter()
        .filter_map(|r| r["SOPInstanceUID"].as_str())
        .collect();
    corrected.sort();
    let mut expected = vec![ct_sop.as_str(), ct2_sop, mr_sop.as_str()];
    expected.sort();
    assert_eq!(corrected, expected);
    // The replaced versions stay for the grace period: every key of before is still there,
    // and a new version of each corrected instance (its file and its index) besides.
    let after = keys(&store);
    assert!(before.iter().all(|k| after.contains(k)));
    assert_eq!(after.len(), before.len() + 6);
    // The same values again: nothing to change, nothing in the feed.
    let got = patch_at(
        &svc,
        &format!("{ROOT}/studies/{st}"),
        "application/dicom+json",
        body,
        t1 + 1,
    );
    assert_eq!(got.status, 204);
    assert!(
        got.header("warning").contains("corrected 0 instance(s)"),
        "{}",
        got.header("warning")
    );
    assert_eq!(feed(&svc, 100, t1 + 1).len(), 7);
}

#[test]
fn bad_corrections_are_refused_with_reasons_and_change_nothing() {
    let ct = fixture!("ct_small_ele.dcm");
    let (st, series, _) = uids(&ct);
    let store = Arc::new(MemoryStore::new());
    let svc = test_service(store.clone(), writer());
    let path = format!("{ROOT}/studies");
    assert_eq!(
        post_at(
            &svc,
            &path,
            &multipart(&[("application/dicom", &ct[..])]),
            T0
        )
        .status,
        200
    );
    let before = keys(&store);
    let good = br#"{"00100010":{"vr":"PN","Value":[{"Alphabetic":"A^B"}]}}"#;
    let study = format!("{ROOT}/studies/{st}");
    for (path, ct, body, status) in [
        (
            study.clone(),
            "application/dicom+json",
            &br#"{"00100010":"#[..],
            400,
        ),
        (
            study.clone(),
            "application/dicom+json",
            br#"{"0020000D":{"vr":"UI","Value":["1.2.3"]}}"#,
            400,
        ),
        (study.clone(), "application/dicom", good, 415),
        (
            format!("{ROOT}/studies/1.2.3.4.5.6"),
            "application/dicom+json",
            good,
            404,
        ),
        (
            format!("{study}/series/{series}"),
            "application/dicom+json",
            good,
            405,
        ),
        (
            format!("{ROOT}/studies"),
            "application/dicom+json",
            good,
            405,
        ),
    ] {
        let got = patch_at(&svc, &path, ct, body, T0 + 1);
        assert_eq!(
            got.status,
            status,
            "{path} {}",
            String::from_utf8_lossy(body)
        );
        if status != 405 {
            assert!(!got.body.is_empty(), "a reason");
        }
    }
    let big = vec![b' '; 70 * 1024];
    assert_eq!(
        patch_at(&svc, &study, "application/json", &big, T0 + 1).status,
        413
    );
    // Without the permission to write: 403 (an anonymous client on a server that allows
    // anonymous reads only).
    let reader = test_service(store.clone(), Config::default());
    let got = patch_at(&reader, &study, "application/dicom+json", good, T0 + 1);
    assert!(matches!(got.status, 401 | 403), "{}", got.status);
    assert_eq!(keys(&store), before);
    assert_eq!(feed(&svc, 10, T0 + 2).len(), 1);
}

/// The versions of an instance kept after a correction and a delete: listed (current first),
/// each served as it was stored (the first is the fixture byte for byte, the corrected one
/// has the new name), a rejected one never served; bad, unknown and purged versions refused.
#[test]
fn kept_versions_are_listed_and_served_until_purged() {
    use dicom_dictionary_std::tags;
    let ct = fixture!("ct_small_ele.dcm");
    let (st, se, sop) = uids(&ct);
    let store = Arc::new(MemoryStore::new());
    let svc = test_service(store.clone(), writer());
    assert_eq!(
        post_at(
            &svc,
            &format!("{ROOT}/studies"),
            &multipart(&[("application/dicom", &ct)]),
            T0
        )
        .status,
        200
    );
    let body = br#"{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Versioned^Name"}]}}"#;
    let got = patch_at(
        &svc,
        &format!("{ROOT}/studies/{st}"),
        "application/dicom+json",
        body,
        T0 + 10,
    );
    assert_eq!(got.status, 204, "{}", String::from_utf8_lossy(&got.body));
    let versions = format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}/versions");
    let list = |now: u64| {
        let got = at(&svc, Method::GET, &versions, now);
        let json = if got.status == 200 {
            json_of(&got)
        } else {
            serde_json::Value::Null
        };
        (got.status, json)
    };
    let (status, listed) = list(T0 + 11);
    assert_eq!(status, 200);
    let listed = listed.as_array().expect("array").clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["State"], "current");
    assert_eq!(listed[1]["State"], "retired");
    let gen = |v: &serde_json::Value| v["Version"].as_str().expect("gen").to_owned();
    let (current, first) = (gen(&listed[0]), gen(&listed[1]));
    let one = |gen: &str, accept: &str| {
        ask(
            &svc,
            Method::GET,
            &format!("{versions}/{gen}"),
            &[("accept", accept)],
        )
    };
    let got = one(&first, "application/dicom");
    assert_eq!(got.status, 200);
    assert_eq!(
        got.body,
        ct.to_vec(),
        "the first version is the file stored"
    );
    let got = one(&current, "*/*");
    assert_eq!(got.status, 200);
    assert_eq!(element(&got.body, tags::PATIENT_NAME), "Versioned^Name");
    assert_eq!(pixels(&got.body), pixels(&ct));
    // Refused: not a version, not kept, not a media type it is served as.
    assert_eq!(one("xyz", "application/dicom").status, 400);
    assert_eq!(one("abcdef", "application/dicom").status, 404);
    assert_eq!(one(&first, "image/jpeg").status, 406);
    // Deleted: both versions kept (retired), both served.
    assert_eq!(
        at(
            &svc,
            Method::DELETE,
            &format!("{ROOT}/studies/{st}/series/{se}/instances/{sop}"),
            T0 + 20
        )
        .status,
        204
    );
    let (_, listed) = list(T0 + 21);
    let states: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v["State"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(states, ["retired", "retired"]);
    assert_eq!(one(&current, "application/dicom").status, 200);
    // Past the grace period a write sweeps them: no version is kept.
    let later = T0 + 30 + crate::ingest::RETIRED_GRACE + crate::service::SWEEP_INTERVAL + 1;
    let other = fixture!("mr_small_implicit.dcm");
    assert_eq!(
        post_at(
            &svc,
            &format!("{ROOT}/studies"),
            &multipart(&[("application/dicom", &other)]),
            later
        )
        .status,
        200
    );
    assert_eq!(list(later + 1).0, 404);
    assert_eq!(one(&first, "application/dicom").status, 404);
}
