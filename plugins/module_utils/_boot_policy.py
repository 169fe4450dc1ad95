# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The option-93 boot policy: one table, one decision function.

Both DHCP renderers (Kea and ISC dhcpd) are generated from BOOT_RULES, and the
tests check both daemons' real answers against decide(), so the three cannot
disagree. See docs/architecture.md, "Boot policy".
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


BOOT_RULES: Tuple[BootRule, ...] = (
    BootRule("bios", (None, 0), "x86 BIOS PXE", "tftp", "bios"),
    BootRule("efi32", (6,), "x86 UEFI (IA32)", "tftp", "efi32"),
    # 7 is x86-64 UEFI in IANA's registry (RFC 4578 erratum); much real firmware sends 9.
    BootRule("efi64", (7, 9), "x86-64 UEFI", "tftp", "efi64"),
    # ARM32 and ARM64 each get their own loader: an arm64 binary does not run on ARM32.
    BootRule("arm32", (10,), "ARM32 UEFI", "tftp", "arm32"),
    BootRule("arm64", (11,), "ARM64 UEFI", "tftp", "arm64"),
    BootRule("http_efi64", (16,), "x86-64 UEFI HTTP boot", "http", "efi64"),
    BootRule("http_arm64", (19,), "ARM64 UEFI HTTP boot", "http", "arm64"),
)

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

    @property
    def script_url(self) -> str:
        return "%s/%s" % (self.http_base, self.script_path)

    def loader(self, slot: str) -> Optional[str]:
        return self.loaders.get(slot) or None

    def loader_url(self, slot: str) -> Optional[str]:
        name = self.loader(slot)
        return "%s/%s/%s" % (self.http_base, self.http_loader_dir, name) if name else None


@dataclass(frozen=True)
class BootAnswer:
    kind: str  # "script" | "tftp" | "http" | "none"
    rule: str  # the BOOT_RULES name, "ipxe", or "unknown"
    filename: Optional[str] = None  # DHCP file field (a TFTP path or a full URL)
    next_server: Optional[str] = None  # DHCP siaddr
    vendor_class: Optional[str] = None  # option 60 to echo (HTTPClient for HTTP boot)
    reason: str = ""


def boot_server(server: Mapping[str, Any]) -> BootServer:
    """The BootServer of a server settings mapping (address, http_base, loaders)."""
    return BootServer(
        address=str(server["address"]),
        http_base=str(server["http_base"]).rstrip("/"),
        loaders={k: (v or None) for k, v in dict(server.get("loaders") or {}).items()},
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
) -> BootAnswer:
    """The answer to a DHCP request, from what the client sent.

    arch: the first code of option 93, None when the option is absent.
    user_class: option 77 payload as sent (iPXE sends the bare string "iPXE").
    option_175: whether the client sent iPXE's encapsulated option 175.
    vendor_class: option 60 as sent; only echoed in the reason (the table keys on 93).
    """
    if is_ipxe(user_class, option_175):
        # Already running iPXE: hand it the script, or it would load iPXE again, forever.
        return BootAnswer("script", "ipxe", filename=server.script_url, reason="iPXE client: boot script over HTTP")
    rule = rule_for_arch(arch)
    seen = "absent" if arch is None else str(arch)
    if vendor_class:
        seen += ", vendor class %r" % vendor_class
    if rule is None:
        return BootAnswer("none", "unknown", reason="option 93 = %s: unknown architecture, no boot file" % seen)
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
    answer = decide(server, arch=arch, user_class=user_class, option_175=option_175, vendor_class=vendor_class)
    if answer.kind == "none" or answer.next_server:
        return answer
    return BootAnswer(answer.kind, answer.rule, filename=answer.filename, next_server=server.address,
                      vendor_class=answer.vendor_class, reason=answer.reason)


def configured_rules(server: BootServer) -> Sequence[Tuple[BootRule, BootAnswer]]:
    """Each rule with the answer it gives on this server (what renderers emit)."""
    out = []
    for rule in BOOT_RULES:
        arch = rule.arch_codes[-1]
        out.append((rule, decide(server, arch=arch)))
    return out
