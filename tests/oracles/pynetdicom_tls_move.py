"""C-MOVE over DICOM TLS with pynetdicom (Python's ssl, OpenSSL): associates with wado's TLS
listener presenting a client certificate, moves a study to DESTINATION, and prints the final
status and sub-operation counts as JSON; the Rust test asserts.

usage: pynetdicom_tls_move.py HOST PORT CALLED_AE DESTINATION STUDY_UID CA CERT KEY
"""
import json
import ssl
import sys

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

host, port, called, dest, study, ca, cert, key = sys.argv[1:9]
ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
ctx.load_cert_chain(cert, key)
ae = AE(ae_title="MOVESCU")
ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
assoc = ae.associate(host, int(port), ae_title=called, tls_args=(ctx, host))
if not assoc.is_established:
    print(json.dumps({"established": False}))
    sys.exit(0)
ds = Dataset()
ds.QueryRetrieveLevel = "STUDY"
ds.StudyInstanceUID = study
last = {}
for status, _ in assoc.send_c_move(ds, dest, StudyRootQueryRetrieveInformationModelMove):
    if status:
        last = {
            "status": int(status.Status),
            "completed": int(status.get("NumberOfCompletedSuboperations", 0)),
            "failed": int(status.get("NumberOfFailedSuboperations", 0)),
        }
assoc.release()
print(json.dumps({"established": True, **last}))
