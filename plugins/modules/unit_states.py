#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: unit_states
short_description: Read the state of a few systemd units in one call
version_added: 0.3.0
description:
  - Asks systemd (C(systemctl show)) for the load, active and sub state and the unit file
    of each unit named, and returns them by name. Changes nothing.
  - M(ansible.builtin.service_facts) reads every unit and every SysV script of the host
    (over a second on a small host); the roles only need two or three units.
  - A unit systemd does not know is returned with RV(units.load_state=not-found).
author:
  - centra.pxe engineers (@centra)
options:
  names:
    description: Unit names; C(.service) is added to a name without a unit type.
    type: list
    elements: str
    required: true
attributes:
  check_mode:
    description: Reads in check mode too; it never changes anything.
    support: full
  diff_mode:
    description: Nothing to show.
    support: none
"""

EXAMPLES = r"""
- name: Read the state of the DHCP servers
  centra.pxe.unit_states:
    names: [kea-dhcp4-server, isc-dhcp-server]
  register: dhcp_units

- name: Stop ISC dhcpd if it is there
  ansible.builtin.systemd_service:
    name: isc-dhcp-server
    state: stopped
  when: dhcp_units.units['isc-dhcp-server'].load_state != 'not-found'
"""

RETURN = r"""
units:
  description: The state of each unit, by the name given.
  returned: always
  type: dict
  contains:
    load_state:
      description: C(loaded), C(not-found), C(masked), ...
      type: str
    active_state:
      description: C(active), C(inactive), C(failed), C(activating), ...
      type: str
    sub_state:
      description: C(running), C(dead), C(exited), ...
      type: str
    fragment_path:
      description: The unit file systemd loaded (empty if none).
      type: str
    main_pid:
      description: The main process, 0 if none.
      type: int
"""

from ansible.module_utils.basic import AnsibleModule

PROPERTIES = ("LoadState", "ActiveState", "SubState", "FragmentPath", "MainPID")


def unit_name(name):
    return name if "." in name else name + ".service"


def parse_show(text, names):
    """The blocks `systemctl show --property=...` prints, one per unit in the order asked,
    separated by blank lines, as {name: {load_state, active_state, sub_state, fragment_path, main_pid}}."""
    blocks = text.strip("\n").split("\n\n") if text.strip() else []
    if len(blocks) != len(names):
        raise ValueError("systemctl show answered for %d units, not %d" % (len(blocks), len(names)))
    units = {}
    for name, block in zip(names, blocks):
        values = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        units[name] = {
            "load_state": values.get("LoadState", ""),
            "active_state": values.get("ActiveState", ""),
            "sub_state": values.get("SubState", ""),
            "fragment_path": values.get("FragmentPath", ""),
            "main_pid": int(values.get("MainPID") or 0),
        }
    return units


def main():
    module = AnsibleModule(
        argument_spec=dict(names=dict(type="list", elements="str", required=True)),
        supports_check_mode=True,
    )
    names = module.params["names"]
    systemctl = module.get_bin_path("systemctl", required=True)
    argv = [systemctl, "show", "--property=" + ",".join(PROPERTIES), "--"] + [unit_name(n) for n in names]
    rc, out, err = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg="systemctl show failed (rc %d): %s" % (rc, err.strip()), rc=rc)
    try:
        units = parse_show(out, names)
    except ValueError as exc:
        module.fail_json(msg=str(exc), stdout=out)
    module.exit_json(changed=False, units=units)


if __name__ == "__main__":
    main()
