"""The distributed job path on the machine's real services: two gateways
(PostgreSQL for metadata, a shared blob directory, Redis as Celery's broker)
and two Celery job workers. A worker is SIGKILLed in the middle of a job and
the job finishes on the other; a gateway is killed and the other answers for
every job.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.redis import redis_env
from voxgate.testing import ServerProcess, WorkerProcess, free_port

SIM = {"first_chunk_ms": 100, "rtf": 0.15, "chunk_ms": 200, "capacity": 4}
SENTENCES = [f"Distributed sentence number {i} is spoken." for i in range(12)]


def shared_env(root: Path, postgres_url: str, redis_prefix: str) -> dict[str, str]:
    return {
        "VOXGATE_ENGINES": json.dumps({"sim": {"kind": "simulated", "options": SIM}}),
        "VOXGATE_DATABASE_URL": postgres_url,
        "VOXGATE_BLOB_DIR": str(root / "shared-blobs"),
        "VOXGATE_JOB_BACKEND": "celery",
        "VOXGATE_JOB_LEASE_S": "3",
        "VOXGATE_JOB_SEGMENT_CHARS": "60",
        "VOXGATE_CACHE_ENABLED": "false",
        **redis_env(redis_prefix),
    }


class CeleryWorker:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "celery.log"
        full = {**os.environ, "VOXGATE_DATA_DIR": str(root), "VOXGATE_LOG_FORMAT": "json", **env}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "voxgate", "celery-worker", "--hostname", f"w{id(self)}@%h"],
                env=full,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.log():
                return
            assert self.process.poll() is None, self.log()
            time.sleep(0.1)
        raise AssertionError(f"celery worker not ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def cluster(
    tmp_path: Path, postgres_url: str, redis_prefix: str
) -> Iterator[tuple[list[ServerProcess], list[CeleryWorker]]]:
    env = shared_env(tmp_path, postgres_url, redis_prefix)
    gateways = [ServerProcess(tmp_path / f"gw{i}", env) for i in range(2)]
    gateways[0].start()  # migrates the database first
    gateways[1].start()
    workers = [CeleryWorker(tmp_path / f"cw{i}", env) for i in range(2)]
    try:
        for w in workers:
            w.wait_ready()
        yield gateways, workers
    finally:
        for w in workers:
            w.stop()
        for g in gateways:
            g.stop()


def pcm_of(wav_bytes: bytes) -> bytes:
    with wave.open(io.BytesIO(wav_bytes)) as w:
        return w.readframes(w.getnframes())


def test_a_job_survives_its_worker_and_its_gateway(cluster) -> None:
    gateways, workers = cluster
    a, b = gateways
    text = " ".join(SENTENCES)
    with httpx.Client(base_url=a.url, timeout=60) as http:
        job = http.post("/v1/jobs", json={"text": text, "engine": "sim", "format": "wav"}).json()
        job_id = job["id"]
        deadline = time.monotonic() + 60
        while http.get(f"/v1/jobs/{job_id}").json()["progress"]["segments_done"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    # which worker runs it? its pid is in the job's lease, and in its log
    running = [w for w in workers if job_id in w.log()]
    assert len(running) == 1, [w.log()[-2000:] for w in workers]
    victim = running[0]
    victim.process.kill()  # SIGKILL, mid-job
    victim.process.wait()
    survivor = next(w for w in workers if w is not victim)

    a.process.kill()  # and gateway A too: B answers for every job
    a.process.wait()
    with httpx.Client(base_url=b.url, timeout=60) as http:
        deadline = time.monotonic() + 90
        while True:
            job = http.get(f"/v1/jobs/{job_id}").json()
            if job["state"] in ("succeeded", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["state"] == "succeeded", job
        assert job["attempts"] >= 2
        assert job_id in survivor.log()
        assert job_id in [j["id"] for j in http.get("/v1/jobs").json()["data"]]
        audio = http.get(f"/v1/jobs/{job_id}/audio").content
        expected = b"".join(
            http.post("/v1/tts", json={"text": s, "engine": "sim", "format": "pcm"}).content
            for s in SENTENCES
        )
    assert pcm_of(audio) == expected  # every segment exactly once, in order


def test_gateways_engine_workers_and_a_celery_worker(
    tmp_path: Path, postgres_url: str, redis_prefix: str
) -> None:
    """The whole distributed shape: two gateways and one Celery job worker,
    all calling two GPU-host engine workers found in Redis. Jobs and realtime
    requests spread over both engine workers; one is SIGKILLed mid-job and the
    job completes on the other; a gateway is killed and the other answers."""
    base = shared_env(tmp_path, postgres_url, redis_prefix)
    worker_env = {**base, "VOXGATE_WORKER_HEARTBEAT_S": "0.5"}
    remote = {"sim": {"kind": "worker", "options": {"engine": "sim", "refresh_s": 0.3}}}
    env = {**base, "VOXGATE_ENGINES": json.dumps(remote)}
    engines = [WorkerProcess(tmp_path / f"engine{i}", "sim", worker_env).start() for i in range(2)]
    gateways = [ServerProcess(tmp_path / f"gw{i}", env) for i in range(2)]
    celery = None
    try:
        for g in gateways:
            g.start()
        metrics_port = free_port()
        celery = CeleryWorker(
            tmp_path / "cw", {**env, "VOXGATE_CELERY_METRICS_PORT": str(metrics_port)}
        )
        celery.wait_ready()
        a, b = gateways
        for g in gateways:
            wait_until(lambda g=g: len(routable(g)) == 2)
        served = [w.health()["served"] for w in engines]
        text = " ".join(SENTENCES)
        with httpx.Client(base_url=a.url, timeout=60) as http:
            job_id = http.post("/v1/jobs", json={"text": text, "format": "wav"}).json()["id"]
            # realtime traffic through both gateways at the same time
            for g in gateways:
                for s in SENTENCES[:3]:
                    assert (
                        httpx.post(f"{g.url}/v1/tts", json={"text": s}, timeout=60).status_code
                        == 200
                    )
            deadline = time.monotonic() + 60
            while http.get(f"/v1/jobs/{job_id}").json()["progress"]["segments_done"] < 3:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        spread = [w.health()["served"] - s for w, s in zip(engines, served, strict=True)]
        assert all(n > 0 for n in spread), spread  # both engine workers did work
        engines[0].kill()  # a GPU host dies mid-job
        a.process.kill()  # and a gateway
        a.process.wait()
        with httpx.Client(base_url=b.url, timeout=60) as http:
            deadline = time.monotonic() + 90
            while (job := http.get(f"/v1/jobs/{job_id}").json())["state"] not in (
                "succeeded",
                "failed",
            ):
                assert time.monotonic() < deadline, job
                time.sleep(0.2)
            assert job["state"] == "succeeded", job
            audio = http.get(f"/v1/jobs/{job_id}/audio").content
            expected = b"".join(
                http.post("/v1/tts", json={"text": s, "format": "pcm"}).content for s in SENTENCES
            )
        assert pcm_of(audio) == expected
        assert engines[1].health()["served"] > spread[1] + served[1]
        # The job worker is scraped like a gateway: its segments, by outcome.
        base_url = f"http://127.0.0.1:{metrics_port}"
        assert httpx.get(f"{base_url}/healthz").json() == {"status": "ok"}
        families = {
            f.name: f for f in text_string_to_metric_families(httpx.get(f"{base_url}/metrics").text)
        }
        segments = [
            s
            for s in families["voxgate_requests"].samples
            if s.name == "voxgate_requests_total" and s.labels["route"] == "job:segment"
        ]
        ok = sum(s.value for s in segments if s.labels["status"] == "200")
        assert ok >= job["progress"]["segments_total"]
        characters = families["voxgate_characters"].samples[0].value
        assert characters >= sum(len(s) for s in SENTENCES)  # each at least once
    finally:
        if celery is not None:
            celery.stop()
        for g in gateways:
            g.stop()
        for w in engines:
            w.stop()


def routable(gateway: ServerProcess) -> list[dict[str, object]]:
    info = httpx.get(f"{gateway.url}/v1/engines/sim", timeout=10).json()["info"]
    return [w for w in info["workers"] if w["routable"]]


def wait_until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)
