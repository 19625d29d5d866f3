"""A client that disconnects mid-stream stops the engine work it started."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx

from voxgate.testing import ServerProcess

LONG_TEXT = " ".join(f"This is sentence number {i} of a long reading." for i in range(80))


def engine_state(http: httpx.Client) -> dict:
    return next(e for e in http.get("/v1/engines").json()["data"] if e["name"] == "espeak")


def children_of(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_disconnect_mid_stream_frees_the_engine(server: ServerProcess, http: httpx.Client) -> None:
    before = engine_state(http)
    host_pid = before["info"]["host_pid"]
    assert wait_until(lambda: engine_state(http)["stats"]["active"] == 0)

    # A raw socket, so we control exactly when the connection goes away.
    body = (f'{{"text": "{LONG_TEXT}", "format": "pcm", "stream": true}}').encode()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(
        b"POST /v1/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    during = engine_state(http)
    assert during["stats"]["active"] == 1
    assert during["admission"]["in_use"] == 1
    assert len(children_of(host_pid)) == 1, "one espeak child is working for us"
    sock.close()

    assert wait_until(lambda: engine_state(http)["stats"]["active"] == 0), engine_state(http)
    after = engine_state(http)
    assert after["admission"]["in_use"] == 0
    assert after["stats"]["cancelled"] == before["stats"]["cancelled"] + 1
    assert after["stats"]["completed"] == before["stats"]["completed"]
    assert wait_until(lambda: children_of(host_pid) == []), "the espeak child must exit"
    # and the server still works
    r = http.post("/v1/audio/speech", json={"input": "Still here.", "response_format": "wav"})
    assert r.status_code == 200


def test_disconnect_while_sse_streaming(server: ServerProcess, http: httpx.Client) -> None:
    before = engine_state(http)["stats"]["cancelled"]
    with (
        httpx.Client(base_url=server.url, timeout=30) as c,
        c.stream(
            "POST",
            "/v1/audio/speech",
            json={"input": LONG_TEXT, "response_format": "pcm", "stream_format": "sse"},
        ) as r,
    ):
        next(r.iter_lines())
    assert wait_until(lambda: engine_state(http)["stats"]["active"] == 0)
    assert engine_state(http)["stats"]["cancelled"] == before + 1


def test_disconnects_during_compressed_encoding_never_crash_the_server(
    server: ServerProcess, http: httpx.Client
) -> None:
    """Regression: a disconnect used to close the encoder while a worker thread
    was still encoding into it, killing the process (found by schemathesis)."""
    body_for = {
        fmt: json.dumps({"input": LONG_TEXT[:1500], "response_format": fmt}).encode()
        for fmt in ("mp3", "aac", "opus", "flac")
    }
    for i in range(24):
        body = body_for[("mp3", "aac", "opus", "flac")[i % 4]]
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(
            b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        sock.recv(4096 if i % 2 else 64)
        sock.close()
    assert wait_until(lambda: engine_state(http)["stats"]["active"] == 0)
    assert server.alive(), server.log()[-2000:]
    assert (
        http.post(
            "/v1/audio/speech", json={"input": "Alive.", "response_format": "mp3"}
        ).status_code
        == 200
    )
