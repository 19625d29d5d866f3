"""Prompt features kept in the model (``add_zero_shot_spk``), safely.

Extracting a prompt's features (speech tokens, speaker embedding, mel
features) is the main cost of a zero-shot call, and upstream pays it again
for every text segment. Registering the prompt once under an id
(``add_zero_shot_spk``) and passing ``zero_shot_spk_id`` skips that. Upstream
keeps those features in ``frontend.spk2info``, a plain dict mutated without a
lock and never trimmed, so this cache:

* registers each id once, under one lock, and counts the requests using it;
* evicts only entries no request is using, least recently used first, beyond
  ``capacity`` (memory stays bounded however many voices come and go);
* never evicts the model's own speakers (its ``spk2info.pt``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any


class SpeakerCache:
    def __init__(self, spk2info: MutableMapping[str, Any], capacity: int) -> None:
        self._spk2info = spk2info
        self._capacity = capacity
        self._lock = threading.Lock()
        self._users: dict[str, int] = {}
        self._order: OrderedDict[str, None] = OrderedDict()
        self.registrations = 0

    @contextmanager
    def use(self, spk_id: str, register: Callable[[], object]) -> Iterator[str]:
        """Hold ``spk_id`` registered (calling ``register`` if it is not) while
        the block runs. Registration runs under the lock: two requests for one
        new voice extract its features once."""
        with self._lock:
            if spk_id not in self._spk2info:
                register()
                self.registrations += 1
            self._users[spk_id] = self._users.get(spk_id, 0) + 1
            self._order[spk_id] = None
            self._order.move_to_end(spk_id)
        try:
            yield spk_id
        finally:
            with self._lock:
                self._users[spk_id] -= 1
                if self._users[spk_id] == 0:
                    del self._users[spk_id]
                self._evict()

    def forget(self, spk_id: str) -> None:
        """Drop an entry now (a request's own prompt) unless it is in use."""
        with self._lock:
            if spk_id not in self._users and spk_id in self._order:
                del self._order[spk_id]
                self._spk2info.pop(spk_id, None)

    def _evict(self) -> None:
        idle = [k for k in self._order if k not in self._users]
        while len(self._order) > self._capacity and idle:
            victim = idle.pop(0)
            del self._order[victim]
            self._spk2info.pop(victim, None)

    def __len__(self) -> int:
        return len(self._order)
