"""Network allocation: IPAM (pure), which networks a task is on, and the leader loop."""

from .loop import Allocator

__all__ = ["Allocator"]
