"""Wiring: the reconciler and the reporter on a worker's dispatcher session.

``TaskWorker(session, executor.DockerExecutor()).start()`` is all an agent needs. Reports go over the
session's own connection because the dispatcher binds a session to the connection that
opened it (that connection carried the certificate); a report on any other connection would
be refused as another session's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ...proto import ASSIGNMENTS, ASSIGNMENTS_RESYNC, FEATURE_INCREMENTAL, TASK_STATUS
from ..executor import Executor
from ..session import WorkerSession
from .reconciler import Reconciler
from .reporter import NotConnected, StatusReporter

log = logging.getLogger(__name__)


class SessionChannel:
    """Sends ``dispatcher.task_status`` calls on the current session.

    WorkerSession has no public call method yet, so this reads its private current client
    (the connection that opened the session, which pushes also arrive on). A ``call()`` on
    the session would be the clean seam; until then this is the one place that knows.
    """

    def __init__(self, session: WorkerSession, timeout: float = 5.0) -> None:
        self._session = session
        self.timeout = timeout

    async def send_status(self, updates: list[dict[str, Any]]) -> Any:
        return await self._call(TASK_STATUS, {"updates": updates})

    async def resync(self) -> Any:
        """Ask for the session's full assignment set again."""
        return await self._call(ASSIGNMENTS_RESYNC, {})

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        session = self._session
        client = session._client
        session_id = session.session_id
        if client is None or session_id is None or not session.connected.is_set():
            raise NotConnected("no dispatcher session")
        return await client.call(method, {"session_id": session_id, **params}, timeout=self.timeout)


class TaskWorker:
    def __init__(
        self,
        session: WorkerSession,
        executor: Executor,
        *,
        node_id: str | None = None,
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
    ) -> None:
        self.session = session
        self.executor = executor
        self.channel = SessionChannel(session)
        self.reporter = StatusReporter(self.channel.send_status)
        self.reconciler = Reconciler(
            node_id or session.node_id,
            executor,
            self.reporter,
            retry_initial=retry_initial,
            retry_max=retry_max,
        )
        self.reconciler.request_full = self._request_full
        self._resync_tasks: set[asyncio.Task] = set()
        session.on_push(ASSIGNMENTS, self.reconciler.on_push)
        session.features.add(FEATURE_INCREMENTAL)
        session.add_session_listener(self._session_opened)

    def _request_full(self) -> None:
        task = asyncio.get_running_loop().create_task(self._resync(), name="assignments-resync")
        self._resync_tasks.add(task)
        task.add_done_callback(self._resync_tasks.discard)

    async def _resync(self) -> None:
        try:
            await self.channel.resync()
        except Exception as e:  # no session, an older manager, a timeout
            log.warning("asking for the full assignment set failed: %s", e)
            self.reconciler.full_request_failed()

    def _session_opened(self, answer: Any) -> None:
        self.reporter.kick()

    def start(self) -> None:
        self.reporter.start()
        self.reconciler.start()

    async def stop(self) -> None:
        """Stop reconciling and reporting; the containers keep running (adopted on restart)."""
        for task in list(self._resync_tasks):
            task.cancel()
        await self.reconciler.stop()
        await self.reporter.stop()
