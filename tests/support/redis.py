"""The machine's real Redis for tests of the shared (distributed) mode.

Each test gets its own key prefix, so tests never see each other's keys and
nothing needs flushing; the keys are deleted afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

REDIS_URL = os.environ.get("VOXGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix; every key under it is removed after the test."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # scripts/ensure-test-deps.sh starts it
        raise RuntimeError(f"Redis is not answering at {REDIS_URL}: {exc}") from exc
    prefix = f"vgtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def redis_env(prefix: str) -> dict[str, str]:
    """Environment for a gateway process that shares state through Redis."""
    return {"VOXGATE_REDIS_URL": REDIS_URL, "VOXGATE_REDIS_PREFIX": prefix}
