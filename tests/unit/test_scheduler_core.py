"""The pure scheduler: filters, scoring, explanations, preset (global) tasks."""

from __future__ import annotations

from collections import Counter

import pytest
from test_scheduler_helpers import GB, node, placements, spec, task, tasks

from swarmkit_py.manager.scheduler import (
    ASSIGNED_MESSAGE,
    PREASSIGNED_MESSAGE,
    NodeSet,
    Scheduler,
    explain,
    no_suitable_node,
)
from swarmkit_py.store import TaskState


def schedule(pending, nodes, tasks_by_node=None):
    return Scheduler().schedule(pending, nodes, tasks_by_node or {})


def errs(decisions) -> set[str | None]:
    return {d.err for d in decisions if not d.placed}


class TestAvailability:
    @pytest.mark.parametrize(
        "kwargs",
        [
            {"availability": "drain"},
            {"availability": "pause"},
            {"state": "down"},
            {"state": "unknown"},
            {"state": "disconnected"},
        ],
    )
    def test_unavailable_nodes_are_never_chosen(self, kwargs):
        good = node("good")
        bad = node("bad", **kwargs)
        ds = schedule(tasks(10), [bad, good])
        assert placements(ds) == {"good": 10}

    def test_nothing_available(self):
        nodes = [
            node("a", availability="drain"),
            node("b", availability="pause"),
            node("c", state="down"),
        ]
        ds = schedule(tasks(3), nodes)
        assert not any(d.placed for d in ds)
        assert errs(ds) == {"no suitable node (3 nodes not available for new tasks)"}

    def test_one_node_singular(self):
        ds = schedule(tasks(1), [node("a", state="down")])
        assert ds[0].err == "no suitable node (1 node not available for new tasks)"

    def test_no_nodes_at_all(self):
        ds = schedule(tasks(2), [])
        assert errs(ds) == {"no suitable node"}


class TestConstraints:
    def test_only_matching_nodes(self):
        nodes = [node(f"n{i}", labels={"zone": "a" if i < 2 else "b"}) for i in range(5)]
        ds = schedule(tasks(6, task_spec=spec(constraints=["node.labels.zone==a"])), nodes)
        assert placements(ds) == {"n0": 3, "n1": 3}

    def test_none_match_explained(self):
        nodes = [node(f"n{i}", labels={"zone": "b"}) for i in range(3)]
        ds = schedule(tasks(2, task_spec=spec(constraints=["node.labels.zone==a"])), nodes)
        assert errs(ds) == {"no suitable node (scheduling constraints not satisfied on 3 nodes)"}

    def test_role_constraint(self):
        nodes = [node("m", role="manager"), node("w1"), node("w2")]
        ds = schedule(tasks(4, task_spec=spec(constraints=["node.role!=manager"])), nodes)
        assert placements(ds) == {"w1": 2, "w2": 2}

    def test_unparseable_constraint_places_nowhere(self):
        ds = schedule(tasks(1, task_spec=spec(constraints=["zone=a"])), [node("a"), node("b")])
        assert ds[0].err == "no suitable node (scheduling constraints not satisfied on 2 nodes)"


class TestResources:
    def test_reservations_fill_nodes(self):
        nodes = [node("a", cpus=2, memory=4 * GB), node("b", cpus=1, memory=4 * GB)]
        ds = schedule(tasks(4, task_spec=spec(cpus=1)), nodes)
        assert placements(ds) == {"a": 2, "b": 1}
        assert errs(ds) == {"no suitable node (insufficient resources on 2 nodes)"}

    def test_memory_counts_too(self):
        ds = schedule(tasks(3, task_spec=spec(memory=3 * GB)), [node("a", memory=8 * GB)])
        assert placements(ds) == {"a": 2}
        assert errs(ds) == {"no suitable node (insufficient resources on 1 node)"}

    def test_tasks_already_there_hold_their_reservation(self):
        held = spec(cpus=3, image="db")
        existing = {"a": [task("db", held, state="running")]}
        nodes = [node("a", cpus=4), node("b", cpus=4)]
        ds = schedule(tasks(4, task_spec=spec(cpus=1)), nodes, existing)
        assert placements(ds) == {"a": 1, "b": 3}

    def test_finished_tasks_hold_nothing(self):
        existing = {"a": [task("db", spec(cpus=4), state="complete", desired="shutdown")]}
        ds = schedule(tasks(1, task_spec=spec(cpus=4)), [node("a", cpus=4)], existing)
        assert placements(ds) == {"a": 1}

    def test_node_without_reported_resources_takes_no_reservation(self):
        n = node("a")
        n.description.resources = None
        ds = schedule(tasks(1, task_spec=spec(memory=1)), [n])
        assert ds[0].err == "no suitable node (insufficient resources on 1 node)"
        assert schedule(tasks(1), [n])[0].placed  # no reservation: fine

    def test_nodeset_accounting_follows_updates(self):
        ns = NodeSet.build([node("a", cpus=4)])
        t = task("s", spec(cpus=1), state="running", node_id="a")
        ns.observe_task(t)
        assert ns.get("a").available_cpu == 3 * 10**9
        assert ns.get("a").by_service == {"s": 1}
        t2 = t.model_copy(update={"desired_state": TaskState.SHUTDOWN})
        ns.observe_task(t2)  # still running: keeps its reservation, no longer an active replica
        assert ns.get("a").available_cpu == 3 * 10**9
        assert ns.get("a").by_service == {} and ns.get("a").active_tasks == 0
        ns.observe_task(
            t2.model_copy(
                update={"status": t2.status.model_copy(update={"state": TaskState.SHUTDOWN})}
            )
        )
        assert ns.get("a").available_cpu == 4 * 10**9


class TestPlatformAndMaxReplicas:
    def test_platforms(self):
        nodes = [node("x86", arch="x86_64"), node("arm", arch="aarch64"), node("win", os="windows")]
        ds = schedule(
            tasks(4, task_spec=spec(platforms=[{"OS": "linux", "Architecture": "arm64"}])), nodes
        )
        assert placements(ds) == {"arm": 4}
        ds = schedule(tasks(1, task_spec=spec(platforms=[{"OS": "freebsd"}])), nodes)
        assert ds[0].err == "no suitable node (unsupported platform on 3 nodes)"

    def test_max_replicas_per_node(self):
        nodes = [node("a"), node("b")]
        ds = schedule(tasks(3, task_spec=spec(max_replicas=1)), nodes)
        assert placements(ds) == {"a": 1, "b": 1}
        assert errs(ds) == {"no suitable node (max replicas per node limit exceed)"}

    def test_max_replicas_counts_running_tasks(self):
        s = spec(max_replicas=2)
        existing = {"a": [task("svc", s, state="running"), task("svc", s, state="running")]}
        ds = schedule(tasks(2, task_spec=s), [node("a"), node("b")], existing)
        assert placements(ds) == {"b": 2}


class TestScoring:
    def test_spread_over_label_values_is_even_not_per_node(self):
        # racks of 1, 2 and 3 nodes: per-node balance would give rack r3 half the tasks
        nodes = [node("r1-a", labels={"rack": "r1"})]
        nodes += [node(f"r2-{i}", labels={"rack": "r2"}) for i in range(2)]
        nodes += [node(f"r3-{i}", labels={"rack": "r3"}) for i in range(3)]
        ds = schedule(tasks(9, task_spec=spec(spread=["node.labels.rack"])), nodes)
        per_rack = Counter(d.node_id.split("-")[0] for d in ds if d.placed)
        assert per_rack == {"r1": 3, "r2": 3, "r3": 3}
        p = placements(ds)
        assert (
            p["r1-a"] == 3
            and {p["r2-0"], p["r2-1"]} == {1, 2}
            and p["r3-0"] == p["r3-1"] == p["r3-2"] == 1
        )

    def test_spread_is_hierarchical(self):
        nodes = []
        for dc, racks in (("east", ["e1", "e2"]), ("west", ["w1", "w2", "w3", "w4"])):
            for rack in racks:
                nodes.append(node(f"{dc}-{rack}", labels={"dc": dc, "rack": rack}))
        ds = schedule(
            tasks(8, task_spec=spec(spread=["node.labels.dc", "node.labels.rack"])), nodes
        )
        p = placements(ds)
        assert p["east-e1"] == p["east-e2"] == 2  # 4 per dc, split over its racks
        assert [p[f"west-w{i}"] for i in range(1, 5)] == [1, 1, 1, 1]

    def test_spread_counts_existing_tasks_and_nodes_missing_the_label(self):
        nodes = [node("a", labels={"rack": "1"}), node("b", labels={"rack": "2"}), node("c")]
        s = spec(spread=["node.labels.rack"])
        existing = {"a": [task("svc", s, state="running") for _ in range(3)]}
        # branches "1" (3 tasks already), "2", and "" (nodes without the label): 4 new tasks
        # even the branches out at 3 each
        ds = schedule(tasks(4, task_spec=s), nodes, existing)
        assert placements(ds) == {"b": 2, "c": 2}
        p = placements(schedule(tasks(7, task_spec=s), nodes, existing))
        assert sorted([3 + p.get("a", 0), p["b"], p["c"]]) == [3, 3, 4]

    def test_spread_falls_back_when_a_branch_is_full(self):
        nodes = [node("a", labels={"rack": "1"}, cpus=1), node("b", labels={"rack": "2"}, cpus=8)]
        ds = schedule(tasks(6, task_spec=spec(spread=["node.labels.rack"], cpus=1)), nodes)
        assert placements(ds) == {"a": 1, "b": 5}

    def test_spread_over_engine_labels(self):
        nodes = [node(f"n{i}", engine_labels={"az": str(i % 2)}) for i in range(4)]
        nodes.append(node("extra1", engine_labels={"az": "0"}))
        ds = schedule(tasks(4, task_spec=spec(spread=["engine.labels.az"])), nodes)
        per_az = Counter(("0" if d.node_id in ("n0", "n2", "extra1") else "1") for d in ds)
        assert per_az == {"0": 2, "1": 2}

    def test_fewest_tasks_of_the_service_then_fewest_overall(self):
        s = spec()
        existing = {
            "a": [task("svc", s, state="running") for _ in range(2)],
            "b": [task("other", spec(image="x"), state="running") for _ in range(5)],
            "c": [task("other", spec(image="x"), state="running")],
        }
        nodes = [node("a"), node("b"), node("c")]
        ds = schedule(tasks(1, task_spec=s), nodes, existing)
        assert placements(ds) == {"c": 1}  # b and c have none of svc; c has fewer overall
        ds = schedule(tasks(7, task_spec=s), nodes, existing)
        assert placements(ds) == {"a": 1, "b": 3, "c": 3}  # ends with 3 of svc on each node

    def test_balance_across_services(self):
        nodes = [node(f"n{i}") for i in range(4)]
        sched = Scheduler()
        first = sched.schedule(tasks(2, "s1"), nodes, {})
        second = sched.schedule(tasks(2, "s2"))  # same node set: s1's placements count
        assert set(placements(first)).isdisjoint(placements(second))

    def test_big_groups_are_even(self):
        nodes = [node(f"n{i}", labels={"zone": "a" if i % 2 else "b"}) for i in range(50)]
        ds = schedule(tasks(1000, task_spec=spec(constraints=["node.labels.zone==a"])), nodes)
        counts = placements(ds)
        assert len(counts) == 25 and set(counts.values()) == {40}


class TestPreassigned:
    def test_fits_and_is_confirmed(self):
        g = [task("glob", spec(cpus=1), slot=None, node_id=n) for n in ("a", "b")]
        ds = schedule(g, [node("a"), node("b")])
        assert [(d.node_id, d.preassigned, d.message) for d in ds] == [
            ("a", True, PREASSIGNED_MESSAGE),
            ("b", True, PREASSIGNED_MESSAGE),
        ]

    def test_honoured_only_if_it_fits(self):
        existing = {"a": [task("big", spec(cpus=4), state="running")]}
        g = [
            task("glob", spec(cpus=1), slot=None, node_id="a"),
            task("glob", spec(cpus=1), slot=None, node_id="b"),
        ]
        ds = schedule(g, [node("a", cpus=4), node("b", cpus=4)], existing)
        by_node = {d.task.node_id: d for d in ds}
        assert not by_node["a"].placed
        assert by_node["a"].err == "no suitable node (insufficient resources on 1 node)"
        assert by_node["b"].placed and by_node["b"].node_id == "b"

    def test_never_on_an_unavailable_node(self):
        for kwargs in ({"availability": "drain"}, {"availability": "pause"}, {"state": "down"}):
            ds = schedule([task("glob", slot=None, node_id="a")], [node("a", **kwargs)])
            assert ds[0].err == "no suitable node (1 node not available for new tasks)"

    def test_unknown_node(self):
        ds = schedule([task("glob", slot=None, node_id="gone")], [node("a")])
        assert not ds[0].placed

    def test_preset_first_then_others_use_the_rest(self):
        g = task("glob", spec(cpus=3), slot=None, node_id="a")
        r = tasks(2, "rep", spec(cpus=2))
        ds = schedule([*r, g], [node("a", cpus=4), node("b", cpus=4)])
        assert {d.task.id: d.node_id for d in ds}[g.id] == "a"
        assert placements([d for d in ds if d.task.service_id == "rep"]) == {"b": 2}


class TestExplain:
    def test_exact_strings_and_order(self):
        # Swarm sorts reasons by the number of nodes they rejected, most first; ties keep the
        # filters' order (ready, resources, constraints, platform, max replicas).
        assert explain({"constraints": 2, "ready": 1}) == (
            "scheduling constraints not satisfied on 2 nodes; 1 node not available for new tasks"
        )
        assert explain({"constraints": 1, "ready": 1}) == (
            "1 node not available for new tasks; scheduling constraints not satisfied on 1 node"
        )
        assert explain({"resources": 2, "platform": 3, "ready": 0}) == (
            "unsupported platform on 3 nodes; insufficient resources on 2 nodes"
        )
        assert no_suitable_node({}) == "no suitable node"

    def test_mixed_reasons_from_the_scheduler(self):
        nodes = [
            node("down", state="down", labels={"zone": "a"}),
            node("b1", labels={"zone": "b"}),
            node("b2", labels={"zone": "b"}),
        ]
        ds = schedule(tasks(1, task_spec=spec(constraints=["node.labels.zone==a"])), nodes)
        assert ds[0].err == (
            "no suitable node (scheduling constraints not satisfied on 2 nodes; "
            "1 node not available for new tasks)"
        )

    def test_first_failing_filter_counts(self):
        # a node that is both too small and non-matching counts as "insufficient resources"
        nodes = [
            node("small", cpus=1, labels={"zone": "b"}),
            node("big", cpus=8, labels={"zone": "b"}),
        ]
        ds = schedule(tasks(1, task_spec=spec(cpus=2, constraints=["node.labels.zone==a"])), nodes)
        assert ds[0].err == (
            "no suitable node (insufficient resources on 1 node; scheduling constraints not satisfied on 1 node)"
        )

    def test_placed_decisions(self):
        ds = schedule(tasks(1), [node("a")])
        assert ds[0].placed and ds[0].err is None and ds[0].message == ASSIGNED_MESSAGE


def test_two_tasks_with_the_same_host_port_never_share_a_node():
    from swarmkit_py.manager.scheduler.core import schedule_tasks
    from swarmkit_py.manager.scheduler.nodeinfo import NodeSet
    from swarmkit_py.store import (
        Endpoint,
        EndpointSpec,
        Node,
        NodeSpec,
        NodeState,
        NodeStatus,
        PortConfig,
        Task,
        TaskState,
        TaskStatus,
    )

    ep = Endpoint(spec=EndpointSpec(ports=[PortConfig(target_port=80, published_port=8080,
                                                      publish_mode="host")]))
    nodes = NodeSet()
    for i in range(2):
        nodes.add_or_update_node(Node(id=f"n{i}", spec=NodeSpec(),
                                      status=NodeStatus(state=NodeState.READY)))
    tasks = [Task(id=f"t{i}", service_id="s", slot=i + 1, endpoint=ep,
                  status=TaskStatus(state=TaskState.PENDING), desired_state=TaskState.RUNNING)
             for i in range(3)]
    decisions = schedule_tasks(nodes, tasks)
    placed = [d.node_id for d in decisions if d.placed]
    assert sorted(placed) == ["n0", "n1"]
    refused = [d for d in decisions if not d.placed]
    assert len(refused) == 1
    assert refused[0].err == "no suitable node (host-mode port already in use on 2 nodes)"
