"""The worker's engine client (swarmkit_py/engine.py) on the wire: chunked answers cut anywhere
(log frames, event lines), error answers by status, an engine that closes kept-alive
connections, one that never answers, and one that is not there. The engine here is a scripted
HTTP/1.1 server on a unix socket, so every byte boundary is chosen; the same calls against the
real engine are in tests/integration/test_engine_client.py."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

import pytest

from swarmkit_py.engine import APIError, Conflict, Engine, NotFound, Unreachable
from swarmkit_py.worker.logs import demux, parse_line


class ScriptedEngine:
    """Answers each request with `answer(method, path)`: a list of byte pieces sent one by
    one (so a test decides where the reads are cut), or None to never answer. Closes the
    connection after each answer when `close_after` is set, as an engine dropping an idle
    kept-alive connection would."""

    def __init__(self, path: str, answer, close_after: bool = False,
                 hang_up_after: int = 0) -> None:
        """`hang_up_after` N: a connection's request after N answered ones is read and the
        connection closed without an answer (a kept-alive connection the engine dropped as
        the request went out)."""
        self.answer, self.close_after, self.hang_up_after = answer, close_after, hang_up_after
        self.requests: list[tuple[str, str]] = []
        self.connections = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.url = f"unix://{path}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        buf = b""
        answered = 0
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                length = next((int(h.split(":")[1]) for h in lines[1:]
                               if h.lower().startswith("content-length:")), 0)
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                method, path, _ = lines[0].split(" ", 2)
                self.requests.append((method, path))
                if self.hang_up_after and answered == self.hang_up_after:
                    return
                answered += 1
                pieces = self.answer(method, path)
                if pieces is None:
                    time.sleep(30)
                    return
                for piece in pieces:
                    conn.sendall(piece)
                    time.sleep(0.005)  # each piece its own read on the client's side
                if self.close_after:
                    return

    def close(self) -> None:
        self.sock.close()


def chunked(status: str, *chunks: bytes, ctype: str = "application/json") -> list[bytes]:
    """An HTTP/1.1 answer with a chunked body, each chunk sent as its own piece (a chunk
    extension on the first, as RFC 9112 allows)."""
    out = [f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n\r\n"
           .encode()]
    for i, c in enumerate(chunks):
        ext = ";x=1" if i == 0 else ""
        out.append(f"{len(c):x}{ext}\r\n".encode() + c + b"\r\n")
    out.append(b"0\r\n\r\n")
    return out


def plain(status: str, body: bytes) -> list[bytes]:
    return [f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: "
            f"{len(body)}\r\n\r\n".encode() + body]


VERSION = plain("200 OK", b'{"ApiVersion": "1.41"}')


@pytest.fixture
def engine_at(tmp_path):
    made = []

    def make(answer, **kw):
        srv = ScriptedEngine(str(tmp_path / f"e{len(made)}.sock"), answer, **kw)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.close()


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def test_log_frames_survive_chunks_cut_anywhere(engine_at):
    body = (frame(1, b"2026-12-02T22:50:00.000000001Z out 1\n")
            + frame(2, b"2026-12-02T22:50:00.000000002Z err 1\n")
            + frame(1, b"2026-12-02T22:50:00.000000003Z " + b"x" * 70000 + b"\n"))
    # chunks that cut a header in two, a header from its data, and one frame over 3 chunks
    cuts = [3, 8, 40, 47, 60, 100, 30000, len(body)]
    pieces = [body[a:b] for a, b in zip([0, *cuts], cuts, strict=False)]

    def answer(method, path):
        return VERSION if path == "/version" else chunked(
            "200 OK", *pieces, ctype="application/vnd.docker.raw-stream")

    engine = Engine(engine_at(answer).url, timeout=5)
    stream = engine.logs("c1", {"follow": 1, "timestamps": 1})
    got = [(s, parse_line(d)) for s, d in demux(stream, tty=False)]
    assert [(s, ns, d[:10]) for s, (ns, d) in got] == [
        (1, 1796251800_000000001, b"out 1\n"), (2, 1796251800_000000002, b"err 1\n"),
        (1, 1796251800_000000003, b"x" * 10)]
    assert len(got[2][1][1]) == 70001
    stream.close()


def test_events_are_read_a_line_at_a_time_across_chunks(engine_at):
    events = [{"Action": "die", "Actor": {"ID": f"c{i}", "Attributes": {"exitCode": str(i)}}}
              for i in range(3)]
    raw = b"".join(json.dumps(e).encode() + b"\n" for e in events)

    def answer(method, path):
        if path == "/version":
            return VERSION
        assert path.startswith("/v1.41/events?filters=")
        # the first event arrives in two chunks; then the stream stays open and quiet
        return chunked("200 OK", raw[:10], raw[10:40], raw[40:])[:-1]

    engine = Engine(engine_at(answer).url, timeout=0.3)
    stream = engine.events({"type": "container", "event": ["die"], "label": ["a"]})
    it = iter(stream)
    assert [next(it) for _ in range(3)] == events
    # quiet for longer than the call timeout (a stream has no read timeout) until closed
    # from another thread, as ExitWatch.close does: the blocked reader wakes
    threading.Timer(1.0, stream.close).start()
    t0 = time.monotonic()
    try:
        rest = list(it)
    except Exception:  # noqa: BLE001 - woken by the close: what it raises does not matter
        rest = []
    assert rest == [] and 0.9 <= time.monotonic() - t0 < 5


def test_a_stream_that_closes_its_connection_is_read_to_its_end(engine_at):
    events = [{"Action": "destroy", "Actor": {"ID": f"c{i}"}} for i in range(2)]
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
    body = [json.dumps(e).encode() + b"\n" for e in events]
    srv = engine_at(lambda m, p: VERSION if p == "/version" else [head, *body], close_after=True)
    stream = Engine(srv.url, timeout=5).events()
    assert list(stream) == events  # no chunks, no length: the body ends where the connection does
    stream.close()


def test_error_answers_map_to_their_exceptions(engine_at):
    answers = {
        "/v1.41/containers/nope/json": plain("404 Not Found",
                                             b'{"message": "No such container: nope"}'),
        "/v1.41/containers/create?name=web": plain("409 Conflict",
                                                   b'{"message": "name is in use"}'),
        "/v1.41/containers/c1/stop?t=3": chunked("500 Internal Server Error",
                                                 b'{"message": "can', b'not stop"}'),
        "/v1.41/images/load?quiet=1": chunked("200 OK", b'{"stream": "Loaded"}\n',
                                              b'{"error": "bad archive"}\n'),
        "/v1.41/networks/x": plain("403 Forbidden", b"not json"),
    }
    engine = Engine(engine_at(lambda m, p: VERSION if p == "/version" else answers[p]).url,
                    timeout=5)
    with pytest.raises(NotFound) as e:
        engine.inspect_container("nope")
    assert (e.value.status_code, e.value.explanation) == (404, "No such container: nope")
    with pytest.raises(Conflict) as e:
        engine.create_container("web", {"Image": "img"})
    assert e.value.status_code == 409
    with pytest.raises(APIError) as e:
        engine.stop("c1", 3)
    assert (type(e.value), e.value.status_code, e.value.explanation) == \
        (APIError, 500, "cannot stop")
    with pytest.raises(APIError, match="bad archive"):
        engine.load_image(b"tar")
    with pytest.raises(APIError) as e:
        engine.remove_network("x")
    assert (e.value.status_code, e.value.explanation) == (403, "not json")


def test_connections_are_kept_and_a_dropped_one_is_replaced(engine_at):
    info = plain("200 OK", b'{"ID": "x"}')
    kept = engine_at(lambda m, p: VERSION if p == "/version" else info)
    engine = Engine(kept.url, timeout=5)
    for _ in range(5):
        assert engine.info() == {"ID": "x"}
    assert kept.connections == 1
    dropping = engine_at(lambda m, p: VERSION if p == "/version" else info, close_after=True)
    engine = Engine(dropping.url, timeout=5)
    for _ in range(5):
        assert engine.info() == {"ID": "x"}
    assert dropping.connections == 6
    hanging_up = engine_at(lambda m, p: VERSION if p == "/version" else info, hang_up_after=1)
    engine = Engine(hanging_up.url, timeout=5)
    for _ in range(5):  # each reuse meets a hang-up: sent again once, on a new connection
        assert engine.info() == {"ID": "x"}
    assert hanging_up.connections == 6


def test_no_engine_and_a_hung_one_are_unreachable(engine_at, tmp_path):
    with pytest.raises(Unreachable):
        Engine(f"unix://{tmp_path}/none.sock", timeout=1)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(Unreachable, match="refused"):
        Engine(f"tcp://127.0.0.1:{port}", timeout=1)
    hung = engine_at(lambda m, p: VERSION if p == "/version" else None)
    engine = Engine(hung.url, timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(Unreachable, match="timed out"):
        engine.info()
    assert time.monotonic() - t0 < 5
    with pytest.raises(ValueError, match="unix:///path/to/docker.sock or tcp://HOST:PORT"):
        Engine("ssh://user@host")
