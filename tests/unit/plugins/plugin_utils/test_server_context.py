# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import LOADER_SLOTS
from ansible_collections.centra.pxe.plugins.plugin_utils._server_context import server_context

PLAN = {"digest": "d" * 64, "subnets": [{"cidr": "192.0.2.0/24"}], "profiles": {"worker": {}}, "nodes": [{"name": "n"}]}
ENDPOINT = {"interface": "host0", "address": "192.0.2.2", "cidr": "192.0.2.0/24"}
PAIR = {"backend": "kea", "mode": "hot-standby", "port": 8001,
        "peers": [{"name": "pxe01", "role": "primary", "address": "192.0.2.2"},
                  {"name": "pxe02", "role": "standby", "address": "198.51.100.3"}]}


def context(**overrides):
    args = dict(name="pxe01", endpoint=ENDPOINT, extra_interfaces=[], http_port=80, https_port=0,
                root="/srv/centra-pxe", loaders={"bios": "undionly.kpxe", "efi64": "snponly.efi"},
                loader_files={}, loader_dir="/usr/lib/ipxe", dhcp_backend="kea", ha=None)
    args.update(overrides)
    return server_context(PLAN, **args)


def test_every_loader_slot_is_present_and_sources_follow_the_operator():
    ctx = context(loader_files={"efi64": "/home/op/snponly.efi"})
    assert sorted(ctx["loaders"]) == sorted(LOADER_SLOTS)
    assert ctx["loaders"]["arm64"] == ""
    assert ctx["loader_sources"] == {"bios": {"path": "/usr/lib/ipxe/undionly.kpxe", "remote_src": True},
                                     "efi64": {"path": "/home/op/snponly.efi", "remote_src": False}}


def test_http_base_names_a_port_other_than_80():
    assert context()["http_base"] == "http://192.0.2.2"
    assert context(http_port=8080)["http_base"] == "http://192.0.2.2:8080"


def test_plan_without_nodes_and_the_interfaces():
    ctx = context(extra_interfaces=["eno2"])
    assert ctx["plan"] == {"digest": "d" * 64, "subnets": PLAN["subnets"], "profiles": PLAN["profiles"]}
    assert ctx["interfaces"] == ["host0", "eno2"]
    assert ctx["dhcp_service"] == "kea-dhcp4-server" and ctx["dhcp_services"]["isc"] == "isc-dhcp-server"


def test_ha_role_and_lifecycle_peers():
    assert context()["ha"] is None and context()["lifecycle"]["peers"] == []
    first = context(ha=PAIR)
    assert first["ha"]["role"] == "primary"
    assert first["lifecycle"]["peers"] == ["http://198.51.100.3"]
    assert first["lifecycle"]["peer_addresses"] == ["198.51.100.3"]
    second = context(name="pxe02", ha=PAIR, http_port=8080)
    assert second["ha"]["role"] == "standby"
    assert second["lifecycle"]["peers"] == ["http://192.0.2.2:8080"]
    assert second["lifecycle"]["scripts_dir"] == "/srv/centra-pxe/lifecycle"


def test_lifecycle_trace_socket_and_views():
    lifecycle = context(http_port=8080)["lifecycle"]
    assert lifecycle["trace_socket"] == "/run/centra-pxe-lifecycle/trace.sock"
    assert lifecycle["trace_group"] == "centra-pxe-trace"
    # the unit's RuntimeDirectory= holds both sockets
    assert lifecycle["trace_socket"].rsplit("/", 1)[0] == lifecycle["socket"].rsplit("/", 1)[0]
    assert lifecycle["status_url"] == "http://192.0.2.2:8080/status"
    assert lifecycle["metrics_url"] == "http://192.0.2.2:8080/metrics"
    assert lifecycle["api_url"] == "http://192.0.2.2:8080/api/v1"


def test_the_ipv6_endpoint_is_there_when_the_plan_has_ipv6():
    assert {context()[k] for k in ("address6", "cidr6", "http_base6")} == {None}
    ctx = context(endpoint6={"address6": "2001:db8:0:1::2", "cidr6": "2001:db8:0:1::/64"}, http_port=8080)
    assert ctx["address6"] == "2001:db8:0:1::2" and ctx["cidr6"] == "2001:db8:0:1::/64"
    assert ctx["http_base6"] == "http://[2001:db8:0:1::2]:8080"
    assert ctx["http_base"] == "http://192.0.2.2:8080"  # IPv4 stays as it was


def _grub_plan(nodes):
    return dict(PLAN, profiles={"worker": {}, "control_plane": {}}, nodes=nodes)


def test_the_arm64_chain_is_served_when_its_shim_is_named():
    nodes = [{"name": "n1", "profile": "worker", "boot": "netboot"},
             {"name": "n9", "profile": "worker", "boot": "netboot", "arch": "arm64"}]
    plain = server_context(_grub_plan(nodes), **dict(
        name="pxe01", endpoint=ENDPOINT, extra_interfaces=[], http_port=80, https_port=0, root="/srv/centra-pxe",
        loaders={}, loader_files={}, loader_dir="/usr/lib/ipxe", dhcp_backend="kea", ha=None,
        shim_loaders={"efi64": "shimx64.efi", "arm64": ""}))
    # No grub node, no arm64 shim: the grub chain is off (the node's arch alone does not turn it
    # on: validate.yml refuses that inventory, naming the node).
    assert plain["grub"]["in_use"] is False and plain["grub"]["loaders"] == {}
    assert plain["grub"]["arm64_nodes"] == ["n9"]
    served = server_context(_grub_plan(nodes), **dict(
        name="pxe01", endpoint=ENDPOINT, extra_interfaces=[], http_port=80, https_port=0, root="/srv/centra-pxe",
        loaders={}, loader_files={}, loader_dir="/usr/lib/ipxe", dhcp_backend="kea", ha=None,
        shim_loaders={"efi64": "shimx64.efi", "arm64": "shimaa64.efi"}))
    # Every arm64 machine boots the grub chain: the arm64 pair only (no grub node asks for
    # the x86-64 shim), and every profile (unknown arm64 machines get the menu).
    assert served["grub"]["in_use"] is True
    assert served["grub"]["loaders"] == {"arm64": {"shim": "shimaa64.efi", "second_stage": "grubaa64.efi",
                                                   "prefix": "debian-installer/arm64/grub",
                                                   "removable": "EFI/BOOT/BOOTAA64.EFI"}}
    assert served["grub"]["profiles"] == ["control_plane", "worker"]
    # A grub node adds the x86-64 pair.
    nodes.append({"name": "n8", "profile": "worker", "boot": "netboot", "loader": "grub"})
    both = server_context(_grub_plan(nodes), **dict(
        name="pxe01", endpoint=ENDPOINT, extra_interfaces=[], http_port=80, https_port=0, root="/srv/centra-pxe",
        loaders={}, loader_files={}, loader_dir="/usr/lib/ipxe", dhcp_backend="kea", ha=None,
        shim_loaders={"efi64": "shimx64.efi", "arm64": "shimaa64.efi"}))
    assert sorted(both["grub"]["loaders"]) == ["arm64", "efi64"]
    assert both["grub"]["loaders"]["efi64"]["prefix"] == "grub"


def test_the_secure_boot_image_is_named_for_the_x86_64_slot_it_serves():
    """pxe_server_secure_boot_http_image: the efi64 slot's image, when that slot is served; the
    arm64 slot has none (its HTTP boot keeps the shim URL)."""
    def context(nodes, flag, shims=None):
        return server_context(_grub_plan(nodes), **dict(
            name="pxe01", endpoint=ENDPOINT, extra_interfaces=[], http_port=80, https_port=0,
            root="/srv/centra-pxe", loaders={}, loader_files={}, loader_dir="/usr/lib/ipxe", dhcp_backend="kea",
            ha=None, shim_loaders=shims or {"efi64": "shimx64.efi", "arm64": "shimaa64.efi"},
            secure_boot_http_image=flag))
    grub_node = [{"name": "n8", "profile": "worker", "boot": "netboot", "loader": "grub"}]
    arm64_only = [{"name": "n9", "profile": "worker", "boot": "netboot", "arch": "arm64"}]
    assert context(grub_node, True)["grub_http_images"] == {"efi64": "secureboot-x64.img"}
    assert context(grub_node, False)["grub_http_images"] == {}
    assert context(arm64_only, True)["grub_http_images"] == {}
    assert context(grub_node, True, {"efi64": "", "arm64": ""})["grub_http_images"] == {}
    assert context(grub_node, True)["grub"]["loaders"]["efi64"]["removable"] == "EFI/BOOT/BOOTX64.EFI"
    assert context(grub_node, True)["grub"]["image_node_rename"]["replacement"] == r"n/\1\2\3/\4\5\6.cfg"
