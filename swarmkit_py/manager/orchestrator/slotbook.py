"""A replicated service's slots as the replicated orchestrator keeps count of them.

A pass over a service needs four things: which slots 1..N hold a task, how many of its tasks
are on their way (the starting window), which slots above N still hold one (scale-down), and
the lowest slot that is missing. Working those out from the store each pass was a walk over
all of the service's tasks and then over 1..N: with `replicas: 100000` typed by mistake,
20,000 and more tasks per pass for a few hundred new ones, the biggest share of the manager's
loop after Raft apply (issue 13). A `SlotBook` keeps them, and is kept up to date from the
store's task events, so a pass costs what changed plus what it writes.

It is a cache of the store, never a second truth:
- `put(task)` / `drop(task_id)` set a task's contribution to what the event says it is now
  (its old contribution is taken back first), so applying an event twice, or applying events a
  rebuilt book already reflects, leaves the same book. `base` is the store index a book was
  built at: events at or below it are already in.
- The orchestrator rebuilds books from a view whenever it cannot vouch for them (a full pass,
  a lost watch or a snapshot restore, a conflicted pass, a batch it claimed slots for that did
  not commit); see `ReplicatedOrchestrator`.
- `claim(slot)` is the one optimistic step: a slot the pass creates a task in stops being
  missing before the creation's event arrives (so the next pass does not make a second one);
  a book whose claims did not commit is thrown away.

Missing slots are found without looking at held ones again: every slot below `scan` is held
or in `holes` (a heap of slots that lost their last holder), so the lowest missing slot is the
top of `holes` or the first unheld slot from `scan` on, and `scan` only moves up. Slots above N
that hold a task are in `above` (and a heap of them, for lowest-first scale-down); a change of
N moves the slots between the old and the new N across, once.
"""

from __future__ import annotations

from collections.abc import Iterable
from heapq import heapify, heappop, heappush

from ...store import Task, TaskState
from .slots import holds, runnable


def starting(t: Task) -> bool:
    """Counted against the starting window: meant to run, not running yet."""
    return runnable(t) and t.status.state < TaskState.RUNNING


_HOLDS, _STARTING = 2, 1
"""Bits of a task's entry in `SlotBook.tasks` (the slot is the entry shifted right by two):
an int per task, not a tuple, because a 100,000-replica service has tens of thousands."""


class SlotBook:
    """One service's slotted tasks that are not yet desired `remove`, and what they hold."""

    __slots__ = ("base", "n", "tasks", "removing", "held", "starting", "_starting_at", "above", "_above",
                 "_holes", "_in_holes", "scan")

    def __init__(self, n: int, base: int) -> None:
        self.base = base
        """Store index this book was built at: events at or below it are already in."""
        self.n = n
        """The replicas the book sorts slots by (`set_n` when the spec changes)."""
        self.tasks: dict[str, int] = {}
        """Task ID -> slot << 2 | holds << 1 | starting, for every slotted task with desired
        state before `remove` (the ones a service's deletion still has to mark)."""
        self.removing: set[str] = set()
        """Slotted tasks desired `remove` that the store still has (the reaper deletes them):
        a deleted service's book is dropped once this and `tasks` are empty."""
        self.held: dict[int, int] = {}
        """Slot -> how many tasks hold it (any slot, above N too)."""
        self.starting = 0
        """Tasks on their way (see `starting`) holding a slot in 1..N."""
        self._starting_at: dict[int, int] = {}
        self.above: set[int] = set()
        """Held slots above N: each of their tasks is to be stopped."""
        self._above: list[int] = []  # heap over `above`, with stale entries
        self._holes: list[int] = []  # heap of slots below `scan` that lost their last holder
        self._in_holes: set[int] = set()
        self.scan = 1
        """Every slot below this is held, in `holes`, or claimed by the pass."""

    @classmethod
    def build(cls, tasks: Iterable[Task], n: int, base: int) -> SlotBook:
        book = cls(n, base)
        for t in tasks:
            book.put(t)
        return book

    # -- kept from events -------------------------------------------------------------------

    def put(self, t: Task) -> None:
        """The task is now `t` (created or updated)."""
        if t.slot is None:
            return
        if t.desired_state >= TaskState.REMOVE:
            self.drop(t.id)
            self.removing.add(t.id)
            return
        h = holds(t)
        s = h and starting(t)
        entry = t.slot << 2 | h << 1 | s
        old = self.tasks.get(t.id)
        if old == entry:
            return
        if old is not None and old | _STARTING == entry | _STARTING and h:
            # a status report: still holding the same slot, only on its way or not any more
            self.tasks[t.id] = entry
            self._count_starting(t.slot, 1 if s else -1)
            return
        self.drop(t.id)
        self.tasks[t.id] = entry
        if h:
            self._hold(t.slot, s)

    def drop(self, task_id: str) -> None:
        """The task is gone (deleted), or about to be put again."""
        entry = self.tasks.pop(task_id, None)
        if entry is None:
            self.removing.discard(task_id)
            return
        if not entry & _HOLDS:
            return
        slot = entry >> 2
        if entry & _STARTING:
            self._count_starting(slot, -1)
        n = self.held[slot] - 1
        if n:
            self.held[slot] = n
            return
        del self.held[slot]
        if slot > self.n:
            self.above.discard(slot)
        if slot < self.scan and slot not in self._in_holes:
            self._in_holes.add(slot)
            heappush(self._holes, slot)

    def _count_starting(self, slot: int, delta: int) -> None:
        n = self._starting_at.get(slot, 0) + delta
        if n:
            self._starting_at[slot] = n
        else:
            del self._starting_at[slot]
        if slot <= self.n:
            self.starting += delta

    def _hold(self, slot: int, s: bool) -> None:
        if s:
            self._count_starting(slot, 1)
        n = self.held.get(slot, 0)
        self.held[slot] = n + 1
        if not n and slot > self.n:
            self.above.add(slot)
            heappush(self._above, slot)

    @property
    def empty(self) -> bool:
        """No slotted task of the service is left in the store."""
        return not self.tasks and not self.removing

    def set_n(self, n: int) -> None:
        """The service's replicas are now `n`: move the held slots between the old and the new
        N across (the work a scale does anyway: those tasks are to be stopped, or kept)."""
        old = self.n
        if n == old:
            return
        self.n = n
        if n < old:
            gone = range(n + 1, old + 1) if old - n <= len(self.held) else [s for s in self.held if n < s <= old]
            for s in gone:
                if s in self.held:
                    self.starting -= self._starting_at.get(s, 0)
                    self.above.add(s)
                    heappush(self._above, s)
            if len(self._above) > 2 * len(self.above) + 64:
                self._above = list(self.above)
                heapify(self._above)
        else:
            back = [s for s in self.above if s <= n]
            for s in back:
                self.above.discard(s)
                self.starting += self._starting_at.get(s, 0)

    # -- read by a pass ---------------------------------------------------------------------

    def lowest_above(self, limit: int) -> list[int]:
        """Up to `limit` held slots above N, lowest first."""
        heap, out = self._above, []
        while heap and len(out) < limit:
            s = heappop(heap)
            if s in self.above and (not out or out[-1] != s):
                out.append(s)
        for s in out:
            heappush(heap, s)
        return out

    def next_missing(self) -> int | None:
        """The lowest slot in 1..N without a task (nor one claimed by this pass), or None."""
        holes, held = self._holes, self.held
        while holes and holes[0] in held:
            self._in_holes.discard(heappop(holes))
        if holes and holes[0] <= self.n:
            return holes[0]
        while self.scan <= self.n and self.scan in held:
            self.scan += 1
        return self.scan if self.scan <= self.n else None

    def claim(self, slot: int) -> None:
        """The pass creates a task in `slot` (the one `next_missing` returned): not missing any
        more. Its creation's event makes it held; a batch that does not commit must drop the
        book."""
        if self._holes and self._holes[0] == slot:
            self._in_holes.discard(heappop(self._holes))
        elif slot == self.scan:
            self.scan += 1
        else:
            raise ValueError(f"slot {slot} is not the next missing one")

    def missing(self) -> list[int]:
        """Every missing slot in 1..N, from the book's own structures (for tests and checks:
        O(N))."""
        below = sorted(s for s in self._in_holes if s not in self.held and s <= self.n)
        return below + [s for s in range(self.scan, self.n + 1) if s not in self.held]


__all__ = ["SlotBook", "starting"]
