"""The global orchestrator: one task per eligible node for each global service.

A node that becomes eligible (joins Ready and active, is un-drained, starts matching the
constraints) gets a task, created `pending` with its node preset; a node that is drained or
stops matching the constraints has its task marked desired `shutdown`; a removed node's tasks
are marked desired `remove`. A `pause`d node keeps its task but gets no new one, and a node
merely `unknown` or `disconnected` keeps its task too: only `down` gives up on a node, and
that is the node-failure loop's call (see placement.py).

Node events re-examine every global service (one node change can matter to all of them);
global services are few and a pass over them is a dictionary walk, not a scan of tasks.
"""

from __future__ import annotations

from ...store import TaskState, View
from .loop import Batch, StoreLoop, touched
from .placement import constraints_of, eligible, keeps
from .slots import holds, is_global, node_down
from .taskinit import new_task


class GlobalOrchestrator(StoreLoop):
    name = "global"
    kinds = ("service", "node", "task")

    def reconcile(self, view: View, batch: Batch, events) -> None:
        if events is None or any(e.kind == "node" for e in events):
            services = {s.id for s in view.services() if is_global(s)}
        else:
            services = set()
        if events is None:
            alive = {s.id for s in view.services()}
            for t in view.find("task", where=lambda t: t.slot is None and t.service_id not in alive):
                _remove(batch, t)
        else:
            services |= self._dirty(events)
        for sid in services:
            svc = view.get_service(sid)
            if svc is None:
                for t in view.tasks(service_id=sid):
                    if t.slot is None:
                        _remove(batch, t)
            elif is_global(svc):
                self._service(view, batch, svc)

    @staticmethod
    def _dirty(events) -> set[str]:
        dirty = touched(events, "service", lambda s: s.id)
        for e in events:
            if e.kind == "task" and (e.new is None or e.old is None or holds(e.old) != holds(e.new)):
                dirty.add((e.new or e.old).service_id)
        return dirty

    def _service(self, view: View, batch: Batch, svc) -> None:
        parsed = constraints_of(svc)
        by_node: dict[str, list] = {}
        for t in view.tasks(service_id=svc.id):
            if t.node_id is not None and t.slot is None:
                by_node.setdefault(t.node_id, []).append(t)
        now = self.clock()
        for node in view.nodes():
            held = [t for t in by_node.pop(node.id, ()) if holds(t)]
            if node_down(node):
                continue  # the node-failure loop shuts these down
            if keeps(svc, node, parsed):
                if not held and eligible(svc, node, parsed):
                    batch.create(new_task(svc, self.new_id(), now, node_id=node.id))
            else:
                for t in held:
                    batch.updated(t).desired_state = TaskState.SHUTDOWN
        for tasks in by_node.values():  # nodes that no longer exist
            for t in tasks:
                _remove(batch, t)


def _remove(batch: Batch, t) -> None:
    if t.desired_state < TaskState.REMOVE:
        batch.updated(t).desired_state = TaskState.REMOVE
