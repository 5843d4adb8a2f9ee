"""The task image every lab host's engine has: `swarmkit-py/busybox:latest`.

Lab hosts have no route to a registry, so tasks use a local tag (a pull attempt fails in
about a millisecond and the local image is used). The image is built from Debian's static
busybox as a `docker save` archive with fixed timestamps, so every host ends up with the
*same* image ID, as if all had pulled one digest; and no Docker engine is needed to build it.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import shutil
import subprocess
import tarfile
from pathlib import Path

IMAGE = "swarmkit-py/busybox:latest"
BUSYBOX = Path("/bin/busybox")
EPOCH = 0

# Applets a task is likely to need; the rest of `busybox --list` is linked too when available.
APPLETS = ["sh", "sleep", "echo", "cat", "httpd", "nc", "ls", "ps", "kill", "true", "false",
           "wget", "env", "hostname", "date", "touch", "mkdir", "rm", "top", "ip", "ping"]


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


def _busybox() -> Path:
    p = BUSYBOX if BUSYBOX.exists() else Path(shutil.which("busybox") or "/nonexistent")
    if not p.exists():
        raise FileNotFoundError("busybox not found: install Debian's busybox-static")
    return p


def _applets(bb: Path) -> list[str]:
    try:
        out = subprocess.run([str(bb), "--list"], capture_output=True, text=True, check=True).stdout
        names = sorted(set(out.split()) | set(APPLETS))
    except (OSError, subprocess.CalledProcessError):
        names = APPLETS
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


def rootfs_tar() -> bytes:
    """A layer: /bin/busybox, a symlink per applet, and the few files a shell expects."""
    bb = _busybox()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for d, mode in [("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700),
                        ("var", 0o755), ("var/www", 0o755), ("proc", 0o555), ("sys", 0o555),
                        ("dev", 0o755)]:
            _add(tar, d, kind=tarfile.DIRTYPE, mode=mode)
        _add(tar, "bin/busybox", data=bb.read_bytes(), mode=0o755)
        for a in _applets(bb):
            _add(tar, f"bin/{a}", kind=tarfile.SYMTYPE, link="busybox", mode=0o777)
        _add(tar, "etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        _add(tar, "etc/group", data=b"root:x:0:\nnogroup:x:65534:\n")
        _add(tar, "var/www/index.html", data=b"swarmkit-py\n")
    return buf.getvalue()


def image_archive() -> bytes:
    """A `docker load` archive (manifest.json + config + one layer) with a stable image ID."""
    layer = rootfs_tar()
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
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "swarmkit-py lab: busybox-static"}],
    }
    cfg = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    cfg_id = hashlib.sha256(cfg).hexdigest()
    manifest = json.dumps([{"Config": f"{cfg_id}.json", "RepoTags": [IMAGE],
                            "Layers": [f"{diff_id}/layer.tar"]}]).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, diff_id, kind=tarfile.DIRTYPE, mode=0o755)
        _add(tar, f"{diff_id}/VERSION", data=b"1.0")
        _add(tar, f"{diff_id}/layer.tar", data=layer)
        _add(tar, f"{cfg_id}.json", data=cfg)
        _add(tar, "manifest.json", data=manifest)
        _add(tar, "repositories", data=json.dumps({IMAGE.split(":")[0]: {"latest": diff_id}}).encode())
    return buf.getvalue()


def image_id() -> str:
    """The ID every engine reports for IMAGE (sha256 of the config)."""
    with tarfile.open(fileobj=io.BytesIO(image_archive())) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    return "sha256:" + manifest[0]["Config"].removesuffix(".json")


def build(dest: Path) -> Path:
    """Write the archive once to `dest` (a file path) and reuse it while busybox is unchanged."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    stamp = dest.with_suffix(".src")
    src = hashlib.sha256(_busybox().read_bytes()).hexdigest()
    if dest.exists() and stamp.exists() and stamp.read_text() == src:
        return dest
    tmp = dest.with_suffix(".tmp")
    tmp.write_bytes(image_archive())
    tmp.replace(dest)
    stamp.write_text(src)
    return dest


def load(docker_host: str, archive: Path, timeout: float = 60.0) -> str:
    """Load IMAGE into the engine at `docker_host` (e.g. unix:///proc/PID/root/run/docker.sock)
    unless it already has it; returns 'ok' or 'changed'."""
    import docker  # the SDK is a project dependency; imported late so --help stays fast

    client = docker.DockerClient(base_url=docker_host, timeout=int(timeout), version="auto")
    try:
        try:
            client.images.get(IMAGE)
            return "ok"
        except docker.errors.ImageNotFound:
            pass
        with open(archive, "rb") as f:
            client.images.load(f.read())
        return "changed"
    finally:
        client.close()
