"""Keypair crypto as Nova does it: fingerprints of imported keys, generated pairs.

ssh: the key must parse as an OpenSSH public key; its fingerprint is the MD5 of the key blob in
colon-separated hex. x509: a PEM certificate; its fingerprint is the SHA-1 of the certificate.
Generated ssh pairs are RSA 2048 (private key in PEM), generated x509 pairs a self-signed
certificate for the user (as Nova's WinRM certificates).
"""

from __future__ import annotations

import base64
import datetime
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cloud.api.errors import ApiError


def _colons(hexdigest: str) -> str:
    return ":".join(hexdigest[i : i + 2] for i in range(0, len(hexdigest), 2))


def invalid_keypair(reason: str) -> ApiError:
    return ApiError(400, f"Keypair data is invalid: {reason}")


def fingerprint(public_key: str, key_type: str) -> str:
    """Nova's fingerprint of an imported key; 400 when the key does not parse."""
    data = public_key.encode("utf-8", errors="replace")
    if key_type == "x509":
        try:
            cert = x509.load_pem_x509_certificate(data)
        except Exception:  # ValueError and friends: not a PEM certificate
            raise invalid_keypair("failed to generate X509 fingerprint") from None
        return _colons(cert.fingerprint(hashes.SHA1()).hex())
    try:
        serialization.load_ssh_public_key(data)
        blob = base64.b64decode(public_key.split()[1], validate=True)
    except Exception:  # ValueError, binascii.Error, IndexError, UnsupportedAlgorithm, ...
        raise invalid_keypair("failed to generate fingerprint") from None
    return _colons(hashlib.md5(blob, usedforsecurity=False).hexdigest())


def generate(key_type: str, user_id: str) -> tuple[str, str, str]:
    """A new pair: (private key PEM, public key, fingerprint)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    if key_type == "x509":
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user_id or "nova")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256())
        )
        public = cert.public_bytes(serialization.Encoding.PEM).decode()
        return private, public, fingerprint(public, "x509")
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
        + " Generated-by-Nova"
    )
    return private, public, fingerprint(public, "ssh")
