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


def test_the_engines_frames_keep_their_stream_and_a_tty_is_cut_into_lines():
    import io
    import struct

    from swarmkit_py.worker.logs import demux

    body = b"".join(struct.pack(">BxxxL", stream, len(data)) + data for stream, data in (
        (1, b"2026-12-02T22:50:00.1Z out\n"), (2, b"2026-12-02T22:50:00.2Z err\n"), (1, b"")))
    got = [(s, parse_line(d)[1]) for s, d in demux(io.BufferedReader(io.BytesIO(body + b"\x01")),
                                                   tty=False)]
    assert got == [(1, b"out\n"), (2, b"err\n"), (1, b"")]  # a torn header at the end: stop

    class Trickle(io.RawIOBase):  # arrives in pieces that cut lines
        def __init__(self):
            self.parts = [b"one\ntw", b"o\nthree"]

        def readinto(self, b):
            if not self.parts:
                return 0
            part = self.parts.pop(0)
            b[:len(part)] = part
            return len(part)

        def readable(self):
            return True

    assert list(demux(io.BufferedReader(Trickle()), tty=True)) == [
        (1, b"one\n"), (1, b"two\n"), (1, b"three")]


def test_a_resumed_task_starts_after_each_streams_own_last_line():
    from swarmkit_py.worker.logs import resume_marks

    assert resume_marks([20, 30]) == (20, 30)  # engine since = 20, stderr kept only after 30
    assert resume_marks([20, 0]) == (20, 20)  # no stderr line yet: resumes where stdout does
    assert resume_marks([0, 0]) is None and resume_marks(None) is None
    assert resume_marks(17) == (17, 17)  # an older manager's one mark per task
    assert resume_marks(["x", 1]) is None and resume_marks(True) is None
