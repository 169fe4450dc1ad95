# SPDX-License-Identifier: GPL-3.0-or-later
"""centra.pxe health service: /healthz answered from the live state of the PXE server.

Standard library only, run by /usr/bin/python3 under its own user (centra.pxe.pxe_health).

    centra_pxe_health.py --config /etc/centra-pxe/health.json serve --socket PATH
    centra_pxe_health.py --config /etc/centra-pxe/health.json check   # once, to stdout

What it checks (docs/operating.md, "Monitoring"):
  dhcp       the DHCP unit runs; Kea: config-get over its control socket carries the plan
             digest; ISC dhcpd: dhcpd.conf carries the digest and dhcpd started after the
             file was last written
  tftp       tftpd-hpa runs, started after /etc/default/tftpd-hpa was written, and the
             loaders of the plan are in its root
  http       nginx: it forwarded this request; the boot tree it serves (the plan file the
             converge writes last) carries the digest
  lifecycle  the lifecycle unit runs and its socket answers /api/v1/status with the digest
  firewall   the nftables table exists (nft needs CAP_NET_ADMIN, the unit's only capability)
  disk       free space where state and logs live

The expected digest is config_version of the plan file (the static document the
converge writes); its fields (config_version, profiles, nodes, assets) are kept in the
answer. status "ok" and HTTP 200 when every component is ok, else status "failing",
"failing": [names] and 503. One check at a time, its result reused for cache_seconds,
so a flood of requests costs the daemons one check per period.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import re
import socket
import socketserver
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

COMPONENTS = ("dhcp", "tftp", "http", "lifecycle", "firewall", "disk")
UNIT_PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "ExecMainStartTimestampMonotonic")
ISC_DIGEST = re.compile(r"\bPlan ([0-9a-f]{64})\b")


class ConfigError(Exception):
    pass


# --- configuration --------------------------------------------------------------------

def load_config(path: str) -> Dict[str, Any]:
    """The checker's configuration (written by the role); ConfigError when unusable."""
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigError("cannot read %s: %s" % (path, exc)) from exc
    if not isinstance(config, dict):
        raise ConfigError("%s: not a JSON object" % path)
    needed = {"plan_file": str, "dhcp": dict, "tftp": dict, "lifecycle": dict, "disk": list}
    for key, kind in needed.items():
        if not isinstance(config.get(key), kind):
            raise ConfigError("%s: %s must be a %s" % (path, key, kind.__name__))
    if config["dhcp"].get("backend") not in ("kea", "isc", "proxy"):
        raise ConfigError("%s: dhcp.backend must be kea, isc or proxy" % path)
    if not all(isinstance(p, str) and p.startswith("/") for p in config["disk"]):
        raise ConfigError("%s: disk must list absolute paths" % path)
    for key, default in (("cache_seconds", 2.0), ("timeout", 2.0), ("min_free_mb", 0), ("min_free_percent", 0)):
        value = config.setdefault(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
                or (value == 0 and key in ("cache_seconds", "timeout")):
            raise ConfigError("%s: %s must be a %s number" % (path, key, "positive" if default else "non-negative"))
    return config


# --- probes (each one reads one thing from the host; replaced in unit tests) ----------

def read_units(names: List[str], timeout: float) -> Dict[str, Dict[str, str]]:
    """systemctl show for the units named (no privilege needed: D-Bus answers anyone)."""
    command = ["systemctl", "show", "--no-pager", "--property=" + ",".join(UNIT_PROPERTIES)]
    result = subprocess.run(command + [n if "." in n else n + ".service" for n in names],
                            capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise OSError("systemctl show: %s" % (result.stderr.strip() or "exit %d" % result.returncode))
    return parse_units(result.stdout)


def parse_units(text: str) -> Dict[str, Dict[str, str]]:
    """systemctl show output (blocks separated by blank lines) -> {unit without .service: props}."""
    units: Dict[str, Dict[str, str]] = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" in props:
            units[re.sub(r"\.service$", "", props["Id"])] = props
    return units


def unix_request(path: str, payload: bytes, timeout: float, limit: int = 64 << 20) -> bytes:
    """Send payload on a Unix stream socket, read until the peer closes (or limit bytes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(payload)
        chunks = []
        size = 0
        while size < limit:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            # Kea 2.2 keeps the connection open after its answer: stop at a whole JSON document.
            if chunk.rstrip().endswith(b"}"):
                try:
                    json.loads(b"".join(chunks))
                    break
                except ValueError:
                    continue
        return b"".join(chunks)


def kea_plan_digest(path: str, timeout: float, hosts_plan_file: str = "") -> str:
    """The plan digest Kea serves: in the user-context of the Dhcp4 configuration it runs,
    or, when that configuration reads its reservations from the host database, the digest
    centra.pxe.kea_host_database wrote to hosts_plan_file after its commit (Kea reads the
    database on every packet, so the committed rows are what it serves)."""
    reply = json.loads(unix_request(path, json.dumps({"command": "config-get"}).encode(), timeout))
    if reply.get("result") != 0:
        raise ValueError("config-get failed: %.200s" % reply.get("text", reply))
    try:
        context = reply["arguments"]["Dhcp4"]["user-context"]["centra.pxe"]
        if context.get("hosts-database"):
            if not hosts_plan_file:
                raise ValueError("Kea reads the host database, and no plan file of it is configured")
            try:
                with open(hosts_plan_file, encoding="utf-8") as handle:
                    return handle.read(256).strip()
            except OSError as exc:
                raise ValueError("the host database's plan file: %s" % exc) from None
        return str(context["plan"])
    except (KeyError, TypeError, AttributeError):
        raise ValueError("Kea runs a configuration without a centra.pxe plan digest") from None


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def lifecycle_plan_digest(path: str, timeout: float) -> str:
    """plan_digest of the lifecycle service's /api/v1/status, asked on its socket."""
    connection = _UnixHTTPConnection(path, timeout)
    try:
        connection.request("GET", "/api/v1/status", headers={"Host": "localhost"})
        response = connection.getresponse()
        body = response.read(1 << 20)
    finally:
        connection.close()
    if response.status != 200:
        raise ValueError("/api/v1/status answered %d" % response.status)
    return str(json.loads(body).get("plan_digest", ""))


def nft_table_present(family: str, name: str, timeout: float) -> bool:
    result = subprocess.run(["nft", "list", "table", family, name], capture_output=True, text=True,
                            timeout=timeout, check=False)
    if result.returncode == 0:
        return True
    if "No such file or directory" in result.stderr or "does not exist" in result.stderr:
        return False
    raise OSError("nft: %s" % (result.stderr.strip() or "exit %d" % result.returncode))


class Host:
    """What the checker reads from the host; the unit tests give a fake one."""

    def units(self, names: List[str], timeout: float) -> Dict[str, Dict[str, str]]:
        return read_units(names, timeout)

    def kea_digest(self, path: str, timeout: float, hosts_plan_file: str = "") -> str:
        return kea_plan_digest(path, timeout, hosts_plan_file)

    def lifecycle_digest(self, path: str, timeout: float) -> str:
        return lifecycle_plan_digest(path, timeout)

    def nft_table(self, family: str, name: str, timeout: float) -> bool:
        return nft_table_present(family, name, timeout)

    def read_text(self, path: str, limit: int = 1 << 20) -> str:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(limit)

    def mtime(self, path: str) -> float:
        return os.stat(path).st_mtime

    def exists(self, path: str) -> bool:
        return os.path.isfile(path)

    def statvfs(self, path: str) -> os.statvfs_result:
        return os.statvfs(path)

    def monotonic_offset(self) -> float:
        """Wall clock minus CLOCK_MONOTONIC (the clock of systemd's *Monotonic stamps)."""
        return time.time() - time.monotonic()


# --- the checks -----------------------------------------------------------------------

def _unit_detail(name: str, units: Mapping[str, Mapping[str, str]]) -> Tuple[bool, Dict[str, Any]]:
    props = units.get(name)
    if props is None:
        return False, {"unit": name, "state": "unknown", "error": "systemd did not report it"}
    if props.get("LoadState") == "not-found":
        return False, {"unit": name, "state": "not installed"}
    state = "%s (%s)" % (props.get("ActiveState", "?"), props.get("SubState", "?"))
    running = props.get("ActiveState") == "active" and props.get("SubState") == "running"
    return running, {"unit": name, "state": state}


def _started_after(host: Host, props: Mapping[str, str], path: str) -> Optional[bool]:
    """Whether the unit's main process started after path was last written (None: unknown)."""
    try:
        started = int(props.get("ExecMainStartTimestampMonotonic", "0")) / 1e6
        written = host.mtime(path) - host.monotonic_offset()
    except (OSError, ValueError):
        return None
    if started <= 0:
        return None
    # A second of slack: the stamps come from two clocks read at different moments.
    return started + 1.0 >= written


def check_dhcp(config: Mapping[str, Any], host: Host, units: Mapping[str, Mapping[str, str]],
               expected: str) -> Dict[str, Any]:
    dhcp = config["dhcp"]
    ok, detail = _unit_detail(dhcp["unit"], units)
    detail["backend"] = dhcp["backend"]
    if not ok:
        return dict(detail, ok=False)
    try:
        if dhcp["backend"] == "kea":
            try:
                detail["plan"] = host.kea_digest(dhcp["kea_socket"], config["timeout"],
                                                 dhcp.get("kea_hosts_plan_file", ""))
            except OSError as exc:
                raise OSError("Kea's control socket %s: %s" % (dhcp["kea_socket"], exc)) from exc
        else:
            # dhcpd and dnsmasq (proxy) have no control channel: the digest in the first
            # lines of the file they read, and a start after its last write.
            match = ISC_DIGEST.search(host.read_text(dhcp["config_file"], 4096))
            detail["plan"] = match.group(1) if match else ""
            if _started_after(host, units[dhcp["unit"]], dhcp["config_file"]) is False:
                return dict(detail, ok=False, error="%s changed after %s started: restart pending"
                            % (dhcp["config_file"], dhcp["unit"]))
    except (OSError, ValueError, KeyError) as exc:
        return dict(detail, ok=False, error=str(exc) or type(exc).__name__)
    if detail["plan"] != expected:
        return dict(detail, ok=False, error="serves plan %s, not %s" % (detail["plan"][:12] or "none", expected[:12]))
    return dict(detail, ok=True)


def check_tftp(config: Mapping[str, Any], host: Host, units: Mapping[str, Mapping[str, str]]) -> Dict[str, Any]:
    tftp = config["tftp"]
    ok, detail = _unit_detail(tftp["unit"], units)
    if not ok:
        return dict(detail, ok=False)
    if tftp.get("config_file") and _started_after(host, units[tftp["unit"]], tftp["config_file"]) is False:
        return dict(detail, ok=False, error="%s changed after tftpd started: restart pending" % tftp["config_file"])
    missing = [f for f in tftp.get("files", []) if not host.exists(os.path.join(tftp["root"], f))]
    if missing:
        return dict(detail, ok=False, error="missing in %s: %s" % (tftp["root"], ", ".join(sorted(missing))))
    return dict(detail, ok=True, files=len(tftp.get("files", [])))


def check_lifecycle(config: Mapping[str, Any], host: Host, units: Mapping[str, Mapping[str, str]],
                    expected: str) -> Dict[str, Any]:
    lifecycle = config["lifecycle"]
    ok, detail = _unit_detail(lifecycle["unit"], units)
    if not ok:
        return dict(detail, ok=False)
    try:
        detail["plan"] = host.lifecycle_digest(lifecycle["socket"], config["timeout"])
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return dict(detail, ok=False, error="%s: %s" % (lifecycle["socket"], exc or type(exc).__name__))
    if detail["plan"] != expected:
        return dict(detail, ok=False, error="serves plan %s, not %s" % (detail["plan"][:12] or "none", expected[:12]))
    return dict(detail, ok=True)


def check_firewall(config: Mapping[str, Any], host: Host) -> Dict[str, Any]:
    firewall = config.get("firewall")
    if not firewall:
        return {"ok": True, "table": None, "detail": "the centra.pxe firewall is disabled (pxe_firewall_enabled)"}
    table = "%s %s" % (firewall["family"], firewall["table"])
    try:
        present = host.nft_table(firewall["family"], firewall["table"], config["timeout"])
    except (OSError, subprocess.SubprocessError) as exc:
        return {"ok": False, "table": table, "error": str(exc)}
    if not present:
        return {"ok": False, "table": table, "error": "table %s is missing: DHCP, TFTP and HTTP are unfiltered" % table}
    return {"ok": True, "table": table}


def check_disk(config: Mapping[str, Any], host: Host) -> Dict[str, Any]:
    paths: Dict[str, Any] = {}
    low = []
    for path in config["disk"]:
        try:
            stat = host.statvfs(path)
        except OSError as exc:
            paths[path] = {"ok": False, "error": str(exc)}
            low.append(path)
            continue
        free = stat.f_bavail * stat.f_frsize
        total = stat.f_blocks * stat.f_frsize
        percent = 100.0 * free / total if total else 0.0
        ok = free >= config["min_free_mb"] * (1 << 20) and percent >= config["min_free_percent"]
        paths[path] = {"ok": ok, "free_mb": free >> 20, "free_percent": round(percent, 1)}
        if not ok:
            low.append(path)
    result: Dict[str, Any] = {"ok": not low, "paths": paths,
                              "min_free_mb": config["min_free_mb"], "min_free_percent": config["min_free_percent"]}
    if low:
        result["error"] = "low on space: %s" % ", ".join(low)
    return result


def check(config: Mapping[str, Any], host: Host) -> Dict[str, Any]:
    """The /healthz document: the plan file's fields, components, status, failing."""
    try:
        document = json.loads(host.read_text(config["plan_file"]))
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        document = {"config_version": "", "plan_error": "%s: %s" % (config["plan_file"], exc)}
    expected = str(document.get("config_version", ""))

    names = [config["dhcp"]["unit"], config["tftp"]["unit"], config["lifecycle"]["unit"]]
    try:
        units = host.units(names, config["timeout"])
    except (OSError, subprocess.SubprocessError) as exc:
        units = {}
        unit_error = str(exc)
    else:
        unit_error = ""

    components = {
        "dhcp": check_dhcp(config, host, units, expected),
        "tftp": check_tftp(config, host, units),
        # This answer went through nginx; the tree it serves is the one the plan file is in.
        "http": {"ok": bool(expected), "plan": expected} if expected else
                {"ok": False, "error": document.get("plan_error", "the plan file has no config_version")},
        "lifecycle": check_lifecycle(config, host, units, expected),
        "firewall": check_firewall(config, host),
        "disk": check_disk(config, host),
    }
    if unit_error:
        for name in ("dhcp", "tftp", "lifecycle"):
            components[name]["error"] = unit_error
    failing = [name for name in COMPONENTS if not components[name]["ok"]]
    document.pop("plan_error", None)
    document.update({"status": "failing" if failing else "ok", "failing": failing, "components": components,
                     "checked_at": int(time.time())})
    return document


class CachedChecker:
    """One check at a time; its result serves every request for cache_seconds."""

    def __init__(self, config: Mapping[str, Any], host: Host,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._host = host
        self._clock = clock
        self._lock = threading.Lock()
        self._result: Optional[Dict[str, Any]] = None
        self._at = 0.0
        self.checks = 0

    def get(self) -> Dict[str, Any]:
        with self._lock:
            now = self._clock()
            if self._result is None or now - self._at >= self._config["cache_seconds"]:
                self._result = check(self._config, self._host)
                # Stamped after the check: a slow check is not reused at once.
                self._at = self._clock()
                self.checks += 1
            return self._result


# --- the HTTP side --------------------------------------------------------------------

class _LimitedReader:
    """rfile that refuses requests whose line and headers exceed max_bytes."""

    def __init__(self, raw: Any, max_bytes: int) -> None:
        self._raw = raw
        self._left = max_bytes

    def readline(self, size: int = -1) -> bytes:
        if self._left <= 0:
            raise ValueError("request header too large")
        line = self._raw.readline(self._left if size < 0 else min(size, self._left))
        self._left -= len(line)
        if self._left <= 0 and not line.endswith(b"\n"):
            raise ValueError("request header too large")
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "centra-pxe-health"
    sys_version = ""
    protocol_version = "HTTP/1.0"
    checker: CachedChecker
    max_header_bytes = 8192

    def setup(self) -> None:
        super().setup()
        # What send_error needs when the request line itself was refused.
        self.command, self.requestline, self.request_version = None, "", "HTTP/1.0"
        self.rfile = _LimitedReader(self.rfile, self.max_header_bytes)  # type: ignore[assignment]

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except ValueError:
            self.close_connection = True
            try:
                self.send_error(431)
            except OSError:
                pass

    def address_string(self) -> str:
        return "unix"  # AF_UNIX peers have no address

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # nginx logs the requests; errors go to stderr (the journal) below

    def _answer(self, body: bool) -> None:
        if self.path.split("?", 1)[0] != "/healthz":
            self.send_error(404)
            return
        try:
            result = self.checker.get()
        except Exception as exc:  # the service must answer, whatever breaks in a check
            print("centra-pxe-health: check failed: %r" % exc, file=sys.stderr, flush=True)
            result = {"status": "failing", "failing": ["health"], "components": {},
                      "error": "the health check itself failed: %s" % type(exc).__name__}
        data = (json.dumps(result, sort_keys=True, indent=1) + "\n").encode()
        self.send_response(200 if result.get("status") == "ok" else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(False)


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, path: str, handler: type, max_threads: int, timeout: float) -> None:
        self._slots = threading.BoundedSemaphore(max_threads)
        self._timeout = timeout
        super().__init__(path, handler)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        # More than max_threads at once: close at once rather than queue threads.
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        request.settimeout(self._timeout)
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve(config: Mapping[str, Any], path: str, host: Host) -> None:
    if os.path.exists(path):
        os.unlink(path)  # a stale socket of an earlier run
    handler = type("BoundHandler", (Handler,), {"checker": CachedChecker(config, host),
                                                "max_header_bytes": int(config.get("max_header_bytes", 8192))})
    server = UnixServer(path, handler, int(config.get("max_connections", 16)), float(config.get("client_timeout", 5)))
    # nginx (www-data) connects; the answer holds nothing secret.
    os.chmod(path, 0o666)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", required=True)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="answer GET /healthz on a Unix socket")
    serve_parser.add_argument("--socket", required=True)
    commands.add_parser("check", help="check once, print the document, exit 0 when ok, 1 when not")
    commands.add_parser("check-config", help="check the configuration file only")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print("centra-pxe-health: %s" % exc, file=sys.stderr)
        return 2
    if args.command == "check-config":
        return 0
    if args.command == "check":
        result = check(config, Host())
        print(json.dumps(result, sort_keys=True, indent=1))
        return 0 if result["status"] == "ok" else 1
    serve(config, args.socket, Host())
    return 0


if __name__ == "__main__":
    sys.exit(main())
