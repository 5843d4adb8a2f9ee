"""The worker's session with the dispatcher on the Raft leader.

The node is Ready only as long as the leader keeps hearing heartbeats, and after a leader
change the new leader gives every node just one grace period (three heartbeat periods) to
reappear before declaring it Down (manager/dispatcher/dispatcher.py explains why that beats
Swarm's doubled wait). Everything here is shaped by that budget:

- a heartbeat waits at most about one period for its answer, and a closed connection (the
  leader's process died) is noticed at once, not at the next beat;
- after a failure every known manager is tried right away, and a ``not_leader`` answer is
  followed to the leader it names, so a worker usually needs one or two round trips;
- back-off between whole failed rounds is jittered (a thousand workers must not stampede the
  new leader in lock-step) and capped at one heartbeat period.

The manager list comes from the dispatcher's answers, so a worker started with one seed address
learns the others and can fail over when that one dies. The wire contract is
``swarmkit_py/proto/dispatcher.py``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import ssl as _ssl
from collections.abc import Callable
from typing import Any

from ..ca import expect_manager
from ..proto import (
    HEARTBEAT,
    MANAGERS_PUSH,
    NOT_LEADER,
    SESSION,
    SESSION_INVALID,
    leader_hint,
)
from ..rpc import HandlerRegistry, PeerInfo, RpcClient, RpcError
from ..rpc.client import VerifyPeer
from .describe import describe_node

log = logging.getLogger(__name__)

PushHandler = Callable[[Any], Any]
SessionListener = Callable[[dict[str, Any]], Any]


class NoManagerAvailable(Exception):
    """A whole round over the known managers failed; the session retries after a back-off."""


def split_addr(addr: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"manager address {addr!r} is not host:port")
    return host.strip("[]"), int(port)


class WorkerSession:
    """Keeps one dispatcher session open for ``node_id`` until ``stop()``.

    ``describe`` returns the node description (wire shape, see describe.py); a plain function
    runs in a thread because the Docker SDK blocks. ``addr`` is the address to advertise as
    the node's Status.Addr (the dispatcher uses the connection's source IP when it is None).
    Over TLS the server must present a manager's certificate (``verify_peer``, by default
    ``ca.expect_manager()``): a worker that took over a manager's address gets nothing.
    """

    def __init__(
        self,
        node_id: str,
        managers: list[str],
        *,
        ssl_context: _ssl.SSLContext | None = None,
        server_hostname: str = "swarm-manager",
        describe: Callable[[], Any] | None = describe_node,
        addr: str | None = None,
        open_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        min_heartbeat_timeout: float = 1.0,
        backoff_initial: float = 0.05,
        backoff_max: float = 1.0,
        rng: random.Random | None = None,
        verify_peer: VerifyPeer | None = None,
    ) -> None:
        if not managers:
            raise ValueError("at least one manager address is needed")
        for a in managers:
            split_addr(a)
        self.node_id = node_id
        self._seeds = list(managers)
        self.managers: list[str] = list(managers)
        self._ssl = ssl_context
        self._server_hostname = server_hostname
        self._verify_peer = verify_peer or (expect_manager() if ssl_context is not None else None)
        self._describe = describe
        self.addr = addr
        self.open_timeout = open_timeout
        self.connect_timeout = connect_timeout
        self.min_heartbeat_timeout = min_heartbeat_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._registry = HandlerRegistry()  # shared by every connection this session makes
        self._session_listeners: list[SessionListener] = []
        self._client: RpcClient | None = None
        self._preferred: str | None = None
        self._task: asyncio.Task | None = None
        self.session_id: str | None = None
        self.manager_addr: str | None = None
        self.heartbeat_period: float | None = None
        self.last_error: str | None = None
        self.connected = asyncio.Event()
        self.stats = {"sessions_opened": 0, "heartbeats": 0, "failed_rounds": 0}
        # the leader pushes the manager list whenever it changes (promotions, demotions)
        self.on_push(MANAGERS_PUSH, lambda params: self._learn_managers((params or {}).get("managers")))

    # -- public ---------------------------------------------------------------------------------

    def on_push(self, method: str, handler: PushHandler) -> None:
        """``handler(params)`` for notifications the leader pushes down the session (task
        assignments, issue 4). Pushes from any connection but the current session's are
        dropped: a deposed leader must not hand out work."""
        self._registry.add_notification_handler(method, self._push_wrapper(handler))

    def add_session_listener(self, listener: SessionListener) -> None:
        """``listener(answer)`` after every session opens (the worker should expect its full
        assignment set to be re-sent then)."""
        self._session_listeners.append(listener)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"worker-session {self.node_id}"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._drop_client()

    async def wait_connected(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self.connected.wait()

    async def __aenter__(self) -> WorkerSession:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._open()
            except NoManagerAvailable as e:
                failures += 1
                self.stats["failed_rounds"] += 1
                self.last_error = str(e)
                delay = self._backoff(failures)
                log.info("no dispatcher session (%s); retrying in %.2fs", e, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            try:
                await self._heartbeat_loop()
            finally:
                self.connected.clear()
                self.session_id = None
                await self._drop_client()

    def _backoff(self, failures: int) -> float:
        cap = self.backoff_max
        if self.heartbeat_period is not None:
            cap = min(cap, self.heartbeat_period)
        delay = min(cap, self.backoff_initial * 2 ** (failures - 1))
        return delay * self._rng.uniform(0.5, 1.0)

    def _candidates(self) -> list[str]:
        order = ([self._preferred] if self._preferred else []) + self.managers + self._seeds
        return list(dict.fromkeys(order))

    async def _open(self) -> None:
        """Try the preferred manager, then the others; follow ``not_leader`` hints."""
        description = await self._description()
        params: dict[str, Any] = {"node_id": self.node_id}
        if description is not None:
            params["description"] = description
        if self.addr:
            params["addr"] = self.addr
        queue = self._candidates()
        tried: set[str] = set()
        errors: list[str] = []
        while queue:
            addr = queue.pop(0)
            if addr in tried:
                continue
            tried.add(addr)
            try:
                host, port = split_addr(addr)
            except ValueError as e:
                errors.append(str(e))
                continue
            client = RpcClient(
                host,
                port,
                ssl=self._ssl,
                server_hostname=self._server_hostname,
                timeout=self.open_timeout,
                connect_timeout=self.connect_timeout,
                handlers=self._registry,
                verify_peer=self._verify_peer,
            )
            # Current before the answer arrives: the leader may push right after opening.
            self._client = client
            try:
                answer = await client.call(SESSION, params)
                session_id = answer["session_id"]
                period = float(answer["heartbeat_period"])
            except RpcError as e:
                self._client = None
                await client.close()
                errors.append(f"{addr}: {e}")
                if e.code == NOT_LEADER:
                    hint = leader_hint(e.message)
                    if hint and hint not in tried:
                        queue.insert(0, hint)
                continue
            except (KeyError, TypeError, ValueError) as e:
                self._client = None
                await client.close()
                errors.append(f"{addr}: malformed session answer: {e!r}")
                continue
            self.session_id = session_id
            self.heartbeat_period = period
            self.manager_addr = addr
            self._preferred = addr
            self._learn_managers(answer.get("managers"))
            self.stats["sessions_opened"] += 1
            self.last_error = None
            self.connected.set()
            log.info("session %s open with %s (period %.2fs)", session_id, addr, period)
            for listener in self._session_listeners:
                await _call_maybe_async(listener, answer)
            return
        self._preferred = None
        raise NoManagerAvailable("; ".join(errors) or "no manager address to try")

    async def _heartbeat_loop(self) -> None:
        """Beat until something says the session is over; returns to re-open it."""
        client = self._client
        conn = client.connection if client is not None else None
        if client is None or conn is None:
            return
        lost = asyncio.Event()
        conn.add_close_callback(lost.set)
        loop = asyncio.get_running_loop()
        next_at = loop.time() + (self.heartbeat_period or 1.0)
        while True:
            try:
                async with asyncio.timeout(max(0.0, next_at - loop.time())):
                    await lost.wait()
                log.info("connection to %s lost; re-opening the session", self.manager_addr)
                self._demote_current()
                return
            except TimeoutError:
                pass
            period = self.heartbeat_period or 1.0
            sent = loop.time()
            try:
                answer = await client.call(
                    HEARTBEAT,
                    {"session_id": self.session_id},
                    timeout=max(period, self.min_heartbeat_timeout),
                )
            except RpcError as e:
                self.last_error = f"heartbeat to {self.manager_addr}: {e}"
                log.info("%s", self.last_error)
                if e.code == NOT_LEADER:
                    self._preferred = leader_hint(e.message)
                elif e.code != SESSION_INVALID:
                    self._demote_current()
                return
            self.stats["heartbeats"] += 1
            try:
                self.heartbeat_period = float(answer.get("heartbeat_period", period))
            except (AttributeError, TypeError, ValueError):
                pass
            if isinstance(answer, dict):
                self._learn_managers(answer.get("managers"))
            next_at = sent + (self.heartbeat_period or period)

    def _demote_current(self) -> None:
        """The current manager failed: try it last next time."""
        failed = self.manager_addr
        self._preferred = None
        if failed in self.managers:
            self.managers = [m for m in self.managers if m != failed] + [failed]

    def _learn_managers(self, managers: Any) -> None:
        if not isinstance(managers, list):
            return
        addrs = []
        for m in managers:
            addr = m.get("addr") if isinstance(m, dict) else None
            if isinstance(addr, str) and addr:
                try:
                    split_addr(addr)
                except ValueError:
                    continue
                addrs.append(addr)
        if addrs:
            # Keep our order for managers we already knew (it records which ones failed).
            known = [a for a in self.managers if a in addrs]
            new = known + [a for a in addrs if a not in known]
            if set(new) != set(self.managers):
                log.info("managers: %s", ", ".join(new))
            self.managers = new

    async def _description(self) -> Any:
        if self._describe is None:
            return None
        try:
            if inspect.iscoroutinefunction(self._describe):
                return await self._describe()
            return await asyncio.to_thread(self._describe)
        except Exception:
            log.exception("describing the node failed; opening the session without it")
            return None

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # -- pushes ---------------------------------------------------------------------------------

    def _push_wrapper(self, handler: PushHandler):
        def on_push(peer: PeerInfo, params: Any) -> Any:
            client = self._client
            if client is None or client.connection is not peer.connection:
                log.debug("dropping a push from %s: not the current session", peer.address_str)
                return None
            return handler(params)

        return on_push


async def _call_maybe_async(fn: Callable[..., Any], *args: Any) -> None:
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("session listener failed")
