"""The nemesis suite: the project's own Jepsen (issue 10).

Clients on every manager of a lab cluster run read-then-compare-and-set and plain reads on a
register -- a label of a service, updated through the public Docker API with the `version`
query parameter -- while a nemesis cuts power, partitions the network, freezes hosts and fills
a manager's disk. Every operation is recorded with monotonic times (`history`), and the
history of each register is checked for linearizability (`checker`), saved as JSON lines and
drawn as a timeline (`plot`).

Modules: `history` (events, JSON lines), `checker` (Wing & Gong / Lowe search for a
compare-and-set register, anomaly reports), `plot` (timeline PNG), `client` (the register
over the Docker API), `faults` (what the nemesis does to a lab), `runner` (rounds of clients +
schedule, checking, the report). `python -m swarmkit_py.testing.nemesis` is what
scripts/nemesis.sh runs.
"""
