"""Fault injection shared by the stand-in servers (test knobs, not upstream)."""

from __future__ import annotations

import argparse
import os
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Faults:
    fail_first: int = 0  # answer the first N requests with HTTP 500 / UNAVAILABLE
    die_after_chunks: int = 0  # exit the process after sending N audio chunks (0: never)
    stall_s: float = 0.0  # sleep before the first chunk
    _seen: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--fail-first", type=int, default=0)
        parser.add_argument("--die-after-chunks", type=int, default=0)
        parser.add_argument("--stall-s", type=float, default=0.0)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Faults:
        return cls(args.fail_first, args.die_after_chunks, args.stall_s)

    def should_fail(self) -> bool:
        with self._lock:
            self._seen += 1
            return self._seen <= self.fail_first

    def before_first_chunk(self) -> None:
        if self.stall_s:
            time.sleep(self.stall_s)

    def after_chunk(self, sent: int) -> None:
        if self.die_after_chunks and sent >= self.die_after_chunks:
            time.sleep(0.05)  # let the chunk leave, then die like a crashed server
            os._exit(3)
