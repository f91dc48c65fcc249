"""A DIMSE peer made with pynetdicom (an independent implementation of PS3.7/PS3.8) against
wado serve --dimse-port. Prints one JSON object of what it saw; the Rust test asserts.

usage: pynetdicom_peer.py HOST PORT CALLED_AE FILE...
"""
import io
import json
import sys
import time

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts
from pynetdicom.dimse_primitives import C_CANCEL, C_FIND
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

host, port, called = sys.argv[1], int(sys.argv[2]), sys.argv[3]
files = sys.argv[4:]
out = {"stored": [], "found": [], "mismatches": []}

ae = AE(ae_title="PYNET")
ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
ae.add_requested_context(Verification)
ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
# Storage contexts of the classes sent, each in its file's own transfer syntax.
datasets = [dcmread(f) for f in files]
for ds in datasets:
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)

assoc = ae.associate(host, port, ae_title=called)
assert assoc.is_established, "association rejected"
out["echo"] = int(assoc.send_c_echo().Status)

for f, ds in zip(files, datasets):
    st = assoc.send_c_store(ds)
    out["stored"].append([f, int(st.Status) if "Status" in st else None])


def find(level, keys, model=StudyRootQueryRetrieveInformationModelFind):
    q = Dataset()
    q.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(q, k, v)
    matches, final = [], None
    for status, ident in assoc.send_c_find(q, model):
        if status.Status in (0xFF00, 0xFF01):
            matches.append(ident)
        else:
            final = int(status.Status)
    return matches, final


# Each stored file found by its UIDs with what pydicom reads in the file itself.
for f, ds in zip(files, datasets):
    m, final = find("IMAGE", {
        "StudyInstanceUID": ds.StudyInstanceUID,
        "SeriesInstanceUID": ds.SeriesInstanceUID,
        "SOPInstanceUID": ds.SOPInstanceUID,
        "SOPClassUID": "",
        "PatientID": "",
        "Modality": "",
    })
    out["found"].append([f, len(m), final])
    for ident in m:
        for k in ("SOPClassUID", "PatientID", "Modality"):
            want = str(ds.get(k, "")).strip()
            got = str(ident.get(k, "")).strip()
            if want != got:
                out["mismatches"].append([f, k, want, got])
    studies, final = find("STUDY", {"StudyInstanceUID": ds.StudyInstanceUID, "PatientName": "", "StudyDate": ""})
    for ident in studies:
        for k in ("PatientName", "StudyDate"):
            want = str(ds.get(k, "")).strip()
            got = str(ident.get(k, "")).strip()
            if want != got:
                out["mismatches"].append([f, "study " + k, want, got])
    if str(ds.get("PatientID", "")).strip():
        patients, final = find("PATIENT", {"PatientID": ds.PatientID, "PatientName": ""},
                               PatientRootQueryRetrieveInformationModelFind)
        out.setdefault("patients", []).append([f, len(patients), final])
        for ident in patients:
            if str(ident.get("PatientName", "")).strip() != str(ds.get("PatientName", "")).strip():
                out["mismatches"].append([f, "patient name", str(ds.PatientName), str(ident.PatientName)])

# A C-FIND cancelled as soon as it is sent: the final status says Cancel, and fewer matches
# than there are came before it.
q = Dataset()
q.QueryRetrieveLevel = "IMAGE"
q.SOPInstanceUID = ""
cx = next(c for c in assoc.accepted_contexts
          if c.abstract_syntax == StudyRootQueryRetrieveInformationModelFind)
implicit = cx.transfer_syntax[0] == "1.2.840.10008.1.2"
req = C_FIND()
req.MessageID = 4242
req.AffectedSOPClassUID = StudyRootQueryRetrieveInformationModelFind
req.Priority = 2
req.Identifier = io.BytesIO(encode(q, implicit, True))
# Pause the association's reactor (as pynetdicom's own send_*() do), or it takes the
# responses off the queue first.
assoc._reactor_checkpoint.clear()
while not assoc._is_paused:
    time.sleep(0.0001)
assoc.dimse.send_msg(req, cx.context_id)
cancel = C_CANCEL()
cancel.MessageIDBeingRespondedTo = 4242
assoc.dimse.send_msg(cancel, cx.context_id)
pending, final = 0, None
while final is None:
    _, rsp = assoc.dimse.get_msg(block=True)
    if rsp is None:
        break
    if rsp.Status in (0xFF00, 0xFF01):
        pending += 1
    else:
        final = int(rsp.Status)
assoc._reactor_checkpoint.set()
out["cancel"] = [pending, final]
# The association goes on after it.
out["echo_after"] = int(assoc.send_c_echo().Status)
assoc.release()
print(json.dumps(out))
