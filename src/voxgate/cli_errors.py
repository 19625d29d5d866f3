"""How every ``voxgate`` command reports a failure: the stable error code,
the message and the hint, on stderr, and an exit status that tells a
script whether to fix its input (2) or retry later (1).

One function for the main CLI and its ``keys`` and ``jobs`` groups, so the
three print alike; messages and hints are escaped because they may quote
user input or a server's answer, which Rich would otherwise read as markup.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True)


def fail(code: str, message: str, hint: str | None, status: int = 400) -> NoReturn:
    err.print(f"[bold red]error[/] {escape(f'[{code}]')} {escape(message)}")
    if hint:
        err.print(f"[dim]hint:[/] {escape(hint)}")
    raise typer.Exit(2 if 400 <= status < 500 else 1)
