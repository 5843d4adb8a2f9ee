"""Errors an executor raises instead of recording them as the task's outcome.

A task's own failures (missing image, non-zero exit) are states in its status, not exceptions.
What is raised is what the task cannot be blamed for: the caller keeps the task in its current
state and retries the same step when `retryable` says so.
"""


class ExecutorError(Exception):
    retryable = False


class EngineUnavailable(ExecutorError):
    """The Docker engine did not answer (socket missing, daemon down or hung)."""

    retryable = True


class InvalidTransition(ExecutorError):
    """A step was asked for before the step it depends on (e.g. start before prepare)."""
