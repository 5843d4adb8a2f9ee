"""Keeping a node's certificate alive: scheduled renewal, and renewal on demand.

Scheduled: at a random point between 50% and 80% of the certificate's lifetime
(`ca.renewal`), drawn once per certificate so that nodes that joined together spread their
renewals out, and so that repeated checks do not skew the point early.

On demand: `request_renewal()` wakes the loop at once. Three things call it:
- the manager's `ca.renew_now` push (`install_push_handler` on the registry of the connection
  the node keeps to a manager, i.e. its dispatcher session), sent when the node is promoted
  or demoted (see `manager.caserver.CAServer.push_renew`);
- `notice_role(role)`, for a session that learns the node's role from the dispatcher and
  finds it differs from the certificate's (covers a missed push);
- the agent itself (operator command, start-up with a certificate already due).

Renewal re-signs the node's current key (no CSR). Keeping the key means the only file that
changes is the certificate, replaced atomically, so a crash mid-renewal can never leave a key
that does not match its certificate (which would lock the node out until it re-joined).

Failures are retried with capped exponential backoff across the known managers. Two answers
stop the loop instead: the node was removed from the swarm (`not_found`), or its certificate
is refused (`permission_denied` / `unauthenticated`); retrying cannot fix those, the operator
has to re-join the node, and `NodeEvictedError` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..ca.errors import CAError, InvalidCertificateError
from ..ca.files import CERT_MODE, NODE_CERT_FILE, ROOT_CA_CERT_FILE, write_atomic
from ..ca.identity import NODE_ROLES, CertRole, expect_manager, identity_from_cert, peer_cert
from ..ca.keyfile import NodeCredentials
from ..ca.renewal import renewal_fraction, renewal_time
from ..ca.sslfacts import KEY_MISMATCH, decode, facts, utcnow, verify_issued
from ..ca.tls import client_context
from ..proto import CA_RENEW, CA_RENEW_NOW, NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED
from ..rpc import HandlerRegistry, PeerInfo, RpcClient, RpcError, RpcUnavailable
from ..store import NodeRole
from .join import MANAGER_SERVER_NAME, parse_address

log = logging.getLogger(__name__)

FATAL_CODES = frozenset({NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED})
"""Answers to ``ca.renew`` that retrying cannot fix: the node has to re-join."""

MAX_SLEEP = 3600.0
"""Re-check the wall clock at least hourly: a suspended VM or a clock step must not make the
loop sleep past the renewal point on a stale monotonic deadline."""


class RenewError(Exception):
    """No manager renewed the certificate this time; the loop retries."""


class NodeEvictedError(RenewError):
    """The swarm refuses this node's certificate for good (removed node, foreign cert)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class RenewResult:
    node_id: str
    role: NodeRole
    cert_pem: bytes = field(repr=False)
    not_after: datetime


class CertRenewer:
    """Renews the certificate in `state_dir` (as written by `worker.join.join`).

    `managers` is a list of manager addresses or a callable returning the current list (the
    agent updates it from its session). `clock` returns aware UTC datetimes; `rng` draws the
    renewal point. `on_renewed(result)` (sync or async) lets the agent rebuild its TLS
    contexts with the new certificate. `credentials`: the agent's reader of the node key, which
    holds the password while auto-lock seals a manager's key (default: one for `state_dir`).
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        managers: Sequence[str] | Callable[[], Sequence[str]],
        *,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = utcnow,
        on_renewed: Callable[[RenewResult], Awaitable[None] | None] | None = None,
        call_timeout: float = 30.0,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        credentials: NodeCredentials | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self._creds = credentials or NodeCredentials(self.state_dir)
        self._managers = managers if callable(managers) else (lambda: list(managers))
        self._rng = rng
        self._clock = clock
        self._on_renewed = on_renewed
        self._call_timeout = call_timeout
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._wake = asyncio.Event()
        self._fraction: tuple[int, float] | None = None  # (cert serial, drawn fraction)
        self.renewals = 0

    # -- triggers -------------------------------------------------------------------------

    def request_renewal(self, reason: str = "requested") -> None:
        """Renew as soon as the loop can; safe to call from any handler on the loop."""
        log.info("certificate renewal requested: %s", reason)
        self._wake.set()

    def notice_role(self, role: NodeRole | CertRole | str) -> bool:
        """Request a renewal if the cluster's `role` for this node differs from the
        certificate's; returns whether it did."""
        want = _as_node_role(role)
        cert_pem, _ = self._creds.load()
        have = _as_node_role(identity_from_cert(decode(cert_pem)).role)
        if want != have:
            self.request_renewal(f"role is {want}, certificate says {have}")
            return True
        return False

    def install_push_handler(self, handlers: HandlerRegistry) -> None:
        """Serve the manager's `ca.renew_now` push on a connection's handler registry.

        Only a manager may trigger it: a push is harmless (renewal goes to the CA over mutual
        TLS anyway), but a worker must not be able to make its peers hammer the CA.
        """

        def on_push(peer: PeerInfo, params: Any) -> None:
            if peer.cert is None:
                return
            try:
                if identity_from_cert(peer_cert(peer)).role is not CertRole.MANAGER:
                    return
            except InvalidCertificateError:
                return
            self.request_renewal("manager asked (role change)")

        handlers.add_notification_handler(CA_RENEW_NOW, on_push)

    # -- schedule -------------------------------------------------------------------------

    def next_renewal(self) -> datetime:
        """When the current certificate is due, by its once-drawn random fraction."""
        cert_pem, _ = self._creds.load()
        cert = facts(cert_pem)
        if self._fraction is None or self._fraction[0] != cert.serial_number:
            self._fraction = (cert.serial_number, renewal_fraction(self._rng))
        return renewal_time(cert, self._fraction[1])

    async def run(self) -> None:
        """Renew forever (until cancelled, or `NodeEvictedError`)."""
        backoff = self._retry_initial
        while True:
            delay = (self.next_renewal() - self._clock()).total_seconds()
            if delay > 0 and not self._wake.is_set():
                await self._wait(min(delay, MAX_SLEEP))
                continue  # recompute: woken early, or the wall clock moved
            self._wake.clear()
            try:
                await self.renew_once()
            except NodeEvictedError:
                raise
            except (RenewError, CAError, OSError) as exc:
                log.warning("certificate renewal failed, retrying in %.0fs: %s", backoff, exc)
                await self._wait(backoff * (0.5 + (self._rng or random).random()))
                backoff = min(backoff * 2, self._retry_max)
                self._wake.set()  # still due (or still requested): try again after the wait
                continue
            backoff = self._retry_initial

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    # -- one renewal ----------------------------------------------------------------------

    async def renew_once(self) -> RenewResult:
        """Ask each manager in turn until one renews; write the new certificate atomically."""
        cert_pem, key_pem = self._creds.load()
        ca_pem = (self.state_dir / ROOT_CA_CERT_FILE).read_bytes()
        me = identity_from_cert(decode(cert_pem))
        ctx = client_context(ca_pem, cert_pem, key_pem)
        failures: list[str] = []
        for addr in list(self._managers()):
            try:
                host, port = parse_address(addr)
            except Exception as exc:
                failures.append(f"{addr}: {exc}")
                continue
            client = RpcClient(
                host,
                port,
                ssl=ctx,
                server_hostname=MANAGER_SERVER_NAME,
                timeout=self._call_timeout,
                connect_timeout=self._call_timeout,
                verify_peer=expect_manager(me.cluster_id),
            )
            try:
                answer = await client.call(CA_RENEW, {})
            except RpcUnavailable as exc:
                failures.append(f"{host}:{port}: {exc.message}")
                continue
            except RpcError as exc:
                if exc.code in FATAL_CODES:
                    raise NodeEvictedError(
                        exc.code,
                        f"manager {host}:{port} refuses to renew node {me.node_id}'s certificate: "
                        f"{exc.message}",
                    ) from exc
                failures.append(f"{host}:{port}: {exc.code}: {exc.message}")
                continue
            finally:
                await client.close()
            try:
                result = await self._accept(answer, me.node_id, key_pem, ca_pem)
            except CAError as exc:
                failures.append(f"{host}:{port}: {exc}")
                continue
            self.renewals += 1
            if self._on_renewed is not None:
                outcome = self._on_renewed(result)
                if inspect.isawaitable(outcome):
                    await outcome
            return result
        if not failures:
            raise RenewError("no manager address known to renew the certificate with")
        raise RenewError("no manager renewed the certificate: " + "; ".join(failures))

    async def _accept(
        self, answer: Any, node_id: str, key_pem: bytes, ca_pem: bytes
    ) -> RenewResult:
        """Check the new certificate as strictly as the join does, then replace the file."""
        if not isinstance(answer, dict) or not isinstance(answer.get("cert"), str):
            raise InvalidCertificateError("malformed renewal answer")
        new_pem = answer["cert"].encode()
        # by `ssl`, not `cryptography`: a worker never loads the latter (ca/sslfacts.py)
        try:
            decoded = verify_issued(new_pem, key_pem, ca_pem)
        except InvalidCertificateError as exc:
            if str(exc) == KEY_MISMATCH:
                raise InvalidCertificateError("renewed certificate is not for this node's key") from None
            raise
        cert = facts(decoded)
        ident = identity_from_cert(decoded)
        if ident.node_id != node_id or ident.role not in NODE_ROLES:
            raise InvalidCertificateError(
                f"renewed certificate is for {ident.node_id} ({ident.role}), not node {node_id}"
            )
        await asyncio.to_thread(write_atomic, self.state_dir / NODE_CERT_FILE, new_pem, CERT_MODE)
        log.info("certificate renewed: node %s, role %s, valid until %s",
                 node_id, ident.role, cert.not_valid_after_utc.isoformat())
        return RenewResult(
            node_id=node_id,
            role=_as_node_role(ident.role),
            cert_pem=new_pem,
            not_after=cert.not_valid_after_utc,
        )


def _as_node_role(role: NodeRole | CertRole | str) -> NodeRole:
    if isinstance(role, NodeRole):
        return role
    if role in (CertRole.MANAGER, CertRole.MANAGER.value):
        return NodeRole.MANAGER
    if role in (CertRole.WORKER, CertRole.WORKER.value):
        return NodeRole.WORKER
    return NodeRole(role)
