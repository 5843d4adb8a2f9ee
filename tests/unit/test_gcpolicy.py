"""Issue 13: the agents' collector settings (agent/gcpolicy.py): CPython's trigger for full
collections, their survivors frozen after each."""

from __future__ import annotations

import asyncio
import gc

from swarmkit_py.agent.gcpolicy import THRESHOLDS, GCPolicy


async def test_a_process_that_is_never_quiet_keeps_cpythons_trigger_and_freezes_after_it():
    before = gc.get_threshold()
    p = GCPolicy()
    p.start()
    try:
        assert gc.get_threshold() == THRESHOLDS
        gc.collect()  # a full collection: its survivors are frozen once the loop turns
        await asyncio.sleep(0.01)
        assert p.freezes == 1 and gc.get_freeze_count() > 0
    finally:
        p.stop()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
