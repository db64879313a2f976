"""IoT Hub credentials for the authentication tests: SAS tokens made the way
the Azure SDKs make them (PROTOCOL.md §1.2), the IoT Hub username, and X.509
certificates generated with the openssl command line at test time."""

import base64
import hashlib
import hmac
import subprocess
import time
import urllib.parse
from pathlib import Path

API = "api-version=2021-04-12"


def new_key():
    """A random 32-byte key, base64, as IoT Hub generates them."""
    import os

    return base64.b64encode(os.urandom(32)).decode()


def sas_token(resource, key, *, ttl=3600, expiry=None, policy=None):
    """SharedAccessSignature sr=…&sig=…&se=…[&skn=…], signed over the
    URL-encoded resource, as azure-iot-common does."""
    sr = urllib.parse.quote(resource, safe="")
    se = str(expiry if expiry is not None else int(time.time()) + ttl)
    digest = hmac.new(base64.b64decode(key), f"{sr}\n{se}".encode(), hashlib.sha256).digest()
    sig = urllib.parse.quote(base64.b64encode(digest).decode(), safe="")
    token = f"SharedAccessSignature sr={sr}&sig={sig}&se={se}"
    return token + (f"&skn={urllib.parse.quote(policy, safe='')}" if policy else "")


def device_username(host, device_id):
    return f"{host}/{device_id}/?{API}"


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class Certs:
    """A test PKI in directory d: a CA, the broker's server certificate for
    localhost, and device certificates on demand."""

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = self._self_signed("ca", "mosquitto-twin test CA", ca=True)
        self.server_cert, self.server_key = self.issue(
            "server", "localhost", san="DNS:localhost,IP:127.0.0.1"
        )

    def _key(self, name):
        key = self.dir / f"{name}.key"
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", key.name, cwd=self.dir)
        return key

    def _self_signed(self, name, cn, ca=False):
        key = self._key(name)
        cert = self.dir / f"{name}.crt"
        ext = ["-addext", "basicConstraints=critical,CA:TRUE"] if ca else []
        _openssl("req", "-x509", "-new", "-key", key.name, "-subj", f"/CN={cn}", "-days", "2",
                 "-out", cert.name, *ext, cwd=self.dir)
        return cert

    def self_signed(self, name, cn):
        """A self-signed device certificate: (cert, key)."""
        return self._self_signed(name, cn), self.dir / f"{name}.key"

    def issue(self, name, cn, san=None):
        """A certificate for cn signed by the CA: (cert, key)."""
        key = self._key(name)
        csr, cert = self.dir / f"{name}.csr", self.dir / f"{name}.crt"
        _openssl("req", "-new", "-key", key.name, "-subj", f"/CN={cn}", "-out", csr.name,
                 cwd=self.dir)
        ext = []
        if san:
            (self.dir / f"{name}.ext").write_text(f"subjectAltName={san}\n")
            ext = ["-extfile", f"{name}.ext"]
        _openssl("x509", "-req", "-in", csr.name, "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-out", cert.name, *ext, cwd=self.dir)
        return cert, key

    @staticmethod
    def thumbprint(cert, digest="sha1"):
        """Hex digest of the certificate's DER, as IoT Hub shows it."""
        der = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        return hashlib.new(digest, der).hexdigest().upper()

    def bundle(self, *certs):
        """A cafile trusting the CA and the given (self-signed) certificates."""
        path = self.dir / "trusted.pem"
        path.write_text("".join(Path(c).read_text() for c in (self.ca, *certs)))
        return path
