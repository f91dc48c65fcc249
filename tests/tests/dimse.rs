//! The DICOM network protocol with real peers (native server): DCMTK's echoscu, dcmsend,
//! storescu and findscu, DCMTK's storescp as the oracle of what a peer sends, pynetdicom (an
//! independent implementation) storing, finding and cancelling, and `wado echo` / `wado send`.
//! What C-STORE stores is checked over WADO-RS byte for byte against what storescp received of
//! the same sends; what C-FIND finds against pydicom reading the files and against QIDO-RS.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use wado_tests::*;

const PEERS: &str = "\
# calling AE  address    AE titles  may
MOVESCU       localhost  DCM4CHEE   move
GETSCU        localhost  DCM4CHEE   get
DCMSEND       localhost  DCM4CHEE   store
STORESCU      localhost  DCM4CHEE   store
FINDSCU       localhost  DCM4CHEE   find
PYNET         localhost  DCM4CHEE   all
WADO          localhost  DCM4CHEE   store
ECHOSCU       localhost  -          -
";

/// The data set of a Part-10 file (after its meta) and its transfer syntax, read with
/// dicom-rs's meta reader.
fn data_set(file: &[u8]) -> (String, Vec<u8>) {
    let mut cursor = &file[128..];
    let meta = dicom_object::FileMetaTable::from_reader(&mut cursor).unwrap();
    let ts = meta.transfer_syntax().trim_end_matches('\0').to_owned();
    (ts, cursor.to_vec())
}

/// Pixel Data's value as read by dicom-rs.
fn pixel_data(file: &Path) -> Vec<u8> {
    let obj = dicom_object::OpenFileOptions::new()
        .open_file(file)
        .unwrap();
    obj.element(dicom_core::Tag(0x7FE0, 0x0010))
        .unwrap()
        .to_bytes()
        .unwrap()
        .into_owned()
}

/// A received data set equals the stored one (a deflated stream's even-length NUL pad
/// aside, which storescp drops when it writes the file).
fn same_data_set(want: &[u8], got: Vec<u8>, ts: &str) -> bool {
    let (short, long) = if got.len() < want.len() {
        (&got[..], want)
    } else {
        (want, &got[..])
    };
    if ts == "1.2.840.10008.1.2.1.99" && long.len() == short.len() + 1 && long.last() == Some(&0) {
        return short == &long[..short.len()];
    }
    got == want
}

fn sop_of(file: &[u8]) -> String {
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(file)
        .unwrap();
    obj.element(dicom_core::Tag(0x0008, 0x0018))
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .trim()
        .to_owned()
}

/// The file wado stores for `sop`, retrieved over WADO-RS as stored.
fn retrieved(root: &str, sop: &str) -> Option<Vec<u8>> {
    let found = get(&format!("{root}/instances?SOPInstanceUID={sop}"), None);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&found.body).ok()?;
    let row = rows.first()?;
    let v = |t: &str| row[t]["Value"][0].as_str().unwrap().to_owned();
    let url = format!(
        "{root}/studies/{}/series/{}/instances/{sop}",
        v("0020000D"),
        v("0020000E")
    );
    let r = request(
        "GET",
        &url,
        &[(
            "accept",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        )],
    );
    assert_eq!(r.status, 200, "{url}");
    Some(r.parts().remove(0).1)
}

fn dcmtk(tool: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e} (run bash scripts/setup.sh)"))
}

/// storescp on a free port writing into `dir`: bit-preserving and taking every syntax it
/// knows when `every_syntax`, else as configured by default (uncompressed syntaxes only).
struct StoreScp(std::process::Child);

impl StoreScp {
    fn start(dir: &Path, ae: &str) -> (StoreScp, u16) {
        Self::start_with(dir, ae, true)
    }

    fn start_with(dir: &Path, ae: &str, every_syntax: bool) -> (StoreScp, u16) {
        let accept: &[&str] = if every_syntax { &["+xa", "-B"] } else { &[] };
        Self::start_args(dir, ae, accept)
    }

    /// storescp with these options (e.g. TLS).
    fn start_args(dir: &Path, ae: &str, args: &[&str]) -> (StoreScp, u16) {
        let port = free_port();
        let child = Command::new("storescp")
            .args(args)
            .args(["-aet", ae, "-od"])
            .arg(dir)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "storescp did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        (StoreScp(child), port)
    }
}

impl Drop for StoreScp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dicom_peers_store_find_and_are_refused_what_the_table_does_not_grant() {
    let dir = tempdir();
    let (server, p) = serve_dimse(dir.path(), PEERS, &[]);
    let root = server.root();
    let addr = ["127.0.0.1", p.as_str()];

    // C-ECHO: a known peer is answered; an unknown calling AE and an unknown called AE are
    // rejected at association.
    let ok = dcmtk("echoscu", &["-aec", "DCM4CHEE", addr[0], addr[1]]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let stranger = dcmtk(
        "echoscu",
        &["-aet", "STRANGER", "-aec", "DCM4CHEE", addr[0], addr[1]],
    );
    assert!(!stranger.status.success());
    assert!(
        String::from_utf8_lossy(&stranger.stderr).contains("Calling AE Title Not Recognized"),
        "{}",
        String::from_utf8_lossy(&stranger.stderr)
    );
    let nowhere = dcmtk("echoscu", &["-aec", "NOWHERE", addr[0], addr[1]]);
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("Called AE Title Not Recognized"));
    let echo = Command::new(wado_bin())
        .args(["echo", &format!("DCM4CHEE@127.0.0.1:{p}")])
        .output()
        .unwrap();
    assert!(
        echo.status.success(),
        "{}",
        String::from_utf8_lossy(&echo.stderr)
    );

    // C-STORE: the corpus sent by dcmsend (each file in its own syntax, as dcmsend proposes)
    // to storescp, the oracle of what the peer sends, and to wado; every instance wado stores
    // retrieves with the data set storescp received, byte for byte, in the same syntax.
    let files = corpus_files();
    let oracle_dir = dir.path().join("oracle");
    std::fs::create_dir_all(&oracle_dir).unwrap();
    let (oracle, oracle_port) = StoreScp::start(&oracle_dir, "ORACLE");
    let paths: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    let op = oracle_port.to_string();
    let mut args = vec!["-nh", "-aec", "ORACLE", "127.0.0.1", op.as_str()];
    args.extend(&paths);
    let sent = dcmtk("dcmsend", &args);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    drop(oracle);
    let mut args = vec!["-nh", "-aec", "DCM4CHEE", addr[0], addr[1]];
    args.extend(&paths);
    let sent = dcmtk("dcmsend", &args);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let received = walk(&oracle_dir);
    assert_eq!(received.len(), files.len(), "storescp received every file");
    for f in &received {
        let bytes = std::fs::read(f).unwrap();
        let sop = sop_of(&bytes);
        let stored = retrieved(&root, &sop).unwrap_or_else(|| panic!("{sop} not found"));
        let (want_ts, want) = data_set(&bytes);
        let (got_ts, mut got) = data_set(&stored);
        if got_ts == "1.2.840.10008.1.2.1.99"
            && got.len() == want.len() + 1
            && got.last() == Some(&0)
        {
            // A deflated stream of odd length travels with a NUL to make it even (PS3.5
            // A.5), which storescp drops when it writes the file.
            got.pop();
        }
        assert_eq!(got_ts, want_ts, "{}: transfer syntax", f.display());
        assert!(
            got == want,
            "{}: the data set differs from what storescp received ({} bytes, {} stored; first difference at {:?})",
            f.display(),
            want.len(),
            got.len(),
            want.iter().zip(&got).position(|(a, b)| a != b)
        );
    }
    let count = |level: &str| -> usize {
        let r = get(&format!("{root}/{level}?limit=10000"), None);
        if r.status == 204 {
            return 0;
        }
        serde_json::from_slice::<Vec<serde_json::Value>>(&r.body)
            .unwrap()
            .len()
    };
    let instances = count("instances");
    assert_eq!(instances, files.len());

    // A peer that may only find cannot store: refused (0124), nothing stored.
    let copies_dir = dir.path().join("copies");
    std::fs::create_dir_all(&copies_dir).unwrap();
    let copy = make_copies(&copies_dir, 1).remove(0);
    let refused = dcmtk(
        "storescu",
        &[
            "-v",
            "-aet",
            "FINDSCU",
            "-aec",
            "DCM4CHEE",
            addr[0],
            addr[1],
            copy.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&refused.stderr).to_string()
        + &String::from_utf8_lossy(&refused.stdout);
    assert!(text.contains("Status: 0x124"), "{text}");
    assert_eq!(
        count("instances"),
        instances,
        "nothing stored by a peer that may not"
    );
    // `wado send` of a file whose meta names another instance than its data set: A900.
    let mut lying = dicom_object::OpenFileOptions::new()
        .open_file(&copy)
        .unwrap();
    lying.meta_mut().media_storage_sop_instance_uid = "1.2.3.4.5.6.7.8.9".into();
    lying.meta_mut().update_information_group_length();
    let lying_path = copies_dir.join("lying.dcm");
    lying.write_to_file(&lying_path).unwrap();
    let out = Command::new(wado_bin())
        .args(["send", &format!("DCM4CHEE@127.0.0.1:{p}")])
        .arg(&lying_path)
        .arg(&copy)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("lying.dcm: not stored: status A900"), "{err}");
    assert_eq!(
        count("instances"),
        instances + 1,
        "the honest copy is stored"
    );

    // C-FIND (findscu, Study Root, STUDY level, every study): the same studies and values as
    // QIDO-RS's answer to the same question.
    let rsp_dir = dir.path().join("rsp");
    std::fs::create_dir_all(&rsp_dir).unwrap();
    let found = dcmtk(
        "findscu",
        &[
            "-S",
            "-X",
            "-od",
            rsp_dir.to_str().unwrap(),
            "-aec",
            "DCM4CHEE",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "PatientName=*",
            "-k",
            "PatientID",
            "-k",
            "StudyInstanceUID",
            "-k",
            "StudyDate",
            "-k",
            "NumberOfStudyRelatedInstances",
            addr[0],
            addr[1],
        ],
    );
    assert!(
        found.status.success(),
        "{}",
        String::from_utf8_lossy(&found.stderr)
    );
    let mut by_find: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    for f in walk(&rsp_dir) {
        let obj = dicom_object::OpenFileOptions::new()
            .read_until(dicom_core::Tag(0xFFFF, 0xFFFF))
            .open_file(&f)
            .unwrap();
        let v = |t: u16, e: u16| {
            obj.element(dicom_core::Tag(t, e))
                .map(|e| e.to_str().unwrap_or_default().trim().to_owned())
                .unwrap_or_default()
        };
        by_find.insert(
            v(0x0020, 0x000D),
            (v(0x0010, 0x0020), v(0x0008, 0x0020), v(0x0020, 0x1208)),
        );
    }
    let qido = get(&format!("{root}/studies?PatientName=*&limit=10000"), None);
    let qido: Vec<serde_json::Value> = serde_json::from_slice(&qido.body).unwrap();
    let s = |r: &serde_json::Value, t: &str| match &r[t]["Value"][0] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let by_qido: BTreeMap<String, (String, String, String)> = qido
        .iter()
        .map(|r| {
            (
                s(r, "0020000D"),
                (s(r, "00100020"), s(r, "00080020"), s(r, "00201208")),
            )
        })
        .collect();
    assert!(by_qido.len() >= 10, "{}", by_qido.len());
    assert_eq!(by_find, by_qido, "C-FIND and QIDO-RS answer the same");
    // A peer that may not find is refused.
    let refused = dcmtk(
        "findscu",
        &[
            "-v",
            "-S",
            "-aet",
            "STORESCU",
            "-aec",
            "DCM4CHEE",
            "-k",
            "QueryRetrieveLevel=STUDY",
            addr[0],
            addr[1],
        ],
    );
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        text.contains("Final Find Response (Unknown Status: 0x124)"),
        "{text}"
    );

    // pynetdicom: echo, store (re-encoded by pydicom), find each instance at IMAGE, STUDY and
    // PATIENT level with the values pydicom reads in the files, cancel a C-FIND.
    let python = repo_dir().join(".tools/s3venv/bin/python");
    let sample: Vec<PathBuf> = make_copies(&copies_dir, 6).into_iter().skip(1).collect();
    let out = Command::new(python)
        .arg(repo_dir().join("tests/oracles/pynetdicom_peer.py"))
        .args(["127.0.0.1", &p, "DCM4CHEE"])
        .args(&sample)
        .args([
            corpus().join("mr_small_j2k_lossless.dcm"),
            corpus().join("sr_comprehensive.dcm"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["echo"], 0);
    for s in seen["stored"].as_array().unwrap() {
        assert_eq!(s[1], 0, "{s}");
    }
    for f in seen["found"].as_array().unwrap() {
        assert_eq!((&f[1], &f[2]), (&1.into(), &0.into()), "{f}");
    }
    for f in seen["patients"].as_array().unwrap() {
        assert_eq!((&f[1], &f[2]), (&1.into(), &0.into()), "one patient: {f}");
    }
    assert_eq!(seen["mismatches"], serde_json::json!([]));
    let total = count("instances");
    let cancel = &seen["cancel"];
    assert_eq!(cancel[1], 0xFE00, "the final status says Cancel: {cancel}");
    assert!(cancel[0].as_u64().unwrap() < total as u64, "{cancel}");
    assert_eq!(seen["echo_after"], 0);
    let sops: BTreeSet<String> = sample
        .iter()
        .map(|f| sop_of(&std::fs::read(f).unwrap()))
        .collect();
    for sop in &sops {
        assert!(retrieved(&root, sop).is_some(), "{sop}");
    }
}

/// movescu or getscu (`tool`) calling as `calling` (`more`: its information model flag and
/// other options) with the identifier `keys`, against wado's DIMSE port `p`.
fn retrieve(
    tool: &str,
    calling: &str,
    more: &[&str],
    keys: &[String],
    p: &str,
) -> std::process::Output {
    let mut args = vec!["-v", "-aet", calling, "-aec", "DCM4CHEE"];
    args.extend(more);
    for k in keys {
        args.extend(["-k", k.as_str()]);
    }
    args.extend(["127.0.0.1", p]);
    dcmtk(tool, &args)
}

/// wado serve with DIMSE on a free port (returned) and `table` as its peers table.
fn serve_dimse(dir: &Path, table: &str, extra: &[&str]) -> (Server, String) {
    let peers = write_temp(dir, "peers.txt", table.as_bytes());
    let port = free_port().to_string();
    let mut args = vec![
        "--dimse-port",
        port.as_str(),
        "--dimse-peers",
        peers.to_str().unwrap(),
    ];
    args.extend(extra);
    (Server::start_native(&dir.join("data"), &args), port)
}

/// The move/get tools' text (DCMTK prints its log on stderr).
fn said(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
}

#[test]
fn c_move_and_c_get_send_every_instance_as_stored_or_decoded_for_peers_that_need_it() {
    let dir = tempdir();
    // Two C-MOVE destinations: storescp taking every syntax bit for bit (DEST), and storescp
    // as configured by default, uncompressed syntaxes only (PLAIN).
    let dest_dir = dir.path().join("dest");
    let plain_dir = dir.path().join("plain");
    let get_dir = dir.path().join("get");
    for d in [&dest_dir, &plain_dir, &get_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    let (_dest, dest_port) = StoreScp::start(&dest_dir, "DEST");
    let (_plain, plain_port) = StoreScp::start_with(&plain_dir, "PLAIN", false);
    let table =
        format!("{PEERS}DEST localhost:{dest_port} - -\nPLAIN 127.0.0.1:{plain_port} - -\n");
    let (server, p) = serve_dimse(dir.path(), &table, &[]);
    let root = server.root();
    let addr = ["127.0.0.1", p.as_str()];

    let files = corpus_files();
    let mut args = vec!["-nh", "-aec", "DCM4CHEE", addr[0], addr[1]];
    let paths: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    args.extend(&paths);
    let sent = dcmtk("dcmsend", &args);
    assert!(sent.status.success(), "{}", said(&sent));
    let studies: Vec<serde_json::Value> =
        serde_json::from_slice(&get(&format!("{root}/studies?limit=10000"), None).body).unwrap();
    let study_uids: Vec<String> = studies
        .iter()
        .map(|r| r["0020000D"]["Value"][0].as_str().unwrap().to_owned())
        .collect();
    assert!(study_uids.len() >= 10, "{}", study_uids.len());

    // C-MOVE of every study (Study Root) to DEST: every stored instance arrives, its data set
    // byte for byte as stored, in the syntax it is stored in.
    for uid in &study_uids {
        let moved = retrieve(
            "movescu",
            "MOVESCU",
            &["-S", "-aem", "DEST"],
            &[
                "QueryRetrieveLevel=STUDY".into(),
                format!("StudyInstanceUID={uid}"),
            ],
            &p,
        );
        let text = said(&moved);
        assert!(
            moved.status.success() && text.contains("Final Move Response (Success)"),
            "{uid}: {text}"
        );
    }
    let received = walk(&dest_dir);
    assert_eq!(received.len(), files.len(), "every instance moved once");
    for f in &received {
        let bytes = std::fs::read(f).unwrap();
        let sop = sop_of(&bytes);
        let stored = retrieved(&root, &sop).unwrap_or_else(|| panic!("{sop} not stored"));
        let (want_ts, want) = data_set(&stored);
        let (got_ts, got) = data_set(&bytes);
        assert_eq!(got_ts, want_ts, "{sop}: transfer syntax");
        assert!(
            same_data_set(&want, got, &got_ts),
            "{sop}: data set differs"
        );
    }

    // C-MOVE at PATIENT level (Patient Root) of a JPEG 2000 lossless instance to PLAIN, which
    // takes uncompressed syntaxes only: it arrives decoded, its pixels those GDCM decodes.
    let j2k = corpus().join("mr_small_j2k_lossless.dcm");
    let oracle = dir.path().join("gdcm_raw.dcm");
    let conv = Command::new("gdcmconv")
        .arg("--raw")
        .arg(&j2k)
        .arg(&oracle)
        .output()
        .unwrap();
    assert!(conv.status.success(), "{}", said(&conv));
    let j2k_obj = dicom_object::OpenFileOptions::new()
        .open_file(&j2k)
        .unwrap();
    let j2k_sop = sop_of(&std::fs::read(&j2k).unwrap());
    let patient = j2k_obj
        .element(dicom_core::Tag(0x0010, 0x0020))
        .unwrap()
        .to_str()
        .unwrap()
        .trim()
        .to_owned();
    let moved = retrieve(
        "movescu",
        "MOVESCU",
        &["-P", "-aem", "PLAIN"],
        &[
            "QueryRetrieveLevel=IMAGE".into(),
            format!("PatientID={patient}"),
            format!("SOPInstanceUID={j2k_sop}"),
        ],
        &p,
    );
    assert!(moved.status.success(), "{}", said(&moved));
    let plain = walk(&plain_dir);
    assert_eq!(plain.len(), 1, "{}", said(&moved));
    let (ts, _) = data_set(&std::fs::read(&plain[0]).unwrap());
    assert!(
        ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"].contains(&ts.as_str()),
        "{ts}"
    );
    assert!(
        pixel_data(&plain[0]) == pixel_data(&oracle),
        "decoded pixels differ from GDCM's"
    );

    // C-GET (getscu, uncompressed syntaxes offered back) of two studies on the one
    // association: every instance of them comes back, as stored where the syntax is one
    // getscu takes, else decoded.
    let j2k_study = j2k_obj
        .element(dicom_core::Tag(0x0020, 0x000D))
        .unwrap()
        .to_str()
        .unwrap()
        .trim()
        .to_owned();
    let ct = corpus().join("ct_small_ele.dcm");
    let ct_study = study_of(&ct);
    let mut expected = BTreeSet::new();
    for uid in [&j2k_study, &ct_study] {
        let got = retrieve(
            "getscu",
            "GETSCU",
            &["+B", "-S", "-od", get_dir.to_str().unwrap()],
            &[
                "QueryRetrieveLevel=STUDY".into(),
                format!("StudyInstanceUID={uid}"),
            ],
            &p,
        );
        let text = said(&got);
        assert!(
            got.status.success() && text.contains("Received C-GET Response (Success)"),
            "{uid}: {text}"
        );
        let rows: Vec<serde_json::Value> =
            serde_json::from_slice(&get(&format!("{root}/studies/{uid}/instances"), None).body)
                .unwrap();
        expected.extend(
            rows.iter()
                .map(|r| r["00080018"]["Value"][0].as_str().unwrap().to_owned()),
        );
    }
    let got_files = walk(&get_dir);
    let got_sops: BTreeSet<String> = got_files
        .iter()
        .map(|f| sop_of(&std::fs::read(f).unwrap()))
        .collect();
    assert_eq!(got_sops, expected);
    for f in &got_files {
        let bytes = std::fs::read(f).unwrap();
        let sop = sop_of(&bytes);
        let (got_ts, got) = data_set(&bytes);
        let (want_ts, want) = data_set(&retrieved(&root, &sop).unwrap());
        if sop == j2k_sop {
            assert!(pixel_data(f) == pixel_data(&oracle), "C-GET decoded pixels");
        } else if got_ts == want_ts {
            assert!(
                same_data_set(&want, got, &got_ts),
                "{sop}: data set differs"
            );
        }
    }

    // Refusals: a destination not in the table (A801), a peer that may get but not move
    // (0124), and nothing is sent anywhere.
    let before = walk(&dest_dir).len();
    let nowhere = retrieve(
        "movescu",
        "MOVESCU",
        &["-S", "-aem", "NOWHERE"],
        &[
            "QueryRetrieveLevel=STUDY".into(),
            format!("StudyInstanceUID={ct_study}"),
        ],
        &p,
    );
    let text = said(&nowhere);
    assert!(text.contains("Refused: MoveDestinationUnknown"), "{text}");
    let not_granted = retrieve(
        "movescu",
        "GETSCU",
        &["-S", "-aem", "DEST"],
        &[
            "QueryRetrieveLevel=STUDY".into(),
            format!("StudyInstanceUID={ct_study}"),
        ],
        &p,
    );
    let text = said(&not_granted);
    assert!(text.contains("0x124") || text.contains("0x0124"), "{text}");
    assert_eq!(
        walk(&dest_dir).len(),
        before,
        "nothing sent on a refused move"
    );
}

fn study_of(file: &Path) -> String {
    let obj = dicom_object::OpenFileOptions::new()
        .open_file(file)
        .unwrap();
    obj.element(dicom_core::Tag(0x0020, 0x000D))
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .trim()
        .to_owned()
}

#[test]
fn hostile_peers_are_cut_off_and_the_server_keeps_answering() {
    use std::io::{Read, Write};
    let dir = tempdir();
    let (_server, p) = serve_dimse(dir.path(), PEERS, &["--dimse-timeout", "2"]);
    let port: u16 = p.parse().unwrap();
    let echo = || {
        let ok = dcmtk("echoscu", &["-aec", "DCM4CHEE", "127.0.0.1", &p]);
        assert!(ok.status.success(), "{}", said(&ok));
    };
    // The server ends the connection (or answers with an abort / reject PDU and ends it)
    // within `limit`.
    let ends = |mut s: std::net::TcpStream, limit: u64, what: &str| {
        s.set_read_timeout(Some(std::time::Duration::from_secs(limit)))
            .unwrap();
        let start = std::time::Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => assert!(
                    [0x03, 0x07].contains(&buf[0]),
                    "{what}: PDU type {:#x}",
                    buf[0]
                ),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("{what}: not cut off after {:?}: {e}", start.elapsed()),
            }
        }
    };
    let connect = || std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();

    // Not DICOM at all.
    let mut s = connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    ends(s, 10, "HTTP");
    // An A-ASSOCIATE-RQ announcing 4 GB.
    let mut s = connect();
    s.write_all(&[0x01, 0, 0xFF, 0xFF, 0xFF, 0xF0, 0, 1])
        .unwrap();
    ends(s, 10, "huge PDU");
    // A P-DATA before any association.
    let mut s = connect();
    s.write_all(&[0x04, 0, 0, 0, 0, 6, 0, 0, 0, 2, 1, 3])
        .unwrap();
    ends(s, 10, "P-DATA first");
    // Fifty peers that connect and say nothing: each cut off after --dimse-timeout, and the
    // server answers others meanwhile.
    let silent: Vec<_> = (0..50).map(|_| connect()).collect();
    echo();
    let start = std::time::Instant::now();
    for s in silent {
        ends(s, 15, "silent");
    }
    assert!(start.elapsed() < std::time::Duration::from_secs(15));
    echo();
}

/// A hundred peers at once (pynetdicom): every association is established and held until all
/// are, then each stores one instance of its own and releases, every tenth aborting instead
/// before it stores. Every C-STORE answered Success; the study holds exactly those instances,
/// each retrievable whole; the aborted ones left nothing; the server answers after.
#[test]
fn a_hundred_associations_at_once_are_all_served() {
    let dir = tempdir();
    let (server, p) = serve_dimse(dir.path(), PEERS, &[]);
    let study = "1.2.826.0.1.3680043.8.498.25.100";
    let python = repo_dir().join(".tools/s3venv/bin/python");
    let out = Command::new(python)
        .arg(repo_dir().join("tests/oracles/pynetdicom_crowd.py"))
        .args(["127.0.0.1", &p, "DCM4CHEE", "100"])
        .arg(corpus().join("ct_small_ele.dcm"))
        .arg(study)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["refused"], 0, "{seen}");
    assert_eq!(seen["aborted"].as_array().unwrap().len(), 10, "{seen}");
    let stored: BTreeSet<String> = seen["stored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r[1], 0, "C-STORE status: {r}");
            r[0].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(stored.len(), 90);
    let root = server.root();
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&get(&format!("{root}/studies/{study}/instances"), None).body)
            .unwrap();
    let found: BTreeSet<String> = rows
        .iter()
        .map(|r| r["00080018"]["Value"][0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        found, stored,
        "the study holds what was acknowledged, no more"
    );
    for sop in stored.iter().step_by(9) {
        let file = retrieved(&root, sop).expect("retrievable");
        assert_eq!(sop_of(&file), *sop);
    }
    let ok = dcmtk("echoscu", &["-aec", "DCM4CHEE", "127.0.0.1", &p]);
    assert!(ok.status.success(), "{}", said(&ok));
}

/// The audit trail covers the DICOM network protocol too (issue 26): with `--audit-log`, a
/// C-STORE, a C-FIND, a C-GET (DCMTK's storescu, findscu, getscu) and a C-FIND the peers table
/// refuses each leave one record: PS3.15's event for it (Instances Transferred C, Query,
/// Instances Transferred R), the calling AE title and its address as the requestor, the
/// outcome from the final status, the study and the patient (as dcmdump reads them from the
/// file) and, for the query, the identifier as sent.
#[test]
fn dimse_operations_leave_audit_records() {
    use base64::Engine as _;
    let dir = tempdir();
    let log = dir.path().join("audit.jsonl");
    let (server, p) = serve_dimse(dir.path(), PEERS, &["--audit-log", log.to_str().unwrap()]);
    let file = corpus().join("ct_small_ele.dcm");
    let (study, _, sop) = uids(&file);
    let patient = dcmdump_value(&file, "PatientID");
    let f = file.to_str().unwrap();
    let stored = dcmtk(
        "storescu",
        &["-aet", "STORESCU", "-aec", "DCM4CHEE", "127.0.0.1", &p, f],
    );
    assert!(stored.status.success(), "{}", said(&stored));
    let keys = [
        "QueryRetrieveLevel=STUDY".to_owned(),
        format!("StudyInstanceUID={study}"),
    ];
    let find = |calling: &str| {
        let mut args = vec!["-S", "-aet", calling, "-aec", "DCM4CHEE"];
        for k in &keys {
            args.extend(["-k", k.as_str()]);
        }
        args.extend(["127.0.0.1", p.as_str()]);
        dcmtk("findscu", &args)
    };
    assert!(find("FINDSCU").status.success());
    let get_dir = dir.path().join("got");
    std::fs::create_dir_all(&get_dir).unwrap();
    let got = retrieve(
        "getscu",
        "GETSCU",
        &["-S", "-od", get_dir.to_str().unwrap()],
        &keys,
        &p,
    );
    assert!(got.status.success(), "{}", said(&got));
    find("MOVESCU");
    drop(server);
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ops: Vec<&str> = records
        .iter()
        .map(|r| r["wado"]["dimse"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        ["C-STORE", "C-FIND", "C-GET", "C-FIND"],
        "{records:#?}"
    );
    let objects = |r: &serde_json::Value, code: &str| -> Vec<String> {
        r["ParticipantObjectIdentification"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["ParticipantObjectIDTypeCode"]["csd-code"] == code)
            .map(|o| o["ParticipantObjectID"].as_str().unwrap().to_owned())
            .collect()
    };
    for (r, (event, action, outcome, calling)) in records.iter().zip([
        ("110104", "C", "0", "STORESCU"),
        ("110112", "E", "0", "FINDSCU"),
        ("110104", "R", "0", "GETSCU"),
        ("110112", "E", "4", "MOVESCU"),
    ]) {
        let e = &r["EventIdentification"];
        assert_eq!(e["EventID"]["csd-code"], event, "{r}");
        assert_eq!(e["EventActionCode"], action, "{r}");
        assert_eq!(e["EventOutcomeIndicator"], outcome, "{r}");
        let requestor = &r["ActiveParticipant"][0];
        assert_eq!(requestor["UserID"], calling);
        assert_eq!(requestor["UserIsRequestor"], true);
        assert_eq!(requestor["NetworkAccessPointID"], "127.0.0.1");
        assert_eq!(r["ActiveParticipant"][1]["UserID"], "DCM4CHEE");
    }
    for r in [&records[0], &records[2]] {
        assert_eq!(objects(r, "110180"), std::slice::from_ref(&study), "{r}");
        assert_eq!(objects(r, "2"), std::slice::from_ref(&patient), "{r}");
    }
    assert_eq!(
        records[0]["ParticipantObjectIdentification"][1]["ParticipantObjectDetail"][0]["value"],
        sop.as_str()
    );
    let query = &records[1]["ParticipantObjectIdentification"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["ParticipantObjectIDTypeCode"]["csd-code"] == "110181")
        .unwrap()["ParticipantObjectQuery"];
    let identifier = base64::engine::general_purpose::STANDARD
        .decode(query.as_str().unwrap())
        .unwrap();
    // The identifier names the study: its UID is in the bytes as sent.
    assert!(
        identifier
            .windows(study.len())
            .any(|w| w == study.as_bytes()),
        "{identifier:?}"
    );
}

/// A CA, and a certificate it issued for `names` (PEM: certificate, key), made with rcgen.
struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    fn issue(&self, names: &[&str], usage: &[rcgen::ExtendedKeyUsagePurpose]) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        params.extended_key_usages = usage.to_vec();
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// DICOM TLS with client certificates (`--dimse-tls-cert/-key/-client-ca`), with DCMTK's own
/// TLS (OpenSSL) as the peer: echoscu and storescu with a certificate the server's CA issued
/// associate, and what storescu sent retrieves byte for byte over WADO-RS; a peer without TLS,
/// with a certificate of another CA, or that does not trust the server's certificate, gets no
/// association, and nothing it sent is stored; the server keeps answering.
#[test]
fn dicom_tls_with_client_certificates() {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let dir = tempdir();
    let d = dir.path();
    let ca = Ca::new("wado test CA");
    // wado's certificate serves its listener and identifies it to C-MOVE destinations.
    let (server_cert, server_key) =
        ca.issue(&["localhost", "127.0.0.1"], &[ServerAuth, ClientAuth]);
    let (client_cert, client_key) = ca.issue(&["modality.example"], &[ClientAuth]);
    let (dest_cert, dest_key) = ca.issue(&["127.0.0.1"], &[ServerAuth]);
    let stranger = Ca::new("another CA");
    let (other_cert, other_key) = stranger.issue(&["stranger.example"], &[ClientAuth]);
    let path = |name: &str, text: &str| {
        write_temp(d, name, text.as_bytes())
            .to_str()
            .unwrap()
            .to_owned()
    };
    let ca_pem = path("ca.pem", &ca.pem);
    let stranger_pem = path("stranger-ca.pem", &stranger.pem);
    let (scert, skey) = (
        path("server.pem", &server_cert),
        path("server.key", &server_key),
    );
    let (ccert, ckey) = (
        path("client.pem", &client_cert),
        path("client.key", &client_key),
    );
    let (ocert, okey) = (
        path("other.pem", &other_cert),
        path("other.key", &other_key),
    );
    // A C-MOVE destination that speaks only TLS and requires a client certificate (storescp's
    // default), bit-preserving.
    let (dcert, dkey) = (path("dest.pem", &dest_cert), path("dest.key", &dest_key));
    let dest_dir = d.join("dest");
    std::fs::create_dir_all(&dest_dir).unwrap();
    let (_dest, dest_port) = StoreScp::start_args(
        &dest_dir,
        "TLSDEST",
        &["+xa", "-B", "+tls", &dkey, &dcert, "+cf", &ca_pem],
    );
    let table = format!("{PEERS}TLSDEST 127.0.0.1:{dest_port} - - tls\n");
    let (server, p) = serve_dimse(
        d,
        &table,
        &[
            "--dimse-tls-cert",
            &scert,
            "--dimse-tls-key",
            &skey,
            "--dimse-tls-client-ca",
            &ca_pem,
            "--dimse-tls-ca",
            &ca_pem,
            "--dimse-timeout",
            "5",
        ],
    );
    let root = format!("{}/dcm4chee-arc/aets/DCM4CHEE/rs", server.base);
    // DCMTK's +tls takes the key then the certificate; +cf the certificates it trusts.
    let tls = |key: &str, cert: &str, trust: &str| -> Vec<String> {
        ["+tls", key, cert, "+cf", trust]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let echo = |extra: &[String]| {
        let mut args: Vec<&str> = extra.iter().map(String::as_str).collect();
        args.extend(["-to", "10", "-aec", "DCM4CHEE", "127.0.0.1", &p]);
        dcmtk("echoscu", &args)
    };
    let good = tls(&ckey, &ccert, &ca_pem);
    let out = echo(&good);
    assert!(out.status.success(), "echoscu over TLS: {}", said(&out));

    // C-STORE over TLS, then the file over WADO-RS as stored.
    let file = corpus().join("ct_small_ele.dcm");
    let sent = std::fs::read(&file).unwrap();
    let mut args: Vec<&str> = good.iter().map(String::as_str).collect();
    args.extend(["-aet", "STORESCU", "-aec", "DCM4CHEE", "127.0.0.1", &p]);
    args.push(file.to_str().unwrap());
    let out = dcmtk("storescu", &args);
    assert!(out.status.success(), "storescu over TLS: {}", said(&out));
    // The oracle of what storescu sends: the same command, without TLS, to DCMTK's storescp.
    let oracle_dir = d.join("oracle");
    std::fs::create_dir_all(&oracle_dir).unwrap();
    let (oracle, oracle_port) = StoreScp::start(&oracle_dir, "ORACLE");
    let op = oracle_port.to_string();
    let f = file.to_str().unwrap();
    let out = dcmtk(
        "storescu",
        &["-aet", "STORESCU", "-aec", "ORACLE", "127.0.0.1", &op, f],
    );
    assert!(out.status.success(), "storescu to storescp: {}", said(&out));
    drop(oracle);
    let received = std::fs::read(&walk(&oracle_dir)[0]).unwrap();
    let stored = retrieved(&root, &sop_of(&sent)).expect("stored over TLS");
    let (ts, want) = data_set(&received);
    let (got_ts, got) = data_set(&stored);
    assert_eq!(got_ts, ts);
    assert!(same_data_set(&want, got, &ts), "the data set as sent");

    // C-MOVE over TLS (pynetdicom with its certificate; DCMTK's movescu has no TLS) to the
    // TLS destination: storescp gets the instance as stored.
    let out = Command::new(repo_dir().join(".tools/s3venv/bin/python"))
        .arg(repo_dir().join("tests/oracles/pynetdicom_tls_move.py"))
        .args(["127.0.0.1", &p, "DCM4CHEE", "TLSDEST", &uids(&file).0])
        .args([&ca_pem, &ccert, &ckey])
        .output()
        .unwrap();
    let moved: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("pynetdicom: {}", said(&out)));
    assert_eq!(
        moved,
        serde_json::json!({"established": true, "status": 0, "completed": 1, "failed": 0}),
        "{}",
        said(&out)
    );
    let moved = walk(&dest_dir);
    assert_eq!(moved.len(), 1, "the TLS destination got the study");
    let (moved_ts, moved) = data_set(&std::fs::read(&moved[0]).unwrap());
    let (stored_ts, stored) = data_set(&stored);
    assert_eq!(moved_ts, stored_ts);
    assert!(same_data_set(&stored, moved, &stored_ts), "moved as stored");

    // Refused: plain TCP on the TLS port, a client certificate of another CA, no client
    // certificate at all (anonymous TLS), and a client that does not trust the server.
    let copies = d.join("copies");
    std::fs::create_dir_all(&copies).unwrap();
    let other = make_copies(&copies, 1).remove(0);
    let copy = std::fs::read(&other).unwrap();
    let new_sop = sop_of(&copy);
    assert_ne!(new_sop, sop_of(&sent));
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("no TLS", vec![]),
        ("a certificate of another CA", tls(&okey, &ocert, &ca_pem)),
        (
            "no client certificate",
            vec!["+tla".into(), "+cf".into(), ca_pem.clone()],
        ),
        ("the server not trusted", tls(&ckey, &ccert, &stranger_pem)),
    ];
    for (what, extra) in &cases {
        let out = echo(extra);
        assert!(!out.status.success(), "echoscu with {what} associated");
        let mut args: Vec<&str> = extra.iter().map(String::as_str).collect();
        args.extend([
            "-to",
            "10",
            "-aet",
            "STORESCU",
            "-aec",
            "DCM4CHEE",
            "127.0.0.1",
            &p,
        ]);
        args.push(other.to_str().unwrap());
        let out = dcmtk("storescu", &args);
        assert!(!out.status.success(), "storescu with {what} stored");
        assert!(retrieved(&root, &new_sop).is_none(), "{what}: stored");
    }
    // wado's own client (rustls): echo and send with its certificate; without one, or not
    // trusting the server's, no association. What it sent retrieves as the file's data set.
    let target = format!("DCM4CHEE@127.0.0.1:{p}");
    let wado = |args: &[&str]| {
        Command::new(wado_bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let with_cert = [
        "--tls-ca",
        &ca_pem,
        "--tls-cert",
        &ccert,
        "--tls-key",
        &ckey,
    ];
    let mut args = vec!["echo", target.as_str()];
    args.extend(with_cert);
    let out = wado(&args);
    assert!(out.status.success(), "wado echo over TLS: {}", said(&out));
    let out = wado(&["echo", &target, "--tls-ca", &ca_pem]);
    assert!(
        !out.status.success(),
        "wado echo without a client certificate"
    );
    let mut args = vec!["echo", target.as_str(), "--tls-ca", &stranger_pem];
    args.extend(&with_cert[2..]);
    let out = wado(&args);
    assert!(!out.status.success(), "wado echo not trusting the server");
    let mut args = vec!["send", target.as_str(), "--calling-ae", "STORESCU"];
    args.extend(with_cert);
    args.push(other.to_str().unwrap());
    let out = wado(&args);
    assert!(out.status.success(), "wado send over TLS: {}", said(&out));
    let got = retrieved(&root, &new_sop).expect("sent by wado send over TLS");
    assert_eq!(data_set(&got), data_set(&copy), "the file's data set");

    // A peer that opens the connection and never starts the handshake is dropped after the
    // timeout; meanwhile and after, the server answers.
    let silent = std::net::TcpStream::connect(("127.0.0.1", p.parse::<u16>().unwrap())).unwrap();
    let out = echo(&good);
    assert!(
        out.status.success(),
        "echoscu after refusals: {}",
        said(&out)
    );
    silent
        .set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    let start = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = std::io::Read::read(&mut &silent, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "a silent TLS peer is closed");
    assert!(start.elapsed() < std::time::Duration::from_secs(14));
}
