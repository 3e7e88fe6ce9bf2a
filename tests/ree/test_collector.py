"""The collector policy of open sessions (node/ree/collector.py): held while any holder is
open, CPython's own settings back once the last one releases. The tests' shared session
(tests/ree/conftest.py `ree_session`) may hold it already: each test leaves it as found."""

from __future__ import annotations

import gc
import weakref

import pytest

from node.ree import collector


@pytest.fixture
def alone(monkeypatch):
    """No holder open, CPython's default threshold; the outer state put back after."""
    outer, held = gc.get_threshold(), collector._holders
    monkeypatch.setattr(collector, "_holders", 0)
    monkeypatch.setattr(collector, "_saved", None)
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*outer)
    if held:
        gc.freeze()  # the outer holders' objects out of the collector's sight again


def test_young_threshold_held_while_any_holder_is_open(alone):
    collector.hold()
    collector.hold()
    assert gc.get_threshold() == (collector.YOUNG, 10, 10)
    assert gc.get_freeze_count() > 0
    collector.release()
    # one holder still open: still spaced out, its objects frozen again
    assert gc.get_threshold() == (collector.YOUNG, 10, 10)
    assert gc.get_freeze_count() > 0
    collector.release()
    assert gc.get_threshold() == (700, 10, 10)
    collector.release()  # a release without a holder changes nothing
    assert gc.get_threshold() == (700, 10, 10)


def test_a_released_cycle_is_collected(alone):
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
