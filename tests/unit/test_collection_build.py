# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection builds into a tarball that installs, and ansible-doc lists its plugins."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def test_build_install_and_document(tmp_path):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "installed"), ANSIBLE_NOCOLOR="1")
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), ROOT],
                   check=True, capture_output=True, env=env, cwd=ROOT)
    tarball = tmp_path / "centra-pxe-0.1.0.tar.gz"
    assert tarball.is_file()
    assert tarball.stat().st_size < 5 * 1024 * 1024, "build_ignore lets something large in"
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--force", "-p",
                    str(tmp_path / "installed"), str(tarball)], check=True, capture_output=True, env=env)
    modules = subprocess.run([os.path.join(BIN, "ansible-doc"), "-l", "centra.pxe"], check=True, capture_output=True,
                             text=True, env=env).stdout
    assert "centra.pxe.boot_plan" in modules and "centra.pxe.node_scripts" in modules
    filters = subprocess.run([os.path.join(BIN, "ansible-doc"), "-t", "filter", "-l", "centra.pxe"], check=True,
                             capture_output=True, text=True, env=env).stdout
    for name in ("mac_format", "boot_answer", "kea_config", "dhcpd_config", "ipxe_entry_script", "ipxe_menu_script",
                 "healthz", "server_endpoint"):
        assert "centra.pxe.%s" % name in filters
    roles = os.listdir(tmp_path / "installed" / "ansible_collections" / "centra" / "pxe" / "roles")
    assert sorted(roles) == ["pxe_common", "pxe_dhcp", "pxe_firewall", "pxe_health", "pxe_http", "pxe_ipxe", "pxe_lifecycle",
                             "pxe_server", "pxe_tftp"]
