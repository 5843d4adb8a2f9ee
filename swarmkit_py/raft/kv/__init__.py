"""A replicated key-value process on top of RaftNode.

It exists to exercise the Raft engine alone, as real OS processes over real sockets: the
process-level crash tests, the benchmarks against PySyncObj and the local demo all run it.
The control plane replicates its store the same way (a StateMachine behind a RaftNode).
"""
