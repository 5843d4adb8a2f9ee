"""scripts/lib/pidfile.sh: docker-up.sh clears a leftover dockerd pidfile unless its pid is a dockerd.

CI once restored this machine from a snapshot with /var/run/docker.pid left behind; the pid in it
belonged to another live process there, `kill -0` said "running", the file stayed, and dockerd
refused to start ("pid file found"), failing 41 tests.
"""
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "scripts" / "lib" / "pidfile.sh"


def _bash(script: str) -> str:
    return subprocess.run(["bash", "-c", f". {LIB}\n{script}"], capture_output=True, text=True,
                          check=True, timeout=10).stdout.strip()


def test_a_live_pid_of_another_program_is_stale(tmp_path):
    other = subprocess.Popen(["sleep", "30"])
    try:
        f = tmp_path / "docker.pid"
        f.write_text(str(other.pid))
        assert _bash(f"pidfile_owner {f} dockerd") == ""
        assert _bash(f"pidfile_owner {f} sleep") == str(other.pid)
        _bash(f"clear_stale_pidfile {f} sleep")
        assert f.exists(), "the pidfile of a running 'sleep' was removed"
        _bash(f"clear_stale_pidfile {f} dockerd")
        assert not f.exists(), "a pidfile naming a live non-dockerd process was kept"
    finally:
        other.kill()
        other.wait()


def test_dead_garbage_and_missing_pidfiles(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    for text in (str(dead.pid), "not a pid\n", ""):
        f = tmp_path / "docker.pid"
        f.write_text(text)
        assert _bash(f"pidfile_owner {f} dockerd") == ""
        _bash(f"clear_stale_pidfile {f} dockerd")
        assert not f.exists(), f"pidfile holding {text!r} was kept"
    assert _bash(f"clear_stale_pidfile {tmp_path}/absent dockerd; echo ok") == "ok"
