# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The option-93 boot policy: one table, one decision function.

Both DHCP renderers (Kea and ISC dhcpd) are generated from BOOT_RULES, and the
tests check both daemons' real answers against decide(), so the three cannot
disagree. See docs/architecture.md, "Boot policy".

Two loader chains answer from the same rows (pxe_loader, docs/secure-boot.md):
"ipxe" (the loader_slot column: iPXE binaries) and "grub", the Secure Boot chain
(the grub_slot column: Microsoft-signed shim, which loads Debian's signed GRUB as
its second stage from the same directory). A row without a grub_slot (BIOS, IA32,
ARM32), or whose shim the server does not serve, answers iPXE whatever the node's
loader: those machines have no Secure Boot chain here. A grub_only row (ARM64: Debian
ships no arm64 iPXE) answers the grub chain whatever the node's loader, as soon as the
server serves its shim (pxe_server_shim_loaders.arm64).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Tuple

IPXE_USER_CLASS = b"iPXE"
IPXE_ENCAP_OPTION = 175
HTTP_CLIENT_VENDOR_CLASS = "HTTPClient"
PXE_CLIENT_VENDOR_CLASS = "PXEClient"


@dataclass(frozen=True)
class BootRule:
    """One row of the table: which option-93 codes, and how that client is answered."""

    name: str
    arch_codes: Tuple[Optional[int], ...]  # None stands for "option 93 absent"
    client: str
    transport: str  # "tftp": next-server + file name; "http": full URL + HTTPClient echo
    loader_slot: str
    grub_slot: Optional[str] = None  # the shim of this architecture, for the grub chain
    # The grub chain answers every machine of the row (not only pxe_loader: grub nodes)
    # once the server serves the row's shim: Debian has no iPXE for it.
    grub_only: bool = False


BOOT_RULES: Tuple[BootRule, ...] = (
    BootRule("bios", (None, 0), "x86 BIOS PXE", "tftp", "bios"),
    BootRule("efi32", (6,), "x86 UEFI (IA32)", "tftp", "efi32"),
    # 7 is x86-64 UEFI in IANA's registry (RFC 4578 erratum); much real firmware sends 9.
    BootRule("efi64", (7, 9), "x86-64 UEFI", "tftp", "efi64", "efi64"),
    # ARM32 and ARM64 each get their own loader: an arm64 binary does not run on ARM32.
    BootRule("arm32", (10,), "ARM32 UEFI", "tftp", "arm32"),
    BootRule("arm64", (11,), "ARM64 UEFI", "tftp", "arm64", "arm64", grub_only=True),
    BootRule("http_efi64", (16,), "x86-64 UEFI HTTP boot", "http", "efi64", "efi64"),
    BootRule("http_arm64", (19,), "ARM64 UEFI HTTP boot", "http", "arm64", "arm64", grub_only=True),
)

# The loader chains a node, a profile group or a server picks with pxe_loader.
LOADERS: Tuple[str, ...] = ("ipxe", "grub")
DEFAULT_LOADER = "ipxe"
# The shim slots of the grub chain (role variable pxe_server_shim_loaders), in table order.
GRUB_SLOTS: Tuple[str, ...] = tuple(dict.fromkeys(rule.grub_slot for rule in BOOT_RULES if rule.grub_slot))
# shim loads its second stage from its own directory (TFTP) or URL (HTTP boot) under a
# name compiled into it (DEFAULT_LOADER of shim): Debian's signed netboot GRUB is served
# under that name beside shim.
GRUB_SECOND_STAGE = {"efi64": "grubx64.efi", "arm64": "grubaa64.efi"}
# The prefix compiled into each slot's signed GRUB (a directory of the TFTP root): GRUB
# sources <prefix>/grub.cfg first. Debian's grubnetx64 has /grub, the arm64 netboot GRUB of
# debian-installer-12-netboot-arm64 has /debian-installer/arm64/grub (its grub.cfg there
# sources grub/grub.cfg, the entry configuration).
GRUB_PREFIX = {"efi64": "grub", "arm64": "debian-installer/arm64/grub"}
# UEFI HTTP boot under Secure Boot (pxe_server_secure_boot_http_image): Debian's signed GRUB
# has no HTTP module, so what it reads must come with it. The HTTP boot answer of the slot is
# then this disk image (OVMF makes a RAM disk of a .img URL and boots its
# \EFI\BOOT\BOOTX64.EFI): shim, the signed GRUB, the grub/ configurations and the kernels and
# initrds of the profiles (docs/secure-boot.md). x86-64 only: arm64 keeps the shim URL.
GRUB_HTTP_IMAGE = {"efi64": "secureboot-x64.img"}
# The firmware's removable-media loader path per slot: what it boots from a disk (the HTTP
# boot image's RAM disk, or a machine's own disk without a boot entry).
GRUB_REMOVABLE = {"efi64": "EFI/BOOT/BOOTX64.EFI", "arm64": "EFI/BOOT/BOOTAA64.EFI"}
# The slots whose machines the grub chain answers whatever their loader (grub_only rows).
GRUB_ONLY_SLOTS: Tuple[str, ...] = tuple(dict.fromkeys(rule.grub_slot for rule in BOOT_RULES
                                                       if rule.grub_slot and rule.grub_only))

# Loader slots an operator can fill (role variable pxe_server_loaders), in table order:
# ("bios", "efi32", "efi64", "arm32", "arm64"). A slot left empty means "no boot file"
# for the architectures that need it: never send a binary the machine cannot run.
# pxe_server's argument spec lists the same slots (a unit test holds them together).
LOADER_SLOTS: Tuple[str, ...] = tuple(dict.fromkeys(rule.loader_slot for rule in BOOT_RULES))

KNOWN_ARCH_CODES = tuple(sorted(c for rule in BOOT_RULES for c in rule.arch_codes if c is not None))


@dataclass(frozen=True)
class BootServer:
    """Where the answers point: the PXE server as the clients see it."""

    address: str  # next-server (siaddr) for TFTP answers
    http_base: str  # e.g. "http://192.0.2.2"; no trailing slash
    loaders: Mapping[str, Optional[str]] = field(default_factory=dict)  # slot -> file name
    script_path: str = "boot.ipxe"
    http_loader_dir: str = "loaders"
    shims: Mapping[str, Optional[str]] = field(default_factory=dict)  # grub slot -> shim file name
    # grub slot -> the Secure Boot HTTP boot image (GRUB_HTTP_IMAGE) when the server builds it
    http_images: Mapping[str, Optional[str]] = field(default_factory=dict)
    default_loader: str = DEFAULT_LOADER  # the chain of unknown machines and of nodes that set none

    @property
    def script_url(self) -> str:
        return "%s/%s" % (self.http_base, self.script_path)

    def loader(self, slot: str) -> Optional[str]:
        return self.loaders.get(slot) or None

    def _loaders_url(self, name: Optional[str]) -> Optional[str]:
        """The URL of a file of the HTTP loaders directory; None for no file."""
        return "%s/%s/%s" % (self.http_base, self.http_loader_dir, name) if name else None

    def loader_url(self, slot: str) -> Optional[str]:
        return self._loaders_url(self.loader(slot))

    def shim(self, slot: str) -> Optional[str]:
        return self.shims.get(slot) or None

    def shim_url(self, slot: str) -> Optional[str]:
        return self._loaders_url(self.shim(slot))

    def http_image_url(self, slot: str) -> Optional[str]:
        return self._loaders_url(self.http_images.get(slot))


@dataclass(frozen=True)
class BootAnswer:
    kind: str  # "script" | "tftp" | "http" | "none"
    rule: str  # the BOOT_RULES name, "ipxe", or "unknown"
    filename: Optional[str] = None  # DHCP file field (a TFTP path or a full URL)
    next_server: Optional[str] = None  # DHCP siaddr
    vendor_class: Optional[str] = None  # option 60 to echo (HTTPClient for HTTP boot)
    reason: str = ""
    loader: str = DEFAULT_LOADER  # the chain the boot file starts: "ipxe" or "grub"


def boot_server(server: Mapping[str, Any]) -> BootServer:
    """The BootServer of a server settings mapping (address, http_base, loaders, and
    optionally shim_loaders, grub_http_images and default_loader)."""
    default_loader = str(server.get("default_loader") or DEFAULT_LOADER)
    if default_loader not in LOADERS:
        raise ValueError("default loader %r is not one of %s" % (default_loader, ", ".join(LOADERS)))
    return BootServer(
        address=str(server["address"]),
        http_base=str(server["http_base"]).rstrip("/"),
        loaders={k: (v or None) for k, v in dict(server.get("loaders") or {}).items()},
        shims={k: (v or None) for k, v in dict(server.get("shim_loaders") or {}).items()},
        http_images={k: (v or None) for k, v in dict(server.get("grub_http_images") or {}).items()},
        default_loader=default_loader,
    )


def parse_arch_option(raw: Optional[bytes]) -> Optional[int]:
    """Return the first architecture of an option-93 payload, None when absent.

    Raises ValueError for a payload that is not a whole number of 16-bit codes.
    """
    if raw is None:
        return None
    if len(raw) == 0 or len(raw) % 2:
        raise ValueError("option 93 of %d bytes is not a list of 16-bit codes" % len(raw))
    return int.from_bytes(raw[:2], "big")


def is_ipxe(user_class: Optional[bytes], option_175: bool) -> bool:
    """iPXE identifies itself by user class "iPXE" (option 77) or its option 175."""
    return option_175 or (user_class is not None and user_class == IPXE_USER_CLASS)


def rule_for_arch(arch: Optional[int]) -> Optional[BootRule]:
    for rule in BOOT_RULES:
        if arch in rule.arch_codes:
            return rule
    return None


def decide(
    server: BootServer,
    arch: Optional[int] = None,
    user_class: Optional[bytes] = None,
    option_175: bool = False,
    vendor_class: Optional[str] = None,
    loader: Optional[str] = None,
) -> BootAnswer:
    """The answer to a DHCP request, from what the client sent.

    arch: the first code of option 93, None when the option is absent.
    user_class: option 77 payload as sent (iPXE sends the bare string "iPXE").
    option_175: whether the client sent iPXE's encapsulated option 175.
    vendor_class: option 60 as sent; only echoed in the reason (the table keys on 93).
    loader: the node's pxe_loader; None (an unknown machine, or a node that sets none)
    follows the server's default loader.
    """
    chain = loader or server.default_loader
    if chain not in LOADERS:
        raise ValueError("loader %r is not one of %s" % (chain, ", ".join(LOADERS)))
    if is_ipxe(user_class, option_175):
        # Already running iPXE: hand it the script, or it would load iPXE again, forever.
        return BootAnswer("script", "ipxe", filename=server.script_url, reason="iPXE client: boot script over HTTP")
    rule = rule_for_arch(arch)
    seen = "absent" if arch is None else str(arch)
    if vendor_class:
        seen += ", vendor class %r" % vendor_class
    if rule is None:
        return BootAnswer("none", "unknown", reason="option 93 = %s: unknown architecture, no boot file" % seen)
    if (chain == "grub" or rule.grub_only) and rule.grub_slot and server.shim(rule.grub_slot):
        return _grub_answer(server, rule, rule.grub_slot, seen)
    # The iPXE chain; also for a grub node where the row has no shim (BIOS, IA32, ARM32,
    # or an architecture whose shim the server does not serve), and for an ARM64 machine
    # of a server that serves no arm64 shim (its iPXE loader slot, usually empty: no answer).
    if rule.transport == "http":
        url = server.loader_url(rule.loader_slot)
        if url is None:
            return BootAnswer("none", rule.name, reason="%s: no %s loader configured" % (rule.client, rule.loader_slot))
        return BootAnswer("http", rule.name, filename=url, vendor_class=HTTP_CLIENT_VENDOR_CLASS,
                          reason="%s (option 93 = %s): loader over HTTP" % (rule.client, seen))
    name = server.loader(rule.loader_slot)
    if name is None:
        return BootAnswer("none", rule.name, reason="%s: no %s loader configured" % (rule.client, rule.loader_slot))
    return BootAnswer("tftp", rule.name, filename=name, next_server=server.address,
                      reason="%s (option 93 = %s): loader over TFTP" % (rule.client, seen))


def _grub_answer(server: BootServer, rule: BootRule, slot: str, seen: str) -> BootAnswer:
    """The grub chain: the shim of the architecture, over TFTP or HTTP like the row's iPXE answer."""
    if rule.transport == "http":
        image = server.http_image_url(slot)
        if image:
            # Everything GRUB reads is in the image: no TFTP at all.
            return BootAnswer("http", rule.name, filename=image, next_server=server.address,
                              vendor_class=HTTP_CLIENT_VENDOR_CLASS, loader="grub",
                              reason="%s (option 93 = %s): Secure Boot disk image over HTTP (grub chain)"
                              % (rule.client, seen))
        # next-server too: GRUB reads its configuration and the kernel over TFTP (Debian's
        # signed netboot GRUB has no HTTP module), from the server DHCP named.
        return BootAnswer("http", rule.name, filename=server.shim_url(slot), next_server=server.address,
                          vendor_class=HTTP_CLIENT_VENDOR_CLASS, loader="grub",
                          reason="%s (option 93 = %s): shim over HTTP (grub chain)" % (rule.client, seen))
    return BootAnswer("tftp", rule.name, filename=server.shim(slot), next_server=server.address, loader="grub",
                      reason="%s (option 93 = %s): shim over TFTP (grub chain)" % (rule.client, seen))


# What a proxyDHCP server answers: PXE clients only (PXE 2.1, 2.2.4). A client shows it
# is one by option 60 (PXEClient, or HTTPClient for UEFI HTTP boot) and option 93, which
# the PXE specification makes mandatory: without them, the site's DHCP server's answer
# is all it gets.
PROXY_VENDOR_CLASSES = (PXE_CLIENT_VENDOR_CLASS, HTTP_CLIENT_VENDOR_CLASS)


def decide_proxy(
    server: BootServer,
    arch: Optional[int] = None,
    user_class: Optional[bytes] = None,
    option_175: bool = False,
    vendor_class: Optional[str] = None,
    loader: Optional[str] = None,
) -> BootAnswer:
    """What the proxyDHCP backend answers (pxe_dhcp_backend: proxy), from the same table.

    The boot file is decide()'s; the differences are the proxy's:
    - a client without option 93, or whose option 60 is neither PXEClient nor HTTPClient,
      is no PXE client: it gets no proxy answer at all (kind "none");
    - every answer carries next-server (siaddr): iPXE takes the boot file of a proxy
      offer only together with a next-server, even when the file is an HTTP URL.
    vendor_class None means "not known": the client is taken for a PXE client.
    """
    if arch is None:
        return BootAnswer("none", "unknown", reason="option 93 absent: not a PXE client, a proxyDHCP does not answer")
    if vendor_class is not None and not vendor_class.startswith(PROXY_VENDOR_CLASSES):
        return BootAnswer("none", "unknown", reason="vendor class %r: not a PXE client, a proxyDHCP does not answer"
                          % vendor_class)
    answer = decide(server, arch=arch, user_class=user_class, option_175=option_175, vendor_class=vendor_class,
                    loader=loader)
    if answer.kind == "none" or answer.next_server:
        return answer
    return BootAnswer(answer.kind, answer.rule, filename=answer.filename, next_server=server.address,
                      vendor_class=answer.vendor_class, reason=answer.reason, loader=answer.loader)


def configured_rules(server: BootServer, loader: Optional[str] = None) -> Sequence[Tuple[BootRule, BootAnswer]]:
    """Each rule with the answer it gives on this server (what renderers emit)."""
    out = []
    for rule in BOOT_RULES:
        arch = rule.arch_codes[-1]
        out.append((rule, decide(server, arch=arch, loader=loader)))
    return out


def loader_dependent_rules(server: BootServer) -> Tuple[BootRule, ...]:
    """The rows whose answer depends on the loader chain on this server: the renderers
    give those a per-node answer (nodes whose pxe_loader is not the server's default)."""
    def effect(answer: BootAnswer) -> Tuple[Any, ...]:
        return answer.kind, answer.filename, answer.next_server, answer.vendor_class

    return tuple(rule for rule in BOOT_RULES
                 if rule.grub_slot and effect(decide(server, arch=rule.arch_codes[-1], loader="ipxe"))
                 != effect(decide(server, arch=rule.arch_codes[-1], loader="grub")))


def node_loader(node: Mapping[str, Any], server: BootServer) -> str:
    """A plan node's loader chain: its own pxe_loader, else the server's default."""
    return str(node.get("loader") or server.default_loader)
