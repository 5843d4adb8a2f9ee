"""The bytes of `docker service logs`: the engine's timestamped lines parsed on the worker,
and the multiplexed frames with the details the CLI parses into its `task@node |` prefix."""

from __future__ import annotations

from swarmkit_py.api.routes_logs import format_ts, frame
from swarmkit_py.manager.logbroker import LogMessage
from swarmkit_py.worker.logs import parse_line


def test_engine_lines_keep_nanoseconds():
    ns, data = parse_line(b"2026-12-02T22:50:00.123456789Z tick 1\n")
    assert ns == 1796251800_123456789 and data == b"tick 1\n"
    assert format_ts(ns) == "2026-12-02T22:50:00.123456789Z"
    assert parse_line(b"no timestamp here\n") == (0, b"no timestamp here\n")


def test_frames_are_one_line_with_header_details_and_timestamp():
    msg = LogMessage("t1", "n1", "s1", 1796251800_000000001, 1, b"hello")
    out = frame(msg, details=True, timestamps=True)
    assert out[:4] == b"\x01\x00\x00\x00" and int.from_bytes(out[4:8], "big") == len(out) - 8
    assert out[8:] == (b"2026-12-02T22:50:00.000000001Z com.docker.swarm.node.id=n1,"
                       b"com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t1 hello\n")
    assert frame(msg, details=False, timestamps=False)[8:] == b"hello\n"
