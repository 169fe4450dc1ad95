# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE to the centra.pxe collection: controller-side code of its plugins, never
# shipped to a managed host. Not an API: it may change in any release.
"""Kea servers sharing one PostgreSQL host database (docs/scale.md): the servers'
pxe_dhcp_kea_host_database_server checked across the servers, and grouped into the plan's
"host_databases", one entry per PostgreSQL that other Kea servers read."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any, Dict, List

from ansible.module_utils.parsing.convert_bool import boolean

Report = Callable[[str, str, str], None]  # problem(where, field, message)

SERVER_VAR = "pxe_dhcp_kea_host_database_server"
HOST_DATABASE_SERVER_VARS = ("pxe_dhcp_kea_host_database", SERVER_VAR)


def _on(value: Any) -> bool:
    """A boolean inventory value (YAML's true, or an INI inventory's string), as Ansible reads one."""
    return boolean(value, strict=False)


def _address(server: Mapping[str, Any]) -> str:
    """The server's ansible_host as an IP address, or "" when it is a name or unset."""
    try:
        return str(ipaddress.ip_address(str(server.get("address") or "")))
    except ValueError:
        return ""


def shared_host_databases(problem: Report, servers: Mapping[str, Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Check pxe_dhcp_kea_host_database_server on every PXE server; return, per PostgreSQL that
    other servers share, {"server": its inventory name, "address": its ansible_host,
    "clients": [{"name", "address"}] in inventory order}.

    servers: PXE server name -> {"address" (ansible_host), "pxe_dhcp_backend",
    "pxe_dhcp_kea_host_database", "pxe_dhcp_kea_host_database_server"}, only those set.
    A server that names itself, or nothing, reads its own database; a server can only share
    the database of a server that reads its own (no chains).
    """
    shared: Dict[str, Dict[str, Any]] = {}
    for name, server in servers.items():
        target = server.get(SERVER_VAR)
        if target in (None, "") or target == name:
            continue
        where = "host %s" % name
        if server.get("pxe_dhcp_backend", "kea") != "kea":
            problem(where, SERVER_VAR, "only Kea reads a host database, and this server's pxe_dhcp_backend is %r"
                    % server.get("pxe_dhcp_backend"))
            continue
        if not _on(server.get("pxe_dhcp_kea_host_database")):
            problem(where, SERVER_VAR, "is set but pxe_dhcp_kea_host_database is not true on this server")
            continue
        if not isinstance(target, str) or target not in servers:
            problem(where, SERVER_VAR, "%r is not a PXE server of the inventory (name the server whose "
                    "PostgreSQL holds the reservations)" % (target,))
            continue
        owner = servers[target]
        if owner.get("pxe_dhcp_backend", "kea") != "kea" or not _on(owner.get("pxe_dhcp_kea_host_database")):
            problem(where, SERVER_VAR, "%s has no host database of its own (pxe_dhcp_backend kea and "
                    "pxe_dhcp_kea_host_database true on it)" % target)
            continue
        if owner.get(SERVER_VAR) not in (None, "", target):
            problem(where, SERVER_VAR, "%s reads the database of %s itself: name %s"
                    % (target, owner.get(SERVER_VAR), owner.get(SERVER_VAR)))
            continue
        if not _address(owner):
            problem(where, SERVER_VAR, "%s has no IP address as its ansible_host, which this server would "
                    "connect to (got %r)" % (target, owner.get("address")))
            continue
        if not _address(server):
            problem(where, "ansible_host", "must be an IP address for %s to let this server read its database "
                    "(got %r)" % (target, server.get("address")))
            continue
        entry = shared.setdefault(target, {"server": target, "address": _address(owner), "clients": []})
        entry["clients"].append({"name": name, "address": _address(server)})
    return [shared[name] for name in servers if name in shared]


def host_database_share(plan: Mapping[str, Any], name: str) -> Dict[str, Any]:
    """This server's side of a shared database: the plan's entry {"server", "address", "clients"}
    and "role": "server" when others read its database, "reader" when it reads another's;
    {} when it reads its own alone. The one place a server's side is decided (the renderer, the
    pxe_dhcp and pxe_firewall roles read "role")."""
    for entry in plan.get("host_databases") or []:
        if entry["server"] == name:
            return dict(entry, role="server")
        if any(client["name"] == name for client in entry["clients"]):
            return dict(entry, role="reader")
    return {}
