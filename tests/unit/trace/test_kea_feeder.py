# SPDX-License-Identifier: GPL-3.0-or-later
"""Kea's trace feeder (the run_script hook's program): the environment Kea 2.2 gives it
(variable names as Debian's libdhcp_run_script.so exports them, recorded from a real
run) into one datagram of the ingest contract, through the real logger."""

from __future__ import annotations

import json
import socket
import time
import os
import shlex
import subprocess

import jinja2
import pytest

# leases4_committed after a DHCPREQUEST, as Kea 2.2 exported it (abridged: the fields the feeder reads and a few more).
COMMITTED = {
    "QUERY4_TYPE": "DHCPREQUEST", "QUERY4_HWADDR": "02:ce:26:1f:8b:8b", "QUERY4_GIADDR": "0.0.0.0",
    "QUERY4_CIADDR": "0.0.0.0", "QUERY4_TXID": "4171024251", "QUERY4_RELAYED": "false",
    "LEASES4_SIZE": "1", "LEASES4_AT0_ADDRESS": "192.0.2.100", "LEASES4_AT0_HWADDR": "02:ce:26:1f:8b:8b",
    "LEASES4_AT0_HOSTNAME": "", "LEASES4_AT0_STATE": "default", "DELETED_LEASES4_SIZE": "0",
}


@pytest.fixture(name="feeder")
def fixture_feeder(tmp_path, receiver, kea_feeder_template):
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.dirname(kea_feeder_template)),
                                     keep_trailing_newline=True)
    environment.filters["quote"] = shlex.quote
    text = environment.get_template(os.path.basename(kea_feeder_template)).render(
        ansible_managed="Ansible managed", _pxe_dhcp_trace_socket=receiver.path)
    path = tmp_path / "kea-trace"
    path.write_text(text)
    return path


def run(feeder, hook: str, env: dict) -> subprocess.CompletedProcess:
    # As run_script starts it: the hook point as $1, Kea's variables and nothing else (no PATH).
    return subprocess.run(["/bin/sh", str(feeder), hook], env=env, capture_output=True, text=True, timeout=10, check=False)


def message(datagram: bytes) -> dict:
    text = datagram.decode()
    assert text.startswith("<") and ": {" in text, text  # syslog-framed, as the contract allows
    return json.loads(text[text.index("{"):])


def test_the_script_is_valid_sh(feeder):
    assert subprocess.run(["/bin/sh", "-n", str(feeder)], check=False).returncode == 0


def test_an_ack(feeder, receiver):
    assert run(feeder, "leases4_committed", COMMITTED).returncode == 0
    assert message(receiver.take()) == {"src": "dhcp", "server": "kea", "type": "ack",
                                        "mac": "02:ce:26:1f:8b:8b", "ip": "192.0.2.100"}


def test_a_relayed_ack_names_the_relay(feeder, receiver):
    run(feeder, "leases4_committed", dict(COMMITTED, QUERY4_GIADDR="198.51.100.1"))
    assert message(receiver.take())["relay"] == "198.51.100.1"


def test_a_refused_request_is_a_nak(feeder, receiver):
    env = dict(COMMITTED, LEASES4_SIZE="0")
    for key in [k for k in env if k.startswith("LEASES4_AT0_")]:
        del env[key]
    run(feeder, "leases4_committed", env)
    assert message(receiver.take()) == {"src": "dhcp", "server": "kea", "type": "nak", "mac": "02:ce:26:1f:8b:8b"}


@pytest.mark.parametrize("hook, kind", [("lease4_release", "release"), ("lease4_decline", "decline")])
def test_release_and_decline(feeder, receiver, hook, kind):
    env = {"QUERY4_TYPE": "DHCPRELEASE", "QUERY4_HWADDR": "52:54:00:00:01:01", "QUERY4_GIADDR": "0.0.0.0",
           "LEASE4_ADDRESS": "192.0.2.11", "LEASE4_HWADDR": "52:54:00:00:01:01"}
    run(feeder, hook, env)
    assert message(receiver.take()) == {"src": "dhcp", "server": "kea", "type": kind,
                                        "mac": "52:54:00:00:01:01", "ip": "192.0.2.11"}


@pytest.mark.parametrize("hook, env", [
    ("lease4_expire", {"LEASE4_ADDRESS": "192.0.2.11", "LEASE4_HWADDR": "52:54:00:00:01:01"}),
    ("leases4_committed", dict(COMMITTED, LEASES4_SIZE="0", QUERY4_TYPE="DHCPINFORM")),
    # A value that is not what Kea writes never reaches the JSON.
    ("leases4_committed", dict(COMMITTED, LEASES4_AT0_HWADDR='02:ce","x":"y')),
])
def test_nothing_is_sent_for_other_hooks_or_odd_values(feeder, receiver, hook, env):
    assert run(feeder, hook, env).returncode == 0
    assert receiver.nothing()


def test_an_odd_address_is_left_out(feeder, receiver):
    run(feeder, "leases4_committed", dict(COMMITTED, LEASES4_AT0_ADDRESS='1.2.3.4"}', QUERY4_GIADDR="x"))
    assert message(receiver.take()) == {"src": "dhcp", "server": "kea", "type": "ack", "mac": "02:ce:26:1f:8b:8b"}


def test_a_missing_socket_is_quiet_and_succeeds(feeder, receiver):
    os.unlink(receiver.path)
    result = run(feeder, "leases4_committed", COMMITTED)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_socket_nobody_reads_holds_the_script_at_most_2_s(feeder, receiver):
    """logger blocks on a full datagram queue: timeout ends it, so no feeder process piles up behind Kea."""
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    filler.setblocking(False)
    try:
        while True:
            filler.sendto(b"x" * 1024, receiver.path)
    except BlockingIOError:
        pass  # the receiver's queue is full now
    finally:
        filler.close()
    started = time.monotonic()
    result = run(feeder, "leases4_committed", COMMITTED)
    elapsed = time.monotonic() - started
    assert result.returncode == 124, result  # timeout's status: logger was stopped, not finished
    assert 1.5 < elapsed < 6, elapsed
