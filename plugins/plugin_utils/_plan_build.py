# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE to the centra.pxe collection: controller-side code of its plugins, never
# shipped to a managed host. Not an API: it may change in any release.
"""The inventory model: subnets, profiles and nodes, checked and built in one pass
into the boot plan (module_utils/_plan.py describes it) that every role renders from.

Validation collects every problem before giving up, each naming where (host,
profile or subnet) and the field, so one run of validate.yml lists them all.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from collections.abc import Mapping, Sequence
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import LOADERS
from ansible_collections.centra.pxe.plugins.module_utils._mac import MacError, parse_mac
from ansible_collections.centra.pxe.plugins.module_utils._plan import (
    ARCHES, BOOT_MODES, DEFAULT_ARCH, EXTRA_ARCHES, PLAN_SCHEMA, plan_digest, profile_assets)
from ansible_collections.centra.pxe.plugins.module_utils._render_preseed import INSTALLERS, installer_assets, preseed_problem
from ansible_collections.centra.pxe.plugins.plugin_utils._dhcp_options import (
    V4,
    V6,
    OptionTable,
    check_options,
    merge_options,
)
from ansible_collections.centra.pxe.plugins.plugin_utils._assets import file_sha256
from ansible_collections.centra.pxe.plugins.plugin_utils._ha import ha_relationships
from ansible_collections.centra.pxe.plugins.plugin_utils._plan6 import (
    Subnet6,
    check_subnets6,
    is_ipv6_cidr,
    node6,
    server_problems,
    subnet6,
)
from ansible_collections.centra.pxe.plugins.plugin_utils._render_dnsmasq import proxy_problems
from ansible_collections.centra.pxe.plugins.plugin_utils._shared_host_db import shared_host_databases

NODE_VARS = ("pxe_mac", "pxe_ip", "pxe_boot", "pxe_dhcp_options", "pxe_ip6", "pxe_duid", "pxe_loader",
             "pxe_dhcp6_options", "pxe_arch", "pxe_preseed")
# A node's DHCP options: those its groups set (the group key in the node's entry, as the
# groups resolve the variable), then its own, option by option (the node wins).
# Variable -> (the group key, the plan key, the option table).
OPTION_VARS: Dict[str, Tuple[str, str, OptionTable]] = {
    "pxe_dhcp_options": ("group_dhcp_options", "options", V4),
    "pxe_dhcp6_options": ("group_dhcp6_options", "options6", V6),
}
# Other pxe_* variables a group holding nodes may carry: the contract's and the roles'.
SHARED_VARS = ("pxe_subnets", "pxe_profiles", "pxe_interface", "pxe_dhcp_backend", "pxe_secure_boot_keys")
# One per role with variables (tests/unit/roles/test_argument_specs.py holds them together).
ROLE_VAR_PREFIXES = ("pxe_server_", "pxe_dhcp_", "pxe_tftp_", "pxe_http_", "pxe_ipxe_", "pxe_firewall_",
                     "pxe_lifecycle_", "pxe_health_")
SUBNET_FIELDS = ("cidr", "pool", "gateway", "dns", "id", "options")
PROFILE_FIELDS = ("label", "kernel", "initrd", "cmdline", "services") + EXTRA_ARCHES + ("installer",)
INSTALLER_FIELDS = ("type", "arch", "preseed")
ASSET_FIELDS = ("src", "url", "checksum")
PROFILE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # an Ansible group name, and safe in paths
HOSTNAME_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")
SHA256_RE = re.compile(r"^sha256:[0-9a-fA-F]{64}$")
RESERVED_CMDLINE_KEYS = ("centra.profile=", "centra.services=", "centra.node=", "centra.callback=", "centra.token=")


@dataclass(frozen=True)
class Problem:
    where: str  # "host node01", "profile worker", "subnet 192.0.2.0/24", "pxe_subnets[2]"
    field: str
    message: str

    def __str__(self) -> str:
        return "%s: %s: %s" % (self.where, self.field, self.message)


class PlanError(ValueError):
    """The inventory has problems; .problems lists every one of them."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        lines = ["%d problem(s) in the PXE inventory:" % len(self.problems)]
        lines.extend("  - %s" % p for p in self.problems)
        super().__init__("\n".join(lines))


@dataclass
class _Subnet:
    network: ipaddress.IPv4Network
    pool: Optional[Tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]]
    entry: Dict[str, Any]


class _Builder:
    def __init__(self, base_dir: Optional[str], reserved_ips: Mapping[str, str]):
        self.base_dir = base_dir
        self.reserved_ips = reserved_ips  # address -> who holds it (e.g. the PXE servers)
        self.problems: List[Problem] = []
        self._group_options: Dict[int, Tuple[Any, List[Dict[str, Any]]]] = {}
        self.subnets6: List[Subnet6] = []  # the IPv6 prefixes of pxe_subnets (_plan6.py)

    def problem(self, where: str, field: str, message: str) -> None:
        self.problems.append(Problem(where, field, message))

    # -- subnets -----------------------------------------------------------------
    def subnets(self, raw: Any) -> List[_Subnet]:
        if raw is None:
            self.problem("inventory", "pxe_subnets", "is not set: list at least one subnet")
            return []
        if not isinstance(raw, list) or not raw:
            self.problem("inventory", "pxe_subnets", "must be a non-empty list of subnets, got %r" % (raw,))
            return []
        out: List[_Subnet] = []
        for index, item in enumerate(raw):
            if isinstance(item, Mapping) and is_ipv6_cidr(item.get("cidr")):
                v6 = subnet6(index, item, self.reserved_ips, self.problem)
                if v6 is not None:
                    self.subnets6.append(v6)
                continue
            subnet = self._subnet(index, item)
            if subnet is not None:
                out.append(subnet)
        check_subnets6(self.subnets6, self.problem)
        for i, a in enumerate(out):
            for b in out[i + 1:]:
                if a.network.overlaps(b.network):
                    self.problem("subnet %s" % b.network, "cidr", "overlaps subnet %s" % a.network)
        ids: Dict[int, str] = {}
        for s in out:
            sid = s.entry["id"]
            if sid in ids:
                self.problem("subnet %s" % s.network, "id", "%d is also the id of subnet %s" % (sid, ids[sid]))
            ids[sid] = str(s.network)
        return out

    def _subnet(self, index: int, item: Any) -> Optional[_Subnet]:
        where = "pxe_subnets[%d]" % index
        if not isinstance(item, Mapping):
            self.problem(where, "cidr", "the entry must be a mapping such as {cidr: 192.0.2.0/24}, got %r" % (item,))
            return None
        cidr = item.get("cidr")
        try:
            network = ipaddress.IPv4Network(str(cidr), strict=True) if cidr is not None else None
        except ValueError as exc:
            self.problem(where, "cidr", "%r is not an IPv4 network (%s)" % (cidr, exc))
            return None
        if network is None:
            self.problem(where, "cidr", "is missing")
            return None
        where = "subnet %s" % network
        for key in item:
            if key not in SUBNET_FIELDS:
                self.problem(where, str(key), "unknown field (known: %s)" % ", ".join(SUBNET_FIELDS))
        if network.prefixlen > 30:
            self.problem(where, "cidr", "a /%d has no room for PXE clients" % network.prefixlen)
        pool = self._pool(where, network, item.get("pool"))
        gateway = self._address_in(where, "gateway", network, item.get("gateway"))
        dns_raw = item.get("dns", [])
        if isinstance(dns_raw, str):
            dns_raw = [dns_raw]
        dns: List[str] = []
        if not isinstance(dns_raw, list):
            self.problem(where, "dns", "must be a list of IPv4 addresses, got %r" % (dns_raw,))
        else:
            for value in dns_raw:
                try:
                    dns.append(str(ipaddress.IPv4Address(str(value))))
                except ValueError:
                    self.problem(where, "dns", "%r is not an IPv4 address" % (value,))
        if pool and gateway and pool[0] <= ipaddress.IPv4Address(gateway) <= pool[1]:
            self.problem(where, "gateway", "%s lies inside the pool %s-%s: DHCP would lease the router's address"
                         % (gateway, pool[0], pool[1]))
        for address, holder in sorted(self.reserved_ips.items()):
            try:
                reserved = ipaddress.IPv4Address(address)
            except ValueError:
                continue
            if pool and pool[0] <= reserved <= pool[1]:
                self.problem(where, "pool", "%s-%s contains %s, the address of %s" % (pool[0], pool[1], address, holder))
        sid = item.get("id", int(network.network_address))
        if isinstance(sid, bool) or not isinstance(sid, int) or not 0 < sid < 2 ** 32 - 1:
            self.problem(where, "id", "must be a whole number from 1 to 4294967294, got %r" % (sid,))
            sid = 0
        entry = {
            "id": sid,
            "cidr": str(network),
            "network": str(network.network_address),
            "prefix": network.prefixlen,
            "netmask": str(network.netmask),
            "broadcast": str(network.broadcast_address),
            "pool": {"start": str(pool[0]), "end": str(pool[1])} if pool else None,
            "gateway": gateway,
            "dns": dns,
        }
        options = check_options(item.get("options"), "options", lambda f, m: self.problem(where, f, m))
        if options:  # only when set: the plans (and their digests) of inventories without any stay as they were
            entry["options"] = options
        return _Subnet(network, pool, entry)

    def _address_in(self, where: str, field: str, network: ipaddress.IPv4Network, value: Any) -> Optional[str]:
        if value is None:
            return None
        try:
            address = ipaddress.IPv4Address(str(value))
        except ValueError:
            self.problem(where, field, "%r is not an IPv4 address" % (value,))
            return None
        if address not in network:
            self.problem(where, field, "%s is outside %s" % (address, network))
        elif address in (network.network_address, network.broadcast_address):
            self.problem(where, field, "%s is the network or broadcast address of %s" % (address, network))
        return str(address)

    def _pool(self, where: str, network: ipaddress.IPv4Network, raw: Any):
        if raw is None:
            return None
        parts = str(raw).replace(" ", "").split("-")
        if len(parts) != 2:
            self.problem(where, "pool", "%r is not a range 'first-last'" % (raw,))
            return None
        try:
            start, end = (ipaddress.IPv4Address(p) for p in parts)
        except ValueError:
            self.problem(where, "pool", "%r is not a range of IPv4 addresses" % (raw,))
            return None
        bad = False
        for address in (start, end):
            if address not in network:
                self.problem(where, "pool", "%s is outside %s" % (address, network))
                bad = True
            elif address in (network.network_address, network.broadcast_address):
                self.problem(where, "pool", "%s is the network or broadcast address" % address)
                bad = True
        if start > end:
            self.problem(where, "pool", "%s comes after %s" % (start, end))
            bad = True
        return None if bad else (start, end)

    # -- profiles ----------------------------------------------------------------
    def profiles(self, raw: Any) -> Dict[str, Dict[str, Any]]:
        if not isinstance(raw, Mapping) or not raw:
            self.problem("inventory", "pxe_profiles", "must be a non-empty mapping of profile (group) names, got %r" % (raw,))
            return {}
        out = {}
        for name in sorted(raw, key=str):
            profile = self._profile(str(name), raw[name])
            if profile is not None:
                out[str(name)] = profile
        return out

    def _profile(self, name: str, item: Any) -> Optional[Dict[str, Any]]:
        where = "profile %s" % name
        if not PROFILE_NAME_RE.match(name):
            self.problem(where, "name", "must be a valid group name (letters, digits, underscores)")
        if item is None:
            item = {}  # "worker:" with nothing under it: kernel and initrd are reported missing
        if not isinstance(item, Mapping):
            self.problem(where, "kernel", "the profile must be a mapping with kernel and initrd, got %r" % (item,))
            return None
        for key in item:
            if key not in PROFILE_FIELDS:
                self.problem(where, str(key), "unknown field (known: %s)" % ", ".join(PROFILE_FIELDS))
        installer = self._installer(where, item)
        if installer is None and item.get("installer") is not None:
            kernel = initrd = None  # the installer's problem is reported; a missing kernel would only repeat it
        elif installer is None:
            kernel = self._asset(where, "kernel", name, item.get("kernel"))
            initrd = self._asset(where, "initrd", name, item.get("initrd"))
        else:
            kernel, initrd = installer_assets(name, installer)
        # Other architectures' assets beside the amd64 ones: {kernel, initrd} under the arch's key.
        # An installer profile has none: its installer is wired for one architecture (installer.arch).
        extra = {}
        for arch in EXTRA_ARCHES:
            raw = item.get(arch)
            if raw is None:
                continue
            if item.get("installer") is not None:
                self.problem(where, arch, "must not be given with installer: an installer profile boots its "
                             "installer's own kernel and initrd, for installer.arch only; give the %s machines a "
                             "profile of their own" % arch)
                continue
            if not isinstance(raw, Mapping):
                self.problem(where, arch, "must be a mapping with kernel and initrd, got %r" % (raw,))
                continue
            for key in raw:
                if key not in ("kernel", "initrd"):
                    self.problem(where, "%s.%s" % (arch, key), "unknown field (known: kernel, initrd)")
            extra[arch] = {field: self._asset(where, field, name, raw.get(field), arch) for field in ("kernel", "initrd")}
        cmdline = item.get("cmdline", "")
        if not isinstance(cmdline, str):
            self.problem(where, "cmdline", "must be a string, got %r" % (cmdline,))
            cmdline = ""
        for key in RESERVED_CMDLINE_KEYS:
            if key in cmdline:
                self.problem(where, "cmdline", "must not set %s: the collection adds it (from the group name, or for the "
                             "node lifecycle)" % key)
        if any(c in cmdline for c in "\n\r"):
            self.problem(where, "cmdline", "must be one line")
        services = item.get("services", [])
        if not isinstance(services, list) or not all(isinstance(s, str) and re.match(r"^[A-Za-z0-9_.-]+$", s) for s in services):
            self.problem(where, "services", "must be a list of service names, got %r" % (services,))
            services = []
        label = item.get("label", name)
        if not isinstance(label, str) or any(c in label for c in "\n\r"):
            self.problem(where, "label", "must be a one-line string")
            label = name
        words = [cmdline.strip(), "centra.profile=%s" % name]
        if services:
            words.append("centra.services=%s" % ",".join(services))
        out = {
            "name": name,
            "label": label,
            "cmdline": " ".join(w for w in words if w),
            "services": list(services),
            "kernel": kernel,
            "initrd": initrd,
            **extra,
        }
        if installer is not None:  # only when set: the plans (and digests) of other inventories stay as they were
            out["installer"] = installer
        return out

    def _installer(self, where: str, item: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """installer: debian, or {type: debian, arch: amd64, preseed: [lines]}: the kernel and
        initrd come from the installer's package on the PXE server (docs/debian-installer.md)."""
        raw = item.get("installer")
        if raw is None:
            return None
        if isinstance(raw, str):
            raw = {"type": raw}
        if not isinstance(raw, Mapping):
            self.problem(where, "installer", "must be a type (%s) or {type: ..., arch: ..., preseed: [lines]}, got %r"
                         % (", ".join(INSTALLERS), raw))
            return None
        for key in raw:
            if key not in INSTALLER_FIELDS:
                self.problem(where, "installer.%s" % key, "unknown field (known: %s)" % ", ".join(INSTALLER_FIELDS))
        kind, arch = raw.get("type"), raw.get("arch", "amd64")
        if kind not in INSTALLERS:
            self.problem(where, "installer.type", "%r is not one of %s" % (kind, ", ".join(INSTALLERS)))
            return None
        if arch not in INSTALLERS[kind]:
            self.problem(where, "installer.arch", "%r is not one of %s (the architectures of %s's installer wired so "
                         "far)" % (arch, ", ".join(INSTALLERS[kind]), kind))
            return None
        for field in ("kernel", "initrd"):
            if field in item:
                self.problem(where, field, "must not be given with installer: the kernel and initrd come from the "
                             "installer's package %s" % INSTALLERS[kind][arch]["package"])
        lines = self._preseed_lines(where, "installer.preseed", raw.get("preseed", []))
        return {"type": kind, "arch": arch, "preseed": lines}

    def _preseed_lines(self, where: str, field: str, raw: Any) -> List[str]:
        if not isinstance(raw, list):
            self.problem(where, field, "must be a list of preseed lines (owner question type value), got %r" % (raw,))
            return []
        lines = []
        for index, line in enumerate(raw):
            message = preseed_problem(line)
            if message:
                self.problem(where, "%s[%d]" % (field, index), message)
            else:
                lines.append(line.strip())
        return lines

    def _asset(self, where: str, field: str, profile: str, raw: Any,
               arch: str = DEFAULT_ARCH) -> Optional[Dict[str, Any]]:
        # Problems name the field as written: kernel.src, or arm64.kernel.src.
        field_name = field if arch == DEFAULT_ARCH else "%s.%s" % (arch, field)
        asset = self._asset_of(where, field_name, raw)
        if asset is not None:
            leaf = "vmlinuz" if field == "kernel" else "initrd"
            asset["filename"] = "%s/%s" % (profile, leaf) if arch == DEFAULT_ARCH else "%s/%s/%s" % (profile, arch, leaf)
        return asset

    def _asset_of(self, where: str, field: str, raw: Any) -> Optional[Dict[str, Any]]:
        if raw is None:
            self.problem(where, field, "is missing: give {src: path} or {url: ..., checksum: sha256:...}")
            return None
        if not isinstance(raw, Mapping):
            self.problem(where, field, "must be {src: path} or {url: ..., checksum: sha256:...}, got %r" % (raw,))
            return None
        for key in raw:
            if key not in ASSET_FIELDS:
                self.problem(where, "%s.%s" % (field, key), "unknown field (known: %s)" % ", ".join(ASSET_FIELDS))
        src, url, checksum = raw.get("src"), raw.get("url"), raw.get("checksum")
        checksum_invalid = checksum is not None and not (isinstance(checksum, str) and SHA256_RE.match(checksum))
        if checksum_invalid:
            self.problem(where, "%s.checksum" % field, "%r is not sha256:<64 hex digits>" % (checksum,))
            checksum = None
        asset: Dict[str, Any] = {"source": None, "src": None, "url": None,
                                 "checksum": checksum.lower() if checksum else None, "filename": None}
        if (src is None) == (url is None):
            self.problem(where, field, "give exactly one of src or url")
            return None
        if src is not None:
            path = os.path.expanduser(str(src))
            if not os.path.isabs(path) and self.base_dir:
                path = os.path.join(self.base_dir, path)
            path = os.path.normpath(path)
            if not os.path.isfile(path):
                self.problem(where, "%s.src" % field, "%s does not exist on the controller" % path)
                return None
            actual = file_sha256(path)
            if checksum and checksum.lower() != actual:
                self.problem(where, "%s.checksum" % field, "%s has %s, not the %s given" % (path, actual, checksum))
                return None
            asset.update(source="src", src=path, checksum=actual)
        else:
            if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+/\S*$", url):
                self.problem(where, "%s.url" % field, "%r is not an http(s) URL" % (url,))
                return None
            if not checksum:
                if not checksum_invalid:
                    self.problem(where, "%s.checksum" % field, "a url asset needs checksum: sha256:<hex>")
                return None
            asset.update(source="url", url=url)
        return asset

    # -- nodes -------------------------------------------------------------------
    def nodes(self, raw: Mapping[str, Mapping[str, Any]], profiles: Mapping[str, Any],
              profile_names: Sequence[str], subnets: Sequence[_Subnet]) -> List[Dict[str, Any]]:
        mac_owner: Dict[str, str] = {}
        ip_owner: Dict[str, str] = dict(self.reserved_ips)
        duid_owner: Dict[str, str] = {}
        out = []
        for name in sorted(raw):
            node = raw[name]
            where = "host %s" % name
            groups = [g for g in node.get("groups", ()) if g in profile_names]
            if node.get("outside_group"):
                self.problem(where, "groups", "is in profile group %s but not under %s: it would not be served"
                             % (", ".join(groups) or "?", node["outside_group"]))
                continue
            if not groups:
                self.problem(where, "profile", "is in no profile group (one of: %s)" % ", ".join(sorted(profile_names)))
            elif len(groups) > 1:
                self.problem(where, "profile", "is in %d profile groups (%s): a node boots one profile"
                             % (len(groups), ", ".join(sorted(groups))))
            if not HOSTNAME_RE.match(name):
                self.problem(where, "name", "%r is not a valid host name for DHCP" % name)
            for key in node.get("host_vars", ()):
                if str(key).startswith("pxe_") and key not in NODE_VARS:
                    self.problem(where, str(key), "unknown node variable (known: %s)" % ", ".join(NODE_VARS))
            for key, error in sorted(node.get("errors", {}).items()):
                self.problem(where, key, "cannot be rendered: %s" % error)
            errors = node.get("errors", {})
            macs = [] if "pxe_mac" in errors else self._macs(where, node.get("pxe_mac"), mac_owner, name)
            ip, subnet_id = self._node_ip(where, node.get("pxe_ip"), subnets, ip_owner, name)
            boot = node.get("pxe_boot", "install")
            if boot not in BOOT_MODES:
                self.problem(where, "pxe_boot", "%r is not one of %s" % (boot, ", ".join(BOOT_MODES)))
            entry = {"name": name, "profile": groups[0] if len(groups) == 1 else None,
                     "macs": macs, "ip": ip, "subnet_id": subnet_id, "boot": boot}
            entry.update(node6(where, name, node, self.subnets6, ip_owner, duid_owner, self.problem))
            loader = node.get("pxe_loader")
            if loader is not None:
                # Only when set (on the node or a group of it): unset follows the server's
                # default loader, and the plans of inventories without any stay as they were.
                if loader not in LOADERS:
                    self.problem(where, "pxe_loader", "%r is not one of %s" % (loader, ", ".join(LOADERS)))
                else:
                    entry["loader"] = loader
            arch = node.get("pxe_arch")
            if arch is not None:  # only when set, like pxe_loader: unset is amd64
                if arch not in ARCHES:
                    self.problem(where, "pxe_arch", "%r is not one of %s" % (arch, ", ".join(ARCHES)))
                else:
                    entry["arch"] = arch
                    profile = profiles.get(entry["profile"]) if entry["profile"] else None
                    if profile is not None and profile_assets(profile, arch) is None and "installer" in profile:
                        self.problem(where, "pxe_arch", "is %s, but its profile %s is an installer profile for %s only "
                                     "(docs/debian-installer.md)" % (arch, entry["profile"], profile["installer"]["arch"]))
                    elif profile is not None and profile_assets(profile, arch) is None:
                        self.problem(where, "pxe_arch", "is %s, but its profile %s has no %s assets (give the profile "
                                     "%s: {kernel: ..., initrd: ...})" % (arch, entry["profile"], arch, arch))
            if "pxe_preseed" in node:
                profile = profiles.get(entry["profile"] or "")
                if profile is not None and "installer" not in profile:
                    self.problem(where, "pxe_preseed", "profile %s has no installer: preseed lines would be served to "
                                 "nothing" % entry["profile"])
                lines = self._preseed_lines(where, "pxe_preseed", node["pxe_preseed"])
                if lines:  # only when set, like the options
                    entry["preseed"] = lines
            for var, (_group_key, plan_key, _table) in OPTION_VARS.items():
                options = self._node_options(where, node, errors, var)
                if options:  # only when set: 10,000 empty lists would cost plan size for nothing
                    entry[plan_key] = options
            if entry.get("options6") and "ip6" not in entry and "pxe_ip6" not in errors:
                self.problem(where, "pxe_dhcp6_options", "needs pxe_ip6: a node's DHCPv6 options travel in its "
                             "DHCPv6 reservation, which its IPv6 address makes (set pxe_ip6, or put the options "
                             "on the IPv6 subnet)")
            out.append(entry)
        return out

    def _node_options(self, where: str, node: Mapping[str, Any], errors: Mapping[str, str],
                      var: str) -> List[Dict[str, Any]]:
        """The node's DHCP options of one variable: its groups', then its own (the node wins)."""
        def report(field: str, message: str) -> None:
            self.problem(where, field, message)

        group_key, _plan_key, table = OPTION_VARS[var]
        layers = []
        group_raw = node.get(group_key)
        if group_raw is not None:
            # Hosts with the same groups share one value: checked (and a problem in it
            # reported, for the first such host) once, not once per host.
            cached = self._group_options.get(id(group_raw))
            if cached is None:
                entries = check_options(group_raw, "%s (from its groups)" % var, report, table)
                cached = self._group_options[id(group_raw)] = (group_raw, entries)
            layers.append(cached[1])
        if var not in errors:
            layers.append(check_options(node.get(var), var, report, table))
        return merge_options(*layers)

    def option_types(self, subnets: Sequence[_Subnet], nodes: Sequence[Mapping[str, Any]]) -> None:
        """An option given by code is declared once per server and family: one type for it everywhere."""
        self._option_types([("subnet %s" % s.network, s.entry) for s in subnets], nodes, "options")
        self._option_types([("subnet %s" % s.network, s.entry) for s in self.subnets6], nodes, "options6")

    def _option_types(self, subnets: List[Tuple[str, Mapping[str, Any]]], nodes: Sequence[Mapping[str, Any]],
                      node_key: str) -> None:
        seen: Dict[int, Tuple[str, str]] = {}
        holders = [(where, entry, "options") for where, entry in subnets]
        holders += [("host %s" % n["name"], n, node_key) for n in nodes]
        for where, holder, key in holders:
            for entry in holder.get(key, ()):
                first = seen.setdefault(entry["code"], (entry["type"], where))
                if first[0] != entry["type"]:
                    self.problem(where, "options.%d" % entry["code"], "is of type %s here but %s in %s: an option "
                                 "code has one type" % (entry["type"], first[0], first[1]))

    def _macs(self, where: str, raw: Any, owner: Dict[str, str], name: str) -> List[str]:
        if raw is None:
            self.problem(where, "pxe_mac", "is missing: every node needs the MAC of the NIC(s) it boots from")
            return []
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            self.problem(where, "pxe_mac", "is an empty list")
        macs = []
        for value in values:
            try:
                mac = parse_mac(value)
            except MacError as exc:
                self.problem(where, "pxe_mac", str(exc))
                continue
            if mac in owner:
                other = owner[mac]
                if other == name:
                    self.problem(where, "pxe_mac", "%s is listed twice (as %r)" % (mac, value))
                else:
                    self.problem(where, "pxe_mac", "%s (written %r) is also the MAC of host %s" % (mac, value, other))
                continue
            owner[mac] = name
            macs.append(mac)
        return macs

    def _node_ip(self, where: str, raw: Any, subnets: Sequence[_Subnet], owner: Dict[str, str], name: str):
        if raw is None:
            return None, None
        try:
            address = ipaddress.IPv4Address(str(raw))
        except ValueError:
            self.problem(where, "pxe_ip", "%r is not an IPv4 address" % (raw,))
            return None, None
        text = str(address)
        subnet = next((s for s in subnets if address in s.network), None)
        if subnet is None:
            self.problem(where, "pxe_ip", "%s is in none of pxe_subnets (%s)"
                         % (text, ", ".join(str(s.network) for s in subnets) or "none valid"))
            return None, None
        if address in (subnet.network.network_address, subnet.network.broadcast_address):
            self.problem(where, "pxe_ip", "%s is the network or broadcast address of %s" % (text, subnet.network))
        elif subnet.pool and subnet.pool[0] <= address <= subnet.pool[1]:
            self.problem(where, "pxe_ip", "%s lies inside the dynamic pool %s-%s of %s"
                         % (text, subnet.pool[0], subnet.pool[1], subnet.network))
        elif subnet.entry["gateway"] == text:
            self.problem(where, "pxe_ip", "%s is the gateway of %s" % (text, subnet.network))
        elif text in owner:
            self.problem(where, "pxe_ip", "%s is also the address of %s" % (text, owner[text]))
        owner.setdefault(text, "host %s" % name)
        return text, subnet.entry["id"]


def _group_var_problems(builder: _Builder, group_vars: Mapping[str, Sequence[str]]) -> None:
    for group in sorted(group_vars):
        for key in sorted(group_vars[group]):
            if key in NODE_VARS or key in SHARED_VARS or key.startswith(ROLE_VAR_PREFIXES):
                continue
            builder.problem("group %s" % group, key, "unknown variable (node variables: %s; role variables start "
                            "with %s)" % (", ".join(NODE_VARS), ", ".join(ROLE_VAR_PREFIXES)))


def build_plan(
    subnets: Any,
    profiles: Any,
    nodes: Mapping[str, Mapping[str, Any]],
    base_dir: Optional[str] = None,
    reserved_ips: Optional[Mapping[str, str]] = None,
    group_vars: Optional[Mapping[str, Sequence[str]]] = None,
    servers: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> Dict[str, Any]:
    """Validate the inventory and return the boot plan, or raise PlanError listing every problem.

    nodes: inventory host name -> {"groups": [group names], "pxe_mac": ..., "pxe_ip": ...,
    "pxe_boot": ..., "pxe_dhcp_options": (the host's own), "group_dhcp_options": (its groups'),
    the same pair for pxe_dhcp6_options ("group_dhcp6_options"),
    "host_vars": [names of variables set on the host itself]}.
    Optional per node: "errors" {variable: why it could not be rendered}, "outside_group"
    (the nodes group a host of a profile group is missing from).
    base_dir: where relative asset paths start (the inventory's directory).
    reserved_ips: addresses no node may take, with who holds them (PXE servers).
    group_vars: group name -> the pxe_* variables set on that group (typos are reported).
    servers: PXE server name -> {"address" (its ansible_host), and those of pxe_dhcp_backend,
    pxe_dhcp_ha, pxe_dhcp_ha_address, pxe_loader, pxe_dhcp_kea_host_database and
    pxe_dhcp_kea_host_database_server that are set}, in inventory order (high availability, a shared
    host database).
    """
    builder = _Builder(base_dir, reserved_ips or {})
    subnet_list = builder.subnets(subnets)
    profile_names = [str(p) for p in profiles] if isinstance(profiles, Mapping) else []
    profile_map = builder.profiles(profiles)
    node_list = builder.nodes(nodes, profile_map, profile_names, subnet_list)
    builder.option_types(subnet_list, node_list)
    _group_var_problems(builder, group_vars or {})
    for name, server in (servers or {}).items():
        if "pxe_loader" in server and server["pxe_loader"] not in LOADERS:
            builder.problem("host %s" % name, "pxe_loader", "%r is not one of %s (the loader of machines that "
                            "are not nodes, and of nodes that set none)" % (server["pxe_loader"], ", ".join(LOADERS)))
    ha = ha_relationships(builder.problem, servers or {})
    host_databases = shared_host_databases(builder.problem, servers or {})
    server_problems(builder.subnets6, servers or {}, builder.problem)
    for where, field, message in proxy_problems([s.entry for s in subnet_list], node_list, servers or {}):
        builder.problem(where, field, message)
    if builder.problems:
        raise PlanError(builder.problems)
    plan: Dict[str, Any] = {
        "schema": PLAN_SCHEMA,
        "subnets": [s.entry for s in subnet_list],
        "profiles": profile_map,
        "nodes": node_list,
        "ha": ha,
    }
    if host_databases:  # only when shared: the plans (and digests) of other inventories stay as they were
        plan["host_databases"] = host_databases
    if builder.subnets6:  # only when given: the plans (and digests) of IPv4-only inventories stay as they were
        plan["subnets6"] = [s.entry for s in builder.subnets6]
    plan["digest"] = plan_digest(plan)
    return plan
