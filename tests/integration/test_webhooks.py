"""Job callbacks to a real receiver on loopback (allow-listed: loopback is
refused otherwise): signed, retried with backoff, sent once delivered."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from voxgate.jobs.webhooks import sign, verify
from voxgate.testing import ServerProcess

SECRET = "whsec_test_0123456789"
SIM = {"first_chunk_ms": 10, "rtf": 0.01, "chunk_ms": 200, "capacity": 4}


class Receiver:
    """Answers 500 to the first ``failures`` deliveries, then 200."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[float, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((time.monotonic(), dict(self.headers), body))
                failing = len(receiver.received) <= receiver.failures
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/voxgate"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(failures=2)
    yield r
    r.close()


def test_signed_and_retried_until_delivered(tmp_path: Path, receiver: Receiver) -> None:
    env = {
        "VOXGATE_ENGINES": json.dumps({"sim": {"kind": "simulated", "options": SIM}}),
        "VOXGATE_WEBHOOK_SECRET": SECRET,
        "VOXGATE_WEBHOOK_ALLOW": json.dumps(["127.0.0.1"]),
    }
    with ServerProcess(tmp_path, env) as server, httpx.Client(base_url=server.url) as http:
        job = http.post(
            "/v1/jobs",
            json={"text": "One. Two. Three.", "engine": "sim", "callback_url": receiver.url},
        ).json()
        deadline = time.monotonic() + 30
        while len(receiver.received) < 3:
            assert time.monotonic() < deadline, receiver.received
            time.sleep(0.05)
        time.sleep(1.5)  # nothing more arrives once delivered
        assert len(receiver.received) == 3
        final = http.get(f"/v1/jobs/{job['id']}").json()
    assert final["webhook"] == {"state": "delivered", "attempts": 3}
    times = [t for t, _, _ in receiver.received]
    assert times[1] - times[0] >= 0.9  # backoff: 1 s, then 2 s
    assert times[2] - times[1] >= 1.9
    for _, headers, body in receiver.received:
        assert verify(SECRET, headers["X-Voxgate-Signature"], body)
        assert not verify("wrong-secret", headers["X-Voxgate-Signature"], body)
        assert not verify(SECRET, headers["X-Voxgate-Signature"], body + b" ")
        assert headers["X-Voxgate-Event"] == "job.succeeded"
    payload = json.loads(receiver.received[-1][2])
    assert payload["id"] == job["id"]
    assert payload["state"] == "succeeded"
    assert payload["audio_url"].endswith(f"/v1/jobs/{job['id']}/audio")


def test_signature_rejects_replays() -> None:
    body = b'{"id": "job_x"}'
    old = sign(SECRET, int(time.time()) - 3600, body)
    assert not verify(SECRET, old, body)
    assert verify(SECRET, sign(SECRET, int(time.time()), body), body)
    assert not verify(SECRET, "garbage", body)


def test_loopback_refused_without_the_allow_list(tmp_path: Path, receiver: Receiver) -> None:
    env = {"VOXGATE_ENGINES": json.dumps({"sim": {"kind": "simulated", "options": SIM}})}
    with ServerProcess(tmp_path, env) as server:
        r = httpx.post(
            f"{server.url}/v1/jobs",
            json={"text": "One.", "engine": "sim", "callback_url": receiver.url},
        )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "callback_url_forbidden"
    assert "VOXGATE_WEBHOOK_ALLOW" in r.json()["error"]["hint"]
    assert receiver.received == []
