"""Drives one task's container through Swarm's task states.

The worker calls prepare, start and wait in order, and shutdown whenever the manager's desired
state says so (possibly while wait is pending). Each step returns the new status. A task's own
failures (missing image, bad spec, non-zero exit, unhealthy) become its state; only an
unavailable engine is raised, leaving the task at the step it was in, to be retried.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ...engine import APIError, Engine, NotFound
from ...proto import AssignedTask
from ...store.objects import ContainerStatus, TaskState, TaskStatus
from . import docker_adapter as adapter
from .errors import InvalidTransition
from .exits import DESTROY, DIE, exit_watch
from .files import TaskFiles

ERR_UNHEALTHY = "unhealthy container"
ERR_REMOVED = "task: container removed"

# How often a health check's verdict is looked at while starting, and while running at most
# how long a wait goes without inspecting the container (its health). No health check: the
# container is inspected this rarely, only in case the engine's events missed its exit.
HEALTH_POLL = 0.1
WAIT_CHUNK_HEALTH = 1.0
WAIT_CHUNK = 30.0


# Swarm's message for each state an executor moves to on its own. FAILED and REJECTED keep the
# message of the step that went wrong ("started", "preparing"); the reason is in `err`.
MESSAGES = {
    TaskState.ACCEPTED: "accepted",
    TaskState.PREPARING: "preparing",
    TaskState.READY: "prepared",
    TaskState.STARTING: "starting",
    TaskState.RUNNING: "started",
    TaskState.COMPLETE: "finished",
    TaskState.SHUTDOWN: "shutdown",
}


def exit_error(code: int) -> str:
    return f"task: non-zero exit ({code})"


class Controller:
    def __init__(self, client: Engine, task: AssignedTask, networks: Any = None) -> None:
        self.client = client
        self.task = task
        self._name = adapter.container_name(task)
        self.networks = networks
        """Has `async ensure(attachments)`: the task's networks exist before its container."""
        self._state = TaskState.ACCEPTED
        self._message = MESSAGES[TaskState.ACCEPTED]
        self._err = ""
        self._container: str | None = None
        """The container's ID alone, not its inspect document: a controller keeps it for as
        long as the task runs, and ~20 KB of parsed JSON per task was 1 MB of a worker's RSS
        at 50 tasks (bench/agent_rss.py). The state is inspected when it is needed."""
        self._pid = 0
        self._exit_code: int | None = None
        self._stopping = False
        self._files = TaskFiles(client, task)

    @classmethod
    def adopt(cls, client: Engine, task: AssignedTask, container: dict[str, Any],
              networks: Any = None) -> Controller:
        """Take over a container a previous worker process made, in the state it is in now
        (`container`: its inspect document, as `list_task_containers` gives it).

        A container still waiting for its first healthy verdict is STARTING, so start() resumes
        the wait for health instead of starting it again.
        """
        ctl = cls(client, task, networks)
        ctl._container = container["Id"]
        state = container.get("State") or {}
        status = state.get("Status", "")
        if status == "created" and task.files:
            # Its files' holder did not outlive the earlier worker: prepare again.
            ctl._container = None
        elif status == "created":
            ctl._set(TaskState.READY)
        elif status in ("exited", "dead"):
            ctl._finish(int(state.get("ExitCode", 0)))
        elif adapter.health_status(container) == "starting":
            ctl._set(TaskState.STARTING)
        else:
            ctl._pid = int(state.get("Pid") or 0)
            ctl._set(TaskState.RUNNING)
        return ctl

    def status(self) -> TaskStatus:
        container = None
        if self._container is not None or self._exit_code is not None:
            container = ContainerStatus(
                container_id=self._container,
                pid=self._pid or None,
                exit_code=self._exit_code,
            )
        return TaskStatus(state=self._state, message=self._message, err=self._err or None,
                          container_status=container)

    # -- steps ------------------------------------------------------------------------------

    async def prepare(self) -> TaskStatus:
        """Check the image is here (never pull: no registry) and create the container."""
        if self._state >= TaskState.READY or self._stopping:
            return self.status()
        self._set(TaskState.PREPARING)
        image = adapter.container_spec(self.task).image
        try:
            await adapter.call(self.client.inspect_image, image)
        except NotFound:
            return self._reject(f"No such image: {image}")
        if self.task.networks:
            if self.networks is None:
                return self._reject("this node runs no overlay networking")
            try:
                await self.networks.ensure(self.task.networks)
            except Exception as exc:  # noqa: BLE001 - the task's outcome, with the reason
                return self._reject(f"network setup failed: {exc}")
        missing = _missing_files(self.task)
        if missing:
            return self._reject(f"{missing} not found: it was removed after the task was "
                                "created")
        try:
            mounts = await self._files.prepare()
        except APIError as exc:
            await self._files.release()
            return self._reject(f"secrets/configs setup failed: {_explain(exc)}")
        try:
            config = adapter.create_config(self.task)
            if mounts:
                host = config["HostConfig"]
                host["Mounts"] = [*host.get("Mounts", ()), *mounts]
                # An earlier attempt's container points at files that are gone: make it anew.
                await self._remove_container()
            self._container = await adapter.call(adapter.create_container, self.client,
                                                 self._name, config)
            for net in self.task.networks[1:]:
                await adapter.call(self.client.connect_container_to_network, self._container,
                                   net.name, adapter.endpoint_config(net))
        except APIError as exc:
            if exc.status_code != 409:
                await self._files.release()
                return self._reject(_explain(exc))
            # Created by an earlier attempt whose answer was lost: the name holds the task ID.
            found = await adapter.call(self.client.inspect_container, self._name)
            self._container = found["Id"]
        if self._stopping:  # shutdown() came while the container was being created
            await self.remove()
        self._set(TaskState.READY)
        return self.status()

    async def start(self) -> TaskStatus:
        """Start the container; RUNNING only once healthy when it has a health check."""
        if self._state < TaskState.READY:
            raise InvalidTransition(f"task {self.task.id}: start before prepare")
        if self._state == TaskState.READY and not self._stopping:
            self._set(TaskState.STARTING)
            try:
                await adapter.call(self.client.start, self._c)
            except APIError as exc:
                return self._fail(_explain(exc))
            finally:
                await self._files.release()
        if self._state == TaskState.STARTING:
            await self._until_running()
        return self.status()

    async def wait(self) -> TaskStatus:
        """Until the container exits (COMPLETE / FAILED) or turns unhealthy (FAILED)."""
        if self._state.terminal:
            return self.status()
        if self._state != TaskState.RUNNING:
            raise InvalidTransition(f"task {self.task.id}: wait before running")
        # The engine's events say when the container ends (exits.py: one stream for all the
        # node's tasks, not a thread per task in `docker wait`); the container is inspected
        # after registering, and again at least every chunk, so no exit goes unseen.
        exits = exit_watch(self.client)
        waiter = exits.watch(self._c)
        try:
            while not self._state.terminal:
                waiter.clear()
                attrs = await self._look()
                if attrs is None:
                    break
                chunk = WAIT_CHUNK_HEALTH if adapter.has_healthcheck(attrs) else WAIT_CHUNK
                seen = await waiter.next(chunk)
                if seen is not None and seen[0] == DIE and seen[1] is not None:
                    self._finish(seen[1])
                elif seen is not None and seen[0] == DESTROY:
                    self._gone()
        finally:
            exits.unwatch(waiter)
        return self.status()

    async def shutdown(self, grace: int | None = None) -> TaskStatus:
        """Stop (SIGTERM, SIGKILL after the grace period), then remove the container.

        ``grace`` in nanoseconds overrides the task's stop grace period. A task that already
        ended keeps its state; any other becomes SHUTDOWN, also when stopping made its process
        exit non-zero.
        """
        self._stopping = True
        if self._container is not None:
            try:
                await adapter.call(self.client.stop, self._container,
                                   adapter.stop_timeout(self.task, grace))
                state = (await self._inspect()).get("State") or {}
                if self._state >= TaskState.STARTING:
                    self._finish(int(state.get("ExitCode", 0)))
            except NotFound:
                pass
        if not self._state.terminal:
            self._set(TaskState.SHUTDOWN)
        await self.remove()
        return self.status()

    async def remove(self) -> None:
        """Remove the container if there is one, and what was kept for its files."""
        await self._remove_container()
        await self._files.release()

    async def _remove_container(self) -> None:
        """By name, when we hold none, covers a create whose answer was lost."""
        ref = self._container if self._container is not None else self._name
        try:
            await adapter.call(self.client.remove_container, ref, force=True)
        except NotFound:
            pass

    # -- internals --------------------------------------------------------------------------

    @property
    def _c(self) -> str:
        assert self._container is not None, "container exists from READY on"
        return self._container

    async def _inspect(self) -> dict[str, Any]:
        return await adapter.call(self.client.inspect_container, self._c)

    async def _look(self) -> dict[str, Any] | None:
        """Inspect the container and act on what ended it (removed, exited, unhealthy: then
        None); its attributes while it runs on."""
        try:
            attrs = await self._inspect()
        except NotFound:
            self._gone()
            return None
        state = attrs.get("State") or {}
        if not state.get("Running") and state.get("Status") != "created":
            self._finish(int(state.get("ExitCode", 0)))
            return None
        if adapter.health_status(attrs) == "unhealthy":
            await self._fail_unhealthy()
            return None
        return attrs

    async def _until_running(self) -> None:
        while self._state == TaskState.STARTING:
            attrs = await self._look()
            if attrs is None:
                return
            if adapter.health_status(attrs) in ("", "healthy"):
                self._pid = int((attrs.get("State") or {}).get("Pid") or 0)
                self._set(TaskState.RUNNING)
            else:
                await asyncio.sleep(HEALTH_POLL)

    async def _fail_unhealthy(self) -> None:
        """As Swarm: stop the unhealthy container so the orchestrator can replace the task."""
        self._fail(ERR_UNHEALTHY)
        try:
            await adapter.call(self.client.stop, self._c, adapter.stop_timeout(self.task))
            self._exit_code = int(((await self._inspect()).get("State") or {}).get("ExitCode", 0))
        except NotFound:
            pass

    def _finish(self, code: int) -> None:
        """The process exited: the outcome is ours (SHUTDOWN) if we stopped it, else the task's."""
        self._exit_code = code
        if self._stopping:
            self._set(TaskState.SHUTDOWN)
        elif code == 0:
            self._set(TaskState.COMPLETE)
        else:
            self._fail(exit_error(code))

    def _gone(self) -> None:
        if self._stopping:
            self._set(TaskState.SHUTDOWN)
        else:
            self._fail(ERR_REMOVED)

    def _set(self, state: TaskState) -> None:
        """States only move forward, and a terminal one is final: a step that finishes after a
        concurrent shutdown cannot bring the task back."""
        if state <= self._state or self._state.terminal:
            return
        self._state = state
        self._message = MESSAGES[state]

    def _fail(self, err: str) -> TaskStatus:
        if not self._state.terminal:
            self._state, self._err = TaskState.FAILED, err
        return self.status()

    def _reject(self, err: str) -> TaskStatus:
        if not self._state.terminal:
            self._state, self._err = TaskState.REJECTED, err
        return self.status()


def _missing_files(task: AssignedTask) -> str:
    """The first secret/config the spec references that the assignment brought no data for."""
    cs = task.spec.container_spec
    have = {(f.kind, f.id) for f in task.files}
    for kind, refs in (("secret", cs.secrets if cs else None),
                       ("config", cs.configs if cs else None)):
        for ref in refs or []:
            if (kind, getattr(ref, f"{kind}_id")) not in have:
                return f"{kind} {getattr(ref, f'{kind}_name') or getattr(ref, f'{kind}_id')}"
    return ""


def _explain(exc: APIError) -> str:
    return str(exc.explanation or exc)
