"""DiskStorage's WAL: round trips, overwrites, rotation, and what survives a crash or a bad disk."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from swarmkit_py.raft.storage import DiskStorage, LoadedState, StorageFailedError, WALCorruptError
from swarmkit_py.raft.storage.records import HEADER_SIZE, scan
from swarmkit_py.raft.types import Entry, EntryType, HardState


def ents(first: int, last: int, term: int = 1, size: int = 10) -> list[Entry]:
    return [Entry(term, i, data=(b"%d:" % i).ljust(size, b"x")) for i in range(first, last + 1)]


def segments(d: Path) -> list[Path]:
    return sorted(d.glob("wal-*.log"), key=lambda p: int(p.name.split("-")[1]))


def reopen(d: Path, **kw) -> LoadedState:
    s = DiskStorage(d, **kw)
    try:
        return s.load()
    finally:
        s.close()


def record_offsets(path: Path) -> list[int]:
    recs, damage = scan(path.read_bytes())
    assert damage is None
    return [off for off, _, _ in recs]


def flip_bit(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def test_empty_directory_loads_empty_state(tmp_path):
    st = reopen(tmp_path / "new" / "raft")
    assert st == LoadedState(HardState(), None, [])
    # Loading alone writes no segment: an empty log needs none.
    assert segments(tmp_path / "new" / "raft") == []


def test_round_trip_entries_and_hard_state(tmp_path):
    batch = [
        Entry(1, 1, EntryType.NORMAL, b""),
        Entry(1, 2, EntryType.CONF_CHANGE, b"\x00\x01cc"),
        Entry(2, 3, EntryType.NORMAL, bytes(range(256)) * 40),
    ]
    with DiskStorage(tmp_path) as s:
        assert s.load() == LoadedState()
        s.save(HardState(1, 7, 0), batch[:1])
        s.save(HardState(2, 7, 2), batch[1:])
        s.save(None, [])  # nothing to do, must not fail
    st = reopen(tmp_path)
    assert st.hard_state == HardState(2, 7, 2)
    assert st.entries == batch
    assert [type(e.type) for e in st.entries] == [EntryType] * 3
    assert st.snapshot is None


def test_hard_state_only_saves_and_last_one_wins(tmp_path):
    with DiskStorage(tmp_path) as s:
        s.load()
        for term in range(1, 50):
            s.save(HardState(term, term % 3, 0), [])
    assert reopen(tmp_path) == LoadedState(HardState(49, 1, 0), None, [])


def test_save_without_load_reads_the_log_first(tmp_path):
    with DiskStorage(tmp_path) as s:
        s.save(None, ents(1, 5))
    with DiskStorage(tmp_path) as s:
        s.save(None, ents(6, 8))  # would be rejected as a gap if the log had not been read
    assert [e.index for e in reopen(tmp_path).entries] == list(range(1, 9))


def test_overwrite_of_a_suffix_replaces_it(tmp_path):
    with DiskStorage(tmp_path) as s:
        s.load()
        s.save(HardState(1, 1, 3), ents(1, 10, term=1))
        s.save(HardState(2, 2, 3), ents(6, 8, term=2))  # a new leader's conflicting tail
    st = reopen(tmp_path)
    assert [(e.index, e.term) for e in st.entries] == [(i, 1) for i in range(1, 6)] + [
        (i, 2) for i in range(6, 9)
    ]
    # ...and again after a restart, now reaching back further.
    with DiskStorage(tmp_path) as s:
        s.load()
        s.save(HardState(3, 3, 3), ents(4, 4, term=3))
        s.save(None, ents(5, 6, term=3))
    st = reopen(tmp_path)
    assert [(e.index, e.term) for e in st.entries] == [(1, 1), (2, 1), (3, 1)] + [
        (4, 3),
        (5, 3),
        (6, 3),
    ]
    assert st.hard_state == HardState(3, 3, 3)


def test_overwrite_across_segment_boundaries(tmp_path):
    with DiskStorage(tmp_path, segment_bytes=4096) as s:
        s.load()
        for i in range(1, 301, 10):
            s.save(None, ents(i, i + 9, size=100))
        assert len(segments(tmp_path)) > 5
        s.save(HardState(2, 1, 0), ents(50, 60, term=2))  # far back, several segments ago
        s.save(None, ents(61, 70, term=2))
    st = reopen(tmp_path, segment_bytes=4096)
    assert [e.index for e in st.entries] == list(range(1, 71))
    assert all(e.term == (2 if e.index >= 50 else 1) for e in st.entries)


def test_save_rejects_gaps_and_holes(tmp_path):
    with DiskStorage(tmp_path) as s:
        s.load()
        with pytest.raises(ValueError, match="gap"):
            s.save(None, ents(2, 3))
        s.save(None, ents(1, 3))
        with pytest.raises(ValueError, match="gap"):
            s.save(None, ents(5, 6))
        with pytest.raises(ValueError, match="contiguous"):
            s.save(None, [Entry(1, 4), Entry(1, 6)])
    assert [e.index for e in reopen(tmp_path).entries] == [1, 2, 3]


def test_segment_rotation(tmp_path):
    with DiskStorage(tmp_path, segment_bytes=4096) as s:
        s.load()
        for i in range(1, 1001, 5):
            s.save(HardState(1, 1, i), ents(i, i + 4, size=50))
    segs = segments(tmp_path)
    assert len(segs) > 10
    for seg in segs:
        assert seg.stat().st_size <= 4096
    # named by sequence and by the index of the first batch each holds
    firsts = [int(p.stem.split("-")[2]) for p in segs]
    assert firsts == sorted(firsts) and firsts[0] == 1
    st = reopen(tmp_path, segment_bytes=4096)
    assert [e.index for e in st.entries] == list(range(1, 1001))
    assert st.hard_state == HardState(1, 1, 996)
    assert st.entries[0] == Entry(1, 1, data=b"1:".ljust(50, b"x"))


def test_batch_larger_than_a_segment_gets_one_segment(tmp_path):
    with DiskStorage(tmp_path, segment_bytes=4096) as s:
        s.load()
        s.save(None, ents(1, 2))
        s.save(None, ents(3, 200, size=100))  # ~20 KB in one record
        s.save(None, ents(201, 201))
    assert len(segments(tmp_path)) == 3
    assert [e.index for e in reopen(tmp_path, segment_bytes=4096).entries] == list(range(1, 202))


def _build_log(d: Path) -> tuple[Path, int]:
    """A log of 3 acknowledged batches; returns the last segment and the final record's offset."""
    with DiskStorage(d) as s:
        s.load()
        s.save(HardState(1, 1, 0), ents(1, 5))
        s.save(HardState(1, 1, 5), ents(6, 10))
        s.save(HardState(2, 2, 10), ents(11, 14, term=2))
    seg = segments(d)[-1]
    return seg, record_offsets(seg)[-1]


def test_torn_tail_at_every_offset_recovers_everything_before_it(tmp_path, caplog):
    pristine = tmp_path / "pristine"
    seg, last_off = _build_log(pristine)
    size = seg.stat().st_size
    assert size - last_off > HEADER_SIZE + 20
    for cut in range(last_off, size):
        d = tmp_path / f"cut{cut}"
        shutil.copytree(pristine, d)
        os.truncate(d / seg.name, cut)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            st = reopen(d)
        assert [e.index for e in st.entries] == list(range(1, 11)), cut
        assert st.hard_state == HardState(1, 1, 5), cut
        if cut > last_off:
            assert "torn final record" in caplog.text
            assert f"byte offset {last_off}" in caplog.text
        # the tail was cut for good: the log appends cleanly after it
        assert (d / seg.name).stat().st_size == last_off
        with DiskStorage(d) as s:
            s.load()
            s.save(HardState(3, 3, 10), ents(11, 12, term=3))
        st = reopen(d)
        assert [(e.index, e.term) for e in st.entries][-3:] == [(10, 1), (11, 3), (12, 3)]
        shutil.rmtree(d)


def test_crash_between_write_and_fsync_zero_filled_tail(tmp_path, caplog):
    """A filesystem may persist the new size but not the data: the tail reads back as zeros."""
    seg, last_off = _build_log(tmp_path)
    data = bytearray(seg.read_bytes())
    for start in (last_off, last_off + 5, last_off + HEADER_SIZE + 3):
        broken = data[:start] + bytes(len(data) - start)
        seg.write_bytes(bytes(broken))
        with caplog.at_level(logging.WARNING):
            st = reopen(tmp_path)
        assert [e.index for e in st.entries] == list(range(1, 11))
        assert "torn final record" in caplog.text
        seg.write_bytes(bytes(data))


def test_crash_after_rotation_with_the_new_segment_torn(tmp_path):
    with DiskStorage(tmp_path, segment_bytes=4096) as s:
        s.load()
        i = 1
        while len(segments(tmp_path)) < 2:
            s.save(HardState(1, 1, i), ents(i, i + 9, size=40))
            i += 10
    last = segments(tmp_path)[-1]
    off = record_offsets(last)[-1]
    os.truncate(last, off + 3)
    st = reopen(tmp_path, segment_bytes=4096)
    assert st.entries[-1].index == i - 11
    assert st.hard_state == HardState(1, 1, i - 20)


def test_bit_flip_mid_segment_raises_with_path_and_offset(tmp_path):
    seg, _ = _build_log(tmp_path)
    offsets = record_offsets(seg)
    victim = offsets[1]  # the first batch, with two more records after it
    pristine = seg.read_bytes()
    for where in (victim + 2, victim + 4, victim + HEADER_SIZE + 3):  # type, length, payload
        flip_bit(seg, where, bit=3)
        with pytest.raises(WALCorruptError) as err:
            reopen(tmp_path)
        msg = str(err.value)
        assert str(seg) in msg and f"byte offset {victim}" in msg
        assert "re-join" in msg
        assert err.value.offset == victim and err.value.path == seg
        seg.write_bytes(pristine)  # nothing was truncated by the failed load
    assert [e.index for e in reopen(tmp_path).entries] == list(range(1, 15))


def test_length_bit_flip_cannot_pose_as_a_torn_tail(tmp_path):
    """A middle record whose length now runs past end-of-file must not be cut off as torn."""
    seg, _ = _build_log(tmp_path)
    victim = record_offsets(seg)[1]
    flip_bit(seg, victim + 3 + 2, bit=7)  # high byte of length: +8 MB, well past the end
    with pytest.raises(WALCorruptError, match=f"byte offset {victim}"):
        reopen(tmp_path)


def test_corruption_in_a_non_last_segment_raises_even_at_its_tail(tmp_path):
    with DiskStorage(tmp_path, segment_bytes=4096) as s:
        s.load()
        for i in range(1, 401, 10):
            s.save(None, ents(i, i + 9, size=40))
    segs = segments(tmp_path)
    assert len(segs) >= 3
    first = segs[0]
    off = record_offsets(first)[-1]
    pristine = first.read_bytes()
    flip_bit(first, len(pristine) - 1)  # last byte of its last record
    with pytest.raises(WALCorruptError, match=f"{first.name} at byte offset {off}"):
        reopen(tmp_path, segment_bytes=4096)
    first.write_bytes(pristine[:-7])  # a short non-last segment is never a torn write
    with pytest.raises(WALCorruptError, match="not the last one"):
        reopen(tmp_path, segment_bytes=4096)
    first.write_bytes(pristine)
    assert len(reopen(tmp_path, segment_bytes=4096).entries) == 400


def test_missing_middle_segment_is_corruption(tmp_path):
    with DiskStorage(tmp_path, segment_bytes=4096) as s:
        s.load()
        for i in range(1, 401, 10):
            s.save(None, ents(i, i + 9, size=40))
    segments(tmp_path)[2].unlink()
    with pytest.raises(WALCorruptError, match="missing"):
        reopen(tmp_path)


def test_failed_fsync_poisons_the_instance(tmp_path, monkeypatch):
    import swarmkit_py.raft.storage.wal as wal_mod

    with DiskStorage(tmp_path) as s:
        s.load()
        s.save(None, ents(1, 3))

        def failing(fd):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(wal_mod, "fdatasync", failing)
        with pytest.raises(OSError):
            s.save(None, ents(4, 4))
        monkeypatch.undo()
        with pytest.raises(StorageFailedError, match="restart"):
            s.save(None, ents(4, 4))
    # the write itself reached the page cache, so here it happens to survive; the point is that
    # it was never acknowledged and a restart decides.
    assert [e.index for e in reopen(tmp_path).entries][:3] == [1, 2, 3]


def test_second_instance_on_the_same_directory_is_refused(tmp_path):
    with DiskStorage(tmp_path) as s:
        s.load()
        with pytest.raises(RuntimeError, match="in use"):
            DiskStorage(tmp_path)
    DiskStorage(tmp_path).close()  # released on close


def test_a_record_cut_out_of_the_middle_is_a_gap_not_a_shorter_log(tmp_path):
    """Every remaining record is valid, yet entries are missing: replay must notice."""
    seg, _ = _build_log(tmp_path)
    offs = record_offsets(seg)
    data = seg.read_bytes()
    seg.write_bytes(data[: offs[2]] + data[offs[3] :])  # drop the batch holding 6..10
    with pytest.raises(WALCorruptError, match=f"byte offset {offs[2]}.*entry 11 follows entry 5"):
        reopen(tmp_path)
