"""The Raft transport packs each entry once for all followers: same bytes as encode_message."""

from __future__ import annotations

from swarmkit_py.raft.codec import MessagePacker, decode_message, encode_message
from swarmkit_py.raft.types import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MsgType,
    Snapshot,
    SnapshotMeta,
)


def test_packer_writes_exactly_what_encode_message_writes():
    packer = MessagePacker(max_cached=3)
    ents = [Entry(3, 11 + i, EntryType.NORMAL, b"x" * i) for i in range(5)] + [Entry(3, 16, EntryType.CONF_CHANGE, b"cc")]
    msgs = [
        Message(MsgType.APP, 1, 2, term=3, log_term=2, index=10, entries=ents, commit=9, context=b"c"),
        Message(MsgType.APP, 1, 3, term=3, log_term=2, index=10, entries=ents, commit=2**40, reject_hint=70_000),
        Message(MsgType.HEARTBEAT, 1, 2, term=3, commit=5, context=b"read-1"),
        Message(MsgType.SNAP, 1, 2, term=3, snapshot=Snapshot(SnapshotMeta(9, 2, ConfState([1, 2], [3])), b"s")),
        Message(MsgType.PROP, 2, 1, entries=[Entry(0, 0, EntryType.NORMAL, b"w")]),
    ]
    for _ in range(2):  # the second round is served from the cache (and past its size limit)
        for m in msgs:
            assert packer.pack(m) == encode_message(m)
            assert decode_message(packer.pack(m)) == m


def test_entries_are_packed_once_for_every_follower():
    packer = MessagePacker()
    ents = [Entry(5, i, EntryType.NORMAL, b"v%d" % i) for i in range(1, 101)]
    packer.pack(Message(MsgType.APP, 1, 2, term=5, index=0, entries=ents))
    cached = dict(packer._cache)
    assert len(cached) == 1
    m3 = Message(MsgType.APP, 1, 3, term=5, index=0, entries=list(ents))  # the same run, another list
    assert packer.pack(m3) == encode_message(m3)
    assert all(packer._cache[k] is v for k, v in cached.items()), "re-packed for the second follower"
    # a lagging follower's longer run, and a run ending in another term, are packed for them
    lag = Message(MsgType.APP, 1, 4, term=6, index=0, entries=[Entry(4, 0, EntryType.NORMAL, b"old")] + ents)
    other = Message(MsgType.APP, 1, 4, term=6, index=0, entries=ents[:-1] + [Entry(6, 100, EntryType.NORMAL, b"new")])
    for m in (lag, other):
        assert decode_message(packer.pack(m)) == m


def test_forwarded_proposals_are_never_served_from_the_cache():
    """A follower forwards proposals as PROP messages whose entries have no index or term yet
    (all (0, 0)): caching them by (index, term) sent the first proposal's bytes for every later
    one (found by the SIGKILL process test: writes through a follower never completed)."""
    packer = MessagePacker()
    for data in (b"first", b"second", b"third"):
        m = Message(MsgType.PROP, 2, 1, entries=[Entry(0, 0, EntryType.NORMAL, data)])
        assert decode_message(packer.pack(m)).entries[0].data == data
