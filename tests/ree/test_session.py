"""Session lifetime: `Session.__init__` freezes the collector's view (decode steps without full
collections), so a session must hand its executor back when closed, or a process that runs
several sessions keeps every one (the CLI tests alone grew by 11 GB)."""

from __future__ import annotations

import gc
import weakref

from node.ree.session import Session


def test_a_closed_session_frees_its_executor(ree_model):
    with Session(loaded=ree_model) as sess:
        ex = weakref.ref(sess.executor)
        assert ex() is not None and gc.get_freeze_count() > 0
    assert ex() is None
    sess.close()  # closing twice is harmless

