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
from .placement import PLACE, per_node
from .slots import holds, is_global
from .taskinit import new_task, template_parts


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
        by_node: dict[str, list] = {}
        for t in view.tasks(service_id=svc.id):
            if t.node_id is not None and t.slot is None:
                by_node.setdefault(t.node_id, []).append(t)
        held = {nid: [t for t in tasks if holds(t)] for nid, tasks in by_node.items()}
        now = self.clock()
        parts = None  # one copy of the template and endpoint for this pass's new tasks (new_task)
        for node_id, tasks, verdict in per_node(view, svc, held):
            if verdict == PLACE:
                parts = parts or template_parts(svc)
                batch.create(new_task(svc, self.new_id(), now, node_id=node_id, parts=parts))
            else:
                for t in tasks:
                    batch.updated(t).desired_state = TaskState.SHUTDOWN
        for node_id, tasks in by_node.items():
            if view.get_node(node_id) is None:  # nodes that no longer exist
                for t in tasks:
                    _remove(batch, t)


def _remove(batch: Batch, t) -> None:
    if t.desired_state < TaskState.REMOVE:
        batch.updated(t).desired_state = TaskState.REMOVE
