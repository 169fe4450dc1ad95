# SPDX-License-Identifier: GPL-3.0-or-later
"""The IPv6 lab network without the lab: addresses, the networkd drop-in, the router
advertisement's bytes, OVMF's fw_cfg switches, and `boot --ipv6` / `up --ipv6` arguments.

    python -m pytest -q -p no:cacheprovider tests/unit/lab
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[2] / "lab"
sys.path.insert(0, str(LAB))

import lab  # noqa: E402  pylint: disable=wrong-import-position
from labkit import boot, net6  # noqa: E402  pylint: disable=wrong-import-position
from labkit.common import LabError  # noqa: E402  pylint: disable=wrong-import-position

DOC6 = ipaddress.IPv6Network("2001:db8::/32")


def request_of(*argv: str) -> boot.BootRequest:
    return lab.boot_request(lab.parser().parse_args(["boot", *argv]))


def fw_cfg(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-fw_cfg"]


def test_addresses_are_documentation_addresses_beside_the_ipv4_ones() -> None:
    assert ipaddress.IPv6Network(net6.NETWORK6).subnet_of(DOC6)
    assert net6.host_address6(1) == "2001:db8:0:1::2"
    assert net6.host_address6(8) == "2001:db8:0:1::9"
    assert ipaddress.IPv6Address(net6.BRIDGE_ADDRESS6) in ipaddress.IPv6Network(net6.NETWORK6)


def test_the_host_dropin_adds_the_address_and_a_link_local(tmp_path: Path) -> None:
    net6.write_host_dropin(tmp_path, 2)
    text = (tmp_path / "etc/systemd/network/10-lab-host0.network.d/50-ipv6.conf").read_text()
    assert "Address=2001:db8:0:1::3/64" in text
    assert "LinkLocalAddressing=ipv6" in text and "IPv6AcceptRA=no" in text


def test_the_router_advertisement_says_dhcpv6_on_link_and_no_default_router() -> None:
    mac = bytes.fromhex("525400aabbcc")
    ra = net6.router_advertisement(mac)
    kind, code, _checksum, hop_limit, flags, router_lifetime = struct.unpack("!BBHBBH", ra[:8])
    assert (kind, code, hop_limit) == (134, 0, 64)
    assert flags & 0x80 and not flags & 0x40        # managed: addresses from DHCPv6
    assert router_lifetime == 0                     # not a default router: nothing routed
    options = ra[16:]
    assert options[:2] == b"\x01\x01" and options[2:8] == mac
    prefix = options[8:]
    opt_type, length, prefix_len, prefix_flags = struct.unpack("!BBBB", prefix[:4])
    assert (opt_type, length, prefix_len) == (3, 4, 64)
    assert prefix_flags & 0x80 and not prefix_flags & 0x40  # on-link, no SLAAC
    assert socket.inet_ntop(socket.AF_INET6, prefix[16:32]) == "2001:db8:0:1::"
    assert len(ra) == 16 + 8 + 32
    with pytest.raises(ValueError):
        net6.router_advertisement(b"\x00" * 5)


def test_ipv4_boots_keep_their_fw_cfg() -> None:
    plain = argv_of(request_of("--mac", "52:54:00:00:01:01", "--firmware", "uefi"))
    assert fw_cfg(plain) == ["name=opt/org.tianocore/IPv6Support,string=no"]
    http = argv_of(request_of("--mac", "52:54:00:00:01:01", "--firmware", "uefi", "--http-boot"))
    assert fw_cfg(http) == ["name=opt/org.tianocore/IPv6Support,string=no",
                            "name=opt/org.tianocore/IPv4PXESupport,string=no",
                            "name=opt/org.tianocore/IPv6PXESupport,string=no"]


def test_ipv6_boots_switch_ipv4_off() -> None:
    pxe6 = request_of("--mac", "52:54:00:00:01:01", "--firmware", "uefi", "--ipv6")
    assert pxe6.ipv6
    assert fw_cfg(argv_of(pxe6)) == ["name=opt/org.tianocore/IPv4Support,string=no"]
    http6 = request_of("--mac", "52:54:00:00:01:01", "--firmware", "uefi", "--ipv6", "--http-boot")
    assert fw_cfg(argv_of(http6)) == ["name=opt/org.tianocore/IPv4Support,string=no",
                                      "name=opt/org.tianocore/IPv4PXESupport,string=no",
                                      "name=opt/org.tianocore/IPv6PXESupport,string=no"]
    assert not request_of("--mac", "52:54:00:00:01:01", "--firmware", "uefi").ipv6


def test_ipv6_boot_needs_uefi() -> None:
    with pytest.raises(LabError, match="--ipv6 needs --firmware uefi"):
        boot.validate(request_of("--mac", "52:54:00:00:01:01", "--firmware", "bios", "--ipv6"))


def test_up_ipv6_is_an_option_beside_the_contract() -> None:
    args = lab.parser().parse_args(["up", "--ipv6"])
    assert args.ipv6
    assert not lab.parser().parse_args(["up"]).ipv6


def test_the_state_record_round_trips() -> None:
    record = net6.Ipv6Lab(log_path=Path("/tmp/ra.log"))
    data = record.to_json()
    assert data["network"] == "2001:db8:0:1::/64" and data["ra"] is None
    assert net6.Ipv6Lab.from_json(data).log_path == Path("/tmp/ra.log")


def argv_of(request: boot.BootRequest) -> list[str]:
    return boot.qemu_argv(request, boot.plan_nics(request), Path("/tmp/serial.log"), Path("/tmp/q.qmp"))
