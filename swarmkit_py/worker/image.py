"""The local task image: Debian's static busybox imported into the Docker engine.

No registry is reachable from these machines, so the demo, the tests and the lab run their tasks
from an image built here with `docker import` instead of pulled. The rootfs is a tar built in
memory with deterministic metadata, so rebuilding it on another host yields the same layer.

Run as `python -m swarmkit_py.worker.image` to make sure the image exists (idempotent).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile

import docker
import docker.errors

TASK_IMAGE = "swarmkit-py/busybox:latest"
BUSYBOX = "/bin/busybox"

# Files a few applets read (`id`, `httpd` dropping privileges, `whoami`); the rest is busybox.
_ETC_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
}
_DIRS = {"bin": 0o755, "etc": 0o755, "root": 0o700, "tmp": 0o1777, "var": 0o755, "www": 0o755}


def busybox_applets(busybox: str = BUSYBOX) -> list[str]:
    """Ask the binary itself, so the image offers exactly what this busybox build can do."""
    out = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout
    return sorted({name for name in out.split() if name and "/" not in name and name != "busybox"})


def _entry(name: str, kind: bytes, mode: int, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.size = kind, mode, linkname, size
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def build_rootfs_tar(busybox: str = BUSYBOX) -> bytes:
    """The image's root filesystem as an uncompressed tar: /bin/busybox plus applet symlinks."""
    with open(busybox, "rb") as f:
        binary = f.read()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path, mode in sorted(_DIRS.items()):
            tar.addfile(_entry(path, tarfile.DIRTYPE, mode))
        tar.addfile(_entry("bin/busybox", tarfile.REGTYPE, 0o755, size=len(binary)),
                    io.BytesIO(binary))
        for applet in busybox_applets(busybox):
            tar.addfile(_entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777, linkname="busybox"))
        for path, text in sorted(_ETC_FILES.items()):
            data = text.encode()
            tar.addfile(_entry(path, tarfile.REGTYPE, 0o644, size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def ensure_task_image(client: docker.DockerClient, tag: str = TASK_IMAGE,
                      busybox: str = BUSYBOX) -> str:
    """Import the image unless the engine already has `tag`; return its image ID.

    Never pulls: a pull would only time out here, and a local tag is what the executor expects.
    """
    try:
        return client.images.get(tag).id
    except docker.errors.ImageNotFound:
        pass
    repository, _, version = tag.rpartition(":")
    if not repository or "/" in version:
        repository, version = tag, "latest"
    client.api.import_image_from_data(
        build_rootfs_tar(busybox), repository=repository, tag=version,
        changes=['CMD ["sh"]', "ENV PATH=/bin"],
    )
    return client.images.get(tag).id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ensure the local busybox task image exists.")
    parser.add_argument("--tag", default=TASK_IMAGE)
    parser.add_argument("--busybox", default=BUSYBOX, help="static busybox binary to package")
    args = parser.parse_args(argv)
    try:
        client = docker.from_env()
    except docker.errors.DockerException as exc:
        print(f"image: docker engine unavailable: {exc}", file=sys.stderr)
        return 1
    try:
        image_id = ensure_task_image(client, args.tag, args.busybox)
    finally:
        client.close()
    print(f"{args.tag} {image_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
