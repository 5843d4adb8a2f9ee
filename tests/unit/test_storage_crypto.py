"""Encryption at rest of DiskStorage: sealed WAL and snapshots, key wrapping, autolock, migration
of a plaintext directory, data-key rotation, and the WAL's torn-tail/corruption rules on sealed
records. Every test reads the bytes on disk, not just what load() returns."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from zlib import crc32

import msgpack
import pytest

from swarmkit_py.raft.storage import (
    DiskStorage,
    InvalidUnlockKeyError,
    KeyringError,
    SwarmLockedError,
    WALCorruptError,
    format_unlock_key,
    new_key,
    parse_unlock_key,
)
from swarmkit_py.raft.storage.crypto import DEKS_FILE, KEK_FILE
from swarmkit_py.raft.storage.records import HEADER_SIZE, scan
from swarmkit_py.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta

SECRET = b"com.example.secret-label=TOP-SECRET-42"


def ents(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, data=SECRET + b":%d" % i) for i in range(first, last + 1)]


def snap(index: int, term: int = 1) -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, ConfState(voters=[1])), SECRET * 3)


def all_bytes(d: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(d.iterdir()) if p.is_file())


def data_files(d: Path) -> list[Path]:
    return sorted(list(d.glob("wal-*.log")) + list(d.glob("snap-*.snap")))


def wal_key_ids(d: Path) -> list[int]:
    """The data key named by each segment's opening record (0 for a plaintext segment)."""
    out = []
    for seg in sorted(d.glob("wal-*.log")):
        body = msgpack.unpackb(scan(seg.read_bytes())[0][0][2], raw=False)
        out.append(body[4] if body[0] == 2 else 0)
    return out


def reopen(d: Path, **kw):
    s = DiskStorage(d, encrypted=True, **kw)
    try:
        return s.load()
    finally:
        s.close()


def write_some(d: Path, **kw) -> None:
    with DiskStorage(d, encrypted=True, **kw) as s:
        s.load()
        s.save(HardState(1, 1, 5), ents(1, 10))
        s.save_snapshot(snap(5))
        s.save(HardState(1, 1, 10), ents(11, 12))


def test_sealed_round_trip_leaves_no_plaintext_on_disk(tmp_path):
    write_some(tmp_path)
    st = reopen(tmp_path)
    assert st.snapshot == snap(5)
    assert [e.index for e in st.entries] == list(range(6, 13))
    assert st.entries[0].data == SECRET + b":6"
    assert st.hard_state == HardState(1, 1, 10)
    blob = b"".join(p.read_bytes() for p in data_files(tmp_path))
    assert SECRET not in blob and b"TOP-SECRET" not in blob
    assert (tmp_path / KEK_FILE).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / DEKS_FILE).stat().st_mode & 0o777 == 0o600


def test_unencrypted_mode_is_unchanged(tmp_path):
    with DiskStorage(tmp_path) as s:
        s.load()
        s.save(HardState(1, 1, 1), ents(1, 1))
    assert SECRET in all_bytes(tmp_path)
    assert not (tmp_path / DEKS_FILE).exists()


def test_torn_sealed_tail_is_cut_and_acknowledged_records_survive(tmp_path):
    with DiskStorage(tmp_path, encrypted=True) as s:
        s.load()
        s.save(HardState(1, 1, 1), ents(1, 3))
        s.save(None, ents(4, 6))
    (seg,) = tmp_path.glob("wal-*.log")
    size = seg.stat().st_size
    with open(seg, "r+b") as f:
        f.truncate(size - 7)  # the last write was cut short by the crash
    st = reopen(tmp_path)
    assert [e.index for e in st.entries] == [1, 2, 3]


def test_corruption_in_the_middle_is_refused_not_truncated(tmp_path):
    with DiskStorage(tmp_path, encrypted=True) as s:
        s.load()
        s.save(HardState(1, 1, 1), ents(1, 3))
        s.save(None, ents(4, 6))
    (seg,) = tmp_path.glob("wal-*.log")
    recs, _ = scan(seg.read_bytes())
    off = recs[1][0]  # the first batch: acknowledged records follow it
    data = bytearray(seg.read_bytes())
    data[off + HEADER_SIZE + 20] ^= 1
    seg.write_bytes(bytes(data))
    with pytest.raises(WALCorruptError, match="fails its checksum"):
        reopen(tmp_path)


def test_a_record_altered_with_a_fixed_checksum_fails_authentication(tmp_path):
    with DiskStorage(tmp_path, encrypted=True) as s:
        s.load()
        s.save(HardState(1, 1, 1), ents(1, 3))
    (seg,) = tmp_path.glob("wal-*.log")
    data = bytearray(seg.read_bytes())
    off = scan(bytes(data))[0][1][0]
    _, _, length, _, _ = struct.unpack_from("<2sBIII", data, off)
    body = off + HEADER_SIZE
    data[body + 30] ^= 1  # inside the ciphertext; then fix both checksums like an attacker would
    struct.pack_into("<I", data, off + 7, crc32(bytes(data[body : body + length])))
    struct.pack_into("<I", data, off + 11, crc32(bytes(data[off : off + 11])))
    seg.write_bytes(bytes(data))
    with pytest.raises(WALCorruptError, match="fails authentication"):
        reopen(tmp_path)


def test_plaintext_directory_is_migrated_on_first_encrypted_start(tmp_path):
    with DiskStorage(tmp_path) as s:  # as written before encryption existed
        s.load()
        s.save(HardState(2, 1, 8), ents(1, 8))
        s.save_snapshot(snap(4))
        s.save(None, ents(9, 10, term=2))
    before = DiskStorage(tmp_path)
    expected = before.load()
    before.close()
    assert SECRET in all_bytes(tmp_path)

    assert reopen(tmp_path) == expected
    blob = b"".join(p.read_bytes() for p in data_files(tmp_path))
    assert SECRET not in blob
    assert set(wal_key_ids(tmp_path)) == {1}
    assert reopen(tmp_path) == expected  # and it stays readable (nothing re-done twice)
    with DiskStorage(tmp_path, encrypted=True) as s:
        s.load()
        s.save(None, ents(11, 11, term=2))
    assert [e.index for e in reopen(tmp_path).entries][-1] == 11


def test_rotation_reencrypts_everything_on_the_next_snapshot_and_erases_the_old_key(tmp_path):
    write_some(tmp_path)
    old = json.loads((tmp_path / DEKS_FILE).read_text())
    assert old["current"] == 1
    with DiskStorage(tmp_path, encrypted=True) as s:
        s.load()
        s.rotate_data_key()
        assert s.wants_snapshot
        s.save(None, ents(13, 14))
        s.save_snapshot(snap(13))
        assert not s.wants_snapshot
        s.save(HardState(1, 1, 14), ents(15, 15))
    new = json.loads((tmp_path / DEKS_FILE).read_text())
    assert new["current"] == 2 and list(new["keys"]) == ["2"] and new["retired"] == []
    assert set(wal_key_ids(tmp_path)) == {2}
    st = reopen(tmp_path)
    assert st.snapshot.meta.index == 13 and [e.index for e in st.entries] == [14, 15]


def test_rotation_interrupted_by_a_crash_is_finished_by_the_next_load(tmp_path):
    write_some(tmp_path)
    with DiskStorage(tmp_path, encrypted=True) as s:
        expected = s.load()
        s.rotate_data_key()
        s.keyring.promote_pending()  # the crash came right after the switch: files still old
    doc = json.loads((tmp_path / DEKS_FILE).read_text())
    assert doc["retired"] == [1]
    assert reopen(tmp_path) == expected
    doc = json.loads((tmp_path / DEKS_FILE).read_text())
    assert doc["current"] == 2 and doc["retired"] == [] and list(doc["keys"]) == ["2"]


def test_autolock_seals_the_keys_with_the_unlock_key_only(tmp_path):
    write_some(tmp_path)
    key = new_key()
    with DiskStorage(tmp_path, encrypted=True) as s:
        expected = s.load()
        assert s.set_kek(key)
        assert not s.set_kek(key)  # same key: nothing to do
    assert not (tmp_path / KEK_FILE).exists()
    assert key not in all_bytes(tmp_path)
    with pytest.raises(SwarmLockedError, match="docker swarm unlock"):
        DiskStorage(tmp_path, encrypted=True)
    wrong = new_key()
    with pytest.raises(InvalidUnlockKeyError) as err:
        DiskStorage(tmp_path, encrypted=True, unlock_key=wrong)
    assert str(err.value) == "swarm could not be unlocked: invalid key provided"
    assert reopen(tmp_path, unlock_key=key) == expected
    # The directory lock was released by the refused opens: a second open works.
    with DiskStorage(tmp_path, encrypted=True, unlock_key=key) as s:
        s.load()
        s.set_kek(None)  # autolock off again
    assert (tmp_path / KEK_FILE).exists()
    assert reopen(tmp_path) == expected


def test_missing_kek_file_is_a_clear_error(tmp_path):
    write_some(tmp_path)
    (tmp_path / KEK_FILE).unlink()
    with pytest.raises(KeyringError, match="kek is missing"):
        DiskStorage(tmp_path, encrypted=True)


def test_unencrypted_open_of_a_sealed_directory_refuses(tmp_path):
    write_some(tmp_path)
    with pytest.raises(WALCorruptError, match="opened without encryption"):
        with DiskStorage(tmp_path) as s:
            s.load()


def test_unlock_key_format():
    key = new_key()
    text = format_unlock_key(key)
    assert text.startswith("SWMKEY-1-") and "=" not in text
    assert parse_unlock_key(text) == key
    assert parse_unlock_key(f"  {text}\n") == key
    for bad in ("", "SWMKEY-1-", "SWMKEY-2-" + text[9:], text[:-4], "SWMKEY-1-!!!!", "hello"):
        with pytest.raises(InvalidUnlockKeyError, match="invalid key string"):
            parse_unlock_key(bad)


def test_offline_commands_read_encrypted_and_locked_state(tmp_path, capsys, monkeypatch):
    """`swarmkit-py log-position` (what `invoke recover` runs on each survivor) opens the
    encrypted state; on an auto-locked one it says how to pass the key, and takes it on stdin."""
    import io

    from swarmkit_py.cli.main import main

    raft = tmp_path / "raft"
    write_some(raft)
    assert main(["log-position", "--state-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"term": 1, "index": 12, "commit": 10, "hs_term": 1}
    key = new_key()
    with DiskStorage(raft, encrypted=True) as s:
        s.load()
        s.set_kek(key)
    assert main(["log-position", "--state-dir", str(tmp_path)]) == 1
    assert "--unlock-key-stdin" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(format_unlock_key(key) + "\n"))
    assert main(["log-position", "--state-dir", str(tmp_path), "--unlock-key-stdin"]) == 0
    assert json.loads(capsys.readouterr().out)["index"] == 12


def test_force_new_cluster_reads_and_writes_encrypted_state(tmp_path):
    """`swarmkit-py recover --force-new-cluster` on an auto-locked manager: refused without the
    key, done with it; the new state is encrypted too (a local key file until the agent re-seals
    it with the cluster's unlock key)."""
    from swarmkit_py.agent.recover import force_new_cluster
    from swarmkit_py.agent.state import LocalNode

    LocalNode(node_id="n1", cluster_id="c1", role="manager", raft_id=7, managers=["10.0.0.1:2377"]).save(tmp_path)
    key = new_key()
    with DiskStorage(tmp_path / "raft", encrypted=True) as s:
        s.load()
        s.save(HardState(3, 7, 2), [Entry(3, 1, data=b""), Entry(3, 2, data=b"")])
        s.set_kek(key)
    with pytest.raises(SwarmLockedError):
        force_new_cluster(tmp_path, "10.0.0.1:2377")
    summary = force_new_cluster(tmp_path, "10.0.0.1:2377", unlock_key=key)
    assert "recovered a one-manager cluster from index 2 (term 3)" in summary
    st = reopen(tmp_path / "raft")
    assert st.snapshot.meta.index == 2 and st.hard_state.term == 4
    assert (tmp_path / "raft" / KEK_FILE).exists()
    (aside,) = tmp_path.glob("raft.before-recover-*")
    assert reopen(aside, unlock_key=key).hard_state == HardState(3, 7, 2)


def test_a_restart_replaying_an_older_unlock_key_never_rewraps_the_disk_by_it(tmp_path):
    """The unlock key was rotated (index 20) after auto-lock went on (index 10). A restarting
    manager replays its log and its key watcher sees the cluster object at index 10 again, and
    before that at 5 (auto-lock off): neither may touch the disk, which must keep opening with
    the rotated key only (the operator has discarded the old one)."""
    import asyncio
    from types import SimpleNamespace

    from swarmkit_py.manager.autolock import KEKWatcher
    from swarmkit_py.store.objects import Cluster
    from swarmkit_py.store.objects.cluster import ClusterSpec, EncryptionConfig, RootCA

    write_some(tmp_path)
    old_key, new = new_key(), new_key()

    def cluster_at(index, key):
        c = Cluster(id="c1", spec=ClusterSpec(encryption_config=EncryptionConfig(
            auto_lock_managers=key is not None)), unlock_key=key and format_unlock_key(key),
                    root_ca=RootCA(ca_cert="cert", ca_key="the CA's private key"))
        c.version.index = index
        return c

    with DiskStorage(tmp_path, encrypted=True) as s:
        s.load()
        assert s.set_kek(old_key, 10) and s.set_kek(new, 20)
        assert not s.set_kek(old_key, 10) and not s.set_kek(None, 5)
    assert json.loads((tmp_path / DEKS_FILE).read_text())["kek_index"] == 20
    with DiskStorage(tmp_path, encrypted=True, unlock_key=new) as s:
        s.load()
        assert s.keyring.kek_index == 20
        current = {"c": None}
        store = SimpleNamespace(view=lambda: SimpleNamespace(cluster=lambda: current["c"]))
        ca_key = tmp_path / "swarm-root-ca.key"
        watcher = KEKWatcher(store, s, ca_key_path=ca_key)
        for c in (cluster_at(5, None), cluster_at(10, old_key)):  # the replay
            current["c"] = c
            asyncio.run(watcher.reconcile())
            assert not ca_key.exists()  # nor was the CA key exported by the auto-lock-off state
        current["c"] = cluster_at(20, new)
        asyncio.run(watcher.reconcile())
    with pytest.raises(InvalidUnlockKeyError):
        DiskStorage(tmp_path, encrypted=True, unlock_key=old_key)
    assert reopen(tmp_path, unlock_key=new) is not None
    with DiskStorage(tmp_path, encrypted=True, unlock_key=new) as s:  # auto-lock off later on
        s.load()
        assert s.set_kek(None, 30)
    assert reopen(tmp_path) is not None
