"""TLS between gateways and workers: a worker with a certificate serves only
https://, a gateway that trusts the certificate speaks to it, and one that
does not trust it refuses to (the worker is never used unverified).

The certificates are made here, self-signed for 127.0.0.1, with the
``cryptography`` package; the worker and the gateways are real processes.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from voxgate.testing import ServerProcess, WorkerProcess

SIM = {"kind": "simulated", "options": {"first_chunk_ms": 20, "rtf": 0.02, "chunk_ms": 100}}
TOKEN = "tls-worker-token"


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, signed by its own key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def env(engines: dict[str, Any], **extra: str) -> dict[str, str]:
    return {"VOXGATE_ENGINES": json.dumps(engines), "VOXGATE_CACHE_ENABLED": "false", **extra}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("certs")
    cert, key = self_signed(root, "worker")
    stranger, _ = self_signed(root, "stranger")  # a CA that did not sign the worker's
    return {"cert": cert, "key": key, "stranger": stranger}


@pytest.fixture(scope="module")
def tls_worker(
    tmp_path_factory: pytest.TempPathFactory, certs: dict[str, Path]
) -> Iterator[WorkerProcess]:
    worker_env = env(
        {"sim": SIM},
        VOXGATE_WORKER_TOKEN=TOKEN,
        VOXGATE_WORKER_TLS_CERT=str(certs["cert"]),
        VOXGATE_WORKER_TLS_KEY=str(certs["key"]),
    )
    with WorkerProcess(tmp_path_factory.mktemp("worker"), "sim", worker_env) as worker:
        yield worker


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, tls_worker: WorkerProcess, certs: dict[str, Path]
) -> Iterator[ServerProcess]:
    """Two engines in front of the same worker: ``trusted`` names the worker's
    certificate as its CA (``tls_ca``), ``untrusted`` falls back to the
    gateway-wide ``VOXGATE_WORKER_TLS_CA``, here a CA that did not sign it."""
    options = {"urls": [tls_worker.url], "retries": 0, "health_interval_s": 0.5}
    engines = {
        "trusted": {"kind": "worker", "options": {**options, "tls_ca": str(certs["cert"])}},
        "untrusted": {"kind": "worker", "options": options},
    }
    gateway_env = env(
        engines, VOXGATE_WORKER_TOKEN=TOKEN, VOXGATE_WORKER_TLS_CA=str(certs["stranger"])
    )
    with ServerProcess(tmp_path_factory.mktemp("gateway"), gateway_env) as server:
        yield server


def tts(gateway: ServerProcess, model: str) -> httpx.Response:
    body = {"model": model, "input": "Encrypted all the way.", "voice": "alloy"}
    return httpx.post(
        gateway.url + "/v1/audio/speech", json={**body, "response_format": "pcm"}, timeout=60
    )


def test_the_worker_serves_only_https(tls_worker: WorkerProcess, certs: dict[str, Path]) -> None:
    assert tls_worker.url.startswith("https://")
    trust = ssl.create_default_context(cafile=str(certs["cert"]))
    info = httpx.get(tls_worker.url + "/worker/v1/info", headers=tls_worker.headers, verify=trust)
    assert info.status_code == 200
    assert info.json()["kind"] == "simulated"
    plain = tls_worker.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):  # a TLS port gives plain HTTP no answer at all
        httpx.get(plain + "/worker/v1/info", headers=tls_worker.headers, timeout=5)


def test_a_gateway_that_trusts_the_certificate_speaks_through_it(gateway: ServerProcess) -> None:
    response = tts(gateway, "trusted")
    assert response.status_code == 200, response.text
    assert len(response.content) > 24_000  # about a second of 24 kHz 16-bit audio at least


def test_a_gateway_that_does_not_trust_it_never_uses_the_worker(gateway: ServerProcess) -> None:
    response = tts(gateway, "untrusted")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "engine_unavailable"
    described = httpx.get(gateway.url + "/v1/engines/untrusted", timeout=10).json()
    assert "CERTIFICATE_VERIFY_FAILED" in json.dumps(described)


def test_a_certificate_without_its_key_is_refused_at_start(
    tmp_path: Path, certs: dict[str, Path]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "voxgate", "worker", "--engine", "sim", "--port", "0"],
        env={
            **os.environ,
            **env({"sim": SIM}),
            "VOXGATE_DATA_DIR": str(tmp_path),
            "VOXGATE_WORKER_TLS_CERT": str(certs["cert"]),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    said = " ".join(done.stderr.split())  # the terminal may wrap it
    assert "VOXGATE_WORKER_TLS_CERT is set but VOXGATE_WORKER_TLS_KEY is not" in said
    assert "hint: Set VOXGATE_WORKER_TLS_CERT and VOXGATE_WORKER_TLS_KEY" in said
