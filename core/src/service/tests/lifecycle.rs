//! The lifecycle: a deleted study, series or instance is gone from retrieval, metadata, search
//! and (after the grace period) the store when the response says so, and the change feed
//! lists every change once, in order, without gaps. Expected UIDs, modalities and counts come
//! from the fixtures as dicom-rs reads them.

use super::stow::{as_instance, keys, multipart, post_at};
use super::*;
use serde_json::Value as Json;

const T0: u64 = 1_700_000_000;

pub(super) fn writer() -> Config {
    Config {
        allow_anonymous_writes: true,
        ..Config::default()
    }
}

/// One request at `now`, its body collected.
pub(super) fn at(svc: &Service, method: Method, path: &str, now: u64) -> Got {
    let h = {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("test.local:8080"));
        h
    };
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (path.to_owned(), None),
    };
    let req = Request {
        client: None,
        who: Default::default(),
        method: &method,
        query: q.as_deref(),
        now,
        ..get_request(&p, &h)
    };
    block_on(async {
        let r = svc.handle(&req).await;
        let body = match r.body {
            Body::Empty => Vec::new(),
            Body::Full(b) => b.to_vec(),
            Body::Stream(s) => {
                let chunks: Vec<Result<Bytes>> = s.collect().await;
                chunks
                    .into_iter()
                    .flat_map(|c| c.expect("chunk").to_vec())
                    .collect()
            }
        };
        Got {
            status: r.status.as_u16(),
            headers: r.headers,
            body,
        }
    })
}

pub(super) fn json_of(got: &Got) -> Json {
    if got.body.is_empty() {
        return Json::Array(Vec::new());
    }
    serde_json::from_slice(&got.body).expect("json")
}

/// The study's search result (QIDO-RS), or `None` when the search finds none.
pub(super) fn study_row(svc: &Service, study: &str, now: u64) -> Option<Json> {
    let got = at(
        svc,
        Method::GET,
        &format!("{ROOT}/studies?StudyInstanceUID={study}&includefield=00080061"),
        now,
    );
    assert!(matches!(got.status, 200 | 204), "{}", got.status);
    json_of(&got).as_array().and_then(|a| a.first().cloned())
}

fn int_of(row: &Json, tag: &str) -> i64 {
    row[tag]["Value"][0].as_i64().unwrap_or(-1)
}

fn strings_of(row: &Json, tag: &str) -> Vec<String> {
    let mut v: Vec<String> = row[tag]["Value"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn modality(b: &[u8]) -> String {
    let o = dicom_object::OpenFileOptions::new()
        .from_reader(b)
        .expect("parse");
    o.element(tags::MODALITY)
        .expect("modality")
        .to_str()
        .expect("str")
        .trim()
        .to_string()
}

/// The whole change feed, read a page of `page` at a time.
pub(super) fn feed(svc: &Service, page: usize, now: u64) -> Vec<Json> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let got = at(
            svc,
            Method::GET,
            &format!("{ROOT}/changefeed?after={after}&limit={page}"),
            now,
        );
        assert_eq!(got.status, 200);
        assert_eq!(got.header("content-type"), "application/json");
        let rows = json_of(&got).as_array().cloned().expect("an array");
        assert!(rows.len() <= page);
        let Some(last) = rows.last() else { break };
        after = last["Sequence"].as_i64().expect("sequence");
        all.extend(rows);
    }
    all
}

/// A study of two series (a CT series of two instances, an MR series) and another study:
/// deleting an instance, then a series, then the study takes each out of retrieval, metadata
/// and search (counts and Modalities in Study recounted) at once; the objects stay while a
/// reader may still stream them, and go once the grace period has passed; the change feed
/// says each change once, in order, numbered without gaps.
#[test]
fn deleted_instances_series_and_studies_are_gone_everywhere() {
    let ct = fixture!("ct_small_ele.dcm");
    let (st, ct_series, ct_sop) = uids(&ct);
    let ct2_sop = "1.2.826.0.1.3680043.8.498.24.1";
    let ct2 = as_instance(&ct, ct2_sop);
    let mr = in_study(&fixture!("mr_small_implicit.dcm"), &st);
    let (_, mr_series, mr_sop) = uids(&mr);
    let other = fixture!("sc_rgb_odd_3x3.dcm");
    let (other_st, ..) = uids(&other);
    assert_ne!(other_st, st);
    assert_ne!(mr_series, ct_series);
    let (ct_mod, mr_mod) = (modality(&ct), modality(&mr));
    assert_ne!(ct_mod, mr_mod);

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
    let row = study_row(&svc, &st, T0).expect("stored");
    assert_eq!(int_of(&row, "00201208"), 3);
    assert_eq!(int_of(&row, "00201206"), 2);
    let mut both = vec![ct_mod.clone(), mr_mod.clone()];
    both.sort();
    assert_eq!(strings_of(&row, "00080061"), both);
    // The study's metadata is assembled (and kept) before the deletes.
    let study_meta = format!("{ROOT}/studies/{st}/metadata");
    let got = at(&svc, Method::GET, &study_meta, T0);
    assert_eq!(json_of(&got).as_array().map(Vec::len), Some(3));
    let stored_keys = keys(&store);

    // 1. An instance.
    let t1 = T0 + 10;
    let ct2_path = format!("{ROOT}/studies/{st}/series/{ct_series}/instances/{ct2_sop}");
    let got = at(&svc, Method::DELETE, &ct2_path, t1);
    assert_eq!(got.status, 204, "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(at(&svc, Method::GET, &ct2_path, t1).status, 404);
    assert_eq!(
        at(&svc, Method::GET, &format!("{ct2_path}/metadata"), t1).status,
        404
    );
    let got = at(&svc, Method::GET, &study_meta, t1);
    let listed: Vec<String> = json_of(&got)
        .as_array()
        .expect("array")
        .iter()
        .map(|i| i["00080018"]["Value"][0].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(!listed.contains(&ct2_sop.to_owned()));
    let row = study_row(&svc, &st, t1).expect("still there");
    assert_eq!(int_of(&row, "00201208"), 2);
    assert_eq!(int_of(&row, "00201206"), 2);
    let got = at(
        &svc,
        Method::GET,
        &format!("{ROOT}/studies/{st}/series?SeriesInstanceUID={ct_series}"),
        t1,
    );
    assert_eq!(int_of(&json_of(&got)[0], "00201209"), 1);
    // Again: nothing is there to delete.
    assert_eq!(at(&svc, Method::DELETE, &ct2_path, t1).status, 404);

    // 2. A series: the study keeps the other, and its modality only.
    let t2 = T0 + 20;
    let mr_path = format!("{ROOT}/studies/{st}/series/{mr_series}");
    assert_eq!(at(&svc, Method::DELETE, &mr_path, t2).status, 204);
    assert_eq!(at(&svc, Method::GET, &mr_path, t2).status, 404);
    assert_eq!(
        at(&svc, Method::GET, &format!("{mr_path}/metadata"), t2).status,
        404
    );
    let row = study_row(&svc, &st, t2).expect("still there");
    assert_eq!(int_of(&row, "00201208"), 1);
    assert_eq!(int_of(&row, "00201206"), 1);
    assert_eq!(strings_of(&row, "00080061"), vec![ct_mod.clone()]);
    let got = at(
        &svc,
        Method::GET,
        &format!("{ROOT}/instances?SOPInstanceUID={mr_sop}"),
        t2,
    );
    assert_eq!(json_of(&got).as_array().map(Vec::len), Some(0));

    // 3. The study: gone from every search; the other study is untouched.
    let t3 = T0 + 30;
    let study_path = format!("{ROOT}/studies/{st}");
    assert_eq!(at(&svc, Method::DELETE, &study_path, t3).status, 204);
    assert_eq!(at(&svc, Method::GET, &study_path, t3).status, 404);
    assert_eq!(at(&svc, Method::GET, &study_meta, t3).status, 404);
    assert!(study_row(&svc, &st, t3).is_none());
    let got = at(&svc, Method::GET, &format!("{ROOT}/studies"), t3);
    let all = json_of(&got);
    let studies: Vec<&str> = all
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["0020000D"]["Value"][0].as_str())
        .collect();
    assert_eq!(studies, vec![other_st.as_str()]);
    assert_eq!(at(&svc, Method::DELETE, &study_path, t3).status, 404);

    // The objects stay through the grace period (a reader streaming them finishes)...
    assert_eq!(keys(&store), stored_keys);
    // ... and go with the first write after it; the other study's stay.
    let later = T0 + 30 + crate::ingest::RETIRED_GRACE + crate::service::SWEEP_INTERVAL + 1;
    let another = as_instance(&other, "1.2.826.0.1.3680043.8.498.24.2");
    assert_eq!(
        post_at(
            &svc,
            &format!("{ROOT}/studies"),
            &multipart(&[("application/dicom", &another)]),
            later
        )
        .status,
        200
    );
    let left = keys(&store);
    assert!(left.iter().all(|k| !k.contains(&st)), "{left:?}");
    assert!(
        left.iter().filter(|k| k.contains(&other_st)).count() == 4,
        "{left:?}"
    );
    // The other study is whole.
    let got = at(
        &svc,
        Method::GET,
        &format!("{ROOT}/studies/{other_st}"),
        later,
    );
    assert_eq!(got.status, 200);
    assert_eq!(got.parts().len(), 2);

    // The feed: four stores, three deletes (one a series of one, one the study's last
    // instance), one store; numbered 1.. without gaps, whatever the page.
    for page in [1, 3, 100] {
        let rows = feed(&svc, page, later);
        let seqs: Vec<i64> = rows
            .iter()
            .map(|r| r["Sequence"].as_i64().unwrap_or(0))
            .collect();
        assert_eq!(seqs, (1..=8).collect::<Vec<i64>>());
        let said: Vec<(String, String)> = rows
            .iter()
            .map(|r| {
                (
                    r["Action"].as_str().unwrap_or("").to_owned(),
                    r["SOPInstanceUID"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let deletes: Vec<(String, String)> = [ct2_sop, &mr_sop, &ct_sop]
            .iter()
            .map(|s| ("delete".to_owned(), (*s).to_owned()))
            .collect();
        assert_eq!(&said[4..7], &deletes[..], "{said:?}");
        assert!(said[..4].iter().all(|(a, _)| a == "create"), "{said:?}");
        assert_eq!(said[7].0, "create");
        assert_eq!(rows[4]["StudyInstanceUID"], Json::from(st.as_str()));
        assert_eq!(rows[5]["SeriesInstanceUID"], Json::from(mr_series.as_str()));
        assert_eq!(rows[4]["Timestamp"], Json::from("2023-11-14T22:13:30Z"));
    }
    let got = at(
        &svc,
        Method::GET,
        &format!("{ROOT}/changefeed/latest"),
        later,
    );
    assert_eq!(json_of(&got)["Sequence"], Json::from(8));
    assert_eq!(json_of(&got)["Action"], Json::from("create"));
}

/// A replacement is in the feed as one; the feed of an archive that changed nothing is empty;
/// a malformed page is a 400 with the reason.
#[test]
fn the_feed_says_replacements_and_refuses_malformed_pages() {
    let store = Arc::new(MemoryStore::new());
    let svc = test_service(store, writer());
    let got = at(&svc, Method::GET, &format!("{ROOT}/changefeed"), T0);
    assert_eq!((got.status, got.body.as_slice()), (200, &b"[]"[..]));
    let got = at(&svc, Method::GET, &format!("{ROOT}/changefeed/latest"), T0);
    assert_eq!(json_of(&got), serde_json::json!({ "Sequence": 0 }));
    let ct = fixture!("ct_small_ele.dcm");
    let mut changed = ct.to_vec();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    let path = format!("{ROOT}/studies");
    for (f, t) in [
        (&ct[..], T0),
        (&changed[..], T0 + 1),
        (&changed[..], T0 + 2),
    ] {
        assert_eq!(
            post_at(&svc, &path, &multipart(&[("application/dicom", f)]), t).status,
            200
        );
    }
    // The same file again changed nothing: no row.
    let rows = feed(&svc, 10, T0 + 3);
    let actions: Vec<&str> = rows.iter().filter_map(|r| r["Action"].as_str()).collect();
    assert_eq!(actions, vec!["create", "replace"]);
    for bad in ["after=-1", "after=x", "limit=0", "limit=1001", "limit=ten"] {
        let got = at(&svc, Method::GET, &format!("{ROOT}/changefeed?{bad}"), T0);
        assert_eq!(got.status, 400, "{bad}");
        assert!(!got.body.is_empty());
    }
}

/// Deleting is a write: refused without the permission to write (403), on a read-only server
/// (405), and on a resource that is not a study, series or instance (405); nothing changes.
#[test]
fn deleting_takes_the_permission_to_write() {
    let ct = fixture!("ct_small_ele.dcm");
    let (st, se, sop) = uids(&ct);
    let store = store_with(std::slice::from_ref(&ct));
    let path = format!("{ROOT}/studies/{st}");
    let svc = test_service(store.clone(), Config::default());
    let got = at(&svc, Method::DELETE, &path, T0);
    assert_eq!(got.status, 403);
    assert!(String::from_utf8_lossy(&got.body).contains("anonymous writes"));
    let svc = test_service(
        store.clone(),
        Config {
            read_only: true,
            ..writer()
        },
    );
    assert_eq!(at(&svc, Method::DELETE, &path, T0).status, 405);
    let svc = test_service(store.clone(), writer());
    for not_deletable in [
        format!("{path}/metadata"),
        format!("{path}/series/{se}/instances/{sop}/frames/1"),
        format!("{ROOT}/studies"),
        format!("{ROOT}/changefeed"),
    ] {
        assert_eq!(
            at(&svc, Method::DELETE, &not_deletable, T0).status,
            405,
            "{not_deletable}"
        );
    }
    assert_eq!(at(&svc, Method::GET, &path, T0).status, 200);
}

/// A Key Object Selection Document titled "Rejected for Quality Reasons" (DCM 113001), made
/// by dicom-rs, in study `st`, referencing `refs` (series, SOP Instance UID) of that study.
fn rejection_note(st: &str, sop: &str, refs: &[(&str, &str)]) -> Bytes {
    use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
    let ui =
        |t: (u16, u16), v: &str| DataElement::new(Tag(t.0, t.1), VR::UI, PrimitiveValue::from(v));
    let seq = |t: (u16, u16), items: Vec<InMemDicomObject>| {
        DataElement::new(
            Tag(t.0, t.1),
            VR::SQ,
            dicom_core::value::DataSetSequence::from(items),
        )
    };
    let kos = "1.2.840.10008.5.1.4.1.1.88.59";
    let title = InMemDicomObject::from_element_iter([
        DataElement::new(Tag(0x0008, 0x0100), VR::SH, PrimitiveValue::from("113001")),
        DataElement::new(Tag(0x0008, 0x0102), VR::SH, PrimitiveValue::from("DCM")),
        DataElement::new(
            Tag(0x0008, 0x0104),
            VR::LO,
            PrimitiveValue::from("Rejected for Quality Reasons"),
        ),
    ]);
    let series: Vec<InMemDicomObject> = refs
        .iter()
        .map(|(se, i)| {
            InMemDicomObject::from_element_iter([
                ui((0x0020, 0x000E), se),
                seq(
                    (0x0008, 0x1199),
                    vec![InMemDicomObject::from_element_iter([
                        ui((0x0008, 0x1150), "1.2.840.10008.5.1.4.1.1.2"),
                        ui((0x0008, 0x1155), i),
                    ])],
                ),
            ])
        })
        .collect();
    let evidence = InMemDicomObject::from_element_iter([
        ui((0x0020, 0x000D), st),
        seq((0x0008, 0x1115), series),
    ]);
    let obj = InMemDicomObject::from_element_iter([
        ui((0x0008, 0x0016), kos),
        ui((0x0008, 0x0018), sop),
        DataElement::new(Tag(0x0008, 0x0060), VR::CS, PrimitiveValue::from("KO")),
        ui((0x0020, 0x000D), st),
        ui((0x0020, 0x000E), &format!("{sop}.1")),
        seq((0x0040, 0xA043), vec![title]),
        seq((0x0040, 0xA375), vec![evidence]),
    ]);
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .media_storage_sop_class_uid(kos)
                .media_storage_sop_instance_uid(sop)
                .transfer_syntax("1.2.840.10008.1.2.1"),
        )
        .expect("meta");
    let mut out = Vec::new();
    file.write_all(&mut out).expect("write");
    Bytes::from(out)
}

/// A rejection note hides what it references from search, metadata and retrieval in the
/// transaction that stores it (the note itself retrievable); deleting the note brings them
/// back; a rejected instance stored again is current again.
#[test]
fn a_rejection_note_hides_what_it_references_until_it_is_deleted() {
    let ct = fixture!("ct_small_ele.dcm");
    let (st, se, sop) = uids(&ct);
    let others: Vec<String> = (1..=2)
        .map(|k| format!("1.2.826.0.1.3680043.8.498.25.{k}"))
        .collect();
    let files: Vec<Bytes> = std::iter::once(ct.clone())
        .chain(others.iter().map(|s| as_instance(&ct, s)))
        .collect();
    let store = Arc::new(MemoryStore::new());
    let svc = test_service(store.clone(), writer());
    let parts: Vec<(&str, &[u8])> = files
        .iter()
        .map(|f| ("application/dicom", &f[..]))
        .collect();
    assert_eq!(
        post_at(&svc, &format!("{ROOT}/studies"), &multipart(&parts), T0).status,
        200
    );
    let note_sop = "1.2.826.0.1.3680043.8.498.25.9";
    let note = rejection_note(&st, note_sop, &[(&se, &sop), (&se, &others[0])]);
    let t1 = T0 + 10;
    let got = post_at(
        &svc,
        &format!("{ROOT}/studies"),
        &multipart(&[("application/dicom", &note)]),
        t1,
    );
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let path = |i: &str| format!("{ROOT}/studies/{st}/series/{se}/instances/{i}");
    for gone in [&sop, &others[0]] {
        assert_eq!(at(&svc, Method::GET, &path(gone), t1).status, 404, "{gone}");
    }
    assert_eq!(at(&svc, Method::GET, &path(&others[1]), t1).status, 200);
    let row = study_row(&svc, &st, t1).expect("the study stays");
    // The one left, and the note.
    assert_eq!(int_of(&row, "00201208"), 2);
    let listed = json_of(&at(
        &svc,
        Method::GET,
        &format!("{ROOT}/studies/{st}/series/{se}/metadata"),
        t1,
    ));
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let note_path = format!("{ROOT}/studies/{st}/series/{note_sop}.1/instances/{note_sop}");
    assert_eq!(
        at(&svc, Method::GET, &note_path, t1).status,
        200,
        "the note stays"
    );
    let actions: Vec<(String, String)> = feed(&svc, 100, t1)
        .iter()
        .map(|r| {
            (
                r["Action"].as_str().expect("action").to_owned(),
                r["SOPInstanceUID"].as_str().expect("uid").to_owned(),
            )
        })
        .collect();
    let mut rejected: Vec<&str> = actions
        .iter()
        .filter(|a| a.0 == "reject")
        .map(|a| a.1.as_str())
        .collect();
    rejected.sort();
    let mut want = vec![sop.as_str(), others[0].as_str()];
    want.sort();
    assert_eq!(rejected, want);
    // Objects of rejected versions are kept, even long after the grace period.
    let t2 = t1 + 100_000;
    assert_eq!(at(&svc, Method::GET, &path(&others[1]), t2).status, 200);
    // Deleting the note brings them back.
    assert_eq!(at(&svc, Method::DELETE, &note_path, t2).status, 204);
    for back in [&sop, &others[0], &others[1]] {
        assert_eq!(at(&svc, Method::GET, &path(back), t2).status, 200, "{back}");
    }
    assert_eq!(
        int_of(&study_row(&svc, &st, t2).expect("study"), "00201208"),
        3
    );
    // Rejected again, then stored again: current again, the others still rejected.
    let t3 = t2 + 10;
    let again = rejection_note(
        &st,
        "1.2.826.0.1.3680043.8.498.25.8",
        &[(&se, &sop), (&se, &others[0])],
    );
    assert_eq!(
        post_at(
            &svc,
            &format!("{ROOT}/studies"),
            &multipart(&[("application/dicom", &again)]),
            t3
        )
        .status,
        200
    );
    assert_eq!(at(&svc, Method::GET, &path(&sop), t3).status, 404);
    assert_eq!(
        post_at(
            &svc,
            &format!("{ROOT}/studies"),
            &multipart(&[("application/dicom", &ct)]),
            t3
        )
        .status,
        200
    );
    assert_eq!(at(&svc, Method::GET, &path(&sop), t3).status, 200);
    assert_eq!(at(&svc, Method::GET, &path(&others[0]), t3).status, 404);
}
