# SPDX-License-Identifier: GPL-3.0-or-later
"""The DHCPv6 probe's packets without a network: what it sends, and how it reads an ADVERTISE."""

from __future__ import annotations

import socket
import struct
import sys
from pathlib import Path

LAB = Path(__file__).resolve().parents[2] / "lab"
sys.path.insert(0, str(LAB))

from labkit import dhcp6_probe as probe  # noqa: E402  pylint: disable=wrong-import-position


def test_a_solicit_carries_what_uefi_and_ipxe_send():
    packet = probe.solicit(0x123456, probe.duid_ll(bytes.fromhex("02ce00000001")), 16, None,
                           "HTTPClient:Arch:00016:UNDI:003016")
    assert packet[0] == probe.SOLICIT and packet[1:4] == b"\x12\x34\x56"
    options = probe.parse_options(packet[4:])
    assert options[probe.OPT_CLIENTID] == [b"\x00\x03\x00\x01\x02\xce\x00\x00\x00\x01"]
    assert options[probe.OPT_CLIENT_ARCH] == [b"\x00\x10"]
    assert struct.unpack("!HH", options[probe.OPT_ORO][0]) == (59, 23)
    assert probe.vendor_class_strings(options[probe.OPT_VENDOR_CLASS][0]) == (343, ["HTTPClient:Arch:00016:UNDI:003016"])
    ipxe = probe.parse_options(probe.solicit(1, b"\x00\x03\x00\x01" + b"\x02" * 6, 7, b"iPXE", None)[4:])
    assert ipxe[probe.OPT_USER_CLASS] == [b"\x00\x04iPXE"] and probe.OPT_VENDOR_CLASS not in ipxe
    assert probe.OPT_CLIENT_ARCH not in probe.parse_options(probe.solicit(1, b"\x00\x03\x00\x01", None, None, None)[4:])


def test_an_advertise_is_read():
    iaaddr = probe.option(probe.OPT_IAADDR, socket.inet_pton(socket.AF_INET6, "2001:db8:0:1::1000")
                          + struct.pack("!II", 3600, 3600))
    body = (probe.option(probe.OPT_IA_NA, struct.pack("!III", 1, 0, 0) + iaaddr)
            + probe.option(probe.OPT_BOOTFILE_URL, b"tftp://[2001:db8:0:1::2]/ipxe.efi")
            + probe.option(probe.OPT_VENDOR_CLASS, struct.pack("!IH", 343, 10) + b"HTTPClient"))
    answer = probe.parse_advertise(struct.pack("!I", (probe.ADVERTISE << 24) | 42) + body)
    options = answer.pop("options")
    assert answer == {"type": 2, "xid": 42, "bootfile_url": "tftp://[2001:db8:0:1::2]/ipxe.efi",
                      "vendor_class": {"enterprise": 343, "data": ["HTTPClient"]}, "address": "2001:db8:0:1::1000"}
    assert sorted(options) == ["16", "3", "59"] and options["59"] == b"tftp://[2001:db8:0:1::2]/ipxe.efi".hex()


def test_more_options_are_requested():
    oro = probe.parse_options(probe.solicit(1, b"\x00\x03\x00\x01" + b"\x02" * 6, 7, None, None, (24, 56))[4:])
    assert oro[probe.OPT_ORO] == [struct.pack("!4H", probe.OPT_BOOTFILE_URL, 23, 24, 56)]


def test_every_policy_case_is_probed():
    names = [c[0] for c in probe.CASES]
    assert len(names) == len(set(names))
    assert {"absent", "arch7", "arch9", "arch16", "arch19", "ipxe_user_class", "arch_unknown"} <= set(names)
