# SPDX-License-Identifier: GPL-3.0-or-later
"""kea-dhcp6 itself, on the configuration the renderer writes: every row of the boot policy
table asked on the wire (labkit.dhcp6_probe: SOLICITs as UEFI and iPXE send them) and the
ADVERTISE compared with decide6(); reservations by DUID and by MAC (Kea learns it from a
DUID-LL). Runs in a network namespace of its own (unshare -n: a veth pair, 2001:db8:0:1::/64
only, nothing else reachable), so it needs root; the lab's molecule scenario (molecule/ipv6)
does the same against the PXE host."""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import build_plan
from ansible_collections.centra.pxe.plugins.plugin_utils._render_kea6 import (
    boot_file_url,
    decide6,
    kea_dhcp6_config,
    v6_boot_server,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
LAB = os.path.join(ROOT, "tests", "lab")
sys.path.insert(0, LAB)

from labkit.dhcp6_probe import CASES  # noqa: E402  pylint: disable=wrong-import-position

ASSET = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}
DUID = "00:03:00:01:02:ce:aa:bb:cc:dd"
SERVER = {"name": "pxe01", "interface": "v0", "address6": "2001:db8:0:1::2", "cidr6": "2001:db8:0:1::/64",
          "http_port": 80, "loaders": {"bios": "undionly.kpxe", "efi64": "ipxe.efi", "arm64": "arm64.efi"}}
SCRIPT = r"""
set -e
ip link set lo up
ip link add v0 type veth peer name v1
sysctl -q -w net.ipv6.conf.v0.accept_dad=0 net.ipv6.conf.v1.accept_dad=0
ip link set v0 up; ip link set v1 up
ip -6 addr add 2001:db8:0:1::2/64 dev v0 nodad
KEA_PIDFILE_DIR="$WORK" KEA_LOCKFILE_DIR="$WORK" kea-dhcp6 -c "$WORK/kea6.json" > "$WORK/kea.log" 2>&1 &
kea=$!
trap 'kill $kea' EXIT
for i in $(seq 50); do grep -q DHCP6_STARTED "$WORK/kea.log" && break; sleep 0.2; done
python3 -m labkit.dhcp6_probe --iface v1 --timeout 4
python3 -m labkit.dhcp6_probe --iface v1 --timeout 4 --case arch7 --duid "$DUID"
python3 -m labkit.dhcp6_probe --iface v1 --timeout 4 --case arch7 --duid 00:03:00:01:52:54:00:00:61:01
python3 -m labkit.dhcp6_probe --iface v1 --timeout 4 --case arch7 --want "$WANT"
python3 -m labkit.dhcp6_probe --iface v1 --timeout 4 --case arch7 --duid "$DUID" --want "$WANT"
"""
# The DHCPv6 options of the plan below: the subnet's, the worker group's over them, node n2's
# over both (ntp-servers); asked for on the wire, by a pool client and by n2.
SUBNET_OPTIONS = {"domain-search": ["lab.example.net", "example.net"], "ntp-servers": ["2001:db8:0:1::3"],
                  "sntp-servers": ["2001:db8:0:1::3"], 300: {"type": "text", "value": "centra-lab"}}
GROUP_OPTIONS = {"new-posix-timezone": "CET-1CEST"}
NODE_OPTIONS = {"ntp-servers": ["2001:db8:0:1::4", "2001:db8:0:1::5"]}
WANT = (24, 31, 41, 56, 300)


def _can_unshare() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None and \
        subprocess.run(["unshare", "-n", "true"], check=False).returncode == 0


@pytest.fixture(scope="module")
def wire(tmp_path_factory):
    if not _can_unshare():
        pytest.skip("needs root and unshare -n (a private network namespace)")
    kea = shutil.which("kea-dhcp6") or shutil.which("kea-dhcp6", path="/usr/sbin:/sbin")
    assert kea, "kea-dhcp6 is not installed: scripts/setup.sh installs kea-dhcp6-server"
    work = tmp_path_factory.mktemp("kea6")
    plan = build_plan(
        [{"cidr": "192.0.2.0/24"}, {"cidr": "2001:db8:0:1::/64", "pool": "2001:db8:0:1::1000-2001:db8:0:1::1fff",
                                    "options": SUBNET_OPTIONS}],
        {"worker": {"kernel": ASSET, "initrd": ASSET}},
        {"n1": {"groups": ["worker"], "pxe_mac": "52:54:00:00:61:01", "pxe_ip6": "2001:db8:0:1::61"},
         "n2": {"groups": ["worker"], "pxe_mac": "52:54:00:00:62:01", "pxe_ip6": "2001:db8:0:1::62", "pxe_duid": DUID,
                "group_dhcp6_options": GROUP_OPTIONS, "pxe_dhcp6_options": NODE_OPTIONS}})
    settings = {"interfaces": ["v0"], "lease_file": str(work / "leases6.csv"), "control_socket": str(work / "c6.sock"),
                "valid_lifetime": 3600, "socket_retries": 5, "socket_retry_wait_ms": 1000, "log_severity": "INFO"}
    config = kea_dhcp6_config(plan, SERVER, settings)
    # Only here: the build machine may have no /var/lib/kea for the server's DUID file.
    config["Dhcp6"]["server-id"] = {"type": "LL", "persist": False}
    (work / "kea6.json").write_text(json.dumps(config))
    env = dict(os.environ, WORK=str(work), DUID=DUID, PYTHONPATH=LAB, PATH=os.environ["PATH"] + ":/usr/sbin:/sbin",
               WANT=",".join(map(str, WANT)))
    run = subprocess.run(["unshare", "-n", "bash", "-c", SCRIPT], cwd=LAB, env=env, capture_output=True, text=True,
                         timeout=180, check=False)
    assert run.returncode == 0, run.stdout + run.stderr + (work / "kea.log").read_text(errors="replace")[-3000:]
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    return {a["case"]: a for a in lines[:-4]}, lines[-4:-2], lines[-2:]


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_kea_dhcp6_answers_every_row_as_the_policy_says(wire, case):
    got = wire[0][case]
    _name, arch, user_class, _vendor = next(c for c in CASES if c[0] == case)
    boot = v6_boot_server(SERVER)
    expected = decide6(boot, arch=arch, user_class=user_class)
    assert got["advertise"] and got["address"].startswith("2001:db8:0:1::1"), got  # a pool address
    assert got["bootfile_url"] == boot_file_url(boot, expected), (got, expected)
    if expected.kind == "http":
        assert got["vendor_class"] == {"enterprise": 343, "data": ["HTTPClient"]}, got
    else:
        assert got["vendor_class"] is None, got


def test_reservations_by_duid_and_by_mac(wire):
    by_duid, by_mac = wire[1]
    assert by_duid["address"] == "2001:db8:0:1::62"
    assert by_mac["address"] == "2001:db8:0:1::61"  # the DUID-LL of node n1's MAC: Kea's hw-address


def _ntp6(*addresses: str) -> str:
    """RFC 5908's option 56 payload: a server-address suboption per address."""
    return "".join("00010010" + ipaddress.IPv6Address(a).packed.hex() for a in addresses)


def _domains(*names: str) -> str:
    return "".join("".join("%02x%s" % (len(label), label.encode().hex()) for label in name.split(".")) + "00"
                   for name in names)


def test_the_subnet_options_reach_a_pool_client(wire):
    pool_client, _node = wire[2]
    assert pool_client["address"].startswith("2001:db8:0:1::1"), pool_client
    assert pool_client["options"] == {
        "24": _domains("lab.example.net", "example.net"),
        "31": ipaddress.IPv6Address("2001:db8:0:1::3").packed.hex(),
        "56": _ntp6("2001:db8:0:1::3"),
        "300": b"centra-lab".hex(),
    }, pool_client  # no 41: that is the worker group's, and a pool client is no node


def test_a_node_gets_its_groups_and_its_own_options_over_the_subnets(wire):
    _pool, node = wire[2]
    assert node["address"] == "2001:db8:0:1::62", node
    assert node["options"]["56"] == _ntp6("2001:db8:0:1::4", "2001:db8:0:1::5"), node   # the node's own
    assert node["options"]["41"] == b"CET-1CEST".hex(), node                         # its group's
    assert node["options"]["24"] == _domains("lab.example.net", "example.net"), node  # the subnet's
