"""Deleting through the Python dicomweb-client (unmodified), checked against pydicom reading the
files themselves. Prints nothing and exits 0 when the server agrees with the files after each
step; otherwise prints each difference and exits 1.

    python dicomweb_client_lifecycle.py SERVICE_ROOT CORPUS_DIR TOKEN store
    python dicomweb_client_lifecycle.py SERVICE_ROOT CORPUS_DIR TOKEN delete STATE.json
    python dicomweb_client_lifecycle.py SERVICE_ROOT CORPUS_DIR TOKEN correct STATE.json
    python dicomweb_client_lifecycle.py SERVICE_ROOT CORPUS_DIR TOKEN check STATE.json

`store` stores every file (STOW-RS, one instance per request, as modalities do); `delete`
deletes one instance, one series and one study chosen from what the files hold, checking
search, metadata, retrieval and the change feed after each, and writes what it deleted to
STATE.json; `correct` (after `delete`) corrects the patient and study attributes of a study that
is left (PATCH, a DICOM JSON object of the new values) and checks every instance retrieved as
stored (pydicom: the new values; every other element, pixel data included, as in the file),
search, metadata and the feed, and that each keeps its version before the correction
(`.../versions`, pydicom reading the file as it was), adding it to STATE.json; `check` checks the same again (after a
restart). TOKEN is a bearer token that may
write; a request without it must be refused and change nothing.
"""
import json
import sys
from collections import defaultdict
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

root, corpus, token, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
state_file = Path(sys.argv[5]) if len(sys.argv) > 5 else None

# What the files hold: each SOP Instance UID once (several files may carry one).
sops = {}
for f in sorted(corpus.glob("*.dcm")):
    d = pydicom.dcmread(f, stop_before_pixels=True)
    sops[d.SOPInstanceUID] = {"study": d.StudyInstanceUID, "series": d.SeriesInstanceUID,
                              "modality": str(d.get("Modality", "")), "file": f}

client = DICOMwebClient(url=root, headers={"Authorization": f"Bearer {token}"})
errors = []


def check(what, got, want):
    if got != want:
        errors.append(f"{what}: got {sorted(got) if isinstance(got, set) else got}, "
                      f"want {sorted(want) if isinstance(want, set) else want}")


def status_of(call):
    """The HTTP status a dicomweb-client call ends with (200 when it returns)."""
    try:
        call()
        return 200
    except requests.exceptions.HTTPError as e:
        return e.response.status_code


def values(results, tag):
    return {r[tag]["Value"][0] for r in results if tag in r}


def tree(present):
    studies = defaultdict(lambda: defaultdict(set))
    for sop in present:
        studies[sops[sop]["study"]][sops[sop]["series"]].add(sop)
    return studies


def feed():
    r = client._session.get(f"{root}/changefeed", params={"after": 0, "limit": 1000})
    r.raise_for_status()
    return r.json()


def agree(present, deleted, touched):
    """The server says what the files say once `deleted` (SOP UIDs) are gone."""
    studies = tree(present)
    check("all studies", values(client.search_for_studies(limit=7, get_remaining=True), "0020000D"),
          set(studies))
    for study in touched:
        series = studies.get(study, {})
        found = client.search_for_studies(search_filters={"StudyInstanceUID": study})
        if not series:
            check(f"study {study} found", len(found), 0)
            check(f"study {study} metadata", status_of(lambda: client.retrieve_study_metadata(study)), 404)
            check(f"study {study} series", len(client.search_for_series(study)), 0)
            continue
        n = sum(len(s) for s in series.values())
        if len(found) != 1:
            errors.append(f"study {study}: {len(found)} results")
        else:
            check(f"study {study} instances", int(found[0]["00201208"]["Value"][0]), n)
            check(f"study {study} series count", int(found[0]["00201206"]["Value"][0]), len(series))
            check(f"study {study} modalities", set(found[0]["00080061"]["Value"]),
                  {sops[s]["modality"] for se in series.values() for s in se})
        check(f"study {study} series", values(client.search_for_series(study), "0020000E"), set(series))
        check(f"study {study} instances", values(client.search_for_instances(study), "00080018"),
              set().union(*series.values()))
        check(f"study {study} metadata", values(client.retrieve_study_metadata(study), "00080018"),
              set().union(*series.values()))
        for se, members in series.items():
            check(f"series {se} metadata", values(client.retrieve_series_metadata(study, se), "00080018"),
                  members)
            found = client.search_for_series(study, search_filters={"SeriesInstanceUID": se})
            check(f"series {se} count", [int(s["00201209"]["Value"][0]) for s in found], [len(members)])
            # One that is left is retrieved whole: the one pydicom reads in the files.
            keep = sorted(members)[0]
            got = client.retrieve_instance(study, se, keep)
            check(f"instance {keep} retrieved", got.SOPInstanceUID, keep)
    for sop in deleted:
        s = sops[sop]
        check(f"deleted {sop} retrieved",
              status_of(lambda: client.retrieve_instance(s["study"], s["series"], sop)), 404)
        check(f"deleted {sop} metadata",
              status_of(lambda: client.retrieve_instance_metadata(s["study"], s["series"], sop)), 404)
    # The feed: numbered 1.. without a gap; every instance stored once first; each deleted
    # instance deleted once, after it was stored; none other deleted.
    rows = feed()
    check("feed sequence", [r["Sequence"] for r in rows], list(range(1, len(rows) + 1)))
    firsts = {}
    for r in rows:
        firsts.setdefault(r["SOPInstanceUID"], r["Action"])
    check("feed: first of each instance", set(firsts.items()), {(s, "create") for s in sops})
    deletes = [r["SOPInstanceUID"] for r in rows if r["Action"] == "delete"]
    check("feed: deletes", sorted(deletes), sorted(deleted))
    latest = client._session.get(f"{root}/changefeed/latest").json()
    check("feed: latest", latest.get("Sequence"), len(rows))


NEW = {"00100010": ("PN", "Corrected^Patient^Q"), "00100020": ("LO", "PID-CORRECTED-7"),
       "00080050": ("SH", "ACC-CORR-7"), "00081030": ("LO", "Corrected study description")}
CHANGED = {0x00100010, 0x00100020, 0x00080050, 0x00081030, 0x00080005}


def correction_json():
    out = {}
    for tag, (vr, text) in NEW.items():
        value = {"Alphabetic": text} if vr == "PN" else text
        out[tag] = {"vr": vr, "Value": [value]}
    return out


def corrected_agree(study, present):
    """Every instance of `study` left has the new values and the rest of its file; search,
    metadata and the feed say so; other studies keep their names."""
    members = {sop for sop in present if sops[sop]["study"] == study}
    for sop in sorted(members):
        s = sops[sop]
        got = client.retrieve_instance(study, s["series"], sop, media_types=(("application/dicom", "*"),))
        want = pydicom.dcmread(s["file"])
        check(f"{sop} PatientName", str(got.get("PatientName", "")), NEW["00100010"][1])
        check(f"{sop} PatientID", got.get("PatientID"), NEW["00100020"][1])
        check(f"{sop} AccessionNumber", got.get("AccessionNumber"), NEW["00080050"][1])
        check(f"{sop} StudyDescription", got.get("StudyDescription"), NEW["00081030"][1])
        others = lambda d: [(e.tag, e.VR, e.value) for e in d if e.tag not in CHANGED]
        check(f"{sop} every other element as in the file", others(got) == others(want), True)
        check(f"{sop} transfer syntax", got.file_meta.TransferSyntaxUID, want.file_meta.TransferSyntaxUID)
    found = client.search_for_studies(search_filters={"PatientID": NEW["00100020"][1]})
    check("search by the new Patient ID", values(found, "0020000D"), {study} if members else set())
    if members:
        check("study row name", found[0]["00100010"]["Value"][0]["Alphabetic"], NEW["00100010"][1])
        check("study row accession", found[0]["00080050"]["Value"][0], NEW["00080050"][1])
        meta = client.retrieve_study_metadata(study)
        check("study metadata names", {m["00100010"]["Value"][0]["Alphabetic"] for m in meta},
              {NEW["00100010"][1]})
    for other in {s["study"] for s in sops.values()} - {study}:
        left = [sop for sop in present if sops[sop]["study"] == other]
        if not left:
            continue
        name = pydicom.dcmread(sops[left[0]]["file"], stop_before_pixels=True).get("PatientName")
        # Its alphabetic group, as the search answers it (trailing empty components dropped).
        want = str(name or "").split("=")[0].rstrip("^")
        got = client.search_for_studies(search_filters={"StudyInstanceUID": other})
        got_name = got[0].get("00100010", {}).get("Value", [{}])[0].get("Alphabetic", "") if got else None
        check(f"study {other} keeps its name", got_name, want)
    corrects = [r["SOPInstanceUID"] for r in feed() if r["Action"] == "correct"]
    check("feed: corrects", sorted(corrects), sorted(members))


def versions_agree(study, present):
    """Each corrected instance keeps its version before the correction: listed after the
    current one, served as stored, pydicom reading every element of the file as it was."""
    import io
    for sop in sorted(sop for sop in present if sops[sop]["study"] == study):
        s = sops[sop]
        url = f"{root}/studies/{study}/series/{s['series']}/instances/{sop}/versions"
        r = client._session.get(url)
        check(f"{sop} versions", r.status_code, 200)
        if r.status_code != 200:
            continue
        listed = r.json()
        check(f"{sop} version states", [v["State"] for v in listed], ["current", "retired"])
        if len(listed) != 2:
            continue
        one = client._session.get(f"{url}/{listed[1]['Version']}", headers={"Accept": "application/dicom"})
        check(f"{sop} previous version", one.status_code, 200)
        if one.status_code != 200:
            continue
        got = pydicom.dcmread(io.BytesIO(one.content))
        want = pydicom.dcmread(s["file"])
        every = lambda d: [(e.tag, e.VR, e.value) for e in d]
        check(f"{sop} previous version is the file as it was", every(got) == every(want), True)
        check(f"{sop} previous name", str(got.get("PatientName", "")), str(want.get("PatientName", "")))


if mode == "store":
    for sop, s in sops.items():
        client.store_instances([pydicom.dcmread(s["file"])])
    agree(set(sops), [], set())
elif mode == "delete":
    studies = tree(sops)
    # An instance of a series that keeps others, in a study of several series if there is one.
    inst_study, inst_series = max(((st, se) for st, ses in studies.items() for se, m in ses.items()
                                   if len(m) >= 2), key=lambda k: (len(studies[k[0]]), k))
    one = sorted(studies[inst_study][inst_series])[0]
    # A series of a study that keeps others (not the study above).
    ser_study = max((st for st in studies if st != inst_study and len(studies[st]) >= 2),
                    key=lambda st: (len(studies[st]), st))
    series = sorted(studies[ser_study])[0]
    # A whole study of several instances (neither above).
    whole = max((st for st in studies if st not in (inst_study, ser_study)),
                key=lambda st: (sum(len(m) for m in studies[st].values()), st))
    touched = {inst_study, ser_study, whole}
    present, deleted = set(sops), []

    # Without the token: refused, nothing changes.
    anonymous = requests.delete(f"{root}/studies/{whole}")
    check("anonymous delete", anonymous.status_code in (401, 403), True)
    agree(present, deleted, touched)

    client.delete_instance(inst_study, inst_series, one)
    present.discard(one)
    deleted.append(one)
    agree(present, deleted, touched)

    client.delete_series(ser_study, series)
    gone = studies[ser_study][series]
    present -= gone
    deleted += sorted(gone)
    agree(present, deleted, touched)

    client.delete_study(whole)
    gone = set().union(*studies[whole].values())
    present -= gone
    deleted += sorted(gone)
    agree(present, deleted, touched)

    # What is gone cannot be deleted again: 404, and the feed says nothing more.
    check("delete again", status_of(lambda: client.delete_study(whole)), 404)
    check("delete one again", status_of(lambda: client.delete_instance(inst_study, inst_series, one)), 404)
    agree(present, deleted, touched)
    state_file.write_text(json.dumps({"deleted": deleted, "touched": sorted(touched)}))
elif mode == "correct":
    state = json.loads(state_file.read_text())
    present = set(sops) - set(state["deleted"])
    studies = tree(present)
    # The study left with the most instances.
    study = max(studies, key=lambda st: (sum(len(m) for m in studies[st].values()), st))
    url = f"{root}/studies/{study}"
    body = json.dumps(correction_json())
    anonymous = requests.patch(url, data=body, headers={"Content-Type": "application/dicom+json"})
    check("anonymous correction", anonymous.status_code in (401, 403), True)
    check("no correction yet", [r for r in feed() if r["Action"] == "correct"], [])
    bad = client._session.patch(url, data=json.dumps({"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}),
                                headers={"Content-Type": "application/dicom+json"})
    check("a UID is not corrected", bad.status_code, 400)
    r = client._session.patch(url, data=body, headers={"Content-Type": "application/dicom+json"})
    check("correction", r.status_code, 204)
    agree(present, state["deleted"], set(state["touched"]) | {study})
    corrected_agree(study, present)
    versions_agree(study, present)
    state["corrected"] = study
    state_file.write_text(json.dumps(state))
elif mode == "check":
    state = json.loads(state_file.read_text())
    present = set(sops) - set(state["deleted"])
    agree(present, state["deleted"], set(state["touched"]))
    if "corrected" in state:
        corrected_agree(state["corrected"], present)
else:
    sys.exit(f"unknown mode {mode}")

if errors:
    print("\n".join(errors))
    sys.exit(1)
