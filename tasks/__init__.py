"""Operator tasks. `invoke --list` shows them; `invoke --help TASK` shows a task's help.

One module per area, each building its own tasks; this file only assembles them:

    lab        the local lab of SSH hosts           invoke lab.up, lab.crash h1, lab.status ...
    cluster    form and look at the swarm           invoke bootstrap, status, docker-env, verify, dashboard ...
    node       one node's role and availability     invoke promote h4, drain h4 ...
    lifecycle  change the cluster's shape/version   invoke scale, upgrade, replace, recover, reset
    security   auto-lock of the managers            invoke autolock --key-file k, unlock --key-file k

The lab's tasks live under `lab.`; the others are top-level names (`invoke status` is the
cluster's, `invoke lab.status` the lab's), as operators type them. Task functions stay thin:
the logic lives in swarmkit_py/deploy/ so tests use it directly.
"""

from invoke import Collection

from . import cluster, lab, lifecycle, node, security

ns = Collection(Collection.from_module(lab, name="lab"))
for _module in (cluster, node, lifecycle, security):
    for _name, _task in Collection.from_module(_module).tasks.items():
        ns.add_task(_task, name=_name)
