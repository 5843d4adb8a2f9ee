"""How an agent asks glibc's allocator to keep less of the memory it no longer uses.

Python takes objects above 512 bytes (HTTP response buffers, JSON documents, TLS records) from
`malloc`, and glibc keeps what is freed for reuse instead of returning it. Two places where
that is a worker's RSS for nothing (measured with bench/agent_rss.py):

- Arenas: glibc gives a thread that allocates while another holds the lock an arena of its own
  (up to 8 per core), and what is freed in an arena stays there. A worker starting 50 tasks
  calls the engine from up to 50 threads at once (worker/executor/docker_adapter.py); a script
  with 50 such threads holds +5.6 MB with the default arenas and +1.4 MB with two. The agent
  caps them at two (`cap_malloc_arenas`) before any thread starts: its threads spend their
  lives blocked on sockets with the GIL released, so two arenas cost them no contention.
  `MALLOC_ARENA_MAX` in the environment does the same before the process starts, and wins.
- Free pages: after start-up (imports, TLS contexts, the first engine answers) and after a
  burst of engine calls, `malloc_trim` hands the free pages inside the heap back to the system
  (`trim_heap`): it costs a walk of the free lists, a few milliseconds, only at those moments.

Other C libraries (musl) have neither: then both do nothing.
"""

from __future__ import annotations

import os

M_ARENA_MAX = -8
"""glibc's `mallopt` parameter number (malloc.h)."""

ARENAS = 2

_libc = None


def _glibc():
    global _libc
    if _libc is None:
        import ctypes

        try:
            lib = ctypes.CDLL("libc.so.6")
            _libc = lib if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") else False
        except OSError:
            _libc = False
    return _libc or None


def cap_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas for the threads this process starts from now on; returns
    whether it did (False: the environment says otherwise, or not glibc)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas))


def trim_heap() -> bool:
    """Return the free pages of glibc's heap to the system; whether any were."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))
