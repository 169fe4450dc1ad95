# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import (
    BOOT_RULES, BootServer, decide, decide_proxy, parse_arch_option, rule_for_arch,
)

FULL = BootServer("192.0.2.2", "http://192.0.2.2",
                  {"bios": "undionly.kpxe", "efi32": "ipxe32.efi", "efi64": "ipxe.efi",
                   "arm32": "ipxe-arm32.efi", "arm64": "ipxe-arm64.efi"})
DEBIAN = BootServer("192.0.2.2", "http://192.0.2.2", {"bios": "undionly.kpxe", "efi64": "snponly.efi"})


# The boot policy table of docs/architecture.md, row by row.
@pytest.mark.parametrize("arch, kind, filename", [
    (None, "tftp", "undionly.kpxe"),
    (0, "tftp", "undionly.kpxe"),
    (6, "tftp", "ipxe32.efi"),
    (7, "tftp", "ipxe.efi"),
    (9, "tftp", "ipxe.efi"),
    (10, "tftp", "ipxe-arm32.efi"),
    (11, "tftp", "ipxe-arm64.efi"),
    (16, "http", "http://192.0.2.2/loaders/ipxe.efi"),
    (19, "http", "http://192.0.2.2/loaders/ipxe-arm64.efi"),
    (1, "none", None),
    (8, "none", None),
    (0x1234, "none", None),
])
def test_the_table(arch, kind, filename):
    answer = decide(FULL, arch=arch)
    assert (answer.kind, answer.filename) == (kind, filename)
    assert answer.next_server == ("192.0.2.2" if kind == "tftp" else None)
    assert answer.vendor_class == ("HTTPClient" if kind == "http" else None)
    assert answer.reason


@pytest.mark.parametrize("arch", [6, 10, 11, 19])
def test_architectures_without_a_configured_loader_get_no_boot_file(arch):
    answer = decide(DEBIAN, arch=arch)
    assert answer.kind == "none" and answer.filename is None
    assert "loader configured" in answer.reason


def test_snponly_can_replace_ipxe_efi():
    assert decide(DEBIAN, arch=7).filename == "snponly.efi"


@pytest.mark.parametrize("arch", [None, 0, 7, 16, 99])
def test_ipxe_gets_the_script_whatever_its_architecture(arch):
    by_user_class = decide(FULL, arch=arch, user_class=b"iPXE")
    by_option_175 = decide(FULL, arch=arch, option_175=True)
    assert by_user_class.kind == by_option_175.kind == "script"
    assert by_user_class.filename == "http://192.0.2.2/boot.ipxe"


def test_a_user_class_that_is_not_ipxe_is_ignored():
    assert decide(FULL, arch=7, user_class=b"iPXE-not").kind == "tftp"
    assert decide(FULL, arch=7, user_class=b"ipxe").kind == "tftp"


def test_unknown_architecture_reason_names_the_code_and_vendor_class():
    answer = decide(FULL, arch=42, vendor_class="PXEClient:Arch:00042")
    assert answer.kind == "none" and "42" in answer.reason and "PXEClient" in answer.reason


def test_every_code_is_in_exactly_one_rule():
    seen = [code for rule in BOOT_RULES for code in rule.arch_codes]
    assert len(seen) == len(set(seen))
    assert rule_for_arch(None).name == "bios"


@pytest.mark.parametrize("raw, arch", [(None, None), (b"\x00\x07", 7), (b"\x00\x10\x00\x07", 16), (b"\x00\x00", 0)])
def test_parse_arch_option(raw, arch):
    assert parse_arch_option(raw) == arch


@pytest.mark.parametrize("raw", [b"", b"\x07", b"\x00\x07\x00"])
def test_truncated_option_93_is_an_error(raw):
    with pytest.raises(ValueError):
        parse_arch_option(raw)


# The proxyDHCP backend answers from the same table: the same boot files, next-server on all.
@pytest.mark.parametrize("arch", [0, 6, 7, 9, 10, 11, 16, 19, 1, 0x1234])
def test_proxy_gives_the_same_boot_files_as_the_table(arch):
    plain, proxy = decide(FULL, arch=arch), decide_proxy(FULL, arch=arch, vendor_class="PXEClient:Arch:%05d" % arch)
    assert (proxy.kind, proxy.rule, proxy.filename, proxy.vendor_class) == \
        (plain.kind, plain.rule, plain.filename, plain.vendor_class)
    assert proxy.next_server == (None if plain.kind == "none" else "192.0.2.2")


def test_proxy_gives_ipxe_its_script_with_a_next_server():
    # iPXE ignores a proxy offer's file without a next-server (siaddr), even an HTTP URL.
    answer = decide_proxy(FULL, arch=7, user_class=b"iPXE")
    assert (answer.kind, answer.filename, answer.next_server) == ("script", "http://192.0.2.2/boot.ipxe", "192.0.2.2")


@pytest.mark.parametrize("arch, vendor", [(None, "PXEClient:Arch:00000"), (7, "MSFT 5.0"), (0, "")])
def test_proxy_does_not_answer_clients_that_are_no_pxe_clients(arch, vendor):
    answer = decide_proxy(FULL, arch=arch, vendor_class=vendor)
    assert (answer.kind, answer.filename, answer.next_server) == ("none", None, None)
    assert "not a PXE client" in answer.reason


def test_proxy_answers_http_boot_clients():
    answer = decide_proxy(FULL, arch=16, vendor_class="HTTPClient:Arch:00016:UNDI:003000")
    assert (answer.kind, answer.filename, answer.vendor_class) == \
        ("http", "http://192.0.2.2/loaders/ipxe.efi", "HTTPClient")
