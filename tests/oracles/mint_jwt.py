"""Signs a JWT (ES256) with OpenSSL and Python's standard library, never with wado: the
end-to-end tests mint tokens with the claims they need (a write scope) at run time.

    python3 mint_jwt.py EC_PRIVATE_KEY.pem '{"iss": ..., "aud": ..., "exp": ..., ...}' [KID]
"""
import base64
import json
import subprocess
import sys


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def der_to_raw(der):
    # ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (short-form lengths for P-256).
    assert der[0] == 0x30
    i, out = 2, b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        out += der[i + 2:i + 2 + n].lstrip(b"\0").rjust(32, b"\0")
        i += 2 + n
    return out


key, claims = sys.argv[1], json.loads(sys.argv[2])
header = {"alg": "ES256", "typ": "JWT"}
if len(sys.argv) > 3:
    header["kid"] = sys.argv[3]
head = b64(json.dumps(header, separators=(",", ":")).encode())
body = b64(json.dumps(claims, separators=(",", ":")).encode())
msg = f"{head}.{body}".encode()
der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=msg,
                     capture_output=True, check=True).stdout
print(f"{head}.{body}.{b64(der_to_raw(der))}")
