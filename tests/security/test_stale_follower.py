"""Hole 6: an update sent to a lagging follower committed that follower's stale copy (issue 9).

The version check was right (the client sends the version it read, the leader compares it
with its own), but what the client does not send (PreviousSpec, UpdateStatus) came from the
follower's copy. Scenario, with a 3-manager cluster of real agents and the Docker API over TLS:

1. service `s` is created with env V=A (replicas 0: no containers, the spec is the point);
2. follower m3 is paused (SIGSTOP, our own process) with a keep-alive API connection open;
3. through the leader, `s` is updated to V=B (m1 and m2 commit it; m3 has not seen it);
4. the client reads `s` from the leader (version of V=B) and sends an update to V=C to m3,
   whose bytes wait in m3's socket; m3 resumes (SIGCONT) with that request and the leader's
   appends arriving together.
The committed service must have Spec V=C and PreviousSpec V=B (a rollback goes back to B).
Before the fix, m3 built the update from its copy (V=A) and PreviousSpec said V=A.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from .attack import found

pytestmark = pytest.mark.slow


def test_update_through_a_lagging_follower_is_built_from_current_state(cluster):
    c = cluster
    (m1, m2, m3), _ = found(c, managers=3)
    c.docker(m1, "service", "create", "--detach", "--no-resolve-image", "--name", "s", "--replicas", "0",
             "--env", "V=A", "busybox", "sleep", "1d")
    c.wait_for(lambda: "V=A" in c.docker(m3, "service", "inspect", "s", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Env}}").stdout,
               20, "m3 sees the service")
    leader_api = c.sdk(m1).api
    follower_api = c.sdk(m3).api
    follower_api.inspect_service("s")  # opens the keep-alive TLS connection to m3

    os.kill(m3.proc.pid, signal.SIGSTOP)
    outcome: dict = {}
    try:
        c.docker(m1, "service", "update", "--detach", "--env-add", "V=B", "s")
        current = leader_api.inspect_service("s")
        spec = current["Spec"]
        spec["TaskTemplate"]["ContainerSpec"]["Env"] = ["V=C"]

        def update():
            try:
                url = follower_api._url("/services/{0}/update", "s")
                outcome["answer"] = follower_api._result(
                    follower_api._post_json(url, data=spec, params={"version": current["Version"]["Index"]}), True)
            except Exception as e:  # reported below
                outcome["error"] = e

        t = threading.Thread(target=update, daemon=True)
        t.start()
        time.sleep(0.5)  # the request is in m3's socket
    finally:
        os.kill(m3.proc.pid, signal.SIGCONT)
    t.join(30)
    assert "error" not in outcome, f"the update through m3 failed: {outcome.get('error')}"
    after = leader_api.inspect_service("s")
    assert after["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"] == ["V=C"]
    previous = after.get("PreviousSpec", {}).get("TaskTemplate", {}).get("ContainerSpec", {}).get("Env")
    assert previous == ["V=B"], (
        f"PreviousSpec has Env {previous}: the lagging follower built the update from its stale copy "
        "(a rollback would go to the wrong spec)")
