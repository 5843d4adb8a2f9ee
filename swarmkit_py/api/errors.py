"""Errors on the wire: always `{"message": ...}` JSON with Docker's status codes.

The docker CLI prints `Error response from daemon: <message>`; the SDK raises `NotFound` for
404 and `APIError` otherwise, reading `json()["message"]` (a body without it crashes the SDK
with KeyError). So every error path, including aiohttp's own 404/405/413, ends here.

| cause                                           | status | message                                  |
|-------------------------------------------------|--------|------------------------------------------|
| NotFound (lookup or store)                      | 404    | `node X not found`                       |
| Ambiguous ref                                   | 400    | `node X is ambiguous (2 matches found)`  |
| InvalidArgument (decoding, filters: plain)      | 400    | e.g. `Invalid filter 'x'`                |
| InvalidArgument / FailedPrecondition (rules)    | 400    | `rpc error: code = FailedPrecondition desc = ...` |
| AlreadyExists / NameConflict                    | 409    | `rpc error: code = AlreadyExists desc = ...` |
| SequenceError (code Unknown)                    | 500    | `rpc error: code = Unknown desc = update out of sequence` |
| Internal / StaleView                            | 500    | `rpc error: code = Internal desc = ...`  |
| NotInSwarm (no cluster object)                  | 503    | `This node is not a swarm manager. ...`  |
| raft NoQuorum / NotLeader / ProposalDropped, timeout | 503 | `The swarm does not have a leader. ...` |
| raft LeadershipLost (cut off mid-write)         | 503    | says the write may or may not apply, retry elsewhere |
| raft CutOff (a cut-off ex-leader)               | 503    | says so: send the request to another manager |
| raft DiskFull (the member's disk is full)       | 503    | says so, where, and what to do           |
| raft Stopped                                    | 503    | dockerd's "Worker nodes can't be used ..." |
| authorize hook refusal (PermissionError, 403)   | 403    | the hook's message                       |
| bad JSON, bad query values                      | 400    | says what was wrong                      |
| body over the limit                             | 413    | `request body too large (limit N bytes)` |

No leader: dockerd has two answers, 500 "rpc error: code = Unknown desc = The swarm does not
have a leader..." when the gRPC call fails, and 503 with the same sentence (errNoLeader, an
`Unavailable` error) when it notices first. We answer 503 with dockerd's sentence: it is the
status the issue asks for, it tells clients and proxies "retry later", and the CLI prints the
same line either way.
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from ..manager.controlapi import NO_LEADER_MESSAGE
from ..raft.errors import (
    CutOff,
    DiskFull,
    LeadershipLost,
    NoQuorum,
    NotLeader,
    ProposalDropped,
    Stopped,
)
from ..store import Ambiguous, NotFound, StoreError

log = logging.getLogger(__name__)

CODE_STATUS = {
    "InvalidArgument": 400,
    "FailedPrecondition": 400,
    "OutOfRange": 400,
    "NotFound": 404,
    "AlreadyExists": 409,
    "PermissionDenied": 403,
    "Unavailable": 503,
    "Unknown": 500,
    "Internal": 500,
}

WORKER_MESSAGE = (
    "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster "
    "state. Please run this command on a manager node or promote the current node to a manager."
)


class APIError(Exception):
    """An HTTP error decided by the API layer itself (bad query value, bad body...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> APIError:
    return APIError(400, message)


def json_error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"message": message}).encode(),
        content_type="application/json",
    )


def store_error_message(err: StoreError) -> str:
    if isinstance(err, (NotFound, Ambiguous)) or getattr(err, "plain", False):
        return err.message
    return f"rpc error: code = {err.code} desc = {err.message}"


def status_and_message(exc: BaseException) -> tuple[int, str]:
    """The (status, message) for any exception a handler let out."""
    if isinstance(exc, APIError):
        return exc.status, exc.message
    if isinstance(exc, StoreError):
        return CODE_STATUS.get(exc.code, 500), store_error_message(exc)
    if isinstance(exc, (LeadershipLost, CutOff)):
        # what happened and where to go (another manager), not dockerd's "no leader"
        return 503, str(exc)
    if isinstance(exc, (NoQuorum, NotLeader, ProposalDropped, asyncio.TimeoutError)):
        log.warning("answering 'no leader' for %s: %r", type(exc).__name__, exc)
        return 503, NO_LEADER_MESSAGE
    if isinstance(exc, DiskFull):
        return 503, str(exc)
    if isinstance(exc, Stopped):
        return 503, WORKER_MESSAGE
    if isinstance(exc, PermissionError):
        return 403, str(exc) or "permission denied"
    if isinstance(exc, web.HTTPException):
        return exc.status, http_exception_message(exc)
    log.exception("unhandled error in the Docker API handler", exc_info=exc)
    return 500, f"internal error: {type(exc).__name__}: {exc}"


def http_exception_message(exc: web.HTTPException) -> str:
    if exc.status == 404:
        return "page not found"
    if exc.status == 413:
        return f"request body too large: {exc.text or exc.reason}"
    text = (exc.text or "").strip()
    if text and not text.startswith(f"{exc.status}:"):
        return text
    return exc.reason.lower() if exc.reason else f"HTTP {exc.status}"
