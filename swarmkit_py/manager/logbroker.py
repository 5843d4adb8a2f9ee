"""The leader's log broker (swarmkit's LogBroker): `docker service logs` fan-in.

A subscription names a service (or one task). The broker asks every node with a session
that runs or ran one of its tasks to publish that task's logs (``logs.subscribe``), and when
following, watches the store for the service's new tasks and asks their nodes too. Workers
publish with ``logs.publish`` (proto/logs.py); each subscription has one bounded queue, and a
publish takes only what fits: the worker keeps the rest and retries, so memory is bounded at
every hop and a slow API reader only slows the log streams feeding it.

Subscriptions come from this manager's own API (logreader.py, through `subscribe`/`next`)
or from another manager's (``logs.open``/``logs.next``: a follower forwards to the leader,
as swarmkit's do). The broker keeps, per subscription and task, the timestamp of the last
line it accepted, so that a node that opens a new session (its agent restarted, or it came
back to this leader) is asked again from just after it: a followed stream survives it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..proto import (
    INVALID_ARGUMENT,
    LEASE,
    LOGS_CANCEL,
    LOGS_CLOSE,
    LOGS_NEXT,
    LOGS_OPEN,
    LOGS_PUBLISH,
    LOGS_SUBSCRIBE,
    MAX_BATCH,
    NOT_FOUND,
    NOT_LEADER,
    PERMISSION_DENIED,
)
from ..proto.logs import Marks, mark, valid_marks
from ..rpc import PeerInfo, RpcError
from ..store import WatchClosed, new_id
from ..store.objects import Task, TaskState

log = logging.getLogger(__name__)

QUEUE = 1024
"""Lines buffered per subscription on the leader."""
MAX_WAIT = 5.0
"""Longest a `logs.next` is held open waiting for a line."""


class NotServing(Exception):
    """This manager's broker is not serving (it does not lead): open the subscription on the
    leader."""


@dataclass(frozen=True)
class LogMessage:
    task_id: str
    node_id: str
    service_id: str
    ts: int
    stream: int
    data: bytes

    def to_wire(self) -> list:
        return [self.task_id, self.node_id, self.service_id, self.ts, self.stream, self.data]

    @classmethod
    def from_wire(cls, raw: Any) -> LogMessage:
        task_id, node_id, service_id, ts, stream, data = raw
        return cls(str(task_id), str(node_id), str(service_id), int(ts), int(stream), bytes(data))


@dataclass(frozen=True)
class LogRequest:
    """What a reader asks for (`docker service logs` options): one service, or one of its
    tasks. It crosses the managers' port as the params of ``logs.open``."""
    service_id: str
    task_id: str | None = None
    follow: bool = False
    tail: int | None = None
    since: float | None = None
    stdout: bool = True
    stderr: bool = True

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, params: Any) -> LogRequest:
        """RpcError(INVALID_ARGUMENT) naming what has the wrong type."""
        if not isinstance(params, dict) or not isinstance(params.get("service_id"), str):
            raise RpcError(INVALID_ARGUMENT, "service_id must be a string")
        task_id, tail, since = params.get("task_id"), params.get("tail"), params.get("since")
        if (task_id is not None and not isinstance(task_id, str)) or \
                (tail is not None and not isinstance(tail, int)) or \
                (since is not None and not isinstance(since, (int, float))):
            raise RpcError(INVALID_ARGUMENT, "task_id, tail or since has the wrong type")
        return cls(params["service_id"], task_id, bool(params.get("follow")), tail, since,
                   params.get("stdout") is not False, params.get("stderr") is not False)


@dataclass
class Subscription:
    id: str
    req: LogRequest
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE))
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a line arrives or the subscription ends."""
    asked: dict[str, set[str]] = field(default_factory=dict)
    """node id -> task ids that node was asked for."""
    fresh: set[str] = field(default_factory=set)
    """Tasks asked from their first line (started while following)."""
    waiting: dict[str, set[str]] = field(default_factory=dict)
    """node id -> followed tasks not asked yet: that node had no session."""
    after: Marks = field(default_factory=dict)
    """task id -> timestamps (ns) of the last stdout and stderr lines accepted."""
    pending: set[str] = field(default_factory=set)
    """Tasks whose logs have not ended yet."""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    watch: asyncio.Task | None = None
    lease_until: float | None = None
    """For a subscription another manager opened: closed when not pulled by then."""


def has_run(task: Task) -> bool:
    """A task whose node holds (or held) a started container for it. Earlier, the node
    would find no container yet; a followed task is asked for once it gets there."""
    return bool(task.node_id) and task.status.state >= TaskState.RUNNING


class LogBroker:
    def __init__(self, dispatcher: Any, *, authorize: Callable[[PeerInfo], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``authorize(peer)``: whether another manager's call may open subscriptions here
        (a current manager's certificate); None allows every caller (tests)."""
        self.dispatcher = dispatcher
        self.authorize = authorize
        self.clock = clock
        self.subs: dict[str, Subscription] = {}
        self._reaper: asyncio.Task | None = None
        self._jobs: set[asyncio.Task] = set()
        dispatcher.add_session_listener(self._session_opened)

    @property
    def store(self):
        return self.dispatcher.proposer.store

    @property
    def running(self) -> bool:
        return self.dispatcher.running

    def register(self, server: Any) -> None:
        server.add_handler(LOGS_PUBLISH, self._handle_publish)
        server.add_handler(LOGS_OPEN, self._handle_open)
        server.add_handler(LOGS_NEXT, self._handle_next)
        server.add_handler(LOGS_CLOSE, self._handle_close)

    # -- subscriptions ----------------------------------------------------------------------

    async def subscribe(self, req: LogRequest,
                        after: Marks | None = None) -> Subscription:
        """``after``: per task, the last stdout and stderr lines' timestamps a reader already
        has (it is reopening the subscription on a new leader): those start right after."""
        if not self.running:
            raise NotServing("this manager does not lead: logs are collected by the leader")
        sub = Subscription(new_id(), req)
        sub.after.update({t: list(m) for t, m in (after or {}).items()})
        self.subs[sub.id] = sub
        view = self.store.view()
        if req.task_id is not None:
            task = view.get_task(req.task_id)
            tasks = [task] if task is not None and has_run(task) else []
        else:
            tasks = [t for t in view.find("task", service_id=req.service_id) if has_run(t)]
        await self._ask(sub, tasks)
        if req.follow and req.task_id is None:
            sub.watch = asyncio.get_running_loop().create_task(
                self._follow(sub), name=f"logs-follow-{sub.id[:8]}")
        elif not sub.pending:
            self._end(sub)
        return sub

    async def next(self, sub: Subscription, max_n: int = MAX_BATCH,
                   wait: float = 1.0) -> tuple[list[LogMessage], bool]:
        """Up to ``max_n`` lines, waiting up to ``wait`` seconds for the first, and whether
        the subscription has ended (every line delivered). NotServing when this manager lost
        its leadership meanwhile (the subscription is closed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(wait, 0.0), MAX_WAIT)
        while sub.queue.empty() and not sub.ended.is_set():
            if not self.running or sub.id not in self.subs:
                await self.close(sub)
                raise NotServing("this manager no longer leads")
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            sub.wake.clear()
            try:
                async with asyncio.timeout(min(remaining, 0.5)):
                    await sub.wake.wait()
            except TimeoutError:
                pass
        out = []
        while len(out) < max_n and not sub.queue.empty():
            out.append(sub.queue.get_nowait())
        if sub.lease_until is not None:
            sub.lease_until = self.clock() + LEASE
        return out, sub.ended.is_set() and sub.queue.empty()

    async def close(self, sub: Subscription) -> None:
        if self.subs.pop(sub.id, None) is None:
            return
        if sub.watch is not None:
            sub.watch.cancel()
        for node_id in sub.asked:
            await self.dispatcher.push(node_id, LOGS_CANCEL, {"sub": sub.id})

    def _end(self, sub: Subscription) -> None:
        sub.ended.set()
        sub.wake.set()

    # -- asking the nodes -------------------------------------------------------------------

    async def _ask(self, sub: Subscription, tasks: list[Task], *, fresh: bool = False) -> None:
        by_node: dict[str, list[str]] = {}
        for t in tasks:
            if t.id in sub.asked.get(t.node_id, ()):
                continue
            if not self.dispatcher.has_session(t.node_id):
                if sub.req.follow:  # asked when the node opens a session here
                    sub.waiting.setdefault(t.node_id, set()).add(t.id)
                    if fresh:
                        sub.fresh.add(t.id)
                continue
            by_node.setdefault(t.node_id, []).append(t.id)
        for node_id, ids in by_node.items():
            if fresh:
                sub.fresh.update(ids)
            if await self._push_subscribe(sub, node_id, ids):
                sub.asked.setdefault(node_id, set()).update(ids)
                sub.pending.update(ids)

    async def _push_subscribe(self, sub: Subscription, node_id: str, ids: list[str]) -> bool:
        """One `logs.subscribe` per kind of start: tasks asked from their first line (fresh)
        and the others (the reader's --tail/--since); `after` overrides both per task."""
        ok = True
        for fresh in (False, True):
            group = [t for t in ids if (t in sub.fresh) == fresh]
            if not group:
                continue
            req = sub.req
            params = {"sub": sub.id, "tasks": group, "follow": req.follow,
                      "tail": None if fresh else req.tail, "since": None if fresh else req.since,
                      "stdout": req.stdout, "stderr": req.stderr,
                      "after": {t: list(sub.after[t]) for t in group if t in sub.after}}
            ok = await self.dispatcher.push(node_id, LOGS_SUBSCRIBE, params) and ok
        return ok

    async def _session_opened(self, node_id: str) -> None:
        """A node (re)connected to this leader: ask it for the tasks it could not be asked
        for, and again for those it was serving (a restarted agent lost them; one that only
        reconnected ignores tasks it already serves), each from after its last line."""
        for sub in list(self.subs.values()):
            again = [t for t in sub.asked.get(node_id, ()) if t in sub.pending]
            again += sorted(sub.waiting.pop(node_id, ()))
            if again and await self._push_subscribe(sub, node_id, again):
                sub.asked.setdefault(node_id, set()).update(again)
                sub.pending.update(again)

    async def _follow(self, sub: Subscription) -> None:
        """New tasks of the service, once on a node, are asked for from their first line."""
        while sub.id in self.subs:
            watcher = self.store.watch("task", filter=lambda e: e.obj is not None and
                                       e.obj.service_id == sub.req.service_id)
            try:
                view = self.store.view()
                await self._ask(sub, [t for t in view.find("task", service_id=sub.req.service_id)
                                      if has_run(t)], fresh=True)
                async for ev in watcher:
                    if ev.new is not None and has_run(ev.new):
                        await self._ask(sub, [ev.new], fresh=True)
            except WatchClosed:
                continue
            finally:
                watcher.close()

    # -- the workers' side ------------------------------------------------------------------

    async def _handle_publish(self, peer: PeerInfo, params: Any) -> dict[str, Any]:
        if not isinstance(params, dict):
            raise RpcError(INVALID_ARGUMENT, "params must be a map")
        node_id = self.dispatcher.session_node(peer, params)
        sub = self.subs.get(params.get("sub"))
        if sub is None:
            return {"accepted": 0, "open": False}
        if sub.lease_until is not None and self.clock() > sub.lease_until:
            log.info("log subscription %s: its manager stopped pulling; closing it", sub.id[:8])
            await self.close(sub)
            return {"accepted": 0, "open": False}
        accepted = 0
        messages = params.get("messages") or []
        for m in messages:
            task_id = m.get("task_id")
            if task_id not in sub.asked.get(node_id, ()):
                raise RpcError(INVALID_ARGUMENT, f"task {task_id} was not asked of this node")
            data = m.get("data")
            if not isinstance(data, bytes):
                raise RpcError(INVALID_ARGUMENT, "data must be bytes")
            stream = int(m.get("stream") or 1)
            if stream not in (1, 2):
                raise RpcError(INVALID_ARGUMENT, "stream must be 1 (stdout) or 2 (stderr)")
            ts = int(m.get("ts") or 0)
            try:
                sub.queue.put_nowait(LogMessage(task_id, node_id, sub.req.service_id, ts, stream,
                                                data))
            except asyncio.QueueFull:
                break
            mark(sub.after, task_id, stream, ts)
            accepted += 1
        if accepted:
            sub.wake.set()
        if accepted == len(messages):
            for task_id in params.get("done") or []:
                sub.pending.discard(task_id)
            if not sub.req.follow and not sub.pending:
                self._end(sub)
        return {"accepted": accepted, "open": True}

    # -- other managers' side ---------------------------------------------------------------

    def _check_manager(self, peer: PeerInfo) -> None:
        if self.authorize is not None and not self.authorize(peer):
            raise RpcError(PERMISSION_DENIED, "only managers may read the cluster's logs")
        if not self.running:
            raise RpcError(NOT_LEADER, "this manager does not lead: ask the leader")

    def _remote(self, params: Any) -> Subscription:
        sub = self.subs.get(params.get("sub")) if isinstance(params, dict) else None
        if sub is None or sub.lease_until is None:
            raise RpcError(NOT_FOUND, "no such log subscription (closed, or opened elsewhere)")
        return sub

    async def _handle_open(self, peer: PeerInfo, params: Any) -> dict[str, Any]:
        self._check_manager(peer)
        req = LogRequest.from_wire(params)
        after = params.get("after") or {}
        if not valid_marks(after):
            raise RpcError(INVALID_ARGUMENT, "after must map task ids to [stdout ns, stderr ns]")
        try:
            sub = await self.subscribe(req, after)
        except NotServing as e:
            raise RpcError(NOT_LEADER, str(e)) from None
        sub.lease_until = self.clock() + LEASE
        conn = peer.connection
        if conn is not None:  # the asking manager's connection closed: nobody reads it
            conn.add_close_callback(lambda: self._spawn(self.close(sub)))
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap(),
                                                                  name="logs-lease-reaper")
        return {"sub": sub.id}

    async def _handle_next(self, peer: PeerInfo, params: Any) -> dict[str, Any]:
        self._check_manager(peer)
        sub = self._remote(params)
        max_n, wait = params.get("max", MAX_BATCH), params.get("wait", 1.0)
        if not isinstance(max_n, int) or not isinstance(wait, (int, float)):
            raise RpcError(INVALID_ARGUMENT, "max must be an integer, wait a number")
        try:
            out, ended = await self.next(sub, max(1, min(max_n, MAX_BATCH)), float(wait))
        except NotServing as e:
            raise RpcError(NOT_LEADER, str(e)) from None
        return {"messages": [m.to_wire() for m in out], "ended": ended}

    async def _handle_close(self, peer: PeerInfo, params: Any) -> dict[str, Any]:
        if self.authorize is not None and not self.authorize(peer):
            raise RpcError(PERMISSION_DENIED, "only managers may read the cluster's logs")
        sub = self.subs.get(params.get("sub")) if isinstance(params, dict) else None
        if sub is not None and sub.lease_until is not None:
            await self.close(sub)
        return {}

    def _spawn(self, coro) -> None:
        job = asyncio.get_running_loop().create_task(coro, name="logs-close")
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _reap(self) -> None:
        """Close remote subscriptions whose manager stopped pulling (it died without closing
        its connection: a power cut) or that this manager can no longer serve."""
        while True:
            remote = [s for s in self.subs.values() if s.lease_until is not None]
            if not remote:
                return
            now = self.clock()
            for sub in remote:
                if now > sub.lease_until or not self.running:
                    await self.close(sub)
            await asyncio.sleep(1.0)
