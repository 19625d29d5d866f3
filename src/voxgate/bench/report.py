"""Presenting load-test results: a terminal table, Markdown, and a PNG plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table


def _level(r: dict[str, Any]) -> str:
    if r.get("offered_rps") is not None:
        return f"{r['offered_rps']:g} rps"
    return f"c={r.get('concurrency')}"


def _ms(block: dict[str, Any], key: str) -> str:
    value = block.get(key)
    return "" if value is None else f"{value:.1f}"


def rich_table(reports: Sequence[dict[str, Any]], title: str = "") -> Table:
    """One row per load level; latencies in ms (TTFA: time to first audio)."""
    table = Table(title=title or None)
    for column in (
        "load", "ok", "RPS", "TTFA avg", "p50", "p90", "p95", "p99",
        "gap p99", "total p50", "p99", "RTFX", "errors",
    ):  # fmt: skip
        table.add_column(column, justify="right", no_wrap=True)
    for r in reports:
        t = r["ttfa_ms"]
        table.add_row(
            _level(r),
            f"{r['ok']}/{r['requests']}",
            str(r["rps"]),
            _ms(t, "avg"),
            _ms(t, "p50"),
            _ms(t, "p90"),
            _ms(t, "p95"),
            _ms(t, "p99"),
            _ms(r["gap_ms"], "p99"),
            _ms(r["total_ms"], "p50"),
            _ms(r["total_ms"], "p99"),
            "" if r["rtfx"] is None else str(r["rtfx"]),
            ", ".join(f"{k}: {v}" for k, v in r["errors"].items()),
        )
    return table


def markdown(reports: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| run | load | ok/req | RPS | TTFA p50 | p90 | p99 | total p50 | total p99 | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        t, tot = r["ttfa_ms"], r["total_ms"]
        errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "0"
        lines.append(
            f"| {r['label']} | {_level(r)} | {r['ok']}/{r['requests']} | {r['rps']} "
            f"| {_ms(t, 'p50')} | {_ms(t, 'p90')} | {_ms(t, 'p99')} "
            f"| {_ms(tot, 'p50')} | {_ms(tot, 'p99')} | {errors} |"
        )
    return "\n".join(lines)


def plot(reports: Sequence[dict[str, Any]], path: Path, title: str = "") -> None:
    """Latency percentiles against concurrency (or offered rate), one line per run label."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("plots need matplotlib: pip install 'voxgate[bench]'") from exc

    open_loop = any(r.get("offered_rps") is not None for r in reports)
    x_key = "offered_rps" if open_loop else "concurrency"
    fig, (ax_ttfa, ax_total) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = sorted({r["label"] for r in reports})
    for label in labels:
        rows = sorted((r for r in reports if r["label"] == label), key=lambda r: r[x_key])
        xs = [r[x_key] for r in rows]
        for pct, style in (("p50", "-"), ("p90", "--"), ("p99", ":")):
            ax_ttfa.plot(
                xs, [r["ttfa_ms"][pct] for r in rows], style, marker="o", label=f"{label} {pct}"
            )
            ax_total.plot(
                xs, [r["total_ms"][pct] for r in rows], style, marker="o", label=f"{label} {pct}"
            )
    for ax, name in ((ax_ttfa, "time to first audio (ms)"), (ax_total, "total latency (ms)")):
        ax.set_xlabel("offered load (requests/s)" if open_loop else "concurrent streams")
        ax.set_ylabel(name)
        if not open_loop:
            ax.set_xscale("log", base=2)
            levels = sorted({r[x_key] for r in reports})
            ax.set_xticks(levels, [str(level) for level in levels])
            ax.minorticks_off()
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
