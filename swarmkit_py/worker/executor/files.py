"""A task's secrets and configs, put into its container from memory only.

dockerd mounts Swarm secrets from a tmpfs it makes itself; through the engine API we have no
such call, and writing the bytes anywhere on the worker's disk (a bind-mount source, a
`docker cp` into a stopped container's layer) is exactly what must not happen. What the API
does offer, and what this module strings together:

1. a `local` volume with `type=tmpfs` options: memory-backed, mounted by the engine while a
   container uses it and unmounted (its contents gone) when the last one stops;
2. a *holder* container of the task image (`sleep`) that keeps that tmpfs mounted;
3. `PUT /containers/{holder}/archive`: a tar built in memory, one entry per file, whose
   headers carry the reference's uid, gid and mode, extracted by the engine into the tmpfs;
4. the task container, created with one read-only *bind* mount per file, from the volume's
   mount point (`Mountpoint`, as the engine reports it) to the file's target — so any target
   works (`/run/secrets/db`, `/etc/app.conf`, `/index.html`), without hiding the rest of the
   target's directory;
5. once the task container has started, the holder and the volume are removed: the engine
   unmounts the tmpfs on the host, and the only remaining reference to those pages is the
   task container's own bind mounts. When it stops, the memory is freed: no trace on the node.

Between prepare (steps 1-4) and start the bytes exist in the host's tmpfs (memory) only.
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

from ...engine import APIError, Engine, NotFound
from ...proto import AssignedTask, TaskFile
from . import docker_adapter as adapter

LABEL_FILES_TASK = "com.swarmkit-py.files.task.id"
LABEL_FILES_NODE = "com.swarmkit-py.files.node.id"
HOLD_PATH = "/hold"
RELEASE_ATTEMPTS = 5

log = logging.getLogger(__name__)


def holder_name(task: AssignedTask) -> str:
    return f"skpy-files-{task.id}"


def volume_name(task: AssignedTask) -> str:
    return f"skpy-files-{task.id}"


def archive(files: tuple[TaskFile, ...]) -> bytes:
    """The files as a tar built in memory, named by position (targets may share names)."""
    import tarfile  # here, as taskimage below: 0.35 MB a worker without secrets never uses

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i, f in enumerate(files):
            info = tarfile.TarInfo(str(i))
            info.size = len(f.data)
            info.uid, info.gid, info.mode = f.uid, f.gid, f.mode
            tar.addfile(info, io.BytesIO(f.data))
    return buf.getvalue()


class TaskFiles:
    """Steps 1-5 above for one task; a no-op for a task with no secrets or configs."""

    def __init__(self, client: Engine, task: AssignedTask) -> None:
        self.client = client
        self.task = task
        self.mountpoint = ""

    @property
    def needed(self) -> bool:
        return bool(self.task.files)

    async def prepare(self) -> list[dict[str, Any]]:
        """Steps 1-3; returns the task container's mounts (the engine's HostConfig.Mounts)."""
        if not self.needed:
            return []
        await self.release()  # leftovers of an attempt interrupted before start
        labels = {LABEL_FILES_TASK: self.task.id, LABEL_FILES_NODE: self.task.node_id}
        volume = await adapter.call(
            self.client.create_volume, volume_name(self.task), "local",
            {"type": "tmpfs", "device": "tmpfs", "o": "mode=0755"}, labels)
        self.mountpoint = volume["Mountpoint"]
        from ...taskimage import TASK_IMAGE, ensure_task_image

        await adapter.call(ensure_task_image, self.client)
        holder = await adapter.call(self.client.create_container, holder_name(self.task), {
            "Image": TASK_IMAGE, "Cmd": ["sleep", "2147483647"], "Labels": labels,
            "HostConfig": {"NetworkMode": "none", "Mounts": [
                {"Target": HOLD_PATH, "Source": volume["Name"], "Type": "volume",
                 "ReadOnly": False}]}})
        await adapter.call(self.client.start, holder["Id"])
        await adapter.call(self.client.put_archive, holder["Id"], HOLD_PATH,
                           archive(self.task.files))
        return [{"Target": f.path, "Source": f"{self.mountpoint}/{i}", "Type": "bind",
                 "ReadOnly": True} for i, f in enumerate(self.task.files)]

    async def release(self) -> None:
        """Step 5 (also the cleanup of an attempt that never started): remove the holder and
        the volume. A started task container keeps its own mounts of the files."""
        if not self.needed:
            return
        try:
            await adapter.call(self.client.remove_container, holder_name(self.task),
                               force=True)
        except NotFound:
            pass
        for attempt in range(RELEASE_ATTEMPTS):
            try:
                await adapter.call(self.client.remove_volume, volume_name(self.task),
                                   force=True)
                return
            except NotFound:
                return
            except APIError as exc:
                # "volume is in use" while the engine finishes removing the holder; what
                # is left is swept when the task is removed or the worker restarts.
                if attempt == RELEASE_ATTEMPTS - 1:
                    log.warning("could not remove volume %s yet: %s",
                                volume_name(self.task), exc)
                    return
                await asyncio.sleep(0.2 * (attempt + 1))


def sweep(client: Engine, node_id: str, keep: set[str]) -> list[str]:
    """Remove holders and volumes of tasks not in ``keep`` (left by a worker that died
    between prepare and start); returns the task IDs cleaned."""
    gone: set[str] = set()
    flt = {"label": f"{LABEL_FILES_NODE}={node_id}"}
    for c in adapter.call_sync(client.containers, all=True, filters=flt):
        task_id = (c.get("Labels") or {}).get(LABEL_FILES_TASK, "")
        if task_id not in keep:
            try:
                adapter.call_sync(client.remove_container, c["Id"], force=True)
            except NotFound:
                pass  # gone meanwhile
            gone.add(task_id)
    for v in adapter.call_sync(client.volumes, filters=flt):
        task_id = (v.get("Labels") or {}).get(LABEL_FILES_TASK, "")
        if task_id not in keep:
            try:
                adapter.call_sync(client.remove_volume, v["Name"], force=True)
            except APIError:
                continue
            gone.add(task_id)
    return sorted(gone)

