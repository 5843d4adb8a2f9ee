"""The pure Raft core: no clock, socket, disk or global randomness (see raft.py)."""

from .config import CoreConfig
from .order import URGENT, ReadyOrder, Step
from .progress import Progress, ProgressState
from .raft import TRANSFER_CONTEXT, RaftCore

__all__ = ["CoreConfig", "Progress", "ProgressState", "RaftCore", "ReadyOrder", "Step", "TRANSFER_CONTEXT", "URGENT"]
