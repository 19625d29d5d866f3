from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from voxgate.testing import ServerProcess

pytest_plugins = ["tests.support.redis", "tests.support.postgres"]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server for the read-mostly integration tests."""
    proc = ServerProcess(tmp_path_factory.mktemp("server"))
    proc.start()
    yield proc
    code = proc.stop()
    assert code == 0, f"server exited with {code}:\n{proc.log()[-3000:]}"


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture
def artifacts() -> Path:
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
