"""The leader's log broker (swarmkit's LogBroker): `docker service logs` fan-in.

A subscription names a service (or one task). The broker asks every node with a session
that runs or ran one of its tasks to publish that task's logs (``logs.subscribe``), and when
following, watches the store for the service's new tasks and asks their nodes too. Workers
publish with ``logs.publish`` (proto/logs.py); each subscription has one bounded queue, and a
publish takes only what fits: the worker keeps the rest and retries, so memory is bounded at
every hop and a slow API reader only slows the log streams feeding it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from ..proto import INVALID_ARGUMENT, LOGS_CANCEL, LOGS_PUBLISH, LOGS_SUBSCRIBE
from ..rpc import PeerInfo, RpcError
from ..store import WatchClosed, new_id
from ..store.objects import Task, TaskState

log = logging.getLogger(__name__)

QUEUE = 1024
"""Lines buffered per subscription on the leader."""


@dataclass(frozen=True)
class LogMessage:
    task_id: str
    node_id: str
    service_id: str
    ts: int
    stream: int
    data: bytes


@dataclass
class Subscription:
    id: str
    service_id: str
    task_id: str | None
    follow: bool
    tail: int | None
    since: float | None
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE))
    asked: dict[str, set[str]] = field(default_factory=dict)
    """node id -> task ids that node was asked for."""
    pending: set[str] = field(default_factory=set)
    """Tasks whose logs have not ended yet."""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    watch: asyncio.Task | None = None


def has_run(task: Task) -> bool:
    """A task whose node holds (or held) a started container for it. Earlier, the node
    would find no container yet; a followed task is asked for once it gets there."""
    return bool(task.node_id) and task.status.state >= TaskState.RUNNING


class LogBroker:
    def __init__(self, dispatcher: Any) -> None:
        self.dispatcher = dispatcher
        self.subs: dict[str, Subscription] = {}

    @property
    def store(self):
        return self.dispatcher.proposer.store

    @property
    def running(self) -> bool:
        return self.dispatcher.running

    def register(self, server: Any) -> None:
        server.add_handler(LOGS_PUBLISH, self._handle_publish)

    async def subscribe(self, service_id: str, task_id: str | None, *, follow: bool,
                        tail: int | None, since: float | None) -> Subscription:
        sub = Subscription(new_id(), service_id, task_id, follow, tail, since)
        self.subs[sub.id] = sub
        view = self.store.view()
        if task_id is not None:
            task = view.get_task(task_id)
            tasks = [task] if task is not None and has_run(task) else []
        else:
            tasks = [t for t in view.find("task", service_id=service_id) if has_run(t)]
        await self._ask(sub, tasks)
        if follow and task_id is None:
            sub.watch = asyncio.get_running_loop().create_task(
                self._follow(sub), name=f"logs-follow-{sub.id[:8]}")
        elif not sub.pending:
            sub.ended.set()
        return sub

    async def close(self, sub: Subscription) -> None:
        self.subs.pop(sub.id, None)
        if sub.watch is not None:
            sub.watch.cancel()
        for node_id in sub.asked:
            await self.dispatcher.push(node_id, LOGS_CANCEL, {"sub": sub.id})

    async def _ask(self, sub: Subscription, tasks: list[Task], *, fresh: bool = False) -> None:
        by_node: dict[str, list[str]] = {}
        for t in tasks:
            asked = sub.asked.setdefault(t.node_id, set())
            if t.id in asked or not self.dispatcher.has_session(t.node_id):
                continue
            by_node.setdefault(t.node_id, []).append(t.id)
        for node_id, ids in by_node.items():
            params = {"sub": sub.id, "tasks": ids, "follow": sub.follow,
                      "tail": None if fresh else sub.tail, "since": None if fresh else sub.since}
            if await self.dispatcher.push(node_id, LOGS_SUBSCRIBE, params):
                sub.asked[node_id].update(ids)
                sub.pending.update(ids)

    async def _follow(self, sub: Subscription) -> None:
        """New tasks of the service, once on a node, are asked for from their first line."""
        while sub.id in self.subs:
            watcher = self.store.watch("task", filter=lambda e: e.obj is not None and
                                       e.obj.service_id == sub.service_id)
            try:
                view = self.store.view()
                await self._ask(sub, [t for t in view.find("task", service_id=sub.service_id)
                                      if has_run(t)], fresh=True)
                async for ev in watcher:
                    if ev.new is not None and has_run(ev.new):
                        await self._ask(sub, [ev.new], fresh=True)
            except WatchClosed:
                continue
            finally:
                watcher.close()

    async def _handle_publish(self, peer: PeerInfo, params: Any) -> dict[str, Any]:
        if not isinstance(params, dict):
            raise RpcError(INVALID_ARGUMENT, "params must be a map")
        node_id = self.dispatcher.session_node(peer, params)
        sub = self.subs.get(params.get("sub"))
        if sub is None:
            return {"accepted": 0, "open": False}
        accepted = 0
        for m in params.get("messages") or []:
            task_id = m.get("task_id")
            if task_id not in sub.asked.get(node_id, ()):
                raise RpcError(INVALID_ARGUMENT, f"task {task_id} was not asked of this node")
            data = m.get("data")
            if not isinstance(data, bytes):
                raise RpcError(INVALID_ARGUMENT, "data must be bytes")
            try:
                sub.queue.put_nowait(LogMessage(task_id, node_id, sub.service_id,
                                                int(m.get("ts") or 0), int(m.get("stream") or 1),
                                                data))
            except asyncio.QueueFull:
                break
            accepted += 1
        if accepted == len(params.get("messages") or []):
            for task_id in params.get("done") or []:
                sub.pending.discard(task_id)
            if not sub.follow and not sub.pending:
                sub.ended.set()
        return {"accepted": accepted, "open": True}
