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
* drops a deleted voice's entries, at once or when its last user finishes;
* never evicts the model's own speakers (its ``spk2info.pt``).

It counts extractions and restores (features loaded from the store instead),
which ``GET /v1/engines`` shows: the proof that caching works.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Literal

Source = Literal["extracted", "restored"]


class SpeakerCache:
    def __init__(self, spk2info: MutableMapping[str, Any], capacity: int) -> None:
        self._spk2info = spk2info
        self._capacity = capacity
        self._lock = threading.Lock()
        self._users: dict[str, int] = {}
        self._order: OrderedDict[str, None] = OrderedDict()
        self._doomed: set[str] = set()
        self.extracted = 0
        self.restored = 0

    @contextmanager
    def use(self, spk_id: str, register: Callable[[], Source]) -> Iterator[str]:
        """Hold ``spk_id`` registered (calling ``register`` if it is not) while
        the block runs. Registration runs under the lock: two requests for one
        new voice extract its features once."""
        with self._lock:
            if spk_id not in self._spk2info:
                if register() == "restored":
                    self.restored += 1
                else:
                    self.extracted += 1
            self._doomed.discard(spk_id)
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
                    if spk_id in self._doomed:
                        self._remove(spk_id)
                self._evict()

    def forget(self, spk_id: str) -> None:
        """Drop an entry now (a request's own prompt) unless it is in use."""
        with self._lock:
            if spk_id not in self._users and spk_id in self._order:
                self._remove(spk_id)

    def drop_prefix(self, prefix: str) -> int:
        """Drop every entry whose id starts with ``prefix`` (a deleted voice);
        entries in use go when their last user finishes."""
        with self._lock:
            victims = [k for k in self._order if k.startswith(prefix)]
            for key in victims:
                if key in self._users:
                    self._doomed.add(key)
                else:
                    self._remove(key)
            return len(victims)

    def _remove(self, key: str) -> None:
        self._order.pop(key, None)
        self._doomed.discard(key)
        self._spk2info.pop(key, None)

    def _evict(self) -> None:
        idle = [k for k in self._order if k not in self._users]
        while len(self._order) > self._capacity and idle:
            self._remove(idle.pop(0))

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, spk_id: object) -> bool:
        return spk_id in self._order
