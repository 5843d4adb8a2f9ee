"""The worker's session with the dispatcher on the Raft leader.

The node is Ready only as long as the leader keeps hearing heartbeats, and after a leader
change the new leader gives every node just one grace period (three heartbeat periods) to
reappear before declaring it Down (manager/dispatcher/dispatcher.py explains why that beats
Swarm's doubled wait). Everything here is shaped by that budget:

- a heartbeat waits at most two periods for its answer (a busy leader is slow, not gone), and a
  closed connection (the leader's process died) is noticed at once, not at the next beat;
- after a failure every known manager is tried right away, and a ``not_leader`` answer is
  followed to the leader it names, so a worker usually needs one or two round trips;
- back-off between whole failed rounds is jittered (a thousand workers must not stampede the
  new leader in lock-step) and capped at one heartbeat period;
- a warm standby: a second connection to another manager (the local one on a manager host)
  watches for leader changes (``dispatcher.watch``). When the leader's host loses power its
  session goes silent (no FIN, no RST), and without the standby the worker would need a
  heartbeat timeout plus a connect timeout to the dead host before trying elsewhere; with it a
  survivor tells the worker where the new leader is within milliseconds of the election, and
  the worker drops the dead session (abort, not a graceful TLS close to a host that will never
  answer) and opens one with the new leader: at once in a small cluster, spread over about a
  heartbeat period in a large one (the push says over how long). The standby is pinged once a period
  with the same call, so a dead standby is replaced too.
- up to ``STANDBYS`` (2) such connections, to distinct other managers picked at random, and
  they are asked first when the session must be re-opened: when one of them is the new leader
  the session is opened over it, with no new TLS handshake. After a failover at 1,000 nodes
  every worker re-handshaking with one new leader was what took it down (issue 13); with 3
  managers two standbys cover every possible new leader, so no worker needs a handshake to
  move, and each replaces the standby it used a jittered period later, with a follower, not
  with the leader that is busy taking the others. In larger control planes the random picks
  spread the fleet's standbys over the managers.

The manager list comes from the dispatcher's answers, so a worker started with one seed address
learns the others and can fail over when that one dies. The wire contract is
``swarmkit_py/proto/dispatcher.py``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
import ssl as _ssl
from collections.abc import Callable
from typing import Any

from ..background import Background
from ..ca import expect_manager
from ..proto import (
    HEARTBEAT,
    LEADER_PUSH,
    MANAGERS_PUSH,
    NOT_LEADER,
    SESSION,
    SESSION_INVALID,
    WATCH,
    leader_hint,
)
from ..rpc import HandlerRegistry, PeerInfo, RpcClient, RpcError, RpcTimeout
from ..rpc.client import VerifyPeer
from .describe import describe_node

log = logging.getLogger(__name__)

PushHandler = Callable[[Any], Any]
SessionListener = Callable[[dict[str, Any]], Any]


# A leader whose dispatcher is still starting is asked again every STARTING_WAIT, this often.
STARTING_WAIT = 0.05
STARTING_RETRIES = 20
MAX_MOVE_SPREAD = 30.0
"""Seconds: a pushed ``spread_s`` is capped here (the node's grace is three heartbeat periods)."""
PATIENT_FROM_SPREAD_S = 1.0
"""From this ``spread_s`` on (about 250 nodes at the default ``max_heartbeat_rate``) the
cluster is large, and a heartbeat that timed out on a connection still open is sent again on
it, up to ``SLOW_BEATS`` times, before the session is given up (see ``_heartbeat_loop``)."""
SLOW_BEATS = 2
STANDBYS = 2
"""Warm standby connections a worker keeps (to as many other managers as there are, up to this)."""


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
        standby: str | None = None,
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
        self.features: set[str] = set()
        """What this worker understands beyond the base contract, said when a session opens
        (proto/dispatcher.py); each part adds what it handles (the reconciler: changes)."""
        self.open_timeout = open_timeout
        self.connect_timeout = connect_timeout
        self.min_heartbeat_timeout = min_heartbeat_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._rng = rng or random.Random()
        if standby is not None:
            split_addr(standby)
        self.standby_pref = standby
        # shared by every connection this session makes, the standby's too (it may become the
        # session's); each handler checks which connection a message came on
        self._registry = HandlerRegistry()
        self._registry.add_notification_handler(LEADER_PUSH, self._on_leader_push)
        self._standbys: dict[int, tuple[str, RpcClient]] = {}  # slot -> (manager, client)
        self._standby_loops = [Background(f"worker-standby{i} {node_id}", functools.partial(self._standby_loop, i))
                               for i in range(STANDBYS)]
        self._bad_standbys: list[str] = []
        self._leader_term = 0
        self._next_leader: str | None = None  # named by a standby: tried first on re-open
        self._kick = asyncio.Event()  # cuts a back-off short when a standby names the leader
        self._move: asyncio.TimerHandle | None = None  # a pushed move, spread (see _leader_news)
        self._spread = 0.0  # over how long moves are spread, as the managers last said (spread_s)
        self._session_listeners: list[SessionListener] = []
        self._client: RpcClient | None = None
        self._preferred: str | None = None
        self._loop = Background(f"worker-session {node_id}", self._run)
        self.session_id: str | None = None
        self.manager_addr: str | None = None
        self.heartbeat_period: float | None = None
        self.last_error: str | None = None
        self.connected = asyncio.Event()
        self.stats = {"sessions_opened": 0, "heartbeats": 0, "failed_rounds": 0,
                      "leader_pushes": 0, "moved_by_push": 0, "standby_failures": 0,
                      "sessions_via_standby": 0, "slow_heartbeats": 0}
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

    @property
    def standby_addrs(self) -> list[str]:
        """The managers this worker keeps a standby connection to (being opened or open)."""
        return [addr for addr, _ in self._standbys.values()]

    @property
    def standby_addr(self) -> str | None:
        """One of them (the first slot's), or None."""
        addrs = self.standby_addrs
        return addrs[0] if addrs else None

    def start(self) -> None:
        self._loop.start()
        for loop in self._standby_loops:
            loop.start()

    async def stop(self) -> None:
        if self._move is not None:
            self._move.cancel()
            self._move = None
        await self._loop.stop()
        for loop in self._standby_loops:
            await loop.stop()
        await self._drop_client()
        standbys, self._standbys = list(self._standbys.values()), {}
        for _, client in standbys:
            await client.close()

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
                self._kick.clear()
                try:
                    async with asyncio.timeout(delay):
                        await self._kick.wait()
                except TimeoutError:
                    pass
                continue
            failures = 0
            try:
                await self._heartbeat_loop()
            finally:
                self.connected.clear()
                self.session_id = None
                # abort: the manager is dead or no longer leads; a graceful TLS close to a
                # host that lost power would hold up the next session for CLOSE_WAIT
                client, self._client = self._client, None
                if client is not None:
                    client.abort()

    def _backoff(self, failures: int) -> float:
        cap = self.backoff_max
        if self.heartbeat_period is not None:
            cap = min(cap, self.heartbeat_period)
        delay = min(cap, self.backoff_initial * 2 ** (failures - 1))
        return delay * self._rng.uniform(0.5, 1.0)

    def _candidates(self) -> list[str]:
        # the standby before the other managers: asking it costs no handshake, and if it does
        # not lead it names who does
        warm = [a for a, c in self._standbys.values() if c.connection is not None]
        first = [a for a in (self._next_leader, self._preferred) if a] + warm
        self._next_leader = None
        return list(dict.fromkeys(first + self.managers + self._seeds))

    def _warm_standby(self, addr: str) -> RpcClient | None:
        """The client of a standby to ``addr`` whose connection is up."""
        for a, client in self._standbys.values():
            if a == addr and client.connection is not None:
                return client
        return None

    async def _open(self) -> None:
        """Try the preferred manager, then the others; follow ``not_leader`` hints."""
        description = await self._description()
        params: dict[str, Any] = {"node_id": self.node_id}
        if description is not None:
            params["description"] = description
        if self.addr:
            params["addr"] = self.addr
        if self.features:
            params["features"] = sorted(self.features)
        queue = self._candidates()
        tried: set[str] = set()
        errors: list[str] = []
        starting = 0
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
            standby = self._warm_standby(addr)
            client = standby or RpcClient(
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
                answer = await client.call(SESSION, params, timeout=self.open_timeout)
                session_id = answer["session_id"]
                period = float(answer["heartbeat_period"])
            except RpcError as e:
                self._client = None
                if standby is None:
                    await client.close()  # the standby's connection stays the standby's
                errors.append(f"{addr}: {e}")
                if e.code == NOT_LEADER:
                    hint = leader_hint(e.message)
                    if hint == addr and starting < STARTING_RETRIES:
                        # it leads but its dispatcher is not serving yet (it starts right
                        # after the election): ask it again shortly rather than dial the
                        # others, some of which may be dead hosts that cost a connect timeout
                        starting += 1
                        tried.discard(addr)
                        queue.insert(0, addr)
                        await asyncio.sleep(STARTING_WAIT)
                    elif hint and hint not in tried:
                        queue.insert(0, hint)
                continue
            except (KeyError, TypeError, ValueError) as e:
                self._client = None
                if standby is None:
                    await client.close()
                errors.append(f"{addr}: malformed session answer: {e!r}")
                continue
            self.session_id = session_id
            self.heartbeat_period = period
            self.manager_addr = addr
            self._preferred = addr
            self._learn_managers(answer.get("managers"))
            self.stats["sessions_opened"] += 1
            if standby is not None:
                # the standby's connection is the session's now; the standby loop lets go of
                # it (see _standby_loop) and picks another manager later
                self.stats["sessions_via_standby"] += 1
                client.timeout = self.open_timeout
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
        slow = 0
        while True:
            try:
                async with asyncio.timeout(max(0.0, next_at - loop.time())):
                    await lost.wait()
                # the leader's process died: every worker of the cluster saw the same close in
                # the same instant, so each waits a random part of the spread the managers gave
                # (0 in a small cluster) rather than handing the new leader a thousand
                # handshakes at once (issue 13: 700 of them refused in the first second)
                delay = self._rng.uniform(0.0, self._spread)
                log.info("connection to %s lost; re-opening the session in %.2fs", self.manager_addr, delay)
                self._demote_current()
                if delay > 0:
                    self.connected.clear()  # not connected while it waits
                    await asyncio.sleep(delay)
                return
            except TimeoutError:
                pass
            period = self.heartbeat_period or 1.0
            sent = loop.time()
            try:
                # Two periods: a busy leader answers late, and giving up on it re-opens the
                # session (a TLS handshake, the assignments again): a thousand workers doing
                # that at once made a slow leader slower (issue 13). A dead leader is found by
                # the standby's push or the closed connection, not by this timeout; the grace
                # the dispatcher gives is three periods from the last beat it got.
                answer = await client.call(
                    HEARTBEAT,
                    {"session_id": self.session_id},
                    timeout=max(2 * period, self.min_heartbeat_timeout),
                )
            except RpcError as e:
                self.last_error = f"heartbeat to {self.manager_addr}: {e}"
                log.info("%s", self.last_error)
                if isinstance(e, RpcTimeout) and not conn.is_closed and slow < SLOW_BEATS \
                        and self._spread >= PATIENT_FROM_SPREAD_S:
                    # A large cluster's leader that is slow, not gone (gone: the connection
                    # closes, or the standby names another leader): giving up re-opens the
                    # session (a TLS handshake, the session write, the assignments), and a
                    # thousand workers doing that at once turned a starved leader's pause
                    # into 1,032 nodes declared Down (issue 13). Beat again on it instead.
                    slow += 1
                    self.stats["slow_heartbeats"] += 1
                    next_at = loop.time()
                    continue
                if e.code == NOT_LEADER:
                    self._preferred = leader_hint(e.message)
                elif e.code != SESSION_INVALID:
                    self._demote_current()
                return
            self.stats["heartbeats"] += 1
            slow = 0
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

    # -- the warm standby -------------------------------------------------------------------------

    def _pick_standby(self, slot: int) -> str | None:
        """A manager other than the session's and the other standbys': the preferred one (the
        local manager on a manager host) if it qualifies, else a random known one that has not
        failed as a standby lately."""
        taken = {a for i, (a, _) in self._standbys.items() if i != slot}
        order = self.managers + self._seeds
        cands = [a for a in dict.fromkeys(order) if a != self.manager_addr and a not in taken]
        fresh = [a for a in cands if a not in self._bad_standbys]
        if not fresh:
            self._bad_standbys.clear()
            fresh = cands
        if self.standby_pref and self.standby_pref in cands and self.standby_pref not in self._bad_standbys:
            return self.standby_pref
        # a random one: the workers' standbys spread over the other managers, so whichever
        # of them wins the next election, part of the fleet can move to it over the standby
        return self._rng.choice(fresh) if fresh else None

    async def _standby_loop(self, slot: int) -> None:
        """Keep one watching connection (``slot``) to a manager other than the session's and
        the other standbys'; ping it once a period (the same call), and move on to another
        manager when it fails."""
        if slot:
            # the extra standbys come once the session is up and a few periods later: a
            # thousand nodes joining at once need their sessions first, not three handshakes
            # each (the simulated fleet's own CPU went to them, issue 13)
            await self.connected.wait()
            await asyncio.sleep((self.heartbeat_period or 1.0) * self._rng.uniform(1.0, 3.0))
        while True:
            period = self.heartbeat_period or 1.0
            addr = self._pick_standby(slot)
            if addr is None:  # too few managers, or no session yet
                await asyncio.sleep(period)
                continue
            host, port = split_addr(addr)
            client = RpcClient(
                host,
                port,
                ssl=self._ssl,
                server_hostname=self._server_hostname,
                timeout=max(2 * period, self.min_heartbeat_timeout),  # see _heartbeat_loop
                connect_timeout=self.connect_timeout,
                handlers=self._registry,
                verify_peer=self._verify_peer,  # a standby's word moves the session: a manager's only
            )
            self._standbys[slot] = (addr, client)
            try:
                while addr != self.manager_addr:  # the standby became the session's manager
                    answer = await client.call(WATCH, {"node_id": self.node_id})
                    self._leader_news(answer, push=False)
                    await asyncio.sleep(self.heartbeat_period or period)
                if client is self._client:
                    # the session was opened over this connection: it is the session's now.
                    # A new standby is not urgent, and right after a failover every worker
                    # of the cluster is here at once: a jittered period
                    self._standbys.pop(slot, None)
                    client = None
                    await asyncio.sleep((self.heartbeat_period or period) * self._rng.uniform(0.5, 1.5))
            except RpcError as e:
                self.stats["standby_failures"] += 1
                log.info("standby %s failed (%s); picking another", addr, e)
                self._bad_standbys = [a for a in self._bad_standbys if a != addr] + [addr]
                # not urgent (the session itself is fine): a jittered period, so a manager
                # slow to answer is not met with every worker's new handshake at once
                await asyncio.sleep(period * self._rng.uniform(0.5, 1.0))
            finally:
                if client is not None:
                    self._standbys.pop(slot, None)
                    if client is not self._client:
                        client.abort()

    def _on_leader_push(self, peer: PeerInfo, params: Any) -> None:
        if not any(c.connection is peer.connection for _, c in self._standbys.values()):
            return  # from a standby we have since dropped
        self.stats["leader_pushes"] += 1
        self._leader_news(params, push=True)

    def _leader_news(self, news: Any, push: bool) -> None:
        """A standby's view of the leader. A push (the standby's Raft saw a new leader) moves
        the session, at a random moment within the push's ``spread_s`` (at once in a small
        cluster; about one heartbeat period in a large one, so the new leader is not handed
        every node's handshake in the same instant); a ping answer only tells a session being
        re-opened where to go.
        Older terms are ignored, so a stale standby cannot send the worker back."""
        if not isinstance(news, dict):
            return
        spread = news.get("spread_s", 0.0)
        self._spread = min(float(spread), MAX_MOVE_SPREAD) if isinstance(spread, int | float) and spread > 0 else 0.0
        leader, term = news.get("leader_addr"), news.get("term")
        if not isinstance(leader, str) or not isinstance(term, int) or term < self._leader_term:
            return
        try:
            split_addr(leader)
        except ValueError:
            return
        self._leader_term = term
        if leader == self.manager_addr and self.session_id is not None:
            return
        if self.session_id is None:
            self._next_leader = leader
            self._kick.set()
            return
        if not push:
            return
        delay = self._rng.uniform(0.0, self._spread)
        self._next_leader = leader  # whatever ends this session first, re-open there
        log.info("standby: the leader is now %s (term %d); moving the session in %.2fs",
                 leader, term, delay)
        if self._move is not None:
            self._move.cancel()
        if delay <= 0:
            self._move_session(leader, term)
        else:
            self._move = asyncio.get_running_loop().call_later(delay, self._move_session, leader, term)

    def _move_session(self, leader: str, term: int) -> None:
        """Leave the current session for the leader a standby named, unless a newer leader
        was heard of or the session already went there meanwhile."""
        self._move = None
        if term != self._leader_term or self.manager_addr == leader or self.session_id is None:
            return
        self.stats["moved_by_push"] += 1
        self._next_leader = leader
        client = self._client
        if client is not None:
            client.abort()  # the heartbeat loop sees the loss and re-opens

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
