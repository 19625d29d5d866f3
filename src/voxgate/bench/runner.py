"""Running load levels against a server with progress, then reporting."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from voxgate.bench import http1, loadgen, report
from voxgate.bench.machine import describe

T = TypeVar("T")


def run_fast(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where it is installed: a cheaper loop means the load
    generator steals less CPU from the server it measures."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(coro)
    return uvloop.run(coro)


async def run_levels(
    url: str,
    target: loadgen.Target,
    levels: Sequence[float],
    *,
    open_loop: bool,
    per_stream: int,
    duration_s: float,
    warmup: int,
    timeout_s: float,
    console: Console | None = None,
    label: str = "",
) -> list[dict[str, Any]]:
    """Each level in turn (streams, or arrival rates with ``open_loop``)."""
    console = console or Console()
    results: list[dict[str, Any]] = []
    client = http1.Client(url, timeout_s)
    try:
        ready = await client.get_json("/readyz")
        if ready.get("status") != "ready":
            raise RuntimeError(f"{url} is not ready: {ready}")
        send = loadgen.http_request(client, target)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            for level in levels:
                name = label or f"{target.route} {target.format}"
                if open_loop:
                    task = progress.add_task(f"{level:g} req/s", total=round(level * duration_s))
                    tick = _advancer(progress, task)
                    if warmup:
                        await loadgen.run_closed(send, 2, warmup, warmup=0)
                    result = await loadgen.run_open(
                        send, level, duration_s, label=name, on_sample=tick
                    )
                else:
                    streams = int(level)
                    task = progress.add_task(f"{streams} streams", total=streams * per_stream)
                    tick = _advancer(progress, task)
                    result = await loadgen.run_closed(
                        send, streams, per_stream, label=name, on_sample=tick, warmup=warmup
                    )
                progress.remove_task(task)
                results.append(result.report())
    finally:
        await client.aclose()
    console.print(report.rich_table(results, title=f"{url}{target.path}"))
    return results


def _advancer(progress: Progress, task: TaskID) -> loadgen.OnSample:
    def tick(_sample: loadgen.Sample) -> None:
        progress.advance(task)

    return tick


def write_outputs(
    results: list[dict[str, Any]],
    url: str,
    target: loadgen.Target,
    *,
    json_out: Path | None,
    plot_out: Path | None,
) -> None:
    if json_out:
        document = {
            "url": url,
            "target": target.body(0) | {"route": target.route},
            "machine": describe(),
            "results": results,
        }
        json_out.write_text(json.dumps(document, indent=2, ensure_ascii=False))
    if plot_out:
        report.plot(results, plot_out, title=f"{url}{target.path}")
