"""Issue 13: full garbage collections wait for a quiet moment (agent/gcpolicy.py)."""

from __future__ import annotations

import asyncio
import gc

from swarmkit_py.agent.gcpolicy import NEVER, GCPolicy


class Heap:
    def __init__(self, blocks: int) -> None:
        self.blocks = blocks

    def __call__(self) -> int:
        return self.blocks


def test_a_due_full_collection_waits_while_busy_and_runs_when_quiet():
    heap = Heap(1_000_000)
    p = GCPolicy(blocks=heap, min_growth_blocks=1000, max_defer_s=60, defer_full=True)
    p._blocks = heap()
    p._released_at = 0.0
    p.refreeze_s = 1e9
    try:
        assert not p.due() and not p.check(busy=False, now=0.0)  # nothing grew: nothing to do
        heap.blocks = 1_300_000  # grew by 30 %: due
        assert p.due()
        assert not p.check(busy=True, now=1.0) and p.deferred == 1 and p.collections == 0
        assert not p.check(busy=True, now=30.0)
        heap.blocks = 1_310_000
        assert p.check(busy=False, now=31.0)  # the first quiet check collects
        assert p.collections == 1 and p.forced == 0 and gc.get_freeze_count() > 0
        assert not p.due()  # measured from the heap after the collection
    finally:
        gc.unfreeze()


def test_a_busy_spell_defers_it_only_so_long_or_until_the_heap_grew_many_times_over():
    heap = Heap(1_000_000)
    p = GCPolicy(blocks=heap, min_growth_blocks=1000, max_defer_s=60, force_growth=3.0, defer_full=True)
    p._blocks = heap()
    p._released_at = 0.0
    p.refreeze_s = 1e9
    try:
        heap.blocks = 1_300_000
        assert not p.check(busy=True, now=0.0)
        assert not p.check(busy=True, now=59.0)
        assert p.check(busy=True, now=60.0) and p.forced == 1  # deferred max_defer_s
        heap.blocks = 2 * 1_300_000  # doubled since that collection, within one busy second
        assert not p.check(busy=True, now=61.0)
        heap.blocks = 4 * 1_300_000 + 1000  # four times over: now
        assert p.check(busy=True, now=62.0) and p.forced == 2
    finally:
        gc.unfreeze()


async def test_automatic_full_collections_are_off_while_the_deferring_policy_runs():
    before = gc.get_threshold()
    p = GCPolicy(defer_full=True)
    p.start()
    try:
        assert gc.get_threshold()[2] == NEVER
        await asyncio.sleep(0)
    finally:
        p.stop()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


async def test_a_process_that_is_never_quiet_keeps_cpythons_trigger_and_freezes_after_it():
    before = gc.get_threshold()
    p = GCPolicy()
    p.start()
    try:
        assert gc.get_threshold()[2] != NEVER
        gc.collect()  # a full collection: its survivors are frozen once the loop turns
        await asyncio.sleep(0.01)
        assert p.freezes == 1 and gc.get_freeze_count() > 0
    finally:
        p.stop()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
