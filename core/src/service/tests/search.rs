//! QIDO-RS over a real SQLite index (in memory): every expected answer is computed here from
//! the fixtures as dicom-rs reads them, by the test's own filtering.

use super::*;
use crate::search::sqlite::SqliteIndex;
use crate::search::Index;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

/// What the test knows of one fixture, read by dicom-rs.
#[derive(Debug, Clone)]
struct Rec {
    study: String,
    series: String,
    sop: String,
    name: String,
    patient_id: String,
    date: String,
    modality: String,
}

fn rec(b: &[u8]) -> Rec {
    let o = dicom_object::OpenFileOptions::new()
        .from_reader(b)
        .expect("parse fixture");
    let s = |t| {
        o.element(t)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default()
    };
    Rec {
        study: s(tags::STUDY_INSTANCE_UID),
        series: s(tags::SERIES_INSTANCE_UID),
        sop: s(tags::SOP_INSTANCE_UID),
        name: s(tags::PATIENT_NAME),
        patient_id: s(tags::PATIENT_ID),
        date: s(tags::STUDY_DATE).replace('.', ""),
        modality: s(tags::MODALITY),
    }
}

fn files() -> Vec<Bytes> {
    vec![
        fixture!("study77654033_CR1_6154.dcm"),
        fixture!("study77654033_CR2_6247.dcm"),
        fixture!("study77654033_CR3_6278.dcm"),
        fixture!("study77654033_CT2_17106.dcm"),
        fixture!("study77654033_CT2_17136.dcm"),
        fixture!("ct_small_ele.dcm"),
        fixture!("mr_small_implicit.dcm"),
        fixture!("sc_rgb_ele.dcm"),
        fixture!("sc_rgb_2frame_planar1.dcm"),
        fixture!("us_rgb_planar1_ele.dcm"),
        fixture!("charset_greek_chrGreek.dcm"),
        fixture!("charset_japanese_chrH31.dcm"),
        fixture!("seg_liver_1bit_3frame.dcm"),
        fixture!("rtdose_1frame_32bit.dcm"),
    ]
}

struct World {
    store: Arc<MemoryStore>,
    index: Arc<SqliteIndex>,
    recs: Vec<Rec>,
}

fn world() -> World {
    let files = files();
    let index = Arc::new(SqliteIndex::memory().expect("sqlite"));
    let store = Arc::new(MemoryStore::new());
    block_on(async {
        crate::search::open(&*index).await.expect("schema");
        let layout =
            import::ensure_layout(&*store, Some((&*index, "DCM4CHEE")), PUBLIC, "DCM4CHEE")
                .await
                .expect("layout");
        let batch =
            import::Batch::new(layout, NOW, [3; 16]).with_index(index.clone(), "DCM4CHEE", None);
        for f in &files {
            batch.add(&*store, f.clone()).await.expect("import");
        }
        batch.finish(&*store).await.expect("finish");
    });
    World {
        store,
        index,
        recs: files.iter().map(|f| rec(f)).collect(),
    }
}

impl World {
    fn service(&self, max: usize) -> Service {
        test_service(
            self.store.clone(),
            Config {
                index: Some(self.index.clone()),
                max_results: max,
                ..Config::default()
            },
        )
    }
    fn ask(&self, path_and_query: &str) -> Got {
        ask(
            &self.service(1000),
            Method::GET,
            &format!("{ROOT}{path_and_query}"),
            &[],
        )
    }
    fn json(&self, path_and_query: &str) -> Vec<Json> {
        let g = self.ask(path_and_query);
        assert_eq!(
            g.status,
            200,
            "{path_and_query}: {}",
            String::from_utf8_lossy(&g.body)
        );
        assert_eq!(g.header("content-type"), "application/dicom+json");
        serde_json::from_slice(&g.body).expect("json array")
    }
}

fn first(v: &Json, tag: &str) -> String {
    match v
        .get(tag)
        .and_then(|a| a.get("Value"))
        .and_then(|a| a.get(0))
    {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Number(n)) => n.to_string(),
        Some(o @ Json::Object(_)) => o
            .get("Alphabetic")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_owned(),
        _ => String::new(),
    }
}

fn set(results: &[Json], tag: &str) -> BTreeSet<String> {
    results.iter().map(|r| first(r, tag)).collect()
}

#[test]
fn a_study_found_by_its_uid_has_the_files_attributes_and_counts() {
    let w = world();
    let r = &w.recs[0];
    let got = w.json(&format!("/studies?StudyInstanceUID={}", r.study));
    assert_eq!(got.len(), 1);
    let s = &got[0];
    assert_eq!(first(s, "0020000D"), r.study);
    assert_eq!(first(s, "00100010"), r.name);
    assert_eq!(first(s, "00100020"), r.patient_id);
    let in_study: Vec<&Rec> = w.recs.iter().filter(|x| x.study == r.study).collect();
    let series: BTreeSet<&str> = in_study.iter().map(|x| x.series.as_str()).collect();
    let modalities: BTreeSet<String> = in_study.iter().map(|x| x.modality.clone()).collect();
    assert_eq!(first(s, "00201208"), in_study.len().to_string());
    assert_eq!(first(s, "00201206"), series.len().to_string());
    let got_modalities: BTreeSet<String> = s["00080061"]["Value"]
        .as_array()
        .expect("modalities")
        .iter()
        .map(|m| m.as_str().expect("cs").to_owned())
        .collect();
    assert_eq!(got_modalities, modalities);
    assert_eq!(first(s, "00080056"), "ONLINE");
    // The Retrieve URL retrieves the study.
    let url = first(s, "00081190");
    let path = url
        .strip_prefix("http://test.local:8080")
        .expect("own root");
    let g = ask(&w.service(1000), Method::GET, path, &[]);
    assert_eq!(g.status, 200);
    assert_eq!(g.parts().len(), in_study.len());
}

#[test]
fn the_study_list_matches_like_the_test_filters() {
    let w = world();
    let studies = |f: &dyn Fn(&Rec) -> bool| -> BTreeSet<String> {
        w.recs
            .iter()
            .filter(|r| f(r))
            .map(|r| r.study.clone())
            .collect()
    };
    // All studies, once each.
    let all = w.json("/studies");
    assert_eq!(set(&all, "0020000D"), studies(&|_| true));
    assert_eq!(all.len(), studies(&|_| true).len());
    // Person names: wildcards, without regard to case (as OHIF sends what the user typed).
    assert_eq!(
        set(&w.json("/studies?PatientName=*doe*"), "0020000D"),
        studies(&|r| r.name.to_lowercase().contains("doe"))
    );
    assert_eq!(
        set(&w.json("/studies?PatientName=DOE%5EARCH*"), "0020000D"),
        studies(&|r| r.name.to_lowercase().starts_with("doe^arch"))
    );
    // Accents and other scripts: the Greek name found by its unaccented lower case.
    let greek = w
        .recs
        .iter()
        .find(|r| r.patient_id == "SCSGREEK")
        .expect("greek");
    let folded: String = crate::search::attrs::fold(&greek.name);
    let q = folded.chars().take(4).collect::<String>();
    let enc: String = q.bytes().map(|b| format!("%{b:02X}")).collect();
    assert_eq!(
        set(&w.json(&format!("/studies?PatientName={enc}*")), "0020000D"),
        BTreeSet::from([greek.study.clone()])
    );
    // Patient ID exactly; a list of UIDs; dates and ranges.
    assert_eq!(
        set(&w.json("/studies?PatientID=77654033"), "0020000D"),
        studies(&|r| r.patient_id == "77654033")
    );
    let list = format!("{},{}", w.recs[5].study, w.recs[6].study);
    assert_eq!(
        set(
            &w.json(&format!("/studies?StudyInstanceUID={list}")),
            "0020000D"
        ),
        BTreeSet::from([w.recs[5].study.clone(), w.recs[6].study.clone()])
    );
    assert_eq!(
        set(&w.json("/studies?StudyDate=19940101-20011231"), "0020000D"),
        studies(&|r| !r.date.is_empty()
            && r.date.as_str() >= "19940101"
            && r.date.as_str() <= "20011231")
    );
    assert_eq!(
        set(&w.json("/studies?StudyDate=-19991231"), "0020000D"),
        studies(&|r| !r.date.is_empty() && r.date.as_str() <= "19991231")
    );
    assert_eq!(
        set(&w.json("/studies?StudyDate=20040119"), "0020000D"),
        studies(&|r| r.date == "20040119")
    );
    // Modalities in study: any series' modality.
    assert_eq!(
        set(&w.json("/studies?ModalitiesInStudy=CT"), "0020000D"),
        studies(&|r| w
            .recs
            .iter()
            .any(|x| x.study == r.study && x.modality == "CT"))
    );
    assert_eq!(
        set(
            &w.json("/studies?ModalitiesInStudy=SEG%5CRTDOSE"),
            "0020000D"
        ),
        studies(&|r| r.modality == "SEG" || r.modality == "RTDOSE")
    );
    // Case matters outside person names.
    assert!(w.json("/studies?ModalitiesInStudy=ct").is_empty());
}

#[test]
fn series_and_instances_of_a_study() {
    let w = world();
    let r = &w.recs[0];
    let series = w.json(&format!(
        "/studies/{}/series?includefield=0008103E,00080021",
        r.study
    ));
    let expected: BTreeSet<String> = w
        .recs
        .iter()
        .filter(|x| x.study == r.study)
        .map(|x| x.series.clone())
        .collect();
    assert_eq!(set(&series, "0020000E"), expected);
    for s in &series {
        let uid = first(s, "0020000E");
        let n = w.recs.iter().filter(|x| x.series == uid).count();
        assert_eq!(first(s, "00201209"), n.to_string());
        assert_eq!(first(s, "0020000D"), r.study);
    }
    let modality = w.json(&format!("/studies/{}/series?Modality=CT", r.study));
    assert_eq!(
        set(&modality, "0020000E"),
        w.recs
            .iter()
            .filter(|x| x.study == r.study && x.modality == "CT")
            .map(|x| x.series.clone())
            .collect()
    );
    let (st, se) = (&w.recs[3].study, &w.recs[3].series);
    let inst = w.json(&format!("/studies/{st}/series/{se}/instances"));
    assert_eq!(
        set(&inst, "00080018"),
        w.recs
            .iter()
            .filter(|x| &x.series == se)
            .map(|x| x.sop.clone())
            .collect()
    );
    // The instance level's own attributes, and its Retrieve URL retrieves it.
    let url = first(&inst[0], "00081190");
    let path = url.strip_prefix("http://test.local:8080").expect("root");
    assert_eq!(ask(&w.service(10), Method::GET, path, &[]).status, 200);
    assert!(!first(&inst[0], "00080016").is_empty());
    // All series, all instances: with the study's attributes.
    let all_series = w.json("/series?PatientID=77654033");
    assert_eq!(
        set(&all_series, "0020000E"),
        w.recs
            .iter()
            .filter(|x| x.patient_id == "77654033")
            .map(|x| x.series.clone())
            .collect()
    );
    assert!(all_series
        .iter()
        .all(|s| first(s, "00100020") == "77654033"));
    let all_inst = w.json(&format!("/instances?SOPInstanceUID={}", w.recs[7].sop));
    assert_eq!(all_inst.len(), 1);
    assert_eq!(first(&all_inst[0], "00100010"), w.recs[7].name);
    let study_inst = w.json(&format!("/studies/{}/instances", r.study));
    assert_eq!(
        study_inst.len(),
        w.recs.iter().filter(|x| x.study == r.study).count()
    );
}

#[test]
fn includefield_limit_offset_and_the_servers_maximum() {
    let w = world();
    let all = w.json("/studies");
    assert!(all.len() >= 4);
    // A stable order: pages put together are the whole list.
    let mut paged = Vec::new();
    for offset in (0..all.len()).step_by(2) {
        paged.extend(w.json(&format!("/studies?limit=2&offset={offset}")));
    }
    assert_eq!(paged, all);
    // Not asked for: not there; asked for, by keyword or tag: there.
    let r = &w.recs[5];
    let plain = &w.json(&format!("/studies?StudyInstanceUID={}", r.study))[0];
    assert!(plain.get("00081032").is_none() || plain.get("00100030").is_some());
    let with = &w.json(&format!(
        "/studies?StudyInstanceUID={}&includefield=PatientBirthDate,00101010",
        r.study
    ))[0];
    assert!(with.get("00100030").is_some());
    let everything = &w.json(&format!(
        "/studies?StudyInstanceUID={}&includefield=all",
        r.study
    ))[0];
    assert!(everything.as_object().expect("obj").len() >= plain.as_object().expect("obj").len());
    // The server's maximum cuts with a Warning, a client's limit does not warn.
    let g = ask(&w.service(2), Method::GET, &format!("{ROOT}/studies"), &[]);
    assert_eq!(g.status, 200);
    let cut: Vec<Json> = serde_json::from_slice(&g.body).expect("json");
    assert_eq!(cut.len(), 2);
    assert!(
        g.header("warning").contains("exceeded the maximum"),
        "{:?}",
        g.headers
    );
    let g = ask(
        &w.service(2),
        Method::GET,
        &format!("{ROOT}/studies?limit=1"),
        &[],
    );
    assert_eq!(g.header("warning"), "");
}

#[test]
fn malformed_queries_are_400_and_unsupported_keys_a_warning() {
    let w = world();
    for q in [
        "StudyDate=2001-13-01",
        "StudyDate=20011301",
        "StudyDate=-",
        "StudyInstanceUID=1.2.x",
        "StudyInstanceUID=*",
        "NotAnAttribute=1",
        "limit=ten",
        "limit=0",
        "offset=-1",
        "fuzzymatching=maybe",
        "includefield=Nonsense",
        "StudyTime=2500",
        "PatientID=a&PatientID=b",
    ] {
        let g = w.ask(&format!("/studies?{q}"));
        if q == "StudyInstanceUID=*" {
            // `*` alone is the universal match.
            assert_eq!(g.status, 200, "{q}");
            continue;
        }
        assert_eq!(g.status, 400, "{q}: {}", String::from_utf8_lossy(&g.body));
        assert!(!g.body.is_empty());
    }
    let g = w.ask("/studies?ScanningSequence=SE&PatientID=77654033");
    assert_eq!(g.status, 200);
    assert!(
        g.header("warning").contains("ScanningSequence"),
        "{:?}",
        g.headers
    );
    let got: Vec<Json> = serde_json::from_slice(&g.body).expect("json");
    assert_eq!(
        set(&got, "00100020"),
        BTreeSet::from(["77654033".to_owned()])
    );
    // A key of a lower level is not matched at the study level: ignored, said.
    let g = w.ask("/studies?Modality=CT");
    assert_eq!(g.status, 200);
    assert!(g.header("warning").contains("Modality"));
    // A search is JSON or XML, never a DICOM file.
    assert_eq!(
        ask(
            &w.service(10),
            Method::GET,
            &format!("{ROOT}/studies"),
            &[("accept", "application/dicom")]
        )
        .status,
        406
    );
}

#[test]
fn fuzzy_matching_is_word_prefix_without_case_or_accents() {
    let w = world();
    let by = |q: &str| set(&w.json(&format!("/studies?{q}")), "00100010");
    // "arch" starts the word Archibald: found fuzzily, not literally.
    assert_eq!(
        by("PatientName=arch&fuzzymatching=true"),
        BTreeSet::from(["Doe^Archibald".to_owned()])
    );
    assert!(by("PatientName=arch").is_empty());
    // "chibald" is inside a word, not its start: no fuzzy match.
    assert!(by("PatientName=chibald&fuzzymatching=true").is_empty());
}

#[test]
fn search_results_as_xml() {
    let w = world();
    let g = ask(
        &w.service(10),
        Method::GET,
        &format!("{ROOT}/studies?PatientID=77654033"),
        &[(
            "accept",
            "multipart/related; type=\"application/dicom+xml\"",
        )],
    );
    assert_eq!(g.status, 200);
    let parts = g.parts();
    let studies: BTreeSet<&str> = w
        .recs
        .iter()
        .filter(|r| r.patient_id == "77654033")
        .map(|r| r.study.as_str())
        .collect();
    assert_eq!(parts.len(), studies.len());
    let xml = String::from_utf8_lossy(parts[0].body).to_string();
    assert!(xml.contains("<NativeDicomModel"), "{xml}");
    assert!(xml.contains("77654033"));
}

/// An instance is searchable, counted and listed as soon as it is stored (its commit is the
/// moment it exists; nothing waits for the end of the run), and a replacement (same SOP
/// Instance UID, another Instance Number) shows in the next search with the counts unchanged.
#[test]
fn a_stored_instance_is_searchable_at_once_and_a_replacement_shows() {
    let w = world();
    let extra = fixture!("mr_small_rle.dcm");
    let r = rec(&extra);
    let batch = |w: &World| {
        let layout = block_on(import::ensure_layout(
            &*w.store,
            Some((&*w.index, "DCM4CHEE")),
            PUBLIC,
            "DCM4CHEE",
        ))
        .expect("layout");
        import::Batch::new(layout, NOW + 5, [4; 16]).with_index(w.index.clone(), "DCM4CHEE", None)
    };
    let b = batch(&w);
    block_on(b.add(&*w.store, extra.clone())).expect("import");
    // The run has not finished: the instance is there.
    let found = w.json(&format!(
        "/studies/{}/series/{}/instances",
        r.study, r.series
    ));
    assert!(set(&found, "00080018").contains(&r.sop));
    let study = w.json(&format!("/studies?StudyInstanceUID={}", r.study));
    let count = first(&study[0], "00201208");
    let mut o = dicom_object::OpenFileOptions::new()
        .from_reader(&extra[..])
        .expect("parse");
    o.put(dicom_core::DataElement::new(
        tags::INSTANCE_NUMBER,
        dicom_core::VR::IS,
        dicom_core::PrimitiveValue::from("987"),
    ));
    let mut out = Vec::new();
    o.write_all(&mut out).expect("write");
    let b = batch(&w);
    let done = block_on(b.add(&*w.store, Bytes::from(out))).expect("import");
    assert_eq!(done.status, import::Status::Replaced);
    let found = w.json("/instances?InstanceNumber=987");
    assert_eq!(set(&found, "00080018"), BTreeSet::from([r.sop.clone()]));
    assert_eq!(first(&found[0], "00200013"), "987");
    let study = w.json(&format!("/studies?StudyInstanceUID={}", r.study));
    assert_eq!(
        first(&study[0], "00201208"),
        count,
        "a replacement adds no instance"
    );
    // The metadata of its series says the new number.
    let g = w.ask(&format!(
        "/studies/{}/series/{}/metadata",
        r.study, r.series
    ));
    assert!(String::from_utf8_lossy(&g.body).contains("987"));
}

/// A write interrupted between its objects and its commit leaves objects nobody lists: not
/// searched, not retrieved, not in metadata.
#[test]
fn objects_written_without_their_commit_are_not_there() {
    let w = world();
    let extra = fixture!("mr_small_rle.dcm");
    let r = rec(&extra);
    let layout = crate::layout::LayoutRecord::new(PUBLIC, "DCM4CHEE");
    let mut p = crate::layout::prepare(&extra, &layout).expect("prepare");
    p.index.gen = "0123456789abcdef".into();
    block_on(async {
        w.store
            .put(&p.index.file_key(), extra.clone())
            .await
            .expect("put");
        w.store
            .put(&p.index.key(), Bytes::from(p.index.to_json()))
            .await
            .expect("put");
    });
    let g = w.ask(&format!("/studies/{}/instances", r.study));
    assert!(g.status == 404 || !String::from_utf8_lossy(&g.body).contains(&r.sop));
    let g = w.ask(&format!(
        "/studies/{}/series/{}/instances/{}/metadata",
        r.study, r.series, r.sop
    ));
    assert_eq!(g.status, 404);
}

#[test]
fn reindex_rebuilds_an_index_from_the_store_alone() {
    let w = world();
    let fresh = SqliteIndex::memory().expect("sqlite");
    let (studies, instances) = block_on(async {
        crate::search::open(&fresh).await.expect("schema");
        crate::ingest::reindex(&*w.store, &fresh, "DCM4CHEE")
            .await
            .expect("reindex")
    });
    let expected: BTreeMap<&str, usize> = w.recs.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.study.as_str()).or_default() += 1;
        m
    });
    assert_eq!(studies, expected.len());
    assert_eq!(instances, w.recs.len());
}

/// Versions written within one second (`stored_at` alike): the store alone still tells which
/// is current, by the version each names as the one it replaced, whatever their generations
/// (random) say. Before, the greater generation won: a replaced file came back at random
/// after `wado reindex` (the worker's D1 is loaded so).
#[test]
fn reindex_keeps_the_latest_of_versions_stored_within_one_second() {
    let w = world();
    let r = w.recs[5].clone();
    let original = files()[5].clone();
    let url = format!(
        "/studies/{}/series/{}/instances/{}",
        r.study, r.series, r.sop
    );
    let stored = |world: &World| {
        let g = ask(
            &world.service(1000),
            Method::GET,
            &format!("{ROOT}{url}"),
            &[("accept", "application/dicom; transfer-syntax=*")],
        );
        assert_eq!(g.status, 200, "{}", String::from_utf8_lossy(&g.body));
        g.body
    };
    for step in 0u8..6 {
        // A new version (its last pixel byte changed) at the same second as the others.
        let mut changed = original.to_vec();
        let last = changed.len() - 1;
        changed[last] = changed[last].wrapping_add(step + 1);
        block_on(async {
            let layout =
                import::ensure_layout(&*w.store, Some((&*w.index, "DCM4CHEE")), PUBLIC, "DCM4CHEE")
                    .await
                    .expect("layout");
            import::Batch::new(layout, NOW, [10 + step; 16])
                .with_index(w.index.clone(), "DCM4CHEE", None)
                .add(&*w.store, Bytes::from(changed.clone()))
                .await
                .expect("replace");
        });
        assert_eq!(
            stored(&w),
            changed,
            "the live catalog serves the new version"
        );
        let fresh = Arc::new(SqliteIndex::memory().expect("sqlite"));
        block_on(async {
            crate::search::open(&*fresh).await.expect("schema");
            crate::ingest::reindex(&*w.store, &*fresh, "DCM4CHEE")
                .await
                .expect("reindex")
        });
        let rebuilt = World {
            store: w.store.clone(),
            index: fresh,
            recs: Vec::new(),
        };
        assert_eq!(
            stored(&rebuilt),
            changed,
            "step {step}: the catalog rebuilt from the store serves the latest version"
        );
    }
}

/// A search costs what its caps allow, never a 500: long value lists are one `IN`, past the
/// caps the answer is 400 with the reason (SQLite answered "Expression tree is too large"
/// and "LIKE or GLOB pattern too complex" with 500s before).
#[test]
fn long_value_lists_and_patterns_are_bounded_never_a_500() {
    let w = world();
    let r = &w.recs[5];
    // 999 patient IDs, the one stored last: one IN list, found.
    let mut ids: Vec<String> = (0..998).map(|i| format!("NOBODY{i}")).collect();
    ids.push(r.patient_id.clone());
    let got = w.json(&format!("/studies?PatientID={}", ids.join("%5C")));
    assert_eq!(set(&got, "0020000D"), BTreeSet::from([r.study.clone()]));
    // As many UIDs, comma-separated, the same.
    let mut uids: Vec<String> = (0..998).map(|i| format!("1.2.3.{i}")).collect();
    uids.push(r.study.clone());
    let got = w.json(&format!("/studies?StudyInstanceUID={}", uids.join(",")));
    assert_eq!(got.len(), 1);
    // Modalities in study through the series: CT and MR studies.
    let got = w.json("/studies?ModalitiesInStudy=CT%5CMR");
    let want: BTreeSet<String> = w
        .recs
        .iter()
        .filter(|x| x.modality == "CT" || x.modality == "MR")
        .map(|x| x.study.clone())
        .collect();
    assert_eq!(set(&got, "0020000D"), want);
    let got = w.json("/studies?ModalitiesInStudy=C*");
    let want: BTreeSet<String> = w
        .recs
        .iter()
        .filter(|x| x.modality.starts_with('C'))
        .map(|x| x.study.clone())
        .collect();
    assert_eq!(set(&got, "0020000D"), want);
    for (query, says) in [
        (
            format!("PatientID={}", vec!["X"; 1001].join("%5C")),
            "at most 1000",
        ),
        (
            format!("PatientName={}", vec!["a*"; 33].join("%5C")),
            "at most 32",
        ),
        (
            format!(
                "fuzzymatching=true&PatientName={}",
                vec!["w"; 40].join("%20")
            ),
            "at most 32",
        ),
        (format!("PatientID={}*", "x".repeat(60_000)), "at most 256"),
        (format!("PatientID={}", "x%5C".repeat(200_000)), "too long"),
        (format!("PatientID={}", "x".repeat(300)), "at most 256"),
        ("PatientID=a*b*c*d*e*f*g*h*i*".into(), "wildcards"),
        ("PatientID=a%00b".into(), "control character"),
        ("offset=100001".into(), "narrow the search"),
    ] {
        let g = w.ask(&format!("/studies?{query}"));
        let body = String::from_utf8_lossy(&g.body);
        assert_eq!(g.status, 400, "{}: {body}", &query[..query.len().min(80)]);
        assert!(body.contains(says), "{body}");
    }
    // Runs of `*` are one wildcard: allowed, and they match as one.
    let got = w.json("/studies?PatientName=*****doe*****");
    assert_eq!(
        set(&got, "0020000D"),
        set(&w.json("/studies?PatientName=*doe*"), "0020000D")
    );
}

/// An index binding at most 100 parameters a statement (as D1 does) still answers a search
/// of a thousand values: the statement builder writes the rest as literals.
#[test]
fn a_statement_never_binds_more_than_the_engine_takes() {
    #[derive(Debug)]
    struct Narrow(Arc<SqliteIndex>);
    #[async_trait::async_trait]
    impl Index for Narrow {
        fn dialect(&self) -> crate::search::Dialect {
            self.0.dialect()
        }
        fn max_params(&self) -> usize {
            100
        }
        async fn execute(
            &self,
            s: Vec<crate::search::Statement>,
        ) -> std::result::Result<(), crate::search::IndexError> {
            assert!(s.iter().all(|s| s.params.len() <= 100));
            self.0.execute(s).await
        }
        async fn query(
            &self,
            s: crate::search::Statement,
        ) -> std::result::Result<Vec<crate::search::Row>, crate::search::IndexError> {
            assert!(s.params.len() <= 100, "{} parameters", s.params.len());
            self.0.query(s).await
        }
    }
    let w = world();
    let svc = test_service(
        w.store.clone(),
        Config {
            index: Some(Arc::new(Narrow(w.index.clone()))),
            ..Config::default()
        },
    );
    let r = &w.recs[3];
    let mut ids: Vec<String> = (0..500).map(|i| format!("O'NEIL{i}")).collect();
    ids.push(r.patient_id.clone());
    let mut names: Vec<String> = (0..400).map(|i| format!("NOBODY{i}")).collect();
    names.push(r.name.to_lowercase().replace('^', "%5E"));
    let g = ask(
        &svc,
        Method::GET,
        &format!(
            "{ROOT}/studies?PatientID={}&PatientName={}",
            ids.join("%5C"),
            names.join("%5C")
        ),
        &[],
    );
    assert_eq!(g.status, 200, "{}", String::from_utf8_lossy(&g.body));
    let got: Vec<Json> = serde_json::from_slice(&g.body).expect("json");
    let want: BTreeSet<String> = w
        .recs
        .iter()
        .filter(|x| x.patient_id == r.patient_id && x.name.eq_ignore_ascii_case(&r.name))
        .map(|x| x.study.clone())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(set(&got, "0020000D"), want);
}

/// Every matching key, searched across its whole level with one exact value, is answered
/// through an index (SQLite's plan searches, never scans, the key's table).
#[test]
fn every_matching_key_is_served_by_an_index() {
    use crate::search::{attrs, query::Query, sql, Level, Scope, Statement};
    let index = SqliteIndex::memory().expect("sqlite");
    block_on(crate::search::open(&index)).expect("schema");
    for key in attrs::KEYS {
        let value = match key.kind {
            attrs::Kind::Uid => "1.2.3",
            attrs::Kind::Date => "20240102",
            attrs::Kind::Time => "101010",
            attrs::Kind::Int => "7",
            _ => "X",
        };
        let q = Query::parse(
            key.level,
            Scope::All,
            Some(&format!("{}={value}", key.keyword)),
        )
        .expect("query");
        let s = sql::select(crate::search::Dialect::Sqlite, 1000, "P", &q, 10);
        let plan = index
            .query_now(&Statement {
                sql: format!("EXPLAIN QUERY PLAN {}", s.sql),
                params: s.params,
            })
            .expect("plan");
        let text: Vec<String> = plan
            .iter()
            .filter_map(|r| r.get(3).and_then(|v| v.as_str()).map(str::to_owned))
            .collect();
        let table = match (key.kind, key.level) {
            (attrs::Kind::Modalities, _) => "m",
            (_, Level::Study) => "st",
            (_, Level::Series) => "se",
            (_, Level::Instance) => "i",
        };
        assert!(
            text.iter()
                .any(|l| l.starts_with(&format!("SEARCH {table} "))),
            "{}: {text:?}",
            key.keyword
        );
    }
}
