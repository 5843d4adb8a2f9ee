"""The worker's local task reconcile: assignment sets in, containers and status reports out.

See reconciler.py for the decisions, runner.py for one task's life, reporter.py for how
reports reach the dispatcher, wire.py for the contract with ``manager/dispatcher``.
"""

from .executor import DockerExecutor, Executor, TaskController
from .reconciler import Reconciler
from .reporter import NotConnected, StatusReporter
from .runner import TaskRunner
from .wire import (
    Assignment,
    executor_spec,
    parse_assignments,
    parse_state,
    status_wire,
)
from .worker import SessionChannel, TaskWorker

__all__ = [
    "Assignment",
    "DockerExecutor",
    "Executor",
    "NotConnected",
    "Reconciler",
    "SessionChannel",
    "StatusReporter",
    "TaskController",
    "TaskRunner",
    "TaskWorker",
    "executor_spec",
    "parse_assignments",
    "parse_state",
    "status_wire",
]
