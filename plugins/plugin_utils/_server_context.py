# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE: the server context, the one description of a PXE server that every role
renders from (controller side; the action plugin centra.pxe.server_context returns it).

    {"name": inventory name, "interface", "address", "cidr": the provisioning endpoint,
     "interfaces": the provisioning interface and the extra ones the services answer on,
     "address6", "cidr6", "http_base6": the IPv6 endpoint on the same interface, when the plan
       has IPv6 prefixes (else None; docs/ipv6.md),
     "http_port", "https_port" (0: HTTPS off), "http_base": "http://<address>[:<port>]",
     "root": the boot trees' directory,
     "loaders": {slot: file name or "" for every slot of the boot policy table},
     "loader_sources": {slot: {"path", "remote_src"}} for the slots that have a loader,
     "default_loader": "ipxe"|"grub": the chain of unknown machines and of nodes that set no pxe_loader,
     "shim_loaders": {grub slot: shim file name or ""} (the grub chain's first stage, per architecture),
     "grub_http_images": {grub slot: image file name} for the slots served whose HTTP boot answer is the
                         Secure Boot disk image (pxe_server_secure_boot_http_image; built in loaders/),
     "grub": {"in_use": whether any node or the default uses the grub chain, or the server serves
                        arm64 (pxe_server_shim_loaders.arm64: every arm64 machine boots the grub chain),
              "loaders": {grub slot: {"shim", "second_stage", "prefix", "removable": the firmware's
                         removable-media loader path}} for the slots served: efi64
                         when a node or the default uses the grub chain, arm64 when its shim is named,
              "profiles": the profiles the grub chain boots (their kernels' signatures are checked),
              "arm64_nodes": the nodes with pxe_arch arm64 (validate.yml: the server must serve arm64),
              "cache_dir": where the signed loaders are extracted, <cache_dir>/<slot>/<file name>,
              "image_node_rename": {"pattern", "replacement"}: where the Secure Boot HTTP boot image
                                   holds a node config of grub/ (centra.pxe.fat_image's rename)},
     "installer": {"packages": the installer packages of the plan's installer profiles,
                   "cache_dir": where their kernels and initrds are taken out,
                   <cache_dir>/<package>/<file name> (docs/debian-installer.md)},
     "dhcp_backend": "kea"|"isc"|"proxy", "dhcp_service": its unit, "dhcp_services": every backend's unit,
     "ha": this server's HA relationship (the plan's, plus "role": this server's) or None,
     "host_database": when Kea servers share this server's PostgreSQL host database, or this server
                      reads another's (pxe_dhcp_kea_host_database_server): the plan's entry,
                      {"server", "address", "clients": [{"name", "address"}]}, with "role" (this
                      server's: "server" or "reader"), "port" (PostgreSQL's),
                      "database" and "user" (Kea's) and "password_file" (the password of Kea's
                      role, which the readers' Kea configuration includes); else None,
     "lifecycle": {"socket", "state_dir", "boot_dir", "scripts_dir", "callback_base",
                   "peers": the other HA servers' HTTP bases, "peer_addresses",
                   "trace_socket": the datagram socket of the boot trace, "trace_group": its group,
                   "status_url", "metrics_url", "api_url": the read-only views},
     "health": {"socket": the health service's (nginx proxies /healthz to it),
                "plan_file": the plan document the converge writes last (what it expects)},
     "plan": {"digest", "subnets", "profiles", "subnets6" (when there)}: the plan without its nodes, decoded once}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, Optional, Sequence

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import (
    DEFAULT_LOADER, GRUB_HTTP_IMAGE, GRUB_ONLY_SLOTS, GRUB_PREFIX, GRUB_REMOVABLE, GRUB_SECOND_STAGE, GRUB_SLOTS,
    LOADER_SLOTS, LOADERS)
from ansible_collections.centra.pxe.plugins.module_utils._render_grub import IMAGE_NODE_RENAME
from ansible_collections.centra.pxe.plugins.module_utils._kea_host_db import (
    KEA_HOST_DATABASE,
    KEA_HOST_DATABASE_PASSWORD_FILE,
    POSTGRESQL_PORT,
)
from ansible_collections.centra.pxe.plugins.plugin_utils._shared_host_db import host_database_share

# Where the node lifecycle service (centra.pxe.pxe_lifecycle) keeps what nginx
# (centra.pxe.pxe_http) serves or talks to.
LIFECYCLE_STATE_DIR = "/var/lib/centra-pxe-lifecycle"
LIFECYCLE_SOCKET = "/run/centra-pxe-lifecycle/lifecycle.sock"
# The health service (centra.pxe.pxe_health), which nginx proxies /healthz to.
HEALTH_SOCKET = "/run/centra-pxe-health/health.sock"
# The boot trace (docs/status.md and the trace contract): the feeders (Kea, dhcpd, tftpd,
# nginx) send one JSON event per datagram to this socket; their users join this group.
LIFECYCLE_TRACE_SOCKET = "/run/centra-pxe-lifecycle/trace.sock"
LIFECYCLE_TRACE_GROUP = "centra-pxe-trace"

# The DHCP server unit of each backend: pxe_server installs and checks it, pxe_dhcp
# runs one and stops the other (both want port 67).
# proxy: dnsmasq as proxyDHCP, under a unit of centra.pxe (dnsmasq-base ships none).
# Where centra.pxe.pxe_ipxe extracts the signed loaders of the grub chain (shim, GRUB) from
# their packages, one directory per slot; centra.pxe.pxe_tftp copies them from there.
GRUB_CACHE_DIR = "/var/cache/centra-pxe/signed-loaders"
# Where centra.pxe.pxe_ipxe takes the installer profiles' kernels and initrds out of their
# packages; the Secure Boot check verifies the kernels there.
INSTALLER_CACHE_DIR = "/var/cache/centra-pxe/installer"

DHCP_SERVICES = {"kea": "kea-dhcp4-server", "isc": "isc-dhcp-server", "proxy": "centra-pxe-proxydhcp"}


def http_base(address: str, port: int) -> str:
    return "http://%s%s" % (address, "" if int(port) == 80 else ":%d" % int(port))


def host_database_context(plan: Mapping[str, Any], name: str) -> Optional[Dict[str, Any]]:
    """The server context's "host_database" (see the module docstring)."""
    share = host_database_share(plan, name)
    if not share:
        return None
    return dict(share, port=POSTGRESQL_PORT, database=KEA_HOST_DATABASE["name"], user=KEA_HOST_DATABASE["user"],
                password_file=KEA_HOST_DATABASE_PASSWORD_FILE)


def server_context(plan: Mapping[str, Any], name: str, endpoint: Mapping[str, str], extra_interfaces: Sequence[str],
                   http_port: int, https_port: int, root: str, loaders: Mapping[str, Any],
                   loader_files: Mapping[str, str], loader_dir: str, dhcp_backend: str,
                   ha: Optional[Mapping[str, Any]], endpoint6: Optional[Mapping[str, str]] = None,
                   default_loader: str = DEFAULT_LOADER,
                   shim_loaders: Optional[Mapping[str, Any]] = None,
                   secure_boot_http_image: bool = False) -> Dict[str, Any]:
    """The context of server `name`; endpoint is {interface, address, cidr} (centra.pxe's _endpoint)."""
    if default_loader not in LOADERS:
        raise ValueError("pxe_loader %r is not one of %s" % (default_loader, ", ".join(LOADERS)))
    shims = {slot: str((shim_loaders or {}).get(slot) or "") for slot in GRUB_SLOTS}
    # The arm64 machines boot the grub chain whatever their loader (the policy's grub_only
    # rows) once the server serves arm64: unknown ones get the grub menu.
    grub_only = [slot for slot in GRUB_ONLY_SLOTS if shims[slot]]
    grub_nodes = [n for n in plan["nodes"] if (n.get("loader") or default_loader) == "grub"
                  or (grub_only and n.get("arch") == "arm64")]
    chosen = default_loader == "grub" or any((n.get("loader") or default_loader) == "grub" for n in plan["nodes"])
    grub_in_use = chosen or bool(grub_only)
    if default_loader == "grub" or grub_only or any(n["boot"] == "menu" for n in grub_nodes):
        grub_profiles = sorted(plan["profiles"])  # the menu offers every profile
    else:
        grub_profiles = sorted({n["profile"] for n in grub_nodes if n["boot"] != "local"})
    grub_slots = [slot for slot in GRUB_SLOTS if shims[slot] and (chosen or slot in grub_only)]
    relationship = None
    if ha:
        relationship = dict(ha)
        relationship["role"] = next(p["role"] for p in ha["peers"] if p["name"] == name)
    names = {slot: str(loaders.get(slot) or "") for slot in LOADER_SLOTS}
    sources = {}
    for slot, filename in names.items():
        if filename:
            # An operator's own file comes from the controller, the others from the ipxe package.
            own = slot in loader_files
            sources[slot] = {"path": str(loader_files[slot]) if own else "%s/%s" % (loader_dir, filename),
                             "remote_src": not own}
    peers = [p for p in (ha or {}).get("peers", []) if p["name"] != name]
    return {
        "name": name,
        "interface": endpoint["interface"],
        "address": endpoint["address"],
        "cidr": endpoint["cidr"],
        "address6": endpoint6["address6"] if endpoint6 else None,
        "cidr6": endpoint6["cidr6"] if endpoint6 else None,
        "http_base6": http_base("[%s]" % endpoint6["address6"], http_port) if endpoint6 else None,
        "interfaces": [endpoint["interface"]] + [str(i) for i in extra_interfaces],
        "http_port": int(http_port),
        "https_port": int(https_port),
        "http_base": http_base(endpoint["address"], http_port),
        "root": root,
        # Every slot present: a slot the operator leaves out means "no boot file".
        "loaders": names,
        "loader_sources": sources,
        "default_loader": default_loader,
        "shim_loaders": shims,
        "grub_http_images": {slot: GRUB_HTTP_IMAGE[slot] for slot in grub_slots
                             if secure_boot_http_image and slot in GRUB_HTTP_IMAGE},
        "grub": {"in_use": grub_in_use,
                 "loaders": {slot: {"shim": shims[slot], "second_stage": GRUB_SECOND_STAGE[slot],
                                    "prefix": GRUB_PREFIX[slot], "removable": GRUB_REMOVABLE[slot]}
                             for slot in grub_slots},
                 "profiles": grub_profiles if grub_in_use else [],
                 "arm64_nodes": [n["name"] for n in plan["nodes"] if n.get("arch") == "arm64"],
                 "cache_dir": GRUB_CACHE_DIR,
                 "image_node_rename": dict(IMAGE_NODE_RENAME)},
        "installer": {"packages": sorted({p["kernel"]["package"] for p in plan["profiles"].values()
                                          if "installer" in p}),
                      "cache_dir": INSTALLER_CACHE_DIR},
        "dhcp_backend": dhcp_backend,
        "dhcp_service": DHCP_SERVICES[dhcp_backend],
        "dhcp_services": dict(DHCP_SERVICES),
        "ha": relationship,
        "host_database": host_database_context(plan, name),
        # The lifecycle service: its socket (nginx proxies to it), the boot files it
        # materializes (nginx serves them first), the install and local-boot scripts
        # the converge writes for it, and the HA peers it shares node states with
        # (reached at their HA address, on the same HTTP port).
        "lifecycle": {
            "socket": LIFECYCLE_SOCKET,
            "state_dir": LIFECYCLE_STATE_DIR,
            "boot_dir": LIFECYCLE_STATE_DIR + "/boot",
            "scripts_dir": root.rstrip("/") + "/lifecycle",
            "callback_base": http_base(endpoint["address"], http_port),
            "peers": [http_base(p["address"], http_port) for p in peers],
            "peer_addresses": [p["address"] for p in peers],
            "trace_socket": LIFECYCLE_TRACE_SOCKET,
            "trace_group": LIFECYCLE_TRACE_GROUP,
            "status_url": http_base(endpoint["address"], http_port) + "/status",
            "metrics_url": http_base(endpoint["address"], http_port) + "/metrics",
            "api_url": http_base(endpoint["address"], http_port) + "/api/v1",
        },
        # The health service: its socket, and the plan document centra.pxe.pxe_ipxe writes
        # last (the digest every component is compared with).
        "health": {
            "socket": HEALTH_SOCKET,
            "plan_file": root.rstrip("/") + "/http/healthz",
        },
        "plan": {"digest": plan["digest"], "subnets": plan["subnets"], "profiles": plan["profiles"],
                 **({"subnets6": plan["subnets6"]} if plan.get("subnets6") else {})},
    }
