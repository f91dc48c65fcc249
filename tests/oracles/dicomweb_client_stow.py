"""STOW-RS through the Python dicomweb-client (unmodified): store_instances() sends the files,
then each must be searchable (search_for_instances) and retrievable as stored
(retrieve_instance with transfer-syntax=*), equal to what pydicom reads from the file. Then the
failure classes a client sees: an instance of another study than the URL's (202, Failure Reason
0xA900 beside the stored one; 409 when it is alone). Prints each difference and exits 1, or
prints nothing and exits 0.

    python dicomweb_client_stow.py SERVICE_ROOT FILE...
"""
import copy
import sys

import pydicom
from dicomweb_client.api import DICOMwebClient
from requests.exceptions import HTTPError

root, paths = sys.argv[1], sys.argv[2:]
client = DICOMwebClient(url=root)
errors = []
datasets = [pydicom.dcmread(p) for p in paths]


def seq_uids(response, tag):
    return [str(i.ReferencedSOPInstanceUID) for i in response.get(tag, pydicom.Sequence()).value] \
        if tag in response else []


# In requests of 10, as a client sends a study in pieces.
for i in range(0, len(datasets), 10):
    batch = datasets[i:i + 10]
    response = client.store_instances(batch)
    stored = seq_uids(response, 0x00081199)
    want = [str(d.SOPInstanceUID) for d in batch]
    if stored != want:
        errors.append(f"batch {i // 10}: stored {stored}, sent {want}")
    if 0x00081198 in response:
        errors.append(f"batch {i // 10}: failed {seq_uids(response, 0x00081198)}")

for path, d in zip(paths, datasets):
    sop = str(d.SOPInstanceUID)
    found = client.search_for_instances(search_filters={"SOPInstanceUID": sop})
    if len(found) != 1:
        errors.append(f"{path}: search found {len(found)}")
        continue
    if found[0]["0020000D"]["Value"][0] != d.StudyInstanceUID:
        errors.append(f"{path}: search names study {found[0]['0020000D']}")
    got = client.retrieve_instance(d.StudyInstanceUID, d.SeriesInstanceUID, sop,
                                   media_types=(("application/dicom", "*"),))
    # Group lengths (gggg,0000) are left out: the client re-encodes the files it sends, and
    # pydicom writes no group lengths (PS3.5 §7.2 retired them in data sets).
    def elements(ds):
        return {e.tag: e for e in ds if e.tag.element != 0}
    ours, theirs = elements(got), elements(d)
    if ours != theirs:
        diff = [str(t) for t in set(ours) | set(theirs) if ours.get(t) != theirs.get(t)]
        errors.append(f"{path}: retrieved data set differs in {sorted(diff)[:5]}")
    if got.file_meta.TransferSyntaxUID != d.file_meta.TransferSyntaxUID:
        errors.append(f"{path}: stored as {got.file_meta.TransferSyntaxUID}")

# An instance of another study beside one of the URL's study: 202, A900 for the other.
first, second = datasets[0], copy.deepcopy(datasets[1])
second.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.99999"
second.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.99998"
second.file_meta.MediaStorageSOPInstanceUID = second.SOPInstanceUID
response = client.store_instances([first, second], study_instance_uid=first.StudyInstanceUID)
if seq_uids(response, 0x00081199) != [str(first.SOPInstanceUID)]:
    errors.append(f"mixed: stored {seq_uids(response, 0x00081199)}")
failed = response.get(0x00081198)
if failed is None or [int(i.FailureReason) for i in failed.value] != [0xA900] \
        or str(failed.value[0].ReferencedSOPInstanceUID) != second.SOPInstanceUID:
    errors.append(f"mixed: failed {failed}")
# Alone: nothing stored, 409, which the client raises.
try:
    client.store_instances([second], study_instance_uid=first.StudyInstanceUID)
    errors.append("a request storing nothing did not fail")
except HTTPError as e:
    if e.response.status_code != 409:
        errors.append(f"a request storing nothing answered {e.response.status_code}")
if client.search_for_instances(search_filters={"SOPInstanceUID": second.SOPInstanceUID}):
    errors.append("the refused instance is searchable")

for e in errors:
    print(e)
sys.exit(1 if errors else 0)
