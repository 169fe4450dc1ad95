# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""labkit.foreign without a lab: the foreign DHCP server's configuration and lease reading."""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lab"))

from labkit import foreign  # noqa: E402  # pylint: disable=wrong-import-position


def test_the_foreign_server_hands_out_addresses_and_nothing_to_boot_from(tmp_path):
    config = foreign.kea_config(tmp_path / "leases4.csv")["Dhcp4"]
    text = json.dumps(config)
    for word in ("boot-file-name", "next-server", "client-classes", "option-data", "reservations", "hooks"):
        assert word not in text, word
    assert config["subnet4"] == [{"id": 1, "subnet": "192.0.2.0/24", "pools": [{"pool": "192.0.2.100 - 192.0.2.199"}]}]
    assert config["interfaces-config"]["interfaces"] == [foreign.FOREIGN_LINK]
    assert config["lease-database"]["name"] == str(tmp_path / "leases4.csv")


def test_its_address_is_a_lab_address_outside_the_pool_and_the_pxe_hosts():
    assert foreign.FOREIGN_ADDRESS.startswith("192.0.2.")
    last = int(foreign.FOREIGN_ADDRESS.rsplit(".", 1)[1])
    assert last > 199 and last not in (1, 254)  # the bridge, the far network's router
    assert len(foreign.FOREIGN_LINK) <= 15 and len(foreign.LAB_PEER) <= 15  # Linux interface names


def test_leases_keep_the_last_line_of_each_address(tmp_path):
    path = tmp_path / "leases4.csv"
    assert foreign.leases(path) == []
    path.write_text("address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state\n"
                    "192.0.2.100,52:54:00:00:11:01,,600,1,1,0,0,,0\n"
                    "192.0.2.101,52:54:00:00:12:01,,600,1,1,0,0,,0\n"
                    "192.0.2.100,52:54:00:00:11:01,,600,2,1,0,0,,0\n")
    leases = foreign.leases(path)
    assert [(row["address"], row["hwaddr"], row["expire"]) for row in leases] == [
        ("192.0.2.100", "52:54:00:00:11:01", "2"), ("192.0.2.101", "52:54:00:00:12:01", "1")]
