"""Swarm's defaults for the policies a service may leave unset (swarmkit api/defaults).

The store keeps specs exactly as clients sent them (no invented defaults, so `inspect` shows
what was asked for); the loops fill the gaps here, at the point of use, with the values
dockerd would have used, so behaviour matches Swarm whether or not a client sent them.
Durations in specs are integers of nanoseconds (Go's time.Duration); the loops think in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...store import (
    FailureAction,
    RestartCondition,
    RestartPolicy,
    Task,
    UpdateConfig,
    UpdateOrder,
)

NS = 1_000_000_000
RESTART_DELAY = 5.0
"""Swarm restarts a failed task after 5 s unless the policy says otherwise."""
MONITOR = 5.0
"""How long a freshly updated task is watched for failure, unless the update config says."""
TASK_HISTORY_LIMIT = 5
"""Tasks kept per slot (per node for global services) when the cluster spec is silent."""
ORPHAN_AFTER = 24 * 3600.0
"""A node down this long has its tasks written off (status orphaned), as in Swarm."""


def seconds(ns: int | None, default: float) -> float:
    return default if ns is None else max(0.0, ns / NS)


@dataclass(frozen=True)
class Restart:
    condition: RestartCondition
    delay: float
    max_attempts: int
    window: float


def restart_policy(task: Task) -> Restart:
    """The policy a task was created with (its own spec, not the service's current one: a
    task keeps the rules it was started under, as in swarmkit)."""
    p = task.spec.restart_policy or RestartPolicy()
    return Restart(
        condition=p.condition or RestartCondition.ANY,
        delay=seconds(p.delay, RESTART_DELAY),
        max_attempts=p.max_attempts or 0,
        window=seconds(p.window, 0.0),
    )


@dataclass(frozen=True)
class RolloutConfig:
    """An UpdateConfig or RollbackConfig with every field resolved."""

    parallelism: int
    delay: float
    failure_action: FailureAction
    monitor: float
    max_failure_ratio: float
    order: UpdateOrder


def rollout_config(cfg: UpdateConfig | None) -> RolloutConfig:
    """Update and rollback share Swarm's defaults: one task at a time, no delay, pause on
    failure, 5 s monitor, no failures tolerated, stop-first."""
    cfg = cfg or UpdateConfig()
    return RolloutConfig(
        parallelism=1 if cfg.parallelism is None else max(0, cfg.parallelism),
        delay=seconds(cfg.delay, 0.0),
        failure_action=cfg.failure_action or FailureAction.PAUSE,
        monitor=seconds(cfg.monitor, MONITOR),
        max_failure_ratio=cfg.max_failure_ratio or 0.0,
        order=cfg.order or UpdateOrder.STOP_FIRST,
    )


def history_limit(cluster) -> int:
    """The cluster's TaskHistoryRetentionLimit; negative means keep everything."""
    orch = cluster.spec.orchestration if cluster is not None else None
    if orch is None or orch.task_history_retention_limit is None:
        return TASK_HISTORY_LIMIT
    return orch.task_history_retention_limit
