"""Command line: ``voxgate serve | say | voices | worker | bench | doctor | keys | tenants``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from voxgate import __version__
from voxgate.audio.formats import AudioFormat, from_extension
from voxgate.cli_errors import fail as _fail
from voxgate.config import load_settings
from voxgate.engines.base import Mode
from voxgate.errors import VoxgateError
from voxgate.jobs_cli import jobs_app
from voxgate.keys_cli import keys_app, tenants_app

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="voxgate: a serving gateway for CosyVoice-class speech models.",
)
app.add_typer(keys_app, name="keys")
app.add_typer(tenants_app, name="tenants")
app.add_typer(jobs_app, name="jobs")
err = Console(stderr=True)
out = Console()

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML configuration file.", exists=True)
]
UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help="Talk to a running server (e.g. http://127.0.0.1:8080)."),
]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080).")] = None,
    config: ConfigOpt = None,
    data_dir: Annotated[Path | None, typer.Option(help="State directory.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning...")] = None,
) -> None:
    """Start the HTTP server."""
    import uvicorn

    from voxgate.app import create_app
    from voxgate.obs.logging import configure_logging
    from voxgate.serving.auth import exposure_problem
    from voxgate.serving.tokens import AuthConfigError

    settings = load_settings(config, host=host, port=port, data_dir=data_dir, log_level=log_level)
    configure_logging(settings.log_level, settings.log_format)
    # Checked again at start-up (with the database); here for a plain message.
    problem = exposure_problem(settings)
    if problem:
        _fail("startup_refused", f"refusing to start: {problem}", None)
    try:
        application = create_app(settings)
    except AuthConfigError as exc:
        _fail("invalid_auth_config", f"refusing to start: {exc}", "See docs/auth.md.")
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        http=settings.http_implementation,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def _read_text(text: str) -> str:
    return sys.stdin.read() if text == "-" else text


@app.command()
def say(
    text: Annotated[str, typer.Argument(help="Text to speak, or - to read standard input.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Audio file to write.")],
    voice: Annotated[str | None, typer.Option(help="Voice id or alias.")] = None,
    fmt: Annotated[
        AudioFormat | None,
        typer.Option("--format", "-f", help="Output format (default: from the file name)."),
    ] = None,
    speed: Annotated[float, typer.Option(help="Tempo factor, 0.25-4.0.")] = 1.0,
    pitch: Annotated[float, typer.Option(help="Pitch shift in semitones, -12..12.")] = 0.0,
    volume: Annotated[float, typer.Option(help="Loudness factor, 0-2.")] = 1.0,
    instruct: Annotated[str | None, typer.Option(help="Style instruction.")] = None,
    mode: Annotated[Mode, typer.Option(help="Inference mode.")] = Mode.SFT,
    language: Annotated[str | None, typer.Option(help="Language hint.")] = None,
    engine: Annotated[str | None, typer.Option(help="Engine name.")] = None,
    sample_rate: Annotated[int | None, typer.Option(help="Output sample rate.")] = None,
    url: UrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Synthesize TEXT into a file, in-process or through a server (--url)."""
    fmt = fmt or from_extension(str(output)) or AudioFormat.WAV
    body: dict[str, Any] = {
        "text": _read_text(text),
        "voice": voice,
        "format": fmt.value,
        "speed": speed,
        "pitch": pitch,
        "volume": volume,
        "instruct": instruct,
        "mode": mode.value,
        "language": language,
        "engine": engine,
        "sample_rate": sample_rate,
    }
    body = {k: v for k, v in body.items() if v is not None}
    if url:
        data, rate, warnings = _say_remote(url, body)
    else:
        data, rate, warnings = asyncio.run(_say_local(body, config))
    output.write_bytes(data)
    for w in warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}")
    out.print(f"wrote {output} ({len(data)} bytes, {fmt.value}, {rate} Hz)")


def _say_remote(url: str, body: dict[str, Any]) -> tuple[bytes, int, list[str]]:
    try:
        response = httpx.post(url.rstrip("/") + "/v1/tts", json=body, timeout=300)
    except httpx.HTTPError as exc:
        _fail("connection_failed", f"cannot reach {url}: {exc}", "Is `voxgate serve` running?", 503)
    if response.status_code != 200:
        try:
            error = response.json()["error"]
        except (ValueError, KeyError):
            error = {"code": "http_error", "message": response.text[:200], "hint": None}
        _fail(error["code"], error["message"], error.get("hint"), response.status_code)
    rate = int(response.headers.get("x-sample-rate", "0"))
    return response.content, rate, response.headers.get_list("x-voxgate-warning")


async def _say_local(body: dict[str, Any], config: Path | None) -> tuple[bytes, int, list[str]]:
    from voxgate.engines.registry import EngineRegistry
    from voxgate.pipeline import Pipeline, SynthesisRequest

    settings = load_settings(config)
    registry = EngineRegistry.from_settings(settings)
    pipeline = Pipeline(registry, settings)
    try:
        await registry.start()
        synthesis = await pipeline.prepare(
            SynthesisRequest(
                text=body["text"],
                voice=body.get("voice"),
                engine=body.get("engine"),
                mode=Mode(body["mode"]),
                instruct=body.get("instruct"),
                language=body.get("language"),
                speed=body["speed"],
                pitch=body["pitch"],
                volume=body["volume"],
                format=AudioFormat(body["format"]),
                sample_rate=body.get("sample_rate"),
            )
        )
        data = await synthesis.read_all()
        return data, synthesis.sample_rate, [n.header() for n in synthesis.notices]
    except VoxgateError as exc:
        _fail(exc.code, exc.message, exc.hint, exc.status)
    finally:
        await registry.close()
        pipeline.close()


@app.command()
def voices(
    url: UrlOpt = None,
    engine: Annotated[str | None, typer.Option(help="Only this engine.")] = None,
    language: Annotated[str | None, typer.Option(help="Only this language.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """List the voices callers can use."""
    params = {k: v for k, v in {"engine": engine, "language": language, "limit": 1000}.items() if v}
    if url:
        try:
            response = httpx.get(url.rstrip("/") + "/v1/audio/voices", params=params, timeout=30)
        except httpx.HTTPError as exc:
            _fail("connection_failed", f"cannot reach {url}: {exc}", None, 503)
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["data"]
    else:
        items = asyncio.run(_voices_local(engine, language, config))
    if as_json:
        out.print_json(json.dumps(items, ensure_ascii=False))
        return
    table = Table("id", "engine", "language", "gender", "aliases", "name")
    for v in items:
        table.add_row(
            v["id"],
            v["engine"],
            v["language"],
            v.get("gender") or "",
            ", ".join(v["aliases"]),
            v["name"],
        )
    out.print(table)


async def _voices_local(
    engine: str | None, language: str | None, config: Path | None
) -> list[dict[str, Any]]:
    from voxgate.engines.registry import EngineRegistry

    registry = EngineRegistry.from_settings(load_settings(config))
    engines = [registry.get(engine)] if engine else list(registry)
    return [
        {
            "id": s.id,
            "engine": e.name,
            "language": s.language,
            "gender": s.gender,
            "aliases": list(s.aliases),
            "name": s.name,
        }
        for e in engines
        for s in e.speakers()
        if language is None or s.language.lower().startswith(language.lower())
    ]


@app.command()
def bench(
    url: Annotated[str, typer.Option(help="Server to load.")] = "http://127.0.0.1:8080",
    route: Annotated[
        str, typer.Option(help="openai (/v1/audio/speech) or native (/v1/tts).")
    ] = "openai",
    concurrency: Annotated[
        str, typer.Option(help="Closed loop: parallel streams, comma list.")
    ] = "1,8,32",
    requests: Annotated[int, typer.Option(help="Closed loop: requests per stream.")] = 20,
    rate: Annotated[
        str | None, typer.Option(help="Open loop instead: arrival rates (req/s), comma list.")
    ] = None,
    duration: Annotated[float, typer.Option(help="Open loop: seconds per rate.")] = 20.0,
    text: Annotated[str | None, typer.Option(help="Text to speak.")] = None,
    voice: Annotated[str | None, typer.Option(help="Voice.")] = None,
    model: Annotated[str | None, typer.Option(help="Model / engine name.")] = None,
    fmt: Annotated[AudioFormat, typer.Option("--format", help="Output format.")] = AudioFormat.PCM,
    sample_rate: Annotated[int | None, typer.Option(help="Output sample rate.")] = None,
    warmup: Annotated[
        int, typer.Option(help="Unrecorded requests per stream before measuring.")
    ] = 1,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of latency percentiles.")] = None,
    timeout: Annotated[float, typer.Option(help="Per-request timeout (s).")] = 120.0,
) -> None:
    """Load a running server: N streams x M requests, or an open-loop rate."""
    from voxgate.bench.loadgen import DEFAULT_TEXT, Target
    from voxgate.bench.runner import run_fast, run_levels, write_outputs

    if route not in ("openai", "native"):
        _fail("invalid_route", f"unknown route {route!r}", "Use openai or native.")
    target = Target(
        route=route,  # type: ignore[arg-type]
        text=text or DEFAULT_TEXT,
        voice=voice,
        model=model,
        format=fmt.value,
        sample_rate=sample_rate,
    )
    levels = (
        [float(x) for x in rate.split(",")] if rate else [int(x) for x in concurrency.split(",")]
    )
    try:
        results = run_fast(
            run_levels(
                url,
                target,
                levels,
                open_loop=rate is not None,
                per_stream=requests,
                duration_s=duration,
                warmup=warmup,
                timeout_s=timeout,
                console=out,
            )
        )
    except (OSError, RuntimeError) as exc:
        _fail("connection_failed", f"cannot use {url}: {exc}", "Is `voxgate serve` running?", 503)
    write_outputs(results, url, target, json_out=json_out, plot_out=plot)
    if any(r["ok"] < r["requests"] for r in results):
        raise typer.Exit(1)


@app.command()
def doctor(
    config: ConfigOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check what each configured engine needs: packages, model files, GPU,
    reachable servers. Exits 1 if something is missing."""
    from voxgate.doctor import diagnose

    settings = load_settings(config)
    report = asyncio.run(diagnose(settings))
    if json_out:
        out.print_json(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}
        sections = [("general", "", report.general)]
        sections += [(n, report.kinds[n], c) for n, c in report.engines.items()]
        for title, kind, checks in sections:
            table = Table(title=f"{title} ({kind})" if kind else title, title_justify="left")
            for column in ("", "check", "found", "fix"):
                table.add_column(column, overflow="fold")
            for c in checks:
                cells = (c.subject, c.detail, c.fix or "")
                table.add_row(marks[c.status], *(escape(x) for x in cells))
            out.print(table)
    if report.failed:
        raise typer.Exit(1)


@app.command(
    "celery-worker",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def celery_worker(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Run jobs from the Celery queue (VOXGATE_JOB_BACKEND=celery): one job at
    a time, with the engines configured here. Extra arguments go to Celery."""
    if config:
        os.environ["VOXGATE_CONFIG"] = str(config)
    from voxgate.jobs.celery_app import main as celery_main

    celery_main(list(ctx.args))


@app.command()
def worker(
    engine: Annotated[
        str, typer.Option("--engine", "-e", help="Name of the engine in VOXGATE_ENGINES to serve.")
    ],
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8090; 0: any free one).")] = None,
    uds: Annotated[Path | None, typer.Option(help="Serve on this Unix socket instead.")] = None,
    register: Annotated[
        bool, typer.Option(help="Register in Redis when VOXGATE_REDIS_URL is set.")
    ] = True,
    parent_pid: Annotated[int | None, typer.Option(hidden=True)] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve one engine to gateways (the worker protocol; docs/engines.md)."""
    from voxgate.worker.server import WorkerOptions, WorkerSetupError, run_worker

    settings = load_settings(config, worker_host=host, worker_port=port)
    try:
        status = run_worker(settings, WorkerOptions(engine, uds, register, parent_pid))
    except WorkerSetupError as exc:
        _fail("invalid_config", str(exc), exc.hint)
    raise typer.Exit(status)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


def main() -> None:
    app()
