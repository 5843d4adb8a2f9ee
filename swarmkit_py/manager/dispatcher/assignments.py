"""Task assignments: the leader tells every connected worker which tasks are its to run.

Step 3 of docs/design/tasks.md. A session first gets the node's FULL set: a worker that
reconnects (or a new leader) needs no history, and the worker's reconcile is a pure "make it
look like this".

After that, what goes down the wire depends on the worker. One that opened its session with
``FEATURE_INCREMENTAL`` gets the CHANGES since the previous push (``changed`` tasks and
``removed`` ids on top of ``base``, swarmkit's incremental assignments). Sending the whole set
on every change made a large node quadratic: a service of 100,000 replicas on 20 nodes put
thousands of tasks on each, and every scheduling batch rebuilt, encoded and sent each node's
whole set, a third of the leader's CPU and turns that held its loop for hundreds of
milliseconds (issue 13's typo). The leader knows which tasks changed from the store's events,
and what each node holds from a digest per task of what it sent; a push that fails forgets
that, so the next one is a full set again, and a worker that misses one asks for its full set
(``dispatcher.assignments_resync``). A worker that named no feature (older, mid-upgrade) gets
the full set on every change, as before.

Wire (notification ``dispatcher.assignments``, leader -> worker): ``{"seq": int, "tasks":
[AssignedTask.to_wire(), ...]}``, or ``{"seq", "base", "changed", "removed"}``; see
``proto/dispatcher.py``. ``seq`` is the store's applied (Raft) index when the push was
computed: it only grows, across leaders too.

When to push: on every change of the set's *stable* content (membership, desired state,
spec), debounced so that one transaction touching fifty tasks of a node costs one push, and
unconditionally when a session opens. A change of observed state alone (the worker's own
report coming back) does not re-push, as in swarmkit: the worker knows it already.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from typing import Any

import msgpack

from ...proto import ASSIGNMENTS, FEATURE_INCREMENTAL, AssignedTask, NetAttachment, TaskFile
from ...store.objects import PortConfig, Task, TaskState
from ...store.objects.secret import file_path
from ...store.view import View
from .push import StorePusher

log = logging.getLogger(__name__)

DEBOUNCE = 0.02
FLUSH_NODES = 100
"""Nodes whose sets are built per loop turn (see AssignmentPusher._flush)."""


def is_assigned(task: Task) -> bool:
    """Whether ``task`` belongs in its node's set (the contract's rule, step 3).

    A task still pending (a global task has its node preset before the scheduler checked its
    resources) is not the worker's yet. Afterwards it stays in the set while it should run,
    or while it has not reached a terminal state (so a stale container is stopped when its
    node comes back with the task desired ``shutdown``).
    """
    state = task.status.state
    if not task.node_id or state < TaskState.ASSIGNED:
        return False
    return task.desired_state <= TaskState.RUNNING or not state.terminal


def host_ports(task: Task) -> tuple[PortConfig, ...]:
    """The host-mode ports of the endpoint the task was born with (never the live service's:
    a task's container keeps publishing what it was created with)."""
    spec = task.endpoint.spec if task.endpoint is not None else None
    ports = (spec.ports or []) if spec is not None else []
    return tuple(p for p in ports if (p.publish_mode or "ingress") == "host" and p.target_port)


def task_networks(view: View, task: Task) -> tuple[NetAttachment, ...]:
    """The task's addresses with what the worker needs to set each network up locally."""
    out = []
    aliases = {e.get("Target"): e.get("Aliases") or [] for e in task.spec.networks or []
               if isinstance(e, dict)}
    for a in task.networks_attachments or []:
        net = view.get("network", a.network_id)
        if net is None or not a.addresses:
            continue
        out.append(NetAttachment(
            network_id=net.id, name=net.spec.name, subnet=net.subnet, gateway=net.gateway,
            vni=net.vni, address=a.addresses[0], internal=net.spec.internal,
            ingress=net.spec.ingress, aliases=tuple(aliases.get(net.id, [])),
            ip_range=net.node_ranges.get(task.node_id or "")))
    return tuple(out)


def task_files(view: View, task: Task) -> tuple[TaskFile, ...]:
    """The secrets and configs the task references, with their bytes. One the store no longer
    has is left out: the worker rejects a task whose references it cannot satisfy."""
    cs = task.spec.container_spec
    if cs is None:
        return ()
    out = []
    for kind, refs in (("secret", cs.secrets or []), ("config", cs.configs or [])):
        for ref in refs:
            obj = view.get(kind, getattr(ref, f"{kind}_id"))
            if obj is None or ref.file is None:
                continue
            raw = obj.data if kind == "secret" else obj.spec.data
            out.append(TaskFile(
                kind=kind, id=obj.id, name=obj.spec.name, path=file_path(kind, ref.file.name),
                uid=int(ref.file.uid or 0), gid=int(ref.file.gid or 0), mode=ref.file.mode,
                data=base64.b64decode(raw)))
    return tuple(out)


def service_name(view: View, task: Task) -> str:
    """The service's name, which names the container; from the task's own name (``web.1``)
    or the service id when the service has been removed meanwhile."""
    service = view.get_service(task.service_id)
    if service is not None and service.spec.name:
        return service.spec.name
    if task.name:
        return task.name.split(".", 1)[0]
    return task.service_id


def assigned_task(view: View, task: Task) -> AssignedTask:
    return AssignedTask(
        id=task.id,
        node_id=task.node_id or "",
        service_id=task.service_id,
        service_name=service_name(view, task),
        slot=task.slot,
        desired_state=task.desired_state,
        state=task.status.state,
        spec=task.spec,
        ports=host_ports(task),
        networks=task_networks(view, task),
        name=task.name,
        files=task_files(view, task),
    )


def assignment_set(view: View, node_id: str) -> list[dict[str, Any]]:
    """The node's full set, ordered by task id so that equal sets encode equally."""
    tasks = [t for t in view.find("task", node_id=node_id) if is_assigned(t)]
    return [assigned_task(view, t).to_wire() for t in sorted(tasks, key=lambda t: t.id)]


def observed_only(old: Task | None, new: Task | None) -> bool:
    """Whether a task change touches only what the digest leaves out (the observed status),
    so the node's set need not even be recomputed. Status reports are most task writes: with
    thousands of tasks per node, rebuilding and hashing the whole set on each one was most of
    the leader's time during a large fill (issue 13)."""
    if old is None or new is None or old.node_id != new.node_id:
        return False
    if old.desired_state != new.desired_state or is_assigned(old) != is_assigned(new):
        return False
    if not is_assigned(new):
        return True
    return (old.spec == new.spec and old.networks_attachments == new.networks_attachments
            and old.endpoint == new.endpoint and old.name == new.name)


def stable_digest(tasks: list[dict[str, Any]]) -> bytes:
    """Digest of what a worker acts on: everything but the observed state."""
    stable = [{k: v for k, v in t.items() if k != "state"} for t in tasks]
    return hashlib.blake2b(msgpack.packb(stable, use_bin_type=True), digest_size=16).digest()


def task_digest(task: dict[str, Any]) -> bytes:
    """``stable_digest`` of one task's wire form (what an incremental push compares)."""
    stable = {k: v for k, v in task.items() if k != "state"}
    return hashlib.blake2b(msgpack.packb(stable, use_bin_type=True), digest_size=16).digest()


class Sent:
    """What one incremental session holds: the last push's ``seq`` and a digest per task."""

    __slots__ = ("seq", "tasks")

    def __init__(self, seq: int, tasks: dict[str, bytes]) -> None:
        self.seq = seq
        self.tasks = tasks


class AssignmentPusher(StorePusher):
    """Watches tasks and pushes each connected node its set, or what changed in it.

    ``dispatcher`` supplies ``proposer.store``, ``has_session(node_id)``,
    ``session_features(node_id)`` and ``push(node_id, method, params)``. One sender does every
    push (push.py), so two pushes to the same node never race each other out of order; a
    session that just opened (or asked for a resync) skips the debounce and gets a full set.
    """

    name = "assignments"
    kinds = ("task",)

    def __init__(self, dispatcher: Any, *, debounce: float = DEBOUNCE) -> None:
        self._dirty: set[str] = set()
        self._forced: set[str] = set()
        self._pushed: dict[str, bytes] = {}
        """Full-set digests sent to sessions without FEATURE_INCREMENTAL."""
        self._sent: dict[str, Sent] = {}
        """What each incremental session holds."""
        self._changed: dict[str, set[str] | None] = {}
        """Per node, the tasks whose stable content may have changed since the last flush;
        None: unknown (after a resync of the watch), so the whole set is compared."""
        self.full_pushes = 0
        self.incremental_pushes = 0
        super().__init__(dispatcher, debounce=debounce)

    def _reset(self) -> None:
        self._dirty.clear()
        self._forced.clear()
        self._pushed.clear()
        self._sent.clear()
        self._changed.clear()

    def session_opened(self, node_id: str) -> None:
        """A (re)opened session gets its full set at once, whatever was pushed before."""
        if not self.running:
            return
        self._forced.add(node_id)
        self._wake.set()

    # -- internals ------------------------------------------------------------------------

    def _resync(self) -> None:
        # Anything may have changed while no watch was open: look at every node again.
        nodes = self._dispatcher_nodes()
        self._dirty.update(nodes)
        for node_id in nodes:
            self._changed[node_id] = None
        self._wake.set()

    def _on_event(self, event) -> None:
        if observed_only(event.old, event.new):
            return  # the worker's own report coming back: its set did not change
        for obj in (event.old, event.new):
            if obj is not None and obj.node_id:
                self._dirty.add(obj.node_id)
                ids = self._changed.get(obj.node_id, ())
                if ids is None:
                    continue
                if not ids:
                    ids = self._changed[obj.node_id] = set()
                ids.add(obj.id)
        self._wake.set()

    def _dispatcher_nodes(self) -> set[str]:
        return {n.id for n in self._dispatcher.proposer.store.view().list("node")}

    def _urgent(self) -> bool:
        return bool(self._forced)

    async def _flush(self) -> None:
        forced, self._forced = self._forced, set()
        dirty, self._dirty = self._dirty, set()
        changed, self._changed = self._changed, {}
        nodes = sorted(forced | dirty)
        try:
            await self._flush_nodes(nodes, forced, changed)
        except BaseException:
            # The changes taken for this flush are lost with it: every session gets its full
            # set on its next push, and these nodes are looked at again on the next change.
            self._sent.clear()
            self._pushed.clear()
            self._dirty.update(nodes)
            raise

    async def _flush_nodes(self, nodes: list[str], forced: set[str],
                           changed: dict[str, set[str] | None]) -> None:
        # FLUSH_NODES at a time, the loop handed back in between: building, encoding and
        # hashing 2,000 nodes' sets in one turn held the leader's loop 0.6 s of CPU after a
        # 500-task scheduling entry (issue 13, 2,000 nodes). Each chunk reads the store anew.
        for start in range(0, len(nodes), FLUSH_NODES):
            if start:
                await asyncio.sleep(0)
            view = self._dispatcher.proposer.store.view()
            sends = []
            for node_id in nodes[start:start + FLUSH_NODES]:
                if not self._dispatcher.has_session(node_id):
                    self._pushed.pop(node_id, None)
                    self._sent.pop(node_id, None)
                    continue
                incremental = FEATURE_INCREMENTAL in self._dispatcher.session_features(node_id)
                sent = self._sent.get(node_id) if incremental and node_id not in forced else None
                if sent is not None:
                    params = self._changes(view, node_id, sent, changed.get(node_id))
                    if params is not None:
                        sends.append((node_id, b"", params))
                    continue
                tasks = assignment_set(view, node_id)
                if incremental:
                    params = {"seq": view.index, "tasks": tasks}
                    params["_digests"] = {t["id"]: task_digest(t) for t in tasks}
                    sends.append((node_id, b"", params))
                    continue
                self._sent.pop(node_id, None)
                digest = stable_digest(tasks)
                if node_id not in forced and self._pushed.get(node_id) == digest:
                    continue
                sends.append((node_id, digest, {"seq": view.index, "tasks": tasks}))
            if sends:
                await self._send(sends)

    def _changes(self, view: View, node_id: str, sent: Sent,
                 ids: set[str] | None) -> dict[str, Any] | None:
        """The push that brings a session holding ``sent`` up to date (None: nothing to
        send), looking only at tasks ``ids`` when the changes are known."""
        if ids is None:
            current = {t.id: t for t in view.find("task", node_id=node_id) if is_assigned(t)}
            ids = set(current) | set(sent.tasks)
        else:
            current = {}
            for task_id in ids:
                t = view.get_task(task_id)
                if t is not None and t.node_id == node_id and is_assigned(t):
                    current[task_id] = t
        changed: list[dict[str, Any]] = []
        digests: dict[str, bytes] = {}
        removed: list[str] = []
        for task_id in sorted(ids):
            t = current.get(task_id)
            if t is None:
                if task_id in sent.tasks:
                    removed.append(task_id)
                continue
            wire = assigned_task(view, t).to_wire()
            digest = task_digest(wire)
            if sent.tasks.get(task_id) != digest:
                changed.append(wire)
                digests[task_id] = digest
        if not changed and not removed:
            return None
        return {"seq": view.index, "base": sent.seq, "changed": changed, "removed": removed,
                "_digests": digests}

    async def _send(self, sends: list[tuple[str, bytes, dict[str, Any]]]) -> None:
        """Push, then record what each node now holds; a failed push forgets it (the next
        push to that node is a full set)."""
        books = {}
        for node_id, _, params in sends:
            if "_digests" in params:
                books[node_id] = params.pop("_digests")
        results: dict[str, bytes] = {}
        await self._push(ASSIGNMENTS, sends, results)
        for node_id, digest, params in sends:
            ok = node_id in results
            digests = books.get(node_id)
            if digests is None:  # a full set to a session without the feature
                if ok:
                    self._pushed[node_id] = digest
                else:
                    self._pushed.pop(node_id, None)
                    self._resend(node_id)
                continue
            if not ok:
                self._sent.pop(node_id, None)
                self._resend(node_id)
                continue
            if "tasks" in params:
                self._sent[node_id] = Sent(params["seq"], digests)
                self.full_pushes += 1
                continue
            held = self._sent.get(node_id)
            if held is None or held.seq != params["base"]:
                # a full set overtook this change meanwhile (a resync): it holds what it holds
                continue
            for task_id in params["removed"]:
                held.tasks.pop(task_id, None)
            held.tasks.update(digests)
            held.seq = params["seq"]
            self.incremental_pushes += 1

    def _resend(self, node_id: str) -> None:
        """A push failed: if the node still has a session (the send failed, not the session),
        it gets its full set on the next flush (what it held is forgotten) rather than only
        on its next change."""
        if self._dispatcher.has_session(node_id):
            self._dirty.add(node_id)
            self._wake.set()
