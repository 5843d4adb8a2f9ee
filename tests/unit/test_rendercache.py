"""api/chunked.RenderCache: a stored object's JSON is encoded once per version; copies and
newer versions are never answered from an older encoding."""

from __future__ import annotations

import json

from swarmkit_py.api.chunked import RenderCache
from swarmkit_py.manager.controlapi.nodes import with_manager_status
from swarmkit_py.manager.proposer import LocalProposer
from swarmkit_py.store import Node, NodeRole, NodeSpec, NodeState, NodeStatus, Transaction, new_id


async def test_one_encoding_per_stored_version():
    p = LocalProposer()
    node = Node(id=new_id(), spec=NodeSpec(role=NodeRole.WORKER), status=NodeStatus(state=NodeState.READY))
    await p.propose(Transaction().create(node))
    renders = []

    def render(n):
        renders.append(n.id)
        return n.to_api()

    cache = RenderCache(lambda: p.store, render)
    stored = p.store.view().get_node(node.id)
    first = cache.encoder()(stored)
    assert json.loads(first)["Status"]["State"] == "ready"
    assert cache.encoder()(stored) is first and len(renders) == 1 and cache.hits == 1

    # an update stores a new object: re-encoded, the new state shown
    updated = stored.clone()
    updated.status.state = NodeState.DOWN
    await p.propose(Transaction().update(updated))
    now = p.store.view().get_node(node.id)
    assert json.loads(cache.encoder()(now))["Status"]["State"] == "down"
    assert len(renders) == 2
    # the old object (a list taken before the update) is rendered as it was, not cached
    assert json.loads(cache.encoder()(stored))["Status"]["State"] == "ready"
    assert json.loads(cache.encoder()(now))["Status"]["State"] == "down"

    # a copy made for one answer (same id and version, other content) is never cached
    copy = now.model_copy(update={"spec": NodeSpec(role=NodeRole.MANAGER)})
    assert json.loads(cache.encoder()(copy))["Spec"]["Role"] == "manager"
    assert json.loads(cache.encoder()(now))["Spec"]["Role"] == "worker"
    assert with_manager_status(now, []) is now  # what lets node lists use the cache


async def test_the_cache_starts_over_past_its_size():
    p = LocalProposer()
    nodes = [Node(id=new_id(), status=NodeStatus(state=NodeState.READY)) for _ in range(10)]
    await p.propose(_create_all(nodes))
    one = len(json.dumps(nodes[0].to_api()))
    cache = RenderCache(lambda: p.store, lambda n: n.to_api(), max_bytes=3 * one + 10)
    enc = cache.encoder()
    for n in p.store.view().list("node"):
        enc(n)
    assert 1 <= len(cache) <= 3


def _create_all(objs) -> Transaction:
    tx = Transaction()
    for o in objs:
        tx.create(o)
    return tx


async def test_entries_of_deleted_objects_are_dropped_as_the_cache_grows():
    """A churning swarm (services made and removed) must not leave its history in the cache:
    once the cache reaches prune_bytes, and each time it has doubled since, the entries of
    objects the store no longer holds in that version are dropped."""
    p = LocalProposer()
    first = [Node(id=new_id(), status=NodeStatus(state=NodeState.READY)) for _ in range(20)]
    await p.propose(_create_all(first))
    one = len(json.dumps(first[0].to_api()))
    cache = RenderCache(lambda: p.store, lambda n: n.to_api(), prune_bytes=10 * one)
    enc = cache.encoder()
    for n in p.store.view().list("node"):
        enc(n)
    assert len(cache) == 20  # all live: nothing dropped, the next look at twice the size
    tx = Transaction()
    for n in first[:15]:
        tx.delete(n)
    await p.propose(tx)
    kept = {n.id for n in first[15:]}
    second = [Node(id=new_id(), status=NodeStatus(state=NodeState.READY)) for _ in range(25)]
    await p.propose(_create_all(second))
    enc = cache.encoder()
    for n in (p.store.view().get_node(x.id) for x in second):
        enc(n)
    ids = set(cache._entries)
    assert not ids & {n.id for n in first[:15]}, "deleted nodes' JSON still cached"
    assert kept <= ids and {n.id for n in second} <= ids
    live = p.store.view().get_node(first[15].id)
    assert cache.encoder()(live) is cache._entries[live.id][1]  # a kept entry still answers
