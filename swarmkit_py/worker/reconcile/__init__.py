"""The worker's local task reconcile: assignment sets in, containers and status reports out.

See reconciler.py for the decisions, runner.py for one task's life, reporter.py for how
reports reach the dispatcher, wire.py for how a push is read (the contract itself is
``proto/dispatcher.py``). The executor it drives is ``worker/executor``.
"""

from .reconciler import Reconciler
from .reporter import NotConnected, StatusReporter
from .runner import TaskRunner
from .wire import Assignment, parse_assignments
from .worker import SessionChannel, TaskWorker

__all__ = [
    "Assignment",
    "NotConnected",
    "Reconciler",
    "SessionChannel",
    "StatusReporter",
    "TaskRunner",
    "TaskWorker",
    "parse_assignments",
]
