"""The Ansible inventory `up` writes: group ``pxe_servers`` with SSH access details.

Written by hand rather than with PyYAML (the harness is stdlib only): every scalar
is emitted with json.dumps, and a JSON string is a valid YAML double-quoted scalar.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .common import SSH_COMMON_ARGS, SSH_KEY
from .container import PxeHost


def host_vars(host: PxeHost) -> dict[str, str]:
    return {
        "ansible_host": host.address,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(SSH_KEY),
        "ansible_ssh_common_args": SSH_COMMON_ARGS,
        "ansible_python_interpreter": "/usr/bin/python3",
        "pxe_interface": "host0",
    }


def render(hosts: list[PxeHost]) -> str:
    lines = [
        "# Written by tests/lab/lab.py up; removed by tests/lab/lab.py down.",
        "all:",
        "  children:",
        "    pxe_servers:",
        "      hosts:",
    ]
    for host in hosts:
        lines.append(f"        {host.name}:")
        for key, value in host_vars(host).items():
            lines.append(f"          {key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def write(path: Path, hosts: list[PxeHost]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(hosts))
    os.replace(tmp, path)
