"""Any manager's side of `docker service logs`: one reader's stream, wherever the leader is.

Only the leader's broker (logbroker.py) has the nodes' sessions, so the logs are collected
there. Any manager answers the API, though, and swarmkit's choice is followed: a follower
forwards the subscription to the leader over the managers' mTLS connection (swarmkit proxies
its Logs stream through raftproxy) rather than every manager asking every node, which would
need a second session per node to each manager and would multiply the nodes' engine readers.
Forwarding costs one extra hop for the lines; reads stay where they belong.

A stream outlives the leader that serves it: when the leader's connection fails, times out
(its host lost power: no FIN), says it no longer leads, or this manager's Raft member sees
another leader, the stream opens the subscription again on the new leader, passing for each
task the timestamps of the last stdout and stderr lines it delivered (``after``), so the reader sees neither a
repeat nor a gap. A reader connected to the leader itself loses its stream with it, as with
Docker: the API connection dies with the host.

Bounded on every hop: the leader's queue per subscription (logbroker.QUEUE lines) is the only
buffer; the next batch (at most MAX_BATCH lines) is pulled only after the last one was
written to the API client, so a slow client slows its own stream and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from ..proto import LOGS_NEXT, LOGS_OPEN, MAX_BATCH
from ..proto.logs import Marks, delivered, mark
from ..raft.errors import NoQuorum
from ..rpc import RpcClient, RpcError
from .logbroker import LogBroker, LogMessage, LogRequest, NotServing

log = logging.getLogger(__name__)

IDLE_END = 30.0
"""Without --follow: end the stream when no node has said anything for this long (a node
that lost its session never says `done`)."""
FIRST_LEADER_WAIT = 10.0
"""How long the first subscription waits for a leader (an election) before the API answers
503; once streaming, a followed stream waits for as long as its reader stays."""
PULL_WAIT = 1.0
CALL_SLACK = 3.0
"""A pull's answer is overdue this long after its wait: the leader is taken for dead."""
RETRY_MAX = 1.0
LEADER_CHECK = 0.2
"""How often a waiting pull looks whether Raft has seen another leader."""


class _Local:
    """The subscription on this manager's own broker (it leads)."""

    def __init__(self, broker: LogBroker) -> None:
        self.broker = broker
        self.sub = None
        self.leader_addr = None

    async def open(self, req: LogRequest, after: Marks) -> None:
        self.sub = await self.broker.subscribe(req, after)

    async def next(self, wait: float) -> tuple[list[LogMessage], bool]:
        return await self.broker.next(self.sub, MAX_BATCH, wait)

    async def close(self) -> None:
        if self.sub is not None:
            await self.broker.close(self.sub)


class _Remote:
    """The subscription on the leader, pulled over the cluster port."""

    def __init__(self, leader_addr: str, client: RpcClient) -> None:
        self.leader_addr = leader_addr
        self.client = client
        self.sub: str | None = None

    async def open(self, req: LogRequest, after: Marks) -> None:
        answer = await self.client.call(LOGS_OPEN, {**req.to_wire(), "after": after})
        self.sub = answer["sub"]

    async def next(self, wait: float) -> tuple[list[LogMessage], bool]:
        answer = await self.client.call(LOGS_NEXT, {"sub": self.sub, "max": MAX_BATCH,
                                                    "wait": wait}, timeout=wait + CALL_SLACK)
        return [LogMessage.from_wire(m) for m in answer.get("messages") or []], \
            bool(answer.get("ended"))

    async def close(self) -> None:
        """Drop the connection: the leader closes the subscription when it sees it go (and
        after LEASE if it never does), so a dead leader costs no wait here."""
        self.client.abort()


RETRYABLE = (NotServing, NoQuorum, RpcError, OSError)


class LogStream:
    """One `docker service logs` reader's stream (use `LogReader.open`)."""

    def __init__(self, reader: LogReader, req: LogRequest) -> None:
        self.reader = reader
        self.req = req
        self.after: Marks = {}
        """task id -> timestamps of the last stdout and stderr lines delivered to the reader."""
        self.source: _Local | _Remote | None = None
        self.reopened = 0

    async def start(self) -> None:
        """Open the subscription on the leader, waiting a little for one (an election);
        raises NoQuorum when there is none, so the API can say so before streaming."""
        deadline = time.monotonic() + FIRST_LEADER_WAIT
        while True:
            try:
                await self._connect()
                return
            except RETRYABLE as e:
                if time.monotonic() > deadline:
                    raise NoQuorum(f"no leader to collect the logs: {e}") from None
                await asyncio.sleep(0.2)

    async def _connect(self) -> None:
        self.source = None
        source = self.reader.source()
        try:
            await source.open(self.req, {t: list(m) for t, m in self.after.items()})
        except BaseException:
            await source.close()
            raise
        self.source = source

    async def _drop(self, why: Any) -> None:
        source, self.source = self.source, None
        if source is not None:
            log.info("log stream of service %s: %s; opening it on the leader again",
                     self.req.service_id[:12], why)
            await source.close()

    async def messages(self) -> AsyncIterator[LogMessage]:
        loop = asyncio.get_running_loop()
        last = loop.time()
        pause = 0.1
        while True:
            if not self.req.follow and loop.time() - last > IDLE_END:
                return
            if self.source is None:
                try:
                    await self._connect()
                    self.reopened += 1
                    pause = 0.1
                except RETRYABLE as e:
                    log.debug("log stream: no leader to open on yet (%s)", e)
                    await asyncio.sleep(pause)
                    pause = min(RETRY_MAX, pause * 2)
                    continue
            try:
                got = await self._pull()
            except RETRYABLE as e:
                await self._drop(e)
                continue
            if got is None:
                continue  # the leader moved while waiting: reopened on the next turn
            batch, ended = got
            for msg in batch:
                if delivered(self.after, msg.task_id, msg.stream, msg.ts):
                    continue  # already delivered through an earlier leader
                mark(self.after, msg.task_id, msg.stream, msg.ts)
                yield msg
            if batch:
                last = loop.time()
            if ended:
                return
            moved = self.reader.leader_moved(self.source)
            if moved:
                await self._drop(moved)

    async def _pull(self) -> tuple[list[LogMessage], bool] | None:
        """The next batch; None when Raft elects another leader meanwhile (a leader whose
        host lost power never answers: its pull would only time out, seconds later)."""
        pull = asyncio.ensure_future(self.source.next(PULL_WAIT))
        try:
            while True:
                done, _ = await asyncio.wait({pull}, timeout=LEADER_CHECK)
                if done:
                    return pull.result()
                moved = self.reader.leader_moved(self.source)
                if moved:
                    await self._drop(moved)
                    return None
        finally:
            if not pull.done():
                pull.cancel()
                await asyncio.gather(pull, return_exceptions=True)

    async def close(self) -> None:
        source, self.source = self.source, None
        if source is not None:
            await source.close()


class LogReader:
    """`docker service logs` on any manager (the API's entry point)."""

    def __init__(self, broker: LogBroker, manager: Any) -> None:
        """``manager``: `raft` (is_leader, leader_addr) and `leader_client(timeout)`."""
        self.broker = broker
        self.manager = manager

    async def open(self, req: LogRequest) -> LogStream:
        stream = LogStream(self, req)
        await stream.start()
        return stream

    def source(self) -> _Local | _Remote:
        if self.broker.running:
            return _Local(self.broker)
        if self.manager.raft.is_leader:
            raise NotServing("this manager was just elected: its dispatcher is starting")
        addr, client = self.manager.leader_client(PULL_WAIT + CALL_SLACK)
        return _Remote(addr, client)

    def leader_moved(self, source: _Local | _Remote) -> str | None:
        """Why `source` no longer is the leader's, or None. Raft hears of a new leader
        before the old one's connection times out (a power cut sends no FIN)."""
        if isinstance(source, _Local):
            return None if self.broker.running else "this manager no longer leads"
        now = self.manager.raft.leader_addr()
        if self.manager.raft.is_leader or (now is not None and now != source.leader_addr):
            return f"the leader moved from {source.leader_addr} to {now or 'this manager'}"
        return None
