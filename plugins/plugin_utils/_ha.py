# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE to the centra.pxe collection: controller-side code of its plugins, never
# shipped to a managed host. Not an API: it may change in any release.
"""High availability of DHCP between PXE servers: pxe_dhcp_ha checked across the
servers, paired into relationships (the plan's "ha"), and which one a server is in."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any, Dict, List, Optional

Report = Callable[[str, str, str], None]  # problem(where, field, message)

HA_MODES = ("hot-standby", "load-balancing")
HA_BACKENDS = ("kea", "isc")
# Per backend: the pxe_dhcp_ha fields it takes besides mode and peers, with their defaults,
# written here only (the pxe_dhcp argument spec documents the fields, the plan shows the values).
# Kea's are its HA hook's parameters (milliseconds); ISC's those of a failover peer (seconds).
HA_SETTINGS: Dict[str, Dict[str, int]] = {
    # 8001, not 8000: kea-ctrl-agent's default port stays free for an operator's own agent.
    "kea": {"port": 8001, "heartbeat_delay_ms": 10000, "max_response_delay_ms": 60000,
            "max_ack_delay_ms": 10000, "max_unacked_clients": 10},
    "isc": {"port": 647, "max_response_delay": 60, "max_unacked_updates": 10, "mclt": 3600,
            "split": 128, "load_balance_max_seconds": 3, "auto_partner_down": 0},
}
HA_MINIMUM = {"max_unacked_clients": 0, "split": 1, "auto_partner_down": 0}  # every other setting must be at least 1
HA_SERVER_VARS = ("pxe_dhcp_ha", "pxe_dhcp_ha_address")


def _ha_roles(backend: str, mode: str, count: int) -> List[str]:
    """Roles by position in peers: primary, then standby (Kea hot-standby) or secondary, then backups (Kea)."""
    second = "standby" if backend == "kea" and mode == "hot-standby" else "secondary"
    return ["primary", second] + ["backup"] * (count - 2)


def ha_relationships(problem: Report, servers: Mapping[str, Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Check pxe_dhcp_ha on every PXE server and return the HA relationships.

    problem(where, field, message) is called for every problem found; a relationship with
    a problem is left out.

    servers: PXE server name -> {"address" (ansible_host), "pxe_dhcp_backend", "pxe_dhcp_ha",
    "pxe_dhcp_ha_address"}, in inventory order, only the variables that are set.
    """
    wanted: Dict[str, Dict[str, Any]] = {}  # server -> its normalised pxe_dhcp_ha
    addresses: Dict[str, str] = {}
    for name, server in servers.items():
        where = "host %s" % name
        raw = server.get("pxe_dhcp_ha")
        if raw in (None, {}):
            if server.get("pxe_dhcp_ha_address") not in (None, ""):
                problem(where, "pxe_dhcp_ha_address", "is set but pxe_dhcp_ha is not: this server has no HA peer")
            continue
        backend = server.get("pxe_dhcp_backend", "kea")
        if backend not in HA_BACKENDS:
            continue  # the role's argument spec reports the backend itself
        if not isinstance(raw, Mapping):
            problem(where, "pxe_dhcp_ha", "must be a mapping such as {mode: hot-standby}, got %r" % (raw,))
            continue
        settings = HA_SETTINGS[backend]
        known = ("mode", "peers") + tuple(settings)
        bad = False
        for key in raw:
            if key not in known:
                other = [b for b in HA_BACKENDS if b != backend and key in HA_SETTINGS[b]]
                problem(where, "pxe_dhcp_ha.%s" % key,
                        "applies to the %s backend only, this server runs %s" % (other[0], backend) if other
                        else "unknown field (known with %s: %s)" % (backend, ", ".join(known)))
                bad = True
        mode = raw.get("mode")
        if mode not in HA_MODES:
            problem(where, "pxe_dhcp_ha.mode", "%r is not one of %s" % (mode, ", ".join(HA_MODES)))
            bad = True
        peers = raw.get("peers")
        if peers is None:
            peers = [n for n, s in servers.items() if s.get("pxe_dhcp_ha") not in (None, {})]
        elif not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
            problem(where, "pxe_dhcp_ha.peers", "must be a list of pxe_servers host names, got %r" % (peers,))
            peers, bad = [], True
        for peer in peers:
            if peer not in servers:
                problem(where, "pxe_dhcp_ha.peers", "%s is not a host of pxe_servers" % peer)
                bad = True
        if len(set(peers)) != len(peers):
            problem(where, "pxe_dhcp_ha.peers", "lists a server twice: %s" % ", ".join(peers))
            bad = True
        elif peers and name not in peers:
            problem(where, "pxe_dhcp_ha.peers", "does not list %s itself (%s)" % (name, ", ".join(peers)))
            bad = True
        most = 2 if backend == "isc" else None
        if len(peers) < 2 or (most and len(peers) > most):
            problem(where, "pxe_dhcp_ha.peers",
                    "%s needs %s servers, got %d (%s)%s" % (
                        "ISC failover" if backend == "isc" else "a Kea HA relationship",
                        "exactly 2" if most else "2 (primary and %s) plus optional backups" % (
                            "standby" if mode == "hot-standby" else "secondary"),
                        len(peers), ", ".join(peers) or "none",
                        "; list them in pxe_dhcp_ha.peers" if raw.get("peers") is None else ""))
            bad = True
        values: Dict[str, Any] = {}
        for key, default in settings.items():
            value = raw.get(key, default)
            least = HA_MINIMUM.get(key, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < least or (key == "port" and value > 65535):
                problem(where, "pxe_dhcp_ha.%s" % key, "must be a whole number %s, got %r" % (
                    "from 1 to 65535" if key == "port" else "of at least %d" % least, value))
                bad = True
            values[key] = value
        if backend == "isc":
            if mode == "hot-standby" and "split" in raw:
                problem(where, "pxe_dhcp_ha.split", "applies to load-balancing only: in hot-standby the "
                        "primary answers every client (split 256)")
                bad = True
            if isinstance(values["split"], int) and values["split"] > 255:
                problem(where, "pxe_dhcp_ha.split", "must be from 1 to 255 in load-balancing (256 is hot-standby)")
                bad = True
            if mode == "hot-standby":
                values["split"] = 256
        elif (isinstance(values["max_response_delay_ms"], int) and isinstance(values["heartbeat_delay_ms"], int)
              and values["max_response_delay_ms"] <= values["heartbeat_delay_ms"]):
            problem(where, "pxe_dhcp_ha.max_response_delay_ms", "%d must exceed heartbeat_delay_ms (%d): "
                    "the partner would be declared down between two heartbeats"
                    % (values["max_response_delay_ms"], values["heartbeat_delay_ms"]))
            bad = True
        own_address = server.get("pxe_dhcp_ha_address") not in (None, "")
        raw_address = server["pxe_dhcp_ha_address"] if own_address else server.get("address")
        try:
            addresses[name] = str(ipaddress.IPv4Address(str(raw_address)))
        except ValueError:
            field = "pxe_dhcp_ha_address" if own_address else "ansible_host"
            problem(where, field, "%r is not an IPv4 address: the HA peers reach each other there "
                    "(set pxe_dhcp_ha_address)" % (raw_address,))
            bad = True
        if not bad:
            wanted[name] = dict(values, backend=backend, mode=mode, peers=list(peers))
    relationships: List[Dict[str, Any]] = []
    seen = set()
    for name, mine in wanted.items():
        if name in seen:
            continue
        consistent = True
        for peer in mine["peers"]:
            theirs = wanted.get(peer)
            if theirs == mine:
                continue
            consistent = False
            if theirs is None and servers.get(peer, {}).get("pxe_dhcp_ha") in (None, {}):
                problem("host %s" % peer, "pxe_dhcp_ha", "is not set, but %s names it as its HA peer" % name)
            elif theirs is not None and theirs["backend"] != mine["backend"]:
                problem("host %s" % peer, "pxe_dhcp_backend", "%s, not %s like its HA peer %s: a pair runs "
                        "one DHCP server" % (theirs["backend"], mine["backend"], name))
            elif theirs is not None:
                differs = ["%s %r, not %r" % (k, theirs[k], mine[k]) for k in sorted(mine) if theirs[k] != mine[k]]
                problem("host %s" % peer, "pxe_dhcp_ha", "must match that of its HA peer %s: %s"
                        % (name, "; ".join(differs)))
            # else: the peer's own pxe_dhcp_ha has problems, reported above
        by_address: Dict[str, str] = {}
        for peer in mine["peers"]:
            address = addresses.get(peer)
            if address in by_address:
                problem("host %s" % peer, "pxe_dhcp_ha_address", "%s is also the HA address of %s"
                        % (address, by_address[address]))
                consistent = False
            elif address:
                by_address[address] = peer
        seen.update(mine["peers"])
        if consistent:
            roles = _ha_roles(mine["backend"], mine["mode"], len(mine["peers"]))
            relationship = {k: v for k, v in mine.items() if k != "peers"}
            relationship["peers"] = [{"name": p, "role": r, "address": addresses[p]} for p, r in zip(mine["peers"], roles)]
            relationships.append(relationship)
    return relationships


def ha_relationship(plan: Mapping[str, Any], server: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The HA relationship of the plan this server (by its inventory name) belongs to, if any."""
    name = server.get("name")
    for relationship in plan.get("ha") or []:
        if any(peer["name"] == name for peer in relationship["peers"]):
            return dict(relationship)
    return None
