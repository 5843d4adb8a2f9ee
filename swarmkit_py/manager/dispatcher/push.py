"""What the dispatcher's pushers share: follow the store, push after each burst of changes.

The assignment pusher (a node's task set) and the network-map pusher (every node's view of
the overlay networks) both watch some kinds of objects and, when they change, send connected
nodes what they should now know. Each has two `Background` jobs: a watch that only marks what
changed and wakes the sender, and one sender that debounces a burst (a batch of scheduler
transactions is one push, not fifty) and then pushes. One sender per pusher means two pushes
to the same node never overtake each other.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ...background import Background
from ...rpc.framing import NOTIFY, pack_frame
from ...store import Event
from ...store.follow import StoreFollower

log = logging.getLogger(__name__)

PUSH_CHUNK = 32
"""Sessions pushed to per loop turn."""


class StorePusher:
    """Subclasses set `name` and `kinds` and implement `_flush()`; they may override
    `_resync()` (everything may have changed), `_on_event(event)`, `_urgent()` (skip the
    debounce, e.g. a session just opened) and `_reset()` (forget what was sent).

    ``dispatcher`` supplies ``proposer.store`` and ``push(node_id, method, params)``."""

    name = "push"
    kinds: tuple[str, ...] = ()

    def __init__(self, dispatcher: Any, *, debounce: float) -> None:
        self._dispatcher = dispatcher
        self.debounce = debounce
        self._wake = asyncio.Event()
        self.pushes = 0
        """Messages sent (for tests and metrics)."""
        follower = StoreFollower(dispatcher.proposer.store, self.kinds, name=f"dispatcher {self.name}")
        self._watch = Background(
            f"dispatcher-{self.name}-watch", lambda: follower.follow(self._resync, self._on_event)
        )
        self._sender = Background(f"dispatcher-{self.name}-push", self._send_loop)

    @property
    def running(self) -> bool:
        return self._watch.running

    def start(self) -> None:
        if self.running:
            return
        self._reset()
        self._watch.start()
        self._sender.start()

    async def stop(self) -> None:
        await self._watch.stop()
        await self._sender.stop()
        self._reset()

    # -- hooks ------------------------------------------------------------------------------

    def _resync(self) -> None:
        self._wake.set()

    def _on_event(self, event: Event) -> None:
        self._wake.set()

    def _urgent(self) -> bool:
        return False

    def _reset(self) -> None:
        pass

    async def _flush(self) -> None:
        raise NotImplementedError

    # -- the sender ---------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._urgent():
                await asyncio.sleep(self.debounce)  # let the rest of a burst arrive first
                self._wake.clear()
            try:
                await self._flush()
            except Exception:
                log.exception("dispatcher %s: pushing failed; trying again on the next change", self.name)

    async def _push(self, method: str, sends: list[tuple[str, bytes, Any]], sent: dict[str, bytes]) -> None:
        """Send each (node_id, digest, params); `sent[node_id]` records the digest a node has,
        and is dropped when the push failed (no session any more: the next session_opened
        sends it again)."""
        # In chunks: each push encodes and encrypts its message on the loop, and a network map
        # for 850 nodes pushed to 850 sessions in one gather held a manager's loop for 0.5 s
        # per change (issue 13); a chunk's drains let the loop turn in between.
        # A message pushed to every session alike (the network map: ~100 KB at 2,000 nodes)
        # is encoded once, not once per session.
        frames: dict[int, bytes] = {}

        def frame_of(params: Any) -> bytes:
            frame = frames.get(id(params))  # the params objects live in `sends` meanwhile
            if frame is None:
                frame = frames[id(params)] = pack_frame((NOTIFY, method, params))
            return frame

        results: list = []
        for i in range(0, len(sends), PUSH_CHUNK):
            results += await asyncio.gather(
                *(self._dispatcher.push(n, method, params, frame=frame_of(params))
                  for n, _, params in sends[i:i + PUSH_CHUNK]),
                return_exceptions=True,
            )
        for (node_id, digest, _), ok in zip(sends, results, strict=True):
            if ok is True:
                sent[node_id] = digest
                self.pushes += 1
            else:
                sent.pop(node_id, None)
                if isinstance(ok, BaseException):
                    log.warning("dispatcher %s: pushing to %s failed: %s", self.name, node_id, ok)


__all__ = ["StorePusher"]
