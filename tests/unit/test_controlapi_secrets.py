"""Secrets and configs in the control API (no HTTP): create/list/update/remove rules and
wording, references from a service spec, and delivery in the dispatcher's assignments only
to the nodes whose tasks use them."""

from __future__ import annotations

import base64

import pytest

from swarmkit_py.manager.controlapi import InvalidArgument
from swarmkit_py.manager.dispatcher.assignments import assignment_set
from swarmkit_py.proto import AssignedTask
from swarmkit_py.store import AlreadyExists, SequenceError
from tests.unit.test_controlapi_fixtures import make_swarm
from tests.unit.test_controlapi_services import add_task


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def svc_spec(secrets=(), configs=()):
    return {
        "Name": "web",
        "TaskTemplate": {"ContainerSpec": {"Image": "local/busybox:1", "Secrets": list(secrets),
                                           "Configs": list(configs)}},
        "Mode": {"Replicated": {"Replicas": 1}},
    }


def secret_ref(obj, target="pw", uid="0", gid="0", mode=0o444):
    return {"File": {"Name": target, "UID": uid, "GID": gid, "Mode": mode},
            "SecretID": obj.id, "SecretName": obj.spec.name}


async def test_secret_value_is_write_only_and_labels_alone_change():
    s = make_swarm()
    sec = await s.control.create_object("secret", {"Name": "db_pw", "Labels": {"a": "1"},
                                                   "Data": b64(b"hunter2")})
    shown = (await s.control.get_object("secret", "db_pw")).to_api()
    assert "Data" not in shown and "Data" not in shown["Spec"]
    assert shown["Spec"] == {"Name": "db_pw", "Labels": {"a": "1"}}
    assert "hunter2" not in repr(shown)
    assert s.store.view().get("secret", sec.id).data == b64(b"hunter2")  # kept, replicated
    with pytest.raises(AlreadyExists, match="secret db_pw already exists"):
        await s.control.create_object("secret", {"Name": "db_pw", "Data": b64(b"x")})
    v = s.store.view().get("secret", sec.id).version.index
    await s.control.update_object("secret", "db_pw", v, {"Name": "db_pw", "Labels": {"b": "2"}})
    assert s.store.view().get("secret", sec.id).spec.labels == {"b": "2"}
    with pytest.raises(SequenceError):
        await s.control.update_object("secret", "db_pw", v, {"Name": "db_pw", "Labels": {}})
    v = s.store.view().get("secret", sec.id).version.index
    with pytest.raises(InvalidArgument, match="only updates to Labels are allowed"):
        await s.control.update_object("secret", "db_pw", v, {"Name": "other", "Labels": {}})
    assert [o.spec.name for o in await s.control.list_objects("secret", {"label": ["b=2"]})] \
        == ["db_pw"]
    assert await s.control.list_objects("secret", {"names": ["db"]}) == []
    with pytest.raises(InvalidArgument, match="Invalid filter 'driver'"):
        await s.control.list_objects("secret", {"driver": ["x"]})


@pytest.mark.parametrize("body, message", [
    ({"Name": "-bad", "Data": b64(b"x")}, "invalid name, only 64 [a-zA-Z0-9-_.] characters"),
    ({"Name": "ok", "Data": ""}, "secret data must be larger than 0 and less than 512000 bytes"),
    ({"Name": "ok", "Data": b64(b"x" * 512000)}, "less than 512000 bytes"),
    ({"Name": "ok", "Data": "not base64!"}, "not valid base64"),
    ({"Name": "ok", "Data": b64(b"x"), "Driver": {"Name": "vault"}}, "secret drivers"),
    ({"Name": "ok", "Data": b64(b"x"), "Templating": {"Name": "golang"}}, "templated secrets"),
    ({"Name": "ok", "Data": b64(b"x"), "Bogus": 1}, "secret spec field 'bogus' is not supported"),
])
async def test_bad_secrets_are_refused_with_the_reason(body, message):
    s = make_swarm()
    with pytest.raises(InvalidArgument) as e:
        await s.control.create_object("secret", body)
    assert message in str(e.value)
    assert s.store.view().list("secret") == []


async def test_config_data_is_shown_and_the_size_limit_is_larger():
    s = make_swarm()
    await s.control.create_object("config", {"Name": "site", "Data": b64(b"x" * 600_000)})
    shown = (await s.control.get_object("config", "site")).to_api()
    assert base64.b64decode(shown["Spec"]["Data"]) == b"x" * 600_000


async def test_references_are_checked_and_in_use_objects_cannot_be_removed():
    s = make_swarm()
    sec = await s.control.create_object("secret", {"Name": "db_pw", "Data": b64(b"hunter2")})
    cfg = await s.control.create_object("config", {"Name": "site", "Data": b64(b"<h1>")})
    with pytest.raises(InvalidArgument, match="secret not found: nosuch"):
        await s.control.create_service(svc_spec(
            [{"File": {"Name": "x"}, "SecretID": "nosuch", "SecretName": "nosuch"}]))
    with pytest.raises(InvalidArgument, match="have the same target /run/secrets/pw"):
        await s.control.create_service(svc_spec([secret_ref(sec), secret_ref(sec)]))
    with pytest.raises(InvalidArgument, match="UID must be a number"):
        await s.control.create_service(svc_spec([secret_ref(sec, uid="root")]))
    with pytest.raises(InvalidArgument, match="Runtime"):
        await s.control.create_service(svc_spec(configs=[
            {"Runtime": {}, "ConfigID": cfg.id, "ConfigName": "site"}]))
    svc = await s.control.create_service(svc_spec(
        [secret_ref(sec)], [{"File": {"Name": "/www/index.html", "UID": "0", "GID": "0",
                                      "Mode": 0o444}, "ConfigID": cfg.id, "ConfigName": "site"}]))
    with pytest.raises(InvalidArgument,
                       match="secret 'db_pw' is in use by the following service: web"):
        await s.control.remove_object("secret", "db_pw")
    with pytest.raises(InvalidArgument,
                       match="config 'site' is in use by the following service: web"):
        await s.control.remove_object("config", cfg.id)
    await s.control.remove_service(svc.id)
    await s.control.remove_object("secret", "db_pw")
    assert s.store.view().list("secret") == []


async def test_assignments_carry_the_bytes_only_to_nodes_running_a_task_using_them():
    s = make_swarm()
    sec = await s.control.create_object("secret", {"Name": "db_pw", "Data": b64(b"hunter2")})
    svc = await s.control.create_service(svc_spec([secret_ref(sec, "/etc/pw", "1000", "50",
                                                               0o400)]))
    plain = await s.control.create_service({**svc_spec(), "Name": "plain"})
    w0, w1 = s.workers
    add_task(s, svc, 1, node=w0)
    add_task(s, plain, 1, node=w1)
    view = s.store.view()
    (with_secret,) = [AssignedTask.from_wire(t) for t in assignment_set(view, w0)]
    (f,) = with_secret.files
    assert (f.kind, f.name, f.path, f.uid, f.gid, f.mode, f.data) == \
        ("secret", "db_pw", "/etc/pw", 1000, 50, 0o400, b"hunter2")
    other = assignment_set(view, w1)
    assert other[0]["files"] == [] and b"hunter2" not in repr(other).encode()
    # a task that ended leaves the set, and with it the secret
    add_task(s, svc, 2, node=w1, state="complete", desired="shutdown")
    assert all(not t["files"] for t in assignment_set(s.store.view(), w1))


async def test_update_with_the_same_data_is_no_change_other_data_is_refused():
    s = make_swarm()
    sec = await s.control.create_object("secret", {"Name": "db_pw", "Data": b64(b"hunter2")})
    v = s.store.view().get("secret", sec.id).version.index
    await s.control.update_object("secret", sec.id, v, {"Name": "db_pw", "Data": b64(b"hunter2"),
                                                        "Labels": {"x": "y"}})
    assert s.store.view().get("secret", sec.id).spec.labels == {"x": "y"}
    v = s.store.view().get("secret", sec.id).version.index
    with pytest.raises(InvalidArgument, match="secret data differs"):
        await s.control.update_object("secret", sec.id, v, {"Name": "db_pw",
                                                            "Data": b64(b"other")})
