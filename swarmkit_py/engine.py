"""A Docker Engine API client for the node's own engine, the one every agent's worker half
(executor, logs, network plane, node description) uses: the standard library's http.client on
the engine's unix socket (or TCP, with TLS as DOCKER_TLS_VERIFY / DOCKER_CERT_PATH say, as
`docker` reads them). It imports nothing of swarmkit-py: the worker uses it, and deploy/api.py
shares its `filters` encoding, without either importing the other.

Why not the Docker SDK, which the worker used until now: with requests, urllib3,
charset_normalizer (2.6 MB of tables) and idna it was 7.4 MB of a worker's RSS
(bench/agent_rss.py), the largest import left, for the twenty-odd endpoints below. Why not
another library: aiodocker needs aiohttp (10.6 MB, which a worker already does without: its
/metrics is plain asyncio); httpx brings httpcore, h11, anyio, certifi and idna for what
http.client does here; python-on-whales runs the docker CLI, a process per call, and a host's
engine needs no CLI. This module with http.client costs 0.5 MB in a worker that has asyncio
and ssl loaded (`bench/agent_rss.py --imports`). There is no image pull: the executor never
pulled (a task's image must be on the node; `Controller.prepare` rejects the task otherwise),
so there is no registry auth to carry over either.
No agent loads the SDK now (a manager runs the worker half too), nor does loading the task
image (`taskimage.ensure_task_image` and `load` use this client); the CLI's API-socket client,
the lab and the tests keep it. `tests/unit/test_metrics_server.py`
checks that a worker-only agent loads none of it.

What it keeps of the SDK's behaviour:
- the API version is the engine's own (GET /version once, as the SDK's "auto");
- every call has a timeout (`timeout`); a stop's is that plus its grace period, as the SDK's;
  a stream (events, logs) has it until its headers arrive and none after (a quiet container
  or a quiet node is not a dead engine);
- the engine's errors by status: 404 `NotFound`, 409 `Conflict`, any other >= 400
  `APIError` (`status_code`, `explanation`: the engine's message, as the SDK names them);
  transport failures (no socket, refused, reset, timed out, a broken HTTP answer) are
  `Unreachable`, which the executor turns into its retryable EngineUnavailable;
- chunked transfer decoding is http.client's (`HTTPResponse.read/read1/readline` decode the
  chunks); a stream can be closed from another thread: `Stream.close` shuts the socket down,
  which wakes a reader blocked in recv (closing alone does not, on Linux).

A few idle kept-alive connections are reused (`KEEP_IDLE`), each checked for a close by the
engine before it is used again; calls from many threads at once open more, closed after use.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

DEFAULT_HOST = "unix:///var/run/docker.sock"
KEEP_IDLE = 8
"""Idle connections kept for reuse (as many as the Docker call pool keeps threads)."""

_TRANSPORT = (OSError, http.client.HTTPException)


class APIError(Exception):
    """An error answer of the engine: its status and message, under the Docker SDK's
    attribute names (`status_code`, `explanation`)."""

    def __init__(self, status: int, message: str, where: str = "") -> None:
        super().__init__(f"{status} {where}: {message}" if where else f"{status}: {message}")
        self.status_code, self.explanation = status, message


class NotFound(APIError):
    """404: no such container, image, network or volume."""


class Conflict(APIError):
    """409: the name is taken, or the object is in use."""


class Unreachable(ConnectionError):
    """The engine did not answer: no socket, refused, reset, timed out, or a broken answer."""


def error_for(status: int, body: bytes, where: str = "") -> APIError:
    """The exception for an engine error answer (its JSON {"message"}, else its text)."""
    text = body.decode(errors="replace").strip()
    try:
        message = json.loads(body).get("message") or text
    except (ValueError, AttributeError):
        message = text
    cls = NotFound if status == 404 else Conflict if status == 409 else APIError
    return cls(status, message, where)


def filters_query(filters: dict[str, Any] | None) -> dict[str, str]:
    """Docker's `filters` parameter: {"label": "a=b"} -> '{"label": ["a=b"]}'."""
    if not filters:
        return {}
    out = {}
    for key, value in filters.items():
        values = value if isinstance(value, list) else [value]
        out[key] = ["true" if v is True else "false" if v is False else str(v) for v in values]
    return {"filters": json.dumps(out)}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _tls_from_env(verify: bool) -> ssl.SSLContext:
    """DOCKER_CERT_PATH's ca.pem / cert.pem / key.pem (default ~/.docker), as docker's
    `from_env`: the server is verified against ca.pem only when DOCKER_TLS_VERIFY is set."""
    certs = os.environ.get("DOCKER_CERT_PATH") or os.path.join(os.path.expanduser("~"), ".docker")
    if verify:
        ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    else:
        # This is the node's own Docker engine, not a swarm node (those are reached through
        # ca/tls.py, which always verifies the peer against the cluster CA and its role). An
        # engine on TCP with DOCKER_CERT_PATH but without DOCKER_TLS_VERIFY is, in docker's
        # own meaning of those variables, encrypted but not verified: the operator chose it.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert, key = os.path.join(certs, "cert.pem"), os.path.join(certs, "key.pem")
    if os.path.exists(cert) and os.path.exists(key):
        ctx.load_cert_chain(cert, key)
    return ctx


def connector(base_url: str | None):
    """A function of a timeout making a new connection to the engine at `base_url` (None:
    DOCKER_HOST, else the default socket), and the address as shown in errors."""
    from_env = base_url is None
    url = (os.environ.get("DOCKER_HOST") if from_env else base_url) or DEFAULT_HOST
    if url.startswith("/"):
        url = "unix://" + url
    scheme, _, rest = url.partition("://")
    if scheme == "unix":
        path = rest or DEFAULT_HOST.removeprefix("unix://")
        return (lambda timeout: _UnixConnection(path, timeout)), url
    if scheme in ("tcp", "http", "https"):
        parsed = urllib.parse.urlsplit(f"http://{rest}")
        host, port = parsed.hostname or "localhost", parsed.port
        verify = bool(os.environ.get("DOCKER_TLS_VERIFY")) if from_env else False
        tls = scheme == "https" or (from_env and (verify or bool(os.environ.get("DOCKER_CERT_PATH"))))
        if tls:
            ctx = _tls_from_env(verify or scheme == "https")
            return (lambda timeout: http.client.HTTPSConnection(
                host, port or 2376, context=ctx, timeout=timeout)), url
        return (lambda timeout: http.client.HTTPConnection(host, port or 2375,
                                                           timeout=timeout)), url
    raise ValueError(f"docker host {url!r}: use unix:///path/to/docker.sock or tcp://HOST:PORT "
                     "(ssh:// needs the docker CLI, which the worker does not use)")


class Stream:
    """A streaming answer (events, logs), read by one thread and closable from any: `close`
    shuts the socket down, which wakes a read blocked in recv, then closes the connection once
    that read has returned (each read holds the stream's lock); reads after it return b""."""

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
                 sock: socket.socket) -> None:
        """`sock`: the connection's socket as the request went out (an answer that closes the
        connection takes it from `conn`, which then holds none)."""
        self._conn, self.response, self._sock = conn, response, sock
        self._sock.settimeout(None)  # no read timeout: a stream may be quiet for hours
        self._lock = threading.Lock()

    def read(self, n: int) -> bytes:
        """Up to `n` bytes, fewer only at the end (the body, chunks decoded)."""
        with self._lock:
            return self.response.read(n)

    def read1(self, n: int) -> bytes:
        """What has arrived (at most `n` bytes), without waiting for more; b"" at the end."""
        with self._lock:
            return self.response.read1(n)

    def lines(self) -> Iterator[bytes]:
        while True:
            with self._lock:
                line = self.response.readline()
            if not line:
                return
            yield line

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed
        with self._lock:
            self.response.close()
            self._conn.close()
            self._sock.close()


class EventStream(Stream):
    """The engine's events, one JSON object a line."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for line in self.lines():
            if line.strip():
                yield json.loads(line)


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle connection the engine has closed (or sent something unasked on) is readable."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _q(ref: str) -> str:
    """A path component as the SDK quotes it (image names keep their / and :)."""
    return urllib.parse.quote(ref, safe="/:")


class Engine:
    """A client for one engine. Thread-safe: calls come from the worker's Docker call pool."""

    def __init__(self, base_url: str | None = None, timeout: float = 60,
                 version: str | None = None) -> None:
        """Raises Unreachable when the engine does not answer (its version is asked first)."""
        self._connect, self.url = connector(base_url)
        self.timeout = timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self.version = version or self._json("GET", "/version", versioned=False)["ApiVersion"]

    # -- transport ----------------------------------------------------------------------------

    def _take(self, timeout: float | None) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if _dropped(conn):
                    conn.close()
                    continue
                conn.timeout = timeout
                conn.sock.settimeout(timeout)
                return conn, True
        return self._connect(timeout), False

    def _give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < KEEP_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: Any = None, content_type: str = "application/json",
                timeout: float | None = None, stream: type[Stream] | None = None,
                versioned: bool = True) -> Any:
        """The answer's bytes (or a `stream` of it); raises APIError (or a subclass) for an
        error answer, Unreachable when there was none."""
        url = (f"/v{self.version}" if versioned else "") + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Accept": "application/json"}
        if body is not None:
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        where = f"{method} {path}"
        conn, reused = self._take(self.timeout if timeout is None else timeout)
        while True:
            try:
                conn.request(method, url, body=body, headers=headers)
                sock = conn.sock
                response = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                conn.close()
                if not reused:
                    raise Unreachable(f"docker engine at {self.url}: {where}: {exc}") from exc
                # A kept-alive connection the engine closed as we sent: it never read the
                # request. Once more on a new one.
                conn, reused = self._connect(self.timeout if timeout is None else timeout), False
            except _TRANSPORT as exc:
                conn.close()
                raise Unreachable(f"docker engine at {self.url}: {where}: {exc}") from exc
        try:
            if stream is not None and response.status < 400:
                return stream(conn, response, sock)
            data = response.read()
        except _TRANSPORT as exc:
            conn.close()
            raise Unreachable(f"docker engine at {self.url}: {where}: {exc}") from exc
        if response.will_close or stream is not None:
            conn.close()
        else:
            self._give(conn)
        if response.status >= 400:
            raise error_for(response.status, data, where)
        return data

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        data = self.request(method, path, **kw)
        return json.loads(data) if data else None

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- the engine ---------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return self._json("GET", "/info")

    def events(self, filters: dict[str, Any] | None = None) -> EventStream:
        return self.request("GET", "/events", params=filters_query(filters), stream=EventStream)

    # -- images ---------------------------------------------------------------------------------

    def inspect_image(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/images/{_q(name)}/json")

    def load_image(self, archive: bytes) -> None:
        """`docker load` of an image archive; an error the engine reports in its progress
        stream (the answer is 200 by then) is raised as APIError too."""
        data = self.request("POST", "/images/load", params={"quiet": "1"}, body=archive,
                            content_type="application/x-tar")
        for line in data.splitlines():
            message = json.loads(line) if line.strip() else {}
            if message.get("error"):
                raise APIError(500, message["error"], "POST /images/load")

    # -- containers -----------------------------------------------------------------------------

    def containers(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[dict]:
        """The engine's summaries (Id, Names, Labels, State...), not inspect documents."""
        params = {"all": "1"} if all else {}
        return self._json("GET", "/containers/json", params={**params, **filters_query(filters)})

    def create_container(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        """`config`: the engine's create body (Config, with HostConfig and NetworkingConfig)."""
        return self._json("POST", "/containers/create", params={"name": name}, body=config)

    def inspect_container(self, ref: str) -> dict[str, Any]:
        return self._json("GET", f"/containers/{_q(ref)}/json")

    def start(self, ref: str) -> None:
        self.request("POST", f"/containers/{_q(ref)}/start")

    def stop(self, ref: str, timeout: int) -> None:
        """SIGTERM (or the container's stop signal), SIGKILL after `timeout` seconds; the
        call may take that much longer than any other."""
        self.request("POST", f"/containers/{_q(ref)}/stop", params={"t": str(timeout)},
                     timeout=self.timeout + timeout)

    def remove_container(self, ref: str, force: bool = False) -> None:
        self.request("DELETE", f"/containers/{_q(ref)}", params={"force": "1" if force else "0"})

    def put_archive(self, ref: str, path: str, archive: bytes) -> None:
        self.request("PUT", f"/containers/{_q(ref)}/archive", params={"path": path},
                     body=archive, content_type="application/x-tar")

    def logs(self, ref: str, params: dict[str, Any]) -> Stream:
        """The log stream as the engine sends it (multiplexed frames without a TTY)."""
        return self.request("GET", f"/containers/{_q(ref)}/logs",
                            params={k: str(v) for k, v in params.items()}, stream=Stream)

    # -- volumes --------------------------------------------------------------------------------

    def create_volume(self, name: str, driver: str, driver_opts: dict[str, str],
                      labels: dict[str, str]) -> dict[str, Any]:
        return self._json("POST", "/volumes/create", body={
            "Name": name, "Driver": driver, "DriverOpts": driver_opts, "Labels": labels})

    def volumes(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return (self._json("GET", "/volumes", params=filters_query(filters)) or {}).get(
            "Volumes") or []

    def remove_volume(self, name: str, force: bool = False) -> None:
        self.request("DELETE", f"/volumes/{_q(name)}", params={"force": "1" if force else "0"})

    # -- networks -------------------------------------------------------------------------------

    def networks(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/networks", params=filters_query(filters))

    def create_network(self, config: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/networks/create", body=config)

    def remove_network(self, ref: str) -> None:
        self.request("DELETE", f"/networks/{_q(ref)}")

    def connect_container_to_network(self, container: str, network: str,
                                     endpoint: dict[str, Any]) -> None:
        self.request("POST", f"/networks/{_q(network)}/connect",
                     body={"Container": container, "EndpointConfig": endpoint})
