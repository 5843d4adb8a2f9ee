"""DiskStorage snapshots: atomic files, compaction, restart, and the damaged-snapshot paths."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from swarmkit_py.raft.storage import DiskStorage, SnapshotCorruptError, WALCorruptError
from swarmkit_py.raft.storage.snapshots import SnapshotStore
from swarmkit_py.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta

SEG = 4096


def ents(first: int, last: int, term: int = 1, size: int = 40) -> list[Entry]:
    return [Entry(term, i, data=(b"%d:" % i).ljust(size, b"x")) for i in range(first, last + 1)]


def snap(index: int, term: int = 1, data: bytes | None = None) -> Snapshot:
    return Snapshot(
        SnapshotMeta(index, term, ConfState([1, 2, 3], [4])),
        data if data is not None else b"state@%d" % index,
    )


def segments(d: Path) -> list[Path]:
    return sorted(d.glob("wal-*.log"), key=lambda p: int(p.name.split("-")[1]))


def snap_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob("snap-*.snap"))


def reopen(d: Path):
    with DiskStorage(d, segment_bytes=SEG) as s:
        return s.load()


def fill(s: DiskStorage, first: int, last: int, step: int = 10, term: int = 1) -> None:
    for i in range(first, last + 1, step):
        s.save(HardState(term, 1, i - 1), ents(i, min(i + step - 1, last), term=term))


def test_snapshot_compaction_and_restart(tmp_path):
    with DiskStorage(tmp_path, segment_bytes=SEG) as s:
        s.load()
        fill(s, 1, 400)
        before = segments(tmp_path)
        s.save_snapshot(snap(200))
        s.compact(200)
        after = segments(tmp_path)
        assert len(after) < len(before) and after[-1] == before[-1]
    st = reopen(tmp_path)
    assert st.snapshot == snap(200)
    assert [e.index for e in st.entries] == list(range(201, 401))
    assert st.hard_state == HardState(1, 1, 390)
    # The log keeps working after the restart, on top of the compacted segments.
    with DiskStorage(tmp_path, segment_bytes=SEG) as s:
        s.load()
        fill(s, 401, 450)
    st = reopen(tmp_path)
    assert [e.index for e in st.entries] == list(range(201, 451))


def test_keeps_two_snapshots_and_compacts_only_to_the_older(tmp_path):
    with DiskStorage(tmp_path, segment_bytes=SEG) as s:
        s.load()
        fill(s, 1, 600)
        s.save_snapshot(snap(200))
        s.save_snapshot(snap(300))
        s.compact(300)  # clamped to 200: snapshot 200 must stay usable as the fallback
        assert snap_files(tmp_path) == ["snap-0000000000000200.snap", "snap-0000000000000300.snap"]
        s.save_snapshot(snap(400))
        assert snap_files(tmp_path) == ["snap-0000000000000300.snap", "snap-0000000000000400.snap"]
        s.compact(400)
    # every remaining segment is still needed from snapshot 300 on
    st = reopen(tmp_path)
    assert st.snapshot == snap(400)
    assert [e.index for e in st.entries] == list(range(401, 601))


def test_snapshot_received_past_the_end_of_the_log(tmp_path):
    """A lagging follower is sent a snapshot far ahead of its log; the log resumes after it."""
    with DiskStorage(tmp_path, segment_bytes=SEG) as s:
        s.load()
        fill(s, 1, 10)
        s.save_snapshot(snap(1000, term=4))
        s.save(HardState(4, 2, 1000), [])
    st = reopen(tmp_path)
    assert (st.snapshot, st.entries, st.hard_state) == (snap(1000, 4), [], HardState(4, 2, 1000))
    with DiskStorage(tmp_path, segment_bytes=SEG) as s:
        s.load()
        with pytest.raises(ValueError, match="covered by snapshot"):
            s.save(None, ents(1000, 1000, term=4))
        s.save(None, ents(1001, 1005, term=4))
    st = reopen(tmp_path)
    assert [e.index for e in st.entries] == list(range(1001, 1006))


def test_divergent_log_is_dropped_but_a_matching_one_kept(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        with DiskStorage(d, segment_bytes=SEG) as s:
            s.load()
            fill(s, 1, 20, term=1)
    with DiskStorage(a, segment_bytes=SEG) as s:
        s.load()
        s.save_snapshot(snap(15, term=3))  # the leader's entry 15 has term 3: ours diverge
    with DiskStorage(b, segment_bytes=SEG) as s:
        s.load()
        s.save_snapshot(snap(15, term=1))  # a local snapshot: the suffix is ours and stays
    assert reopen(a).entries == []
    assert [e.index for e in reopen(b).entries] == list(range(16, 21))


@pytest.mark.parametrize("snap_index,snap_term", [(50, 2), (15, 3)])
def test_crash_between_snapshot_file_and_log_marker(tmp_path, snap_index, snap_term):
    with DiskStorage(tmp_path, segment_bytes=SEG) as s:
        s.load()
        fill(s, 1, 20)
    # The snapshot file is durable, the log never heard of it.
    SnapshotStore(tmp_path, logging.getLogger("t")).write(snap(snap_index, snap_term))
    with DiskStorage(tmp_path, segment_bytes=SEG) as s:
        st = s.load()
        assert st.snapshot == snap(snap_index, snap_term) and st.entries == []
        s.save(None, ents(snap_index + 1, snap_index + 3, term=snap_term))
    st = reopen(tmp_path)
    assert [e.index for e in st.entries] == list(range(snap_index + 1, snap_index + 4))


def test_hard_state_survives_rotation_and_compaction(tmp_path):
    with DiskStorage(tmp_path, segment_bytes=SEG) as s:
        s.load()
        s.save(HardState(7, 3, 0), ents(1, 1))
        for i in range(2, 500, 10):  # no hard state in any of these
            s.save(None, ents(i, i + 9))
        s.save_snapshot(snap(400))
        s.compact(400)
        assert segments(tmp_path)[0].name != "wal-00000001-0000000000000001.log"
    st = reopen(tmp_path)
    assert st.hard_state == HardState(7, 3, 0)
    assert [e.index for e in st.entries] == list(range(401, 502))


def test_corrupt_only_snapshot_is_reported_with_path_and_offset(tmp_path):
    with DiskStorage(tmp_path, segment_bytes=SEG) as s:
        s.load()
        fill(s, 1, 50)
        s.save_snapshot(snap(40, data=b"x" * 1000))
    path = tmp_path / "snap-0000000000000040.snap"
    data = bytearray(path.read_bytes())
    data[500] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotCorruptError) as err:
        reopen(tmp_path)
    assert str(path) in str(err.value) and "byte offset" in str(err.value)
    assert isinstance(err.value, WALCorruptError)
    path.write_bytes(bytes(data[:-1]))  # truncated
    with pytest.raises(SnapshotCorruptError, match="payload bytes"):
        reopen(tmp_path)


def test_corrupt_newest_snapshot_falls_back_to_the_older_one(tmp_path, caplog):
    with DiskStorage(tmp_path, segment_bytes=SEG) as s:
        s.load()
        fill(s, 1, 300)
        s.save_snapshot(snap(100))
        s.save_snapshot(snap(200))
        s.compact(200)
    newest = tmp_path / "snap-0000000000000200.snap"
    data = bytearray(newest.read_bytes())
    data[-1] ^= 1
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        st = reopen(tmp_path)
    assert st.snapshot == snap(100)
    assert [e.index for e in st.entries] == list(range(101, 301))
    assert str(newest) in caplog.text
    assert not newest.exists() and newest.with_name(newest.name + ".corrupt").exists()


def test_corrupt_newest_snapshot_without_a_bridging_log_is_an_error(tmp_path):
    with DiskStorage(tmp_path, segment_bytes=SEG) as s:
        s.load()
        fill(s, 1, 30)
        s.save_snapshot(snap(20))
        s.save_snapshot(snap(500, term=2))  # received from a leader: no entries 21..500 here
        s.save(None, ents(501, 510, term=2))
    newest = tmp_path / "snap-0000000000000500.snap"
    newest.write_bytes(newest.read_bytes()[:10])
    with pytest.raises(SnapshotCorruptError, match="older snapshot cannot stand in"):
        reopen(tmp_path)
    assert newest.exists()  # a failed load moves nothing


def test_missing_snapshot_for_a_compacted_log_is_an_error(tmp_path):
    with DiskStorage(tmp_path, segment_bytes=SEG) as s:
        s.load()
        fill(s, 1, 400)
        s.save_snapshot(snap(300))
        s.compact(300)
    (tmp_path / "snap-0000000000000300.snap").unlink()
    with pytest.raises(WALCorruptError, match="are missing"):
        reopen(tmp_path)


def test_snapshot_api_misuse_and_leftovers(tmp_path):
    (tmp_path / "snap-0000000000000009.snap.tmp").write_bytes(b"half")
    (tmp_path / "wal-00000009-0000000000000009.log.tmp").write_bytes(b"half")
    with DiskStorage(tmp_path) as s:
        s.load()
        assert not list(tmp_path.glob("*.tmp"))
        s.save(None, ents(1, 10))
        s.save_snapshot(snap(8))
        with pytest.raises(ValueError, match="older"):
            s.save_snapshot(snap(5))
        with pytest.raises(ValueError, match="covered"):
            s.save(None, ents(8, 9))
        s.compact(8)  # one segment: the open one is never dropped
    st = reopen(tmp_path)
    assert st.snapshot == snap(8) and [e.index for e in st.entries] == [9, 10]
