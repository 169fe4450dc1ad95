# SPDX-License-Identifier: GPL-3.0-or-later
"""The two loader chains (pxe_loader: ipxe | grub): decide() and the three DHCP renderers
hold together for every row of the table, for nodes of each loader and unknown machines,
with each default loader.

The renderers' output is evaluated here the way each daemon evaluates it, for the small
expression language they emit: Kea (early classes in order, then the reservation's classes,
then the only-if-required ones; the boot file and next-server of the FIRST class in the
packet's order that has one, as Kea 2.2's setFixedFields), dhcpd (the global if/elsif
chain, then the chain of the host's group, which runs after it), dnsmasq (the dhcp-boot
lines whose tags all match). The real daemons are checked by their own checkers here and
by molecule/default/tests/test_dhcp_policy.py with packets in the lab.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import (
    BOOT_RULES, GRUB_SLOTS, boot_server, decide, decide_proxy, loader_dependent_rules)
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import build_plan
from ansible_collections.centra.pxe.plugins.plugin_utils._render_dhcp import dhcpd_config, kea_dhcp4_config
from ansible_collections.centra.pxe.plugins.plugin_utils._render_dnsmasq import dnsmasq_proxy_config

ASSET = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}
LOADERS = {"bios": "undionly.kpxe", "efi32": "", "efi64": "ipxe.efi", "arm32": "", "arm64": "ipxe-arm64.efi"}
SHIMS = {"efi64": "shimx64.efi", "arm64": "shimaa64.efi"}
# A server that serves no arm64 chain (pxe_server_shim_loaders' default).
NO_ARM64 = {"efi64": "shimx64.efi", "arm64": ""}
MACS = {"ipxe": "52:54:00:00:01:01", "grub": "52:54:00:00:02:01", None: "52:54:00:00:03:01"}
UNKNOWN_MAC = "52:54:00:99:99:99"
# Every row of the table, by the codes a client sends, plus iPXE and an unknown code.
ARCHES = sorted({c for rule in BOOT_RULES for c in rule.arch_codes if c is not None}) + [None, 0x1234]


# The Secure Boot HTTP boot image (pxe_server_secure_boot_http_image): row 16 of the grub chain.
IMAGES = {"efi64": "secureboot-x64.img"}


def _server(default_loader, shims=None, images=None):
    return {"address": "192.0.2.2", "http_base": "http://192.0.2.2", "loaders": LOADERS,
            "shim_loaders": SHIMS if shims is None else shims, "default_loader": default_loader,
            "grub_http_images": images or {}}


def _plan(with_ip=True):
    """A node that sets ipxe, one that sets grub, one that sets none."""
    nodes = {}
    for index, (loader, mac) in enumerate(MACS.items()):
        node = {"groups": ["worker"], "pxe_mac": mac}
        if with_ip:
            node["pxe_ip"] = "192.0.2.%d" % (11 + index)
        if loader:
            node["pxe_loader"] = loader
        nodes["node%02d" % (index + 1)] = node
    return build_plan([{"cidr": "192.0.2.0/24", "pool": "192.0.2.100-192.0.2.199"}],
                      {"worker": {"kernel": ASSET, "initrd": ASSET}}, nodes)


def _effect(answer):
    if answer.kind == "none":
        return None
    return answer.filename, answer.next_server, answer.vendor_class


# -- Kea -----------------------------------------------------------------------------------
_KEA_TERMS = [
    (re.compile(r"member\('([^']+)'\)"), r"('\1' in M)"),
    (re.compile(r"substring\(option\[93\]\.hex,0,2\) == (0x[0-9a-f]{4})"), r"(arch == \1)"),
    (re.compile(r"option\[93\]\.exists"), "(arch is not None)"),
    (re.compile(r"option\[77\]\.hex == 'iPXE'"), "ipxe"),
    (re.compile(r"option\[175\]\.exists"), "False"),
]


def _kea_eval(test, arch, ipxe, members):
    expression = test
    for pattern, replacement in _KEA_TERMS:
        expression = pattern.sub(replacement, expression)
    assert re.fullmatch(r"[\w\s()'=.!<>]*", expression), "an expression this test cannot read: %s" % test
    return eval(expression, {}, {"M": members, "arch": arch, "ipxe": ipxe})  # pylint: disable=eval-used


def kea_answer(dhcp4, mac, arch, ipxe=False):
    classes = dhcp4["client-classes"]
    reservations = [r for s in dhcp4["subnet4"] for r in s.get("reservations", [])] + dhcp4.get("reservations", [])
    reservation = next((r for r in reservations if r["hw-address"] == mac), {})
    members = []
    for cls in classes:  # early classification, in order
        if "test" in cls and not cls.get("only-if-required") and _kea_eval(cls["test"], arch, ipxe, members):
            members.append(cls["name"])
    members.extend(reservation.get("client-classes", []))
    required = dhcp4["subnet4"][0].get("require-client-classes", [])
    for cls in classes:
        if cls.get("only-if-required"):
            assert cls["name"] in required, "%s is evaluated by no subnet" % cls["name"]
            if _kea_eval(cls["test"], arch, ipxe, members):
                members.append(cls["name"])
    by_name = {c["name"]: c for c in classes}
    filename = next((by_name[m]["boot-file-name"] for m in members if "boot-file-name" in by_name[m]), None)
    server = next((by_name[m]["next-server"] for m in members if "next-server" in by_name[m]), None)
    vendor = next((o["data"] for m in members for o in by_name[m].get("option-data", [])
                   if o["name"] == "vendor-class-identifier"), None)
    return None if filename is None else (filename, server, vendor)


@pytest.mark.parametrize("log_severity", ["INFO", "DEBUG"])
@pytest.mark.parametrize("with_ip", [True, False])
@pytest.mark.parametrize("default_loader", ["ipxe", "grub"])
@pytest.mark.parametrize("shims", [SHIMS, NO_ARM64], ids=["arm64", "no-arm64"])
@pytest.mark.parametrize("images", [{}, IMAGES], ids=["shim-url", "sb-image"])
def test_kea_answers_as_decide_for_every_row_and_loader(images, default_loader, shims, with_ip, log_severity, kea_settings):
    server = _server(default_loader, shims, images)
    dhcp4 = kea_dhcp4_config(_plan(with_ip), server, dict(kea_settings, log_severity=log_severity))["Dhcp4"]
    boot = boot_server(server)
    for loader, mac in list(MACS.items()) + [(None, UNKNOWN_MAC)]:
        for arch in ARCHES:
            for ipxe in (False, True):
                expected = _effect(decide(boot, arch=arch, user_class=b"iPXE" if ipxe else None, loader=loader))
                assert kea_answer(dhcp4, mac, arch, ipxe) == expected, (loader, arch, ipxe)


def test_kea_is_unchanged_without_a_grub_node(kea_settings, plan):
    """Only the grub chain in use splits the rows: the configs of other inventories stay as they were."""
    ipxe_only = kea_dhcp4_config(plan, _server("ipxe"), kea_settings)["Dhcp4"]
    assert not any(c.get("only-if-required") for c in ipxe_only["client-classes"])
    assert all("require-client-classes" not in s for s in ipxe_only["subnet4"])
    # Every node grub, and grub the default: no reservation class either.
    all_grub = kea_dhcp4_config(plan, _server("grub"), kea_settings)["Dhcp4"]
    assert not any(c.get("only-if-required") for c in all_grub["client-classes"])
    classes = {c["name"]: c for c in all_grub["client-classes"]}
    assert classes["centra_arch_efi64"]["boot-file-name"] == "shimx64.efi"
    assert classes["centra_arch_http_efi64"]["boot-file-name"] == "http://192.0.2.2/loaders/shimx64.efi"
    assert classes["centra_arch_bios"]["boot-file-name"] == "undionly.kpxe"


def test_kea_checks_the_split_config(tmp_path, kea_settings):
    kea = shutil.which("kea-dhcp4") or shutil.which("kea-dhcp4", path="/usr/sbin:/sbin")
    assert kea, "kea-dhcp4 is not installed: scripts/setup.sh installs it"
    for default_loader in ("ipxe", "grub"):
        config = kea_dhcp4_config(_plan(), _server(default_loader), dict(
            kea_settings, interfaces=["lo"], lease_file=str(tmp_path / "leases.csv"),
            control_socket=str(tmp_path / "ctrl.sock"), log_severity="DEBUG"))
        assert any(c.get("only-if-required") for c in config["Dhcp4"]["client-classes"])
        path = tmp_path / "kea-dhcp4.conf"
        path.write_text(json.dumps(config))
        run = subprocess.run([kea, "-t", str(path)], capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stdout + run.stderr


# -- dhcpd ---------------------------------------------------------------------------------
_ISC_IPXE = '((exists user-class and option user-class = "iPXE") or exists ipxe-encap-opts)'


def _isc_eval(condition, arch, ipxe):
    expression = condition.replace(_ISC_IPXE, "ipxe")
    expression = re.sub(r"substring\(option arch, 0, 2\) = ([0-9a-f]{2}):([0-9a-f]{2})", r"(arch == 0x\1\2)", expression)
    expression = expression.replace("not exists arch", "(arch is None)")
    assert re.fullmatch(r"[\w\s()=]*", expression), "a condition this test cannot read: %s" % condition
    return eval(expression, {}, {"arch": arch, "ipxe": ipxe})  # pylint: disable=eval-used


def _isc_chain(lines, start, arch, ipxe, state):
    """Run the if/elsif/else chain that starts at lines[start]; return the index after it."""
    index, taken = start, False
    active = False
    while True:
        line = lines[index].strip()
        head = re.fullmatch(r"(?:\} )?(if|elsif) (.*) \{", line)
        if head or line == "} else {":
            active = not taken and (line == "} else {" or _isc_eval(head.group(2), arch, ipxe))
            taken = taken or active
        elif line == "}":
            return index + 1
        elif active:
            statement = re.fullmatch(r'(next-server|filename|option vendor-class-identifier) "?([^";]+)"?;', line)
            if statement:
                state[statement.group(1)] = statement.group(2)
        index += 1


def dhcpd_answer(text, mac, arch, ipxe=False):
    lines = text.splitlines()
    state = {}
    _isc_chain(lines, lines.index('if %s {' % _ISC_IPXE), arch, ipxe, state)
    for index, line in enumerate(lines):
        if line == "group {" and any("hardware ethernet %s;" % mac in other for other in lines[index:]
                                     [:next(i for i, o in enumerate(lines[index:]) if o == "}")]):
            _isc_chain(lines, index + 1, arch, ipxe, state)
    if "filename" not in state:
        return None
    next_server = state.get("next-server")
    return state["filename"], None if next_server == "0.0.0.0" else next_server, state.get(
        "option vendor-class-identifier")


@pytest.mark.parametrize("default_loader", ["ipxe", "grub"])
@pytest.mark.parametrize("shims", [SHIMS, NO_ARM64], ids=["arm64", "no-arm64"])
@pytest.mark.parametrize("images", [{}, IMAGES], ids=["shim-url", "sb-image"])
def test_dhcpd_answers_as_decide_for_every_row_and_loader(images, default_loader, shims, isc_settings, tmp_path):
    server = _server(default_loader, shims, images)
    text = dhcpd_config(_plan(), server, isc_settings)
    boot = boot_server(server)
    for loader, mac in list(MACS.items()) + [(None, UNKNOWN_MAC)]:
        for arch in ARCHES:
            for ipxe in (False, True):
                expected = _effect(decide(boot, arch=arch, user_class=b"iPXE" if ipxe else None, loader=loader))
                assert dhcpd_answer(text, mac, arch, ipxe) == expected, (loader, arch, ipxe)
    dhcpd = shutil.which("dhcpd") or shutil.which("dhcpd", path="/usr/sbin:/sbin")
    assert dhcpd, "dhcpd is not installed: scripts/setup.sh installs it"
    path = tmp_path / "dhcpd.conf"
    path.write_text(text)
    run = subprocess.run([dhcpd, "-t", "-4", "-cf", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


# -- dnsmasq (proxy) -----------------------------------------------------------------------
def dnsmasq_answer(text, mac, arch, ipxe=False):
    tags = {"centra_ipxe"} if ipxe else set()
    for line in text.splitlines():
        match = re.fullmatch(r"dhcp-match=set:(\w+),option:client-arch,(\d+)", line)
        if match and arch == int(match.group(2)):
            tags.add(match.group(1))
        host = re.fullmatch(r"dhcp-host=([0-9a-f:]+),set:(\w+)", line)
        if host and host.group(1) == mac:
            tags.add(host.group(2))
    answers = []
    for line in text.splitlines():
        if line.startswith("dhcp-boot="):
            fields = line[len("dhcp-boot="):].split(",")
            wanted = [f[len("tag:"):] for f in fields if f.startswith("tag:")]
            rest = [f for f in fields if not f.startswith("tag:")]
            if all((w[1:] not in tags) if w.startswith("!") else (w in tags) for w in wanted):
                answers.append((rest[0], rest[2]))
    assert len(answers) <= 1, "more than one dhcp-boot line matches: %s" % answers
    return answers[0] if answers else None


@pytest.mark.parametrize("default_loader", ["ipxe", "grub"])
@pytest.mark.parametrize("shims", [SHIMS, NO_ARM64], ids=["arm64", "no-arm64"])
@pytest.mark.parametrize("images", [{}, IMAGES], ids=["shim-url", "sb-image"])
def test_dnsmasq_answers_as_decide_proxy_for_every_row_and_loader(images, default_loader, shims, tmp_path):
    server = _server(default_loader, shims, images)
    plan = _plan(with_ip=False)
    text = dnsmasq_proxy_config(plan, server, {"interfaces": ["lo"], "log_dhcp": False})
    dnsmasq = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
    assert dnsmasq, "dnsmasq is not installed: scripts/setup.sh installs dnsmasq-base"
    path = tmp_path / "proxy.conf"
    path.write_text(text)
    run = subprocess.run([dnsmasq, "--test", "--conf-file=%s" % path], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    boot = boot_server(server)
    for loader, mac in list(MACS.items()) + [(None, UNKNOWN_MAC)]:
        for arch in ARCHES:
            if arch is None:
                continue  # no option 93: no PXE client, no proxy answer (test_render_dnsmasq)
            for ipxe in (False, True):
                answer = decide_proxy(boot, arch=arch, user_class=b"iPXE" if ipxe else None, loader=loader)
                expected = None if answer.kind == "none" else (answer.filename, answer.next_server)
                assert dnsmasq_answer(text, mac, arch, ipxe) == expected, (loader, arch, ipxe)


# -- the policy itself -----------------------------------------------------------------------
def test_the_secure_boot_image_answers_http_boot_of_the_grub_chain_only():
    """With the image built, row 16 of the grub chain answers its URL (no TFTP after it); the
    other rows, arm64's HTTP boot (19) and the iPXE chain answer as without it."""
    plain, imaged = boot_server(_server("ipxe")), boot_server(_server("ipxe", images=IMAGES))
    assert _effect(decide(imaged, arch=16, loader="grub")) == (
        "http://192.0.2.2/loaders/secureboot-x64.img", "192.0.2.2", "HTTPClient")
    assert "disk image" in decide(imaged, arch=16, loader="grub").reason
    for arch in ARCHES:
        for loader in ("ipxe", "grub", None):
            if arch == 16 and loader == "grub":
                continue
            assert decide(imaged, arch=arch, loader=loader) == decide(plain, arch=arch, loader=loader), (arch, loader)
    # The default loader grub: unknown machines get the image too (its menu).
    assert decide(boot_server(_server("grub", images=IMAGES)), arch=16).filename.endswith("/secureboot-x64.img")


def test_grub_rows_answer_shim_and_the_others_keep_ipxe():
    boot = boot_server(_server("ipxe"))
    assert _effect(decide(boot, arch=7, loader="grub")) == ("shimx64.efi", "192.0.2.2", None)
    assert _effect(decide(boot, arch=9, loader="grub")) == ("shimx64.efi", "192.0.2.2", None)
    assert _effect(decide(boot, arch=11, loader="grub")) == ("shimaa64.efi", "192.0.2.2", None)
    assert _effect(decide(boot, arch=16, loader="grub")) == (
        "http://192.0.2.2/loaders/shimx64.efi", "192.0.2.2", "HTTPClient")
    assert _effect(decide(boot, arch=19, loader="grub")) == (
        "http://192.0.2.2/loaders/shimaa64.efi", "192.0.2.2", "HTTPClient")
    for arch in (None, 0, 6, 10):
        assert decide(boot, arch=arch, loader="grub") == decide(boot, arch=arch, loader="ipxe")
    assert decide(boot, arch=7, loader="grub").loader == "grub"
    assert decide(boot, arch=7).loader == "ipxe"
    # iPXE itself gets its script whatever the loader: it only runs on a machine that chose iPXE.
    assert decide(boot, arch=7, user_class=b"iPXE", loader="grub").kind == "script"


def test_arm64_machines_get_the_grub_chain_whenever_the_server_serves_arm64():
    """Debian has no arm64 iPXE: option 93 = 11 and 19 answer the arm64 shim for every
    machine (node of either loader, unknown) once pxe_server_shim_loaders.arm64 is set."""
    for default_loader in ("ipxe", "grub"):
        boot = boot_server(_server(default_loader))
        for loader in (None, "ipxe", "grub"):
            answer = decide(boot, arch=11, loader=loader)
            assert (answer.kind, answer.loader, _effect(answer)) == ("tftp", "grub", ("shimaa64.efi", "192.0.2.2", None))
            answer = decide(boot, arch=19, loader=loader)
            assert (answer.kind, answer.loader, _effect(answer)) == (
                "http", "grub", ("http://192.0.2.2/loaders/shimaa64.efi", "192.0.2.2", "HTTPClient"))
            assert decide_proxy(boot, arch=11, vendor_class="PXEClient:Arch:00011", loader=loader).filename \
                == "shimaa64.efi"
        # So the arm64 rows do not depend on the node's loader: one answer per class.
        assert "arm64" not in [rule.name for rule in loader_dependent_rules(boot)]
        assert "http_arm64" not in [rule.name for rule in loader_dependent_rules(boot)]
    # Without the arm64 shim: the arm64 iPXE slot (an operator's own build), else nothing.
    boot = boot_server(_server("ipxe", shims=NO_ARM64))
    assert decide(boot, arch=11, loader="grub").filename == "ipxe-arm64.efi"
    no_loader = dict(_server("ipxe", shims=NO_ARM64), loaders=dict(LOADERS, arm64=""))
    assert decide(boot_server(no_loader), arch=11).kind == "none"
    assert [rule.name for rule in BOOT_RULES if rule.grub_only] == ["arm64", "http_arm64"]


def test_unknown_machines_follow_the_default_loader():
    assert decide(boot_server(_server("grub")), arch=7).filename == "shimx64.efi"
    assert decide(boot_server(_server("grub")), arch=7, loader="ipxe").filename == "ipxe.efi"
    assert decide(boot_server(_server("ipxe")), arch=7).filename == "ipxe.efi"


def test_an_architecture_without_a_shim_keeps_its_ipxe_answer():
    boot = boot_server(_server("grub", shims={"efi64": "shimx64.efi", "arm64": ""}))
    assert decide(boot, arch=11).filename == "ipxe-arm64.efi"
    assert [rule.name for rule in loader_dependent_rules(boot)] == ["efi64", "http_efi64"]
    assert GRUB_SLOTS == ("efi64", "arm64")


def test_a_bad_loader_is_refused():
    with pytest.raises(ValueError, match="loader 'shim'"):
        decide(boot_server(_server("ipxe")), arch=7, loader="shim")
    with pytest.raises(ValueError, match="default loader 'shim'"):
        boot_server(_server("shim"))
