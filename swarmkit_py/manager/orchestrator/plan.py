"""Which slots a rolling update has to touch (shared by the update supervisor and rollouts).

A slot is dirty when a task holding it runs an old TaskTemplate, or when it has more than one
runnable task (left by a start-first update that was interrupted, or by a leader change in
the middle of one). During a rollback, tasks that finished per their restart policy are left
alone, as in Swarm, so that a rollback always converges.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...store import Service, UpdateState, View
from .slots import FINISHED, holds, is_global, runnable, slot_key
from .uptodate import UpToDate


def rolling_back(service: Service) -> bool:
    st = service.update_status
    return st is not None and st.state == UpdateState.ROLLBACK_STARTED


def slot_tasks(view: View, service: Service, key) -> list:
    """Tasks holding one slot (replicated: slot number; global: node ID)."""
    if is_global(service):
        tasks = [t for t in view.tasks(node_id=key) if t.service_id == service.id and t.slot is None]
    else:
        tasks = view.tasks(service_id=service.id, slot=key)
    return [t for t in tasks if holds(t)]


@dataclass
class Plan:
    slots: list
    """Dirty slot keys, in slot order (node order for global services)."""
    template_changed: bool
    """Some task runs an old template (as opposed to only duplicate runnable tasks)."""


def plan(view: View, service: Service) -> Plan:
    rollback = rolling_back(service)
    groups: dict = {}
    for t in view.tasks(service_id=service.id):
        k = slot_key(t)
        if k is not None and holds(t):
            groups.setdefault(k, []).append(t)
    dirty, changed = [], False
    current = UpToDate(service)
    for k, tasks in groups.items():
        old = [
            t
            for t in tasks
            if not current(t) and not (rollback and t.desired_state == FINISHED)
        ]
        if old:
            changed = True
        if old or sum(1 for t in tasks if runnable(t)) > 1:
            dirty.append(k)
    dirty.sort(key=lambda k: (isinstance(k, str), k))
    return Plan(dirty, changed)
