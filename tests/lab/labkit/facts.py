# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Lab facts, read from the inventories: the one place a test learns them.

- The PXE servers and their addresses come from the *generated* inventory: molecule's
  inventory of the running scenario (its instances, made from what ``lab.py up`` reported,
  plus the scenario's group vars such as ``pxe_dhcp_backend``), or outside molecule the
  inventory ``lab.py up`` wrote (the lab's state file names it).
- The nodes (MACs, profiles, fixed addresses), the subnets and the menu default come from
  ``inventories/lab``, plus a scenario's own inventory when it has one
  (``molecule/relay/inventory``).

One ``ansible-inventory --list`` over those sources, so Ansible's own precedence decides,
as in converge. MACs are read with the collection's parser; a node's profile is its one
group that ``pxe_profiles`` names, as in the boot plan. For the test side only: the
modules ``lab.py`` imports stay free of Ansible and of the collection.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.centra.pxe.plugins.module_utils._mac import format_mac, parse_mac

from .common import LAB_DIR, STATE_FILE, LabError, read_json

PROJECT = str(LAB_DIR.parent.parent)
LAB_INVENTORY = os.path.join(PROJECT, "inventories", "lab")
SERVER_GROUP = "pxe_servers"


@dataclass(frozen=True)
class Node:
    """A node of the inventory, as the boot plan sees it."""

    name: str
    profile: str
    macs: tuple[str, ...]  # canonical (colon, lower case), in the inventory's order
    ip: str | None  # pxe_ip, None for a node that takes a pool address
    boot: str = "install"  # pxe_boot
    loader: str = "ipxe"  # pxe_loader (node or profile group; else the servers' default)
    arch: str = "amd64"  # pxe_arch


@dataclass(frozen=True)
class Subnet:
    cidr: str
    pool: tuple[str, str]  # first and last address of the dynamic pool
    gateway: str | None

    def in_pool(self, address: str) -> bool:
        first, last = (ipaddress.IPv4Address(a) for a in self.pool)
        return first <= ipaddress.IPv4Address(address) <= last


def node_script_path(mac: str) -> str:
    """The URL path of a MAC's boot script on a PXE server (iPXE's ${mac:hexhyp})."""
    return "/nodes/%s.ipxe" % format_mac(parse_mac(mac), "hyphen")


def scenario_inventory() -> str:
    """Molecule's inventory of the running scenario (converge uses it with inventories/lab)."""
    ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "")
    path = os.path.join(ephemeral, "inventory")
    if not (ephemeral and os.path.isdir(path)):
        raise LabError("no molecule inventory (MOLECULE_EPHEMERAL_DIRECTORY=%r)" % ephemeral)
    return path


def generated_inventory() -> str:
    """How to reach the lab's PXE servers: molecule's inventory inside a scenario, else the
    inventory `lab.py up` wrote (recorded in the lab's state file)."""
    if os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY"):
        return scenario_inventory()
    state = read_json(STATE_FILE) or {}
    path = state.get("inventory")
    if not (isinstance(path, str) and os.path.isfile(path)):
        raise LabError("the lab is not up (no inventory in %s): run `lab.py up` first" % STATE_FILE)
    return path


def ansible_command(name: str) -> str:
    """An Ansible command of this Python's installation (the venv's), else from PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.path.exists(beside) else (shutil.which(name) or name)


@functools.lru_cache(maxsize=None)
def _inventory_list(sources: tuple[str, ...]) -> dict[str, Any]:
    command = [ansible_command("ansible-inventory"), "--list"]
    for source in sources:
        command += [source] if source.startswith("--") else ["-i", source]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(PROJECT, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=PROJECT, timeout=300, check=False)
    if run.returncode != 0:
        raise LabError("%s failed (%d): %s" % (" ".join(command), run.returncode, run.stderr[-2000:]))
    return json.loads(run.stdout)


class LabFacts:
    """What one set of inventory sources says about the lab."""

    def __init__(self, listing: Mapping[str, Any]) -> None:
        self.hostvars: Mapping[str, Mapping[str, Any]] = listing.get("_meta", {}).get("hostvars", {})
        self._groups = {name: group for name, group in listing.items() if name != "_meta"}

    def hosts_of(self, group: str) -> list[str]:
        """Every host of a group, its child groups' included, sorted."""
        found: set[str] = set()
        pending, seen = [group], set()
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            entry = self._groups.get(name, {})
            found.update(entry.get("hosts", []))
            pending.extend(entry.get("children", []))
        return sorted(found)

    @property
    def servers(self) -> dict[str, str]:
        """PXE server name -> its address on the lab network (ansible_host)."""
        return {name: str(self.hostvars[name].get("ansible_host", name)) for name in self.hosts_of(SERVER_GROUP)}

    def _first_server(self) -> str:
        names = self.hosts_of(SERVER_GROUP)
        if not names:
            raise LabError("no host in group %s: is the lab up?" % SERVER_GROUP)
        return names[0]

    @property
    def server_vars(self) -> Mapping[str, Any]:
        """The variables of the first PXE server (pxe01): the group vars every server shares."""
        return self.hostvars[self._first_server()]

    @property
    def server_address(self) -> str:
        """The first PXE server's address (pxe01)."""
        return self.servers[self._first_server()]

    @property
    def http_base(self) -> str:
        return "http://%s" % self.server_address

    @property
    def backend(self) -> str:
        return str(self.server_vars.get("pxe_dhcp_backend", "kea"))

    @property
    def menu_default(self) -> str:
        return str(self.server_vars["pxe_ipxe_menu_default"])

    @property
    def subnets(self) -> list[Subnet]:
        found = []
        for subnet in self.server_vars.get("pxe_subnets", []):
            first, _sep, last = str(subnet["pool"]).partition("-")
            found.append(Subnet(str(subnet["cidr"]), (first.strip(), last.strip()), subnet.get("gateway")))
        return found

    def subnet(self, cidr: str) -> Subnet:
        for subnet in self.subnets:
            if subnet.cidr == cidr:
                return subnet
        raise LabError("no subnet %s in the inventory (%s)" % (cidr, [s.cidr for s in self.subnets]))

    @property
    def nodes(self) -> dict[str, Node]:
        """Every node of group pxe_nodes, by name."""
        nodes = {}
        servers = self.hosts_of(SERVER_GROUP)
        default_loader = str(self.hostvars.get(servers[0], {}).get("pxe_loader", "ipxe")) if servers else "ipxe"
        for name in self.hosts_of("pxe_nodes"):
            variables = self.hostvars.get(name, {})
            profiles = [p for p in variables.get("pxe_profiles", {}) if name in self.hosts_of(p)]
            if len(profiles) != 1:
                raise LabError("node %s is in %d profile groups: %s" % (name, len(profiles), profiles))
            macs = variables["pxe_mac"]
            macs = macs if isinstance(macs, list) else [macs]
            ip = variables.get("pxe_ip")
            nodes[name] = Node(name, profiles[0], tuple(parse_mac(mac) for mac in macs), str(ip) if ip else None,
                               str(variables.get("pxe_boot", "install")),
                               str(variables.get("pxe_loader", default_loader)),
                               str(variables.get("pxe_arch", "amd64")))
        return nodes


def dhcp_option_layers(node: str, *extra_inventories: str) -> tuple[Any, Any]:
    """(the pxe_dhcp_options of the node's groups, the node's own) as the inventory sets them,
    apart: the boot plan merges them option by option (the node's win), where Ansible's
    hostvars would replace the groups' mapping by the node's. Read with
    ``ansible-inventory --export``, which keeps group variables with their groups."""
    listing = _inventory_list(tuple(("--export",) + (LAB_INVENTORY, *extra_inventories)))
    facts = LabFacts(listing)
    own = facts.hostvars.get(node, {}).get("pxe_dhcp_options")
    # The node's groups from the outermost in (all, pxe_nodes, worker): a deeper group's
    # mapping replaces an outer one's, as Ansible's variable precedence does.
    chain: list[str] = []
    pending = ["all"]
    while pending:
        group = pending.pop(0)
        if group in chain or node not in facts.hosts_of(group):
            continue
        chain.append(group)
        pending.extend(facts._groups.get(group, {}).get("children", []))  # pylint: disable=protected-access
    groups_value = None
    for group in chain:
        value = facts._groups.get(group, {}).get("vars", {}).get("pxe_dhcp_options")  # pylint: disable=protected-access
        if value is not None:
            groups_value = value
    return groups_value, own


def lab_facts(*extra_inventories: str) -> LabFacts:
    """The generated inventory, inventories/lab and a scenario's own inventories, in that
    order (read once per process and set of sources)."""
    sources = (generated_inventory(), LAB_INVENTORY, *extra_inventories)
    return LabFacts(_inventory_list(tuple(sources)))


def inventory_facts(sources: Sequence[str]) -> LabFacts:
    """What the given inventory sources say, for a test that brings its own inventory."""
    return LabFacts(_inventory_list(tuple(sources)))
