"""The log broker's contract (swarmkit's LogBroker): `docker service logs` through sessions.

The leader's broker (the only manager with the nodes' sessions) asks each node running (or
having run) a task of the service for that task's container logs, and the nodes stream them
back on their session connection. Any other manager that answers `docker service logs` opens
the subscription on the leader over the managers' mTLS connection and pulls from it (as
swarmkit's followers proxy the Logs stream to the leader); when the leader changes, it opens
the subscription again on the new one, from the last line it delivered of each task.

Worker <-> leader:

- ``logs.subscribe`` (leader -> worker, notification): ``{"sub": str, "tasks": [task_id],
  "follow": bool, "tail": int | None (None: all), "since": float | None (unix seconds),
  "stdout": bool, "stderr": bool, "after": {task_id: [int, int] (ns)}}``. Sent again with more
  task ids when a followed service starts new tasks on the node, and again for the same tasks
  when the node opens a new session (the worker ignores tasks it already serves). ``after``:
  per task, the timestamps of the last stdout and the last stderr line already delivered (0:
  none yet); the node sends only later lines of each. One mark per stream, because the
  engine's log stream is ordered per stream only: its stdout and stderr copiers stamp and
  write lines concurrently, so a stderr line can come before an earlier-stamped stdout line
  (measured: 13 inversions in 4,000 lines), and a single mark skipped that stdout line.
- ``logs.cancel`` (leader -> worker, notification): ``{"sub": str}``: the reader went away.
- ``logs.publish`` (worker -> leader, request): ``{"session_id": str, "sub": str,
  "messages": [{"task_id", "ts": int (ns), "stream": 1 | 2, "data": bytes}], "done":
  [task_id]}`` -> ``{"accepted": int, "open": bool}``. The leader takes what fits its bounded
  queue for that reader and says how many; the worker keeps the rest and retries after a
  pause (credit-based flow control: no hop buffers without bound, and neither side ever
  blocks its session on a slow reader). ``open`` False: stop, nobody reads this any more.
  ``done`` lists tasks whose logs ended (not following, or the container is gone).
  ``stream`` is the engine's: 1 stdout, 2 stderr.

Manager -> leader (callers must hold a current manager's certificate):

- ``logs.open`` (request): ``{"service_id": str, "task_id": str | None, "follow", "tail",
  "since", "stdout", "stderr", "after"}`` as above -> ``{"sub": str}``.
- ``logs.next`` (request): ``{"sub": str, "max": int, "wait": float}`` -> ``{"messages":
  [[task_id, node_id, service_id, ts, stream, data]], "ended": bool}``: at most ``max``
  messages, waiting up to ``wait`` seconds for the first. The caller asks for the next batch
  only once it has written the last one to its client: the pull is the flow control, so the
  leader's queue (bounded) is the only buffer and a slow reader slows only its own stream.
  A subscription not pulled for ``LEASE`` seconds is closed (its manager died).
  ``not_leader``: this manager no longer leads; open the subscription on the new leader.
- ``logs.close`` (request): ``{"sub": str}`` -> ``{}``.
"""

from __future__ import annotations

LOGS_SUBSCRIBE = "logs.subscribe"
LOGS_CANCEL = "logs.cancel"
LOGS_PUBLISH = "logs.publish"
LOGS_OPEN = "logs.open"
LOGS_NEXT = "logs.next"
LOGS_CLOSE = "logs.close"
MAX_BATCH = 128
"""Messages per publish call, and per pull."""
LEASE = 30.0
"""Seconds a subscription opened by another manager lives without a pull."""

Marks = dict[str, list[int]]
"""``after``: task id -> [last stdout line's ns, last stderr line's ns] already delivered."""


def mark(after: Marks, task_id: str, stream: int, ts: int) -> None:
    """Record that ``task_id``'s line on ``stream`` (1 stdout, 2 stderr) stamped ``ts`` was
    delivered."""
    if ts:
        marks = after.setdefault(task_id, [0, 0])
        if ts > marks[stream - 1]:
            marks[stream - 1] = ts


def delivered(after: Marks, task_id: str, stream: int, ts: int) -> bool:
    """Whether a line stamped ``ts`` on ``stream`` comes before the last one delivered of
    that stream (so through an earlier subscription)."""
    marks = after.get(task_id)
    return bool(ts and marks and ts < marks[stream - 1])


def valid_marks(after: object) -> bool:
    return isinstance(after, dict) and all(
        isinstance(k, str) and isinstance(v, list) and len(v) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)
        for k, v in after.items())
