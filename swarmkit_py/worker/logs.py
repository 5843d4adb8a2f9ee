"""The worker's half of `docker service logs`: read task containers' logs from the local
engine and publish them to the leader through the session (contract: proto/logs.py).

Each (subscription, task) gets one reader thread on the engine's log stream and a bounded
buffer between that thread and the event loop: when the leader has no room (a slow
`docker service logs` reader), the publisher waits and retries, the buffer fills, and only
that reader thread blocks on its engine stream. The worker's session, heartbeats and task
reconcile never wait on a log reader.

The engine's stream is read raw (its multiplexed frames: stream id, length, one log message;
swarmkit_py/engine.py decodes the chunked transfer under them), keeping the stream id: stdout and
stderr stay apart all the way to the CLI, which prints them on its own stdout and stderr. A task asked for
again after a leader change carries the last timestamp its reader delivered (``after``), so
the new subscription starts right after it instead of repeating or skipping lines.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from ..engine import Engine, Stream
from ..proto import LOGS_CANCEL, LOGS_PUBLISH, LOGS_SUBSCRIBE, MAX_BATCH
from ..store.timefmt import parse_rfc3339
from .executor.docker_adapter import LABEL_TASK_ID

log = logging.getLogger(__name__)

BUFFER = 512
"""Lines held per reader before its thread waits."""
RETRY_MAX = 1.0
STDOUT, STDERR = 1, 2


def parse_line(chunk: bytes) -> tuple[int, bytes]:
    """`<RFC 3339 nano timestamp> <data>` (the engine's `timestamps=1` form) -> (ns, data)."""
    head, sep, rest = chunk.partition(b" ")
    if sep:
        try:
            ts = parse_rfc3339(head.decode())
            ns = int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000
            frac = head.decode().partition(".")[2].rstrip("Z")
            if frac.isdigit():
                ns = int(ts.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9])
            return ns, rest
        except ValueError:
            pass
    return 0, chunk


def engine_since(ns: int) -> str:
    """The engine's `since` as `seconds.nanoseconds` (a float would round the nanoseconds)."""
    secs, frac = divmod(int(ns), 1_000_000_000)
    return f"{secs}.{frac:09d}"


def _read_exactly(raw: Any, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = raw.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def demux(raw: Any, tty: bool) -> Iterator[tuple[int, bytes]]:
    """(stream id, message) from the engine's log response body (`raw`: its decoded body, as
    a file). Without a TTY each frame is one log message with its stream id (the engine's
    stdcopy format: 8-byte header, stream, length); with one, the body is the terminal's
    bytes, cut here into lines (all stdout, as `docker logs` shows them)."""
    if not tty:
        while True:
            header = _read_exactly(raw, 8)
            if len(header) < 8:
                return
            stream, size = struct.unpack(">BxxxL", header)
            data = _read_exactly(raw, size)
            if len(data) < size:
                return
            yield stream, data
    read = getattr(raw, "read1", raw.read)  # what has arrived, without waiting for more
    pending = b""
    while chunk := read(65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield STDOUT, line + b"\n"
    if pending:
        yield STDOUT, pending


class _Reader(threading.Thread):
    """Pulls one container's log stream into a bounded buffer of (ns, stream id, data)."""

    def __init__(self, client: Engine, container_id: str, opts: dict[str, Any],
                 after: tuple[int, int] | None, loop: asyncio.AbstractEventLoop,
                 wake: asyncio.Event) -> None:
        """``after``: the last stdout and stderr lines' timestamps already delivered; only
        later lines of each stream are kept."""
        super().__init__(daemon=True, name=f"logs-{container_id[:12]}")
        self.client, self.container_id, self.opts, self.after = client, container_id, opts, after
        self.loop, self.wake = loop, wake
        self.buf: deque[tuple[int, int, bytes]] = deque()
        self.cond = threading.Condition()
        self.stopped = False
        self.finished = False
        self._stream: Stream | None = None

    def _open(self) -> Iterator[tuple[int, bytes]]:
        """The engine's log stream (no read timeout: a quiet container is not a dead engine),
        as (stream id, message)."""
        engine = self.client
        tty = bool((engine.inspect_container(self.container_id).get("Config") or {}).get("Tty"))
        stream = engine.logs(self.container_id, {"timestamps": 1, **self.opts})
        with self.cond:
            self._stream = stream
            if self.stopped:
                stream.close()
        return demux(stream, tty)

    def run(self) -> None:
        try:
            for stream, chunk in self._open():
                ts, data = parse_line(chunk)
                if self.after is not None and ts and ts <= self.after[stream == 2]:
                    continue  # delivered through an earlier subscription
                with self.cond:
                    while len(self.buf) >= BUFFER and not self.stopped:
                        self.cond.wait(0.5)
                    if self.stopped:
                        break
                    self.buf.append((ts, stream, data))
                self.loop.call_soon_threadsafe(self.wake.set)
        except Exception as exc:  # noqa: BLE001 - the container went away, engine error
            if not self.stopped:
                log.info("log stream of %s ended: %s", self.container_id[:12], exc)
        finally:
            self.finished = True
            try:
                self.loop.call_soon_threadsafe(self.wake.set)
            except RuntimeError:
                pass  # the agent's loop has closed

    def take(self, n: int) -> list[tuple[int, int, bytes]]:
        with self.cond:
            out = [self.buf.popleft() for _ in range(min(n, len(self.buf)))]
            self.cond.notify_all()
            return out

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
            if self._stream is not None:
                self._stream.close()  # wakes the thread blocked reading it


Send = Callable[[dict[str, Any]], Awaitable[Any]]


def engine_options(params: dict[str, Any]) -> dict[str, Any]:
    """The engine's query for a `logs.subscribe` (streams, follow, tail, since)."""
    opts: dict[str, Any] = {"follow": int(bool(params.get("follow"))),
                            "stdout": int(params.get("stdout", True) is not False),
                            "stderr": int(params.get("stderr", True) is not False)}
    tail = params.get("tail")
    opts["tail"] = "all" if tail is None else int(tail)
    if params.get("since") is not None:
        opts["since"] = engine_since(int(float(params["since"]) * 1_000_000_000))
    return opts


def resume_marks(raw: Any) -> tuple[int, int] | None:
    """A task's ``after`` as (stdout ns, stderr ns), or None to start as the reader asked. A
    stream with no line delivered yet resumes where the other one does (what was before it
    was not asked for: --tail, --since)."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = [raw, raw]  # an older manager's single mark
    if not (isinstance(raw, list) and len(raw) == 2 and all(isinstance(x, int) for x in raw)):
        return None
    out, err = raw
    if out <= 0 and err <= 0:
        return None
    return (out if out > 0 else err, err if err > 0 else out)


class LogPublisher:
    """Serves the leader's log subscriptions on this node."""

    def __init__(self, session: Any, client: Callable[[], Awaitable[Engine]],
                 send: Send) -> None:
        self.client = client
        self.send = send
        self._subs: dict[str, dict[str, asyncio.Task]] = {}
        self._readers: dict[str, list[_Reader]] = {}
        session.on_push(LOGS_SUBSCRIBE, self.on_subscribe)
        session.on_push(LOGS_CANCEL, self.on_cancel)

    def on_subscribe(self, params: Any) -> None:
        if not isinstance(params, dict) or not isinstance(params.get("sub"), str):
            return
        sub = params["sub"]
        tasks = self._subs.setdefault(sub, {})
        for task_id in params.get("tasks") or []:
            if isinstance(task_id, str) and task_id not in tasks:
                tasks[task_id] = asyncio.get_running_loop().create_task(
                    self._publish(sub, task_id, params), name=f"logs-{sub[:8]}-{task_id[:8]}")

    def on_cancel(self, params: Any) -> None:
        sub = (params or {}).get("sub") if isinstance(params, dict) else None
        self._cancel(sub)

    def _cancel(self, sub: str | None) -> None:
        for reader in self._readers.pop(sub or "", []):
            reader.stop()
        for task in (self._subs.pop(sub or "", {}) or {}).values():
            task.cancel()

    async def stop(self) -> None:
        for sub in list(self._subs):
            self._cancel(sub)

    async def _publish(self, sub: str, task_id: str, params: dict[str, Any]) -> None:
        reader = None
        try:
            client = await self.client()
            found = await asyncio.to_thread(
                client.containers, all=True, filters={"label": f"{LABEL_TASK_ID}={task_id}"})
            if found:
                opts = engine_options(params)
                after = resume_marks((params.get("after") or {}).get(task_id))
                if after is not None:
                    # strictly after the last lines delivered (the engine's since is inclusive)
                    opts.update(since=engine_since(min(after)), tail="all")
                wake = asyncio.Event()
                reader = _Reader(client, found[0]["Id"], opts, after, asyncio.get_running_loop(),
                                 wake)
                self._readers.setdefault(sub, []).append(reader)
                reader.start()
                while True:
                    await wake.wait()
                    wake.clear()
                    while batch := reader.take(MAX_BATCH):
                        if not await self._send(sub, task_id, batch):
                            return
                    if reader.finished and not reader.buf:
                        break
            await self._send(sub, task_id, [], done=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("publishing the logs of task %s failed", task_id)
        finally:
            if reader is not None:
                reader.stop()

    async def _send(self, sub: str, task_id: str, batch: list[tuple[int, int, bytes]],
                    done: bool = False) -> bool:
        """Until the leader took the whole batch; False when nobody reads it any more."""
        pending = [{"task_id": task_id, "ts": ts, "stream": stream, "data": data}
                   for ts, stream, data in batch]
        pause = 0.02
        while True:
            params = {"sub": sub, "messages": pending, "done": [task_id] if done else []}
            try:
                answer = await self.send(params)
            except Exception as exc:  # noqa: BLE001 - no session right now: try again
                log.debug("log publish failed (%s); retrying", exc)
                answer = None
            if answer is not None:
                if not answer.get("open", False):
                    self._cancel(sub)
                    return False
                pending = pending[int(answer.get("accepted", 0)):]
                if not pending:
                    return True
                pause = 0.02 if answer.get("accepted") else pause
            await asyncio.sleep(pause)
            pause = min(RETRY_MAX, pause * 2)


def session_sender(session: Any, timeout: float = 5.0) -> Send:
    """`logs.publish` on the session's own connection (the one the dispatcher bound it to)."""

    async def send(params: dict[str, Any]) -> Any:
        client, session_id = session._client, session.session_id
        if client is None or session_id is None:
            raise ConnectionError("no dispatcher session")
        return await client.call(LOGS_PUBLISH, {**params, "session_id": session_id},
                                 timeout=timeout)

    return send
