# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""centra-pxe-lifecycle: the node lifecycle service of a centra.pxe PXE server.

A node in pxe_boot install mode installs once, then boots from its disk. This
service keeps each node's state (install, installing, installed, failed; local,
netboot, menu follow pxe_boot), takes the installer's authenticated callbacks and
writes, per MAC, the iPXE script nginx serves: the install script with the node's
token while the node must install, the local-boot script once it has installed.
nginx serves static files only, so boot decisions never wait on this process.

Subcommands (see --help): serve, sync, rearm, forget, show; check-config, check-plan,
init-secret, install-secret (for the converge).
Standard library only: it runs with the host's /usr/bin/python3.

Tokens are HMAC-SHA256("<node>:<generation>") under the server secret, never
stored and never logged. A rearm bumps the generation, which retires the token.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import contextlib
import fcntl
import hashlib
import hmac
import html
import http.client
import http.server
import json
import logging
import math
import collections
import os
import queue
import re
import signal
import socket
import socketserver
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

# The collection's one MAC parser (plugins/module_utils/_mac.py), which the role installs
# beside this program as centra_pxe_mac.py; run from the source tree (unit tests,
# benchmarks) it is read from there.
try:
    import centra_pxe_mac as macs  # pylint: disable=import-error
except ImportError:  # pragma: no cover - depends on where the program runs from
    sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "plugins", "module_utils"))
    import _mac as macs  # pylint: disable=import-error

LOG = logging.getLogger("centra-pxe-lifecycle")

DEFAULT_STATE_DIR = "/var/lib/centra-pxe-lifecycle"
DEFAULT_PLAN = "/etc/centra-pxe/plan.json"
DEFAULT_SCRIPTS_DIR = "/srv/centra-pxe/lifecycle"
DEFAULT_CONFIG = "/etc/centra-pxe/lifecycle.json"

SCHEMA_VERSION = 2
BOOT_MODES = ("install", "netboot", "local", "menu")
INSTALL_STATES = ("install", "installing", "installed", "failed")
STATES = INSTALL_STATES + ("local", "netboot", "menu")
# event -> (states it may come from, state it leads to)
TRANSITIONS: Dict[str, Tuple[Tuple[str, ...], str]] = {
    "started": (("install", "installing", "failed"), "installing"),
    "installed": (("install", "installing", "failed"), "installed"),
    "failed": (("install", "installing"), "failed"),
}
# The peer merge orders the records of one node by (generation, PROGRESS, time, STATE_RANK).
# Within a generation, install is only ever the start (a rearm or a new node makes a
# new generation) and installed is final (every later event is refused), so progress
# outranks the clocks of the two servers; time only orders installing and failed.
PROGRESS = {"install": 0, "installing": 1, "failed": 1, "installed": 2}
STATE_RANK = {"install": 0, "installing": 1, "failed": 2, "installed": 3}

TOKEN_PLACEHOLDER = b"@CENTRA_TOKEN@"
CALLBACK_PLACEHOLDER = b"@CENTRA_CALLBACK@"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 bytes, url-safe base64, no padding
NODE_NAME_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")
PROFILE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CANONICAL_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
BOOT_FILE_RE = re.compile(r"^[0-9a-f]{2}(-[0-9a-f]{2}){5}\.ipxe$")
# The lifecycle variants of the grub loader chain end in this (install/<mac>.cfg, local/<mac>.cfg).
GRUB_SUFFIX = ".cfg"
MAX_BODY = 4096
MAX_MESSAGE = 1024
MAX_SCRIPT = 1 << 20
MAX_PEER_BODY = 64 << 20
DRAIN_LIMIT = 64 << 10
PEER_CLOCK_WINDOW = 300.0
GROUP_COMMIT_MAX = 64  # callbacks per transaction at most (the batch holds the lock)
DURABLE_CHUNK = 64     # boot files written, then fsynced, together (open descriptors)
REFUSED_LINGER_SECONDS = 1.0  # a 503-answered connection is drained this long at most
REFUSED_LINGER_MAX = 512      # and so many at once (descriptors); beyond, closed at once
LISTEN_BACKLOG = 1024         # connections the kernel holds until accepted (capped by somaxconn)
PEER_SIGNING_LABEL = b"centra-pxe-lifecycle peer signing key v1"

DEFAULT_CONFIG_VALUES: Dict[str, Any] = {
    "callback_base": None,       # e.g. "http://192.0.2.2": the URL the installers call
    "peers": [],                 # HTTP base URLs of the other servers of an HA pair
    "peer_interval": 60,         # seconds between pulls of each peer's state
    "peer_timeout": 5,           # seconds per peer request
    "stall_seconds": 7200,       # "installing" without news for this long is reported stalled
    "workers": 8,                # HTTP worker threads
    "queue": 128,                # accepted connections waiting for a worker
    "socket_timeout": 10,        # seconds a client may stay silent
    "max_header_bytes": 16384,   # request line + headers
    "events_per_node": 50,       # events kept per node
    "event_max_age_days": 90,    # events older than this are pruned
    # The boot trace (docs/status.md): the datagram socket the feeders send to, its
    # bounds, and Kea's control socket for /metrics.
    "trace_socket": None,        # e.g. "/run/centra-pxe-lifecycle/trace.sock"; None: no trace
    "trace_group": None,         # group given the trace socket (mode 0660)
    "trace_queue": 10000,        # parsed datagrams waiting for the writer; more are dropped
    "trace_events_per_node": 200,  # trace events kept per node
    "trace_max_events": 100000,  # trace events kept in all
    "trace_max_age_days": 30,    # trace events older than this are pruned
    "discovered_max": 10000,     # unknown machines kept (the least recently seen go first)
    "kea_control_socket": None,  # Kea's control socket (statistic-get-all), None: no Kea metrics
    "status_refresh": 30,        # seconds between two reloads of /status
}


class LifecycleError(Exception):
    """A problem a person must fix (bad plan, bad config, unknown node)."""


# -- small helpers ------------------------------------------------------------------

def now() -> float:
    return time.time()


def iso(ts: Optional[float]) -> Optional[str]:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".%03dZ" % int((ts % 1) * 1000)


def mac_hyphen(canonical: str) -> str:
    return macs.format_mac(canonical, "hyphen")


def canonical_mac(text: str) -> Optional[str]:
    """The canonical form (aa:bb:cc:dd:ee:ff) of a MAC in any notation the collection reads, or None."""
    return macs.mac_or_none(text)


def _valid_ip(text: Any) -> bool:
    """An IPv4 or IPv6 address in its usual text form (inet_pton: the trace checks one per event)."""
    if not isinstance(text, str) or not 2 <= len(text) <= 45:
        return False
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
            return True
        except (OSError, ValueError):
            continue
    return False


def make_token(secret: bytes, name: str, generation: int) -> str:
    digest = hmac.new(secret, ("%s:%d" % (name, generation)).encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def token_matches(secret: bytes, name: str, generation: int, presented: str) -> bool:
    return hmac.compare_digest(make_token(secret, name, generation).encode("ascii"), presented.encode("ascii"))


def peer_key(secret: bytes) -> bytes:
    # A key of its own, so that no token can ever pass for a peer signature.
    return hmac.new(secret, PEER_SIGNING_LABEL, hashlib.sha256).digest()


def peer_signature(secret: bytes, method: str, path: str, timestamp: str, body: bytes) -> str:
    signed = ("%s\n%s\n%s\n" % (method, path, timestamp)).encode("utf-8") + body
    return hmac.new(peer_key(secret), signed, hashlib.sha256).hexdigest()


def load_or_create_secret(state_dir: str) -> bytes:
    """The 32-byte server secret, created (mode 0600) if missing; an HA pair shares it."""
    path = os.path.join(state_dir, "secret")
    try:
        with open(path, "rb") as handle:
            secret = handle.read(4096)
    except FileNotFoundError:
        tmp = "%s.%d.tmp" % (path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, os.urandom(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic and refuses to replace: two starters agree on one secret
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        with open(path, "rb") as handle:
            secret = handle.read(4096)
    if len(secret) < 32:
        raise LifecycleError("%s holds %d bytes; the secret must be at least 32 random bytes" % (path, len(secret)))
    return secret


def install_secret(state_dir: str, secret: bytes) -> bool:
    """Write the server secret (an HA peer's copy), mode 0600, atomically; True when it changed."""
    if len(secret) < 32:
        raise LifecycleError("a secret must be at least 32 bytes, got %d" % len(secret))
    path = os.path.join(state_dir, "secret")
    try:
        with open(path, "rb") as handle:
            if hmac.compare_digest(handle.read(4096), secret):
                return False
    except FileNotFoundError:
        pass
    tmp = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, secret)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    return True


def load_config(path: Optional[str]) -> Dict[str, Any]:
    config = dict(DEFAULT_CONFIG_VALUES)
    if not path or not os.path.exists(path):
        return config
    try:
        with open(path, "rb") as handle:
            raw = json.loads(handle.read())
    except (OSError, ValueError) as exc:
        raise LifecycleError("cannot read the config %s: %s" % (path, exc)) from None
    if not isinstance(raw, dict):
        raise LifecycleError("config %s: must be a JSON object" % path)
    problems = []
    for key, value in raw.items():
        problem = _config_problem(key, value)
        if problem:
            problems.append(problem)
        else:
            config[key] = value
    if problems:
        raise LifecycleError("config %s: %s" % (path, "; ".join(problems)))
    if config["callback_base"]:
        config["callback_base"] = config["callback_base"].rstrip("/")
    return config


def _config_problem(key: str, value: Any) -> Optional[str]:
    if key not in DEFAULT_CONFIG_VALUES:
        return "unknown key %r" % key
    if key == "callback_base":
        if value is None or (isinstance(value, str) and re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value)):
            return None
        return "callback_base must be an http(s) URL, got %r" % (value,)
    if key in ("trace_socket", "kea_control_socket"):
        if value is None or (isinstance(value, str) and re.fullmatch(r"/[A-Za-z0-9._/-]{1,100}", value)):
            return None
        return "%s must be an absolute path (at most 100 characters), got %r" % (key, value)
    if key == "trace_group":
        if value is None or (isinstance(value, str) and re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value)):
            return None
        return "trace_group must be a group name, got %r" % (value,)
    if key == "peers":
        if isinstance(value, list) and all(
                isinstance(p, str) and re.fullmatch(r"(https?://[^\s/?#]+|unix:/\S+)/?", p) for p in value):
            return None
        return "peers must be a list of http(s)://host[:port] URLs, got %r" % (value,)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return "%s must be a positive integer, got %r" % (key, value)
    return None


def load_plan(path: str) -> Tuple[str, List[Dict[str, Any]]]:
    """(digest, nodes) of the boot plan; raises LifecycleError on anything doubtful.

    A sync never applies part of a plan: a bad plan changes nothing.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        plan = json.loads(data)
    except (OSError, ValueError) as exc:
        raise LifecycleError("cannot read the plan %s: %s" % (path, exc)) from None
    if not isinstance(plan, dict) or not isinstance(plan.get("nodes"), list):
        raise LifecycleError("plan %s: not a boot plan (no nodes list)" % path)
    digest = plan.get("digest") if isinstance(plan.get("digest"), str) else hashlib.sha256(data).hexdigest()
    nodes: List[Dict[str, Any]] = []
    problems: List[str] = []
    seen_names: Dict[str, bool] = {}
    seen_macs: Dict[str, str] = {}
    for index, node in enumerate(plan["nodes"]):
        if not isinstance(node, dict):
            problems.append("nodes[%d] is not an object" % index)
            continue
        name, profile, boot, macs = node.get("name"), node.get("profile"), node.get("boot", "install"), node.get("macs")
        if not isinstance(name, str) or len(name) > 253 or not NODE_NAME_RE.match(name):
            problems.append("nodes[%d]: bad name %r" % (index, name))
            continue
        if name in seen_names:
            problems.append("node %s: listed twice" % name)
        seen_names[name] = True
        if not isinstance(profile, str) or not PROFILE_RE.match(profile):
            problems.append("node %s: bad profile %r" % (name, profile))
        if boot not in BOOT_MODES:
            problems.append("node %s: bad boot %r" % (name, boot))
        if not isinstance(macs, list) or not macs or not all(isinstance(m, str) and CANONICAL_MAC_RE.match(m) for m in macs):
            problems.append("node %s: bad macs %r" % (name, macs))
            continue
        for mac in macs:
            if mac in seen_macs and seen_macs[mac] != name:
                problems.append("MAC %s: on %s and %s" % (mac, seen_macs[mac], name))
            seen_macs[mac] = name
        ip = node.get("ip")
        if ip is not None and not _valid_ip(ip):
            problems.append("node %s: bad ip %r" % (name, ip))
            ip = None
        nodes.append({"name": name, "profile": profile, "boot": boot, "macs": sorted(set(macs)), "ip": ip})
    if problems:
        raise LifecycleError("plan %s: %s" % (path, "; ".join(problems[:20])))
    return digest, nodes


# -- the store ----------------------------------------------------------------------

MIGRATIONS: List[Sequence[str]] = [
    # 1: the first schema
    (
        """CREATE TABLE nodes (
            name TEXT PRIMARY KEY,
            profile TEXT NOT NULL,
            boot TEXT NOT NULL,
            generation INTEGER NOT NULL,
            state TEXT NOT NULL,
            state_at REAL NOT NULL,          -- when the state last changed: the peer merge clock
            last_event TEXT,
            last_event_at REAL,
            install_started_at REAL,
            installed_at REAL,
            message TEXT,
            created_at REAL NOT NULL)""",
        "CREATE TABLE macs (mac TEXT PRIMARY KEY, node TEXT NOT NULL REFERENCES nodes(name) ON DELETE CASCADE)",
        "CREATE INDEX macs_node ON macs(node)",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            node TEXT NOT NULL REFERENCES nodes(name) ON DELETE CASCADE,
            generation INTEGER NOT NULL,
            event TEXT NOT NULL,
            at REAL NOT NULL,
            message TEXT,
            source TEXT NOT NULL)""",
        "CREATE INDEX events_node ON events(node, id)",
        "CREATE INDEX events_at ON events(at)",
        # The last generation of a removed node: a node that comes back continues from
        # there, so a token of its earlier life is never valid again.
        "CREATE TABLE retired (name TEXT PRIMARY KEY, generation INTEGER NOT NULL, at REAL NOT NULL)",
    ),
    # 2: the boot trace (docs/status.md): the node's fixed address, what the trace saw
    # last, the start of an install boot seen in the trace, the trace events of known
    # nodes, and the machines of no plan that asked for DHCP.
    (
        "ALTER TABLE nodes ADD COLUMN ip TEXT",
        "ALTER TABLE nodes ADD COLUMN install_booted_at REAL",
        "ALTER TABLE nodes ADD COLUMN last_seen_at REAL",
        "ALTER TABLE nodes ADD COLUMN last_seen_kind TEXT",
        "CREATE INDEX nodes_ip ON nodes(ip)",
        """CREATE TABLE trace (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            node TEXT NOT NULL REFERENCES nodes(name) ON DELETE CASCADE,
            at REAL NOT NULL,
            src TEXT NOT NULL,
            kind TEXT NOT NULL,
            mac TEXT,
            ip TEXT,
            detail TEXT NOT NULL)""",
        "CREATE INDEX trace_node ON trace(node, id)",
        "CREATE INDEX trace_at ON trace(at)",
        """CREATE TABLE discovered (
            mac TEXT PRIMARY KEY,
            arch INTEGER,
            vendor TEXT,
            ip TEXT,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            count INTEGER NOT NULL,
            last_type TEXT)""",
        "CREATE INDEX discovered_seen ON discovered(last_seen)",
    ),
]


class Conflict(Exception):
    """The event does not apply to the node's state (HTTP 409)."""


class _Ticket:
    """One installer callback waiting for (and then carrying the outcome of) a group commit."""

    __slots__ = ("name", "token", "event", "message", "done", "result", "record", "error")

    def __init__(self, name: str, token: str, event: str, message: Optional[str]):
        self.name, self.token, self.event, self.message = name, token, event, message
        self.done = False
        self.result: Optional[Dict[str, Any]] = None
        self.record: Optional[Dict[str, Any]] = None
        self.error: Optional[Exception] = None


class Store:
    """SQLite state in WAL mode. Every write is one transaction, taken under a
    process lock and a file lock, so that the serving process and a CLI run
    (rearm over SSH) never interleave a DB change and the boot files that follow it."""

    def __init__(self, state_dir: str, scripts_dir: str, config: Dict[str, Any]):
        self.state_dir = state_dir
        self.scripts_dir = scripts_dir
        self.config = config
        self.boot_dir = os.path.join(state_dir, "boot", "nodes")
        os.makedirs(self.boot_dir, mode=0o755, exist_ok=True)
        for directory in (state_dir, os.path.join(state_dir, "boot"), self.boot_dir):
            os.chmod(directory, 0o755)  # nginx (another user) reads boot/nodes
        self.secret = load_or_create_secret(state_dir)
        self.db_path = os.path.join(state_dir, "lifecycle.db")
        if not os.path.exists(self.db_path):
            # SQLite gives the -wal and -shm files the mode of the database file.
            os.close(os.open(self.db_path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        self._lock = threading.Lock()
        self._lockfd = os.open(os.path.join(state_dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        self._db = self._connect()
        self._readers = threading.local()
        self._warned: Dict[str, bool] = {}
        self._pending: List[_Ticket] = []  # callbacks waiting for the next group commit
        self._pending_lock = threading.Lock()
        self.on_change: Optional[Callable[[List[Dict[str, Any]]], None]] = None
        with self._exclusive():
            self._migrate()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def close(self) -> None:
        with self._lock:
            self._db.close()
            os.close(self._lockfd)

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA query_only=ON")
            self._readers.conn = conn
        return conn

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._lock:
            fcntl.flock(self._lockfd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lockfd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            version = int(row["value"]) if row else 0
            if version > len(MIGRATIONS):
                raise LifecycleError("the state in %s has schema %d, newer than this program (%d)"
                                     % (self.db_path, version, len(MIGRATIONS)))
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number]:
                    db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (str(len(MIGRATIONS)),))

    # -- reading -------------------------------------------------------------------
    def meta(self, key: str) -> Optional[str]:
        row = self._reader().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None

    def node_row(self, name: str, conn: Optional[sqlite3.Connection] = None) -> Optional[sqlite3.Row]:
        return (conn or self._reader()).execute("SELECT * FROM nodes WHERE name = ?", (name,)).fetchone()

    def node_macs(self, name: str, conn: Optional[sqlite3.Connection] = None) -> List[str]:
        rows = (conn or self._reader()).execute("SELECT mac FROM macs WHERE node = ? ORDER BY mac", (name,))
        return [r["mac"] for r in rows]

    def find(self, key: str) -> Optional[str]:
        """The node name for a name or a MAC in any common notation, or None."""
        conn = self._reader()
        mac = canonical_mac(key)
        if mac is not None:
            row = conn.execute("SELECT node FROM macs WHERE mac = ?", (mac,)).fetchone()
            if row is not None:
                return row["node"]
        # Not a known MAC: a name (which may look like bare hex: "cafe00000001").
        if NODE_NAME_RE.match(key) and self.node_row(key, conn) is not None:
            return key
        return None

    def describe(self, row: sqlite3.Row, macs: List[str]) -> Dict[str, Any]:
        """The public view of a node: never a token."""
        duration = install_duration(row)
        stalled = is_stalled(row, self.config["stall_seconds"], now())
        last_event = None
        if row["last_event"] is not None:
            last_event = {"event": row["last_event"], "at": iso(row["last_event_at"]), "message": row["message"]}
        return {
            "name": row["name"], "profile": row["profile"], "boot": row["boot"], "state": row["state"],
            "generation": row["generation"], "macs": macs, "last_event": last_event,
            "last_event_at": iso(row["last_event_at"]), "state_at": iso(row["state_at"]),
            "install_started_at": iso(row["install_started_at"]), "installed_at": iso(row["installed_at"]),
            "install_duration_seconds": duration, "stalled": stalled,
            # Added with the boot trace (docs/status.md): the state to show (stalled or the
            # state), the fixed address, the start of the install boot seen in the trace,
            # and the last trace event.
            "display_state": "stalled" if stalled else row["state"], "ip": row["ip"],
            "install_booted_at": iso(row["install_booted_at"]),
            "last_seen_at": iso(row["last_seen_at"]), "last_seen": row["last_seen_kind"],
        }

    def show(self, key: Optional[str] = None) -> Any:
        conn = self._reader()
        conn.execute("BEGIN")  # one snapshot for nodes and macs
        try:
            if key is not None:
                name = self.find(key)
                if name is None:
                    return None
                row = self.node_row(name, conn)
                return self.describe(row, self.node_macs(name, conn)) if row else None
            macs: Dict[str, List[str]] = {}
            for r in conn.execute("SELECT mac, node FROM macs ORDER BY mac"):
                macs.setdefault(r["node"], []).append(r["mac"])
            return [self.describe(r, macs.get(r["name"], [])) for r in conn.execute("SELECT * FROM nodes ORDER BY name")]
        finally:
            conn.execute("COMMIT")

    def events(self, name: str) -> List[Dict[str, Any]]:
        rows = self._reader().execute("SELECT * FROM events WHERE node = ? ORDER BY id", (name,))
        return [{"generation": r["generation"], "event": r["event"], "at": iso(r["at"]),
                 "message": r["message"], "source": r["source"]} for r in rows]

    def peer_records(self) -> List[Dict[str, Any]]:
        rows = self._reader().execute("SELECT * FROM nodes WHERE boot = 'install' ORDER BY name")
        return [self._record(r) for r in rows]

    @staticmethod
    def _record(row: sqlite3.Row) -> Dict[str, Any]:
        return {key: row[key] for key in ("name", "generation", "state", "state_at", "last_event",
                                          "last_event_at", "message", "install_started_at", "installed_at")}

    # -- writing -------------------------------------------------------------------
    def _event(self, db: sqlite3.Connection, name: str, generation: int, event: str, at: float,
               message: Optional[str], source: str) -> None:
        db.execute("INSERT INTO events (node, generation, event, at, message, source) VALUES (?, ?, ?, ?, ?, ?)",
                   (name, generation, event, at, message, source))
        db.execute("DELETE FROM events WHERE node = ? AND id <= (SELECT id FROM events WHERE node = ? "
                   "ORDER BY id DESC LIMIT 1 OFFSET ?)", (name, name, self.config["events_per_node"]))

    def prune_events(self) -> int:
        cutoff = now() - self.config["event_max_age_days"] * 86400
        with self._exclusive(), self._transaction() as db:
            return db.execute("DELETE FROM events WHERE at < ?", (cutoff,)).rowcount

    def callback(self, name: str, token: str, event: str, message: Optional[str]) -> Dict[str, Any]:
        """Apply an installer event. Raises PermissionError (403) or Conflict (409).

        Group commit: callbacks that arrive while another batch holds the lock wait in
        `_pending`; whoever takes the lock next applies all of them in one transaction
        (one savepoint each, so a refused one changes nothing) with one commit, one WAL
        fsync, then writes their boot files. Each caller returns only once its own
        callback is committed and its boot files are durable, as before.
        """
        ticket = _Ticket(name, token, event, message)
        with self._pending_lock:
            self._pending.append(ticket)
        with self._exclusive():
            while not ticket.done:
                with self._pending_lock:
                    batch, self._pending = self._pending[:GROUP_COMMIT_MAX], self._pending[GROUP_COMMIT_MAX:]
                self._apply_callbacks(batch)
        if ticket.error is not None:
            raise ticket.error
        assert ticket.record is not None and ticket.result is not None
        if self.on_change is not None:
            self.on_change([ticket.record])
        return ticket.result

    def _apply_callbacks(self, batch: List["_Ticket"]) -> None:
        """One transaction and one commit for the batch, then its boot files; under the lock."""
        applied: List[_Ticket] = []
        try:
            with self._transaction() as db:
                for ticket in batch:
                    db.execute("SAVEPOINT callback")
                    try:
                        ticket.result, ticket.record = self._apply_callback(db, ticket)
                    except (PermissionError, Conflict) as exc:
                        db.execute("ROLLBACK TO callback")
                        ticket.error = exc
                    else:
                        applied.append(ticket)
                    db.execute("RELEASE callback")
            self._materialize(names=sorted({t.name for t in applied}))
        except Exception as exc:  # noqa: BLE001 - handed to each caller, raised there
            # Not committed, or committed without its boot files: every caller of the
            # batch gets the error (a 500), as a lone callback did before. Not raised
            # here: the thread that ran the batch may still have its own callback to do.
            for ticket in batch:
                if ticket.error is None:
                    ticket.error = exc
        finally:
            for ticket in batch:
                ticket.done = True

    def _apply_callback(self, db: sqlite3.Connection, ticket: "_Ticket") -> Tuple[Dict[str, Any], Dict[str, Any]]:
        name, event, message = ticket.name, ticket.event, ticket.message
        target_state = TRANSITIONS[event][1]
        row = self.node_row(name, db) if NODE_NAME_RE.match(name) else None
        if row is None:
            # Same work as for a known node: the answer time does not tell which it was.
            token_matches(self.secret, "-", 0, ticket.token)
            raise PermissionError("refused")
        if not token_matches(self.secret, name, row["generation"], ticket.token):
            raise PermissionError("refused")
        if row["boot"] != "install":
            raise Conflict("%s boots %s: it takes no installer events" % (name, row["boot"]))
        if row["state"] not in TRANSITIONS[event][0]:
            raise Conflict("%s is %s in generation %d: %s does not apply"
                           % (name, row["state"], row["generation"], event))
        at = now()
        started = at if event == "started" else row["install_started_at"]
        installed = at if event == "installed" else None
        db.execute("UPDATE nodes SET state = ?, state_at = ?, last_event = ?, last_event_at = ?, message = ?, "
                   "install_started_at = ?, installed_at = ? WHERE name = ?",
                   (target_state, at, event, at, message, started, installed, name))
        self._event(db, name, row["generation"], event, at, message, "callback")
        record = self._record(self.node_row(name, db))
        return {"ok": True, "node": name, "state": target_state, "generation": row["generation"]}, record

    def rearm(self, names: Sequence[str], dry_run: bool = False, generation: Optional[int] = None) -> Dict[str, Any]:
        """New generation, state install, install script served again.

        generation: the generation to re-arm to (the servers of an HA pair are given the
        same one, so that they agree whatever a peer pull brought first); a node already
        at it or beyond is left alone. Without it: the node's generation + 1.
        dry_run: check the nodes and report what a rearm would change, change nothing."""
        changed: Dict[str, Any] = {}
        records = []
        with self._exclusive():
            with self._transaction() as db:
                rows = {}
                for name in names:
                    row = self.node_row(name, db) if NODE_NAME_RE.match(name) else None
                    if row is None:
                        raise LifecycleError("unknown node %r (not in the plan of this server)" % name)
                    if row["boot"] != "install":
                        raise LifecycleError("node %s boots %s, not install: set pxe_boot: install to reinstall it"
                                             % (name, row["boot"]))
                    if generation is None or row["generation"] < generation:
                        rows[name] = row
                targets = {name: row["generation"] + 1 if generation is None else generation for name, row in rows.items()}
                if dry_run:
                    changed = {name: {"generation": [row["generation"], targets[name]],
                                      "state": [row["state"], "install"]} for name, row in rows.items()}
                    return {"changed": bool(changed), "nodes": changed, "dry_run": True}
                at = now()
                for name, row in rows.items():
                    target = targets[name]
                    db.execute("UPDATE nodes SET generation = ?, state = 'install', state_at = ?, last_event = NULL, "
                               "last_event_at = NULL, message = NULL, install_started_at = NULL, installed_at = NULL, "
                               "install_booted_at = NULL WHERE name = ?", (target, at, name))
                    self._event(db, name, target, "rearm", at, None, "admin")
                    changed[name] = {"generation": [row["generation"], target], "state": [row["state"], "install"]}
                    records.append(self._record(self.node_row(name, db)))
            self._materialize(names=list(rows))
        if self.on_change is not None and records:
            self.on_change(records)
        return {"changed": bool(changed), "nodes": changed}

    def forget(self, names: Sequence[str], plan_path: Optional[str]) -> Dict[str, Any]:
        """Drop the recorded state of nodes; a node still in the plan starts over (new generation)."""
        forgotten = []
        with self._exclusive():
            with self._transaction() as db:
                for name in names:
                    row = self.node_row(name, db) if NODE_NAME_RE.match(name) else None
                    if row is None:
                        continue
                    self._retire(db, row)
                    forgotten.append(name)
        result: Dict[str, Any] = {"changed": bool(forgotten), "forgotten": forgotten}
        if forgotten and plan_path:
            try:
                result["sync"] = self.sync(plan_path)
            except LifecycleError as exc:
                LOG.warning("forget: the plan could not be applied afterwards: %s", exc)
                with self._exclusive():
                    self._materialize()
        return result

    @staticmethod
    def _retire(db: sqlite3.Connection, row: sqlite3.Row) -> None:
        db.execute("INSERT OR REPLACE INTO retired (name, generation, at) VALUES (?, ?, ?)",
                   (row["name"], row["generation"], now()))
        db.execute("DELETE FROM nodes WHERE name = ?", (row["name"],))

    def sync(self, plan_path: str, loaded: Optional[Tuple[str, List[Dict[str, Any]]]] = None) -> Dict[str, Any]:
        """Reconcile the store with the plan, then make every boot file agree with the store.
        `loaded`: load_plan() of that file, when the caller has it already."""
        digest, nodes = loaded if loaded is not None else load_plan(plan_path)
        summary: Dict[str, List[str]] = {"added": [], "removed": [], "boot_changed": []}
        with self._exclusive():
            with self._transaction() as db:
                at = now()
                existing = {r["name"]: r for r in db.execute("SELECT * FROM nodes")}
                existing_macs = {r["mac"]: r["node"] for r in db.execute("SELECT mac, node FROM macs")}
                wanted = {n["name"] for n in nodes}
                for name, row in existing.items():
                    if name not in wanted:
                        self._retire(db, row)
                        summary["removed"].append(name)
                for node in nodes:
                    name, boot = node["name"], node["boot"]
                    row = existing.get(name)
                    if row is None:
                        retired = db.execute("SELECT generation FROM retired WHERE name = ?", (name,)).fetchone()
                        generation = retired["generation"] + 1 if retired else 1
                        db.execute("INSERT INTO nodes (name, profile, boot, generation, state, state_at, created_at) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?)", (name, node["profile"], boot, generation, boot, at, at))
                        db.execute("DELETE FROM retired WHERE name = ?", (name,))
                        summary["added"].append(name)
                    elif row["boot"] != boot:
                        # Into install mode from another mode: a new generation, so that no token
                        # of an earlier install cycle is valid again.
                        generation = row["generation"] + 1 if boot == "install" else row["generation"]
                        db.execute("UPDATE nodes SET profile = ?, boot = ?, generation = ?, state = ?, state_at = ?, "
                                   "install_started_at = NULL, installed_at = NULL, install_booted_at = NULL "
                                   "WHERE name = ?",
                                   (node["profile"], boot, generation, boot, at, name))
                        self._event(db, name, generation, "boot:" + boot, at, None, "plan")
                        summary["boot_changed"].append(name)
                    elif row["profile"] != node["profile"] or (boot != "install" and row["state"] != boot):
                        db.execute("UPDATE nodes SET profile = ?, state = ? WHERE name = ?",
                                   (node["profile"], row["state"] if boot == "install" else boot, name))
                    if row is None or row["ip"] != node.get("ip"):
                        db.execute("UPDATE nodes SET ip = ? WHERE name = ?", (node.get("ip"), name))
                # Only the MACs that changed hands (a rerun at 100,000 nodes rewrote them all).
                wanted_macs = {mac: node["name"] for node in nodes for mac in node["macs"]}
                db.executemany("DELETE FROM macs WHERE mac = ?",
                               [(mac,) for mac, name in existing_macs.items() if wanted_macs.get(mac) != name])
                db.executemany("INSERT INTO macs (mac, node) VALUES (?, ?)",
                               [(mac, name) for mac, name in wanted_macs.items() if existing_macs.get(mac) != name])
                # A MAC of the plan is no longer an unknown machine.
                db.execute("DELETE FROM discovered WHERE mac IN (SELECT mac FROM macs)")
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('plan_digest', ?)", (digest,))
                db.execute("DELETE FROM events WHERE at < ?", (at - self.config["event_max_age_days"] * 86400,))
            files = self._materialize()
        result: Dict[str, Any] = dict(summary)
        result.update(files)
        result["changed"] = any(summary.values()) or bool(files["files_written"] or files["files_removed"])
        result["plan_digest"] = digest
        return result

    def merge(self, records: Sequence[Any], source: str) -> List[str]:
        """Merge node records from a peer: the greater merge_key wins.

        A record is applied only to a node this server has in install mode; a higher
        generation is adopted too (a rearm this server missed while it was down).
        """
        applied: List[str] = []
        with self._exclusive():
            with self._transaction() as db:
                for record in records:
                    clean = _clean_record(record)
                    if clean is None:
                        continue
                    row = self.node_row(clean["name"], db)
                    if row is None or row["boot"] != "install":
                        continue
                    local = merge_key(row["generation"], row["state"], row["state_at"])
                    remote = merge_key(clean["generation"], clean["state"], clean["state_at"])
                    if remote <= local or (clean["generation"] == row["generation"]
                                           and clean["state"] == row["state"] == "install"):
                        continue  # not newer; or both at the start of one generation: nothing to learn
                    db.execute("UPDATE nodes SET generation = ?, state = ?, state_at = ?, last_event = ?, "
                               "last_event_at = ?, message = ?, install_started_at = ?, installed_at = ? WHERE name = ?",
                               (clean["generation"], clean["state"], clean["state_at"], clean["last_event"],
                                clean["last_event_at"], clean["message"], clean["install_started_at"],
                                clean["installed_at"], clean["name"]))
                    self._event(db, clean["name"], clean["generation"], clean["last_event"] or clean["state"],
                                clean["state_at"], clean["message"], source)
                    applied.append(clean["name"])
            if applied:
                self._materialize(names=applied)
        return applied

    # -- the boot trace (docs/status.md) ----------------------------------------------
    def ingest(self, events: Sequence["TraceEvent"], tracker: "TraceTracker") -> Dict[str, int]:
        """Record a batch of trace events in one transaction: each one attributed to a
        node (by MAC, or by IP through the tracker's map and the plan's fixed addresses)
        and classified; a DHCP event of a MAC in no plan updates `discovered`; an event
        of an address mapped to no MAC yet goes back to the tracker to wait (hold); then
        the bounds. The trace is not worth an fsync per batch (synchronous=NORMAL here: WAL
        still keeps every commit atomic, and the next FULL commit makes it durable)."""
        counts = {"stored": 0, "discovered": 0, "unattributed": 0, "held": 0}
        cap_node = self.config["trace_events_per_node"]
        with self._exclusive():
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._transaction() as db:
                    touched: Dict[str, Tuple[float, str]] = {}
                    node_of_mac: Dict[str, Optional[str]] = {}
                    rows: Dict[str, Optional[sqlite3.Row]] = {}
                    new_discovered = False

                    def node_for_mac(mac: str) -> Optional[str]:
                        if mac not in node_of_mac:
                            found = db.execute("SELECT node FROM macs WHERE mac = ?", (mac,)).fetchone()
                            node_of_mac[mac] = found["node"] if found else None
                        return node_of_mac[mac]

                    def node_row(name: str) -> Optional[sqlite3.Row]:
                        if name not in rows:
                            rows[name] = self.node_row(name, db)
                        return rows[name]

                    for event in events:
                        mac = event.mac
                        if mac is None and event.mac_in_uri is not None:
                            mac = event.mac_in_uri
                        if mac is None and event.ip is not None:
                            mac = tracker.mac_for_ip(event.ip)
                        name = node_for_mac(mac) if mac is not None else None
                        if name is None and mac is None and event.ip is not None:
                            found = db.execute("SELECT name FROM nodes WHERE ip = ?", (event.ip,)).fetchone()
                            name = found["name"] if found else None
                        if mac is not None and event.ip is not None and event.src != "dhcp":
                            tracker.learn(event.ip, mac)
                        row = node_row(name) if name is not None else None
                        if row is None:
                            if event.src == "dhcp" and mac is not None:
                                new_discovered |= self._discover(db, event, mac)
                                counts["discovered"] += 1
                                tracker.count_boot(event, mac, None)
                            elif mac is None and event.ip is not None and tracker.hold(event):
                                counts["held"] += 1  # its address may be mapped by an ack still on its way
                            else:
                                counts["unattributed"] += 1
                            continue
                        kind = classify(event, row)
                        db.execute("INSERT INTO trace (node, at, src, kind, mac, ip, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   (row["name"], event.at, event.src, kind, mac, event.ip,
                                    json.dumps(event.detail, sort_keys=True, separators=(",", ":"))))
                        counts["stored"] += 1
                        tracker.count_boot(event, mac, row["profile"])
                        if kind == "kernel" and row["boot"] == "install" and row["state"] in ("install", "failed"):
                            # The installer is booting: the stall clock starts (the latest boot counts).
                            db.execute("UPDATE nodes SET install_booted_at = ? WHERE name = ?", (event.at, row["name"]))
                            rows.pop(row["name"], None)
                        previous = touched.get(row["name"])
                        if previous is None or event.at >= previous[0]:
                            touched[row["name"]] = (event.at, kind)
                    for name, (at, kind) in touched.items():
                        db.execute("UPDATE nodes SET last_seen_at = ?, last_seen_kind = ? WHERE name = ? "
                                   "AND (last_seen_at IS NULL OR last_seen_at <= ?)", (at, kind, name, at))
                        db.execute("DELETE FROM trace WHERE node = ? AND id <= (SELECT id FROM trace WHERE node = ? "
                                   "ORDER BY id DESC LIMIT 1 OFFSET ?)", (name, name, cap_node))
                    if touched:
                        # Ids only grow: the newest trace_max_events ids are the most rows kept.
                        top = db.execute("SELECT max(id) AS top FROM trace").fetchone()["top"] or 0
                        db.execute("DELETE FROM trace WHERE id <= ?", (top - self.config["trace_max_events"],))
                    if new_discovered:
                        excess = db.execute("SELECT count(*) AS n FROM discovered").fetchone()["n"] - self.config["discovered_max"]
                        if excess > 0:
                            db.execute("DELETE FROM discovered WHERE mac IN (SELECT mac FROM discovered "
                                       "ORDER BY last_seen, mac LIMIT ?)", (excess,))
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
        return counts

    @staticmethod
    def _discover(db: sqlite3.Connection, event: "TraceEvent", mac: str) -> bool:
        """Record (or refresh) a machine in no plan; True when it is new."""
        detail = event.detail
        found = db.execute("SELECT mac FROM discovered WHERE mac = ?", (mac,)).fetchone()
        if found is None:
            db.execute("INSERT INTO discovered (mac, arch, vendor, ip, first_seen, last_seen, count, last_type) "
                       "VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                       (mac, detail.get("arch"), detail.get("vendor"), event.ip, event.at, event.at, detail.get("type")))
            return True
        db.execute("UPDATE discovered SET arch = coalesce(?, arch), vendor = coalesce(?, vendor), ip = coalesce(?, ip), "
                   "last_seen = max(last_seen, ?), first_seen = min(first_seen, ?), count = count + 1, last_type = ? "
                   "WHERE mac = ?", (detail.get("arch"), detail.get("vendor"), event.ip, event.at, event.at,
                                     detail.get("type"), mac))
        return False

    def prune_trace(self) -> int:
        cutoff = now() - self.config["trace_max_age_days"] * 86400
        with self._exclusive(), self._transaction() as db:
            removed = db.execute("DELETE FROM trace WHERE at < ?", (cutoff,)).rowcount
            removed += db.execute("DELETE FROM discovered WHERE last_seen < ?", (cutoff,)).rowcount
            return removed

    def timeline(self, name: str, limit: int) -> List[Dict[str, Any]]:
        """The node's trace and lifecycle events, oldest first, the newest `limit` of them."""
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            merged: List[Tuple[float, int, Dict[str, Any]]] = []
            for r in conn.execute("SELECT * FROM trace WHERE node = ? ORDER BY id DESC LIMIT ?", (name, limit)):
                entry = {"at": iso(r["at"]), "ts": round(r["at"], 3), "src": r["src"], "kind": r["kind"],
                         "mac": r["mac"], "ip": r["ip"]}
                try:
                    detail = json.loads(r["detail"])
                except ValueError:
                    detail = {}
                entry.update({k: v for k, v in detail.items() if k not in entry})
                merged.append((r["at"], 1, entry))
            for r in conn.execute("SELECT * FROM events WHERE node = ? ORDER BY id DESC LIMIT ?", (name, limit)):
                merged.append((r["at"], 2, {"at": iso(r["at"]), "ts": round(r["at"], 3), "src": "lifecycle",
                                            "kind": "installer" if r["source"] == "callback" else r["source"],
                                            "event": r["event"], "generation": r["generation"],
                                            "message": r["message"]}))
        finally:
            conn.execute("COMMIT")
        merged.sort(key=lambda item: (item[0], item[1]))
        return [entry for _at, _order, entry in merged[-limit:]]

    def discovered(self) -> List[Dict[str, Any]]:
        rows = self._reader().execute("SELECT * FROM discovered ORDER BY last_seen DESC, mac")
        return [{"mac": r["mac"], "arch": r["arch"], "firmware": firmware_of(r["arch"]), "vendor": r["vendor"],
                 "ip": r["ip"], "first_seen": iso(r["first_seen"]), "last_seen": iso(r["last_seen"]),
                 "count": r["count"], "last_type": r["last_type"]} for r in rows]

    def gauges(self) -> Dict[str, Any]:
        """What /metrics reads from the store: nodes by state, stalled nodes, discovered machines."""
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            states = {r["state"]: r["n"] for r in conn.execute("SELECT state, count(*) AS n FROM nodes GROUP BY state")}
            moment, stall = now(), self.config["stall_seconds"]
            stalled = sum(1 for r in conn.execute(
                "SELECT state, state_at, last_event_at, install_booted_at FROM nodes WHERE state IN ('install', 'installing')")
                if is_stalled(r, stall, moment))
            discovered = conn.execute("SELECT count(*) AS n FROM discovered").fetchone()["n"]
            trace_rows = conn.execute("SELECT count(*) AS n FROM trace").fetchone()["n"]
        finally:
            conn.execute("COMMIT")
        return {"states": states, "stalled": stalled, "discovered": discovered, "trace_rows": trace_rows}

    # -- boot files ----------------------------------------------------------------
    def _materialize(self, names: Optional[Sequence[str]] = None) -> Dict[str, List[str]]:
        """Write the boot file of every MAC of the given nodes (all nodes: also remove strays).

        Runs under the exclusive lock, after the commit, from the committed state.
        """
        db = self._db
        if names is None:
            rows = list(db.execute("SELECT * FROM nodes"))
            macs_of: Dict[str, List[str]] = {}
            for found in db.execute("SELECT node, mac FROM macs ORDER BY mac"):  # one query, not one a node
                macs_of.setdefault(found["node"], []).append(found["mac"])
        else:
            rows = [r for r in (self.node_row(n, db) for n in names) if r is not None]
            macs_of = {row["name"]: self.node_macs(row["name"], db) for row in rows}
        # All nodes: which sources there are, listed once, so that a rerun at 100,000 nodes
        # does not try to open (and unlink) 100,000 GRUB configs of nodes of the iPXE chain.
        bulk = names is None
        listed = {variant: _listing(os.path.join(self.scripts_dir, variant))
                  for variant in ("install", "local")} if bulk else None
        desired: Dict[str, Optional[bytes]] = {}
        for row in rows:
            for mac in macs_of.get(row["name"], []):
                hyphen = mac_hyphen(mac)
                desired[hyphen + ".ipxe"] = self._script(row, hyphen, listed=listed)
                # The GRUB config of a node of the grub chain (centra.pxe's _render_grub): a
                # source only for those nodes; tftpd sees this directory as grub/lifecycle/.
                desired[hyphen + GRUB_SUFFIX] = self._script(row, hyphen, GRUB_SUFFIX, listed)
        written, removed = [], []
        # Some nodes (callbacks, rearm): every file is durable before the answer; they are
        # written first, then fsynced, then renamed, in chunks (a bounded number of open
        # files), and one fsync of the directory makes the renames and removals durable.
        # All nodes (sync): one sync() at the end instead of an fsync per file (10,000
        # files: seconds, not minutes); the next sync repairs a file a crash may have lost.
        changes = sorted(desired.items())
        for first in range(0, len(changes), 1 if bulk else DURABLE_CHUNK):
            staged: List[Tuple[str, str, int]] = []
            try:
                for filename, content in changes[first:first + (1 if bulk else DURABLE_CHUNK)]:
                    path = os.path.join(self.boot_dir, filename)
                    if content is None:
                        # All nodes: the sweep of the directory below removes it, if it is there.
                        if not bulk and _unlink(path):
                            removed.append(filename)
                        continue
                    tmp_fd = _stage_if_different(path, content)
                    if tmp_fd is not None:
                        staged.append((tmp_fd[0], path, tmp_fd[1]))
                        written.append(filename)
                if not bulk:
                    for _tmp, _path, fd in staged:
                        os.fsync(fd)
            except BaseException:
                for tmp, _path, _fd in staged:
                    _unlink(tmp)
                raise
            finally:
                for _tmp, _path, fd in staged:
                    os.close(fd)
            for tmp, path, _fd in staged:
                os.replace(tmp, path)
        if bulk:
            for entry in os.listdir(self.boot_dir):
                if desired.get(entry) is None and _unlink(os.path.join(self.boot_dir, entry)):
                    removed.append(entry)
            if written or removed:
                os.sync()
        elif written or removed:
            _fsync_directory(self.boot_dir)
        return {"files_written": written, "files_removed": sorted(set(removed))}

    def _script(self, row: sqlite3.Row, hyphen: str, suffix: str = ".ipxe",
                listed: Optional[Dict[str, Set[str]]] = None) -> Optional[bytes]:
        """The boot file of the MAC `hyphen` (its hyphenated form) of the node `row`, or None
        (nginx serves the static one). `listed`: the names in each variant's directory."""
        if row["boot"] != "install" or row["state"] not in INSTALL_STATES:
            return None  # nginx serves the static tree
        variant = "local" if row["state"] == "installed" else "install"
        source = os.path.join(self.scripts_dir, variant, hyphen + suffix)
        try:
            if listed is not None and hyphen + suffix not in listed[variant]:
                raise FileNotFoundError(source)  # known without trying to open it
            with open(source, "rb") as handle:
                content = handle.read(MAX_SCRIPT + 1)
        except FileNotFoundError:
            if suffix == ".ipxe":
                self._warn_once(source, "no %s script for %s: nginx serves the static one" % (variant, hyphen))
            return None  # no GRUB config: the node is not of the grub chain
        except OSError as exc:
            self._warn_once(source, "no %s script for %s (%s): nginx serves the static one" % (variant, hyphen, exc))
            return None
        if len(content) > MAX_SCRIPT:
            self._warn_once(source, "%s is larger than %d bytes: ignored" % (source, MAX_SCRIPT))
            return None
        if variant == "install":
            if TOKEN_PLACEHOLDER not in content:
                self._warn_once(source + "#token", "%s has no %s placeholder: the installer gets no token"
                                % (source, TOKEN_PLACEHOLDER.decode()))
            content = content.replace(TOKEN_PLACEHOLDER,
                                      make_token(self.secret, row["name"], row["generation"]).encode("ascii"))
            if CALLBACK_PLACEHOLDER in content:
                base = self.config.get("callback_base")
                if not base:
                    self._warn_once("callback_base", "%s asks for %s but the config sets no callback_base"
                                    % (source, CALLBACK_PLACEHOLDER.decode()))
                else:
                    url = "%s/api/v1/callback/%s" % (base, row["name"])
                    content = content.replace(CALLBACK_PLACEHOLDER, url.encode("ascii"))
        return content

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned[key] = True
            LOG.warning("%s", message)


def install_duration(row: Any) -> Optional[float]:
    """Seconds from the start of the install (the installer's "started", else the kernel
    fetch of the install boot seen in the trace) to "installed"; None until then."""
    start = row["install_started_at"] if row["install_started_at"] is not None else row["install_booted_at"]
    if row["installed_at"] is None or start is None or row["installed_at"] < start:
        return None
    return round(row["installed_at"] - start, 3)


def is_stalled(row: Any, stall_seconds: float, moment: float) -> bool:
    """installing without news for stall_seconds, or armed (install) and booted into the
    installer (its kernel fetched) that long ago without a word from the installer."""
    if row["state"] == "installing":
        since = row["last_event_at"] or row["state_at"]
    elif row["state"] == "install":
        since = row["install_booted_at"]
    else:
        return False
    return since is not None and moment - since > stall_seconds


def merge_key(generation: int, state: str, state_at: float) -> Tuple[int, int, float, int]:
    return (generation, PROGRESS.get(state, -1), state_at, STATE_RANK.get(state, -1))


def _clean_record(record: Any) -> Optional[Dict[str, Any]]:
    """A peer record with checked types, or None."""
    if not isinstance(record, dict):
        return None

    def number(key: str, optional: bool = True) -> Any:
        value = record.get(key)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(key)
        return float(value)

    def text(key: str, limit: int) -> Optional[str]:
        value = record.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or len(value.encode("utf-8")) > limit or not value.isprintable():
            raise ValueError(key)
        return value

    try:
        name, generation, state = record.get("name"), record.get("generation"), record.get("state")
        if not isinstance(name, str) or not NODE_NAME_RE.match(name) or state not in STATE_RANK:
            return None
        if isinstance(generation, bool) or not isinstance(generation, int) or generation < 1:
            return None
        last_event = text("last_event", 32)
        return {"name": name, "generation": generation, "state": state, "state_at": number("state_at", False),
                "last_event": last_event, "last_event_at": number("last_event_at"), "message": text("message", MAX_MESSAGE),
                "install_started_at": number("install_started_at"), "installed_at": number("installed_at")}
    except ValueError:
        return None


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        return False


def _listing(directory: str) -> Set[str]:
    try:
        return set(os.listdir(directory))
    except FileNotFoundError:
        return set()


def _stage_if_different(path: str, content: bytes) -> Optional[Tuple[str, int]]:
    """None if path already holds content (mode 0644); else a temporary file next to it
    with the content written (not yet fsynced), as (its path, its open descriptor)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            if os.fstat(fd).st_mode & 0o777 == 0o644 and os.read(fd, len(content) + 1) == content:
                return None
        finally:
            os.close(fd)
    except OSError:
        pass  # missing, a symlink or unreadable: replace it
    tmp = "%s.%d.%d.tmp" % (path, os.getpid(), threading.get_ident())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.fchmod(fd, 0o644)
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        _unlink(tmp)
        raise
    return tmp, fd


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- peers --------------------------------------------------------------------------

class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def peer_request(base: str, secret: bytes, method: str, path: str, body: bytes, timeout: float) -> Tuple[int, bytes]:
    """A signed request to a peer; base is http(s)://host[:port] (or unix:/path, for tests)."""
    base = base.rstrip("/")
    if base.startswith("unix:"):
        conn: http.client.HTTPConnection = _UnixHTTPConnection(base[5:], timeout)
    else:
        parts = urllib.parse.urlsplit(base)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.netloc, timeout=timeout)
    timestamp = "%.3f" % now()
    headers = {"X-Centra-Timestamp": timestamp,
               "X-Centra-Signature": peer_signature(secret, method, path, timestamp, body),
               "Content-Type": "application/json", "Connection": "close"}
    try:
        conn.request(method, path, body=body if method == "POST" else None, headers=headers)
        response = conn.getresponse()
        data = response.read(MAX_PEER_BODY + 1)
        return response.status, data
    finally:
        conn.close()


class PeerSync:
    """Pushes accepted changes to the peers in the background and pulls their state.

    Pending records are kept per peer and per node (the newest wins), so the queue is
    bounded by the number of nodes and a burst of callbacks costs few requests. Failures
    are retried with backoff, a bounded number of times; the periodic pull repairs
    whatever a push could not deliver. Nothing here blocks a callback.
    """

    MAX_ATTEMPTS = 5

    def __init__(self, store: Store, peers: Sequence[str], interval: float, timeout: float):
        self.store = store
        self.peers = list(peers)
        self.interval = interval
        self.timeout = timeout
        self._pending: Dict[str, Dict[str, Dict[str, Any]]] = {p: {} for p in self.peers}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []

    def start(self) -> None:
        for peer in self.peers:
            thread = threading.Thread(target=self._push_loop, args=(peer,), name="push " + peer, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def submit(self, records: List[Dict[str, Any]]) -> None:
        with self._cond:
            for peer in self.peers:
                for record in records:
                    self._pending[peer][record["name"]] = record
            self._cond.notify_all()

    def _push_loop(self, peer: str) -> None:
        attempts = 0
        while not self._stop.is_set():
            with self._cond:
                while not self._pending[peer] and not self._stop.is_set():
                    self._cond.wait()
                batch = self._pending[peer]
                self._pending[peer] = {}
            if self._stop.is_set():
                return
            body = json.dumps({"records": list(batch.values())}).encode("utf-8")
            try:
                status = peer_request(peer, self.store.secret, "POST", "/api/v1/peer/event", body, self.timeout)[0]
                ok = status == 200
                if not ok:
                    LOG.warning("peer %s refused the event push: HTTP %d", peer, status)
            except (OSError, http.client.HTTPException) as exc:
                ok = False
                LOG.warning("peer %s: event push failed: %s", peer, exc)
            if ok:
                attempts = 0
                continue
            attempts += 1
            if attempts >= self.MAX_ATTEMPTS:
                LOG.warning("peer %s: %d records dropped after %d attempts; the next pull repairs it",
                            peer, len(batch), attempts)
                attempts = 0
                continue
            with self._cond:
                for name, record in batch.items():
                    self._pending[peer].setdefault(name, record)  # a newer one submitted meanwhile wins
            self._stop.wait(min(30.0, 2.0 ** attempts))

    def pull_all(self) -> Dict[str, Any]:
        result: Dict[str, Any] = {}
        for peer in self.peers:
            try:
                status, data = peer_request(peer, self.store.secret, "GET", "/api/v1/peer/state", b"", self.timeout)
                if status != 200:
                    raise LifecycleError("HTTP %d" % status)
                if len(data) > MAX_PEER_BODY:
                    raise LifecycleError("answer too large")
                payload = json.loads(data)
                records = payload.get("records") if isinstance(payload, dict) else None
                if not isinstance(records, list):
                    raise LifecycleError("no records in the answer")
                applied = self.store.merge(records, "peer-pull")
                result[peer] = {"ok": True, "applied": applied}
            except (OSError, ValueError, LifecycleError, http.client.HTTPException) as exc:
                LOG.warning("peer %s: state pull failed: %s", peer, exc)
                result[peer] = {"ok": False, "error": str(exc)}
        return result


# -- the boot trace: ingest (docs/status.md, the trace contract) ---------------------

TRACE_MAX_DATAGRAM = 8192
TRACE_SOURCES = ("dhcp", "tftp", "http")
DHCP_TYPES = ("discover", "offer", "request", "ack", "nak", "release", "decline")
DROP_REASONS = ("oversize", "malformed", "missing_field", "queue_full", "store_error")
TRACE_BATCH_MAX = 1000      # events per transaction at most
IP_MAP_MAX = 65536          # IP -> MAC entries kept (least recently learned go first)
BOOT_WINDOW_SECONDS = 120.0  # DHCP acks of one MAC this close count as one boot (firmware, then iPXE)
# nginx sends its events itself, DHCP acks come through the journal: a pool machine's
# first HTTP request (/boot.ipxe names no MAC) can arrive before the ack that maps its
# address. Such an event waits this long for the ack before it counts as unattributed.
TRACE_HOLD_SECONDS = 5.0
TRACE_HOLD_MAX = 4096        # events waiting at most (more: unattributed at once)
MAX_TEXT = 1024             # characters of a file name or a boot file accepted (a URI: twice that)
KEEP_TEXT = 256             # ... and kept (a URI: twice that): bounds a trace row (docs/status.md)
MAX_VENDOR = 255
MAX_QUERY = 64              # bytes of a query string the views accept
# Option 93 -> the firmware label of /metrics. The service runs with the host's python
# and no collection code, so this mirrors BOOT_RULES of plugins/module_utils/_boot_policy.py;
# tests/unit/lifecycle/test_trace.py holds the two together.
FIRMWARE_OF_ARCH: Dict[int, str] = {0: "bios", 6: "efi32", 7: "efi64", 9: "efi64", 10: "arm32", 11: "arm64",
                                    16: "http_efi64", 19: "http_arm64"}
FIRMWARES = ("bios", "efi32", "efi64", "arm32", "arm64", "http_efi64", "http_arm64", "other")
INSTALL_DURATION_BUCKETS = (60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 10800)
NODE_URI_RE = re.compile(r"^/nodes/([0-9a-fA-F]{2}(?:-[0-9a-fA-F]{2}){5})\.ipxe$")
PROFILE_URI_RE = re.compile(r"^/profiles/([A-Za-z_][A-Za-z0-9_]*)/([^/]+)$")
MAC_IN_PATH_RE = re.compile(r"(?:^|[/-])01-([0-9a-fA-F]{2}(?:-[0-9a-fA-F]{2}){5})$")


def firmware_of(arch: Optional[int]) -> str:
    if arch is None:
        return "bios"  # option 93 absent: a BIOS PXE client
    return FIRMWARE_OF_ARCH.get(arch, "other")


class TraceDrop(Exception):
    """A datagram that is not a trace event; args[0] is the reason (DROP_REASONS)."""


class TraceEvent:
    """One parsed trace event: where it came from, when, who, and its public details."""

    __slots__ = ("src", "type", "at", "mac", "ip", "mac_in_uri", "detail")

    def __init__(self, src: str, type_: str, at: float, mac: Optional[str], ip: Optional[str],
                 mac_in_uri: Optional[str], detail: Dict[str, Any]):
        self.src, self.type, self.at, self.mac, self.ip = src, type_, at, mac, ip
        self.mac_in_uri, self.detail = mac_in_uri, detail


def _text(value: Any, limit: int) -> Optional[str]:
    """Printable text of at most `limit` characters, or None."""
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        return None
    return value


def _number(value: Any, integer: bool = False) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,15}(\.[0-9]{1,9})?", value.strip()):
        value = float(value)
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or value > 1e15:
        return None
    if integer and value != int(value):
        return None
    return int(value) if integer else float(value)


def clean_uri_path(uri: str) -> str:
    """The path of a URI as nginx logged it: query dropped, %-decoded, dot segments resolved."""
    path = urllib.parse.unquote(uri.split("?", 1)[0].split("#", 1)[0])
    parts: List[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def parse_datagram(data: bytes, received_at: float) -> TraceEvent:
    """A trace event from one datagram (a bare JSON object or a syslog line whose message is
    one: parsed from the first "{"); raises TraceDrop. Unknown fields are ignored."""
    if len(data) > TRACE_MAX_DATAGRAM:
        raise TraceDrop("oversize")
    start = data.find(b"{")
    if start < 0:
        raise TraceDrop("malformed")
    try:
        payload = json.loads(data[start:].rstrip(b"\x00\r\n ").decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TraceDrop("malformed") from None
    if not isinstance(payload, dict):
        raise TraceDrop("malformed")
    src = payload.get("src")
    if src not in TRACE_SOURCES:
        raise TraceDrop("missing_field")
    at = _number(payload.get("ts"))
    # A missing or absurd time (before 2001, or a day ahead) is the time received.
    if at is None or at < 1e9 or at > received_at + 86400:
        at = received_at
    mac = None
    if payload.get("mac") is not None:
        raw_mac = payload.get("mac")
        mac = canonical_mac(raw_mac.strip()) if isinstance(raw_mac, str) else None
        if mac is None and src == "dhcp":
            raise TraceDrop("missing_field")
    ip = payload.get("ip")
    ip = ip if _valid_ip(ip) else None
    detail: Dict[str, Any] = {}
    mac_in_uri = None
    if src == "dhcp":
        type_ = payload.get("type")
        if type_ not in DHCP_TYPES or mac is None:
            raise TraceDrop("missing_field")
        arch = _number(payload.get("arch"), integer=True)
        detail["type"] = type_
        if arch is not None and arch <= 0xFFFF:
            detail["arch"] = arch
            detail["firmware"] = firmware_of(int(arch))
        for key, limit in (("vendor", MAX_VENDOR), ("boot_file", MAX_TEXT), ("server", 16)):
            value = _text(payload.get(key), limit)
            if value is not None:
                detail[key] = value[:KEEP_TEXT]
        relay = payload.get("relay")
        if _valid_ip(relay):
            detail["relay"] = relay
    elif src == "tftp":
        type_ = payload.get("type", "rrq")
        name = _text(payload.get("file"), MAX_TEXT)
        if type_ != "rrq" or name is None or ip is None:
            raise TraceDrop("missing_field")
        detail["file"] = name[:KEEP_TEXT]
        found = MAC_IN_PATH_RE.search(name)
        mac_in_uri = canonical_mac(found.group(1)) if found else None
    else:
        type_ = payload.get("type", "get")
        uri = _text(payload.get("uri"), MAX_TEXT * 2)
        if not isinstance(type_, str) or not re.fullmatch(r"[a-z]{1,10}", type_) or uri is None or ip is None:
            raise TraceDrop("missing_field")
        detail["uri"] = uri[:KEEP_TEXT * 2]
        for key in ("status", "bytes"):
            value = _number(payload.get(key), integer=True)
            if value is not None:
                detail[key] = value
        seconds = _number(payload.get("seconds"))
        if seconds is not None:
            detail["seconds"] = round(seconds, 3)
        path = clean_uri_path(uri)
        found = NODE_URI_RE.match(path) or MAC_IN_PATH_RE.search(path)
        mac_in_uri = canonical_mac(found.group(1)) if found else None
    return TraceEvent(src, type_, at, mac, ip, mac_in_uri, detail)


def _profile_file_kind(path: str) -> Optional[str]:
    match = PROFILE_URI_RE.match(path)
    if not match:
        return None
    filename = match.group(2)
    if filename == "vmlinuz" or filename.startswith(("vmlinuz", "linux", "kernel")):
        return "kernel"
    if filename.startswith("initrd"):
        return "initrd"
    return "profile_file"


def classify(event: TraceEvent, row: Any) -> str:
    """What the event means for the node of `row` (its state when the event is recorded)."""
    if event.src == "dhcp":
        return "dhcp_" + event.type
    if event.src == "tftp":
        path = "/" + event.detail["file"].lstrip("/")
        name = path.rsplit("/", 1)[-1].lower()
        # centra.pxe's grub chain reads grub/grub.cfg, grub/nodes/<mac>.cfg, grub/lifecycle/<mac>.cfg.
        if ("grub" in name or path.startswith("/grub/")) and ("cfg" in name or MAC_IN_PATH_RE.search(path)):
            return "grub_config"
        if name.endswith((".efi", ".kpxe", ".pxe", ".0", ".signed", ".efi.signed")) or name.startswith(("shim", "grub")):
            return "loader"
        # The grub chain loads the profile's kernel and initrd over TFTP.
        return _profile_file_kind(path) or "tftp_file"
    path = clean_uri_path(event.detail["uri"])
    if path == "/boot.ipxe":
        return "entry_script"
    if path == "/menu.ipxe":
        return "menu"
    if NODE_URI_RE.match(path):
        if row["boot"] == "install":
            return "local_boot_script" if row["state"] == "installed" else "install_script"
        return "node_script"
    kind = _profile_file_kind(path)
    if kind:
        return kind
    if path.startswith("/loaders/"):
        return "loader"
    if path.startswith("/api/v1/callback/"):
        return "installer_callback"
    return "http_other"


class Metrics:
    """The counters of /metrics (since the service started: Prometheus handles resets)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.datagrams = 0
        self.received = {src: 0 for src in TRACE_SOURCES}
        self.received_unparsed = 0
        self.dropped = {reason: 0 for reason in DROP_REASONS}
        self.stored = 0
        self.unattributed = 0
        self.discovered_events = 0
        self.boots: Dict[Tuple[str, str], int] = {}
        self.installs = {"started": 0, "installed": 0, "failed": 0}
        self.duration_buckets = [0] * len(INSTALL_DURATION_BUCKETS)
        self.duration_sum = 0.0
        self.duration_count = 0

    def add(self, field: str, key: Any = None, amount: int = 1) -> None:
        with self._lock:
            if key is None:
                setattr(self, field, getattr(self, field) + amount)
            else:
                table = getattr(self, field)
                table[key] = table.get(key, 0) + amount

    def observe_install(self, seconds: float) -> None:
        with self._lock:
            self.duration_sum += seconds
            self.duration_count += 1
            for index, bound in enumerate(INSTALL_DURATION_BUCKETS):
                if seconds <= bound:
                    self.duration_buckets[index] += 1

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            return {"datagrams": self.datagrams, "received": dict(self.received), "received_unparsed": self.received_unparsed,
                    "dropped": dict(self.dropped), "stored": self.stored, "unattributed": self.unattributed,
                    "discovered_events": self.discovered_events, "boots": dict(self.boots),
                    "installs": dict(self.installs), "duration_buckets": list(self.duration_buckets),
                    "duration_sum": self.duration_sum, "duration_count": self.duration_count}


class TraceIngest:
    """The trace socket: a receiver thread parses datagrams into a bounded queue (full:
    dropped and counted, the feeders never wait), a writer thread stores them in batches,
    one transaction each. It also keeps the IP -> MAC map (DHCP answers, the MAC in a
    /nodes/ URI, the plan's fixed addresses in the store) and counts boots."""

    def __init__(self, store: Store, metrics: Metrics, config: Dict[str, Any]):
        self.store = store
        self.metrics = metrics
        self.config = config
        self.queue: "queue.Queue[Tuple[bytes, float]]" = queue.Queue(maxsize=config["trace_queue"])
        self._ip_map: "collections.OrderedDict[str, str]" = collections.OrderedDict()
        self._last_boot: "collections.OrderedDict[str, float]" = collections.OrderedDict()
        # The firmware a MAC's latest offer or request named: an ack may carry no option 93
        # (Kea's, when its request's class line was not joined), the offer before it does.
        self._last_firmware: "collections.OrderedDict[str, str]" = collections.OrderedDict()
        # Events of an address not mapped yet, oldest first: (deadline, event).
        self._held: "collections.deque[Tuple[float, TraceEvent]]" = collections.deque()
        self._sock: Optional[socket.socket] = None
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []

    # -- the map and the boot counter (writer thread only) ---------------------------
    def learn(self, ip: str, mac: str) -> None:
        self._ip_map[ip] = mac
        self._ip_map.move_to_end(ip)
        while len(self._ip_map) > IP_MAP_MAX:
            self._ip_map.popitem(last=False)

    def mac_for_ip(self, ip: str) -> Optional[str]:
        return self._ip_map.get(ip)

    def hold(self, event: TraceEvent) -> bool:
        """Keep an event whose address maps to no MAC yet, for TRACE_HOLD_SECONDS; False
        when the hold is full (the event is then unattributed)."""
        if len(self._held) >= TRACE_HOLD_MAX:
            return False
        self._held.append((now() + TRACE_HOLD_SECONDS, event))
        return True

    def release_held(self, at: Optional[float] = None) -> List[TraceEvent]:
        """The held events whose address is mapped now, to be stored; those past their
        deadline are counted unattributed and forgotten."""
        at = now() if at is None else at
        ready: List[TraceEvent] = []
        waiting: "collections.deque[Tuple[float, TraceEvent]]" = collections.deque()
        expired = 0
        for deadline, event in self._held:
            if event.ip in self._ip_map:  # only events with an address are held
                ready.append(event)
            elif deadline <= at:
                expired += 1
            else:
                waiting.append((deadline, event))
        self._held = waiting
        if expired:
            self.metrics.add("unattributed", None, expired)
        return ready

    def count_boot(self, event: TraceEvent, mac: Optional[str], profile: Optional[str]) -> None:
        """A boot is a DHCP ack to a PXE client (option 93 present) that is not iPXE asking
        for its script; an ack of the same MAC within BOOT_WINDOW_SECONDS is the same boot."""
        if event.src != "dhcp" or mac is None:
            return
        if event.type == "ack" and event.ip is not None:
            self.learn(event.ip, mac)
        if event.type != "ack":
            if "arch" in event.detail:
                self._last_firmware[mac] = event.detail.get("firmware", "other")
                self._last_firmware.move_to_end(mac)
                while len(self._last_firmware) > IP_MAP_MAX:
                    self._last_firmware.popitem(last=False)
            return
        if "arch" in event.detail:
            firmware = event.detail.get("firmware", "other")
        elif mac in self._last_firmware:
            firmware = self._last_firmware[mac]
        else:
            return
        if event.detail.get("boot_file", "").endswith(".ipxe"):
            return
        last = self._last_boot.get(mac)
        self._last_boot[mac] = event.at
        self._last_boot.move_to_end(mac)
        while len(self._last_boot) > IP_MAP_MAX:
            self._last_boot.popitem(last=False)
        if last is not None and abs(event.at - last) < BOOT_WINDOW_SECONDS:
            return
        self.metrics.add("boots", (profile or "unknown", firmware))

    # -- feeding ---------------------------------------------------------------------
    def offer(self, data: bytes, received_at: float) -> None:
        """Queue one datagram; never blocks. The receiver does nothing else, so that the
        socket's short kernel queue (net.unix.max_dgram_qlen) empties fast."""
        self.metrics.add("datagrams")
        try:
            self.queue.put_nowait((data, received_at))
        except queue.Full:
            self.metrics.add("dropped", "queue_full")

    def drain(self, wait: float = 0.5) -> int:
        """Parse and store what is queued (a batch at most), then the held events whose
        address is mapped now; the number of datagrams taken."""
        try:
            raw = [self.queue.get(timeout=wait)]
        except queue.Empty:
            raw = []  # nothing new: the held events may still be due
        while raw and len(raw) < TRACE_BATCH_MAX:
            try:
                raw.append(self.queue.get_nowait())
            except queue.Empty:
                break
        batch: List[TraceEvent] = []
        for data, received_at in raw:
            try:
                event = parse_datagram(data, received_at)
            except TraceDrop as exc:
                self.metrics.add("received_unparsed")
                self.metrics.add("dropped", exc.args[0])
                continue
            self.metrics.add("received", event.src)
            batch.append(event)
        self._store(batch)
        if self._held:
            self._store(self.release_held())
        return len(raw)

    def _store(self, batch: List[TraceEvent]) -> None:
        if not batch:
            return
        try:
            counts = self.store.ingest(batch, self)
        except Exception:  # noqa: BLE001 - the writer must outlive a bad batch
            LOG.exception("trace: a batch of %d events could not be stored", len(batch))
            self.metrics.add("dropped", "store_error", len(batch))
            return
        self.metrics.add("stored", None, counts["stored"])
        self.metrics.add("unattributed", None, counts["unattributed"])
        self.metrics.add("discovered_events", None, counts["discovered"])

    def open_socket(self, path: str, group: Optional[str]) -> socket.socket:
        if os.path.exists(path) and not os.path.isdir(path):
            os.unlink(path)  # a stale socket of an earlier run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # a burst waits in the kernel
        except OSError:
            pass
        sock.bind(path)
        os.chmod(path, 0o600)
        if group:
            import grp  # noqa: PLC0415 - only the serving process needs it
            try:
                os.chown(path, -1, grp.getgrnam(group).gr_gid)
            except (KeyError, OSError) as exc:
                LOG.error("trace socket %s: cannot give it group %s (%s): the feeders cannot send", path, group, exc)
            else:
                os.chmod(path, 0o660)
        sock.settimeout(0.5)
        self._sock = sock
        return sock

    def start(self, path: str, group: Optional[str]) -> None:
        self.open_socket(path, group)
        for target, name in ((self._receive_loop, "trace-receive"), (self._write_loop, "trace-write")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        LOG.info("trace: listening on %s", path)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    def _receive_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data = self._sock.recv(TRACE_MAX_DATAGRAM + 1)  # one byte more: a longer one is seen as such
            except socket.timeout:
                continue
            except OSError as exc:
                if self._stop.is_set():
                    return
                LOG.warning("trace socket: %s", exc)
                time.sleep(0.1)
                continue
            self.offer(data, now())

    def _write_loop(self) -> None:
        while not self._stop.is_set() or not self.queue.empty():
            self.drain(0.2)


# -- the views: /metrics, /status, Kea's statistics ---------------------------------

def kea_statistics(path: str, timeout: float = 1.0, limit: int = 4 << 20) -> Optional[Dict[str, float]]:
    """Kea's statistic-get-all through its control socket: {name: latest value}, or None."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout * 2
    try:
        sock.connect(path)
        sock.sendall(b'{"command": "statistic-get-all"}')
        chunks: List[bytes] = []
        size = 0
        answer: Any = None
        while size <= limit and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            try:
                answer = json.loads(b"".join(chunks))
                break  # Kea may keep the connection open: a whole answer is enough
            except ValueError:
                continue
        if answer is None:
            answer = json.loads(b"".join(chunks))
    except (OSError, ValueError):
        return None
    finally:
        sock.close()
    if isinstance(answer, list) and answer:
        answer = answer[0]
    if not isinstance(answer, dict) or answer.get("result") != 0 or not isinstance(answer.get("arguments"), dict):
        return None
    values: Dict[str, float] = {}
    for name, samples in answer["arguments"].items():
        if len(values) >= 2000:
            break
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9\[\]._-]{1,100}", name):
            continue
        if isinstance(samples, list) and samples and isinstance(samples[0], list) and samples[0]:
            value = samples[0][0]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                values[name] = value
    return values


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) and value != int(value) else str(int(value))


def render_metrics(counters: Dict[str, Any], gauges: Dict[str, Any], kea: Optional[Dict[str, float]],
                   kea_configured: bool) -> str:
    """Prometheus text format 0.0.4. Labels are bounded: source, reason, profile (from the
    plan), firmware, state, result; never a MAC or a node name."""
    out: List[str] = []

    def family(name: str, kind: str, text: str, samples: Sequence[Tuple[str, float]]) -> None:
        out.append("# HELP %s %s" % (name, text))
        out.append("# TYPE %s %s" % (name, kind))
        for labels, value in samples:
            out.append("%s%s %s" % (name, labels, _num(value)))

    family("centra_pxe_trace_datagrams_received_total", "counter", "Datagrams read from the trace socket.",
           [("", counters["datagrams"])])
    family("centra_pxe_trace_events_received_total", "counter", "Trace datagrams received, by source (unparsable ones: source none).",
           [('{src="%s"}' % s, counters["received"][s]) for s in TRACE_SOURCES]
           + [('{src="none"}', counters["received_unparsed"])])
    family("centra_pxe_trace_events_dropped_total", "counter", "Trace datagrams dropped, by reason.",
           [('{reason="%s"}' % r, counters["dropped"][r]) for r in DROP_REASONS])
    family("centra_pxe_trace_events_stored_total", "counter", "Trace events stored in a known node's trace.",
           [("", counters["stored"])])
    family("centra_pxe_trace_events_unattributed_total", "counter",
           "Trace events of no known node and no DHCP (an address no lease or plan maps to a MAC).",
           [("", counters["unattributed"])])
    family("centra_pxe_discovery_events_total", "counter", "DHCP events of machines in no plan.",
           [("", counters["discovered_events"])])
    family("centra_pxe_boots_total", "counter", "PXE boots seen (a DHCP ack to a PXE client), by profile and firmware.",
           [('{profile="%s",firmware="%s"}' % (_label(p), _label(f)), v) for (p, f), v in sorted(counters["boots"].items())])
    family("centra_pxe_installs_started_total", "counter", "Installer callbacks \"started\" accepted.",
           [("", counters["installs"]["started"])])
    family("centra_pxe_installs_finished_total", "counter", "Installer callbacks \"installed\" accepted.",
           [("", counters["installs"]["installed"])])
    family("centra_pxe_installs_failed_total", "counter", "Installer callbacks \"failed\" accepted.",
           [("", counters["installs"]["failed"])])
    buckets = [('{le="%s"}' % b, c) for b, c in zip(INSTALL_DURATION_BUCKETS, counters["duration_buckets"])]
    out.append("# HELP centra_pxe_install_duration_seconds Install duration, from the start of the install to \"installed\".")
    out.append("# TYPE centra_pxe_install_duration_seconds histogram")
    for labels, value in buckets + [('{le="+Inf"}', counters["duration_count"])]:
        out.append("centra_pxe_install_duration_seconds_bucket%s %s" % (labels, _num(value)))
    out.append("centra_pxe_install_duration_seconds_sum %s" % _num(round(counters["duration_sum"], 3)))
    out.append("centra_pxe_install_duration_seconds_count %s" % _num(counters["duration_count"]))
    family("centra_pxe_nodes", "gauge", "Nodes of the plan, by state.",
           [('{state="%s"}' % s, gauges["states"].get(s, 0)) for s in STATES])
    family("centra_pxe_nodes_stalled", "gauge", "Nodes in install or installing for longer than the stall time.",
           [("", gauges["stalled"])])
    family("centra_pxe_discovered_machines", "gauge", "Machines in no plan that asked for DHCP (bounded, see docs/status.md).",
           [("", gauges["discovered"])])
    family("centra_pxe_trace_events_kept", "gauge", "Trace events in the store.", [("", gauges["trace_rows"])])
    if kea_configured:
        family("centra_pxe_kea_up", "gauge", "Whether Kea's control socket answered statistic-get-all.",
               [("", 1 if kea is not None else 0)])
        family("centra_pxe_kea_dhcp4_statistic", "gauge", "Kea DHCPv4 statistics (statistic-get-all), latest values.",
               [('{name="%s"}' % _label(n), v) for n, v in sorted((kea or {}).items())])
    return "\n".join(out) + "\n"


STATUS_ORDER = ("stalled", "failed", "installing", "install", "installed", "netboot", "local", "menu")
STATUS_CSS = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}"
    "h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}"
    "table{border-collapse:collapse;width:100%;margin:.5em 0}"
    "th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #ddd;vertical-align:top}"
    "th{background:#eee}code{font-size:.95em}"
    ".s{display:inline-block;padding:0 .5em;border-radius:.6em;color:#fff;font-weight:600}"
    ".stalled{background:#c0392b}.failed{background:#8e44ad}.installing{background:#d68910}"
    ".install{background:#2471a3}.installed{background:#1e8449}.netboot{background:#117a65}"
    ".local{background:#566573}.menu{background:#7f8c8d}.unknown{background:#a04000}"
    ".summary span{margin-right:1em}.muted{color:#777}"
)
STATUS_CSP = ("default-src 'none'; style-src 'sha256-%s'; img-src 'none'; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'" % base64.b64encode(hashlib.sha256(STATUS_CSS.encode("ascii")).digest()).decode("ascii"))
STATUS_ROWS_MAX = 2000  # rows per table shown; the API has them all


def _ago(moment: float, iso_time: Optional[str]) -> str:
    if not iso_time:
        return "never"
    then = calendar.timegm(time.strptime(iso_time[:19], "%Y-%m-%dT%H:%M:%S"))
    seconds = max(0, int(moment - then))
    if seconds < 120:
        return "%ds ago" % seconds
    if seconds < 7200:
        return "%dm ago" % (seconds // 60)
    if seconds < 172800:
        return "%dh %dm ago" % (seconds // 3600, seconds % 3600 // 60)
    return "%dd ago" % (seconds // 86400)


def render_status(nodes: List[Dict[str, Any]], discovered: List[Dict[str, Any]], refresh: int, moment: float,
                  server: str) -> str:
    """The /status page: self-contained (one inline style block, allowed by its hash in the
    CSP; no script, image, font or link), every value escaped."""
    esc = html.escape
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for entry in nodes:
        groups.setdefault(entry.get("display_state") or entry["state"], []).append(entry)
    lines = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="refresh" content="%d">' % refresh,
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>centra.pxe status: %s</title>" % esc(server),
        "<style>%s</style></head><body>" % STATUS_CSS,
        "<h1>centra.pxe status: %s</h1>" % esc(server),
        '<p class="muted">%s UTC, refreshed every %d s. JSON: <code>/api/v1/nodes</code>, '
        "<code>/api/v1/discovered</code>; metrics: <code>/metrics</code>.</p>"
        % (esc(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))), refresh),
        '<p class="summary" id="summary">',
    ]
    for state in STATUS_ORDER:
        lines.append('<span><span class="s %s">%s</span> %d</span>' % (state, state, len(groups.get(state, []))))
    lines.append('<span><span class="s unknown">discovered</span> %d</span></p>' % len(discovered))
    lines.append('<h2>Nodes</h2><table id="nodes"><thead><tr><th>state</th><th>node</th><th>profile</th><th>MAC</th>'
                 "<th>last seen</th><th>since</th><th>last installer event</th></tr></thead><tbody>")
    shown = 0
    for state in STATUS_ORDER + tuple(sorted(set(groups) - set(STATUS_ORDER))):
        for entry in groups.get(state, []):
            if shown >= STATUS_ROWS_MAX:
                break
            shown += 1
            last_event = entry.get("last_event") or {}
            lines.append(
                '<tr><td><span class="s %s">%s</span></td><td>%s</td><td>%s</td><td><code>%s</code></td>'
                "<td>%s</td><td>%s</td><td>%s</td></tr>" % (
                    esc(state) if state in STATUS_ORDER else "unknown", esc(state), esc(entry["name"]),
                    esc(entry["profile"]), esc(" ".join(entry.get("macs") or [])), esc(entry.get("last_seen") or "-"),
                    esc(_ago(moment, entry.get("last_seen_at"))),
                    esc("%s (%s)" % (last_event["event"], _ago(moment, last_event.get("at"))) if last_event else "-")))
    lines.append("</tbody></table>")
    if len(nodes) > shown:
        lines.append('<p class="muted">%d more nodes: see /api/v1/nodes.</p>' % (len(nodes) - shown))
    lines.append('<h2>Discovered machines (in no inventory)</h2><table id="discovered"><thead><tr><th>MAC</th>'
                 "<th>firmware</th><th>option 93</th><th>vendor class</th><th>address</th><th>first seen</th>"
                 "<th>last seen</th><th>requests</th></tr></thead><tbody>")
    for entry in discovered[:STATUS_ROWS_MAX]:
        lines.append("<tr><td><code>%s</code></td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
                     "<td>%s</td><td>%d</td></tr>" % (
                         esc(entry["mac"]), esc(entry["firmware"]), esc("-" if entry["arch"] is None else str(entry["arch"])),
                         esc(entry["vendor"] or "-"), esc(entry["ip"] or "-"), esc(_ago(moment, entry["first_seen"])),
                         esc(_ago(moment, entry["last_seen"])), entry["count"]))
    lines.append("</tbody></table>")
    if len(discovered) > STATUS_ROWS_MAX:
        lines.append('<p class="muted">%d more: see /api/v1/discovered.</p>' % (len(discovered) - STATUS_ROWS_MAX))
    lines.append("</body></html>")
    return "\n".join(lines) + "\n"


class RawBody:
    """A non-JSON answer of a route (the status page, the metrics)."""

    def __init__(self, content_type: str, body: bytes, headers: Optional[Dict[str, str]] = None):
        self.content_type, self.body, self.headers = content_type, body, headers or {}


# -- HTTP ---------------------------------------------------------------------------

class _HeaderBudgetExceeded(Exception):
    pass


class _BudgetReader:
    """Wraps the request stream: the request line and headers share one byte budget."""

    def __init__(self, raw: Any):
        self._raw = raw
        self.budget: Optional[int] = None

    def readline(self, limit: int = -1) -> bytes:
        if self.budget is not None:
            cap = self.budget + 1 if limit < 0 else min(limit, self.budget + 1)
            line = self._raw.readline(cap)
            self.budget -= len(line)
            if self.budget < 0:
                raise _HeaderBudgetExceeded()
            return line
        return self._raw.readline(limit)

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size)

    def close(self) -> None:
        self._raw.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "centra-pxe-lifecycle"
    sys_version = ""
    app: "App"  # set on the subclass made by make_server

    def setup(self) -> None:
        self.timeout = self.app.config["socket_timeout"]
        super().setup()
        self.rfile = _BudgetReader(self.rfile)

    def handle_one_request(self) -> None:
        self.rfile.budget = self.app.config["max_header_bytes"]
        try:
            super().handle_one_request()
        except _HeaderBudgetExceeded:
            self.close_connection = True
            if not getattr(self, "request_version", None):
                self.request_version = "HTTP/1.1"
            self.requestline = getattr(self, "requestline", "") or "-"
            self.command = getattr(self, "command", None) or "-"
            self._json(431, {"error": "request headers too large"})
        finally:
            self.close_connection = True  # one request per connection: no idle keep-alive holds a worker

    # Every answer has a status line (no HTTP/0.9) and a JSON body (no HTML).
    default_request_version = "HTTP/1.1"

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.rfile.budget = None  # the body has its own limits
        return ok

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        self.close_connection = True
        if not getattr(self, "command", None):
            self.command = "-"
        self._json(code, {"error": message or self.responses.get(code, ("error",))[0]})

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        LOG.info("%s", format % args)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        # The request line never carries a token (it travels in the Authorization header).
        LOG.info('"%s" %s', self.requestline, getattr(code, "value", code))

    def _json(self, status: int, payload: Any, extra: Optional[Dict[str, str]] = None) -> None:
        if isinstance(payload, RawBody):
            body, content_type = payload.body, payload.content_type
            extra = dict(payload.headers, **(extra or {}))
        else:
            body, content_type = json.dumps(payload, sort_keys=True).encode("utf-8") + b"\n", "application/json"
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            pass

    def _dispatch(self) -> None:
        self.body_read = False
        try:
            status, payload, extra = self.app.route(self)
        except Exception:  # noqa: BLE001 - a bug must not take the worker down
            LOG.exception("internal error on %s", self.requestline)
            status, payload, extra = 500, {"error": "internal error"}, None
        if not self.body_read:
            self._drain()
        self._json(status, payload, extra)

    def _drain(self) -> None:
        """Read (and drop) a small unread body, so that a refused client gets its answer
        instead of a reset; a large one is not worth the time: the connection closes."""
        length = self.headers.get("Content-Length", "")
        if re.fullmatch(r"[0-9]{1,6}", length.strip()) and 0 < int(length) <= DRAIN_LIMIT:
            try:
                self.rfile.read(int(length))
            except OSError:
                pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


_OVERLOADED_BODY = b'{"error": "busy, retry later"}\n'
OVERLOADED_ANSWER = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nRetry-After: 1\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n%s"
                     % (len(_OVERLOADED_BODY), _OVERLOADED_BODY))


class PoolServer(socketserver.UnixStreamServer):
    """A Unix-socket HTTP server with a fixed pool of worker threads and a bounded queue:
    a flood costs a refused connection, never a thread or unbounded memory."""

    request_queue_size = 128
    allow_reuse_address = False

    def __init__(self, path: str, handler: type, workers: int, queue_size: int, mode: int = 0o666):
        self._queue: "queue.Queue[Optional[Tuple[Any, Any]]]" = queue.Queue(maxsize=queue_size)
        # The listen backlog holds a connection only until the acceptor takes it (and
        # queues it or answers 503), so it is sized for a burst, not for the queue: a
        # full backlog makes connect() fail (EAGAIN), which nginx turns into a 502.
        self.request_queue_size = max(queue_size, LISTEN_BACKLOG)
        self._next_drain = 0.0
        self._refused: List[Tuple[float, Any]] = []  # (close by, socket) of 503-answered connections
        if os.path.exists(path) and not os.path.isdir(path):
            os.unlink(path)  # a stale socket of an earlier run
        super().__init__(path, handler, bind_and_activate=True)
        os.chmod(path, mode)
        self._workers = [threading.Thread(target=self._work, name="worker-%d" % i, daemon=True) for i in range(workers)]
        for worker in self._workers:
            worker.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            self._queue.put_nowait((request, client_address))
        except queue.Full:
            self._refuse(request)

    def _refuse(self, request: Any) -> None:
        """503 at once, without waiting for the request: the client is not left hanging,
        and an installer retries after Retry-After (docs/lifecycle.md). The socket stays
        open for reading a moment (drained by service_actions) so that a client still
        sending its request gets the 503 rather than a broken pipe (behind nginx: a 502)."""
        try:
            request.setblocking(False)
            request.send(OVERLOADED_ANSWER)
            request.shutdown(socket.SHUT_WR)
        except OSError:
            self.shutdown_request(request)
            return
        if len(self._refused) >= REFUSED_LINGER_MAX:
            self._next_drain = 0.0
            self.service_actions()  # most have their answer and are gone by now
            if len(self._refused) >= REFUSED_LINGER_MAX:
                self.shutdown_request(request)
                return
        self._refused.append((time.monotonic() + REFUSED_LINGER_SECONDS, request))

    def service_actions(self) -> None:
        """Between accepts, and every poll interval: drop what refused clients sent, and
        close their connections once they closed theirs or their time is up."""
        moment = time.monotonic()
        if not self._refused or moment < self._next_drain:
            return
        self._next_drain = moment + 0.02  # not on every accept: the acceptor stays quick
        keep = []
        for deadline, request in self._refused:
            done = moment >= deadline
            try:
                while not done:
                    done = not request.recv(65536)  # b"": the client closed
            except BlockingIOError:
                pass
            except OSError:
                done = True
            if done:
                self.shutdown_request(request)
            else:
                keep.append((deadline, request))
        self._refused = keep

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:  # noqa: BLE001
                LOG.exception("request failed")
            finally:
                self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        for _deadline, request in self._refused:
            self.shutdown_request(request)
        self._refused = []
        for _worker in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout=5)


class App:
    """The HTTP routes over a Store."""

    def __init__(self, store: Store, config: Dict[str, Any], peers: Optional[PeerSync] = None,
                 metrics: Optional[Metrics] = None, server_name: str = ""):
        self.store = store
        self.config = config
        self.peers = peers
        self.metrics = metrics if metrics is not None else Metrics()
        self.server_name = server_name or socket.gethostname()

    def route(self, req: Handler) -> Tuple[int, Any, Optional[Dict[str, str]]]:
        path, _sep, query = req.path.partition("?")
        method = req.command
        if path in ("/status", "/metrics") or path in ("/api/v1/discovered",) or \
                (path.startswith("/api/v1/nodes/") and path.endswith("/events")):
            return self.views(req, path, query)
        parts = path.split("/")
        if parts[:3] != ["", "api", "v1"]:
            return 404, {"error": "not found"}, None
        rest = parts[3:]
        if len(rest) == 2 and rest[0] == "callback":
            if method != "POST":
                return 405, {"error": "method not allowed"}, {"Allow": "POST"}
            return self.callback(req, urllib.parse.unquote(rest[1]))
        if rest == ["peer", "event"]:
            if method != "POST":
                return 405, {"error": "method not allowed"}, {"Allow": "POST"}
            return self.peer_event(req, path)
        if rest == ["peer", "state"]:
            if method not in ("GET", "HEAD"):
                return 405, {"error": "method not allowed"}, {"Allow": "GET, HEAD"}
            return self.peer_state(req, path)
        if rest in (["nodes"], ["status"]) or (len(rest) == 2 and rest[0] == "nodes"):
            if method not in ("GET", "HEAD"):
                return 405, {"error": "method not allowed"}, {"Allow": "GET, HEAD"}
            if rest == ["status"]:
                return 200, {"ok": True, "plan_digest": self.store.meta("plan_digest"),
                             "schema": SCHEMA_VERSION}, None
            if rest == ["nodes"]:
                return 200, {"nodes": self.store.show()}, None
            node = self.store.show(urllib.parse.unquote(rest[1]))
            if node is None:
                return 404, {"error": "no such node"}, None
            return 200, node, None
        return 404, {"error": "not found"}, None

    @staticmethod
    def _body_length(req: Handler, limit: int) -> Tuple[Optional[int], Optional[Tuple[int, Any, None]]]:
        lengths = req.headers.get_all("Content-Length") or []
        if req.headers.get("Transfer-Encoding") is not None:
            if lengths:
                return None, (400, {"error": "both Content-Length and Transfer-Encoding"}, None)
            return None, (411, {"error": "Content-Length required"}, None)
        if not lengths:
            return None, (411, {"error": "Content-Length required"}, None)
        if len(set(lengths)) != 1 or not re.fullmatch(r"[0-9]{1,12}", lengths[0].strip()):
            return None, (400, {"error": "bad Content-Length"}, None)
        length = int(lengths[0].strip())
        if length > limit:
            return None, (413, {"error": "body larger than %d bytes" % limit}, None)
        return length, None

    @staticmethod
    def _read(req: Handler, length: int) -> Optional[bytes]:
        req.body_read = True
        try:
            data = req.rfile.read(length)
        except OSError:  # includes the socket timeout of a slow client
            return None
        return data if len(data) == length else None

    def callback(self, req: Handler, name: str) -> Tuple[int, Any, Optional[Dict[str, str]]]:
        auth = req.headers.get_all("Authorization") or []
        match = re.fullmatch(r"[Bb]earer +(\S+)", auth[0].strip()) if len(auth) == 1 else None
        if match is None or not TOKEN_RE.match(match.group(1)):
            return 401, {"error": "a Bearer token is required"}, {"WWW-Authenticate": 'Bearer realm="centra-pxe"'}
        token = match.group(1)
        length, refusal = self._body_length(req, MAX_BODY)
        if refusal is not None:
            return refusal
        body = self._read(req, length or 0)
        if body is None:
            return 400, {"error": "incomplete body"}, None
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            payload = None
        # The token is checked before the body is judged, so that a stranger learns
        # nothing about a node from the answers to bad bodies.
        valid_name = len(name) <= 253 and NODE_NAME_RE.match(name) is not None
        row = self.store.node_row(name) if valid_name else None
        if row is None or not token_matches(self.store.secret, name, row["generation"], token):
            if row is None:
                token_matches(self.store.secret, "-", 0, token)
            return 403, {"error": "forbidden"}, None
        if not isinstance(payload, dict):
            return 400, {"error": "the body must be a JSON object"}, None
        event = payload.get("event")
        if not isinstance(event, str) or event not in TRANSITIONS:
            return 400, {"error": "event must be one of: %s" % ", ".join(sorted(TRANSITIONS))}, None
        message = payload.get("message")
        if message is not None and (not isinstance(message, str) or len(message.encode("utf-8")) > MAX_MESSAGE
                                    or not message.isprintable()):
            return 400, {"error": "message must be printable text of at most %d bytes" % MAX_MESSAGE}, None
        try:
            # The store checks the token again inside its transaction: a rearm may have won the race.
            result = self.store.callback(name, token, event, message)
        except PermissionError:
            return 403, {"error": "forbidden"}, None
        except Conflict as exc:
            return 409, {"error": str(exc)}, None
        self.metrics.add("installs", event)
        if event == "installed":
            shown = self.store.show(name)
            if shown is not None and shown["install_duration_seconds"] is not None:
                self.metrics.observe_install(shown["install_duration_seconds"])
        return 200, result, None

    def views(self, req: Handler, path: str, query: str) -> Tuple[int, Any, Optional[Dict[str, str]]]:
        """The read-only views (docs/status.md): GET or HEAD, no query but an events limit."""
        if req.command not in ("GET", "HEAD"):
            return 405, {"error": "method not allowed"}, {"Allow": "GET, HEAD"}
        if len(query) > MAX_QUERY:
            return 400, {"error": "query too long"}, None
        limit = self.config["trace_events_per_node"] + self.config["events_per_node"]
        if query and path.endswith("/events"):
            match = re.fullmatch(r"limit=([0-9]{1,6})", query)
            if match is None or int(match.group(1)) < 1:
                return 400, {"error": "the only parameter is limit=<positive integer>"}, None
            limit = min(limit, int(match.group(1)))
        elif query and path.startswith("/api/"):
            return 400, {"error": "no parameters here"}, None
        # /status and /metrics ignore a query (a browser or a scraper may add one).
        if path == "/api/v1/discovered":
            return 200, {"discovered": self.store.discovered()}, None
        if path == "/metrics":
            kea_path = self.config.get("kea_control_socket")
            kea = kea_statistics(kea_path) if kea_path else None
            text = render_metrics(self.metrics.snapshot(), self.store.gauges(), kea, bool(kea_path))
            return 200, RawBody("text/plain; version=0.0.4; charset=utf-8", text.encode("utf-8")), None
        if path == "/status":
            page = render_status(self.store.show(), self.store.discovered(), self.config["status_refresh"], now(),
                                 self.server_name)
            return 200, RawBody("text/html; charset=utf-8", page.encode("utf-8"), {
                "Content-Security-Policy": STATUS_CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}), None
        key = urllib.parse.unquote(path[len("/api/v1/nodes/"):-len("/events")])
        name = self.store.find(key) if 0 < len(key) <= 253 and "/" not in key else None
        if name is None:
            return 404, {"error": "no such node"}, None
        return 200, {"node": name, "events": self.store.timeline(name, limit)}, None

    def _peer_verified(self, req: Handler, path: str, body: bytes) -> bool:
        timestamp = req.headers.get("X-Centra-Timestamp", "")
        signature = req.headers.get("X-Centra-Signature", "")
        if not re.fullmatch(r"[0-9]{1,12}(\.[0-9]{1,6})?", timestamp) or not re.fullmatch(r"[0-9a-f]{64}", signature):
            return False
        if abs(now() - float(timestamp)) > PEER_CLOCK_WINDOW:
            return False
        expected = peer_signature(self.store.secret, req.command, path, timestamp, body)
        return hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii"))

    def peer_event(self, req: Handler, path: str) -> Tuple[int, Any, Optional[Dict[str, str]]]:
        length, refusal = self._body_length(req, MAX_PEER_BODY)
        if refusal is not None:
            return refusal
        body = self._read(req, length or 0)
        if body is None:
            return 400, {"error": "incomplete body"}, None
        if not self._peer_verified(req, path, body):
            return 403, {"error": "forbidden"}, None
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return 400, {"error": "malformed JSON"}, None
        records = payload.get("records") if isinstance(payload, dict) else None
        if not isinstance(records, list):
            return 400, {"error": "records must be a list"}, None
        return 200, {"ok": True, "applied": self.store.merge(records, "peer-push")}, None

    def peer_state(self, req: Handler, path: str) -> Tuple[int, Any, Optional[Dict[str, str]]]:
        if not self._peer_verified(req, path, b""):
            return 403, {"error": "forbidden"}, None
        return 200, {"records": self.store.peer_records()}, None


def make_server(app: App, socket_path: str, mode: int = 0o666) -> PoolServer:
    handler = type("BoundHandler", (Handler,), {"app": app})
    return PoolServer(socket_path, handler, app.config["workers"], app.config["queue"], mode)


# -- commands -----------------------------------------------------------------------

def _open_store(args: argparse.Namespace) -> Store:
    return Store(args.state_dir, args.scripts_dir, load_config(args.config))


def _drop_to_state_owner(state_dir: str) -> None:
    """An admin command run as root (Ansible over SSH) acts as the service's user, so that
    every file it creates stays writable by the service."""
    if os.geteuid() != 0:
        return
    try:
        st = os.stat(state_dir)
    except FileNotFoundError:
        return
    if st.st_uid == 0:
        return
    os.setgroups([])
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)


def cmd_serve(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = Store(args.state_dir, args.scripts_dir, config)
    try:
        LOG.info("sync at start: %s", json.dumps(store.sync(args.plan), sort_keys=True))
    except LifecycleError as exc:
        LOG.error("sync at start failed, serving the recorded state: %s", exc)
    peers = PeerSync(store, config["peers"], config["peer_interval"], config["peer_timeout"]) if config["peers"] else None
    if peers is not None:
        store.on_change = peers.submit
        peers.start()
    metrics = Metrics()
    app = App(store, config, peers, metrics)
    server = make_server(app, args.socket, int(args.socket_mode, 8))
    trace = None
    if config["trace_socket"]:
        trace = TraceIngest(store, metrics, config)
        try:
            trace.start(config["trace_socket"], config["trace_group"])
        except OSError as exc:
            LOG.error("trace socket %s: %s: no boot trace", config["trace_socket"], exc)
            trace = None
    wake = threading.Event()
    hup = threading.Event()
    stop = threading.Event()

    def on_hup(signum: int, frame: Any) -> None:
        hup.set()
        wake.set()

    def on_term(signum: int, frame: Any) -> None:
        stop.set()
        wake.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    def maintenance() -> None:
        next_pull = 0.0
        next_prune = now() + 3600
        while not stop.is_set():
            if hup.is_set():
                hup.clear()
                try:
                    LOG.info("sync on SIGHUP: %s", json.dumps(store.sync(args.plan), sort_keys=True))
                except LifecycleError as exc:
                    LOG.error("sync on SIGHUP failed, nothing changed: %s", exc)
            if peers is not None and now() >= next_pull:
                peers.pull_all()
                next_pull = now() + config["peer_interval"]
            if now() >= next_prune:
                store.prune_events()
                store.prune_trace()
                next_prune = now() + 3600
            wake.wait(max(0.1, min(next_pull, next_prune) - now()) if peers is not None else max(0.1, next_prune - now()))
            wake.clear()

    thread = threading.Thread(target=maintenance, name="maintenance", daemon=True)
    thread.start()
    LOG.info("listening on %s", args.socket)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        stop.set()
        wake.set()
        if peers is not None:
            peers.stop()
        if trace is not None:
            trace.stop()
            with contextlib.suppress(OSError):
                os.unlink(config["trace_socket"])
        server.server_close()
        try:
            os.unlink(args.socket)
        except OSError:
            pass
        store.close()
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    store = _open_store(args)
    try:
        print(json.dumps(store.sync(args.plan), sort_keys=True))
    finally:
        store.close()
    return 0


def cmd_rearm(args: argparse.Namespace) -> int:
    if args.dry_run and not os.path.exists(os.path.join(args.state_dir, "lifecycle.db")):
        # A dry run creates nothing, not even an empty store.
        raise LifecycleError("no state in %s: the service has not run here yet" % args.state_dir)
    store = _open_store(args)
    try:
        print(json.dumps(store.rearm(args.nodes, dry_run=args.dry_run, generation=args.generation), sort_keys=True))
    finally:
        store.close()
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """Exit 0 when the config file is valid (Ansible's validate: before it is installed)."""
    if not os.path.exists(args.config):
        raise LifecycleError("no config file %s" % args.config)
    load_config(args.config)
    return 0


def cmd_check_plan(args: argparse.Namespace) -> int:
    """Exit 0 when the plan file is one sync would apply (Ansible's validate: before it is installed)."""
    digest, nodes = load_plan(args.plan)
    print(json.dumps({"plan_digest": digest, "nodes": len(nodes)}, sort_keys=True))
    return 0


def cmd_apply_plan(args: argparse.Namespace) -> int:
    """The plan read from stdin: checked, written to --plan if it differs (as root), then
    synced (as the owner of the state). One run of the program where Ansible would
    otherwise copy the plan (a stat and a write) and then run sync. With --check: only
    say whether the plan file would change."""
    content = sys.stdin.buffer.read().rstrip(b"\n") + b"\n"
    staged = None
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(os.path.abspath(args.plan)) or ".",
                                     prefix=".plan-", delete=False) as handle:
        handle.write(content)
        candidate = handle.name
    try:
        checked = load_plan(candidate)  # a bad plan changes nothing, not even the file
        try:
            with open(args.plan, "rb") as current:
                differs = current.read() != content
        except FileNotFoundError:
            differs = True
        if args.check:
            print(json.dumps({"changed": differs, "plan_written": False}, sort_keys=True))
            return 0
        if differs:
            os.chmod(candidate, 0o644)
            os.replace(candidate, args.plan)
            staged = args.plan
            _fsync_directory(os.path.dirname(os.path.abspath(args.plan)))
    finally:
        if staged is None:
            _unlink(candidate)
    _drop_to_state_owner(args.state_dir)
    store = _open_store(args)
    try:
        summary = store.sync(args.plan, checked)  # what is in args.plan now
    finally:
        store.close()
    summary["plan_written"] = differs
    summary["changed"] = bool(summary.get("changed")) or differs
    print(json.dumps(summary, sort_keys=True))
    return 0


def cmd_init_secret(args: argparse.Namespace) -> int:
    """Create the server secret if it is missing; prints whether it did, never the secret."""
    path = os.path.join(args.state_dir, "secret")
    existed = os.path.exists(path)
    load_or_create_secret(args.state_dir)
    print(json.dumps({"changed": not existed}))
    return 0


def cmd_install_secret(args: argparse.Namespace) -> int:
    """Install the secret given base64-encoded on stdin (an HA peer's); prints whether it changed."""
    try:
        secret = base64.b64decode(sys.stdin.buffer.read(8192).strip(), validate=True)
    except ValueError:
        raise LifecycleError("the secret on stdin is not base64") from None
    print(json.dumps({"changed": install_secret(args.state_dir, secret)}))
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    store = _open_store(args)
    try:
        print(json.dumps(store.forget(args.nodes, args.plan), sort_keys=True))
    finally:
        store.close()
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    store = _open_store(args)
    try:
        result = store.show(args.node)
        if result is None:
            raise LifecycleError("no node %r" % args.node)
        if args.node is not None:
            result["events"] = store.events(result["name"])
        print(json.dumps(result, sort_keys=True, indent=1))
    finally:
        store.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="centra-pxe-lifecycle", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    parser.add_argument("--plan", default=DEFAULT_PLAN)
    parser.add_argument("--scripts-dir", default=DEFAULT_SCRIPTS_DIR)
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve HTTP on a Unix socket (behind nginx)")
    serve.add_argument("--socket", required=True)
    serve.add_argument("--socket-mode", default="0666", help="octal mode of the socket (nginx connects to it)")
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("sync", help="reconcile the state with the plan, write the boot files").set_defaults(func=cmd_sync)
    rearm = sub.add_parser("rearm", help="reinstall nodes: new generation and token, install script served")
    rearm.add_argument("--dry-run", action="store_true", help="check the nodes and report, change nothing")
    rearm.add_argument("--generation", type=int, help="re-arm to this generation (nodes already there are left alone)")
    rearm.add_argument("nodes", nargs="+")
    rearm.set_defaults(func=cmd_rearm)
    forget = sub.add_parser("forget", help="drop the recorded state of nodes")
    forget.add_argument("nodes", nargs="+")
    forget.set_defaults(func=cmd_forget)
    show = sub.add_parser("show", help="print the state of every node, or of one (name or MAC), as JSON")
    show.add_argument("node", nargs="?")
    show.set_defaults(func=cmd_show)
    sub.add_parser("check-config", help="check the config file (--config), change nothing"
                   ).set_defaults(func=cmd_check_config, store=False)
    sub.add_parser("check-plan", help="check the plan file (--plan), change nothing"
                   ).set_defaults(func=cmd_check_plan, store=False)
    apply_plan = sub.add_parser("apply-plan", help="read the plan from stdin, write it to --plan if it differs, sync")
    apply_plan.add_argument("--check", action="store_true", help="only say whether the plan file would change")
    apply_plan.set_defaults(func=cmd_apply_plan, store=False)
    sub.add_parser("init-secret", help="create the server secret if it is missing (never prints it)"
                   ).set_defaults(func=cmd_init_secret)
    sub.add_parser("install-secret", help="install the secret read base64-encoded from stdin (HA peers share one)"
                   ).set_defaults(func=cmd_install_secret)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(threadName)s: %(message)s", stream=sys.stderr)
    os.umask(0o022)
    # The checks read files only root may read (Ansible's temporary copies): they keep
    # their user. The other admin commands act as the owner of the state.
    if args.command != "serve" and getattr(args, "store", True):
        _drop_to_state_owner(args.state_dir)
    try:
        return args.func(args)
    except LifecycleError as exc:
        print("centra-pxe-lifecycle: %s" % exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
