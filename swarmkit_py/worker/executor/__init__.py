"""Runs the tasks assigned to this node as containers on the local Docker engine.

A task arrives as the dispatcher sends it (``proto.AssignedTask``: the store's TaskSpec in
Docker's spelling, durations in nanoseconds) and its state and status are the store's
``TaskState`` / ``TaskStatus``: the worker has no task model of its own to keep in step.
"""

from .controller import Controller
from .docker_adapter import connect, list_task_containers
from .errors import EngineUnavailable, ExecutorError, InvalidTransition
from .executor import DockerExecutor, Executor, TaskController

__all__ = [
    "Controller",
    "DockerExecutor",
    "EngineUnavailable",
    "Executor",
    "ExecutorError",
    "InvalidTransition",
    "TaskController",
    "connect",
    "list_task_containers",
]
