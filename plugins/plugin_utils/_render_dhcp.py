# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE to the centra.pxe collection: controller-side code of its plugins, never
# shipped to a managed host. Not an API: it may change in any release.
"""DHCP configurations from the boot plan: Kea (a dict for kea-dhcp4.conf) and ISC
dhcpd (dhcpd.conf text). The client classification of both comes from BOOT_RULES,
so the two backends give the same answers.

The renderers take resolved settings and know no defaults: the pxe_dhcp role's
defaults are the one place those are written, and a setting left out is an error.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import (
    BOOT_RULES,
    HTTP_CLIENT_VENDOR_CLASS,
    IPXE_ENCAP_OPTION,
    BootRule,
    BootServer,
    boot_server,
    decide,
    loader_dependent_rules,
    node_loader,
)
from ansible_collections.centra.pxe.plugins.module_utils._kea_host_db import (
    GLOBAL_SUBNET_ID,
    KEA_HOST_DATABASE,
    KEA_HOST_DATABASE_PASSWORD_FILE,
    KEA_HOST_DATABASE_RECONNECT,
    POSTGRESQL_PORT,
)
from ansible_collections.centra.pxe.plugins.module_utils._settings import resolved_settings
from ansible_collections.centra.pxe.plugins.plugin_utils._dhcp_options import (
    isc_declarations,
    isc_option_statements,
    kea_option_data,
    kea_option_defs,
    wire,
)
from ansible_collections.centra.pxe.plugins.plugin_utils._ha import ha_relationship
from ansible_collections.centra.pxe.plugins.plugin_utils._shared_host_db import host_database_share

KEA_CLASS_PREFIX = "centra_"
# The settings each renderer reads (the pxe_dhcp role passes them from its variables).
KEA_SETTINGS = ("interfaces", "lease_file", "control_socket", "valid_lifetime", "authoritative",
                "socket_retries", "socket_retry_wait_ms", "log_severity", "hooks_dir", "trace",
                "ha_tls_dir", "host_database")
ISC_SETTINGS = ("valid_lifetime", "authoritative", "trace")
ISC_FAILOVER_PEER = "centra-pxe"
# The start of dhcpd's trace lines (the journal feeder of centra.pxe.pxe_tftp reads them).
DHCPD_TRACE_TAG = "centra.pxe trace"
# The files the pxe_dhcp role keeps in ha_tls_dir on each server of a Kea HA pair: the
# pair's CA certificate, this server's certificate (signed by that CA) and its private key.
KEA_HA_TLS_FILES = {"trust-anchor": "ca.crt", "cert-file": "server.crt", "key-file": "server.key"}


def kea_ha_hooks(relationship: Mapping[str, Any], this_server: str, hooks_dir: str,
                 tls_dir: str) -> List[Dict[str, Any]]:
    """hooks-libraries for one server of a Kea HA relationship.

    The peers talk over HTTP through the HA hook's own listener inside kea-dhcp4
    (HA+MT, "http-dedicated-listener"), not through kea-ctrl-agent: the listener
    lives and dies with the DHCP service, so "partner unreachable" means "partner's
    DHCP is down", and there is no second daemon to install, configure and keep up.

    The channel is mutual TLS: Kea 2.2's listener authenticates nothing else (basic
    auth is client-side only there), and with require-client-certs it refuses a peer
    without a certificate signed by the pair's CA. The global trust-anchor, cert-file
    and key-file serve both ends: the listener's server certificate and the client
    certificate this server presents to its peers.
    """
    hooks_dir = hooks_dir.rstrip("/")
    tls = {key: "%s/%s" % (tls_dir.rstrip("/"), name) for key, name in KEA_HA_TLS_FILES.items()}
    peers = [{"name": peer["name"], "url": "http://%s:%d/" % (peer["address"], relationship["port"]),
              "role": peer["role"], "auto-failover": True} for peer in relationship["peers"]]
    return [
        {"library": hooks_dir + "/libdhcp_lease_cmds.so"},
        {"library": hooks_dir + "/libdhcp_ha.so", "parameters": {"high-availability": [{
            "this-server-name": this_server,
            "mode": relationship["mode"],
            "heartbeat-delay": relationship["heartbeat_delay_ms"],
            "max-response-delay": relationship["max_response_delay_ms"],
            "max-ack-delay": relationship["max_ack_delay_ms"],
            "max-unacked-clients": relationship["max_unacked_clients"],
            **tls,
            "require-client-certs": True,
            "multi-threading": {"enable-multi-threading": True, "http-dedicated-listener": True,
                                "http-listener-threads": 0, "http-client-threads": 0},
            "peers": peers,
        }]}},
    ]


def kea_pools(pool: Mapping[str, str], relationship: Optional[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """A subnet's dynamic pool as Kea's "pools".

    In load-balancing both servers allocate at once, each for the clients of its scope:
    from one shared pool nothing keeps them from picking the same free address for two
    clients (a server learns its partner's leases only after the fact), which is why Kea's
    HA documentation splits the pools. So the pool is split in two halves, the
    primary's and the secondary's, each for the class the HA hook gives the queries of
    that server's scope (HA_<server name>); the survivor in partner-down serves both
    scopes, and so both halves. A one-address pool stays the primary's. Hot-standby
    (one server allocates at a time) and backups keep the whole pool.
    """
    if not relationship or relationship["mode"] != "load-balancing":
        return [{"pool": "%s - %s" % (pool["start"], pool["end"])}]
    first, last = ipaddress.IPv4Address(pool["start"]), ipaddress.IPv4Address(pool["end"])
    primary, secondary = (peer["name"] for peer in relationship["peers"][:2])
    if first == last:
        return [{"pool": "%s - %s" % (first, last), "client-class": "HA_" + primary}]
    middle = first + (int(last) - int(first)) // 2
    return [{"pool": "%s - %s" % (first, middle), "client-class": "HA_" + primary},
            {"pool": "%s - %s" % (middle + 1, last), "client-class": "HA_" + secondary}]


def kea_trace_loggers(log_severity: str) -> List[Dict[str, Any]]:
    """What the boot trace (docs/status.md) adds to kea-dhcp4: loggers whose lines the
    journal feeder of centra.pxe.pxe_tftp reads (no hook: a process per lease event
    cost Kea 37 ms of CPU per boot and lost boots in a storm, BENCHMARKS.md).

    - kea-dhcp4.dhcp4 at DEBUG level 40: DHCP4_CLASS_ASSIGNED, two lines a packet and
      nothing else there, which names the built-in class VENDOR_CLASS_<option 60>
      ("PXEClient:Arch:00007:...") with the client's MAC and transaction id;
    - kea-dhcp4.leases at INFO (unless the whole server logs at DEBUG):
      DHCP4_LEASE_ADVERT (offer), DHCP4_LEASE_ALLOC/_REUSE (ack), DHCP4_RELEASE and
      DHCP4_DECLINE_LEASE, whatever pxe_dhcp_kea_log_severity says;
    - kea-dhcp4.bad-packets at DEBUG level 50: the DHCPNAKs to a REQUEST
      (DHCP4_PACKET_NAK_0002, _0004; _0001 is an ERROR); the other lines there are
      dropped packets, one line each at most.
    """
    loggers: List[Dict[str, Any]] = [
        {"name": "kea-dhcp4.dhcp4", "severity": "DEBUG", "debuglevel": 40, "output_options": [{"output": "stdout"}]},
        {"name": "kea-dhcp4.bad-packets", "severity": "DEBUG", "debuglevel": 50, "output_options": [{"output": "stdout"}]},
    ]
    if log_severity != "DEBUG":
        loggers.append({"name": "kea-dhcp4.leases", "severity": "INFO", "output_options": [{"output": "stdout"}]})
    return loggers


def _kea_arch_test(rule: BootRule) -> str:
    terms = []
    for code in rule.arch_codes:
        if code is None:
            terms.append("not option[93].exists")
        else:
            terms.append("substring(option[93].hex,0,2) == 0x%04x" % code)
    return " or ".join(terms)


def loader_class(loader: str) -> str:
    """The Kea class a host reservation gives the nodes whose loader is not the server's default."""
    return KEA_CLASS_PREFIX + "loader_" + loader


def other_loaders(plan: Mapping[str, Any], server: BootServer) -> List[str]:
    """The loaders of nodes that differ from the server's default, when that changes an answer."""
    if not loader_dependent_rules(server):
        return []
    return sorted({node_loader(node, server) for node in plan["nodes"]} - {server.default_loader})


def _kea_answer_fields(answer: Any) -> Dict[str, Any]:
    entry: Dict[str, Any] = {}
    if answer.kind in ("tftp", "http") and answer.next_server:
        entry["next-server"] = answer.next_server
    if answer.kind in ("tftp", "http"):
        entry["boot-file-name"] = answer.filename
    if answer.kind == "http":
        entry["option-data"] = [{"name": "vendor-class-identifier", "data": HTTP_CLIENT_VENDOR_CLASS,
                                 "always-send": True}]
    return entry


def kea_client_classes(server: BootServer, log_only_classes: bool = True,
                       loaders: List[str] = ()) -> List[Dict[str, Any]]:
    """The option-93 classes, from BOOT_RULES.

    log_only_classes: also the classes that carry no answer (an architecture without a
    loader, and unknown architectures), which only show in Kea's logs at DEBUG. Kea 2.2
    evaluates every class for every packet, at about 1,300 instructions per token
    (benchmarks/dhcp_perf.py --callgrind): without a reader for them they only cost.

    loaders: the loaders, other than the server's default, that some nodes use
    (other_loaders()). Their host reservations carry the class centra_loader_<loader>,
    which Kea assigns after its early classification: the rows whose answer depends on
    the loader are then evaluated late (only-if-required, required by every subnet),
    one class per loader, each excluding the others, so that exactly one answers (Kea
    2.2 takes the boot file of the first matching class in the packet's order, and the
    early classes would come first).
    """
    ipxe = KEA_CLASS_PREFIX + "ipxe"
    deferred = {rule.name for rule in loader_dependent_rules(server)} if loaders else set()
    classes: List[Dict[str, Any]] = [{
        "name": ipxe,
        # iPXE sends user class "iPXE" (raw, not RFC 3004 framed) and option 175.
        "test": "option[77].hex == 'iPXE' or option[%d].exists" % IPXE_ENCAP_OPTION,
        "boot-file-name": decide(server, user_class=b"iPXE").filename,
    }]
    # Classes without a test: only host reservations give them.
    classes.extend({"name": loader_class(loader)} for loader in loaders)
    known = []
    for rule in BOOT_RULES:
        arch_test = _kea_arch_test(rule)
        answer = decide(server, arch=rule.arch_codes[-1])
        entry: Dict[str, Any] = {
            "name": KEA_CLASS_PREFIX + "arch_" + rule.name,
            "test": "not member('%s') and (%s)" % (ipxe, arch_test),
        }
        if rule.name not in deferred:
            known.append("member('%s')" % entry["name"])
            entry.update(_kea_answer_fields(answer))
            # kind "none": the class exists (visible in Kea's logs) but carries no boot file.
            if answer.kind != "none" or log_only_classes:
                classes.append(entry)
            continue
        # Evaluated late, after the reservation's classes: the server's default loader
        # for the nodes of no other loader's class, then one class per other loader.
        known.append("(%s)" % arch_test)
        others = " and ".join("not member('%s')" % loader_class(loader) for loader in loaders)
        entry["test"] = "not member('%s') and %s and (%s)" % (ipxe, others, arch_test)
        entry["only-if-required"] = True
        entry.update(_kea_answer_fields(answer))
        classes.append(entry)
        for loader in loaders:
            classes.append(dict({
                "name": "%s%s_arch_%s" % (KEA_CLASS_PREFIX, loader, rule.name),
                "test": "not member('%s') and member('%s') and (%s)" % (ipxe, loader_class(loader), arch_test),
                "only-if-required": True,
            }, **_kea_answer_fields(decide(server, arch=rule.arch_codes[-1], loader=loader))))
    if not log_only_classes:
        return classes
    classes.append({
        "name": KEA_CLASS_PREFIX + "arch_unknown",
        # member() of the classes above (Kea evaluates them in order), not their tests
        # again: Kea's expressions do not short-circuit, and this runs for every packet.
        "test": "not member('%s') and option[93].exists and not (%s)" % (ipxe, " or ".join(known)),
    })
    return classes


def _kea_subnet_options(subnet: Mapping[str, Any]) -> List[Dict[str, Any]]:
    options = []
    if subnet.get("gateway"):
        options.append({"name": "routers", "data": subnet["gateway"]})
    if subnet.get("dns"):
        options.append({"name": "domain-name-servers", "data": ", ".join(subnet["dns"])})
    options.extend(kea_option_data(subnet.get("options", [])))
    return options


def kea_reservations(plan: Mapping[str, Any], boot: BootServer,
                     loaders: List[str]) -> Iterator[Tuple[Optional[int], Dict[str, Any]]]:
    """(subnet id, or None for a global one; Kea reservation) for every MAC of every node."""
    for node in plan["nodes"]:
        node_options = kea_option_data(node.get("options", []))
        chain = node_loader(node, boot)
        for mac in node["macs"]:
            reservation: Dict[str, Any] = {"hw-address": mac, "hostname": node["name"]}
            if node_options:
                reservation["option-data"] = node_options
            if chain in loaders:
                reservation["client-classes"] = [loader_class(chain)]
            if node["ip"]:
                reservation["ip-address"] = node["ip"]
                yield node["subnet_id"], reservation
            else:
                yield None, reservation


def kea_host_rows(plan: Mapping[str, Any], server: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The rows of Kea's host database for the plan: the same reservations as kea_dhcp4_config's,
    options as their wire bytes (hex), which need no option definition to store."""
    boot = boot_server(server)
    options_by_name = {node["name"]: [{"code": o["code"], "space": "dhcp4", "value": wire(o["type"], o["value"]).hex()}
                                      for o in node.get("options", [])] for node in plan["nodes"]}
    rows = []
    for subnet_id, reservation in kea_reservations(plan, boot, other_loaders(plan, boot)):
        rows.append({"identifier": reservation["hw-address"].replace(":", ""),
                     "subnet_id": GLOBAL_SUBNET_ID if subnet_id is None else subnet_id,
                     "ipv4": reservation.get("ip-address"),
                     "hostname": reservation["hostname"],
                     "classes": reservation.get("client-classes", []),
                     "options": options_by_name[reservation["hostname"]]})
    return rows


# Kea's configuration includes a file with <?include "path"?>, which JSON cannot say: the
# renderer leaves this marker as a string, kea_json_text() turns it into the directive.
KEA_INCLUDE_MARK = "centra.pxe include "
_KEA_INCLUDE_MARKED = re.compile(r'"%s([^"\\]+)"' % re.escape(KEA_INCLUDE_MARK))


def kea_hosts_database(plan: Mapping[str, Any], name: str) -> Dict[str, Any]:
    """Kea's hosts-database: this server's PostgreSQL over the local socket, or, when this server
    reads another server's (the plan's host_databases), that server's over TCP with the password
    of the included file."""
    share = host_database_share(plan, name)
    database = dict(KEA_HOST_DATABASE, **KEA_HOST_DATABASE_RECONNECT)
    if share.get("role") == "reader":
        database.update(host=share["address"], port=POSTGRESQL_PORT,
                        password=KEA_INCLUDE_MARK + KEA_HOST_DATABASE_PASSWORD_FILE)
    return database


def kea_json_text(config: Mapping[str, Any]) -> str:
    """The configuration as the role writes it: Ansible's to_nice_json (indent 2, sorted keys),
    each include marker turned into Kea's <?include "path"?>."""
    text = json.dumps(config, indent=2, sort_keys=True, separators=(",", ": "))
    return _KEA_INCLUDE_MARKED.sub(lambda match: '<?include "%s"?>' % match.group(1), text)


def kea_dhcp4_config(plan: Mapping[str, Any], server: Mapping[str, Any], settings: Mapping[str, Any]) -> Dict[str, Any]:
    """The whole kea-dhcp4 configuration ({"Dhcp4": ...}) for one PXE server."""
    opts = resolved_settings(settings, KEA_SETTINGS, "Kea", "pxe_dhcp")
    boot = boot_server(server)
    loaders = other_loaders(plan, boot)
    client_classes = kea_client_classes(boot, log_only_classes=opts["log_severity"] == "DEBUG", loaders=loaders)
    required = [c["name"] for c in client_classes if c.get("only-if-required")]
    by_subnet: Dict[int, List[Dict[str, Any]]] = {s["id"]: [] for s in plan["subnets"]}
    global_reservations: List[Dict[str, Any]] = []
    for subnet_id, reservation in kea_reservations(plan, boot, loaders):
        if subnet_id is None:
            global_reservations.append(reservation)
        else:
            by_subnet[subnet_id].append(reservation)
    shared_ip = any(node["ip"] and len(node["macs"]) > 1 for node in plan["nodes"])
    host_database = bool(opts["host_database"])
    relationship = ha_relationship(plan, server)
    subnets = []
    for subnet in plan["subnets"]:
        entry: Dict[str, Any] = {"id": subnet["id"], "subnet": subnet["cidr"]}
        if subnet.get("pool"):
            entry["pools"] = kea_pools(subnet["pool"], relationship)
        options = _kea_subnet_options(subnet)
        if options:
            entry["option-data"] = options
        if by_subnet[subnet["id"]] and not host_database:
            entry["reservations"] = by_subnet[subnet["id"]]
        if required:
            entry["require-client-classes"] = required
        subnets.append(entry)
    dhcp4: Dict[str, Any] = {
        "interfaces-config": {
            "interfaces": list(opts["interfaces"]),
            "service-sockets-max-retries": int(opts["socket_retries"]),
            "service-sockets-retry-wait-time": int(opts["socket_retry_wait_ms"]),
        },
        "control-socket": {"socket-type": "unix", "socket-name": opts["control_socket"]},
        "lease-database": {"type": "memfile", "persist": True, "name": opts["lease_file"], "lfc-interval": 3600},
        "valid-lifetime": int(opts["valid_lifetime"]),
        "authoritative": bool(opts["authoritative"]),
        "host-reservation-identifiers": ["hw-address"],
        "client-classes": client_classes,
        "subnet4": subnets,
        "loggers": [{"name": "kea-dhcp4", "severity": opts["log_severity"],
                     "output_options": [{"output": "stdout"}]},
                    # Kea 2.2 logs EVAL_RESULT through kea-dhcp4.options at INFO, one
                    # line per matching class and packet, and the evaluation steps through
                    # kea-dhcp4.eval: the classes' verdicts only at DEBUG (benchmarks/dhcp_perf.py).
                    *({"name": name, "severity": "DEBUG" if opts["log_severity"] == "DEBUG" else "WARN",
                       "output_options": [{"output": "stdout"}]} for name in ("kea-dhcp4.eval", "kea-dhcp4.options"))],
        # With the host database the reservations live in PostgreSQL and the plan digest
        # in the file centra.pxe.kea_host_database writes: an onboarding changes a row,
        # not this file, and Kea is not reloaded (docs/scale.md).
        "user-context": {"centra.pxe": {"hosts-database": True} if host_database else {"plan": plan["digest"]}},
    }
    if host_database:
        dhcp4["hosts-database"] = kea_hosts_database(plan, str(server.get("name")))
    option_defs = kea_option_defs(plan)
    if option_defs:
        dhcp4["option-def"] = option_defs
    if global_reservations:
        if not host_database:
            dhcp4["reservations"] = global_reservations
        dhcp4["reservations-global"] = True
        dhcp4["reservations-in-subnet"] = True
    if shared_ip:
        # One fixed address for every NIC of a multi-NIC node: only one NIC boots at a time.
        dhcp4["ip-reservations-unique"] = False
    if relationship:
        # The HA hook's dedicated listener needs Kea's multi-threading (off by default in 2.2).
        dhcp4["multi-threading"] = {"enable-multi-threading": True}
        dhcp4["hooks-libraries"] = kea_ha_hooks(relationship, str(server["name"]), str(opts["hooks_dir"]),
                                                str(opts["ha_tls_dir"]))
    if opts["trace"]:
        dhcp4["loggers"].extend(kea_trace_loggers(str(opts["log_severity"])))
    return {"Dhcp4": dhcp4}


def _isc_string(value: str) -> str:
    if any(c in value for c in '"\\\n\r'):
        raise ValueError("refusing to put %r in dhcpd.conf" % value)
    return '"%s"' % value


def _isc_arch_test(rule: BootRule) -> str:
    terms = []
    for code in rule.arch_codes:
        if code is None:
            terms.append("not exists arch")
        else:
            terms.append("substring(option arch, 0, 2) = %02x:%02x" % (code >> 8, code & 0xFF))
    return "(%s)" % " or ".join("(%s)" % term for term in terms)


def dhcpd_trace() -> List[str]:
    """What the boot trace (docs/status.md) adds to dhcpd.conf: a log line for every
    answer (dhcpd runs the global statements as it answers a DISCOVER or a REQUEST, and
    knows the lease then) and for every release, read from the journal by the journal
    feeder. Logging, not execute(): dhcpd waits for a program it executes, and would
    answer no one meanwhile. Fields are name=value, option 60 last (its text is the
    client's); pick-first-value, because one absent option makes a concat() null.
    """
    mac = 'binary-to-ascii(16, 8, ":", substring(hardware, 1, 6))'
    ip = 'pick-first-value(binary-to-ascii(10, 8, ".", leased-address), "")'
    return [
        'log(info, concat("%s ", binary-to-ascii(10, 8, "", option dhcp-message-type), " ", %s,'
        ' " ip=", %s, " arch=", pick-first-value(binary-to-ascii(10, 16, "", option arch), ""),'
        ' " relay=", pick-first-value(binary-to-ascii(10, 8, ".", packet(24, 4)), ""),'
        ' " vendor=", pick-first-value(option vendor-class-identifier, "")));' % (DHCPD_TRACE_TAG, mac, ip),
        'on release { log(info, concat("%s release ", %s, " ip=", %s)); }' % (DHCPD_TRACE_TAG, mac, ip),
    ]


def _isc_failover_peer(relationship: Mapping[str, Any], this_server: str) -> List[str]:
    me = next(p for p in relationship["peers"] if p["name"] == this_server)
    partner = next(p for p in relationship["peers"] if p["name"] != this_server)
    lines = [
        "failover peer %s {" % _isc_string(ISC_FAILOVER_PEER),
        "  %s;" % me["role"],
        "  address %s;" % me["address"],
        "  port %d;" % relationship["port"],
        "  peer address %s;" % partner["address"],
        "  peer port %d;" % relationship["port"],
        "  max-response-delay %d;" % relationship["max_response_delay"],
        "  max-unacked-updates %d;" % relationship["max_unacked_updates"],
        "  load balance max seconds %d;" % relationship["load_balance_max_seconds"],
    ]
    if relationship["auto_partner_down"]:
        # dhcpd never declares its peer down by itself unless told to, after this delay.
        lines.append("  auto-partner-down %d;" % relationship["auto_partner_down"])
    if me["role"] == "primary":
        # Only the primary states them; split 256 (hot-standby) gives it every client.
        lines.append("  mclt %d;" % relationship["mclt"])
        lines.append("  split %d;" % relationship["split"])
    lines.append("}")
    return lines


def dhcpd_config(plan: Mapping[str, Any], server: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    """dhcpd.conf text for one PXE server (ISC DHCP, for sites that still run it)."""
    opts = resolved_settings(settings, ISC_SETTINGS, "ISC dhcpd", "pxe_dhcp")
    boot = boot_server(server)
    lines = [
        "# Managed by centra.pxe: changes here are overwritten. Plan %s." % plan["digest"],
        "option arch code 93 = unsigned integer 16;",
        "option space ipxe;",
        "option ipxe-encap-opts code %d = encapsulate ipxe;" % IPXE_ENCAP_OPTION,
        "ddns-update-style none;",
        "default-lease-time %d;" % int(opts["valid_lifetime"]),
        "max-lease-time %d;" % int(opts["valid_lifetime"]),
    ]
    lines.extend(isc_declarations(plan))
    if opts["authoritative"]:
        lines.append("authoritative;")
    if opts["trace"]:
        lines.extend(dhcpd_trace())
    lines.append("")
    # Boot policy: one if/elsif chain, so exactly one answer applies.
    ipxe_file = decide(boot, user_class=b"iPXE").filename
    lines.append('if ((exists user-class and option user-class = "iPXE") or exists ipxe-encap-opts) {')
    lines.append("  filename %s;" % _isc_string(str(ipxe_file)))
    for rule in BOOT_RULES:
        lines.append("} elsif %s {" % _isc_arch_test(rule))
        lines.extend("  " + line for line in _isc_answer(decide(boot, arch=rule.arch_codes[-1])))
    lines.append("} else {")
    lines.append('  log(info, concat("centra.pxe: unknown client architecture ", '
                 'binary-to-ascii(16, 8, ":", option arch), ": no boot file"));')
    lines.append("}")
    lines.append("")
    relationship = ha_relationship(plan, server)
    if relationship:
        lines.extend(_isc_failover_peer(relationship, str(server["name"])))
        lines.append("")
    for subnet in plan["subnets"]:
        lines.append("subnet %s netmask %s {" % (subnet["network"], subnet["netmask"]))
        if subnet.get("pool") and relationship:
            # Failover covers the dynamic pools only; fixed addresses (the nodes) are
            # answered by both servers alike.
            lines.append('  pool { failover peer %s; range %s %s; }'
                         % (_isc_string(ISC_FAILOVER_PEER), subnet["pool"]["start"], subnet["pool"]["end"]))
        elif subnet.get("pool"):
            lines.append("  range %s %s;" % (subnet["pool"]["start"], subnet["pool"]["end"]))
        if subnet.get("gateway"):
            lines.append("  option routers %s;" % subnet["gateway"])
        if subnet.get("dns"):
            lines.append("  option domain-name-servers %s;" % ", ".join(subnet["dns"]))
        lines.extend("  " + statement for statement in isc_option_statements(subnet.get("options", [])))
        lines.append("}")
    lines.append("")
    loaders = other_loaders(plan, boot)
    hosts: Dict[str, List[str]] = {boot.default_loader: []}
    hosts.update((loader, []) for loader in loaders)
    for node in plan["nodes"]:
        node_options = isc_option_statements(node.get("options", []))
        chain = node_loader(node, boot)
        for index, mac in enumerate(node["macs"]):
            parts = ["host %s-%d {" % (node["name"], index), "hardware ethernet %s;" % mac]
            if node["ip"]:
                parts.append("fixed-address %s;" % node["ip"])
            parts.extend(node_options)
            parts.append("option host-name %s; }" % _isc_string(node["name"]))
            hosts[chain if chain in loaders else boot.default_loader].append(" ".join(parts))
    lines.extend(hosts[boot.default_loader])
    for loader in loaders:
        # The nodes of another loader than the server's default: a group whose statements
        # dhcpd runs after the global ones (a host's group is the inner scope), so its
        # answers replace the global chain's for the rows that depend on the loader.
        lines.append("")
        lines.append("group {")
        for index, rule in enumerate(loader_dependent_rules(boot)):
            lines.append("  %s not ((exists user-class and option user-class = \"iPXE\") or exists ipxe-encap-opts)"
                         " and %s {" % ("if" if index == 0 else "} elsif", _isc_arch_test(rule)))
            answer = decide(boot, arch=rule.arch_codes[-1], loader=loader)
            if not answer.next_server and decide(boot, arch=rule.arch_codes[-1]).next_server:
                # The global chain set one for the default loader: siaddr zero is "none".
                lines.append("    next-server 0.0.0.0;")
            lines.extend("    " + line for line in _isc_answer(answer))
        lines.append("  }")
        lines.extend("  " + host for host in hosts[loader])
        lines.append("}")
    return "\n".join(lines) + "\n"


def _isc_answer(answer: Any) -> List[str]:
    """The dhcpd statements of one answer."""
    lines = []
    if answer.kind in ("tftp", "http") and answer.next_server:
        lines.append("next-server %s;" % answer.next_server)
    if answer.kind == "http":
        lines.append("option vendor-class-identifier %s;" % _isc_string(HTTP_CLIENT_VENDOR_CLASS))
    if answer.kind in ("tftp", "http"):
        lines.append("filename %s;" % _isc_string(str(answer.filename)))
    else:
        lines.append('log(info, "centra.pxe: %s: no boot file");' % answer.reason.replace('"', "'"))
    return lines
