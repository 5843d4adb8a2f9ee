"""Runs the tasks assigned to this node as containers on the local Docker engine."""

from .controller import Controller
from .docker_adapter import connect, list_task_containers
from .errors import EngineUnavailable, ExecutorError, InvalidTransition
from .spec import HealthCheck, PortSpec, TaskSpec
from .states import TaskState, TaskStatus

__all__ = [
    "Controller",
    "EngineUnavailable",
    "ExecutorError",
    "HealthCheck",
    "InvalidTransition",
    "PortSpec",
    "TaskSpec",
    "TaskState",
    "TaskStatus",
    "connect",
    "list_task_containers",
]
