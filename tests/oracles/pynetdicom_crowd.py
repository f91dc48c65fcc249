"""Many DICOM peers at once (pynetdicom, an independent implementation of PS3.8): N
associations are opened together and held (a barrier waits until every one is established),
then each stores one instance of its own, made by pydicom from TEMPLATE with a new SOP Instance
UID in study STUDY_UID, and releases; every tenth aborts instead, before storing anything.
Prints one JSON object: {"stored": [[sop, status], ...], "aborted": [sop, ...],
"refused": n}. The Rust test asserts.

usage: pynetdicom_crowd.py HOST PORT CALLED_AE N TEMPLATE STUDY_UID
"""
import copy
import json
import sys
import threading

from pydicom import dcmread
from pynetdicom import AE

host, port, called = sys.argv[1], int(sys.argv[2]), sys.argv[3]
n, template, study = int(sys.argv[4]), sys.argv[5], sys.argv[6]
base = dcmread(template)
out = {"stored": [], "aborted": [], "refused": 0}
lock = threading.Lock()
barrier = threading.Barrier(n, timeout=60)


def peer(i):
    ds = copy.deepcopy(base)
    sop = f"{study}.1.{i}"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = f"{study}.1"
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ae = AE(ae_title="PYNET")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(host, port, ae_title=called)
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    if not assoc.is_established:
        with lock:
            out["refused"] += 1
        return
    if i % 10 == 9:
        assoc.abort()
        with lock:
            out["aborted"].append(sop)
        return
    st = assoc.send_c_store(ds)
    status = int(st.Status) if "Status" in st else None
    assoc.release()
    with lock:
        out["stored"].append([sop, status])


threads = [threading.Thread(target=peer, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(out))
