"""One validated object for equal parts of many tasks, as the store reads them.

The tasks of a service carry equal copies of its TaskTemplate (`Spec`) and of its endpoint
(`Endpoint`): a Raft entry of 500 task creates or status reports carries 500 equal copies,
and every manager validated each one into a model of its own. Validating those two parts was
more than half of reading a task back, the largest share of a manager's event loop during a
10,000-task fill (issue 13), and each copy cost memory for as long as the task lived.

`Interner` keys each part by its msgpack bytes and validates a part it has not seen recently
once; the tasks it goes into share that one object. That is safe because stored objects are
never changed in place (docs/design/house.md; every writer clones or copies first: `Batch.updated`,
`model_copy(update=...)`), which is also why the scheduler and the status writer already
share a task's spec between its stored version and their update. Equal bytes validate to
equal objects, so every manager still holds equal state (snapshots compare byte for byte).

Bounded: the newest `capacity` parts are kept (a cluster has a handful of distinct templates
per service version), so a stream of distinct specs costs a dict of that size, nothing more.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .objects import Endpoint, TaskSpec

TASK_PARTS: tuple[tuple[str, type], ...] = (("Spec", TaskSpec), ("Endpoint", Endpoint))
"""Wire keys of a task's shareable parts and their models (`to_wire` spells them so)."""


class Interner:
    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._parts: dict[tuple[str, bytes], Any] = {}
        self.hits = 0
        self.misses = 0

    def payload(self, kind: str, payload: Any) -> Any:
        """An object's wire payload as the store reads it: a task's with its shared parts,
        anything else as it is (entries and snapshots both read through here)."""
        if kind == "task" and isinstance(payload, dict):
            return self.task_payload(payload)
        return payload

    def task_payload(self, payload: dict) -> dict:
        """`payload` (a task's wire dict) with its shareable parts as validated models, shared
        with earlier tasks whose parts were equal. A part that does not validate raises
        pydantic's ValidationError, as validating the whole task would."""
        out = None
        for key, model in TASK_PARTS:
            raw = payload.get(key)
            if not isinstance(raw, dict):
                continue
            try:
                k = (key, msgpack.packb(raw, use_bin_type=True))
            except (TypeError, ValueError, OverflowError):  # not re-encodable: validate it as it is
                continue
            obj = self._parts.get(k)
            if obj is None:
                self.misses += 1
                obj = model.model_validate(raw)
                if len(self._parts) >= self.capacity:
                    del self._parts[next(iter(self._parts))]  # the oldest
                self._parts[k] = obj
            else:
                self.hits += 1
            if out is None:
                out = dict(payload)
            out[key] = obj
        return payload if out is None else out
