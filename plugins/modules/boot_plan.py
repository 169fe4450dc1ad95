#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# The work happens in the action plugin of the same name, on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: boot_plan
short_description: Build and validate the PXE boot plan from the inventory
version_added: 0.1.0
description:
  - Reads C(pxe_subnets), C(pxe_profiles) and every host of the nodes group once, on the
    controller, checks all of it and returns the boot plan as the fact O(fact_name).
  - A node's profile is the one C(pxe_profiles) group it belongs to.
  - The plan is returned as one JSON string, which every filter and module of the collection
    takes as it is (decode it with C(from_json) to look inside). Ansible pays per object for
    task results and templating; for ten thousand nodes a nested structure costs seconds at
    every use, a string next to nothing.
  - Every problem is collected before failing, each naming the host, profile or subnet and
    the field, so one run lists them all. Nothing is contacted and nothing is changed.
author:
  - centra.pxe engineers (@centra)
options:
  subnets:
    description: The C(pxe_subnets) list of the inventory contract.
    type: raw
  profiles:
    description: The C(pxe_profiles) mapping of the inventory contract; keys are group names.
    type: raw
  nodes_group:
    description: The inventory group whose hosts are the nodes.
    type: str
    default: pxe_nodes
  servers_group:
    description: The group of PXE servers; their C(ansible_host) addresses may not be given to nodes.
    type: str
    default: pxe_servers
  base_dir:
    description: Where relative asset C(src) paths start. Defaults to the inventory's directory.
    type: path
  fact_name:
    description: The name of the fact the plan is returned in.
    type: str
    default: centra_pxe_plan
attributes:
  check_mode:
    description: Runs as usual; it never changes anything.
    support: full
  diff_mode:
    description: Nothing to show; it never changes anything.
    support: none
  action:
    description: Runs on the controller as an action plugin.
    support: full
notes:
  - Node variables (C(pxe_mac), C(pxe_ip), C(pxe_boot)) are read from the inventory
    (inventory files and C(host_vars)/C(group_vars) beside them), not from play or extra vars.
"""

EXAMPLES = r"""
- name: Build the boot plan once for the play
  centra.pxe.boot_plan:
    subnets: "{{ pxe_subnets | default(omit) }}"
    profiles: "{{ pxe_profiles | default(omit) }}"
  run_once: true
"""

RETURN = r"""
ansible_facts:
  description: The plan as a JSON string, under O(fact_name).
  returned: success
  type: dict
digest:
  description: sha256 of the plan; the configuration version served at C(/healthz).
  returned: success
  type: str
counts:
  description: How many subnets, profiles, nodes and MACs the plan holds.
  returned: success
  type: dict
problems:
  description: Every problem found, one line each, naming where and the field.
  returned: failure
  type: list
  elements: str
"""
