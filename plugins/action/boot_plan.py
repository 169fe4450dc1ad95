# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin behind centra.pxe.boot_plan: builds the boot plan on the controller."""

from __future__ import annotations

import os
import typing as t

from ansible.inventory.helpers import get_group_vars
from ansible.plugins.action import ActionBase
from ansible.utils.vars import combine_vars
from ansible.vars.plugins import get_vars_from_inventory_sources

from ansible_collections.centra.pxe.plugins.module_utils._plan import dump_plan
from ansible_collections.centra.pxe.plugins.plugin_utils._action import checked_args
from ansible_collections.centra.pxe.plugins.plugin_utils._ha import HA_SERVER_VARS
from ansible_collections.centra.pxe.plugins.plugin_utils._shared_host_db import HOST_DATABASE_SERVER_VARS
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import (
    NODE_VARS,
    OPTION_VARS,
    PlanError,
    build_plan,
)

# Each DHCP options variable -> the node entry's key for its groups' value.
GROUP_KEYS = {var: group_key for var, (group_key, _plan_key, _table) in OPTION_VARS.items()}

ARGUMENT_SPEC = {
    "subnets": {"type": "raw"},
    "profiles": {"type": "raw"},
    "nodes_group": {"type": "str", "default": "pxe_nodes"},
    "servers_group": {"type": "str", "default": "pxe_servers"},
    "base_dir": {"type": "path"},
    "fact_name": {"type": "str", "default": "centra_pxe_plan"},
}


class _NodeReader:
    """Reads the node variables of many hosts straight from the inventory.

    VariableManager.get_vars() (what hostvars[...] does) recomputes every group's
    vars, the magic variables and the facts for each host: milliseconds per host,
    minutes for 10,000 (ansible/ansible#23349). Node variables live in the
    inventory, so this reads them there with the same precedence (group vars by
    depth and priority, then host vars; inventory first, then host_vars/ and
    group_vars/ files), computing the vars of each distinct set of groups once.
    """

    def __init__(self, hostvars: t.Any, loader: t.Any):
        self._inventory = hostvars._inventory
        self._loader = loader
        self._sources = list(getattr(self._inventory, "_sources", []) or [])
        self._group_cache: dict[tuple[str, ...], dict[str, t.Any]] = {}

    def _group_vars(self, groups: list[t.Any]) -> dict[str, t.Any]:
        key = tuple(sorted(g.name for g in groups))
        if key not in self._group_cache:
            data = get_group_vars(groups)
            data = combine_vars(data, get_vars_from_inventory_sources(self._loader, self._sources, groups, "task"))
            self._group_cache[key] = data
        return self._group_cache[key]

    def read(self, name: str) -> dict[str, t.Any]:
        host = self._inventory.get_host(name)
        groups = host.get_groups()
        # host.vars: the inventory host vars without the magic ones get_vars() adds (and untags)
        own = combine_vars(host.vars,
                           get_vars_from_inventory_sources(self._loader, self._sources, [host], "task"))
        group_vars = self._group_vars(groups)
        merged = combine_vars(group_vars, own)
        node = {key: merged[key] for key in NODE_VARS if key in merged}
        # DHCP options merge option by option, the node's over its groups': apart.
        for var, group_key in GROUP_KEYS.items():
            node.pop(var, None)
            if var in own:
                node[var] = own[var]
            if var in group_vars:
                node[group_key] = group_vars[var]
        node["groups"] = [g.name for g in groups]
        node["host_vars"] = [key for key in own if isinstance(key, str) and key.startswith("pxe_")]
        return node

    def group_pxe_vars(self, names: list[str]) -> dict[str, list[str]]:
        """The pxe_* variables each group of these hosts sets itself (for typo checks)."""
        groups = {g.name: g for name in names for g in self._inventory.get_host(name).get_groups()}
        out = {}
        for group_name, group in groups.items():
            own = combine_vars(group.vars,
                               get_vars_from_inventory_sources(self._loader, self._sources, [group], "task"))
            keys = [k for k in own if isinstance(k, str) and k.startswith("pxe_")]
            if keys:
                out[group_name] = keys
        return out


def _looks_templated(value: t.Any) -> bool:
    """Cheap stand-in for Templar.is_template, which costs too much to call 30,000 times."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, list):
        return any(_looks_templated(v) for v in value)
    if isinstance(value, dict):
        return any(_looks_templated(v) for v in value.values())
    return False


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = checked_args("centra.pxe.boot_plan", ARGUMENT_SPEC, self._task.args)

        groups = task_vars.get("groups", {})
        hostvars = task_vars["hostvars"]
        node_names = list(groups.get(args["nodes_group"], []))
        nodes, group_vars = self._read_nodes(hostvars, node_names)
        if isinstance(args["profiles"], dict):
            # A profile group left outside the nodes group: its hosts would silently not be served.
            for profile in args["profiles"]:
                for name in groups.get(str(profile), []):
                    if name not in nodes:
                        nodes[name] = {"groups": [str(profile)], "pxe_mac": None,
                                       "outside_group": args["nodes_group"]}
        reserved = {}
        servers = {}
        for server in groups.get(args["servers_group"], []):
            servers[server] = self._server_vars(hostvars, server)
            for key in ("address", "pxe_dhcp_ha_address"):
                if servers[server].get(key):
                    reserved[str(servers[server][key])] = "PXE server %s" % server
        base_dir = args["base_dir"] or self._inventory_dir(hostvars)
        try:
            plan = build_plan(args["subnets"], args["profiles"], nodes, base_dir=base_dir, reserved_ips=reserved,
                              group_vars=group_vars, servers=servers)
        except PlanError as exc:
            result.update(failed=True, msg=str(exc), problems=[str(p) for p in exc.problems])
            return result
        result.update(
            changed=False,
            ansible_facts={args["fact_name"]: dump_plan(plan)},
            digest=plan["digest"],
            counts={"subnets": len(plan["subnets"]), "profiles": len(plan["profiles"]), "nodes": len(plan["nodes"]),
                    "macs": sum(len(n["macs"]) for n in plan["nodes"])},
        )
        return result

    def _server_vars(self, hostvars: t.Any, name: str) -> dict[str, t.Any]:
        """What the plan needs of a PXE server (a handful of hosts: fully templated)."""
        host_vars = hostvars[name]
        out: dict[str, t.Any] = {}
        address = self._templar.template(hostvars.raw_get(name).get("ansible_host"))
        if address:
            out["address"] = address
        for key in ("pxe_dhcp_backend", "pxe_loader") + HA_SERVER_VARS + HOST_DATABASE_SERVER_VARS:
            if key in host_vars:
                out[key] = host_vars[key]
        return out

    def _read_nodes(self, hostvars: t.Any, names: list[str]) -> tuple[dict[str, dict[str, t.Any]], dict[str, list[str]]]:
        try:
            reader: _NodeReader | None = _NodeReader(hostvars, self._loader)
        except AttributeError:  # an ansible-core whose HostVars hides the inventory
            reader = None
        nodes = {}
        for name in names:
            node = reader.read(name) if reader else self._read_slow(hostvars, name, {"host_vars": []})
            if reader and any(_looks_templated(node[k]) for k in NODE_VARS + tuple(GROUP_KEYS.values()) if k in node):
                node = self._read_slow(hostvars, name, node)  # templated values need the full context
            nodes[name] = node
        return nodes, (reader.group_pxe_vars(names) if reader else {})

    @staticmethod
    def _read_slow(hostvars: t.Any, name: str, fast: dict[str, t.Any]) -> dict[str, t.Any]:
        """Fully templated node variables; a value that cannot be rendered becomes a problem."""
        host_vars = hostvars[name]
        node: dict[str, t.Any] = {"groups": list(host_vars.get("group_names", [])),
                                  "host_vars": fast.get("host_vars", []), "errors": {}}
        for key in NODE_VARS:
            try:
                if key in host_vars:
                    node[key] = host_vars[key]
            except Exception as exc:  # pylint: disable=broad-exception-caught  # any templating error
                node["errors"][key] = str(exc).splitlines()[0]
        # hostvars holds pxe_dhcp_options as Ansible merges it (the host's own mapping replaces
        # its groups'). Where the host sets its own and its groups' is plain data, keep the
        # groups' as the lower layer, so that options still merge one by one.
        for var, group_key in GROUP_KEYS.items():
            group_options = fast.get(group_key)
            if var in fast and group_options is not None and not _looks_templated(group_options):
                node[group_key] = group_options
        return node

    @staticmethod
    def _inventory_dir(hostvars: t.Any) -> str | None:
        """Relative asset paths start at the directory of the first inventory source."""
        for source in getattr(getattr(hostvars, "_inventory", None), "_sources", None) or []:
            if source and os.path.exists(source):
                return source if os.path.isdir(source) else os.path.dirname(os.path.abspath(source))
        return None
