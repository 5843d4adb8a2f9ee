"""One stream of the engine's container events tells every running task's wait that its
container ended, instead of a thread per task blocked in `docker wait`.

A task's `Controller.wait` used to hold a thread of the Docker pool in a `POST
/containers/{id}/wait` (renewed every 30 s), so a worker with 50 tasks had 50 threads, each
with its own HTTP connection and, in glibc, its own malloc arena: about 100 KB of a worker's
RSS per running task (bench/agent_rss.py). Here one thread per engine client reads `GET
/events` filtered to the `die` and `destroy` of task containers (the
`com.docker.swarm.task.id` label), and tells each event to the tasks waiting on that
container, on the event loop. The stream runs while some task waits, and is closed when none
does (an agent that restarts its components leaves no reader behind).

No exit is lost between a wait's check of its container and the event:
- a waiter registers (`watch`) before it inspects its container, so an exit either shows in
  the inspect or arrives as an event after it;
- an event can only be missed while the stream is not connected, so every (re)connection wakes
  every waiter with `RECHECK` to inspect again; and a waiter re-inspects at least every
  `WAIT_CHUNK` (controller.py) in any case, as the renewed `docker wait` did.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from .docker_adapter import LABEL_TASK_ID

log = logging.getLogger(__name__)

DIE = "die"
DESTROY = "destroy"
RECHECK = "recheck"
"""What a waiter is told: (DIE, exit code or None), (DESTROY, None), or (RECHECK, None) when
the stream (re)connected and events may have been missed."""

RETRY_S = (0.2, 5.0)
"""Back-off between attempts to open the stream while the engine does not answer."""


class Waiter:
    """One task's registration for the whole of its wait: what happened to its container
    since the last `clear()`."""

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        self.seen: tuple[str, int | None] | None = None
        self._event = asyncio.Event()

    def clear(self) -> None:
        """Forget what came so far: call it before inspecting the container again."""
        self.seen = None
        self._event.clear()

    async def next(self, timeout: float) -> tuple[str, int | None] | None:
        """(DIE, exit code or None), (DESTROY, None) or (RECHECK, None) since `clear()`, or
        None after `timeout` seconds without any."""
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return None
        return self.seen

    def _tell(self, what: str, code: int | None) -> None:
        if self.seen is None or self.seen[0] == RECHECK:  # an exit says more than a recheck
            self.seen = (what, code)
        self._event.set()


class ExitWatch:
    """The container exits of one engine client, for the tasks waiting on them."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._waiters: dict[str, set[Waiter]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stream: Any = None
        self._run_id = 0
        self.connects = 0

    def watch(self, container_id: str) -> Waiter:
        """Register for the container's die/destroy events until `unwatch`."""
        self._loop = asyncio.get_running_loop()
        waiter = Waiter(container_id)
        self._waiters.setdefault(container_id, set()).add(waiter)
        self._ensure_reader()
        return waiter

    def unwatch(self, waiter: Waiter) -> None:
        waiting = self._waiters.get(waiter.container_id)
        if waiting is not None:
            waiting.discard(waiter)
            if not waiting:
                del self._waiters[waiter.container_id]
        if not self._waiters:
            self.close()

    def close(self) -> None:
        """Stop reading (the reader thread ends; a later `watch` starts another)."""
        with self._lock:
            self._run_id += 1
            stream, self._stream, self._thread = self._stream, None, None
        if stream is not None:
            _close_quietly(stream)

    # -- on the event loop ------------------------------------------------------------------

    def _resolve(self, container_id: str | None, what: str, code: int | None) -> None:
        if container_id is None:
            groups = list(self._waiters.values())
        else:
            groups = [self._waiters.get(container_id, set())]
        for waiting in groups:
            for waiter in list(waiting):
                waiter._tell(what, code)

    # -- the reader thread -------------------------------------------------------------------

    def _ensure_reader(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._run_id += 1
            self._thread = threading.Thread(target=self._read, args=(self._run_id,), daemon=True,
                                            name="docker-exits")
            self._thread.start()

    def _current(self, run_id: int) -> bool:
        return self._run_id == run_id

    def _read(self, run_id: int) -> None:
        delay = RETRY_S[0]
        while self._current(run_id):
            try:
                stream = self.client.events(filters={
                    "type": "container", "event": [DIE, DESTROY], "label": [LABEL_TASK_ID]})
            except Exception as exc:  # noqa: BLE001 - engine down: the waits re-inspect meanwhile
                log.debug("container events: %s; retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, RETRY_S[1])
                continue
            with self._lock:
                if not self._current(run_id):
                    _close_quietly(stream)
                    return
                self._stream = stream
            delay = RETRY_S[0]
            self.connects += 1
            self._post(None, RECHECK, None)  # anything that ended before now is seen by an inspect
            try:
                for event in stream:
                    actor = event.get("Actor") or {}
                    cid = actor.get("ID") or event.get("id")
                    what = event.get("Action") or event.get("status")
                    if cid and what in (DIE, DESTROY):
                        code = (actor.get("Attributes") or {}).get("exitCode")
                        self._post(cid, what, int(code) if code is not None and str(code).lstrip("-").isdigit() else None)
            except Exception as exc:  # noqa: BLE001 - closed by us, or the engine went away
                if self._current(run_id):
                    log.debug("container events stream ended: %s", exc)
            _close_quietly(stream)  # its connection, when the engine ended it
            if self._current(run_id):
                time.sleep(delay)

    def _post(self, container_id: str | None, what: str, code: int | None) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._resolve, container_id, what, code)
        except RuntimeError:
            pass  # the agent's loop has closed


def _close_quietly(stream: Any) -> None:
    try:
        stream.close()
    except Exception:  # noqa: BLE001 - already broken: nothing to release
        pass


def exit_watch(client: Any) -> ExitWatch:
    """The one ExitWatch of an engine client."""
    watch = getattr(client, "_swarmkit_exit_watch", None)
    if watch is None:
        watch = ExitWatch(client)
        client._swarmkit_exit_watch = watch
    return watch
