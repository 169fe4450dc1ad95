# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Input the PXE host must survive: broken inventories, configurations its daemons
reject, an operator's TLS certificate, and check mode.

Every run here is site.yml as an operator runs it (ansible-playbook from the
repository, its ansible.cfg) against the converged lab host. "Unchanged" means
host_state() is equal before and after: every file, link and directory the roles
write (type, mode, owner, sha256), the services' MainPID and state, and the live
nftables table. The last test boots a machine and checks that the host is exactly
as converge left it: the tests after this file boot machines too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from labkit.client import boot, booted_profile, host_state, lab_exec, state_changes
from labkit.facts import LAB_INVENTORY, PROJECT, lab_facts, scenario_inventory
from labkit.playbook import ansible_playbook, recap, task_results

LAB = lab_facts()
NODES = LAB.nodes
SERVER_ADDRESS = LAB.server_address

BROKEN = os.path.join(PROJECT, "tests", "fixtures", "broken")
PLAN_TASK = "Build the boot plan from the inventory (once, on the controller)"
# What runs before the plan in pxe_server's preflight: nothing that changes a host.
BEFORE_PLAN = ("Validating arguments against arg spec", "Gather the network facts")


@pytest.fixture(scope="module")
def converged_state():
    """The host as converge (and the tests before this file) left it."""
    return host_state()


# --- 1. Broken inventories: site.yml fails at the plan, the host is unchanged ----------------


def _servers_of(inventory: object) -> list:
    """Every pxe_servers group definition in a parsed YAML inventory."""
    found = []
    if isinstance(inventory, dict):
        for key, value in inventory.items():
            if key == "pxe_servers":
                found.append(value)
            found.extend(_servers_of(value))
    return found


def lab_host_fixtures() -> list[str]:
    """The broken inventories the lab host can join without changing what they mean.

    Each fixture is run with the scenario's inventory as a second -i: the lab host
    pxe01 (how to reach it, the scenario's backend) joins the fixture's pxe_servers,
    and as the later source its variables win. That is harmless when the fixture's
    own server is pxe01 at the lab's address, or when it has none; a fixture whose
    server has another address (21-server-in-pool, whose mistake is that address) is
    left out rather than silently changed. Every run still has to report exactly the
    fixture's expected problems, which catches any other change of meaning."""
    names = []
    for name in sorted(os.listdir(BROKEN)):
        folder = os.path.join(BROKEN, name)
        if not os.path.isfile(os.path.join(folder, "hosts.yml")):
            continue
        with open(os.path.join(folder, "hosts.yml"), encoding="utf-8") as handle:
            servers = _servers_of(yaml.safe_load(handle))
        server_files = [p for p in ("host_vars/pxe01.yml", "group_vars/pxe_servers.yml", "group_vars/pxe_servers")
                        if os.path.exists(os.path.join(folder, p))]
        if servers in ([], [{"hosts": {"pxe01": {"ansible_host": SERVER_ADDRESS}}}]) and not server_files:
            names.append(name)
    return names


def fixtures_for(backend: str) -> list[str]:
    """Every other one with Kea (the default scenario), every sixth of the others with ISC
    dhcpd: each scenario stays within about two minutes, the two together try more
    fixtures, and the plan does not depend on the backend."""
    names = lab_host_fixtures()
    return names[0::2] if backend == "kea" else names[1::6]


def expected_problems(name: str) -> list[str]:
    with open(os.path.join(BROKEN, name, "expected.txt"), encoding="utf-8") as handle:
        return [line.rstrip("\n").replace("{dir}", os.path.join(BROKEN, name)) for line in handle if line.strip()]


def site_on_fixture(name: str) -> subprocess.CompletedProcess:
    return ansible_playbook("site.yml", inventories=(os.path.join(BROKEN, name, "hosts.yml"), scenario_inventory()),
                            timeout=300)


def stopped_at_the_plan(name: str, run: subprocess.CompletedProcess) -> list[str]:
    """Why this run is not the refusal it should be (empty: it is)."""
    if run.returncode == 0:
        return ["site.yml passed"]
    expected = expected_problems(name)
    results = task_results(run.stdout)
    ansible_errors = [line[len("ansible: "):] for line in expected if line.startswith("ansible: ")]
    if ansible_errors:  # the inventory does not parse (ansible.cfg: any_unparsed_is_failed): no play starts
        missing = [text for text in ansible_errors if text not in run.stdout + run.stderr]
        return ["not reported: %r" % missing] * bool(missing) + ["a task ran: %r" % results[:1]] * bool(results)
    problems = []
    stats = recap(run.stdout).get("pxe01", {})
    if stats.get("changed") != 0 or stats.get("failed") != 1 or stats.get("unreachable"):
        problems.append("recap %r" % stats)
    tasks = [task for task, _status, _host, _result in results]
    failed = [(task, result) for task, status, _host, result in results if status in ("fatal", "failed")]
    if not failed or failed[0][0] != PLAN_TASK:
        problems.append("did not fail at the plan: %r" % [(task, result.get("msg")) for task, result in failed])
    elif any(not task.startswith(BEFORE_PLAN) for task in tasks[:tasks.index(PLAN_TASK)]) or tasks[-1] != PLAN_TASK:
        problems.append("tasks around the plan: %r" % tasks)
    reported = failed[0][1].get("problems", []) if failed else []
    problems += ["not reported: %s" % line for line in expected if not any(p.startswith(line) for p in reported)]
    problems += ["reported, not expected: %s" % p for p in reported if not any(p.startswith(line) for line in expected)]
    # The message an operator reads names the host (or profile, subnet) and the field.
    message = failed[0][1].get("msg", "") if failed else ""
    problems += ["not in the message: %s" % line for line in expected if line not in message]
    return problems


def test_broken_inventories_fail_at_the_plan_and_change_nothing(backend, converged_state):
    """site.yml on each broken inventory (tests/fixtures/broken: of those the lab host can
    join, every other one with Kea, every sixth of the others with ISC dhcpd) fails at the plan, with changed=0, naming the
    fixture's expected problems (host or profile or subnet, and field); the host is
    byte-for-byte unchanged and no service restarted. The runs go four at a time: each is
    read-only until the plan (which is what is checked, run by run), so one host_state()
    before and after the batch is enough."""
    names = fixtures_for(backend)
    assert len(names) >= (30 if backend == "kea" else 10), names
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = dict(zip(names, pool.map(site_on_fixture, names)))
    wrong = {name: why for name, run in runs.items() if (why := stopped_at_the_plan(name, run))}
    assert not wrong, "\n".join("%s: %s" % (name, "; ".join(why)) for name, why in wrong.items())
    assert state_changes(converged_state, host_state()) == []


# --- 6. Check mode ---------------------------------------------------------------------


def test_check_mode_on_the_converged_host_reports_no_change(converged_state):
    run = ansible_playbook("site.yml", "--check", "--diff")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert recap(run.stdout)["pxe01"]["changed"] == 0, run.stdout[-3000:]
    assert state_changes(converged_state, host_state()) == []


def changed_lab_inventory(folder: str) -> str:
    """A copy of inventories/lab with node05 added and node02 on a new MAC."""
    copy = shutil.copytree(LAB_INVENTORY, os.path.join(folder, "lab-changed"))
    path = os.path.join(copy, "hosts.yml")
    with open(path, encoding="utf-8") as handle:
        inventory = yaml.safe_load(handle)
    workers = inventory["all"]["children"]["pxe_nodes"]["children"]["worker"]["hosts"]
    workers["node02"]["pxe_mac"] = "52:54:00:00:02:09"
    workers["node05"] = {"pxe_mac": "52:54:00:00:05:01", "pxe_ip": "192.0.2.15"}
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(inventory, handle)
    return copy


def test_check_mode_on_a_changed_inventory_shows_the_diff_and_changes_nothing(backend, converged_state, tmp_path):
    run = ansible_playbook("site.yml", "--check", "--diff",
                           inventories=(scenario_inventory(), changed_lab_inventory(str(tmp_path))))
    out = run.stdout
    assert run.returncode == 0, out[-3000:] + run.stderr[-2000:]
    assert recap(out)["pxe01"]["changed"] > 0, out[-3000:]
    # The node scripts: one added, one gone, one new.
    for line in ("+add 52-54-00-00-05-01.ipxe", "+add 52-54-00-00-02-09.ipxe", "-remove 52-54-00-00-02-01.ipxe"):
        assert line in out, line + "\n" + out[-4000:]
    # The DHCP configuration: the new reservations, the old MAC's gone.
    if backend == "kea":
        assert re.search(r'^\+\s+"hw-address": "52:54:00:00:05:01"', out, re.M), out[-4000:]
        assert re.search(r'^-\s+"hw-address": "52:54:00:00:02:01"', out, re.M), out[-4000:]
    else:
        assert re.search(r"^\+host node05-0 \{ hardware ethernet 52:54:00:00:05:01;", out, re.M), out[-4000:]
        assert re.search(r"^-host node02-0 \{ hardware ethernet 52:54:00:00:02:01;", out, re.M), out[-4000:]
    assert state_changes(converged_state, host_state()) == []


# --- 2. Validate before replace: a config the daemon rejects never goes live --------------

# Operator input that passes the plan and the argument specs, but not the daemon's own
# check: (variables, backends, the role's tag, the task whose validate: refuses it, the
# daemon's words). The run is site.yml limited to the preflight and that role (its tag):
# on the converged host the other roles have nothing to change with this input.
REJECTED = {
    # nginx allows addresses and networks, not host names.
    "nginx-allow-hostname": ({"pxe_http_allow_extra": ["monitoring.example.com"]}, ("kea", "isc"), "pxe_http",
                             "Install the site checker, the site, its logs and nginx's drop-in", 'invalid parameter "monitoring.example.com"'),
    # A relay interface that this host does not have. dhcpd -t does not look at
    # interfaces (and dhcpd would ignore it): the role's own check on INTERFACESv4 refuses it.
    "kea-interface-typo": ({"pxe_dhcp_extra_interfaces": ["host9"]}, ("kea",), "pxe_dhcp",
                           "Write the Kea configuration", "interface 'host9' doesn't exist"),
    "isc-interface-typo": ({"pxe_dhcp_extra_interfaces": ["host9"]}, ("isc",), "pxe_dhcp",
                           "Answer on the provisioning interface", "no interface host9"),
}


@pytest.mark.parametrize("case", sorted(c for c in REJECTED if LAB.backend in REJECTED[c][1]))
def test_a_config_the_daemon_rejects_fails_the_play_and_the_old_one_keeps_running(case):
    extra_vars, _backends, tag, task, words = REJECTED[case]
    before = host_state()
    run = ansible_playbook("site.yml", "--tags", tag, extra_vars=extra_vars)
    assert run.returncode != 0, run.stdout[-3000:]
    failed = [(name, result) for name, status, _host, result in task_results(run.stdout) if status in ("fatal", "failed")]
    assert [name for name, _result in failed] == [task], run.stdout[-4000:]
    result = failed[0][1]
    assert "failed to validate" in result.get("msg", ""), result
    assert words in result.get("stderr", "") + result.get("stdout", ""), result
    # Nothing changed before the refusal either (the host was converged), and nothing ran after it.
    assert recap(run.stdout)["pxe01"]["changed"] == 0, run.stdout[-3000:]
    # The old file in place, the daemon neither reloaded with it nor restarted.
    assert state_changes(before, host_state()) == []


def test_a_port_nginx_would_refuse_is_refused_at_the_preflight():
    """nginx -t refuses port 70000, but the boot scripts carry the port and are written
    before the nginx site: the preflight refuses it before anything changes."""
    before = host_state()
    run = ansible_playbook("site.yml", extra_vars={"pxe_server_http_port": 70000})
    assert run.returncode != 0, run.stdout[-3000:]
    failed = [(name, result) for name, status, _host, result in task_results(run.stdout) if status in ("fatal", "failed")]
    assert [name for name, _result in failed] == ["Check the ports"], run.stdout[-3000:]
    assert "pxe_server_http_port (70000)" in failed[0][1].get("msg", ""), failed[0][1]
    assert recap(run.stdout)["pxe01"]["changed"] == 0
    assert state_changes(before, host_state()) == []


# --- 5. HTTPS with an operator's certificate --------------------------------------------


def make_certificates(folder: str) -> dict[str, str]:
    """A throwaway CA and a certificate for the lab host's address, signed by it."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec_key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=centra.pxe test CA")
    openssl("req", *ec_key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=%s" % SERVER_ADDRESS)
    with open(os.path.join(folder, "server.ext"), "w", encoding="utf-8") as handle:
        handle.write("subjectAltName=IP:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" % SERVER_ADDRESS)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    return {name: os.path.join(folder, name) for name in ("ca.pem", "server.pem", "server.key")}


def https(path: str, *curl_args: str) -> subprocess.CompletedProcess:
    return lab_exec("curl", "-sS", "--max-time", "20", *curl_args, "https://%s%s" % (SERVER_ADDRESS, path), check=False)


def test_https_with_an_operator_certificate_verified_against_its_ca(tmp_path):
    """Converge with pxe_http_tls_cert/key, fetch over HTTPS verified against the CA,
    then converge back without them: the host is exactly as before (TLS off is the
    scenario's state, which its idempotence step checked). The second run with TLS and
    the run back are limited to the roles TLS touches (pxe_http, pxe_firewall; the
    preflight always runs); host_state() proves the way back complete."""
    before = host_state()
    certs = make_certificates(str(tmp_path))
    tls = {"pxe_http_tls_cert": certs["server.pem"], "pxe_http_tls_key": certs["server.key"]}
    try:
        run = ansible_playbook("site.yml", extra_vars=tls)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert recap(run.stdout)["pxe01"]["changed"] > 0
        # With TLS on, a second run of the roles TLS touches changes nothing.
        again = ansible_playbook("site.yml", "--tags", "pxe_http,pxe_firewall", extra_vars=tls)
        assert again.returncode == 0 and recap(again.stdout)["pxe01"]["changed"] == 0, again.stdout[-3000:]

        script = https("/boot.ipxe", "--cacert", certs["ca.pem"])
        assert script.returncode == 0 and script.stdout.startswith("#!ipxe"), script.stdout + script.stderr
        node = NODES["node02"]
        kernel = lab_exec("sh", "-c", "curl -sS --cacert %s https://%s/profiles/%s/vmlinuz | sha256sum"
                          % (certs["ca.pem"], SERVER_ADDRESS, node.profile))
        health = https("/healthz", "--cacert", certs["ca.pem"])
        assert "sha256:" + kernel.stdout.split()[0] == json.loads(health.stdout)["assets"]["%s/vmlinuz" % node.profile]
        # Without the CA, curl cannot verify the server: exit 60.
        assert https("/boot.ipxe").returncode == 60
    finally:
        back = ansible_playbook("site.yml", "--tags", "pxe_http,pxe_firewall")
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-2000:]
    assert https("/boot.ipxe", "--cacert", certs["ca.pem"]).returncode != 0  # port 443 closed again
    assert state_changes(before, host_state()) == []


# --- After all of it, a machine boots, from a host exactly as converged ---------------------


def test_a_machine_boots_afterwards_from_the_host_as_converged(converged_state):
    """One boot for the whole file: after broken inventories, check runs, rejected configs
    and the HTTPS round trip, the host serves what converge made, and a node boots its profile
    (the diskless one: the install tests left the others installed, booting their disks)."""
    assert state_changes(converged_state, host_state()) == []
    node = next(n for n in NODES.values() if n.boot == "netboot")
    assert booted_profile(boot(node.macs[0], "bios")["line"]) == node.profile
