"""Any engine in a supervised child process: isolation and recycling.

CosyVoice deployments are known for restarting their model servers every
night: memory grows with use (allocator fragmentation, caches), and a crash
in native code takes the whole server with it. With ``isolate: true`` in an
engine's configuration the gateway does this itself, without failing a
request:

* the engine runs in a child, ``voxgate worker --engine NAME`` on a Unix
  socket in a private directory, with exactly the gateway's configuration of
  that engine; the gateway talks to it as a ``worker`` engine (its protocol,
  its retries before the first byte, its clean errors);
* a child that **crashes** never takes the gateway down: its calls in flight
  end with an error (``upstream_error`` mid-stream; before any audio they
  wait for the replacement and are tried there), and a fresh child is started
  at once (with backoff if it keeps failing at start);
* **recycling** (``recycle_after_requests``, ``recycle_rss_mb``): a new child
  is started and waited for until it is ready; new calls go to it; the old
  one gets no new calls, finishes the calls it has (draining), and only then
  is stopped. At every moment one ready child takes new calls, so no request
  fails or waits because of a recycle. The resident-memory check counts only
  a child that has served a request since it started: its baseline after
  loading is what it is, growth from serving is what recycling is for.

The GPU must have room for two copies of the model for the moments of a
recycle (the old one draining, the new one loaded).

A child exits by itself within a second if the gateway is gone
(``--parent-pid``), so a gateway killed outright leaves no orphan holding
the GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxgate.config import EngineConfig
from voxgate.diagnostics import Check
from voxgate.engines.worker import WorkerEngine, WorkerState
from voxgate.errors import EngineError
from voxgate.worker.client import WorkerInfo
from voxgate.worker.server import ENGINE_CONFIG_ENV

log = logging.getLogger(__name__)

_MONITOR_S = 1.0  # how often the children are health-checked (and memory read)
_STOP_S = 15.0  # an idle child told to stop gets this long before SIGKILL
_RESTART_MAX_S = 30.0


def _socket_dir() -> Path:
    """A private directory (mode 0700) for the children's sockets. A Unix socket
    path holds at most 107 bytes: a long TMPDIR falls back to /tmp."""
    path = Path(tempfile.mkdtemp(prefix="voxgate-"))
    if len(str(path)) > 80 and Path("/tmp").is_dir():
        path.rmdir()
        path = Path(tempfile.mkdtemp(prefix="voxgate-", dir="/tmp"))
    return path


@dataclass(eq=False)
class Child:
    """One child process and its place in the pool."""

    generation: int
    process: asyncio.subprocess.Process
    socket: Path
    started_at: float = field(default_factory=time.time)
    worker: WorkerState | None = None
    requests: int = 0  # calls routed to it
    rss_bytes: int = 0
    retiring: bool = False  # being replaced or stopped: its exit is expected
    exited: asyncio.Task[int] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def to_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "pid": self.pid,
            "requests": self.requests,
            "in_flight": self.worker.in_flight if self.worker else 0,
            "rss_mb": round(self.rss_bytes / 2**20, 1),
            "retiring": self.retiring,
            "started_at": self.started_at,
        }


class SupervisedEngine(WorkerEngine):
    """An engine configured with ``isolate: true`` (see the module docstring)."""

    managed = True

    def __init__(self, name: str, config: EngineConfig, *, timeout_s: float = 30.0) -> None:
        # A call that finds no child (one is restarting) waits for it, up to
        # the engine's timeout, as it would wait for a slow engine.
        super().__init__(name, wait_for_worker_s=timeout_s, health_interval_s=_MONITOR_S)
        self.kind = config.kind
        self.config = config.model_copy(
            update={"isolate": False, "recycle_after_requests": None, "recycle_rss_mb": None}
        )
        self.recycle_after_requests = config.recycle_after_requests
        self.recycle_rss_mb = config.recycle_rss_mb
        self.children: list[Child] = []
        self.current: Child | None = None
        self.recycles = 0
        self.crashes = 0
        self._generation = 0
        self._socket_dir: Path | None = None
        self._replacing = asyncio.Lock()
        self._restart_failures = 0
        self._replacement: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        await super().start()
        self._socket_dir = _socket_dir()
        try:
            self.current = await self._launch()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._closing = True
        if self._replacement is not None:
            self._replacement.cancel()
            await asyncio.gather(self._replacement, return_exceptions=True)
        await asyncio.gather(*(self._stop(c) for c in list(self.children)), return_exceptions=True)
        await super().close()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "isolated": True,
            "child": self.current.to_dict() if self.current else None,
            "children": [c.to_dict() for c in self.children],
            "recycles": self.recycles,
            "crashes": self.crashes,
            "recycle_after_requests": self.recycle_after_requests,
            "recycle_rss_mb": self.recycle_rss_mb,
        }

    async def diagnose(self) -> list[Check]:
        """What the engine in the child needs, checked here (nothing is loaded)."""
        from voxgate.engines.registry import build_engine

        return await build_engine(self.name, self.config).diagnose()

    # -- children ------------------------------------------------------------------

    async def _launch(self) -> Child:
        """Start a child and wait until it is ready; it takes calls from then on."""
        assert self._socket_dir is not None
        self._generation += 1
        socket = self._socket_dir / f"{self._generation}.sock"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "voxgate",
            "worker",
            "--engine",
            self.name,
            "--uds",
            str(socket),
            "--no-register",
            "--parent-pid",
            str(os.getpid()),
            env={**os.environ, ENGINE_CONFIG_ENV: self.config.model_dump_json()},
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C is for the gateway to handle
        )
        child = Child(self._generation, process, socket)
        self.children.append(child)
        child.exited = asyncio.create_task(self._watch(child), name=f"{self.name}-child-exit")
        log.info("engine %s: starting child %d (pid %d)", self.name, child.generation, child.pid)
        try:
            await self._until_ready(child)
        except BaseException:
            await self._stop(child)
            raise
        log.info("engine %s: child %d (pid %d) ready", self.name, child.generation, child.pid)
        return child

    async def _until_ready(self, child: Child) -> None:
        worker = self._add(f"child-{child.generation}", f"unix:{child.socket}")
        child.worker = worker
        delay = 0.02
        while True:
            if child.process.returncode is not None:
                raise EngineError(
                    f"engine {self.name!r}: its process exited with status "
                    f"{child.process.returncode} while starting",
                    hint="The gateway's log holds the child's output.",
                )
            if child.socket.exists():
                await self._probe(worker)
                if worker.routable:
                    return
            await asyncio.sleep(delay)
            delay = min(0.25, delay * 1.5)

    async def _watch(self, child: Child) -> int:
        status = await child.process.wait()
        if child in self.children:
            self.children.remove(child)
        if child.worker is not None:
            self._remove(child.worker)
        if self._closing or child.retiring:
            return status
        self.crashes += 1
        log.error(
            "engine %s: child %d (pid %d) exited with status %d; starting a fresh one",
            self.name,
            child.generation,
            child.pid,
            status,
        )
        if child is self.current:
            self.current = None
            self._replace("it crashed")
        return status

    async def _stop(self, child: Child) -> None:
        """Stop a child (it should be idle) and wait for it to be gone."""
        child.retiring = True
        if child.worker is not None:
            child.worker.draining = True
            self._recompute()
        if child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        exited = child.exited
        if exited is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(exited), _STOP_S)
        except TimeoutError:
            log.warning("engine %s: child pid %d ignored SIGTERM; killing it", self.name, child.pid)
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()
            await exited

    # -- replacing: after a crash, or to recycle ---------------------------------------

    def _replace(self, reason: str) -> None:
        """Start replacing the current child (one replacement at a time)."""
        if self._closing or (self._replacement is not None and not self._replacement.done()):
            return
        self._replacement = asyncio.create_task(self._recycle(reason), name=f"{self.name}-replace")

    def _worth_waiting(self) -> bool:
        # While a crashed child is being replaced, calls wait for the new one
        # (up to the engine's timeout) rather than being refused; not while
        # children keep failing to start.
        return not self._closing and not self._restart_failures

    async def _recycle(self, reason: str) -> None:
        async with self._replacing:
            old = self.current
            if old is not None and not old.retiring and not self._closing:
                await self._swap(old, reason)
            while self.current is None and not self._closing:  # the child crashed
                await self._relaunch()

    async def _swap(self, old: Child, reason: str) -> None:
        """A fresh child in, then the old one out once it has finished its calls."""
        log.info(
            "engine %s: recycling child %d (pid %d): %s", self.name, old.generation, old.pid, reason
        )
        try:
            fresh = await self._launch()
        except (EngineError, OSError) as exc:
            old.requests = 0  # the old child serves on; tried again after as many
            log.error("engine %s: recycling failed, the old child serves on: %s", self.name, exc)
            return
        self.current = fresh
        old.retiring = True
        if old.worker is not None:
            old.worker.draining = True
            self._recompute()
            while old.worker.in_flight and old.process.returncode is None:
                assert self._change is not None
                await self._change.wait()
        await self._stop(old)
        self.recycles += 1
        log.info(
            "engine %s: child %d (pid %d) replaced by child %d (pid %d)",
            self.name,
            old.generation,
            old.pid,
            fresh.generation,
            fresh.pid,
        )

    async def _relaunch(self) -> None:
        """One attempt at a fresh child after a crash, with growing pauses."""
        if self._restart_failures:
            await asyncio.sleep(min(_RESTART_MAX_S, 0.5 * 2 ** (self._restart_failures - 1)))
        try:
            self.current = await self._launch()
        except (EngineError, OSError) as exc:
            self._restart_failures += 1
            log.error("engine %s: restart failed: %s", self.name, exc)
            return
        self._restart_failures = 0

    def _routed(self, worker: WorkerState) -> None:
        child = self.current
        if child is None or child.worker is not worker:
            return
        child.requests += 1
        limit = self.recycle_after_requests
        if limit is not None and child.requests >= limit:
            self._replace(f"it served {child.requests} requests (recycle_after_requests)")

    async def _check(self, worker: WorkerState) -> None:
        # A child still starting is probed by _until_ready (its socket may not
        # be there yet); a retiring one takes no new calls, and its exit is
        # seen by _watch.
        if worker.info is None or worker.draining:
            return
        await super()._check(worker)

    def _observed(self, worker: WorkerState, health: dict[str, Any]) -> None:
        """The current child's memory, from the health loop (every _MONITOR_S);
        recycle it above the threshold."""
        child = self.current
        if child is None or child.worker is not worker or child.retiring:
            return
        child.rss_bytes = int(health.get("rss_bytes") or 0)
        limit = self.recycle_rss_mb
        if limit is not None and child.requests and child.rss_bytes > limit * 2**20:
            rss = child.rss_bytes / 2**20
            self._replace(f"its resident memory is {rss:.0f} MB (recycle_rss_mb {limit:g})")

    def _accept(self, worker: WorkerState, info: WorkerInfo) -> None:
        # Each child serves the same configuration: whatever it reports is the
        # engine now (a newer child after a recycle may report more speakers).
        self._reference = info
        super()._accept(worker, info)
