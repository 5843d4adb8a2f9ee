"""Is a history of one register linearizable? A Wing & Gong search with Lowe's memoization
(the algorithm of Knossos' `wgl` and of Porcupine), for a register with read, write and
compare-and-set.

The model: the register holds one value (`initial` before any write). `read -> v` is legal when
it holds v; `write v` sets it; `cas (x, y)` that returned ok needs x and sets y; a cas that
*failed* is a promise that it did not hold x at some instant between invoke and answer (the
clients only record `fail` for the store's own "update out of sequence" verdict, which is
definite). Real-time order: an op whose answer came before another's invoke must take effect
first. Operations that ended `info` (unknown) may take effect at any time after their invoke,
or never: a read is dropped; a write or cas is linearized only at a point where it changes the
register, because an unknown op that changed nothing can always be moved to the very end of the
order, where it is legal whatever the register holds and nobody observes it. That keeps the
search from trying every subset of unknown ops at every step.

The search walks the history's calls and returns in time order. At a call it tries to
linearize that op now (if legal in the current state and the pair (set of linearized ops,
state) was not explored before); at the return of an op it has not linearized yet it
backtracks. The history is linearizable when every op that has a return is linearized.

When it is not, `explain()` names the anomaly from the ops themselves (a read of a value
nobody wrote, a stale read, a cas that succeeded twice from one value) and always reports the
op at which the longest valid prefix got stuck, the register's value there, and the ops
concurrent with it.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .history import FAIL, INFO, INVOKE, NEMESIS, OK, Event

DEFAULT_BUDGET = 20_000_000  # search steps before giving up with an "unknown" verdict


@dataclass
class Op:
    """One client operation: its invoke and its completion folded together."""

    index: int
    process: Any
    f: str  # read | write | cas
    value: Any  # read: what it returned; write: the value; cas: (expected, new)
    status: str  # ok | fail | info
    call: float
    ret: float  # math.inf when the outcome is unknown
    node: str | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)
    answered: float | None = None  # when the client got an answer (or gave up); None: never

    def describe(self) -> str:
        if self.f == "read":
            what = f"read -> {self.value!r}" if self.status == OK else "read"
        elif self.f == "cas":
            what = f"cas {self.value[0]!r} -> {self.value[1]!r}"
        else:
            what = f"write {self.value!r}"
        end = "?" if math.isinf(self.ret) else f"{self.ret:.3f}"
        via = f" via {self.node}" if self.node else ""
        why = f" ({self.error})" if self.error and self.status != OK else ""
        return f"#{self.index} p{self.process} {what} {self.status}{why}{via} [{self.call:.3f}, {end}]"

    def to_dict(self) -> dict:
        return {"index": self.index, "process": self.process, "f": self.f, "value": self.value,
                "status": self.status, "call": self.call, "ret": None if math.isinf(self.ret) else self.ret,
                "node": self.node, "error": self.error}


def _hashable(v: Any) -> Hashable:
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


def pair(events: Iterable[Event]) -> list[Op]:
    """Fold each invoke with its process's next completion; an invoke never answered is info."""
    pending: dict[Any, tuple[Event, int]] = {}
    ops: list[Op] = []
    last_time = 0.0

    def finish(inv: Event, status: str, value: Any, ret: float, comp: Event | None) -> None:
        ops.append(Op(len(ops), inv.process, inv.f, value, status, inv.time, ret, inv.node,
                      comp.error if comp else "no answer before the history ended",
                      dict(comp.extra) if comp else {}, comp.time if comp else None))

    for ev in events:
        last_time = max(last_time, ev.time)
        if ev.process == NEMESIS:
            continue
        if ev.type == INVOKE:
            if ev.process in pending:
                raise ValueError(f"process {ev.process} invoked {ev.f} at {ev.time:.3f} while its "
                                 f"{pending[ev.process][0].f} is still open: give it a new process number")
            pending[ev.process] = (ev, len(ops))
            continue
        if ev.process not in pending:
            raise ValueError(f"process {ev.process}: a {ev.type} at {ev.time:.3f} without an invoke")
        inv, _ = pending.pop(ev.process)
        if ev.f != inv.f:
            raise ValueError(f"process {ev.process}: {inv.f} invoked, {ev.f} completed at {ev.time:.3f}")
        if inv.f == "read":
            value = _hashable(ev.value) if ev.type == OK else None
        else:
            value = _hashable(inv.value)
        ret = math.inf if ev.type == INFO else ev.time
        finish(inv, ev.type, value, ret, ev)
    for inv, _ in pending.values():
        finish(inv, INFO, None if inv.f == "read" else _hashable(inv.value), math.inf, None)
    ops.sort(key=lambda o: (o.call, o.index))
    for i, o in enumerate(ops):
        o.index = i
    return ops


def _step(state: Hashable, op: Op) -> tuple[bool, Hashable]:
    """Is `op` legal in `state`, and what state follows? (info ops: only when they change it)"""
    if op.f == "read":
        return state == op.value, state
    if op.f == "write":
        if op.status == INFO and state == op.value:
            return False, state
        return True, op.value
    expected, new = op.value
    if op.status == FAIL:
        return state != expected, state
    if state == expected:
        return True, new
    return False, state


def _relevant(op: Op) -> bool:
    if op.f == "read":
        return op.status == OK
    if op.f == "write":
        return op.status in (OK, INFO)
    return True


class _Node:
    __slots__ = ("op", "is_call", "match", "prev", "next")

    def __init__(self, op: Op | None, is_call: bool):
        self.op = op
        self.is_call = is_call
        self.match: _Node | None = None
        self.prev: _Node | None = None
        self.next: _Node | None = None


@dataclass
class Anomaly:
    kind: str  # phantom-read | stale-read | double-cas | not-linearizable
    message: str
    ops: list[Op]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message, "ops": [o.to_dict() for o in self.ops]}


@dataclass
class Result:
    valid: bool | None  # None: the search ran out of budget
    ops: list[Op]
    checked: int  # ops the search had to place
    steps: int
    anomalies: list[Anomaly] = field(default_factory=list)
    stuck: Op | None = None  # the op the longest valid prefix could not get past
    stuck_state: Any = None
    prefix: list[Op] = field(default_factory=list)  # that prefix, in linearization order

    def summary(self) -> str:
        if self.valid:
            return f"linearizable ({self.checked} ops placed, {self.steps} search steps)"
        if self.valid is None:
            return f"unknown: the search gave up after {self.steps} steps ({self.checked} ops)"
        return "NOT linearizable: " + "; ".join(a.message for a in self.anomalies)

    def to_dict(self) -> dict:
        return {"valid": self.valid, "ops": len(self.ops), "checked": self.checked, "steps": self.steps,
                "anomalies": [a.to_dict() for a in self.anomalies],
                "stuck": self.stuck.to_dict() if self.stuck else None, "stuck_state": self.stuck_state}


def check(events: Iterable[Event] | Sequence[Op], initial: Any = None, budget: int = DEFAULT_BUDGET) -> Result:
    """Check a history (events, or ops from `pair`) of one register that starts at `initial`."""
    evs = list(events)
    ops = evs if evs and isinstance(evs[0], Op) else pair(evs)
    todo = [o for o in ops if _relevant(o)]

    # The event list: calls and (for ops with a known outcome) returns, in time order; at equal
    # times calls first, so two ops that touch the same instant count as concurrent.
    points: list[tuple[float, int, int, _Node]] = []
    for o in todo:
        call = _Node(o, True)
        points.append((o.call, 0, o.index, call))
        if not math.isinf(o.ret):
            ret = _Node(o, False)
            call.match, ret.match = ret, call
            points.append((o.ret, 1, o.index, ret))
    points.sort(key=lambda p: p[:3])
    head = _Node(None, False)
    prev = head
    for *_, node in points:
        prev.next, node.prev = node, prev
        prev = node

    def lift(n: _Node) -> None:
        n.prev.next = n.next
        if n.next:
            n.next.prev = n.prev
        m = n.match
        if m is not None:
            m.prev.next = m.next
            if m.next:
                m.next.prev = m.prev

    def unlift(n: _Node) -> None:
        m = n.match
        if m is not None:
            m.prev.next = m
            if m.next:
                m.next.prev = m
        n.prev.next = n
        if n.next:
            n.next.prev = n

    returns_left = sum(1 for p in points if not p[3].is_call)
    state: Hashable = _hashable(initial)
    linearized = 0
    cache: set[tuple[int, Hashable]] = set()
    stack: list[tuple[_Node, Hashable]] = []
    best = (-1, None, None, ())  # (ops placed, stuck op, state, prefix)
    steps = 0
    entry = head.next
    while returns_left and entry is not None:
        steps += 1
        if steps > budget:
            return Result(None, ops, len(todo), steps)
        if entry.is_call:
            ok, new_state = _step(state, entry.op)
            if ok:
                bits = linearized | (1 << entry.op.index)
                if (bits, new_state) not in cache:
                    cache.add((bits, new_state))
                    stack.append((entry, state))
                    linearized, state = bits, new_state
                    if entry.match is not None:
                        returns_left -= 1
                    lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
            continue
        # the return of an op we never placed: this branch is dead
        if len(stack) > best[0]:
            best = (len(stack), entry.op, state, tuple(n.op for n, _ in stack))
        if not stack:
            break
        node, state = stack.pop()
        linearized &= ~(1 << node.op.index)
        if node.match is not None:
            returns_left += 1
        unlift(node)
        entry = node.next
    if not returns_left:
        return Result(True, ops, len(todo), steps)
    result = Result(False, ops, len(todo), steps, stuck=best[1], stuck_state=best[2], prefix=list(best[3]))
    result.anomalies = explain(ops, initial, result)
    return result


def explain(ops: Sequence[Op], initial: Any, result: Result | None = None) -> list[Anomaly]:
    """Name what went wrong, with the ops that prove it (called on a history that failed)."""
    init = _hashable(initial)
    writers: dict[Hashable, list[Op]] = defaultdict(list)  # value -> ops that may have written it
    for o in ops:
        if o.f == "write" and o.status in (OK, INFO):
            writers[o.value].append(o)
        elif o.f == "cas" and o.status in (OK, INFO):
            writers[o.value[1]].append(o)
    out: list[Anomaly] = []

    for o in ops:
        if o.f == "read" and o.status == OK and o.value != init and o.value not in writers:
            out.append(Anomaly("phantom-read", f"{o.describe()} returned a value no write could have produced", [o]))

    ok_cas_from: dict[Hashable, list[Op]] = defaultdict(list)
    for o in ops:
        if o.f == "cas" and o.status == OK:
            ok_cas_from[o.value[0]].append(o)
    for v, cs in ok_cas_from.items():
        sources = len(writers.get(v, ())) + (1 if v == init else 0)
        if len(cs) > sources:
            out.append(Anomaly("double-cas", f"{len(cs)} cas from {v!r} succeeded but {v!r} was written only "
                                             f"{sources} time(s): " + "; ".join(c.describe() for c in cs), cs))

    # A read of v after an acknowledged op had replaced v, when v could not have come back.
    replaced_by: dict[Hashable, list[Op]] = defaultdict(list)
    for o in ops:
        if o.f == "cas" and o.status == OK and o.value[0] != o.value[1]:
            replaced_by[o.value[0]].append(o)
    for o in ops:
        if o.f != "read" or o.status != OK:
            continue
        sources = writers.get(o.value, [])
        if len(sources) + (1 if o.value == init else 0) != 1:
            continue  # written more than once: it could have come back
        for z in replaced_by.get(o.value, ()):
            if z.ret < o.call:
                w = sources[0] if sources else None
                lost = [r for r in ops if r.f == "read" and r.status == OK and r.value == z.value[1]]
                msg = (f"stale read: {o.describe()}, but {z.describe()} had replaced {o.value!r} "
                       f"{o.call - z.ret:.3f}s before the read was invoked")
                if not lost:
                    msg += f" (and no read ever saw {z.value[1]!r}: the acknowledged write may be lost)"
                out.append(Anomaly("stale-read", msg, [x for x in (w, z, o) if x is not None]))
                break

    if result is not None and result.stuck is not None:
        s = result.stuck
        concurrent = [o for o in ops if o is not s and _relevant(o) and o.call <= s.ret and o.ret >= s.call]
        msg = (f"no order of the ops fits: the longest valid prefix ({len(result.prefix)} ops) leaves the "
               f"register at {result.stuck_state!r} and cannot get past {s.describe()}")
        if concurrent:
            msg += f"; concurrent with it: {', '.join(f'#{o.index}' for o in concurrent[:12])}"
        if not out:
            out.append(Anomaly("not-linearizable", msg, [s, *concurrent[:12]]))
        else:
            out.append(Anomaly("stuck-at", msg, [s]))
    return out


def summarize(ops: Sequence[Op]) -> dict[str, int]:
    """Counts for a report: ops by kind and outcome (read_ok, cas_fail, ...)."""
    c = Counter(f"{o.f}_{o.status}" for o in ops)
    return dict(sorted(c.items()))
