"""Start-up objects are frozen out of the collector's full passes."""

from __future__ import annotations

import gc

from voxgate.heap import freeze_startup_heap


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_survivors_are_frozen_and_startup_cycles_collected_first() -> None:
    gc.unfreeze()
    try:
        Cycle()  # garbage only the cyclic collector can free
        kept = Cycle()
        freeze_startup_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # everything this test process has imported
        live = gc.get_objects()  # what full passes walk: the frozen are not there
        assert not any(isinstance(o, Cycle) for o in live)  # the garbage went, kept froze
        assert gc.is_tracked(kept)
    finally:
        gc.unfreeze()
