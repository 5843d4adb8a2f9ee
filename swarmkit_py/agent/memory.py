"""How the agent process asks glibc's allocator to hold less memory it no longer uses.

glibc gives each thread that allocates while another one holds the lock an arena of its own
(up to 8 per core), and memory freed in an arena stays in that arena for its threads. A
worker's engine calls run in threads (a running task's `docker wait` holds one:
worker/executor/docker_adapter.py), each reading HTTP responses into buffers of kilobytes
that Python takes from `malloc`, not from its own small-object allocator. Measured with
bench/agent_rss.py: 50 tasks on a worker cost 5.3 MB of anonymous memory, mostly those arenas;
a script with 50 such threads shows +5.6 MB with the default arenas, +1.4 MB with two. The
threads spend their lives blocked on a socket with the GIL released, so two arenas cost them
no measurable contention.

`MALLOC_ARENA_MAX` in the environment does the same before the process starts, and wins: an
operator's explicit setting is left alone. Other C libraries (musl) have no arenas to cap:
then this does nothing.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("swarmkit_py.agent")

M_ARENA_MAX = -8
"""glibc's `mallopt` parameter number (malloc.h)."""

ARENAS = 2


def cap_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas for the threads this process starts from now on; returns
    whether it did (False: the environment says otherwise, or not glibc)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    done = bool(mallopt(M_ARENA_MAX, arenas))
    if not done:
        log.debug("mallopt(M_ARENA_MAX, %d) refused", arenas)
    return done
