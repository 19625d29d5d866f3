"""ASGI helpers shared by the gateway's API and the worker's plain-ASGI app.

Kept free of Starlette and FastAPI on purpose: the worker process
(:mod:`voxgate.worker.server`) is plain ASGI to keep its per-request cost
down, and importing this must not pull the gateway's web stack into it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

# Starlette's ``Receive`` and the worker's own both fit: a callable returning
# an awaitable of a mapping.
Receive = Callable[[], Awaitable[Mapping[str, Any]]]


class DisconnectWatch:
    """Cancels the sending task the moment the client disconnects.

    Why: a streamed response otherwise notices a departed client only when
    its next write fails, which may be long after (the engine keeps
    synthesizing audio nobody will hear, holding a slot, a GPU, a worker).
    Watching for ``http.disconnect`` in a task of its own cancels the sender,
    and with it the engine's work, at once.

    Made in the sending task; used as::

        watch = DisconnectWatch(receive)
        try:
            ...  # the head and the first bytes, in this task
            watch.start()
            ...  # the rest of the body
            watch.finish()
            await send(last_body)
        except asyncio.CancelledError:
            if not watch.claim_cancellation():
                raise  # a shutdown, not the client leaving
        finally:
            watch.stop()

    ``start`` comes after the first bytes on purpose: creating the task
    first would put a trip through the event loop (behind every other
    stream's chunks) in front of the first byte.
    """

    __slots__ = ("_receive", "_sender", "_sending", "_task", "disconnected")

    def __init__(self, receive: Receive) -> None:
        sender = asyncio.current_task()
        if sender is None:
            raise RuntimeError("DisconnectWatch must be made inside the sending task")
        self._sender = sender
        self._receive = receive
        self._sending = True
        self._task: asyncio.Task[None] | None = None
        self.disconnected = False  # whether a disconnect cancelled the sender

    def start(self) -> None:
        """Begin watching, in a task of its own."""
        self._task = asyncio.create_task(self._watch())

    def finish(self) -> None:
        """The last body is about to go: a disconnect no longer cancels.

        A cancellation requested after the last byte would land on whatever
        the sender awaits next, outside the code that expects it."""
        self._sending = False

    def claim_cancellation(self) -> bool:
        """Inside ``except asyncio.CancelledError`` in the sender: whether this
        watch caused it. If so the cancellation is withdrawn (the task goes
        on to clean up normally); if not the caller must re-raise."""
        if not self.disconnected:
            return False
        self._sender.uncancel()
        return True

    def stop(self) -> None:
        """Stop watching (in ``finally``; harmless if never started)."""
        self._sending = False
        if self._task is not None:
            self._task.cancel()

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                if self._sending:
                    self.disconnected = True
                    self._sender.cancel()
                return
