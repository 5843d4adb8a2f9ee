"""swarmkit-py: Docker Swarm mode's orchestration in Python."""

__version__ = "0.1.0"
