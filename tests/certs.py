"""Certificates made for a test: a CA, and server and client certificates it signs (cryptography)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from katib_services.services.tls import ClientTls, ServerTls


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass
class Authority:
    """A CA in `directory`: `ca` is its certificate's path; `issue` writes a signed pair."""

    directory: Path
    label: str = "test-ca"

    def __post_init__(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(self.label))
            .issuer_name(_name(self.label))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.ca = str(self._write(f"{self.label}.pem", self.certificate.public_bytes(serialization.Encoding.PEM)))

    def _write(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        return path

    def issue(self, name: str, server: bool) -> tuple[str, str]:
        """(certificate path, key path) for a server of localhost/127.0.0.1, or for a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return (
            str(self._write(f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))),
            str(self._write(f"{name}.key", _key_pem(key))),
        )

    def server_tls(self, mutual: bool = False) -> ServerTls:
        cert, key = self.issue("server", server=True)
        return ServerTls(cert, key, self.ca if mutual else None)

    def client_tls(self, with_certificate: bool = False, trust: str | None = None, flag: str = "--tls") -> ClientTls:
        cert, key = self.issue("client", server=False) if with_certificate else (None, None)
        return ClientTls(trust or self.ca, cert, key, flag=flag)
