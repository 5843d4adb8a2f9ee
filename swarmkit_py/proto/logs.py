"""The log broker's contract (swarmkit's LogBroker): `docker service logs` through sessions.

The manager that answers the API is the dispatcher's leader (the only one with sessions);
it asks each node running (or having run) a task of the service for that task's container
logs, and the nodes stream them back on their session connection.

- ``logs.subscribe`` (leader -> worker, notification): ``{"sub": str, "tasks": [task_id],
  "follow": bool, "tail": int | None (None: all), "since": float | None (unix seconds)}``.
  Sent again with more task ids when a followed service starts new tasks on the node.
- ``logs.cancel`` (leader -> worker, notification): ``{"sub": str}``: the reader went away.
- ``logs.publish`` (worker -> leader, request): ``{"session_id": str, "sub": str,
  "messages": [{"task_id", "ts": int (ns), "stream": 1 | 2, "data": bytes}], "done":
  [task_id]}`` -> ``{"accepted": int, "open": bool}``. The leader takes what fits its bounded
  queue for that reader and says how many; the worker keeps the rest and retries after a
  pause (credit-based flow control: no hop buffers without bound, and neither side ever
  blocks its session on a slow reader). ``open`` False: stop, nobody reads this any more.
  ``done`` lists tasks whose logs ended (not following, or the container is gone).
"""

from __future__ import annotations

LOGS_SUBSCRIBE = "logs.subscribe"
LOGS_CANCEL = "logs.cancel"
LOGS_PUBLISH = "logs.publish"
MAX_BATCH = 128
"""Messages per publish call."""
