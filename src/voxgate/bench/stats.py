"""Summaries of latency samples: the numbers riva_tts_perf_client reports."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def summarize(values: Sequence[float]) -> dict[str, float | None]:
    """avg and p50/p90/p95/p99 in milliseconds (input in seconds)."""
    if not values:
        return {"avg": None, **{f"p{p}": None for p in PERCENTILES}}
    ms = np.asarray(values, dtype=np.float64) * 1000.0
    out: dict[str, float | None] = {"avg": round(float(ms.mean()), 2)}
    for p in PERCENTILES:
        out[f"p{p}"] = round(float(np.percentile(ms, p)), 2)
    return out
