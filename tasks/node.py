"""One node at a time, through the cluster's guarded API: promote, demote, drain, activate."""

from __future__ import annotations

from invoke import task

from ._op import INV_HELP, op

HELP = {"host": "inventory host name", "inventory": INV_HELP}


@task(positional=["host"], help=HELP)
def promote(c, host, inventory=None):
    """Make HOST a manager; waits until it is a Reachable Raft voter."""
    from swarmkit_py.deploy.nodeops import promote as run

    print(op(lambda cl, r: run(cl, host), "promote", inventory))


@task(positional=["host"], help=HELP)
def demote(c, host, inventory=None):
    """Make HOST a worker; refused when it would cost the managers their quorum."""
    from swarmkit_py.deploy.nodeops import demote as run

    print(op(lambda cl, r: run(cl, host), "demote", inventory))


@task(positional=["host"], help=HELP)
def drain(c, host, inventory=None):
    """Stop scheduling tasks on HOST and move its tasks elsewhere."""
    from swarmkit_py.deploy.nodeops import availability

    print(op(lambda cl, r: availability(cl, host, "drain"), "drain", inventory))


@task(positional=["host"], help=HELP)
def activate(c, host, inventory=None):
    """Make a drained HOST eligible for tasks again."""
    from swarmkit_py.deploy.nodeops import availability

    print(op(lambda cl, r: availability(cl, host, "active"), "activate", inventory))


@task(help={"to": "the manager to lead (inventory host name); default: the most caught-up other manager",
            "inventory": INV_HELP})
def leader(c, to=None, inventory=None):
    """Move Raft leadership to manager TO (Raft leadership transfer; writes pause for about one
    round trip, not an election timeout). Do it before taking the leader's host down."""
    from swarmkit_py.deploy.nodeops import transfer_leader

    def run(cl, r):
        before = next((n["Description"]["Hostname"] for n in cl.nodes()
                       if (n.get("ManagerStatus") or {}).get("Leader")), None)
        new = transfer_leader(cl, to)
        return f"leader: {before} -> {new}" if before != new else f"{new} already leads"

    print(op(run, "leader", inventory))
