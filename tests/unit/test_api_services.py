"""/services and /tasks over HTTP: status codes, shapes and messages as dockerd's, with the
request bodies and query strings the real CLI and SDK sent (notes/docker-api transcript)."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from swarmkit_py.api import make_app
from tests.unit.test_controlapi_fixtures import make_swarm
from tests.unit.test_controlapi_services import CLI_CREATE, add_task, spec

SDK_CREATE = {
    "Name": "sdkweb",
    "TaskTemplate": {
        "ContainerSpec": {"Image": "local/busybox:1", "Command": ["sleep", "3600"], "Args": None}
    },
    "Mode": {"replicated": {"Replicas": 3}},
}


@pytest.fixture
async def api():
    s = make_swarm(1, 2)
    app = make_app(s.control, engine_version="0.1.0-test", hostname="m1")
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield s, client


async def error_of(resp) -> tuple[int, str]:
    assert resp.content_type == "application/json", await resp.text()
    return resp.status, (await resp.json())["message"]


async def create(c, body=CLI_CREATE) -> str:
    r = await c.post("/v1.41/services/create", json=body)
    assert r.status == 201, await r.text()
    return (await r.json())["ID"]


async def inspect(c, ref, defaults="false") -> dict:
    r = await c.get(f"/v1.41/services/{ref}", params={"insertDefaults": defaults})
    assert r.status == 200, await r.text()
    return await r.json()


async def test_create_inspect_list(api):
    s, c = api
    sid = await create(c)
    body = await inspect(c, "web")
    assert body["ID"] == sid and body["Version"]["Index"] > 0
    assert body["Spec"]["Mode"] == {"Replicated": {"Replicas": 3}}
    assert body["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"] == ["sleep", "3600"]
    assert body["CreatedAt"].endswith("Z") and body["Endpoint"] == {"Spec": {"Mode": "vip"}}
    assert "PreviousSpec" not in body and "UpdateStatus" not in body
    assert (await inspect(c, sid[:5]))["ID"] == sid
    listed = await (await c.get("/v1.41/services")).json()
    assert [x["ID"] for x in listed] == [sid] and "ServiceStatus" not in listed[0]
    sdk = await create(c, SDK_CREATE)
    assert (await inspect(c, sdk))["Spec"]["Mode"]["Replicated"]["Replicas"] == 3
    # Without --replicas the CLI sends {"Replicated": {}}: stored as 1 (pitfall 4).
    one = await create(c, spec(Name="one", Mode={"Replicated": {}}))
    assert (await inspect(c, one))["Spec"]["Mode"]["Replicated"]["Replicas"] == 1


async def test_create_errors(api):
    s, c = api
    await create(c)
    status, msg = await error_of(await c.post("/v1.41/services/create", json=CLI_CREATE))
    assert status == 409
    assert msg == (
        "rpc error: code = AlreadyExists desc = name conflicts with an existing object: "
        "service web already exists"
    )
    status, msg = await error_of(
        await c.post("/v1.41/services/create", json=spec(Name="x", TaskTemplate={"ContainerSpec": {}}))
    )
    assert status == 400
    assert msg == "rpc error: code = InvalidArgument desc = ContainerSpec: image reference must be provided"
    status, msg = await error_of(await c.post("/v1.41/services/create", data=b"{nope"))
    assert status == 400 and msg.startswith("invalid JSON in request body")
    status, msg = await error_of(await c.post("/v1.41/services/create", data=b""))
    assert (status, msg) == (400, "got EOF while reading request body")


async def test_insert_defaults(api):
    s, c = api
    await create(c, SDK_CREATE)
    plain = await inspect(c, "sdkweb")
    assert "UpdateConfig" not in plain["Spec"] and "RestartPolicy" not in plain["Spec"]["TaskTemplate"]
    for value in ("true", "True", "1"):
        full = await inspect(c, "sdkweb", value)
        assert full["Spec"]["TaskTemplate"]["RestartPolicy"] == {
            "Condition": "any", "Delay": 5_000_000_000, "MaxAttempts": 0,
        }
        assert full["Spec"]["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] == 10_000_000_000
        for key in ("UpdateConfig", "RollbackConfig"):
            assert full["Spec"][key] == {
                "Parallelism": 1, "FailureAction": "pause", "Monitor": 5_000_000_000,
                "MaxFailureRatio": 0, "Order": "stop-first",
            }


async def test_not_found_messages(api):
    _, c = api
    for method, path in (("GET", "/v1.41/services/nosuch"), ("DELETE", "/v1.41/services/nosuch"),
                         ("POST", "/v1.41/services/nosuch/update?version=1")):
        kw = {"json": CLI_CREATE} if method == "POST" else {}
        status, msg = await error_of(await c.request(method, path, **kw))
        assert (status, msg) == (404, "service nosuch not found")
    status, msg = await error_of(await c.get("/v1.41/tasks/nosuch"))
    assert (status, msg) == (404, "task nosuch not found")


async def test_cli_scale_update_rollback_sequence(api):
    """What `service scale web=5`, `service update --image`, `service rollback` send."""
    s, c = api
    sid = await create(c)
    body = await inspect(c, "web")
    scale = body["Spec"]
    scale["Mode"]["Replicated"]["Replicas"] = 5
    r = await c.post(f"/v1.41/services/{sid}/update", params={"version": str(body["Version"]["Index"])}, json=scale)
    assert r.status == 200 and await r.json() == {"Warnings": None}
    scaled = await inspect(c, "web")
    assert scaled["Spec"]["Mode"]["Replicated"]["Replicas"] == 5
    assert "PreviousSpec" not in scaled and "UpdateStatus" not in scaled
    image = scaled["Spec"]
    image["TaskTemplate"]["ContainerSpec"]["Image"] = "local/busybox:2"
    r = await c.post(f"/v1.41/services/{sid}/update",
                     params={"registryAuthFrom": "spec", "version": str(scaled["Version"]["Index"])},
                     json=image)
    assert r.status == 200
    updated = await inspect(c, "web")
    assert updated["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "local/busybox:1"
    assert updated["PreviousSpec"]["Mode"]["Replicated"]["Replicas"] == 5
    r = await c.post(f"/v1.41/services/{sid}/update",
                     params={"rollback": "previous", "version": str(updated["Version"]["Index"])},
                     json=updated["Spec"])
    assert r.status == 200
    rolled = await inspect(c, "web")
    assert rolled["Spec"] == updated["PreviousSpec"] and rolled["PreviousSpec"] == updated["Spec"]
    assert rolled["UpdateStatus"]["State"] == "rollback_started"
    assert rolled["UpdateStatus"]["Message"] == "manually requested rollback"
    assert rolled["UpdateStatus"]["StartedAt"].endswith("Z")


async def test_sdk_scale_with_defaults_is_a_pure_scale(api):
    s, c = api
    sid = await create(c, SDK_CREATE)
    full = await inspect(c, sid, "True")
    body = full["Spec"]
    body["Mode"] = {"replicated": {"Replicas": 5}}
    r = await c.post(f"/v1.41/services/{sid}/update", params={"version": str(full["Version"]["Index"])}, json=body)
    assert r.status == 200
    after = await inspect(c, sid)
    assert after["Spec"]["Mode"]["Replicated"]["Replicas"] == 5
    assert "RestartPolicy" not in after["Spec"]["TaskTemplate"] and "PreviousSpec" not in after


async def test_version_errors(api):
    s, c = api
    sid = await create(c)
    status, msg = await error_of(await c.post("/v1.41/services/web/update?version=1", json=CLI_CREATE))
    assert (status, msg) == (500, "rpc error: code = Unknown desc = update out of sequence")
    status, msg = await error_of(await c.post(f"/v1.41/services/{sid}/update", json=CLI_CREATE))
    assert status == 400
    assert msg == "invalid service version '': strconv.ParseUint: parsing \"\": invalid syntax"
    status, msg = await error_of(await c.post(f"/v1.41/services/{sid}/update?version=x1", json=CLI_CREATE))
    assert status == 400 and "invalid service version 'x1'" in msg
    version = (await inspect(c, sid))["Version"]["Index"]
    status, msg = await error_of(
        await c.post(f"/v1.41/services/{sid}/update?version={version}&rollback=previous", json=CLI_CREATE)
    )
    assert status == 400
    assert msg == f"rpc error: code = FailedPrecondition desc = service {sid} does not have a previous spec"
    status, msg = await error_of(
        await c.post(f"/v1.41/services/{sid}/update?version={version}&registryAuthFrom=x", json=CLI_CREATE)
    )
    assert status == 400 and "registryAuthFrom" in msg


async def test_remove(api):
    s, c = api
    await create(c)
    r = await c.delete("/v1.41/services/web")
    assert r.status == 200 and await r.read() == b""
    assert await (await c.get("/services")).json() == []


async def test_list_filters_both_forms_and_status(api):
    s, c = api
    web = await create(c, dict(CLI_CREATE, Labels={"tier": "front"}))
    mon = await create(c, spec(Name="mon", Mode={"Global": {}}))
    for filters in ({"name": {"we": True}}, {"name": ["we"]}, {"id": [web[:7]]},
                    {"label": {"tier=front": True}}, {"mode": ["replicated"]}):
        r = await c.get("/v1.41/services", params={"filters": json.dumps(filters)})
        assert [x["ID"] for x in await r.json()] == [web], filters
    status, msg = await error_of(await c.get("/v1.41/services", params={"filters": '{"bogus":["x"]}'}))
    assert (status, msg) == (400, "Invalid filter 'bogus'")
    svc = s.store.view().get_service(web)
    add_task(s, svc, 1, node=s.workers[0])
    add_task(s, svc, 2, state="preparing", node=s.workers[1])
    listed = await (await c.get("/v1.41/services", params={"status": "true"})).json()
    by_id = {x["ID"]: x["ServiceStatus"] for x in listed}
    assert by_id[web] == {"RunningTasks": 1, "DesiredTasks": 3, "CompletedTasks": 0}
    assert by_id[mon] == {"RunningTasks": 0, "DesiredTasks": 0, "CompletedTasks": 0}


async def test_endpoint_ports_from_spec(api):
    _, c = api
    body = spec(Name="pweb", EndpointSpec={"Mode": "vip", "Ports": [
        {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"},
        {"TargetPort": 53, "Protocol": "UDP", "PublishMode": "host"},
    ]})
    await create(c, body)
    ep = (await inspect(c, "pweb"))["Endpoint"]
    assert ep["Spec"]["Ports"][0]["PublishMode"] == "ingress"
    assert ep["Ports"] == [
        {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"},
        {"Protocol": "udp", "TargetPort": 53, "PublishMode": "host"},
    ]


async def test_tasks_endpoint(api):
    s, c = api
    sid = await create(c)
    svc = s.store.view().get_service(sid)
    t1 = add_task(s, svc, 1, node=s.workers[0])
    t2 = add_task(s, svc, 2, state="pending")
    # What the CLI's convergence loop sends, and the SDK's list form.
    for raw in (json.dumps({"_up-to-date": {"true": True}, "service": {sid: True}}),
                json.dumps({"service": [sid]}), '{"service":{"web":true}}'):
        r = await c.get("/v1.41/tasks", params={"filters": raw})
        assert r.status == 200
        assert {t["ID"] for t in await r.json()} == {t1.id, t2.id}
    tasks = {t["ID"]: t for t in await (await c.get("/v1.41/tasks")).json()}
    running, pending = tasks[t1.id], tasks[t2.id]
    assert running["Slot"] == 1 and running["NodeID"] == s.workers[0]
    assert running["Spec"]["ContainerSpec"]["Image"] == "local/busybox:1"
    assert running["Status"]["State"] == "running" and running["Status"]["Timestamp"].endswith("Z")
    assert running["DesiredState"] == "running" and running["ServiceID"] == sid
    assert "NodeID" not in pending
    one = await (await c.get(f"/v1.41/tasks/{t1.id[:8]}")).json()
    assert one["ID"] == t1.id
    r = await c.get("/v1.41/tasks", params={"filters": json.dumps({"node": ["w1"]})})
    assert [t["ID"] for t in await r.json()] == [t1.id]
    status, msg = await error_of(await c.get("/v1.41/tasks", params={"filters": '{"nope":{"a":true}}'}))
    assert (status, msg) == (400, "Invalid filter 'nope'")
    status, _ = await error_of(await c.get("/v1.41/tasks", params={"filters": '{"service":{"x":1}}'}))
    assert status == 400


async def test_up_to_date_hides_old_tasks_after_an_update(api):
    s, c = api
    sid = await create(c)
    old = add_task(s, s.store.view().get_service(sid), 1, node=s.workers[0])
    body = await inspect(c, sid)
    body["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] = "local/busybox:2"
    r = await c.post(f"/v1.41/services/{sid}/update?version={body['Version']['Index']}", json=body["Spec"])
    assert r.status == 200
    new = add_task(s, s.store.view().get_service(sid), 1, node=s.workers[1])
    raw = json.dumps({"_up-to-date": {"true": True}, "service": {sid: True}})
    got = await (await c.get("/v1.41/tasks", params={"filters": raw})).json()
    assert [t["ID"] for t in got] == [new.id]
    assert old.id in {t["ID"] for t in await (await c.get("/tasks")).json()}


async def test_lowercase_keys_are_accepted(api):
    _, c = api
    body = {"name": "low", "taskTemplate": {"containerSpec": {"image": "local/busybox:1"}},
            "mode": {"replicated": {"replicas": 2}}}
    sid = await create(c, body)
    got = await inspect(c, sid)
    assert got["Spec"]["Name"] == "low" and got["Spec"]["Mode"] == {"Replicated": {"Replicas": 2}}


async def test_a_long_task_list_is_streamed_in_slices_and_stays_valid_json(api, monkeypatch):
    """`service ps` on a huge service whose rendering takes longer than a slice of loop time:
    sent slice by slice (the event loop is handed back in between, api/chunked.py), still one
    JSON array with dockerd's headers; rendered within one slice it is one plain response."""
    import asyncio

    from swarmkit_py.api import chunked

    s, c = api
    sid = await create(c)
    svc = s.store.view().get_service(sid)
    for slot in range(1, 1201):
        add_task(s, svc, slot, state="pending")
    yields = 0
    real_sleep = asyncio.sleep

    async def counting_sleep(delay, *a, **kw):
        nonlocal yields
        if delay == 0:
            yields += 1
        return await real_sleep(delay, *a, **kw)

    monkeypatch.setattr(chunked.asyncio, "sleep", counting_sleep)
    monkeypatch.setattr(chunked, "SLICE_S", 0.0)  # every task is a slice of its own
    r = await c.get("/v1.41/tasks", params={"filters": json.dumps({"service": [sid]})})
    assert r.status == 200 and r.headers["Api-Version"]
    tasks = await r.json()
    assert sorted(t["Slot"] for t in tasks) == list(range(1, 1201))
    assert yields >= 1199 and "Content-Length" not in r.headers

    monkeypatch.setattr(chunked, "SLICE_S", 1e9)  # all within one slice: one plain response
    r = await c.get("/v1.41/tasks", params={"filters": json.dumps({"service": [sid]})})
    assert r.status == 200 and r.headers["Api-Version"]
    assert sorted(t["Slot"] for t in await r.json()) == list(range(1, 1201))
    assert int(r.headers["Content-Length"]) > 0
