"""The register as a user sees it: a label of a service, read with `docker service inspect` and
compare-and-set with `docker service update` and its `version` (the SDK's low-level calls,
over TLS with the operator's client bundle, straight to one manager).

Each client thread is bound to one manager and loops: read the service (value = the label,
plus the service's version); then either stop there (a plain read) or update the label to a
fresh value with the version it read (a compare-and-set from the value it read). Values are
unique ("v17"), so a version names a value and back, which is what lets the checker treat a
version-checked update as a cas on the value.

How an answer becomes ok / fail / info (fail only when nothing can have happened):
- a read that answered `X-Swarmkit-Read: linearizable`: ok; one that answered `stale` (no
  quorum confirmed it; the manager says so and the checker holds it to nothing) or failed in
  any way: fail (a read changes nothing);
- an update answered 200: ok; "update out of sequence": fail (the store's own verdict, at
  apply time, identical on every member); any other 4xx: fail (refused before proposing);
- a connection that could not be opened: fail (nothing was sent);
- anything else (5xx "no leader", a timeout, a connection dropped mid-request): info, and the
  client continues as a new process, since the request may still be in flight.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable
from typing import Any

from .history import FAIL, INFO, OK, History

LABEL = "nemesis.value"
INITIAL = "0"
IMAGE = "swarmkit-py/busybox:latest"

_values = itertools.count(1)  # process-wide: values never repeat, across clients and rounds


def fresh_value() -> str:
    return f"v{next(_values)}"


def classify(exc: BaseException) -> tuple[str, str]:
    """(fail | info, a short reason) for an exception from a docker SDK call."""
    import docker.errors
    import requests.exceptions as rex

    if isinstance(exc, StaleRead):
        return FAIL, "stale"
    if isinstance(exc, docker.errors.APIError):
        msg = str(exc.explanation or exc)
        code = exc.status_code or 0
        if "out of sequence" in msg:
            return FAIL, "update out of sequence"
        if 400 <= code < 500:
            return FAIL, f"{code}: {msg[:160]}"
        return INFO, f"{code}: {msg[:160]}"
    if isinstance(exc, (rex.ConnectTimeout,)):
        return FAIL, "connect timeout"
    if isinstance(exc, rex.ConnectionError):
        text = str(exc)
        if any(s in text for s in ("NewConnectionError", "Connection refused", "No route to host",
                                   "Network is unreachable")) and "RemoteDisconnected" not in text:
            return FAIL, "could not connect"
        return INFO, f"connection lost: {text[-160:]}"
    if isinstance(exc, rex.Timeout):
        return INFO, "timed out"
    return INFO, f"{type(exc).__name__}: {str(exc)[:160]}"


READ_HEADER = "X-Swarmkit-Read"


class StaleRead(Exception):
    """The manager answered from its local copy: no quorum confirmed the read."""

    def __init__(self, value: Any):
        super().__init__(f"stale: {READ_HEADER} said no quorum confirmed it (value {value!r})")
        self.value = value


def read_register(api, service: str, linearizable: bool = False) -> tuple[Any, int, dict]:
    """(value, version, spec) of the register's service (`docker service inspect`);
    `linearizable`: raise StaleRead unless the manager says a quorum confirmed the read."""
    resp = api._get(api._url("/services/{0}", service))  # the SDK's inspect_service, with headers
    s = api._result(resp, json=True)
    value = (s["Spec"].get("Labels") or {}).get(LABEL)
    if linearizable and resp.headers.get(READ_HEADER) != "linearizable":
        raise StaleRead(value)
    return value, int(s["Version"]["Index"]), s["Spec"]


def write_register(api, service: str, version: int, spec: dict, value: str) -> None:
    labels = dict(spec.get("Labels") or {})
    labels[LABEL] = value
    api.update_service(service, version, task_template=spec.get("TaskTemplate"), name=spec.get("Name"),
                       labels=labels, mode=spec.get("Mode"), endpoint_spec=spec.get("EndpointSpec"),
                       update_config=spec.get("UpdateConfig"), rollback_config=spec.get("RollbackConfig"))


def create_register(api, name: str) -> str:
    """A service holding the register at INITIAL: no replicas, so nothing but the client ever
    writes it (a version names a value)."""
    r = api.create_service({"ContainerSpec": {"Image": IMAGE, "Command": ["sleep", "3600"]}}, name=name,
                           labels={LABEL: INITIAL}, mode={"Replicated": {"Replicas": 0}})
    return r["ID"]


class Client(threading.Thread):
    """One client process on one manager, until `stop` is set."""

    def __init__(self, history: History, process: int, stride: int, node: str,
                 connect: Callable[[], Any], service: str, stop: threading.Event, seed: int,
                 p_cas: float = 0.5, pause: float = 0.02):
        super().__init__(name=f"nemesis-client-{node}-{process}", daemon=True)
        self.history, self.process, self.stride, self.node = history, process, stride, node
        self.connect, self.service, self.stop_event = connect, service, stop
        self.rng = random.Random(seed)
        self.p_cas, self.pause = p_cas, pause
        self.ops = 0

    def _new_process(self) -> None:
        self.process += self.stride

    def _read(self, api) -> tuple[Any, int, dict] | None:
        h, p = self.history, self.process
        h.invoke(p, "read", node=self.node)
        try:
            value, version, spec = read_register(api, self.service, linearizable=True)
        except Exception as e:  # noqa: BLE001 - every failure is recorded, none is fatal
            status, why = classify(e)
            h.complete(p, FAIL if status == FAIL else INFO, "read", node=self.node, error=why)
            if status == INFO:
                self._new_process()
            return None
        h.complete(p, OK, "read", value, node=self.node, version=version)
        return value, version, spec

    def _cas(self, api, expected: Any, version: int, spec: dict) -> None:
        h, p = self.history, self.process
        new = fresh_value()
        h.invoke(p, "cas", [expected, new], node=self.node)
        try:
            write_register(api, self.service, version, spec, new)
        except Exception as e:  # noqa: BLE001
            status, why = classify(e)
            h.complete(p, status, "cas", [expected, new], node=self.node, error=why, version=version)
            if status == INFO:
                self._new_process()
            return
        h.complete(p, OK, "cas", [expected, new], node=self.node, version=version)

    def run(self) -> None:
        api = self.connect()
        try:
            while not self.stop_event.is_set():
                got = self._read(api)
                self.ops += 1
                if got is not None and self.rng.random() < self.p_cas and not self.stop_event.is_set():
                    self._cas(api, got[0], got[1], got[2])
                    self.ops += 1
                if got is None:
                    self.stop_event.wait(0.1 + self.rng.random() * 0.2)  # a failing manager: back off
                else:
                    self.stop_event.wait(self.rng.random() * self.pause)
        finally:
            close = getattr(api, "close", None)
            if close:
                close()
