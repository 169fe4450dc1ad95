# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the boot trace's journal feeder: the journal feeder imported by path, and a
receiving datagram socket standing in for the lifecycle service's trace socket."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
JOURNAL_FEEDER = os.path.join(ROOT, "roles", "pxe_tftp", "files", "centra_pxe_trace_journal.py")

_spec = importlib.util.spec_from_file_location("centra_pxe_trace_journal", JOURNAL_FEEDER)
journal = importlib.util.module_from_spec(_spec)
sys.modules["centra_pxe_trace_journal"] = journal
_spec.loader.exec_module(journal)


class Receiver:
    """A bound datagram socket: what the feeders sent, as raw datagrams."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(5)

    def take(self, timeout: float = 5.0) -> bytes:
        self.sock.settimeout(timeout)
        return self.sock.recv(65536)

    def nothing(self, timeout: float = 0.3) -> bool:
        self.sock.settimeout(timeout)
        try:
            self.sock.recv(65536)
        except socket.timeout:
            return True
        return False


@pytest.fixture(name="receiver")
def fixture_receiver():
    # A short path: AF_UNIX paths are limited to 107 bytes, pytest's tmp_path can be longer.
    directory = tempfile.mkdtemp(prefix="cpxe-trace-")
    receiver = Receiver(os.path.join(directory, "trace.sock"))
    yield receiver
    receiver.sock.close()
    if os.path.exists(receiver.path):
        os.unlink(receiver.path)
    os.rmdir(directory)
