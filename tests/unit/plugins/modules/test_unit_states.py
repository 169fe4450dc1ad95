# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest

from ansible_collections.centra.pxe.plugins.modules.unit_states import parse_show, unit_name

# What systemctl 252 (Debian 12) prints for
# systemctl show --property=LoadState,ActiveState,SubState,FragmentPath,MainPID -- a b c
SHOW = """MainPID=1503
LoadState=loaded
ActiveState=active
SubState=running
FragmentPath=/lib/systemd/system/kea-dhcp4-server.service

MainPID=0
LoadState=not-found
ActiveState=inactive
SubState=dead
FragmentPath=

MainPID=0
LoadState=loaded
ActiveState=failed
SubState=failed
FragmentPath=/etc/systemd/system/tftpd-hpa.service
"""


def test_blocks_map_to_the_names_in_order():
    units = parse_show(SHOW, ["kea-dhcp4-server", "isc-dhcp-server", "tftpd-hpa"])
    assert units["kea-dhcp4-server"] == {"load_state": "loaded", "active_state": "active", "sub_state": "running",
                                         "fragment_path": "/lib/systemd/system/kea-dhcp4-server.service",
                                         "main_pid": 1503}
    assert units["isc-dhcp-server"]["load_state"] == "not-found" and units["isc-dhcp-server"]["main_pid"] == 0
    assert units["tftpd-hpa"]["active_state"] == "failed"


def test_a_missing_block_is_an_error_not_a_shifted_answer():
    with pytest.raises(ValueError, match="answered for 3 units, not 4"):
        parse_show(SHOW, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="answered for 0 units, not 1"):
        parse_show("", ["a"])


def test_unit_names_default_to_services():
    assert unit_name("nginx") == "nginx.service"
    assert unit_name("centra-pxe-firewall.service") == "centra-pxe-firewall.service"
    assert unit_name("systemd-networkd.socket") == "systemd-networkd.socket"
