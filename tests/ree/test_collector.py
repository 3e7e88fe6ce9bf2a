"""The collector policy of open sessions (node/ree/collector.py): held while any holder is
open, CPython's own settings back once the last one releases."""

from __future__ import annotations

import gc
import weakref

from node.ree import collector


def test_young_threshold_held_while_any_holder_is_open():
    before = gc.get_threshold()
    collector.hold()
    collector.hold()
    try:
        assert gc.get_threshold()[0] == max(collector.YOUNG, before[0])
        assert gc.get_freeze_count() > 0
        collector.release()
        # one holder still open: still spaced out, its objects frozen again
        assert gc.get_threshold()[0] == max(collector.YOUNG, before[0])
        assert gc.get_freeze_count() > 0
    finally:
        collector.release()
    assert gc.get_threshold() == before
    collector.release()  # a release without a holder changes nothing
    assert gc.get_threshold() == before


def test_a_released_cycle_is_collected():
    """What the holder dropped before releasing goes at once, cycles included."""
    class Node:
        pass

    collector.hold()
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone: list[bool] = []
    weakref.finalize(a, gone.append, True)
    del a, b
    collector.release()
    assert gone == [True]
