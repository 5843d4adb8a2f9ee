"""The object model against what real Docker clients send and what they need back."""

from __future__ import annotations

import functools
import json
import random
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from swarmkit_py.store import (
    Cluster,
    Node,
    NodeRole,
    NodeSpec,
    Service,
    ServiceSpec,
    Task,
    TaskState,
    format_rfc3339,
    is_valid_id,
    new_id,
    parse_rfc3339,
)

TRANSCRIPT = Path("/work/shared/notes/docker-api/real-dockerd-20.10-transcript.jsonl")
needs_transcript = pytest.mark.skipif(not TRANSCRIPT.exists(), reason="shared transcript absent")


@functools.cache
def _transcript() -> list[dict]:
    return [json.loads(line) for line in TRANSCRIPT.read_text().splitlines() if line.strip()]


def _route(rec: dict) -> str:
    return re.sub(r"^/v1\.\d+", "", rec["path"])


def _bodies(method: str, route_re: str, agent: str) -> list[dict]:
    return [
        r["body"]
        for r in _transcript()
        if r["method"] == method
        and re.fullmatch(route_re, _route(r))
        and r["body"] is not None
        and r["headers"].get("User-Agent", "").startswith(agent)
    ]


def _canonical_spec(body: dict) -> dict:
    """What dockerd stores for a service spec body: canonical key case, and one replica when
    the replicated mode carries none."""
    body = json.loads(json.dumps(body))
    mode = body.get("Mode") or {}
    for key in list(mode):
        if key.lower() in ("replicated", "global") and key != key.capitalize():
            mode[key.capitalize()] = mode.pop(key)
    if "Replicated" in mode and (mode["Replicated"] or {}).get("Replicas") is None:
        mode["Replicated"] = {**(mode["Replicated"] or {}), "Replicas": 1}
    return body


def _same_json(ours, theirs, path="$") -> None:
    """Equal up to what Go clients cannot tell apart: nulls vs absent keys, and timestamps at
    microsecond instead of nanosecond precision."""
    if isinstance(theirs, dict):
        theirs = {k: v for k, v in theirs.items() if v is not None}
        assert isinstance(ours, dict), path
        assert set(ours) == set(theirs), (path, set(ours) ^ set(theirs))
        for k in theirs:
            _same_json(ours[k], theirs[k], f"{path}.{k}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _same_json(a, b, f"{path}[{i}]")
    elif isinstance(theirs, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", theirs):
        assert ours.endswith("Z"), path
        assert parse_rfc3339(ours) == parse_rfc3339(theirs), path
    elif isinstance(ours, float) and type(theirs) is int:
        assert ours == theirs, path  # Go decodes 0 and 0.0 alike into a float field
    else:
        assert ours == theirs and type(ours) is type(theirs), (path, ours, theirs)


# -- request bodies -----------------------------------------------------------------------


@needs_transcript
def test_sdk_service_create_with_lowercase_mode_key():
    (body,) = _bodies("POST", r"/services/create", "docker-sdk-python")
    assert "replicated" in body["Mode"]  # the SDK really does send it lowercase
    spec = ServiceSpec.model_validate(body)
    assert spec.name == "sdkweb"
    assert spec.mode.replicated is not None and spec.mode.replicated.replicas == 3
    assert spec.task_template.container_spec.command == ["sleep", "3600"]
    out = spec.to_api()
    assert out["Mode"] == {"Replicated": {"Replicas": 3}}
    assert out["TaskTemplate"]["ContainerSpec"]["Image"] == "local/busybox:1"


@needs_transcript
def test_cli_service_bodies_round_trip_unchanged():
    bodies = _bodies("POST", r"/services/[^/]+/update|/services/create", "Docker-Client")
    assert len(bodies) >= 3
    for body in bodies:
        spec = ServiceSpec.model_validate(body)
        # Unmodelled fields (Init, DNSConfig, Isolation...) must come back as sent.
        _same_json(spec.to_api(), _canonical_spec(body))


@needs_transcript
def test_sdk_update_with_defaults_inserted_parses_to_typed_fields():
    body = _bodies("POST", r"/services/[^/]+/update", "docker-sdk-python")[0]
    spec = ServiceSpec.model_validate(body)
    assert spec.mode.replicated.replicas == 5
    assert spec.update_config.failure_action == "pause"
    assert spec.update_config.order == "stop-first"
    assert spec.task_template.restart_policy.condition == "any"
    assert spec.task_template.restart_policy.delay == 5_000_000_000
    assert spec.task_template.container_spec.stop_grace_period == 10_000_000_000
    _same_json(spec.to_api(), _canonical_spec(body))


@needs_transcript
def test_node_update_bodies_parse():
    for body in _bodies("POST", r"/nodes/[^/]+/update", ""):
        spec = NodeSpec.model_validate(body)
        assert spec.role in (NodeRole.MANAGER, NodeRole.WORKER)
        _same_json(spec.to_api(), body)


@needs_transcript
def test_swarm_update_body_parses_into_cluster_spec():
    body = _bodies("POST", r"/swarm/update", "")[0]
    cluster = Cluster(id="c" * 25, spec=body)
    assert cluster.spec.dispatcher.heartbeat_period == 5_000_000_000
    assert cluster.spec.orchestration.task_history_retention_limit == 5
    _same_json(cluster.spec.to_api(), body)


# -- real responses: every object dockerd returned is representable -------------------------


@needs_transcript
@pytest.mark.parametrize(
    "route, model",
    [(r"/nodes(/[^/]+)?", Node), (r"/services(/[^/]+)?", Service), (r"/tasks", Task), (r"/swarm", Cluster)],
)
def test_real_dockerd_objects_round_trip(route, model):
    seen = 0
    for rec in _transcript():
        if rec["method"] != "GET" or rec["status"] != 200 or not re.fullmatch(route, _route(rec)):
            continue
        items = rec["resp_body"] if isinstance(rec["resp_body"], list) else [rec["resp_body"]]
        for item in items:
            obj = model.model_validate(item)
            assert obj.id == item["ID"]
            assert obj.version.index == item["Version"]["Index"]
            _same_json(obj.to_api(), item)
            seen += 1
    assert seen > 0


# -- normalisation and defaults ---------------------------------------------------------------


def test_keys_fold_case_insensitively_but_labels_do_not():
    spec = ServiceSpec.model_validate(
        {"name": "x", "labels": {"Foo": "1", "foo": "2"}, "mode": {"replicated": {"replicas": 2}}}
    )
    assert spec.mode.replicated.replicas == 2
    assert spec.to_api()["Labels"] == {"Foo": "1", "foo": "2"}
    assert spec.to_api()["Name"] == "x"


def test_exact_key_spelling_wins_over_folded_duplicate():
    spec = ServiceSpec.model_validate({"name": "low", "Name": "canon"})
    assert spec.name == "canon"
    spec = ServiceSpec.model_validate({"Name": "canon", "NAME": "shout"})
    assert spec.name == "canon"


@pytest.mark.parametrize(
    "mode",
    [{"Replicated": {}}, {"replicated": {"Replicas": None}}, {}, None],
)
def test_replicated_without_replicas_means_one(mode):
    body = {"Name": "w"} if mode is None else {"Name": "w", "Mode": mode}
    spec = ServiceSpec.model_validate(body)
    assert spec.to_api()["Mode"] == {"Replicated": {"Replicas": 1}}


def test_global_mode_dumps_as_empty_object():
    spec = ServiceSpec.model_validate({"Mode": {"global": {}}})
    assert spec.mode.is_global and spec.mode.replicated is None
    assert spec.to_api()["Mode"] == {"Global": {}}


def test_bad_values_are_rejected():
    with pytest.raises(ValidationError):
        ServiceSpec.model_validate({"Mode": {"Replicated": {"Replicas": -1}}})
    with pytest.raises(ValidationError):
        ServiceSpec.model_validate({"Mode": {"Replicated": {"Replicas": "many"}}})
    with pytest.raises(ValidationError):
        NodeSpec.model_validate({"Availability": "sleeping"})


def test_enums_accept_any_case_and_dump_lowercase():
    spec = NodeSpec.model_validate({"Role": "Manager", "Availability": "DRAIN"})
    assert spec.to_api() == {"Labels": {}, "Role": "manager", "Availability": "drain"}


def test_docker_spellings_of_acronyms():
    task = Task(
        id="t" * 25,
        service_id="s",
        node_id="n",
        status={"ContainerStatus": {"ContainerID": "abc", "PID": 7, "ExitCode": 1}},
    )
    out = task.to_api()
    assert out["ServiceID"] == "s" and out["NodeID"] == "n"
    assert out["Status"]["ContainerStatus"] == {"ContainerID": "abc", "PID": 7, "ExitCode": 1}
    node = Node(id="n" * 25, description={"Resources": {"NanoCPUs": 2, "MemoryBytes": 3}})
    assert node.to_api()["Description"]["Resources"] == {"NanoCPUs": 2, "MemoryBytes": 3}


def test_pending_task_omits_node_id_and_slot_of_global_task():
    out = Task(id="t" * 25, service_id="s", desired_state="running").to_api()
    assert "NodeID" not in out and "Slot" not in out
    assert out["DesiredState"] == "running" and out["Status"]["State"] == "new"


def test_internal_fields_are_replicated_but_not_served():
    node = Node(id="n" * 25, role="manager", certificate={"CN": "n" * 25})
    assert "Role" not in node.to_api() and "Certificate" not in node.to_api()
    assert node.to_wire()["Role"] == "manager"
    assert Node.model_validate(node.to_wire()) == node
    cluster = Cluster(id="c" * 25, root_ca={"CAKey": "secret"})
    assert "RootCA" not in cluster.to_api()
    assert cluster.to_wire()["RootCA"] == {"CAKey": "secret"}


def test_timestamps_are_rfc3339_with_z():
    naive = datetime(2026, 1, 2, 3, 4, 5, 6)
    svc = Service(id="s" * 25, created_at=naive, updated_at="2026-01-02T04:04:05.000006789+01:00")
    out = svc.to_api()
    assert out["CreatedAt"] == "2026-01-02T03:04:05.000006Z"
    assert out["UpdatedAt"] == "2026-01-02T03:04:05.000006Z"
    assert svc.created_at.tzinfo is not None
    assert format_rfc3339(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000000Z"
    with pytest.raises(ValueError):
        parse_rfc3339("2026-01-01 noon")


def test_stored_times_read_back_exactly_on_the_fast_path():
    """format_rfc3339's own spelling is read by fromisoformat (every Raft entry carries three
    per task); it must give what the general path gives, and refuse what it refuses."""
    rng = random.Random(7)
    for _ in range(500):
        d = datetime(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                     rng.randint(0, 59), rng.randint(0, 59), rng.choice([0, rng.randint(0, 999_999)]), tzinfo=UTC)
        text = format_rfc3339(d)
        assert len(text) == 27
        fast, general = parse_rfc3339(text), parse_rfc3339(text[:-1] + "+00:00")
        assert fast == general == d
        assert fast.tzinfo is UTC and fast.utcoffset() == general.utcoffset()
        assert format_rfc3339(fast) == text
    for bad in ("2026-13-01T00:00:00.000000Z", "2026-01-01T24:00:00.000000Z", "2026-01-01T00:00:00,000000Z"):
        with pytest.raises(ValueError):
            parse_rfc3339(bad)


def test_wire_payloads_skip_key_folding_and_read_back_equal():
    """A payload already in Docker's spelling (what `to_wire` writes into Raft entries) is
    handed to pydantic as it is; anything else is still folded."""
    svc = Service.model_validate({"ID": "s" * 25, "Spec": {"name": "web", "Mode": {"replicated": {"Replicas": 3}},
                                                           "TaskTemplate": {"ContainerSpec": {"Image": "nginx"}}}})
    wire = svc.to_wire()
    assert ServiceSpec._fold_keys(wire["Spec"]) is wire["Spec"]
    assert Service.model_validate(wire).to_wire() == wire
    mixed = {"Name": "web", "mode": {"Replicated": {"Replicas": 2}}}
    assert ServiceSpec._fold_keys(mixed) is not mixed
    assert ServiceSpec.model_validate(mixed).mode.replicated.replicas == 2


def test_version_is_an_object_with_index():
    assert Service(id="s" * 25).to_api()["Version"] == {"Index": 0}


# -- task states and IDs ---------------------------------------------------------------------


def test_task_states_order_like_swarm():
    order = [
        "new", "pending", "assigned", "accepted", "preparing", "ready", "starting",
        "running", "complete", "shutdown", "failed", "rejected", "remove", "orphaned",
    ]  # fmt: skip
    states = [TaskState(s) for s in order]
    assert sorted(reversed(states)) == states
    assert [s.rank for s in states] == sorted(s.rank for s in states)
    assert TaskState.PENDING < TaskState.ASSIGNED < "running" <= TaskState.RUNNING
    assert TaskState.FAILED > "complete" and not TaskState.RUNNING > TaskState.RUNNING
    assert max(TaskState.SHUTDOWN, TaskState.NEW) is TaskState.SHUTDOWN
    assert TaskState.RUNNING == "running" and not TaskState.RUNNING.terminal
    assert TaskState.COMPLETE.terminal
    with pytest.raises(ValueError):
        _ = TaskState.RUNNING < "sleeping"


def test_ids_look_like_swarm_and_are_reproducible_with_a_seed():
    a = [new_id(random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = random.Random(7)
    ids = {new_id(rng) for _ in range(2000)}
    assert len(ids) == 2000
    for i in ids:
        assert len(i) == 25 and re.fullmatch(r"[0-9a-z]{25}", i) and is_valid_id(i)
    assert new_id() != new_id()
    assert not is_valid_id("web")
