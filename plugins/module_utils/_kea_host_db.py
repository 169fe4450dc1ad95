# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE to the centra.pxe collection. Not an API: it may change in any release.
"""Kea's host database (PostgreSQL): where it is, and how its rows are kept equal to the plan.

The reservations of a large site live in Kea's own schema (kea-admin's dhcpdb_create.pgsql)
instead of the configuration file, so an onboarding writes rows and Kea is not reloaded.
Kea reads the database on every packet (Kea 2.2 has no host cache without a premium hook).

Every row centra.pxe writes carries a digest of its content in its user_context; a row
whose digest differs from the plan's is deleted and written again (with its options), so
the comparison needs no join over the option table. Rows of other identifier types are
left alone; hw-address rows are centra.pxe's.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from typing import Any, Dict, Iterable, List, Mapping, Tuple

# kea-dhcp4 connects over the local socket as its own user (_kea, peer authentication):
# there is no password to keep.
KEA_HOST_DATABASE = {"type": "postgresql", "name": "kea", "user": "_kea", "host": "/run/postgresql"}
# Kea 2.2's default is not to reconnect: the first packet after PostgreSQL restarted (a
# package upgrade, a new listen address) found the connection closed, was dropped, and Kea
# shut down, and a Kea HA server came back WAITING (measured in the lab, scenario ha). With
# these Kea stops serving while it reconnects, once a second, and exits (systemd restarts
# it) only when PostgreSQL stays away for a minute.
KEA_HOST_DATABASE_RECONNECT = {"max-reconnect-tries": 60, "reconnect-wait-time": 1000, "on-fail": "stop-retry-exit"}
# A Kea server that reads another server's database (pxe_dhcp_kea_host_database_server)
# connects over TCP with a password: the database's server makes it, the role copies it to
# this file on each server that reads it, and Kea's configuration includes the file (a JSON
# string), so that the configuration itself, and its diffs, hold no secret.
POSTGRESQL_PORT = 5432
KEA_HOST_DATABASE_PASSWORD_FILE = "/etc/kea/centra-pxe-host-database.password"
# Kea's subnet id of a global reservation.
GLOBAL_SUBNET_ID = 0
# dhcp_identifier_type of a hw-address; dhcp_option_scope of a host's options.
HW_ADDRESS = 0
HOST_SCOPE = 3
CONTEXT_KEY = "centra.pxe"

# The rows travel from the controller's filter (centra.pxe.kea_host_rows) to the module as
# text, one JSON object per line after this header: Ansible takes 35 s to template and
# check a list of 100,000 dicts as a module argument, and 4 s for the same as one string
# (measured, docs/scale.md). The header keeps the text from ever reading as one literal.
ROWS_HEADER = "# centra.pxe kea host rows 1"

Key = Tuple[str, int]


def rows_text(rows: Iterable[Mapping[str, Any]]) -> str:
    """The rows as the module takes them: the header, then one compact JSON object per line."""
    return ROWS_HEADER + "\n" + "".join(json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n" for row in rows)


def parse_rows_text(text: str) -> List[Dict[str, Any]]:
    """rows_text() read back; ValueError naming the line on anything else."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != ROWS_HEADER:
        raise ValueError("the rows do not start with %r (give the output of the filter centra.pxe.kea_host_rows)"
                         % ROWS_HEADER)
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError("line %d of the rows: %s" % (number, exc)) from None
        if not isinstance(row, dict):
            raise ValueError("line %d of the rows is not an object" % number)
        rows.append(row)
    return rows


def row_digest(row: Mapping[str, Any]) -> str:
    """sha256 of the row's content (identifier, subnet, address, hostname, classes, options)."""
    canonical = json.dumps({k: row.get(k) for k in ("identifier", "subnet_id", "ipv4", "hostname", "classes", "options")},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def copy_field(value: Any) -> str:
    """One field of PostgreSQL's COPY text format (None is NULL)."""
    if value is None:
        return "\\N"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_line(values: Iterable[Any]) -> str:
    return "\t".join(copy_field(v) for v in values) + "\n"


def copy_unescape(field: str) -> Any:
    """The value of one field of COPY's text output (None for NULL)."""
    if field == "\\N":
        return None
    out, chars = [], iter(field)
    for char in chars:
        if char == "\\":
            char = {"t": "\t", "n": "\n", "r": "\r"}.get(next(chars, ""), "\\")
        out.append(char)
    return "".join(out)


Current = Dict[Key, List[Tuple[int, str, str]]]


def parse_current(copy_text: str) -> Current:
    """(identifier hex, subnet id) -> [(host_id, digest, hostname)] from COPY of CURRENT_QUERY."""
    current: Current = {}
    for line in copy_text.splitlines():
        if not line:
            continue
        host_id, identifier, subnet_id, hostname, context = (copy_unescape(f) for f in line.split("\t"))
        digest = ""
        try:
            digest = str(json.loads(context or "{}").get(CONTEXT_KEY, ""))
        except (ValueError, AttributeError):
            pass  # a row written by someone else: not ours, so replaced
        current.setdefault((identifier, int(subnet_id)), []).append((int(host_id), digest, hostname or ""))
    return current


Wanted = Dict[Key, Dict[str, Any]]


def wanted_rows(rows: List[Mapping[str, Any]]) -> Wanted:
    """The rows by (identifier, subnet id), each with its digest; ValueError on two rows for one key."""
    wanted: Wanted = {}
    for row in rows:
        key = (str(row["identifier"]), int(row["subnet_id"]))
        if key in wanted:
            raise ValueError("two host rows for hw-address %s in subnet %d (%s, %s)"
                             % (key[0], key[1], wanted[key]["hostname"], row["hostname"]))
        wanted[key] = dict(row, digest=row_digest(row))
    return wanted


def plan_changes(current: Current,
                 wanted: Wanted) -> Tuple[List[int], List[Dict[str, Any]], List[str], List[str]]:
    """(host_ids to delete, rows to insert (with their digest), hostnames removed, hostnames added)."""
    delete: List[int] = []
    keep = set()
    for key, entries in current.items():
        want = wanted.get(key)
        for index, (host_id, digest, _hostname) in enumerate(entries):
            if want is not None and digest == want["digest"] and index == 0:
                keep.add(key)
            else:
                delete.append(host_id)
    insert = [row for key, row in wanted.items() if key not in keep]
    removed = sorted({entry[2] or "%s/%d" % key for key, entries in current.items() if key not in keep
                      for entry in entries})
    added = sorted(row["hostname"] for row in insert)
    return sorted(delete), insert, removed, added


def ipv4_int(address: Any) -> Any:
    return None if address in (None, "") else int(ipaddress.IPv4Address(address))


def sync_script(delete: List[int], insert: List[Mapping[str, Any]]) -> str:
    """One psql transaction (psql runs it with ON_ERROR_STOP): delete the stale rows (their
    options go by cascade), insert the new."""
    parts = ["BEGIN;\n",
             "CREATE TEMP TABLE centra_delete (host_id bigint) ON COMMIT DROP;\n",
             "CREATE TEMP TABLE centra_hosts (identifier text, subnet_id bigint, ipv4 bigint, hostname text,"
             " classes text, context text) ON COMMIT DROP;\n",
             "CREATE TEMP TABLE centra_options (identifier text, subnet_id bigint, code smallint, value text,"
             " space text) ON COMMIT DROP;\n"]
    parts.append("COPY centra_delete FROM STDIN;\n")
    parts.extend(copy_line([host_id]) for host_id in delete)
    parts.append("\\.\n")
    parts.append("COPY centra_hosts FROM STDIN;\n")
    for row in insert:
        context = json.dumps({CONTEXT_KEY: row["digest"]})
        parts.append(copy_line([row["identifier"], row["subnet_id"], ipv4_int(row.get("ipv4")), row["hostname"],
                                ",".join(row.get("classes") or []) or None, context]))
    parts.append("\\.\n")
    parts.append("COPY centra_options FROM STDIN;\n")
    for row in insert:
        for option in row.get("options") or []:
            parts.append(copy_line([row["identifier"], row["subnet_id"], option["code"], option["value"],
                                    option.get("space", "dhcp4")]))
    parts.append("\\.\n")
    parts.append("DELETE FROM hosts WHERE host_id IN (SELECT host_id FROM centra_delete);\n")
    parts.append("INSERT INTO hosts (dhcp_identifier, dhcp_identifier_type, dhcp4_subnet_id, ipv4_address, hostname,"
                 " dhcp4_client_classes, user_context)"
                 " SELECT decode(identifier, 'hex'), %d, subnet_id, ipv4, hostname, classes, context"
                 " FROM centra_hosts;\n" % HW_ADDRESS)
    parts.append("INSERT INTO dhcp4_options (code, value, space, persistent, host_id, scope_id)"
                 " SELECT o.code, decode(o.value, 'hex'), o.space, false, h.host_id, %d FROM centra_options o"
                 " JOIN hosts h ON h.dhcp_identifier = decode(o.identifier, 'hex')"
                 " AND h.dhcp_identifier_type = %d AND h.dhcp4_subnet_id = o.subnet_id;\n" % (HOST_SCOPE, HW_ADDRESS))
    parts.append("COMMIT;\n")
    return "".join(parts)


CURRENT_QUERY = ("COPY (SELECT host_id, encode(dhcp_identifier, 'hex'), dhcp4_subnet_id, hostname, user_context FROM hosts"
                 " WHERE dhcp_identifier_type = %d AND dhcp4_subnet_id IS NOT NULL) TO STDOUT" % HW_ADDRESS)
