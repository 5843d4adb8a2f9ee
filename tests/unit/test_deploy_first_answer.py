"""deploy.Cluster._first_answer: a read-only command during an incident does not wait for a
powered-off manager (its connect attempt hangs until a timeout; here, until the test ends)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from swarmkit_py.deploy.cluster import Cluster


class FakeClient:
    def __init__(self, name: str) -> None:
        self.name, self.closed = name, False

    def close(self) -> None:
        self.closed = True


def cluster_with(answers: dict[str, bool], hang: threading.Event) -> Cluster:
    """Hosts named in `answers`: True answers at once, False refuses at once; any other host
    hangs (powered off) until `hang` is set."""
    cl = Cluster.__new__(Cluster)

    def attempt(h):
        if h.name not in answers:
            hang.wait(30)
            return None
        return FakeClient(h.name) if answers[h.name] else None

    cl._try = attempt
    return cl


def hosts(*names: str) -> list:
    return [SimpleNamespace(name=n) for n in names]


def test_a_powered_off_host_does_not_hold_up_the_answer():
    hang = threading.Event()
    try:
        h1, h2, h3 = hosts("h1", "h2", "h3")  # h1 is off
        cl = cluster_with({"h2": True, "h3": True}, hang)
        h, c = cl._first_answer([h1, h2, h3], prefer=None)
        assert h in (h2, h3) and c.name == h.name
        # the preferred host is answered as soon as it answers, the dead one not awaited
        h, c = cl._first_answer([h3, h1, h2], prefer=h3)
        assert h is h3
    finally:
        hang.set()


def test_the_preferred_host_wins_when_it_answers_else_another_does():
    hang = threading.Event()
    h1, h2, h3 = hosts("h1", "h2", "h3")
    cl = cluster_with({"h1": False, "h2": True, "h3": True}, hang)
    h, _ = cl._first_answer([h1, h2, h3], prefer=h1)  # h1 refuses: any live one
    assert h in (h2, h3)
    h, _ = cl._first_answer([h2, h1, h3], prefer=h2)
    assert h is h2
    assert cl_none(hang) is None


def cl_none(hang: threading.Event):
    cl = cluster_with({"h1": False}, hang)
    return cl._first_answer(hosts("h1"), prefer=None)
