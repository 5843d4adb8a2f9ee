"""The task image's rootfs, built without an engine."""

import io
import tarfile

from swarmkit_py.taskimage import rootfs_tar


def test_rootfs_has_busybox_and_the_applets_tasks_use():
    data = rootfs_tar()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["bin/busybox"].isfile() and members["bin/busybox"].mode & 0o111
    for applet in ("sh", "sleep", "echo", "cat", "true", "false", "env", "nc", "httpd", "wget",
                   "ls", "kill", "touch", "test"):
        assert members[f"bin/{applet}"].issym(), applet
        assert members[f"bin/{applet}"].linkname == "busybox"
    assert members["tmp"].mode == 0o1777
    assert "etc/passwd" in members


def test_rootfs_is_reproducible():
    assert rootfs_tar() == rootfs_tar()
