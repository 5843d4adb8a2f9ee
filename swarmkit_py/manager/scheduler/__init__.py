"""The scheduler: gives each pending task a node (swarmkit's manager/scheduler).

Layout, smallest concern first:
- constraints.py  placement constraint grammar and matching; `validate_constraints` for the API
- nodeinfo.py     per-node free resources and task counts, kept up to date incrementally
- filters.py      which nodes can take a task (ready/active, resources, constraints,
                  platform, max replicas per node)
- explain.py      Swarm's "no suitable node (...)" texts
- scoring.py      spread preferences, then fewest tasks of the service, then fewest tasks
- core.py         the pure scheduler: pending tasks + nodes -> decisions, by task group
- loop.py         the leader loop: watch the store, schedule in batches, write back
"""

from .constraints import (
    Constraint,
    ConstraintError,
    node_matches,
    parse_constraint,
    parse_constraints,
    validate_constraints,
)
from .core import (
    ASSIGNED_MESSAGE,
    PREASSIGNED_MESSAGE,
    Decision,
    Scheduler,
    is_schedulable,
    schedule_tasks,
)
from .explain import explain, no_suitable_node
from .filters import TaskFilter
from .loop import SchedulerLoop
from .nodeinfo import NodeInfo, NodeSet
from .scoring import SpreadTree, spread_descriptors

__all__ = [
    "ASSIGNED_MESSAGE",
    "PREASSIGNED_MESSAGE",
    "Constraint",
    "ConstraintError",
    "Decision",
    "NodeInfo",
    "NodeSet",
    "Scheduler",
    "SchedulerLoop",
    "SpreadTree",
    "TaskFilter",
    "explain",
    "is_schedulable",
    "no_suitable_node",
    "node_matches",
    "parse_constraint",
    "parse_constraints",
    "schedule_tasks",
    "spread_descriptors",
    "validate_constraints",
]
