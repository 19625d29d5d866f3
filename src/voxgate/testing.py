"""Run a real voxgate server (or worker) in a subprocess on a free loopback port.

Used by voxgate's own tests and benchmarks, and useful in yours: the server is
driven over HTTP exactly as a client would, nothing is imported from it.

    with ServerProcess(tmp_path, {"VOXGATE_DEFAULT_VOICE": "onyx"}) as server:
        httpx.post(server.url + "/v1/audio/speech", json={"input": "hi"})
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Process:
    """A voxgate command in a subprocess on a loopback port: started, waited
    for until a route answers 200, stopped by a signal (then killed)."""

    what = "process"
    ready_path = "/"

    def __init__(
        self,
        data_dir: Path,
        env: Mapping[str, str] | None,
        port: int | None,
        args: list[str] | None,
        log_name: str,
    ) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / log_name
        self._env = dict(env or {})
        self._args = args or []
        self.headers: dict[str, str] = {}
        self.verify: ssl.SSLContext | bool = True  # for https: whom to trust
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def _start(self, timeout: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "VOXGATE_DATA_DIR": str(self.data_dir),
            "VOXGATE_LOG_FORMAT": "json",
            **self._env,
        }
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [*self.command(), "--port", str(self.port), *self._args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.what} exited early:\n{self.log()}")
            try:
                ready = httpx.get(
                    self.url + self.ready_path, headers=self.headers, timeout=1, verify=self.verify
                )
                if ready.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.what} not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _stop(self, sig: int, timeout: float) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def stop(self) -> int | None:
        raise NotImplementedError

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerProcess(_Process):
    """``voxgate serve``, ready once ``/readyz`` says so; stopped with SIGINT."""

    what = "server"
    ready_path = "/readyz"

    def __init__(
        self,
        data_dir: Path,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        args: list[str] | None = None,
    ) -> None:
        super().__init__(data_dir, env, port, args, "server.log")

    def command(self) -> list[str]:
        return [sys.executable, "-m", "voxgate", "serve"]

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self._start(timeout)
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        return self._stop(signal.SIGINT, timeout)

    def __enter__(self) -> ServerProcess:
        return self.start()


class WorkerProcess(_Process):
    """``voxgate worker --engine NAME`` in a subprocess on a free loopback port,
    ready once its health route says so.

        with WorkerProcess(tmp_path, "sim", {"VOXGATE_ENGINES": ...}) as worker:
            httpx.get(worker.url + "/worker/v1/health")
    """

    what = "worker"
    ready_path = "/worker/v1/health"

    def __init__(
        self,
        data_dir: Path,
        engine: str,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        args: list[str] | None = None,
    ) -> None:
        port = port or free_port()
        super().__init__(data_dir, env, port, args, f"worker-{port}.log")
        self.engine = engine
        token = self._env.get("VOXGATE_WORKER_TOKEN")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        cert = self._env.get("VOXGATE_WORKER_TLS_CERT")
        if cert:  # serving TLS with a self-signed certificate for 127.0.0.1
            self.url = f"https://127.0.0.1:{self.port}"
            self.verify = ssl.create_default_context(cafile=cert)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "voxgate", "worker", "--engine", self.engine]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        self._start(timeout)
        return self

    def health(self) -> dict[str, Any]:
        health = httpx.get(
            self.url + self.ready_path, headers=self.headers, timeout=5, verify=self.verify
        )
        document: dict[str, Any] = health.json()
        return document

    def kill(self) -> None:
        """SIGKILL: a worker that dies without a word."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        return self._stop(sig, timeout)

    def __enter__(self) -> WorkerProcess:
        return self.start()
