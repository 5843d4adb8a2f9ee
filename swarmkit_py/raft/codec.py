"""Compact msgpack encoding of Raft values as positional tuples.

Tuples, not maps: a heartbeat is a few bytes and an append of a batch of small entries costs
little more than the entries themselves. The layouts are versioned by the frame/record that
carries them; change a layout only together with that version.
"""

from __future__ import annotations

import msgpack

from .types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    Message,
    MsgType,
    Snapshot,
    SnapshotMeta,
    entries_from_rows,
)


def entry_to_tuple(e: Entry) -> tuple:
    return (e.term, e.index, int(e.type), e.data)


def entry_from_tuple(t) -> Entry:
    # The type stays a plain int (IntEnum compares equal to it): EntryType(x) per entry costs
    # as much as the rest of the decoding.
    return Entry(t[0], t[1], t[2], t[3])


def conf_to_tuple(c: ConfState) -> tuple:
    return (c.voters, c.learners)


def conf_from_tuple(t) -> ConfState:
    return ConfState(list(t[0]), list(t[1]))


def snapmeta_to_tuple(m: SnapshotMeta) -> tuple:
    return (m.index, m.term, conf_to_tuple(m.conf))


def snapmeta_from_tuple(t) -> SnapshotMeta:
    return SnapshotMeta(t[0], t[1], conf_from_tuple(t[2]))


def _snap_to_tuple(s: Snapshot | None):
    return None if s is None else (snapmeta_to_tuple(s.meta), s.data)


def _snap_from_tuple(t) -> Snapshot | None:
    return None if t is None else Snapshot(snapmeta_from_tuple(t[0]), t[1])


def message_to_tuple(m: Message) -> tuple:
    return (
        int(m.type),
        m.frm,
        m.to,
        m.term,
        m.log_term,
        m.index,
        [entry_to_tuple(e) for e in m.entries],
        m.commit,
        m.reject,
        m.reject_hint,
        _snap_to_tuple(m.snapshot),
        m.context,
    )


def message_from_tuple(t) -> Message:
    return Message(
        MsgType(t[0]),
        t[1],
        t[2],
        t[3],
        t[4],
        t[5],
        entries_from_rows(t[6]),  # entry_from_tuple without a Python call per entry
        t[7],
        t[8],
        t[9],
        _snap_from_tuple(t[10]),
        t[11],
    )


def encode_message(m: Message) -> bytes:
    return msgpack.packb(message_to_tuple(m), use_bin_type=True)


def decode_message(b: bytes) -> Message:
    return message_from_tuple(msgpack.unpackb(b, raw=False, use_list=True))


def encode_conf_change(c: ConfChange) -> bytes:
    return msgpack.packb((int(c.type), c.node_id, c.context), use_bin_type=True)


def decode_conf_change(b: bytes) -> ConfChange:
    t = msgpack.unpackb(b, raw=False)
    return ConfChange(ConfChangeType(t[0]), t[1], t[2])


class MessagePacker:
    """Packs messages exactly as `encode_message` does, but an append's entries only once,
    however many followers they go to: a leader sends the same new entries to every follower,
    and packing them was most of the cost of an append.

    The packed entry list is cached by (first index, last index, last term). By Raft's log
    matching property, two logs holding an entry with the same index and term are identical
    up to it, so that key names one run of entries in every log, across leaders and terms
    (appends only: other messages' entries have no index yet). A follower that asks for a
    different run (it lags, or probes) gets its run packed for it, in one call. Not
    thread-safe: one per event loop."""

    def __init__(self, max_cached: int = 64):
        self._packer = msgpack.Packer(use_bin_type=True)
        self._cache: dict[tuple[int, int, int], bytes] = {}
        self._max = max_cached

    def pack(self, m: Message) -> bytes:
        pack = self._packer.pack
        ents = m.entries
        if not ents or m.type != MsgType.APP:
            # only an append's entries are log entries with their (index, term); a forwarded
            # proposal's are all (0, 0)
            return pack(message_to_tuple(m))
        last = ents[-1]
        key = (ents[0].index, last.index, last.term)
        cache = self._cache
        packed = cache.get(key)
        if packed is None:
            if len(cache) >= self._max:
                cache.clear()  # appends mostly carry the newest entries: starting over is cheap
            packed = cache[key] = pack([(e.term, e.index, e.type, e.data) for e in ents])
        return b"".join((
            b"\x9c",  # fixarray of the 12 fields of message_to_tuple
            pack((int(m.type), m.frm, m.to, m.term, m.log_term, m.index))[1:],  # fields, no header
            packed,
            pack((m.commit, m.reject, m.reject_hint, _snap_to_tuple(m.snapshot), m.context))[1:],
        ))
