# SPDX-License-Identifier: GPL-3.0-or-later
"""Kea servers sharing one PostgreSQL host database (pxe_dhcp_kea_host_database_server):
checked across the servers by the plan (host and field of every problem), and each side
rendered: the readers connect over TCP with an included password, which kea-dhcp4 -t reads."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from ansible.plugins.filter.core import to_nice_json

from ansible_collections.centra.pxe.plugins.module_utils._kea_host_db import (
    KEA_HOST_DATABASE, KEA_HOST_DATABASE_PASSWORD_FILE, KEA_HOST_DATABASE_RECONNECT, POSTGRESQL_PORT)
from ansible_collections.centra.pxe.plugins.modules.kea_host_database import read_password
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import build_plan
from ansible_collections.centra.pxe.plugins.plugin_utils._render_dhcp import kea_dhcp4_config, kea_json_text
from ansible_collections.centra.pxe.plugins.plugin_utils._server_context import host_database_context
from servers_inventory import ADDRESSES, NODES, PROFILES, SUBNETS, plan_of, problems_of, server


def servers(**per_host):
    """Three Kea servers with the host database; per_host: name -> variables set on it."""
    out = {}
    for name, address in ADDRESSES.items():
        out[name] = {"address": address, "pxe_dhcp_backend": "kea", "pxe_dhcp_kea_host_database": True}
        out[name].update(per_host.get(name, {}))
    return out


def settings(kea_settings, tmp_path):
    return dict(kea_settings, host_database=True, interfaces=["lo"], lease_file=str(tmp_path / "leases.csv"),
                control_socket=str(tmp_path / "ctrl.sock"))


SHARED = {"pxe01": {"pxe_dhcp_kea_host_database_server": "pxe03"},
          "pxe02": {"pxe_dhcp_kea_host_database_server": "pxe03"},
          "pxe03": {"pxe_dhcp_kea_host_database_server": "pxe03"}}


def test_servers_naming_one_database_are_its_clients_in_inventory_order():
    plan = plan_of(servers(**SHARED))
    assert plan["host_databases"] == [{"server": "pxe03", "address": "192.0.2.4",
                                       "clients": [{"name": "pxe01", "address": "192.0.2.2"},
                                                   {"name": "pxe02", "address": "192.0.2.3"}]}]


def test_without_sharing_the_plan_and_its_digest_are_as_before():
    alone = plan_of(servers())
    named_self = plan_of(servers(pxe01={"pxe_dhcp_kea_host_database_server": "pxe01"}))
    assert "host_databases" not in alone
    assert named_self["digest"] == alone["digest"] == build_plan(SUBNETS, PROFILES, NODES)["digest"]


@pytest.mark.parametrize("per_host, expected", [
    ({"pxe01": {"pxe_dhcp_kea_host_database_server": "pxe09"}},
     "host pxe01: pxe_dhcp_kea_host_database_server: 'pxe09' is not a PXE server of the inventory"),
    ({"pxe01": {"pxe_dhcp_kea_host_database_server": "pxe03", "pxe_dhcp_kea_host_database": False}},
     "host pxe01: pxe_dhcp_kea_host_database_server: is set but pxe_dhcp_kea_host_database is not true"),
    ({"pxe01": {"pxe_dhcp_kea_host_database_server": "pxe03", "pxe_dhcp_backend": "isc"}},
     "host pxe01: pxe_dhcp_kea_host_database_server: only Kea reads a host database"),
    ({"pxe01": {"pxe_dhcp_kea_host_database_server": "pxe03"}, "pxe03": {"pxe_dhcp_kea_host_database": False}},
     "host pxe01: pxe_dhcp_kea_host_database_server: pxe03 has no host database of its own"),
    ({"pxe01": {"pxe_dhcp_kea_host_database_server": "pxe02"}, "pxe02": {"pxe_dhcp_kea_host_database_server": "pxe03"}},
     "host pxe01: pxe_dhcp_kea_host_database_server: pxe02 reads the database of pxe03 itself: name pxe03"),
    ({"pxe01": {"pxe_dhcp_kea_host_database_server": "pxe03"}, "pxe03": {"address": "pxe03.example"}},
     "host pxe01: pxe_dhcp_kea_host_database_server: pxe03 has no IP address as its ansible_host"),
    ({"pxe01": {"pxe_dhcp_kea_host_database_server": "pxe03", "address": "pxe01.example"}},
     "host pxe01: ansible_host: must be an IP address for pxe03 to let this server read its database"),
])
def test_bad_sharing_names_host_and_field(per_host, expected):
    problems = problems_of(servers(**per_host))
    assert any(p.startswith(expected) for p in problems), problems


def test_a_reader_connects_over_tcp_with_the_included_password(kea_settings, tmp_path):
    plan = plan_of(servers(**SHARED))
    config = kea_dhcp4_config(plan, server("pxe01"), settings(kea_settings, tmp_path))
    database = config["Dhcp4"]["hosts-database"]
    assert {k: v for k, v in database.items() if k != "password"} == dict(
        KEA_HOST_DATABASE, host="192.0.2.4", port=POSTGRESQL_PORT, **KEA_HOST_DATABASE_RECONNECT)
    text = kea_json_text(config)
    assert '"password": <?include "%s"?>' % KEA_HOST_DATABASE_PASSWORD_FILE in text
    assert "centra.pxe include" not in text
    # kea-dhcp4 -t reads the included file (and connects to no database); here from tmp_path.
    password = tmp_path / "password"
    password.write_text('"%s"\n' % ("ab" * 32))
    path = tmp_path / "kea-dhcp4.conf"
    path.write_text(text.replace(KEA_HOST_DATABASE_PASSWORD_FILE, str(password)))
    checker = shutil.which("kea-dhcp4") or shutil.which("kea-dhcp4", path="/usr/sbin:/sbin")
    assert checker, "kea-dhcp4 is not installed: scripts/setup.sh installs it"
    run = subprocess.run([checker, "-t", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    password.unlink()
    run = subprocess.run([checker, "-t", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode != 0 and "include" in run.stdout + run.stderr


def test_the_database_server_reads_its_own_over_the_local_socket(kea_settings, tmp_path):
    plan = plan_of(servers(**SHARED))
    config = kea_dhcp4_config(plan, server("pxe03"), settings(kea_settings, tmp_path))
    assert config["Dhcp4"]["hosts-database"] == dict(KEA_HOST_DATABASE, **KEA_HOST_DATABASE_RECONNECT)


def test_kea_json_is_to_nice_json_when_nothing_is_included(kea_settings, tmp_path):
    config = kea_dhcp4_config(plan_of(servers()), server("pxe01"), settings(kea_settings, tmp_path))
    assert kea_json_text(config) == to_nice_json(config, indent=2)


def test_the_server_context_tells_each_side_what_it_shares():
    plan = plan_of(servers(**SHARED))
    reader, owner = host_database_context(plan, "pxe01"), host_database_context(plan, "pxe03")
    assert (reader.pop("role"), owner.pop("role")) == ("reader", "server")
    assert reader == owner
    assert reader["server"] == "pxe03" and reader["port"] == POSTGRESQL_PORT
    assert (reader["database"], reader["user"]) == (KEA_HOST_DATABASE["name"], KEA_HOST_DATABASE["user"])
    assert reader["password_file"] == KEA_HOST_DATABASE_PASSWORD_FILE
    assert host_database_context(plan_of(servers()), "pxe01") is None


@pytest.mark.parametrize("content, error", [
    (None, "does not exist"),
    ("not json", "does not hold a JSON string"),
    ('"short"', "at least 16 characters"),
    ('["' + "a" * 20 + '"]', "at least 16 characters"),
])
def test_a_bad_password_file_is_refused_with_its_path(tmp_path, content, error):
    path = tmp_path / "password"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=error) as info:
        read_password(str(path))
    assert str(path) in str(info.value)


def test_the_password_file_holds_a_json_string(tmp_path):
    path = tmp_path / "password"
    path.write_text(json.dumps("cd" * 32) + "\n")
    assert read_password(str(path)) == "cd" * 32
