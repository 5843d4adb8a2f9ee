"""The per-host agent process: always a worker, and a manager when its role says so."""
