# SPDX-License-Identifier: GPL-3.0-or-later
"""The Debian installer profile: validation (plan), the preseed, the kernel arguments."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from ansible_collections.centra.pxe.plugins.module_utils import _render_grub as grub
from ansible_collections.centra.pxe.plugins.module_utils._render_ipxe import (
    healthz, install_script, lifecycle_scripts, node_scripts)
from ansible_collections.centra.pxe.plugins.module_utils._render_preseed import (
    installer_args, preseed, preseeds, report_command)
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import PlanError, build_plan

SUBNETS = [{"cidr": "192.0.2.0/24", "pool": "192.0.2.100-192.0.2.199"}]
SETTINGS = {"menu_timeout": 5, "menu_default": "local", "console": ["ttyS0,115200"], "retry_seconds": 10,
            "title": "t"}
BASE = "http://192.0.2.2"
DOC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "docs", "lifecycle.md")


def node(group, mac, **extra):
    return dict({"groups": ["all", "pxe_nodes", group], "pxe_mac": mac}, **extra)


def plan_of(installer=None, nodes=None, **profile):
    profiles = {"di": dict({"installer": installer if installer is not None else "debian"}, **profile)}
    default_nodes = {"node10": node("di", ["52:54:00:00:0a:01", "52:54:00:00:0a:02"], pxe_ip="192.0.2.22")}
    return build_plan(SUBNETS, profiles, nodes or default_nodes)


def problems_of(*args, **kwargs):
    with pytest.raises(PlanError) as info:
        plan_of(*args, **kwargs)
    return [str(p) for p in info.value.problems]


def test_an_installer_profile_takes_kernel_and_initrd_from_the_package():
    profile = plan_of()["profiles"]["di"]
    assert profile["installer"] == {"type": "debian", "arch": "amd64", "preseed": []}
    images = "usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64/"
    assert profile["kernel"] == {"source": "package", "src": None, "url": None, "checksum": None,
                                 "package": "debian-installer-12-netboot-amd64", "path": images + "linux",
                                 "filename": "di/vmlinuz"}
    assert profile["initrd"]["path"] == images + "initrd.gz" and profile["initrd"]["filename"] == "di/initrd"


def test_installer_with_kernel_or_initrd_is_refused_naming_profile_and_field(tmp_path):
    asset = tmp_path / "k"
    asset.write_bytes(b"k")
    problems = problems_of(kernel={"src": str(asset)}, initrd={"src": str(asset)})
    assert [p.split(": ")[:2] for p in problems] == [["profile di", "kernel"], ["profile di", "initrd"]]
    assert "debian-installer-12-netboot-amd64" in problems[0]


def test_installer_with_arm64_assets_or_an_arm64_node_is_refused(tmp_path):
    asset = tmp_path / "k"
    asset.write_bytes(b"k")
    problems = problems_of(arm64={"kernel": {"src": str(asset)}, "initrd": {"src": str(asset)}})
    assert [p.split(": ")[:2] for p in problems] == [["profile di", "arm64"]], problems
    assert "must not be given with installer" in problems[0]
    problems = problems_of(nodes={"node10": node("di", "52:54:00:00:0a:01", pxe_arch="arm64")})
    assert problems == ["host node10: pxe_arch: is arm64, but its profile di is an installer profile for amd64 only "
                        "(docs/debian-installer.md)"]
    assert plan_of(nodes={"node10": node("di", "52:54:00:00:0a:01", pxe_arch="amd64")})["nodes"][0]["arch"] == "amd64"


@pytest.mark.parametrize("installer, where", [
    ("fedora", "installer.type"),
    ({"type": "debian", "arch": "s390x"}, "installer.arch"),
    ({"type": "debian", "mirror": "x"}, "installer.mirror"),
    ({"type": "debian", "preseed": "d-i a/b string c"}, "installer.preseed"),
    ({"type": "debian", "preseed": ["d-i a/b string c", "just words"]}, "installer.preseed[1]"),
    ({"type": "debian", "preseed": ["d-i preseed/late_command string reboot"]}, "installer.preseed[0]"),
    ({"type": "debian", "preseed": ["d-i a/b string c\nd-i e/f string g"]}, "installer.preseed[0]"),
    (["debian"], "installer"),
])
def test_bad_installers_are_named(installer, where):
    problems = problems_of(installer)
    assert problems and all(p.startswith("profile di: %s: " % where) for p in problems), problems


def test_node_preseed_lines_are_checked_and_need_an_installer_profile(tmp_path):
    problems = problems_of(nodes={"node10": node("di", "52:54:00:00:0a:01", pxe_preseed=["d-i netcfg/hostname string x"])})
    assert problems == ["host node10: pxe_preseed[0]: netcfg/hostname is set by the collection (the lifecycle reports, "
                        "and the host name from the inventory); run your own commands with preseed/include_command "
                        "or pkgsel"]
    asset = tmp_path / "k"
    asset.write_bytes(b"k")
    with pytest.raises(PlanError) as info:
        build_plan(SUBNETS, {"w": {"kernel": {"src": str(asset)}, "initrd": {"src": str(asset)}}},
                   {"node01": node("w", "52:54:00:00:01:01", pxe_preseed=["d-i a/b string c"])})
    assert [str(p) for p in info.value.problems] == [
        "host node01: pxe_preseed: profile w has no installer: preseed lines would be served to nothing"]


def test_the_preseed_merges_profile_then_node_lines_over_the_collections():
    plan = plan_of({"type": "debian", "preseed": ["d-i mirror/country string manual",
                                                  "d-i debian-installer/locale string de_DE.UTF-8"]},
                   {"node10": node("di", "52:54:00:00:0a:01",
                                   pxe_preseed=["d-i mirror/country string  enter information manually",
                                                "d-i partman-auto/method string lvm"])})
    text = preseed(plan, plan["nodes"][0])
    lines = text.splitlines()
    assert lines[0].startswith("# Preseed of node node10 (profile di)")
    assert "d-i netcfg/get_hostname string node10" in lines and "d-i netcfg/hostname string node10" in lines
    keys = [tuple(line.split()[:2]) for line in lines[1:]]
    assert len(keys) == len(set(keys))  # one line per question
    assert "d-i debian-installer/locale string de_DE.UTF-8" in lines
    assert "d-i debian-installer/locale string en_US.UTF-8" not in lines
    assert lines[-2:] == ["d-i mirror/country string  enter information manually", "d-i partman-auto/method string lvm"]
    early = next(line for line in lines if line.startswith("d-i preseed/early_command string "))
    late = next(line for line in lines if line.startswith("d-i preseed/late_command string "))
    assert early == "d-i preseed/early_command string %s; true" % report_command("started")
    assert late == "d-i preseed/late_command string %s" % report_command("installed")
    assert "token" not in text.replace("centra\\.token=", "")  # read from /proc/cmdline, never written here


def test_one_preseed_per_mac_and_none_for_local_or_other_profiles(tmp_path):
    asset = tmp_path / "k"
    asset.write_bytes(b"k")
    plan = build_plan(SUBNETS, {"di": {"installer": "debian"},
                                "w": {"kernel": {"src": str(asset)}, "initrd": {"src": str(asset)}}},
                      {"node10": node("di", ["52:54:00:00:0a:01", "52:54:00:00:0a:02"]),
                       "node11": node("di", "52:54:00:00:0b:01", pxe_boot="local"),
                       "node01": node("w", "52:54:00:00:01:01")})
    files = preseeds(plan)
    assert sorted(files) == ["52-54-00-00-0a-01.cfg", "52-54-00-00-0a-02.cfg"]
    assert files["52-54-00-00-0a-01.cfg"] == files["52-54-00-00-0a-02.cfg"]
    assert installer_args(plan, plan["nodes"][0], BASE) == []  # node01: profile w
    # healthz: the package's assets apart (no controller checksum), the others as before
    body = healthz(plan)
    assert '"installer_assets"' in body and '"di/vmlinuz": "debian-installer-12-netboot-amd64"' in body
    assert '"di/vmlinuz": null' not in body


def test_both_chains_boot_the_installer_with_its_arguments_and_the_preseed_url():
    plan = plan_of()
    node10 = plan["nodes"][0]
    want = ("auto=true priority=critical url=http://192.0.2.2/preseed/52-54-00-00-0a-01.cfg interface=auto "
            "hostname=node10 netcfg/hostname=node10 --- console=ttyS0,115200")
    ipxe = install_script(plan, node10, BASE, SETTINGS)
    assert re.search(r"centra\.token=@CENTRA_TOKEN@ %s \|\|" % re.escape(want), ipxe), ipxe
    grub_cfg = grub.install_config(plan, node10, SETTINGS, BASE)
    assert "centra.token=@CENTRA_TOKEN@ %s\n" % want in grub_cfg, grub_cfg
    # every MAC's install variant is the same, in both chains
    assert len(set(lifecycle_scripts(plan, BASE, SETTINGS)["install"].values())) == 1
    assert len(set(grub.lifecycle_configs(plan, SETTINGS, "grub", BASE)["install"].values())) == 1
    # a dual-stack server's scripts have no base of their own: the preseed URL takes preseed_base
    assert "url=http://192.0.2.2/preseed/" in install_script(plan, node10, "", SETTINGS, BASE)
    with pytest.raises(ValueError, match="node10: the preseed URL needs"):
        grub.install_config(plan, node10, SETTINGS)
    netboot = plan_of(nodes={"node10": node("di", "52:54:00:00:0a:01", pxe_boot="netboot")})
    assert "url=http://192.0.2.2/preseed/52-54-00-00-0a-01.cfg" in node_scripts(netboot, BASE, SETTINGS)[
        "52-54-00-00-0a-01.ipxe"]


def test_the_documented_preseed_snippet_is_the_rendered_late_command():
    with open(DOC) as handle:
        text = handle.read()
    snippet = re.search(r"<!-- snippet: preseed -->\n```\n(.*?)\n```", text, re.S).group(1)
    assert snippet == "d-i preseed/late_command string %s" % report_command("installed")


@pytest.mark.parametrize("event", ["started", "installed"])
def test_the_report_command_posts_the_event_with_the_boot_token(tmp_path, event):
    """Run with sh, /proc/cmdline swapped for a file and wget for a recorder."""
    shims = tmp_path / "bin"
    shims.mkdir()
    calls = tmp_path / "calls"
    (shims / "wget").write_text('#!/bin/sh\nfor a in "$@"; do printf "%%s\\n" "$a"; done >>"%s"\n' % calls)
    (shims / "wget").chmod(0o755)
    cmdline = tmp_path / "cmdline"
    env = {"PATH": "%s:/usr/bin:/bin" % shims}

    def run(line):
        cmdline.write_text(line)
        command = report_command(event).replace("/proc/cmdline", str(cmdline))
        return subprocess.run(["/bin/sh", "-c", command], env=env, check=False, timeout=30).returncode

    assert run("auto=true centra.callback=http://192.0.2.2/api/v1/callback/node10 centra.token=abc.def ---\n") == 0
    assert calls.read_text().splitlines() == [
        "-q", "-T", "30", "-O", "/dev/null", "--header=Authorization: Bearer abc.def",
        "--header=Content-Type: application/json", '--post-data={"event":"%s"}' % event,
        "http://192.0.2.2/api/v1/callback/node10"]
    calls.unlink()
    assert run("auto=true console=ttyS0\n") == 0  # no callback (a netboot): nothing, and no failure
    assert not calls.exists()
