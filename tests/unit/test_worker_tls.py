"""The TLS settings of workers: both files or neither, never a silent fall
back to plain HTTP, and no TLS on a supervised child's Unix socket."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from voxgate.config import Settings
from voxgate.worker.server import WorkerOptions, WorkerSetupError, advertised_url
from voxgate.worker.tls import TlsSetupError, client_context, server_files


@pytest.fixture
def pem(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "w.crt", tmp_path / "w.key"
    cert.write_text("certificate")
    key.write_text("key")
    return cert, key


def settings(**fields: object) -> Settings:
    return Settings(engines={}, **fields)  # type: ignore[arg-type]


def test_no_files_means_plain_http() -> None:
    assert server_files(settings()) is None
    assert advertised_url(settings(), WorkerOptions("sim"), 8090) == "http://127.0.0.1:8090"


def test_both_files_mean_https(pem: tuple[Path, Path]) -> None:
    tls = settings(worker_tls_cert=pem[0], worker_tls_key=pem[1])
    assert server_files(tls) == pem
    assert advertised_url(tls, WorkerOptions("sim"), 8443) == "https://127.0.0.1:8443"


def test_a_unix_socket_never_uses_tls(pem: tuple[Path, Path], tmp_path: Path) -> None:
    tls = settings(worker_tls_cert=pem[0], worker_tls_key=pem[1])
    socket = tmp_path / "child.sock"
    assert advertised_url(tls, WorkerOptions("sim", uds=socket), 0) == f"unix:{socket}"


@pytest.mark.parametrize("given", ["cert", "key"])
def test_one_file_without_the_other_is_refused(pem: tuple[Path, Path], given: str) -> None:
    fields = {"worker_tls_cert": pem[0]} if given == "cert" else {"worker_tls_key": pem[1]}
    with pytest.raises(TlsSetupError, match="needs both its certificate and its private key"):
        server_files(settings(**fields))
    with pytest.raises(WorkerSetupError) as refused:
        advertised_url(settings(**fields), WorkerOptions("sim"), 8090)
    assert "VOXGATE_WORKER_TLS_KEY" in refused.value.hint


def test_a_missing_file_is_named(pem: tuple[Path, Path], tmp_path: Path) -> None:
    gone = tmp_path / "gone.key"
    with pytest.raises(TlsSetupError, match=f"key {gone} is not a readable file"):
        server_files(settings(worker_tls_cert=pem[0], worker_tls_key=gone))
    with pytest.raises(TlsSetupError, match="CA"):
        client_context(gone)


def test_the_client_context_always_verifies() -> None:
    context = client_context(None)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
