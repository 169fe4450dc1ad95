"""Self-test of the lab harness, independent of the collection's roles.

Brings the lab up, sets up a minimal PXE service by hand inside pxe01 (ISC dhcpd that
answers as the collection's boot policy table says, tftpd-hpa, nginx, all installed
offline from the apt cache that `up` filled), PXE-boots QEMU machines (BIOS, UEFI, UEFI
HTTP boot, a two-NIC machine booting from its second NIC, two boots at once), checks the
failure and cleanup paths, and takes the lab down. Timings go to
tests/lab/.state/selftest-timings.json.

Only runs when asked, as root (scripts/test.sh's `harness` stage does):
    CENTRA_LAB=1 PYTHONPATH=tests/lab:.ansible/collections .venv/bin/python -m pytest -s tests/lab
CENTRA_LAB_COLD=1 additionally empties the cache first (measures a cold debootstrap).
Exercises the CLI exactly as outside tests do: through subprocess calls of lab.py.
"""
from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from labkit.common import BRIDGE_NETWORK, NETNS
from labkit.facts import inventory_facts

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import (
    IPXE_USER_CLASS, BootServer, configured_rules, decide)

pytestmark = [
    pytest.mark.skipif(os.environ.get("CENTRA_LAB") != "1",
                       reason="lab self-test: set CENTRA_LAB=1 (needs root, ~5 minutes)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

LAB_DIR = Path(__file__).resolve().parent
LAB = [sys.executable, str(LAB_DIR / "lab.py")]
CACHE_DIR = Path(os.environ.get("CENTRA_LAB_CACHE", "/var/cache/centra-pxe-lab"))
TIMINGS_FILE = LAB_DIR / ".state" / "selftest-timings.json"
TIMINGS: dict[str, float] = {}
LAB_NETWORK = ipaddress.ip_network(BRIDGE_NETWORK)
# The loaders of Debian's ipxe package, in the slots of the boot policy table.
LOADERS = {"bios": "undionly.kpxe", "efi64": "ipxe.efi"}


def boot_server(address: str) -> BootServer:
    return BootServer(address, f"http://{address}", LOADERS)


def dhcpd_conf(server: BootServer) -> str:
    """The smallest dhcpd that answers as the collection's boot policy table says: one
    branch for iPXE, then one per row of the table, each with decide()'s answer."""
    branches = [("exists user-class and option user-class = \"%s\"" % IPXE_USER_CLASS.decode(),
                 decide(server, user_class=IPXE_USER_CLASS))]
    for rule, answer in configured_rules(server):
        tests = ["not exists arch" if code is None else "option arch = 00:%02x" % code for code in rule.arch_codes]
        branches.append((" or ".join(tests), answer))
    lines = []
    for index, (test, answer) in enumerate(branches):
        lines.append("  %sif %s {" % ("" if index == 0 else "} els", test))
        if answer.vendor_class:
            lines.append("    option vendor-class-identifier \"%s\";" % answer.vendor_class)
        if answer.filename:
            lines.append("    filename \"%s\";" % answer.filename)
    lines.append("  }")  # anything else: no boot file (decide() for an unknown architecture)
    pool = list(LAB_NETWORK.hosts())[99:199]
    return "\n".join([
        "# centra.pxe lab self-test: the smallest dhcpd that follows the boot policy table.",
        "option arch code 93 = unsigned integer 16;",
        "authoritative;",
        "ddns-update-style none;",
        "default-lease-time 600;",
        "max-lease-time 600;",
        "subnet %s netmask %s {" % (LAB_NETWORK.network_address, LAB_NETWORK.netmask),
        "  range %s %s;" % (pool[0], pool[-1]),
        "  next-server %s;" % server.address,
        *lines,
        "}",
    ]) + "\n"


# Debian's 2019 iPXE under EFI needs initrd=<name> on the kernel line. centra.mac
# tells the test which NIC iPXE booted from (${mac}: the booting NIC's MAC).
KERNEL_ARGS = ("initrd=initrd.img console=ttyS0,115200 panic=-1 centra.profile=selftest "
               "centra.mac=${mac}")


def boot_ipxe(server: BootServer) -> str:
    return (f"#!ipxe\necho centra.pxe lab self-test: booting ${{mac}}\n"
            f"kernel {server.http_base}/vmlinuz {KERNEL_ARGS}\ninitrd {server.http_base}/initrd.img\nboot\n")


# {loader_dir}: where the table's HTTP answers point (BootServer.http_loader_dir).
SETUP_SCRIPT = """\
set -eu
export DEBIAN_FRONTEND=noninteractive
# Install from the apt cache only (the container has no way out), services not started yet.
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
apt-get install -y -q --no-download --no-install-recommends \
    isc-dhcp-server tftpd-hpa nginx-light ipxe >/tmp/selftest-apt.log
rm -f /usr/sbin/policy-rc.d
mkdir -p /srv/tftp
cp /usr/lib/ipxe/undionly.kpxe /usr/lib/ipxe/ipxe.efi /srv/tftp/
mkdir -p /var/www/html/{loader_dir}
cp /usr/lib/ipxe/ipxe.efi /var/www/html/{loader_dir}/ipxe.efi
mv /tmp/dhcpd.conf /etc/dhcp/dhcpd.conf
sed -i 's/^INTERFACESv4=.*/INTERFACESv4="host0"/' /etc/default/isc-dhcp-server
dhcpd -t -cf /etc/dhcp/dhcpd.conf
systemctl restart isc-dhcp-server tftpd-hpa nginx
systemctl is-active isc-dhcp-server tftpd-hpa nginx
"""


# --- helpers ------------------------------------------------------------------------------


def lab(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run lab.py like an outside test would; show its stderr when it fails."""
    result = subprocess.run([*LAB, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"lab.py {' '.join(args)} exited {result.returncode}\n"
                    f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def timed_lab(key: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = lab(*args, **kwargs)
    TIMINGS[key] = round(time.monotonic() - started, 1)
    return result


def ssh(inventory_host: dict[str, str], command: str, stdin: bytes | None = None) -> str:
    """ssh exactly as the inventory says (key, options, namespace relay)."""
    argv = ["ssh", "-i", inventory_host["key"], "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            *split_ssh_args(inventory_host["ssh_args"]), f"root@{inventory_host['address']}",
            command]
    result = subprocess.run(argv, input=stdin, capture_output=True, timeout=300, check=False)
    if result.returncode != 0:
        pytest.fail(f"ssh {command!r} failed ({result.returncode}):\n"
                    f"{result.stdout.decode(errors='replace')}\n"
                    f"{result.stderr.decode(errors='replace')}")
    return result.stdout.decode(errors="replace")


def split_ssh_args(text: str) -> list[str]:
    return shlex.split(text)


def read_inventory(path: Path) -> dict[str, str]:
    """pxe01's connection settings, from the inventory `up` wrote (read by labkit.facts)."""
    values = inventory_facts([str(path)]).hostvars["pxe01"]
    return {"address": values["ansible_host"], "key": values["ansible_ssh_private_key_file"],
            "ssh_args": values["ansible_ssh_common_args"],
            "interface": values["pxe_interface"]}


def boot(key: str, *args: str) -> dict[str, Any]:
    """`lab.py boot ... --json`; returns the parsed object (and records the time)."""
    started = time.monotonic()
    result = lab("boot", "--json", *args, check=False, timeout=400)
    TIMINGS[key] = round(time.monotonic() - started, 1)
    try:
        data: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"boot printed no JSON (exit {result.returncode}):\n{result.stdout}\n"
                    f"{result.stderr}")
    assert result.returncode == (0 if data["ok"] else 1)
    return data


def assert_booted(data: dict[str, Any], mac: str) -> None:
    tail = "\n".join(data.get("tail") or [])
    assert data["ok"], f"boot of {mac} failed: {data['reason']}\n{tail}"
    assert data["line"].startswith("PXE-BOOT-OK cmdline=")
    assert "centra.profile=selftest" in data["line"]
    assert f"centra.mac={mac}" in data["line"], "iPXE booted from the wrong NIC"
    assert "console=ttyS0,115200" in data["cmdline"]
    assert Path(data["log"]).is_file()


def lab_taps() -> list[str]:
    out = subprocess.run(["ip", "-n", NETNS, "-o", "link", "show"],
                         capture_output=True, text=True, check=False).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
            if ": cpxet" in line]


# --- the lab, once for the whole module --------------------------------------------------


@pytest.fixture(scope="module")
def pxe01(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    inventory = tmp_path_factory.mktemp("lab") / "inventory.yml"
    lab("down")
    if os.environ.get("CENTRA_LAB_COLD") == "1":
        shutil.rmtree(CACHE_DIR, ignore_errors=True)
    first = timed_lab("up_first" + ("_cold" if os.environ.get("CENTRA_LAB_COLD") == "1" else ""),
                      "up", "--inventory", str(inventory))
    assert first.stdout.strip() == str(inventory)
    # A second `up` over a running lab: must clean up the first one and start over.
    timed_lab("up_warm_over_running_lab", "up", "--inventory", str(inventory))
    host = read_inventory(inventory)
    # The contract: pxe01 is the lab network's .2, reached on its host0.
    assert host["address"] == str(LAB_NETWORK[2]) and host["interface"] == "host0"
    server = boot_server(host["address"])
    image_dir = CACHE_DIR / "image"
    started = time.monotonic()
    ssh(host, "cat > /tmp/dhcpd.conf", dhcpd_conf(server).encode())
    ssh(host, "mkdir -p /var/www/html && cat > /var/www/html/%s" % server.script_path, boot_ipxe(server).encode())
    ssh(host, "cat > /var/www/html/vmlinuz", (image_dir / "vmlinuz").read_bytes())
    ssh(host, "cat > /var/www/html/initrd.img", (image_dir / "initrd.img").read_bytes())
    ssh(host, SETUP_SCRIPT.format(loader_dir=server.http_loader_dir))
    TIMINGS["configure_services_offline"] = round(time.monotonic() - started, 1)
    host["inventory"] = str(inventory)
    try:
        yield host
    finally:
        timed_lab("down", "down")
        assert not Path("/run/netns/%s" % NETNS).exists()
        assert not inventory.exists()
        timed_lab("down_again_nothing_up", "down")
        TIMINGS_FILE.parent.mkdir(parents=True, exist_ok=True)
        TIMINGS_FILE.write_text(json.dumps(TIMINGS, indent=2) + "\n")
        print(f"\nlab self-test timings (s): {json.dumps(TIMINGS, indent=2)}")


# --- tests ----------------------------------------------------------------------------------


def test_ansible_reaches_pxe01_through_inventory(pxe01: dict[str, str]) -> None:
    ansible = Path(sys.executable).parent / "ansible"
    if not ansible.exists():
        pytest.skip("ansible is not installed next to this python")
    result = subprocess.run([str(ansible), "-i", pxe01["inventory"], "pxe_servers",
                             "-m", "ansible.builtin.setup", "-a", "filter=ansible_hostname"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"ansible_hostname": "pxe01"' in result.stdout


def test_bios_pxe_boot(pxe01: dict[str, str]) -> None:
    mac = "52:54:00:c0:00:01"
    data = boot("boot_bios", "--mac", mac, "--firmware", "bios")
    assert_booted(data, mac)
    assert data["firmware"] == "bios"


def test_uefi_pxe_boot(pxe01: dict[str, str]) -> None:
    mac = "52:54:00:c0:00:02"
    data = boot("boot_uefi", "--mac", mac, "--firmware", "uefi")
    assert_booted(data, mac)
    # OVMF's own PXE client fetched ipxe.efi by TFTP (option 93 = 7).
    log = Path(data["log"]).read_text(errors="replace")
    assert "Start PXE over IPv4" in log


def test_uefi_http_boot(pxe01: dict[str, str]) -> None:
    mac = "52:54:00:c0:00:03"
    data = boot("boot_uefi_http", "--mac", mac, "--firmware", "uefi", "--http-boot")
    assert_booted(data, mac)
    log = Path(data["log"]).read_text(errors="replace")
    assert "Start HTTP Boot over IPv4" in log
    assert "Start PXE over IPv4" not in log


def test_two_nic_machine_boots_from_second_nic_while_another_boots(pxe01: dict[str, str]) -> None:
    first, second = "52:54:00:c0:01:01", "52:54:00:c0:01:02"
    other = "52:54:00:c0:02:01"
    with ThreadPoolExecutor(max_workers=2) as pool:
        multi = pool.submit(boot, "boot_bios_second_nic_parallel", "--mac", first,
                            "--extra-mac", second, "--boot-nic", "2", "--firmware", "bios")
        single = pool.submit(boot, "boot_uefi_parallel", "--mac", other, "--firmware", "uefi")
        multi_data, single_data = multi.result(), single.result()
    assert_booted(multi_data, second)
    assert multi_data["boot_mac"] == second and multi_data["macs"] == [first, second]
    assert_booted(single_data, other)
    assert lab_taps() == []


def test_killed_boot_is_cleaned_up_and_timeout_reports(pxe01: dict[str, str]) -> None:
    """A `boot` killed with SIGKILL cannot clean up: QEMU must die anyway (PDEATHSIG)
    and its tap is removed by the next `boot`. That next boot times out (4 s is far
    too short), which must exit 1 with the serial tail and leave no tap behind."""
    process = subprocess.Popen([*LAB, "boot", "--mac", "52:54:00:c0:04:01", "--firmware", "bios"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    qemu_pid = None
    deadline = time.monotonic() + 30
    while qemu_pid is None and time.monotonic() < deadline:
        status = json.loads(lab("status").stdout)
        boots = [b for b in status.get("running_boots", []) if b and b.get("qemu")]
        if boots:
            qemu_pid = boots[0]["qemu"]["pid"]
        time.sleep(0.2)
    assert qemu_pid is not None, "the boot never started QEMU"
    process.send_signal(signal.SIGKILL)
    process.wait()
    time.sleep(1)
    assert not Path(f"/proc/{qemu_pid}").exists() or \
        Path(f"/proc/{qemu_pid}/stat").read_text().split(") ")[1].startswith("Z")
    assert len(lab_taps()) == 1, "the killed boot's tap should still be there"
    status = json.loads(lab("status").stdout)
    assert [b["orphaned"] for b in status["running_boots"]] == [True]
    # The next boot collects the orphan (and `down` would too).
    result = lab("boot", "--mac", "52:54:00:c0:04:02", "--firmware", "bios",
                 "--timeout", "4", check=False)
    assert result.returncode == 1
    assert "no PXE-BOOT-OK within 4s" in result.stdout
    assert lab_taps() == []
    assert json.loads(lab("status").stdout)["running_boots"] == []
