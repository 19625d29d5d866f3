"""Stand-in servers in subprocesses, reachable on loopback like real ones."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from voxgate.testing import free_port

TESTS = Path(__file__).resolve().parent.parent
FAKES = TESTS / "fakes"


def fake_env(**extra: str) -> dict[str, str]:
    """Environment for a process that imports the stand-in ``cosyvoice``."""
    path = os.pathsep.join([str(FAKES), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {
        **os.environ,
        "PYTHONPATH": path,
        # The stand-in model polls like upstream (0.1 s); tests need no such wait.
        "FAKE_COSYVOICE_POLL_S": "0.01",
        "FAKE_COSYVOICE_TOKEN_S": "0.0005",
        **extra,
    }


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early:\n{log.read_text(errors='replace')}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"port {port} not open in {timeout}s:\n{log.read_text(errors='replace')}")


class FakeServer:
    """``python -m <module> --port P <args>``, stopped on exit."""

    def __init__(
        self,
        module: str,
        args: Sequence[str],
        workdir: Path,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.address = f"127.0.0.1:{self.port}"
        self.module = module
        self.args = list(args)
        self.log_path = workdir / f"{module.rsplit('.', 1)[-1]}-{self.port}.log"
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> FakeServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, "--port", str(self.port), *self.args],
                env=fake_env(**self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_for_port(self.port, self.process, self.log_path, timeout)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:  # a stalled request would hold a graceful shutdown: do not wait long
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
