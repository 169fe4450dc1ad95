"""The Ansible inventory `up` writes: group ``pxe_servers`` with SSH access details.

Written by hand rather than with PyYAML (the harness is stdlib only); scalars are
plain when that is unambiguous and single-quoted otherwise.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .common import NETNS, SSH_COMMON_ARGS, SSH_KEY
from .container import PxeHost

_PLAIN = re.compile(r"/?[A-Za-z0-9_][A-Za-z0-9_./-]*")
_NUMBER = re.compile(r"[-+]?[0-9]*\.?[0-9]+")
_RESERVED = {"yes", "no", "true", "false", "on", "off", "null", "y", "n"}


def yaml_scalar(value: str) -> str:
    """A YAML string scalar: plain when unambiguous, else single-quoted ('' escapes ')."""
    if _PLAIN.fullmatch(value) and not _NUMBER.fullmatch(value) \
            and value.lower() not in _RESERVED:
        return value
    return "'" + value.replace("'", "''") + "'"


def host_vars(host: PxeHost) -> dict[str, str]:
    return {
        "ansible_host": host.address,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(SSH_KEY),
        "ansible_ssh_common_args": SSH_COMMON_ARGS,
        # Labs side by side all have a pxe01 at 192.0.2.2: one ssh master socket
        # directory per lab, or one lab's Ansible would talk to another lab's host.
        "ansible_control_path_dir": f"~/.ansible/cp/{NETNS}",
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
            lines.append(f"          {key}: {yaml_scalar(value)}")
    return "\n".join(lines) + "\n"


def write(path: Path, hosts: list[PxeHost]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(hosts))
    os.replace(tmp, path)
