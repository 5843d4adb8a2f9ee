"""What the lab hands the deployment toolkit: an Ansible YAML inventory and a known_hosts.

The inventory is the same format a user writes for VMs, so the toolkit has no lab special
case; known_hosts lets it check host keys for real instead of trusting on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import yaml

HEADER = "# Written by `invoke lab.up` ({lab}); rewritten on every lab.up, removed by lab.down.\n"


def known_hosts_lines(entries: list[tuple[str, str, Path]]) -> str:
    """entries: (host name, address, public host key file)."""
    lines = []
    for host, addr, pub in entries:
        keytype, key = pub.read_text().split()[:2]
        lines.append(f"{addr},{host} {keytype} {key}\n")
    return "".join(lines)


class Login(NamedTuple):
    """A login user other than root: its key, and the file holding the password sudo asks for."""

    user: str
    key: Path
    password_file: Path


def inventory_doc(lab: str, hosts: list[tuple[str, str]], key: Path, known_hosts: Path,
                  login: Login | None = None) -> dict:
    conn = {"ansible_user": "root", "ansible_port": 22, "ansible_ssh_private_key_file": str(key)}
    if login is not None:  # the password stays in its file: the inventory names where it is
        conn = {"ansible_user": login.user, "ansible_port": 22, "ansible_ssh_private_key_file": str(login.key),
                "ansible_become": True,
                "ansible_become_password": f"{{{{ lookup('file', '{login.password_file}') }}}}"}
    return {
        "all": {
            "vars": {
                **conn,
                "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes",
                "swarmkit_known_hosts_file": str(known_hosts),
                "swarmkit_lab": lab,
            },
            "hosts": {h: {"ansible_host": a} for h, a in hosts},
        }
    }


def write_inventory(path: Path, lab: str, hosts: list[tuple[str, str]], key: Path, known_hosts: Path,
                    login: Login | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(inventory_doc(lab, hosts, key, known_hosts, login), sort_keys=False)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(HEADER.format(lab=lab) + body)
    tmp.replace(path)
