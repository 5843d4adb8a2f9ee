"""What the reconciler needs from an executor, and the Docker implementation of it.

The reconciler (``worker/reconcile``) decides (start, stop, adopt, remove); the executor does.
Keeping that seam a four-method protocol lets the decisions be unit-tested with a fake in
memory, while the real thing is ``DockerExecutor`` below, handing out ``Controller``s.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from ...engine import Engine, NotFound
from ...proto import AssignedTask
from ...store.objects import TaskStatus
from . import docker_adapter as adapter
from .controller import Controller
from .docker_adapter import connect
from .errors import EngineUnavailable
from .files import sweep


class TaskController(Protocol):
    """The slice of ``executor.Controller`` the reconciler drives (see its docstrings)."""

    def status(self) -> TaskStatus: ...
    async def prepare(self) -> TaskStatus: ...
    async def start(self) -> TaskStatus: ...
    async def wait(self) -> TaskStatus: ...
    async def shutdown(self, grace: int | None = None) -> TaskStatus: ...


class Executor(Protocol):
    async def controller(self, task: AssignedTask) -> TaskController:
        """A fresh controller (state accepted). Raises EngineUnavailable to be retried."""

    async def containers(self, node_id: str) -> dict[str, Any]:
        """This node's task containers by task id. Raises EngineUnavailable."""

    def adopt(self, task: AssignedTask, container: Any) -> TaskController:
        """A controller for a container an earlier worker process made."""

    async def remove(self, container: Any) -> None:
        """Remove a container no task of this node owns any more."""


class DockerExecutor:
    """Tasks as containers on the local engine (``base_url`` None: DOCKER_HOST / the socket).

    The client is made on first use and made again after a failed attempt: the worker starts
    even when dockerd is down, reports that, and picks up once the engine answers.
    """

    def __init__(self, base_url: str | None = None, *, timeout: int = 60,
                 networks: Any = None) -> None:
        self.base_url = base_url
        self.networks = networks
        self.timeout = timeout
        self._client: Engine | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Engine:
        async with self._lock:
            if self._client is None:
                self._client = await asyncio.to_thread(connect, self.base_url, self.timeout)
            return self._client

    async def controller(self, task: AssignedTask) -> TaskController:
        return Controller(await self.client(), task, self.networks)

    async def containers(self, node_id: str) -> dict[str, Any]:
        client = await self.client()
        # Holders of secrets/configs an earlier worker process left between prepare and start.
        await asyncio.to_thread(sweep, client, node_id, set())
        for _attempt in range(5):
            try:
                return await asyncio.to_thread(adapter.list_task_containers, client, node_id)
            except NotFound:
                continue  # one vanished between the list and its inspect: list again
        raise EngineUnavailable("task containers kept vanishing while being listed")

    def adopt(self, task: AssignedTask, container: Any) -> TaskController:
        assert self._client is not None, "containers() came first"
        return Controller.adopt(self._client, task, container, self.networks)

    async def remove(self, container: Any) -> None:
        client = await self.client()
        try:
            await adapter.call(client.remove_container, container["Id"], force=True)
        except NotFound:
            pass

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

