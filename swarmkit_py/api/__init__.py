"""The Docker Engine API subset served by every manager (HTTP/JSON, aiohttp).

app = make_app(ControlAPI(ctx), engine_version="0.1.0", hostname="m1", authorize=check)
runner = await serve_tcp(app, "0.0.0.0", 2376, server_ssl_context)
...
await runner.cleanup()
"""

from .app import make_app
from .errors import APIError, status_and_message
from .serve import serve_tcp, serve_unix
from .versioning import API_VERSION, MIN_API_VERSION, add_route

__all__ = [
    "API_VERSION",
    "MIN_API_VERSION",
    "APIError",
    "add_route",
    "make_app",
    "serve_tcp",
    "serve_unix",
    "status_and_message",
]
