"""The update supervisor: starts, supersedes and finishes rolling updates (and rollbacks).

On every service change (and on a full pass at start) it asks `plan()` which slots run an old
TaskTemplate. Nothing dirty: nothing to do, except that a status left `updating` /
`rollback_started` (say by a leader that died mid-rollout, after its last replacement) is
finished. Dirty slots and no rollout working towards this exact template: start one
(rollout.py), cancelling a rollout for an older template first - the newest spec wins, as in
Swarm. A `paused` / `rollback_paused` update stays paused until the service is updated
again (the API resets UpdateStatus on every spec update, as swarmkit's controlapi does).

A pure scale changes no template, so it never starts an update or touches UpdateStatus: the
replicated orchestrator creates the new slots' tasks from the current template. Jobs are never
rolled: an update of a job starts its next iteration, which the job orchestrator runs.
"""

from __future__ import annotations

from ...store import UpdateState, UpdateStatus, View
from .loop import Batch, StoreLoop, touched
from .plan import plan
from .rollout import COMPLETED, ROLLBACK_COMPLETED, Rollout

PAUSED = (UpdateState.PAUSED, UpdateState.ROLLBACK_PAUSED)
ACTIVE = (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED)


class UpdateSupervisor(StoreLoop):
    name = "update"
    kinds = ("service",)

    def __init__(self, proposer, **kw) -> None:
        super().__init__(proposer, **kw)
        self.rollouts: dict[str, Rollout] = {}
        self._to_start: list[Rollout] = []

    def reconcile(self, view: View, batch: Batch, events) -> None:
        self._to_start = []
        if events is None:
            sids = {s.id for s in view.services()} | set(self.rollouts)
        else:
            sids = touched(events, "service", lambda s: s.id)
        for sid in sids:
            self._service(view, batch, sid)

    def _service(self, view: View, batch: Batch, sid: str) -> None:
        svc = view.get_service(sid)
        current = self.rollouts.get(sid)
        if current is not None and current.done:
            del self.rollouts[sid]
            current = None
        if svc is None or svc.spec.mode.is_job:
            if current is not None:
                self.rollouts.pop(sid).cancel()
            return
        if current is not None:
            if current.targets(svc):
                return
            self.rollouts.pop(sid).cancel()
        p = plan(view, svc)
        state = svc.update_status.state if svc.update_status is not None else None
        if not p.slots:
            if state in ACTIVE:
                c = batch.updated(svc)
                st = c.update_status or UpdateStatus()
                if state == UpdateState.ROLLBACK_STARTED:
                    st.state, st.message = UpdateState.ROLLBACK_COMPLETED, ROLLBACK_COMPLETED
                else:
                    st.state, st.message = UpdateState.COMPLETED, COMPLETED
                st.completed_at = self.clock()
            return
        if state in PAUSED:
            return
        self._to_start.append(Rollout(self, svc, p.slots, p.template_changed))

    async def after_pass(self) -> None:
        for r in self._to_start:
            old = self.rollouts.get(r.service_id)
            if old is not None and not old.done:
                continue
            self.rollouts[r.service_id] = r
            r.start()
        self._to_start = []

    async def on_stop(self) -> None:
        rollouts, self.rollouts = list(self.rollouts.values()), {}
        for r in rollouts:
            r.cancel()
        for r in rollouts:
            if r.task is not None:
                try:
                    await r.task
                except BaseException:  # cancelled or failed: either way it is over
                    pass
