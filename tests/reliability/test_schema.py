"""Property-based tests against the server's own OpenAPI document (schemathesis).

Every operation gets generated requests, valid ones and ones that violate the
schema. No response may be a 5xx, and every response must match the schema:
documented status, documented content type, a body valid against its schema,
and schema violations rejected with a 4xx.

``make test`` runs a short, reproducible pass; the long run is
``VOXGATE_RELIABILITY_EXAMPLES=2000 .venv/bin/pytest tests/reliability``.

(schemathesis' own pytest plugin does not run under pytest 9 yet, so the
operations are parametrized here and Hypothesis is driven directly.)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis import checks as st_checks
from schemathesis.specs.openapi import checks as oa_checks

from voxgate.app import create_app
from voxgate.config import Settings
from voxgate.testing import ServerProcess

EXAMPLES = int(os.environ.get("VOXGATE_RELIABILITY_EXAMPLES", "25"))
CHECKS = [
    st_checks.not_a_server_error,
    oa_checks.status_code_conformance,
    oa_checks.content_type_conformance,
    oa_checks.response_schema_conformance,
    oa_checks.response_headers_conformance,
    oa_checks.negative_data_rejection,
]

with tempfile.TemporaryDirectory() as _tmp:
    SPEC = create_app(Settings(data_dir=Path(_tmp))).openapi()
SCHEMA = schemathesis.openapi.from_dict(SPEC)
OPERATIONS = {op.label: op for op in (r.ok() for r in SCHEMA.get_all_operations())}


def _has_inputs(label: str) -> bool:
    method, path = label.split(" ", 1)
    spec = SPEC["paths"][path][method.lower()]
    return bool(spec.get("parameters") or spec.get("requestBody"))


# Schema-violating requests can only be made where there is something to violate.
CASES = [(label, GenerationMode.POSITIVE) for label in sorted(OPERATIONS)] + [
    (label, GenerationMode.NEGATIVE) for label in sorted(OPERATIONS) if _has_inputs(label)
]


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("schema")) as server:
        httpx.post(server.url + "/v1/audio/speech", json={"input": "warm up"}, timeout=60)
        server.resting = httpx.get(server.url + "/v1/admin/runtime").json()  # type: ignore[attr-defined]
        yield server


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{lb}-{m}" for lb, m in CASES])
def test_operation_conforms_to_the_schema(
    api_server: ServerProcess, label: str, mode: GenerationMode
) -> None:
    operation = OPERATIONS[label]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=EXAMPLES <= 25,
        database=None,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=api_server.url, checks=CHECKS, timeout=60)

    run()


def test_the_schema_covers_every_route() -> None:
    assert {
        "POST /v1/audio/speech",
        "POST /v1/tts",
        "GET /v1/models",
        "GET /v1/audio/voices",
        "GET /v1/engines",
    } <= set(OPERATIONS)


def test_server_is_healthy_afterwards(api_server: ServerProcess) -> None:
    assert api_server.alive()
    assert httpx.get(api_server.url + "/readyz").status_code == 200
    resting = api_server.resting  # type: ignore[attr-defined]
    runtime = httpx.get(api_server.url + "/v1/admin/runtime").json()
    assert runtime["tasks"] <= resting["tasks"], (runtime, resting)
    assert runtime["open_fds"] <= resting["open_fds"] + 2, (runtime, resting)
