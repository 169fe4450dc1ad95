# SPDX-License-Identifier: GPL-3.0-or-later
"""The server's IPv6 address on the provisioning interface (docs/ipv6.md)."""
from __future__ import annotations

import pytest

from ansible_collections.centra.pxe.plugins.module_utils._endpoint import EndpointError, server_endpoint6

PLAN = {"subnets": [{"cidr": "192.0.2.0/24"}], "subnets6": [{"cidr": "2001:db8:0:1::/64"}]}
FACTS = {
    "interfaces": ["lo", "host0"],
    "host0": {"ipv4": {"address": "192.0.2.2"},
              "ipv6": [{"address": "fe80::5054:ff:fe00:2", "prefix": "64", "scope": "link"},
                       {"address": "2001:db8:0:9::2", "prefix": "64", "scope": "global"},
                       {"address": "2001:db8:0:1::2", "prefix": "64", "scope": "global"},
                       {"address": "2001:db8:0:1::3", "prefix": "64", "scope": "global"}]},
}


def test_no_ipv6_prefix_no_ipv6_endpoint():
    assert server_endpoint6({"subnets": []}, FACTS, "host0") is None


def test_the_first_address_inside_a_prefix_or_the_one_named():
    assert server_endpoint6(PLAN, FACTS, "host0") == {"address6": "2001:db8:0:1::2", "cidr6": "2001:db8:0:1::/64"}
    assert server_endpoint6(PLAN, FACTS, "host0", "2001:db8:0:1:0::3")["address6"] == "2001:db8:0:1::3"


def test_an_interface_without_one_is_an_error_naming_the_prefixes():
    with pytest.raises(EndpointError, match=r"interface lo holds no IPv6 address inside the IPv6 prefixes of "
                                            r"pxe_subnets \(2001:db8:0:1::/64\)"):
        server_endpoint6(PLAN, FACTS, "lo")
    with pytest.raises(EndpointError, match="equal to pxe_server_address6 2001:db8:0:1::9"):
        server_endpoint6(PLAN, FACTS, "host0", "2001:db8:0:1::9")
