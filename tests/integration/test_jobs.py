"""Jobs through a real server: lifecycle, progress over SSE, range downloads,
subtitles timed from the audio, cancellation, idempotency, tenant scoping,
and a server killed with SIGKILL in the middle of a job.

The simulated engine makes audio that is deterministic per text, so the
job's file can be compared sample for sample with each segment synthesized
on its own: every segment present, in order, exactly once.
"""

from __future__ import annotations

import io
import json
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.audio import decode
from voxgate.testing import ServerProcess

SIM = {"first_chunk_ms": 20, "rtf": 0.02, "chunk_ms": 200, "capacity": 4}
SLOW_SIM = {"first_chunk_ms": 150, "rtf": 0.15, "chunk_ms": 200, "capacity": 4}
SENTENCES = [f"This is sentence number {i} of the chapter." for i in range(14)]
TEXT = " ".join(SENTENCES)


def env(engine: dict[str, object], **extra: str) -> dict[str, str]:
    return {
        "VOXGATE_ENGINES": json.dumps({"sim": {"kind": "simulated", "options": engine}}),
        "VOXGATE_JOB_SEGMENT_CHARS": "60",  # one sentence per segment
        "VOXGATE_CACHE_ENABLED": "false",
        **extra,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("jobs"), env(SIM)) as proc:
        yield proc


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def wait(http: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return dict(job)
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def segment_pcm(http: httpx.Client, text: str) -> bytes:
    r = http.post("/v1/tts", json={"text": text, "engine": "sim", "format": "pcm"})
    assert r.status_code == 200, r.text
    return r.content


def wav_pcm(data: bytes) -> tuple[bytes, int]:
    with wave.open(io.BytesIO(data)) as w:
        return w.readframes(w.getnframes()), w.getframerate()


def test_lifecycle_progress_download_and_subtitles(http: httpx.Client) -> None:
    submitted = http.post("/v1/jobs", json={"text": TEXT, "engine": "sim", "format": "wav"})
    assert submitted.status_code == 202
    job = submitted.json()
    assert job["object"] == "job"
    assert job["state"] in ("queued", "running")
    assert job["progress"]["segments_total"] == len(SENTENCES)
    assert submitted.headers["location"] == f"/v1/jobs/{job['id']}"

    # progress over SSE, to the end
    events: list[tuple[str, dict[str, object]]] = []
    with http.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    assert events[-1][0] == "done"
    done = events[-1][1]
    assert done["state"] == "succeeded"
    fractions = [e["progress"]["fraction"] for _, e in events]  # type: ignore[index]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0

    audio = http.get(f"/v1/jobs/{job['id']}/audio")
    assert audio.status_code == 200
    assert audio.headers["content-type"] == "audio/wav"
    assert audio.headers["accept-ranges"] == "bytes"
    pcm, rate = wav_pcm(audio.content)
    # every segment, in order, exactly once: the file is the segments' audio
    expected = b"".join(segment_pcm(http, s) for s in SENTENCES)
    assert pcm == expected

    # range requests: the pieces put back together are the file
    size = len(audio.content)
    head = http.get(f"/v1/jobs/{job['id']}/audio", headers={"Range": "bytes=0-999"})
    tail = http.get(f"/v1/jobs/{job['id']}/audio", headers={"Range": "bytes=1000-"})
    assert head.status_code == tail.status_code == 206
    assert head.headers["content-range"] == f"bytes 0-999/{size}"
    assert head.content + tail.content == audio.content

    # subtitles: one cue per segment, timed by the audio actually produced
    srt = http.get(f"/v1/jobs/{job['id']}/subtitles.srt").text
    vtt = http.get(f"/v1/jobs/{job['id']}/subtitles.vtt").text
    assert vtt.startswith("WEBVTT")
    cues = parse_srt(srt)
    assert [c[2] for c in cues] == SENTENCES
    at = 0.0
    for (start, end, _text), sentence in zip(cues, SENTENCES, strict=True):
        length = len(segment_pcm(http, sentence)) / 2 / rate
        assert abs(start - at) < 0.05
        assert abs(end - (at + length)) < 0.05
        at += length
    assert abs(cues[-1][1] - len(pcm) / 2 / rate) < 0.05


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    def seconds(stamp: str) -> float:
        h, m, rest = stamp.split(":")
        s, ms = rest.split(",")
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        start, end = lines[1].split(" --> ")
        cues.append((seconds(start), seconds(end), " ".join(lines[2:])))
    return cues


def test_compressed_output_and_file_upload(http: httpx.Client) -> None:
    files = {"file": ("chapter.md", TEXT.encode(), "text/markdown")}
    r = http.post("/v1/jobs", data={"engine": "sim", "format": "mp3"}, files=files)
    assert r.status_code == 202, r.text
    job = wait(http, r.json()["id"])
    assert job["state"] == "succeeded"
    audio = http.get(f"/v1/jobs/{job['id']}/audio").content
    decoded = decode(audio, "mp3")
    cues = parse_srt(http.get(f"/v1/jobs/{job['id']}/subtitles.srt").text)
    # MP3 adds its encoder's priming delay (1105 samples) and pads the last frame
    assert abs(decoded.duration - cues[-1][1]) < 0.1


def test_list_get_cancel_and_idempotency(http: httpx.Client) -> None:
    headers = {"Idempotency-Key": "chapter-7"}
    body = {"text": TEXT * 20, "engine": "sim", "format": "pcm"}
    first = http.post("/v1/jobs", json=body, headers=headers)
    again = http.post("/v1/jobs", json=body, headers=headers)
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    job_id = first.json()["id"]
    listed = http.get("/v1/jobs", params={"limit": 100}).json()
    assert job_id in [j["id"] for j in listed["data"]]
    cancelled = http.delete(f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200
    final = wait(http, job_id)
    assert final["state"] == "cancelled"
    assert final["error"]["code"] == "cancelled"  # type: ignore[index]
    no_audio = http.get(f"/v1/jobs/{job_id}/audio")
    assert no_audio.status_code == 409
    assert no_audio.json()["error"]["code"] == "job_not_finished"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"engine": "sim"}, 400, "missing_field"),
        ({"text": "   ", "engine": "sim"}, 400, "text_empty"),
        ({"text": "hi", "engine": "nope"}, 404, "model_not_found"),
        ({"text": "hi", "callback_url": "ftp://example.com/x"}, 400, "callback_url_invalid"),
        ({"text": "hi", "callback_url": "http://127.0.0.1:9/hook"}, 400, "callback_url_forbidden"),
        ({"text": "hi", "callback_url": "http://169.254.169.254/"}, 400, "callback_url_forbidden"),
        ({"text": "hi", "callback_url": "http://10.1.2.3/hook"}, 400, "callback_url_forbidden"),
        ({"text": "hi", "callback_url": "http://[::1]/hook"}, 400, "callback_url_forbidden"),
        ({"text": "hi", "format": "ogg"}, 400, "format_unsupported"),
    ],
)
def test_bad_submissions(
    http: httpx.Client, body: dict[str, object], status: int, code: str
) -> None:
    r = http.post("/v1/jobs", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_unknown_job(http: httpx.Client) -> None:
    for path in ("/v1/jobs/job_nope", "/v1/jobs/job_nope/audio", "/v1/jobs/job_nope/events"):
        r = http.get(path)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "job_not_found"


def test_a_job_survives_sigkill_of_the_server(tmp_path: Path) -> None:
    """Killed mid-job, restarted on the same data: the job finishes, and its
    audio holds every segment exactly once."""
    proc = ServerProcess(tmp_path, env(SLOW_SIM))
    proc.start()
    with httpx.Client(base_url=proc.url, timeout=60) as http:
        job_id = http.post(
            "/v1/jobs", json={"text": TEXT, "engine": "sim", "format": "wav"}
        ).json()["id"]
        deadline = time.monotonic() + 60
        while http.get(f"/v1/jobs/{job_id}").json()["progress"]["segments_done"] < 4:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert proc.process is not None
    proc.process.kill()  # SIGKILL: no shutdown handler runs
    proc.process.wait()
    restarted = ServerProcess(tmp_path, env(SLOW_SIM), port=proc.port)
    with restarted, httpx.Client(base_url=restarted.url, timeout=60) as http:
        job = wait(http, job_id)
        assert job["state"] == "succeeded"
        assert job["attempts"] == 2
        pcm, _ = wav_pcm(http.get(f"/v1/jobs/{job_id}/audio").content)
        expected = b"".join(segment_pcm(http, s) for s in SENTENCES)
        assert len(pcm) == len(expected)
        assert pcm == expected
        samples = np.frombuffer(pcm, dtype=np.int16)
        assert np.abs(samples).max() > 1000  # real audio, not silence
    assert "job_" in restarted.log()


def test_finished_jobs_are_removed_after_their_keep_time(tmp_path: Path) -> None:
    with (
        ServerProcess(tmp_path, env(SIM, VOXGATE_JOB_KEEP_S="1")) as proc,
        httpx.Client(base_url=proc.url, timeout=60) as http,
    ):
        job = wait(http, http.post("/v1/jobs", json={"text": TEXT, "engine": "sim"}).json()["id"])
        assert job["state"] == "succeeded"
        assert http.get(f"/v1/jobs/{job['id']}/audio").status_code == 200
        files = tmp_path / "blobs" / "jobs" / str(job["id"])
        assert files.exists()
        deadline = time.monotonic() + 20
        while http.get(f"/v1/jobs/{job['id']}").status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert not files.exists()  # the audio and subtitles went with the row


def test_job_segments_are_counted_in_the_metrics(http: httpx.Client) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def total(name: str, **labels: str) -> float:
        found = 0.0
        for family in text_string_to_metric_families(http.get("/metrics").text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    found += sample.value
        return found

    before = total("voxgate_requests_total", route="job:segment", status="200")
    job = wait(http, http.post("/v1/jobs", json={"text": TEXT, "engine": "sim"}).json()["id"])
    assert job["state"] == "succeeded"
    after = total("voxgate_requests_total", route="job:segment", status="200")
    assert after - before == len(SENTENCES)
    assert total("voxgate_audio_seconds_total", engine="sim") >= job["progress"]["audio_seconds"]
