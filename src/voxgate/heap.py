"""Keep the cyclic garbage collector's full passes short while serving.

A gateway or worker imports large libraries (numpy, PyAV, SQLAlchemy,
torch for CosyVoice) and builds its engines before it serves: some 180,000
objects that live as long as the process. CPython's full (generation 2)
collection walks every tracked object, so once serving, each one stalls the
event loop for 70-130 ms on a 2-core VM, and the requests it lands on see
it in their time to first audio (bench/RESULTS.md, the p99 of the 32-stream
rows). Freezing what exists once start-up is done moves those objects out of
the collector's sight (``gc.freeze``); full passes then walk only what was
made while serving.

Frozen objects are still freed by reference counting; only cycles among
them are never collected, which is why a collection runs first.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("voxgate")


def freeze_startup_heap() -> None:
    """Collect start-up garbage, then exempt the survivors from full passes."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.debug(
        "froze %d start-up objects in %.0f ms",
        gc.get_freeze_count(),
        (time.perf_counter() - started) * 1000,
    )
