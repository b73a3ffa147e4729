"""API_TLS=self-signed: a certificate made at start, for the hop from a load
balancer to the task. An ALB does not verify its targets' certificates, so a
throwaway one encrypts that hop without a certificate to issue, store or
renew; clients never see it (they reach API Gateway or the ALB, with ACM's)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 365


@dataclass(frozen=True)
class CertificateFiles:
    cert: str
    key: str

    def remove(self) -> None:
        for path in (self.cert, self.key):
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
        os.rmdir(os.path.dirname(self.key))


def self_signed_files(directory: str | None = None) -> CertificateFiles:
    """A fresh P-256 key and a certificate for this host, written to two
    files only this user can read (uvicorn takes paths)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, socket.gethostname()[:64] or "retail-api")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tempfile.mkdtemp(prefix="retail-api-tls-", dir=directory)  # mode 0700
    files = CertificateFiles(os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem"))
    with open(files.cert, "wb") as out:
        out.write(certificate.public_bytes(serialization.Encoding.PEM))
    descriptor = os.open(files.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return files
