"""What clients and the nemesis did, in order, with monotonic times: the checker's input.

The shape is Jepsen's: every client operation is an `invoke` event followed by exactly one
completion from the same process -- `ok` (it took effect, with what it observed), `fail` (it
certainly did not take effect) or `info` (unknown: a timeout, a dropped connection, a 5xx
after the request left; it may take effect at any later time, or never). A process whose op
ended `info` may still have that request in flight, so it continues under a new process number
(the checker must not order its next op after the unknown one). Nemesis events are `info`
events of the process "nemesis" whose `f` is `start`/`stop` and whose value names the fault.

Times are `time.monotonic()` seconds relative to the history's start, taken just before a
request is sent and just after its answer arrives, so the interval always covers the real
moment the operation took effect.

Saved as JSON lines, one event per line, so a long run can be read with `jq` or reloaded by
`load()` and checked again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
COMPLETIONS = (OK, FAIL, INFO)
NEMESIS = "nemesis"


@dataclass
class Event:
    process: int | str
    type: str  # invoke | ok | fail | info
    f: str  # read | cas | write | start | stop
    value: Any
    time: float
    node: str | None = None  # the manager the client talked to
    error: str | None = None  # why a completion is fail/info
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the service version a read saw

    def to_json(self) -> str:
        d = {k: v for k, v in asdict(self).items() if v not in (None, {})}
        return json.dumps(d, sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, d: dict) -> Event:
        return cls(process=d["process"], type=d["type"], f=d["f"], value=d.get("value"),
                   time=float(d["time"]), node=d.get("node"), error=d.get("error"),
                   extra=d.get("extra") or {})


class History:
    """A thread-safe, append-only event log with one clock for every client and the nemesis."""

    def __init__(self, t0: float | None = None):
        self.t0 = time.monotonic() if t0 is None else t0
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def add(self, process: int | str, type_: str, f: str, value: Any = None, node: str | None = None,
            error: str | None = None, **extra: Any) -> Event:
        with self._lock:  # the time is taken under the lock so the log is in time order
            ev = Event(process, type_, f, value, self.now(), node, error, extra)
            self._events.append(ev)
            return ev

    def invoke(self, process: int, f: str, value: Any = None, node: str | None = None) -> Event:
        return self.add(process, INVOKE, f, value, node)

    def complete(self, process: int, type_: str, f: str, value: Any = None, node: str | None = None,
                 error: str | None = None, **extra: Any) -> Event:
        if type_ not in COMPLETIONS:
            raise ValueError(f"a completion is one of {COMPLETIONS}, not {type_!r}")
        return self.add(process, type_, f, value, node, error, **extra)

    def nemesis(self, f: str, fault: str, **detail: Any) -> Event:
        return self.add(NEMESIS, INFO, f, {"fault": fault, **detail})

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self._events)

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            for ev in self.events:
                f.write(ev.to_json() + "\n")
        return path


def load(path: Path | str) -> list[Event]:
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(Event.from_dict(json.loads(line)))
                except (ValueError, KeyError) as e:
                    raise ValueError(f"{path}:{n}: not a history event ({e})") from None
    return out


def client_events(events: Iterable[Event]) -> list[Event]:
    return [e for e in events if e.process != NEMESIS]


def fault_intervals(events: Iterable[Event], end: float | None = None) -> list[tuple[str, float, float, dict]]:
    """(fault kind, start, stop, detail) for every fault the nemesis started; a fault still
    active at the end of the history lasts until `end` (or the last event)."""
    evs = list(events)
    last = end if end is not None else (evs[-1].time if evs else 0.0)
    open_: dict[tuple, tuple[float, dict]] = {}
    out = []
    for e in evs:
        if e.process != NEMESIS or not isinstance(e.value, dict):
            continue
        key = (e.value.get("fault"), json.dumps(e.value.get("target"), sort_keys=True))
        if e.f == "start":
            open_[key] = (e.time, e.value)
        elif e.f == "stop" and key in open_:
            t, detail = open_.pop(key)
            out.append((key[0], t, e.time, detail))
    for key, (t, detail) in open_.items():
        out.append((key[0], t, last, detail))
    return sorted(out, key=lambda x: x[1])
