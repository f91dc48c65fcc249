"""A storage SCP (pynetdicom) that writes each PDU's 6-byte header and its body in two send()
calls with Nagle's algorithm on, as DCMTK's storescp does: the body is held until the header is
acknowledged. The C-MOVE destination of scripts/bench-move-acks.sh, where a receiver that delays
its ACKs stalls ~40 ms a response.

    split_writes_scp.py PORT        (AE title DEST; accepts every storage class, stores nothing)
"""
import socket
import sys

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import AssociationSocket


def split_send(self, bytestream):
    s = self.socket
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    s.sendall(bytestream[:6])
    s.sendall(bytestream[6:])


AssociationSocket.send = split_send

ae = AE(ae_title="DEST")
ae.supported_contexts = AllStoragePresentationContexts
ae.add_supported_context(Verification)
ae.maximum_pdu_size = 16384
ae.start_server(("127.0.0.1", int(sys.argv[1])), block=True,
                evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)])
