"""Fixtures of the lab tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def lab_name():
    """`lab_name(kind)`: the name for a test's lab. $SWARMKIT_TEST_LAB wins (engineers sharing
    one machine are each given lab names of their own); else one per process and kind."""

    def name(kind: str) -> str:
        return os.environ.get("SWARMKIT_TEST_LAB") or f"t-{kind}-{os.getpid() % 10000}"

    return name
