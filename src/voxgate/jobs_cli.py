"""``voxgate jobs ...``: long text as background jobs, from a terminal.

A thin shell over the Python SDK (``voxgate.client``) against a running
server, so it behaves exactly like any other client: authentication from
``$VOXGATE_API_KEY``, retries honouring ``Retry-After``, typed errors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from voxgate.cli_errors import fail
from voxgate.client import Client, VoxgateError
from voxgate.client.types import Job

jobs_app = typer.Typer(no_args_is_help=True, help="Long text as background jobs (docs/jobs.md).")
err = Console(stderr=True)
out = Console()

UrlOpt = Annotated[str, typer.Option("--url", envvar="VOXGATE_URL", help="The server.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the job as JSON.")]


def _client(url: str) -> Client:
    return Client(url)


def _fail(error: VoxgateError) -> NoReturn:
    fail(error.code or "error", error.message, error.hint, error.status or 0)


def _show(job: Job, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(dict(job.raw), ensure_ascii=False, default=str))
        return
    progress = job.progress
    line = (
        f"{job.id}  {job.state}  {progress.segments_done}/{progress.segments_total} segments  "
        f"{progress.audio_seconds:.1f} s of audio"
    )
    if job.error is not None:
        line += f"  error {job.error.code}: {job.error.message}"
    out.print(line, highlight=False)


@jobs_app.command("submit")
def submit(
    source: Annotated[str, typer.Argument(help="A .txt/.md file, or - for standard input.")],
    url: UrlOpt = "http://127.0.0.1:8080",
    voice: Annotated[str | None, typer.Option(help="Voice or speaker id.")] = None,
    engine: Annotated[str | None, typer.Option(help="Engine name.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="mp3, opus, aac, flac, wav, pcm.")] = "mp3",
    wait: Annotated[bool, typer.Option(help="Wait for the job, showing progress.")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="With --wait: save the audio here.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit a job; with --wait, follow it to the end and download the audio."""
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    try:
        with _client(url) as client:
            job = client.jobs.submit(text, voice=voice, engine=engine, format=fmt)
            if not wait:
                _show(job, as_json)
                return
            with Progress(
                TextColumn(job.id), BarColumn(), TaskProgressColumn(), console=err
            ) as bar:
                task = bar.add_task("job", total=max(1, job.progress.segments_total))
                job = client.jobs.wait(
                    job,
                    on_progress=lambda j: bar.update(task, completed=j.progress.segments_done),
                )
            _show(job, as_json)
            if not job.succeeded:
                raise typer.Exit(1)
            if output is not None:
                client.jobs.download(job, output)
                err.print(f"saved {output}")
    except VoxgateError as error:
        _fail(error)


@jobs_app.command("status")
def status(job_id: str, url: UrlOpt = "http://127.0.0.1:8080", as_json: JsonOpt = False) -> None:
    """One job: state, progress, error."""
    try:
        with _client(url) as client:
            _show(client.jobs.get(job_id), as_json)
    except VoxgateError as error:
        _fail(error)


@jobs_app.command("list")
def list_jobs(
    url: UrlOpt = "http://127.0.0.1:8080",
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 20,
) -> None:
    """Your jobs, newest first."""
    try:
        with _client(url) as client:
            for job in client.jobs.list_page(limit=limit, state=state).data:
                _show(job, False)
    except VoxgateError as error:
        _fail(error)


@jobs_app.command("download")
def download(
    job_id: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to save the audio.")],
    url: UrlOpt = "http://127.0.0.1:8080",
) -> None:
    """Save a finished job's audio (resumes an interrupted download)."""
    try:
        with _client(url) as client:
            client.jobs.download(job_id, output)
    except VoxgateError as error:
        _fail(error)
    err.print(f"saved {output}")


@jobs_app.command("cancel")
def cancel(job_id: str, url: UrlOpt = "http://127.0.0.1:8080", as_json: JsonOpt = False) -> None:
    """Cancel a queued or running job."""
    try:
        with _client(url) as client:
            _show(client.jobs.cancel(job_id), as_json)
    except VoxgateError as error:
        _fail(error)
