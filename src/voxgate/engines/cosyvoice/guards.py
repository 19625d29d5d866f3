"""Guards against upstream CosyVoice's shared per-request state.

Upstream's model object (``cosyvoice.model``, a ``CosyVoice2Model``...) is one
per process, and keeps request state on it:

* ``token_hop_len`` is written by every streamed chunk and never reset, so it
  grows 25 -> 50 -> 100 tokens *across* requests: from about the third
  request the first chunk waits for ~4 s of audio, and concurrent streams
  change each other's chunking (the hop-length drift bug);
* per-request dicts (``tts_speech_token_dict``, ``llm_end_dict``,
  ``hift_cache_dict``...) are only cleaned when a generator runs to its end:
  a cancelled request leaves its entries behind for ever;
* the LLM thread of a request has no way to stop: a client that hangs up
  keeps the GPU busy until the whole segment has been generated.

:class:`RequestModel` is a per-call view of the shared model: reads of
weights and modules go to the shared object, but ``token_hop_len`` starts
from its pristine value on every ``tts`` call and lives on the view, and the
per-request dicts are the view's own (garbage once the view is). Upstream's
methods run unchanged, bound to the view. When the request's stop event is
set, appending a token raises :class:`Cancelled` (ending the LLM thread) and
``llm_end_dict`` reads as finished (ending the streaming loop).
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

_hook_lock = threading.Lock()
_hook_installed = False


class Cancelled(Exception):
    """Raised inside upstream's LLM thread to stop a cancelled request."""


class _Tokens(list[Any]):
    __slots__ = ("_stop",)

    def __init__(self, items: list[Any], stop: threading.Event) -> None:
        super().__init__(items)
        self._stop = stop

    def append(self, item: Any) -> None:
        if self._stop.is_set():
            raise Cancelled()
        super().append(item)


class _TokenDict(dict[str, Any]):
    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self._stop = stop

    def __setitem__(self, key: str, value: Any) -> None:
        if type(value) is list:
            value = _Tokens(value, self._stop)
        super().__setitem__(key, value)


class _EndDict(dict[str, Any]):
    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self._stop = stop

    def __getitem__(self, key: str) -> Any:
        if self._stop.is_set():
            return True
        return super().__getitem__(key)


class RequestModel:
    """A per-call view of upstream's shared model object (see the module)."""

    def __init__(self, shared: Any, token_hop_len: int | None, stop: threading.Event) -> None:
        own = self.__dict__
        own["_shared"] = shared
        own["_initial_hop"] = token_hop_len
        for name, value in vars(shared).items():
            if name.endswith("_dict") and isinstance(value, dict):
                if name == "tts_speech_token_dict":
                    own[name] = _TokenDict(stop)
                elif name == "llm_end_dict":
                    own[name] = _EndDict(stop)
                else:
                    own[name] = {}
        if token_hop_len is not None:
            own["token_hop_len"] = token_hop_len

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not on the view: methods of the model's class
        # are bound to the view (so their writes land here), the rest is shared.
        attr = inspect.getattr_static(type(self._shared), name, None)
        if inspect.isfunction(attr):
            return attr.__get__(self, type(self._shared))
        return getattr(self._shared, name)

    def tts(self, *args: Any, **kwargs: Any) -> Any:
        """Upstream's ``tts`` with the hop length reset: each call (one text
        segment) starts its chunking from the pristine value, as upstream does
        for its first request."""
        if self._initial_hop is not None:
            self.__dict__["token_hop_len"] = self._initial_hop
        return type(self._shared).tts(self, *args, **kwargs)


def install_thread_hook() -> None:
    """Keep :class:`Cancelled` out of the logs: it ends upstream's LLM thread
    on purpose, and the default ``threading.excepthook`` would print it as a
    crash. Other exceptions reach the previous hook unchanged."""
    global _hook_installed
    with _hook_lock:
        if _hook_installed:
            return
        previous = threading.excepthook

        def hook(args: threading.ExceptHookArgs) -> None:
            if args.exc_type is Cancelled:
                return
            previous(args)

        threading.excepthook = hook
        _hook_installed = True
