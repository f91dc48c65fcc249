"""An OpenID Connect issuer on loopback, for the tests: its discovery document and its JWK Set,
made from the EC P-256 public keys in a directory (`KID.pub.pem`, read on every request, so a
test rotates keys by adding or removing files). Keys are turned into JWKs with OpenSSL and
Python's standard library, never with wado. Counts the key-set requests (`/count`).

    python3 oidc_issuer.py KEYS_DIR      (prints the issuer URL, then serves until killed)
"""
import base64
import http.server
import json
import pathlib
import subprocess
import sys
import threading

keys_dir = pathlib.Path(sys.argv[1])
count = 0
lock = threading.Lock()


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwk(pem, kid):
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pem), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    point = der[-65:]  # SubjectPublicKeyInfo of P-256 ends with the uncompressed point
    assert point[0] == 4
    return {"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": b64(point[1:33]), "y": b64(point[33:])}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, body, cache=None):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if cache:
            self.send_header("Cache-Control", cache)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        global count
        if self.path == "/realms/test/.well-known/openid-configuration":
            self.answer({"issuer": issuer, "jwks_uri": issuer + "/protocol/openid-connect/certs",
                         "id_token_signing_alg_values_supported": ["ES256"]})
        elif self.path == "/realms/test/protocol/openid-connect/certs":
            with lock:
                count += 1
            keys = [jwk(p, p.name[: -len(".pub.pem")]) for p in sorted(keys_dir.glob("*.pub.pem"))]
            self.answer({"keys": keys}, "public, max-age=300")
        elif self.path == "/count":
            self.answer({"certs": count})
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
issuer = f"http://127.0.0.1:{server.server_address[1]}/realms/test"
print(issuer, flush=True)
server.serve_forever()
