"""Every metric voxgate exports is documented in docs/operations.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "src" / "voxgate" / "obs" / name for name in ("metrics.py", "live.py")]


def test_every_metric_is_documented() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    names = {n for path in SOURCES for n in re.findall(r'"(voxgate_[a-z_]+)"', path.read_text())}
    assert len(names) >= 20, "metric names not found; the scan is broken"
    # Counters are documented with the _total that the exposition adds.
    missing = sorted(n for n in names if f"`{n}" not in doc)
    assert not missing, f"not in docs/operations.md: {missing}"
