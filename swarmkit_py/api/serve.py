"""Starting and stopping listeners for an app.

Each helper returns the `web.AppRunner`; `await runner.cleanup()` stops it. With port 0 the
bound address is in `runner.addresses`. One app may be served by several listeners (the
agent serves the same app on its unix socket and on TCP); each runner stops only its own
listener (tested in tests/unit/test_api.py). Shutdown is short (`shutdown_timeout`) because the CLI
holds no long requests against this API and a stopping agent should not linger.
"""

from __future__ import annotations

import os
import ssl
import stat

from aiohttp import web

SHUTDOWN_TIMEOUT = 2.0


async def serve_tcp(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> web.AppRunner:
    """TCP listener; pass the manager's server context (client certificates required) for
    the 2376 listener. Plain TCP is for tests on 127.0.0.1 only."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def serve_unix(app: web.Application, path: str, mode: int = 0o660) -> web.AppRunner:
    """Unix-socket listener, root-only by default (0660, owned by the agent's user, root):
    like /var/run/docker.sock, file permissions are its access control. A stale socket file
    from a crashed agent is replaced; any other file at `path` is left alone and an error
    raised."""
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise FileExistsError(f"{path} exists and is not a socket; refusing to replace it")
        os.unlink(path)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        # No umask games (it is process-wide, and other threads create files): connecting
        # needs write permission on the socket, which the usual 022 umask already withholds
        # from others between bind and this chmod.
        site = web.UnixSite(runner, path)
        await site.start()
        os.chmod(path, mode)
    except BaseException:
        await runner.cleanup()
        raise
    return runner
