# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""labkit.blackout: the relayed DISCOVER it sends, the OFFERs it counts, the gaps it reports."""
from __future__ import annotations

import os
import socket
import struct
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "lab"))
from labkit import blackout  # noqa: E402  pylint: disable=wrong-import-position

MAC = bytes.fromhex("52540000ee01")


def test_the_discover_is_relayed_for_the_mac():
    packet = blackout.discover(0x1234, MAC, "192.0.2.1")
    op, htype, hlen, hops, xid = struct.unpack("!BBBBI", packet[:8])
    assert (op, htype, hlen, hops, xid) == (1, 1, 6, 1, 0x1234)
    assert socket.inet_ntoa(packet[24:28]) == "192.0.2.1"       # giaddr: the server answers the relay
    assert packet[28:34] == MAC
    assert packet[236:240] == blackout.MAGIC and packet[240:243] == bytes([53, 1, 1])


def _reply(message_type: int, xid: int = 7) -> bytes:
    request = bytearray(blackout.discover(xid, MAC, "192.0.2.1"))
    request[0] = 2
    request[242] = message_type
    return bytes(request)


def test_only_offers_count():
    assert blackout.offer_xid(_reply(2)) == 7
    assert blackout.offer_xid(_reply(5)) is None                  # an ACK
    assert blackout.offer_xid(blackout.discover(7, MAC, "192.0.2.1")) is None  # a request
    assert blackout.offer_xid(b"\x02" + b"\0" * 100) is None        # too short


def test_the_longest_gap_counts_the_edges():
    assert blackout.gaps(0.0, 10.0, [1.0, 1.5, 6.0, 9.9])["longest_gap_s"] == 4.5
    report = blackout.gaps(0.0, 10.0, [])
    assert report["longest_gap_s"] == 10.0 and report["gaps_over_100ms"] == [[0.0, 10.0]]
    assert blackout.gaps(0.0, 1.0, [0.05, 0.1, 0.95])["gaps_over_100ms"] == [[0.1, 0.85]]


def test_a_server_outside_the_lab_is_refused():
    with pytest.raises(SystemExit):
        blackout.main(["--server", "10.0.0.1", "--mac", "52:54:00:00:ee:01", "--seconds", "1"])
