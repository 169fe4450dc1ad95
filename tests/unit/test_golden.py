# SPDX-License-Identifier: GPL-3.0-or-later
"""Golden test: every config the roles render, for every case of tests/golden/render.py,
byte for byte as in tests/golden/expected (missing, extra and different files all fail).

After an intended change of an output: python tests/golden/render.py --update, and say
in the commit why each expected file changed.
"""

from __future__ import annotations

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_renderer():
    # A file of tests/golden, not a package: loaded by path.
    spec = importlib.util.spec_from_file_location("golden_render", os.path.join(ROOT, "tests", "golden", "render.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_rendered_file_matches_the_golden_tree(tmp_path):
    renderer = _load_renderer()
    expected = renderer.expected_tree(tmp_path / "expected")
    assert renderer.files(expected), "tests/golden/expected is empty: run tests/golden/render.py --update"
    renderer.render(tmp_path / "rendered")
    report = renderer.compare(expected, tmp_path / "rendered")
    assert not report, "rendered files differ from tests/golden/expected " \
        "(intended? python tests/golden/render.py --update):\n" + "\n".join(report)


def test_every_case_renders_every_server(tmp_path):
    """A case whose servers rendered nothing would pass the comparison only if expected/
    were empty too: the expected tree must hold each case's DHCP, HTTP and boot files."""
    renderer = _load_renderer()
    expected = renderer.expected_tree(tmp_path, list(renderer.CASES))
    for case in renderer.CASES:
        servers = sorted(p.name for p in (expected / case).iterdir())
        assert servers, case
        for server in servers:
            names = renderer.files(expected / case / server)
            dhcp = {"etc/kea/kea-dhcp4.conf", "etc/dhcp/dhcpd.conf", "etc/centra-pxe-proxydhcp.conf"} & names.keys()
            assert len(dhcp) == 1, (case, server, sorted(names))
            for needed in ("etc/nginx/sites-available/centra-pxe", "etc/default/tftpd-hpa",
                           "srv/centra-pxe/http/boot.ipxe", "srv/centra-pxe/http/menu.ipxe",
                           "srv/centra-pxe/http/healthz"):
                assert needed in names, (case, server, needed)
            assert any(n.startswith("srv/centra-pxe/http/nodes/") for n in names), (case, server)


def test_compare_reports_missing_extra_and_different_files(tmp_path):
    renderer = _load_renderer()
    expected, actual = tmp_path / "expected", tmp_path / "actual"
    for tree, files in ((expected, {"a": "same\n", "b": "old\n", "gone": "x\n"}),
                        (actual, {"a": "same\n", "b": "new\n", "new": "y\n"})):
        for name, text in files.items():
            (tree / "case" / "srv").mkdir(parents=True, exist_ok=True)
            (tree / "case" / "srv" / name).write_text(text)
    report = renderer.compare(expected, actual)
    assert report[0] == "missing (expected, not rendered): case/srv/gone"
    assert report[1] == "extra (rendered, not expected): case/srv/new"
    assert report[2].startswith("different: case/srv/b\n") and "-old\n+new" in report[2]
    assert len(report) == 3
    assert renderer.compare(expected, expected) == []


def test_a_bundle_keeps_every_byte(tmp_path):
    renderer = _load_renderer()
    tree = tmp_path / "tree"
    files = {"pxe01/srv/a.ipxe": b"#!ipxe\nexit\n", "pxe01/etc/empty": b"", "pxe02/no-newline": b"x === y 3\n=== z"}
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    bundle = renderer.pack(tree)
    assert not bundle.startswith(b"#!")
    renderer.unpack(bundle, tmp_path / "back")
    assert {n: p.read_bytes() for n, p in renderer.files(tmp_path / "back").items()} == files
