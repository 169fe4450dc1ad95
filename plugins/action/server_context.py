# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin behind centra.pxe.server_context: what one PXE server is, for the roles."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.centra.pxe.plugins.plugin_utils._action import checked_args

from ansible_collections.centra.pxe.plugins.module_utils._endpoint import (
    EndpointError,
    server_endpoint,
    server_endpoint6,
)
from ansible_collections.centra.pxe.plugins.module_utils._plan import load_plan
from ansible_collections.centra.pxe.plugins.plugin_utils._ha import ha_relationship
from ansible_collections.centra.pxe.plugins.plugin_utils._server_context import server_context

ARGUMENT_SPEC = {
    "plan": {"type": "raw", "required": True},
    "interface": {"type": "str", "default": ""},
    "address": {"type": "str", "default": ""},
    "address6": {"type": "str", "default": ""},
    "extra_interfaces": {"type": "list", "elements": "str", "default": []},
    "http_port": {"type": "int", "default": 80},
    "https_port": {"type": "int", "default": 0},
    "root": {"type": "path", "required": True},
    "loaders": {"type": "dict", "default": {}},
    "loader_files": {"type": "dict", "default": {}},
    "loader_dir": {"type": "path", "default": "/usr/lib/ipxe"},
    "dhcp_backend": {"type": "str", "choices": ["kea", "isc", "proxy"], "default": "kea"},
    "default_loader": {"type": "str", "choices": ["ipxe", "grub"], "default": "ipxe"},
    "shim_loaders": {"type": "dict", "default": {}},
    "secure_boot_http_image": {"type": "bool", "default": False},
    "facts": {"type": "dict"},
    "fact_name": {"type": "str", "default": "centra_pxe_server"},
}
NETWORK_SUBSET = ["!all", "!min", "network"]


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = checked_args("centra.pxe.server_context", ARGUMENT_SPEC, self._task.args)
        name = task_vars.get("inventory_hostname", "")
        try:
            plan = load_plan(args["plan"])
        except ValueError as exc:
            raise AnsibleActionFail("centra.pxe.server_context: %s" % exc) from None
        facts = args["facts"]
        if facts is None:
            gathered = self._execute_module(module_name="ansible.builtin.setup",
                                            module_args={"gather_subset": NETWORK_SUBSET}, task_vars=task_vars)
            if gathered.get("failed"):
                result.update(failed=True, msg="centra.pxe.server_context: could not read the network facts of %s: %s"
                              % (name, gathered.get("msg", "")))
                return result
            facts = {k[len("ansible_"):] if k.startswith("ansible_") else k: v
                     for k, v in gathered.get("ansible_facts", {}).items()}
        try:
            endpoint = server_endpoint(plan, facts, args["interface"] or None, args["address"] or None)
            endpoint6 = server_endpoint6(plan, facts, endpoint["interface"], args["address6"] or None)
        except EndpointError as exc:
            result.update(failed=True, msg="host %s: pxe_interface: %s" % (name, exc))
            return result
        context = server_context(
            plan, name=name, endpoint=endpoint, extra_interfaces=args["extra_interfaces"],
            http_port=args["http_port"], https_port=args["https_port"], root=args["root"],
            loaders=args["loaders"], loader_files=args["loader_files"], loader_dir=args["loader_dir"],
            dhcp_backend=args["dhcp_backend"],
            ha=ha_relationship(plan, {"name": name}), endpoint6=endpoint6,
            default_loader=args["default_loader"], shim_loaders=args["shim_loaders"],
            secure_boot_http_image=args["secure_boot_http_image"])
        result.update(changed=False, ansible_facts={args["fact_name"]: context})
        return result
