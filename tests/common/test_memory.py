"""`collector_paused`: automatic cyclic collection off inside, the previous state after."""

from __future__ import annotations

import gc

import pytest

from reflexdrive.common.memory import collector_paused


def test_the_collector_is_off_inside_and_restored_after_even_on_error():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off_and_cycles_are_collected_at_the_end():
    class Node:
        pass

    gc.collect()
    with collector_paused():
        node = Node()
        node.self = node                         # a cycle only the collector frees
        del node
        assert any(type(o) is Node for o in gc.get_objects())
    assert not any(type(o) is Node for o in gc.get_objects())
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
