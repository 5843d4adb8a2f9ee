"""The key-value state machine: commands are msgpack (key, value) pairs."""

from __future__ import annotations

import msgpack


class KVStateMachine:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.last_index = 0

    def apply(self, index: int, data: bytes) -> int:
        key, value = msgpack.unpackb(data)  # raw=False is the default (and keyword parsing costs)
        self.data[key] = value
        self.last_index = index
        return index

    def snapshot(self) -> bytes:
        return msgpack.packb((self.last_index, self.data), use_bin_type=True)

    def restore(self, data: bytes) -> None:
        self.last_index, self.data = msgpack.unpackb(data, raw=False)


def encode_put(key: str, value: bytes) -> bytes:
    return msgpack.packb((key, value), use_bin_type=True)
