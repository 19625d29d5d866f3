"""TLS between gateways and workers.

Workers on GPU hosts are reached over the network, and what crosses it is
the worker token, users' text and their voices' prompt audio: on any network
the operator does not fully trust, it must be encrypted. A worker given a
certificate and key (``VOXGATE_WORKER_TLS_CERT`` / ``_KEY``) serves
``https://`` and registers that URL; a gateway verifies the worker's
certificate against ``VOXGATE_WORKER_TLS_CA`` (or the engine's ``tls_ca``
option), else against the system's trust store. Verification is never turned
off: a self-signed worker certificate is trusted by naming it as the CA.

Supervised children (``isolate``) talk over a private Unix socket and never
use TLS, even when they inherit these settings from the gateway.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voxgate.config import Settings


class TlsSetupError(ValueError):
    """The TLS settings cannot work; the message says which file and why."""


def server_files(settings: Settings) -> tuple[Path, Path] | None:
    """The worker's (certificate, key), or ``None`` to serve plain HTTP.
    Both or neither must be set, and both must be readable files: a worker
    that silently fell back to plain HTTP would send tokens in the clear."""
    cert, key = settings.worker_tls_cert, settings.worker_tls_key
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        given, missing = ("CERT", "KEY") if key is None else ("KEY", "CERT")
        raise TlsSetupError(
            f"VOXGATE_WORKER_TLS_{given} is set but VOXGATE_WORKER_TLS_{missing} is not; "
            "a worker serving TLS needs both its certificate and its private key"
        )
    for what, path in (("certificate", cert), ("key", key)):
        if not path.expanduser().is_file():
            raise TlsSetupError(f"worker TLS {what} {path} is not a readable file")
    return cert.expanduser(), key.expanduser()


def client_context(ca: Path | None) -> ssl.SSLContext:
    """The context a gateway verifies workers with: hostname and chain checked,
    against ``ca`` when given (a bundle or a self-signed certificate)."""
    if ca is not None and not ca.expanduser().is_file():
        raise TlsSetupError(f"worker TLS CA {ca} is not a readable file")
    context = ssl.create_default_context(cafile=str(ca.expanduser()) if ca else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
