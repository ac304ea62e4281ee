"""TLS for the servers and for the clients they (and katib-local) open: PEM files in, gRPC
credentials out. Plaintext stays the default, as Katib expects.

Server: `--tls-cert` and `--tls-key` serve TLS; `--tls-client-ca` also requires every client to
present a certificate signed by that CA (mutual TLS). Health and reflection share the port, and
so the credentials.

Client: `--NAME-tls-ca` trusts that CA for the server called NAME (TLS); `--NAME-tls-cert` and
`--NAME-tls-key` present a client certificate (mutual TLS). The files are read once, at start.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc


def _read(path: str | None, flag: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"{flag} {path}: {error.strerror or error}") from None


@dataclass(frozen=True)
class ServerTls:
    cert: str
    key: str
    client_ca: str | None = None  # set: mutual TLS, a client certificate signed by this CA is required

    @functools.cached_property
    def credentials(self) -> grpc.ServerCredentials:
        """Read on first use; `checked` makes that the start, so that a bad path is a usage error."""
        pair = (_read(self.key, "--tls-key"), _read(self.cert, "--tls-cert"))
        ca = _read(self.client_ca, "--tls-client-ca")
        return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


@dataclass(frozen=True)
class ClientTls:
    ca: str | None = None  # None: the system's trusted roots
    cert: str | None = None
    key: str | None = None
    flag: str = "--tls"  # the flags' prefix, for messages

    @functools.cached_property
    def credentials(self) -> grpc.ChannelCredentials:
        """Read on first use (see `checked`), then shared by every channel."""
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, f"{self.flag}-ca"),
            private_key=_read(self.key, f"{self.flag}-key"),
            certificate_chain=_read(self.cert, f"{self.flag}-cert"),
        )

    def argv(self) -> list[str]:
        """The same settings as command-line flags (for a child process)."""
        return [arg for kind in ("ca", "cert", "key") if getattr(self, kind) for arg in (f"{self.flag}-{kind}", getattr(self, kind))]


def channel(address: str, tls: ClientTls | None = None, options: Sequence[tuple[str, object]] = ()) -> grpc.Channel:
    """A channel to `address`: TLS with `tls`, plaintext without."""
    if tls is None:
        return grpc.insecure_channel(address, options=list(options))
    return grpc.secure_channel(address, tls.credentials, options=list(options))


def add_server_tls_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS (default: plaintext)")
    group.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate chain (needs --tls-key)")
    group.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    group.add_argument("--tls-client-ca", metavar="PEM", help="mutual TLS: require client certificates signed by this CA")


def server_tls(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ServerTls | None:
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    return checked(parser, ServerTls(args.tls_cert, args.tls_key, args.tls_client_ca)) if args.tls_cert else None


def add_client_tls_arguments(parser: argparse.ArgumentParser, name: str, what: str) -> None:
    """--NAME-tls-ca, --NAME-tls-cert, --NAME-tls-key: how to reach `what` over TLS."""
    group = parser.add_argument_group(f"TLS to {what} (default: plaintext)")
    group.add_argument(f"--{name}-tls-ca", metavar="PEM", help=f"reach {what} over TLS, trusting this CA")
    group.add_argument(f"--{name}-tls-cert", metavar="PEM", help="mutual TLS: the client certificate chain presented (needs the key)")
    group.add_argument(f"--{name}-tls-key", metavar="PEM", help="the private key of the client certificate")


def client_tls(parser: argparse.ArgumentParser, args: argparse.Namespace, name: str) -> ClientTls | None:
    attr = name.replace("-", "_")
    ca, cert, key = (getattr(args, f"{attr}_tls_{kind}") for kind in ("ca", "cert", "key"))
    if bool(cert) != bool(key):
        parser.error(f"--{name}-tls-cert and --{name}-tls-key go together")
    if not (ca or cert):
        return None
    return checked(parser, ClientTls(ca, cert, key, flag=f"--{name}-tls"))


def checked(parser: argparse.ArgumentParser, tls):
    """`tls` with its files read now: an unreadable one is a usage error at start, not a failed call."""
    try:
        tls.credentials
    except ValueError as error:
        parser.error(str(error))
    return tls
