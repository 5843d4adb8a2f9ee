"""What the operator sees from the lab tasks: one table for status, one line per action."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .lab import Lab


def status_table(lab: Lab) -> Table:
    cut = lab.partitions()
    t = Table(title=f"lab {lab.name} ({lab.subnet}, bridge {lab.names.bridge}, init {lab.init}, "
                    f"login {lab.login_user}) state {lab.state_dir}")
    for col in ("host", "address", "state", "pid", "docker", "memory MiB", "disk", "partitioned from"):
        t.add_column(col)
    addr_to_host = {h.address: h.name for h in lab.hosts()}
    for h in lab.hosts():
        away = sorted({addr_to_host.get(d, d) for s, d in cut if s == h.address})
        mem = f"{lab.memory_mib(h.name):.0f}" if h.pid else "-"
        usage = lab.disk_usage(h.name)
        disk = f"{usage[0] / 2**20:.0f}/{usage[1] / 2**20:.0f} MiB" if usage else "-"
        t.add_row(h.name, h.address, h.state, str(h.pid or "-"), "yes" if h.docker else "no",
                  mem, disk, ", ".join(away) or "-",
                  style="red" if not h.pid else "yellow" if h.state == "frozen" else None)
    return t


def print_status(lab: Lab, console: Console | None = None) -> None:
    console = console or Console()
    if not lab.host_names():
        console.print(f"lab {lab.name}: not up")
        return
    console.print(status_table(lab))
    console.print(f"inventory: {lab.inventory_path}")
