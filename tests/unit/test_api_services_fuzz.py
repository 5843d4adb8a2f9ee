"""Fuzzing /services and /tasks: malformed JSON, wrong types, mutated real CLI bodies, huge
bodies, unknown references. Every refusal is a 4xx JSON error with a message (the one 500
allowed is "update out of sequence") and leaves the store exactly as it was."""

from __future__ import annotations

import copy
import json
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from tests.unit import test_api_fuzz as base
from tests.unit.test_api_fuzz import (
    BODY_LIMIT,
    FUZZ,
    bodies,
    check,
    json_values,
    prefixes,
    versions,
    with_query,
)
from tests.unit.test_controlapi_services import CLI_CREATE

server = base.server  # a fresh swarm per test, served in a thread on 127.0.0.1

PATHS = [
    ("Name",), ("Labels",), ("TaskTemplate",), ("TaskTemplate", "ContainerSpec"),
    ("TaskTemplate", "ContainerSpec", "Image"), ("TaskTemplate", "ContainerSpec", "Args"),
    ("TaskTemplate", "Placement"), ("TaskTemplate", "Placement", "Constraints"),
    ("TaskTemplate", "RestartPolicy"), ("TaskTemplate", "Resources", "Limits"),
    ("TaskTemplate", "ForceUpdate"), ("Mode",), ("Mode", "Replicated"),
    ("Mode", "Replicated", "Replicas"), ("UpdateConfig",), ("EndpointSpec",),
    ("EndpointSpec", "Ports"), ("mode",), ("taskTemplate",),
]
odd_values = st.one_of(
    json_values,
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([-1, 0, 2**64 - 1, 10**6, "", "x" * 300, "node.role", "a==b", "@@",
                     [{"TargetPort": 80, "PublishedPort": 80}] * 2, {"Global": {}}]),
)


def mutate(draw, body: dict, paths, values=odd_values) -> dict:
    """`body` with 1-4 of `paths` set to one of `values` or removed (in place)."""
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(paths))
        node = body
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        if draw(st.booleans()):
            # a copy: sampled_from hands out the same list/dict object on every draw, and a
            # later mutation inside it would change it for all later examples, or make it
            # contain itself (json.dumps: "Circular reference detected")
            node[path[-1]] = copy.deepcopy(draw(values))
        else:
            node.pop(path[-1], None)
    return body


@st.composite
def mutated_specs(draw) -> bytes:
    body = copy.deepcopy(CLI_CREATE)
    body["Name"] = draw(st.sampled_from(["web", "fz", "x" * 70, "a_b", "-"]))
    return json.dumps(mutate(draw, body, PATHS)).encode()


service_bodies = st.one_of(
    mutated_specs(),
    bodies,
    st.just(json.dumps(dict(CLI_CREATE, Labels={"x": "y" * (BODY_LIMIT * 2)})).encode()),
)


def refs():
    return st.one_of(
        st.sampled_from(["web", "fz", "nosuch", "w", ""]), st.text(min_size=1, max_size=30)
    )


@FUZZ
@given(data=st.data())
def test_fuzz_service_create(server, data):
    status = check(server, "POST", data.draw(prefixes) + "/services/create",
                   data.draw(service_bodies))
    assert status in (201, 400, 404, 409, 413), status


@FUZZ
@given(data=st.data())
def test_fuzz_service_update(server, data):
    check(server, "POST", "/services/create", json.dumps(CLI_CREATE).encode())
    path = with_query(
        data.draw(prefixes) + f"/services/{quote(data.draw(refs()), safe='')}/update",
        version=data.draw(versions),
        rollback=data.draw(st.one_of(st.none(), st.sampled_from(["previous", "", "x"]))),
        registryAuthFrom=data.draw(st.one_of(st.none(), st.sampled_from(["spec", "q"]))),
    )
    check(server, "POST", path, data.draw(service_bodies))


@FUZZ
@given(data=st.data())
def test_fuzz_service_and_task_reads(server, data):
    filters = data.draw(
        st.one_of(
            st.text(max_size=40),
            json_values.map(json.dumps),
            st.dictionaries(
                st.sampled_from(["id", "name", "label", "mode", "service", "node",
                                 "desired-state", "_up-to-date", "runtime", "bogus"]),
                st.one_of(st.lists(st.text(max_size=8), max_size=3),
                          st.dictionaries(st.text(max_size=8), st.booleans(), max_size=3),
                          json_values),
                max_size=3,
            ).map(json.dumps),
        )
    )
    prefix = data.draw(prefixes)
    for path in ("/services", "/tasks"):
        check(server, "GET", with_query(prefix + path, filters=filters,
                                        status=data.draw(st.sampled_from([None, "1", "x"]))))
    ref = quote(data.draw(refs()), safe="")
    check(server, "GET", with_query(f"{prefix}/services/{ref}", insertDefaults="true"))
    check(server, "GET", f"{prefix}/tasks/{ref}")
    check(server, "DELETE", f"{prefix}/services/{ref}x")


def test_mutate_copies_what_it_draws():
    """The same sampled dict drawn at ("Mode",) and then at ("Mode", "Replicated") must not end
    up inside itself (it did: a whole-suite run failed on "Circular reference detected")."""
    shared = {"Global": {}}
    script = iter([2, ("Mode",), True, shared, ("Mode", "Replicated"), True, shared])
    body = mutate(lambda _strategy: next(script), copy.deepcopy(CLI_CREATE), PATHS)
    assert json.loads(json.dumps(body))["Mode"] == {"Global": {}, "Replicated": {"Global": {}}}
    assert shared == {"Global": {}}
