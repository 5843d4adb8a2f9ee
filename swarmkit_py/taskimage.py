"""The task image: `swarmkit-py/busybox:latest`, Debian's static busybox as a local image.

No registry is reachable from these machines, so the demo, the tests, the benchmarks and the
lab run their tasks from an image built here instead of pulled (a pull attempt fails in about a
millisecond and the engine uses the local tag).

The image is a `docker load` archive (manifest, config, one layer) with fixed timestamps and
deterministic tar metadata, so every engine it is loaded into reports the *same* image ID, as if
all had pulled one digest, and no engine is needed to build it. One builder for every user:
the worker (the helper container that holds a task's secret and config files,
`worker/executor/files.py`), this machine's engine (`scripts/docker-up.sh` runs
`python -m swarmkit_py.taskimage`) and each lab host's engine (`deploy/lab`). It imports
nothing of the runtime, so `deploy` may use it too.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

TASK_IMAGE = "swarmkit-py/busybox:latest"
BUSYBOX = Path("/bin/busybox")
EPOCH = 0

# Applets a task is likely to need, linked even if `busybox --list` cannot be asked.
APPLETS = ["sh", "sleep", "echo", "cat", "httpd", "nc", "ls", "ps", "kill", "true", "false",
           "wget", "env", "hostname", "date", "touch", "mkdir", "rm", "top", "ip", "ping", "test"]
_DIRS = [("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700), ("var", 0o755),
         ("var/www", 0o755), ("www", 0o755), ("proc", 0o555), ("sys", 0o555), ("dev", 0o755)]
# Files a few applets read (`id`, `httpd` dropping privileges, `whoami`).
_FILES = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
    "var/www/index.html": b"swarmkit-py\n",
}


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


def find_busybox() -> Path:
    p = BUSYBOX if BUSYBOX.exists() else Path(shutil.which("busybox") or "/nonexistent")
    if not p.exists():
        raise FileNotFoundError("busybox not found: install Debian's busybox-static")
    return p


def busybox_applets(bb: Path) -> list[str]:
    """Ask the binary itself, so the image offers what this busybox build can do."""
    try:
        out = subprocess.run([str(bb), "--list"], capture_output=True, text=True, check=True).stdout
        names = sorted(set(out.split()) | set(APPLETS))
    except (OSError, subprocess.CalledProcessError):
        names = sorted(APPLETS)
    return [n for n in names if n != "busybox" and "/" not in n]


def _add(tar: tarfile.TarFile, name: str, *, kind: bytes = tarfile.REGTYPE, data: bytes = b"",
         mode: int = 0o644, link: str = "") -> None:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.mtime = EPOCH
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    if kind == tarfile.SYMTYPE:
        ti.linkname = link
        tar.addfile(ti)
    elif kind == tarfile.DIRTYPE:
        tar.addfile(ti)
    else:
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))


def rootfs_tar(busybox: Path | None = None) -> bytes:
    """The layer: /bin/busybox, a symlink per applet, and the few files a shell expects."""
    bb = busybox or find_busybox()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for d, mode in _DIRS:
            _add(tar, d, kind=tarfile.DIRTYPE, mode=mode)
        _add(tar, "bin/busybox", data=bb.read_bytes(), mode=0o755)
        for a in busybox_applets(bb):
            _add(tar, f"bin/{a}", kind=tarfile.SYMTYPE, link="busybox", mode=0o777)
        for path, data in _FILES.items():
            _add(tar, path, data=data)
    return buf.getvalue()


def image_archive(busybox: Path | None = None) -> bytes:
    """A `docker load` archive (manifest.json + config + one layer) with a stable image ID."""
    layer = rootfs_tar(busybox)
    diff_id = hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": _arch(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["sh"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "swarmkit-py: busybox-static"}],
    }
    cfg = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    cfg_id = hashlib.sha256(cfg).hexdigest()
    manifest = json.dumps([{"Config": f"{cfg_id}.json", "RepoTags": [TASK_IMAGE],
                            "Layers": [f"{diff_id}/layer.tar"]}]).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, diff_id, kind=tarfile.DIRTYPE, mode=0o755)
        _add(tar, f"{diff_id}/VERSION", data=b"1.0")
        _add(tar, f"{diff_id}/layer.tar", data=layer)
        _add(tar, f"{cfg_id}.json", data=cfg)
        _add(tar, "manifest.json", data=manifest)
        _add(tar, "repositories", data=json.dumps({TASK_IMAGE.split(":")[0]: {"latest": diff_id}}).encode())
    return buf.getvalue()


def image_id(archive: bytes | None = None) -> str:
    """The ID every engine reports for TASK_IMAGE (sha256 of the config)."""
    with tarfile.open(fileobj=io.BytesIO(archive or image_archive())) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    return "sha256:" + manifest[0]["Config"].removesuffix(".json")


def build(dest: Path) -> Path:
    """Write the archive once to `dest` (a file path) and reuse it while busybox is unchanged
    (the lab loads the same file into every host's engine)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    stamp = dest.with_suffix(".src")
    src = hashlib.sha256(find_busybox().read_bytes()).hexdigest()
    if dest.exists() and stamp.exists() and stamp.read_text() == src:
        return dest
    tmp = dest.with_suffix(".tmp")
    tmp.write_bytes(image_archive())
    tmp.replace(dest)
    stamp.write_text(src)
    return dest


def ensure_task_image(client, archive: Path | None = None) -> str:
    """Load TASK_IMAGE into the engine `client` (a `swarmkit_py.engine.Engine`) unless it has
    it already; return its image ID. Never pulls."""
    from .engine import NotFound

    try:
        return client.inspect_image(TASK_IMAGE)["Id"]
    except NotFound:
        pass
    client.load_image(archive.read_bytes() if archive is not None else image_archive())
    return client.inspect_image(TASK_IMAGE)["Id"]


def load(docker_host: str, archive: Path, timeout: float = 60.0) -> str:
    """Load TASK_IMAGE into the engine at `docker_host` (e.g. unix:///proc/PID/root/run/docker.sock)
    unless it already has it; returns 'ok' or 'changed'."""
    from .engine import Engine, NotFound

    client = Engine(docker_host, timeout=timeout)
    try:
        try:
            client.inspect_image(TASK_IMAGE)
            return "ok"
        except NotFound:
            ensure_task_image(client, archive)
            return "changed"
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=f"Ensure this machine's Docker engine holds {TASK_IMAGE}.").parse_args(argv)
    from .engine import Engine, Unreachable

    try:
        client = Engine()
    except (Unreachable, ValueError) as exc:
        print(f"taskimage: docker engine unavailable: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"{TASK_IMAGE} {ensure_task_image(client)}")
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
