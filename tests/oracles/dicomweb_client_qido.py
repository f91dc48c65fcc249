"""QIDO-RS through the Python dicomweb-client (unmodified), checked against pydicom reading the
files themselves. Prints nothing and exits 0 when every search answers what the files say;
otherwise prints each difference and exits 1.

    python dicomweb_client_qido.py SERVICE_ROOT CORPUS_DIR
"""
import sys
from pathlib import Path

import pydicom
from dicomweb_client.api import DICOMwebClient

root, corpus = sys.argv[1], Path(sys.argv[2])
files = []
for f in sorted(corpus.glob("*.dcm")):
    d = pydicom.dcmread(f, stop_before_pixels=True)
    files.append({
        "study": d.StudyInstanceUID, "series": d.SeriesInstanceUID, "sop": d.SOPInstanceUID,
        "name": str(d.get("PatientName", "")), "id": str(d.get("PatientID", "")),
        "date": str(d.get("StudyDate", "")).replace(".", ""), "modality": str(d.get("Modality", "")),
    })

client = DICOMwebClient(url=root)
errors = []


def uids(results, tag):
    return {r[tag]["Value"][0] for r in results}


def check(what, got, want):
    if got != want:
        errors.append(f"{what}: got {sorted(got)}, want {sorted(want)}")


# Every study, paged by the client itself (get_remaining follows offset).
check("all studies", uids(client.search_for_studies(limit=3, get_remaining=True), "0020000D"),
      {f["study"] for f in files})
# Person name wildcard, without regard to case (as the server documents).
check("PatientName=*doe*",
      uids(client.search_for_studies(search_filters={"PatientName": "*doe*"}), "0020000D"),
      {f["study"] for f in files if "doe" in f["name"].lower()})
check("PatientID", uids(client.search_for_studies(search_filters={"PatientID": "77654033"}), "0020000D"),
      {f["study"] for f in files if f["id"] == "77654033"})
check("StudyDate range",
      uids(client.search_for_studies(search_filters={"StudyDate": "19950101-20041231"}), "0020000D"),
      {f["study"] for f in files if f["date"] and "19950101" <= f["date"] <= "20041231"})
check("ModalitiesInStudy=MR",
      uids(client.search_for_studies(search_filters={"ModalitiesInStudy": "MR"}), "0020000D"),
      {f["study"] for f in files if any(g["study"] == f["study"] and g["modality"] == "MR" for g in files)})
# Counts of one study, series and instances within it.
study = next(f["study"] for f in files if f["id"] == "77654033")
found = client.search_for_studies(search_filters={"StudyInstanceUID": study})
in_study = [f for f in files if f["study"] == study]
if len(found) != 1:
    errors.append(f"study {study}: {len(found)} results")
else:
    for tag, want in (("00201208", len(in_study)), ("00201206", len({f["series"] for f in in_study}))):
        got = int(found[0][tag]["Value"][0])
        if got != want:
            errors.append(f"study {study} {tag}: {got}, want {want}")
check("series of the study", uids(client.search_for_series(study), "0020000E"),
      {f["series"] for f in in_study})
series = in_study[0]["series"]
check("instances of a series", uids(client.search_for_instances(study, series), "00080018"),
      {f["sop"] for f in in_study if f["series"] == series})
check("all instances of MR series",
      uids(client.search_for_instances(search_filters={"Modality": "MR"}, get_remaining=True, limit=4), "00080018"),
      {f["sop"] for f in files if f["modality"] == "MR"})
# includefield: what is asked for comes back.
r = client.search_for_series(study, fields=["SeriesDescription", "00080021"])
if not all("0008103E" in s for s in r):
    errors.append("includefield SeriesDescription missing")
# The Retrieve URL of a search result retrieves: the client follows it for metadata.
meta = client.retrieve_study_metadata(study)
check("metadata of the found study", {m["00080018"]["Value"][0] for m in meta}, {f["sop"] for f in in_study})

for e in errors:
    print(e)
sys.exit(1 if errors else 0)
