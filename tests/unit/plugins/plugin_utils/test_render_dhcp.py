# SPDX-License-Identifier: GPL-3.0-or-later
"""DHCP renderers: structure, and the real daemons' own checkers on what they render."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import BOOT_RULES
from ansible_collections.centra.pxe.plugins.plugin_utils._render_dhcp import (
    ISC_SETTINGS, KEA_SETTINGS, dhcpd_config, kea_dhcp4_config, kea_host_rows)

SERVER = {"address": "192.0.2.2", "http_base": "http://192.0.2.2",
          "loaders": {"bios": "undionly.kpxe", "efi64": "ipxe.efi", "efi32": "", "arm32": None, "arm64": "arm64.efi"}}


def _checker(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    assert path, "%s is not installed: scripts/setup.sh installs it" % name
    return path


def test_kea_config_is_accepted_by_kea(plan, tmp_path, kea_settings):
    config = kea_dhcp4_config(plan, SERVER, dict(kea_settings, interfaces=["lo"], lease_file=str(tmp_path / "leases.csv"),
                                                 control_socket=str(tmp_path / "ctrl.sock")))
    path = tmp_path / "kea-dhcp4.conf"
    path.write_text(json.dumps(config))
    run = subprocess.run([_checker("kea-dhcp4"), "-t", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_kea_rejects_what_it_should(tmp_path):
    """The checker is a real gate: a broken config fails it."""
    path = tmp_path / "kea-dhcp4.conf"
    path.write_text(json.dumps({"Dhcp4": {"subnet4": [{"id": 1, "subnet": "192.0.2.0/24",
                                                       "pools": [{"pool": "198.51.100.1 - 198.51.100.9"}]}]}}))
    run = subprocess.run([_checker("kea-dhcp4"), "-t", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode != 0


def test_kea_config_structure(plan, kea_settings):
    dhcp4 = kea_dhcp4_config(plan, SERVER, dict(kea_settings, interfaces=["eth1"]))["Dhcp4"]
    assert dhcp4["interfaces-config"]["interfaces"] == ["eth1"]
    assert dhcp4["interfaces-config"]["service-sockets-max-retries"] > 0
    assert dhcp4["lease-database"]["persist"] is True
    assert dhcp4["control-socket"]["socket-name"]
    classes = {c["name"]: c for c in dhcp4["client-classes"]}
    assert list(classes)[0] == "centra_ipxe"
    assert classes["centra_ipxe"]["boot-file-name"] == "http://192.0.2.2/boot.ipxe"
    assert classes["centra_arch_bios"]["boot-file-name"] == "undionly.kpxe"
    assert classes["centra_arch_bios"]["next-server"] == "192.0.2.2"
    assert "not option[93].exists" in classes["centra_arch_bios"]["test"]
    assert classes["centra_arch_efi64"]["test"].count("substring(option[93].hex,0,2)") == 2
    assert classes["centra_arch_http_efi64"]["boot-file-name"] == "http://192.0.2.2/loaders/ipxe.efi"
    assert classes["centra_arch_http_efi64"]["option-data"][0]["data"] == "HTTPClient"
    # Below DEBUG, only the classes that answer: the others would only show in DEBUG logs.
    assert all("boot-file-name" in c for c in classes.values())
    assert {"centra_arch_efi32", "centra_arch_arm32", "centra_arch_unknown"}.isdisjoint(classes)
    loggers = {logger["name"]: logger["severity"] for logger in dhcp4["loggers"]}
    # The boot trace's loggers (test_kea_trace).
    assert loggers == {"kea-dhcp4": "INFO", "kea-dhcp4.eval": "WARN", "kea-dhcp4.options": "WARN",
                       "kea-dhcp4.dhcp4": "DEBUG", "kea-dhcp4.bad-packets": "DEBUG", "kea-dhcp4.leases": "INFO"}

    debug = kea_dhcp4_config(plan, SERVER, dict(kea_settings, log_severity="DEBUG"))["Dhcp4"]
    assert {logger["severity"] for logger in debug["loggers"]} == {"DEBUG"}
    classes = {c["name"]: c for c in debug["client-classes"]}
    assert len(classes) == len(BOOT_RULES) + 2
    assert "boot-file-name" not in classes["centra_arch_efi32"]
    assert "boot-file-name" not in classes["centra_arch_arm32"]
    assert "boot-file-name" not in classes["centra_arch_unknown"]
    # Unknown = none of the arch classes above, by membership (no test evaluated twice).
    for rule in BOOT_RULES:
        assert "member('centra_arch_%s')" % rule.name in classes["centra_arch_unknown"]["test"]
    assert "substring" not in classes["centra_arch_unknown"]["test"]
    assert {k: v for k, v in classes.items() if "boot-file-name" in v} == {
        c["name"]: c for c in dhcp4["client-classes"]}, "DEBUG adds classes, it changes no answer"
    first, second = dhcp4["subnet4"]
    assert first["reservations"] == [{"hw-address": "52:54:00:00:01:01", "hostname": "node01", "ip-address": "192.0.2.11"}]
    assert [r["hw-address"] for r in second["reservations"]] == ["52:54:00:00:02:01", "52:54:00:00:02:02"]
    assert first["option-data"] == [{"name": "routers", "data": "192.0.2.1"}, {"name": "domain-name-servers", "data": "192.0.2.1"}]
    assert {r["hw-address"] for r in dhcp4["reservations"]} == {"52:54:00:00:03:01", "52:54:00:00:04:01", "52:54:00:00:05:01"}
    assert dhcp4["reservations-global"] is True
    assert dhcp4["ip-reservations-unique"] is False  # node02's two NICs share its address


def test_kea_trace(plan, kea_settings):
    """The boot trace is Kea's own log (no hook: a process per lease event cost 37 ms of
    Kea's CPU a boot): the class line (DHCP4_CLASS_ASSIGNED, debug level 40) that names
    option 60, the lease lines at INFO whatever the server's severity, and the NAKs to a
    REQUEST (debug level 50); off, none of them."""
    stdout = [{"output": "stdout"}]
    for severity in ("INFO", "WARN", "ERROR"):
        dhcp4 = kea_dhcp4_config(plan, SERVER, dict(kea_settings, trace=True, log_severity=severity))["Dhcp4"]
        assert "hooks-libraries" not in dhcp4
        assert dhcp4["loggers"][-3:] == [
            {"name": "kea-dhcp4.dhcp4", "severity": "DEBUG", "debuglevel": 40, "output_options": stdout},
            {"name": "kea-dhcp4.bad-packets", "severity": "DEBUG", "debuglevel": 50, "output_options": stdout},
            {"name": "kea-dhcp4.leases", "severity": "INFO", "output_options": stdout}]
    # The whole server at DEBUG logs the lease lines already (and more): leases not narrowed to INFO.
    debug = kea_dhcp4_config(plan, SERVER, dict(kea_settings, trace=True, log_severity="DEBUG"))["Dhcp4"]
    assert "kea-dhcp4.leases" not in [logger["name"] for logger in debug["loggers"]]
    assert "kea-dhcp4.bad-packets" in [logger["name"] for logger in debug["loggers"]]
    off = kea_dhcp4_config(plan, SERVER, dict(kea_settings, trace=False))["Dhcp4"]
    assert "hooks-libraries" not in off
    assert {"kea-dhcp4.dhcp4", "kea-dhcp4.bad-packets", "kea-dhcp4.leases"}.isdisjoint(
        logger["name"] for logger in off["loggers"])


def test_kea_trace_adds_no_hook_to_ha(plan, kea_settings):
    ha_plan = dict(plan, ha=[{
        "mode": "hot-standby", "port": 8001, "heartbeat_delay_ms": 10000,
        "max_response_delay_ms": 60000, "max_ack_delay_ms": 10000, "max_unacked_clients": 5,
        "peers": [{"name": "pxe01", "address": "192.0.2.2", "role": "primary"},
                  {"name": "pxe02", "address": "192.0.2.3", "role": "standby"}]}])
    dhcp4 = kea_dhcp4_config(ha_plan, dict(SERVER, name="pxe01"), dict(kea_settings, trace=True))["Dhcp4"]
    libraries = [h["library"].rsplit("/", 1)[1] for h in dhcp4["hooks-libraries"]]
    assert libraries == ["libdhcp_lease_cmds.so", "libdhcp_ha.so"]


def test_dhcpd_config_is_accepted_by_dhcpd(plan, tmp_path, isc_settings):
    path = tmp_path / "dhcpd.conf"
    path.write_text(dhcpd_config(plan, SERVER, isc_settings))
    run = subprocess.run([_checker("dhcpd"), "-t", "-cf", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_dhcpd_trace(plan, tmp_path, isc_settings):
    """One log line per answer and per release, before the boot policy; dhcpd -t takes it; off, none."""
    text = dhcpd_config(plan, SERVER, dict(isc_settings, trace=True))
    trace = [line for line in text.splitlines() if "centra.pxe trace" in line]
    assert len(trace) == 2
    assert trace[0].startswith('log(info, concat("centra.pxe trace ", binary-to-ascii(10, 8, "", option dhcp-message-type)')
    assert 'pick-first-value(binary-to-ascii(10, 16, "", option arch), "")' in trace[0]
    assert trace[0].endswith('" vendor=", pick-first-value(option vendor-class-identifier, "")));')
    assert trace[1].startswith("on release { log(info, ")
    assert text.index(trace[0]) < text.index("if ((exists user-class")
    path = tmp_path / "dhcpd.conf"
    path.write_text(text)
    run = subprocess.run([_checker("dhcpd"), "-t", "-cf", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "centra.pxe trace" not in dhcpd_config(plan, SERVER, dict(isc_settings, trace=False))


def test_dhcpd_config_structure(plan, isc_settings):
    text = dhcpd_config(plan, SERVER, isc_settings)
    assert 'if ((exists user-class and option user-class = "iPXE") or exists ipxe-encap-opts) {' in text
    assert "substring(option arch, 0, 2) = 00:07" in text and "substring(option arch, 0, 2) = 00:09" in text
    assert 'option vendor-class-identifier "HTTPClient";' in text
    assert "host node02-1 { hardware ethernet 52:54:00:00:02:02; fixed-address 198.51.100.12;" in text
    assert "host node03-0 { hardware ethernet 52:54:00:00:03:01; option host-name \"node03\"; }" in text
    assert "range 192.0.2.100 192.0.2.199;" in text
    assert text.count("} elsif") == len(BOOT_RULES)


@pytest.mark.parametrize("missing", KEA_SETTINGS)
def test_kea_names_a_missing_setting(plan, kea_settings, missing):
    """The role's defaults are the only defaults: the renderer names what it was not given."""
    with pytest.raises(ValueError, match="the Kea settings lack %s: pass every one of" % missing):
        kea_dhcp4_config(plan, SERVER, {k: v for k, v in kea_settings.items() if k != missing})


@pytest.mark.parametrize("missing", ISC_SETTINGS)
def test_dhcpd_names_a_missing_setting(plan, isc_settings, missing):
    with pytest.raises(ValueError, match="the ISC dhcpd settings lack %s" % missing):
        dhcpd_config(plan, SERVER, {k: v for k, v in isc_settings.items() if k != missing})


def test_false_and_empty_settings_are_values_not_gaps(plan, kea_settings, isc_settings):
    assert kea_dhcp4_config(plan, SERVER, dict(kea_settings, interfaces=[], authoritative=False))["Dhcp4"][
        "authoritative"] is False
    assert "authoritative;" not in dhcpd_config(plan, SERVER, dict(isc_settings, authoritative=False))


def test_with_the_host_database_the_reservations_leave_the_file_for_rows(plan, tmp_path, kea_settings):
    """The rows carry what the reservations carried; the file names the database, keeps the
    classes and flags the rows need, and no longer changes with the plan's digest (an
    onboarding writes rows, with no reload)."""
    in_file = kea_dhcp4_config(plan, SERVER, dict(kea_settings, host_database=False))["Dhcp4"]
    in_db = kea_dhcp4_config(plan, SERVER, dict(kea_settings, host_database=True, interfaces=["lo"],
                                                lease_file=str(tmp_path / "leases.csv"),
                                                control_socket=str(tmp_path / "ctrl.sock")))
    dhcp4 = in_db["Dhcp4"]
    assert dhcp4["hosts-database"] == {"type": "postgresql", "name": "kea", "user": "_kea", "host": "/run/postgresql",
                                       # reconnect: Kea 2.2 would exit at the first packet after a PostgreSQL restart
                                       "max-reconnect-tries": 60, "reconnect-wait-time": 1000,
                                       "on-fail": "stop-retry-exit"}
    assert "reservations" not in dhcp4 and not any("reservations" in s for s in dhcp4["subnet4"])
    assert dhcp4["user-context"] == {"centra.pxe": {"hosts-database": True}}
    for key in ("reservations-global", "reservations-in-subnet", "ip-reservations-unique", "client-classes"):
        assert dhcp4.get(key) == in_file.get(key), key
    expected = [(s["id"], r) for s in in_file["subnet4"] for r in s.get("reservations", [])]
    expected += [(0, r) for r in in_file.get("reservations", [])]
    rows = kea_host_rows(plan, SERVER)
    assert sorted((r["subnet_id"], r["identifier"], r["ipv4"], r["hostname"], tuple(r["classes"])) for r in rows) == \
        sorted((sid, r["hw-address"].replace(":", ""), r.get("ip-address"), r["hostname"],
                tuple(r.get("client-classes", []))) for sid, r in expected)
    assert len({r["subnet_id"] for r in rows}) > 1  # global (0) and subnet rows both present
    path = tmp_path / "kea-dhcp4.conf"
    path.write_text(json.dumps(in_db))
    run = subprocess.run([_checker("kea-dhcp4"), "-t", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_host_rows_carry_node_options_as_wire_bytes():
    plan = {"digest": "d", "subnets": [{"id": 1, "cidr": "192.0.2.0/24"}], "profiles": {},
            "nodes": [{"name": "n1", "macs": ["52:54:00:00:00:01"], "ip": "192.0.2.9", "subnet_id": 1,
                       "options": [{"code": 42, "type": "ip-list", "value": ["192.0.2.1"]},
                                   {"code": 15, "type": "domain", "value": "lab.example"}]}]}
    (row,) = kea_host_rows(plan, SERVER)
    assert row["options"] == [{"code": 42, "space": "dhcp4", "value": "c0000201"},
                              {"code": 15, "space": "dhcp4", "value": b"lab.example".hex()}]
